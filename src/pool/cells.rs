//! Where a pool keeps its workers so that senders on every thread can scan them without a
//! lock: an append-only segmented array of worker cells (a cell never moves, so a reference
//! into it stays valid), and per shard the list of cells placed there.
//!
//! A shard's list is written (`add`, `pop`) under the pool's control lock; readers (senders)
//! only load. A cell's `state` is moved by its worker's shard (start, end) and by `resize`
//! (retire) without a common lock: the transitions below are the only writers of `state`, each
//! paired with what it does to the pool's [`Gate`] (modelled by `tests/loom_cells.rs`).
#![allow(unsafe_code, reason = "worker cells in chunks that never move, published once")]

use std::sync::OnceLock;

use crossbeam_utils::CachePadded;

use super::gate::Gate;
use crate::loom::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Elements in the first chunk; chunk `k` holds `FIRST << k`.
const FIRST: usize = 16;
const CHUNKS: usize = 20;

/// An append-only array whose elements never move: chunk `k` starts at `FIRST * (2^k - 1)`.
pub(crate) struct Segmented<T> {
    chunks: [OnceLock<Box<[T]>>; CHUNKS],
}

impl<T: Default> Segmented<T> {
    pub(crate) fn new() -> Self {
        Segmented { chunks: std::array::from_fn(|_| OnceLock::new()) }
    }

    fn locate(i: usize) -> (usize, usize) {
        let k = (usize::BITS - 1 - (i / FIRST + 1).leading_zeros()) as usize;
        (k, i - FIRST * ((1 << k) - 1))
    }

    /// The element at `i`, if its chunk exists.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        let (k, off) = Self::locate(i);
        self.chunks.get(k)?.get()?.get(off)
    }

    /// The element at `i`, allocating its chunk. `None` past the last chunk (~16 M elements).
    pub(crate) fn get_or_alloc(&self, i: usize) -> Option<&T> {
        let (k, off) = Self::locate(i);
        self.chunks.get(k)?.get_or_init(|| (0..FIRST << k).map(|_| T::default()).collect()).get(off)
    }
}

/// The packed pid of an empty cell.
pub const EMPTY: u64 = u64::MAX;

/// What a cell's worker is doing.
pub mod state {
    /// Not started yet, or between a crash and its replacement.
    pub const DOWN: u32 = 0;
    /// Started: its capacity is in the gate.
    pub const LIVE: u32 = 1;
    /// Being removed by a resize: its capacity left the gate; it finishes its queue and ends.
    pub const RETIRING: u32 = 2;
    /// Removed for good.
    pub const GONE: u32 = 3;
}

/// One worker position of a pool: its shard, its current process, and its counters. A crashed
/// worker's replacement takes the same cell.
#[derive(Debug)]
#[doc(hidden)]
pub struct WorkerCell {
    pub(crate) shard: AtomicU32,
    /// `slot << 32 | generation` of the current process, or [`EMPTY`].
    pub(crate) pid: AtomicU64,
    pub(crate) state: AtomicU32,
    pub(crate) restarts: AtomicU64,
    /// Messages of this worker that could be neither handed to another worker nor kept.
    pub(crate) shed: AtomicU64,
}

impl Default for WorkerCell {
    fn default() -> Self {
        WorkerCell {
            shard: AtomicU32::new(0),
            pid: AtomicU64::new(EMPTY),
            state: AtomicU32::new(state::DOWN),
            restarts: AtomicU64::new(0),
            shed: AtomicU64::new(0),
        }
    }
}

/// What [`WorkerCell::retire`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[doc(hidden)]
pub enum Retired {
    /// Not started yet, or between a crash and its replacement: now GONE (the worker that
    /// starts in it finds so and retires). Its capacity was not in the gate.
    NotStarted,
    /// Was LIVE: now RETIRING, its capacity taken out of the gate; its worker must be told.
    Retiring,
    /// Already retiring or gone: it no longer counted in the pool's size.
    NotCounted,
}

impl WorkerCell {
    /// What its worker is doing (a [`state`]), now.
    pub fn state(&self) -> u32 {
        self.state.load(Ordering::SeqCst)
    }

    /// The shard it is placed on (relaxed: published with the cell by [`ShardWorkers::add`]).
    pub fn shard(&self) -> u32 {
        self.shard.load(Ordering::Relaxed)
    }

    /// The packed pid of its worker, or [`EMPTY`].
    pub fn pid(&self) -> u64 {
        self.pid.load(Ordering::SeqCst)
    }

    /// Its worker started as `pid` (packed; its slot is open): the pid is published, and the
    /// cell goes DOWN → LIVE with `capacity` added to `gate`. False when a resize retired the
    /// cell before (it is GONE): its capacity is not in the gate, and the worker must retire.
    ///
    /// The capacity goes in *before* the cell is LIVE (and comes back out if it could not
    /// be): a LIVE cell's capacity is always in the gate, so `retire` (LIVE → RETIRING, from
    /// another thread) and `end` never take out a capacity not yet added. Added after, a
    /// retire landing between the two took it out first: with no other worker's capacity in
    /// the gate the word's capacity wrapped to ~2^32 (the gate admitting everything) until the
    /// add, and a debug build panicked in `resize` ("gate capacity below zero").
    pub fn start(&self, pid: u64, gate: &Gate, capacity: u32) -> bool {
        self.pid.store(pid, Ordering::SeqCst);
        gate.add_capacity(capacity);
        let live = self.state.compare_exchange(state::DOWN, state::LIVE, Ordering::SeqCst, Ordering::SeqCst).is_ok();
        if !live {
            gate.remove_capacity(capacity);
        }
        live
    }

    /// Its worker `pid` (packed) ended: the cell no longer names it (unless a replacement
    /// already took it).
    pub fn clear_pid(&self, pid: u64) {
        let _ = self.pid.compare_exchange(pid, EMPTY, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Its worker ended: the cell goes DOWN (to be replaced) if `restart`, else GONE; if it
    /// was LIVE, its capacity leaves `gate`. Returns what the state was.
    pub fn end(&self, restart: bool, gate: &Gate, capacity: u32) -> u32 {
        let was = self.state.swap(if restart { state::DOWN } else { state::GONE }, Ordering::SeqCst);
        if was == state::LIVE {
            gate.remove_capacity(capacity);
        }
        was
    }

    /// Removed for good (its worker ended and is not replaced, or its start failed under
    /// `resize`, or the pool gave up).
    pub fn set_gone(&self) {
        self.state.store(state::GONE, Ordering::SeqCst);
    }

    /// Control lock held: a worker added by `resize` failed to start. True when the cell
    /// counted in the pool's size until now (it was DOWN, now GONE); false when a resize
    /// retired it meanwhile.
    pub fn start_failed(&self) -> bool {
        self.state.compare_exchange(state::DOWN, state::GONE, Ordering::SeqCst, Ordering::SeqCst).is_ok()
    }

    /// Control lock held, the cell already out of its shard's list: a resize removes it.
    ///
    /// One compare-and-swap from the state seen, retried on the state that replaced it: as two
    /// fixed ones (DOWN → GONE, else LIVE → RETIRING), a crash's LIVE → DOWN landing between
    /// them failed both, and the cell counted as already gone although it still counted in the
    /// size: its replacement then started LIVE in no shard's list (its capacity in the gate,
    /// no sender finding it), and `resize` retired another worker in its place.
    pub fn retire(&self, gate: &Gate, capacity: u32) -> Retired {
        let mut current = self.state.load(Ordering::SeqCst);
        loop {
            let next = match current {
                state::DOWN => state::GONE,
                state::LIVE => state::RETIRING,
                _ => return Retired::NotCounted,
            };
            match self.state.compare_exchange(current, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => break,
                Err(seen) => current = seen,
            }
        }
        if current == state::DOWN {
            return Retired::NotStarted;
        }
        gate.remove_capacity(capacity);
        Retired::Retiring
    }
}

/// `slot << 32 | generation`: a pid as a cell holds it.
pub fn pack(slot: u32, generation: u32) -> u64 {
    (u64::from(slot) << 32) | u64::from(generation)
}

/// The slot and generation of a packed pid.
pub fn unpack(packed: u64) -> (u32, u32) {
    ((packed >> 32) as u32, packed as u32)
}

/// The cells placed on one shard, in scan order, and where the next scan starts. Entries point
/// into the pool's `Segmented<WorkerCell>` (cells never move, and live as long as the pool).
#[doc(hidden)]
pub struct ShardWorkers {
    pub(crate) cells: Segmented<AtomicPtr<WorkerCell>>,
    pub(crate) len: AtomicUsize,
    /// Round robin among this shard's workers (relaxed: a lost update only skews the spread).
    pub(crate) cursor: AtomicUsize,
}

impl std::fmt::Debug for ShardWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardWorkers").field("len", &self.len()).finish_non_exhaustive()
    }
}

impl ShardWorkers {
    /// An empty list.
    pub fn new() -> CachePadded<Self> {
        CachePadded::new(ShardWorkers {
            cells: Segmented::new(),
            len: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
        })
    }

    /// How many cells are listed, now (what a sender's scan goes by).
    #[inline]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// No cell listed, now.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cell at position `pos` (< len).
    #[inline]
    pub fn at(&self, pos: usize) -> Option<&WorkerCell> {
        let ptr = self.cells.get(pos)?.load(Ordering::Acquire);
        // SAFETY: a non-null entry was stored by `push` from a reference into the pool's
        // `Segmented<WorkerCell>`, whose elements never move and are dropped only with the
        // pool, which owns this list too: the cell outlives `&self`.
        unsafe { ptr.as_ref() }
    }

    /// Control lock held: places `cell` (not listed anywhere) on this list, the list of shard
    /// `shard`, as a worker not started yet. False when the list is full.
    pub fn add(&self, cell: &WorkerCell, shard: u32) -> bool {
        cell.shard.store(shard, Ordering::Relaxed);
        cell.state.store(state::DOWN, Ordering::SeqCst);
        self.push(cell)
    }

    /// Control lock held: appends `cell`.
    pub fn push(&self, cell: &WorkerCell) -> bool {
        let len = self.len.load(Ordering::Relaxed);
        match self.cells.get_or_alloc(len) {
            Some(c) => {
                c.store(std::ptr::from_ref(cell).cast_mut(), Ordering::Release);
                self.len.store(len + 1, Ordering::Release);
                true
            }
            None => false,
        }
    }

    /// Control lock held: takes `cell` out of the list, if it is listed (a worker added by
    /// `resize` that failed to start). The last cell takes its place: a sender scanning
    /// meanwhile may see that cell twice, never a cell out of the pool (every entry it can read
    /// points into the pool's cells). True if it was listed.
    pub fn remove(&self, cell: &WorkerCell) -> bool {
        let len = self.len.load(Ordering::Relaxed);
        let Some(pos) = (0..len).find(|&i| self.at(i).is_some_and(|c| std::ptr::eq(c, cell))) else {
            return false;
        };
        if pos + 1 < len
            && let (Some(last), Some(entry)) = (self.at(len - 1), self.cells.get(pos))
        {
            entry.store(std::ptr::from_ref(last).cast_mut(), Ordering::Release);
        }
        self.len.store(len - 1, Ordering::Release);
        true
    }

    /// Control lock held: removes and returns the last cell.
    pub fn pop(&self) -> Option<&WorkerCell> {
        let len = self.len.load(Ordering::Relaxed);
        let cell = self.at(len.checked_sub(1)?)?;
        self.len.store(len - 1, Ordering::Release);
        Some(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn segmented_indices_map_to_distinct_stable_elements() {
        let s: Segmented<AtomicU32> = Segmented::new();
        for i in 0..5000 {
            s.get_or_alloc(i).unwrap().store(i as u32, Ordering::Relaxed);
        }
        for i in 0..5000 {
            assert_eq!(s.get(i).unwrap().load(Ordering::Relaxed), i as u32);
        }
        assert!(s.get(FIRST * ((1 << CHUNKS) - 1)).is_none());
        assert_eq!(Segmented::<AtomicU32>::locate(0), (0, 0));
        assert_eq!(Segmented::<AtomicU32>::locate(FIRST - 1), (0, FIRST - 1));
        assert_eq!(Segmented::<AtomicU32>::locate(FIRST), (1, 0));
        assert_eq!(Segmented::<AtomicU32>::locate(3 * FIRST), (2, 0));
    }
}
