//! The web meta-processes: HTTP requests become actor messages.
//!
//! A [`WebServer`] listens on every shard (`SO_REUSEPORT`); a connection lives on the shard
//! that accepted it, where the HTTP layer ([`crate::http`]) parses its requests. Each request
//! goes to the server's [`Handler`]:
//!
//! ```text
//! socket → shard's Poll → web/conn.rs (http::Codec) → Handler
//!            ├─ a plain function: answers on the shard, no hop
//!            ├─ Router → route's handler (path parameters recorded on the request)
//!            ├─ middleware (auth 401, CORS, request log, rate limit 429, body limit 413)
//!            │    → inner handler
//!            └─ WebHandler → WebRequest message → actor (e.g. a WebWorker) on any shard
//!                    full mailbox: 503 + Retry-After at once; no such process: 503;
//!                    no answer in time: 504; dropped unanswered: 500
//! actor: req.respond(resp) → back to the connection's shard (direct if it is this one)
//!      → http::Outgoing: written in request order, everything ready in one write
//! ```
//!
//! At a light load, a request for an idle pool worker on the connection's own shard is handled
//! inside the connection's dispatch: the worker is polled there and then, and answers in place
//! as a plain function does (see [`WebHandler`]).
//!
//! # Behind a reverse proxy
//!
//! What a trial behind nginx and HAProxy found worth knowing:
//! - **Idle upstream connections.** A connection idle for `HttpLimits::idle_timeout` (75 s)
//!   is closed between requests, never after part of one was read; keep the proxy's own idle
//!   timeout for upstream connections below it (nginx's upstream `keepalive_timeout` is 60 s
//!   by default), so the proxy lets go first.
//! - **Rolling restarts.** [`WebServer::drain`] stops listening and ends each pooled
//!   connection after the answers to what it read (the last with `Connection: close`); wait
//!   until `stats().connections` is 0, or a bound, before stopping the node.
//! - **The client.** [`Request::peer_addr`](crate::http::Request::peer_addr) is the proxy's
//!   address; the client's is in the field the proxy sets (`X-Forwarded-For`, `Forwarded`),
//!   to be trusted only when the peer is the proxy.
//! - **Streams.** A proxy that buffers responses holds a stream's chunks back: turn buffering
//!   off for those routes (nginx: `proxy_buffering off`, or the answer's `X-Accel-Buffering:
//!   no`).
//! - **Uploads.** A body arriving at least at `HttpLimits::min_body_rate` (4 KiB/s) is not cut
//!   by `body_read_timeout`; a slower one is (after `body_read_timeout` plus the time its
//!   bytes excuse at that rate): with the proxy's request buffering off, lower the rate for
//!   slow clients, or turn the proxy's buffering on. A body over its bound is answered 413 at
//!   once and then read off (up to 64 MiB) before the connection closes, so a proxy that sends
//!   the whole body before it reads (nginx) gets the 413, not a reset.
//!
//! A router, its middleware and plain functions can be tested without a socket:
//! [`answer_at_once`] hands them a request as a connection would.
//!
//! What no handler sees — connections accepted and refused, requests refused by the
//! connection, 504s, slow clients cut — is counted per server ([`WebServer::stats`],
//! `stats.rs`).
//!
//! A client that waits for `100 Continue` before sending a body is first asked about with the
//! head alone ([`Handler::check_head`]): the router's 404/405, `auth`'s 401 and a full pool's
//! 503 go out before the upload, and the connection closes (the body is not read). A client
//! that sent its body with the head anyway is answered as any request, its body read, and its
//! connection kept.
//! A request with a body is held to its handler's bound ([`Handler::body_limit`], the
//! [`body_limit`] layer; the server's `max_body_bytes` otherwise), asked with the head: a
//! route can take larger or smaller bodies than the rest, and a declared length over it is
//! refused before the upload. The bodies being read are bounded per shard too
//! (`HttpLimits::max_body_bytes_per_shard`: 503 past it). A streamed body
//! ([`WebRequest::respond_stream`]) tells its sender when the client is gone
//! ([`ResponseStream::is_closed`]) and lets it wait until the client took enough
//! ([`ResponseStream::writable`]); what waits for a slow client is bounded per connection and
//! per shard.

mod conn;
mod dispatch;
mod handler;
mod middleware;
mod request;
mod router;
mod server;
mod stats;
mod worker;

pub use crate::http::backlog::Writable;
pub(crate) use conn::Connection;
pub use dispatch::answer_at_once;
pub(crate) use handler::shed;
pub use handler::{Handler, WebHandler, WebHandlerOptions, WebTarget};
pub use middleware::{
    Auth, BodyLimit, Cors, Guard, Hook, Layer, MAX_RATE_KEYS, RateLimit, RequestLog, auth, bearer, body_limit, guard,
    hook, rate_limit, request_log,
};
#[doc(hidden)]
pub use request::OpenConnections;
pub use request::{RequestSummary, ResponseHook, ResponseStream, WebRequest};
pub use router::Router;
pub use server::{WebServer, WebServerOptions};
pub use stats::WebServerStats;
pub use worker::WebWorker;
