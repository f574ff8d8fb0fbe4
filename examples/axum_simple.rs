//! The simple approach: an axum server on tokio whose handlers call pinion actors with
//! [`NodeHandle::call`]`(target, msg, timeout).await`.
//!
//! - `GET /`: `Hello, World!`, answered by the `greeter` actor;
//! - `GET /users/{id}`: the user as JSON from the `user-store` actor; 404 (JSON error) for an
//!   unknown id, 400 (JSON error) for an id that is not a number.
//!
//! `examples/users.rs` serves the same users the other way, through pinion's own server and
//! web meta-processes. How the two compare:
//!
//! | | simple (this file) | meta-process (`users.rs`) |
//! |---|---|---|
//! | threads | tokio's worker threads run the connections and handlers; pinion's shards run the actors: two sets of threads sharing the cores (this example starts one shard by default, `--cores N` for more) | one pinned thread per core: each shard accepts its own connections (`SO_REUSEPORT`), parses them and runs the actors |
//! | hops per request | always two cross-thread hops: the call's envelope into the shard's inbox (a wake-up syscall if the shard sleeps), the reply back waking the tokio task | none when the worker is on the connection's shard (`WebTarget::Nearest`); otherwise one envelope each way between shards |
//! | backpressure | only at the actor: a full mailbox fails the call at once with `CallError::MailboxFull`, which the handler maps to 503 with `Retry-After`; before that, hyper accepts every connection and tokio runs every handler task, so requests that have not yet reached `call` are not bounded | the `WebHandler` answers 503 with `Retry-After` the moment the worker's mailbox is full (the request is never queued); connections per shard and pipelined requests per connection are bounded too |
//! | slow actor | the call's timeout: 504 | `WebHandlerOptions::request_timeout`: 504 |
//! | actor panics on the request | the call fails with `CallError::NoReply`: 500 (the catch-all arm of `call_failed`) | the runtime answers 500 |
//! | actor gone | `UnknownName` or `NoSuchProcess`: 503, for as long as it stays gone (this example does not supervise its actors: put them under a `Supervisor` to have them restarted) | 503; a pool replaces a crashed worker |
//! | tooling | all of tower and axum: extractors, middleware, OpenAPI generators | pinion's `Router` and middleware; with the `interop` feature, requests and responses convert to and from the `http` crate's types |
//!
//! Start with this one; move to the meta-process approach for the fewer threads and hops, and
//! for a bound on everything the server accepts.
//!
//! ```sh
//! cargo run --example axum_simple -- --port 8080
//! curl -i http://127.0.0.1:8080/
//! curl -i http://127.0.0.1:8080/users/1
//! ```
//!
//! The first line on stdout is `listening on http://ADDR/` (with `--port 0`, the port the
//! system picked).

use std::collections::HashMap;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use pinion::{
    Actor, CallError, Context, Cores, ExitReason, Message, Node, NodeHandle, NodeOptions, Pid, ProcessOptions, Reply,
};
use serde::Serialize;

/// How long a handler waits for an actor.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// A user, as the API shows it.
#[derive(Debug, Clone, Serialize)]
struct User {
    id: u64,
    name: String,
    email: String,
}

/// The body of every error answer.
#[derive(Debug, Serialize)]
struct ApiError {
    error: String,
}

/// Answers any call with the greeting.
struct Greeter;

impl Actor for Greeter {
    async fn handle_call(&mut self, _ctx: &mut Context, _from: Pid, _req: Message) -> Result<Reply, ExitReason> {
        Ok(Reply::now(String::from("Hello, World!")))
    }
}

/// The request the user store answers: the user, if known (`Option<User>`).
struct GetUser(u64);

/// Owns the users; answers `GetUser` calls one at a time.
struct UserStore {
    users: HashMap<u64, User>,
}

impl UserStore {
    fn new() -> UserStore {
        let users =
            [(1, "Alice", "alice@example.com"), (2, "Bob", "bob@example.com"), (3, "Carol", "carol@example.com")]
                .into_iter()
                .map(|(id, name, email)| (id, User { id, name: name.into(), email: email.into() }))
                .collect();
        UserStore { users }
    }
}

impl Actor for UserStore {
    async fn handle_call(&mut self, _ctx: &mut Context, _from: Pid, req: Message) -> Result<Reply, ExitReason> {
        match req.downcast::<GetUser>() {
            Ok(GetUser(id)) => Ok(Reply::now(self.users.get(&id).cloned())),
            // Not a request it knows: no reply (the caller sees `CallError::NoReply`).
            Err(_) => Ok(Reply::Later),
        }
    }
}

/// A JSON error answer.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ApiError { error: message.into() })).into_response()
}

/// What a failed call becomes. A full mailbox is the actor's backpressure: 503 with
/// `Retry-After`, as pinion's `WebHandler` answers it.
fn call_failed(e: CallError) -> Response {
    match e {
        CallError::MailboxFull => {
            let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, "busy, retry later");
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
        CallError::Timeout => error(StatusCode::GATEWAY_TIMEOUT, "the actor did not answer in time"),
        CallError::NoSuchProcess | CallError::UnknownName | CallError::NodeDown | CallError::Stopped => {
            error(StatusCode::SERVICE_UNAVAILABLE, format!("service unavailable: {e}"))
        }
        other => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// `GET /`: the greeter's answer.
async fn hello(State(node): State<NodeHandle>) -> Response {
    match node.call("greeter", (), CALL_TIMEOUT).await {
        Ok(reply) => match reply.downcast::<String>() {
            Ok(text) => text.into_response(),
            Err(_) => call_failed(CallError::WrongType),
        },
        Err(e) => call_failed(e),
    }
}

/// `GET /users/{id}`: the user store's answer.
///
/// The id is taken as `Result<Path<String>, _>`: a segment that is not UTF-8 once
/// percent-decoded (`/users/%FF`) is not a number either, and gets the same JSON 400, not
/// axum's `text/plain` rejection.
async fn get_user(State(node): State<NodeHandle>, raw: Result<Path<String>, PathRejection>) -> Response {
    let raw = match raw {
        Ok(Path(raw)) => raw,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("user id must be a number: {}", e.body_text())),
    };
    let Ok(id) = raw.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, format!("user id must be a number, got {raw:?}"));
    };
    match node.call("user-store", GetUser(id), CALL_TIMEOUT).await {
        Ok(reply) => match reply.downcast::<Option<User>>() {
            Ok(Some(user)) => Json(user).into_response(),
            Ok(None) => error(StatusCode::NOT_FOUND, format!("user {id} not found")),
            Err(_) => call_failed(CallError::WrongType),
        },
        Err(e) => call_failed(e),
    }
}

fn main() {
    let mut port = 8080u16;
    let mut cores = 1usize;
    const USAGE: &str = "usage: axum_simple [--port N, --cores N]";
    // A flag's value, or the usage and exit 2 (as hello's).
    fn value<T: std::str::FromStr>(flag: &str, value: Option<String>) -> T {
        value.and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            eprintln!("{flag} takes a number; {USAGE}");
            std::process::exit(2);
        })
    }
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => port = value("--port", args.next()),
            "--cores" => cores = value("--cores", args.next()),
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

    // The actors: a pinion node beside tokio, reached through its `NodeHandle`.
    let options = NodeOptions { cores: Cores::Count(cores), ..Default::default() };
    let node = Node::start("axum_simple", options).unwrap_or_else(|e| {
        eprintln!("axum_simple: {e}");
        std::process::exit(1)
    });
    let handle = node.handle();
    handle.spawn_register("greeter", || Greeter, ProcessOptions::with_mailbox(1024)).wait().expect("greeter");
    handle.spawn_register("user-store", UserStore::new, ProcessOptions::with_mailbox(256)).wait().expect("user store");

    // The HTTP side: axum on tokio, handlers holding the handle.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let served = runtime.block_on(async move {
        let app = axum::Router::new().route("/", get(hello)).route("/users/{id}", get(get_user)).with_state(handle);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("listening on http://{}/", listener.local_addr()?);
        axum::serve(listener, app).await
    });
    node.stop();
    if let Err(e) = served {
        panic!("serving: {e}");
    }
}
