//! The order the client's loops serve their ready connections in.
//!
//! Readiness order: the connections a poll reported, in the order it reported them (the
//! kernel's ready list: the order their bytes arrived), then those still making progress from
//! the round before, each once. It was index order (sorted) before 2026-12-06, which served
//! the same low-numbered connections first in every round: with a server quicker than the
//! client, the answers to the last connections written in a round missed the next poll, and
//! their latencies formed a second group a round later (p50 302, p90 589 µs against 360 and
//! 393 in readiness order, `--depth 1`, 64 connections; PERF.md). wrk's event loop serves
//! events in the order the poll returns them too.

/// `events` (connection indices, as the poll reported them) then `retry` (connections still
/// making progress), each once; indices from `n` on are left out.
pub(crate) fn ready_order(events: impl IntoIterator<Item = usize>, retry: Vec<usize>, n: usize) -> Vec<usize> {
    let mut seen = vec![false; n];
    let mut order = Vec::with_capacity(retry.len() + 16);
    for i in events.into_iter().chain(retry) {
        if i < n && !std::mem::replace(&mut seen[i], true) {
            order.push(i);
        }
    }
    order
}
