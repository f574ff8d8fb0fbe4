//! Worker pools (`src/pool/`): exact backpressure with senders racing on every shard and thread,
//! placement, the sender's shard first, worker failure and replacement, the restart intensity,
//! resize without losing queued work, stop, and bad options. Real nodes, real shard threads.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pinion::{
    Actor, CallError, Context, ExitReason, Message, Node, Pid, Placement, Pool, PoolError, PoolOptions, Priority,
    ProcessOptions, Reply, SendError, ShardId, SpawnError,
};
use support::{CALL_TIMEOUT, Latch, lock, node, wait_until, watch};

/// What a test worker is asked to do.
#[derive(Debug)]
enum Job {
    /// Take a latch permit (the message stays in progress until then), then record the id.
    Hold(u64),
    /// Panic.
    Panic,
}

/// A call: answers (its pid, the caller) at once.
struct Where;

/// Shared by a pool's workers and the test.
#[derive(Default)]
struct Seen {
    done: Mutex<Vec<u64>>,
    starts: AtomicUsize,
    /// Held jobs whose handling began (the worker may be parked in them).
    begun: AtomicUsize,
}

impl Seen {
    fn done(&self) -> Vec<u64> {
        lock(&self.done).clone()
    }
}

struct W {
    latch: Arc<Latch>,
    seen: Arc<Seen>,
}

impl Actor for W {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<Job>() {
            Ok(Job::Hold(id)) => {
                self.seen.begun.fetch_add(1, Ordering::SeqCst);
                self.latch.acquire().await;
                lock(&self.seen.done).push(id);
            }
            Ok(Job::Panic) => panic!("test worker panics on request"),
            Err(other) => panic!("unexpected message {other:?}"),
        }
        Ok(())
    }

    async fn handle_call(&mut self, ctx: &mut Context, from: Pid, msg: Message) -> Result<Reply, ExitReason> {
        match msg.downcast::<Job>() {
            Ok(Job::Hold(id)) => {
                self.seen.begun.fetch_add(1, Ordering::SeqCst);
                self.latch.acquire().await;
                lock(&self.seen.done).push(id);
                Ok(Reply::now(id))
            }
            Ok(Job::Panic) => panic!("test worker panics in a call"),
            Err(msg) => {
                assert!(msg.is::<Where>());
                Ok(Reply::now((ctx.pid(), from)))
            }
        }
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

/// A process on `shard` that, on `Go(n)`, sends `n` held jobs to `to` (ids from `base`) and
/// reports how many were accepted and the ids refused with `MailboxFull` (the message came back).
struct Sender_ {
    to: String,
    report: Sender<(usize, Vec<u64>)>,
}

struct Go {
    n: u64,
    base: u64,
}

impl Actor for Sender_ {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        let Ok(go) = msg.downcast::<Go>() else { return Ok(()) };
        let (mut ok, mut refused) = (0, Vec::new());
        for id in go.base..go.base + go.n {
            match ctx.send(self.to.as_str(), Job::Hold(id)) {
                Ok(()) => ok += 1,
                Err(SendError::MailboxFull(Job::Hold(back))) => refused.push(back),
                Err(e) => panic!("send {id}: {e}"),
            }
        }
        let _ = self.report.send((ok, refused));
        Ok(())
    }
}

/// Sends from two processes (one per shard) and four outside threads at once, `per` each.
fn race_senders(node: &Node, pool: &str, per: u64) -> (usize, usize) {
    let (tx, rx) = mpsc::channel();
    let mut senders = Vec::new();
    for shard in 0..2u16 {
        let (to, report) = (pool.to_owned(), tx.clone());
        let pid = node
            .spawn_on(ShardId(shard), move || Sender_ { to, report }, ProcessOptions::default())
            .wait()
            .expect("sender");
        senders.push(pid);
    }
    let barrier = Arc::new(std::sync::Barrier::new(5));
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (h, pool, tx, barrier) = (node.handle(), pool.to_owned(), tx.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let (mut ok, mut refused) = (0, Vec::new());
                for id in (t + 2) * per..(t + 3) * per {
                    match h.send(pool.as_str(), Job::Hold(id)) {
                        Ok(()) => ok += 1,
                        Err(SendError::MailboxFull(Job::Hold(back))) => refused.push(back),
                        Err(e) => panic!("send {id}: {e}"),
                    }
                }
                let _ = tx.send((ok, refused));
            })
        })
        .collect();
    barrier.wait();
    for (i, pid) in senders.iter().enumerate() {
        node.send(*pid, Go { n: per, base: i as u64 * per }).expect("go");
    }
    let (mut ok, mut refused) = (0, Vec::new());
    for _ in 0..6 {
        let (o, r) = rx.recv_timeout(Duration::from_secs(30)).expect("a sender reports");
        ok += o;
        refused.extend(r);
    }
    for t in threads {
        t.join().expect("sender thread");
    }
    refused.sort_unstable();
    refused.dedup();
    (ok, refused.len())
}

#[test]
fn bound_is_exact_with_senders_racing_on_every_shard_and_thread() {
    let node = node("pool-exact", 2);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    // 4 workers × (3 queued + 1 in progress) = 16.
    start_pool(&node, "exact", PoolOptions::new(4, 3, factory(&latch, &seen))).expect("pool");
    let (ok, refused) = race_senders(&node, "exact", 10);
    assert_eq!(ok, 16, "accepted");
    assert_eq!(refused, 60 - 16, "refused, each with its message back");
    let info = node.handle().pool("exact").expect("pool ref").info();
    assert_eq!((info.capacity, info.held, info.size), (16, 16, 4), "{info:?}");
    assert!(info.workers.iter().all(|w| w.queued == 4), "every worker full: {info:?}");
    assert_eq!(info.shed, 44);

    latch.open();
    wait_until("all 16 finished", || seen.done().len() == 16);
    let pool = node.handle().pool("exact").expect("pool ref");
    wait_until("every slot given back", || pool.info().held == 0);
    let mut done = seen.done();
    done.sort_unstable();
    done.dedup();
    assert_eq!(done.len(), 16, "no message handled twice");
    node.stop();
}

#[test]
fn many_threads_against_a_large_pool_of_held_workers_get_exactly_its_capacity() {
    let node = node("pool-exact-many", 2);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    // 4 × (249 + 1) = 1000; 6 senders × 300 = 1800.
    start_pool(&node, "big", PoolOptions::new(4, 249, factory(&latch, &seen))).expect("pool");
    let (ok, refused) = race_senders(&node, "big", 300);
    assert_eq!((ok, refused), (1000, 800));
    latch.open();
    wait_until("all finished", || seen.done().len() == 1000);
    node.stop();
}

#[test]
fn a_pool_with_room_never_sheds_while_its_workers_run() {
    let node = node("pool-no-shed", 2);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    latch.open();
    // Capacity 4 × 501 = 2004 ≥ the 1800 sent: with slots moving between workers under the
    // senders' scans, nothing may be refused, and every slot must come back.
    start_pool(&node, "roomy", PoolOptions::new(4, 500, factory(&latch, &seen))).expect("pool");
    for _round in 0..3 {
        let before = seen.done().len();
        let (ok, refused) = race_senders(&node, "roomy", 300);
        assert_eq!((ok, refused), (1800, 0));
        wait_until("round finished", || seen.done().len() == before + 1800);
    }
    let pool = node.handle().pool("roomy").expect("pool ref");
    wait_until("every slot given back", || pool.info().held == 0);
    assert_eq!(pool.info().shed, 0);
    node.stop();
}

/// Calls the pool from a process on `shard`; returns (worker, caller seen by the worker, caller).
struct Asker {
    pool: Pid,
    report: Sender<(Pid, Pid, Pid)>,
}

impl Actor for Asker {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> {
        let answer = ctx.call(self.pool, Where, CALL_TIMEOUT).await.expect("call the pool");
        let (worker, from) = answer.downcast::<(Pid, Pid)>().expect("(Pid, Pid)");
        let _ = self.report.send((worker, from, ctx.pid()));
        Ok(())
    }
}

#[test]
fn send_and_call_by_name_or_pid_reach_a_worker_on_the_senders_shard_first() {
    let node = node("pool-nearest", 2);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    let pool = start_pool(&node, "near", PoolOptions::new(4, 8, factory(&latch, &seen))).expect("pool");
    let info = node.handle().pool(pool).expect("pool ref").info();
    assert_eq!(info.workers.iter().filter(|w| w.shard == ShardId(0)).count(), 2, "spread: {info:?}");
    assert_eq!(info.workers.iter().filter(|w| w.shard == ShardId(1)).count(), 2, "spread: {info:?}");

    let (tx, rx) = mpsc::channel();
    for shard in [0u16, 1, 1, 0] {
        let report = tx.clone();
        let asker = node
            .spawn_on(ShardId(shard), move || Asker { pool, report }, ProcessOptions::default())
            .wait()
            .expect("asker");
        node.send(asker, ()).expect("go");
        let (worker, from, caller) = rx.recv_timeout(CALL_TIMEOUT).expect("answer");
        assert_eq!(worker.shard(), ShardId(shard), "no hop: the worker is on the caller's shard");
        assert_eq!(from, caller, "the worker sees the real caller, not a pool actor");
        assert_ne!(worker, pool);
    }
    // By name, from outside the runtime.
    let answer = node.handle().call_blocking("near", Where, CALL_TIMEOUT).expect("call by name");
    let (worker, _) = answer.downcast::<(Pid, Pid)>().expect("(Pid, Pid)");
    assert!(info.workers.iter().any(|w| w.pid == Some(worker)));
    node.stop();
}

/// A pool of four on one shard, one worker holding a long message: every message sent
/// meanwhile goes to one of the three idle workers, round robin among them, from a process
/// of the shard and from outside alike. (Round robin over all four put every fourth behind
/// the held one: its call timed out.)
#[test]
fn a_message_goes_to_an_idle_worker_rather_than_behind_a_long_one() {
    let node = node("pool-idle-first", 1);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    let pool = start_pool(&node, "idle-first", PoolOptions::new(4, 8, factory(&latch, &seen))).expect("pool");
    node.send(pool, Job::Hold(1)).expect("the long message");
    wait_until("the long message in hand", || seen.begun.load(Ordering::SeqCst) == 1);

    let mut answered_by = std::collections::HashMap::<Pid, usize>::new();
    let (tx, rx) = mpsc::channel();
    let asker = node.spawn(move || Asker { pool, report: tx }, ProcessOptions::default()).wait().expect("asker");
    for i in 0..12 {
        let worker = if i % 2 == 0 {
            node.send(asker, ()).expect("go");
            rx.recv_timeout(CALL_TIMEOUT).expect("a call from the shard answered while a worker holds").0
        } else {
            let answer = node.handle().call_blocking("idle-first", Where, CALL_TIMEOUT);
            answer
                .expect("a call from outside answered while a worker holds")
                .downcast::<(Pid, Pid)>()
                .expect("(Pid, Pid)")
                .0
        };
        *answered_by.entry(worker).or_default() += 1;
    }
    assert_eq!(answered_by.len(), 3, "the idle workers, each in turn: {answered_by:?}");
    assert!(answered_by.values().all(|&n| n == 4), "round robin among the idle: {answered_by:?}");
    assert!(seen.done().is_empty(), "the long message is still in hand");
    latch.open();
    wait_until("the long message done", || seen.done() == [1]);
    node.stop();
}

#[test]
fn placement_on_chosen_shards_and_the_sender_still_served_from_there() {
    let node = node("pool-placement", 2);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    let options = PoolOptions::new(3, 2, factory(&latch, &seen)).placement(Placement::Shards(vec![ShardId(1)]));
    let pool = start_pool(&node, "pinned", options).expect("pool");
    let info = node.handle().pool(pool).expect("pool ref").info();
    assert!(info.workers.iter().all(|w| w.shard == ShardId(1) && w.pid.unwrap().shard() == ShardId(1)), "{info:?}");
    let (tx, rx) = mpsc::channel();
    let asker = node.spawn_on(ShardId(0), move || Asker { pool, report: tx }, ProcessOptions::default()).wait();
    node.send(asker.expect("asker"), ()).expect("go");
    let (worker, _, _) = rx.recv_timeout(CALL_TIMEOUT).expect("answer");
    assert_eq!(worker.shard(), ShardId(1));
    node.stop();
}

#[test]
fn bad_options_fail_the_spawn_with_a_clear_error() {
    let node = node("pool-bad", 2);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    let text = |r: Result<Pid, SpawnError>| match r {
        Err(SpawnError::InitFailed(reason)) => reason.to_string(),
        other => panic!("expected InitFailed, got {other:?}"),
    };
    let e = text(start_pool(&node, "zero", PoolOptions::new(0, 4, factory(&latch, &seen))));
    assert!(e.contains("at least one worker"), "{e}");
    let options = PoolOptions::new(2, 4, factory(&latch, &seen)).placement(Placement::Shards(vec![ShardId(7)]));
    let e = text(start_pool(&node, "far", options));
    assert!(e.contains("shard 7") || e.contains("shard#7") || e.contains('7'), "{e}");
    assert!(e.contains("2 shard"), "{e}");
    let options = PoolOptions::new(2, 4, factory(&latch, &seen)).placement(Placement::Shards(vec![]));
    let e = text(start_pool(&node, "nowhere", options));
    assert!(e.contains("placement lists no shard"), "{e}");
    let e = text(start_pool(&node, "huge", PoolOptions::new(1, usize::MAX, factory(&latch, &seen))));
    assert!(e.contains("too large"), "{e}");
    // A failed pool leaves its name free and no workers behind.
    assert!(node.handle().whereis("zero").is_none());
    assert_eq!(seen.starts.load(Ordering::SeqCst), 0);

    let always = || -> W { panic!("this factory always panics") };
    let r = node.spawn_register("doomed", move || Pool::new(PoolOptions::new(2, 1, always)), ProcessOptions::default());
    let e = text(r.wait());
    assert!(e.contains("failed to start") && e.contains("always panics"), "{e}");
    node.stop();
}

#[test]
fn mailbox_zero_means_only_the_message_in_progress() {
    let node = node("pool-mailbox-zero", 1);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    start_pool(&node, "tight", PoolOptions::new(3, 0, factory(&latch, &seen))).expect("pool");
    let results: Vec<_> = (0..5).map(|i| node.send("tight", Job::Hold(i)).is_ok()).collect();
    assert_eq!(results, [true, true, true, false, false]);
    assert_eq!(node.handle().pool("tight").unwrap().info().capacity, 3);
    latch.open();
    wait_until("three done", || seen.done().len() == 3);
    node.stop();
}

#[test]
fn a_panicking_worker_is_replaced_on_its_shard_and_its_queue_handed_on() {
    let node = node("pool-panic", 2);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    let options = PoolOptions::new(1, 8, factory(&latch, &seen)).placement(Placement::Shards(vec![ShardId(1)]));
    let pool = start_pool(&node, "fragile", options).expect("pool");
    let h = node.handle();
    let before = h.pool(pool).unwrap().info().workers[0].pid.expect("worker");

    // In progress: 1; queued: 2, 3, a call (4), and an urgent panic that overtakes them.
    // The pool's `held` counts a message from its send, not from when the worker takes it, so
    // wait for the worker to be parked in 1 (`begun`): if 1 and 2 were still in its mailbox
    // when the permit came, it would finish 1 and park in 2 before the panic arrived.
    h.send(pool, Job::Hold(1)).expect("1");
    wait_until("1 in progress", || seen.begun.load(Ordering::SeqCst) == 1);
    h.send(pool, Job::Hold(2)).expect("2");
    h.send(pool, Job::Hold(3)).expect("3");
    let call = h.call(pool, Job::Hold(4), CALL_TIMEOUT);
    wait_until("4 queued", || h.pool(pool).unwrap().info().held == 4);
    h.send_priority(pool, Job::Panic, Priority::Urgent).expect("panic");
    // An urgent message overtakes only what is already in the mailbox when it gets there: wait
    // until it is, or the worker could take 2 before the panic is delivered.
    wait_until("the panic queued ahead of 2, 3, 4", || {
        let worker = h.process_info(before).expect("the worker is parked in 1");
        (worker.urgent_queue, worker.main_queue) == (1, 3)
    });
    latch.release(1); // 1 finishes; the urgent panic comes next, with 2, 3, 4 still queued

    wait_until("replaced", || {
        let info = h.pool(pool).unwrap().info();
        info.workers[0].restarts == 1 && info.workers[0].pid.is_some_and(|p| p != before)
    });
    let info = h.pool(pool).unwrap().info();
    let after = info.workers[0].pid.unwrap();
    assert_eq!(after.shard(), ShardId(1), "replaced on the same shard");
    assert_eq!(info.capacity, 9, "the replacement's slots are back in the pool");
    latch.open();
    assert_eq!(
        futures_block(call).expect("the queued call is answered by the replacement").downcast::<u64>().ok(),
        Some(4)
    );
    wait_until("2, 3, 4 done", || seen.done().len() == 4);
    assert_eq!(seen.done(), [1, 2, 3, 4], "queued work kept, in order");
    assert_eq!(info.workers[0].shed, 0);
    wait_until("every slot given back", || h.pool(pool).unwrap().info().held == 0);

    // A panic in a call: the caller learns at once, the pool goes on.
    let r = h.call_blocking(pool, Job::Panic, CALL_TIMEOUT);
    assert!(matches!(r, Err(CallError::NoReply)), "{r:?}");
    // `restarts` counts the restart before the replacement is up: wait for its pid and its
    // slots too, or the next call can meet a pool with no capacity and be shed.
    wait_until("replaced again", || {
        let info = h.pool(pool).unwrap().info();
        let w = &info.workers[0];
        w.restarts == 2 && w.pid.is_some_and(|p| p != after) && info.capacity == 9
    });
    let r = h.call_blocking(pool, Job::Hold(5), CALL_TIMEOUT).expect("served after two panics");
    assert_eq!(r.downcast::<u64>().ok(), Some(5));
    node.stop();
}

fn futures_block(f: pinion::CallFuture) -> Result<Message, CallError> {
    f.wait()
}

#[test]
fn a_killed_worker_loses_only_its_message_in_progress() {
    let node = node("pool-kill", 2);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    let pool = start_pool(&node, "handoff", PoolOptions::new(2, 2, factory(&latch, &seen))).expect("pool");
    let h = node.handle();
    // Six calls fill both workers (2 × 3), each worker parked in its first one.
    let calls: Vec<_> = (0..6).map(|i| h.call(pool, Job::Hold(i), CALL_TIMEOUT)).collect();
    wait_until("full", || h.pool(pool).unwrap().info().held == 6);
    wait_until("both workers in a call", || seen.begun.load(Ordering::SeqCst) == 2);
    let victim = h.pool(pool).unwrap().info().workers[0].pid.unwrap();
    h.exit(victim, ExitReason::Kill);
    wait_until("victim replaced", || {
        let info = h.pool(pool).unwrap().info();
        info.workers[0].restarts == 1 && info.workers[0].pid.is_some_and(|p| p != victim)
    });
    latch.open();
    let results: Vec<_> = calls.into_iter().map(|c| c.wait()).collect();
    let served = results.iter().filter(|r| r.is_ok()).count();
    let lost = results.iter().filter(|r| matches!(r, Err(CallError::NoReply))).count();
    // The victim's message in progress is lost with it (its caller is told at once); its two
    // queued calls went to its replacement.
    assert_eq!((served, lost), (5, 1), "{results:?}");
    let info = h.pool(pool).unwrap().info();
    assert_eq!(info.workers.iter().map(|w| w.shed).sum::<u64>(), 0, "{info:?}");
    wait_until("every slot given back", || h.pool(pool).unwrap().info().held == 0);
    assert_eq!(h.pool(pool).unwrap().info().capacity, 6);
    node.stop();
}

/// Found by a user trial: six requests that made a worker panic within 5 s stopped the pool
/// for good (every later request 503). A panic with a message in hand is that message's
/// failure: the worker is replaced without counting toward the intensity.
#[test]
fn workers_panicking_on_messages_do_not_exhaust_the_restart_intensity() {
    let node = node("pool-panics-uncounted", 1);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    let mut options = PoolOptions::new(2, 4, factory(&latch, &seen));
    options.restart_intensity = 1;
    options.restart_period = Duration::from_secs(60);
    let pool = start_pool(&node, "panics-uncounted", options).expect("pool");
    let down = watch(&node, pool);
    let r = node.handle().pool(pool).expect("a pool ref");
    for i in 0..12 {
        node.send(pool, Job::Panic).expect("a panic is accepted");
        wait_until("the worker replaced", || seen.starts.load(Ordering::SeqCst) == 2 + i + 1);
    }
    latch.release(1);
    let got = node.handle().call_blocking(pool, Job::Hold(7), CALL_TIMEOUT).expect("served after twelve panics");
    assert_eq!(got.downcast::<u64>().ok(), Some(7));
    assert!(down.try_recv().is_err(), "the pool is still up");
    let info = r.info();
    assert_eq!(info.workers.iter().map(|w| w.restarts).sum::<u64>(), 12, "{info:?}");
    node.stop();
}

#[test]
fn a_factory_failing_on_every_restart_makes_the_pool_give_up_instead_of_spinning() {
    let node = node("pool-give-up", 2);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    let starts = Arc::new(AtomicUsize::new(0));
    let f = {
        let (latch, seen, starts) = (latch.clone(), seen.clone(), starts.clone());
        move || {
            assert!(starts.fetch_add(1, Ordering::SeqCst) < 3, "the database is gone");
            W { latch: latch.clone(), seen: seen.clone() }
        }
    };
    let options = PoolOptions { restart_intensity: 4, ..PoolOptions::new(3, 2, f) };
    let pool = start_pool(&node, "doomed", options).expect("pool");
    let down = watch(&node, pool);
    let workers: Vec<Pid> = node.handle().pool(pool).unwrap().info().workers.iter().filter_map(|w| w.pid).collect();
    node.send(pool, Job::Panic).expect("crash one");
    let reason = down.recv_timeout(CALL_TIMEOUT).expect("the pool ends");
    assert!(reason.to_string().contains("pool gave up"), "{reason}");
    // The first replacement is not counted (the crash was a message's: see the next test);
    // its start fails, and so does each start after it: 4 of those allowed, then it gives up.
    assert_eq!(starts.load(Ordering::SeqCst), 3 + 1 + 4, "4 counted restarts allowed, then the pool gives up");
    for w in workers {
        wait_until("workers stopped", || node.handle().process_info(w).is_err());
    }
    assert!(matches!(node.send(pool, Job::Hold(1)), Err(SendError::NoSuchProcess(_))));
    assert!(node.handle().whereis("doomed").is_none());
    node.stop();
}

#[test]
fn resize_grows_and_shrinks_without_losing_queued_work() {
    let node = node("pool-resize", 2);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    let pool = start_pool(&node, "elastic", PoolOptions::new(4, 10, factory(&latch, &seen))).expect("pool");
    let h = node.handle();
    let r = h.pool(pool).expect("pool ref");
    for id in 0..40 {
        h.send(pool, Job::Hold(id)).expect("room for 44");
    }
    assert_eq!(r.info().held, 40);
    r.resize(1).expect("shrink");
    let info = r.info();
    assert_eq!(info.capacity, 11, "only the remaining worker's slots: {info:?}");
    assert!(h.send(pool, Job::Hold(99)).is_err(), "no room until the retiring workers drain");
    latch.open();
    wait_until("all 40 done", || seen.done().len() == 40);
    wait_until("retired workers gone", || r.info().size == 1);
    wait_until("every slot given back", || r.info().held == 0);
    let mut done = seen.done();
    done.sort_unstable();
    assert_eq!(done, (0..40).collect::<Vec<_>>(), "nothing queued was lost");

    r.resize(5).expect("grow");
    wait_until("grown", || r.info().capacity == 55);
    let info = r.info();
    assert_eq!(info.size, 5);
    assert_eq!(info.workers.iter().filter(|w| w.shard == ShardId(1)).count(), 2, "{info:?}");
    for id in 100..155 {
        h.send(pool, Job::Hold(id)).expect("room for 55");
    }
    wait_until("all done", || seen.done().len() == 95);
    assert_eq!(r.resize(0), Err(PoolError::ZeroSize));
    node.stop();
}

/// A retiring worker takes no new messages, those addressed to its pid included: once the
/// resize reached it, a direct send is refused with `MailboxFull` (the message comes back), so
/// direct sends cannot put off its end. (They were accepted before, each one keeping it alive
/// a little longer.)
#[test]
fn a_retiring_worker_refuses_sends_addressed_to_it() {
    let node = node("pool-retire-direct", 1);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    let pool = start_pool(&node, "shrinking", PoolOptions::new(2, 4, factory(&latch, &seen))).expect("pool");
    let h = node.handle();
    let r = h.pool(pool).expect("pool ref");
    let info = r.info();
    // `resize` retires the newest worker of the shard.
    let (keep, leaving) = (info.workers[0].pid.expect("up"), info.workers[1].pid.expect("up"));
    h.send(leaving, Job::Hold(1)).expect("room");
    wait_until("the held job begun", || seen.begun.load(Ordering::SeqCst) == 1);
    r.resize(1).expect("shrink");
    // The retire signal left this thread before this call, in the same lane: answered, the
    // signal has reached the shard.
    let answer = h.call_blocking(keep, Where, Duration::from_secs(10)).expect("the kept worker answers");
    assert_eq!(answer.downcast::<(Pid, Pid)>().expect("(pid, from)").0, keep);
    match h.send(leaving, Job::Hold(2)) {
        Err(SendError::MailboxFull(Job::Hold(2))) => {}
        other => panic!("a direct send to a retiring worker: {other:?}"),
    }
    assert!(matches!(h.call_blocking(leaving, Where, Duration::from_secs(10)), Err(CallError::MailboxFull)));
    h.send(keep, Job::Hold(3)).expect("the kept worker takes direct sends");
    latch.open();
    wait_until("the retired worker gone", || r.info().size == 1);
    wait_until("both jobs done", || seen.done().len() == 2);
    let mut done = seen.done();
    done.sort_unstable();
    assert_eq!(done, [1, 3]);
    assert!(matches!(h.send(leaving, Job::Hold(4)), Err(SendError::NoSuchProcess(_))));
    wait_until("every slot given back", || r.info().held == 0);
    node.stop();
}

#[test]
fn a_stopped_pool_stops_its_workers_answers_their_queues_and_refuses_sends() {
    let node = node("pool-stop", 2);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    let pool = start_pool(&node, "brief", PoolOptions::new(2, 3, factory(&latch, &seen))).expect("pool");
    let h = node.handle();
    let r = h.pool(pool).unwrap();
    let workers: Vec<Pid> = r.info().workers.iter().filter_map(|w| w.pid).collect();
    let calls: Vec<_> = (0..8).map(|i| h.call(pool, Job::Hold(i), CALL_TIMEOUT)).collect();
    wait_until("full", || r.info().held == 8);
    wait_until("both workers in a call", || seen.begun.load(Ordering::SeqCst) == 2);
    h.exit(pool, ExitReason::Shutdown);
    wait_until("stopping", || r.info().stopping);
    // The manager waits for its workers (each is still in its message): the pool is
    // reachable and refuses with `Stopped`.
    assert!(matches!(h.send(pool, Job::Hold(99)), Err(SendError::Stopped(Job::Hold(99)))));
    assert!(matches!(h.call_blocking("brief", Where, CALL_TIMEOUT), Err(CallError::Stopped)));
    // Each worker finishes the message in progress, then stops before its queue.
    latch.open();
    for w in &workers {
        wait_until("workers stopped", || h.process_info(*w).is_err());
    }
    let results: Vec<_> = calls.into_iter().map(|c| c.wait()).collect();
    let served = results.iter().filter(|r| r.is_ok()).count();
    let stopped = results.iter().filter(|r| matches!(r, Err(CallError::Stopped))).count();
    assert_eq!((served, stopped), (2, 6), "queued calls are told the pool stopped: {results:?}");
    wait_until("the manager ended after its workers", || h.process_info(pool).is_err());
    assert!(matches!(h.send(pool, Job::Hold(1)), Err(SendError::NoSuchProcess(_))));
    assert!(matches!(h.send("brief", Job::Hold(1)), Err(SendError::UnknownName(_))));
    assert_eq!(r.resize(4), Err(PoolError::Stopping));
    node.stop();
}

#[test]
fn not_a_pool_is_reported() {
    let node = node("pool-not", 1);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    let plain = node.spawn(factory(&latch, &seen), ProcessOptions::default()).wait().expect("plain");
    assert_eq!(node.handle().pool(plain).err(), Some(PoolError::NotAPool));
    assert_eq!(node.handle().pool("nobody").err(), Some(PoolError::NotAPool));
    node.stop();
}

#[test]
fn messages_on_their_way_to_a_worker_that_ends_go_back_to_the_pool() {
    // Calls from outside the runtime travel through the shard's inbox; a worker killed while
    // some are on their way must not turn them into `NoSuchProcess`: they belong to the pool.
    let node = node("pool-in-flight", 2);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    latch.open();
    let options = PoolOptions { restart_intensity: 10_000, ..PoolOptions::new(2, 64, factory(&latch, &seen)) }
        .placement(Placement::Shards(vec![ShardId(1)]));
    let pool = start_pool(&node, "flight", options).expect("pool");
    let h = node.handle();
    let mut outcomes = std::collections::HashMap::<String, usize>::new();
    for round in 0..200 {
        let victim = h.pool(pool).unwrap().info().workers[round % 2].pid;
        let mut calls: Vec<_> = (0..50).map(|_| h.call(pool, Where, CALL_TIMEOUT)).collect();
        if let Some(victim) = victim {
            h.exit(victim, ExitReason::Kill);
        }
        calls.extend((0..50).map(|_| h.call(pool, Where, CALL_TIMEOUT)));
        for c in calls {
            let key = match c.wait() {
                Ok(_) => "ok".to_owned(),
                Err(e) => format!("{e:?}"),
            };
            *outcomes.entry(key).or_default() += 1;
        }
    }
    assert!(!outcomes.contains_key("NoSuchProcess"), "{outcomes:?}");
    assert!(outcomes.keys().all(|k| ["ok", "MailboxFull", "NoReply"].contains(&k.as_str())), "{outcomes:?}");
    assert!(outcomes["ok"] > 15_000, "{outcomes:?}");
    wait_until("every slot given back", || h.pool(pool).unwrap().info().held == 0);
    node.stop();
}

#[test]
fn a_killed_pool_stops_its_workers_without_replacing_them() {
    let node = node("pool-killed", 2);
    let (latch, seen) = (Latch::new(), Arc::new(Seen::default()));
    let pool = start_pool(&node, "victim", PoolOptions::new(4, 2, factory(&latch, &seen))).expect("pool");
    let h = node.handle();
    let r = h.pool(pool).unwrap();
    let workers: Vec<Pid> = r.info().workers.iter().filter_map(|w| w.pid).collect();
    h.exit(pool, ExitReason::Kill); // no `terminate`
    for w in &workers {
        wait_until("workers stopped", || h.process_info(*w).is_err());
    }
    let info = r.info();
    assert!(info.stopping);
    assert_eq!(info.workers.iter().map(|w| w.restarts).sum::<u64>(), 0, "{info:?}");
    assert_eq!(seen.starts.load(Ordering::SeqCst), 4, "no replacement was started");
    node.stop();
}

#[test]
fn a_worker_whose_init_fails_fails_the_pools_start_without_restart_loops() {
    struct BadInit(Arc<AtomicUsize>);
    impl Actor for BadInit {
        async fn init(&mut self, _: &mut Context) -> Result<(), ExitReason> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Err(ExitReason::custom("no database"))
        }
    }
    let node = node("pool-bad-init", 1);
    let inits = Arc::new(AtomicUsize::new(0));
    let f = {
        let inits = inits.clone();
        move || BadInit(inits.clone())
    };
    let r = node.spawn_register("bad", move || Pool::new(PoolOptions::new(3, 1, f)), ProcessOptions::default()).wait();
    let Err(SpawnError::InitFailed(reason)) = r else { panic!("expected InitFailed, got {r:?}") };
    assert!(reason.to_string().contains("no database"), "{reason}");
    assert_eq!(inits.load(Ordering::SeqCst), 1, "the first failure fails the start; nothing is retried");
    node.stop();
}
