//! Two processes bounce a counter back and forth, on one shard or across two: `--rounds N`
//! round trips (default 1 000 000).
//!
//! ```sh
//! cargo run --release --example ping_pong -- --rounds 1000000 --cross
//! ```

use std::sync::mpsc;
use std::time::{Duration, Instant};

use pinion::{Actor, Context, Cores, ExitReason, Handled, Message, Node, NodeOptions, Pid, ProcessOptions, ShardId};

/// A ball with the number of hits left.
struct Ball(u64);

/// Serves: tells the ponger who to return the ball to.
struct Serve {
    to: Pid,
    rounds: u64,
}

struct Player {
    done: Option<mpsc::Sender<Instant>>,
}

/// A player never awaits, so it handles its messages in `handle_message_now`, a plain
/// function: no future is built per message. (Had it to await, say a `call`, it would answer
/// `Handled::Async(msg)` for that message and handle it in the async `handle_message`.)
impl Actor for Player {
    fn handle_message_now(&mut self, ctx: &mut Context, from: Pid, msg: Message) -> Handled {
        let msg = match msg.downcast::<Serve>() {
            Ok(serve) => {
                let _ = ctx.send(serve.to, Ball(serve.rounds));
                return Handled::Done(Ok(()));
            }
            Err(msg) => msg,
        };
        if let Ok(ball) = msg.downcast::<Ball>() {
            if ball.0 == 0 {
                if let Some(done) = self.done.take() {
                    let _ = done.send(Instant::now());
                }
                return Handled::Done(Ok(()));
            }
            if ctx.send(from, Ball(ball.0 - 1)).is_err() {
                return Handled::Done(Err(ExitReason::custom("the other player is gone")));
            }
        }
        Handled::Done(Ok(()))
    }
}

fn main() {
    let mut rounds = 1_000_000u64;
    let mut cross = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--rounds" => {
                rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                    eprintln!("--rounds takes a number; usage: ping_pong [--rounds N] [--cross]");
                    std::process::exit(2);
                })
            }
            "--cross" => cross = true,
            _ => {
                eprintln!("usage: ping_pong [--rounds N] [--cross]");
                std::process::exit(2);
            }
        }
    }
    let shards = if cross { 2 } else { 1 };
    let options = NodeOptions { cores: Cores::Count(shards), pin: shards <= available(), ..Default::default() };
    let node = Node::start("ping-pong", options).expect("start the node");
    let (tx, rx) = mpsc::channel();
    let ping = node
        .spawn_on(ShardId(0), move || Player { done: Some(tx) }, ProcessOptions::default())
        .wait()
        .expect("spawn ping");
    let pong = node
        .spawn_on(ShardId((shards - 1) as u16), || Player { done: None }, ProcessOptions::default())
        .wait()
        .expect("spawn pong");
    let start = Instant::now();
    // A round trip is two hits.
    node.send(pong, Serve { to: ping, rounds: rounds * 2 }).expect("serve");
    let end = rx.recv_timeout(Duration::from_secs(120)).expect("the rally finished");
    let secs = (end - start).as_secs_f64();
    println!(
        "{} round trips {} in {:.3} s: {:.0} round trips/s, {:.0} ns per round trip",
        rounds,
        if cross { "across 2 shards" } else { "on one shard" },
        secs,
        rounds as f64 / secs,
        secs * 1e9 / rounds as f64
    );
    node.stop();
}

fn available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
