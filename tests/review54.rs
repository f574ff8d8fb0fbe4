//! Review 54: the server-side requirements of RFC 9110 (semantics) and RFC 9112 (HTTP/1.1
//! messaging) that are not about framing: status codes without content, connection options,
//! field syntax. Exchanges on byte slices (`serve_blocking`) where a held answer shows it, on a
//! socket (nodes of 1 shard, every read bounded) for streamed answers.

mod review_support;
mod support;

use pinion::http::{HttpLimits, Request, Response, StatusCode, serve_blocking};
use pinion::web::{Handler, Router, WebRequest};
use review_support::{Client, serve_with, start_node};
use support::wire::Wire;

/// What the server writes for `input`, every request answered by `handler`.
fn exchange(input: &[u8], handler: impl FnMut(&Request) -> Response) -> String {
    let mut wire = Wire::new(input);
    serve_blocking(&mut wire, &HttpLimits::default(), handler).expect("in-memory I/O does not fail");
    String::from_utf8(wire.out).expect("ASCII answers")
}

/// The header section of `answer` (up to its empty line), lower-cased, and what follows it.
fn split(answer: &str) -> (String, &str) {
    let end = answer.find("\r\n\r\n").unwrap_or_else(|| panic!("no end of head: {answer:?}"));
    (answer[..end + 2].to_ascii_lowercase(), &answer[end + 4..])
}

const NEXT: &[u8] = b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n";

/// RFC 9110 §15.3.6: "a server MUST NOT generate content in a 205 response" (it may frame it
/// with `Content-Length: 0`). A handler's 205 with a body was sent with that body.
#[test]
fn rfc9110_15_3_6_a_205_response_carries_no_content() {
    let handler = |req: &Request| match req.path() {
        "/next" => Response::text("next"),
        _ => Response::text("form cleared").with_status(StatusCode(205)),
    };
    for version in ["HTTP/1.1", "HTTP/1.0"] {
        let keep = if version == "HTTP/1.0" { "Connection: keep-alive\r\n" } else { "" };
        let req = format!("GET /reset {version}\r\nHost: a\r\n{keep}\r\n");
        let out = exchange(&[req.as_bytes(), NEXT].concat(), handler);
        assert!(out.starts_with("HTTP/1.1 205 "), "{out}");
        let (head, rest) = split(&out);
        assert!(head.contains("\r\ncontent-length: 0\r\n"), "{out}");
        assert!(!head.contains("transfer-encoding"), "{out}");
        // No content, and the connection goes on: the next answer follows the head at once.
        assert!(rest.starts_with("HTTP/1.1 200 OK\r\n") && rest.ends_with("\r\n\r\nnext"), "{version}: {out}");
    }
    // HEAD: the length a GET would get (0), no content either.
    let out = exchange(&[&b"HEAD /reset HTTP/1.1\r\nHost: a\r\n\r\n"[..], NEXT].concat(), handler);
    let (head, rest) = split(&out);
    assert!(head.starts_with("http/1.1 205 ") && head.contains("\r\ncontent-length: 0\r\n"), "{out}");
    assert!(rest.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    // `Response::status` makes none either (nor a type for it).
    let out =
        exchange(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", |_| Response::status(StatusCode(205)));
    let (head, rest) = split(&out);
    assert!(head.contains("\r\ncontent-length: 0\r\n") && !head.contains("content-type"), "{out}");
    assert_eq!(rest, "", "{out}");
}

/// Answers with a streamed body of two chunks, its head having the given status.
struct Streams(StatusCode);

impl Handler for Streams {
    fn handle(&self, req: WebRequest) {
        let mut stream = req.respond_stream(Response::new(self.0));
        stream.send("ab");
        stream.send("cd");
        stream.finish();
    }
}

/// RFC 9110 §15.3.6 for a streamed answer: a 205 head with a stream went out chunked, its
/// chunks after it. Now it is `Content-Length: 0` with no content (the stream is closed to
/// its sender, as for HEAD), and the connection serves the next request.
#[test]
fn rfc9110_15_3_6_a_streamed_205_sends_no_chunks() {
    let node = start_node("r54-stream205", 1);
    let router =
        Router::new().route("/reset", Streams(StatusCode(205))).get("/next", |_: &Request| Response::text("next"));
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    c.send(&[&b"GET /reset HTTP/1.1\r\nHost: a\r\n\r\n"[..], NEXT].concat());
    let first = c.head();
    assert_eq!(first.status, 205, "{first:?}");
    assert_eq!(first.header("content-length"), Some("0"), "{first:?}");
    assert_eq!(first.header("transfer-encoding"), None, "{first:?}");
    let next = c.response();
    assert_eq!((next.status, next.text().as_str()), (200, "next"), "what followed the 205's head: {next:?}");
    drop(c);
    server.stop();
    node.stop();
}

/// RFC 9110 §7.8: "A sender of Upgrade MUST also send an "upgrade" connection option in the
/// Connection header field" (e.g. a 426, which MUST send Upgrade, §15.5.22). The handler's
/// `Connection` field was dropped (the runtime writes that field) and its `Upgrade` sent
/// alone; now the runtime's `Connection` lists the handler's options other than `close` and
/// `keep-alive`, and `upgrade` whenever an `Upgrade` goes out.
#[test]
fn rfc9110_7_8_an_upgrade_field_goes_with_an_upgrade_connection_option() {
    let handler = |req: &Request| match req.path() {
        "/426" => Response::text("use h2c").with_status(StatusCode(426)).header("upgrade", "h2c"),
        "/given" => Response::text("x").header("Upgrade", "h2c").header("Connection", "Upgrade"),
        _ => Response::text("next"),
    };
    let connection = |answer: &str| {
        let (head, _) = split(answer);
        let line = head.lines().find(|l| l.starts_with("connection:")).map(str::to_owned);
        (head, line)
    };
    // Without a `Connection` of the handler's: the option is added.
    let out = exchange(&[&b"GET /426 HTTP/1.1\r\nHost: a\r\n\r\n"[..], NEXT].concat(), handler);
    let (head, line) = connection(&out);
    assert!(head.contains("\r\nupgrade: h2c\r\n"), "{out}");
    assert_eq!(line.as_deref(), Some("connection: upgrade"), "{out}");
    assert!(out.ends_with("\r\n\r\nnext"), "the connection stays open: {out}");
    // The handler's own option, kept once; with a close the runtime decides, both.
    let out = exchange(b"GET /given HTTP/1.1\r\nHost: a\r\n\r\n", handler);
    assert_eq!(connection(&out).1.as_deref(), Some("connection: upgrade"), "{out}");
    let out = exchange(b"GET /given HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", handler);
    assert_eq!(connection(&out).1.as_deref(), Some("connection: close, upgrade"), "{out}");
    let out = exchange(b"GET /given HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", handler);
    assert_eq!(connection(&out).1.as_deref(), Some("connection: keep-alive, upgrade"), "{out}");
    // No `Upgrade`, no option: the plain answer is unchanged.
    let out = exchange(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n", handler);
    assert_eq!(connection(&out).1, None, "{out}");
}

/// RFC 9112 §5.1: "No whitespace is allowed between the field name and colon. ... A server
/// MUST reject, with a response status code of 400 (Bad Request), any received request
/// message that contains whitespace between a header field name and colon." (Held already;
/// no test said so.)
#[test]
fn rfc9112_5_1_whitespace_between_field_name_and_colon_is_400() {
    for bad in [
        &b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A\t: b\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 4\r\n\r\nabcd",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    ] {
        let out = exchange(&[bad, NEXT].concat(), |_| Response::text("served"));
        assert!(out.starts_with("HTTP/1.1 400 "), "{:?}: {out}", String::from_utf8_lossy(bad));
        assert!(out.contains("\r\nconnection: close\r\n") && !out.contains("served"), "{out}");
    }
}

/// RFC 9110 §8.6: "a server MUST NOT send Content-Length in [a response to HEAD] unless its
/// field value equals the decimal number of octets that would have been sent in the content
/// of a response if the same request had used the GET method". A HEAD handler of its own that
/// answers without a body and without saying GET's length got `content-length: 0` (stop 33:
/// none now); GET's answer through the router keeps its length, and a length the handler
/// gives is kept. The connection goes on either way (a HEAD answer has no content).
#[test]
fn rfc9110_8_6_a_head_answer_states_no_length_it_does_not_know() {
    let handler = |req: &Request| match (req.method(), req.path()) {
        (pinion::http::Method::Head, "/own") => Response::new(StatusCode::OK),
        (pinion::http::Method::Head, "/told") => Response::new(StatusCode::OK).header("content-length", "13"),
        _ => Response::text("Hello, World!"),
    };
    let heads = [
        &b"HEAD /own HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"HEAD /told HTTP/1.1\r\nHost: a\r\n\r\n",
        b"HEAD /get HTTP/1.1\r\nHost: a\r\n\r\n",
        NEXT,
    ];
    let out = exchange(&heads.concat(), handler);
    let answers: Vec<String> = out.split("HTTP/1.1 ").skip(1).map(|a| split(a).0).collect();
    assert_eq!(answers.len(), 4, "{out}");
    let lengths: Vec<Option<String>> = answers
        .iter()
        .map(|head| head.lines().find_map(|l| l.strip_prefix("content-length: ")).map(str::to_owned))
        .collect();
    let want = [None, Some("13"), Some("13"), Some("13")].map(|l| l.map(str::to_owned));
    assert_eq!(lengths, want, "{out}");
    assert!(out.ends_with("\r\n\r\nHello, World!"), "{out}");
}

/// Keeps the stream it answers with (its head having the given status), for the test to look at.
struct Keeps(StatusCode, std::sync::Arc<std::sync::Mutex<Option<pinion::web::ResponseStream>>>);

impl Handler for Keeps {
    fn handle(&self, req: WebRequest) {
        let stream = req.respond_stream(Response::new(self.0));
        *review_support::lock(&self.1) = Some(stream);
    }
}

/// A stream whose body is never sent is closed to its sender (`ResponseStream::is_closed`,
/// as the docs say of HEAD): the statuses without content (204, 205, 304) too; a 200's stays
/// open.
#[test]
fn a_stream_whose_body_is_never_sent_is_closed_to_its_sender() {
    let node = start_node("r54-stream-closed", 1);
    for (status, method, closed) in
        [(204, "GET", true), (205, "GET", true), (304, "GET", true), (200, "HEAD", true), (200, "GET", false)]
    {
        let kept = std::sync::Arc::default();
        let server = serve_with(&node, HttpLimits::default(), Keeps(StatusCode(status), std::sync::Arc::clone(&kept)));
        let mut c = Client::connect(server.local_addr());
        c.send(format!("{method} / HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
        assert_eq!(c.head().status, status);
        let is_closed = || review_support::lock(&kept).as_ref().is_some_and(pinion::web::ResponseStream::is_closed);
        if closed {
            review_support::wait_until("the stream closed to its sender", is_closed);
        } else {
            assert!(!is_closed(), "a 200 GET's stream is open");
            review_support::lock(&kept).take().expect("the stream").finish();
        }
        drop(c);
        server.stop();
    }
    node.stop();
}
