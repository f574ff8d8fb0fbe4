//! Shared helpers for the integration tests: nodes that run on any machine (unpinned, a given
//! number of shards), bounded waits that turn a hang into a failure, and a few small actors.
//!
//! Nothing here is a mock: every helper starts real shard threads and real processes.
#![allow(dead_code, reason = "each test binary uses a subset of the helpers")]
#![allow(unreachable_pub, reason = "a test helper module: `pub` is for the test files that include it")]

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

pub mod heads;
pub mod wire;

use pinion::{Actor, Context, Cores, Down, ExitReason, ExitSignal, Message, Node, NodeOptions, Pid, Reply, SendError};

/// Timeout of calls made by the tests: generous, only there so that a bug fails instead of
/// hanging.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`wait_until`] waits before it fails the test.
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

/// Options for `shards` unpinned shards: runs on any machine, even with fewer cores.
pub fn options(shards: usize) -> NodeOptions {
    NodeOptions { cores: Cores::Count(shards), pin: false, ..Default::default() }
}

/// Starts an unpinned node named `name` (each test passes its own, unique name).
pub fn node(name: &str, shards: usize) -> Node {
    Node::start(name, options(shards)).unwrap_or_else(|e| panic!("starting node {name:?}: {e}"))
}

/// Locks a mutex, ignoring poison (a failed assertion elsewhere must not hide the real error).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Polls `cond` until it holds; fails the test with `what` after [`WAIT_LIMIT`]. Not a timing
/// assertion: the limit only turns a hang into a failure.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `f` on a new thread and waits for it at most `limit`; fails the test if it hangs.
pub fn within<T: Send + 'static>(what: &str, limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            worker.join().expect("worker thread");
            v
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("{what} did not finish within {limit:?}"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker sends before it ends"),
        },
    }
}

/// A pid's (node, shard, slot, generation), read from its `Debug` form `Pid<n.s.slot.gen>`
/// (the fields are private on purpose; tests need the slot to prove slot reuse).
pub fn pid_parts(pid: Pid) -> (u32, u16, u32, u32) {
    let text = format!("{pid:?}");
    let inner = text.strip_prefix("Pid<").and_then(|t| t.strip_suffix('>')).unwrap_or_else(|| panic!("{text}"));
    let parts: Vec<&str> = inner.split('.').collect();
    assert_eq!(parts.len(), 4, "unexpected pid format {text}");
    (parts[0].parse().unwrap(), parts[1].parse().unwrap(), parts[2].parse().unwrap(), parts[3].parse().unwrap())
}

// ---- Latch: parks a process (never its shard) until the test releases it --------------------

/// Permits handed out by a test thread and taken by processes. A process waiting on the latch
/// is parked through its real `Waker` (so releasing it exercises the cross-thread wake path);
/// its shard keeps running the other processes.
#[derive(Debug, Default)]
pub struct Latch {
    state: Mutex<LatchState>,
}

#[derive(Debug, Default)]
struct LatchState {
    permits: usize,
    waiters: Vec<Waker>,
}

impl Latch {
    /// A closed latch.
    pub fn new() -> Arc<Latch> {
        Arc::new(Latch::default())
    }

    /// Lets `n` more waits through.
    pub fn release(&self, n: usize) {
        let waiters = {
            let mut s = lock(&self.state);
            s.permits = s.permits.saturating_add(n);
            std::mem::take(&mut s.waiters)
        };
        for w in waiters {
            w.wake();
        }
    }

    /// Lets every wait through from now on.
    pub fn open(&self) {
        self.release(usize::MAX);
    }

    /// Waits for (and takes) one permit.
    pub async fn acquire(&self) {
        poll_fn(|cx| {
            let mut s = lock(&self.state);
            if s.permits > 0 {
                if s.permits != usize::MAX {
                    s.permits -= 1;
                }
                Poll::Ready(())
            } else {
                s.waiters.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

// ---- Gate: a receiver that does not finish a message until the test lets it ----------------

/// What a [`Gate`] saw, in the order it handled it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A `u64` message, finished.
    Msg(u64),
    /// A monitor's `Down`.
    Down(Down),
    /// A trapped exit signal.
    Exit(ExitSignal),
    /// `terminate` ran with this reason.
    Terminate(ExitReason),
}

/// Shared between a [`Gate`] and the test.
#[derive(Debug, Default)]
pub struct Probe {
    /// `u64` messages whose handling started (the gate may be parked in it).
    pub started: AtomicUsize,
    /// Everything handled, in order.
    pub events: Mutex<Vec<Event>>,
}

impl Probe {
    pub fn new() -> Arc<Probe> {
        Arc::new(Probe::default())
    }
    pub fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }
    pub fn events(&self) -> Vec<Event> {
        lock(&self.events).clone()
    }
    /// The `u64` messages finished, in order.
    pub fn messages(&self) -> Vec<u64> {
        lock(&self.events)
            .iter()
            .filter_map(|e| match e {
                Event::Msg(n) => Some(*n),
                _ => None,
            })
            .collect()
    }
    fn push(&self, e: Event) {
        lock(&self.events).push(e);
    }
}

/// A receiver that handles each `u64` message only once it got a permit from its [`Latch`]: a
/// message stays *in progress* (its mailbox reservation held) until the test releases it.
/// Monitor `Down`s and trapped exit signals are recorded at once. A call answers the `u64`
/// messages finished so far (`Vec<u64>`).
#[derive(Debug)]
pub struct Gate {
    latch: Arc<Latch>,
    probe: Arc<Probe>,
    monitor: Option<Pid>,
    link: Option<Pid>,
}

impl Gate {
    pub fn new(latch: &Arc<Latch>, probe: &Arc<Probe>) -> Gate {
        Gate { latch: latch.clone(), probe: probe.clone(), monitor: None, link: None }
    }
    /// Monitors `pid` from `init`.
    pub fn monitoring(mut self, pid: Pid) -> Gate {
        self.monitor = Some(pid);
        self
    }
    /// Links to `pid` from `init`.
    pub fn linking(mut self, pid: Pid) -> Gate {
        self.link = Some(pid);
        self
    }
}

impl Actor for Gate {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        if let Some(pid) = self.monitor {
            ctx.monitor(pid);
        }
        if let Some(pid) = self.link {
            ctx.link(pid);
        }
        Ok(())
    }

    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        let msg = match msg.downcast::<u64>() {
            Ok(n) => {
                self.probe.started.fetch_add(1, Ordering::SeqCst);
                self.latch.acquire().await;
                self.probe.push(Event::Msg(n));
                return Ok(());
            }
            Err(msg) => msg,
        };
        let msg = match msg.downcast::<Down>() {
            Ok(down) => {
                self.probe.push(Event::Down(down));
                return Ok(());
            }
            Err(msg) => msg,
        };
        if let Ok(exit) = msg.downcast::<ExitSignal>() {
            self.probe.push(Event::Exit(exit));
        }
        Ok(())
    }

    async fn handle_call(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        Ok(Reply::now(self.probe.messages()))
    }

    async fn terminate(&mut self, _: &mut Context, reason: &ExitReason) {
        self.probe.push(Event::Terminate(reason.clone()));
    }
}

// ---- Counter: counts u64 messages; answers queries --------------------------------------------

/// Requests a [`Counter`] answers with `call`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// Replies the number of `u64` messages handled (`u64`).
    Count,
    /// Replies the sum of the `u64` messages handled (`u64`).
    Sum,
    /// Replies the name of the OS thread running the process (`String`).
    Thread,
    /// Replies `true`, then the process ends with `ExitReason::Normal`.
    Stop,
}

/// Where [`Counter`]s record how they ended: `(pid, reason)` per `terminate`.
#[derive(Debug, Default)]
pub struct Ends {
    pub reasons: Mutex<Vec<(Pid, ExitReason)>>,
    pub count: AtomicUsize,
}

impl Ends {
    pub fn new() -> Arc<Ends> {
        Arc::new(Ends::default())
    }
    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
    pub fn reasons(&self) -> Vec<(Pid, ExitReason)> {
        lock(&self.reasons).clone()
    }
}

/// Counts and sums the `u64` messages it handles; answers [`Query`] calls; a `Query` sent as a
/// plain message is ignored except `Stop`, which ends it. Records its end in [`Ends`] if given.
#[derive(Debug, Default)]
pub struct Counter {
    pub count: u64,
    pub sum: u64,
    pub ends: Option<Arc<Ends>>,
}

impl Counter {
    pub fn recording(ends: &Arc<Ends>) -> Counter {
        Counter { ends: Some(ends.clone()), ..Default::default() }
    }
}

impl Actor for Counter {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Some(n) = msg.downcast_ref::<u64>() {
            self.count += 1;
            self.sum += n;
        } else if let Some(Query::Stop) = msg.downcast_ref::<Query>() {
            return Err(ExitReason::Normal);
        }
        Ok(())
    }

    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, req: Message) -> Result<Reply, ExitReason> {
        match req.downcast::<Query>() {
            Ok(Query::Count) => Ok(Reply::now(self.count)),
            Ok(Query::Sum) => Ok(Reply::now(self.sum)),
            Ok(Query::Thread) => Ok(Reply::now(std::thread::current().name().unwrap_or("").to_owned())),
            Ok(Query::Stop) => {
                ctx.stop(ExitReason::Normal);
                Ok(Reply::now(true))
            }
            Err(_) => Ok(Reply::now(())),
        }
    }

    async fn terminate(&mut self, ctx: &mut Context, reason: &ExitReason) {
        if let Some(ends) = &self.ends {
            lock(&ends.reasons).push((ctx.pid(), reason.clone()));
            ends.count.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Calls a [`Counter`] from outside the runtime and downcasts the answer.
pub fn query<T: 'static>(node: &pinion::NodeHandle, pid: Pid, q: Query) -> T {
    let reply = node.call_blocking(pid, q, CALL_TIMEOUT).unwrap_or_else(|e| panic!("{q:?} to {pid:?}: {e}"));
    reply.downcast::<T>().unwrap_or_else(|_| panic!("{q:?}: reply of another type"))
}

// ---- Echo: answers every call with its request ---------------------------------------------

/// Answers every call with the request itself.
#[derive(Debug, Default)]
pub struct Echo;

impl Actor for Echo {
    async fn handle_call(&mut self, _: &mut Context, _: Pid, req: Message) -> Result<Reply, ExitReason> {
        Ok(Reply::Now(req))
    }
}

// ---- Relay: sends on behalf of the test, from inside a shard ---------------------------------

/// A call to a [`Relay`]: send `msg` to `to` from the relay's process.
#[derive(Debug, Clone, Copy)]
pub struct SendFrom {
    pub to: Pid,
    pub msg: u64,
}

/// Sends [`SendFrom`] requests from its own process (so from its shard) and answers the
/// outcome: `Result<(), SendError<u64>>`.
#[derive(Debug, Default)]
pub struct Relay;

impl Actor for Relay {
    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, req: Message) -> Result<Reply, ExitReason> {
        let Ok(req) = req.downcast::<SendFrom>() else { return Ok(Reply::now(())) };
        let result: Result<(), SendError<u64>> = ctx.send(req.to, req.msg);
        Ok(Reply::now(result))
    }
}

/// Asks `relay` to send `msg` to `to` and returns the outcome of that send.
pub fn send_from(node: &pinion::NodeHandle, relay: Pid, to: Pid, msg: u64) -> Result<(), SendError<u64>> {
    let reply = node.call_blocking(relay, SendFrom { to, msg }, CALL_TIMEOUT).expect("call to the relay");
    reply.downcast::<Result<(), SendError<u64>>>().expect("relay answers a send result")
}

/// Per-key sequences, shared between a recorder process and the test.
pub type Sequences = Arc<Mutex<HashMap<u32, Vec<u32>>>>;

// ---- Watcher: a monitor's Down, forwarded to the test ----------------------------------------

/// Forwards the reason of its target's `Down` to a channel.
pub struct Watcher {
    target: Pid,
    tx: std::sync::mpsc::Sender<ExitReason>,
}

impl Actor for Watcher {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        ctx.monitor(self.target);
        Ok(())
    }
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(down) = msg.downcast::<Down>() {
            let _ = self.tx.send(down.reason);
        }
        Ok(())
    }
}

/// Spawns a [`Watcher`] of `target`; its `Down` reason arrives on the returned channel.
pub fn watch(node: &Node, target: Pid) -> std::sync::mpsc::Receiver<ExitReason> {
    let (tx, rx) = std::sync::mpsc::channel();
    node.spawn(move || Watcher { target, tx }, pinion::ProcessOptions::default()).wait().expect("watcher");
    rx
}

/// The statuses of the next `n` responses on a raw connection (`CALL_TIMEOUT` a read).
pub fn read_statuses(stream: &mut std::net::TcpStream, n: usize) -> Vec<u16> {
    stream.set_read_timeout(Some(CALL_TIMEOUT)).expect("read timeout");
    read_responses(stream, n).into_iter().map(|(status, _)| status).collect()
}

/// Reads `n` HTTP/1.1 responses from a raw connection: (status, body) each, framed by
/// `Content-Length` (none: empty). Fails the test if the connection closes first or a read
/// times out (set one on the stream).
pub fn read_responses(stream: &mut impl std::io::Read, n: usize) -> Vec<(u16, String)> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while out.len() < n {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                out.push((head[9..12].parse().expect("a status code"), body));
                buf.drain(..end + 4 + len);
                continue;
            }
        }
        let mut chunk = [0u8; 4096];
        let k = stream.read(&mut chunk).expect("a response in time");
        assert!(k > 0, "closed after {out:?}");
        buf.extend_from_slice(&chunk[..k]);
    }
    out
}
