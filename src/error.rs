//! Public error enums, one per operation family. A failed send hands the message back.

use std::fmt;
use std::time::Duration;

use crate::process::{ExitReason, ShardId};

/// Why a `send` failed, or a `try_call` was refused. Every variant carries the message (the
/// call's request) back to the caller: nothing is dropped silently.
pub enum SendError<M> {
    /// The receiver's mailbox holds its bound of accepted, unfinished messages.
    MailboxFull(M),
    /// The pid is stale (its process ended) or never existed on this node.
    NoSuchProcess(M),
    /// No process is registered under the name.
    UnknownName(M),
    /// The alias was deleted, or its process ended.
    UnknownAlias(M),
    /// The target is on another node and no link to it is up.
    NodeDown(M),
    /// The local node is stopping or stopped.
    Stopped(M),
    /// Only from a `try_call`: its timeout is zero (a call that may never wait cannot be
    /// answered). Nothing was sent; the request comes back (review 72: it was dropped).
    InvalidTimeout(M),
    /// Only from [`Context::try_call`](crate::Context::try_call): the callee is the calling
    /// process itself (by pid, live alias or name), which cannot answer while it waits.
    /// Nothing was sent; the request comes back (review 72: it was dropped).
    WouldBlock(M),
}

impl<M> SendError<M> {
    /// The message that could not be delivered.
    pub fn into_inner(self) -> M {
        match self {
            SendError::MailboxFull(m)
            | SendError::NoSuchProcess(m)
            | SendError::UnknownName(m)
            | SendError::UnknownAlias(m)
            | SendError::NodeDown(m)
            | SendError::Stopped(m)
            | SendError::InvalidTimeout(m)
            | SendError::WouldBlock(m) => m,
        }
    }
    /// The same error with the message mapped.
    pub fn map<N>(self, f: impl FnOnce(M) -> N) -> SendError<N> {
        match self {
            SendError::MailboxFull(m) => SendError::MailboxFull(f(m)),
            SendError::NoSuchProcess(m) => SendError::NoSuchProcess(f(m)),
            SendError::UnknownName(m) => SendError::UnknownName(f(m)),
            SendError::UnknownAlias(m) => SendError::UnknownAlias(f(m)),
            SendError::NodeDown(m) => SendError::NodeDown(f(m)),
            SendError::Stopped(m) => SendError::Stopped(f(m)),
            SendError::InvalidTimeout(m) => SendError::InvalidTimeout(f(m)),
            SendError::WouldBlock(m) => SendError::WouldBlock(f(m)),
        }
    }
    /// True for `MailboxFull`: the receiver exists and may have room later.
    pub fn is_full(&self) -> bool {
        matches!(self, SendError::MailboxFull(_))
    }
    fn describe(&self) -> &'static str {
        match self {
            SendError::MailboxFull(_) => "the receiver's mailbox is full",
            SendError::NoSuchProcess(_) => "no such process (it ended, or the pid is stale)",
            SendError::UnknownName(_) => "no process is registered under that name",
            SendError::UnknownAlias(_) => "the alias was deleted or its process ended",
            SendError::NodeDown(_) => "the target's node is not reachable",
            SendError::Stopped(_) => "the node is stopping",
            SendError::InvalidTimeout(_) => "the call's timeout is zero (it must be > 0)",
            SendError::WouldBlock(_) => "a process called itself, which it cannot answer while it waits",
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SendError::MailboxFull(_) => "MailboxFull",
            SendError::NoSuchProcess(_) => "NoSuchProcess",
            SendError::UnknownName(_) => "UnknownName",
            SendError::UnknownAlias(_) => "UnknownAlias",
            SendError::NodeDown(_) => "NodeDown",
            SendError::Stopped(_) => "Stopped",
            SendError::InvalidTimeout(_) => "InvalidTimeout",
            SendError::WouldBlock(_) => "WouldBlock",
        };
        write!(f, "{name}(..)")
    }
}

impl<M> fmt::Display for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "send failed: {}", self.describe())
    }
}

impl<M> std::error::Error for SendError<M> {}

/// Why a `call` failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// No reply came within the timeout. A reply that arrives later is dropped and counted.
    Timeout,
    /// The callee's mailbox was full; the request was not enqueued, and is dropped
    /// (`NodeHandle::try_call` and `Context::try_call` hand it back in a `SendError`). Also the
    /// answer of a pool that took the request and then found no worker with room for it (the
    /// worker it was queued to ended): that request comes back with the answer, taken with
    /// `CallFuture::request_back` (the future of `NodeHandle::try_call` and `call`) or
    /// `CallReply::request_back` (review 72: it was dropped); `Context::call` drops it.
    MailboxFull,
    /// The pid is stale or never existed, or the callee ended before handling the request.
    NoSuchProcess,
    /// No process is registered under the name.
    UnknownName,
    /// The alias was deleted or its process ended.
    UnknownAlias,
    /// The callee's node is not reachable.
    NodeDown,
    /// The node is stopping.
    Stopped,
    /// The callee finished handling the request (or dropped its reply token) without replying.
    NoReply,
    /// A zero timeout: a call that may never wait cannot be answered.
    InvalidTimeout(Duration),
    /// The reply was not of the type the caller asked for.
    WrongType,
    /// A blocking call was made from a shard thread of the same node, which would deadlock it;
    /// or a process called its own pid, which it cannot answer while it waits.
    WouldBlock,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Timeout => f.write_str("call timed out"),
            CallError::MailboxFull => f.write_str("call failed: the callee's mailbox is full"),
            CallError::NoSuchProcess => f.write_str("call failed: no such process"),
            CallError::UnknownName => f.write_str("call failed: no process is registered under that name"),
            CallError::UnknownAlias => f.write_str("call failed: the alias was deleted or its process ended"),
            CallError::NodeDown => f.write_str("call failed: the callee's node is not reachable"),
            CallError::Stopped => f.write_str("call failed: the node is stopping"),
            CallError::NoReply => f.write_str("call failed: the callee finished without replying"),
            CallError::InvalidTimeout(d) => write!(f, "call failed: invalid timeout {d:?} (must be > 0)"),
            CallError::WrongType => f.write_str("call failed: the reply has another type than expected"),
            CallError::WouldBlock => f.write_str(
                "call would deadlock: a blocking call from a shard thread of the same node (use call().await), \
                 or a process calling itself",
            ),
        }
    }
}

impl std::error::Error for CallError {}

impl<M> From<SendError<M>> for CallError {
    fn from(e: SendError<M>) -> Self {
        match e {
            SendError::MailboxFull(_) => CallError::MailboxFull,
            SendError::NoSuchProcess(_) => CallError::NoSuchProcess,
            SendError::UnknownName(_) => CallError::UnknownName,
            SendError::UnknownAlias(_) => CallError::UnknownAlias,
            SendError::NodeDown(_) => CallError::NodeDown,
            SendError::Stopped(_) => CallError::Stopped,
            SendError::InvalidTimeout(_) => CallError::InvalidTimeout(Duration::ZERO),
            SendError::WouldBlock(_) => CallError::WouldBlock,
        }
    }
}

/// Why a process could not be spawned.
#[derive(Debug, Clone, PartialEq)]
pub enum SpawnError {
    /// The node has no shard with that index.
    NoSuchShard {
        /// The shard asked for.
        shard: ShardId,
        /// How many shards the node has.
        shards: usize,
    },
    /// Another live process holds the name.
    NameTaken(String),
    /// The name is empty or longer than 255 bytes.
    InvalidName(String),
    /// The factory panicked; the text is the panic message.
    FactoryPanicked(String),
    /// `init` returned an error or panicked; the process never ran.
    InitFailed(ExitReason),
    /// The options are invalid (for example a zero mailbox).
    InvalidOptions(&'static str),
    /// The node is stopping.
    Stopped,
    /// A blocking spawn was made from a shard thread of the same node, which would deadlock it.
    WouldBlock,
}

impl fmt::Display for SpawnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpawnError::NoSuchShard { shard, shards } => {
                write!(f, "spawn failed: no {shard} (the node has {shards} shards)")
            }
            SpawnError::NameTaken(n) => write!(f, "spawn failed: the name {n:?} is taken"),
            SpawnError::InvalidName(n) => write!(f, "spawn failed: invalid name {n:?}"),
            SpawnError::FactoryPanicked(m) => write!(f, "spawn failed: the factory panicked: {m}"),
            SpawnError::InitFailed(r) => write!(f, "spawn failed: init ended with {r}"),
            SpawnError::InvalidOptions(m) => write!(f, "spawn failed: invalid options: {m}"),
            SpawnError::Stopped => f.write_str("spawn failed: the node is stopping"),
            SpawnError::WouldBlock => {
                f.write_str("blocking spawn from a shard thread of the same node would deadlock it; use spawn().await")
            }
        }
    }
}

impl std::error::Error for SpawnError {}

/// Why a name could not be registered.
#[derive(Debug, Clone, PartialEq)]
pub enum RegisterError {
    /// Another live process holds the name.
    NameTaken(String),
    /// The name is empty or longer than 255 bytes.
    InvalidName(String),
    /// The process to name does not exist (or is not on this node).
    NoSuchProcess,
    /// The process already has a name (one name per process).
    AlreadyNamed(String),
    /// [`NodeHandle::register`](crate::NodeHandle::register) called on one of the node's
    /// shard threads for a process of another shard: its answer would block this shard (the
    /// process can name itself, `Context::register`). Nothing was registered.
    WouldBlock,
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::NameTaken(n) => write!(f, "register failed: the name {n:?} is taken"),
            RegisterError::InvalidName(n) => write!(f, "register failed: invalid name {n:?}"),
            RegisterError::NoSuchProcess => f.write_str("register failed: no such process on this node"),
            RegisterError::AlreadyNamed(n) => write!(f, "register failed: the process is already named {n:?}"),
            RegisterError::WouldBlock => f.write_str(
                "register failed: called on a shard thread for a process of another shard, it would block \
                 the shard (a process can name itself: Context::register)",
            ),
        }
    }
}

impl std::error::Error for RegisterError {}

/// Why a node could not start.
#[derive(Debug)]
pub enum StartError {
    /// The options or `PINION_CORES` name a core this machine (or this thread's affinity mask)
    /// does not have.
    NoSuchCore {
        /// The core asked for.
        core: usize,
        /// The cores available.
        available: Vec<usize>,
        /// The value of `PINION_CORES` when the list came from it (`None`: from the options),
        /// so that the operator who set it is told which setting to mend.
        env: Option<String>,
    },
    /// `PINION_CORES` or `PINION_PIN` could not be parsed.
    InvalidEnv {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// A shard could not be pinned to its core (a seccomp or cpuset policy refused it) and
    /// [`NodeOptions::require_pin`](crate::NodeOptions::require_pin) asks for every shard
    /// pinned: the first such shard and its core. The node was stopped.
    PinFailed {
        /// The shard's index.
        shard: usize,
        /// The core it was to be pinned to.
        core: usize,
    },
    /// The options are invalid (no cores, a core listed twice, more than 4096 shards...).
    InvalidOptions(String),
    /// A live node in this OS process already has the name.
    NameTaken(String),
    /// The OS refused a thread or a poller.
    Io(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NoSuchCore { core, available, env } => {
                write!(
                    f,
                    "node start failed: core {core} is not one this process may run on (its CPU affinity allows {available:?})"
                )?;
                match env {
                    Some(value) => write!(f, "; it is listed in PINION_CORES={value:?}"),
                    None => Ok(()),
                }
            }
            StartError::InvalidEnv { var: "PINION_CORES", value } => write!(
                f,
                "node start failed: cannot parse PINION_CORES={value:?} (expected `all` or a CPU list such as `0,2` or `0-3,8-11`; no strides)"
            ),
            StartError::InvalidEnv { var: "PINION_PIN", value } => write!(
                f,
                "node start failed: cannot parse PINION_PIN={value:?} (expected 1, true, yes, on, require, or 0, false, no, off)"
            ),
            StartError::InvalidEnv { var, value } => {
                write!(f, "node start failed: cannot parse {var}={value:?}")
            }
            StartError::PinFailed { shard, core } => write!(
                f,
                "node start failed: shard {shard} could not be pinned to core {core} (the OS refused: a seccomp or cpuset policy?), and pinning is required (NodeOptions::require_pin, PINION_PIN=require)"
            ),
            StartError::InvalidOptions(m) => write!(f, "node start failed: {m}"),
            StartError::NameTaken(n) => write!(f, "node start failed: a live node is already named {n:?}"),
            StartError::Io(e) => write!(f, "node start failed: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for StartError {
    fn from(e: std::io::Error) -> Self {
        StartError::Io(e)
    }
}

/// Why a web server could not start.
#[derive(Debug)]
pub enum WebServerError {
    /// The address could not be resolved or bound (in use, not local, no permission).
    Bind(std::io::Error),
    /// The options name a shard the node does not have.
    NoSuchShard(ShardId),
    /// The options list no shard.
    NoShards,
    /// The options list a shard twice.
    DuplicateShard(ShardId),
    /// A limit the server could not serve with (a zero bound or timeout, `max_headers` above
    /// [`MAX_HEADERS_LIMIT`](crate::http::MAX_HEADERS_LIMIT)): what is wrong with it.
    InvalidLimits(String),
    /// The node is stopping, or a shard did not take its listener within 10 s (`start` from
    /// a thread that is no shard's waits for each; a shard busy that long is blocked by one
    /// of its processes).
    Stopped,
}

impl fmt::Display for WebServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebServerError::Bind(e) => write!(f, "web server: cannot listen: {e}"),
            WebServerError::NoSuchShard(s) => write!(f, "web server: the node has no shard {}", s.0),
            WebServerError::NoShards => f.write_str("web server: no shard chosen to listen on"),
            WebServerError::DuplicateShard(s) => write!(f, "web server: shard {} is listed twice", s.0),
            WebServerError::InvalidLimits(why) => write!(f, "web server: invalid limits: {why}"),
            WebServerError::Stopped => {
                f.write_str("web server: the node is stopping, or a shard did not take its listener within 10 s")
            }
        }
    }
}

impl std::error::Error for WebServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WebServerError::Bind(e) => Some(e),
            _ => None,
        }
    }
}
