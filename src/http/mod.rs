//! The HTTP/1.1 layer: bytes in, [`Request`]s out; [`Response`]s in, bytes out. No policy:
//! what to do with a request is the web layer's business (`crate::web`).
//!
//! - `head.rs`: the request head through `httparse`, then every server-side rule of RFC 9112
//!   about it (request-target forms, `Host`, framing headers).
//! - `scan.rs`: the common well-formed head read without httparse, in one copy; anything
//!   else goes to httparse.
//! - `body.rs`: our own body framing: `Content-Length` and chunked (extensions and trailers
//!   bounded).
//! - `conn.rs`: the connection state machine over any `Read + Write` (tested on byte slices):
//!   keep-alive, pipelining, `Expect: 100-continue`, closing after a framing error without
//!   reading another byte as a request.
//! - `backlog.rs`: what a streamed body's sender sees of it (closed, backlog) and its wait
//!   for the backlog to fall.
//! - `outgoing.rs`: responses strictly in request order, even when completed out of order;
//!   all that is ready encoded in one pass and written in one call.
//! - `response.rs`: [`Response`], [`StatusCode`], [`Body`].
//! - `spares.rs`: request boxes and read and write buffers recycled by a server's connections
//!   on a shard, shared between them (a connection holds a buffer only while bytes wait in it).
//! - `encode.rs`: the response encoder: status line, cached `Date` and common head,
//!   fixed-length or chunked bodies, `HEAD`.
//! - `interop.rs` (feature `interop`): conversions to and from the `http` crate's
//!   `Request`/`Response`, and what each keeps: the module `pinion::http::interop`.
//!
//! All bounds are in one [`HttpLimits`]. A request the connection refuses gets a defined
//! answer (400, 408, 413, 414, 417, 421, 431, 501 for a transfer coding it does not know, 505)
//! after which the connection is closed. A method is any token: one pinion does not know by
//! name is a [`Method::Extension`], handed to the handlers like any other (which answer 501
//! unless they take it).

pub(crate) mod backlog;
mod body;
pub(crate) mod conn;
mod encode;
mod head;
#[cfg(feature = "interop")]
pub mod interop;
mod outgoing;
mod request;
mod response;
mod scan;
mod spares;

use std::fmt;
use std::time::Duration;

/// The `http` crate the conversions use (feature `interop`), re-exported as axum and hyper
/// re-export it, so a program needs no dependency of its own kept at the same version:
/// `pinion::http::http::Request`.
///
/// ```
/// use pinion::http::{Request, http};
///
/// let theirs = http::Request::get("/users/7").body(Vec::new()).expect("a request");
/// let ours = Request::try_from(theirs).expect("converted");
/// assert_eq!(ours.path(), "/users/7");
/// ```
#[cfg(feature = "interop")]
pub use ::http;
#[cfg(feature = "interop")]
pub use interop::{HttpPeerAddr, HttpTrailers, InteropError};
pub use request::{Headers, Method, Request, Version};
pub use response::{Body, Response, StatusCode};

pub(crate) use backlog::{StreamState, StreamWatch};
pub use conn::serve_blocking;
pub(crate) use conn::{Ahead, BodyBound, Codec, Phase, RequestMeta, Step, refusal};
pub(crate) use outgoing::{Flushed, Outgoing};
pub(crate) use response::cow_bytes;
pub(crate) use spares::Spares;

/// A token (RFC 9110 §5.6.2: one or more `tchar`s), as a method or a field name is.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| scan::TOKEN[b as usize])
}

/// Bounds on what a client may send, with defaults close to nginx's and hyper's.
///
/// `WebServer::start` refuses limits it could not serve with
/// (`WebServerError::InvalidLimits`): a zero for any of them but `max_body_bytes` (0 there
/// means no request may carry a body: 413) and `min_body_rate` (0 there: the timeout bounds
/// the whole body), and `max_headers` above [`MAX_HEADERS_LIMIT`].
/// A timeout of `Duration::MAX` means never (it is cut to a century).
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request head (request line and header fields). Above: 431 (or 414 while the
    /// request line is still incomplete and already longer than [`max_uri_bytes`](Self::max_uri_bytes)).
    pub max_head_bytes: usize,
    /// Most header fields in one request (at most 256). Above: 431.
    pub max_headers: usize,
    /// Longest request-target. Above: 414.
    pub max_uri_bytes: usize,
    /// Largest request body (after chunked decoding). Above: 413, and the connection closes.
    /// On a web server, the bound of a request whose handler sets none: a route can set its
    /// own, higher or lower (`web::Handler::body_limit`, the `web::body_limit` layer).
    pub max_body_bytes: usize,
    /// Largest trailer section of a chunked body, longest chunk-size line, and most bytes of
    /// chunk extensions in one body, all its chunks together. Above: 431.
    pub max_trailer_bytes: usize,
    /// How long a client may take to send a whole request head, from its first byte: on a
    /// keep-alive connection the time before the next head's first byte is the
    /// [`idle_timeout`](Self::idle_timeout)'s. Exceeded: 408 and the connection closes.
    pub header_read_timeout: Duration,
    /// How long a request body may take to arrive once its head is in (once its `100
    /// Continue` is written, for a client that waits for one), beyond what its size excuses
    /// at [`min_body_rate`](Self::min_body_rate). Exceeded: 408, close.
    pub body_read_timeout: Duration,
    /// A body arriving at least this fast (bytes a second) is never cut by
    /// [`body_read_timeout`](Self::body_read_timeout): every byte received moves its deadline
    /// on by `1 / min_body_rate` s, up to `body_read_timeout` from now (what a burst earns
    /// is not banked beyond that). A large upload on a slow link is not cut for its size, and
    /// a client trickling a body, or sending most of it and then nothing (to hold a connection
    /// and the bytes it sent), still is, within `body_read_timeout` of falling behind. 0: the
    /// timeout bounds the whole body. (A trial: with the whole body bounded, a 1 MiB upload
    /// needed 17 KiB/s.)
    pub min_body_rate: u32,
    /// How long an idle keep-alive connection (nothing pending, nothing half-read) stays open;
    /// also how long a client may take nothing of what waits to be written to it (a stalled
    /// reader) before the connection closes. A quiet stream is not idle: it stays open.
    pub idle_timeout: Duration,
    /// Connections one shard serves at once. Above: the new connection gets 503 and is closed
    /// (what its client sent already read off first, so that the close is not a reset that
    /// could lose the 503: review 73 saw 6 in 10 clients that sent their request at once
    /// reset).
    pub max_connections_per_shard: usize,
    /// Connections one shard serves at once from one client: its IPv4 address, or its IPv6
    /// /64 (one host's addresses), as [`rate_limit`](crate::web::rate_limit)`(..).per_client()`
    /// keys them. Above: the new connection gets 503 and is closed, as at
    /// `max_connections_per_shard` — so that one address cannot take all of a shard's
    /// connections from everyone else (a hostile-client trial: 100 idle connections from one
    /// address at the cap, a fresh client got 503). Off by default (`usize::MAX`): behind a
    /// reverse proxy every client has the proxy's address. (Per shard: the kernel spreads a
    /// client's connections over the listening shards.)
    pub max_connections_per_client: usize,
    /// Requests read ahead on one connection while earlier ones are unanswered (pipelining).
    /// At the bound the connection stops reading until a response is written: nothing is
    /// refused, the client simply waits (TCP flow control). It stops as well once 256 KiB of
    /// answers wait to be written. The requests read ahead are handed out at once, so a
    /// client that pipelines and reads nothing can make its connection hold up to this many
    /// answers (64 answers of 1 MiB: 64 MiB); what is held so for clients that take nothing
    /// counts in [`max_stream_bytes_per_shard`](Self::max_stream_bytes_per_shard).
    pub max_in_flight: usize,
    /// Bytes of answers waiting to be written that one shard holds for a server's
    /// connections that stream (`WebRequest::respond_stream`), or whose client takes nothing
    /// of more than 4 MiB of whole answers waiting for it, all together. Each streaming
    /// connection holds at most 4 MiB of streamed bodies (then it is cut as a slow client);
    /// past this total the connection holding the most is cut the same way, however little
    /// each holds (a soak trial: 100 clients that stopped reading an unpaced sender held 387
    /// MB; review 73: 6 clients that pipelined 64 GETs of a 1 MiB answer and read nothing,
    /// 384 MB). A lone connection over it is spared (one answer larger than the bound, read
    /// by its client: the server chose its size; the idle timeout ends a client that takes
    /// nothing), so the shard holds at most this or its heaviest connection's share. Answers
    /// that large are better streamed, paced by `ResponseStream::writable`.
    pub max_stream_bytes_per_shard: usize,
    /// Bytes of request bodies being read that one shard holds for a server's connections,
    /// all together (a body is held whole until its request is handed on, an unsafe
    /// request's waiting behind others included). A body whose
    /// bytes would take the total past this is refused: 503 with `Retry-After`, the
    /// connection closed; the others go on, and the room is back as bodies complete or are
    /// cut. Without it, a client could open the connections a shard allows and send each
    /// body but its last byte, `max_body_bytes` a connection (a hostile-client trial: 207 MB
    /// for 200 connections).
    pub max_body_bytes_per_shard: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 1024 * 1024,
            max_trailer_bytes: 4 * 1024,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            min_body_rate: 4 * 1024,
            idle_timeout: Duration::from_secs(75),
            max_connections_per_shard: 16 * 1024,
            max_connections_per_client: usize::MAX,
            max_in_flight: 64,
            max_stream_bytes_per_shard: 256 * 1024 * 1024,
            max_body_bytes_per_shard: 256 * 1024 * 1024,
        }
    }
}

/// The largest `max_headers` the head parser supports.
pub const MAX_HEADERS_LIMIT: usize = 256;

/// The longest timeout kept as given: a longer one (`Duration::MAX` for "never") is cut to
/// this, a century, so that deadlines can be computed from any instant.
pub(crate) const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl HttpLimits {
    /// What makes these limits unusable for a server, if anything (see the type's docs).
    pub(crate) fn invalid(&self) -> Option<String> {
        let counts = [
            ("max_head_bytes", self.max_head_bytes),
            ("max_headers", self.max_headers),
            ("max_uri_bytes", self.max_uri_bytes),
            ("max_trailer_bytes", self.max_trailer_bytes),
            ("max_connections_per_shard", self.max_connections_per_shard),
            ("max_connections_per_client", self.max_connections_per_client),
            ("max_in_flight", self.max_in_flight),
            ("max_stream_bytes_per_shard", self.max_stream_bytes_per_shard),
            ("max_body_bytes_per_shard", self.max_body_bytes_per_shard),
        ];
        let times = [
            ("header_read_timeout", self.header_read_timeout),
            ("body_read_timeout", self.body_read_timeout),
            ("idle_timeout", self.idle_timeout),
        ];
        if let Some((name, _)) = counts.iter().find(|(_, n)| *n == 0) {
            return Some(format!("{name} is 0: no request could be served"));
        }
        if let Some((name, _)) = times.iter().find(|(_, t)| t.is_zero()) {
            return Some(format!("{name} is 0: every connection would time out at once"));
        }
        (self.max_headers > MAX_HEADERS_LIMIT)
            .then(|| format!("max_headers is {}, above the parser's {MAX_HEADERS_LIMIT}", self.max_headers))
    }

    /// The same, with timeouts above [`NEVER`] cut to it, and the head bound to what a
    /// request holds (4 GiB).
    pub(crate) fn capped(&self) -> HttpLimits {
        HttpLimits {
            header_read_timeout: self.header_read_timeout.min(NEVER),
            body_read_timeout: self.body_read_timeout.min(NEVER),
            idle_timeout: self.idle_timeout.min(NEVER),
            // A head is copied into its request, whose offsets are `u32`s (`Request`'s spans).
            max_head_bytes: self.max_head_bytes.min(u32::MAX as usize),
            ..self.clone()
        }
    }
}

/// Why a request was refused before it reached a handler. The connection answers `status`
/// (with `reason` as the body) and, when `close` is set, closes: the framing is lost or the
/// client must not send more on this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The status answered.
    pub status: StatusCode,
    /// What was wrong, for the response body and the log.
    pub reason: &'static str,
    /// The connection closes after the answer.
    pub close: bool,
}

impl HttpError {
    pub(crate) const fn fatal(status: u16, reason: &'static str) -> Self {
        HttpError { status: StatusCode(status), reason, close: true }
    }
    pub(crate) const fn bad(reason: &'static str) -> Self {
        HttpError::fatal(400, reason)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status.0, self.status.reason(), self.reason)
    }
}

impl std::error::Error for HttpError {}

#[cfg(test)]
mod tests {
    use super::HttpLimits;

    /// A head's bound never exceeds what a request's `u32` offsets hold (review 43): past it,
    /// a client's head would make the request refuse its spans (a panic), not a 431.
    #[test]
    fn capped_bounds_the_head_by_what_a_request_holds() {
        let limits = HttpLimits { max_head_bytes: usize::MAX, ..HttpLimits::default() }.capped();
        assert_eq!(limits.max_head_bytes, u32::MAX as usize);
        assert_eq!(HttpLimits::default().capped().max_head_bytes, HttpLimits::default().max_head_bytes);
    }
}
