//! The load generator: one thread, mio, a closed loop of pipelined batches per connection.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use crate::order::ReadyOrder;

/// A batch that has not been answered in full after this long is counted as a timeout and its
/// connection replaced (wrk's default `--timeout` is 2 s; compare-http.sh passes 5 s).
const BATCH_TIMEOUT: Duration = Duration::from_secs(5);
/// New connections opened per run after errors, at most (then a failed connection stays closed).
pub(crate) const MAX_RECONNECTS: usize = 256;
/// Read buffer per connection: a whole batch of small responses fits many times over.
pub(crate) const READ_BUF_BYTES: usize = 64 * 1024;
/// Reads (or writes) on one connection per readiness event before the others get a turn; a
/// connection that used them up is visited again without waiting for a new event.
const MAX_IO_PER_EVENT: usize = 64;
/// Longest wait in `poll`, so that timeouts and the end of the run are noticed.
pub(crate) const POLL_TICK: Duration = Duration::from_millis(20);
/// Header slots for httparse.
const MAX_HEADERS: usize = 32;
/// Largest recorded latency, in nanoseconds (larger values are recorded as this).
pub(crate) const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// What one run is asked to do.
#[derive(Clone, Debug)]
pub(crate) struct RunOptions {
    pub(crate) connections: usize,
    pub(crate) depth: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
}

/// The CPU time a process has used so far, user and system, in clock ticks (`/proc/PID/stat`).
pub(crate) type CpuTicks = (u64, u64);

/// What one run measured. Only batches whose write started inside the measured window count;
/// those still in flight at its end are waited for (up to [`BATCH_TIMEOUT`]), so a slow tail
/// is not cut off.
#[derive(Debug)]
pub(crate) struct RunResult {
    /// Latency of every counted response, in nanoseconds.
    pub(crate) latency_ns: Histogram<u64>,
    /// Requests written in counted batches.
    pub(crate) requests: u64,
    /// Responses received to counted batches.
    pub(crate) responses: u64,
    pub(crate) window: Duration,
    pub(crate) errors: ErrorCounts,
    /// The server's CPU time at the start and at the end of the measured window, when its
    /// process could be read.
    pub(crate) server_cpu: Option<(CpuTicks, CpuTicks)>,
    /// Open loop only: how late the client noticed each counted request was due, in ns.
    pub(crate) lag_ns: Option<Histogram<u64>>,
}

/// Errors of one run, by kind.
#[derive(Default, Debug, Clone)]
pub(crate) struct ErrorCounts {
    pub(crate) connect: u64,
    pub(crate) io: u64,
    /// The server closed a connection with requests outstanding.
    pub(crate) closed: u64,
    pub(crate) parse: u64,
    /// `Transfer-Encoding: chunked`, which this client does not decode.
    pub(crate) chunked: u64,
    /// A response without (or with a bad) `Content-Length`, or too large for the buffer.
    pub(crate) length: u64,
    /// Bytes beyond the batch's last response.
    pub(crate) extra: u64,
    /// Responses with a status other than 200 (still counted and timed).
    pub(crate) status: u64,
    pub(crate) timeout: u64,
}

impl ErrorCounts {
    fn fields(&self) -> [(&'static str, u64); 9] {
        [
            ("connect", self.connect),
            ("io", self.io),
            ("closed", self.closed),
            ("parse", self.parse),
            ("chunked", self.chunked),
            ("length", self.length),
            ("extra", self.extra),
            ("status", self.status),
            ("timeout", self.timeout),
        ]
    }

    pub(crate) fn total(&self) -> u64 {
        self.fields().iter().map(|(_, n)| n).sum()
    }
}

impl fmt::Display for ErrorCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, n) in self.fields().into_iter().filter(|(_, n)| *n > 0) {
            write!(f, "{}{name} {n}", if first { "" } else { ", " })?;
            first = false;
        }
        Ok(())
    }
}

/// Why a response could not be taken from the buffer.
#[derive(Debug)]
pub(crate) enum ResponseError {
    Parse(httparse::Error),
    Chunked,
    Length,
}

impl fmt::Display for ResponseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseError::Parse(e) => write!(f, "bad response head: {e}"),
            ResponseError::Chunked => f.write_str("chunked response (not decoded by this client)"),
            ResponseError::Length => f.write_str("response without a usable Content-Length"),
        }
    }
}

/// A complete response at the front of a buffer: its length in bytes and its status.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) len: usize,
    pub(crate) status: u16,
}

/// The response at the front of `buf`, `None` while it is incomplete.
pub(crate) fn parse_response(buf: &[u8]) -> Result<Option<Response>, ResponseError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf).map_err(ResponseError::Parse)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = response.code.unwrap_or(0);
    let mut length = None;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(ResponseError::Chunked);
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<usize>().ok());
            length = Some(n.ok_or(ResponseError::Length)?);
        }
    }
    let body = match status {
        100..=199 | 204 | 304 => 0,
        _ => length.ok_or(ResponseError::Length)?,
    };
    let len = head.checked_add(body).filter(|&n| n <= READ_BUF_BYTES).ok_or(ResponseError::Length)?;
    Ok((buf.len() >= len).then_some(Response { len, status }))
}

/// `depth` copies of the request, written with one `write`.
pub(crate) fn batch_bytes(port: u16, depth: usize) -> Vec<u8> {
    format!("GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").repeat(depth).into_bytes()
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Connecting,
    /// Writing the batch; this many bytes are out.
    Writing(usize),
    /// The whole batch is out; waiting for the rest of its responses.
    Reading,
    /// Not in a batch (the run is over).
    Idle,
    Closed,
}

#[derive(Debug)]
struct Conn {
    stream: Option<TcpStream>,
    state: State,
    batch_start: Instant,
    /// The batch started inside the measured window.
    counted: bool,
    answered: usize,
    buf: Box<[u8]>,
    filled: usize,
}

/// Reads the server's CPU time when the measured window starts and when it ends.
pub(crate) struct CpuWindow<'a> {
    read: &'a mut dyn FnMut() -> Option<CpuTicks>,
    at_start: Option<Option<CpuTicks>>,
}

impl<'a> CpuWindow<'a> {
    pub(crate) fn new(read: &'a mut dyn FnMut() -> Option<CpuTicks>) -> CpuWindow<'a> {
        CpuWindow { read, at_start: None }
    }

    /// Called each turn of a client's loop: reads at the first turn at or after `start`, and
    /// at the first at or after `end` sets `out` to (start, end).
    pub(crate) fn observe(
        &mut self,
        now: Instant,
        start: Instant,
        end: Instant,
        out: &mut Option<(CpuTicks, CpuTicks)>,
    ) {
        if now >= start && self.at_start.is_none() {
            self.at_start = Some((self.read)());
        }
        if now >= end
            && out.is_none()
            && let Some(Some(first)) = self.at_start
        {
            *out = (self.read)().map(|last| (first, last));
        }
    }
}

/// A new non-blocking connection to `addr`, registered for reads and writes under `token`.
pub(crate) fn open_stream(poll: &Poll, addr: SocketAddr, token: Token) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).ok()?;
    poll.registry().register(&mut stream, token, Interest::READABLE | Interest::WRITABLE).ok()?;
    Some(stream)
}

/// Whether a connecting stream is connected now (`Ok(true)`, with Nagle's algorithm off), still
/// connecting (`Ok(false)`), or failed (`Err`).
pub(crate) fn connected(stream: &TcpStream) -> Result<bool, ()> {
    match (stream.take_error(), stream.peer_addr()) {
        (Ok(None), Ok(_)) => {
            // Latency is the point; a failure here only costs a delayed segment.
            let _ = stream.set_nodelay(true);
            Ok(true)
        }
        (Ok(None), Err(e)) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        _ => Err(()),
    }
}

/// Why a connection is dropped.
#[derive(Debug)]
pub(crate) enum Failure {
    Connect,
    Io,
    Closed,
    Response(ResponseError),
    Extra,
    Timeout,
}

impl ErrorCounts {
    /// Counts a dropped connection under its kind.
    pub(crate) fn count(&mut self, failure: Failure) {
        let e = self;
        match failure {
            Failure::Connect => e.connect += 1,
            Failure::Io => e.io += 1,
            Failure::Closed => e.closed += 1,
            Failure::Response(ResponseError::Parse(_)) => e.parse += 1,
            Failure::Response(ResponseError::Chunked) => e.chunked += 1,
            Failure::Response(ResponseError::Length) => e.length += 1,
            Failure::Extra => e.extra += 1,
            Failure::Timeout => e.timeout += 1,
        }
    }
}

/// The client of one run: connections, the batch they all send, the window, and the tallies.
struct Client<'a> {
    poll: Poll,
    addr: SocketAddr,
    batch: &'a [u8],
    depth: usize,
    conns: Vec<Conn>,
    measure_start: Instant,
    measure_end: Instant,
    reconnects: usize,
    result: RunResult,
    /// Reads the server's CPU time (at the window's start and end).
    cpu: CpuWindow<'a>,
}

/// Runs the load against `127.0.0.1:port`: warm-up, then the measured window, then the drain.
/// `server_cpu` is read when the window starts and when it ends.
pub(crate) fn run(
    port: u16,
    options: &RunOptions,
    server_cpu: &mut dyn FnMut() -> Option<CpuTicks>,
) -> io::Result<RunResult> {
    let batch = batch_bytes(port, options.depth);
    let histogram = Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).map_err(io::Error::other)?;
    let start = Instant::now();
    let mut client = Client {
        poll: Poll::new()?,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        batch: &batch,
        depth: options.depth,
        conns: Vec::with_capacity(options.connections),
        measure_start: start + options.warmup,
        measure_end: start + options.warmup + options.duration,
        reconnects: 0,
        result: RunResult {
            latency_ns: histogram,
            requests: 0,
            responses: 0,
            window: options.duration,
            errors: ErrorCounts::default(),
            server_cpu: None,
            lag_ns: None,
        },
        cpu: CpuWindow::new(server_cpu),
    };
    for i in 0..options.connections {
        client.conns.push(Conn {
            stream: None,
            state: State::Closed,
            batch_start: start,
            counted: false,
            answered: 0,
            buf: vec![0; READ_BUF_BYTES].into_boxed_slice(),
            filled: 0,
        });
        client.connect(i);
    }
    client.event_loop()?;
    Ok(client.result)
}

impl Client<'_> {
    fn event_loop(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(self.conns.len().max(16));
        let hard_end = self.measure_end + BATCH_TIMEOUT + POLL_TICK;
        let mut again: Vec<usize> = Vec::new();
        let mut order = ReadyOrder::default();
        loop {
            let now = Instant::now();
            self.cpu.observe(now, self.measure_start, self.measure_end, &mut self.result.server_cpu);
            let busy = self.conns.iter().any(|c| matches!(c.state, State::Writing(_) | State::Reading));
            let live = self.conns.iter().any(|c| c.state != State::Closed);
            if now >= hard_end || !live || (now >= self.measure_end && !busy) {
                return Ok(());
            }
            for i in 0..self.conns.len() {
                let c = &self.conns[i];
                let stuck = now.duration_since(c.batch_start) > BATCH_TIMEOUT;
                if stuck && matches!(c.state, State::Connecting | State::Writing(_) | State::Reading) {
                    self.fail(i, Failure::Timeout);
                }
            }
            let timeout = if again.is_empty() { POLL_TICK.min(hard_end - now) } else { Duration::ZERO };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let ready = order.round(events.iter().map(|e| e.token().0), &mut again, self.conns.len());
            for &i in ready {
                if self.drive(i) {
                    again.push(i);
                }
            }
        }
    }

    /// Opens connection `i` (again); a connection that cannot be opened is left closed.
    fn connect(&mut self, i: usize) {
        let c = &mut self.conns[i];
        c.state = State::Closed;
        c.filled = 0;
        c.answered = 0;
        c.batch_start = Instant::now();
        match open_stream(&self.poll, self.addr, Token(i)) {
            Some(stream) => {
                c.stream = Some(stream);
                c.state = State::Connecting;
            }
            None => self.result.errors.connect += 1,
        }
    }

    /// Counts the failure, drops connection `i` and, while the run lasts, opens a new one.
    fn fail(&mut self, i: usize, failure: Failure) {
        self.result.errors.count(failure);
        let c = &mut self.conns[i];
        if let Some(mut stream) = c.stream.take() {
            // Best effort: the stream is closed when dropped either way.
            let _ = self.poll.registry().deregister(&mut stream);
        }
        c.state = State::Closed;
        if Instant::now() < self.measure_end && self.reconnects < MAX_RECONNECTS {
            self.reconnects += 1;
            self.connect(i);
        }
    }

    /// Does what connection `i` can do now. True if it stopped with I/O left to try (its
    /// per-event budget ran out), so it must be visited again without a new event.
    fn drive(&mut self, i: usize) -> bool {
        if self.conns[i].state == State::Connecting {
            let Some(stream) = &self.conns[i].stream else { return false };
            match connected(stream) {
                Ok(true) => self.start_batch(i),
                Ok(false) => return false,
                Err(()) => {
                    self.fail(i, Failure::Connect);
                    return false;
                }
            }
        }
        for _ in 0..MAX_IO_PER_EVENT {
            match self.step(i) {
                Ok(true) => {}
                Ok(false) => return false,
                Err(failure) => {
                    self.fail(i, failure);
                    return false;
                }
            }
        }
        true
    }

    /// One write or read on connection `i`. `Ok(true)`: progress, try again; `Ok(false)`: it
    /// would block (or there is nothing to do).
    fn step(&mut self, i: usize) -> Result<bool, Failure> {
        let c = &mut self.conns[i];
        let Some(stream) = c.stream.as_mut() else { return Ok(false) };
        let mut wrote = false;
        if let State::Writing(written) = c.state {
            match stream.write(&self.batch[written..]) {
                Ok(0) => return Err(Failure::Closed),
                Ok(n) if written + n == self.batch.len() => {
                    c.state = State::Reading;
                    if c.counted {
                        self.result.requests += self.depth as u64;
                    }
                }
                Ok(n) => {
                    c.state = State::Writing(written + n);
                    wrote = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
                Err(_) => return Err(Failure::Io),
            }
        }
        if matches!(c.state, State::Connecting | State::Closed) {
            return Ok(false);
        }
        let n = match stream.read(&mut c.buf[c.filled..]) {
            Ok(0) if c.state == State::Idle => {
                c.stream = None;
                c.state = State::Closed;
                return Ok(false);
            }
            Ok(0) => return Err(Failure::Closed),
            Ok(n) => n,
            // A partial write that made progress may go on; otherwise wait for an event.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(wrote),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(true),
            Err(_) => return Err(Failure::Io),
        };
        let arrived = Instant::now();
        if c.state == State::Idle {
            return Err(Failure::Extra);
        }
        c.filled += n;
        self.take_responses(i, arrived)?;
        Ok(true)
    }

    /// Takes every complete response out of connection `i`'s buffer, timing each from its
    /// batch's write; at the batch's last response, starts the next batch.
    fn take_responses(&mut self, i: usize, arrived: Instant) -> Result<(), Failure> {
        let c = &mut self.conns[i];
        let mut at = 0;
        while c.answered < self.depth {
            let Some(response) = parse_response(&c.buf[at..c.filled]).map_err(Failure::Response)? else { break };
            at += response.len;
            c.answered += 1;
            if c.counted {
                self.result.responses += 1;
                let ns = arrived.duration_since(c.batch_start).as_nanos();
                self.result.latency_ns.saturating_record(u64::try_from(ns).unwrap_or(u64::MAX).max(1));
                if response.status != 200 {
                    self.result.errors.status += 1;
                }
            }
        }
        c.buf.copy_within(at..c.filled, 0);
        c.filled -= at;
        if c.answered < self.depth {
            if c.filled == c.buf.len() {
                return Err(Failure::Response(ResponseError::Length));
            }
            return Ok(());
        }
        if c.filled > 0 || c.state != State::Reading {
            return Err(Failure::Extra);
        }
        self.start_batch(i);
        Ok(())
    }

    /// Starts the next batch on connection `i`, or leaves it idle once the window is over.
    fn start_batch(&mut self, i: usize) {
        let now = Instant::now();
        let c = &mut self.conns[i];
        c.answered = 0;
        c.filled = 0;
        c.batch_start = now;
        c.counted = now >= self.measure_start;
        c.state = if now < self.measure_end { State::Writing(0) } else { State::Idle };
    }
}
