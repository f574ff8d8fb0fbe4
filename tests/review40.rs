//! Review 40 (stop 31): the actor core against its docs and OTP. Its failing tests (an exit
//! signal already queued took effect after `unlink`; a `Down` on its way arrived after
//! `demonitor`; a monitor's or link's watch entry stayed after its signal arrived, so a
//! long-lived watcher grew by ~49 bytes a watched process; a call to one's own name waited
//! out its timeout) and what it checked, kept. Every wait is bounded.

mod counting;
mod support;

use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pinion::{Actor, CallError, Context, Down, ExitReason, ExitSignal, Message, Pid, ProcessOptions, Reply, ShardId};
use support::{CALL_TIMEOUT, lock, node};

// ---- a live-bytes counting allocator (tests that measure hold MEASURE) --------------------

static MEASURE: Mutex<()> = Mutex::new(());

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    lock(&MEASURE)
}

// ---- small actors -------------------------------------------------------------------------

/// Ends with `Custom("boom")` on `Die`; answers calls with `()`.
struct Victim;
struct Die;

impl Actor for Victim {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if msg.is::<Die>() { Err(ExitReason::custom("boom")) } else { Ok(()) }
    }
    async fn handle_call(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        Ok(Reply::now(()))
    }
}

/// Reports every message it gets (as text) to `tx`.
fn describe(msg: &Message) -> String {
    if let Some(d) = msg.downcast_ref::<Down>() {
        format!("down {:?} {}", d.pid, d.reason)
    } else if let Some(e) = msg.downcast_ref::<ExitSignal>() {
        format!("exit {:?} {}", e.from, e.reason)
    } else {
        "other".to_owned()
    }
}

// ---- 1. unlink after the linked process's exit signal was queued --------------------------

/// On a `Pid`: links to it, makes it die, lets it run (the exit signal is queued here), then
/// unlinks and says so. On `Ping`: says `alive`.
struct Unlinker {
    tx: mpsc::Sender<String>,
}
struct Ping;

impl Actor for Unlinker {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if msg.is::<Ping>() {
            let _ = self.tx.send("alive".into());
            return Ok(());
        }
        if let Ok(b) = msg.downcast::<Pid>() {
            ctx.link(b);
            ctx.send(b, Die).unwrap();
            ctx.sleep(Duration::from_millis(50)).await; // b runs and ends meanwhile
            ctx.unlink(b);
            let _ = self.tx.send("unlinked".into());
        }
        Ok(())
    }
    async fn terminate(&mut self, _: &mut Context, reason: &ExitReason) {
        let _ = self.tx.send(format!("terminated {reason}"));
    }
}

/// OTP `unlink/1`: "Once unlink(Id) has returned, it is guaranteed that the link between the
/// caller and the entity referred to by Id has no effect on the caller in the future". A
/// process that does not trap exits and unlinked must not be ended by the signal of that link.
#[test]
fn unlink_after_exit_signal_queued_same_shard_does_not_end_the_unlinker() {
    let node = node("r40-unlink", 1);
    let h = node.handle();
    let (tx, rx) = mpsc::channel();
    let b = h.spawn(|| Victim, ProcessOptions::default()).wait().unwrap();
    let a = h.spawn(move || Unlinker { tx }, ProcessOptions::default()).wait().unwrap();
    h.send(a, b).unwrap();
    assert_eq!(rx.recv_timeout(CALL_TIMEOUT).unwrap(), "unlinked");
    let _ = h.send(a, Ping);
    let next = rx.recv_timeout(CALL_TIMEOUT).unwrap();
    node.stop();
    assert_eq!(next, "alive", "the unlinked process was ended by the link it had undone");
}

/// As `Unlinker`, but `b` is on another shard and this one blocks its own shard while `b`
/// ends, so the exit signal is on its way (in this shard's inbox) when `unlink` returns.
struct CrossUnlinker {
    tx: mpsc::Sender<String>,
}

impl Actor for CrossUnlinker {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if msg.is::<Ping>() {
            let _ = self.tx.send("alive".into());
            return Ok(());
        }
        if let Ok(b) = msg.downcast::<Pid>() {
            ctx.link(b);
            ctx.send(b, Die).unwrap();
            std::thread::sleep(Duration::from_millis(300)); // shard 1 ends b; its exit waits in our inbox
            ctx.unlink(b);
            let _ = self.tx.send("unlinked".into());
        }
        Ok(())
    }
    async fn terminate(&mut self, _: &mut Context, reason: &ExitReason) {
        let _ = self.tx.send(format!("terminated {reason}"));
    }
}

/// OTP `unlink/1` across shards (stop 32, an item of stop 31's list): the exit signal of the
/// undone link was on its way from the other shard when `unlink` returned; it arrived after
/// and ended the process.
#[test]
fn unlink_while_the_exit_signal_is_on_its_way_from_another_shard_does_not_end_the_unlinker() {
    let node = node("r40-unlink-x", 2);
    let h = node.handle();
    let (tx, rx) = mpsc::channel();
    let b = h.spawn_on(ShardId(1), || Victim, ProcessOptions::default()).wait().unwrap();
    let a = h.spawn_on(ShardId(0), move || CrossUnlinker { tx }, ProcessOptions::default()).wait().unwrap();
    h.send(a, b).unwrap();
    assert_eq!(rx.recv_timeout(CALL_TIMEOUT).unwrap(), "unlinked");
    let _ = h.send(a, Ping);
    let next = rx.recv_timeout(CALL_TIMEOUT).unwrap();
    node.stop();
    assert_eq!(next, "alive", "the unlinked process was ended by the link it had undone");
}

// ---- 2. demonitor while the Down is on its way from another shard --------------------------

/// On a `Pid` (of another shard): monitors it, makes it die, blocks its own shard while the
/// target's shard ends it (the `Down` is then on its way), demonitors, says so. Reports any
/// message it gets later.
struct Demonitorer {
    tx: mpsc::Sender<String>,
}

impl Actor for Demonitorer {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<Pid>() {
            Ok(b) => {
                let r = ctx.monitor(b);
                ctx.send(b, Die).unwrap();
                std::thread::sleep(Duration::from_millis(300)); // shard 1 ends b; its Down waits in our inbox
                ctx.demonitor(b, r);
                let _ = self.tx.send("demonitored".into());
            }
            Err(msg) => {
                let _ = self.tx.send(describe(&msg));
            }
        }
        Ok(())
    }
}

/// OTP `demonitor/1`: "Once demonitor(MonitorRef) has returned, it is guaranteed that no
/// {'DOWN', MonitorRef, _, _, _} message, because of the monitor, will be placed in the
/// caller message queue in the future."
#[test]
fn demonitor_cross_shard_down_in_flight_is_not_delivered_afterwards() {
    let node = node("r40-demon", 2);
    let h = node.handle();
    let (tx, rx) = mpsc::channel();
    let b = h.spawn_on(ShardId(1), || Victim, ProcessOptions::default()).wait().unwrap();
    let a = h.spawn_on(ShardId(0), move || Demonitorer { tx }, ProcessOptions::default()).wait().unwrap();
    h.send(a, b).unwrap();
    assert_eq!(rx.recv_timeout(CALL_TIMEOUT).unwrap(), "demonitored");
    let late = rx.recv_timeout(Duration::from_millis(500));
    node.stop();
    assert!(late.is_err(), "after demonitor returned, the process got: {late:?}");
}

// ---- 3. a watcher's bookkeeping of ended processes ----------------------------------------

/// On `Cycle(n)`: n times, spawns a `Victim` here, monitors it, makes it die and waits for its
/// `Down`. Answers the call when done.
struct Watcher;
struct Cycle(usize);

impl Actor for Watcher {
    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, req: Message) -> Result<Reply, ExitReason> {
        let Ok(Cycle(n)) = req.downcast::<Cycle>() else { return Ok(Reply::now(false)) };
        for _ in 0..n {
            let child = ctx.spawn(|| Victim, ProcessOptions::with_mailbox(1)).await.unwrap();
            ctx.monitor(child);
            ctx.send(child, Die).unwrap();
            if ctx.wait_down(child, CALL_TIMEOUT).await.is_none() {
                return Ok(Reply::now(false));
            }
        }
        Ok(Reply::now(true))
    }
}

/// A long-lived process that monitors processes that then end (a supervisor of short-lived
/// children, a request tracker) keeps an entry per ended process for ever: `watching` is
/// undone by `demonitor`/`unlink` and by its own end, never when the `Down` arrives.
#[test]
fn monitoring_ended_processes_does_not_grow_the_watcher_without_bound() {
    let _serial = serial();
    let node = node("r40-watch", 1);
    let h = node.handle();
    let w = h.spawn(|| Watcher, ProcessOptions::default()).wait().unwrap();
    let cycle = |n| h.call_blocking(w, Cycle(n), Duration::from_secs(60)).unwrap().downcast::<bool>().unwrap();
    assert!(cycle(2_000)); // warm up: slabs, queues, wheel
    let before = counting::live();
    const N: usize = 20_000;
    assert!(cycle(N));
    let grown = counting::live() - before;
    node.stop();
    assert!(grown < (N as i64) * 4, "{grown} bytes still held after {N} monitored processes ended");
}

// ---- 4. a call to oneself through one's name ----------------------------------------------

struct CallsOwnName;
impl Actor for CallsOwnName {
    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, req: Message) -> Result<Reply, ExitReason> {
        if req.is::<()>() {
            let start = Instant::now();
            let got = ctx.call("r40-self", 1u8, Duration::from_secs(3)).await;
            return Ok(Reply::now((got.err(), start.elapsed())));
        }
        Ok(Reply::now(()))
    }
}

/// `Context::call` answers a process calling its own pid `WouldBlock` at once ("it cannot
/// answer while it waits: at once, not after the whole timeout"); OTP's `gen:call` answers
/// `calling_self` for a name that resolves to the caller as for its pid.
#[test]
fn a_process_calling_its_own_name_is_answered_at_once() {
    let node = node("r40-callself", 1);
    let h = node.handle();
    let pid = h.spawn_register("r40-self", || CallsOwnName, ProcessOptions::default()).wait().unwrap();
    let got = h.call_blocking(pid, (), CALL_TIMEOUT).unwrap();
    let (err, took) = got.downcast::<(Option<CallError>, Duration)>().unwrap();
    node.stop();
    assert!(took < Duration::from_secs(1), "answered {err:?} after {took:?}");
    assert_eq!(err, Some(CallError::WouldBlock));
}

// ---- checked, holds: a name is free again when the Down of its owner arrives ---------------

/// On a `Pid` (of another shard, registered as "r40-name"): monitors it, makes it die; on its
/// `Down`, registers "r40-name" itself and reports whether it could.
struct Heir {
    tx: mpsc::Sender<bool>,
}

impl Actor for Heir {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<Pid>() {
            Ok(b) => {
                ctx.monitor(b);
                ctx.send(b, Die).unwrap();
            }
            Err(msg) => {
                if msg.is::<Down>() {
                    let _ = self.tx.send(ctx.register("r40-name").is_ok());
                }
            }
        }
        Ok(())
    }
}

#[test]
fn a_name_is_registrable_by_a_monitor_as_soon_as_the_down_arrives() {
    let node = node("r40-heir", 2);
    let h = node.handle();
    let (tx, rx) = mpsc::channel();
    let b = h.spawn_register("r40-name", || Victim, ProcessOptions::default()).wait().unwrap();
    let shard = if b.shard() == ShardId(0) { ShardId(1) } else { ShardId(0) };
    let a = h.spawn_on(shard, move || Heir { tx }, ProcessOptions::default()).wait().unwrap();
    h.send(a, b).unwrap();
    let got = rx.recv_timeout(CALL_TIMEOUT);
    assert_eq!(h.whereis("r40-name"), Some(a));
    node.stop();
    assert_eq!(got, Ok(true));
}
