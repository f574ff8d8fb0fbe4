//! Raw-socket helpers the review test files share (`web_review31`, `web_review32`): a node, a
//! server with given limits, bounded waits, a client that writes bytes and parses answers, and
//! (Linux) a seccomp filter that makes pinning fail.
#![allow(dead_code, reason = "each test binary uses a subset of the helpers")]
#![allow(unreachable_pub, reason = "a test helper module: `pub` is for the test files that include it")]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use pinion::http::HttpLimits;
use pinion::web::{Handler, WebServer, WebServerOptions};
use pinion::{Cores, Node, NodeHandle, NodeOptions};

/// Bound on every wait: only there so a bug fails a test instead of hanging it.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn start_node(name: &str, shards: usize) -> Node {
    let options = NodeOptions { cores: Cores::Count(shards), pin: false, ..Default::default() };
    Node::start(name, options).unwrap_or_else(|e| panic!("node {name}: {e}"))
}

pub fn serve_with(node: &Node, limits: HttpLimits, handler: impl Handler) -> WebServer {
    WebServer::start(node, WebServerOptions { limits, ..WebServerOptions::new("127.0.0.1", 0, handler) })
        .expect("web server starts")
}

/// Processes alive on the node's shards.
pub fn processes(node: &NodeHandle) -> usize {
    node.inspect().expect("inspect").iter().map(|s| s.processes).sum()
}

/// The panics of the workers (the shard threads') are not reported: expected, and the default
/// hook's backtrace, under `RUST_BACKTRACE`, fills a cache of debug information that is never
/// freed (a test counting live bytes would count it as the runtime's).
pub fn quiet_worker_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !std::thread::current().name().is_some_and(|n| n.starts_with("pinion-")) {
            report(info);
        }
    }));
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct Client {
    pub s: TcpStream,
    pub buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_nodelay(true).unwrap();
        Client { s, buf: Vec::new() }
    }
    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("send");
    }
    pub fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 65536];
        let n = self.s.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
    pub fn need(&mut self, what: &str) {
        match self.fill() {
            Ok(0) => panic!("EOF while reading {what}; have {:?}", String::from_utf8_lossy(&self.buf)),
            Ok(_) => {}
            Err(e) => panic!("{e} while reading {what}; have {:?}", String::from_utf8_lossy(&self.buf)),
        }
    }
    pub fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let l = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return l;
            }
            self.need("a line");
        }
    }
    pub fn take(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.need("a body");
        }
        self.buf.drain(..n).collect()
    }
    /// A response head (skipping `100 Continue`s only if `skip_100`).
    pub fn head(&mut self) -> Resp {
        let status_line = self.line();
        let status: u16 = status_line
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let l = self.line();
            if l.is_empty() {
                break;
            }
            let (n, v) = l.split_once(':').expect("field");
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
        Resp { status, headers, body: Vec::new() }
    }
    pub fn response(&mut self) -> Resp {
        let mut r = self.head();
        if r.status == 100 {
            r = self.head();
        }
        self.body_of(&mut r);
        r
    }
    pub fn body_of(&mut self, r: &mut Resp) {
        if let Some(len) = r.header("content-length") {
            let n: usize = len.parse().unwrap();
            r.body = self.take(n);
        } else if r.header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            loop {
                let size = usize::from_str_radix(self.line().trim(), 16).expect("chunk size");
                if size == 0 {
                    assert_eq!(self.line(), "");
                    break;
                }
                let mut c = self.take(size);
                r.body.append(&mut c);
                assert_eq!(self.take(2), b"\r\n");
            }
        }
    }
    /// EOF (or reset) next, with nothing more.
    pub fn assert_closed(&mut self) {
        loop {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
                Err(e) => panic!("not closed: {e}; have {:?}", String::from_utf8_lossy(&self.buf)),
            }
        }
        assert!(self.buf.is_empty(), "bytes before the close: {:?}", String::from_utf8_lossy(&self.buf));
    }
}

pub fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

/// Records the lines logged under `pinion::web::access`: the logger of a test binary that
/// calls [`access_lines`] (it must install no other).
struct AccessLog;

static ACCESS_LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

impl log::Log for AccessLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == "pinion::web::access"
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            lock(&ACCESS_LINES).push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

/// The access lines so far that hold `part` (the first call installs [`AccessLog`]).
pub fn access_lines(part: &str) -> Vec<String> {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&AccessLog).expect("the one logger of this binary");
        log::set_max_level(log::LevelFilter::Info);
    });
    lock(&ACCESS_LINES).iter().filter(|l| l.contains(part)).cloned().collect()
}

/// Makes `sched_setaffinity` fail with `EPERM` for the calling thread and every thread it
/// spawns from now on (a seccomp filter: per thread, inherited by new threads), so that a node
/// started from this thread cannot pin its shards. The thread's affinity mask is untouched:
/// the layout sees every core as available, only the pinning fails.
///
/// Where the process may not install a seccomp filter, this fails saying what is missing and
/// how to get it (review 66: it failed with `no_new_privs` or the bare OS error). (`review59`, `review69`.)
#[cfg(target_os = "linux")]
pub fn forbid_pinning_on_this_thread() {
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let filter = [
        // A = seccomp_data.nr
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        // if A == sched_setaffinity: fall through to EPERM, else skip it
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_sched_setaffinity as u32,
        },
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
    // SAFETY: plain prctl calls on this thread; `prog` and `filter` outlive them (the kernel
    // copies the filter).
    let (no_new_privs, set) = unsafe {
        let no_new_privs = libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        let no_new_privs = if no_new_privs == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
        let set = libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog);
        (no_new_privs, if set == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) })
    };
    if let Err(e) = no_new_privs.and(set) {
        panic!("{SECCOMP_MISSING} (prctl: {e})");
    }
    assert!(
        !core_affinity::set_for_current(core_affinity::CoreId { id: 0 }),
        "the seccomp filter was installed but sched_setaffinity still succeeds: {SECCOMP_MISSING}"
    );
}

/// What the pinning test needs where it cannot install its filter.
#[cfg(target_os = "linux")]
const SECCOMP_MISSING: &str = "this test makes pinning fail with a seccomp filter of its own, and this \
     process may not install one. It needs a Linux kernel with CONFIG_SECCOMP_FILTER (distribution \
     kernels have it: `grep SECCOMP_FILTER /boot/config-$(uname -r)`), and, in a container or a \
     sandbox, permission to call prctl(PR_SET_NO_NEW_PRIVS) and prctl(PR_SET_SECCOMP): Docker's and \
     Podman's default profiles allow both; under a stricter profile run the tests with \
     `--security-opt seccomp=unconfined` (or a profile that allows `prctl` and `seccomp`)";
