//! What the trials of stop 31 found (an embedder's, a port of an axum service's): each test
//! failed before its fix. Every wait is bounded.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Barrier, Mutex};

use pinion::http::{HttpLimits, Method, Request, Response, StatusCode};
use pinion::web::{
    RequestSummary, Router, WebHandler, WebServer, WebServerOptions, WebTarget, WebWorker, answer_at_once, hook,
};
use pinion::{Actor, Context, ExitReason, Message, NodeHandle, Pid, ProcessOptions, RegisterError, Reply, ShardId};
use pinion::{Pool, PoolOptions};
use support::{CALL_TIMEOUT, lock, node};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Keeps pinion's warnings and errors.
struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("pinion") && metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            lock(&LINES).push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn capture_logs() {
    if log::set_logger(&Capture).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(CALL_TIMEOUT)).expect("timeout");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// Starts a web server when called, after every starter has been called (a barrier on its
/// shard thread): the servers start at the same moment on different shards.
struct Starter {
    node: NodeHandle,
    together: Arc<Barrier>,
    server: Option<WebServer>,
}

impl Actor for Starter {
    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        self.together.wait();
        let shard = ctx.shard().0;
        let router =
            Router::new().get("/", move |_: &pinion::http::Request| pinion::http::Response::text(format!("{shard}")));
        let started = WebServer::start(&self.node, WebServerOptions::new("127.0.0.1", 0, router));
        let answer = started.as_ref().map(WebServer::local_addr).map_err(ToString::to_string);
        self.server = started.ok();
        Ok(Reply::now(answer))
    }
}

/// Two processes on the two shards of a node start a server each at the same moment: both
/// start and serve. (`start` waited on a shard thread for the other shard, which waited for
/// it: both froze for 10 s, then one or both were refused as if the node were stopping.)
#[test]
fn two_processes_on_two_shards_start_servers_at_the_same_moment() {
    let node = node("trials35-starters", 2);
    let together = Arc::new(Barrier::new(2));
    let starters: Vec<Pid> = [0u16, 1]
        .into_iter()
        .map(|shard| {
            let (handle, together) = (node.handle(), together.clone());
            let factory = move || Starter { node: handle, together, server: None };
            node.spawn_on(ShardId(shard), factory, ProcessOptions::default()).wait().expect("starter")
        })
        .collect();
    let calls: Vec<_> = starters
        .iter()
        .map(|&pid| {
            let handle = node.handle();
            std::thread::spawn(move || handle.call_blocking(pid, (), CALL_TIMEOUT))
        })
        .collect();
    for call in calls {
        let answer = call.join().expect("caller").expect("the starter answers");
        let addr = answer.downcast::<Result<SocketAddr, String>>().expect("an address or an error");
        let addr = addr.expect("the server starts");
        for _ in 0..4 {
            let reply = get(addr, "/");
            assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        }
    }
    node.stop();
}

/// On `()`: registers the pids it was given, from its own shard thread, through a
/// `NodeHandle`, and answers what `register` and `unregister` said.
struct Namer {
    node: NodeHandle,
    same: Pid,
    other: Pid,
}

impl Actor for Namer {
    async fn handle_call(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        let same = self.node.register("trials35-same", self.same);
        let other = self.node.register("trials35-other", self.other);
        let gone = self.node.unregister("trials35-same");
        Ok(Reply::now((same, other, gone)))
    }
}

struct Idle;

impl Actor for Idle {}

/// `NodeHandle::register` on a shard thread: a process of that shard is named at once; one of
/// another shard is refused with `WouldBlock` and not named. (It asked the other shard, could
/// not wait, answered `NoSuchProcess` — and the name was registered all the same.)
#[test]
fn register_through_a_handle_on_a_shard_thread_says_what_it_did() {
    let node = node("trials35-register", 2);
    let spawn = |shard: u16| node.spawn_on(ShardId(shard), || Idle, ProcessOptions::default()).wait().expect("idle");
    let (same, other) = (spawn(0), spawn(1));
    let handle = node.handle();
    let namer = node
        .spawn_on(ShardId(0), move || Namer { node: handle, same, other }, ProcessOptions::default())
        .wait()
        .expect("namer");
    let answer = node.handle().call_blocking(namer, (), CALL_TIMEOUT).expect("the namer answers");
    let (same_named, other_named, unregistered) =
        answer.downcast::<(Result<(), RegisterError>, Result<(), RegisterError>, bool)>().expect("what it said");
    assert_eq!(same_named, Ok(()));
    assert_eq!(other_named, Err(RegisterError::WouldBlock));
    assert!(unregistered, "the name it had just registered");
    assert_eq!(node.handle().whereis("trials35-other"), None, "refused, so not registered");
    assert_eq!(node.handle().whereis("trials35-same"), None, "unregistered at once");
    // From outside the shards, both work as before.
    node.handle().register("trials35-other", other).expect("from outside");
    assert_eq!(node.handle().whereis("trials35-other"), Some(other));
    node.stop();
}

/// A response hook that panics costs its request a 500, and the log says what it panicked
/// with and on which request (it said only that a hook panicked).
#[test]
fn a_panicking_response_hook_is_logged_with_its_panic_and_request() {
    capture_logs();
    let node = node("trials35-hook-panic", 1);
    let router = Router::new()
        .get("/hooked", |_: &Request| Response::text("fine"))
        .layer(hook(|_: &RequestSummary<'_>, _: &mut Response| panic!("the hook's own bug")));
    let server = WebServer::start(&node, WebServerOptions::new("127.0.0.1", 0, router)).expect("server");
    let reply = get(server.local_addr(), "/hooked");
    assert!(reply.starts_with("HTTP/1.1 500"), "{reply}");
    let lines = lock(&LINES).clone();
    assert!(
        lines.iter().any(|l| l.contains("response hook panicked")
            && l.contains("the hook's own bug")
            && l.contains("GET /hooked")),
        "{lines:?}"
    );
    node.stop();
}

fn body_of(router: &Router, path: &str) -> String {
    let answer = answer_at_once(router, Request::new(Method::Get, path)).expect("answered at once");
    String::from_utf8(answer.body_bytes().to_vec()).expect("text")
}

fn named(name: &'static str) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
    move |r: &Request| Response::text(format!("{name} {}", r.param("x").unwrap_or("-")))
}

/// Of the patterns that match a path, the one with a literal where another has a parameter
/// answers, whatever the order they were added in (as axum's router). A route added after
/// `/items/{x}` for `/items/export` was shadowed by it, silently.
#[test]
fn a_literal_segment_wins_over_a_parameter_whatever_the_order_routes_were_added() {
    let router = Router::new()
        .get("/items/{x}", named("item"))
        .get("/items/export", named("export"))
        .get("/files/{*x}", named("files"))
        .get("/files/{x}/raw", named("raw"))
        .get("/files/readme", named("readme"))
        .get("/a/{x}/c", named("a-x-c"))
        .get("/a/b/{x}", named("a-b-x"));
    assert_eq!(body_of(&router, "/items/export"), "export -");
    assert_eq!(body_of(&router, "/items/42"), "item 42");
    assert_eq!(body_of(&router, "/files/readme"), "readme -");
    assert_eq!(body_of(&router, "/files/7/raw"), "raw 7");
    assert_eq!(body_of(&router, "/files/7/cooked"), "files 7/cooked");
    assert_eq!(body_of(&router, "/a/b/c"), "a-b-x c");
    assert_eq!(body_of(&router, "/a/z/c"), "a-x-c z");
}

/// `Router::not_found` shapes the 404 and still refuses a client waiting for `100 Continue`
/// before it uploads (a plain-function fallback let it upload first: a trial's JSON 404).
#[test]
fn a_not_found_of_ones_own_is_given_before_the_upload() {
    let node = node("trials35-not-found", 1);
    let router = Router::new().post("/items", |_: &Request| Response::text("stored")).not_found(|r: &Request| {
        Response::json(format!("{{\"missing\":\"{}\"}}", r.path())).with_status(StatusCode::NOT_FOUND)
    });
    let server = WebServer::start(&node, WebServerOptions::new("127.0.0.1", 0, router)).expect("server");
    let mut s = TcpStream::connect(server.local_addr()).expect("connect");
    s.set_read_timeout(Some(CALL_TIMEOUT)).expect("timeout");
    s.write_all(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .expect("write");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("}") {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 404"), "no 100 Continue first: {text}");
    assert!(text.contains("application/json") && text.ends_with("{\"missing\":\"/nowhere\"}"), "{text}");
    // Without `Expect`, the same.
    assert_eq!(get(server.local_addr(), "/x").lines().next(), Some("HTTP/1.1 404 Not Found"));
    node.stop();
}

/// Panics on every GET.
struct Buggy;

impl WebWorker for Buggy {
    async fn handle_get(&mut self, _: &mut Context, _: &Request) -> Response {
        panic!("trials35: a worker bug");
    }
}

/// A pool worker's panic on a request is one line in the log, an error with the panic's text
/// (there were two of pinion's: the error, and a warning that the worker was replaced).
#[test]
fn a_pool_workers_panic_is_one_line_in_the_log() {
    capture_logs();
    let node = node("trials35-worker-panic", 1);
    let pool =
        node.spawn(|| Pool::new(PoolOptions::new(1, 4, || Buggy)), ProcessOptions::default()).wait().expect("pool");
    let router = Router::new().get("/boom", WebHandler::to(WebTarget::Pid(pool)));
    let server = WebServer::start(&node, WebServerOptions::new("127.0.0.1", 0, router)).expect("server");
    for _ in 0..3 {
        let reply = get(server.local_addr(), "/boom");
        assert!(reply.starts_with("HTTP/1.1 500"), "{reply}");
    }
    node.stop();
    let lines = lock(&LINES).clone();
    let ours: Vec<_> = lines.iter().filter(|l| l.contains("trials35: a worker bug")).collect();
    assert_eq!(ours.len(), 3, "one line a panic: {lines:?}");
    assert!(!lines.iter().any(|l| l.contains("replacing it")), "{lines:?}");
}

/// A client that sends most of a large body at once and then nothing is cut within
/// `body_read_timeout` of its silence: what the burst earned at `min_body_rate` is not banked
/// beyond that. (A hostile-client trial: 1 MiB then silence held the connection and the
/// megabyte for `body_read_timeout` + 256 s at the default rate; here it was 128 s.)
#[test]
fn a_body_sent_in_a_burst_then_withheld_is_cut_within_the_body_timeout() {
    let node = node("trials35-burst-stall", 1);
    let limits = HttpLimits {
        body_read_timeout: std::time::Duration::from_millis(500),
        min_body_rate: 8 * 1024,
        max_body_bytes: 2 << 20,
        ..HttpLimits::default()
    };
    let handler = |r: &Request| Response::text(format!("{} bytes", r.body().len()));
    let server = WebServer::start(&node, WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, handler) })
        .expect("server");
    let mut s = TcpStream::connect(server.local_addr()).expect("connect");
    s.set_read_timeout(Some(CALL_TIMEOUT)).expect("timeout");
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n").expect("head");
    s.write_all(&vec![b'b'; (1 << 20) - 1]).expect("all of the body but a byte");
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer within {CALL_TIMEOUT:?} of the silence: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    support::wait_until("the cut body uncounted", || server.stats().body_bytes == 0);
    node.stop();
}

/// Reads one answer's head and body (framed by `Content-Length`) from a raw connection.
fn answer_on(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse::<usize>())
                })
                .map_or(0, |n| n.expect("a length"));
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        match s.read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading an answer: {e}; so far {:?}", String::from_utf8_lossy(&got)),
        }
    }
}

/// Request bodies being read are bounded per shard, all connections together: the body that
/// would take the total past `max_body_bytes_per_shard` is refused 503 with `Retry-After` and
/// its connection closed; the others go on, and the room comes back. (A hostile-client
/// trial: 200 connections each sending a 1 MiB body but its last byte held 207 MB.)
#[test]
fn bodies_being_read_are_bounded_per_shard_and_the_one_past_the_bound_is_refused() {
    let node = node("trials35-body-bytes", 1);
    let limits = HttpLimits { max_body_bytes: 1 << 20, max_body_bytes_per_shard: 1536 << 10, ..HttpLimits::default() };
    let handler = |r: &Request| Response::text(format!("{} bytes", r.body().len()));
    let server = WebServer::start(&node, WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, handler) })
        .expect("server");
    let connect = || {
        let s = TcpStream::connect(server.local_addr()).expect("connect");
        s.set_read_timeout(Some(CALL_TIMEOUT)).expect("timeout");
        s
    };
    let head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n";
    // One body held but for its last byte: 1 MiB.
    let mut held = connect();
    held.write_all(head).expect("head");
    held.write_all(&vec![b'a'; (1 << 20) - 1]).expect("body");
    support::wait_until("the held body counted", || server.stats().body_bytes == (1 << 20) - 1);
    // Another that goes past 1.5 MiB in all: refused.
    let mut over = connect();
    over.write_all(head).expect("head");
    let _ = over.write_all(&vec![b'b'; 600 << 10]); // (the server may stop reading it)
    let refused = answer_on(&mut over);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.to_ascii_lowercase().contains("retry-after: 1"), "{refused}");
    assert_eq!(server.stats().refused_with(StatusCode::SERVICE_UNAVAILABLE), 1);
    support::wait_until("only the held body counted", || server.stats().body_bytes == (1 << 20) - 1);
    // The held one completes; then a whole one fits again.
    held.write_all(b"a").expect("the last byte");
    assert!(answer_on(&mut held).ends_with("1048576 bytes"));
    let mut next = connect();
    next.write_all(head).expect("head");
    next.write_all(&vec![b'c'; 1 << 20]).expect("body");
    assert!(answer_on(&mut next).ends_with("1048576 bytes"));
    assert_eq!(server.stats().body_bytes, 0);
    node.stop();
}

/// `max_connections_per_client` bounds the connections one address holds on a shard: past
/// it, the new one gets 503 and is closed, and room comes back as the client's connections
/// close. (A hostile-client trial: one address filled the shard's cap, a fresh client got 503.)
#[test]
fn connections_from_one_client_are_bounded_when_asked() {
    let node = node("trials35-per-client", 1);
    let limits = HttpLimits { max_connections_per_client: 2, ..HttpLimits::default() };
    let server = WebServer::start(
        &node,
        WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, |_: &Request| Response::text("hi")) },
    )
    .expect("server");
    let open = || {
        let mut s = TcpStream::connect(server.local_addr()).expect("connect");
        s.set_read_timeout(Some(CALL_TIMEOUT)).expect("timeout");
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let answer = answer_on(&mut s);
        (s, answer)
    };
    let (first, a) = open();
    let (_second, b) = open();
    assert!(a.ends_with("hi") && b.ends_with("hi"), "{a} / {b}");
    let (_, refused) = open();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert_eq!(server.stats().over_client_capacity, 1);
    drop(first);
    support::wait_until("the first one closed", || server.stats().connections == 1);
    let (_third, c) = open();
    assert!(c.ends_with("hi"), "{c}");
    node.stop();
}

/// The threads of this process whose OS name (`comm`, 15 bytes at most) starts with `prefix`:
/// (name, allowed CPUs).
fn threads_named(prefix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = task.expect("a task").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_owned();
        if !comm.starts_with(prefix) {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let cpus = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap_or("").trim().to_owned();
        out.push((comm, cpus));
    }
    out.sort();
    out
}

/// Shard threads keep their index in the 15 bytes of a thread's name the OS keeps, whatever
/// the node's name (`pinion-checkout-0` and `-1` both showed as `pinion-checkout`; the
/// thread's own name stays whole, `tests/node.rs` checks it), and a
/// pinned shard is on its core when `Node::start` returns (a trial read a shard's affinity
/// right after `start` and found it still the parent's).
#[test]
fn shard_threads_are_told_apart_by_name_and_pinned_when_start_returns() {
    let node = node("zz-checkout-service", 2);
    let names: Vec<String> = threads_named("pinion-zz-").into_iter().map(|(name, _)| name).collect();
    assert_eq!(names, ["pinion-zz-che-0", "pinion-zz-che-1"], "15 bytes each, the index kept");
    node.stop();

    let core = core_affinity::get_core_ids().expect("cores")[0].id;
    for round in 0..20 {
        let options = pinion::NodeOptions { cores: pinion::Cores::List(vec![core]), pin: true, ..Default::default() };
        let node = pinion::Node::start("pin35", options).expect("a pinned node");
        let shards = threads_named("pinion-pin35-");
        assert_eq!(shards, [("pinion-pin35-0".to_owned(), core.to_string())], "round {round}");
        node.stop();
    }
}
