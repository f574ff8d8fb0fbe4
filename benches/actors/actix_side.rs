//! The actix half of the `actors` bench.
//!
//! The bench thread (pinned to core 0) runs the actix `System`, whose arbiter is "shard 0";
//! cross-shard workloads add one `Arbiter` whose thread is pinned to core 1.

use std::cell::Cell;
use std::future::Future;
use std::hint::black_box;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::common::{self, Latencies, MAILBOX, Outcome, Params, WAIT};

pub(crate) fn run(id: &str, p: &Params) -> Result<Outcome, String> {
    match id {
        "send/same_shard" | "send/same_shard_async" => send(p, false),
        "send/cross_shard" => send(p, true),
        "pingpong/cross_shard" => pingpong(p),
        "call/same_shard" => call(p, false),
        "call/cross_shard" => call(p, true),
        "spawn/rate" => spawn_rate(p),
        "memory/idle_process" => idle_memory(p),
        other => Err(format!("actix: unknown workload {other}")),
    }
}

/// Runs `body` inside a fresh `System` on this (pinned) thread. `body` gets the arbiter that
/// stands for shard 1: a second pinned arbiter thread when `cross`, else the system arbiter.
fn in_system<F, Fut>(cross: bool, body: F) -> Result<Outcome, String>
where
    F: FnOnce(ArbiterHandle) -> Fut,
    Fut: Future<Output = Result<Outcome, String>>,
{
    common::pin_current(0);
    let sys = System::new();
    let other = cross.then(|| {
        let arb = Arbiter::new();
        arb.spawn(async { common::pin_current(1) });
        arb
    });
    let handle = other.as_ref().map_or_else(Arbiter::current, Arbiter::handle);
    let out = sys.block_on(async move {
        match tokio::time::timeout(WAIT, body(handle)).await {
            Ok(out) => out,
            Err(_) => Err("timed out".to_string()),
        }
    });
    if let Some(arb) = other {
        arb.stop();
        let _ = arb.join();
    }
    out
}

async fn wait<T>(rx: oneshot::Receiver<T>, what: &str) -> Result<T, String> {
    rx.await.map_err(|_| format!("{what}: sender dropped"))
}

// ---------------------------------------------------------------------------------------------
// send/*: up to n small messages (fewer if the time budget runs out first), then `Stop`.

struct Item(u64);

impl Message for Item {
    type Result = ();
}

struct Stop;

impl Message for Stop {
    type Result = ();
}

struct Consumer {
    seen: u64,
    done: Option<oneshot::Sender<(u64, Instant)>>,
}

impl Actor for Consumer {
    type Context = Context<Self>;
}

impl Handler<Item> for Consumer {
    type Result = ();

    fn handle(&mut self, msg: Item, _ctx: &mut Context<Self>) {
        black_box(msg.0);
        self.seen += 1;
    }
}

impl Handler<Stop> for Consumer {
    type Result = ();

    fn handle(&mut self, _stop: Stop, _ctx: &mut Context<Self>) {
        if let Some(done) = self.done.take() {
            let _ = done.send((self.seen, Instant::now()));
        }
    }
}

/// `try_send` fails with `Full` once the bounded mailbox is over capacity (and until the
/// consumer has taken messages out): then the message comes back, and the producer yields so
/// the consumer can drain and tries again in its own loop (the same shape as pinion's side).
#[inline(always)]
fn try_send<M>(to: &Addr<Consumer>, msg: M) -> Result<Result<(), M>, String>
where
    M: Message<Result = ()> + Send + 'static,
    Consumer: Handler<M>,
{
    match to.try_send(msg) {
        Ok(()) => Ok(Ok(())),
        Err(SendError::Full(m)) => Ok(Err(m)),
        Err(SendError::Closed(_)) => Err("consumer closed".to_string()),
    }
}

fn send(p: &Params, cross: bool) -> Result<Outcome, String> {
    let (n, budget) = (p.n, p.budget);
    in_system(cross, move |shard1| async move {
        let (done_tx, done_rx) = oneshot::channel();
        let consumer = Consumer::start_in_arbiter(&shard1, move |ctx| {
            ctx.set_mailbox_capacity(MAILBOX);
            Consumer { seen: 0, done: Some(done_tx) }
        });
        // The producer: a task on the system arbiter (shard 0).
        let producer = actix_rt::spawn(async move {
            let t0 = Instant::now();
            for i in 0..n {
                let mut item = Item(i);
                while let Err(m) = try_send(&consumer, item)? {
                    item = m;
                    tokio::task::yield_now().await;
                }
                if i % 1024 == 1023 && t0.elapsed() >= budget {
                    break;
                }
            }
            let mut stop = Stop;
            while let Err(m) = try_send(&consumer, stop)? {
                stop = m;
                tokio::task::yield_now().await;
            }
            Ok::<_, String>(t0)
        });
        let t0 = producer.await.map_err(|e| format!("producer: {e}"))??;
        let (seen, t1) = wait(done_rx, "consumer").await?;
        Ok(common::throughput(seen, t1 - t0))
    })
}

// ---------------------------------------------------------------------------------------------
// pingpong/cross_shard

struct Ball;

impl Message for Ball {
    type Result = ();
}

struct Go;

impl Message for Go {
    type Result = ();
}

struct Ping {
    pong: Addr<Pong>,
    n: u64,
    budget: Duration,
    t0: Instant,
    last: Instant,
    lat: Option<Latencies>,
    done: Option<oneshot::Sender<Outcome>>,
}

impl Actor for Ping {
    type Context = Context<Self>;
}

impl Handler<Go> for Ping {
    type Result = ();

    fn handle(&mut self, _go: Go, _ctx: &mut Context<Self>) {
        self.t0 = Instant::now();
        self.last = Instant::now();
        self.pong.do_send(Ball);
    }
}

impl Handler<Ball> for Ping {
    type Result = ();

    fn handle(&mut self, _ball: Ball, _ctx: &mut Context<Self>) {
        let now = Instant::now();
        let Some(lat) = &mut self.lat else { return };
        lat.record(now - self.last);
        if lat.ns.len() as u64 >= self.n || now - self.t0 >= self.budget {
            let lat = self.lat.take().unwrap_or_default();
            if let Some(done) = self.done.take() {
                let _ = done.send(lat.into_outcome(now - self.t0));
            }
            return;
        }
        self.last = Instant::now();
        self.pong.do_send(Ball);
    }
}

struct Pong {
    ping: Addr<Ping>,
}

impl Actor for Pong {
    type Context = Context<Self>;
}

impl Handler<Ball> for Pong {
    type Result = ();

    fn handle(&mut self, ball: Ball, _ctx: &mut Context<Self>) {
        self.ping.do_send(ball);
    }
}

fn pingpong(p: &Params) -> Result<Outcome, String> {
    let (n, budget) = (p.n, p.budget);
    in_system(true, move |shard1| async move {
        let (tx, rx) = oneshot::channel();
        let ping = Ping::create(move |ctx| {
            let me = ctx.address();
            let pong = Pong::start_in_arbiter(&shard1, move |_| Pong { ping: me });
            Ping {
                pong,
                n,
                budget,
                t0: Instant::now(),
                last: Instant::now(),
                lat: Some(Latencies::with_capacity(n)),
                done: Some(tx),
            }
        });
        ping.do_send(Go);
        wait(rx, "ping").await
    })
}

// ---------------------------------------------------------------------------------------------
// call/*

struct Req(u64);

impl Message for Req {
    type Result = u64;
}

struct Callee;

impl Actor for Callee {
    type Context = Context<Self>;
}

impl Handler<Req> for Callee {
    type Result = u64;

    fn handle(&mut self, req: Req, _ctx: &mut Context<Self>) -> u64 {
        req.0 + 1
    }
}

fn call(p: &Params, cross: bool) -> Result<Outcome, String> {
    let (n, budget) = (p.n, p.budget);
    in_system(cross, move |shard1| async move {
        let callee = Callee::start_in_arbiter(&shard1, |_| Callee);
        // The caller: a task on the system arbiter (shard 0), `addr.send(..).await` in a loop.
        let caller = actix_rt::spawn(async move {
            let mut lat = Latencies::with_capacity(n);
            let t0 = Instant::now();
            for i in 0..n {
                let t = Instant::now();
                let r = callee.send(Req(i)).await.map_err(|e| format!("call {i}: {e}"))?;
                black_box(r);
                let now = Instant::now();
                lat.record(now - t);
                if now - t0 >= budget {
                    break;
                }
            }
            Ok(lat.into_outcome(t0.elapsed()))
        });
        caller.await.map_err(|e| format!("caller: {e}"))?
    })
}

// ---------------------------------------------------------------------------------------------
// spawn/rate and memory/idle_process

thread_local! {
    /// How many `Idle` actors on this arbiter ran `started`.
    static STARTED: Cell<u64> = const { Cell::new(0) };
}

/// A trivial actor. Its `Addr` is leaked (`mem::forget`) so that it stays alive, as an idle
/// pinion process does without anyone holding its pid.
struct Idle;

impl Actor for Idle {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Context<Self>) {
        STARTED.with(|c| c.set(c.get() + 1));
    }
}

/// Starts up to `n` idle actors (fewer if `budget` runs out) on the system arbiter and waits
/// until all of them ran `started` (pinion's spawn resolves after `init`, ractor's after
/// `pre_start`). Returns how many were started and the time that took.
async fn spawn_many(n: u64, budget: Option<Duration>) -> (u64, Duration) {
    let t0 = Instant::now();
    let mut spawned = 0;
    while spawned < n {
        std::mem::forget(Idle.start());
        spawned += 1;
        if spawned % 1024 == 0 && budget.is_some_and(|b| t0.elapsed() >= b) {
            break;
        }
    }
    while STARTED.with(Cell::get) < spawned {
        tokio::task::yield_now().await;
    }
    (spawned, t0.elapsed())
}

fn spawn_rate(p: &Params) -> Result<Outcome, String> {
    let (n, budget) = (p.n, p.budget);
    in_system(false, move |_| async move {
        let (spawned, took) = spawn_many(n, Some(budget)).await;
        Ok(common::throughput(spawned, took))
    })
}

fn idle_memory(p: &Params) -> Result<Outcome, String> {
    let n = p.n;
    in_system(false, move |_| async move {
        let before = common::rss_bytes();
        let (spawned, _) = spawn_many(n, None).await;
        let after = common::rss_bytes();
        // Teardown is not measured for actix (dropping a System is not a graceful stop).
        let mut out = common::memory(spawned, before, after, Duration::ZERO);
        out.values[1] = f64::NAN;
        Ok(out)
    })
}
