//! Review 69: a hostile review of the unsendable status made 500 before the response hooks,
//! `try_call`, `require_pin`, the examples' drain, `text/plain; charset=utf-8`, the `http`
//! re-export and `is_client_gone`, over real sockets where the wire matters.

mod review_support;

use std::sync::{Arc, Mutex};

use pinion::http::{HttpLimits, Request, Response, StatusCode};
use pinion::web::{RequestSummary, Router, hook};
use review_support::*;

/// Records the status each answer had when this hook ran, and marks the answer.
fn recording(seen: &Arc<Mutex<Vec<u16>>>, mark: &'static str) -> pinion::web::Hook {
    let seen = seen.clone();
    hook(move |_: &RequestSummary<'_>, resp: &mut Response| {
        lock(&seen).push(resp.status.0);
        resp.set_header(mark, "yes");
    })
}

/// A status a hook sets that cannot be sent (1xx as a final answer, or past 599) is made the
/// 500 that goes out before the hooks outside it run, as a handler's is: they mark and see
/// what goes out. Review 64's fix did so for the handler's status only: a hook's went to the
/// connection, which replaced the marked answer with its own bare 500 after every hook had
/// run (an outer layer's fields lost, a log hook's status not the one sent).
#[test]
fn an_unsendable_status_a_hook_sets_is_the_500_the_hooks_outside_see_and_mark() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let router = Router::new()
        .get("/x/{code}", |_: &Request| Response::text("x"))
        .layer(hook(|s: &RequestSummary<'_>, resp: &mut Response| {
            resp.status = StatusCode(s.request.param("code").and_then(|c| c.parse().ok()).unwrap_or(0));
        }))
        .layer(recording(&seen, "x-outer"));
    let node = start_node("r69-hook-status", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    for code in [1000, 103, 599] {
        c.send(&get(&format!("/x/{code}")));
        let resp = c.response();
        let want = if code == 599 { 599 } else { 500 };
        assert_eq!((resp.status, resp.header("x-outer")), (want, Some("yes")), "a hook's status {code}");
    }
    assert_eq!(*lock(&seen), [500, 500, 599], "what the outer hook saw");
    drop(server);
    node.stop();
}
