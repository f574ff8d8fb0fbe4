//! Links and monitors, and the end of a process: close its slot, free its name, answer what
//! waited on it, and signal its linked and monitoring processes.

use std::rc::Rc;

use crate::error::{CallError, SpawnError};
use crate::node::route;
use crate::process::envelope::{Kind, Signal, Via};
use crate::process::mailbox::Reservation;
use crate::process::{ExitReason, MonitorRef, Pid, ProcessEntry};
use crate::shard::{Shard, executor};

fn pid_of(shard: &Shard, slot: u32, generation: u32) -> Pid {
    Pid { node: shard.node.id, shard: shard.id, slot, generation }
}

/// The process in `slot` ended with `reason` (its future is already gone).
pub(crate) fn process_exited(shard: &Rc<Shard>, slot: u32, reason: ExitReason) {
    let Some(mut entry) = shard.table.borrow_mut().try_remove(slot as usize) else { return };
    let pid = pid_of(shard, slot, entry.generation);
    let (reusable, held) = shard.remote().table.get(slot).map_or((true, 0), |r| r.close_counting(entry.generation));
    if let Some(r) = shard.remote().table.get(slot).filter(|r| !r.pool().is_null()) {
        crate::pool::dispatch::manager_exited(shard, r, pid);
    }
    if !reusable {
        // Hold the slot forever with a tombstone (a vacant key is reused first, so it lands
        // in this very slot).
        let mut tombstone = ProcessEntry::new(Reservation::RETIRED, 0, false);
        tombstone.retired = true;
        tombstone.initializing = false;
        let key = shard.table.borrow_mut().insert(tombstone);
        debug_assert_eq!(key, slot as usize);
        shard.retired.set(shard.retired.get() + 1);
    }
    if let Some(name) = &entry.name {
        shard.node.names.unregister(name, pid);
    }
    match &reason {
        ExitReason::Panic(text) => {
            crate::log_limit::log_limited!(Error, target: "pinion", "{} {}: process panicked: {}", shard.node.name, pid, text)
        }
        ExitReason::Normal | ExitReason::Shutdown => {
            log::trace!(target: "pinion", "{} {}: process ended: {}", shard.node.name, pid, reason)
        }
        _ => log::debug!(target: "pinion", "{} {}: process ended: {}", shard.node.name, pid, reason),
    }
    let relations = entry.relations.map(|r| *r).unwrap_or_default();
    if relations.aliased
        && let Some(r) = shard.remote().table.get(slot)
    {
        r.clear_aliases();
    }
    {
        let mut timers = shard.timers.borrow_mut();
        for call in &entry.calls {
            if let Some(t) = call.timer {
                timers.cancel(t);
            }
        }
    }
    if let Some(waiter) = entry.init_waiter {
        waiter.respond(Err(SpawnError::InitFailed(reason.clone())));
    }
    // A child tied to this process that also linked to it gets one signal, by the tie (its
    // own link is the same link, and a tie is never undone by the child: a review found a
    // trapping child that linked to its supervisor got the supervisor's end twice).
    let tied = &relations.tied;
    let linked = relations.links.iter().filter(|p| !tied.contains(p)).map(|&p| (p, Via::Link));
    for (to, via) in linked.chain(tied.iter().map(|&p| (p, Via::Tie))) {
        let signal = Signal::Exit { from: pid, reason: reason.clone(), via };
        route::signal(&shard.node, Some(shard), to, pid, Kind::Signal(signal));
    }
    for (reference, watcher) in relations.monitors {
        let signal = Signal::Down { reference, pid, reason: reason.clone() };
        route::signal(&shard.node, Some(shard), watcher, pid, Kind::Signal(signal));
    }
    // Undo what this process watched, so long-lived targets do not keep dead watchers.
    for (target, monitor) in relations.watching {
        let kind = match monitor {
            Some(reference) => Kind::Demonitor { reference },
            None => Kind::Unlink { from: pid },
        };
        route::signal(&shard.node, Some(shard), target, pid, kind);
    }
    // Last, the messages it never handled. A pool worker's go back to its pool (handed to
    // other workers or answered there). Otherwise calls are answered; a panicking `Drop` of
    // one message is contained and does not stop the others.
    let mailbox = entry.mailbox;
    if let Some(member) = entry.pool.take() {
        let leftovers = mailbox.urgent.into_iter().chain(mailbox.main).collect();
        // What it took against what it finished (the close left that count as it was): the
        // messages it held in hand when it ended (see `ProcessEntry::taken`).
        let finished = shard.remote().table.get(slot).map_or(0, |r| r.processed() as u32);
        let in_hand = entry.taken.wrapping_sub(finished);
        crate::pool::dispatch::worker_exited(shard, member, pid, &reason, held, in_hand, leftovers);
        return;
    }
    for mail in mailbox.urgent.into_iter().chain(mailbox.main) {
        shard.stats.dead_letters.set(shard.stats.dead_letters.get() + 1);
        executor::contain("dropping a dead letter", move || {
            if let Some(reply) = mail.reply {
                reply.respond(Err(CallError::NoSuchProcess));
            }
        });
    }
}

/// `watcher` watches `target` (a link when `monitor` is `None`): remembered, so it is undone
/// when the watcher ends.
pub(crate) fn watch(shard: &Shard, watcher: Pid, target: Pid, monitor: Option<MonitorRef>) {
    if let Some(e) =
        shard.table.borrow_mut().get_mut(watcher.slot as usize).filter(|e| e.generation == watcher.generation)
    {
        let watching = &mut e.relations_mut().watching;
        if !watching.contains(&(target, monitor)) {
            watching.push((target, monitor));
        }
    }
}

/// `watcher` no longer watches `target` (unlinked, demonitored, or the signal arrived); true
/// if it did (a `Down` whose monitor is gone is dropped on that answer).
pub(crate) fn unwatch(shard: &Shard, watcher: Pid, target: Pid, monitor: Option<MonitorRef>) -> bool {
    let mut table = shard.table.borrow_mut();
    let Some(r) = table
        .get_mut(watcher.slot as usize)
        .filter(|e| e.generation == watcher.generation)
        .and_then(|e| e.relations.as_deref_mut())
    else {
        return false;
    };
    let before = r.watching.len();
    r.watching.retain(|w| *w != (target, monitor));
    r.watching.len() != before
}

/// `from` links (or is tied, `via`) to the process in `slot`; if it is gone, `from` gets
/// `NoProcess` at once.
pub(crate) fn add_link(shard: &Rc<Shard>, slot: u32, generation: u32, from: Pid, via: Via) {
    let alive = {
        let mut table = shard.table.borrow_mut();
        match table.get_mut(slot as usize).filter(|e| e.generation == generation) {
            Some(e) => {
                let links = e.relations_mut().to(via);
                if !links.contains(&from) {
                    links.push(from);
                }
                true
            }
            None => false,
        }
    };
    if !alive {
        let pid = pid_of(shard, slot, generation);
        let signal = Signal::Exit { from: pid, reason: ExitReason::NoProcess, via };
        route::signal(&shard.node, Some(shard), from, pid, Kind::Signal(signal));
    }
}

pub(crate) fn remove_link(shard: &Rc<Shard>, slot: u32, generation: u32, from: Pid, via: Via) {
    if let Some(e) = shard.table.borrow_mut().get_mut(slot as usize).filter(|e| e.generation == generation)
        && let Some(r) = e.relations.as_deref_mut()
    {
        r.to(via).retain(|p| *p != from);
    }
}

/// `from` monitors the process in `slot`; if it is gone, `from` gets `Down(NoProcess)` at once.
pub(crate) fn add_monitor(shard: &Rc<Shard>, slot: u32, generation: u32, from: Pid, reference: MonitorRef) {
    let alive = {
        let mut table = shard.table.borrow_mut();
        match table.get_mut(slot as usize).filter(|e| e.generation == generation) {
            Some(e) => {
                e.relations_mut().monitors.push((reference, from));
                true
            }
            None => false,
        }
    };
    if !alive {
        let pid = pid_of(shard, slot, generation);
        let signal = Signal::Down { reference, pid, reason: ExitReason::NoProcess };
        route::signal(&shard.node, Some(shard), from, pid, Kind::Signal(signal));
    }
}

pub(crate) fn remove_monitor(shard: &Rc<Shard>, slot: u32, generation: u32, reference: MonitorRef) {
    if let Some(e) = shard.table.borrow_mut().get_mut(slot as usize).filter(|e| e.generation == generation)
        && let Some(r) = e.relations.as_deref_mut()
    {
        r.monitors.retain(|(m, _)| *m != reference);
    }
}
