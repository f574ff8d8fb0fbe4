//! The timers of one shard (`send_after`, call timeouts, HTTP header/idle timeouts): a
//! hierarchical hashed timing wheel, owned by the shard thread and never shared.
//!
//! # Layout
//! Time is counted in 1 ms ticks since the wheel's origin (the `now` given to
//! [`TimerWheel::new`]). There are [`LEVELS`] = 6 levels of [`SLOTS`] = 64 slots; a slot of level
//! `l` spans `64^l` ticks, so the wheel spans `64^6` ms (about 795 days). Read a tick as six base-64
//! digits: a timer due at tick `when` is filed at the highest digit in which `when` differs from
//! the current tick `elapsed`, in the slot named by `when`'s digit there. Hence every occupied
//! slot lies strictly after its level's current slot, and all timers of a level are due before
//! any timer of the level above.
//!
//! Each level has a `u64` occupancy bitmap, so the next occupied slot of a level is one
//! `rotate_right` + `trailing_zeros`, and the next slot to process overall is found in
//! O([`LEVELS`]). [`TimerWheel::advance`] jumps from occupied slot to occupied slot, never tick by
//! tick, so a jump of ten minutes (or ten years) costs O(levels) plus the work per timer. When
//! time reaches the start of a slot, its timers are processed: the due ones fire, the others
//! cascade to a lower level (each timer cascades at most [`LEVELS`] - 1 times, plus one re-filing
//! per [`MAX_DELTA`] ticks for clamped deadlines).
//!
//! Timers live in a [`Slab`]; every slot is an intrusive doubly-linked list threaded through the
//! slab by index, so insert and cancel are O(1) and allocation-free once the slab has grown. A
//! generation counter per slab slot makes the key of a fired or cancelled timer stale, even after
//! the slab slot is reused.
//!
//! # Semantics
//! - Deadlines are rounded *up* to a whole tick and `now` is rounded *down*: a timer never fires
//!   before its deadline, and fires at the first `advance(now)` whose `now` reaches its deadline
//!   rounded up to a whole millisecond since the origin (so up to 1 ms late, plus poll latency).
//! - A deadline at or before the latest `now` (given to `new` or `advance`) fires on the next
//!   `advance`, whatever its `now`.
//! - Time never goes backwards: an `advance(now)` with `now` before an earlier one acts as that
//!   earlier one.
//! - Deadlines more than [`MAX_DELTA`] ticks (about 783 days) ahead are filed at that distance and
//!   re-filed when it arrives, as often as needed; they still fire no earlier than asked. Ticks
//!   saturate at [`MAX_TICK`] (2^62 ms, about 146 million years).
//! - Within one `advance`, timers fire in non-decreasing order of rounded deadline; timers with
//!   the same rounded deadline fire in insertion order, except that timers inserted already due
//!   (see above) all come first, in insertion order.

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

use slab::Slab;

/// Bits of a tick that select the slot within one level.
const SLOT_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
/// Mask selecting one level's digit of a tick (after shifting).
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// Number of levels.
const LEVELS: usize = 6;
/// Ticks spanned by the whole wheel: `64^6` ms, about 795 days.
const WHEEL_SPAN: u64 = 1 << (SLOT_BITS as usize * LEVELS);
/// Farthest a timer is filed ahead of the current tick. One top-level slot short of the span, so
/// a top-level slot holding timers of the next rotation is never the current top-level slot
/// (whose start would otherwise be ambiguous).
const MAX_DELTA: u64 = WHEEL_SPAN - (WHEEL_SPAN >> SLOT_BITS) - 1;
/// Ticks saturate here (2^62 ms, about 146 million years), keeping tick arithmetic overflow-free.
const MAX_TICK: u64 = 1 << 62;
/// Index of the list of timers that were already due when inserted.
const DUE_LIST: usize = LEVELS * SLOTS;
/// Number of intrusive lists: one per slot of every level, plus [`DUE_LIST`].
const LISTS: usize = DUE_LIST + 1;
/// Null link of the intrusive lists.
const NIL: u32 = u32::MAX;

/// Handle to cancel a timer; stale (cancel returns `None`) once the timer fired or was cancelled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct TimerKey {
    /// Index of the timer in the wheel's slab.
    slot: u32,
    /// Generation of that slab slot when the timer was inserted.
    generation: u32,
}

/// A pending timer, linked into exactly one list.
struct Entry<T> {
    /// What `advance` hands back when the timer fires.
    value: T,
    /// Deadline in ticks since the origin, rounded up.
    when: u64,
    /// Previous entry in the same list, or [`NIL`].
    prev: u32,
    /// Next entry in the same list, or [`NIL`].
    next: u32,
    /// The list holding this entry: `level * SLOTS + slot`, or [`DUE_LIST`].
    list: u16,
}

/// Ends of one intrusive list of slab indices.
#[derive(Clone, Copy)]
struct List {
    /// First entry, or [`NIL`] when empty.
    head: u32,
    /// Last entry, or [`NIL`] when empty.
    tail: u32,
}

/// A hierarchical hashed timing wheel of 6 levels × 64 slots with a 1 ms tick (see module docs).
pub(crate) struct TimerWheel<T> {
    /// Instant of tick 0.
    origin: Instant,
    /// Latest `now` given to `new` or `advance`.
    now: Instant,
    /// Every tick up to and including this one has been processed: `now` rounded down.
    elapsed: u64,
    /// Where the tick after `elapsed` begins: an `advance` to before it finds nothing to do
    /// unless a timer was inserted already due (every occupied slot starts after `elapsed`).
    /// A shard advances the wheel every turn, many turns per tick under load: this spares
    /// them the tick arithmetic and the slot scan.
    next_tick_at: Instant,
    /// [`next_slot`](Self::next_slot)'s answer while neither `occupied` nor `elapsed` changed
    /// (`None`: to be computed). A shard asks for it before every wait.
    next_cached: Cell<Option<Option<(usize, u64)>>>,
    /// The pending timers.
    entries: Slab<Entry<T>>,
    /// Generation of each slab slot, bumped whenever its timer fires or is cancelled.
    generations: Vec<u32>,
    /// The slot lists of every level, then [`DUE_LIST`].
    lists: Box<[List; LISTS]>,
    /// Per level, bit `s` is set iff slot `s` of that level is non-empty.
    occupied: [u64; LEVELS],
}

impl<T> TimerWheel<T> {
    /// Creates an empty wheel whose tick 0 is `now`.
    pub(crate) fn new(now: Instant) -> Self {
        TimerWheel {
            origin: now,
            now,
            elapsed: 0,
            next_tick_at: now.checked_add(Duration::from_millis(1)).unwrap_or(now),
            next_cached: Cell::new(None),
            entries: Slab::new(),
            generations: Vec::new(),
            lists: Box::new([List { head: NIL, tail: NIL }; LISTS]),
            occupied: [0; LEVELS],
        }
    }

    /// Schedules `value` to fire at `deadline` (rounded up to the next 1 ms tick) and returns
    /// the key that cancels it. A deadline at or before the latest `now` fires on the next
    /// `advance`; one beyond the wheel's span is clamped and re-filed, never fired early.
    ///
    /// # Panics
    /// If `u32::MAX - 1` timers are already pending (tens of gigabytes of timers).
    pub(crate) fn insert(&mut self, deadline: Instant, value: T) -> TimerKey {
        let idx = u32::try_from(self.entries.vacant_key())
            .ok()
            .filter(|&idx| idx != NIL)
            .expect("TimerWheel: too many pending timers");
        let when = self.tick_ceil(deadline);
        let key = self.entries.insert(Entry { value, when, prev: NIL, next: NIL, list: 0 });
        debug_assert_eq!(key, idx as usize);
        if key >= self.generations.len() {
            self.generations.resize(key + 1, 0);
        }
        if deadline <= self.now || when <= self.elapsed {
            self.push_back(DUE_LIST, idx);
        } else {
            self.file(idx);
        }
        TimerKey { slot: idx, generation: self.generations[key] }
    }

    /// Cancels the timer of `key` in O(1) and returns its value, or `None` if the key is stale
    /// (the timer already fired or was cancelled).
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<T> {
        let idx = key.slot as usize;
        if self.generations.get(idx) != Some(&key.generation) || !self.entries.contains(idx) {
            return None;
        }
        self.unlink(key.slot);
        Some(self.release(key.slot))
    }

    /// The earliest instant at which [`advance`](Self::advance) could fire or cascade
    /// something; `None` when the wheel is empty.
    ///
    /// Never later than the earliest pending deadline rounded up to its tick. It may be earlier
    /// by cascading granularity: for a timer filed at level `l` it is the start of its slot, less
    /// than `64^l` ms before the deadline (at most [`LEVELS`] - 1 such early wake-ups per timer,
    /// each moving it down a level; a clamped timer also wakes where it was clamped to).
    /// `advance` to the returned instant always makes progress, so looping on it terminates. If
    /// a timer is already due, returns the latest `now` (an instant in the past).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.is_empty() {
            return None;
        }
        if self.lists[DUE_LIST].head != NIL {
            return Some(self.now);
        }
        let (_, start) = self.next_slot()?;
        // Only fails within 1 ms of the largest representable `Instant`, which `advance` cannot
        // reach anyway.
        Some(self.origin.checked_add(Duration::from_millis(start)).unwrap_or(self.now))
    }

    /// Moves time to `now` and pushes onto `fired` every timer whose deadline, rounded up to its
    /// tick, is at or before `now` rounded down to its tick, plus every timer inserted already
    /// due. Never fires a timer before its deadline. Visits only occupied slots, so large jumps
    /// are cheap.
    pub(crate) fn advance(&mut self, now: Instant, fired: &mut Vec<T>) {
        self.now = self.now.max(now);
        if self.now < self.next_tick_at && self.lists[DUE_LIST].head == NIL {
            // Still the tick of `elapsed`: every occupied slot starts after it.
            return;
        }
        let target = self.tick_floor(self.now);
        let mut idx = self.detach(DUE_LIST);
        while idx != NIL {
            let next = self.entries[idx as usize].next;
            fired.push(self.release(idx));
            idx = next;
        }
        while let Some((list, start)) = self.next_slot() {
            if start > target {
                break;
            }
            self.set_elapsed(start);
            self.process(list, fired);
        }
        self.set_elapsed(target);
    }

    /// Moves `elapsed` up to `tick` (never back), and what depends on it.
    fn set_elapsed(&mut self, tick: u64) {
        if tick > self.elapsed {
            self.elapsed = tick;
            self.next_cached.set(None);
            // Past the wheel's last tick (2^62 ms) no fast path: `self.now` is never before
            // `next_tick_at` then, and `advance` takes the full way.
            self.next_tick_at =
                self.origin.checked_add(Duration::from_millis(tick.saturating_add(1))).unwrap_or(self.now);
        }
    }

    /// Number of pending timers.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no timer is pending.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Fires the due timers of slot list `list` and cascades the others to lower levels.
    fn process(&mut self, list: usize, fired: &mut Vec<T>) {
        let mut idx = self.detach(list);
        while idx != NIL {
            let entry = &self.entries[idx as usize];
            let next = entry.next;
            if entry.when <= self.elapsed {
                fired.push(self.release(idx));
            } else {
                self.file(idx);
            }
            idx = next;
        }
    }

    /// The occupied slot with the earliest start, as `(list index, start tick)`.
    fn next_slot(&self) -> Option<(usize, u64)> {
        if let Some(known) = self.next_cached.get() {
            return known;
        }
        let best = self.scan_next_slot();
        self.next_cached.set(Some(best));
        best
    }

    /// [`next_slot`](Self::next_slot), computed.
    fn scan_next_slot(&self) -> Option<(usize, u64)> {
        let mut best: Option<(usize, u64)> = None;
        for (level, &bits) in self.occupied.iter().enumerate() {
            if bits == 0 {
                continue;
            }
            let shift = SLOT_BITS * level as u32;
            let current = (self.elapsed >> shift) & SLOT_MASK;
            // Slots before `current` only occur at the top level, holding the next rotation.
            let ahead = current + u64::from(bits.rotate_right(current as u32).trailing_zeros());
            let level_start = self.elapsed & !(((SLOTS as u64) << shift) - 1);
            let start = level_start + (ahead << shift);
            if best.is_none_or(|(_, earliest)| start < earliest) {
                best = Some((level * SLOTS + (ahead & SLOT_MASK) as usize, start));
            }
        }
        best
    }

    /// Files the (unlinked) entry `idx` into its slot relative to `elapsed`; it must not be due.
    fn file(&mut self, idx: u32) {
        let when = self.entries[idx as usize].when;
        debug_assert!(when > self.elapsed);
        let at = when.min(self.elapsed + MAX_DELTA);
        let highest_diff = 63 - ((self.elapsed ^ at) | SLOT_MASK).leading_zeros();
        let level = (highest_diff / SLOT_BITS).min(LEVELS as u32 - 1);
        let slot = (at >> (SLOT_BITS * level)) & SLOT_MASK;
        // The current slot's start is not after `elapsed`: filing there would loop forever.
        debug_assert_ne!(slot, (self.elapsed >> (SLOT_BITS * level)) & SLOT_MASK);
        self.push_back(level as usize * SLOTS + slot as usize, idx);
    }

    /// Appends the (unlinked) entry `idx` to list `list`, marking its slot occupied.
    fn push_back(&mut self, list: usize, idx: u32) {
        let tail = self.lists[list].tail;
        let entry = &mut self.entries[idx as usize];
        entry.prev = tail;
        entry.next = NIL;
        entry.list = list as u16;
        if tail == NIL {
            self.lists[list].head = idx;
        } else {
            self.entries[tail as usize].next = idx;
        }
        self.lists[list].tail = idx;
        if list < DUE_LIST {
            self.occupied[list / SLOTS] |= 1 << (list % SLOTS);
            self.next_cached.set(None);
        }
    }

    /// Removes the entry `idx` from its list in O(1), clearing the slot's bit if it empties.
    fn unlink(&mut self, idx: u32) {
        let entry = &self.entries[idx as usize];
        let (prev, next, list) = (entry.prev, entry.next, usize::from(entry.list));
        if prev == NIL {
            self.lists[list].head = next;
        } else {
            self.entries[prev as usize].next = next;
        }
        if next == NIL {
            self.lists[list].tail = prev;
        } else {
            self.entries[next as usize].prev = prev;
        }
        if self.lists[list].head == NIL && list < DUE_LIST {
            self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
            self.next_cached.set(None);
        }
    }

    /// Empties list `list` and returns its old head; the detached entries keep their `next`
    /// links, so the caller can walk them (and must re-file or release each one).
    fn detach(&mut self, list: usize) -> u32 {
        let head = self.lists[list].head;
        self.lists[list] = List { head: NIL, tail: NIL };
        if list < DUE_LIST {
            self.occupied[list / SLOTS] &= !(1 << (list % SLOTS));
            self.next_cached.set(None);
        }
        head
    }

    /// Removes the (unlinked) entry `idx` from the slab, making its keys stale.
    fn release(&mut self, idx: u32) -> T {
        let generation = &mut self.generations[idx as usize];
        *generation = generation.wrapping_add(1);
        self.entries.remove(idx as usize).value
    }

    /// `t` as a tick, rounded up (for deadlines).
    fn tick_ceil(&self, t: Instant) -> u64 {
        saturate_tick(t.saturating_duration_since(self.origin).as_nanos().div_ceil(1_000_000))
    }

    /// `t` as a tick, rounded down (for `now`).
    fn tick_floor(&self, t: Instant) -> u64 {
        saturate_tick(t.saturating_duration_since(self.origin).as_millis())
    }
}

/// Caps a millisecond count at [`MAX_TICK`].
fn saturate_tick(ms: u128) -> u64 {
    u64::try_from(ms).map_or(MAX_TICK, |ms| ms.min(MAX_TICK))
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("len", &self.len())
            .field("elapsed_ms", &self.elapsed)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const DAY_MS: u64 = 86_400_000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A base instant with room before it, so tests can build deadlines in the past.
    fn base() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    fn advance<T>(wheel: &mut TimerWheel<T>, now: Instant) -> Vec<T> {
        let mut fired = Vec::new();
        wheel.advance(now, &mut fired);
        fired
    }

    /// Tick of a deadline, rounded up, computed independently of the wheel.
    fn ceil_tick(t0: Instant, t: Instant) -> u64 {
        t.saturating_duration_since(t0).as_nanos().div_ceil(1_000_000) as u64
    }

    /// Tick of a `now`, rounded down.
    fn floor_tick(t0: Instant, t: Instant) -> u64 {
        t.saturating_duration_since(t0).as_millis() as u64
    }

    /// Deterministic xorshift64 generator.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        /// A random offset on a random scale: from sub-millisecond to over ten years, hitting
        /// every level, the clamp and sub-millisecond rounding.
        fn offset(&mut self) -> Duration {
            const SPANS_MS: [u64; 11] = [
                1,
                64,
                4_096,
                262_144,
                16_777_216,
                1 << 30,
                1 << 36,
                3 * DAY_MS,
                (1 << 36) + DAY_MS,
                10 * 365 * DAY_MS,
                12 * 365 * DAY_MS,
            ];
            let span = SPANS_MS[self.below(SPANS_MS.len() as u64) as usize];
            let nanos = if self.below(2) == 0 { 0 } else { self.below(1_000_000) };
            ms(self.below(span + 1)) + Duration::from_nanos(nanos)
        }

        /// A random step of time, mostly small so cascading is exercised tick by tick too.
        fn step(&mut self) -> Duration {
            const STEPS_MS: [u64; 12] = [0, 1, 1, 3, 17, 64, 700, 5_000, 300_000, DAY_MS, 1 << 36, 5 * 365 * DAY_MS];
            let span = STEPS_MS[self.below(STEPS_MS.len() as u64) as usize];
            ms(self.below(span + 1)) + Duration::from_nanos(self.below(1_000_000))
        }
    }

    #[test]
    fn advance_before_deadline_does_not_fire_at_deadline_fires() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        wheel.insert(t0 + ms(5), 'a');
        assert!(advance(&mut wheel, t0 + ms(4)).is_empty());
        assert!(advance(&mut wheel, t0 + ms(5) - Duration::from_nanos(1)).is_empty());
        assert_eq!(advance(&mut wheel, t0 + ms(5)), ['a']);
        assert!(wheel.is_empty());
    }

    #[test]
    fn advance_sub_millisecond_deadline_fires_at_next_tick() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        wheel.insert(t0 + Duration::from_micros(5_300), 'a');
        assert!(advance(&mut wheel, t0 + Duration::from_micros(5_300)).is_empty());
        assert!(advance(&mut wheel, t0 + Duration::from_micros(5_999)).is_empty());
        assert_eq!(advance(&mut wheel, t0 + ms(6)), ['a']);
    }

    #[test]
    fn insert_past_or_now_deadline_fires_on_next_advance() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        wheel.insert(t0 - ms(1_000), 'a');
        wheel.insert(t0, 'b');
        assert_eq!(wheel.next_deadline(), Some(t0));
        assert_eq!(advance(&mut wheel, t0), ['a', 'b']);
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn insert_deadline_passed_within_current_tick_fires_on_next_advance() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        advance(&mut wheel, t0 + Duration::from_micros(5_700));
        wheel.insert(t0 + Duration::from_micros(5_500), 'a');
        assert_eq!(advance(&mut wheel, t0 + Duration::from_micros(5_700)), ['a']);
    }

    #[test]
    fn advance_backwards_now_acts_as_latest_now() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        advance(&mut wheel, t0 + ms(10));
        wheel.insert(t0 + ms(12), 'a');
        assert!(advance(&mut wheel, t0 + ms(5)).is_empty());
        assert!(advance(&mut wheel, t0 + ms(11)).is_empty());
        assert_eq!(advance(&mut wheel, t0 + ms(12)), ['a']);
    }

    #[test]
    fn cancel_pending_timer_returns_value_and_never_fires() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        let a = wheel.insert(t0 + ms(10), 'a');
        let b = wheel.insert(t0 + ms(100_000), 'b');
        assert_eq!(wheel.cancel(a), Some('a'));
        assert_eq!(wheel.cancel(b), Some('b'));
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_deadline(), None);
        assert!(advance(&mut wheel, t0 + ms(1_000_000)).is_empty());
    }

    #[test]
    fn cancel_due_timer_returns_value_and_never_fires() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        let a = wheel.insert(t0, 'a');
        assert_eq!(wheel.cancel(a), Some('a'));
        assert_eq!(wheel.next_deadline(), None);
        assert!(advance(&mut wheel, t0 + ms(1)).is_empty());
    }

    #[test]
    fn cancel_after_fire_returns_none() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        let a = wheel.insert(t0 + ms(3), 'a');
        assert_eq!(advance(&mut wheel, t0 + ms(3)), ['a']);
        assert_eq!(wheel.cancel(a), None);
    }

    #[test]
    fn cancel_twice_returns_none() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        let a = wheel.insert(t0 + ms(3), 'a');
        assert_eq!(wheel.cancel(a), Some('a'));
        assert_eq!(wheel.cancel(a), None);
    }

    #[test]
    fn cancel_stale_key_after_slot_reuse_returns_none() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        let a = wheel.insert(t0 + ms(3), 'a');
        wheel.cancel(a);
        let b = wheel.insert(t0 + ms(3), 'b');
        assert_eq!(a.slot, b.slot, "the slab slot is reused");
        assert_ne!(a, b);
        assert_eq!(wheel.cancel(a), None);
        assert_eq!(wheel.len(), 1);
        assert_eq!(advance(&mut wheel, t0 + ms(3)), ['b']);
        let c = wheel.insert(t0 + ms(9), 'c');
        assert_eq!(c.slot, b.slot);
        assert_eq!(wheel.cancel(b), None);
        assert_eq!(wheel.cancel(c), Some('c'));
    }

    #[test]
    fn cancel_within_shared_slot_keeps_other_links_intact() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        let keys: Vec<_> = (0..6).map(|i| wheel.insert(t0 + ms(40), i)).collect();
        assert_eq!(wheel.cancel(keys[2]), Some(2)); // middle
        assert_eq!(wheel.cancel(keys[0]), Some(0)); // head
        assert_eq!(wheel.cancel(keys[5]), Some(5)); // tail
        let late = wheel.insert(t0 + ms(40), 6);
        assert_eq!(wheel.cancel(keys[4]), Some(4));
        assert_eq!(wheel.len(), 3);
        assert_eq!(advance(&mut wheel, t0 + ms(40)), [1, 3, 6]);
        assert_eq!(wheel.cancel(late), None);
    }

    #[test]
    fn cancel_last_in_slot_clears_occupancy() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        let near = wheel.insert(t0 + ms(5), 'n');
        wheel.insert(t0 + ms(500), 'f');
        assert_eq!(wheel.next_deadline(), Some(t0 + ms(5)));
        wheel.cancel(near);
        // 500 ms lives at level 1 (slot 7, covering 448..512 ms).
        assert_eq!(wheel.next_deadline(), Some(t0 + ms(448)));
    }

    #[test]
    fn advance_fires_in_deadline_order_fifo_within_tick() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        let deadlines = [5_000, 7, 5_000, 300_000, 7, 64, 63, 5_000, 4_096];
        for (i, &d) in deadlines.iter().enumerate() {
            wheel.insert(t0 + ms(d), (d, i));
        }
        let fired = advance(&mut wheel, t0 + ms(400_000));
        let mut expected: Vec<_> = deadlines.iter().copied().zip(0..).collect();
        expected.sort(); // by deadline, then insertion index
        assert_eq!(fired, expected);
    }

    #[test]
    fn advance_big_jump_fires_only_due_timers() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        for (i, d) in [1, 1_000, 60_000, 600_000, 600_001, 3_600_000].into_iter().enumerate() {
            wheel.insert(t0 + ms(d), i);
        }
        assert_eq!(advance(&mut wheel, t0 + ms(600_000)), [0, 1, 2, 3]);
        assert_eq!(wheel.len(), 2);
        assert_eq!(advance(&mut wheel, t0 + ms(600_001)), [4]);
        assert_eq!(advance(&mut wheel, t0 + ms(3_600_000)), [5]);
    }

    #[test]
    fn advance_century_jump_completes_without_ticking() {
        // Stepping tick by tick would take 3 * 10^12 iterations and never finish.
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        let century = ms(100 * 365 * DAY_MS);
        assert!(advance(&mut wheel, t0 + century).is_empty());
        wheel.insert(t0 + century + ms(1), 'a');
        wheel.insert(t0 + century * 2, 'b');
        assert_eq!(advance(&mut wheel, t0 + century * 3), ['a', 'b']);
    }

    #[test]
    fn insert_huge_deadline_is_clamped_and_fires_no_earlier() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        let deadline = t0 + Duration::from_secs(10 * 365 * 86_400);
        wheel.insert(deadline, 'a');
        let first = wheel.next_deadline().expect("pending");
        assert!(first <= deadline);
        assert!(advance(&mut wheel, deadline - ms(1)).is_empty());
        assert_eq!(wheel.len(), 1);
        assert_eq!(advance(&mut wheel, deadline), ['a']);
    }

    #[test]
    fn insert_huge_deadline_walked_by_next_deadline_fires_exactly() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        let deadline = t0 + Duration::from_secs(10 * 365 * 86_400);
        wheel.insert(deadline, 'a');
        let mut wakeups = 0;
        while let Some(next) = wheel.next_deadline() {
            assert!(next <= deadline);
            let fired = advance(&mut wheel, next);
            wakeups += 1;
            assert!(wakeups < 100, "next_deadline must make progress");
            if !fired.is_empty() {
                assert_eq!((fired, next), (vec!['a'], deadline));
            }
        }
        assert!(wheel.is_empty());
    }

    #[test]
    fn advance_across_top_level_rotation_fires_exactly() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        let edge = WHEEL_SPAN - 5;
        advance(&mut wheel, t0 + ms(edge));
        let offsets = [3, 5, 10, 1 << 30, 1 << 35, MAX_DELTA - 1, MAX_DELTA, 1 << 36, 1 << 37];
        for &off in &offsets {
            wheel.insert(t0 + ms(edge + off), edge + off);
        }
        let (mut wakeups, mut fired) = (0, 0);
        while let Some(next) = wheel.next_deadline() {
            for tick in advance(&mut wheel, next) {
                assert_eq!(t0 + ms(tick), next);
                fired += 1;
            }
            wakeups += 1;
            assert!(wakeups < 200, "next_deadline must make progress");
        }
        assert_eq!(fired, offsets.len());
    }

    /// Many advances within one tick (a shard's turns under load) take the short way; it must
    /// still see a timer inserted already due, and `next_deadline`'s remembered answer must
    /// follow inserts and cancels.
    #[test]
    fn advances_within_one_tick_see_inserts_cancels_and_due_timers() {
        let t0 = base();
        let us = Duration::from_micros;
        let mut wheel = TimerWheel::new(t0);
        assert!(advance(&mut wheel, t0 + us(100)).is_empty());
        assert_eq!(wheel.next_deadline(), None);
        wheel.insert(t0 + ms(5), 5);
        assert_eq!(wheel.next_deadline(), Some(t0 + ms(5)));
        let three = wheel.insert(t0 + ms(3), 3);
        assert_eq!(wheel.next_deadline(), Some(t0 + ms(3)));
        // Already due, inserted within the tick of the last advance: the next one fires it.
        wheel.insert(t0 + us(50), 0);
        assert_eq!(advance(&mut wheel, t0 + us(200)), vec![0]);
        assert!(advance(&mut wheel, t0 + us(999)).is_empty());
        assert_eq!(wheel.cancel(three), Some(3));
        assert_eq!(wheel.next_deadline(), Some(t0 + ms(5)));
        // The next tick begins: the full way again, and the wheel's time moved on.
        assert!(advance(&mut wheel, t0 + ms(1)).is_empty());
        assert!(advance(&mut wheel, t0 + ms(4) + us(999)).is_empty());
        assert_eq!(wheel.next_deadline(), Some(t0 + ms(5)));
        assert_eq!(advance(&mut wheel, t0 + ms(5)), vec![5]);
        assert_eq!(wheel.next_deadline(), None);
        // Backwards within the tick acts as the latest `now`: a deadline before it is due.
        assert!(advance(&mut wheel, t0 + ms(2)).is_empty());
        wheel.insert(t0 + ms(5), 6);
        assert_eq!(advance(&mut wheel, t0 + ms(5) + us(10)), vec![6]);
    }

    #[test]
    fn next_deadline_empty_wheel_is_none() {
        let wheel: TimerWheel<()> = TimerWheel::new(base());
        assert_eq!(wheel.next_deadline(), None);
    }

    #[test]
    fn next_deadline_level_zero_is_exact() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        wheel.insert(t0 + Duration::from_micros(20_500), ());
        assert_eq!(wheel.next_deadline(), Some(t0 + ms(21)));
    }

    #[test]
    fn next_deadline_walk_fires_every_timer_exactly_at_its_tick() {
        let t0 = base();
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut wheel = TimerWheel::new(t0);
        let mut pending: HashMap<usize, Instant> = HashMap::new();
        for id in 0..3_000 {
            let deadline = t0 + rng.offset();
            wheel.insert(deadline, id);
            pending.insert(id, deadline);
        }
        let mut wakeups = 0;
        let mut last = t0;
        while let Some(next) = wheel.next_deadline() {
            let earliest = pending.values().map(|&d| ceil_tick(t0, d)).min().expect("pending");
            assert!(next <= t0 + ms(earliest), "next_deadline after earliest deadline");
            assert!(next > last || wakeups == 0, "next_deadline must move forward");
            for id in advance(&mut wheel, next) {
                let deadline = pending.remove(&id).expect("fired once");
                assert!(deadline <= next);
                assert_eq!(ceil_tick(t0, deadline), floor_tick(t0, next));
            }
            assert_eq!(wheel.len(), pending.len());
            last = next;
            wakeups += 1;
            assert!(wakeups <= 3_000 * LEVELS * 2, "next_deadline must make progress");
        }
        assert!(pending.is_empty());
    }

    #[test]
    fn advance_random_sequence_fires_when_due_never_before() {
        let t0 = base();
        let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
        let mut wheel = TimerWheel::new(t0);
        // id -> (deadline, due at insert, key)
        let mut pending: HashMap<u64, (Instant, bool, TimerKey)> = HashMap::new();
        let mut stale: Vec<TimerKey> = Vec::new();
        let mut now = t0;
        let mut next_id = 0u64;
        let mut insert = |wheel: &mut TimerWheel<u64>, pending: &mut HashMap<_, _>, d, now| {
            let key = wheel.insert(d, next_id);
            pending.insert(next_id, (d, d <= now, key));
            next_id += 1;
        };
        for _ in 0..4_000 {
            insert(&mut wheel, &mut pending, now + rng.offset(), now);
        }
        let mut fired = Vec::new();
        for step in 0..3_000 {
            now += rng.step();
            fired.clear();
            wheel.advance(now, &mut fired);
            let mut previous_tick = 0;
            for id in &fired {
                let (deadline, due, key) = pending.remove(id).expect("fired once, not cancelled");
                assert!(deadline <= now, "fired early");
                assert!(due || ceil_tick(t0, deadline) <= floor_tick(t0, now));
                if due {
                    assert_eq!(previous_tick, 0, "timers inserted due fire first");
                } else {
                    let tick = ceil_tick(t0, deadline);
                    assert!(tick >= previous_tick, "fired out of order");
                    previous_tick = tick;
                }
                stale.push(key);
            }
            for (deadline, due, _) in pending.values() {
                assert!(!due && ceil_tick(t0, *deadline) > floor_tick(t0, now), "missed");
            }
            // Churn: new timers (some already past), cancellations, stale keys.
            for _ in 0..rng.below(4) {
                let d = if rng.below(8) == 0 { now.checked_sub(rng.step()).unwrap_or(now) } else { now + rng.offset() };
                insert(&mut wheel, &mut pending, d, now);
            }
            let victim = if step % 3 == 0 { pending.keys().next().copied() } else { None };
            if let Some(id) = victim {
                let (_, _, key) = pending.remove(&id).expect("present");
                assert_eq!(wheel.cancel(key), Some(id));
                stale.push(key);
            }
            if let Some(&key) = stale.get(rng.below(stale.len() as u64 + 1) as usize) {
                assert_eq!(wheel.cancel(key), None);
            }
            assert_eq!(wheel.len(), pending.len());
            if let Some(next) = wheel.next_deadline() {
                if pending.values().any(|&(_, due, _)| due) {
                    assert_eq!(next, now, "a due timer makes next_deadline the latest now");
                } else {
                    let earliest = pending.values().map(|(d, ..)| ceil_tick(t0, *d)).min();
                    assert!(next <= t0 + ms(earliest.expect("pending")));
                }
            }
        }
        fired.clear();
        wheel.advance(now + ms(13 * 365 * DAY_MS), &mut fired);
        assert_eq!(fired.len(), pending.len());
        assert!(wheel.is_empty());
    }

    #[test]
    fn len_tracks_insert_cancel_and_fire() {
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        assert!(wheel.is_empty());
        let a = wheel.insert(t0 + ms(1), 1);
        wheel.insert(t0 + ms(2), 2);
        wheel.insert(t0, 3);
        assert_eq!(wheel.len(), 3);
        wheel.cancel(a);
        wheel.cancel(a);
        assert_eq!(wheel.len(), 2);
        assert_eq!(advance(&mut wheel, t0 + ms(1)), [3]);
        assert_eq!(wheel.len(), 1);
        assert_eq!(advance(&mut wheel, t0 + ms(2)), [2]);
        assert!(wheel.is_empty());
    }

    #[test]
    fn debug_without_debug_values_shows_len() {
        struct Opaque;
        let t0 = base();
        let mut wheel = TimerWheel::new(t0);
        wheel.insert(t0 + ms(1), Opaque);
        let shown = format!("{wheel:?}");
        assert!(shown.contains("len: 1"), "{shown}");
    }
}
