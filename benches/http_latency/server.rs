//! A server under test: a child process on a loopback port, killed and reaped when dropped.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{CpuTicks, batch_bytes, parse_response};
use crate::options::ServerSpec;

/// First port tried; each server start takes the next free one, so a server never meets the
/// previous one's sockets (below Linux's ephemeral range, where the client's own ports live).
const FIRST_PORT: u16 = 18700;
/// Ports tried per start before giving up.
const PORT_TRIES: u16 = 500;
/// How long a server may take to answer its first request.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause between readiness probes.
const PROBE_PAUSE: Duration = Duration::from_millis(50);
/// Timeout of one probe's connect, write and read.
const PROBE_IO_TIMEOUT: Duration = Duration::from_millis(500);

/// Hands out loopback ports, one after another.
#[derive(Debug)]
pub(crate) struct PortPicker {
    next: u16,
}

impl PortPicker {
    pub(crate) fn new() -> PortPicker {
        PortPicker { next: FIRST_PORT }
    }

    /// The next port that can be bound on 127.0.0.1 now.
    pub(crate) fn next(&mut self) -> Result<u16, String> {
        for _ in 0..PORT_TRIES {
            let port = self.next;
            self.next = if self.next >= FIRST_PORT + 10_000 { FIRST_PORT } else { self.next + 1 };
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
        Err(format!("no free port after {PORT_TRIES} tries"))
    }
}

/// A running server. Dropping it (also while unwinding from a panic) kills and reaps the
/// child. Ctrl-C reaches the child directly: it stays in the bench's process group.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Starts `spec` on `port`, under `taskset -c cpus` when given, from the current directory;
    /// its output goes to a log file shown when it fails.
    pub(crate) fn start(spec: &ServerSpec, port: u16, cpus: Option<&str>) -> Result<Server, String> {
        let command = format!("exec {}", spec.command.replace("{port}", &port.to_string()));
        let log = std::env::temp_dir().join(format!("http_latency-{}-{port}.log", std::process::id()));
        let out = File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| format!("log file: {e}"))?;
        let mut cmd = match cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus, "bash", "-c", &command]);
                c
            }
            None => {
                let mut c = Command::new("bash");
                c.args(["-c", &command]);
                c
            }
        };
        cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        match cmd.spawn() {
            Ok(child) => Ok(Server { child, log }),
            Err(e) => {
                // Best effort: the log is empty.
                let _ = std::fs::remove_file(&log);
                Err(format!("cannot start `{command}`: {e}"))
            }
        }
    }

    /// Waits until `GET /plaintext` on `port` answers 200, for at most [`READY_TIMEOUT`].
    pub(crate) fn wait_ready(&mut self, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            if !self.alive() {
                return Err(format!("exited before answering; its output:\n{}", self.output()));
            }
            match probe(port) {
                Ok(200) => return Ok(()),
                Ok(status) => last = format!("status {status}"),
                Err(e) => last = e,
            }
            std::thread::sleep(PROBE_PAUSE);
        }
        Err(format!("not ready after {READY_TIMEOUT:?} ({last}); its output:\n{}", self.output()))
    }

    /// False once the child has exited.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The CPU time the server has used so far (user, system; clock ticks), from
    /// `/proc/PID/stat` (`bash -c "exec …"` under `taskset` keeps the child's pid); `None` if
    /// it cannot be read.
    pub(crate) fn cpu(&self) -> Option<CpuTicks> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // The fields after the command name (which may hold spaces), from field 3 on.
        let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
        let user = fields.nth(11)?.parse().ok()?;
        let system = fields.next()?.parse().ok()?;
        Some((user, system))
    }

    /// The last lines of the child's output, indented.
    pub(crate) fn output(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].iter().map(|l| format!("    {l}\n")).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Errors mean the child is gone already; wait() reaps it either way.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The unit of `/proc/PID/stat`'s CPU times (`getconf CLK_TCK`; 100 on Linux if that fails).
pub(crate) fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// One `GET /plaintext` on a fresh connection: the response's status.
fn probe(port: u16) -> Result<u16, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, PROBE_IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(PROBE_IO_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(PROBE_IO_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.write_all(&batch_bytes(port, 1)).map_err(|e| format!("write: {e}"))?;
    let mut buf = [0u8; 4096];
    let mut filled = 0;
    while filled < buf.len() {
        let n = stream.read(&mut buf[filled..]).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed without a response".into());
        }
        filled += n;
        if let Some(response) = parse_response(&buf[..filled]).map_err(|e| e.to_string())? {
            return Ok(response.status);
        }
    }
    Err("response larger than 4 KiB".into())
}
