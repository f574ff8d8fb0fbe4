//! Review 37 (stop 31): pools after the idle-first placement (`e3e5c1a`). No failing test:
//! what it checked, kept — resizes down to one worker a shard and back with crashes and kills
//! while senders on both shards and outside threads race (nothing handled twice, nothing
//! accepted lost, every call answered, every slot back); the exact bound with several workers
//! a shard, more than four on one, and after a shrink; bursts of pipelined requests through
//! a pool being resized. Every wait and loop is bounded.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pinion::{
    Actor, CallError, Context, ExitReason, Message, Pid, Placement, Pool, PoolOptions, ProcessOptions, Reply,
    SendError, ShardId,
};
use support::{Latch, lock, node, wait_until};

#[derive(Debug)]
enum M {
    Id(u64),
    Crash,
}

#[derive(Default)]
struct Book {
    done: Mutex<Vec<u64>>,
}

struct W {
    book: Arc<Book>,
    latch: Option<Arc<Latch>>,
}

impl Actor for W {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<M>() {
            Ok(M::Id(id)) => {
                if let Some(l) = &self.latch {
                    l.acquire().await;
                } else if id % 3 == 0 {
                    ctx.yield_now().await;
                }
                lock(&self.book.done).push(id);
            }
            Ok(M::Crash) => panic!("review37 crash"),
            Err(other) => panic!("unexpected {other:?}"),
        }
        Ok(())
    }

    async fn handle_call(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<Reply, ExitReason> {
        let id = msg.downcast::<u64>().expect("u64");
        if let Some(l) = &self.latch {
            l.acquire().await;
        }
        lock(&self.book.done).push(id);
        Ok(Reply::now(id))
    }
}

/// A process that sends `left` messages to `to`, in batches, re-arming itself between them.
struct Pump {
    to: Pid,
    next: u64,
    left: u64,
    accepted: Arc<Mutex<Vec<u64>>>,
    done: Arc<AtomicUsize>,
}

struct Tick;

impl Actor for Pump {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if msg.downcast::<Tick>().is_err() {
            return Ok(());
        }
        for _ in 0..20 {
            if self.left == 0 {
                break;
            }
            self.left -= 1;
            self.next += 1;
            match ctx.send(self.to, M::Id(self.next)) {
                Ok(()) => lock(&self.accepted).push(self.next),
                Err(SendError::MailboxFull(_)) => {}
                Err(e) => panic!("pump send: {e}"),
            }
        }
        if self.left == 0 {
            self.done.fetch_add(1, Ordering::SeqCst);
        } else {
            let me = ctx.pid();
            let _ = ctx.send(me, Tick);
        }
        Ok(())
    }
}

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

/// Senders on both shards and outside threads, calls among them, while the pool shrinks to one
/// worker a shard (and to one on one shard) and grows back, and workers crash and are killed:
/// every accepted message handled exactly once, every call answered, every slot back.
fn chaos(name: &str, mailbox: usize, sizes: &[usize], kills: bool) {
    let node = node(name, 2);
    let book = Arc::new(Book::default());
    let b = book.clone();
    let mut options = PoolOptions::new(4, mailbox, move || W { book: b.clone(), latch: None });
    options.restart_intensity = u32::MAX;
    let pool = node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let h = node.handle();
    let r = h.pool(pool).expect("pool");
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let pumps_done = Arc::new(AtomicUsize::new(0));
    for s in 0..2u16 {
        for k in 0..2u64 {
            let (accepted, done) = (accepted.clone(), pumps_done.clone());
            let base = (10 + u64::from(s) * 2 + k) << 40;
            let p = node
                .spawn_on(
                    ShardId(s),
                    move || Pump { to: pool, next: base, left: 20_000, accepted, done },
                    ProcessOptions::default(),
                )
                .wait()
                .expect("pump");
            node.send(p, Tick).expect("tick");
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let timeouts = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let (h, stop, accepted, timeouts) = (h.clone(), stop.clone(), accepted.clone(), timeouts.clone());
            std::thread::spawn(move || {
                let begun = Instant::now();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) && begun.elapsed() < Duration::from_secs(20) && n < 200_000 {
                    n += 1;
                    let id = (t + 1) << 40 | n;
                    if n.is_multiple_of(40) {
                        match h.call_blocking(pool, id, Duration::from_secs(5)) {
                            Ok(_) => lock(&accepted).push(id),
                            Err(CallError::Timeout) => {
                                timeouts.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(_) => {}
                        }
                    } else if h.send(pool, M::Id(id)).is_ok() {
                        lock(&accepted).push(id);
                    }
                }
            })
        })
        .collect();
    let begun = Instant::now();
    let mut k = 0usize;
    while begun.elapsed() < Duration::from_secs(3) && k < 5000 {
        k += 1;
        match k % 4 {
            0 if kills => {
                let _ = h.send(pool, M::Crash);
            }
            1 if kills => {
                if let Some(w) = r.info().workers.get(k % 3).and_then(|w| w.pid) {
                    h.exit(w, ExitReason::Kill);
                }
            }
            2 | 3 => r.resize(sizes[(k / 4) % sizes.len()]).expect("resize"),
            _ => {}
        }
        std::thread::sleep(Duration::from_micros(700));
    }
    r.resize(4).expect("resize back");
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().expect("thread");
    }
    assert!(settles(Duration::from_secs(20), || pumps_done.load(Ordering::SeqCst) == 4), "pumps");
    assert_eq!(timeouts.load(Ordering::SeqCst), 0, "calls not answered");
    let held_back = settles(Duration::from_secs(10), || r.info().held == 0);
    let accepted: Vec<u64> = lock(&accepted).clone();
    let settled = settles(Duration::from_secs(10), || lock(&book.done).len() >= accepted.len());
    let done = lock(&book.done).clone();
    let set: HashSet<u64> = done.iter().copied().collect();
    assert_eq!(set.len(), done.len(), "a message handled twice");
    let acc: HashSet<u64> = accepted.iter().copied().collect();
    let lost: Vec<u64> = acc.difference(&set).copied().take(10).collect();
    let extra: Vec<u64> = set.difference(&acc).copied().take(10).collect();
    let info = r.info();
    assert!(held_back, "slots held after quiescence: {info:?}");
    // A kill can find a message in hand (handlers that yield): only those may be missing.
    if !kills {
        assert!(settled && lost.is_empty(), "{} accepted, {} handled; lost {lost:?}", accepted.len(), done.len());
    }
    assert!(extra.is_empty(), "handled but refused: {extra:?}");
    assert!(!info.stopping);
    node.stop();
}

#[test]
fn chaos_shrinking_to_one_a_shard_and_back() {
    chaos("r37-chaos-resize", 2, &[2, 4, 1, 3, 6, 2], false);
}

#[test]
fn chaos_shrinking_with_crashes_and_kills() {
    chaos("r37-chaos-kills", 2, &[2, 4, 1, 3, 6, 2], true);
}

#[test]
fn chaos_mailbox_zero() {
    chaos("r37-chaos-m0", 0, &[2, 5, 1, 8, 3], false);
}

/// Held workers, `size` of them on `shards` of a 2-shard node, senders on both shards and
/// outside threads: exactly `size × (mailbox + 1)` accepted, each handled once, every slot back.
fn exact(name: &str, size: usize, mailbox: usize, placement: Placement) {
    let node = node(name, 2);
    let book = Arc::new(Book::default());
    let latch = Latch::new();
    let (b, l) = (book.clone(), latch.clone());
    let options =
        PoolOptions::new(size, mailbox, move || W { book: b.clone(), latch: Some(l.clone()) }).placement(placement);
    let pool = node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let h = node.handle();
    let r = h.pool(pool).expect("pool");
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let pumps_done = Arc::new(AtomicUsize::new(0));
    let cap = size * (mailbox + 1);
    for s in 0..2u16 {
        let (accepted, done) = (accepted.clone(), pumps_done.clone());
        let base = (10 + u64::from(s)) << 40;
        let p = node
            .spawn_on(
                ShardId(s),
                move || Pump { to: pool, next: base, left: cap as u64, accepted, done },
                ProcessOptions::default(),
            )
            .wait()
            .expect("pump");
        node.send(p, Tick).expect("tick");
    }
    let threads: Vec<_> = (0..2u64)
        .map(|t| {
            let (h, accepted) = (h.clone(), accepted.clone());
            std::thread::spawn(move || {
                for n in 0..cap as u64 {
                    let id = (t + 1) << 40 | n;
                    if h.send(pool, M::Id(id)).is_ok() {
                        lock(&accepted).push(id);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    wait_until("pumps", || pumps_done.load(Ordering::SeqCst) == 2);
    let n = lock(&accepted).len();
    let info = r.info();
    assert_eq!(n, cap, "accepted with every worker held: {info:?}");
    assert_eq!(info.held as usize, cap, "{info:?}");
    latch.open();
    wait_until("all handled", || lock(&book.done).len() >= n);
    wait_until("every slot back", || r.info().held == 0);
    let mut d = lock(&book.done).clone();
    d.sort_unstable();
    d.dedup();
    assert_eq!(d.len(), n);
    node.stop();
}

#[test]
fn exact_three_a_shard() {
    exact("r37-exact-3", 6, 1, Placement::Spread);
}

#[test]
fn exact_six_on_one_shard_mailbox_zero() {
    exact("r37-exact-6", 6, 0, Placement::Shards(vec![ShardId(1)]));
}

#[test]
fn exact_after_shrink_and_grow() {
    // Start at 6 on one shard, shrink to 1 and grow to 5 before filling.
    let node = node("r37-exact-resized", 2);
    let book = Arc::new(Book::default());
    let latch = Latch::new();
    let (b, l) = (book.clone(), latch.clone());
    let options = PoolOptions::new(6, 1, move || W { book: b.clone(), latch: Some(l.clone()) })
        .placement(Placement::Shards(vec![ShardId(1), ShardId(1), ShardId(0)]));
    let pool = node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let r = node.handle().pool(pool).expect("pool");
    r.resize(1).expect("shrink");
    wait_until("one left", || r.info().size == 1);
    r.resize(5).expect("grow");
    wait_until("five up", || r.info().capacity == 10);
    let mut ok = 0;
    for i in 0..40 {
        if node.handle().send(pool, M::Id(i)).is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 10, "{:?}", r.info());
    latch.open();
    wait_until("every slot back", || r.info().held == 0);
    node.stop();
}

mod web {
    use std::io::Write;
    use std::net::TcpStream;

    use pinion::http::{Request, Response};
    use pinion::web::{Router, WebHandler, WebRequest, WebServer, WebServerOptions, WebTarget};

    use super::*;

    struct Quick;
    impl Actor for Quick {
        async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
            if let Ok(req) = msg.downcast::<WebRequest>() {
                if req.request().path().ends_with('3') {
                    ctx.yield_now().await;
                }
                req.respond(Response::text(format!("ok {}", ctx.pid())));
            }
            Ok(())
        }
    }

    /// Pipelined bursts (slots taken ahead) from several connections while the pool of
    /// several workers a shard shrinks to one a shard and grows back and workers are killed.
    #[test]
    fn web_bursts_while_resizing_and_killing() {
        let node = node("r37-web", 2);
        let mut options = PoolOptions::new(4, 2, || Quick);
        options.restart_intensity = u32::MAX;
        let pool = node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
        let h = node.handle();
        let killer = h.clone();
        let router =
            Router::new().route("/w/{n}", WebHandler::to(WebTarget::Pid(pool))).get("/kill", move |_: &Request| {
                let info = killer.pool(pool).ok().map(|r| r.info());
                if let Some(w) = info.and_then(|i| i.workers.iter().rev().find_map(|w| w.pid)) {
                    killer.exit(w, ExitReason::Kill);
                }
                Response::text("killed")
            });
        let server = WebServer::start(&node, WebServerOptions::new("127.0.0.1", 0, router)).expect("server");
        let addr = server.local_addr();
        let r = h.pool(pool).expect("pool");
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Vec<_> = (0..3)
            .map(|c| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut bad = Vec::new();
                    let mut rounds = 0;
                    while !stop.load(Ordering::SeqCst) && rounds < 400 {
                        rounds += 1;
                        let mut s = TcpStream::connect(addr).expect("connect");
                        let burst: String = (0..12)
                            .map(|i| {
                                let t = if c == 0 && i == 5 { "/kill".to_string() } else { format!("/w/{i}") };
                                format!("GET {t} HTTP/1.1\r\nHost: x\r\n\r\n")
                            })
                            .collect();
                        s.write_all(burst.as_bytes()).unwrap();
                        let got = support::read_statuses(&mut s, 12);
                        if got.len() != 12 || got.iter().any(|st| ![200, 500, 503].contains(st)) {
                            bad.push(got);
                        }
                    }
                    bad
                })
            })
            .collect();
        let begun = Instant::now();
        let mut k = 0;
        while begun.elapsed() < Duration::from_secs(3) {
            k += 1;
            r.resize([4, 2, 1, 5, 2, 6][k % 6]).expect("resize");
            std::thread::sleep(Duration::from_millis(2));
        }
        stop.store(true, Ordering::SeqCst);
        for c in conns {
            let bad = c.join().expect("conn");
            assert!(bad.is_empty(), "{bad:?}");
        }
        assert!(settles(Duration::from_secs(10), || r.info().held == 0), "{:?}", r.info());
        node.stop();
    }
}

/// Calls fill a pool of held workers from outside threads and both shards' senders while it
/// is resized; then the pool is stopped and the latch opened: every call is answered.
#[test]
fn every_call_answered_when_a_full_pool_stops() {
    for (round, reason) in [ExitReason::Kill, ExitReason::Shutdown].into_iter().enumerate() {
        let node = node(&format!("r37-stop-{round}"), 2);
        let book = Arc::new(Book::default());
        let latch = Latch::new();
        let (b, l) = (book.clone(), latch.clone());
        let options = PoolOptions::new(5, 2, move || W { book: b.clone(), latch: Some(l.clone()) });
        let pool = node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
        let h = node.handle();
        let r = h.pool(pool).expect("pool");
        let (tx, rx) = std::sync::mpsc::channel();
        let threads: Vec<_> = (0..20u64)
            .map(|t| {
                let (h, tx) = (h.clone(), tx.clone());
                std::thread::spawn(move || {
                    let res = h.call_blocking(pool, t, Duration::from_secs(15));
                    let _ = tx.send((t, res.map(|_| ())));
                })
            })
            .collect();
        r.resize(3).expect("shrink");
        wait_until("full or refused", || r.info().held >= 9 || rx.try_iter().count() > 0 && r.info().held >= 9);
        h.exit(pool, reason.clone());
        std::thread::sleep(Duration::from_millis(50));
        latch.open();
        for t in threads {
            t.join().expect("thread");
        }
        drop(tx);
        let results: Vec<_> = rx.try_iter().collect();
        let timeouts: Vec<_> = results.iter().filter(|(_, r)| matches!(r, Err(CallError::Timeout))).collect();
        assert!(timeouts.is_empty(), "{reason:?}: calls never answered: {timeouts:?} of {results:?}");
        node.stop();
    }
}
