//! A worker can tell that the client of a request it holds is gone
//! (`WebRequest::is_client_gone`): a client that reset, or whose connection the server
//! closed. A client that only half-closed is still there and gets its answers. A `WebWorker`
//! skips the queued requests of a gone client instead of serving answers nobody will read.
//! Nodes of one shard; every wait is bounded.

mod review_support;

use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use pinion::http::{HttpLimits, Request, Response};
use pinion::web::{WebHandler, WebRequest, WebServer, WebServerOptions, WebWorker};
use pinion::{Actor, Context, ExitReason, Message, Pid, Pool, PoolOptions, ProcessOptions, Reply, ShardId};
use review_support::*;

/// Keeps the requests it gets; a call answers with `is_client_gone` of each, in order, and a
/// `true` call answers them all.
#[derive(Default)]
struct Keeper(Vec<WebRequest>);

impl Actor for Keeper {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(req) = msg.downcast::<WebRequest>() {
            self.0.push(req);
        }
        Ok(())
    }

    async fn handle_call(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<Reply, ExitReason> {
        let gone: Vec<bool> = self.0.iter().map(WebRequest::is_client_gone).collect();
        if msg.downcast_ref::<bool>() == Some(&true) {
            for req in self.0.drain(..) {
                req.respond(Response::text("kept"));
            }
        }
        Ok(Reply::now(gone))
    }
}

/// The keeper on the connections' shard, and on another one.
#[test]
fn a_held_request_sees_its_client_reset_and_not_its_client_half_close() {
    for (shards, keeper_on) in [(1, 0), (2, 1)] {
        held_request_sees_its_client_go(shards, keeper_on);
    }
}

fn held_request_sees_its_client_go(shards: usize, keeper_on: u16) {
    let node = start_node(&format!("client-gone-kept-{shards}"), shards);
    let keeper =
        node.handle().spawn_on(ShardId(keeper_on), Keeper::default, ProcessOptions::default()).wait().expect("keeper");
    let options = WebServerOptions {
        shards: Some(vec![ShardId(0)]),
        ..WebServerOptions::new("127.0.0.1", 0, WebHandler::to(keeper))
    };
    let server = WebServer::start(&node, options).expect("web server starts");
    let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let (mut stays, mut halves, resets) = (
        Client::connect(server.local_addr()),
        Client::connect(server.local_addr()),
        Client::connect(server.local_addr()),
    );
    let ask = |answer: bool| -> Vec<bool> {
        let reply = node.handle().call(keeper, answer, Duration::from_secs(10)).wait().expect("the keeper answers");
        reply.downcast_ref::<Vec<bool>>().expect("a Vec<bool>").clone()
    };
    let mut resets = resets;
    for (n, c) in [&mut stays, &mut halves, &mut resets].into_iter().enumerate() {
        c.send(get);
        wait_until("the request is kept", || ask(false).len() == n + 1);
    }
    assert_eq!(ask(false), [false, false, false], "every client is there");
    halves.s.shutdown(Shutdown::Write).expect("half-close");
    socket2::SockRef::from(&resets.s).set_linger(Some(Duration::ZERO)).expect("linger");
    drop(resets);
    wait_until("the reset connection is closed", || server.stats().connections == 2);
    assert_eq!(ask(true), [false, false, true], "only the client that reset is gone");
    assert_eq!(stays.response().text(), "kept");
    assert_eq!(halves.response().text(), "kept");
    server.stop();
    node.stop();
}

static OPEN: AtomicBool = AtomicBool::new(false);
static IN_SLOW: AtomicBool = AtomicBool::new(false);
static COUNTED: AtomicUsize = AtomicUsize::new(0);

/// `/slow` waits until the test opens the gate; `/count` counts the requests it served.
struct Counter;

impl WebWorker for Counter {
    async fn handle_get(&mut self, ctx: &mut Context, req: &Request) -> Response {
        if req.path() == "/slow" {
            IN_SLOW.store(true, Ordering::SeqCst);
            for _ in 0..20_000 {
                if OPEN.load(Ordering::SeqCst) {
                    break;
                }
                ctx.sleep(Duration::from_millis(1)).await;
            }
            return Response::text("slow");
        }
        Response::text(format!("{}", COUNTED.fetch_add(1, Ordering::SeqCst) + 1))
    }
}

#[test]
fn a_worker_skips_the_queued_requests_of_a_client_that_reset() {
    let node = start_node("client-gone-pool", 1);
    let pool =
        node.spawn(|| Pool::new(PoolOptions::new(1, 8, || Counter)), ProcessOptions::default()).wait().expect("pool");
    let server = serve_with(&node, HttpLimits::default(), WebHandler::to(pool));
    let held = || node.handle().pool(pool).expect("a pool").info().held;
    let mut slow = Client::connect(server.local_addr());
    slow.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    wait_until("the worker is busy", || IN_SLOW.load(Ordering::SeqCst));
    // Three requests queued behind it, then their client gives up.
    let mut quitter = Client::connect(server.local_addr());
    quitter.send(b"GET /count HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3).as_slice());
    wait_until("three requests queued", || held() == 4);
    socket2::SockRef::from(&quitter.s).set_linger(Some(Duration::ZERO)).expect("linger");
    drop(quitter);
    wait_until("the reset connection is closed", || server.stats().connections == 1);
    OPEN.store(true, Ordering::SeqCst);
    assert_eq!(slow.response().text(), "slow");
    wait_until("the queue is done", || held() == 0);
    // The next request is the first the worker counts: the gone client's were skipped.
    let mut fresh = Client::connect(server.local_addr());
    fresh.send(b"GET /count HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(fresh.response().text(), "1");
    server.stop();
    node.stop();
}
