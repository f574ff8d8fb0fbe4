//! Bounded mailboxes: the shared reservation word that makes the bound exact across shards, and
//! the shard-local lanes (system, urgent, main) the reserved messages wait in.
//!
//! # The reservation word
//! Each process slot has one cache-line-aligned `AtomicU64`: the slot's generation in the high
//! 32 bits and the number of *reserved* messages in the low 32 bits. A sender, on any shard or
//! thread, reserves with a compare-and-swap that checks both at once: a stale generation answers
//! `Stale` (the pid's process is gone), a count at capacity answers `Full`. Nothing is enqueued
//! without a reservation, so a mailbox never holds more than its capacity whatever the race.
//! The owner releases a reservation when it has *finished* the message (not when it dequeued
//! it), so capacity counts queued plus in-progress messages and the number accepted does not
//! depend on scheduling. The release is batched per run of the process: the messages a process
//! finished during one poll are given back with one `fetch_sub` when that poll returns (when it
//! awaits, yields after its budget, or waits for mail) — a locked instruction per message was
//! the largest single cost of the same-shard path. When the process ends, the owner bumps the generation and zeroes the
//! count in one store: later sends fail, later releases (by the old incarnation) are no-ops.
#![allow(unsafe_code, reason = "ring-buffer lanes of maybe-uninitialized slots")]

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::mem::MaybeUninit;

use crate::loom::{AtomicU32, AtomicU64, Ordering};
use crate::process::envelope::{CallResult, Mail, Responder};
use crate::process::{Message, Pid};

const COUNT_BITS: u32 = 32;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Why a reservation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[doc(hidden)]
pub enum Reserve {
    /// The slot holds `capacity` reserved messages.
    Full,
    /// The slot's generation is not the pid's: its process ended.
    Stale,
}

/// The shared, lock-free half of a process slot: generation + reserved count, and capacity.
///
/// INVARIANT: the reserved count never exceeds the capacity set by the last `open`.
#[repr(align(64))]
#[derive(Debug)]
#[doc(hidden)]
pub struct Reservation {
    word: AtomicU64,
    capacity: AtomicU32,
    /// Messages the owner finished (written by the owner only; read by introspection).
    processed: AtomicU64,
    /// Set when the slot's process is a pool's manager (a send that finds this slot full goes
    /// to the pool instead) or one of its workers (a send straight to it takes a pool slot
    /// too): see `pool::dispatch`. Not part of the loom models: written once per start.
    pool: std::sync::atomic::AtomicPtr<crate::pool::PoolShared>,
    /// The live aliases of the current incarnation (see [`Alias`](crate::Alias)): here rather
    /// than in the shard-local entry so that a sender on any shard or thread learns at once
    /// that an alias was deleted. Written by the owner, read by alias sends only; it fits the
    /// cache line's padding, so it costs no memory per process.
    aliases: std::sync::Mutex<Vec<u64>>,
}

// The shared half of a slot is one cache line (the alias list lives in what was padding).
#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<Reservation>() == 64);

impl Default for Reservation {
    fn default() -> Self {
        Self::new()
    }
}

impl Reservation {
    /// A closed slot at generation 0.
    pub fn new() -> Self {
        Reservation {
            word: AtomicU64::new(0),
            capacity: AtomicU32::new(0),
            processed: AtomicU64::new(0),
            pool: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
            aliases: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn alias_list(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        // Nothing panics while holding it; a poisoned list is still a valid list.
        self.aliases.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Owner only, while live: `id` is an alias of this incarnation from now on.
    pub(crate) fn add_alias(&self, id: u64) {
        self.alias_list().push(id);
    }

    /// Owner only, while live: `id` is no longer an alias. False if it was not one.
    pub(crate) fn remove_alias(&self, id: u64) -> bool {
        let mut list = self.alias_list();
        match list.iter().position(|a| *a == id) {
            Some(i) => {
                list.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Owner only, once the incarnation ended: forget its aliases (sends to them fail by the
    /// generation already; this frees the list).
    pub(crate) fn clear_aliases(&self) {
        *self.alias_list() = Vec::new();
    }

    /// Any thread: true if `id` is a live alias of incarnation `generation`.
    pub(crate) fn has_alias(&self, generation: u32, id: u64) -> bool {
        let list = self.alias_list();
        self.generation() == generation && list.contains(&id)
    }

    /// The current generation (owner's view).
    pub fn generation(&self) -> u32 {
        (self.word.load(Ordering::Acquire) >> COUNT_BITS) as u32
    }

    /// Reserved messages right now (a snapshot).
    pub fn reserved(&self) -> u32 {
        (self.word.load(Ordering::Acquire) & COUNT_MASK) as u32
    }

    /// Any thread: how many reservations incarnation `generation` holds right now (its queue,
    /// the message in hand, messages on their way), or `None` once it ended. A snapshot, to
    /// choose among workers; only a reservation takes room.
    #[inline(always)]
    pub(crate) fn held(&self, generation: u32) -> Option<u32> {
        let current = self.word.load(Ordering::Acquire);
        ((current >> COUNT_BITS) as u32 == generation).then_some((current & COUNT_MASK) as u32)
    }

    /// Owner only, on a closed slot: start a new incarnation with `capacity`, returning its
    /// generation. The capacity is published before the generation that makes it reachable.
    /// No pid of the new generation may exist before this returns (it resets the count).
    pub fn open(&self, capacity: u32) -> u32 {
        self.pool.store(std::ptr::null_mut(), std::sync::atomic::Ordering::Release);
        self.capacity.store(capacity, Ordering::Relaxed);
        self.processed.store(0, Ordering::Relaxed);
        let generation = self.generation();
        // A swap, not a store: see `close`.
        self.word.swap(u64::from(generation) << COUNT_BITS, Ordering::AcqRel);
        generation
    }

    /// Owner only: closes the incarnation `generation` if it holds exactly `finished`
    /// reservations (the messages it finished and has not given back yet, which go back with
    /// it); false, and nothing changed, if it holds more: a message is on its way to it. A
    /// retiring pool worker ends this way, so no message reserved for it arrives at a closed
    /// slot (where its pool would have to admit it again, and could be full by then).
    pub fn close_if_only(&self, generation: u32, finished: u32) -> bool {
        debug_assert!(generation < Self::RETIRED);
        let holding = (u64::from(generation) << COUNT_BITS) | u64::from(finished);
        let closed = u64::from(generation + 1) << COUNT_BITS;
        let done = self.word.compare_exchange(holding, closed, Ordering::AcqRel, Ordering::Acquire).is_ok();
        if done {
            self.processed.store(self.processed.load(Ordering::Relaxed) + u64::from(finished), Ordering::Relaxed);
        }
        done
    }

    /// Owner only: `close`, also returning how many reservations the incarnation held at that
    /// instant (its queue, the message in progress, and messages on their way).
    pub fn close_counting(&self, generation: u32) -> (bool, u32) {
        debug_assert!(generation < Self::RETIRED);
        let next = generation + 1;
        let before = self.word.swap(u64::from(next) << COUNT_BITS, Ordering::AcqRel);
        (next != Self::RETIRED, (before & COUNT_MASK) as u32)
    }

    /// Owner only, while live: a new bound (a pool manager takes no messages of its own: 0).
    pub(crate) fn set_capacity(&self, capacity: u32) {
        self.capacity.store(capacity, Ordering::Release);
    }

    /// The pool this slot's process manages or works for, or null.
    pub(crate) fn pool(&self) -> *const crate::pool::PoolShared {
        self.pool.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Owner only: this slot's process manages or works for `pool` (kept alive by the node).
    pub(crate) fn set_pool(&self, pool: *const crate::pool::PoolShared) {
        self.pool.store(pool.cast_mut(), std::sync::atomic::Ordering::Release);
    }

    /// Owner only: end the incarnation `generation`. Sends to it fail from now on; releases
    /// for it become no-ops. Returns false when the slot is now retired: its generation reached
    /// [`Reservation::RETIRED`], which no pid carries, so every pid of the slot is stale for
    /// good and the slot must not be used again (generations never wrap).
    pub fn close(&self, generation: u32) -> bool {
        debug_assert!(generation < Self::RETIRED);
        let next = generation + 1;
        // A swap rather than a store (slow path: once per process end). It orders this write
        // after any racing compare-and-swap in every model; loom 0.7 lets a plain store slip
        // inside another thread's RMW (tokio-rs/loom#254) and would report impossible results.
        self.word.swap(u64::from(next) << COUNT_BITS, Ordering::AcqRel);
        next != Self::RETIRED
    }

    /// The generation of a retired slot: never the generation of a pid.
    pub const RETIRED: u32 = u32::MAX;

    /// Test support: make a vacant slot's next incarnation `generation`.
    #[doc(hidden)]
    pub fn set_vacant_generation(&self, generation: u32) {
        debug_assert_eq!(self.reserved(), 0);
        self.word.swap(u64::from(generation) << COUNT_BITS, Ordering::AcqRel);
    }

    /// Any thread: reserve room for one message to incarnation `generation`.
    #[inline(always)]
    pub fn try_reserve(&self, generation: u32) -> Result<(), Reserve> {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            if (current >> COUNT_BITS) as u32 != generation {
                return Err(Reserve::Stale);
            }
            let capacity = u64::from(self.capacity.load(Ordering::Relaxed));
            if current & COUNT_MASK >= capacity {
                return Err(Reserve::Full);
            }
            match self.word.compare_exchange_weak(current, current + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }

    /// Any thread: `try_reserve` against `capacity` instead of the slot's own bound (a pool
    /// worker's slot has bound 0, so that a send addressed to it directly finds its pool; the
    /// pool reserves against the workers' real bound).
    #[inline]
    pub(crate) fn try_reserve_within(&self, generation: u32, capacity: u32) -> Result<(), Reserve> {
        self.try_reserve_up_to(generation, capacity, 1).map(drop)
    }

    /// Any thread: reserves up to `want` slots at once against `capacity` (one CAS for a
    /// burst): how many were taken (at least one), as many as `capacity` leaves.
    #[inline]
    pub fn try_reserve_up_to(&self, generation: u32, capacity: u32, want: u32) -> Result<u32, Reserve> {
        let capacity = u64::from(capacity);
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            if (current >> COUNT_BITS) as u32 != generation {
                return Err(Reserve::Stale);
            }
            let held = current & COUNT_MASK;
            if held >= capacity {
                return Err(Reserve::Full);
            }
            let n = (capacity - held).min(u64::from(want));
            match self.word.compare_exchange_weak(current, current + n, Ordering::AcqRel, Ordering::Acquire) {
                // (`n` is at most `want`, a u32.)
                Ok(_) => return Ok(n as u32),
                Err(seen) => current = seen,
            }
        }
    }

    /// Any thread: give back `n` reservations of incarnation `generation` taken and not used.
    /// False, and a no-op, for a closed incarnation (its slots were counted when it closed).
    pub fn release_unused(&self, generation: u32, n: u32) -> bool {
        let n = u64::from(n);
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            if (current >> COUNT_BITS) as u32 != generation || current & COUNT_MASK < n {
                return false;
            }
            match self.word.compare_exchange_weak(current, current - n, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    /// Owner only, while incarnation `generation` is live (so the generation cannot change
    /// under it): `n` messages are finished — give their reservations back with a single atomic
    /// subtraction (no compare-and-swap loop), and count them.
    #[inline]
    pub fn finish_owned(&self, generation: u32, n: u32) {
        debug_assert_eq!(self.generation(), generation);
        debug_assert!(self.reserved() >= n);
        self.word.fetch_sub(u64::from(n), Ordering::AcqRel);
        self.processed.store(self.processed.load(Ordering::Relaxed) + u64::from(n), Ordering::Relaxed);
    }

    /// Messages finished by the current incarnation (a snapshot).
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }

    /// Any thread: give back one reservation of incarnation `generation` (a message finished,
    /// or one that was reserved and then could not be enqueued). A no-op for a closed
    /// incarnation.
    #[inline]
    pub fn release(&self, generation: u32) {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            if (current >> COUNT_BITS) as u32 != generation || current & COUNT_MASK == 0 {
                return;
            }
            match self.word.compare_exchange_weak(current, current - 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(seen) => current = seen,
            }
        }
    }
}

/// Which lane a user message travels in. System traffic (exit signals, down messages, replies)
/// has its own lane, outside the bound, so a full mailbox never blocks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Priority {
    /// Handled before any main-lane message (after system traffic).
    Urgent,
    /// The default lane.
    #[default]
    Main,
}

/// A FIFO of one lane: a ring buffer whose capacity is a power of two. The same job as a
/// `VecDeque`, written out because `VecDeque::push_back` is not inlined (its grow path sits in
/// the same function) and the same-shard send pays a call and a 96-byte copy through it per
/// message; here a push is a check, a masked store and an increment, inlined into the sender.
///
/// INVARIANT: `buf.len()` is 0 or a power of two; `tail - head` (wrapping) is the number of
/// items, at most `buf.len()`; the items are at `buf[i & (len - 1)]` for `i` in `head..tail`,
/// initialized; every other element of `buf` is uninitialized.
pub(crate) struct Lane<T> {
    buf: Box<[MaybeUninit<T>]>,
    head: usize,
    tail: usize,
}

impl<T> Lane<T> {
    pub(crate) fn new() -> Self {
        Lane { buf: Box::new([]), head: 0, tail: 0 }
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.tail.wrapping_sub(self.head)
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head == self.tail
    }

    #[inline]
    pub(crate) fn push_back(&mut self, value: T) {
        if self.len() == self.buf.len() {
            self.grow();
        }
        let mask = self.buf.len() - 1;
        // SAFETY: after `grow` there is a free element; `tail & mask < buf.len()` (a power of
        // two), and that element is uninitialized (it is not in `head..tail`): writing it and
        // then extending `tail` over it keeps the invariant.
        unsafe { self.buf.get_unchecked_mut(self.tail & mask) }.write(value);
        self.tail = self.tail.wrapping_add(1);
    }

    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        if self.is_empty() {
            return None;
        }
        let mask = self.buf.len() - 1;
        // SAFETY: the lane is not empty, so `buf.len() > 0` and the element at `head & mask`
        // is initialized; moving `head` past it marks it uninitialized again, so it is read
        // (moved out) exactly once.
        let value = unsafe { self.buf.get_unchecked(self.head & mask).assume_init_read() };
        self.head = self.head.wrapping_add(1);
        Some(value)
    }

    /// Removes the front item but leaves it where it is: the pointer is to an initialized
    /// item that the caller now owns and must read out (or drop) before the lane is pushed to,
    /// grown or dropped, which may overwrite or free it. A large item is then read field by
    /// field straight to where it goes, instead of being copied out whole first.
    ///
    /// # Safety
    /// The lane holds at least one item (the process loop knows how many it may take).
    #[inline(always)]
    pub(crate) unsafe fn pop_front_in_place(&mut self) -> *mut T {
        debug_assert!(!self.is_empty());
        let mask = self.buf.len() - 1;
        // SAFETY: the caller promises an item, so `buf.len() > 0` and the element at
        // `head & mask` is initialized; moving `head` past it hands it to the caller (the
        // lane will not read or drop it again).
        let item = unsafe { self.buf.get_unchecked_mut(self.head & mask) }.as_mut_ptr();
        self.head = self.head.wrapping_add(1);
        item
    }

    /// Doubles the buffer (at least 16 elements), moving the items to its start in order.
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let len = self.len();
        let capacity = (self.buf.len() * 2).max(16);
        let mut buf: Box<[MaybeUninit<T>]> = (0..capacity).map(|_| MaybeUninit::uninit()).collect();
        for (i, slot) in buf.iter_mut().enumerate().take(len) {
            let from = self.head.wrapping_add(i) & (self.buf.len() - 1);
            // SAFETY: `i < len`, so `from` is the index of the i-th item, initialized; it is
            // read once, and the old buffer (whose elements are `MaybeUninit`) drops nothing.
            slot.write(unsafe { self.buf.get_unchecked(from).assume_init_read() });
        }
        self.buf = buf;
        self.head = 0;
        self.tail = len;
    }
}

impl Lane<Mail> {
    /// Appends `Mail { from, msg: Message::new(value), reply }`, written in place in the
    /// buffer field by field (see `Message::write_new`).
    #[inline(always)]
    pub(crate) fn push_mail<V: Any + Send>(&mut self, from: Pid, value: V, reply: Option<Box<Responder<CallResult>>>) {
        if self.len() == self.buf.len() {
            self.grow();
        }
        let mask = self.buf.len() - 1;
        // SAFETY: as in `push_back`: the element at `tail & mask` exists and is free. Each
        // field of the `Mail` in it is written once (`from`, `reply`, then the message in
        // place), so it is initialized when `tail` moves over it. Nothing here panics.
        unsafe {
            let slot = self.buf.get_unchecked_mut(self.tail & mask).as_mut_ptr();
            (&raw mut (*slot).from).write(from);
            (&raw mut (*slot).reply).write(reply);
            Message::write_new(&raw mut (*slot).msg, value);
        }
        self.tail = self.tail.wrapping_add(1);
    }
}

impl<T> Default for Lane<T> {
    fn default() -> Self {
        Lane::new()
    }
}

impl<T> Drop for Lane<T> {
    fn drop(&mut self) {
        while self.pop_front().is_some() {}
    }
}

impl<T> Iterator for Lane<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.pop_front()
    }
}

impl<T> fmt::Debug for Lane<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lane").field("len", &self.len()).finish()
    }
}

/// The shard-local queues of one process. Every message in `urgent` or `main` holds a
/// reservation; `system` is not counted against the bound, so a full mailbox never blocks an
/// exit signal or a `Down`. Its length is bounded by the process's links and monitors, plus
/// explicit exit signals (`Context::exit`, `NodeHandle::exit`): code that holds a pid can queue
/// those without limit — a runtime-internal path, not one a network client can reach.
#[derive(Debug)]
pub(crate) struct Mailbox<M, S> {
    pub(crate) system: VecDeque<S>,
    pub(crate) urgent: VecDeque<M>,
    pub(crate) main: Lane<M>,
}

impl<M, S> Mailbox<M, S> {
    pub(crate) fn new() -> Self {
        Mailbox { system: VecDeque::new(), urgent: VecDeque::new(), main: Lane::new() }
    }
    pub(crate) fn push(&mut self, priority: Priority, m: M) {
        match priority {
            Priority::Urgent => self.urgent.push_back(m),
            Priority::Main => self.main.push_back(m),
        }
    }
    pub(crate) fn user_len(&self) -> usize {
        self.urgent.len() + self.main.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_keeps_fifo_across_wrap_and_growth() {
        let mut lane = Lane::new();
        let mut expect = VecDeque::new();
        let mut next = 0u64;
        for round in 0..200 {
            for _ in 0..(round % 37) {
                lane.push_back(next);
                expect.push_back(next);
                next += 1;
            }
            for _ in 0..(round % 23) {
                assert_eq!(lane.pop_front(), expect.pop_front());
            }
            assert_eq!(lane.len(), expect.len());
        }
        while let Some(v) = expect.pop_front() {
            assert_eq!(lane.pop_front(), Some(v));
        }
        assert!(lane.is_empty());
        assert_eq!(lane.pop_front(), None);
    }

    #[test]
    fn lane_push_mail_writes_a_whole_mail_in_place() {
        use crate::process::{NodeId, ShardId};
        use std::sync::Arc;
        let from = Pid { node: NodeId(7), shard: ShardId(3), slot: 11, generation: 5 };
        let counter = Arc::new(());
        let mut lane: Lane<Mail> = Lane::new();
        for i in 0..40u64 {
            match i % 3 {
                0 => lane.push_mail(from, i, None),
                1 => lane.push_mail(from, (counter.clone(), i), None),
                _ => lane.push_mail(from, Message::new([i; 8]), None),
            }
        }
        assert_eq!(Arc::strong_count(&counter), 14);
        for i in 0..20u64 {
            let mail = lane.pop_front().unwrap();
            assert!(mail.from == from && mail.reply.is_none());
            match i % 3 {
                0 => assert_eq!(mail.msg.downcast::<u64>().unwrap(), i),
                1 => assert_eq!(mail.msg.downcast::<(Arc<()>, u64)>().unwrap().1, i),
                _ => assert_eq!(mail.msg.downcast::<[u64; 8]>().unwrap(), [i; 8]),
            }
        }
        assert_eq!(Arc::strong_count(&counter), 7);
        drop(lane);
        assert_eq!(Arc::strong_count(&counter), 1);
    }

    #[test]
    fn lane_drops_what_it_still_holds_once() {
        use std::rc::Rc;
        let counter = Rc::new(());
        let mut lane = Lane::new();
        for _ in 0..40 {
            lane.push_back(counter.clone());
        }
        for _ in 0..15 {
            drop(lane.pop_front());
        }
        for _ in 0..10 {
            lane.push_back(counter.clone());
        }
        assert_eq!(Rc::strong_count(&counter), 36);
        drop(lane);
        assert_eq!(Rc::strong_count(&counter), 1);
    }
}
