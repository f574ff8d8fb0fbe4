//! `Context::wait_down` and call timeouts on real nodes: a wait that is answered in time, one
//! that times out (its timer is armed after the pass that started it: see
//! `process::call::arm_timeouts`), and what is left in the mailbox afterwards.

#[allow(dead_code, reason = "the helpers are written for tests/actor.rs; this file uses a few")]
mod common;

use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

use common::*;
use pinion::{Actor, Context, Down, ExitReason, Message, NodeHandle, Pid, ProcessOptions};

/// Tells a [`Waiter`] to monitor `pid` and wait for its `Down` at most `timeout`.
struct WaitFor {
    pid: Pid,
    timeout: Duration,
}

/// What a [`Waiter`] reports.
#[derive(Debug, PartialEq)]
enum Report {
    /// `wait_down` answered this.
    Waited(Option<ExitReason>),
    /// A `Down` reached `handle_message` (after a wait that timed out, the monitor stays).
    DownMessage(Pid, ExitReason),
}

struct Waiter {
    tx: Sender<Report>,
}

impl Actor for Waiter {
    async fn handle_message(&mut self, ctx: &mut Context, _from: Pid, msg: Message) -> Result<(), ExitReason> {
        let msg = match msg.downcast::<WaitFor>() {
            Ok(WaitFor { pid, timeout }) => {
                ctx.monitor(pid);
                let waited = ctx.wait_down(pid, timeout).await;
                let _ = self.tx.send(Report::Waited(waited));
                return Ok(());
            }
            Err(msg) => msg,
        };
        match msg.downcast::<Down>() {
            Ok(down) => {
                let _ = self.tx.send(Report::DownMessage(down.pid, down.reason));
                Ok(())
            }
            Err(msg) => panic!("a Waiter got {msg:?}"),
        }
    }
}

fn spawn_waiter(h: &NodeHandle, shard_index: usize) -> (Pid, Receiver<Report>) {
    let (tx, rx) = channel();
    let pid = h.spawn_on(shard(shard_index), move || Waiter { tx }, ProcessOptions::default()).wait().expect("spawn");
    (pid, rx)
}

fn report(rx: &Receiver<Report>, what: &str) -> Report {
    rx.recv_timeout(WAIT).unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

fn wait_down_answers_or_times_out(name: &str, shards: usize) {
    let node = start(name, shards);
    let h = node.handle();
    let (waiter, rx) = spawn_waiter(&h, 0);
    // Answered: the watched process ends while the waiter waits.
    let (watched, _events) = probe(&h, shards - 1);
    h.send(waiter, WaitFor { pid: watched, timeout: WAIT }).expect("send WaitFor");
    wait_until("the monitor is in effect", || h.process_info(watched).is_ok_and(|i| i.monitors == 1));
    h.send(watched, Cmd::Fail(ExitReason::custom("ends"))).expect("send Fail");
    assert_eq!(report(&rx, "the wait"), Report::Waited(Some(ExitReason::custom("ends"))));
    // Timed out: the watched process lives on; the wait's timer ends it.
    let (lives, _events) = probe(&h, shards - 1);
    h.send(waiter, WaitFor { pid: lives, timeout: Duration::from_millis(20) }).expect("send WaitFor");
    assert_eq!(report(&rx, "the wait to time out"), Report::Waited(None));
    // The monitor stays: the later Down comes as a message. (Waited for, so that the end
    // below cannot overtake the monitor request on its way from the waiter's shard.)
    wait_until("the monitor is in effect", || h.process_info(lives).is_ok_and(|i| i.monitors == 1));
    h.send(lives, Cmd::Fail(ExitReason::custom("later"))).expect("send Fail");
    assert_eq!(report(&rx, "the Down as a message"), Report::DownMessage(lives, ExitReason::custom("later")));
    node.stop();
}

#[test]
fn wait_down_answers_or_times_out_same_shard() {
    wait_down_answers_or_times_out("wait-down-same", 1);
}

#[test]
fn wait_down_answers_or_times_out_cross_shard() {
    wait_down_answers_or_times_out("wait-down-cross", 2);
}

#[test]
fn same_shard_calls_answered_at_once_and_calls_that_time_out_alternate() {
    // Calls answered within the pass that made them never arm a timer; one that is not answered
    // must still time out, and the ones after it must still be answered.
    let node = start("call-alternate", 1);
    let h = node.handle();
    let (caller, _caller_events) = probe(&h, 0);
    let (callee, callee_events) = probe(&h, 0);
    for round in 0..3u64 {
        for n in 0..50u64 {
            let answer: Result<u64, pinion::CallError> =
                ask(&h, caller, call_cmd(callee, round * 100 + n, Duration::from_secs(5)));
            assert_eq!(answer, Ok(round * 100 + n));
        }
        // The callee holds this one: it times out.
        let held: Result<u64, pinion::CallError> =
            ask(&h, caller, call_cmd(callee, Cmd::Hold(round), Duration::from_millis(20)));
        assert_eq!(held, Err(pinion::CallError::Timeout));
        expect(&callee_events, "the held call", |e| matches!(e, Event::Held { n, .. } if *n == round));
    }
    node.stop();
}
