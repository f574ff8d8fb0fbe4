//! [`Handler`]: what a connection hands each request to. A plain function is a handler (it
//! runs on the connection's shard and answers at once); a [`WebHandler`] forwards the request
//! to an actor as a [`WebRequest`] message; the router and the middleware are handlers that
//! wrap handlers.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use super::request::WebRequest;
use crate::error::SendError;
use crate::http::{Request, Response, StatusCode};
use crate::node::route;
use crate::process::{Pid, Priority, Target};
use crate::shard::with_current;

/// Takes a request and sees that it is answered (now, or later from anywhere).
pub trait Handler: Send + Sync + 'static {
    /// Handles one request. Runs on the shard of the connection it came from.
    fn handle(&self, req: WebRequest);

    /// Asked about a request whose client waits for `100 Continue` before it sends the body
    /// (`Expect: 100-continue`), with the head only: a final answer now, or `None` to have
    /// the body sent and the request handled as usual. With an answer the body is not read
    /// and the connection closes after it (RFC 9110 §10.1.1), so a client is not made to
    /// upload what would be refused. Must not have effects: the request may still come. No
    /// stream follows the answer: a `Body::Streamed` one is sent with an empty body (as
    /// [`WebRequest::respond`] sends it).
    ///
    /// The router answers here what it would answer anyway (404, 405; a route's handler is
    /// asked with the path parameters recorded), `auth` its 401, `Cors` a preflight and its
    /// fields on other answers, `request_log` logs the answer; `rate_limit` its 429 if the
    /// client is over its rate now (taking no token); a [`WebHandler`] to a pool its 503 if the
    /// pool is full now (taking no slot), but not for a request of an unsafe method read
    /// behind requests still in flight (it waits its turn: the pool is asked then); a plain
    /// function and any handler that does not implement this say `None`. An extension method
    /// ([`Method::Extension`](crate::http::Method::Extension)) is asked about like any other:
    /// the router answers 501 for one no route names.
    ///
    /// The router also asks a route's handler about a CORS preflight (`OPTIONS` with `Origin`
    /// and `Access-Control-Request-Method`) for the method it takes, when no route on the path
    /// takes OPTIONS: a `Cors` layer wrapping that route alone answers it; `None` leaves the
    /// router's 204 with `Allow`.
    fn check_head(&self, req: &Request) -> Option<Response> {
        let _ = req;
        None
    }

    /// The most body bytes this request may carry, if not the server's
    /// [`max_body_bytes`](crate::http::HttpLimits::max_body_bytes) — lower or higher. Asked
    /// with the head only, once it is in, for a request that has a body (never for one
    /// without); a longer body is answered 413 and the connection closes: a declared length at
    /// once (before `100 Continue`), a chunked body as soon as its chunks pass the bound.
    ///
    /// The router asks the route's handler (without the path parameters: they are recorded
    /// after), and the fallback for a path no route takes; the [`body_limit`](super::body_limit) layer gives
    /// its bound unless the handler it wraps gives one (the innermost bound wins, so a route
    /// can raise what the whole router is held to); the other layers ask the handler they
    /// wrap. A layer of your own that wraps handlers forwards this (and
    /// [`check_head`](Self::check_head)) to them, or their bounds are lost (both default to
    /// `None`: a trial's wrapper that forgot them let a client upload before its 401, and put
    /// a route back under the server's bound); the [`hook`](super::hook) and
    /// [`guard`](super::guard) layers do it for the common cases. A panic here answers 500.
    fn body_limit(&self, req: &Request) -> Option<usize> {
        let _ = req;
        None
    }
}

/// A plain function answers on the connection's shard, at once, without an actor hop.
impl<F> Handler for F
where
    F: Fn(&Request) -> Response + Send + Sync + 'static,
{
    fn handle(&self, req: WebRequest) {
        let resp = self(req.request());
        req.respond(resp);
    }
}

impl Handler for Arc<dyn Handler> {
    fn handle(&self, req: WebRequest) {
        (**self).handle(req)
    }
    fn check_head(&self, req: &Request) -> Option<Response> {
        (**self).check_head(req)
    }
    fn body_limit(&self, req: &Request) -> Option<usize> {
        (**self).body_limit(req)
    }
}

/// Who a [`WebHandler`] hands requests to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebTarget {
    /// One process, or a pool (by its pid). A pid names one incarnation: a pool or process a
    /// supervisor restarts comes back with another, and this target then answers 503. To
    /// follow restarts, register it under a name and use [`WebTarget::Name`].
    Pid(Pid),
    /// A name registered on this node, resolved per request.
    Name(String),
    /// Several processes: the one on the connection's shard if there is one (no cross-shard
    /// hop), else the first. (Worker pools with exact backpressure build on this.)
    Nearest(Vec<Pid>),
}

impl From<Pid> for WebTarget {
    fn from(p: Pid) -> Self {
        WebTarget::Pid(p)
    }
}

impl From<&str> for WebTarget {
    fn from(n: &str) -> Self {
        WebTarget::Name(n.to_owned())
    }
}

impl From<String> for WebTarget {
    fn from(n: String) -> Self {
        WebTarget::Name(n)
    }
}

/// Options of a [`WebHandler`].
#[derive(Debug, Clone)]
pub struct WebHandlerOptions {
    /// Who answers.
    pub worker: WebTarget,
    /// Unanswered after this long (from when the request was read; for one of an unsafe
    /// method read behind others, from when it is handed out, once they are answered): 504.
    /// `Duration::MAX`: never.
    /// Zero means the default, 5 s (as Ergo's `RequestTimeout`: a zero would answer 504 to
    /// every request not answered within the dispatch that read it).
    pub request_timeout: Duration,
    /// The `Retry-After` (seconds) sent with a 503 when the worker's mailbox is full.
    pub retry_after_secs: u32,
}

/// The default `request_timeout`.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

impl WebHandlerOptions {
    /// Requests to `worker`, 5 s timeout, `Retry-After: 1`.
    pub fn new(worker: impl Into<WebTarget>) -> Self {
        WebHandlerOptions { worker: worker.into(), request_timeout: DEFAULT_REQUEST_TIMEOUT, retry_after_secs: 1 }
    }
}

/// Forwards each request to an actor as a [`WebRequest`] message. The actor answers with
/// [`WebRequest::respond`] (a [`WebWorker`](super::WebWorker) does that for you).
///
/// - mailbox full: 503 with `Retry-After`, at once (the request never queues);
/// - no such process or name: 503;
/// - not answered within `request_timeout`: 504 (a late answer is dropped; a worker can tell
///   with [`WebRequest::is_expired`] and skip the work with [`WebRequest::skip_if_expired`],
///   as a [`WebWorker`](super::WebWorker) does for requests that waited in its mailbox);
/// - the request is dropped unanswered (the worker panicked, or forgot): 500.
///
/// A request whose client reset its connection, or whose earlier answer could not be
/// written, is gone ([`WebRequest::is_client_gone`]) and a [`WebWorker`](super::WebWorker)
/// skips it. One whose client only closed (a FIN) is still handled when its turn comes (until
/// its deadline: then a `WebWorker` skips it): such a close cannot be told from a half-close
/// (a client that sent its requests, shut down its side and reads the answers) until a write
/// to it fails. A soak trial's clients that sent a slow request and closed at once kept a pool
/// full until `request_timeout`: keep it near what a client waits.
///
/// A single process behind [`WebTarget::Pid`] takes its mailbox down with it when it panics:
/// every request queued there is answered 500, and later ones 503 for good (its pid names one
/// incarnation). A pool — of one worker, if one is enough — loses only the request in hand
/// and carries on.
///
/// One client can fill a small pool by itself: a connection pipelines up to
/// [`HttpLimits::max_in_flight`](crate::http::HttpLimits::max_in_flight) requests (64 by
/// default) before the server stops reading from it, and each is admitted, queued or shed
/// like any other (a trial: a pool holding 34 answered 548 of 3000 requests in one write 503).
/// (Requests of safe methods: one of an unsafe method is handed out alone, once the requests
/// before it are answered.)
/// Lower `max_in_flight` below what a pool holds to keep one connection from taking all of it.
///
/// At a light load (the shard's wait brought a few events) a request for a pool whose worker
/// on the connection's shard is idle — waiting for mail, not scheduled — and that is the last
/// one its connection has read, is handled at once: the worker is polled right inside the
/// connection's dispatch instead of after a pass of the run queue, and an answer it gives
/// while handling is written with the connection's next write, as a plain function's is (no
/// lookup of the connection, no deferred flush). The actor still takes the request from its
/// mailbox, one message at a time, under its own budget; a panic still ends only it. Under
/// load, and for pipelined bursts, requests queue as usual and a worker's poll serves many.
/// [`ShardInfo::polled_in_dispatch`](crate::ShardInfo::polled_in_dispatch) counts the first kind.
#[derive(Clone)]
pub struct WebHandler {
    options: Arc<WebHandlerOptions>,
    /// The pool a `WebTarget::Pid` names, once seen (it stays the pool of that pid: a pool
    /// that stopped refuses with `Stopped`, answered 503). Saves the probe of the manager's
    /// slot on every request.
    pool: Arc<OnceLock<Option<Arc<crate::pool::PoolShared>>>>,
}

impl fmt::Debug for WebHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebHandler").field("options", &self.options).finish()
    }
}

impl WebHandler {
    /// A handler with these options.
    pub fn new(mut options: WebHandlerOptions) -> WebHandler {
        if options.request_timeout.is_zero() {
            options.request_timeout = DEFAULT_REQUEST_TIMEOUT;
        }
        // `Duration::MAX` for "never": cut so that a deadline can be computed.
        options.request_timeout = options.request_timeout.min(crate::http::NEVER);
        WebHandler { options: Arc::new(options), pool: Arc::new(OnceLock::new()) }
    }

    /// A handler forwarding to `worker` with the default options.
    pub fn to(worker: impl Into<WebTarget>) -> WebHandler {
        WebHandler::new(WebHandlerOptions::new(worker))
    }

    fn unavailable(&self, req: WebRequest, full: bool) {
        req.respond(self.unavailable_response(full));
    }

    /// 503, with `Retry-After` when the target was full (not when it is gone or stopping).
    fn unavailable_response(&self, full: bool) -> Response {
        let resp = Response::status(StatusCode::SERVICE_UNAVAILABLE);
        if full { resp.header("retry-after", self.options.retry_after_secs.to_string()) } else { resp }
    }
}

/// A request queued to a pool worker that ended, for which no other worker had room: 503 with
/// `Retry-After`, at once.
pub(crate) fn shed(req: WebRequest) {
    req.respond(Response::status(StatusCode::SERVICE_UNAVAILABLE).header("retry-after", "1"));
}

impl Handler for WebHandler {
    /// A pool that would refuse the request now (full, or stopping) answers 503 before its
    /// client uploads the body (with `Retry-After` when full), as it sheds any request at
    /// once; a pool with room, a request of an unsafe method that waits for the requests
    /// before it (the pool is asked when its turn comes), and a process or name target, say
    /// `None` (their mailbox is tried when the request comes).
    fn check_head(&self, _: &Request) -> Option<Response> {
        let WebTarget::Pid(p) = &self.options.worker else { return None };
        if super::dispatch::head_waits() {
            // Handed out only once the requests before it are answered: the pool's room now
            // says nothing of its room then (a review: a POST behind a GET on a pool of one
            // was refused for the GET's slot).
            return None;
        }
        with_current(|here| {
            let shard = here?;
            let pool = self.pool.get_or_init(|| crate::pool::dispatch::pool_of(&shard.node, *p)).as_ref()?;
            let stopping = pool.is_stopping();
            let refused = pool.refuses_now(crate::pool::dispatch::credit_for(shard, pool));
            refused.then(|| self.unavailable_response(!stopping))
        })
    }

    fn handle(&self, req: WebRequest) {
        req.set_deadline(req.received() + self.options.request_timeout);
        with_current(|here| {
            let Some(shard) = here else { return self.unavailable(req, false) };
            let node = &shard.node;
            let to = match &self.options.worker {
                WebTarget::Pid(p) => {
                    let pool = self.pool.get_or_init(|| crate::pool::dispatch::pool_of(node, *p));
                    if let Some(pool) = pool {
                        let from = node.external;
                        let ahead = super::dispatch::ahead();
                        // A light load, the last request read: if the worker it lands on is
                        // idle on this shard, it is polled right here, inside this dispatch,
                        // so a synchronous answer is kept in place like a plain function's
                        // (no run queue, no lookup of the connection, no deferred flush).
                        let armed = shard.arm_run_now(ahead.is_none());
                        let sent = crate::pool::dispatch::send_ahead(node, shard, pool, from, req, ahead);
                        if armed {
                            shard.poll_run_now();
                        }
                        return match sent {
                            Ok(_) => {}
                            Err(SendError::MailboxFull(req)) => self.unavailable(req, true),
                            Err(e) => self.unavailable(e.into_inner(), false),
                        };
                    }
                    Target::Pid(*p)
                }
                WebTarget::Name(n) => Target::Name(n),
                WebTarget::Nearest(pids) => match pids.iter().find(|p| p.shard == shard.id).or(pids.first()) {
                    Some(p) => Target::Pid(*p),
                    None => return self.unavailable(req, false),
                },
            };
            match route::send(node, Some(shard), node.external, to, req, Priority::Main, None) {
                Ok(_) => {}
                Err(SendError::MailboxFull(req)) => self.unavailable(req, true),
                Err(e) => self.unavailable(e.into_inner(), false),
            }
        })
    }
}
