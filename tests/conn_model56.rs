//! Model-based randomized trial of HTTP connections (`src/web/conn.rs` over `src/http/`): a
//! seeded xorshift builds, per batch, random client scripts on one to three raw `TcpStream`s
//! to a server on 127.0.0.1 (a node of 1 or 2 shards), runs them at once, and checks every byte
//! that comes back against a small model of what the docs promise (README.md, `web` and
//! `http` module docs, `HttpLimits`).
//!
//! What the scripts mix: GET/HEAD/POST/PUT/DELETE/OPTIONS; bodies by `Content-Length` and
//! chunked (random chunk sizes, extensions, trailers); `Expect: 100-continue`, waiting for the
//! 100 or sending the body anyway; HTTP/1.0 with and without keep-alive; `Connection: close`
//! mid-pipeline; pipelined bursts of random depth written in random fragments with small
//! pauses; answers from a plain function, a pool of `WebWorker`s finishing out of order
//! (random delays), streamed bodies (`respond_stream`), a panicking worker (500), a worker
//! that holds its request past `request_timeout` (504), a full pool (503); malformed
//! requests (each its 4xx/5xx refusal, then the close); ends by close, half-close (shutdown
//! of the client's writing side after its last request) or reset.
//!
//! The model, checked with a strict response parser of the test's own:
//! - every request before the first that closes gets exactly one final response, in request
//!   order, with the status its handler (or the connection's refusal) gives; nothing is
//!   answered after a request that closes, and the connection then ends (EOF or reset);
//! - a HEAD, a 204 and a 1xx carry no body; a 204 no framing field; an HTTP/1.0 request no
//!   chunked answer; the echoed body length and checksum match what was sent;
//! - `100 Continue` comes only to an HTTP/1.1 request with a body that asked, at most once,
//!   after the final answers to the requests before it; a client waiting for it gets it (or,
//!   from a full pool or an unknown path, the refusal, and the close);
//! - `Connection: close` is on the last answer exactly when the server closes; an HTTP/1.0
//!   keep-alive answer says `keep-alive`;
//! - after each batch, at a quiescent point: `WebServer::stats()` connections back to the one
//!   long-lived connection holding the full pool, `body_bytes` and `stream_bytes` 0, pools
//!   holding nothing (the full one its one blocker); and (batches without a reset) the
//!   counters moved exactly by the model: refusals by status, 504s, the full pool's shed.
//!
//! Replay one seed: `CONN_MODEL_SEED=<seed> cargo test --test conn_model56 -- --nocapture`
//! (the seed picks the shards). More seeds: `CONN_MODEL_SEEDS=<n>` (from `CONN_MODEL_FROM`).

mod review_support;

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pinion::http::{HttpLimits, Request, Response, StatusCode};
use pinion::web::{Router, WebHandler, WebHandlerOptions, WebRequest, WebServer, WebTarget, WebWorker};
use pinion::{Context, Node, NodeHandle, Pid, Pool, PoolOptions, ProcessOptions};
use review_support::{serve_with, start_node, wait_until};

/// Every read waits at most this long: a hang fails.
const READ_WAIT: Duration = Duration::from_secs(10);
/// The slow route's `request_timeout`: its worker holds every request until the batch ends.
const SLOW_TIMEOUT: Duration = Duration::from_millis(120);

// ---- the seeded generator -------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    /// True with probability `pct` %.
    fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// What the plain function and the pool's workers answer: the request's id, method, and the
/// length and checksum of its body.
fn echo(id: &str, method: &str, body: &[u8]) -> String {
    format!("id={id} m={method} len={} sum={:016x}", body.len(), fnv(body))
}

fn field(req: &Request, name: &str) -> String {
    req.header(name).map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()
}

fn echo_of(req: &Request) -> String {
    echo(&field(req, "x-id"), req.method_token(), req.body())
}

// ---- the server side ------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    /// `/pool` (random delay), `/stream` (a streamed body), `/panic` (panics: 500).
    Main,
    /// Holds every request until the batch ends: 504 first.
    Slow,
    /// Holds every request until the run ends: the blocker that keeps the pool full.
    Full,
}

struct W {
    role: Role,
    /// Bumped at the end of each batch: releases the slow worker's requests.
    batch: Arc<AtomicU64>,
    /// Set at the end of the run: releases the full pool's blocker.
    end: Arc<AtomicBool>,
}

impl W {
    async fn answer(&mut self, ctx: &mut Context, req: &Request) -> Response {
        match self.role {
            Role::Main => {
                if req.path() == "/panic" {
                    panic!("conn-model panic");
                }
                let delay: u64 = field(req, "x-delay").parse().unwrap_or(0);
                if delay > 0 {
                    ctx.sleep(Duration::from_millis(delay)).await;
                }
                Response::text(echo_of(req))
            }
            Role::Slow => {
                let mine = self.batch.load(Ordering::SeqCst);
                while self.batch.load(Ordering::SeqCst) == mine {
                    ctx.sleep(Duration::from_millis(2)).await;
                }
                Response::text("late")
            }
            Role::Full => {
                while !self.end.load(Ordering::SeqCst) {
                    ctx.sleep(Duration::from_millis(2)).await;
                }
                Response::text("held")
            }
        }
    }
}

impl WebWorker for W {
    const TAKES_REQUESTS: bool = true;

    async fn take_request(&mut self, ctx: &mut Context, req: WebRequest) -> Option<WebRequest> {
        if self.role != Role::Main || req.request().path() != "/stream" {
            return Some(req);
        }
        let id = field(req.request(), "x-id");
        let chunks: u32 = field(req.request(), "x-chunks").parse().unwrap_or(0);
        let delay: u64 = field(req.request(), "x-delay").parse().unwrap_or(0);
        let mut stream = req.respond_stream(Response::new(StatusCode::OK));
        for i in 0..chunks {
            if delay > 0 {
                ctx.sleep(Duration::from_millis(delay)).await;
            }
            stream.send(format!("<{id}:{i}>"));
        }
        stream.finish();
        None
    }
    async fn handle_get(&mut self, ctx: &mut Context, req: &Request) -> Response {
        self.answer(ctx, req).await
    }
    async fn handle_post(&mut self, ctx: &mut Context, req: &Request) -> Response {
        self.answer(ctx, req).await
    }
    async fn handle_put(&mut self, ctx: &mut Context, req: &Request) -> Response {
        self.answer(ctx, req).await
    }
    async fn handle_delete(&mut self, ctx: &mut Context, req: &Request) -> Response {
        self.answer(ctx, req).await
    }
}

/// The limits the malformed requests run into.
fn limits() -> HttpLimits {
    HttpLimits { max_uri_bytes: 256, max_headers: 24, max_body_bytes: 4096, ..HttpLimits::default() }
}

struct Server {
    node: Option<Node>,
    h: NodeHandle,
    server: Option<WebServer>,
    pools: [Pid; 3],
    batch: Arc<AtomicU64>,
    end: Arc<AtomicBool>,
    /// The connection whose request holds the full pool's one slot.
    blocker: Option<Conn>,
}

impl Server {
    fn start(seed: u64, shards: usize) -> Server {
        let node = start_node(&format!("c56-{seed}"), shards);
        let h = node.handle();
        let batch = Arc::new(AtomicU64::new(0));
        let end = Arc::new(AtomicBool::new(false));
        let spawn = |role: Role, size: usize, mailbox: usize| {
            let (b, e) = (batch.clone(), end.clone());
            let options = PoolOptions::new(size, mailbox, move || W { role, batch: b.clone(), end: e.clone() });
            node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool")
        };
        let pools = [spawn(Role::Main, 3, 32), spawn(Role::Slow, 2, 32), spawn(Role::Full, 1, 0)];
        let handler = |pool: Pid, timeout: Duration| {
            WebHandler::new(WebHandlerOptions {
                request_timeout: timeout,
                ..WebHandlerOptions::new(WebTarget::Pid(pool))
            })
        };
        let main = handler(pools[0], Duration::from_secs(30));
        let router = Router::new()
            .route("/plain", |req: &Request| Response::text(echo_of(req)))
            .route("/pool", main.clone())
            .route("/stream", main.clone())
            .route("/panic", main)
            .route("/slow", handler(pools[1], SLOW_TIMEOUT))
            .route("/full", handler(pools[2], Duration::from_secs(120)));
        let server = serve_with(&node, limits(), router);
        let mut s = Server { node: Some(node), h, server: Some(server), pools, batch, end, blocker: None };
        let mut blocker = Conn::open(s.addr());
        blocker.send(b"GET /full HTTP/1.1\r\nHost: t\r\nX-Id: 0\r\n\r\n").expect("blocker");
        s.blocker = Some(blocker);
        wait_until("the full pool's blocker is held", || s.held(2) == 1);
        s
    }
    fn addr(&self) -> SocketAddr {
        self.server.as_ref().expect("server").local_addr()
    }
    fn stats(&self) -> pinion::web::WebServerStats {
        self.server.as_ref().expect("server").stats()
    }
    fn held(&self, pool: usize) -> u32 {
        self.h.pool(self.pools[pool]).expect("a pool").info().held
    }
    fn shed(&self, pool: usize) -> u64 {
        self.h.pool(self.pools[pool]).expect("a pool").info().shed
    }
    /// Releases the slow requests and waits for a quiescent point: only the blocker open,
    /// nothing held for bodies or streams, the pools idle but for the blocker.
    /// `accepted`: the connections made so far (a client that reset may not be accepted yet).
    fn quiesce(&self, accepted: u64) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // Every turn: a slow request taken late (its client reset, say) is let go too.
            self.batch.fetch_add(1, Ordering::SeqCst);
            let st = self.stats();
            let held = [self.held(0), self.held(1), self.held(2)];
            if st.accepted == accepted
                && st.connections == 1
                && st.body_bytes == 0
                && st.stream_bytes == 0
                && held == [0, 0, 1]
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not back to idle: {st:?}, pools held {held:?}"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    fn finish(mut self) -> Result<(), String> {
        self.end.store(true, Ordering::SeqCst);
        let mut blocker = self.blocker.take().expect("blocker");
        let exp = Exp::plain(0, 200, Some(b"held".to_vec()));
        blocker.final_response(&exp)?;
        drop(blocker);
        wait_until("the last connection closed", || self.stats().connections == 0);
        wait_until("the full pool idle", || self.held(2) == 0);
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.end.store(true, Ordering::SeqCst);
        self.batch.fetch_add(1, Ordering::SeqCst);
        drop(self.blocker.take());
        if let Some(s) = self.server.take() {
            s.stop();
        }
        if let Some(n) = self.node.take() {
            n.stop();
        }
    }
}

// ---- the scripts ----------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Plain,
    Pool,
    Stream,
    Panic,
    Slow,
    Full,
    Missing,
}

impl Target {
    fn path(self) -> &'static str {
        match self {
            Target::Plain => "/plain",
            Target::Pool => "/pool",
            Target::Stream => "/stream",
            Target::Panic => "/panic",
            Target::Slow => "/slow",
            Target::Full => "/full",
            Target::Missing => "/nope",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Framing {
    None,
    Length,
    Chunked { sizes: Vec<usize>, ext: bool, trailers: bool },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    No,
    /// The client waits for `100 Continue` before it sends the body.
    Wait,
    /// The client sends the body with the head anyway.
    Send,
}

#[derive(Clone, Debug)]
struct Req {
    id: u64,
    method: &'static str,
    target: Target,
    http10: bool,
    keep_alive10: bool,
    close: bool,
    body: Vec<u8>,
    framing: Framing,
    expect: Expect,
    delay_ms: u64,
    chunks: u32,
}

/// A malformed request and the status the connection refuses it with.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Bad {
    Length,
    NoHost,
    Version,
    LongUri,
    ManyHeaders,
    TooLarge,
    ChunkSize,
    UnknownCoding,
    LengthAndChunked,
    UnknownMethod,
    SpaceBeforeColon,
    UnknownExpect,
}

const BADS: [Bad; 12] = [
    Bad::Length,
    Bad::NoHost,
    Bad::Version,
    Bad::LongUri,
    Bad::ManyHeaders,
    Bad::TooLarge,
    Bad::ChunkSize,
    Bad::UnknownCoding,
    Bad::LengthAndChunked,
    Bad::UnknownMethod,
    Bad::SpaceBeforeColon,
    Bad::UnknownExpect,
];

impl Bad {
    fn status(self) -> u16 {
        match self {
            Bad::Length | Bad::NoHost | Bad::ChunkSize | Bad::LengthAndChunked | Bad::SpaceBeforeColon => 400,
            Bad::Version => 505,
            Bad::LongUri => 414,
            Bad::ManyHeaders => 431,
            Bad::TooLarge => 413,
            Bad::UnknownCoding | Bad::UnknownMethod => 501,
            Bad::UnknownExpect => 417,
        }
    }
    /// An extension method no route names is answered 501 by the router (no refusal of the
    /// connection's: its framing is sound), the connection kept; every other is refused.
    fn closes(self) -> bool {
        self != Bad::UnknownMethod
    }
    fn bytes(self, id: u64) -> Vec<u8> {
        let h = format!("Host: t\r\nX-Id: {id}\r\n");
        match self {
            Bad::Length => format!("POST /plain HTTP/1.1\r\n{h}Content-Length: 1x\r\n\r\n"),
            Bad::NoHost => format!("GET /plain HTTP/1.1\r\nX-Id: {id}\r\n\r\n"),
            Bad::Version => format!("GET /plain HTTP/2.0\r\n{h}\r\n"),
            Bad::LongUri => format!("GET /plain?{} HTTP/1.1\r\n{h}\r\n", "a".repeat(300)),
            Bad::ManyHeaders => {
                let many: String = (0..30).map(|i| format!("X-F{i}: v\r\n")).collect();
                format!("GET /plain HTTP/1.1\r\n{h}{many}\r\n")
            }
            Bad::TooLarge => format!("POST /plain HTTP/1.1\r\n{h}Content-Length: 5000\r\n\r\n"),
            Bad::ChunkSize => format!("POST /plain HTTP/1.1\r\n{h}Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n"),
            Bad::UnknownCoding => format!("POST /plain HTTP/1.1\r\n{h}Transfer-Encoding: gzip, chunked\r\n\r\n"),
            Bad::LengthAndChunked => {
                format!("POST /plain HTTP/1.1\r\n{h}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            }
            Bad::UnknownMethod => format!("BREW /none HTTP/1.1\r\n{h}\r\n"),
            Bad::SpaceBeforeColon => format!("GET /plain HTTP/1.1\r\nHost : t\r\nX-Id: {id}\r\n\r\n"),
            Bad::UnknownExpect => format!("GET /plain HTTP/1.1\r\n{h}Expect: tea\r\n\r\n"),
        }
        .into_bytes()
    }
}

#[derive(Clone, Debug)]
enum Item {
    Req(Req),
    Bad(Bad, u64),
}

#[derive(Clone, Debug)]
enum Action {
    /// Bytes of these items, written in fragments split at `cuts`, pausing `pause_ms` between.
    Write {
        items: Vec<usize>,
        bytes: Vec<u8>,
        cuts: Vec<usize>,
        pause_ms: u64,
    },
    /// Reads the answers before item `.0`, then its `100 Continue` (or its refusal).
    Wait100(usize),
    /// Reads every answer due so far.
    ReadAll,
    HalfClose,
    Reset,
}

#[derive(Clone, Debug)]
struct Script {
    items: Vec<Item>,
    actions: Vec<Action>,
}

impl Script {
    fn describe(&self) -> String {
        let mut s = String::new();
        for (i, item) in self.items.iter().enumerate() {
            match item {
                Item::Req(r) => {
                    let _ = writeln!(
                        s,
                        "  [{i}] {} {} {}{}{} body={}B {:?} expect={:?} delay={} chunks={}",
                        r.method,
                        r.target.path(),
                        if r.http10 { "HTTP/1.0" } else { "HTTP/1.1" },
                        if r.http10 && r.keep_alive10 { " keep-alive" } else { "" },
                        if r.close { " close" } else { "" },
                        r.body.len(),
                        r.framing,
                        r.expect,
                        r.delay_ms,
                        r.chunks
                    );
                }
                Item::Bad(b, id) => {
                    let _ = writeln!(s, "  [{i}] malformed {b:?} (id {id})");
                }
            }
        }
        for a in &self.actions {
            match a {
                Action::Write { items, bytes, cuts, pause_ms } => {
                    let _ = writeln!(
                        s,
                        "  write items {items:?}: {} bytes cut at {cuts:?}, pause {pause_ms} ms",
                        bytes.len()
                    );
                }
                other => {
                    let _ = writeln!(s, "  {other:?}");
                }
            }
        }
        s
    }
}

/// Whether the server closes after the answer to an item.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Closes {
    No,
    Yes,
    /// Either (a body sent with the head while the head alone was refused: whether the
    /// refusal came before the body was seen is timing; an unsafe upload to the full pool
    /// waiting for `100 Continue`: whether requests before it were still in flight is).
    Maybe,
}

fn req_closes(r: &Req) -> Closes {
    let refused_head = matches!(r.target, Target::Full | Target::Missing);
    if r.close || (r.http10 && !r.keep_alive10) {
        return Closes::Yes;
    }
    // An HTTP/1.0 client's streamed body ends with the connection.
    if r.http10 && r.target == Target::Stream && r.method != "HEAD" {
        return Closes::Yes;
    }
    // An unsafe request to the full pool whose head comes while requests before it on its
    // connection are in flight waits for them (stop 33, `dispatch::head_waits`): its head is
    // let through (100 Continue), and it is shed 503 at its turn, the connection kept.
    // Whether one was still in flight when its head came is timing.
    if r.target == Target::Full && r.expect == Expect::Wait && !matches!(r.method, "GET" | "HEAD" | "OPTIONS") {
        return Closes::Maybe;
    }
    if refused_head && r.expect == Expect::Wait {
        return Closes::Yes;
    }
    if refused_head && r.expect == Expect::Send && !r.http10 {
        return Closes::Maybe;
    }
    Closes::No
}

fn gen_req(rng: &mut Rng, id: u64, slow_left: &mut u32) -> Req {
    let mut target = match rng.below(100) {
        0..=27 => Target::Plain,
        28..=57 => Target::Pool,
        58..=69 => Target::Stream,
        70..=74 => Target::Panic,
        75..=80 => Target::Slow,
        81..=91 => Target::Full,
        _ => Target::Missing,
    };
    if target == Target::Slow {
        if *slow_left == 0 {
            target = Target::Pool;
        } else {
            *slow_left -= 1;
        }
    }
    let method = match target {
        Target::Plain | Target::Pool | Target::Full | Target::Missing => {
            rng.pick(&["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "POST", "GET", "PROPFIND"])
        }
        Target::Stream => rng.pick(&["GET", "HEAD", "POST"]),
        Target::Panic | Target::Slow => rng.pick(&["GET", "POST"]),
    };
    let http10 = rng.pct(12);
    let keep_alive10 = http10 && rng.pct(60);
    let close = !http10 && rng.pct(6);
    let with_body =
        matches!(method, "POST" | "PUT") && rng.pct(85) || matches!(method, "DELETE" | "PROPFIND") && rng.pct(30);
    let len = if with_body { rng.pick(&[0, 1, 2, 17, 100, 700, 1500, 4000]) as usize } else { 0 };
    let len = if len > 0 && rng.pct(50) { rng.range(1, len as u64) as usize } else { len };
    let body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
    let framing = if !with_body {
        Framing::None
    } else if http10 || rng.pct(50) {
        Framing::Length
    } else {
        let mut sizes = Vec::new();
        let mut left = len;
        while left > 0 {
            let n = (rng.range(1, 600) as usize).min(left);
            sizes.push(n);
            left -= n;
        }
        Framing::Chunked { sizes, ext: rng.pct(30), trailers: rng.pct(30) }
    };
    let expect = if with_body && len > 0 && rng.pct(if http10 { 8 } else { 25 }) {
        if !http10 && rng.pct(60) { Expect::Wait } else { Expect::Send }
    } else {
        Expect::No
    };
    let delay_ms = if rng.pct(60) { rng.below(6) } else { 0 };
    let chunks = rng.below(6) as u32;
    Req { id, method, target, http10, keep_alive10, close, body, framing, expect, delay_ms, chunks }
}

/// The request's head and the body as sent.
fn req_bytes(r: &Req, rng: &mut Rng) -> (Vec<u8>, Vec<u8>) {
    let mut head = format!(
        "{} {} HTTP/1.{}\r\nHost: t\r\nX-Id: {}\r\nX-Delay: {}\r\nX-Chunks: {}\r\n",
        r.method,
        r.target.path(),
        if r.http10 { 0 } else { 1 },
        r.id,
        r.delay_ms,
        r.chunks
    );
    let mut body = Vec::new();
    match &r.framing {
        Framing::None => {}
        Framing::Length => {
            let _ = write!(head, "Content-Length: {}\r\n", r.body.len());
            body.extend_from_slice(&r.body);
        }
        Framing::Chunked { sizes, ext, trailers } => {
            head.push_str("Transfer-Encoding: chunked\r\n");
            let mut at = 0;
            for &n in sizes {
                let size = if rng.pct(50) { format!("{n:x}") } else { format!("{n:X}") };
                body.extend_from_slice(size.as_bytes());
                if *ext {
                    body.extend_from_slice(b";e=1");
                }
                body.extend_from_slice(b"\r\n");
                body.extend_from_slice(&r.body[at..at + n]);
                body.extend_from_slice(b"\r\n");
                at += n;
            }
            body.extend_from_slice(if *ext { b"0;last\r\n" } else { b"0\r\n" });
            if *trailers {
                body.extend_from_slice(b"X-Trailer: t\r\n");
            }
            body.extend_from_slice(b"\r\n");
        }
    }
    if r.expect != Expect::No {
        head.push_str("Expect: 100-continue\r\n");
    }
    if r.close {
        head.push_str("Connection: close\r\n");
    } else if r.http10 && r.keep_alive10 {
        head.push_str("Connection: keep-alive\r\n");
    }
    head.push_str("\r\n");
    (head.into_bytes(), body)
}

fn cuts(rng: &mut Rng, len: usize) -> Vec<usize> {
    if len < 2 {
        return Vec::new();
    }
    let mut c: Vec<usize> = (0..rng.below(5)).map(|_| rng.range(1, len as u64 - 1) as usize).collect();
    c.sort_unstable();
    c.dedup();
    c
}

fn gen_script(rng: &mut Rng, first_id: u64) -> Script {
    let mut items = Vec::new();
    let mut actions = Vec::new();
    let mut id = first_id;
    let mut slow_left = 2;
    let n_bursts = rng.range(1, 4);
    let mut closed = false;
    let ending = rng.below(10); // 0..=5 close, 6..=7 half-close, 8..=9 reset
    'bursts: for b in 0..n_bursts {
        let depth = rng.range(1, 6);
        let mut seg_items = Vec::new();
        let mut seg = Vec::new();
        for _ in 0..depth {
            let i = items.len();
            id += 1;
            if rng.pct(6) {
                let bad = rng.pick(&BADS);
                seg.extend_from_slice(&bad.bytes(id));
                seg_items.push(i);
                items.push(Item::Bad(bad, id));
                closed = bad.closes();
            } else {
                let r = gen_req(rng, id, &mut slow_left);
                let (head, body) = req_bytes(&r, rng);
                let closes = req_closes(&r);
                seg_items.push(i);
                seg.extend_from_slice(&head);
                if r.expect == Expect::Wait {
                    let c = cuts(rng, seg.len());
                    let pause_ms = rng.below(3);
                    actions.push(Action::Write {
                        items: std::mem::take(&mut seg_items),
                        bytes: std::mem::take(&mut seg),
                        cuts: c,
                        pause_ms,
                    });
                    actions.push(Action::Wait100(i));
                    seg_items.push(i);
                }
                seg.extend_from_slice(&body);
                items.push(Item::Req(r));
                closed = closes == Closes::Yes;
            }
            if closed {
                // Requests after the one that closes: written, never answered.
                for _ in 0..rng.below(3) {
                    id += 1;
                    let i = items.len();
                    let r = gen_req(rng, id, &mut 0);
                    let (head, body) = req_bytes(&Req { expect: Expect::No, ..r.clone() }, rng);
                    seg.extend_from_slice(&head);
                    seg.extend_from_slice(&body);
                    seg_items.push(i);
                    items.push(Item::Req(Req { expect: Expect::No, ..r }));
                }
                break;
            }
        }
        if !seg.is_empty() {
            let c = cuts(rng, seg.len());
            let pause_ms = rng.below(3);
            actions.push(Action::Write { items: seg_items, bytes: seg, cuts: c, pause_ms });
        }
        let last = closed || b + 1 == n_bursts;
        if last {
            match ending {
                6..=7 => {
                    actions.push(Action::HalfClose);
                    actions.push(Action::ReadAll);
                }
                8..=9 => {
                    if rng.pct(50) {
                        actions.push(Action::ReadAll);
                    }
                    actions.push(Action::Reset);
                }
                _ => actions.push(Action::ReadAll),
            }
            break 'bursts;
        }
        if rng.pct(50) {
            actions.push(Action::ReadAll);
        }
    }
    Script { items, actions }
}

// ---- the model of the answers ---------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum Interim {
    /// No `100 Continue` may come.
    None,
    /// One may come (a body sent with the head anyway, or waited for).
    May,
}

#[derive(Clone, Debug)]
struct Exp {
    item: usize,
    status: u16,
    head: bool,
    http10: bool,
    closes: Closes,
    interim: Interim,
    /// The body exactly, when the model knows it.
    body: Option<Vec<u8>>,
    /// Counted in the server's stats: refused by status, 504, the full pool's shed.
    refused: Option<u16>,
    timed_out: bool,
    shed: bool,
}

impl Exp {
    fn plain(item: usize, status: u16, body: Option<Vec<u8>>) -> Exp {
        Exp {
            item,
            status,
            head: false,
            http10: false,
            closes: Closes::No,
            interim: Interim::None,
            body,
            refused: None,
            timed_out: false,
            shed: false,
        }
    }

    fn of(item: usize, it: &Item) -> Exp {
        match it {
            Item::Bad(bad, _) => Exp {
                closes: if bad.closes() { Closes::Yes } else { Closes::No },
                refused: bad.closes().then_some(bad.status()),
                ..Exp::plain(item, bad.status(), None)
            },
            Item::Req(r) => {
                let id = r.id.to_string();
                let (status, body) = match (r.target, r.method) {
                    (Target::Plain, m) => (200, Some(echo(&id, m, &r.body).into_bytes())),
                    (Target::Pool, "OPTIONS") => (204, Some(Vec::new())),
                    // An extension method: the worker has no `handle_other`; no route names it.
                    (Target::Pool | Target::Missing, "PROPFIND") => (501, None),
                    (Target::Pool, m) => (200, Some(echo(&id, m, &r.body).into_bytes())),
                    (Target::Stream, _) => {
                        (200, Some((0..r.chunks).map(|i| format!("<{id}:{i}>")).collect::<String>().into_bytes()))
                    }
                    (Target::Panic, _) => (500, None),
                    (Target::Slow, _) => (504, None),
                    (Target::Full, _) => (503, None),
                    (Target::Missing, _) => (404, None),
                };
                let head = r.method == "HEAD";
                Exp {
                    head,
                    http10: r.http10,
                    closes: req_closes(r),
                    interim: if r.expect != Expect::No && !r.http10 { Interim::May } else { Interim::None },
                    body: if head { Some(Vec::new()) } else { body },
                    timed_out: r.target == Target::Slow,
                    shed: r.target == Target::Full,
                    ..Exp::plain(item, status, None)
                }
            }
        }
    }
}

#[derive(Debug)]
struct Head {
    status: u16,
    fields: Vec<(String, String)>,
}

impl Head {
    fn all(&self, name: &str) -> Vec<&str> {
        self.fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str()).collect()
    }
    fn one(&self, name: &str) -> Result<Option<&str>, String> {
        let all = self.all(name);
        match all.len() {
            0 => Ok(None),
            1 => Ok(Some(all[0])),
            _ => Err(format!("{name} given {} times: {:?}", all.len(), self.fields)),
        }
    }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A client socket with a strict reader of responses.
struct Conn {
    s: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(READ_WAIT)).unwrap();
        s.set_nodelay(true).unwrap();
        Conn { s, buf: Vec::new(), eof: false }
    }
    fn send(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.s.write_all(b)
    }
    fn fill(&mut self, what: &str) -> Result<(), String> {
        if self.eof {
            return Err(format!("EOF while reading {what}; have {:?}", String::from_utf8_lossy(&self.buf)));
        }
        let mut chunk = [0u8; 16384];
        match self.s.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                Err(format!("EOF while reading {what}; have {:?}", String::from_utf8_lossy(&self.buf)))
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("{e} while reading {what}; have {:?}", String::from_utf8_lossy(&self.buf))),
        }
    }
    /// A line ending in CRLF (a bare LF or CR is an error), without it.
    fn line(&mut self, what: &str) -> Result<Vec<u8>, String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                if i == 0 || self.buf[i - 1] != b'\r' {
                    return Err(format!("bare LF in {what}: {:?}", String::from_utf8_lossy(&self.buf[..=i])));
                }
                let l: Vec<u8> = self.buf.drain(..=i).take(i - 1).collect();
                if l.contains(&b'\r') {
                    return Err(format!("bare CR in {what}: {:?}", String::from_utf8_lossy(&l)));
                }
                return Ok(l);
            }
            if self.buf.len() > 16 * 1024 {
                return Err(format!("{what} longer than 16 KiB"));
            }
            self.fill(what)?;
        }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            self.fill(what)?;
        }
        Ok(self.buf.drain(..n).collect())
    }
    fn head(&mut self) -> Result<Head, String> {
        let line = self.line("a status line")?;
        let text = String::from_utf8(line).map_err(|e| format!("status line not UTF-8: {e}"))?;
        let b = text.as_bytes();
        if b.len() < 12 || !text.starts_with("HTTP/1.1 ") || !b[9..12].iter().all(u8::is_ascii_digit) {
            return Err(format!("bad status line {text:?}"));
        }
        if b.len() > 12 && (b[12] != b' ' || b[13..].iter().any(|&c| c < 0x20 && c != b'\t' || c == 0x7f)) {
            return Err(format!("bad status line {text:?}"));
        }
        let status: u16 = text[9..12].parse().unwrap();
        if !(100..=599).contains(&status) {
            return Err(format!("status {status} out of range"));
        }
        let mut fields = Vec::new();
        loop {
            let l = self.line("a field line")?;
            if l.is_empty() {
                break;
            }
            let colon = l
                .iter()
                .position(|&c| c == b':')
                .ok_or_else(|| format!("field without colon {:?}", String::from_utf8_lossy(&l)))?;
            let (name, value) = (&l[..colon], &l[colon + 1..]);
            if name.is_empty() || !name.iter().all(|&c| is_tchar(c)) {
                return Err(format!("bad field name {:?}", String::from_utf8_lossy(&l)));
            }
            if value.iter().any(|&c| (c < 0x20 && c != b'\t') || c == 0x7f) {
                return Err(format!("bad field value {:?}", String::from_utf8_lossy(&l)));
            }
            let value = String::from_utf8_lossy(value).trim_matches([' ', '\t']).to_owned();
            fields.push((String::from_utf8_lossy(name).into_owned(), value));
            if fields.len() > 64 {
                return Err("more than 64 fields".into());
            }
        }
        Ok(Head { status, fields })
    }

    /// The final response to `exp` (a `100 Continue` before it only if allowed and not
    /// `seen_100` yet). Returns whether the server closes after it.
    fn final_response(&mut self, exp: &Exp) -> Result<bool, String> {
        let mut got_100 = false;
        let h = loop {
            let h = self.head()?;
            if h.status == 100 {
                if exp.interim == Interim::None || got_100 {
                    return Err(format!("a 100 Continue not allowed before the answer to item {}", exp.item));
                }
                if !h.fields.iter().all(|(n, _)| n.eq_ignore_ascii_case("server") || n.eq_ignore_ascii_case("date"))
                    && !h.fields.is_empty()
                {
                    // Fields on a 100 are allowed; only framing ones would be odd.
                    if h.one("content-length")?.is_some() || h.one("transfer-encoding")?.is_some() {
                        return Err(format!("framing fields on a 100: {:?}", h.fields));
                    }
                }
                got_100 = true;
                continue;
            }
            if h.status < 200 {
                return Err(format!("unexpected interim {}", h.status));
            }
            break h;
        };
        self.rest_of_final(exp, h)
    }

    fn rest_of_final(&mut self, exp: &Exp, h: Head) -> Result<bool, String> {
        if h.status != exp.status {
            return Err(format!(
                "item {}: status {} (model: {}); fields {:?}",
                exp.item, h.status, exp.status, h.fields
            ));
        }
        let connection = h.one("connection")?.map(str::to_ascii_lowercase);
        let closing = match connection.as_deref() {
            Some("close") => true,
            Some("keep-alive") => false,
            None => exp.http10,
            Some(other) => return Err(format!("connection: {other:?}")),
        };
        if exp.http10 && connection.is_none() {
            return Err(format!("item {}: an HTTP/1.0 answer without a connection field", exp.item));
        }
        match (exp.closes, closing) {
            (Closes::Yes, false) => {
                return Err(format!("item {}: the server keeps a connection the model closes", exp.item));
            }
            (Closes::No, true) => {
                return Err(format!(
                    "item {}: the server closes a connection the model keeps: {:?}",
                    exp.item, h.fields
                ));
            }
            _ => {}
        }
        if exp.status == 503 && exp.shed && h.one("retry-after")?.is_none() {
            return Err(format!("item {}: a 503 without Retry-After", exp.item));
        }
        let length = h.one("content-length")?;
        let coding = h.one("transfer-encoding")?;
        if length.is_some() && coding.is_some() {
            return Err(format!("both content-length and transfer-encoding: {:?}", h.fields));
        }
        if let Some(c) = coding {
            if c != "chunked" {
                return Err(format!("transfer-encoding {c:?}"));
            }
            if exp.http10 {
                return Err(format!("item {}: chunked to an HTTP/1.0 request", exp.item));
            }
        }
        if h.status == 204 && (length.is_some() || coding.is_some()) {
            return Err(format!("framing fields on a 204: {:?}", h.fields));
        }
        let body = if exp.head || h.status == 204 || h.status == 304 {
            Vec::new()
        } else if coding.is_some() {
            let mut body = Vec::new();
            loop {
                let l = self.line("a chunk size")?;
                if l.is_empty() || l.len() > 16 || !l.iter().all(u8::is_ascii_hexdigit) {
                    return Err(format!("bad chunk size line {:?}", String::from_utf8_lossy(&l)));
                }
                let n = usize::from_str_radix(std::str::from_utf8(&l).unwrap(), 16).unwrap();
                if n == 0 {
                    loop {
                        let t = self.line("a trailer")?;
                        if t.is_empty() {
                            break;
                        }
                    }
                    break body;
                }
                body.extend(self.take(n, "a chunk")?);
                if self.take(2, "a chunk's CRLF")? != b"\r\n" {
                    return Err("chunk data not followed by CRLF".into());
                }
            }
        } else if let Some(len) = length {
            if len.is_empty() || !len.bytes().all(|c| c.is_ascii_digit()) {
                return Err(format!("content-length {len:?}"));
            }
            self.take(len.parse().map_err(|e| format!("content-length {len:?}: {e}"))?, "a body")?
        } else {
            if !closing {
                return Err(format!("item {}: a body delimited by the close on a kept connection", exp.item));
            }
            while !self.eof {
                match self.fill("a body to the close") {
                    Ok(()) => {}
                    Err(_) if self.eof => {}
                    Err(e) => return Err(e),
                }
            }
            std::mem::take(&mut self.buf)
        };
        if let Some(want) = &exp.body
            && &body != want
        {
            return Err(format!(
                "item {}: body {:?}, model {:?}",
                exp.item,
                String::from_utf8_lossy(&body),
                String::from_utf8_lossy(want)
            ));
        }
        Ok(closing)
    }

    /// After an answer that closes: nothing more, then the end (EOF or reset).
    fn expect_end(&mut self) -> Result<(), String> {
        let _ = self.s.shutdown(Shutdown::Write);
        if !self.buf.is_empty() {
            return Err(format!("bytes after the closing answer: {:?}", String::from_utf8_lossy(&self.buf)));
        }
        if self.eof {
            return Ok(());
        }
        let mut chunk = [0u8; 4096];
        match self.s.read(&mut chunk) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!("bytes after the closing answer: {:?}", String::from_utf8_lossy(&chunk[..n]))),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => Ok(()),
            Err(e) => Err(format!("{e} waiting for the close after the closing answer")),
        }
    }
}

// ---- running a script -----------------------------------------------------------------------

#[derive(Default, Debug, Clone, PartialEq)]
struct Counts {
    refused: BTreeMap<u16, u64>,
    timed_out: u64,
    shed: u64,
}

/// What a connection's run leaves for the batch's checks.
struct Outcome {
    counts: Counts,
    reset: bool,
}

fn run_script(addr: SocketAddr, script: &Script) -> Result<Outcome, String> {
    let mut c = Conn::open(addr);
    let exps: Vec<Exp> = script.items.iter().enumerate().map(|(i, it)| Exp::of(i, it)).collect();
    let mut pending: VecDeque<usize> = VecDeque::new();
    let mut counts = Counts::default();
    let mut closed = false;
    let mut write_failed = None;
    let mut waited: Vec<usize> = Vec::new();
    let mut written: Vec<usize> = Vec::new();

    // Reads the final answer to the next pending item.
    let read_next =
        |c: &mut Conn, pending: &mut VecDeque<usize>, counts: &mut Counts, waited: &[usize]| -> Result<bool, String> {
            let i = pending.pop_front().expect("an item pending");
            let mut exp = exps[i].clone();
            if waited.contains(&i) {
                exp.interim = Interim::None; // its 100 was read already
            }
            let closing = c.final_response(&exp)?;
            count(counts, &exp);
            if closing {
                pending.clear();
            }
            Ok(closing)
        };

    for action in &script.actions {
        if closed {
            break;
        }
        match action {
            Action::Write { items, bytes, cuts, pause_ms } => {
                if write_failed.is_some() {
                    continue;
                }
                for &i in items {
                    if !written.contains(&i) {
                        written.push(i);
                        pending.push_back(i);
                    }
                }
                let mut at = 0;
                for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
                    if let Err(e) = c.send(&bytes[at..cut]) {
                        write_failed = Some(e.to_string());
                        break;
                    }
                    at = cut;
                    if *pause_ms > 0 && cut < bytes.len() {
                        std::thread::sleep(Duration::from_millis(*pause_ms));
                    }
                }
            }
            Action::Wait100(k) => {
                if write_failed.is_some() {
                    continue;
                }
                while pending.front().is_some_and(|&i| i != *k) {
                    if read_next(&mut c, &mut pending, &mut counts, &waited)? {
                        closed = true;
                        break;
                    }
                }
                if closed {
                    break;
                }
                let h = c.head()?;
                let exp = &exps[*k];
                if h.status == 100 {
                    waited.push(*k);
                    continue;
                }
                // Refused before the upload: the answer, then the close.
                if exp.closes == Closes::No {
                    return Err(format!(
                        "item {k}: status {} instead of the 100 Continue the client waits for",
                        h.status
                    ));
                }
                pending.pop_front();
                let closing = c.rest_of_final(exp, h)?;
                count(&mut counts, exp);
                if !closing {
                    return Err(format!("item {k}: refused before its upload without closing"));
                }
                closed = true;
            }
            Action::ReadAll => {
                while !pending.is_empty() {
                    if read_next(&mut c, &mut pending, &mut counts, &waited)? {
                        closed = true;
                        break;
                    }
                }
            }
            Action::HalfClose => {
                c.s.shutdown(Shutdown::Write).map_err(|e| format!("half-close: {e}"))?;
            }
            Action::Reset => {
                socket2::SockRef::from(&c.s).set_linger(Some(Duration::ZERO)).unwrap();
                drop(c);
                return Ok(Outcome { counts, reset: true });
            }
        }
    }
    if closed {
        c.expect_end()?;
    } else if let Some(e) = write_failed {
        return Err(format!("a write failed ({e}) on a connection the model keeps open"));
    } else if script.actions.iter().any(|a| matches!(a, Action::HalfClose)) {
        // All answered; the client sent its last: the server ends the connection.
        c.expect_end()?;
    }
    Ok(Outcome { counts, reset: false })
}

fn count(counts: &mut Counts, exp: &Exp) {
    if let Some(s) = exp.refused {
        *counts.refused.entry(s).or_default() += 1;
    }
    counts.timed_out += u64::from(exp.timed_out);
    counts.shed += u64::from(exp.shed);
}

fn observed(server: &Server) -> Counts {
    let st = server.stats();
    Counts {
        refused: st.refused.iter().filter(|(_, n)| *n > 0).map(|(s, n)| (s.0, *n)).collect(),
        timed_out: st.timed_out,
        shed: server.shed(2),
    }
}

fn minus(a: &Counts, b: &Counts) -> Counts {
    let mut refused = BTreeMap::new();
    for (s, n) in &a.refused {
        let d = n - b.refused.get(s).copied().unwrap_or(0);
        if d > 0 {
            refused.insert(*s, d);
        }
    }
    Counts { refused, timed_out: a.timed_out - b.timed_out, shed: a.shed - b.shed }
}

/// One seed: a node, a server, a few batches of concurrent connection scripts.
fn run(seed: u64) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    let shards = if seed.is_multiple_of(2) { 1 } else { 2 };
    let server = Server::start(seed, shards);
    let addr = server.addr();
    let mut log = format!("seed {seed}, {shards} shard(s)\n");
    let mut base = observed(&server);
    let mut id = 0;
    let mut connects = 1;
    for batch in 0..rng.range(2, 4) {
        let scripts: Vec<Script> = (0..rng.range(1, 3))
            .map(|_| {
                let s = gen_script(&mut rng, id);
                id += 1000;
                s
            })
            .collect();
        for (n, s) in scripts.iter().enumerate() {
            let _ = write!(log, "batch {batch}, connection {n}:\n{}", s.describe());
        }
        let outcomes: Vec<Result<Outcome, String>> = std::thread::scope(|scope| {
            let runs: Vec<_> = scripts.iter().map(|s| scope.spawn(move || run_script(addr, s))).collect();
            runs.into_iter().map(|r| r.join().unwrap_or_else(|_| Err("the client thread panicked".into()))).collect()
        });
        let mut want = Counts::default();
        let mut any_reset = false;
        for (n, o) in outcomes.into_iter().enumerate() {
            let o = o.map_err(|e| format!("{log}batch {batch}, connection {n}: {e}"))?;
            any_reset |= o.reset;
            for (s, k) in o.counts.refused {
                *want.refused.entry(s).or_default() += k;
            }
            want.timed_out += o.counts.timed_out;
            want.shed += o.counts.shed;
        }
        connects += scripts.len() as u64;
        server.quiesce(connects).map_err(|e| format!("{log}after batch {batch}: {e}"))?;
        let now = observed(&server);
        if !any_reset {
            let got = minus(&now, &base);
            if got != want {
                return Err(format!("{log}after batch {batch}: counters moved by {got:?}, model {want:?}"));
            }
        }
        base = now;
    }
    server.finish().map_err(|e| format!("{log}at the end: {e}"))
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn quiet_model_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>().is_some_and(|s| s.contains("conn-model panic")) {
                return;
            }
            default(info);
        }));
    });
}

fn seeds(parity: u64, default_n: u64) {
    quiet_model_panics();
    if let Some(seed) = env("CONN_MODEL_SEED") {
        if seed % 2 == parity
            && let Err(e) = run(seed)
        {
            panic!("{e}\nreplay: CONN_MODEL_SEED={seed} cargo test --test conn_model56");
        }
        return;
    }
    let from = env("CONN_MODEL_FROM").unwrap_or(0);
    let n = env("CONN_MODEL_SEEDS").unwrap_or(default_n);
    let begun = Instant::now();
    for k in 0..n {
        let seed = from + 2 * k + parity;
        if let Err(e) = run(seed) {
            panic!("{e}\nreplay: CONN_MODEL_SEED={seed} cargo test --test conn_model56");
        }
    }
    eprintln!("{n} seeds ({} shard(s)) in {:?}", parity + 1, begun.elapsed());
}

#[test]
fn connections_agree_with_their_model_on_one_shard() {
    seeds(0, 80);
}

#[test]
fn connections_agree_with_their_model_on_two_shards() {
    seeds(1, 80);
}

/// An extension method no route names (the model's first run read the `http` module docs,
/// which said every refusal closes): its framing is sound, so the router answers it 501 and
/// the next request is served on the same connection.
#[test]
fn an_unknown_method_is_answered_501_and_the_connection_kept() {
    let server = Server::start(1_000_001, 1);
    let mut c = Conn::open(server.addr());
    c.send(&[&Bad::UnknownMethod.bytes(1)[..], b"GET /plain HTTP/1.1\r\nHost: t\r\nX-Id: 2\r\n\r\n"].concat())
        .expect("send");
    let refused = Exp::of(0, &Item::Bad(Bad::UnknownMethod, 1));
    assert_eq!(c.final_response(&refused), Ok(false));
    let next = Exp::plain(1, 200, Some(echo("2", "GET", b"").into_bytes()));
    assert_eq!(c.final_response(&next), Ok(false));
    drop(c);
    server.quiesce(2).expect("idle");
    server.finish().expect("finish");
}
