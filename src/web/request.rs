//! [`WebRequest`]: a parsed request on its way to whoever answers it, carrying the means to
//! answer. It is `Send`: a worker on any shard answers it with [`WebRequest::respond`], and the
//! response goes back to the connection's shard (directly when that is the current shard,
//! through its inbox otherwise). Dropped unanswered, it answers 500 itself: a worker bug never
//! leaves a client hanging.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use mio::Token;

use super::server::{self, Delivery};
use crate::http::{Body, Request, Response, StatusCode};
use crate::process::{NodeId, ShardId};

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

/// Changes a response on its way out (CORS fields, logging). Runs where `respond` is called.
pub trait ResponseHook: Send + Sync + 'static {
    /// Called with the request's method and path and the response about to be sent.
    fn on_response(&self, request: &RequestSummary<'_>, response: &mut Response);
}

/// What a [`ResponseHook`] sees of the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestSummary<'a> {
    /// The request.
    pub request: &'a Request,
    /// When the connection finished reading it.
    pub received: Instant,
}

const HOOKS: usize = 4;

/// A request and the means to answer it. See the module docs.
pub struct WebRequest {
    request: Request,
    reply: Option<ReplyTo>,
    received: Instant,
    hooks: [Option<Arc<dyn ResponseHook>>; HOOKS],
}

impl fmt::Debug for WebRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebRequest").field("request", &self.request).field("answered", &self.reply.is_none()).finish()
    }
}

impl WebRequest {
    pub(crate) fn new(request: Request, reply: ReplyTo, received: Instant) -> WebRequest {
        WebRequest { request, reply: Some(reply), received, hooks: Default::default() }
    }

    /// The request.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The request, to change (the router records path parameters this way).
    pub fn request_mut(&mut self) -> &mut Request {
        &mut self.request
    }

    /// When the connection finished reading the request.
    pub fn received(&self) -> Instant {
        self.received
    }

    /// Adds a hook that sees (and may change) the response. False if the request already has
    /// the most hooks it can carry (four).
    pub fn on_response(&mut self, hook: Arc<dyn ResponseHook>) -> bool {
        match self.hooks.iter_mut().find(|h| h.is_none()) {
            Some(free) => {
                *free = Some(hook);
                true
            }
            None => false,
        }
    }

    /// Answers the request after `deadline` with 504 if nobody has by then (`WebHandler`'s
    /// `request_timeout`). Takes effect when called on the connection's shard, which is where
    /// handlers run.
    pub fn set_deadline(&self, deadline: Instant) {
        if let Some(to) = self.reply {
            server::set_deadline(to, deadline);
        }
    }

    /// Answers the request.
    pub fn respond(mut self, mut response: Response) {
        let Some(to) = self.reply.take() else { return };
        self.run_hooks(&mut response);
        let request = std::mem::take(&mut self.request);
        server::deliver(to, Delivery::Response(response, Some(request)));
    }

    /// Answers with `head` (its body is ignored) and a body streamed in chunks through the
    /// returned [`ResponseStream`] (`Transfer-Encoding: chunked`; to an HTTP/1.0 client, the
    /// body ends when the connection closes).
    pub fn respond_stream(mut self, mut head: Response) -> ResponseStream {
        head.body = Body::Streamed;
        let to = self.reply.take();
        self.run_hooks(&mut head);
        if let Some(to) = to {
            server::deliver(to, Delivery::Response(head, None));
        }
        ResponseStream { to, ended: false }
    }

    fn run_hooks(&mut self, response: &mut Response) {
        let summary = RequestSummary { request: &self.request, received: self.received };
        for hook in self.hooks.iter_mut().rev() {
            if let Some(h) = hook.take() {
                h.on_response(&summary, response);
            }
        }
    }

    /// Takes the request out, leaving the answer to the caller: the request is answered 500
    /// if the returned guard is dropped unanswered. (For handlers that only need the request.)
    pub fn into_parts(mut self) -> (Request, WebRequest) {
        let request = std::mem::take(&mut self.request);
        (request, self)
    }
}

impl Drop for WebRequest {
    fn drop(&mut self) {
        if self.reply.is_some() {
            let mut resp = Response::status(StatusCode::INTERNAL_SERVER_ERROR);
            self.run_hooks(&mut resp);
            if let Some(to) = self.reply.take() {
                server::deliver(to, Delivery::Response(resp, None));
            }
        }
    }
}

/// The body of a streamed response, sent chunk by chunk from any shard. Dropped without
/// [`finish`](Self::finish), the body is cut short: the connection closes after what was sent,
/// so the client sees an incomplete response rather than a complete-looking wrong one.
pub struct ResponseStream {
    to: Option<ReplyTo>,
    ended: bool,
}

impl fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseStream").field("ended", &self.ended).finish()
    }
}

impl ResponseStream {
    /// Sends one chunk (an empty chunk is skipped).
    pub fn send(&mut self, chunk: impl Into<Vec<u8>>) {
        let chunk = chunk.into();
        if let (Some(to), false) = (self.to, chunk.is_empty()) {
            server::deliver(to, Delivery::Chunk(chunk));
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
