//! [`WebServerStats`]: what a web server's listeners and connections did that no handler
//! sees — connections accepted, refused at the cap or failed to accept, requests refused by
//! the connection before any handler saw them, requests answered 504. Each shard counts in
//! its own cache line, written by that shard only (a load and a store, no locked
//! instruction); [`WebServer::stats`](super::WebServer::stats) sums them from any thread.
//! Nothing here is counted per request: only per connection and per refusal.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::http::StatusCode;

/// The statuses a connection refuses requests with, each counted apart; any other in the
/// last slot.
const REFUSED: [u16; 10] = [400, 408, 413, 414, 417, 421, 431, 501, 503, 505];

/// One shard's counters.
#[derive(Default)]
pub(crate) struct ShardStats {
    connections: AtomicU64,
    accepted: AtomicU64,
    over_capacity: AtomicU64,
    over_client_capacity: AtomicU64,
    accept_errors: AtomicU64,
    timed_out: AtomicU64,
    slow_clients: AtomicU64,
    stream_bytes: AtomicU64,
    body_bytes: AtomicU64,
    refused: [AtomicU64; REFUSED.len() + 1],
}

/// `counter += n`, by the one thread that writes it.
fn add(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

impl ShardStats {
    /// Released: what this shard counted before (the connection's gauge, a closed
    /// connection's refusals) is seen by a reader that sees the count (see `ServerStats::sum`).
    pub(crate) fn accepted(&self) {
        self.accepted.store(self.accepted.load(Ordering::Relaxed) + 1, Ordering::Release);
    }
    pub(crate) fn over_capacity(&self) {
        add(&self.over_capacity, 1);
    }
    pub(crate) fn over_client_capacity(&self) {
        add(&self.over_client_capacity, 1);
    }
    pub(crate) fn accept_error(&self) {
        add(&self.accept_errors, 1);
    }
    /// Released, as `accepted`: a reader that sees a connection gone sees what it counted.
    pub(crate) fn set_connections(&self, open: usize) {
        self.connections.store(open as u64, Ordering::Release);
    }
    pub(crate) fn slow_client(&self) {
        add(&self.slow_clients, 1);
    }
    pub(crate) fn set_stream_bytes(&self, bytes: usize) {
        self.stream_bytes.store(bytes as u64, Ordering::Relaxed);
    }
    pub(crate) fn set_body_bytes(&self, bytes: usize) {
        self.body_bytes.store(bytes as u64, Ordering::Relaxed);
    }
    pub(crate) fn timed_out(&self, n: usize) {
        if n != 0 {
            add(&self.timed_out, n as u64);
        }
    }
    #[cold]
    pub(crate) fn refused(&self, status: StatusCode) {
        let i = REFUSED.iter().position(|&s| s == status.0).unwrap_or(REFUSED.len());
        add(&self.refused[i], 1);
    }
}

/// The counters of every shard a server listens on.
pub(crate) struct ServerStats {
    shards: Box<[CachePadded<ShardStats>]>,
}

impl std::fmt::Debug for ServerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.sum().fmt(f)
    }
}

impl ServerStats {
    pub(crate) fn new(shards: usize) -> ServerStats {
        ServerStats { shards: (0..shards).map(|_| CachePadded::new(ShardStats::default())).collect() }
    }

    /// The counters of the `i`th listening shard.
    pub(crate) fn shard(&self, i: usize) -> &ShardStats {
        &self.shards[i]
    }

    /// The sum over the shards, as each last wrote it. Per shard, `accepted` is read first
    /// (acquire), then `connections` (acquire), then the rest: a connection counted accepted
    /// is counted open, or closed with its refusals and bytes in.
    pub(crate) fn sum(&self) -> WebServerStats {
        let mut out = WebServerStats::default();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut refused = [0u64; REFUSED.len() + 1];
        for s in self.shards.iter() {
            out.accepted += s.accepted.load(Ordering::Acquire);
            out.connections += s.connections.load(Ordering::Acquire);
            out.over_capacity += get(&s.over_capacity);
            out.over_client_capacity += get(&s.over_client_capacity);
            out.accept_errors += get(&s.accept_errors);
            out.timed_out += get(&s.timed_out);
            out.slow_clients += get(&s.slow_clients);
            out.stream_bytes += get(&s.stream_bytes);
            out.body_bytes += get(&s.body_bytes);
            for (sum, c) in refused.iter_mut().zip(&s.refused) {
                *sum += get(c);
            }
        }
        let statuses = REFUSED.iter().copied().chain([0]);
        out.refused = statuses.zip(refused).filter(|&(_, n)| n != 0).map(|(s, n)| (StatusCode(s), n)).collect();
        out
    }
}

/// What a web server's listeners and connections did, summed over its shards
/// ([`WebServer::stats`](super::WebServer::stats)): the answers no handler gives and no
/// middleware sees. Counts run from the server's start; `connections`, `stream_bytes` and
/// `body_bytes` are gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WebServerStats {
    /// Connections open now.
    pub connections: u64,
    /// Connections accepted (those then refused at the cap included).
    pub accepted: u64,
    /// Connections refused with 503 at `HttpLimits::max_connections_per_shard`.
    pub over_capacity: u64,
    /// Connections refused with 503 at `HttpLimits::max_connections_per_client`.
    pub over_client_capacity: u64,
    /// Accepts that failed (out of file descriptors, say); each retry counts.
    pub accept_errors: u64,
    /// Requests the connection refused before any handler saw them, by status (400, 408,
    /// 413, 414, 417, 421, 431, 501, 503 — a body past `max_body_bytes_per_shard` —, 505;
    /// `StatusCode(0)` for any other), in that order, statuses never used left out.
    pub refused: Vec<(StatusCode, u64)>,
    /// Requests the connection answered 504 (no answer within the handler's
    /// `request_timeout`).
    pub timed_out: u64,
    /// Connections closed because the client did not read what was sent: nothing taken for
    /// `HttpLimits::idle_timeout`, streamed bodies waiting beyond 4 MiB on the connection
    /// (see [`ResponseStream`](super::ResponseStream)), or the most of them when the shard
    /// held more than `HttpLimits::max_stream_bytes_per_shard`.
    pub slow_clients: u64,
    /// Bytes waiting to be written now on the connections that stream, or whose client left
    /// more than 4 MiB of whole answers untaken (as each last counted them: when a chunk
    /// came, after each write), what `max_stream_bytes_per_shard` bounds per shard.
    pub stream_bytes: u64,
    /// Bytes of request bodies being read now, or read and waiting to be handed out (an
    /// unsafe request behind others; as each connection last counted them), what
    /// `max_body_bytes_per_shard` bounds per shard.
    pub body_bytes: u64,
}

impl WebServerStats {
    /// Requests refused with `status` (0 if none).
    pub fn refused_with(&self, status: StatusCode) -> u64 {
        self.refused.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n)
    }
}
