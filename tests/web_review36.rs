//! Review 36 (stop 31): the router, the middleware and the request layer. Its failing tests
//! (a per-client rate limit put every IPv4 client of a dual-stack listener in one bucket; a
//! wildcard CORS answer without `Origin` did not vary with it; a hook that marked a held
//! answer streamed stalled the connection) and what it checked, kept.

mod review_support;

use std::net::SocketAddr;

use pinion::http::{HttpLimits, Method, Request, Response, StatusCode};
use pinion::web::{
    Cors, Handler, RequestSummary, Router, WebRequest, answer_at_once, bearer, body_limit, guard, hook, rate_limit,
    request_log,
};
use review_support::*;

fn ok(_: &Request) -> Response {
    Response::text("ok")
}

fn status(r: Option<Response>) -> Option<u16> {
    r.map(|r| r.status.0)
}

/// A handler that streams "abc" then finishes, during its dispatch.
struct Streamer;
impl Handler for Streamer {
    fn handle(&self, req: WebRequest) {
        let mut s = req.respond_stream(Response::new(StatusCode::OK));
        s.send("abc");
        s.finish();
    }
}

#[test]
fn per_client_rate_limit_keys_ipv4_mapped_clients_apart() {
    let router = Router::new().get("/", ok).layer(rate_limit(1, 1).per_client());
    let a: SocketAddr = "[::ffff:192.0.2.1]:4000".parse().unwrap();
    let b: SocketAddr = "[::ffff:198.51.100.7]:4000".parse().unwrap();
    let req = |p| Request::new(Method::Get, "/").with_peer_addr(p);
    assert_eq!(status(answer_at_once(&router, req(a))), Some(200));
    // Another IPv4 client (as a dual-stack listener sees it) has its own bucket.
    assert_eq!(status(answer_at_once(&router, req(b))), Some(200));
}

/// A hook on `/s` only: replaces the answer (`replace`) or panics.
fn on_s(replace: bool) -> impl Fn(&RequestSummary<'_>, &mut Response) + Send + Sync + 'static {
    move |s: &RequestSummary<'_>, resp: &mut Response| {
        if s.request.path() == "/s" {
            assert!(replace, "a hook bug");
            *resp = Response::text("replaced");
        }
    }
}

/// Serves `router`, sends `GET /s` and `GET /next` pipelined, and reads both answers; then,
/// a moment later, one more request on the same connection.
fn streamed_then_next(name: &str, router: Router) -> [Resp; 3] {
    let node = start_node(name, 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /s HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    let (first, second) = (c.response(), c.response());
    std::thread::sleep(std::time::Duration::from_millis(200));
    c.send(b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    let third = c.response();
    node.stop();
    [first, second, third]
}

/// Streams "abc" from another thread, after the dispatch.
struct LateStreamer;
impl Handler for LateStreamer {
    fn handle(&self, req: WebRequest) {
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let mut s = req.respond_stream(Response::new(StatusCode::OK));
            s.send("abc");
            std::thread::sleep(std::time::Duration::from_millis(20));
            s.send("def");
            s.finish();
        });
    }
}

/// A hook that replaces or panics on a streamed answer's head — given during the dispatch or
/// later from another thread — gets the replacement or a 500, and the requests behind it are
/// answered on the same connection.
#[test]
fn a_hook_replacing_or_panicking_on_a_streamed_head_keeps_the_connection_sane() {
    for late in [false, true] {
        for replace in [true, false] {
            let router =
                if late { Router::new().route("/s", LateStreamer) } else { Router::new().route("/s", Streamer) };
            let router = router.get("/next", ok).layer(hook(on_s(replace)));
            let [first, second, third] = streamed_then_next(&format!("r36-stream-{late}-{replace}"), router);
            let expected = if replace { (200, "replaced") } else { (500, "Internal Server Error") };
            assert_eq!((first.status, first.text().as_str()), expected, "late {late}, replace {replace}");
            assert_eq!(
                (second.text(), third.text()),
                ("ok".to_owned(), "ok".to_owned()),
                "late {late}, replace {replace}"
            );
        }
    }
}

/// Fetch §3.2.6 (CORS protocol and HTTP caches): a resource that sends
/// `Access-Control-Allow-Origin` only to requests with `Origin` must say `Vary: Origin`, or send
/// the field (a static `*`) on every answer: else a cached answer to a plain request (a
/// navigation, a `<img>`) is served to a later CORS request, without the field.
#[test]
fn wildcard_cors_answers_agree_with_and_without_origin_or_vary() {
    let router = Router::new().get("/data", ok).layer(Cors::default());
    let plain = answer_at_once(&router, Request::new(Method::Get, "/data")).expect("answered");
    let cors = answer_at_once(&router, Request::new(Method::Get, "/data").with_header("origin", "https://a.example"))
        .expect("answered");
    assert_eq!(cors.header_value("access-control-allow-origin"), Some(&b"*"[..]));
    let varies = |r: &Response| {
        r.headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("vary") && String::from_utf8_lossy(v).to_ascii_lowercase().contains("origin")
        })
    };
    let same = plain.header_value("access-control-allow-origin") == cors.header_value("access-control-allow-origin");
    assert!(same || varies(&plain), "plain: {:?}; cors: {:?}", plain.headers, cors.headers);
}

fn layered(which: usize) -> Router {
    let r = Router::new().get("/g", ok).post("/p", ok).route("/any", ok);
    match which {
        0 => r.layer(Cors::default()),
        1 => r.layer(Cors { origins: vec!["https://a.example".into()], credentials: true, ..Cors::default() }),
        2 => r.layer(bearer("r", "t")),
        3 => r.layer(rate_limit(1, 2)),
        4 => r.layer(request_log()),
        5 => r.layer(guard(|r: &Request| {
            (r.header("x-block").is_some()).then(|| Response::status(StatusCode::FORBIDDEN))
        })),
        6 => r.layer(hook(|_: &RequestSummary<'_>, resp: &mut Response| resp.set_header("x-h", "1"))),
        7 => r.layer(body_limit(4)),
        _ => r.layer(body_limit(4)).layer(bearer("r", "t")).layer(Cors::default()).layer(request_log()),
    }
}

fn comparable_at_once(r: &Response) -> (u16, Vec<(String, String)>) {
    let mut h: Vec<(String, String)> =
        r.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), String::from_utf8_lossy(v).into_owned())).collect();
    if let Some(ct) = &r.content_type {
        h.push(("content-type".into(), ct.to_string()));
    }
    h.retain(|(n, _)| !["date", "server", "content-length", "connection"].contains(&n.as_str()));
    h.sort();
    (r.status.0, h)
}

/// A request to send: method, target, fields.
type Probe = (&'static str, &'static str, Vec<(&'static str, &'static str)>);

/// `answer_at_once` and a socket agree, status and fields, for each built-in layer and all of
/// them stacked, on plain requests, preflights, `OPTIONS *`, 404, `Expect: 100-continue`
/// (which asks `check_head`), a body over a route's bound, and a burst over a rate.
#[test]
fn answer_at_once_agrees_with_a_socket_for_every_layer() {
    let node = start_node("r36-diff", 1);
    let mut diffs = Vec::new();
    let reqs: Vec<Probe> = vec![
        ("GET", "/g", vec![]),
        ("GET", "/g", vec![("origin", "https://a.example"), ("authorization", "Bearer t")]),
        ("HEAD", "/g", vec![("origin", "https://a.example")]),
        ("DELETE", "/g", vec![("origin", "https://a.example"), ("authorization", "Bearer t")]),
        ("OPTIONS", "/g", vec![("origin", "https://a.example"), ("access-control-request-method", "GET")]),
        ("OPTIONS", "/g", vec![("origin", "https://b.example"), ("access-control-request-method", "GET")]),
        ("OPTIONS", "*", vec![]),
        ("GET", "/none", vec![("x-block", "1")]),
        ("POST", "/p", vec![("content-length", "3"), ("expect", "100-continue"), ("authorization", "Bearer t")]),
        ("POST", "/p", vec![("content-length", "3"), ("expect", "100-continue"), ("origin", "https://a.example")]),
        ("POST", "/none", vec![("content-length", "3"), ("expect", "100-continue"), ("authorization", "Bearer t")]),
        ("POST", "/p", vec![("content-length", "9"), ("authorization", "Bearer t")]),
        ("GET", "/g", vec![]),
        ("GET", "/g", vec![]),
        ("GET", "/g", vec![]),
    ];
    for which in 0..9 {
        let sock_router = layered(which);
        let mem_router = layered(which);
        let server = serve_with(&node, HttpLimits::default(), sock_router);
        for (m, t, fields) in &reqs {
            let mut req = Request::new(Method::from_token(m).unwrap(), t);
            for (n, v) in fields {
                req = req.with_header(n, v);
            }
            let expects = fields.iter().any(|(n, _)| *n == "expect");
            if !expects && let Some((_, l)) = fields.iter().find(|(n, _)| *n == "content-length") {
                req = req.with_body("x".repeat(l.parse().unwrap()));
            }
            let mem = answer_at_once(&mem_router, req).map(|r| comparable_at_once(&r));
            let mut c = Client::connect(server.local_addr());
            let mut raw = format!("{m} {t} HTTP/1.1\r\nHost: x\r\n");
            for (n, v) in fields {
                raw += &format!("{n}: {v}\r\n");
            }
            raw += "\r\n";
            let expects = fields.iter().any(|(n, _)| *n == "expect");
            if !expects && let Some((_, l)) = fields.iter().find(|(n, _)| *n == "content-length") {
                raw += &"x".repeat(l.parse().unwrap());
            }
            c.send(raw.as_bytes());
            let mut head = c.head();
            if head.status == 100 {
                c.send(b"abc");
                head = c.head();
            }
            let mut h: Vec<(String, String)> =
                head.headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone())).collect();
            h.retain(|(n, _)| {
                !["date", "server", "content-length", "connection", "transfer-encoding"].contains(&n.as_str())
            });
            h.sort();
            let sock = (head.status, h);
            if Some(&sock) != mem.as_ref() {
                diffs.push(format!("layer {which} {m} {t} {fields:?}\n  at once: {mem:?}\n  socket:  {sock:?}"));
            }
        }
        drop(server);
    }
    node.stop();
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

/// `WebRequest::respond` promises a `Body::Streamed` response is sent with an empty body
/// (streams go through `respond_stream`), and `answer_at_once` shows it so; a response hook
/// that sets `Body::Streamed` on a held answer made the connection send
/// `Transfer-Encoding: chunked` and then wait for chunks that never come: the pipelined
/// request behind it is never answered.
#[test]
fn a_hook_that_marks_a_held_answer_streamed_does_not_stall_the_connection() {
    let router = || {
        Router::new().get("/a", ok).get("/next", ok).layer(hook(|s: &RequestSummary<'_>, resp: &mut Response| {
            if s.request.path() == "/a" {
                resp.body = pinion::http::Body::Streamed;
            }
        }))
    };
    let at_once = answer_at_once(&router(), Request::new(Method::Get, "/a")).expect("answered");
    assert_eq!(at_once.status.0, 200);
    let node = start_node("r36-hook-streamed-held", 1);
    let server = serve_with(&node, HttpLimits::default(), router());
    let mut c = Client::connect(server.local_addr());
    c.s.set_read_timeout(Some(std::time::Duration::from_secs(3))).unwrap();
    c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    for _ in 0..20 {
        if String::from_utf8_lossy(&c.buf).matches("HTTP/1.1 ").count() >= 2 {
            break;
        }
        match c.fill() {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let wire = String::from_utf8_lossy(&c.buf).into_owned();
    node.stop();
    assert_eq!(wire.matches("HTTP/1.1 ").count(), 2, "both answered: {wire:?}");
    assert!(!wire.contains("transfer-encoding"), "{wire:?}");
}

/// The same over a socket: an answer without `Origin` must not be cacheable for a CORS request.
#[test]
fn wildcard_cors_over_a_socket_plain_answer_has_allow_origin_or_vary() {
    let node = start_node("r36-cors-vary", 1);
    let server = serve_with(&node, HttpLimits::default(), Router::new().get("/data", ok).layer(Cors::default()));
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /data HTTP/1.1\r\nHost: x\r\n\r\n");
    let plain = c.response();
    c.send(b"GET /data HTTP/1.1\r\nHost: x\r\nOrigin: https://a.example\r\n\r\n");
    let cors = c.response();
    node.stop();
    assert_eq!(cors.header("access-control-allow-origin"), Some("*"));
    let varies =
        plain.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("vary") && v.to_ascii_lowercase().contains("origin"));
    assert!(plain.header("access-control-allow-origin") == Some("*") || varies, "plain: {:?}", plain.headers);
}
