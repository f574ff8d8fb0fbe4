//! The seed's "Basic Setup": a `WebService` actor starts the workers, the handler and the web
//! server; `GET /` answers `Hello, World!` through an actor.
//!
//! - `GET /` and `GET /plaintext`: `Hello, World!` (from a `WebWorker` actor on the
//!   connection's shard);
//! - `HEAD /`: like GET, without the body;
//! - `POST /`: reads the body and answers how many bytes it had (to probe the framing);
//! - `--plain`: the same routes answered by plain functions on the shard (no actor hop), to
//!   measure what the hop costs.
//!
//! ```sh
//! cargo run --release --example hello -- --port 8080 --cores 1
//! curl http://127.0.0.1:8080/
//! ```

use std::time::Duration;

use pinion::http::{Request, Response};
use pinion::web::{Router, WebHandler, WebHandlerOptions, WebServer, WebServerOptions, WebTarget, WebWorker};
use pinion::{Actor, Context, Cores, ExitReason, Node, NodeOptions, ProcessOptions, ShardId};

/// Answers the requests.
struct HelloWorker;

impl WebWorker for HelloWorker {
    async fn handle_get(&mut self, _ctx: &mut Context, _req: &Request) -> Response {
        Response::text("Hello, World!")
    }

    async fn handle_post(&mut self, _ctx: &mut Context, req: &Request) -> Response {
        Response::text(format!("received {} bytes\n", req.body().len()))
    }
}

fn hello(_req: &Request) -> Response {
    Response::text("Hello, World!")
}

fn count(req: &Request) -> Response {
    Response::text(format!("received {} bytes\n", req.body().len()))
}

/// Starts everything in its `init`, keeps the server while it lives.
struct WebService {
    host: String,
    port: u16,
    plain: bool,
    server: Option<WebServer>,
}

impl Actor for WebService {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        let router = if self.plain {
            Router::new().get("/", hello).post("/", count).get("/plaintext", hello)
        } else {
            // One worker per shard: each connection's requests stay on its shard.
            let mut workers = Vec::new();
            for shard in 0..ctx.shards() {
                let pid = ctx
                    .spawn_on(ShardId(shard as u16), || HelloWorker, ProcessOptions::with_mailbox(1024))
                    .await
                    .map_err(|e| ExitReason::custom(format!("spawning a worker: {e}")))?;
                workers.push(pid);
            }
            let handler = WebHandler::new(WebHandlerOptions {
                request_timeout: Duration::from_secs(5),
                ..WebHandlerOptions::new(WebTarget::Nearest(workers))
            });
            Router::new().route("/", handler.clone()).route("/plaintext", handler)
        };
        let options = WebServerOptions::new(self.host.clone(), self.port, router);
        let server =
            WebServer::start(&ctx.handle(), options).map_err(|e| ExitReason::custom(format!("web server: {e}")))?;
        println!("listening on http://{}/ ({})", server.local_addr(), if self.plain { "plain" } else { "actor" });
        self.server = Some(server);
        Ok(())
    }
}

fn main() {
    let mut port = 8080u16;
    let mut cores = None;
    let mut plain = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = args.next().and_then(|v| v.parse().ok()).expect("--port N"),
            "--cores" => cores = Some(args.next().and_then(|v| v.parse::<usize>().ok()).expect("--cores N")),
            "--plain" => plain = true,
            other => panic!("unknown argument {other} (--port N, --cores N, --plain)"),
        }
    }
    let options = NodeOptions { cores: cores.map_or(Cores::All, Cores::Count), ..Default::default() };
    let node = Node::start("hello", options).unwrap_or_else(|e| panic!("{e}"));
    let service = WebService { host: "127.0.0.1".into(), port, plain, server: None };
    node.spawn(move || service, ProcessOptions::default()).wait().unwrap_or_else(|e| panic!("{e}"));
    node.wait();
}
