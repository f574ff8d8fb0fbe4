//! Review 72: messages the runtime lost, or answered without giving back — `try_call`'s
//! refusals before any send (a zero timeout, a process calling itself), a pool's worker that
//! failed to start under `resize`, a resize flood from a plain thread. Nodes of 1 or 2
//! unpinned shards; every wait is bounded (a hang fails).

mod review_support;
mod support;

use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use pinion::{Actor, CallError, Context, ExitReason, Message, Pid, ProcessOptions, Reply, SendError, ShardId};

/// How long a call may wait: only a hang guard.
const T: Duration = Duration::from_secs(10);

/// A request that cannot be cloned: what a caller wants back when it is refused.
#[derive(Debug, PartialEq)]
struct Order(Vec<u8>);

/// Answers every call with `()`.
struct Answers;

impl Actor for Answers {
    async fn handle_call(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        Ok(Reply::now(()))
    }
}

// ---- 1. try_call: a refusal before any send hands the request back -------------------------

/// `NodeHandle::try_call` with a zero timeout answered `Ok` with a future failed
/// `InvalidTimeout`, the request dropped: now refused at once with the request in
/// `SendError::InvalidTimeout`. `call` still fails with `CallError::InvalidTimeout`.
#[test]
fn node_handle_try_call_with_a_zero_timeout_hands_the_request_back() {
    let node = support::node("r72-zero-handle", 1);
    let callee = node.spawn(|| Answers, ProcessOptions::default()).wait().expect("spawn");
    match node.try_call(callee, Order(vec![1, 2]), Duration::ZERO) {
        Err(SendError::InvalidTimeout(order)) => assert_eq!(order, Order(vec![1, 2])),
        Err(e) => panic!("try_call with a zero timeout: {e}"),
        Ok(future) => panic!("try_call with a zero timeout was taken: {:?}", future.wait().map(|_| ())),
    }
    let e = node.call(callee, Order(vec![3]), Duration::ZERO).wait().expect_err("zero timeout");
    assert_eq!(e, CallError::InvalidTimeout(Duration::ZERO));
    assert!(node.try_call(callee, Order(vec![4]), T).expect("taken").wait().is_ok());
    node.stop();
}

/// What a [`SelfCaller`] saw, by the name of the refusal, with the bytes handed back.
type Seen = Vec<(String, Option<Vec<u8>>)>;

/// Calls itself with `Context::try_call` (by pid and by name) and something else with a
/// zero timeout, and reports what came back.
struct SelfCaller {
    name: &'static str,
    other: Pid,
    report: Sender<Seen>,
}

impl Actor for SelfCaller {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> {
        fn seen(r: Result<pinion::CallReply<'_>, SendError<Order>>) -> (String, Option<Vec<u8>>) {
            match r {
                Ok(_) => ("taken".into(), None),
                Err(e) => (format!("{e:?}"), Some(e.into_inner().0)),
            }
        }
        let me = ctx.pid();
        let mut all = vec![
            seen(ctx.try_call(me, Order(vec![1]), T)),
            seen(ctx.try_call(self.name, Order(vec![2]), T)),
            seen(ctx.try_call(self.other, Order(vec![3]), Duration::ZERO)),
        ];
        // `call` keeps its answers.
        let plain = ctx.call(me, Order(vec![4]), T).await.map(|_| ());
        all.push((format!("{plain:?}"), None));
        let _ = self.report.send(all);
        Ok(())
    }
}

/// `Context::try_call` to the calling process itself (its pid, its name) answered `Ok` with a
/// reply failed `WouldBlock`, and one with a zero timeout `InvalidTimeout`: the request was
/// dropped both times. Now both are refused with the request (`SendError::WouldBlock`,
/// `SendError::InvalidTimeout`), on the same shard as the callee and across.
#[test]
fn context_try_call_to_itself_or_with_a_zero_timeout_hands_the_request_back() {
    let node = support::node("r72-self-ctx", 2);
    let other = node.spawn_on(ShardId(1), || Answers, ProcessOptions::default()).wait().expect("spawn");
    let (report, seen): (Sender<Seen>, Receiver<Seen>) = mpsc::channel();
    let name = "r72-self-caller";
    let caller = SelfCaller { name, other, report };
    let pid = node.spawn_register(name, move || caller, ProcessOptions::default()).wait().expect("spawn");
    node.send(pid, ()).expect("send");
    let seen = seen.recv_timeout(T).expect("the caller reports within 10 s");
    let expected: Seen = vec![
        ("WouldBlock(..)".into(), Some(vec![1])),
        ("WouldBlock(..)".into(), Some(vec![2])),
        ("InvalidTimeout(..)".into(), Some(vec![3])),
        ("Err(WouldBlock)".into(), None),
    ];
    assert_eq!(seen, expected);
    node.stop();
}
