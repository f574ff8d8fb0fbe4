//! Review 74: extension methods (RFC 9110 §16.1, commit 522afb8). The router's model
//! (`router_model60`, now with `on` routes, routes for every extension method and requests
//! with extension methods) found `OPTIONS *` leaving the tokens out of its `Allow`; the rest
//! was read and probed here: long tokens, a request's buffers reused on a connection (the
//! token is a range of its arena), pipelining, layers, CORS (no `Cors` could allow an
//! extension method), interop, a pool full or a worker panicking, the 504's copy of the head,
//! the logs and `Debug` (which named no token).

mod review_support;

use pinion::http::{Method, Request, Response, StatusCode};
use pinion::web::{Router, answer_at_once};

fn text(s: &'static str) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
    move |_: &Request| Response::text(s)
}

fn ask(router: &Router, token: &str, target: &str) -> Response {
    answer_at_once(router, Request::new(Method::Get, target).with_method_token(token)).expect("answered")
}

fn allow(resp: &Response) -> Option<String> {
    resp.header_value("allow").map(|a| String::from_utf8_lossy(a).into_owned())
}

/// `OPTIONS *` lists "every method its routes take when each route names its method"
/// (`Router`): an `on(token, ..)` route names its token, so it is listed; a route for every
/// extension method names none, so there is no `Allow`, as with a route for any method. (The
/// model found `OPTIONS *` leaving the tokens out: a client asking what the server takes was
/// told it takes no PROPFIND.)
#[test]
fn options_star_lists_the_tokens_of_extension_routes() {
    let router = Router::new().get("/a", text("a")).on("PROPFIND", "/dav", text("p")).on("MKCOL", "/dav", text("m"));
    let resp = ask(&router, "OPTIONS", "*");
    assert_eq!(
        (resp.status, allow(&resp).as_deref()),
        (StatusCode::NO_CONTENT, Some("GET, HEAD, OPTIONS, PROPFIND, MKCOL"))
    );
    let every = router.method(Method::Extension, "/any", text("any"));
    let resp = ask(&every, "OPTIONS", "*");
    assert_eq!(
        (resp.status, allow(&resp)),
        (StatusCode::NO_CONTENT, None),
        "a route for every extension method names none"
    );
}

// ---------------------------------------------------------------------------------------------
// Over a socket.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pinion::http::HttpLimits;
use pinion::web::{Cors, Layer, RequestSummary, WebHandler, WebWorker, guard, hook};
use pinion::{Context, Pool, PoolOptions, ProcessOptions};
use review_support::{Client, WAIT, lock, quiet_worker_panics, serve_with, start_node};

/// Answers with the method's token, the path, `x-a` and the body's length.
fn echo(req: &Request) -> Response {
    let a = req.header("x-a").map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default();
    Response::text(format!("{} {} [{a}] {}", req.method_token(), req.path(), req.body().len()))
}

/// A token as long as `n` (tchars all).
fn long_token(n: usize) -> String {
    "PROP-FIND.~!".chars().cycle().take(n).collect()
}

/// Pipelined requests alternating extension and known methods, read by the scanner and by
/// httparse (an empty line before the request line, obs-text in a value, more than 16
/// fields), with a big one between whose buffers the connection gives back (`shrink`): each
/// handler sees its own request's token, never a stale range of a reused arena.
#[test]
fn pipelined_extension_and_known_methods_keep_their_tokens_on_both_parsers() {
    let node = start_node("r74-pipelined", 1);
    let router = Router::new().method(Method::Extension, "/{*rest}", echo).route("/{*rest}", echo);
    let limits = HttpLimits { max_head_bytes: 64 * 1024, max_uri_bytes: 32 * 1024, ..HttpLimits::default() };
    let server = serve_with(&node, limits, router);
    let mut c = Client::connect(server.local_addr());
    let many: String = (0..20).map(|i| format!("X-F{i}: {i}\r\n")).collect();
    let big_field = "b".repeat(40_000);
    let big_body = "B".repeat(40_000);
    let long = long_token(3000);
    let requests: Vec<(String, String)> = vec![
        (
            "PROPFIND /a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nContent-Length: 3\r\n\r\nabc".to_owned(),
            "PROPFIND /a [1] 3".into(),
        ),
        ("GET /b HTTP/1.1\r\nHost: x\r\n\r\n".into(), "GET /b [] 0".into()),
        ("\r\nMKCOL /c HTTP/1.1\r\nHost: x\r\nX-A: 2\r\n\r\n".into(), "MKCOL /c [2] 0".into()),
        ("GET /d HTTP/1.1\r\nHost: x\r\nX-B: caf\u{e9}\r\n\r\n".into(), "GET /d [] 0".into()),
        (format!("BREW /e HTTP/1.1\r\nHost: x\r\n{many}X-A: 3\r\n\r\n"), "BREW /e [3] 0".into()),
        ("\nPOST /f HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi".into(), "POST /f [] 2".into()),
        (
            format!(
                "PURGE /g HTTP/1.1\r\nHost: x\r\nX-Big: {big_field}\r\nContent-Length: {}\r\n\r\n{big_body}",
                big_body.len()
            ),
            format!("PURGE /g [] {}", big_body.len()),
        ),
        ("get /h HTTP/1.1\r\nHost: x\r\n\r\n".into(), "get /h [] 0".into()),
        ("HEAD /i HTTP/1.1\r\nHost: x\r\n\r\n".into(), String::new()),
        ("head /j HTTP/1.1\r\nHost: x\r\n\r\n".into(), "head /j [] 0".into()),
        (format!("{long} /k HTTP/1.1\r\nHost: x\r\nX-A: 4\r\n\r\n"), format!("{long} /k [4] 0")),
        ("GET /l HTTP/1.1\r\nHost: x\r\n\r\n".into(), "GET /l [] 0".into()),
        (format!("\r\n{long} /m HTTP/1.1\r\nHost: x\r\nX-B: \u{e9}\r\n\r\n"), format!("{long} /m [] 0")),
        ("OPTIONS /n HTTP/1.1\r\nHost: x\r\n\r\n".into(), "OPTIONS /n [] 0".into()),
        ("MKCOL /o HTTP/1.0\r\nX-A: 5\r\n\r\n".into(), "MKCOL /o [5] 0".into()),
    ];
    let burst: String = requests.iter().map(|(r, _)| r.as_str()).collect();
    c.send(burst.as_bytes());
    for (i, (_, want)) in requests.iter().enumerate() {
        let mut r = c.head();
        if !want.is_empty() {
            c.body_of(&mut r);
        }
        assert_eq!((r.status, r.text()), (200, want.clone()), "request {i}");
    }
    c.assert_closed();
    server.stop();
    node.stop();
}

/// A long method token (more bytes than `max_uri_bytes`, within `max_head_bytes`) is routed
/// by an `on` route naming it, and answered 501 by a router that does not; one longer than the
/// head's bound gets the 431 of a head too large.
#[test]
fn a_long_method_token_is_routed_or_refused_by_its_bounds() {
    let node = start_node("r74-long", 1);
    let long = long_token(10_000);
    let router = Router::new().on(&long, "/x", echo).get("/x", echo);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    c.send(format!("{long} /x HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    assert_eq!(c.response().text(), format!("{long} /x [] 0"));
    let other = long_token(10_001);
    c.send(format!("{other} /x HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    let r = c.response();
    assert_eq!((r.status, r.header("allow")), (501, None), "a token no route names: {r:?}");
    c.send(b"PUT /x HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response();
    assert_eq!((r.status, r.header("allow")), (405, Some(&*format!("GET, HEAD, OPTIONS, {long}"))), "{r:?}");
    let huge = long_token(20_000);
    c.send(format!("{huge} /x HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    assert_eq!(c.response().status, 431);
    c.assert_closed();
    server.stop();
    node.stop();
}

/// Layers see an extension method's token: a `route_layer` wrapping an `on` route, a router
/// `guard` before it, the router's `hook` on its own 501 and 405.
#[test]
fn layers_see_extension_methods() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let router = Router::new()
        .on("PROPFIND", "/dav/{x}", echo)
        .route_layer(guard(|r: &Request| {
            (r.method_token() == "PROPFIND" && r.param("x") == Some("secret"))
                .then(|| Response::status(StatusCode::FORBIDDEN))
        }))
        .get("/page", echo)
        .layer(guard(|r: &Request| (r.method_token() == "LOCK").then(|| Response::status(StatusCode(423)))))
        .layer(hook(move |s: &RequestSummary<'_>, resp: &mut Response| {
            lock(&log).push(format!("{} {} {}", s.request.method_token(), s.request.path(), resp.status.0));
        }));
    let status = |token: &str, target: &str| ask(&router, token, target).status.0;
    assert_eq!(status("PROPFIND", "/dav/open"), 200);
    assert_eq!(status("PROPFIND", "/dav/secret"), 403);
    assert_eq!(status("LOCK", "/page"), 423);
    assert_eq!(status("BREW", "/page"), 501);
    assert_eq!(status("PROPFIND", "/page"), 405);
    assert_eq!(
        *lock(&seen),
        [
            "PROPFIND /dav/open 200",
            "PROPFIND /dav/secret 403",
            "LOCK /page 423",
            "BREW /page 501",
            "PROPFIND /page 405"
        ]
    );
}

/// A CORS preflight asking for an extension method. Without `Method::Extension` in
/// `Cors::methods` it is not allowed: the answer lists the known methods alone, and a browser
/// does not send the request. With it, every extension method is allowed: the preflight's
/// `Access-Control-Allow-Methods` names the token asked for (a browser compares the tokens
/// byte for byte). Before, `Method::Extension` was left out, so no `Cors` could let a page send
/// `PROPFIND` that the router takes. The same through the router's preflight of a route
/// wrapped in `Cors` alone.
#[test]
fn a_cors_preflight_for_an_extension_method_names_it_when_extension_methods_are_allowed() {
    let preflight = |router: &Router, target: &str, asked: &str| {
        let req = Request::new(Method::Options, target)
            .with_header("origin", "https://app.example")
            .with_header("access-control-request-method", asked);
        let resp = answer_at_once(router, req).expect("answered");
        let methods =
            resp.header_value("access-control-allow-methods").map(|m| String::from_utf8_lossy(m).into_owned());
        (resp.status.0, methods)
    };
    let known = "GET, HEAD, POST, PUT, PATCH, DELETE";
    let plain = Router::new().on("PROPFIND", "/dav", echo).layer(Cors::default());
    assert_eq!(preflight(&plain, "/dav", "PROPFIND"), (204, Some(known.to_owned())), "not allowed");
    let mut cors = Cors::default();
    cors.methods.push(Method::Extension);
    let dav = Router::new().on("PROPFIND", "/dav", echo).layer(cors.clone());
    assert_eq!(preflight(&dav, "/dav", "PROPFIND"), (204, Some(format!("{known}, PROPFIND"))));
    assert_eq!(preflight(&dav, "/dav", "propfind"), (204, Some(format!("{known}, propfind"))));
    assert_eq!(preflight(&dav, "/dav", "PUT"), (204, Some(known.to_owned())), "a known method is listed or not");
    assert_eq!(preflight(&dav, "/dav", "BAD METHOD"), (204, Some(known.to_owned())), "no token: nothing added");
    let only = Cors { methods: vec![Method::Extension], ..Cors::default() };
    let dav = Router::new().on("PROPFIND", "/dav", echo).layer(only.clone());
    assert_eq!(preflight(&dav, "/dav", "PROPFIND"), (204, Some("PROPFIND".to_owned())));
    // A route of its own wrapped in `Cors`: the router asks it about the method asked for.
    let routed = Router::new().on("PROPFIND", "/dav", only.wrap(Arc::new(echo))).get("/dav", echo);
    assert_eq!(preflight(&routed, "/dav", "PROPFIND"), (204, Some("PROPFIND".to_owned())));
}

/// A request with an extension method, read off the wire (scanner and httparse), converts to
/// `http::Request` and back with its token (a long one too: `http` keeps one past 15 bytes
/// apart; a lower-case `get` stays an extension method on both sides).
#[cfg(feature = "interop")]
#[test]
fn interop_round_trips_a_wire_request_with_its_token() {
    use pinion::http::http;
    let node = start_node("r74-interop", 1);
    let round = |req: &Request| {
        let h = http::Request::<Vec<u8>>::try_from(req).expect("to http");
        let ext = http::Method::try_from(h.method().as_str()).expect("a method") != http::Method::GET;
        let back = Request::try_from(h).expect("back");
        assert_eq!((back.method(), back.method_token()), (req.method(), req.method_token()));
        Response::text(format!("{} {} {ext}", back.method_token(), back.body().len()))
    };
    let server = serve_with(&node, HttpLimits::default(), Router::new().route("/{*rest}", round));
    let mut c = Client::connect(server.local_addr());
    let long = long_token(40);
    for (head, want) in [
        ("PROPFIND /a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab".to_owned(), "PROPFIND 2 true".to_owned()),
        ("\r\nMKCOL /b HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(), "MKCOL 0 true".to_owned()),
        (format!("{long} /c HTTP/1.1\r\nHost: x\r\n\r\n"), format!("{long} 0 true")),
        ("get /d HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(), "get 0 true".to_owned()),
        ("GET /e HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(), "GET 0 false".to_owned()),
    ] {
        c.send(head.as_bytes());
        assert_eq!(c.response().text(), want);
    }
    server.stop();
    node.stop();
}

/// What the pool workers did, in order (`+PROPFIND /p` when a handler starts, `-…` when it
/// ends), and the door `/hold…` waits for.
#[derive(Default)]
struct Shared {
    log: Mutex<Vec<String>>,
    door: AtomicBool,
}

/// Takes GET and extension methods: `/hold…` waits for the door, `/boom` panics.
struct Held(Arc<Shared>);

impl Held {
    async fn run(&mut self, ctx: &mut Context, req: &Request) -> Response {
        let what = format!("{} {}", req.method_token(), req.path());
        lock(&self.0.log).push(format!("+{what}"));
        assert!(req.path() != "/boom", "the worker panics on /boom");
        let end = std::time::Instant::now() + WAIT;
        while req.path().starts_with("/hold") && !self.0.door.load(Ordering::Acquire) && std::time::Instant::now() < end
        {
            ctx.sleep(Duration::from_millis(2)).await;
        }
        lock(&self.0.log).push(format!("-{what}"));
        Response::text(what)
    }
}

impl WebWorker for Held {
    async fn handle_get(&mut self, ctx: &mut Context, req: &Request) -> Response {
        self.run(ctx, req).await
    }
    async fn handle_other(&mut self, ctx: &mut Context, req: &Request) -> Response {
        self.run(ctx, req).await
    }
}

fn held_pool(node: &pinion::Node, size: usize, mailbox: usize) -> (pinion::Pid, Arc<Shared>) {
    let shared = Arc::new(Shared::default());
    let s = shared.clone();
    let options = PoolOptions::new(size, mailbox, move || Held(s.clone()));
    let pool = node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    (pool, shared)
}

/// A WebHandler to a full pool answers an extension method 503 at once (with `Retry-After`),
/// and from its head alone to a client waiting for `100 Continue`; a worker panicking in
/// `handle_other` gets its request 500, and the connection goes on.
#[test]
fn a_full_pool_and_a_panicking_worker_answer_extension_methods_503_and_500() {
    quiet_worker_panics();
    let node = start_node("r74-pool", 1);
    let (pool, shared) = held_pool(&node, 1, 1);
    let server = serve_with(&node, HttpLimits::default(), WebHandler::to(pool));
    let addr = server.local_addr();
    // One in the worker, one in its mailbox: the pool holds 2.
    let mut held: Vec<Client> = (0..2).map(|_| Client::connect(addr)).collect();
    for (i, c) in held.iter_mut().enumerate() {
        c.send(format!("MKCOL /hold/{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    let h = node.handle();
    review_support::wait_until("2 held", || h.pool(pool).expect("pool").info().held == 2);
    let mut c = Client::connect(addr);
    c.send(b"PROPFIND /over HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab");
    let r = c.response();
    assert_eq!((r.status, r.header("retry-after")), (503, Some("1")), "{r:?}");
    c.send(b"PROPFIND /over HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 503, "from the head, before the upload: {r:?}");
    shared.door.store(true, Ordering::Release);
    for (i, mut c) in held.into_iter().enumerate() {
        assert_eq!(c.response().text(), format!("MKCOL /hold/{i}"));
    }
    let mut c = Client::connect(addr);
    c.send(b"BREW /boom HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().status, 500);
    c.send(b"BREW /after HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().text(), "BREW /after", "a replacement worker answers");
    server.stop();
    node.stop();
}

/// An extension method is not safe: pipelined behind a GET still in a worker, it waits for
/// the GET's answer, and the GET behind it for its own (RFC 9112 §9.3.2), with a second
/// worker free all along.
#[test]
fn a_pipelined_extension_method_is_handed_out_alone() {
    let node = start_node("r74-alone", 1);
    let (pool, shared) = held_pool(&node, 2, 4);
    let server = serve_with(&node, HttpLimits::default(), WebHandler::to(pool));
    let addr = server.local_addr();
    let mut c = Client::connect(addr);
    c.send(
        b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\nPROPFIND /p HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    review_support::wait_until("the GET started", || lock(&shared.log).contains(&"+GET /hold".to_owned()));
    // The other worker is free: a request on another connection is answered meanwhile.
    let mut other = Client::connect(addr);
    other.send(b"GET /probe HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(other.response().text(), "GET /probe");
    assert!(!lock(&shared.log).iter().any(|l| l.contains("/p") && !l.contains("/probe")), "{:?}", lock(&shared.log));
    shared.door.store(true, Ordering::Release);
    for want in ["GET /hold", "PROPFIND /p", "GET /c"] {
        assert_eq!(c.response().text(), want);
    }
    let log: Vec<String> = lock(&shared.log).iter().filter(|l| !l.contains("/probe")).cloned().collect();
    assert_eq!(log, ["+GET /hold", "-GET /hold", "+PROPFIND /p", "-PROPFIND /p", "+GET /c", "-GET /c"]);
    server.stop();
    node.stop();
}

/// Records the lines logged under `pinion::web` (this binary's one logger).
struct WebLog;

static WEB_LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl log::Log for WebLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == "pinion::web"
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            lock(&WEB_LINES).push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

/// A response hook that panics is logged with the request's method: an extension method's
/// token, as the access log names it (it said `extension method`, whatever the token).
#[test]
fn a_panicking_hook_is_logged_with_the_extension_methods_token() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&WebLog).expect("the one logger of this binary");
        log::set_max_level(log::LevelFilter::Info);
    });
    let router =
        Router::new().on("PROPFIND", "/dav/{*rest}", echo).layer(hook(|s: &RequestSummary<'_>, _: &mut Response| {
            assert!(s.request.path() != "/dav/hook-panics", "the hook panics");
        }));
    assert_eq!(ask(&router, "PROPFIND", "/dav/hook-panics").status, StatusCode::INTERNAL_SERVER_ERROR);
    let lines: Vec<String> = lock(&WEB_LINES).iter().filter(|l| l.contains("/dav/hook-panics")).cloned().collect();
    assert!(lines.len() == 1 && lines[0].contains("PROPFIND /dav/hook-panics"), "{lines:?}");
}

/// A request's `Debug` names an extension method's token (two requests with different ones
/// printed alike, `method: Extension`).
#[test]
fn a_requests_debug_names_its_extension_method() {
    let req = Request::new(Method::Get, "/dav").with_method_token("PROPFIND");
    let shown = format!("{req:?}");
    assert!(shown.contains("Extension") && shown.contains("\"PROPFIND\""), "{shown}");
    assert!(!format!("{:?}", Request::new(Method::Get, "/")).contains("method_token"));
}

/// A router hook sees the runtime's 504 with the connection's copy of the request's head
/// (the request is with the worker then): an extension method's token is in that copy, also
/// when the copy's buffers were given back after a big head before it (`Hooked`, recycled per
/// thread) and when a known method's request came between.
#[test]
fn the_504s_hook_sees_the_extension_methods_token_in_the_copy_of_the_head() {
    use pinion::web::{WebHandlerOptions, WebTarget};
    let node = start_node("r74-504", 1);
    let (pool, shared) = held_pool(&node, 4, 4);
    let options = WebHandlerOptions {
        request_timeout: Duration::from_millis(100),
        ..WebHandlerOptions::new(WebTarget::Pid(pool))
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let router = Router::new().route("/{*rest}", WebHandler::new(options)).layer(hook(
        move |s: &RequestSummary<'_>, resp: &mut Response| {
            lock(&log).push(format!("{} {} {}", s.request.method_token(), s.request.path(), resp.status.0));
        },
    ));
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    let big = "v".repeat(6000);
    let sends = [
        format!("MKCOL /big HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"),
        "PROPFIND /hold/1 HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        "GET /hold/2 HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
        "BREW /hold/3 HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
    ];
    for (send, want) in sends.iter().zip([200, 504, 504, 504]) {
        c.send(send.as_bytes());
        assert_eq!(c.response().status, want, "{}", &send[..20]);
    }
    assert_eq!(*lock(&seen), ["MKCOL /big 200", "PROPFIND /hold/1 504", "GET /hold/2 504", "BREW /hold/3 504"]);
    shared.door.store(true, Ordering::Release);
    server.stop();
    node.stop();
}
