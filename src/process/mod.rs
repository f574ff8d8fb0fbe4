//! Processes: futures owned by one shard, driving an [`Actor`] over its mailbox.
//!
//! A process is spawned on a shard, runs `init`, then handles one message at a time — system
//! signals first, then urgent, then main — and ends with an [`ExitReason`]. Its slot's
//! generation moves on when it ends, so stale pids are refused.
#![allow(unsafe_code, reason = "the process loop reads its mail's fields in place")]

mod actor;
mod call;
pub(crate) mod context;
pub(crate) mod envelope;
pub(crate) mod link;
pub(crate) mod mailbox;
mod message;
mod pid;
pub(crate) mod table;

use std::fmt;
use std::future::Future;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::ptr;

pub use actor::{Actor, Handled, Reply};
pub use call::CallReply;
pub(crate) use call::{Unarmed, arm_timeouts, deadline_after};
pub use context::{Context, ReplyToken, TimerRef};
pub use mailbox::Priority;
pub use message::Message;
pub use pid::{Alias, NodeId, Pid, ProcessId, ShardId, Target};

use crate::error::SpawnError;
use envelope::{Answer, CallResult, Mail, Responder, Signal, Via};
use mailbox::Mailbox;

/// Why a process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// It finished its work.
    Normal,
    /// It was asked to stop (node stop, supervisor shutdown).
    Shutdown,
    /// It was killed: no `terminate`, cannot be trapped. The exit signal a killed process
    /// sends its linked processes carries `Kill` too, as an ordinary exit signal: one that
    /// traps exits receives it; one that does not ends with it, as if killed itself (OTP
    /// sends `killed` instead, which runs cleanup: a known difference).
    Kill,
    /// A handler panicked; the text is the panic message.
    Panic(String),
    /// The process addressed did not exist (a link or monitor to a dead pid).
    NoProcess,
    /// An application-defined reason.
    Custom(String),
}

impl ExitReason {
    /// A custom reason.
    pub fn custom(text: impl Into<String>) -> Self {
        ExitReason::Custom(text.into())
    }
    /// True for `Normal` and `Shutdown`: endings a supervisor does not treat as failures of a
    /// transient child.
    pub fn is_normal(&self) -> bool {
        matches!(self, ExitReason::Normal | ExitReason::Shutdown)
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("normal"),
            ExitReason::Shutdown => f.write_str("shutdown"),
            ExitReason::Kill => f.write_str("kill"),
            ExitReason::Panic(m) => write!(f, "panic: {m}"),
            ExitReason::NoProcess => f.write_str("no such process"),
            ExitReason::Custom(m) => f.write_str(m),
        }
    }
}

/// Identifies one monitor, as set up by [`Context::monitor`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MonitorRef(pub(crate) u64);

/// Delivered to `handle_message` of a process that traps exits, instead of ending it.
#[derive(Clone, Debug, PartialEq)]
pub struct ExitSignal {
    /// The process the signal is from (the linked process that ended, or the sender).
    pub from: Pid,
    /// Its reason.
    pub reason: ExitReason,
}

/// Delivered to `handle_message` when a monitored process ends.
#[derive(Clone, Debug, PartialEq)]
pub struct Down {
    /// The monitor this answers.
    pub reference: MonitorRef,
    /// The process that ended. For a monitor set on a name nobody held (its `reason` is
    /// `NoProcess`), there is no such process: this is the monitoring process's own pid (OTP
    /// gives the name; match on `reference`).
    pub pid: Pid,
    /// Its reason (`NoProcess` when it was already gone when the monitor was set).
    pub reason: ExitReason,
}

/// Options for one process.
#[derive(Clone, Debug)]
pub struct ProcessOptions {
    /// Mailbox bound: messages accepted and not yet finished (queued plus the one being
    /// handled), urgent and main lanes together. At least 1. Default 1024.
    pub mailbox: usize,
    /// Deliver exit signals as [`ExitSignal`] messages instead of ending the process.
    pub trap_exit: bool,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        ProcessOptions { mailbox: DEFAULT_MAILBOX, trap_exit: false }
    }
}

/// Default mailbox bound.
pub const DEFAULT_MAILBOX: usize = 1024;

impl ProcessOptions {
    /// Options with this mailbox bound.
    pub fn with_mailbox(mailbox: usize) -> Self {
        ProcessOptions { mailbox, ..Default::default() }
    }
    pub(crate) fn capacity(&self) -> Result<u32, SpawnError> {
        match u32::try_from(self.mailbox) {
            Ok(0) => Err(SpawnError::InvalidOptions("mailbox must be at least 1")),
            Ok(n) if n < u32::MAX => Ok(n),
            _ => Err(SpawnError::InvalidOptions("mailbox must be below 2^32 - 1")),
        }
    }
}

/// What a process is doing, as reported by `process_info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessState {
    /// Running `init`.
    Initializing,
    /// Waiting for a message.
    Idle,
    /// Scheduled or running a handler.
    Running,
    /// In a handler, awaiting something (a call, a timer, I/O).
    Waiting,
}

/// A snapshot of one process.
#[derive(Clone, Debug)]
pub struct ProcessInfo {
    /// Its pid.
    pub pid: Pid,
    /// Its registered name.
    pub name: Option<String>,
    /// What it is doing.
    pub state: ProcessState,
    /// Messages queued in the system lane.
    pub system_queue: usize,
    /// Messages queued in the urgent lane.
    pub urgent_queue: usize,
    /// Messages queued in the main lane.
    pub main_queue: usize,
    /// Reserved mailbox slots (queued plus in progress).
    pub reserved: u32,
    /// Its mailbox bound.
    pub mailbox: u32,
    /// Messages it has finished.
    pub processed: u64,
    /// Processes linked to it, or tied to it as a supervisor's children (they get its exit signal).
    pub links: usize,
    /// Monitors on it.
    pub monitors: usize,
    /// Whether it traps exits.
    pub trap_exit: bool,
}

pub(crate) type ProcessFuture = Pin<Box<dyn Future<Output = ExitReason>>>;

/// Result of a spawn, as delivered to whoever waits for it.
pub(crate) type SpawnResult = Result<Pid, SpawnError>;

impl Answer for SpawnResult {
    fn dropped() -> Self {
        Err(SpawnError::Stopped)
    }
    fn into_message(self) -> CallResult {
        Ok(Message::new(self))
    }
}

/// An outstanding call of a process: answered by a reply or its timeout, whichever is first.
pub(crate) struct PendingCall {
    pub(crate) reference: u64,
    pub(crate) result: Option<CallResult>,
    pub(crate) timer: Option<crate::shard::TimerKey>,
}

/// A process's shard-local state.
pub(crate) struct ProcessEntry {
    pub(crate) generation: u32,
    pub(crate) mailbox: Mailbox<Mail, Signal>,
    /// `None` while the executor polls it (or before it is built).
    pub(crate) future: Option<ProcessFuture>,
    pub(crate) scheduled: bool,
    /// The process is parked in `Context::next`: a new message must schedule it.
    pub(crate) awaiting_mail: bool,
    pub(crate) initializing: bool,
    /// A tombstone: the slot's generations are used up, it holds the slot so it is never
    /// reused. It has no future and is skipped by stop, inspect and the scheduler.
    pub(crate) retired: bool,
    /// A `Kill` arrived while the process was being polled.
    pub(crate) killed: bool,
    pub(crate) trap_exit: bool,
    pub(crate) capacity: u32,
    /// Main-lane messages the process took into its own batch, as of its last look at the
    /// mailbox (for introspection).
    pub(crate) batched: u32,
    /// Reserved messages this incarnation took from its mailbox (urgent ones, main-lane
    /// batches) and did not put back, wrapping. Less the messages it finished (its slot's
    /// `Reservation::processed`), what it held in hand when it ended: a pool worker's end
    /// tells from it how many of its reservations were messages still on their way to it.
    pub(crate) taken: u32,
    /// Its outstanding calls (inline: a process that calls, calls often).
    pub(crate) calls: Vec<PendingCall>,
    /// Links and monitors, boxed on first use: most processes have none, and three empty
    /// vectors inline would cost 64 bytes more per process. (Aliases live in the slot's shared
    /// `Reservation`.)
    pub(crate) relations: Option<Box<Relations>>,
    pub(crate) name: Option<Box<str>>,
    pub(crate) init_waiter: Option<Responder<SpawnResult>>,
    /// Set for a pool worker: its pool hears when it ends, and its finished messages give back
    /// their pool slots too.
    pub(crate) pool: Option<crate::pool::PoolMember>,
    /// A pool retires this worker: it ends once it finds its mailbox empty.
    pub(crate) retiring: bool,
}

/// What a process has to do with other processes (see `ProcessEntry::relations`).
#[derive(Default)]
pub(crate) struct Relations {
    /// Processes that linked to this one: they get its exit signal.
    pub(crate) links: Vec<Pid>,
    /// Children tied to this one (a supervisor's, `Context::link_child`): they get its exit
    /// signal as if linked, with no link of their own to undo.
    pub(crate) tied: Vec<Pid>,
    pub(crate) monitors: Vec<(MonitorRef, Pid)>,
    /// What this process links to (`None`) or monitors: undone when it ends.
    pub(crate) watching: Vec<(Pid, Option<MonitorRef>)>,
    /// It created aliases (kept in the slot's shared `Reservation`, cleared when it ends).
    pub(crate) aliased: bool,
}

impl Relations {
    /// The processes that get this one's exit signal `via` a link or a tie.
    pub(crate) fn to(&mut self, via: Via) -> &mut Vec<Pid> {
        if via == Via::Tie { &mut self.tied } else { &mut self.links }
    }
}

impl ProcessEntry {
    /// Its relations, if it ever had any.
    pub(crate) fn relations(&self) -> Option<&Relations> {
        self.relations.as_deref()
    }

    /// Its relations, boxed now if it had none.
    pub(crate) fn relations_mut(&mut self) -> &mut Relations {
        self.relations.get_or_insert_with(Box::default)
    }

    pub(crate) fn new(generation: u32, capacity: u32, trap_exit: bool) -> Self {
        ProcessEntry {
            generation,
            mailbox: Mailbox::new(),
            future: None,
            scheduled: false,
            awaiting_mail: false,
            initializing: true,
            retired: false,
            killed: false,
            trap_exit,
            capacity,
            batched: 0,
            taken: 0,
            calls: Vec::new(),
            relations: None,
            name: None,
            init_waiter: None,
            pool: None,
            retiring: false,
        }
    }
}

/// What `Context::next` hands the process loop.
pub(crate) enum Item {
    Mail(Mail),
    Signal(Signal),
}

/// The process loop: `init`, then one message at a time until an exit reason, then `terminate`.
pub(crate) async fn run<A: Actor>(mut actor: A, mut ctx: Context) -> ExitReason {
    if let Err(reason) = actor.init(&mut ctx).await {
        ctx.init_finished(Err(reason.clone()));
        return reason;
    }
    ctx.init_finished(Ok(()));
    let reason = serve(&mut actor, &mut ctx).await;
    if reason != ExitReason::Kill {
        actor.terminate(&mut ctx, &reason).await;
    }
    reason
}

async fn serve<A: Actor>(actor: &mut A, ctx: &mut Context) -> ExitReason {
    // Set (rarely: a signal that became mail) for the one mail that is not counted as
    // finished; kept across iterations so the hot path only reads it.
    let mut uncounted = false;
    loop {
        // The hot path: the next message of the batch this process already took, synchronously
        // (no `poll_fn`, no `Item`); the general path when the batch is empty, the budget is
        // spent, a stop is pending (a stop ends the fast path: `Context::stop`), or a signal
        // or urgent message may be waiting. Signals that reach the actor
        // become mail too, so `handle_message` is called from this one place: the compiler
        // then builds and polls the handler's future in line with the loop.
        // A mail from the general path is held here, so that both paths hand the handler a
        // pointer to their mail (see below).
        let mut held = MaybeUninit::<Mail>::uninit();
        let mail: *mut Mail = match ctx.next_batched() {
            Some(mail) => mail,
            None => {
                if let Some(reason) = ctx.take_stop() {
                    return reason;
                }
                let mail = match ctx.next().await {
                    Item::Mail(mail) => mail,
                    Item::Signal(signal) => match signal_mail(ctx, signal) {
                        Ok(Some(mail)) => {
                            uncounted = true;
                            mail
                        }
                        Ok(None) => continue,
                        Err(reason) => return reason,
                    },
                };
                held.write(mail)
            }
        };
        // The mail's fields are read out where they are, straight into the handler's future:
        // a `Mail` moved as a value was copied two or three times on the way (into the
        // batch step's result, a local, the future's arguments), 64 bytes each.
        // `from` is read in each branch (read before the branch, it was stored for the call
        // path and read again in the other).
        // SAFETY: `mail` points to an initialized mail that this loop owns, taken off the
        // batch (which nothing touches before the reads below: only this loop's `next` and
        // `next_batched` and the context's drop do, and `handle_message_now`, which runs
        // between them, can reach none of those) or held above; each field is read out
        // exactly once (`from` is `Copy`; `reply` is only looked at when absent; a message
        // handed back by `handle_message_now` is written back first), and the mail is not
        // used afterwards.
        let result = if unsafe { (*mail).reply.is_none() } {
            // SAFETY: as above.
            let from = unsafe { (*mail).from };
            // SAFETY: as above.
            match actor.handle_message_now(ctx, from, unsafe { ptr::read(&raw const (*mail).msg) }) {
                // Finished here, not after the `match` below: a result that meets the one
                // from the awaiting branch is kept in the loop's future, and costs stores.
                Handled::Done(result) => match finished(ctx, &mut uncounted, result) {
                    None => continue,
                    Some(reason) => return reason,
                },
                // SAFETY: the mail's message was read out above and is written back.
                Handled::Async(msg) => unsafe { ptr::write(&raw mut (*mail).msg, msg) },
            }
            // SAFETY: as above; the message is read out a second time, once written back.
            actor.handle_message(ctx, from, unsafe { ptr::read(&raw const (*mail).msg) }).await
        } else {
            // SAFETY: as above.
            let (from, msg, reply) =
                unsafe { ((*mail).from, ptr::read(&raw const (*mail).msg), ptr::read(&raw const (*mail).reply)) };
            let Some(reply) = reply else { unreachable!("a call's mail has its reply") };
            handle_call(actor, ctx, from, msg, envelope::unboxed(reply)).await
        };
        if let Some(reason) = finished(ctx, &mut uncounted, result) {
            return reason;
        }
    }
}

/// A mail was handled with `result`: counts it finished (unless it is the one `uncounted`
/// mail), and answers the reason the process ends with, if it does.
#[inline(always)]
fn finished(ctx: &mut Context, uncounted: &mut bool, result: Result<(), ExitReason>) -> Option<ExitReason> {
    if *uncounted {
        *uncounted = false;
    } else {
        ctx.finish_mail();
    }
    match result {
        Ok(()) => None,
        // A self-`Kill` in the same handler wins over the error it returned.
        Err(reason) => Some(ctx.take_stop().filter(|r| *r == ExitReason::Kill).unwrap_or(reason)),
    }
}

/// What a signal means for the process loop: a message for the actor (an exit signal it
/// traps, a `Down`), nothing (a `Normal` exit signal it does not trap), or the end.
#[cold]
fn signal_mail(ctx: &Context, signal: Signal) -> Result<Option<Mail>, ExitReason> {
    match signal {
        Signal::Shutdown => Err(ExitReason::Shutdown),
        // Never queued: `deliver_signal` turns it into `ProcessEntry::retiring`, and
        // `Context::next` answers an empty mailbox of a retiring worker with `Shutdown`.
        Signal::Retire => unreachable!(),
        Signal::Exit { from, reason, via } => {
            // The link is over: nothing is left to undo for it (by a tie too: a link of its own
            // to the same process came with it, `process_exited` sending one signal for both).
            // A signal of a link this process undid meanwhile (it was on its way from another
            // shard) is dropped: OTP's `unlink/1`.
            let watched = via != Via::Explicit && link::unwatch(&ctx.shard, ctx.pid, from, None);
            if via == Via::Link && !watched {
                return Ok(None);
            }
            if ctx.trap_exit() {
                Ok(Some(Mail { from, msg: Message::new(ExitSignal { from, reason }), reply: None }))
            } else if reason == ExitReason::Normal {
                Ok(None)
            } else {
                Err(reason)
            }
        }
        Signal::Down { reference, pid, reason } => {
            // A `Down` of a monitor this process removed meanwhile (it was on its way from
            // another shard, or queued) is dropped: OTP's `demonitor/1`. Otherwise the monitor
            // is over, and forgotten.
            if !link::unwatch(&ctx.shard, ctx.pid, pid, Some(reference)) {
                return Ok(None);
            }
            Ok(Some(Mail { from: pid, msg: Message::new(Down { reference, pid, reason }), reply: None }))
        }
    }
}

/// Runs `handle_call` with `reply` as the current call, and answers it.
async fn handle_call<A: Actor>(
    actor: &mut A,
    ctx: &mut Context,
    from: Pid,
    msg: Message,
    reply: Responder<CallResult>,
) -> Result<(), ExitReason> {
    ctx.begin_call(reply);
    match actor.handle_call(ctx, from, msg).await {
        Ok(Reply::Now(m)) => {
            ctx.end_call(Some(m));
            Ok(())
        }
        Ok(Reply::Later) => {
            ctx.end_call(None);
            Ok(())
        }
        Err(e) => {
            ctx.end_call(None);
            Err(e)
        }
    }
}
