//! Review 66: small gaps earlier rounds left — `Response::text`'s charset, a call's request
//! handed back by a full mailbox (`try_call`). Nodes of 1 or 2 unpinned shards; every wait is
//! bounded (a hang fails).

mod review_support;
mod support;

use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use pinion::http::{HttpLimits, Request, Response, StatusCode};
use pinion::web::Router;
use pinion::{
    Actor, CallError, Context, ExitReason, Message, Node, Pid, Pool, PoolOptions, ProcessId, ProcessOptions, SendError,
    ShardId,
};
use review_support::{Client, get, serve_with, start_node};
use support::{Gate, Latch, Probe, wait_until};

/// How long a call may wait: only a hang guard.
const T: Duration = Duration::from_secs(10);

/// `Response::text` labels its body UTF-8 (a `str` is), as `Response::status` does its reason
/// phrase: `text/plain` alone means US-ASCII, and a browser showed `héllo` as `hÃ©llo`.
#[test]
fn response_text_says_its_body_is_utf8() {
    let node = start_node("r66-charset", 1);
    let router = Router::new()
        .get("/hello", |_: &Request| Response::text("héllo, wörld"))
        .get("/conflict", |_: &Request| Response::status(StatusCode::CONFLICT));
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut client = Client::connect(server.local_addr());
    client.send(&get("/hello"));
    let r = client.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.body, "héllo, wörld".as_bytes());
    client.send(&get("/conflict"));
    let r = client.response();
    assert_eq!(r.status, 409);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    server.stop();
    node.stop();
}

// ---- try_call: a request refused is handed back --------------------------------------------

/// A request that cannot be cloned: what a caller wants back when it is refused, to send it
/// again.
#[derive(Debug, PartialEq)]
struct Order(Vec<u8>);

/// A [`Gate`] with a mailbox of one, on `shard`, holding one message in progress: full until
/// its latch is released.
fn full_gate(node: &Node, shard: ShardId) -> (Pid, Arc<Latch>, Arc<Probe>) {
    let (latch, probe) = (Latch::new(), Probe::new());
    let gate = Gate::new(&latch, &probe);
    let pid = node.spawn_on(shard, move || gate, ProcessOptions::with_mailbox(1)).wait().expect("spawn gate");
    node.send(pid, 1u64).expect("room for one");
    assert!(node.send(pid, 2u64).expect_err("full").is_full());
    (pid, latch, probe)
}

/// The finished messages a [`Gate`] answers a call with.
fn finished(reply: Result<Message, CallError>) -> Vec<u64> {
    reply.expect("answered").downcast::<Vec<u64>>().expect("a Gate answers Vec<u64>")
}

/// `call` to a full mailbox answered `MailboxFull` and dropped the request (review 66: a send
/// hands its message back, a call lost it). `NodeHandle::try_call` hands it back in the
/// `SendError` a send gets — full, unknown name, node down — and the same request, sent again
/// once there is room, is answered.
#[test]
fn node_handle_try_call_hands_a_refused_request_back() {
    let node = support::node("r66-try-call-handle", 1);
    let (gate, latch, _probe) = full_gate(&node, ShardId(0));
    assert_eq!(node.call_blocking(gate, Order(vec![0]), T).expect_err("full"), CallError::MailboxFull);

    let mut order = match node.try_call(gate, Order(vec![1, 2, 3]), T) {
        Err(SendError::MailboxFull(order)) => order,
        other => panic!("try_call to a full mailbox: {other:?}"),
    };
    assert_eq!(order, Order(vec![1, 2, 3]), "the request comes back as it was");
    latch.open();
    // Sent again, the very same request, until the gate has room (bounded: a hang guard).
    let mut reply = None;
    for _ in 0..2000 {
        match node.try_call(gate, order, T) {
            Ok(future) => {
                reply = Some(future);
                break;
            }
            Err(SendError::MailboxFull(back)) => order = back,
            Err(e) => panic!("try_call once the gate has room: {e}"),
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let reply = reply.expect("the gate had room again within 10 s");
    assert_eq!(finished(reply.wait()), vec![1], "answered, after the message in progress");

    match node.try_call("r66-nobody-has-this-name", Order(vec![4]), T) {
        Err(SendError::UnknownName(order)) => assert_eq!(order, Order(vec![4])),
        other => panic!("try_call to an unknown name: {other:?}"),
    }
    match node.try_call(&ProcessId::new("someone", "elsewhere@far"), Order(vec![5]), T) {
        Err(SendError::NodeDown(order)) => assert_eq!(order, Order(vec![5])),
        other => panic!("try_call to another node: {other:?}"),
    }
    // A zero timeout is refused before anything is sent: the request comes back too (review
    // 72: the future failed `InvalidTimeout` and the request was dropped).
    match node.try_call(gate, Order(vec![6]), Duration::ZERO) {
        Err(SendError::InvalidTimeout(order)) => assert_eq!(order, Order(vec![6])),
        other => panic!("try_call with a zero timeout: {other:?}"),
    }
    node.stop();
}

/// A pool that holds its bound (`size × (mailbox + 1)`) refuses a `try_call` at once with the
/// request in the `MailboxFull`, as it refuses a send.
#[test]
fn try_call_to_a_full_pool_hands_the_request_back() {
    let node = support::node("r66-try-call-pool", 1);
    let (latch, probe) = (Latch::new(), Probe::new());
    let (l, p) = (latch.clone(), probe.clone());
    let options = PoolOptions::new(1, 1, move || Gate::new(&l, &p));
    let pool = node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    node.send(pool, 1u64).expect("in progress");
    node.send(pool, 2u64).expect("queued");
    assert!(node.send(pool, 3u64).expect_err("the pool is full").is_full());
    match node.try_call(pool, Order(vec![7]), T) {
        Err(SendError::MailboxFull(order)) => assert_eq!(order, Order(vec![7])),
        other => panic!("try_call to a full pool: {other:?}"),
    }
    latch.open();
    wait_until("the pool's worker finished both", || probe.messages().len() == 2);
    node.stop();
}

/// What a [`Caller`] saw.
#[derive(Debug, PartialEq)]
enum Seen {
    /// The bytes of the order handed back (the order itself is kept, to send again).
    Refused(Vec<u8>),
    Answered(Vec<u64>),
    Failed(String),
}

/// What a [`Caller`] is asked to do.
enum Do {
    /// `try_call(to, order)` once.
    Try(Pid, Order),
    /// `try_call` the order it was handed back again until it is taken, and await the reply.
    Retry(Pid),
}

/// A process that calls with `Context::try_call` and reports what it saw.
struct Caller {
    report: Sender<Seen>,
    kept: Option<Order>,
}

impl Actor for Caller {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        let Ok(what) = msg.downcast::<Do>() else { return Ok(()) };
        let seen = match what {
            Do::Try(to, order) => match ctx.try_call(to, order, T) {
                Err(SendError::MailboxFull(order)) => {
                    let seen = Seen::Refused(order.0.clone());
                    self.kept = Some(order);
                    seen
                }
                Err(e) => Seen::Failed(e.to_string()),
                Ok(reply) => Seen::Failed(format!("taken at once: {:?}", reply.await.map(|_| ()))),
            },
            Do::Retry(to) => {
                let mut order = self.kept.take().expect("an order handed back before");
                let mut seen = Seen::Failed("no room within 10 s".into());
                for _ in 0..2000 {
                    match ctx.try_call(to, order, T) {
                        Ok(reply) => {
                            seen = match reply.await {
                                Ok(m) => Seen::Answered(m.downcast::<Vec<u64>>().expect("Vec<u64>")),
                                Err(e) => Seen::Failed(e.to_string()),
                            };
                            break;
                        }
                        Err(SendError::MailboxFull(back)) => order = back,
                        Err(e) => {
                            seen = Seen::Failed(e.to_string());
                            break;
                        }
                    }
                    ctx.sleep(Duration::from_millis(5)).await;
                }
                seen
            }
        };
        let _ = self.report.send(seen);
        Ok(())
    }
}

/// `Context::try_call` hands a refused request back to the process, whether the callee is on
/// its shard or another; sent again once there is room, it is answered.
#[test]
fn context_try_call_hands_a_refused_request_back_on_the_same_shard_and_across() {
    let node = support::node("r66-try-call-ctx", 2);
    for caller_shard in [ShardId(0), ShardId(1)] {
        let (gate, latch, _probe) = full_gate(&node, ShardId(0));
        let (report, seen): (Sender<Seen>, Receiver<Seen>) = mpsc::channel();
        let caller = Caller { report, kept: None };
        let caller = node.spawn_on(caller_shard, move || caller, ProcessOptions::default()).wait().expect("caller");
        let next = || seen.recv_timeout(T).expect("the caller reports within 10 s");

        node.send(caller, Do::Try(gate, Order(vec![8, 9]))).expect("send");
        assert_eq!(next(), Seen::Refused(vec![8, 9]), "caller on {caller_shard:?}");
        latch.open();
        node.send(caller, Do::Retry(gate)).expect("send");
        assert_eq!(next(), Seen::Answered(vec![1]), "caller on {caller_shard:?}");
    }
    node.stop();
}
