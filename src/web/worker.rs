//! [`WebWorker`]: an actor that answers HTTP requests (what a user reads is on the trait).

use std::any::TypeId;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use super::request::WebRequest;
use crate::http::{Method, Request, Response, StatusCode};
use crate::process::{Actor, Context, ExitReason, Handled, Message, Pid, Reply};

/// An actor that answers web requests, one async method per request method. Every method has
/// a default; implement the ones your resource supports. pinion implements [`Actor`] for
/// every `WebWorker`: spawn it like any actor and point a [`WebHandler`](super::WebHandler)
/// at it. The runtime answers for the worker:
///
/// - a standard method the worker does not implement: **405** with an `Allow` field listing
///   what it does implement (Ergo answers 501 here; RFC 9110 keeps 501 for methods the server
///   does not recognize: an extension method is answered so unless
///   [`handle_other`](WebWorker::handle_other) takes it);
/// - `HEAD`: `handle_get`'s response without its body, unless `handle_head` is implemented;
/// - `OPTIONS`: 204 with `Allow`, unless `handle_options` is implemented.
///
/// A worker that answers without awaiting does so in [`WebWorker::handle_now`], a plain function
/// offered every request before the async methods: no future is built for the requests it
/// answers. One that streams its answers, or keeps requests to answer later, takes them as
/// [`WebRequest`]s in [`WebWorker::take_request`] (with [`WebWorker::TAKES_REQUESTS`]).
///
/// Which methods a worker implements, Rust cannot tell (a default method and an implemented
/// one look alike from outside), so a worker says so in [`WebWorker::METHODS`]: the runtime
/// then answers every other method itself, and `Allow` is exactly that list (RFC 9110 §15.5.6:
/// a 405 lists the methods the resource supports). A worker that leaves it `None` has its
/// methods learned instead, the first time each default method answers (per type and shard):
/// until every method was tried once, its `Allow` may still list one it lacks.
#[allow(async_fn_in_trait, reason = "workers run on one shard; their futures need not be Send")]
pub trait WebWorker: 'static {
    /// The methods this worker implements, if it says so (the default, `None`, learns them:
    /// see [`WebWorker`]). With a list, a request with any other method that
    /// [`handle_now`](Self::handle_now) passes on (it sees every request first) is answered by
    /// the runtime, no async method run: `OPTIONS` with 204, anything else with 405, both with
    /// an `Allow` that is this list, with `HEAD` when `GET` is in it (served by
    /// [`handle_head`](Self::handle_head), whose default is GET's answer without the body) and
    /// `OPTIONS` always (asked of [`handle_options`](Self::handle_options), whose default is
    /// the runtime's 204). A listed method the worker does not implement is a bug of the list:
    /// it is answered 405, left out of `Allow` from then on, and logged once. `TRACE`,
    /// `CONNECT` and extension methods ([`Method::Extension`], or those of
    /// [`EXTENSIONS`](Self::EXTENSIONS)) go to [`handle_other`](Self::handle_other) when listed
    /// (an unlisted extension method is answered 501, the others 405); `Allow` names only the
    /// tokens of `EXTENSIONS` among them.
    ///
    /// ```
    /// # use pinion::http::Method;
    /// # struct Store;
    /// impl pinion::web::WebWorker for Store {
    ///     const METHODS: Option<&'static [Method]> = Some(&[Method::Get, Method::Post]);
    ///     // handle_get and handle_post ...
    /// }
    /// ```
    const METHODS: Option<&'static [Method]> = None;

    /// The extension methods ([`Method::Extension`]) it takes in
    /// [`handle_other`](Self::handle_other), by token (`PROPFIND`; case-sensitive): its `Allow`
    /// lists them after the known methods, and with [`METHODS`](Self::METHODS) given (not
    /// listing `Method::Extension`, which takes every one) another extension method is answered
    /// 501 by the runtime, `handle_other` not asked.
    ///
    /// ```
    /// # use pinion::http::{Method, Request, Response, StatusCode};
    /// # use pinion::Context;
    /// # struct Dav;
    /// impl pinion::web::WebWorker for Dav {
    ///     const METHODS: Option<&'static [Method]> = Some(&[Method::Get]);
    ///     const EXTENSIONS: &'static [&'static str] = &["PROPFIND"];
    ///     async fn handle_other(&mut self, _: &mut Context, req: &Request) -> Response {
    ///         // Only PROPFIND comes here: another extension method got 501.
    ///         Response::text("<multistatus/>").with_status(StatusCode(207))
    ///     }
    ///     // handle_get ...
    /// }
    /// ```
    const EXTENSIONS: &'static [&'static str] = &[];

    /// Runs first, as [`Actor::init`].
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        let _ = ctx;
        Ok(())
    }

    /// Offered every request first, as a plain function: a worker that can answer without
    /// awaiting answers `Some(response)` here, and no future is built for the request (as
    /// [`Actor::handle_message_now`]). `None` passes the request on to the method's async
    /// handler below. The default passes every request on and compiles to nothing.
    ///
    /// The response is sent as the async handlers' is: a `HEAD` request gets it without its
    /// body. A panic here ends the worker and the request is answered 500, as from an async
    /// handler.
    #[inline(always)]
    fn handle_now(&mut self, ctx: &mut Context, req: &Request) -> Option<Response> {
        let _ = (ctx, req);
        None
    }

    /// Whether a request whose deadline passed while it waited in the mailbox is skipped: the
    /// async methods (and [`take_request`](Self::take_request)) do not see it, and the client
    /// has the connection's 504 ([`WebRequest::skip_if_expired`]); so is one whose client's
    /// connection closed meanwhile ([`WebRequest::is_client_gone`]: a client that gave up and
    /// reset, or whose earlier answer could not be written). So a worker that fell
    /// behind under a burst catches up with requests whose clients still wait, instead of
    /// serving every late one first (each answer dropped) while fresh requests time out behind
    /// them. `false` serves every request it takes, late or not (work that must run whatever
    /// its client saw). [`handle_now`](Self::handle_now) sees every request either way (it is
    /// asked first, and reads no clock).
    const SKIPS_EXPIRED: bool = true;

    /// Whether [`take_request`](Self::take_request) is offered requests (a constant, so a worker
    /// that does not take any pays nothing for it).
    const TAKES_REQUESTS: bool = false;

    /// With [`TAKES_REQUESTS`](Self::TAKES_REQUESTS), offered each request the async methods
    /// would get (after [`handle_now`](Self::handle_now) and the check against
    /// [`METHODS`](Self::METHODS)) as the [`WebRequest`] itself: a worker that streams its
    /// answer ([`WebRequest::respond_stream`]), keeps the request to answer later, or takes its
    /// body without a copy ([`WebRequest::request_mut`]) takes it here and returns `None`;
    /// `Some(req)` hands it on to the method's handler. Whatever it takes it answers (dropped
    /// unanswered, the runtime answers 500).
    ///
    /// ```
    /// # use pinion::http::{Method, Request, Response};
    /// # use pinion::web::WebRequest;
    /// # use pinion::Context;
    /// struct Feed;
    /// impl pinion::web::WebWorker for Feed {
    ///     const METHODS: Option<&'static [Method]> = Some(&[Method::Get]);
    ///     const TAKES_REQUESTS: bool = true;
    ///     async fn take_request(&mut self, _: &mut Context, req: WebRequest) -> Option<WebRequest> {
    ///         if req.request().path() != "/feed" {
    ///             return Some(req);
    ///         }
    ///         let mut stream = req.respond_stream(Response::new(pinion::http::StatusCode::OK));
    ///         stream.send("first\n");
    ///         stream.finish();
    ///         None
    ///     }
    ///     async fn handle_get(&mut self, _: &mut Context, _: &Request) -> Response {
    ///         Response::text("not the feed")
    ///     }
    /// }
    /// ```
    async fn take_request(&mut self, ctx: &mut Context, req: WebRequest) -> Option<WebRequest> {
        let _ = ctx;
        Some(req)
    }

    /// GET.
    async fn handle_get(&mut self, ctx: &mut Context, req: &Request) -> Response {
        let _ = (ctx, req);
        not_implemented()
    }

    /// HEAD (default: GET's response; the connection leaves the body out).
    async fn handle_head(&mut self, ctx: &mut Context, req: &Request) -> Response {
        self.handle_get(ctx, req).await
    }

    /// POST.
    async fn handle_post(&mut self, ctx: &mut Context, req: &Request) -> Response {
        let _ = (ctx, req);
        not_implemented()
    }

    /// PUT.
    async fn handle_put(&mut self, ctx: &mut Context, req: &Request) -> Response {
        let _ = (ctx, req);
        not_implemented()
    }

    /// PATCH.
    async fn handle_patch(&mut self, ctx: &mut Context, req: &Request) -> Response {
        let _ = (ctx, req);
        not_implemented()
    }

    /// DELETE.
    async fn handle_delete(&mut self, ctx: &mut Context, req: &Request) -> Response {
        let _ = (ctx, req);
        not_implemented()
    }

    /// OPTIONS (default: 204 with `Allow`).
    async fn handle_options(&mut self, ctx: &mut Context, req: &Request) -> Response {
        let _ = (ctx, req);
        not_implemented()
    }

    /// Any other method: TRACE, CONNECT and extension methods ([`Method::Extension`], whose
    /// token is [`Request::method_token`]: WebDAV's `PROPFIND`). Default: 405 with `Allow` to
    /// TRACE and CONNECT, 501 to an extension method (RFC 9110 §15.6.2: a method the server
    /// does not recognize). A worker with [`METHODS`](Self::METHODS) lists
    /// `Method::Extension` to be asked for every extension method, or names the ones it takes in
    /// [`EXTENSIONS`](Self::EXTENSIONS) (else the runtime answers 501).
    async fn handle_other(&mut self, ctx: &mut Context, req: &Request) -> Response {
        let _ = (ctx, req);
        not_implemented()
    }

    /// Any other message, as [`Actor::handle_message`].
    async fn handle_message(&mut self, ctx: &mut Context, from: Pid, msg: Message) -> Result<(), ExitReason> {
        let _ = (ctx, from, msg);
        Ok(())
    }

    /// A `call`, as [`Actor::handle_call`] (a worker can serve both HTTP and calls).
    async fn handle_call(&mut self, ctx: &mut Context, from: Pid, req: Message) -> Result<Reply, ExitReason> {
        let _ = (ctx, from, req);
        Ok(Reply::Later)
    }

    /// Runs last, as [`Actor::terminate`].
    async fn terminate(&mut self, ctx: &mut Context, reason: &ExitReason) {
        let _ = (ctx, reason);
    }
}

/// The field that marks a default method's answer (never sent: no valid field name has a
/// space).
const MARK: &str = "pinion not-implemented";

fn not_implemented() -> Response {
    let mut r = Response::new(StatusCode::METHOD_NOT_ALLOWED);
    r.headers.push((Cow::Borrowed(MARK), Cow::Borrowed(b"")));
    r
}

fn is_marked(r: &Response) -> bool {
    r.headers.last().is_some_and(|(n, _)| n == MARK)
}

thread_local! {
    /// What each worker type turned out to implement, or not.
    static LEARNED: RefCell<HashMap<TypeId, Learned>> = RefCell::new(HashMap::new());
}

/// What is known of a worker type from the requests it answered.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Learned {
    /// Methods it turned out not to implement (bits of `Method::bit`).
    lacking: u16,
    /// It answered a HEAD itself (`handle_now` or `handle_head`): HEAD stays in `Allow` even if
    /// GET is lacking (the default `handle_head` is GET's, so without this a lacking GET means
    /// HEAD lacks too).
    head_served: bool,
}

/// What is known of `W` now.
fn known<W: WebWorker>() -> Learned {
    learn::<W>(|_| {}).0
}

/// Updates what is known of `W` with `f`: what is known after, and whether `f` changed it.
fn learn<W: WebWorker>(f: impl FnOnce(&mut Learned)) -> (Learned, bool) {
    LEARNED.with(|l| {
        let mut l = l.borrow_mut();
        let known = l.entry(TypeId::of::<W>()).or_default();
        let before = *known;
        f(known);
        (*known, *known != before)
    })
}

/// Methods an `Allow` of a worker's lists, as bits of `Method::bit`: not TRACE and CONNECT
/// (`handle_other` answers them, 405 by default), nor an extension method (no token to list).
const SERVED: u16 = !(Method::Trace.bit() | Method::Connect.bit() | Method::Extension.bit());

/// The methods `W` declares (bits of `Method::bit`), with `HEAD` when `GET` is there and
/// `OPTIONS` always; `None` when it declares none. Evaluated at compile time.
const fn declared<W: WebWorker>() -> Option<u16> {
    let Some(list) = W::METHODS else { return None };
    let mut bits = Method::Options.bit();
    let mut i = 0;
    while i < list.len() {
        bits |= list[i].allowed_bits();
        i += 1;
    }
    Some(bits)
}

/// The `Allow` of `W`'s answers: its list (or every method served), less what is known lacking.
fn allow<W: WebWorker>(known: Learned) -> String {
    // (OPTIONS is never lacking: the runtime answers it when the worker does not.)
    let mut lacking = known.lacking;
    if lacking & Method::Get.bit() != 0 && !known.head_served {
        lacking |= Method::Head.bit();
    }
    let listed = const { declared::<W>() }.unwrap_or(u16::MAX);
    let mut allow = Method::allow_list(SERVED & listed & !lacking);
    for token in W::EXTENSIONS {
        allow.push_str(", ");
        allow.push_str(token);
    }
    allow
}

/// The runtime's answer in place of a default method's (`resp` carried the mark): 204 with
/// `Allow` to OPTIONS, 501 to an extension method, 405 with `Allow` to anything else.
#[cold]
#[inline(never)]
fn default_answer<W: WebWorker>(method: Method) -> Response {
    match method {
        Method::Options => return Response::new(StatusCode::NO_CONTENT).header("allow", allow::<W>(known::<W>())),
        Method::Extension => return Response::status(StatusCode::NOT_IMPLEMENTED),
        _ => {}
    }
    let learned = if matches!(method, Method::Trace | Method::Connect) { None } else { Some(method) };
    let (known, newly) = learn::<W>(|k| k.lacking |= learned.map_or(0, Method::bit));
    // Once per worker type and shard: a client repeating the method cannot flood the log.
    if newly
        && let (Some(listed), Some(m)) = (const { declared::<W>() }, learned)
        && listed & m.bit() != 0
    {
        let name = std::any::type_name::<W>();
        if m == Method::Head && !W::METHODS.is_some_and(|l| l.contains(&Method::Head)) {
            // Listed through GET: the default `handle_head` is GET's.
            log::warn!(
                target: "pinion::web",
                "{name} lists GET in WebWorker::METHODS but implements neither handle_get nor handle_head: HEAD answered 405"
            );
        } else {
            log::warn!(target: "pinion::web", "{name} lists {m} in WebWorker::METHODS but does not implement it: answered 405");
        }
    }
    Response::status(StatusCode::METHOD_NOT_ALLOWED).header("allow", allow::<W>(known))
}

/// `W` answered a HEAD itself, in `handle_now` or `handle_head` (see [`Learned::head_served`]).
#[cold]
#[inline(never)]
fn head_served<W: WebWorker>() {
    learn::<W>(|k| k.head_served = true);
}

/// The runtime's answer to a method `W` does not list in [`WebWorker::METHODS`]: 405 with
/// `Allow`, or 501 to an extension method.
#[cold]
#[inline(never)]
fn unlisted<W: WebWorker>(method: Method) -> Response {
    // (Never OPTIONS: every list has it, see `declared`.)
    debug_assert_ne!(method, Method::Options);
    if method == Method::Extension {
        return Response::status(StatusCode::NOT_IMPLEMENTED);
    }
    Response::status(StatusCode::METHOD_NOT_ALLOWED).header("allow", allow::<W>(known::<W>()))
}

impl<W: WebWorker> Actor for W {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        WebWorker::init(self, ctx).await
    }

    #[inline(always)]
    fn handle_message_now(&mut self, ctx: &mut Context, _from: Pid, msg: Message) -> Handled {
        // (The method read with the request, for the one check after.)
        let answered = msg.take_if(|req: &WebRequest| {
            let request = req.request();
            WebWorker::handle_now(self, ctx, request).map(|resp| (resp, request.method()))
        });
        let (req, (mut resp, method)) = match answered {
            Ok(answered) => answered,
            Err(msg) => return Handled::Async(msg),
        };
        if method == Method::Head {
            // A HEAD it answers itself keeps HEAD in `Allow` though GET be lacking, as one its
            // `handle_head` answers does.
            head_served::<W>();
        }
        req.respond_from(&mut resp);
        resp.discard();
        Handled::Done(Ok(()))
    }

    async fn handle_message(&mut self, ctx: &mut Context, from: Pid, msg: Message) -> Result<(), ExitReason> {
        let req = match msg.downcast::<WebRequest>() {
            Ok(req) => req,
            Err(msg) => return WebWorker::handle_message(self, ctx, from, msg).await,
        };
        // The method's handler awaited right here, not through a helper `async fn`: each
        // nested future is one more state the request and the response are copied through.
        let request = req.request();
        let method = request.method();
        // A method outside the worker's list: the runtime's answer, no handler run. (Here,
        // after `handle_now`, which sees every request: what it answers is its own choice.)
        if let Some(listed) = const { declared::<W>() }
            && listed & method.bit() == 0
            && !(method == Method::Extension && W::EXTENSIONS.contains(&request.method_token()))
        {
            let mut resp = unlisted::<W>(method);
            req.respond_from(&mut resp);
            resp.discard();
            return Ok(());
        }
        let req = if W::SKIPS_EXPIRED {
            match req.skip_if_expired() {
                Some(req) => req,
                None => return Ok(()),
            }
        } else {
            req
        };
        let req = if W::TAKES_REQUESTS {
            match self.take_request(ctx, req).await {
                Some(req) => req,
                None => return Ok(()),
            }
        } else {
            req
        };
        let request = req.request();
        let mut resp = match method {
            Method::Get => self.handle_get(ctx, request).await,
            Method::Head => self.handle_head(ctx, request).await,
            Method::Post => self.handle_post(ctx, request).await,
            Method::Put => self.handle_put(ctx, request).await,
            Method::Patch => self.handle_patch(ctx, request).await,
            Method::Delete => self.handle_delete(ctx, request).await,
            Method::Options => self.handle_options(ctx, request).await,
            Method::Trace | Method::Connect | Method::Extension => self.handle_other(ctx, request).await,
        };
        if is_marked(&resp) {
            resp = default_answer::<Self>(method);
        } else if method == Method::Head {
            head_served::<Self>();
        }
        req.respond_from(&mut resp);
        resp.discard();
        Ok(())
    }

    async fn handle_call(&mut self, ctx: &mut Context, from: Pid, req: Message) -> Result<Reply, ExitReason> {
        WebWorker::handle_call(self, ctx, from, req).await
    }

    async fn terminate(&mut self, ctx: &mut Context, reason: &ExitReason) {
        WebWorker::terminate(self, ctx, reason).await
    }
}
