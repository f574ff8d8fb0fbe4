//! Extension methods (RFC 9110 §16.1: the method registry is open): a method pinion has no
//! name for is `Method::Extension`, its token `Request::method_token`. The router sends it to
//! the routes that name it (`Router::on`), take every extension method or any method; one no
//! route names is answered 501, one a route names elsewhere 405 with `Allow` listing the
//! path's own; a worker answers it in `handle_other` (501 by default). Before, the connection
//! answered every such method 501 and no handler could take WebDAV's `PROPFIND` or a cache's
//! `PURGE`.

mod review_support;

use std::process::Command;

use pinion::http::{HttpLimits, Method, Request, Response, StatusCode};
use pinion::web::{Router, WebHandler, WebWorker, request_log};
use pinion::{Context, Pool, PoolOptions, ProcessOptions};
use review_support::*;

/// Answers with the method's token, the path and the body's length (and `*rest`, if any).
fn said(req: &Request) -> Response {
    let rest = req.param("rest").map(|r| format!(" rest={r}")).unwrap_or_default();
    Response::text(format!("{} {} {}{rest}", req.method_token(), req.path(), req.body().len()))
}

fn request(method: &str, path: &str, body: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

/// A WebDAV-like router: `PROPFIND` and `MKCOL` on `/dav/...`, GET on `/page`, any method at
/// all on `/all`.
fn dav_router() -> Router {
    Router::new()
        .on("PROPFIND", "/dav/{*rest}", said)
        .on("MKCOL", "/dav/{*rest}", said)
        .get("/dav/{*rest}", said)
        .get("/page", said)
        .route("/all", said)
}

#[test]
fn the_router_routes_extension_methods_by_token() {
    let node = start_node("ext-router", 2);
    // And every extension method on `/any`.
    let server = serve_with(&node, HttpLimits::default(), dav_router().method(Method::Extension, "/any", said));
    let mut c = Client::connect(server.local_addr());
    // Pipelined (an extension method is not safe: each waits for the ones before it).
    let burst = [
        request("PROPFIND", "/dav/a/b", "<propfind/>"),
        get("/dav/a"),
        request("MKCOL", "/dav/new", ""),
        request("PURGE", "/any", ""),
        request("BREW", "/all", "tea"),
        request("GET", "/all", ""),
    ]
    .concat();
    c.send(&burst);
    let texts: Vec<(u16, String)> = (0..6).map(|_| c.response()).map(|r| (r.status, r.text())).collect();
    assert_eq!(
        texts,
        [
            (200, "PROPFIND /dav/a/b 11 rest=a/b".to_owned()),
            (200, "GET /dav/a 0 rest=a".to_owned()),
            (200, "MKCOL /dav/new 0 rest=new".to_owned()),
            (200, "PURGE /any 0".to_owned()),
            (200, "BREW /all 3".to_owned()),
            (200, "GET /all 0".to_owned()),
        ]
    );
    drop(c);
    drop(server);
    node.stop();
}

#[test]
fn an_extension_method_no_route_takes_gets_501_or_405_and_the_connection_goes_on() {
    let node = start_node("ext-refused", 1);
    let server = serve_with(&node, HttpLimits::default(), dav_router());
    let mut c = Client::connect(server.local_addr());
    // No route names BREW: 501 (the server does not recognize it), on a path with routes and
    // on one without (where a known method gets 404). Methods are case-sensitive.
    for (method, path) in [("BREW", "/page"), ("BREW", "/nowhere"), ("propfind", "/dav/a"), ("PROPFIND", "/nowhere/x")]
    {
        c.send(&request(method, path, "xyz"));
        let r = c.response();
        let want = if path == "/nowhere/x" { 404 } else { 501 };
        assert_eq!(r.status, want, "{method} {path}: {r:?}");
        assert_eq!(r.header("connection"), None, "{method} {path}: the connection goes on");
    }
    // A route names PROPFIND elsewhere: on a path whose routes take other methods, 405 with
    // their `Allow`.
    c.send(&request("PROPFIND", "/page", ""));
    let r = c.response();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD, OPTIONS")), "{r:?}");
    // A path with extension routes lists their tokens: for a method it lacks, and to OPTIONS.
    c.send(&request("PUT", "/dav/x", ""));
    let r = c.response();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD, OPTIONS, PROPFIND, MKCOL")), "{r:?}");
    c.send(&request("OPTIONS", "/dav/x", ""));
    let r = c.response();
    assert_eq!((r.status, r.header("allow")), (204, Some("GET, HEAD, OPTIONS, PROPFIND, MKCOL")), "{r:?}");
    // And the connection still serves.
    c.send(&get("/page"));
    assert_eq!(c.response().text(), "GET /page 0");
    drop(c);
    drop(server);
    node.stop();
}

/// A client waiting for `100 Continue` before the body of a method no route names is answered
/// 501 from the head, its body never asked for.
#[test]
fn an_unnamed_extension_method_waiting_for_100_continue_is_answered_from_its_head() {
    let node = start_node("ext-expect", 1);
    let server = serve_with(&node, HttpLimits::default(), dav_router());
    let mut c = Client::connect(server.local_addr());
    c.send(b"BREW /page HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 501, "{r:?}");
    // A named one gets its `100 Continue`, then its answer.
    let mut c = Client::connect(server.local_addr());
    c.send(b"PROPFIND /dav/x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert_eq!(c.line(), "HTTP/1.1 100 Continue");
    assert_eq!(c.line(), "");
    c.send(b"abc");
    assert_eq!(c.response().text(), "PROPFIND /dav/x 3 rest=x");
    drop(c);
    drop(server);
    node.stop();
}

/// Takes `PROPFIND` in `handle_other`; GET too.
struct Dav;

impl WebWorker for Dav {
    async fn handle_get(&mut self, _: &mut Context, req: &Request) -> Response {
        said(req)
    }
    async fn handle_other(&mut self, _: &mut Context, req: &Request) -> Response {
        match req.method_token() {
            "PROPFIND" => Response::text(format!("multi {}", req.body().len())).with_status(StatusCode(207)),
            _ => Response::status(StatusCode::NOT_IMPLEMENTED),
        }
    }
}

/// Takes GET only, with no `handle_other`.
struct Plain;

impl WebWorker for Plain {
    async fn handle_get(&mut self, _: &mut Context, req: &Request) -> Response {
        said(req)
    }
}

/// Lists GET alone in `METHODS`, so extension methods never reach its `handle_other`.
struct Listed;

impl WebWorker for Listed {
    const METHODS: Option<&'static [Method]> = Some(&[Method::Get]);
    async fn handle_get(&mut self, _: &mut Context, req: &Request) -> Response {
        said(req)
    }
    async fn handle_other(&mut self, _: &mut Context, _: &Request) -> Response {
        Response::text("reached")
    }
}

#[test]
fn a_worker_answers_extension_methods_in_handle_other_and_501_without_it() {
    let node = start_node("ext-worker", 2);
    let dav = node.spawn(|| Pool::new(PoolOptions::new(2, 8, || Dav)), ProcessOptions::default()).wait().expect("dav");
    let plain =
        node.spawn(|| Pool::new(PoolOptions::new(1, 8, || Plain)), ProcessOptions::default()).wait().expect("plain");
    let listed =
        node.spawn(|| Pool::new(PoolOptions::new(1, 8, || Listed)), ProcessOptions::default()).wait().expect("listed");
    let router = Router::new()
        .route("/dav", WebHandler::to(dav))
        .route("/plain", WebHandler::to(plain))
        .route("/listed", WebHandler::to(listed));
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    let burst = [
        request("PROPFIND", "/dav", "<a/>"),
        request("MKCOL", "/dav", ""),
        request("PROPFIND", "/plain", "<a/>"),
        request("PROPFIND", "/listed", ""),
        request("TRACE", "/plain", ""),
        get("/plain"),
    ]
    .concat();
    c.send(&burst);
    let got: Vec<(u16, String, Option<String>)> =
        (0..6).map(|_| c.response()).map(|r| (r.status, r.text(), r.header("allow").map(str::to_owned))).collect();
    assert_eq!(got[0], (207, "multi 4".to_owned(), None));
    assert_eq!(got[1].0, 501, "{:?}", got[1]);
    assert_eq!((got[2].0, got[2].2.as_deref()), (501, None), "no handle_other: 501, {:?}", got[2]);
    assert_eq!(got[3].0, 501, "unlisted: the runtime's 501, {:?}", got[3]);
    // (A worker without `METHODS` lists every method it was not seen to lack; never TRACE.)
    assert_eq!(got[4].0, 405, "TRACE: {:?}", got[4]);
    assert!(got[4].2.as_deref().is_some_and(|a| a.contains("GET") && !a.contains("TRACE")), "TRACE: {:?}", got[4]);
    assert_eq!(got[5], (200, "GET /plain 0".to_owned(), None));
    drop(c);
    drop(server);
    node.stop();
}

/// The access log names an extension method by its token.
#[test]
fn the_request_log_names_an_extension_method_by_its_token() {
    let node = start_node("ext-log", 1);
    let router = dav_router().layer(request_log());
    let _ = access_lines("install the logger first");
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    c.send(&request("PROPFIND", "/dav/logged-ext", ""));
    assert_eq!(c.response().status, 200);
    wait_until("the access line", || !access_lines("/dav/logged-ext").is_empty());
    let lines = access_lines("/dav/logged-ext");
    assert!(lines[0].contains(" PROPFIND /dav/logged-ext 200 "), "{lines:?}");
    drop(c);
    drop(server);
    node.stop();
}

/// A real client (Python's `http.client`) sends `PURGE` and `PROPFIND` with a body.
#[test]
fn python_http_client_sends_extension_methods() {
    let node = start_node("ext-python", 1);
    let server = serve_with(&node, HttpLimits::default(), dav_router());
    let port = server.local_addr().port();
    let script = format!(
        r#"
import http.client
c = http.client.HTTPConnection("127.0.0.1", {port}, timeout=10)
c.request("PURGE", "/all")
r = c.getresponse(); print(r.status, r.read().decode())
c.request("PROPFIND", "/dav/x", body=b"<propfind/>", headers={{"Depth": "1"}})
r = c.getresponse(); print(r.status, r.read().decode())
c.request("BREW", "/page")
r = c.getresponse(); print(r.status); r.read()
"#
    );
    let out =
        Command::new("python3").arg("-c").arg(&script).output().unwrap_or_else(|e| {
            panic!("python3 is needed by this test and could not run ({e}): apt-get install python3")
        });
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200 PURGE /all 0\n200 PROPFIND /dav/x 11 rest=x\n501\n");
    drop(server);
    node.stop();
}

#[test]
#[should_panic(expected = "a method is a token")]
fn a_route_for_a_method_that_is_no_token_is_refused() {
    let _ = Router::new().on("BAD METHOD", "/x", said);
}

/// Names `PROPFIND` in `EXTENSIONS` beside a `METHODS` of GET: its `Allow` lists the token, and
/// another extension method is the runtime's 501 (`handle_other` not asked).
struct NamedDav;

impl WebWorker for NamedDav {
    const METHODS: Option<&'static [Method]> = Some(&[Method::Get]);
    const EXTENSIONS: &'static [&'static str] = &["PROPFIND"];
    async fn handle_get(&mut self, _: &mut Context, req: &Request) -> Response {
        said(req)
    }
    async fn handle_other(&mut self, _: &mut Context, req: &Request) -> Response {
        Response::text(format!("other {}", req.method_token())).with_status(StatusCode(207))
    }
}

/// Names `PURGE` without a `METHODS`: every method is offered, and `Allow` lists `PURGE` too.
struct Purging;

impl WebWorker for Purging {
    const EXTENSIONS: &'static [&'static str] = &["PURGE"];
    async fn handle_get(&mut self, _: &mut Context, req: &Request) -> Response {
        said(req)
    }
}

#[test]
fn a_workers_extensions_are_in_its_allow_and_the_others_get_501() {
    let node = start_node("ext-named", 1);
    let named = node.spawn(|| Pool::new(PoolOptions::new(1, 8, || NamedDav)), ProcessOptions::default()).wait();
    let purging = node.spawn(|| Pool::new(PoolOptions::new(1, 8, || Purging)), ProcessOptions::default()).wait();
    let router = Router::new()
        .route("/named", WebHandler::to(named.expect("named")))
        .route("/purging", WebHandler::to(purging.expect("purging")));
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    let burst = [
        request("PROPFIND", "/named", ""),
        request("MKCOL", "/named", ""),
        request("PUT", "/named", ""),
        request("OPTIONS", "/named", ""),
        request("PUT", "/purging", ""),
    ]
    .concat();
    c.send(&burst);
    let got: Vec<(u16, String, Option<String>)> =
        (0..5).map(|_| c.response()).map(|r| (r.status, r.text(), r.header("allow").map(str::to_owned))).collect();
    assert_eq!(got[0], (207, "other PROPFIND".to_owned(), None));
    assert_eq!(got[1].0, 501, "not named: the runtime's 501, handle_other not asked: {:?}", got[1]);
    assert_eq!((got[2].0, got[2].2.as_deref()), (405, Some("GET, HEAD, OPTIONS, PROPFIND")), "{:?}", got[2]);
    assert_eq!((got[3].0, got[3].2.as_deref()), (204, Some("GET, HEAD, OPTIONS, PROPFIND")), "{:?}", got[3]);
    assert!(got[4].2.as_deref().is_some_and(|a| a.ends_with(", PURGE")), "{:?}", got[4]);
    drop(c);
    drop(server);
    node.stop();
}
