//! The waiting side of calls and spawns made by a process: a pending entry per outstanding
//! request (answered by its reply or its timeout timer, whichever is first), the future that
//! waits for it, and the guards that forget an abandoned one.

use std::future::{Future, poll_fn};
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::error::CallError;
use crate::process::envelope::{CallResult, Signal};
use crate::process::{Context, ExitReason, PendingCall, Pid};
use crate::shard::TimerAction;

impl Context {
    /// Waits at most `timeout` for the [`Down`](crate::Down) of a monitor on `pid` (set with
    /// [`Context::monitor`]) and takes it out of the mailbox; every other message stays queued,
    /// in order, for the handlers. Answers its reason, or `None` if it did not come in time (the
    /// monitor stays). Parks this process only. Handlers, and `terminate` (which gets no
    /// messages), use it to stop a process (`exit(pid, Shutdown)`) and wait until it has ended,
    /// as a supervisor does.
    pub async fn wait_down(&self, pid: Pid, timeout: Duration) -> Option<ExitReason> {
        let timer = self.shard.next_ref();
        self.pending(timer, Some(deadline_after(timeout)));
        // Forgets the timer entry however this ends (also if this future is dropped).
        let _forget = ForgetOnDrop { ctx: self, reference: timer };
        poll_fn(|_| {
            let mut table = self.shard.table.borrow_mut();
            let Some(e) = table.get_mut(self.pid.slot as usize) else { return Poll::Ready(None) };
            let found = e.mailbox.system.iter().position(|s| matches!(s, Signal::Down { pid: p, .. } if *p == pid));
            if let Some(Signal::Down { reason, .. }) = found.and_then(|i| e.mailbox.system.remove(i)) {
                e.awaiting_mail = false;
                return Poll::Ready(Some(reason));
            }
            // Not there yet: let the next delivery (or the timer) schedule this process.
            let timed_out = e.calls.iter().any(|c| c.reference == timer && c.result.is_some());
            e.awaiting_mail = !timed_out;
            if timed_out { Poll::Ready(None) } else { Poll::Pending }
        })
        .await
    }

    pub(crate) fn pending(&self, reference: u64, deadline: Option<Instant>) {
        let timer = deadline.map(|d| {
            let action = TimerAction::CallTimeout { slot: self.pid.slot, generation: self.pid.generation, reference };
            self.shard.timers.borrow_mut().insert(d, action)
        });
        if let Some(e) = self.shard.table.borrow_mut().get_mut(self.pid.slot as usize) {
            e.calls.push(PendingCall { reference, result: None, timer });
        }
    }

    pub(crate) fn forget(&self, reference: u64) {
        let call = {
            let mut table = self.shard.table.borrow_mut();
            let Some(e) = table.get_mut(self.pid.slot as usize) else { return };
            let Some(i) = e.calls.iter().position(|c| c.reference == reference) else { return };
            e.calls.swap_remove(i)
        };
        if let Some(t) = call.timer {
            self.shard.timers.borrow_mut().cancel(t);
        }
    }

    pub(crate) fn wait_reply(&self, reference: u64) -> WaitReply<'_> {
        WaitReply { ctx: self, reference, done: false }
    }
}

/// Waits for the answer to call `reference` of a process. Dropped before the answer (a
/// `select`, a timeout wrapper), it forgets the call: its timer is cancelled and a reply that
/// still comes is dropped and counted as late.
pub(crate) struct WaitReply<'a> {
    ctx: &'a Context,
    reference: u64,
    done: bool,
}

impl Future for WaitReply<'_> {
    type Output = CallResult;
    fn poll(mut self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> Poll<CallResult> {
        let ctx = self.ctx;
        let mut table = ctx.shard.table.borrow_mut();
        let Some(e) = table.get_mut(ctx.pid.slot as usize) else {
            self.done = true;
            return Poll::Ready(Err(CallError::Stopped));
        };
        let Some(i) = e.calls.iter().position(|c| c.reference == self.reference) else {
            self.done = true;
            return Poll::Ready(Err(CallError::NoReply));
        };
        if e.calls[i].result.is_none() {
            return Poll::Pending;
        }
        let call = e.calls.swap_remove(i);
        drop(table);
        self.done = true;
        if let Some(t) = call.timer {
            ctx.shard.timers.borrow_mut().cancel(t);
        }
        Poll::Ready(call.result.unwrap_or(Err(CallError::NoReply)))
    }
}

/// Forgets a pending entry when dropped.
struct ForgetOnDrop<'a> {
    ctx: &'a Context,
    reference: u64,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        self.ctx.forget(self.reference);
    }
}

impl Drop for WaitReply<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.ctx.forget(self.reference);
        }
    }
}

/// `now + timeout`, saturating far in the future for huge timeouts.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}
