//! The cross-shard intake of one shard: a lock-free lane per source (each other shard, plus one
//! shared lane for threads outside the runtime) and the `parked` flag of the wake-up protocol.
//!
//! # Park/wake protocol (no lost wake-up, no syscall per message while busy)
//! Consumer, before blocking in `poll`: `parked = true; fence(SeqCst); if any lane is non-empty
//! { parked = false; don't block }`. Producer, after pushing: `fence(SeqCst); if parked &&
//! parked.swap(false) { wake }`. The two SeqCst fences order each side's write before its read,
//! so either the consumer sees the message or the producer sees `parked` (or both: a spurious
//! wake-up, harmless). Only the producer that flips `parked` back makes the wake syscall; while
//! the consumer is running, `parked` is false and producers make none.
//! `tests/loom_inbox.rs` model-checks this.
//!
//! Lanes are unbounded queues, but every user message in them holds a mailbox reservation made
//! by its sender, so their length is bounded by the receivers' capacities. The shard takes at
//! most a budget from each lane a turn (`drain_up_to`), so that what is not bounded so (control
//! requests, signals) cannot keep it from running its processes.
#![allow(unsafe_code, reason = "the lock-free cross-shard inbox")]

use crossbeam_utils::CachePadded;

use crate::loom::{AtomicBool, Ordering, fence};

#[cfg(not(loom))]
type Lane<T> = crossbeam_queue::SegQueue<T>;

/// Under loom, a lane is modelled with atomics mirroring the synchronization of crossbeam's
/// `SegQueue` (index claimed by a `SeqCst` RMW on `tail`, slot published with `Release`,
/// emptiness read with `SeqCst` loads), not with a mutex: a mutex's acquire/release on every
/// access would itself order the park/wake handshake and hide a missing fence.
#[cfg(loom)]
struct Lane<T> {
    slots: Box<[Slot<T>]>,
    /// Next index a producer claims.
    tail: loom::sync::atomic::AtomicUsize,
    /// Next index the (single) consumer reads.
    head: loom::sync::atomic::AtomicUsize,
}

#[cfg(loom)]
struct Slot<T> {
    ready: AtomicBool,
    value: loom::cell::UnsafeCell<Option<T>>,
}

// SAFETY: a slot's value is written only by the producer that claimed its index (a unique
// `fetch_add` on `tail`) before it publishes `ready` (Release), and read only by the consumer
// after it observed `ready` (Acquire); values move between threads, so `T: Send` suffices.
#[cfg(loom)]
unsafe impl<T: Send> Sync for Lane<T> {}
// SAFETY: as above; the lane owns its values.
#[cfg(loom)]
unsafe impl<T: Send> Send for Lane<T> {}

#[cfg(loom)]
impl<T> std::fmt::Debug for Lane<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane").finish_non_exhaustive()
    }
}

#[cfg(loom)]
impl<T> Lane<T> {
    /// Pushes per lane a loom model may make.
    const CAPACITY: usize = 4;

    fn new() -> Self {
        Lane {
            slots: (0..Self::CAPACITY)
                .map(|_| Slot { ready: AtomicBool::new(false), value: loom::cell::UnsafeCell::new(None) })
                .collect(),
            tail: loom::sync::atomic::AtomicUsize::new(0),
            head: loom::sync::atomic::AtomicUsize::new(0),
        }
    }
    fn push(&self, t: T) {
        let i = self.tail.fetch_add(1, Ordering::SeqCst);
        assert!(i < Self::CAPACITY, "loom lane model: more than {} pushes", Self::CAPACITY);
        let slot = &self.slots[i];
        // SAFETY: index `i` was claimed by this producer alone; the consumer reads it only
        // after `ready` (Release below, Acquire in `pop`).
        slot.value.with_mut(|v| unsafe { *v = Some(t) });
        slot.ready.store(true, Ordering::Release);
    }
    fn pop(&self) -> Option<T> {
        let h = self.head.load(Ordering::Relaxed);
        if h == self.tail.load(Ordering::SeqCst) {
            return None;
        }
        let slot = &self.slots[h];
        while !slot.ready.load(Ordering::Acquire) {
            loom::thread::yield_now();
        }
        // SAFETY: the producer published the slot (`ready`, Acquire) and never touches it again.
        let t = slot.value.with_mut(|v| unsafe { (*v).take() });
        self.head.store(h + 1, Ordering::SeqCst);
        t
    }
    fn is_empty(&self) -> bool {
        self.head.load(Ordering::SeqCst) == self.tail.load(Ordering::SeqCst)
    }
}

/// A multi-lane intake with a park flag. Producers call [`Inbox::push`]; the one consumer calls
/// [`Inbox::drain`], [`Inbox::park`] and [`Inbox::unpark`].
#[doc(hidden)]
pub struct Inbox<T> {
    lanes: Box<[CachePadded<Lane<T>>]>,
    parked: CachePadded<AtomicBool>,
}

impl<T> std::fmt::Debug for Inbox<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").field("lanes", &self.lanes.len()).finish()
    }
}

impl<T> Inbox<T> {
    /// An inbox with `lanes` lanes, consumer awake.
    pub fn new(lanes: usize) -> Self {
        Inbox {
            lanes: (0..lanes).map(|_| CachePadded::new(Lane::new())).collect(),
            parked: CachePadded::new(AtomicBool::new(false)),
        }
    }

    /// Producer: push `item` into `lane`. Returns true when the consumer is parked (or about to
    /// park) and the caller must wake it; at most one of racing producers gets true.
    #[inline]
    pub fn push(&self, lane: usize, item: T) -> bool {
        self.lanes[lane].push(item);
        fence(Ordering::SeqCst);
        self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel)
    }

    /// Pop everything queued now, lane by lane, in FIFO order per lane. The shard calls it as
    /// the consumer; the real lanes are multi-consumer, so after the shard closed, producers
    /// may call it to drop what is left (the loom lane models the single consumer only).
    pub fn drain(&self, f: impl FnMut(T)) -> usize {
        self.drain_up_to(usize::MAX, f)
    }

    /// [`drain`](Self::drain), at most `per_lane` items from each lane: what the shard takes in
    /// a turn. A producer that pushes as fast as the shard pops (a thread calling `resize` in a
    /// loop, each call queuing a worker's start) kept an unbounded drain going, and the shard
    /// ran none of its processes meanwhile (review 72). What is left stays queued, in order,
    /// for the next turn (and `park` finds it, so the shard does not block on it).
    pub fn drain_up_to(&self, per_lane: usize, mut f: impl FnMut(T)) -> usize {
        let mut n = 0;
        for lane in self.lanes.iter() {
            // Two loads for an empty lane (most of them, most turns) instead of a `pop`'s
            // block walk and fences.
            if lane.is_empty() {
                continue;
            }
            let mut left = per_lane;
            while left > 0
                && let Some(item) = lane.pop()
            {
                f(item);
                n += 1;
                left -= 1;
            }
        }
        n
    }

    /// Consumer: true if some lane holds an item.
    pub fn has_items(&self) -> bool {
        self.lanes.iter().any(|l| !l.is_empty())
    }

    /// Consumer, before blocking: announce the park, then re-check. Returns true when the
    /// consumer may block (a producer that pushes from now on will see the flag); false when
    /// items arrived meanwhile (the flag is withdrawn).
    ///
    /// `parked` is written with swaps, not stores, on these slow paths: loom 0.7 can let a plain
    /// store slip between another thread's read and write of an RMW (tokio-rs/loom#254), which
    /// reports lost wake-ups that cannot happen; with RMWs the model is exact.
    pub fn park(&self) -> bool {
        self.parked.swap(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.has_items() {
            self.parked.swap(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Consumer, after waking (by a producer, a timer or I/O).
    pub fn unpark(&self) {
        self.parked.swap(false, Ordering::Relaxed);
    }
}
