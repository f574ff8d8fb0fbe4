//! The actor path allocates nothing per request once warm, as the plain-function path does
//! (`tests/alloc.rs`), on the connection's shard; to another shard, nothing but the blocks of
//! the shards' inbox queues (one per 31 messages). A keep-alive connection hands requests through a router and a
//! `WebHandler` to a pool of `WebWorker`s (or to one worker process) on its own shard and on
//! another shard, GET answered in `handle_now` or in the async `handle_get`, POST with a small
//! body in the async `handle_post`, requests dropped unanswered (500) or skipped as expired
//! (504), pipelined and one at a time. A counting global allocator watches; the first allocation after warm-up is traced.
//! (Its own binary, one test driving every scenario: nothing else runs in the process
//! meanwhile.)

mod counting;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use counting::Counting;
use pinion::http::{Method, Request, Response};
use pinion::web::{Router, WebHandler, WebHandlerOptions, WebRequest, WebServer, WebServerOptions, WebWorker};
use pinion::{Context, Cores, Node, NodeOptions, Placement, Pool, PoolOptions, ProcessOptions, ShardId};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// GET in `handle_now` (no future), but in the async `handle_get` for a path ending in
/// `-async`; POST in the async method. No answer allocates. A request for a path ending in
/// `-drop` is taken and dropped unanswered (the runtime answers 500).
struct Hello;

impl WebWorker for Hello {
    const METHODS: Option<&'static [Method]> = Some(&[Method::Get, Method::Post]);
    const TAKES_REQUESTS: bool = true;

    fn handle_now(&mut self, _: &mut Context, req: &Request) -> Option<Response> {
        let now = req.method() == Method::Get && !req.path().ends_with("-async") && !req.path().ends_with("-drop");
        now.then(|| Response::text("Hello, World!"))
    }

    async fn take_request(&mut self, _: &mut Context, req: WebRequest) -> Option<WebRequest> {
        (!req.request().path().ends_with("-drop")).then_some(req)
    }

    async fn handle_get(&mut self, _: &mut Context, _: &Request) -> Response {
        Response::text("Hello, World!")
    }

    async fn handle_post(&mut self, _: &mut Context, req: &Request) -> Response {
        Response::text(if req.body() == b"ping=1" { "posted" } else { "wrong body" })
    }
}

/// Counts the occurrences of a needle in a stream read in pieces, without allocating.
struct Needle {
    text: &'static [u8],
    at: usize,
    seen: usize,
}

impl Needle {
    fn new(text: &'static [u8]) -> Needle {
        Needle { text, at: 0, seen: 0 }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == self.text[self.at] {
                self.at += 1;
                if self.at == self.text.len() {
                    self.seen += 1;
                    self.at = 0;
                }
            } else {
                self.at = usize::from(b == self.text[0]);
            }
        }
    }
}

/// Writes `batch` (`gets` GETs and `posts` POSTs) and reads until as many responses are in;
/// each must be the worker's, or each a refusal whose status line starts `refused`.
fn round(
    stream: &mut TcpStream,
    batch: &[u8],
    gets: usize,
    posts: usize,
    refused: Option<&'static [u8]>,
    buf: &mut [u8],
) {
    stream.write_all(batch).expect("write");
    let all = gets + posts;
    let want = if refused.is_some() { [all, 0, 0, all] } else { [all, gets, posts, 0] };
    let mut needles =
        [b"HTTP/1.1 ".as_slice(), b"Hello, World!", b"posted", refused.unwrap_or(b"HTTP/1.1 5")].map(Needle::new);
    while needles.iter().zip(want).any(|(n, w)| n.seen < w) {
        let n = stream.read(buf).expect("read");
        assert!(n > 0, "server closed the connection");
        for needle in &mut needles {
            needle.feed(&buf[..n]);
        }
        assert!(needles.iter().zip(want).all(|(n, w)| n.seen <= w), "unexpected answers");
    }
}

/// A `Hello` on `shard` (a process of its own), its pid.
fn process_on(node: &Node, shard: u16) -> pinion::Pid {
    node.handle().spawn_on(ShardId(shard), || Hello, ProcessOptions::with_mailbox(256)).wait().expect("worker")
}

/// A pool of one `Hello` on `shard`, its pid.
fn pool_on(node: &Node, shard: u16) -> pinion::Pid {
    let options = PoolOptions::new(1, 256, || Hello).placement(Placement::Shards(vec![ShardId(shard)]));
    node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool")
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: alloc-test\r\n\r\n")
}

fn post(path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 6\r\n\r\nping=1"
    )
}

#[test]
fn the_actor_path_allocates_nothing_per_request_once_warm() {
    // Two shards; the server listens on shard 0 only, so the connection is on shard 0.
    let node = Node::start("alloc-actor", NodeOptions { cores: Cores::Count(2), pin: false, ..Default::default() })
        .expect("start a node");
    let pools = [pool_on(&node, 0), pool_on(&node, 1)];
    let (same, other) = (WebHandler::to(pools[0]), WebHandler::to(pools[1]));
    // Every request expired as soon as read: its worker skips it (its async methods), and the
    // connection answers 504.
    let late = |pid| {
        WebHandler::new(WebHandlerOptions { request_timeout: Duration::from_nanos(1), ..WebHandlerOptions::new(pid) })
    };
    let router = Router::new()
        .route("/same", same.clone())
        .route("/same-async", same.clone())
        .route("/same-drop", same)
        .route("/other", other.clone())
        .route("/other-async", other.clone())
        .route("/other-drop", other)
        // A worker that is a plain process, not a pool's.
        .route("/same-late-async", late(pools[0]))
        .route("/other-late-async", late(pools[1]))
        .route("/same-process", WebHandler::to(process_on(&node, 0)))
        .route("/other-process", WebHandler::to(process_on(&node, 1)));
    let options = WebServerOptions { shards: Some(vec![ShardId(0)]), ..WebServerOptions::new("127.0.0.1", 0, router) };
    let server = WebServer::start(&node.handle(), options).expect("start");
    let mut stream = TcpStream::connect(server.local_addr()).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut buf = vec![0u8; 64 * 1024];

    let mut report = Vec::new();
    let paths = ["/same", "/same-async", "/same-drop", "/same-late-async", "/same-process"];
    let others = paths.map(|p| p.replacen("same", "other", 1));
    for path in paths.into_iter().chain(others.iter().map(String::as_str)) {
        // Dropped unanswered: 500. Skipped as expired: 504.
        let refused: Option<&'static [u8]> = if path.ends_with("-drop") {
            Some(b"HTTP/1.1 500")
        } else {
            path.contains("-late").then_some(b"HTTP/1.1 504")
        };
        // (name, batch, GETs, POSTs)
        let one_get = get(path).into_bytes();
        let one_post = post(path).into_bytes();
        let mixed: Vec<u8> =
            (0..8).flat_map(|_| get(path).into_bytes().into_iter().chain(post(path).into_bytes())).collect();
        let gets: Vec<u8> = (0..16).flat_map(|_| get(path).into_bytes()).collect();
        let scenarios: [(&str, &[u8], usize, usize); 4] = [
            ("one GET", &one_get, 1, 0),
            ("one POST", &one_post, 0, 1),
            ("16 GETs", &gets, 16, 0),
            ("8 GET+POST", &mixed, 8, 8),
        ];
        for (name, batch, g, p) in scenarios {
            // (Each 504 waits for a tick of the connection's timers: fewer rounds of those.)
            let rounds = if refused == Some(b"HTTP/1.1 504") { 60 } else { 300 };
            for _ in 0..rounds {
                round(&mut stream, batch, g, p, refused, &mut buf);
            }
            let before = counting::allocations();
            counting::arm();
            for _ in 0..rounds {
                round(&mut stream, batch, g, p, refused, &mut buf);
            }
            let trace = counting::traces();
            let allocated = counting::allocations() - before;
            report.push((path, name, allocated, rounds * (g + p), trace));
        }
    }
    drop(stream);
    server.stop();
    node.stop();
    // On the connection's shard, nothing. To a worker on another shard, nothing but the
    // cross-shard queues' blocks: each lane of a shard's inbox is a queue that allocates a
    // block every 31 messages (a request there and its answer back are two), so about one
    // allocation per 15 requests: at most one per 8 is asked. A request skipped as expired
    // comes back to its connection after its 504, sometimes after the next requests were
    // read: those take new boxes, and how many are in use depends on how late the skipped
    // ones come back; fewer than one allocation per two requests is asked there. (Before
    // review 65: the box of each request allocated on the connection's shard and freed on the
    // worker's, and the box of each answer's trip back, made two a request, answered or
    // dropped unanswered; a request skipped as expired made its connection allocate a request
    // anew, 3 to 4.5 allocations a request, on either shard.)
    let mut failed = String::new();
    for (path, name, allocated, requests, trace) in &report {
        eprintln!("{path} {name}: {allocated} allocations over {requests} requests");
        let most = match (path.contains("-late"), path.starts_with("/same")) {
            (true, _) => *requests as u64 / 2,
            (false, true) => 0,
            (false, false) => (*requests as u64).div_ceil(8),
        };
        if *allocated > most {
            let trace = trace.join("\n");
            failed.push_str(&format!(
                "{path} {name}: {allocated} allocations over {requests} requests, the first at:\n{trace}\n"
            ));
        }
    }
    assert!(failed.is_empty(), "{failed}");
}
