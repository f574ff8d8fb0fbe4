//! A review of `7e412f9` and `503236b` (a bound on what a shard holds for streams, a stop
//! that lets other shards' processes finish streams, a reset closing a connection): its
//! failing tests (a node dropped in a process of a two-shard node waited forever; a stopping
//! shard read new requests; the bound cut clients that read) and the cases it checked, kept.
//! Every wait is bounded.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::mpsc::{self, Sender};
use std::time::{Duration, Instant};

use pinion::http::{HttpLimits, Request, Response, StatusCode};
use pinion::web::{ResponseStream, Router, WebHandler, WebRequest, WebServer, WebServerOptions};
use pinion::{Actor, Context, Cores, ExitReason, Message, Node, NodeOptions, Pid, ProcessOptions, ShardId};

const WAIT: Duration = Duration::from_secs(10);

fn start_node(name: &str, shards: usize) -> Node {
    let options = NodeOptions { cores: Cores::Count(shards), pin: false, ..Default::default() };
    Node::start(name, options).unwrap_or_else(|e| panic!("node {name}: {e}"))
}

fn spawn_on<A: Actor>(node: &Node, shard: u16, factory: impl FnOnce() -> A + Send + 'static) -> Pid {
    node.spawn_on(ShardId(shard), factory, ProcessOptions::with_mailbox(1024)).wait().expect("spawns")
}

fn serve_on(node: &Node, handler: impl pinion::web::Handler, limits: HttpLimits) -> WebServer {
    WebServer::start(node, WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, handler) })
        .expect("server starts")
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s
}

/// Reads until EOF, an error or `WAIT`.
fn read_all(s: &mut TcpStream) -> Vec<u8> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

// ---- 1. Node dropped inside a process, 2 shards: Drop never returns -------------------------

struct Holder(Sender<()>);
struct Take(Node);

impl Actor for Holder {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(Take(node)) = msg.downcast::<Take>() {
            // `Node`'s Drop: request_stop, then join the other shard (its own is skipped).
            drop(node);
            let _ = self.0.send(());
        }
        Ok(())
    }
}

/// `Node`'s drop inside a process of a two-shard node returns: the shard held in the join
/// counts as ended (with `7e412f9` alone, shard 1 waited for shard 0's count and shard 0 was
/// held in that join: it never returned).
#[test]
fn a_node_dropped_inside_a_process_of_a_two_shard_node_is_not_deadlocked() {
    let node = start_node("r34-drop-inside", 2);
    let (done, dropped) = mpsc::channel();
    let holder = spawn_on(&node, 0, move || Holder(done));
    let handle = node.handle();
    handle.send(holder, Take(node)).map_err(|_| "send").expect("send the node");
    assert_eq!(dropped.recv_timeout(WAIT), Ok(()), "Node's drop inside a process never returned");
}

// ---- 2. Half-closed client: pipelined answers arrive ------------------------------------------

/// Answers each request 100 ms after it came (so the client's FIN is read first).
struct Late;
struct Answer(WebRequest);

impl Actor for Late {
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<WebRequest>() {
            Ok(req) => {
                ctx.send_after(ctx.pid(), Answer(req), Duration::from_millis(100));
            }
            Err(msg) => {
                if let Ok(Answer(req)) = msg.downcast::<Answer>() {
                    req.respond(Response::text("ok"));
                }
            }
        }
        Ok(())
    }
}

#[test]
fn a_half_closed_client_gets_every_pipelined_answer() {
    let node = start_node("r34-half-close", 1);
    let late = spawn_on(&node, 0, || Late);
    let server = serve_on(&node, WebHandler::to(late), HttpLimits::default());
    let mut c = connect(server.local_addr());
    let req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
    c.write_all(&[&req[..], &req[..], &req[..]].concat()).expect("write");
    c.shutdown(Shutdown::Write).expect("half close");
    let all = read_all(&mut c);
    assert_eq!(count(&all, b"HTTP/1.1 200"), 3, "{}", String::from_utf8_lossy(&all));
    node.stop();
}

// ---- 3. The shard bound cuts clients that read as fast as they can ------------------------------

struct Broadcaster {
    streams: Vec<ResponseStream>,
    report: Sender<(usize, usize)>,
}
struct Broadcast(usize);

impl Actor for Broadcaster {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<WebRequest>() {
            Ok(req) => self.streams.push(req.respond_stream(Response::new(StatusCode::OK))),
            Err(msg) => {
                if let Ok(Broadcast(n)) = msg.downcast::<Broadcast>() {
                    // One shared chunk to every subscriber (an SSE broadcast).
                    let chunk: Arc<[u8]> = vec![b'x'; n].into();
                    self.streams.iter_mut().filter(|s| !s.is_closed()).for_each(|s| s.send_shared(&chunk));
                    let open = self.streams.iter().filter(|s| !s.is_closed()).count();
                    let _ = self.report.send((open, self.streams.len()));
                }
            }
        }
        Ok(())
    }
}

/// Ten subscribers, each reading on its own thread all the time; one broadcast of 200 KiB
/// (2 MB in all, against a bound of 1 MiB). The per-connection bound writes what the client
/// takes before judging (`written_fits`: "a trial's fast client was cut before a byte went
/// out"); the shard bound now writes first too (judged before any write, five of the ten
/// healthy readers were cut).
#[test]
fn a_broadcast_larger_than_the_shard_bound_does_not_cut_clients_that_read() {
    let node = start_node("r34-fast-cut", 1);
    let (report, reports) = mpsc::channel();
    let b = spawn_on(&node, 0, move || Broadcaster { streams: Vec::new(), report });
    let limits = HttpLimits { max_stream_bytes_per_shard: 1 << 20, ..HttpLimits::default() };
    let server = serve_on(&node, WebHandler::to(b), limits);
    let (got_tx, got) = mpsc::channel();
    for _ in 0..10 {
        let mut c = connect(server.local_addr());
        c.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let tx = got_tx.clone();
        std::thread::spawn(move || {
            // Reads everything as it comes, until the end or WAIT.
            let _ = tx.send(read_all(&mut c).len());
        });
    }
    let deadline = Instant::now() + WAIT;
    while server.stats().connections < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100)); // every stream opened
    node.send(b, Broadcast(200 << 10)).map_err(|_| "send").expect("broadcast");
    let (open, all) = reports.recv_timeout(WAIT).expect("report");
    let slow = server.stats().slow_clients;
    node.stop();
    let lens: Vec<usize> = (0..10).filter_map(|_| got.recv_timeout(WAIT).ok()).collect();
    assert_eq!((open, all, slow), (10, 10, 0), "readers cut by the shard bound; bytes each got: {lens:?}");
}

// ---- 4. During the stop: a shard whose processes ended reads and dispatches new requests ------

/// Takes 2 s in `terminate`.
struct Lingerer;

impl Actor for Lingerer {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> {
        Ok(())
    }
    async fn terminate(&mut self, ctx: &mut Context, _: &ExitReason) {
        ctx.sleep(Duration::from_secs(2)).await;
    }
}

struct Worker;

impl Actor for Worker {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(req) = msg.downcast::<WebRequest>() {
            req.respond(Response::text("worked"));
        }
        Ok(())
    }
}

fn thread_name(_: &Request) -> Response {
    Response::text(std::thread::current().name().unwrap_or("").to_owned())
}

fn exchange(c: &mut TcpStream, target: &str) -> String {
    if c.write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).is_err() {
        return String::new(); // closed
    }
    let mut buf = vec![0u8; 4096];
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while Instant::now() < deadline {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        if let Some(h) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..h]).to_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                .unwrap_or(0);
            if got.len() >= h + 4 + len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Shard 0's processes end at once; shard 1's take 2 s. Shard 0 serves its connections until
/// then, but takes no new request on them: the connection closes after what was in flight
/// (with `7e412f9` alone, a request then was read and handed to a worker that had ended).
#[test]
fn a_stopping_shard_waiting_for_others_does_not_take_new_requests() {
    let node = start_node("r34-stop-window", 2);
    let worker = spawn_on(&node, 0, || Worker);
    let _lingerer = spawn_on(&node, 1, || Lingerer);
    let router = Router::new().route("/where", thread_name).route("/work", WebHandler::to(worker));
    let server = serve_on(&node, router, HttpLimits::default());
    // A keep-alive connection on shard 0 (bounded tries).
    let mut on0 = None;
    for _ in 0..64 {
        let mut c = connect(server.local_addr());
        if exchange(&mut c, "/where").ends_with("-0") {
            on0 = Some(c);
            break;
        }
    }
    let mut c = on0.expect("a connection on shard 0");
    assert!(exchange(&mut c, "/work").contains("200 OK"));
    let (done, stopped) = mpsc::channel();
    std::thread::spawn(move || {
        node.stop();
        let _ = done.send(());
    });
    std::thread::sleep(Duration::from_millis(500));
    let work = exchange(&mut c, "/work");
    let where_ = exchange(&mut c, "/where");
    assert_eq!(stopped.recv_timeout(WAIT), Ok(()));
    assert!(
        work.is_empty() && where_.is_empty(),
        "new requests taken while the node stops:\n/work -> {work:?}\n/where -> {where_:?}"
    );
}

// ---- 5. Half-closed stream client streamed on; the gauge back to 0 on every close path ------

struct Chunks {
    streams: Vec<ResponseStream>,
    report: Sender<usize>,
}
struct SendN(usize);
struct FinishAll;

impl Actor for Chunks {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<WebRequest>() {
            Ok(req) => self.streams.push(req.respond_stream(Response::new(StatusCode::OK))),
            Err(msg) => match msg.downcast::<SendN>() {
                Ok(SendN(n)) => {
                    self.streams.iter_mut().filter(|s| !s.is_closed()).for_each(|s| s.send(vec![b'y'; n]));
                    let _ = self.report.send(self.streams.iter().filter(|s| !s.is_closed()).count());
                }
                Err(msg) => {
                    if msg.downcast::<FinishAll>().is_ok() {
                        self.streams.drain(..).for_each(ResponseStream::finish);
                        let _ = self.report.send(0);
                    }
                }
            },
        }
        Ok(())
    }
}

#[test]
fn half_closed_stream_is_served_and_stream_bytes_return_to_zero() {
    let node = start_node("r34-gauge", 1);
    let (report, reports) = mpsc::channel();
    let p = spawn_on(&node, 0, move || Chunks { streams: Vec::new(), report });
    let server = serve_on(&node, WebHandler::to(p), HttpLimits::default());
    let addr = server.local_addr();
    // A: half-closed after its request; B: HTTP/1.0 (close-delimited); C: never reads, then resets.
    let mut a = connect(addr);
    a.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").expect("a");
    a.shutdown(Shutdown::Write).expect("half close");
    let mut b = connect(addr);
    b.write_all(b"GET /b HTTP/1.0\r\n\r\n").expect("b");
    let mut c = connect(addr);
    c.write_all(b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n").expect("c");
    let deadline = Instant::now() + WAIT;
    while server.stats().connections < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(100));
    node.send(p, SendN(3 << 20)).map_err(|_| "send").expect("send");
    assert_eq!(reports.recv_timeout(WAIT), Ok(3), "the half-closed stream is streamed on");
    // (Counted now, unless the kernel took it all already: its send buffers hold up to 4 MiB.)
    let (ta, tb) =
        (std::thread::spawn(move || read_all(&mut a).len()), std::thread::spawn(move || read_all(&mut b).len()));
    std::thread::sleep(Duration::from_millis(200));
    drop(c); // unread data: a reset
    node.send(p, FinishAll).map_err(|_| "send").expect("finish");
    let _ = reports.recv_timeout(WAIT);
    let (la, lb) = (ta.join().expect("a"), tb.join().expect("b"));
    assert!(la > 3 << 20 && lb > 3 << 20, "a got {la}, b got {lb}");
    let deadline = Instant::now() + WAIT;
    while server.stats().connections > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let s = server.stats();
    assert_eq!((s.connections, s.stream_bytes), (0, 0), "{s:?}");
    node.stop();
}
