//! Review 50: the shard clock read again after user code, the late read before a 408, stop
//! write-on, supervisor children linked in `init`, HEAD lengths. Its failing tests, kept.
//! Every server started is stopped (with its node); every loop and read is bounded; a reader
//! keeps the bytes it read beyond the response it parses.

mod review_support;
mod support;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pinion::http::{HttpLimits, Request, Response};
use review_support::*;

// ---- 1. the late read before a 408 is not bounded: a slowloris lives on a busy shard ----------

/// `/slow` blocks its shard 50 ms (a plain function that takes its time); anything else is
/// answered at once.
fn slow_or_not(req: &Request) -> Response {
    if req.path() == "/slow" {
        std::thread::sleep(Duration::from_millis(50));
    }
    Response::text("ok")
}

/// A client whose head is due after 300 ms trickles a byte of it every 5 ms while two other
/// clients keep the shard busy with 50 ms handlers (each turn finds a request waiting). Its
/// timer fires at the first turn after the deadline, as before 12cc020 — but the late read
/// finds the byte that came during the last handler, the head still incomplete, and goes on
/// as if the deadline had been met: the timer is re-armed for the same deadline (now in the
/// past), fires at the next turn, reads the next byte, … The 408 never comes while the shard
/// stays busy: the head deadline is void for exactly the loaded server it protects.
#[test]
fn a_head_trickled_a_byte_per_turn_is_refused_408_on_a_busy_shard() {
    let node = start_node("r50-slowloris", 1);
    let limits = HttpLimits { header_read_timeout: Duration::from_millis(300), ..HttpLimits::default() };
    let server = serve_with(&node, limits, slow_or_not);
    let addr = server.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    // Two clients, one request in flight each: while one's handler blocks the shard, the
    // other's next request waits in its socket. Bounded: 120 requests each, or `stop`.
    let busy: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let mut n = 0;
                while n < 120 && !stop.load(Ordering::Relaxed) {
                    c.send(&get("/slow"));
                    let r = c.response();
                    assert_eq!(r.status, 200);
                    n += 1;
                }
                assert!(c.buf.is_empty(), "bytes after the answers: {:?}", c.buf);
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ").unwrap();
    let mut got = Vec::new();
    let mut refused_after = None;
    let mut buf = [0u8; 4096];
    // At most 600 bytes, 5 ms apart (3 s): well under `max_head_bytes`.
    for _ in 0..600 {
        if s.write_all(b"a").is_err() {
            refused_after = Some(start.elapsed());
            break;
        }
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        match s.read(&mut buf) {
            Ok(0) => {
                refused_after = Some(start.elapsed());
                break;
            }
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                refused_after = Some(start.elapsed());
                break;
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => {
                refused_after = Some(start.elapsed());
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let served: Vec<usize> = busy.into_iter().map(|t| t.join().expect("busy client")).collect();
    server.stop();
    node.stop();
    let refused_after = refused_after.expect("no 408 (nor close) in 3 s for a head due after 300 ms");
    assert!(
        refused_after < Duration::from_millis(1500),
        "a head due after 300 ms refused only after {refused_after:?} (busy clients served {served:?})"
    );
    eprintln!("refused after {refused_after:?}, served {served:?}");
    assert!(got.starts_with(b"HTTP/1.1 408"), "{:?}", String::from_utf8_lossy(&got));
}

// ---- 2. stop write-on: a stream cut behind another makes the stop wait for the first's cut bytes

use pinion::web::{ResponseStream, WebRequest, WebServer, WebServerOptions};
use pinion::{Actor, Context, ExitReason, Message, Node, NodeOptions, Pid, ProcessOptions, ShardId};
use std::sync::mpsc;

/// MiB sent on `/a`: more than the kernel's buffers take from a client that does not read,
/// less than a connection's bound for a stream's backlog (4 MiB unsent).
const A_MIB: usize = 6;

/// `/a`: a stream that sends `A_MIB` MiB and is kept open (cut when the process ends with the node);
/// `/b`: a stream dropped at once, unfinished (cut by its handler).
struct TwoStreams {
    kept: Vec<ResponseStream>,
    done: mpsc::Sender<&'static str>,
}

impl Actor for TwoStreams {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(req) = msg.downcast::<WebRequest>() {
            let mut s = req.respond_stream(Response::new(pinion::http::StatusCode::OK));
            if req_path_is_a(&s) {
                for _ in 0..A_MIB {
                    s.send(vec![b'a'; 1 << 20]);
                }
                self.kept.push(s);
                let _ = self.done.send("a");
            } else {
                drop(s);
                let _ = self.done.send("b");
            }
        }
        Ok(())
    }
}

thread_local! { static NEXT_IS_A: std::cell::Cell<bool> = const { std::cell::Cell::new(true) }; }

/// The worker gets `/a` then `/b` (in the order they were pipelined): the first is `/a`.
fn req_path_is_a(_: &ResponseStream) -> bool {
    NEXT_IS_A.with(|c| c.replace(false))
}

/// 5891e78: a stopping shard writes on (until `shutdown_timeout`) what is encoded and not yet
/// taken, "but not the bytes of a stream cut short" (`Outgoing::unsent_whole`: everything
/// from where the cut stream's bytes began). `Outgoing::cut` keeps the *first* stream cut,
/// in time: a stream pipelined behind another and cut by its handler (`/b`) is that one;
/// when the stop then cuts the stream ahead of it (`/a`, first in line, its bytes in `out`),
/// `cut` (b) is not the stream whose bytes are being written (a), so every unsent byte of
/// a's cut stream counts as a whole answer and the stop waits out the whole
/// `shutdown_timeout` for a client that does not read — what 5891e78 set out to avoid
/// (before it, `completes()` was false as soon as any stream was cut).
#[test]
fn a_stop_does_not_wait_for_a_cut_stream_when_a_later_one_was_cut_first() {
    let options = NodeOptions { shutdown_timeout: Duration::from_secs(8), ..support::options(1) };
    let node = Node::start("r50-two-cuts", options).unwrap();
    let (done, on_done) = mpsc::channel();
    let worker = node
        .handle()
        .spawn_on(ShardId(0), move || TwoStreams { kept: Vec::new(), done }, ProcessOptions::default())
        .wait()
        .unwrap();
    let so = WebServerOptions {
        shards: Some(vec![ShardId(0)]),
        ..WebServerOptions::new("127.0.0.1", 0, pinion::web::WebHandler::to(worker))
    };
    let server = WebServer::start(&node, so).expect("server starts");
    // A client that takes little and reads nothing until the stop is over.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&server.local_addr().into()).unwrap();
    let mut c: TcpStream = sock.into();
    c.write_all(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let order: Vec<&str> = (0..2).map(|_| on_done.recv_timeout(WAIT).expect("both handled")).collect();
    assert_eq!(order, ["a", "b"]);
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    support::within("Node::stop", Duration::from_secs(30), move || node.stop());
    let took = started.elapsed();
    drop(server);
    // What came before the close: a's head and some of its cut body (the client reads it now).
    c.set_read_timeout(Some(WAIT)).unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    for _ in 0..10_000 {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&got[..got.len().min(200)]));
    assert!(got.len() < A_MIB << 20, "the client got all of a's bytes ({}): nothing was left to wait for", got.len());
    assert!(took < Duration::from_secs(4), "Node::stop took {took:?} for the cut bytes of a stream");
}

// ---- 3. HEAD: a zero-length held body drops the handler's Content-Length ----------------------

/// 6e9d59e: "a HEAD answer without its body keeps the Content-Length its handler gives", and
/// `Response::header`'s docs say so of any "HEAD answer without a body" — but only
/// `Body::Empty` is looked at: the same answer built with an empty held body
/// (`.body(Vec::new())`, `Response::text("")`: nothing to send either way) is sent
/// `content-length: 0`, the length RFC 9110 §8.6 forbids unless the GET's is 0.
#[test]
fn a_head_answer_with_an_empty_held_body_keeps_the_handler_s_length() {
    fn doc(req: &Request) -> Response {
        if req.method() == pinion::http::Method::Head {
            return Response::new(pinion::http::StatusCode::OK).header("content-length", "1234").body(Vec::new());
        }
        Response::text("d".repeat(1234))
    }
    let node = start_node("r50-head-full0", 1);
    let server = serve_with(&node, HttpLimits::default(), doc);
    let mut c = Client::connect(server.local_addr());
    c.send(b"HEAD /doc HTTP/1.1\r\nHost: x\r\n\r\nGET /doc HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = c.head();
    let get = c.response();
    server.stop();
    node.stop();
    assert_eq!((head.status, get.status), (200, 200));
    assert_eq!(get.body.len(), 1234);
    assert_eq!(head.header("content-length"), get.header("content-length"), "HEAD head: {:?}", head.headers);
    assert!(c.buf.is_empty(), "bytes after the answers: {:?}", String::from_utf8_lossy(&c.buf));
}
