//! The HTTP/1.1 server over real sockets: a running `WebServer` on 127.0.0.1 (nodes of one and
//! two unpinned shards) answering std `TcpStream`s that write exact bytes (bad, split, pipelined,
//! slow, oversized), then real clients: `curl` and Python's `http.client`. The framing rules
//! themselves are checked on byte slices in `tests/http_codec.rs`; here they are checked end to
//! end: the socket, the shard's connection, the timers, the actor hop.
//!
//! Every read has a timeout, so a hang fails the test. No test asserts on timing beyond generous
//! upper bounds (an answer to a 200 ms timeout must come within [`READ_LIMIT`]).

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pinion::http::{HttpLimits, Request, Response};
use pinion::web::{
    Handler, WebHandler, WebHandlerOptions, WebRequest, WebServer, WebServerOptions, WebTarget, WebWorker,
};
use pinion::{Actor, Context, ExitReason, Message, Node, Pid, ProcessOptions, ShardId};

use support::lock;

/// How long a read waits for the server. Generous: it only turns a hang into a failure.
const READ_LIMIT: Duration = Duration::from_secs(5);

/// The pause between the two writes of a split request, so that the server reads them apart.
const SPLIT_PAUSE: Duration = Duration::from_millis(2);

/// A well-formed request sent after a bad one: it must never be answered.
const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";

// ---- Server side -----------------------------------------------------------------------------

/// A node and a web server on it. [`stop`](Self::stop) ends both.
struct Served {
    node: Node,
    server: WebServer,
}

impl Served {
    fn start(node: Node, handler: impl Handler, limits: HttpLimits) -> Served {
        let options = WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, handler) };
        let server = WebServer::start(&node.handle(), options).unwrap_or_else(|e| panic!("starting the server: {e}"));
        Served { node, server }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn connect(&self) -> Client {
        Client::connect(self.addr())
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr())
    }

    fn stop(self) {
        self.server.stop();
        let node = self.node;
        support::within("stopping the node", Duration::from_secs(10), move || node.stop());
    }
}

/// Targets the handler saw, in order.
type Seen = Arc<Mutex<Vec<String>>>;

/// A plain-function handler (runs on the connection's shard) that records each target and
/// answers `METHOD target body-length|body`.
fn echo(seen: &Seen) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
    let seen = seen.clone();
    move |req: &Request| {
        lock(&seen).push(req.target().to_owned());
        let mut body = format!("{} {} {}|", req.method_token(), req.target(), req.body().len()).into_bytes();
        body.extend_from_slice(req.body());
        Response::text("").body(body)
    }
}

/// The worker of `examples/hello.rs`: `GET /` is `Hello, World!`, `POST` tells the body's
/// length. Any other GET answers `GET target` (to check the order of pipelined answers).
struct Hello;

impl WebWorker for Hello {
    async fn handle_get(&mut self, _: &mut Context, req: &Request) -> Response {
        if req.target() == "/" {
            Response::text("Hello, World!")
        } else {
            Response::text(format!("GET {}", req.target()))
        }
    }

    async fn handle_post(&mut self, _: &mut Context, req: &Request) -> Response {
        Response::text(format!("received {} bytes\n", req.body().len()))
    }
}

/// One [`Hello`] per shard, and a handler that sends each request to the worker on its
/// connection's shard (as `examples/hello.rs` does).
fn hello_handler(node: &Node) -> WebHandler {
    let workers = (0..node.shards())
        .map(|i| {
            let shard = ShardId(u16::try_from(i).expect("shard index"));
            node.spawn_on(shard, || Hello, ProcessOptions::with_mailbox(1024)).wait().expect("a worker spawns")
        })
        .collect();
    WebHandler::to(WebTarget::Nearest(workers))
}

/// What the out-of-order actors saw.
#[derive(Debug, Default)]
struct Track {
    /// Targets in the order they were answered.
    answered: Vec<String>,
    /// Requests received and not yet answered, now and at most.
    outstanding: usize,
    max_outstanding: usize,
}

impl Track {
    fn received(&mut self) {
        self.outstanding += 1;
        self.max_outstanding = self.max_outstanding.max(self.outstanding);
    }

    /// Answers `req` with its target.
    fn answer(&mut self, req: WebRequest) {
        let target = req.request().target().to_owned();
        self.outstanding -= 1;
        self.answered.push(target.clone());
        req.respond(Response::text(target));
    }
}

/// Holds requests until it has `batch` of them, then answers them last first.
struct Holder {
    batch: usize,
    held: Vec<WebRequest>,
    track: Arc<Mutex<Track>>,
}

impl Actor for Holder {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(req) = msg.downcast::<WebRequest>() {
            lock(&self.track).received();
            self.held.push(req);
            if self.held.len() == self.batch {
                let mut track = lock(&self.track);
                while let Some(req) = self.held.pop() {
                    track.answer(req);
                }
            }
        }
        Ok(())
    }
}

/// A request waiting for its delay to pass.
struct Later(WebRequest);

/// Answers `/delay/{ms}` after `ms` milliseconds, through a `send_after` to itself.
struct Delayer {
    track: Arc<Mutex<Track>>,
}

impl Actor for Delayer {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        let msg = match msg.downcast::<WebRequest>() {
            Ok(req) => {
                lock(&self.track).received();
                let ms = req.request().path().rsplit('/').next().and_then(|ms| ms.parse().ok()).unwrap_or(0);
                ctx.send_after(ctx.pid(), Later(req), Duration::from_millis(ms));
                return Ok(());
            }
            Err(msg) => msg,
        };
        if let Ok(Later(req)) = msg.downcast::<Later>() {
            lock(&self.track).answer(req);
        }
        Ok(())
    }
}

/// A [`Delayer`] on `shard`, and what it records.
fn delayer(node: &Node, shard: u16) -> (Pid, Arc<Mutex<Track>>) {
    let track = Arc::new(Mutex::new(Track::default()));
    let t = track.clone();
    let pid = node
        .spawn_on(ShardId(shard), move || Delayer { track: t }, ProcessOptions::default())
        .wait()
        .expect("the delayer spawns");
    (pid, track)
}

// ---- Client side -----------------------------------------------------------------------------

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// At most the first 300 bytes, for failure messages.
fn snip(b: &[u8]) -> String {
    if b.len() <= 300 { show(b) } else { format!("{}... ({} bytes)", show(&b[..300]), b.len()) }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One response as read off the wire.
#[derive(Debug, Clone)]
struct Resp {
    status: u16,
    /// Names lower-cased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The bytes it took on the wire.
    raw: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        show(&self.body)
    }

    /// The raw bytes without the `date` line (it changes every second).
    fn undated(&self) -> String {
        show(&self.raw).split_inclusive("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("date:")).collect()
    }
}

/// The response at the start of `buf`, and the bytes it took; `None` while incomplete. A
/// response to HEAD, a 1xx, 204 and 304 have no body; others are framed by `content-length`
/// (pinion streams nothing in these tests) or, without it, end with the connection.
fn parse_response(buf: &[u8], to_head: bool, eof: bool) -> Option<(Resp, usize)> {
    let end = find(buf, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).unwrap_or_else(|_| panic!("a non-ASCII head: {:?}", show(buf)));
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or_default();
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not a status line: {line:?} in {:?}", show(buf)));
    let headers: Vec<(String, String)> = lines
        .map(|l| l.split_once(':').unwrap_or_else(|| panic!("not a field: {l:?} in {:?}", show(buf))))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    assert!(!headers.iter().any(|(n, _)| n == "transfer-encoding"), "unexpected streamed answer: {:?}", show(buf));
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse::<usize>().unwrap_or_else(|_| panic!("content-length {v:?}")));
    let start = end + 4;
    let used = if to_head || status < 200 || status == 204 || status == 304 {
        start
    } else if let Some(len) = length {
        if buf.len() < start + len {
            return None;
        }
        start + len
    } else if eof {
        buf.len()
    } else {
        return None;
    };
    let resp = Resp { status, headers, body: buf[start..used].to_vec(), raw: buf[..used].to_vec() };
    Some((resp, used))
}

/// A client connection writing exact bytes and reading with a timeout.
struct Client {
    stream: TcpStream,
    /// Read and not yet parsed.
    buf: Vec<u8>,
    eof: bool,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream =
            TcpStream::connect_timeout(&addr, READ_LIMIT).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
        stream.set_read_timeout(Some(READ_LIMIT)).expect("read timeout");
        stream.set_nodelay(true).expect("nodelay");
        Client { stream, buf: Vec::new(), eof: false }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap_or_else(|e| panic!("writing {:?}: {e}", show(bytes)));
    }

    /// Sends `bytes` in two writes, cut at `at`, with a pause between.
    fn send_split(&mut self, bytes: &[u8], at: usize) {
        self.send(&bytes[..at]);
        std::thread::sleep(SPLIT_PAUSE);
        self.send(&bytes[at..]);
    }

    /// Reads once more; false at the end of the stream. Fails on a timeout or a reset.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.eof = true;
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("nothing from the server within {READ_LIMIT:?}; unparsed so far: {:?}", snip(&self.buf))
            }
            Err(e) => panic!("reading: {e}; unparsed so far: {:?}", snip(&self.buf)),
        }
    }

    /// The next response; `to_head`: it answers a HEAD (no body).
    fn response_to(&mut self, to_head: bool) -> Resp {
        loop {
            if let Some((resp, used)) = parse_response(&self.buf, to_head, self.eof) {
                self.buf.drain(..used);
                return resp;
            }
            assert!(!self.eof, "the connection ended inside a response: {:?}", snip(&self.buf));
            self.fill();
        }
    }

    fn response(&mut self) -> Resp {
        self.response_to(false)
    }

    fn responses(&mut self, n: usize) -> Vec<Resp> {
        (0..n).map(|_| self.response()).collect()
    }

    /// The server closes the connection and sends nothing more: the next read returns 0.
    fn expect_closed(&mut self) {
        assert!(self.buf.is_empty(), "bytes after the last response: {:?}", snip(&self.buf));
        if !self.eof {
            let more = self.fill();
            assert!(!more, "the server sent more instead of closing: {:?}", snip(&self.buf));
        }
    }

    /// Nothing more arrives: ends the writes, then the server must close without answering.
    fn finish(&mut self) {
        self.stream.shutdown(Shutdown::Write).expect("shutdown");
        self.expect_closed();
    }
}

/// `bad`, then [`SMUGGLED`], in one write: exactly one answer, `status` with
/// `connection: close`, then the end of the stream (also after a request written after the
/// answer); the handler never sees the smuggled request.
fn refused_over_tcp(name: &str, bad: &[u8], status: u16) -> Resp {
    let seen = Seen::default();
    let served = Served::start(support::node(name, 2), echo(&seen), HttpLimits::default());
    let mut c = served.connect();
    c.send(&[bad, SMUGGLED].concat());
    let resp = c.response();
    assert_eq!(resp.status, status, "{:?}: {}", show(bad), show(&resp.raw));
    assert_eq!(resp.header("connection"), Some("close"), "{:?}: {}", show(bad), show(&resp.raw));
    // The server still reads (and drops) what comes, so that its answer is not lost to a reset.
    c.send(SMUGGLED);
    c.expect_closed();
    assert!(lock(&seen).is_empty(), "the handler saw {:?} after {:?}", lock(&seen), show(bad));
    served.stop();
    resp
}

/// Sends `input` on a fresh connection in one write, then on a fresh connection per offset in
/// two writes cut there; the `n` answers (less their dates) must be the same every time. Then
/// the server closes by itself (`closes`), or once the client ends its writes, with nothing more.
fn split_everywhere(served: &Served, input: &[u8], n: usize, closes: bool) -> Vec<Resp> {
    let exchange = |cut: Option<usize>| {
        let mut c = served.connect();
        match cut {
            None => c.send(input),
            Some(at) => c.send_split(input, at),
        }
        let answers = c.responses(n);
        if closes {
            c.expect_closed();
        } else {
            c.finish();
        }
        answers
    };
    let whole = exchange(None);
    let text: String = whole.iter().map(Resp::undated).collect();
    for at in 1..input.len() {
        let split: String = exchange(Some(at)).iter().map(Resp::undated).collect();
        assert_eq!(split, text, "split at {at}: {:?}", show(input));
    }
    whole
}

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n").into_bytes()
}

// ---- 1. Framing errors over a socket ---------------------------------------------------------

#[test]
fn content_length_with_transfer_encoding_over_tcp_is_400_then_closed_and_next_unanswered() {
    let bad = b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let resp = refused_over_tcp("hs-cl-te", bad, 400);
    assert_eq!(resp.text(), "both Content-Length and Transfer-Encoding");
}

#[test]
fn chunk_size_invalid_over_tcp_is_400_then_closed_and_next_unanswered() {
    let bad = b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n";
    let resp = refused_over_tcp("hs-bad-chunk", bad, 400);
    assert_eq!(resp.text(), "invalid chunk size");
}

#[test]
fn chunk_data_not_followed_by_crlf_over_tcp_is_400_then_closed_and_next_unanswered() {
    let bad = b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n";
    let resp = refused_over_tcp("hs-chunk-crlf", bad, 400);
    assert_eq!(resp.text(), "chunk data not followed by CRLF");
}

#[test]
fn version_http2_over_tcp_is_505_then_closed_and_next_unanswered() {
    let resp = refused_over_tcp("hs-h2", b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
    assert_eq!(resp.text(), "HTTP version not supported");
}

/// Streams every answer: a head, then `data` (never sent to a client for a CONNECT).
struct StreamsAll;

impl Handler for StreamsAll {
    fn handle(&self, req: WebRequest) {
        let mut s = req.respond_stream(Response::text(""));
        s.send(&b"data"[..]);
        s.finish();
    }
}

/// Everything a CONNECT and [`SMUGGLED`] after it get: one head, `200`, with no framing
/// fields and `connection: close`, nothing after it, and the end of the connection.
fn connect_then_smuggled(name: &str, handler: impl Handler) {
    let served = Served::start(support::node(name, 1), handler, HttpLimits::default());
    let mut c = served.connect();
    c.send(&[&b"CONNECT backend.example:443 HTTP/1.1\r\nHost: backend.example:443\r\n\r\n"[..], SMUGGLED].concat());
    while c.fill() {}
    let raw = String::from_utf8_lossy(&c.buf).into_owned();
    let end = raw.find("\r\n\r\n").unwrap_or_else(|| panic!("no head: {raw:?}")) + 4;
    let head = raw[..end].to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200 "), "{raw:?}");
    assert!(!head.contains("content-length") && !head.contains("transfer-encoding"), "{raw:?}");
    assert!(head.contains("connection: close"), "{raw:?}");
    assert_eq!(&raw[end..], "", "bytes after the head of a 2xx answer to CONNECT");
    served.stop();
}

/// A 2xx answer to CONNECT makes the connection a tunnel (RFC 9112 §6.3; RFC 9110 §9.3.6: no
/// `Content-Length` or `Transfer-Encoding` in it): a proxy in front passes what follows
/// unread, so none of it may be read as a request (a differential trial, stop 32: the request
/// after a CONNECT was answered). pinion has no tunnels: the answer's head ends the connection,
/// from a plain function as from a stream.
#[test]
fn a_2xx_answer_to_connect_ends_the_connection_and_nothing_after_it_is_read() {
    let seen = Seen::default();
    connect_then_smuggled("hs-connect", echo(&seen));
    assert_eq!(*lock(&seen), ["backend.example:443"]);
    connect_then_smuggled("hs-connect-stream", StreamsAll);
}

/// An extension method (RFC 9110 §16.1) reaches the handler with its token, on a connection
/// that goes on (before: the connection answered 501 itself).
#[test]
fn an_extension_method_over_tcp_reaches_the_handler_and_the_next_request_is_answered() {
    let seen = Seen::default();
    let served = Served::start(support::node("hs-brew", 2), echo(&seen), HttpLimits::default());
    let mut c = served.connect();
    c.send(&[b"BREW /pot HTTP/1.1\r\nHost: a\r\n\r\n".as_slice(), &get("/next")].concat());
    let brewed = c.response();
    assert_eq!((brewed.status, brewed.text().as_str()), (200, "BREW /pot 0|"), "{}", show(&brewed.raw));
    assert_eq!(brewed.header("connection"), None);
    assert_eq!(c.response().text(), "GET /next 0|");
    // Still open: another request on the same connection.
    c.send(&get("/again"));
    assert_eq!(c.response().text(), "GET /again 0|");
    c.finish();
    assert_eq!(*lock(&seen), ["/pot", "/next", "/again"]);
    served.stop();
}

#[test]
fn an_extension_methods_body_over_tcp_is_its_own_and_the_next_request_is_answered() {
    let seen = Seen::default();
    let served = Served::start(support::node("hs-brew-body", 1), echo(&seen), HttpLimits::default());
    let mut c = served.connect();
    // The body looks like a request: it must be read as the body, never parsed as a request.
    let body = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n";
    let brew = format!("BREW /pot HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    c.send(&[brew.as_bytes(), &get("/next")].concat());
    assert_eq!(c.response().text(), format!("BREW /pot {}|{body}", body.len()));
    assert_eq!(c.response().text(), "GET /next 0|");
    c.finish();
    assert_eq!(*lock(&seen), ["/pot", "/next"]);
    served.stop();
}

// ---- 2. Requests split at every offset -------------------------------------------------------

#[test]
fn chunked_post_split_at_every_offset_is_answered_identically() {
    let seen = Seen::default();
    let served = Served::start(support::node("hs-split-chunked", 2), echo(&seen), HttpLimits::default());
    let input = b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
                  5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n";
    let answers = split_everywhere(&served, input, 1, false);
    assert_eq!(answers[0].status, 200);
    assert_eq!(answers[0].text(), "POST /up 11|hello world");
    served.stop();
}

#[test]
fn pipelined_pair_split_at_every_offset_is_answered_identically() {
    let seen = Seen::default();
    let served = Served::start(support::node("hs-split-pair", 2), echo(&seen), HttpLimits::default());
    let input = b"GET /a?x=1 HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    let answers = split_everywhere(&served, input, 2, false);
    assert_eq!(answers[0].text(), "GET /a?x=1 0|");
    assert_eq!(answers[1].text(), "POST /b 5|hello");
    served.stop();
}

#[test]
fn pipelined_pair_through_actor_split_at_every_offset_is_answered_identically() {
    let node = support::node("hs-split-actor", 2);
    let handler = hello_handler(&node);
    let served = Served::start(node, handler, HttpLimits::default());
    let input = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let answers = split_everywhere(&served, input, 2, false);
    assert_eq!(answers[0].text(), "received 5 bytes\n");
    assert_eq!(answers[1].text(), "Hello, World!");
    served.stop();
}

#[test]
fn framing_error_split_at_every_offset_is_answered_identically_then_closed() {
    let seen = Seen::default();
    let served = Served::start(support::node("hs-split-bad", 2), echo(&seen), HttpLimits::default());
    let bad = b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    let input = [get("/ok").as_slice(), bad, SMUGGLED].concat();
    let answers = split_everywhere(&served, &input, 2, true);
    assert_eq!(answers[0].text(), "GET /ok 0|");
    assert_eq!(answers[1].status, 400);
    assert!(lock(&seen).iter().all(|t| t == "/ok"), "{:?}", lock(&seen));
    served.stop();
}

// ---- 3. Pipelining and responses completed out of order --------------------------------------

#[test]
fn pipelined_burst_of_50_is_answered_in_order() {
    let seen = Seen::default();
    let served = Served::start(support::node("hs-burst", 2), echo(&seen), HttpLimits::default());
    let mut c = served.connect();
    let burst: Vec<u8> = (0..50).flat_map(|i| get(&format!("/r/{i}"))).collect();
    c.send(&burst);
    for (i, a) in c.responses(50).iter().enumerate() {
        assert_eq!((a.status, a.text()), (200, format!("GET /r/{i} 0|")));
    }
    c.finish();
    served.stop();
}

/// The connections of a shard share their read buffers and request boxes: a connection that
/// holds half a head or half a body keeps its bytes while others on the shard take and give
/// back buffers many times over, and its request is answered whole when the rest comes.
#[test]
fn partial_requests_keep_their_bytes_while_other_connections_are_served() {
    let seen = Seen::default();
    let served = Served::start(support::node("hs-spares", 1), echo(&seen), HttpLimits::default());
    let posts: Vec<Vec<u8>> = (0..8)
        .map(|i| {
            let body = format!("body-of-{i}-").repeat(i + 1);
            format!("POST /c/{i} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
        })
        .collect();
    // Half of each: in the head for the even ones, in the body for the odd ones.
    let cut = |i: usize, p: &[u8]| if i.is_multiple_of(2) { 20 } else { p.len() - 5 };
    let mut partial: Vec<Client> = posts.iter().map(|_| served.connect()).collect();
    for (i, (c, p)) in partial.iter_mut().zip(&posts).enumerate() {
        c.send(&p[..cut(i, p)]);
    }
    std::thread::sleep(SPLIT_PAUSE);
    let mut busy = served.connect();
    for round in 0..10 {
        let burst: Vec<u8> = (0..20).flat_map(|j| get(&format!("/busy/{round}/{j}"))).collect();
        busy.send(&burst);
        for (j, a) in busy.responses(20).iter().enumerate() {
            assert_eq!((a.status, a.text()), (200, format!("GET /busy/{round}/{j} 0|")));
        }
    }
    for (i, (c, p)) in partial.iter_mut().zip(&posts).enumerate() {
        c.send(&p[cut(i, p)..]);
        let body = format!("body-of-{i}-").repeat(i + 1);
        let a = c.responses(1).remove(0);
        assert_eq!((a.status, a.text()), (200, format!("POST /c/{i} {}|{body}", body.len())));
    }
    partial.iter_mut().for_each(Client::finish);
    busy.finish();
    served.stop();
}

#[test]
fn pipelined_burst_of_50_through_actor_is_answered_in_order() {
    let node = support::node("hs-burst-actor", 2);
    let handler = hello_handler(&node);
    let served = Served::start(node, handler, HttpLimits::default());
    let mut c = served.connect();
    let burst: Vec<u8> = (0..50).flat_map(|i| get(&format!("/r/{i}"))).collect();
    c.send(&burst);
    for (i, a) in c.responses(50).iter().enumerate() {
        assert_eq!((a.status, a.text()), (200, format!("GET /r/{i}")));
    }
    c.finish();
    served.stop();
}

#[test]
fn responses_completed_in_reverse_are_written_in_request_order() {
    let node = support::node("hs-reverse", 2);
    let track = Arc::new(Mutex::new(Track::default()));
    let t = track.clone();
    // On the second shard: connections on the first get their answers across shards.
    let holder = node
        .spawn_on(ShardId(1), move || Holder { batch: 5, held: Vec::new(), track: t }, ProcessOptions::default())
        .wait()
        .expect("the holder spawns");
    let served = Served::start(node, WebHandler::to(holder), HttpLimits::default());
    let mut c = served.connect();
    let burst: Vec<u8> = (0..5).flat_map(|i| get(&format!("/h/{i}"))).collect();
    c.send(&burst);
    let texts: Vec<String> = c.responses(5).iter().map(Resp::text).collect();
    assert_eq!(texts, ["/h/0", "/h/1", "/h/2", "/h/3", "/h/4"]);
    assert_eq!(lock(&track).answered, ["/h/4", "/h/3", "/h/2", "/h/1", "/h/0"], "answered last first");
    c.finish();
    served.stop();
}

#[test]
fn responses_delayed_with_send_after_are_written_in_request_order() {
    let node = support::node("hs-delay", 2);
    let (pid, track) = delayer(&node, 0);
    let served = Served::start(node, WebHandler::to(pid), HttpLimits::default());
    // Later requests have shorter delays: they finish first.
    let delays = [160, 120, 80, 40, 0];
    for round in 0..2 {
        let mut c = served.connect();
        let burst: Vec<u8> = delays.iter().flat_map(|ms| get(&format!("/delay/{ms}"))).collect();
        c.send(&burst);
        let texts: Vec<String> = c.responses(delays.len()).iter().map(Resp::text).collect();
        let expected: Vec<String> = delays.iter().map(|ms| format!("/delay/{ms}")).collect();
        assert_eq!(texts, expected, "round {round}");
        c.finish();
    }
    // Each answered once (in whatever order the timers fired).
    let mut answered = lock(&track).answered.clone();
    answered.sort();
    let mut expected: Vec<String> = delays.iter().chain(&delays).map(|ms| format!("/delay/{ms}")).collect();
    expected.sort();
    assert_eq!(answered, expected);
    served.stop();
}

// ---- 4. Limits over real TCP -----------------------------------------------------------------

fn limits(f: impl FnOnce(&mut HttpLimits)) -> HttpLimits {
    let mut l = HttpLimits::default();
    f(&mut l);
    l
}

#[test]
fn header_read_timeout_half_head_is_408_then_closed() {
    let seen = Seen::default();
    let limits = limits(|l| l.header_read_timeout = Duration::from_millis(200));
    let served = Served::start(support::node("hs-head-timeout", 1), echo(&seen), limits);
    let mut c = served.connect();
    let sent = Instant::now();
    c.send(b"GET /slow HTTP/1.1\r\nHost: a\r\nX-Half: ");
    let resp = c.response();
    assert!(sent.elapsed() < READ_LIMIT);
    assert_eq!(resp.status, 408, "{}", show(&resp.raw));
    assert_eq!(resp.header("connection"), Some("close"));
    c.expect_closed();
    assert!(lock(&seen).is_empty());
    served.stop();
}

#[test]
fn body_read_timeout_partial_body_is_408_then_closed() {
    let seen = Seen::default();
    let limits = limits(|l| l.body_read_timeout = Duration::from_millis(200));
    let served = Served::start(support::node("hs-body-timeout", 1), echo(&seen), limits);
    for partial in [
        b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc".as_slice(),
        b"POST /slow HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
    ] {
        let mut c = served.connect();
        c.send(partial);
        let resp = c.response();
        assert_eq!(resp.status, 408, "{:?}: {}", show(partial), show(&resp.raw));
        assert_eq!(resp.header("connection"), Some("close"));
        c.expect_closed();
    }
    assert!(lock(&seen).is_empty());
    served.stop();
}

#[test]
fn idle_timeout_keep_alive_connection_is_closed_by_server() {
    let seen = Seen::default();
    let limits = limits(|l| l.idle_timeout = Duration::from_millis(200));
    let served = Served::start(support::node("hs-idle", 1), echo(&seen), limits);
    // After a request.
    let mut c = served.connect();
    c.send(&get("/one"));
    let resp = c.response();
    assert_eq!(resp.header("connection"), None, "kept alive");
    c.expect_closed();
    // And a connection that never sent anything.
    let mut silent = served.connect();
    silent.expect_closed();
    served.stop();
}

#[test]
fn empty_lines_after_a_request_leave_the_connection_idle() {
    // RFC 9112 §2.2: empty lines before a request line are ignored. Some clients send a CRLF
    // after a request: the connection is idle then, not halfway through a head, so the
    // header-read timeout must not answer it 408; the next request is served, and the idle
    // timeout closes the connection without an answer.
    let seen = Seen::default();
    let limits = limits(|l| {
        l.header_read_timeout = Duration::from_millis(100);
        l.idle_timeout = Duration::from_secs(3);
    });
    let served = Served::start(support::node("hs-empty-lines", 1), echo(&seen), limits);
    let mut c = served.connect();
    c.send(&[&get("/one")[..], b"\r\n"].concat());
    assert_eq!(c.response().status, 200);
    std::thread::sleep(Duration::from_millis(300)); // past the header-read timeout
    c.send(&[&b"\r\n"[..], &get("/two")].concat());
    let resp = c.response();
    assert_eq!((resp.status, show(&resp.body)), (200, "GET /two 0|".to_owned()));
    c.send(b"\n");
    c.expect_closed();
    // A head begun is still timed: 408, and to HEAD without content.
    let mut c = served.connect();
    c.send(b"HEAD /slow HTTP/1.1\r\nHost: a\r\n");
    let resp = c.response_to(true);
    assert_eq!((resp.status, resp.header("connection")), (408, Some("close")), "{}", show(&resp.raw));
    c.expect_closed();
    assert_eq!(lock(&seen).len(), 2);
    served.stop();
}

#[test]
fn max_connections_per_shard_extra_connection_is_503_then_closed() {
    let seen = Seen::default();
    let limits = limits(|l| l.max_connections_per_shard = 1);
    let served = Served::start(support::node("hs-max-conns", 1), echo(&seen), limits);
    let mut first = served.connect();
    first.send(&get("/first"));
    assert_eq!(first.response().status, 200);
    let mut extra = served.connect();
    let refused = extra.response();
    assert_eq!(refused.status, 503, "{}", show(&refused.raw));
    assert_eq!(refused.header("connection"), Some("close"));
    assert_eq!(refused.header("retry-after"), Some("1"));
    extra.expect_closed();
    // The first one is still served.
    first.send(&get("/first-again"));
    assert_eq!(first.response().text(), "GET /first-again 0|");
    // Once it is gone, a new connection is served (after the server saw the close).
    first.finish();
    let deadline = Instant::now() + READ_LIMIT;
    loop {
        if let Some(resp) = try_get(served.addr(), "/later") {
            assert_eq!(resp.text(), "GET /later 0|");
            break;
        }
        assert!(Instant::now() < deadline, "no connection served after the first one closed");
        std::thread::sleep(Duration::from_millis(10));
    }
    served.stop();
}

/// One GET on a fresh connection; `None` if it was refused (a 503, or reset).
fn try_get(addr: SocketAddr, target: &str) -> Option<Resp> {
    let mut stream = TcpStream::connect_timeout(&addr, READ_LIMIT).ok()?;
    stream.set_read_timeout(Some(READ_LIMIT)).ok()?;
    stream.write_all(&get(target)).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some((resp, _)) = parse_response(&buf, false, false) {
            return (resp.status != 503).then_some(resp);
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn max_in_flight_2_big_burst_through_actor_is_answered_in_order() {
    let node = support::node("hs-in-flight", 2);
    let (pid, track) = delayer(&node, 1);
    let limits = limits(|l| l.max_in_flight = 2);
    let served = Served::start(node, WebHandler::to(pid), limits);
    let mut c = served.connect();
    // Every other request takes a little longer: the pairs in flight finish out of order.
    let targets: Vec<String> = (0..200).map(|i| format!("/delay/{}?n={i}", if i % 2 == 0 { 2 } else { 0 })).collect();
    let burst: Vec<u8> = targets.iter().flat_map(|t| get(t)).collect();
    c.send(&burst);
    let texts: Vec<String> = c.responses(targets.len()).iter().map(Resp::text).collect();
    assert_eq!(texts, targets);
    c.finish();
    let track = lock(&track);
    assert_eq!(track.answered.len(), targets.len());
    assert!(track.max_outstanding <= 2, "{} requests in flight at once", track.max_outstanding);
    drop(track);
    served.stop();
}

#[test]
fn max_body_bytes_over_is_413_then_closed() {
    let seen = Seen::default();
    let limits = limits(|l| l.max_body_bytes = 16);
    let served = Served::start(support::node("hs-max-body", 1), echo(&seen), limits);
    let by_length = format!("POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n{}", "x".repeat(17));
    let chunked = format!(
        "POST /big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n{}\r\n9\r\n{}\r\n0\r\n\r\n",
        "x".repeat(8),
        "y".repeat(9)
    );
    for bad in [by_length, chunked] {
        let mut c = served.connect();
        c.send(&[bad.as_bytes(), SMUGGLED].concat());
        let resp = c.response();
        assert_eq!(resp.status, 413, "{bad:?}: {}", show(&resp.raw));
        assert_eq!(resp.header("connection"), Some("close"));
        c.expect_closed();
    }
    // At the bound: accepted.
    let mut c = served.connect();
    c.send(format!("POST /ok HTTP/1.1\r\nHost: a\r\nContent-Length: 16\r\n\r\n{}", "z".repeat(16)).as_bytes());
    assert_eq!(c.response().text(), format!("POST /ok 16|{}", "z".repeat(16)));
    c.finish();
    assert_eq!(*lock(&seen), ["/ok"]);
    served.stop();
}

#[test]
fn expect_continue_interim_100_arrives_before_body_is_sent() {
    let node = support::node("hs-expect", 2);
    let handler = hello_handler(&node);
    let served = Served::start(node, handler, HttpLimits::default());
    let mut c = served.connect();
    c.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.response();
    assert_eq!(show(&interim.raw), "HTTP/1.1 100 Continue\r\n\r\n");
    assert!(c.buf.is_empty(), "nothing but the 100 before the body: {:?}", show(&c.buf));
    c.send(b"hello");
    let resp = c.response();
    assert_eq!((resp.status, resp.text()), (200, "received 5 bytes\n".to_owned()));
    // The connection goes on.
    c.send(&get("/"));
    assert_eq!(c.response().text(), "Hello, World!");
    c.finish();
    served.stop();
}

#[test]
fn header_read_timeout_does_not_refuse_complete_request_held_back_by_max_in_flight() {
    let node = support::node("hs-held-back", 1);
    let (pid, _track) = delayer(&node, 0);
    let limits = limits(|l| {
        l.max_in_flight = 1;
        l.header_read_timeout = Duration::from_millis(100);
    });
    let served = Served::start(node, WebHandler::to(pid), limits);
    let mut c = served.connect();
    // The second request is complete at once; the server only holds it back until the first
    // (slower than the header timeout) is answered.
    c.send(&[get("/delay/400"), get("/delay/0")].concat());
    let first = c.response();
    assert_eq!((first.status, first.text()), (200, "/delay/400".to_owned()));
    let second = c.response();
    assert_eq!((second.status, second.text()), (200, "/delay/0".to_owned()), "{}", show(&second.raw));
    c.finish();
    served.stop();
}

#[test]
fn expect_continue_body_over_max_body_bytes_is_413_without_100_then_closed() {
    let seen = Seen::default();
    let limits = limits(|l| l.max_body_bytes = 16);
    let served = Served::start(support::node("hs-expect-413", 1), echo(&seen), limits);
    let mut c = served.connect();
    c.send(b"POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n");
    let resp = c.response();
    assert_eq!(resp.status, 413, "no 100 for a body that will be refused: {}", show(&resp.raw));
    assert_eq!(resp.header("connection"), Some("close"));
    c.expect_closed();
    assert!(lock(&seen).is_empty());
    served.stop();
}

#[test]
fn expect_continue_behind_slow_pipelined_request_comes_after_its_response() {
    let node = support::node("hs-expect-order", 2);
    let (pid, _track) = delayer(&node, 1);
    let served = Served::start(node, WebHandler::to(pid), HttpLimits::default());
    let mut c = served.connect();
    let post = b"POST /delay/0 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    c.send(&[get("/delay/100").as_slice(), post].concat());
    assert_eq!(c.response().text(), "/delay/100");
    let interim = c.response();
    assert_eq!(show(&interim.raw), "HTTP/1.1 100 Continue\r\n\r\n");
    assert!(c.buf.is_empty(), "{:?}", show(&c.buf));
    c.send(b"hello");
    assert_eq!(c.response().text(), "/delay/0");
    c.finish();
    served.stop();
}

#[test]
fn request_timeout_unanswered_is_504_and_connection_goes_on() {
    let node = support::node("hs-504", 2);
    let track = Arc::new(Mutex::new(Track::default()));
    let t = track.clone();
    // Holds every request (the batch is never reached).
    let holder = node
        .spawn_on(
            ShardId(1),
            move || Holder { batch: usize::MAX, held: Vec::new(), track: t },
            ProcessOptions::default(),
        )
        .wait()
        .expect("the holder spawns");
    let handler = WebHandler::new(WebHandlerOptions {
        request_timeout: Duration::from_millis(200),
        ..WebHandlerOptions::new(holder)
    });
    let served = Served::start(node, handler, HttpLimits::default());
    let mut c = served.connect();
    for target in ["/a", "/b"] {
        c.send(&get(target));
        let resp = c.response();
        assert_eq!(resp.status, 504, "{target}: {}", show(&resp.raw));
        assert_eq!(resp.header("connection"), None);
    }
    c.finish();
    assert_eq!(lock(&track).outstanding, 2);
    served.stop();
}

#[test]
fn client_half_close_after_pipelined_burst_is_answered_then_closed() {
    let node = support::node("hs-half-close", 2);
    let (pid, _track) = delayer(&node, 0);
    let served = Served::start(node, WebHandler::to(pid), limits(|l| l.max_in_flight = 2));
    let mut c = served.connect();
    let targets: Vec<String> = (0..10).map(|i| format!("/delay/{}?n={i}", i % 3)).collect();
    c.send(&targets.iter().flat_map(|t| get(t)).collect::<Vec<u8>>());
    c.stream.shutdown(Shutdown::Write).expect("shutdown");
    let texts: Vec<String> = c.responses(targets.len()).iter().map(Resp::text).collect();
    assert_eq!(texts, targets);
    c.expect_closed();
    served.stop();
}

/// Answers `/big/{n}` with `n` bytes.
fn big(req: &Request) -> Response {
    let n = req.path().rsplit('/').next().and_then(|n| n.parse().ok()).unwrap_or(0);
    Response::text("").body(vec![b'b'; n])
}

#[test]
fn pipelined_big_responses_are_all_delivered_in_order() {
    let served = Served::start(support::node("hs-big", 1), big, HttpLimits::default());
    let mut c = served.connect();
    let sizes: Vec<usize> = (0..20).map(|i| 1024 * 1024 + i).collect();
    c.send(&sizes.iter().flat_map(|n| get(&format!("/big/{n}"))).collect::<Vec<u8>>());
    for (i, n) in sizes.iter().enumerate() {
        let resp = c.response();
        assert_eq!((resp.status, resp.body.len()), (200, *n), "response {i}");
    }
    c.finish();
    served.stop();
}

#[test]
fn big_response_single_is_delivered_whole() {
    let served = Served::start(support::node("hs-big-one", 1), big, HttpLimits::default());
    let mut c = served.connect();
    let n = 16 * 1024 * 1024;
    c.send(&get(&format!("/big/{n}")));
    let resp = c.response();
    assert_eq!((resp.status, resp.body.len()), (200, n));
    c.finish();
    served.stop();
}

#[test]
fn slow_reader_pipelined_responses_are_all_delivered_in_order() {
    let served = Served::start(support::node("hs-slow-reader", 1), big, HttpLimits::default());
    let mut c = served.connect();
    let sizes: Vec<usize> = (0..200).map(|i| 16 * 1024 + i).collect();
    c.send(&sizes.iter().flat_map(|n| get(&format!("/big/{n}"))).collect::<Vec<u8>>());
    // Not reading for a while: the server stops reading (and writing) until the client does.
    std::thread::sleep(Duration::from_millis(200));
    for (i, n) in sizes.iter().enumerate() {
        let resp = c.response();
        assert_eq!((resp.status, resp.body.len()), (200, *n), "response {i}");
    }
    c.finish();
    served.stop();
}

#[test]
fn header_read_timeout_trickled_head_is_408_then_closed() {
    let seen = Seen::default();
    let limits = limits(|l| l.header_read_timeout = Duration::from_millis(200));
    let served = Served::start(support::node("hs-trickle-head", 1), echo(&seen), limits);
    let mut c = served.connect();
    // Every byte comes well within the timeout, the whole head does not: it runs from the first.
    for b in get("/trickle") {
        if c.stream.write_all(&[b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    let resp = c.response();
    assert_eq!(resp.status, 408, "{}", show(&resp.raw));
    c.expect_closed();
    assert!(lock(&seen).is_empty());
    served.stop();
}

#[test]
fn body_read_timeout_trickled_body_is_408_then_closed() {
    let seen = Seen::default();
    let limits = limits(|l| l.body_read_timeout = Duration::from_millis(200));
    let served = Served::start(support::node("hs-trickle-body", 1), echo(&seen), limits);
    let mut c = served.connect();
    c.send(b"POST /trickle HTTP/1.1\r\nHost: a\r\nContent-Length: 25\r\n\r\n");
    for _ in 0..25 {
        if c.stream.write_all(b"x").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    let resp = c.response();
    assert_eq!(resp.status, 408, "{}", show(&resp.raw));
    c.expect_closed();
    assert!(lock(&seen).is_empty());
    served.stop();
}

#[test]
fn idle_timeout_does_not_close_connection_waiting_for_slow_response() {
    let node = support::node("hs-idle-busy", 1);
    let (pid, _track) = delayer(&node, 0);
    let served = Served::start(node, WebHandler::to(pid), limits(|l| l.idle_timeout = Duration::from_millis(100)));
    let mut c = served.connect();
    c.send(&get("/delay/400"));
    assert_eq!(c.response().text(), "/delay/400");
    // Idle now: closed.
    c.expect_closed();
    served.stop();
}

/// Waits until a fresh connection to `addr` is served (not refused with 503).
fn wait_served(addr: SocketAddr, what: &str) {
    let deadline = Instant::now() + READ_LIMIT;
    loop {
        if let Some(resp) = try_get(addr, "/probe") {
            assert_eq!(resp.status, 200, "{what}: {}", show(&resp.raw));
            return;
        }
        assert!(Instant::now() < deadline, "the connection slot was not freed after: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn max_connections_per_shard_slot_is_freed_after_every_kind_of_close() {
    let seen = Seen::default();
    let limits = limits(|l| {
        l.max_connections_per_shard = 1;
        l.header_read_timeout = Duration::from_millis(100);
        l.idle_timeout = Duration::from_millis(100);
    });
    let served = Served::start(support::node("hs-slot-freed", 1), echo(&seen), limits);
    let addr = served.addr();
    wait_served(addr, "start");

    let mut c = served.connect();
    c.send(&get("/a"));
    c.response();
    drop(c);
    wait_served(addr, "the client closed an idle connection");

    let mut c = served.connect();
    c.send(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n");
    assert_eq!(c.response().status, 505);
    c.expect_closed();
    drop(c);
    wait_served(addr, "a fatal error, then the client closed");

    let mut c = served.connect();
    c.send(b"GET / HTTP/1.1\r\n");
    assert_eq!(c.response().status, 408);
    c.expect_closed();
    drop(c);
    wait_served(addr, "a header timeout");

    let mut c = served.connect();
    c.send(&get("/a"));
    c.response();
    c.expect_closed();
    drop(c);
    wait_served(addr, "an idle timeout");

    let mut c = served.connect();
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    c.response();
    c.expect_closed();
    drop(c);
    wait_served(addr, "Connection: close");

    let mut c = served.connect();
    c.send(b"GET / HTTP/1.1\r\nHo");
    c.stream.shutdown(Shutdown::Write).expect("shutdown");
    c.expect_closed();
    drop(c);
    wait_served(addr, "the client closed mid-head");

    // The server keeps its slot while the client keeps a connection after a fatal error, at
    // most for its lingering close (then it closes by itself).
    let mut c = served.connect();
    c.send(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n");
    assert_eq!(c.response().status, 505);
    c.expect_closed();
    let deadline = Instant::now() + Duration::from_secs(10);
    while try_get(addr, "/probe").is_none() {
        assert!(Instant::now() < deadline, "a lingering connection kept its slot for 10 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(c);
    served.stop();
}

// ---- 5. HEAD, Connection: close, HTTP/1.0 keep-alive -------------------------------------------

#[test]
fn head_through_actor_has_get_length_and_no_body() {
    let node = support::node("hs-head", 2);
    let handler = hello_handler(&node);
    let served = Served::start(node, handler, HttpLimits::default());
    let mut c = served.connect();
    // HEAD then GET in one write: the GET's answer must follow the HEAD's head at once.
    c.send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let head = c.response_to(true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("13"));
    assert!(head.body.is_empty());
    while c.buf.len() < 9 {
        c.fill();
    }
    assert!(c.buf.starts_with(b"HTTP/1.1 "), "body bytes after a HEAD answer: {:?}", show(&c.buf));
    let get = c.response();
    assert_eq!(get.header("content-length"), Some("13"));
    assert_eq!(get.text(), "Hello, World!");
    c.finish();
    served.stop();
}

#[test]
fn connection_close_through_actor_is_honoured_then_closed() {
    let node = support::node("hs-conn-close", 2);
    let handler = hello_handler(&node);
    let served = Served::start(node, handler, HttpLimits::default());
    let mut c = served.connect();
    c.send(&[b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".as_slice(), &get("/after")].concat());
    let resp = c.response();
    assert_eq!(resp.text(), "Hello, World!");
    assert_eq!(resp.header("connection"), Some("close"));
    c.expect_closed();
    served.stop();
}

#[test]
fn http10_keep_alive_connection_stays_open_until_a_request_without_it() {
    let node = support::node("hs-http10", 2);
    let handler = hello_handler(&node);
    let served = Served::start(node, handler, HttpLimits::default());
    let mut c = served.connect();
    for _ in 0..2 {
        c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let resp = c.response();
        assert_eq!(resp.text(), "Hello, World!");
        assert_eq!(resp.header("connection"), Some("keep-alive"));
    }
    c.send(b"GET / HTTP/1.0\r\n\r\n");
    let last = c.response();
    assert_eq!(last.text(), "Hello, World!");
    assert_eq!(last.header("connection"), Some("close"));
    c.expect_closed();
    served.stop();
}

// ---- 6. Real clients -------------------------------------------------------------------------

/// `name` (`curl` or `python3`); fails the test (never skips it) when it is not installed.
fn tool(name: &str) -> Command {
    match Command::new(name).arg("--version").output() {
        Ok(out) if out.status.success() => Command::new(name),
        _ => panic!("`{name}` is needed by this test and was not found: apt-get install curl python3"),
    }
}

/// Runs `cmd` with `stdin`; its stdout and stderr. Fails the test if it fails.
fn run(mut cmd: Command, stdin: &[u8]) -> (String, String) {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin).expect("writing the client's stdin");
    drop(input);
    let out = child.wait_with_output().expect("waiting for the client");
    let (stdout, stderr) = (show(&out.stdout), show(&out.stderr));
    assert!(out.status.success(), "{cmd:?}: {}\nstdout: {stdout}\nstderr: {stderr}", out.status);
    (stdout, stderr)
}

/// `curl` against `served` with `args` (no proxy, HTTP/1.1, bounded in time).
fn curl(served: &Served, args: &[&str], stdin: &[u8]) -> (String, String) {
    let mut cmd = tool("curl");
    cmd.args(["-sS", "--noproxy", "*", "--http1.1", "--max-time", "10"]).args(args).arg(served.url());
    run(cmd, stdin)
}

fn hello_server(name: &str) -> Served {
    let node = support::node(name, 2);
    let handler = hello_handler(&node);
    Served::start(node, handler, HttpLimits::default())
}

#[test]
fn curl_get_is_answered_hello_world() {
    let served = hello_server("hs-curl-get");
    let (out, _) = curl(&served, &[], b"");
    assert_eq!(out, "Hello, World!");
    served.stop();
}

#[test]
fn curl_post_data_binary_is_answered_with_its_length() {
    let served = hello_server("hs-curl-post");
    let (out, _) = curl(&served, &["--data-binary", "abc"], b"");
    assert_eq!(out, "received 3 bytes\n");
    let (out, _) = curl(&served, &["--data-binary", "@-"], &[7u8; 700]);
    assert_eq!(out, "received 700 bytes\n");
    served.stop();
}

#[test]
fn curl_head_has_get_length_and_no_body() {
    let served = hello_server("hs-curl-head");
    let (out, _) = curl(&served, &["-I"], b"");
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    assert!(out.contains("\r\ncontent-length: 13\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\n"), "{out}");
    served.stop();
}

#[test]
fn curl_chunked_upload_is_answered_with_its_length() {
    let served = hello_server("hs-curl-chunked");
    let body = vec![b'c'; 3000];
    let (out, err) = curl(&served, &["-v", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-"], &body);
    assert_eq!(out, "received 3000 bytes\n", "{err}");
    assert!(err.contains("> Transfer-Encoding: chunked"), "not sent chunked: {err}");
    served.stop();
}

#[test]
fn curl_expect_continue_large_body_gets_100_before_body() {
    let served = hello_server("hs-curl-expect");
    let body = vec![b'e'; 4096];
    let args = ["-v", "-H", "Expect: 100-continue", "--expect100-timeout", "10", "--data-binary", "@-"];
    let (out, err) = curl(&served, &args, &body);
    assert_eq!(out, "received 4096 bytes\n", "{err}");
    assert!(err.contains("> Expect: 100-continue"), "{err}");
    assert!(err.contains("< HTTP/1.1 100 Continue"), "no interim 100: {err}");
    served.stop();
}

/// Keep-alive GETs, a POST with a body, a chunked POST, a last GET: one line each,
/// `method|status|body|content-length|local port`.
const PYTHON_CLIENT: &str = r#"
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
def go(method, body=None, **kw):
    c.request(method, "/", body=body, **kw)
    r = c.getresponse()
    data = r.read()
    port = c.sock.getsockname()[1] if c.sock else None
    print("|".join([method, str(r.status), repr(data.decode()), str(r.getheader("content-length")), str(port)]))
for _ in range(3):
    go("GET")
go("POST", b"x" * 1000)
go("POST", iter([b"ab", b"cde", b"f" * 100]), encode_chunked=True)
go("GET")
"#;

#[test]
fn python_http_client_reuses_one_connection_for_get_post_and_chunked_post() {
    let served = hello_server("hs-python");
    let mut cmd = tool("python3");
    cmd.arg("-c").arg(PYTHON_CLIENT).arg(served.addr().port().to_string());
    let (out, err) = run(cmd, b"");
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split('|').collect()).collect();
    let summary: Vec<[&str; 4]> = lines.iter().map(|f| [f[0], f[1], f[2], f[3]]).collect();
    assert_eq!(
        summary,
        [
            ["GET", "200", "'Hello, World!'", "13"],
            ["GET", "200", "'Hello, World!'", "13"],
            ["GET", "200", "'Hello, World!'", "13"],
            ["POST", "200", r"'received 1000 bytes\n'", "20"],
            ["POST", "200", r"'received 105 bytes\n'", "19"],
            ["GET", "200", "'Hello, World!'", "13"],
        ],
        "{out}\n{err}"
    );
    let ports: Vec<&str> = lines.iter().map(|f| f[4]).collect();
    assert!(ports[0] != "None" && ports.iter().all(|p| *p == ports[0]), "one connection reused: {ports:?}");
    served.stop();
}
