//! The seed's "Basic Setup" with its "Concurrent Processing": a `WebService` actor starts a
//! pool of workers, the handler and the web server; `GET /` answers `Hello, World!` through an
//! actor.
//!
//! - `GET /` and `GET /plaintext`: `Hello, World!` from a `WebWorker` of the pool (`--pool N`
//!   workers, default one per shard, each with a mailbox of `--mailbox M`, default 1024). The
//!   connection's shard hands the request to a worker with room on that same shard first; with
//!   every worker full the answer is 503 with `Retry-After`, at once;
//! - `HEAD /`: like GET, without the body;
//! - `POST /`: reads the body and answers how many bytes it had (to probe the framing);
//! - `--plain`: the same routes answered by plain functions on the shard (no actor hop), to
//!   measure what the hop costs.
//!
//! ```sh
//! cargo run --release --example hello -- --port 8080 --cores 1 [--pool N] [--mailbox M]
//! curl http://127.0.0.1:8080/
//! ```

use std::borrow::Cow;
use std::time::Duration;

use pinion::http::{Method, Request, Response};
use pinion::web::{Router, WebHandler, WebHandlerOptions, WebServer, WebServerOptions, WebTarget, WebWorker};
use pinion::{Actor, Context, Cores, ExitReason, Message, Node, NodeOptions, Pid, Pool, PoolOptions, ProcessOptions};
use shutdown::Drain;

mod shutdown;

/// Answers the requests.
struct HelloWorker;

impl WebWorker for HelloWorker {
    // What `Allow` lists (HEAD comes with GET): every other method is answered 405 for it.
    const METHODS: Option<&'static [Method]> = Some(&[Method::Get, Method::Post]);

    // GET (and HEAD, which is GET without the body) needs no await: answered as a plain
    // function, no future is built per request.
    fn handle_now(&mut self, _ctx: &mut Context, req: &Request) -> Option<Response> {
        matches!(req.method(), Method::Get | Method::Head).then(|| plain_text("Hello, World!"))
    }

    async fn handle_post(&mut self, _ctx: &mut Context, req: &Request) -> Response {
        plain_text(format!("received {} bytes\n", req.body().len()))
    }
}

/// `text/plain` without `Response::text`'s `; charset=utf-8` (the bodies are ASCII): the
/// answer the benchmarks' peers send, byte for byte.
fn plain_text(body: impl Into<Cow<'static, str>>) -> Response {
    Response { content_type: Some(Cow::Borrowed("text/plain")), ..Response::text(body) }
}

fn hello(_req: &Request) -> Response {
    plain_text("Hello, World!")
}

fn count(req: &Request) -> Response {
    plain_text(format!("received {} bytes\n", req.body().len()))
}

/// Starts everything in its `init`, keeps the server while it lives.
struct WebService {
    host: String,
    port: u16,
    plain: bool,
    pool: Option<usize>,
    mailbox: usize,
    server: Option<WebServer>,
}

impl Actor for WebService {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        let router = if self.plain {
            Router::new().get("/", hello).post("/", count).get("/plaintext", hello)
        } else {
            // A pool spread over the shards (one worker per shard by default): a connection's
            // requests go to a worker on its own shard while that one has room.
            let size = self.pool.unwrap_or(ctx.shards());
            let options = PoolOptions::new(size, self.mailbox, || HelloWorker);
            let pool = ctx
                .spawn_register("hello-pool", move || Pool::new(options), ProcessOptions::default())
                .await
                .map_err(|e| ExitReason::custom(format!("starting the pool: {e}")))?;
            let handler = WebHandler::new(WebHandlerOptions {
                request_timeout: Duration::from_secs(5),
                ..WebHandlerOptions::new(WebTarget::Pid(pool))
            });
            Router::new().route("/", handler.clone()).route("/plaintext", handler)
        };
        let options = WebServerOptions::new(self.host.clone(), self.port, router);
        let server = WebServer::start(&ctx.handle(), options).map_err(|e| ExitReason::custom(e.to_string()))?;
        println!("listening on http://{}/ ({})", server.local_addr(), if self.plain { "plain" } else { "actor" });
        self.server = Some(server);
        Ok(())
    }

    /// [`Drain`] (on SIGTERM or SIGINT): the server drains, then the node stops.
    async fn handle_message(&mut self, ctx: &mut Context, _from: Pid, msg: Message) -> Result<(), ExitReason> {
        if msg.is::<Drain>() {
            shutdown::drain_then_stop(ctx, self.server.as_ref()).await;
        }
        Ok(())
    }
}

fn main() {
    let mut port = 8080u16;
    let mut cores = None;
    let mut plain = false;
    let mut pool = None;
    let mut mailbox = 1024;
    const USAGE: &str = "usage: hello [--port N, --cores N, --plain, --pool N, --mailbox N]";
    // A flag's number, or the usage and exit 2 (a trial: `--cores abc` panicked).
    let number = |flag: &str, value: Option<String>| -> usize {
        value.and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("{flag} takes a number; {USAGE}");
            std::process::exit(2);
        })
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => {
                port = u16::try_from(number("--port", args.next())).unwrap_or_else(|_| {
                    eprintln!("--port takes a port number; {USAGE}");
                    std::process::exit(2);
                })
            }
            "--cores" => cores = Some(number("--cores", args.next())),
            "--plain" => plain = true,
            "--pool" => pool = Some(number("--pool", args.next())),
            "--mailbox" => mailbox = number("--mailbox", args.next()),
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
    // SIGINT (ctrl-C) or SIGTERM drains the server, then stops the node (`examples/shutdown`):
    // the requests read are answered, the one being read too, and the program exits with
    // status 0 instead of dying mid-request (a node stop alone cut a request being read).
    // Taken before the node starts: one that comes while it starts is kept for then, not
    // the default action's kill.
    let signals = shutdown::take_signals();
    let node = Node::start("hello", options).unwrap_or_else(|e| {
        eprintln!("hello: {e}");
        std::process::exit(1)
    });
    let service = WebService { host: "127.0.0.1".into(), port, plain, pool, mailbox, server: None };
    match node.spawn(move || service, ProcessOptions::default()).wait() {
        Ok(service) => shutdown::stop_on_signals("hello", signals, &node, service),
        Err(e) => {
            eprintln!("hello: {e}");
            std::process::exit(1)
        }
    }
    node.wait();
}
