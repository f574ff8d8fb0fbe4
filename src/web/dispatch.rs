//! The request a connection is handing to its handler right now, and what the handler did
//! with it while it ran — kept in thread-locals so that a handler running inside the
//! connection's dispatch (a plain function, the router, a `WebHandler`) reaches the
//! connection without looking it up: a deadline it sets and an answer it gives at once are
//! applied by the connection when the handler returns.

use std::cell::{Cell, RefCell};
use std::time::Instant;

use crate::http::{Body, Request, Response};

/// The request being handed to a handler right now, and what the handler did with it while
/// it ran: the deadline it set, the response it gave at once (a plain function). Both are
/// applied by `dispatch` when the handler returns, without looking the connection up again.
/// The key and the deadline are plain `Cell`s (no destructor, so every check is a few
/// instructions); only an answer given at once touches the `RefCell`.
pub(crate) type Answer = (Response, Option<Box<Request>>);

thread_local! {
    /// (connection id, seq) being dispatched; (0, 0) when none (ids start at 1).
    static DISPATCH_KEY: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    static DISPATCH_DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    static DISPATCH_ANSWER: RefCell<Option<Answer>> = const { RefCell::new(None) };
}

/// Starts handing (conn, seq) to a handler.
pub(crate) fn dispatch_begin(conn: u64, seq: u64) {
    DISPATCH_KEY.set((conn, seq));
    DISPATCH_DEADLINE.set(None);
}

/// Ends it: what the handler did.
pub(crate) fn dispatch_end() -> (Option<Instant>, Option<Answer>) {
    DISPATCH_KEY.set((0, 0));
    let answer = DISPATCH_ANSWER.with(|a| a.borrow_mut().take());
    (DISPATCH_DEADLINE.take(), answer)
}

/// A handler sets the deadline of the request it is being handed: noted for `dispatch`. False
/// for any other request.
pub(crate) fn note_deadline(conn: u64, seq: u64, at: Instant) -> bool {
    if DISPATCH_KEY.get() != (conn, seq) {
        return false;
    }
    DISPATCH_DEADLINE.set(Some(at));
    true
}

/// A handler answers the request it is being handed: kept for `dispatch` (the response is
/// taken, an empty one left in its place). False for anything else, `resp` untouched.
#[inline]
pub(crate) fn answer_now(conn: u64, seq: u64, resp: &mut Response, req: &mut Option<Box<Request>>) -> bool {
    // A streamed head goes the normal way: its chunks follow through `deliver`.
    if DISPATCH_KEY.get() != (conn, seq) || matches!(resp.body, Body::Streamed) {
        return false;
    }
    keep_answer(resp, req);
    true
}

fn keep_answer(resp: &mut Response, req: &mut Option<Box<Request>>) {
    DISPATCH_KEY.set((0, 0)); // answered: anything more for it goes the normal way
    let answer = (resp.take(), req.take());
    DISPATCH_ANSWER.with(|a| *a.borrow_mut() = Some(answer));
}
