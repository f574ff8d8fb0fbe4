//! Loom models of a streamed body's wait for its backlog to fall (`src/http/backlog.rs`): the
//! sender's future registers its waker and looks again; the connection lowers the backlog (or
//! closes the stream) and wakes a waiting sender.
//!
//! Run with `RUSTFLAGS="--cfg loom" cargo test --release --test loom_backlog`.
//!
//! A lost wake-up shows up as loom's deadlock report: the sender's `block_on` parks with the
//! connection's thread finished and nobody left to wake it.
#![cfg(loom)]

mod loom_support;

use std::sync::Arc;

use loom::thread;
use loom_support::model;
use pinion::_benchable::{StreamState, StreamWatch};

/// A stream with `sent` bytes on their way and `queued` waiting at the connection, whose
/// connection runs `conn` on a thread of its own while the sender waits for a backlog of at
/// most `limit`: what the wait ends with, and the backlog then.
fn wait_while(sent: usize, queued: usize, limit: usize, conn: fn(StreamWatch)) -> (bool, usize) {
    let state = Arc::new(StreamState::new(false));
    let watch = StreamWatch(state.clone());
    state.sent(sent);
    watch.set_queued(queued);
    let conn = thread::spawn(move || conn(watch));
    let writable = loom::future::block_on(state.writable(limit));
    let backlog = state.backlog();
    conn.join().unwrap();
    (writable, backlog)
}

/// A backlog the connection lowers in two writes while the sender waits for the second's
/// level: the sender ends, with `true`, whatever the interleaving.
#[test]
fn a_waiting_sender_is_woken_by_the_write_that_lowers_the_backlog() {
    model(None, || {
        let (writable, _) = wait_while(0, 100, 20, |watch| {
            watch.set_queued(60);
            watch.set_queued(10);
            // The watch stays (the stream stays open): only the writes can end the wait.
            std::mem::forget(watch);
        });
        assert!(writable);
    });
}

/// The stream closes while the sender waits: it ends, with `false`.
#[test]
fn a_waiting_sender_is_woken_by_the_close() {
    model(None, || assert!(!wait_while(0, 100, 20, drop).0));
}

/// Bytes the sender sends count until they reach the connection: a wait begun after a send
/// ends only once the connection took them in and wrote them.
#[test]
fn bytes_on_their_way_count_until_the_connection_wrote_them() {
    model(None, || {
        let waited = wait_while(50, 0, 0, |watch| {
            // The chunk arrives (30 bytes of the stream wait), then a write takes them.
            watch.took_in(50, 30);
            watch.set_queued(0);
            std::mem::forget(watch);
        });
        assert_eq!(waited, (true, 0));
    });
}

/// A reading of the backlog while a chunk arrives is never below the truth: the sender never
/// sees less than the 30 bytes that wait until the write takes them.
#[test]
fn the_backlog_read_while_a_chunk_arrives_is_never_too_low() {
    model(None, || {
        let state = Arc::new(StreamState::new(false));
        let watch = StreamWatch(state.clone());
        state.sent(50);
        let conn = thread::spawn(move || {
            watch.took_in(50, 30);
            std::mem::forget(watch);
        });
        let seen = state.backlog();
        assert!(seen == 50 || seen == 30 || seen == 80, "read {seen}");
        conn.join().unwrap();
    });
}
