//! Review 73: resource exhaustion by hostile clients, over real sockets. What a client that
//! never reads, trickles, or opens and holds connections can make the server keep, and the
//! bound that ends it. Memory is the counting allocator's live bytes (the server runs in this
//! process); the tests that measure it run one at a time (`MEASURE`). Nodes of 1 shard; every
//! wait is bounded (a hang fails, nothing asserts on timing).

mod counting;
mod review_support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pinion::http::{HttpLimits, Request, Response};
use pinion::web::{Router, WebHandler, WebHandlerOptions, WebServer, WebWorker};
use pinion::{Context, Node, Pid, Pool, PoolOptions, ProcessOptions};
use review_support::{Client, WAIT, get, lock, serve_with, start_node, wait_until};

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

static MEASURE: Mutex<()> = Mutex::new(());

const MIB: i64 = 1 << 20;

/// Live bytes now: the least of a few reads (a shard may be finishing a turn).
fn live() -> i64 {
    (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(20));
            counting::live()
        })
        .min()
        .unwrap()
}

/// Writes `block` over and over, never reading, for at most `time` or `total` bytes: the
/// bytes the server took (into its socket buffer and beyond).
fn flood(s: &mut TcpStream, block: &[u8], total: usize, time: Duration) -> usize {
    s.set_write_timeout(Some(Duration::from_millis(100))).unwrap();
    let end = Instant::now() + time;
    let mut sent = 0;
    while sent < total && Instant::now() < end {
        let at = sent % block.len();
        match s.write(&block[at..]) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("write: {e}"),
        }
    }
    sent
}

/// `n` copies of `req`, back to back.
fn repeat(req: &[u8], n: usize) -> Vec<u8> {
    req.iter().copied().cycle().take(req.len() * n).collect()
}

/// GETs of a big answer answered, all tests together.
static ANSWERED: AtomicUsize = AtomicUsize::new(0);

/// Answers every request with `size` bytes (an actor's answer, after the dispatch).
struct Big(usize);

impl WebWorker for Big {
    async fn handle_get(&mut self, _: &mut Context, _: &Request) -> Response {
        ANSWERED.fetch_add(1, Ordering::SeqCst);
        Response::text("").body(vec![b'x'; self.0])
    }
    async fn handle_post(&mut self, _: &mut Context, req: &Request) -> Response {
        Response::text(format!("{}", req.body().len()))
    }
}

/// A node of one shard and a server whose requests go to a pool of `workers` [`Big`]s.
fn pool_server(name: &str, workers: usize, size: usize, limits: HttpLimits) -> (Node, WebServer, Pid) {
    let node = start_node(name, 1);
    let options = PoolOptions::new(workers, 128, move || Big(size));
    let pool = node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let handler = WebHandler::new(WebHandlerOptions { request_timeout: WAIT, ..WebHandlerOptions::new(pool) });
    let server = serve_with(&node, limits, handler);
    (node, server, pool)
}

// ---- a client that never reads ----------------------------------------------------------------

/// 200 000 pipelined GETs (and more) to a plain-function handler from a client that never
/// reads: the connection stops reading once its bounds are reached (`max_in_flight`, what
/// waits to be written), so neither the bytes it takes nor the memory it holds grow with the
/// flood; once the client reads, every request it sent is answered, in order.
#[test]
fn pipelined_gets_never_read_stop_the_reading_and_all_are_answered_once_read() {
    let _one = lock(&MEASURE);
    let node = start_node("r73-never-read", 1);
    let server = serve_with(&node, HttpLimits::default(), Router::new().get("/", |_: &Request| Response::text("hi")));
    let before = live();
    let mut c = Client::connect(server.local_addr());
    let req = get("/");
    let block = repeat(&req, 200_000);
    let sent = flood(&mut c.s, &block, 64 << 20, Duration::from_secs(3));
    let held = live() - before;
    assert!(sent < 32 << 20, "the server took {} MiB from a client that reads nothing", sent >> 20);
    assert!(held < 16 * MIB, "the server holds {} MiB for a client that reads nothing", held / MIB);
    // The rest of a request cut midway, written while the answers are read.
    let whole = sent / req.len();
    let rest = req[sent % req.len()..].to_vec();
    let mut w = c.s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.set_write_timeout(Some(WAIT)).unwrap();
        w.write_all(&rest).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let n = whole + usize::from(!sent.is_multiple_of(req.len()));
    for i in 0..n {
        let r = c.response();
        assert_eq!((r.status, r.text().as_str()), (200, "hi"), "answer {i} of {n}");
    }
    writer.join().unwrap();
    c.assert_closed();
    server.stop();
    node.stop();
}

/// Pipelined GETs of a 1 MiB answer through a pool, from a client that never reads: what the
/// server holds is bounded by `max_in_flight` answers (64 MiB), not by how many requests the
/// client sends (10 000 here, all taken into the socket's buffer).
#[test]
fn pipelined_big_answers_through_a_pool_never_read_hold_at_most_max_in_flight_answers() {
    let _one = lock(&MEASURE);
    let (node, server, pool) = pool_server("r73-big-never-read", 4, 1 << 20, HttpLimits::default());
    let before = live();
    let answered = ANSWERED.load(Ordering::SeqCst);
    let mut c = Client::connect(server.local_addr());
    let block = repeat(&get("/big"), 10_000);
    flood(&mut c.s, &block, block.len(), Duration::from_secs(3));
    let pool = node.handle().pool(pool).expect("a pool");
    wait_until("64 requests handled", || ANSWERED.load(Ordering::SeqCst) >= answered + 64 && pool.info().held == 0);
    let held = live() - before;
    assert!(held < 80 * MIB, "the server holds {} MiB for a client that reads nothing", held / MIB);
    assert_eq!(ANSWERED.load(Ordering::SeqCst), answered + 64, "requests past max_in_flight were handed out");
    drop(c);
    server.stop();
    node.stop();
}

/// The same from several connections at once: whole answers waiting for clients that take
/// nothing count in the shard's bound (`max_stream_bytes_per_shard`, here 16 MiB) once a
/// connection holds more than 4 MiB of them: past it the connections holding the most are
/// cut as slow clients, so what the shard holds stays near the bound (and the one
/// connection it spares: see `a_lone_reader_of_an_answer_larger_than_the_shards_bound_gets_it_all`),
/// not connections × the answers each asked for (6 × 32 MiB here).
#[test]
fn pipelined_big_answers_never_read_on_many_connections_are_bounded_per_shard() {
    let _one = lock(&MEASURE);
    let limits = HttpLimits { max_stream_bytes_per_shard: 16 << 20, ..HttpLimits::default() };
    let (node, server, pool) = pool_server("r73-big-many", 4, 1 << 20, limits);
    let before = live();
    let answered = ANSWERED.load(Ordering::SeqCst);
    let mut clients: Vec<Client> = (0..6).map(|_| Client::connect(server.local_addr())).collect();
    let burst = repeat(&get("/big"), 32);
    for c in &mut clients {
        c.send(&burst);
    }
    let pool = node.handle().pool(pool).expect("a pool");
    wait_until("every request handled", || {
        ANSWERED.load(Ordering::SeqCst) >= answered + 6 * 32 && pool.info().held == 0
    });
    let held = live() - before;
    assert!(held < 64 * MIB, "the shard holds {} MiB for 6 clients that read nothing", held / MIB);
    assert!(server.stats().slow_clients > 0, "{:?}", server.stats());
    // A client cut gets less than its 32 answers, then the end.
    let mut cut = 0;
    for c in &mut clients {
        let mut got = 0;
        while got < 32 << 20 {
            match c.fill() {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
            c.buf.clear();
        }
        cut += usize::from(got < 32 << 20);
    }
    assert!(cut > 0);
    server.stop();
    node.stop();
}

/// One answer larger than the shard's bound, to a client that reads it (slowly): the lone
/// connection over the bound is spared (a download from memory is the server's own choice of
/// size; the bound is for what many clients hold together), so the client gets it whole.
#[test]
fn a_lone_reader_of_an_answer_larger_than_the_shards_bound_gets_it_all() {
    let node = start_node("r73-lone-big", 1);
    let limits = HttpLimits { max_stream_bytes_per_shard: 8 << 20, ..HttpLimits::default() };
    let router = Router::new().get("/", |_: &Request| Response::text("").body(vec![b'x'; 24 << 20]));
    let server = serve_with(&node, limits, router);
    let mut c = Client::connect(server.local_addr());
    c.send(&repeat(&get("/"), 2));
    for i in 0..2 {
        let mut r = c.head();
        assert_eq!(r.status, 200, "answer {i}");
        while c.buf.len() < 24 << 20 {
            std::thread::sleep(Duration::from_millis(1));
            c.need("a body");
        }
        c.body_of(&mut r);
        assert_eq!(r.body.len(), 24 << 20, "answer {i}");
    }
    assert_eq!(server.stats().slow_clients, 0);
    server.stop();
    node.stop();
}

/// Many connections each holding a head just short of `max_head_bytes` (16 KiB): each holds
/// about its head's bytes (a read buffer of at most twice the bound), and the bytes that take
/// one past the bound are refused 431, the connection closed.
#[test]
fn partial_heads_just_under_the_bound_hold_about_their_bytes_and_one_byte_more_is_431() {
    let _one = lock(&MEASURE);
    let node = start_node("r73-partial-heads", 1);
    let server = serve_with(&node, HttpLimits::default(), Router::new().get("/", |_: &Request| Response::text("hi")));
    let before = live();
    let mut head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ".to_vec();
    head.resize(16 * 1024 - 64, b'a');
    let mut clients: Vec<Client> = (0..200).map(|_| Client::connect(server.local_addr())).collect();
    for c in &mut clients {
        c.send(&head);
    }
    wait_until("every connection open", || server.stats().connections == 200);
    std::thread::sleep(Duration::from_millis(200));
    let held = live() - before;
    assert!(held < 200 * (64 << 10), "200 partial heads of 16 KiB hold {} KiB", held >> 10);
    for c in &mut clients {
        c.send(&[b'a'; 1024]);
        assert_eq!(c.response().status, 431);
        c.assert_closed();
    }
    wait_until("every connection closed", || server.stats().connections == 0);
    server.stop();
    node.stop();
}

/// A client that reads, slowly, answers that wait for it within the shard's bound gets every
/// one of them: only what is past the bound is cut.
#[test]
fn a_slow_reader_of_pipelined_answers_within_the_shards_bound_gets_them_all() {
    let limits = HttpLimits { max_stream_bytes_per_shard: 16 << 20, ..HttpLimits::default() };
    let (node, server, _) = pool_server("r73-slow-reader", 4, 1 << 20, limits);
    let mut c = Client::connect(server.local_addr());
    c.send(&repeat(&get("/big"), 12));
    for i in 0..12 {
        let mut r = c.head();
        assert_eq!(r.status, 200, "answer {i}");
        let len: usize = r.header("content-length").expect("a length").parse().unwrap();
        while c.buf.len() < len {
            std::thread::sleep(Duration::from_millis(2));
            c.need("a body");
        }
        c.body_of(&mut r);
        assert!(r.body.len() == 1 << 20 && r.body.iter().all(|&b| b == b'x'), "answer {i}");
    }
    assert_eq!(server.stats().slow_clients, 0);
    server.stop();
    node.stop();
}

/// No pipelining needed: one GET each of a 32 MiB answer from a plain function, from clients
/// that read nothing, is held within the shard's bound too (6 × 32 MiB before).
#[test]
fn big_answers_never_read_on_many_connections_are_bounded_per_shard() {
    let _one = lock(&MEASURE);
    let node = start_node("r73-big-sync", 1);
    let limits = HttpLimits { max_stream_bytes_per_shard: 16 << 20, ..HttpLimits::default() };
    let router = Router::new().get("/", |_: &Request| {
        ANSWERED.fetch_add(1, Ordering::SeqCst);
        Response::text("").body(vec![b'x'; 32 << 20])
    });
    let server = serve_with(&node, limits, router);
    let before = live();
    let answered = ANSWERED.load(Ordering::SeqCst);
    let mut clients: Vec<Client> = (0..6).map(|_| Client::connect(server.local_addr())).collect();
    for c in &mut clients {
        c.send(&get("/"));
    }
    wait_until("every request handled", || ANSWERED.load(Ordering::SeqCst) >= answered + 6);
    let held = live() - before;
    assert!(held < 64 * MIB, "the shard holds {} MiB for 6 clients that read nothing", held / MIB);
    assert!(server.stats().slow_clients > 0, "{:?}", server.stats());
    server.stop();
    node.stop();
}

// ---- trickles and silence -----------------------------------------------------------------------

fn short(f: impl FnOnce(&mut HttpLimits)) -> HttpLimits {
    let mut l = HttpLimits {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    };
    f(&mut l);
    l
}

/// Writes `bytes` one at a time every `every` until the server closes (a write fails or
/// `read` sees the end) or `limit` passes: whether it closed, and what it sent back.
fn trickle(c: &mut Client, bytes: &[u8], every: Duration, limit: Duration) -> (bool, Vec<u8>) {
    c.s.set_read_timeout(Some(every)).unwrap();
    let end = Instant::now() + limit;
    let mut got = Vec::new();
    let mut i = 0;
    while Instant::now() < end {
        if c.s.write_all(&bytes[i % bytes.len()..][..1]).is_err() {
            break;
        }
        i += 1;
        let mut b = [0u8; 4096];
        match c.s.read(&mut b) {
            Ok(0) => return (true, got),
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (true, got),
        }
    }
    // Closed by now, if the server closed it: the end (or a reset) comes, not a timeout.
    c.s.set_read_timeout(Some(WAIT)).unwrap();
    let mut rest = Vec::new();
    let closed = match c.s.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    };
    got.extend(rest);
    (closed, got)
}

/// Empty lines trickled between requests (RFC 9112 §2.2 lets a server skip them): they do not
/// keep an idle connection open past its idle timeout, nor a head past its header timeout.
#[test]
fn empty_lines_trickled_after_a_request_do_not_hold_the_connection() {
    let node = start_node("r73-crlf", 1);
    let server = serve_with(&node, short(|_| {}), Router::new().get("/", |_: &Request| Response::text("hi")));
    let mut c = Client::connect(server.local_addr());
    c.send(&get("/"));
    assert_eq!(c.response().text(), "hi");
    let (closed, got) = trickle(&mut c, b"\r\n", Duration::from_millis(50), Duration::from_secs(4));
    assert!(closed, "empty lines kept the connection open for 4 s");
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got:?}");
    wait_until("the connection closed", || server.stats().connections == 0);
    server.stop();
    node.stop();
}

/// A chunked body whose framing is trickled (chunk extension bytes: no body byte ever comes)
/// is cut at the body timeout: 408, then closed.
#[test]
fn a_chunk_extension_trickled_is_cut_at_the_body_timeout() {
    let node = start_node("r73-chunk-ext", 1);
    let server = serve_with(
        &node,
        short(|_| {}),
        Router::new().post("/", |r: &Request| Response::text(format!("{}", r.body().len()))),
    );
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;");
    let (closed, got) = trickle(&mut c, b"abcdefgh", Duration::from_millis(50), Duration::from_secs(4));
    assert!(closed, "a trickled chunk extension kept the connection open for 4 s");
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    server.stop();
    node.stop();
}

/// A chunked body of one-byte chunks trickled well below `min_body_rate` is cut: 408, closed.
#[test]
fn a_chunked_body_trickled_is_cut_at_the_body_timeout() {
    let node = start_node("r73-chunk-trickle", 1);
    let server = serve_with(
        &node,
        short(|_| {}),
        Router::new().post("/", |r: &Request| Response::text(format!("{}", r.body().len()))),
    );
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    let (closed, got) = trickle(&mut c, b"1\r\nz\r\n", Duration::from_millis(20), Duration::from_secs(4));
    assert!(closed, "a trickled chunked body kept the connection open for 4 s");
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(got.starts_with("HTTP/1.1 408"), "{got:?}");
    server.stop();
    node.stop();
}

/// `Expect: 100-continue`, the `100` received, then nothing: 408 at the body timeout, closed.
#[test]
fn expect_continue_then_nothing_is_408_then_closed() {
    let node = start_node("r73-expect-nothing", 1);
    let server = serve_with(
        &node,
        short(|_| {}),
        Router::new().post("/", |r: &Request| Response::text(format!("{}", r.body().len()))),
    );
    let mut c = Client::connect(server.local_addr());
    c.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(c.head().status, 100);
    let r = c.response();
    assert_eq!(r.status, 408);
    c.assert_closed();
    wait_until("the connection closed", || server.stats().connections == 0);
    server.stop();
    node.stop();
}

/// Connections at the shard's cap, half of them silent from the start and half idle after a
/// request: the one past the cap gets 503 and is closed; the idle timeout closes them all,
/// and then a new client is served.
#[test]
fn an_idle_flood_at_the_cap_is_cleared_by_the_idle_timeout() {
    let node = start_node("r73-idle-flood", 1);
    let limits = short(|l| l.max_connections_per_shard = 100);
    let server = serve_with(&node, limits, Router::new().get("/", |_: &Request| Response::text("hi")));
    let addr = server.local_addr();
    let mut held: Vec<Client> = Vec::new();
    for i in 0..100 {
        let mut c = Client::connect(addr);
        if i % 2 == 1 {
            c.send(&get("/"));
            assert_eq!(c.response().text(), "hi");
        }
        held.push(c);
    }
    wait_until("100 connections open", || server.stats().connections == 100);
    let mut over = Client::connect(addr);
    assert_eq!(over.response().status, 503);
    over.assert_closed();
    for c in &mut held {
        c.assert_closed();
    }
    wait_until("every connection closed", || server.stats().connections == 0);
    let mut c = Client::connect(addr);
    c.send(&get("/"));
    assert_eq!(c.response().text(), "hi");
    server.stop();
    node.stop();
}

// ---- pipelined bodies ---------------------------------------------------------------------------

/// 20 000 tiny pipelined POSTs through a pool, `max_in_flight` 4, the client half-closing after
/// the burst: every one is answered, in order, then the connection closes.
#[test]
fn pipelined_posts_through_a_pool_then_half_close_are_all_answered_then_closed() {
    let limits = HttpLimits { max_in_flight: 4, ..HttpLimits::default() };
    let (node, server, _) = pool_server("r73-posts", 4, 0, limits);
    let mut c = Client::connect(server.local_addr());
    let n = 20_000;
    let mut burst = Vec::new();
    for i in 0..n {
        let body = "p".repeat(i % 7);
        burst.extend(format!("POST /{i} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).bytes());
    }
    let mut w = c.s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        w.set_write_timeout(Some(WAIT)).unwrap();
        w.write_all(&burst).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    for i in 0..n {
        let r = c.response();
        assert_eq!((r.status, r.text()), (200, format!("{}", i % 7)), "answer {i}");
    }
    writer.join().unwrap();
    c.assert_closed();
    server.stop();
    node.stop();
}

/// Past the shard's cap, clients that send their request at once (as curl does) get the 503
/// and then the end of the connection, not a reset: what they sent is read off before the
/// close (before, about 6 in 10 got a reset after the 503, which a client may see first and
/// lose the answer to).
#[test]
fn past_the_cap_a_client_that_sent_its_request_gets_503_then_the_end_not_a_reset() {
    let node = start_node("r73-cap-reset", 1);
    let limits = HttpLimits { max_connections_per_shard: 1, ..HttpLimits::default() };
    let server = serve_with(&node, limits, Router::new().get("/", |_: &Request| Response::text("hi")));
    let mut held = Client::connect(server.local_addr());
    held.send(&get("/"));
    assert_eq!(held.response().text(), "hi");
    for i in 0..100 {
        let mut c = Client::connect(server.local_addr());
        c.send(&get("/"));
        let mut all = Vec::new();
        let end = c.s.read_to_end(&mut all);
        let all = String::from_utf8_lossy(&all);
        assert!(all.starts_with("HTTP/1.1 503"), "client {i}: {all:?}");
        assert!(end.is_ok(), "client {i}: {end:?} after {all:?}");
    }
    assert_eq!(server.stats().over_capacity, 100);
    held.send(&get("/"));
    assert_eq!(held.response().text(), "hi");
    server.stop();
    node.stop();
}
