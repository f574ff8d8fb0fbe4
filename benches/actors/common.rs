//! Pieces shared by the three runtime halves of the `actors` bench.

use std::time::Duration;

/// The runtimes compared.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Runtime {
    Pinion,
    Actix,
    Ractor,
}

impl Runtime {
    pub(crate) const ALL: [Runtime; 3] = [Runtime::Pinion, Runtime::Actix, Runtime::Ractor];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Runtime::Pinion => "pinion",
            Runtime::Actix => "actix",
            Runtime::Ractor => "ractor",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Runtime> {
        Runtime::ALL.into_iter().find(|r| r.name() == s)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// What one run is asked to do.
#[derive(Clone, Debug)]
pub(crate) struct Params {
    /// Messages, round trips, calls or processes.
    pub(crate) n: u64,
    /// Runs (except `memory/*`) stop after this much measured time even if `n` is not reached.
    pub(crate) budget: Duration,
}

/// What one run measured: the workload's metrics in its declared order, and how much of `n`
/// was done (less than `n` only when the run hit its time budget).
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub(crate) values: Vec<f64>,
    pub(crate) done: u64,
}

/// How long the bench thread waits for any one signal from a runtime before calling it hung.
pub(crate) const WAIT: Duration = Duration::from_secs(45);

/// Mailbox bound for the `send/*` consumers (pinion's and actix's mailboxes are bounded; ractor's
/// is not, so its producer keeps at most this many messages in flight by watching a counter).
pub(crate) const MAILBOX: usize = 1024;

/// Pins the calling thread to `core` (modulo the core count). Failure is reported, not fatal.
pub(crate) fn pin_current(core: usize) {
    let Some(ids) = core_affinity::get_core_ids() else {
        eprintln!("warning: cannot list cores; thread left unpinned");
        return;
    };
    if ids.is_empty() {
        return;
    }
    let id = ids[core % ids.len()];
    if !core_affinity::set_for_current(id) {
        eprintln!("warning: could not pin thread to core {}", id.id);
    }
}

/// The resident set size of this process, in bytes, from `/proc/self/status`.
pub(crate) fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Per-round-trip latencies in nanoseconds, one entry per completed round trip.
#[derive(Debug, Default)]
pub(crate) struct Latencies {
    pub(crate) ns: Vec<u32>,
}

impl Latencies {
    pub(crate) fn with_capacity(n: u64) -> Self {
        Latencies { ns: Vec::with_capacity(usize::try_from(n).unwrap_or(0)) }
    }

    pub(crate) fn record(&mut self, d: Duration) {
        self.ns.push(u32::try_from(d.as_nanos()).unwrap_or(u32::MAX));
    }

    /// `[events/s, median µs, p99 µs]` for `elapsed` covering every recorded event.
    pub(crate) fn into_outcome(mut self, elapsed: Duration) -> Outcome {
        let done = self.ns.len() as u64;
        self.ns.sort_unstable();
        let pct = |p: f64| -> f64 {
            if self.ns.is_empty() {
                return f64::NAN;
            }
            let i = ((self.ns.len() - 1) as f64 * p).round() as usize;
            f64::from(self.ns[i]) / 1000.0
        };
        let rate = done as f64 / elapsed.as_secs_f64();
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            let total: u64 = self.ns.iter().map(|&x| u64::from(x)).sum();
            let slow = self.ns.iter().filter(|&&x| x >= 100_000).count();
            eprintln!(
                "    latency: mean {:.2} µs, p50 {:.2}, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, \
                 p99.99 {:.2}, max {:.2} µs; {slow} of {done} ≥ 100 µs (sum of those {:.1} ms)",
                total as f64 / done.max(1) as f64 / 1000.0,
                pct(0.5),
                pct(0.9),
                pct(0.99),
                pct(0.999),
                pct(0.9999),
                pct(1.0),
                self.ns.iter().filter(|&&x| x >= 100_000).map(|&x| f64::from(x)).sum::<f64>() / 1e6,
            );
        }
        Outcome { values: vec![rate, pct(0.5), pct(0.99)], done }
    }
}

/// `[n / elapsed]`.
pub(crate) fn throughput(n: u64, elapsed: Duration) -> Outcome {
    Outcome { values: vec![n as f64 / elapsed.as_secs_f64()], done: n }
}

/// `[bytes per process, teardown ms]`.
pub(crate) fn memory(n: u64, before: u64, after: u64, teardown: Duration) -> Outcome {
    Outcome { values: vec![after.saturating_sub(before) as f64 / n as f64, teardown.as_secs_f64() * 1e3], done: n }
}
