//! The ractor half of the `actors` bench.
//!
//! A ractor "shard" is a current-thread tokio runtime on a pinned thread: same-shard workloads
//! run everything on one, driven by the bench thread pinned to core 0; cross-shard workloads add
//! a second one on a thread pinned to core 1 and spawn the consumer / pong / callee there.
//!
//! `BENCH_RACTOR_CROSS=multi` runs cross-shard workloads on one 2-worker multi-thread runtime
//! (workers pinned to cores 0 and 1) instead. Tokio then picks the worker for each actor, and
//! its LIFO-slot scheduling tends to run a message's receiver on the sender's worker, so those
//! numbers are mostly same-core ones.

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::runtime::Handle;
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
        other => Err(format!("ractor: unknown workload {other}")),
    }
}

/// Runs `body` on a current-thread runtime on this thread pinned to core 0. `body` gets the
/// runtime that stands for shard 1: the same one when `cross` is false; else a second
/// current-thread runtime on a thread pinned to core 1 (or, with `BENCH_RACTOR_CROSS=multi`, a
/// 2-worker multi-thread runtime that also runs `body`).
fn on_runtime<F, Fut>(cross: bool, body: F) -> Result<Outcome, String>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<Outcome, String>> + Send + 'static,
{
    let guarded = |fut: Fut| async move {
        match tokio::time::timeout(WAIT, fut).await {
            Ok(out) => out,
            Err(_) => Err("timed out".to_string()),
        }
    };
    let multi = std::env::var("BENCH_RACTOR_CROSS").is_ok_and(|v| v == "multi");
    if cross && multi {
        let next = Arc::new(AtomicUsize::new(0));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .on_thread_start(move || common::pin_current(next.fetch_add(1, Ordering::Relaxed)))
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        let out = rt.block_on(guarded(body(rt.handle().clone())));
        // Dropping a runtime with live actors cancels their tasks; the child exits next anyway.
        std::mem::forget(rt);
        return out;
    }
    common::pin_current(0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let mut stop_shard1 = None;
    let shard1 = if cross {
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        std::thread::spawn(move || {
            common::pin_current(1);
            let rt1 = tokio::runtime::Builder::new_current_thread().enable_time().build();
            let rt1 = match rt1 {
                Ok(rt1) => rt1,
                Err(e) => return eprintln!("tokio runtime: {e}"),
            };
            let _ = handle_tx.send(rt1.handle().clone());
            rt1.block_on(async move {
                let _ = stop_rx.await;
            });
            std::mem::forget(rt1);
        });
        stop_shard1 = Some(stop_tx);
        handle_rx.recv().map_err(|_| "shard 1 runtime did not start".to_string())?
    } else {
        rt.handle().clone()
    };
    let out = rt.block_on(guarded(body(shard1)));
    if let Some(stop) = stop_shard1 {
        let _ = stop.send(());
    }
    std::mem::forget(rt);
    out
}

/// Spawns `actor` on `shard`'s runtime (its processing task then lives there).
async fn spawn_on<A: Actor>(shard: &Handle, actor: A, args: A::Arguments) -> Result<ActorRef<A::Msg>, String> {
    shard.spawn(spawn(actor, args)).await.map_err(|e| format!("spawn task: {e}"))?
}

async fn spawn<A: Actor>(actor: A, args: A::Arguments) -> Result<ActorRef<A::Msg>, String> {
    Actor::spawn(None, actor, args).await.map(|(r, _join)| r).map_err(|e| format!("spawn: {e}"))
}

async fn wait<T>(rx: oneshot::Receiver<T>, what: &str) -> Result<T, String> {
    rx.await.map_err(|_| format!("{what}: sender dropped"))
}

fn err(e: impl std::fmt::Display) -> ActorProcessingErr {
    e.to_string().into()
}

// ---------------------------------------------------------------------------------------------
// send/*: up to n small messages (fewer if the time budget runs out first), then `Stop`.
// ractor mailboxes are unbounded, so the producer keeps at most `MAILBOX` messages in flight by
// comparing its count with the consumer's `handled` counter (what a bounded mailbox does for
// pinion and actix).

enum Feed {
    Item(u64),
    Stop,
}

struct Consumer;

struct ConsumerState {
    seen: u64,
    handled: Arc<AtomicU64>,
    done: Option<oneshot::Sender<(u64, Instant)>>,
}

impl Actor for Consumer {
    type Msg = Feed;
    type State = ConsumerState;
    type Arguments = ConsumerState;

    async fn pre_start(&self, _me: ActorRef<Feed>, args: ConsumerState) -> Result<ConsumerState, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(&self, _me: ActorRef<Feed>, msg: Feed, st: &mut ConsumerState) -> Result<(), ActorProcessingErr> {
        match msg {
            Feed::Item(x) => {
                black_box(x);
                st.seen += 1;
                st.handled.store(st.seen, Ordering::Release);
            }
            Feed::Stop => {
                if let Some(done) = st.done.take() {
                    let _ = done.send((st.seen, Instant::now()));
                }
            }
        }
        Ok(())
    }
}

struct Producer;

struct ProduceGo {
    to: ActorRef<Feed>,
    n: u64,
    budget: Duration,
    handled: Arc<AtomicU64>,
    started: oneshot::Sender<Instant>,
}

impl Actor for Producer {
    type Msg = ProduceGo;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _me: ActorRef<ProduceGo>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, _me: ActorRef<ProduceGo>, go: ProduceGo, _st: &mut ()) -> Result<(), ActorProcessingErr> {
        let t0 = Instant::now();
        let _ = go.started.send(t0);
        let window = MAILBOX as u64;
        let mut handled = 0;
        let mut i = 0;
        while i < go.n {
            if i - handled >= window {
                handled = go.handled.load(Ordering::Acquire);
                if i - handled >= window {
                    tokio::task::yield_now().await;
                    continue;
                }
            }
            go.to.cast(Feed::Item(i)).map_err(err)?;
            i += 1;
            if i % 1024 == 0 && t0.elapsed() >= go.budget {
                break;
            }
        }
        go.to.cast(Feed::Stop).map_err(err)?;
        Ok(())
    }
}

fn send(p: &Params, cross: bool) -> Result<Outcome, String> {
    let (n, budget) = (p.n, p.budget);
    on_runtime(cross, move |shard1| async move {
        let handled = Arc::new(AtomicU64::new(0));
        let (done_tx, done_rx) = oneshot::channel();
        let state = ConsumerState { seen: 0, handled: handled.clone(), done: Some(done_tx) };
        let consumer = spawn_on(&shard1, Consumer, state).await?;
        let producer = spawn(Producer, ()).await?;
        let (start_tx, start_rx) = oneshot::channel();
        producer
            .cast(ProduceGo { to: consumer, n, budget, handled, started: start_tx })
            .map_err(|e| format!("go: {e}"))?;
        let t0 = wait(start_rx, "producer").await?;
        let (seen, t1) = wait(done_rx, "consumer").await?;
        Ok(common::throughput(seen, t1 - t0))
    })
}

// ---------------------------------------------------------------------------------------------
// pingpong/cross_shard

enum PingMsg {
    Go(ActorRef<()>),
    Ball,
}

struct Ping;

struct PingState {
    pong: Option<ActorRef<()>>,
    n: u64,
    budget: Duration,
    t0: Instant,
    last: Instant,
    lat: Option<Latencies>,
    done: Option<oneshot::Sender<Outcome>>,
}

impl Actor for Ping {
    type Msg = PingMsg;
    type State = PingState;
    type Arguments = PingState;

    async fn pre_start(&self, _me: ActorRef<PingMsg>, args: PingState) -> Result<PingState, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(&self, _me: ActorRef<PingMsg>, msg: PingMsg, st: &mut PingState) -> Result<(), ActorProcessingErr> {
        let now = Instant::now();
        match msg {
            PingMsg::Go(pong) => {
                st.pong = Some(pong);
                st.t0 = now;
            }
            PingMsg::Ball => {
                let Some(lat) = &mut st.lat else { return Ok(()) };
                lat.record(now - st.last);
                if lat.ns.len() as u64 >= st.n || now - st.t0 >= st.budget {
                    let lat = st.lat.take().unwrap_or_default();
                    if let Some(done) = st.done.take() {
                        let _ = done.send(lat.into_outcome(now - st.t0));
                    }
                    return Ok(());
                }
            }
        }
        st.last = Instant::now();
        if let Some(pong) = &st.pong {
            pong.cast(()).map_err(err)?;
        }
        Ok(())
    }
}

struct Pong;

impl Actor for Pong {
    type Msg = ();
    type State = ActorRef<PingMsg>;
    type Arguments = ActorRef<PingMsg>;

    async fn pre_start(
        &self,
        _me: ActorRef<()>,
        ping: ActorRef<PingMsg>,
    ) -> Result<ActorRef<PingMsg>, ActorProcessingErr> {
        Ok(ping)
    }

    async fn handle(
        &self,
        _me: ActorRef<()>,
        _msg: (),
        ping: &mut ActorRef<PingMsg>,
    ) -> Result<(), ActorProcessingErr> {
        ping.cast(PingMsg::Ball).map_err(err)
    }
}

fn pingpong(p: &Params) -> Result<Outcome, String> {
    let (n, budget) = (p.n, p.budget);
    on_runtime(true, move |shard1| async move {
        let (tx, rx) = oneshot::channel();
        let state = PingState {
            pong: None,
            n,
            budget,
            t0: Instant::now(),
            last: Instant::now(),
            lat: Some(Latencies::with_capacity(n)),
            done: Some(tx),
        };
        let ping = spawn(Ping, state).await?;
        let pong = spawn_on(&shard1, Pong, ping.clone()).await?;
        ping.cast(PingMsg::Go(pong)).map_err(|e| format!("go: {e}"))?;
        wait(rx, "ping").await
    })
}

// ---------------------------------------------------------------------------------------------
// call/*

struct Req(u64, RpcReplyPort<u64>);

struct Callee;

impl Actor for Callee {
    type Msg = Req;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _me: ActorRef<Req>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, _me: ActorRef<Req>, Req(x, reply): Req, _st: &mut ()) -> Result<(), ActorProcessingErr> {
        let _ = reply.send(x + 1);
        Ok(())
    }
}

struct Caller;

struct CallGo {
    callee: ActorRef<Req>,
    n: u64,
    budget: Duration,
    done: oneshot::Sender<Result<Outcome, String>>,
}

impl Actor for Caller {
    type Msg = CallGo;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _me: ActorRef<CallGo>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(&self, _me: ActorRef<CallGo>, go: CallGo, _st: &mut ()) -> Result<(), ActorProcessingErr> {
        let mut lat = Latencies::with_capacity(go.n);
        let t0 = Instant::now();
        for i in 0..go.n {
            let t = Instant::now();
            match ractor::call!(go.callee, Req, i) {
                Ok(r) => {
                    black_box(r);
                }
                Err(e) => {
                    let _ = go.done.send(Err(format!("call {i}: {e}")));
                    return Ok(());
                }
            }
            let now = Instant::now();
            lat.record(now - t);
            if now - t0 >= go.budget {
                break;
            }
        }
        let _ = go.done.send(Ok(lat.into_outcome(t0.elapsed())));
        Ok(())
    }
}

fn call(p: &Params, cross: bool) -> Result<Outcome, String> {
    let (n, budget) = (p.n, p.budget);
    on_runtime(cross, move |shard1| async move {
        let callee = spawn_on(&shard1, Callee, ()).await?;
        let caller = spawn(Caller, ()).await?;
        let (tx, rx) = oneshot::channel();
        caller.cast(CallGo { callee, n, budget, done: tx }).map_err(|e| format!("go: {e}"))?;
        wait(rx, "caller").await?
    })
}

// ---------------------------------------------------------------------------------------------
// spawn/rate and memory/idle_process

/// A trivial actor: no state, waits forever (ractor actors live until stopped, so the
/// `ActorRef` and `JoinHandle` can be dropped).
struct Idle;

impl Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _me: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// Spawns up to `n` idle actors (fewer if `budget` runs out) from the bench thread's
/// current-thread runtime; each `spawn` resolves after the actor's `pre_start`. Returns how many
/// were spawned and the time that took.
async fn spawn_many(n: u64, budget: Option<Duration>) -> Result<(u64, Duration), String> {
    let t0 = Instant::now();
    let mut spawned = 0;
    while spawned < n {
        spawn(Idle, ()).await?;
        spawned += 1;
        if spawned % 1024 == 0 && budget.is_some_and(|b| t0.elapsed() >= b) {
            break;
        }
    }
    Ok((spawned, t0.elapsed()))
}

fn spawn_rate(p: &Params) -> Result<Outcome, String> {
    let (n, budget) = (p.n, p.budget);
    on_runtime(false, move |_| async move {
        let (spawned, took) = spawn_many(n, Some(budget)).await?;
        Ok(common::throughput(spawned, took))
    })
}

fn idle_memory(p: &Params) -> Result<Outcome, String> {
    let n = p.n;
    on_runtime(false, move |_| async move {
        let before = common::rss_bytes();
        let (spawned, _) = spawn_many(n, None).await?;
        // Let every actor's task run once, so it sits parked on its empty mailbox.
        tokio::task::yield_now().await;
        let after = common::rss_bytes();
        // Teardown is not measured for ractor (dropping a runtime is not a graceful stop).
        let mut out = common::memory(spawned, before, after, Duration::ZERO);
        out.values[1] = f64::NAN;
        Ok(out)
    })
}
