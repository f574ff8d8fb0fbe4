//! Review 67: a hostile review of the router's HEAD rule and pattern checks, the server-wide
//! OPTIONS rule, the request mutators, `is_client_gone` and review 64's middleware fixes,
//! over real sockets where the wire matters.

mod review_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pinion::http::{HttpLimits, Method, Request, Response};
use pinion::web::{
    Cors, Handler, RequestSummary, Router, WebRequest, answer_at_once, bearer, guard, hook, request_log,
};
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

/// The origins an answer allows (its `Access-Control-Allow-Origin` fields).
fn allowed_origins(resp: &Response) -> Vec<String> {
    let fields = resp.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("access-control-allow-origin"));
    fields.map(|(_, v)| String::from_utf8_lossy(v).into_owned()).collect()
}

/// `Cors` around another: the outermost layer's fields stand (its docs), also for an origin
/// it does not allow — it answers that origin's preflights 403, and its simple requests carry
/// no `Access-Control-Allow-Origin` either. Before, the inner layer's (or a handler's own)
/// field stayed on them: an app's list of origins was bypassed for every simple request by a
/// nested router's `Cors::default()` (any origin), while that origin's preflights were refused.
#[test]
fn an_outer_cors_that_refuses_an_origin_leaves_it_no_allow_field() {
    let api = Router::new()
        .get("/api/items", |_: &Request| Response::text("[]"))
        .get("/api/own", |_: &Request| Response::text("own").header("access-control-allow-origin", "*"))
        .layer(Cors::default());
    let app = Cors { origins: vec!["http://app.example".into()], ..Cors::default() };
    let router = Router::new().route("/api/{*rest}", api).layer(app);
    let ask = |method, target: &str, origin: &str| {
        let req = Request::new(method, target).with_header("origin", origin);
        let req = if method == Method::Options { req.with_header("access-control-request-method", "GET") } else { req };
        answer_at_once(&router, req).expect("answered at once")
    };
    // The outer layer refuses the other origin's preflight...
    assert_eq!(ask(Method::Options, "/api/items", "http://other.example").status.0, 403);
    // ...and allows none of its simple requests, the nested layer's or the handler's field.
    for target in ["/api/items", "/api/own"] {
        let resp = ask(Method::Get, target, "http://other.example");
        assert_eq!(allowed_origins(&resp), Vec::<String>::new(), "{target}: {resp:?}");
        let resp = ask(Method::Get, target, "http://app.example");
        assert_eq!(allowed_origins(&resp), ["http://app.example"], "{target}: {resp:?}");
    }
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

/// The status and body of `router`'s answer at once to `method` on `target`.
fn answer(router: &Router, method: Method, target: &str) -> (u16, String) {
    let resp = answer_at_once(router, Request::new(method, target)).expect("answered at once");
    (resp.status.0, String::from_utf8_lossy(resp.body_bytes()).into_owned())
}

/// Checked and sound: a HEAD request scanning past the GET route that takes it, over routes
/// of a pattern alike that match part of the path (their parameters written over the GET
/// route's, at the same ranges), still records the GET route's parameters; a HEAD route alike
/// added after both takes it, with its own names; a 405 lists the methods of every route on
/// the path, HEAD once.
#[test]
fn head_scanning_past_the_get_route_keeps_its_parameters() {
    let param =
        |name: &'static str| move |r: &Request| Response::text(format!("{name}={}", r.param(name).unwrap_or("-")));
    let router = Router::new()
        .get("/q/{x}/a", param("x"))
        .route("/q/{y}/b", param("y"))
        .post("/q/{w}/a", param("w"))
        .get("/p/{x}/a", param("x"))
        .route("/p/{y}/b", param("y"))
        .method(Method::Head, "/p/{z}/a", param("z"));
    assert_eq!(answer(&router, Method::Head, "/q/7/a"), (200, "x=7".to_owned()));
    assert_eq!(answer(&router, Method::Head, "/q/7/b"), (200, "y=7".to_owned()));
    assert_eq!(answer(&router, Method::Head, "/p/8/a"), (200, "z=8".to_owned()));
    assert_eq!(answer(&router, Method::Get, "/p/8/a"), (200, "x=8".to_owned()));
    let refused = answer_at_once(&router, Request::new(Method::Delete, "/p/8/a")).expect("answered at once");
    assert_eq!((refused.status.0, refused.header_value("allow")), (405, Some(&b"GET, HEAD, OPTIONS"[..])));
    let refused = answer_at_once(&router, Request::new(Method::Put, "/q/8/a")).expect("answered at once");
    assert_eq!(refused.header_value("allow"), Some(&b"GET, HEAD, POST, OPTIONS"[..]));
}

/// Checked and sound, over the wire: `OPTIONS http://host` (absolute-form, no path) asks about
/// the server — the router's 204, not the route on `/` that takes every method — while
/// `OPTIONS http://host/` is the route's; `OPTIONS *` the router's 204.
#[test]
fn options_for_an_absolute_form_without_a_path_over_the_wire() {
    let router = Router::new().route("/", text("root")).post("/items", text("posted"));
    let node = start_node("r67-options-abs", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    c.send(b"OPTIONS http://x HTTP/1.1\r\nHost: x\r\n\r\n");
    let resp = c.response();
    assert_eq!((resp.status, resp.text()), (204, String::new()), "{resp:?}");
    c.send(b"OPTIONS http://x/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().text(), "root");
    c.send(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().status, 204);
    node.stop();
}

/// Holds the requests to `/hold`; `/ask` answers, from the connection's shard, whether the
/// client of each held request is gone (`is_client_gone`), in order, then answers the held
/// requests of the clients still there.
#[derive(Clone, Default)]
struct Holder(Arc<Mutex<Vec<WebRequest>>>);

impl Handler for Holder {
    fn handle(&self, req: WebRequest) {
        if req.request().path() != "/ask" {
            return lock(&self.0).push(req);
        }
        let held: Vec<WebRequest> = lock(&self.0).drain(..).collect();
        let gone: Vec<String> = held.iter().map(|r| r.is_client_gone().to_string()).collect();
        for r in held.into_iter().filter(|r| !r.is_client_gone()) {
            r.respond(Response::text("kept"));
        }
        req.respond(Response::text(gone.join(",")));
    }
}

/// Checked and sound, over the wire: a request whose client reset is gone, and stays gone
/// when a new connection opens after it (under the token the first one left: the shard
/// reuses it), whose own held request is not gone.
#[test]
fn a_gone_client_stays_gone_when_a_new_connection_takes_its_token() {
    let holder = Holder::default();
    let node = start_node("r67-gone-token", 1);
    let server = serve_with(&node, HttpLimits::default(), holder.clone());
    let held = || lock(&holder.0).len();
    let mut quitter = Client::connect(server.local_addr());
    quitter.send(&get("/hold"));
    wait_until("the first request held", || held() == 1);
    socket2::SockRef::from(&quitter.s).set_linger(Some(Duration::ZERO)).expect("linger 0");
    drop(quitter);
    wait_until("the reset connection closed", || server.stats().connections == 0);
    let mut stays = Client::connect(server.local_addr());
    stays.send(&get("/hold"));
    wait_until("the second request held", || held() == 2);
    let mut asker = Client::connect(server.local_addr());
    asker.send(&get("/ask"));
    assert_eq!(asker.response().text(), "true,false");
    assert_eq!(stays.response().text(), "kept");
    node.stop();
}

/// A GET route and, added after it, a route for any method on a pattern alike (the other
/// methods' handler): HEAD goes where GET goes, as a GET route takes HEAD (RFC 9110 §9.3.2:
/// the same fields as to GET); only a HEAD route of its own takes HEAD from the GET route.
/// Before, the route for any method took HEAD there, while GET went to the GET route: a HEAD
/// answered by another handler than the GET it stands for.
#[test]
fn head_follows_get_past_a_route_for_any_method_added_after() {
    let router = Router::new()
        .get("/f/{x}", text("get"))
        .route("/f/{x}", text("any"))
        .get("/lit", text("get"))
        .route("/lit", text("any"))
        .get("/h/{x}", text("get"))
        .route("/h/{x}", text("any"))
        .method(Method::Head, "/h/{x}", text("head"));
    for target in ["/f/1", "/lit"] {
        assert_eq!(answer(&router, Method::Get, target).1, "get", "{target}");
        assert_eq!(answer(&router, Method::Head, target).1, "get", "{target}");
        assert_eq!(answer(&router, Method::Post, target).1, "any", "{target}");
    }
    assert_eq!(answer(&router, Method::Head, "/h/1").1, "head", "a HEAD route of its own still takes HEAD");
}

/// `answer_at_once`'s docs: a panic in a check of the head alone under a layer that hooks
/// answers is that layer's 500 (review 64's fix), not a panic of the call (the docs said it
/// panicked). Checked and sound; the docs now say so.
#[test]
fn a_check_that_panics_under_a_hooking_layer_is_a_500_at_once() {
    let router = Router::new()
        .post("/p", text("posted"))
        .layer(guard(|_: &Request| -> Option<Response> { panic!("a guard that panics, as the test asked") }))
        .layer(hook(|_: &RequestSummary<'_>, resp: &mut Response| resp.set_header("x-hooked", "1")));
    let req = Request::new(Method::Post, "/p")
        .with_header("content-length", "1")
        .with_header("expect", "100-continue")
        .with_body("b");
    let resp = answer_at_once(&router, req).expect("answered at once");
    assert_eq!((resp.status.0, resp.header_value("x-hooked")), (500, Some(&b"1"[..])));
}

/// Checked and sound: `request_log` writes one line per request that reaches it and none for
/// the connection's own refusals: a request answered from its head alone (a 401 before the
/// upload) has one line, not a second one from the request it never became; a body over the
/// server's bound (413, the connection's) has none; a request answered normally has one with
/// its status, not a 499 besides.
#[test]
fn request_log_writes_one_line_per_request_and_none_for_the_connections_refusals() {
    let _ = access_lines("");
    let router = Router::new().post("/r67log/{x}", text("posted")).layer(bearer("api", "t")).layer(request_log());
    let node = start_node("r67-log-lines", 1);
    let limits = HttpLimits { max_body_bytes: 16, ..HttpLimits::default() };
    let server = serve_with(&node, limits, router);
    let mut refused = Client::connect(server.local_addr());
    refused.send(b"POST /r67log/head HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    assert_eq!(refused.response().status, 401);
    let mut big = Client::connect(server.local_addr());
    big.send(b"POST /r67log/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Length: 100\r\n\r\n");
    assert_eq!(big.response().status, 413);
    let mut ok = Client::connect(server.local_addr());
    ok.send(b"POST /r67log/ok HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(ok.response().text(), "posted");
    drop((refused, big, ok));
    wait_until("the connections closed", || server.stats().connections == 0);
    node.stop();
    let lines = access_lines("/r67log/");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("POST /r67log/head 401 ")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("POST /r67log/ok 200 ")), "{lines:?}");
}
