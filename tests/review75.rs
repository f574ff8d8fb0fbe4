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
//!
//! Found: the lone connection the shard's bound spares (361b78e) was never ended by the idle
//! timeout the commit left it to (its write returned through `cut_heaviest` before re-arming
//! its timer), and spun its shard (`write_and_count` queued a flush for a client that took
//! nothing, which judged the bound again and queued another: 300 000 turns in 200 ms).

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

/// The lone connection the shard's bound spares (361b78e) still runs into the idle timeout
/// when its client takes nothing: the commit leaves it to that timeout. Its write returned
/// early through `cut_heaviest` (the timer was never re-armed), and queued itself again there,
/// so the connection held its answer for as long as the client stayed.
#[test]
fn a_lone_client_that_takes_nothing_of_an_answer_over_the_bound_is_ended_by_the_idle_timeout() {
    let node = start_node("r75-lone-idle", 1);
    let limits = HttpLimits {
        max_stream_bytes_per_shard: 8 << 20,
        idle_timeout: std::time::Duration::from_millis(500),
        ..HttpLimits::default()
    };
    let router = Router::new().get("/", |_: &Request| Response::text("").body(vec![b'x'; 32 << 20]));
    let server = serve_with(&node, limits, router);
    let mut c = Client::connect(server.local_addr());
    c.send(&get("/"));
    wait_until("the answer counted", || server.stats().stream_bytes > 8 << 20);
    // Nothing read: the idle timeout ends the connection, and nothing stays counted.
    wait_until("the connection closed", || server.stats().connections == 0);
    assert_eq!(server.stats().stream_bytes, 0, "{:?}", server.stats());
    drop(c);
    drop(server);
    node.stop();
}

/// The same spared connection while its idle timeout is far off: the shard waits for the
/// client (its socket's readiness), it does not turn (write_and_count queued a flush for a
/// client that took nothing, and the flush judged the bound again and queued another: a busy
/// loop for as long as the client stayed).
#[test]
fn a_spared_connection_whose_client_takes_nothing_does_not_spin_its_shard() {
    let node = start_node("r75-lone-spin", 1);
    let limits = HttpLimits { max_stream_bytes_per_shard: 8 << 20, ..HttpLimits::default() };
    let router = Router::new().get("/", |_: &Request| Response::text("").body(vec![b'x'; 32 << 20]));
    let server = serve_with(&node, limits, router);
    let mut c = Client::connect(server.local_addr());
    c.send(&get("/"));
    wait_until("the answer counted", || server.stats().stream_bytes > 8 << 20);
    let turns = || node.handle().inspect().expect("inspect")[0].turns;
    std::thread::sleep(std::time::Duration::from_millis(50));
    let before = turns();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let after = turns();
    assert!(
        after - before < 1000,
        "the shard turned {} times in 200 ms, waiting for a client (a busy loop)",
        after - before
    );
    assert_eq!(server.stats().connections, 1, "spared: {:?}", server.stats());
    drop(c);
    drop(server);
    node.stop();
}

/// A drain while the spared connection's client takes nothing: the connection ends (its idle
/// timeout: its answer cannot be written), and nothing stays counted.
#[test]
fn a_drain_ends_a_spared_connection_whose_client_takes_nothing() {
    let node = start_node("r75-lone-drain", 1);
    let limits = HttpLimits {
        max_stream_bytes_per_shard: 8 << 20,
        idle_timeout: std::time::Duration::from_millis(500),
        ..HttpLimits::default()
    };
    let router = Router::new().get("/", |_: &Request| Response::text("").body(vec![b'x'; 32 << 20]));
    let server = serve_with(&node, limits, router);
    let mut c = Client::connect(server.local_addr());
    c.send(&get("/"));
    wait_until("the answer counted", || server.stats().stream_bytes > 8 << 20);
    server.drain();
    wait_until("the connection closed", || server.stats().connections == 0);
    assert_eq!(server.stats().stream_bytes, 0, "{:?}", server.stats());
    drop(c);
    drop(server);
    node.stop();
}

/// Only one connection is spared: three clients that take nothing of a 32 MiB answer each,
/// under an 8 MiB bound, leave one (what it holds: one answer), the others cut as slow.
#[test]
fn of_several_clients_over_the_bound_only_one_is_spared() {
    let node = start_node("r75-spare-one", 1);
    let limits = HttpLimits { max_stream_bytes_per_shard: 8 << 20, ..HttpLimits::default() };
    let router = Router::new().get("/", |_: &Request| Response::text("").body(vec![b'x'; 32 << 20]));
    let server = serve_with(&node, limits, router);
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(server.local_addr())).collect();
    for c in &mut clients {
        c.send(&get("/"));
    }
    wait_until("two cut", || server.stats().slow_clients == 2 && server.stats().connections == 1);
    let held = server.stats().stream_bytes;
    assert!(held > 0 && held <= 32 << 20, "{:?}", server.stats());
    drop(clients);
    wait_until("all closed", || server.stats().connections == 0);
    assert_eq!(server.stats().stream_bytes, 0, "{:?}", server.stats());
    drop(server);
    node.stop();
}
