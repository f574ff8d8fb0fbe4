//! [`NodeHandle`]: the node seen from any thread — plain threads, tokio tasks, axum handlers
//! (the "simple approach"). `send` is synchronous; `call` and `spawn` return futures that run
//! on any executor and also offer a blocking `wait`.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use crate::error::{CallError, RegisterError, SendError, SpawnError};
use crate::node::{NodeShared, route};
use crate::process::deadline_after;
use crate::process::envelope::{CallResult, Envelope, Kind, Responder, Signal, Slot, Via, split_returned};
use crate::process::{
    Actor, ExitReason, Message, NodeId, Pid, Priority, ProcessInfo, ProcessOptions, ShardId, SpawnResult, Target,
};
use crate::shard::{ControlRequest, Shard, ShardInfo, SpawnRequest, with_current};

/// How long `inspect` and `process_info` wait for a shard to answer.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle on a node, usable from any thread (`Send + Sync + Clone`).
#[derive(Clone)]
pub struct NodeHandle {
    shared: Arc<NodeShared>,
}

impl fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.shared.fmt(f)
    }
}

impl NodeHandle {
    pub(crate) fn from_shared(shared: Arc<NodeShared>) -> Self {
        NodeHandle { shared }
    }

    pub(crate) fn shared(&self) -> &NodeShared {
        &self.shared
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The node's id in this OS process.
    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// How many shards the node runs.
    pub fn shards(&self) -> usize {
        self.shared.shards.len()
    }

    /// The pid that stands for "outside the runtime": the `from` of messages sent through a
    /// handle.
    pub fn external_pid(&self) -> Pid {
        self.shared.external
    }

    /// The shard this thread runs, when it is one of this node's.
    fn here(&self) -> Option<Rc<Shard>> {
        with_current(|s| s.filter(|s| s.node.id == self.shared.id).cloned())
    }

    /// Sends `msg` to `to`; a full mailbox answers `MailboxFull` with the message.
    pub fn send<'t, M: Any + Send>(&self, to: impl Into<Target<'t>>, msg: M) -> Result<(), SendError<M>> {
        self.send_priority(to, msg, Priority::Main)
    }

    /// Sends `msg` in the given lane.
    pub fn send_priority<'t, M: Any + Send>(
        &self,
        to: impl Into<Target<'t>>,
        msg: M,
        priority: Priority,
    ) -> Result<(), SendError<M>> {
        let here = self.here();
        route::send(&self.shared, here.as_ref(), self.external_pid(), to.into(), msg, priority, None).map(drop)
    }

    /// Sends `req` and returns a future of the reply, on any executor (or `.wait()` for it).
    /// The timeout runs from now; a zero timeout is refused.
    ///
    /// The request takes a place in the callee's mailbox like any message: when the mailbox
    /// is full the call fails at once with [`CallError::MailboxFull`] (the bound is exact;
    /// nothing waits for room), and the request is dropped. Callers that would rather wait,
    /// and keep the request to send again, use [`try_call`](Self::try_call).
    pub fn call<'t, M: Any + Send>(&self, to: impl Into<Target<'t>>, req: M, timeout: Duration) -> CallFuture {
        self.try_call(to, req, timeout).unwrap_or_else(|e| CallFuture::failed(self.shared.id, CallError::from(e)))
    }

    /// [`call`](Self::call) that hands the request back when it is refused: a full mailbox
    /// (or pool), a stale pid, an unknown name or alias, a node down or stopping answer at
    /// once the [`SendError`] a `send` would, the request in it, to be sent again later or
    /// elsewhere without a clone. A request taken is answered as by `call`, through the
    /// future; there a `MailboxFull` still comes from a pool that took the request and then
    /// found no worker for it (the worker it was queued to ended, the others were full), or a
    /// `Stopped` from a pool that stopped, with the request handed back in the future
    /// ([`CallFuture::request_back`]). A
    /// zero timeout is refused before anything is sent, the request handed back in
    /// [`SendError::InvalidTimeout`] (review 72: it was dropped, the future failed). A call
    /// through a handle has no calling process, so none is refused as a call to itself (a
    /// process that awaits a handle's call to its own pid waits until the timeout: use
    /// [`Context::try_call`](crate::Context::try_call), which refuses it).
    pub fn try_call<'t, M: Any + Send>(
        &self,
        to: impl Into<Target<'t>>,
        req: M,
        timeout: Duration,
    ) -> Result<CallFuture, SendError<M>> {
        let node = self.shared.id;
        if timeout.is_zero() {
            return Err(SendError::InvalidTimeout(req));
        }
        let deadline = deadline_after(timeout);
        let slot = Slot::new();
        let here = self.here();
        let responder = Responder::external(slot.clone());
        let from = self.external_pid();
        let shard = route::send(&self.shared, here.as_ref(), from, to.into(), req, Priority::Main, Some(responder))?;
        self.control(shard, ControlRequest::ArmTimeout { slot: slot.clone(), deadline });
        Ok(CallFuture { node, state: CallState::Waiting { slot, deadline }, back: None })
    }

    /// `call(..).wait()`: blocks this thread until the reply or the timeout. Refused
    /// (`WouldBlock`) on a shard thread of this node.
    pub fn call_blocking<'t, M: Any + Send>(
        &self,
        to: impl Into<Target<'t>>,
        req: M,
        timeout: Duration,
    ) -> Result<Message, CallError> {
        if self.here().is_some() {
            return Err(CallError::WouldBlock);
        }
        self.call(to, req, timeout).wait()
    }

    /// Spawns a process on the next shard (round robin); the future resolves after its `init`.
    pub fn spawn<A: Actor, F>(&self, factory: F, options: ProcessOptions) -> SpawnFuture
    where
        F: FnOnce() -> A + Send + 'static,
    {
        self.spawn_inner(self.shared.spawn_shard(), None, factory, options)
    }

    /// Spawns a process on `shard`.
    pub fn spawn_on<A: Actor, F>(&self, shard: ShardId, factory: F, options: ProcessOptions) -> SpawnFuture
    where
        F: FnOnce() -> A + Send + 'static,
    {
        self.spawn_inner(shard, None, factory, options)
    }

    /// Spawns a process registered under `name` (on the next shard).
    pub fn spawn_register<A: Actor, F>(&self, name: &str, factory: F, options: ProcessOptions) -> SpawnFuture
    where
        F: FnOnce() -> A + Send + 'static,
    {
        self.spawn_inner(self.shared.spawn_shard(), Some(name.to_owned()), factory, options)
    }

    fn spawn_inner<A: Actor, F>(
        &self,
        shard: ShardId,
        name: Option<String>,
        factory: F,
        options: ProcessOptions,
    ) -> SpawnFuture
    where
        F: FnOnce() -> A + Send + 'static,
    {
        let node = self.shared.id;
        let slot = Slot::new();
        let request = SpawnRequest::new(factory, options, name, Responder::external(slot.clone()));
        let here = self.here();
        match route::spawn(&self.shared, here.as_ref(), shard, request) {
            Ok(()) => SpawnFuture { node, state: SpawnState::Waiting(slot) },
            Err(e) => SpawnFuture { node, state: SpawnState::Failed(Some(e)) },
        }
    }

    /// Registers `pid` under `name`. Blocks until `pid`'s shard did it; on one of the node's
    /// shard threads, done at once for a process of that shard and refused (`WouldBlock`,
    /// nothing registered) for one of another shard.
    pub fn register(&self, name: &str, pid: Pid) -> Result<(), RegisterError> {
        if pid.node != self.shared.id || pid.shard.index() >= self.shared.shards.len() {
            return Err(RegisterError::NoSuchProcess);
        }
        crate::node::registry::check_name(name)?;
        if let Some(shard) = self.here() {
            // (A trial found this answered `NoSuchProcess` after asking the other shard, which
            // then registered the name.)
            return if shard.id == pid.shard { shard.register_name(pid, name) } else { Err(RegisterError::WouldBlock) };
        }
        let slot = Slot::new();
        let request = ControlRequest::Register { pid, name: name.to_owned(), reply: Responder::external(slot.clone()) };
        self.control(pid.shard, request);
        match self.wait_slot(&slot) {
            Ok(Some(result)) => result,
            _ => Err(RegisterError::NoSuchProcess),
        }
    }

    /// Removes `name`. False if no live process had it. On one of the node's shard threads,
    /// for a process of another shard, it asks that shard without waiting: true if the name
    /// was held when asked, and gone once that shard has run the request.
    pub fn unregister(&self, name: &str) -> bool {
        let Some(pid) = self.shared.names.resolve(name) else { return false };
        if let Some(shard) = self.here() {
            if shard.id == pid.shard {
                return shard.unregister_name_if(pid, name);
            }
            let request =
                ControlRequest::Unregister { pid, name: name.to_owned(), reply: Responder::external(Slot::new()) };
            self.control(pid.shard, request);
            return true;
        }
        let slot = Slot::new();
        let request =
            ControlRequest::Unregister { pid, name: name.to_owned(), reply: Responder::external(slot.clone()) };
        self.control(pid.shard, request);
        matches!(self.wait_slot(&slot), Ok(Some(true)))
    }

    /// The pid registered under `name`.
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.shared.names.resolve(name)
    }

    /// Sends an exit signal to `pid` (see `Context::exit`).
    pub fn exit(&self, pid: Pid, reason: ExitReason) {
        let here = self.here();
        let signal = Signal::Exit { from: self.external_pid(), reason, via: Via::Explicit };
        route::signal(&self.shared, here.as_ref(), pid, self.external_pid(), Kind::Signal(signal));
    }

    /// A snapshot of every shard. Blocks; refused (`WouldBlock`) on this node's shard threads.
    pub fn inspect(&self) -> Result<Vec<ShardInfo>, CallError> {
        let slots: Vec<_> = (0..self.shared.shards.len())
            .map(|i| {
                let slot = Slot::new();
                self.control(ShardId(i as u16), ControlRequest::Inspect(Responder::external(slot.clone())));
                slot
            })
            .collect();
        slots.iter().map(|s| self.wait_slot(s)?.ok_or(CallError::Stopped)).collect()
    }

    /// The pool `to` names (its pid or registered name), to inspect or resize it.
    pub fn pool<'t>(&self, to: impl Into<Target<'t>>) -> Result<crate::pool::PoolRef, crate::pool::PoolError> {
        crate::pool::PoolRef::find(&self.shared, route::resolve_pid(&self.shared, to.into()))
    }

    /// A snapshot of one process. Blocks; refused (`WouldBlock`) on this node's shard threads.
    pub fn process_info(&self, pid: Pid) -> Result<ProcessInfo, CallError> {
        if pid.node != self.shared.id || pid.shard.index() >= self.shared.shards.len() {
            return Err(CallError::NoSuchProcess);
        }
        let slot = Slot::new();
        let request = ControlRequest::ProcessInfo {
            slot: pid.slot,
            generation: pid.generation,
            reply: Responder::external(slot.clone()),
        };
        self.control(pid.shard, request);
        self.wait_slot(&slot)?.ok_or(CallError::NoSuchProcess)
    }

    /// Replies that arrived after their call timed out (dropped), since the node started.
    pub fn late_replies(&self) -> u64 {
        self.shared.late_replies()
    }

    /// Asks the node to stop (returns at once; `Node::stop` or `Node::wait` join the shards).
    pub fn stop(&self) {
        self.shared.request_stop();
    }

    /// True once a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.shared.is_stopping()
    }

    fn control(&self, shard: ShardId, request: ControlRequest) {
        let lane = route::lane(&self.shared, self.here().as_ref());
        self.shared.push(shard, lane, Envelope { slot: 0, generation: 0, kind: Kind::Control(request) });
    }

    fn wait_slot<T: Send>(&self, slot: &Slot<Option<T>>) -> Result<Option<T>, CallError> {
        if self.here().is_some() {
            return Err(CallError::WouldBlock);
        }
        Ok(slot.wait(Some(Instant::now() + INSPECT_TIMEOUT), || None))
    }
}

enum CallState {
    Failed(Option<CallError>),
    Waiting { slot: Arc<Slot<CallResult>>, deadline: Instant },
}

/// The reply of a `NodeHandle::call`: a future on any executor, or `.wait()` to block.
///
/// A pool that took the request of a [`NodeHandle::try_call`] (or `call`) and then found no
/// worker for it (the worker it was queued to ended without a replacement and the others were
/// full, or the pool stopped) answers `MailboxFull` (or `Stopped`) and hands the request back: await the
/// future by reference (`(&mut future).await`) or block with [`wait_mut`](Self::wait_mut),
/// then take it with [`request_back`](Self::request_back) (review 72: it was dropped).
#[must_use = "a call's reply is only seen by awaiting or waiting on it"]
pub struct CallFuture {
    node: NodeId,
    state: CallState,
    back: Option<Message>,
}

impl fmt::Debug for CallFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallFuture")
    }
}

impl CallFuture {
    fn failed(node: NodeId, e: CallError) -> Self {
        CallFuture { node, state: CallState::Failed(Some(e)), back: None }
    }

    /// Blocks this thread until the reply or the timeout. Refused (`WouldBlock`) on a shard
    /// thread of the node. A request a pool handed back is dropped: to keep it, use
    /// [`wait_mut`](Self::wait_mut).
    pub fn wait(mut self) -> Result<Message, CallError> {
        self.wait_mut()
    }

    /// [`wait`](Self::wait) that leaves the future, so that a request a pool handed back
    /// with its refusal can be taken with [`request_back`](Self::request_back). Waited on
    /// again (or after it was awaited), it answers `NoReply` at once, and a request handed
    /// back and not yet taken stays.
    pub fn wait_mut(&mut self) -> Result<Message, CallError> {
        if with_current(|s| s.is_some_and(|s| s.node.id == self.node)) {
            return Err(CallError::WouldBlock);
        }
        let result = match std::mem::replace(&mut self.state, CallState::Failed(None)) {
            CallState::Failed(e) => Err(e.unwrap_or(CallError::NoReply)),
            CallState::Waiting { slot, deadline } => slot.wait(Some(deadline), || Err(CallError::Timeout)),
        };
        // Only a first answer can hand a request back: a second wait (`NoReply`) must not
        // drop one not yet taken (review 76).
        let (result, back) = split_returned(result);
        if back.is_some() {
            self.back = back;
        }
        result
    }

    /// The request, handed back when the reply was a refusal of a pool that had taken it
    /// (`MailboxFull`, `Stopped`); `None` before the reply came, for any other answer, and once
    /// taken. Downcast it to the request's type ([`Message::downcast`]).
    pub fn request_back(&mut self) -> Option<Message> {
        self.back.take()
    }
}

impl Future for CallFuture {
    type Output = Result<Message, CallError>;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let result = match &mut this.state {
            CallState::Failed(e) => return Poll::Ready(Err(e.take().unwrap_or(CallError::NoReply))),
            CallState::Waiting { slot, .. } => std::task::ready!(slot.poll_take(cx)),
        };
        // Answered: waited on or polled again, it answers `NoReply` at once (review 76: left
        // `Waiting` on a slot already taken, a `wait_mut` after `(&mut future).await` blocked
        // until the deadline and answered `Timeout`, dropping the request handed back).
        this.state = CallState::Failed(None);
        let (result, back) = split_returned(result);
        this.back = back;
        Poll::Ready(result)
    }
}

enum SpawnState {
    Failed(Option<SpawnError>),
    Waiting(Arc<Slot<SpawnResult>>),
}

/// The pid of a process spawned through a `NodeHandle`, once its `init` ran: a future on any
/// executor, or `.wait()` to block.
#[must_use = "a spawn's outcome is only seen by awaiting or waiting on it"]
pub struct SpawnFuture {
    node: NodeId,
    state: SpawnState,
}

impl fmt::Debug for SpawnFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SpawnFuture")
    }
}

impl SpawnFuture {
    /// Blocks until the process has run `init`. Refused (`WouldBlock`) on a shard thread of
    /// the node.
    pub fn wait(self) -> Result<Pid, SpawnError> {
        if with_current(|s| s.is_some_and(|s| s.node.id == self.node)) {
            return Err(SpawnError::WouldBlock);
        }
        match self.state {
            SpawnState::Failed(e) => Err(e.unwrap_or(SpawnError::Stopped)),
            SpawnState::Waiting(slot) => slot.wait(None, || Err(SpawnError::Stopped)),
        }
    }
}

impl Future for SpawnFuture {
    type Output = Result<Pid, SpawnError>;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().state {
            SpawnState::Failed(e) => Poll::Ready(Err(e.take().unwrap_or(SpawnError::Stopped))),
            SpawnState::Waiting(slot) => slot.poll_take(cx),
        }
    }
}
