//! # pinion
//!
//! A thread-per-core actor runtime for latency-critical services: one pinned shard (an OS
//! thread with a mio reactor and its own single-threaded executor) per selected core, processes
//! as futures owned by their shard, bounded mailboxes whose bound is exact across shards, and
//! `send`/`call` from processes and from any thread.
//!
//! ```
//! use std::time::Duration;
//! use pinion::{Actor, Context, ExitReason, Message, Node, NodeOptions, Pid, ProcessOptions, Reply};
//!
//! struct Counter(u64);
//!
//! impl Actor for Counter {
//!     async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
//!         if let Ok(n) = msg.downcast::<u64>() {
//!             self.0 += n;
//!         }
//!         Ok(())
//!     }
//!     async fn handle_call(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
//!         Ok(Reply::now(self.0))
//!     }
//! }
//!
//! let node = Node::start("doc", NodeOptions { pin: false, ..NodeOptions::shards(1) }).unwrap();
//! let pid = node.spawn(|| Counter(0), ProcessOptions::default()).wait().unwrap();
//! node.send(pid, 40u64).unwrap();
//! node.send(pid, 2u64).unwrap();
//! let total = node.call_blocking(pid, (), Duration::from_secs(1)).unwrap();
//! assert_eq!(total.downcast::<u64>().unwrap(), 42);
//! node.stop();
//! ```
//!
//! Handlers are `async`: awaiting inside one (a `call`, a timer) parks that process only. An
//! actor whose handler does not need to await for a message can take it in
//! [`Actor::handle_message_now`], a plain function, and skip building a future per message;
//! it answers [`Handled::Async`] to pass a message on to `handle_message`.
//!
//! # Architecture
//! ```text
//! Node ── Shard 0 (thread pinned to core c0) ── Poll + Waker, executor, timer wheel, inbox
//!      ├─ Shard 1 (core c1) ...
//!      └─ NodeHandle (Send + Sync + Clone): send / call / spawn from any thread
//! ```
//! A shard loops: drain its inbox → fire due timers → poll ready processes (each handles at
//! most 64 messages before yielding) → when idle, park in `poll` until a message, a timer or
//! I/O. Process state never leaves its shard; only envelopes cross shards.
//!
//! # Data flow of a message
//! ```text
//! same shard : Context::send → node/route.rs: generation check + reserve (process/mailbox.rs)
//!              → shard.push_main: the mail is written in place into the receiver's main lane
//!              (a ring, process/mailbox.rs) → run queue if it waits. No syscall, no lock.
//! cross-shard: reserve on the target's slot (lock-free, any thread) → Envelope into the target
//!              shard's inbox lane for this sender (shard/inbox.rs) → wake only if it is parked
//!              → the target drains its lanes at the top of its loop → local delivery as above.
//! outside    : NodeHandle::send/call → same as cross-shard, on the shared foreign lane.
//! ```
//!
//! # Web: HTTP requests as actor messages (feature `web`, on by default)
//! A [`web::WebServer`] puts an `SO_REUSEPORT` listener on every shard; a connection lives on
//! the shard that accepted it. Each request is parsed there ([`http`]: the common well-formed
//! head by our own scanner, which accepts a strict subset of what httparse accepts and reads it
//! the same way — `tests/http_differential.rs` checks that on 20 000 mutated heads — and every
//! other head by httparse, which then decides; our own framing for everything else) and handed
//! to the server's [`web::Handler`]:
//! ```text
//! socket → shard/reactor.rs (mio) → web/conn.rs: http::Codec → Handler
//!            ├─ plain function: answers on the shard (no hop, no allocation once warm)
//!            ├─ web::Router (path params, 405 + Allow) and middleware (401, CORS, log, 429)
//!            └─ web::WebHandler → WebRequest message → actor (a WebWorker) on any shard
//!                 mailbox full: 503 + Retry-After at once · no process: 503
//!                 no answer in time: 504 · request dropped unanswered (panic): 500
//! WebRequest::respond → the connection's shard (direct when it is this one)
//!   → http::Outgoing: responses in request order, all that is ready in one write
//! ```
//! Limits ([`http::HttpLimits`]) bound the head (431), the target (414), the body (413), slow
//! clients (408) and idle connections; malformed framing is answered 400/501/505 and the
//! connection closes without reading another byte as a request. A `WebWorker` lacking a
//! standard method answers 405 with `Allow` (Ergo: 501; RFC 9110 keeps 501 for methods the
//! server does not recognize: an extension method no route or `handle_other` takes). A
//! worker that answers without awaiting does so in `WebWorker::handle_now`, a plain function
//! offered every request first (no future per request, as `Actor::handle_message_now`;
//! PERF.md measures what it saves). Feature
//! `interop` converts to and from the `http` crate's types. A server's connections on a shard
//! share their read and write buffers and request boxes, holding them only while bytes wait in
//! them: the few in use stay in cache, and an idle keep-alive connection costs under 1 KB.
//!
//! # Pools: exact backpressure without an actor hop
//! A [`Pool`] of `size` workers with mailboxes of `mailbox` is spawned like any process and
//! addressed by its pid or name. The *sender* picks the worker — on its own shard first, an
//! idle one if there is one, else the least loaded with room; then the other shards' — and
//! reserves there: no forwarding actor. Each worker owns
//! `mailbox + 1` slots (its queue and the message in progress), released when it *finishes* a
//! message, and the pool has one admission word on top ([`PoolOptions`], `src/pool/gate.rs`):
//! the pool holds at most `size × (mailbox + 1)` messages whatever the race, and refuses
//! (`MailboxFull`; over HTTP 503 + `Retry-After`) only when it holds that many. A worker that
//! ends is replaced on its shard; its queue goes to the replacement or another worker, and what
//! finds no room is answered at once. [`PoolRef`] inspects and resizes a running pool.
//! ```text
//! send(pool) → manager's slot is full by design (capacity 0) → pool/dispatch.rs:
//!   gate slot (one CAS) → scan: own shard's workers, then the others' → worker slot (one CAS)
//!   → worker's mailbox (direct, or its shard's inbox)
//! worker finishes a run of n messages → worker slots back (n) → gate slots back (n)
//! ```
//! A connection that has read a pipelined burst takes the slots for the whole burst at once
//! (up to 32: one CAS on the gate, one on a local worker) and gives back those its requests
//! did not use when the dispatch pass ends. Admission stays exact in count; for the length of
//! one pass, `PoolInfo::held` counts those slots too, and a sender on another shard finds them
//! taken as if the burst had been admitted first.
//!
//! # Messages
//! A [`Message`] is any `Send + 'static` value, type-erased. Values up to 32 bytes (aligned to
//! at most 8) are stored inline (no allocation per message); bigger ones are boxed. Handlers take the value back by
//! value with [`Message::downcast`]. Sending a `Message` passes it through unwrapped, so
//! forwarding never boxes twice.
//!
//! # Latency knob: spinning before sleeping
//! An idle shard watches its inbox for [`NodeOptions::spin`] (default 50 µs) before it sleeps
//! in `poll`: waking a sleeping thread costs the sender a syscall and the receiver tens of
//! microseconds (far more on virtual machines). Set it to zero to sleep at once. A shard
//! with sockets (a web server) spins only within 1 ms of cross-shard mail: pure I/O work
//! sleeps in `epoll_wait` at once, as every other server does.
//!
//! # Guarantees
//! - **Bounds.** A mailbox of capacity N holds at most N messages accepted and not yet
//!   finished (queued plus the one in progress), whatever the number of senders on whatever
//!   shards: a sender reserves a slot with one compare-and-swap before enqueuing, and a full
//!   mailbox answers `SendError::MailboxFull(msg)` at once, handing the message back (a call
//!   made with `try_call` gets its request back the same way; `call` answers
//!   `CallError::MailboxFull` and drops it). A
//!   reservation is released when the handler has *finished* the message — precisely, when the
//!   process's current run returns to the shard (it awaits, yields after 64 messages, or waits
//!   for mail), so a shard pays one atomic operation per run instead of one per message.
//! - **System lane.** Exit signals, `Down` messages, replies and shutdown are not counted
//!   against the bound: a full mailbox never blocks them. A process handles system signals
//!   first, then urgent messages, then main ones.
//! - **Order.** Messages from one sender to one receiver (same lane) arrive in send order.
//! - **Stale pids.** A pid names one incarnation of a slot; once the process ended, sends to it
//!   answer `NoSuchProcess` and never reach the slot's next owner. An alias the process deleted
//!   (or of a process that ended) answers `UnknownAlias` at once, from any shard or thread.
//! - **Calls.** `call` parks the calling process only. A reply that arrives after the timeout
//!   is dropped and counted (`NodeHandle::late_replies`), never handed to a later call; so is
//!   the reply of a call whose future was dropped early. `ReplyToken::reply` says whether the
//!   caller could still take the answer (exactly for a caller on the replier's shard or outside
//!   the runtime; by the caller's deadline for one on another shard). A callee that ends without replying
//!   answers its caller at once: `NoSuchProcess` if the request was still queued (in its
//!   mailbox or in the batch the process had taken from it), `NoReply` if it was being handled.
//! - **Panics.** A panic in a handler (or factory, or init) ends that process only, with
//!   `ExitReason::Panic(text)`; its links get the exit signal and its monitors `Down`. The shard
//!   and its other processes keep running. The runtime logs each contained panic (target
//!   `pinion`), at most ten a second per kind and shard, then how many it left out (a client
//!   that makes a worker panic can make thousands a second); Rust's panic hook, which prints
//!   every panic to stderr, is the program's to set.
//! - **Shutdown.** `Node::stop` sends every process `Shutdown`; each runs `terminate`; after
//!   `NodeOptions::shutdown_timeout` the rest are killed; then the threads are joined.
//!
//! # Departures from Ergo
//! Links are one-way as in Ergo (the linker gets the exit signal). Timeouts are `Duration`s.
//! A full mailbox is reported to the sender, never dropped with a log line. One bound covers
//! all lanes of a mailbox and bounds are on by default (1024). A process's mailbox bound
//! counts the message it is handling (a bound of 10 holds 10 in all), where a pool's `mailbox`
//! is each worker's queue, the message in hand on top (`size × (mailbox + 1)`). A web server
//! is not a process but a value: dropped, it stops (kept in an actor's state it ends with the
//! actor, as Ergo's ends with its parent, and a restart binds its port again). A pool places
//! a request on a worker of the connection's own shard first: one may wait behind a long
//! request while a worker elsewhere idles (keep pool mailboxes short where requests are long).

#![deny(unsafe_op_in_unsafe_fn)]
// `unsafe` only in the leaf files that allow it by name (each says why), checked by the compiler.
#![deny(unsafe_code)]
#![cfg_attr(test, deny(warnings))]

mod error;
#[cfg(feature = "web")]
pub mod http;
mod log_limit;
mod loom;
mod node;
mod pool;
mod process;
mod shard;
mod supervisor;
#[cfg(feature = "web")]
pub mod web;

pub use error::{CallError, RegisterError, SendError, SpawnError, StartError, WebServerError};
pub use node::{CallFuture, Cores, MAX_NAME_BYTES, MAX_SHARDS, Node, NodeHandle, NodeOptions, SpawnFuture};
pub use pool::{Placement, Pool, PoolError, PoolInfo, PoolOptions, PoolRef, WorkerInfo};
pub use process::{
    Actor, Alias, CallReply, Context, DEFAULT_MAILBOX, Down, ExitReason, ExitSignal, Handled, Message, MonitorRef,
    NodeId, Pid, Priority, ProcessId, ProcessInfo, ProcessOptions, ProcessState, Reply, ReplyToken, ShardId, Target,
    TimerRef,
};
pub use shard::ShardInfo;
pub use supervisor::{
    ChildInfo, ChildSpec, Restart, StartChild, StartChildError, Strategy, Supervisor, SupervisorInfo,
    SupervisorOptions, WhichChildren,
};

/// Internals exposed for benchmarks and loom models. Not a stable API.
#[doc(hidden)]
pub mod _benchable {
    pub use crate::pool::cells::{EMPTY, Retired, ShardWorkers, WorkerCell, pack, state as cell_state, unpack};
    pub use crate::pool::gate::{Admit, Gate, admit};
    pub use crate::process::mailbox::{Reservation, Reserve};
    pub use crate::process::table::SharedTable;

    /// Test support: make the next process spawned in `slot` of `shard` (a vacant slot) get
    /// `generation`, to reach the end of a slot's generations without 2^32 spawns.
    pub fn set_vacant_generation(node: &crate::NodeHandle, shard: usize, slot: u32, generation: u32) {
        if let Some(r) = node.shared().shards.get(shard).and_then(|s| s.table.ensure(slot as usize)) {
            r.set_vacant_generation(generation);
        }
    }
    #[cfg(feature = "web")]
    pub use crate::http::backlog::{StreamState, StreamWatch};
    pub use crate::shard::inbox::Inbox;
    #[cfg(feature = "web")]
    pub use crate::web::OpenConnections;
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
