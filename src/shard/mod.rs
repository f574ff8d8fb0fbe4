//! A shard: one OS thread, pinned to a core, owning a mio `Poll`, a single-threaded executor
//! of processes, a timer wheel and a cross-shard inbox. Nothing a shard owns is touched by
//! another thread; other threads reach it only through its [`Inbox`] and the lock-free
//! reservation table.
//!
//! Loop: drain the inbox → fire due timers → run ready processes (a bounded number of polls) →
//! if nothing is ready, park (announce, re-check the inbox, block in `poll` until the next
//! timer) → repeat. A stop request sends every process `Shutdown`; the thread ends when the
//! last one has ended (or the shutdown deadline kills the rest).
#![allow(unsafe_code, reason = "the current shard as a thread-local raw pointer")]
// The I/O-source machinery (io.rs, `Run` tasks, I/O timers) has no user without the web layer.
#![cfg_attr(not(feature = "web"), allow(dead_code))]

mod control;
pub(crate) mod executor;
pub(crate) mod inbox;
pub(crate) mod io;
mod reactor;
mod spawn;
pub(crate) mod timer;
mod turn;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

pub use control::ShardInfo;
#[cfg(feature = "web")]
pub(crate) use control::ShardWork;
pub(crate) use control::{ControlRequest, OwnedTarget, ShardTask, TimerAction};
pub(crate) use inbox::Inbox;
pub(crate) use spawn::SpawnRequest;
pub(crate) use timer::{TimerKey, TimerWheel};
pub(crate) use turn::run;

use crate::error::{CallError, RegisterError};
use crate::node::NodeShared;
use crate::process::envelope::{CallResult, Envelope, Kind, Mail, Responder, Signal, Via};
use crate::process::table::ProcessTable;
use crate::process::{Alias, ExitReason, Pid, Priority, ProcessEntry, ShardId, link};

/// Process polls between two looks at the inbox and the timers.
const POLLS_PER_TURN: usize = 256;

#[derive(Debug, Default)]
pub(crate) struct ShardStats {
    pub(crate) processed: Cell<u64>,
    pub(crate) dead_letters: Cell<u64>,
    pub(crate) late_replies: Cell<u64>,
    pub(crate) turns: Cell<u64>,
    pub(crate) polled_in_dispatch: Cell<u64>,
}

/// Where a send armed by [`Shard::arm_run_now`] stands.
#[cfg(feature = "web")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunNow {
    Off,
    /// Its send is under way: the first idle process it queues to is noted, not scheduled.
    Armed,
    /// That process (its slot), to poll once the send returns.
    Found(u32),
}

pub(crate) fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

/// One shard's state, owned by its thread (`!Send`: it holds `Rc`s and `RefCell`s).
pub(crate) struct Shard {
    pub(crate) id: ShardId,
    /// `node.id`, here so that the same-shard send checks a pid's node without a load of
    /// `node` first.
    pub(crate) node_id: crate::process::NodeId,
    pub(crate) node: Arc<NodeShared>,
    /// This shard's own cross-thread half (also in `node.shards`), one pointer away.
    remote: Arc<crate::node::ShardRemote>,
    pub(crate) table: RefCell<ProcessTable<ProcessEntry>>,
    pub(crate) run_queue: RefCell<VecDeque<u32>>,
    pub(crate) timers: RefCell<TimerWheel<TimerAction>>,
    /// Calls made during the executor's current pass whose timeouts are not armed yet.
    pub(crate) unarmed: RefCell<Vec<crate::process::Unarmed>>,
    next_ref: Cell<u64>,
    /// Bumped whenever some process here gets a system signal or an urgent message: a
    /// process handling a batch of main-lane messages looks at its mailbox again only when
    /// this moved (one `Cell` read per message instead of a table access).
    pub(crate) attention: Cell<u64>,
    /// User messages the running process finished in its current poll, not yet released.
    finished: Cell<u32>,
    /// Reservations the running process gave back during its current poll (its pool, if it is
    /// a pool worker, gets the same number back after the poll: see `executor`).
    pub(crate) released: Cell<u32>,
    /// Slots of a pool taken ahead for requests a connection of this shard has read and is
    /// handing out now (`pool::dispatch::send_ahead`); empty between dispatch passes.
    #[cfg(feature = "web")]
    pub(crate) pool_credit: Cell<crate::pool::dispatch::Credit>,
    /// Pool workers of this shard that ended lately: a message already on its way to one when
    /// it ended goes to its replacement (or back to its pool) instead of the dead letters.
    pub(crate) pool_graves: RefCell<crate::pool::dispatch::Graves>,
    /// Tombstones in the table (slots whose generations are used up).
    pub(crate) retired: Cell<usize>,
    /// The process being polled now (slot, generation).
    running: Cell<Option<(u32, u32)>>,
    pub(crate) stopping: Cell<bool>,
    /// When the stop began plus `NodeOptions::shutdown_timeout`: what the connections still
    /// write once every process ended is written until then, no longer.
    pub(crate) stop_deadline: Cell<Option<Instant>>,
    pub(crate) stats: ShardStats,
    /// The time at the start of this turn (or of this batch of I/O events): one clock read
    /// serves every connection touched in it, until user code runs (a process's poll, a web
    /// handler called in a connection's dispatch): that may take any time, and the next
    /// reading is fresh (`Shard::clock_stale`). A reading from before a handler that blocked
    /// 1 s, noted as a connection's last activity, closed it 1 s before its idle timeout.
    clock: Cell<Instant>,
    clock_fresh: Cell<bool>,
    /// Process polls left in this turn for running processes between I/O events (see
    /// `turn::serve_io`): the turn's inbox and timers never wait behind more than this.
    pub(crate) between_polls: Cell<usize>,
    /// Messages queued to this shard's processes since they last ran (`executor::run_ready`
    /// resets it): what tells `turn::serve_io` that I/O events have given them a batch.
    pub(crate) queued: Cell<usize>,
    /// The I/O event being served came in a wait that returned few events (a light load:
    /// see `turn::serve_io`). Set only while that event is served.
    #[cfg(feature = "web")]
    pub(crate) light: Cell<bool>,
    /// A send armed by [`arm_run_now`](Self::arm_run_now), and the idle process it found, to
    /// be polled at once instead of put on the run queue.
    #[cfg(feature = "web")]
    run_now: Cell<RunNow>,
    /// I/O sources (listeners, connections) by token; see `io.rs`.
    io: RefCell<slab::Slab<Rc<dyn io::IoSource>>>,
    /// Sources to flush once the turn's processes have run.
    io_dirty: RefCell<Vec<mio::Token>>,
    registry: mio::Registry,
}

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shard").field("id", &self.id).finish()
    }
}

thread_local! {
    /// The shard this thread runs: the `Rc` that `run` holds, while a [`CurrentGuard`] lives.
    /// A raw pointer in a `Cell` (const-initialized, nothing to drop) makes reading it one
    /// thread-local load: a `RefCell<Option<Rc<Shard>>>` needed its lazy-registration state
    /// checked and a borrow counted on every request's way in and out.
    static CURRENT: Cell<*const Rc<Shard>> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` with the shard this thread runs, if any.
#[inline(always)]
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Rc<Shard>>) -> R) -> R {
    let current = CURRENT.with(Cell::get);
    // SAFETY: the pointer is non-null only while the `CurrentGuard` made in `run` lives; it
    // points at `run`'s own `Rc<Shard>`, declared before the guard (so dropped after it, on
    // unwinding too) and never moved, on this same thread. Only shared references are made.
    f(unsafe { current.as_ref() })
}

/// Publishes a shard as this thread's current one; unpublishes it when dropped (unwinding
/// included).
struct CurrentGuard;

impl CurrentGuard {
    fn set(shard: &Rc<Shard>) -> CurrentGuard {
        CURRENT.with(|c| c.set(shard));
        CurrentGuard
    }
}

impl Drop for CurrentGuard {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(std::ptr::null()));
    }
}

impl Shard {
    fn new(id: ShardId, node: Arc<NodeShared>, registry: mio::Registry) -> Rc<Self> {
        Rc::new(Shard {
            id,
            node_id: node.id,
            remote: node.shards[id.index()].clone(),
            node,
            table: RefCell::new(ProcessTable::new()),
            run_queue: RefCell::new(VecDeque::new()),
            timers: RefCell::new(TimerWheel::new(Instant::now())),
            unarmed: RefCell::new(Vec::new()),
            next_ref: Cell::new(1),
            attention: Cell::new(0),
            finished: Cell::new(0),
            released: Cell::new(0),
            #[cfg(feature = "web")]
            pool_credit: Cell::new(crate::pool::dispatch::Credit::NONE),
            pool_graves: RefCell::new(Default::default()),
            running: Cell::new(None),
            retired: Cell::new(0),
            stopping: Cell::new(false),
            stop_deadline: Cell::new(None),
            stats: ShardStats::default(),
            clock: Cell::new(Instant::now()),
            clock_fresh: Cell::new(false),
            #[cfg(feature = "web")]
            light: Cell::new(false),
            #[cfg(feature = "web")]
            run_now: Cell::new(RunNow::Off),
            between_polls: Cell::new(0),
            queued: Cell::new(0),
            io: RefCell::new(slab::Slab::new()),
            io_dirty: RefCell::new(Vec::new()),
            registry,
        })
    }

    /// This shard's cross-thread half.
    #[inline]
    pub(crate) fn remote(&self) -> &crate::node::ShardRemote {
        &self.remote
    }

    pub(crate) fn next_ref(&self) -> u64 {
        let r = self.next_ref.get();
        self.next_ref.set(r + 1);
        r
    }

    /// Puts the process in `slot` on the run queue unless it is there already.
    pub(crate) fn schedule(&self, slot: u32) {
        let mut table = self.table.borrow_mut();
        if let Some(e) = table.get_mut(slot as usize) {
            self.enqueue(e, slot);
        }
    }

    /// Puts the process whose entry is `e` on the run queue unless it is there already: the
    /// check in line (every push to a process waiting for mail makes it), the queue's push
    /// (its borrow and its growth path) out of line.
    #[inline(always)]
    fn enqueue(&self, e: &mut ProcessEntry, slot: u32) {
        if !e.scheduled {
            e.scheduled = true;
            self.push_run_queue(slot);
        }
    }

    /// A message was queued to the process `e` in `slot`: counted for the runs between I/O
    /// events (`turn.rs`), and the process scheduled if it waits for mail.
    #[inline(always)]
    fn queued_to(&self, e: &mut ProcessEntry, slot: u32) {
        #[cfg(feature = "web")]
        if e.awaiting_mail && !e.scheduled && self.run_now.get() == RunNow::Armed {
            // Polled by the sender as soon as its send returns (not counted as queued: no
            // run between events is owed for it).
            self.run_now.set(RunNow::Found(slot));
            return;
        }
        self.queued.set(self.queued.get() + 1);
        if e.awaiting_mail {
            self.enqueue(e, slot);
        }
    }

    /// Before a send: at a light load (`wanted`, an I/O event of a wait of few events, and no
    /// process being polled now, so polls never nest), a process the send finds idle —
    /// waiting for mail, not scheduled — is noted instead of put on the run queue, for
    /// [`poll_run_now`](Self::poll_run_now) to poll right after the send (see
    /// `web::WebHandler`). True if armed. (Two calls around the send, not one taking it as a
    /// closure: the request and the send's result would be moved through the closure, ~40
    /// instructions a request.)
    #[cfg(feature = "web")]
    #[inline]
    pub(crate) fn arm_run_now(&self, wanted: bool) -> bool {
        let armed = wanted && self.light.get() && self.running.get().is_none();
        if armed {
            self.run_now.set(RunNow::Armed);
        }
        armed
    }

    /// After a send armed by [`arm_run_now`](Self::arm_run_now): polls the idle process it
    /// found, if it found one, and disarms.
    #[cfg(feature = "web")]
    #[inline]
    pub(crate) fn poll_run_now(self: &Rc<Self>) {
        if let RunNow::Found(slot) = self.run_now.replace(RunNow::Off) {
            bump(&self.stats.polled_in_dispatch);
            executor::poll_process(self, slot);
        }
    }

    #[inline(never)]
    fn push_run_queue(&self, slot: u32) {
        self.run_queue.borrow_mut().push_back(slot);
    }

    /// Dispatches one envelope that arrived through the inbox (or was routed locally).
    pub(crate) fn deliver(self: &Rc<Self>, env: Envelope) {
        let (slot, generation) = (env.slot, env.generation);
        match env.kind {
            Kind::Mail { mail, priority, alias } => self.deliver_mail(slot, generation, mail, priority, alias),
            Kind::Reply { reference, result } => {
                self.deliver_reply(slot, generation, reference, result);
            }
            Kind::Signal(signal) => self.deliver_signal(slot, generation, signal),
            Kind::Link { from } => link::add_link(self, slot, generation, from, Via::Link),
            Kind::Unlink { from } => link::remove_link(self, slot, generation, from, Via::Link),
            Kind::Monitor { from, reference } => link::add_monitor(self, slot, generation, from, reference),
            Kind::Demonitor { reference } => link::remove_monitor(self, slot, generation, reference),
            Kind::Wake => self.schedule(slot),
            Kind::Spawn(request) => {
                self.spawn_local(request);
            }
            Kind::Control(request) => self.control(request),
        }
    }

    /// Enqueues a reserved user message, or dead-letters it if its process is gone.
    ///
    /// The common case — main lane, no alias, a live receiver — is a borrow, a slab lookup and
    /// a push, inlined into the sender; everything else is out of line.
    #[inline(always)]
    pub(crate) fn deliver_mail(&self, slot: u32, generation: u32, mail: Mail, priority: Priority, alias: Option<u64>) {
        if priority == Priority::Main && alias.is_none() {
            let mut table = self.table.borrow_mut();
            if let Some(e) = table.get_mut(slot as usize).filter(|e| e.generation == generation) {
                e.mailbox.main.push_back(mail);
                self.queued_to(e, slot);
                return;
            }
        }
        self.deliver_mail_slow(slot, generation, mail, priority, alias);
    }

    /// Enqueues a reserved main-lane message to a process on this shard, built in place in its
    /// lane (the same-shard send's path).
    #[inline(always)]
    pub(crate) fn push_main<V: std::any::Any + Send>(
        &self,
        slot: u32,
        generation: u32,
        from: Pid,
        value: V,
        reply: Option<Box<Responder<CallResult>>>,
    ) {
        let mut table = self.table.borrow_mut();
        match table.get_mut(slot as usize) {
            Some(e) if e.generation == generation => {
                e.mailbox.main.push_mail(from, value, reply);
                self.queued_to(e, slot);
            }
            _ => {
                drop(table);
                let mail = Mail { from, msg: crate::process::Message::new(value), reply };
                self.deliver_mail_slow(slot, generation, mail, Priority::Main, None);
            }
        }
    }

    #[inline(never)]
    fn deliver_mail_slow(&self, slot: u32, generation: u32, mail: Mail, priority: Priority, alias: Option<u64>) {
        if alias.is_some_and(|id| !self.has_alias(slot, generation, id)) {
            let table = self.table.borrow();
            if let Some(e) = table.get(slot as usize).filter(|e| e.generation == generation) {
                let pool = e.pool.as_ref().map(|m| m.pool.clone());
                drop(table);
                self.release(slot, generation);
                if let Some(pool) = pool {
                    pool.gate.release(1); // a pool worker's slot held a gate slot too
                }
                self.recheck_retiring(slot);
                self.dead_letter(mail, CallError::UnknownAlias);
                return;
            }
        }
        if let Err(mail) = self.push_if_alive(slot, generation, mail, priority)
            && let Some(mail) = crate::pool::dispatch::redirect(self, slot, generation, mail, priority)
        {
            self.dead_letter(mail, CallError::NoSuchProcess);
        }
    }

    /// Queues `mail` to the process in `slot` if it is still incarnation `generation` (its
    /// reservation taken already); gives it back otherwise.
    pub(crate) fn push_if_alive(&self, slot: u32, generation: u32, mail: Mail, priority: Priority) -> Result<(), Mail> {
        let mut table = self.table.borrow_mut();
        let Some(e) = table.get_mut(slot as usize).filter(|e| e.generation == generation) else { return Err(mail) };
        e.mailbox.push(priority, mail);
        if priority == Priority::Urgent {
            bump(&self.attention);
        }
        self.queued_to(e, slot);
        Ok(())
    }

    fn dead_letter(&self, mail: Mail, error: CallError) {
        bump(&self.stats.dead_letters);
        if let Some(reply) = mail.reply {
            reply.respond(Err(error));
        }
    }

    /// Gives back one reservation of `slot`'s incarnation `generation`.
    pub(crate) fn release(&self, slot: u32, generation: u32) {
        if let Some(r) = self.remote().table.get(slot) {
            r.release(generation);
        }
    }

    /// A user message of the running process is finished. Its reservation is given back when
    /// the process's current poll returns (see `executor::poll_process`): one atomic operation
    /// per poll instead of one per message. Within a poll the process runs synchronously, so
    /// its slots are back whenever it parks, awaits or yields.
    #[inline]
    pub(crate) fn finish_mail(&self) {
        self.finished.set(self.finished.get() + 1);
    }

    /// The running process is about to be polled (`Some`) or was (`None`).
    #[inline]
    pub(crate) fn set_running(&self, running: Option<(u32, u32)>) {
        self.running.set(running);
    }

    /// A send to `slot` found its mailbox full: if that is the running process and it has
    /// finished messages not yet released, release them now (true: worth retrying). So a
    /// process sending to itself sees exactly its bound.
    #[cold]
    pub(crate) fn release_finished_early(&self, slot: u32, generation: u32) -> bool {
        if self.running.get() != Some((slot, generation)) || self.finished.get() == 0 {
            return false;
        }
        self.release_finished(slot, generation);
        true
    }

    /// Gives back the reservations of the messages the process in `slot` finished during the
    /// poll that just returned.
    #[inline]
    pub(crate) fn release_finished(&self, slot: u32, generation: u32) {
        let n = self.finished.replace(0);
        if n > 0 {
            self.count_released(n);
            if let Some(r) = self.remote().table.get(slot)
                && r.generation() == generation
            {
                r.finish_owned(generation, n);
            }
        }
    }

    /// The running process in `slot`, a retiring pool worker that found no mail, closes its
    /// slot if nothing but what it finished this poll is reserved (those reservations go back
    /// with the close, and their gate slots at the end of the poll, as `release_finished`
    /// does): true, it may end. False: a message is on its way to it, and it waits for it.
    pub(crate) fn close_retiring(&self, slot: u32, generation: u32) -> bool {
        let Some(r) = self.remote().table.get(slot) else { return true };
        let n = self.finished.get();
        if !r.close_if_only(generation, n) {
            return false;
        }
        self.finished.set(0);
        self.count_released(n);
        true
    }

    /// `n` finished messages of the running process were given back: counted as processed
    /// (here, once per poll, not per message: `info` adds the running process's finished
    /// messages not yet released), and their gate slots due at the end of the poll.
    fn count_released(&self, n: u32) {
        self.stats.processed.set(self.stats.processed.get() + u64::from(n));
        self.released.set(self.released.get() + n);
    }

    /// A reservation of the process in `slot` was given back without a message (an alias
    /// found deleted, credit unused): if it is a retiring worker waiting for what is on its
    /// way to it, it looks again (`close_retiring`); nothing else would wake it.
    pub(crate) fn recheck_retiring(&self, slot: u32) {
        let waiting = self.table.borrow().get(slot as usize).is_some_and(|e| e.retiring && e.awaiting_mail);
        if waiting {
            self.schedule(slot);
        }
    }

    /// Hands a reply to the call it answers; false (counted as late) if that call is over.
    pub(crate) fn deliver_reply(&self, slot: u32, generation: u32, reference: u64, result: CallResult) -> bool {
        let mut table = self.table.borrow_mut();
        let waiting = table
            .get_mut(slot as usize)
            .filter(|e| e.generation == generation)
            .and_then(|e| e.calls.iter_mut().find(|c| c.reference == reference && c.result.is_none()));
        match waiting {
            Some(call) => {
                call.result = Some(result);
                drop(table);
                self.schedule(slot);
                true
            }
            None => {
                drop(table);
                self.late_reply();
                false
            }
        }
    }

    pub(crate) fn late_reply(&self) {
        bump(&self.stats.late_replies);
        self.node.count_late_reply();
    }

    pub(crate) fn deliver_signal(self: &Rc<Self>, slot: u32, generation: u32, signal: Signal) {
        if let Signal::Exit { reason: ExitReason::Kill, via: Via::Explicit, .. } = signal {
            self.kill(slot, generation);
            return;
        }
        let mut table = self.table.borrow_mut();
        let Some(e) = table.get_mut(slot as usize).filter(|e| e.generation == generation) else {
            return;
        };
        if let Signal::Retire = signal {
            // Not queued: the process ends when it next finds no mail (`Context::next`).
            e.retiring = true;
            // Sends addressed to it directly are refused from now on (`send_full` finds no pool
            // behind its bound of 0): only what is already on its way still reaches it, so a
            // stream of them cannot put off its end.
            if let Some(r) = self.remote().table.get(slot) {
                r.set_pool(std::ptr::null());
            }
            if e.awaiting_mail {
                self.enqueue(e, slot);
            }
            return;
        }
        e.mailbox.system.push_back(signal);
        bump(&self.attention);
        if e.awaiting_mail {
            self.enqueue(e, slot);
        }
    }

    /// Ends a process at once, without `terminate`.
    pub(crate) fn kill(self: &Rc<Self>, slot: u32, generation: u32) {
        let future = {
            let mut table = self.table.borrow_mut();
            let Some(e) = table.get_mut(slot as usize).filter(|e| e.generation == generation) else {
                return;
            };
            match e.future.take() {
                Some(f) => f,
                None => {
                    // Being polled right now (it killed itself): the executor ends it after the poll.
                    e.killed = true;
                    return;
                }
            }
        };
        executor::drop_future(future);
        link::process_exited(self, slot, ExitReason::Kill);
    }

    pub(crate) fn register_name(&self, pid: Pid, name: &str) -> Result<(), RegisterError> {
        let mut table = self.table.borrow_mut();
        let Some(e) = table.get_mut(pid.slot as usize).filter(|e| e.generation == pid.generation) else {
            return Err(RegisterError::NoSuchProcess);
        };
        if let Some(old) = &e.name {
            return Err(RegisterError::AlreadyNamed(old.to_string()));
        }
        self.node.names.register(name, pid)?;
        e.name = Some(name.into());
        Ok(())
    }

    pub(crate) fn unregister_name(&self, pid: Pid) -> bool {
        let mut table = self.table.borrow_mut();
        let Some(e) = table.get_mut(pid.slot as usize).filter(|e| e.generation == pid.generation) else {
            return false;
        };
        match e.name.take() {
            Some(name) => self.node.names.unregister(&name, pid),
            None => false,
        }
    }

    /// [`unregister_name`](Self::unregister_name) if `pid` is still named `name`.
    pub(crate) fn unregister_name_if(&self, pid: Pid, name: &str) -> bool {
        let held = self
            .table
            .borrow()
            .get(pid.slot as usize)
            .filter(|e| e.generation == pid.generation)
            .is_some_and(|e| e.name.as_deref() == Some(name));
        held && self.unregister_name(pid)
    }

    pub(crate) fn create_alias(&self, pid: Pid) -> Alias {
        let id = self.next_ref();
        if let Some(e) = self.table.borrow_mut().get_mut(pid.slot as usize).filter(|e| e.generation == pid.generation) {
            e.relations_mut().aliased = true;
            if let Some(r) = self.remote().table.get(pid.slot) {
                r.add_alias(id);
            }
        }
        Alias { owner: pid, id }
    }

    pub(crate) fn delete_alias(&self, pid: Pid, id: u64) -> bool {
        let live = self.table.borrow().get(pid.slot as usize).is_some_and(|e| e.generation == pid.generation);
        live && self.remote().table.get(pid.slot).is_some_and(|r| r.remove_alias(id))
    }

    /// True if `id` is a live alias of the process in `slot`.
    pub(crate) fn has_alias(&self, slot: u32, generation: u32, id: u64) -> bool {
        self.remote().table.get(slot).is_some_and(|r| r.has_alias(generation, id))
    }
}

pub(crate) use reactor::{Reactor, Readiness};
