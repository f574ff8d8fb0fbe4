//! What a review of `check_head`, `WebServer::stats` and the stream watch found (stop 28),
//! each reproduced on real sockets: a route's handler asked before `100 Continue` without
//! its path parameters; an unknown method answered by the router instead of 501; a CORS
//! preflight answered by the router; the count of streamed bytes waiting behind the line
//! drifting for good (the connection then stalled, or was closed as a slow client); a stream
//! or an answer waiting behind our own slow handler taken for a stalled reader; the open
//! connections gauge kept after `Node::stop`.
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pinion::http::{HttpLimits, Request, Response, StatusCode};
use pinion::web::{Cors, Layer, ResponseStream, Router, WebHandler, WebRequest, WebServer, WebServerOptions, auth};
use pinion::{Actor, Context, Cores, ExitReason, Message, Node, NodeOptions, Pid, ProcessOptions, ShardId};

fn node(name: &str) -> Node {
    Node::start(name, NodeOptions { cores: Cores::Count(1), pin: false, ..Default::default() }).unwrap()
}
fn serve_on(node: &Node, limits: Option<HttpLimits>, h: impl pinion::web::Handler) -> WebServer {
    let mut o = WebServerOptions::new("127.0.0.1", 0, h);
    if let Some(l) = limits {
        o.limits = l;
    }
    WebServer::start(node, o).expect("start")
}
fn connect(server: &WebServer) -> TcpStream {
    let s = TcpStream::connect(server.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}
/// Reads until `pat` is seen or the peer closes / the read times out.
fn read_until(s: &mut TcpStream, pat: &str, limit: Duration) -> String {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        if String::from_utf8_lossy(&buf).contains(pat) {
            break;
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}
fn body_len(req: &Request) -> Response {
    Response::text(format!("{} bytes", req.body().len()))
}
fn hello(_: &Request) -> Response {
    Response::text("hello")
}

// ---- check_head vs handle -------------------------------------------------------------------

/// A per-route auth check that reads a path parameter: `handle` sees the parameter,
/// `check_head` does not (the router records parameters only in `route_from`).
#[test]
fn check_head_asks_a_routes_handler_with_its_path_parameters() {
    let n = node("rev28-params");
    let guarded = auth("r", |r: &Request| r.param("id") == Some("7")).wrap(Arc::new(body_len));
    let router = Router::new().route("/users/{id}/upload", guarded);
    let server = serve_on(&n, None, router);
    // Without Expect: 200.
    let mut c = connect(&server);
    c.write_all(b"POST /users/7/upload HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\nabc").unwrap();
    let r = read_until(&mut c, "bytes", Duration::from_secs(5));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    // With Expect: the same request is refused 401 before its body.
    let mut c = connect(&server);
    c.write_all(b"POST /users/7/upload HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n")
        .unwrap();
    let r = read_until(&mut c, "\r\n\r\n", Duration::from_secs(5));
    n.stop();
    assert!(r.starts_with("HTTP/1.1 100"), "check_head refused what handle accepts: {r}");
}

/// An unknown method is answered 501 by the connection once its body is in; with Expect the
/// router's check_head sees it as GET and answers 404/405 (or the route's 401) instead.
#[test]
fn an_unknown_method_waiting_for_100_is_answered_501_not_by_the_router() {
    let n = node("rev28-unknown");
    let server = serve_on(&n, None, Router::new().post("/up", body_len));
    let mut c = connect(&server);
    c.write_all(b"FROB /nowhere HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\nabc").unwrap();
    let plain = read_until(&mut c, "\r\n\r\n", Duration::from_secs(5));
    let mut c = connect(&server);
    c.write_all(b"FROB /nowhere HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n").unwrap();
    let expect = read_until(&mut c, "\r\n\r\n", Duration::from_secs(5));
    n.stop();
    assert!(plain.starts_with("HTTP/1.1 501"), "{plain}");
    assert!(expect.starts_with("HTTP/1.1 501"), "Expect changes the answer to an unknown method: {expect}");
}

/// A CORS preflight is answered by Cors::handle (204 with the allow-methods); with Expect,
/// CorsHandler::check_head asks the router instead (404 here).
#[test]
fn a_cors_preflight_waiting_for_100_gets_the_preflight_answer() {
    let n = node("rev28-cors");
    let cors = Cors { origins: vec!["http://app.example".into()], ..Cors::default() };
    let server = serve_on(&n, None, Router::new().post("/up", body_len).layer(cors));
    let pre = "OPTIONS /other HTTP/1.1\r\nhost: t\r\norigin: http://app.example\r\naccess-control-request-method: POST\r\ncontent-length: 3\r\n";
    let mut c = connect(&server);
    c.write_all(format!("{pre}\r\nabc").as_bytes()).unwrap();
    let plain = read_until(&mut c, "\r\n\r\n", Duration::from_secs(5));
    let mut c = connect(&server);
    c.write_all(format!("{pre}expect: 100-continue\r\n\r\n").as_bytes()).unwrap();
    let expect = read_until(&mut c, "\r\n\r\n", Duration::from_secs(5));
    n.stop();
    assert!(plain.starts_with("HTTP/1.1 204"), "{plain}");
    assert!(expect.starts_with("HTTP/1.1 204"), "preflight with Expect answered differently: {expect}");
    assert!(expect.contains("access-control-allow-methods"), "{expect}");
}

// ---- stream_bytes drift -----------------------------------------------------------------------

/// Holds `/a`; when `/s` comes: starts its stream, sends a big chunk (waits behind /a),
/// answers /a, sends another chunk (now at the head, before any write), finishes.
struct Orchestrate {
    a: Option<WebRequest>,
    early: usize,
}

impl Actor for Orchestrate {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        let Ok(req) = msg.downcast::<WebRequest>() else { return Ok(()) };
        if req.request().path() == "/a" {
            self.a = Some(req);
            return Ok(());
        }
        if req.request().path() == "/s" {
            let mut s: ResponseStream = req.respond_stream(Response::new(StatusCode::OK));
            s.send(vec![b'e'; self.early]);
            if let Some(a) = self.a.take() {
                a.respond(Response::text("a"));
            }
            s.send("late");
            s.finish();
            return Ok(());
        }
        req.respond(Response::text("other"));
        Ok(())
    }
}

/// After the drift, the connection pauses reading for good (unwritten() >= 256 KiB although
/// nothing is left to write): a third request is never answered, and the connection is
/// closed by the idle timer and counted as a slow client.
#[test]
fn a_stream_that_becomes_first_in_line_between_writes_does_not_stall_the_connection() {
    let n = node("rev28-drift");
    let pid = n
        .spawn_on(ShardId(0), || Orchestrate { a: None, early: 300 * 1024 }, ProcessOptions::with_mailbox(16))
        .wait()
        .unwrap();
    let limits = HttpLimits { idle_timeout: Duration::from_secs(2), ..HttpLimits::default() };
    let server = serve_on(&n, Some(limits), WebHandler::to(pid));
    let mut c = connect(&server);
    c.write_all(b"GET /a HTTP/1.1\r\nhost: t\r\n\r\nGET /s HTTP/1.1\r\nhost: t\r\n\r\n").unwrap();
    let got = read_until(&mut c, "late\r\n0\r\n\r\n", Duration::from_secs(5));
    assert!(got.ends_with("late\r\n0\r\n\r\n"), "both answered: {} bytes", got.len());
    std::thread::sleep(Duration::from_millis(200));
    c.write_all(b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n").unwrap();
    let t = Instant::now();
    let third = read_until(&mut c, "other", Duration::from_secs(5));
    let stats = server.stats();
    n.stop();
    assert!(
        third.contains("other"),
        "third request unanswered ({:?}, closed after {:?}); stats {stats:?}",
        third,
        t.elapsed()
    );
}

/// Small leak only: the connection is idle with nothing to write, yet after idle_timeout it is
/// closed as a "slow client"; and a client's EOF does not close it at once.
#[test]
fn an_idle_connection_after_such_a_stream_is_not_a_slow_client() {
    let n = node("rev28-drift2");
    let pid =
        n.spawn_on(ShardId(0), || Orchestrate { a: None, early: 10 }, ProcessOptions::with_mailbox(16)).wait().unwrap();
    let limits = HttpLimits { idle_timeout: Duration::from_millis(500), ..HttpLimits::default() };
    let server = serve_on(&n, Some(limits), WebHandler::to(pid));
    let mut c = connect(&server);
    c.write_all(b"GET /a HTTP/1.1\r\nhost: t\r\n\r\nGET /s HTTP/1.1\r\nhost: t\r\n\r\n").unwrap();
    let got = read_until(&mut c, "late\r\n0\r\n\r\n", Duration::from_secs(5));
    assert!(got.ends_with("late\r\n0\r\n\r\n"), "{got}");
    std::thread::sleep(Duration::from_millis(1200));
    let stats = server.stats();
    n.stop();
    assert_eq!(stats.slow_clients, 0, "an idle, fully-read connection counted as slow: {stats:?}");
}

// ---- unwritten() includes queued streams: our own slow head looks like a stalled reader -----

struct SlowHead {
    held: Option<WebRequest>,
    stream: Option<ResponseStream>,
}
struct Release;

impl Actor for SlowHead {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<WebRequest>() {
            Ok(req) if req.request().path() == "/slow" => self.held = Some(req),
            Ok(req) => {
                let mut s = req.respond_stream(Response::new(StatusCode::OK));
                s.send("tick");
                self.stream = Some(s);
            }
            Err(m) => {
                if m.downcast::<Release>().is_ok() {
                    if let Some(r) = self.held.take() {
                        r.respond(Response::text("slow done"));
                    }
                    if let Some(mut s) = self.stream.take() {
                        s.send("tock");
                        s.finish();
                    }
                }
            }
        }
        Ok(())
    }
}

#[test]
fn a_stream_waiting_behind_our_slow_handler_is_not_a_stalled_reader() {
    let n = node("rev28-slowhead");
    let pid = n
        .spawn_on(ShardId(0), || SlowHead { held: None, stream: None }, ProcessOptions::with_mailbox(16))
        .wait()
        .unwrap();
    let limits = HttpLimits { idle_timeout: Duration::from_millis(500), ..HttpLimits::default() };
    let server = serve_on(&n, Some(limits), WebHandler::to(pid));
    let mut c = connect(&server);
    c.write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\nGET /s HTTP/1.1\r\nhost: t\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    n.send(pid, Release).unwrap();
    let got = read_until(&mut c, "tock", Duration::from_secs(3));
    let stats = server.stats();
    n.stop();
    assert!(
        got.contains("slow done") && got.contains("tock"),
        "closed while waiting on our own handler: {got:?} {stats:?}"
    );
}

// ---- stats ------------------------------------------------------------------------------------

#[test]
fn the_open_connections_gauge_is_0_after_node_stop() {
    let n = node("rev28-stats");
    let server = serve_on(&n, None, hello);
    let mut c = connect(&server);
    c.write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").unwrap();
    let _ = read_until(&mut c, "hello", Duration::from_secs(5));
    assert_eq!(server.stats().connections, 1);
    n.stop();
    let mut buf = [0u8; 16];
    let closed = matches!(c.read(&mut buf), Ok(0) | Err(_));
    assert!(closed, "socket still open after stop");
    assert_eq!(server.stats().connections, 0, "gauge after stop: {:?}", server.stats());
    let _ = c.shutdown(Shutdown::Both);
}

struct SlowHeadReady {
    held: Option<WebRequest>,
}
impl Actor for SlowHeadReady {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<WebRequest>() {
            Ok(req) if req.request().path() == "/slow" => self.held = Some(req),
            Ok(req) => req.respond(Response::text("fast")),
            Err(m) => {
                if m.downcast::<Release>().is_ok()
                    && let Some(r) = self.held.take()
                {
                    r.respond(Response::text("slow done"));
                }
            }
        }
        Ok(())
    }
}

/// Same with a plain answer behind the slow head (pre-existing via ready_bytes?).
#[test]
fn an_answer_waiting_behind_our_slow_handler_is_not_a_stalled_reader() {
    let n = node("rev28-slowhead2");
    let pid = n.spawn_on(ShardId(0), || SlowHeadReady { held: None }, ProcessOptions::with_mailbox(16)).wait().unwrap();
    let limits = HttpLimits { idle_timeout: Duration::from_millis(500), ..HttpLimits::default() };
    let server = serve_on(&n, Some(limits), WebHandler::to(pid));
    let mut c = connect(&server);
    c.write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\nGET /f HTTP/1.1\r\nhost: t\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    n.send(pid, Release).unwrap();
    let got = read_until(&mut c, "fast", Duration::from_secs(3));
    let stats = server.stats();
    n.stop();
    assert!(
        got.contains("slow done") && got.contains("fast"),
        "closed while waiting on our own handler: {got:?} {stats:?}"
    );
}
