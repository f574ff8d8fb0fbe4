//! The open-loop load generator: requests leave at fixed times whatever the server does.
//!
//! With `--rate R`, connection `i` of `C` sends its `k`-th request at `t0 + i/R + k·C/R`: the
//! whole client sends `R` requests per second, evenly spread, and a connection with answers
//! outstanding goes on sending (pipelining) rather than waiting. A response's latency runs from
//! its request's *intended* send time, so a stall is charged to every request that should have
//! been sent during it (no coordinated omission), and servers are compared at the same load:
//! latency and CPU per response at a rate all of them can serve.
//!
//! The client's own lateness is measured apart: how long after its intended time the loop
//! noticed a request was due (`lag` in the tables). A large lag means the client, not the
//! server, set the latency of that run. To keep the lag small the thread never sleeps while a
//! request is due within [`SPIN_WITHIN`] (mio's poll timeout has millisecond granularity): it
//! polls without blocking, so with `--pin` it occupies its own core.
//!
//! A server that cannot keep up is not measured at that rate: when a connection has
//! [`MAX_OUTSTANDING`] requests unanswered, the run stops with an error naming the rate.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Poll, Token};

use crate::client::{
    CpuTicks, CpuWindow, ErrorCounts, Failure, MAX_LATENCY_NS, MAX_RECONNECTS, POLL_TICK, READ_BUF_BYTES,
    ResponseError, RunResult, batch_bytes, connected, open_stream, parse_response,
};
use crate::order::ReadyOrder;

/// Requests unanswered on one connection at which the server is judged unable to keep the rate.
pub(crate) const MAX_OUTSTANDING: usize = 4096;
/// A request unanswered this long after its intended time is a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The loop polls without blocking while the next request is due within this.
const SPIN_WITHIN: Duration = Duration::from_millis(2);
/// Reads on one connection per turn of the loop; one that used them up is read again in the
/// next turn without waiting for an event (readiness is edge-triggered).
const MAX_READS_PER_TURN: usize = 16;

/// What an open-loop run is asked to do.
#[derive(Clone, Debug)]
pub(crate) struct OpenOptions {
    pub(crate) connections: usize,
    /// Requests per second, over all connections.
    pub(crate) rate: f64,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
}

#[derive(Debug)]
struct Conn {
    stream: Option<TcpStream>,
    connected: bool,
    /// Intended send time of the next request.
    next_due: Instant,
    /// Request bytes due but not yet written.
    out: Vec<u8>,
    /// Intended send times of the requests written or due, oldest first; each response
    /// answers the front one.
    waiting: VecDeque<Instant>,
    buf: Box<[u8]>,
    filled: usize,
}

struct OpenClient<'a> {
    poll: Poll,
    addr: SocketAddr,
    request: &'a [u8],
    /// Time between two requests of one connection.
    period: Duration,
    conns: Vec<Conn>,
    measure_start: Instant,
    measure_end: Instant,
    result: RunResult,
    lag_ns: Histogram<u64>,
    reconnects: usize,
    cpu: CpuWindow<'a>,
}

/// Runs the open-loop load against `127.0.0.1:port`. Err when the server falls behind the rate
/// or the client's sockets fail outright.
pub(crate) fn run(
    port: u16,
    options: &OpenOptions,
    server_cpu: &mut dyn FnMut() -> Option<CpuTicks>,
) -> Result<RunResult, String> {
    if !(options.rate.is_finite() && options.rate > 0.0) {
        return Err(format!("rate {} is not a positive number", options.rate));
    }
    let request = batch_bytes(port, 1);
    let histogram = || Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3).map_err(|e| e.to_string());
    let c = options.connections;
    let period = Duration::from_secs_f64(c as f64 / options.rate);
    let start = Instant::now();
    let first = start + Duration::from_millis(50);
    let mut client = OpenClient {
        poll: Poll::new().map_err(|e| e.to_string())?,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        request: &request,
        period,
        conns: Vec::with_capacity(c),
        measure_start: first + options.warmup,
        measure_end: first + options.warmup + options.duration,
        result: RunResult {
            latency_ns: histogram()?,
            requests: 0,
            responses: 0,
            window: options.duration,
            errors: ErrorCounts::default(),
            server_cpu: None,
            lag_ns: None,
        },
        lag_ns: histogram()?,
        reconnects: 0,
        cpu: CpuWindow::new(server_cpu),
    };
    for i in 0..c {
        client.conns.push(Conn {
            stream: None,
            connected: false,
            next_due: first + Duration::from_secs_f64(i as f64 / options.rate),
            out: Vec::with_capacity(4096),
            waiting: VecDeque::with_capacity(256),
            buf: vec![0; READ_BUF_BYTES].into_boxed_slice(),
            filled: 0,
        });
        client.connect(i);
    }
    client.event_loop()?;
    let mut result = client.result;
    result.lag_ns = Some(client.lag_ns);
    Ok(result)
}

impl OpenClient<'_> {
    fn event_loop(&mut self) -> Result<(), String> {
        let mut events = Events::with_capacity(self.conns.len().max(16));
        let hard_end = self.measure_end + REQUEST_TIMEOUT + POLL_TICK;
        let mut again: Vec<usize> = Vec::new();
        let mut order = ReadyOrder::default();
        loop {
            let now = Instant::now();
            self.cpu.observe(now, self.measure_start, self.measure_end, &mut self.result.server_cpu);
            let waiting = self.conns.iter().any(|c| !c.waiting.is_empty());
            let live = self.conns.iter().any(|c| c.stream.is_some());
            if now >= hard_end || !live || (now >= self.measure_end && !waiting) {
                return Ok(());
            }
            self.schedule(now)?;
            let mut next_due = hard_end;
            for i in 0..self.conns.len() {
                self.write(i);
                let c = &self.conns[i];
                if c.stream.is_some() && c.next_due < self.measure_end {
                    next_due = next_due.min(c.next_due);
                }
            }
            let now = Instant::now();
            let timeout = if next_due <= now + SPIN_WITHIN || !again.is_empty() {
                Duration::ZERO
            } else {
                (next_due - now - SPIN_WITHIN).min(POLL_TICK)
            };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("poll: {e}")),
            }
            let ready = order.round(events.iter().map(|e| e.token().0), &mut again, self.conns.len());
            for &i in ready {
                if self.read(i) {
                    again.push(i);
                }
            }
        }
    }

    /// Queues on every connection the requests due by `now`, recording the loop's lateness;
    /// checks that the server keeps up.
    fn schedule(&mut self, now: Instant) -> Result<(), String> {
        for i in 0..self.conns.len() {
            let c = &mut self.conns[i];
            if c.stream.is_none() {
                continue;
            }
            while c.next_due <= now && c.next_due < self.measure_end {
                let due = c.next_due;
                c.out.extend_from_slice(self.request);
                c.waiting.push_back(due);
                c.next_due += self.period;
                if due >= self.measure_start {
                    self.result.requests += 1;
                    let ns = now.duration_since(due).as_nanos();
                    self.lag_ns.saturating_record(u64::try_from(ns).unwrap_or(u64::MAX).max(1));
                }
            }
            if c.waiting.len() >= MAX_OUTSTANDING {
                return Err(format!(
                    "the server fell behind the rate: {} requests unanswered on one connection",
                    c.waiting.len()
                ));
            }
            if c.waiting.front().is_some_and(|&t| now.duration_since(t) > REQUEST_TIMEOUT) {
                self.fail(i, Failure::Timeout);
            }
        }
        Ok(())
    }

    /// Writes what connection `i` has due, as far as the socket takes it.
    fn write(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if !c.connected && !self.check_connected(i) {
            return;
        }
        let c = &mut self.conns[i];
        let Some(stream) = c.stream.as_mut() else { return };
        while !c.out.is_empty() {
            match stream.write(&c.out) {
                Ok(0) => return self.fail(i, Failure::Closed),
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.fail(i, Failure::Io),
            }
        }
    }

    /// Whether connection `i` has finished connecting (it is set up for latency if so).
    fn check_connected(&mut self, i: usize) -> bool {
        let Some(stream) = &self.conns[i].stream else { return false };
        match connected(stream) {
            Ok(now) => {
                self.conns[i].connected = now;
                now
            }
            Err(()) => {
                self.fail(i, Failure::Connect);
                false
            }
        }
    }

    /// Reads what connection `i` has, timing every complete response from its request's
    /// intended send time. True if it stopped with reads left to try (its budget ran out).
    fn read(&mut self, i: usize) -> bool {
        for _ in 0..MAX_READS_PER_TURN {
            let c = &mut self.conns[i];
            let Some(stream) = c.stream.as_mut() else { return false };
            let n = match stream.read(&mut c.buf[c.filled..]) {
                Ok(0) => {
                    self.fail(i, Failure::Closed);
                    return false;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.fail(i, Failure::Io);
                    return false;
                }
            };
            let arrived = Instant::now();
            c.filled += n;
            let mut at = 0;
            loop {
                let response = match parse_response(&c.buf[at..c.filled]) {
                    Ok(Some(r)) => r,
                    Ok(None) => break,
                    Err(e) => {
                        self.fail(i, Failure::Response(e));
                        return false;
                    }
                };
                let Some(due) = c.waiting.pop_front() else {
                    self.fail(i, Failure::Extra);
                    return false;
                };
                at += response.len;
                if due >= self.measure_start && due < self.measure_end {
                    self.result.responses += 1;
                    let ns = arrived.duration_since(due).as_nanos();
                    self.result.latency_ns.saturating_record(u64::try_from(ns).unwrap_or(u64::MAX).max(1));
                    if response.status != 200 {
                        self.result.errors.status += 1;
                    }
                }
            }
            c.buf.copy_within(at..c.filled, 0);
            c.filled -= at;
            if c.filled == c.buf.len() {
                self.fail(i, Failure::Response(ResponseError::Length));
                return false;
            }
        }
        true
    }

    /// Opens connection `i` (again); its schedule goes on from where it was.
    fn connect(&mut self, i: usize) {
        let c = &mut self.conns[i];
        c.connected = false;
        c.filled = 0;
        c.out.clear();
        c.waiting.clear();
        c.stream = open_stream(&self.poll, self.addr, Token(i));
        if c.stream.is_none() {
            self.result.errors.connect += 1;
        }
    }

    /// Counts the failure, drops connection `i` (its unanswered requests stay unanswered:
    /// `sent−received` shows them) and, while the run lasts, opens a new one.
    fn fail(&mut self, i: usize, failure: Failure) {
        self.result.errors.count(failure);
        let c = &mut self.conns[i];
        if let Some(mut stream) = c.stream.take() {
            // Best effort: the stream is closed when dropped either way.
            let _ = self.poll.registry().deregister(&mut stream);
        }
        if Instant::now() < self.measure_end && self.reconnects < MAX_RECONNECTS {
            self.reconnects += 1;
            self.connect(i);
        } else {
            c.waiting.clear();
        }
    }
}
