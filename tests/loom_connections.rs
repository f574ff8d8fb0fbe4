//! Loom model of the table of open connections a worker reads to tell whether the client of a
//! request it holds is gone (`OpenConnections` in `src/web/request.rs`, behind
//! `WebRequest::is_client_gone`): the connection's shard writes a connection's id under its
//! token when it opens and 0 when it closes, and a new connection may take the token after;
//! a worker on another shard, handed one of the connection's requests through a queue that
//! publishes it, loads the entry.
//!
//! Invariants: a worker never sees its client gone before the connection closed (not the 0
//! an earlier connection under the token left, nor a stale value from before the open); once
//! seen gone, it stays gone, the newer connection under the token included.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_connections`.
#![cfg(loom)]

mod loom_support;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use loom_support::model;
use pinion::_benchable::OpenConnections;

/// The io token every connection of the model takes in turn.
const TOKEN: usize = 3;

#[test]
fn a_worker_sees_its_client_gone_only_once_it_closed_and_then_for_good() {
    model(None, || {
        let table = Arc::new(OpenConnections::new());
        // An earlier connection under the token, closed: the token holds its 0.
        table.opened(TOKEN, 1);
        table.closed(TOKEN);
        // The queue that hands the request of connection 2 to the worker (it publishes it).
        let handed = Arc::new(AtomicBool::new(false));
        // Set by the shard as it closes connection 2: what "gone" must have seen.
        let closing = Arc::new(AtomicBool::new(false));
        let shard = {
            let (table, handed, closing) = (table.clone(), handed.clone(), closing.clone());
            thread::spawn(move || {
                table.opened(TOKEN, 2);
                handed.store(true, Ordering::Release);
                closing.store(true, Ordering::Relaxed);
                table.closed(TOKEN);
                // A new connection takes the token.
                table.opened(TOKEN, 3);
            })
        };
        let worker = thread::spawn(move || {
            if !handed.load(Ordering::Acquire) {
                return;
            }
            let first = table.is_gone(TOKEN, 2);
            if first {
                assert!(closing.load(Ordering::Relaxed), "the client seen gone before its connection closed");
            }
            let second = table.is_gone(TOKEN, 2);
            assert!(!first || second, "the client seen gone, then back");
        });
        shard.join().unwrap();
        worker.join().unwrap();
    });
}
