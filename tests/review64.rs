//! Review 64: the middleware layers (auth, CORS, request log, rate limit, guard, hook) as a
//! demanding user of a web framework sees them, over real sockets.

mod review_support;

use pinion::http::{HttpLimits, Request, Response};
use pinion::web::{Cors, Layer, RequestSummary, Router, guard, hook};
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
