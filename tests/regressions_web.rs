//! Regressions found in review of issue 3 (web connections), one test each, named `issue_3_*`.
//!
//! Each test runs a real `WebServer` on 127.0.0.1 (port 0) on an unpinned one-shard node and
//! talks to it through std `TcpStream`s writing raw bytes. Every read has a timeout ([`WAIT`]),
//! so a hang fails the test; no timing assertion beyond generous upper bounds.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use pinion::http::{Body, HttpLimits, Request, Response, StatusCode};
use pinion::web::{Handler, RequestSummary, ResponseHook, Router, WebHandler, WebRequest, WebServer, WebServerOptions};
use pinion::{Actor, Context, Cores, ExitReason, Message, Node, NodeOptions, Pid, ProcessOptions, ShardId};

/// Bound on every read: only there so that a bug fails a test instead of hanging it.
const WAIT: Duration = Duration::from_secs(3);

// ---- server side ------------------------------------------------------------------------------

/// A one-shard node and a web server on it; both stopped on drop (a failing test too).
struct Served {
    node: Option<Node>,
    server: Option<WebServer>,
}

impl Served {
    fn start(name: &str, handler: impl Handler, limits: HttpLimits) -> Served {
        Served::start_with(name, |_| handler, limits)
    }

    /// `handler` is made once the node runs (to spawn its workers).
    fn start_with<H: Handler>(name: &str, handler: impl FnOnce(&Node) -> H, limits: HttpLimits) -> Served {
        let options = NodeOptions { cores: Cores::Count(1), pin: false, ..Default::default() };
        let node = Node::start(name, options).unwrap_or_else(|e| panic!("node {name}: {e}"));
        let handler = handler(&node);
        let options = WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, handler) };
        let server = WebServer::start(&node.handle(), options).unwrap_or_else(|e| panic!("web server: {e}"));
        Served { node: Some(node), server: Some(server) }
    }

    fn node(&self) -> &Node {
        self.node.as_ref().expect("a running node")
    }

    fn addr(&self) -> SocketAddr {
        self.server.as_ref().expect("a running server").local_addr()
    }

    fn connect(&self) -> Client {
        Client::connect(self.addr())
    }

    /// The loop turns of shard 0 so far.
    fn turns(&self) -> u64 {
        self.node().inspect().expect("inspect")[0].turns
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop();
        }
        if let Some(node) = self.node.take() {
            // Bounded: a stuck stop fails the test (or, while one is failing already, is left).
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                node.stop();
                let _ = tx.send(());
            });
            if rx.recv_timeout(Duration::from_secs(10)).is_err() && !std::thread::panicking() {
                panic!("the node did not stop within 10 s");
            }
        }
    }
}

fn limits(f: impl FnOnce(&mut HttpLimits)) -> HttpLimits {
    let mut l = HttpLimits::default();
    f(&mut l);
    l
}

/// CPU time of this process's thread named `name` so far (Linux `/proc`; `None` elsewhere).
/// A thread's `comm` holds the first 15 bytes of its name.
fn thread_cpu(name: &str) -> Option<Duration> {
    let comm = &name.as_bytes()[..name.len().min(15)];
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let Ok(c) = std::fs::read(dir.join("comm")) else { continue };
        if c.trim_ascii_end() == comm {
            let stat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            let ns = stat.split_whitespace().next()?.parse().ok()?;
            return Some(Duration::from_nanos(ns));
        }
    }
    None
}

fn hello(_: &Request) -> Response {
    Response::text("hello")
}

// ---- a raw HTTP/1.1 client ---------------------------------------------------------------------

/// A parsed response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        stream.set_write_timeout(Some(WAIT)).expect("write timeout");
        let _ = stream.set_nodelay(true);
        Client { stream, buf: Vec::new() }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write the request");
    }

    /// Reads more; 0 at the end of the stream (a reset counts as one). A timeout fails.
    fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
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
                return String::from_utf8_lossy(&line[..i]).into_owned();
            }
            if self.fill() == 0 {
                panic!("end of stream inside a line: {:?}", String::from_utf8_lossy(&self.buf));
            }
        }
    }

    /// Reads a response head: (status, fields).
    fn read_head(&mut self) -> (u16, Vec<(String, String)>) {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.fill() == 0 {
                panic!("end of stream before a complete head: {:?}", String::from_utf8_lossy(&self.buf));
            }
        };
        let head: Vec<u8> = self.buf.drain(..end + 4).collect();
        let head = String::from_utf8_lossy(&head[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {status_line:?}");
        let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("status in {status_line:?}"));
        let fields = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or_else(|| panic!("field line {l:?} in {head:?}"));
                (n.trim().to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        (status, fields)
    }

    /// Reads one response to a GET.
    fn read_response(&mut self) -> Resp {
        let (status, headers) = self.read_head();
        let mut resp = Resp { status, headers, body: Vec::new() };
        if status < 200 || status == 204 || status == 304 {
            return resp;
        }
        if resp.header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
            loop {
                let line = self.take_line();
                let size = usize::from_str_radix(line.trim(), 16).unwrap_or_else(|_| panic!("chunk size {line:?}"));
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

    fn get(&mut self, target: &str) -> Resp {
        self.send(&get(target));
        self.read_response()
    }

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

/// The status of one GET on a fresh connection; `None` if it was refused (503, or reset).
fn try_get(addr: SocketAddr, target: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(WAIT)).ok()?;
    stream.write_all(&get(target)).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while find(&buf, b"\r\n").is_none() {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let line = String::from_utf8_lossy(&buf);
    let status = line.split(' ').nth(1)?.parse().ok()?;
    (status != 503).then_some(status)
}

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

// ---- handlers and actors -------------------------------------------------------------------------

/// Keeps each request and answers it `late` 300 ms later (a `send_after` to itself).
struct Slow {
    held: Vec<WebRequest>,
}

struct AnswerNow;

impl Actor for Slow {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<WebRequest>() {
            Ok(req) => {
                self.held.push(req);
                ctx.send_after(ctx.pid(), AnswerNow, Duration::from_millis(300));
            }
            Err(msg) => {
                if msg.downcast::<AnswerNow>().is_ok() {
                    for req in self.held.drain(..) {
                        req.respond(Response::text("late"));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A synchronous handler that streams `hi` and finishes, all before it returns.
struct SyncStream;

impl Handler for SyncStream {
    fn handle(&self, req: WebRequest) {
        let mut stream = req.respond_stream(Response::new(StatusCode::OK));
        stream.send("hi");
        stream.finish();
    }
}

/// A hook that panics.
struct PanickingHook;

impl ResponseHook for PanickingHook {
    fn on_response(&self, _: &RequestSummary<'_>, _: &mut Response) {
        panic!("PanickingHook panics, as the test asked");
    }
}

/// Attaches a [`PanickingHook`] to each request, then hands it to `H`.
struct Hooked<H>(H);

impl<H: Handler> Handler for Hooked<H> {
    fn handle(&self, mut req: WebRequest) {
        req.on_response(Arc::new(PanickingHook));
        self.0.handle(req);
    }
}

// ---- the regressions ------------------------------------------------------------------------------

/// A half-closed client whose answer is pending must not make the shard spin: the connection
/// re-queued itself every turn while its codec was closed (`Connection: close`).
#[test]
fn issue_3_pending_answer_to_half_closed_client_does_not_busy_loop() {
    let served = Served::start_with(
        "reg3-busy",
        |node| {
            let slow = node
                .spawn_on(ShardId(0), || Slow { held: Vec::new() }, ProcessOptions::default())
                .wait()
                .expect("the slow actor spawns");
            Router::new().route("/slow", WebHandler::to(slow))
        },
        HttpLimits::default(),
    );
    let mut client = served.connect();
    client.send(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    client.stream.shutdown(Shutdown::Write).expect("half-close");
    // Let the server read the request and the end of the stream.
    std::thread::sleep(Duration::from_millis(30));
    // (Node `reg3-busy`, shard 0, as the OS names its thread: 15 bytes, the index kept.)
    let cpu_before = thread_cpu("pinion-reg3-b-0");
    let before = served.turns();
    std::thread::sleep(Duration::from_millis(200));
    let after = served.turns();
    let cpu_after = thread_cpu("pinion-reg3-b-0");
    assert!(
        after - before < 1000,
        "the shard turned {} times in 200 ms while only waiting for the answer (a busy loop)",
        after - before
    );
    if let (Some(b), Some(a)) = (cpu_before, cpu_after) {
        // Where /proc tells: the shard thread slept through those 200 ms.
        assert!(a - b < Duration::from_millis(100), "the shard thread ran {:?} of 200 ms while waiting", a - b);
    }
    let resp = client.read_response();
    assert_eq!((resp.status, resp.text()), (200, "late".to_owned()));
    assert_eq!(resp.header("connection"), Some("close"));
    client.assert_closed();
}

/// A client that sends a request and never reads the (big) answer is dropped after
/// `idle_timeout` without progress; before, it held its connection slot forever.
#[test]
fn issue_3_client_that_stops_reading_is_dropped_after_the_send_timeout() {
    let router =
        Router::new().get("/big", |_: &Request| Response::text("").body(vec![b'x'; 8 << 20])).get("/small", hello);
    let limits = limits(|l| {
        l.idle_timeout = Duration::from_millis(300);
        l.max_connections_per_shard = 1;
    });
    let served = Served::start("reg3-send-timeout", router, limits);
    let mut stuck = served.connect();
    stuck.send(&get("/big"));
    // The server accepted it (and writes until the client's buffers are full).
    std::thread::sleep(Duration::from_millis(50));
    let refused = served.connect().read_response();
    assert_eq!(refused.status, 503, "the one connection slot is taken by the stuck client");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(status) = try_get(served.addr(), "/small") {
            assert_eq!(status, 200);
            break;
        }
        assert!(Instant::now() < deadline, "the client that stopped reading still holds its connection after 3 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The stuck connection was closed by the server: reading it ends short of the 8 MiB.
    stuck.stream.set_read_timeout(Some(WAIT)).expect("read timeout");
    let got = stuck.read_to_end();
    assert!(got.len() < 8 << 20, "the stuck client got the whole body ({} bytes)", got.len());
}

/// A synchronous handler streaming its answer: the chunks and the end follow the head.
#[test]
fn issue_3_synchronous_handler_streams_its_body() {
    let served = Served::start("reg3-sync-stream", SyncStream, HttpLimits::default());
    let mut client = served.connect();
    client.send(&get("/"));
    let (status, fields) = client.read_head();
    assert_eq!(status, 200);
    assert!(fields.iter().any(|(n, v)| n == "transfer-encoding" && v == "chunked"), "{fields:?}");
    let body = client.take(b"2\r\nhi\r\n0\r\n\r\n".len());
    assert_eq!(String::from_utf8_lossy(&body), "2\r\nhi\r\n0\r\n\r\n");
    // The connection goes on.
    client.send(&get("/again"));
    assert_eq!(client.read_response().text(), "hi");
}

/// A panicking response hook: the client gets a 500 and its connection stays usable.
#[test]
fn issue_3_panicking_response_hook_answers_500() {
    let router = Router::new().get("/boom", Hooked(hello)).get("/ok", hello);
    let served = Served::start("reg3-hook-panic", router, HttpLimits::default());
    let mut client = served.connect();
    let resp = client.get("/boom");
    assert_eq!(resp.status, 500, "{resp:?}");
    assert!(resp.header("content-length").is_some(), "{resp:?}");
    let resp = client.get("/ok");
    assert_eq!((resp.status, resp.text()), (200, "hello".to_owned()));
}

/// A final status that is 1xx or not three digits is sent as 500 with a length, and the
/// pipelined request after it is answered.
#[test]
fn issue_3_informational_or_invalid_final_status_is_sent_as_500() {
    let router = Router::new()
        .get("/s101", |_: &Request| Response::new(StatusCode(101)))
        .get("/s42", |_: &Request| Response::text("forty-two").with_status(StatusCode(42)))
        .get("/ok", hello);
    let served = Served::start("reg3-status", router, HttpLimits::default());
    let mut client = served.connect();
    for bad in ["/s101", "/s42"] {
        let mut both = get(bad);
        both.extend_from_slice(&get("/ok"));
        client.send(&both);
        let resp = client.read_response();
        assert_eq!(resp.status, 500, "{bad}: {resp:?}");
        let len = resp.header("content-length").unwrap_or_else(|| panic!("{bad}: no content-length: {resp:?}"));
        assert_eq!(len.parse::<usize>().ok(), Some(resp.body.len()));
        let next = client.read_response();
        assert_eq!((next.status, next.text()), (200, "hello".to_owned()), "after {bad}");
    }
}

/// A response field value with CR LF in it is dropped, not written (no response splitting).
#[test]
fn issue_3_response_field_with_crlf_is_dropped() {
    let router = Router::new()
        .get("/split", |_: &Request| Response::text("body").header("x-note", "a\r\nX-Injected: 1"))
        .get("/ok", hello);
    let served = Served::start("reg3-split", router, HttpLimits::default());
    let mut client = served.connect();
    let resp = client.get("/split");
    assert_eq!((resp.status, resp.text()), (200, "body".to_owned()));
    assert_eq!(resp.header("x-injected"), None, "{resp:?}");
    assert_eq!(resp.header("x-note"), None, "{resp:?}");
    let resp = client.get("/ok");
    assert_eq!((resp.status, resp.text()), (200, "hello".to_owned()));
}

/// The header read timeout runs per request: a client that always has the start of its next
/// request buffered (pipelining) is not timed out while each request arrives in time.
#[test]
fn issue_3_header_read_timeout_is_per_request() {
    let limits = limits(|l| l.header_read_timeout = Duration::from_millis(300));
    let served = Served::start("reg3-read-timeout", |req: &Request| Response::text(req.target().to_owned()), limits);
    let mut client = served.connect();
    const N: usize = 21; // 20 pauses of 50 ms: about 1 s, several header timeouts
    let requests: Vec<Vec<u8>> = (0..N).map(|i| get(&format!("/r{i}"))).collect();
    let mut sent = client.stream.write_all(&requests[0][..10]).is_ok();
    for i in 1..=N {
        if !sent {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        let mut bytes = requests[i - 1][10..].to_vec();
        if let Some(next) = requests.get(i) {
            bytes.extend_from_slice(&next[..10]);
        }
        sent = client.stream.write_all(&bytes).is_ok();
    }
    for (i, _) in requests.iter().enumerate() {
        let resp = client.read_response();
        assert_eq!((resp.status, resp.text()), (200, format!("/r{i}")), "answer {i} of {N}");
    }
    assert!(sent, "writing failed although every request was answered");
}

/// A response that closes the connection (a streamed body to an HTTP/1.0 client) stops
/// request processing: the request behind it is never handed to its handler.
///
/// It failed at d36672e (then ignored): the codec closed once the closing response was
/// *written*, but a request pipelined in the same read was handed to its handler by the same
/// `dispatch` loop before any response was known to close (the counter ended at 1).
#[test]
fn issue_3_closing_response_stops_request_processing() {
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    let router = Router::new().get("/stream", SyncStream).get("/count", move |_: &Request| {
        counted.fetch_add(1, Ordering::SeqCst);
        Response::text("counted")
    });
    let served = Served::start("reg3-closing", router, HttpLimits::default());
    let mut client = served.connect();
    client.send(
        b"GET /stream HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n\
          GET /count HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
    );
    let resp = client.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"), "{resp:?}");
    assert_eq!(resp.text(), "hi", "the close-delimited body, and nothing after it");
    assert_eq!(count.load(Ordering::SeqCst), 0, "the request after the closing response was processed");
}

/// `respond` with a `Body::Streamed` response: an empty body, not a stream nobody feeds.
#[test]
fn issue_3_respond_with_streamed_body_sends_empty_body() {
    let streamed = |req: WebRequest| {
        let mut resp = Response::new(StatusCode::OK);
        resp.body = Body::Streamed;
        req.respond(resp);
    };
    struct Fn1<F>(F);
    impl<F: Fn(WebRequest) + Send + Sync + 'static> Handler for Fn1<F> {
        fn handle(&self, req: WebRequest) {
            (self.0)(req)
        }
    }
    let router = Router::new().get("/streamed", Fn1(streamed)).get("/ok", hello);
    let served = Served::start("reg3-respond-streamed", router, HttpLimits::default());
    let mut client = served.connect();
    let resp = client.get("/streamed");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("0"), "{resp:?}");
    assert_eq!(resp.header("transfer-encoding"), None, "{resp:?}");
    assert!(resp.body.is_empty());
    let resp = client.get("/ok");
    assert_eq!((resp.status, resp.text()), (200, "hello".to_owned()));
}
