//! The shard's mio `Poll`: where the shard thread blocks when idle, woken by its `Waker` (a
//! cross-shard message), a timer deadline, or I/O readiness of sources it owns.

use std::io;
use std::time::Duration;

use mio::{Events, Poll, Registry, Token, Waker};

/// The token of the shard's cross-thread waker.
pub(crate) const WAKER: Token = Token(usize::MAX);

const EVENTS: usize = 256;

/// The events one wait returned, as seen from one of them (the waker's event counted).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Batch {
    /// How many events the wait returned.
    pub(crate) len: usize,
    /// How many of them come after this one.
    pub(crate) after: usize,
}

/// What an event says about a source.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Readiness {
    pub(crate) readable: bool,
    /// The peer finished sending (or the socket failed): reading will reach the end.
    pub(crate) read_closed: bool,
    /// The socket failed (a reset, say): nothing can be written to it any more.
    pub(crate) error: bool,
}

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

    /// A handle for registering sources (kept by the shard).
    pub(crate) fn registry(&self) -> io::Result<Registry> {
        self.poll.registry().try_clone()
    }

    /// Blocks until woken, an event, or `timeout` (`Some(ZERO)`: just looks), then hands every
    /// I/O event to `dispatch`, with where it stands in the [`Batch`] this wait returned.
    /// Sources are registered edge-triggered: a writable edge needs no field of its own, since
    /// a connection writes whatever it has whenever it is called. The waker's own event only
    /// means "look at the inbox", which the loop does next. True if there was an I/O event.
    pub(crate) fn wait(
        &mut self,
        timeout: Option<Duration>,
        mut dispatch: impl FnMut(Token, Readiness, Batch),
    ) -> bool {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => log::error!(target: "pinion", "poll failed: {e}"),
        }
        let mut any = false;
        let len = self.events.iter().count();
        for (i, ev) in self.events.iter().enumerate() {
            if ev.token() == WAKER {
                continue;
            }
            any = true;
            dispatch(
                ev.token(),
                Readiness {
                    readable: ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                    read_closed: ev.is_read_closed() || ev.is_error(),
                    error: ev.is_error(),
                },
                Batch { len, after: len - 1 - i },
            );
        }
        self.events.clear();
        any
    }
}
