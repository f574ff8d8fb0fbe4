//! Review 64: the middleware layers (auth, CORS, request log, rate limit, guard, hook) as a
//! demanding user of a web framework sees them, over real sockets.

mod review_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pinion::http::{HttpLimits, Method, Request, Response, StatusCode};
use pinion::web::{
    Cors, Handler, Layer, RequestSummary, Router, WebRequest, answer_at_once, bearer, guard, hook, rate_limit,
    request_log,
};
use review_support::*;

fn hello(_: &Request) -> Response {
    Response::text("hello")
}

fn request_id() -> impl Layer {
    hook(|_: &RequestSummary<'_>, resp: &mut Response| resp.set_header("x-request-id", "r1"))
}

/// A check that panics on a head (a guard here; an auth check or a route's `check_head` alike)
/// under layers that hook answers: the 500 carries the CORS fields and the request id, whether
/// the client sent its body or waits for `100 Continue` — as the 500 of a handler that panics
/// does. Before, the panic inside `check_head` escaped the hooking layers, and the
/// connection's own 500 went out bare (a browser saw a CORS failure, the log no line).
#[test]
fn a_check_that_panics_on_the_head_alone_answers_a_hooked_500() {
    let router = Router::new()
        .post("/p", hello)
        .layer(guard(|r: &Request| -> Option<Response> {
            assert!(r.header("x-boom").is_none(), "a guard that panics on x-boom, as the test asked");
            None
        }))
        .layer(Cors::default())
        .layer(request_id());
    let node = start_node("r64-head-panic", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let head = "POST /p HTTP/1.1\r\nHost: x\r\nOrigin: http://a.example\r\nX-Boom: 1\r\nContent-Length: 1\r\n";
    for (ask, expects) in [(format!("{head}\r\nb"), false), (format!("{head}Expect: 100-continue\r\n\r\n"), true)] {
        let mut c = Client::connect(server.local_addr());
        c.send(ask.as_bytes());
        let mut resp = c.head();
        let fields = (resp.status, resp.header("access-control-allow-origin"), resp.header("x-request-id"));
        assert_eq!(fields, (500, Some("*"), Some("r1")), "expects 100-continue: {expects}: {resp:?}");
        c.body_of(&mut resp);
        if expects {
            // Answered from the head: the body is not read, the connection closes.
            c.assert_closed();
        }
    }
    node.stop();
}

/// CORS on one route ([`Layer::wrap`], as the router's docs show for a layer on some routes):
/// a browser's preflight for that route's method gets the layer's answer (204 with the allow
/// fields), not the router's bare 204 with `Allow` — which a browser refuses, so the route
/// could never be called cross-origin (axum's `MethodRouter::layer` sees preflights alike). A
/// route without the layer, and a plain `OPTIONS`, keep the router's answer.
#[test]
fn cors_on_one_route_answers_that_routes_preflights() {
    let cors = Cors { origins: vec!["http://app.example".into()], ..Cors::default() };
    // A guard outside it that reads the path parameter sees it, as any head it is asked about.
    let known = guard(|r: &Request| (r.param("id") != Some("7")).then(|| Response::status(StatusCode::NOT_FOUND)));
    let router = Router::new()
        .post("/api/{id}", cors.wrap(Arc::new(hello)))
        .get("/api/{id}", hello)
        .delete("/items/{id}", known.wrap(cors.wrap(Arc::new(hello))))
        .put("/plain", hello);
    let node = start_node("r64-route-cors", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    let preflight = |path: &str, method: &str| {
        format!(
            "OPTIONS {path} HTTP/1.1\r\nHost: x\r\nOrigin: http://app.example\r\nAccess-Control-Request-Method: {method}\r\n\r\n"
        )
    };
    c.send(preflight("/api/7", "POST").as_bytes());
    let resp = c.response();
    let fields = (resp.status, resp.header("access-control-allow-origin"), resp.header("access-control-allow-methods"));
    assert_eq!(fields.0, 204, "{resp:?}");
    assert_eq!(fields.1, Some("http://app.example"), "{resp:?}");
    assert!(fields.2.is_some_and(|m| m.contains("POST")), "{resp:?}");
    assert_eq!(resp.header("vary"), Some("origin"), "{resp:?}");
    c.send(preflight("/items/7", "DELETE").as_bytes());
    let resp = c.response();
    assert_eq!((resp.status, resp.header("access-control-allow-origin")), (204, Some("http://app.example")));
    // The route itself answers with the allow field.
    c.send(b"POST /api/7 HTTP/1.1\r\nHost: x\r\nOrigin: http://app.example\r\nContent-Length: 0\r\n\r\n");
    let resp = c.response();
    assert_eq!((resp.status, resp.header("access-control-allow-origin")), (200, Some("http://app.example")));
    // The GET route on the same path has no CORS layer; a route elsewhere neither: the
    // router's own 204 with `Allow`, as a plain OPTIONS gets.
    for ask in [
        preflight("/api/7", "GET"),
        preflight("/plain", "PUT"),
        "OPTIONS /api/7 HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
    ] {
        c.send(ask.as_bytes());
        let resp = c.response();
        let fields = (resp.status, resp.header("access-control-allow-origin"), resp.header("allow").is_some());
        assert_eq!(fields, (204, None, true), "{ask:?}: {resp:?}");
    }
    node.stop();
}

/// The values of every `name` field of `resp`, split at commas (a list field however sent).
fn listed(resp: &Resp, name: &str) -> Vec<String> {
    let fields = resp.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
    fields.flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase())).collect()
}

/// A router with `Cors` mounted in one with `Cors` (an API's own policy inside an app's): one
/// `Access-Control-Allow-Origin` on the answer, the outer layer's (it answers the preflights
/// too), and `Vary` naming `Origin` once. Before, each layer added its own field: two
/// `Access-Control-Allow-Origin` fields, which a browser refuses as "multiple values" — the
/// API unreachable cross-origin from any page, its own origin included.
#[test]
fn cors_layers_nested_send_one_allow_origin() {
    let api = Router::new()
        .get("/api/items", |_: &Request| Response::text("[]").header("vary", "Accept-Encoding"))
        .layer(Cors { origins: vec!["http://app.example".into()], credentials: true, ..Cors::default() });
    let cors = Cors { origins: vec!["http://app.example".into()], ..Cors::default() };
    let router = Router::new().route("/api/{*rest}", api).layer(cors);
    let node = start_node("r64-nested-cors", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /api/items HTTP/1.1\r\nHost: x\r\nOrigin: http://app.example\r\n\r\n");
    let resp = c.response();
    assert_eq!(listed(&resp, "access-control-allow-origin"), ["http://app.example"], "{resp:?}");
    // The outer layer's policy: no credentials (its preflight allowed none).
    assert_eq!(resp.header("access-control-allow-credentials"), None, "{resp:?}");
    assert_eq!(listed(&resp, "vary"), ["accept-encoding", "origin"], "{resp:?}");
    node.stop();
}

/// The realm of `auth`'s default challenge is a quoted-string (RFC 9110 §11.5, §5.6.4): a
/// quote or backslash in it is escaped, so the challenge parses and names the realm given.
/// Before, `bearer("the \"main\" API", ..)` sent `Bearer realm="the "main" API"`: a client
/// reads the realm as `the ` and the rest as garbage.
#[test]
fn the_realm_of_the_challenge_is_a_well_formed_quoted_string() {
    let router = Router::new().get("/", hello).layer(bearer(r#"the "main" API \ v2"#, "t"));
    let at_once = answer_at_once(&router, Request::new(Method::Get, "/")).expect("answered");
    assert_eq!(at_once.status.0, 401);
    let challenge = at_once.header_value("www-authenticate").map(|v| String::from_utf8_lossy(v).into_owned());
    assert_eq!(challenge.as_deref(), Some(r#"Bearer realm="the \"main\" API \\ v2""#));
    // A line break in it is left out, not the whole field (a 401 MUST carry it: §11.6.1).
    let router = Router::new().get("/", hello).layer(bearer("two\r\nlines", "t"));
    let at_once = answer_at_once(&router, Request::new(Method::Get, "/")).expect("answered");
    assert_eq!(at_once.header_value("www-authenticate"), Some(&br#"Bearer realm="twolines""#[..]));
}

/// Requests a [`Hold`] keeps unanswered, for the test to answer.
type Kept = Arc<Mutex<Vec<WebRequest>>>;

/// Keeps every request it is handed, for the test to answer.
struct Hold(Kept);

impl Handler for Hold {
    fn handle(&self, req: WebRequest) {
        lock(&self.0).push(req);
    }
}

/// A [`Hold`], and what it keeps.
fn hold() -> (Hold, Kept) {
    let kept = Kept::default();
    (Hold(kept.clone()), kept)
}

/// The first request `kept` holds, once it has one.
fn held(kept: &Kept) -> WebRequest {
    wait_until("a held request", || !lock(kept).is_empty());
    lock(kept).remove(0)
}

/// Checked and sound: a layer sees an unsafe request pipelined behind another only once that
/// one is answered (RFC 9112 §9.3.2), and its refusal keeps the order; refused requests'
/// bodies are read off and the connection goes on; a refused request waiting for
/// `100 Continue` behind another is answered in its turn, without a `100`, and the
/// connection closes. Auth's 401 carries `WWW-Authenticate` (RFC 9110 §11.6.1), also to a HEAD
/// (without a body).
#[test]
fn layers_see_a_held_unsafe_request_in_its_turn_and_refusals_keep_order() {
    static ANSWERED: AtomicBool = AtomicBool::new(false);
    static SEEN: Mutex<Vec<(Method, bool)>> = Mutex::new(Vec::new());
    let (holder, kept) = hold();
    let router = Router::new()
        .get("/held", holder)
        .put("/put", hello)
        .post("/post", hello)
        .layer(guard(|r: &Request| {
            lock(&SEEN).push((r.method(), ANSWERED.load(Ordering::SeqCst)));
            r.header("x-no").is_some().then(|| Response::status(StatusCode::FORBIDDEN))
        }))
        .layer(bearer("api", "t"));
    let node = start_node("r64-held-layers", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    let auth = "Authorization: Bearer t\r\n";
    c.send(
        format!(
            "GET /held HTTP/1.1\r\nHost: x\r\n{auth}\r\n\
             PUT /put HTTP/1.1\r\nHost: x\r\n{auth}X-No: 1\r\nContent-Length: 3\r\n\r\nabc\
             POST /post HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
             HEAD /held HTTP/1.1\r\nHost: x\r\n\r\n\
             POST /post HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 5\r\n\r\nhello"
        )
        .as_bytes(),
    );
    let first = held(&kept);
    ANSWERED.store(true, Ordering::SeqCst);
    first.respond(Response::text("first"));
    let mut got = Vec::new();
    for _ in 0..3 {
        let r = c.response();
        got.push((r.status, r.header("www-authenticate").map(str::to_owned), r.text()));
    }
    let head = c.head();
    assert_eq!((head.status, head.header("www-authenticate")), (401, Some(r#"Bearer realm="api""#)), "{head:?}");
    let last = c.response();
    got.push((last.status, None, last.text()));
    let challenge = Some(r#"Bearer realm="api""#.to_owned());
    assert_eq!(
        got,
        [
            (200, None, "first".to_owned()),
            (403, None, "Forbidden".to_owned()),
            (401, challenge.clone(), "Unauthorized".to_owned()),
            (200, None, "hello".to_owned()),
        ]
    );
    // The guard saw the GET, then the PUT once the GET was answered, then the last POST.
    assert_eq!(*lock(&SEEN), [(Method::Get, false), (Method::Put, true), (Method::Post, true)]);

    // Behind a held GET, a PUT waiting for `100 Continue` without credentials: its 401 after
    // the GET's answer, no `100`, the connection closed.
    let mut c = Client::connect(server.local_addr());
    c.send(
        format!(
            "GET /held HTTP/1.1\r\nHost: x\r\n{auth}\r\n\
             PUT /put HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    );
    held(&kept).respond(Response::text("first"));
    assert_eq!(c.response().text(), "first");
    let refused = c.response();
    assert_eq!((refused.status, refused.header("www-authenticate")), (401, challenge.as_deref()), "{refused:?}");
    c.assert_closed();
    node.stop();
}

/// `request_log` logs one line per request that reaches it, also when no answer goes out: the
/// connection reset while its handler held it (two pipelined here) logs each with 499, as
/// nginx does, and the answers given after are not logged. Before, such requests left no
/// line at all (the hooks the connection kept were dropped with it).
#[test]
fn request_log_logs_a_request_whose_connection_closed_before_its_answer() {
    let _ = access_lines("");
    let (holder, kept) = hold();
    let router = Router::new().get("/gone/{n}", holder).layer(request_log());
    let node = start_node("r64-log-gone", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /gone/1 HTTP/1.1\r\nHost: x\r\n\r\nGET /gone/2 HTTP/1.1\r\nHost: x\r\n\r\n");
    let answers = [held(&kept), held(&kept)];
    let client = c.s.local_addr().expect("the client's address");
    // A reset, not a close: the connection ends at once (a close is a half-close to it).
    socket2::SockRef::from(&c.s).set_linger(Some(Duration::ZERO)).expect("linger 0");
    drop(c);
    wait_until("a line for each request", || access_lines("GET /gone/").len() == 2);
    for (line, n) in access_lines("GET /gone/").iter().zip(1..) {
        assert!(line.starts_with(&format!("{client} GET /gone/{n} 499 ")), "{line:?}");
    }
    for req in answers {
        req.respond(Response::text("late"));
    }
    // One line each still (the late answers went nowhere): a request after them is logged,
    // nothing more for them.
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /gone/3 HTTP/1.1\r\nHost: x\r\n\r\n");
    held(&kept).respond(Response::text("third"));
    assert_eq!(c.response().text(), "third");
    wait_until("the third's line", || access_lines("GET /gone/3 200 ").len() == 1);
    assert_eq!(access_lines("GET /gone/").len(), 3, "{:?}", access_lines(""));
    node.stop();
}

/// Checked and sound: a HEAD's answer through layers that add fields and replace the body
/// (a `hook`) and `Cors` carries the fields and no body (its `Content-Length` the GET's), and
/// the next answer on the connection is read whole; a pipelined burst over a rate limit is
/// answered in order, 429 with `Retry-After` past the burst.
#[test]
fn head_through_body_changing_layers_and_a_pipelined_burst_over_the_rate() {
    let router = Router::new()
        .get("/h", hello)
        .layer(hook(|_: &RequestSummary<'_>, resp: &mut Response| {
            *resp = Response::text("replaced").header("x-h", "1")
        }))
        .layer(Cors::default());
    let node = start_node("r64-head-burst", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    c.send(b"HEAD /h HTTP/1.1\r\nHost: x\r\nOrigin: http://a.example\r\n\r\nGET /h HTTP/1.1\r\nHost: x\r\n\r\n");
    let head = c.head();
    let fields = (head.status, head.header("x-h"), head.header("access-control-allow-origin"));
    assert_eq!(fields, (200, Some("1"), Some("*")), "{head:?}");
    assert_eq!(head.header("content-length"), Some("8"), "{head:?}");
    let answer = c.response();
    assert_eq!((answer.text(), answer.header("vary")), ("replaced".to_owned(), Some("origin")), "{answer:?}");

    let limited = serve_with(&node, HttpLimits::default(), Router::new().get("/r", hello).layer(rate_limit(1, 2)));
    let mut c = Client::connect(limited.local_addr());
    c.send(&[get("/r"), get("/r"), get("/r"), get("/r")].concat());
    let answers: Vec<_> =
        (0..4).map(|_| c.response()).map(|r| (r.status, r.header("retry-after").map(str::to_owned))).collect();
    let over = (429, Some("1".to_owned()));
    assert_eq!(answers, [(200, None), (200, None), over.clone(), over]);
    node.stop();
}

/// Checked and sound: a stream begun after the handler returned (by whoever holds the request)
/// gets the CORS fields and the request id on its head, and one access line with the head's
/// status; to a HEAD, the head alone.
#[test]
fn a_stream_begun_later_is_hooked_and_logged_once() {
    let _ = access_lines("");
    let cors = Cors { origins: vec!["http://app.example".into()], ..Cors::default() };
    let (holder, kept) = hold();
    let router = Router::new().get("/later", holder).layer(cors).layer(request_log()).layer(request_id());
    let node = start_node("r64-stream-later", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    for method in ["GET", "HEAD"] {
        c.send(format!("{method} /later HTTP/1.1\r\nHost: x\r\nOrigin: http://app.example\r\n\r\n").as_bytes());
        let mut stream = held(&kept).respond_stream(Response::new(StatusCode::CREATED));
        stream.send("one ");
        stream.send("two");
        stream.finish();
        let mut resp = c.head();
        let fields = (resp.status, resp.header("access-control-allow-origin"), resp.header("x-request-id"));
        assert_eq!(fields, (201, Some("http://app.example"), Some("r1")), "{method}: {resp:?}");
        if method == "GET" {
            c.body_of(&mut resp);
            assert_eq!(resp.text(), "one two");
        }
    }
    // Nothing after the HEAD's head: the next answer is read whole.
    c.send(b"GET /later HTTP/1.1\r\nHost: x\r\n\r\n");
    held(&kept).respond(Response::text("plain"));
    assert_eq!(c.response().text(), "plain");
    wait_until("three lines", || access_lines(" /later ").len() == 3);
    let lines = access_lines(" /later ");
    let statuses: Vec<_> = lines
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap_or("").to_owned() + " " + l.split(' ').nth(3).unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["GET 201", "HEAD 201", "GET 200"], "{lines:?}");
    node.stop();
}
