//! Review 75: an adversarial reading of `auth`'s answer to CORS preflights (dfe165d, d984090),
//! the shard's bound on answers waiting for clients (4996426, 361b78e), `Ahead` (591ac98) and
//! the tests changed for extension methods (522afb8, fe99217).
//!
//! Found: `auth` passed any 2xx carrying `Access-Control-Allow-Origin` from the handlers within
//! to an unauthenticated preflight. A response hook that sets that field on every answer (a
//! hand-made CORS: common) put it on the router's 204 with `Allow` (the methods of a path, and
//! that it exists: 204 for a routed path, 401 for another) and on a `not_found` fallback's
//! answer (its body: a single-page app's index page), so both went out past the 401. Only a
//! preflight answer passes now: 204 with `Access-Control-Allow-Origin` and
//! `Access-Control-Allow-Methods`, and no `Allow`.

mod review_support;

use pinion::http::{HttpLimits, Request, Response};
use pinion::web::{Cors, RequestSummary, Router, bearer, hook};
use review_support::*;

fn preflight(path: &str, origin: &str, method: &str) -> Vec<u8> {
    format!("OPTIONS {path} HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: {method}\r\n\r\n")
        .into_bytes()
}

/// A hand-made CORS: every answer allows any origin.
fn allow_any_origin(_: &RequestSummary<'_>, resp: &mut Response) {
    resp.set_header("access-control-allow-origin", "*");
}

/// A hook inside `auth` that sets `Access-Control-Allow-Origin` on every answer: an
/// unauthenticated preflight must not read the router's 204 with `Allow` (what a path takes,
/// and that it exists) through it.
#[test]
fn a_hook_setting_allow_origin_does_not_let_a_refused_preflight_read_a_paths_methods() {
    let router = Router::new()
        .get("/admin/users", |_: &Request| Response::text("users"))
        .delete("/admin/users", |_: &Request| Response::text("deleted"))
        .layer(hook(allow_any_origin))
        .layer(bearer("admin", "s3cret"));
    let node = start_node("r75-hook-allow", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    c.send(&preflight("/admin/users", "http://evil.example", "DELETE"));
    let routed = c.response();
    assert_eq!((routed.status, routed.header("allow")), (401, None), "{routed:?}");
    // A path no route names: the same answer (the probe tells nothing apart).
    c.send(&preflight("/admin/nothing", "http://evil.example", "DELETE"));
    let unrouted = c.response();
    assert_eq!((unrouted.status, unrouted.header("allow")), (401, None), "{unrouted:?}");
    // With the credentials, the router's answer as before.
    c.send(b"OPTIONS /admin/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 204, "{r:?}");
    assert!(r.header("allow").is_some_and(|a| a.contains("DELETE")), "{r:?}");
    drop(c);
    drop(server);
    node.stop();
}

/// A `not_found` fallback answers from the head alone (a single-page app's index page); with
/// a hook that allows any origin, an unauthenticated preflight must not read it.
#[test]
fn a_refused_preflight_does_not_read_a_fallbacks_answer_behind_auth() {
    let router = Router::new()
        .get("/api/data", |_: &Request| Response::text("data"))
        .not_found(|_: &Request| Response::text("<html>the private app</html>"))
        .layer(hook(allow_any_origin))
        .layer(bearer("app", "s3cret"));
    let node = start_node("r75-hook-fallback", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    c.send(&preflight("/index.html", "http://evil.example", "GET"));
    let r = c.response();
    assert_eq!(r.status, 401, "{r:?}");
    assert!(!r.text().contains("private"), "{r:?}");
    // The same over `Expect: 100-continue` (the connection asks the head first).
    let mut c = Client::connect(server.local_addr());
    c.send(b"OPTIONS /index.html HTTP/1.1\r\nHost: x\r\nOrigin: http://evil.example\r\nAccess-Control-Request-Method: GET\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 401, "{r:?}");
    assert!(!r.text().contains("private"), "{r:?}");
    drop(c);
    drop(server);
    node.stop();
}

/// What still passes: a `Cors` layer's preflight answer within `auth`, with a hook between
/// (the hook may add fields to it), over `Expect: 100-continue` too.
#[test]
fn a_cors_preflight_answer_still_passes_auth_with_a_hook_between() {
    let cors = Cors { origins: vec!["http://app.example".into()], ..Cors::default() };
    let router = Router::new()
        .get("/api/data", |_: &Request| Response::text("data"))
        .layer(cors)
        .layer(hook(|_: &RequestSummary<'_>, resp: &mut Response| resp.set_header("x-frame-options", "DENY")))
        .layer(bearer("api", "s3cret"));
    let node = start_node("r75-cors-hook", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    c.send(&preflight("/api/data", "http://app.example", "GET"));
    let r = c.response();
    assert_eq!((r.status, r.header("access-control-allow-origin")), (204, Some("http://app.example")), "{r:?}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{r:?}");
    let mut c = Client::connect(server.local_addr());
    c.send(b"OPTIONS /api/data HTTP/1.1\r\nHost: x\r\nOrigin: http://app.example\r\nAccess-Control-Request-Method: GET\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    let r = c.response();
    assert_eq!((r.status, r.header("access-control-allow-origin")), (204, Some("http://app.example")), "{r:?}");
    drop(c);
    drop(server);
    node.stop();
}
