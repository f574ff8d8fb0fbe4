//! The web semantics against a real `WebServer` on 127.0.0.1 (port 0): std `TcpStream` clients
//! write raw HTTP/1.1 and parse the answers byte for byte. Covers `WebHandler` (200, 503 on a
//! full mailbox or a missing target, 504 then a dropped late answer, 500 for a dropped or
//! panicking worker, `Nearest`), `WebWorker` (405/`Allow`, HEAD, OPTIONS, 501 from the
//! connection, other messages), the `Router`, the middleware, streamed bodies and the
//! server's start/stop.
//!
//! Every node is unpinned (1 or 2 shards) and stopped at the end of its test. Waits are bounded
//! by [`WAIT`] only to turn a hang into a failure; no test asserts on timing beyond generous
//! upper bounds.

use std::future::poll_fn;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use pinion::http::{HttpLimits, MAX_HEADERS_LIMIT, Method, Request, Response, StatusCode};
use pinion::web::{
    Cors, Handler, Layer, ResponseStream, Router, WebHandler, WebHandlerOptions, WebRequest, WebServer,
    WebServerOptions, WebServerStats, WebTarget, WebWorker, answer_at_once, auth, bearer, body_limit, rate_limit,
    request_log,
};
use pinion::{
    Actor, CallError, ChildSpec, Context, Cores, ExitReason, Message, Node, NodeOptions, Pid, ProcessOptions, ShardId,
    Strategy, Supervisor, SupervisorOptions, WebServerError,
};

/// Bound on every wait (reads, channel receives, polling): only there so a bug fails a test
/// instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

// ---- nodes and servers ----------------------------------------------------------------------

fn start_node(name: &str, shards: usize) -> Node {
    let options = NodeOptions { cores: Cores::Count(shards), pin: false, ..Default::default() };
    Node::start(name, options).unwrap_or_else(|e| panic!("node {name}: {e}"))
}

fn serve(node: &Node, handler: impl Handler) -> WebServer {
    WebServer::start(node, WebServerOptions::new("127.0.0.1", 0, handler)).expect("web server starts")
}

fn spawn_on<A: Actor>(node: &Node, shard: u16, factory: impl FnOnce() -> A + Send + 'static, mailbox: usize) -> Pid {
    node.spawn_on(ShardId(shard), factory, ProcessOptions::with_mailbox(mailbox)).wait().expect("worker spawns")
}

/// Waits (at most `WAIT`) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---- a raw HTTP/1.1 client --------------------------------------------------------------------

/// A parsed response.
#[derive(Debug, Clone)]
struct Resp {
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    /// The first field named `name` (any case).
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The members of a comma-separated list field (empty if absent).
    fn list(&self, name: &str) -> Vec<String> {
        self.header(name).map(|v| v.split(',').map(|m| m.trim().to_owned()).collect()).unwrap_or_default()
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("a UTF-8 body")
    }

    /// Status, fields (without `date`, which changes every second) and body.
    fn comparable(&self) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let fields = self.headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("date")).cloned().collect();
        (self.status, fields, self.body.clone())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One client connection. Reads time out after [`WAIT`] (a failure, never a result).
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        Client::from_stream(stream)
    }

    fn from_stream(stream: TcpStream) -> Client {
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        stream.set_write_timeout(Some(WAIT)).expect("write timeout");
        let _ = stream.set_nodelay(true);
        Client { stream, buf: Vec::new() }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write the request");
    }

    fn send_request(&mut self, method: &str, target: &str, fields: &[(&str, &str)]) {
        self.send(&raw_request(method, target, fields));
    }

    /// Sends a request and reads its response.
    fn request(&mut self, method: &str, target: &str, fields: &[(&str, &str)]) -> Resp {
        self.send_request(method, target, fields);
        self.read_response(method == "HEAD")
    }

    fn get(&mut self, target: &str) -> Resp {
        self.request("GET", target, &[])
    }

    /// Reads more bytes into the buffer; 0 at end of stream (a reset counts as one).
    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return n;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("nothing from the server within {WAIT:?}; have {:?}", String::from_utf8_lossy(&self.buf))
                }
                Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => return 0,
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if self.fill() == 0 {
                panic!("end of stream after {} of {n} bytes: {:?}", self.buf.len(), String::from_utf8_lossy(&self.buf));
            }
        }
        self.buf.drain(..n).collect()
    }

    fn take_line(&mut self) -> String {
        loop {
            if let Some(i) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..i + 2).collect();
                return String::from_utf8(line[..i].to_vec()).expect("an ASCII line");
            }
            if self.fill() == 0 {
                panic!("end of stream inside a line: {:?}", String::from_utf8_lossy(&self.buf));
            }
        }
    }

    /// Reads a response head: (status, reason, fields).
    fn read_head(&mut self) -> (u16, String, Vec<(String, String)>) {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.fill() == 0 {
                panic!("end of stream before a complete head: {:?}", String::from_utf8_lossy(&self.buf));
            }
        };
        let head: Vec<u8> = self.buf.drain(..end + 4).collect();
        let head = String::from_utf8(head[..end].to_vec()).expect("an ASCII head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("a status line");
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {status_line:?}");
        let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status in {status_line:?}"));
        let reason = parts.next().unwrap_or("").to_owned();
        let fields = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or_else(|| panic!("field line {l:?}"));
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        (status, reason, fields)
    }

    /// Reads one response; `head_request`: it answers a HEAD (no body whatever the fields).
    fn read_response(&mut self, head_request: bool) -> Resp {
        let (status, reason, headers) = self.read_head();
        let mut resp = Resp { status, reason, headers, body: Vec::new() };
        if head_request || status < 200 || status == 204 || status == 304 {
            return resp;
        }
        if resp.header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
            loop {
                let line = self.take_line();
                let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                    .unwrap_or_else(|_| panic!("chunk size line {line:?}"));
                if size == 0 {
                    while !self.take_line().is_empty() {}
                    break;
                }
                let data = self.take(size);
                assert_eq!(self.take(2), b"\r\n", "chunk data ends with CRLF");
                resp.body.extend_from_slice(&data);
            }
        } else if let Some(len) = resp.header("content-length") {
            let len = len.parse().unwrap_or_else(|_| panic!("content-length {len:?}"));
            resp.body = self.take(len);
        } else {
            resp.body = self.read_to_end();
        }
        resp
    }

    /// Everything until the server closes the connection.
    fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill() > 0 {}
        std::mem::take(&mut self.buf)
    }

    /// The server closes the connection and sends nothing more.
    fn assert_closed(&mut self) {
        let rest = self.read_to_end();
        assert!(rest.is_empty(), "bytes after the last response: {:?}", String::from_utf8_lossy(&rest));
    }
}

/// Extra request header fields: (name, value).
type Fields<'a> = &'a [(&'a str, &'a str)];

fn raw_request(method: &str, target: &str, fields: Fields<'_>) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nhost: test\r\n");
    for (n, v) in fields {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// One request on a new connection.
fn get(addr: SocketAddr, target: &str) -> Resp {
    Client::connect(addr).get(target)
}

// ---- handlers and workers ---------------------------------------------------------------------

fn hello(_: &Request) -> Response {
    Response::text("hello")
}

/// The name of the thread the handler runs on (a shard thread: `pinion-<node>-<index>`).
fn thread_name(_: &Request) -> Response {
    Response::text(std::thread::current().name().unwrap_or("").to_owned())
}

fn shard_of_thread(name: &str) -> &str {
    name.rsplit('-').next().unwrap_or("")
}

/// A `WebWorker` implementing only `handle_get` (answers `hello <path>`, or its shard for
/// `/shard`) and `handle_message` (forwards `u64`s to the test).
struct GetOnly {
    seen: Option<Sender<u64>>,
}

impl GetOnly {
    fn new() -> GetOnly {
        GetOnly { seen: None }
    }
}

impl WebWorker for GetOnly {
    async fn handle_get(&mut self, ctx: &mut Context, req: &Request) -> Response {
        match req.path() {
            "/shard" => Response::text(ctx.shard().0.to_string()),
            "/panic" => panic!("GetOnly panics on /panic, as the test asked"),
            path => Response::text(format!("hello {path}")),
        }
    }

    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let (Ok(n), Some(tx)) = (msg.downcast::<u64>(), &self.seen) {
            let _ = tx.send(n);
        }
        Ok(())
    }
}

/// A closed door a process can wait at (its shard runs on) until the test opens it.
#[derive(Default)]
struct Door {
    state: Mutex<(bool, Vec<Waker>)>,
}

impl Door {
    fn open(&self) {
        let wakers = {
            let mut s = lock(&self.state);
            s.0 = true;
            std::mem::take(&mut s.1)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            let mut s = lock(&self.state);
            if s.0 {
                Poll::Ready(())
            } else {
                s.1.push(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// A plain actor that keeps each request it gets *in its handler* (unanswered, its mailbox
/// slot held) until the door opens, then answers `released`.
struct Holder {
    door: Arc<Door>,
    started: Sender<()>,
}

impl Actor for Holder {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(req) = msg.downcast::<WebRequest>() {
            let _ = self.started.send(());
            self.door.wait().await;
            req.respond(Response::text("released"));
        }
        Ok(())
    }
}

/// Keeps `/slow` requests and answers them (`late`) 300 ms later, reporting that it did;
/// answers anything else at once with its target.
struct Slow {
    held: Vec<WebRequest>,
    answered_late: Sender<()>,
}

struct AnswerLate;

impl Actor for Slow {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<WebRequest>() {
            Ok(req) if req.request().path() == "/slow" => {
                self.held.push(req);
                ctx.send_after(ctx.pid(), AnswerLate, Duration::from_millis(300));
            }
            Ok(req) => {
                let target = req.request().target().to_owned();
                req.respond(Response::text(target));
            }
            Err(msg) => {
                if msg.downcast::<AnswerLate>().is_ok() {
                    for req in self.held.drain(..) {
                        req.respond(Response::text("late"));
                    }
                    let _ = self.answered_late.send(());
                }
            }
        }
        Ok(())
    }
}

/// Answers `/now` at once with what it sees of the request's deadline; keeps `/later` until
/// told, then reports the same through `seen`.
struct DeadlineSeer {
    held: Vec<WebRequest>,
    seen: Sender<(bool, bool)>,
}

impl Actor for DeadlineSeer {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<WebRequest>() {
            Ok(req) if req.request().path() == "/later" => self.held.push(req),
            Ok(req) => {
                let text = format!("{} {}", req.deadline().is_some(), req.is_expired());
                req.respond(Response::text(text));
            }
            Err(msg) => {
                if msg.downcast::<AnswerLate>().is_ok() {
                    for req in self.held.drain(..) {
                        let _ = self.seen.send((req.deadline().is_some(), req.is_expired()));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A worker sees the deadline its request was given, and whether it has passed (found by a
/// user trial: a request answered 504 was still served later, the worker unable to tell).
#[test]
fn web_request_deadline_is_seen_by_the_worker_and_expires() {
    let node = start_node("web-request-deadline", 1);
    let (seen_tx, seen) = mpsc::channel();
    let worker = spawn_on(&node, 0, move || DeadlineSeer { held: Vec::new(), seen: seen_tx }, 16);
    let options = WebHandlerOptions { request_timeout: Duration::from_millis(100), ..WebHandlerOptions::new(worker) };
    let server = serve(&node, WebHandler::new(options));
    let mut client = Client::connect(server.local_addr());
    assert_eq!(client.get("/now").text(), "true false");
    assert_eq!(client.get("/later").status, 504);
    node.send(worker, AnswerLate).expect("tell the worker");
    assert_eq!(seen.recv_timeout(WAIT).expect("the worker looked"), (true, true));
    node.stop();
}

/// A `WebWorker` whose GET of `/slow` takes `work` (awaited); counts the `/slow` requests its
/// `handle_get` saw.
struct Laggard<const SKIPS: bool> {
    work: Duration,
    seen: Arc<std::sync::atomic::AtomicUsize>,
}

impl<const SKIPS: bool> WebWorker for Laggard<SKIPS> {
    const SKIPS_EXPIRED: bool = SKIPS;
    async fn handle_get(&mut self, ctx: &mut Context, req: &Request) -> Response {
        if req.path() == "/slow" {
            self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ctx.sleep(self.work).await;
        }
        Response::text("done")
    }
}

/// Found by an Ergo-porting trial: a worker behind on its queue served every request already
/// answered 504 before a fresh one, which then timed out too (under a burst, no request was
/// answered in time). A `WebWorker` now skips a request whose deadline passed while it
/// waited (`SKIPS_EXPIRED`, `WebRequest::skip_if_expired`); the connection's 504 stands.
#[test]
fn web_worker_skips_requests_answered_504_while_they_waited() {
    fn run<const SKIPS: bool>(name: &str) -> usize {
        let node = start_node(name, 1);
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        let work = Duration::from_millis(400);
        let worker = spawn_on(&node, 0, move || Laggard::<SKIPS> { work, seen: counter }, 16);
        let options =
            WebHandlerOptions { request_timeout: Duration::from_millis(100), ..WebHandlerOptions::new(worker) };
        let server = serve(&node, WebHandler::new(options));
        let addr = server.local_addr();
        // Three at once: the first is taken at once and answered after its timeout; the
        // other two wait 400 ms behind it, their 504s sent at 100 ms.
        let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(addr)).collect();
        for c in &mut clients {
            c.send_request("GET", "/slow", &[]);
        }
        for c in &mut clients {
            let resp = c.read_response(false);
            assert_eq!(resp.status, 504, "{resp:?}");
        }
        // Whatever the worker still does with them, a fresh request is answered once it is free.
        wait_until("the worker is free", || {
            let resp = Client::connect(addr).request("GET", "/fast", &[]);
            resp.status == 200
        });
        let seen = seen.load(std::sync::atomic::Ordering::SeqCst);
        node.stop();
        seen
    }
    // The one the worker took at once, then nothing late; without skipping, all three.
    assert_eq!(run::<true>("web-worker-skips-expired"), 1);
    assert_eq!(run::<false>("web-worker-serves-expired"), 3);
}

/// A zero `request_timeout` is the default 5 s, as Ergo's (found by an Ergo-porting trial: it
/// answered 504 to every request not answered within the dispatch that read it).
#[test]
fn web_handler_zero_request_timeout_is_the_default() {
    let node = start_node("web-handler-zero-timeout", 1);
    let (late_tx, _late) = mpsc::channel();
    let slow = spawn_on(&node, 0, move || Slow { held: Vec::new(), answered_late: late_tx }, 16);
    let options = WebHandlerOptions { request_timeout: Duration::ZERO, ..WebHandlerOptions::new(slow) };
    let server = serve(&node, WebHandler::new(options));
    let resp = get(server.local_addr(), "/slow");
    assert_eq!((resp.status, resp.text()), (200, "late"), "{resp:?}");
    node.stop();
}

/// Drops every request unanswered.
struct Dropper;

impl Actor for Dropper {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        drop(msg.downcast::<WebRequest>());
        Ok(())
    }
}

const CHUNKS: [&str; 3] = ["alpha", "beta", "gamma"];
/// The chunked encoding of [`CHUNKS`], without the last chunk.
const CHUNKED: &[u8] = b"5\r\nalpha\r\n4\r\nbeta\r\n5\r\ngamma\r\n";

/// Answers with a streamed body: the head at once, then one of [`CHUNKS`] per timer tick;
/// then `finish()` for `/finish`, or drops the stream unfinished for anything else.
#[derive(Default)]
struct Streamer {
    stream: Option<ResponseStream>,
    finish: bool,
    sent: usize,
}

struct Tick;

impl Actor for Streamer {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        let tick = Duration::from_millis(5);
        match msg.downcast::<WebRequest>() {
            Ok(req) => {
                self.finish = req.request().path() == "/finish";
                self.sent = 0;
                let head = Response::new(StatusCode::OK).header("x-kind", "stream");
                self.stream = Some(req.respond_stream(head));
                ctx.send_after(ctx.pid(), Tick, tick);
            }
            Err(msg) => {
                if msg.downcast::<Tick>().is_err() {
                    return Ok(());
                }
                let Some(stream) = self.stream.as_mut() else { return Ok(()) };
                stream.send(CHUNKS[self.sent]);
                self.sent += 1;
                if self.sent < CHUNKS.len() {
                    ctx.send_after(ctx.pid(), Tick, tick);
                } else if let Some(stream) = self.stream.take() {
                    if self.finish {
                        stream.finish();
                    } else {
                        drop(stream);
                    }
                }
            }
        }
        Ok(())
    }
}

// ---- 1. WebHandler ----------------------------------------------------------------------------

#[test]
fn web_handler_worker_on_same_or_other_shard_answers_200() {
    for shards in [1u16, 2] {
        let node = start_node(&format!("web-handler-200-{shards}"), usize::from(shards));
        let mut router = Router::new();
        for s in 0..shards {
            let pid = spawn_on(&node, s, GetOnly::new, 16);
            router = router.route(&format!("/w{s}"), WebHandler::to(pid));
        }
        let server = serve(&node, router);
        let mut client = Client::connect(server.local_addr());
        for s in 0..shards {
            let path = format!("/w{s}");
            let resp = client.get(&path);
            assert_eq!(resp.status, 200, "{resp:?}");
            assert_eq!(resp.reason, "OK");
            assert_eq!(resp.header("content-type"), Some("text/plain; charset=utf-8"));
            assert_eq!(resp.header("content-length"), Some(&*format!("hello {path}").len().to_string()));
            assert_eq!(resp.text(), format!("hello {path}"));
        }
        node.stop();
    }
}

#[test]
fn web_handler_full_mailbox_answers_503_with_retry_after_at_once() {
    let node = start_node("web-handler-full", 1);
    let door = Arc::new(Door::default());
    let (started_tx, started) = mpsc::channel();
    let holder = {
        let door = door.clone();
        spawn_on(&node, 0, move || Holder { door, started: started_tx }, 1)
    };
    let options = WebHandlerOptions {
        request_timeout: Duration::from_secs(30),
        retry_after_secs: 7,
        ..WebHandlerOptions::new(holder)
    };
    let server = serve(&node, WebHandler::new(options));
    let addr = server.local_addr();

    let mut first = Client::connect(addr);
    first.send_request("GET", "/first", &[]);
    started.recv_timeout(WAIT).expect("the holder took the first request");

    for i in 2..=3 {
        let t = Instant::now();
        let resp = get(addr, &format!("/n{i}"));
        assert_eq!(resp.status, 503, "request {i}: {resp:?}");
        assert_eq!(resp.header("retry-after"), Some("7"), "request {i}");
        assert_eq!(resp.text(), "Service Unavailable");
        assert!(t.elapsed() < Duration::from_secs(5), "503 took {:?}", t.elapsed());
    }
    assert!(started.try_recv().is_err(), "a refused request reached the holder");

    door.open();
    let resp = first.read_response(false);
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.text(), "released");
    node.stop();
}

#[test]
fn web_handler_missing_target_answers_503_without_retry_after() {
    let node = start_node("web-handler-missing", 2);
    node.spawn_register("greeter", GetOnly::new, ProcessOptions::default()).wait().expect("greeter spawns");
    let dead = spawn_on(&node, 1, GetOnly::new, 16);
    node.exit(dead, ExitReason::Kill);
    let deadline = Instant::now() + WAIT;
    while !matches!(node.process_info(dead), Err(CallError::NoSuchProcess)) {
        assert!(Instant::now() < deadline, "the killed worker did not end");
        std::thread::sleep(Duration::from_millis(1));
    }
    let router = Router::new()
        .route("/greeter", WebHandler::to("greeter"))
        .route("/nobody", WebHandler::to("nobody"))
        .route("/dead", WebHandler::to(dead))
        .route("/empty", WebHandler::to(WebTarget::Nearest(Vec::new())));
    let server = serve(&node, router);
    let mut client = Client::connect(server.local_addr());

    let ok = client.get("/greeter");
    assert_eq!((ok.status, ok.text()), (200, "hello /greeter"));
    for path in ["/nobody", "/dead", "/empty"] {
        let resp = client.get(path);
        assert_eq!(resp.status, 503, "{path}: {resp:?}");
        assert_eq!(resp.text(), "Service Unavailable", "{path}");
        assert_eq!(resp.header("retry-after"), None, "{path}: only a full mailbox asks to retry");
    }
    node.stop();
}

/// A node serving a `Slow` worker with a 100 ms request timeout, a client of it, and where the
/// worker tells of its late answers.
fn slow_service(name: &str) -> (Node, WebServer, Client, mpsc::Receiver<()>) {
    let node = start_node(name, 1);
    let (late_tx, late) = mpsc::channel();
    let slow = spawn_on(&node, 0, move || Slow { held: Vec::new(), answered_late: late_tx }, 16);
    let options = WebHandlerOptions { request_timeout: Duration::from_millis(100), ..WebHandlerOptions::new(slow) };
    let server = serve(&node, WebHandler::new(options));
    let client = Client::connect(server.local_addr());
    (node, server, client, late)
}

/// What no handler sees is counted (a user trial found refusals at the connection invisible):
/// connections accepted, open and refused at the cap; requests refused by status; 504s.
#[test]
fn web_server_stats_count_what_no_handler_sees() {
    let node = start_node("web-server-stats", 1);
    let (late_tx, _late) = mpsc::channel();
    let slow = spawn_on(&node, 0, move || Slow { held: Vec::new(), answered_late: late_tx }, 16);
    let options = WebHandlerOptions { request_timeout: Duration::from_millis(100), ..WebHandlerOptions::new(slow) };
    let limits = HttpLimits {
        max_uri_bytes: 64,
        max_body_bytes: 16,
        header_read_timeout: Duration::from_millis(200),
        max_connections_per_shard: 3,
        ..HttpLimits::default()
    };
    let server = WebServer::start(
        &node,
        WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, WebHandler::new(options)) },
    )
    .expect("start");
    let addr = server.local_addr();
    assert_eq!(server.stats(), WebServerStats::default());

    let mut kept = Client::connect(addr);
    assert_eq!(kept.get("/fast").status, 200);
    assert_eq!(kept.get("/slow").status, 504);
    let long = format!("/{}", "x".repeat(100));
    assert_eq!(Client::connect(addr).get(&long).status, 414);
    let mut big = Client::connect(addr);
    big.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n");
    assert_eq!(big.read_response(false).status, 413);
    let mut bad = Client::connect(addr);
    bad.send(b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n");
    assert_eq!(bad.read_response(false).status, 400);
    drop((big, bad));
    // (A refused connection lingers a little to read what the client still sends.)
    wait_until("refused connections closed", || server.stats().connections == 1);
    let mut slowpoke = Client::connect(addr);
    slowpoke.send(b"GET / HTTP/1.1\r\nHost:");
    assert_eq!(slowpoke.read_response(false).status, 408);
    drop(slowpoke);
    wait_until("the slow client's connection closed", || server.stats().connections == 1);

    // Three open (the cap): the fourth gets 503 and is closed.
    let held: Vec<Client> = (0..2).map(|_| Client::connect(addr)).collect();
    wait_until("three connections open", || server.stats().connections == 3);
    let mut over = Client::connect(addr);
    assert_eq!(over.read_response(false).status, 503);

    let stats = server.stats();
    assert_eq!(stats.connections, 3, "{stats:?}");
    assert_eq!(stats.accepted, 8, "{stats:?}");
    assert_eq!(stats.over_capacity, 1, "{stats:?}");
    assert_eq!(stats.accept_errors, 0, "{stats:?}");
    assert_eq!(stats.timed_out, 1, "{stats:?}");
    let by_status: Vec<(u16, u64)> = stats.refused.iter().map(|(s, n)| (s.0, *n)).collect();
    assert_eq!(by_status, [(400, 1), (408, 1), (413, 1), (414, 1)], "{stats:?}");
    assert_eq!(stats.refused_with(StatusCode(408)), 1);
    assert_eq!(stats.refused_with(StatusCode(431)), 0);
    drop((held, kept));
    wait_until("every connection closed", || server.stats().connections == 0);
    node.stop();
    // Readable after the node stopped.
    assert_eq!(server.stats().accepted, 8);
}

#[test]
fn web_handler_unanswered_request_answers_504_and_drops_late_answer() {
    let (node, _server, mut client, late) = slow_service("web-handler-timeout");

    // Pipelined: the fast answer waits behind the 504, in request order.
    client.send_request("GET", "/slow", &[]);
    client.send_request("GET", "/fast?1", &[]);
    let timed_out = client.read_response(false);
    assert_eq!(timed_out.status, 504, "{timed_out:?}");
    assert_eq!(timed_out.text(), "Gateway Timeout");
    let fast = client.read_response(false);
    assert_eq!((fast.status, fast.text()), (200, "/fast?1"));

    late.recv_timeout(WAIT).expect("the worker answered the slow request late");
    // The late `late` answer went nowhere: the next request gets its own answer.
    let next = client.get("/fast?2");
    assert_eq!((next.status, next.text()), (200, "/fast?2"), "{next:?}");
    assert!(client.buf.is_empty(), "stray bytes: {:?}", String::from_utf8_lossy(&client.buf));
    node.stop();
}

#[test]
fn web_handler_deadline_of_the_last_request_of_a_pipelined_batch_answers_504() {
    let (node, _server, mut client, _late) = slow_service("web-handler-timeout-last");
    // One write, the unanswered request last: its deadline is noted after its handler ran.
    let one = |target: &str| format!("GET {target} HTTP/1.1\r\nhost: x\r\n\r\n");
    client.send([one("/fast?1"), one("/slow")].concat().as_bytes());
    let fast = client.read_response(false);
    assert_eq!((fast.status, fast.text()), (200, "/fast?1"));
    let timed_out = client.read_response(false);
    assert_eq!((timed_out.status, timed_out.text()), (504, "Gateway Timeout"), "{timed_out:?}");
    node.stop();
}

#[test]
fn web_handler_request_dropped_unanswered_answers_500() {
    let node = start_node("web-handler-dropped", 2);
    let dropper = spawn_on(&node, 1, || Dropper, 16);
    let server = serve(&node, WebHandler::to(dropper));
    let mut client = Client::connect(server.local_addr());
    for _ in 0..2 {
        let resp = client.get("/x");
        assert_eq!(resp.status, 500, "{resp:?}");
        assert_eq!(resp.text(), "Internal Server Error");
    }
    node.stop();
}

#[test]
fn web_handler_panicking_worker_answers_500_and_shard_keeps_serving() {
    let node = start_node("web-handler-panic", 1);
    let doomed = spawn_on(&node, 0, GetOnly::new, 16);
    let healthy = spawn_on(&node, 0, GetOnly::new, 16);
    let router = Router::new().route("/panic", WebHandler::to(doomed)).route("/ok", WebHandler::to(healthy));
    let server = serve(&node, router);
    let mut client = Client::connect(server.local_addr());

    let resp = client.get("/panic");
    assert_eq!(resp.status, 500, "{resp:?}");
    assert_eq!(resp.text(), "Internal Server Error");
    let resp = client.get("/ok");
    assert_eq!((resp.status, resp.text()), (200, "hello /ok"));
    let resp = get(server.local_addr(), "/ok");
    assert_eq!((resp.status, resp.text()), (200, "hello /ok"));
    // The panicking worker is gone: its route now answers 503.
    let resp = client.get("/panic");
    assert_eq!(resp.status, 503, "{resp:?}");
    node.stop();
}

/// Hands each request to a new OS thread (outside every shard), which answers it, or drops it
/// unanswered for `/drop`.
struct Offload;

impl Actor for Offload {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(req) = msg.downcast::<WebRequest>() {
            std::thread::spawn(move || {
                if req.request().path() != "/drop" {
                    let text = format!("from a thread: {}", req.request().path());
                    req.respond(Response::text(text));
                }
            });
        }
        Ok(())
    }
}

#[test]
fn web_handler_answer_from_foreign_thread_reaches_client() {
    let node = start_node("web-handler-thread", 2);
    let pid = spawn_on(&node, 1, || Offload, 16);
    let server = serve(&node, WebHandler::to(pid));
    let mut client = Client::connect(server.local_addr());
    let resp = client.get("/a");
    assert_eq!((resp.status, resp.text()), (200, "from a thread: /a"));
    let resp = client.get("/drop");
    assert_eq!((resp.status, resp.text()), (500, "Internal Server Error"));
    let resp = client.get("/b");
    assert_eq!((resp.status, resp.text()), (200, "from a thread: /b"));
    node.stop();
}

/// A plain handler that panics.
fn boom(_: &Request) -> Response {
    panic!("a plain handler panics, as the test asked")
}

#[test]
fn plain_function_handler_panicking_answers_500_and_connection_goes_on() {
    let node = start_node("web-handler-fn-panic", 1);
    let server = serve(&node, Router::new().get("/boom", boom).get("/ok", hello));
    let mut client = Client::connect(server.local_addr());
    let resp = client.get("/boom");
    assert_eq!((resp.status, resp.text()), (500, "Internal Server Error"));
    let resp = client.get("/ok");
    assert_eq!((resp.status, resp.text()), (200, "hello"));
    node.stop();
}

#[test]
fn plain_function_handler_panicking_among_pipelined_requests_answers_500_and_the_rest_in_order() {
    let node = start_node("web-handler-fn-panic-pipelined", 1);
    let server = serve(&node, Router::new().get("/boom", boom).get("/ok", hello));
    let mut client = Client::connect(server.local_addr());
    let one = |target: &str| format!("GET {target} HTTP/1.1\r\nhost: x\r\n\r\n");
    client.send([one("/ok"), one("/boom"), one("/ok"), one("/boom"), one("/ok")].concat().as_bytes());
    for expected in [(200, "hello"), (500, "Internal Server Error"), (200, "hello"), (500, "Internal Server Error")] {
        let resp = client.read_response(false);
        assert_eq!((resp.status, resp.text()), expected);
    }
    let resp = client.read_response(false);
    assert_eq!((resp.status, resp.text()), (200, "hello"));
    node.stop();
}

#[test]
fn web_handler_nearest_prefers_worker_on_connection_shard() {
    let node = start_node("web-handler-nearest", 2);
    let p0 = spawn_on(&node, 0, GetOnly::new, 64);
    let p1 = spawn_on(&node, 1, GetOnly::new, 64);
    let router = Router::new()
        .get("/where", thread_name)
        .route("/shard", WebHandler::to(WebTarget::Nearest(vec![p0, p1])))
        .route("/only1/{x}", WebHandler::to(WebTarget::Nearest(vec![p1])));
    let server = serve(&node, router);
    for _ in 0..16 {
        let mut client = Client::connect(server.local_addr());
        let here = client.get("/where");
        assert_eq!(here.status, 200);
        let here = shard_of_thread(here.text()).to_owned();
        assert!(here == "0" || here == "1", "{here}");
        let served = client.get("/shard");
        assert_eq!((served.status, served.text()), (200, here.as_str()), "a connection on shard {here}");
        // A list without a process on this shard: the first one.
        let first = client.get("/only1/x");
        assert_eq!((first.status, first.text()), (200, "hello /only1/x"));
    }
    node.stop();
}

// ---- 2. WebWorker -----------------------------------------------------------------------------

#[test]
fn web_worker_get_only_answers_get_200_and_head_with_length_but_no_body() {
    let node = start_node("web-worker-head", 1);
    let pid = spawn_on(&node, 0, GetOnly::new, 16);
    let server = serve(&node, WebHandler::to(pid));

    let resp = get(server.local_addr(), "/r");
    assert_eq!((resp.status, resp.text()), (200, "hello /r"));

    let mut client = Client::connect(server.local_addr());
    client.send_request("HEAD", "/r", &[("connection", "close")]);
    let head = client.read_response(true);
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("content-length"), Some("8"));
    assert_eq!(head.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(head.header("connection"), Some("close"));
    client.assert_closed();
    node.stop();
}

#[test]
fn web_worker_unimplemented_methods_answer_405_with_allow() {
    let node = start_node("web-worker-405", 2);
    let pid = spawn_on(&node, 1, GetOnly::new, 16);
    let server = serve(&node, WebHandler::to(pid));
    let mut client = Client::connect(server.local_addr());
    for method in ["POST", "PUT", "DELETE"] {
        let resp = client.request(method, "/r", &[("content-length", "0")]);
        assert_eq!(resp.status, 405, "{method}: {resp:?}");
        assert_eq!(resp.text(), "Method Not Allowed");
        let allow = resp.list("allow");
        assert!(allow.iter().any(|m| m == "GET"), "{method}: allow {allow:?}");
        assert!(allow.iter().any(|m| m == "HEAD"), "{method}: allow {allow:?}");
        assert!(!allow.iter().any(|m| m == method), "{method}: allow {allow:?}");
    }
    let resp = client.get("/r");
    assert_eq!((resp.status, resp.text()), (200, "hello /r"));
    node.stop();
}

#[test]
fn web_worker_options_answers_204_with_allow() {
    let node = start_node("web-worker-options", 1);
    let pid = spawn_on(&node, 0, GetOnly::new, 16);
    let server = serve(&node, WebHandler::to(pid));
    let mut client = Client::connect(server.local_addr());

    let first = client.request("OPTIONS", "/r", &[]);
    assert_eq!(first.status, 204, "{first:?}");
    assert_eq!(first.header("content-length"), None);
    let allow = first.list("allow");
    for m in ["GET", "HEAD", "OPTIONS"] {
        assert!(allow.iter().any(|a| a == m), "{m} missing from {allow:?}");
    }

    // Once POST and DELETE were refused, OPTIONS no longer lists them.
    for method in ["POST", "DELETE"] {
        assert_eq!(client.request(method, "/r", &[("content-length", "0")]).status, 405);
    }
    let after = client.request("OPTIONS", "/r", &[]);
    assert_eq!(after.status, 204);
    assert_eq!(after.list("allow"), ["GET", "HEAD", "PUT", "PATCH", "OPTIONS"]);
    // Nothing followed the bodiless 204s.
    let resp = client.get("/r");
    assert_eq!((resp.status, resp.text()), (200, "hello /r"));
    node.stop();
}

#[test]
fn web_worker_unknown_method_answers_501_from_connection() {
    let node = start_node("web-worker-501", 1);
    let (seen_tx, seen) = mpsc::channel();
    let pid = spawn_on(&node, 0, move || GetOnly { seen: Some(seen_tx) }, 16);
    let server = serve(&node, WebHandler::to(pid));
    let mut client = Client::connect(server.local_addr());

    let resp = client.request("BREW", "/pot", &[]);
    assert_eq!(resp.status, 501, "{resp:?}");
    assert_eq!(resp.reason, "Not Implemented");
    // The framing is intact: the connection serves the next request.
    let resp = client.get("/pot");
    assert_eq!((resp.status, resp.text()), (200, "hello /pot"));
    assert!(seen.try_recv().is_err());
    node.stop();
}

#[test]
fn web_worker_other_messages_reach_handle_message() {
    let node = start_node("web-worker-messages", 2);
    let (seen_tx, seen) = mpsc::channel();
    let pid = spawn_on(&node, 1, move || GetOnly { seen: Some(seen_tx) }, 16);
    let server = serve(&node, WebHandler::to(pid));

    node.send(pid, 7u64).expect("send 7");
    assert_eq!(seen.recv_timeout(WAIT), Ok(7));
    let resp = get(server.local_addr(), "/after");
    assert_eq!((resp.status, resp.text()), (200, "hello /after"));
    node.send(pid, 8u64).expect("send 8");
    assert_eq!(seen.recv_timeout(WAIT), Ok(8));
    node.stop();
}

/// A worker that lists its methods: GET and POST implemented and listed, PUT implemented but
/// not listed, DELETE listed but not implemented (a wrong list).
struct Listed;

impl WebWorker for Listed {
    const METHODS: Option<&'static [Method]> = Some(&[Method::Get, Method::Post, Method::Delete]);

    fn handle_now(&mut self, _: &mut Context, req: &Request) -> Option<Response> {
        matches!(req.method(), Method::Get | Method::Head).then(|| Response::text("now"))
    }

    async fn handle_post(&mut self, _: &mut Context, _: &Request) -> Response {
        Response::text("posted")
    }

    async fn handle_put(&mut self, _: &mut Context, _: &Request) -> Response {
        Response::text("put, though not listed")
    }
}

#[test]
fn web_worker_methods_listed_make_allow_exact_from_the_first_request() {
    capture_access_log();
    let node = start_node("web-worker-listed", 1);
    let pid = spawn_on(&node, 0, || Listed, 16);
    let server = serve(&node, WebHandler::to(pid));
    let mut client = Client::connect(server.local_addr());

    // Nothing tried yet: the list is the answer (PATCH, PUT never named).
    let patch = client.request("PATCH", "/r", &[("content-length", "0")]);
    assert_eq!(patch.status, 405, "{patch:?}");
    assert_eq!(patch.list("allow"), ["GET", "HEAD", "POST", "DELETE", "OPTIONS"]);
    let options = client.request("OPTIONS", "/r", &[]);
    assert_eq!(options.status, 204, "{options:?}");
    assert_eq!(options.list("allow"), ["GET", "HEAD", "POST", "DELETE", "OPTIONS"]);
    // Implemented but not listed: the runtime answers before the handler.
    let put = client.request("PUT", "/r", &[("content-length", "0")]);
    assert_eq!(put.status, 405, "{put:?}");
    assert_eq!(put.list("allow"), ["GET", "HEAD", "POST", "DELETE", "OPTIONS"]);
    // Listed and implemented: served (GET in place, POST by its async method, HEAD as GET).
    assert_eq!(client.get("/r").text(), "now");
    let post = client.request("POST", "/r", &[("content-length", "0")]);
    assert_eq!((post.status, post.text()), (200, "posted"));
    client.send_request("HEAD", "/r", &[]);
    let head = client.read_response(true);
    assert_eq!((head.status, head.header("content-length")), (200, Some("3")), "{head:?}");
    // Listed but not implemented: 405, and the list's mistake is left out of `Allow` after.
    let delete = client.request("DELETE", "/r", &[("content-length", "0")]);
    assert_eq!(delete.status, 405, "{delete:?}");
    assert_eq!(delete.list("allow"), ["GET", "HEAD", "POST", "OPTIONS"]);
    let again = client.request("PATCH", "/r", &[("content-length", "0")]);
    assert_eq!(again.list("allow"), ["GET", "HEAD", "POST", "OPTIONS"]);
    // The list's mistake is logged once, however often a client asks for the method.
    for _ in 0..3 {
        assert_eq!(client.request("DELETE", "/r", &[("content-length", "0")]).status, 405);
    }
    let warned = web_warnings("::Listed lists DELETE");
    assert_eq!(warned.len(), 1, "{warned:?}");
    node.stop();
}

/// Lists GET but implements only `handle_head` (HEAD is served though GET is not).
struct HeadOnly;

impl WebWorker for HeadOnly {
    const METHODS: Option<&'static [Method]> = Some(&[Method::Get]);

    async fn handle_head(&mut self, _: &mut Context, _: &Request) -> Response {
        Response::text("head")
    }
}

/// The same, its methods learned.
struct HeadOnlyLearned;

impl WebWorker for HeadOnlyLearned {
    async fn handle_head(&mut self, _: &mut Context, _: &Request) -> Response {
        Response::text("head")
    }
}

/// Found in review: a GET found lacking took HEAD out of `Allow` even while the worker's own
/// `handle_head` served HEAD.
#[test]
fn web_worker_allow_keeps_head_while_its_own_handle_head_serves_it() {
    let node = start_node("web-worker-head-only", 1);
    let listed = spawn_on(&node, 0, || HeadOnly, 16);
    let learned = spawn_on(&node, 0, || HeadOnlyLearned, 16);
    let router = Router::new().route("/listed", WebHandler::to(listed)).route("/learned", WebHandler::to(learned));
    let server = serve(&node, router);
    let mut client = Client::connect(server.local_addr());
    for (path, rest) in
        [("/listed", &["HEAD", "OPTIONS"][..]), ("/learned", &["HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])]
    {
        assert_eq!(client.request("GET", path, &[]).status, 405, "{path}");
        client.send_request("HEAD", path, &[]);
        let head = client.read_response(true);
        assert_eq!((head.status, head.header("content-length")), (200, Some("4")), "{path}: {head:?}");
        let options = client.request("OPTIONS", path, &[]);
        assert_eq!(options.list("allow"), rest, "{path}: {options:?}");
    }
    node.stop();
}

/// Answers HEAD from `handle_now` and implements no async method.
struct HeadNowLearned;

impl WebWorker for HeadNowLearned {
    fn handle_now(&mut self, _: &mut Context, req: &Request) -> Option<Response> {
        (req.method() == Method::Head).then(|| Response::text("head"))
    }
}

/// Found in review (stop 26's carried-over gap): a HEAD answered in `handle_now` was not
/// recorded as served, so once GET was found lacking, `Allow` left HEAD out though the worker
/// answers it.
#[test]
fn web_worker_allow_keeps_head_that_handle_now_answers() {
    let node = start_node("web-worker-head-now", 1);
    let pid = spawn_on(&node, 0, || HeadNowLearned, 16);
    let server = serve(&node, WebHandler::to(pid));
    let mut client = Client::connect(server.local_addr());
    client.send_request("HEAD", "/", &[]);
    let head = client.read_response(true);
    assert_eq!((head.status, head.header("content-length")), (200, Some("4")), "{head:?}");
    let get = client.request("GET", "/", &[]);
    assert_eq!(get.status, 405, "{get:?}");
    assert_eq!(get.list("allow"), ["HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], "{get:?}");
    let options = client.request("OPTIONS", "/", &[]);
    assert_eq!(options.list("allow"), ["HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"], "{options:?}");
    node.stop();
}

/// A `WebWorker` answering `/now…` paths from `handle_now` (no future; `/now-panic` panics
/// there) and declining everything else, which its async `handle_get` answers.
struct NowOrLater;

impl WebWorker for NowOrLater {
    fn handle_now(&mut self, _: &mut Context, req: &Request) -> Option<Response> {
        match req.path() {
            "/now-panic" => panic!("NowOrLater panics in handle_now on /now-panic, as the test asked"),
            path if path.starts_with("/now") => Some(Response::text(format!("now {path}"))),
            _ => None,
        }
    }

    async fn handle_get(&mut self, _: &mut Context, req: &Request) -> Response {
        Response::text(format!("later {}", req.path()))
    }
}

#[test]
fn web_worker_handle_now_answers_in_place_and_passes_the_rest_to_the_async_methods() {
    let node = start_node("web-worker-now", 1);
    let pid = spawn_on(&node, 0, || NowOrLater, 64);
    let server = serve(&node, WebHandler::to(pid));
    let mut client = Client::connect(server.local_addr());

    assert_eq!(client.get("/now").text(), "now /now");
    assert_eq!(client.get("/later").text(), "later /later");
    // HEAD answered in place: the length of GET's body, no body.
    client.send_request("HEAD", "/now/x", &[]);
    let head = client.read_response(true);
    assert_eq!((head.status, head.header("content-length")), (200, Some("10")), "{head:?}");
    // Declined methods the worker lacks still get the runtime's 405 with `Allow`.
    let post = client.request("POST", "/later", &[("content-length", "0")]);
    assert_eq!(post.status, 405, "{post:?}");
    assert!(post.list("allow").iter().any(|m| m == "GET"), "{post:?}");

    // Pipelined, both ways interleaved: answered in request order.
    let paths = ["/now/1", "/later/2", "/now/3", "/now/4", "/later/5", "/now/6"];
    let burst: Vec<u8> = paths.iter().flat_map(|p| raw_request("GET", p, &[])).collect();
    client.send(&burst);
    for path in paths {
        let resp = client.read_response(false);
        let way = if path.starts_with("/now") { "now" } else { "later" };
        assert_eq!((resp.status, resp.text()), (200, format!("{way} {path}").as_str()));
    }

    // A panic in `handle_now` ends the worker like one in an async handler: 500, and the
    // connection goes on (the worker is gone: 503).
    let resp = client.get("/now-panic");
    assert_eq!((resp.status, resp.text()), (500, "Internal Server Error"), "{resp:?}");
    assert_eq!(client.get("/now").status, 503);
    node.stop();
}

// ---- 3. Router --------------------------------------------------------------------------------

fn user(req: &Request) -> Response {
    Response::text(format!("user {} query {:?}", req.param("id").unwrap_or("-"), req.query()))
}

fn me(_: &Request) -> Response {
    Response::text("me")
}

fn file(req: &Request) -> Response {
    Response::text(format!("rest [{}]", req.param("rest").unwrap_or("-")))
}

#[test]
fn router_param_is_visible_through_request_param() {
    let node = start_node("web-router-param", 1);
    let server = serve(&node, Router::new().get("/users/{id}", user));
    let mut client = Client::connect(server.local_addr());
    assert_eq!(client.get("/users/42").text(), "user 42 query None");
    assert_eq!(client.get("/users/abc-def").text(), "user abc-def query None");
    assert_eq!(client.get("/users/").status, 404);
    assert_eq!(client.get("/users/1/2").status, 404);
    node.stop();
}

#[test]
fn router_rest_param_takes_the_tail() {
    let node = start_node("web-router-rest", 1);
    let server = serve(&node, Router::new().get("/files/{*rest}", file));
    let mut client = Client::connect(server.local_addr());
    assert_eq!(client.get("/files/a/b/c.txt").text(), "rest [a/b/c.txt]");
    assert_eq!(client.get("/files/one").text(), "rest [one]");
    assert_eq!(client.get("/files").text(), "rest []");
    assert_eq!(client.get("/filesx").status, 404);
    node.stop();
}

#[test]
fn router_a_literal_beats_a_param_whatever_the_order_routes_were_added() {
    let node = start_node("web-router-order", 1);
    let router = Router::new().get("/a/me", me).get("/a/{id}", user).get("/b/{id}", user).get("/b/me", me);
    let server = serve(&node, router);
    let mut client = Client::connect(server.local_addr());
    assert_eq!(client.get("/a/me").text(), "me");
    assert_eq!(client.get("/a/you").text(), "user you query None");
    assert_eq!(client.get("/b/me").text(), "me");
    assert_eq!(client.get("/b/you").text(), "user you query None");
    node.stop();
}

#[test]
fn router_wrong_method_on_known_path_answers_405_with_route_methods() {
    let node = start_node("web-router-405", 1);
    let router = Router::new().get("/items", hello).post("/items", hello).put("/items/{id}", user);
    let server = serve(&node, router);
    let mut client = Client::connect(server.local_addr());

    let resp = client.request("DELETE", "/items", &[]);
    assert_eq!(resp.status, 405, "{resp:?}");
    assert_eq!(resp.header("allow"), Some("GET, HEAD, POST, OPTIONS"));
    let resp = client.request("GET", "/items/9", &[]);
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("PUT, OPTIONS"));
    // OPTIONS on a path the routes name: 204 with the same `Allow` (found by a user trial:
    // it was 405, while a worker behind `route` answers OPTIONS 204).
    let resp = client.request("OPTIONS", "/items/9", &[]);
    assert_eq!((resp.status, resp.header("allow")), (204, Some("PUT, OPTIONS")), "{resp:?}");
    assert!(resp.body.is_empty(), "{resp:?}");
    // HEAD is served by the GET route.
    let resp = client.request("HEAD", "/items", &[]);
    assert_eq!((resp.status, resp.header("content-length")), (200, Some("5")));
    let resp = client.request("POST", "/items", &[("content-length", "0")]);
    assert_eq!(resp.status, 200);
    node.stop();
}

#[test]
fn router_tries_later_routes_after_a_literal_with_the_wrong_method() {
    let node = start_node("web-router-later", 1);
    // The same literal twice (the first for POST only), a literal before a parameter route
    // that also matches, and literals that differ only in their last byte around the 8-byte
    // words they are compared by.
    let router = Router::new()
        .post("/same", me)
        .get("/same", hello)
        .post("/x/me", me)
        .get("/x/{id}", user)
        .get("/abcdefg", me)
        .get("/abcdefh", hello)
        .get("/abcdefgh", hello)
        .get("/abcdefghi", me);
    let server = serve(&node, router);
    let mut client = Client::connect(server.local_addr());
    assert_eq!(client.get("/same").text(), "hello");
    assert_eq!(client.request("POST", "/same", &[("content-length", "0")]).text(), "me");
    assert_eq!(client.get("/x/me").text(), "user me query None");
    assert_eq!(client.get("/abcdefg").text(), "me");
    assert_eq!(client.get("/abcdefh").text(), "hello");
    assert_eq!(client.get("/abcdefgh").text(), "hello");
    assert_eq!(client.get("/abcdefghi").text(), "me");
    assert_eq!(client.get("/abcdef").status, 404);
    assert_eq!(client.get("/abcdefgi").status, 404);
    assert_eq!(client.get("/abcdefghij").status, 404);
    let resp = client.request("DELETE", "/same", &[]);
    assert_eq!((resp.status, resp.header("allow")), (405, Some("GET, HEAD, POST, OPTIONS")));
    node.stop();
}

#[test]
fn router_unknown_path_answers_404_or_custom_fallback() {
    fn gone(req: &Request) -> Response {
        Response::text(format!("no {}", req.path())).with_status(StatusCode(410))
    }
    let node = start_node("web-router-fallback", 1);
    let plain = serve(&node, Router::new().get("/known", hello));
    let custom = serve(&node, Router::new().get("/known", hello).fallback(gone));

    let resp = get(plain.local_addr(), "/unknown");
    assert_eq!((resp.status, resp.text()), (404, "Not Found"));
    let resp = get(custom.local_addr(), "/unknown?q=1");
    assert_eq!((resp.status, resp.reason.as_str(), resp.text()), (410, "Gone", "no /unknown"));
    let resp = get(custom.local_addr(), "/known");
    assert_eq!((resp.status, resp.text()), (200, "hello"));
    node.stop();
}

/// `OPTIONS *` asks about the server (RFC 9110 §9.3.7): no route matches it; without a
/// fallback the router answers 204 (it answered 404: found by an adversarial probe).
#[test]
fn router_answers_options_asterisk_for_the_server() {
    fn fallback(req: &Request) -> Response {
        Response::text(format!("fallback {} {}", req.method(), req.target()))
    }
    let node = start_node("web-router-options-asterisk", 1);
    let named = serve(&node, Router::new().get("/items", hello).post("/items", hello).delete("/items/{id}", user));
    let worker = spawn_on(&node, 0, GetOnly::new, 16);
    let any = serve(&node, Router::new().get("/items", hello).route("/w", WebHandler::to(worker)));
    let custom = serve(&node, Router::new().get("/items", hello).fallback(fallback));

    let mut client = Client::connect(named.local_addr());
    let resp = client.request("OPTIONS", "*", &[]);
    assert_eq!((resp.status, resp.header("allow")), (204, Some("GET, HEAD, POST, DELETE, OPTIONS")), "{resp:?}");
    // A resource's OPTIONS and other methods on `*` are not the server's question.
    assert_eq!(client.request("OPTIONS", "/nowhere", &[]).status, 404);
    let resp = client.request("OPTIONS", "/items", &[]);
    assert_eq!((resp.status, resp.header("allow")), (204, Some("GET, HEAD, POST, OPTIONS")), "{resp:?}");
    // A route that takes any method: its handler decides, so no `Allow` is claimed.
    let resp = Client::connect(any.local_addr()).request("OPTIONS", "*", &[]);
    assert_eq!((resp.status, resp.header("allow")), (204, None), "{resp:?}");
    // A fallback answers it as any unrouted request.
    let resp = Client::connect(custom.local_addr()).request("OPTIONS", "*", &[]);
    assert_eq!((resp.status, resp.text()), (200, "fallback OPTIONS *"), "{resp:?}");
    node.stop();
}

/// Found by a user trial: parameter names were matched in any case (`{UserId}` found by
/// `param("userid")`), and values came percent-encoded with no way to decode them.
#[test]
fn router_params_match_their_name_exactly_and_decode_on_request() {
    fn show(req: &Request) -> Response {
        let decoded = match req.param_decoded("UserId") {
            Some(Ok(v)) => v.into_owned(),
            Some(Err(_)) => "not utf-8".to_owned(),
            None => "none".to_owned(),
        };
        Response::text(format!("{:?} {:?} {decoded}", req.param("UserId"), req.param("userid")))
    }
    let node = start_node("web-router-param-case", 1);
    let server = serve(&node, Router::new().get("/p/{UserId}", show));
    let mut client = Client::connect(server.local_addr());
    assert_eq!(client.get("/p/b%20c").text(), r#"Some("b%20c") None b c"#);
    assert_eq!(client.get("/p/%E2%82%AC").text(), r#"Some("%E2%82%AC") None €"#);
    assert_eq!(client.get("/p/%FF").text(), r#"Some("%FF") None not utf-8"#);
    node.stop();
}

#[test]
fn router_query_string_does_not_affect_matching() {
    let node = start_node("web-router-query", 1);
    let server = serve(&node, Router::new().get("/users/{id}", user).get("/exact", hello));
    let mut client = Client::connect(server.local_addr());
    assert_eq!(client.get("/users/7?x=1&next=/a/b").text(), "user 7 query Some(\"x=1&next=/a/b\")");
    assert_eq!(client.get("/users/7?").text(), "user 7 query Some(\"\")");
    assert_eq!(client.get("/exact?x").text(), "hello");
    node.stop();
}

#[test]
fn router_plain_function_route_runs_on_shard_without_actor() {
    let node = start_node("web-router-plain", 2);
    let server = serve(&node, Router::new().get("/where", thread_name));
    for _ in 0..4 {
        let resp = get(server.local_addr(), "/where");
        assert_eq!(resp.status, 200);
        let name = resp.text();
        assert!(name.starts_with("pinion-web-router-plain-"), "ran on {name:?}");
    }
    let processes: usize = node.inspect().expect("inspect").iter().map(|s| s.processes).sum();
    assert_eq!(processes, 0, "no actor took part");
    node.stop();
}

// ---- 4. Middleware ----------------------------------------------------------------------------

#[test]
fn bearer_auth_missing_or_wrong_token_answers_401_right_token_200() {
    let node = start_node("web-mw-bearer", 1);
    let worker = spawn_on(&node, 0, GetOnly::new, 16);
    let router =
        Router::new().get("/fn", hello).route("/worker", WebHandler::to(worker)).layer(bearer("api", "s3cret"));
    let server = serve(&node, router);
    let mut client = Client::connect(server.local_addr());
    for path in ["/fn", "/worker"] {
        for fields in [
            &[][..],
            &[("authorization", "Bearer wrong")][..],
            &[("authorization", "s3cret")][..],
            &[("authorization", "Bearer s3cre")][..],
            &[("authorization", "Bearer s3crett")][..],
            &[("authorization", "Bearers3cret")][..],
            &[("authorization", "Basic s3cret")][..],
        ] {
            let resp = client.request("GET", path, fields);
            assert_eq!(resp.status, 401, "{path} {fields:?}: {resp:?}");
            assert_eq!(resp.header("www-authenticate"), Some("Bearer realm=\"api\""));
        }
        // The scheme is case-insensitive (RFC 9110 §11.1), found by a user trial.
        for value in ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret"] {
            let resp = client.request("GET", path, &[("authorization", value)]);
            assert_eq!(resp.status, 200, "{path} {value:?}: {resp:?}");
        }
    }
    node.stop();
}

#[test]
fn cors_default_preflight_answers_204_with_allow_fields() {
    let node = start_node("web-mw-cors-preflight", 1);
    // An any-method route: the preflight reaches the layer (the `router_layers_*` tests cover
    // a method-specific route).
    let server = serve(&node, Router::new().route("/api", hello).layer(Cors::default()));
    let mut client = Client::connect(server.local_addr());
    let resp = client.request(
        "OPTIONS",
        "/api",
        &[("origin", "http://app.example"), ("access-control-request-method", "POST")],
    );
    assert_eq!(resp.status, 204, "{resp:?}");
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    assert_eq!(resp.header("access-control-allow-methods"), Some("GET, HEAD, POST, PUT, PATCH, DELETE"));
    assert_eq!(resp.header("access-control-allow-headers"), Some("content-type, authorization"));
    assert_eq!(resp.header("access-control-max-age"), Some("600"));
    assert!(resp.body.is_empty());
    node.stop();
}

#[test]
fn cors_default_simple_request_with_origin_gets_allow_origin() {
    let node = start_node("web-mw-cors-simple", 2);
    let worker = spawn_on(&node, 1, GetOnly::new, 16);
    let router = Router::new().get("/fn", hello).route("/worker", WebHandler::to(worker)).layer(Cors::default());
    let server = serve(&node, router);
    let mut client = Client::connect(server.local_addr());
    for path in ["/fn", "/worker"] {
        let resp = client.request("GET", path, &[("origin", "http://app.example")]);
        assert_eq!(resp.status, 200, "{path}");
        assert_eq!(resp.header("access-control-allow-origin"), Some("*"), "{path}: {resp:?}");
        let resp = client.get(path);
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("access-control-allow-origin"), None, "{path}: no Origin, no CORS field");
    }
    node.stop();
}

#[test]
fn cors_with_origins_unlisted_origin_gets_no_allow_origin() {
    let node = start_node("web-mw-cors-origins", 1);
    let cors = Cors { origins: vec!["http://good.example".into()], ..Cors::default() };
    let server = serve(&node, Router::new().route("/api", hello).layer(cors));
    let mut client = Client::connect(server.local_addr());

    let resp = client.request("GET", "/api", &[("origin", "http://evil.example")]);
    assert_eq!((resp.status, resp.text()), (200, "hello"));
    assert_eq!(resp.header("access-control-allow-origin"), None, "{resp:?}");
    // The answer depends on `Origin` whatever it was: caches are told, with or without one.
    assert_eq!(resp.header("vary"), Some("origin"), "{resp:?}");
    let resp = client.get("/api");
    assert_eq!((resp.header("access-control-allow-origin"), resp.header("vary")), (None, Some("origin")), "{resp:?}");

    let resp = client.request("GET", "/api", &[("origin", "http://good.example")]);
    assert_eq!(resp.header("access-control-allow-origin"), Some("http://good.example"));
    assert_eq!(resp.header("vary"), Some("origin"));

    let resp = client.request(
        "OPTIONS",
        "/api",
        &[("origin", "http://evil.example"), ("access-control-request-method", "GET")],
    );
    assert_eq!(resp.status, 403, "{resp:?}");
    assert_eq!(resp.header("access-control-allow-origin"), None);
    node.stop();
}

#[test]
fn cors_with_credentials_allows_them_for_listed_origins_only() {
    let node = start_node("web-mw-cors-cred", 1);
    let cors = Cors {
        origins: vec!["http://app.example".into()],
        credentials: true,
        expose_headers: vec!["x-total".into(), "etag".into()],
        ..Cors::default()
    };
    let server = serve(&node, Router::new().route("/api", hello).layer(cors));
    let mut client = Client::connect(server.local_addr());

    let resp = client.request("GET", "/api", &[("origin", "http://app.example")]);
    assert_eq!((resp.status, resp.text()), (200, "hello"));
    assert_eq!(resp.header("access-control-allow-origin"), Some("http://app.example"), "{resp:?}");
    assert_eq!(resp.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(resp.header("access-control-expose-headers"), Some("x-total, etag"));
    assert_eq!(resp.header("vary"), Some("origin"));
    for origin in [None, Some("http://evil.example"), Some("null")] {
        let fields: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
        let resp = client.request("GET", "/api", &fields);
        assert_eq!(resp.header("access-control-allow-origin"), None, "{origin:?}: {resp:?}");
        assert_eq!(resp.header("access-control-allow-credentials"), None, "{origin:?}: {resp:?}");
    }
    let resp = client.request(
        "OPTIONS",
        "/api",
        &[("origin", "http://app.example"), ("access-control-request-method", "PUT")],
    );
    assert_eq!(resp.status, 204, "{resp:?}");
    assert_eq!(resp.header("access-control-allow-origin"), Some("http://app.example"));
    assert_eq!(resp.header("access-control-allow-credentials"), Some("true"));

    // Without a list, credentials are not allowed: reflecting any origin (`null` included)
    // with them would let every site read what the user's cookies unlock (a review).
    let open = Cors { credentials: true, ..Cors::default() };
    let server = serve(&node, Router::new().route("/api", hello).layer(open));
    let mut client = Client::connect(server.local_addr());
    for origin in ["http://evil.example", "null"] {
        let resp = client.request("GET", "/api", &[("origin", origin)]);
        assert_eq!(resp.header("access-control-allow-origin"), Some("*"), "{origin}: {resp:?}");
        assert_eq!(resp.header("access-control-allow-credentials"), None, "{origin}: {resp:?}");
    }
    node.stop();
}

#[test]
fn auth_with_its_own_challenge_sends_it_on_401() {
    let node = start_node("web-mw-auth-basic", 1);
    let basic = auth("admin", |r| r.header("authorization") == Some(&b"Basic YTpi"[..]))
        .challenge("Basic realm=\"admin\", charset=\"UTF-8\"");
    let server = serve(&node, Router::new().route("/admin", hello).layer(basic));
    let mut client = Client::connect(server.local_addr());
    let resp = client.get("/admin");
    assert_eq!(resp.status, 401, "{resp:?}");
    assert_eq!(resp.header("www-authenticate"), Some("Basic realm=\"admin\", charset=\"UTF-8\""));
    let resp = client.request("GET", "/admin", &[("authorization", "Basic YTpi")]);
    assert_eq!((resp.status, resp.text()), (200, "hello"));
    node.stop();
}

#[test]
fn a_layer_wrapping_one_route_guards_that_route_only() {
    let node = start_node("web-mw-one-route", 1);
    let router = Router::new().get("/open", hello).patch("/admin", bearer("admin", "tok").wrap(Arc::new(hello)));
    let server = serve(&node, router);
    let mut client = Client::connect(server.local_addr());
    assert_eq!(client.get("/open").status, 200);
    let resp = client.request("PATCH", "/admin", &[]);
    assert_eq!(resp.status, 401, "{resp:?}");
    let resp = client.request("PATCH", "/admin", &[("authorization", "Bearer tok")]);
    assert_eq!((resp.status, resp.text()), (200, "hello"));
    let resp = client.get("/admin");
    assert_eq!((resp.status, resp.header("allow")), (405, Some("PATCH, OPTIONS")), "{resp:?}");
    node.stop();
}

fn body_len(req: &Request) -> Response {
    Response::text(format!("{} bytes", req.body().len()))
}

/// A client waiting for `100 Continue` is answered at once when the head alone decides
/// (no route, wrong method, no credentials), and the body it has not sent is not asked
/// for: the connection closes after the answer (a user trial: 100, then the upload, then
/// 404). A routed request still gets its 100, then its answer.
#[test]
fn expect_continue_is_answered_before_the_body_when_the_head_decides() {
    let node = start_node("web-expect-check-head", 1);
    let cors = Cors { origins: vec!["http://app.example".into()], ..Cors::default() };
    let router = Router::new()
        .post("/up", body_len)
        .get("/read-only", hello)
        .layer(bearer("api", "tok"))
        .layer(cors)
        .layer(rate_limit(1000, 1000));
    let server = serve(&node, router);
    let addr = server.local_addr();
    let expect = |target: &str, token: Option<&str>| {
        let mut c = Client::connect(addr);
        let mut fields =
            vec![("expect", "100-continue"), ("content-length", "100000"), ("origin", "http://app.example")];
        let bearer = token.map(|t| format!("Bearer {t}"));
        if let Some(b) = &bearer {
            fields.push(("authorization", b));
        }
        c.send_request("POST", target, &fields);
        (c.read_response(false), c)
    };

    for (target, token, status) in
        [("/nowhere", Some("tok"), 404), ("/read-only", Some("tok"), 405), ("/up", None, 401)]
    {
        let (resp, mut c) = expect(target, token);
        assert_eq!(resp.status, status, "{target}: no 100 first: {resp:?}");
        assert_eq!(resp.header("connection"), Some("close"), "{target}: {resp:?}");
        // The layers' hooks ran on it: Cors outside the router and the auth layer.
        assert_eq!(resp.header("access-control-allow-origin"), Some("http://app.example"), "{target}: {resp:?}");
        c.assert_closed();
    }
    let (resp, _) = expect("/read-only", Some("tok"));
    assert_eq!(resp.header("allow"), Some("GET, HEAD, OPTIONS"));
    let (resp, _) = expect("/up", None);
    assert_eq!(resp.header("www-authenticate"), Some("Bearer realm=\"api\""));

    // Routed, with credentials: 100, then the body, then the answer; the connection stays.
    let (interim, mut c) = expect("/up", Some("tok"));
    assert_eq!(interim.status, 100, "{interim:?}");
    c.send(&vec![b'x'; 100_000]);
    let resp = c.read_response(false);
    assert_eq!((resp.status, resp.text()), (200, "100000 bytes"));
    assert_eq!(c.request("GET", "/read-only", &[("authorization", "Bearer tok")]).status, 200);
    node.stop();
}

/// Found by a trial behind nginx: a body whose last bytes came with the last read of a
/// connection's pass (8 reads per readiness event) was never parsed: nothing woke the
/// connection again, and the upload got 408 at the body timeout (nginx's 8 KiB writes of a
/// 70 000-byte body: 44 of 200). Every size from 40 000 to 80 000 bytes in one write, and in
/// 8 KiB writes, is answered.
#[test]
fn a_body_completed_by_the_last_read_of_a_pass_is_answered() {
    let node = start_node("web-body-last-read", 1);
    let limits = HttpLimits { body_read_timeout: Duration::from_secs(30), ..HttpLimits::default() };
    let server =
        WebServer::start(&node, WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, body_len) })
            .expect("start");
    let addr = server.local_addr();
    for piece in [usize::MAX, 8192] {
        for len in (40_000..=80_000).step_by(1000) {
            let mut c = Client::connect(addr);
            let mut bytes = raw_request("POST", "/", &[("content-length", &len.to_string())]);
            bytes.resize(bytes.len() + len, b'x');
            for chunk in bytes.chunks(piece) {
                c.send(chunk);
            }
            // (The client's read times out after 10 s: the bug answered 408 after 30.)
            let resp = c.read_response(false);
            assert_eq!(
                (resp.status, resp.text()),
                (200, format!("{len} bytes").as_str()),
                "{len} in {piece}-byte writes"
            );
        }
    }
    node.stop();
}

/// Found by a trial behind nginx: a body over the bound, sent whole before the answer is read
/// (as nginx and Python's `http.client` do), met a reset after 256 KiB of lingering instead of
/// the 413 (nginx answered 502). The connection now reads off the declared body before it
/// closes (up to 64 MiB, within the linger time).
#[test]
fn a_client_that_sends_a_refused_body_whole_reads_the_413() {
    let node = start_node("web-413-whole-body", 1);
    let server = serve(&node, body_len);
    let addr = server.local_addr();
    for len in [2_000_000usize, 5_000_000] {
        let mut c = Client::connect(addr);
        let mut bytes = raw_request("POST", "/", &[("content-length", &len.to_string())]);
        bytes.resize(bytes.len() + len, b'x');
        c.stream.write_all(&bytes).unwrap_or_else(|e| panic!("{len}: the body could not be sent: {e}"));
        let resp = c.read_response(false);
        assert_eq!((resp.status, resp.header("connection")), (413, Some("close")), "{len}: {resp:?}");
    }
    // Chunked, 8 MiB: how much more comes after the bound is unknown (a review: a reset).
    let mut c = Client::connect(addr);
    let mut bytes = raw_request("POST", "/", &[("transfer-encoding", "chunked")]);
    for _ in 0..1024 {
        bytes.extend_from_slice(b"2000\r\n");
        bytes.resize(bytes.len() + 0x2000, b'x');
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"0\r\n\r\n");
    c.stream.write_all(&bytes).unwrap_or_else(|e| panic!("chunked: the body could not be sent: {e}"));
    assert_eq!(c.read_response(false).status, 413);
    node.stop();
}

/// Found by a trial behind nginx: `body_read_timeout` bounded a whole body, so an upload on a
/// slow link was cut for its size (a 1 MiB body needed 17 KiB/s). A body arriving at least at
/// `min_body_rate` is not cut; a trickle still is.
#[test]
fn a_body_arriving_at_the_minimum_rate_outlasts_the_body_timeout_and_a_trickle_does_not() {
    let node = start_node("web-body-rate", 1);
    let start = |min_body_rate: u32| {
        let limits =
            HttpLimits { body_read_timeout: Duration::from_millis(500), min_body_rate, ..HttpLimits::default() };
        WebServer::start(&node, WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, body_len) })
            .expect("start")
    };
    // 12 KiB in 1 KiB pieces every 100 ms: 1.2 s, more than twice the timeout, at 10 KiB/s.
    let upload = |server: &WebServer| {
        let mut c = Client::connect(server.local_addr());
        c.send_request("POST", "/", &[("content-length", "12288")]);
        for _ in 0..12 {
            std::thread::sleep(Duration::from_millis(100));
            if c.stream.write_all(&[b'u'; 1024]).is_err() {
                break; // refused, and closed
            }
        }
        c.read_response(false)
    };
    let with_rate = start(8 * 1024);
    assert_eq!(upload(&with_rate).text(), "12288 bytes");
    let without = start(0);
    assert_eq!(upload(&without).status, 408, "the whole body is bounded without a rate");
    // A trickle (a byte every 100 ms) is cut though it keeps arriving.
    let mut c = Client::connect(with_rate.local_addr());
    c.send_request("POST", "/", &[("content-length", "100")]);
    let began = Instant::now();
    let mut refused = false;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(100));
        if c.stream.write_all(b"t").is_err() {
            refused = true;
            break;
        }
        if began.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    let resp = c.read_response(false);
    assert_eq!(resp.status, 408, "refused early: {refused}");
    node.stop();
}

/// Handlers tested without a socket (an Ergo-porting trial found only a plain function could
/// be: `WebRequest` cannot be built outside the crate): the router, its layers and their
/// hooks answer through `answer_at_once` as through a connection.
#[test]
fn answer_at_once_runs_a_router_with_its_layers_without_a_server() {
    let cors = Cors { origins: vec!["http://app.example".into()], ..Cors::default() };
    let router = Router::new()
        .get("/users/{id}", |r: &Request| Response::text(format!("user {}", r.param("id").unwrap_or("?"))))
        .route("/actor", WebHandler::to("nobody"))
        .route("/boom", |_: &Request| -> Response { panic!("a handler bug") })
        .layer(bearer("api", "tok"))
        .layer(cors);
    let request = |method: Method, target: &str, fields: &[(&str, &str)]| {
        let mut r = Request::new(method, target);
        for (n, v) in fields {
            r = r.with_header(n, v);
        }
        r
    };
    let authed = [("authorization", "Bearer tok"), ("origin", "http://app.example")];
    let resp = answer_at_once(&router, request(Method::Get, "/users/7", &authed)).expect("answered at once");
    assert_eq!((resp.status.0, resp.body_bytes()), (200, &b"user 7"[..]));
    // The Cors hook ran on it, as the connection runs it.
    assert!(
        resp.headers
            .iter()
            .any(|(n, v)| n.as_ref() == "access-control-allow-origin" && v.as_ref() == b"http://app.example"),
        "{resp:?}"
    );
    let status = |method, target, fields: &[(&str, &str)]| {
        answer_at_once(&router, request(method, target, fields)).map(|r| r.status.0)
    };
    assert_eq!(status(Method::Get, "/users/7", &[]), Some(401));
    assert_eq!(status(Method::Post, "/users/7", &authed), Some(405));
    assert_eq!(status(Method::Get, "/nowhere", &authed), Some(404));
    // A WebHandler outside a node's shard: 503.
    assert_eq!(status(Method::Get, "/actor", &authed), Some(503));
    // A panic is the test's, and leaves nothing behind for the next call.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| status(Method::Get, "/boom", &authed)));
    assert!(panicked.is_err());
    assert_eq!(status(Method::Get, "/users/8", &authed), Some(200));
}

/// Found by a trial behind proxies: a handler could not tell who sent a request (the accepted
/// peer was dropped), so the access log had no client and nothing could be keyed by it. Every
/// request carries its connection's peer, to a worker on another shard too.
#[test]
fn every_request_carries_its_clients_address() {
    let node = start_node("web-peer-addr", 2);
    let peer = |r: &Request| Response::text(r.peer_addr().map_or_else(|| "none".to_owned(), |a| a.to_string()));
    struct PeerWorker;
    impl WebWorker for PeerWorker {
        async fn handle_get(&mut self, ctx: &mut Context, req: &Request) -> Response {
            Response::text(format!(
                "{} on {}",
                req.peer_addr().map_or_else(|| "none".to_owned(), |a| a.to_string()),
                ctx.shard()
            ))
        }
    }
    let worker = spawn_on(&node, 1, || PeerWorker, 16);
    let router = Router::new().get("/peer", peer).route("/worker", WebHandler::to(worker));
    let server = serve(&node, router);
    for _ in 0..4 {
        let mut c = Client::connect(server.local_addr());
        let me = c.stream.local_addr().expect("the client's address").to_string();
        assert_eq!(c.get("/peer").text(), me);
        assert_eq!(c.get("/worker").text(), format!("{me} on {}", ShardId(1)));
    }
    assert_eq!(peer(&Request::new(Method::Get, "/")).body_bytes(), b"none");
    let addr: SocketAddr = "10.1.2.3:4567".parse().expect("an address");
    assert_eq!(peer(&Request::new(Method::Get, "/").with_peer_addr(addr)).body_bytes(), b"10.1.2.3:4567");
    node.stop();
}

/// A route's body bound, higher or lower than the server's (`body_limit`, `Handler::body_limit`):
/// a declared length over it is answered 413 at once (before `100 Continue`), a chunked body as
/// its chunks pass it; the innermost bound wins; every layer passes the question through.
#[test]
fn body_limits_per_route_raise_and_lower_the_servers() {
    let node = start_node("web-body-limit", 1);
    struct PanicsOnLimit;
    impl Handler for PanicsOnLimit {
        fn handle(&self, req: WebRequest) {
            req.respond(Response::text("unreached"));
        }
        fn body_limit(&self, _: &Request) -> Option<usize> {
            panic!("a bug in a handler's body_limit");
        }
    }
    let params = |r: &Request| Response::text(format!("{} {}", r.param("id").unwrap_or("-"), r.body().len()));
    let router = Router::new()
        .post("/small", body_len)
        .post("/big/{id}", body_limit(5000).wrap(Arc::new(params)))
        .post("/none", body_limit(0).wrap(Arc::new(body_len)))
        .post("/bug", PanicsOnLimit)
        .fallback(body_len)
        .layer(body_limit(100))
        .layer(bearer("api", "tok"))
        .layer(Cors::default())
        .layer(request_log())
        .layer(rate_limit(1000, 1000));
    let limits = HttpLimits { max_body_bytes: 1000, ..HttpLimits::default() };
    let server = WebServer::start(&node, WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, router) })
        .expect("start");
    let addr = server.local_addr();
    let auth = ("authorization", "Bearer tok");
    let post = |c: &mut Client, target: &str, len: usize| {
        let length = len.to_string();
        c.send_request("POST", target, &[auth, ("content-length", &length)]);
        c.send(&vec![b'x'; len]);
        c.read_response(false)
    };
    let refused = |target: &str, len: usize| {
        let mut c = Client::connect(addr);
        let resp = post(&mut c, target, len);
        assert_eq!((resp.status, resp.header("connection")), (413, Some("close")), "{target} {len}: {resp:?}");
        c.assert_closed();
    };

    // The router's layer lowers the server's 1000 to 100 (the fallback too); a route raises it
    // to 5000, over the server's, or to nothing.
    let mut c = Client::connect(addr);
    assert_eq!(post(&mut c, "/small", 100).text(), "100 bytes");
    assert_eq!(post(&mut c, "/big/7", 5000).text(), "7 5000");
    assert_eq!(post(&mut c, "/elsewhere", 100).text(), "100 bytes");
    assert_eq!(post(&mut c, "/none", 0).text(), "0 bytes");
    refused("/small", 101);
    refused("/elsewhere", 101);
    refused("/big/7", 5001);
    refused("/none", 1);

    // Chunked: counted as the chunks come.
    let chunked = |total: usize| {
        let mut c = Client::connect(addr);
        c.send_request("POST", "/big/8", &[auth, ("transfer-encoding", "chunked")]);
        let (mut body, mut left) = (Vec::new(), total);
        while left > 0 {
            let n = left.min(1000);
            body.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            body.extend(std::iter::repeat_n(b'y', n));
            body.extend_from_slice(b"\r\n");
            left -= n;
        }
        body.extend_from_slice(b"0\r\n\r\n");
        c.send(&body);
        (c.read_response(false), c)
    };
    assert_eq!(chunked(5000).0.text(), "8 5000");
    let (resp, mut c) = chunked(5001);
    assert_eq!((resp.status, resp.header("connection")), (413, Some("close")), "{resp:?}");
    c.assert_closed();

    // A client that waits for 100 is refused before it uploads, by the route's bound.
    let mut c = Client::connect(addr);
    c.send_request("POST", "/small", &[auth, ("content-length", "4000"), ("expect", "100-continue")]);
    assert_eq!(c.read_response(false).status, 413);
    c.assert_closed();
    let mut c = Client::connect(addr);
    c.send_request("POST", "/big/9", &[auth, ("content-length", "4000"), ("expect", "100-continue")]);
    assert_eq!(c.read_response(false).status, 100);
    c.send(&[b'z'; 4000]);
    assert_eq!(c.read_response(false).text(), "9 4000");

    // A panic in a handler's bound: 500 for that request, the server serves on.
    let mut c = Client::connect(addr);
    let resp = post(&mut c, "/bug", 10);
    assert_eq!((resp.status, resp.header("connection")), (500, Some("close")), "{resp:?}");
    assert_eq!(post(&mut Client::connect(addr), "/small", 10).text(), "10 bytes");
    // A request without a body never asks.
    assert_eq!(Client::connect(addr).request("POST", "/bug", &[auth]).text(), "unreached");
    assert_eq!(server.stats().refused_with(StatusCode::CONTENT_TOO_LARGE), 6);
    node.stop();
}

/// Found by a trial behind proxies: the rate limit was one bucket for the whole server, so
/// one client over its rate starved every other. `per_client` keeps a bucket per client IP
/// (an IPv6 client per /64); `keyed_by` per key of the caller's (a proxy's field).
#[test]
fn rate_limit_per_client_and_keyed_by_give_each_client_its_own_burst() {
    let router = Router::new().get("/", hello).layer(rate_limit(1, 2).per_client());
    let from = |ip: &str| {
        let addr = SocketAddr::new(ip.parse().expect("an address"), 40000);
        answer_at_once(&router, Request::new(Method::Get, "/").with_peer_addr(addr)).map(|r| r.status.0)
    };
    let burst = |ip: &str| (0..3).map(|_| from(ip).expect("answered at once")).collect::<Vec<_>>();
    assert_eq!(burst("10.0.0.1"), [200, 200, 429]);
    assert_eq!(burst("10.0.0.2"), [200, 200, 429], "another client has its own burst");
    assert_eq!(burst("2001:db8::1"), [200, 200, 429]);
    // The same /64: the same client.
    assert_eq!(from("2001:db8::2:3"), Some(429));
    assert_eq!(burst("2001:db8:0:1::1"), [200, 200, 429]);

    // Keyed by a field, through a real server (every peer is 127.0.0.1 here).
    let node = start_node("web-rate-keyed", 1);
    let keyed = rate_limit(1, 2).keyed_by(|r: &Request| r.header("x-client").map(std::borrow::Cow::Borrowed));
    let server = serve(&node, Router::new().get("/", hello).layer(keyed));
    let mut c = Client::connect(server.local_addr());
    let mut statuses =
        |client: &str| (0..3).map(|_| c.request("GET", "/", &[("x-client", client)]).status).collect::<Vec<_>>();
    assert_eq!(statuses("alice"), [200, 200, 429]);
    assert_eq!(statuses("bob"), [200, 200, 429]);
    // Requests without the field share one bucket.
    let shared: Vec<u16> = (0..3).map(|_| c.get("/").status).collect();
    assert_eq!(shared, [200, 200, 429]);
    node.stop();
}

/// Found by an API trial: a client over its rate that waited for `100 Continue` was let upload
/// its body (10 MiB) only to get 429. The head now answers 429, taking no token.
#[test]
fn rate_limit_refuses_before_the_upload_a_client_over_its_rate() {
    let node = start_node("web-rate-expect", 1);
    let keyed = rate_limit(1, 1).keyed_by(|r: &Request| r.header("x-client").map(std::borrow::Cow::Borrowed));
    let server = serve(&node, Router::new().post("/up", body_len).layer(keyed));
    let expect = |client: &str| {
        let mut c = Client::connect(server.local_addr());
        c.send_request("POST", "/up", &[("x-client", client), ("content-length", "5"), ("expect", "100-continue")]);
        (c.read_response(false), c)
    };
    // Asked about its head, a client within its rate keeps its token for the request itself.
    let (interim, mut c) = expect("alice");
    assert_eq!(interim.status, 100);
    c.send(b"12345");
    assert_eq!(c.read_response(false).text(), "5 bytes");
    // Over its rate: 429 before the body, the connection closed.
    let (resp, mut c) = expect("alice");
    assert_eq!((resp.status, resp.header("retry-after")), (429, Some("1")), "{resp:?}");
    c.assert_closed();
    assert_eq!(expect("bob").0.status, 100, "another client is within its rate");
    node.stop();
}

#[test]
fn rate_limit_burst_passes_then_429_with_retry_after() {
    let node = start_node("web-mw-rate", 2);
    let server = serve(&node, Router::new().get("/r", hello).layer(rate_limit(1, 2)));
    let addr = server.local_addr();
    // Separate connections (possibly on both shards): the limit is server-wide.
    let statuses: Vec<u16> = (0..2).map(|_| get(addr, "/r").status).collect();
    assert_eq!(statuses, [200, 200]);
    let resp = get(addr, "/r");
    assert_eq!(resp.status, 429, "{resp:?}");
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(resp.text(), "Too Many Requests");
    node.stop();
}

/// Records the lines logged under `pinion::web::access`, and the warnings under `pinion::web`.
struct AccessLog;

static ACCESS_LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The access lines logged so far, each without its first word (the client's address).
fn access_lines_without_client() -> Vec<String> {
    lock(&ACCESS_LINES).iter().map(|l| l.split_once(' ').map_or(l.as_str(), |(_, rest)| rest).to_owned()).collect()
}
static WEB_WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl log::Log for AccessLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == "pinion::web::access"
            || metadata.target() == "pinion::web" && metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.target() == "pinion::web::access" {
            lock(&ACCESS_LINES).push(record.args().to_string());
        } else if self.enabled(record.metadata()) {
            lock(&WEB_WARNINGS).push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

/// The warnings logged under `pinion::web` that contain `part`.
fn web_warnings(part: &str) -> Vec<String> {
    lock(&WEB_WARNINGS).iter().filter(|l| l.contains(part)).cloned().collect()
}

fn capture_access_log() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&AccessLog).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Info);
    });
}

#[test]
fn request_log_does_not_change_responses() {
    capture_access_log();
    let node = start_node("web-mw-log", 1);
    let worker = spawn_on(&node, 0, GetOnly::new, 16);
    let routes = || Router::new().get("/logme/{id}", user).route("/logme-worker", WebHandler::to(worker));
    let plain = serve(&node, routes());
    let logged = serve(&node, routes().layer(request_log()));
    let mut a = Client::connect(plain.local_addr());
    let mut b = Client::connect(logged.local_addr());
    let requests: [(&str, &str, Fields<'_>); 5] = [
        ("GET", "/logme/1?q=2", &[]),
        ("HEAD", "/logme/1", &[]),
        ("DELETE", "/logme/1", &[]),
        ("GET", "/logme-missing", &[]),
        ("GET", "/logme-worker", &[]),
    ];
    for (method, target, fields) in requests {
        let want = a.request(method, target, fields);
        let got = b.request(method, target, fields);
        assert_eq!(got.comparable(), want.comparable(), "{method} {target}");
    }
    let lines = lock(&ACCESS_LINES).clone();
    // (The router's own 405 and 404 are not logged: see `router_layers_cover_405_and_404_answers`.)
    let client = b.stream.local_addr().expect("the client's address");
    for line in ["GET /logme/1?q=2 200 ", "HEAD /logme/1 200 ", "GET /logme-worker 200 "] {
        let prefix = format!("{client} {line}");
        assert!(lines.iter().any(|l| l.starts_with(&prefix)), "no access line {prefix:?} in {lines:?}");
    }
    node.stop();
}

/// Found by a user trial: a handler's `Connection: close` was dropped silently (the connection
/// stayed open) and its `Server` replaced by ours. Now `Connection: close` closes the connection
/// after that response, pipelined requests behind it unanswered (RFC 9112 §9.6), and a
/// `Server` of its own is sent.
#[test]
fn handler_connection_close_closes_and_its_server_field_is_sent() {
    let node = start_node("web-handler-close", 1);
    let worker = spawn_on(&node, 0, GetOnly::new, 16);
    let router = Router::new()
        .get("/close", |_: &Request| Response::text("bye").header("connection", "close"))
        .get("/server", |_: &Request| Response::text("mine").header("server", "my-service/1.0"))
        .route("/worker", WebHandler::to(worker));
    let server = serve(&node, router);
    let mut client = Client::connect(server.local_addr());
    let resp = client.get("/server");
    assert_eq!(resp.header("server"), Some("my-service/1.0"), "{resp:?}");
    assert_eq!(resp.headers.iter().filter(|(n, _)| n == "server").count(), 1, "{resp:?}");
    assert_eq!(client.get("/worker").header("server"), Some("pinion"));
    let burst =
        [raw_request("GET", "/worker", &[]), raw_request("GET", "/close", &[]), raw_request("GET", "/worker", &[])];
    client.send(&burst.concat());
    assert_eq!(client.read_response(false).status, 200);
    let bye = client.read_response(false);
    assert_eq!((bye.status, bye.text(), bye.header("connection")), (200, "bye", Some("close")), "{bye:?}");
    client.assert_closed();
    node.stop();
}

/// Streams `/feed` from `take_request`; hands everything else to `handle_get`.
struct Feed;

impl WebWorker for Feed {
    const METHODS: Option<&'static [Method]> = Some(&[Method::Get]);
    const TAKES_REQUESTS: bool = true;

    async fn take_request(&mut self, _: &mut Context, req: WebRequest) -> Option<WebRequest> {
        if req.request().path() != "/feed" {
            return Some(req);
        }
        let mut stream = req.respond_stream(Response::new(StatusCode::OK).header("x-kind", "feed"));
        for chunk in ["one ", "two ", "three"] {
            stream.send(chunk);
        }
        stream.finish();
        None
    }

    async fn handle_get(&mut self, _: &mut Context, req: &Request) -> Response {
        Response::text(format!("got {}", req.path()))
    }
}

/// Found by a user trial: a `WebWorker` could not stream (its methods get `&Request` and return
/// a `Response`), and a raw `Actor` that can loses `METHODS`, 405 and HEAD. `take_request`
/// hands a worker the `WebRequest` itself, the rest of the machinery kept.
#[test]
fn web_worker_take_request_streams_and_passes_the_rest_on() {
    let node = start_node("web-worker-take", 1);
    let worker = spawn_on(&node, 0, || Feed, 16);
    let server = serve(&node, WebHandler::to(worker));
    let mut client = Client::connect(server.local_addr());
    let feed = client.get("/feed");
    assert_eq!((feed.status, feed.header("x-kind"), feed.text()), (200, Some("feed"), "one two three"), "{feed:?}");
    assert_eq!(feed.header("transfer-encoding"), Some("chunked"), "{feed:?}");
    assert_eq!(client.get("/other").text(), "got /other");
    let post = client.request("POST", "/feed", &[("content-length", "0")]);
    assert_eq!((post.status, post.header("allow")), (405, Some("GET, HEAD, OPTIONS")), "{post:?}");
    node.stop();
}

/// Panics on every GET.
struct PanicsOnGet;

impl WebWorker for PanicsOnGet {
    async fn handle_get(&mut self, _: &mut Context, _: &Request) -> Response {
        panic!("PanicsOnGet panics, as the test asked")
    }
}

/// Streams its answer while the connection hands it the request (no actor).
struct StreamsAtOnce;

impl Handler for StreamsAtOnce {
    fn handle(&self, req: WebRequest) {
        let mut stream = req.respond_stream(Response::new(StatusCode::OK));
        stream.send("streamed");
        stream.finish();
    }
}

/// Found by a user trial: the response hooks of middleware (`Cors`, `request_log`) ran only on
/// answers a handler gave: a 504 went out without CORS fields and unlogged (and the late
/// answer behind it was logged as a 200 the client never got); a 500 for a worker that
/// panicked, or a plain function that did, was neither logged nor given CORS fields. The
/// connection now runs them on whatever answers the request, once.
#[test]
fn middleware_hooks_run_on_the_runtimes_own_answers_504_and_500() {
    capture_access_log();
    let node = start_node("web-mw-hooks-runtime", 2);
    let (late_tx, late) = mpsc::channel();
    // The workers on the other shard: their answers travel back to the connection.
    let slow = spawn_on(&node, 1, move || Slow { held: Vec::new(), answered_late: late_tx }, 16);
    let dropper = spawn_on(&node, 1, || Dropper, 16);
    let panicker = spawn_on(&node, 0, || PanicsOnGet, 16);
    let timeout = WebHandlerOptions { request_timeout: Duration::from_millis(100), ..WebHandlerOptions::new(slow) };
    let router = Router::new()
        .route("/slow", WebHandler::new(timeout))
        .route("/hooked-drop", WebHandler::to(dropper))
        .route("/hooked-panic", WebHandler::to(panicker))
        .get("/hooked-fpanic", |_: &Request| -> Response { panic!("a plain function panics, as the test asked") })
        .get("/hooked-ok", hello)
        .route("/hooked-stream", StreamsAtOnce)
        .layer(Cors { origins: vec!["http://good.example".into()], ..Cors::default() })
        .layer(request_log());
    let server = serve(&node, router);
    let mut client = Client::connect(server.local_addr());
    let origin = [("origin", "http://good.example")];
    for (path, status) in [
        ("/slow", 504),
        ("/hooked-drop", 500),
        ("/hooked-panic", 500),
        ("/hooked-fpanic", 500),
        ("/hooked-ok", 200),
        // A stream begun while the connection hands the request over (found by the chaos
        // test's stamp: its head went out unhooked).
        ("/hooked-stream", 200),
    ] {
        let resp = client.request("GET", path, &origin);
        assert_eq!(resp.status, status, "{path}: {resp:?}");
        assert_eq!(resp.header("access-control-allow-origin"), Some("http://good.example"), "{path}: {resp:?}");
        assert_eq!(resp.header("vary"), Some("origin"), "{path}: {resp:?}");
    }
    late.recv_timeout(WAIT).expect("the worker answered the first slow request late");
    // Pipelined behind a 504: each answer hooked once, in order.
    client.send(&[raw_request("GET", "/slow", &origin), raw_request("GET", "/hooked-ok", &origin)].concat());
    for status in [504, 200] {
        let resp = client.read_response(false);
        assert_eq!(resp.status, status, "{resp:?}");
        assert_eq!(resp.header("access-control-allow-origin"), Some("http://good.example"), "{resp:?}");
    }
    late.recv_timeout(WAIT).expect("the worker answered the second slow request late");
    // Its late answers went nowhere, and were not logged.
    let resp = client.request("GET", "/hooked-ok", &origin);
    assert_eq!(resp.status, 200, "{resp:?}");
    let lines = access_lines_without_client();
    let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
    for (prefix, n) in [
        ("GET /slow 504 ", 2),
        ("GET /slow 200 ", 0),
        ("GET /hooked-drop 500 ", 1),
        ("GET /hooked-panic 500 ", 1),
        ("GET /hooked-fpanic 500 ", 1),
        ("GET /hooked-ok 200 ", 3),
        ("GET /hooked-stream 200 ", 1),
    ] {
        assert_eq!(count(prefix), n, "access lines {prefix:?} in {lines:?}");
    }
    node.stop();
}

#[test]
fn layers_compose_auth_outside_rate_limit() {
    let node = start_node("web-mw-compose", 1);
    let router = Router::new().get("/x", hello).layer(rate_limit(1, 1)).layer(bearer("api", "tok"));
    let server = serve(&node, router);
    let mut client = Client::connect(server.local_addr());
    // Refused by auth before the rate limit sees them: they use up no budget.
    for _ in 0..3 {
        assert_eq!(client.get("/x").status, 401);
    }
    let auth = [("authorization", "Bearer tok")];
    assert_eq!(client.request("GET", "/x", &auth).status, 200);
    let limited = client.request("GET", "/x", &auth);
    assert_eq!((limited.status, limited.header("retry-after")), (429, Some("1")));
    // Still 401 (not 429) without the token.
    assert_eq!(client.get("/x").status, 401);
    node.stop();
}

#[test]
fn cors_layer_preflight_on_method_specific_route_answers_204() {
    let node = start_node("web-mw-cors-method-route", 1);
    let server = serve(&node, Router::new().post("/api", hello).layer(Cors::default()));
    let mut client = Client::connect(server.local_addr());
    let resp = client.request(
        "OPTIONS",
        "/api",
        &[("origin", "http://app.example"), ("access-control-request-method", "POST")],
    );
    assert_eq!(resp.status, 204, "{resp:?}");
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    node.stop();
}

#[test]
fn router_layers_cover_405_and_404_answers() {
    capture_access_log();
    let node = start_node("web-mw-layers-405-404", 1);
    let authed = serve(&node, Router::new().get("/secret", hello).layer(bearer("api", "tok")));
    let mut client = Client::connect(authed.local_addr());
    // Without the token, nothing about the routes is revealed.
    let resp = client.request("DELETE", "/secret", &[]);
    assert_eq!((resp.status, resp.header("allow")), (401, None), "{resp:?}");
    let resp = client.get("/nowhere");
    assert_eq!(resp.status, 401, "{resp:?}");

    let cors = serve(&node, Router::new().get("/api", hello).layer(Cors::default()));
    let mut client = Client::connect(cors.local_addr());
    let resp = client.request("GET", "/missing", &[("origin", "http://app.example")]);
    assert_eq!((resp.status, resp.header("access-control-allow-origin")), (404, Some("*")), "{resp:?}");
    let resp = client.request("DELETE", "/api", &[("origin", "http://app.example")]);
    assert_eq!((resp.status, resp.header("access-control-allow-origin")), (405, Some("*")), "{resp:?}");

    let logged = serve(&node, Router::new().get("/layers-log", hello).layer(request_log()));
    let mut client = Client::connect(logged.local_addr());
    assert_eq!(client.request("DELETE", "/layers-log", &[]).status, 405);
    assert_eq!(client.get("/layers-log-missing").status, 404);
    let lines = access_lines_without_client();
    for prefix in ["DELETE /layers-log 405 ", "GET /layers-log-missing 404 "] {
        assert!(lines.iter().any(|l| l.starts_with(prefix)), "no access line {prefix:?} in {lines:?}");
    }
    node.stop();
}

// ---- 5. Streaming -----------------------------------------------------------------------------

fn last_chunk_expected() -> Vec<u8> {
    [CHUNKED, b"0\r\n\r\n"].concat()
}

fn assert_stream_head(client: &mut Client) {
    let (status, _, fields) = client.read_head();
    let resp = Resp { status, reason: String::new(), headers: fields, body: Vec::new() };
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(resp.header("content-length"), None);
    assert_eq!(resp.header("x-kind"), Some("stream"));
}

#[test]
fn stream_finished_sends_exactly_the_chunks_then_last_chunk() {
    let node = start_node("web-stream-finish", 1);
    let pid = spawn_on(&node, 0, Streamer::default, 16);
    let server = serve(&node, WebHandler::to(pid));
    let mut client = Client::connect(server.local_addr());
    for _ in 0..2 {
        client.send_request("GET", "/finish", &[]);
        assert_stream_head(&mut client);
        let expected = last_chunk_expected();
        let body = client.take(expected.len());
        assert_eq!(String::from_utf8_lossy(&body), String::from_utf8_lossy(&expected));
    }
    // The connection stays usable, with nothing stray on it.
    assert!(client.buf.is_empty());
    let resp = client.get("/finish");
    assert_eq!(resp.body, b"alphabetagamma");
    node.stop();
}

#[test]
fn stream_from_worker_on_other_shard_arrives_in_order() {
    let node = start_node("web-stream-cross", 2);
    let pid = spawn_on(&node, 1, Streamer::default, 16);
    let options = WebServerOptions {
        shards: Some(vec![ShardId(0)]),
        ..WebServerOptions::new("127.0.0.1", 0, WebHandler::to(pid))
    };
    let server = WebServer::start(&node, options).expect("start on shard 0");
    let mut client = Client::connect(server.local_addr());
    client.send_request("GET", "/finish", &[]);
    assert_stream_head(&mut client);
    let expected = last_chunk_expected();
    assert_eq!(client.take(expected.len()), expected);
    let resp = client.get("/finish");
    assert_eq!((resp.status, resp.header("x-kind")), (200, Some("stream")));
    assert_eq!(resp.body, b"alphabetagamma");
    node.stop();
}

#[test]
fn stream_dropped_without_finish_closes_after_sent_chunks() {
    let node = start_node("web-stream-abort", 1);
    let pid = spawn_on(&node, 0, Streamer::default, 16);
    let server = serve(&node, WebHandler::to(pid));
    let mut client = Client::connect(server.local_addr());
    client.send_request("GET", "/abort", &[]);
    assert_stream_head(&mut client);
    let rest = client.read_to_end();
    assert_eq!(String::from_utf8_lossy(&rest), String::from_utf8_lossy(CHUNKED), "no last chunk, then the close");
    node.stop();
}

#[test]
fn stream_to_http10_client_is_unchunked_then_closed() {
    let node = start_node("web-stream-http10", 1);
    let pid = spawn_on(&node, 0, Streamer::default, 16);
    let server = serve(&node, WebHandler::to(pid));
    let mut client = Client::connect(server.local_addr());
    client.send(b"GET /finish HTTP/1.0\r\nhost: test\r\nconnection: keep-alive\r\n\r\n");
    let (status, _, fields) = client.read_head();
    let resp = Resp { status, reason: String::new(), headers: fields, body: Vec::new() };
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("transfer-encoding"), None);
    assert_eq!(resp.header("content-length"), None);
    assert_eq!(resp.header("connection"), Some("close"));
    assert_eq!(client.read_to_end(), b"alphabetagamma");
    node.stop();
}

/// Keeps every stream it starts (`/events`); on `Push(n)` sends `n` bytes to each stream not
/// closed, then reports (open, held).
struct Pusher {
    streams: Vec<ResponseStream>,
    report: Sender<(usize, usize)>,
}

struct Push(usize);

/// One chunk for every open stream, shared (`ResponseStream::send_shared`).
struct PushShared(Arc<[u8]>);

impl Actor for Pusher {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<WebRequest>() {
            Ok(req) => self.streams.push(req.respond_stream(Response::new(StatusCode::OK))),
            Err(msg) => {
                let msg = match msg.downcast::<PushShared>() {
                    Ok(PushShared(chunk)) => {
                        self.streams.iter_mut().filter(|s| !s.is_closed()).for_each(|s| s.send_shared(&chunk));
                        let _ = self.report.send((Arc::strong_count(&chunk), self.streams.len()));
                        return Ok(());
                    }
                    Err(msg) => msg,
                };
                let Ok(Push(n)) = msg.downcast::<Push>() else { return Ok(()) };
                for s in self.streams.iter_mut().filter(|s| !s.is_closed()) {
                    s.send(vec![b'x'; n]);
                }
                let open = self.streams.iter().filter(|s| !s.is_closed()).count();
                let _ = self.report.send((open, self.streams.len()));
            }
        }
        Ok(())
    }
}

/// A node with a `Pusher` behind `/events`, its server, and the pusher's reports.
fn pusher_service(name: &str) -> (Node, WebServer, Pid, mpsc::Receiver<(usize, usize)>) {
    let node = start_node(name, 1);
    let (report, reports) = mpsc::channel();
    let pusher = spawn_on(&node, 0, move || Pusher { streams: Vec::new(), report }, 64);
    let server = serve(&node, Router::new().route("/events", WebHandler::to(pusher)));
    (node, server, pusher, reports)
}

/// Pushes `n` bytes to every stream, then waits for the pusher's report.
fn push(node: &Node, pusher: Pid, reports: &mpsc::Receiver<(usize, usize)>, n: usize) -> (usize, usize) {
    node.send(pusher, Push(n)).expect("push");
    reports.recv_timeout(WAIT).expect("the pusher reports")
}

/// A sender holding many streams learns which are closed (a trial: `send` returned nothing,
/// and streams of clients long gone were fed forever): the client went away, or the request
/// was a HEAD (no body is ever sent).
#[test]
fn response_stream_is_closed_once_its_client_is_gone_or_it_answered_a_head() {
    let (node, _server, pusher, reports) = pusher_service("web-stream-closed");
    let addr = _server.local_addr();
    let mut gone = Client::connect(addr);
    gone.send_request("GET", "/events", &[]);
    assert_eq!(gone.read_head().0, 200);
    let mut head = Client::connect(addr);
    assert_eq!(head.request("HEAD", "/events", &[]).status, 200);
    let mut stays = Client::connect(addr);
    stays.send_request("GET", "/events", &[]);
    assert_eq!(stays.read_head().0, 200);
    assert_eq!(push(&node, pusher, &reports, 10), (2, 3), "the HEAD's stream is closed at once");

    drop(gone);
    // A client's close is seen at the write that fails (the first may still succeed).
    let deadline = Instant::now() + WAIT;
    while push(&node, pusher, &reports, 10) != (1, 3) {
        assert!(Instant::now() < deadline, "the stream of a client gone is still open");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The other one still streams.
    assert_eq!(stays.take_line(), "a");
    node.stop();
}

/// A chunk broadcast with `send_shared` reaches every stream, and each connection lets go of
/// it once it is encoded.
#[test]
fn a_shared_chunk_reaches_every_stream() {
    let (node, server, pusher, reports) = pusher_service("web-stream-shared");
    let mut clients: Vec<Client> = (0..3)
        .map(|_| {
            let mut c = Client::connect(server.local_addr());
            c.send_request("GET", "/events", &[]);
            assert_eq!(c.read_head().0, 200);
            c
        })
        .collect();
    let chunk: Arc<[u8]> = Arc::from(&b"data: tick\n\n"[..]);
    node.send(pusher, PushShared(chunk.clone())).expect("push");
    let (refs, held) = reports.recv_timeout(WAIT).expect("the pusher reports");
    assert_eq!(held, 3);
    // Delivered on the pusher's own shard: encoded at once, no reference kept.
    assert_eq!(refs, 2, "the test's and the message's");
    for c in &mut clients {
        assert_eq!(c.take_line(), "c");
        assert_eq!(c.take(14), b"data: tick\n\n\r\n");
    }
    drop(clients);
    node.stop();
}

/// What one shard holds for a server's streams, all connections together, is bounded (a soak
/// trial: 100 clients that stopped reading an unpaced sender held 387 MB, each under the
/// per-connection 4 MiB): past `max_stream_bytes_per_shard`, what the clients take is written
/// first, then the connections holding the most are cut as slow clients. Ten clients that read
/// nothing (a 4 KiB receive buffer each), 7 MiB pushed to each in one turn, a bound of 8 MiB:
/// the kernel takes up to 4 MiB of each (`tcp_wmem`), so each holds 3 to 7 MiB, and one or two
/// keep their streams, the rest are cut; what is held stays within the bound; once the clients
/// left read, nothing is counted and they take as much again.
#[test]
fn streams_are_bounded_per_shard_all_connections_together() {
    let node = start_node("web-stream-shard-bound", 1);
    let (report, reports) = mpsc::channel();
    let pusher = spawn_on(&node, 0, move || Pusher { streams: Vec::new(), report }, 64);
    // (8 MiB and room for the chunks' framing.)
    let bound = (8 << 20) + 1024;
    let limits = HttpLimits { max_stream_bytes_per_shard: bound, ..HttpLimits::default() };
    let router = Router::new().route("/events", WebHandler::to(pusher));
    let server = WebServer::start(&node, WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, router) })
        .expect("start");
    let mut clients: Vec<Client> = (0..10)
        .map(|_| {
            let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
            socket.set_recv_buffer_size(4096).expect("a small receive buffer");
            socket.connect(&server.local_addr().into()).expect("connect");
            let mut c = Client::from_stream(socket.into());
            c.send_request("GET", "/events", &[]);
            assert_eq!(c.read_head().0, 200);
            c
        })
        .collect();
    let size = 7 << 20;
    let (open, all) = push(&node, pusher, &reports, size);
    assert_eq!(all, 10);
    assert!((1..=2).contains(&open), "{open} streams still open after the push");
    assert_eq!(server.stats().slow_clients, 10 - open as u64, "{:?}", server.stats());
    let held = server.stats().stream_bytes;
    assert!(held <= bound as u64, "{held} bytes held");
    // The ones left get their 7 MiB.
    let mut whole = 0;
    for c in &mut clients {
        c.stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut got = 0;
        let mut buf = vec![0u8; 1 << 16];
        while let Ok(n @ 1..) = c.stream.read(&mut buf) {
            got += n;
            if got >= size {
                whole += 1;
                break;
            }
        }
    }
    assert_eq!(whole, open);
    // Written, it is counted no more: they take another 7 MiB each.
    wait_until("what was written is counted no more", || server.stats().stream_bytes == 0);
    assert_eq!(push(&node, pusher, &reports, size), (open, 10));
    assert_eq!(server.stats().slow_clients, 10 - open as u64);
    node.stop();
}

/// A quiet stream learns its client is gone without waiting for a second chunk: the first
/// chunk after the client closed brings back a reset, and the connection closes on it (an
/// SSE trial: with a heartbeat every 15–30 s, a dead subscriber was held for two, the first
/// write after the close succeeding).
#[test]
fn a_quiet_stream_is_closed_on_the_reset_its_first_chunk_after_the_close_brings() {
    let (node, server, pusher, reports) = pusher_service("web-stream-reset");
    let mut c = Client::connect(server.local_addr());
    c.send_request("GET", "/events", &[]);
    assert_eq!(c.read_head().0, 200);
    assert_eq!(push(&node, pusher, &reports, 10), (1, 1));
    assert_eq!((c.take_line(), c.take(12)), ("a".to_owned(), b"xxxxxxxxxx\r\n".to_vec()));
    // Everything read: the close sends a FIN, and the next chunk a reset back.
    drop(c);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(push(&node, pusher, &reports, 10), (1, 1), "written at the end of the turn");
    // No chunk more (an empty one is skipped): only the reset can close it.
    wait_until("the stream closed on the reset", || push(&node, pusher, &reports, 0).0 == 0);
    node.stop();
}

/// Keeps every stream it starts; ends each with `finish` in `terminate`.
struct Finisher(Vec<ResponseStream>);

impl Actor for Finisher {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(req) = msg.downcast::<WebRequest>() {
            let mut stream = req.respond_stream(Response::new(StatusCode::OK));
            stream.send(&b"data: hello\n\n"[..]);
            self.0.push(stream);
        }
        Ok(())
    }
    async fn terminate(&mut self, _: &mut Context, _: &ExitReason) {
        for stream in self.0.drain(..) {
            stream.finish();
        }
    }
}

/// Streams ended by `finish` in `terminate` while the node stops reach every client, on
/// every shard (an SSE trial: with two shards, 15 to 24 of 40 got the end; a shard with no
/// process of its own closed its connections before the other shard's `finish` came).
#[test]
fn streams_finished_in_terminate_reach_the_clients_of_every_shard() {
    let node = start_node("web-stream-finish-on-stop", 2);
    let finisher = spawn_on(&node, 0, || Finisher(Vec::new()), 64);
    let server = serve(&node, WebHandler::to(finisher));
    let mut clients: Vec<Client> = (0..20)
        .map(|_| {
            let mut c = Client::connect(server.local_addr());
            c.send_request("GET", "/", &[]);
            assert_eq!(c.read_head().0, 200);
            assert_eq!(c.take_line(), "d");
            c
        })
        .collect();
    let (done, stopped) = mpsc::channel();
    std::thread::spawn(move || {
        node.stop();
        done.send(())
    });
    let ends: Vec<Vec<u8>> = clients.iter_mut().map(Client::read_to_end).collect();
    assert_eq!(stopped.recv_timeout(WAIT), Ok(()));
    let whole = ends.iter().filter(|e| e.ends_with(b"\r\n0\r\n\r\n")).count();
    assert_eq!(whole, 20, "{:?}", ends.iter().map(|e| String::from_utf8_lossy(e).into_owned()).collect::<Vec<_>>());
}

/// Requests pipelined behind a stream that never ends stream too, each waiting its turn:
/// the 4 MiB bound is the connection's, all its streams together (a trial: 64 such requests
/// made one connection hold 222 MB while its client read on).
#[test]
fn streams_waiting_behind_a_stream_are_bounded_per_connection() {
    let (node, server, pusher, reports) = pusher_service("web-stream-pipelined");
    let mut client = Client::connect(server.local_addr());
    let burst: Vec<u8> = (0..16).flat_map(|_| raw_request("GET", "/events", &[])).collect();
    client.send(&burst);
    // The client reads everything it is sent, as it comes.
    let mut reader = client.stream.try_clone().expect("clone");
    let read = std::thread::spawn(move || {
        let mut sink = [0u8; 65536];
        let mut total = 0usize;
        while let Ok(n @ 1..) = reader.read(&mut sink) {
            total += n;
        }
        total
    });
    let deadline = Instant::now() + WAIT;
    while push(&node, pusher, &reports, 0).1 < 16 {
        assert!(Instant::now() < deadline, "the 16 requests did not all reach the worker");
        std::thread::sleep(Duration::from_millis(1));
    }
    // 64 KiB to each of 16 streams a push: 15 wait behind the first, ~1 MB a push. Before,
    // each waiting stream was bounded alone (4 MiB each: 60 MiB on this connection).
    let mut pushes = 0;
    while push(&node, pusher, &reports, 64 * 1024).0 > 0 {
        pushes += 1;
        assert!(pushes < 20, "20 pushes (19 MiB queued) and the connection still streams");
    }
    assert!(pushes >= 4, "cut after {pushes} pushes, before 4 MiB waited");
    let received = read.join().expect("reader");
    assert!(received < 8 << 20, "{received} bytes reached the client");
    assert_eq!(server.stats().slow_clients, 1, "{:?}", server.stats());
    node.stop();
}

/// Streams a body of `size` bytes in `chunk`-byte chunks (the query `size=N&chunk=M`): all in
/// one go, without yielding between them, or with `paced=1` keeping its backlog under 1 MiB.
struct Blaster;

impl WebWorker for Blaster {
    const TAKES_REQUESTS: bool = true;
    async fn take_request(&mut self, ctx: &mut Context, req: WebRequest) -> Option<WebRequest> {
        let number = |name: &str| req.request().query_param(name).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        let (size, chunk, paced) = (number("size"), number("chunk").max(1), number("paced") == 1);
        let mut stream = req.respond_stream(Response::new(StatusCode::OK));
        let mut sent = 0;
        while sent < size && !stream.is_closed() {
            while paced && stream.backlog() > 1 << 20 && !stream.is_closed() {
                ctx.sleep(Duration::from_millis(1)).await;
            }
            let n = chunk.min(size - sent);
            stream.send(vec![b'b'; n]);
            sent += n;
        }
        stream.finish();
        None
    }
}

/// Found by an API trial: a worker sending a stream of more than 4 MiB without yielding had it
/// judged against the bound before the turn's write, so a fast client was cut before a byte
/// went out (5 MB in one chunk), and a sender had nothing to pace itself by. Over the bound,
/// what the client takes is written first, one chunk may be larger than the bound, and a
/// sender keeping `ResponseStream::backlog` low gets any size through; a client that reads
/// nothing is still cut.
#[test]
fn a_big_stream_reaches_a_reader_when_paced_by_its_backlog_and_a_reader_that_takes_nothing_is_cut() {
    let node = start_node("web-stream-blast", 1);
    let worker = spawn_on(&node, 0, || Blaster, 16);
    let server = serve(&node, WebHandler::to(worker));
    for (size, chunk, paced) in [(5_000_000, 5_000_000, 0), (64 << 20, 256 << 10, 1)] {
        let mut c = Client::connect(server.local_addr());
        let resp = c.get(&format!("/?size={size}&chunk={chunk}&paced={paced}"));
        assert_eq!((resp.status, resp.body.len()), (200, size), "{size} in {chunk}-byte chunks, paced {paced}");
    }
    assert_eq!(server.stats().slow_clients, 0);
    // 64 MiB to a client that reads nothing: cut once the bound is passed.
    let mut idle = Client::connect(server.local_addr());
    idle.send_request("GET", "/?size=67108864&chunk=65536", &[]);
    wait_until("the client that reads nothing is cut", || server.stats().slow_clients == 1);
    node.stop();
}

/// The most bytes a [`Writer`] saw waiting for its client just after `writable` let it send
/// (a sender that sends only then keeps its backlog under its bound).
static WRITER_MAX_BACKLOG: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Streams `size` bytes (the query `size=N`) in 64 KiB chunks, waiting before each until at
/// most 1 MiB of the stream waits for the client (`ResponseStream::writable`); with
/// `thread=1` from a plain thread through a minimal executor of its own, not from the worker.
/// Reports whether the last wait found the stream open.
struct Writer(Sender<bool>);

const WRITER_BOUND: usize = 1 << 20;

impl Writer {
    async fn feed(mut stream: ResponseStream, size: usize) -> bool {
        let mut sent = 0;
        while sent < size {
            if !stream.writable(WRITER_BOUND).await {
                return false;
            }
            WRITER_MAX_BACKLOG.fetch_max(stream.backlog(), std::sync::atomic::Ordering::Relaxed);
            let n = (64 << 10).min(size - sent);
            stream.send(vec![b'w'; n]);
            sent += n;
        }
        stream.finish();
        true
    }
}

/// Runs `future` to its end on this thread, parking between polls.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

impl WebWorker for Writer {
    const TAKES_REQUESTS: bool = true;
    async fn take_request(&mut self, _: &mut Context, req: WebRequest) -> Option<WebRequest> {
        let number = |name: &str| req.request().query_param(name).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        let (size, thread) = (number("size"), number("thread") == 1);
        let stream = req.respond_stream(Response::new(StatusCode::OK));
        if thread {
            let report = self.0.clone();
            std::thread::spawn(move || report.send(block_on(Writer::feed(stream, size))));
        } else {
            let _ = self.0.send(Writer::feed(stream, size).await);
        }
        None
    }
}

/// `ResponseStream::writable` (an API trial: a sender had only `backlog` to poll, sleeping
/// between looks): a sender that waits with it gets 16 MiB — four times what the connection
/// holds for a slow client — to a client that takes nothing for a while and then reads, its
/// backlog never past its bound, woken by the connection's writes whether it runs as the worker
/// or on a plain thread; a client that goes away ends the wait with `false`.
#[test]
fn a_sender_waiting_until_its_stream_is_writable_gets_any_size_to_a_slow_reader() {
    let node = start_node("web-stream-writable", 2);
    let (reports, got) = mpsc::channel();
    let worker = spawn_on(&node, 1, move || Writer(reports.clone()), 16);
    let server = serve(&node, WebHandler::to(worker));
    let size = 16 << 20;
    for thread in [0, 1] {
        let mut c = Client::connect(server.local_addr());
        c.send_request("GET", &format!("/?size={size}&thread={thread}"), &[]);
        // Nothing taken for a while: the sender waits (unpaced, it would pass 4 MiB and be cut).
        std::thread::sleep(Duration::from_millis(300));
        let resp = c.read_response(false);
        assert_eq!((resp.status, resp.body.len()), (200, size), "from a thread: {thread}");
        assert!(resp.body.iter().all(|&b| b == b'w'));
        assert_eq!(got.recv_timeout(WAIT), Ok(true), "from a thread: {thread}");
    }
    assert_eq!(server.stats().slow_clients, 0, "{:?}", server.stats());
    let most = WRITER_MAX_BACKLOG.load(std::sync::atomic::Ordering::Relaxed);
    // (Plus the chunks' framing: a chunk that reaches the connection after the wait counts its
    // size line and CRLF there, not on its way; a full-suite run read 99 bytes over. And one
    // chunk, for a moment: `backlog` is never less than the truth, so a chunk reaching the
    // connection as the sender reads it is counted on its way and at the connection at once
    // (`StreamWatch::took_in` stores the connection's count before it lowers the one on the
    // way); a fresh-clone CI run read 33 265 bytes over.)
    assert!(most > 0 && most <= WRITER_BOUND + (64 << 10) + 1024, "a sender saw {most} bytes waiting after its wait");

    // A client that reads a little and goes away: the waiting sender hears `false`.
    for thread in [0, 1] {
        let mut c = Client::connect(server.local_addr());
        c.send_request("GET", &format!("/?size={size}&thread={thread}"), &[]);
        let (status, _, _) = c.read_head();
        assert_eq!(status, 200);
        drop(c);
        assert_eq!(got.recv_timeout(WAIT), Ok(false), "from a thread: {thread}");
    }
    node.stop();
}

/// `Node::stop` closes the streams for their senders at once: a worker waiting for room on
/// its own shard's connection hears `false` and ends its handler (a review: it was killed after
/// the whole `shutdown_timeout`, as the stream closed only when its shard ended, after the
/// worker). Measured against a `shutdown_timeout` of a minute, so only that failure fails it.
#[test]
fn node_stop_ends_a_wait_for_room_at_once_and_the_worker_hears_false() {
    let options = NodeOptions {
        cores: Cores::Count(1),
        pin: false,
        shutdown_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let node = Node::start("web-stream-stop-waiting", options).expect("node");
    let (reports, got) = mpsc::channel();
    let worker = spawn_on(&node, 0, move || Writer(reports.clone()), 16);
    let server = serve(&node, WebHandler::to(worker));
    let mut c = Client::connect(server.local_addr());
    // 1 GiB to a client that reads the head and stops: the worker waits for room.
    c.send_request("GET", "/?size=1073741824", &[]);
    assert_eq!(c.read_head().0, 200);
    // (The worker passes its bound within a few chunks: the socket takes a few MB at most.)
    std::thread::sleep(Duration::from_millis(300));
    let (done, stopped) = mpsc::channel();
    std::thread::spawn(move || {
        node.stop();
        done.send(())
    });
    assert_eq!(stopped.recv_timeout(Duration::from_secs(30)), Ok(()), "node.stop returned (not after a minute)");
    drop(c);
    assert_eq!(got.try_recv(), Ok(false), "the worker heard the stream close");
}

// ---- 6. WebServer start and stop --------------------------------------------------------------

#[test]
fn web_server_start_unknown_shard_is_no_such_shard() {
    let node = start_node("web-server-no-such-shard", 2);
    let options =
        WebServerOptions { shards: Some(vec![ShardId(0), ShardId(2)]), ..WebServerOptions::new("127.0.0.1", 0, hello) };
    let err = WebServer::start(&node, options).expect_err("shard 2 does not exist");
    assert!(matches!(err, WebServerError::NoSuchShard(ShardId(2))), "{err:?}");
    node.stop();
}

#[test]
fn web_server_start_empty_shard_list_is_no_shards() {
    let node = start_node("web-server-no-shards", 1);
    let options = WebServerOptions { shards: Some(Vec::new()), ..WebServerOptions::new("127.0.0.1", 0, hello) };
    let err = WebServer::start(&node, options).expect_err("no shard listed");
    assert!(matches!(err, WebServerError::NoShards), "{err:?}");
    node.stop();
}

#[test]
fn web_server_start_refuses_a_shard_listed_twice_and_limits_it_cannot_serve_with() {
    let node = start_node("web-server-bad-options", 2);
    let options = WebServerOptions {
        shards: Some(vec![ShardId(1), ShardId(0), ShardId(1)]),
        ..WebServerOptions::new("127.0.0.1", 0, hello)
    };
    let err = WebServer::start(&node, options).expect_err("a shard twice");
    assert!(matches!(err, WebServerError::DuplicateShard(ShardId(1))), "{err:?}");

    // Each of these made a server that answered nothing, or nothing useful (a user trial:
    // `max_in_flight: 0` left every request unanswered).
    let zero = Duration::ZERO;
    let bad: [(&str, HttpLimits); 10] = [
        ("max_in_flight", HttpLimits { max_in_flight: 0, ..HttpLimits::default() }),
        ("max_head_bytes", HttpLimits { max_head_bytes: 0, ..HttpLimits::default() }),
        ("max_headers is 0", HttpLimits { max_headers: 0, ..HttpLimits::default() }),
        ("max_headers is 257", HttpLimits { max_headers: 257, ..HttpLimits::default() }),
        ("max_uri_bytes", HttpLimits { max_uri_bytes: 0, ..HttpLimits::default() }),
        ("max_trailer_bytes", HttpLimits { max_trailer_bytes: 0, ..HttpLimits::default() }),
        ("max_connections_per_shard", HttpLimits { max_connections_per_shard: 0, ..HttpLimits::default() }),
        ("header_read_timeout", HttpLimits { header_read_timeout: zero, ..HttpLimits::default() }),
        ("body_read_timeout", HttpLimits { body_read_timeout: zero, ..HttpLimits::default() }),
        ("idle_timeout", HttpLimits { idle_timeout: zero, ..HttpLimits::default() }),
    ];
    for (what, limits) in bad {
        let options = WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, hello) };
        match WebServer::start(&node, options).expect_err(what) {
            WebServerError::InvalidLimits(why) => assert!(why.contains(what), "{what}: {why}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    // `Duration::MAX` means never (a review: every I/O event panicked adding it to an
    // instant), for the connection's timeouts and the handler's.
    static OVERFLOWS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.to_string().contains("overflow when adding duration to instant") {
            OVERFLOWS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        previous(info);
    }));
    let never = Duration::MAX;
    let limits = HttpLimits {
        header_read_timeout: never,
        body_read_timeout: never,
        idle_timeout: never,
        ..HttpLimits::default()
    };
    let forever = WebHandler::new(WebHandlerOptions {
        request_timeout: never,
        ..WebHandlerOptions::new(WebTarget::Name("nobody".into()))
    });
    let router = Router::new().get("/", hello).route("/actor", forever);
    let server = WebServer::start(&node, WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, router) })
        .expect("timeouts of Duration::MAX");
    let mut client = Client::connect(server.local_addr());
    client.send(b"GET / HTTP/1.1\r\nHo");
    std::thread::sleep(Duration::from_millis(20));
    client.send(b"st: a\r\n\r\n");
    assert_eq!(client.read_response(false).status, 200);
    assert_eq!(client.get("/actor").status, 503, "no such worker");
    assert_eq!(client.get("/").status, 200);
    server.stop();
    assert_eq!(OVERFLOWS.load(std::sync::atomic::Ordering::Relaxed), 0, "panics adding a timeout to an instant");

    // The bounds themselves are fine, and no body at all is a choice (413 for any).
    let limits = HttpLimits { max_headers: MAX_HEADERS_LIMIT, max_body_bytes: 0, ..HttpLimits::default() };
    let server = WebServer::start(&node, WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, hello) })
        .expect("limits at their bounds");
    assert_eq!(get(server.local_addr(), "/").status, 200);
    node.stop();
}

#[test]
fn web_server_start_port_in_use_is_bind_error() {
    let node = start_node("web-server-bind", 2);
    // A std listener does not set SO_REUSEPORT: nobody may share its port.
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a plain listener");
    let port = taken.local_addr().expect("its address").port();
    let err = WebServer::start(&node, WebServerOptions::new("127.0.0.1", port, hello)).expect_err("port in use");
    match err {
        WebServerError::Bind(e) => assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e}"),
        other => panic!("expected Bind, got {other:?}"),
    }
    drop(taken);
    node.stop();
}

/// Found by a user trial: every listener set `SO_REUSEPORT` before `bind`, so a second server
/// on a port in use (a stale instance, a wrong port) bound silently and took half the
/// connections. Now it is refused, and the first server's listeners still share the port.
#[test]
fn web_server_start_on_a_port_another_server_listens_on_is_bind_error() {
    let node = start_node("web-server-bind-twice", 2);
    let first = serve(&node, hello);
    let port = first.local_addr().port();
    let err = WebServer::start(&node, WebServerOptions::new("127.0.0.1", port, hello)).expect_err("port in use");
    match err {
        WebServerError::Bind(e) => assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e}"),
        other => panic!("expected Bind, got {other:?}"),
    }
    // The first server's two listeners are one group: connections land on both shards
    // (16 connections on one of two: odds 2^-15).
    let clients: Vec<Client> = (0..16)
        .map(|_| {
            let mut c = Client::connect(first.local_addr());
            assert_eq!(c.get("/").status, 200);
            c
        })
        .collect();
    let shards = node.handle().inspect().expect("inspect");
    for info in &shards {
        assert!(info.io_sources >= 2, "a listener and a connection on every shard: {shards:?}");
    }
    drop(clients);
    node.stop();
}

#[test]
fn web_server_start_on_stopping_node_is_stopped() {
    let node = start_node("web-server-stopped", 1);
    let handle = node.handle();
    node.stop();
    let err = WebServer::start(&handle, WebServerOptions::new("127.0.0.1", 0, hello)).expect_err("node stopped");
    assert!(matches!(err, WebServerError::Stopped), "{err:?}");
}

/// Starts a web server (answering `hello`) from its `init`, on a shard of the node, and
/// reports the address or the error.
struct Starter {
    report: Sender<Result<SocketAddr, String>>,
    server: Option<WebServer>,
}

impl Actor for Starter {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        let started = WebServer::start(&ctx.handle(), WebServerOptions::new("127.0.0.1", 0, hello));
        let _ = self.report.send(started.as_ref().map(WebServer::local_addr).map_err(|e| e.to_string()));
        self.server = started.ok();
        Ok(())
    }
}

#[test]
fn web_server_start_from_process_on_a_shard_serves() {
    let node = start_node("web-server-from-process", 2);
    let (report, reported) = mpsc::channel();
    spawn_on(&node, 0, move || Starter { report, server: None }, 16);
    let addr = reported.recv_timeout(WAIT).expect("the starter reports").expect("the server starts");
    for _ in 0..4 {
        let resp = get(addr, "/");
        assert_eq!((resp.status, resp.text()), (200, "hello"));
    }
    node.stop();
}

/// Stops a server when told, once the other stopper is there too; reports how long `stop`
/// took.
struct Stopper {
    server: Arc<WebServer>,
    both: Arc<std::sync::Barrier>,
    report: Sender<Duration>,
}

impl Actor for Stopper {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> {
        self.both.wait();
        let started = Instant::now();
        self.server.stop();
        let _ = self.report.send(started.elapsed());
        Ok(())
    }
}

/// Two processes on two shards stopping one server at once do not wait on each other (a
/// review: each waited 10 s for a task queued on the other's blocked shard).
#[test]
fn web_server_stop_from_processes_on_two_shards_at_once_returns_at_once() {
    let node = start_node("web-server-stop-two", 2);
    let server = Arc::new(serve(&node, hello));
    let addr = server.local_addr();
    assert!(served(addr));
    let both = Arc::new(std::sync::Barrier::new(2));
    let (report, reported) = mpsc::channel();
    let stoppers: Vec<Pid> = (0..2)
        .map(|shard| {
            let (server, both, report) = (server.clone(), both.clone(), report.clone());
            spawn_on(&node, shard, move || Stopper { server, both, report }, 16)
        })
        .collect();
    for pid in stoppers {
        node.send(pid, ()).expect("tell a stopper");
    }
    for _ in 0..2 {
        let took = reported.recv_timeout(WAIT).expect("a stopper reports");
        assert!(took < Duration::from_secs(2), "stop took {took:?}");
    }
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok() {
        assert!(Instant::now() < deadline, "still listening {WAIT:?} after both stops");
        std::thread::sleep(Duration::from_millis(5));
    }
    node.stop();
}

/// True if a new connection to `addr` is served; false if it is refused or closed unanswered.
fn served(addr: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return false };
    let mut client = Client::from_stream(stream);
    if client.stream.write_all(&raw_request("GET", "/", &[("connection", "close")])).is_err() {
        return false;
    }
    let bytes = client.read_to_end();
    !bytes.is_empty()
}

#[test]
fn web_server_stop_refuses_new_connections_and_keeps_open_ones() {
    let node = start_node("web-server-stop", 2);
    let server = serve(&node, hello);
    let addr = server.local_addr();
    let mut open = Client::connect(addr);
    assert_eq!(open.get("/").status, 200);
    assert!(served(addr));

    server.stop();
    // Every listener is closed when `stop` returns (a user trial could not bind the port
    // right after it): connects are refused, and the port can be taken again at once.
    for _ in 0..3 {
        let refused = TcpStream::connect_timeout(&addr, Duration::from_secs(2));
        assert_eq!(refused.map_err(|e| e.kind()).err(), Some(ErrorKind::ConnectionRefused), "a listener left");
    }
    let again =
        WebServer::start(&node, WebServerOptions::new("127.0.0.1", addr.port(), hello)).expect("the port is free");
    assert_eq!(get(again.local_addr(), "/").status, 200);
    again.stop();
    assert!(!served(addr), "a new connection was served after stop");
    // A connection opened before the stop is still served while the node runs.
    let resp = open.get("/still");
    assert_eq!((resp.status, resp.text()), (200, "hello"));
    node.stop();
}

/// A web service as the examples have it: its `init` starts a server on `port` (on every
/// shard) and keeps it; its `/crash` route makes it panic. Each incarnation answers its number.
struct Service {
    port: u16,
    incarnations: Arc<std::sync::atomic::AtomicUsize>,
    server: Option<WebServer>,
}

struct Crash;

impl Actor for Service {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        let n = self.incarnations.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let me = ctx.pid();
        let node = ctx.handle();
        let router = Router::new().get("/", move |_: &Request| Response::text(format!("incarnation {n}"))).get(
            "/crash",
            move |_: &Request| {
                let _ = node.send(me, Crash);
                Response::text("crashing")
            },
        );
        let options = WebServerOptions::new("127.0.0.1", self.port, router);
        let server = WebServer::start(&ctx.handle(), options).map_err(|e| ExitReason::custom(e.to_string()))?;
        self.server = Some(server);
        Ok(())
    }
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        assert!(msg.downcast::<Crash>().is_err(), "the service panics on Crash");
        Ok(())
    }
}

/// Found by an Ergo-porting trial: a server outlived the actor that started it (a dropped
/// `WebServer` left it running), so a supervised restart could not bind its port (every
/// incarnation `AddrInUse`, the supervisor gave up) while the dead incarnation's routes went
/// on answering. A dropped server stops, and stopping frees the port at once from any thread.
#[test]
fn web_server_kept_by_an_actor_ends_with_it_and_its_restart_binds_the_port() {
    let node = start_node("web-server-owned", 2);
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let incarnations = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = incarnations.clone();
    let child = ChildSpec::new("service", move || Service { port, incarnations: counter.clone(), server: None });
    let options =
        SupervisorOptions { strategy: Strategy::OneForOne, children: vec![child], ..SupervisorOptions::default() };
    node.spawn_on(ShardId(1), move || Supervisor::new(options), ProcessOptions::default()).wait().expect("supervisor");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(get(addr, "/").text(), "incarnation 1");
    for n in 2..=4 {
        assert_eq!(get(addr, "/crash").text(), "crashing");
        // Every connection from now on is the next incarnation's: the old one's listeners
        // are gone with it (a connect refused in between, while it restarts, is retried).
        // (A connect that lands in a listener's backlog as it stops is reset: also retried.)
        wait_until("the restarted service answers", || {
            let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return false };
            let mut c = Client::from_stream(stream);
            if c.stream.write_all(&raw_request("GET", "/", &[("connection", "close")])).is_err() {
                return false;
            }
            let bytes = c.read_to_end();
            // (The last incarnation answers until the message that crashes it is handled.)
            String::from_utf8_lossy(&bytes).ends_with(&format!("incarnation {n}"))
        });
        for _ in 0..8 {
            assert_eq!(get(addr, "/").text(), format!("incarnation {n}"), "an old listener still accepts");
        }
    }
    assert_eq!(incarnations.load(std::sync::atomic::Ordering::SeqCst), 4, "a start failed and was retried");
    node.stop();
}

/// A server stopped from a process frees the port at once on every shard (before: its own
/// shard's listener closed at once, the others' later, so a start right after it could fail
/// `AddrInUse`); a dropped server stops from any thread; a detached one runs on.
#[test]
fn web_server_stopped_or_dropped_anywhere_frees_its_port_at_once_and_a_detached_one_runs_on() {
    struct Restarter {
        report: Sender<Result<u16, String>>,
    }
    impl Actor for Restarter {
        async fn handle_message(&mut self, ctx: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> {
            let mut port = 0;
            for _ in 0..20 {
                let server = match WebServer::start(&ctx.handle(), WebServerOptions::new("127.0.0.1", port, hello)) {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = self.report.send(Err(format!("start again on {port}: {e}")));
                        return Ok(());
                    }
                };
                port = server.local_addr().port();
                server.stop();
            }
            let _ = self.report.send(Ok(port));
            Ok(())
        }
    }
    let node = start_node("web-server-stop-anywhere", 2);
    let (report, reported) = mpsc::channel();
    let restarter = spawn_on(&node, 0, move || Restarter { report }, 16);
    node.send(restarter, ()).expect("tell the restarter");
    let port = reported.recv_timeout(WAIT).expect("the restarter reports").expect("every start binds the port");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    assert!(!served(addr), "served after the last stop");

    let dropped = serve(&node, hello);
    let addr = dropped.local_addr();
    assert!(served(addr));
    drop(dropped);
    assert!(!served(addr), "served after the drop");
    let detached = serve(&node, hello);
    let addr = detached.local_addr();
    detached.detach();
    assert!(served(addr), "a detached server stopped");
    node.stop();
}

/// Found by a trial behind nginx: after `stop`, a proxy's pooled keep-alive connections went
/// on being served with nothing telling it to let go, until the node ended them. `drain`
/// closes idle connections at once and the others after answering what they read, the last
/// answer with `Connection: close`.
#[test]
fn web_server_drain_answers_what_was_read_then_closes_every_connection() {
    /// Holds requests (telling `held` of each) until told [`AnswerLate`], then answers `late`.
    struct Holder {
        held: Vec<WebRequest>,
        told: Sender<()>,
    }
    impl Actor for Holder {
        async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
            match msg.downcast::<WebRequest>() {
                Ok(req) => self.held.push(req),
                Err(_) => self.held.drain(..).for_each(|req| req.respond(Response::text("late"))),
            }
            let _ = self.told.send(());
            Ok(())
        }
    }
    let node = start_node("web-server-drain", 1);
    let (told, late) = mpsc::channel();
    let slow = spawn_on(&node, 0, move || Holder { held: Vec::new(), told }, 16);
    let options = WebHandlerOptions { request_timeout: Duration::from_secs(60), ..WebHandlerOptions::new(slow) };
    let router = Router::new().route("/slow", WebHandler::new(options)).get("/", hello).post("/", body_len);
    let server = serve(&node, router);
    let addr = server.local_addr();

    let mut idle = Client::connect(addr);
    assert_eq!(idle.get("/").status, 200);
    let mut next = Client::connect(addr);
    assert_eq!(next.get("/").status, 200);
    let mut waiting = Client::connect(addr);
    waiting.send(&[raw_request("GET", "/slow", &[]), raw_request("GET", "/", &[])].concat());
    let mut half_head = Client::connect(addr);
    half_head.send(b"GET / HTTP/1.1\r\nHo");
    let mut half_body = Client::connect(addr);
    half_body.send_request("POST", "/", &[("content-length", "10")]);
    half_body.send(b"12345");
    wait_until("five connections open", || server.stats().connections == 5);
    late.recv_timeout(WAIT).expect("the slow request is held");
    // The server reads what came within microseconds; nothing tells a client it did.
    std::thread::sleep(Duration::from_millis(300));

    server.drain();
    // An idle connection's client may be sending its next request as the drain begins (an
    // API trial: closed at once, back-to-back clients lost it): it is answered, the last.
    let resp = next.get("/");
    assert_eq!((resp.status, resp.header("connection")), (200, Some("close")), "{resp:?}");
    next.assert_closed();
    // One that sends nothing is closed after a grace.
    idle.assert_closed();
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err(), "a new connection after drain");
    half_head.send(b"st: a\r\n\r\n");
    let resp = half_head.read_response(false);
    assert_eq!((resp.status, resp.header("connection")), (200, Some("close")), "{resp:?}");
    half_head.assert_closed();
    half_body.send(b"67890");
    let resp = half_body.read_response(false);
    assert_eq!((resp.text(), resp.header("connection")), ("10 bytes", Some("close")), "{resp:?}");
    half_body.assert_closed();
    node.send(slow, AnswerLate).expect("tell the worker");
    late.recv_timeout(WAIT).expect("answered late");
    let first = waiting.read_response(false);
    assert_eq!((first.text(), first.header("connection")), ("late", None), "{first:?}");
    let second = waiting.read_response(false);
    assert_eq!((second.text(), second.header("connection")), ("hello", Some("close")), "{second:?}");
    waiting.assert_closed();
    wait_until("every connection closed", || server.stats().connections == 0);
    node.stop();
}

// ---- pools behind a WebHandler -----------------------------------------------------------------

/// A pool worker: `/boom` panics once the door opens; anything else waits for the door, then
/// answers `ok` with the worker's pid.
struct DoorWorker {
    door: Arc<Door>,
    started: Sender<String>,
}

impl Actor for DoorWorker {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(req) = msg.downcast::<WebRequest>() {
            let path = req.request().path().to_owned();
            let _ = self.started.send(path.clone());
            self.door.wait().await;
            assert!(path != "/boom", "the worker panics on /boom");
            req.respond(Response::text(format!("ok {}", ctx.pid())));
        }
        Ok(())
    }
}

fn door_pool(node: &Node, name: &str, size: usize, mailbox: usize) -> (Pid, Arc<Door>, mpsc::Receiver<String>) {
    let door = Arc::new(Door::default());
    let (tx, rx) = mpsc::channel();
    let factory = {
        let (door, tx) = (door.clone(), Mutex::new(tx));
        move || DoorWorker { door: door.clone(), started: lock(&tx).clone() }
    };
    let options = pinion::PoolOptions::new(size, mailbox, factory);
    let pool = node
        .spawn_register(name, move || pinion::Pool::new(options), ProcessOptions::default())
        .wait()
        .expect("pool starts");
    (pool, door, rx)
}

#[test]
fn web_pool_holds_size_times_mailbox_plus_size_and_answers_the_rest_503_at_once() {
    let node = start_node("web-pool-full", 2);
    let (pool, door, started) = door_pool(&node, "door-pool", 2, 1);
    let options = WebHandlerOptions { request_timeout: Duration::from_secs(30), ..WebHandlerOptions::new("door-pool") };
    let server = serve(&node, WebHandler::new(options));
    let addr = server.local_addr();
    // 2 × (1 + 1) = 4 held; the next 3 are refused at once.
    let mut held: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
    for (i, c) in held.iter_mut().enumerate() {
        c.send_request("GET", &format!("/held/{i}"), &[]);
    }
    for _ in 0..2 {
        started.recv_timeout(WAIT).expect("a worker took a request");
    }
    let h = node.handle();
    let ready = Instant::now();
    while h.pool(pool).unwrap().info().held < 4 {
        assert!(ready.elapsed() < WAIT, "4 requests held: {:?}", h.pool(pool).unwrap().info());
        std::thread::sleep(Duration::from_millis(1));
    }
    for i in 0..3 {
        let resp = get(addr, &format!("/over/{i}"));
        assert_eq!(resp.status, 503, "{resp:?}");
        assert_eq!(resp.header("retry-after"), Some("1"));
    }
    door.open();
    for mut c in held {
        let resp = c.read_response(false);
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    assert_eq!(h.pool(pool).unwrap().info().shed, 3);
    node.stop();
}

#[test]
fn web_pool_worker_panic_answers_its_request_500_and_its_queue_is_served_by_the_replacement() {
    let node = start_node("web-pool-panic", 1);
    let (pool, door, started) = door_pool(&node, "fragile-pool", 1, 3);
    let options =
        WebHandlerOptions { request_timeout: Duration::from_secs(30), ..WebHandlerOptions::new(WebTarget::Pid(pool)) };
    let server = serve(&node, WebHandler::new(options));
    let addr = server.local_addr();
    let mut boom = Client::connect(addr);
    boom.send_request("GET", "/boom", &[]);
    assert_eq!(started.recv_timeout(WAIT).expect("boom taken"), "/boom");
    let mut queued: Vec<Client> = (0..3).map(|_| Client::connect(addr)).collect();
    for (i, c) in queued.iter_mut().enumerate() {
        c.send_request("GET", &format!("/q/{i}"), &[]);
    }
    let h = node.handle();
    let ready = Instant::now();
    while h.pool(pool).unwrap().info().held < 4 {
        assert!(ready.elapsed() < WAIT, "all 4 in the pool");
        std::thread::sleep(Duration::from_millis(1));
    }
    let first = h.pool(pool).unwrap().info().workers[0].pid.unwrap();
    door.open();
    let resp = boom.read_response(false);
    assert_eq!(resp.status, 500, "the request in progress when its worker panicked: {resp:?}");
    for mut c in queued {
        let resp = c.read_response(false);
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_ne!(resp.text(), format!("ok {first}"), "served by the replacement");
    }
    assert_eq!(h.pool(pool).unwrap().info().workers[0].restarts, 1);
    node.stop();
}

#[test]
fn web_handler_to_a_pool_pid_answers_503_once_the_pool_stopped() {
    let node = start_node("web-pool-stopped", 2);
    let (pool, door, _started) = door_pool(&node, "brief-pool", 2, 1);
    door.open();
    let server = serve(&node, WebHandler::to(WebTarget::Pid(pool)));
    let addr = server.local_addr();
    assert_eq!(get(addr, "/a").status, 200, "served through the pool");
    node.handle().exit(pool, ExitReason::Shutdown);
    let h = node.handle();
    let t = Instant::now();
    while h.process_info(pool).is_ok() {
        assert!(t.elapsed() < WAIT, "the pool stops");
        std::thread::sleep(Duration::from_millis(1));
    }
    let resp = get(addr, "/b");
    assert_eq!(resp.status, 503, "{resp:?}");
    assert_eq!(resp.header("retry-after"), None, "gone, not full: no Retry-After");
    node.stop();
}

/// Answers at once with its pid.
struct QuickWorker;

impl Actor for QuickWorker {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(req) = msg.downcast::<WebRequest>() {
            req.respond(Response::text(format!("ok {}", ctx.pid())));
        }
        Ok(())
    }
}

/// A connection's dispatch pass takes pool slots ahead for the pipelined requests it read
/// (`send_ahead`); a plain handler in the same pass kills the worker holding them. The slots
/// were counted as owed to the dead worker: the requests that use them reach its replacement,
/// and the one left unused goes back (to the replacement's slot and the pool's gate), so the
/// pool ends holding nothing and sheds nothing.
#[test]
fn web_pool_slots_taken_ahead_for_a_worker_killed_mid_pass_reach_its_replacement() {
    let node = start_node("web-pool-credit-kill", 1);
    let pool = node
        .spawn(|| pinion::Pool::new(pinion::PoolOptions::new(1, 8, || QuickWorker)), ProcessOptions::default())
        .wait()
        .expect("pool starts");
    let h = node.handle();
    let killer = h.clone();
    let router =
        Router::new().route("/w/{n}", WebHandler::to(WebTarget::Pid(pool))).get("/kill", move |_: &Request| {
            let worker = killer.pool(pool).ok().and_then(|r| r.info().workers[0].pid);
            match worker {
                Some(w) => {
                    killer.exit(w, ExitReason::Kill);
                    Response::text(format!("killed {w}"))
                }
                None => Response::text("no worker").with_status(StatusCode::INTERNAL_SERVER_ERROR),
            }
        });
    let server = serve(&node, router);
    let first = get(server.local_addr(), "/w/0");
    assert_eq!(first.status, 200, "{first:?}");
    let mut c = Client::connect(server.local_addr());
    let burst: String = ["/w/1", "/kill", "/w/2", "/w/3", "/w/4"]
        .iter()
        .map(|t| format!("GET {t} HTTP/1.1\r\nHost: x\r\n\r\n"))
        .collect();
    c.send(burst.as_bytes());
    let answers: Vec<Resp> = (0..5).map(|_| c.read_response(false)).collect();
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a.status, 200, "answer {i}: {a:?}");
    }
    assert!(answers[1].text().starts_with("killed "), "{:?}", answers[1]);
    let killed = answers[1].text().trim_start_matches("killed ").to_owned();
    for a in &answers[2..] {
        assert_ne!(a.text(), format!("ok {killed}"), "served by the replacement");
    }
    let r = h.pool(pool).expect("the pool");
    let t = Instant::now();
    while r.info().held != 0 {
        assert!(t.elapsed() < WAIT, "the pool gives back every slot: {:?}", r.info());
        std::thread::sleep(Duration::from_millis(1));
    }
    let info = r.info();
    assert_eq!((info.shed, info.workers[0].restarts, info.capacity), (0, 1, 9), "{info:?}");
    assert_eq!(get(server.local_addr(), "/w/5").status, 200);
    node.stop();
}

/// One `WebHandler` to a pool, serving on two nodes: the pool's node reaches the pool, the
/// other answers 503 as for any worker of another node, whichever node the handler serves
/// first (review 43, stop 32: the handler kept the pool it resolved first for every node, so
/// the other node's shards placed requests in that pool's slots as if they were their own; and
/// resolved first on the other node, it kept "no pool" for both).
#[test]
fn a_handler_to_a_pool_serving_on_two_nodes_reaches_the_pool_only_from_its_node() {
    let a = start_node("web-two-nodes-a", 1);
    let b = start_node("web-two-nodes-b", 1);
    let options = pinion::PoolOptions::new(1, 8, GetOnly::new);
    let pool = a.spawn(move || pinion::Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    for b_first in [false, true] {
        let handler = WebHandler::to(pool);
        let (sa, sb) = (serve(&a, handler.clone()), serve(&b, handler));
        // Four pipelined requests (a dispatch pass that takes slots ahead), then one alone.
        let ask = |s: &WebServer| {
            let mut c = Client::connect(s.local_addr());
            c.send(&raw_request("GET", "/x", &[]).repeat(4));
            let mut got: Vec<u16> = (0..4).map(|_| c.read_response(false).status).collect();
            got.push(c.get("/x").status);
            got.dedup();
            got
        };
        let got = if b_first { [ask(&sb), ask(&sa), ask(&sb)] } else { [ask(&sa), ask(&sb), ask(&sa)] };
        let want = if b_first { [[503], [200], [503]] } else { [[200], [503], [200]] };
        assert_eq!(got, want.map(Vec::from), "b first: {b_first}");
        sa.stop();
        sb.stop();
    }
    b.stop();
    a.stop();
}
