//! pinion vs actix vs ractor, side by side, in one run: the table behind PERF.md.
//!
//! A custom harness (`harness = false`), not criterion: every (workload, runtime, round) runs in
//! a fresh child process (this same binary, re-executed), so one runtime's threads, heap and
//! global state never leak into another's numbers, RSS deltas start from a clean heap, and a
//! hung run is killed instead of hanging the bench.
//!
//! ```text
//! cargo bench --bench actors                    # every workload
//! cargo bench --bench actors -- same_shard      # only ids containing "same_shard"
//! BENCH_ROUNDS=9 cargo bench --bench actors -- send/
//! ```
//!
//! Environment:
//! * `BENCH_ROUNDS` (default 5): rounds per workload; the runtime order rotates each round.
//! * `BENCH_RUNTIMES` (default `pinion,actix,ractor`): which runtimes to run.
//! * `BENCH_SCALE` (default 1): multiplies every workload's message/process count.
//! * `BENCH_BUDGET_MS` (default 2000): every run except `memory/*` stops after this much
//!   measured time even if it has not done its n messages / round trips / calls / spawns; rates
//!   are then over what was done, and the table marks the cell with †.
//! * `BENCH_TIMEOUT_S` (default 60): a child that takes longer is killed and counted as failed.
//! * `BENCH_RACTOR_CROSS=multi`: run ractor's cross-shard workloads on one 2-worker
//!   multi-thread tokio runtime instead of two current-thread runtimes (see below).
//! * `BENCH_VERBOSE=1`: children print the whole latency distribution (p90…max, mean, count
//!   of round trips ≥ 100 µs) on stderr.
//!
//! `memory/idle_process` spawns 1M idle processes for pinion and actix but 100k for ractor
//! (about 6.7 KB each, so 1M takes ~7 GB and ~25 s).
//!
//! Placement: pinion's shards are pinned (`pin: true`). For fairness the other runtimes are
//! pinned the same way: "same_shard" means every thread involved runs on core 0;
//! "cross_shard" means core 0 and core 1. actix: the System arbiter on core 0 and a second
//! Arbiter on core 1. ractor: a current-thread tokio runtime per "shard", on threads pinned to
//! core 0 and core 1, each actor spawned on its shard's runtime. (On a 2-worker multi-thread
//! runtime tokio's LIFO-slot scheduling runs a message's receiver on the sender's worker, so
//! "cross-shard" numbers would be same-core ones: ~0.6-0.9 µs ping-pong RTT vs ~6-8 µs.)
//!
//! Handlers: pinion's `send/*` consumer handles its messages in `handle_message_now`, a plain
//! function, as actix's `Handler::handle` is; `send/same_shard_async` is the same workload with
//! pinion's consumer in an `async` `handle_message` (a future per message, as ractor's
//! `handle`), while actix and ractor run exactly what they run for `send/same_shard`.
//!
//! Message shapes: producers send a `u64`; the call request is a `u64` answered with a `u64`.
//! pinion's and actix's `send/*` consumers have a bounded mailbox of 1024 and the producer
//! yields and retries while it is full; ractor's mailbox is unbounded, so its producer keeps at
//! most 1024 messages in flight by watching a counter the consumer bumps.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "actors/actix_side.rs"]
mod actix_side;
#[path = "actors/common.rs"]
mod common;
#[path = "actors/pinion_side.rs"]
mod pinion_side;
#[path = "actors/ractor_side.rs"]
mod ractor_side;

use common::{Outcome, Params, Runtime};

/// Environment variable that turns the binary into a child running one measurement.
const CHILD_ENV: &str = "PINION_ACTORS_BENCH_CHILD";

/// Whether a bigger or a smaller number is better, for the arrow in the table.
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
}

/// How to print a metric's value.
#[derive(Clone, Copy)]
enum Unit {
    /// Events per second.
    PerSec,
    /// Microseconds.
    Micros,
    /// Bytes.
    Bytes,
    /// Milliseconds.
    Millis,
}

struct Metric {
    name: &'static str,
    unit: Unit,
    better: Better,
}

const fn metric(name: &'static str, unit: Unit, better: Better) -> Metric {
    Metric { name, unit, better }
}

const THROUGHPUT: &[Metric] = &[metric("msg/s", Unit::PerSec, Better::Higher)];
const ROUND_TRIP: &[Metric] = &[
    metric("round trips/s", Unit::PerSec, Better::Higher),
    metric("median RTT", Unit::Micros, Better::Lower),
    metric("p99 RTT", Unit::Micros, Better::Lower),
];
const CALLS: &[Metric] = &[
    metric("calls/s", Unit::PerSec, Better::Higher),
    metric("median latency", Unit::Micros, Better::Lower),
    metric("p99 latency", Unit::Micros, Better::Lower),
];
const SPAWNS: &[Metric] = &[metric("spawns/s", Unit::PerSec, Better::Higher)];
const MEMORY: &[Metric] =
    &[metric("bytes/process", Unit::Bytes, Better::Lower), metric("teardown", Unit::Millis, Better::Lower)];

struct Workload {
    id: &'static str,
    /// Message / round-trip / process count per runtime, in `Runtime::ALL` order.
    n: [u64; 3],
    metrics: &'static [Metric],
}

const WORKLOADS: &[Workload] = &[
    Workload { id: "send/same_shard", n: [5_000_000; 3], metrics: THROUGHPUT },
    Workload { id: "send/same_shard_async", n: [5_000_000; 3], metrics: THROUGHPUT },
    Workload { id: "send/cross_shard", n: [5_000_000; 3], metrics: THROUGHPUT },
    Workload { id: "pingpong/cross_shard", n: [100_000; 3], metrics: ROUND_TRIP },
    Workload { id: "call/same_shard", n: [200_000; 3], metrics: CALLS },
    Workload { id: "call/cross_shard", n: [200_000; 3], metrics: CALLS },
    Workload { id: "spawn/rate", n: [200_000; 3], metrics: SPAWNS },
    Workload { id: "memory/idle_process", n: [1_000_000, 1_000_000, 100_000], metrics: MEMORY },
];

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child_main(&spec);
        return;
    }
    // `cargo bench` passes `--bench` (and possibly other flags); every other argument filters.
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let rounds: usize = env_parse("BENCH_ROUNDS", 5).max(1);
    let scale: f64 = env_parse("BENCH_SCALE", 1.0);
    let budget_ms: u64 = env_parse("BENCH_BUDGET_MS", 2000);
    let timeout = Duration::from_secs(env_parse("BENCH_TIMEOUT_S", 60));
    let runtimes: Vec<Runtime> = match std::env::var("BENCH_RUNTIMES") {
        Ok(list) => list
            .split(',')
            .map(|s| Runtime::parse(s.trim()).unwrap_or_else(|| panic!("unknown runtime {s:?}")))
            .collect(),
        Err(_) => Runtime::ALL.to_vec(),
    };
    let selected: Vec<&Workload> =
        WORKLOADS.iter().filter(|w| filters.is_empty() || filters.iter().any(|f| w.id.contains(f.as_str()))).collect();
    if selected.is_empty() {
        eprintln!("no workload matches {filters:?}; ids are:");
        for w in WORKLOADS {
            eprintln!("  {}", w.id);
        }
        std::process::exit(2);
    }

    println!("## pinion vs actix vs ractor\n");
    println!(
        "- machine: {} CPUs (nproc), {}; load average at start: {}",
        nproc(),
        cpu_model(),
        std::fs::read_to_string("/proc/loadavg")
            .map_or_else(|_| "?".to_string(), |l| { l.split_whitespace().take(3).collect::<Vec<_>>().join(" ") })
    );
    println!(
        "- rounds: {rounds} per workload and runtime, order rotated each round; each cell is \
         median (min–max) over rounds; ratios are of medians"
    );
    println!(
        "- placement: same_shard = core 0 only; cross_shard = cores 0 and 1 (all three runtimes \
         pinned)"
    );
    println!(
        "- versions: actix 0.13, actix-rt 2, ractor 0.15 (tokio_runtime), tokio 1; time budget \
         per run {budget_ms} ms (not for memory/*); scale {scale}"
    );
    println!();

    let mut rows: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for w in &selected {
        // results[runtime index] = one Vec<f64> per successful round.
        let mut results: Vec<Vec<Vec<f64>>> = vec![Vec::new(); runtimes.len()];
        let mut capped = vec![false; runtimes.len()];
        let mut failures = vec![0usize; runtimes.len()];
        for round in 0..rounds {
            for k in 0..runtimes.len() {
                let idx = (k + round) % runtimes.len();
                let rt = runtimes[idx];
                let n = scaled(w.n[rt.index()], scale);
                let params = Params { n, budget: Duration::from_millis(budget_ms) };
                let started = Instant::now();
                match run_child(w.id, rt, &params, timeout) {
                    Ok(out) => {
                        let shown: Vec<String> = w
                            .metrics
                            .iter()
                            .zip(&out.values)
                            .map(|(m, v)| format!("{} {}", fmt_value(*v, m.unit), m.name))
                            .collect();
                        let note = if out.done < n {
                            capped[idx] = true;
                            format!(" (stopped at budget after {} of {n})", out.done)
                        } else {
                            String::new()
                        };
                        eprintln!(
                            "{:<22} round {}/{rounds} {:<7} {}{note}  [{:.1} s wall]",
                            w.id,
                            round + 1,
                            rt.name(),
                            shown.join(", "),
                            started.elapsed().as_secs_f64()
                        );
                        results[idx].push(out.values);
                    }
                    Err(e) => {
                        failures[idx] += 1;
                        eprintln!("{:<22} round {}/{rounds} {:<7} FAILED: {e}", w.id, round + 1, rt.name());
                    }
                }
            }
        }
        let ns: Vec<String> = runtimes.iter().map(|rt| fmt_count(scaled(w.n[rt.index()], scale))).collect();
        let n_cell = if ns.iter().all(|s| *s == ns[0]) { ns[0].clone() } else { ns.join(" / ") };
        for (mi, m) in w.metrics.iter().enumerate() {
            let medians: Vec<Option<f64>> = results
                .iter()
                .map(|rs| {
                    let mut v = column(rs, mi);
                    median(&mut v)
                })
                .collect();
            let mut cells = Vec::new();
            for (idx, rs) in results.iter().enumerate() {
                let mut v = column(rs, mi);
                let cell = match median(&mut v) {
                    None if rs.is_empty() => "failed".to_string(),
                    None => "n/a".to_string(),
                    Some(med) => {
                        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        format!(
                            "{} ({}–{}){}{}",
                            fmt_value(med, m.unit),
                            fmt_value(lo, m.unit),
                            fmt_value(hi, m.unit),
                            if capped[idx] { " †" } else { "" },
                            if failures[idx] > 0 { format!(" [{} failed]", failures[idx]) } else { String::new() }
                        )
                    }
                };
                cells.push(cell);
            }
            // Columns are always pinion, actix, ractor, whatever subset ran.
            let cell_of = |rt: Runtime| -> String {
                runtimes.iter().position(|r| *r == rt).map_or("–".to_string(), |i| cells[i].clone())
            };
            let med_of = |rt: Runtime| runtimes.iter().position(|r| *r == rt).and_then(|i| medians[i]);
            let ratio = |other: Runtime| match (med_of(Runtime::Pinion), med_of(other)) {
                (Some(p), Some(o)) if o > 0.0 => format!("{:.2}×", p / o),
                _ => "–".to_string(),
            };
            let arrow = match m.better {
                Better::Higher => "↑",
                Better::Lower => "↓",
            };
            rows.push(format!(
                "| {} | {} | {} {} | {} | {} | {} | {} | {} |",
                w.id,
                n_cell,
                m.name,
                arrow,
                cell_of(Runtime::Pinion),
                cell_of(Runtime::Actix),
                cell_of(Runtime::Ractor),
                ratio(Runtime::Actix),
                ratio(Runtime::Ractor)
            ));
        }
        if capped.iter().any(|c| *c) {
            let who: Vec<&str> = runtimes.iter().zip(&capped).filter(|(_, c)| **c).map(|(r, _)| r.name()).collect();
            notes.push(format!(
                "† {}: {} stopped at the {budget_ms} ms budget before reaching n in some rounds; \
                 its rates are over what it did.",
                w.id,
                who.join(", ")
            ));
        }
    }
    println!("| workload | n | metric | pinion | actix | ractor | pinion/actix | pinion/ractor |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!("{r}");
    }
    println!();
    for note in notes {
        println!("{note}  ");
    }
    println!("↑ higher is better, ↓ lower is better; a ratio > 1 on ↑ rows (< 1 on ↓ rows) favours pinion.");
}

/// Runs one measurement in a fresh copy of this binary and parses its answer.
fn run_child(id: &str, rt: Runtime, p: &Params, timeout: Duration) -> Result<Outcome, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let spec = format!("{id}|{}|{}|{}", rt.name(), p.n, p.budget.as_millis());
    let mut child = Command::new(exe)
        .env(CHILD_ENV, spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn child: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {} s (killed)", timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("wait: {e}")),
        }
    };
    let out = reader.join().unwrap_or_default();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("@@result ") {
            let mut done = p.n;
            let mut values = Vec::new();
            for field in rest.split_whitespace() {
                if let Some(d) = field.strip_prefix("done=") {
                    done = d.parse().map_err(|_| format!("bad done field {field:?}"))?;
                } else {
                    values.push(field.parse().map_err(|_| format!("bad value {field:?}"))?);
                }
            }
            return Ok(Outcome { values, done });
        }
        if let Some(rest) = line.strip_prefix("@@error ") {
            return Err(rest.to_string());
        }
    }
    Err(format!("child exited with {status} and no result"))
}

/// The child side: run exactly one measurement and print it on stdout.
fn child_main(spec: &str) {
    let parts: Vec<&str> = spec.split('|').collect();
    let [id, rt, n, budget_ms] = parts[..] else {
        println!("@@error malformed child spec {spec:?}");
        return;
    };
    let rt = Runtime::parse(rt).expect("runtime name");
    let p = Params { n: n.parse().expect("n"), budget: Duration::from_millis(budget_ms.parse().expect("budget")) };
    let result = match rt {
        Runtime::Pinion => pinion_side::run(id, &p),
        Runtime::Actix => actix_side::run(id, &p),
        Runtime::Ractor => ractor_side::run(id, &p),
    };
    let mut stdout = std::io::stdout().lock();
    match result {
        Ok(out) => {
            let vals: Vec<String> = out.values.iter().map(|v| format!("{v}")).collect();
            let _ = writeln!(stdout, "@@result {} done={}", vals.join(" "), out.done);
        }
        Err(e) => {
            let _ = writeln!(stdout, "@@error {}", e.replace('\n', " "));
        }
    }
    let _ = stdout.flush();
    drop(stdout);
    // Skip tearing down whatever the runtime still holds (a million actors, say): the
    // measurement is done and the parent only waits for the exit.
    std::process::exit(0);
}

fn env_parse<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} does not parse")),
        Err(_) => default,
    }
}

fn scaled(n: u64, scale: f64) -> u64 {
    ((n as f64 * scale).round() as u64).max(1)
}

/// Metric `mi` of every round that measured it (NaN means "not measured by this runtime").
fn column(rounds: &[Vec<f64>], mi: usize) -> Vec<f64> {
    rounds.iter().filter_map(|r| r.get(mi).copied()).filter(|x| !x.is_nan()).collect()
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 })
}

fn fmt_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::PerSec if v >= 1e6 => format!("{:.2} M", v / 1e6),
        Unit::PerSec if v >= 1e3 => format!("{:.1} k", v / 1e3),
        Unit::PerSec => format!("{v:.0}"),
        Unit::Micros if v >= 100.0 => format!("{v:.0} µs"),
        Unit::Micros => format!("{v:.2} µs"),
        Unit::Bytes => format!("{v:.0} B"),
        Unit::Millis => format!("{v:.0} ms"),
    }
}

fn fmt_count(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

fn nproc() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string())
}
