//! [`Context`]: what a handler uses to act — send, call, spawn, link, monitor, timers, names,
//! aliases, logging. Every method runs on the process's own shard; `call` and `spawn` park the
//! process (not the shard) until answered.

#![allow(unsafe_code, reason = "the process loop takes its batch's next mail without a check it counted already")]

use std::any::Any;
use std::fmt;
use std::future::{Future, poll_fn};
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use crate::process::call::WaitReply;
use crate::process::deadline_after;

use crate::error::{CallError, RegisterError, SendError, SpawnError};
use crate::node::{NodeHandle, route};
use crate::process::envelope::{CallResult, Kind, Mail, Responder, Signal, Via};
use crate::process::mailbox::Lane;
use crate::process::{
    Actor, Alias, CallReply, ExitReason, Item, Message, MonitorRef, NodeId, Pid, Priority, ProcessOptions, ShardId,
    SpawnResult, Target, link,
};
use crate::shard::{OwnedTarget, Shard, SpawnRequest, TimerAction, TimerKey};

/// Messages a process handles before it yields to the others on its shard.
pub(crate) const BUDGET: u16 = 64;

/// The process's view of the runtime, passed to every handler.
pub struct Context {
    pub(crate) shard: Rc<Shard>,
    pub(crate) pid: Pid,
    /// Messages taken in this run of the process (its budget), counting ahead the `fast` ones
    /// granted but not yet taken. `u16` (the budget is 64), so that with `fast` and `stopping`
    /// it fits the eight bytes `slice` and `stopping` took: memory per idle process.
    slice: u16,
    /// How many more messages of `batch` the process loop may take without looking at its
    /// mailbox or its stop flag: granted by `next` (the batch's length, within the budget left),
    /// zeroed by a stop. One counter checked per message instead of the budget, the batch's
    /// emptiness and the stop flag.
    /// INVARIANT: `fast <= batch.len()` (`grant_fast` caps it; only `next`, which zeroes it
    /// first, and `next_batched`, which takes one of each, touch the batch).
    fast: std::cell::Cell<u16>,
    stop: std::cell::Cell<Option<ExitReason>>,
    /// `stop` is set (checked when the fast path ends instead of taking the `Option`).
    stopping: std::cell::Cell<bool>,

    current_reply: Option<Responder<CallResult>>,
    /// User messages taken from the mailbox in one go, handled before looking at it again.
    batch: Lane<Mail>,
    /// The shard's `attention` count when this process last looked at its mailbox.
    seen: u64,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("pid", &self.pid).finish()
    }
}

/// A timer set by [`Context::send_after`]; cancel it with [`Context::cancel_timer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerRef {
    /// The node of the shard that set it: another node's shard of the same index holds
    /// unrelated timers under the same keys (a review: node B's process given node A's
    /// `TimerRef` cancelled its own first timer).
    node: NodeId,
    shard: ShardId,
    key: TimerKey,
}

/// The right to answer a call later, from any thread. Dropped unanswered, it answers the caller
/// `CallError::NoReply` at once.
pub struct ReplyToken {
    responder: Responder<CallResult>,
    /// Counts a late reply made off the shard threads (`deliver` counts it on a shard thread).
    node: std::sync::Arc<crate::node::NodeShared>,
}

impl fmt::Debug for ReplyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplyToken")
    }
}

/// A retiring pool worker found its mailbox empty and nothing on its way to it (its slot is
/// closed already): it stops, as if asked to (see `Signal::Retire`, which only marks it).
#[cold]
fn retire_now() -> Poll<Item> {
    Poll::Ready(Item::Signal(Signal::Shutdown))
}

/// Cancels a `sleep`'s timer when the sleep is dropped before it ends.
struct CancelOnDrop<'a> {
    shard: &'a Shard,
    timer: &'a mut Option<TimerKey>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.timer.take() {
            // The cancelled action (a waker) is dropped after the borrow ends.
            let cancelled = self.shard.timers.borrow_mut().cancel(key);
            drop(cancelled);
        }
    }
}

impl Drop for Context {
    /// A process's future is dropped (it ended, panicked or was killed) with messages still in
    /// its own batch: they go back to the front of its main lane, where the end of the process
    /// finds them (answered, or handed on by a pool) like any other queued message.
    fn drop(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.batch);
        let mut table = self.shard.table.borrow_mut();
        match table.get_mut(self.pid.slot as usize).filter(|e| e.generation == self.pid.generation) {
            Some(entry) => {
                entry.taken = entry.taken.wrapping_sub(batch.len() as u32);
                let mut main = std::mem::replace(&mut entry.mailbox.main, batch);
                while let Some(m) = main.pop_front() {
                    entry.mailbox.main.push_back(m);
                }
            }
            None => {
                drop(table);
                drop(batch);
            }
        }
    }
}

impl ReplyToken {
    /// The responder inside (the pool manager hands a call on to a worker).
    pub(crate) fn into_responder(self) -> Responder<CallResult> {
        self.responder
    }

    /// Answers the call. Returns false when the caller has given up (its timeout passed): the
    /// reply is then dropped and counted as late (`NodeHandle::late_replies`), never handed to
    /// a later call. Exact for a caller outside the runtime and for a process on this shard.
    /// For a process on another shard it goes by the caller's deadline, in whole milliseconds
    /// rounded so that a reply made after the caller's timeout fired is always refused: false
    /// from up to a millisecond before the deadline (the caller would time out before taking
    /// it, or race its timer). A reply made just before that may still arrive after the
    /// caller's timer fired, and is then dropped and counted there although this returned true.
    pub fn reply<M: Any + Send>(self, msg: M) -> bool {
        let on_shard = crate::shard::with_current(|s| s.is_some());
        let delivered = self.responder.respond(Ok(crate::process::envelope::into_message(msg)));
        if !delivered && !on_shard {
            self.node.count_late_reply();
        }
        delivered
    }
}

impl Context {
    pub(crate) fn new(shard: Rc<Shard>, pid: Pid) -> Self {
        Context {
            shard,
            pid,
            slice: 0,
            fast: std::cell::Cell::new(0),
            stop: std::cell::Cell::new(None),
            stopping: std::cell::Cell::new(false),
            current_reply: None,
            batch: Lane::new(),
            seen: 0,
        }
    }

    /// This process's pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The shard this process runs on.
    pub fn shard(&self) -> ShardId {
        self.pid.shard
    }

    /// How many shards the node has.
    pub fn shards(&self) -> usize {
        self.shard.node.shards.len()
    }

    /// The node's name.
    pub fn node_name(&self) -> &str {
        &self.shard.node.name
    }

    /// A handle on the node, usable from any thread.
    pub fn handle(&self) -> NodeHandle {
        NodeHandle::from_shared(self.shard.node.clone())
    }

    /// Sends `msg` to `to` in the main lane. A full mailbox answers `MailboxFull` with the
    /// message, synchronously, whatever shard the receiver is on.
    #[inline]
    pub fn send<'t, M: Any + Send>(&self, to: impl Into<Target<'t>>, msg: M) -> Result<(), SendError<M>> {
        route::send(&self.shard.node, Some(&self.shard), self.pid, to.into(), msg, Priority::Main, None).map(drop)
    }

    /// Sends `msg` in the given lane (urgent messages are handled before main ones).
    pub fn send_priority<'t, M: Any + Send>(
        &self,
        to: impl Into<Target<'t>>,
        msg: M,
        priority: Priority,
    ) -> Result<(), SendError<M>> {
        route::send(&self.shard.node, Some(&self.shard), self.pid, to.into(), msg, priority, None).map(drop)
    }

    /// Sends `req` and waits for the reply, at most `timeout`. Parks this process only. A reply
    /// that arrives after the timeout is dropped and counted (never handed to a later call).
    /// A full mailbox fails the call at once with [`CallError::MailboxFull`], the request
    /// dropped; [`try_call`](Self::try_call) hands it back.
    pub async fn call<'t, M: Any + Send>(
        &self,
        to: impl Into<Target<'t>>,
        req: M,
        timeout: Duration,
    ) -> Result<Message, CallError> {
        // Not through `try_call`: awaiting its `CallReply` cost a same-shard call 26
        // instructions more (callgrind, `call/same_shard`, 200 k calls: 431.8 M in all before
        // `try_call`, 437.0 M through it, 432.1 M so).
        let to = to.into();
        if let Some(e) = self.call_refused(to, timeout) {
            return Err(e);
        }
        let (reply, responder) = self.call_pending(timeout);
        route::send(&self.shard.node, Some(&self.shard), self.pid, to, req, Priority::Main, Some(responder))?;
        reply.await
    }

    /// Sends `req` now, as [`call`](Self::call) does, and hands it back when it is refused: a
    /// full mailbox (or pool), a stale pid, an unknown name or alias, a node down or stopping
    /// answer at once the [`SendError`] a `send` would, the request in it, to be sent again
    /// later or elsewhere without a clone. A request taken is answered through the
    /// [`CallReply`], awaited as `call` is; there a `MailboxFull` still comes from a pool that
    /// took the request and then found no worker for it (the worker it was queued to ended,
    /// the others were full), or a `Stopped` from a pool that stopped, with the request handed
    /// back in the reply ([`CallReply::request_back`]). A zero timeout and a call to this very process (its pid, a live
    /// alias of it, its name) are refused before anything is sent, the request handed back in
    /// [`SendError::InvalidTimeout`] and [`SendError::WouldBlock`] (review 72: it was dropped
    /// and the reply failed).
    pub fn try_call<'t, M: Any + Send>(
        &self,
        to: impl Into<Target<'t>>,
        req: M,
        timeout: Duration,
    ) -> Result<CallReply<'_>, SendError<M>> {
        let to = to.into();
        match self.call_refused(to, timeout) {
            None => {}
            Some(CallError::InvalidTimeout(_)) => return Err(SendError::InvalidTimeout(req)),
            Some(_) => return Err(SendError::WouldBlock(req)),
        }
        let (reply, responder) = self.call_pending(timeout);
        route::send(&self.shard.node, Some(&self.shard), self.pid, to, req, Priority::Main, Some(responder))?;
        Ok(CallReply::waiting(reply))
    }

    /// Why a call to `to` cannot be made at all: a zero timeout, or `to` is this very process.
    #[inline]
    fn call_refused(&self, to: Target<'_>, timeout: Duration) -> Option<CallError> {
        if timeout.is_zero() {
            return Some(CallError::InvalidTimeout(timeout));
        }
        let callee = match to {
            Target::Pid(p) => Some(p),
            // An alias only while it is live: a deleted one is `UnknownAlias`, as for anyone.
            Target::Alias(a) => Some(a.owner).filter(|o| self.shard.has_alias(o.slot, o.generation, a.id)),
            // A name of this very process waits as long as its pid would.
            _ => route::resolve_pid(&self.shard.node, to),
        };
        // It cannot answer while it waits: at once, not after the whole timeout.
        (callee == Some(self.pid)).then_some(CallError::WouldBlock)
    }

    /// A new pending call: the wait for its reply, and the responder its callee answers with.
    #[inline]
    fn call_pending(&self, timeout: Duration) -> (WaitReply<'_>, Responder<CallResult>) {
        let reference = self.shard.next_ref();
        let deadline = deadline_after(timeout);
        self.pending(reference, Some(deadline));
        // Created first: dropped unanswered (on the error return too), it forgets the call.
        let reply = self.wait_reply(reference);
        (reply, Responder::process(self.pid, reference, Some(deadline)))
    }

    /// Spawns a process on this shard and waits until its `init` has run.
    pub async fn spawn<A: Actor, F>(&self, factory: F, options: ProcessOptions) -> Result<Pid, SpawnError>
    where
        F: FnOnce() -> A + Send + 'static,
    {
        self.spawn_inner(self.pid.shard, None, factory, options).await
    }

    /// Spawns a process on `shard` and waits until its `init` has run.
    pub async fn spawn_on<A: Actor, F>(
        &self,
        shard: ShardId,
        factory: F,
        options: ProcessOptions,
    ) -> Result<Pid, SpawnError>
    where
        F: FnOnce() -> A + Send + 'static,
    {
        self.spawn_inner(shard, None, factory, options).await
    }

    /// Spawns a process on this shard under `name` (registered before `init` runs).
    pub async fn spawn_register<A: Actor, F>(
        &self,
        name: &str,
        factory: F,
        options: ProcessOptions,
    ) -> Result<Pid, SpawnError>
    where
        F: FnOnce() -> A + Send + 'static,
    {
        self.spawn_inner(self.pid.shard, Some(name.to_owned()), factory, options).await
    }

    async fn spawn_inner<A: Actor, F>(
        &self,
        shard: ShardId,
        name: Option<String>,
        factory: F,
        options: ProcessOptions,
    ) -> Result<Pid, SpawnError>
    where
        F: FnOnce() -> A + Send + 'static,
    {
        self.spawn_request(shard, move |reply| SpawnRequest::new(factory, options, name, reply)).await
    }

    /// Spawns the process `make` describes on `shard` and waits until its `init` has run.
    pub(crate) async fn spawn_request(
        &self,
        shard: ShardId,
        make: impl FnOnce(Responder<SpawnResult>) -> SpawnRequest,
    ) -> Result<Pid, SpawnError> {
        let reference = self.shard.next_ref();
        self.pending(reference, None);
        let reply = self.wait_reply(reference);
        let request = make(Responder::process(self.pid, reference, None));
        route::spawn(&self.shard.node, Some(&self.shard), shard, request)?;
        match reply.await {
            Ok(m) => match m.downcast::<SpawnResult>() {
                Ok(r) => r,
                Err(_) => Err(SpawnError::Stopped),
            },
            Err(_) => Err(SpawnError::Stopped),
        }
    }

    /// Sends `msg` to `to` after `after`. A name is resolved when the timer fires. If the send
    /// fails then (full mailbox, no such process), the failure is logged and counted as a dead
    /// letter. Timers count whole milliseconds, rounded up, from when this is called: a
    /// steady tick re-armed from its handler drifts by its handling time (an SSE trial: 10 a
    /// second came out at 9.8); a ticker that must keep its rate arms each from the one before
    /// (`period - elapsed`).
    pub fn send_after<'t, M: Any + Send>(&self, to: impl Into<Target<'t>>, msg: M, after: Duration) -> TimerRef {
        let action = TimerAction::SendAfter {
            from: self.pid,
            to: OwnedTarget::from(to.into()),
            msg: crate::process::envelope::into_message(msg),
        };
        let key = self.shard.timers.borrow_mut().insert(deadline_after(after), action);
        TimerRef { node: self.pid.node, shard: self.pid.shard, key }
    }

    /// Cancels a timer set by `send_after` on this shard. False if it already fired, or if it
    /// was set on another shard (of this node or another one): only the shard that set a timer
    /// can cancel it (it still fires; a user trial read `false` as "too late").
    ///
    /// A timer is cancelled where it was set: a process on another shard that must be able to
    /// stop it asks the process that set it.
    pub fn cancel_timer(&self, timer: TimerRef) -> bool {
        if timer.shard != self.pid.shard || timer.node != self.pid.node {
            return false;
        }
        // The cancelled action (and the message in it) is dropped after the borrow ends.
        let cancelled = self.shard.timers.borrow_mut().cancel(timer.key);
        cancelled.is_some()
    }

    /// Waits `duration` on the shard's timer wheel: this process is parked, the shard runs on.
    /// (A handler that waits keeps its message in progress: in a pool, its slot stays taken.)
    pub async fn sleep(&self, duration: Duration) {
        let deadline = deadline_after(duration);
        let mut timer: Option<TimerKey> = None;
        let shard = &self.shard;
        let guard = CancelOnDrop { shard, timer: &mut timer };
        poll_fn(|cx| {
            if std::time::Instant::now() >= deadline {
                return Poll::Ready(());
            }
            if let Some(key) = guard.timer.take() {
                shard.timers.borrow_mut().cancel(key);
            }
            *guard.timer = Some(shard.timers.borrow_mut().insert(deadline, TimerAction::Wake(cx.waker().clone())));
            Poll::Pending
        })
        .await;
    }

    /// The pool `to` names (its manager's pid or name), to inspect or resize it.
    pub fn pool<'t>(&self, to: impl Into<Target<'t>>) -> Result<crate::pool::PoolRef, crate::pool::PoolError> {
        crate::pool::PoolRef::find(&self.shard.node, route::resolve_pid(&self.shard.node, to.into()))
    }

    /// This process's shard.
    pub(crate) fn shard_rc(&self) -> Rc<Shard> {
        self.shard.clone()
    }

    /// Lets the other processes of the shard run, then continues.
    pub async fn yield_now(&self) {
        let mut yielded = false;
        poll_fn(|_| {
            if yielded {
                return Poll::Ready(());
            }
            yielded = true;
            self.shard.schedule(self.pid.slot);
            Poll::Pending
        })
        .await
    }

    /// Asks for an exit signal when `pid` ends (a one-way link, as in Ergo). Unless this
    /// process traps exits, a signal with any reason but `Normal` ends it with that reason. If
    /// `pid` is already gone, the signal comes at once with `NoProcess`.
    pub fn link(&self, pid: Pid) {
        link::watch(&self.shard, self.pid, pid, None);
        route::signal(&self.shard.node, Some(&self.shard), pid, self.pid, Kind::Link { from: self.pid });
    }

    /// Makes `child` get this process's exit signal when it ends, as if `child` had linked to
    /// it (a supervisor ties its children to itself so, as OTP's do: killed, it does not leave
    /// them running).
    pub(crate) fn link_child(&self, child: Pid) {
        link::add_link(&self.shard, self.pid.slot, self.pid.generation, child, Via::Tie);
    }

    /// Undoes [`link_child`](Self::link_child) (the child ended).
    pub(crate) fn unlink_child(&self, child: Pid) {
        link::remove_link(&self.shard, self.pid.slot, self.pid.generation, child, Via::Tie);
    }

    /// Undoes `link`. Once it returns the link has no effect on this process: an exit signal
    /// of it already queued here, or still on its way from another shard, is dropped (OTP's
    /// `unlink/1`).
    pub fn unlink(&self, pid: Pid) {
        link::unwatch(&self.shard, self.pid, pid, None);
        // An exit signal of that link already queued here has no effect either (OTP's
        // `unlink/1`).
        if let Some(e) = self.shard.table.borrow_mut().get_mut(self.pid.slot as usize) {
            e.mailbox.system.retain(|s| !matches!(s, Signal::Exit { from, via: Via::Link, .. } if *from == pid));
        }
        route::signal(&self.shard.node, Some(&self.shard), pid, self.pid, Kind::Unlink { from: self.pid });
    }

    /// Asks for a [`Down`](crate::Down) message when `to` ends (at once, with `NoProcess`, if it
    /// does not exist).
    pub fn monitor<'t>(&self, to: impl Into<Target<'t>>) -> MonitorRef {
        let pid = route::resolve_pid(&self.shard.node, to.into());
        let reference = MonitorRef(self.shard.next_ref());
        match pid {
            Some(pid) => {
                link::watch(&self.shard, self.pid, pid, Some(reference));
                let request = Kind::Monitor { from: self.pid, reference };
                route::signal(&self.shard.node, Some(&self.shard), pid, self.pid, request);
            }
            None => {
                // Watched like any monitor, so that its `Down` is taken (or dropped by a
                // `demonitor`) as theirs are.
                link::watch(&self.shard, self.pid, self.pid, Some(reference));
                let down = Signal::Down { reference, pid: self.pid, reason: ExitReason::NoProcess };
                route::signal(&self.shard.node, Some(&self.shard), self.pid, self.pid, Kind::Signal(down));
            }
        }
        reference
    }

    /// Removes a monitor on `pid` set by [`Context::monitor`]. No `Down` of it is handled after
    /// this, one already queued or on its way from another shard included (OTP's
    /// `demonitor/1` with `flush`).
    pub fn demonitor(&self, pid: Pid, reference: MonitorRef) {
        link::unwatch(&self.shard, self.pid, pid, Some(reference));
        route::signal(&self.shard.node, Some(&self.shard), pid, self.pid, Kind::Demonitor { reference });
    }

    /// Sends an exit signal to `to`. `Kill` ends it at once (no `terminate`, cannot be trapped);
    /// other reasons end it after its current handler unless it traps exits; `Normal` is
    /// ignored by a process that does not trap exits.
    pub fn exit(&self, to: Pid, reason: ExitReason) {
        if to == self.pid && reason == ExitReason::Kill {
            // Killing oneself: nothing more runs after this handler, and no `terminate`.
            self.stop.set(Some(ExitReason::Kill));
            self.set_stopping();
            return;
        }
        let signal = Signal::Exit { from: self.pid, reason, via: Via::Explicit };
        route::signal(&self.shard.node, Some(&self.shard), to, self.pid, Kind::Signal(signal));
    }

    /// Ends this process with `reason` once the current handler returns.
    pub fn stop(&mut self, reason: ExitReason) {
        // A self-`Kill` stands: nothing overrides it.
        let current = self.stop.take();
        self.stop.set(if current == Some(ExitReason::Kill) { current } else { Some(reason) });
        self.set_stopping();
    }

    /// A stop is pending: the process loop must look before it takes another message, so the
    /// fast path ends here (`next` refunds what it granted).
    fn set_stopping(&self) {
        self.stopping.set(true);
        self.fast.set(0);
    }

    /// Whether exit signals arrive as [`ExitSignal`](crate::ExitSignal) messages.
    pub fn trap_exit(&self) -> bool {
        self.shard.table.borrow().get(self.pid.slot as usize).is_some_and(|e| e.trap_exit)
    }

    /// Turns exit trapping on or off.
    pub fn set_trap_exit(&self, on: bool) {
        if let Some(e) = self.shard.table.borrow_mut().get_mut(self.pid.slot as usize) {
            e.trap_exit = on;
        }
    }

    /// Registers this process under `name` on its node (one name per process).
    pub fn register(&self, name: &str) -> Result<(), RegisterError> {
        self.shard.register_name(self.pid, name)
    }

    /// Removes this process's name. False if it had none.
    pub fn unregister(&self) -> bool {
        self.shard.unregister_name(self.pid)
    }

    /// The pid registered under `name` on this node.
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.shard.node.names.resolve(name)
    }

    /// A new alias of this process.
    pub fn create_alias(&self) -> Alias {
        self.shard.create_alias(self.pid)
    }

    /// Deletes an alias of this process. False if it was not one of its live aliases.
    pub fn delete_alias(&self, alias: Alias) -> bool {
        alias.owner == self.pid && self.shard.delete_alias(self.pid, alias.id)
    }

    /// Inside `handle_call`: take the right to reply later (then return `Reply::Later`).
    /// `None` outside a call, or if already taken.
    pub fn defer_reply(&mut self) -> Option<ReplyToken> {
        self.current_reply.take().map(|responder| ReplyToken { responder, node: self.shard.node.clone() })
    }

    /// Logs through the `log` facade, with the node and pid in the line.
    pub fn log(&self, level: log::Level, args: fmt::Arguments<'_>) {
        log::log!(target: "pinion", level, "{} {}: {}", self.shard.node.name, self.pid, args);
    }

    // ---- used by the process loop ----------------------------------------------------------

    #[inline]
    pub(crate) fn take_stop(&mut self) -> Option<ExitReason> {
        if !self.stopping.get() {
            return None;
        }
        self.stopping.set(false);
        self.stop.take()
    }

    pub(crate) fn init_finished(&mut self, result: Result<(), ExitReason>) {
        self.shard.init_finished(self.pid, result);
    }

    /// The next mailbox item: a system signal first, then an urgent message, then main. When
    /// its own batch is empty the process takes the whole main lane in one swap (no copying),
    /// then handles that batch without touching the shard's table — as long as no process on
    /// the shard got a signal or an urgent message meanwhile (the shard's `attention` count),
    /// so priorities hold strictly. After `BUDGET` messages in a row it yields.
    pub(crate) fn next(&mut self) -> impl Future<Output = Item> + '_ {
        // Whatever the fast path was granted and did not take goes back to the budget.
        self.slice -= self.fast.take();
        poll_fn(move |_| {
            if self.slice >= BUDGET {
                self.slice = 0;
                self.shard.schedule(self.pid.slot);
                return Poll::Pending;
            }
            if self.seen == self.shard.attention.get()
                && let Some(m) = self.batch.pop_front()
            {
                self.slice += 1;
                self.grant_fast();
                return Poll::Ready(Item::Mail(m));
            }
            let attention = self.shard.attention.get();
            let mut table = self.shard.table.borrow_mut();
            let Some(entry) = table.get_mut(self.pid.slot as usize) else {
                return Poll::Pending;
            };
            let mailbox = &mut entry.mailbox;
            let next = if let Some(signal) = mailbox.system.pop_front() {
                Some(Item::Signal(signal))
            } else if let Some(m) = mailbox.urgent.pop_front() {
                entry.taken = entry.taken.wrapping_add(1);
                Some(Item::Mail(m))
            } else {
                // (Nothing to swap in when main is empty too: the look that finds the mailbox
                // empty, once per message at a light load, costs no swap.)
                if self.batch.is_empty() && !mailbox.main.is_empty() {
                    std::mem::swap(&mut self.batch, &mut mailbox.main);
                    entry.taken = entry.taken.wrapping_add(self.batch.len() as u32);
                }
                self.batch.pop_front().map(Item::Mail)
            };
            // Caught up only once no signal or urgent message is left: until then the stale
            // count sends the loop back here for the next one, so a second urgent message
            // does not wait behind the rest of the batch.
            if mailbox.system.is_empty() && mailbox.urgent.is_empty() {
                self.seen = attention;
            }
            entry.batched = self.batch.len() as u32;
            match next {
                Some(item) => {
                    entry.awaiting_mail = false;
                    self.slice += 1;
                    drop(table);
                    self.grant_fast();
                    Poll::Ready(item)
                }
                None => {
                    // A retiring worker ends once nothing is on its way to it either (else it
                    // waits for that: the message's arrival wakes it).
                    if entry.retiring && self.shard.close_retiring(self.pid.slot, self.pid.generation) {
                        return retire_now();
                    }
                    entry.awaiting_mail = true;
                    self.slice = 0;
                    Poll::Pending
                }
            }
        })
    }

    /// Lets the process loop take the rest of its batch, within the budget left, without
    /// coming back here (`next_batched`). No stop is pending here: the loop took any before it
    /// called `next`, and only the process's own handler sets one.
    #[inline]
    fn grant_fast(&mut self) {
        debug_assert!(!self.stopping.get(), "a stop is taken before `next`");
        let fast = (BUDGET - self.slice.min(BUDGET)).min(u16::try_from(self.batch.len()).unwrap_or(u16::MAX));
        self.fast.set(fast);
        self.slice += fast;
    }

    /// The next message of the main-lane batch this process already holds, if it may take
    /// one without looking at its mailbox: granted by `next` (budget left, no stop pending),
    /// and no signal or urgent message arrived on the shard since its last look (`attention`).
    /// Otherwise `next` decides. Returns a pointer to the message, taken off the batch: the
    /// caller owns it and reads it out before the batch is touched again (see
    /// `Lane::pop_front_in_place`).
    #[inline(always)]
    pub(crate) fn next_batched(&mut self) -> Option<*mut Mail> {
        let fast = self.fast.get();
        if fast != 0 && self.seen == self.shard.attention.get() {
            debug_assert!(fast as usize <= self.batch.len(), "INVARIANT: fast <= batch.len()");
            self.fast.set(fast - 1);
            // SAFETY: `fast <= batch.len()` (granted so by `grant_fast`; only `next` and
            // this function take from the batch, and `next` zeroes `fast` first), so the
            // batch is not empty.
            return Some(unsafe { self.batch.pop_front_in_place() });
        }
        None
    }

    /// A user message is finished: release its reservation.
    #[inline]
    pub(crate) fn finish_mail(&mut self) {
        self.shard.finish_mail();
    }

    pub(crate) fn begin_call(&mut self, reply: Responder<CallResult>) {
        self.current_reply = Some(reply);
    }

    /// After `handle_call`: answer now with `msg`, or (None) drop the responder if the handler
    /// kept no token — which answers `NoReply`.
    pub(crate) fn end_call(&mut self, msg: Option<Message>) {
        let responder = self.current_reply.take();
        if let (Some(r), Some(m)) = (responder, msg) {
            r.respond(Ok(m));
        }
    }
}
