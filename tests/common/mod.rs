//! Helpers of the actor integration tests (`tests/actor.rs`): node start-up, a scriptable probe
//! actor that reports what it sees through a `std::sync::mpsc` channel, and bounded waits.
//!
//! Every wait here is bounded by [`WAIT`] and only prevents a hang: no test asserts on timing.

use std::any::{Any, type_name};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use pinion::{
    Actor, Alias, CallError, Context, Cores, Down, ExitReason, ExitSignal, Message, MonitorRef, Node, NodeHandle,
    NodeOptions, Pid, ProcessId, ProcessOptions, Reply, ReplyToken, ShardId, SpawnError, Target, TimerRef,
};

/// Generous bound on every wait, so a broken runtime fails a test instead of hanging it.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A short call timeout, for calls that are meant to time out (the callee never answers in time).
pub(crate) const SHORT: Duration = Duration::from_millis(100);

/// Starts an unpinned node with `shards` shards (runs on any machine, 1 core included).
pub(crate) fn start(name: &str, shards: usize) -> Node {
    let options = NodeOptions { cores: Cores::Count(shards), pin: false, ..Default::default() };
    Node::start(name, options).unwrap_or_else(|e| panic!("node {name} did not start: {e}"))
}

/// `ShardId(i)`.
pub(crate) fn shard(i: usize) -> ShardId {
    ShardId(u16::try_from(i).expect("shard index fits u16"))
}

/// An owned message target (a [`Target`] borrows), so it can travel inside a [`Cmd`].
#[derive(Clone, Debug)]
pub(crate) enum To {
    Pid(Pid),
    Name(String),
    Alias(Alias),
    Remote(ProcessId),
}

impl To {
    pub(crate) fn target(&self) -> Target<'_> {
        match self {
            To::Pid(p) => Target::Pid(*p),
            To::Name(n) => Target::Name(n),
            To::Alias(a) => Target::Alias(*a),
            To::Remote(p) => Target::ProcessId(p),
        }
    }
}

impl From<Pid> for To {
    fn from(p: Pid) -> Self {
        To::Pid(p)
    }
}

impl From<Alias> for To {
    fn from(a: Alias) -> Self {
        To::Alias(a)
    }
}

impl From<&str> for To {
    fn from(n: &str) -> Self {
        To::Name(n.to_owned())
    }
}

impl From<ProcessId> for To {
    fn from(p: ProcessId) -> Self {
        To::Remote(p)
    }
}

/// How a probe spawns a child probe from inside its handler.
#[derive(Clone, Debug)]
pub(crate) enum SpawnHow {
    /// `ctx.spawn`: on the probe's own shard.
    Here,
    /// `ctx.spawn_on(shard)`.
    On(ShardId),
    /// `ctx.spawn_register(name)`.
    Named(String),
}

/// What a [`Probe`] is told to do, by `send` (then results are reported as [`Event`]s) or by
/// `call` (then the reply carries the result; the type is given per variant).
pub(crate) enum Cmd {
    /// Reply with the caller's pid (`Pid`).
    Sender,
    /// Reply `1u64` if the caller is this pid, else `0u64`.
    IsSender(Pid),
    /// Take a reply token and keep it (reply: later, with `n`, on [`Cmd::Release`]).
    Hold(u64),
    /// Answer every held token, oldest first, each with its `n`; reports `Replied` (reply `()`).
    Release,
    /// Move every held token to a new OS thread that answers them (reply `()`).
    ReleaseOnThread,
    /// Drop every held token unanswered (reply `()`).
    DropHeld,
    /// Take a token and answer it with `n` when a `send_after` to self fires after `delay`.
    DeferTimer { n: u64, delay: Duration },
    /// Internal: the `send_after` of [`Cmd::DeferTimer`].
    Fire(u64),
    /// Take a token and answer it with `n` from a new OS thread.
    DeferThread(u64),
    /// Take a token and drop it at once.
    DeferDrop,
    /// Answer `Reply::Later` without taking a token.
    LaterNoToken,
    /// Panic in the handler with this text.
    Panic(String),
    /// `ctx.stop(reason)`, then report `Stopping` before the handler returns (reply `()`).
    Stop(ExitReason),
    /// Return `Err(reason)` from the handler.
    Fail(ExitReason),
    /// `ctx.exit(pid, reason)` (reply `()`).
    Exit(Pid, ExitReason),
    /// `ctx.link(pid)` (reply `()`).
    Link(Pid),
    /// `ctx.unlink(pid)` (reply `()`).
    Unlink(Pid),
    /// `ctx.monitor(to)` (reply `MonitorRef`).
    Monitor(To),
    /// `ctx.demonitor(pid, reference)` (reply `()`).
    Demonitor(Pid, MonitorRef),
    /// `ctx.register(name)` (reply `Result<(), RegisterError>`).
    Register(String),
    /// `ctx.unregister()` (reply `bool`).
    Unregister,
    /// `ctx.whereis(name)` (reply `Option<Pid>`).
    Whereis(String),
    /// `ctx.create_alias()` (reply `Alias`).
    CreateAlias,
    /// `ctx.delete_alias(alias)` (reply `bool`).
    DeleteAlias(Alias),
    /// `ctx.send(to, n)` (reply `Result<(), SendError<u64>>`).
    Send { to: To, n: u64 },
    /// `ctx.call(to, req, timeout)`; the reply is expected to be a `u64`. Reports `Called`
    /// (reply `Result<u64, CallError>`).
    Call { to: To, req: Message, timeout: Duration },
    /// `ctx.send_after(to, n, delay)` (reply `TimerRef`).
    SendAfter { to: To, n: u64, delay: Duration },
    /// `ctx.cancel_timer(timer)` (reply `bool`).
    CancelTimer(TimerRef),
    /// Run each command in turn; the reply is the last one's.
    Seq(Vec<Cmd>),
    /// Count one, then send this same command to self again — until `stop` is set.
    Flood { count: Arc<AtomicU64>, stop: Arc<AtomicBool> },
    /// Spawn a child probe reporting to the same channel (reply `Result<Pid, SpawnError>`).
    Spawn(SpawnHow),
    /// Spawn a [`FailInit`] through the context (reply `Result<Pid, SpawnError>`).
    SpawnFailing(ExitReason),
    /// Report `Blocking`, then block the shard's thread this long (reply `()`): nothing else on
    /// the shard runs meanwhile, not even the delivery of what arrives in its inbox.
    Block(Duration),
}

/// `Cmd::Call` with a boxed request.
pub(crate) fn call_cmd(to: impl Into<To>, req: impl Any + Send, timeout: Duration) -> Cmd {
    Cmd::Call { to: to.into(), req: pinion::Message::new(req), timeout }
}

/// What a probe reports. `at` is the reporting process.
#[derive(Debug)]
pub(crate) enum Event {
    /// A `u64` message arrived through `send`.
    Msg { at: Pid, from: Pid, n: u64 },
    /// An exit signal arrived (the probe traps exits).
    Exit { at: Pid, signal: ExitSignal },
    /// A monitor fired.
    Down { at: Pid, down: Down },
    /// A `Cmd::Call` finished.
    Called { at: Pid, result: Result<u64, CallError> },
    /// A `Cmd::Hold` request is held.
    Held { at: Pid, n: u64 },
    /// A held or deferred token was answered; `delivered` is what `ReplyToken::reply` returned.
    Replied { at: Pid, n: u64, delivered: bool },
    /// `Cmd::Stop` called `ctx.stop` and the handler is still running.
    Stopping { at: Pid },
    /// `terminate` ran.
    Terminated { at: Pid, reason: ExitReason },
    /// `Cmd::Block` is about to block the shard.
    Blocking { at: Pid },
}

impl Event {
    pub(crate) fn at(&self) -> Pid {
        match self {
            Event::Msg { at, .. }
            | Event::Exit { at, .. }
            | Event::Down { at, .. }
            | Event::Called { at, .. }
            | Event::Held { at, .. }
            | Event::Replied { at, .. }
            | Event::Stopping { at }
            | Event::Blocking { at }
            | Event::Terminated { at, .. } => *at,
        }
    }
}

/// A scriptable actor: answers `u64` calls with the same number, reports `u64` messages, exit
/// signals, `Down`s and its `terminate`, and runs [`Cmd`]s.
pub(crate) struct Probe {
    tx: Sender<Event>,
    held: Vec<(u64, ReplyToken)>,
    timed: HashMap<u64, (u64, ReplyToken)>,
    next_key: u64,
}

impl Probe {
    pub(crate) fn new(tx: Sender<Event>) -> Self {
        Probe { tx, held: Vec::new(), timed: HashMap::new(), next_key: 0 }
    }

    fn emit(&self, event: Event) {
        // The test may have stopped listening (for example during node shutdown).
        let _ = self.tx.send(event);
    }

    async fn run(&mut self, ctx: &mut Context, from: Pid, cmd: Cmd) -> Result<Reply, ExitReason> {
        let at = ctx.pid();
        let reply = match cmd {
            Cmd::Sender => Reply::now(from),
            Cmd::IsSender(pid) => Reply::now(u64::from(from == pid)),
            Cmd::Hold(n) => {
                if let Some(token) = ctx.defer_reply() {
                    self.held.push((n, token));
                }
                self.emit(Event::Held { at, n });
                Reply::Later
            }
            Cmd::Release => {
                for (n, token) in std::mem::take(&mut self.held) {
                    let delivered = token.reply(n);
                    self.emit(Event::Replied { at, n, delivered });
                }
                Reply::now(())
            }
            Cmd::ReleaseOnThread => {
                let held = std::mem::take(&mut self.held);
                let tx = self.tx.clone();
                std::thread::spawn(move || {
                    for (n, token) in held {
                        let delivered = token.reply(n);
                        let _ = tx.send(Event::Replied { at, n, delivered });
                    }
                });
                Reply::now(())
            }
            Cmd::DropHeld => {
                self.held.clear();
                Reply::now(())
            }
            Cmd::DeferTimer { n, delay } => {
                if let Some(token) = ctx.defer_reply() {
                    let key = self.next_key;
                    self.next_key += 1;
                    self.timed.insert(key, (n, token));
                    ctx.send_after(at, Cmd::Fire(key), delay);
                }
                Reply::Later
            }
            Cmd::Fire(key) => {
                if let Some((n, token)) = self.timed.remove(&key) {
                    let delivered = token.reply(n);
                    self.emit(Event::Replied { at, n, delivered });
                }
                Reply::now(())
            }
            Cmd::DeferThread(n) => {
                if let Some(token) = ctx.defer_reply() {
                    std::thread::spawn(move || token.reply(n));
                }
                Reply::Later
            }
            Cmd::DeferDrop => {
                drop(ctx.defer_reply());
                Reply::Later
            }
            Cmd::LaterNoToken => Reply::Later,
            Cmd::Panic(text) => panic!("{text}"),
            Cmd::Stop(reason) => {
                ctx.stop(reason);
                self.emit(Event::Stopping { at });
                Reply::now(())
            }
            Cmd::Fail(reason) => return Err(reason),
            Cmd::Exit(pid, reason) => {
                ctx.exit(pid, reason);
                Reply::now(())
            }
            Cmd::Link(pid) => {
                ctx.link(pid);
                Reply::now(())
            }
            Cmd::Unlink(pid) => {
                ctx.unlink(pid);
                Reply::now(())
            }
            Cmd::Monitor(to) => Reply::now(ctx.monitor(to.target())),
            Cmd::Demonitor(pid, reference) => {
                ctx.demonitor(pid, reference);
                Reply::now(())
            }
            Cmd::Register(name) => Reply::now(ctx.register(&name)),
            Cmd::Unregister => Reply::now(ctx.unregister()),
            Cmd::Whereis(name) => Reply::now(ctx.whereis(&name)),
            Cmd::CreateAlias => Reply::now(ctx.create_alias()),
            Cmd::DeleteAlias(alias) => Reply::now(ctx.delete_alias(alias)),
            Cmd::Send { to, n } => Reply::now(ctx.send(to.target(), n)),
            Cmd::Call { to, req, timeout } => {
                let result = ctx
                    .call(to.target(), req, timeout)
                    .await
                    .and_then(|m| m.downcast::<u64>().map_err(|_| CallError::WrongType));
                self.emit(Event::Called { at, result: result.clone() });
                Reply::now(result)
            }
            Cmd::SendAfter { to, n, delay } => Reply::now(ctx.send_after(to.target(), n, delay)),
            Cmd::CancelTimer(timer) => Reply::now(ctx.cancel_timer(timer)),
            Cmd::Block(time) => {
                self.emit(Event::Blocking { at: ctx.pid() });
                std::thread::sleep(time);
                Reply::now(())
            }
            Cmd::Seq(cmds) => {
                let mut last = Reply::now(());
                for cmd in cmds {
                    last = Box::pin(self.run(ctx, from, cmd)).await?;
                }
                last
            }
            Cmd::Flood { count, stop } => {
                if !stop.load(Ordering::Relaxed) {
                    count.fetch_add(1, Ordering::Relaxed);
                    if ctx.send(at, Cmd::Flood { count, stop }).is_err() {
                        panic!("the flood's self-send failed");
                    }
                }
                Reply::now(())
            }
            Cmd::Spawn(how) => {
                let tx = self.tx.clone();
                let factory = move || Probe::new(tx);
                let options = ProcessOptions::default();
                let result = match how {
                    SpawnHow::Here => ctx.spawn(factory, options).await,
                    SpawnHow::On(shard) => ctx.spawn_on(shard, factory, options).await,
                    SpawnHow::Named(name) => ctx.spawn_register(&name, factory, options).await,
                };
                Reply::now(result)
            }
            Cmd::SpawnFailing(reason) => {
                let result: Result<Pid, SpawnError> =
                    ctx.spawn(move || FailInit(reason), ProcessOptions::default()).await;
                Reply::now(result)
            }
        };
        Ok(reply)
    }
}

impl Actor for Probe {
    async fn handle_message(&mut self, ctx: &mut Context, from: Pid, msg: Message) -> Result<(), ExitReason> {
        let at = ctx.pid();
        let msg = match msg.downcast::<u64>() {
            Ok(n) => {
                self.emit(Event::Msg { at, from, n });
                return Ok(());
            }
            Err(msg) => msg,
        };
        let msg = match msg.downcast::<ExitSignal>() {
            Ok(signal) => {
                self.emit(Event::Exit { at, signal });
                return Ok(());
            }
            Err(msg) => msg,
        };
        let msg = match msg.downcast::<Down>() {
            Ok(down) => {
                self.emit(Event::Down { at, down });
                return Ok(());
            }
            Err(msg) => msg,
        };
        match msg.downcast::<Cmd>() {
            Ok(cmd) => self.run(ctx, from, cmd).await.map(drop),
            Err(_) => panic!("probe got a message of an unknown type"),
        }
    }

    async fn handle_call(&mut self, ctx: &mut Context, from: Pid, req: Message) -> Result<Reply, ExitReason> {
        let req = match req.downcast::<u64>() {
            Ok(n) => return Ok(Reply::now(n)),
            Err(req) => req,
        };
        match req.downcast::<Cmd>() {
            Ok(cmd) => self.run(ctx, from, cmd).await,
            Err(_) => panic!("probe got a request of an unknown type"),
        }
    }

    async fn terminate(&mut self, ctx: &mut Context, reason: &ExitReason) {
        self.emit(Event::Terminated { at: ctx.pid(), reason: reason.clone() });
    }
}

/// An actor whose `init` fails with the given reason.
pub(crate) struct FailInit(pub(crate) ExitReason);

impl Actor for FailInit {
    async fn init(&mut self, _: &mut Context) -> Result<(), ExitReason> {
        Err(self.0.clone())
    }
}

/// An actor whose `init` panics with the given text.
pub(crate) struct PanicInit(pub(crate) &'static str);

impl Actor for PanicInit {
    async fn init(&mut self, _: &mut Context) -> Result<(), ExitReason> {
        panic!("{}", self.0)
    }
}

/// Spawns a probe on `shard` with `options`; returns its pid and its event channel.
pub(crate) fn probe_with(h: &NodeHandle, shard_index: usize, options: ProcessOptions) -> (Pid, Receiver<Event>) {
    let (tx, rx) = channel();
    let pid = h.spawn_on(shard(shard_index), move || Probe::new(tx), options).wait().expect("probe spawns");
    assert_eq!(pid.shard(), shard(shard_index));
    (pid, rx)
}

/// Spawns a probe on `shard` with default options.
pub(crate) fn probe(h: &NodeHandle, shard_index: usize) -> (Pid, Receiver<Event>) {
    probe_with(h, shard_index, ProcessOptions::default())
}

/// Spawns a probe on `shard` that traps exits.
pub(crate) fn trapping_probe(h: &NodeHandle, shard_index: usize) -> (Pid, Receiver<Event>) {
    probe_with(h, shard_index, ProcessOptions { trap_exit: true, ..Default::default() })
}

/// `call_blocking` that must succeed with a reply of type `T`.
pub(crate) fn ask<'t, T: Any>(h: &NodeHandle, to: impl Into<Target<'t>>, req: impl Any + Send) -> T {
    let reply = h.call_blocking(to, req, WAIT).unwrap_or_else(|e| panic!("call failed: {e}"));
    match reply.downcast::<T>() {
        Ok(v) => v,
        Err(_) => panic!("the reply is not a {}", type_name::<T>()),
    }
}

/// `call_blocking` of a `u64` request; the `u64` reply or the error.
pub(crate) fn call_u64<'t>(h: &NodeHandle, to: impl Into<Target<'t>>, req: impl Any + Send) -> Result<u64, CallError> {
    h.call_blocking(to, req, WAIT).map(|m| m.downcast::<u64>().expect("a u64 reply"))
}

/// Makes a probe run `ctx.call(to, req, timeout)` and returns what the call answered.
pub(crate) fn call_via(
    h: &NodeHandle,
    caller: Pid,
    to: impl Into<To>,
    req: impl Any + Send,
    timeout: Duration,
) -> Result<u64, CallError> {
    ask(h, caller, call_cmd(to, req, timeout))
}

/// Receives events until one matches `pred`; returns the ones skipped before it, and it.
/// Panics (listing what it saw) if none comes within [`WAIT`].
pub(crate) fn expect(rx: &Receiver<Event>, what: &str, pred: impl Fn(&Event) -> bool) -> (Vec<Event>, Event) {
    let deadline = Instant::now() + WAIT;
    let mut skipped = Vec::new();
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(e) if pred(&e) => return (skipped, e),
            Ok(e) => skipped.push(e),
            Err(_) => panic!("no event `{what}` within {WAIT:?}; saw {skipped:?}"),
        }
    }
}

/// The events already received and not yet read.
pub(crate) fn pending(rx: &Receiver<Event>) -> Vec<Event> {
    rx.try_iter().collect()
}

/// Polls `cond` until it holds; panics after [`WAIT`].
pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "`{what}` did not happen within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `pid`'s process has ended and its slot is closed (`process_info` answers
/// `NoSuchProcess`, which the shard serves only after the process's exit was processed).
pub(crate) fn wait_dead(h: &NodeHandle, pid: Pid) {
    wait_until("the process ended", || matches!(h.process_info(pid), Err(CallError::NoSuchProcess)));
}

/// A pid of a process that has ended, on `shard`.
pub(crate) fn dead_pid(h: &NodeHandle, shard_index: usize) -> Pid {
    let (pid, _rx) = probe(h, shard_index);
    h.exit(pid, ExitReason::Kill);
    wait_dead(h, pid);
    pid
}

/// Sums a counter over every shard's `inspect` snapshot.
pub(crate) fn inspect_sum(h: &NodeHandle, field: impl Fn(&pinion::ShardInfo) -> u64) -> u64 {
    h.inspect().expect("inspect answers").iter().map(field).sum()
}
