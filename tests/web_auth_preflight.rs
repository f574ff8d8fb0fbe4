//! `auth` outside a `Cors` layer: a browser sends a CORS preflight without credentials (the
//! Fetch standard), so a 401 to it refused every cross-origin call the `Cors` within allows
//! (stop 34's list: "a route with auth outside its Cors answers a preflight 401"). A preflight
//! the check refuses now gets the answer a `Cors` layer within gives its head alone, if a
//! success that allows the origin; no handler runs for it, and everything else (the router's
//! own 204 with `Allow` too) is still refused 401.

mod review_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pinion::http::{HttpLimits, Request, Response};
use pinion::web::{Cors, Router, bearer};
use review_support::*;

fn preflight(path: &str, origin: &str, method: &str) -> Vec<u8> {
    format!("OPTIONS {path} HTTP/1.1\r\nHost: x\r\nOrigin: {origin}\r\nAccess-Control-Request-Method: {method}\r\n\r\n")
        .into_bytes()
}

#[test]
fn a_preflight_passes_an_auth_outside_its_cors_and_the_call_itself_is_checked() {
    let cors = Cors { origins: vec!["http://app.example".into()], ..Cors::default() };
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let api = move |_: &Request| {
        counted.fetch_add(1, Ordering::Relaxed);
        Response::text("data")
    };
    let router = Router::new().get("/api/data", api).layer(cors).layer(bearer("api", "s3cret"));
    let node = start_node("auth-preflight", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    // The preflight: the Cors layer's 204, though it carries no credentials.
    c.send(&preflight("/api/data", "http://app.example", "GET"));
    let r = c.response();
    assert_eq!((r.status, r.header("access-control-allow-origin")), (204, Some("http://app.example")), "{r:?}");
    assert_eq!(r.header("www-authenticate"), None, "{r:?}");
    // An origin the Cors layer refuses (403): the check's 401, not the layer's refusal.
    c.send(&preflight("/api/data", "http://evil.example", "GET"));
    assert_eq!(c.response().status, 401);
    // The call itself: 401 without the token, the data with it.
    c.send(b"GET /api/data HTTP/1.1\r\nHost: x\r\nOrigin: http://app.example\r\n\r\n");
    let r = c.response();
    assert_eq!((r.status, r.header("www-authenticate")), (401, Some("Bearer realm=\"api\"")), "{r:?}");
    c.send(b"GET /api/data HTTP/1.1\r\nHost: x\r\nOrigin: http://app.example\r\nAuthorization: Bearer s3cret\r\n\r\n");
    let r = c.response();
    assert_eq!(
        (r.status, r.text().as_str(), r.header("access-control-allow-origin")),
        (200, "data", Some("http://app.example"))
    );
    assert_eq!(runs.load(Ordering::Relaxed), 1, "only the authorized call ran the handler");
    drop(c);
    drop(server);
    node.stop();
}

/// A route that takes OPTIONS itself (here, a route for any method) answers nothing from the
/// head alone: a preflight without credentials is refused 401, and its handler never runs.
#[test]
fn a_preflight_never_runs_a_handler_behind_auth() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counted = runs.clone();
    let admin = move |_: &Request| {
        counted.fetch_add(1, Ordering::Relaxed);
        Response::text("secret")
    };
    let router = Router::new()
        .route("/admin", admin)
        .get("/page", |_: &Request| Response::text("page"))
        .layer(bearer("admin", "s3cret"));
    let node = start_node("auth-preflight-any", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    c.send(&preflight("/admin", "http://app.example", "DELETE"));
    let r = c.response();
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(runs.load(Ordering::Relaxed), 0);
    // A plain OPTIONS (no preflight): 401 as before.
    c.send(b"OPTIONS /admin HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response().status, 401);
    assert_eq!(runs.load(Ordering::Relaxed), 0);
    // A path whose routes take GET alone: the router would answer 204 with `Allow` (what the
    // path takes); without a Cors layer allowing the origin, that stays behind the 401.
    c.send(&preflight("/page", "http://app.example", "GET"));
    let r = c.response();
    assert_eq!((r.status, r.header("allow")), (401, None), "{r:?}");
    drop(c);
    drop(server);
    node.stop();
}
