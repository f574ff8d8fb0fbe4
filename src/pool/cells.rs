//! Where a pool keeps its workers so that senders on every thread can scan them without a
//! lock: an append-only segmented array of worker cells (a cell never moves, so a reference
//! into it stays valid), and per shard the list of cells placed there.
//!
//! Writers (start, restart, resize) hold the pool's control lock; readers (senders) only load.
#![allow(unsafe_code, reason = "worker cells in chunks that never move, published once")]

use std::sync::OnceLock;
use std::sync::atomic::{AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crossbeam_utils::CachePadded;

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
pub(crate) const EMPTY: u64 = u64::MAX;

/// What a cell's worker is doing.
pub(crate) mod state {
    /// Not started yet, or between a crash and its replacement.
    pub(crate) const DOWN: u32 = 0;
    /// Started: its capacity is in the gate.
    pub(crate) const LIVE: u32 = 1;
    /// Being removed by a resize: its capacity left the gate; it finishes its queue and ends.
    pub(crate) const RETIRING: u32 = 2;
    /// Removed for good.
    pub(crate) const GONE: u32 = 3;
}

/// One worker position of a pool: its shard, its current process, and its counters. A crashed
/// worker's replacement takes the same cell.
#[derive(Debug)]
pub(crate) struct WorkerCell {
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

pub(crate) fn pack(slot: u32, generation: u32) -> u64 {
    (u64::from(slot) << 32) | u64::from(generation)
}

pub(crate) fn unpack(packed: u64) -> (u32, u32) {
    ((packed >> 32) as u32, packed as u32)
}

/// The cells placed on one shard, in scan order, and where the next scan starts. Entries point
/// into the pool's `Segmented<WorkerCell>` (cells never move, and live as long as the pool).
pub(crate) struct ShardWorkers {
    pub(crate) cells: Segmented<AtomicPtr<WorkerCell>>,
    pub(crate) len: AtomicUsize,
    /// Round robin among this shard's workers (relaxed: a lost update only skews the spread).
    pub(crate) cursor: AtomicUsize,
}

impl ShardWorkers {
    pub(crate) fn new() -> CachePadded<Self> {
        CachePadded::new(ShardWorkers {
            cells: Segmented::new(),
            len: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
        })
    }

    /// The cell at position `pos` (< len).
    #[inline]
    pub(crate) fn at(&self, pos: usize) -> Option<&WorkerCell> {
        let ptr = self.cells.get(pos)?.load(Ordering::Acquire);
        // SAFETY: a non-null entry was stored by `push` from a reference into the pool's
        // `Segmented<WorkerCell>`, whose elements never move and are dropped only with the
        // pool, which owns this list too: the cell outlives `&self`.
        unsafe { ptr.as_ref() }
    }

    /// Control lock held: appends `cell`.
    pub(crate) fn push(&self, cell: &WorkerCell) -> bool {
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

    /// Control lock held: removes and returns the last cell.
    pub(crate) fn pop(&self) -> Option<&WorkerCell> {
        let len = self.len.load(Ordering::Relaxed);
        let cell = self.at(len.checked_sub(1)?)?;
        self.len.store(len - 1, Ordering::Release);
        Some(cell)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
