//! The node: a set of shards, one per selected core, started together and stopped together.
//!
//! [`Node::start`] resolves the core layout ([`NodeOptions`], overridden by the environment:
//! `PINION_CORES=0,2` or `all`, `PINION_PIN=0|1|require`), starts one pinned thread per shard, and
//! returns the owning [`Node`]. [`NodeHandle`] (`Send + Sync + Clone`) reaches the node from any
//! thread.

mod handle;
pub(crate) mod registry;
pub(crate) mod route;

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

pub use handle::{CallFuture, NodeHandle, SpawnFuture};
pub use registry::MAX_NAME_BYTES;

use crate::error::StartError;
use crate::process::envelope::Envelope;
use crate::process::table::SharedTable;
use crate::process::{NodeId, Pid, ShardId};
use crate::shard::{self, Inbox, Reactor};

/// The most shards a node can have.
pub const MAX_SHARDS: usize = 4096;

/// Which cores a node runs shards on.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Cores {
    /// One shard per core this thread may run on (its affinity mask).
    #[default]
    All,
    /// The first `n` of those cores (with pinning off, any `n` up to `MAX_SHARDS`).
    Count(usize),
    /// Exactly these core ids, one shard each, in this order. Each must be one this thread
    /// may run on; with pinning off the list still says how many shards (and is checked the
    /// same way, so a list that works unpinned works pinned).
    List(Vec<usize>),
}

/// How to start a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// Where shards run. Env `PINION_CORES` (`all`, or a CPU list: `0,2`, `0-3`) overrides it.
    pub cores: Cores,
    /// Pin each shard thread to its core. Env `PINION_PIN` (`1`, `true`, `yes`, `on` / `0`,
    /// `false`, `no`, `off`, in any case; `require` also sets [`require_pin`](Self::require_pin))
    /// overrides it. A thread a process spawns inherits its shard's
    /// pinning (one core): spawn blocking work's threads from outside the shards, or unpin
    /// them yourself. A shard whose thread the OS refuses to pin (a seccomp or cpuset policy)
    /// runs unpinned: a warning is logged and its `ShardInfo::core` is `None` (unless
    /// [`require_pin`](Self::require_pin): the start fails then).
    pub pin: bool,
    /// With [`pin`](Self::pin), fail the start ([`StartError::PinFailed`]) when a shard cannot
    /// be pinned, instead of running it unpinned: for a host tuned so that each shard owns its
    /// core, where an unpinned shard would share one silently. Env `PINION_PIN=require` sets
    /// this and `pin`; `PINION_PIN=0` (or `false`, `no`, `off`) clears both.
    pub require_pin: bool,
    /// How long `stop` lets processes run `terminate` before killing the rest: how long
    /// `Node::stop` (or dropping the node) may take when a process is busy in an `await`
    /// then, or a client is slow to take the last answers — the host's stop latency; calls
    /// still in flight get `NoReply` after it.
    pub shutdown_timeout: Duration,
    /// How long an idle shard watches its inbox before it sleeps in `poll` (default 50 µs).
    /// Spinning trades idle CPU for latency: a sleeping shard costs its sender a wake-up
    /// syscall and tens of microseconds before it runs. Zero sleeps at once.
    pub spin: Duration,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            cores: Cores::All,
            pin: true,
            require_pin: false,
            shutdown_timeout: Duration::from_secs(10),
            spin: Duration::from_micros(50),
        }
    }
}

impl NodeOptions {
    /// Options for `n` pinned shards.
    pub fn shards(n: usize) -> Self {
        NodeOptions { cores: Cores::Count(n), ..Default::default() }
    }

    /// Applies `PINION_CORES` and `PINION_PIN`.
    fn with_env(mut self) -> Result<(Self, Option<String>), StartError> {
        let cores_env = env_var("PINION_CORES")?;
        if let Some(value) = &cores_env {
            self.cores = parse_cores(value)
                .ok_or_else(|| StartError::InvalidEnv { var: "PINION_CORES", value: value.clone() })?;
        }
        if let Some(value) = env_var("PINION_PIN")? {
            // Any case, as `PINION_CORES=ALL` is taken (review 59: `TRUE` was refused).
            match value.trim().to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => self.pin = true,
                "require" => (self.pin, self.require_pin) = (true, true),
                "0" | "false" | "no" | "off" => (self.pin, self.require_pin) = (false, false),
                _ => return Err(StartError::InvalidEnv { var: "PINION_PIN", value }),
            }
        }
        Ok((self, cores_env))
    }
}

/// The value of `var`, `None` when unset; one that is not UTF-8 is refused (a review: it was
/// taken for unset, and the node started on the code's layout).
fn env_var(var: &'static str) -> Result<Option<String>, StartError> {
    match std::env::var(var) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(value)) => {
            Err(StartError::InvalidEnv { var, value: value.to_string_lossy().into_owned() })
        }
    }
}

/// A shard thread's name as the OS shows it: `pinion-{node}-{i}`, the node's name cut so that
/// the whole fits the 15 bytes Linux keeps of a thread's name (`top`, `ps`, `perf`), the
/// shard's index always in it (a trial: `pinion-checkout-0` and `-1` both showed as
/// `pinion-checkout`). The thread's own name (`std::thread::current().name()`) stays whole.
fn os_thread_name(node: &str, i: usize) -> String {
    const OS_NAME: usize = 15;
    let suffix = format!("-{i}");
    let mut head = format!("pinion-{node}");
    let room = OS_NAME.saturating_sub(suffix.len()).max("pinion".len());
    if head.len() > room {
        let mut cut = room;
        while !head.is_char_boundary(cut) {
            cut -= 1;
        }
        head.truncate(cut);
        // (Not `pinion-r41-a--0`: a review.)
        while head.len() > "pinion".len() && head.ends_with('-') {
            head.pop();
        }
    }
    head + &suffix
}

/// `all`, or a CPU list as `taskset -c` and cgroups write them: `0,2`, `0-3`, `0,4-7`.
fn parse_cores(value: &str) -> Option<Cores> {
    let value = value.trim();
    if value.eq_ignore_ascii_case("all") {
        return Some(Cores::All);
    }
    // Digits only (`usize::from_str` takes a leading `+`).
    let core = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<usize>().ok()).flatten()
    };
    let mut list = Vec::new();
    for item in value.split(',').map(str::trim) {
        let (first, last) = match item.split_once('-') {
            Some((a, b)) => (core(a)?, core(b)?),
            None => (core(item)?, core(item)?),
        };
        if first > last || last - first >= MAX_SHARDS {
            return None;
        }
        list.extend(first..=last);
    }
    (!list.is_empty()).then_some(Cores::List(list))
}

/// The cores this thread may run on.
fn available_cores() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    if ids.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        ids = (0..n).collect();
    }
    ids
}

/// One entry per shard: the core it runs on (`None` when unpinned).
fn layout(options: &NodeOptions) -> Result<Vec<Option<usize>>, StartError> {
    let available = available_cores();
    let cores: Vec<usize> = match &options.cores {
        Cores::All => available.clone(),
        Cores::Count(0) => return Err(StartError::InvalidOptions("Cores::Count(0): a node needs a shard".into())),
        Cores::Count(n) if *n > MAX_SHARDS => {
            return Err(StartError::InvalidOptions(format!("{n} shards: at most {MAX_SHARDS}")));
        }
        Cores::Count(n) if *n > available.len() && options.pin => {
            return Err(StartError::InvalidOptions(format!(
                "{n} pinned shards but only {} available ({available:?}); turn pinning off to oversubscribe \
                 (`NodeOptions::pin = false`, or PINION_PIN=0 in the environment)",
                match available.len() {
                    1 => "1 core is".to_owned(),
                    k => format!("{k} cores are"),
                }
            )));
        }
        Cores::Count(n) => (0..*n).map(|i| available[i % available.len()]).collect(),
        Cores::List(list) => {
            if list.is_empty() {
                return Err(StartError::InvalidOptions("Cores::List is empty".into()));
            }
            for (i, core) in list.iter().enumerate() {
                if !available.contains(core) {
                    return Err(StartError::NoSuchCore { core: *core, available: available.clone(), env: None });
                }
                if list[..i].contains(core) {
                    return Err(StartError::InvalidOptions(format!("core {core} is listed twice")));
                }
            }
            list.clone()
        }
    };
    Ok(cores.into_iter().map(|c| options.pin.then_some(c)).collect())
}

/// The cross-thread half of a shard: its inbox, the waker of its poller, its reservations.
pub(crate) struct ShardRemote {
    pub(crate) inbox: Inbox<Envelope>,
    /// Set (SeqCst) by the shard before its last drain: a producer that pushes and then sees
    /// it drops what is queued itself, so every envelope is dropped — and dropping one answers
    /// whoever waits on it (`Stopped`, `NoReply`).
    pub(crate) closed: AtomicBool,
    pub(crate) waker: mio::Waker,
    pub(crate) table: SharedTable,
    /// The core the shard's thread is pinned to: set by the thread once its pinning succeeded,
    /// before `Node::start` returns; unset when pinning is off or failed (a review: a failed
    /// pin still reported its core).
    pub(crate) core: OnceLock<usize>,
    /// The id of the web connection open under each of the shard's io tokens (0: none), for a
    /// worker on any shard to tell whether the client of a request it holds is gone
    /// (`WebRequest::is_client_gone`). Written by the shard when it opens and closes one.
    #[cfg(feature = "web")]
    pub(crate) connections: crate::web::OpenConnections,
}

/// What every shard and handle of a node shares.
pub(crate) struct NodeShared {
    pub(crate) id: NodeId,
    /// `Pid::external(id)`, the sender of what comes from outside any process (a `NodeHandle`,
    /// a web handler), kept whole: a `Pid` built field by field and then copied into an
    /// envelope as one 16-byte load waits for the smaller stores it spans (store-to-load
    /// forwarding fails), on every request a `WebHandler` forwards.
    pub(crate) external: Pid,
    pub(crate) name: String,
    pub(crate) shards: Box<[Arc<ShardRemote>]>,
    pub(crate) names: registry::Names,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) spin: Duration,
    stopping: AtomicBool,
    /// Shards whose processes have not all ended since the stop began: a shard whose have
    /// serves its connections on until none is left (see `processes_ended`).
    stop_pending: ShardCountdown,
    /// Shards that have not yet delivered, since every shard's processes ended, what their
    /// inboxes held then (see `drained`).
    drain_pending: ShardCountdown,
    stopped: Mutex<bool>,
    stopped_cv: Condvar,
    late_replies: AtomicU64,
    next_spawn: AtomicUsize,
    /// Every pool started on this node, kept alive until the node is dropped: senders reach a
    /// pool through a raw pointer in its manager's slot (`pool::dispatch::of`).
    pools: Mutex<Vec<Arc<crate::pool::PoolShared>>>,
}

impl std::fmt::Debug for NodeShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("name", &self.name).field("shards", &self.shards.len()).finish()
    }
}

impl NodeShared {
    /// Keeps `pool` alive as long as the node.
    pub(crate) fn keep_pool(&self, pool: Arc<crate::pool::PoolShared>) {
        self.pools.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(pool);
    }

    /// The kept `Arc` of `pool`.
    pub(crate) fn pool_arc(&self, pool: &crate::pool::PoolShared) -> Option<Arc<crate::pool::PoolShared>> {
        let pools = self.pools.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        pools.iter().find(|p| std::ptr::eq(Arc::as_ptr(p), pool)).cloned()
    }

    /// Pushes an envelope into `shard`'s inbox lane, waking the shard if it sleeps.
    pub(crate) fn push(&self, shard: ShardId, lane: usize, env: Envelope) {
        let remote = &self.shards[shard.index()];
        if remote.inbox.push(lane, env)
            && let Err(e) = remote.waker.wake()
        {
            log::error!(target: "pinion", "{}: waking {shard} failed: {e}", self.name);
        }
        // `push` ended with a SeqCst fence: either the shard's last drain sees our envelope,
        // or we see `closed` here.
        if remote.closed.load(Ordering::SeqCst) {
            remote.inbox.drain(drop);
        }
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn count_late_reply(&self) {
        self.late_replies.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn late_replies(&self) -> u64 {
        self.late_replies.load(Ordering::Relaxed)
    }

    pub(crate) fn spawn_shard(&self) -> ShardId {
        ShardId((self.next_spawn.fetch_add(1, Ordering::Relaxed) % self.shards.len()) as u16)
    }

    /// Asks every shard to stop (idempotent).
    pub(crate) fn request_stop(&self) {
        if self.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        self.tell_every_shard_to_stop(self.shards.len());
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        *stopped = true;
        self.stopped_cv.notify_all();
    }

    /// Shard `shard`'s processes have all ended in a stop, or they cannot: its thread ends,
    /// unwinds, never started, or is blocked joining the node from one of its processes
    /// (counted once, however often said). The last one wakes every shard: each may end now
    /// ([`all_processes_ended`](Self::all_processes_ended)).
    pub(crate) fn processes_ended(&self, shard: usize) {
        if self.stop_pending.count_off(shard) {
            // (A stop again: a shard that began stopping ignores it; the push wakes it.)
            self.tell_every_shard_to_stop(shard);
        }
    }

    /// Pushes a stop to every shard through inbox lane `lane`.
    fn tell_every_shard_to_stop(&self, lane: usize) {
        for i in 0..self.shards.len() {
            let env = Envelope {
                slot: 0,
                generation: 0,
                kind: crate::process::envelope::Kind::Control(shard::ControlRequest::Stop),
            };
            self.push(ShardId(i as u16), lane, env);
        }
    }

    /// Every shard's processes have ended: a stopping shard may close its connections (a
    /// process on another shard can no longer finish a stream on one).
    pub(crate) fn all_processes_ended(&self) -> bool {
        self.stop_pending.done()
    }

    /// Shard `shard`, every shard's processes having ended, delivered what its inbox held
    /// then — and pushed what that made it answer (the 500 of a request that reached a
    /// worker already gone, for a connection of another shard) — or it cannot: its thread
    /// ended, or is held joining the node (counted once). The last one wakes every shard.
    pub(crate) fn drained(&self, shard: usize) {
        if self.drain_pending.count_off(shard) {
            self.tell_every_shard_to_stop(shard);
        }
    }

    /// Every shard has [`drained`](Self::drained): what is in an inbox now is the last that
    /// comes (answers to what the drains delivered); one more turn delivers it.
    pub(crate) fn all_drained(&self) -> bool {
        self.drain_pending.done()
    }

    /// Shard `shard` takes no part in the stop any more (its thread ended, never started, or
    /// is held joining the node): the others wait for it in nothing.
    pub(crate) fn shard_gone(&self, shard: usize) {
        self.processes_ended(shard);
        self.drained(shard);
    }

    fn wait_stop_requested(&self) {
        let mut stopped = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        while !*stopped {
            stopped = self.stopped_cv.wait(stopped).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Shards still to say something in a stop, each counted off once however often it says it.
struct ShardCountdown {
    pending: AtomicUsize,
    counted: Box<[AtomicBool]>,
}

impl ShardCountdown {
    fn new(shards: usize) -> Self {
        ShardCountdown {
            pending: AtomicUsize::new(shards),
            counted: (0..shards).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Counts `shard` off (once); true for the last one.
    fn count_off(&self, shard: usize) -> bool {
        !self.counted[shard].swap(true, Ordering::AcqRel) && self.pending.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Every shard is counted off.
    fn done(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }
}

/// The id a start took: given back if the start fails (dropped after the node it made, whose
/// shards are joined then; no pid of it was handed out).
struct StartId {
    id: NodeId,
    started: bool,
}

impl Drop for StartId {
    fn drop(&mut self) {
        if !self.started {
            registry::give_back_node_id(self.id);
        }
    }
}

/// A running node. Dropping it stops it (gracefully, as [`Node::stop`]).
///
/// It dereferences to its [`NodeHandle`], so `node.send(..)`, `node.spawn(..)` work directly.
#[derive(Debug)]
pub struct Node {
    handle: NodeHandle,
    threads: Vec<JoinHandle<()>>,
}

impl Node {
    /// Starts a node named `name` with one shard per selected core. The name is unique among
    /// the live nodes of the OS process (`StartError::NameTaken`: tests running in parallel
    /// need names of their own); it is free again once the node stopped. A [`NodeHandle`]
    /// kept after the node stopped (a `WebServer` keeps one) holds the node's shared state,
    /// a few descriptors among it, until it is dropped.
    pub fn start(name: &str, options: NodeOptions) -> Result<Node, StartError> {
        let (options, cores_env) = options.with_env()?;
        // A layout refused for cores the environment chose says so (a trial: "core 0 is
        // listed twice" did not tell the operator whether the code or PINION_CORES was wrong).
        let layout = layout(&options).map_err(|e| match (e, cores_env) {
            (StartError::InvalidOptions(m), Some(v)) => StartError::InvalidOptions(format!("{m} (PINION_CORES={v:?})")),
            (StartError::NoSuchCore { core, available, .. }, Some(v)) => {
                StartError::NoSuchCore { core, available, env: Some(v) }
            }
            (e, _) => e,
        })?;
        if name.is_empty() {
            return Err(StartError::InvalidOptions("a node needs a name".into()));
        }
        if name.contains('\0') {
            // The shards' thread names carry it, and the OS takes none with a NUL (a review:
            // `std::thread::Builder::spawn` panicked).
            return Err(StartError::InvalidOptions(format!("node name {name:?} has a NUL byte")));
        }
        // Asked first, and a start that fails from here gives its id back (`StartId`): ids are
        // never reused otherwise, and a program retrying a start while an old node of the name
        // stops used up the process's 65,535 starts (review 69).
        if registry::is_live(name) {
            return Err(StartError::NameTaken(name.to_owned()));
        }
        let id = registry::new_node_id(name)
            .ok_or_else(|| StartError::InvalidOptions("too many node starts in this OS process (65,535)".into()))?;
        let mut start_id = StartId { id, started: false };
        let lanes = layout.len() + 1;
        let mut reactors = Vec::with_capacity(layout.len());
        let mut remotes = Vec::with_capacity(layout.len());
        for _ in &layout {
            let (reactor, waker) = Reactor::new()?;
            reactors.push(reactor);
            remotes.push(Arc::new(ShardRemote {
                inbox: Inbox::new(lanes),
                closed: AtomicBool::new(false),
                waker,
                table: SharedTable::new(),
                core: OnceLock::new(),
                #[cfg(feature = "web")]
                connections: crate::web::OpenConnections::new(),
            }));
        }
        let shared = Arc::new(NodeShared {
            id,
            external: Pid::external(id),
            name: name.to_owned(),
            shards: remotes.into_boxed_slice(),
            names: registry::Names::default(),
            shutdown_timeout: options.shutdown_timeout,
            spin: options.spin,
            stopping: AtomicBool::new(false),
            stop_pending: ShardCountdown::new(layout.len()),
            drain_pending: ShardCountdown::new(layout.len()),
            stopped: Mutex::new(false),
            stopped_cv: Condvar::new(),
            late_replies: AtomicU64::new(0),
            next_spawn: AtomicUsize::new(0),
            pools: Mutex::new(Vec::new()),
        });
        if !registry::set_live(&shared) {
            return Err(StartError::NameTaken(name.to_owned()));
        }
        let mut node = Node { handle: NodeHandle::from_shared(shared.clone()), threads: Vec::new() };
        // Each shard says when it is pinned: `start` returns with every shard on its core (a
        // trial read a shard's affinity right after `start` and found it not pinned yet).
        // A shard that could not be pinned sends its index and core first.
        let (pinned, all_pinned) = std::sync::mpsc::channel::<(usize, usize)>();
        let require_pin = options.require_pin;
        for (i, (reactor, core)) in reactors.into_iter().zip(layout).enumerate() {
            let shared = shared.clone();
            let pinned = pinned.clone();
            let os_name = os_thread_name(name, i);
            let spawned = std::thread::Builder::new().name(format!("pinion-{name}-{i}")).spawn(move || {
                // The OS keeps 15 bytes of a name: a shorter one that keeps the index, for
                // `top`, `ps` and `perf` (the thread's own name above stays whole).
                #[cfg(target_os = "linux")]
                let _ = std::fs::write("/proc/thread-self/comm", &os_name);
                #[cfg(not(target_os = "linux"))]
                let _ = os_name;
                if let Some(core) = core {
                    if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                        let _ = shared.shards[i].core.set(core);
                    } else {
                        // It runs unpinned, on the cores it inherited: `ShardInfo::core` says
                        // `None`, as for a shard with pinning off (unless pinning is required:
                        // then the start fails, and this shard stops with the others).
                        let _ = pinned.send((i, core));
                        if !require_pin {
                            log::warn!(target: "pinion", "{}: could not pin shard {i} to core {core}; it runs unpinned", shared.name);
                        }
                    }
                }
                drop(pinned);
                shard::run(shared, ShardId(i as u16), reactor);
            });
            match spawned {
                Ok(t) => node.threads.push(t),
                Err(e) => {
                    // The shards never started count as ended (the others would wait for
                    // them); Drop stops the shards already started.
                    let all = node.handle.shared();
                    for j in i..all.shards.len() {
                        all.shard_gone(j);
                    }
                    return Err(StartError::Io(e));
                }
            }
        }
        // Every shard dropped its sender once pinned (or ended): the loop ends then.
        drop(pinned);
        let unpinned: Vec<(usize, usize)> = all_pinned.iter().collect();
        if let (true, Some(&(shard, core))) = (require_pin, unpinned.iter().min()) {
            // Stopped and joined, its name free again, before the error is returned.
            drop(node);
            return Err(StartError::PinFailed { shard, core });
        }
        start_id.started = true;
        Ok(node)
    }

    /// A handle on this node, for any thread.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Blocks until a stop is requested (through any handle), then until every shard ended.
    pub fn wait(mut self) {
        self.handle.shared().wait_stop_requested();
        self.join();
    }

    /// Stops the node: every process gets `Shutdown` and runs `terminate` (processes still
    /// running after `NodeOptions::shutdown_timeout` are killed), then the shard threads are
    /// joined. Web requests still queued to a worker or pool that ends are answered (500 for a
    /// request dropped unanswered, 503 for one a stopping pool sheds) and written before the
    /// connections close (to a client that takes them slowly, until `shutdown_timeout` after
    /// the stop began, or until its connection's `idle_timeout` cuts it); a request held
    /// elsewhere (by a plain thread) is not answered: its client sees the connection close.
    /// Streams still open are cut.
    pub fn stop(mut self) {
        self.handle.shared().request_stop();
        self.join();
    }

    fn join(&mut self) {
        let current = std::thread::current().id();
        if let Some(i) = self.threads.iter().position(|t| t.thread().id() == current) {
            // Joining from a process of its own: this shard is held here, and its processes
            // with it; the other shards must not wait for them (a review: a node dropped in
            // a process of a two-shard node waited forever).
            self.handle.shared().shard_gone(i);
        }
        for t in self.threads.drain(..) {
            if t.thread().id() == current {
                log::error!(target: "pinion", "a node was dropped on its own shard thread; not joining it");
                continue;
            }
            if t.join().is_err() {
                log::error!(target: "pinion", "a shard thread panicked");
            }
        }
        registry::set_dead(self.handle.shared().id);
    }
}

impl Deref for Node {
    type Target = NodeHandle;
    fn deref(&self) -> &NodeHandle {
        &self.handle
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.handle.shared().request_stop();
            self.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::os_thread_name;

    #[test]
    fn os_thread_names_fit_15_bytes_and_keep_the_index() {
        assert_eq!(os_thread_name("hello", 0), "pinion-hello-0");
        assert_eq!(os_thread_name("checkout", 1), "pinion-checko-1");
        assert_eq!(os_thread_name("r41-a-long-node-name", 0), "pinion-r41-a-0");
        assert_eq!(os_thread_name("checkout", 4095), "pinion-che-4095");
        for (node, i) in [("ünïcödé-nödé", 3), ("x", 65535), ("-----------", 7)] {
            let name = os_thread_name(node, i);
            assert!(name.len() <= 15 && name.ends_with(&format!("-{i}")) && !name.contains("--"), "{name}");
        }
    }
}
