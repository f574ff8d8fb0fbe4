//! What a pool costs per message, against sending to the worker's pid directly, in one run.
//!
//! ```sh
//! BENCH_ROUNDS=5 cargo bench --bench pool
//! ```
//!
//! One producer process on shard 0 sends `n` `u64` messages (yielding and retrying while the
//! target is full); the consumers count them. Variants, alternated every round in one process:
//!
//! - `direct/same_shard`: to one consumer's pid on shard 0, mailbox 1024;
//! - `pool/same_shard`: to a pool of one worker on shard 0, mailbox 1023 (also 1024 slots);
//! - `direct/cross_shard` and `pool/cross_shard`: the same with the consumer on shard 1;
//! - `pool4/spread`: a pool of 4 workers over both shards (mailbox 255: 1024 slots in all).
//!
//! The difference between `pool/*` and `direct/*` is the price of the pool's exactness: the
//! gate's compare-and-swap on admission, its subtraction when a run of messages is finished,
//! and the scan for a worker with room. Medians (min–max) over the rounds; ratio = pool/direct.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pinion::{
    Actor, Context, Cores, ExitReason, Message, Node, NodeOptions, Pid, Placement, Pool, PoolOptions, ProcessOptions,
    SendError, ShardId,
};

const WAIT: Duration = Duration::from_secs(60);

/// Counts messages; reports when the last one arrived.
struct Consumer {
    seen: Arc<AtomicU64>,
    n: u64,
    done: mpsc::Sender<Instant>,
}

impl Actor for Consumer {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        black_box(msg.downcast_ref::<u64>());
        if self.seen.fetch_add(1, Ordering::Relaxed) + 1 == self.n {
            let _ = self.done.send(Instant::now());
        }
        Ok(())
    }
}

struct Producer {
    to: Pid,
    n: u64,
    started: mpsc::Sender<Instant>,
}

impl Actor for Producer {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> {
        let _ = self.started.send(Instant::now());
        for i in 0..self.n {
            let mut msg = i;
            loop {
                match ctx.send(self.to, msg) {
                    Ok(()) => break,
                    Err(SendError::MailboxFull(m)) => {
                        msg = m;
                        ctx.yield_now().await;
                    }
                    Err(e) => panic!("producer: {e}"),
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Variant {
    Direct { shard: u16 },
    Pool { size: usize, mailbox: usize, placement: Option<u16> },
}

const VARIANTS: &[(&str, Variant)] = &[
    ("direct/same_shard", Variant::Direct { shard: 0 }),
    ("pool/same_shard", Variant::Pool { size: 1, mailbox: 1023, placement: Some(0) }),
    ("direct/cross_shard", Variant::Direct { shard: 1 }),
    ("pool/cross_shard", Variant::Pool { size: 1, mailbox: 1023, placement: Some(1) }),
    ("pool4/spread", Variant::Pool { size: 4, mailbox: 255, placement: None }),
];

/// One run: messages per second.
fn run(variant: Variant, n: u64) -> f64 {
    let node = Node::start("bench-pool", NodeOptions { cores: Cores::Count(2), pin: true, ..Default::default() })
        .expect("node");
    let h = node.handle();
    let (done_tx, done_rx) = mpsc::channel();
    let seen = Arc::new(AtomicU64::new(0));
    let make = {
        let seen = seen.clone();
        move || Consumer { seen: seen.clone(), n, done: done_tx.clone() }
    };
    let target = match variant {
        Variant::Direct { shard } => {
            h.spawn_on(ShardId(shard), make, ProcessOptions::with_mailbox(1024)).wait().expect("consumer")
        }
        Variant::Pool { size, mailbox, placement } => {
            let make = std::sync::Mutex::new(make);
            let factory = move || (make.lock().unwrap())();
            let mut options = PoolOptions::new(size, mailbox, factory);
            if let Some(s) = placement {
                options = options.placement(Placement::Shards(vec![ShardId(s)]));
            }
            h.spawn_on(ShardId(0), move || Pool::new(options), ProcessOptions::default()).wait().expect("pool")
        }
    };
    let (start_tx, start_rx) = mpsc::channel();
    let producer = h
        .spawn_on(ShardId(0), move || Producer { to: target, n, started: start_tx }, ProcessOptions::default())
        .wait()
        .expect("producer");
    h.send(producer, ()).expect("go");
    let t0 = start_rx.recv_timeout(WAIT).expect("producer starts");
    let t1 = done_rx.recv_timeout(WAIT).expect("consumers finish");
    node.stop();
    n as f64 / (t1 - t0).as_secs_f64()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2.0 }
}

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5).max(1);
    let n: u64 = std::env::var("BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000_000);
    // `cargo bench --bench pool -- pool/same` runs only the variants whose name contains it
    // (for profiling; the table then lacks the others).
    let filters: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for round in 0..rounds {
        for k in 0..VARIANTS.len() {
            let i = (k + round) % VARIANTS.len();
            if !wanted(VARIANTS[i].0) {
                continue;
            }
            let rate = run(VARIANTS[i].1, n);
            eprintln!("round {}/{rounds} {:<20} {:>8.2} M msg/s", round + 1, VARIANTS[i].0, rate / 1e6);
            results[i].push(rate);
        }
    }
    println!("## pool dispatch cost ({n} u64 messages, {rounds} rounds, 2 pinned shards)\n");
    println!("| variant | msg/s (median, min–max) | ns/msg | vs direct |");
    println!("|---|---|---|---|");
    let mut medians = Vec::new();
    for (i, (name, _)) in VARIANTS.iter().enumerate() {
        if results[i].is_empty() {
            medians.push(f64::NAN);
            continue;
        }
        let lo = results[i].iter().copied().fold(f64::INFINITY, f64::min);
        let hi = results[i].iter().copied().fold(0.0, f64::max);
        let med = median(&mut results[i]);
        medians.push(med);
        let versus = match *name {
            "pool/same_shard" => format!("{:.2}× ({:+.1} ns)", med / medians[0], 1e9 / med - 1e9 / medians[0]),
            "pool/cross_shard" => format!("{:.2}× ({:+.1} ns)", med / medians[2], 1e9 / med - 1e9 / medians[2]),
            _ => "–".into(),
        };
        println!("| {name} | {:.2} M ({:.2}–{:.2}) | {:.1} | {versus} |", med / 1e6, lo / 1e6, hi / 1e6, 1e9 / med);
    }
}
