//! Routing: from a [`Target`] to a process on this node — resolve the name or alias, check the
//! pid's generation and reserve mailbox room (lock-free, on any thread), then deliver directly
//! when the receiver is on the current shard, or through the receiver shard's inbox.
//!
//! Lanes: a shard sends through the lane of its own index, so messages from one shard to
//! another stay in order; threads outside the runtime share the last lane.

use std::any::Any;
use std::rc::Rc;
use std::time::Instant;

use crate::error::{SendError, SpawnError};
use crate::node::{NodeShared, registry};
use crate::process::envelope::{self, CallResult, Envelope, Kind, Mail, Responder, Signal, Tick, Via, into_message};
use crate::process::mailbox::Reserve;
use crate::process::{ExitReason, NodeId, Pid, Priority, ShardId, Target};
use crate::shard::{Shard, SpawnRequest, with_current};

/// The inbox lane a sender uses.
pub(crate) fn lane(node: &NodeShared, here: Option<&Rc<Shard>>) -> usize {
    here.map_or(node.shards.len(), |s| s.id.index())
}

pub(crate) fn refuse<M, T>(e: SendError<M>, reply: Option<Responder<CallResult>>) -> Result<T, SendError<M>> {
    if let Some(r) = reply {
        r.defuse();
    }
    Err(e)
}

/// The pid a target names right now, if any (used by `monitor`).
pub(crate) fn resolve_pid(node: &NodeShared, to: Target<'_>) -> Option<Pid> {
    match to {
        Target::Pid(p) => Some(p),
        Target::Alias(a) => Some(a.owner),
        Target::Name(n) => node.names.resolve(n),
        Target::ProcessId(p) if p.node == node.name => node.names.resolve(&p.name),
        Target::ProcessId(_) => None,
    }
}

/// Sends a user message (with `reply` set for a call). On error the message comes back and
/// `reply` is dropped silently (the caller reports the error itself).
///
/// Inlined into the sender: a pid on the current shard with room in its mailbox costs a
/// reservation and a push; everything else (a full or stale mailbox, names, aliases, other
/// shards, threads outside the runtime) is out of line.
#[inline(always)]
pub(crate) fn send<M: Any + Send>(
    node: &NodeShared,
    here: Option<&Rc<Shard>>,
    from: Pid,
    to: Target<'_>,
    msg: M,
    priority: Priority,
    reply: Option<Responder<CallResult>>,
) -> Result<ShardId, SendError<M>> {
    if let (Target::Pid(pid), Some(shard)) = (to, here) {
        if shard.id == pid.shard && pid.node == shard.node_id {
            if let Some(Ok(())) = shard.remote().table.get(pid.slot).map(|r| r.try_reserve(pid.generation)) {
                match priority {
                    Priority::Main => shard.push_main(pid.slot, pid.generation, from, msg, reply.map(envelope::boxed)),
                    Priority::Urgent => {
                        let mail = Mail::new(from, into_message(msg), reply);
                        shard.deliver_mail(pid.slot, pid.generation, mail, priority, None);
                    }
                }
                return Ok(pid.shard);
            }
            return send_local_refused(shard, from, pid, msg, priority, reply);
        }
        return send_from_shard(shard, from, pid, msg, priority, reply);
    }
    send_general(node, here, from, to, msg, priority, reply)
}

/// A pid on the current shard whose reservation failed: if that is the running process with
/// finished messages not yet released, release them and try once more (so a process sending
/// to itself sees exactly its bound); otherwise answer full, stopped or no such process.
#[cold]
#[inline(never)]
fn send_local_refused<M: Any + Send>(
    shard: &Rc<Shard>,
    from: Pid,
    pid: Pid,
    msg: M,
    priority: Priority,
    reply: Option<Responder<CallResult>>,
) -> Result<ShardId, SendError<M>> {
    let node = &shard.node;
    let reservation = shard.remote().table.get(pid.slot);
    let mut reserved = reservation.map(|r| r.try_reserve(pid.generation));
    if reserved == Some(Err(Reserve::Full)) && shard.release_finished_early(pid.slot, pid.generation) {
        reserved = reservation.map(|r| r.try_reserve(pid.generation));
    }
    match reserved {
        Some(Ok(())) => {
            let mail = Mail::new(from, into_message(msg), reply);
            shard.deliver_mail(pid.slot, pid.generation, mail, priority, None);
            Ok(pid.shard)
        }
        Some(Err(Reserve::Full)) => match reservation {
            Some(r) => crate::pool::dispatch::send_full(node, Some(shard), r, pid, from, msg, priority, reply),
            None => refuse(SendError::MailboxFull(msg), reply),
        },
        _ if node.is_stopping() => refuse(SendError::Stopped(msg), reply),
        _ => refuse(SendError::NoSuchProcess(msg), reply),
    }
}

/// A pid on another shard or node, sent from a shard. The cold paths of the same-shard send
/// take the shard and the pid by value (in registers) and nothing else: a `Target` handed to
/// an out-of-line call was built on the stack on every send and its fields read back, and
/// the node's address was loaded for calls that rarely happen.
#[inline(never)]
fn send_from_shard<M: Any + Send>(
    shard: &Rc<Shard>,
    from: Pid,
    pid: Pid,
    msg: M,
    priority: Priority,
    reply: Option<Responder<CallResult>>,
) -> Result<ShardId, SendError<M>> {
    send_resolved(&shard.node, Some(shard), from, pid, None, msg, priority, reply)
}

/// Names, aliases, other shards, threads outside the runtime.
#[inline(never)]
fn send_general<M: Any + Send>(
    node: &NodeShared,
    here: Option<&Rc<Shard>>,
    from: Pid,
    to: Target<'_>,
    msg: M,
    priority: Priority,
    reply: Option<Responder<CallResult>>,
) -> Result<ShardId, SendError<M>> {
    let (pid, alias) = match to {
        Target::Pid(p) => (p, None),
        Target::Alias(a) => (a.owner, Some(a.id)),
        Target::Name(n) => match node.names.resolve(n) {
            Some(p) => (p, None),
            None => return refuse(SendError::UnknownName(msg), reply),
        },
        Target::ProcessId(p) if p.node == node.name => match node.names.resolve(&p.name) {
            Some(p) => (p, None),
            None => return refuse(SendError::UnknownName(msg), reply),
        },
        Target::ProcessId(_) => return refuse(SendError::NodeDown(msg), reply),
    };
    send_resolved(node, here, from, pid, alias, msg, priority, reply)
}

/// A pid (reached through `alias` if set) that is not on the current shard, or is refused.
/// In line in its two callers, so neither pays a call more.
#[inline]
#[allow(clippy::too_many_arguments, reason = "the send's own arguments, passed on in registers")]
fn send_resolved<M: Any + Send>(
    node: &NodeShared,
    here: Option<&Rc<Shard>>,
    from: Pid,
    pid: Pid,
    alias: Option<u64>,
    msg: M,
    priority: Priority,
    reply: Option<Responder<CallResult>>,
) -> Result<ShardId, SendError<M>> {
    let gone = |msg| match () {
        () if node.is_stopping() => SendError::Stopped(msg),
        () if alias.is_some() => SendError::UnknownAlias(msg),
        () => SendError::NoSuchProcess(msg),
    };
    if pid.node != node.id {
        return refuse(SendError::NodeDown(msg), reply);
    }
    let Some(reservation) = node.shards.get(pid.shard.index()).and_then(|r| r.table.get(pid.slot)) else {
        return refuse(gone(msg), reply);
    };
    let local = here.filter(|s| s.id == pid.shard);
    // The alias list is shared: a deletion is seen at once from every shard and thread.
    if alias.is_some_and(|id| !reservation.has_alias(pid.generation, id)) {
        return refuse(gone(msg), reply);
    }
    match reservation.try_reserve(pid.generation) {
        Ok(()) => {}
        Err(Reserve::Full) if alias.is_none() => {
            return crate::pool::dispatch::send_full(node, here, reservation, pid, from, msg, priority, reply);
        }
        Err(Reserve::Full) => return refuse(SendError::MailboxFull(msg), reply),
        Err(Reserve::Stale) => return refuse(gone(msg), reply),
    }
    let mail = Mail::new(from, into_message(msg), reply);
    match local {
        Some(shard) => shard.deliver_mail(pid.slot, pid.generation, mail, priority, alias),
        None => {
            let env =
                Envelope { slot: pid.slot, generation: pid.generation, kind: Kind::Mail { mail, priority, alias } };
            node.push(pid.shard, lane(node, here), env);
        }
    }
    Ok(pid.shard)
}

/// Sends runtime traffic (signals, link and monitor requests) to `to`, outside its bound.
/// Requests to a process that cannot exist are answered to `from` as if it had ended.
pub(crate) fn signal(node: &NodeShared, here: Option<&Rc<Shard>>, to: Pid, from: Pid, kind: Kind) {
    if to.node != node.id || to.shard.index() >= node.shards.len() {
        let reason = if to.node != node.id { ExitReason::custom("noconnection") } else { ExitReason::NoProcess };
        let bounce = match kind {
            Kind::Link { .. } => Some(Signal::Exit { from: to, reason, via: Via::Link }),
            Kind::Monitor { reference, .. } => Some(Signal::Down { reference, pid: to, reason }),
            _ => None,
        };
        if let Some(b) = bounce.filter(|_| from.node == node.id && !from.is_external()) {
            signal(node, here, from, to, Kind::Signal(b));
        }
        return;
    }
    let env = Envelope { slot: to.slot, generation: to.generation, kind };
    match here.filter(|s| s.id == to.shard) {
        Some(shard) => shard.deliver(env),
        None => node.push(to.shard, lane(node, here), env),
    }
}

/// Asks `shard` to start a process. Errors that are known here are returned (and the
/// request's responder silenced); the rest reach the waiter through the responder.
pub(crate) fn spawn(
    node: &NodeShared,
    here: Option<&Rc<Shard>>,
    shard: ShardId,
    request: SpawnRequest,
) -> Result<(), SpawnError> {
    if shard.index() >= node.shards.len() {
        request.defuse();
        return Err(SpawnError::NoSuchShard { shard, shards: node.shards.len() });
    }
    if node.is_stopping() {
        request.defuse();
        return Err(SpawnError::Stopped);
    }
    match here.filter(|s| s.id == shard) {
        Some(s) => {
            s.spawn_local(request);
        }
        None => {
            let env = Envelope { slot: 0, generation: 0, kind: Kind::Spawn(request) };
            node.push(shard, lane(node, here), env);
        }
    }
    Ok(())
}

/// Delivers `env` to `shard` of node `node`, from any thread: directly when this thread runs
/// that shard, through its inbox (on this shard's lane, or the foreign lane) otherwise. Dropped
/// if the node is gone.
pub(crate) fn deliver_to(node: NodeId, shard: ShardId, env: Envelope) {
    with_current(|current| match current {
        Some(here) if here.node.id == node => {
            if here.id == shard {
                here.deliver(env);
            } else {
                here.node.push(shard, here.id.index(), env);
            }
        }
        _ => {
            if let Some(n) = registry::live_node(node).filter(|n| shard.index() < n.shards.len()) {
                let lane = n.shards.len();
                n.push(shard, lane, env);
            }
        }
    })
}

/// Runs `task` on `shard` of node `node` (through its inbox; dropped if the node is gone).
#[cfg_attr(not(feature = "web"), allow(dead_code, reason = "the web layer is its only user"))]
pub(crate) fn run_on(node: NodeId, shard: ShardId, task: crate::shard::ShardTask) {
    deliver_to(
        node,
        shard,
        Envelope { slot: 0, generation: 0, kind: Kind::Control(crate::shard::ControlRequest::Run(task)) },
    );
}

/// Delivers the answer of a call (or spawn) to the process waiting for it, from any thread.
///
/// Returns whether the caller can still take it: exactly, when it is a process on this shard
/// (delivered here and now); by its deadline otherwise (a reply past it is dropped here and
/// counted as late — the caller's timer fires at that deadline).
pub(crate) fn reply(to: Pid, reference: u64, deadline: Tick, result: CallResult) -> bool {
    with_current(|current| {
        let here = current.filter(|s| s.node.id == to.node);
        if let Some(s) = here.filter(|s| s.id == to.shard) {
            return s.deliver_reply(to.slot, to.generation, reference, result);
        }
        // (`NEVER` first: a call without a deadline reads no clock.)
        if deadline != Tick::NEVER && deadline.passed(current.map_or_else(Instant::now, |s| s.now())) {
            // Off the shard threads the token counts it (`ReplyToken::reply`).
            if let Some(s) = current {
                s.late_reply();
            }
            return false;
        }
        let env = Envelope { slot: to.slot, generation: to.generation, kind: Kind::Reply { reference, result } };
        match here {
            Some(s) => s.node.push(to.shard, s.id.index(), env),
            None => deliver_to(to.node, to.shard, env),
        }
        true
    })
}

/// Schedules the process in `slot` (a `Waker` fired), from any thread.
pub(crate) fn wake(node: NodeId, shard: ShardId, slot: u32) {
    deliver_to(node, shard, Envelope { slot, generation: 0, kind: Kind::Wake });
}
