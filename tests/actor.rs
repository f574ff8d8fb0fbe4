//! Actors on real nodes (real shard threads, no mocks): send/call, deferred replies, timeouts
//! and late replies, addressing errors, names, aliases, timers, panics, links, monitors, exit
//! signals, fairness, spawning.
//!
//! Same-shard and cross-shard paths differ in the runtime (direct delivery vs. the inbox), so
//! most behaviours are checked on a 1-shard node and across the two shards of a 2-shard node.
//! Results come back through `std::sync::mpsc` channels moved into the probes, or as call
//! replies. Timeouts only bound waits; nothing asserts on timing.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use pinion::{
    Alias, CallError, ExitReason, MonitorRef, Pid, ProcessId, ProcessOptions, ProcessState, RegisterError, SendError,
    SpawnError, TimerRef,
};

/// The shard of the second process: the same as the first on a 1-shard node, the other one on
/// a 2-shard node.
fn other(shards: usize) -> usize {
    shards - 1
}

/// Link and monitor requests travel like messages: one from another shard may arrive after a
/// later message from another sender (FIFO holds per sender-receiver pair only). A call from
/// `from` to `to` after them, in the same lane, returns only once they are in effect.
fn barrier(h: &pinion::NodeHandle, from: Pid, to: Pid) {
    assert_eq!(call_via(h, from, to, 0u64, WAIT), Ok(0));
}

fn is_msg(at: Pid, n: u64) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::Msg { at: a, n: m, .. } if *a == at && *m == n)
}

fn is_terminated(at: Pid) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::Terminated { at: a, .. } if *a == at)
}

fn is_down_of(pid: Pid) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::Down { down, .. } if down.pid == pid)
}

fn is_exit_from(pid: Pid) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::Exit { signal, .. } if signal.from == pid)
}

fn is_held(n: u64) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::Held { n: m, .. } if *m == n)
}

fn is_called() -> impl Fn(&Event) -> bool {
    |e| matches!(e, Event::Called { .. })
}

fn terminated_reason(e: Event) -> ExitReason {
    match e {
        Event::Terminated { reason, .. } => reason,
        other => panic!("not a Terminated event: {other:?}"),
    }
}

// ---- send / call --------------------------------------------------------------------------

fn send_from_process_reaches_handler(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (sender, _srx) = probe(&h, 0);
    let (receiver, rrx) = probe(&h, other(shards));
    for n in 1..=5u64 {
        let sent: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: receiver.into(), n });
        assert!(sent.is_ok(), "send {n} failed: {sent:?}");
    }
    for n in 1..=5u64 {
        let (skipped, e) = expect(&rrx, "message from the sender", is_msg(receiver, n));
        assert!(skipped.is_empty(), "messages out of order: {skipped:?} before {e:?}");
        let Event::Msg { from, .. } = e else { unreachable!() };
        assert_eq!(from, sender);
        assert!(!from.is_external());
    }
    node.stop();
}

#[test]
fn send_same_shard_from_process_reaches_handler_in_order() {
    send_from_process_reaches_handler("actor-send-same", 1);
}

#[test]
fn send_cross_shard_from_process_reaches_handler_in_order() {
    send_from_process_reaches_handler("actor-send-cross", 2);
}

#[test]
fn send_from_handle_sender_is_external_pid() {
    let node = start("actor-send-external", 2);
    let h = node.handle();
    for s in 0..2 {
        let (pid, rx) = probe(&h, s);
        h.send(pid, 7u64).expect("send from the handle");
        let (_, e) = expect(&rx, "message from the handle", is_msg(pid, 7));
        let Event::Msg { from, .. } = e else { unreachable!() };
        assert_eq!(from, h.external_pid());
        assert!(from.is_external());
        let caller: Pid = ask(&h, pid, Cmd::Sender);
        assert_eq!(caller, h.external_pid(), "a call from the handle comes from the external pid");
    }
    node.stop();
}

fn call_from_process_replies_now(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (caller, _crx) = probe(&h, 0);
    let (callee, _rx) = probe(&h, other(shards));
    for n in [0u64, 1, 42, u64::MAX] {
        assert_eq!(call_via(&h, caller, callee, n, WAIT), Ok(n));
    }
    // The callee sees the calling process as `from`.
    assert_eq!(call_via(&h, caller, callee, Cmd::IsSender(caller), WAIT), Ok(1));
    let sender: Pid = ask(&h, callee, Cmd::Sender);
    assert_eq!(sender, h.external_pid());
    node.stop();
}

#[test]
fn call_same_shard_from_process_reply_now_answers_caller() {
    call_from_process_replies_now("actor-call-same", 1);
}

#[test]
fn call_cross_shard_from_process_reply_now_answers_caller() {
    call_from_process_replies_now("actor-call-cross", 2);
}

#[test]
fn call_from_handle_reply_now_answers_on_every_shard() {
    let node = start("actor-call-handle", 2);
    let h = node.handle();
    for s in 0..2 {
        let (pid, _rx) = probe(&h, s);
        for n in [3u64, 5, 8] {
            assert_eq!(call_u64(&h, pid, n), Ok(n));
            assert_eq!(h.call(pid, n, WAIT).wait().map(|m| m.downcast::<u64>().unwrap()), Ok(n));
        }
    }
    node.stop();
}

// ---- deferred replies -----------------------------------------------------------------------

fn deferred_reply_answers_caller(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (caller, _crx) = probe(&h, 0);
    let (callee, rx) = probe(&h, other(shards));
    // Answered from a `send_after` timer of the callee.
    assert_eq!(call_u64(&h, callee, Cmd::DeferTimer { n: 11, delay: Duration::from_millis(20) }), Ok(11));
    let (_, e) = expect(&rx, "timer reply", |e| matches!(e, Event::Replied { n: 11, .. }));
    assert_eq!(e.at(), callee);
    assert!(matches!(e, Event::Replied { delivered: true, .. }), "an on-time reply is delivered: {e:?}");
    assert_eq!(call_via(&h, caller, callee, Cmd::DeferTimer { n: 12, delay: Duration::from_millis(20) }, WAIT), Ok(12));
    // Answered from another OS thread (a ReplyToken is Send).
    assert_eq!(call_u64(&h, callee, Cmd::DeferThread(13)), Ok(13));
    assert_eq!(call_via(&h, caller, callee, Cmd::DeferThread(14), WAIT), Ok(14));
    // Answered by a later message (Release) to the callee.
    let pending_call = h.call(callee, Cmd::Hold(15), WAIT);
    expect(&rx, "held 15", is_held(15));
    h.send(callee, Cmd::Release).unwrap();
    assert_eq!(pending_call.wait().map(|m| m.downcast::<u64>().unwrap()), Ok(15));
    assert_eq!(h.late_replies(), 0);
    node.stop();
}

#[test]
fn reply_later_same_shard_token_answered_later_reaches_caller() {
    deferred_reply_answers_caller("actor-defer-same", 1);
}

#[test]
fn reply_later_cross_shard_token_answered_later_reaches_caller() {
    deferred_reply_answers_caller("actor-defer-cross", 2);
}

fn dropped_token_answers_no_reply(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (caller, crx) = probe(&h, 0);
    let (callee, rx) = probe(&h, other(shards));
    // Token taken and dropped in the handler.
    assert_eq!(call_u64(&h, callee, Cmd::DeferDrop).err(), Some(CallError::NoReply));
    assert_eq!(call_via(&h, caller, callee, Cmd::DeferDrop, WAIT), Err(CallError::NoReply));
    // Token held, then dropped by a later message: the waiting caller is answered then, long
    // before its (generous) timeout.
    let from_handle = h.call(callee, Cmd::Hold(1), WAIT);
    expect(&rx, "held 1", is_held(1));
    h.send(caller, call_cmd(callee, Cmd::Hold(2), WAIT)).unwrap();
    expect(&rx, "held 2", is_held(2));
    h.send(callee, Cmd::DropHeld).unwrap();
    assert_eq!(from_handle.wait().err(), Some(CallError::NoReply));
    let (_, called) = expect(&crx, "the caller's call ended", is_called());
    assert!(matches!(called, Event::Called { result: Err(CallError::NoReply), .. }), "{called:?}");
    // The callee is still alive and answering.
    assert_eq!(call_u64(&h, callee, 9u64), Ok(9));
    node.stop();
}

#[test]
fn reply_token_dropped_same_shard_caller_gets_no_reply() {
    dropped_token_answers_no_reply("actor-drop-token-same", 1);
}

#[test]
fn reply_token_dropped_cross_shard_caller_gets_no_reply() {
    dropped_token_answers_no_reply("actor-drop-token-cross", 2);
}

#[test]
fn reply_later_without_token_caller_gets_no_reply() {
    let node = start("actor-later-no-token", 2);
    let h = node.handle();
    let (caller, _crx) = probe(&h, 0);
    for s in 0..2 {
        let (callee, _rx) = probe(&h, s);
        assert_eq!(call_u64(&h, callee, Cmd::LaterNoToken).err(), Some(CallError::NoReply));
        assert_eq!(call_via(&h, caller, callee, Cmd::LaterNoToken, WAIT), Err(CallError::NoReply));
    }
    node.stop();
}

// ---- timeouts and late replies --------------------------------------------------------------

#[test]
fn call_from_handle_timeout_then_late_reply_dropped_counted_not_handed_to_next_call() {
    let node = start("actor-late-handle", 1);
    let h = node.handle();
    let (callee, rx) = probe(&h, 0);
    assert_eq!(h.late_replies(), 0);
    assert_eq!(call_u64(&h, callee, 5u64), Ok(5));
    // The callee holds the request past the caller's timeout.
    assert_eq!(h.call_blocking(callee, Cmd::Hold(111), SHORT).err(), Some(CallError::Timeout));
    expect(&rx, "held 111", is_held(111));
    // A second call is in flight when the late reply is sent: it must get its own reply.
    let second = h.call(callee, Cmd::Hold(222), WAIT);
    expect(&rx, "held 222", is_held(222));
    h.send(callee, Cmd::Release).unwrap();
    let (_, late) = expect(&rx, "late reply sent", |e| matches!(e, Event::Replied { n: 111, .. }));
    assert!(matches!(late, Event::Replied { delivered: false, .. }), "a late reply is not delivered: {late:?}");
    let (_, on_time) = expect(&rx, "second reply sent", |e| matches!(e, Event::Replied { n: 222, .. }));
    assert!(matches!(on_time, Event::Replied { delivered: true, .. }), "{on_time:?}");
    assert_eq!(second.wait().map(|m| m.downcast::<u64>().unwrap()), Ok(222));
    assert_eq!(h.late_replies(), 1);
    assert_eq!(inspect_sum(&h, |s| s.late_replies), 1);
    // And a third call is answered normally; the counter does not move.
    assert_eq!(call_u64(&h, callee, 333u64), Ok(333));
    assert_eq!(h.late_replies(), 1);
    node.stop();
}

fn late_reply_to_process_caller(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (caller, crx) = probe(&h, 0);
    let (callee, rx) = probe(&h, other(shards));
    assert_eq!(call_via(&h, caller, callee, Cmd::Hold(111), SHORT), Err(CallError::Timeout));
    expect(&rx, "held 111", is_held(111));
    // Second call from the same caller, in flight while the late reply arrives.
    h.send(caller, call_cmd(callee, Cmd::Hold(222), WAIT)).unwrap();
    expect(&rx, "held 222", is_held(222));
    // Drain the first call's Called event.
    let (_, first) = expect(&crx, "first call ended", is_called());
    assert!(matches!(first, Event::Called { result: Err(CallError::Timeout), .. }), "{first:?}");
    h.send(callee, Cmd::Release).unwrap();
    let (_, second) = expect(&crx, "second call ended", is_called());
    assert!(matches!(second, Event::Called { result: Ok(222), .. }), "the second call got {second:?}");
    wait_until("the late reply is counted", || h.late_replies() == 1);
    let infos = h.inspect().unwrap();
    // Counted where it was found late: on the replier's shard, which knows the caller's
    // deadline (the reply was sent after it).
    assert_eq!(infos[callee.shard().0 as usize].late_replies, 1, "counted on the replier's shard: {infos:?}");
    assert_eq!(infos.iter().map(|s| s.late_replies).sum::<u64>(), 1);
    // A third call from the same caller still gets its own reply.
    assert_eq!(call_via(&h, caller, callee, 333u64, WAIT), Ok(333));
    assert_eq!(h.late_replies(), 1);
    node.stop();
}

#[test]
fn call_from_process_same_shard_timeout_then_late_reply_dropped_counted_not_handed_to_next_call() {
    late_reply_to_process_caller("actor-late-proc-same", 1);
}

#[test]
fn call_from_process_cross_shard_timeout_then_late_reply_dropped_counted_not_handed_to_next_call() {
    late_reply_to_process_caller("actor-late-proc-cross", 2);
}

#[test]
fn reply_token_late_from_foreign_thread_counted_for_handle_and_process_callers() {
    let node = start("actor-late-foreign", 2);
    let h = node.handle();
    let (caller, _crx) = probe(&h, 0);
    let (callee, rx) = probe(&h, 1);
    // Process caller: the late reply crosses from a plain thread to the caller's shard.
    assert_eq!(call_via(&h, caller, callee, Cmd::Hold(1), SHORT), Err(CallError::Timeout));
    expect(&rx, "held 1", is_held(1));
    h.send(callee, Cmd::ReleaseOnThread).unwrap();
    expect(&rx, "late reply 1 sent", |e| matches!(e, Event::Replied { n: 1, .. }));
    wait_until("late reply to the process caller counted", || h.late_replies() == 1);
    // Handle caller: the late reply completes nothing from a plain thread.
    assert_eq!(h.call_blocking(callee, Cmd::Hold(2), SHORT).err(), Some(CallError::Timeout));
    expect(&rx, "held 2", is_held(2));
    h.send(callee, Cmd::ReleaseOnThread).unwrap();
    let (_, e) = expect(&rx, "late reply 2 sent", |e| matches!(e, Event::Replied { n: 2, .. }));
    assert!(matches!(e, Event::Replied { delivered: false, .. }), "{e:?}");
    assert_eq!(h.late_replies(), 2, "a late reply from a non-shard thread to a handle call is counted");
    node.stop();
}

fn reply_token_late_to_process_caller(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (caller, _crx) = probe(&h, 0);
    let (callee, rx) = probe(&h, other(shards));
    let late = h.late_replies();
    // On time: true, and the caller gets it.
    let waiting = {
        let h = h.clone();
        std::thread::spawn(move || call_via(&h, caller, callee, Cmd::Hold(1), WAIT))
    };
    expect(&rx, "call 1 held", |e| matches!(e, Event::Held { n: 1, .. }));
    h.send(callee, Cmd::Release).unwrap();
    let (_, e) = expect(&rx, "reply 1 sent", |e| matches!(e, Event::Replied { n: 1, .. }));
    assert!(matches!(e, Event::Replied { delivered: true, .. }), "{e:?}");
    assert_eq!(waiting.join().unwrap(), Ok(1));
    // After the caller gave up: false, and counted as late.
    assert_eq!(call_via(&h, caller, callee, Cmd::Hold(2), SHORT), Err(CallError::Timeout));
    h.send(callee, Cmd::Release).unwrap();
    let (_, e) = expect(&rx, "late reply 2 sent", |e| matches!(e, Event::Replied { n: 2, .. }));
    assert!(matches!(e, Event::Replied { delivered: false, .. }), "{e:?}");
    assert_eq!(h.late_replies(), late + 1, "the late reply is counted once");
    node.stop();
}

#[test]
fn reply_token_late_to_process_caller_same_shard_reply_returns_false() {
    reply_token_late_to_process_caller("actor-late-proc-flag-1", 1);
}

#[test]
fn reply_token_late_to_process_caller_cross_shard_reply_returns_false() {
    reply_token_late_to_process_caller("actor-late-proc-flag-2", 2);
}

fn timeout_bounds(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (caller, _crx) = probe(&h, 0);
    let (callee, rx) = probe(&h, other(shards));
    let zero = Duration::ZERO;
    assert_eq!(h.call_blocking(callee, 1u64, zero).err(), Some(CallError::InvalidTimeout(zero)));
    assert_eq!(h.call(callee, 1u64, zero).wait().err(), Some(CallError::InvalidTimeout(zero)));
    assert_eq!(call_via(&h, caller, callee, 1u64, zero), Err(CallError::InvalidTimeout(zero)));
    // A refused call is never delivered.
    assert_eq!(h.call_blocking(callee, Cmd::Hold(66), zero).err(), Some(CallError::InvalidTimeout(zero)));
    assert_eq!(call_via(&h, caller, callee, Cmd::Hold(67), zero), Err(CallError::InvalidTimeout(zero)));
    // Huge timeouts are accepted and the calls complete normally.
    let max = Duration::MAX;
    assert_eq!(h.call_blocking(callee, 8u64, max).map(|m| m.downcast::<u64>().unwrap()), Ok(8));
    assert_eq!(call_via(&h, caller, callee, 9u64, max), Ok(9));
    let deferred = h.call_blocking(callee, Cmd::DeferTimer { n: 10, delay: Duration::from_millis(5) }, max);
    assert_eq!(deferred.map(|m| m.downcast::<u64>().unwrap()), Ok(10));
    let deferred = call_via(&h, caller, callee, Cmd::DeferThread(11), max);
    assert_eq!(deferred, Ok(11));
    let held: Vec<Event> = pending(&rx).into_iter().filter(|e| matches!(e, Event::Held { .. })).collect();
    assert!(held.is_empty(), "a zero-timeout call reached the callee: {held:?}");
    node.stop();
}

#[test]
fn call_timeout_bounds_same_shard_zero_invalid_max_completes() {
    timeout_bounds("actor-timeouts-same", 1);
}

#[test]
fn call_timeout_bounds_cross_shard_zero_invalid_max_completes() {
    timeout_bounds("actor-timeouts-cross", 2);
}

// ---- addressing errors ----------------------------------------------------------------------

fn dead_pid_refused(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (sender, _rx) = probe(&h, 0);
    let dead = dead_pid(&h, other(shards));
    match h.send(dead, 5u64) {
        Err(SendError::NoSuchProcess(m)) => assert_eq!(m, 5, "the message comes back"),
        other => panic!("send to a dead pid: {other:?}"),
    }
    assert_eq!(call_u64(&h, dead, 5u64), Err(CallError::NoSuchProcess));
    let sent: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: dead.into(), n: 6 });
    assert!(matches!(sent, Err(SendError::NoSuchProcess(6))), "{sent:?}");
    assert_eq!(call_via(&h, sender, dead, 6u64, WAIT), Err(CallError::NoSuchProcess));
    node.stop();
}

#[test]
fn send_and_call_to_dead_pid_same_shard_return_no_such_process() {
    dead_pid_refused("actor-dead-same", 1);
}

#[test]
fn send_and_call_to_dead_pid_cross_shard_return_no_such_process() {
    dead_pid_refused("actor-dead-cross", 2);
}

#[test]
fn send_to_stale_pid_after_slot_reuse_never_reaches_new_process() {
    let node = start("actor-stale", 1);
    let h = node.handle();
    let dead = dead_pid(&h, 0);
    let (fresh, rx) = probe(&h, 0);
    assert_ne!(dead, fresh);
    assert!(matches!(h.send(dead, 1u64), Err(SendError::NoSuchProcess(1))));
    assert_eq!(call_u64(&h, dead, 1u64), Err(CallError::NoSuchProcess));
    h.send(fresh, 2u64).unwrap();
    let (skipped, _) = expect(&rx, "the marker", is_msg(fresh, 2));
    assert!(skipped.is_empty(), "the new process saw a stale pid's message: {skipped:?}");
    node.stop();
}

#[test]
fn send_and_call_to_unknown_name_return_unknown_name() {
    let node = start("actor-unknown-name", 2);
    let h = node.handle();
    let (sender, _rx) = probe(&h, 1);
    assert!(matches!(h.send("nobody", 1u64), Err(SendError::UnknownName(1))));
    assert_eq!(call_u64(&h, "nobody", 1u64), Err(CallError::UnknownName));
    let local = ProcessId::new("nobody", h.name());
    assert!(matches!(h.send(&local, 2u64), Err(SendError::UnknownName(2))));
    assert_eq!(call_u64(&h, &local, 2u64), Err(CallError::UnknownName));
    let sent: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: "nobody".into(), n: 3 });
    assert!(matches!(sent, Err(SendError::UnknownName(3))), "{sent:?}");
    assert_eq!(call_via(&h, sender, "nobody", 3u64, WAIT), Err(CallError::UnknownName));
    let sent: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: local.clone().into(), n: 4 });
    assert!(matches!(sent, Err(SendError::UnknownName(4))), "{sent:?}");
    node.stop();
}

#[test]
fn send_and_call_to_other_node_return_node_down() {
    let node = start("actor-node-down-a", 2);
    let remote = start("actor-node-down-b", 1);
    let h = node.handle();
    let (sender, _rx) = probe(&h, 1);
    let (remote_pid, remote_rx) = probe(&remote.handle(), 0);
    let pid_elsewhere = ProcessId::new("svc", "actor-node-down-b");
    remote.register("svc", remote_pid).unwrap();
    let nowhere = ProcessId::new("svc", "actor-no-such-node");
    for target in [&pid_elsewhere, &nowhere] {
        assert!(matches!(h.send(target, 1u64), Err(SendError::NodeDown(1))), "{target}");
        assert_eq!(call_u64(&h, target, 1u64), Err(CallError::NodeDown), "{target}");
        let sent: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: target.clone().into(), n: 2 });
        assert!(matches!(sent, Err(SendError::NodeDown(2))), "{target}: {sent:?}");
        assert_eq!(call_via(&h, sender, target.clone(), 2u64, WAIT), Err(CallError::NodeDown), "{target}");
    }
    // A pid of another node is refused too.
    assert!(matches!(h.send(remote_pid, 3u64), Err(SendError::NodeDown(3))));
    assert_eq!(call_u64(&h, remote_pid, 3u64), Err(CallError::NodeDown));
    let sent: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: remote_pid.into(), n: 4 });
    assert!(matches!(sent, Err(SendError::NodeDown(4))), "{sent:?}");
    assert_eq!(call_via(&h, sender, remote_pid, 4u64, WAIT), Err(CallError::NodeDown));
    // Nothing reached the other node's process; it still answers its own node.
    remote.send(remote_pid, 99u64).unwrap();
    let (skipped, _) = expect(&remote_rx, "marker", is_msg(remote_pid, 99));
    assert!(skipped.is_empty(), "{skipped:?}");
    node.stop();
    remote.stop();
}

#[test]
fn send_and_call_by_name_and_process_id_reach_process() {
    let node = start("actor-by-name", 2);
    let h = node.handle();
    let (sender, _srx) = probe(&h, 0);
    let (target, rx) = probe(&h, 1);
    h.register("echo", target).unwrap();
    let id = ProcessId::new("echo", "actor-by-name");
    h.send("echo", 1u64).unwrap();
    h.send(&id, 2u64).unwrap();
    assert_eq!(call_u64(&h, "echo", 3u64), Ok(3));
    assert_eq!(call_u64(&h, &id, 4u64), Ok(4));
    let sent: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: "echo".into(), n: 5 });
    assert!(sent.is_ok());
    let sent: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: id.clone().into(), n: 6 });
    assert!(sent.is_ok());
    assert_eq!(call_via(&h, sender, "echo", 7u64, WAIT), Ok(7));
    assert_eq!(call_via(&h, sender, id, 8u64, WAIT), Ok(8));
    for n in [1, 2, 5, 6] {
        expect(&rx, "message by name", is_msg(target, n));
    }
    node.stop();
}

// ---- names ------------------------------------------------------------------------------------

#[test]
fn register_taken_name_returns_name_taken() {
    let node = start("actor-name-taken", 2);
    let h = node.handle();
    let (owner, _orx) = probe(&h, 0);
    let (other_pid, _rx) = probe(&h, 1);
    h.register("svc", owner).unwrap();
    assert_eq!(h.whereis("svc"), Some(owner));
    assert_eq!(h.register("svc", other_pid), Err(RegisterError::NameTaken("svc".into())));
    let by_ctx: Result<(), RegisterError> = ask(&h, other_pid, Cmd::Register("svc".into()));
    assert_eq!(by_ctx, Err(RegisterError::NameTaken("svc".into())));
    let (tx, _rx2) = std::sync::mpsc::channel();
    let spawned = h.spawn_register("svc", move || Probe::new(tx), ProcessOptions::default()).wait();
    assert_eq!(spawned, Err(SpawnError::NameTaken("svc".into())));
    let from_ctx: Result<Pid, SpawnError> = ask(&h, other_pid, Cmd::Spawn(SpawnHow::Named("svc".into())));
    assert_eq!(from_ctx, Err(SpawnError::NameTaken("svc".into())));
    assert_eq!(h.whereis("svc"), Some(owner), "the owner keeps its name");
    // A process has one name.
    let again: Result<(), RegisterError> = ask(&h, owner, Cmd::Register("svc2".into()));
    assert_eq!(again, Err(RegisterError::AlreadyNamed("svc".into())));
    node.stop();
}

#[test]
fn register_name_freed_when_process_ends_and_reusable() {
    let node = start("actor-name-freed", 2);
    let h = node.handle();
    let (named, _nrx) = probe(&h, 1);
    let (watcher, wrx) = probe(&h, 0);
    let (next_owner, rx) = probe(&h, 0);
    let registered: Result<(), RegisterError> = ask(&h, named, Cmd::Register("worker".into()));
    assert_eq!(registered, Ok(()));
    let found: Option<Pid> = ask(&h, watcher, Cmd::Whereis("worker".into()));
    assert_eq!(found, Some(named));
    let _: MonitorRef = ask(&h, watcher, Cmd::Monitor("worker".into()));
    barrier(&h, watcher, named);
    h.send(named, Cmd::Stop(ExitReason::Normal)).unwrap();
    expect(&wrx, "Down of the named process", is_down_of(named));
    assert_eq!(h.whereis("worker"), None);
    assert!(matches!(h.send("worker", 1u64), Err(SendError::UnknownName(1))));
    // The name can be taken again, through the handle and through a context.
    h.register("worker", next_owner).unwrap();
    h.send("worker", 2u64).unwrap();
    expect(&rx, "message to the new owner", is_msg(next_owner, 2));
    assert!(h.unregister("worker"));
    let by_ctx: Result<(), RegisterError> = ask(&h, watcher, Cmd::Register("worker".into()));
    assert_eq!(by_ctx, Ok(()));
    assert_eq!(h.whereis("worker"), Some(watcher));
    node.stop();
}

#[test]
fn unregister_via_handle_and_context_frees_name() {
    let node = start("actor-unregister", 2);
    let h = node.handle();
    let (a, _arx) = probe(&h, 0);
    let (b, _brx) = probe(&h, 1);
    h.register("n1", a).unwrap();
    assert!(h.unregister("n1"));
    assert_eq!(h.whereis("n1"), None);
    assert!(!h.unregister("n1"), "unregistering twice");
    let registered: Result<(), RegisterError> = ask(&h, b, Cmd::Register("n2".into()));
    assert_eq!(registered, Ok(()));
    assert_eq!(h.whereis("n2"), Some(b));
    let removed: bool = ask(&h, b, Cmd::Unregister);
    assert!(removed);
    assert_eq!(h.whereis("n2"), None);
    let removed: bool = ask(&h, b, Cmd::Unregister);
    assert!(!removed, "a process without a name");
    // Unnamed again, it may take a new name; the freed name is free for anyone.
    let registered: Result<(), RegisterError> = ask(&h, b, Cmd::Register("n3".into()));
    assert_eq!(registered, Ok(()));
    h.register("n2", a).unwrap();
    assert_eq!(h.whereis("n2"), Some(a));
    node.stop();
}

// ---- aliases ----------------------------------------------------------------------------------

#[test]
fn alias_same_shard_reaches_process_and_fails_after_delete() {
    let node = start("actor-alias-same", 1);
    let h = node.handle();
    let (owner, rx) = probe(&h, 0);
    let (sender, _srx) = probe(&h, 0);
    let alias: Alias = ask(&h, owner, Cmd::CreateAlias);
    assert_eq!(alias.owner(), owner);
    let sent: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: alias.into(), n: 5 });
    assert!(sent.is_ok(), "{sent:?}");
    let (_, e) = expect(&rx, "message through the alias", is_msg(owner, 5));
    assert!(matches!(e, Event::Msg { from, .. } if from == sender));
    h.send(alias, 6u64).unwrap();
    expect(&rx, "handle message through the alias", is_msg(owner, 6));
    assert_eq!(call_u64(&h, alias, 7u64), Ok(7));
    assert_eq!(call_via(&h, sender, alias, 8u64, WAIT), Ok(8));

    let deleted: bool = ask(&h, owner, Cmd::DeleteAlias(alias));
    assert!(deleted);
    let deleted: bool = ask(&h, owner, Cmd::DeleteAlias(alias));
    assert!(!deleted, "deleting twice");
    let sent: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: alias.into(), n: 9 });
    assert!(matches!(sent, Err(SendError::UnknownAlias(9))), "{sent:?}");
    assert_eq!(call_via(&h, sender, alias, 10u64, WAIT), Err(CallError::UnknownAlias));
    assert_eq!(call_u64(&h, alias, 11u64), Err(CallError::UnknownAlias));
    // The owner itself is fine, and got nothing through the deleted alias.
    h.send(owner, 12u64).unwrap();
    let (skipped, _) = expect(&rx, "marker", is_msg(owner, 12));
    assert!(skipped.iter().all(|e| !matches!(e, Event::Msg { .. })), "{skipped:?}");
    node.stop();
}

#[test]
fn alias_cross_shard_deleted_message_not_delivered_call_unknown_alias() {
    let node = start("actor-alias-cross", 2);
    let h = node.handle();
    let (owner, rx) = probe(&h, 1);
    let (sender, _srx) = probe(&h, 0);
    let alias: Alias = ask(&h, owner, Cmd::CreateAlias);
    let sent: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: alias.into(), n: 5 });
    assert!(sent.is_ok(), "{sent:?}");
    expect(&rx, "message through the alias", is_msg(owner, 5));
    assert_eq!(call_via(&h, sender, alias, 6u64, WAIT), Ok(6));

    // Accepted while the alias is live, then deleted before its shard delivers them: the
    // owner blocks its shard, deletes the alias, and only then does the shard read its inbox.
    let dead_letters = inspect_sum(&h, |s| s.dead_letters);
    let blocker = {
        let h = h.clone();
        std::thread::spawn(move || {
            let deleted: bool =
                ask(&h, owner, Cmd::Seq(vec![Cmd::Block(Duration::from_millis(300)), Cmd::DeleteAlias(alias)]));
            deleted
        })
    };
    expect(&rx, "the owner blocking its shard", |e| matches!(e, Event::Blocking { .. }));
    let sent: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: alias.into(), n: 9 });
    assert!(sent.is_ok(), "{sent:?}");
    assert!(h.send(alias, 10u64).is_ok());
    assert!(blocker.join().unwrap(), "the alias was live until the owner deleted it");
    // Deleted now: refused at once, from any shard or thread.
    assert_eq!(call_via(&h, sender, alias, 7u64, WAIT), Err(CallError::UnknownAlias));
    assert_eq!(call_u64(&h, alias, 8u64), Err(CallError::UnknownAlias));
    // Markers in the same lanes, after the alias sends: FIFO per pair makes them arrive last.
    let marker: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: owner.into(), n: 100 });
    assert!(marker.is_ok());
    h.send(owner, 101u64).unwrap();
    // The two markers come from different senders: they may arrive in either order.
    let (s1, first) = expect(&rx, "a marker", |e| is_msg(owner, 100)(e) || is_msg(owner, 101)(e));
    let other = if is_msg(owner, 100)(&first) { 101 } else { 100 };
    let (s2, _) = expect(&rx, "the other marker", is_msg(owner, other));
    let leaked: Vec<_> = s1.iter().chain(&s2).filter(|e| matches!(e, Event::Msg { n: 9 | 10, .. })).collect();
    assert!(leaked.is_empty(), "messages through a deleted alias were delivered: {leaked:?}");
    assert!(inspect_sum(&h, |s| s.dead_letters) >= dead_letters + 2, "the undeliverable messages are dead letters");
    node.stop();
}

#[test]
fn alias_cross_shard_deleted_send_returns_unknown_alias() {
    let node = start("actor-alias-cross-doc", 2);
    let h = node.handle();
    let (owner, _rx) = probe(&h, 1);
    let (sender, _srx) = probe(&h, 0);
    let alias: Alias = ask(&h, owner, Cmd::CreateAlias);
    let deleted: bool = ask(&h, owner, Cmd::DeleteAlias(alias));
    assert!(deleted);
    let sent: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: alias.into(), n: 1 });
    assert!(matches!(sent, Err(SendError::UnknownAlias(1))), "{sent:?}");
    assert!(matches!(h.send(alias, 2u64), Err(SendError::UnknownAlias(2))));
    node.stop();
}

fn alias_of_ended_process(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (owner, _rx) = probe(&h, other(shards));
    let (sender, _srx) = probe(&h, 0);
    let alias: Alias = ask(&h, owner, Cmd::CreateAlias);
    h.exit(owner, ExitReason::Kill);
    wait_dead(&h, owner);
    assert!(matches!(h.send(alias, 1u64), Err(SendError::UnknownAlias(1))));
    assert_eq!(call_u64(&h, alias, 2u64), Err(CallError::UnknownAlias));
    let sent: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: alias.into(), n: 3 });
    assert!(matches!(sent, Err(SendError::UnknownAlias(3))), "{sent:?}");
    assert_eq!(call_via(&h, sender, alias, 4u64, WAIT), Err(CallError::UnknownAlias));
    node.stop();
}

#[test]
fn alias_of_ended_process_same_shard_returns_unknown_alias() {
    alias_of_ended_process("actor-alias-dead-same", 1);
}

#[test]
fn alias_of_ended_process_cross_shard_returns_unknown_alias() {
    alias_of_ended_process("actor-alias-dead-cross", 2);
}

// ---- timers -----------------------------------------------------------------------------------

#[test]
fn send_after_same_shard_arrives_after_immediate_send() {
    let node = start("actor-send-after-same", 1);
    let h = node.handle();
    let (pid, rx) = probe(&h, 0);
    let _: Result<(), SendError<u64>> = ask(
        &h,
        pid,
        Cmd::Seq(vec![
            Cmd::SendAfter { to: pid.into(), n: 1, delay: Duration::from_millis(20) },
            Cmd::Send { to: pid.into(), n: 2 },
        ]),
    );
    let (skipped, _) = expect(&rx, "the immediate message", is_msg(pid, 2));
    assert!(skipped.is_empty(), "the timer fired before the handler returned: {skipped:?}");
    let (_, e) = expect(&rx, "the delayed message", is_msg(pid, 1));
    assert!(matches!(e, Event::Msg { from, .. } if from == pid), "sent by the process: {e:?}");
    node.stop();
}

#[test]
fn send_after_cross_shard_delivers_from_setter() {
    let node = start("actor-send-after-cross", 2);
    let h = node.handle();
    let (setter, _srx) = probe(&h, 0);
    let (target, rx) = probe(&h, 1);
    h.register("late-target", target).unwrap();
    let _: TimerRef = ask(&h, setter, Cmd::SendAfter { to: target.into(), n: 3, delay: Duration::from_millis(10) });
    let _: TimerRef =
        ask(&h, setter, Cmd::SendAfter { to: "late-target".into(), n: 4, delay: Duration::from_millis(10) });
    for n in [3, 4] {
        let (_, e) = expect(&rx, "the delayed message", is_msg(target, n));
        assert!(matches!(e, Event::Msg { from, .. } if from == setter), "{e:?}");
    }
    node.stop();
}

#[test]
fn cancel_timer_prevents_delivery() {
    let node = start("actor-cancel-timer", 2);
    let h = node.handle();
    let (pid, rx) = probe(&h, 0);
    let (target, trx) = probe(&h, 1);
    let first: TimerRef = ask(&h, pid, Cmd::SendAfter { to: pid.into(), n: 1, delay: Duration::from_millis(30) });
    let far: TimerRef = ask(&h, pid, Cmd::SendAfter { to: target.into(), n: 5, delay: Duration::MAX });
    let cancelled: bool = ask(&h, pid, Cmd::CancelTimer(first));
    assert!(cancelled);
    let cancelled: bool = ask(&h, pid, Cmd::CancelTimer(far));
    assert!(cancelled, "a timer with a huge delay is cancellable");
    let cancelled: bool = ask(&h, pid, Cmd::CancelTimer(first));
    assert!(!cancelled, "cancelling twice");
    // A later timer to the same process: timers fire in deadline order, so the cancelled one
    // would have arrived first.
    let second: TimerRef = ask(&h, pid, Cmd::SendAfter { to: pid.into(), n: 2, delay: Duration::from_millis(60) });
    let (skipped, _) = expect(&rx, "the second timer", is_msg(pid, 2));
    assert!(skipped.is_empty(), "the cancelled timer fired: {skipped:?}");
    let cancelled: bool = ask(&h, pid, Cmd::CancelTimer(second));
    assert!(!cancelled, "cancelling a fired timer");
    // A timer set on another shard cannot be cancelled from here.
    let foreign: TimerRef =
        ask(&h, target, Cmd::SendAfter { to: target.into(), n: 7, delay: Duration::from_millis(10) });
    let cancelled: bool = ask(&h, pid, Cmd::CancelTimer(foreign));
    assert!(!cancelled);
    expect(&trx, "the foreign timer", is_msg(target, 7));
    assert!(pending(&trx).iter().all(|e| !matches!(e, Event::Msg { n: 5, .. })));
    node.stop();
}

// ---- panics -----------------------------------------------------------------------------------

struct PanicScene {
    victim: Pid,
    watcher: Pid,
    wrx: std::sync::mpsc::Receiver<Event>,
    linked: Pid,
    lrx: std::sync::mpsc::Receiver<Event>,
    trapper: Pid,
    trx: std::sync::mpsc::Receiver<Event>,
}

/// A victim on shard 0; a watcher (monitor), a non-trapping linker and a trapping linker on the
/// last shard. The linkers link *to* the victim: they get its exit signal.
fn panic_scene(h: &pinion::NodeHandle, shards: usize) -> PanicScene {
    let (victim, _vrx) = probe(h, 0);
    let (watcher, wrx) = probe(h, other(shards));
    let (linked, lrx) = probe(h, other(shards));
    let (trapper, trx) = trapping_probe(h, other(shards));
    let _: MonitorRef = ask(h, watcher, Cmd::Monitor(victim.into()));
    let _: () = ask(h, linked, Cmd::Link(victim));
    let _: () = ask(h, trapper, Cmd::Link(victim));
    for p in [watcher, linked, trapper] {
        barrier(h, p, victim);
    }
    let info = h.process_info(victim).unwrap();
    assert_eq!((info.links, info.monitors), (2, 1), "{info:?}");
    PanicScene { victim, watcher, wrx, linked, lrx, trapper, trx }
}

fn panic_reason_ok(reason: &ExitReason, text: &str) -> bool {
    matches!(reason, ExitReason::Panic(t) if t.contains(text))
}

fn handler_panic_signals(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let scene = panic_scene(&h, shards);
    h.send(scene.victim, Cmd::Panic("boom-in-handler".into())).unwrap();
    let (_, down) = expect(&scene.wrx, "Down of the victim", is_down_of(scene.victim));
    assert_eq!(down.at(), scene.watcher);
    let Event::Down { down, .. } = down else { unreachable!() };
    assert!(panic_reason_ok(&down.reason, "boom-in-handler"), "{:?}", down.reason);
    // The non-trapping linker ends with the same reason (its terminate sees it).
    let (_, term) = expect(&scene.lrx, "the linker ends", is_terminated(scene.linked));
    let reason = terminated_reason(term);
    assert_eq!(reason, down.reason);
    wait_dead(&h, scene.linked);
    // The trapping linker gets the signal as a message and lives on.
    let (_, exit) = expect(&scene.trx, "exit signal at the trapper", is_exit_from(scene.victim));
    assert_eq!(exit.at(), scene.trapper);
    let Event::Exit { signal, .. } = exit else { unreachable!() };
    assert_eq!(signal.reason, down.reason);
    assert_eq!(call_u64(&h, scene.trapper, 1u64), Ok(1));
    assert!(matches!(h.process_info(scene.victim), Err(CallError::NoSuchProcess)));
    node.stop();
}

#[test]
fn handler_panic_same_shard_monitor_down_linker_dies_trapper_signalled() {
    handler_panic_signals("actor-panic-same", 1);
}

#[test]
fn handler_panic_cross_shard_monitor_down_linker_dies_trapper_signalled() {
    handler_panic_signals("actor-panic-cross", 2);
}

#[test]
fn handler_panic_other_processes_on_same_shard_keep_running() {
    let node = start("actor-panic-isolation", 2);
    let h = node.handle();
    let (victim, _vrx) = probe(&h, 0);
    let (neighbour, nrx) = probe(&h, 0);
    let (remote, _rrx) = probe(&h, 1);
    let before = h.inspect().unwrap()[0].processes;
    h.send(victim, Cmd::Panic("boom-isolation".into())).unwrap();
    wait_dead(&h, victim);
    assert_eq!(h.inspect().unwrap()[0].processes, before - 1, "only the victim ended");
    for n in 0..10u64 {
        assert_eq!(call_u64(&h, neighbour, n), Ok(n));
        assert_eq!(call_via(&h, remote, neighbour, n, WAIT), Ok(n));
    }
    h.send(neighbour, 77u64).unwrap();
    expect(&nrx, "message after the panic", is_msg(neighbour, 77));
    // The shard still spawns.
    let (fresh, _frx) = probe(&h, 0);
    assert_eq!(call_u64(&h, fresh, 5u64), Ok(5));
    node.stop();
}

fn panic_during_call(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (caller, _crx) = probe(&h, 0);
    let (victim, _vrx) = probe(&h, other(shards));
    assert_eq!(call_u64(&h, victim, Cmd::Panic("boom-call-1".into())).err(), Some(CallError::NoReply));
    let (victim, _vrx) = probe(&h, other(shards));
    assert_eq!(call_via(&h, caller, victim, Cmd::Panic("boom-call-2".into()), WAIT), Err(CallError::NoReply));
    assert_eq!(call_u64(&h, caller, 3u64), Ok(3), "the caller lives on");
    node.stop();
}

#[test]
fn handler_panic_during_call_same_shard_caller_gets_no_reply() {
    panic_during_call("actor-panic-call-same", 1);
}

#[test]
fn handler_panic_during_call_cross_shard_caller_gets_no_reply() {
    panic_during_call("actor-panic-call-cross", 2);
}

#[test]
fn handler_panic_with_queued_call_caller_gets_no_such_process() {
    let node = start("actor-panic-queued", 1);
    let h = node.handle();
    let (victim, vrx) = probe(&h, 0);
    let (holder, hrx) = probe(&h, 0);
    // The victim parks in a call, then panics when it returns.
    h.send(victim, Cmd::Seq(vec![call_cmd(holder, Cmd::Hold(1), WAIT), Cmd::Panic("boom-after-call".into())])).unwrap();
    expect(&hrx, "held 1", is_held(1));
    // A request queues behind the panicking handler.
    let queued = h.call(victim, 5u64, WAIT);
    h.send(holder, Cmd::Release).unwrap();
    assert_eq!(queued.wait().err(), Some(CallError::NoSuchProcess));
    let (_, e) = expect(&vrx, "the victim's call ended", is_called());
    assert!(matches!(e, Event::Called { result: Ok(1), .. }), "{e:?}");
    wait_dead(&h, victim);
    node.stop();
}

// ---- links and monitors ---------------------------------------------------------------------

fn link_to_dead(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let dead = dead_pid(&h, other(shards));
    let (trapper, trx) = trapping_probe(&h, 0);
    let _: () = ask(&h, trapper, Cmd::Link(dead));
    let (_, e) = expect(&trx, "NoProcess exit signal", is_exit_from(dead));
    let Event::Exit { signal, .. } = e else { unreachable!() };
    assert_eq!(signal.reason, ExitReason::NoProcess);
    assert_eq!(call_u64(&h, trapper, 1u64), Ok(1));
    // Without trapping, NoProcess is not Normal: the linker ends with it.
    let (plain, prx) = probe(&h, 0);
    h.send(plain, Cmd::Link(dead)).unwrap();
    let (_, term) = expect(&prx, "the plain linker ends", is_terminated(plain));
    assert_eq!(terminated_reason(term), ExitReason::NoProcess);
    node.stop();
}

#[test]
fn link_to_dead_pid_same_shard_signals_no_process_at_once() {
    link_to_dead("actor-link-dead-same", 1);
}

#[test]
fn link_to_dead_pid_cross_shard_signals_no_process_at_once() {
    link_to_dead("actor-link-dead-cross", 2);
}

fn normal_exit_spares_linker(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (linker, lrx) = probe(&h, 0);
    let (target, _trx) = probe(&h, other(shards));
    let _: () = ask(&h, linker, Cmd::Link(target));
    let _: MonitorRef = ask(&h, linker, Cmd::Monitor(target.into()));
    barrier(&h, linker, target);
    h.send(target, Cmd::Stop(ExitReason::Normal)).unwrap();
    // The exit signal (links are signalled before monitors, same lane) came before this Down:
    // the linker handled it and lived.
    let (skipped, _) = expect(&lrx, "Down of the target", is_down_of(target));
    assert!(!skipped.iter().any(|e| matches!(e, Event::Terminated { .. })), "{skipped:?}");
    assert_eq!(call_u64(&h, linker, 4u64), Ok(4));
    node.stop();
}

#[test]
fn link_normal_exit_same_shard_non_trapping_linker_survives() {
    normal_exit_spares_linker("actor-link-normal-same", 1);
}

#[test]
fn link_normal_exit_cross_shard_non_trapping_linker_survives() {
    normal_exit_spares_linker("actor-link-normal-cross", 2);
}

fn unlink_stops_signal(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (linker, lrx) = trapping_probe(&h, 0);
    let (target, _trx) = probe(&h, other(shards));
    let _: () = ask(&h, linker, Cmd::Link(target));
    let _: () = ask(&h, linker, Cmd::Unlink(target));
    let _: MonitorRef = ask(&h, linker, Cmd::Monitor(target.into()));
    barrier(&h, linker, target);
    h.send(target, Cmd::Fail(ExitReason::custom("failed"))).unwrap();
    let (skipped, down) = expect(&lrx, "Down of the target", is_down_of(target));
    let Event::Down { down, .. } = down else { unreachable!() };
    assert_eq!(down.reason, ExitReason::custom("failed"));
    assert!(!skipped.iter().any(|e| matches!(e, Event::Exit { .. })), "unlinked, yet signalled: {skipped:?}");
    node.stop();
}

#[test]
fn unlink_same_shard_no_exit_signal() {
    unlink_stops_signal("actor-unlink-same", 1);
}

#[test]
fn unlink_cross_shard_no_exit_signal() {
    unlink_stops_signal("actor-unlink-cross", 2);
}

fn monitor_demonitor(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (watcher, wrx) = probe(&h, 0);
    let (target, _trx) = probe(&h, other(shards));
    let first: MonitorRef = ask(&h, watcher, Cmd::Monitor(target.into()));
    let _: () = ask(&h, watcher, Cmd::Demonitor(target, first));
    let second: MonitorRef = ask(&h, watcher, Cmd::Monitor(target.into()));
    assert_ne!(first, second);
    barrier(&h, watcher, target);
    h.send(target, Cmd::Stop(ExitReason::custom("bye"))).unwrap();
    let (skipped, e) = expect(&wrx, "Down of the target", is_down_of(target));
    let Event::Down { down, .. } = e else { unreachable!() };
    assert_eq!(down.reference, second, "only the live monitor fires");
    assert_eq!(down.reason, ExitReason::custom("bye"));
    assert!(!skipped.iter().any(|e| matches!(e, Event::Down { .. })), "{skipped:?}");
    // The demonitored reference never fires (it would have come first: monitors fire in order).
    assert_eq!(call_u64(&h, watcher, 1u64), Ok(1));
    assert!(pending(&wrx).iter().all(|e| !matches!(e, Event::Down { .. })));
    node.stop();
}

#[test]
fn monitor_then_demonitor_same_shard_only_live_monitor_fires() {
    monitor_demonitor("actor-monitor-same", 1);
}

#[test]
fn monitor_then_demonitor_cross_shard_only_live_monitor_fires() {
    monitor_demonitor("actor-monitor-cross", 2);
}

#[test]
fn monitor_by_name_gets_down_with_reason() {
    let node = start("actor-monitor-name", 2);
    let h = node.handle();
    let (watcher, wrx) = probe(&h, 0);
    let (target, _trx) = probe(&h, 1);
    h.register("watched", target).unwrap();
    let reference: MonitorRef = ask(&h, watcher, Cmd::Monitor("watched".into()));
    let remote_ref: MonitorRef = ask(&h, watcher, Cmd::Monitor(ProcessId::new("watched", "actor-monitor-name").into()));
    barrier(&h, watcher, target);
    h.send(target, Cmd::Fail(ExitReason::custom("gone"))).unwrap();
    let mut refs = Vec::new();
    for _ in 0..2 {
        let (_, e) = expect(&wrx, "Down of the named target", is_down_of(target));
        let Event::Down { down, .. } = e else { unreachable!() };
        assert_eq!(down.reason, ExitReason::custom("gone"));
        refs.push(down.reference);
    }
    assert_eq!(refs, vec![reference, remote_ref]);
    node.stop();
}

#[test]
fn monitor_unknown_name_or_dead_pid_gets_down_no_process() {
    let node = start("actor-monitor-unknown", 2);
    let h = node.handle();
    let (watcher, wrx) = probe(&h, 0);
    let by_name: MonitorRef = ask(&h, watcher, Cmd::Monitor("nobody".into()));
    let (_, e) = expect(&wrx, "Down for the unknown name", |e| matches!(e, Event::Down { .. }));
    let Event::Down { down, .. } = e else { unreachable!() };
    assert_eq!(down.reference, by_name);
    assert_eq!(down.reason, ExitReason::NoProcess);
    for s in 0..2 {
        let dead = dead_pid(&h, s);
        let reference: MonitorRef = ask(&h, watcher, Cmd::Monitor(dead.into()));
        let (_, e) = expect(&wrx, "Down for the dead pid", is_down_of(dead));
        let Event::Down { down, .. } = e else { unreachable!() };
        assert_eq!(down.reference, reference);
        assert_eq!(down.reason, ExitReason::NoProcess);
    }
    assert_eq!(call_u64(&h, watcher, 1u64), Ok(1), "a Down never ends the watcher");
    node.stop();
}

// ---- exit signals, errors, stop ---------------------------------------------------------------

fn exit_custom_after_handler(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (target, trx) = probe(&h, 0);
    let (sender, _srx) = probe(&h, 0);
    let (holder, hrx) = probe(&h, other(shards));
    // The target is inside a handler (parked in a call) when the exit signal arrives.
    h.send(target, call_cmd(holder, Cmd::Hold(3), WAIT)).unwrap();
    expect(&hrx, "held 3", is_held(3));
    let _: () = ask(&h, sender, Cmd::Exit(target, ExitReason::custom("bye")));
    h.send(holder, Cmd::Release).unwrap();
    let (skipped, term) = expect(&trx, "the target ends", is_terminated(target));
    assert_eq!(terminated_reason(term), ExitReason::custom("bye"), "terminate sees the reason");
    assert!(
        skipped.iter().any(|e| matches!(e, Event::Called { result: Ok(3), .. })),
        "the current handler finished first: {skipped:?}"
    );
    wait_dead(&h, target);
    node.stop();
}

#[test]
fn exit_custom_same_shard_non_trapping_ends_after_handler_with_terminate() {
    exit_custom_after_handler("actor-exit-custom-same", 1);
}

#[test]
fn exit_custom_cross_shard_non_trapping_ends_after_handler_with_terminate() {
    exit_custom_after_handler("actor-exit-custom-cross", 2);
}

#[test]
fn exit_custom_trapping_receives_exit_signal_and_lives() {
    let node = start("actor-exit-trap", 2);
    let h = node.handle();
    let (sender, _srx) = probe(&h, 0);
    for s in 0..2 {
        let (target, trx) = trapping_probe(&h, s);
        let _: () = ask(&h, sender, Cmd::Exit(target, ExitReason::custom("hey")));
        let (_, e) = expect(&trx, "exit signal", is_exit_from(sender));
        let Event::Exit { signal, .. } = e else { unreachable!() };
        assert_eq!(signal.reason, ExitReason::custom("hey"));
        h.exit(target, ExitReason::Shutdown);
        let (_, e) = expect(&trx, "exit signal from the handle", is_exit_from(h.external_pid()));
        let Event::Exit { signal, .. } = e else { unreachable!() };
        assert_eq!(signal.reason, ExitReason::Shutdown);
        assert_eq!(call_u64(&h, target, 2u64), Ok(2));
    }
    node.stop();
}

#[test]
fn exit_normal_non_trapping_is_ignored() {
    let node = start("actor-exit-normal", 2);
    let h = node.handle();
    let (sender, _srx) = probe(&h, 0);
    for s in 0..2 {
        let (target, trx) = probe(&h, s);
        let _: () = ask(&h, sender, Cmd::Exit(target, ExitReason::Normal));
        h.exit(target, ExitReason::Normal);
        // Both signals are in the target's system lane before this call (FIFO per pair, and the
        // system lane is handled first).
        let sent: Result<(), SendError<u64>> = ask(&h, sender, Cmd::Send { to: target.into(), n: 1 });
        assert!(sent.is_ok(), "{sent:?}");
        assert_eq!(call_u64(&h, target, 2u64), Ok(2));
        expect(&trx, "message after the Normal signals", is_msg(target, 1));
        assert!(pending(&trx).iter().all(|e| !matches!(e, Event::Terminated { .. })));
    }
    node.stop();
}

fn kill_while_parked(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (target, trx) = trapping_probe(&h, 0);
    let (holder, hrx) = probe(&h, other(shards));
    let (watcher, wrx) = probe(&h, 0);
    let reference: MonitorRef = ask(&h, watcher, Cmd::Monitor(target.into()));
    h.send(target, call_cmd(holder, Cmd::Hold(1), WAIT * 6)).unwrap();
    expect(&hrx, "held 1", is_held(1));
    h.exit(target, ExitReason::Kill);
    let (_, e) = expect(&wrx, "Down of the killed process", is_down_of(target));
    let Event::Down { down, .. } = e else { unreachable!() };
    assert_eq!(down.reason, ExitReason::Kill);
    assert_eq!(down.reference, reference);
    // terminate would have run before the Down was sent.
    let seen = pending(&trx);
    assert!(seen.iter().all(|e| !matches!(e, Event::Terminated { .. } | Event::Exit { .. })), "{seen:?}");
    assert!(matches!(h.process_info(target), Err(CallError::NoSuchProcess)));
    // The held request's late answer goes nowhere; the holder is fine.
    h.send(holder, Cmd::Release).unwrap();
    assert_eq!(call_u64(&h, holder, 2u64), Ok(2));
    node.stop();
}

#[test]
fn exit_kill_same_shard_parked_in_call_trapping_ends_without_terminate() {
    kill_while_parked("actor-kill-parked-same", 1);
}

#[test]
fn exit_kill_cross_shard_parked_in_call_trapping_ends_without_terminate() {
    kill_while_parked("actor-kill-parked-cross", 2);
}

#[test]
fn exit_kill_from_process_idle_trapping_ends_without_terminate() {
    let node = start("actor-kill-idle", 2);
    let h = node.handle();
    let (killer, _krx) = probe(&h, 0);
    for s in 0..2 {
        let (target, trx) = trapping_probe(&h, s);
        let _: () = ask(&h, killer, Cmd::Exit(target, ExitReason::Kill));
        wait_dead(&h, target);
        let seen = pending(&trx);
        assert!(seen.iter().all(|e| !matches!(e, Event::Terminated { .. } | Event::Exit { .. })), "{seen:?}");
    }
    node.stop();
}

#[test]
fn exit_kill_self_handles_no_further_messages() {
    let node = start("actor-kill-self", 1);
    let h = node.handle();
    let (target, trx) = probe(&h, 0);
    let (watcher, wrx) = probe(&h, 0);
    let _: MonitorRef = ask(&h, watcher, Cmd::Monitor(target.into()));
    h.send(
        target,
        Cmd::Seq(vec![
            Cmd::Exit(target, ExitReason::Kill),
            Cmd::Send { to: target.into(), n: 1 },
            Cmd::Stop(ExitReason::custom("after-kill")),
        ]),
    )
    .unwrap();
    let (_, e) = expect(&wrx, "Down of the self-killed process", is_down_of(target));
    let Event::Down { down, .. } = e else { unreachable!() };
    assert_eq!(down.reason, ExitReason::Kill);
    let seen = pending(&trx);
    assert!(seen.iter().all(|e| !matches!(e, Event::Terminated { .. } | Event::Msg { .. })), "{seen:?}");
    node.stop();
}

fn handler_error(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (target, trx) = probe(&h, 0);
    let (watcher, wrx) = probe(&h, other(shards));
    let _: MonitorRef = ask(&h, watcher, Cmd::Monitor(target.into()));
    barrier(&h, watcher, target);
    h.send(target, Cmd::Fail(ExitReason::custom("bad input"))).unwrap();
    let (_, term) = expect(&trx, "terminate", is_terminated(target));
    assert_eq!(terminated_reason(term), ExitReason::custom("bad input"));
    let (_, e) = expect(&wrx, "Down", is_down_of(target));
    assert!(matches!(e, Event::Down { down, .. } if down.reason == ExitReason::custom("bad input")));
    // From a call handler too: the caller gets NoReply.
    let (target, trx) = probe(&h, 0);
    assert_eq!(call_u64(&h, target, Cmd::Fail(ExitReason::custom("bad call"))).err(), Some(CallError::NoReply));
    let (_, term) = expect(&trx, "terminate", is_terminated(target));
    assert_eq!(terminated_reason(term), ExitReason::custom("bad call"));
    node.stop();
}

#[test]
fn handler_error_same_shard_runs_terminate_with_reason() {
    handler_error("actor-handler-err-same", 1);
}

#[test]
fn handler_error_cross_shard_runs_terminate_with_reason() {
    handler_error("actor-handler-err-cross", 2);
}

#[test]
fn stop_in_handler_ends_process_after_handler_returns() {
    let node = start("actor-ctx-stop", 2);
    let h = node.handle();
    for s in 0..2 {
        let (target, trx) = probe(&h, s);
        h.send(target, Cmd::Stop(ExitReason::custom("done"))).unwrap();
        // The process may already be gone: either way, 42 must not be handled.
        let _ = h.send(target, 42u64);
        let (skipped, term) = expect(&trx, "terminate", is_terminated(target));
        assert!(
            matches!(skipped.as_slice(), [e @ Event::Stopping { .. }] if e.at() == target),
            "the handler ran to its end: {skipped:?}"
        );
        assert_eq!(terminated_reason(term), ExitReason::custom("done"));
        wait_dead(&h, target);
        assert!(pending(&trx).is_empty(), "a message was handled after stop");
        // A call answered before the stop takes effect.
        let (target, _trx) = probe(&h, s);
        ask::<()>(&h, target, Cmd::Stop(ExitReason::Normal));
        wait_dead(&h, target);
    }
    node.stop();
}

/// A stop requested in a handler takes effect before the next message even when that message
/// was already taken off the mailbox with it: the shard is blocked while three messages reach
/// the process, so it takes all three in one batch, and the first one stops it.
#[test]
fn stop_in_handler_skips_the_rest_of_a_taken_batch() {
    let node = start("actor-ctx-stop-batch", 1);
    let h = node.handle();
    let (blocker, brx) = probe(&h, 0);
    for kill in [false, true] {
        let (target, trx) = probe(&h, 0);
        h.send(blocker, Cmd::Block(Duration::from_millis(200))).unwrap();
        expect(&brx, "the shard blocked", |e| matches!(e, Event::Blocking { .. }));
        let first = if kill { Cmd::Exit(target, ExitReason::Kill) } else { Cmd::Stop(ExitReason::custom("done")) };
        h.send(target, first).unwrap();
        h.send(target, 42u64).unwrap();
        h.send(target, 43u64).unwrap();
        wait_dead(&h, target);
        let events = pending(&trx);
        assert!(
            !events.iter().any(|e| is_msg(target, 42)(e) || is_msg(target, 43)(e)),
            "a message of the batch was handled after the stop (kill: {kill}): {events:?}"
        );
        if !kill {
            assert!(events.iter().any(is_terminated(target)), "terminate ran: {events:?}");
        }
    }
    node.stop();
}

// ---- scheduling -------------------------------------------------------------------------------

fn flood_fairness(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (flooder, _frx) = probe(&h, 0);
    let (neighbour, nrx) = probe(&h, 0);
    let (peer, _prx) = probe(&h, other(shards));
    let count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    h.send(flooder, Cmd::Flood { count: count.clone(), stop: stop.clone() }).unwrap();
    wait_until("the flood runs", || count.load(Ordering::Relaxed) > 10_000);
    let before = count.load(Ordering::Relaxed);
    // Each round trip waits for at least one shard turn of the flood (up to 256 polls of 64
    // messages): keep the count modest for debug builds.
    for n in 0..30u64 {
        assert_eq!(call_u64(&h, neighbour, n), Ok(n));
        h.send(neighbour, n).unwrap();
    }
    for n in 0..10u64 {
        assert_eq!(call_via(&h, peer, neighbour, n, WAIT), Ok(n));
    }
    for n in 0..30u64 {
        expect(&nrx, "message during the flood", is_msg(neighbour, n));
    }
    let after = count.load(Ordering::Relaxed);
    assert!(after > before, "the flood kept running meanwhile ({before} -> {after})");
    stop.store(true, Ordering::Relaxed);
    node.stop();
}

#[test]
fn flood_to_self_one_shard_does_not_starve_neighbour() {
    flood_fairness("actor-flood-1", 1);
}

#[test]
fn flood_to_self_two_shards_does_not_starve_neighbour() {
    flood_fairness("actor-flood-2", 2);
}

fn parked_call_frees_shard(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (waiter, wrx) = probe(&h, 0);
    let (holder, hrx) = probe(&h, other(shards));
    let (neighbour, nrx) = probe(&h, 0);
    h.send(waiter, call_cmd(holder, Cmd::Hold(7), WAIT * 3)).unwrap();
    let (_, held) = expect(&hrx, "held 7", is_held(7));
    assert_eq!(held.at(), holder);
    for n in 0..20u64 {
        assert_eq!(call_u64(&h, neighbour, n), Ok(n));
    }
    h.send(neighbour, 99u64).unwrap();
    expect(&nrx, "neighbour message", is_msg(neighbour, 99));
    // The waiter's new mail waits in its mailbox while it is parked.
    h.send(waiter, 5u64).unwrap();
    let info = h.process_info(waiter).unwrap();
    assert_eq!(info.state, ProcessState::Waiting, "{info:?}");
    assert_eq!(info.main_queue, 1, "{info:?}");
    assert!(pending(&wrx).is_empty(), "the parked process handled something");
    h.send(holder, Cmd::Release).unwrap();
    let (skipped, e) = expect(&wrx, "the waiter's call ended", is_called());
    assert_eq!(e.at(), waiter);
    assert!(matches!(e, Event::Called { result: Ok(7), .. }), "{e:?}");
    assert!(skipped.is_empty(), "{skipped:?}");
    expect(&wrx, "the queued message, after the call", is_msg(waiter, 5));
    node.stop();
}

#[test]
fn call_parked_same_shard_other_processes_keep_running() {
    parked_call_frees_shard("actor-parked-same", 1);
}

#[test]
fn call_parked_cross_shard_other_processes_keep_running() {
    parked_call_frees_shard("actor-parked-cross", 2);
}

// ---- spawning ---------------------------------------------------------------------------------

#[test]
fn spawn_init_failure_returns_init_failed() {
    let node = start("actor-init-fail", 2);
    let h = node.handle();
    let processes = |h: &pinion::NodeHandle| inspect_sum(h, |s| s.processes as u64);
    let base = processes(&h);
    let failed = h.spawn_on(shard(1), || FailInit(ExitReason::custom("no config")), ProcessOptions::default()).wait();
    assert_eq!(failed, Err(SpawnError::InitFailed(ExitReason::custom("no config"))));
    let panicked = h.spawn(|| PanicInit("init exploded"), ProcessOptions::default()).wait();
    match panicked {
        Err(SpawnError::InitFailed(reason)) => assert!(panic_reason_ok(&reason, "init exploded"), "{reason:?}"),
        other => panic!("an init panic: {other:?}"),
    }
    let factory = h.spawn_on(shard(0), || -> Probe { panic!("factory exploded") }, ProcessOptions::default()).wait();
    assert!(matches!(&factory, Err(SpawnError::FactoryPanicked(t)) if t.contains("factory exploded")), "{factory:?}");
    let (parent, _rx) = probe(&h, 1);
    let from_ctx: Result<Pid, SpawnError> = ask(&h, parent, Cmd::SpawnFailing(ExitReason::custom("ctx init")));
    assert_eq!(from_ctx, Err(SpawnError::InitFailed(ExitReason::custom("ctx init"))));
    assert_eq!(processes(&h), base + 1, "no failed process is left behind");
    node.stop();
}

#[test]
fn spawn_from_process_here_on_and_registered_runs_child() {
    let node = start("actor-ctx-spawn", 2);
    let h = node.handle();
    let (parent, rx) = probe(&h, 0);
    let here: Result<Pid, SpawnError> = ask(&h, parent, Cmd::Spawn(SpawnHow::Here));
    let here = here.unwrap();
    assert_eq!(here.shard(), parent.shard());
    assert_eq!(call_u64(&h, here, 1u64), Ok(1));
    let there: Result<Pid, SpawnError> = ask(&h, parent, Cmd::Spawn(SpawnHow::On(shard(1))));
    let there = there.unwrap();
    assert_eq!(there.shard(), shard(1));
    assert_eq!(call_via(&h, parent, there, 2u64, WAIT), Ok(2));
    let named: Result<Pid, SpawnError> = ask(&h, parent, Cmd::Spawn(SpawnHow::Named("kid".into())));
    let named = named.unwrap();
    assert_eq!(named.shard(), parent.shard());
    assert_eq!(h.whereis("kid"), Some(named));
    h.send("kid", 3u64).unwrap();
    expect(&rx, "message to the registered child", is_msg(named, 3));
    node.stop();
}

#[test]
fn spawn_on_missing_shard_returns_no_such_shard() {
    let node = start("actor-no-shard", 2);
    let h = node.handle();
    let (parent, _rx) = probe(&h, 1);
    let (tx, _rx2) = std::sync::mpsc::channel();
    let spawned = h.spawn_on(shard(2), move || Probe::new(tx), ProcessOptions::default()).wait();
    assert_eq!(spawned, Err(SpawnError::NoSuchShard { shard: shard(2), shards: 2 }));
    let from_ctx: Result<Pid, SpawnError> = ask(&h, parent, Cmd::Spawn(SpawnHow::On(shard(7))));
    assert_eq!(from_ctx, Err(SpawnError::NoSuchShard { shard: shard(7), shards: 2 }));
    assert_eq!(call_u64(&h, parent, 1u64), Ok(1));
    node.stop();
}

/// Sleeps the requested time in its handler, then answers the time it actually slept.
struct Sleeper;

impl pinion::Actor for Sleeper {
    async fn handle_call(
        &mut self,
        ctx: &mut pinion::Context,
        _: pinion::Pid,
        msg: pinion::Message,
    ) -> Result<pinion::Reply, pinion::ExitReason> {
        let d = *msg.downcast_ref::<Duration>().expect("a Duration");
        let t = std::time::Instant::now();
        ctx.sleep(d).await;
        Ok(pinion::Reply::now(t.elapsed()))
    }
}

/// Answers every call at once.
struct Echo;

impl pinion::Actor for Echo {
    async fn handle_call(
        &mut self,
        _: &mut pinion::Context,
        _: pinion::Pid,
        _: pinion::Message,
    ) -> Result<pinion::Reply, pinion::ExitReason> {
        Ok(pinion::Reply::now(()))
    }
}

#[test]
fn sleep_parks_the_process_not_the_shard_and_a_killed_sleeper_leaves_no_timer_behind() {
    let node = pinion::Node::start(
        "sleep",
        pinion::NodeOptions { cores: pinion::Cores::Count(1), pin: false, ..Default::default() },
    )
    .expect("node");
    let h = node.handle();
    let sleeper = h.spawn(|| Sleeper, pinion::ProcessOptions::default()).wait().expect("sleeper");
    let echo = h.spawn(|| Echo, pinion::ProcessOptions::default()).wait().expect("echo");
    let slept = h.call(sleeper, Duration::from_millis(300), Duration::from_secs(10));
    // While the sleeper sleeps, its shard answers other calls.
    for _ in 0..10 {
        h.call_blocking(echo, (), Duration::from_secs(10)).expect("the shard runs on");
    }
    let slept = slept.wait().expect("the sleeper answers").downcast::<Duration>().expect("a Duration");
    assert!(slept >= Duration::from_millis(300), "woke early: {slept:?}");
    // A sleeper killed mid-sleep: its timer goes with it; the shard keeps working.
    let long = h.call(sleeper, Duration::from_secs(3600), Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(20));
    h.exit(sleeper, pinion::ExitReason::Kill);
    assert!(long.wait().is_err());
    h.call_blocking(echo, (), Duration::from_secs(10)).expect("the shard runs on");
    node.stop();
}

/// Calls itself when called, and answers with what that call gave.
struct CallsItself;

impl pinion::Actor for CallsItself {
    async fn handle_call(
        &mut self,
        ctx: &mut pinion::Context,
        _: pinion::Pid,
        _: pinion::Message,
    ) -> Result<pinion::Reply, pinion::ExitReason> {
        let got = ctx.call(ctx.pid(), (), Duration::from_secs(600)).await.err();
        Ok(pinion::Reply::now(got))
    }
}

/// Found by a user trial: a process calling its own pid waited out the whole timeout (it cannot
/// answer while it waits); OTP fails such a call at once. Now `WouldBlock`, at once: the outer
/// call's 30 s would run out long before the inner call's 600 s otherwise.
#[test]
fn a_process_calling_itself_gets_would_block_at_once() {
    let node = pinion::Node::start(
        "call-self",
        pinion::NodeOptions { cores: pinion::Cores::Count(1), pin: false, ..Default::default() },
    )
    .expect("node");
    let h = node.handle();
    let pid = h.spawn(|| CallsItself, pinion::ProcessOptions::default()).wait().expect("spawn");
    let got = h.call_blocking(pid, (), Duration::from_secs(30)).expect("answered");
    assert_eq!(got.downcast::<Option<CallError>>().ok(), Some(Some(CallError::WouldBlock)));
    node.stop();
}
