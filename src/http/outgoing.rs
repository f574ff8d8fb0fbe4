//! [`Outgoing`]: the write half of a connection. One slot per request in flight, in request
//! order; responses complete their slots in any order and are encoded strictly in order (one
//! first in line as it completes, the others that became ready behind it in one pass per
//! flush), then written with as few `write` calls as the peer allows.

use std::io::{self, Write};
use std::rc::Rc;
use std::time::Instant;

use super::backlog::StreamWatch;
use super::conn::RequestMeta;
use super::encode::{self, Answering};
use super::request::{Method, Version};
use super::response::{Body, Response, StatusCode};
use super::spares::Spares;

/// A request in flight, in request order.
#[derive(Debug)]
enum Slot {
    Waiting {
        meta: RequestMeta,
        deadline: Option<Instant>,
    },
    Ready {
        meta: RequestMeta,
        resp: Response,
    },
    /// A streamed body: chunks encoded so far (when not yet at the head of the line).
    Streaming {
        chunked: bool,
        keep_alive: bool,
        pending: Vec<u8>,
        finished: bool,
        /// The sender's view of whether the stream is open (see [`StreamWatch`]).
        watch: Option<StreamWatch>,
    },
    /// Room in [`Slots`] outside its line (never in the line).
    Vacant,
}

/// The slots in request order: a ring whose size is a power of two, so that the first slot,
/// the next free one and the one of a seq are found with a mask, where a `VecDeque` wraps
/// its index with a comparison at each access.
#[derive(Debug, Default)]
struct Slots {
    /// Every entry outside the line is `Vacant`.
    ring: Vec<Slot>,
    /// Where the line starts in `ring`.
    first: usize,
    len: usize,
}

impl Slots {
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The ring's index of the `i`-th slot in line (`ring` is not empty).
    #[inline(always)]
    fn at(&self, i: usize) -> usize {
        (self.first + i) & (self.ring.len() - 1)
    }

    #[inline(always)]
    fn get(&self, i: usize) -> Option<&Slot> {
        if i < self.len { self.ring.get(self.at(i)) } else { None }
    }

    #[inline(always)]
    fn get_mut(&mut self, i: usize) -> Option<&mut Slot> {
        if i < self.len {
            let at = self.at(i);
            self.ring.get_mut(at)
        } else {
            None
        }
    }

    #[inline(always)]
    fn front(&self) -> Option<&Slot> {
        self.get(0)
    }

    #[inline(always)]
    fn front_mut(&mut self) -> Option<&mut Slot> {
        self.get_mut(0)
    }

    #[inline(always)]
    fn pop_front(&mut self) -> Option<Slot> {
        if self.len == 0 {
            return None;
        }
        let first = self.first;
        let slot = std::mem::replace(self.ring.get_mut(first)?, Slot::Vacant);
        self.first = self.at(1);
        self.len -= 1;
        Some(slot)
    }

    /// Opens a `Waiting` slot at the back, written in place: a slot built first and then
    /// moved in would copy all of `Slot` (a `Response` wide) for a few fields.
    #[inline(always)]
    fn push_waiting(&mut self, meta: RequestMeta, deadline: Option<Instant>) {
        if self.len == self.ring.len() {
            self.grow();
        }
        let at = self.at(self.len);
        // (Known `Vacant`, it owns nothing: overwritten without a drop.)
        if let Some(vacant @ Slot::Vacant) = self.ring.get_mut(at) {
            *vacant = Slot::Waiting { meta, deadline };
            self.len += 1;
        } else {
            debug_assert!(false, "INVARIANT: the slot past the line is vacant");
        }
    }

    /// Twice the room (at least 2: a keep-alive connection that does not pipeline needs no
    /// more, and an idle one keeps its ring; a slot is a `Response` wide), the line moved to
    /// the start.
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let size = (self.ring.len() * 2).max(2);
        let mut ring: Vec<Slot> = Vec::with_capacity(size);
        for i in 0..self.len {
            let at = self.at(i);
            ring.push(std::mem::replace(&mut self.ring[at], Slot::Vacant));
        }
        ring.resize_with(size, || Slot::Vacant);
        (self.ring, self.first) = (ring, 0);
    }

    fn clear(&mut self) {
        while self.pop_front().is_some() {}
        self.first = 0;
    }
}

/// Responses in, bytes out, in request order.
#[derive(Debug)]
pub(crate) struct Outgoing {
    out: Vec<u8>,
    /// Bytes of `out` already written.
    written: usize,
    /// The first slot's seq.
    head_seq: u64,
    slots: Slots,
    /// A `100 Continue` owed to this seq once everything before it is written.
    continue_for: Option<u64>,
    /// A response that ends the connection was encoded: write it, then close.
    closing: bool,
    /// A response that ends the connection was given (it may still wait behind others).
    close_given: bool,
    /// The first stream in line cut short (`stream_abort`), if any: its client gets an
    /// incomplete answer however much more of it is written; what is encoded ahead of it is
    /// whole answers.
    cut: Option<u64>,
    /// The stream first in line when its bytes first went into `out` (its seq), and where
    /// they began (counted as `written_total` counts): where a cut stream's bytes begin.
    stream_start: Option<(u64, u64)>,
    /// Body bytes of `Ready` slots.
    ready_bytes: usize,
    /// Bytes of streamed bodies waiting behind the head of the line (their slots' `pending`).
    stream_bytes: usize,
    /// Requests still `Waiting` that hold the pipeline (see `holds_pipeline`).
    waiting_holds: usize,
    written_total: u64,
    /// The `Date` of the responses encoded now.
    date: KeptDate,
    /// No waiting request's deadline is earlier (see `next_deadline`).
    deadline_floor: Option<Instant>,
    /// Where the write buffer comes from and goes back to.
    spares: Rc<Spares>,
}

/// How a write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flushed {
    /// Everything encoded is written; more may come.
    Done,
    /// The peer is not taking more now (`WouldBlock`).
    Blocked,
    /// Everything is written and the connection must close now.
    Close,
}

impl Outgoing {
    /// Takes its write buffer from `spares` while it has bytes to write.
    pub(crate) fn new(spares: &Rc<Spares>) -> Outgoing {
        Outgoing {
            out: Vec::new(),
            written: 0,
            head_seq: 0,
            slots: Slots::default(),
            continue_for: None,
            closing: false,
            close_given: false,
            cut: None,
            stream_start: None,
            ready_bytes: 0,
            stream_bytes: 0,
            waiting_holds: 0,
            written_total: 0,
            date: KeptDate::default(),
            deadline_floor: None,
            spares: spares.clone(),
        }
    }

    /// A response that ends the connection was encoded.
    pub(crate) fn closing(&self) -> bool {
        self.closing
    }

    /// Bytes written since the connection opened.
    pub(crate) fn written_total(&self) -> u64 {
        self.written_total
    }

    /// Every request before `seq` is answered (and encoded): `seq`'s slot is first in line.
    pub(crate) fn first_in_line(&self, seq: u64) -> bool {
        seq == self.head_seq
    }

    /// Requests in flight (answered or not, not yet written).
    pub(crate) fn in_flight(&self) -> usize {
        self.slots.len()
    }

    /// Bytes waiting to be written: encoded ones, plus the bodies of responses completed since
    /// the last write (encoded by the next one).
    pub(crate) fn unwritten(&self) -> usize {
        self.out.len() - self.written + self.ready_bytes + self.stream_bytes
    }

    /// Bytes encoded and not yet written: what the client has not taken (what waits behind
    /// the head of the line waits on us, not on it).
    pub(crate) fn unsent(&self) -> usize {
        self.out.len() - self.written
    }

    /// Bytes of streamed bodies waiting behind the head of the line, all streams together.
    pub(crate) fn queued_stream_bytes(&self) -> usize {
        self.stream_bytes
    }

    /// The connection closed: every stream is closed for its sender.
    pub(crate) fn close_streams(&mut self) {
        for i in 0..self.slots.len() {
            if let Some(Slot::Streaming { watch, .. }) = self.slots.get_mut(i) {
                *watch = None;
            }
        }
    }

    /// `seq`'s stream keeps `w` while it is open; dropped at once (the stream closed for its
    /// sender) if `seq` is not streaming (HEAD, a bodiless status, ended, or gone).
    pub(crate) fn watch_stream(&mut self, seq: u64, w: StreamWatch) {
        if let Some(Slot::Streaming { finished: false, watch, .. }) = self.slot_mut(seq) {
            *watch = Some(w);
        }
    }

    /// Nothing to write until an answer comes: the first request in line waits for its
    /// response (what follows it waits behind it), every byte encoded is written, and no
    /// `100 Continue` or close is owed.
    pub(crate) fn waits_for_answers(&self) -> bool {
        matches!(self.slots.front(), Some(Slot::Waiting { .. }))
            && self.written == self.out.len()
            && !self.closing
            && self.continue_for.is_none()
    }

    /// Opens the slot of a request (`meta.seq` must follow the last one opened).
    #[inline]
    pub(crate) fn open(&mut self, meta: RequestMeta, deadline: Option<Instant>) {
        debug_assert_eq!(meta.seq(), self.head_seq + self.slots.len() as u64);
        if meta.holds_pipeline() {
            self.waiting_holds += 1;
        }
        self.slots.push_waiting(meta, deadline);
    }

    /// A request that holds the pipeline waits for its answer, so nothing pipelined behind it
    /// is processed until it is known: an HTTP/1.0 one (whether its connection survives
    /// depends on that answer — a streamed body must end with the connection —, RFC 9112
    /// §9.6: no request after the closing one), or one of an unsafe method (RFC 9112 §9.3.2:
    /// pipelined requests are processed in parallel only while all are safe).
    pub(crate) fn holds_pipeline(&self) -> bool {
        self.waiting_holds > 0
    }

    /// A response already given ends the connection once written.
    pub(crate) fn will_close(&self) -> bool {
        self.closing || self.close_given
    }

    /// The last request opened is answered by a stream: its head, encoded with it, can no
    /// longer say `Connection: close`.
    pub(crate) fn last_streams(&self) -> bool {
        let Some(last) = self.slots.len().checked_sub(1) else { return false };
        matches!(self.slots.get(last), Some(Slot::Streaming { keep_alive: true, .. }))
    }

    /// Makes the answer to the last request opened the connection's last: it says
    /// `Connection: close` (unless its head is out already: a stream's), and the connection
    /// closes once it is written; with no request open, once what is encoded is written.
    pub(crate) fn close_after_last(&mut self) {
        let Some(last) = self.slots.len().checked_sub(1) else {
            self.closing = true;
            return;
        };
        match self.slots.get_mut(last) {
            Some(Slot::Waiting { meta, .. } | Slot::Ready { meta, .. }) => *meta = meta.closing(),
            Some(Slot::Streaming { keep_alive, .. }) => *keep_alive = false,
            Some(Slot::Vacant) | None => {}
        }
    }

    /// A `100 Continue` is owed and not yet encoded: the client waits on us.
    pub(crate) fn continue_owed(&self) -> bool {
        self.continue_for.is_some()
    }

    /// Answers `100 Continue` to `seq` as soon as everything before it is written.
    pub(crate) fn interim_continue(&mut self, seq: u64) {
        self.continue_for = Some(seq);
    }

    fn slot_mut(&mut self, seq: u64) -> Option<&mut Slot> {
        let i = seq.checked_sub(self.head_seq)?;
        self.slots.get_mut(i as usize)
    }

    /// The response to `seq`. False if that request is not waiting (answered already, e.g. by
    /// a timeout, or the connection is gone): the response is dropped.
    pub(crate) fn complete(&mut self, seq: u64, mut resp: Response, now: Instant) -> bool {
        let done = self.complete_from(seq, &mut resp, || now);
        resp.discard();
        done
    }

    /// [`complete`](Self::complete) without taking the response: one first in line is encoded
    /// from where it is (the caller drops it); one that must wait is moved into its slot,
    /// leaving an empty response behind.
    /// `now` reads the caller's clock, for the `Date` (see [`KeptDate`]).
    #[inline(always)]
    pub(crate) fn complete_from(&mut self, seq: u64, resp: &mut Response, now: impl Fn() -> Instant) -> bool {
        // The common case, inlined: the first in line, a keep-alive HTTP/1.1 request of a safe
        // method (one that does not hold the pipeline: nothing to count), a response whose
        // head is cached.
        if let (true, Some(&Slot::Waiting { meta, .. })) = (seq == self.head_seq && !self.closing, self.slots.front())
            && meta.keep_alive()
            && !meta.holds_pipeline()
            && encode::encode_cached(resp, meta.method(), self.date.get(&now), room(&mut self.out, &self.spares))
        {
            self.take_front(seq);
            self.finish_slot(true);
            return true;
        }
        self.complete_general(seq, resp, now())
    }

    /// Takes the `Waiting` slot of `seq`, first in line, out of the line (a `100 Continue`
    /// owed to it is moot: its answer is being encoded).
    #[inline(always)]
    fn take_front(&mut self, seq: u64) {
        // A `Waiting` slot owns nothing: forgotten, it is not copied out to be dropped.
        std::mem::forget(self.slots.pop_front());
        if self.continue_for == Some(seq) {
            self.continue_for = None;
        }
    }

    /// [`complete_from`](Self::complete_from) for any response.
    #[inline(never)]
    fn complete_general(&mut self, seq: u64, resp: &mut Response, now: Instant) -> bool {
        if !(200..=599).contains(&resp.status.0) {
            // A final response cannot be 1xx (the client would wait for another) or outside
            // 100..=599 (RFC 9110 §15: invalid; 600..=999 are for a library's own use).
            log::warn!(target: "pinion::web", "a handler answered status {}: sent as 500", resp.status.0);
            *resp = Response::status(StatusCode::INTERNAL_SERVER_ERROR);
        }
        if seq == self.head_seq && !self.closing && !matches!(resp.body, Body::Streamed) {
            // First in line: encoded now, without a stop in the slot (a `100 Continue` owed to
            // it is moot, as in `encode_ready`).
            let Some(&Slot::Waiting { meta, .. }) = self.slots.front() else { return false };
            self.take_front(seq);
            if meta.holds_pipeline() {
                self.waiting_holds -= 1;
            }
            self.close_given |= !meta.keep_alive() || !resp.headers.is_empty() && resp.asks_close();
            self.encode_front(meta, resp, now);
            return true;
        }
        let Some(i) = seq.checked_sub(self.head_seq) else { return false };
        let Some(slot) = self.slots.get_mut(i as usize) else { return false };
        let Slot::Waiting { meta, .. } = *slot else { return false };
        if meta.holds_pipeline() {
            self.waiting_holds -= 1;
        }
        *slot = if matches!(resp.body, Body::Streamed)
            && meta.method() != Method::Head
            && !resp.status.no_content()
            && !encode::opens_tunnel(meta.method(), resp.status)
        {
            let mut head = Vec::new();
            let keep_alive = encode::encode(resp, answering(meta), self.date.get(|| now), &mut head);
            self.close_given |= !keep_alive;
            self.stream_bytes += head.len();
            Slot::Streaming {
                chunked: meta.version() == Version::Http11,
                keep_alive,
                pending: head,
                finished: false,
                watch: None,
            }
        } else {
            self.ready_bytes += resp.body_bytes().len();
            self.close_given |= !meta.keep_alive() || !resp.headers.is_empty() && resp.asks_close();
            Slot::Ready { meta, resp: resp.take() }
        };
        true
    }

    /// A chunk of `seq`'s streamed body. Returns how many bytes of that stream now wait to be
    /// written (`None` if `seq` is not streaming).
    pub(crate) fn stream_chunk(&mut self, seq: u64, data: &[u8]) -> Option<usize> {
        if self.closing {
            return None;
        }
        let at_head = seq == self.head_seq;
        let i = seq.checked_sub(self.head_seq)? as usize;
        let Some(Slot::Streaming { chunked, pending, finished: false, watch, .. }) = self.slots.get_mut(i) else {
            return None;
        };
        let before = pending.len();
        encode::encode_chunk(data, *chunked, pending);
        let backlog = if at_head {
            note_stream_start(&mut self.stream_start, seq, self.written_total + (self.out.len() - self.written) as u64);
            // First in line: its head and earlier chunks are in `pending` or already out.
            // What waited in `pending` (it became first since the last write) was counted
            // behind the line: it goes out now (a review found it counted for good, and the
            // connection, its unwritten bytes never 0, stalled).
            debug_assert!(self.stream_bytes >= before, "stream bytes counted: {}", self.stream_bytes);
            self.stream_bytes = self.stream_bytes.saturating_sub(before);
            room(&mut self.out, &self.spares).append(pending);
            self.out.len() - self.written
        } else {
            self.stream_bytes += pending.len() - before;
            pending.len()
        };
        // (Its own bytes only: those of streams behind it go out after it ends, and counting them
        // kept a paced sender in front waiting for good, a review found.)
        if let Some(w) = watch {
            w.took_in(data.len(), backlog);
        }
        Some(backlog)
    }

    /// `seq` is answered 504 (or whatever `expire` is given) if still waiting at `deadline`.
    pub(crate) fn set_deadline(&mut self, seq: u64, at: Instant) {
        if let Some(Slot::Waiting { deadline, .. }) = self.slot_mut(seq) {
            *deadline = Some(at);
            // (Most deadlines are later than the floor: one comparison, no store.)
            if self.deadline_floor.is_none_or(|floor| at < floor) {
                self.deadline_floor = Some(at);
            }
        }
    }

    /// `seq`'s streamed body is cut short: what was sent is written, then the connection
    /// closes (the client sees a truncated body, not a complete-looking one).
    pub(crate) fn stream_abort(&mut self, seq: u64) -> bool {
        let Some(Slot::Streaming { keep_alive, finished, .. }) = self.slot_mut(seq) else { return false };
        if *finished {
            return false;
        }
        *finished = true;
        *keep_alive = false;
        self.close_given = true;
        // The first cut *in line* (not in time): the bytes from where its stream began are
        // incomplete whatever else was cut, and a stream cut behind it (by its handler,
        // before the stop cut this one) must not hide this one's bytes from `unsent_whole`
        // (a review: the stop then waited out `shutdown_timeout` for them).
        self.cut = Some(self.cut.map_or(seq, |c| c.min(seq)));
        true
    }

    /// Bytes of whole answers are encoded and not yet written: everything encoded but the
    /// bytes of a stream cut short (its client gets an incomplete answer anyway), which come
    /// last (nothing is encoded after a cut stream).
    pub(crate) fn unsent_whole(&self) -> bool {
        let end = match (self.cut, self.stream_start) {
            (Some(cut), Some((seq, at))) if cut == seq => at,
            _ => self.written_total + self.unsent() as u64,
        };
        self.written_total < end
    }

    /// The end of `seq`'s streamed body.
    pub(crate) fn stream_end(&mut self, seq: u64) -> bool {
        let Some(Slot::Streaming { chunked, pending, finished, .. }) = self.slot_mut(seq) else { return false };
        if *finished {
            return false;
        }
        *finished = true;
        let before = pending.len();
        encode::encode_last_chunk(*chunked, pending);
        // (Counted at the head too: `encode_waiting` moves it out, and uncounts it.)
        self.stream_bytes += pending.len() - before;
        true
    }

    /// Request `seq` waits for its answer with a deadline that has passed at `now`.
    pub(crate) fn due(&self, seq: u64, now: Instant) -> bool {
        let Some(i) = seq.checked_sub(self.head_seq) else { return false };
        matches!(self.slots.get(i as usize), Some(Slot::Waiting { deadline: Some(d), .. }) if *d <= now)
    }

    /// Answers every waiting request whose deadline has passed with `status`; returns how many.
    pub(crate) fn expire(&mut self, now: Instant, status: StatusCode) -> usize {
        let mut n = 0;
        // The floor made exact again, from the deadlines that stay.
        self.deadline_floor = None;
        for i in 0..self.slots.len() {
            let Some(slot) = self.slots.get_mut(i) else { break };
            if let Slot::Waiting { meta, deadline: Some(d) } = *slot {
                if d > now {
                    self.deadline_floor = Some(self.deadline_floor.map_or(d, |f| f.min(d)));
                } else {
                    if meta.holds_pipeline() {
                        self.waiting_holds -= 1;
                    }
                    let resp = Response::status(status);
                    self.ready_bytes += resp.body_bytes().len();
                    self.close_given |= !meta.keep_alive();
                    *slot = Slot::Ready { meta, resp };
                    n += 1;
                }
            }
        }
        n
    }

    /// When the earliest deadline of a waiting request may be due: never later than it, but
    /// possibly earlier, as the requests that had the earlier ones were answered meanwhile
    /// (a timer set for it finds nothing due, and `expire` makes the floor exact). Kept
    /// instead of looked for: a look would go through every request in flight each time the
    /// connection writes.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        if self.slots.is_empty() {
            self.deadline_floor = None;
        }
        self.deadline_floor
    }

    /// Moves every response at the head of the line into the output buffer.
    #[inline(always)]
    fn encode_ready(&mut self, now: Instant) {
        // Most writes find nothing to encode here (the common answers were encoded as they
        // came): a few compares, not a call.
        if self.continue_for.is_some()
            || self.closing
            || matches!(self.slots.front(), Some(Slot::Ready { .. } | Slot::Streaming { .. }))
        {
            self.encode_waiting(now);
        }
    }

    #[inline(never)]
    fn encode_waiting(&mut self, now: Instant) {
        loop {
            // Closing first: after the closing response (a cut stream's among them) nothing is
            // written, not even an interim 100 owed to the request behind it.
            if self.closing {
                self.slots.clear();
                self.ready_bytes = 0;
                self.stream_bytes = 0;
                self.waiting_holds = 0;
                self.continue_for = None;
                return;
            }
            if self.continue_for == Some(self.head_seq) {
                // Only while the request is still waiting (an early answer makes it moot).
                if matches!(self.slots.front(), None | Some(Slot::Waiting { .. })) {
                    room(&mut self.out, &self.spares).extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                self.continue_for = None;
            }
            match self.slots.front_mut() {
                Some(Slot::Ready { .. }) => {
                    let Some(Slot::Ready { meta, resp }) = self.slots.pop_front() else { return };
                    self.ready_bytes -= resp.body_bytes().len();
                    self.encode_front(meta, &resp, now);
                }
                Some(Slot::Streaming { pending, finished, keep_alive, .. }) => {
                    // What waited behind the line is counted no more (first in line, a
                    // stream's chunks go straight out).
                    debug_assert!(self.stream_bytes >= pending.len(), "stream bytes counted: {}", self.stream_bytes);
                    self.stream_bytes = self.stream_bytes.saturating_sub(pending.len());
                    let at = self.written_total + (self.out.len() - self.written) as u64;
                    note_stream_start(&mut self.stream_start, self.head_seq, at);
                    room(&mut self.out, &self.spares).append(pending);
                    if !*finished {
                        return;
                    }
                    let keep_alive = *keep_alive;
                    self.slots.pop_front();
                    self.finish_slot(keep_alive);
                }
                _ => return,
            }
        }
    }

    /// Encodes the response to the request at the head of the line (its slot already taken
    /// out) and moves the line on.
    #[inline(always)]
    fn encode_front(&mut self, meta: RequestMeta, resp: &Response, now: Instant) {
        let keep_alive =
            encode::encode(resp, answering(meta), self.date.get(|| now), room(&mut self.out, &self.spares));
        self.finish_slot(keep_alive);
    }

    #[inline]
    fn finish_slot(&mut self, keep_alive: bool) {
        self.head_seq += 1;
        if !keep_alive {
            self.closing = true;
        }
    }

    /// Tells the stream first in line, if any, what waits for the client after a write.
    #[inline(always)]
    fn tell_stream(&self) {
        if let Some(Slot::Streaming { watch: Some(w), .. }) = self.slots.front() {
            w.set_queued(self.out.len() - self.written);
        }
    }

    /// Writes what is encoded, with as few `write` calls as the peer allows.
    /// `now`: the caller's clock, for the `Date` (see [`encode::date_at`]).
    pub(crate) fn write_to<W: Write>(&mut self, io: &mut W, now: Instant) -> io::Result<Flushed> {
        // Responses that waited behind others are encoded here, in one pass.
        self.encode_ready(now);
        // The next responses look at the clock again.
        self.date.checked = false;
        while self.written < self.out.len() {
            match io.write(&self.out[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    self.written_total += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.tell_stream();
                    return Ok(Flushed::Blocked);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // All written: the buffer goes back to the spares.
        self.spares.give_write_buf(std::mem::take(&mut self.out));
        self.written = 0;
        self.tell_stream();
        Ok(if self.closing { Flushed::Close } else { Flushed::Done })
    }
}

/// `out`, holding a buffer from `spares` if it held none.
#[inline(always)]
fn room<'a>(out: &'a mut Vec<u8>, spares: &Spares) -> &'a mut Vec<u8> {
    if out.capacity() == 0 {
        // (The empty buffer replaced owns nothing: no drop to check for.)
        std::mem::forget(std::mem::replace(out, spares.take_write_buf()));
    }
    out
}

/// The `Date` of a connection's responses: the thread's (see [`encode::date_at`]), kept with
/// the connection until the end of its second by the caller's clock. The clock is looked at
/// once per write, by the first response encoded after it: the responses encoded between two
/// writes share a date, so that a pipelined batch costs one look, not one per response.
#[derive(Debug, Default)]
struct KeptDate {
    /// The clock was looked at since the last write.
    checked: bool,
    until: Option<Instant>,
    date: encode::Date,
}

impl KeptDate {
    #[inline(always)]
    fn get(&mut self, now: impl FnOnce() -> Instant) -> &encode::Date {
        if !self.checked {
            let now = now();
            if self.until.is_none_or(|until| now >= until) {
                (self.until, self.date) = encode::date_at(now);
            }
            self.checked = true;
        }
        &self.date
    }
}

fn answering(meta: RequestMeta) -> Answering {
    Answering { method: meta.method(), version: meta.version(), keep_alive: meta.keep_alive() }
}

/// The stream `seq`, first in line, puts bytes into `out` at `at`: noted the first time (see
/// `Outgoing::stream_start`).
#[inline]
fn note_stream_start(start: &mut Option<(u64, u64)>, seq: u64, at: u64) {
    if start.is_none_or(|(s, _)| s != seq) {
        *start = Some((seq, at));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn meta(seq: u64) -> RequestMeta {
        RequestMeta::new(seq, Method::Get, Version::Http11, true)
    }

    #[test]
    fn stream_bytes_are_uncounted_when_a_stream_becomes_first_between_writes() {
        let mut out = Outgoing::new(&Spares::new());
        out.open(meta(0), None);
        out.open(meta(1), None);
        let mut head = Response::text("");
        head.body = Body::Streamed;
        assert!(out.complete(1, head, Instant::now()));
        assert!(out.queued_stream_bytes() > 0);
        out.stream_chunk(1, b"early");
        // The request before it is answered (fast path): the stream is head now, unwritten.
        assert!(out.complete(0, Response::text("a"), Instant::now()));
        // A chunk arrives in the same turn, before the write.
        out.stream_chunk(1, b"late");
        out.stream_end(1);
        let mut sink = Vec::new();
        assert_eq!(out.write_to(&mut sink, Instant::now()).unwrap(), Flushed::Done);
        let text = String::from_utf8(sink).unwrap();
        assert!(text.ends_with("5\r\nearly\r\n4\r\nlate\r\n0\r\n\r\n"), "{text:?}");
        assert_eq!(out.in_flight(), 0);
        assert_eq!(out.queued_stream_bytes(), 0, "stream_bytes drifted");
        assert_eq!(out.unwritten(), 0, "unwritten() never returns to 0");
    }

    #[test]
    fn slots_keep_request_order_across_wrapping_and_growth() {
        let mut out = Outgoing::new(&Spares::new());
        let answer = |out: &mut Outgoing, s: u64| {
            assert!(out.complete(s, Response::text(format!("<{s}>")), Instant::now()));
            assert!(!out.complete(s, Response::text("twice"), Instant::now()));
        };
        (0..5).for_each(|s| out.open(meta(s), None));
        // The first three answered in order: the line starts further in the ring ...
        (0..3).for_each(|s| answer(&mut out, s));
        // ... so that the next ones wrap around it, and it grows while wrapped.
        (5..21).for_each(|s| out.open(meta(s), None));
        assert_eq!(out.in_flight(), 18);
        (3..21).rev().for_each(|s| answer(&mut out, s));
        let mut sink = Vec::new();
        assert_eq!(out.write_to(&mut sink, Instant::now()).unwrap(), Flushed::Done);
        assert_eq!(out.in_flight(), 0);
        let text = String::from_utf8(sink).unwrap();
        let bodies: String = text.split("\r\n\r\n").skip(1).map(|b| b.split("HTTP/1.1").next().unwrap()).collect();
        assert_eq!(bodies, (0..21).map(|s| format!("<{s}>")).collect::<String>());
    }

    #[test]
    fn an_invalid_status_is_never_sent_with_a_cached_head() {
        let mut out = Outgoing::new(&Spares::new());
        let text = |out: &mut Outgoing| {
            let mut sink = Vec::new();
            out.write_to(&mut sink, Instant::now()).unwrap();
            String::from_utf8(sink).unwrap()
        };
        let owned = |t: &str| Response::text("x").header("content-type", t.to_owned());
        out.open(meta(0), None);
        out.complete(0, owned("text/x"), Instant::now());
        assert!(text(&mut out).starts_with("HTTP/1.1 200 OK\r\n"));
        // A head too long to cache empties the cache (its bytes stay) ...
        out.open(meta(1), None);
        out.complete(1, owned(&format!("text/{}", "y".repeat(300))), Instant::now());
        assert!(text(&mut out).starts_with("HTTP/1.1 200 OK\r\n"));
        // ... and no status matches an empty cache, not even 0 (sent as 500; the cached
        // length is still that of `text/x`, and the bytes there those of `text/y…`).
        out.open(meta(2), None);
        out.complete(2, owned("text/y").with_status(StatusCode(0)), Instant::now());
        assert!(text(&mut out).starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
    }

    #[test]
    fn the_deadline_floor_is_never_late_and_made_exact_by_expire() {
        let mut out = Outgoing::new(&Spares::new());
        let t0 = Instant::now();
        let (t1, t2) = (t0 + Duration::from_secs(1), t0 + Duration::from_secs(2));
        out.open(meta(0), None);
        out.open(meta(1), None);
        out.set_deadline(1, t2);
        assert_eq!(out.next_deadline(), Some(t2));
        out.set_deadline(0, t1);
        assert_eq!(out.next_deadline(), Some(t1));
        // The request with the earlier deadline is answered: the floor may stay early ...
        assert!(out.complete(0, Response::text("a"), Instant::now()));
        assert!(out.next_deadline().is_some_and(|d| d <= t2));
        // ... until a timer at it finds nothing due.
        assert_eq!(out.expire(t1, StatusCode::GATEWAY_TIMEOUT), 0);
        assert_eq!(out.next_deadline(), Some(t2));
        assert_eq!(out.expire(t2, StatusCode::GATEWAY_TIMEOUT), 1);
        assert_eq!(out.next_deadline(), None);
        // Nothing in flight, no deadline.
        let mut sink = Vec::new();
        assert_eq!(out.write_to(&mut sink, Instant::now()).unwrap(), Flushed::Done);
        assert_eq!(out.next_deadline(), None);
        let text = String::from_utf8(sink).unwrap();
        assert!(text.contains("200 OK") && text.contains("504 Gateway Timeout"), "{text}");
    }
}
