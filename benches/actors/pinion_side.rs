//! The pinion half of the `actors` bench.

use std::hint::black_box;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pinion::{
    Actor, Context, Cores, ExitReason, Handled, Message, Node, NodeHandle, NodeOptions, Pid, ProcessOptions, Reply,
    SendError, ShardId,
};

use crate::common::{self, Latencies, MAILBOX, Outcome, Params, WAIT};

pub(crate) fn run(id: &str, p: &Params) -> Result<Outcome, String> {
    match id {
        "send/same_shard" => send(p, false, false),
        "send/same_shard_async" => send(p, false, true),
        "send/cross_shard" => send(p, true, false),
        "pingpong/cross_shard" => pingpong(p),
        "call/same_shard" => call(p, false),
        "call/cross_shard" => call(p, true),
        "spawn/rate" => spawn_rate(p),
        "memory/idle_process" => idle_memory(p),
        other => Err(format!("pinion: unknown workload {other}")),
    }
}

/// The message that starts a producer / pinger / caller / spawner.
struct Go;

const CALL_TIMEOUT: Duration = Duration::from_secs(10);

fn start_node(shards: usize) -> Result<Node, String> {
    Node::start("bench", NodeOptions { cores: Cores::Count(shards), pin: true, ..Default::default() })
        .map_err(|e| format!("Node::start: {e}"))
}

fn spawn_on<A: Actor>(
    h: &NodeHandle,
    shard: u16,
    opts: ProcessOptions,
    f: impl FnOnce() -> A + Send + 'static,
) -> Result<Pid, String> {
    h.spawn_on(ShardId(shard), f, opts).wait().map_err(|e| format!("spawn_on: {e}"))
}

fn recv<T>(rx: &mpsc::Receiver<T>, what: &str) -> Result<T, String> {
    rx.recv_timeout(WAIT).map_err(|e| format!("waiting for {what}: {e}"))
}

/// An actor that is never called answers a stray call with `()`.
fn no_call() -> Result<Reply, ExitReason> {
    Ok(Reply::now(()))
}

// ---------------------------------------------------------------------------------------------
// send/*: one producer, one consumer, up to n small messages (fewer if the time budget runs
// out first), then an end marker.

/// The last message of a `send/*` run.
struct Stop;

struct Consumer {
    seen: u64,
    done: mpsc::Sender<(u64, Instant)>,
}

impl Consumer {
    #[inline(always)]
    fn take(&mut self, msg: &Message) {
        if msg.is::<Stop>() {
            let _ = self.done.send((self.seen, Instant::now()));
        } else {
            black_box(msg.downcast_ref::<u64>());
            self.seen += 1;
        }
    }
}

/// The consumer of `send/same_shard` and `send/cross_shard`: a plain-function handler
/// (`handle_message_now`), as actix's `Handler::handle` is.
impl Actor for Consumer {
    fn handle_message_now(&mut self, _ctx: &mut Context, _from: Pid, msg: Message) -> Handled {
        self.take(&msg);
        Handled::Done(Ok(()))
    }

    async fn handle_call(&mut self, _ctx: &mut Context, _from: Pid, _req: Message) -> Result<Reply, ExitReason> {
        no_call()
    }
}

/// The consumer of `send/same_shard_async`: the same work in an `async` handler, as ractor's is
/// (a future per message).
struct AsyncConsumer(Consumer);

impl Actor for AsyncConsumer {
    async fn handle_message(&mut self, _ctx: &mut Context, _from: Pid, msg: Message) -> Result<(), ExitReason> {
        self.0.take(&msg);
        Ok(())
    }

    async fn handle_call(&mut self, _ctx: &mut Context, _from: Pid, _req: Message) -> Result<Reply, ExitReason> {
        no_call()
    }
}

struct Producer {
    to: Pid,
    n: u64,
    budget: Duration,
    started: mpsc::Sender<Instant>,
}

impl Producer {
    /// Sends `msg` if the consumer's mailbox has room; hands it back if it is full. The
    /// producer retries in its own loop after a yield, as actix's side does: no future is
    /// built per message on either side.
    #[inline(always)]
    fn try_send<M: Send + 'static>(&self, ctx: &mut Context, msg: M) -> Result<(), M> {
        match ctx.send(self.to, msg) {
            Ok(()) => Ok(()),
            Err(SendError::MailboxFull(m)) => Err(m),
            Err(e) => panic!("producer: {e}"),
        }
    }
}

impl Actor for Producer {
    async fn handle_message(&mut self, ctx: &mut Context, _from: Pid, _go: Message) -> Result<(), ExitReason> {
        let t0 = Instant::now();
        let _ = self.started.send(t0);
        for i in 0..self.n {
            let mut msg = i;
            while let Err(m) = self.try_send(ctx, msg) {
                msg = m;
                ctx.yield_now().await;
            }
            if i % 1024 == 1023 && t0.elapsed() >= self.budget {
                break;
            }
        }
        let mut stop = Stop;
        while let Err(m) = self.try_send(ctx, stop) {
            stop = m;
            ctx.yield_now().await;
        }
        Ok(())
    }

    async fn handle_call(&mut self, _ctx: &mut Context, _from: Pid, _req: Message) -> Result<Reply, ExitReason> {
        no_call()
    }
}

fn send(p: &Params, cross: bool, in_async: bool) -> Result<Outcome, String> {
    let node = start_node(if cross { 2 } else { 1 })?;
    let h = node.handle();
    let (done_tx, done_rx) = mpsc::channel();
    let (start_tx, start_rx) = mpsc::channel();
    let (n, budget) = (p.n, p.budget);
    let (shard, opts) = (u16::from(cross), ProcessOptions { mailbox: MAILBOX, ..Default::default() });
    let consumer = Consumer { seen: 0, done: done_tx };
    let consumer = if in_async {
        spawn_on(&h, shard, opts, move || AsyncConsumer(consumer))?
    } else {
        spawn_on(&h, shard, opts, move || consumer)?
    };
    let producer =
        spawn_on(&h, 0, ProcessOptions::default(), move || Producer { to: consumer, n, budget, started: start_tx })?;
    h.send(producer, Go).map_err(|e| format!("go: {e}"))?;
    let t0 = recv(&start_rx, "producer start")?;
    let (seen, t1) = recv(&done_rx, "consumer to finish")?;
    node.stop();
    Ok(common::throughput(seen, t1 - t0))
}

// ---------------------------------------------------------------------------------------------
// pingpong/cross_shard: one message bounced between shard 0 and shard 1.

struct Ball;

struct Ping {
    pong: Pid,
    n: u64,
    budget: Duration,
    t0: Instant,
    last: Instant,
    lat: Option<Latencies>,
    done: mpsc::Sender<Outcome>,
}

impl Actor for Ping {
    async fn handle_message(&mut self, ctx: &mut Context, _from: Pid, msg: Message) -> Result<(), ExitReason> {
        let now = Instant::now();
        if msg.is::<Go>() {
            self.t0 = now;
        } else if let Some(lat) = &mut self.lat {
            lat.record(now - self.last);
            let done = lat.ns.len() as u64;
            if done >= self.n || now - self.t0 >= self.budget {
                let lat = self.lat.take().unwrap_or_default();
                let _ = self.done.send(lat.into_outcome(now - self.t0));
                return Ok(());
            }
        }
        self.last = Instant::now();
        if let Err(e) = ctx.send(self.pong, Ball) {
            panic!("ping: {e}");
        }
        Ok(())
    }

    async fn handle_call(&mut self, _ctx: &mut Context, _from: Pid, _req: Message) -> Result<Reply, ExitReason> {
        no_call()
    }
}

struct Pong;

impl Actor for Pong {
    async fn handle_message(&mut self, ctx: &mut Context, from: Pid, _msg: Message) -> Result<(), ExitReason> {
        if let Err(e) = ctx.send(from, Ball) {
            panic!("pong: {e}");
        }
        Ok(())
    }

    async fn handle_call(&mut self, _ctx: &mut Context, _from: Pid, _req: Message) -> Result<Reply, ExitReason> {
        no_call()
    }
}

fn pingpong(p: &Params) -> Result<Outcome, String> {
    let node = start_node(2)?;
    let h = node.handle();
    let pong = spawn_on(&h, 1, ProcessOptions::default(), || Pong)?;
    let (tx, rx) = mpsc::channel();
    let (n, budget) = (p.n, p.budget);
    let ping = spawn_on(&h, 0, ProcessOptions::default(), move || Ping {
        pong,
        n,
        budget,
        t0: Instant::now(),
        last: Instant::now(),
        lat: Some(Latencies::with_capacity(n)),
        done: tx,
    })?;
    h.send(ping, Go).map_err(|e| format!("go: {e}"))?;
    let out = recv(&rx, "ping-pong to finish")?;
    node.stop();
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// call/*: request/reply in a loop.

struct Callee;

impl Actor for Callee {
    async fn handle_call(&mut self, _ctx: &mut Context, _from: Pid, req: Message) -> Result<Reply, ExitReason> {
        let x = req.downcast_ref::<u64>().copied().unwrap_or(0);
        Ok(Reply::now(x + 1))
    }
}

struct Caller {
    callee: Pid,
    n: u64,
    budget: Duration,
    done: mpsc::Sender<Result<Outcome, String>>,
}

impl Actor for Caller {
    async fn handle_message(&mut self, ctx: &mut Context, _from: Pid, _go: Message) -> Result<(), ExitReason> {
        let mut lat = Latencies::with_capacity(self.n);
        let t0 = Instant::now();
        for i in 0..self.n {
            let t = Instant::now();
            match ctx.call(self.callee, i, CALL_TIMEOUT).await {
                Ok(reply) => {
                    black_box(reply.downcast_ref::<u64>());
                }
                Err(e) => {
                    let _ = self.done.send(Err(format!("call {i}: {e}")));
                    return Ok(());
                }
            }
            let now = Instant::now();
            lat.record(now - t);
            if now - t0 >= self.budget {
                break;
            }
        }
        let _ = self.done.send(Ok(lat.into_outcome(t0.elapsed())));
        Ok(())
    }

    async fn handle_call(&mut self, _ctx: &mut Context, _from: Pid, _req: Message) -> Result<Reply, ExitReason> {
        no_call()
    }
}

fn call(p: &Params, cross: bool) -> Result<Outcome, String> {
    let node = start_node(if cross { 2 } else { 1 })?;
    let h = node.handle();
    let callee = spawn_on(&h, u16::from(cross), ProcessOptions::default(), || Callee)?;
    let (tx, rx) = mpsc::channel();
    let (n, budget) = (p.n, p.budget);
    let caller = spawn_on(&h, 0, ProcessOptions::default(), move || Caller { callee, n, budget, done: tx })?;
    h.send(caller, Go).map_err(|e| format!("go: {e}"))?;
    let out = recv(&rx, "calls to finish")?;
    node.stop();
    out
}

// ---------------------------------------------------------------------------------------------
// spawn/rate and memory/idle_process: many trivial processes spawned from a process.

/// A trivial process: no state, waits forever.
struct Idle;

impl Actor for Idle {
    async fn handle_call(&mut self, _ctx: &mut Context, _from: Pid, _req: Message) -> Result<Reply, ExitReason> {
        no_call()
    }
}

struct Spawner {
    n: u64,
    budget: Option<Duration>,
    done: mpsc::Sender<Result<(u64, Duration), String>>,
}

impl Actor for Spawner {
    async fn handle_message(&mut self, ctx: &mut Context, _from: Pid, _go: Message) -> Result<(), ExitReason> {
        let t0 = Instant::now();
        let mut spawned = 0;
        while spawned < self.n {
            if let Err(e) = ctx.spawn(|| Idle, ProcessOptions::default()).await {
                let _ = self.done.send(Err(format!("spawn {spawned}: {e}")));
                return Ok(());
            }
            spawned += 1;
            if spawned % 1024 == 0 && self.budget.is_some_and(|b| t0.elapsed() >= b) {
                break;
            }
        }
        let _ = self.done.send(Ok((spawned, t0.elapsed())));
        Ok(())
    }

    async fn handle_call(&mut self, _ctx: &mut Context, _from: Pid, _req: Message) -> Result<Reply, ExitReason> {
        no_call()
    }
}

/// Spawns up to `n` idle processes (fewer if `budget` runs out) on shard 0 of a 1-shard node
/// from a process there. Returns the node, how many were spawned, the time that took, and the
/// RSS just before spawning started.
fn spawn_many(n: u64, budget: Option<Duration>) -> Result<(Node, u64, Duration, u64), String> {
    let node = start_node(1)?;
    let h = node.handle();
    let (tx, rx) = mpsc::channel();
    let spawner = spawn_on(&h, 0, ProcessOptions::default(), move || Spawner { n, budget, done: tx })?;
    let before = common::rss_bytes();
    h.send(spawner, Go).map_err(|e| format!("go: {e}"))?;
    let (spawned, took) = recv(&rx, "spawner to finish")??;
    Ok((node, spawned, took, before))
}

fn spawn_rate(p: &Params) -> Result<Outcome, String> {
    let (node, spawned, took, _) = spawn_many(p.n, Some(p.budget))?;
    node.stop();
    Ok(common::throughput(spawned, took))
}

fn idle_memory(p: &Params) -> Result<Outcome, String> {
    let (node, spawned, _, before) = spawn_many(p.n, None)?;
    let after = common::rss_bytes();
    let t = Instant::now();
    node.stop();
    Ok(common::memory(spawned, before, after, t.elapsed()))
}
