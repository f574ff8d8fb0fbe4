//! I/O sources owned by a shard: listeners and connections registered on its mio `Poll`.
//! Each source has a [`Token`] (its index in the shard's source slab); readiness events,
//! timer expiries and "flush after this turn" requests are dispatched to it on the shard
//! thread. This is the shard's half of a meta-process: the web layer (`crate::web`) builds its
//! listener and connections on it.

use std::any::Any;
use std::io;
use std::rc::Rc;
use std::time::Instant;

use mio::event::Source;
use mio::{Interest, Registry, Token};

use super::{Readiness, Shard, TimerAction, TimerKey};

/// A shard-owned I/O source.
pub(crate) trait IoSource: Any {
    /// Readiness of its socket (edge-triggered: remember it until `WouldBlock`).
    fn ready(self: Rc<Self>, shard: &Rc<Shard>, token: Token, ready: Readiness);
    /// A timer it armed with [`Shard::io_timer`] fired.
    fn timeout(self: Rc<Self>, shard: &Rc<Shard>, token: Token, now: Instant);
    /// It asked to be flushed ([`Shard::io_flush_later`]); the turn's work is done.
    fn flush(self: Rc<Self>, shard: &Rc<Shard>, token: Token);
    /// The shard is stopping: stop accepting new work.
    fn shutdown(self: Rc<Self>, shard: &Rc<Shard>, token: Token);
    /// It holds output its peer has not taken yet (a stopping shard, its processes all
    /// ended, writes it on until the stop's deadline before it closes its sources).
    fn writing(&self) -> bool {
        false
    }
    /// For downcasting to the concrete source.
    fn as_any(&self) -> &dyn Any;
    /// The web connection it is, if it is one: the downcast every response makes, in one
    /// call instead of `as_any`'s and `type_id`'s.
    #[cfg(feature = "web")]
    fn as_connection(&self) -> Option<&crate::web::Connection> {
        None
    }
    /// Registers its socket under `token`.
    fn register(&self, registry: &Registry, token: Token, interest: Interest) -> io::Result<()>;
}

impl Shard {
    /// Registers `source`'s socket for `interest` and keeps it under the returned token.
    pub(crate) fn io_insert(&self, source: Rc<dyn IoSource>, interest: Interest) -> io::Result<Token> {
        let mut sources = self.io.borrow_mut();
        let entry = sources.vacant_entry();
        let token = Token(entry.key());
        source.register(&self.registry, token, interest)?;
        entry.insert(source);
        Ok(token)
    }

    /// The sources, for a scan (closing a server's listeners).
    pub(crate) fn io_find(&self, mut f: impl FnMut(&dyn IoSource) -> bool) -> Option<(Token, Rc<dyn IoSource>)> {
        self.io.borrow().iter().find(|(_, s)| f(&***s)).map(|(t, s)| (Token(t), s.clone()))
    }

    /// Deregisters `socket` and forgets the source under `token`.
    /// The sources `f` picks.
    pub(crate) fn io_filter(&self, mut f: impl FnMut(&dyn IoSource) -> bool) -> Vec<(Token, Rc<dyn IoSource>)> {
        self.io.borrow().iter().filter(|(_, s)| f(&***s)).map(|(t, s)| (Token(t), s.clone())).collect()
    }

    pub(crate) fn io_remove(&self, token: Token, socket: &mut impl Source) {
        let _ = self.registry.deregister(socket);
        let removed = self.io.borrow_mut().try_remove(token.0);
        drop(removed);
    }

    /// The source under `token`, if any.
    pub(crate) fn io_get(&self, token: Token) -> Option<Rc<dyn IoSource>> {
        self.io.borrow().get(token.0).cloned()
    }

    /// Sources registered on this shard.
    pub(crate) fn io_len(&self) -> usize {
        self.io.borrow().len()
    }

    /// Calls the source's `flush` once this turn's processes have run (responses completed in
    /// the same turn go out in one write).
    pub(crate) fn io_flush_later(&self, token: Token) {
        self.io_dirty.borrow_mut().push(token);
    }

    /// Calls the source's `timeout` at `deadline`.
    pub(crate) fn io_timer(&self, deadline: Instant, token: Token) -> TimerKey {
        self.timers.borrow_mut().insert(deadline, TimerAction::Io(token))
    }

    /// Cancels a timer armed with [`io_timer`](Self::io_timer).
    pub(crate) fn io_cancel_timer(&self, key: TimerKey) {
        let cancelled = self.timers.borrow_mut().cancel(key);
        drop(cancelled);
    }

    /// This turn's time (read once per turn, or once per batch of events after a wait).
    pub(crate) fn now(&self) -> Instant {
        if !self.clock_fresh.replace(true) {
            self.clock.set(Instant::now());
        }
        self.clock.get()
    }

    /// User code ran (it may have taken any time): the next [`now`](Self::now) reads the clock.
    #[inline(always)]
    pub(crate) fn clock_stale(&self) {
        self.clock_fresh.set(false);
    }

    /// Dispatches one readiness event.
    pub(crate) fn io_event(self: &Rc<Self>, token: Token, ready: Readiness) {
        if let Some(source) = self.io_get(token) {
            super::executor::contain("serving an I/O event", || source.ready(self, token, ready));
        }
    }

    /// Dispatches a fired I/O timer.
    pub(crate) fn io_timeout(self: &Rc<Self>, token: Token) {
        if let Some(source) = self.io_get(token) {
            super::executor::contain("serving an I/O timer", || source.timeout(self, token, self.now()));
        }
    }

    /// Flushes every source that asked for it since the last flush (ones that ask again while
    /// being flushed are flushed at the next one: after the next run of processes between
    /// I/O events, or at the end of the turn).
    pub(crate) fn io_flush(self: &Rc<Self>) {
        let mut batch = std::mem::take(&mut *self.io_dirty.borrow_mut());
        for token in batch.drain(..) {
            if let Some(source) = self.io_get(token) {
                super::executor::contain("flushing an I/O source", || source.flush(self, token));
            }
        }
        // Keep the vector's capacity for the next turn.
        let mut dirty = self.io_dirty.borrow_mut();
        if dirty.is_empty() {
            *dirty = batch;
        }
    }

    /// Sources wait to be flushed.
    pub(crate) fn io_pending(&self) -> bool {
        !self.io_dirty.borrow().is_empty()
    }

    /// Some source holds output its peer has not taken yet.
    pub(crate) fn io_writing(&self) -> bool {
        self.io.borrow().iter().any(|(_, s)| s.writing())
    }

    /// Tells every source the shard is stopping.
    pub(crate) fn io_shutdown(self: &Rc<Self>) {
        let all: Vec<(usize, Rc<dyn IoSource>)> = self.io.borrow().iter().map(|(k, s)| (k, s.clone())).collect();
        for (token, source) in all {
            source.shutdown(self, Token(token));
        }
    }
}
