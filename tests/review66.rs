//! Review 66: small gaps earlier rounds left — `Response::text`'s charset, a call's request
//! handed back by a full mailbox (`try_call`). Nodes of 1 or 2 unpinned shards; every wait is
//! bounded (a hang fails).

mod review_support;

use pinion::http::{HttpLimits, Request, Response, StatusCode};
use pinion::web::Router;
use review_support::{Client, get, serve_with, start_node};

/// `Response::text` labels its body UTF-8 (a `str` is), as `Response::status` does its reason
/// phrase: `text/plain` alone means US-ASCII, and a browser showed `héllo` as `hÃ©llo`.
#[test]
fn response_text_says_its_body_is_utf8() {
    let node = start_node("r66-charset", 1);
    let router = Router::new()
        .get("/hello", |_: &Request| Response::text("héllo, wörld"))
        .get("/conflict", |_: &Request| Response::status(StatusCode::CONFLICT));
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut client = Client::connect(server.local_addr());
    client.send(&get("/hello"));
    let r = client.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.body, "héllo, wörld".as_bytes());
    client.send(&get("/conflict"));
    let r = client.response();
    assert_eq!(r.status, 409);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    server.stop();
    node.stop();
}
