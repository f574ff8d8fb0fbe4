//! Review 67: a hostile review of the router's HEAD rule and pattern checks, the server-wide
//! OPTIONS rule, the request mutators, `is_client_gone` and review 64's middleware fixes,
//! over real sockets where the wire matters.

mod review_support;

use pinion::http::{HttpLimits, Method, Request, Response};
use pinion::web::Router;
use review_support::*;

fn text(s: &'static str) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
    move |_: &Request| Response::text(s)
}

/// A path holds what a client sends raw: the server takes a target in UTF-8 (httparse reads
/// it; `curl 'http://host/café'` sends it so), and a route's literal in UTF-8 matches it byte
/// for byte. The router refused such a literal at `add` ("a byte no path holds"), a panic
/// for a route that answers those clients, with docs that said no path holds one.
#[test]
fn a_literal_in_utf8_matches_a_path_sent_raw() {
    let router = Router::new()
        .get("/p/{x}", |r: &Request| Response::text(r.param("x").unwrap_or("-").to_owned()))
        .get("/caf\u{e9}", text("raw literal"))
        .get("/caf%C3%A9", text("encoded literal"));
    let node = start_node("r67-utf8-literal", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    // The server takes a raw UTF-8 path: the parameter is the bytes as sent.
    c.send(b"GET /p/caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n");
    let resp = c.response();
    assert_eq!((resp.status, resp.text()), (200, "caf\u{e9}".to_owned()));
    c.send(b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().text(), "raw literal");
    c.send(b"GET /caf%C3%A9 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().text(), "encoded literal");
    node.stop();
}

/// `set_header` with a value it refuses panics before it changes anything: a layer that
/// catches the panic (or a handler running under `catch_unwind`) still has the field it had.
/// Before, the fields of that name were removed first, then the value refused.
#[test]
fn a_refused_set_header_leaves_the_request_as_it_was() {
    let mut req = Request::new(Method::Get, "/").with_header("accept", "text/html");
    let edit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| req.set_header("Accept", "a\r\nx: y")));
    assert!(edit.is_err(), "a value with CR LF is refused");
    assert_eq!(req.header("accept"), Some(&b"text/html"[..]));
    let edit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| req.set_header("Acc ept", "b")));
    assert!(edit.is_err(), "a name that is no token is refused");
    assert_eq!(req.header("accept"), Some(&b"text/html"[..]));
}
