//! The pool's crash path (a replacement inherits its predecessor's queue and the messages on
//! their way to it, `pool::dispatch::Grave`): interleavings the floods of
//! `regressions_pool.rs` do not reach — replacements that die before or during `init`, long
//! chains of them, calls and urgent messages owed along a chain, the pool giving up or stopping
//! with graves open, a resize retiring an heir. Real nodes, real shard threads; bounded waits
//! only.
//!
//! The tool of most tests: a `Blocker` on the workers' shard blocks that shard's thread while
//! the test thread sends to the pool (the messages reserve their slots and wait in the shard's
//! inbox: "on their way"), then, unblocked, ends workers synchronously (a kill of a process on
//! the same shard ends it at once) before the inbox is drained.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pinion::{
    Actor, CallError, Context, ExitReason, Message, Node, Pid, Placement, Pool, PoolOptions, PoolRef, ProcessOptions,
    Reply, ShardId,
};
use support::{CALL_TIMEOUT, Latch, lock, node, wait_until};

#[derive(Debug)]
enum Job {
    Rec(u64),
}

/// What the workers saw.
#[derive(Default)]
struct Book {
    done: Mutex<Vec<u64>>,
    /// Incarnations started so far (the first worker is incarnation 1).
    starts: AtomicUsize,
    /// Incarnations from this one on wait for the latch in `init` (0: none does).
    init_from: AtomicUsize,
}

struct W {
    book: Arc<Book>,
    latch: Arc<Latch>,
    incarnation: usize,
}

impl Actor for W {
    async fn init(&mut self, _: &mut Context) -> Result<(), ExitReason> {
        let from = self.book.init_from.load(Ordering::SeqCst);
        if from != 0 && self.incarnation >= from {
            self.latch.acquire().await;
        }
        Ok(())
    }

    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<Job>() {
            Ok(Job::Rec(id)) => lock(&self.book.done).push(id),
            Err(other) => panic!("unexpected message {other:?}"),
        }
        Ok(())
    }

    async fn handle_call(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<Reply, ExitReason> {
        let id = msg.downcast::<u64>().expect("a u64 call");
        lock(&self.book.done).push(id);
        Ok(Reply::now(id))
    }
}

fn factory(book: &Arc<Book>, latch: &Arc<Latch>) -> impl Fn() -> W + Send + Sync + 'static {
    let (book, latch) = (book.clone(), latch.clone());
    move || {
        let incarnation = book.starts.fetch_add(1, Ordering::SeqCst) + 1;
        W { book: book.clone(), latch: latch.clone(), incarnation }
    }
}

/// What the blocker does once unblocked, in order, on the workers' shard.
#[derive(Debug, Clone)]
enum Step {
    /// Kills the pool's worker at this index of `PoolInfo::workers`.
    Kill(usize),
    /// Kills it `n` times in a row (each replacement as soon as it is published).
    KillRepeatedly(usize, usize),
    /// Lets the other processes of the shard run once (a replacement runs its `init`).
    Yield,
    Resize(usize),
    KillManager,
}

struct Run {
    unblock: Receiver<()>,
    began: Arc<AtomicUsize>,
    pool: Pid,
    steps: Vec<Step>,
    report: Sender<Vec<Pid>>,
}

struct Blocker;

impl Actor for Blocker {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        let Ok(run) = msg.downcast::<Run>() else { return Ok(()) };
        run.began.fetch_add(1, Ordering::SeqCst);
        run.unblock.recv_timeout(CALL_TIMEOUT).expect("unblocked by the test");
        let mut killed = Vec::new();
        for step in run.steps {
            match step {
                Step::Kill(i) => {
                    let r = ctx.pool(run.pool).expect("a pool");
                    let w = r.info().workers[i].pid.expect("a live worker");
                    killed.push(w);
                    ctx.exit(w, ExitReason::Kill);
                }
                Step::KillRepeatedly(i, n) => {
                    let r = ctx.pool(run.pool).expect("a pool");
                    for _ in 0..n {
                        let w = r.info().workers[i].pid.expect("a live worker");
                        ctx.exit(w, ExitReason::Kill);
                    }
                }
                Step::Yield => ctx.yield_now().await,
                Step::Resize(n) => ctx.pool(run.pool).expect("a pool").resize(n).expect("resize"),
                Step::KillManager => ctx.exit(run.pool, ExitReason::Kill),
            }
        }
        let _ = run.report.send(killed);
        Ok(())
    }
}

struct Fixture {
    node: Node,
    pool: Pid,
    r: PoolRef,
    book: Arc<Book>,
    latch: Arc<Latch>,
    blocker: Pid,
}

/// A pool of `size` workers with mailboxes of `mailbox`, all on shard 1 of a 2-shard node, and
/// a blocker on shard 1.
fn fixture(name: &str, size: usize, mailbox: usize, intensity: u32) -> Fixture {
    let node = node(name, 2);
    let (book, latch) = (Arc::new(Book::default()), Latch::new());
    let mut options =
        PoolOptions::new(size, mailbox, factory(&book, &latch)).placement(Placement::Shards(vec![ShardId(1)]));
    options.restart_intensity = intensity;
    options.restart_period = Duration::from_secs(60);
    let pool = node.spawn_on(ShardId(0), move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let r = node.handle().pool(pool).expect("a pool ref");
    let blocker = node.spawn_on(ShardId(1), || Blocker, ProcessOptions::default()).wait().expect("blocker");
    Fixture { node, pool, r, book, latch, blocker }
}

impl Fixture {
    /// Blocks shard 1; `during` runs on the test thread meanwhile; then the blocker runs
    /// `steps` and reports the pids it killed.
    fn blocked<T>(&self, steps: Vec<Step>, during: impl FnOnce() -> T) -> (T, Vec<Pid>) {
        self.blocked_within(CALL_TIMEOUT, steps, during)
    }

    /// [`blocked`](Self::blocked), the blocker's report awaited up to `limit` (a bound
    /// against a hang, not a timing claim).
    fn blocked_within<T>(&self, limit: Duration, steps: Vec<Step>, during: impl FnOnce() -> T) -> (T, Vec<Pid>) {
        let (tx, rx) = channel();
        let (rtx, rrx) = channel();
        let began = Arc::new(AtomicUsize::new(0));
        let run = Run { unblock: rx, began: began.clone(), pool: self.pool, steps, report: rtx };
        self.node.send(self.blocker, run).expect("to the blocker");
        wait_until("the blocker blocks shard 1", || began.load(Ordering::SeqCst) == 1);
        let out = during();
        tx.send(()).expect("unblock");
        let killed = rrx.recv_timeout(limit).expect("the blocker reports");
        (out, killed)
    }

    fn done(&self) -> Vec<u64> {
        let mut d = lock(&self.book.done).clone();
        d.sort_unstable();
        d
    }
}

/// Waits until `cond` holds or `limit` passes; true if it held.
fn settles(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    cond()
}

/// The worker is killed while 5 messages are on their way to it (its pool full); its
/// replacement is killed in its `init`, before it took the inherited queue; the next one
/// inherits everything. Each message is handled once, the pool gives every slot back.
#[test]
fn replacement_killed_in_init_passes_on_what_is_owed() {
    let f = fixture("graves-heir-init", 1, 4, 100);
    f.book.init_from.store(2, Ordering::SeqCst);
    let h = f.node.handle();
    let (sent, killed) = f.blocked(vec![Step::Kill(0), Step::Yield, Step::Yield, Step::Kill(0)], || {
        let ok: Vec<bool> = (0..6).map(|i| h.send(f.pool, Job::Rec(i)).is_ok()).collect();
        ok
    });
    assert_eq!(sent, [true, true, true, true, true, false], "the pool takes 5");
    assert_eq!(killed.len(), 2);
    wait_until("the third incarnation started", || f.book.starts.load(Ordering::SeqCst) == 3);
    f.latch.open();
    wait_until("all handled", || f.done().len() >= 5);
    assert!(settles(Duration::from_secs(2), || f.r.info().held == 0), "{:?}", f.r.info());
    assert_eq!(f.done(), [0, 1, 2, 3, 4]);
    let info = f.r.info();
    assert_eq!((info.held, info.capacity, info.workers[0].restarts, info.workers[0].shed), (0, 5, 2, 0), "{info:?}");
    f.node.stop();
}

/// The same, the replacement killed before it ever ran.
#[test]
fn replacement_killed_before_it_ran_passes_on_what_is_owed() {
    let f = fixture("graves-heir-unrun", 1, 4, 100);
    let h = f.node.handle();
    let (sent, _) = f.blocked(vec![Step::Kill(0), Step::Kill(0), Step::Kill(0)], || {
        (0..5).map(|i| h.send(f.pool, Job::Rec(i)).is_ok()).collect::<Vec<_>>()
    });
    assert_eq!(sent, [true; 5]);
    wait_until("all handled", || f.done().len() >= 5);
    assert!(settles(Duration::from_secs(2), || f.r.info().held == 0), "{:?}", f.r.info());
    assert_eq!(f.done(), [0, 1, 2, 3, 4]);
    assert_eq!(f.r.info().workers[0].restarts, 3);
    f.node.stop();
}

/// Calls on their way to a worker whose replacements die: each call is answered.
#[test]
fn calls_owed_through_a_chain_are_answered() {
    let f = fixture("graves-call-chain", 1, 4, 100);
    let h = f.node.handle();
    let (callers, _) = f.blocked(vec![Step::Kill(0), Step::Kill(0)], || {
        let callers: Vec<_> = (0..5u64)
            .map(|i| {
                let h = h.clone();
                let pool = f.pool;
                std::thread::spawn(move || h.call_blocking(pool, i, CALL_TIMEOUT).map(|m| m.downcast::<u64>().ok()))
            })
            .collect();
        wait_until("5 calls reserved", || f.r.info().held == 5);
        callers
    });
    let answers: Vec<_> = callers.into_iter().map(|c| c.join().expect("caller")).collect();
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a, &Ok(Some(i as u64)), "call {i}: {answers:?}");
    }
    assert!(settles(Duration::from_secs(2), || f.r.info().held == 0), "{:?}", f.r.info());
    f.node.stop();
}

/// Three calls and two plain sends on their way to the pool's worker (its shard blocked)
/// while `steps` run there: the calls' answers.
fn calls_on_their_way(f: &Fixture, steps: Vec<Step>) -> Vec<Result<Option<u64>, CallError>> {
    let h = f.node.handle();
    let (callers, _) = f.blocked(steps, || {
        let callers: Vec<_> = (0..3u64)
            .map(|i| {
                let h = h.clone();
                let pool = f.pool;
                std::thread::spawn(move || h.call_blocking(pool, i, CALL_TIMEOUT).map(|m| m.downcast::<u64>().ok()))
            })
            .collect();
        wait_until("3 calls reserved", || f.r.info().held == 3);
        assert!(h.send(f.pool, Job::Rec(10)).is_ok());
        assert!(h.send(f.pool, Job::Rec(11)).is_ok());
        callers
    });
    callers.into_iter().map(|c| c.join().expect("caller")).collect()
}

/// The pool gives up (restart intensity 1) while messages are on their way to a worker and to
/// its replacement: every call is answered at once (not by its timeout), and the pool's count
/// goes back to 0.
#[test]
fn pool_giving_up_with_graves_open_answers_and_returns_every_slot() {
    let f = fixture("graves-give-up", 1, 4, 1);
    let began = Instant::now();
    let answers = calls_on_their_way(&f, vec![Step::Kill(0), Step::Kill(0)]);
    assert!(began.elapsed() < CALL_TIMEOUT, "answered by the timeout: {answers:?}");
    for a in &answers {
        assert!(matches!(a, Err(CallError::Stopped) | Err(CallError::MailboxFull)), "{answers:?}");
    }
    assert!(settles(Duration::from_secs(3), || f.r.info().held == 0), "{:?}", f.r.info());
    let info = f.r.info();
    assert!(info.stopping, "{info:?}");
    f.node.stop();
}

/// The pool's manager is killed while messages are on their way to a replaced worker: its
/// count goes back to 0 and every call is answered.
#[test]
fn pool_stopped_with_graves_open_returns_every_slot() {
    let f = fixture("graves-stop-graves", 1, 4, 100);
    let answers = calls_on_their_way(&f, vec![Step::Kill(0), Step::KillManager, Step::Kill(0)]);
    for a in &answers {
        assert!(!matches!(a, Err(CallError::Timeout)), "{answers:?}");
    }
    assert!(settles(Duration::from_secs(3), || f.r.info().held == 0), "{:?}", f.r.info());
    f.node.stop();
}

/// A worker is killed while messages sent straight to it are on their way; its replacement is
/// then retired by a resize before they arrive: they reach it, it ends, nothing is lost.
#[test]
fn replacement_retired_while_owed_messages_are_on_their_way() {
    let f = fixture("graves-resize-grave", 2, 4, 100);
    let h = f.node.handle();
    let w1 = f.r.info().workers[1].pid.expect("worker 1");
    let (sent, _) = f.blocked(vec![Step::Kill(1), Step::Resize(1)], || {
        (0..5).map(|i| h.send(w1, Job::Rec(i)).is_ok()).collect::<Vec<_>>()
    });
    assert_eq!(sent, [true; 5]);
    wait_until("all handled", || f.done().len() >= 5);
    assert!(settles(Duration::from_secs(2), || f.r.info().held == 0 && f.r.info().size == 1), "{:?}", f.r.info());
    assert_eq!(f.done(), [0, 1, 2, 3, 4]);
    let info = f.r.info();
    assert_eq!((info.capacity, info.size), (5, 1), "{info:?}");
    f.node.stop();
}

/// Many replacements die in a row (killed by a process of their shard, each as soon as it
/// started) while messages are on their way to the first: each message then walks the chain
/// of graves to the last replacement.
fn chain(name: &str, kills: usize) {
    let f = fixture(name, 1, 4, u32::MAX);
    let h = f.node.handle();
    let began = Instant::now();
    // The bounds are against a hang, not timing claims. (When each burial and each inheritance
    // scanned every grave, 20 000 kills took ~7.6 s in a debug build and the walk ~16 s; the
    // 100 000 here would have taken over ten minutes.)
    let (sent, _) = f.blocked_within(Duration::from_secs(120), vec![Step::KillRepeatedly(0, kills)], || {
        (0..5).map(|i| h.send(f.pool, Job::Rec(i)).is_ok()).collect::<Vec<_>>()
    });
    eprintln!("{kills} kills: the blocker reported after {:?}", began.elapsed());
    assert_eq!(sent, [true; 5]);
    assert!(settles(Duration::from_secs(120), || f.done().len() >= 5), "all handled: {:?}", f.done());
    eprintln!("{kills} kills: handled after {:?}", began.elapsed());
    assert!(settles(Duration::from_secs(2), || f.r.info().held == 0), "{:?}", f.r.info());
    assert_eq!(f.done(), [0, 1, 2, 3, 4]);
    f.node.stop();
}

/// 100 000 replacements killed one after the other while five messages are on their way: each
/// message walks the whole chain of graves to the last heir. That walk was a recursion through
/// `Shard::deliver_mail` (one frame per grave), which overflowed the shard's stack and aborted
/// the process past ~4 000; then each step, each burial and each inheritance scanned the
/// graves (quadratic: minutes at this length).
#[test]
fn a_long_chain_of_replacements_passes_on_what_is_owed() {
    chain("graves-chain-100k", 100_000);
}

/// An urgent message on its way to a worker that is killed reaches its replacement in the
/// urgent lane, ahead of the main-lane messages it inherited, as the worker would have
/// handled it had it lived (it was forwarded in the main lane, behind them).
#[test]
fn urgent_message_owed_to_a_killed_worker_keeps_its_lane() {
    let f = fixture("graves-urgent-owed", 1, 4, 100);
    // The replacement waits in `init` until every inherited message reached it.
    f.book.init_from.store(2, Ordering::SeqCst);
    let h = f.node.handle();
    let (sent, _) = f.blocked(vec![Step::Kill(0)], || {
        let mut ok: Vec<bool> = (0..4).map(|i| h.send(f.pool, Job::Rec(i)).is_ok()).collect();
        ok.push(h.send_priority(f.pool, Job::Rec(99), pinion::Priority::Urgent).is_ok());
        ok
    });
    assert_eq!(sent, [true; 5]);
    wait_until("the replacement started", || f.book.starts.load(Ordering::SeqCst) == 2);
    // Everything on its way has been redirected once the inbox was drained: a round trip to
    // shard 1 (the blocker) proves it.
    let (_, _) = f.blocked(vec![], || ());
    f.latch.open();
    wait_until("all handled", || f.done().len() >= 5);
    let order = lock(&f.book.done).clone();
    assert_eq!(order[0], 99, "the urgent message first: {order:?}");
    f.node.stop();
}

/// Senders, callers and ends of every kind at once (crash mid-flood, kill, resize, calls):
/// no message is handled twice, every call is answered before its timeout, and the pool
/// gives every slot back.
#[test]
fn mixed_chaos_no_duplicate_and_every_slot_back() {
    use std::sync::atomic::AtomicBool;
    #[derive(Debug)]
    enum M {
        Id(u64),
        Crash,
    }
    struct C {
        seen: Arc<Mutex<Vec<u64>>>,
    }
    impl Actor for C {
        async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
            match msg.downcast::<M>() {
                Ok(M::Id(id)) => {
                    if id % 3 == 0 {
                        ctx.yield_now().await;
                    }
                    lock(&self.seen).push(id);
                }
                Ok(M::Crash) => panic!("chaos"),
                Err(other) => panic!("unexpected {other:?}"),
            }
            Ok(())
        }
        async fn handle_call(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<Reply, ExitReason> {
            let id = msg.downcast::<u64>().expect("u64");
            lock(&self.seen).push(id);
            Ok(Reply::now(id))
        }
    }
    let node = node("graves-chaos", 2);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let mut options = PoolOptions::new(4, 3, move || C { seen: s.clone() });
    options.restart_intensity = u32::MAX;
    let pool = node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let h = node.handle();
    let r = h.pool(pool).expect("pool");
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for t in 0..2u64 {
        let (h, stop) = (h.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            let mut calls_bad = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                let id = (t << 40) | n;
                if n.is_multiple_of(50) {
                    if let Err(CallError::Timeout) = h.call_blocking(pool, id, Duration::from_secs(5)) {
                        calls_bad.push(id);
                    }
                } else {
                    let _ = h.send(pool, M::Id(id));
                }
            }
            calls_bad
        }));
    }
    let begun = Instant::now();
    let mut k = 0usize;
    while begun.elapsed() < Duration::from_secs(3) {
        k += 1;
        match k % 4 {
            0 => {
                let _ = h.send(pool, M::Crash);
            }
            1 => {
                if let Some(w) = r.info().workers.get(k % 3).and_then(|w| w.pid) {
                    h.exit(w, ExitReason::Kill);
                }
            }
            2 => r.resize(if k % 8 == 2 { 2 } else { 4 }).expect("resize"),
            _ => {}
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    stop.store(true, Ordering::SeqCst);
    let bad: Vec<u64> = threads.into_iter().flat_map(|t| t.join().expect("sender")).collect();
    assert!(bad.is_empty(), "calls answered by their timeout: {bad:?}");
    assert!(settles(Duration::from_secs(5), || r.info().held == 0), "slots held: {:?}", r.info());
    let mut ids = lock(&seen).clone();
    let n = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n, "a message handled twice");
    assert!(!r.info().stopping);
    node.stop();
}

mod web {
    //! A pipelined burst whose plain handlers kill the pool's worker twice in one dispatch
    //! pass (slots taken ahead for the burst are owed along a chain of two graves), the
    //! second kill past the restart intensity (the pool gives up mid-pass).
    use std::io::Write;
    use std::net::TcpStream;

    use pinion::http::{Request, Response};
    use pinion::web::{Router, WebHandler, WebRequest, WebServer, WebServerOptions, WebTarget};

    use super::*;

    struct Quick;
    impl Actor for Quick {
        async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
            if let Ok(req) = msg.downcast::<WebRequest>() {
                req.respond(Response::text(format!("ok {}", ctx.pid())));
            }
            Ok(())
        }
    }

    #[test]
    fn web_burst_killing_the_worker_twice_mid_pass_answers_all_and_returns_every_slot() {
        let node = node("graves-web-chain", 1);
        let mut options = PoolOptions::new(1, 8, || Quick);
        options.restart_intensity = 1;
        options.restart_period = Duration::from_secs(60);
        let pool = node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
        let h = node.handle();
        let killer = h.clone();
        let router =
            Router::new().route("/w/{n}", WebHandler::to(WebTarget::Pid(pool))).get("/kill", move |_: &Request| {
                let worker = killer.pool(pool).ok().and_then(|r| r.info().workers.first().and_then(|w| w.pid));
                if let Some(w) = worker {
                    killer.exit(w, ExitReason::Kill);
                }
                Response::text("killed")
            });
        let server = WebServer::start(&node, WebServerOptions::new("127.0.0.1", 0, router)).expect("server");
        let r = h.pool(pool).expect("pool");
        let mut s = TcpStream::connect(server.local_addr()).expect("connect");
        s.write_all(b"GET /w/0 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(support::read_statuses(&mut s, 1), [200]);
        let burst: String = ["/w/1", "/kill", "/w/2", "/kill", "/w/3", "/w/4"]
            .iter()
            .map(|t| format!("GET {t} HTTP/1.1\r\nHost: x\r\n\r\n"))
            .collect();
        s.write_all(burst.as_bytes()).unwrap();
        let got = support::read_statuses(&mut s, 6);
        assert_eq!((got[1], got[3]), (200, 200), "{got:?}");
        for (i, st) in got.iter().enumerate() {
            assert!([200, 500, 503].contains(st), "answer {i}: {got:?}");
        }
        assert!(settles(Duration::from_secs(3), || r.info().held == 0), "{:?} {got:?}", r.info());
        node.stop();
    }
}

/// Plain messages on their way to a worker when its pool gives up are shed (answered by a log
/// line). The cell that counted them is gone from `PoolInfo::workers` and `PoolInfo::shed`
/// counts refused sends only: `PoolInfo::shed_accepted` counts them.
#[test]
fn plain_messages_shed_when_the_pool_gives_up_are_counted() {
    let f = fixture("graves-shed-count", 1, 4, 1);
    let h = f.node.handle();
    let (sent, _) = f.blocked(vec![Step::Kill(0), Step::Kill(0)], || {
        (0..5).map(|i| h.send(f.pool, Job::Rec(i)).is_ok()).collect::<Vec<_>>()
    });
    assert_eq!(sent, [true; 5]);
    assert!(settles(Duration::from_secs(3), || f.r.info().held == 0), "{:?}", f.r.info());
    let info = f.r.info();
    assert_eq!(info.shed, 0, "no send was refused: {info:?}");
    assert!(info.shed_accepted > 0, "the pool gave up with messages on their way: {info:?}");
    assert_eq!(f.done().len() as u64 + info.shed_accepted, 5, "{info:?}");
    f.node.stop();
}
