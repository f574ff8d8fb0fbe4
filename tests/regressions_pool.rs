//! Regressions found reviewing worker pools (`src/pool/`): each test failed before its fix.
//! Real nodes, real shard threads; bounded waits only.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pinion::{Actor, Context, ExitReason, Message, Node, Pid, Pool, PoolOptions, ProcessOptions, Reply, SpawnError};
use support::{CALL_TIMEOUT, Latch, lock, node, wait_until};

/// A worker that records the ids it handled; `Hold` waits for a latch permit first.
#[derive(Debug)]
enum Job {
    Hold(u64),
    /// Sends `Hold(id)` to its own pid (as a worker's timer or self-message would).
    ToSelf(u64),
    Panic,
}

#[derive(Default)]
struct Seen {
    done: Mutex<Vec<u64>>,
    starts: AtomicUsize,
}

struct W {
    latch: Arc<Latch>,
    seen: Arc<Seen>,
}

impl Actor for W {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<Job>() {
            Ok(Job::Hold(id)) => {
                self.latch.acquire().await;
                lock(&self.seen.done).push(id);
            }
            Ok(Job::ToSelf(id)) => {
                ctx.send(ctx.pid(), Job::Hold(id)).expect("a worker sends to itself");
            }
            Ok(Job::Panic) => panic!("test worker panics on request"),
            Err(other) => panic!("unexpected message {other:?}"),
        }
        Ok(())
    }

    async fn handle_call(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        Ok(Reply::now(()))
    }
}

fn factory(latch: &Arc<Latch>, seen: &Arc<Seen>) -> impl Fn() -> W + Send + Sync + 'static {
    let (latch, seen) = (latch.clone(), seen.clone());
    move || {
        seen.starts.fetch_add(1, Ordering::SeqCst);
        W { latch: latch.clone(), seen: seen.clone() }
    }
}

fn start_pool<F>(node: &Node, name: &str, options: PoolOptions<F>) -> Result<Pid, SpawnError>
where
    F: Fn() -> W + Send + Sync + 'static,
{
    node.spawn_register(name, move || Pool::new(options), ProcessOptions::default()).wait()
}

fn done(seen: &Seen) -> Vec<u64> {
    let mut d = lock(&seen.done).clone();
    d.sort_unstable();
    d
}

/// A message sent straight to a worker's pid (by the worker itself, or by anyone who learned
/// its pid from `PoolInfo`) never took a pool slot: finishing it must not give one back. It
/// did: the gate's count went below zero (a debug assertion on the worker's shard; in a
/// release build a wrapped count that left the pool refusing everything).
#[test]
fn messages_sent_straight_to_a_worker_leave_the_pool_count_exact() {
    let node = node("regress-pool-direct", 1);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    latch.open();
    let pool = start_pool(&node, "direct", PoolOptions::new(1, 2, factory(&latch, &seen))).expect("pool");
    let h = node.handle();
    let r = h.pool(pool).expect("pool ref");
    let worker = r.info().workers[0].pid.expect("worker");

    // From outside, to the worker's pid; and from the worker to itself.
    h.send(worker, Job::Hold(1)).expect("direct send");
    h.send(pool, Job::ToSelf(2)).expect("through the pool");
    wait_until("both done", || done(&seen) == [1, 2]);
    wait_until("every slot given back", || r.info().held == 0);
    let info = r.info();
    assert_eq!((info.held, info.capacity), (0, 3), "{info:?}");

    // The pool still takes exactly its capacity.
    let results: Vec<_> = (10..13).map(|i| h.send(pool, Job::Hold(i)).is_ok()).collect();
    assert_eq!(results, [true, true, true]);
    wait_until("all done", || done(&seen).len() == 5);
    wait_until("every slot given back again", || r.info().held == 0);
    node.stop();
}

/// A worker that fails after it started but before its pool finished starting (the pool's
/// `init` still spawning the next worker) was neither replaced nor did it fail the pool's
/// start, as `PoolShared::started` documents: the pool started with the worker's cell dead for
/// good (no pid, its slots out of the capacity) and `resize` counting it as a worker.
#[test]
fn a_worker_failing_while_its_pool_starts_fails_the_start() {
    struct Slow {
        init: Option<Arc<Latch>>,
    }
    impl Actor for Slow {
        async fn init(&mut self, _: &mut Context) -> Result<(), ExitReason> {
            if let Some(latch) = &self.init {
                latch.acquire().await;
            }
            Ok(())
        }
        async fn handle_message(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> {
            panic!("test worker panics on request")
        }
    }
    let node = node("regress-pool-start-fail", 1);
    let (init_latch, starts) = (Latch::new(), Arc::new(AtomicUsize::new(0)));
    let f = {
        let (init_latch, starts) = (init_latch.clone(), starts.clone());
        // The second worker waits in `init` until the test lets it finish.
        move || Slow { init: (starts.fetch_add(1, Ordering::SeqCst) == 1).then(|| init_latch.clone()) }
    };
    let spawn =
        node.spawn_register("starting", move || Pool::new(PoolOptions::new(2, 2, f)), ProcessOptions::default());
    let waiter = std::thread::spawn(move || spawn.wait());
    wait_until("the second worker in its init", || starts.load(Ordering::SeqCst) == 2);
    // The first worker (the scan's first choice) takes it and ends.
    node.send("starting", Job::Panic).expect("the first worker has room");
    let h = node.handle();
    wait_until("the first worker ended", || h.pool("starting").unwrap().info().workers.len() == 1);
    init_latch.open();
    let started = waiter.join().expect("spawn waiter");
    match started {
        Err(SpawnError::InitFailed(reason)) => {
            assert!(reason.to_string().contains("before the pool started"), "{reason}")
        }
        Ok(pool) => {
            let info = h.pool(pool).unwrap().info();
            panic!("the pool started with a dead worker: {info:?}");
        }
        Err(e) => panic!("unexpected {e:?}"),
    }
    wait_until("its workers stopped", || node.handle().whereis("starting").is_none());
    assert_eq!(starts.load(Ordering::SeqCst), 2, "nothing restarted");
    node.stop();
}

/// A call that reached the pool's manager before its `init` made the pid address the pool is
/// handed on by the manager; when the pool had no room, its responder was silenced
/// (`route::refuse` defuses it: the caller is assumed to report the error itself) and the
/// caller waited for its timeout instead of hearing `MailboxFull` at once.
#[test]
fn a_call_queued_before_the_pool_started_and_refused_is_answered() {
    /// Fills the pool from its own `init` (the pool is attached by then): one slot, held.
    struct Filler {
        latch: Arc<Latch>,
    }
    impl Actor for Filler {
        async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
            ctx.send("early", Job::Hold(0)).expect("room for one");
            Ok(())
        }
        async fn handle_message(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> {
            self.latch.acquire().await;
            Ok(())
        }
    }
    /// Starts the pool on its own shard (synchronously) and calls it at once, before the
    /// pool's `init` ran; reports the call's outcome.
    struct Caller {
        latch: Arc<Latch>,
        report: std::sync::mpsc::Sender<Result<Message, pinion::CallError>>,
    }
    impl Actor for Caller {
        async fn handle_message(&mut self, ctx: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> {
            let latch = self.latch.clone();
            let f = move || Filler { latch: latch.clone() };
            let spawn = ctx.handle().spawn_register(
                "early",
                move || Pool::new(PoolOptions::new(1, 0, f)),
                ProcessOptions::default(),
            );
            drop(spawn);
            let r = ctx.call("early", 7u64, Duration::from_secs(3)).await;
            let _ = self.report.send(r);
            Ok(())
        }
    }
    let node = node("regress-pool-early-call", 1);
    let latch = Latch::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let l = latch.clone();
    let caller =
        node.spawn(move || Caller { latch: l.clone(), report: tx }, ProcessOptions::default()).wait().expect("caller");
    node.send(caller, ()).expect("go");
    let r = rx.recv_timeout(CALL_TIMEOUT).expect("the caller reports");
    assert!(matches!(r, Err(pinion::CallError::MailboxFull)), "{r:?}");
    latch.open();
    node.stop();
}

/// A worker retired by `resize` that ends (here: fails) while the retire marker is still on
/// its way to it: the marker reached the dead slot and was handed back to the pool like any
/// message in flight (`dispatch::redirect`), so it retired *another* worker — which the pool
/// then replaced as if it had failed (a restart counted against the intensity).
#[test]
fn a_retire_marker_for_a_worker_that_ended_retires_no_other_worker() {
    enum Step {
        /// Blocks its shard's thread until told, then fails.
        BlockThenFail(std::sync::mpsc::Receiver<()>, Arc<AtomicUsize>),
    }
    struct B;
    impl Actor for B {
        async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
            match msg.downcast::<Step>() {
                Ok(Step::BlockThenFail(rx, began)) => {
                    began.fetch_add(1, Ordering::SeqCst);
                    let _ = rx.recv_timeout(CALL_TIMEOUT);
                    Err(ExitReason::custom("fails while retiring"))
                }
                Err(_) => Ok(()),
            }
        }
        async fn handle_call(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
            Ok(Reply::now(()))
        }
    }
    let node = node("regress-pool-stray-retire", 2);
    let options = PoolOptions::new(2, 2, || B).placement(pinion::Placement::Shards(vec![pinion::ShardId(1)]));
    let pool =
        node.spawn_register("stray", move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let h = node.handle();
    let r = h.pool(pool).unwrap();
    let info = r.info();
    let (first, second) = (info.workers[0].pid.unwrap(), info.workers[1].pid.unwrap());

    // The newest worker blocks its shard; meanwhile it is retired (the marker waits in the
    // shard's inbox), then it fails before the marker is delivered.
    let (tx, rx) = std::sync::mpsc::channel();
    let began = Arc::new(AtomicUsize::new(0));
    h.send(second, Step::BlockThenFail(rx, began.clone())).expect("to the worker");
    wait_until("the worker blocks its shard", || began.load(Ordering::SeqCst) == 1);
    r.resize(1).expect("shrink");
    tx.send(()).expect("let it fail");

    // Sent after the marker, on the same lane: once answered, the marker was handled.
    h.call_blocking(pool, (), CALL_TIMEOUT).expect("the pool answers");
    wait_until("every slot given back", || r.info().held == 0);
    let info = r.info();
    assert_eq!(info.workers.len(), 1, "{info:?}");
    assert_eq!((info.workers[0].pid, info.workers[0].restarts), (Some(first), 0), "{info:?}");
    node.stop();
}

/// The pool's count (`gate`) holds `size × (mailbox + 1)` in 32 bits; each worker's bound was
/// checked, the sum was not: two workers of mailbox 2^31 made a pool of capacity 2 (the sum
/// wrapped out of its word), and a resize past the limit did the same.
#[test]
fn a_pool_whose_capacity_does_not_fit_its_count_is_refused() {
    let node = node("regress-pool-huge", 1);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    latch.open();
    let huge = 1usize << 31;
    let r = start_pool(&node, "huge", PoolOptions::new(2, huge, factory(&latch, &seen)));
    match r {
        Err(SpawnError::InitFailed(reason)) => assert!(reason.to_string().contains("too large"), "{reason}"),
        Ok(pool) => panic!("started: {:?}", node.handle().pool(pool).unwrap().info()),
        Err(e) => panic!("unexpected {e:?}"),
    }
    let pool = start_pool(&node, "big", PoolOptions::new(1, huge, factory(&latch, &seen))).expect("one fits");
    let r = node.handle().pool(pool).unwrap();
    assert_eq!(r.info().capacity, (huge + 1) as u32);
    assert_eq!(r.resize(2), Err(pinion::PoolError::MailboxTooLarge(huge)));
    assert_eq!(r.info().capacity, (huge + 1) as u32, "{:?}", r.info());
    node.stop();
}

#[test]
fn workers_added_by_resize_that_fail_to_start_leave_the_pools_size() {
    let node = node("regr-pool-resize-fail", 2);
    let starts = Arc::new(AtomicUsize::new(0));
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    let f = {
        let (starts, latch, seen) = (starts.clone(), latch.clone(), seen.clone());
        move || {
            assert!(starts.fetch_add(1, Ordering::SeqCst) < 2, "no more workers today");
            W { latch: latch.clone(), seen: seen.clone() }
        }
    };
    let pool = node.spawn_register("no-grow", move || Pool::new(PoolOptions::new(2, 3, f)), ProcessOptions::default());
    let pool = pool.wait().expect("pool");
    let r = node.handle().pool(pool).expect("pool ref");
    r.resize(4).expect("the request to grow is accepted");
    wait_until("the failed starts leave the size", || r.info().size == 2);
    let info = r.info();
    assert_eq!(info.capacity, 8, "{info:?}");
    assert_eq!(info.workers.iter().map(|w| w.restarts).sum::<u64>(), 0);
    // Shrinking to 1 retires a real worker (the failed ones no longer count).
    r.resize(1).expect("shrink");
    wait_until("one left", || r.info().size == 1 && r.info().capacity == 4);
    latch.open();
    node.stop();
}

/// A worker retired by `resize` ended as soon as its queue was empty, while messages its pool
/// had accepted for it were still on their way (sent from another thread): each then reached
/// a closed slot and was admitted again (`dispatch::redirect`) and, the pool being full by
/// then, dropped although its `send` had returned `Ok`. Found by a review flooding a pool
/// while resizing it (4 to 11 of a million messages lost per 3 s).
#[test]
fn resizing_a_flooded_pool_loses_no_accepted_message() {
    flood_while_workers_end("regress-pool-resize-flood", End::Resize);
}

/// How `flood_while_workers_end` ends workers.
#[derive(Clone, Copy, PartialEq)]
enum End {
    /// Resizes the pool to 1 and back to 4 (the retired workers end once idle).
    Resize,
    /// A message that makes the worker that takes it panic.
    Crash,
    /// A kill signal to a worker, which handles each message without awaiting.
    Kill,
    /// A kill signal to a worker that yields in the middle of each message (a kill can find
    /// one in hand).
    KillMidMessage,
}

#[derive(Debug)]
enum Flood {
    Count,
    Crash,
}

/// Counts each message when its handler starts and when it ends.
struct Counting {
    started: Arc<AtomicUsize>,
    handled: Arc<AtomicUsize>,
    yields: bool,
}

impl Actor for Counting {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<Flood>() {
            Ok(Flood::Count) => {
                self.started.fetch_add(1, Ordering::SeqCst);
                if self.yields {
                    ctx.yield_now().await;
                }
                self.handled.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Ok(Flood::Crash) => panic!("test worker crashes on request"),
            Err(other) => panic!("unexpected message {other:?}"),
        }
    }
}

/// Two threads flood a pool of 4 × 4 with plain sends while its workers end, 300 times (and
/// are replaced, or, resized, retire and are added again). Every message whose `send` returned `Ok` must reach a handler exactly once:
/// nothing accepted is lost, nothing is delivered twice, and the pool's slots all come back.
fn flood_while_workers_end(name: &str, end: End) {
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    let node = node(name, 2);
    let (started, handled) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (s, h2, yields) = (started.clone(), handled.clone(), end == End::KillMidMessage);
    let mut options = PoolOptions::new(4, 4, move || Counting { started: s.clone(), handled: h2.clone(), yields });
    options.restart_intensity = 1_000_000;
    let pool = node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let h = node.handle();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..2)
        .map(|_| {
            let (h, stop) = (h.clone(), stop.clone());
            std::thread::spawn(move || {
                let (begun, mut accepted) = (Instant::now(), 0);
                while !stop.load(Ordering::SeqCst) && begun.elapsed() < CALL_TIMEOUT {
                    if h.send(pool, Flood::Count).is_ok() {
                        accepted += 1;
                    }
                }
                accepted
            })
        })
        .collect();
    let r = h.pool(pool).expect("a pool");
    let (mut ended, begun) = (0, Instant::now());
    let mut k = 0;
    while ended < 300 && begun.elapsed() < CALL_TIMEOUT / 2 {
        let ok = match end {
            End::Resize => {
                k += 1;
                r.resize(if k % 2 == 0 { 4 } else { 1 }).expect("resize");
                true
            }
            End::Crash => h.send(pool, Flood::Crash).is_ok(),
            End::Kill | End::KillMidMessage => {
                k += 1;
                let workers = r.info().workers;
                match workers.get(k % workers.len().max(1)).and_then(|w| w.pid) {
                    Some(w) => {
                        h.exit(w, ExitReason::Kill);
                        true
                    }
                    None => false,
                }
            }
        };
        ended += usize::from(ok);
        std::thread::sleep(Duration::from_millis(1));
    }
    stop.store(true, Ordering::SeqCst);
    let accepted: usize = senders.into_iter().map(|s| s.join().expect("a sender")).sum();
    let settled = Instant::now();
    let mut empty_since = None;
    while started.load(Ordering::SeqCst) < accepted && settled.elapsed() < support::WAIT_LIMIT {
        if r.info().held == 0 {
            let since = *empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_millis(500) {
                break;
            }
        } else {
            empty_since = None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(accepted > 0 && ended > 0);
    let info = r.info();
    assert!(!info.stopping, "the pool must still run: {info:?}");
    if end != End::Resize {
        assert!(info.workers.iter().map(|w| w.restarts).sum::<u64>() > 0, "workers were replaced: {info:?}");
    }
    assert_eq!(started.load(Ordering::SeqCst), accepted, "messages accepted and never handled ({ended} ends)");
    if end != End::KillMidMessage {
        assert_eq!(handled.load(Ordering::SeqCst), accepted, "a worker ends between messages");
    }
    wait_until("the pool gives back every slot", || r.info().held == 0);
    node.stop();
}

/// It failed before a replacement inherited its predecessor's messages (314 of 1.76 M lost in
/// 300 crashes): a worker that panicked while the pool was full had messages accepted for it
/// queued (its leftovers) and on their way from other threads; the other workers had no room
/// for them, so each was dropped although its `send` had returned `Ok` (counted as shed).
#[test]
fn a_crashing_worker_loses_no_accepted_message() {
    flood_while_workers_end("regress-pool-crash-flood", End::Crash);
}

/// The same with kills between messages: the worker's own batch goes back to its queue and
/// is inherited with it.
#[test]
fn a_killed_worker_loses_no_accepted_message() {
    flood_while_workers_end("regress-pool-kill-flood", End::Kill);
}

/// The same with kills that can find a message in hand: that one is gone with the worker (its
/// handler started), every other reaches a handler.
#[test]
fn a_worker_killed_mid_message_loses_nothing_else() {
    flood_while_workers_end("regress-pool-kill-mid-flood", End::KillMidMessage);
}
