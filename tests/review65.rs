//! Review 65: memory of the actor path over long runs. A counting allocator's live bytes are
//! read at two plateaus of a bounded loop (everything answered, every connection closed, every
//! worker settled) and must not grow with the number of cycles between them: a connection
//! that once sent a head and a body near the limits, connection churn with pipelined bursts of
//! every size, a pool resized up and down and workers panicking, requests answered 504 whose
//! worker answers later. To workers on the connection's shard and on another shard (2 shards,
//! the server on shard 0). The tests run one at a time (`MEASURE`): live bytes are the
//! process's.

mod counting;
mod review_support;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pinion::http::{HttpLimits, Method, Request, Response};
use pinion::web::{Router, WebHandler, WebHandlerOptions, WebServer, WebServerOptions, WebWorker};
use pinion::{Context, Node, Pid, Placement, Pool, PoolOptions, PoolRef, ProcessOptions, ShardId};
use review_support::{Client, Resp, get, processes, quiet_worker_panics, start_node, wait_until};
use support::Latch;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

static MEASURE: Mutex<()> = Mutex::new(());

/// `GET /hello` in `handle_now`; `GET /panic` panics there; `GET /slow` waits for a permit of
/// its latch before it answers; `POST` answers the body's length.
struct Worker {
    latch: Arc<Latch>,
}

impl WebWorker for Worker {
    const METHODS: Option<&'static [Method]> = Some(&[Method::Get, Method::Post]);

    fn handle_now(&mut self, _: &mut Context, req: &Request) -> Option<Response> {
        match (req.method(), req.path()) {
            (Method::Get, p) if p.ends_with("/panic") => panic!("review65: a worker panics"),
            (Method::Get, p) if p.ends_with("/slow") => None,
            (Method::Get, _) => Some(Response::text("hello")),
            _ => None,
        }
    }

    async fn handle_get(&mut self, _: &mut Context, _: &Request) -> Response {
        self.latch.acquire().await;
        Response::text("late")
    }

    async fn handle_post(&mut self, _: &mut Context, req: &Request) -> Response {
        Response::text(format!("got {}", req.body().len()))
    }

    const SKIPS_EXPIRED: bool = false;
}

/// A node of two shards, a pool of `size` workers on each of shard 0 and shard 1, and a server
/// on shard 0 routing `/same/...` to the first and `/other/...` to the second.
struct Rig {
    node: Node,
    server: WebServer,
    pools: [Pid; 2],
    latch: Arc<Latch>,
}

impl Rig {
    fn start(name: &str, size: usize, limits: HttpLimits, timeout: Duration) -> Rig {
        let node = start_node(name, 2);
        let latch = Latch::new();
        let pool = |shard: u16| {
            let latch = latch.clone();
            let options = PoolOptions::new(size, 64, move || Worker { latch: latch.clone() })
                .placement(Placement::Shards(vec![ShardId(shard)]));
            node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool")
        };
        let pools = [pool(0), pool(1)];
        let handler =
            |pid| WebHandler::new(WebHandlerOptions { request_timeout: timeout, ..WebHandlerOptions::new(pid) });
        let router = Router::new().route("/same/{what}", handler(pools[0])).route("/other/{what}", handler(pools[1]));
        let options = WebServerOptions {
            limits,
            shards: Some(vec![ShardId(0)]),
            ..WebServerOptions::new("127.0.0.1", 0, router)
        };
        let server = WebServer::start(&node.handle(), options).expect("server");
        Rig { node, server, pools, latch }
    }

    fn client(&self) -> Client {
        Client::connect(self.server.local_addr())
    }

    fn pool(&self, i: usize) -> PoolRef {
        self.node.handle().pool(self.pools[i]).expect("a pool")
    }

    /// Live bytes once every connection closed and both pools hold nothing (see
    /// [`settled_live_open`](Self::settled_live_open)).
    fn settled_live(&self) -> i64 {
        wait_until("the connections closed", || self.server.stats().connections == 0);
        self.settled_live_open()
    }

    /// Live bytes once both pools hold nothing, connections left open: the least of a few
    /// reads (a shard may be finishing a turn).
    fn settled_live_open(&self) -> i64 {
        wait_until("the pools idle", || (0..2).all(|i| self.pool(i).info().held == 0));
        (0..5)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(20));
                counting::live()
            })
            .min()
            .unwrap()
    }

    fn stop(self) {
        self.server.stop();
        self.node.stop();
    }
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    r.extend_from_slice(body);
    r
}

fn expect(r: &Resp, status: u16, body: &str) {
    assert_eq!((r.status, r.text().as_str()), (status, body), "{r:?}");
}

/// Small requests on `c`, to both pools, one at a time and pipelined.
fn small_requests(c: &mut Client) {
    for side in ["same", "other"] {
        c.send(&get(&format!("/{side}/hello")));
        expect(&c.response(), 200, "hello");
        c.send(&post(&format!("/{side}/post"), b"abc"));
        expect(&c.response(), 200, "got 3");
        let burst: Vec<u8> = (0..8).flat_map(|_| get(&format!("/{side}/hello"))).collect();
        c.send(&burst);
        (0..8).for_each(|_| expect(&c.response(), 200, "hello"));
    }
}

/// Runs `warm` cycles, reads the live bytes (`settle`), runs `cycles` more and reads them
/// again: the two plateaus.
fn plateaus(warm: usize, cycles: usize, mut cycle: impl FnMut(usize), settle: impl Fn() -> i64) -> (i64, i64) {
    (0..warm).for_each(&mut cycle);
    let first = settle();
    (warm..warm + cycles).for_each(&mut cycle);
    (first, settle())
}

/// Fails if live bytes grew by more than `most` between the plateaus `a` and `b` (`cycles`
/// cycles apart).
fn assert_settled(what: &str, a: i64, b: i64, cycles: usize, most: i64) {
    eprintln!("{what}: live {a} then {b} bytes {cycles} cycles later ({} bytes a cycle)", (b - a) / cycles as i64);
    assert!(b - a <= most, "{what}: live bytes grew by {} over {cycles} cycles ({a} then {b})", b - a);
}

/// RSS in pages (reported, not asserted: the allocator keeps what it freed).
fn rss_pages() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[test]
fn a_connection_that_once_sent_a_big_head_and_body_gives_the_buffers_back() {
    let _serial = review_support::lock(&MEASURE);
    let limits = HttpLimits::default();
    let rig = Rig::start("r65-big", 1, limits.clone(), Duration::from_secs(10));
    let mut c = rig.client();
    for _ in 0..20 {
        small_requests(&mut c);
    }
    let big_value = "v".repeat(limits.max_head_bytes - 200);
    let big_body = vec![b'b'; limits.max_body_bytes - 10];
    // The connection stays open throughout; its idle state is what is measured.
    let before = rig.settled_live_open();
    let cycle = |c: &mut Client| {
        for side in ["same", "other"] {
            c.send(format!("GET /{side}/hello HTTP/1.1\r\nHost: x\r\nX-Big: {big_value}\r\n\r\n").as_bytes());
            expect(&c.response(), 200, "hello");
            c.send(&post(&format!("/{side}/post"), &big_body));
            expect(&c.response(), 200, &format!("got {}", big_body.len()));
        }
        small_requests(c);
    };
    const CYCLES: usize = 30;
    let (first, last) = plateaus(3, CYCLES, |_| cycle(&mut c), || rig.settled_live_open());
    eprintln!(
        "big head and body: live {before} before, {first} after 3 cycles, {last} after {} (rss {} pages)",
        3 + CYCLES,
        rss_pages()
    );
    drop(c);
    rig.stop();
    // What a shard keeps after a big request is bounded (buffers past 16 KiB are freed): the
    // big body's megabyte must not stay.
    assert!(first - before < 256 * 1024, "a big request left {} bytes live", first - before);
    assert_settled("big head and body", first, last, CYCLES, 16 * 1024);
}

#[test]
fn connection_churn_and_pipelined_bursts_of_every_size_settle() {
    let _serial = review_support::lock(&MEASURE);
    let rig = Rig::start("r65-churn", 1, HttpLimits::default(), Duration::from_secs(10));
    // One cycle: a connection, a burst of `n` requests to both pools (GET and POST), closed.
    let cycle = |i: usize| {
        let mut c = rig.client();
        let n = 1 + i % 40;
        let mut burst = Vec::new();
        for k in 0..n {
            let side = if k % 2 == 0 { "same" } else { "other" };
            burst.extend(if k % 3 == 0 {
                post(&format!("/{side}/post"), b"xy")
            } else {
                get(&format!("/{side}/hello"))
            });
        }
        c.send(&burst);
        for k in 0..n {
            let r = c.response();
            if k % 3 == 0 { expect(&r, 200, "got 2") } else { expect(&r, 200, "hello") }
        }
    };
    const CYCLES: usize = 800;
    let (first, last) = plateaus(200, CYCLES, cycle, || {
        let live = rig.settled_live();
        eprintln!("churn: rss {} pages", rss_pages());
        live
    });
    rig.stop();
    assert_settled("churn", first, last, CYCLES, 16 * 1024);
}

#[test]
fn resizing_a_pool_and_panicking_workers_reuse_what_they_held() {
    let _serial = review_support::lock(&MEASURE);
    quiet_worker_panics();
    let rig = Rig::start("r65-pool", 1, HttpLimits::default(), Duration::from_secs(10));
    let h = rig.node.handle();
    // And a pool spread over both shards, resized without traffic.
    let latch = rig.latch.clone();
    let spread = PoolOptions::new(1, 4, move || Worker { latch: latch.clone() });
    let spread = rig.node.spawn(move || Pool::new(spread), ProcessOptions::default()).wait().expect("pool");
    let spread = h.pool(spread).expect("a pool");
    let pools = [rig.pool(0), rig.pool(1), spread];
    let base = processes(&h);
    // One cycle: the pools grow to 8 workers and the first two serve, a worker of each panics
    // on a request (and is replaced), the pools shrink back to one (seven workers retire and
    // end).
    let cycle = |c: &mut Client| {
        for pool in &pools {
            pool.resize(8).expect("grow");
        }
        wait_until("the pools grew", || pools.iter().all(|p| p.info().workers.iter().all(|w| w.pid.is_some())));
        small_requests(c);
        for side in ["same", "other"] {
            c.send(&get(&format!("/{side}/panic")));
            assert_eq!(c.response().status, 500);
        }
        for pool in &pools {
            pool.resize(1).expect("shrink");
        }
        wait_until("the pools shrank", || processes(&h) == base);
        small_requests(c);
    };
    let mut c = rig.client();
    // Past the warm-up, each shard remembers as many ended workers as it ever will (256: see
    // `pool::dispatch::GRAVES`).
    const CYCLES: usize = 100;
    let (first, last) = plateaus(50, CYCLES, |_| cycle(&mut c), || rig.settled_live_open());
    let infos: Vec<_> = pools.iter().map(PoolRef::info).collect();
    drop(c);
    rig.stop();
    assert!(infos.iter().all(|i| i.workers.len() == 1 && i.held == 0), "{infos:?}");
    // (Each worker a resize added kept a cell for good, 7 more a pool a cycle in chunks
    // doubling: 98 304 bytes more over these 100 cycles, before the cells were reused.)
    assert_settled("resize and panic", first, last, CYCLES, 16 * 1024);
}

#[test]
fn requests_answered_504_and_then_by_their_worker_free_their_slots() {
    let _serial = review_support::lock(&MEASURE);
    let rig = Rig::start("r65-late", 2, HttpLimits::default(), Duration::from_millis(30));
    const CONNECTIONS: usize = 8;
    let cycle = || {
        let mut clients: Vec<Client> = (0..CONNECTIONS).map(|_| rig.client()).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            c.send(&get(if i % 2 == 0 { "/same/slow" } else { "/other/slow" }));
        }
        for c in &mut clients {
            assert_eq!(c.response().status, 504);
        }
        // Now the workers answer, late.
        rig.latch.release(CONNECTIONS);
        wait_until("the late answers", || (0..2).all(|i| rig.pool(i).info().held == 0));
        // Each connection still serves (its slot of the late answer is gone).
        for c in &mut clients {
            c.send(&get("/same/hello"));
            expect(&c.response(), 200, "hello");
        }
    };
    const CYCLES: usize = 40;
    let (first, last) = plateaus(5, CYCLES, |_| cycle(), || rig.settled_live());
    let timed_out = rig.server.stats().timed_out;
    rig.stop();
    assert_eq!(timed_out, (45 * CONNECTIONS) as u64);
    assert_settled("504 then late answers", first, last, CYCLES, 16 * 1024);
}

/// A pool started and stopped over and over (a supervisor's restarts, a pool per job) lets go
/// of what its factory holds when it stops. (The pool's own state, about 3 KB with two shards,
/// stays with the node: senders reach a pool through a raw pointer, see `NodeShared::pools`.)
#[test]
fn a_pool_started_and_stopped_over_and_over_lets_go_of_its_factory() {
    let _serial = review_support::lock(&MEASURE);
    let node = start_node("r65-restart", 2);
    let h = node.handle();
    let base = processes(&h);
    // What the factory holds (a worker's configuration, a client of some service).
    let held = Arc::new([0u8; 1000]);
    let cycle = |_| {
        let latch = Latch::new();
        let held = held.clone();
        let options = PoolOptions::new(4, 16, move || {
            let _ = &held;
            Worker { latch: latch.clone() }
        });
        let pool = h.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
        h.exit(pool, pinion::ExitReason::Shutdown);
        wait_until("the pool stopped", || processes(&h) == base);
    };
    const CYCLES: usize = 100;
    let (first, last) = plateaus(10, CYCLES, cycle, counting::live);
    let holders = Arc::strong_count(&held);
    node.stop();
    eprintln!("pools started and stopped: {} bytes kept a pool", (last - first) / CYCLES as i64);
    assert_eq!(holders, 1, "the factories of {} stopped pools are kept", holders - 1);
}
