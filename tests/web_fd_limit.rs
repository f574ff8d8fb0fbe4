//! A server out of file descriptors: connections wait in the listen backlog, the listener
//! retries on one timer (one warning when the run of failures starts, one when it ends), and
//! every waiting connection is served once descriptors are free again. A user trial under
//! `ulimit -n 64` saw ~900 identical warnings a second: each readiness event that came while
//! accepts failed armed a retry timer of its own, and each timer chain warned every 50 ms.
//!
//! The server runs in a child process (this test binary again, `PINION_FD_CHILD` set) under
//! `ulimit -n`, so that only the server is short of descriptors, not the client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pinion::http::{Request, Response};
use pinion::web::{Router, WebServer, WebServerOptions};
use pinion::{Cores, Node, NodeOptions};

/// The server's descriptor limit: a few for the runtime, the rest for connections.
const FD_LIMIT: u32 = 40;
/// Connections the client opens: about half wait in the backlog.
const CONNECTIONS: usize = 70;
/// How long the client holds them all while the server cannot accept.
const HOLD: Duration = Duration::from_millis(1500);
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The server's retry after a failed accept (`server.rs`).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// Connections closed and opened again while the server is out of descriptors.
const FLAPS: usize = 8;

/// Writes each `pinion::web` warning to stderr, one line each.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.target().starts_with("pinion") && m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("WARN {}: {}", r.target(), r.args());
        }
    }
    fn flush(&self) {}
}

fn ok(_: &Request) -> Response {
    Response::text("ok")
}

/// The child: serves on one shard until its stdin closes; answers a `stats` line with the
/// server's failed accepts so far.
fn serve_until_stdin_closes() {
    log::set_logger(&StderrLog).map(|()| log::set_max_level(log::LevelFilter::Warn)).expect("logger");
    let options = NodeOptions { cores: Cores::Count(1), pin: false, ..NodeOptions::default() };
    let node = Node::start("fd-limit", options).expect("node");
    let server =
        WebServer::start(&node, WebServerOptions::new("127.0.0.1", 0, Router::new().get("/", ok))).expect("listen");
    // After the harness's `test NAME ... ` on the same line.
    println!("listening on {}", server.local_addr());
    std::io::stdout().flush().expect("stdout");
    for line in std::io::stdin().lines() {
        if line.is_ok_and(|l| l == "stats") {
            println!("accept_errors {}", server.stats().accept_errors);
        }
    }
    node.stop();
}

fn get(stream: &mut TcpStream) -> String {
    stream.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").expect("write");
    let mut buf = [0u8; 512];
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\nok") {
        let n = stream.read(&mut buf).expect("read (the connection was never served?)");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn out_of_descriptors_the_listener_retries_quietly_and_serves_the_backlog_later() {
    if std::env::var_os("PINION_FD_CHILD").is_some() {
        return serve_until_stdin_closes();
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {FD_LIMIT} && exec \"$0\" \"$@\""))
        .arg(exe)
        .args(["out_of_descriptors_the_listener_retries_quietly_and_serves_the_backlog_later", "--exact"])
        .args(["--nocapture", "--test-threads", "1"])
        .env("PINION_FD_CHILD", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh (the test needs a POSIX shell with ulimit)");
    // Bounded whatever happens: the child is killed after a minute (reads then end).
    let pid = child.id().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        let _ = Command::new("kill").args(["-9", &pid]).status();
    });
    // Read as it comes (a flood of warnings would otherwise fill the pipe and stop the shard).
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut errors = String::new();
        stderr.read_to_string(&mut errors).expect("child stderr");
        errors
    });
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut input = child.stdin.take().expect("stdin");
    let addr = loop {
        let mut line = String::new();
        assert!(out.read_line(&mut line).expect("child stdout") > 0, "the child ended before listening");
        if let Some(addr) = line.split("listening on ").nth(1) {
            break addr.trim().parse::<std::net::SocketAddr>().expect("the child's address");
        }
    };

    let mut conns: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|i| {
            let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
            s
        })
        .collect();
    // The first ones were accepted: they are served now.
    assert!(get(&mut conns[0]).starts_with("HTTP/1.1 200"));
    // Flaps: one served connection closes (a descriptor comes free, the retry accepts one
    // from the backlog), a new one arrives (its readiness event finds no descriptor). A
    // review found each flap added a retry timer chain: 20 failed accepts a second more.
    for _ in 0..FLAPS {
        drop(conns.remove(0));
        std::thread::sleep(ACCEPT_RETRY * 2);
        conns.push(TcpStream::connect(addr).expect("connect"));
    }
    let mut errors_so_far = || {
        writeln!(input, "stats").expect("ask the child");
        loop {
            let mut line = String::new();
            assert!(out.read_line(&mut line).expect("child stdout") > 0, "the child ended");
            if let Some(n) = line.trim().strip_prefix("accept_errors ") {
                return n.parse::<u64>().expect("a count");
            }
        }
    };
    let before = errors_so_far();
    std::thread::sleep(HOLD);
    let tries = errors_so_far() - before;
    // One retry every 50 ms: 30 in 1.5 s; more would mean more than one timer.
    let most = (HOLD.as_millis() / ACCEPT_RETRY.as_millis()) as u64 * 3 / 2;
    assert!(tries >= 1 && tries <= most, "{tries} failed accepts in {HOLD:?} after {FLAPS} flaps (at most {most})");

    // Free the server's descriptors (it closes its side on EOF), then every connection that
    // waited in the backlog is accepted and served.
    let waiting = conns.split_off(CONNECTIONS / 2);
    drop(conns);
    let started = Instant::now();
    for (i, mut c) in waiting.into_iter().enumerate() {
        let answer = get(&mut c);
        assert!(answer.starts_with("HTTP/1.1 200"), "waiting connection {i}: {answer:?}");
    }
    let served_in = started.elapsed();

    drop(input);
    let errors = errors.join().expect("stderr reader");
    let status = child.wait().expect("child");
    assert!(status.success(), "child: {status}\n{errors}");
    let failed = errors.lines().filter(|l| l.contains("accept failed")).count();
    let still = errors.lines().filter(|l| l.contains("still failing")).count();
    let again = errors.lines().filter(|l| l.contains("accepting again")).count();
    // Out of descriptors once (the client's connections arrive while the server holds all it
    // can; the flaps accept one each but do not end the run: the backlog is not drained): one
    // warning at the start of the run, one at its end, none between (the run is far shorter
    // than the reminder interval). A second run may start while the backlog drains.
    assert!(failed >= 1, "the server never ran out of descriptors (limit {FD_LIMIT}?):\n{errors}");
    assert_eq!(still, 0, "{errors}");
    assert!(
        failed <= 3 && again == failed,
        "{failed} runs of failures, {again} ends (served in {served_in:?}):\n{errors}"
    );
}
