//! What travels between processes and shards: [`Mail`] (a user message with its sender and, for
//! a call, where the reply goes), system signals, replies, and the [`Envelope`] that carries any
//! of them across shards — the only runtime value that crosses threads.
#![allow(unsafe_code, reason = "a call's boxed responder is moved out of its box, which is kept for the next call")]

use std::any::Any;
use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Instant;

use crate::error::CallError;
use crate::process::{ExitReason, Message, MonitorRef, Pid, Priority};
use crate::shard::{ControlRequest, SpawnRequest};

/// A user message in a mailbox: it holds one reservation of its receiver.
///
/// 64 bytes, laid out (`repr(C)`) so that no field straddles a 16-byte boundary: the
/// compiler moves a `Mail` in 16-byte pieces and then reads its fields back, and a read that
/// spans two such pieces cannot be forwarded from the store buffer (a stall per message).
#[repr(C)]
pub(crate) struct Mail {
    pub(crate) msg: Message,
    /// Present for a call: where the reply goes. Boxed, so a plain send (the common case)
    /// moves a 64-byte `Mail` instead of a 96-byte one at every step.
    pub(crate) reply: Option<Box<Responder<CallResult>>>,
    pub(crate) from: Pid,
}

impl Mail {
    /// A mail from `from`; a call's responder is boxed in the thread's spare box (see
    /// [`boxed`]).
    #[inline]
    pub(crate) fn new(from: Pid, msg: Message, reply: Option<Responder<CallResult>>) -> Mail {
        Mail { msg, reply: reply.map(boxed), from }
    }
}

thread_local! {
    /// One spare allocation for a call's boxed responder (see [`boxed`]).
    static SPARE_RESPONDER: Cell<Option<Box<MaybeUninit<Responder<CallResult>>>>> = const { Cell::new(None) };
}

/// Boxes a call's responder for its [`Mail`], in the thread's spare box if it has one. A
/// same-shard call's callee takes its responder out ([`unboxed`]) just before the caller's next
/// call needs a box: the pair of them reuses one allocation instead of a `malloc` and a `free`
/// per call (about 125 of a same-shard call's 2000 instructions).
#[inline]
pub(crate) fn boxed(responder: Responder<CallResult>) -> Box<Responder<CallResult>> {
    match SPARE_RESPONDER.try_with(Cell::take).ok().flatten() {
        Some(spare) => Box::write(spare, responder),
        None => Box::new(responder),
    }
}

/// Takes the responder out of its box and keeps the box as the thread's spare.
#[inline]
pub(crate) fn unboxed(responder: Box<Responder<CallResult>>) -> Responder<CallResult> {
    let raw = Box::into_raw(responder);
    // SAFETY: `raw` is the pointer of a live `Box<Responder<_>>`, read out exactly once here;
    // from now on its memory is treated as uninitialized (the box below never drops a value).
    let value = unsafe { raw.read() };
    // SAFETY: `MaybeUninit<T>` has the layout of `T`, so the allocation is a valid
    // `Box<MaybeUninit<T>>`; its value was moved out above.
    let spare = unsafe { Box::from_raw(raw.cast::<MaybeUninit<Responder<CallResult>>>()) };
    // (While the thread's locals are being destroyed, the box is simply freed.)
    let _ = SPARE_RESPONDER.try_with(|cell| cell.set(Some(spare)));
    value
}

/// The outcome of a call, as delivered to the caller.
pub(crate) type CallResult = Result<Message, CallError>;

/// A call's request handed back by a pool that took it and then found no worker for it (the
/// worker it was queued to ended unreplaced, the others were full; the pool stopped). It
/// travels to the caller as the call's `Ok` answer — a type no one outside the crate can
/// name, so no callee can forge it — and the caller's side turns it back into `error`
/// ([`split_returned`]), keeping `request` for `request_back` (review 72: it was dropped).
struct Returned {
    error: CallError,
    request: Message,
}

/// The answer of a call refused with `error` after it was taken: its request goes back.
pub(crate) fn returned(error: CallError, request: Message) -> CallResult {
    Ok(Message::new(Returned { error, request }))
}

/// A call's answer as its caller sees it, and the request handed back with a refusal.
#[inline]
pub(crate) fn split_returned(result: CallResult) -> (CallResult, Option<Message>) {
    match result {
        Ok(m) if m.is::<Returned>() => match m.downcast::<Returned>() {
            Ok(r) => (Err(r.error), Some(r.request)),
            Err(m) => (Ok(m), None),
        },
        other => (other, None),
    }
}

/// Runtime traffic in a process's system lane (never counted against its bound).
pub(crate) enum Signal {
    /// An exit signal: sent explicitly, or from a process that ended to one linked (or tied) to
    /// it. Only an explicit `Kill` is untrappable; a `Kill` passed on is an ordinary signal.
    Exit { from: Pid, reason: ExitReason, via: Via },
    /// A monitored process ended.
    Down { reference: MonitorRef, pid: Pid, reason: ExitReason },
    /// The node is stopping: run `terminate` and end.
    Shutdown,
    /// A pool retires this worker: it takes no new work from the pool and stops (`Shutdown`)
    /// once its mailbox is empty and no message is on its way to it. Never queued: it sets
    /// `ProcessEntry::retiring` (`deliver_signal`), and `Context::next` answers it when it
    /// finds no mail (`Shard::close_retiring`) — so the per-message path pays nothing for it.
    Retire,
}

/// How an exit signal came.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Via {
    /// `Context::exit`.
    Explicit,
    /// A link the receiver made (`Context::link`): it has no effect once the receiver
    /// unlinked, even on its way from another shard then.
    Link,
    /// A supervisor's tie to its child (`Context::link_child`): the child made no link of its
    /// own, and none it could undo.
    Tie,
}

/// An envelope addressed to a slot (or to the shard itself).
pub(crate) struct Envelope {
    pub(crate) slot: u32,
    pub(crate) generation: u32,
    pub(crate) kind: Kind,
}

pub(crate) enum Kind {
    /// A user message; `alias` is set when it was sent to an alias of the process.
    Mail {
        mail: Mail,
        priority: Priority,
        alias: Option<u64>,
    },
    /// The answer to a call this process made.
    Reply {
        reference: u64,
        result: CallResult,
    },
    Signal(Signal),
    /// `from` wants an exit signal when this process ends.
    Link {
        from: Pid,
    },
    Unlink {
        from: Pid,
    },
    /// `from` wants a `Down` when this process ends.
    Monitor {
        from: Pid,
        reference: MonitorRef,
    },
    Demonitor {
        reference: MonitorRef,
    },
    /// Poll the process's task (a foreign waker fired).
    Wake,
    /// To the shard: start a process.
    Spawn(SpawnRequest),
    /// To the shard: inspect, stop, arm a timeout...
    Control(ControlRequest),
}

/// Where an answer goes: a process waiting on a reference, or a thread/foreign future waiting
/// on a one-shot [`Slot`]. Dropped unanswered, it answers `T::dropped()` so nobody waits
/// forever for an answer that cannot come.
pub(crate) struct Responder<T: Answer> {
    pub(crate) inner: Option<ResponderTo<T>>,
}

pub(crate) enum ResponderTo<T> {
    /// A process waiting in `call` (until `deadline`).
    Process {
        pid: Pid,
        reference: u64,
        deadline: Tick,
    },
    External(Arc<Slot<T>>),
}

/// A deadline in whole milliseconds since this OS process first asked (rounded up): four bytes,
/// so a responder of a process stays 32 bytes (an `Option<Instant>` made every process entry,
/// which holds one for its spawner, 24 bytes bigger).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tick(u32);

impl Tick {
    /// No deadline (or one beyond `u32::MAX` ms, about 49 days, from the epoch).
    pub(crate) const NEVER: Tick = Tick(u32::MAX);

    fn epoch() -> Instant {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    /// The first tick at or after `at`.
    pub(crate) fn after(at: Instant) -> Tick {
        let since = at.saturating_duration_since(Self::epoch());
        let ms = since.as_millis() + u128::from(!since.subsec_nanos().is_multiple_of(1_000_000));
        Tick(u32::try_from(ms).unwrap_or(u32::MAX))
    }

    /// True if `now` is at or past this deadline, or less than a millisecond before it (never
    /// for `NEVER`). `now` is rounded up, like the deadline: so a moment at or after the real
    /// deadline — when the caller's timer may have fired — always counts as passed, whatever
    /// the sub-millisecond offsets of the two instants (rounded down, a reply made just after
    /// the caller timed out could pass as on time).
    pub(crate) fn passed(self, now: Instant) -> bool {
        self != Tick::NEVER && Tick::after(now).0 >= self.0
    }
}

// Every process entry holds one (for whoever waits for its `init`).
const _: () = assert!(std::mem::size_of::<Responder<CallResult>>() == 32);

/// An answer type: how to report "dropped without an answer".
pub(crate) trait Answer: Send + 'static {
    fn dropped() -> Self;
    fn into_message(self) -> CallResult;
}

impl Answer for CallResult {
    fn dropped() -> Self {
        Err(CallError::NoReply)
    }
    fn into_message(self) -> CallResult {
        self
    }
}

impl<T: Answer> Responder<T> {
    pub(crate) fn process(pid: Pid, reference: u64, deadline: Option<Instant>) -> Self {
        let deadline = deadline.map_or(Tick::NEVER, Tick::after);
        Responder { inner: Some(ResponderTo::Process { pid, reference, deadline }) }
    }
    pub(crate) fn external(slot: Arc<Slot<T>>) -> Self {
        Responder { inner: Some(ResponderTo::External(slot)) }
    }
    /// Silences the responder: the waiter learns the outcome another way.
    pub(crate) fn defuse(mut self) {
        self.inner = None;
    }
    /// Sends the answer. Returns false when it was late (the waiter gave up) or undeliverable.
    pub(crate) fn respond(mut self, value: T) -> bool {
        match self.inner.take() {
            Some(to) => deliver(to, value),
            None => false,
        }
    }
}

fn deliver<T: Answer>(to: ResponderTo<T>, value: T) -> bool {
    match to {
        ResponderTo::External(slot) => {
            let delivered = slot.complete(value);
            if !delivered {
                crate::shard::with_current(|s| {
                    if let Some(s) = s {
                        s.late_reply();
                    }
                });
            }
            delivered
        }
        ResponderTo::Process { pid, reference, deadline } => {
            crate::node::route::reply(pid, reference, deadline, value.into_message())
        }
    }
}

impl<T: Answer> Drop for Responder<T> {
    fn drop(&mut self) {
        if let Some(to) = self.inner.take() {
            deliver(to, T::dropped());
        }
    }
}

/// A one-shot rendezvous for an answer awaited outside a shard: by a future on any executor
/// (waker) or by a blocked thread (condvar). The first completion wins; later ones are late.
pub(crate) struct Slot<T> {
    state: Mutex<SlotState<T>>,
    ready: Condvar,
    /// The shard timer armed for this slot's timeout, cancelled when an answer wins.
    timer: Mutex<Option<ArmedTimer>>,
}

/// A timer on one shard of one node.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ArmedTimer {
    pub(crate) node: crate::process::NodeId,
    pub(crate) shard: crate::process::ShardId,
    pub(crate) key: crate::shard::TimerKey,
}

impl ArmedTimer {
    /// Cancels the timer: directly on its own shard, else by asking that shard.
    fn cancel(self) {
        let request = crate::shard::ControlRequest::CancelTimer(self.key);
        crate::node::route::deliver_to(
            self.node,
            self.shard,
            Envelope { slot: 0, generation: 0, kind: Kind::Control(request) },
        );
    }
}

enum SlotState<T> {
    Waiting(Option<Waker>),
    Done(T),
    Taken,
}

impl<T> Slot<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Slot { state: Mutex::new(SlotState::Waiting(None)), ready: Condvar::new(), timer: Mutex::new(None) })
    }

    /// Records the timer armed for this slot's timeout. False (nothing recorded) when the slot
    /// is already complete: the caller cancels the timer itself.
    pub(crate) fn arm(&self, timer: ArmedTimer) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(*state, SlotState::Waiting(_)) {
            return false;
        }
        *self.timer.lock().unwrap_or_else(PoisonError::into_inner) = Some(timer);
        true
    }

    /// Completes the slot; false if it was already complete.
    pub(crate) fn complete(&self, value: T) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut *state {
            SlotState::Waiting(waker) => {
                let waker = waker.take();
                *state = SlotState::Done(value);
                let timer = self.timer.lock().unwrap_or_else(PoisonError::into_inner).take();
                drop(state);
                self.ready.notify_all();
                if let Some(w) = waker {
                    w.wake();
                }
                if let Some(t) = timer {
                    t.cancel();
                }
                true
            }
            _ => false,
        }
    }

    pub(crate) fn poll_take(&self, cx: &mut TaskContext<'_>) -> Poll<T> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match std::mem::replace(&mut *state, SlotState::Taken) {
            SlotState::Done(v) => Poll::Ready(v),
            SlotState::Waiting(_) => {
                *state = SlotState::Waiting(Some(cx.waker().clone()));
                Poll::Pending
            }
            SlotState::Taken => panic!("pinion: a completed answer was polled again"),
        }
    }

    /// Blocks until complete or `deadline`; on the deadline completes with `on_timeout()`
    /// (unless an answer won the race).
    pub(crate) fn wait(&self, deadline: Option<Instant>, on_timeout: impl FnOnce() -> T) -> T {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let SlotState::Done(_) = &*state {
                match std::mem::replace(&mut *state, SlotState::Taken) {
                    SlotState::Done(v) => return v,
                    _ => unreachable!(),
                }
            }
            match deadline {
                None => state = self.ready.wait(state).unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        *state = SlotState::Taken;
                        return on_timeout();
                    }
                    state = self.ready.wait_timeout(state, d - now).unwrap_or_else(PoisonError::into_inner).0;
                }
            }
        }
    }
}

/// Wraps a value as a [`Message`] (a `Message` is passed through).
#[inline]
pub(crate) fn into_message<M: Any + Send>(m: M) -> Message {
    Message::new(m)
}

#[cfg(test)]
mod tests {
    use super::{CallResult, Responder, Slot, Tick, boxed, unboxed};
    use crate::error::CallError;
    use crate::process::Message;
    use std::time::{Duration, Instant};

    #[test]
    fn a_responder_box_is_kept_for_the_next_call_and_both_responders_still_answer() {
        let (first_slot, second_slot) = (Slot::<CallResult>::new(), Slot::<CallResult>::new());
        let first = boxed(Responder::external(first_slot.clone()));
        let address = std::ptr::from_ref(&*first).addr();
        let first = unboxed(first);
        let second = boxed(Responder::external(second_slot.clone()));
        assert_eq!(std::ptr::from_ref(&*second).addr(), address, "the spare box is used again");
        // The responder moved out of the box answers its own waiter ...
        assert!(first.respond(Ok(Message::new(7u64))));
        let answer = first_slot.wait(None, || Err(CallError::Timeout)).map(|m| m.downcast::<u64>().ok());
        assert_eq!(answer, Ok(Some(7)));
        // ... and the one written into the spare box is a whole responder: dropped unanswered,
        // it tells its waiter so.
        drop(second);
        let answer = second_slot.wait(None, || Err(CallError::Timeout)).map(drop);
        assert_eq!(answer, Err(CallError::NoReply));
    }

    #[test]
    fn a_tick_passes_at_its_deadline_and_at_most_a_millisecond_before() {
        let _ = Tick::after(Instant::now()); // the epoch, before `now`
        let now = Instant::now();
        for ms in [0u64, 1, 7, 1000] {
            for offset in [0u64, 1, 300, 999, 1000] {
                let deadline = now + Duration::from_millis(ms) + Duration::from_micros(offset);
                let tick = Tick::after(deadline);
                for late in [0u64, 1, 250, 999, 1000, 5000] {
                    let at = deadline + Duration::from_micros(late);
                    assert!(tick.passed(at), "{ms} ms + {offset} µs: not passed {late} µs after");
                }
                let early = deadline - Duration::from_micros(1001);
                assert!(!tick.passed(early), "{ms} ms + {offset} µs: passed over a millisecond early");
            }
        }
        assert!(!Tick::NEVER.passed(now + Duration::from_secs(1 << 30)));
        assert_eq!(Tick::after(now + Duration::from_secs(100 * 86_400)), Tick::NEVER);
    }
}
