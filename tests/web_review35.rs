//! Review 35 (stop 31): the connection state machine and the response path. Its three
//! failing tests (an HTTP/1.0 HEAD answered with a stream closed the connection after its
//! pipeline was released; a body timeout ran while our own 100 Continue waited behind a slow
//! answer; an answer given at once with `Connection: close` let the next request be handled)
//! and the cases it checked, kept. Raw-socket tests; every wait bounded.

mod review_support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pinion::http::{HttpLimits, Response, StatusCode};
use pinion::web::{Handler, ResponseStream, WebRequest};
use review_support::*;

/// `/hold*` kept for the test; `/stream*` streamed (kept open, "first" sent); `/sfin*` streamed
/// and finished at once; anything else "hello". Counts every request by path.
#[derive(Default)]
struct Holder {
    held: Mutex<Vec<WebRequest>>,
    streams: Mutex<Vec<ResponseStream>>,
    seen: Mutex<Vec<String>>,
    count: AtomicUsize,
}

struct H(Arc<Holder>);

impl Handler for H {
    fn handle(&self, req: WebRequest) {
        let h = &self.0;
        let path = req.request().path().to_owned();
        h.count.fetch_add(1, Ordering::SeqCst);
        lock(&h.seen).push(format!("{} {}", req.request().method().as_str(), path));
        if path == "/block" {
            // Keeps the shard busy (any slow handler or burst does the same).
            std::thread::sleep(Duration::from_millis(600));
            req.respond(Response::text("blocked"));
        } else if path.starts_with("/hold") {
            if let Some(ms) = path.strip_prefix("/hold504-") {
                let ms: u64 = ms.parse().unwrap();
                req.set_deadline(Instant::now() + Duration::from_millis(ms));
            }
            lock(&h.held).push(req);
        } else if path.starts_with("/stream") {
            let mut s = req.respond_stream(Response::new(StatusCode(200)));
            s.send(b"first".to_vec());
            lock(&h.streams).push(s);
        } else if let Some(n) = path.strip_prefix("/big-") {
            let n: usize = n.parse().unwrap();
            let body: String = (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            req.respond(Response::text(body));
        } else if path.starts_with("/sfin") {
            let mut s = req.respond_stream(Response::new(StatusCode(200)));
            s.send(b"all".to_vec());
            s.finish();
        } else {
            req.respond(Response::text("hello"));
        }
    }
}

fn holder() -> Arc<Holder> {
    Arc::new(Holder::default())
}

/// Reads until EOF/reset/timeout (bounded by `limit`).
fn read_all_for(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let end = Instant::now() + limit;
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    out
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

// ---- 1. HTTP/1.0 keep-alive HEAD answered with a stream -------------------------------------

/// An HTTP/1.0 keep-alive HEAD answered with a stream keeps the connection (there is no body
/// to end by closing), and the request pipelined behind it is answered. (The answer said
/// `connection: close` while the request behind had been released to the handler already:
/// processed, its answer dropped — RFC 9112 §9.6.)
#[test]
fn http10_head_streamed_then_pipelined_request_is_answered_on_a_live_connection() {
    let node = start_node("r35-h10-head", 1);
    let h = holder();
    let server = serve_with(&node, HttpLimits::default(), H(h.clone()));
    let mut c = TcpStream::connect(server.local_addr()).unwrap();
    c.write_all(b"HEAD /sfin HTTP/1.0\r\nConnection: keep-alive\r\n\r\nPOST /second HTTP/1.0\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let all = read_all_for(&mut c, Duration::from_secs(3));
    let text = String::from_utf8_lossy(&all).into_owned();
    let seen = lock(&h.seen).clone();
    assert!(!text.to_ascii_lowercase().contains("connection: close"), "{text:?}");
    assert_eq!(count(&all, b"HTTP/1.1 "), 2, "both answered: {text:?}");
    assert_eq!(seen.len(), 2, "{seen:?}");
    node.stop();
}

fn client(server: &pinion::web::WebServer) -> Client {
    Client::connect(server.local_addr())
}

fn answer_held(h: &Holder, text: &str) {
    let r = lock(&h.held).remove(0);
    r.respond(Response::text(text.to_owned()));
}

fn finish_streams(h: &Holder) {
    for s in lock(&h.streams).drain(..) {
        s.finish();
    }
}

/// Held GET, a HEAD answered with an open stream, a GET: three answers in order, the HEAD's
/// without a body, the connection alive.
#[test]
fn head_streamed_between_pipelined_requests() {
    let node = start_node("r35-head-mid", 1);
    let h = holder();
    let server = serve_with(&node, HttpLimits::default(), H(h.clone()));
    let mut c = client(&server);
    c.send(&[get("/hold"), b"HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), get("/x")].concat());
    wait_until("held", || lock(&h.held).len() == 1 && h.count.load(Ordering::SeqCst) == 3);
    answer_held(&h, "one");
    let a = c.response();
    assert_eq!((a.status, a.text()), (200, "one".to_owned()));
    let b = c.head();
    assert_eq!(b.status, 200);
    let d = c.response();
    assert_eq!((d.status, d.text()), (200, "hello".to_owned()), "{b:?}");
    c.send(&get("/y"));
    assert_eq!(c.response().text(), "hello");
    node.stop();
}

/// max_in_flight 2: an open stream, then three GETs; once the stream ends all are answered.
#[test]
fn in_flight_bound_exactly_with_a_stream_in_front() {
    let node = start_node("r35-inflight", 1);
    let h = holder();
    let limits = HttpLimits { max_in_flight: 2, ..HttpLimits::default() };
    let server = serve_with(&node, limits, H(h.clone()));
    let mut c = client(&server);
    c.send(&[get("/stream"), get("/a"), get("/b"), get("/c")].concat());
    wait_until("stream", || lock(&h.streams).len() == 1);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(h.count.load(Ordering::SeqCst), 2, "{:?}", lock(&h.seen));
    finish_streams(&h);
    let s = c.response();
    assert_eq!((s.status, s.text()), (200, "first".to_owned()));
    for _ in 0..3 {
        assert_eq!(c.response().text(), "hello");
    }
    node.stop();
}

/// A held GET, then a POST waiting for 100-continue: the 100 comes after the GET's answer;
/// the body then sent is answered.
#[test]
fn continue_behind_a_held_request() {
    let node = start_node("r35-continue", 1);
    let h = holder();
    let server = serve_with(&node, HttpLimits::default(), H(h.clone()));
    let mut c = client(&server);
    c.send(
        &[get("/hold"), b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n".to_vec()]
            .concat(),
    );
    wait_until("held", || lock(&h.held).len() == 1);
    std::thread::sleep(Duration::from_millis(100));
    answer_held(&h, "one");
    let a = c.response();
    assert_eq!(a.text(), "one");
    let cont = c.head();
    assert_eq!(cont.status, 100);
    c.send(b"abcde");
    let b = c.response();
    assert_eq!((b.status, b.text()), (200, "hello".to_owned()));
    node.stop();
}

/// The deadline passes (504), the worker answers late from another thread: dropped; the
/// connection goes on.
#[test]
fn late_answer_after_504_is_dropped() {
    let node = start_node("r35-late", 1);
    let h = holder();
    let server = serve_with(&node, HttpLimits::default(), H(h.clone()));
    let mut c = client(&server);
    c.send(&[get("/hold504-200"), get("/stream")].concat());
    let a = c.response();
    assert_eq!(a.status, 504);
    let mut s = c.head();
    assert_eq!(s.status, 200);
    answer_held(&h, "late");
    finish_streams(&h);
    c.body_of(&mut s);
    assert_eq!(s.text(), "first");
    c.send(&get("/y"));
    assert_eq!(c.response().text(), "hello");
    node.stop();
}

/// A `Connection: close` request mid-pipeline: what follows it is not processed.
#[test]
fn close_mid_pipeline() {
    let node = start_node("r35-close-mid", 1);
    let h = holder();
    let server = serve_with(&node, HttpLimits::default(), H(h.clone()));
    let mut c = client(&server);
    c.send(&[get("/hold"), b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(), get("/b")].concat());
    wait_until("held", || lock(&h.held).len() == 1);
    std::thread::sleep(Duration::from_millis(100));
    answer_held(&h, "one");
    assert_eq!(c.response().text(), "one");
    let b = c.response();
    assert_eq!(b.header("connection"), Some("close"));
    c.assert_closed();
    assert_eq!(lock(&h.seen).len(), 2);
    node.stop();
}

fn check_big(r: &Resp, n: usize) {
    assert_eq!(r.body.len(), n);
    assert!(r.body.iter().enumerate().all(|(i, b)| *b == b'a' + (i % 26) as u8), "big body corrupted");
}

/// A client with a small receive window that reads late: a big answer, a stream fed from
/// another thread meanwhile, answers behind it; every byte in order.
#[test]
fn small_window_big_answer_stream_and_answers_behind() {
    let node = start_node("r35-window", 1);
    let h = holder();
    let server = serve_with(&node, HttpLimits::default(), H(h.clone()));
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.local_addr().into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let mut c = Client { s, buf: Vec::new() };
    c.send(&[get("/big-700000"), get("/stream"), get("/big-3000"), get("/hold"), get("/x")].concat());
    wait_until("stream", || lock(&h.streams).len() == 1 && lock(&h.held).len() == 1);
    let mut expect = b"first".to_vec();
    for i in 0..200 {
        let chunk = format!("<{i}:{}>", "z".repeat(i * 13 % 700));
        expect.extend_from_slice(chunk.as_bytes());
        lock(&h.streams)[0].send(chunk.into_bytes());
        if i == 100 {
            answer_held(&h, "held");
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    finish_streams(&h);
    let a = c.response();
    check_big(&a, 700000);
    let b = c.response();
    assert_eq!(b.body, expect, "stream body");
    let d = c.response();
    check_big(&d, 3000);
    assert_eq!(c.response().text(), "held");
    assert_eq!(c.response().text(), "hello");
    node.stop();
}

/// A held GET, then a POST that waits for 100-continue (owed behind the GET's answer): the
/// body clock must not run out while the server has not asked for the body yet.
#[test]
fn body_timeout_does_not_run_while_our_100_continue_waits_behind_a_slow_answer() {
    let node = start_node("r35-continue-408", 1);
    let h = holder();
    let limits =
        HttpLimits { body_read_timeout: Duration::from_millis(300), min_body_rate: 0, ..HttpLimits::default() };
    let server = serve_with(&node, limits, H(h.clone()));
    let mut c = client(&server);
    c.send(
        &[get("/hold"), b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n".to_vec()]
            .concat(),
    );
    wait_until("held", || lock(&h.held).len() == 1);
    // Our handler is slow: longer than the body timeout.
    std::thread::sleep(Duration::from_millis(800));
    answer_held(&h, "one");
    let a = c.response();
    assert_eq!(a.text(), "one");
    let next = c.head();
    assert_eq!(next.status, 100, "the client never got its 100 Continue: {next:?}");
    c.send(b"abcde");
    let b = c.response();
    assert_eq!((b.status, b.text()), (200, "hello".to_owned()));
    node.stop();
}

/// A plain function answers at once with `Connection: close`: the request pipelined behind it
/// (same read) must not be handed to a handler (RFC 9112 §9.6).
#[test]
fn answer_at_once_that_closes_stops_request_processing() {
    let node = start_node("r35-close-at-once", 1);
    let seen = Arc::new(AtomicUsize::new(0));
    let counted = seen.clone();
    let handler = move |r: &pinion::http::Request| {
        if r.path() == "/bye" {
            Response::text("bye").header("connection", "close")
        } else {
            counted.fetch_add(1, Ordering::SeqCst);
            Response::text("counted")
        }
    };
    let server = serve_with(&node, HttpLimits::default(), handler);
    let mut c = client(&server);
    c.send(&[get("/bye"), get("/count")].concat());
    let a = c.response();
    assert_eq!((a.text(), a.header("connection")), ("bye".to_owned(), Some("close")));
    c.assert_closed();
    assert_eq!(seen.load(Ordering::SeqCst), 0, "the request after the closing answer was processed");
    node.stop();
}

/// The rest of a head reaches the socket well before the header deadline while the shard is
/// busy with another connection's handler; the timer is served before the socket is polled:
/// the client that was on time must not get 408.
#[test]
fn header_bytes_in_the_socket_before_the_deadline_are_not_refused_408() {
    let node = start_node("r35-busy-408", 1);
    let h = holder();
    let limits = HttpLimits { header_read_timeout: Duration::from_millis(300), ..HttpLimits::default() };
    let server = serve_with(&node, limits, H(h.clone()));
    let mut a = client(&server);
    a.send(b"GET /x HTTP/1.1\r\n");
    std::thread::sleep(Duration::from_millis(50));
    let mut b = client(&server);
    b.send(&get("/block"));
    std::thread::sleep(Duration::from_millis(100));
    // 150 ms after the head began, 150 ms before its deadline.
    a.send(b"Host: x\r\n\r\n");
    let r = a.response();
    assert_eq!((r.status, r.text()), (200, "hello".to_owned()), "{r:?}");
    assert_eq!(b.response().text(), "blocked");
    node.stop();
}
