//! Review 52: a connection paused by its bounds (an HTTP/1.0 request's pending answer among
//! them) and its client leaving. Nodes of 1 shard; every wait is bounded.

mod review_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pinion::http::HttpLimits;
use pinion::web::WebRequest;
use review_support::{Client, lock, serve_with, start_node, wait_until};

/// Keeps every request unanswered until the test lets it go.
struct Holder(Arc<Mutex<Vec<WebRequest>>>);

impl pinion::web::Handler for Holder {
    fn handle(&self, req: WebRequest) {
        lock(&self.0).push(req);
    }
}

fn holder() -> (Arc<Mutex<Vec<WebRequest>>>, Holder) {
    let held = Arc::new(Mutex::new(Vec::new()));
    (held.clone(), Holder(held))
}

/// A client resets its connection while its request waits for a slow answer: the server
/// notices (the connection is counted closed) without waiting for the answer — as it does
/// for an HTTP/1.1 request, so for an HTTP/1.0 keep-alive one whose pending answer pauses
/// reading.
fn reset_while_held(request: &[u8], name: &str, limits: HttpLimits) {
    let node = start_node(name, 1);
    let (held, handler) = holder();
    let server = serve_with(&node, limits, handler);
    let mut c = Client::connect(server.local_addr());
    c.send(request);
    wait_until("the request reaches its handler", || lock(&held).len() == 1);
    // Whatever else was sent is still unread (paused), not refused or dispatched.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(lock(&held).len(), 1);
    assert_eq!(server.stats().connections, 1);
    socket2::SockRef::from(&c.s).set_linger(Some(Duration::ZERO)).unwrap();
    drop(c);
    wait_until("the reset connection counted closed", || server.stats().connections == 0);
    lock(&held).clear();
    server.stop();
    node.stop();
}

#[test]
fn a_reset_http11_client_is_noticed_while_its_request_is_held() {
    reset_while_held(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "r52-reset11", HttpLimits::default());
}

#[test]
fn a_reset_http10_client_is_noticed_while_its_request_is_held() {
    let req = b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n";
    reset_while_held(req, "r52-reset10", HttpLimits::default());
    // Pipelined behind it: still noticed.
    reset_while_held(&[&req[..], &req[..]].concat(), "r52-reset10p", HttpLimits::default());
}

#[test]
fn a_reset_client_is_noticed_while_paused_at_max_in_flight() {
    let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let limits = HttpLimits { max_in_flight: 1, ..HttpLimits::default() };
    reset_while_held(&[&req[..], &req[..]].concat(), "r52-reset-inflight", limits);
}
