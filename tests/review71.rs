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
