//! [`WebRequest`]: a parsed request on its way to whoever answers it (what a user reads is on the type).

use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use mio::Token;

use super::server::{self, Chunk, Delivery};
use crate::http::backlog::Writable;
use crate::http::{Body, Request, Response, StatusCode, StreamState, StreamWatch};
use crate::loom::{AtomicU64, Ordering};
use crate::node::route;
use crate::pool::cells::Segmented;
use crate::process::{NodeId, ShardId};
use crate::shard::{Shard, ShardWork};

/// Where a response goes: a connection on a shard, and the request's place in its order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplyTo {
    pub(crate) node: NodeId,
    pub(crate) shard: ShardId,
    pub(crate) token: Token,
    /// The connection's id (tokens are reused; ids are not).
    pub(crate) conn: u64,
    pub(crate) seq: u64,
}

impl ReplyTo {
    /// Whether `shard` is the connection's.
    #[inline(always)]
    pub(crate) fn is_on(&self, shard: &Shard) -> bool {
        shard.node.id == self.node && shard.id == self.shard
    }
}

/// Changes a response on its way out (CORS fields, logging). One added by middleware runs on
/// the connection's shard, on whatever answers the request (the runtime's 500, 503 and 504
/// too); one added later, where `respond` is called (see [`WebRequest::on_response`]).
///
/// Hooks see the answers to requests that reached the handlers. The connection's own
/// refusals of a request it could not take go out before any handler sees it, so unhooked:
/// malformed framing or head (400, 501, 505), too slow (408), too large (413, 414, 431), an
/// unmet expectation (417), a misdirected target (421), a body past the shard's bound for
/// bodies (503: [`HttpLimits::max_body_bytes_per_shard`](crate::http::HttpLimits::max_body_bytes_per_shard)).
/// (nginx's `add_header` without
/// `always` behaves alike.) A browser then reports a 413 to a cross-origin page as a CORS
/// failure: set [`HttpLimits::max_body_bytes`](crate::http::HttpLimits::max_body_bytes), or
/// the route's [`body_limit`](super::body_limit), above what pages upload, and bound the size
/// in the worker where a readable answer matters.
pub trait ResponseHook: Send + Sync + 'static {
    /// Called with the request (see [`RequestSummary::request`]) and the response about to
    /// be sent.
    fn on_response(&self, request: &RequestSummary<'_>, response: &mut Response);
}

/// A closure is a hook.
impl<F> ResponseHook for F
where
    F: Fn(&RequestSummary<'_>, &mut Response) + Send + Sync + 'static,
{
    fn on_response(&self, request: &RequestSummary<'_>, response: &mut Response) {
        self(request, response);
    }
}

/// What a [`ResponseHook`] sees of the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestSummary<'a> {
    /// The request as it came back with the answer (with its body and the path parameters
    /// the router recorded, and what a layer inside rewrote); for an answer the runtime gives
    /// while a worker holds it (its 504), the head as it was when the first hook was added.
    pub request: &'a Request,
    /// When the connection finished reading it (see [`WebRequest::received`]).
    pub received: Instant,
}

/// The id of the web connection open under each io token of a shard (0: none), for a worker
/// on any shard to tell whether the client of a request it holds is gone
/// ([`WebRequest::is_client_gone`]). The shard writes it: when a connection opens, before any
/// of its requests is read; when it closes, before its token can be reused. Ids are never
/// reused (they count up from 1), so a connection seen gone stays gone, and a newer one under
/// the same token is not taken for it. A worker gets a request through a queue that publishes
/// it, so it sees the id stored at the open or what came after, never what the token held
/// before (a closed connection's 0): a live client is never seen gone (modelled by
/// `tests/loom_connections.rs`).
#[doc(hidden)]
pub struct OpenConnections(Segmented<AtomicU64>);

impl fmt::Debug for OpenConnections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenConnections").finish_non_exhaustive()
    }
}

impl Default for OpenConnections {
    fn default() -> Self {
        OpenConnections::new()
    }
}

impl OpenConnections {
    /// No connection under any token.
    pub fn new() -> Self {
        OpenConnections(Segmented::new())
    }

    /// Connection `id` (never 0) opened under `token`. (Past the table's ~16 M tokens nothing
    /// is kept: such a connection is never seen gone.)
    pub fn opened(&self, token: usize, id: u64) {
        if let Some(open) = self.0.get_or_alloc(token) {
            open.store(id, Ordering::Release);
        }
    }

    /// The connection under `token` closed.
    pub fn closed(&self, token: usize) {
        if let Some(open) = self.0.get(token) {
            open.store(0, Ordering::Release);
        }
    }

    /// Whether connection `id`, opened under `token`, closed since (no entry: a token past the
    /// table, never written: cannot tell, so not gone).
    pub fn is_gone(&self, token: usize, id: u64) -> bool {
        self.0.get(token).is_some_and(|open| open.load(Ordering::Acquire) != id)
    }
}

/// A request and the means to answer it, on its way to whoever answers it. It is `Send`: a
/// worker on any shard answers it with [`WebRequest::respond`], and the response goes back to
/// the connection's shard (directly when that is the current shard, through its inbox
/// otherwise). Dropped unanswered, it answers 500 itself: a worker bug never leaves a client
/// hanging.
///
/// One pointer wide, so a `Message` holding it stores it inline; the pointee is recycled per
/// shard, so handing a request to an actor allocates nothing once warm.
pub struct WebRequest(Option<Box<Inner>>);

struct Inner {
    /// INVARIANT: `Some` until `respond`/`respond_stream` consume the request.
    request: Option<Box<Request>>,
    reply: Option<ReplyTo>,
    received: Instant,
    /// The deadline last set (`set_deadline`), for the worker to see.
    deadline: std::cell::Cell<Option<Instant>>,
    /// Allocated by the first hook (most requests have none).
    hooks: Option<Box<Hooks>>,
    /// While kept for reuse: the next spare.
    next: Option<Box<Inner>>,
    /// The answer, while this box carries it to a connection on another shard (it travels as
    /// the shard's task: see `answer`; without one, it carries a skipped request back).
    answer: Option<Response>,
}

/// A request's hooks, in the order added (any number: a trial's fifth layer lost its
/// hook — `Cors`'s — when four were the most).
type Hooks = Vec<Arc<dyn ResponseHook>>;

/// Recycled `Inner`s kept per thread.
const POOL: usize = 1024;

/// The recycled `Inner`s of a thread, linked through their `next`: taking one and giving one
/// back are a few moves, where a `RefCell<Vec<_>>` costs a borrow flag and a length check each.
struct Spares {
    top: std::cell::Cell<Option<Box<Inner>>>,
    /// How many spares are kept (at most `POOL`).
    len: std::cell::Cell<usize>,
}

impl Spares {
    // (The cell is empty between `take` and `replace`, and a spare's `next` is empty while
    // it is in use: what `replace` hands back is `None`, forgotten rather than dropped.)
    #[inline(always)]
    fn pop(&self) -> Option<Box<Inner>> {
        let mut top = self.top.take()?;
        std::mem::forget(self.top.replace(top.next.take()));
        self.len.set(self.len.get() - 1);
        Some(top)
    }

    /// Keeps `inner`, which must hold nothing (no request, no hooks, no `next`).
    #[inline(always)]
    fn push(&self, mut inner: Box<Inner>) {
        // INVARIANT: a spare holds nothing (`WebRequest::new` forgets what it finds there).
        debug_assert!(
            inner.request.is_none() && inner.hooks.is_none() && inner.next.is_none() && inner.answer.is_none()
        );
        let len = self.len.get();
        if len < POOL {
            self.len.set(len + 1);
            std::mem::forget(std::mem::replace(&mut inner.next, self.top.take()));
            std::mem::forget(self.top.replace(Some(inner)));
        }
    }
}

impl Drop for Spares {
    /// One box after the other (dropped as a chain, the list would recurse as deep as it is
    /// long).
    fn drop(&mut self) {
        let mut next = self.top.take();
        while let Some(mut inner) = next {
            next = inner.next.take();
        }
    }
}

thread_local! {
    static SPARES: Spares = const { Spares { top: std::cell::Cell::new(None), len: std::cell::Cell::new(0) } };
}

impl WebRequest {
    /// INVARIANT: `Some` until dropped (no lazily made stand-in to check on every access).
    fn inner(&self) -> Option<&Inner> {
        self.0.as_deref()
    }
    fn reply(&self) -> Option<ReplyTo> {
        self.inner().and_then(|i| i.reply)
    }
    fn inner_mut(&mut self) -> &mut Inner {
        self.0.get_or_insert_with(|| {
            Box::new(Inner {
                request: None,
                reply: None,
                received: Instant::now(),
                deadline: std::cell::Cell::new(None),
                hooks: None,
                next: None,
                answer: None,
            })
        })
    }
}

/// What `request()` shows once the request was handed back (never, by the invariant).
static EMPTY: Request = Request::EMPTY;

impl fmt::Debug for WebRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebRequest")
            .field("request", self.request())
            .field("answered", &self.reply().is_none())
            .finish()
    }
}

impl WebRequest {
    #[inline]
    pub(crate) fn new(request: Box<Request>, reply: ReplyTo, received: Instant) -> WebRequest {
        match SPARES.try_with(Spares::pop).ok().flatten() {
            Some(mut b) => {
                // A spare holds nothing (see `recycle`): its fields are set, not dropped.
                std::mem::forget(b.request.replace(request));
                b.reply = Some(reply);
                b.received = received;
                b.deadline.set(None);
                WebRequest(Some(b))
            }
            None => WebRequest(Some(Box::new(Inner {
                request: Some(request),
                reply: Some(reply),
                received,
                deadline: std::cell::Cell::new(None),
                hooks: None,
                next: None,
                answer: None,
            }))),
        }
    }

    /// The request.
    pub fn request(&self) -> &Request {
        self.inner().and_then(|i| i.request.as_deref()).unwrap_or(&EMPTY)
    }

    /// The request, to change (the router records path parameters this way).
    pub fn request_mut(&mut self) -> &mut Request {
        self.inner_mut().request.get_or_insert_with(Box::default)
    }

    /// When the connection finished reading the request (for one of an unsafe method read
    /// behind others, when it was handed out, once they were answered: RFC 9112 §9.3.2).
    pub fn received(&self) -> Instant {
        self.inner().map_or_else(Instant::now, |i| i.received)
    }

    /// Adds a hook that sees (and may change) the response; any number of them, run the last
    /// added first (the innermost layer's).
    ///
    /// A hook added while the request is handed to its handler on the connection's shard (by
    /// middleware: [`Cors`](super::Cors), [`request_log`](super::request_log)) is kept by the
    /// connection and runs there, on whatever answers the request: the handler's response, the
    /// runtime's 500 for a request dropped unanswered (a worker that panicked), its 503, or the
    /// connection's own 504 when the deadline passes first (then a late answer is dropped
    /// without running it). A hook added later (by a worker) runs where the worker responds.
    pub fn on_response(&mut self, hook: Arc<dyn ResponseHook>) {
        let inner = self.inner_mut();
        if let (Some(to), Some(request)) = (inner.reply, inner.request.as_deref())
            && super::dispatch::note_hook(to.conn, to.seq, &hook, request, inner.received)
        {
            return;
        }
        self.inner_mut().hooks.get_or_insert_with(Default::default).push(hook);
    }

    /// Answers the request after `deadline` with 504 if nobody has by then (`WebHandler`'s
    /// `request_timeout`). Takes effect when called on the connection's shard, which is where
    /// handlers run.
    #[inline]
    pub fn set_deadline(&self, deadline: Instant) {
        // (By reference: only the connection and seq are read in the common case.)
        if let Some(inner) = self.inner()
            && let Some(to) = inner.reply.as_ref()
        {
            inner.deadline.set(Some(deadline));
            server::set_deadline(to, deadline);
        }
    }

    /// When the connection answers the request 504 if nobody has by then (the last
    /// [`set_deadline`](Self::set_deadline); a [`WebHandler`](super::WebHandler) sets it from
    /// its `request_timeout`), if it has one. A worker can pass it on to the calls it makes.
    pub fn deadline(&self) -> Option<Instant> {
        self.inner().and_then(|i| i.deadline.get())
    }

    /// The deadline has passed: the client has its 504 (or is about to), and an answer now would
    /// be dropped. A worker behind on its queue can skip such requests instead of serving them.
    pub fn is_expired(&self) -> bool {
        self.deadline().is_some_and(|d| Instant::now() >= d)
    }

    /// Whether the client's connection is gone: closed by a reset, a failed write, a timeout
    /// or the server, so an answer now would go nowhere. A worker with a long task (a long
    /// poll, a costly query) asks between steps and gives the request up (a
    /// [`WebWorker`](super::WebWorker) holds the `WebRequest` through
    /// [`take_request`](super::WebWorker::take_request)). A client that only half-closed (shut
    /// down its sending side) is still there: it gets its answers.
    ///
    /// Read from any shard of the node, lock-free (one atomic load). `false` off the node's
    /// shard threads, for an answered request and for one made by
    /// [`answer_at_once`](super::answer_at_once): there is no connection to ask there.
    pub fn is_client_gone(&self) -> bool {
        let Some(to) = self.reply() else { return false };
        crate::shard::with_current(|here| {
            let Some(remote) = here.filter(|s| s.node.id == to.node).and_then(|s| s.node.shards.get(to.shard.index()))
            else {
                return false;
            };
            remote.connections.is_gone(to.token.0, to.conn)
        })
    }

    /// Gives the request up if it [`is_expired`](Self::is_expired) or its client
    /// [`is_client_gone`](Self::is_client_gone), without an answer: the connection answers
    /// an expired one 504 (or did), as it does any request not answered in time; a gone client
    /// gets nothing. `None` then; else the request back. A worker behind on its queue skips
    /// such requests instead of working on answers nobody will get — dropping one instead
    /// would answer it 500, which can reach the client before the 504. A
    /// [`WebWorker`](super::WebWorker) does this before its async methods unless its
    /// [`SKIPS_EXPIRED`](super::WebWorker::SKIPS_EXPIRED) is `false`.
    pub fn skip_if_expired(mut self) -> Option<WebRequest> {
        if !self.is_expired() && !self.is_client_gone() {
            return Some(self);
        }
        let mut inner = self.0.take()?;
        // Unanswered on purpose: nothing is sent. The request goes back to its connection to
        // be parsed into again (dropped, it made the connection allocate a request anew for
        // each request skipped, just when workers fall behind: review 65).
        let (Some(to), Some(request)) = (inner.reply.take(), inner.request.take()) else {
            recycle(inner);
            return None;
        };
        match server::take_back(to, request) {
            Ok(()) => recycle(inner),
            // From another shard, in this box (no answer in it), as `answer` sends one.
            Err(request) => send_home(inner, to, Some(request), None),
        }
        None
    }

    /// Answers the request. (A `Body::Streamed` response is sent with an empty body: streams
    /// go through [`respond_stream`](Self::respond_stream).)
    pub fn respond(self, mut response: Response) {
        self.respond_from(&mut response);
        response.discard();
    }

    /// [`respond`](Self::respond) with the response encoded from where it is, not moved: a
    /// caller holding it in a local spares a copy of it into the argument. The caller drops
    /// it (with [`Response::discard`]).
    #[inline(never)]
    pub(crate) fn respond_from(mut self, response: &mut Response) {
        let Some(inner) = self.0.take() else { return };
        // It holds nothing now: its `Drop` would only look.
        std::mem::forget(self);
        answer(inner, response);
    }

    /// Answers with `head` (its body is ignored) and a body streamed in chunks through the
    /// returned [`ResponseStream`] (`Transfer-Encoding: chunked`; to an HTTP/1.0 client, the
    /// body ends when the connection closes).
    pub fn respond_stream(mut self, mut head: Response) -> ResponseStream {
        head.body = Body::Streamed;
        let to = self.inner_mut().reply.take();
        self.inner_mut().run_hooks(&mut head);
        let state = Arc::new(StreamState::new(to.is_none()));
        if let Some(to) = to {
            server::deliver(to, Delivery::Response(head, None));
            // After the head, in order: the connection keeps it while the stream is open
            // (dropped anywhere — a HEAD, a connection gone — it closes the stream).
            server::deliver(to, Delivery::Watch(StreamWatch(state.clone())));
        }
        ResponseStream { to, ended: false, state }
    }
}

impl ShardWork for Inner {
    /// On the connection's shard: delivers the answer it carries, and is kept for the next
    /// request read here.
    fn run(mut self: Box<Self>, shard: &Rc<Shard>) {
        match (self.reply.take(), self.answer.take(), self.request.take()) {
            (Some(to), Some(answer), request) => server::deliver_response_home(shard, to, answer, request),
            // A request skipped unanswered, back for reuse.
            (Some(to), None, Some(request)) => server::take_back_home(shard, to, request),
            _ => {}
        }
        recycle(self);
    }
}

impl Inner {
    fn run_hooks(&mut self, response: &mut Response) {
        let Some(hooks) = self.hooks.take() else { return };
        let request = self.request.as_deref().unwrap_or(&EMPTY);
        run_hooks(hooks.iter().map(|h| &**h), &RequestSummary { request, received: self.received }, response);
    }
}

/// Runs `hooks` on `response`, the last added first (the innermost layer's). Each runs under
/// `catch_unwind` (also while a panic unwinds: a panic caught inside a destructor does not
/// abort), so a panicking hook costs the client only a 500, never its answer.
pub(crate) fn run_hooks<'h>(
    hooks: impl DoubleEndedIterator<Item = &'h dyn ResponseHook>,
    summary: &RequestSummary<'_>,
    response: &mut Response,
) {
    sendable(response, "a handler answered");
    let streamed = matches!(response.body, Body::Streamed);
    for h in hooks.rev() {
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.on_response(summary, response)));
        if let Err(payload) = ran {
            let text = crate::shard::executor::panic_text(&*payload);
            let request = summary.request;
            crate::log_limit::log_limited!(Error, target: "pinion::web", "a response hook panicked on {} {}, answering 500: {text}", request.method_token(), request.target());
            *response = Response::status(StatusCode::INTERNAL_SERVER_ERROR);
        } else {
            // A hook's own status too, before the hooks outside it (review 69: made 500 by
            // the connection after them all, it went out without their fields).
            sendable(response, "a response hook set");
        }
    }
    if !streamed && matches!(response.body, Body::Streamed) {
        // A held answer a hook marked streamed: no chunks will come (as `respond` does).
        response.body = Body::Empty;
    }
}

/// A status that cannot be sent (a 1xx as a final answer, or outside 100..=599) made the
/// 500 the connection would send instead (`Outgoing::complete_general`), before the hooks
/// that follow see it: they add their fields to, and log, what goes out (review 64: the 500
/// replaced the hooked answer after them, without its CORS fields).
#[inline]
fn sendable(response: &mut Response, who: &str) {
    if !(200..=599).contains(&response.status.0) {
        log::warn!(target: "pinion::web", "{who} status {}: sent as 500", response.status.0);
        *response = Response::status(StatusCode::INTERNAL_SERVER_ERROR);
    }
}

/// The response hooks a connection keeps for one request (see [`WebRequest::on_response`]),
/// with a copy of the request's head for the answers it makes itself (its 504: the request is
/// with the handler then). Recycled per thread with the buffers of its copy: hooking a
/// request allocates nothing once warm.
pub(crate) struct Hooked {
    hooks: Hooks,
    head: Request,
    received: Instant,
}

impl Hooked {
    /// Hooks for `request`, read at `received` (a recycled box if there is one).
    pub(crate) fn new(request: &Request, received: Instant) -> Box<Hooked> {
        let mut hooked = SPARE_HOOKED
            .with(|s| s.borrow_mut().pop())
            .unwrap_or_else(|| Box::new(Hooked { hooks: Default::default(), head: Request::EMPTY, received }));
        request.clone_head_into(&mut hooked.head);
        hooked.received = received;
        hooked
    }

    /// Adds `hook`.
    pub(crate) fn add(&mut self, hook: &Arc<dyn ResponseHook>) {
        self.hooks.push(hook.clone());
    }

    /// Runs the hooks on `response`, with `request` if it came back with it (else the copy),
    /// then keeps the box for the next hooked request. (Always the copy, tried after a trial
    /// found `request_log` outside a layer that rewrote the path logging the new path for an
    /// answer and the old one for the 504, cost hooks the path parameters the router records
    /// and the body, a review found.)
    pub(crate) fn run(mut self: Box<Self>, request: Option<&Request>, response: &mut Response) {
        let request = request.unwrap_or(&self.head);
        run_hooks(self.hooks.iter().map(|h| &**h), &RequestSummary { request, received: self.received }, response);
        self.hooks.clear();
        // (A big head's buffer is not kept: 64 spares stay small.)
        self.head.shrink(SPARE_HEAD_MAX);
        SPARE_HOOKED.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < SPARE_HOOKED_MAX {
                s.push(self);
            }
        });
    }
}

/// Recycled [`Hooked`] boxes kept per thread, at most this many, each with at most this much
/// of a head's buffer.
const SPARE_HOOKED_MAX: usize = 64;
const SPARE_HEAD_MAX: usize = 2048;

thread_local! {
    #[allow(clippy::vec_box, reason = "boxes handed out and taken back whole: a `Vec<Hooked>` would copy each in and out")]
    static SPARE_HOOKED: std::cell::RefCell<Vec<Box<Hooked>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Drop for WebRequest {
    fn drop(&mut self) {
        let Some(inner) = self.0.take() else { return };
        if inner.reply.is_none() {
            return recycle(inner);
        }
        // Unanswered: 500, sent as any answer (the request goes back with it: the connection's
        // hooks see it, and it is reused; from another shard, in this box, as `answer` says).
        let mut resp = Response::status(StatusCode::INTERNAL_SERVER_ERROR);
        answer(inner, &mut resp);
        resp.discard();
    }
}

/// Sends `response` to the connection `inner` is from (through its hooks), and keeps the box.
fn answer(mut inner: Box<Inner>, response: &mut Response) {
    let Some(to) = inner.reply.take() else { return recycle(inner) };
    if matches!(response.body, Body::Streamed) {
        response.body = Body::Empty;
    }
    if inner.hooks.is_some() {
        inner.run_hooks(response);
    }
    let request = inner.request.take();
    match server::deliver_response_here(to, response, request) {
        // Emptied: the request was taken, and so were the hooks if there were any.
        Ok(()) => {
            let _ = SPARES.try_with(|s| s.push(inner));
        }
        Err(request) => send_home(inner, to, request, Some(response.take())),
    }
}

/// The connection is on another shard: `inner` carries the answer (or, without one, a
/// request skipped unanswered) there and is recycled there, where requests are made (recycled
/// here, the worker's shard would fill its spares while the connection's allocated one a
/// request, and the trip would need a box of its own).
#[cold]
#[inline(never)]
fn send_home(mut inner: Box<Inner>, to: ReplyTo, request: Option<Box<Request>>, answer: Option<Response>) {
    inner.request = request;
    inner.answer = answer;
    inner.reply = Some(to);
    route::run_on(to.node, to.shard, inner);
}

/// Keeps an answered request's box for the next one, emptied: nothing it held outlives the
/// request.
#[inline(never)]
fn recycle(mut inner: Box<Inner>) {
    inner.request = None;
    inner.hooks = None;
    inner.reply = None;
    inner.answer = None;
    let _ = SPARES.try_with(|s| s.push(inner));
}

/// The body of a streamed response, sent chunk by chunk from any shard. Dropped without
/// [`finish`](Self::finish), the body is cut short: the connection closes after what was sent,
/// so the client sees an incomplete response rather than a complete-looking wrong one.
///
/// [`is_closed`](Self::is_closed) tells a sender holding many streams which to drop: the
/// client went away, was too slow, the body is never sent (the request was a HEAD, or the
/// head's status has no content: 204, 205, 304), or the connection closed for another
/// reason. A client that closed its side is seen when a write
/// to it fails or the reset the next chunk brings back arrives, so a quiet stream learns of it
/// soon after its next chunk (a client that only shut down its sending side still reads, and
/// is streamed on). Chunks sent meanwhile go nowhere.
///
/// The connection bounds what waits for a slow client: when more than 4 MiB of streamed
/// body waits on one connection (all its streams together: pipelined requests behind a
/// stream that never ends stream too), or the client takes nothing for
/// `HttpLimits::idle_timeout`, the connection closes, cutting its streams
/// (`WebServerStats::slow_clients` counts it). Nothing pushes back on a sender that does not
/// ask: a sender producing faster than its clients read waits with
/// [`writable`](Self::writable), or reads [`backlog`](Self::backlog). One
/// chunk may be larger than the bound: what exceeds it is judged after the client took what
/// it could. Across connections, a shard holds at most `HttpLimits::max_stream_bytes_per_shard`
/// (256 MiB by default) for a server's streams: past it, the connections holding the most are
/// cut the same way (a soak trial: 100 clients that stopped reading a sender that did not
/// wait held 387 MB, each under 4 MiB; the same clients of a sender waiting with
/// `writable(256 KiB)`, 11 MB).
///
/// `Node::stop` cuts the streams still open (the client sees a truncated body); a worker
/// that would end them cleanly calls `finish` on each in its `terminate`.
pub struct ResponseStream {
    to: Option<ReplyTo>,
    ended: bool,
    state: Arc<StreamState>,
}

impl fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseStream").field("ended", &self.ended).finish()
    }
}

impl ResponseStream {
    /// Whether the stream is closed for good (see the type's docs): what is sent now goes
    /// nowhere.
    pub fn is_closed(&self) -> bool {
        self.state.is_closed()
    }

    /// Bytes of this stream the client has not taken yet: sent and still on their way to the
    /// connection, and held there (as of its last write; 0 once closed). Over 4 MiB the
    /// connection is cut as a slow client (see the type's docs): a sender that can produce
    /// faster than its client reads keeps this under a bound of its own, waiting with
    /// [`writable`](Self::writable) before it sends more (a trial: a worker that sent 12 MB
    /// without waiting was cut though its client read as fast as it could). A sender holding
    /// many streams reads it to tell the slow clients from the others.
    pub fn backlog(&self) -> usize {
        self.state.backlog()
    }

    /// Waits until the client took enough of this stream that its
    /// [`backlog`](Self::backlog) is at most `limit` bytes: `true`; or until the stream closed
    /// (`false`: stop sending). At once if it is so already. The connection wakes the waiting
    /// task as its writes lower the backlog (a shard's process, or any other executor's task:
    /// the future runs anywhere):
    ///
    /// ```no_run
    /// use pinion::web::ResponseStream;
    ///
    /// async fn send_paced(stream: &mut ResponseStream, chunks: Vec<Vec<u8>>) {
    ///     for chunk in chunks {
    ///         if !stream.writable(1 << 20).await {
    ///             return; // the client went away (or was cut)
    ///         }
    ///         stream.send(chunk);
    ///     }
    /// }
    /// ```
    ///
    /// A client that stops reading keeps the sender waiting until the connection's
    /// `HttpLimits::idle_timeout` cuts it (then `false`). A process waiting here handles no
    /// other message meanwhile: a worker feeding many streams does better to read
    /// [`backlog`](Self::backlog) and pass over (or drop) the slow ones.
    pub fn writable(&mut self, limit: usize) -> Writable<'_> {
        self.state.writable(limit)
    }

    /// Sends one chunk (an empty chunk is skipped).
    pub fn send(&mut self, chunk: impl Into<Vec<u8>>) {
        let chunk = chunk.into();
        if let (Some(to), false) = (self.to, chunk.is_empty()) {
            // Counted before it goes: delivered on this shard, it is taken in at once.
            self.state.sent(chunk.len());
            server::deliver(to, Delivery::Chunk(Chunk::Owned(chunk)));
        }
    }

    /// Sends one chunk that other streams get too (a broadcast to many clients): each stream
    /// takes a reference, and the bytes are copied only as each connection encodes them,
    /// where [`send`](Self::send) needs a `Vec` of its own per stream. An empty chunk is
    /// skipped.
    pub fn send_shared(&mut self, chunk: &Arc<[u8]>) {
        if let (Some(to), false) = (self.to, chunk.is_empty()) {
            self.state.sent(chunk.len());
            server::deliver(to, Delivery::Chunk(Chunk::Shared(chunk.clone())));
        }
    }

    /// Ends the body.
    pub fn finish(mut self) {
        self.ended = true;
        if let Some(to) = self.to.take() {
            server::deliver(to, Delivery::End);
        }
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        if let Some(to) = self.to.take() {
            server::deliver(to, Delivery::Abort);
        }
    }
}
