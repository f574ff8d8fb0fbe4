//! What a supervisor supervises: strategies, restart types, child specs (and the type-erased
//! factories behind them), options, and the requests and reports of its API.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{CallError, SpawnError};
use crate::process::{Actor, Context, ExitReason, Handled, Message, Pid, ProcessOptions, Reply, ShardId};

/// The default shutdown time of a child of type `A` (see [`ChildSpec::SUPERVISOR_SHUTDOWN`]).
fn default_shutdown<A: Actor>() -> Duration {
    if std::any::TypeId::of::<A>() == std::any::TypeId::of::<super::Supervisor>() {
        ChildSpec::SUPERVISOR_SHUTDOWN
    } else {
        ChildSpec::DEFAULT_SHUTDOWN
    }
}

/// How long to wait for the `Down` of a child that was killed.
pub(super) const KILL_WAIT: Duration = Duration::from_secs(5);

/// Which children a supervisor restarts when one of them ends and must be restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Only that child.
    #[default]
    OneForOne,
    /// Every child: the others are stopped (last started first), then all start again in order.
    AllForOne,
    /// That child and the ones started after it.
    RestForOne,
    /// Like `OneForOne`, for children started on request from the one template spec.
    SimpleOneForOne,
}

/// When a child is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Restart {
    /// Always.
    #[default]
    Permanent,
    /// Only when it ended abnormally (not `Normal` or `Shutdown`).
    Transient,
    /// Never; it is forgotten once it ended.
    Temporary,
}

impl Restart {
    pub(super) fn wanted(self, reason: &ExitReason) -> bool {
        match self {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_normal(),
            Restart::Temporary => false,
        }
    }
}

/// Where and how a child is spawned.
#[derive(Clone, Debug, Default)]
pub(super) struct Placement {
    pub(super) name: Option<String>,
    pub(super) shard: Option<ShardId>,
    pub(super) options: ProcessOptions,
}

type Launched<'a> = Pin<Box<dyn Future<Output = Result<Pid, SpawnError>> + 'a>>;

/// Spawns one incarnation of a child: its factory is called again on every (re)start.
pub(super) trait Launch {
    fn launch<'a>(&'a self, ctx: &'a Context, at: &'a Placement) -> Launched<'a>;
}

/// A factory without argument.
pub(super) struct Plain<F, A>(Arc<F>, PhantomData<fn() -> A>);

impl<A: Actor, F: Fn() -> A + Send + Sync + 'static> Launch for Plain<F, A> {
    fn launch<'a>(&'a self, ctx: &'a Context, at: &'a Placement) -> Launched<'a> {
        let factory = self.0.clone();
        Box::pin(spawn_child(ctx, at, move || factory()))
    }
}

/// A template factory bound to the argument of one `start_child`.
pub(super) struct Bound<F, T, A> {
    pub(super) factory: Arc<F>,
    pub(super) arg: T,
    pub(super) _actor: PhantomData<fn() -> A>,
}

impl<T: Clone + Send + 'static, A: Actor, F: Fn(T) -> A + Send + Sync + 'static> Launch for Bound<F, T, A> {
    fn launch<'a>(&'a self, ctx: &'a Context, at: &'a Placement) -> Launched<'a> {
        let (factory, arg) = (self.factory.clone(), self.arg.clone());
        Box::pin(spawn_child(ctx, at, move || factory(arg)))
    }
}

impl<L: Launch + ?Sized> Launch for Arc<L> {
    fn launch<'a>(&'a self, ctx: &'a Context, at: &'a Placement) -> Launched<'a> {
        (**self).launch(ctx, at)
    }
}

/// The template of a `SimpleOneForOne` supervisor: binds a `start_child` argument.
pub(super) trait Template {
    fn bind(&self, arg: Message) -> Option<Rc<dyn Launch>>;
}

pub(super) struct WithArg<F, T, A>(Arc<F>, PhantomData<fn(T) -> A>);

impl<T: Clone + Send + 'static, A: Actor, F: Fn(T) -> A + Send + Sync + 'static> Template for WithArg<F, T, A> {
    fn bind(&self, arg: Message) -> Option<Rc<dyn Launch>> {
        let arg = arg.downcast::<T>().ok()?;
        Some(Rc::new(Bound { factory: self.0.clone(), arg, _actor: PhantomData }))
    }
}

pub(super) async fn spawn_child<A: Actor>(
    ctx: &Context,
    at: &Placement,
    make: impl FnOnce() -> A + Send + 'static,
) -> Result<Pid, SpawnError> {
    let options = at.options.clone();
    let sup = ctx.pid();
    let elsewhere = at.shard.filter(|s| *s != ctx.shard());
    // Named on another shard, the child registers itself in `init`.
    let name = at.name.clone().filter(|_| elsewhere.is_some());
    let child = move || Supervised { sup, name, actor: make() };
    match (&at.name, elsewhere) {
        (_, Some(shard)) => ctx.spawn_on(shard, child, options).await,
        (Some(name), None) => ctx.spawn_register(name, child, options).await,
        (None, None) => ctx.spawn(child, options).await,
    }
}

/// A supervisor's child, as spawned. It links to its supervisor first thing in `init`, before
/// the actor's own `init` (as OTP's `proc_lib:start_link` does): the supervisor ties it to
/// itself only once the spawn answered, and a supervisor killed meanwhile (a child slow to
/// `init`) left it running, its name taken (a review). Linked, it gets the supervisor's end
/// either way (`NoProcess` if the supervisor is gone already), once (the tie, when there is
/// one, carries both). A child named on another shard registers itself here too:
/// `spawn_register` names on the caller's shard only (a taken name fails its `init`). Every
/// other `Actor` method is forwarded as is (a review found `handle_message_now` left out: an
/// actor that handles its messages there dropped them all once named on another shard).
pub(super) struct Supervised<A> {
    pub(super) sup: Pid,
    pub(super) name: Option<String>,
    pub(super) actor: A,
}

impl<A: Actor> Actor for Supervised<A> {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        ctx.link(self.sup);
        if let Some(name) = &self.name {
            ctx.register(name).map_err(|e| ExitReason::custom(e.to_string()))?;
        }
        self.actor.init(ctx).await
    }
    #[inline(always)]
    fn handle_message_now(&mut self, ctx: &mut Context, from: Pid, msg: Message) -> Handled {
        self.actor.handle_message_now(ctx, from, msg)
    }
    async fn handle_message(&mut self, ctx: &mut Context, from: Pid, msg: Message) -> Result<(), ExitReason> {
        self.actor.handle_message(ctx, from, msg).await
    }
    async fn handle_call(&mut self, ctx: &mut Context, from: Pid, req: Message) -> Result<Reply, ExitReason> {
        self.actor.handle_call(ctx, from, req).await
    }
    async fn terminate(&mut self, ctx: &mut Context, reason: &ExitReason) {
        self.actor.terminate(ctx, reason).await
    }
}

#[derive(Clone)]
pub(super) enum Factory {
    Plain(Arc<dyn Launch + Send + Sync>),
    Template(Arc<dyn Template + Send + Sync>),
}

/// How to start (and restart) one child, built in steps:
/// `ChildSpec::new("db", || Db::default()).restart(Restart::Transient).shard(ShardId(1))`.
#[derive(Clone)]
pub struct ChildSpec {
    pub(super) id: String,
    pub(super) factory: Factory,
    pub(super) restart: Restart,
    pub(super) at: Placement,
    pub(super) shutdown: Duration,
}

impl fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("template", &matches!(self.factory, Factory::Template(_)))
            .field("restart", &self.restart)
            .field("name", &self.at.name)
            .field("shard", &self.at.shard)
            .field("shutdown", &self.shutdown)
            .finish()
    }
}

impl ChildSpec {
    /// How long a child gets to end after `Shutdown` before it is killed, unless set.
    pub const DEFAULT_SHUTDOWN: Duration = Duration::from_secs(5);

    /// The same for a child that is itself a [`Supervisor`](super::Supervisor), unless set: as
    /// long as it takes (OTP's `infinity`). It stops its own children within their shutdown
    /// times, killing the slow ones, so it ends; killed sooner, it would leave them running (a
    /// killed supervisor runs no `terminate`), their names taken, and every restart of it
    /// failing on them (found by a user trial, with equal shutdown times at both levels).
    pub const SUPERVISOR_SHUTDOWN: Duration = Duration::MAX;

    /// A `Permanent` child made by `factory`, on the supervisor's shard, unnamed.
    pub fn new<A: Actor, F: Fn() -> A + Send + Sync + 'static>(id: impl Into<String>, factory: F) -> Self {
        Self::with(id, Factory::Plain(Arc::new(Plain(Arc::new(factory), PhantomData))))
            .shutdown(default_shutdown::<A>())
    }

    /// The template of a [`Strategy::SimpleOneForOne`] supervisor: each
    /// [`Supervisor::start_child`](super::Supervisor::start_child) passes a `T`, kept to make the child again on restart. A
    /// [`name`](ChildSpec::name) fits one such child at a time. A `Transient` or `Temporary`
    /// dynamic child is forgotten once it ended: `exit(child, ExitReason::Shutdown)` removes it.
    pub fn template<T, A, F>(id: impl Into<String>, factory: F) -> Self
    where
        T: Clone + Send + 'static,
        A: Actor,
        F: Fn(T) -> A + Send + Sync + 'static,
    {
        Self::with(id, Factory::Template(Arc::new(WithArg(Arc::new(factory), PhantomData))))
            .shutdown(default_shutdown::<A>())
    }

    pub(super) fn with(id: impl Into<String>, factory: Factory) -> Self {
        let (at, shutdown) = (Placement::default(), Self::DEFAULT_SHUTDOWN);
        ChildSpec { id: id.into(), factory, restart: Restart::Permanent, at, shutdown }
    }

    /// When the child is restarted.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Registers the child under `name` (again on each restart).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.at.name = Some(name.into());
        self
    }

    /// Runs the child on `shard` (default: the supervisor's).
    pub fn shard(mut self, shard: ShardId) -> Self {
        self.at.shard = Some(shard);
        self
    }

    /// The child's process options.
    pub fn options(mut self, options: ProcessOptions) -> Self {
        self.at.options = options;
        self
    }

    /// How long the child gets to end after `Shutdown` before it is killed. A child that is
    /// itself a supervisor needs enough for its own children (its default is unbounded).
    pub fn shutdown(mut self, timeout: Duration) -> Self {
        self.shutdown = timeout;
        self
    }

    /// The child's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// How long the child gets to end after `Shutdown` before it is killed.
    pub fn shutdown_timeout(&self) -> Duration {
        self.shutdown
    }
}

/// How a supervisor runs.
#[derive(Clone, Debug)]
pub struct SupervisorOptions {
    /// What to restart when a child must be.
    pub strategy: Strategy,
    /// At most this many restarts within `period`; one more and the supervisor gives up.
    pub intensity: u32,
    /// See `intensity`.
    pub period: Duration,
    /// Started in this order. For `SimpleOneForOne`: exactly one [`ChildSpec::template`].
    pub children: Vec<ChildSpec>,
}

impl Default for SupervisorOptions {
    /// `OneForOne`, 5 restarts in 5 s, no children.
    fn default() -> Self {
        SupervisorOptions {
            strategy: Strategy::OneForOne,
            intensity: 5,
            period: Duration::from_secs(5),
            children: Vec::new(),
        }
    }
}

/// One child, as reported by [`WhichChildren`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildInfo {
    /// Its spec's id (the template's, for dynamic children).
    pub id: String,
    /// Its process, `None` while not running (a transient child that ended normally).
    pub pid: Option<Pid>,
    /// When it is restarted.
    pub restart: Restart,
}

/// A supervisor's children, in start order, and its restart count since it started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupervisorInfo {
    /// Its children.
    pub children: Vec<ChildInfo>,
    /// Restarts since it started (one per failure handled, plus one per failed restart).
    pub restarts: u64,
}

/// Call request: the supervisor answers a [`SupervisorInfo`].
#[derive(Clone, Copy, Debug)]
pub struct WhichChildren;

/// Call request to a `SimpleOneForOne` supervisor: start a child with this argument. It answers
/// `Result<Pid, StartChildError>`.
#[derive(Debug)]
pub struct StartChild(pub(super) Message);

impl StartChild {
    /// The request for `arg`, of the type the template's factory takes.
    pub fn new<T: Any + Send>(arg: T) -> Self {
        StartChild(Message::new(arg))
    }
}

/// Why [`Supervisor::start_child`](super::Supervisor::start_child) failed.
#[derive(Debug, Clone, PartialEq)]
pub enum StartChildError {
    /// The supervisor could not be called (gone, timeout, wrong reply type...).
    Call(CallError),
    /// The supervisor's strategy is not `SimpleOneForOne`.
    NotSimple,
    /// The argument is not of the type the template's factory takes.
    WrongArgument,
    /// The child could not be spawned (its factory panicked, its `init` failed...).
    Spawn(SpawnError),
}

impl fmt::Display for StartChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartChildError::Call(e) => write!(f, "start_child failed: {e}"),
            StartChildError::NotSimple => f.write_str("start_child failed: the supervisor is not simple-one-for-one"),
            StartChildError::WrongArgument => {
                f.write_str("start_child failed: the argument is not the type the template's factory takes")
            }
            StartChildError::Spawn(e) => write!(f, "start_child failed: {e}"),
        }
    }
}

impl std::error::Error for StartChildError {}
