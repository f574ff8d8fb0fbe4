//! Worker pools with exact backpressure: `size` workers with mailboxes of `mailbox`, pinned to
//! chosen shards, addressed by one name or pid.
//! (What a user reads is on [`Pool`].)

pub(crate) mod cells;
pub(crate) mod dispatch;
pub(crate) mod gate;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::error::CallError;
use crate::node::NodeShared;
use crate::process::envelope::Responder;
use crate::process::{Actor, Context, ExitReason, Message, Pid, ProcessOptions, Reply, ShardId, SpawnResult};
use crate::shard::SpawnRequest;
use cells::{EMPTY, Segmented, ShardWorkers, WorkerCell, state};
use gate::Gate;

/// Where a pool's workers run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// Round robin over every shard of the node (worker `i` on shard `i mod shards`).
    #[default]
    Spread,
    /// Round robin over these shards, in this order. Pinning workers next to the connections
    /// they serve (the same shards as the web server) saves the cross-shard hop.
    Shards(Vec<ShardId>),
}

/// How to build a pool. `factory` makes one worker; it is called for every start and restart.
pub struct PoolOptions<F> {
    /// Workers. At least 1.
    pub size: usize,
    /// Messages queued per worker, besides the one it is handling. 0 means a worker holds only
    /// the message in progress.
    pub mailbox: usize,
    /// Makes a worker.
    pub factory: F,
    /// Where workers run.
    pub placement: Placement,
    /// Restarts allowed within `restart_period` before the pool gives up. Default 5. A worker
    /// that panicked while handling a message is replaced without counting (see the module
    /// docs).
    pub restart_intensity: u32,
    /// Default 5 s.
    pub restart_period: Duration,
}

impl<F> PoolOptions<F> {
    /// `size` workers from `factory`, each holding `mailbox` queued messages plus the one in
    /// progress, spread over all shards.
    pub fn new(size: usize, mailbox: usize, factory: F) -> Self {
        PoolOptions {
            size,
            mailbox,
            factory,
            placement: Placement::Spread,
            restart_intensity: 5,
            restart_period: Duration::from_secs(5),
        }
    }

    /// The same options placed on these shards.
    pub fn placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }
}

impl<F> fmt::Debug for PoolOptions<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolOptions")
            .field("size", &self.size)
            .field("mailbox", &self.mailbox)
            .field("placement", &self.placement)
            .field("restart_intensity", &self.restart_intensity)
            .field("restart_period", &self.restart_period)
            .finish_non_exhaustive()
    }
}

/// Why a pool operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// `size` is 0 (or a resize to 0).
    ZeroSize,
    /// `mailbox + 1` does not fit a mailbox bound, or `size × (mailbox + 1)` the pool's count
    /// (below 2^32).
    MailboxTooLarge(usize),
    /// The placement lists no shard (`Placement::Shards` of an empty list).
    NoShards,
    /// The placement names a shard the node does not have.
    NoSuchShard {
        /// The shard named.
        shard: ShardId,
        /// Shards of the node.
        shards: usize,
    },
    /// The pool is stopping or stopped.
    Stopping,
    /// The target is not a pool.
    NotAPool,
    /// A worker failed to start.
    WorkerStart(String),
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::ZeroSize => f.write_str("a pool needs at least one worker (size 0)"),
            PoolError::MailboxTooLarge(m) => write!(f, "pool mailbox {m} is too large"),
            PoolError::NoShards => f.write_str("pool placement lists no shard"),
            PoolError::NoSuchShard { shard, shards } => {
                write!(f, "pool placement names {shard}, but the node has {shards} shard(s)")
            }
            PoolError::Stopping => f.write_str("the pool is stopping"),
            PoolError::NotAPool => f.write_str("the target is not a pool"),
            PoolError::WorkerStart(e) => write!(f, "a pool worker failed to start: {e}"),
        }
    }
}

impl std::error::Error for PoolError {}

/// One worker of a pool, as reported by [`PoolRef::info`].
#[derive(Clone, Debug)]
pub struct WorkerInfo {
    /// Its current process (`None` while it is being replaced).
    pub pid: Option<Pid>,
    /// Its shard.
    pub shard: ShardId,
    /// Messages it holds: queued plus in progress.
    pub queued: u32,
    /// Messages its current process finished.
    pub processed: u64,
    /// Times it was replaced after ending.
    pub restarts: u64,
    /// Messages accepted for it that no worker could take when it ended without a replacement
    /// (answered at once: 503, or `MailboxFull`/`Stopped` to a caller; a plain message logged).
    pub shed: u64,
}

/// A snapshot of a pool.
#[derive(Clone, Debug)]
pub struct PoolInfo {
    /// Workers: running, starting, being replaced or retiring (not those gone for good).
    pub size: usize,
    /// Queue length per worker (besides the message in progress).
    pub mailbox: usize,
    /// Messages the pool can hold now: `size × (mailbox + 1)` when every worker is up.
    pub capacity: u32,
    /// Messages it holds (queued plus in progress).
    pub held: u32,
    /// Sends refused because the pool was full, and requests answered 503 before their
    /// upload because it was full when their client asked for `100 Continue`.
    pub shed: u64,
    /// Messages accepted and then shed: their worker ended without a replacement (it was
    /// retiring, or the pool or its shard stopped) and no other worker had room. The sum of
    /// [`WorkerInfo::shed`] over every worker there ever was, those gone included.
    pub shed_accepted: u64,
    /// Workers added by [`PoolRef::resize`] that failed to start (their factory panicked, the
    /// shard's process table was full, or the shard was stopping). Each left the pool's size,
    /// and its place goes to the next worker a resize adds, on the same shard; one that fails
    /// while the pool stops is counted only (a stopping pool keeps its cells and size as they
    /// are). (A running worker's replacement that
    /// fails is a restart, counted in [`WorkerInfo::restarts`] and the pool's intensity.)
    pub failed_starts: u64,
    /// The pool is stopping.
    pub stopping: bool,
    /// The live and retiring workers.
    pub workers: Vec<WorkerInfo>,
}

/// A worker of a pool: what the runtime needs to know about it.
#[derive(Clone)]
pub(crate) struct PoolMember {
    pub(crate) pool: Arc<PoolShared>,
    pub(crate) cell: usize,
}

pub(crate) type MakeWorker = dyn Fn(PoolMember, Responder<SpawnResult>) -> SpawnRequest + Send + Sync;

struct Control {
    /// Cells allocated so far.
    cells: usize,
    /// Cells free for a worker that `resize` adds on their shard: retired, out of their shard's
    /// list, their last worker ended (no process will start in them). Without them, every worker a resize
    /// ever added kept a cell, scanned by `info` and a stop, and the pool could not grow past
    /// ~16 M of them (review 65).
    free: Vec<usize>,
    /// Workers wanted (live or starting).
    size: usize,
    /// The shard cycle of the placement, and where the next worker goes in it.
    order: Vec<ShardId>,
    next: usize,
    /// Shards whose worker added by `resize` failed to start: the next workers added go there
    /// first (into the failed worker's cell), so that a failed start does not move the
    /// placement on (review 72: a pool spread over two shards ended with both on one).
    retry: Vec<ShardId>,
    restarts: VecDeque<Instant>,
}

/// The state of one pool shared by its manager, its workers and every sender.
pub(crate) struct PoolShared {
    pub(crate) gate: Gate,
    /// Cells freed on a worker's shard without the control lock (a worker added by `resize`
    /// and retired before it started, see `dispatch::retired_before_start`, or retired and
    /// ended: `free_cell`): moved to `Control::free` by the next `add_cell`. At most one entry
    /// a cell.
    freed: crossbeam_queue::SegQueue<usize>,
    stopping: AtomicBool,
    /// The manager's `init` finished (`start::STARTED`): from now on a worker that ends is
    /// replaced. Before, a worker that ends fails the pool's start instead (`start::FAILED`):
    /// one transition decides which, so a worker ending as `init` finishes gets one of the two.
    started: AtomicU8,
    /// Why a worker ended before the pool started.
    start_failure: OnceLock<String>,
    /// `mailbox + 1`.
    worker_capacity: u32,
    mailbox: usize,
    manager: OnceLock<Pid>,
    cells: Segmented<WorkerCell>,
    shards: Box<[CachePadded<ShardWorkers>]>,
    /// Where a sender outside the runtime starts its scan.
    external: AtomicUsize,
    shed: AtomicU64,
    shed_accepted: AtomicU64,
    /// Workers added by `resize` that failed to start.
    failed_starts: AtomicU64,
    intensity: u32,
    period: Duration,
    /// Makes a worker's spawn request (the user's factory inside); `None` once the pool
    /// stops. The pool itself stays with the node (see `NodeShared::pools`), but what the
    /// factory holds is the user's and goes when the pool stops: a pool started and stopped
    /// over and over kept every factory it ever had (review 65).
    make: Mutex<Option<Arc<MakeWorker>>>,
    control: Mutex<Control>,
}

impl fmt::Debug for PoolShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("manager", &self.manager.get()).field("mailbox", &self.mailbox).finish()
    }
}

impl PoolShared {
    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What makes a worker, unless the pool stops.
    pub(crate) fn maker(&self) -> Option<Arc<MakeWorker>> {
        self.make.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The pool stops: its factory goes (dropped here, outside the lock).
    pub(crate) fn drop_maker(&self) {
        let make = self.make.lock().unwrap_or_else(PoisonError::into_inner).take();
        drop(make);
    }

    pub(crate) fn cell(&self, i: usize) -> &WorkerCell {
        self.cells.get(i).expect("a pool cell index always names an allocated cell")
    }

    pub(crate) fn manager(&self) -> Option<Pid> {
        self.manager.get().copied()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Whether a message sent now would be refused (the pool stopping, or holding all it can):
    /// asked for a request whose client waits for `100 Continue`, so that a full pool answers
    /// 503 before the upload rather than after it. A full pool counts the refusal as shed.
    /// `reserved`: slots held taken ahead for the asking connection's requests (see
    /// `dispatch::credit_for`), room for this one (a review: a POST behind a GET on a pool
    /// holding two was refused for the slot taken ahead for it).
    #[cfg(feature = "web")]
    pub(crate) fn refuses_now(&self, reserved: u32) -> bool {
        if self.is_stopping() {
            return true;
        }
        let full = self.gate.held().saturating_sub(reserved) >= self.gate.capacity();
        if full {
            self.shed.fetch_add(1, Ordering::Relaxed);
        }
        full
    }

    pub(crate) fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst) == start::STARTED
    }

    /// A live worker ended for `reason`: true when the pool has started (replace it); else the
    /// pool's start fails (false).
    pub(crate) fn started_or_fail(&self, reason: &ExitReason) -> bool {
        let _ = self.start_failure.set(reason.to_string());
        match self.started.compare_exchange(start::STARTING, start::FAILED, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => false,
            Err(now) => now == start::STARTED,
        }
    }

    /// Control lock held: takes a free cell (or allocates one) on the next shard of the
    /// placement and lists it there.
    fn add_cell(&self, c: &mut Control) -> Option<(usize, ShardId)> {
        // A shard whose added worker failed to start first, else the next of the cycle.
        let retried = c.retry.pop();
        let shard = retried.unwrap_or(c.order[c.next % c.order.len()]);
        // A free cell of that same shard: a sender that read a cell from the shard's list
        // before its worker retired may read its pid still, and looks the pid up in that
        // shard's table (as it may for a worker replaced after a crash, in the same cell).
        while let Some(i) = self.freed.pop() {
            debug_assert!(!c.free.contains(&i), "a cell freed twice");
            c.free.push(i);
        }
        let reused = c.free.iter().rposition(|&i| self.cell(i).shard() == u32::from(shard.0));
        let (index, fresh) = match reused {
            Some(at) => (c.free.swap_remove(at), false),
            None => (c.cells, true),
        };
        let cell = self.cells.get_or_alloc(index)?;
        if !fresh {
            // A new worker's counts.
            cell.restarts.store(0, Ordering::Relaxed);
            cell.shed.store(0, Ordering::Relaxed);
        }
        if !self.shards[shard.index()].add(cell, u32::from(shard.0)) {
            if !fresh {
                c.free.push(index);
            }
            c.retry.extend(retried);
            return None;
        }
        if fresh {
            c.cells += 1;
        }
        if retried.is_none() {
            c.next += 1;
        }
        c.size += 1;
        Some((index, shard))
    }

    /// Control lock held: the worker added by `resize` in cell `i` failed to start, and none
    /// will start in it (the cell is GONE). It leaves the pool's size if it still counted
    /// there (`counted`: not retired meanwhile), and its shard's list; the cell is free for the
    /// next worker added, which goes to the same shard. Before review 72 the cell stayed in
    /// the list, dead for good, and the next worker went to the next shard of the cycle.
    fn worker_start_failed(&self, c: &mut Control, i: usize, counted: bool) {
        self.failed_starts.fetch_add(1, Ordering::Relaxed);
        if self.is_stopping() {
            // A stopping pool keeps its cells as they are.
            return;
        }
        let cell = self.cell(i);
        let shard = ShardId(cell.shard() as u16);
        if counted {
            c.size -= 1;
            // (Retired meanwhile, it is out of the list already: a resize popped it.)
            self.shards[shard.index()].remove(cell);
            c.retry.push(shard);
        }
        debug_assert!(!c.free.contains(&i), "a cell freed twice");
        c.free.push(i);
    }

    /// The last worker of cell `i`, retired by a resize (the cell is out of its shard's
    /// list), ended: the cell is free for the next worker a resize adds. Through `freed`, not
    /// the control lock: a thread calling `resize` in a loop holds that lock nearly all the
    /// time (a `Mutex` is not fair), and the worker's shard waited on it here while its other
    /// processes waited on the shard (review 76 saw the flood test's ticker starve once).
    pub(crate) fn free_cell(&self, i: usize) {
        self.freed.push(i);
    }

    /// Counts a restart; false when the intensity is exceeded.
    fn note_restart(&self) -> bool {
        let mut c = self.control();
        let now = Instant::now();
        c.restarts.push_back(now);
        while c.restarts.front().is_some_and(|t| now.duration_since(*t) > self.period) {
            c.restarts.pop_front();
        }
        c.restarts.len() <= self.intensity as usize
    }

    /// Workers whose process is running.
    fn live_workers(&self) -> usize {
        let cells = self.control().cells;
        (0..cells).filter(|i| self.cell(*i).pid.load(Ordering::SeqCst) != EMPTY).count()
    }

    fn info(&self, node: &NodeShared) -> PoolInfo {
        let c = self.control();
        let mut workers = Vec::new();
        for i in 0..c.cells {
            let cell = self.cell(i);
            let st = cell.state.load(Ordering::Acquire);
            if st == state::GONE {
                continue;
            }
            let shard = ShardId(cell.shard() as u16);
            let packed = cell.pid.load(Ordering::Acquire);
            let pid = (packed != EMPTY).then(|| {
                let (slot, generation) = cells::unpack(packed);
                Pid { node: node.id, shard, slot, generation }
            });
            let reservation = pid.and_then(|p| node.shards.get(p.shard.index())?.table.get(p.slot));
            workers.push(WorkerInfo {
                pid,
                shard,
                queued: reservation.map_or(0, |r| r.reserved()),
                processed: reservation.map_or(0, |r| r.processed()),
                restarts: cell.restarts.load(Ordering::Relaxed),
                shed: cell.shed.load(Ordering::Relaxed),
            });
        }
        PoolInfo {
            size: workers.len(),
            mailbox: self.mailbox,
            capacity: self.gate.capacity(),
            held: self.gate.held(),
            shed: self.shed.load(Ordering::Relaxed),
            shed_accepted: self.shed_accepted.load(Ordering::Relaxed),
            failed_starts: self.failed_starts.load(Ordering::Relaxed),
            stopping: self.is_stopping(),
            workers,
        }
    }
}

/// `size` workers of `worker_capacity` slots fit the gate's 32-bit count.
fn fits(size: usize, worker_capacity: u32) -> bool {
    (size as u64).checked_mul(u64::from(worker_capacity)).is_some_and(|n| n <= u64::from(u32::MAX))
}

/// Values of `PoolShared::started`.
mod start {
    pub(super) const STARTING: u8 = 0;
    pub(super) const STARTED: u8 = 1;
    pub(super) const FAILED: u8 = 2;
}

/// How long a stopping pool's manager waits for its workers to end.
pub(crate) const STOP_WAIT: Duration = Duration::from_secs(10);

/// A handle on a running pool: inspect it, resize it. Get one with
/// [`NodeHandle::pool`](crate::NodeHandle::pool) or [`Context::pool`].
#[derive(Clone)]
pub struct PoolRef {
    node: Arc<NodeShared>,
    pool: Arc<PoolShared>,
}

impl fmt::Debug for PoolRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolRef").field("pool", &self.pool).finish()
    }
}

impl PoolRef {
    pub(crate) fn find(node: &Arc<NodeShared>, pid: Option<Pid>) -> Result<PoolRef, PoolError> {
        let pid = pid.ok_or(PoolError::NotAPool)?;
        let reservation = node
            .shards
            .get(pid.shard.index())
            .and_then(|s| s.table.get(pid.slot))
            .filter(|_| pid.node == node.id)
            .ok_or(PoolError::NotAPool)?;
        let pool = dispatch::of(reservation, pid).ok_or(PoolError::NotAPool)?;
        let pool = node.pool_arc(pool).ok_or(PoolError::NotAPool)?;
        Ok(PoolRef { node: node.clone(), pool })
    }

    /// The pool's manager (the pid that `send` and `call` address).
    pub fn pid(&self) -> Option<Pid> {
        self.pool.manager()
    }

    /// A snapshot of the pool and each worker.
    pub fn info(&self) -> PoolInfo {
        self.pool.info(&self.node)
    }

    /// Grows or shrinks the pool to `size` workers. New workers are placed like the first ones
    /// and take messages as soon as they started; removed workers (the newest first) take no
    /// new messages, finish what they hold, and end. Returns without waiting for either.
    ///
    /// A worker added that fails to start (its factory panics) leaves the pool's size: called
    /// on the worker's shard, `resize` answers [`PoolError::WorkerStart`]; from elsewhere the
    /// failure comes later, logged and counted in [`PoolInfo::failed_starts`]. Its place is
    /// not lost (review 72): the next worker a resize adds takes it, on the same shard.
    pub fn resize(&self, size: usize) -> Result<(), PoolError> {
        if size == 0 {
            return Err(PoolError::ZeroSize);
        }
        if !fits(size, self.pool.worker_capacity) {
            return Err(PoolError::MailboxTooLarge(self.pool.mailbox));
        }
        dispatch::resize(&self.node, &self.pool, size)
    }
}

/// A worker pool. Spawn it like any process — usually registered, so that a
/// [`WebHandler`](crate::web::WebHandler) or any sender can address it by name:
///
/// ```no_run
/// # use pinion::{Actor, Context, ExitReason, Message, Node, NodeOptions, Pid, ProcessOptions, Reply};
/// # use pinion::{Pool, PoolOptions};
/// # #[derive(Default)] struct MyWorker;
/// # impl Actor for MyWorker {
/// #     async fn handle_message(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> { Ok(()) }
/// #     async fn handle_call(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> { Ok(Reply::now(())) }
/// # }
/// let node = Node::start("app", NodeOptions::default()).unwrap();
/// let pool = node.handle().spawn_register(
///     "web-worker",
///     || Pool::new(PoolOptions::new(20, 10, MyWorker::default)), // 20 × 10 queued + 20 in progress
///     ProcessOptions::default(),
/// ).wait().unwrap();
/// ```
///
/// The pid it gets is the pool's: a `send` or `call` to it (or to its name) goes straight to a
/// worker with room, chosen by the sender. The manager itself only starts the workers and stops
/// them when it ends; it takes no messages of its own.
///
/// # How a message reaches a worker
/// The pool has a pid (its manager process) and usually a name. A `send` or `call` to either
/// does not go through the manager: the sender itself — on any shard or thread — takes a slot
/// of the pool's gate (its count of what it holds), then reserves a slot of a worker with
/// room, its own shard's workers first (an idle one first), then the other shards'. The
/// message goes straight into that worker's mailbox. No actor hop, no lock.
///
/// Among a shard's workers the sender takes an idle one (nothing queued, nothing in hand) if
/// there is one, else the least loaded with room, round robin among equals: a message does
/// not queue behind a long one while a worker of the same shard idles. It looks at up to four
/// workers from a cursor that moves on at each placement (with more than four on a shard, an
/// idle one among those four); with one worker a shard there is nothing to choose and nothing
/// is looked at. Each look is a few dozen instructions (measured in `PERF.md`). Across shards it
/// is still the sender's own first: with every worker of its shard busy, a message queues
/// there while a worker on another shard may idle (a hop per message would cost more than the
/// wait at most loads). Where one slow request must not hold up others, keep mailboxes short
/// (`mailbox` 0 or 1: a busy worker then has no room, and the next one, or another shard's,
/// is taken).
///
/// # Exact backpressure
/// Each worker owns `mailbox + 1` slots: its queue plus the message it is handling. Slots are
/// released when the worker *finishes* a message (not when it takes it from the queue), so the
/// number accepted does not depend on how fast workers were scheduled: the pool holds at most
/// `size × (mailbox + 1)` messages, and a sender is refused (`SendError::MailboxFull`, over HTTP
/// 503 with `Retry-After`) exactly when the gate is at that count. (The pool keeps that count in
/// a word of its own besides the workers': see `src/pool/gate.rs`.)
///
/// # Failures
/// A worker that ends (a panic, an error, a normal return, a kill) is replaced on the same
/// shard, in the same cell, and the replacement inherits what its predecessor held: its queue,
/// in order, and a slot for each message that was on its way to it (sent from another thread
/// before the end, arriving after). Those messages keep the pool slots they took when they were
/// accepted, so no sender can take their room meanwhile, the pool's count stays exact, and a
/// crash loses nothing accepted but the message in hand (a web request is answered 500 by the
/// runtime, a call `NoReply`). Only a worker that is not replaced (it was retiring, or the pool
/// or its shard stops) hands its messages to the other workers with room; what finds none is
/// answered at once (a web request 503, a call `MailboxFull` or `Stopped` with its request
/// handed back, for a caller that keeps its future: `CallFuture::request_back`,
/// `CallReply::request_back`; a plain message is
/// counted in [`WorkerInfo::shed`] and [`PoolInfo::shed_accepted`], and logged). Restarts are
/// bounded by an intensity (default 5 in 5 s, as the supervisor's): past it the pool gives up,
/// its manager ends with a reason saying so, and the workers are stopped. A worker that
/// panicked with a message in hand is replaced without counting: that failure is the
/// message's (over HTTP its 500), another needs another message, and counted, a handful of bad
/// requests would stop the pool for every client. The bound is for the ends a worker comes to
/// on its own — failing its start, panicking outside a message, choosing to exit, being killed.
///
/// # Resize
/// [`PoolRef::resize`] adds workers (placed like the first ones) or retires the newest ones: a
/// retiring worker takes no new messages (a send addressed to its pid is refused with
/// `MailboxFull`, the message handed back), finishes its queue and the messages already on
/// their way to it, and ends. Nothing queued is lost.
pub struct Pool {
    size: usize,
    mailbox: usize,
    placement: Placement,
    intensity: u32,
    period: Duration,
    make: Option<Box<MakeWorker>>,
    shared: Option<Arc<PoolShared>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool").field("size", &self.size).field("mailbox", &self.mailbox).finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool with these options; the workers start when the pool's process does.
    pub fn new<A, F>(options: PoolOptions<F>) -> Pool
    where
        A: Actor,
        F: Fn() -> A + Send + Sync + 'static,
    {
        let factory = Arc::new(options.factory);
        let worker_mailbox = options.mailbox.saturating_add(1);
        let make = move |member: PoolMember, reply: Responder<SpawnResult>| {
            let factory = factory.clone();
            SpawnRequest::new(move || factory(), ProcessOptions::with_mailbox(worker_mailbox), None, reply)
                .member(member)
        };
        Pool {
            size: options.size,
            mailbox: options.mailbox,
            placement: options.placement,
            intensity: options.restart_intensity,
            period: options.restart_period,
            make: Some(Box::new(make)),
            shared: None,
        }
    }

    fn build(&mut self, shards: usize) -> Result<Arc<PoolShared>, PoolError> {
        if self.size == 0 {
            return Err(PoolError::ZeroSize);
        }
        let worker_capacity = ProcessOptions::with_mailbox(self.mailbox.saturating_add(1))
            .capacity()
            .map_err(|_| PoolError::MailboxTooLarge(self.mailbox))?;
        if !fits(self.size, worker_capacity) {
            return Err(PoolError::MailboxTooLarge(self.mailbox));
        }
        let order = match &self.placement {
            Placement::Spread => (0..shards).map(|s| ShardId(s as u16)).collect(),
            Placement::Shards(list) => list.clone(),
        };
        if order.is_empty() {
            // (It said "names shard 0" for a list naming none: a trial.)
            return Err(PoolError::NoShards);
        }
        if let Some(bad) = order.iter().find(|s| s.index() >= shards) {
            return Err(PoolError::NoSuchShard { shard: *bad, shards });
        }
        let make = self.make.take().ok_or(PoolError::Stopping)?;
        Ok(Arc::new(PoolShared {
            gate: Gate::new(),
            freed: crossbeam_queue::SegQueue::new(),
            stopping: AtomicBool::new(false),
            started: AtomicU8::new(start::STARTING),
            start_failure: OnceLock::new(),
            worker_capacity,
            mailbox: self.mailbox,
            manager: OnceLock::new(),
            cells: Segmented::new(),
            shards: (0..shards).map(|_| ShardWorkers::new()).collect(),
            external: AtomicUsize::new(0),
            shed: AtomicU64::new(0),
            shed_accepted: AtomicU64::new(0),
            failed_starts: AtomicU64::new(0),
            intensity: self.intensity,
            period: self.period,
            make: Mutex::new(Some(Arc::from(make))),
            control: Mutex::new(Control {
                cells: 0,
                free: Vec::new(),
                size: 0,
                order,
                next: 0,
                retry: Vec::new(),
                restarts: VecDeque::new(),
            }),
        }))
    }
}

impl Actor for Pool {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        let shared = self.build(ctx.shards()).map_err(|e| ExitReason::custom(format!("pool: {e}")))?;
        self.shared = Some(shared.clone());
        dispatch::attach(ctx, &shared);
        for i in 0..self.size {
            let Some((cell, shard)) = shared.add_cell(&mut shared.control()) else {
                dispatch::stop(ctx, &shared);
                return Err(ExitReason::custom("pool: too many workers"));
            };
            let member = PoolMember { pool: shared.clone(), cell };
            let Some(make) = shared.maker() else {
                return Err(ExitReason::custom("pool: stopped while starting"));
            };
            if let Err(e) = ctx.spawn_request(shard, |reply| make(member, reply)).await {
                dispatch::stop(ctx, &shared);
                return Err(ExitReason::custom(format!("pool: worker {i} failed to start: {e}")));
            }
        }
        if shared.started.compare_exchange(start::STARTING, start::STARTED, Ordering::SeqCst, Ordering::SeqCst).is_err()
        {
            dispatch::stop(ctx, &shared);
            let why = shared.start_failure.get().map_or("", String::as_str);
            return Err(ExitReason::custom(format!("pool: a worker ended before the pool started: {why}")));
        }
        Ok(())
    }

    async fn handle_message(&mut self, ctx: &mut Context, from: Pid, msg: Message) -> Result<(), ExitReason> {
        // Only what was sent in the moment between the spawn and `init`: pass it on.
        if let Some(shared) = &self.shared
            && let Err(e) = dispatch::forward(ctx, shared, from, msg, None)
        {
            ctx.log(log::Level::Debug, format_args!("pool: a message sent before it started was refused: {e}"));
        }
        Ok(())
    }

    async fn handle_call(&mut self, ctx: &mut Context, from: Pid, msg: Message) -> Result<Reply, ExitReason> {
        match (&self.shared, ctx.defer_reply()) {
            (Some(shared), Some(token)) => {
                let _ = dispatch::forward(ctx, shared, from, msg, Some(token.into_responder()));
            }
            (_, Some(token)) => {
                // Its caller was told the call was taken: the request goes back with the answer.
                token.into_responder().respond(crate::process::envelope::returned(CallError::MailboxFull, msg));
            }
            _ => {}
        }
        Ok(Reply::Later)
    }

    /// Stops the workers and waits (at most 10 s) until they ended: each finishes the
    /// message in progress; what was queued is answered (`Stopped`, a web request 503).
    /// Meanwhile sends to the pool are refused with `SendError::Stopped`.
    async fn terminate(&mut self, ctx: &mut Context, _reason: &ExitReason) {
        let Some(shared) = self.shared.clone() else { return };
        dispatch::stop(ctx, &shared);
        let started = std::time::Instant::now();
        while shared.live_workers() > 0 && started.elapsed() < STOP_WAIT {
            ctx.sleep(Duration::from_millis(1)).await;
        }
    }
}
