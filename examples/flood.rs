//! A producer floods a consumer with `u64` messages; prints the throughput.
//!
//! Same shard (one pinned shard) by default; `--cross` puts them on two shards. `N` (env)
//! sets the message count (default 10M). The producer yields and retries while the
//! consumer's mailbox is full (`MAILBOX` env, default 1024). Used for the same-shard numbers
//! in PERF.md.
//!
//! ```sh
//! cargo run --release --example flood
//! cargo run --release --example flood -- --cross
//! ```

use std::sync::mpsc;
use std::time::{Duration, Instant};

use pinion::{Actor, Context, Cores, ExitReason, Message, Node, NodeOptions, Pid, ProcessOptions, ShardId};

struct Consumer {
    seen: u64,
    target: u64,
    done: Option<mpsc::Sender<Instant>>,
}

impl Actor for Consumer {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> {
        self.seen += 1;
        if self.seen == self.target
            && let Some(done) = self.done.take()
        {
            let _ = done.send(Instant::now());
        }
        Ok(())
    }
}

struct Producer {
    to: Pid,
    n: u64,
}

impl Actor for Producer {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> {
        let mut i = 0;
        while i < self.n {
            match ctx.send(self.to, i) {
                Ok(()) => i += 1,
                Err(e) if e.is_full() => ctx.yield_now().await,
                Err(e) => return Err(ExitReason::custom(format!("producer: {e}"))),
            }
        }
        Ok(())
    }
}

fn main() {
    let mut cross = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--cross" => cross = true,
            "-h" | "--help" => {
                println!("usage: [N=count] [MAILBOX=n] flood [--cross]");
                return;
            }
            other => {
                eprintln!("unknown argument {other}; usage: [N=count] [MAILBOX=n] flood [--cross]");
                std::process::exit(2);
            }
        }
    }
    let n: u64 = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let shards = if cross { 2 } else { 1 };
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let options = NodeOptions { cores: Cores::Count(shards), pin: shards <= available, ..Default::default() };
    let node = Node::start("flood", options).expect("start the node");
    let (tx, rx) = mpsc::channel();
    let consumer = node
        .spawn_on(
            ShardId((shards - 1) as u16),
            move || Consumer { seen: 0, target: n, done: Some(tx) },
            ProcessOptions::with_mailbox(std::env::var("MAILBOX").ok().and_then(|v| v.parse().ok()).unwrap_or(1024)),
        )
        .wait()
        .expect("spawn the consumer");
    let producer = node
        .spawn_on(ShardId(0), move || Producer { to: consumer, n }, ProcessOptions::default())
        .wait()
        .expect("spawn the producer");
    let start = Instant::now();
    node.send(producer, ()).expect("start the producer");
    let end = rx.recv_timeout(Duration::from_secs(300)).expect("the consumer finished");
    let secs = (end - start).as_secs_f64();
    println!(
        "{n} messages {} in {secs:.3} s: {:.1} M msg/s",
        if cross { "across 2 shards" } else { "on one shard" },
        n as f64 / secs / 1e6
    );
    node.stop();
}
