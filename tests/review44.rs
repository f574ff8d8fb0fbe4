//! Review 44 (stop 32): the stop's write-on, exit signals that say how they came, drain of a
//! streaming connection, CONNECT. Every wait is bounded; every server started is stopped
//! (with its node).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use pinion::http::{Response, StatusCode};
use pinion::web::{Handler, WebRequest, WebServer, WebServerOptions};
use pinion::{
    Actor, ChildSpec, Context, ExitReason, ExitSignal, Message, Node, NodeOptions, Pid, ProcessOptions, ShardId,
    Supervisor, SupervisorOptions,
};

const WAIT: Duration = Duration::from_secs(20);

/// Everything the server sends until it closes (a read error ends it too: what came is kept).
fn read_all(mut s: TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let end = Instant::now() + WAIT;
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

// ---- 1. the stop's write-on waits for bytes nobody can write -----------------------------------

/// `/hold` is handed to a plain thread, which keeps it (the case `Node::stop`'s doc names: "a
/// request held elsewhere (by a plain thread) is not answered"); anything else is answered at
/// once.
struct Holder(Mutex<mpsc::Sender<WebRequest>>);

impl Handler for Holder {
    fn handle(&self, req: WebRequest) {
        if req.request().path() == "/hold" {
            let _ = self.0.lock().unwrap().send(req);
        } else {
            req.respond(Response::new(StatusCode::OK).body(&b"pipelined answer"[..]));
        }
    }
}

/// `Node::stop` writes on, until `shutdown_timeout`, what a client "has not taken yet"
/// (`IoSource::writing`). A connection whose first request is held by a plain thread, and
/// whose pipelined second request was answered, holds that answer behind the first: nothing
/// can write it, yet `writing()` counted it, and the stop waited out the whole
/// `shutdown_timeout` (10 s, the default) for a client that had taken everything sent.
#[test]
fn stop_does_not_wait_for_an_answer_queued_behind_a_request_held_elsewhere() {
    let options = NodeOptions { shutdown_timeout: Duration::from_secs(10), ..support::options(1) };
    let node = Node::start("r44-held", options).unwrap();
    let (tx, held) = mpsc::channel();
    let server_options = WebServerOptions {
        shards: Some(vec![ShardId(0)]),
        ..WebServerOptions::new("127.0.0.1", 0, Holder(Mutex::new(tx)))
    };
    let server = WebServer::start(&node, server_options).expect("server starts");
    let mut c = TcpStream::connect(server.local_addr()).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.write_all(b"GET /hold HTTP/1.1\r\nhost: x\r\n\r\nGET /now HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    let kept = held.recv_timeout(WAIT).expect("the first request reached the plain thread");
    // The second is answered (its answer waits behind the first's).
    std::thread::sleep(Duration::from_millis(200));
    let reader = std::thread::spawn(move || read_all(c));
    let started = Instant::now();
    support::within("Node::stop", Duration::from_secs(20), move || node.stop());
    let took = started.elapsed();
    let got = reader.join().unwrap();
    drop(kept);
    drop(server);
    assert!(
        got.is_empty(),
        "nothing could be written before the held request's answer: {:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(took < Duration::from_secs(5), "Node::stop took {took:?} with nothing it could write");
}

// ---- 2. a supervisor's child that links back to it ----------------------------------------------

/// Traps exits; links to the pid it is sent (its supervisor), says so, and reports every
/// exit signal it gets.
struct LinksBack(mpsc::Sender<String>);

impl Actor for LinksBack {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        ctx.set_trap_exit(true);
        Ok(())
    }
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        let msg = match msg.downcast::<Pid>() {
            Ok(sup) => {
                ctx.link(sup);
                let _ = self.0.send("linked".into());
                return Ok(());
            }
            Err(msg) => msg,
        };
        if let Ok(signal) = msg.downcast::<ExitSignal>() {
            let _ = self.0.send(format!("exit from {} ({})", signal.from, signal.reason));
        }
        Ok(())
    }
}

/// A supervisor ties its children to itself (they get its exit signal as if linked); a child
/// that traps exits and links to its supervisor itself (`Context::link`) got the supervisor's
/// end twice since ties were kept apart from links: once by the link, once by the tie (one
/// before; OTP's link is one link however often it is made).
#[test]
fn a_trapping_child_linked_to_its_supervisor_gets_its_end_once() {
    for (k, child_shard) in [0u16, 1].into_iter().enumerate() {
        let node = support::node(&format!("r44-tie-{k}"), 2);
        let h = node.handle();
        let (tx, rx) = mpsc::channel();
        let spec = ChildSpec::new("back", move || LinksBack(tx.clone())).shard(ShardId(child_shard));
        let sup = h
            .spawn_on(
                ShardId(0),
                move || Supervisor::new(SupervisorOptions { children: vec![spec], ..Default::default() }),
                ProcessOptions::default(),
            )
            .wait()
            .expect("supervisor starts");
        let info = Supervisor::which_children_blocking(&h, sup, WAIT).expect("which_children");
        let child = info.children[0].pid.expect("the child runs");
        h.send(child, sup).unwrap();
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), "linked");
        // The link reached the supervisor (a call after it, from the same sender, is answered
        // after it is delivered: wait on a round trip of the child's shard).
        std::thread::sleep(Duration::from_millis(100));
        h.exit(sup, ExitReason::Kill);
        let first = rx.recv_timeout(WAIT).expect("the child got its supervisor's end");
        let more: Vec<String> = std::iter::from_fn(|| rx.recv_timeout(Duration::from_millis(500)).ok()).collect();
        node.stop();
        assert!(first.starts_with("exit from"), "{first}");
        assert!(more.is_empty(), "child on shard {child_shard}: {first}, then {more:?}");
    }
}

// ---- 3. a whole answer ahead of a stream the stop cuts -------------------------------------------

const BIG: usize = 8 << 20;

/// `/big` is answered `BIG` bytes a moment later (once the request behind it was read too);
/// `/stream` gets a stream that is kept open (cut when the process ends with the node).
struct BigThenStream {
    streams: Vec<pinion::web::ResponseStream>,
    started: mpsc::Sender<()>,
}

impl Actor for BigThenStream {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(req) = msg.downcast::<WebRequest>() {
            if req.request().path() == "/big" {
                ctx.sleep(Duration::from_millis(50)).await;
                req.respond(Response::new(StatusCode::OK).body(vec![b'x'; BIG]));
            } else {
                self.streams.push(req.respond_stream(Response::new(StatusCode::OK)));
                let _ = self.started.send(());
            }
        }
        Ok(())
    }
}

/// `Node::stop` writes "answers finished before the stop ... whole to slow readers until
/// `shutdown_timeout`" (review 42), but not on a connection where a stream was cut
/// (`Outgoing::completes`): a stream pipelined behind a whole 8 MiB answer is cut by the
/// stop (its process ends), and the whole answer ahead of it, finished before the stop,
/// reached a client reading 200 ms later cut short.
#[test]
fn a_whole_answer_ahead_of_a_stream_the_stop_cuts_is_written_whole() {
    let node = support::node("r44-big-cut", 1);
    let (started, on_start) = mpsc::channel();
    let worker = node
        .handle()
        .spawn_on(ShardId(0), move || BigThenStream { streams: Vec::new(), started }, ProcessOptions::default())
        .wait()
        .unwrap();
    let handler = pinion::web::WebHandler::to(worker);
    let so = WebServerOptions { shards: Some(vec![ShardId(0)]), ..WebServerOptions::new("127.0.0.1", 0, handler) };
    let server = WebServer::start(&node, so).expect("server starts");
    let mut c = TcpStream::connect(server.local_addr()).unwrap();
    c.set_read_timeout(Some(WAIT)).unwrap();
    c.write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\nGET /stream HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
    on_start.recv_timeout(WAIT).expect("the stream started");
    // The big answer is given (the worker handles its messages in order).
    std::thread::sleep(Duration::from_millis(100));
    let reader = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        read_all(c)
    });
    let stopper = std::thread::spawn(move || node.stop());
    let got = reader.join().unwrap();
    stopper.join().unwrap();
    drop(server);
    assert!(got.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&got[..got.len().min(200)]));
    let head_end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body_x = got[head_end..].iter().take(BIG).filter(|&&b| b == b'x').count();
    assert_eq!(body_x, BIG, "{body_x} of {BIG} bytes of the whole answer reached the client");
}
