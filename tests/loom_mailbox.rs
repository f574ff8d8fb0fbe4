//! Loom models of the mailbox reservation word (`src/process/mailbox.rs`): the bound is exact
//! under any race, releases and reserves conserve the count, and closing an incarnation makes
//! its pids stale and its late releases no-ops.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_mailbox`.
#![cfg(loom)]

mod loom_support;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use loom_support::model;
use pinion::_benchable::{Reservation, Reserve};

#[test]
fn reservation_racing_reserves_exactly_capacity_succeed() {
    for capacity in [1, 2] {
        model(Some(4), move || {
            let slot = Arc::new(Reservation::new());
            let generation = slot.open(capacity);

            let senders: Vec<_> = (0..3)
                .map(|_| {
                    let slot = slot.clone();
                    thread::spawn(move || {
                        let result = slot.try_reserve(generation);
                        assert!(slot.reserved() <= capacity, "bound exceeded");
                        result
                    })
                })
                .collect();
            let results: Vec<_> = senders.into_iter().map(|s| s.join().unwrap()).collect();

            let ok = results.iter().filter(|r| r.is_ok()).count();
            let full = results.iter().filter(|r| **r == Err(Reserve::Full)).count();
            assert_eq!(ok, capacity as usize, "{results:?}");
            assert_eq!(full, 3 - capacity as usize, "{results:?}");
            assert_eq!(slot.reserved(), capacity);
            assert_eq!(slot.generation(), generation);
        });
    }
}

#[test]
fn reservation_release_then_reserve_never_spuriously_full() {
    model(None, || {
        let slot = Arc::new(Reservation::new());
        let generation = slot.open(1);
        assert_eq!(slot.try_reserve(generation), Ok(()));
        let released = Arc::new(AtomicBool::new(false));

        // The owner finishes the message and gives its reservation back.
        let owner = {
            let (slot, released) = (slot.clone(), released.clone());
            thread::spawn(move || {
                slot.release(generation);
                released.store(true, Ordering::Release);
            })
        };
        // A sender races it: once the release is known to have happened (acquire), the
        // reservation must succeed; before that, Ok or Full are both fine.
        let sender = {
            let (slot, released) = (slot.clone(), released.clone());
            thread::spawn(move || {
                let after_release = released.load(Ordering::Acquire);
                let result = slot.try_reserve(generation);
                if after_release {
                    assert_eq!(result, Ok(()), "spuriously full after a release");
                } else {
                    assert!(matches!(result, Ok(()) | Err(Reserve::Full)), "{result:?}");
                }
                assert!(slot.reserved() <= 1, "bound exceeded");
                result
            })
        };
        // Someone else only looks.
        assert!(slot.reserved() <= 1, "bound exceeded");

        owner.join().unwrap();
        let result = sender.join().unwrap();
        assert_eq!(slot.reserved(), u32::from(result.is_ok()));

        // With the release joined (happens-before), a reservation cannot be refused.
        if result.is_ok() {
            slot.release(generation);
        }
        assert_eq!(slot.reserved(), 0);
        assert_eq!(slot.try_reserve(generation), Ok(()));
    });
}

#[test]
fn reservation_close_makes_reserve_stale_and_release_noop() {
    // Also at the end of the generations (the last usable one is RETIRED - 1).
    for first in [0, Reservation::RETIRED - 2] {
        model(None, move || {
            let slot = Arc::new(Reservation::new());
            if first != 0 {
                slot.set_vacant_generation(first);
            }
            let old = slot.open(1);
            assert_eq!(old, first);
            let closed = Arc::new(AtomicBool::new(false));

            // A sender on another shard, holding a pid of incarnation `old`, reserves and (when
            // its message is finished or could not be enqueued) releases, racing the close.
            let sender = {
                let (slot, closed) = (slot.clone(), closed.clone());
                thread::spawn(move || {
                    let after_close = closed.load(Ordering::Acquire);
                    let result = slot.try_reserve(old);
                    if after_close {
                        assert_eq!(result, Err(Reserve::Stale));
                    } else {
                        assert!(matches!(result, Ok(()) | Err(Reserve::Stale)), "{result:?}");
                    }
                    // Released whatever the outcome: a stale release must be a no-op.
                    slot.release(old);
                    assert!(slot.reserved() <= 1, "count underflow or bound exceeded");
                })
            };

            // The owner: the process ends, the slot is reused.
            slot.close(old);
            closed.store(true, Ordering::Release);
            assert_eq!(slot.try_reserve(old), Err(Reserve::Stale));
            let new = slot.open(1);
            assert_eq!(new, old + 1);
            assert_eq!(slot.reserved(), 0);
            assert_eq!(slot.try_reserve(new), Ok(()));
            assert_eq!(slot.try_reserve(old), Err(Reserve::Stale));

            sender.join().unwrap();

            // The stale release did not take the new incarnation's reservation.
            assert_eq!(slot.generation(), new);
            assert_eq!(slot.reserved(), 1);
            assert_eq!(slot.try_reserve(new), Err(Reserve::Full));
            slot.release(old);
            assert_eq!(slot.reserved(), 1);
            slot.release(new);
            assert_eq!(slot.reserved(), 0);
            // Releasing at zero is a no-op, not an underflow into the generation bits.
            slot.release(new);
            assert_eq!(slot.reserved(), 0);
            assert_eq!(slot.generation(), new);
        });
    }
}

#[test]
fn reservation_finish_owned_racing_reserves_conserves_count() {
    model(None, || {
        let slot = Arc::new(Reservation::new());
        let generation = slot.open(2);
        assert_eq!(slot.try_reserve(generation), Ok(()));
        assert_eq!(slot.try_reserve(generation), Ok(()));
        let finished = Arc::new(AtomicBool::new(false));

        // Two senders race the owner finishing both queued messages in one batch.
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let (slot, finished) = (slot.clone(), finished.clone());
                thread::spawn(move || {
                    let after_finish = finished.load(Ordering::Acquire);
                    let result = slot.try_reserve(generation);
                    if after_finish {
                        // Both places were freed: room for this sender whatever the other does.
                        assert_eq!(result, Ok(()), "spuriously full after the finish");
                    } else {
                        assert!(matches!(result, Ok(()) | Err(Reserve::Full)), "{result:?}");
                    }
                    assert!(slot.reserved() <= 2, "bound exceeded");
                    result
                })
            })
            .collect();
        slot.finish_owned(generation, 2);
        finished.store(true, Ordering::Release);
        let ok = senders.into_iter().map(|s| s.join().unwrap()).filter(Result::is_ok).count();

        assert_eq!(slot.reserved(), ok as u32);
        assert_eq!(slot.generation(), generation);
    });
}

#[test]
fn reservation_concurrent_reserve_release_conserves_count() {
    model(None, || {
        let slot = Arc::new(Reservation::new());
        let generation = slot.open(1);

        let workers: Vec<_> = (0..2)
            .map(|_| {
                let slot = slot.clone();
                thread::spawn(move || {
                    let mut ok = 0;
                    for _ in 0..2 {
                        match slot.try_reserve(generation) {
                            Ok(()) => {
                                ok += 1;
                                // Ours is counted, and capacity 1 leaves room for no other.
                                assert_eq!(slot.reserved(), 1);
                                slot.release(generation);
                            }
                            Err(Reserve::Full) => assert!(slot.reserved() <= 1),
                            Err(Reserve::Stale) => panic!("stale on a live incarnation"),
                        }
                    }
                    ok
                })
            })
            .collect();
        let ok: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();

        // A Full is only ever answered while the other worker holds the one reservation, and
        // a worker that never succeeds cannot block the other's second attempt: so at least
        // two of the four attempts succeed.
        assert!(ok >= 2, "only {ok} reservations succeeded");
        assert_eq!(slot.reserved(), 0);
        assert_eq!(slot.generation(), generation);
    });
}

#[test]
fn reservation_last_generation_retires_the_slot_for_good() {
    model(None, || {
        let slot = Arc::new(Reservation::new());
        slot.set_vacant_generation(Reservation::RETIRED - 1);
        let last = slot.open(1);
        let sender = {
            let slot = slot.clone();
            thread::spawn(move || {
                let result = slot.try_reserve(last);
                assert!(matches!(result, Ok(()) | Err(Reserve::Stale)), "{result:?}");
                slot.release(last);
            })
        };
        assert!(!slot.close(last), "the last generation retires the slot");
        sender.join().unwrap();
        assert_eq!(slot.generation(), Reservation::RETIRED);
        for generation in [last, 0, last - 1] {
            assert_eq!(slot.try_reserve(generation), Err(Reserve::Stale), "generation {generation}");
        }
    });
}

/// A retiring pool worker closes its slot only if nothing but what it finished is reserved
/// (`close_if_only`): against a racing sender, either the close wins (the sender finds the
/// pid stale) or the reservation does (the close fails and the worker waits for the
/// message); never both, so no accepted message meets a closed slot.
#[test]
fn reservation_close_if_only_and_a_racing_reserve_never_both_succeed() {
    for finished in [0, 1] {
        model(None, move || {
            let slot = Arc::new(Reservation::new());
            let generation = slot.open(2);
            // Messages the owner finished and has not given back yet.
            for _ in 0..finished {
                assert_eq!(slot.try_reserve(generation), Ok(()));
            }
            let sender = {
                let slot = slot.clone();
                thread::spawn(move || slot.try_reserve(generation))
            };
            let closed = slot.close_if_only(generation, finished);
            let reserved = sender.join().unwrap();
            match (closed, reserved) {
                (true, Err(Reserve::Stale)) => {
                    assert_eq!((slot.generation(), slot.reserved()), (generation + 1, 0));
                }
                (false, Ok(())) => {
                    assert_eq!((slot.generation(), slot.reserved()), (generation, finished + 1));
                    // The message arrives and is finished with the others: now it closes.
                    assert!(slot.close_if_only(generation, finished + 1));
                }
                other => panic!("close {} and reserve {:?} together", other.0, other.1),
            }
        });
    }
}

/// A pool worker that crashes leaves its replacement a slot for each message on its way to it
/// (`pool::dispatch::inherit`): how many is what `close_counting` saw, less its queue and the
/// message in hand. Against senders racing the close, that count is exactly the reservations
/// that succeeded (each of those messages will arrive at the closed slot and be forwarded), and
/// every reservation after it fails, so no forwarded message lacks its slot and no slot is
/// kept for a message that never comes.
#[test]
fn reservation_close_counting_counts_exactly_the_reservations_that_won() {
    model(None, move || {
        let slot = Arc::new(Reservation::new());
        let generation = slot.open(3);
        // One message queued already.
        assert_eq!(slot.try_reserve(generation), Ok(()));
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let slot = slot.clone();
                thread::spawn(move || slot.try_reserve(generation))
            })
            .collect();
        let (reusable, held) = slot.close_counting(generation);
        assert!(reusable);
        let won = senders.into_iter().map(|s| s.join().unwrap()).filter(|r| r.is_ok()).count() as u32;
        assert_eq!(held, 1 + won, "held = the queued one + the reservations that won");
        assert_eq!(slot.try_reserve(generation), Err(Reserve::Stale));
        assert_eq!((slot.generation(), slot.reserved()), (generation + 1, 0));
    });
}
