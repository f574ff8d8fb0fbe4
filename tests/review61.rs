//! Review 61: stop 33's HEAD lengths, stats ordering, deferred unsafe requests, router tails,
//! node start.

mod review_support;
mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pinion::http::{HttpLimits, Method, Request, Response, StatusCode, serve_blocking};
use pinion::web::{Handler, WebHandler, WebHandlerOptions, WebRequest, WebWorker, answer_at_once};
use pinion::{Context, ProcessOptions};
use review_support::{Client, lock, serve_with, start_node, wait_until};
use support::wire::Wire;

/// What the server writes for `input`, every request answered by `handler`.
fn exchange(input: &[u8], handler: impl FnMut(&Request) -> Response) -> String {
    let mut wire = Wire::new(input);
    serve_blocking(&mut wire, &HttpLimits::default(), handler).expect("in-memory I/O does not fail");
    String::from_utf8(wire.out).expect("ASCII answers")
}

/// The `content-length` values of each answer's head in `out`.
fn lengths(out: &str) -> Vec<Option<String>> {
    out.split("HTTP/1.1 ")
        .skip(1)
        .map(|a| {
            let head = &a[..a.find("\r\n\r\n").expect("end of head")];
            head.lines().find_map(|l| l.strip_prefix("content-length: ")).map(str::to_owned)
        })
        .collect()
}

/// Stop 33: a HEAD answer without a body (none, or an empty one) states no length unless the
/// handler gives one. The same answer, `Response::text("")` to HEAD, got `content-length: 0`
/// on a keep-alive HTTP/1.1 connection (the cached common head) and none when it closes the
/// connection or carries a field (the general encoder): one answer, two lengths.
#[test]
fn a_head_answer_with_an_empty_body_states_the_same_length_on_every_path() {
    let handler = |req: &Request| match req.path() {
        "/field" => Response::text("").header("x-a", "1"),
        _ => Response::text(""),
    };
    let input = concat!(
        "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
        "HEAD /field HTTP/1.1\r\nHost: a\r\n\r\n",
        "HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    let out = exchange(input.as_bytes(), handler);
    let got = lengths(&out);
    assert_eq!(got.len(), 4, "{out}");
    assert!(got.iter().all(|l| *l == got[0]), "{got:?}\n{out}");
}

/// The same over a socket, where a keep-alive answer first in line takes the cached head
/// straight from its slot (`Outgoing::complete_from`): none there either, and the connection
/// goes on.
#[test]
fn a_head_answer_with_an_empty_body_states_no_length_over_a_socket() {
    let node = start_node("r61-head", 1);
    let server = serve_with(&node, HttpLimits::default(), |req: &Request| match req.path() {
        "/next" => Response::text("next"),
        _ => Response::text(""),
    });
    let mut c = Client::connect(server.local_addr());
    for _ in 0..3 {
        c.send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = c.head();
        assert_eq!((r.status, r.header("content-length")), (200, None), "{r:?}");
    }
    c.send(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "next"), "{r:?}");
    drop(c);
    server.stop();
    node.stop();
}

type Log = Arc<Mutex<Vec<String>>>;

/// Logs the request it starts, then holds it until `release` (bounded: 10 s).
struct Holder {
    log: Log,
    release: Arc<AtomicBool>,
}

impl WebWorker for Holder {
    async fn handle_get(&mut self, ctx: &mut Context, req: &Request) -> Response {
        lock(&self.log).push(format!("+GET {}", req.path()));
        let end = Instant::now() + Duration::from_secs(10);
        while !self.release.load(Ordering::Acquire) && Instant::now() < end {
            ctx.sleep(Duration::from_millis(10)).await;
        }
        Response::text("held")
    }
}

/// Asks its pool about heads; answers requests itself (so an answer that is not the pool's
/// 503 shows that the head was let through).
struct Front(WebHandler);

impl Handler for Front {
    fn handle(&self, req: WebRequest) {
        req.respond(Response::text("handled"));
    }
    fn check_head(&self, req: &Request) -> Option<Response> {
        self.0.check_head(req)
    }
}

/// The server's handler: `/boom`'s head check panics (after logging it); `/probe` asks
/// `answer_at_once` on its shard what `Front` answers a POST announcing a body and
/// `Expect: 100-continue`; anything else goes to the pool.
struct Probe {
    pool: WebHandler,
    log: Log,
}

impl Handler for Probe {
    fn handle(&self, req: WebRequest) {
        if req.request().path() != "/probe" {
            return self.pool.handle(req);
        }
        let upload =
            Request::new(Method::Post, "/x").with_header("content-length", "5").with_header("expect", "100-continue");
        let answer = answer_at_once(&Front(self.pool.clone()), upload);
        req.respond(Response::text(match answer {
            Some(r) if r.status == StatusCode::SERVICE_UNAVAILABLE => "503".to_owned(),
            Some(r) => format!("{} {}", r.status.0, String::from_utf8_lossy(r.body_bytes())),
            None => "none".to_owned(),
        }));
    }
    fn check_head(&self, req: &Request) -> Option<Response> {
        if req.path() == "/boom" {
            lock(&self.log).push("boom".to_owned());
            panic!("check_head asked to panic");
        }
        self.pool.check_head(req)
    }
}

/// Stop 33's `checking_head` flag (an unsafe request's head checked behind others: a pool
/// lets it through) is set around `Handler::check_head`, whose panic the connection catches
/// outside it: the flag stayed set on the shard. A full pool's head check asked later on
/// that shard outside a connection (`answer_at_once`, "callable anywhere, a handler's own
/// dispatch included") then let the head through as one that waits: the handler ran for a
/// request the pool would refuse (200 where 503).
#[test]
fn a_panic_in_check_head_leaves_no_waiting_flag_behind() {
    let node = start_node("r61-flag", 1);
    let log: Log = Arc::default();
    let release = Arc::new(AtomicBool::new(false));
    let (worker_log, worker_release) = (log.clone(), release.clone());
    let options =
        pinion::PoolOptions::new(1, 0, move || Holder { log: worker_log.clone(), release: worker_release.clone() });
    let pool = node.spawn(move || pinion::Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let pool =
        WebHandler::new(WebHandlerOptions { request_timeout: Duration::from_secs(20), ..WebHandlerOptions::new(pool) });
    let server = serve_with(&node, HttpLimits::default(), Probe { pool, log: log.clone() });

    // The pool's one worker holds a GET; a POST behind it whose head check panics.
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /hold HTTP/1.1\r\nHost: a\r\n\r\n");
    wait_until("the pool to hold the GET", || lock(&log).iter().any(|e| e == "+GET /hold"));
    c.send(b"POST /boom HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    wait_until("the panic", || lock(&log).iter().any(|e| e == "boom"));

    // The pool is full: the head of an upload to it is refused.
    let mut probe = Client::connect(server.local_addr());
    probe.send(b"GET /probe HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = probe.response();
    let got = (r.status, r.text());

    release.store(true, Ordering::Release);
    let held = c.response();
    assert_eq!((held.status, held.text().as_str()), (200, "held"), "{held:?}");
    assert_eq!(c.response().status, 500);
    drop((c, probe));
    server.stop();
    node.stop();
    assert_eq!(got, (200, "503".to_owned()), "answer_at_once's head check on the shard after the panic");
}
