//! Review 72: messages the runtime lost, or answered without giving back — `try_call`'s
//! refusals before any send (a zero timeout, a process calling itself), a pool's worker that
//! failed to start under `resize`, a resize flood from a plain thread. Nodes of 1 or 2
//! unpinned shards; every wait is bounded (a hang fails).

mod review_support;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use pinion::{
    Actor, CallError, Context, ExitReason, Message, Pid, Pool, PoolOptions, ProcessOptions, Reply, SendError, ShardId,
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
