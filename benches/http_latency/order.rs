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

/// Puts each round's ready connections in readiness order, reusing its buffers (the loop
/// runs tens of thousands of rounds a second: no allocation per round).
#[derive(Debug, Default)]
pub(crate) struct ReadyOrder {
    seen: Vec<bool>,
    order: Vec<usize>,
}

impl ReadyOrder {
    /// `events` (connection indices, as the poll reported them) then `retry` (connections
    /// still making progress, emptied), each once; indices from `n` on are left out.
    pub(crate) fn round(
        &mut self,
        events: impl IntoIterator<Item = usize>,
        retry: &mut Vec<usize>,
        n: usize,
    ) -> &[usize] {
        self.seen.clear();
        self.seen.resize(n, false);
        self.order.clear();
        for i in events.into_iter().chain(retry.drain(..)) {
            if i < n && !std::mem::replace(&mut self.seen[i], true) {
                self.order.push(i);
            }
        }
        &self.order
    }
}
