//! Review 71: a docs audit of the day's APIs. Where a doc claim needed a check, it is here.

mod review_support;

use std::sync::{Arc, Mutex};

use pinion::http::{HttpLimits, Request, Response, StatusCode};
use pinion::web::{Layer, RequestSummary, hook};
use review_support::{Client, lock, serve_with, start_node};

/// `ResponseHook`'s and `request_log`'s docs list the connection's own refusals, which no hook
/// sees: the 503 of a body past `max_body_bytes_per_shard` is one of them (the docs listed
/// the 4xx/5xx of a malformed or oversized request only; stats counts this 503 with them).
#[test]
fn the_503_of_a_body_past_the_shards_bound_is_not_hooked() {
    let node = start_node("r71-bodybound", 1);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let handler = hook(move |_: &RequestSummary<'_>, resp: &mut Response| lock(&log).push(resp.status.0))
        .wrap(Arc::new(|req: &Request| Response::text(format!("{} bytes", req.body().len()))));
    let limits = HttpLimits { max_body_bytes: 10_000, max_body_bytes_per_shard: 100, ..HttpLimits::default() };
    let server = serve_with(&node, limits, handler);
    let mut a = Client::connect(server.local_addr());
    // Half the body: held while read, over the bound (a whole body read at once is handed on).
    a.send(format!("POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 300\r\n\r\n{}", "x".repeat(150)).as_bytes());
    assert_eq!(a.response().status, 503);
    let mut b = Client::connect(server.local_addr());
    b.send(b"POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\n\r\nhello");
    assert_eq!(b.response().text(), "5 bytes");
    assert_eq!(server.stats().refused_with(StatusCode::SERVICE_UNAVAILABLE), 1, "counted as the connection's refusal");
    assert_eq!(*lock(&seen), [200], "the hook saw the answer it could, not the 503");
    server.stop();
    node.stop();
}

/// The interop docs: `OPTIONS http://host` asks about the server, and comes back from the
/// `http` crate as a question about `/` (`http::Uri` writes the path it lacks).
#[cfg(feature = "interop")]
#[test]
fn options_about_the_server_comes_back_from_http_about_the_root() {
    use pinion::http::{Method, http};
    let ours = Request::new(Method::Options, "http://example.com").with_header("host", "example.com");
    assert!(ours.is_server_wide());
    let back = Request::try_from(http::Request::<Vec<u8>>::try_from(ours).expect("to http")).expect("back");
    assert_eq!((back.target(), back.is_server_wide()), ("http://example.com/", false));
    let star = Request::new(Method::Options, "*").with_header("host", "example.com");
    let back = Request::try_from(http::Request::<Vec<u8>>::try_from(star).expect("to http")).expect("back");
    assert!(back.is_server_wide(), "OPTIONS * keeps its meaning");
}
