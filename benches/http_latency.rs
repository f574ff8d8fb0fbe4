//! Pipelined HTTP/1.1 latency of pinion and its peers, side by side, with our own client.
//!
//! wrk cannot give these numbers. Its coordinated-omission correction (`stats_correct` in wrk's
//! `src/stats.c`) takes the expected interval from the responses per connection, 16 times too
//! many at depth 16, and adds phantom samples below the recorded minimum that
//! `stats_percentile` never scans: p99 comes out 0 for the fastest servers and the other
//! percentiles are skewed. This bench drives the same load (`pipeline.lua`: depth requests per
//! write) from one mio thread and keeps every latency in an HDR histogram.
//!
//! ```text
//! cargo build --profile perf --example hello
//! cargo bench --bench http_latency -- \
//!     --server 'target/perf/examples/hello --port {port} --cores 1' --name pinion \
//!     --peer monoio-epoll --peer may-minihttp --pin
//! cargo bench --bench http_latency -- --server 'CMD {port}' --name x --peers   # every peer
//! cargo bench --bench http_latency -- --pin --rate 50000,200000,400000 \
//!     --server 'target/perf/examples/hello --port {port} --cores 1' --name pinion \
//!     --peer monoio-epoll --peer may-minihttp             # open loop, at fixed rates
//! cargo bench --bench http_latency -- --help
//! ```
//!
//! What runs: for each round (the server order rotates by one per round), each server in turn
//! is started as a child process (`bash -c "exec CMD"`, under `taskset -c 0` with `--pin`) on
//! a free port of 127.0.0.1, waited for (it must answer `GET /plaintext` with 200 within
//! 10 s), loaded for the warm-up and then the measured window, and killed. Peers come from the
//! `PEERS` table of the kit's `compare-http.sh` (names, binaries, arguments, environment), so
//! `--peer monoio-epoll` is what that script calls monoio-epoll.
//!
//! The load, a closed loop like wrk's: each of `--connections` connections writes `--depth`
//! copies of `GET /plaintext HTTP/1.1` in one write, reads until all of them are answered
//! (each response parsed with httparse and framed by its Content-Length; chunked responses
//! are counted as errors), and then writes the next batch. A response's latency runs from the
//! start of its batch's write to the read that completed it, so the k-th response of a batch
//! includes the time it waited behind the k-1 before it (what wrk's pipeline.lua measures).
//! The ready connections of each poll are served in the order the poll reports them (`order.rs`:
//! index order, as before 2026-12-06, made a second latency group of the last ones written).
//! A batch answered with more or fewer than `--depth` responses is an error; `sent−received`
//! in the table (requests written minus responses read in counted batches) must be 0.
//!
//! No coordinated-omission correction. A closed-loop client sends a batch only when the last
//! one is answered in full, and under pipelining a connection's requests leave in bursts, so
//! there is no intended send time to measure from: any "expected interval" (wrk's is the
//! mean time per response on a connection) is an invention, and wrk's shows what a wrong one
//! does. The percentiles here are those of the responses that were actually sent and
//! answered. A server that stalls is sampled less while it stalls: that shows in
//! responses/s, p99.9 and max, not in p50..p99.
//!
//! **The open loop** (`--rate R1,R2,...`, `http_latency/open.rs`) charges stalls to every
//! request that should have been sent meanwhile: each connection sends single requests at
//! fixed intended times (R per second over all connections, evenly spread), pipelining when
//! answers are outstanding, and every latency runs from the intended send time. At a rate all
//! servers can serve, this compares what a latency-critical user sees: percentiles, and the
//! server CPU per response, at the same load. The client's own lateness (how long after its
//! intended time the loop noticed a request was due) is a column of its own, `client lag p99`;
//! where it is large, the client set that run's latency. The client polls without sleeping
//! while a request is due within 2 ms, so it occupies its core. A server that falls 4096
//! requests behind on a connection fails that run (it cannot keep the rate).
//!
//! The last table compares the first server named with each other one round by round: the
//! runs of one round are neighbours in time, so the VM's slow and fast phases cancel in their
//! ratio. Per measure (p50, p90, p99, p99.9, CPU per response) it gives the median of the
//! per-round ratios, in how many rounds the first server was lower, and a two-sided sign
//! test's p: with under 0.05, noise alone would split the rounds that unevenly less than once
//! in twenty runs. Medians over rounds hide that; a p99 "1.09×" over five rounds may be 2 of 5.
//!
//! Counted batches are those whose write starts inside the measured window; the ones still
//! in flight at its end are waited for (up to 5 s), so the slow tail is not cut off.
//! responses/s is the counted responses over the window. The client is one thread and costs
//! CPU of its own (on a 2-core machine, unpinned, it competes with the server): compare the
//! servers with each other, measured by this client, not with wrk's throughput.
//!
//! Bounds: only 127.0.0.1 is contacted; durations are at most 15 s; every loop is bounded in
//! count or time. A server is killed and reaped when its runs end, on an error, and while
//! unwinding from a panic (a guard); Ctrl-C reaches it directly, as it stays in the bench's
//! process group.

use std::process::ExitCode;

#[path = "http_latency/client.rs"]
mod client;
#[path = "http_latency/open.rs"]
mod open;
#[path = "http_latency/options.rs"]
mod options;
#[path = "http_latency/order.rs"]
mod order;
#[path = "http_latency/report.rs"]
mod report;
#[path = "http_latency/server.rs"]
mod server;

use client::RunOptions;
use open::OpenOptions;
use options::{Options, ServerSpec, USAGE};
use report::Row;
use server::{PortPicker, Server};

fn main() -> ExitCode {
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("http_latency: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if options.help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if let Some(core) = options.client_core {
        // The client runs on this thread; the servers are placed by taskset.
        if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
            eprintln!("http_latency: could not pin the client to core {core}");
        }
    }
    let run = RunOptions {
        connections: options.connections,
        depth: options.depth,
        warmup: options.warmup,
        duration: options.duration,
    };
    let names: Vec<String> = options.servers.iter().map(|s| s.name.clone()).collect();
    let load = if options.rates.is_empty() {
        format!("pipelined GET /plaintext, closed loop: {} connections × depth {}", run.connections, run.depth)
    } else {
        format!("GET /plaintext, open loop at {:?} requests/s over {} connections", options.rates, run.connections)
    };
    println!(
        "{load}, {:?} measured after {:?} warm-up, {} round(s), {}",
        run.duration,
        run.warmup,
        options.rounds,
        match (&options.server_cpus, options.client_core) {
            (Some(cpus), Some(core)) => format!("server on cpus {cpus}, client on core {core}"),
            _ => "unpinned".to_string(),
        }
    );
    println!();
    report::print_run_header();
    let mut ports = PortPicker::new();
    let ticks = server::clock_ticks_per_second();
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    let n = options.servers.len();
    let loads: Vec<Option<f64>> =
        if options.rates.is_empty() { vec![None] } else { options.rates.iter().copied().map(Some).collect() };
    for round in 1..=options.rounds {
        for &rate in &loads {
            for k in 0..n {
                let spec = &options.servers[(k + round - 1) % n];
                match measure(spec, round, rate, &run, options.server_cpus.as_deref(), &mut ports, ticks) {
                    Ok(row) => {
                        report::print_run(&row);
                        rows.push(row);
                    }
                    Err(e) => {
                        let at = rate.map_or(String::new(), |r| format!(" at {r:.0}/s"));
                        eprintln!("http_latency: {} (round {round}{at}): {e}", spec.name);
                        failed.push(format!("{}(r{round}{at})", spec.name));
                    }
                }
            }
        }
    }
    report::print_summary(&rows, &names);
    println!();
    println!(
        "(µs from an HDR histogram, 3 significant digits; medians over rounds. p99 / best: this \
         server's median p99 over the lowest median p99 at that rate; per-round: the median over \
         rounds of p99 over that round's lowest p99. {})",
        if options.rates.is_empty() {
            "Closed loop, no coordinated-omission correction: see the bench's docs."
        } else {
            "Open loop: latency from each request's intended send time."
        }
    );
    report::print_paired(&rows, &names);
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("http_latency: failed runs: {}", failed.join(" "));
        ExitCode::FAILURE
    }
}

/// One (server, round, rate): start the server, wait for it, load it, kill it (the guard's drop).
fn measure(
    spec: &ServerSpec,
    round: usize,
    rate: Option<f64>,
    run: &RunOptions,
    cpus: Option<&str>,
    ports: &mut PortPicker,
    ticks_per_second: f64,
) -> Result<Row, String> {
    let port = ports.next()?;
    let mut server = Server::start(spec, port, cpus)?;
    server.wait_ready(port)?;
    let result = match rate {
        None => client::run(port, run, &mut || server.cpu()).map_err(|e| format!("client: {e}"))?,
        Some(rate) => {
            let open = OpenOptions { connections: run.connections, rate, warmup: run.warmup, duration: run.duration };
            open::run(port, &open, &mut || server.cpu())?
        }
    };
    if !server.alive() {
        return Err(format!("died during the run; its output:\n{}", server.output()));
    }
    if result.responses == 0 {
        return Err(format!("no responses ({}); its output:\n{}", result.errors, server.output()));
    }
    Ok(Row::new(&spec.name, round, rate, &result, ticks_per_second))
}
