//! Review 76: an adversarial review of review 72's runtime commits. Found: a request a pool
//! handed back with its refusal (`CallFuture::request_back`, `CallReply::request_back`) was
//! lost when the answer was taken a second time — `wait_mut` called again, or `wait_mut` after
//! the future was awaited by reference, which also blocked until the call's deadline and then
//! answered `Timeout` — though the docs say a second wait answers `NoReply`. Nodes of 1 or 2
//! unpinned shards; every wait is bounded (a hang fails).

mod support;

use support::{Gate, Latch, Probe};

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::Duration;

use pinion::{Actor, CallError, Context, ExitReason, Message, Node, Pid, Pool, PoolOptions, ProcessOptions, ShardId};

/// How long a call may wait: only a hang guard.
const T: Duration = Duration::from_secs(10);

/// A request that cannot be cloned: what a caller wants back when it is refused.
#[derive(Debug, PartialEq)]
struct Order(Vec<u8>);

/// A pool of one worker (a [`Gate`]: mailbox 2) holding a message in progress: a call made
/// now queues behind it.
fn busy_pool(node: &Node, name: &str) -> (Pid, Arc<Latch>) {
    let (latch, probe) = (Latch::new(), Probe::new());
    let (l, p) = (latch.clone(), probe.clone());
    let options = PoolOptions::new(1, 2, move || Gate::new(&l, &p));
    let pool = node.spawn_register(name, move || Pool::new(options), ProcessOptions::default()).wait();
    let pool = pool.expect("pool");
    node.send(pool, 1u64).expect("in progress");
    support::wait_until("the worker holds it", || probe.started() == 1);
    (pool, latch)
}

/// Stops `pool` while its worker holds a message, then lets that message finish: the worker
/// stops before its queue, which no other worker takes (every call queued is shed, `Stopped`).
fn stop_busy_pool(node: &Node, pool: Pid, latch: &Latch) {
    let h = node.handle();
    h.exit(pool, ExitReason::Shutdown);
    let r = h.pool(pool).expect("a pool");
    support::wait_until("stopping", || r.info().stopping);
    latch.open();
}

/// Wakes the thread that blocks in [`block_on`].
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` on this thread until it is ready (a foreign executor, as a user's would be).
fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// `CallFuture::wait_mut` called again before `request_back` answered `NoReply` (as its docs
/// say) but dropped the request the first wait had handed back: the second wait overwrote it
/// with its own `None`.
#[test]
fn a_second_wait_mut_keeps_the_request_a_pool_handed_back() {
    let node = support::node("r76-wait-twice", 1);
    let (pool, latch) = busy_pool(&node, "r76-wait-twice-pool");
    let mut kept = node.try_call(pool, Order(vec![7, 6]), T).expect("taken: the pool has room");
    stop_busy_pool(&node, pool, &latch);
    assert_eq!(kept.wait_mut().expect_err("shed"), CallError::Stopped);
    assert_eq!(kept.wait_mut().expect_err("waited again"), CallError::NoReply);
    let back = kept.request_back().expect("the request is still there after a second wait");
    assert_eq!(back.downcast::<Order>().expect("an Order"), Order(vec![7, 6]));
    node.stop();
}

/// A `CallFuture` awaited by reference and then waited on with `wait_mut` (the two ways its
/// docs name to keep it) blocked until the call's deadline, answered `Timeout`, and dropped
/// the request the await had handed back: the await left the future `Waiting` on a slot
/// whose answer it had taken.
#[test]
fn wait_mut_after_an_await_by_reference_answers_at_once_and_keeps_the_request() {
    let node = support::node("r76-await-then-wait", 1);
    let (pool, latch) = busy_pool(&node, "r76-await-then-wait-pool");
    // A deadline far enough that the stop's shed answers first, near enough that a wait until
    // it fails the test rather than hanging it.
    let mut kept = node.try_call(pool, Order(vec![5]), Duration::from_secs(4)).expect("taken");
    stop_busy_pool(&node, pool, &latch);
    assert_eq!(block_on(&mut kept).expect_err("shed"), CallError::Stopped);
    assert_eq!(kept.wait_mut().expect_err("waited again"), CallError::NoReply, "not a wait for the deadline");
    let back = kept.request_back().expect("the request is still there");
    assert_eq!(back.downcast::<Order>().expect("an Order"), Order(vec![5]));
    node.stop();
}

/// What a [`TwicePolled`] saw: the two answers and the request handed back.
type Seen = (Result<(), CallError>, Result<(), CallError>, Option<Order>);

/// Calls with `Context::try_call`, awaits the reply by reference, polls it once more (as a
/// `select!` over a finished branch may), then asks for the request back.
struct TwicePolled {
    report: Sender<Seen>,
}

impl Actor for TwicePolled {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        let Ok(pool) = msg.downcast::<Pid>() else { return Ok(()) };
        let Ok(mut reply) = ctx.try_call(pool, Order(vec![4, 4]), T) else {
            let _ = self.report.send((Err(CallError::NoReply), Err(CallError::NoReply), None));
            return Ok(());
        };
        let first = (&mut reply).await.map(|_| ());
        let second = std::future::poll_fn(|cx| std::pin::Pin::new(&mut reply).poll(cx)).await.map(|_| ());
        let back = reply.request_back().map(|m| m.downcast::<Order>().expect("an Order"));
        let _ = self.report.send((first, second, back));
        Ok(())
    }
}

/// The same for `CallReply`: polled again after its answer it answers `NoReply`, and the
/// request handed back with the first answer stays for `request_back` (it was overwritten).
#[test]
fn a_call_reply_polled_again_keeps_the_request_a_pool_handed_back() {
    let node = support::node("r76-reply-twice", 2);
    for shard in [ShardId(0), ShardId(1)] {
        let (pool, latch) = busy_pool(&node, &format!("r76-reply-twice-pool-{}", shard.0));
        let (report, seen) = mpsc::channel();
        let caller = node.spawn_on(shard, move || TwicePolled { report }, ProcessOptions::default()).wait();
        node.send(caller.expect("caller"), pool).expect("send");
        let r = node.handle().pool(pool).expect("a pool");
        support::wait_until("the call queued", || r.info().held == 2);
        stop_busy_pool(&node, pool, &latch);
        let seen = seen.recv_timeout(T).expect("the caller reports");
        let expected = (Err(CallError::Stopped), Err(CallError::NoReply), Some(Order(vec![4, 4])));
        assert_eq!(seen, expected, "caller on {shard:?}");
    }
    node.stop();
}
