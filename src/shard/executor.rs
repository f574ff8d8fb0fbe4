//! The single-threaded executor of one shard: polls ready processes from the run queue, with
//! panics caught per process, and builds the allocation-free `Waker`s they see.
#![allow(unsafe_code, reason = "the allocation-free wakers of the processes")]

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll, RawWaker, RawWakerVTable, Waker};

use crate::process::{ExitReason, NodeId, ProcessFuture, ShardId, link};
use crate::shard::Shard;

#[cfg(not(target_pointer_width = "64"))]
compile_error!("pinion packs (node, shard, slot) into a pointer-sized waker: it needs a 64-bit target");

/// Polls up to `max` ready processes. Returns how many were polled.
pub(crate) fn run_ready(shard: &Rc<Shard>, max: usize) -> usize {
    shard.queued.set(0);
    let mut polled = 0;
    while polled < max {
        let Some(slot) = shard.run_queue.borrow_mut().pop_front() else { break };
        polled += 1;
        poll_process(shard, slot);
    }
    if !shard.unarmed.borrow().is_empty() {
        crate::process::arm_timeouts(shard);
    }
    if polled > 0 {
        // The processes took their time: what the turn does after them (the answers' writes,
        // a connection's last activity, the next request's stamp) reads the clock again.
        shard.clock_stale();
    }
    polled
}

pub(super) fn poll_process(shard: &Rc<Shard>, slot: u32) {
    let (mut future, generation, gate) = {
        let mut table = shard.table.borrow_mut();
        let Some(entry) = table.get_mut(slot as usize) else { return };
        entry.scheduled = false;
        let Some(future) = entry.future.take() else { return };
        let gate = entry.pool.as_ref().map(|m| &raw const m.pool.gate);
        (future, entry.generation, gate)
    };
    let waker = waker(shard.node.id, shard.id, slot);
    let mut cx = TaskContext::from_waker(&waker);
    shard.set_running(Some((slot, generation)));
    let outcome = catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)));
    shard.set_running(None);
    shard.release_finished(slot, generation);
    let released = shard.released.replace(0);
    if let Some(gate) = gate {
        // SAFETY: the entry holds an `Arc` of the pool until `link::process_exited` removes it,
        // which happens below (after this), never during the poll: the pointer is live here.
        // Worker slots were given back first (`release_finished`), then the gate's: the order
        // the pool's admission relies on (`pool::gate`).
        unsafe { &*gate }.release(released);
    }
    match outcome {
        Ok(Poll::Pending) => {
            // Put the future back, unless the process killed itself meanwhile (one table access).
            let killed = match shard.table.borrow_mut().get_mut(slot as usize) {
                Some(entry) if !entry.killed => {
                    entry.future = Some(future);
                    None
                }
                _ => Some(future),
            };
            if let Some(future) = killed {
                drop_future(future);
                contain("ending a process", || link::process_exited(shard, slot, ExitReason::Kill));
            }
        }
        Ok(Poll::Ready(reason)) => {
            drop_future(future);
            contain("ending a process", || link::process_exited(shard, slot, reason));
        }
        Err(payload) => {
            let text = panic_text(&*payload);
            drop_future(future);
            contain("ending a process", || link::process_exited(shard, slot, ExitReason::Panic(text)));
        }
    }
}

/// Runs runtime bookkeeping that may run user code — a message's, token's or factory's `Drop`,
/// a destructor of actor state — with any panic contained and logged: it ends no shard.
pub(crate) fn contain(what: &str, f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        crate::log_limit::log_limited!(Error, target: "pinion", "a panic while {what} was contained: {}", panic_text(&*payload));
    }
}

/// Drops a process future; a panic in a destructor is contained (and logged).
pub(crate) fn drop_future(future: ProcessFuture) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(future))) {
        crate::log_limit::log_limited!(Error, target: "pinion", "a process destructor panicked: {}", panic_text(&*payload));
    }
}

/// The message of a panic payload.
pub(crate) fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

// ---- wakers: (node, shard, slot) packed into the data pointer; nothing to allocate or free --

const SLOT_BITS: u32 = 32;
const SHARD_BITS: u32 = 16;

fn pack(node: NodeId, shard: ShardId, slot: u32) -> usize {
    ((node.0 as usize) << (SLOT_BITS + SHARD_BITS)) | (usize::from(shard.0) << SLOT_BITS) | slot as usize
}

fn unpack(data: usize) -> (NodeId, ShardId, u32) {
    let node = NodeId((data >> (SLOT_BITS + SHARD_BITS)) as u32);
    let shard = ShardId((data >> SLOT_BITS) as u16);
    (node, shard, data as u32)
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_raw, wake_raw, wake_raw, drop_raw);

fn raw(data: usize) -> RawWaker {
    RawWaker::new(ptr::without_provenance(data), &VTABLE)
}

fn clone_raw(data: *const ()) -> RawWaker {
    raw(data.addr())
}

fn wake_raw(data: *const ()) {
    let (node, shard, slot) = unpack(data.addr());
    crate::node::route::wake(node, shard, slot);
}

fn drop_raw(_: *const ()) {}

/// The waker of the process in `slot`: waking it schedules the process (directly on its own
/// shard, through the inbox from any other thread).
pub(crate) fn waker(node: NodeId, shard: ShardId, slot: u32) -> Waker {
    // SAFETY: the vtable functions never dereference the data pointer: it is an integer
    // (node, shard, slot) carried in a pointer, valid to copy and to drop at will, and the
    // functions are thread-safe (they route through the node's lock-free inbox).
    unsafe { Waker::from_raw(raw(pack(node, shard, slot))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waker_data_roundtrips_node_shard_slot() {
        let data = pack(NodeId(65_000), ShardId(4095), u32::MAX - 1);
        assert_eq!(unpack(data), (NodeId(65_000), ShardId(4095), u32::MAX - 1));
    }
}
