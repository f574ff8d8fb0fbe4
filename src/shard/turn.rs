//! A shard's thread: the turn loop (deliver the inbox, fire due timers, poll the sockets, run
//! the ready processes, flush; processes that sockets gave much work run between events
//! too), the spin before parking, and the shutdown that follows.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{CurrentGuard, POLLS_PER_TURN, Shard, TimerAction, bump, executor, reactor};
use crate::error::CallError;
use crate::node::NodeShared;
use crate::process::ShardId;

/// Before parking, watch the inbox for up to `NodeOptions::spin`: a wake-up of a sleeping
/// thread costs a syscall for the sender and tens of microseconds of latency (far more on a
/// virtual machine, where an idle vCPU is descheduled), while a short spin catches the next
/// message of a busy exchange. True if work arrived.
fn spin(shard: &Rc<Shard>, reactor: &mut reactor::Reactor) -> bool {
    let budget = shard.node.spin;
    if budget.is_zero() {
        return false;
    }
    let inbox = &shard.remote().inbox;
    let start = Instant::now();
    let due = shard.timers.borrow().next_deadline();
    let io = shard.io_len() > 0;
    loop {
        for _ in 0..64 {
            if inbox.has_items() {
                return true;
            }
            std::hint::spin_loop();
        }
        // Sockets too: a request arriving during the spin is served at once.
        shard.clock_fresh.set(false);
        if io && reactor.wait(Some(Duration::ZERO), |t, r, b| serve_io(shard, t, r, b)) {
            return true;
        }
        let now = Instant::now();
        if due.is_some_and(|d| now >= d) {
            return true;
        }
        if now - start >= budget {
            return false;
        }
    }
}

/// A shard with sockets spins only while other shards talk to it: a pure web shard blocks in
/// `epoll_wait` at once, like every other server (spinning there would only burn the CPU its
/// clients' requests are measured against); a shard that just got cross-shard mail spins to
/// catch the next message without a wake-up. `now` is the turn's clock (a heuristic needs no
/// fresh reading).
fn worth_spinning(shard: &Shard, last_inbox: Instant, now: Instant) -> bool {
    const RECENT: Duration = Duration::from_millis(1);
    shard.io_len() == 0 || now.saturating_duration_since(last_inbox) < RECENT
}

/// Messages queued to this shard's processes (since they last ran) from which an I/O
/// event's work is run at once (see `serve_io`): a few dozen requests' buffers fit the L1 data
/// cache; 32 measured 13 misses per pipelined request, 16 measured 10.
const RUN_AFTER: usize = 16;

/// Envelopes a turn takes from each lane of the shard's inbox at most: the rest waits for the
/// next turn, after the ready processes ran (review 72: a thread flooding `resize` kept an
/// unbounded drain going, and a process of the shard made no progress for minutes). Far above
/// what a lane brings in a turn under load (a few hundred requests and answers).
const INBOX_PER_LANE: usize = 1024;

/// A wait that returned at most this many events is a light load: each event's work is run
/// and answered before the next event is read.
const FEW_EVENTS: usize = 4;

/// Serves one I/O event of a wait's `batch`; when more events follow it, runs the ready
/// processes and flushes what they answered before the next, if this event (or the events
/// since processes last ran) queued work to them and either the wait brought few events or
/// `RUN_AFTER` messages are queued. (After the last event the turn runs them anyway.)
///
/// Few events (a light load): the first connection's answer does not wait for the others'
/// requests to be read and dispatched (open loop, 12 rounds: p90 0.973× at 50 k requests/s and
/// 0.886× at 100 k of leaving the run to the end of the turn, the CPU the same; PERF.md). Many
/// (a saturated keep-alive load, one request per event): a pool worker is polled once for the
/// lot, not once per request (running after every event cost 3 % of keep-alive throughput). `RUN_AFTER`
/// queued: what connections dispatched to processes on this shard (pipelined requests to a
/// pool's workers) is handled and written while it is still in the cache: left to the end of
/// the turn, the requests of every ready connection were in flight at once (256 with 16
/// connections 16 deep) and their buffers no longer fitted the L1 data cache (21 misses per
/// request in callgrind's cache simulation, against 10 run this way).
fn serve_io(shard: &Rc<Shard>, token: mio::Token, ready: super::Readiness, batch: reactor::Batch) {
    #[cfg(feature = "web")]
    shard.light.set(batch.len <= FEW_EVENTS);
    shard.io_event(token, ready);
    #[cfg(feature = "web")]
    shard.light.set(false);
    let left = shard.between_polls.get();
    let queued = shard.queued.get();
    if batch.after > 0 && left > 0 && queued > 0 && (batch.len <= FEW_EVENTS || queued >= RUN_AFTER) {
        // Each process ready now is polled once (a process busy on its own, always ready,
        // must not make every event pay a full run), and the turn's share is bounded.
        let ready = shard.run_queue.borrow().len().min(left);
        shard.between_polls.set(left - executor::run_ready(shard, ready));
        shard.io_flush();
        // (`run_ready` marked the clock stale: the events after this one read it again, and
        // deadlines (408, 504) are measured from when their event is served, not from before
        // the run.)
    }
}

/// Tells the node that this shard's processes have all ended in a stop when its thread ends
/// or unwinds, however (from its first line: a thread that fails to set up must not keep the
/// other shards waiting for it).
struct ProcessesEnded(Arc<NodeShared>, usize);

impl Drop for ProcessesEnded {
    fn drop(&mut self) {
        self.0.shard_gone(self.1);
    }
}

/// The shard thread: set up, loop until stopped, tear down.
pub(crate) fn run(node: Arc<NodeShared>, id: ShardId, mut reactor: reactor::Reactor) {
    let _ended = ProcessesEnded(node.clone(), id.index());
    let registry = match reactor.registry() {
        Ok(r) => r,
        Err(e) => panic!("shard {}: cannot clone the poll registry: {e}", id.0),
    };
    let shard = Shard::new(id, node, registry);
    let current = CurrentGuard::set(&shard);
    let mut fired = Vec::new();
    // When the inbox last delivered something (see `worth_spinning`).
    let mut last_inbox = Instant::now();
    let mut just_polled = false;
    // Set once every shard's processes have ended: the turn after it delivers what they sent.
    let mut drained = false;
    // Set once every shard has delivered that: the turn after it is this shard's last.
    let mut last_turn = false;
    loop {
        let inbox = &shard.remote().inbox;
        // While stopping, everything: what is left after the last turns would be dropped.
        let budget = if shard.stopping.get() { usize::MAX } else { INBOX_PER_LANE };
        if inbox.drain_up_to(budget, |env| executor::contain("delivering an envelope", || shard.deliver(env))) > 0 {
            last_inbox = Instant::now();
        }
        bump(&shard.stats.turns);
        // The events served right after a wait read the clock (`Shard::now`): this turn's
        // timers are judged by that reading (taken microseconds ago) instead of a second one.
        let now = if just_polled && shard.clock_fresh.get() { shard.clock.get() } else { Instant::now() };
        shard.clock.set(now);
        shard.clock_fresh.set(true);
        shard.between_polls.set(POLLS_PER_TURN);
        shard.fire_due(now, &mut fired);
        // Look at the sockets each turn, unless this turn began with a wait that just did.
        if shard.io_len() > 0 && !std::mem::take(&mut just_polled) {
            reactor.wait(Some(Duration::ZERO), |t, r, b| serve_io(&shard, t, r, b));
        }
        executor::run_ready(&shard, POLLS_PER_TURN);
        shard.io_flush();
        if shard.stopping.get() && shard.table.borrow().len() == shard.retired.get() {
            // Its processes are gone; its connections are served on until every shard's are
            // (an SSE trial: a process on another shard finishing its streams in `terminate`
            // reached a half of them, the rest closed with a shard that had ended first).
            shard.node.processes_ended(id.index());
            if shard.node.all_processes_ended() {
                // What another shard's processes sent before they ended (a stream's end) may
                // have reached the inbox after this turn drained it: one more turn delivers
                // and writes it (the fresh-clone CI: 3 of 20 streams lost their end).
                if !std::mem::replace(&mut drained, true) {
                    continue;
                }
                // Delivering it may have answered for another shard's connections (a request
                // forwarded to a worker that ended meanwhile: its 500): once every shard has
                // delivered its part, one more turn takes in those answers (a review: a
                // shard that had ended its own turns closed 32 connections of 32 before the
                // 500s reached it).
                shard.node.drained(id.index());
                if shard.node.all_drained() {
                    if !std::mem::replace(&mut last_turn, true) {
                        continue;
                    }
                    // Answers still going out to clients that take them slowly are written
                    // on (their connections say `Connection: close`, and take no new
                    // request) until the stop's deadline: closed at once, an 8 MiB body
                    // finished in `terminate` reached a client reading 200 ms later cut at
                    // 3.9 MiB.
                    if !(shard.io_writing() && shard.stop_deadline.get().is_some_and(|d| Instant::now() < d)) {
                        break;
                    }
                }
            }
        }
        if !shard.run_queue.borrow().is_empty() || inbox.has_items() || shard.io_pending() {
            continue;
        }
        if worth_spinning(&shard, last_inbox, now) && spin(&shard, &mut reactor) {
            just_polled = true;
            continue;
        }
        let mut due = shard.timers.borrow().next_deadline();
        if last_turn {
            // Writing on after the processes ended: no later than the stop's deadline.
            due = match (due, shard.stop_deadline.get()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let timeout = due.map(|d| d.saturating_duration_since(Instant::now()));
        if inbox.park() {
            shard.clock_fresh.set(false);
            reactor.wait(timeout, |t, r, b| serve_io(&shard, t, r, b));
            just_polled = true;
            inbox.unpark();
        }
    }
    // Listeners and connections close with their sockets.
    let sources = std::mem::take(&mut *shard.io.borrow_mut());
    drop(sources);
    drop(current);
    // Whatever still arrives is dropped (by us, or by its producer once it sees `closed`);
    // dropped responders answer their waiters.
    shard.remote().closed.store(true, std::sync::atomic::Ordering::SeqCst);
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    shard.remote().inbox.drain(|env| executor::contain("dropping an undelivered envelope", || drop(env)));
    // Timers still armed: external callers awaiting a timeout learn `Stopped` now (their
    // future would otherwise wait for a timer that no longer runs); the rest is dropped.
    let far = Instant::now() + std::time::Duration::from_secs(1000 * 365 * 86_400);
    shard.timers.borrow_mut().advance(far, &mut fired);
    for action in fired.drain(..) {
        executor::contain("dropping a timer", || {
            if let TimerAction::External(slot) = action {
                slot.complete(Err(CallError::Stopped));
            }
        });
    }
}
