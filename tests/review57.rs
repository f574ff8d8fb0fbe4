//! Review 57 (stop 33): pipelined requests of unsafe methods. RFC 9112 §9.3.2 lets a server
//! process pipelined requests in parallel only while all of them are safe; the connection
//! handed every request it read to the handlers at once, so a pipelined `POST` ran beside the
//! `GET` before it, and a `GET` after it beside it: a worker pool finishing out of order could
//! apply them out of order (a `DELETE` before the `PUT` sent ahead of it).
//!
//! Now an unsafe request waits until the requests before it are answered, and the requests
//! after it wait for its answer; safe ones still run side by side. Nodes of 1 shard; every
//! wait is bounded (a hang fails, nothing asserts on timing).

mod review_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pinion::http::{HttpLimits, Request, Response};
use pinion::web::{WebHandler, WebServer, WebWorker};
use pinion::{Context, Node, ProcessOptions};
use review_support::{Client, get, lock, serve_with, start_node};

/// What the workers did, in order: `+GET /a` when a handler starts, `-GET /a` when it ends.
type Log = Arc<Mutex<Vec<String>>>;

/// Every method: logs its start, sleeps 150 ms for a target starting `/slow`, logs its end.
struct Logger(Log);

impl Logger {
    async fn run(&mut self, ctx: &mut Context, req: &Request) -> Response {
        let what = format!("{} {}", req.method().as_str(), req.path());
        lock(&self.0).push(format!("+{what}"));
        if req.path().starts_with("/slower") {
            ctx.sleep(Duration::from_secs(1)).await;
        } else if req.path().starts_with("/slow") {
            ctx.sleep(Duration::from_millis(150)).await;
        }
        lock(&self.0).push(format!("-{what}"));
        Response::text(what)
    }
}

impl WebWorker for Logger {
    async fn handle_get(&mut self, ctx: &mut Context, req: &Request) -> Response {
        self.run(ctx, req).await
    }
    async fn handle_post(&mut self, ctx: &mut Context, req: &Request) -> Response {
        self.run(ctx, req).await
    }
    async fn handle_put(&mut self, ctx: &mut Context, req: &Request) -> Response {
        self.run(ctx, req).await
    }
    async fn handle_delete(&mut self, ctx: &mut Context, req: &Request) -> Response {
        self.run(ctx, req).await
    }
}

/// A node of one shard and a server handing every request to a pool of four `Logger`s with
/// no mailbox: each holds one request, so requests handed over together run on different
/// workers, side by side.
fn start(name: &str) -> (Node, WebServer, Log) {
    start_with(name, HttpLimits::default())
}

fn start_with(name: &str, limits: HttpLimits) -> (Node, WebServer, Log) {
    let node = start_node(name, 1);
    let log: Log = Arc::default();
    let worker_log = log.clone();
    let options = pinion::PoolOptions::new(4, 0, move || Logger(worker_log.clone()));
    let pool = node.spawn(move || pinion::Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let server = serve_with(&node, limits, WebHandler::to(pool));
    (node, server, log)
}

fn request(method: &str, path: &str, body: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// Where `entry` is in the log (it must be there).
fn at(log: &[String], entry: &str) -> usize {
    log.iter().position(|e| e == entry).unwrap_or_else(|| panic!("{entry:?} not in {log:?}"))
}

#[test]
fn an_unsafe_request_waits_for_the_ones_before_it_and_holds_the_ones_after_it() {
    let (node, server, log) = start("r57-order");
    let mut c = Client::connect(server.local_addr());
    c.send(
        &[
            get("/slow/1"),
            request("PUT", "/slow/item", "v1"),
            request("DELETE", "/item", ""),
            get("/slow/2"),
            get("/slow/3"),
        ]
        .concat(),
    );
    let answers: Vec<String> = (0..5).map(|_| c.response().text()).collect();
    assert_eq!(answers, ["GET /slow/1", "PUT /slow/item", "DELETE /item", "GET /slow/2", "GET /slow/3"]);
    let log = lock(&log).clone();
    // The PUT starts after the GET before it ended; the DELETE after the PUT ended; the GETs
    // after the DELETE ended.
    assert!(at(&log, "+PUT /slow/item") > at(&log, "-GET /slow/1"), "{log:?}");
    assert!(at(&log, "+DELETE /item") > at(&log, "-PUT /slow/item"), "{log:?}");
    assert!(at(&log, "+GET /slow/2") > at(&log, "-DELETE /item"), "{log:?}");
    // Safe requests together still run side by side: the third GET starts before the second
    // ends.
    assert!(at(&log, "+GET /slow/3") < at(&log, "-GET /slow/2"), "{log:?}");
    server.stop();
    node.stop();
}

#[test]
fn a_post_first_in_line_holds_the_gets_behind_it() {
    let (node, server, log) = start("r57-post-first");
    let mut c = Client::connect(server.local_addr());
    c.send(&[request("POST", "/slow/create", "x"), get("/a"), get("/b")].concat());
    let answers: Vec<String> = (0..3).map(|_| c.response().text()).collect();
    assert_eq!(answers, ["POST /slow/create", "GET /a", "GET /b"]);
    let log = lock(&log).clone();
    assert!(at(&log, "+GET /a") > at(&log, "-POST /slow/create"), "{log:?}");
    server.stop();
    node.stop();
}

/// A drain while an unsafe request waits behind a slow one: both are answered, the waiting
/// one last and with `Connection: close`, then the connection closes.
#[test]
fn a_drain_answers_the_unsafe_request_waiting_behind_another() {
    let (node, server, log) = start("r57-drain");
    let mut c = Client::connect(server.local_addr());
    c.send(&[get("/slow/1"), request("POST", "/last", "xy")].concat());
    review_support::wait_until("the GET started", || lock(&log).iter().any(|e| e == "+GET /slow/1"));
    server.drain();
    let first = c.response();
    assert_eq!((first.status, first.text()), (200, "GET /slow/1".to_owned()));
    let last = c.response();
    assert_eq!((last.status, last.text()), (200, "POST /last".to_owned()));
    assert_eq!(last.header("connection"), Some("close"));
    c.assert_closed();
    server.stop();
    node.stop();
}

/// The client sends a GET and a PUT and shuts its side: both are answered before the
/// connection closes (the PUT read before the end waits, it is not dropped with it).
#[test]
fn an_unsafe_request_waiting_when_the_client_ends_is_answered() {
    let (node, server, _log) = start("r57-eof");
    let mut c = Client::connect(server.local_addr());
    c.send(&[get("/slow/1"), request("PUT", "/x", "1")].concat());
    c.s.shutdown(std::net::Shutdown::Write).expect("half-close");
    assert_eq!(c.response().text(), "GET /slow/1");
    assert_eq!(c.response().text(), "PUT /x");
    c.assert_closed();
    server.stop();
    node.stop();
}

/// A waiting unsafe request's body is held in memory: it counts in the shard's bound for
/// bodies (`body_bytes`, `max_body_bytes_per_shard`) until it is handed out. It did not: a
/// client could hold a slow request and a body behind it on every connection a shard allows,
/// outside the bound (a stop-33 review of the hold).
#[test]
fn a_waiting_unsafe_requests_body_counts_in_the_shards_bound() {
    let limits = HttpLimits { max_body_bytes_per_shard: 150_000, ..HttpLimits::default() };
    let (node, server, _log) = start_with("r57-body-bound", limits);
    let body = "b".repeat(100_000);
    let mut a = Client::connect(server.local_addr());
    a.send(&[get("/slower"), request("POST", "/held", &body)].concat());
    review_support::wait_until("the waiting body counted", || server.stats().body_bytes == 100_000);
    // Another connection's body would take the shard past its bound: refused.
    let mut b = Client::connect(server.local_addr());
    b.send(&request("POST", "/other", &body));
    let refused = b.response();
    assert_eq!((refused.status, refused.header("retry-after")), (503, Some("1")), "{refused:?}");
    // The waiting one is handed out in its turn, and the count goes back.
    assert_eq!(a.response().text(), "GET /slower");
    assert_eq!(a.response().text(), "POST /held");
    review_support::wait_until("the bodies uncounted", || server.stats().body_bytes == 0);
    server.stop();
    node.stop();
}
