//! Supervisor: strategies, restart types, intensity, start failures, ordered shutdown — on real
//! nodes with 1 and 2 shards. Waits are bounded only to turn a hang into a failure; nothing
//! asserts on timing.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use pinion::{
    Actor, ChildSpec, Context, Cores, ExitReason, ExitSignal, Message, Node, NodeOptions, Pid, ProcessOptions, Reply,
    Restart, ShardId, SpawnError, StartChildError, Strategy, Supervisor, SupervisorInfo, SupervisorOptions,
};

use support::watch;

const LIMIT: Duration = Duration::from_secs(30);

type Log = Arc<Mutex<Vec<String>>>;

fn node(name: &str, shards: usize) -> Node {
    let options = NodeOptions { cores: Cores::Count(shards), pin: false, ..Default::default() };
    Node::start(name, options).unwrap_or_else(|e| panic!("starting {name}: {e}"))
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// What a test asks a [`Worker`] to do.
enum Cmd {
    Panic,
    Exit(ExitReason),
}

/// A child that logs `"<id> <reason>"` from `terminate`, answers calls with its argument, and
/// panics or ends on request.
struct Worker {
    id: String,
    log: Log,
    arg: u64,
    fail_init: bool,
}

impl Actor for Worker {
    async fn init(&mut self, _: &mut Context) -> Result<(), ExitReason> {
        if self.fail_init { Err(ExitReason::custom("no database")) } else { Ok(()) }
    }
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        match msg.downcast::<Cmd>() {
            Ok(Cmd::Panic) => panic!("worker {} panics on request", self.id),
            Ok(Cmd::Exit(reason)) => Err(reason),
            Err(_) => Ok(()),
        }
    }
    async fn handle_call(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        Ok(Reply::now(self.arg))
    }
    async fn terminate(&mut self, _: &mut Context, reason: &ExitReason) {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).push(format!("{} {reason}", self.id));
    }
}

fn worker(id: &str, log: &Log) -> ChildSpec {
    let (name, log) = (id.to_owned(), log.clone());
    ChildSpec::new(id, move || Worker { id: name.clone(), log: log.clone(), arg: 0, fail_init: false })
}

fn spawn_sup(node: &Node, options: SupervisorOptions) -> Result<Pid, SpawnError> {
    node.spawn_on(ShardId(0), move || Supervisor::new(options), ProcessOptions::default()).wait()
}

fn options(strategy: Strategy, children: Vec<ChildSpec>) -> SupervisorOptions {
    SupervisorOptions { strategy, children, period: Duration::from_secs(60), ..Default::default() }
}

fn info(node: &Node, sup: Pid) -> SupervisorInfo {
    Supervisor::which_children_blocking(node, sup, LIMIT).expect("which_children")
}

fn pids(node: &Node, sup: Pid) -> Vec<Option<Pid>> {
    info(node, sup).children.iter().map(|c| c.pid).collect()
}

fn alive(node: &Node, pid: Pid) -> bool {
    node.process_info(pid).is_ok()
}

/// Children `ids`, spread over the node's shards.
fn spread(ids: &[&str], shards: usize, log: &Log) -> Vec<ChildSpec> {
    ids.iter().enumerate().map(|(i, id)| worker(id, log).shard(ShardId((i % shards) as u16))).collect()
}

fn gave_up(reason: &ExitReason) -> bool {
    matches!(reason, ExitReason::Custom(text) if text.starts_with(Supervisor::INTENSITY_EXCEEDED))
}

/// Crashes the child at `index` and waits until it runs again under a new pid.
fn crash_and_wait(node: &Node, sup: Pid, index: usize) -> Vec<Option<Pid>> {
    let before = pids(node, sup);
    node.send(before[index].expect("running child"), Cmd::Panic).expect("send");
    let mut after = before.clone();
    wait_until("the child restarted", || {
        after = pids(node, sup);
        after[index].is_some_and(|p| Some(p) != before[index])
    });
    after
}

#[test]
fn one_for_one_restarts_only_the_failed_child() {
    for shards in [1, 2] {
        let node = node(&format!("sup-one-{shards}"), shards);
        let log = Log::default();
        let sup = spawn_sup(&node, options(Strategy::OneForOne, spread(&["a", "b", "c"], shards, &log))).unwrap();
        let before = pids(&node, sup);
        let after = crash_and_wait(&node, sup, 1);
        assert_eq!((after[0], after[2]), (before[0], before[2]), "siblings keep their pids");
        assert!(!alive(&node, before[1].unwrap()));
        assert_eq!(info(&node, sup).restarts, 1);
        assert!(entries(&log).is_empty(), "no sibling was stopped: {:?}", entries(&log));
        node.stop();
    }
}

#[test]
fn all_for_one_restarts_every_child_stopping_them_in_reverse() {
    for shards in [1, 2] {
        let node = node(&format!("sup-all-{shards}"), shards);
        let log = Log::default();
        let sup = spawn_sup(&node, options(Strategy::AllForOne, spread(&["a", "b", "c"], shards, &log))).unwrap();
        let before = pids(&node, sup);
        let after = crash_and_wait(&node, sup, 1);
        wait_until("all children restarted", || {
            pids(&node, sup).iter().zip(&before).all(|(now, old)| now.is_some() && now != old)
        });
        assert_ne!(after, before);
        assert_eq!(entries(&log), ["c shutdown", "a shutdown"]);
        assert_eq!(info(&node, sup).restarts, 1);
        node.stop();
    }
}

#[test]
fn rest_for_one_restarts_the_failed_child_and_later_ones() {
    for shards in [1, 2] {
        let node = node(&format!("sup-rest-{shards}"), shards);
        let log = Log::default();
        let children = spread(&["a", "b", "c", "d"], shards, &log);
        let sup = spawn_sup(&node, options(Strategy::RestForOne, children)).unwrap();
        let before = pids(&node, sup);
        crash_and_wait(&node, sup, 1);
        let after = pids(&node, sup);
        assert_eq!(after[0], before[0], "an earlier child keeps its pid");
        assert!(after[1..].iter().zip(&before[1..]).all(|(now, old)| now.is_some() && now != old));
        assert_eq!(entries(&log), ["d shutdown", "c shutdown"]);
        node.stop();
    }
}

#[test]
fn transient_child_is_restarted_after_abnormal_end_only() {
    for shards in [1, 2] {
        let node = node(&format!("sup-transient-{shards}"), shards);
        let log = Log::default();
        let children = spread(&["normal", "shutdown", "custom", "panic"], shards, &log)
            .into_iter()
            .map(|c| c.restart(Restart::Transient))
            .collect();
        let sup = spawn_sup(&node, options(Strategy::OneForOne, children)).unwrap();
        let before = pids(&node, sup);
        node.send(before[0].unwrap(), Cmd::Exit(ExitReason::Normal)).unwrap();
        node.send(before[1].unwrap(), Cmd::Exit(ExitReason::Shutdown)).unwrap();
        wait_until("normal ends seen", || pids(&node, sup)[..2] == [None, None]);
        assert_eq!(info(&node, sup).restarts, 0, "a normal end restarts nothing");
        node.send(before[2].unwrap(), Cmd::Exit(ExitReason::custom("broken"))).unwrap();
        node.send(before[3].unwrap(), Cmd::Panic).unwrap();
        wait_until("abnormal ends restarted", || {
            let now = pids(&node, sup);
            now[2..].iter().zip(&before[2..]).all(|(now, old)| now.is_some() && now != old)
        });
        assert_eq!(info(&node, sup).restarts, 2);
        assert_eq!(info(&node, sup).children.len(), 4, "a stopped transient child keeps its place");
        node.stop();
    }
}

#[test]
fn killed_child_is_restarted_and_its_supervisor_survives() {
    for shards in [1, 2] {
        let node = node(&format!("sup-killed-{shards}"), shards);
        let log = Log::default();
        let sup = spawn_sup(&node, options(Strategy::OneForOne, spread(&["a", "b"], shards, &log))).unwrap();
        let before = pids(&node, sup);
        node.exit(before[1].unwrap(), ExitReason::Kill);
        wait_until("killed child restarted", || pids(&node, sup)[1].is_some_and(|p| Some(p) != before[1]));
        assert_eq!(pids(&node, sup)[0], before[0]);
        assert_eq!(info(&node, sup).restarts, 1);
        node.stop();
    }
}

#[test]
fn permanent_child_is_restarted_even_after_normal_end() {
    let node = node("sup-permanent", 1);
    let log = Log::default();
    let sup = spawn_sup(&node, options(Strategy::OneForOne, vec![worker("p", &log)])).unwrap();
    let old = pids(&node, sup)[0].unwrap();
    node.send(old, Cmd::Exit(ExitReason::Normal)).unwrap();
    wait_until("restarted", || pids(&node, sup)[0].is_some_and(|p| p != old));
    assert_eq!(info(&node, sup).restarts, 1);
    node.stop();
}

#[test]
fn temporary_child_is_never_restarted_and_is_forgotten() {
    for shards in [1, 2] {
        let node = node(&format!("sup-temporary-{shards}"), shards);
        let log = Log::default();
        let children = vec![worker("keep", &log), worker("temp", &log).restart(Restart::Temporary)];
        let sup = spawn_sup(&node, options(Strategy::AllForOne, spread_shards(children, shards))).unwrap();
        let before = pids(&node, sup);
        node.send(before[1].unwrap(), Cmd::Panic).unwrap();
        wait_until("temporary child forgotten", || info(&node, sup).children.len() == 1);
        let now = info(&node, sup);
        assert_eq!((now.children[0].id.as_str(), now.children[0].pid), ("keep", before[0]));
        assert_eq!(now.restarts, 0);
        node.stop();
    }
}

fn spread_shards(children: Vec<ChildSpec>, shards: usize) -> Vec<ChildSpec> {
    children.into_iter().enumerate().map(|(i, c)| c.shard(ShardId((i % shards) as u16))).collect()
}

/// Asks a supervisor, from inside a process, to start a child with the argument it is called with.
struct Starter {
    sup: Pid,
}

impl Actor for Starter {
    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, req: Message) -> Result<Reply, ExitReason> {
        let arg = req.downcast::<u64>().expect("u64 argument");
        Ok(Reply::now(Supervisor::start_child(ctx, self.sup, arg, LIMIT).await))
    }
}

#[test]
fn simple_one_for_one_starts_children_on_request_and_restarts_them_with_their_argument() {
    for shards in [1, 2] {
        let node = node(&format!("sup-simple-{shards}"), shards);
        let log = Log::default();
        let l = log.clone();
        let template = ChildSpec::template("conn", move |arg: u64| Worker {
            id: format!("conn{arg}"),
            log: l.clone(),
            arg,
            fail_init: arg == 99,
        })
        .restart(Restart::Transient)
        .shard(ShardId((shards - 1) as u16));
        let sup = spawn_sup(&node, options(Strategy::SimpleOneForOne, vec![template])).unwrap();
        assert!(info(&node, sup).children.is_empty());
        let started: Vec<Pid> =
            (1..=2u64).map(|n| Supervisor::start_child_blocking(&node, sup, n, LIMIT).expect("start_child")).collect();
        let starter = node.spawn(move || Starter { sup }, ProcessOptions::default()).wait().unwrap();
        let third = node.call_blocking(starter, 3u64, LIMIT).unwrap();
        let third = third.downcast::<Result<Pid, StartChildError>>().unwrap().expect("start_child from a process");
        let arg_of = |pid: Pid| node.call_blocking(pid, (), LIMIT).unwrap().downcast::<u64>().unwrap();
        assert_eq!([arg_of(started[0]), arg_of(started[1]), arg_of(third)], [1, 2, 3]);
        let now = info(&node, sup);
        assert!(now.children.iter().all(|c| c.id == "conn" && c.restart == Restart::Transient));
        assert_eq!(
            now.children.iter().map(|c| c.pid).collect::<Vec<_>>(),
            [Some(started[0]), Some(started[1]), Some(third)]
        );

        node.send(started[1], Cmd::Panic).unwrap();
        wait_until("dynamic child restarted", || pids(&node, sup)[1].is_some_and(|p| p != started[1]));
        assert_eq!(arg_of(pids(&node, sup)[1].unwrap()), 2, "restarted with its argument");
        node.send(third, Cmd::Exit(ExitReason::Normal)).unwrap();
        wait_until("normally ended transient child removed", || info(&node, sup).children.len() == 2);

        let wrong = Supervisor::start_child_blocking(&node, sup, "not a u64", LIMIT);
        assert_eq!(wrong, Err(StartChildError::WrongArgument));
        let failed = Supervisor::start_child_blocking(&node, sup, 99u64, LIMIT);
        assert_eq!(failed, Err(StartChildError::Spawn(SpawnError::InitFailed(ExitReason::custom("no database")))));
        assert_eq!(info(&node, sup).children.len(), 2, "a child that failed to start is not kept");
        node.stop();
    }
}

#[test]
fn start_child_on_a_static_supervisor_is_refused() {
    let node = node("sup-not-simple", 1);
    let sup = spawn_sup(&node, options(Strategy::OneForOne, vec![])).unwrap();
    assert_eq!(Supervisor::start_child_blocking(&node, sup, 1u64, LIMIT), Err(StartChildError::NotSimple));
    node.stop();
}

#[test]
fn intensity_exceeded_ends_the_supervisor_with_its_reason_and_stops_the_children() {
    for shards in [1, 2] {
        let node = node(&format!("sup-intensity-{shards}"), shards);
        let log = Log::default();
        let mut opts = options(Strategy::OneForOne, spread(&["crashy", "b", "c"], shards, &log));
        opts.intensity = 2;
        let sup = spawn_sup(&node, opts).unwrap();
        let down = watch(&node, sup);
        crash_and_wait(&node, sup, 0);
        let survivors = crash_and_wait(&node, sup, 0);
        node.send(survivors[0].unwrap(), Cmd::Panic).unwrap();
        let reason = down.recv_timeout(LIMIT).expect("the supervisor's Down");
        assert!(gave_up(&reason), "unexpected reason {reason:?}");
        assert_eq!(entries(&log), ["c shutdown", "b shutdown"]);
        assert!(survivors.iter().flatten().all(|p| !alive(&node, *p)));
        node.stop();
    }
}

#[test]
fn factory_that_panics_on_every_restart_makes_the_supervisor_give_up() {
    for shards in [1, 2] {
        let node = node(&format!("sup-factory-{shards}"), shards);
        let log = Log::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let (c, l) = (calls.clone(), log.clone());
        let flaky = ChildSpec::new("flaky", move || {
            assert!(c.fetch_add(1, Ordering::SeqCst) == 0, "the factory works only once");
            Worker { id: "flaky".into(), log: l.clone(), arg: 0, fail_init: false }
        })
        .shard(ShardId((shards - 1) as u16));
        let mut opts = options(Strategy::OneForOne, vec![flaky]);
        opts.intensity = 3;
        let sup = spawn_sup(&node, opts).unwrap();
        let down = watch(&node, sup);
        node.send(pids(&node, sup)[0].unwrap(), Cmd::Panic).unwrap();
        let reason = down.recv_timeout(LIMIT).expect("the supervisor's Down");
        assert!(gave_up(&reason), "unexpected reason {reason:?}");
        assert_eq!(calls.load(Ordering::SeqCst), 1 + 3, "the first start, then one attempt per allowed restart");
        node.stop();
    }
}

/// Ends at once after `init` when told to (before its supervisor may have monitored it), or when
/// it gets any message.
struct Ephemeral {
    at_once: bool,
}

impl Actor for Ephemeral {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        if self.at_once {
            ctx.stop(ExitReason::custom("gone at once"));
        }
        Ok(())
    }
    async fn handle_message(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> {
        Err(ExitReason::custom("asked to end"))
    }
}

#[test]
fn child_that_ends_before_it_is_monitored_counts_as_a_failure() {
    for shards in [1, 2] {
        let node = node(&format!("sup-ephemeral-{shards}"), shards);
        let starts = Arc::new(AtomicUsize::new(0));
        let s = starts.clone();
        let child = ChildSpec::new("ephemeral", move || Ephemeral { at_once: s.fetch_add(1, Ordering::SeqCst) > 0 })
            .shard(ShardId((shards - 1) as u16));
        let mut opts = options(Strategy::OneForOne, vec![child]);
        opts.intensity = 3;
        let sup = spawn_sup(&node, opts).unwrap();
        let down = watch(&node, sup);
        node.send(pids(&node, sup)[0].unwrap(), ()).unwrap();
        let reason = down.recv_timeout(LIMIT).expect("the supervisor's Down");
        assert!(gave_up(&reason), "unexpected reason {reason:?}");
        assert_eq!(starts.load(Ordering::SeqCst), 1 + 3);
        node.stop();
    }
}

#[test]
fn child_init_failure_fails_the_supervisor_spawn_and_stops_earlier_children() {
    for shards in [1, 2] {
        let node = node(&format!("sup-init-{shards}"), shards);
        let log = Log::default();
        let l = log.clone();
        let bad = ChildSpec::new("db", move || Worker { id: "db".into(), log: l.clone(), arg: 0, fail_init: true });
        let children = spread_shards(vec![worker("a", &log), worker("b", &log), bad, worker("c", &log)], shards);
        match spawn_sup(&node, options(Strategy::OneForOne, children)) {
            Err(SpawnError::InitFailed(ExitReason::Custom(text))) => {
                assert!(text.contains("\"db\"") && text.contains("no database"), "{text}");
            }
            other => panic!("expected InitFailed, got {other:?}"),
        }
        assert_eq!(entries(&log), ["b shutdown", "a shutdown"]);
        node.stop();
    }
}

#[test]
fn invalid_options_fail_the_supervisor_spawn() {
    let node = node("sup-invalid", 1);
    let log = Log::default();
    let template =
        || ChildSpec::template("t", |_: u64| Worker { id: "t".into(), log: Log::default(), arg: 0, fail_init: false });
    let cases = [
        options(Strategy::SimpleOneForOne, vec![]),
        options(Strategy::SimpleOneForOne, vec![worker("w", &log)]),
        options(Strategy::OneForOne, vec![template()]),
        options(Strategy::OneForOne, vec![worker("w", &log), worker("w", &log)]),
    ];
    for opts in cases {
        match spawn_sup(&node, opts) {
            Err(SpawnError::InitFailed(ExitReason::Custom(text))) => {
                assert!(text.contains("invalid options"), "{text}")
            }
            other => panic!("expected InitFailed, got {other:?}"),
        }
    }
    assert!(entries(&log).is_empty());
    node.stop();
}

#[test]
fn shutdown_stops_children_in_reverse_start_order() {
    for shards in [1, 2] {
        let node = node(&format!("sup-shutdown-{shards}"), shards);
        let log = Log::default();
        let sup = spawn_sup(&node, options(Strategy::OneForOne, spread(&["a", "b", "c", "d"], shards, &log))).unwrap();
        let children = pids(&node, sup);
        let down = watch(&node, sup);
        node.exit(sup, ExitReason::Normal);
        assert_eq!(info(&node, sup).children.len(), 4, "a normal exit signal is ignored");
        node.exit(sup, ExitReason::Shutdown);
        assert_eq!(down.recv_timeout(LIMIT).expect("the supervisor's Down"), ExitReason::Shutdown);
        assert_eq!(entries(&log), ["d shutdown", "c shutdown", "b shutdown", "a shutdown"]);
        assert!(children.iter().flatten().all(|p| !alive(&node, *p)));
        node.stop();
    }
}

/// Traps exits and ignores them: only `Kill` ends it.
struct Stubborn;

impl Actor for Stubborn {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        assert!(msg.is::<ExitSignal>());
        Ok(())
    }
}

#[test]
fn child_that_ignores_shutdown_is_killed_after_its_shutdown_time() {
    for shards in [1, 2] {
        let node = node(&format!("sup-stubborn-{shards}"), shards);
        let log = Log::default();
        let stubborn = ChildSpec::new("stubborn", || Stubborn)
            .options(ProcessOptions { trap_exit: true, ..Default::default() })
            .shutdown(Duration::from_millis(20))
            .shard(ShardId((shards - 1) as u16));
        let sup = spawn_sup(&node, options(Strategy::OneForOne, vec![worker("a", &log), stubborn])).unwrap();
        let children = pids(&node, sup);
        let down = watch(&node, sup);
        node.exit(sup, ExitReason::Shutdown);
        assert_eq!(down.recv_timeout(LIMIT).expect("the supervisor's Down"), ExitReason::Shutdown);
        assert_eq!(entries(&log), ["a shutdown"]);
        assert!(children.iter().flatten().all(|p| !alive(&node, *p)));
        node.stop();
    }
}

#[test]
fn named_children_are_registered_again_on_restart() {
    let node = node("sup-named", 2);
    let log = Log::default();
    let children = vec![
        worker("here", &log).name("sup-named-here"),
        worker("there", &log).name("sup-named-there").shard(ShardId(1)),
    ];
    let sup = spawn_sup(&node, options(Strategy::OneForOne, children)).unwrap();
    let before = pids(&node, sup);
    assert_eq!([node.whereis("sup-named-here"), node.whereis("sup-named-there")], [before[0], before[1]]);
    assert_eq!(before[1].unwrap().shard(), ShardId(1));
    for i in 0..2 {
        let after = crash_and_wait(&node, sup, i);
        let name = ["sup-named-here", "sup-named-there"][i];
        wait_until("name registered again", || node.whereis(name) == after[i]);
    }
    node.stop();
}

#[test]
fn node_stop_terminates_a_supervision_tree() {
    let node = node("sup-tree", 2);
    let log = Log::default();
    let inner = options(Strategy::RestForOne, spread(&["w2", "w3"], 2, &log));
    let subtree = ChildSpec::new("subtree", move || Supervisor::new(inner.clone()))
        .shard(ShardId(1))
        .shutdown(Duration::from_secs(20));
    let children = vec![worker("w1", &log), subtree, worker("w4", &log).restart(Restart::Temporary)];
    let sup = spawn_sup(&node, options(Strategy::OneForOne, children)).unwrap();
    let sub = pids(&node, sup)[1].unwrap();
    assert_eq!(info(&node, sub).children.len(), 2);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        node.stop();
        let _ = tx.send(());
    });
    rx.recv_timeout(LIMIT * 2).expect("node stop returned");
    let mut ended = entries(&log);
    ended.sort();
    assert_eq!(ended, ["w1 shutdown", "w2 shutdown", "w3 shutdown", "w4 shutdown"]);
}

/// Takes `after` in `terminate` before it logs `"<id> done"`.
struct SlowToStop {
    id: &'static str,
    after: Duration,
    log: Log,
}

impl Actor for SlowToStop {
    async fn terminate(&mut self, ctx: &mut Context, _: &ExitReason) {
        ctx.sleep(self.after).await;
        self.log.lock().unwrap_or_else(PoisonError::into_inner).push(format!("{} done", self.id));
    }
}

/// Found by a user trial: a child supervisor had the same default shutdown time (5 s) as any
/// child, so its parent killed it while it still waited for a slow child of its own; a killed
/// supervisor runs no `terminate`, and that grandchild was left running (its name taken, every
/// restart of the subtree failing on it). By default a child supervisor now gets as long as it
/// takes (OTP's `infinity`): here its child takes 5.5 s, more than the old default.
#[test]
fn a_child_supervisor_gets_by_default_the_time_its_children_take_to_stop() {
    let worker_spec = ChildSpec::new("w", || SlowToStop { id: "w", after: Duration::ZERO, log: Log::default() });
    assert_eq!(worker_spec.shutdown_timeout(), ChildSpec::DEFAULT_SHUTDOWN);
    let node = node("sup-nested-default", 1);
    let log = Log::default();
    let slow = {
        let log = log.clone();
        ChildSpec::new("g", move || SlowToStop { id: "g", after: Duration::from_millis(5500), log: log.clone() })
            .shutdown(Duration::from_secs(20))
    };
    let inner = options(Strategy::OneForOne, vec![slow]);
    let subtree = ChildSpec::new("s", move || Supervisor::new(inner.clone()));
    assert_eq!(subtree.shutdown_timeout(), ChildSpec::SUPERVISOR_SHUTDOWN);
    let top = spawn_sup(&node, options(Strategy::OneForOne, vec![subtree])).unwrap();
    let s = pids(&node, top)[0].expect("the subtree runs");
    let g = pids(&node, s)[0].expect("its child runs");
    let down = watch(&node, top);
    node.exit(top, ExitReason::Shutdown);
    assert_eq!(down.recv_timeout(LIMIT).expect("the top supervisor's Down"), ExitReason::Shutdown);
    assert_eq!(entries(&log), ["g done"], "the grandchild stopped before the tree ended");
    assert!(!alive(&node, g) && !alive(&node, s));
    node.stop();
}

/// Found by a user trial: nothing tied a child to its supervisor, so a supervisor that was
/// killed (no `terminate`, no ordered stop) left its children running, a named one keeping its
/// name, and every restart of the supervisor failed on that name. Now a child gets its
/// supervisor's exit signal, as in OTP: the killed subtree ends, and it is restarted whole.
#[test]
fn a_killed_supervisor_takes_its_children_with_it_and_is_restarted_whole() {
    let node = node("sup-killed-subtree", 1);
    let log = Log::default();
    let g = {
        let log = log.clone();
        ChildSpec::new("g", move || SlowToStop { id: "g", after: Duration::ZERO, log: log.clone() })
            .name("sup-killed-g")
    };
    let inner = options(Strategy::OneForOne, vec![g]);
    let top = spawn_sup(
        &node,
        options(Strategy::OneForOne, vec![ChildSpec::new("s", move || Supervisor::new(inner.clone()))]),
    )
    .unwrap();
    let s = pids(&node, top)[0].expect("the subtree runs");
    let g = pids(&node, s)[0].expect("its child runs");
    assert_eq!(node.whereis("sup-killed-g"), Some(g));
    node.exit(s, ExitReason::Kill);
    wait_until("the killed supervisor's child ended", || !alive(&node, g));
    wait_until("the subtree restarted whole", || {
        let s2 = pids(&node, top)[0];
        s2.is_some_and(|s2| s2 != s) && node.whereis("sup-killed-g").is_some_and(|g2| g2 != g)
    });
    assert!(alive(&node, top), "the top supervisor did not give up");
    node.stop();
}
