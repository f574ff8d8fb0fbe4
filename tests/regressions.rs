//! Regressions found in review of issue 2 (runtime core), one test each, named `issue_2_*`.

use std::future::{Future, poll_fn};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::task::Poll;
use std::time::{Duration, Instant};

use pinion::{
    Actor, CallError, Context, Cores, ExitReason, Message, Node, NodeOptions, Pid, ProcessOptions, Reply, ShardId,
};

const WAIT: Duration = Duration::from_secs(10);

fn node(name: &str, shards: usize) -> Node {
    Node::start(name, NodeOptions { cores: Cores::Count(shards), pin: false, ..Default::default() }).expect("start")
}

/// Answers every call with the same `u64`, after a short delay if asked.
#[derive(Default)]
struct Echo;

struct Later(u64, Duration);

impl Actor for Echo {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(token) = msg.downcast::<pinion::ReplyToken>() {
            token.reply(7u64);
        }
        Ok(())
    }
    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, req: Message) -> Result<Reply, ExitReason> {
        match req.downcast::<Later>() {
            Ok(Later(n, after)) => {
                let token = ctx.defer_reply().expect("a call");
                let me = ctx.pid();
                ctx.send_after(me, token, after);
                let _ = n;
                Ok(Reply::Later)
            }
            Err(req) => Ok(Reply::Now(req)),
        }
    }
}

/// A message whose destructor panics.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("PanicOnDrop dropped");
        }
    }
}

/// Handles its first message by waiting on a call that `Holder` answers only when told, then
/// fails: whatever was queued meanwhile is dropped by the runtime when it ends.
struct Stuck {
    holder: Pid,
}

impl Actor for Stuck {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if msg.is::<PanicOnDrop>() {
            // Handled (not dropped by the runtime): defuse by leaking it.
            std::mem::forget(msg);
            return Ok(());
        }
        let _ = ctx.call(self.holder, (), WAIT).await;
        Err(ExitReason::custom("done waiting"))
    }
}

/// Keeps every call unanswered (and says so on `held`) until it gets `Release`.
struct Holder {
    held: mpsc::Sender<()>,
    tokens: Vec<pinion::ReplyToken>,
}

/// Tells a `Holder` to answer the calls it holds.
struct Release;

impl Actor for Holder {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if msg.is::<Release>() {
            for token in self.tokens.drain(..) {
                token.reply(());
            }
        }
        Ok(())
    }

    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        self.tokens.extend(ctx.defer_reply());
        let _ = self.held.send(());
        Ok(Reply::Later)
    }
}

#[test]
fn issue_2_panicking_drop_of_a_dead_letter_does_not_kill_the_shard() {
    let node = node("reg-panic-drop", 1);
    let (held_tx, held) = mpsc::channel();
    let holder =
        node.spawn_on(ShardId(0), move || Holder { held: held_tx, tokens: Vec::new() }, ProcessOptions::default());
    let holder = holder.wait().unwrap();
    let stuck = node.spawn_on(ShardId(0), move || Stuck { holder }, ProcessOptions::default()).wait().unwrap();
    node.send(stuck, "go").unwrap();
    held.recv_timeout(WAIT).expect("the stuck process is waiting on its call");
    // Queued while it waits; dropped by the runtime when it ends (once its call is answered).
    node.send(stuck, PanicOnDrop).unwrap();
    node.send(stuck, PanicOnDrop).unwrap();
    node.send(holder, Release).unwrap();
    let deadline = Instant::now() + WAIT;
    while node.process_info(stuck).is_ok() {
        assert!(Instant::now() < deadline, "the stuck process never ended");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The shard still runs processes, old and new. (Bounded: a dead shard would never answer
    // the spawn, and the test must fail, not hang.)
    let handle = node.handle();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let echo = handle.spawn_on(ShardId(0), || Echo, ProcessOptions::default()).wait();
        let _ = tx.send(echo.map(|pid| handle.call_blocking(pid, 5u64, WAIT).map(|r| r.downcast::<u64>().ok())));
    });
    let answer = rx.recv_timeout(WAIT).expect("the shard answered a spawn after the contained panic");
    assert_eq!(answer.expect("spawn after the panic").expect("a call after the panic"), Some(5));
    assert!(node.process_info(holder).is_ok());
    node.stop();
}

/// Defers the reply of every call into a `send_after` to itself, then cancels that timer.
struct Canceller;

impl Actor for Canceller {
    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, req: Message) -> Result<Reply, ExitReason> {
        if req.is::<u64>() {
            return Ok(Reply::Now(req));
        }
        let token = ctx.defer_reply().expect("a call");
        let me = ctx.pid();
        let timer = ctx.send_after(me, token, Duration::from_secs(60));
        assert!(ctx.cancel_timer(timer), "the timer was armed");
        Ok(Reply::Later)
    }
}

#[test]
fn issue_2_cancel_timer_holding_a_reply_token_answers_no_reply_and_keeps_the_process() {
    let node = node("reg-cancel-token", 1);
    let pid = node.spawn(|| Canceller, ProcessOptions::default()).wait().unwrap();
    // The token inside the cancelled timer is dropped: the external caller learns NoReply.
    assert_eq!(node.call_blocking(pid, "defer", WAIT).err(), Some(CallError::NoReply));
    // And the process did not panic (it answers the next call).
    let r = node.call_blocking(pid, 9u64, WAIT).expect("the process is alive");
    assert_eq!(r.downcast::<u64>().unwrap(), 9);
    node.stop();
}

/// Starts a call and abandons it after one poll (as `select!` or a timeout wrapper would).
struct Abandoner {
    target: Pid,
}

impl Actor for Abandoner {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> {
        let mut call = Box::pin(ctx.call(self.target, Later(1, Duration::from_millis(20)), Duration::from_secs(30)));
        poll_fn(|cx| {
            assert!(call.as_mut().poll(cx).is_pending(), "the reply comes later");
            Poll::Ready(())
        })
        .await;
        drop(call);
        Ok(())
    }
}

#[test]
fn issue_2_abandoned_call_future_counts_its_late_reply() {
    for shards in [1, 2] {
        let node = node(&format!("reg-abandon-{shards}"), shards);
        let target = node.spawn_on(ShardId(0), || Echo, ProcessOptions::default()).wait().unwrap();
        let caller = node
            .spawn_on(ShardId((shards - 1) as u16), move || Abandoner { target }, ProcessOptions::default())
            .wait()
            .unwrap();
        let before = node.late_replies();
        for _ in 0..3 {
            node.send(caller, ()).unwrap();
        }
        let deadline = Instant::now() + WAIT;
        while node.late_replies() < before + 3 {
            assert!(Instant::now() < deadline, "abandoned calls' replies were not counted as late");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(node.late_replies(), before + 3);
        node.stop();
    }
}

/// Monitors (or links to) the target, then ends.
struct Watcher {
    target: Pid,
    link: bool,
    done: mpsc::Sender<()>,
}

impl Actor for Watcher {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        if self.link {
            ctx.link(self.target);
        } else {
            ctx.monitor(self.target);
        }
        // A call to the target after the request: once answered, the link or monitor is set.
        let _ = ctx.call(self.target, 0u64, WAIT).await;
        let _ = self.done.send(());
        Err(ExitReason::Normal)
    }
}

#[test]
fn issue_2_ended_watchers_leave_no_links_or_monitors_behind() {
    for shards in [1, 2] {
        let node = node(&format!("reg-watchers-{shards}"), shards);
        let server = node.spawn_on(ShardId(0), || Echo, ProcessOptions::default()).wait().unwrap();
        let (tx, rx) = mpsc::channel();
        let n = 200;
        for i in 0..n {
            let done = tx.clone();
            let shard = ShardId((i % shards) as u16);
            let _ = node
                .spawn_on(shard, move || Watcher { target: server, link: i % 2 == 0, done }, ProcessOptions::default())
                .wait();
        }
        for _ in 0..n {
            rx.recv_timeout(WAIT).expect("a watcher finished");
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let info = node.process_info(server).unwrap();
            if info.links == 0 && info.monitors == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "dead watchers are still registered: {info:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
        node.stop();
    }
}

#[test]
fn issue_2_terminate_count_after_contained_panics_is_exact() {
    // A node whose processes' destructors panic still stops, running every terminate.
    struct Bomb(Arc<AtomicUsize>);
    impl Drop for Bomb {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                panic!("Bomb dropped");
            }
        }
    }
    impl Actor for Bomb {
        async fn terminate(&mut self, _: &mut Context, _: &ExitReason) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let node = node("reg-bombs", 2);
    let count = Arc::new(AtomicUsize::new(0));
    for i in 0..20 {
        let c = count.clone();
        node.spawn_on(ShardId(i % 2), move || Bomb(c), ProcessOptions::default()).wait().unwrap();
    }
    node.stop();
    assert_eq!(count.load(Ordering::SeqCst), 20);
}

/// Sends itself a continuation per message, `left` times, then reports.
struct SelfChain {
    done: mpsc::Sender<Result<(), String>>,
}

impl Actor for SelfChain {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        let left = msg.downcast::<u32>().unwrap_or(0);
        if left == 0 {
            let _ = self.done.send(Ok(()));
            return Ok(());
        }
        let me = ctx.pid();
        if let Err(e) = ctx.send(me, left - 1) {
            let _ = self.done.send(Err(e.to_string()));
        }
        Ok(())
    }
}

#[test]
fn issue_2_process_with_a_small_mailbox_can_keep_sending_to_itself() {
    let node = node("reg-self-chain", 1);
    let (tx, rx) = mpsc::channel();
    // Bound 2: the message in progress plus the one it sends itself.
    let pid = node.spawn(move || SelfChain { done: tx }, ProcessOptions::with_mailbox(2)).wait().unwrap();
    node.send(pid, 100u32).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).expect("the chain ended"), Ok(()));
    node.stop();
}

/// Defers every call's reply to a thread that holds the token past the node's stop.
struct HandsOff {
    tokens: mpsc::Sender<pinion::ReplyToken>,
}

impl Actor for HandsOff {
    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        let _ = self.tokens.send(ctx.defer_reply().expect("a call"));
        Ok(Reply::Later)
    }
}

#[test]
fn issue_2_awaited_external_call_resolves_when_the_node_stops() {
    let node = node("reg-await-stop", 1);
    let (tx, tokens) = mpsc::channel();
    let pid = node.spawn(move || HandsOff { tokens: tx }, ProcessOptions::default()).wait().unwrap();
    let call = node.call(pid, (), Duration::from_secs(3600));
    let token = tokens.recv_timeout(WAIT).expect("the call arrived");
    node.stop();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let outcome = rt.block_on(async { tokio::time::timeout(WAIT, call).await });
    assert_eq!(outcome.expect("the awaited call resolved").err(), Some(CallError::Stopped));
    drop(token);
}

#[test]
fn issue_2_a_slot_whose_generations_are_used_up_is_retired_not_wrapped() {
    let node = node("reg-retire", 1);
    // The next process in slot 0 gets the last usable generation.
    pinion::_benchable::set_vacant_generation(&node.handle(), 0, 0, pinion::_benchable::Reservation::RETIRED - 1);
    let last = node.spawn(|| Echo, ProcessOptions::default()).wait().unwrap();
    assert!(format!("{last:?}").ends_with(&format!(".0.{}>", u32::MAX - 1)), "{last:?}");
    node.exit(last, ExitReason::Kill);
    let deadline = Instant::now() + WAIT;
    while node.process_info(last).is_ok() {
        assert!(Instant::now() < deadline, "the process never ended");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The slot is retired: the stale pid is refused and new processes go elsewhere.
    assert!(matches!(node.send(last, 1u64), Err(pinion::SendError::NoSuchProcess(1))));
    let next = node.spawn(|| Echo, ProcessOptions::default()).wait().unwrap();
    assert!(!format!("{next:?}").contains(".0.0."), "slot 0 was reused: {next:?}");
    assert_eq!(node.inspect().unwrap()[0].processes, 1, "the tombstone is not a process");
    // And the node still stops (the tombstone holds no process).
    node.stop();
}
