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

/// A start refused because a live node has the name gives its node id back: ids are 16 bits
/// and never reused, so a program that retried such a start (waiting for an old node of that
/// name to stop) used up the 65,535 starts of its OS process, after which no node could ever
/// start again ("too many node starts"). A start refused for a name nobody holds, or that a
/// required pin failed, is a start that never handed out a pid, as this one.
#[test]
fn a_start_refused_for_a_name_taken_does_not_use_up_the_node_ids() {
    let held = start_node("r69-held-name", 1);
    for attempt in 0..70_000 {
        let options = pinion::NodeOptions { cores: pinion::Cores::Count(1), pin: false, ..Default::default() };
        match pinion::Node::start("r69-held-name", options) {
            Err(pinion::StartError::NameTaken(_)) => {}
            other => panic!("attempt {attempt}: expected NameTaken, got {other:?}"),
        }
    }
    let other = pinion::Node::start(
        "r69-after-retries",
        pinion::NodeOptions { cores: pinion::Cores::Count(1), pin: false, ..Default::default() },
    );
    assert!(other.is_ok(), "a node starts after 70,000 refused starts: {other:?}");
    drop(other);
    held.stop();
}

/// A start that failed for a required pin gives its node id back: the next start takes it
/// (it took the one after, for good: ids are never reused, 65,535 starts in all). A start of
/// another test of this binary may come between: a few rounds, one clean is enough; without
/// the give-back none can be (the failed start's id lies between the two others).
#[cfg(target_os = "linux")]
#[test]
fn a_start_failed_for_a_required_pin_gives_its_node_id_back() {
    let unpinned = || pinion::NodeOptions { cores: pinion::Cores::Count(1), pin: false, ..Default::default() };
    let clean_rounds = std::thread::spawn(move || {
        forbid_pinning_on_this_thread();
        let mut clean = 0;
        for _ in 0..5 {
            let before = pinion::Node::start("r69-pin-before", unpinned()).expect("starts");
            let before_id = before.id();
            before.stop();
            let required = pinion::NodeOptions { pin: true, require_pin: true, ..unpinned() };
            match pinion::Node::start("r69-pin-required", required) {
                Err(pinion::StartError::PinFailed { shard: 0, .. }) => {}
                other => panic!("expected PinFailed, got {other:?}"),
            }
            let after = pinion::Node::start("r69-pin-after", unpinned()).expect("starts");
            clean += usize::from(after.id().0 == before_id.0 + 1);
            after.stop();
        }
        clean
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert!(clean_rounds > 0, "no round where the start after a failed one took the id it gave back");
}
