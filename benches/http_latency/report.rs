//! The bench's tables: one row per (server, round) as it is measured, then medians per server.

use crate::client::RunResult;

/// The numbers of one (server, round) run; latencies in microseconds.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    pub(crate) server: String,
    pub(crate) round: usize,
    /// The open loop's rate, requests per second; `None` for the closed loop.
    pub(crate) rate: Option<f64>,
    pub(crate) rps: f64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
    /// By Little's law, near connections × depth / responses per second (a sanity check).
    pub(crate) mean: f64,
    pub(crate) errors: u64,
    /// Requests written minus responses received, over the counted batches (0 when sane).
    pub(crate) unanswered: i64,
    /// The error counts by kind, empty when there are none.
    pub(crate) error_kinds: String,
    /// The server's user and system CPU time per response over the measured window, in µs
    /// (NaN when its process could not be read).
    pub(crate) user_us: f64,
    pub(crate) system_us: f64,
    /// Open loop: the client's lateness at p99, in µs (NaN for the closed loop).
    pub(crate) lag_p99: f64,
}

impl Row {
    pub(crate) fn new(server: &str, round: usize, rate: Option<f64>, r: &RunResult, ticks_per_second: f64) -> Row {
        let us = |q: f64| r.latency_ns.value_at_quantile(q) as f64 / 1000.0;
        // Over the window, per response of the window (the responses/s column's numerator).
        let per_response = |ticks: u64| ticks as f64 / ticks_per_second * 1e6 / r.responses.max(1) as f64;
        let (user_us, system_us) = match r.server_cpu {
            Some(((u0, s0), (u1, s1))) => (per_response(u1 - u0), per_response(s1 - s0)),
            None => (f64::NAN, f64::NAN),
        };
        Row {
            server: server.to_string(),
            round,
            rate,
            rps: r.responses as f64 / r.window.as_secs_f64(),
            p50: us(0.5),
            p90: us(0.9),
            p99: us(0.99),
            p999: us(0.999),
            max: r.latency_ns.max() as f64 / 1000.0,
            mean: r.latency_ns.mean() / 1000.0,
            errors: r.errors.total(),
            unanswered: r.requests as i64 - r.responses as i64,
            error_kinds: r.errors.to_string(),
            user_us,
            system_us,
            lag_p99: r.lag_ns.as_ref().map_or(f64::NAN, |h| h.value_at_quantile(0.99) as f64 / 1000.0),
        }
    }
}

/// The header of the per-run table.
pub(crate) fn print_run_header() {
    println!(
        "| round | rate | server | responses/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | mean µs | server user / sys µs per response | client lag p99 µs | errors | sent−received |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
}

pub(crate) fn print_run(row: &Row) {
    let errors =
        if row.error_kinds.is_empty() { "0".to_string() } else { format!("{} ({})", row.errors, row.error_kinds) };
    println!(
        "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.3} / {:.3} | {} | {errors} | {} |",
        row.round,
        rate_label(row.rate),
        row.server,
        row.rps,
        row.p50,
        row.p90,
        row.p99,
        row.p999,
        row.max,
        row.mean,
        row.user_us,
        row.system_us,
        lag_label(row.lag_p99),
        row.unanswered
    );
}

/// Medians over each server's rounds, per rate (one group for the closed loop), in the order the
/// servers were given, with the ratio of its median p99 to the group's lowest median p99, and
/// the median over rounds of its p99 to that round's lowest p99 at the same rate (which cancels
/// drift of the machine between rounds).
pub(crate) fn print_summary(rows: &[Row], servers: &[String]) {
    let mut rates: Vec<Option<f64>> = Vec::new();
    for r in rows {
        if !rates.contains(&r.rate) {
            rates.push(r.rate);
        }
    }
    println!();
    println!(
        "| rate | server | runs | responses/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | p99 / best | per-round p99 / best | server user / sys µs per response | client lag p99 µs | errors |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for rate in rates {
        let group: Vec<&Row> = rows.iter().filter(|r| r.rate == rate).collect();
        let medians: Vec<(&String, Vec<&Row>)> = servers
            .iter()
            .map(|s| (s, group.iter().copied().filter(|r| &r.server == s).collect::<Vec<_>>()))
            .filter(|(_, runs)| !runs.is_empty())
            .collect();
        let best_p99 = medians.iter().map(|(_, runs)| median(runs.iter().map(|r| r.p99))).fold(f64::INFINITY, f64::min);
        for (server, runs) in &medians {
            let m = |f: fn(&Row) -> f64| median(runs.iter().map(|r| f(r)));
            let per_round = median(runs.iter().map(|r| {
                let round_best =
                    group.iter().filter(|o| o.round == r.round).map(|o| o.p99).fold(f64::INFINITY, f64::min);
                r.p99 / round_best
            }));
            println!(
                "| {} | {server} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {per_round:.2} | {:.3} / {:.3} | {} | {} |",
                rate_label(rate),
                runs.len(),
                m(|r| r.rps),
                m(|r| r.p50),
                m(|r| r.p90),
                m(|r| r.p99),
                m(|r| r.p999),
                m(|r| r.max),
                m(|r| r.p99) / best_p99,
                m(|r| r.user_us),
                m(|r| r.system_us),
                lag_label(m(|r| r.lag_p99)),
                runs.iter().map(|r| r.errors).sum::<u64>(),
            );
        }
    }
}

/// A measure of a run, by name.
type Measure = (&'static str, fn(&Row) -> f64);

/// The first server against each other one, round by round (the same round's runs are
/// neighbours in time, so the VM's slow phases cancel): per measure, the median of the
/// per-round ratios, in how many rounds the first was lower, and a two-sided sign test's p
/// (below 0.05: a difference that noise explains in fewer than one run in twenty).
pub(crate) fn print_paired(rows: &[Row], servers: &[String]) {
    let Some((first, others)) = servers.split_first() else { return };
    let rounds = rows.iter().map(|r| r.round).max().unwrap_or(0);
    if others.is_empty() || rounds < 2 {
        return;
    }
    let measures: [Measure; 5] = [
        ("p50", |r| r.p50),
        ("p90", |r| r.p90),
        ("p99", |r| r.p99),
        ("p99.9", |r| r.p999),
        ("CPU/resp", |r| r.user_us + r.system_us),
    ];
    println!();
    println!("{first} / each other server, round by round: median ratio (lower in k of n rounds; sign test p)");
    println!();
    print!("| rate | against |");
    for (name, _) in &measures {
        print!(" {name} |");
    }
    println!();
    println!("|---:|---|{}", "---:|".repeat(measures.len()));
    let mut rates: Vec<Option<f64>> = Vec::new();
    for r in rows {
        if !rates.contains(&r.rate) {
            rates.push(r.rate);
        }
    }
    for rate in rates {
        for other in others {
            print!("| {} | {other} |", rate_label(rate));
            for (_, f) in &measures {
                let ratios: Vec<f64> = (1..=rounds)
                    .filter_map(|round| {
                        let at =
                            |s: &String| rows.iter().find(|r| r.rate == rate && r.round == round && &r.server == s);
                        let (a, b) = (f(at(first)?), f(at(other)?));
                        (a.is_finite() && b.is_finite() && b > 0.0).then(|| a / b)
                    })
                    .collect();
                let lower = ratios.iter().filter(|&&x| x < 1.0).count();
                let higher = ratios.iter().filter(|&&x| x > 1.0).count();
                print!(
                    " {:.3} ({lower} of {}; p {:.3}) |",
                    median(ratios.iter().copied()),
                    ratios.len(),
                    sign_test(lower, higher)
                );
            }
            println!();
        }
    }
}

/// The two-sided sign test: the chance of a split at least as uneven as `a` : `b` when either
/// side is as likely (ties left out).
fn sign_test(a: usize, b: usize) -> f64 {
    let n = a + b;
    if n == 0 {
        return 1.0;
    }
    // P(X <= min(a, b)) for X ~ Binomial(n, 1/2), doubled; C(n, i) built up term by term.
    let (mut term, mut tail) = (1.0_f64, 0.0_f64);
    for i in 0..=a.min(b) {
        if i > 0 {
            term *= (n - i + 1) as f64 / i as f64;
        }
        tail += term;
    }
    (2.0 * tail / 2f64.powi(n as i32)).min(1.0)
}

/// The client's lag in µs, "–" for the closed loop (which has no intended send times).
fn lag_label(lag: f64) -> String {
    if lag.is_nan() { "–".to_string() } else { format!("{lag:.1}") }
}

/// "closed" or the rate in requests per second.
fn rate_label(rate: Option<f64>) -> String {
    rate.map_or_else(|| "closed".to_string(), |r| format!("{r:.0}"))
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
