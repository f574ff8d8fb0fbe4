//! What the sender of a streamed body sees of it, shared with the connection that writes it:
//! whether the stream is closed, how many of its bytes the client has not taken yet, and a
//! sender waiting for that backlog to fall ([`Writable`]).
//!
//! The wait is a handshake between two threads at most: the connection's shard, which lowers
//! the backlog as it writes (or closes the stream), and the sender's, which registers its
//! waker. Each side stores its own part (the backlog or closure; the waiter flag), then a
//! `SeqCst` fence, then loads the other's: of two such fences one comes first, and the side
//! after it sees the other's store — so either the sender finds the backlog low enough before
//! it parks, or the connection finds it waiting and wakes it. The waker itself is kept under a
//! mutex, locked only while a sender waits. `tests/loom_backlog.rs` checks the handshake.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use crate::loom::{AtomicBool, AtomicUsize, Mutex, Ordering, fence};

/// A streamed body's shared state: what `web::ResponseStream::is_closed`, `backlog` and
/// `writable` read.
pub struct StreamState {
    closed: AtomicBool,
    /// Bytes of the stream that wait at its connection for the client, as of the connection's
    /// last chunk or write (see [`StreamWatch`]).
    queued: AtomicUsize,
    /// Bytes the sender sent that have not reached the connection yet (still on their way to
    /// its shard: a review found a sender off that shard reading a stale 0 and cut).
    in_flight: AtomicUsize,
    /// A sender waits (`waiter` holds its waker): only then does the connection lock `waiter`.
    /// Changed only under that lock, so it says whether `waiter` is `Some`.
    waiting: AtomicBool,
    /// The waiting sender's bound and waker.
    waiter: Mutex<Option<(usize, Waker)>>,
}

impl fmt::Debug for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamState")
            .field("closed", &self.is_closed())
            .field("backlog", &self.backlog())
            .finish_non_exhaustive()
    }
}

impl StreamState {
    /// A stream's state; `closed` for a stream that has no connection to go to.
    pub fn new(closed: bool) -> Self {
        StreamState {
            closed: AtomicBool::new(closed),
            queued: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
            waiter: Mutex::new(None),
        }
    }

    /// Whether the stream is closed for good.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Bytes the client has not taken yet: on their way to the connection and held there (0
    /// once closed).
    pub fn backlog(&self) -> usize {
        if self.is_closed() {
            return 0;
        }
        self.backlog_open()
    }

    /// [`backlog`](Self::backlog) of an open stream. Never less than the truth: `in_flight`
    /// first, as a connection that took bytes in stored `queued` before it lowered
    /// `in_flight` (see [`StreamWatch::took_in`]), so a lower `in_flight` brings the `queued`
    /// that counts those bytes with it; the other way round a moment's reading could miss
    /// them in both.
    fn backlog_open(&self) -> usize {
        let in_flight = self.in_flight.load(Ordering::Acquire);
        in_flight + self.queued.load(Ordering::Acquire)
    }

    /// The sender sent `n` bytes towards the connection.
    pub fn sent(&self, n: usize) {
        self.in_flight.fetch_add(n, Ordering::Relaxed);
    }

    /// Waits until the backlog is at most `limit` bytes (true) or the stream closed (false).
    pub fn writable(&self, limit: usize) -> Writable<'_> {
        Writable { state: self, limit, registered: false }
    }

    /// What a wait for `limit` ends with now, if it ends.
    fn ready(&self, limit: usize) -> Option<bool> {
        if self.is_closed() {
            Some(false)
        } else if self.backlog_open() <= limit {
            Some(true)
        } else {
            None
        }
    }

    /// After the backlog fell or the stream closed: wakes a sender whose wait is over.
    fn notify(&self) {
        fence(Ordering::SeqCst);
        if !self.waiting.load(Ordering::Relaxed) {
            return;
        }
        self.notify_waiting();
    }

    #[cold]
    #[inline(never)]
    fn notify_waiting(&self) {
        let mut waiter = lock(&self.waiter);
        let Some((limit, _)) = *waiter else { return };
        if self.ready(limit).is_none() {
            return;
        }
        let woken = waiter.take();
        self.waiting.store(false, Ordering::Relaxed);
        drop(waiter);
        if let Some((_, waker)) = woken {
            waker.wake();
        }
    }
}

/// The waiter's lock; a panic while it was held left nothing half-done (it holds an `Option`).
fn lock<T>(m: &Mutex<T>) -> crate::loom::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Held by a streamed body's slot while the stream is open, telling its sender how much of
/// it waits for the client; dropped (the slot ended, the connection closed, or the watch
/// never reached a slot), it marks the stream closed.
#[derive(Debug)]
pub struct StreamWatch(pub Arc<StreamState>);

impl StreamWatch {
    /// `bytes` of the stream wait at the connection (after a write).
    pub fn set_queued(&self, bytes: usize) {
        self.0.queued.store(bytes, Ordering::Release);
        self.0.notify();
    }

    /// A chunk of `n` bytes the sender sent reached the connection, where `queued` bytes of
    /// the stream now wait (the chunk's among them).
    pub fn took_in(&self, n: usize, queued: usize) {
        self.0.queued.store(queued, Ordering::Release);
        self.0.in_flight.fetch_sub(n, Ordering::Release);
        self.0.notify();
    }
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        close(&self.0);
    }
}

/// Out of line: a slot's drop glue, which every response runs, stays small enough to inline
/// (with this inline, callgrind counted 17 more instructions a pipelined request).
#[cold]
#[inline(never)]
fn close(state: &StreamState) {
    state.closed.store(true, Ordering::Release);
    state.notify();
}

/// The future of [`ResponseStream::writable`](crate::web::ResponseStream::writable): true
/// once the stream's backlog is at most the bound, false once the stream closed.
#[must_use = "a future does nothing unless awaited"]
pub struct Writable<'a> {
    state: &'a StreamState,
    limit: usize,
    /// Its waker is (or was) in `state.waiter`.
    registered: bool,
}

impl fmt::Debug for Writable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writable").field("limit", &self.limit).finish_non_exhaustive()
    }
}

impl Future for Writable<'_> {
    type Output = bool;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<bool> {
        let state = self.state;
        if let Some(done) = state.ready(self.limit) {
            return Poll::Ready(done);
        }
        {
            let mut waiter = lock(&state.waiter);
            match &mut *waiter {
                Some((limit, waker)) if waker.will_wake(cx.waker()) => *limit = self.limit,
                slot => *slot = Some((self.limit, cx.waker().clone())),
            }
            state.waiting.store(true, Ordering::Relaxed);
        }
        self.registered = true;
        // Looked at again after the flag is out: a backlog that fell before the connection
        // could see the flag is seen here.
        fence(Ordering::SeqCst);
        match state.ready(self.limit) {
            Some(done) => Poll::Ready(done),
            None => Poll::Pending,
        }
    }
}

impl Drop for Writable<'_> {
    fn drop(&mut self) {
        if self.registered {
            // (One sender per stream: `ResponseStream::writable` takes it `&mut`.)
            let mut waiter = lock(&self.state.waiter);
            *waiter = None;
            self.state.waiting.store(false, Ordering::Relaxed);
        }
    }
}
