//! Probe: same-shard (or --cross) flood throughput; N from the environment.
use pinion::*;
use std::sync::mpsc;
use std::time::Instant;
struct Consumer {
    n: u64,
    target: u64,
    done: Option<mpsc::Sender<Instant>>,
}
impl Actor for Consumer {
    async fn handle_message(&mut self, _ctx: &mut Context, _f: Pid, _m: Message) -> Result<(), ExitReason> {
        self.n += 1;
        if self.n == self.target {
            if let Some(d) = self.done.take() {
                let _ = d.send(Instant::now());
            }
        }
        Ok(())
    }
}
struct Producer {
    to: Pid,
    n: u64,
}
impl Actor for Producer {
    async fn handle_message(&mut self, ctx: &mut Context, _f: Pid, _m: Message) -> Result<(), ExitReason> {
        let mut i = 0;
        while i < self.n {
            match ctx.send(self.to, i) {
                Ok(()) => i += 1,
                Err(_) => ctx.yield_now().await,
            }
        }
        Ok(())
    }
}
fn main() {
    let cross = std::env::args().any(|a| a == "--cross");
    let shards = if cross { 2 } else { 1 };
    let node =
        Node::start("flood", NodeOptions { cores: Cores::Count(shards), pin: true, ..Default::default() }).unwrap();
    let n: u64 = std::env::var("N").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let (tx, rx) = mpsc::channel();
    let c = node
        .spawn_on(
            ShardId((shards - 1) as u16),
            move || Consumer { n: 0, target: n, done: Some(tx) },
            ProcessOptions::with_mailbox(1024),
        )
        .wait()
        .unwrap();
    let p = node.spawn_on(ShardId(0), move || Producer { to: c, n }, ProcessOptions::default()).wait().unwrap();
    let t = Instant::now();
    node.send(p, ()).unwrap();
    let end = rx.recv().unwrap();
    let s = (end - t).as_secs_f64();
    println!("{} msgs in {:.3}s = {:.1} M msg/s", n, s, n as f64 / s / 1e6);
    node.stop();
}
