//! Review 69: a hostile review of the unsendable status made 500 before the response hooks,
//! `try_call`, `require_pin`, the examples' drain, `text/plain; charset=utf-8`, the `http`
//! re-export and `is_client_gone`, over real sockets where the wire matters.

mod review_support;
mod support;

use std::sync::{Arc, Mutex};

use pinion::http::{HttpLimits, Request, Response, StatusCode};
use pinion::web::{Handler, RequestSummary, Router, WebRequest, hook};
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

/// A streamed head with a status that cannot be sent, under a hooking layer: the hooks see and
/// mark the 500 that goes out, no chunk follows it, and the connection serves the next request.
#[test]
fn an_unsendable_streamed_head_is_the_hooked_500_and_the_connection_goes_on() {
    struct Streams;
    impl Handler for Streams {
        fn handle(&self, req: WebRequest) {
            if req.request().path() == "/ok" {
                return req.respond(Response::text("ok"));
            }
            let mut stream = req.respond_stream(Response::new(StatusCode(103)));
            stream.send("never sent");
            stream.finish();
        }
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let router = Router::new().route("/{p}", Streams).layer(recording(&seen, "x-outer"));
    let node = start_node("r69-stream-status", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    c.send(&get("/s"));
    let resp = c.response();
    assert_eq!((resp.status, resp.header("x-outer")), (500, Some("yes")));
    assert!(!resp.text().contains("never sent"), "{resp:?}");
    c.send(&get("/ok"));
    let resp = c.response();
    assert_eq!((resp.status, resp.text()), (200, "ok".to_owned()));
    assert_eq!(*lock(&seen), [500, 200]);
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

/// A process with a mailbox of one that makes an alias, registers a name, and holds each
/// request it is sent (`Vec<u8>`) until the latch lets it go, keeping what it got; a call with
/// [`DeleteAlias`] deletes its alias and answers what it got.
struct Held {
    latch: Arc<support::Latch>,
    alias_out: std::sync::mpsc::Sender<pinion::Alias>,
    alias: Option<pinion::Alias>,
    got: Vec<Vec<u8>>,
}

struct DeleteAlias;

impl pinion::Actor for Held {
    async fn init(&mut self, ctx: &mut pinion::Context) -> Result<(), pinion::ExitReason> {
        ctx.register("r69-held").expect("a free name");
        let alias = ctx.create_alias();
        self.alias = Some(alias);
        let _ = self.alias_out.send(alias);
        Ok(())
    }
    async fn handle_message(
        &mut self,
        _: &mut pinion::Context,
        _: pinion::Pid,
        msg: pinion::Message,
    ) -> Result<(), pinion::ExitReason> {
        self.latch.acquire().await;
        if let Ok(request) = msg.downcast::<Vec<u8>>() {
            self.got.push(request);
        }
        Ok(())
    }
    async fn handle_call(
        &mut self,
        ctx: &mut pinion::Context,
        _: pinion::Pid,
        req: pinion::Message,
    ) -> Result<pinion::Reply, pinion::ExitReason> {
        if req.is::<DeleteAlias>()
            && let Some(alias) = self.alias.take()
        {
            ctx.delete_alias(alias);
        }
        Ok(pinion::Reply::Now(pinion::Message::new(self.got.clone())))
    }
}

/// Checked and sound: `NodeHandle::try_call` to a full process through its alias or its
/// registered name hands the very request back (`MailboxFull`); through the alias once
/// deleted, `UnknownAlias` with it; no refused request reaches the callee (it got only the
/// message that filled it).
#[test]
fn try_call_through_an_alias_or_a_name_hands_a_refused_request_back() {
    use pinion::{ProcessOptions, SendError, ShardId, Target};
    let node = start_node("r69-try-call-alias", 2);
    let latch = support::Latch::new();
    let (alias_out, alias_in) = std::sync::mpsc::channel();
    let held = Held { latch: latch.clone(), alias_out, alias: None, got: Vec::new() };
    let pid = node.spawn_on(ShardId(1), move || held, ProcessOptions::with_mailbox(1)).wait().expect("spawn");
    let alias = alias_in.recv_timeout(WAIT).expect("the alias");
    node.send(pid, vec![0u8]).expect("room for one");
    for (what, target) in [("alias", Target::Alias(alias)), ("name", Target::Name("r69-held"))] {
        match node.try_call(target, vec![1u8, 2, 3], WAIT) {
            Err(SendError::MailboxFull(back)) => assert_eq!(back, [1, 2, 3], "{what}"),
            other => panic!("{what}: expected MailboxFull with the request, got {other:?}"),
        }
    }
    latch.open();
    // Room again once the message that filled it is finished (bounded: a hang guard).
    let mut answer = Err(pinion::CallError::MailboxFull);
    for _ in 0..2000 {
        answer = node.call(pid, DeleteAlias, WAIT).wait();
        if !matches!(answer, Err(pinion::CallError::MailboxFull)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let got = answer.expect("answered").downcast::<Vec<Vec<u8>>>();
    assert_eq!(got.expect("what it got"), [vec![0u8]], "only the message that filled it");
    match node.try_call(alias, vec![4u8], WAIT) {
        Err(SendError::UnknownAlias(back)) => assert_eq!(back, [4]),
        other => panic!("a deleted alias: expected UnknownAlias with the request, got {other:?}"),
    }
    node.stop();
}

/// Checked and sound: `Response::text`'s `text/plain; charset=utf-8` and a handler's own
/// `text/plain` of the same status and length, answered in turn on one keep-alive connection
/// (the per-thread cached head holds one at a time), GET and HEAD: each carries its own label,
/// a HEAD the GET's length and no body.
#[test]
fn text_with_and_without_a_charset_alternate_through_the_cached_head() {
    let plain = |_: &Request| Response {
        content_type: Some(std::borrow::Cow::Borrowed("text/plain")),
        ..Response::text("h\u{e9}")
    };
    let router = Router::new().get("/utf8", |_: &Request| Response::text("h\u{e9}")).get("/plain", plain);
    let node = start_node("r69-charset", 1);
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    for round in 0..3 {
        for (path, label) in [("/utf8", "text/plain; charset=utf-8"), ("/plain", "text/plain")] {
            c.send(&get(path));
            let resp = c.response();
            assert_eq!((resp.status, resp.header("content-type")), (200, Some(label)), "GET {path}, round {round}");
            assert_eq!(resp.body, "h\u{e9}".as_bytes(), "GET {path}");
            c.send(format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
            let head = c.head();
            assert_eq!(head.header("content-type"), Some(label), "HEAD {path}, round {round}");
            assert_eq!(head.header("content-length"), Some("3"), "HEAD {path}");
        }
    }
    // Nothing after the last HEAD's head: the next answer starts at once.
    c.send(&get("/utf8"));
    assert_eq!(c.response().header("content-type"), Some("text/plain; charset=utf-8"));
    drop(server);
    node.stop();
}
