//! `Actor::handle_message_now`: messages handled in a plain function, on real nodes.
//!
//! The process loop offers every message to `handle_message_now` first and passes the ones it
//! hands back to `handle_message`. These tests check what a user relies on: one handler sees
//! each message exactly once and in order, a message passed on arrives unchanged (inline and
//! boxed values alike), a message handled now is counted and frees its mailbox slot, an error or
//! a panic there ends the process as it would in `handle_message`, trapped exit signals and
//! `Down`s are offered too, and calls never are. Same-shard and cross-shard senders both.

#[allow(dead_code, reason = "the helpers are written for tests/actor.rs; this file uses a few")]
mod common;

use std::sync::mpsc::{Receiver, Sender, channel};

use common::*;
use pinion::{
    Actor, Context, Down, ExitReason, ExitSignal, Handled, Message, NodeHandle, Pid, ProcessOptions, Reply, SendError,
};

/// What a [`Split`] saw, and where.
#[derive(Debug, PartialEq)]
enum Seen {
    /// A `u64`, in `handle_message_now`.
    Now(u64),
    /// A `String`, in `handle_message` (passed on by `handle_message_now`).
    Later(String),
    /// A boxed `[u64; 8]` (too big to be stored inline), in `handle_message`.
    LaterBig([u64; 8]),
    /// A trapped exit signal, in `handle_message_now`.
    Exit(ExitSignal),
    /// A `Down`, in `handle_message_now`.
    Down(Down),
    /// A call, in `handle_call`.
    Call(u64),
    /// `terminate`, with its reason.
    Terminated(ExitReason),
}

/// Handles `u64`s, exit signals and `Down`s now; passes everything else on.
struct Split {
    tx: Sender<Seen>,
}

/// Tells a [`Split`] to answer `Handled::Done(Err(reason))` from `handle_message_now`.
struct FailNow(ExitReason);
/// Tells a [`Split`] to panic in `handle_message_now`.
struct PanicNow;
/// Tells a [`Split`] to link to this process from `handle_message_now`.
struct LinkNow(Pid);
/// Tells a [`Split`] to monitor this process from `handle_message_now`.
struct MonitorNow(Pid);
/// Tells a [`Split`] to send `n` to `to` from `handle_message_now`.
struct SendNow {
    to: Pid,
    n: u64,
}

impl Actor for Split {
    fn handle_message_now(&mut self, ctx: &mut Context, _from: Pid, msg: Message) -> Handled {
        let msg = match msg.downcast::<u64>() {
            Ok(n) => {
                let _ = self.tx.send(Seen::Now(n));
                return Handled::Done(Ok(()));
            }
            Err(msg) => msg,
        };
        if let Some(signal) = msg.downcast_ref::<ExitSignal>() {
            let _ = self.tx.send(Seen::Exit(signal.clone()));
        } else if let Some(down) = msg.downcast_ref::<Down>() {
            let _ = self.tx.send(Seen::Down(down.clone()));
        } else if let Some(FailNow(reason)) = msg.downcast_ref::<FailNow>() {
            return Handled::Done(Err(reason.clone()));
        } else if msg.is::<PanicNow>() {
            panic!("panic in handle_message_now");
        } else if let Some(LinkNow(pid)) = msg.downcast_ref::<LinkNow>() {
            ctx.link(*pid);
        } else if let Some(MonitorNow(pid)) = msg.downcast_ref::<MonitorNow>() {
            ctx.monitor(*pid);
        } else if let Some(SendNow { to, n }) = msg.downcast_ref::<SendNow>() {
            let sent = ctx.send(*to, *n);
            assert!(sent.is_ok(), "send from handle_message_now: {sent:?}");
        } else {
            return Handled::Async(msg);
        }
        Handled::Done(Ok(()))
    }

    async fn handle_message(&mut self, _ctx: &mut Context, _from: Pid, msg: Message) -> Result<(), ExitReason> {
        let seen = match msg.downcast::<String>() {
            Ok(text) => Seen::Later(text),
            Err(msg) => match msg.downcast::<[u64; 8]>() {
                Ok(big) => Seen::LaterBig(big),
                Err(msg) => panic!("handle_message got an unexpected message: {msg:?}"),
            },
        };
        let _ = self.tx.send(seen);
        Ok(())
    }

    async fn handle_call(&mut self, _ctx: &mut Context, _from: Pid, req: Message) -> Result<Reply, ExitReason> {
        let n = req.downcast::<u64>().unwrap_or_else(|m| panic!("a call with {m:?}"));
        let _ = self.tx.send(Seen::Call(n));
        Ok(Reply::now(n + 1))
    }

    async fn terminate(&mut self, _ctx: &mut Context, reason: &ExitReason) {
        let _ = self.tx.send(Seen::Terminated(reason.clone()));
    }
}

fn spawn_split(h: &NodeHandle, shard_index: usize, options: ProcessOptions) -> (Pid, Receiver<Seen>) {
    let (tx, rx) = channel();
    let pid = h.spawn_on(shard(shard_index), move || Split { tx }, options).wait().expect("spawn a Split");
    (pid, rx)
}

fn next(rx: &Receiver<Seen>, what: &str) -> Seen {
    rx.recv_timeout(WAIT).unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

/// Sends `u64`s, `String`s and boxed arrays, interleaved, from a process on shard 0 to a
/// `Split` on shard `to_shard`: each reaches the one handler meant for it, once, in order.
fn each_message_reaches_one_handler_in_order(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (split, rx) = spawn_split(&h, shards - 1, ProcessOptions::default());
    let (sender, _sender_events) = probe(&h, 0);
    let mut expected = Vec::new();
    for i in 0..60u64 {
        match i % 3 {
            0 => {
                let sent: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: split.into(), n: i });
                assert!(sent.is_ok(), "send {i}: {sent:?}");
                expected.push(Seen::Now(i));
            }
            1 => {
                h.send(split, format!("text {i}")).expect("send a String");
                expected.push(Seen::Later(format!("text {i}")));
            }
            _ => {
                h.send(split, [i; 8]).expect("send a [u64; 8]");
                expected.push(Seen::LaterBig([i; 8]));
            }
        }
    }
    // The probe's sends and the handle's come from two senders, so only each sender's own
    // order is guaranteed: compare each sender's subsequence.
    let seen: Vec<Seen> = (0..expected.len()).map(|_| next(&rx, "a message")).collect();
    let from_probe = |s: &&Seen| matches!(s, Seen::Now(_));
    assert_eq!(
        seen.iter().filter(from_probe).collect::<Vec<_>>(),
        expected.iter().filter(from_probe).collect::<Vec<_>>(),
        "the u64s handled now, in the probe's order"
    );
    assert_eq!(
        seen.iter().filter(|s| !from_probe(s)).collect::<Vec<_>>(),
        expected.iter().filter(|s| !from_probe(s)).collect::<Vec<_>>(),
        "the messages passed on, unchanged and in the handle's order"
    );
    let info = h.process_info(split).expect("the Split is alive");
    assert_eq!(info.processed, expected.len() as u64, "every message is counted once, either path");
    assert_eq!(info.reserved, 0, "every handled message gave its mailbox slot back");
    node.stop();
}

#[test]
fn each_message_reaches_one_handler_in_order_same_shard() {
    each_message_reaches_one_handler_in_order("now-order-same", 1);
}

#[test]
fn each_message_reaches_one_handler_in_order_cross_shard() {
    each_message_reaches_one_handler_in_order("now-order-cross", 2);
}

#[test]
fn messages_handled_now_free_their_mailbox_slots() {
    // A mailbox of 2 takes many more messages than 2 over its life only if each message handled
    // now gives its slot back; a full one answers MailboxFull with the message.
    let node = start("now-slots", 1);
    let h = node.handle();
    let (split, rx) = spawn_split(&h, 0, ProcessOptions::with_mailbox(2));
    let mut handled = 0u64;
    let mut full = 0;
    for i in 0..200u64 {
        let mut msg = i;
        loop {
            match h.send(split, msg) {
                Ok(()) => break,
                Err(SendError::MailboxFull(back)) => {
                    assert_eq!(back, msg, "the message comes back");
                    msg = back;
                    full += 1;
                    // Slots come back when the Split's run returns, just after it reports its
                    // last message: wait for a report if one is due, else for the run to end.
                    if handled < i {
                        assert_eq!(next(&rx, "a message handled now"), Seen::Now(handled));
                        handled += 1;
                    } else {
                        wait_until("the Split's slots to come back", || {
                            h.process_info(split).is_ok_and(|info| info.reserved < 2)
                        });
                    }
                }
                Err(e) => panic!("send {i}: {e}"),
            }
        }
    }
    assert!(full > 0, "the mailbox of 2 was never full: the test did not test the bound");
    while handled < 200 {
        assert_eq!(next(&rx, "a message handled now"), Seen::Now(handled));
        handled += 1;
    }
    node.stop();
}

#[test]
fn calls_go_to_handle_call_not_handle_message_now() {
    let node = start("now-calls", 2);
    let h = node.handle();
    for s in 0..2 {
        let (split, rx) = spawn_split(&h, s, ProcessOptions::default());
        let answer: u64 = ask(&h, split, 41u64);
        assert_eq!(answer, 42);
        assert_eq!(next(&rx, "the call"), Seen::Call(41));
    }
    node.stop();
}

#[test]
fn an_error_from_handle_message_now_ends_the_process_after_terminate() {
    let node = start("now-error", 2);
    let h = node.handle();
    let (watcher, events) = probe(&h, 0);
    let (split, rx) = spawn_split(&h, 1, ProcessOptions::default());
    let _: pinion::MonitorRef = ask(&h, watcher, Cmd::Monitor(split.into()));
    // The monitor request travels from shard 0; the Split must not end before it lands.
    wait_until("the monitor is in effect", || h.process_info(split).is_ok_and(|i| i.monitors == 1));
    let reason = ExitReason::custom("refused now");
    h.send(split, FailNow(reason.clone())).expect("send FailNow");
    // Queued behind it, unless the process already ended (it is on another shard and may
    // handle `FailNow` at once): either way nothing may be handled after the error.
    match h.send(split, 7u64) {
        Ok(()) | Err(pinion::SendError::NoSuchProcess(_)) => {}
        Err(e) => panic!("a message behind it: {e:?}"),
    }
    assert_eq!(next(&rx, "terminate"), Seen::Terminated(reason.clone()));
    let (_, down) = expect(&events, "the Down", |e| matches!(e, Event::Down { down, .. } if down.pid == split));
    let Event::Down { down, .. } = down else { unreachable!() };
    assert_eq!(down.reason, reason);
    assert!(rx.try_recv().is_err(), "nothing was handled after the error");
    node.stop();
}

#[test]
fn a_panic_in_handle_message_now_ends_only_its_process() {
    let node = start("now-panic", 1);
    let h = node.handle();
    let (watcher, events) = probe(&h, 0);
    let (split, rx) = spawn_split(&h, 0, ProcessOptions::default());
    let (neighbour, neighbour_rx) = spawn_split(&h, 0, ProcessOptions::default());
    let _: pinion::MonitorRef = ask(&h, watcher, Cmd::Monitor(split.into()));
    wait_until("the monitor is in effect", || h.process_info(split).is_ok_and(|i| i.monitors == 1));
    h.send(split, PanicNow).expect("send PanicNow");
    let (_, down) = expect(&events, "the Down", |e| matches!(e, Event::Down { down, .. } if down.pid == split));
    let Event::Down { down, .. } = down else { unreachable!() };
    assert!(
        matches!(&down.reason, ExitReason::Panic(text) if text.contains("panic in handle_message_now")),
        "{:?}",
        down.reason
    );
    assert!(rx.try_recv().is_err(), "no terminate after a panic");
    h.send(neighbour, 5u64).expect("the shard's other process still takes mail");
    assert_eq!(next(&neighbour_rx, "the neighbour's message"), Seen::Now(5));
    node.stop();
}

#[test]
fn trapped_exit_signals_and_downs_are_offered_now() {
    let node = start("now-signals", 2);
    let h = node.handle();
    let (split, rx) = spawn_split(&h, 0, ProcessOptions { trap_exit: true, ..ProcessOptions::default() });
    let (linked, _linked_events) = probe(&h, 1);
    let (watched, _watched_events) = probe(&h, 0);
    // Links and monitors set from handle_message_now itself (one-way: the Split watches).
    h.send(split, LinkNow(linked)).expect("send LinkNow");
    h.send(split, MonitorNow(watched)).expect("send MonitorNow");
    wait_until("the link and the monitor are in effect", || {
        h.process_info(linked).is_ok_and(|i| i.links == 1) && h.process_info(watched).is_ok_and(|i| i.monitors == 1)
    });
    h.send(linked, Cmd::Fail(ExitReason::custom("linked ends"))).expect("send Fail");
    let Seen::Exit(signal) = next(&rx, "the exit signal") else { panic!("not an exit signal") };
    assert_eq!((signal.from, signal.reason), (linked, ExitReason::custom("linked ends")));
    h.send(watched, Cmd::Fail(ExitReason::custom("watched ends"))).expect("send Fail");
    let Seen::Down(down) = next(&rx, "the Down") else { panic!("not a Down") };
    assert_eq!((down.pid, down.reason), (watched, ExitReason::custom("watched ends")));
    node.stop();
}

#[test]
fn handle_message_now_can_send_through_its_context() {
    let node = start("now-send", 2);
    let h = node.handle();
    for s in 0..2 {
        let (split, _rx) = spawn_split(&h, 0, ProcessOptions::default());
        let (target, events) = probe(&h, s);
        h.send(split, SendNow { to: target, n: 99 }).expect("send SendNow");
        let (_, e) =
            expect(&events, "the message sent from handle_message_now", |e| matches!(e, Event::Msg { n: 99, .. }));
        let Event::Msg { from, .. } = e else { unreachable!() };
        assert_eq!(from, split);
    }
    node.stop();
}
