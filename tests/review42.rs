//! Review 42 (stop 32): the stop and shutdown paths, for races and lost work. Its failing tests
//! (an 8 MiB chunk finished in `terminate` cut at 3.9 MiB by the stop; 500s of requests a
//! process forwarded in `terminate` to a worker already ending lost) and what it checked,
//! kept. Every wait is bounded; every server started is stopped (with its node).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pinion::http::{Response, StatusCode};
use pinion::web::{ResponseStream, WebHandler, WebRequest, WebServer, WebServerOptions};
use pinion::{Actor, Context, ExitReason, Message, Node, Pid, ProcessOptions, ShardId};
use support::node;

const WAIT: Duration = Duration::from_secs(20);

fn spawn_on<A: Actor>(node: &Node, shard: u16, f: impl FnOnce() -> A + Send + 'static) -> Pid {
    node.handle().spawn_on(ShardId(shard), f, ProcessOptions::default()).wait().expect("spawn")
}

/// A server on a free port listening on `shards`.
fn serve_on(node: &Node, shards: &[u16], handler: WebHandler) -> WebServer {
    let options = WebServerOptions {
        shards: Some(shards.iter().map(|&s| ShardId(s)).collect()),
        ..WebServerOptions::new("127.0.0.1", 0, handler)
    };
    WebServer::start(node, options).expect("server starts")
}

fn connect(server: &WebServer) -> TcpStream {
    let s = TcpStream::connect(server.local_addr()).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

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

// ---- a large stream chunk sent and finished in `terminate` ------------------------------------

/// Keeps every stream it starts; in `terminate` sends each a chunk of `BIG` bytes and
/// finishes it.
struct BigFinisher {
    streams: Vec<ResponseStream>,
    started: mpsc::Sender<()>,
}

const BIG: usize = 8 << 20;

impl Actor for BigFinisher {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(req) = msg.downcast::<WebRequest>() {
            let stream = req.respond_stream(Response::new(StatusCode::OK));
            self.streams.push(stream);
            let _ = self.started.send(());
        }
        Ok(())
    }
    async fn terminate(&mut self, _: &mut Context, _: &ExitReason) {
        for mut stream in self.streams.drain(..) {
            stream.send(vec![b'x'; BIG]);
            stream.finish();
        }
    }
}

/// `Node::stop`: a stream's chunk and end sent in `terminate` "still go out" (the connection's
/// shutdown doc). A chunk larger than the socket takes at once was cut: the shard closed the
/// connection right after its first write.
#[test]
fn a_large_chunk_finished_in_terminate_is_written_whole() {
    for (k, (shards, conn_shard)) in [(1u16, 0u16), (2, 1)].into_iter().enumerate() {
        let node = node(&format!("r42-big-{k}"), shards as usize);
        let (started, on_start) = mpsc::channel();
        let worker = spawn_on(&node, 0, move || BigFinisher { streams: Vec::new(), started });
        let server = serve_on(&node, &[conn_shard], WebHandler::to(worker));
        let mut c = connect(&server);
        c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        on_start.recv_timeout(WAIT).expect("the stream started");
        // The client reads as a remote one would: its first bytes come a little later.
        let reader = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            read_all(c)
        });
        let stopper = std::thread::spawn(move || node.stop());
        let got = reader.join().unwrap();
        stopper.join().unwrap();
        drop(server);
        let text = String::from_utf8_lossy(&got[..got.len().min(200)]).into_owned();
        assert!(got.starts_with(b"HTTP/1.1 200"), "{text}");
        let body_x = got.iter().filter(|&&b| b == b'x').count();
        assert!(
            body_x == BIG && got.ends_with(b"\r\n0\r\n\r\n"),
            "{shards} shard(s): {body_x} of {BIG} bytes of the chunk reached the client, end: {}",
            got.ends_with(b"\r\n0\r\n\r\n")
        );
    }
}

// ---- a request forwarded in `terminate` to a worker of another shard ----------------------------

/// Holds the web requests it gets; in `terminate` (once `W` is sure to be ending) forwards
/// them to `W`, a worker on another shard.
struct Forwarder {
    to: Pid,
    held: Vec<WebRequest>,
    got: mpsc::Sender<()>,
    refused: mpsc::Sender<()>,
}

impl Actor for Forwarder {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(req) = msg.downcast::<WebRequest>() {
            self.held.push(req);
            let _ = self.got.send(());
        }
        Ok(())
    }
    async fn terminate(&mut self, ctx: &mut Context, _: &ExitReason) {
        ctx.sleep(Duration::from_millis(50)).await;
        // A message whose drop takes a while (it releases a resource), ahead of the requests.
        let _ = ctx.send(self.to, SlowDrop);
        for req in self.held.drain(..) {
            if ctx.send(self.to, req).is_err() {
                let _ = self.refused.send(());
            }
        }
    }
}

/// Takes 50 ms to drop.
struct SlowDrop;

impl Drop for SlowDrop {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Does its last work synchronously in `terminate` (writes its state out, say): its shard
/// runs nothing else meanwhile.
struct SlowToEnd;

impl Actor for SlowToEnd {
    async fn terminate(&mut self, _: &mut Context, _: &ExitReason) {
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `Node::stop`: "Web requests still queued to a worker ... that ends are answered (500 for a
/// request dropped unanswered) and written before the connections close". A request a
/// process of shard 1 forwards in `terminate` to a worker of shard 0 that is still ending
/// reaches shard 0's inbox, and is dropped (answered 500) there once the worker ended — after
/// shard 0's processes all ended, when shard 1 may have taken its last turn and closed the
/// connection: the client saw it close without an answer.
#[test]
fn a_request_forwarded_in_terminate_to_an_ending_worker_is_answered() {
    const N: usize = 32;
    let mut lost_rounds = Vec::new();
    for round in 0..3u16 {
        let node = node(&format!("r42-fwd-{round}"), 2);
        let worker = spawn_on(&node, 0, || SlowToEnd);
        let (got_tx, got) = mpsc::channel();
        let (refused_tx, refused) = mpsc::channel();
        let fwd =
            spawn_on(&node, 1, move || Forwarder { to: worker, held: Vec::new(), got: got_tx, refused: refused_tx });
        let server = serve_on(&node, &[1], WebHandler::to(fwd));
        let conns: Vec<TcpStream> = (0..N)
            .map(|_| {
                let mut c = connect(&server);
                c.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
                c
            })
            .collect();
        for _ in 0..N {
            got.recv_timeout(WAIT).expect("the forwarder holds every request");
        }
        let readers: Vec<_> = conns.into_iter().map(|c| std::thread::spawn(move || read_all(c))).collect();
        let stopper = std::thread::spawn(move || node.stop());
        let answers: Vec<Vec<u8>> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        stopper.join().unwrap();
        drop(server);
        assert!(refused.try_recv().is_err(), "the worker refused a forwarded request: the scenario did not happen");
        let answered = answers.iter().filter(|a| a.starts_with(b"HTTP/1.1 500")).count();
        if answered != N {
            lost_rounds.push((round, N - answered));
        }
    }
    assert!(lost_rounds.is_empty(), "(round, requests closed unanswered): {lost_rounds:?}");
}

// ---- checked, and fine -------------------------------------------------------------------------

/// Never answers a call in time: awaits an hour in `handle_call`. Reports its `terminate`.
struct Stuck(mpsc::Sender<&'static str>);

impl Actor for Stuck {
    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, _: Message) -> Result<pinion::Reply, ExitReason> {
        ctx.sleep(Duration::from_secs(3600)).await;
        Ok(pinion::Reply::now(()))
    }
    async fn terminate(&mut self, _: &mut Context, _: &ExitReason) {
        let _ = self.0.send("stuck terminated");
    }
}

/// Panics in `terminate`, after saying so.
struct PanicsAtEnd(mpsc::Sender<&'static str>);

impl Actor for PanicsAtEnd {
    async fn terminate(&mut self, _: &mut Context, _: &ExitReason) {
        let _ = self.0.send("panicking");
        panic!("review 42: a panic in terminate");
    }
}

/// Ends after a while in `terminate` (within the deadline), then reports.
struct Slow(mpsc::Sender<&'static str>);

impl Actor for Slow {
    async fn terminate(&mut self, ctx: &mut Context, _: &ExitReason) {
        ctx.sleep(Duration::from_millis(100)).await;
        let _ = self.0.send("slow terminated");
    }
}

/// `Node::stop` with a process stuck in a handler: the deadline kills it (no `terminate`), the
/// others end their own way (a panic in one `terminate` ends that one only), an external call
/// waiting on the stuck one is answered, and a second stop from another thread at the same
/// time returns too.
#[test]
fn stop_kills_only_the_stuck_answers_external_callers_and_tolerates_a_second_stop() {
    let options = pinion::NodeOptions { shutdown_timeout: Duration::from_secs(2), ..support::options(2) };
    let node = Node::start("r42-deadline", options).unwrap();
    let (tx, rx) = mpsc::channel();
    let stuck = {
        let tx = tx.clone();
        spawn_on(&node, 0, move || Stuck(tx))
    };
    let tx2 = tx.clone();
    spawn_on(&node, 1, move || PanicsAtEnd(tx2));
    let tx3 = tx.clone();
    spawn_on(&node, 1, move || Slow(tx3));
    let tx4 = tx;
    spawn_on(&node, 0, move || Slow(tx4));
    let handle = node.handle();
    let caller = std::thread::spawn(move || handle.call(stuck, (), Duration::from_secs(60)).wait());
    std::thread::sleep(Duration::from_millis(50));
    let second = node.handle();
    let started = Instant::now();
    let other = std::thread::spawn(move || second.stop());
    support::within("Node::stop", Duration::from_secs(15), move || node.stop());
    other.join().unwrap();
    let took = started.elapsed();
    let answer = support::within("the external call", Duration::from_secs(10), move || caller.join().unwrap());
    assert!(answer.is_err(), "{answer:?}");
    let mut said: Vec<&str> = rx.try_iter().collect();
    said.sort_unstable();
    assert_eq!(said, ["panicking", "slow terminated", "slow terminated"]);
    // (The deadline, 2 s, leaves `Slow` ample time even on a loaded machine.)
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(10), "{took:?}");
}
