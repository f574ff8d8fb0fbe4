//! Exact backpressure, end to end: a pool of `--pool S` web workers with mailboxes of
//! `--mailbox M` holds `S × M` queued requests plus `S` in progress; every request past that
//! is answered 503 with `Retry-After` at once. Each worker waits `--work-ms T` per request on
//! the shard's timer (not a blocking sleep: the shard goes on serving meanwhile).
//!
//! ```sh
//! cargo run --release --example backpressure -- --port 8080 --pool 20 --mailbox 10 --work-ms 1000
//! # 300 requests at once: exactly 220 × 200 and 80 × 503
//! ```
//!
//! `GET /stats` answers the pool's counters (held, capacity, shed, per-worker processed).

use std::time::Duration;

use pinion::http::{Method, Request, Response};
use pinion::web::{Router, WebHandler, WebHandlerOptions, WebServer, WebServerOptions, WebTarget, WebWorker};
use pinion::{
    Actor, Context, Cores, ExitReason, Node, NodeHandle, NodeOptions, Pid, Pool, PoolOptions, ProcessOptions,
};

/// Waits `work` per request, then answers.
struct SlowWorker {
    work: Duration,
}

impl WebWorker for SlowWorker {
    const METHODS: Option<&'static [Method]> = Some(&[Method::Get]);

    async fn handle_get(&mut self, ctx: &mut Context, _req: &Request) -> Response {
        ctx.sleep(self.work).await;
        Response::text("done\n")
    }
}

struct Service {
    port: u16,
    size: usize,
    mailbox: usize,
    work: Duration,
    server: Option<WebServer>,
}

fn stats(node: &NodeHandle, pool: Pid) -> Response {
    match node.pool(pool) {
        Ok(p) => {
            let info = p.info();
            let processed: u64 = info.workers.iter().map(|w| w.processed).sum();
            Response::text(format!(
                "workers {} capacity {} held {} shed {} processed {}\n",
                info.size, info.capacity, info.held, info.shed, processed
            ))
        }
        Err(e) => Response::text(format!("{e}\n")),
    }
}

impl Actor for Service {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        let work = self.work;
        let options = PoolOptions::new(self.size, self.mailbox, move || SlowWorker { work });
        let pool = ctx
            .spawn_register("slow-pool", move || Pool::new(options), ProcessOptions::default())
            .await
            .map_err(|e| ExitReason::custom(format!("starting the pool: {e}")))?;
        let handler = WebHandler::new(WebHandlerOptions {
            request_timeout: Duration::from_secs(3600),
            ..WebHandlerOptions::new(WebTarget::Pid(pool))
        });
        let node = ctx.handle();
        let router = Router::new().route("/", handler).get("/stats", move |_: &Request| stats(&node, pool));
        let server = WebServer::start(&ctx.handle(), WebServerOptions::new("127.0.0.1", self.port, router))
            .map_err(|e| ExitReason::custom(e.to_string()))?;
        println!(
            "listening on http://{}/ (pool {} × mailbox {}, {:?} per request: holds {})",
            server.local_addr(),
            self.size,
            self.mailbox,
            self.work,
            self.size * (self.mailbox + 1)
        );
        self.server = Some(server);
        Ok(())
    }
}

fn main() {
    let (mut port, mut size, mut mailbox, mut work_ms, mut cores) = (8080u16, 20usize, 10usize, 1000u64, None);
    const USAGE: &str = "usage: backpressure [--port N, --pool N, --mailbox N, --work-ms N, --cores N]";
    // A flag's number, or the usage and exit 2 (as `hello`: a bad value does not panic).
    fn number<T: std::str::FromStr>(flag: &str, value: Option<String>) -> T {
        value.and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("{flag} takes a number; {USAGE}");
            std::process::exit(2);
        })
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = number("--port", args.next()),
            "--pool" => size = number("--pool", args.next()),
            "--mailbox" => mailbox = number("--mailbox", args.next()),
            "--work-ms" => work_ms = number("--work-ms", args.next()),
            "--cores" => cores = Some(number("--cores", args.next())),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => {
                eprintln!("unknown argument {other}; {USAGE}");
                std::process::exit(2);
            }
        }
    }
    let options = NodeOptions { cores: cores.map_or(Cores::All, Cores::Count), ..Default::default() };
    let node = Node::start("backpressure", options).unwrap_or_else(|e| {
        eprintln!("backpressure: {e}");
        std::process::exit(1)
    });
    let service = Service { port, size, mailbox, work: Duration::from_millis(work_ms), server: None };
    // (A busy port is one line and exit 1, as `hello`: it panicked with a backtrace.)
    if let Err(e) = node.spawn(move || service, ProcessOptions::default()).wait() {
        eprintln!("backpressure: {e}");
        std::process::exit(1)
    }
    node.wait();
}
