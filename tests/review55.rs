//! Review 55, a newcomer following the README: the examples it names, run for real
//! (`cargo run --example NAME`, as tests/examples.rs runs them), with raw HTTP/1.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long an example may take to build and start.
const START_TIMEOUT: Duration = Duration::from_secs(600);

/// `cargo run --example NAME -- ARGS` with the features and profile this test was built with
/// (nothing is rebuilt).
fn cargo_example(name: &str, args: &[&str]) -> Command {
    let mut features = vec!["web"];
    if cfg!(feature = "interop") {
        features.push("interop");
    }
    let profile: &[&str] = if cfg!(debug_assertions) { &[] } else { &["--release"] };
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--quiet", "--manifest-path", concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")])
        .args(profile)
        .args(["--no-default-features", "--features"])
        .arg(features.join(","))
        .args(["--example", name, "--"])
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// A running example, killed when dropped.
struct Example(Child, SocketAddr);

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(name: &str) -> Example {
    let mut child = cargo_example(name, &["--port", "0", "--cores", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cargo run --example {name}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = BufReader::new(stdout);
        let mut line = String::new();
        let _ = tx.send(out.read_line(&mut line).map(|_| line));
        let _ = std::io::copy(&mut out, &mut std::io::sink());
    });
    let line = rx.recv_timeout(START_TIMEOUT).expect("first line in time").expect("stdout");
    let addr = line
        .trim_end()
        .strip_prefix("listening on http://")
        .and_then(|rest| rest.split_once('/'))
        .map(|(addr, _)| addr.parse().expect("an address"))
        .unwrap_or_else(|| panic!("{name}: first line {line:?}"));
    Example(child, addr)
}

/// The README names `users` as the example with JSON, and says a client waiting for
/// `100 Continue` is refused before it uploads when the head decides (no route). The users
/// example gave its JSON 404 from a plain-function fallback, which is asked only once the
/// body is in: the client was told `100 Continue` and uploaded the whole body for a 404.
#[test]
fn users_example_refuses_an_unknown_path_before_the_upload() {
    let app = start("users");
    let mut s = TcpStream::connect(app.1).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /nothing/here HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
          content-length: 500000\r\nexpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut first = [0u8; 64];
    let n = s.read(&mut first).expect("an answer to the head");
    let first = String::from_utf8_lossy(&first[..n]);
    assert!(first.starts_with("HTTP/1.1 404"), "answered {first:?} before the upload");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let all = format!("{first}{}", String::from_utf8_lossy(&rest));
    assert!(all.contains("application/json") && all.contains(r#"{"error":"no such resource"}"#), "{all}");
}

/// tests/examples.rs holds hello and backpressure to a usage line and exit 2 for a bad flag
/// value (a trial found them panicking); users, axum_simple and ping_pong — flags the README
/// and their docs give — still panicked with a backtrace, and flood ran its 10 M messages
/// whatever it was given (`--crosss` ran on one shard).
#[test]
fn every_example_refuses_bad_flags_with_its_usage() {
    let cases: &[(&str, &[&str])] = &[
        ("users", &["--port", "abc"]),
        ("users", &["--port", "70000"]),
        ("users", &["--cores", "x"]),
        ("axum_simple", &["--port", "abc"]),
        ("axum_simple", &["--cores", "x"]),
        ("ping_pong", &["--rounds", "x"]),
        ("flood", &["--crosss"]),
    ];
    for (name, args) in cases {
        let out = cargo_example(name, args).output().unwrap_or_else(|e| panic!("cargo run --example {name}: {e}"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {stderr}");
        assert!(stderr.contains("usage:") && !stderr.contains("panicked"), "{name} {args:?}: {stderr}");
    }
    // A node that cannot start is a line and exit 1, not a panic.
    let out = cargo_example("users", &["--port", "0", "--cores", "0"]).output().expect("cargo run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
