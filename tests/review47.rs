//! Review 47: the response side — what a handler (a plain function, an actor, a stream,
//! middleware, a hook) can make the server put on the wire, against RFC 9110/9112. Its
//! failing tests, kept. Every server started is stopped (with its node); every read is
//! bounded; a reader keeps the bytes it read beyond the response it parses.

mod review_support;
mod support;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pinion::http::{Body, HttpLimits, Request, Response, StatusCode, serve_blocking};
use pinion::web::{Handler, WebRequest};
use review_support::*;
use support::wire::Wire;

/// Everything the server sends on one connection after `req`, until it closes; `false` with
/// what came if it had not closed `within`.
fn until_close(server: &pinion::web::WebServer, req: &[u8], within: Duration) -> (String, bool) {
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(req).unwrap();
    let end = Instant::now() + within;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    let closed = loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

// ---- 1. HEAD: the Content-Length is the GET's ------------------------------------------------

const DOC_LEN: usize = 1234;

/// A handler that answers HEAD without building the body it would send to GET, saying its
/// length — as RFC 9110 §9.3.2 allows, and as a `tower`/`axum` service converted with
/// `Response::from(http::Response)` does (axum sets `content-length` from the body, then
/// strips the body of a HEAD answer).
fn doc(req: &Request) -> Response {
    if req.method() == pinion::http::Method::Head {
        return Response::new(StatusCode::OK).header("content-type", "text/plain").header("content-length", "1234");
    }
    Response::text("d".repeat(DOC_LEN))
}

/// RFC 9110 §8.6: a server MUST NOT send `Content-Length` in a HEAD answer unless it is the
/// length a GET would get. pinion dropped the handler's `content-length: 1234` (the
/// connection's to write) and wrote `content-length: 0` in its place: a cache or a client
/// sizing a download by HEAD was told the document is empty.
#[test]
fn a_head_answer_without_its_body_keeps_the_length_the_handler_gives() {
    let node = start_node("r47-head-len", 1);
    let server = serve_with(&node, HttpLimits::default(), doc);
    let mut c = Client::connect(server.local_addr());
    c.send(b"HEAD /doc HTTP/1.1\r\nHost: x\r\n\r\nGET /doc HTTP/1.1\r\nHost: x\r\n\r\n");
    // The HEAD answer has no body whatever its length says: its head only.
    let head = c.head();
    let get = c.response();
    server.stop();
    node.stop();
    assert_eq!((head.status, get.status), (200, 200));
    assert_eq!(get.body.len(), DOC_LEN);
    assert_eq!(head.header("content-length"), Some("1234"), "HEAD head: {:?}", head.headers);
    assert_eq!(head.header("content-length"), get.header("content-length"));
    // One length field, not the handler's and the connection's.
    assert_eq!(head.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length")).count(), 1);
    assert!(c.buf.is_empty(), "bytes after the answers: {:?}", String::from_utf8_lossy(&c.buf));
}

/// The same answer from an `http::Response` a HEAD-aware service gave (feature `interop`).
#[cfg(feature = "interop")]
#[test]
fn a_head_answer_converted_from_http_keeps_its_content_length() {
    fn bridged(req: &Request) -> Response {
        let mut b = http::Response::builder().status(200).header("content-type", "text/plain");
        let body = if req.method() == pinion::http::Method::Head {
            b = b.header("content-length", DOC_LEN.to_string());
            Vec::new()
        } else {
            vec![b'd'; DOC_LEN]
        };
        Response::from(b.body(body).unwrap())
    }
    let node = start_node("r47-head-interop", 1);
    let server = serve_with(&node, HttpLimits::default(), bridged);
    let (text, closed) =
        until_close(&server, b"HEAD /doc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", Duration::from_secs(10));
    server.stop();
    node.stop();
    assert!(closed, "{text:?}");
    assert!(text.contains("\r\ncontent-length: 1234\r\n"), "{text:?}");
    assert!(text.ends_with("\r\n\r\n"), "a body in a HEAD answer: {text:?}");
}

// ---- 2. statuses outside 100..=599 -------------------------------------------------------------

/// RFC 9110 §15: "Values outside the range 100..599 are invalid" (600..999 are for a
/// library's internal use). pinion wrote `HTTP/1.1 600 ` and `999 ` on the wire as given
/// (its docs: "any three-digit code can be sent"); a status the client must treat as an
/// error anyway is sent as 500, as one outside three digits was.
#[test]
fn a_status_above_599_is_not_sent() {
    fn answer(req: &Request) -> Response {
        let code: u16 = req.path()[1..].parse().unwrap();
        Response::text("x").with_status(StatusCode(code))
    }
    let node = start_node("r47-status", 1);
    let server = serve_with(&node, HttpLimits::default(), answer);
    let mut c = Client::connect(server.local_addr());
    // Twice each: the second is the one a cached head would serve.
    let codes = [599u16, 599, 600, 600, 999, 999, 1000];
    for code in codes {
        c.send(format!("GET /{code} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    let got: Vec<u16> = codes.iter().map(|_| c.response().status).collect();
    server.stop();
    node.stop();
    assert_eq!(got, [599, 599, 500, 500, 500, 500, 500]);
    assert!(c.buf.is_empty(), "bytes after the answers: {:?}", String::from_utf8_lossy(&c.buf));
}

// ---- 3. a streamed body where no stream can follow -------------------------------------------

/// Refuses every upload before its body with a 403 whose body is marked streamed (a response
/// template reused from a streaming route, say).
struct RefuseStreamed;
impl Handler for RefuseStreamed {
    fn handle(&self, req: WebRequest) {
        req.respond(Response::text("handled"));
    }
    fn check_head(&self, _: &Request) -> Option<Response> {
        let mut r = Response::new(StatusCode::FORBIDDEN);
        r.body = Body::Streamed;
        Some(r)
    }
}

/// `WebRequest::respond` sends a `Body::Streamed` answer with an empty body (its docs: streams
/// go through `respond_stream`). A `check_head` answer marked streamed was taken as a stream
/// that no `ResponseStream` feeds: its head said `transfer-encoding: chunked` and
/// `connection: close`, and then nothing came, ever — the client waited for a body and the
/// connection stayed open.
#[test]
fn a_check_head_answer_marked_streamed_is_sent_whole() {
    let node = start_node("r47-check-head", 1);
    let server = serve_with(&node, HttpLimits::default(), RefuseStreamed);
    let (text, closed) = until_close(
        &server,
        b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n",
        Duration::from_secs(3),
    );
    server.stop();
    node.stop();
    assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text:?}");
    assert!(closed, "the connection never ended the answer: {text:?}");
    assert!(!text.contains("transfer-encoding"), "{text:?}");
    assert!(text.ends_with("\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"), "{text:?}");
}

/// The same for `serve_blocking`'s handler (whose answers are held, as a plain function's):
/// an answer marked streamed left a chunked head without its end, and every request behind
/// it unanswered.
#[test]
fn serve_blocking_sends_an_answer_marked_streamed_whole() {
    let input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut wire = Wire::new(input);
    serve_blocking(&mut wire, &HttpLimits::default(), |req| {
        let mut r = Response::text(req.path().to_owned());
        if req.path() == "/a" {
            r.body = Body::Streamed;
        }
        r
    })
    .unwrap();
    let text = String::from_utf8(wire.out).unwrap();
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{text:?}");
    assert!(!text.contains("transfer-encoding"), "{text:?}");
    assert!(text.ends_with("\r\ncontent-length: 2\r\n\r\n/b"), "{text:?}");
}
