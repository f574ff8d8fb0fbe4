//! The request a connection is handing to its handler right now, and what the handler did
//! with it while it ran — kept in thread-locals so that a handler running inside the
//! connection's dispatch (a plain function, the router, a `WebHandler`) reaches the
//! connection without looking it up: a deadline it sets and an answer it gives at once are
//! applied by the connection when the handler returns.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Instant;

use super::request::{Hooked, ResponseHook};
use crate::http::{Ahead, Body, Request, Response};

/// The request being handed to a handler right now, and what the handler did with it while
/// it ran: the deadline it set, the response it gave at once (a plain function). The
/// connection applies both when the handler returns (`Connection::handled`, the deadline under
/// the dispatch pass's next borrow), without looking itself up again.
/// The key and the deadline are plain `Cell`s (no destructor, so every check is a few
/// instructions); only an answer given at once touches the `RefCell`, and only then does
/// `dispatch_end` look at it.
pub(crate) type Answer = (Response, Option<Box<Request>>);

/// The state every dispatch touches, in one thread-local without a destructor (so each access
/// is a plain load or store, with no lazy-registration check).
struct Dispatch {
    /// (connection id, seq) being dispatched; (0, 0) when none (ids start at 1).
    key: Cell<(u64, u64)>,
    deadline: Cell<Option<Instant>>,
    /// About how many more requests the connection has read and will hand out in this pass
    /// (a pool takes its slots for them at once: `pool::dispatch::send_ahead`).
    ahead: Cell<Ahead>,
    /// What the handler left besides a deadline ([`ANSWERED`], [`HOOKED`] bits): only then are
    /// those (destructor-carrying) thread-locals touched.
    left: Cell<u8>,
    /// The head being checked (`Handler::check_head`) is of a request that will wait for the
    /// ones before it (see [`head_waits`]).
    head_waits: Cell<bool>,
}

/// The handler answered at once: `ANSWER` holds it.
pub(crate) const ANSWERED: u8 = 1;
/// The handler's middleware left response hooks: `HOOKS` holds them.
pub(crate) const HOOKED: u8 = 2;

thread_local! {
    static DISPATCH: Dispatch =
        const {
        Dispatch {
            key: Cell::new((0, 0)),
            deadline: Cell::new(None),
            ahead: Cell::new(Ahead::NONE),
            left: Cell::new(0),
            head_waits: Cell::new(false),
        }
    };
    static ANSWER: RefCell<Option<Answer>> = const { RefCell::new(None) };
    static HOOKS: RefCell<Option<Box<Hooked>>> = const { RefCell::new(None) };
}

/// The connection id [`answer_at_once`] hands its requests as: no connection has it (ids count
/// up from 1), so an answer that comes later finds no connection and is dropped.
const NO_CONNECTION: u64 = u64::MAX;

/// Hands `request` to `handler` as a connection does, outside any server, and returns the
/// answer the handler gave at once — with the response hooks its middleware left run on it,
/// as the connection runs them — or `None` when it gave none then (it forwarded the request to
/// an actor, or kept it: an answer given later is dropped). For tests of routers, middleware
/// and plain functions without a socket:
///
/// ```
/// use pinion::http::{Method, Request, Response};
/// use pinion::web::{Router, answer_at_once};
///
/// let router = Router::new().get("/users/{id}", |r: &Request| Response::text(format!("user {}", r.param("id").unwrap_or("?"))));
/// let answer = answer_at_once(&router, Request::new(Method::Get, "/users/7")).expect("answered at once");
/// assert_eq!(answer.body_bytes(), b"user 7");
/// assert_eq!(answer_at_once(&router, Request::new(Method::Post, "/users/7")).map(|r| r.status.0), Some(405));
/// ```
///
/// Before the handler, what the connection asks of the head is asked too (a trial found a
/// test here and a client over a socket told apart): a request with a body (one, or a
/// `Content-Length` or `Transfer-Encoding` field) longer than the handler's
/// [`body_limit`](super::Handler::body_limit) — the body's length or the declared one,
/// whichever is more — is answered 413 (there is no server here, so no `max_body_bytes`
/// otherwise); an HTTP/1.1 request announcing a body that says `Expect: 100-continue` gets
/// the handler's [`check_head`](super::Handler::check_head) answer if it gives one (the
/// answer a client gets before it uploads: ask with the body or with just its length).
///
/// The answer is as the handler gave it: the connection's own work on it (a HEAD's body left
/// out, `Date`, `Content-Length`, keep-alive) is not done. A [`WebHandler`](super::WebHandler)
/// outside a node's shard answers 503.
///
/// Callable anywhere, a handler's own dispatch included (that dispatch is put back after).
///
/// # Panics
/// If the handler panics (in `body_limit` and `check_head` too: over a socket each would
/// answer 500) — but for a panic in `check_head` under a layer that hooks answers
/// ([`Cors`](super::Cors), [`request_log`](super::request_log), [`hook`](super::hook)), which
/// answers it 500 itself, as over a socket.
pub fn answer_at_once(handler: &dyn super::Handler, request: Request) -> Option<Response> {
    use super::request::ReplyTo;
    if let Some(answer) = answer_to_head(handler, &request) {
        return Some(answer);
    }
    thread_local! {
        /// The seq of the last request handed out here: each its own (a review: a request kept
        /// from an earlier call and answered during a later one was taken for its answer).
        static SEQ: Cell<u64> = const { Cell::new(0) };
    }
    /// The dispatch this call interrupts, if any (a pool worker polled inside a connection's
    /// dispatch may call this, a review found), put back however the handler returns.
    struct Interrupted {
        key: (u64, u64),
        deadline: Option<Instant>,
        ahead: Ahead,
        left: u8,
        answer: Option<Answer>,
        hooked: Option<Box<Hooked>>,
    }
    impl Drop for Interrupted {
        fn drop(&mut self) {
            // What this call's handler left and nobody took is dropped here.
            let (_, left) = dispatch_end();
            if left & ANSWERED != 0 {
                drop(take_answer());
            }
            if left & HOOKED != 0 {
                drop(take_hooked());
            }
            DISPATCH.with(|d| {
                d.key.set(self.key);
                d.deadline.set(self.deadline);
                d.ahead.set(self.ahead);
                d.left.set(self.left);
            });
            ANSWER.with(|a| *a.borrow_mut() = self.answer.take());
            HOOKS.with(|h| *h.borrow_mut() = self.hooked.take());
        }
    }
    let (key, deadline, ahead, left) =
        DISPATCH.with(|d| (d.key.get(), d.deadline.get(), d.ahead.get(), d.left.replace(0)));
    let answer = if left & ANSWERED != 0 { take_answer() } else { None };
    let hooked = if left & HOOKED != 0 { take_hooked() } else { None };
    let interrupted = Interrupted { key, deadline, ahead, left, answer, hooked };
    let seq = SEQ.with(|s| {
        s.set(s.get() + 1);
        s.get()
    });
    let to = ReplyTo {
        node: crate::process::NodeId(u32::MAX),
        shard: crate::process::ShardId(0),
        token: mio::Token(usize::MAX),
        conn: NO_CONNECTION,
        seq,
    };
    let req = super::WebRequest::new(Box::new(request), to, Instant::now());
    dispatch_begin(NO_CONNECTION, seq, Ahead::NONE);
    handler.handle(req);
    let left = DISPATCH.with(|d| d.left.replace(0));
    let answer = if left & ANSWERED != 0 { take_answer() } else { None };
    let hooked = if left & HOOKED != 0 { take_hooked() } else { None };
    drop(interrupted);
    let (mut resp, request) = answer?;
    if let Some(hooked) = hooked {
        hooked.run(request.as_deref(), &mut resp);
    }
    Some(resp)
}

/// Starts handing (conn, seq) to a handler; about `ahead` more requests wait behind it.
#[inline]
pub(crate) fn dispatch_begin(conn: u64, seq: u64, ahead: Ahead) {
    DISPATCH.with(|d| {
        d.key.set((conn, seq));
        d.deadline.set(None);
        d.ahead.set(ahead);
    });
}

/// About how many requests wait behind the one being handed to a handler now (0 outside a
/// dispatch).
#[inline]
pub(crate) fn ahead() -> Ahead {
    DISPATCH.with(|d| d.ahead.get())
}

/// While `check` runs: the head it checks is of a request that goes to its handler only once
/// the requests before it on its connection are answered (an unsafe method's behind others):
/// what holds a pool now says nothing of its room then.
///
/// The flag is put back as it was however `check` returns: a panic in it (caught by the
/// connection, outside this) left it set on the shard, and a full pool's head check asked
/// there later by [`answer_at_once`] let that head through (a review).
pub(crate) fn checking_head<R>(waits: bool, check: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            DISPATCH.with(|d| d.head_waits.set(self.0));
        }
    }
    let _restore = Restore(DISPATCH.with(|d| d.head_waits.replace(waits)));
    check()
}

/// The head being checked is of a request that will wait its turn (see [`checking_head`]).
pub(crate) fn head_waits() -> bool {
    DISPATCH.with(|d| d.head_waits.get())
}

/// Ends it: the deadline the handler set, and what else it left ([`ANSWERED`], [`HOOKED`]:
/// [`take_answer`], [`take_hooked`]).
#[inline]
pub(crate) fn dispatch_end() -> (Option<Instant>, u8) {
    DISPATCH.with(|d| {
        d.key.set((0, 0));
        d.ahead.set(Ahead::NONE);
        (d.deadline.take(), d.left.replace(0))
    })
}

/// The answer the handler gave at once.
#[inline(never)]
pub(crate) fn take_answer() -> Option<Answer> {
    ANSWER.with(|a| a.borrow_mut().take())
}

/// The response hooks the handler's middleware left with the connection.
#[cold]
#[inline(never)]
pub(crate) fn take_hooked() -> Option<Box<Hooked>> {
    HOOKS.with(|h| h.borrow_mut().take())
}

/// A handler hooks the response of the request it is being handed (`request`, read at
/// `received`): the hook is left with the connection, which runs it on whatever answers the
/// request — the handler's, or its own 504 — when that reaches it. False for any other
/// request (not this dispatch's: nothing kept).
#[cold]
#[inline(never)]
pub(crate) fn note_hook(
    conn: u64,
    seq: u64,
    hook: &Arc<dyn ResponseHook>,
    request: &Request,
    received: Instant,
) -> bool {
    if DISPATCH.with(|d| d.key.get()) != (conn, seq) {
        return false;
    }
    HOOKS.with(|h| h.borrow_mut().get_or_insert_with(|| Hooked::new(request, received)).add(hook));
    DISPATCH.with(|d| d.left.set(d.left.get() | HOOKED));
    true
}

/// A handler sets the deadline of the request it is being handed: noted for `dispatch`. False
/// for any other request.
#[inline]
pub(crate) fn note_deadline(conn: u64, seq: u64, at: Instant) -> bool {
    DISPATCH.with(|d| {
        if d.key.get() != (conn, seq) {
            return false;
        }
        d.deadline.set(Some(at));
        true
    })
}

/// A handler answers the request it is being handed: kept for `dispatch` (the response is
/// taken, an empty one left in its place). False for anything else, `resp` untouched.
#[inline]
pub(crate) fn answer_now(conn: u64, seq: u64, resp: &mut Response, req: &mut Option<Box<Request>>) -> bool {
    if DISPATCH.with(|d| d.key.get()) != (conn, seq) {
        return false;
    }
    if matches!(resp.body, Body::Streamed) {
        // A streamed head goes the normal way (its chunks follow through `deliver`), hooked
        // here: the connection keeps the hooks only when the handler returns.
        hook_stream_head(resp, req);
        return false;
    }
    keep_answer(resp, req);
    true
}

/// What the connection answers `request` from its head alone, before its body: 413 for a
/// body over the handler's bound, the handler's `check_head` answer to a client that waits
/// for `100 Continue` (the order the connection asks them in).
fn answer_to_head(handler: &dyn super::Handler, request: &Request) -> Option<Response> {
    let declared =
        request.header("content-length").and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<usize>().ok());
    let chunked = request.header("transfer-encoding").is_some();
    let body = request.body().len().max(declared.unwrap_or(0));
    if (body > 0 || declared.is_some() || chunked) && handler.body_limit(request).is_some_and(|bound| body > bound) {
        return Some(Response::status(crate::http::StatusCode::CONTENT_TOO_LARGE));
    }
    // (The connection sends `100 Continue` only to an HTTP/1.1 client announcing a body.)
    let expects = request.header("expect").is_some_and(|e| e.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
    if expects && request.version() == crate::http::Version::Http11 && (body > 0 || chunked) {
        // Not one that waits for others (this call may come inside a connection's check).
        return checking_head(false, || handler.check_head(request));
    }
    None
}

/// Runs the hooks left for the request being dispatched on the head of its stream, started
/// while its handler runs (they are not the connection's yet).
#[cold]
#[inline(never)]
fn hook_stream_head(resp: &mut Response, req: &Option<Box<Request>>) {
    let hooked = DISPATCH.with(|d| {
        let left = d.left.get();
        d.left.set(left & !HOOKED);
        left & HOOKED != 0
    });
    if hooked && let Some(hooks) = take_hooked() {
        hooks.run(req.as_deref(), resp);
    }
}

fn keep_answer(resp: &mut Response, req: &mut Option<Box<Request>>) {
    // Answered: anything more for it goes the normal way.
    DISPATCH.with(|d| {
        d.key.set((0, 0));
        d.left.set(d.left.get() | ANSWERED);
    });
    let answer = (resp.take(), req.take());
    ANSWER.with(|a| *a.borrow_mut() = Some(answer));
}
