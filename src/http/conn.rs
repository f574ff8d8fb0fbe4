//! The connection state machine, over any `Read + Write` (a socket on a shard, or byte slices
//! in tests). Two halves:
//!
//! - [`Codec`] turns bytes into [`Step`]s: a complete request, a refusal (an [`HttpError`]), or
//!   "send `100 Continue` now". After a refusal that loses the framing it reads nothing more:
//!   bytes after a framing error are never parsed as another request.
//! - `outgoing.rs` ([`Outgoing`]) is the other half: responses in, bytes out, in request
//!   order.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use super::body::{BodyDecoder, Decoded};
use super::head::{self, BodyKind, Head};
use super::outgoing::{Flushed, Outgoing};
use super::request::{Method, Request, Version};
use super::response::Response;
use super::spares::{READ_CHUNK, Spares};
use super::{HttpError, HttpLimits};

/// What the connection remembers about a request until its response is written: its position
/// in the connection's request order (`seq`, from 0), method, version and whether the
/// connection may carry another request after it — in one word.
///
/// One word because it is built and moved on every request: a 16-byte struct of these fields,
/// written field by field and then copied whole (into the codec's [`Step`], then the caller's),
/// made the copy's 16-byte load wait for the three smaller stores it spans to reach the cache
/// (store-to-load forwarding fails when a load covers more than one store) — about 1 % of the
/// server's CPU pipelined (`perf annotate` of `Connection::pump`; PERF.md). A word is
/// written and read whole.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestMeta(u64);

/// `seq` takes the low 48 bits; the method, version and keep-alive the bits above.
const SEQ_BITS: u32 = 48;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
const HTTP11_BIT: u64 = 1 << 56;
const KEEP_ALIVE_BIT: u64 = 1 << 57;
/// The method is not safe (see [`RequestMeta::unsafe_method`]).
const UNSAFE_BIT: u64 = 1 << 58;
/// A method's bits in a `RequestMeta`, by discriminant (the methods of [`Method::ALL`], then
/// [`Method::Extension`]): the discriminant above the seq, and [`UNSAFE_BIT`] for a method
/// that is not safe (one load per request rather than a match).
const METHOD_BITS: [u64; Method::ALL.len() + 1] = {
    let mut bits = [0; Method::ALL.len() + 1];
    let mut i = 0;
    while i <= Method::ALL.len() {
        let m = if i < Method::ALL.len() { Method::ALL[i] } else { Method::Extension };
        assert!(m as usize == i);
        bits[i] = (m as u64) << SEQ_BITS | if m.is_safe() { 0 } else { UNSAFE_BIT };
        i += 1;
    }
    bits
};

/// About how many more requests a connection's bytes read and not yet parsed hold, judged by
/// the length of the last head (pipelined requests are mostly alike): the bytes and the
/// length, divided only when the count is asked for (a pool asks once a burst; the division
/// was made for every request).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Ahead {
    rest: u32,
    head: u32,
}

impl Ahead {
    /// Nothing behind.
    pub(crate) const NONE: Ahead = Ahead { rest: 0, head: 0 };

    /// No whole request is behind (as `count() == 0`, without the division).
    #[inline(always)]
    pub(crate) fn is_none(self) -> bool {
        self.head == 0 || self.rest < self.head
    }

    /// How many requests are behind, about.
    #[inline]
    pub(crate) fn count(self) -> u32 {
        self.rest.checked_div(self.head).unwrap_or(0)
    }
}

/// The last `seq` a connection gives: the request that gets it closes the connection (no
/// `seq` above it could be packed). 2^48 requests on one connection take years at millions a
/// second.
const LAST_SEQ: u64 = SEQ_MASK;

impl RequestMeta {
    /// `seq` at most [`LAST_SEQ`], which never keeps the connection alive.
    #[inline(always)]
    pub(crate) fn new(seq: u64, method: Method, version: Version, keep_alive: bool) -> RequestMeta {
        RequestMeta::new_before(seq, method, version, keep_alive, LAST_SEQ)
    }

    /// [`new`](Self::new), where no seq from `last` on keeps the connection alive (`last` at
    /// most [`LAST_SEQ`]).
    #[inline(always)]
    fn new_before(seq: u64, method: Method, version: Version, keep_alive: bool, last: u64) -> RequestMeta {
        debug_assert!(seq <= LAST_SEQ && last <= LAST_SEQ);
        let keep_alive = keep_alive && seq < last;
        RequestMeta(
            (seq & SEQ_MASK)
                | METHOD_BITS[method as usize]
                | if version == Version::Http11 { HTTP11_BIT } else { 0 }
                | if keep_alive { KEEP_ALIVE_BIT } else { 0 },
        )
    }

    #[inline(always)]
    pub(crate) fn seq(self) -> u64 {
        self.0 & SEQ_MASK
    }

    #[inline(always)]
    pub(crate) fn method(self) -> Method {
        let index = (self.0 >> SEQ_BITS) as u8 as usize;
        Method::ALL.get(index).copied().unwrap_or(Method::Extension)
    }

    #[inline(always)]
    pub(crate) fn version(self) -> Version {
        if self.0 & HTTP11_BIT != 0 { Version::Http11 } else { Version::Http10 }
    }

    /// The connection may carry another request after this one.
    #[inline(always)]
    pub(crate) fn keep_alive(self) -> bool {
        self.0 & KEEP_ALIVE_BIT != 0
    }

    /// Its method is not safe (RFC 9110 §9.2.1): it is handled alone (see
    /// [`Method::is_safe`]).
    #[inline(always)]
    pub(crate) fn unsafe_method(self) -> bool {
        self.0 & UNSAFE_BIT != 0
    }

    /// Nothing pipelined behind it is handled until it is answered: an unsafe method's
    /// request (RFC 9112 §9.3.2), or an HTTP/1.0 one (whether the connection survives depends
    /// on its answer, RFC 9112 §9.6).
    #[inline(always)]
    pub(crate) fn holds_pipeline(self) -> bool {
        self.0 & (HTTP11_BIT | UNSAFE_BIT) != HTTP11_BIT
    }

    /// The same request, after which the connection closes.
    pub(crate) fn closing(self) -> RequestMeta {
        RequestMeta(self.0 & !KEEP_ALIVE_BIT)
    }
}

impl std::fmt::Debug for RequestMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestMeta")
            .field("seq", &self.seq())
            .field("method", &self.method())
            .field("version", &self.version())
            .field("keep_alive", &self.keep_alive())
            .finish()
    }
}

/// What the codec found in the bytes read so far.
#[derive(Debug)]
pub(crate) enum Step {
    /// A complete request.
    Request(Box<Request>, RequestMeta),
    /// A request refused before a handler. After a fatal one (`error.close`) nothing more is
    /// read.
    Refuse(RequestMeta, HttpError),
    /// The request `seq` expects `100 Continue` before its body.
    Continue(u64),
}

/// What the codec is in the middle of (for the read timeouts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Between requests, nothing read of the next one.
    Idle,
    /// Part of a request head is in.
    Head,
    /// The head is in, the body is not complete.
    Body,
    /// Nothing more will be read.
    Closed,
}

/// A request whose head is parsed and whose body is coming.
#[derive(Debug)]
struct Partial {
    req: Box<Request>,
    head: Head,
    decoder: BodyDecoder,
    seq: u64,
    /// The bound of this request's body.
    max_body: u64,
}

/// Bytes in, requests out.
#[derive(Debug)]
pub(crate) struct Codec {
    /// INVARIANT: fully initialized (`len` is its size); the data is `buf[start..end]`.
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed.
    start: usize,
    /// End of the bytes read.
    end: usize,
    /// A head was found incomplete and nothing was read since (`start`, `end` then).
    partial_at: Option<(usize, usize)>,
    current: Option<Partial>,
    next_seq: u64,
    /// The length of the last complete head parsed (to estimate the requests still buffered).
    last_head: usize,
    closed: bool,
    /// Where the read buffer and the requests come from and go back to.
    spares: Rc<Spares>,
    /// Asked for the bound of each request body; `None`: `max_body_bytes` for all.
    body_bound: Option<BodyBound>,
    /// The client's address, given to every request (`None` on byte slices).
    peer: Option<SocketAddr>,
    /// After a refusal mid-request: the bytes of its declared body not read yet (see
    /// [`unread_body`](Self::unread_body)).
    unread_body: u64,
    /// The seq of the request that closes the connection: [`LAST_SEQ`], or sooner (see
    /// [`read_last`](Self::read_last)).
    last_seq: u64,
}

/// Asked with the head of a request with a body for the bound of that body: `Ok(None)` for
/// the limits' `max_body_bytes`; an error refuses the request and closes.
#[derive(Clone)]
pub(crate) struct BodyBound(pub(crate) Rc<AskBound>);

type AskBound = dyn Fn(&Request) -> Result<Option<usize>, HttpError>;

impl fmt::Debug for BodyBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BodyBound")
    }
}

impl Codec {
    /// A codec that takes its read buffer and requests from `spares`.
    pub(crate) fn new(spares: &Rc<Spares>) -> Codec {
        Codec {
            buf: Vec::new(),
            start: 0,
            end: 0,
            partial_at: None,
            current: None,
            next_seq: 0,
            last_head: 0,
            closed: false,
            spares: spares.clone(),
            body_bound: None,
            peer: None,
            unread_body: 0,
            last_seq: LAST_SEQ,
        }
    }

    /// The client's address (none for a codec on bytes).
    pub(crate) fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// A connection's codec: it asks `bound` for the bound of each request body, and gives
    /// every request the client's address.
    pub(crate) fn for_connection(spares: &Rc<Spares>, bound: BodyBound, peer: SocketAddr) -> Codec {
        Codec { body_bound: Some(bound), peer: Some(peer), ..Codec::new(spares) }
    }

    /// How many requests (and refusals) the codec has started: changes when a new one begins.
    pub(crate) fn position(&self) -> u64 {
        self.next_seq
    }

    /// Where the codec stands.
    pub(crate) fn phase(&self) -> Phase {
        if self.closed {
            Phase::Closed
        } else if self.current.is_some() {
            Phase::Body
        } else if self.start < self.end && !self.only_empty_lines() {
            Phase::Head
        } else {
            Phase::Idle
        }
    }

    /// The bytes not yet parsed are at most two empty lines: what some clients send after a
    /// request's body, and what RFC 9112 §2.2 asks a server to ignore before a request line
    /// (the parser skips them). The connection is idle then (the idle timeout closes it
    /// quietly), not halfway through a head (the header-read timeout would answer 408).
    fn only_empty_lines(&self) -> bool {
        let rest = &self.buf[self.start..self.end];
        rest.len() <= 4 && rest.iter().all(|&b| b == b'\r' || b == b'\n')
    }

    /// About how many more requests the bytes read and not yet parsed hold (see [`Ahead`]).
    #[inline(always)]
    pub(crate) fn ahead(&self) -> Ahead {
        let clamp = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Ahead { rest: clamp(self.end - self.start), head: clamp(self.last_head) }
    }

    /// Whether [`next`](Self::next) may find something: a request whose body is being read,
    /// or bytes it has not looked at (the same partial head is not parsed twice).
    #[inline(always)]
    pub(crate) fn has_input(&self) -> bool {
        !self.closed && (self.current.is_some() || self.start != self.end && self.partial_at.is_none())
    }

    /// Stops reading: nothing after this is parsed.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.current = None;
    }

    /// The request whose body is awaited (its head complete), if any.
    pub(crate) fn awaiting_body(&self) -> Option<&Request> {
        self.current.as_ref().map(|p| &*p.req)
    }

    /// Refuses whatever is being read now (a read timeout): the request whose body is coming,
    /// or a request whose head is incomplete. Nothing more is read.
    pub(crate) fn abort(&mut self) -> RequestMeta {
        let meta = match self.current.take() {
            Some(p) => {
                if let BodyDecoder::Length { remaining } = p.decoder {
                    self.note_unread(remaining);
                }
                self.meta(p.seq, &p.head).closing()
            }
            None => {
                let seq = self.next_seq;
                self.next_seq += 1;
                let (method, version) = line_of(&self.buf[self.start..self.end]);
                RequestMeta::new(seq, method, version, false)
            }
        };
        self.close();
        meta
    }

    /// What the connection needs to know of request `seq` with `head`.
    #[inline(always)]
    fn meta(&self, seq: u64, head: &Head) -> RequestMeta {
        RequestMeta::new_before(seq, head.method, head.version, head.keep_alive, self.last_seq)
    }

    /// Bytes of the body being read received so far (0 between bodies).
    pub(crate) fn body_received(&self) -> usize {
        self.current.as_ref().map_or(0, |p| p.req.body().len())
    }

    /// Reads one request more at most: the one partly read now, if any, whose answer then
    /// closes the connection (`false`: none was, and nothing more is read). For a graceful
    /// end of the connection (a server draining).
    pub(crate) fn read_last(&mut self) -> bool {
        if let Some(p) = &mut self.current {
            p.head.keep_alive = false;
            return true;
        }
        if self.phase() == Phase::Head {
            self.last_seq = self.next_seq;
            return true;
        }
        self.close();
        false
    }

    /// Makes the next request, when it comes, the connection's last (its answer closes it);
    /// false if the codec reads nothing more anyway.
    pub(crate) fn read_next_last(&mut self) -> bool {
        if self.closed {
            return false;
        }
        self.last_seq = self.next_seq;
        true
    }

    /// How many bytes of a body the client declared (`Content-Length`) and may still send after
    /// the request was refused unread — too large, or answered before its body: a connection
    /// closing after the refusal reads them off (up to a bound) so that its close does not
    /// reset the connection before the client, which may read only once it sent them all
    /// (nginx, Python's `http.client`), took the answer. `u64::MAX` for a chunked body refused
    /// for its size (how much more comes is unknown).
    pub(crate) fn unread_body(&self) -> u64 {
        self.unread_body
    }

    /// A refused request's body had `remaining` bytes still to come, of which what is buffered
    /// came already.
    #[cold]
    fn note_unread(&mut self, remaining: u64) {
        self.unread_body = remaining.saturating_sub((self.end - self.start) as u64);
    }

    /// A request whose handling is over, kept for the next (see [`Spares`]).
    pub(crate) fn recycle(&mut self, req: Box<Request>) {
        self.spares.give_request(req);
    }

    /// Gives the read buffer back once every byte in it is consumed (see
    /// [`Spares`]): an idle connection holds none.
    #[inline(always)]
    fn release_if_consumed(&mut self) {
        if self.start == self.end && !self.buf.is_empty() {
            self.spares.give_read_buf(std::mem::take(&mut self.buf));
            (self.start, self.end, self.partial_at) = (0, 0, None);
        }
    }

    /// Reads once from `io`: (bytes read, bytes of room offered). `Ok((0, _))` is the end of
    /// the stream; a read that did not fill the room emptied the socket's buffer.
    pub(crate) fn read_from<R: Read>(&mut self, io: &mut R) -> io::Result<(usize, usize)> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
        if self.buf.is_empty() {
            // (The empty buffer replaced owns nothing: no drop to check for.)
            std::mem::forget(std::mem::replace(&mut self.buf, self.spares.take_read_buf()));
        }
        if self.buf.len() - self.end < READ_CHUNK {
            if self.start > 0 {
                // Move the unconsumed tail to the front before growing.
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            }
            if self.buf.len() - self.end < READ_CHUNK {
                self.buf.resize(self.end + READ_CHUNK.max(self.buf.len()), 0);
            }
        }
        let room = self.buf.len() - self.end;
        let n = io.read(&mut self.buf[self.end..])?;
        self.end += n;
        // New bytes: a head found incomplete before may be complete now. (Positions alone
        // cannot tell: after a reset the same range can hold other bytes.)
        self.partial_at = None;
        Ok((n, room))
    }

    /// The next step in what has been read, or `None` until more arrives.
    pub(crate) fn next(&mut self, limits: &HttpLimits) -> Option<Step> {
        if self.closed {
            return None;
        }
        if self.current.is_none() {
            // Nothing new since the last look (an empty buffer, or the same partial head):
            // no parse.
            if self.start == self.end || self.partial_at.is_some() {
                return None;
            }
            let mut req = self.spares.take_request();
            req.set_peer(self.peer);
            let input = &mut self.buf[self.start..self.end];
            match head::parse(input, limits, &mut req) {
                Ok(None) => {
                    self.spares.give_request(req);
                    self.partial_at = Some((self.start, self.end));
                    return None;
                }
                Err(error) => {
                    // Only what the parser was shown decided the refusal (see `head::parse`).
                    let (method, version) = line_of(&input[..input.len().min(limits.max_head_bytes)]);
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let meta = RequestMeta::new(seq, method, version, false);
                    self.close();
                    return Some(Step::Refuse(meta, error));
                }
                Ok(Some(head)) => {
                    self.start += head.len;
                    self.last_head = head.len;
                    self.release_if_consumed();
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    if head.body == BodyKind::None {
                        // Complete already (and no `100 Continue`: that needs a body).
                        let m = self.meta(seq, &head);
                        return Some(self.complete(req, m));
                    }
                    if let Some(step) = self.begin_body(req, head, seq, limits) {
                        return Some(step);
                    }
                }
            }
        }
        let partial = self.current.as_mut()?;
        let bodiless = partial.decoder == BodyDecoder::Done;
        match if bodiless {
            Ok(Decoded { consumed: 0, done: true })
        } else {
            partial.decoder.decode(&self.buf[self.start..self.end], limits, partial.max_body, &mut partial.req)
        } {
            Ok(d) => {
                self.start += d.consumed;
                self.release_if_consumed();
                if !d.done {
                    return None;
                }
            }
            Err(error) => {
                let p = self.current.take()?;
                if error.status.0 == 413 {
                    // A chunked body past its bound: how much more comes is unknown (a
                    // review: a client sending it whole met a reset after the default linger).
                    self.unread_body = u64::MAX;
                }
                self.close();
                return Some(Step::Refuse(self.meta(p.seq, &p.head).closing(), error));
            }
        }
        let p = self.current.take()?;
        let m = self.meta(p.seq, &p.head);
        Some(self.complete(p.req, m))
    }

    /// Starts reading the body of request `seq` (out of line: most requests have none): its
    /// bound is `limits.max_body_bytes` unless the codec's [`BodyBound`] says otherwise. A
    /// declared length above it is refused now (413), before `100 Continue`. A step to give
    /// now, or `None` to decode what is buffered.
    #[cold]
    #[inline(never)]
    fn begin_body(&mut self, req: Box<Request>, head: Head, seq: u64, limits: &HttpLimits) -> Option<Step> {
        let asked = match &self.body_bound {
            Some(bound) => (bound.0)(&req),
            None => Ok(None),
        };
        let max_body = asked.map(|max| max.unwrap_or(limits.max_body_bytes) as u64).and_then(|max| match head.body {
            BodyKind::Length(n) if n > max => Err(HttpError::fatal(413, "body too large")),
            _ => Ok(max),
        });
        let max_body = match max_body {
            Ok(max) => max,
            Err(error) => {
                if let BodyKind::Length(n) = head.body {
                    self.note_unread(n);
                }
                self.recycle(req);
                self.close();
                return Some(Step::Refuse(self.meta(seq, &head).closing(), error));
            }
        };
        let decoder = BodyDecoder::new(head.body);
        let expect = head.expect_continue;
        self.current = Some(Partial { req, head, decoder, seq, max_body });
        (expect && self.start == self.end).then_some(Step::Continue(seq))
    }

    /// The step for a request whose body is in.
    #[inline(always)]
    fn complete(&mut self, req: Box<Request>, m: RequestMeta) -> Step {
        // (`m`'s keep-alive: the head's, unless `seq` is the last a connection gives.)
        if !m.keep_alive() {
            self.closed = true;
        }
        Step::Request(req, m)
    }
}

/// How to answer a head that did not parse (or did not arrive): as `HEAD` if its line begins
/// so (the answer then has no content, RFC 9110 §9.3.2), else as `GET`; in HTTP/1.1 unless
/// the line says 1.0 (a closing refusal is written the same in both). Empty lines before the
/// request line are skipped, as the parser skips them. `HEAD ` is a valid start of a line, so
/// a refusal decided from `input` came after those five bytes: every split of the bytes
/// answers alike.
fn line_of(input: &[u8]) -> (Method, Version) {
    let (_, line, _) = head::request_line(input);
    let method = if line.starts_with(b"HEAD ") { Method::Head } else { Method::Get };
    let version = if line.trim_ascii_end().ends_with(b"HTTP/1.0") { Version::Http10 } else { Version::Http11 };
    (method, version)
}

/// The answer to a refused request.
pub(crate) fn refusal(error: &HttpError) -> Response {
    Response::text(error.reason).with_status(error.status)
}

/// Serves one connection to the end, synchronously: every request goes to `handler`, whose
/// answers are held (a `Body::Streamed` one is sent with an empty body, as
/// `WebRequest::respond` sends it: no stream follows). For
/// tests and benchmarks of the framing on byte slices (`io` reads the client's bytes and
/// collects the answers); the shard's connections drive the same `Codec` and `Outgoing`
/// without blocking.
pub fn serve_blocking<IO: Read + Write>(
    io: &mut IO,
    limits: &HttpLimits,
    mut handler: impl FnMut(&Request) -> Response,
) -> io::Result<()> {
    let spares = Spares::new();
    let mut codec = Codec::new(&spares);
    let mut outgoing = Outgoing::new(&spares);
    loop {
        while let Some(step) = codec.next(limits) {
            match step {
                Step::Request(req, meta) => {
                    outgoing.open(meta, None);
                    // (A held answer: one marked streamed goes out whole, as `respond` sends it.)
                    outgoing.complete(meta.seq(), handler(&req).held(), Instant::now());
                    codec.recycle(req);
                }
                Step::Refuse(meta, error) => {
                    outgoing.open(meta, None);
                    outgoing.complete(meta.seq(), refusal(&error), Instant::now());
                }
                Step::Continue(seq) => outgoing.interim_continue(seq),
            }
        }
        if outgoing.write_to(io, Instant::now())? == Flushed::Close || codec.phase() == Phase::Closed {
            return Ok(());
        }
        if codec.read_from(io)?.0 == 0 {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ahead_is_none_exactly_when_its_count_is_zero() {
        for head in [0, 1, 2, 37, 4096] {
            for rest in [0, 1, 36, 37, 38, 74, 4095, 4096, 65536, u32::MAX] {
                let a = Ahead { rest, head };
                assert_eq!(a.is_none(), a.count() == 0, "{a:?}");
                assert_eq!(a.count(), rest.checked_div(head).unwrap_or(0), "{a:?}");
            }
        }
        assert!(Ahead::NONE.is_none());
    }

    const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    fn request(codec: &mut Codec, mut bytes: &[u8]) -> Option<Box<Request>> {
        codec.read_from(&mut bytes).expect("reading a slice");
        match codec.next(&HttpLimits::default())? {
            Step::Request(req, _) => Some(req),
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn unsafe_methods_and_http10_requests_hold_the_pipeline() {
        for m in Method::ALL {
            for (version, keep_alive) in [(Version::Http11, true), (Version::Http10, true), (Version::Http10, false)] {
                let meta = RequestMeta::new(7, m, version, keep_alive);
                assert_eq!((meta.method(), meta.version(), meta.keep_alive(), meta.seq()), (m, version, keep_alive, 7));
                assert_eq!(meta.unsafe_method(), !m.is_safe(), "{m:?}");
                assert_eq!(meta.holds_pipeline(), !m.is_safe() || version == Version::Http10, "{m:?} {version:?}");
            }
        }
        let safe: Vec<_> = Method::ALL.into_iter().filter(|m| m.is_safe()).collect();
        assert_eq!(safe, [Method::Get, Method::Head, Method::Options, Method::Trace]);
    }

    #[test]
    fn connections_hold_buffers_only_while_bytes_wait_in_them() {
        let spares = Spares::new();
        let (mut a, mut b) = (Codec::new(&spares), Codec::new(&spares));
        let mut out = Outgoing::new(&spares);
        let posted = b"POST /one?x=1 HTTP/1.1\r\nHost: x\r\nX-Secret: a\r\nContent-Length: 3\r\n\r\nabc";
        let req = request(&mut a, posted).expect("a whole request");
        assert_eq!((req.body(), req.header("x-secret")), (&b"abc"[..], Some(&b"a"[..])));
        // Every byte read was parsed: the read buffer went back ...
        assert_eq!((a.buf.capacity(), spares.kept()), (0, (0, 1, 0)));
        out.open(RequestMeta::new(0, Method::Get, Version::Http11, true), None);
        assert!(out.complete(0, Response::text("hi"), Instant::now()));
        let mut wire = Vec::new();
        assert_eq!(out.write_to(&mut wire, Instant::now()).unwrap(), Flushed::Done);
        assert!(wire.ends_with(b"\r\n\r\nhi"));
        // ... and so did the write buffer, once written; the request goes back when answered.
        assert_eq!(spares.kept(), (0, 1, 1));
        let at: *const Request = &*req;
        a.recycle(req);
        assert_eq!(spares.kept(), (1, 1, 1));
        // Another connection of the same server takes the same request to parse into.
        let again = request(&mut b, b"GET /two HTTP/1.1\r\nHost: x\r\n\r\n").expect("a whole request");
        assert_eq!((&*again as *const Request, again.path(), again.query()), (at, "/two", None));
        // Nothing of the first request shows in the second.
        assert_eq!((again.method(), again.headers().len(), again.body()), (Method::Get, 1, &b""[..]));
    }

    #[test]
    fn a_partial_head_keeps_its_buffer_and_its_bytes() {
        let spares = Spares::new();
        let mut codec = Codec::new(&spares);
        let (first, rest) = GET.split_at(10);
        assert!(request(&mut codec, first).is_none());
        assert_eq!(codec.phase(), Phase::Head);
        assert_eq!(&codec.buf[codec.start..codec.end], first);
        // Another connection meanwhile takes its own buffer, not this one.
        let mut other = Codec::new(&spares);
        assert!(request(&mut other, GET).is_some());
        assert!(request(&mut codec, rest).is_some_and(|r| r.path() == "/"));
        assert_eq!(codec.buf.capacity(), 0);
    }

    #[test]
    fn request_meta_keeps_every_method_version_and_seq_it_is_given() {
        for seq in [0, 1, 17, u64::from(u32::MAX) + 5, LAST_SEQ - 1, LAST_SEQ] {
            for method in Method::ALL {
                for version in [Version::Http10, Version::Http11] {
                    for keep_alive in [false, true] {
                        let m = RequestMeta::new(seq, method, version, keep_alive);
                        assert_eq!((m.seq(), m.method(), m.version()), (seq, method, version));
                        // The last seq a connection gives never keeps it alive.
                        assert_eq!(m.keep_alive(), keep_alive && seq < LAST_SEQ, "{m:?}");
                        assert_eq!(m.closing(), RequestMeta::new(seq, method, version, false));
                    }
                }
            }
        }
    }

    #[test]
    fn the_request_with_the_last_seq_closes_the_connection_after_it() {
        let mut codec = Codec::new(&Spares::new());
        codec.next_seq = LAST_SEQ - 1;
        let limits = HttpLimits::default();
        let two = [GET, GET, GET].concat();
        codec.read_from(&mut &two[..]).expect("reading a slice");
        let Some(Step::Request(_, m)) = codec.next(&limits) else { panic!("a request") };
        assert_eq!((m.seq(), m.keep_alive()), (LAST_SEQ - 1, true));
        let Some(Step::Request(_, m)) = codec.next(&limits) else { panic!("a request") };
        assert_eq!((m.seq(), m.keep_alive()), (LAST_SEQ, false));
        // Nothing after it is read as a request.
        assert!(codec.next(&limits).is_none());
        assert_eq!(codec.phase(), Phase::Closed);
    }
}
