//! Review 39: the hardening commits 59d3f70 (min_body_rate credit capped), 390ab39 + 96fc373
//! (max_body_bytes_per_shard), daa2b56 (max_connections_per_client), 61e44bf (unregister).
//! Every wait is bounded; counts are asserted, times only as generous bounds.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use pinion::http::{HttpLimits, Request, Response, StatusCode};
use pinion::web::{WebServer, WebServerOptions};
use support::{CALL_TIMEOUT, node, wait_until};

fn start(node: &pinion::Node, limits: HttpLimits) -> WebServer {
    let handler = |r: &Request| Response::text(format!("{} bytes", r.body().len()));
    WebServer::start(node, WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, handler) })
        .expect("server")
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(CALL_TIMEOUT)).expect("timeout");
    s
}

/// Reads one answer's head and body (framed by `Content-Length`).
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
                return text[..end + 4 + len].to_owned();
            }
        }
        match s.read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading an answer: {e}; so far {:?}", String::from_utf8_lossy(&got)),
        }
    }
}

fn post_head(len: usize) -> Vec<u8> {
    format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n").into_bytes()
}

// ---------------------------------------------------------------------------------------
// max_body_bytes_per_shard

/// A body half read when the node stops: the connection ends with its shard (dropped, not
/// closed). The gauge must not keep its bytes (as `connections` does not keep it).
#[test]
fn body_bytes_is_0_after_node_stop_with_a_body_half_read() {
    let node = node("review39-stop-body", 1);
    let server = start(&node, HttpLimits::default());
    let mut s = connect(server.local_addr());
    s.write_all(&post_head(100_000)).expect("head");
    s.write_all(&[b'a'; 40_000]).expect("part of the body");
    wait_until("the half body counted", || server.stats().body_bytes == 40_000);
    node.stop();
    let stats = server.stats();
    assert_eq!(stats.connections, 0, "{stats:?}");
    assert_eq!(stats.body_bytes, 0, "gauge after stop: {stats:?}");
}

/// Several connections on one shard, bodies pipelined: the gauge is the sum of the bodies
/// being read, each request's share leaves as it completes; 0 once all are done.
#[test]
fn body_bytes_sums_connections_and_pipelined_bodies() {
    let node = node("review39-sum", 1);
    let server = start(&node, HttpLimits::default());
    let addr = server.local_addr();
    let mut a = connect(addr);
    let mut b = connect(addr);
    // a: one whole request and 3000 bytes of the next, in one write.
    let mut first = post_head(5000);
    first.extend_from_slice(&[b'x'; 5000]);
    first.extend_from_slice(&post_head(10_000));
    first.extend_from_slice(&[b'y'; 3000]);
    a.write_all(&first).expect("a");
    assert!(answer_on(&mut a).ends_with("5000 bytes"));
    b.write_all(&post_head(8000)).expect("b head");
    b.write_all(&[b'z'; 2000]).expect("b part");
    wait_until("both partial bodies counted", || server.stats().body_bytes == 5000);
    a.write_all(&[b'y'; 7000]).expect("a rest");
    assert!(answer_on(&mut a).ends_with("10000 bytes"));
    wait_until("only b counted", || server.stats().body_bytes == 2000);
    b.write_all(&[b'z'; 6000]).expect("b rest");
    assert!(answer_on(&mut b).ends_with("8000 bytes"));
    assert_eq!(server.stats().body_bytes, 0);
    node.stop();
}

/// Bodies held together exactly at the bound: neither is refused; a single body exactly the
/// size of the bound is accepted too.
#[test]
fn bodies_exactly_at_the_shard_bound_are_accepted() {
    let node = node("review39-exact", 1);
    let limits = HttpLimits { max_body_bytes_per_shard: 100_000, ..HttpLimits::default() };
    let server = start(&node, limits);
    let addr = server.local_addr();
    let mut a = connect(addr);
    let mut b = connect(addr);
    a.write_all(&post_head(60_001)).expect("a head");
    a.write_all(&[b'a'; 60_000]).expect("a part");
    wait_until("a counted", || server.stats().body_bytes == 60_000);
    b.write_all(&post_head(40_001)).expect("b head");
    b.write_all(&[b'b'; 40_000]).expect("b part: 100 000 in all");
    wait_until("both counted", || server.stats().body_bytes == 100_000);
    assert_eq!(server.stats().refused_with(StatusCode::SERVICE_UNAVAILABLE), 0);
    b.write_all(b"b").expect("b's last byte");
    let answer = answer_on(&mut b);
    assert!(answer.ends_with("40001 bytes"), "{answer}");
    a.write_all(b"a").expect("a's last byte");
    let answer = answer_on(&mut a);
    assert!(answer.ends_with("60001 bytes"), "{answer}");
    assert_eq!(server.stats().body_bytes, 0);
    // One body the size of the bound, its last byte apart.
    let mut c = connect(addr);
    c.write_all(&post_head(100_000)).expect("c head");
    c.write_all(&[b'c'; 99_999]).expect("c part");
    wait_until("c counted", || server.stats().body_bytes == 99_999);
    c.write_all(b"c").expect("c's last byte");
    let answer = answer_on(&mut c);
    assert!(answer.ends_with("100000 bytes"), "{answer}");
    assert_eq!(server.stats().body_bytes, 0);
    assert_eq!(server.stats().refused_with(StatusCode::SERVICE_UNAVAILABLE), 0);
    node.stop();
}

/// The refused connection: 503 with Retry-After, closed, and what follows its body is not
/// read as a request (a second request pipelined behind it gets no answer).
#[test]
fn the_refused_body_closes_its_connection_unread() {
    let node = node("review39-refused", 1);
    let limits = HttpLimits { max_body_bytes_per_shard: 50_000, ..HttpLimits::default() };
    let server = start(&node, limits);
    let mut s = connect(server.local_addr());
    s.write_all(&post_head(60_000)).expect("head");
    s.write_all(&[b'a'; 55_000]).expect("past the bound");
    let _ = s.write_all(&[b'a'; 5_000]);
    let _ = s.write_all(b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.to_ascii_lowercase().contains("retry-after: 1"), "{text}");
    assert_eq!(text.matches("HTTP/1.1").count(), 1, "{text}");
    wait_until("uncounted", || server.stats().body_bytes == 0 && server.stats().connections == 0);
    node.stop();
}

/// A client waiting for `100 Continue` refused before its body (an extension method no route
/// names: the router's 501 from the head): nothing counted, nothing left.
#[test]
fn a_body_refused_before_100_continue_leaves_nothing_counted() {
    let node = node("review39-continue", 1);
    let router =
        pinion::web::Router::new().post("/", |r: &Request| Response::text(format!("{} bytes", r.body().len())));
    let server = WebServer::start(&node, WebServerOptions::new("127.0.0.1", 0, router)).expect("server");
    let mut s = connect(server.local_addr());
    s.write_all(b"BREW / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 50000\r\n\r\n").expect("head");
    let answer = answer_on(&mut s);
    assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
    let _ = s.write_all(&[b'a'; 50_000]);
    drop(s);
    wait_until("closed", || server.stats().connections == 0);
    assert_eq!(server.stats().body_bytes, 0);
    node.stop();
}

/// Cut by the body timeout (408) while another connection's body is held: only the cut one's
/// share leaves.
#[test]
fn a_body_cut_408_leaves_the_others_counted() {
    let node = node("review39-408", 1);
    let limits =
        HttpLimits { body_read_timeout: Duration::from_millis(1500), min_body_rate: 0, ..HttpLimits::default() };
    let server = start(&node, limits);
    let addr = server.local_addr();
    let mut a = connect(addr);
    a.write_all(&post_head(10_000)).expect("a head");
    a.write_all(&[b'a'; 4_000]).expect("a part");
    let mut b = connect(addr);
    b.write_all(&post_head(10_000)).expect("b head");
    b.write_all(&[b'b'; 3_000]).expect("b part");
    wait_until("both counted", || server.stats().body_bytes == 7_000);
    let answer = answer_on(&mut a);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // b may be cut too by now (the same timeout): it is counted 3000 or 0, never 4000 or 7000.
    let left = server.stats().body_bytes;
    assert!(left == 3_000 || left == 0, "{left}");
    let answer = answer_on(&mut b);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    wait_until("both uncounted", || server.stats().body_bytes == 0);
    node.stop();
}

/// A handler that panics on one request of a pass: the body pipelined behind it is counted,
/// then uncounted as it completes.
#[test]
fn a_panicking_handler_leaves_the_count_right() {
    let node = node("review39-panic", 1);
    let handler = |r: &Request| {
        if r.path() == "/panic" {
            panic!("review39: a handler bug");
        }
        Response::text(format!("{} bytes", r.body().len()))
    };
    let server = WebServer::start(&node, WebServerOptions::new("127.0.0.1", 0, handler)).expect("server");
    let mut s = connect(server.local_addr());
    let mut bytes = b"POST /panic HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[b'p'; 1000]);
    bytes.extend_from_slice(&post_head(5000));
    bytes.extend_from_slice(&[b'q'; 2000]);
    s.write_all(&bytes).expect("write");
    let answer = answer_on(&mut s);
    assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
    wait_until("the second body counted", || server.stats().body_bytes == 2000);
    s.write_all(&[b'q'; 3000]).expect("rest");
    let answer = answer_on(&mut s);
    assert!(answer.ends_with("5000 bytes"), "{answer}");
    assert_eq!(server.stats().body_bytes, 0);
    node.stop();
}

// ---------------------------------------------------------------------------------------
// max_connections_per_client

fn connect_from(src: &str, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let from: SocketAddr = format!("{src}:0").parse().expect("source");
    socket.bind(&from.into()).expect("bind the source");
    socket.connect(&addr.into()).expect("connect");
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(CALL_TIMEOUT)).expect("timeout");
    s
}

fn get_on(s: &mut TcpStream) -> String {
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    answer_on(s)
}

/// Connections closed by the server (header timeout), by the client, and refused at the
/// shard's cap all leave the client's count right: over three rounds, each client gets exactly
/// its cap, and a client refused at the shard's cap is not counted for it.
#[test]
fn client_counts_survive_server_closes_and_the_shard_cap() {
    let node = node("review39-clients", 1);
    let limits = HttpLimits {
        max_connections_per_client: 2,
        max_connections_per_shard: 3,
        header_read_timeout: Duration::from_millis(300),
        ..HttpLimits::default()
    };
    let server = start(&node, limits);
    let addr = server.local_addr();
    for round in 0..3u64 {
        let mut a1 = connect_from("127.0.0.1", addr);
        let mut a2 = connect_from("127.0.0.1", addr);
        assert!(get_on(&mut a1).starts_with("HTTP/1.1 200"), "round {round}");
        assert!(get_on(&mut a2).starts_with("HTTP/1.1 200"), "round {round}");
        let mut a3 = connect_from("127.0.0.1", addr);
        assert!(get_on(&mut a3).starts_with("HTTP/1.1 503"), "round {round}: past the client's cap");
        let mut b1 = connect_from("127.0.0.2", addr);
        assert!(get_on(&mut b1).starts_with("HTTP/1.1 200"), "round {round}");
        let mut b2 = connect_from("127.0.0.2", addr);
        assert!(get_on(&mut b2).starts_with("HTTP/1.1 503"), "round {round}: past the shard's cap");
        let stats = server.stats();
        assert_eq!(stats.over_client_capacity, round + 1, "{stats:?}");
        assert_eq!(stats.over_capacity, round + 1, "{stats:?}");
        // a1 half a head: the server closes it (408); a2 closed by the client; b1 left open.
        a1.write_all(b"GET / HT").expect("half a head");
        let answer = answer_on(&mut a1);
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        drop(a2);
        wait_until("a's closed", || server.stats().connections == 1);
        // b has one; the shard has room for two: b gets its second, and a one.
        let mut b3 = connect_from("127.0.0.2", addr);
        assert!(get_on(&mut b3).starts_with("HTTP/1.1 200"), "round {round}: b's second");
        let mut a4 = connect_from("127.0.0.1", addr);
        assert!(get_on(&mut a4).starts_with("HTTP/1.1 200"), "round {round}: a after its closes");
        drop((b1, b3, a4, a3, b2));
        wait_until("all closed", || server.stats().connections == 0);
    }
    node.stop();
}

// ---------------------------------------------------------------------------------------
// min_body_rate

/// An upload at twice `min_body_rate` in bursts, gaps shorter than `body_read_timeout`: never
/// cut. (Counts only; the times are generous.)
#[test]
fn an_upload_in_bursts_at_the_rate_is_not_cut() {
    let node = node("review39-bursts", 1);
    let limits =
        HttpLimits { body_read_timeout: Duration::from_millis(1000), min_body_rate: 4096, ..HttpLimits::default() };
    let server = start(&node, limits);
    let mut s = connect(server.local_addr());
    // 6 bursts of 4096 bytes, one every 500 ms (8 KiB/s).
    s.write_all(&post_head(6 * 4096)).expect("head");
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        s.write_all(&[b'b'; 4096]).expect("burst");
    }
    let answer = answer_on(&mut s);
    assert!(answer.ends_with("24576 bytes"), "{answer}");
    node.stop();
}

/// With `min_body_rate = 0` the timeout bounds the whole body: a steady trickle is cut.
#[test]
fn with_rate_0_a_steady_trickle_is_cut() {
    let node = node("review39-rate0", 1);
    let limits =
        HttpLimits { body_read_timeout: Duration::from_millis(600), min_body_rate: 0, ..HttpLimits::default() };
    let server = start(&node, limits);
    let mut s = connect(server.local_addr());
    s.write_all(&post_head(100_000)).expect("head");
    let mut cut = false;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(100));
        if s.write_all(&[b't'; 1000]).is_err() {
            cut = true;
            break;
        }
    }
    let _ = cut;
    let answer = answer_on(&mut s);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    wait_until("uncounted", || server.stats().body_bytes == 0);
    node.stop();
}

/// Waiting for `100 Continue`, then sending its body in bursts at twice the rate: not cut.
#[test]
fn after_100_continue_an_upload_in_bursts_at_the_rate_is_not_cut() {
    let node = node("review39-continue-bursts", 1);
    let limits =
        HttpLimits { body_read_timeout: Duration::from_millis(1000), min_body_rate: 4096, ..HttpLimits::default() };
    let server = start(&node, limits);
    let mut s = connect(server.local_addr());
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 24576\r\n\r\n").expect("head");
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).expect("100");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"), "{:?}", &buf[..n]);
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        s.write_all(&[b'b'; 4096]).expect("burst");
    }
    let answer = answer_on(&mut s);
    assert!(answer.ends_with("24576 bytes"), "{answer}");
    node.stop();
}

/// A chunked body in bursts at twice the rate (a chunk a burst): not cut.
#[test]
fn a_chunked_upload_in_bursts_at_the_rate_is_not_cut() {
    let node = node("review39-chunked-bursts", 1);
    let limits =
        HttpLimits { body_read_timeout: Duration::from_millis(1000), min_body_rate: 4096, ..HttpLimits::default() };
    let server = start(&node, limits);
    let mut s = connect(server.local_addr());
    s.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").expect("head");
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        let mut chunk = b"1000\r\n".to_vec();
        chunk.extend_from_slice(&[b'c'; 4096]);
        chunk.extend_from_slice(b"\r\n");
        s.write_all(&chunk).expect("burst");
    }
    s.write_all(b"0\r\n\r\n").expect("end");
    let answer = answer_on(&mut s);
    assert!(answer.ends_with("24576 bytes"), "{answer}");
    assert_eq!(server.stats().body_bytes, 0);
    node.stop();
}

/// Two pipelined uploads, each in bursts at the rate: the second's body gets a clock of its
/// own (its head comes with the first's last burst).
#[test]
fn pipelined_uploads_in_bursts_are_not_cut() {
    let node = node("review39-pipelined-bursts", 1);
    let limits =
        HttpLimits { body_read_timeout: Duration::from_millis(1000), min_body_rate: 4096, ..HttpLimits::default() };
    let server = start(&node, limits);
    let mut s = connect(server.local_addr());
    s.write_all(&post_head(3 * 4096)).expect("head");
    for i in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        let mut burst = vec![b'b'; 4096];
        if i == 2 {
            burst.extend_from_slice(&post_head(3 * 4096));
        }
        s.write_all(&burst).expect("burst");
    }
    // Both answers may be in one read by now (`answer_on` keeps only the first: read them
    // together; the CI's release run caught the second one lost that way).
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&got).matches("12288 bytes").count() < 2 {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!("reading the answers: {e}; so far {:?}", String::from_utf8_lossy(&got)),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("HTTP/1.1 200").count(), 2, "{text}");
    assert_eq!(text.matches("12288 bytes").count(), 2, "{text}");
    node.stop();
}
