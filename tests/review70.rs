//! Review 70, of review 65's commits: a pool's cells freed when a retired worker ends and taken
//! again by the next worker a resize adds, the factory taken when the pool stops, and the
//! request's box carrying an answer (or a skipped request) home to its connection's shard.

mod review_support;
mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use pinion::http::{Method, Request, Response};
use pinion::web::{WebHandler, WebServer, WebServerOptions, WebWorker};
use pinion::{
    Actor, Context, ExitReason, Message, NodeHandle, Pid, Placement, Pool, PoolError, PoolOptions, PoolRef,
    ProcessOptions, SendError, ShardId,
};
use review_support::{Client, lock, processes, quiet_worker_panics, start_node, wait_until};
use support::Latch;

/// What a test worker is sent.
#[derive(Debug)]
enum Job {
    /// Waits for a permit of the latch (in progress until then), then records the id.
    Hold(u64),
    /// Records the id at once.
    Quick(u64),
    /// Panics.
    Panic,
}

struct W {
    latch: Arc<Latch>,
    done: Arc<Mutex<Vec<u64>>>,
}

impl Actor for W {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<Job>() {
            Ok(Job::Hold(id)) => {
                self.latch.acquire().await;
                lock(&self.done).push(id);
            }
            Ok(Job::Quick(id)) => lock(&self.done).push(id),
            Ok(Job::Panic) => panic!("review70: a test worker panics on request"),
            Err(other) => panic!("unexpected message {other:?}"),
        }
        Ok(())
    }
}

/// Sends `Hold` ids from `base` until the pool refuses one; how many it accepted (it must
/// refuse at once, never lose one: a refused message comes back).
fn fill(h: &NodeHandle, pool: Pid, base: u64) -> u64 {
    for id in base..base + 10_000 {
        match h.send(pool, Job::Hold(id)) {
            Ok(()) => {}
            Err(SendError::MailboxFull(Job::Hold(back))) => {
                assert_eq!(back, id);
                return id - base;
            }
            Err(e) => panic!("send {id}: {e}"),
        }
    }
    panic!("the pool never refused");
}

/// The pool settled at `size` workers, all running, none retiring, nothing held.
fn settled(pool: &PoolRef, size: usize, capacity: u32) -> bool {
    let info = pool.info();
    info.size == size && info.workers.iter().all(|w| w.pid.is_some()) && info.held == 0 && info.capacity == capacity
}

#[test]
fn cells_taken_again_after_resizes_and_crashes_keep_the_pool_exact() {
    quiet_worker_panics();
    let node = start_node("r70-cells", 2);
    let h = node.handle();
    let base = processes(&h);
    let latch = Latch::new();
    let done = Arc::new(Mutex::new(Vec::new()));
    const MAILBOX: usize = 3;
    let cap = (MAILBOX + 1) as u32;
    let options = {
        let (latch, done) = (latch.clone(), done.clone());
        PoolOptions::new(2, MAILBOX, move || W { latch: latch.clone(), done: done.clone() })
    };
    let pid = h.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let pool = h.pool(pid).expect("a pool");
    // Resizes that retire workers and free their cells, crashes in cells about to be freed or
    // just taken again, and quick messages from another thread the while.
    let stop = Arc::new(AtomicBool::new(false));
    let quick_sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (h, stop, quick_sent) = (h.clone(), stop.clone(), quick_sent.clone());
        std::thread::spawn(move || {
            let mut id = 1_000_000u64;
            while !stop.load(Ordering::SeqCst) && id < 1_000_000 + 200_000 {
                if h.send(pid, Job::Quick(id)).is_ok() {
                    quick_sent.fetch_add(1, Ordering::SeqCst);
                }
                id += 1;
            }
        })
    };
    for cycle in 0..40 {
        pool.resize(6).expect("grow");
        if cycle % 2 == 0 {
            let _ = h.send(pid, Job::Panic);
        }
        pool.resize(2).expect("shrink");
        if cycle % 3 == 0 {
            let _ = h.send(pid, Job::Panic);
        }
    }
    stop.store(true, Ordering::SeqCst);
    sender.join().expect("sender");
    wait_until("the pool settles at 2 workers", || settled(&pool, 2, 2 * cap));
    // No process besides the manager and its 2 workers (none outside the pool's cells).
    wait_until("3 processes", || processes(&h) == base + 3);
    wait_until("every quick message accepted is done", || lock(&done).len() == quick_sent.load(Ordering::SeqCst));
    lock(&done).clear();
    // Exact: 2 × (mailbox + 1) accepted, the next refused at once.
    assert_eq!(fill(&h, pid, 0), 2 * u64::from(cap), "{:?}", pool.info());
    // Grown again: the 4 new workers take the cells freed above; exact as well.
    pool.resize(6).expect("grow");
    wait_until("6 workers running", || {
        let info = pool.info();
        info.size == 6 && info.workers.iter().all(|w| w.pid.is_some())
    });
    let info = pool.info();
    assert_eq!(info.capacity, 6 * cap, "{info:?}");
    assert_eq!(fill(&h, pid, 100), 4 * u64::from(cap), "{:?}", pool.info());
    latch.open();
    wait_until("every message accepted is done", || lock(&done).len() == 6 * cap as usize);
    let mut ids = lock(&done).clone();
    ids.sort_unstable();
    let want: Vec<u64> = (0..2 * u64::from(cap)).chain(100..100 + 4 * u64::from(cap)).collect();
    assert_eq!(ids, want, "each accepted message done once");
    wait_until("nothing held", || settled(&pool, 6, 6 * cap));
    // Each worker in a cell of its own, and no worker running outside the pool's cells.
    let mut pids: Vec<Pid> = pool.info().workers.iter().filter_map(|w| w.pid).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 6, "{:?}", pool.info());
    assert_eq!(processes(&h), base + 7, "processes besides the manager and its 6 workers");
    node.stop();
}

#[test]
fn a_resize_racing_the_stop_starts_no_worker_that_outlives_it_and_the_factory_goes() {
    let node = start_node("r70-factory", 2);
    let h = node.handle();
    let base = processes(&h);
    let held = Arc::new(());
    for _ in 0..20 {
        let latch = Latch::new();
        let done = Arc::new(Mutex::new(Vec::new()));
        let captured = held.clone();
        let options = PoolOptions::new(1, 2, move || {
            let _ = &captured;
            W { latch: latch.clone(), done: done.clone() }
        });
        let pid = h.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
        let pool = h.pool(pid).expect("a pool");
        let resizes = Arc::new(AtomicUsize::new(0));
        let resizer = {
            let (pool, resizes) = (pool.clone(), resizes.clone());
            std::thread::spawn(move || {
                // Bounded: each resize only queues its workers' starts and retirements, and a
                // thread resizing without pause outruns the shards.
                for i in 0..400usize {
                    match pool.resize(1 + i % 4) {
                        Ok(()) => {
                            resizes.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(PoolError::Stopping) => return,
                        Err(e) => panic!("resize: {e}"),
                    }
                }
            })
        };
        wait_until("some resizes", || resizes.load(Ordering::SeqCst) >= 10);
        h.exit(pid, ExitReason::Shutdown);
        resizer.join().expect("resizer");
        wait_until("the pool stops", || pool.info().stopping);
        assert!(matches!(pool.resize(3), Err(PoolError::Stopping)), "a stopped pool resized");
        wait_until("every worker ended", || processes(&h) == base);
        drop(pool);
    }
    assert_eq!(Arc::strong_count(&held), 1, "a stopped pool's factory is still held");
    node.stop();
}

/// `GET /slow` waits for a permit of the latch; every answer names what it answers.
struct Slow {
    latch: Arc<Latch>,
    began: Arc<AtomicUsize>,
    served: Arc<Mutex<Vec<String>>>,
}

impl WebWorker for Slow {
    const METHODS: Option<&'static [Method]> = Some(&[Method::Get, Method::Post]);

    async fn handle_get(&mut self, _: &mut Context, req: &Request) -> Response {
        self.began.fetch_add(1, Ordering::SeqCst);
        if req.path() == "/slow" {
            self.latch.acquire().await;
        }
        lock(&self.served).push(req.path().to_owned());
        Response::text(format!("get {}", req.path()))
    }

    async fn handle_post(&mut self, _: &mut Context, req: &Request) -> Response {
        lock(&self.served).push(req.path().to_owned());
        Response::text(format!("post {} {}", req.path(), String::from_utf8_lossy(req.body())))
    }
}

fn post(path: &str, body: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

#[test]
fn answers_and_skipped_requests_carried_home_never_reach_the_connection_that_took_the_token() {
    // The connection on shard 0, its worker on shard 1: an answer goes home in its request's
    // box, and so does a request the worker skips (its client gone), to be parsed into again.
    let node = start_node("r70-home", 2);
    let h = node.handle();
    let (latch, began, served) = (Latch::new(), Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(Vec::new())));
    let options = {
        let (latch, began, served) = (latch.clone(), began.clone(), served.clone());
        PoolOptions::new(1, 16, move || Slow { latch: latch.clone(), began: began.clone(), served: served.clone() })
            .placement(Placement::Shards(vec![ShardId(1)]))
    };
    let pool = h.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let options = WebServerOptions {
        shards: Some(vec![ShardId(0)]),
        ..WebServerOptions::new("127.0.0.1", 0, WebHandler::to(pool))
    };
    let server = WebServer::start(&h, options).expect("server");
    for round in 0..4 {
        // A's first request holds the worker; two more of A's wait behind it (one with a body).
        let mut a = Client::connect(server.local_addr());
        let ahead = began.load(Ordering::SeqCst);
        a.send(
            format!(
                "GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /queued-a HTTP/1.1\r\nHost: x\r\n\r\n{}",
                post("/body-a", "from a")
            )
            .as_bytes(),
        );
        wait_until("the worker holds /slow", || began.load(Ordering::SeqCst) == ahead + 1);
        // A resets; B connects (under the token A left) and pipelines requests with a body.
        socket2::SockRef::from(&a.s).set_linger(Some(Duration::ZERO)).expect("linger");
        drop(a);
        wait_until("A's connection closed", || server.stats().connections == 0);
        let mut b = Client::connect(server.local_addr());
        let body = format!("from b {round}");
        b.send(format!("{}GET /b HTTP/1.1\r\nHost: x\r\n\r\n", post("/body-b", &body)).as_bytes());
        wait_until("B's connection open", || server.stats().connections == 1);
        latch.release(1);
        // /slow's answer, and A's requests skipped unanswered, went home and found B there:
        // none is B's.
        let first = b.response();
        assert_eq!((first.status, first.text()), (200, format!("post /body-b {body}")), "round {round}");
        let second = b.response();
        assert_eq!((second.status, second.text()), (200, "get /b".to_owned()), "round {round}");
        let seen = lock(&served).clone();
        assert!(!seen.iter().any(|p| p.ends_with("-a")), "A's queued requests were served: {seen:?}");
        lock(&served).clear();
    }
    drop(server);
    node.stop();
}
