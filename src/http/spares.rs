//! What the connections of a server on a shard recycle, shared between them: request boxes,
//! read buffers and write buffers. A connection holds a buffer only while it has bytes in it (a
//! read not yet parsed, a response not yet written) and a request only while it is in flight;
//! the rest of the time they wait here, most recently used first.
//!
//! Why shared and not per connection: the working set. With 64 connections pipelining 16 deep,
//! per-connection spares kept about a thousand requests and 64 read and 64 write buffers in
//! turn — far more than the L1 data cache holds, so every request's parse and every response's
//! encoding began with cache misses. Taken from one list, the same few (as many as are in
//! flight on the shard at once) are used again while still in cache. An idle keep-alive
//! connection holds no buffer at all.
//!
//! Held through an `Rc` by each connection's `Codec` and `Outgoing`, not in a thread-local:
//! an access is two loads, where a thread-local's accessor was an indirect call wherever the
//! compiler did not inline `LocalKey::with`.

use std::cell::Cell;
use std::rc::Rc;

use super::request::Request;

/// Least room offered to one `read` call (a read buffer's size unless a request needs more).
pub(crate) const READ_CHUNK: usize = 8 * 1024;

/// Buffers whose capacity grew past this (one big request or response) are freed rather than
/// kept, so what a server keeps on a shard is bounded however big a burst was: at most 512
/// requests with up to this much of head and of body each (16 MiB), 64 read buffers (1 MiB)
/// and 256 write buffers (4 MiB). Not "a few MiB": review 65 measured 7.2 MiB kept for good
/// after one client's 8 connections pipelined 64 GETs each with a 7 KB head.
pub(crate) const KEEP_AT_MOST: usize = 16 * 1024;

/// A bounded stack of spares: taking one and giving one back are a few loads and stores (no
/// borrow flag, no growth check), as they happen for every request.
struct Stack<T, const N: usize> {
    /// INVARIANT: `items[..len]` are `Some`, the rest `None`.
    len: Cell<usize>,
    items: [Cell<Option<T>>; N],
}

impl<T, const N: usize> Stack<T, N> {
    fn new() -> Self {
        Stack { len: Cell::new(0), items: [const { Cell::new(None) }; N] }
    }

    #[inline(always)]
    fn pop(&self) -> Option<T> {
        let n = self.len.get().checked_sub(1)?;
        let item = self.items.get(n)?.take();
        self.len.set(n);
        debug_assert!(item.is_some());
        item
    }

    /// Keeps `item` if there is room (it is dropped otherwise).
    #[inline(always)]
    fn push(&self, item: T) {
        let n = self.len.get();
        if let Some(cell) = self.items.get(n) {
            // (`None` by the invariant: nothing is dropped.)
            std::mem::forget(cell.replace(Some(item)));
            self.len.set(n + 1);
        }
    }
}

/// The spares of a server's connections on one shard (see the module docs).
pub(crate) struct Spares {
    requests: Stack<Box<Request>, 512>,
    /// INVARIANT: every one is fully initialized (`len` is its size) and at least `READ_CHUNK`.
    reads: Stack<Vec<u8>, 64>,
    /// INVARIANT: every one is empty, with some capacity.
    writes: Stack<Vec<u8>, 256>,
}

impl std::fmt::Debug for Spares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = |n: &Cell<usize>| n.get();
        f.debug_struct("Spares")
            .field("requests", &len(&self.requests.len))
            .field("reads", &len(&self.reads.len))
            .field("writes", &len(&self.writes.len))
            .finish()
    }
}

impl Spares {
    pub(crate) fn new() -> Rc<Spares> {
        Rc::new(Spares { requests: Stack::new(), reads: Stack::new(), writes: Stack::new() })
    }

    /// How many (requests, read buffers, write buffers) are kept.
    #[cfg(test)]
    pub(crate) fn kept(&self) -> (usize, usize, usize) {
        (self.requests.len.get(), self.reads.len.get(), self.writes.len.get())
    }

    /// A request to parse into (holding nothing of an earlier one's text once parsed into).
    #[inline(always)]
    pub(crate) fn take_request(&self) -> Box<Request> {
        self.requests.pop().unwrap_or_default()
    }

    /// Keeps a request whose handling is over (its buffers' capacity is kept, up to a bound).
    #[inline(always)]
    pub(crate) fn give_request(&self, mut req: Box<Request>) {
        req.shrink(KEEP_AT_MOST);
        self.requests.push(req);
    }

    /// A read buffer: fully initialized, at least [`READ_CHUNK`] long.
    #[inline(always)]
    pub(crate) fn take_read_buf(&self) -> Vec<u8> {
        match self.reads.pop() {
            Some(buf) => {
                debug_assert!(buf.len() >= READ_CHUNK);
                buf
            }
            None => vec![0; READ_CHUNK],
        }
    }

    /// Keeps a read buffer whose bytes were all consumed (`len` its initialized size).
    #[inline(always)]
    pub(crate) fn give_read_buf(&self, buf: Vec<u8>) {
        if buf.len() >= READ_CHUNK && buf.capacity() <= KEEP_AT_MOST {
            self.reads.push(buf);
        }
    }

    /// A write buffer: empty (with room, unless none was kept).
    #[inline(always)]
    pub(crate) fn take_write_buf(&self) -> Vec<u8> {
        self.writes.pop().unwrap_or_default()
    }

    /// Keeps a write buffer whose bytes were all written.
    #[inline(always)]
    pub(crate) fn give_write_buf(&self, mut buf: Vec<u8>) {
        if buf.capacity() != 0 && buf.capacity() <= KEEP_AT_MOST {
            buf.clear();
            self.writes.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_given_is_the_first_taken_and_the_bounds_hold() {
        let spares = Spares::new();
        let big = vec![0u8; KEEP_AT_MOST + 1];
        spares.give_read_buf(big);
        let mut small = vec![0u8; READ_CHUNK];
        small[0] = 7;
        let at = small.as_ptr();
        spares.give_read_buf(small);
        let again = spares.take_read_buf();
        assert_eq!((again.as_ptr(), again.len(), again[0]), (at, READ_CHUNK, 7), "the same buffer, as it was");
        // The oversized one was not kept: a new buffer comes next.
        let fresh = spares.take_read_buf();
        assert!(fresh.as_ptr() != at && fresh.len() == READ_CHUNK);

        let mut w = Vec::with_capacity(100);
        w.extend_from_slice(b"written");
        let at = w.as_ptr();
        spares.give_write_buf(w);
        let w = spares.take_write_buf();
        assert_eq!((w.as_ptr(), w.len()), (at, 0), "kept emptied");
        spares.give_write_buf(Vec::with_capacity(KEEP_AT_MOST + 1));
        assert_eq!(spares.take_write_buf().capacity(), 0, "an oversized buffer is not kept");

        let r = spares.take_request();
        let at: *const Request = &*r;
        spares.give_request(r);
        assert_eq!(&*spares.take_request() as *const Request, at);
    }

    #[test]
    fn a_full_stack_drops_what_is_given() {
        let stack: Stack<Box<u8>, 2> = Stack::new();
        (0..3).for_each(|i| stack.push(Box::new(i)));
        assert_eq!(stack.len.get(), 2);
        assert_eq!((stack.pop().as_deref(), stack.pop().as_deref(), stack.pop()), (Some(&1), Some(&0), None));
    }
}
