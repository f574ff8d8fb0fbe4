//! The [`Actor`] trait: what a process does with its messages.

use crate::process::{Context, ExitReason, Message, Pid};

/// What a call handler answers.
#[derive(Debug)]
pub enum Reply {
    /// Reply now with this message.
    Now(Message),
    /// Reply later through the token taken with [`Context::defer_reply`]. If no token was
    /// taken, the caller is told `CallError::NoReply` at once.
    Later,
}

impl Reply {
    /// `Reply::Now(Message::new(value))`.
    pub fn now<T: std::any::Any + Send>(value: T) -> Reply {
        Reply::Now(Message::new(value))
    }
}

/// What [`Actor::handle_message_now`] did with a message.
#[derive(Debug)]
pub enum Handled {
    /// It was handled: the result, as [`Actor::handle_message`] would have returned it.
    Done(Result<(), ExitReason>),
    /// It was not: the message goes on, unchanged, to [`Actor::handle_message`].
    Async(Message),
}

/// A process's behaviour. It runs on one shard, one message at a time; its state need not be
/// `Send` (an `Rc` or `RefCell` inside is fine). Its factory, and its messages, are `Send`.
///
/// Every handler is `async`: awaiting inside one (a `call`, a timer, any future) parks this
/// process only; the shard runs the others meanwhile. Messages that arrive meanwhile wait in
/// the mailbox.
///
/// Returning `Err(reason)` from a handler ends the process with that reason, after
/// [`Actor::terminate`]. A panic ends it with [`ExitReason::Panic`], without `terminate` (its
/// state may be half-updated).
#[allow(async_fn_in_trait, reason = "processes are !Send futures owned by one shard")]
pub trait Actor: 'static {
    /// Runs first, before any message. An error ends the process, and a `spawn` waiting for it
    /// answers `SpawnError::InitFailed`.
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        let _ = ctx;
        Ok(())
    }

    /// Every message [`Actor::handle_message`] would get is offered here first, to a plain
    /// function: an actor that does not need to await for a message handles it here and answers
    /// [`Handled::Done`], and no future is built for it (a same-shard send and handle takes
    /// 13 % fewer instructions and 17 % less time in `benches/actors.rs`; actix's handlers are
    /// plain functions too). Answer
    /// [`Handled::Async`] with the message to pass it on to `handle_message` — so an actor can
    /// handle its frequent messages here and leave the ones that await to `handle_message`.
    ///
    /// The default passes every message on; it compiles to nothing.
    #[inline(always)]
    fn handle_message_now(&mut self, ctx: &mut Context, from: Pid, msg: Message) -> Handled {
        let _ = (ctx, from);
        Handled::Async(msg)
    }

    /// A message sent with `send`, an [`ExitSignal`](crate::ExitSignal) when trapping exits, or
    /// a [`Down`](crate::Down) from a monitor (unless [`Actor::handle_message_now`] took it).
    async fn handle_message(&mut self, ctx: &mut Context, from: Pid, msg: Message) -> Result<(), ExitReason> {
        let _ = (ctx, from, msg);
        Ok(())
    }

    /// A request sent with `call`. Reply with [`Reply::Now`], or take a token with
    /// [`Context::defer_reply`] and answer [`Reply::Later`].
    async fn handle_call(&mut self, ctx: &mut Context, from: Pid, req: Message) -> Result<Reply, ExitReason> {
        let _ = (ctx, from, req);
        Ok(Reply::Later)
    }

    /// Runs last, when the process ends normally, by an error return, an exit signal or node
    /// shutdown — not after a panic or `Kill`.
    async fn terminate(&mut self, ctx: &mut Context, reason: &ExitReason) {
        let _ = (ctx, reason);
    }
}
