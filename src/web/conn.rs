//! One HTTP connection on a shard: a mio `TcpStream` driven by the HTTP layer's `Codec` and
//! `Outgoing`. Requests go to the server's handler as they are parsed (pipelined ones too);
//! responses come back through [`Connection::deliver`] in any order and are written in
//! request order, everything ready in one `write`.
//!
//! Timers (one per connection, armed and served in `conn/timers.rs`, at the earliest of):
//! header read (408, close), body read (408, close), idle keep-alive (close), each request's
//! deadline (504), the lingering close.

use std::any::Any;
use std::cell::RefCell;
use std::io::{self, ErrorKind};
use std::net::{Shutdown, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::dispatch::{ANSWERED, Answer, HOOKED, dispatch_begin, dispatch_end, take_answer, take_hooked};
use super::handler::Handler;
use super::request::{Hooked, ReplyTo, WebRequest};
use super::server::{Delivery, ServerShared};
use crate::http::{
    Ahead, BodyBound, Codec, Flushed, HttpError, Outgoing, Phase, Request, RequestMeta, Response, StatusCode, Step,
    refusal,
};
use crate::shard::executor::panic_text;
use crate::shard::io::IoSource;
use crate::shard::{Readiness, Shard, TimerKey};

mod timers;

/// Gives back, when dropped, the pool slots a dispatch pass took ahead and did not use.
struct ReturnCredit<'a>(&'a Shard);

impl Drop for ReturnCredit<'_> {
    fn drop(&mut self) {
        crate::pool::dispatch::return_credit(self.0);
    }
}

/// Read no further while this much is encoded and unwritten (a client that does not read).
const MAX_UNWRITTEN: usize = 256 * 1024;
/// A streamed body that outruns its client by this much cuts the connection; whole answers
/// waiting for a client that takes nothing count in the shard's bound past it.
const MAX_STREAM_BACKLOG: usize = 4 * 1024 * 1024;
/// After answering an error, read (and discard) for this long before closing, so the
/// client's unread bytes do not turn the close into a reset that loses the answer: at most
/// `LINGER_BYTES`, or the declared body of the refused request if that is more (up to
/// `LINGER_BODY_MAX`; a trial: nginx sends a whole body before it reads, so a 2 MB body
/// refused 413 became a reset after 256 KiB, and nginx answered 502).
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;
const LINGER_BODY_MAX: u64 = 64 * 1024 * 1024;
/// How long a draining connection that is idle waits for a request its client may have sent
/// already before it closes.
const DRAIN_GRACE: Duration = Duration::from_secs(1);
/// Rounds of dispatch → read per readiness event before yielding to other work (the last
/// dispatches only), then a write.
const ROUNDS: usize = 8;

pub(crate) struct Connection {
    pub(crate) id: u64,
    pub(crate) server: Rc<ServerShared>,
    st: RefCell<State>,
}

struct State {
    stream: TcpStream,
    codec: Codec,
    out: Outgoing,
    readable: bool,
    eof: bool,
    /// An event said the peer finished sending (see `read`).
    peer_closed: bool,
    /// What the codec was reading, and since when.
    phase: Phase,
    phase_since: Instant,
    /// The request position (`Codec::position`) the phase belongs to.
    phase_position: u64,
    /// Bytes of the body being read when `phase_since` was last moved on for them (see
    /// `timers::note_phase`).
    body_seen: usize,
    /// The last read or write.
    active: Instant,
    timer: Option<(TimerKey, Instant)>,
    flush_queued: bool,
    /// Dispatching stopped at a bound with bytes possibly left to parse.
    held: bool,
    /// A request of an unsafe method read while requests before it were in flight: its slot
    /// is open (holding the pipeline: nothing more is read), and it goes to its handler once
    /// they are answered (RFC 9112 §9.3.2: pipelined requests are processed in parallel only
    /// while all are safe).
    deferred: Option<(Box<Request>, RequestMeta)>,
    /// Lingering close: writes are shut down, reads are discarded until this instant, this many
    /// bytes at most.
    linger: Option<(Instant, usize)>,
    /// Draining, idle: closed at this instant unless a last request came (see `drain`).
    drain_by: Option<Instant>,
    /// Draining while its last answer streams (its head out without `Connection: close`):
    /// once everything is written, it waits as an idle draining connection does (`drain_by`).
    drain_after_stream: bool,
    /// [`CLOSED`], [`HOOKED_ANY`]: one test on the way of every response for both.
    flags: u8,
    /// Response hooks kept for requests in flight, by seq (see `WebRequest::on_response`);
    /// `HOOKED_ANY` while it is not empty.
    hooked: Vec<(u64, Box<Hooked>)>,
    /// What this connection counts in its server's `stream_bytes` (see
    /// `count_stream_bytes`): 0 until a chunk of a stream comes, and again once all is written.
    stream_counted: usize,
    /// What this connection counts in its server's `body_bytes` (see `count_body_bytes`): the
    /// body being read, as last counted.
    body_counted: usize,
}

/// The connection is closed.
const CLOSED: u8 = 1;
/// Some request in flight has response hooks (`State::hooked`).
const HOOKED_ANY: u8 = 2;

impl State {
    /// Writes what the client takes now, and whether that was anything. Only progress counts
    /// as activity: a client that stops reading runs into the send timeout (`rearm`) however
    /// often we try.
    #[inline(always)]
    fn write_out(&mut self, now: Instant) -> (io::Result<Flushed>, bool) {
        let before = self.out.written_total();
        let flushed = self.out.write_to(&mut self.stream, now);
        let progressed = self.out.written_total() != before;
        if progressed {
            self.active = now;
        }
        (flushed, progressed)
    }

    fn closed(&self) -> bool {
        self.flags & CLOSED != 0
    }

    /// Keeps response hooks for request `seq`.
    fn keep_hooked(&mut self, seq: u64, hooked: Box<Hooked>) {
        self.hooked.push((seq, hooked));
        self.flags |= HOOKED_ANY;
    }

    /// The response hooks kept for request `seq`, taken: they run once.
    fn take_hooked(&mut self, seq: u64) -> Option<Box<Hooked>> {
        let i = self.hooked.iter().position(|(s, _)| *s == seq)?;
        let (_, hooked) = self.hooked.swap_remove(i);
        self.note_hooked();
        Some(hooked)
    }

    /// The response hooks kept for every request whose deadline had passed by `now`, taken.
    fn take_hooked_due(&mut self, now: Instant) -> Vec<(u64, Box<Hooked>)> {
        let (due, kept) = std::mem::take(&mut self.hooked).into_iter().partition(|(s, _)| self.out.due(*s, now));
        self.hooked = kept;
        self.note_hooked();
        due
    }

    /// `HOOKED_ANY` cleared when no hooks are kept.
    fn note_hooked(&mut self) {
        if self.hooked.is_empty() {
            self.flags &= !HOOKED_ANY;
        }
    }
}

impl Connection {
    pub(crate) fn new(
        id: u64,
        server: Rc<ServerShared>,
        stream: TcpStream,
        peer: SocketAddr,
        now: Instant,
    ) -> Connection {
        let st = State {
            stream,
            codec: Codec::for_connection(&server.spares, server.body_bound.clone(), peer),
            out: Outgoing::new(&server.spares),
            readable: false,
            eof: false,
            peer_closed: false,
            phase: Phase::Idle,
            phase_since: now,
            phase_position: 0,
            body_seen: 0,
            active: now,
            timer: None,
            flush_queued: false,
            held: false,
            deferred: None,
            linger: None,
            drain_by: None,
            drain_after_stream: false,
            flags: 0,
            hooked: Vec::new(),
            stream_counted: 0,
            body_counted: 0,
        };
        Connection { id, server, st: RefCell::new(st) }
    }

    /// Reads, dispatches and writes until the socket has nothing more or a bound stops it.
    /// `event`: called for a readiness event, before the turn's processes run.
    fn pump(self: &Rc<Self>, shard: &Rc<Shard>, token: Token, event: bool) {
        for round in 1..=ROUNDS {
            self.dispatch(shard, token);
            // The last round only dispatches: bytes it read would wait unparsed with no edge to
            // come (a trial: an upload whose last bytes came with that read got 408). What
            // the socket still holds, `write` leaves to the turn's flush.
            if round == ROUNDS || !self.read(shard, token) {
                break;
            }
        }
        if event && self.defer_write(shard, token) {
            return;
        }
        self.write(shard, token);
    }

    /// Every request read waits for its answer (from an actor, which runs after this event):
    /// with nothing to write, the write and the timer's re-arm wait for the flush at the end
    /// of this turn, which writes the answers that came meanwhile. One write and one re-arm
    /// per turn instead of two; the timer is armed within the same turn either way.
    fn defer_write(&self, shard: &Shard, token: Token) -> bool {
        let mut st = self.st.borrow_mut();
        if st.closed() || !st.out.waits_for_answers() {
            return false;
        }
        flush_later(&mut st, shard, token);
        true
    }

    /// Ends the connection gracefully (its server drains): the requests read are answered —
    /// and the one being read, if any — the last answer says `Connection: close`, and the
    /// connection closes once it is written. An idle one waits [`DRAIN_GRACE`] for a request
    /// its client may have sent already (answered the same way), then closes (an API trial:
    /// closing it at once, back-to-back keep-alive clients lost the request on its way, 16 of
    /// 16).
    pub(crate) fn drain(&self, shard: &Rc<Shard>, token: Token) {
        {
            let mut st = self.st.borrow_mut();
            if st.closed() || st.linger.is_some() || st.out.will_close() {
                return;
            }
            if st.out.in_flight() == 0 && st.codec.phase() == Phase::Idle && st.codec.read_next_last() {
                st.drain_by = Some(shard.now() + DRAIN_GRACE);
                return self.rearm(&mut st, shard, token);
            }
            if st.codec.phase() == Phase::Idle && st.out.last_streams() {
                // The stream's head went out without `Connection: close`: its client, told
                // nothing, sends its next request once the body ends. That one is the last
                // (answered with close), and the connection waits for it as an idle one
                // does (a trial: closed at the stream's end, it dropped that request).
                if st.codec.read_next_last() {
                    st.drain_after_stream = true;
                    return;
                }
            }
            if !st.codec.read_last() {
                // (A deferred request's slot is the last one opened: its answer closes.)
                st.out.close_after_last();
            }
        }
        self.write(shard, token);
    }

    /// Paused by our bounds (nothing is read), and the socket reports an error (a reset).
    #[cold]
    fn reset_while_paused(&self) -> bool {
        let st = self.st.borrow();
        !st.closed()
            && st.linger.is_none()
            && paused(&st, &self.server.limits)
            && matches!(st.stream.take_error(), Ok(Some(_)))
    }

    /// Reads once if allowed; true if it read something.
    #[inline(always)]
    fn read(&self, shard: &Rc<Shard>, token: Token) -> bool {
        // Most calls find the socket drained (a short read said so): a look, not a call.
        let st = self.st.borrow();
        if st.closed() || !st.readable || st.eof {
            return false;
        }
        drop(st);
        self.read_now(shard, token)
    }

    #[inline(never)]
    fn read_now(&self, shard: &Rc<Shard>, token: Token) -> bool {
        let limits = &self.server.limits;
        let mut guard = self.st.borrow_mut();
        let st = &mut *guard;
        debug_assert!(!(st.closed() || !st.readable || st.eof), "`read` looked just before");
        if st.linger.is_some() {
            if discard(st) {
                drop(guard);
                self.close(shard, token);
            }
            return false;
        }
        // Nothing is read while parsing waits on our bounds, an HTTP/1.0 request's answer
        // among them: the bytes would only pile up unparsed (a review: 256 MiB read into one
        // connection's buffer behind a held HTTP/1.0 keep-alive request).
        if st.codec.phase() == Phase::Closed || paused(st, limits) {
            return false;
        }
        match st.codec.read_from(&mut st.stream) {
            Ok((0, _)) => {
                st.eof = true;
                false
            }
            Ok((n, room)) => {
                st.active = shard.now();
                // A read that did not fill the room emptied the socket: the next bytes bring a
                // new edge (epoll), so reading again now would only return `WouldBlock` — a
                // wasted syscall per request on a keep-alive connection.
                if n < room && !st.peer_closed {
                    st.readable = false;
                }
                true
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                st.readable = false;
                false
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => true,
            Err(_) => {
                drop(guard);
                self.close(shard, token);
                false
            }
        }
    }

    /// Hands every complete request in the buffer to the handler (no borrow held while it
    /// runs: a plain-function handler answers re-entrantly). A panicking handler drops its
    /// request (answered 500); the shard and this connection go on with the next one. The
    /// panic is caught around the whole pass rather than around each handler: a catch per
    /// request cost a tenth of the rest of its dispatch.
    fn dispatch(&self, shard: &Rc<Shard>, token: Token) {
        let (mut now, mut running) = (None, None);
        // Pool slots taken ahead for this pass's requests go back when it ends, however.
        let _credit = ReturnCredit(shard);
        loop {
            match catch_unwind(AssertUnwindSafe(|| self.dispatch_pass(shard, token, &mut now, &mut running))) {
                Ok(()) => return,
                Err(payload) => {
                    // Only a handler's panic is contained here; any other goes on up.
                    let (Some(seq), Some(now)) = (running.take(), now) else { resume_unwind(payload) };
                    crate::log_limit::log_limited!(Error, target: "pinion", "a panic while running a web handler was contained: {}", panic_text(&*payload));
                    if let Some(at) = self.handled(seq, now) {
                        self.set_deadline(shard, token, seq, at);
                    }
                }
            }
        }
    }

    /// [`dispatch`](Self::dispatch) until a handler panics; `running` is the seq of the request
    /// whose handler runs.
    fn dispatch_pass(&self, shard: &Rc<Shard>, token: Token, now: &mut Option<Instant>, running: &mut Option<u64>) {
        let limits = &self.server.limits;
        // The last request's deadline, noted under the next borrow (one borrow less).
        let mut deadline = None;
        loop {
            // Under one borrow: the next step; a request's slot opened, anything else done.
            let (req, meta, ahead) = {
                let mut st = self.st.borrow_mut();
                if let Some((seq, at)) = deadline.take() {
                    self.deadline_in(&mut st, shard, token, seq, at);
                }
                if st.closed() || st.linger.is_some() {
                    return;
                }
                if !st.codec.has_input() && st.deferred.is_none() {
                    // Nothing to parse (most calls: a flush, or a look before the read).
                    st.held = false;
                    return;
                }
                if paused(&st, limits) {
                    // Requests may wait in the buffer: parse them once responses made room
                    // (or once an HTTP/1.0 or unsafe request's answer came). An unsafe
                    // request read behind others goes once they are answered.
                    let taken = take_deferred(&mut st);
                    if st.body_counted != 0 {
                        // A deferred request's body, counted while it waited, leaves.
                        self.count_body_bytes(&mut st);
                    }
                    let Some((req, meta)) = taken else {
                        st.held = true;
                        return;
                    };
                    st.held = false;
                    (req, meta, Ahead::NONE)
                } else {
                    st.held = false;
                    match st.codec.next(limits) {
                        Some(Step::Request(req, meta)) => {
                            if st.body_counted != 0 {
                                // Its body left the codec with it.
                                self.count_body_bytes(&mut st);
                            }
                            st.out.open(meta, None);
                            if meta.unsafe_method() && st.out.in_flight() != 1 {
                                // Handled alone, once the requests before it are answered: its
                                // slot holds the pipeline meanwhile (RFC 9112 §9.3.2). Its body
                                // counts in the shard's bound while it waits.
                                let body = !req.body().is_empty();
                                st.deferred = Some((req, meta));
                                if body && self.count_body_bytes(&mut st) {
                                    // Past the shard's bound: refused as a body being read is
                                    // (503), answered in its turn (a body read whole in one
                                    // read was counted only here; review 63).
                                    st.deferred = None;
                                    self.refuse_over_bound(&mut st, meta.seq(), shard.now());
                                }
                                continue;
                            }
                            (req, meta, st.codec.ahead())
                        }
                        Some(Step::Refuse(meta, error)) => {
                            if st.body_counted != 0 {
                                self.count_body_bytes(&mut st);
                            }
                            self.server.stats().refused(error.status);
                            if error.close {
                                log::debug!(target: "pinion::web", "{}: closing after {error}", shard.id);
                            }
                            st.out.open(meta, None);
                            st.out.complete(meta.seq(), refusal(&error), shard.now());
                            continue;
                        }
                        Some(Step::Continue(seq)) => {
                            match self.check_head(&st) {
                                // A final answer before the body: it is not read, and the
                                // connection closes after the answer (RFC 9110 §10.1.1).
                                Some(resp) => {
                                    let meta = st.codec.abort();
                                    st.out.open(meta, None);
                                    st.out.complete(meta.seq(), resp, shard.now());
                                }
                                None => st.out.interim_continue(seq),
                            }
                            continue;
                        }
                        None => {
                            if (st.body_counted != 0 || st.codec.phase() == Phase::Body)
                                && self.count_body_bytes(&mut st)
                            {
                                self.refuse_body(&mut st, shard.now());
                            }
                            return;
                        }
                    }
                }
            };
            let now = *now.get_or_insert_with(|| shard.now());
            let seq = meta.seq();
            let to = ReplyTo { node: shard.node.id, shard: shard.id, token, conn: self.id, seq };
            let req = WebRequest::new(req, to, now);
            dispatch_begin(self.id, seq, ahead);
            *running = Some(seq);
            self.server.handler.handle(req);
            *running = None;
            // The handler took its time (a plain function may be slow, or block): the write
            // after it and the next connection's read read the clock again. (The requests
            // after it in this pass keep `now`: they were read in the same read.)
            shard.clock_stale();
            deadline = self.handled(seq, now).map(|at| (seq, at));
        }
    }

    /// The handler's answer to the head of a request whose client waits for `100 Continue`
    /// ([`Handler::check_head`]); a panic there answers 500.
    #[cold]
    fn check_head(&self, st: &State) -> Option<Response> {
        let req = st.codec.awaiting_body()?;
        // An unsafe request behind others is handed out only once they are answered.
        let waits = !req.method().is_safe() && st.out.in_flight() != 0;
        let check = || super::dispatch::checking_head(waits, || self.server.handler.check_head(req));
        let answer = catch_unwind(AssertUnwindSafe(check)).unwrap_or_else(|payload| {
            crate::log_limit::log_limited!(Error, target: "pinion", "a panic while checking a request head was contained: {}", panic_text(&*payload));
            Some(Response::status(StatusCode::INTERNAL_SERVER_ERROR))
        });
        // No stream follows this answer: one marked streamed is sent whole (as `respond` does),
        // not as a chunked head whose body never comes (a review found the client waiting).
        answer.map(Response::held)
    }

    /// What the handler of request `seq` did while it ran: an answer given at once is
    /// encoded; a deadline it set is returned, for the caller to note; response hooks its
    /// middleware left are kept for the answer.
    #[inline(always)]
    fn handled(&self, seq: u64, now: Instant) -> Option<Instant> {
        let (deadline, left) = dispatch_end();
        if left == 0 {
            return deadline;
        }
        let mut answer = if left & ANSWERED != 0 { take_answer() } else { None };
        if left & HOOKED != 0 {
            self.hook_answer(seq, &mut answer);
        }
        let Some((mut resp, request)) = answer else { return deadline };
        let mut st = self.st.borrow_mut();
        // Encoded from where it is (the common response inline).
        st.out.complete_from(seq, &mut resp, || now);
        if st.out.will_close() {
            // No request after the one whose answer closes the connection (RFC 9112 §9.6).
            st.codec.close();
        }
        resp.discard();
        if let Some(r) = request {
            st.codec.recycle(r);
        }
        None
    }

    /// The response hooks middleware left for request `seq`: run on the answer given at once,
    /// or kept for the answer to come.
    #[cold]
    #[inline(never)]
    fn hook_answer(&self, seq: u64, answer: &mut Option<Answer>) {
        let Some(hooked) = take_hooked() else { return };
        match answer {
            Some((resp, request)) => hooked.run(request.as_deref(), resp),
            None => self.st.borrow_mut().keep_hooked(seq, hooked),
        }
    }

    /// Writes what is ready; closes when the connection is done; re-arms the timer.
    fn write(&self, shard: &Rc<Shard>, token: Token) {
        let mut guard = self.st.borrow_mut();
        let st = &mut *guard;
        st.flush_queued = false;
        if st.closed() {
            return;
        }
        let (flushed, progressed) = st.write_out(shard.now());
        if progressed && st.stream_counted != 0 {
            self.count_stream_bytes(st);
        }
        if st.out.closing() {
            // A response ends the connection: no further request is processed (RFC 9112 §9.6).
            st.codec.close();
        }
        match flushed {
            Ok(Flushed::Done) => {}
            // Whole answers pile up for a client that takes nothing: each request in flight
            // (`max_in_flight`) may bring one, so they count in the shard's bound as streams
            // do once past one connection's (review 73: 6 clients that pipelined 64 GETs of
            // a 1 MiB answer each and read nothing held 384 MB).
            // A connection not cut there (the lone one spared) goes on to its timer: the idle
            // timeout ends it if its client takes nothing (review 75: it returned here, its
            // timer never armed, and held its answer as long as the client stayed).
            Ok(Flushed::Blocked) if st.out.unwritten() > MAX_STREAM_BACKLOG && self.count_stream_bytes(st) => {
                drop(guard);
                self.cut_heaviest(shard);
                guard = self.st.borrow_mut();
            }
            Ok(Flushed::Blocked) => {}
            Ok(Flushed::Close) if st.linger.is_none() => {
                // Everything is written: stop sending, and read off what the client still
                // sends for a while (see LINGER) instead of resetting.
                let _ = st.stream.shutdown(Shutdown::Write);
                let declared = st.codec.unread_body().min(LINGER_BODY_MAX) as usize;
                st.linger = Some((shard.now() + LINGER, LINGER_BYTES.max(declared)));
                st.readable = true;
                drop(guard);
                self.read(shard, token);
                guard = self.st.borrow_mut();
            }
            Ok(Flushed::Close) => {}
            Err(_) => {
                drop(guard);
                return self.close(shard, token);
            }
        }
        let st = &mut *guard;
        if st.closed() {
            return;
        }
        let finished = st.out.in_flight() == 0 && st.out.unwritten() == 0;
        if finished && st.drain_after_stream {
            // The stream a drain waited for is written: the connection drains as an idle one.
            st.drain_after_stream = false;
            if !st.out.will_close() {
                st.drain_by = Some(shard.now() + DRAIN_GRACE);
            }
        }
        // Requests read before the client's end and held back unparsed (by a bound, or by an
        // HTTP/1.0 request until its answer said whether the connection lives on) are parsed
        // and answered before the connection closes; a head or body cut by the end is not
        // waited for.
        if st.eof && finished && !st.held && st.linger.is_none() {
            drop(guard);
            return self.close(shard, token);
        }
        // Responses made room: read on, or parse what is already buffered.
        let can_parse = (st.codec.phase() != Phase::Closed || st.deferred.is_some()) && st.linger.is_none();
        let more = can_parse
            && (st.readable && !st.eof || st.held)
            && (!paused(st, &self.server.limits) || deferred_ready(st));
        self.rearm(st, shard, token);
        drop(guard);
        if more && !st_closed(&self.st) {
            // Responses made room: read on at the next flush (after others had their turn).
            self.queue_flush(shard, token);
        }
    }

    fn queue_flush(&self, shard: &Shard, token: Token) {
        flush_later(&mut self.st.borrow_mut(), shard, token);
    }

    /// Takes back a request that goes unanswered (its worker skipped it as expired: the
    /// connection answers it 504; or its client is gone), to parse the next one into. Dropped
    /// instead while the connection is busy (a worker polled within its dispatch).
    pub(crate) fn take_back(&self, request: Box<Request>) {
        if let Ok(mut st) = self.st.try_borrow_mut() {
            st.codec.recycle(request);
        }
    }

    /// A response, chunk or end of stream for request `seq`.
    pub(crate) fn deliver(&self, shard: &Shard, token: Token, seq: u64, delivery: Delivery) {
        let mut st = self.st.borrow_mut();
        if st.closed() {
            return;
        }
        match delivery {
            Delivery::Response(mut resp, request) => {
                drop(st);
                return self.deliver_response(shard, token, seq, &mut resp, request);
            }
            // The bound is the connection's, all its streams together: requests pipelined
            // behind a stream that never ends each stream too (a trial: 64 of them made one
            // connection hold 222 MB).
            Delivery::Chunk(c) => {
                if !stream_chunk_fits(&mut st, seq, &c) && !written_fits(&mut st, shard.now(), c.len()) {
                    drop(st);
                    return self.cut_slow_client(shard, token);
                }
                if self.count_stream_bytes(&mut st) {
                    delivered(&mut st, shard, token);
                    drop(st);
                    return self.cut_heaviest(shard);
                }
            }
            Delivery::Watch(w) => {
                st.out.watch_stream(seq, w);
                return;
            }
            Delivery::End => {
                st.out.stream_end(seq);
            }
            Delivery::Abort => {
                st.out.stream_abort(seq);
            }
        }
        delivered(&mut st, shard, token);
    }

    /// Counts the body being read on this connection, and a deferred request's (nothing once
    /// closed), in its server's total on this shard; true if this connection holds some and
    /// the total is now over `HttpLimits::max_body_bytes_per_shard`. Counted as a body
    /// arrives, when it leaves the codec and when a deferred request is handed out: a request
    /// without a body costs a look at two fields.
    fn count_body_bytes(&self, st: &mut State) -> bool {
        let deferred = st.deferred.as_ref().map_or(0, |(req, _)| req.body().len());
        let now = if st.closed() { 0 } else { st.codec.body_received() + deferred };
        let total = recount(&self.server.body_bytes, &mut st.body_counted, now);
        self.server.stats().set_body_bytes(total);
        now != 0 && total > self.server.limits.max_body_bytes_per_shard
    }

    /// The body being read took its shard past `max_body_bytes_per_shard`: its request is
    /// refused, 503 with `Retry-After` (the shard is busy, not the request wrong), the rest of
    /// it is not read and the connection closes after the answer.
    #[cold]
    #[inline(never)]
    fn refuse_body(&self, st: &mut State, now: Instant) {
        let meta = st.codec.abort();
        st.out.open(meta, None);
        self.refuse_over_bound(st, meta.seq(), now);
    }

    /// Request `seq`'s body (no longer held) took its shard past `max_body_bytes_per_shard`:
    /// uncounted, and answered 503 with `Retry-After` in its turn.
    #[cold]
    fn refuse_over_bound(&self, st: &mut State, seq: u64, now: Instant) {
        self.count_body_bytes(st);
        self.server.stats().refused(StatusCode::SERVICE_UNAVAILABLE);
        log::debug!(target: "pinion::web", "a request body past the shard's bound for bodies: 503");
        st.out.complete(seq, Response::status(StatusCode::SERVICE_UNAVAILABLE).header("retry-after", "1"), now);
    }

    /// Counts what waits to be written on this connection (nothing once closed) in its
    /// server's total on this shard; true if the total is now over
    /// `HttpLimits::max_stream_bytes_per_shard`. Counted when a chunk of a stream comes, when
    /// a write leaves more than [`MAX_STREAM_BACKLOG`] for a client that takes no more, and
    /// after each write until nothing is counted: a connection whose client keeps up costs
    /// nothing.
    fn count_stream_bytes(&self, st: &mut State) -> bool {
        let now = if st.closed() { 0 } else { st.out.unwritten() };
        let total = recount(&self.server.stream_bytes, &mut st.stream_counted, now);
        self.server.stats().set_stream_bytes(total);
        total > self.server.limits.max_stream_bytes_per_shard
    }

    /// Over the shard's bound for streams: cuts the connections holding the most, as slow
    /// clients, until the total is within it (a client that keeps up holds little, and is the
    /// last to go).
    #[cold]
    #[inline(never)]
    fn cut_heaviest(&self, shard: &Shard) {
        let (id, bound) = (self.server.id, self.server.limits.max_stream_bytes_per_shard);
        let conns = shard.io_filter(|s| s.as_connection().is_some_and(|c| c.server.id == id));
        // What the clients take now is written first, as for one connection's bound (a
        // review: judged before the turn's writes, a broadcast larger than the bound cut
        // clients reading as fast as they could).
        for (token, src) in &conns {
            if let Some(c) = src.as_connection() {
                c.write_and_count(shard, *token);
            }
        }
        while self.server.stream_bytes.get() > bound {
            let counted = || {
                conns.iter().filter_map(|(token, src)| {
                    let counted = src.as_connection()?.st.borrow().stream_counted;
                    (counted > 0).then_some((counted, *token, src))
                })
            };
            // A lone connection over the bound is spared: one answer larger than the bound is
            // the server's own (a download from memory to a client reading it); the bound is
            // for what many clients hold together (the idle timeout ends one that takes
            // nothing).
            if counted().nth(1).is_none() {
                return;
            }
            match counted().max_by_key(|(counted, ..)| *counted) {
                Some((_, token, src)) => {
                    if let Some(c) = src.as_connection() {
                        c.cut_slow_client(shard, token);
                    }
                }
                _ => return,
            }
        }
    }

    /// Writes what the client takes now and counts what is left, for a connection that
    /// counts something (see [`cut_heaviest`](Self::cut_heaviest)); the rest of a write (a
    /// close after the last answer, the timer) is left to the turn's flush.
    fn write_and_count(&self, shard: &Shard, token: Token) {
        let mut st = self.st.borrow_mut();
        if st.closed() || st.stream_counted == 0 {
            return;
        }
        let (flushed, progressed) = st.write_out(shard.now());
        if flushed.is_err() {
            drop(st);
            return self.close(shard, token);
        }
        self.count_stream_bytes(&mut st);
        // A client that took nothing is written again when its socket is writable: a flush
        // queued for it now would judge the bound again, and queue another (review 75: the
        // spared connection spun its shard, a write a turn).
        if progressed || !matches!(flushed, Ok(Flushed::Blocked)) {
            flush_later(&mut st, shard, token);
        }
    }

    /// Closes a connection whose client does not take what its streams send.
    #[cold]
    fn cut_slow_client(&self, shard: &Shard, token: Token) {
        log::debug!(target: "pinion::web", "{}: client too slow for its streams, closing", shard.id);
        self.server.stats().slow_client();
        self.close(shard, token);
    }

    /// A response to request `seq` (`Delivery::Response` without the `Delivery`): encoded from
    /// `resp` if it is first in line, else taken into its slot.
    #[inline(always)]
    pub(crate) fn deliver_response(
        &self,
        shard: &Shard,
        token: Token,
        seq: u64,
        resp: &mut Response,
        request: Option<Box<Request>>,
    ) {
        let mut guard = self.st.borrow_mut();
        let st = &mut *guard;
        if st.flags != 0 {
            drop(guard);
            return self.deliver_rare(shard, token, seq, resp, request);
        }
        complete(st, shard, token, seq, resp, request);
    }

    /// [`deliver_response`](Self::deliver_response) when the connection is closed (nothing to
    /// do) or some requests have response hooks: `seq`'s run first, without the connection
    /// borrowed (they are the user's code).
    #[cold]
    #[inline(never)]
    fn deliver_rare(&self, shard: &Shard, token: Token, seq: u64, resp: &mut Response, request: Option<Box<Request>>) {
        if self.st.borrow().closed() {
            return;
        }
        let hooked = self.st.borrow_mut().take_hooked(seq);
        if let Some(hooked) = hooked {
            hooked.run(request.as_deref(), resp);
        }
        let mut st = self.st.borrow_mut();
        if !st.closed() {
            complete(&mut st, shard, token, seq, resp, request);
        }
    }

    fn close(&self, shard: &Shard, token: Token) {
        let mut st = self.st.borrow_mut();
        if st.closed() {
            return;
        }
        st.flags |= CLOSED;
        st.out.close_streams();
        if st.stream_counted != 0 {
            self.count_stream_bytes(&mut st);
        }
        if st.body_counted != 0 {
            self.count_body_bytes(&mut st);
        }
        if let Some((key, _)) = st.timer.take() {
            shard.io_cancel_timer(key);
        }
        self.server.closed_one(st.codec.peer());
        // Gone for the workers holding its requests (before the token can be reused).
        shard.remote().connections.closed(token.0);
        shard.io_remove(token, &mut st.stream);
    }
}

/// Moves a connection's share of a shard-wide total from what it `counted` to `now`; the new
/// total.
fn recount(total: &std::cell::Cell<usize>, counted: &mut usize, now: usize) -> usize {
    let sum = total.get() - *counted + now;
    total.set(sum);
    *counted = now;
    sum
}

/// What every connection of a server asks for the bound of a request's body: its handler's
/// [`Handler::body_limit`]; a panic there answers 500.
pub(crate) fn body_bound(handler: Arc<dyn Handler>) -> BodyBound {
    BodyBound(Rc::new(move |req: &Request| {
        catch_unwind(AssertUnwindSafe(|| handler.body_limit(req))).map_err(|payload| {
            crate::log_limit::log_limited!(Error, target: "pinion", "a panic while asking for a body limit was contained: {}", panic_text(&*payload));
            HttpError::fatal(500, "the handler failed on the head")
        })
    }))
}

/// Lingering: reads and discards what the client still sends. True when it is time to close
/// (the client finished, failed, or sent too much); false when the socket is drained.
#[cold]
fn discard(st: &mut State) -> bool {
    let Some((_, left)) = &mut st.linger else { return true };
    let mut sink = [0u8; 16 * 1024];
    loop {
        match io::Read::read(&mut st.stream, &mut sink) {
            Ok(0) => return true,
            Ok(n) if n <= *left => *left -= n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                st.readable = false;
                return false;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            _ => return true,
        }
    }
}

/// A chunk of `seq`'s stream taken in; false if what waits for the client is now beyond the
/// bound ([`MAX_STREAM_BACKLOG`]).
fn stream_chunk_fits(st: &mut State, seq: u64, chunk: &[u8]) -> bool {
    let backlog = st.out.stream_chunk(seq, chunk);
    !backlog.is_some_and(|b| b > MAX_STREAM_BACKLOG || st.out.queued_stream_bytes() > MAX_STREAM_BACKLOG)
}

/// Over the bound with a chunk just taken: what the client takes now is written first — a
/// sender that never yields had its chunks judged before the turn's write, and a trial's fast
/// client was cut before a byte went out — then whether what is left fits, the chunk just
/// taken aside (the bound is a high-water mark: one chunk may be larger than it).
#[cold]
fn written_fits(st: &mut State, now: Instant, chunk: usize) -> bool {
    if st.write_out(now).0.is_err() {
        return false;
    }
    st.out.unsent().saturating_sub(chunk) <= MAX_STREAM_BACKLOG
        && st.out.queued_stream_bytes().saturating_sub(chunk) <= MAX_STREAM_BACKLOG
}

/// The response to `seq` takes its place in line (encoded now if it is first); its request's
/// box goes back to the codec.
#[inline(always)]
fn complete(st: &mut State, shard: &Shard, token: Token, seq: u64, resp: &mut Response, request: Option<Box<Request>>) {
    st.out.complete_from(seq, resp, || shard.now());
    if let Some(r) = request {
        st.codec.recycle(r);
    }
    delivered(st, shard, token);
}

/// Something for a response was delivered: a response that closes the connection ends request
/// processing, and the connection writes at the end of the turn.
#[inline(always)]
fn delivered(st: &mut State, shard: &Shard, token: Token) {
    if st.out.will_close() {
        // No request after the one whose answer closes the connection (RFC 9112 §9.6).
        st.codec.close();
    }
    flush_later(st, shard, token);
}

/// Writes (and reads on) at the end of the turn, once however often it is asked.
#[inline(always)]
fn flush_later(st: &mut State, shard: &Shard, token: Token) {
    if !st.flush_queued {
        st.flush_queued = true;
        shard.io_flush_later(token);
    }
}

/// Reading and dispatching wait for responses to be written (our bounds, not the client).
fn paused(st: &State, limits: &crate::http::HttpLimits) -> bool {
    st.out.in_flight() >= limits.max_in_flight || st.out.unwritten() >= MAX_UNWRITTEN || st.out.holds_pipeline()
}

/// A deferred request waits no more: the requests before it are answered (its slot is first
/// in line), and none of their answers ends the connection.
#[cold]
fn deferred_ready(st: &State) -> bool {
    st.deferred.as_ref().is_some_and(|(_, meta)| st.out.first_in_line(meta.seq())) && !st.out.will_close()
}

/// The deferred request, if it waits no more. One behind an answer that ends the connection
/// is dropped unhandled: no request after that one is processed (RFC 9112 §9.6; a review:
/// a PUT read behind a GET answered `Connection: close` ran, and its client, its answer never
/// sent, could only think it had not).
#[cold]
fn take_deferred(st: &mut State) -> Option<(Box<Request>, RequestMeta)> {
    if deferred_ready(st) {
        return st.deferred.take();
    }
    if st.out.will_close() {
        st.deferred = None;
    }
    None
}

fn st_closed(st: &RefCell<State>) -> bool {
    st.borrow().closed()
}

impl Drop for Connection {
    /// Ended with its shard (`Node::stop`) rather than closed: counted closed all the same (a
    /// review: the gauge kept such connections open).
    fn drop(&mut self) {
        let (server, st) = (&self.server, self.st.get_mut());
        if !st.closed() {
            server.closed_one(st.codec.peer());
            // What it counted in the shard-wide totals goes with it (a review: a body half
            // read at the node's stop stayed in `body_bytes`).
            if st.body_counted != 0 {
                server.stats().set_body_bytes(recount(&server.body_bytes, &mut st.body_counted, 0));
            }
            if st.stream_counted != 0 {
                server.stats().set_stream_bytes(recount(&server.stream_bytes, &mut st.stream_counted, 0));
            }
        }
    }
}

impl IoSource for Connection {
    fn ready(self: Rc<Self>, shard: &Rc<Shard>, token: Token, ready: Readiness) {
        if ready.error && self.st.borrow().eof {
            // Reset after the client's end was read: nothing more can go either way, and
            // nothing more comes in. Closed now, its streams with it (an SSE trial: a quiet
            // stream learned of a client gone only at the second chunk after, the first
            // write succeeding before the reset came back).
            return self.close(shard, token);
        }
        if ready.error && self.reset_while_paused() {
            // Reset while our bounds hold reading back (a request's answer pending, an
            // HTTP/1.0 one's among them): the read that would have seen it waits for that
            // answer, which may never come (a review: the connection, its held requests and
            // its counts stayed until the handler answered).
            return self.close(shard, token);
        }
        if ready.readable {
            let mut st = self.st.borrow_mut();
            st.readable = true;
            // The end is in the socket: read until it, short reads notwithstanding.
            st.peer_closed |= ready.read_closed;
        }
        self.pump(shard, token, true);
    }

    fn timeout(self: Rc<Self>, shard: &Rc<Shard>, token: Token, now: Instant) {
        // A head or body due: what reached the socket while the shard was busy (a slow
        // handler of another connection; its readiness not polled yet) is read before the
        // deadline is judged — the client was on time (a review: refused 408 once the clock
        // was read again after handlers). What it read is parsed, then the deadline is
        // judged as usual: a head it completed (or body bytes that earn their time at
        // `min_body_rate`) moved the phase on; a head still incomplete is late. (Re-armed
        // for the same, past, deadline instead, the timer fired again at each turn: a
        // client trickling a byte per turn on a busy shard was never refused — review 50.)
        self.st.borrow_mut().timer = None;
        if self.read_deadline_passed(now) {
            self.st.borrow_mut().readable = true;
            if self.read(shard, token) {
                // (The write re-arms the timer for the head's or body's deadline, which
                // `expired` then judges; `dispatch` keeps its one caller, `pump`: with two
                // the compiler stopped inlining it, +70 instructions a keep-alive request.)
                self.pump(shard, token, false);
            }
        }
        self.expired(shard, token, now);
    }

    fn flush(self: Rc<Self>, shard: &Rc<Shard>, token: Token) {
        let st = self.st.borrow();
        let more = st.codec.has_input() || st.held || st.readable && !st.eof;
        drop(st);
        if !more {
            // Most flushes follow answers, with nothing to parse or read: only the write (what
            // `pump` would come to after finding so).
            return self.write(shard, token);
        }
        // (Never deferred again here: the flush is that end of the turn.)
        self.pump(shard, token, false);
    }

    fn shutdown(self: Rc<Self>, shard: &Rc<Shard>, token: Token) {
        // Connections end with the shard, which serves them until every shard's processes
        // ended; the requests in flight are answered until then (and counted closed when
        // dropped with it), no other is read (a review: a shard waiting for the others read
        // new requests and handed them to ended processes), and the last answer says
        // `Connection: close`. Their streams close for their senders now: a sender waiting
        // for room (`ResponseStream::writable`) hears `false` and its process ends its handler
        // before the shutdown's deadline (a review: a worker waiting on its own shard held
        // `Node::stop` for the whole `shutdown_timeout`, then was killed). What it sends or
        // finishes still goes out.
        {
            let mut st = self.st.borrow_mut();
            if st.closed() {
                return;
            }
            st.out.close_streams();
            st.codec.close();
            if st.linger.is_none() {
                st.out.close_after_last();
            }
        }
        self.write(shard, token);
    }

    fn writing(&self) -> bool {
        let st = self.st.borrow();
        // Bytes encoded and not yet taken only: an answer queued behind a request nobody will
        // answer now (one held by a plain thread) cannot be written however long the shard
        // waits (a review: the stop waited out all of `shutdown_timeout` for it). A cut
        // stream's client gets an incomplete answer anyway: its bytes are not waited for,
        // but the whole answers encoded ahead of them are (a review: an 8 MiB answer
        // pipelined ahead of a stream the stop cut reached its client cut at 4 MiB).
        !st.closed() && st.linger.is_none() && st.out.unsent_whole()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_connection(&self) -> Option<&Connection> {
        Some(self)
    }

    fn register(&self, registry: &Registry, token: Token, interest: Interest) -> io::Result<()> {
        registry.register(&mut self.st.borrow_mut().stream, token, interest)
    }
}
