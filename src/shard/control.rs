//! What a shard does for the node rather than for one process: introspection, stop, and
//! timers (`send_after`, call timeouts, external-call timeouts, the shutdown deadline).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{CallError, RegisterError};
use crate::node::route;
use crate::process::envelope::{Answer, ArmedTimer, CallResult, Responder, Signal, Slot};
use crate::process::{Alias, Message, Pid, Priority, ProcessId, ProcessInfo, ProcessState, ShardId, Target};
use crate::shard::{Shard, TimerKey, bump};

/// A snapshot of one shard.
#[derive(Clone, Debug)]
pub struct ShardInfo {
    /// Which shard.
    pub shard: ShardId,
    /// The core it is pinned to (`None` when pinning is off, or when pinning the shard's thread
    /// failed: it then runs on the cores the thread that started the node may use, and a
    /// warning is logged).
    pub core: Option<usize>,
    /// Live processes.
    pub processes: usize,
    /// Processes ready to run.
    pub run_queue: usize,
    /// User messages finished since start.
    pub messages_processed: u64,
    /// User messages waiting in mailboxes now.
    pub messages_queued: usize,
    /// Messages that reached a process that had ended (or a deleted alias) since start.
    pub dead_letters: u64,
    /// Replies found late here (after their call had timed out), since start: on the caller's
    /// shard, or on the replier's when it could tell the deadline had passed.
    pub late_replies: u64,
    /// Armed timers.
    pub timers: usize,
    /// I/O sources (listeners and connections) open now.
    pub io_sources: usize,
    /// Turns of the shard's loop since start: an idle shard's count stands still (it sleeps
    /// in `poll`), so a count that races while nothing happens shows a busy loop.
    pub turns: u64,
    /// Pool workers polled at once inside a connection's dispatch, since start: at a light
    /// load a request for an idle worker on the connection's shard is handled there and then
    /// (see [`WebHandler`](crate::web::WebHandler)), not after a pass of the run queue.
    pub polled_in_dispatch: u64,
}

/// A target kept for later (a `send_after`).
#[derive(Debug)]
pub(crate) enum OwnedTarget {
    Pid(Pid),
    Alias(Alias),
    Name(String),
    ProcessId(ProcessId),
}

impl From<Target<'_>> for OwnedTarget {
    fn from(t: Target<'_>) -> Self {
        match t {
            Target::Pid(p) => OwnedTarget::Pid(p),
            Target::Alias(a) => OwnedTarget::Alias(a),
            Target::Name(n) => OwnedTarget::Name(n.to_owned()),
            Target::ProcessId(p) => OwnedTarget::ProcessId(p.clone()),
        }
    }
}

impl OwnedTarget {
    fn as_target(&self) -> Target<'_> {
        match self {
            OwnedTarget::Pid(p) => Target::Pid(*p),
            OwnedTarget::Alias(a) => Target::Alias(*a),
            OwnedTarget::Name(n) => Target::Name(n),
            OwnedTarget::ProcessId(p) => Target::ProcessId(p),
        }
    }
}

/// What a timer does when it fires.
pub(crate) enum TimerAction {
    CallTimeout {
        slot: u32,
        generation: u32,
        reference: u64,
    },
    SendAfter {
        from: Pid,
        to: OwnedTarget,
        msg: Message,
    },
    External(Arc<Slot<CallResult>>),
    ShutdownDeadline,
    /// An I/O source's timer (`io.rs`).
    Io(mio::Token),
    /// `Context::sleep`: wake the sleeping process.
    Wake(std::task::Waker),
}

impl<T: Send + 'static> Answer for Option<T> {
    fn dropped() -> Self {
        None
    }
    fn into_message(self) -> CallResult {
        Ok(Message::new(self))
    }
}

/// Work sent to run on a shard thread: a closure, or a box that knows what to do there and
/// travels as itself (a web request's box carries its answer home this way: nothing is
/// allocated for the trip, and the box is recycled on the shard that took it).
pub(crate) trait ShardWork: Send {
    /// Does the work on `shard`'s thread.
    fn run(self: Box<Self>, shard: &Rc<Shard>);
}

impl<F: FnOnce(&Rc<Shard>) + Send> ShardWork for F {
    fn run(self: Box<Self>, shard: &Rc<Shard>) {
        (*self)(shard)
    }
}

/// Work sent to run on a shard thread.
pub(crate) type ShardTask = Box<dyn ShardWork>;

/// Requests a shard serves for the node.
pub(crate) enum ControlRequest {
    Inspect(Responder<Option<ShardInfo>>),
    ProcessInfo {
        slot: u32,
        generation: u32,
        reply: Responder<Option<ProcessInfo>>,
    },
    Register {
        pid: Pid,
        name: String,
        reply: Responder<Option<Result<(), RegisterError>>>,
    },
    Unregister {
        pid: Pid,
        /// Only this name: the process may have taken another since it was resolved.
        name: String,
        reply: Responder<Option<bool>>,
    },
    Stop,
    /// Complete an external call's slot with `Timeout` at `deadline`.
    ArmTimeout {
        slot: Arc<Slot<CallResult>>,
        deadline: Instant,
    },
    /// An external call was answered: its timeout timer is moot.
    CancelTimer(TimerKey),
    /// Run this on the shard thread (the web layer installs listeners and returns responses
    /// to connections this way).
    Run(ShardTask),
}

impl Shard {
    pub(crate) fn control(self: &Rc<Self>, request: ControlRequest) {
        match request {
            ControlRequest::Inspect(reply) => {
                reply.respond(Some(self.info()));
            }
            ControlRequest::ProcessInfo { slot, generation, reply } => {
                reply.respond(self.process_info(slot, generation));
            }
            ControlRequest::Register { pid, name, reply } => {
                reply.respond(Some(self.register_name(pid, &name)));
            }
            ControlRequest::Unregister { pid, name, reply } => {
                reply.respond(Some(self.unregister_name_if(pid, &name)));
            }
            ControlRequest::Stop => self.begin_stop(),
            ControlRequest::Run(f) => f.run(self),
            ControlRequest::ArmTimeout { slot, deadline } => {
                let key = self.timers.borrow_mut().insert(deadline, TimerAction::External(slot.clone()));
                if !slot.arm(ArmedTimer { node: self.node.id, shard: self.id, key }) {
                    // Dropped after the borrow ends: the action may hold user values.
                    let cancelled = self.timers.borrow_mut().cancel(key);
                    drop(cancelled);
                }
            }
            ControlRequest::CancelTimer(key) => {
                let cancelled = self.timers.borrow_mut().cancel(key);
                drop(cancelled);
            }
        }
    }

    pub(crate) fn info(&self) -> ShardInfo {
        let table = self.table.borrow();
        ShardInfo {
            shard: self.id,
            core: self.remote().core.get().copied(),
            processes: table.len() - self.retired.get(),
            run_queue: self.run_queue.borrow().len(),
            messages_processed: self.stats.processed.get() + u64::from(self.finished.get()),
            messages_queued: table.iter().map(|(_, e)| e.mailbox.user_len() + e.batched as usize).sum(),
            dead_letters: self.stats.dead_letters.get(),
            late_replies: self.stats.late_replies.get(),
            timers: self.timers.borrow().len(),
            io_sources: self.io_len(),
            turns: self.stats.turns.get(),
            polled_in_dispatch: self.stats.polled_in_dispatch.get(),
        }
    }

    fn process_info(&self, slot: u32, generation: u32) -> Option<ProcessInfo> {
        let table = self.table.borrow();
        let e = table.get(slot as usize).filter(|e| e.generation == generation)?;
        let state = if e.initializing {
            ProcessState::Initializing
        } else if e.scheduled || e.future.is_none() {
            ProcessState::Running
        } else if e.awaiting_mail {
            ProcessState::Idle
        } else {
            ProcessState::Waiting
        };
        Some(ProcessInfo {
            pid: Pid { node: self.node.id, shard: self.id, slot, generation },
            name: e.name.as_deref().map(str::to_owned),
            state,
            system_queue: e.mailbox.system.len(),
            urgent_queue: e.mailbox.urgent.len(),
            main_queue: e.mailbox.main.len() + e.batched as usize,
            reserved: self.remote().table.get(slot).map_or(0, |r| r.reserved()),
            mailbox: e.capacity,
            processed: self.remote().table.get(slot).map_or(0, |r| r.processed()),
            links: e.relations().map_or(0, |r| r.links.len() + r.tied.iter().filter(|p| !r.links.contains(p)).count()),
            monitors: e.relations().map_or(0, |r| r.monitors.len()),
            trap_exit: e.trap_exit,
        })
    }

    fn begin_stop(self: &Rc<Self>) {
        if self.stopping.replace(true) {
            return;
        }
        self.io_shutdown();
        let slots: Vec<u32> = {
            let mut table = self.table.borrow_mut();
            table
                .iter_mut()
                .filter(|(_, e)| !e.retired)
                .map(|(slot, e)| {
                    e.mailbox.system.push_back(Signal::Shutdown);
                    bump(&self.attention);
                    slot as u32
                })
                .collect()
        };
        for slot in slots {
            self.schedule(slot);
        }
        let deadline = crate::process::deadline_after(self.node.shutdown_timeout);
        self.stop_deadline.set(Some(deadline));
        self.timers.borrow_mut().insert(deadline, TimerAction::ShutdownDeadline);
    }

    fn fire(self: &Rc<Self>, action: TimerAction) {
        match action {
            TimerAction::CallTimeout { slot, generation, reference } => {
                let mut table = self.table.borrow_mut();
                let call = table
                    .get_mut(slot as usize)
                    .filter(|e| e.generation == generation)
                    .and_then(|e| e.calls.iter_mut().find(|c| c.reference == reference && c.result.is_none()));
                if let Some(call) = call {
                    call.result = Some(Err(CallError::Timeout));
                    call.timer = None;
                    drop(table);
                    self.schedule(slot);
                }
            }
            TimerAction::SendAfter { from, to, msg } => {
                if let Err(e) =
                    route::send(&self.node, Some(self), from, to.as_target(), msg, Priority::Main, None).map(drop)
                {
                    bump(&self.stats.dead_letters);
                    log::warn!(target: "pinion", "{} {}: send_after to {:?} failed: {}", self.node.name, from, to, e);
                }
            }
            TimerAction::External(slot) => {
                slot.complete(Err(CallError::Timeout));
            }
            TimerAction::Io(token) => self.io_timeout(token),
            TimerAction::Wake(waker) => waker.wake(),
            TimerAction::ShutdownDeadline => {
                let live: Vec<(u32, u32)> = self
                    .table
                    .borrow()
                    .iter()
                    .filter(|(_, e)| !e.retired)
                    .map(|(slot, e)| (slot as u32, e.generation))
                    .collect();
                if !live.is_empty() {
                    log::warn!(target: "pinion", "{} {}: shutdown deadline passed, killing {} processes",
                        self.node.name, self.id, live.len());
                }
                for (slot, generation) in live {
                    self.kill(slot, generation);
                }
            }
        }
    }

    pub(crate) fn fire_due(self: &Rc<Self>, now: Instant, fired: &mut Vec<TimerAction>) {
        self.timers.borrow_mut().advance(now, fired);
        for action in fired.drain(..) {
            super::executor::contain("firing a timer", || self.fire(action));
        }
    }
}
