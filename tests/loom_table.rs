//! Loom models of the shared process table's page publication (`src/process/table.rs`): pages
//! are allocated on demand and published by a compare-and-swap, so two threads that race to
//! allocate the same page agree on one page, the loser's allocation is never seen, and a reader
//! sees either no page or the published one — never a page that is not yet set up.
//!
//! Under `--cfg loom` a page holds two slots and the table eight pages (see `table.rs`).
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_table`.
#![cfg(loom)]

mod loom_support;

use loom::sync::Arc;
use loom::thread;
use loom_support::model;
use pinion::_benchable::{Reservation, SharedTable};

fn addr(r: &Reservation) -> usize {
    std::ptr::from_ref(r) as usize
}

#[test]
fn racing_allocations_of_one_page_agree_and_readers_see_it_whole() {
    model(Some(3), || {
        let table = Arc::new(SharedTable::new());
        // Slots 2 and 3 share a page (the second): two allocators race on it, one for each slot,
        // while a reader looks slot 3 up.
        let allocators: Vec<_> = [2usize, 3]
            .into_iter()
            .map(|slot| {
                let table = table.clone();
                thread::spawn(move || {
                    let r = table.ensure(slot).expect("a slot inside the table");
                    // The reservation is set up: a fresh slot opens at its first generation.
                    assert_eq!(r.generation(), Reservation::new().generation());
                    addr(r)
                })
            })
            .collect();
        let reader = {
            let table = table.clone();
            thread::spawn(move || table.get(3).map(|r| (addr(r), r.generation())))
        };
        let got: Vec<usize> = allocators.into_iter().map(|t| t.join().unwrap()).collect();
        let (two, three) = (got[0], got[1]);
        // One page: slot 3 is the element right after slot 2.
        assert_eq!(three - two, std::mem::size_of::<Reservation>());
        assert_eq!(table.get(2).map(addr), Some(two));
        assert_eq!(table.get(3).map(addr), Some(three));
        if let Some((seen, generation)) = reader.join().unwrap() {
            assert_eq!(seen, three, "a reader saw a page other than the one published");
            assert_eq!(generation, Reservation::new().generation());
        }
    });
}

#[test]
fn slots_past_the_table_have_no_page() {
    model(Some(2), || {
        let table = SharedTable::new();
        assert!(table.get(0).is_none());
        let first = table.ensure(0).map(addr).expect("slot 0");
        assert_eq!(table.get(0).map(addr), Some(first));
        assert!(table.ensure(16).is_none(), "eight pages of two slots end at slot 16");
        assert!(table.get(16).is_none());
    });
}
