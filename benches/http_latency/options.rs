//! The command line of the `http_latency` bench, and the peer kit's table of servers.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// `--help` text.
pub(crate) const USAGE: &str = "\
usage: cargo bench --bench http_latency -- [options] [--server 'CMD {port}' --name NAME]...
  --server CMD        a server command, run as `bash -c \"exec CMD\"` from the current directory;
                      {port} is replaced by the port it must listen on (127.0.0.1)
  --name NAME         name of the preceding --server (default: server1, server2, ...)
  --env NAME=VAR=VAL  environment variable for the server called NAME (repeatable)
  --peers             add every peer of the kit's compare-http.sh PEERS table
  --peer NAME         add one peer of that table (repeatable)
  --kit DIR           the bench kit: compare-http.sh, peers/target/release (default ../shared/bench)
  --connections C     connections, all driven by one client thread (default 16)
  --depth D           requests per write on each connection (default 16)
  --rate LIST         open loop instead: requests per second over all connections, at fixed
                      times whatever the answers (comma-separated rates, e.g. 100000,400000;
                      each is run for every server in every round); latency is timed from each
                      request's intended send time; --depth is not used
  --duration S        measured seconds per run, at most 15 (default 8)
  --warmup S          unrecorded seconds before each run, at most 15 (default 2)
  --rounds R          rounds; the server order rotates by one each round (default 3)
  --pin               server under `taskset -c SERVER_CPUS`, the client thread on CLIENT_CORE
  --server-cpus LIST  cpu list for the servers with --pin (default 0)
  --client-core N     core of the client thread with --pin (default 1)";

/// Longest measured run or warm-up.
const MAX_SECONDS: f64 = 15.0;
/// Upper bound of --connections, --depth and --rounds (each loop over them stays bounded).
const MAX_COUNT: usize = 4096;

/// One server to measure.
#[derive(Clone, Debug)]
pub(crate) struct ServerSpec {
    pub(crate) name: String,
    /// Shell command with `{port}` in it.
    pub(crate) command: String,
    pub(crate) env: Vec<(String, String)>,
}

/// Everything the command line sets.
#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) servers: Vec<ServerSpec>,
    pub(crate) connections: usize,
    pub(crate) depth: usize,
    /// Open-loop rates (requests per second), empty for the closed loop.
    pub(crate) rates: Vec<f64>,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) rounds: usize,
    /// `Some(cpu list)` with --pin.
    pub(crate) server_cpus: Option<String>,
    /// `Some(core)` with --pin.
    pub(crate) client_core: Option<usize>,
    pub(crate) help: bool,
}

/// A server source in command-line order; peers are looked up once the kit directory is known.
enum Entry {
    Command(ServerSpec),
    AllPeers,
    Peer(String),
}

impl Options {
    /// Parses the arguments after the program name. `--bench`, which `cargo bench` appends, is
    /// ignored.
    pub(crate) fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut args = args.into_iter();
        let mut entries = Vec::new();
        let mut envs = Vec::new();
        let mut kit = PathBuf::from("../shared/bench");
        let (mut connections, mut depth, mut rounds) = (16, 16, 3);
        let (mut duration, mut warmup) = (Duration::from_secs(8), Duration::from_secs(2));
        let (mut pin, mut server_cpus, mut client_core) = (false, "0".to_string(), 1);
        let mut help = false;
        let mut rates = Vec::new();
        let mut commands = 0;
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--server" => {
                    commands += 1;
                    let command = value()?;
                    let name = format!("server{commands}");
                    entries.push(Entry::Command(ServerSpec { name, command, env: Vec::new() }));
                }
                "--name" => match entries.last_mut() {
                    Some(Entry::Command(spec)) => spec.name = value()?,
                    _ => return Err("--name must follow --server".into()),
                },
                "--env" => {
                    let v = value()?;
                    let mut parts = v.splitn(3, '=');
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some(name), Some(var), Some(val)) if !name.is_empty() && !var.is_empty() => {
                            envs.push((name.to_string(), var.to_string(), val.to_string()))
                        }
                        _ => return Err(format!("--env wants NAME=VAR=VALUE, got {v:?}")),
                    }
                }
                "--peers" => entries.push(Entry::AllPeers),
                "--peer" => entries.push(Entry::Peer(value()?)),
                "--kit" => kit = PathBuf::from(value()?),
                "--connections" => connections = count(&arg, &value()?)?,
                "--depth" => depth = count(&arg, &value()?)?,
                "--rounds" => rounds = count(&arg, &value()?)?,
                "--rate" => rates = rate_list(&value()?)?,
                "--duration" => duration = seconds(&arg, &value()?, false)?,
                "--warmup" => warmup = seconds(&arg, &value()?, true)?,
                "--pin" => pin = true,
                "--server-cpus" => server_cpus = value()?,
                "--client-core" => {
                    let v = value()?;
                    client_core = v.parse().map_err(|_| format!("--client-core wants a core number, got {v:?}"))?;
                }
                "--bench" => {}
                "-h" | "--help" => help = true,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        let mut servers = Vec::new();
        let mut peers = None;
        for entry in entries {
            match entry {
                Entry::Command(spec) => servers.push(spec),
                Entry::AllPeers => servers.extend(load_peers(&kit, &mut peers)?.iter().cloned()),
                Entry::Peer(name) => {
                    let table = load_peers(&kit, &mut peers)?;
                    let spec = table.iter().find(|p| p.name == name).ok_or_else(|| {
                        let known: Vec<_> = table.iter().map(|p| p.name.as_str()).collect();
                        format!("no peer {name:?} in the kit (known: {})", known.join(", "))
                    })?;
                    servers.push(spec.clone());
                }
            }
        }
        for (i, spec) in servers.iter().enumerate() {
            if servers[..i].iter().any(|s| s.name == spec.name) {
                return Err(format!("two servers are called {:?}", spec.name));
            }
        }
        for (name, var, val) in envs {
            let spec = servers.iter_mut().find(|s| s.name == name);
            let spec = spec.ok_or_else(|| format!("--env names {name:?}, which is no server"))?;
            spec.env.push((var, val));
        }
        if servers.is_empty() && !help {
            return Err("no servers: give --server CMD, --peer NAME or --peers".into());
        }
        Ok(Options {
            servers,
            connections,
            depth,
            rates,
            duration,
            warmup,
            rounds,
            server_cpus: pin.then_some(server_cpus),
            client_core: pin.then_some(client_core),
            help,
        })
    }
}

fn count(flag: &str, v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(n) if (1..=MAX_COUNT).contains(&n) => Ok(n),
        _ => Err(format!("{flag} wants a whole number in 1..={MAX_COUNT}, got {v:?}")),
    }
}

/// Largest open-loop rate, requests per second (far above what one client thread can send).
const MAX_RATE: f64 = 1e8;

fn rate_list(v: &str) -> Result<Vec<f64>, String> {
    let rates: Vec<f64> = v
        .split(',')
        .map(|r| match r.trim().parse::<f64>() {
            Ok(x) if (1.0..=MAX_RATE).contains(&x) => Ok(x),
            _ => Err(format!("--rate wants requests per second in 1..={MAX_RATE}, got {r:?}")),
        })
        .collect::<Result<_, _>>()?;
    if rates.len() > MAX_COUNT {
        return Err(format!("--rate: at most {MAX_COUNT} rates"));
    }
    Ok(rates)
}

fn seconds(flag: &str, v: &str, zero_ok: bool) -> Result<Duration, String> {
    match v.parse::<f64>() {
        Ok(s) if s <= MAX_SECONDS && (s > 0.0 || (zero_ok && s == 0.0)) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("{flag} wants seconds, at most {MAX_SECONDS}, got {v:?}")),
    }
}

/// The kit's peers, read once from the `PEERS=( ... )` table of `compare-http.sh`, so the
/// names, binaries, arguments and environment are the ones that script uses. A row is
/// `"name|ENV=1 ...|binary|extra args"`; the command is `KIT/peers/target/release/binary {port}
/// extra args`.
fn load_peers<'a>(kit: &Path, cache: &'a mut Option<Vec<ServerSpec>>) -> Result<&'a [ServerSpec], String> {
    if cache.is_none() {
        let script = kit.join("compare-http.sh");
        let text = std::fs::read_to_string(&script).map_err(|e| format!("reading {}: {e}", script.display()))?;
        let bin = kit.join("peers/target/release");
        let mut peers = Vec::new();
        let mut lines = text.lines().map(str::trim).skip_while(|l| !l.starts_with("PEERS=("));
        lines.next();
        for line in lines.take_while(|l| !l.starts_with(')')) {
            let Some(row) = line.strip_prefix('"').and_then(|l| l.split('"').next()) else { continue };
            let fields: Vec<&str> = row.split('|').collect();
            let [name, env, binary, extra] = fields[..] else {
                return Err(format!("{}: unexpected PEERS row {row:?}", script.display()));
            };
            let env = env.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.into(), v.into()));
            let path = bin.join(binary);
            let mut command = format!("{} {{port}}", shell_quote(&path.to_string_lossy()));
            if !extra.is_empty() {
                command = format!("{command} {extra}");
            }
            peers.push(ServerSpec { name: name.to_string(), command, env: env.collect() });
        }
        if peers.is_empty() {
            return Err(format!("{}: found no PEERS table", script.display()));
        }
        *cache = Some(peers);
    }
    Ok(cache.as_deref().unwrap_or_default())
}

/// `s` as one single-quoted shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}
