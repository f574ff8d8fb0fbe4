//! The pool's admission word, and admission itself: one slot of the pool, then one slot of a
//! worker.
//!
//! # Why two words
//! Each worker's [`Reservation`](crate::process::mailbox::Reservation) bounds that worker; the pool's [`Gate`] bounds the pool. A
//! sender first takes a gate slot (one compare-and-swap on one word), and only then looks for a
//! worker with room. So "the pool is full" is decided at one point in time, on one word, and
//! the pool never sheds while it holds fewer than its capacity — even while slots move from one
//! worker to another under the sender's scan. Without the gate, a scan that found worker A
//! full and then worker B full could shed although A had freed a slot in between.
//!
//! The gate's capacity is the sum of its live workers' capacities (`mailbox + 1` each). A
//! message holds its gate slot from admission until its worker *finished* it; the worker gives
//! its own slot back first, then the gate slot. So at every instant
//! `worker slots held ≤ gate slots held − senders still scanning`: a sender that passed the
//! gate always has a worker with room somewhere, and a scan that misses it only does so because
//! another sender took a slot meanwhile (lock-free progress). A bounded number of scans guards
//! the moments when that sum does not hold — a worker restarting or retiring — where the
//! sender gives its gate slot back and is told the pool is full.

use crate::loom::{AtomicU64, Ordering};

const COUNT_BITS: u32 = 32;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Capacity (high 32 bits) and slots held (low 32 bits) of one pool, in one word.
///
/// INVARIANT: `held` only grows past `capacity` by `force_acquire` or when capacity is taken
/// away; `try_acquire` never takes a slot at or above capacity.
#[repr(align(64))]
#[derive(Debug)]
#[doc(hidden)]
pub struct Gate {
    word: AtomicU64,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    /// A gate with no capacity.
    pub fn new() -> Self {
        Gate { word: AtomicU64::new(0) }
    }

    /// Slots held right now (a snapshot).
    pub fn held(&self) -> u32 {
        (self.word.load(Ordering::Acquire) & COUNT_MASK) as u32
    }

    /// Capacity right now (a snapshot).
    pub fn capacity(&self) -> u32 {
        (self.word.load(Ordering::Acquire) >> COUNT_BITS) as u32
    }

    /// Takes one slot if fewer than `capacity` are held.
    #[inline]
    pub fn try_acquire(&self) -> bool {
        self.try_acquire_up_to(1) == 1
    }

    /// Takes up to `want` slots at once, as many as capacity leaves (0 when the pool is full):
    /// one compare-and-swap for a burst of requests a connection has already read.
    #[inline]
    pub fn try_acquire_up_to(&self, want: u32) -> u32 {
        let mut current = self.word.load(Ordering::Acquire);
        loop {
            let (held, capacity) = (current & COUNT_MASK, current >> COUNT_BITS);
            if held >= capacity {
                return 0;
            }
            let n = (capacity - held).min(u64::from(want));
            match self.word.compare_exchange_weak(current, current + n, Ordering::AcqRel, Ordering::Acquire) {
                // (`n` is at most `want`, a u32.)
                Ok(_) => return n as u32,
                Err(seen) => current = seen,
            }
        }
    }

    /// Takes one slot whatever the capacity (a runtime-internal message, such as the marker that
    /// retires a worker, which is finished and released like any other).
    pub fn force_acquire(&self) {
        self.word.fetch_add(1, Ordering::AcqRel);
    }

    /// Gives `n` slots back (messages finished, or admitted and then not placed).
    #[inline]
    pub fn release(&self, n: u32) {
        if n > 0 {
            let before = self.word.fetch_sub(u64::from(n), Ordering::AcqRel);
            debug_assert!(before & COUNT_MASK >= u64::from(n), "gate released more than it held");
        }
    }

    /// A worker with `n` slots joined (started, or restarted).
    pub fn add_capacity(&self, n: u32) {
        self.word.fetch_add(u64::from(n) << COUNT_BITS, Ordering::AcqRel);
    }

    /// A worker with `n` slots left (ended, or retiring). Slots held above the new capacity
    /// are given back as their messages finish; until then the gate admits nothing.
    pub fn remove_capacity(&self, n: u32) {
        let before = self.word.fetch_sub(u64::from(n) << COUNT_BITS, Ordering::AcqRel);
        debug_assert!(before >> COUNT_BITS >= u64::from(n), "gate capacity below zero");
    }
}

/// The outcome of [`admit`].
#[derive(Debug, PartialEq, Eq)]
#[doc(hidden)]
pub enum Admit<T> {
    /// A gate slot and a worker slot were taken; `T` says which worker.
    Placed(T),
    /// The gate was at capacity: the pool is full.
    Full,
    /// The gate admitted, but no worker had room in `rounds` scans (a worker was restarting or
    /// retiring); the gate slot was given back.
    NoRoom,
}

/// Admits one message: a gate slot, then up to `rounds` scans of `try_place`, which reserves
/// a slot of some worker and says which one.
#[inline]
pub fn admit<T>(gate: &Gate, rounds: usize, mut try_place: impl FnMut() -> Option<T>) -> Admit<T> {
    if !gate.try_acquire() {
        return Admit::Full;
    }
    for _ in 0..rounds {
        if let Some(placed) = try_place() {
            return Admit::Placed(placed);
        }
    }
    gate.release(1);
    Admit::NoRoom
}
