//! A connection's timer: which deadline it is armed for, and what happens when it fires.

use std::rc::Rc;
use std::time::Instant;

use mio::Token;

use super::{Connection, State, paused};
use crate::http::{HttpLimits, Phase, Response, StatusCode};
use crate::shard::Shard;

impl Connection {
    /// Arms the connection's timer for its earliest deadline.
    pub(super) fn rearm(&self, st: &mut State, shard: &Shard, token: Token) {
        let limits = &self.server.limits;
        note_phase(st, limits, shard.now());
        // The earliest of: the requests' deadlines, the lingering close, the read deadline
        // of a head or body, and `idle_timeout` without progress, for an idle connection or
        // one whose client stops reading our answers (paused or not).
        let mut want = st.out.next_deadline();
        if let Some((at, _)) = st.linger {
            want = Some(earlier(want, at));
        }
        if let Some(at) = read_deadline(st, limits) {
            want = Some(earlier(want, at));
        }
        if st.phase == Phase::Idle && st.out.in_flight() == 0 || st.out.unsent() > 0 {
            want = Some(earlier(want, st.active + limits.idle_timeout));
        }
        if let Some(at) = st.drain_by {
            want = Some(earlier(want, at));
        }
        match (st.timer, want) {
            (Some((_, at)), Some(w)) if at <= w => {}
            (old, Some(w)) => {
                if let Some((key, _)) = old {
                    shard.io_cancel_timer(key);
                }
                st.timer = Some((shard.io_timer(w, token), w));
            }
            (Some((key, _)), None) => {
                shard.io_cancel_timer(key);
                st.timer = None;
            }
            (None, None) => {}
        }
    }

    /// A request's deadline (504 after it).
    pub(crate) fn set_deadline(&self, shard: &Shard, token: Token, seq: u64, at: Instant) {
        self.deadline_in(&mut self.st.borrow_mut(), shard, token, seq, at);
    }

    /// [`set_deadline`](Self::set_deadline) with the state borrowed already.
    #[inline(always)]
    pub(super) fn deadline_in(&self, st: &mut State, shard: &Shard, token: Token, seq: u64, at: Instant) {
        st.out.set_deadline(seq, at);
        if st.timer.is_some_and(|(_, armed)| armed <= at) {
            return; // it fires first and re-arms for what is due then
        }
        self.rearm(st, shard, token);
    }

    /// A head or body is being read, its deadline has passed, and the socket may hold more.
    pub(super) fn read_deadline_passed(&self, now: Instant) -> bool {
        let st = self.st.borrow();
        !st.closed()
            && st.linger.is_none()
            && !st.eof
            && read_deadline(&st, &self.server.limits).is_some_and(|d| now >= d)
    }

    /// Its timer fired: whatever is due now (see the module docs).
    pub(super) fn expired(&self, shard: &Rc<Shard>, token: Token, now: Instant) {
        let limits = &self.server.limits;
        let mut guard = self.st.borrow_mut();
        let st = &mut *guard;
        // (The timer that fired was forgotten by `timeout`; one armed since, by a request's
        // deadline set while what the late read brought was dispatched, is kept or re-armed
        // by the write's `rearm`.)
        if st.closed() {
            return;
        }
        if let Some((at, _)) = st.linger
            && now >= at
        {
            drop(guard);
            return self.close(shard, token);
        }
        // Bytes the client has not taken; not bytes waiting behind a slow handler of ours (a
        // review: a stream or an answer queued behind a slow first request was closed as a
        // stalled reader).
        if st.out.unsent() > 0 && now >= st.active + limits.idle_timeout {
            log::debug!(target: "pinion::web", "{}: client stopped reading, closing", shard.id);
            self.server.stats().slow_client();
            drop(guard);
            return self.close(shard, token);
        }
        // The codec may have moved on since the last `rearm` (a head completed by an event
        // whose write, and re-arm, wait for the end of the turn): judge what it is reading
        // now, not what it was reading then, or a request read in time — or one not even
        // begun — would be refused 408.
        note_phase(st, limits, now);
        // A drain's grace is over (taken: a deadline left in the past would fire every turn,
        // a review found, spinning the shard while the connection stayed busy).
        let drained = st.drain_by.take_if(|at| now >= *at).is_some();
        if read_deadline(st, limits).is_some_and(|d| now >= d) && !st.out.closing() {
            // Too slow: 408 after whatever is in flight, then close.
            let meta = st.codec.abort();
            if st.body_counted != 0 {
                self.count_body_bytes(st);
            }
            st.out.open(meta, None);
            self.server.stats().refused(StatusCode(408));
            st.out.complete(meta.seq(), crate::http::Response::status(StatusCode(408)), now);
        } else if st.phase == Phase::Idle
            && st.out.in_flight() == 0
            && st.out.unwritten() == 0
            && (now >= st.active + limits.idle_timeout || drained)
        {
            drop(guard);
            return self.close(shard, token);
        } else if drained && !st.codec.read_last() {
            // Busy as the grace ended (a request came, or is coming): it ends as any draining
            // connection does.
            st.out.close_after_last();
        }
        if st.flags & super::HOOKED_ANY != 0 {
            drop(guard);
            self.expire_hooked(now);
            guard = self.st.borrow_mut();
        }
        let expired = guard.out.expire(now, StatusCode::GATEWAY_TIMEOUT);
        self.server.stats().timed_out(expired);
        drop(guard);
        self.write(shard, token);
    }

    /// The 504s due now of requests with response hooks: the hooks run on them (outside the
    /// borrow: they are the user's code), then they take their slots. A late answer finds its
    /// slot answered, and its hooks gone.
    #[cold]
    fn expire_hooked(&self, now: Instant) {
        let due = self.st.borrow_mut().take_hooked_due(now);
        self.server.stats().timed_out(due.len());
        for (seq, hooked) in due {
            let mut resp = Response::status(StatusCode::GATEWAY_TIMEOUT);
            hooked.run(None, &mut resp);
            let mut st = self.st.borrow_mut();
            if !st.closed() {
                st.out.complete(seq, resp, now);
            }
        }
    }
}

/// Notes what the codec is reading, and since when: `now` if that changed since it was last
/// noted. Paused by our own bounds, the connection waits on us, not on the client (no read
/// phase); a read phase is timed per request (the next request's head starts its own clock).
///
/// While a body is read at [`min_body_rate`](HttpLimits::min_body_rate), each byte received
/// moves its clock on by `1 / min_body_rate` s, but never past `now`: the body's deadline is
/// at most `body_read_timeout` ahead, whatever it sent before. (Banked without that cap, a
/// 1 MiB burst then silence held its connection and the megabyte for 60 + 256 s: a trial of
/// hostile clients. Now 60 s after the last byte, or sooner for a trickle.)
fn note_phase(st: &mut State, limits: &HttpLimits, now: Instant) {
    let phase = if paused(st, limits) || st.out.continue_owed() { Phase::Closed } else { st.codec.phase() };
    let position = st.codec.position();
    if (phase, position) != (st.phase, st.phase_position) {
        (st.phase, st.phase_position) = (phase, position);
        st.phase_since = now;
        st.body_seen = st.codec.body_received();
    } else if phase == Phase::Body && limits.min_body_rate > 0 {
        let received = st.codec.body_received();
        if received > st.body_seen {
            st.phase_since = (st.phase_since + excused(received - st.body_seen, limits)).min(now);
            st.body_seen = received;
        }
    }
}

/// When the client must have sent the head or body being read now (none between requests or
/// while our own bounds hold reading back).
fn read_deadline(st: &State, limits: &HttpLimits) -> Option<Instant> {
    match st.phase {
        Phase::Head => Some(st.phase_since + limits.header_read_timeout),
        Phase::Body => Some(st.phase_since + limits.body_read_timeout),
        _ => None,
    }
}

/// The time `received` bytes of a body excuse at `min_body_rate`.
fn excused(received: usize, limits: &HttpLimits) -> std::time::Duration {
    match limits.min_body_rate {
        0 => std::time::Duration::ZERO,
        rate => std::time::Duration::from_secs_f64(received as f64 / f64::from(rate)).min(crate::http::NEVER),
    }
}

/// The earlier of `at` and `than`, if any.
#[inline(always)]
fn earlier(than: Option<Instant>, at: Instant) -> Instant {
    match than {
        Some(t) if t < at => t,
        _ => at,
    }
}
