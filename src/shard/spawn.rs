//! Starting a process on this shard: slot, name, factory (panics caught), reservation, first
//! schedule; and answering the spawner once `init` ran.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;

use crate::error::{RegisterError, SpawnError};
use crate::process::envelope::Responder;
use crate::process::table::MAX_PROCESSES_PER_SHARD;
use crate::process::{Actor, Context, ExitReason, Pid, ProcessEntry, ProcessFuture, ProcessOptions, SpawnResult};
use crate::shard::{Shard, executor};

/// A request to start a process, run on the target shard.
pub(crate) struct SpawnRequest {
    start: Box<dyn FnOnce(Context) -> ProcessFuture + Send>,
    options: ProcessOptions,
    name: Option<String>,
    reply: Responder<SpawnResult>,
    /// Set for a pool worker.
    member: Option<crate::pool::PoolMember>,
}

impl SpawnRequest {
    pub(crate) fn new<A: Actor, F>(
        factory: F,
        options: ProcessOptions,
        name: Option<String>,
        reply: Responder<SpawnResult>,
    ) -> Self
    where
        F: FnOnce() -> A + Send + 'static,
    {
        let start = Box::new(move |ctx: Context| -> ProcessFuture {
            let actor = factory();
            Box::pin(crate::process::run(actor, ctx))
        });
        SpawnRequest { start, options, name, reply, member: None }
    }

    /// The same request, for a worker of a pool.
    pub(crate) fn member(mut self, member: crate::pool::PoolMember) -> Self {
        self.member = Some(member);
        self
    }

    pub(crate) fn defuse(self) {
        self.reply.defuse();
    }

    pub(crate) fn fail(self, e: SpawnError) {
        self.reply.respond(Err(e));
    }
}

impl Shard {
    /// Starts a process here: slot, name, factory (panics caught), reservation, schedule.
    /// True when it started (its `init` is still to run).
    pub(crate) fn spawn_local(self: &Rc<Self>, request: SpawnRequest) -> bool {
        if self.stopping.get() {
            request.fail(SpawnError::Stopped);
            return false;
        }
        let capacity = match request.options.capacity() {
            Ok(c) => c,
            Err(e) => {
                request.fail(e);
                return false;
            }
        };
        let slot = self.table.borrow().vacant_key();
        let Some(reservation) = self.remote().table.ensure(slot).filter(|_| slot < MAX_PROCESSES_PER_SHARD) else {
            request.fail(SpawnError::InvalidOptions("this shard's process table is full"));
            return false;
        };
        let generation = reservation.generation();
        let pid = Pid { node: self.node.id, shard: self.id, slot: slot as u32, generation };
        // Open before the name makes the pid reachable: a send by name while the factory runs
        // must reserve against this incarnation's capacity, not a closed slot's (or the old one's).
        reservation.open(capacity);
        if let Some(name) = request.name.clone()
            && let Err(e) = self.node.names.register(&name, pid)
        {
            reservation.close(generation);
            request.fail(match e {
                RegisterError::InvalidName(n) => SpawnError::InvalidName(n),
                _ => SpawnError::NameTaken(name),
            });
            return false;
        }
        let mut entry = ProcessEntry::new(generation, capacity, request.options.trap_exit);
        entry.name = request.name.as_deref().map(Box::from);
        let key = self.table.borrow_mut().insert(entry);
        debug_assert_eq!(key, slot);
        let ctx = Context::new(self.clone(), pid);
        let SpawnRequest { start, name, reply, member, .. } = request;
        match catch_unwind(AssertUnwindSafe(move || start(ctx))) {
            Ok(future) => {
                {
                    let mut table = self.table.borrow_mut();
                    let e = &mut table[slot];
                    e.future = Some(future);
                    e.init_waiter = Some(reply);
                    e.pool = member.clone();
                    self.enqueue(e, slot as u32);
                }
                if let Some(member) = &member {
                    crate::pool::dispatch::worker_started(self, member, pid);
                }
                true
            }
            Err(payload) => {
                // Dropped after the borrow ends: its mailbox may hold calls that answer on drop.
                let entry = self.table.borrow_mut().remove(slot);
                drop(entry);
                reservation.close(generation);
                if let Some(name) = &name {
                    self.node.names.unregister(name, pid);
                }
                reply.respond(Err(SpawnError::FactoryPanicked(executor::panic_text(&*payload))));
                false
            }
        }
    }

    /// `init` of `pid` returned: answer whoever waits for the spawn.
    pub(crate) fn init_finished(&self, pid: Pid, result: Result<(), ExitReason>) {
        let waiter = {
            let mut table = self.table.borrow_mut();
            let Some(e) = table.get_mut(pid.slot as usize) else { return };
            e.initializing = false;
            e.init_waiter.take()
        };
        if let Some(w) = waiter {
            w.respond(result.map(|()| pid).map_err(SpawnError::InitFailed));
        }
    }
}
