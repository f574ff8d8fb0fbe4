//! [`WebWorker`]: an actor that answers HTTP requests, one async method per request method.
//! pinion implements [`Actor`] for every `WebWorker`: spawn it like any actor and point a
//! [`WebHandler`](super::WebHandler) at it. The runtime answers for the worker:
//!
//! - a standard method the worker does not implement: **405** with an `Allow` field listing
//!   what it does implement (Ergo answers 501 here; RFC 9110 keeps 501 for methods the server
//!   does not know at all, which the connection answers before a worker sees them);
//! - `HEAD`: `handle_get`'s response without its body, unless `handle_head` is implemented;
//! - `OPTIONS`: 204 with `Allow`, unless `handle_options` is implemented.
//!
//! A worker that answers without awaiting does so in [`WebWorker::handle_now`], a plain function
//! offered every request before the async methods: no future is built for the requests it
//! answers.
//!
//! Which methods a worker implements is learned the first time each default method answers
//! (per type and shard): until every method was tried once, `Allow` may still list one the
//! worker lacks.

use std::any::TypeId;
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;

use super::request::WebRequest;
use crate::http::{Method, Request, Response, StatusCode};
use crate::process::{Actor, Context, ExitReason, Handled, Message, Pid, Reply};

/// An actor that answers web requests. Every method has a default; implement the ones your
/// resource supports.
#[allow(async_fn_in_trait, reason = "workers run on one shard; their futures need not be Send")]
pub trait WebWorker: 'static {
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
    /// Methods each worker type turned out not to implement (bits of `Method::bit`).
    static LACKING: RefCell<HashMap<TypeId, u16>> = RefCell::new(HashMap::new());
}

/// Methods a worker may be asked for (TRACE and CONNECT are never routed to one).
const SERVED: [Method; 7] =
    [Method::Get, Method::Head, Method::Post, Method::Put, Method::Patch, Method::Delete, Method::Options];

fn allow<W: 'static>(lacking_now: Option<Method>) -> String {
    let lacking = LACKING.with(|l| {
        let mut l = l.borrow_mut();
        let bits = l.entry(TypeId::of::<W>()).or_insert(0);
        if let Some(m) = lacking_now {
            *bits |= m.bit();
        }
        *bits
    });
    let get_lacking = lacking & Method::Get.bit() != 0;
    let mut out = String::new();
    for m in SERVED {
        let missing = lacking & m.bit() != 0 || (m == Method::Head && get_lacking);
        if !missing {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(m.as_str());
        }
    }
    out
}

/// The runtime's answer in place of a default method's (`resp` carried the mark): 204 with
/// `Allow` to OPTIONS, 405 with `Allow` to anything else.
#[cold]
#[inline(never)]
fn default_answer<W: 'static>(method: Method) -> Response {
    if method == Method::Options {
        return Response::new(StatusCode::NO_CONTENT).header("allow", allow::<W>(None));
    }
    let learned = if matches!(method, Method::Trace | Method::Connect) { None } else { Some(method) };
    Response::status(StatusCode::METHOD_NOT_ALLOWED).header("allow", allow::<W>(learned))
}

impl<W: WebWorker> Actor for W {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        WebWorker::init(self, ctx).await
    }

    #[inline(always)]
    fn handle_message_now(&mut self, ctx: &mut Context, _from: Pid, msg: Message) -> Handled {
        let (req, mut resp) = match msg.take_if(|req: &WebRequest| WebWorker::handle_now(self, ctx, req.request())) {
            Ok(answered) => answered,
            Err(msg) => return Handled::Async(msg),
        };
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
        let mut resp = match method {
            Method::Get => self.handle_get(ctx, request).await,
            Method::Head => self.handle_head(ctx, request).await,
            Method::Post => self.handle_post(ctx, request).await,
            Method::Put => self.handle_put(ctx, request).await,
            Method::Patch => self.handle_patch(ctx, request).await,
            Method::Delete => self.handle_delete(ctx, request).await,
            Method::Options => self.handle_options(ctx, request).await,
            Method::Trace | Method::Connect => not_implemented(),
        };
        if is_marked(&resp) {
            resp = default_answer::<Self>(method);
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
