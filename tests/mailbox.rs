//! Bounded mailboxes on real shards: the exact bound (also with senders racing on every shard
//! and from plain threads), what the bound counts, the system and urgent lanes, per-pair FIFO
//! under concurrency, stale pids after slot reuse, and the send errors.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use pinion::{
    Actor, CallError, Context, Down, ExitReason, Message, Pid, Priority, ProcessOptions, Reply, SendError, ShardId,
    SpawnError,
};
use support::{
    CALL_TIMEOUT, Counter, Event, Gate, Latch, Probe, Query, Relay, Sequences, lock, node, pid_parts, query, send_from,
    wait_until,
};

/// The reserved count of `pid`'s mailbox, through `process_info`.
fn reserved(node: &pinion::NodeHandle, pid: Pid) -> u32 {
    node.process_info(pid).expect("process_info").reserved
}

fn spawn_gate(node: &pinion::NodeHandle, shard: ShardId, gate: Gate, mailbox: usize) -> Pid {
    node.spawn_on(shard, move || gate, ProcessOptions::with_mailbox(mailbox)).wait().expect("spawn gate")
}

fn mailbox(n: usize) -> ProcessOptions {
    ProcessOptions::with_mailbox(n)
}

fn processed(node: &pinion::NodeHandle, pid: Pid) -> u64 {
    node.process_info(pid).expect("process_info").processed
}

#[test]
fn mailbox_of_n_with_blocked_receiver_accepts_exactly_n_and_hands_back_the_next() {
    const N: u64 = 8;
    let node = node("mailbox_exact_bound", 1);
    let (latch, probe) = (Latch::new(), Probe::new());
    let gate = spawn_gate(&node, ShardId(0), Gate::new(&latch, &probe), N as usize);

    for i in 0..N {
        assert!(node.send(gate, i).is_ok(), "send {i} of {N} must fit");
    }
    match node.send(gate, 1_000u64) {
        Err(SendError::MailboxFull(m)) => assert_eq!(m, 1_000, "the refused message comes back unchanged"),
        other => panic!("send N+1 must answer MailboxFull, got {other:?}"),
    }
    // Still full on a second try, and from a process on the shard too.
    let relay = node.spawn(|| Relay, ProcessOptions::default()).wait().expect("spawn relay");
    match send_from(&node, relay, gate, 1_001) {
        Err(SendError::MailboxFull(m)) => assert_eq!(m, 1_001),
        other => panic!("a process's send N+1 must answer MailboxFull, got {other:?}"),
    }
    assert_eq!(reserved(&node, gate), N as u32);

    // The receiver finishes exactly one message: exactly one more fits.
    wait_until("the gate started its first message", || probe.started() == 1);
    latch.release(1);
    wait_until("the gate finished one message", || processed(&node, gate) == 1);
    assert!(node.send(gate, N).is_ok(), "one finished message frees exactly one place");
    assert!(matches!(node.send(gate, 2_000u64), Err(SendError::MailboxFull(2_000))));

    // Everything accepted is handled, in order; nothing refused is.
    latch.open();
    wait_until("the gate finished every accepted message", || processed(&node, gate) == N + 1);
    assert_eq!(probe.messages(), (0..=N).collect::<Vec<_>>());
    assert_eq!(reserved(&node, gate), 0);
    node.stop();
}

#[test]
fn mailbox_capacity_counts_queued_plus_the_message_in_progress() {
    // The bound is on messages *accepted and not finished*: with a mailbox of 3 and one message
    // being handled, only 2 more can wait in the queue. The reservation of a message is given
    // back when its handler returns, not when it is dequeued.
    let node = node("mailbox_counts_in_progress", 1);
    let (latch, probe) = (Latch::new(), Probe::new());
    let gate = spawn_gate(&node, ShardId(0), Gate::new(&latch, &probe), 3);

    node.send(gate, 1u64).expect("first send");
    wait_until("the gate is handling message 1", || probe.started() == 1);
    let info = node.process_info(gate).expect("process_info");
    assert_eq!((info.main_queue, info.reserved), (0, 1), "dequeued but in progress: still reserved");

    node.send(gate, 2u64).expect("second send");
    node.send(gate, 3u64).expect("third send");
    let info = node.process_info(gate).expect("process_info");
    assert_eq!((info.main_queue, info.reserved, info.mailbox), (2, 3, 3), "2 queued + 1 in progress = 3");
    assert!(matches!(node.send(gate, 4u64), Err(SendError::MailboxFull(4))), "queue holds only N-1 now");

    latch.open();
    wait_until("all three finished", || processed(&node, gate) == 3);
    let info = node.process_info(gate).expect("process_info");
    assert_eq!((info.main_queue, info.reserved, info.processed), (0, 0, 3));
    node.stop();
}

/// A sender process for the race: on `Start` it waits for the starting gun, then tries `count`
/// sends of `base + i` to `target` and reports the outcome.
struct Racer {
    go: Arc<Latch>,
    target: Pid,
    base: u64,
    count: u64,
    tally: Arc<RaceTally>,
}

struct Start;

#[derive(Default)]
struct RaceTally {
    accepted: Mutex<Vec<u64>>,
    full: AtomicUsize,
    /// A `MailboxFull` that handed back another message than the one sent.
    mismatched: AtomicUsize,
    /// Any other error.
    other: AtomicUsize,
    done: AtomicUsize,
}

impl RaceTally {
    fn record(&self, value: u64, result: Result<(), SendError<u64>>) {
        match result {
            Ok(()) => lock(&self.accepted).push(value),
            Err(SendError::MailboxFull(m)) if m == value => {
                self.full.fetch_add(1, Ordering::SeqCst);
            }
            Err(SendError::MailboxFull(_)) => {
                self.mismatched.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {
                self.other.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

impl Actor for Racer {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if msg.is::<Start>() {
            self.go.acquire().await;
            for i in 0..self.count {
                let value = self.base + i;
                self.tally.record(value, ctx.send(self.target, value));
            }
            self.tally.done.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[test]
fn mailbox_bound_with_senders_racing_on_every_shard_and_thread_is_exact() {
    const N: usize = 48;
    const ROUNDS: u64 = 4;
    const PROCESSES_PER_SHARD: u64 = 2;
    const THREADS: u64 = 2;
    const ATTEMPTS: u64 = 40;
    let node = node("mailbox_racing_exact_bound", 2);
    let senders = 2 * PROCESSES_PER_SHARD + THREADS;

    for round in 0..ROUNDS {
        let (latch, probe) = (Latch::new(), Probe::new());
        let receiver_shard = ShardId((round % 2) as u16);
        let gate = spawn_gate(&node, receiver_shard, Gate::new(&latch, &probe), N);
        let go = Latch::new();
        let tally = Arc::new(RaceTally::default());

        let mut id = 0u64;
        let mut racers = Vec::new();
        for shard in 0..2u16 {
            for _ in 0..PROCESSES_PER_SHARD {
                let (go, tally) = (go.clone(), tally.clone());
                let base = (round << 40) | (id << 20);
                id += 1;
                let racer = move || Racer { go, target: gate, base, count: ATTEMPTS, tally };
                racers.push(node.spawn_on(ShardId(shard), racer, ProcessOptions::default()).wait().expect("racer"));
            }
        }
        for racer in &racers {
            node.send(*racer, Start).expect("start racer");
        }
        let barrier = Arc::new(Barrier::new(THREADS as usize + 1));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let (handle, tally, barrier) = (node.handle(), tally.clone(), barrier.clone());
                let base = (round << 40) | (id << 20);
                id += 1;
                std::thread::spawn(move || {
                    barrier.wait();
                    for i in 0..ATTEMPTS {
                        tally.record(base + i, handle.send(gate, base + i));
                    }
                    tally.done.fetch_add(1, Ordering::SeqCst);
                })
            })
            .collect();

        // Starting gun: the processes wake (cross-thread wake-ups) as the threads leave the barrier.
        go.open();
        barrier.wait();
        for t in threads {
            t.join().expect("sender thread");
        }
        wait_until("every racer finished", || tally.done.load(Ordering::SeqCst) == senders as usize);

        let mut accepted = lock(&tally.accepted).clone();
        let attempts = (senders * ATTEMPTS) as usize;
        assert_eq!(accepted.len(), N, "round {round}: exactly N sends accepted");
        assert_eq!(tally.full.load(Ordering::SeqCst), attempts - N, "round {round}: all others MailboxFull");
        assert_eq!(
            tally.mismatched.load(Ordering::SeqCst),
            0,
            "round {round}: MailboxFull hands back the same message"
        );
        assert_eq!(tally.other.load(Ordering::SeqCst), 0, "round {round}: no other error");
        let info = node.process_info(gate).expect("process_info");
        assert_eq!(info.reserved as usize, N);
        assert_eq!(info.main_queue + probe.started(), N, "queued + in progress = N");

        // Every accepted message is handled once; nothing else is.
        latch.open();
        wait_until("the gate finished every accepted message", || processed(&node, gate) == N as u64);
        let mut handled = probe.messages();
        accepted.sort_unstable();
        handled.sort_unstable();
        assert_eq!(handled, accepted, "round {round}: the gate handled exactly the accepted messages");
        node.exit(gate, ExitReason::Kill);
        for racer in racers {
            node.exit(racer, ExitReason::Kill);
        }
    }
    node.stop();
}

#[test]
fn mailbox_full_watcher_still_gets_down_before_its_queued_messages() {
    let node = node("mailbox_full_watcher_gets_down", 2);
    let target = node.spawn_on(ShardId(1), Counter::default, ProcessOptions::default()).wait().expect("target");
    let (latch, probe) = (Latch::new(), Probe::new());
    let watcher = spawn_gate(&node, ShardId(0), Gate::new(&latch, &probe).monitoring(target), 2);
    wait_until("the monitor is set", || node.process_info(target).expect("info").monitors == 1);

    node.send(watcher, 1u64).expect("send 1");
    node.send(watcher, 2u64).expect("send 2");
    assert!(node.send(watcher, 3u64).expect_err("full").is_full());
    wait_until("the watcher is handling message 1", || probe.started() == 1);

    assert!(query::<bool>(&node, target, Query::Stop));
    wait_until("the Down waits in the full watcher's system lane", || {
        node.process_info(watcher).expect("info").system_queue == 1
    });
    assert!(node.send(watcher, 4u64).expect_err("still full").is_full(), "the Down takes no place in the bound");

    latch.open();
    wait_until("the watcher finished both messages", || processed(&node, watcher) == 2);
    let events = probe.events();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[0], Event::Msg(1));
    assert!(
        matches!(&events[1], Event::Down(Down { pid, reason: ExitReason::Normal, .. }) if *pid == target),
        "system lane first: the Down comes before the queued message 2: {events:?}"
    );
    assert_eq!(events[2], Event::Msg(2));
    node.stop();
}

#[test]
fn mailbox_full_process_still_gets_exit_signal_before_its_queued_messages() {
    let node = node("mailbox_full_gets_exit", 2);
    let (latch, probe) = (Latch::new(), Probe::new());
    let gate = spawn_gate(&node, ShardId(1), Gate::new(&latch, &probe), 2);
    let (watch_latch, watch_probe) = (Latch::new(), Probe::new());
    let _watcher = spawn_gate(&node, ShardId(0), Gate::new(&watch_latch, &watch_probe).monitoring(gate), 16);
    wait_until("the monitor is set", || node.process_info(gate).expect("info").monitors == 1);

    node.send(gate, 1u64).expect("send 1");
    node.send(gate, 2u64).expect("send 2");
    assert!(node.send(gate, 3u64).expect_err("full").is_full());
    wait_until("the gate is handling message 1", || probe.started() == 1);

    let reason = ExitReason::custom("told to stop");
    node.exit(gate, reason.clone());
    wait_until("the exit signal waits in the full mailbox's system lane", || {
        node.process_info(gate).expect("info").system_queue == 1
    });
    latch.release(1);
    wait_until("the watcher got the Down", || !watch_probe.events().is_empty());
    match &watch_probe.events()[..] {
        [Event::Down(down)] => assert_eq!((down.pid, &down.reason), (gate, &reason)),
        other => panic!("expected one Down, got {other:?}"),
    }
    // Message 1 (in progress) finished; the exit signal came before the queued message 2.
    assert_eq!(probe.events(), vec![Event::Msg(1), Event::Terminate(reason)]);
    assert!(matches!(node.send(gate, 5u64), Err(SendError::NoSuchProcess(5))));
    node.stop();
}

#[test]
fn mailbox_full_process_blocked_in_handler_is_killed_at_once() {
    let node = node("mailbox_full_killed", 2);
    let (latch, probe) = (Latch::new(), Probe::new());
    let gate = spawn_gate(&node, ShardId(1), Gate::new(&latch, &probe), 2);
    let (watch_latch, watch_probe) = (Latch::new(), Probe::new());
    let _watcher = spawn_gate(&node, ShardId(0), Gate::new(&watch_latch, &watch_probe).monitoring(gate), 16);
    wait_until("the monitor is set", || node.process_info(gate).expect("info").monitors == 1);

    node.send(gate, 1u64).expect("send 1");
    node.send(gate, 2u64).expect("send 2");
    wait_until("the gate is handling message 1", || probe.started() == 1);

    // Nobody releases the latch: `Kill` must not wait for the handler.
    node.exit(gate, ExitReason::Kill);
    wait_until("the watcher got the Down", || !watch_probe.events().is_empty());
    match &watch_probe.events()[..] {
        [Event::Down(down)] => assert_eq!((down.pid, &down.reason), (gate, &ExitReason::Kill)),
        other => panic!("expected one Down, got {other:?}"),
    }
    assert!(probe.events().is_empty(), "killed mid-handler: nothing finished, no terminate");
    assert!(matches!(node.process_info(gate), Err(CallError::NoSuchProcess)));
    assert!(matches!(node.send(gate, 3u64), Err(SendError::NoSuchProcess(3))));
    latch.open(); // a wake-up for the dead process's slot must be harmless
    node.stop();
}

#[test]
fn mailbox_full_process_still_gets_shutdown_on_node_stop() {
    let node = node("mailbox_full_gets_shutdown", 1);
    let (latch, probe) = (Latch::new(), Probe::new());
    let gate = spawn_gate(&node, ShardId(0), Gate::new(&latch, &probe), 2);
    node.send(gate, 1u64).expect("send 1");
    node.send(gate, 2u64).expect("send 2");
    assert!(node.send(gate, 3u64).expect_err("full").is_full());
    wait_until("the gate is handling message 1", || probe.started() == 1);

    node.handle().stop(); // request only; the shard keeps serving until its processes ended
    wait_until("Shutdown waits in the full mailbox's system lane", || {
        node.process_info(gate).expect("info").system_queue == 1
    });
    latch.release(1);
    support::within("node.stop", Duration::from_secs(60), move || node.stop());
    assert_eq!(
        probe.events(),
        vec![Event::Msg(1), Event::Terminate(ExitReason::Shutdown)],
        "Shutdown is handled before the queued message 2, and terminate runs"
    );
}

#[test]
fn urgent_messages_are_handled_before_main_and_count_against_the_bound() {
    let node = node("mailbox_urgent_lane", 1);
    let (latch, probe) = (Latch::new(), Probe::new());
    let gate = spawn_gate(&node, ShardId(0), Gate::new(&latch, &probe), 6);
    node.send(gate, 0u64).expect("send 0");
    wait_until("the gate is handling message 0", || probe.started() == 1);

    node.send(gate, 1u64).expect("main 1");
    node.send(gate, 2u64).expect("main 2");
    node.send_priority(gate, 10u64, Priority::Urgent).expect("urgent 10");
    node.send_priority(gate, 11u64, Priority::Urgent).expect("urgent 11");
    node.send_priority(gate, 3u64, Priority::Main).expect("main 3");
    let info = node.process_info(gate).expect("process_info");
    assert_eq!((info.main_queue, info.urgent_queue, info.reserved), (3, 2, 6));
    assert!(
        matches!(node.send_priority(gate, 12u64, Priority::Urgent), Err(SendError::MailboxFull(12))),
        "one bound covers the urgent and main lanes"
    );

    latch.open();
    wait_until("all six finished", || processed(&node, gate) == 6);
    assert_eq!(probe.messages(), vec![0, 10, 11, 1, 2, 3], "urgent first, each lane in send order");
    node.stop();
}

/// Records `(sender, seq)` messages per sender.
struct Recorder {
    seqs: Sequences,
    total: Arc<AtomicUsize>,
}

impl Actor for Recorder {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(m) = msg.downcast::<(u32, u32)>() {
            let (sender, seq) = m;
            lock(&self.seqs).entry(sender).or_default().push(seq);
            self.total.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

/// On `Start`, sends `(id, 0..count)` to every receiver in turn; a full mailbox is retried
/// after yielding (the refused message was not enqueued, so order is kept).
struct Sequencer {
    to: Vec<Pid>,
    id: u32,
    count: u32,
    done: Arc<AtomicUsize>,
}

impl Actor for Sequencer {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if !msg.is::<Start>() {
            return Ok(());
        }
        let deadline = Instant::now() + support::WAIT_LIMIT;
        for seq in 0..self.count {
            for &to in &self.to {
                let mut msg = (self.id, seq);
                loop {
                    match ctx.send(to, msg) {
                        Ok(()) => break,
                        Err(SendError::MailboxFull(m)) => msg = m,
                        Err(e) => panic!("sequencer {}: {e}", self.id),
                    }
                    assert!(Instant::now() < deadline, "sequencer {} stuck on a full mailbox", self.id);
                    ctx.yield_now().await;
                }
            }
        }
        self.done.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn fifo_per_sender_receiver_pair_holds_with_senders_on_every_shard_and_thread() {
    const COUNT: u32 = 2_000;
    const PROCESSES_PER_SHARD: u32 = 2;
    const THREADS: u32 = 2;
    let node = node("mailbox_fifo_per_pair", 2);
    // One receiver per shard, with small mailboxes so that senders also hit MailboxFull and retry.
    let (seqs, totals): (Vec<Sequences>, Vec<Arc<AtomicUsize>>) = (0..2).map(|_| Default::default()).unzip();
    let receivers: Vec<Pid> = (0..2u16)
        .map(|shard| {
            let recorder = Recorder { seqs: seqs[shard as usize].clone(), total: totals[shard as usize].clone() };
            node.spawn_on(ShardId(shard), move || recorder, ProcessOptions::with_mailbox(16)).wait().expect("spawn")
        })
        .collect();

    let done = Arc::new(AtomicUsize::new(0));
    let mut id = 0;
    let mut sequencers = Vec::new();
    for shard in 0..2u16 {
        for _ in 0..PROCESSES_PER_SHARD {
            let sequencer = Sequencer { to: receivers.clone(), id, count: COUNT, done: done.clone() };
            id += 1;
            sequencers
                .push(node.spawn_on(ShardId(shard), move || sequencer, ProcessOptions::default()).wait().unwrap());
        }
    }
    for s in &sequencers {
        node.send(*s, Start).expect("start sequencer");
    }
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (handle, receivers, me) = (node.handle(), receivers.clone(), id);
            id += 1;
            std::thread::spawn(move || {
                let deadline = Instant::now() + support::WAIT_LIMIT;
                for seq in 0..COUNT {
                    for &to in &receivers {
                        let mut msg = (me, seq);
                        loop {
                            match handle.send(to, msg) {
                                Ok(()) => break,
                                Err(SendError::MailboxFull(m)) => msg = m,
                                Err(e) => panic!("thread sender {me}: {e}"),
                            }
                            assert!(Instant::now() < deadline, "thread sender {me} stuck on a full mailbox");
                            std::thread::yield_now();
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("sender thread");
    }
    let senders = (2 * PROCESSES_PER_SHARD + THREADS) as usize;
    wait_until("the sequencer processes finished", || done.load(Ordering::SeqCst) == 2 * PROCESSES_PER_SHARD as usize);
    for (r, total) in totals.iter().enumerate() {
        wait_until("receiver got every message", || total.load(Ordering::SeqCst) == senders * COUNT as usize);
        let seqs = lock(&seqs[r]);
        assert_eq!(seqs.len(), senders, "receiver {r} heard from every sender");
        for (sender, got) in seqs.iter() {
            assert!(got.windows(2).all(|w| w[0] < w[1]), "receiver {r}: sender {sender}'s messages out of order");
            assert_eq!(got.len(), COUNT as usize, "receiver {r}: sender {sender} lost messages");
        }
        assert_eq!(seqs.values().map(Vec::len).sum::<usize>(), senders * COUNT as usize);
    }
    node.stop();
}

#[test]
fn stale_pid_after_slot_reuse_never_reaches_the_new_process() {
    let node = node("mailbox_stale_pid", 2);
    let relay_other = node.spawn_on(ShardId(0), || Relay, ProcessOptions::default()).wait().expect("relay 0");
    let relay_same = node.spawn_on(ShardId(1), || Relay, ProcessOptions::default()).wait().expect("relay 1");
    let old = node.spawn_on(ShardId(1), Counter::default, ProcessOptions::default()).wait().expect("old");
    assert!(query::<bool>(&node, old, Query::Stop));
    wait_until("the old process ended", || matches!(node.process_info(old), Err(CallError::NoSuchProcess)));

    // Spawn on the same shard until a process gets the old one's slot.
    let (_, _, old_slot, old_generation) = pid_parts(old);
    let mut others = Vec::new();
    let new = loop {
        assert!(others.len() < 256, "the freed slot was never reused");
        let pid = node.spawn_on(ShardId(1), Counter::default, ProcessOptions::default()).wait().expect("spawn");
        if pid_parts(pid).2 == old_slot {
            break pid;
        }
        others.push(pid);
    };
    let (new_node, new_shard, _, new_generation) = pid_parts(new);
    assert_eq!((new_node, new_shard), (pid_parts(old).0, pid_parts(old).1));
    assert_ne!(new_generation, old_generation, "same slot, new generation");
    assert_ne!(new, old);

    assert!(matches!(node.send(old, 7u64), Err(SendError::NoSuchProcess(7))), "from a thread");
    assert!(matches!(send_from(&node, relay_other, old, 8), Err(SendError::NoSuchProcess(8))), "from another shard");
    assert!(matches!(send_from(&node, relay_same, old, 9), Err(SendError::NoSuchProcess(9))), "from the same shard");
    assert_eq!(node.call_blocking(old, Query::Count, CALL_TIMEOUT).err(), Some(CallError::NoSuchProcess));
    assert!(matches!(node.process_info(old), Err(CallError::NoSuchProcess)));
    assert_eq!(node.process_info(new).expect("info").processed, 0, "nothing sent to the old pid reached the new one");
    assert_eq!(query::<u64>(&node, new, Query::Count), 0);

    node.send(new, 5u64).expect("the new pid works");
    assert_eq!(query::<u64>(&node, new, Query::Sum), 5);
    node.stop();
}

/// Hands out aliases of itself; counts the `u64` messages it gets.
#[derive(Default)]
struct AliasOwner {
    count: u64,
}

enum AliasRequest {
    Create,
    /// Delete the alias, then send a `u64` to it from this process: `(deleted, send result)`.
    DeleteThenSend(pinion::Alias),
    Count,
}

impl Actor for AliasOwner {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if msg.is::<u64>() {
            self.count += 1;
        } else if msg.is::<Query>() {
            return Err(ExitReason::Normal);
        }
        Ok(())
    }

    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, req: Message) -> Result<Reply, ExitReason> {
        match req.downcast::<AliasRequest>().expect("an AliasRequest") {
            AliasRequest::Create => Ok(Reply::now(ctx.create_alias())),
            AliasRequest::DeleteThenSend(alias) => {
                let deleted = ctx.delete_alias(alias);
                let sent: Result<(), SendError<u64>> = ctx.send(alias, 1u64);
                Ok(Reply::now((deleted, sent)))
            }
            AliasRequest::Count => Ok(Reply::now(self.count)),
        }
    }
}

fn alias_call<T: 'static>(node: &pinion::NodeHandle, to: impl Into<pinion::Target<'static>>, req: AliasRequest) -> T {
    node.call_blocking(to, req, CALL_TIMEOUT).expect("call").downcast::<T>().expect("reply type")
}

#[test]
fn alias_deleted_or_of_an_ended_process_never_delivers() {
    let node = node("mailbox_alias_refused", 2);
    let owner = node.spawn_on(ShardId(1), AliasOwner::default, ProcessOptions::default()).wait().expect("owner");
    let alias: pinion::Alias = alias_call(&node, owner, AliasRequest::Create);
    assert_eq!(alias.owner(), owner);

    node.send(alias, 5u64).expect("a live alias reaches its process");
    assert_eq!(alias_call::<u64>(&node, alias, AliasRequest::Count), 1, "calls through the alias work too");

    // Same shard: refused at once.
    let (deleted, sent): (bool, Result<(), SendError<u64>>) =
        alias_call(&node, owner, AliasRequest::DeleteThenSend(alias));
    assert!(deleted);
    assert!(matches!(sent, Err(SendError::UnknownAlias(1))), "same-shard send to a deleted alias: {sent:?}");
    // From outside: the send may be accepted before the owner's shard sees it, but the message
    // never reaches the process, and a call learns why.
    let sent = node.send(alias, 6u64);
    assert!(matches!(sent, Ok(()) | Err(SendError::UnknownAlias(6))), "{sent:?}");
    assert_eq!(node.call_blocking(alias, AliasRequest::Count, CALL_TIMEOUT).err(), Some(CallError::UnknownAlias));
    assert_eq!(alias_call::<u64>(&node, owner, AliasRequest::Count), 1, "nothing sent to the deleted alias arrived");

    // The owner ends: its aliases are refused at the sender.
    let second: pinion::Alias = alias_call(&node, owner, AliasRequest::Create);
    node.send(owner, Query::Stop).expect("stop the owner");
    wait_until("the owner ended", || node.process_info(owner).is_err());
    match node.send(second, 7u64) {
        Err(e @ SendError::UnknownAlias(_)) => {
            assert!(e.to_string().contains("alias"), "{e}");
            assert_eq!(e.into_inner(), 7);
        }
        other => panic!("send to the alias of an ended process: {other:?}"),
    }
    node.stop();
}

#[test]
fn send_errors_display_their_cause_and_hand_the_message_back() {
    let node = node("mailbox_send_error_display", 1);
    let (latch, probe) = (Latch::new(), Probe::new());
    let gate = spawn_gate(&node, ShardId(0), Gate::new(&latch, &probe), 1);
    node.send(gate, 1u64).expect("fits");
    let full = node.send(gate, 2u64).expect_err("full");
    let ended = node.spawn(Counter::default, ProcessOptions::default()).wait().expect("spawn");
    assert!(query::<bool>(&node, ended, Query::Stop));
    wait_until("the process ended", || node.process_info(ended).is_err());
    let no_process = node.send(ended, 3u64).expect_err("stale");
    let unknown_name = node.send("nobody-is-registered-here", 4u64).expect_err("unknown name");
    let owner = node.spawn(AliasOwner::default, ProcessOptions::default()).wait().expect("spawn");
    let alias: pinion::Alias = alias_call(&node, owner, AliasRequest::Create);
    node.send(owner, Query::Stop).expect("stop");
    wait_until("the alias owner ended", || node.process_info(owner).is_err());
    let unknown_alias = node.send(alias, 5u64).expect_err("unknown alias");

    let cases = [
        (full, "MailboxFull", "full", 2),
        (no_process, "NoSuchProcess", "no such process", 3),
        (unknown_name, "UnknownName", "registered under that name", 4),
        (unknown_alias, "UnknownAlias", "alias", 5),
    ];
    for (error, variant, cause, message) in cases {
        let text = error.to_string();
        assert!(text.starts_with("send failed: "), "{text}");
        assert!(text.contains(cause), "{variant}: {text:?} should mention {cause:?}");
        assert_eq!(format!("{error:?}"), format!("{variant}(..)"), "Debug names the variant, not the payload");
        assert_eq!(error.is_full(), variant == "MailboxFull");
        assert_eq!(error.into_inner(), message, "{variant} hands the message back");
    }
    let call_full = node.call_blocking(gate, Query::Count, CALL_TIMEOUT).expect_err("call to a full mailbox");
    assert_eq!(call_full, CallError::MailboxFull);
    assert!(call_full.to_string().contains("full"), "{call_full}");
    latch.open();
    node.stop();
}

#[test]
fn process_options_with_zero_or_huge_mailbox_are_invalid() {
    let node = node("mailbox_invalid_options", 1);
    for bad in [0, usize::MAX] {
        match node.spawn(Counter::default, ProcessOptions::with_mailbox(bad)).wait() {
            Err(e @ SpawnError::InvalidOptions(_)) => assert!(e.to_string().contains("mailbox"), "{e}"),
            other => panic!("mailbox {bad}: expected InvalidOptions, got {other:?}"),
        }
    }
    assert_eq!(node.inspect().expect("inspect")[0].processes, 0, "nothing half-spawned is left");
    // The smallest valid mailbox holds one message.
    let (latch, probe) = (Latch::new(), Probe::new());
    let gate = spawn_gate(&node, ShardId(0), Gate::new(&latch, &probe), 1);
    node.send(gate, 1u64).expect("one fits");
    assert!(node.send(gate, 2u64).expect_err("a second does not").is_full());
    latch.open();
    node.stop();
}

/// A factory that blocks its shard until the test lets it go, so the test can act while the
/// process exists in name only (`spawn_register` registers the name before the factory runs).
fn held_factory(
    gate: Gate,
) -> (impl FnOnce() -> Gate + Send + 'static, std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (proceed_tx, proceed_rx) = std::sync::mpsc::channel::<()>();
    let factory = move || {
        entered_tx.send(()).expect("test waits");
        proceed_rx.recv_timeout(support::WAIT_LIMIT).expect("the test lets the factory proceed");
        gate
    };
    (factory, entered_rx, proceed_tx)
}

#[test]
fn send_by_name_while_the_factory_runs_keeps_the_bound_exact() {
    const N: usize = 2;
    let node = node("mailbox_send_during_factory", 1);
    // Round 0 uses a fresh slot; round 1 reuses the slot of an ended process, whose capacity
    // (1024) must not leak into the new incarnation.
    for round in 0..2u64 {
        if round == 1 {
            let gone = node.spawn(Counter::default, mailbox(1024)).wait().expect("spawn");
            assert!(query::<bool>(&node, gone, Query::Stop));
            wait_until("the previous owner ended", || node.process_info(gone).is_err());
        }
        let name = format!("early-{round}");
        let (latch, probe) = (Latch::new(), Probe::new());
        let (factory, entered, proceed) = held_factory(Gate::new(&latch, &probe));
        let spawn = node.spawn_register(&name, factory, mailbox(N));
        entered.recv_timeout(support::WAIT_LIMIT).expect("the factory runs");
        assert!(node.whereis(&name).is_some(), "the name is registered before the factory runs");

        let early = node.send(name.as_str(), 100 + round);
        assert!(
            matches!(early, Ok(()) | Err(SendError::NoSuchProcess(_))),
            "round {round}: a process being spawned has no full mailbox: {early:?}"
        );
        proceed.send(()).expect("the factory waits");
        let pid = spawn.wait().expect("spawn");

        // The gate blocks in its first message: in all, exactly N messages are accepted,
        // counting the early one.
        let mut accepted = usize::from(early.is_ok());
        for i in 0..N as u64 + 2 {
            accepted += usize::from(node.send(pid, i).is_ok());
        }
        assert_eq!(accepted, N, "round {round}: exactly N accepted");
        assert_eq!(reserved(&node, pid), N as u32, "round {round}");
        latch.open();
        wait_until("the gate finished every accepted message", || processed(&node, pid) == N as u64);
        assert_eq!(reserved(&node, pid), 0, "round {round}: every reservation given back");
        if early.is_ok() {
            assert_eq!(probe.messages()[0], 100 + round, "round {round}: the early message is handled first");
        }
        node.send(pid, 7u64).expect("the mailbox works afterwards");
        node.exit(pid, ExitReason::Kill);
    }
    node.stop();
}

/// Priorities hold for every urgent message, not only the first: with the process parked in a
/// message of a batch it already took, two urgent messages arrive; both come before the rest
/// of the batch (the second waited behind it, because one look counted the shard's attention
/// as seen while an urgent message was still queued).
#[test]
fn every_urgent_message_overtakes_a_batch_already_taken() {
    let node = node("mailbox_urgent_vs_batch", 1);
    let (latch, probe) = (Latch::new(), Probe::new());
    let gate = spawn_gate(&node, ShardId(0), Gate::new(&latch, &probe), 16);
    node.send(gate, 0u64).expect("send 0");
    wait_until("the gate is handling message 0", || probe.started() == 1);
    for n in 1..=3u64 {
        node.send(gate, n).expect("main");
    }
    latch.release(1); // 0 ends; the gate takes [1, 2, 3] as one batch and parks in 1
    wait_until("the gate is handling message 1", || probe.started() == 2);
    node.send_priority(gate, 10u64, Priority::Urgent).expect("urgent 10");
    node.send_priority(gate, 11u64, Priority::Urgent).expect("urgent 11");
    wait_until("both urgent queued", || node.process_info(gate).expect("info").urgent_queue == 2);
    latch.open();
    wait_until("all six finished", || processed(&node, gate) == 6);
    assert_eq!(probe.messages(), vec![0, 1, 10, 11, 2, 3], "urgent before the rest of the batch");
    node.stop();
}
