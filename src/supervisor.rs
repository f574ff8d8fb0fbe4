//! [`Supervisor`]: starts child processes and restarts them by strategy, restart type and
//! intensity.

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{CallError, SpawnError};
use crate::node::NodeHandle;
use crate::process::{
    Actor, Context, Down, ExitReason, ExitSignal, Message, Pid, ProcessOptions, Reply, ShardId, Target,
};

/// How long to wait for the `Down` of a child that was killed.
const KILL_WAIT: Duration = Duration::from_secs(5);

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
    fn wanted(self, reason: &ExitReason) -> bool {
        match self {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_normal(),
            Restart::Temporary => false,
        }
    }
}

/// Where and how a child is spawned.
#[derive(Clone, Debug, Default)]
struct Placement {
    name: Option<String>,
    shard: Option<ShardId>,
    options: ProcessOptions,
}

type Launched<'a> = Pin<Box<dyn Future<Output = Result<Pid, SpawnError>> + 'a>>;

/// Spawns one incarnation of a child: its factory is called again on every (re)start.
trait Launch {
    fn launch<'a>(&'a self, ctx: &'a Context, at: &'a Placement) -> Launched<'a>;
}

/// A factory without argument.
struct Plain<F, A>(Arc<F>, PhantomData<fn() -> A>);

impl<A: Actor, F: Fn() -> A + Send + Sync + 'static> Launch for Plain<F, A> {
    fn launch<'a>(&'a self, ctx: &'a Context, at: &'a Placement) -> Launched<'a> {
        let factory = self.0.clone();
        Box::pin(spawn_child(ctx, at, move || factory()))
    }
}

/// A template factory bound to the argument of one `start_child`.
struct Bound<F, T, A> {
    factory: Arc<F>,
    arg: T,
    _actor: PhantomData<fn() -> A>,
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
trait Template {
    fn bind(&self, arg: Message) -> Option<Rc<dyn Launch>>;
}

struct WithArg<F, T, A>(Arc<F>, PhantomData<fn(T) -> A>);

impl<T: Clone + Send + 'static, A: Actor, F: Fn(T) -> A + Send + Sync + 'static> Template for WithArg<F, T, A> {
    fn bind(&self, arg: Message) -> Option<Rc<dyn Launch>> {
        let arg = arg.downcast::<T>().ok()?;
        Some(Rc::new(Bound { factory: self.0.clone(), arg, _actor: PhantomData }))
    }
}

async fn spawn_child<A: Actor>(
    ctx: &Context,
    at: &Placement,
    make: impl FnOnce() -> A + Send + 'static,
) -> Result<Pid, SpawnError> {
    let options = at.options.clone();
    match (&at.name, at.shard.filter(|s| *s != ctx.shard())) {
        (None, None) => ctx.spawn(make, options).await,
        (None, Some(shard)) => ctx.spawn_on(shard, make, options).await,
        (Some(name), None) => ctx.spawn_register(name, make, options).await,
        (Some(name), Some(shard)) => {
            let name = name.clone();
            ctx.spawn_on(shard, move || Registered { name, actor: make() }, options).await
        }
    }
}

/// A child named on another shard: `spawn_register` names on the caller's shard only, so the
/// child registers itself first thing in `init` (a taken name fails its `init`).
struct Registered<A> {
    name: String,
    actor: A,
}

impl<A: Actor> Actor for Registered<A> {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        ctx.register(&self.name).map_err(|e| ExitReason::custom(e.to_string()))?;
        self.actor.init(ctx).await
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
enum Factory {
    Plain(Arc<dyn Launch + Send + Sync>),
    Template(Arc<dyn Template + Send + Sync>),
}

/// How to start (and restart) one child, built in steps:
/// `ChildSpec::new("db", || Db::default()).restart(Restart::Transient).shard(ShardId(1))`.
#[derive(Clone)]
pub struct ChildSpec {
    id: String,
    factory: Factory,
    restart: Restart,
    at: Placement,
    shutdown: Duration,
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

    /// A `Permanent` child made by `factory`, on the supervisor's shard, unnamed.
    pub fn new<A: Actor, F: Fn() -> A + Send + Sync + 'static>(id: impl Into<String>, factory: F) -> Self {
        Self::with(id, Factory::Plain(Arc::new(Plain(Arc::new(factory), PhantomData))))
    }

    /// The template of a [`Strategy::SimpleOneForOne`] supervisor: each
    /// [`Supervisor::start_child`] passes a `T`, kept to make the child again on restart. A
    /// [`name`](ChildSpec::name) fits one such child at a time. A `Transient` or `Temporary`
    /// dynamic child is forgotten once it ended: `exit(child, ExitReason::Shutdown)` removes it.
    pub fn template<T, A, F>(id: impl Into<String>, factory: F) -> Self
    where
        T: Clone + Send + 'static,
        A: Actor,
        F: Fn(T) -> A + Send + Sync + 'static,
    {
        Self::with(id, Factory::Template(Arc::new(WithArg(Arc::new(factory), PhantomData))))
    }

    fn with(id: impl Into<String>, factory: Factory) -> Self {
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

    /// How long the child gets to end after `Shutdown` before it is killed. Give a child that
    /// is itself a supervisor enough for its own children.
    pub fn shutdown(mut self, timeout: Duration) -> Self {
        self.shutdown = timeout;
        self
    }

    /// The child's id.
    pub fn id(&self) -> &str {
        &self.id
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
pub struct StartChild(Message);

impl StartChild {
    /// The request for `arg`, of the type the template's factory takes.
    pub fn new<T: Any + Send>(arg: T) -> Self {
        StartChild(Message::new(arg))
    }
}

/// Why [`Supervisor::start_child`] failed.
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

struct Child {
    id: String,
    launch: Rc<dyn Launch>,
    restart: Restart,
    at: Placement,
    shutdown: Duration,
    pid: Option<Pid>,
}

impl Child {
    fn new(spec: &ChildSpec, launch: Rc<dyn Launch>) -> Self {
        let ChildSpec { id, restart, at, shutdown, .. } = spec.clone();
        Child { id, launch, restart, at, shutdown, pid: None }
    }
}

/// An [`Actor`] that starts child processes in order and restarts them when they end, as Ergo's
/// `act.Supervisor` (after Erlang/OTP's `supervisor`) does. Spawn it with
/// `spawn(move || Supervisor::new(options), ..)`; call it with [`Supervisor::which_children`] and
/// [`Supervisor::start_child`].
///
/// - **Strategies** ([`Strategy`]): restart only the child that ended (`OneForOne`), every child
///   (`AllForOne`), or it and the ones started after it (`RestForOne`); `SimpleOneForOne` starts
///   children on request from one template ([`Supervisor::start_child`]). Siblings are stopped in
///   reverse start order, then started again in start order.
/// - **Restart types** ([`Restart`]): `Permanent` children are always restarted, `Transient` ones
///   only after an abnormal end (`!reason.is_normal()`), `Temporary` ones never.
/// - **Intensity**: more than `intensity` restarts within `period` (default 5 in 5 s, as in Ergo)
///   and the supervisor gives up: it stops its children and ends with
///   `ExitReason::Custom` starting with [`Supervisor::INTENSITY_EXCEEDED`]. A child that fails to
///   start again counts as one more restart, so a factory that always panics ends the supervisor
///   instead of spinning.
/// - **Start**: children start in order during the supervisor's `init`; if one fails, those
///   already started are stopped and the supervisor's spawn answers `SpawnError::InitFailed`.
/// - **Stop**: a child is sent `exit(child, Shutdown)` and given its [`ChildSpec::shutdown`] time
///   (default 5 s) to end, then killed. The supervisor stops all its children, last started
///   first, when it ends: node stop, giving up, or an exit signal with any reason but `Normal`
///   (`ctx.exit(supervisor, ExitReason::Shutdown)`).
///
/// The supervisor monitors each child: a child's end reaches it as a [`Down`](crate::Down) (a
/// child gone before the monitor was set reports `NoProcess`, a failure). A `Down` never ends
/// its receiver, whatever the reason, so a killed child cannot take its supervisor (and its
/// siblings) with it. It traps exits, so that an exit
/// signal ends it through `terminate`. Nothing ties a child to its supervisor in turn: a
/// supervisor that is killed leaves its children running.
///
/// ```
/// use std::time::Duration;
/// use pinion::{Actor, ChildSpec, Node, NodeOptions, ProcessOptions, Strategy, Supervisor, SupervisorOptions};
///
/// struct Worker;
/// impl Actor for Worker {}
///
/// let node = Node::start("doc-sup", NodeOptions { pin: false, ..NodeOptions::shards(1) }).unwrap();
/// let children = vec![ChildSpec::new("db", || Worker), ChildSpec::new("cache", || Worker).name("cache")];
/// let options = SupervisorOptions { strategy: Strategy::RestForOne, children, ..Default::default() };
/// let sup = node.spawn(move || Supervisor::new(options), ProcessOptions::default()).wait().unwrap();
/// let info = Supervisor::which_children_blocking(&node, sup, Duration::from_secs(5)).unwrap();
/// assert_eq!(info.children.len(), 2);
/// assert_eq!(info.children[1].pid, node.whereis("cache"));
/// node.stop(); // stops the supervisor, which stops "cache", then "db"
/// ```
pub struct Supervisor {
    strategy: Strategy,
    intensity: u32,
    period: Duration,
    template: Option<ChildSpec>,
    children: Vec<Child>,
    /// When the restarts within the last `period` happened (at most `intensity`).
    recent: VecDeque<Instant>,
    restarts: u64,
    /// What is wrong with the options, reported by `init`.
    invalid: Option<String>,
}

impl fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let children: Vec<(&str, Option<Pid>)> = self.children.iter().map(|c| (&*c.id, c.pid)).collect();
        f.debug_struct("Supervisor").field("strategy", &self.strategy).field("children", &children).finish()
    }
}

impl Supervisor {
    /// The start of the `ExitReason::Custom` text of a supervisor that gave up.
    pub const INTENSITY_EXCEEDED: &'static str = "restart intensity exceeded";

    /// A supervisor with these options. Invalid options (a `SimpleOneForOne` without exactly one
    /// template, a template under another strategy, two children with one id) fail its `init`.
    pub fn new(options: SupervisorOptions) -> Self {
        let SupervisorOptions { strategy, intensity, period, children: specs } = options;
        let simple = strategy == Strategy::SimpleOneForOne;
        let templates = specs.iter().filter(|s| matches!(s.factory, Factory::Template(_))).count();
        let duplicate = specs.iter().enumerate().find(|(i, s)| specs[..*i].iter().any(|o| o.id == s.id));
        let invalid = if simple && (specs.len() != 1 || templates != 1) {
            Some("a simple-one-for-one supervisor needs exactly one ChildSpec::template".to_owned())
        } else if !simple && templates > 0 {
            Some("ChildSpec::template needs Strategy::SimpleOneForOne".to_owned())
        } else {
            duplicate.map(|(_, s)| format!("two children have the id {:?}", s.id))
        };
        let (template, children) = match (simple, specs) {
            (true, mut specs) => (specs.pop(), Vec::new()),
            (false, specs) => (None, specs.iter().filter_map(Self::static_child).collect()),
        };
        let recent = VecDeque::new();
        Supervisor { strategy, intensity, period, template, children, recent, restarts: 0, invalid }
    }

    fn static_child(spec: &ChildSpec) -> Option<Child> {
        match &spec.factory {
            Factory::Plain(launch) => Some(Child::new(spec, Rc::new(launch.clone()))),
            Factory::Template(_) => None,
        }
    }

    /// From a process: asks the `SimpleOneForOne` supervisor `sup` to start a child with `arg`.
    pub async fn start_child<'t, T: Any + Send>(
        ctx: &Context,
        sup: impl Into<Target<'t>>,
        arg: T,
        timeout: Duration,
    ) -> Result<Pid, StartChildError> {
        decode_start(ctx.call(sup, StartChild::new(arg), timeout).await)
    }

    /// From outside the runtime: [`Supervisor::start_child`], blocking this thread.
    pub fn start_child_blocking<'t, T: Any + Send>(
        node: &NodeHandle,
        sup: impl Into<Target<'t>>,
        arg: T,
        timeout: Duration,
    ) -> Result<Pid, StartChildError> {
        decode_start(node.call_blocking(sup, StartChild::new(arg), timeout))
    }

    /// From a process: the children of `sup` and its restart count.
    pub async fn which_children<'t>(
        ctx: &Context,
        sup: impl Into<Target<'t>>,
        timeout: Duration,
    ) -> Result<SupervisorInfo, CallError> {
        decode_info(ctx.call(sup, WhichChildren, timeout).await)
    }

    /// From outside the runtime: [`Supervisor::which_children`], blocking this thread.
    pub fn which_children_blocking<'t>(
        node: &NodeHandle,
        sup: impl Into<Target<'t>>,
        timeout: Duration,
    ) -> Result<SupervisorInfo, CallError> {
        decode_info(node.call_blocking(sup, WhichChildren, timeout))
    }

    fn info(&self) -> SupervisorInfo {
        let children =
            self.children.iter().map(|c| ChildInfo { id: c.id.clone(), pid: c.pid, restart: c.restart }).collect();
        SupervisorInfo { children, restarts: self.restarts }
    }

    /// Spawns child `i` and monitors it.
    async fn start(&mut self, ctx: &Context, i: usize) -> Result<Pid, SpawnError> {
        let child = &self.children[i];
        let pid = child.launch.launch(ctx, &child.at).await?;
        ctx.monitor(pid);
        self.children[i].pid = Some(pid);
        Ok(pid)
    }

    /// Stops child `i` if it runs: `Shutdown`, then `Kill` after its shutdown time.
    async fn stop(&mut self, ctx: &Context, i: usize) {
        let Some(pid) = self.children[i].pid.take() else { return };
        let (id, shutdown) = (&self.children[i].id, self.children[i].shutdown);
        ctx.exit(pid, ExitReason::Shutdown);
        if ctx.wait_down(pid, shutdown).await.is_some() {
            return;
        }
        ctx.log(log::Level::Warn, format_args!("child {id:?} {pid} did not stop within {shutdown:?}; killing it"));
        ctx.exit(pid, ExitReason::Kill);
        if ctx.wait_down(pid, KILL_WAIT).await.is_none() {
            ctx.log(log::Level::Error, format_args!("child {id:?} {pid} did not report its end; leaving it"));
        }
    }

    /// Counts a restart; `Err` when that exceeds the intensity.
    fn note_restart(&mut self) -> Result<(), ExitReason> {
        let now = Instant::now();
        while self.recent.front().is_some_and(|t| now.duration_since(*t) > self.period) {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.intensity as usize {
            let (n, period) = (self.intensity, self.period);
            return Err(ExitReason::custom(format!("{}: more than {n} in {period:?}", Self::INTENSITY_EXCEEDED)));
        }
        self.recent.push_back(now);
        self.restarts += 1;
        Ok(())
    }

    /// Child `i` ended with `reason`: restart what the strategy says, or give up.
    async fn child_exited(&mut self, ctx: &Context, i: usize, reason: ExitReason) -> Result<(), ExitReason> {
        let child = &mut self.children[i];
        child.pid = None;
        if !child.restart.wanted(&reason) {
            if child.restart == Restart::Temporary || self.strategy == Strategy::SimpleOneForOne {
                self.children.remove(i);
            }
            return Ok(());
        }
        if ctx.handle().is_stopping() {
            return Err(ExitReason::Shutdown);
        }
        let level = if reason.is_normal() { log::Level::Debug } else { log::Level::Warn };
        ctx.log(level, format_args!("child {:?} ended ({reason}); restarting ({:?})", child.id, self.strategy));
        self.note_restart()?;
        let len = self.children.len();
        let range = match self.strategy {
            Strategy::OneForOne | Strategy::SimpleOneForOne => i..i + 1,
            Strategy::AllForOne => 0..len,
            Strategy::RestForOne => i..len,
        };
        for k in range.clone().rev() {
            self.stop(ctx, k).await;
        }
        let mut k = range.start;
        while k < range.end {
            if self.children[k].restart == Restart::Temporary {
                k += 1;
                continue;
            }
            match self.start(ctx, k).await {
                Ok(_) => k += 1,
                Err(SpawnError::Stopped) => return Err(ExitReason::Shutdown),
                Err(e) => {
                    ctx.log(log::Level::Warn, format_args!("child {:?} failed to restart: {e}", self.children[k].id));
                    self.note_restart()?;
                }
            }
        }
        self.children.retain(|c| c.pid.is_some() || c.restart != Restart::Temporary);
        Ok(())
    }

    async fn start_dynamic(&mut self, ctx: &Context, arg: Message) -> Result<Pid, StartChildError> {
        let Some(spec) = &self.template else { return Err(StartChildError::NotSimple) };
        let Factory::Template(template) = &spec.factory else { return Err(StartChildError::NotSimple) };
        let launch = template.bind(arg).ok_or(StartChildError::WrongArgument)?;
        self.children.push(Child::new(spec, launch));
        let i = self.children.len() - 1;
        self.start(ctx, i).await.map_err(|e| {
            self.children.remove(i);
            StartChildError::Spawn(e)
        })
    }
}

fn decode_start(reply: Result<Message, CallError>) -> Result<Pid, StartChildError> {
    match reply.map_err(StartChildError::Call)?.downcast::<Result<Pid, StartChildError>>() {
        Ok(result) => result,
        Err(_) => Err(StartChildError::Call(CallError::WrongType)),
    }
}

fn decode_info(reply: Result<Message, CallError>) -> Result<SupervisorInfo, CallError> {
    reply?.downcast::<SupervisorInfo>().map_err(|_| CallError::WrongType)
}

impl Actor for Supervisor {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        if let Some(problem) = self.invalid.take() {
            return Err(ExitReason::custom(format!("supervisor: invalid options: {problem}")));
        }
        ctx.set_trap_exit(true);
        for i in 0..self.children.len() {
            if let Err(e) = self.start(ctx, i).await {
                for k in (0..i).rev() {
                    self.stop(ctx, k).await;
                }
                let id = &self.children[i].id;
                return Err(ExitReason::custom(format!("supervisor: child {id:?} failed to start: {e}")));
            }
        }
        Ok(())
    }

    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        let msg = match msg.downcast::<Down>() {
            Ok(down) => match self.children.iter().position(|c| c.pid == Some(down.pid)) {
                Some(i) => return self.child_exited(ctx, i, down.reason).await,
                None => return Ok(()), // a child given up on after `Kill`
            },
            Err(msg) => msg,
        };
        match msg.downcast::<ExitSignal>() {
            // Someone's `exit(supervisor, reason)`: end as a process that does not trap exits would.
            Ok(signal) if signal.reason != ExitReason::Normal => Err(signal.reason),
            _ => Ok(()),
        }
    }

    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, req: Message) -> Result<Reply, ExitReason> {
        if req.is::<WhichChildren>() {
            return Ok(Reply::now(self.info()));
        }
        match req.downcast::<StartChild>() {
            Ok(start) => Ok(Reply::now(self.start_dynamic(ctx, start.0).await)),
            Err(_) => Ok(Reply::Later), // not a supervisor request: the caller gets `NoReply`
        }
    }

    async fn terminate(&mut self, ctx: &mut Context, _: &ExitReason) {
        for i in (0..self.children.len()).rev() {
            self.stop(ctx, i).await;
        }
    }
}
