//! The pool at work: a sender placing a message on a worker, a worker starting and ending, the
//! pool growing, shrinking and stopping. Runs on the sender's thread or the worker's shard;
//! never on the manager's.
#![allow(unsafe_code, reason = "a pool reached through the pointer its manager's slot publishes")]

use std::any::Any;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::error::{CallError, SendError};
use crate::node::{NodeShared, route};
use crate::process::envelope::{self, CallResult, Envelope, Kind, Mail, Responder, Signal, Via, into_message};
use crate::process::mailbox::{Reservation, Reserve};
use crate::process::table::SharedTable;
use crate::process::{Context, ExitReason, Message, Pid, Priority, ShardId, link};
use crate::shard::{Shard, with_current};

use super::cells::{self, EMPTY, Retired, ShardWorkers, WorkerCell, state};
use super::gate::{Admit, admit};
use super::{PoolError, PoolMember, PoolShared};

/// Scans of the workers a sender makes after the gate admitted it (see `gate`).
const SCANS: usize = 3;

/// The pool whose manager holds the slot `reservation` of `pid`, if any.
#[cold]
pub(crate) fn of(reservation: &Reservation, pid: Pid) -> Option<&PoolShared> {
    let ptr = reservation.pool();
    if ptr.is_null() {
        return None;
    }
    // SAFETY: a non-null pointer was stored by `attach` (or `worker_started`, for a worker:
    // then the pool's manager is another pid) from an `Arc<PoolShared>` that the
    // node keeps in `NodeShared::pools` until the node itself is dropped; `reservation` lives
    // in that same node, so the pool outlives the borrow this returns.
    let pool = unsafe { &*ptr };
    (pool.manager() == Some(pid)).then_some(pool)
}

/// The manager's `init`: make its pid address the pool. Its own mailbox takes nothing from
/// now on (capacity 0): every send to it fails the reservation and comes here instead.
pub(crate) fn attach(ctx: &Context, pool: &Arc<PoolShared>) {
    let pid = ctx.pid();
    let _ = pool.manager.set(pid);
    let shard = ctx.shard_rc();
    shard.node.keep_pool(pool.clone());
    if let Some(r) = shard.remote().table.get(pid.slot) {
        r.set_pool(Arc::as_ptr(pool));
        r.set_capacity(0);
    }
}

/// A send whose target's reservation was full: to a pool if the target is one.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments, reason = "the arguments of route::send, passed on")]
pub(crate) fn send_full<M: Any + Send>(
    node: &NodeShared,
    here: Option<&Rc<Shard>>,
    reservation: &Reservation,
    pid: Pid,
    from: Pid,
    msg: M,
    priority: Priority,
    reply: Option<Responder<CallResult>>,
) -> Result<ShardId, SendError<M>> {
    let ptr = reservation.pool();
    if ptr.is_null() {
        return route::refuse(SendError::MailboxFull(msg), reply);
    }
    // SAFETY: as in `of`: a non-null pointer names a pool the node keeps until it is dropped.
    let pool = unsafe { &*ptr };
    if pool.manager() == Some(pid) {
        return send(node, here, pool, from, msg, priority, reply);
    }
    // A send addressed to one worker (its slot's own bound is 0, see `worker_started`): it
    // takes a gate slot too — whatever the gate's count, as the worker's bound is what limits
    // it — because every message a worker finishes gives one back.
    pool.gate.force_acquire();
    match reservation.try_reserve_within(pid.generation, pool.worker_capacity) {
        Ok(()) => {
            deliver(node, here.map(|s| &**s), pid, Mail::new(from, into_message(msg), reply), priority);
            Ok(pid.shard)
        }
        Err(e) => {
            pool.gate.release(1);
            match e {
                Reserve::Full => route::refuse(SendError::MailboxFull(msg), reply),
                Reserve::Stale if node.is_stopping() => route::refuse(SendError::Stopped(msg), reply),
                Reserve::Stale => route::refuse(SendError::NoSuchProcess(msg), reply),
            }
        }
    }
}

/// The pool whose manager is `pid`, if it is one (the web handler keeps it).
#[cfg(feature = "web")]
pub(crate) fn pool_of(node: &NodeShared, pid: Pid) -> Option<Arc<PoolShared>> {
    let reservation = node.shards.get(pid.shard.index())?.table.get(pid.slot)?;
    node.pool_arc(of(reservation, pid)?)
}

/// Admits `msg` to `pool` and places it on a worker with room, or refuses it. Inlined: the web
/// handler calls it for every request (the call and its nine arguments cost more than its
/// check of a local worker).
#[inline]
pub(crate) fn send<M: Any + Send>(
    node: &NodeShared,
    here: Option<&Rc<Shard>>,
    pool: &PoolShared,
    from: Pid,
    msg: M,
    priority: Priority,
    reply: Option<Responder<CallResult>>,
) -> Result<ShardId, SendError<M>> {
    if pool.is_stopping() {
        return route::refuse(SendError::Stopped(msg), reply);
    }
    // A main-lane message sent on a shard where the pool has workers: one of those first,
    // scanned in line and written in place in its lane, as a same-shard send is.
    let local = here.filter(|_| priority == Priority::Main);
    let placed = admit(&pool.gate, SCANS, || {
        if let Some(shard) = local
            && let Some((slot, generation, _)) = reserve_on(pool, shard.id.index(), &shard.remote().table, 1)
        {
            return Some(Placed::Here(shard, slot, generation));
        }
        // (This shard's workers were just scanned: the others'.)
        place_from(node, here.map(|s| &**s), pool, usize::from(local.is_some())).map(Placed::There)
    });
    match placed {
        Admit::Placed(Placed::Here(shard, slot, generation)) => {
            shard.push_main(slot, generation, from, msg, reply.map(envelope::boxed));
            Ok(shard.id)
        }
        Admit::Placed(Placed::There(worker)) => {
            deliver(node, here.map(|s| &**s), worker, Mail::new(from, into_message(msg), reply), priority);
            Ok(worker.shard)
        }
        Admit::Full | Admit::NoRoom => {
            pool.shed.fetch_add(1, Ordering::Relaxed);
            route::refuse(SendError::MailboxFull(msg), reply)
        }
    }
}

/// Slots of one pool taken ahead on a shard: `n` gate slots and `n` slots of the local worker
/// (`slot`, `generation`), for requests its connection has read and is handing out in this
/// dispatch pass. Each such request then costs no atomic operation. Given back at the end of
/// the pass ([`return_credit`]), so between passes nothing is held that no message holds.
#[cfg(feature = "web")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Credit {
    pool: *const PoolShared,
    slot: u32,
    generation: u32,
    n: u32,
}

#[cfg(feature = "web")]
impl Credit {
    pub(crate) const NONE: Credit = Credit { pool: std::ptr::null(), slot: 0, generation: 0, n: 0 };
}

/// The most slots taken ahead at once (a burst of pipelined requests is 16 deep in the usual
/// benchmarks; more than this only holds slots longer).
#[cfg(feature = "web")]
const AHEAD: u32 = 32;

/// A web request from a connection on `shard` to `pool`, where `ahead` more requests of the
/// same connection wait in its read buffer (an estimate). With `ahead > 0` and a worker of
/// the pool on this shard, up to `1 + ahead` gate and worker slots are taken in one
/// compare-and-swap each, and the requests that follow use them up. Anything else goes
/// through [`send`].
///
/// Admission stays exact in count: no message is placed without its gate and worker slot, and
/// slots are taken only for requests already read, given back when the pass ends unused. A
/// sender on another thread can meanwhile find the pool full for slots that a request
/// already read will fill a moment later, as if that request had been admitted first.
#[cfg(feature = "web")]
#[inline]
pub(crate) fn send_ahead<M: Any + Send>(
    node: &NodeShared,
    shard: &Rc<Shard>,
    pool: &PoolShared,
    from: Pid,
    msg: M,
    ahead: crate::http::Ahead,
) -> Result<ShardId, SendError<M>> {
    if !pool.is_stopping() {
        let credit = shard.pool_credit.get();
        let placed = if credit.n > 0 && std::ptr::eq(credit.pool, pool) {
            shard.pool_credit.set(Credit { n: credit.n - 1, ..credit });
            Some((credit.slot, credit.generation))
        } else if !ahead.is_none() {
            take_ahead(shard, pool, 1 + ahead.count().min(AHEAD))
        } else {
            None
        };
        if let Some((slot, generation)) = placed {
            shard.push_main(slot, generation, from, msg, None);
            return Ok(shard.id);
        }
    }
    send(node, Some(shard), pool, from, msg, Priority::Main, None)
}

/// Takes up to `want` gate slots and as many slots of one local worker as it has room for:
/// one for the request at hand (its worker returned), the rest kept as the shard's credit.
#[cfg(feature = "web")]
#[cold]
#[inline(never)]
fn take_ahead(shard: &Rc<Shard>, pool: &PoolShared, want: u32) -> Option<(u32, u32)> {
    return_credit(shard);
    let got = pool.gate.try_acquire_up_to(want);
    if got == 0 {
        return None;
    }
    let Some((slot, generation, taken)) = reserve_on(pool, shard.id.index(), &shard.remote().table, got) else {
        pool.gate.release(got);
        return None;
    };
    // Worker slots first, then the gate's: the order admission relies on.
    pool.gate.release(got - taken);
    let pool = std::ptr::from_ref(pool);
    shard.pool_credit.set(Credit { pool, slot, generation, n: taken - 1 });
    Some((slot, generation))
}

/// The slots `shard` holds taken ahead for `pool` in the dispatch pass under way: reserved for
/// requests its connection read, so a request of that connection asked about now (one
/// waiting for `100 Continue`) has room in them.
#[cfg(feature = "web")]
pub(crate) fn credit_for(shard: &Shard, pool: &PoolShared) -> u32 {
    let credit = shard.pool_credit.get();
    if std::ptr::eq(credit.pool, pool) { credit.n } else { 0 }
}

/// Gives back the slots a shard took ahead and did not use (the end of a dispatch pass).
#[cfg(feature = "web")]
#[inline]
pub(crate) fn return_credit(shard: &Shard) {
    let credit = shard.pool_credit.replace(Credit::NONE);
    if credit.n > 0 {
        // SAFETY: `credit.pool` was taken during this dispatch pass from a `&PoolShared` whose
        // `Arc` the handler holds (and its node's `NodeShared::pools`); the credit is given back
        // here, before the pass ends, while that `Arc` still lives (review 43: "this shard
        // belongs to that node" does not hold for a handler serving on two nodes).
        let pool = unsafe { &*credit.pool };
        // Worker slots first, then the gate's (a worker that ended meanwhile counted these
        // as owed to it: see `give_back`).
        give_back(shard, pool, (credit.slot, credit.generation), credit.n);
    }
}

/// Gives back `n` reservations of the worker `key` (slot, generation) on this shard that no
/// message will use, with their gate slots. If the worker ended meanwhile, they were counted
/// as owed to it: they leave its grave, and the slots its heir reserved for them go back.
#[cfg(feature = "web")]
fn give_back(shard: &Shard, pool: &PoolShared, mut key: (u32, u32), n: u32) {
    loop {
        if shard.remote().table.get(key.0).is_some_and(|r| r.release_unused(key.1, n)) {
            pool.gate.release(n);
            // A worker of this shard: one retiring meanwhile may be waiting for these slots'
            // messages, which will not come.
            shard.recheck_retiring(key.0);
            return;
        }
        let heir = {
            let mut graves = shard.pool_graves.borrow_mut();
            let Some(grave) = graves.get_mut(key) else {
                // Not a worker that ended with these slots: they were not held.
                return;
            };
            grave.owed = grave.owed.saturating_sub(n);
            grave.heir
        };
        match heir {
            Some(next) => key = next,
            None => {
                pool.gate.release(n);
                return;
            }
        }
    }
}

/// Where `send` placed a message: on a worker of the sender's shard (its slot and generation),
/// or on a worker elsewhere (delivered the general way).
enum Placed<'a> {
    Here(&'a Rc<Shard>, u32, u32),
    There(Pid),
}

/// The manager passes on a message that reached its own mailbox (sent before `attach`). A
/// call it cannot place is answered here (`send` would silence its responder: its caller was
/// told nothing yet).
pub(crate) fn forward(
    ctx: &Context,
    pool: &PoolShared,
    from: Pid,
    msg: Message,
    reply: Option<Responder<CallResult>>,
) -> Result<(), SendError<()>> {
    let shard = ctx.shard_rc();
    let (error, refused) = if pool.is_stopping() {
        (CallError::Stopped, SendError::Stopped(()))
    } else {
        match admit(&pool.gate, SCANS, || place(&shard.node, Some(&*shard), pool)) {
            Admit::Placed(worker) => {
                deliver(&shard.node, Some(&*shard), worker, Mail::new(from, msg, reply), Priority::Main);
                return Ok(());
            }
            Admit::Full | Admit::NoRoom => {
                pool.shed.fetch_add(1, Ordering::Relaxed);
                (CallError::MailboxFull, SendError::MailboxFull(()))
            }
        }
    };
    if let Some(reply) = reply {
        // Its caller was told the call was taken: the request goes back with the answer.
        reply.respond(envelope::returned(error, msg));
    }
    Err(refused)
}

/// One scan: reserves a slot of a worker with room, this shard's workers first (round robin
/// among them), then the other shards'.
#[inline]
fn place(node: &NodeShared, here: Option<&Shard>, pool: &PoolShared) -> Option<Pid> {
    place_from(node, here, pool, 0)
}

/// [`place`] without the first `skip` shards of its round (already scanned by the caller).
#[inline]
fn place_from(node: &NodeShared, here: Option<&Shard>, pool: &PoolShared, skip: usize) -> Option<Pid> {
    let n = pool.shards.len();
    let mut s = match here {
        Some(s) => s.id.index(),
        None => pool.external.fetch_add(1, Ordering::Relaxed) % n,
    };
    s = (s + skip) % n;
    for _ in skip..n {
        if let Some((slot, generation, _)) = reserve_on(pool, s, &node.shards[s].table, 1) {
            return Some(Pid { node: node.id, shard: ShardId(s as u16), slot, generation });
        }
        s += 1;
        if s == n {
            s = 0;
        }
    }
    None
}

/// Reserves up to `want` slots (at least one) of one of the workers placed on shard `s`
/// (whose table is `table`): that worker's slot and generation, and how many slots were taken.
///
/// With several workers on the shard, the sender looks at up to [`LOOKS`] of them from the
/// shard's cursor on and takes the first idle one (nothing queued, nothing in hand), else the
/// least loaded with room (round robin among equals). So a message does not queue behind a
/// long one while one of those workers idles. The counts are snapshots: if the chosen worker
/// filled meanwhile (or those looked at were full), the first with room is taken, round robin.
#[inline(always)]
fn reserve_on(pool: &PoolShared, s: usize, table: &SharedTable, want: u32) -> Option<(u32, u32, u32)> {
    let workers = &pool.shards[s];
    if workers.len() == 1 {
        // No choice to make (one worker a shard is the usual web pool).
        let (slot, generation) = worker_at(workers, 0)?;
        let taken = table.get(slot)?.try_reserve_up_to(generation, pool.worker_capacity, want).ok()?;
        return Some((slot, generation, taken));
    }
    reserve_least_on(pool, s, table, want)
}

/// How many of a shard's workers a sender looks at, from the cursor on, for an idle one (each
/// look costs a few dozen instructions; a pool rarely has more workers a shard than this).
const LOOKS: usize = 4;

/// [`reserve_on`] among several workers: the first idle one of the [`LOOKS`] from the cursor
/// on, else the least loaded of them with room.
fn reserve_least_on(pool: &PoolShared, s: usize, table: &SharedTable, want: u32) -> Option<(u32, u32, u32)> {
    let workers = &pool.shards[s];
    let len = workers.len();
    let mut pos = workers.cursor.load(Ordering::Relaxed);
    let mut best: Option<(usize, u32, u32, &Reservation, u32)> = None;
    for _ in 0..len.min(LOOKS) {
        if pos >= len {
            pos = 0;
        }
        if let Some((slot, generation)) = worker_at(workers, pos)
            && let Some(r) = table.get(slot)
            && let Some(held) = r.held(generation)
            && held < pool.worker_capacity
            && best.is_none_or(|(.., least)| held < least)
        {
            best = Some((pos, slot, generation, r, held));
            if held == 0 {
                break;
            }
        }
        pos += 1;
    }
    if let Some((pos, slot, generation, r, _)) = best
        && let Ok(taken) = r.try_reserve_up_to(generation, pool.worker_capacity, want)
    {
        workers.cursor.store(pos + 1, Ordering::Relaxed);
        return Some((slot, generation, taken));
    }
    reserve_any_on(pool, s, table, want)
}

/// [`reserve_on`] when its snapshots found no room: the first worker with room, round robin.
#[cold]
#[inline(never)]
fn reserve_any_on(pool: &PoolShared, s: usize, table: &SharedTable, want: u32) -> Option<(u32, u32, u32)> {
    let workers = &pool.shards[s];
    let len = workers.len();
    let start = workers.cursor.load(Ordering::Relaxed);
    (0..len).find_map(|i| {
        let pos = (start + i) % len;
        let (slot, generation) = worker_at(workers, pos)?;
        let taken = table.get(slot)?.try_reserve_up_to(generation, pool.worker_capacity, want).ok()?;
        workers.cursor.store(pos + 1, Ordering::Relaxed);
        Some((slot, generation, taken))
    })
}

/// The slot and generation of the worker in cell `pos` of a shard's workers, if one is there.
#[inline(always)]
fn worker_at(workers: &ShardWorkers, pos: usize) -> Option<(u32, u32)> {
    let packed = workers.at(pos)?.pid.load(Ordering::Acquire);
    (packed != EMPTY).then(|| cells::unpack(packed))
}

/// Delivers a placed message (it holds a gate slot and a slot of `worker`).
fn deliver(node: &NodeShared, here: Option<&Shard>, worker: Pid, mail: Mail, priority: Priority) {
    match here.filter(|s| s.id == worker.shard) {
        Some(shard) => shard.deliver_mail(worker.slot, worker.generation, mail, priority, None),
        None => {
            let kind = Kind::Mail { mail, priority, alias: None };
            let env = Envelope { slot: worker.slot, generation: worker.generation, kind };
            let lane = here.map_or(node.shards.len(), |s| s.id.index());
            node.push(worker.shard, lane, env);
        }
    }
}

/// Pool workers remembered per shard after they ended (see `Shard::pool_graves`): enough for
/// the messages that can be in flight to one at its end (they were sent before it). A grave
/// still owed messages is kept beyond this.
const GRAVES: usize = 256;

/// The graves of a shard, found by key (the chain of heirs a message walks after a burst of
/// crashes is one lookup a step, not a scan), with the few that wait for an heir listed apart
/// (what `inherit` looks through). Generic only so that its bookkeeping is tested alone.
pub(crate) struct Graves<G = Grave> {
    by_key: HashMap<(u32, u32), G>,
    /// Keys of the graves whose `heir_wanted` is set.
    wanted: Vec<(u32, u32)>,
    /// Above this many, `bury` forgets the graves that are done with; it doubles past what
    /// stays, so a long chain of graves still owed costs no scan per burial.
    sweep_at: usize,
}

impl<G> Default for Graves<G> {
    fn default() -> Self {
        Graves { by_key: HashMap::new(), wanted: Vec::new(), sweep_at: 0 }
    }
}

/// What [`Graves`] needs to know of a grave.
pub(crate) trait Buried {
    /// Its slot and generation.
    fn key(&self) -> (u32, u32);
    /// Waits for an heir.
    fn heir_wanted(&self) -> bool;
    /// Owed nothing, keeps no queue and waits for no heir: nothing will look for it.
    fn settled(&self) -> bool;
}

impl<G: Buried> Graves<G> {
    /// Remembers an ended worker. Past [`GRAVES`] (or twice what stayed at the last sweep),
    /// every settled grave is forgotten: after a burst of crashes the map shrinks back.
    fn bury(&mut self, grave: G) {
        if self.by_key.len() >= self.sweep_at.max(GRAVES) {
            self.by_key.retain(|_, g| !g.settled());
            self.sweep_at = 2 * self.by_key.len();
        }
        if grave.heir_wanted() {
            self.wanted.push(grave.key());
        }
        self.by_key.insert(grave.key(), grave);
    }

    fn get_mut(&mut self, key: (u32, u32)) -> Option<&mut G> {
        self.by_key.get_mut(&key)
    }

    /// No heir is wanted for `key` any more.
    fn unwant(&mut self, key: (u32, u32)) {
        self.wanted.retain(|k| *k != key);
    }
}

/// A pool worker of this shard that ended, remembered for the messages reserved for it that
/// had not reached it yet: each holds its gate slot still. A worker replaced after a crash
/// leaves its queue and those messages to its replacement (its heir), which reserves its own
/// slots for them when it starts: nothing accepted for the pool is lost to a crash but the
/// message in hand, and the counts stay exact.
pub(crate) struct Grave {
    /// Its slot and generation.
    key: (u32, u32),
    member: PoolMember,
    /// Messages reserved for it and not arrived yet.
    owed: u32,
    /// Its queue, kept for the heir until it starts.
    parked: Vec<Mail>,
    /// A replacement is starting and inherits from this worker.
    heir_wanted: bool,
    /// The replacement (slot, generation) that inherited, with a slot reserved for each
    /// message still owed.
    heir: Option<(u32, u32)>,
}

impl Buried for Grave {
    fn key(&self) -> (u32, u32) {
        self.key
    }

    fn heir_wanted(&self) -> bool {
        self.heir_wanted
    }

    fn settled(&self) -> bool {
        self.owed == 0 && self.parked.is_empty() && !self.heir_wanted
    }
}

/// Remembers an ended worker (see [`Graves::bury`]).
fn bury(shard: &Shard, grave: Grave) {
    shard.pool_graves.borrow_mut().bury(grave);
}

/// A message reached the slot of a process that is gone: if that was a pool worker, the
/// message goes to its heir (which holds a slot for it), in its lane, or, without one, to
/// another worker with room (keeping its gate slot), or is answered. Returns the mail when it
/// was no pool worker's.
#[cold]
pub(crate) fn redirect(shard: &Shard, slot: u32, generation: u32, mail: Mail, priority: Priority) -> Option<Mail> {
    let mut key = (slot, generation);
    let mut mail = mail;
    // Along the chain of heirs that ended too (each one's reservation for this message made it
    // owed there as well): a loop, not a recursion through `deliver_mail`, so a long chain of
    // crashed replacements cannot overflow the shard's stack.
    let (member, owed) = loop {
        let mut graves = shard.pool_graves.borrow_mut();
        let Some(grave) = graves.get_mut(key) else { return Some(mail) };
        let owed = grave.owed > 0;
        if owed {
            grave.owed -= 1;
            if let Some(heir) = grave.heir {
                drop(graves);
                match shard.push_if_alive(heir.0, heir.1, mail, priority) {
                    Ok(()) => return None,
                    Err(back) => {
                        mail = back;
                        key = heir;
                        continue;
                    }
                }
            }
            if grave.heir_wanted {
                grave.parked.push(mail);
                return None;
            }
        }
        break (grave.member.clone(), owed);
    };
    if owed {
        place_or_shed(shard, &member, mail, priority);
        return None;
    }
    // Not counted as on its way (none should be): admitted again, as a new message.
    let pool = &member.pool;
    let placed = if pool.is_stopping() {
        Admit::Full
    } else {
        admit(&pool.gate, SCANS, || place(&shard.node, Some(shard), pool))
    };
    match placed {
        Admit::Placed(worker) => deliver(&shard.node, Some(shard), worker, mail, priority),
        Admit::Full | Admit::NoRoom => shed_counted(&member, mail),
    }
    None
}

/// A replacement `pid` of `member` starts, before its pid is published: it takes the queue its
/// predecessor left and reserves a slot for each message still on its way to it (they hold
/// their gate slots: no sender can take their room meanwhile).
fn inherit(shard: &Shard, member: &PoolMember, pid: Pid) {
    let (mut parked, mut owed) = (Vec::new(), 0);
    {
        let graves = &mut *shard.pool_graves.borrow_mut();
        graves.wanted.retain(|key| {
            let Some(grave) = graves.by_key.get_mut(key) else { return false };
            if !(grave.member.cell == member.cell && Arc::ptr_eq(&grave.member.pool, &member.pool)) {
                return true;
            }
            grave.heir_wanted = false;
            grave.heir = Some((pid.slot, pid.generation));
            parked.append(&mut grave.parked);
            owed += grave.owed;
            false
        });
    }
    let n = parked.len() as u32 + owed;
    if n == 0 {
        return;
    }
    // Its own bound is 0 (set by `worker_started`): these go past it, as what they hold was
    // its predecessor's room, within the pool's.
    if let Some(r) = shard.remote().table.get(pid.slot) {
        let taken = r.try_reserve_up_to(pid.generation, u32::MAX, n);
        debug_assert_eq!(taken, Ok(n), "a starting worker's slot is open and empty");
    }
    for mail in parked {
        shard.deliver_mail(pid.slot, pid.generation, mail, Priority::Main, None);
    }
}

/// A worker of `member` started as `pid` on `shard` (its slot is open, its entry in the table).
pub(crate) fn worker_started(shard: &Rc<Shard>, member: &PoolMember, pid: Pid) {
    let pool = &member.pool;
    let cell = pool.cell(member.cell);
    // Before its pid is published: its own bound becomes 0, so that a send addressed to it
    // directly fails the usual reservation and finds the pool (`send_full`), which takes a
    // gate slot for it; the pool reserves against the real bound (`try_reserve_within`).
    if let Some(r) = shard.remote().table.get(pid.slot) {
        r.set_pool(Arc::as_ptr(pool));
        r.set_capacity(0);
    }
    inherit(shard, member, pid);
    let live = cell.start(cells::pack(pid.slot, pid.generation), &pool.gate, pool.worker_capacity);
    // The manager's end reaches the worker (a link from the manager's side), undone when the
    // worker ends first.
    if let Some(manager) = pool.manager() {
        route::signal(&shard.node, Some(shard), manager, pid, Kind::Link { from: pid });
        link::watch(shard, pid, manager, None);
    }
    // The pool began to stop meanwhile (it signals the workers it sees; this one may have been
    // published too late for that), or a resize removed it before it started: it retires like
    // the others, once what was placed on it since its pid was published has reached it.
    if pool.is_stopping() {
        shard.deliver_signal(pid.slot, pid.generation, Signal::Shutdown);
    } else if !live {
        shard.deliver_signal(pid.slot, pid.generation, Signal::Retire);
    }
}

/// A worker ended. `held` is its reservation count when its slot closed: its queue
/// (`leftovers`, the messages it never took), the `in_hand` messages it took and did not
/// finish (gone with it: a call among them was answered when its future was dropped), and
/// messages on their way to it. Each of those holds a gate slot. A worker that crashed and is
/// replaced leaves its queue and what is on its way to the replacement ([`Grave`]); one that
/// is not (it retired, or the pool or its shard stops) hands them to another worker with room,
/// or they are answered.
pub(crate) fn worker_exited(
    shard: &Rc<Shard>,
    member: PoolMember,
    pid: Pid,
    reason: &ExitReason,
    held: u32,
    in_hand: u32,
    leftovers: Vec<Mail>,
) {
    let pool = &member.pool;
    let cell = pool.cell(member.cell);
    cell.clear_pid(cells::pack(pid.slot, pid.generation));
    // Only a live worker's end can fail a pool's start (not a retired one's).
    let restart = !pool.is_stopping()
        && !shard.stopping.get()
        && (pool.is_started() || (cell.state() == state::LIVE && pool.started_or_fail(reason)));
    let was = cell.end(restart, &pool.gate, pool.worker_capacity);
    let queued = leftovers.len() as u32;
    let owed = held.saturating_sub(in_hand).saturating_sub(queued);
    // What it held in hand is gone with it: those gate slots go back now.
    pool.gate.release(held.saturating_sub(owed).saturating_sub(queued));
    let key = (pid.slot, pid.generation);
    let inherit = was == state::LIVE && restart;
    let (parked, leftovers) = if inherit { (leftovers, Vec::new()) } else { (Vec::new(), leftovers) };
    bury(shard, Grave { key, member: member.clone(), owed, parked, heir_wanted: inherit, heir: None });
    if inherit {
        if matches!(reason, ExitReason::Panic(_)) {
            // Logged as an error with its text where it panicked: one line for one bad
            // request is enough (a trial counted three).
            log::debug!(target: "pinion", "{} {pid}: pool worker ended ({reason}); replacing it", shard.node.name);
        } else {
            crate::log_limit::log_limited!(Warn, target: "pinion", "{} {pid}: pool worker ended ({reason}); replacing it", shard.node.name);
        }
        // A panic with a message in hand is that message's failure (over HTTP, its 500): the
        // replacement serves the others, and another such failure needs another message, so
        // the senders pace it. Counted toward the intensity, a handful of bad requests would
        // stop the pool for everyone. What the bound is for are the ends a worker comes to on
        // its own: failing its start, panicking outside a message, choosing to exit.
        let counted = !(matches!(reason, ExitReason::Panic(_)) && in_hand > 0);
        replace(shard, &member, pid, counted);
        // No replacement started (the pool gave up): its queue is answered, and what is on its
        // way will be when it arrives.
        let mut graves = shard.pool_graves.borrow_mut();
        let unclaimed = graves.get_mut(key).filter(|g| g.heir_wanted).map(|g| {
            g.heir_wanted = false;
            std::mem::take(&mut g.parked)
        });
        if unclaimed.is_some() {
            graves.unwant(key);
        }
        drop(graves);
        for mail in unclaimed.into_iter().flatten() {
            place_or_shed(shard, &member, mail, Priority::Main);
        }
    } else {
        // Retired (or already gone, or not to be replaced): its cell stays gone.
        cell.set_gone();
        for mail in leftovers {
            place_or_shed(shard, &member, mail, Priority::Main);
        }
        // Retired by a resize (RETIRING, or GONE: retired before it started), it was the cell's
        // last worker, out of every shard's list: the cell is free for the next worker a resize
        // adds. (Not while the pool or the shard stops: its cells stay as they are. A message
        // still on its way to this worker, shed later, counts in the next worker's `shed`.)
        if (was == state::RETIRING || was == state::GONE) && !pool.is_stopping() && !shard.stopping.get() {
            pool.free_cell(member.cell);
        }
    }
}

/// A message of an ended worker of `member` (it holds its gate slot) goes to another worker
/// with room, in `priority`'s lane, or is answered and its gate slot given back.
fn place_or_shed(shard: &Shard, member: &PoolMember, mail: Mail, priority: Priority) {
    let pool = &member.pool;
    let placed = if pool.is_stopping() { None } else { place(&shard.node, Some(shard), pool) };
    match placed {
        Some(worker) => deliver(&shard.node, Some(shard), worker, mail, priority),
        None => {
            pool.gate.release(1);
            shed_counted(member, mail);
        }
    }
}

/// A message of `member`'s worker that no worker takes: counted as its shed, and answered.
fn shed_counted(member: &PoolMember, mail: Mail) {
    let pool = &member.pool;
    pool.cell(member.cell).shed.fetch_add(1, Ordering::Relaxed);
    pool.shed_accepted.fetch_add(1, Ordering::Relaxed);
    let stopping = pool.is_stopping();
    crate::shard::executor::contain("answering a shed message", move || shed(mail, stopping));
}

/// Answers a message no worker can take: a web request 503, a call `MailboxFull` (or `Stopped`)
/// with its request handed back (`CallFuture::request_back`, `CallReply::request_back`).
fn shed(mail: Mail, stopping: bool) {
    #[cfg(feature = "web")]
    let mail = match mail.msg.downcast::<crate::web::WebRequest>() {
        Ok(req) => return crate::web::shed(req),
        Err(msg) => Mail { msg, ..mail },
    };
    match mail.reply {
        Some(reply) => {
            let error = if stopping { CallError::Stopped } else { CallError::MailboxFull };
            reply.respond(envelope::returned(error, mail.msg));
        }
        None => log::warn!(
            target: "pinion",
            "pool: a message queued to a worker that ended found no other worker with room; dropped and counted as shed"
        ),
    }
}

/// Starts a replacement for the worker `old` of `member` on this shard, within the pool's
/// restart intensity if the end is `counted` (a replacement that fails to start always is);
/// past it, the pool gives up.
fn replace(shard: &Rc<Shard>, member: &PoolMember, old: Pid, mut counted: bool) {
    let pool = &member.pool;
    let cell = pool.cell(member.cell);
    loop {
        if std::mem::replace(&mut counted, true) && !pool.note_restart() {
            cell.set_gone();
            give_up(shard, pool, old);
            return;
        }
        let Some(make) = pool.maker() else {
            // The pool stops (it began to after this worker's end was judged a restart).
            cell.set_gone();
            return;
        };
        cell.restarts.fetch_add(1, Ordering::Relaxed);
        let request = make(member.clone(), Responder { inner: None });
        if shard.spawn_local(request) {
            return;
        }
    }
}

/// Restart intensity exceeded: the pool stops, and its manager ends saying why.
fn give_up(shard: &Rc<Shard>, pool: &PoolShared, worker: Pid) {
    let reason = ExitReason::custom(format!(
        "pool gave up: more than {} worker restarts within {:?}",
        pool.intensity, pool.period
    ));
    log::error!(target: "pinion", "{} {worker}: {reason}", shard.node.name);
    begin_stop(&shard.node, Some(shard), pool);
    if let Some(manager) = pool.manager() {
        let signal = Signal::Exit { from: worker, reason, via: Via::Explicit };
        route::signal(&shard.node, Some(shard), manager, worker, Kind::Signal(signal));
    }
}

/// The manager's process ended, however (a kill skips its `terminate`): the pool stops.
pub(crate) fn manager_exited(shard: &Rc<Shard>, reservation: &Reservation, pid: Pid) {
    if let Some(pool) = of(reservation, pid)
        && !pool.is_stopping()
    {
        begin_stop(&shard.node, Some(shard), pool);
    }
}

/// The manager ends (or its `init` failed): no more sends; every worker is asked to stop.
pub(crate) fn stop(ctx: &Context, pool: &PoolShared) {
    let shard = ctx.shard_rc();
    begin_stop(&shard.node, Some(&shard), pool);
}

fn begin_stop(node: &NodeShared, here: Option<&Rc<Shard>>, pool: &PoolShared) {
    pool.stopping.store(true, Ordering::SeqCst);
    let cells = pool.control().cells;
    for i in 0..cells {
        let cell = pool.cell(i);
        let packed = cell.pid.load(Ordering::SeqCst);
        if packed == EMPTY {
            continue;
        }
        let (slot, generation) = cells::unpack(packed);
        let worker = Pid { node: node.id, shard: ShardId(cell.shard() as u16), slot, generation };
        let from = pool.manager().unwrap_or(worker);
        route::signal(node, here, worker, from, Kind::Signal(Signal::Shutdown));
    }
    pool.drop_maker();
}

/// `PoolRef::resize`, from any thread.
pub(crate) fn resize(node: &Arc<NodeShared>, pool: &Arc<PoolShared>, size: usize) -> Result<(), PoolError> {
    with_current(|here| {
        let here = here.filter(|s| Arc::ptr_eq(&s.node, node));
        let mut c = pool.control();
        let Some(make) = pool.maker().filter(|_| !pool.is_stopping()) else {
            return Err(PoolError::Stopping);
        };
        while c.size < size {
            let Some((cell, shard)) = pool.add_cell(&mut c) else {
                return Err(PoolError::WorkerStart("too many workers".into()));
            };
            let member = PoolMember { pool: pool.clone(), cell };
            let request = make(member.clone(), Responder { inner: None });
            match here.filter(|h| h.id == shard) {
                Some(h) => {
                    if !h.spawn_local(request) {
                        let counted = pool.cell(cell).start_failed();
                        pool.worker_start_failed(&mut c, cell, counted);
                        return Err(PoolError::WorkerStart("the worker's factory failed (see the log)".into()));
                    }
                }
                None if node.is_stopping() => {
                    c.size -= 1;
                    pool.cell(cell).set_gone();
                    return Err(PoolError::Stopping);
                }
                None => {
                    // Started on its shard; a failure there takes the worker out of the size.
                    let task = move |s: &Rc<Shard>| {
                        if retired_before_start(&member) {
                            return;
                        }
                        if !s.spawn_local(request) {
                            start_failed(s, &member);
                        }
                    };
                    route::run_on(node.id, shard, Box::new(task));
                }
            }
        }
        while c.size > size {
            // The newest worker of the shard with the most.
            let Some(s) = (0..pool.shards.len()).max_by_key(|s| (pool.shards[*s].len.load(Ordering::Relaxed), *s))
            else {
                break;
            };
            let Some(cell) = pool.shards[s].pop() else { break };
            if retire(node, here, pool, cell) {
                c.size -= 1;
            }
        }
        Ok(())
    })
}

/// A worker added by `resize` from another thread, about to start on its shard: true when a
/// resize retired its cell meanwhile (it is GONE, out of its shard's list), and it is not
/// started at all — the cell is freed for the next worker a resize adds, as the worker's end
/// would have freed it. Started, it only retired at once: a thread calling `resize(n + 1)`
/// and `resize(n)` in a loop had its shard start and retire a worker for every pair (a spawn,
/// a link to the manager, a retirement, a burial), far slower than the calls queued them
/// (review 72: 2.4 GB of queued starts within minutes, the shard's processes starved).
fn retired_before_start(member: &PoolMember) -> bool {
    let pool = &member.pool;
    if pool.cell(member.cell).state() != state::GONE {
        return false;
    }
    // (A stopping pool keeps its cells as they are; its worker is not started either.) Not
    // through the control lock: the thread flooding `resize` holds it nearly all the time, and
    // the shard waiting for it ran nothing else (a trial: 0 ticks of a process in 1.5 s).
    // GONE and out of every list, the cell is this task's alone until it is freed.
    if !pool.is_stopping() {
        pool.freed.push(member.cell);
    }
    true
}

/// A worker added by `resize` could not start on its shard: it leaves the pool's size, its
/// cell is free for the next worker added, on this shard (see `PoolShared::worker_start_failed`;
/// a factory that fails is not retried here; restarts of running workers are), and the failure
/// is counted (`PoolInfo::failed_starts`) and logged.
fn start_failed(shard: &Rc<Shard>, member: &PoolMember) {
    let pool = &member.pool;
    // The cell leaves the size under the control lock, as `resize` counts and retires under
    // it: with the cell gone but the size not yet lowered, a `resize` in between counted the
    // failed worker as one to retire and retired a running one too many.
    let mut c = pool.control();
    let counted = pool.cell(member.cell).start_failed();
    pool.worker_start_failed(&mut c, member.cell, counted);
    drop(c);
    log::error!(target: "pinion", "{} {}: a pool worker added by resize failed to start", shard.node.name, shard.id);
}

/// Control lock held, the cell already out of its shard's list: takes its capacity out of the
/// gate and queues the retire marker behind its work. False when the cell no longer counted
/// in the pool's size (its start failed, or it is already retiring or gone).
fn retire(node: &NodeShared, here: Option<&Rc<Shard>>, pool: &PoolShared, cell: &WorkerCell) -> bool {
    match cell.retire(&pool.gate, pool.worker_capacity) {
        // Not started yet (or being replaced): `worker_started` stops it.
        Retired::NotStarted => return true,
        Retired::NotCounted => return false,
        Retired::Retiring => {}
    }
    let packed = cell.pid.load(Ordering::SeqCst);
    if packed == EMPTY {
        return true;
    }
    let (slot, generation) = cells::unpack(packed);
    let shard = ShardId(cell.shard() as u16);
    let worker = Pid { node: node.id, shard, slot, generation };
    let from = pool.manager().unwrap_or(worker);
    route::signal(node, here, worker, from, Kind::Signal(Signal::Retire));
    true
}

#[cfg(test)]
mod tests {
    use super::{Buried, GRAVES, Graves};

    /// A grave with only what the bookkeeping reads.
    struct Fake {
        key: (u32, u32),
        owed: u32,
        heir_wanted: bool,
    }

    impl Buried for Fake {
        fn key(&self) -> (u32, u32) {
            self.key
        }
        fn heir_wanted(&self) -> bool {
            self.heir_wanted
        }
        fn settled(&self) -> bool {
            self.owed == 0 && !self.heir_wanted
        }
    }

    fn fake(i: u32, owed: u32) -> Fake {
        Fake { key: (i, 1), owed, heir_wanted: false }
    }

    #[test]
    fn graves_owed_nothing_are_forgotten_past_the_bound() {
        let mut g = Graves::default();
        for i in 0..10 * GRAVES as u32 {
            g.bury(fake(i, 0));
            assert!(g.by_key.len() <= GRAVES, "{} graves kept", g.by_key.len());
        }
    }

    #[test]
    fn graves_still_owed_are_kept_and_the_map_shrinks_back_once_they_are_paid() {
        let mut g = Graves::default();
        let owed = 10_000u32;
        for i in 0..owed {
            g.bury(fake(i, 1));
        }
        assert_eq!(g.by_key.len(), owed as usize, "every grave still owed is kept");
        for i in 0..owed {
            g.get_mut((i, 1)).expect("kept").owed = 0;
        }
        // Paid: the next sweep forgets them all. It comes within twice the peak's burials (the
        // bound doubles past what stayed), and from then on the map stays within `GRAVES`.
        let mut peak = 0;
        for i in owed..owed + 3 * owed {
            g.bury(fake(i, 0));
            peak = peak.max(g.by_key.len());
        }
        assert!(peak <= 2 * owed as usize, "peak {peak}");
        assert!(g.by_key.len() <= GRAVES, "{} graves kept after the burst", g.by_key.len());
    }

    #[test]
    fn graves_waiting_for_an_heir_are_listed_and_kept() {
        let mut g = Graves::default();
        g.bury(Fake { key: (7, 3), owed: 0, heir_wanted: true });
        for i in 0..4 * GRAVES as u32 {
            g.bury(fake(100 + i, 0));
        }
        assert_eq!(g.wanted, [(7, 3)]);
        assert!(g.get_mut((7, 3)).is_some(), "a grave waiting for its heir is not forgotten");
        g.get_mut((7, 3)).expect("kept").heir_wanted = false;
        g.unwant((7, 3));
        assert!(g.wanted.is_empty());
    }
}
