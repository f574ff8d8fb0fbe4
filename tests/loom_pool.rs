//! Loom models of pool admission (`src/pool/gate.rs`): the gate's word plus the workers'
//! reservation words. The pool never holds more than its capacity, a sender the gate admitted
//! always finds a worker slot (when finished messages give their worker slot back before their
//! gate slot), and every slot comes back.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_pool`.
#![cfg(loom)]

mod loom_support;

use loom::sync::Arc;
use loom::thread;
use loom_support::model;
use pinion::_benchable::{Admit, Gate, Reservation, admit};

/// A pool of two workers with `capacity` slots each.
struct Pool {
    gate: Gate,
    workers: [(Reservation, u32); 2],
}

impl Pool {
    fn new(capacity: u32) -> Arc<Pool> {
        let a = Reservation::new();
        let b = Reservation::new();
        let (ga, gb) = (a.open(capacity), b.open(capacity));
        let gate = Gate::new();
        gate.add_capacity(2 * capacity);
        Arc::new(Pool { gate, workers: [(a, ga), (b, gb)] })
    }

    /// The pool's scan: the first worker with room, starting at `start`.
    fn place(&self, start: usize) -> Option<usize> {
        (0..2).map(|k| (start + k) % 2).find(|&w| {
            let (r, generation) = &self.workers[w];
            r.try_reserve(*generation).is_ok()
        })
    }

    fn held_by_workers(&self) -> u32 {
        self.workers.iter().map(|(r, _)| r.reserved()).sum()
    }

    /// A worker finished one message: its own slot first, then the gate's.
    fn finish(&self, w: usize) {
        let (r, generation) = &self.workers[w];
        r.finish_owned(*generation, 1);
        self.gate.release(1);
    }
}

#[test]
fn racing_senders_admitted_exactly_to_capacity_and_each_placed() {
    model(Some(3), || {
        let pool = Pool::new(1);
        let senders: Vec<_> = (0..3)
            .map(|i| {
                let pool = pool.clone();
                thread::spawn(move || {
                    let r = admit(&pool.gate, 3, || pool.place(i % 2));
                    assert!(pool.held_by_workers() <= 2, "a worker bound exceeded");
                    assert!(pool.gate.held() <= 2, "the pool bound exceeded");
                    r
                })
            })
            .collect();
        let results: Vec<_> = senders.into_iter().map(|s| s.join().unwrap()).collect();
        let placed = results.iter().filter(|r| matches!(r, Admit::Placed(_))).count();
        let full = results.iter().filter(|r| **r == Admit::Full).count();
        assert_eq!((placed, full), (2, 1), "{results:?}");
        assert_eq!(pool.gate.held(), 2);
        assert_eq!(pool.held_by_workers(), 2);
    });
}

#[test]
fn slots_moving_under_a_scan_never_strand_an_admitted_sender() {
    model(Some(3), || {
        // Both workers full (one message each); worker 0 finishes its message while two senders
        // race for the freed slot. The one the gate admits must be placed (never `NoRoom`),
        // whatever the interleaving, and the counts must agree at the end.
        let pool = Pool::new(1);
        for w in 0..2 {
            assert_eq!(admit(&pool.gate, 1, || pool.place(w)), Admit::Placed(w));
        }
        let finisher = {
            let pool = pool.clone();
            thread::spawn(move || pool.finish(0))
        };
        let senders: Vec<_> = (0..2)
            .map(|i| {
                let pool = pool.clone();
                thread::spawn(move || admit(&pool.gate, 3, || pool.place(1 - i)))
            })
            .collect();
        finisher.join().unwrap();
        let results: Vec<_> = senders.into_iter().map(|s| s.join().unwrap()).collect();
        assert!(results.iter().all(|r| *r != Admit::NoRoom), "an admitted sender found no room: {results:?}");
        let placed = results.iter().filter(|r| matches!(r, Admit::Placed(_))).count();
        assert!(placed <= 1, "{results:?}");
        assert_eq!(pool.gate.held(), 1 + placed as u32);
        assert_eq!(pool.held_by_workers(), pool.gate.held(), "gate and workers disagree");
    });
}

#[test]
fn capacity_taken_away_is_never_overrun() {
    model(Some(3), || {
        // A worker leaves (its capacity taken out of the gate) while senders race: the gate
        // never admits past the remaining capacity.
        let pool = Pool::new(1);
        let leaver = {
            let pool = pool.clone();
            thread::spawn(move || pool.gate.remove_capacity(1))
        };
        let senders: Vec<_> = (0..2)
            .map(|i| {
                let pool = pool.clone();
                thread::spawn(move || admit(&pool.gate, 3, || pool.place(i)))
            })
            .collect();
        leaver.join().unwrap();
        let results: Vec<_> = senders.into_iter().map(|s| s.join().unwrap()).collect();
        let placed = results.iter().filter(|r| matches!(r, Admit::Placed(_))).count() as u32;
        assert!(placed >= 1, "{results:?}");
        assert_eq!(pool.gate.held(), placed);
        assert_eq!(pool.held_by_workers(), placed);
        assert!(pool.gate.capacity() == 1);
    });
}

/// What a shard does with a burst of requests its connection has read
/// (`pool::dispatch::send_ahead`): up to `want` gate slots at once, as many slots of one worker
/// as it has room for, the surplus gate slots back at once; then `use_` of them placed and the
/// rest given back (worker slots first, then the gate's). Returns how many were placed.
fn burst(pool: &Pool, w: usize, want: u32, use_: u32) -> u32 {
    let got = pool.gate.try_acquire_up_to(want);
    if got == 0 {
        return 0;
    }
    let (r, generation) = &pool.workers[w];
    let Ok(taken) = r.try_reserve_up_to(*generation, 2, got) else {
        pool.gate.release(got);
        return 0;
    };
    pool.gate.release(got - taken);
    assert!(pool.held_by_workers() <= pool.gate.held() + 1, "worker slots outran the gate");
    let placed = taken.min(use_);
    if taken > placed {
        assert!(r.release_unused(*generation, taken - placed));
        pool.gate.release(taken - placed);
    }
    placed
}

#[test]
fn slots_taken_ahead_for_a_burst_keep_the_bound_and_come_back_unused() {
    model(Some(3), || {
        // Two workers of 2 slots; one message already on worker 1. A shard takes slots ahead
        // for a burst of three requests but uses one; a sender elsewhere races it, and worker
        // 1 finishes its message meanwhile. The pool never holds more than 4, the admitted
        // sender always finds room, and the counts agree once the unused slots are back.
        let pool = Pool::new(2);
        assert_eq!(admit(&pool.gate, 1, || pool.place(1)), Admit::Placed(1));
        let shard = {
            let pool = pool.clone();
            thread::spawn(move || burst(&pool, 0, 3, 1))
        };
        let sender = {
            let pool = pool.clone();
            thread::spawn(move || {
                let r = admit(&pool.gate, 3, || pool.place(0));
                assert!(pool.gate.held() <= 4, "the pool bound exceeded");
                r
            })
        };
        let finisher = {
            let pool = pool.clone();
            thread::spawn(move || pool.finish(1))
        };
        let placed = shard.join().unwrap();
        let sent = sender.join().unwrap();
        finisher.join().unwrap();
        assert_ne!(sent, Admit::NoRoom, "an admitted sender found no room");
        assert_eq!(placed, 1, "the burst was refused although the pool had room");
        let held = placed + u32::from(matches!(sent, Admit::Placed(_)));
        assert_eq!(pool.gate.held(), held);
        assert_eq!(pool.held_by_workers(), held, "gate and workers disagree");
    });
}
