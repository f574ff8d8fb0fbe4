//! Model-based randomized tests of worker pools (`src/pool/`): a seeded xorshift drives random
//! sequences of operations against a real node (1 and 2 shards) and against a small model of
//! what the docs promise, checked after every step at a quiescent point.
//!
//! Operations: sends from outside (`NodeHandle`) and from processes on either shard, calls
//! from outside and from processes, pipelined HTTP bursts to a `WebHandler::to(pool)` route
//! (some requests making the worker panic), sends addressed straight to one worker, panicking
//! messages, releasing `k` held workers, resizes; each run ends by draining and stopping the
//! pool, stopping the pool with work held, or stopping the node with work held.
//!
//! Workers hold every message in progress until the test releases a permit (`Latch`), so what
//! is in progress is controlled. Invariants checked:
//! - a send to the pool is accepted iff the pool holds fewer than `size × (mailbox + 1)`
//!   (whatever the sender: thread, process on either shard, call, HTTP, mixed); a refused
//!   message comes back in `MailboxFull` (a call: `Err(MailboxFull)`; HTTP: 503 with
//!   `Retry-After`), and the refusal is counted in `PoolInfo::shed`;
//! - a send straight to a worker is accepted iff that worker holds fewer than `mailbox + 1`;
//! - at quiescence `PoolInfo` agrees with the model: capacity, held (= sum of the workers'
//!   `queued`), shed, `shed_accepted` 0, restarts = panics, `size` ≥ the size asked;
//! - holds finished = min(permits released, holds accepted); every accepted message is
//!   handled at most once, only accepted ones are handled, and at the end exactly once, or
//!   answered as documented when the pool or node stops (call `Stopped`, HTTP 503 / 500);
//! - every message built is dropped exactly once by the end (a `Drop` counter): nothing leaks.
//!
//! Replay one seed: `POOL_MODEL_SEED=<seed> POOL_MODEL_SHARDS=<1|2> cargo test --test pool_model45`.
//! More seeds: `POOL_MODEL_SEEDS=<n>`.

mod support;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::{Duration, Instant};

use pinion::http::{Request, Response};
use pinion::web::{Router, WebHandler, WebHandlerOptions, WebRequest, WebServer, WebServerOptions, WebTarget};
use pinion::{
    Actor, CallError, CallFuture, Context, Cores, ExitReason, Message, Node, NodeHandle, NodeOptions, Pid, Pool,
    PoolInfo, PoolOptions, PoolRef, Priority, ProcessOptions, Reply, SendError, ShardId,
};
use support::{Latch, lock};

// ---- the seeded generator -------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so that neighbouring seeds differ at once; never 0.
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
    /// In `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// In `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
}

// ---- what the workers record ----------------------------------------------------------------

#[derive(Default)]
struct Book {
    /// Ids of the holds finished, in order.
    done: Mutex<Vec<u64>>,
    /// Holds whose handling began (the worker may be parked in them).
    begun: AtomicUsize,
    /// Holds finished.
    finished: AtomicUsize,
    /// Panicking messages handled (the worker panicked right after counting), and their ids.
    panicked: AtomicUsize,
    panicked_ids: Mutex<Vec<u64>>,
    /// Messages built and dropped (`Tok`).
    created: AtomicUsize,
    dropped: AtomicUsize,
}

impl Book {
    fn panicked(&self, id: u64) {
        lock(&self.panicked_ids).push(id);
        self.panicked.fetch_add(1, Ordering::SeqCst);
    }
}

/// Counts its own drop: every message carries one.
struct Tok(Arc<Book>);

impl Tok {
    fn new(book: &Arc<Book>) -> Tok {
        book.created.fetch_add(1, Ordering::SeqCst);
        Tok(book.clone())
    }
}

impl Drop for Tok {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

enum Job {
    /// Held in progress until a permit, then recorded.
    Hold(u64, Tok),
    /// The worker panics with it in hand.
    Panic(u64, Tok),
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Hold(id, _) => write!(f, "Hold({id})"),
            Job::Panic(id, _) => write!(f, "Panic({id})"),
        }
    }
}

impl Job {
    fn id(&self) -> u64 {
        match self {
            Job::Hold(id, _) | Job::Panic(id, _) => *id,
        }
    }
}

struct W {
    latch: Arc<Latch>,
    book: Arc<Book>,
}

impl W {
    async fn hold(&self, id: u64) {
        self.book.begun.fetch_add(1, Ordering::SeqCst);
        self.latch.acquire().await;
        lock(&self.book.done).push(id);
        self.book.finished.fetch_add(1, Ordering::SeqCst);
    }
}

impl Actor for W {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        let msg = match msg.downcast::<Job>() {
            Ok(Job::Hold(id, _tok)) => {
                self.hold(id).await;
                return Ok(());
            }
            Ok(Job::Panic(id, _tok)) => {
                self.book.panicked(id);
                panic!("model45: a worker panics on request");
            }
            Err(msg) => msg,
        };
        let req = msg.downcast::<WebRequest>().map_err(|_| ExitReason::custom("model45: an unexpected message"))?;
        let path = req.request().path().to_owned();
        let id: u64 = path.rsplit('/').next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
        if path.starts_with("/p/") {
            self.book.panicked(id);
            panic!("model45: a worker panics on a request");
        }
        self.hold(id).await;
        req.respond(Response::text(id.to_string()));
        Ok(())
    }

    async fn handle_call(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<Reply, ExitReason> {
        match msg.downcast::<Job>() {
            Ok(Job::Hold(id, _tok)) => {
                self.hold(id).await;
                Ok(Reply::now(id))
            }
            Ok(Job::Panic(id, _tok)) => {
                self.book.panicked(id);
                panic!("model45: a worker panics in a call");
            }
            Err(_) => Err(ExitReason::custom("model45: an unexpected call")),
        }
    }
}

// ---- senders inside the runtime ------------------------------------------------------------

/// A call to a [`Relay`]: send `job` to `to` from the relay's process (its shard).
struct SendReq {
    to: Pid,
    job: Job,
    lane: Priority,
}

/// Sends on behalf of the test from its shard and answers the outcome.
struct Relay;

impl Actor for Relay {
    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, req: Message) -> Result<Reply, ExitReason> {
        let Ok(SendReq { to, job, lane }) = req.downcast::<SendReq>() else { return Ok(Reply::now(())) };
        let result: Result<(), SendError<Job>> = ctx.send_priority(to, job, lane);
        Ok(Reply::now(result))
    }
}

type CallOutcome = Result<Option<u64>, CallError>;

/// Makes one call to the pool from its shard when told to, reports the outcome, and ends.
struct Caller {
    pool: Pid,
    job: Option<Job>,
    report: Sender<(u64, CallOutcome)>,
}

struct Go;

impl Actor for Caller {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if msg.downcast::<Go>().is_err() {
            return Ok(());
        }
        let Some(job) = self.job.take() else { return Ok(()) };
        let id = job.id();
        let outcome = ctx.call(self.pool, job, Duration::from_secs(60)).await.map(|m| m.downcast::<u64>().ok());
        let _ = self.report.send((id, outcome));
        Err(ExitReason::Normal)
    }
}

/// What a `Pump` reports: the ids accepted and refused, or what went wrong.
type PumpReport = Result<(Vec<u64>, Vec<u64>), String>;

/// Sends its jobs to the pool as fast as it can when told to; reports (accepted, refused) ids.
struct Pump {
    pool: Pid,
    report: Sender<PumpReport>,
}

struct PumpGo(Vec<Job>);

impl Actor for Pump {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        let Ok(PumpGo(jobs)) = msg.downcast::<PumpGo>() else { return Ok(()) };
        let (mut acc, mut refused) = (Vec::new(), Vec::new());
        for job in jobs {
            let id = job.id();
            match ctx.send(self.pool, job) {
                Ok(()) => acc.push(id),
                Err(SendError::MailboxFull(back)) if back.id() == id => refused.push(id),
                Err(e) => {
                    let _ = self.report.send(Err(format!("pump send {id}: {e:?}")));
                    return Ok(());
                }
            }
        }
        let _ = self.report.send(Ok((acc, refused)));
        Ok(())
    }
}

// ---- HTTP ----------------------------------------------------------------------------------

/// One response: status, `Retry-After` present, body.
#[derive(Debug, Clone)]
struct Resp {
    status: u16,
    retry_after: bool,
    body: String,
}

/// Reads up to `n` responses; stops early at a close or an error (the caller judges).
fn read_responses(stream: &mut TcpStream, n: usize, limit: Duration) -> Vec<Resp> {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let deadline = Instant::now() + limit;
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    while out.len() < n && Instant::now() < deadline {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                let retry_after = head.lines().any(|l| l.starts_with("retry-after:"));
                out.push(Resp { status, retry_after, body });
                buf.drain(..end + 4 + len);
                continue;
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    out
}

/// One pipelined burst: its requests (id, panics) in order, how many were accepted (a prefix),
/// and the thread reading its answers.
struct Burst {
    reqs: Vec<(u64, bool)>,
    accepted: usize,
    reader: std::thread::JoinHandle<Vec<Resp>>,
}

// ---- the model -----------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A plain hold (send from a thread or a process, or straight to a worker).
    Send,
    /// A plain panicking message.
    Panic,
    /// A call from outside.
    CallOut,
    /// A call from a process.
    CallProc,
    /// An HTTP request (a hold).
    Http,
    /// An HTTP request that makes its worker panic.
    HttpPanic,
}

/// What the docs promise, as numbers.
#[derive(Debug, Default)]
struct Model {
    size: usize,
    mailbox: usize,
    /// Holds accepted (any kind).
    holds: usize,
    /// Panicking messages accepted (any kind).
    panics: usize,
    /// Permits released (never more than holds in hand at the time: no permit is spare).
    released: usize,
    /// Sends to the pool refused (`PoolInfo::shed`).
    shed: u64,
    /// Held, as of the last quiescent point plus what was accepted since.
    held: usize,
}

impl Model {
    fn capacity(&self) -> usize {
        self.size * (self.mailbox + 1)
    }
    /// Holds finished at a quiescent point: a permit is only released for a hold in hand.
    fn finished(&self) -> usize {
        self.released
    }
}

fn fail<T>(what: String) -> Result<T, String> {
    Err(what)
}

macro_rules! check {
    ($cond:expr, $($fmt:tt)*) => {
        if !$cond {
            return fail(format!($($fmt)*));
        }
    };
}

const SETTLE_LIMIT: Duration = Duration::from_secs(10);

struct Run {
    shards: usize,
    log: Vec<String>,
    node: Option<Node>,
    h: NodeHandle,
    pool: Pid,
    r: PoolRef,
    latch: Arc<Latch>,
    book: Arc<Book>,
    relays: Vec<Pid>,
    pumps: Vec<Pid>,
    pump_rx: Receiver<PumpReport>,
    server: Option<WebServer>,
    addr: SocketAddr,
    m: Model,
    next_id: u64,
    /// Accepted ids and their kind.
    accepted: HashMap<u64, Kind>,
    refused: HashSet<u64>,
    calls_out: Vec<(u64, CallFuture)>,
    proc_calls: HashSet<u64>,
    proc_tx: Sender<(u64, CallOutcome)>,
    proc_rx: Receiver<(u64, CallOutcome)>,
    proc_results: HashMap<u64, CallOutcome>,
    bursts: Vec<Burst>,
    /// A resize shrank the pool (retired cells leave `info` with their counts).
    shrunk: bool,
}

impl Drop for Run {
    fn drop(&mut self) {
        // Whatever happened, nothing stays parked and nothing keeps a port.
        self.latch.open();
        drop(self.server.take());
        if let Some(node) = self.node.take() {
            node.stop();
        }
    }
}

fn poll_now(f: &mut CallFuture) -> Poll<Result<Message, CallError>> {
    let mut cx = TaskContext::from_waker(Waker::noop());
    Pin::new(f).poll(&mut cx)
}

impl Run {
    fn start(seed: u64, shards: usize, size: usize, mailbox: usize) -> Run {
        let options = NodeOptions {
            cores: Cores::Count(shards),
            pin: false,
            shutdown_timeout: Duration::from_millis(150),
            ..Default::default()
        };
        let node = Node::start(&format!("m45-{shards}-{seed}"), options).expect("node");
        let h = node.handle();
        let (latch, book) = (Latch::new(), Arc::new(Book::default()));
        let (l, b) = (latch.clone(), book.clone());
        let mut opts = PoolOptions::new(size, mailbox, move || W { latch: l.clone(), book: b.clone() });
        // Failing starts count; none here. Panics in hand do not count (documented).
        opts.restart_intensity = 5;
        let pool = node.spawn(move || Pool::new(opts), ProcessOptions::default()).wait().expect("pool");
        let r = h.pool(pool).expect("a pool");
        let relays = (0..shards)
            .map(|s| node.spawn_on(ShardId(s as u16), || Relay, ProcessOptions::default()).wait().expect("relay"))
            .collect();
        let (pump_tx, pump_rx) = mpsc::channel();
        let pumps = (0..shards)
            .map(|s| {
                let report = pump_tx.clone();
                node.spawn_on(ShardId(s as u16), move || Pump { pool, report }, ProcessOptions::default())
                    .wait()
                    .expect("pump")
            })
            .collect();
        let handler = WebHandler::new(WebHandlerOptions {
            request_timeout: Duration::from_secs(120),
            ..WebHandlerOptions::new(WebTarget::Pid(pool))
        });
        let router = Router::new()
            .route("/h/{id}", handler.clone())
            .route("/p/{id}", handler)
            .get("/health", |_: &Request| Response::text("ok"));
        let server = WebServer::start(&h, WebServerOptions::new("127.0.0.1", 0, router)).expect("server");
        let addr = server.local_addr();
        let (proc_tx, proc_rx) = mpsc::channel();
        Run {
            shards,
            log: Vec::new(),
            node: Some(node),
            h,
            pool,
            r,
            latch,
            book,
            relays,
            pumps,
            pump_rx,
            server: Some(server),
            addr,
            m: Model { size, mailbox, ..Default::default() },
            next_id: 1,
            accepted: HashMap::new(),
            refused: HashSet::new(),
            calls_out: Vec::new(),
            proc_calls: HashSet::new(),
            proc_tx,
            proc_rx,
            proc_results: HashMap::new(),
            bursts: Vec::new(),
            shrunk: false,
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn job(&mut self, panics: bool) -> Job {
        let id = self.id();
        let tok = Tok::new(&self.book);
        if panics { Job::Panic(id, tok) } else { Job::Hold(id, tok) }
    }

    fn finished(&self) -> usize {
        self.book.finished.load(Ordering::SeqCst)
    }
    fn panicked(&self) -> usize {
        self.book.panicked.load(Ordering::SeqCst)
    }
    fn begun(&self) -> usize {
        self.book.begun.load(Ordering::SeqCst)
    }

    /// Books a send the model said would be accepted (`room`) against what happened.
    fn book_send(&mut self, id: u64, kind: Kind, room: bool, accepted: bool, to_pool: bool) -> Result<(), String> {
        let what = if to_pool { "the pool" } else { "a worker" };
        check!(
            accepted == room,
            "{kind:?} {id} to {what}: {} although the model {} (model {:?}, info {:?})",
            if accepted { "accepted" } else { "refused" },
            if room { "has room" } else { "is full" },
            self.m,
            self.r.info()
        );
        if accepted {
            self.accepted.insert(id, kind);
            self.m.held += 1;
            if matches!(kind, Kind::Panic | Kind::HttpPanic) {
                self.m.panics += 1;
            } else {
                self.m.holds += 1;
            }
        } else {
            self.refused.insert(id);
            if to_pool {
                self.m.shed += 1;
            }
        }
        Ok(())
    }

    /// The outcome of a plain send (the message comes back when refused).
    fn judge_send(
        &mut self,
        id: u64,
        kind: Kind,
        result: Result<(), SendError<Job>>,
        room: bool,
        to_pool: bool,
    ) -> Result<bool, String> {
        let accepted = match result {
            Ok(()) => true,
            Err(SendError::MailboxFull(back)) => {
                check!(back.id() == id, "refused {id} but got back {back:?}");
                false
            }
            Err(e) => return fail(format!("send {id}: unexpected {e:?}")),
        };
        self.book_send(id, kind, room, accepted, to_pool)?;
        Ok(accepted)
    }

    fn room(&self) -> bool {
        self.m.held < self.m.capacity()
    }

    fn send_to(&self, to: Pid, job: Job, shard: Option<usize>) -> Result<(), SendError<Job>> {
        self.send_lane(to, job, shard, Priority::Main)
    }

    fn send_lane(&self, to: Pid, job: Job, shard: Option<usize>, lane: Priority) -> Result<(), SendError<Job>> {
        match shard {
            None => self.h.send_priority(to, job, lane),
            Some(s) => {
                let reply = self
                    .h
                    .call_blocking(self.relays[s], SendReq { to, job, lane }, Duration::from_secs(10))
                    .expect("the relay answers");
                match reply.downcast::<Result<(), SendError<Job>>>() {
                    Ok(r) => r,
                    Err(_) => panic!("the relay answers a send result"),
                }
            }
        }
    }

    /// `n` sends to the pool from outside (`shard` None) or from a process on `shard`; one in
    /// `panic_every` panics its worker.
    fn op_send(&mut self, n: usize, shard: Option<usize>, panic_every: u64, rng: &mut Rng) -> Result<(), String> {
        for _ in 0..n {
            let panics = panic_every > 0 && rng.below(panic_every) == 0;
            let lane = if rng.below(5) == 0 { Priority::Urgent } else { Priority::Main };
            let job = self.job(panics);
            let id = job.id();
            let room = self.room();
            let result = self.send_lane(self.pool, job, shard, lane);
            let kind = if panics { Kind::Panic } else { Kind::Send };
            if self.judge_send(id, kind, result, room, true)? && panics {
                // It may run at once on an idle worker: while that one is replaced the pool
                // holds less (documented: `PoolInfo::capacity`). Wait for the replacement.
                self.settle(&format!("after panic {id}"))?;
            }
        }
        Ok(())
    }

    fn op_call_out(&mut self) -> Result<(), String> {
        let job = self.job(false);
        let id = job.id();
        let room = self.room();
        let mut f = self.h.call(self.pool, job, Duration::from_secs(120));
        let accepted = match poll_now(&mut f) {
            Poll::Pending => true,
            Poll::Ready(Err(CallError::MailboxFull)) => false,
            Poll::Ready(other) => return fail(format!("call {id}: unexpected {:?}", other.map(|_| ()))),
        };
        if accepted {
            self.calls_out.push((id, f));
        }
        self.book_send(id, Kind::CallOut, room, accepted, true)
    }

    fn drain_proc(&mut self) {
        while let Ok((id, outcome)) = self.proc_rx.try_recv() {
            self.proc_results.insert(id, outcome);
        }
    }

    fn op_call_proc(&mut self, shard: usize) -> Result<(), String> {
        let job = self.job(false);
        let id = job.id();
        let room = self.room();
        let (pool, report) = (self.pool, self.proc_tx.clone());
        let caller = self
            .h
            .spawn_on(ShardId(shard as u16), move || Caller { pool, job: Some(job), report }, ProcessOptions::default())
            .wait()
            .map_err(|e| format!("spawn a caller: {e:?}"))?;
        self.h.send(caller, Go).map_err(|e| format!("go: {e:?}"))?;
        // Accepted, the pool holds one more; refused, the caller is told at once.
        let deadline = Instant::now() + SETTLE_LIMIT;
        let accepted = loop {
            self.drain_proc();
            if let Some(outcome) = self.proc_results.get(&id) {
                check!(matches!(outcome, Err(CallError::MailboxFull)), "call {id} from shard {shard}: {outcome:?}");
                break false;
            }
            if self.r.info().held as usize > self.m.held {
                break true;
            }
            check!(Instant::now() < deadline, "call {id} from shard {shard}: neither held nor refused");
            std::thread::sleep(Duration::from_micros(100));
        };
        if accepted {
            self.proc_calls.insert(id);
        }
        self.book_send(id, Kind::CallProc, room, accepted, true)
    }

    /// A pipelined burst of `n` requests on a new connection; the last one makes its worker
    /// panic if `panic_last` (only the last: a worker replaced meanwhile holds less).
    fn op_http(&mut self, n: usize, panic_last: bool) -> Result<(), String> {
        let reqs: Vec<(u64, bool)> = (0..n).map(|i| (self.id(), panic_last && i + 1 == n)).collect();
        let text: String = reqs
            .iter()
            .map(|(id, p)| format!("GET /{}/{id} HTTP/1.1\r\nHost: m\r\n\r\n", if *p { "p" } else { "h" }))
            .collect();
        let expected = n.min(self.m.capacity().saturating_sub(self.m.held));
        let panicked_before = self.panicked();
        let mut s = TcpStream::connect(self.addr).map_err(|e| format!("connect: {e}"))?;
        s.write_all(text.as_bytes()).map_err(|e| format!("write: {e}"))?;
        let mut rs = s.try_clone().map_err(|e| format!("clone: {e}"))?;
        let reader = std::thread::spawn(move || {
            let got = read_responses(&mut rs, n, Duration::from_secs(60));
            drop(s);
            got
        });
        let deadline = Instant::now() + SETTLE_LIMIT;
        let (accepted, refused) = loop {
            let info = self.r.info();
            let held = (info.held as usize).saturating_sub(self.m.held);
            let accepted = held + (self.panicked() - panicked_before);
            let refused = (info.shed - self.m.shed) as usize;
            // (A panic counted before its worker's slot is given back reads as one too many:
            // wait until its replacement is up.)
            let steady = info.capacity as usize == self.m.capacity() && info.workers.iter().all(|w| w.pid.is_some());
            if accepted + refused == n && steady {
                break (accepted, refused);
            }
            check!(
                Instant::now() < deadline,
                "burst of {n}: only {accepted} accepted and {refused} refused seen: {info:?}"
            );
            std::thread::sleep(Duration::from_micros(200));
        };
        check!(
            accepted == expected && refused == n - expected,
            "burst of {n}: {accepted} accepted and {refused} refused; the model: {expected} accepted (model {:?}, info {:?})",
            self.m,
            self.r.info()
        );
        for (i, (id, p)) in reqs.iter().enumerate() {
            let kind = if *p { Kind::HttpPanic } else { Kind::Http };
            let room = i < expected;
            self.book_send(*id, kind, room, room, true)?;
        }
        self.bursts.push(Burst { reqs, accepted, reader });
        Ok(())
    }

    /// Senders racing: `threads` outside threads (sends and calls) and a pump process on
    /// every shard, `per` messages each, started together. With every worker parked nothing
    /// finishes meanwhile: exactly `min(sent, room)` are accepted, whoever sent them.
    fn op_race(&mut self, threads: usize, per: usize, rng: &mut Rng) -> Result<(), String> {
        let room = self.m.capacity().saturating_sub(self.m.held);
        let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
        let mut handles = Vec::new();
        let mut total = 0;
        for _ in 0..threads {
            let jobs: Vec<(Job, bool)> = (0..per).map(|_| (self.job(false), rng.below(4) == 0)).collect();
            total += jobs.len();
            let (h, pool, barrier) = (self.h.clone(), self.pool, barrier.clone());
            handles.push(std::thread::spawn(move || {
                barrier.wait();
                let (mut acc, mut refused, mut calls, mut bad) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                for (job, call) in jobs {
                    let id = job.id();
                    if call {
                        let mut f = h.call(pool, job, Duration::from_secs(120));
                        match poll_now(&mut f) {
                            Poll::Pending => calls.push((id, f)),
                            Poll::Ready(Err(CallError::MailboxFull)) => refused.push(id),
                            Poll::Ready(other) => bad.push(format!("race call {id}: {:?}", other.map(|_| ()))),
                        }
                    } else {
                        match h.send(pool, job) {
                            Ok(()) => acc.push(id),
                            Err(SendError::MailboxFull(back)) if back.id() == id => refused.push(id),
                            Err(e) => bad.push(format!("race send {id}: {e:?}")),
                        }
                    }
                }
                (acc, refused, calls, bad)
            }));
        }
        let pump_jobs: Vec<Vec<Job>> =
            (0..self.pumps.len()).map(|_| (0..per).map(|_| self.job(false)).collect()).collect();
        total += per * self.pumps.len();
        barrier.wait();
        for (pump, jobs) in self.pumps.clone().into_iter().zip(pump_jobs) {
            self.h.send(pump, PumpGo(jobs)).map_err(|e| format!("pump go: {e:?}"))?;
        }
        let (mut acc, mut refused, mut bad) = (Vec::new(), Vec::new(), Vec::new());
        for t in handles {
            let (a, r, calls, b) = t.join().map_err(|_| "a racing thread panicked".to_owned())?;
            acc.extend(a.into_iter().map(|id| (id, Kind::Send)));
            acc.extend(calls.iter().map(|(id, _)| (*id, Kind::CallOut)));
            self.calls_out.extend(calls);
            refused.extend(r);
            bad.extend(b);
        }
        for _ in 0..self.pumps.len() {
            let report = self.pump_rx.recv_timeout(SETTLE_LIMIT).map_err(|_| "a pump never reported".to_owned())?;
            let (a, r) = report?;
            acc.extend(a.into_iter().map(|id| (id, Kind::Send)));
            refused.extend(r);
        }
        check!(bad.is_empty(), "race: {bad:?}");
        check!(
            acc.len() == total.min(room) && acc.len() + refused.len() == total,
            "race of {total} with room for {room}: {} accepted, {} refused (model {:?}, info {:?})",
            acc.len(),
            refused.len(),
            self.m,
            self.r.info()
        );
        for (id, kind) in acc {
            self.book_send(id, kind, true, true, true)?;
        }
        for id in refused {
            self.book_send(id, Kind::Send, false, false, true)?;
        }
        Ok(())
    }

    /// Releases `k` of the holds in hand (at a quiescent point: `begun - finished`).
    fn op_release(&mut self, k: usize) {
        let k = k.min(self.begun() - self.finished());
        if k > 0 {
            self.m.released += k;
            self.latch.release(k);
        }
    }

    /// A send straight to one worker (only with no worker retiring: the model does not know
    /// which ones those are).
    fn op_direct(&mut self, pick: usize, shard: Option<usize>, call: bool) -> Result<(), String> {
        let info = self.r.info();
        if info.size != self.m.size || info.workers.is_empty() {
            return Ok(());
        }
        let w = &info.workers[pick % info.workers.len()];
        let Some(pid) = w.pid else { return fail(format!("a worker without a pid at quiescence: {info:?}")) };
        let room = (w.queued as usize) < self.m.mailbox + 1;
        let job = self.job(false);
        let id = job.id();
        self.log.push(format!("    direct {id} to {pid:?} (queued {}, call {call})", w.queued));
        if call {
            let mut f = self.h.call(pid, job, Duration::from_secs(120));
            let accepted = match poll_now(&mut f) {
                Poll::Pending => true,
                Poll::Ready(Err(CallError::MailboxFull)) => false,
                Poll::Ready(other) => return fail(format!("direct call {id}: unexpected {:?}", other.map(|_| ()))),
            };
            if accepted {
                self.calls_out.push((id, f));
            }
            return self.book_send(id, Kind::CallOut, room, accepted, false);
        }
        let result = self.send_to(pid, job, shard);
        self.judge_send(id, Kind::Send, result, room, false).map(drop)
    }

    fn op_resize(&mut self, size: usize) -> Result<(), String> {
        self.r.resize(size).map_err(|e| format!("resize to {size}: {e}"))?;
        if size < self.m.size {
            self.shrunk = true;
        }
        self.m.size = size;
        Ok(())
    }

    /// Waits for a quiescent point and checks the pool against the model there.
    fn settle(&mut self, what: &str) -> Result<(), String> {
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            let (fin, pan, begun) = (self.finished(), self.panicked(), self.begun());
            let info = self.r.info();
            // A retiring worker that panics is not replaced: what it held goes to a worker with
            // room or is shed (documented: `PoolInfo::shed_accepted`).
            let expected_held = (self.m.holds + self.m.panics).checked_sub(fin + pan + info.shed_accepted as usize);
            let busy = info.workers.iter().filter(|w| w.queued > 0).count();
            let queued: usize = info.workers.iter().map(|w| w.queued as usize).sum();
            let quiet = fin == self.m.finished()
                && info.capacity as usize == self.m.capacity()
                && expected_held == Some(info.held as usize)
                && queued == info.held as usize
                && begun.checked_sub(fin) == Some(busy)
                && info.workers.iter().all(|w| w.pid.is_some());
            if quiet {
                return self.check_quiet(what, &info, fin, pan);
            }
            check!(
                fin <= self.m.finished() && pan <= self.m.panics,
                "{what}: more finished ({fin}, model {}) or panicked ({pan}, model {}) than possible: {info:?}",
                self.m.finished(),
                self.m.panics
            );
            check!(
                Instant::now() < deadline,
                "{what}: no quiescent point agreeing with the model: finished {fin} (model {}), panicked {pan} of {}, \
                 begun {begun}, busy workers {busy}, Σqueued {queued}, expected held {expected_held:?}; model {:?}; info {info:?}",
                self.m.finished(),
                self.m.panics,
                self.m
            );
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn check_quiet(&mut self, what: &str, info: &PoolInfo, fin: usize, pan: usize) -> Result<(), String> {
        check!(info.shed == self.m.shed, "{what}: shed {} but the model refused {}: {info:?}", info.shed, self.m.shed);
        check!(
            info.shed_accepted == 0 || self.shrunk,
            "{what}: accepted messages shed with no worker ever retired: {info:?}"
        );
        check!(!info.stopping, "{what}: stopping: {info:?}");
        check!(info.size >= self.m.size, "{what}: size {} below {}: {info:?}", info.size, self.m.size);
        check!(
            info.workers.iter().all(|w| w.queued as usize <= self.m.mailbox + 1),
            "{what}: a worker over its bound: {info:?}"
        );
        let restarts: u64 = info.workers.iter().map(|w| w.restarts).sum();
        // Retired cells leave `info` with their counts.
        check!(
            restarts as usize == pan || (self.shrunk && (restarts as usize) <= pan),
            "{what}: {restarts} restarts for {pan} panics: {info:?}"
        );
        let done = lock(&self.book.done).clone();
        check!(done.len() == fin, "{what}: {} recorded, {fin} counted", done.len());
        let set: HashSet<u64> = done.iter().copied().collect();
        check!(set.len() == done.len(), "{what}: a message handled twice: {done:?}");
        for id in &done {
            check!(
                matches!(self.accepted.get(id), Some(Kind::Send | Kind::CallOut | Kind::CallProc | Kind::Http)),
                "{what}: handled {id}, which was {}",
                if self.refused.contains(id) { "refused" } else { "never accepted as a hold" }
            );
        }
        self.m.held = info.held as usize;
        Ok(())
    }

    /// The outcome of every outside call, waited for (bounded).
    fn outside_outcomes(&mut self) -> Result<HashMap<u64, Result<u64, CallError>>, String> {
        let mut out = HashMap::new();
        let deadline = Instant::now() + SETTLE_LIMIT;
        for (id, mut f) in std::mem::take(&mut self.calls_out) {
            let r = loop {
                if let Poll::Ready(r) = poll_now(&mut f) {
                    break r;
                }
                check!(Instant::now() < deadline, "call {id} never answered");
                std::thread::sleep(Duration::from_micros(200));
            };
            let r = r.map(|m| m.downcast::<u64>().unwrap_or(u64::MAX));
            out.insert(id, r);
        }
        Ok(out)
    }

    /// Process calls' outcomes (bounded wait for those `required`).
    fn proc_outcomes(&mut self, required: bool) -> Result<(), String> {
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            self.drain_proc();
            let missing = self.proc_calls.iter().filter(|id| !self.proc_results.contains_key(id)).count();
            if missing == 0 || !required {
                return Ok(());
            }
            check!(Instant::now() < deadline, "{missing} process calls never answered");
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// Checks every call and HTTP answer: done ⇒ its answer; else what `unfinished` allows.
    fn check_answers(
        &mut self,
        how: &str,
        call_unfinished: &[CallError],
        http_unfinished: &[u16],
        proc_required: bool,
    ) -> Result<(), String> {
        let done: HashSet<u64> = lock(&self.book.done).iter().copied().collect();
        for (id, r) in self.outside_outcomes()? {
            match (&r, done.contains(&id)) {
                (Ok(v), true) if *v == id => {}
                (Err(e), false) if call_unfinished.contains(e) => {}
                _ => return fail(format!("{how}: outside call {id} (done {}): {r:?}", done.contains(&id))),
            }
        }
        self.proc_outcomes(proc_required)?;
        for id in self.proc_calls.clone() {
            let r = self.proc_results.get(&id);
            match (r, done.contains(&id)) {
                (Some(Ok(Some(v))), true) if *v == id => {}
                (Some(Err(e)), false) if call_unfinished.contains(e) => {}
                (None, _) if !proc_required => {}
                _ => return fail(format!("{how}: process call {id} (done {}): {r:?}", done.contains(&id))),
            }
        }
        for (b, burst) in std::mem::take(&mut self.bursts).into_iter().enumerate() {
            let got = burst.reader.join().map_err(|_| "an HTTP reader panicked".to_owned())?;
            check!(
                got.len() == burst.reqs.len(),
                "{how}: burst {b} ({} requests, {} accepted): {} answers: {got:?}",
                burst.reqs.len(),
                burst.accepted,
                got.len()
            );
            for (i, ((id, panics), resp)) in burst.reqs.iter().zip(&got).enumerate() {
                let ok = if i >= burst.accepted {
                    resp.status == 503 && resp.retry_after
                } else if done.contains(id) {
                    resp.status == 200 && resp.body == id.to_string()
                } else if *panics && resp.status == 500 {
                    true
                } else {
                    http_unfinished.contains(&resp.status) && (resp.status != 503 || resp.retry_after)
                };
                check!(
                    ok,
                    "{how}: burst {b} request {i} (id {id}, panics {panics}, accepted {}, done {}): {resp:?}",
                    i < burst.accepted,
                    done.contains(id)
                );
            }
        }
        Ok(())
    }

    fn stop_node(&mut self) {
        drop(self.server.take());
        if let Some(node) = self.node.take() {
            node.stop();
        }
    }

    fn check_drops(&mut self, how: &str) -> Result<(), String> {
        self.calls_out.clear();
        self.proc_results.clear();
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            let (c, d) = (self.book.created.load(Ordering::SeqCst), self.book.dropped.load(Ordering::SeqCst));
            if c == d {
                return Ok(());
            }
            check!(d < c, "{how}: {d} messages dropped of {c} built: one dropped twice");
            check!(Instant::now() < deadline, "{how}: {} of {c} messages never dropped (leaked)", c - d);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn wait_pool_gone(&self, how: &str) -> Result<(), String> {
        let deadline = Instant::now() + SETTLE_LIMIT;
        while self.h.process_info(self.pool).is_ok() || !self.r.info().workers.is_empty() {
            check!(Instant::now() < deadline, "{how}: the pool did not end: {:?}", self.r.info());
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// Every permit given: everything accepted is handled; then the pool and the node stop.
    fn end_drain(&mut self) -> Result<(), String> {
        let mut rounds = 0;
        loop {
            let k = self.begun() - self.finished();
            if k == 0 {
                break;
            }
            rounds += 1;
            check!(rounds < 10_000, "draining never ends");
            self.op_release(k);
            self.settle("draining")?;
        }
        let shed = self.r.info().shed_accepted as usize;
        check!(
            self.m.held == 0 && self.finished() + self.panicked() + shed == self.m.holds + self.m.panics,
            "drained: finished {} of {} holds, panicked {} of {}, shed {shed}, held {}",
            self.finished(),
            self.m.holds,
            self.panicked(),
            self.m.panics,
            self.m.held
        );
        let done: HashSet<u64> = lock(&self.book.done).iter().copied().collect();
        let panicked: HashSet<u64> = lock(&self.book.panicked_ids).iter().copied().collect();
        check!(panicked.len() == self.panicked(), "a panicking message handled twice");
        let mut unhandled = 0;
        for (id, kind) in &self.accepted {
            let hold = matches!(kind, Kind::Send | Kind::CallOut | Kind::CallProc | Kind::Http);
            let handled = if hold { done.contains(id) } else { panicked.contains(id) };
            check!(
                !(if hold { panicked.contains(id) } else { done.contains(id) }),
                "drained: {kind:?} {id} handled as the other kind"
            );
            check!(handled || self.shrunk, "drained: accepted {kind:?} {id} never handled");
            unhandled += usize::from(!handled);
        }
        check!(unhandled == shed, "drained: {unhandled} accepted messages unhandled, {shed} counted shed");
        let (calls, http): (&[CallError], &[u16]) =
            if self.shrunk { (&[CallError::MailboxFull], &[503]) } else { (&[], &[]) };
        self.check_answers("drained", calls, http, true)?;
        self.h.exit(self.pool, ExitReason::Shutdown);
        self.wait_pool_gone("drained, then stopped")?;
        let info = self.r.info();
        check!(info.held == 0 && info.shed_accepted as usize == shed, "drained, then stopped: {info:?}");
        let id = self.id();
        match self.h.send(self.pool, Job::Hold(id, Tok::new(&self.book))) {
            Err(SendError::NoSuchProcess(Job::Hold(back, _))) if back == id => {}
            other => return fail(format!("a send to the stopped pool: {other:?}")),
        }
        self.check_drops("drained, pool stopped")?;
        self.stop_node();
        self.check_drops("drained, node stopped")
    }

    /// The pool stops with workers parked and queues full: each finishes the message in hand;
    /// what was queued is answered (`Stopped`, 503) or, a plain message, shed and counted.
    fn end_stop_pool(&mut self) -> Result<(), String> {
        let (held, fin, in_hand) = (self.m.held, self.finished(), self.begun() - self.finished());
        let shed_before = self.r.info().shed_accepted as usize;
        let pan = self.panicked();
        self.h.exit(self.pool, ExitReason::Shutdown);
        let deadline = Instant::now() + SETTLE_LIMIT;
        while !self.r.info().stopping {
            check!(Instant::now() < deadline, "the pool never says it is stopping");
            std::thread::sleep(Duration::from_micros(200));
        }
        if in_hand > 0 {
            // Its manager waits for the workers parked in their messages: the pool refuses.
            let id = self.id();
            match self.h.send(self.pool, Job::Hold(id, Tok::new(&self.book))) {
                Err(SendError::Stopped(Job::Hold(back, _))) if back == id => {}
                other => return fail(format!("a send to a stopping pool: {other:?}")),
            }
        }
        // Each worker finishes the message in hand. (Between the pool's `stopping` and the
        // `Shutdown` reaching a worker, a worker that finished may start a queued message: a
        // race of the stop itself, not a promise broken. Those are let through as well.)
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            let parked = self.begun() - self.finished();
            if parked > 0 {
                self.latch.release(parked);
                self.m.released += parked;
            }
            if self.h.process_info(self.pool).is_err() && self.r.info().workers.is_empty() {
                break;
            }
            check!(Instant::now() < deadline, "stopped with work held: the pool did not end: {:?}", self.r.info());
            std::thread::sleep(Duration::from_millis(1));
        }
        let info = self.r.info();
        let (fin_d, pan_d) = (self.finished() - fin, self.panicked() - pan);
        let shed_d = info.shed_accepted as usize - shed_before;
        STARTED_AFTER_STOP.fetch_add(fin_d + pan_d - in_hand, Ordering::Relaxed);
        check!(
            fin_d >= in_hand && fin_d + pan_d + shed_d == held,
            "stopped: {held} held, {in_hand} in hand; then {fin_d} finished, {pan_d} panicked, {shed_d} shed: {info:?}"
        );
        check!(info.held == 0, "stopped: slots still held: {info:?}");
        let calls: &[CallError] =
            if self.shrunk { &[CallError::Stopped, CallError::MailboxFull] } else { &[CallError::Stopped] };
        self.check_answers("pool stopped", calls, &[503], true)?;
        self.check_drops("pool stopped")?;
        self.stop_node();
        self.check_drops("pool stopped, node stopped")
    }

    /// The node stops with workers parked: after its shutdown timeout they are killed. Every
    /// call is answered, every request answered (500 dropped in hand, 503 shed), nothing leaks.
    fn end_stop_node(&mut self) -> Result<(), String> {
        self.stop_node();
        self.check_answers(
            "node stopped",
            &[CallError::Stopped, CallError::NoReply, CallError::MailboxFull],
            &[500, 503],
            false,
        )?;
        self.check_drops("node stopped")
    }
}

const STEPS: usize = 40;

/// Queued messages started by a worker after its pool said it was stopping (see `end_stop_pool`).
static STARTED_AFTER_STOP: AtomicUsize = AtomicUsize::new(0);

fn run(seed: u64, shards: usize, steps: usize) -> Result<(), String> {
    let mut rng = Rng::new(seed.wrapping_mul(4).wrapping_add(shards as u64));
    let size = rng.range(1, 4) as usize;
    let mailbox = if rng.below(5) == 0 { rng.range(8, 12) } else { rng.range(0, 3) } as usize;
    let mut run = Run::start(seed, shards, size, mailbox);
    run.log.push(format!("pool {size} × mailbox {mailbox} on {shards} shard(s)"));
    let result = drive(&mut run, &mut rng, steps);
    if env("POOL_MODEL_VERBOSE").is_some() {
        eprintln!("seed {seed}:\n  {}", run.log.join("\n  "));
        eprintln!(
            "  accepted {}, refused {}, finished {}, panicked {}, model {:?}",
            run.accepted.len(),
            run.refused.len(),
            run.finished(),
            run.panicked(),
            run.m
        );
    }
    result.map_err(|e| format!("{e}\noperations:\n  {}", run.log.join("\n  ")))
}

fn drive(run: &mut Run, rng: &mut Rng, steps: usize) -> Result<(), String> {
    run.settle("start")?;
    let shards = run.shards as u64;
    for step in 0..steps {
        let cap = run.m.capacity() as u64;
        let op = rng.below(100);
        let shard = rng.below(shards) as usize;
        let desc = match op {
            0..=17 => {
                let n = rng.range(1, cap + 2) as usize;
                let every = if rng.below(3) == 0 { 6 } else { 0 };
                run.log.push(format!("{step}: send {n} from outside (panic 1/{every})"));
                run.op_send(n, None, every, rng)
            }
            18..=32 => {
                let n = rng.range(1, cap + 2) as usize;
                let every = if rng.below(3) == 0 { 6 } else { 0 };
                run.log.push(format!("{step}: send {n} from shard {shard} (panic 1/{every})"));
                run.op_send(n, Some(shard), every, rng)
            }
            33..=42 => {
                run.log.push(format!("{step}: call from outside"));
                run.op_call_out()
            }
            43..=50 => {
                run.log.push(format!("{step}: call from shard {shard}"));
                run.op_call_proc(shard)
            }
            51..=60 => {
                let n = rng.range(1, (cap + 3).min(60)) as usize;
                let panic_last = rng.below(4) == 0;
                run.log.push(format!("{step}: HTTP burst of {n} (last panics: {panic_last})"));
                run.op_http(n, panic_last)
            }
            91..=94 => {
                let threads = rng.range(1, 3) as usize;
                let per = rng.range(1, cap / 2 + 2) as usize;
                run.log.push(format!("{step}: race: {threads} thread(s) and a pump a shard, {per} each"));
                run.op_race(threads, per, rng)
            }
            61..=75 => {
                let k = if rng.below(3) == 0 { rng.range(1, cap) } else { rng.range(1, 3) } as usize;
                run.log.push(format!("{step}: release {k}"));
                run.op_release(k);
                Ok(())
            }
            76..=82 => {
                let from = if rng.below(2) == 0 { None } else { Some(shard) };
                run.log.push(format!("{step}: a panicking message from {from:?}"));
                run.op_send(1, from, 1, rng)
            }
            83..=90 => {
                let size = rng.range(1, 4) as usize;
                run.log.push(format!("{step}: resize to {size}"));
                run.op_resize(size)
            }
            _ => {
                let from = if rng.below(2) == 0 { None } else { Some(shard) };
                let pick = rng.below(8) as usize;
                run.log.push(format!("{step}: a send straight to worker #{pick} from {from:?}"));
                let call = from.is_none() && rng.below(3) == 0;
                run.op_direct(pick, from, call)
            }
        };
        desc?;
        run.settle(&format!("step {step}"))?;
    }
    match rng.below(3) {
        0 => {
            run.log.push("end: release everything, then stop the pool and the node".into());
            run.end_drain()
        }
        1 => {
            run.log.push("end: stop the pool with work held".into());
            run.end_stop_pool()
        }
        _ => {
            run.log.push("end: stop the node with work held".into());
            run.end_stop_node()
        }
    }
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn seeds(shards: usize) {
    if let Some(seed) = env("POOL_MODEL_SEED") {
        if env("POOL_MODEL_SHARDS").is_none_or(|s| s == shards as u64) {
            let steps = env("POOL_MODEL_STEPS").map_or(STEPS, |s| s as usize);
            if let Err(e) = run(seed, shards, steps) {
                panic!("seed {seed}, {shards} shard(s): {e}");
            }
        }
        return;
    }
    let n = env("POOL_MODEL_SEEDS").unwrap_or(200);
    let begun = Instant::now();
    for seed in 0..n {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(seed, shards, STEPS)));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!(
                "seed {seed}, {shards} shard(s): {e}\nreplay: POOL_MODEL_SEED={seed} POOL_MODEL_SHARDS={shards} cargo test --test pool_model45"
            ),
            Err(p) => {
                eprintln!(
                    "seed {seed}, {shards} shard(s) panicked; replay: POOL_MODEL_SEED={seed} POOL_MODEL_SHARDS={shards}"
                );
                std::panic::resume_unwind(p);
            }
        }
    }
    eprintln!(
        "{n} seeds on {shards} shard(s) in {:?} ({} queued messages started after a stop so far)",
        begun.elapsed(),
        STARTED_AFTER_STOP.load(Ordering::Relaxed)
    );
}

#[test]
fn pool_agrees_with_its_model_on_one_shard() {
    seeds(1);
}

#[test]
fn pool_agrees_with_its_model_on_two_shards() {
    seeds(2);
}
