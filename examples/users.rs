//! The meta-process approach with JSON: `/users/{id}` and `/orders` answered by an actor.
//!
//! A `WebService` actor starts, in its `init`, a `UserStore` worker (a [`WebWorker`]
//! registered as `user-store`) and the [`WebServer`]. The [`Router`] gives each route a
//! [`WebHandler`] to the worker by name: the request is parsed on the shard that accepted the
//! connection, travels to the worker as a message, and the worker's answer travels back.
//!
//! - `GET /users/{id}`: 200 with the user as JSON; 404 (JSON error) for an unknown id; 400
//!   (JSON error) for an id that is not a number (the id is percent-decoded first: `%31` is 1);
//! - `POST /orders` with a JSON body `{"user_id": 1, "item": "book", "quantity": 2}`: 201
//!   with the created order as JSON and `Location: /orders/{id}`; 400 (JSON error with serde's
//!   message) for a body that is not JSON, 422 for JSON that is not an order (a field missing
//!   or of the wrong type), as axum's `Json` answers; 415 without a JSON `Content-Type`
//!   (`application/json` or `application/*+json`, parameters such as `charset` allowed); 422
//!   for an unknown user or a zero quantity;
//! - `GET /orders/{id}`: the order `Location` pointed to;
//! - any other path: 404 (JSON error), given from the head alone (`Router::not_found`): a
//!   client that waits for `100 Continue` is refused before it uploads.
//!
//! A body over the server's bound (`HttpLimits::max_body_bytes`, 1 MiB by default) is refused
//! by the connection before any handler sees it: 413 in `text/plain`, not JSON, and the
//! connection closes.
//!
//! Backpressure comes with the approach: the worker's mailbox holds 256 requests; beyond that
//! the handler answers 503 with `Retry-After` at once, without queueing the request. A request
//! unanswered after two seconds gets 504.
//!
//! ```sh
//! cargo run --example users -- --port 8080
//! curl -i http://127.0.0.1:8080/users/1
//! curl -i -X POST -H 'content-type: application/json' \
//!      -d '{"user_id": 1, "item": "book", "quantity": 2}' http://127.0.0.1:8080/orders
//! ```
//!
//! The first line on stdout is `listening on http://ADDR/` (with `--port 0`, the port the
//! system picked).
//!
//! SIGTERM (a container stop) or SIGINT (ctrl-C) drains the server ([`WebServer::drain`]):
//! it stops listening, every connection answers the requests it has read — the one it is
//! reading too — the last with `Connection: close`, and closes; once none is left (or after
//! 10 s) the node stops and the program exits with status 0. A second signal stops at once
//! (`examples/shutdown`, which `hello` shares).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use pinion::http::{Method, Request, Response, StatusCode};
use pinion::web::{Router, WebHandler, WebHandlerOptions, WebServer, WebServerOptions, WebWorker};
use pinion::{Actor, Context, Cores, ExitReason, Message, Node, NodeOptions, Pid, ProcessOptions};
use serde::{Deserialize, Serialize};
use shutdown::Drain;

mod shutdown;

/// A user, as the API shows it.
#[derive(Debug, Clone, Serialize)]
struct User {
    id: u64,
    name: String,
    email: String,
}

/// The body of `POST /orders`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrder {
    user_id: u64,
    item: String,
    quantity: u32,
}

/// An order, as created.
#[derive(Debug, Clone, Serialize)]
struct Order {
    id: u64,
    user_id: u64,
    item: String,
    quantity: u32,
}

/// The body of every error answer.
#[derive(Debug, Serialize)]
struct ApiError {
    error: String,
}

/// Whether a `Content-Type` value is JSON: `application/json` or `application/*+json` (the
/// media type in any case, before any `;` parameters), as axum's `Json` takes.
fn is_json(value: &[u8]) -> bool {
    let media = value.split(|&b| b == b';').next().unwrap_or_default().trim_ascii().to_ascii_lowercase();
    media == b"application/json" || (media.starts_with(b"application/") && media.ends_with(b"+json"))
}

/// `value` as a JSON response with `status`.
fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => Response::json(body).with_status(status),
        Err(_) => Response::status(StatusCode::INTERNAL_SERVER_ERROR),
    }
}

/// A JSON error answer.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json(status, &ApiError { error: message.into() })
}

/// The users and the orders. One process owns them: no lock, requests are handled one at a
/// time in mailbox order.
struct UserStore {
    users: HashMap<u64, User>,
    orders: BTreeMap<u64, Order>,
    next_order: u64,
}

impl UserStore {
    fn new() -> UserStore {
        let users =
            [(1, "Alice", "alice@example.com"), (2, "Bob", "bob@example.com"), (3, "Carol", "carol@example.com")]
                .into_iter()
                .map(|(id, name, email)| (id, User { id, name: name.into(), email: email.into() }))
                .collect();
        UserStore { users, orders: BTreeMap::new(), next_order: 1 }
    }

    /// The `{id}` of the route, percent-decoded, as a number.
    fn id(req: &Request, what: &str) -> Result<u64, Response> {
        let bad = |raw: &str| error(StatusCode::BAD_REQUEST, format!("{what} id must be a number, got {raw:?}"));
        match req.param_decoded("id") {
            // Digits only (`u64::from_str` takes a leading `+`).
            Some(Ok(id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
                id.parse().map_err(|_| bad(&id))
            }
            Some(Ok(id)) => Err(bad(&id)),
            _ => Err(bad(req.param("id").unwrap_or_default())),
        }
    }

    fn get_user(&self, req: &Request) -> Response {
        let id = match UserStore::id(req, "user") {
            Ok(id) => id,
            Err(resp) => return resp,
        };
        match self.users.get(&id) {
            Some(user) => json(StatusCode::OK, user),
            None => error(StatusCode::NOT_FOUND, format!("user {id} not found")),
        }
    }

    fn get_order(&self, req: &Request) -> Response {
        let id = match UserStore::id(req, "order") {
            Ok(id) => id,
            Err(resp) => return resp,
        };
        match self.orders.get(&id) {
            Some(order) => json(StatusCode::OK, order),
            None => error(StatusCode::NOT_FOUND, format!("order {id} not found")),
        }
    }

    fn create_order(&mut self, req: &Request) -> Response {
        if !req.header("content-type").is_some_and(is_json) {
            return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "orders are sent as application/json");
        }
        let new: NewOrder = match serde_json::from_slice(req.body()) {
            Ok(order) => order,
            // JSON, but not an order: the request is well-formed, its content is not.
            Err(e) if e.is_data() => return error(StatusCode::UNPROCESSABLE_CONTENT, format!("invalid order: {e}")),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid order: {e}")),
        };
        if !self.users.contains_key(&new.user_id) {
            return error(StatusCode::UNPROCESSABLE_CONTENT, format!("user {} not found", new.user_id));
        }
        if new.quantity == 0 {
            return error(StatusCode::UNPROCESSABLE_CONTENT, "quantity must be at least 1");
        }
        let id = self.next_order;
        self.next_order += 1;
        let order = Order { id, user_id: new.user_id, item: new.item, quantity: new.quantity };
        let resp = json(StatusCode::CREATED, &order).header("location", format!("/orders/{id}"));
        self.orders.insert(id, order);
        resp
    }
}

impl WebWorker for UserStore {
    const METHODS: Option<&'static [Method]> = Some(&[Method::Get, Method::Post]);

    /// The router sends it `GET /users/{id}` and `GET /orders/{id}`.
    async fn handle_get(&mut self, _ctx: &mut Context, req: &Request) -> Response {
        if req.path().starts_with("/users/") { self.get_user(req) } else { self.get_order(req) }
    }

    /// The router sends it `POST /orders`.
    async fn handle_post(&mut self, _ctx: &mut Context, req: &Request) -> Response {
        self.create_order(req)
    }
}

/// Starts the worker and the server in its `init`; keeps the server while it lives.
struct WebService {
    port: u16,
    server: Option<WebServer>,
}

impl Actor for WebService {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        ctx.spawn_register("user-store", UserStore::new, ProcessOptions::with_mailbox(256))
            .await
            .map_err(|e| ExitReason::custom(format!("spawning the user store: {e}")))?;
        // One handler per route (all to the same worker here; each could have its own worker
        // and timeout).
        let to_store = || {
            WebHandler::new(WebHandlerOptions {
                request_timeout: Duration::from_secs(2),
                retry_after_secs: 1,
                ..WebHandlerOptions::new("user-store")
            })
        };
        let router = Router::new()
            .get("/users/{id}", to_store())
            .post("/orders", to_store())
            .get("/orders/{id}", to_store())
            // From the head alone (`not_found`, not `fallback`): a client waiting for `100
            // Continue` gets the 404 before it uploads.
            .not_found(|_: &Request| error(StatusCode::NOT_FOUND, "no such resource"));
        let options = WebServerOptions::new("127.0.0.1", self.port, router);
        let server = WebServer::start(&ctx.handle(), options).map_err(|e| ExitReason::custom(e.to_string()))?;
        println!("listening on http://{}/", server.local_addr());
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
    const USAGE: &str = "usage: users [--port N, --cores N]";
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
            "--cores" => cores = Some(value("--cores", args.next())),
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
    // SIGINT and SIGTERM drain, then stop (`examples/shutdown`), taken before the node starts:
    // one that comes while it or the service starts is kept for then, not the default kill.
    let signals = shutdown::take_signals();
    let node = Node::start("users", options).unwrap_or_else(|e| {
        eprintln!("users: {e}");
        std::process::exit(1)
    });
    let service = WebService { port, server: None };
    match node.spawn(move || service, ProcessOptions::default()).wait() {
        Ok(service) => shutdown::stop_on_signals("users", signals, &node, service),
        Err(e) => {
            eprintln!("users: {e}");
            std::process::exit(1)
        }
    }
    node.wait();
}
