//! Loom models of a pool's worker cells (`src/pool/cells.rs`): the state machine a cell's
//! worker (start, end, replacement) and `resize` (retire) move without a common lock, what
//! each transition does to the pool's gate, and a shard's cell list that senders scan while
//! the control side pops and adds. The helpers called here are the ones `src/pool/dispatch.rs`
//! calls (`worker_started`, `worker_exited`, `replace`, `retire`, `start_failed`).
//!
//! Invariants: the gate's capacity never exceeds what the cells could hold (a capacity taken
//! away before it was added wraps the word's high half) and ends equal to the capacity of the
//! LIVE cells; a cell is counted out of the pool's size exactly once; it ends in one of the
//! expected states; a sender only reaches a cell whose placement it can see.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_cells`.
#![cfg(loom)]

mod loom_support;

use loom::sync::Arc;
use loom::thread;
use loom_support::model;
use pinion::_benchable::{EMPTY, Gate, Retired, ShardWorkers, WorkerCell, cell_state as state, pack};

/// A worker's capacity (`mailbox + 1`).
const CAP: u32 = 3;

/// One cell of a pool whose other workers are all down (the gate holds nothing else: the case
/// where a capacity taken away too early shows).
#[derive(Default)]
struct One {
    cell: WorkerCell,
    gate: Gate,
}

/// Watches the gate while the racers run: its capacity never exceeds one worker's.
fn observe(one: &Arc<One>) -> thread::JoinHandle<()> {
    let one = one.clone();
    thread::spawn(move || {
        for _ in 0..2 {
            let capacity = one.gate.capacity();
            assert!(capacity <= CAP, "gate capacity {capacity} past the one cell's {CAP}: taken away before added");
        }
    })
}

/// What `worker_exited` does with the cell once `end` returned `was` and no replacement is
/// started (it retired, or is not replaced): the cell stays gone.
fn not_replaced(cell: &WorkerCell, was: u32) {
    assert_ne!(was, state::LIVE, "a live worker that is replaced left no heir");
    cell.set_gone();
}

#[test]
fn a_start_racing_a_retire_adds_and_removes_its_capacity_once() {
    model(Some(3), || {
        // `resize` added the cell (DOWN) and its worker starts on its shard (`worker_started`)
        // while another `resize` pops the cell and retires it.
        let one = Arc::new(One::default());
        let pid = pack(7, 1);
        let worker = {
            let one = one.clone();
            thread::spawn(move || one.cell.start(pid, &one.gate, CAP))
        };
        let resizer = {
            let one = one.clone();
            thread::spawn(move || one.cell.retire(&one.gate, CAP))
        };
        let observer = observe(&one);
        let live = worker.join().unwrap();
        let retired = resizer.join().unwrap();
        observer.join().unwrap();
        match (live, retired) {
            // Retired before it started: the worker found it GONE and never added its capacity.
            (false, Retired::NotStarted) => assert_eq!(one.cell.state(), state::GONE),
            // Started, then retired: its capacity came and went, and it is told to retire.
            (true, Retired::Retiring) => assert_eq!(one.cell.state(), state::RETIRING),
            other => panic!("start and retire disagree: {other:?}"),
        }
        assert_eq!(one.gate.capacity(), 0, "the retired cell's capacity stayed in the gate");
        assert_eq!(one.cell.pid(), pid);
        // The worker retires either way (a `Retire` signal): it ends, and is not replaced.
        one.cell.clear_pid(pid);
        not_replaced(&one.cell, one.cell.end(true, &one.gate, CAP));
        assert_eq!((one.cell.state(), one.cell.pid(), one.gate.capacity()), (state::GONE, EMPTY, 0));
    });
}

/// A LIVE cell whose worker `pack(7, 1)` started.
fn live_one() -> Arc<One> {
    let one = Arc::new(One::default());
    assert!(one.cell.start(pack(7, 1), &one.gate, CAP));
    one
}

#[test]
fn a_crash_and_its_replacement_racing_a_retire_keep_the_gate_exact() {
    model(Some(3), || {
        // The worker crashes and is replaced in the same cell (`worker_exited`, `replace`, then
        // the replacement's `worker_started`, all on its shard) while a `resize` retires it.
        let one = live_one();
        let (old, new) = (pack(7, 1), pack(7, 2));
        let shard = {
            let one = one.clone();
            thread::spawn(move || {
                one.cell.clear_pid(old);
                let was = one.cell.end(true, &one.gate, CAP);
                if was != state::LIVE {
                    // Retired before it crashed: not replaced.
                    return not_replaced(&one.cell, was);
                }
                if !one.cell.start(new, &one.gate, CAP) {
                    // Retired between the crash and the replacement's start: the replacement
                    // retires at once.
                    one.cell.clear_pid(new);
                    not_replaced(&one.cell, one.cell.end(true, &one.gate, CAP));
                }
            })
        };
        let resizer = {
            let one = one.clone();
            thread::spawn(move || one.cell.retire(&one.gate, CAP))
        };
        let observer = observe(&one);
        shard.join().unwrap();
        let retired = resizer.join().unwrap();
        observer.join().unwrap();
        // Whenever it lands, the retire finds a cell that still counts in the pool's size.
        assert_ne!(retired, Retired::NotCounted, "a crashing worker's cell was not retired");
        assert_eq!(one.gate.capacity(), 0, "capacity left after the cell was retired");
        match one.cell.state() {
            // The replacement was retired once live: it is named, to be told.
            state::RETIRING => assert_eq!((retired, one.cell.pid()), (Retired::Retiring, new)),
            state::GONE => assert_eq!(one.cell.pid(), EMPTY),
            other => panic!("the cell ended in state {other}"),
        }
    });
}

#[test]
fn an_end_not_replaced_racing_a_retire_is_counted_once() {
    model(Some(3), || {
        // The worker ends and is not replaced (the pool or its shard stops) while a `resize`
        // retires it: exactly one of them takes its capacity out, and the retire counts the
        // cell out of the size only if it got there first.
        let one = live_one();
        let ender = {
            let one = one.clone();
            thread::spawn(move || {
                one.cell.clear_pid(pack(7, 1));
                let was = one.cell.end(false, &one.gate, CAP);
                one.cell.set_gone();
                was
            })
        };
        let resizer = {
            let one = one.clone();
            thread::spawn(move || one.cell.retire(&one.gate, CAP))
        };
        let observer = observe(&one);
        let was = ender.join().unwrap();
        let retired = resizer.join().unwrap();
        observer.join().unwrap();
        match (was, retired) {
            (state::LIVE, Retired::NotCounted) | (state::RETIRING, Retired::Retiring) => {}
            other => panic!("end and retire disagree: {other:?}"),
        }
        assert_eq!((one.cell.state(), one.cell.pid(), one.gate.capacity()), (state::GONE, EMPTY, 0));
    });
}

#[test]
fn a_failed_start_racing_a_retire_leaves_the_size_once() {
    model(None, || {
        // A worker added by `resize` failed to start on its shard (`start_failed`) while
        // another `resize` retires its cell: exactly one of them lowers the size.
        let one = Arc::new(One::default());
        let failed = {
            let one = one.clone();
            thread::spawn(move || one.cell.start_failed())
        };
        let retired = one.cell.retire(&one.gate, CAP);
        let failed = failed.join().unwrap();
        assert!(
            failed ^ (retired == Retired::NotStarted),
            "counted out of the size {}",
            if failed { "twice" } else { "never" }
        );
        assert_eq!((one.cell.state(), one.gate.capacity()), (state::GONE, 0));
    });
}

/// A shard's list and the cells it may point to (they outlive it, as a pool's do).
struct Listed {
    list: crossbeam_utils::CachePadded<ShardWorkers>,
    cells: [WorkerCell; 3],
}

/// The shard the model's cells are placed on (not a cell's default, 0).
const SHARD: u32 = 5;

#[test]
fn a_scan_under_a_pop_and_an_add_only_reaches_published_cells() {
    model(Some(3), || {
        // Two cells listed; the control side retires the newest (`pop`) and lists a new one
        // in its position (`add`) while a sender scans with the length it read first, as
        // `reserve_any_on` does: whatever it reaches is a cell whose placement it sees.
        let listed = Arc::new(Listed { list: ShardWorkers::new(), cells: Default::default() });
        assert!(listed.list.add(&listed.cells[0], SHARD) && listed.list.add(&listed.cells[1], SHARD));
        let control = {
            let listed = listed.clone();
            thread::spawn(move || {
                let popped = listed.list.pop().expect("two listed");
                assert!(std::ptr::eq(popped, &listed.cells[1]), "pop took another cell than the last");
                assert!(listed.list.add(&listed.cells[2], SHARD));
            })
        };
        let sender = {
            let listed = listed.clone();
            thread::spawn(move || {
                let len = listed.list.len();
                assert!((1..=2).contains(&len), "len {len}");
                for pos in (0..len).rev() {
                    let cell = listed.list.at(pos).expect("a position below the length read names a cell");
                    assert!(listed.cells.iter().any(|c| std::ptr::eq(c, cell)), "a pointer to no cell");
                    assert_eq!(cell.shard(), SHARD, "reached a cell before its placement was published");
                    assert_eq!(cell.state(), state::DOWN);
                }
            })
        };
        control.join().unwrap();
        sender.join().unwrap();
        assert_eq!(listed.list.len(), 2);
        assert!(std::ptr::eq(listed.list.at(1).unwrap(), &listed.cells[2]));
    });
}

/// The cell list and the one cell a resize retires, frees and takes again (review 70).
struct Reused {
    list: crossbeam_utils::CachePadded<ShardWorkers>,
    cell: WorkerCell,
    gate: Gate,
    /// The cell is on the pool's free list (`free_cell`, under the control lock in the pool:
    /// here a flag its taker acquires).
    free: loom::sync::atomic::AtomicBool,
}

#[test]
fn a_cell_freed_when_its_retired_worker_ended_is_reused_without_its_old_life() {
    model(Some(3), || {
        // Cell listed on SHARD, its worker `old` LIVE; a sender read the cell from the shard's
        // list. A resize popped and retired it (RETIRING, its capacity out of the gate). Then,
        // racing: the sender reads the cell's pid (and would reserve on it in that shard's
        // table), the old worker ends on its shard (`worker_exited`: a retired worker's end is
        // judged a restart while the pool runs, so `end(true)`, then not replaced: `set_gone`,
        // then `free_cell`), and the next resize takes the cell again if it is free (`add_cell`:
        // listed on the same shard) and its new worker starts in it (`worker_started`).
        let (old, new) = (pack(7, 1), pack(9, 1));
        let r = Arc::new(Reused {
            list: ShardWorkers::new(),
            cell: WorkerCell::default(),
            gate: Gate::new(),
            free: loom::sync::atomic::AtomicBool::new(false),
        });
        assert!(r.list.add(&r.cell, SHARD));
        assert!(r.cell.start(old, &r.gate, CAP));
        let seen = r.list.at(0).expect("listed");
        assert!(std::ptr::eq(seen, &r.cell));
        assert!(std::ptr::eq(r.list.pop().expect("listed"), &r.cell));
        assert_eq!(r.cell.retire(&r.gate, CAP), Retired::Retiring);
        let ender = {
            let r = r.clone();
            thread::spawn(move || {
                r.cell.clear_pid(old);
                let was = r.cell.end(true, &r.gate, CAP);
                assert_eq!(was, state::RETIRING);
                not_replaced(&r.cell, was);
                r.free.store(true, loom::sync::atomic::Ordering::Release);
            })
        };
        let resizer = {
            let r = r.clone();
            thread::spawn(move || {
                if !r.free.load(loom::sync::atomic::Ordering::Acquire) {
                    return false;
                }
                assert!(r.list.add(&r.cell, SHARD));
                assert!(r.cell.start(new, &r.gate, CAP), "the reused cell's new worker found it taken");
                true
            })
        };
        let sender = {
            let r = r.clone();
            thread::spawn(move || {
                // Through the pointer it read before the pop, as `worker_at` reads it.
                let cell: &WorkerCell = &r.cell;
                let pid = cell.pid();
                assert!([old, EMPTY, new].contains(&pid), "pid {pid:#x}: neither life's");
                if pid == new {
                    // The new life: placed on the shard whose table the sender looks it up in,
                    // and not the old life's end (GONE) nor its retirement.
                    assert_eq!(cell.shard(), SHARD);
                    let st = cell.state();
                    assert!(st == state::DOWN || st == state::LIVE, "new worker's pid in state {st}");
                }
            })
        };
        let observer = {
            let r = r.clone();
            thread::spawn(move || {
                let capacity = r.gate.capacity();
                assert!(capacity <= CAP, "gate capacity {capacity} past one worker's");
            })
        };
        ender.join().unwrap();
        let reused = resizer.join().unwrap();
        sender.join().unwrap();
        observer.join().unwrap();
        if reused {
            // One life in the cell, listed once, its capacity in the gate once.
            assert_eq!((r.cell.state(), r.cell.pid(), r.gate.capacity()), (state::LIVE, new, CAP));
            assert_eq!(r.list.len(), 1);
        } else {
            assert_eq!((r.cell.state(), r.cell.pid(), r.gate.capacity()), (state::GONE, EMPTY, 0));
            assert_eq!(r.list.len(), 0);
        }
    });
}
