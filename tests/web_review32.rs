//! A review of `fb74ee9` (stream backlog, drain grace, rate limit before the body) and
//! `2e23ac2`: its failing tests (a drain grace that ended with the connection busy spun the
//! shard; a front stream's backlog counted the streams behind it; a sender off the
//! connection's shard read a stale backlog and was cut) and the cases it checked, kept.

mod review_support;

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pinion::Node;
use pinion::http::{HttpLimits, Request, Response};
use pinion::web::{Handler, ResponseStream, WebRequest, WebServer};
use review_support::*;

/// The tests here run one at a time: the spin tests read the whole process's CPU time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    lock(&SERIAL)
}

/// Keeps requests to `/hold*` and streams to `/stream*` for the test; answers the rest "hello".
#[derive(Default)]
struct Holder {
    held: Mutex<Vec<WebRequest>>,
    streams: Mutex<Vec<(String, ResponseStream)>>,
}

struct H(Arc<Holder>);

impl Handler for H {
    fn handle(&self, req: WebRequest) {
        let path = req.request().path().to_owned();
        if path == "/block" {
            // Keeps the shard busy for a while (other work on it).
            std::thread::sleep(Duration::from_millis(500));
            req.respond(Response::text("blocked"));
        } else if path == "/big" {
            req.respond(Response::text("b".repeat(16 << 20)));
        } else if path.starts_with("/hold") {
            lock(&self.0.held).push(req);
        } else if path.starts_with("/stream") {
            let s = req.respond_stream(Response::new(pinion::http::StatusCode(200)));
            lock(&self.0.streams).push((path, s));
        } else {
            req.respond(Response::text("hello"));
        }
    }
}

/// CPU time of this process (user + system), from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3; utime 14, stime 15 (1-based in proc(5)).
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// The process's CPU time and the wall time over one second, from 1.3 s after `drained` (the
/// drain's 1 s grace over).
fn cpu_after_the_grace(drained: Instant) -> (Duration, Duration) {
    std::thread::sleep(Duration::from_millis(1300).saturating_sub(drained.elapsed()));
    let (t0, cpu0) = (Instant::now(), cpu_time());
    std::thread::sleep(Duration::from_millis(1000));
    (cpu_time() - cpu0, t0.elapsed())
}

// ---- drain grace ------------------------------------------------------------------------------

/// A request that comes within the drain grace and is still being answered when the grace
/// ends: the connection's timer stays armed for the passed `drain_by`, so it fires every turn
/// and the shard spins until the answer is written (and the linger after it ends).
#[test]
fn drain_grace_passed_with_a_request_in_flight_does_not_spin_the_shard() {
    let _serial = serial();
    let drained = Instant::now();
    let (node, server, mut c, h) = idle_then_drain("r32-drain-spin", HttpLimits::default());
    std::thread::sleep(Duration::from_millis(100));
    c.send(&get("/hold"));
    wait_until("held", || lock(&h.held).len() == 1);
    // The grace (1 s) ends while the request is held.
    let (cpu, wall) = cpu_after_the_grace(drained);
    lock(&h.held).pop().unwrap().respond(Response::text("late"));
    let r = c.response();
    assert_eq!((r.text(), r.header("connection")), ("late".to_owned(), Some("close")), "{r:?}");
    c.assert_closed();
    wait_until("closed", || server.stats().connections == 0);
    node.stop();
    assert!(cpu < wall / 4, "the process burnt {cpu:?} of CPU in {wall:?} with one request held");
}

/// A head that is half in when the grace ends: answered (with close) once the rest comes, and
/// no spinning meanwhile.
#[test]
fn drain_grace_passed_with_a_head_half_read_does_not_spin_the_shard() {
    let _serial = serial();
    let drained = Instant::now();
    let (node, server, mut c, _) = idle_then_drain("r32-drain-spin-head", HttpLimits::default());
    std::thread::sleep(Duration::from_millis(800));
    c.send(b"GET / HTTP/1.1\r\nHo");
    let (cpu, wall) = cpu_after_the_grace(drained);
    c.send(b"st: x\r\n\r\n");
    let r = c.response();
    assert_eq!((r.text(), r.header("connection")), ("hello".to_owned(), Some("close")), "{r:?}");
    c.assert_closed();
    wait_until("closed", || server.stats().connections == 0);
    node.stop();
    assert!(cpu < wall / 4, "the process burnt {cpu:?} of CPU in {wall:?} with a head half read");
}

// ---- backlog ----------------------------------------------------------------------------------

/// Two streams pipelined on one connection: the second (behind) has 2 MiB queued and finished.
/// The first, in front, paces itself as `ResponseStream::backlog`'s docs show (wait while over
/// 1 MiB): its backlog counts the 2 MiB that wait behind it — bytes only its own end lets out —
/// so it waits forever, and so does the client.
#[test]
fn backlog_of_the_stream_in_front_does_not_count_the_streams_behind_it() {
    let _serial = serial();
    let node = start_node("r32-backlog-behind", 1);
    let h = Arc::new(Holder::default());
    let server = serve_with(&node, HttpLimits::default(), H(h.clone()));
    let mut c = Client::connect(server.local_addr());
    c.send(&[get("/stream-a"), get("/stream-b")].concat());
    wait_until("two streams", || lock(&h.streams).len() == 2);
    let mut streams = std::mem::take(&mut *lock(&h.streams));
    streams.sort_by(|x, y| x.0.cmp(&y.0));
    let (_, b) = streams.pop().unwrap();
    let (_, mut a) = streams.pop().unwrap();
    // Behind: 2 MiB at once, then its end (under the 4 MiB bound).
    let mut b = b;
    b.send(vec![b'b'; 2 << 20]);
    b.finish();
    // A reader that takes whatever comes.
    let reader = std::thread::spawn(move || {
        let mut got = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        c.s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        while let Ok(n) = c.s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got += n;
        }
        got
    });
    // In front: a first chunk, taken by the client at once; then 4 chunks of 64 KiB, paced as
    // documented (giving up after 3 s).
    a.send(b"first".to_vec());
    std::thread::sleep(Duration::from_millis(300));
    let seen = a.backlog();
    let start = Instant::now();
    let mut stuck = None;
    for _ in 0..4 {
        while a.backlog() > 1 << 20 && !a.is_closed() {
            if start.elapsed() > Duration::from_secs(3) {
                stuck = Some(a.backlog());
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        if stuck.is_some() {
            break;
        }
        a.send(vec![b'a'; 64 << 10]);
    }
    a.finish();
    let got = reader.join().unwrap();
    node.stop();
    assert_eq!(
        stuck, None,
        "the paced sender in front never saw its backlog fall (client read {got} bytes; backlog {seen} after its first chunk)"
    );
}

/// A sender off the connection's shard (a plain thread here; a worker on another shard alike)
/// paces itself as `backlog`'s docs show while the connection's shard is busy for a moment:
/// the chunks on their way to the shard are counted nowhere, the backlog reads 0 throughout,
/// the sender sends everything, and the connection, its client reading as fast as it can, is
/// cut as a slow client.
#[test]
fn backlog_paced_sender_is_not_cut_when_the_shard_is_busy() {
    let _serial = serial();
    let node = start_node("r32-backlog-busy", 1);
    let h = Arc::new(Holder::default());
    let server = serve_with(&node, HttpLimits::default(), H(h.clone()));
    let size = 16 << 20;
    let mut c = Client::connect(server.local_addr());
    c.send(&get("/stream"));
    wait_until("stream", || lock(&h.streams).len() == 1);
    let (_, mut s) = lock(&h.streams).pop().unwrap();
    s.send(b"first".to_vec());
    std::thread::sleep(Duration::from_millis(100));
    // Another client's request keeps the (one) shard busy for 500 ms.
    let mut other = Client::connect(server.local_addr());
    other.send(&get("/block"));
    std::thread::sleep(Duration::from_millis(100));
    let sender = std::thread::spawn(move || {
        let mut sent = 0;
        let mut max_seen = 0;
        while sent < size && !s.is_closed() {
            while s.backlog() > 1 << 20 && !s.is_closed() {
                std::thread::sleep(Duration::from_millis(1));
            }
            max_seen = max_seen.max(s.backlog());
            s.send(vec![b's'; 256 << 10]);
            sent += 256 << 10;
        }
        let closed = s.is_closed();
        s.finish();
        (closed, max_seen)
    });
    // The client takes a breath (well within any timeout: 1.5 s), then reads as fast as it
    // can, until the end (the chunked body's last chunk) or EOF. A sender that paces itself
    // waits meanwhile, with at most about 1 MiB (plus the socket's buffers) on its way.
    std::thread::sleep(Duration::from_millis(1500));
    let sender_done_before_the_client_read = sender.is_finished();
    let mut got = 0usize;
    let mut tail = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match c.s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                got += n;
                tail.extend_from_slice(&buf[..n]);
                let keep = tail.len().saturating_sub(5);
                tail.drain(..keep);
                if tail == b"0\r\n\r\n" {
                    break;
                }
            }
        }
    }
    let (closed, max_seen) = sender.join().unwrap();
    assert_eq!(other.response().text(), "blocked");
    eprintln!("sender done before the client read: {sender_done_before_the_client_read}");
    let slow = server.stats().slow_clients;
    node.stop();
    assert_eq!((got >= size, closed, slow), (true, false, 0), "read {got} bytes; max backlog seen {max_seen}");
}

// ---- drain grace: cases checked ---------------------------------------------------------------

fn idle_then_drain(name: &str, limits: HttpLimits) -> (Node, WebServer, Client, Arc<Holder>) {
    let node = start_node(name, 1);
    let h = Arc::new(Holder::default());
    let server = serve_with(&node, limits, H(h.clone()));
    let mut c = Client::connect(server.local_addr());
    c.send(&get("/"));
    assert_eq!(c.response().text(), "hello");
    server.drain();
    (node, server, c, h)
}

#[test]
fn drain_grace_pipelined_burst_answers_the_first_with_close() {
    let _serial = serial();
    let (node, server, mut c, _h) = idle_then_drain("r32-g-burst", HttpLimits::default());
    std::thread::sleep(Duration::from_millis(100));
    c.send(&[get("/a"), get("/b"), get("/c")].concat());
    let r = c.response();
    assert_eq!((r.text(), r.header("connection")), ("hello".to_owned(), Some("close")), "{r:?}");
    c.assert_closed();
    wait_until("closed", || server.stats().connections == 0);
    node.stop();
}

#[test]
fn drain_grace_expect_continue() {
    let _serial = serial();
    let (node, server, mut c, _h) = idle_then_drain("r32-g-expect", HttpLimits::default());
    std::thread::sleep(Duration::from_millis(100));
    c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let r = c.head();
    assert_eq!(r.status, 100, "{r:?}");
    c.send(b"12345");
    let r = c.response();
    assert_eq!((r.status, r.header("connection")), (200, Some("close")), "{r:?}");
    c.assert_closed();
    wait_until("closed", || server.stats().connections == 0);
    node.stop();
}

#[test]
fn drain_grace_shorter_idle_timeout_and_nothing_sent() {
    let _serial = serial();
    let limits = HttpLimits { idle_timeout: Duration::from_millis(300), ..HttpLimits::default() };
    let t = Instant::now();
    let (node, server, mut c, _h) = idle_then_drain("r32-g-idle", limits);
    c.assert_closed();
    assert!(t.elapsed() < Duration::from_millis(900), "{:?}", t.elapsed());
    wait_until("closed", || server.stats().connections == 0);
    let t = Instant::now();
    node.stop();
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn drain_grace_nothing_sent_closes_after_about_a_second() {
    let _serial = serial();
    let t = Instant::now();
    let (node, server, mut c, _h) = idle_then_drain("r32-g-none", HttpLimits::default());
    c.assert_closed();
    let e = t.elapsed();
    assert!(e >= Duration::from_millis(900) && e < Duration::from_millis(2000), "{e:?}");
    wait_until("closed", || server.stats().connections == 0);
    node.stop();
}

#[test]
fn drain_grace_node_stop_during_it() {
    let _serial = serial();
    let (node, server, mut c, _h) = idle_then_drain("r32-g-stop", HttpLimits::default());
    let t = Instant::now();
    node.stop();
    c.assert_closed();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(server.stats().connections, 0);
}

// ---- written_fits / backlog: cases checked ----------------------------------------------------

#[test]
fn http10_stream_of_one_5mb_chunk_reaches_a_reader() {
    let _serial = serial();
    let node = start_node("r32-w-10", 1);
    let h = Arc::new(Holder::default());
    let server = serve_with(&node, HttpLimits::default(), H(h.clone()));
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /stream HTTP/1.0\r\n\r\n");
    wait_until("stream", || lock(&h.streams).len() == 1);
    let (_, mut s) = lock(&h.streams).pop().unwrap();
    s.send(vec![b'x'; 5_000_000]);
    s.finish();
    let mut all = Vec::new();
    c.s.read_to_end(&mut all).unwrap();
    let body_at = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!(all.len() - body_at, 5_000_000);
    assert_eq!(server.stats().slow_clients, 0);
    node.stop();
}

#[test]
fn backlog_of_a_stream_behind_a_held_request_falls_once_it_is_first() {
    let _serial = serial();
    let node = start_node("r32-w-behind", 1);
    let h = Arc::new(Holder::default());
    let server = serve_with(&node, HttpLimits::default(), H(h.clone()));
    let mut c = Client::connect(server.local_addr());
    c.send(&[get("/hold"), get("/stream")].concat());
    wait_until("stream", || lock(&h.streams).len() == 1 && lock(&h.held).len() == 1);
    let (_, mut s) = lock(&h.streams).pop().unwrap();
    s.send(vec![b'x'; 2 << 20]);
    wait_until("backlog behind", || s.backlog() >= 2 << 20);
    lock(&h.held).pop().unwrap().respond(Response::text("held"));
    let reader = std::thread::spawn(move || {
        let mut n = 0;
        let mut buf = vec![0u8; 1 << 16];
        c.s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        while let Ok(k) = c.s.read(&mut buf) {
            if k == 0 {
                break;
            }
            n += k;
        }
        n
    });
    wait_until("backlog 0 once first and read", || s.backlog() == 0);
    s.finish();
    let _ = reader.join();
    node.stop();
}

#[test]
fn backlog_is_0_and_closed_after_the_connection_closes() {
    let _serial = serial();
    let node = start_node("r32-w-closed", 1);
    let h = Arc::new(Holder::default());
    let server = serve_with(&node, HttpLimits::default(), H(h.clone()));
    let mut c = Client::connect(server.local_addr());
    c.send(&get("/stream"));
    wait_until("stream", || lock(&h.streams).len() == 1);
    let (_, mut s) = lock(&h.streams).pop().unwrap();
    // Client reads nothing: a backlog builds.
    for _ in 0..200 {
        s.send(vec![b'x'; 256 << 10]);
        std::thread::sleep(Duration::from_millis(20));
        if s.backlog() > 0 {
            break;
        }
    }
    assert!(s.backlog() > 0 && !s.is_closed(), "{} {}", s.backlog(), s.is_closed());
    drop(c);
    wait_until("closed", || s.is_closed());
    assert_eq!(s.backlog(), 0);
    wait_until("conn gone", || server.stats().connections == 0);
    node.stop();
}

// ---- rate_limit check_head: cases checked -----------------------------------------------------

#[test]
fn rate_limit_check_head_agrees_with_handle_keyless_keyed_and_table_full() {
    let _serial = serial();
    use pinion::http::Method;
    use pinion::web::{Layer, answer_at_once, rate_limit};
    let ok = |_: &Request| Response::text("ok");
    let limited =
        rate_limit(1, 2).keyed_by(|r: &Request| r.header("x-k").map(std::borrow::Cow::Borrowed)).wrap(Arc::new(ok));
    let req = |k: Option<&str>| {
        let r = Request::new(Method::Post, "/");
        match k {
            Some(k) => r.with_header("x-k", k),
            None => r,
        }
    };
    let status = |k: Option<&str>| answer_at_once(&*limited, req(k)).unwrap().status.0;
    let head = |k: Option<&str>| limited.check_head(&req(k)).map(|r| r.status.0);
    // Asking the head many times takes nothing.
    for _ in 0..10 {
        assert_eq!((head(None), head(Some("a"))), (None, None));
    }
    assert_eq!((status(None), status(None), status(None)), (200, 200, 429));
    assert_eq!(head(None), Some(429));
    assert_eq!((status(Some("a")), status(Some("a")), head(Some("a")), status(Some("a"))), (200, 200, Some(429), 429));
    // Fill the key table (every key with a token taken: none can be forgotten for a second).
    for i in 0..pinion::web::MAX_RATE_KEYS * 2 {
        let _ = status(Some(&format!("k{i}")));
    }
    // A new key now shares the keyless bucket (spent): both say 429.
    assert_eq!((head(Some("new")), status(Some("new"))), (Some(429), 429));
}

/// A client still taking a big answer (16 MiB, it pauses) when the server drains: idle by the
/// codec, it gets the grace; once the grace is over, the timer fires every turn until the
/// client has taken everything (up to `idle_timeout`, 75 s by default, for a stalled one).
#[test]
fn drain_grace_passed_with_an_answer_still_unsent_does_not_spin_the_shard() {
    let _serial = serial();
    let node = start_node("r32-drain-spin-unsent", 1);
    let h = Arc::new(Holder::default());
    let server = serve_with(&node, HttpLimits::default(), H(h.clone()));
    let mut c = Client::connect(server.local_addr());
    c.send(&get("/big"));
    std::thread::sleep(Duration::from_millis(300));
    let drained = Instant::now();
    server.drain();
    let (cpu, wall) = cpu_after_the_grace(drained);
    let r = c.response();
    assert_eq!(r.body.len(), 16 << 20);
    c.assert_closed();
    wait_until("closed", || server.stats().connections == 0);
    node.stop();
    assert!(cpu < wall / 4, "the process burnt {cpu:?} of CPU in {wall:?} with an answer unsent");
}

// ---- 2e23ac2: body_limit on a route with parameters -------------------------------------------

#[test]
fn body_limit_of_a_route_with_parameters_still_bounds_and_check_head_sees_them() {
    let _serial = serial();
    use pinion::web::{Layer, Router, body_limit};
    let node = start_node("r32-router-params", 1);
    let echo = |r: &Request| Response::text(format!("{} {}", r.param("id").unwrap_or("?"), r.body().len()));
    let router = Router::new().post("/u/{id}", body_limit(10).wrap(Arc::new(echo)));
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST /u/7 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n12345");
    assert_eq!(c.response().text(), "7 5");
    c.send(b"POST /u/7 HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n");
    assert_eq!(c.response().status, 413);
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST /u/8 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.head().status, 100);
    c.send(b"12345");
    assert_eq!(c.response().text(), "8 5");
    node.stop();
}
