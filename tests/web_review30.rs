//! A review of stop 29's commits (297bfe0..6b8ba21): its failing tests (node stop frees the port while the
//! `WebServer` value lives; drops across nodes do not block shards; `answer_at_once` returns its own
//! request's answer and works inside a dispatch), kept with the checks it found correct.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pinion::http::{HttpLimits, Method, Request, Response};
use pinion::web::{
    Handler, Layer, Router, WebHandler, WebRequest, WebServer, WebServerOptions, WebTarget, WebWorker, answer_at_once,
    body_limit,
};
use pinion::{Context, Cores, Node, NodeOptions, ProcessOptions};

const WAIT: Duration = Duration::from_secs(10);

fn start_node(name: &str, shards: usize) -> Node {
    let options = NodeOptions { cores: Cores::Count(shards), pin: false, ..Default::default() };
    Node::start(name, options).unwrap_or_else(|e| panic!("node {name}: {e}"))
}

fn serve(node: &Node, handler: impl Handler) -> WebServer {
    WebServer::start(node, WebServerOptions::new("127.0.0.1", 0, handler)).expect("web server starts")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sends `bytes` on a new connection and reads everything until the server closes (or WAIT).
fn exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read: {e}; have {:?}", String::from_utf8_lossy(&out)),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn statuses(text: &str) -> Vec<&str> {
    text.match_indices("HTTP/1.1 ").map(|(i, _)| &text[i + 9..i + 12]).collect()
}

// ---- answer_at_once ---------------------------------------------------------------------------

/// A long-poll handler: `GET /poll` is kept; `POST /send` answers the kept poll, then itself.
struct LongPoll {
    waiting: Mutex<Option<WebRequest>>,
}

impl Handler for LongPoll {
    fn handle(&self, req: WebRequest) {
        if req.request().method() == Method::Get {
            *lock(&self.waiting) = Some(req);
            return;
        }
        if let Some(poll) = lock(&self.waiting).take() {
            poll.respond(Response::text("message for the poller"));
        }
        req.respond(Response::text("sent"));
    }
}

/// Every request `answer_at_once` hands out is (conn u64::MAX, seq 0): a request kept from an
/// earlier call and answered during a later one is taken for the later call's answer.
#[test]
fn answer_at_once_returns_the_answer_of_the_request_it_was_given() {
    let h = LongPoll { waiting: Mutex::new(None) };
    assert!(answer_at_once(&h, Request::new(Method::Get, "/poll")).is_none(), "the poll is kept");
    let answer = answer_at_once(&h, Request::new(Method::Post, "/send")).expect("POST answered at once");
    assert_eq!(answer.body_bytes(), b"sent", "got {:?}", String::from_utf8_lossy(answer.body_bytes()));
}

// ---- the server's lifecycle -------------------------------------------------------------------

/// Before 16f2f1e a node's stop closed its servers' listeners (the port refused connects and
/// could be bound again). The duplicate listener `start` keeps in `Listening` now keeps the
/// socket listening after the node stopped, as long as the `WebServer` value lives.
#[test]
fn node_stop_closes_the_listener_while_the_server_value_lives() {
    let node = start_node("r30-node-stop", 1);
    let server = serve(&node, |_: &Request| Response::text("hi"));
    let addr = server.local_addr();
    node.stop();
    let connect = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
    let rebind = std::net::TcpListener::bind(addr);
    let (connected, rebound) = (connect.is_ok(), rebind.is_ok());
    drop(server);
    assert!(!connected && rebound, "after node.stop(): connect ok = {connected}, bind again ok = {rebound}");
}

/// Holds a server (or a share of one) until it ends; `panic` on any message.
struct Holder {
    _server: Arc<WebServer>,
    /// Met by every holder before it panics (so their drops overlap).
    together: Option<Arc<std::sync::Barrier>>,
}

impl pinion::Actor for Holder {
    async fn handle_message(
        &mut self,
        _: &mut Context,
        _: pinion::Pid,
        _: pinion::Message,
    ) -> Result<(), pinion::ExitReason> {
        if let Some(b) = &self.together {
            b.wait();
        }
        panic!("the holder panics, as the test asked");
    }
}

/// A server kept in actors' state on both shards (an `Arc` shared by two processes): the node
/// stops promptly.
#[test]
fn node_stop_with_servers_held_by_actors_is_prompt() {
    let node = start_node("r30-held", 2);
    let server = Arc::new(serve(&node, |_: &Request| Response::text("hi")));
    let addr = server.local_addr();
    let mut pids = Vec::new();
    for shard in 0..2 {
        let s = server.clone();
        pids.push(
            node.spawn_on(
                pinion::ShardId(shard),
                move || Holder { _server: s, together: None },
                ProcessOptions::default(),
            )
            .wait()
            .expect("spawn"),
        );
    }
    drop(server);
    assert!(exchange(addr, b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").contains("200 OK"));
    // One holder panics: the other still holds the server.
    node.handle().send(pids[0], 1u32).expect("send");
    std::thread::sleep(Duration::from_millis(100));
    assert!(exchange(addr, b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").contains("200 OK"));
    let t = Instant::now();
    node.stop();
    assert!(t.elapsed() < Duration::from_secs(3), "node.stop() took {:?}", t.elapsed());
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(), "still listening");
}

/// The holder panics: the port is free before the supervisor (here: the test) hears of it.
#[test]
fn a_panicking_holder_frees_the_port() {
    let node = start_node("r30-panic", 2);
    let server = Arc::new(serve(&node, |_: &Request| Response::text("hi")));
    let addr = server.local_addr();
    let s = server.clone();
    let pid = node
        .spawn_on(pinion::ShardId(1), move || Holder { _server: s, together: None }, ProcessOptions::default())
        .wait()
        .expect("spawn");
    drop(server);
    node.handle().send(pid, 1u32).expect("send");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if std::net::TcpListener::bind(addr).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "port not freed after the holder panicked");
        std::thread::sleep(Duration::from_millis(5));
    }
    node.stop();
}

// ---- per-route body limits: framing -----------------------------------------------------------

fn body_len(req: &Request) -> Response {
    Response::text(format!("{} {} bytes", req.path(), req.body().len()))
}

fn bounded_server(node: &Node) -> WebServer {
    let router = Router::new()
        .post("/small", body_len)
        .post("/big", body_limit(5000).wrap(Arc::new(body_len)))
        .layer(body_limit(100));
    let limits = HttpLimits { max_body_bytes: 1000, ..HttpLimits::default() };
    WebServer::start(node, WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, router) }).expect("start")
}

/// After a 413 nothing more is parsed: the body bytes that follow (holding a request) are not
/// answered.
#[test]
fn nothing_after_a_413_is_answered() {
    let node = start_node("r30-413", 1);
    let server = bounded_server(&node);
    let addr = server.local_addr();
    let smuggled = "GET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n";
    let mut body = smuggled.repeat(10).into_bytes();
    body.resize(300, b'x');
    let cases: Vec<(String, Vec<u8>)> = vec![
        ("CL over the route's".into(), [b"POST /small HTTP/1.1\r\nhost: a\r\ncontent-length: 300\r\n\r\n".as_slice(), &body].concat()),
        ("1.0 CL over".into(), [b"POST /small HTTP/1.0\r\ncontent-length: 300\r\n\r\n".as_slice(), &body].concat()),
        ("expect".into(), [b"POST /small HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 300\r\n\r\n".as_slice(), &body].concat()),
        ("chunked".into(), [b"POST /small HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n12c\r\n".as_slice(), &body, b"\r\n0\r\n\r\n"].concat()),
        ("pipelined after an ok".into(), [b"POST /small HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabcPOST /small HTTP/1.1\r\nhost: a\r\ncontent-length: 300\r\n\r\n".as_slice(), &body].concat()),
    ];
    for (what, bytes) in &cases {
        let text = exchange(addr, bytes);
        assert!(!text.contains("smuggled"), "{what}: {text}");
        let st = statuses(&text);
        assert_eq!(st.last(), Some(&"413"), "{what}: {text}");
    }
    // Raised: over the server's 1000, under the route's 5000.
    let big = vec![b'y'; 3000];
    let text = exchange(
        addr,
        &[b"POST /big HTTP/1.1\r\nhost: a\r\nconnection: close\r\ncontent-length: 3000\r\n\r\n".as_slice(), &big]
            .concat(),
    );
    assert!(text.contains("/big 3000 bytes"), "{text}");
    // An extension method no route names: the bound of the layer it passes (the router's,
    // 100), then the router's 501 for a body under it (since extension methods reach the
    // handlers; before, the server's bound and the connection's 501).
    let text = exchange(
        addr,
        &[
            b"BREW /big HTTP/1.1\r\nhost: a\r\ncontent-length: 50\r\n\r\n".as_slice(),
            &[b'z'; 50],
            b"GET /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        ]
        .concat(),
    );
    assert_eq!(statuses(&text), ["501", "404"], "{text}");
    let text = exchange(
        addr,
        &[b"BREW /big HTTP/1.1\r\nhost: a\r\ncontent-length: 500\r\n\r\n".as_slice(), &big[..500]].concat(),
    );
    assert_eq!(statuses(&text), ["413"], "{text}");
    assert_eq!(server.stats().refused_with(pinion::http::StatusCode::CONTENT_TOO_LARGE), 6);
    node.stop();
}

#[test]
fn a_detached_server_stops_with_its_node() {
    let node = start_node("r30-detach", 2);
    let server = serve(&node, |_: &Request| Response::text("hi"));
    let addr = server.local_addr();
    server.detach();
    assert!(exchange(addr, b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n").contains("200 OK"));
    node.stop();
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(), "still listening");
    assert!(std::net::TcpListener::bind(addr).is_ok(), "port not free");
}

// ---- answer_at_once from a worker -------------------------------------------------------------

/// A pool worker that answers through a router, asked with `answer_at_once` (its handlers are
/// plain functions: the docs' way to run a router without a socket).
struct RoutedWorker {
    router: Arc<Router>,
}

impl WebWorker for RoutedWorker {
    async fn handle_get(&mut self, _: &mut Context, req: &Request) -> Response {
        answer_at_once(&*self.router, Request::new(Method::Get, req.path())).unwrap_or_else(|| Response::text("none"))
    }
}

/// At a light load a pool worker on the connection's shard is polled inside the connection's
/// dispatch (`WebHandler` docs): `answer_at_once` there finds the dispatch's key set and panics,
/// though the worker is not "a handler handling a request" and works under load.
#[test]
fn answer_at_once_in_a_pool_worker_polled_in_the_dispatch() {
    let node = start_node("r30-runnow", 1);
    let router = Arc::new(Router::new().get("/inner", |_: &Request| Response::text("inner")));
    let factory = {
        let router = router.clone();
        move || RoutedWorker { router: router.clone() }
    };
    let options = pinion::PoolOptions::new(1, 4, factory);
    let pool = node.spawn(move || pinion::Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let server = serve(&node, WebHandler::to(WebTarget::Pid(pool)));
    let addr = server.local_addr();
    for _ in 0..3 {
        let text = exchange(addr, b"GET /inner HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
        assert_eq!(statuses(&text), ["200"], "{text}");
    }
    node.stop();
}

/// The control: the same worker as a lone process (not polled in the dispatch) answers 200.
#[test]
fn answer_at_once_in_a_lone_worker_works() {
    let node = start_node("r30-lone", 1);
    let router = Arc::new(Router::new().get("/inner", |_: &Request| Response::text("inner")));
    let r = router.clone();
    let pid = node.spawn(move || RoutedWorker { router: r }, ProcessOptions::default()).wait().expect("spawn");
    let server = serve(&node, WebHandler::to(WebTarget::Pid(pid)));
    let text = exchange(server.local_addr(), b"GET /inner HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
    assert_eq!(statuses(&text), ["200"], "{text}");
    assert!(text.ends_with("inner"), "{text}");
    node.stop();
}

/// Two nodes, one shard each; an actor on each holds the other node's server and panics. Each
/// drop runs `stop` on a shard thread of the other node: `here` is `None` (another node), so
/// it blocks its shard waiting for the other node's shard, which waits for it.
#[test]
fn crosswise_drops_on_two_nodes_do_not_block_their_shards() {
    let a = start_node("r30-cross-a", 1);
    let b = start_node("r30-cross-b", 1);
    let server_a = Arc::new(serve(&a, |_: &Request| Response::text("a")));
    let server_b = Arc::new(serve(&b, |_: &Request| Response::text("b")));
    let ping = serve(&a, |_: &Request| Response::text("ping"));
    let (sa, sb) = (server_a.clone(), server_b.clone());
    let together = Arc::new(std::sync::Barrier::new(2));
    let (ta, tb) = (Some(together.clone()), Some(together));
    let on_a = a.spawn(move || Holder { _server: sb, together: ta }, ProcessOptions::default()).wait().expect("spawn");
    let on_b = b.spawn(move || Holder { _server: sa, together: tb }, ProcessOptions::default()).wait().expect("spawn");
    drop((server_a, server_b));
    a.handle().send(on_a, 1u32).expect("send");
    b.handle().send(on_b, 1u32).expect("send");
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    let text = exchange(ping.local_addr(), b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n");
    let took = t.elapsed();
    assert!(text.ends_with("ping"), "{text}");
    drop(ping);
    a.stop();
    b.stop();
    assert!(took < Duration::from_secs(2), "node a's shard answered after {took:?}");
}
