//! Review 38 (stop 31): a review of the stop's own commits (`3490bc8..66a65a6`). Its failing
//! tests (an `unregister` asked of another shard removed whatever name the process held by
//! then; `Router::not_found` took over the router's `OPTIONS *`) and what it checked, kept:
//! a server dropped before a shard took its listener, answers at once that close, route
//! order against the fast path and `Allow`. Every wait is bounded.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pinion::http::{Method, Request, Response, StatusCode};
use pinion::web::{Router, WebServer, WebServerOptions, answer_at_once};
use pinion::{Actor, Context, ExitReason, Message, NodeHandle, Pid, ProcessOptions, Reply, ShardId};
use support::{CALL_TIMEOUT, lock, node};

// ---------------------------------------------------------------------------------------
// NodeHandle::unregister from a shard thread, for a process of another shard.

/// On a call: says it is in, blocks its shard until told to go, then renames itself
/// (`ctx.unregister()`, `ctx.register(new)`) and answers.
struct Renamer {
    entered: mpsc::Sender<()>,
    go: Arc<Mutex<mpsc::Receiver<()>>>,
    new_name: &'static str,
}

impl Actor for Renamer {
    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        let _ = self.entered.send(());
        let _ = lock(&self.go).recv_timeout(CALL_TIMEOUT);
        let dropped = ctx.unregister();
        let named = ctx.register(self.new_name);
        Ok(Reply::now((dropped, named.is_ok())))
    }
}

/// On a call: `node.unregister(name)` (a process of another shard holds it), then tells the
/// renamer to go.
struct Unnamer {
    node: NodeHandle,
    name: &'static str,
    go: mpsc::Sender<()>,
}

impl Actor for Unnamer {
    async fn handle_call(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        let said = self.node.unregister(self.name);
        let _ = self.go.send(());
        Ok(Reply::now(said))
    }
}

/// `unregister("old")` from shard 0 for a process of shard 1 is asked without waiting; the
/// process renames itself to "new" before its shard runs the request. The request removes
/// the process's *current* name: "new" is gone, though nobody asked to remove it.
#[test]
fn unregister_from_another_shard_removes_only_the_name_asked_for() {
    let node = node("review38-unregister-rename", 2);
    let (entered_tx, entered_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let go_rx = Arc::new(Mutex::new(go_rx));
    let renamer = node
        .spawn_on(
            ShardId(1),
            move || Renamer { entered: entered_tx, go: go_rx, new_name: "review38-new" },
            ProcessOptions::default(),
        )
        .wait()
        .expect("renamer");
    node.handle().register("review38-old", renamer).expect("named");
    let handle = node.handle();
    let unnamer = node
        .spawn_on(
            ShardId(0),
            move || Unnamer { node: handle, name: "review38-old", go: go_tx },
            ProcessOptions::default(),
        )
        .wait()
        .expect("unnamer");
    let h = node.handle();
    let renaming = std::thread::spawn(move || h.call_blocking(renamer, (), CALL_TIMEOUT));
    entered_rx.recv_timeout(CALL_TIMEOUT).expect("the renamer is in its call, its shard blocked");
    let said = node.handle().call_blocking(unnamer, (), CALL_TIMEOUT).expect("the unnamer answers");
    assert!(said.downcast::<bool>().expect("bool"), "old was held when asked");
    let renamed = renaming.join().expect("caller").expect("the renamer answers");
    let (dropped, named) = renamed.downcast::<(bool, bool)>().expect("what it did");
    assert!(named, "renamed itself (dropped old first: {dropped})");
    // Let shard 1 run whatever is queued (a round trip through it).
    let _ = node.handle().call_blocking(renamer, (), Duration::from_millis(200));
    assert_eq!(node.handle().whereis("review38-old"), None);
    assert_eq!(
        node.handle().whereis("review38-new"),
        Some(renamer),
        "unregister(\"review38-old\") removed the name the process took afterwards"
    );
    node.stop();
}

// ---------------------------------------------------------------------------------------
// Router::not_found and OPTIONS *.

/// `OPTIONS *` is a question about the server: the router answers it 204 with `Allow`. With
/// `not_found` (documented as "a body of your own for the router's 404") it answers 404.
#[test]
fn not_found_does_not_take_over_options_star() {
    let plain = Router::new().get("/items", |_: &Request| Response::text("[]"));
    let star = Request::new(Method::Options, "*");
    let before = answer_at_once(&plain, star.clone()).expect("answered");
    assert_eq!(before.status, StatusCode::NO_CONTENT);
    let custom = Router::new()
        .get("/items", |_: &Request| Response::text("[]"))
        .not_found(|_: &Request| Response::json(r#"{"error":"not found"}"#).with_status(StatusCode::NOT_FOUND));
    let nowhere = answer_at_once(&custom, Request::new(Method::Get, "/nowhere")).expect("answered");
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    let after = answer_at_once(&custom, star).expect("answered");
    assert_eq!(after.status, StatusCode::NO_CONTENT, "OPTIONS * with not_found set");
}

// ---------------------------------------------------------------------------------------
// WebServer started from a process, dropped on another shard before that shard installed.

fn socket_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")))
                .count()
        })
        .unwrap_or(0)
}

/// On a call (shard 1): blocks its shard until a server comes through `servers`, drops it.
struct Dropper {
    entered: mpsc::Sender<()>,
    servers: Arc<Mutex<mpsc::Receiver<WebServer>>>,
}

impl Actor for Dropper {
    async fn handle_call(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        let _ = self.entered.send(());
        let got = lock(&self.servers).recv_timeout(CALL_TIMEOUT);
        let addr = got.as_ref().map(WebServer::local_addr).ok();
        drop(got);
        Ok(Reply::now(addr))
    }
}

/// On a call (shard 0): starts a server on both shards and sends it off.
struct Starter {
    node: NodeHandle,
    servers: mpsc::Sender<WebServer>,
}

impl Actor for Starter {
    async fn handle_call(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        let router = Router::new().get("/", |_: &Request| Response::text("hi"));
        let server = WebServer::start(&self.node, WebServerOptions::new("127.0.0.1", 0, router)).expect("server");
        let addr = server.local_addr();
        let _ = self.servers.send(server);
        Ok(Reply::now(addr))
    }
}

/// The server's listener for shard 1 is installed after the server was stopped there: is it
/// closed (no descriptor left), and is the port free?
#[test]
fn a_server_dropped_before_a_shard_installed_leaves_no_listener() {
    let node = node("review38-late-install", 2);
    let baseline = socket_fds();
    let (entered_tx, entered_rx) = mpsc::channel();
    let (srv_tx, srv_rx) = mpsc::channel();
    let srv_rx = Arc::new(Mutex::new(srv_rx));
    let dropper = node
        .spawn_on(ShardId(1), move || Dropper { entered: entered_tx, servers: srv_rx }, ProcessOptions::default())
        .wait()
        .expect("dropper");
    let handle = node.handle();
    let starter = node
        .spawn_on(ShardId(0), move || Starter { node: handle, servers: srv_tx }, ProcessOptions::default())
        .wait()
        .expect("starter");
    let h = node.handle();
    let dropping = std::thread::spawn(move || h.call_blocking(dropper, (), CALL_TIMEOUT));
    entered_rx.recv_timeout(CALL_TIMEOUT).expect("dropper in its call");
    let addr =
        node.handle().call_blocking(starter, (), CALL_TIMEOUT).expect("started").downcast::<SocketAddr>().unwrap();
    let dropped = dropping.join().expect("caller").expect("dropper answers");
    assert_eq!(dropped.downcast::<Option<SocketAddr>>().unwrap(), Some(addr));
    // A round trip through both shards: the install and the closes ran.
    for shard in [0u16, 1, 0, 1] {
        let echo = node.spawn_on(ShardId(shard), || Echo, ProcessOptions::default()).wait().expect("echo");
        node.handle().call_blocking(echo, (), CALL_TIMEOUT).expect("a round trip");
    }
    assert!(TcpStream::connect(addr).is_err(), "connects refused after the drop");
    let mut left = socket_fds();
    for _ in 0..100 {
        if left <= baseline + 1 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        left = socket_fds();
    }
    assert!(left <= baseline + 1, "socket fds: baseline {baseline}, now {left}");
    node.stop();
}

struct Echo;

impl Actor for Echo {
    async fn handle_call(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        Ok(Reply::now(()))
    }
}

#[allow(dead_code)]
fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(bytes).expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------------------
// An answer given at once that closes: HEAD, a stream, HTTP/1.0.

mod review_support;

use std::sync::atomic::{AtomicUsize, Ordering};

struct Closer(Arc<AtomicUsize>);

impl pinion::web::Handler for Closer {
    fn handle(&self, req: pinion::web::WebRequest) {
        let path = req.request().path().to_owned();
        if path == "/bye" {
            req.respond(Response::text("bye").header("connection", "close"));
        } else if path == "/sbye" {
            let mut s = req.respond_stream(Response::new(StatusCode(200)).header("connection", "close"));
            s.send(b"all".to_vec());
            s.finish();
        } else {
            self.0.fetch_add(1, Ordering::SeqCst);
            req.respond(Response::text("counted"));
        }
    }
}

#[test]
fn answers_at_once_that_close_stop_processing_for_head_streams_and_http10() {
    let node = review_support::start_node("review38-close-at-once", 1);
    let seen = Arc::new(AtomicUsize::new(0));
    let server = review_support::serve_with(&node, pinion::http::HttpLimits::default(), Closer(seen.clone()));
    let cases: [&[u8]; 5] = [
        b"HEAD /bye HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /sbye HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HEAD /sbye HTTP/1.1\r\nHost: x\r\n\r\n",
        b"HEAD /sbye HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET /sbye HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ];
    for (i, first) in cases.iter().enumerate() {
        let mut c = review_support::Client::connect(server.local_addr());
        c.send(&[first.to_vec(), review_support::get("/count")].concat());
        let mut a = c.head();
        if !first.starts_with(b"HEAD") {
            if a.header("transfer-encoding").is_some() || a.header("content-length").is_some() {
                c.body_of(&mut a);
            } else {
                // HTTP/1.0 stream: the body ends with the connection.
                while c.fill().is_ok_and(|n| n > 0) {}
                c.buf.clear();
            }
        }
        assert_eq!(a.status, 200, "case {i}");
        c.assert_closed();
        assert_eq!(seen.load(Ordering::SeqCst), 0, "case {i}: the request after the closing answer was processed");
    }
    node.stop();
}

/// The fast path over leading literal routes agrees with `find`: a literal route whose method
/// does not match, then a parameter route that takes it; 405 `Allow` of both; any-method routes.
#[test]
fn literal_with_other_method_then_param_route_and_allow_lists() {
    let text = |t: &'static str| move |_: &Request| Response::text(t);
    let router = Router::new()
        .delete("/items/{id}", text("delete-param"))
        .get("/items/export", text("export"))
        .route("/any/{x}", text("any-param"))
        .post("/any/lit", text("post-lit"));
    let body = |m: Method, p: &str| {
        let r = answer_at_once(&router, Request::new(m, p)).expect("answered");
        (
            r.status.0,
            String::from_utf8_lossy(r.body_bytes()).into_owned(),
            r.header_value("allow").map(|v| String::from_utf8_lossy(v).into_owned()),
        )
    };
    assert_eq!(body(Method::Get, "/items/export").1, "export");
    assert_eq!(body(Method::Delete, "/items/export").1, "delete-param");
    assert_eq!(body(Method::Head, "/items/export").0, 200);
    let put = body(Method::Put, "/items/export");
    assert_eq!(put.0, 405);
    let allow = put.2.expect("allow");
    for m in ["GET", "HEAD", "DELETE", "OPTIONS"] {
        assert!(allow.contains(m), "{allow}");
    }
    assert_eq!(body(Method::Post, "/any/lit").1, "post-lit");
    assert_eq!(body(Method::Get, "/any/lit").1, "any-param");
    assert_eq!(body(Method::Options, "/items/7").0, 204);
}
