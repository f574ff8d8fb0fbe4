//! Review 72: messages the runtime lost, or answered without giving back — `try_call`'s
//! refusals before any send (a zero timeout, a process calling itself), a call a pool took and
//! then shed, a pool's worker that failed to start under `resize`, a resize flood from a plain
//! thread. Nodes of 1 or 2 unpinned shards; every wait is bounded (a hang fails).

mod review_support;
mod support;

use review_support::Client;
use support::{Gate, Latch, Probe};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use pinion::http::{HttpLimits, Response};
use pinion::web::{WebHandler, WebRequest, WebTarget};
use pinion::{
    Actor, CallError, Context, ExitReason, Message, Node, Pid, Placement, Pool, PoolOptions, PoolRef, ProcessOptions,
    Reply, SendError, ShardId,
};

/// How long a call may wait: only a hang guard.
const T: Duration = Duration::from_secs(10);

/// A request that cannot be cloned: what a caller wants back when it is refused.
#[derive(Debug, PartialEq)]
struct Order(Vec<u8>);

/// Answers every call with `()`.
struct Answers;

impl Actor for Answers {
    async fn handle_call(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        Ok(Reply::now(()))
    }
}

// ---- 1. try_call: a refusal before any send hands the request back -------------------------

/// `NodeHandle::try_call` with a zero timeout answered `Ok` with a future failed
/// `InvalidTimeout`, the request dropped: now refused at once with the request in
/// `SendError::InvalidTimeout`. `call` still fails with `CallError::InvalidTimeout`.
#[test]
fn node_handle_try_call_with_a_zero_timeout_hands_the_request_back() {
    let node = support::node("r72-zero-handle", 1);
    let callee = node.spawn(|| Answers, ProcessOptions::default()).wait().expect("spawn");
    match node.try_call(callee, Order(vec![1, 2]), Duration::ZERO) {
        Err(SendError::InvalidTimeout(order)) => assert_eq!(order, Order(vec![1, 2])),
        Err(e) => panic!("try_call with a zero timeout: {e}"),
        Ok(future) => panic!("try_call with a zero timeout was taken: {:?}", future.wait().map(|_| ())),
    }
    let e = node.call(callee, Order(vec![3]), Duration::ZERO).wait().expect_err("zero timeout");
    assert_eq!(e, CallError::InvalidTimeout(Duration::ZERO));
    assert!(node.try_call(callee, Order(vec![4]), T).expect("taken").wait().is_ok());
    node.stop();
}

/// What a [`SelfCaller`] saw, by the name of the refusal, with the bytes handed back.
type Seen = Vec<(String, Option<Vec<u8>>)>;

/// Calls itself with `Context::try_call` (by pid and by name) and something else with a
/// zero timeout, and reports what came back.
struct SelfCaller {
    name: &'static str,
    other: Pid,
    report: Sender<Seen>,
}

impl Actor for SelfCaller {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> {
        fn seen(r: Result<pinion::CallReply<'_>, SendError<Order>>) -> (String, Option<Vec<u8>>) {
            match r {
                Ok(_) => ("taken".into(), None),
                Err(e) => (format!("{e:?}"), Some(e.into_inner().0)),
            }
        }
        let me = ctx.pid();
        let mut all = vec![
            seen(ctx.try_call(me, Order(vec![1]), T)),
            seen(ctx.try_call(self.name, Order(vec![2]), T)),
            seen(ctx.try_call(self.other, Order(vec![3]), Duration::ZERO)),
        ];
        // `call` keeps its answers.
        let plain = ctx.call(me, Order(vec![4]), T).await.map(|_| ());
        all.push((format!("{plain:?}"), None));
        let _ = self.report.send(all);
        Ok(())
    }
}

/// `Context::try_call` to the calling process itself (its pid, its name) answered `Ok` with a
/// reply failed `WouldBlock`, and one with a zero timeout `InvalidTimeout`: the request was
/// dropped both times. Now both are refused with the request (`SendError::WouldBlock`,
/// `SendError::InvalidTimeout`), on the same shard as the callee and across.
#[test]
fn context_try_call_to_itself_or_with_a_zero_timeout_hands_the_request_back() {
    let node = support::node("r72-self-ctx", 2);
    let other = node.spawn_on(ShardId(1), || Answers, ProcessOptions::default()).wait().expect("spawn");
    let (report, seen): (Sender<Seen>, Receiver<Seen>) = mpsc::channel();
    let name = "r72-self-caller";
    let caller = SelfCaller { name, other, report };
    let pid = node.spawn_register(name, move || caller, ProcessOptions::default()).wait().expect("spawn");
    node.send(pid, ()).expect("send");
    let seen = seen.recv_timeout(T).expect("the caller reports within 10 s");
    let expected: Seen = vec![
        ("WouldBlock(..)".into(), Some(vec![1])),
        ("WouldBlock(..)".into(), Some(vec![2])),
        ("InvalidTimeout(..)".into(), Some(vec![3])),
        ("Err(WouldBlock)".into(), None),
    ];
    assert_eq!(seen, expected);
    node.stop();
}

// ---- 2. a pool that took a call and found no worker hands the request back ----------------

/// A pool of one worker (a [`Gate`]: mailbox 2) holding a message in progress: a call made
/// now queues behind it.
fn busy_pool(node: &Node, name: &str) -> (Pid, Arc<Latch>) {
    let (latch, probe) = (Latch::new(), Probe::new());
    let (l, p) = (latch.clone(), probe.clone());
    let options = PoolOptions::new(1, 2, move || Gate::new(&l, &p));
    let pool = node.spawn_register(name, move || Pool::new(options), ProcessOptions::default()).wait();
    let pool = pool.expect("pool");
    node.send(pool, 1u64).expect("in progress");
    support::wait_until("the worker holds it", || probe.started() == 1);
    (pool, latch)
}

/// Stops `pool` while its worker holds a message, then lets that message finish: the worker
/// stops before its queue, which no other worker takes.
fn stop_busy_pool(node: &Node, pool: Pid, latch: &Latch) {
    let h = node.handle();
    h.exit(pool, ExitReason::Shutdown);
    let r = h.pool(pool).expect("a pool");
    support::wait_until("stopping", || r.info().stopping);
    latch.open();
}

/// A call `try_call` had placed on a pool worker that then ended unreplaced (here: the pool
/// stopped), with no other worker to take it, was answered `Stopped` (or `MailboxFull`) and
/// its request dropped. `NodeHandle::try_call`'s future (and `call`'s, the same type) now
/// hands it back (`CallFuture::request_back`).
#[test]
fn node_handle_try_call_gets_back_a_request_its_pool_shed() {
    let node = support::node("r72-shed-handle", 1);
    let (pool, latch) = busy_pool(&node, "r72-shed-handle-pool");
    let mut kept = node.try_call(pool, Order(vec![7, 7]), T).expect("taken: the pool has room");
    let mut plain = node.call(pool, Order(vec![8]), T);
    stop_busy_pool(&node, pool, &latch);
    assert_eq!(kept.wait_mut().expect_err("shed"), CallError::Stopped);
    let back = kept.request_back().expect("the request comes back");
    assert_eq!(back.downcast::<Order>().expect("an Order"), Order(vec![7, 7]));
    assert!(kept.request_back().is_none(), "taken once");
    // `NodeHandle::call`'s future is the same: it hands the request back too.
    assert_eq!(plain.wait_mut().expect_err("shed"), CallError::Stopped);
    let back = plain.request_back().expect("the request comes back");
    assert_eq!(back.downcast::<Order>().expect("an Order"), Order(vec![8]));
    node.stop();
}

/// What a [`ShedCaller`] saw: the error and the request handed back.
type ShedSeen = (Result<(), CallError>, Option<Order>);

/// Calls with `Context::try_call` and awaits the reply by reference.
struct ShedCaller {
    report: Sender<ShedSeen>,
}

impl Actor for ShedCaller {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        let Ok(pool) = msg.downcast::<Pid>() else { return Ok(()) };
        let seen = match ctx.try_call(pool, Order(vec![9, 9]), T) {
            Ok(mut reply) => {
                let answer = (&mut reply).await.map(|_| ());
                (answer, reply.request_back().map(|m| m.downcast::<Order>().expect("an Order")))
            }
            Err(e) => (Err(CallError::from(e)), None),
        };
        let _ = self.report.send(seen);
        Ok(())
    }
}

/// The same for `Context::try_call`: the reply hands the request back
/// (`CallReply::request_back`), whether the caller is on the pool's shard or another.
#[test]
fn context_try_call_gets_back_a_request_its_pool_shed() {
    let node = support::node("r72-shed-ctx", 2);
    for shard in [ShardId(0), ShardId(1)] {
        let (pool, latch) = busy_pool(&node, &format!("r72-shed-ctx-pool-{}", shard.0));
        let (report, seen) = mpsc::channel();
        let caller = node.spawn_on(shard, move || ShedCaller { report }, ProcessOptions::default()).wait();
        node.send(caller.expect("caller"), pool).expect("send");
        let r = node.handle().pool(pool).expect("a pool");
        support::wait_until("the call queued", || r.info().held == 2);
        stop_busy_pool(&node, pool, &latch);
        let seen = seen.recv_timeout(T).expect("the caller reports");
        assert_eq!(seen, (Err(CallError::Stopped), Some(Order(vec![9, 9]))), "caller on {shard:?}");
    }
    node.stop();
}

/// A web worker that answers each request once its latch lets it.
struct SlowWeb {
    latch: Arc<Latch>,
}

impl Actor for SlowWeb {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(req) = msg.downcast::<WebRequest>() {
            self.latch.acquire().await;
            req.respond(Response::text("served"));
        }
        Ok(())
    }
}

/// A web request queued on a pool worker that ends unreplaced (the pool stops) with no other
/// worker to take it is answered 503 at once, as the brief of review 72 asks to check: the
/// one in progress is served.
#[test]
fn a_web_request_its_pool_shed_is_answered_503() {
    let node = review_support::start_node("r72-shed-web", 1);
    let latch = Latch::new();
    let l = latch.clone();
    let options = PoolOptions::new(1, 2, move || SlowWeb { latch: l.clone() });
    let pool = node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let server = review_support::serve_with(&node, HttpLimits::default(), WebHandler::to(WebTarget::Pid(pool)));
    let (mut first, mut second) = (Client::connect(server.local_addr()), Client::connect(server.local_addr()));
    first.send(&review_support::get("/first"));
    let r = node.handle().pool(pool).expect("a pool");
    support::wait_until("the first in progress", || r.info().held == 1);
    second.send(&review_support::get("/second"));
    support::wait_until("the second queued", || r.info().held == 2);
    stop_busy_pool(&node, pool, &latch);
    let (a, b) = (first.response(), second.response());
    assert_eq!((a.status, b.status), (200, 503), "{a:?} {b:?}");
    server.stop();
    node.stop();
}

// ---- 3. a worker added by resize that fails to start leaves no dead cell ------------------

/// Answers calls; its factory panics on the starts listed in `fail` (counted from 1).
fn failing_factory(fail: &'static [usize]) -> (Arc<AtomicUsize>, impl Fn() -> Answers + Send + Sync + 'static) {
    let made = Arc::new(AtomicUsize::new(0));
    let m = made.clone();
    let factory = move || {
        let n = m.fetch_add(1, Ordering::SeqCst) + 1;
        assert!(!fail.contains(&n), "review72: the factory fails its start {n}");
        Answers
    };
    (made, factory)
}

/// The shards of a pool's workers, sorted.
fn worker_shards(pool: &PoolRef) -> Vec<u16> {
    let mut shards: Vec<u16> = pool.info().workers.iter().map(|w| w.shard.0).collect();
    shards.sort_unstable();
    shards
}

/// A worker added by `resize` whose start failed (its factory panicked) left its cell GONE in
/// its shard's list for good, and the placement moved on past it: the next `resize` put the
/// worker on another shard (a pool spread over two shards ended with both workers on shard 0),
/// and every such failure kept one more dead cell for senders to scan. Now the cell is taken
/// out of the list and reused by the next worker added, on the same shard, and the failure is
/// counted in `PoolInfo::failed_starts`.
#[test]
fn a_worker_that_failed_to_start_under_resize_leaves_its_place_to_the_next() {
    review_support::quiet_worker_panics();
    let node = support::node("r72-failed-start", 2);
    let (made, factory) = failing_factory(&[2]);
    let options = PoolOptions::new(1, 2, factory).placement(Placement::Spread);
    let pool = node.spawn_on(ShardId(0), move || Pool::new(options), ProcessOptions::default()).wait();
    let pool = node.handle().pool(pool.expect("pool")).expect("a pool");
    assert_eq!(worker_shards(&pool), vec![0]);

    // From a thread that is no shard's: the start fails on shard 1, after `resize` returned.
    pool.resize(2).expect("resize");
    support::wait_until("the start failed", || made.load(Ordering::SeqCst) >= 2 && pool.info().size == 1);
    assert_eq!(pool.info().failed_starts, 1, "the failure is reported");
    pool.resize(2).expect("resize again");
    support::wait_until("two workers", || pool.info().workers.iter().filter(|w| w.pid.is_some()).count() == 2);
    assert_eq!(worker_shards(&pool), vec![0, 1], "the spread kept: the failed shard's place taken again");
    for _ in 0..8 {
        node.call_blocking(pool.pid().expect("pid"), (), T).expect("the pool answers");
    }
    node.stop();
}

/// Resizes a pool from its shard when told the size; reports what `resize` answered.
struct Resizer {
    pool: Pid,
    report: Sender<String>,
}

impl Actor for Resizer {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(size) = msg.downcast::<usize>() {
            let answer =
                ctx.pool(self.pool).map_err(|e| e.to_string()).and_then(|p| p.resize(size).map_err(|e| e.to_string()));
            let _ = self.report.send(format!("{answer:?}"));
        }
        Ok(())
    }
}

/// The same on the worker's shard, where `resize` starts the worker itself and answers the
/// failure (`WorkerStart`): the place is taken again by the next worker added.
#[test]
fn a_worker_that_failed_to_start_under_resize_on_its_shard_leaves_its_place_to_the_next() {
    review_support::quiet_worker_panics();
    let node = support::node("r72-failed-start-here", 2);
    let (made, factory) = failing_factory(&[2]);
    let options = PoolOptions::new(1, 2, factory).placement(Placement::Spread);
    let pid = node.spawn_on(ShardId(0), move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let pool = node.handle().pool(pid).expect("a pool");
    let (report, answers) = mpsc::channel();
    let resizer = Resizer { pool: pid, report };
    let resizer = node.spawn_on(ShardId(1), move || resizer, ProcessOptions::default()).wait().expect("resizer");
    let answer = |size: usize| {
        node.send(resizer, size).expect("send");
        answers.recv_timeout(T).expect("the resizer answers")
    };
    let failed = answer(2);
    assert!(failed.contains("failed to start"), "{failed}");
    assert_eq!(made.load(Ordering::SeqCst), 2);
    assert_eq!((pool.info().size, pool.info().failed_starts), (1, 1));
    assert_eq!(answer(2), "Ok(())");
    support::wait_until("two workers", || pool.info().workers.iter().filter(|w| w.pid.is_some()).count() == 2);
    assert_eq!(worker_shards(&pool), vec![0, 1], "the spread kept: the failed shard's place taken again");
    node.stop();
}

// ---- 4. a resize flood from a plain thread starves no process ------------------------------

/// Counts its `Tick`s in `ticks` and sends itself the next one: progress as long as its shard
/// runs its processes.
struct Ticker {
    ticks: Arc<AtomicU64>,
}

struct Tick;

impl Actor for Ticker {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        ctx.send(ctx.pid(), Tick).map_err(|_| ExitReason::custom("first tick refused"))
    }

    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> {
        self.ticks.fetch_add(1, Ordering::Relaxed);
        ctx.sleep(Duration::from_micros(100)).await;
        ctx.send(ctx.pid(), Tick).map_err(|_| ExitReason::custom("tick refused"))
    }
}

/// A thread that calls `resize` without pause (up by one, down by one) starved the pool's
/// shard: each pair queued a worker's start there that the next call had already retired,
/// and the shard started it anyway (a spawn, a link to the manager, a retirement), far slower
/// than the thread queued them (0 ticks in 1.5 s, gigabytes queued within minutes). The
/// shard now skips a start retired before it ran, without the pool's control lock (which the
/// thread holds nearly all the time), and takes at most a budget from its inbox a turn. A
/// ticker on the same shard must keep ticking through the flood.
#[test]
fn a_resize_flood_from_a_thread_starves_no_process_of_the_shard() {
    let node = support::node("r72-resize-flood", 1);
    let ticks = Arc::new(AtomicU64::new(0));
    let t = ticks.clone();
    node.spawn(move || Ticker { ticks: t }, ProcessOptions::default()).wait().expect("ticker");
    let pool = node.spawn(|| Pool::new(PoolOptions::new(1, 4, || Answers)), ProcessOptions::default()).wait();
    let pool = node.handle().pool(pool.expect("pool")).expect("a pool");
    support::wait_until("the ticker ticks", || ticks.load(Ordering::Relaxed) > 10);

    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let (pool, stop) = (pool.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut calls = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = pool.resize(if calls.is_multiple_of(2) { 2 } else { 1 });
                calls += 1;
            }
            calls
        })
    };
    // Let the flood build up, then watch the ticker for the rest of 2 s.
    std::thread::sleep(Duration::from_millis(500));
    let before = ticks.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1500));
    let during = ticks.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    let calls = flood.join().expect("flood thread");
    if during < 20 {
        // Its shard may take minutes to work off the flood: not joined (the test fails).
        std::mem::forget(node);
        panic!("the ticker ticked {during} times in 1.5 s of a flood of {calls} resizes");
    }
    // What the flood queued is worked off, and the pool still serves.
    let answered = support::within("the flood worked off", Duration::from_secs(30), {
        let node = node.handle();
        move || node.call(pool.pid().expect("pid"), (), T).wait().is_ok()
    });
    assert!(answered);
    node.stop();
}
