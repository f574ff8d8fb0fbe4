//! Review 51: the life of a `WebRequest` and of request bodies, over real sockets. Nodes of 1
//! or 2 shards; every wait is bounded (a hang fails, nothing asserts on timing).

mod review_support;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pinion::http::{HttpLimits, Request, Response, StatusCode};
use pinion::web::{Layer, Router, WebHandler, WebHandlerOptions, WebRequest, WebWorker, body_limit};
use pinion::{Context, ExitReason, Message, Pid, ProcessOptions};
use review_support::{Client, WAIT, get, serve_with, start_node, wait_until};

/// Answers `"<body length> <trailer x-sum or ->"`.
fn echo(r: &Request) -> Response {
    let sum = r.trailers().get("x-sum").map_or("-".to_owned(), |v| String::from_utf8_lossy(v).into_owned());
    Response::text(format!("{} {sum}", r.body().len()))
}

fn post(path: &str, len: usize) -> Vec<u8> {
    let mut b = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n").into_bytes();
    b.extend(std::iter::repeat_n(b'a', len));
    b
}

fn chunked(path: &str, chunks: &[usize], trailer: Option<&str>) -> Vec<u8> {
    let mut b = format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
    for &c in chunks {
        b.extend(format!("{c:x}\r\n").into_bytes());
        b.extend(std::iter::repeat_n(b'b', c));
        b.extend(b"\r\n");
    }
    b.extend(b"0\r\n");
    if let Some(t) = trailer {
        b.extend(t.as_bytes());
        b.extend(b"\r\n");
    }
    b.extend(b"\r\n");
    b
}

fn limited(max: usize, inner: impl pinion::web::Handler) -> Arc<dyn pinion::web::Handler> {
    body_limit(max).wrap(Arc::new(inner))
}

fn body_router() -> Router {
    Router::new().post("/def", echo).post("/small", limited(10, echo)).post("/big", limited(1000, echo))
}

fn limits(max_body: usize) -> HttpLimits {
    HttpLimits { max_body_bytes: max_body, ..HttpLimits::default() }
}

/// One request on a fresh connection: the response.
fn one(addr: std::net::SocketAddr, bytes: &[u8]) -> review_support::Resp {
    let mut c = Client::connect(addr);
    c.send(bytes);
    c.response()
}

#[test]
fn bodies_at_and_past_their_bound_per_route() {
    let node = start_node("r51-bounds", 1);
    let server = serve_with(&node, limits(100), body_router());
    let addr = server.local_addr();
    for (path, bound) in [("/def", 100), ("/small", 10), ("/big", 1000)] {
        let r = one(addr, &post(path, bound));
        assert_eq!((r.status, r.text()), (200, format!("{bound} -")), "{path} at its bound");
        let r = one(addr, &post(path, bound + 1));
        assert_eq!(r.status, 413, "{path} one past its bound (declared)");
        // Chunked: at the bound in two chunks, then one byte past it.
        let half = bound / 2;
        let r = one(addr, &chunked(path, &[half, bound - half], Some("x-sum: 7")));
        assert_eq!((r.status, r.text()), (200, format!("{bound} 7")), "{path} chunked at its bound, trailer seen");
        let r = one(addr, &chunked(path, &[half, bound - half + 1], None));
        assert_eq!(r.status, 413, "{path} chunked one past its bound");
    }
    server.stop();
    node.stop();
}

#[test]
fn an_upload_cut_midway_never_reaches_the_handler() {
    let node = start_node("r51-cut", 1);
    let seen = Arc::new(AtomicUsize::new(0));
    let s = seen.clone();
    let server = serve_with(&node, limits(1000), move |r: &Request| {
        s.fetch_add(1, Ordering::SeqCst);
        echo(r)
    });
    let addr = server.local_addr();
    let whole = post("/", 50);
    let mut c = Client::connect(addr);
    c.send(&whole[..whole.len() - 20]);
    c.s.shutdown(Shutdown::Write).unwrap();
    c.assert_closed();
    let whole = chunked("/", &[30, 30], None);
    let mut c = Client::connect(addr);
    // Cut right after the second chunk, before the last chunk.
    c.send(&whole[..whole.len() - 5]);
    c.s.shutdown(Shutdown::Write).unwrap();
    c.assert_closed();
    assert_eq!(seen.load(Ordering::SeqCst), 0, "a partial body was handed to the handler");
    wait_until("no body counted", || server.stats().body_bytes == 0 && server.stats().connections == 0);
    server.stop();
    node.stop();
}

#[test]
fn expectations_refused_before_the_upload() {
    let node = start_node("r51-expect", 1);
    let server = serve_with(&node, limits(100), body_router());
    let addr = server.local_addr();
    let head = |path: &str, len: usize, expect: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\nExpect: {expect}\r\n\r\n").into_bytes()
    };
    for (path, len, expect, status) in
        [("/nope", 5, "100-continue", 404), ("/small", 11, "100-continue", 413), ("/def", 5, "fancy", 417)]
    {
        let mut c = Client::connect(addr);
        c.send(&head(path, len, expect));
        let r = c.response();
        assert_eq!(r.status, status, "{path} {expect}");
    }
    let mut c = Client::connect(addr);
    c.send(&head("/small", 10, "100-continue"));
    assert_eq!(c.head().status, 100);
    c.send(&[b'z'; 10]);
    let r = c.response();
    assert_eq!((r.status, r.text()), (200, "10 -".to_owned()));
    server.stop();
    node.stop();
}

#[test]
fn the_shard_bound_on_bodies_refuses_then_recovers() {
    let node = start_node("r51-shardbodies", 1);
    let l = HttpLimits { max_body_bytes: 10_000, max_body_bytes_per_shard: 1000, ..HttpLimits::default() };
    let server = serve_with(&node, l, echo);
    let addr = server.local_addr();
    let whole = post("/", 800);
    let mut a = Client::connect(addr);
    a.send(&whole[..whole.len() - 200]);
    wait_until("a's body counted", || server.stats().body_bytes == 600);
    let mut b = Client::connect(addr);
    b.send(&whole[..whole.len() - 200]);
    let r = b.response();
    assert_eq!(r.status, 503);
    wait_until("b's share gone", || server.stats().body_bytes == 600);
    a.send(&whole[whole.len() - 200..]);
    assert_eq!(a.response().text(), "800 -");
    wait_until("nothing counted", || server.stats().body_bytes == 0);
    let mut c = Client::connect(addr);
    c.send(&post("/", 900));
    assert_eq!(c.response().text(), "900 -");
    assert_eq!(server.stats().body_bytes, 0);
    server.stop();
    node.stop();
}

// ---- requests handed out of the worker ---------------------------------------------------

/// Takes every request and hands it to the test over a channel.
struct Giver {
    tx: Mutex<mpsc::Sender<WebRequest>>,
}

impl WebWorker for Giver {
    const TAKES_REQUESTS: bool = true;
    async fn take_request(&mut self, _: &mut Context, req: WebRequest) -> Option<WebRequest> {
        let _ = self.tx.lock().unwrap().send(req);
        None
    }
}

fn giver(node: &pinion::Node) -> (Pid, mpsc::Receiver<WebRequest>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let pid = node.spawn(move || Giver { tx }, ProcessOptions::default()).wait().expect("giver");
    (pid, rx)
}

fn handler_to(pid: Pid, timeout: Duration) -> WebHandler {
    WebHandler::new(WebHandlerOptions { request_timeout: timeout, ..WebHandlerOptions::new(pid) })
}

#[test]
fn answered_from_another_thread_after_its_504_and_after_the_client_left() {
    let node = start_node("r51-thread", 2);
    let (pid, rx) = giver(&node);
    let server = serve_with(&node, HttpLimits::default(), handler_to(pid, Duration::from_millis(300)));
    let addr = server.local_addr();
    // From a plain thread: answered.
    let mut c = Client::connect(addr);
    c.send(&get("/a"));
    let req = rx.recv_timeout(WAIT).expect("request");
    std::thread::spawn(move || req.respond(Response::text("from a thread"))).join().unwrap();
    assert_eq!(c.response().text(), "from a thread");
    // Dropped on a plain thread: 500.
    c.send(&get("/b"));
    let req = rx.recv_timeout(WAIT).expect("request");
    std::thread::spawn(move || drop(req)).join().unwrap();
    assert_eq!(c.response().status, 500);
    // After its 504: nothing more on the wire; the next request is answered as usual.
    c.send(&get("/c"));
    let late = rx.recv_timeout(WAIT).expect("request");
    assert_eq!(c.response().status, 504);
    assert!(late.is_expired());
    late.respond(Response::text("late"));
    c.send(&get("/d"));
    let req = rx.recv_timeout(WAIT).expect("request");
    req.respond(Response::text("d"));
    let r = c.response();
    assert_eq!(r.text(), "d");
    assert!(c.buf.is_empty(), "stray bytes: {:?}", String::from_utf8_lossy(&c.buf));
    assert_eq!(server.stats().timed_out, 1);
    // After the client left.
    c.send(&get("/e"));
    let req = rx.recv_timeout(WAIT).expect("request");
    drop(c);
    wait_until("connection closed", || server.stats().connections == 0);
    req.respond(Response::text("nobody"));
    // The server still serves.
    let mut c = Client::connect(addr);
    c.send(&get("/f"));
    rx.recv_timeout(WAIT).expect("request").respond(Response::text("f"));
    assert_eq!(c.response().text(), "f");
    server.stop();
    node.stop();
}

#[test]
fn answered_after_the_node_stopped() {
    let node = start_node("r51-stopped", 1);
    let (pid, rx) = giver(&node);
    let server = serve_with(&node, HttpLimits::default(), handler_to(pid, Duration::MAX));
    let addr = server.local_addr();
    let mut c = Client::connect(addr);
    c.send(&[get("/a"), get("/b")].concat());
    let a = rx.recv_timeout(WAIT).expect("request a");
    let b = rx.recv_timeout(WAIT).expect("request b");
    drop(server);
    let stopper = std::thread::spawn(move || node.stop());
    stopper.join().unwrap();
    a.respond(Response::text("after"));
    drop(b);
    // Whatever the client got, the connection ended and nothing panicked.
    let mut rest = Vec::new();
    let _ = c.s.read_to_end(&mut rest);
}

/// Writes up to `total` bytes of pipelined requests within `limit`: how many the server took.
fn flood(c: &mut Client, total: usize, limit: Duration) -> usize {
    let unit = get("/flood");
    let block: Vec<u8> = unit.iter().copied().cycle().take(unit.len() * (64 * 1024 / unit.len())).collect();
    c.s.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let end = std::time::Instant::now() + limit;
    let mut sent = 0;
    while sent < total && std::time::Instant::now() < end {
        match c.s.write(&block) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => panic!("write: {e}"),
        }
    }
    sent
}

#[test]
fn a_held_http10_request_does_not_let_its_connection_buffer_without_bound() {
    let node = start_node("r51-http10-held", 1);
    let (pid, rx) = giver(&node);
    let server = serve_with(&node, HttpLimits::default(), handler_to(pid, Duration::MAX));
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /held HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let held = rx.recv_timeout(WAIT).expect("request");
    // The answer decides whether the connection lives on: nothing behind it is parsed. Is
    // anything behind it still read, without bound?
    let sent = flood(&mut c, 256 << 20, Duration::from_secs(4));
    assert!(sent < 64 << 20, "the server read {} MiB behind a held HTTP/1.0 request", sent >> 20);
    // Answered, it lets the requests behind it through, none lost.
    held.respond(Response::text("held"));
    c.s.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(c.response().text(), "held");
    for _ in 0..3 {
        let next = rx.recv_timeout(WAIT).expect("a request behind it");
        assert_eq!(next.request().path(), "/flood");
        next.respond(Response::text("next"));
        assert_eq!(c.response().text(), "next");
    }
    drop(c);
    server.stop();
    node.stop();
}

#[test]
fn a_held_http11_request_does_not_let_its_connection_buffer_without_bound() {
    let node = start_node("r51-http11-held", 1);
    let (pid, rx) = giver(&node);
    let server = serve_with(&node, HttpLimits::default(), handler_to(pid, Duration::MAX));
    let mut c = Client::connect(server.local_addr());
    c.send(&get("/held"));
    let held = rx.recv_timeout(WAIT).expect("request");
    let sent = flood(&mut c, 256 << 20, Duration::from_secs(4));
    assert!(sent < 64 << 20, "the server read {} MiB behind a held request", sent >> 20);
    drop(held);
    drop(c);
    server.stop();
    node.stop();
}

// ---- streams -------------------------------------------------------------------------------

/// Streams `/stream` (the stream handed to the test), answers anything else with its path.
struct Streamer {
    tx: Mutex<mpsc::Sender<pinion::web::ResponseStream>>,
}

impl WebWorker for Streamer {
    const TAKES_REQUESTS: bool = true;
    async fn take_request(&mut self, _: &mut Context, req: WebRequest) -> Option<WebRequest> {
        let path = req.request().path().to_owned();
        if path.starts_with("/stream") {
            let stream = req.respond_stream(Response::new(StatusCode::OK));
            if path == "/stream-drop" {
                drop(stream);
            } else {
                let _ = self.tx.lock().unwrap().send(stream);
            }
            return None;
        }
        req.respond(Response::text(path));
        None
    }
}

fn streamer(node: &pinion::Node, shard: usize) -> (Pid, mpsc::Receiver<pinion::web::ResponseStream>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let pid = node
        .spawn_on(pinion::ShardId(shard as u16), move || Streamer { tx }, ProcessOptions::default())
        .wait()
        .expect("streamer");
    (pid, rx)
}

#[test]
fn a_stream_finished_from_a_thread_with_requests_pipelined_behind_it() {
    let node = start_node("r51-stream-pipe", 2);
    for shard in 0..2 {
        let (pid, rx) = streamer(&node, shard);
        let server = serve_with(&node, HttpLimits::default(), handler_to(pid, Duration::MAX));
        let mut c = Client::connect(server.local_addr());
        c.send(&[get("/a"), get("/stream"), get("/b"), get("/c")].concat());
        let mut stream = rx.recv_timeout(WAIT).expect("stream");
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            stream.send("one ");
            stream.send("two");
            stream.finish();
        })
        .join()
        .unwrap();
        let bodies: Vec<String> = (0..4).map(|_| c.response().text()).collect();
        assert_eq!(bodies, ["/a", "one two", "/b", "/c"]);
        assert!(c.buf.is_empty());
        server.stop();
    }
    node.stop();
}

#[test]
fn a_stream_dropped_at_once() {
    let node = start_node("r51-stream-drop", 1);
    let (pid, _rx) = streamer(&node, 0);
    let server = serve_with(&node, HttpLimits::default(), handler_to(pid, Duration::MAX));
    // A GET: the head, no last chunk, the connection closed (the request behind it unanswered).
    let mut c = Client::connect(server.local_addr());
    c.send(&[get("/stream-drop"), get("/b")].concat());
    let r = c.head();
    assert_eq!(r.status, 200);
    let mut rest = Vec::new();
    c.s.read_to_end(&mut rest).unwrap();
    rest.splice(0..0, c.buf.drain(..));
    assert!(
        !rest.windows(5).any(|w| w == b"0\r\n\r\n"),
        "a cut stream looked complete: {:?}",
        String::from_utf8_lossy(&rest)
    );
    // A HEAD: the answer is whole without a body, the connection lives on.
    let mut c = Client::connect(server.local_addr());
    c.send(&[b"HEAD /stream-drop HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), get("/b")].concat());
    let r = c.head();
    assert_eq!(r.status, 200);
    assert_eq!(c.response().text(), "/b");
    server.stop();
    node.stop();
}

// ---- requests dropped with their holder ---------------------------------------------------------

/// Keeps every request (`/keep`), panics on `/panic`, answers `/ok`.
struct Keeper {
    kept: Vec<WebRequest>,
    took: Arc<AtomicUsize>,
}

impl WebWorker for Keeper {
    const TAKES_REQUESTS: bool = true;
    async fn take_request(&mut self, _: &mut Context, req: WebRequest) -> Option<WebRequest> {
        self.took.fetch_add(1, Ordering::SeqCst);
        match req.request().path() {
            "/panic" => panic!("a handler panics holding its request"),
            "/ok" => req.respond(Response::text("ok")),
            _ => self.kept.push(req),
        }
        None
    }
}

#[test]
fn requests_held_by_a_killed_process_and_a_panicking_one_are_answered_500() {
    let node = start_node("r51-kill", 2);
    let took = Arc::new(AtomicUsize::new(0));
    let t = took.clone();
    let pid = node
        .spawn_on(pinion::ShardId(1), move || Keeper { kept: Vec::new(), took: t.clone() }, ProcessOptions::default())
        .wait()
        .expect("keeper");
    let server = serve_with(&node, HttpLimits::default(), handler_to(pid, Duration::MAX));
    let mut c = Client::connect(server.local_addr());
    c.send(&[get("/keep"), get("/keep")].concat());
    wait_until("both kept", || took.load(Ordering::SeqCst) == 2);
    node.exit(pid, ExitReason::Kill);
    assert_eq!([c.response().status, c.response().status], [500, 500]);
    assert!(c.buf.is_empty());
    // A panic with a request in hand and two kept.
    let t = took.clone();
    let pid = node
        .spawn_on(pinion::ShardId(0), move || Keeper { kept: Vec::new(), took: t.clone() }, ProcessOptions::default())
        .wait()
        .expect("keeper");
    let server = serve_with(&node, HttpLimits::default(), handler_to(pid, Duration::MAX));
    let mut c = Client::connect(server.local_addr());
    c.send(&[get("/keep"), get("/keep"), get("/panic")].concat());
    let statuses: Vec<u16> = (0..3).map(|_| c.response().status).collect();
    assert_eq!(statuses, [500, 500, 500]);
    server.stop();
    node.stop();
}

#[test]
fn requests_held_by_a_retired_pool_worker_are_answered() {
    // One shard: both workers on it, the four requests spread two and two (idle first, then
    // the least loaded). On two shards the spread followed which shard accepted each
    // connection, and the retired worker could hold none (a flake under load, stop 33).
    let node = start_node("r51-retire", 1);
    let took = Arc::new(AtomicUsize::new(0));
    let t = took.clone();
    let options = pinion::PoolOptions::new(2, 4, move || Keeper { kept: Vec::new(), took: t.clone() });
    let pool = node.spawn(move || pinion::Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let server = serve_with(&node, HttpLimits::default(), handler_to(pool, Duration::MAX));
    let mut cs: Vec<Client> = (0..4).map(|_| Client::connect(server.local_addr())).collect();
    for c in &mut cs {
        c.send(&get("/keep"));
    }
    wait_until("all kept", || took.load(Ordering::SeqCst) == 4);
    node.pool(pool).expect("pool ref").resize(1).expect("resize");
    // The retired worker's requests are answered 500 as it ends; the other's stay held.
    wait_until("the pool shrank", || node.pool(pool).unwrap().info().workers.len() == 1);
    for c in &mut cs {
        c.s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    }
    // Looked at until the retired worker's two are answered (bounded by WAIT, not by a
    // guess at how soon they come).
    let mut answered: Vec<Option<u16>> = vec![None; cs.len()];
    let until = std::time::Instant::now() + WAIT;
    while answered.iter().flatten().count() < 2 && std::time::Instant::now() < until {
        for (c, a) in cs.iter_mut().zip(&mut answered) {
            if a.is_none() && c.fill().is_ok_and(|n| n > 0) {
                *a = Some(c.head().status);
            }
        }
    }
    let answered: Vec<u16> = answered.into_iter().flatten().collect();
    assert_eq!(answered, [500, 500], "the retired worker's two requests");
    // The pool still serves.
    let mut c = Client::connect(server.local_addr());
    c.send(&get("/ok"));
    assert_eq!(c.response().text(), "ok");
    server.stop();
    node.stop();
}

/// Forwards every request to a process on another node.
struct ToOtherNode {
    node: pinion::NodeHandle,
    pid: Pid,
}

impl pinion::web::Handler for ToOtherNode {
    fn handle(&self, req: WebRequest) {
        if let Err(e) = self.node.send(self.pid, req) {
            e.into_inner().respond(Response::status(StatusCode::SERVICE_UNAVAILABLE));
        }
    }
}

/// Answers each `WebRequest` message with the name of its node.
struct Answerer(&'static str);

impl pinion::Actor for Answerer {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(req) = msg.downcast::<WebRequest>() {
            if req.request().path() == "/drop" {
                drop(req);
            } else {
                req.respond(Response::text(self.0));
            }
        }
        Ok(())
    }
}

#[test]
fn a_request_answered_on_another_node_of_the_process() {
    let one = start_node("r51-node-one", 1);
    let two = start_node("r51-node-two", 2);
    let pid = two.spawn_on(pinion::ShardId(1), || Answerer("two"), ProcessOptions::default()).wait().expect("answerer");
    let server = serve_with(&one, HttpLimits::default(), ToOtherNode { node: two.handle(), pid });
    let mut c = Client::connect(server.local_addr());
    c.send(&[get("/a"), get("/drop"), get("/b")].concat());
    let got: Vec<(u16, String)> = (0..3).map(|_| c.response()).map(|r| (r.status, r.text())).collect();
    assert_eq!(got, [(200, "two".to_owned()), (500, "Internal Server Error".to_owned()), (200, "two".to_owned())]);
    // The other node stops first: its mailbox's requests are answered 500 or 503, never lost.
    two.stop();
    c.send(&get("/c"));
    assert_eq!(c.response().status, 503);
    server.stop();
    one.stop();
}

/// Sleeps 1 s on `/slow`, answers the body's length to a POST.
struct Sleeper;

impl WebWorker for Sleeper {
    async fn handle_get(&mut self, ctx: &mut Context, _: &Request) -> Response {
        ctx.sleep(Duration::from_secs(1)).await;
        Response::text("slept")
    }
    async fn handle_post(&mut self, _: &mut Context, req: &Request) -> Response {
        Response::text(req.body().len().to_string())
    }
}

#[test]
fn continue_through_a_pool_with_room_and_without() {
    let node = start_node("r51-continue-pool", 1);
    let options = pinion::PoolOptions::new(1, 0, || Sleeper);
    let pool = node.spawn(move || pinion::Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let server = serve_with(&node, HttpLimits::default(), handler_to(pool, Duration::MAX));
    let upload = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    // Room: 100, the upload, the answer.
    let mut c = Client::connect(server.local_addr());
    c.send(upload);
    assert_eq!(c.head().status, 100);
    c.send(b"12345");
    assert_eq!(c.response().text(), "5");
    // The only worker busy, no mailbox: what does the waiting client get first?
    let mut busy = Client::connect(server.local_addr());
    busy.send(&get("/slow"));
    std::thread::sleep(Duration::from_millis(100));
    let mut c = Client::connect(server.local_addr());
    c.send(upload);
    // The pool is full: its 503 comes instead of `100 Continue`, before the upload (it sheds
    // any request at once; until stop 33 the client was told to upload first), and the
    // connection closes without reading the body.
    let r = c.response();
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")));
    c.assert_closed();
    assert_eq!(busy.response().text(), "slept");
    // Counted as shed, like a request refused whole.
    assert_eq!(node.handle().pool(pool).expect("the pool").info().shed, 1);
    // Room again: `100 Continue` again.
    let mut c = Client::connect(server.local_addr());
    c.send(upload);
    assert_eq!(c.head().status, 100);
    c.send(b"12345");
    assert_eq!(c.response().text(), "5");
    server.stop();
    node.stop();
}
