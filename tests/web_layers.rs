//! Middleware of one's own, composed with pinion's: what a trial of a developer writing
//! layers found (stop 30) — a fifth hook dropped silently (`Cors`'s among them), hooks that saw
//! a request rewritten by an inner layer for some answers and not for others, `answer_at_once`
//! skipping what the connection asks of a head — and the `hook` and `guard` layers that forward
//! `check_head` and `body_limit` for the common cases.

mod review_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pinion::http::{HttpLimits, Method, Request, Response, StatusCode};
use pinion::web::{
    Cors, Handler, Layer, RequestSummary, Router, WebHandler, WebHandlerOptions, WebRequest, WebWorker, answer_at_once,
    bearer, body_limit, guard, hook,
};
use pinion::{Context, ProcessOptions};
use review_support::*;

/// A layer adding `x-tag: <tag>` to every answer.
fn tag(t: &'static str) -> impl Layer {
    hook(move |_: &RequestSummary<'_>, resp: &mut Response| resp.headers.push(("x-tag".into(), t.as_bytes().into())))
}

/// The `x-tag` values of `resp`, in order.
fn tags(resp: &Response) -> Vec<String> {
    resp.headers.iter().filter(|(n, _)| n == "x-tag").map(|(_, v)| String::from_utf8_lossy(v).into_owned()).collect()
}

/// A route wrapped in `Cors` under five layers that each hook the answer: six hooks on one
/// request, all run (before, four were the most a request carried, and the innermost —
/// `Cors`'s, losing `Access-Control-Allow-Origin` and `Vary` — was dropped silently), at once
/// and over a socket alike.
#[test]
fn every_hook_runs_however_many_layers_add_one() {
    let cors = Cors::default();
    let route = cors.wrap(Arc::new(|_: &Request| Response::text("x")));
    let router = Router::new()
        .route("/public", route)
        .layer(tag("a"))
        .layer(tag("b"))
        .layer(tag("c"))
        .layer(tag("d"))
        .layer(tag("e"));
    let request = || Request::new(Method::Get, "/public").with_header("origin", "https://a.example");
    let at_once = answer_at_once(&router, request()).expect("answered at once");
    // The innermost hook runs first.
    assert_eq!(tags(&at_once), ["a", "b", "c", "d", "e"]);
    assert_eq!(at_once.header_value("access-control-allow-origin"), Some(&b"*"[..]));

    let node = start_node("web-layers-hooks", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /public HTTP/1.1\r\nHost: x\r\nOrigin: https://a.example\r\n\r\n");
    let resp = c.response();
    let got: Vec<&str> =
        resp.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("x-tag")).map(|(_, v)| v.as_str()).collect();
    assert_eq!(got, ["a", "b", "c", "d", "e"]);
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    node.stop();
}

/// Rewrites `/v1/<rest>` to `/<rest>` and hands the request on (as a user writes it: a new
/// request with the old one's fields).
struct StripV1(Arc<dyn Handler>);

fn strip_v1(r: &Request) -> Request {
    let target = r.target().strip_prefix("/v1").unwrap_or(r.target());
    r.headers().iter().fold(Request::new(r.method(), target), |n, (name, value)| n.with_header(name, value))
}

impl Handler for StripV1 {
    fn handle(&self, mut req: WebRequest) {
        let rewritten = strip_v1(req.request());
        *req.request_mut() = rewritten;
        self.0.handle(req);
    }
    fn check_head(&self, req: &Request) -> Option<Response> {
        self.0.check_head(&strip_v1(req))
    }
    fn body_limit(&self, req: &Request) -> Option<usize> {
        self.0.body_limit(&strip_v1(req))
    }
}

/// Answers after a second (the handler's timeout answers 504 first).
struct Slow;

impl WebWorker for Slow {
    async fn handle_get(&mut self, ctx: &mut Context, _: &Request) -> Response {
        ctx.sleep(Duration::from_secs(1)).await;
        Response::text("late")
    }
}

/// A hook outside a layer that rewrites the path sees the path as the client sent it, for an
/// answer and for the runtime's 504 alike (before: the new path for one, the old for the other,
/// so `request_log` logged the two inconsistently).
#[test]
fn hooks_see_the_request_as_it_was_when_hooked_whatever_answers() {
    let node = start_node("web-layers-rewrite", 1);
    let slow = node.spawn(|| Slow, ProcessOptions::default()).wait().expect("spawn");
    let slow = WebHandler::new(WebHandlerOptions {
        request_timeout: Duration::from_millis(100),
        ..WebHandlerOptions::new(slow)
    });
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let inner: Arc<dyn Handler> =
        Arc::new(Router::new().get("/fast", |_: &Request| Response::text("fast")).route("/slow", slow));
    let router =
        Router::new().fallback(StripV1(inner)).layer(hook(move |s: &RequestSummary<'_>, resp: &mut Response| {
            lock(&record).push((s.request.path().to_owned(), resp.status.0));
        }));
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    for path in ["/v1/fast", "/v1/slow"] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        c.response();
    }
    assert_eq!(*lock(&seen), [("/v1/fast".to_owned(), 200), ("/v1/slow".to_owned(), 504)]);
    node.stop();
}

/// A request id on every answer, the 401 a client waiting for `100 Continue` gets before it
/// uploads among them (a hook added in `handle` alone misses that one: the trial's first
/// version), and a `guard` that refuses before the upload and keeps the route's body bound
/// (a wrapper that does not forward `body_limit` put the route back under the server's).
#[test]
fn hook_and_guard_layers_answer_the_head_alone_and_keep_inner_bounds() {
    let id = || hook(|_: &RequestSummary<'_>, resp: &mut Response| resp.set_header("x-request-id", "r1"));
    let key =
        || guard(|r: &Request| (r.header("x-key") != Some(b"k")).then(|| Response::status(StatusCode::FORBIDDEN)));
    let upload = |r: &Request| Response::text(format!("{} bytes", r.body().len()));
    let router = Router::new()
        .post("/authed", upload)
        .route("/big", Router::new().post("/big", upload).layer(body_limit(5000)).layer(key()))
        .route("/keyed", Router::new().post("/keyed", upload).layer(key()))
        .layer(bearer("api", "t"))
        .layer(id());
    let expecting = |path: &str| Request::new(Method::Post, path).with_header("expect", "100-continue");
    let authed = |r: Request| r.with_header("authorization", "Bearer t");

    // At once, as over a socket (below): the head's answers, and the route's bound.
    let refused = answer_at_once(&router, expecting("/authed")).expect("401");
    assert_eq!((refused.status.0, refused.header_value("x-request-id")), (401, Some(&b"r1"[..])));
    let forbidden = answer_at_once(&router, authed(expecting("/keyed"))).expect("403");
    assert_eq!((forbidden.status.0, forbidden.header_value("x-request-id")), (403, Some(&b"r1"[..])));
    let big = authed(Request::new(Method::Post, "/big").with_header("x-key", "k")).with_body(vec![b'b'; 5000]);
    assert_eq!(answer_at_once(&router, big).map(|r| r.status.0), Some(200));
    let too_big = authed(Request::new(Method::Post, "/big").with_header("x-key", "k")).with_body(vec![b'b'; 5001]);
    assert_eq!(answer_at_once(&router, too_big).map(|r| r.status.0), Some(413));

    let node = start_node("web-layers-head", 1);
    let limits = HttpLimits { max_body_bytes: 1000, ..HttpLimits::default() };
    let server = serve_with(&node, limits, router);
    let addr = server.local_addr();
    // Refused from the head: no `100 Continue`, the answer hooked, the connection closed.
    for (head, status) in [
        ("POST /authed HTTP/1.1\r\nHost: x\r\nContent-Length: 900\r\nExpect: 100-continue\r\n\r\n", 401),
        (
            "POST /keyed HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Length: 900\r\nExpect: 100-continue\r\n\r\n",
            403,
        ),
    ] {
        let mut c = Client::connect(addr);
        c.send(head.as_bytes());
        let mut resp = c.head();
        assert_eq!((resp.status, resp.header("x-request-id")), (status, Some("r1")), "{head:?}");
        c.body_of(&mut resp);
        c.assert_closed();
    }
    // The guard forwards the route's bound: 5000 bytes pass the server's 1000.
    let mut c = Client::connect(addr);
    c.send(b"POST /big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nX-Key: k\r\nContent-Length: 5000\r\n\r\n");
    c.send(&[b'b'; 5000]);
    let resp = c.response();
    assert_eq!((resp.status, resp.text()), (200, "5000 bytes".to_owned()));
    node.stop();
}

/// `set_header` replaces every field of the name (a hook setting a field once), in any case;
/// `remove_header` takes them out; both treat `Content-Type` as the type.
#[test]
fn set_header_replaces_and_remove_header_removes() {
    let mut r = Response::text("x").header("x-id", "1").header("X-Id", "2").header("other", "o");
    r.set_header("x-ID", "3");
    let ids: Vec<_> =
        r.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("x-id")).map(|(_, v)| v.to_vec()).collect();
    assert_eq!(ids, [b"3".to_vec()]);
    r.set_header("content-type", "application/json");
    assert_eq!(r.header_value("content-type"), Some(&b"application/json"[..]));
    assert!(r.remove_header("OTHER"));
    assert!(!r.remove_header("other"));
    assert!(r.remove_header("content-type"));
    assert_eq!(r.header_value("content-type"), None);
}
