//! The connection state machine, over any `Read + Write` (a socket on a shard, or byte slices
//! in tests). Two halves:
//!
//! - [`Codec`] turns bytes into [`Step`]s: a complete request, a refusal (an [`HttpError`]), or
//!   "send `100 Continue` now". After a refusal that loses the framing it reads nothing more:
//!   bytes after a framing error are never parsed as another request.
//! - `outgoing.rs` ([`Outgoing`]) is the other half: responses in, bytes out, in request
//!   order.

use std::io::{self, Read, Write};
use std::time::Instant;

use super::body::{BodyDecoder, Decoded};
use super::head::{self, BodyKind, Head};
use super::outgoing::{Flushed, Outgoing};
use super::request::{Method, Request, Version};
use super::response::Response;
use super::{HttpError, HttpLimits};

/// What the connection remembers about a request until its response is written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestMeta {
    /// Position in the connection's request order, from 0.
    pub(crate) seq: u64,
    pub(crate) method: Method,
    pub(crate) version: Version,
    pub(crate) keep_alive: bool,
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
}

/// Bytes in, requests out.
#[derive(Debug, Default)]
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
    closed: bool,
    /// Spare requests to parse into (recycled by the caller), at most `MAX_SPARES`.
    #[allow(clippy::vec_box, reason = "the boxes are what is recycled: requests move as one pointer")]
    spares: Vec<Box<Request>>,
}

/// Spare requests a codec keeps (one per request a pipelining client has in flight).
const MAX_SPARES: usize = 64;

/// Buffers grown past this by one big request or response give the memory back afterwards.
pub(crate) const SHRINK_ABOVE: usize = 1024 * 1024;
pub(crate) const SHRINK_TO: usize = 64 * 1024;

/// Least free space offered to one `read` call.
const READ_CHUNK: usize = 8 * 1024;

impl Codec {
    pub(crate) fn new() -> Codec {
        Codec::default()
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
        } else if self.start < self.end {
            Phase::Head
        } else {
            Phase::Idle
        }
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

    /// Refuses whatever is being read now (a read timeout): the request whose body is coming,
    /// or a request whose head is incomplete. Nothing more is read.
    pub(crate) fn abort(&mut self) -> RequestMeta {
        let meta = match self.current.take() {
            Some(p) => RequestMeta { keep_alive: false, ..meta(p.seq, &p.req, &p.head) },
            None => {
                let seq = self.next_seq;
                self.next_seq += 1;
                RequestMeta {
                    seq,
                    method: Method::Get,
                    version: version_of(&self.buf[self.start..self.end]),
                    keep_alive: false,
                }
            }
        };
        self.close();
        meta
    }

    /// A request to parse into next (keeps its buffers' capacity).
    pub(crate) fn recycle(&mut self, mut req: Box<Request>) {
        req.shrink(SHRINK_TO);
        if self.spares.len() < MAX_SPARES {
            self.spares.push(req);
        }
    }

    /// Reads once from `io`: (bytes read, bytes of room offered). `Ok((0, _))` is the end of
    /// the stream; a read that did not fill the room emptied the socket's buffer.
    pub(crate) fn read_from<R: Read>(&mut self, io: &mut R) -> io::Result<(usize, usize)> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
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
            let mut req = self.spares.pop().unwrap_or_default();
            let input = &mut self.buf[self.start..self.end];
            match head::parse(input, limits, &mut req) {
                Ok(None) => {
                    self.spares.push(req);
                    self.partial_at = Some((self.start, self.end));
                    return None;
                }
                Err(error) => {
                    let version = version_of(input);
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let meta = RequestMeta { seq, method: Method::Get, version, keep_alive: false };
                    self.close();
                    return Some(Step::Refuse(meta, error));
                }
                Ok(Some(head)) => {
                    self.start += head.len;
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    if head.body == BodyKind::None {
                        // Complete already (and no `100 Continue`: that needs a body).
                        let m = meta(seq, &req, &head);
                        return Some(self.complete(req, head, m));
                    }
                    let decoder = BodyDecoder::new(head.body);
                    let expect = head.expect_continue;
                    self.current = Some(Partial { req, head, decoder, seq });
                    if expect && self.start == self.end {
                        return Some(Step::Continue(seq));
                    }
                }
            }
        }
        let partial = self.current.as_mut()?;
        let bodiless = partial.decoder == BodyDecoder::Done;
        match if bodiless {
            Ok(Decoded { consumed: 0, done: true })
        } else {
            partial.decoder.decode(&self.buf[self.start..self.end], limits, &mut partial.req)
        } {
            Ok(d) => {
                self.start += d.consumed;
                if !d.done {
                    return None;
                }
            }
            Err(error) => {
                let p = self.current.take()?;
                self.close();
                return Some(Step::Refuse(RequestMeta { keep_alive: false, ..meta(p.seq, &p.req, &p.head) }, error));
            }
        }
        let p = self.current.take()?;
        let m = meta(p.seq, &p.req, &p.head);
        Some(self.complete(p.req, p.head, m))
    }

    /// The step for a request whose body is in.
    #[inline(always)]
    fn complete(&mut self, req: Box<Request>, head: Head, m: RequestMeta) -> Step {
        if !head.keep_alive {
            self.closed = true;
        }
        if head.unknown_method {
            return self.not_implemented(req, m);
        }
        Step::Request(req, m)
    }

    /// The refusal of a request with an unknown method (out of line: the common step is built
    /// in fewer instructions without this one beside it).
    #[cold]
    #[inline(never)]
    fn not_implemented(&mut self, req: Box<Request>, m: RequestMeta) -> Step {
        self.recycle(req);
        Step::Refuse(m, head::NOT_IMPLEMENTED)
    }
}

/// The version to answer a head that did not parse in: HTTP/1.1 unless the line says 1.0.
fn version_of(input: &[u8]) -> Version {
    let line = input.split(|&b| b == b'\n').next().unwrap_or(input);
    if line.trim_ascii_end().ends_with(b"HTTP/1.0") { Version::Http10 } else { Version::Http11 }
}

fn meta(seq: u64, req: &Request, head: &Head) -> RequestMeta {
    RequestMeta { seq, method: req.method(), version: req.version(), keep_alive: head.keep_alive }
}

/// The answer to a refused request.
pub(crate) fn refusal(error: &HttpError) -> Response {
    Response::text(error.reason).with_status(error.status)
}

/// Serves one connection to the end, synchronously: every request goes to `handler`. For
/// tests and benchmarks of the framing on byte slices (`io` reads the client's bytes and
/// collects the answers); the shard's connections drive the same `Codec` and `Outgoing`
/// without blocking.
pub fn serve_blocking<IO: Read + Write>(
    io: &mut IO,
    limits: &HttpLimits,
    mut handler: impl FnMut(&Request) -> Response,
) -> io::Result<()> {
    let mut codec = Codec::new();
    let mut outgoing = Outgoing::new();
    loop {
        while let Some(step) = codec.next(limits) {
            match step {
                Step::Request(req, meta) => {
                    outgoing.open(meta, None);
                    outgoing.complete(meta.seq, handler(&req), Instant::now());
                    codec.recycle(req);
                }
                Step::Refuse(meta, error) => {
                    outgoing.open(meta, None);
                    outgoing.complete(meta.seq, refusal(&error), Instant::now());
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
