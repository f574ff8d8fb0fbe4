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
//! by its sender, so their length is bounded by the receivers' capacities.

use crossbeam_utils::CachePadded;

use crate::loom::{AtomicBool, Ordering, fence};

#[cfg(not(loom))]
type Lane<T> = crossbeam_queue::SegQueue<T>;

#[cfg(loom)]
#[derive(Debug)]
struct Lane<T>(loom::sync::Mutex<std::collections::VecDeque<T>>);

#[cfg(loom)]
impl<T> Lane<T> {
    fn new() -> Self {
        Lane(loom::sync::Mutex::new(std::collections::VecDeque::new()))
    }
    fn push(&self, t: T) {
        self.0.lock().unwrap().push_back(t)
    }
    fn pop(&self) -> Option<T> {
        self.0.lock().unwrap().pop_front()
    }
    fn is_empty(&self) -> bool {
        self.0.lock().unwrap().is_empty()
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
    /// the consumer; lanes are multi-consumer, so after the shard closed, producers may call it
    /// to drop what is left.
    pub fn drain(&self, mut f: impl FnMut(T)) -> usize {
        let mut n = 0;
        for lane in self.lanes.iter() {
            while let Some(item) = lane.pop() {
                f(item);
                n += 1;
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
    pub fn park(&self) -> bool {
        self.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.has_items() {
            self.parked.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Consumer, after waking (by a producer, a timer or I/O).
    pub fn unpark(&self) {
        self.parked.store(false, Ordering::Relaxed);
    }
}
