//! [`Supervisor`]: starts child processes and restarts them by strategy, restart type and
//! intensity.

mod spec;

use std::any::Any;
use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::error::{CallError, SpawnError};
use crate::node::NodeHandle;
use crate::process::{Actor, Context, Down, ExitReason, ExitSignal, Message, Pid, Reply, Target};

use spec::*;
pub use spec::{
    ChildInfo, ChildSpec, Restart, StartChild, StartChildError, Strategy, SupervisorInfo, SupervisorOptions,
    WhichChildren,
};

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
///   first, when it ends by giving up or by an exit signal with any reason but `Normal`
///   (`ctx.exit(supervisor, ExitReason::Shutdown)`). [`Node::stop`](crate::Node::stop) asks every
///   process to stop at once, children included, each within the node's `shutdown_timeout`: for
///   an ordered stop, exit the top supervisor with `Shutdown` and let it end first, as below
///   (a user trial found this doc claiming the order for `node.stop()`).
///
/// The supervisor monitors each child: a child's end reaches it as a [`Down`] (a
/// child gone before the monitor was set reports `NoProcess`, a failure). A `Down` never ends
/// its receiver, whatever the reason, so a killed child cannot take its supervisor (and its
/// siblings) with it. It traps exits, so that an exit
/// signal ends it through `terminate`. Each child is tied to its supervisor in turn, as in OTP:
/// it gets the supervisor's exit signal when the supervisor ends, so a supervisor that is
/// killed (no `terminate`, no ordered stop) takes its children with it instead of leaving them
/// running, their names taken (a child that traps exits gets it as an [`ExitSignal`]; a child
/// supervisor stops its own children, in order, before it ends with `Kill`). When the
/// supervisor ends any other way, it has stopped them first.
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
/// // An ordered stop: the supervisor stops "cache", then "db", then ends.
/// node.exit(sup, pinion::ExitReason::Shutdown);
/// while node.process_info(sup).is_ok() {
///     std::thread::sleep(Duration::from_millis(1));
/// }
/// node.stop();
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
        ctx.link_child(pid);
        self.children[i].pid = Some(pid);
        Ok(pid)
    }

    /// Stops child `i` if it runs: `Shutdown`, then `Kill` after its shutdown time.
    async fn stop(&mut self, ctx: &Context, i: usize) {
        let Some(pid) = self.children[i].pid.take() else { return };
        let (id, shutdown) = (&self.children[i].id, self.children[i].shutdown);
        ctx.exit(pid, ExitReason::Shutdown);
        if ctx.wait_down(pid, shutdown).await.is_some() {
            ctx.unlink_child(pid);
            return;
        }
        ctx.log(log::Level::Warn, format_args!("child {id:?} {pid} did not stop within {shutdown:?}; killing it"));
        ctx.exit(pid, ExitReason::Kill);
        if ctx.wait_down(pid, KILL_WAIT).await.is_none() {
            ctx.log(log::Level::Error, format_args!("child {id:?} {pid} did not report its end; leaving it"));
        }
        ctx.unlink_child(pid);
    }

    /// Stops every child, last started first.
    async fn stop_all(&mut self, ctx: &Context) {
        for i in (0..self.children.len()).rev() {
            self.stop(ctx, i).await;
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
            Ok(down) => {
                // Ended: its tie to this supervisor goes too.
                ctx.unlink_child(down.pid);
                return match self.children.iter().position(|c| c.pid == Some(down.pid)) {
                    Some(i) => self.child_exited(ctx, i, down.reason).await,
                    None => Ok(()), // a child given up on after `Kill`
                };
            }
            Err(msg) => msg,
        };
        match msg.downcast::<ExitSignal>() {
            // Someone's `exit(supervisor, reason)`: end as a process that does not trap exits would.
            Ok(signal) if signal.reason != ExitReason::Normal => {
                if signal.reason == ExitReason::Kill {
                    // A killed parent's (or linked process's) signal, trapped: the process loop
                    // takes a returned `Kill` for a kill of this process and runs no
                    // `terminate`, so the ordered stop is done here (OTP's supervisor stops its
                    // children on its parent's `killed`). A review found a killed tree's
                    // subtrees ending without it: their children got only the tie's `Kill`.
                    self.stop_all(ctx).await;
                }
                Err(signal.reason)
            }
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
        self.stop_all(ctx).await;
    }
}
