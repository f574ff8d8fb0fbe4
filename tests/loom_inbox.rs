//! Loom models of the shard inbox's park/wake protocol (`src/shard/inbox.rs`).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_inbox`.
//!
//! The OS wake-up (eventfd / mio `Waker`) is modelled by a `loom::sync::Notify`: one sticky,
//! coalescing permit that the consumer consumes when it blocks, exactly like the real waker
//! (a wake sent before the consumer blocks makes the block return at once). Loom's `Notify`
//! may also return spuriously once, like a timer or I/O event would; the consumer loop handles
//! that the way the real `poll` loop does (drain, park again).
//!
//! A lost wake-up shows up as loom's deadlock report: the consumer blocks in `Notify::wait`
//! with every producer finished and no permit pending.
#![cfg(loom)]

mod loom_support;

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Notify};
use loom::thread;
use loom_support::model;
use pinion::_benchable::Inbox;

/// The consumer's side of one shard, as the producers see it.
struct Shard {
    inbox: Inbox<u32>,
    /// The OS-level wake-up the consumer blocks on.
    waker: Notify,
    /// Wake-ups sent by producers (pushes that returned true).
    wakes: AtomicUsize,
}

impl Shard {
    fn new(lanes: usize) -> Self {
        Shard { inbox: Inbox::new(lanes), waker: Notify::new(), wakes: AtomicUsize::new(0) }
    }

    /// A producer: push, and make the wake "syscall" when told to.
    fn send(&self, lane: usize, item: u32) {
        if self.inbox.push(lane, item) {
            self.wakes.fetch_add(1, Ordering::Relaxed);
            self.waker.notify();
        }
    }

    /// The consumer's poll loop, until it has received `expected` items. Returns the items in
    /// the order received and the number of `park` calls.
    fn consume(&self, expected: usize) -> (Vec<u32>, usize) {
        let mut got = Vec::with_capacity(expected);
        let mut parks = 0;
        loop {
            self.inbox.drain(|item| got.push(item));
            if got.len() == expected {
                assert!(!self.inbox.has_items(), "more items than were sent");
                return (got, parks);
            }
            parks += 1;
            if self.inbox.park() {
                // Block until a producer wakes us; a lost wake-up deadlocks here.
                self.waker.wait();
            }
            self.inbox.unpark();
        }
    }

    /// The shard's turn loop with a budget (`turn::run`): at most `per_lane` items a lane a
    /// turn; items left in a lane make the next turn begin at once (`has_items`), else the
    /// consumer parks. Returns what `consume` does.
    fn consume_up_to(&self, per_lane: usize, expected: usize) -> (Vec<u32>, usize) {
        let mut got = Vec::with_capacity(expected);
        let mut parks = 0;
        loop {
            let before = got.len();
            self.inbox.drain_up_to(per_lane, |item| got.push(item));
            assert!(got.len() - before <= per_lane * 2, "a turn took more than its budget (two lanes)");
            if got.len() == expected {
                assert!(!self.inbox.has_items(), "more items than were sent");
                return (got, parks);
            }
            if self.inbox.has_items() {
                continue;
            }
            parks += 1;
            if self.inbox.park() {
                // Block until a producer wakes us; a lost wake-up deadlocks here.
                self.waker.wait();
            }
            self.inbox.unpark();
        }
    }
}

/// Every producer's `true` from `push` flips `parked` from true to false, and only `park`
/// sets it: so there is at most one wake-up per `park` call, whatever the race.
fn assert_at_most_one_wake_per_park(shard: &Shard, parks: usize) {
    let wakes = shard.wakes.load(Ordering::Relaxed);
    assert!(wakes <= parks, "{wakes} wake-ups for {parks} park calls");
}

#[test]
fn inbox_park_racing_push_no_lost_wakeup() {
    model(None, || {
        let shard = Arc::new(Shard::new(2));

        let producer = {
            let shard = shard.clone();
            thread::spawn(move || shard.send(1, 7))
        };

        let (got, parks) = shard.consume(1);
        producer.join().unwrap();

        assert_eq!(got, [7]);
        assert_at_most_one_wake_per_park(&shard, parks);
    });
}

#[test]
fn inbox_two_producers_racing_park_both_items_delivered_one_wake_per_park() {
    model(Some(3), || {
        let shard = Arc::new(Shard::new(2));

        let producers: Vec<_> = [(0, 1), (1, 2)]
            .into_iter()
            .map(|(lane, item)| {
                let shard = shard.clone();
                thread::spawn(move || shard.send(lane, item))
            })
            .collect();

        let (mut got, parks) = shard.consume(2);
        for p in producers {
            p.join().unwrap();
        }

        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        assert_at_most_one_wake_per_park(&shard, parks);
    });
}

#[test]
fn inbox_one_lane_several_pushes_drained_in_fifo_order() {
    model(Some(4), || {
        let shard = Arc::new(Shard::new(2));

        let producer = {
            let shard = shard.clone();
            thread::spawn(move || {
                for item in 1..=3 {
                    shard.send(0, item);
                }
            })
        };

        let (got, parks) = shard.consume(3);
        producer.join().unwrap();

        assert_eq!(got, [1, 2, 3]);
        assert_at_most_one_wake_per_park(&shard, parks);
    });
}

/// Review 72 bounded what a turn takes from a lane (`Inbox::drain_up_to`): with a budget of one
/// item a lane, what a turn leaves is taken by the next ones in order, and a push racing the
/// park is never lost (the turn loop parks only when no lane has items).
#[test]
fn inbox_drained_a_budget_a_turn_keeps_lane_order_and_loses_no_wakeup() {
    model(Some(3), || {
        let shard = Arc::new(Shard::new(2));

        let producers: Vec<_> = [(0, vec![1, 2]), (1, vec![3])]
            .into_iter()
            .map(|(lane, items)| {
                let shard = shard.clone();
                thread::spawn(move || {
                    for item in items {
                        shard.send(lane, item);
                    }
                })
            })
            .collect();

        let (got, parks) = shard.consume_up_to(1, 3);
        for p in producers {
            p.join().unwrap();
        }

        let lane = |range: std::ops::RangeInclusive<u32>| {
            got.iter().copied().filter(|i| range.contains(i)).collect::<Vec<_>>()
        };
        assert_eq!((lane(1..=2), lane(3..=3)), (vec![1, 2], vec![3]), "each lane in order: {got:?}");
        assert_at_most_one_wake_per_park(&shard, parks);
    });
}
