//! The shard's mio `Poll`: where the shard thread blocks when idle, woken by its `Waker` (a
//! cross-shard message), a timer deadline, or I/O readiness of sources it owns.

use std::io;
use std::time::Duration;

use mio::{Events, Poll, Token, Waker};

/// The token of the shard's cross-thread waker.
pub(crate) const WAKER: Token = Token(usize::MAX);

const EVENTS: usize = 256;

/// A shard's poller.
pub(crate) struct Reactor {
    poll: Poll,
    events: Events,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reactor")
    }
}

impl Reactor {
    /// A poller and the waker other threads use to interrupt its wait.
    pub(crate) fn new() -> io::Result<(Reactor, Waker)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        Ok((Reactor { poll, events: Events::with_capacity(EVENTS) }, waker))
    }

    /// Blocks until woken, an event, or `timeout`.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => log::error!(target: "pinion", "poll failed: {e}"),
        }
        // No I/O sources are registered yet: readiness only means "look at the inbox", which
        // the loop does next.
        self.events.clear();
    }
}
