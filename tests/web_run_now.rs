//! At a light load, a request for an idle pool worker on its connection's shard is handled
//! inside the connection's dispatch: the worker is polled there and then, and a synchronous
//! answer is kept in place like a plain function's (`ShardInfo::polled_in_dispatch` counts
//! it). What that must not change, over real sockets: answers in request order on one
//! connection; a request the worker held, answered from inside another request's dispatch (on
//! the same connection or another one); a panic there answered 500, the worker replaced and
//! every pool slot given back; a handler that answers later, answered later.

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pinion::http::Response;
use pinion::web::{Router, WebHandler, WebRequest, WebServer, WebServerOptions, WebTarget};
use pinion::{Actor, Context, ExitReason, Message, Node, Pid, Pool, PoolOptions, PoolRef, ProcessOptions};
use support::{CALL_TIMEOUT, Latch, lock, node, wait_until};

/// The message a `Keeper` sends itself to answer `/later`.
struct Later;

/// A pool worker: `/hold` keeps the request (and says so on `took`), `/release` answers every
/// held request with `held` and itself with `released`, `/boom` panics, `/later` answers
/// `later` 20 ms later, `/wait` stays in its handler until the latch lets it through (a long
/// request in hand) and answers `waited`, anything else `ok`.
struct Keeper {
    held: Vec<WebRequest>,
    later: Vec<WebRequest>,
    took: Arc<Mutex<Sender<()>>>,
    latch: Arc<Latch>,
}

impl Actor for Keeper {
    async fn handle_message(&mut self, ctx: &mut Context, _from: Pid, msg: Message) -> Result<(), ExitReason> {
        let req = match msg.downcast::<WebRequest>() {
            Ok(req) => req,
            Err(msg) => {
                if msg.is::<Later>() {
                    for req in self.later.drain(..) {
                        req.respond(Response::text("later"));
                    }
                }
                return Ok(());
            }
        };
        match req.request().path() {
            "/hold" => {
                self.held.push(req);
                let _ = lock(&self.took).send(());
            }
            "/release" => {
                for held in self.held.drain(..) {
                    held.respond(Response::text("held"));
                }
                req.respond(Response::text("released"));
            }
            "/boom" => panic!("boom, inside a dispatch"),
            "/wait" => {
                self.latch.acquire().await;
                req.respond(Response::text("waited"));
            }
            "/later" => {
                self.later.push(req);
                ctx.send_after(ctx.pid(), Later, Duration::from_millis(20));
            }
            _ => req.respond(Response::text("ok")),
        }
        Ok(())
    }
}

struct Service {
    node: Node,
    server: WebServer,
    pool: PoolRef,
    took: std::sync::mpsc::Receiver<()>,
}

/// One shard, a pool of one worker (mailbox 8) behind a `WebHandler`.
fn service(name: &str) -> Service {
    service_of(name, 1, Latch::new())
}

/// One shard, a pool of `size` workers (mailbox 8) whose `/wait` waits for `latch`.
fn service_of(name: &str, size: usize, latch: Arc<Latch>) -> Service {
    let node = node(name, 1);
    let (tx, took) = channel();
    let tx = Arc::new(Mutex::new(tx));
    let options = PoolOptions::new(size, 8, move || Keeper {
        held: Vec::new(),
        later: Vec::new(),
        took: tx.clone(),
        latch: latch.clone(),
    });
    let pid = node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let pool = node.handle().pool(pid).expect("pool ref");
    let router = Router::new().route("/{what}", WebHandler::to(WebTarget::Pid(pid)));
    let server = WebServer::start(&node, WebServerOptions::new("127.0.0.1", 0, router)).expect("server");
    Service { node, server, pool, took }
}

impl Service {
    /// Every pool slot given back (nothing leaked by a request handled inside a dispatch),
    /// then the node stopped.
    fn end(self) {
        wait_until("every pool slot back", || self.pool.info().held == 0);
        self.node.stop();
    }
}

fn polled_in_dispatch(node: &Node) -> u64 {
    node.handle().inspect().expect("inspect").iter().map(|s| s.polled_in_dispatch).sum()
}

fn connect(s: &Service) -> TcpStream {
    let stream = TcpStream::connect(s.server.local_addr()).expect("connect");
    stream.set_read_timeout(Some(CALL_TIMEOUT)).expect("timeout");
    stream
}

fn send(stream: &mut TcpStream, path: &str) {
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).expect("write");
}

/// Reads `n` responses: (status, body) each.
fn responses(stream: &mut TcpStream, n: usize) -> Vec<(u16, String)> {
    support::read_responses(stream, n)
}

/// One request, and its answer.
fn ask(stream: &mut TcpStream, path: &str) -> (u16, String) {
    send(stream, path);
    responses(stream, 1).remove(0)
}

fn ok(body: &str) -> (u16, String) {
    (200, body.to_owned())
}

#[test]
fn single_requests_to_an_idle_worker_are_handled_inside_the_dispatch_and_answered_in_place() {
    let s = service("run-now-single");
    let mut c = connect(&s);
    for _ in 0..20 {
        assert_eq!(ask(&mut c, "/x"), ok("ok"));
    }
    // Each of them found the worker idle (the first may have met it still starting).
    assert!(polled_in_dispatch(&s.node) >= 19, "{}", polled_in_dispatch(&s.node));
    s.end();
}

#[test]
fn a_held_request_is_answered_from_inside_a_later_dispatch_on_the_same_connection_in_order() {
    let s = service("run-now-same-conn");
    let mut c = connect(&s);
    send(&mut c, "/hold");
    s.took.recv_timeout(CALL_TIMEOUT).expect("the worker took /hold");
    let before = polled_in_dispatch(&s.node);
    // The worker is idle again, holding /hold: /release is handled inside its dispatch and
    // answers /hold (through the connection) and itself (in place).
    send(&mut c, "/release");
    assert_eq!(responses(&mut c, 2), [ok("held"), ok("released")]);
    assert!(polled_in_dispatch(&s.node) > before, "the release was not handled inside its dispatch");
    assert_eq!(ask(&mut c, "/x"), ok("ok"));
    s.end();
}

#[test]
fn a_held_request_is_answered_from_inside_another_connections_dispatch() {
    let s = service("run-now-other-conn");
    let mut a = connect(&s);
    let mut b = connect(&s);
    send(&mut a, "/hold");
    s.took.recv_timeout(CALL_TIMEOUT).expect("the worker took /hold");
    let before = polled_in_dispatch(&s.node);
    send(&mut b, "/release");
    assert_eq!(responses(&mut b, 1), [ok("released")]);
    assert_eq!(responses(&mut a, 1), [ok("held")]);
    assert!(polled_in_dispatch(&s.node) > before);
    s.end();
}

#[test]
fn a_panic_inside_the_dispatch_answers_500_and_the_replacement_serves_the_connection() {
    let s = service("run-now-panic");
    let mut c = connect(&s);
    assert_eq!(ask(&mut c, "/x"), ok("ok"));
    let before = polled_in_dispatch(&s.node);
    assert_eq!(ask(&mut c, "/boom").0, 500);
    assert!(polled_in_dispatch(&s.node) > before, "the panic did not happen inside the dispatch");
    // The same connection, served by the replacement.
    wait_until("a replacement worker", || s.pool.info().workers.iter().any(|w| w.pid.is_some()));
    for _ in 0..3 {
        assert_eq!(ask(&mut c, "/x"), ok("ok"));
    }
    s.end();
}

#[test]
fn a_handler_that_answers_later_is_answered_later_and_in_order() {
    let s = service("run-now-later");
    let mut c = connect(&s);
    let before = polled_in_dispatch(&s.node);
    assert_eq!(ask(&mut c, "/later"), ok("later"));
    assert!(polled_in_dispatch(&s.node) > before);
    // Pipelined behind a late answer: in order.
    c.write_all(b"GET /later HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    assert_eq!(responses(&mut c, 2), [ok("later"), ok("ok")]);
    s.end();
}

/// Two workers, one in a long handler: the requests of another connection, one at a time and
/// pipelined, go to the idle one, none behind the long one (with round robin every other one
/// waited for it: its read timed out).
#[test]
fn requests_go_to_an_idle_worker_rather_than_behind_one_in_a_long_handler() {
    let latch = Latch::new();
    let s = service_of("run-now-idle-first", 2, latch.clone());
    let mut long = connect(&s);
    send(&mut long, "/wait");
    wait_until("a worker in its long handler", || s.pool.info().held == 1);
    let mut c = connect(&s);
    for _ in 0..10 {
        assert_eq!(ask(&mut c, "/x"), ok("ok"));
    }
    for _ in 0..8 {
        send(&mut c, "/x");
    }
    assert_eq!(responses(&mut c, 8), vec![ok("ok"); 8]);
    latch.open();
    assert_eq!(responses(&mut long, 1), vec![ok("waited")]);
    s.end();
}
