//! Review 48: supervisors and the name registry, against their docs and OTP's documented
//! semantics. Nodes of 1 or 2 shards; every wait is bounded (a hang fails, nothing asserts on
//! timing).

mod support;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pinion::{
    Actor, ChildSpec, Context, Down, ExitReason, Handled, Message, Node, Pid, ProcessOptions, RegisterError, Reply,
    Restart, ShardId, Strategy, Supervisor, SupervisorOptions,
};
use support::{CALL_TIMEOUT, lock, node, wait_until, watch};

type Log = Arc<Mutex<Vec<String>>>;

fn entries(log: &Log) -> Vec<String> {
    lock(log).clone()
}

/// Logs `"<id> <reason>"` from `terminate`; ends with the reason it is sent, panics on `"panic"`.
struct Worker {
    id: &'static str,
    log: Log,
}

impl Actor for Worker {
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if msg.downcast_ref::<&'static str>() == Some(&"panic") {
            panic!("worker {} panics on request", self.id);
        }
        match msg.downcast::<ExitReason>() {
            Ok(reason) => Err(reason),
            Err(_) => Ok(()),
        }
    }
    async fn handle_call(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        Ok(Reply::now(self.id))
    }
    async fn terminate(&mut self, _: &mut Context, reason: &ExitReason) {
        lock(&self.log).push(format!("{} {reason}", self.id));
    }
}

fn worker(id: &'static str, log: &Log) -> ChildSpec {
    let log = log.clone();
    ChildSpec::new(id, move || Worker { id, log: log.clone() })
}

fn sup_options(strategy: Strategy, children: Vec<ChildSpec>) -> SupervisorOptions {
    SupervisorOptions { strategy, children, intensity: 10, period: Duration::from_secs(60) }
}

fn spawn_sup(node: &Node, options: SupervisorOptions) -> Pid {
    node.spawn_on(ShardId(0), move || Supervisor::new(options), ProcessOptions::default()).wait().expect("supervisor")
}

fn pids(node: &Node, sup: Pid) -> Vec<Option<Pid>> {
    let info = Supervisor::which_children_blocking(node, sup, CALL_TIMEOUT).expect("which_children");
    info.children.iter().map(|c| c.pid).collect()
}

fn alive(node: &Node, pid: Pid) -> bool {
    node.process_info(pid).is_ok()
}

// ---- finding 1: a named child on another shard loses `handle_message_now` -------------------

/// Handles its `u64` messages in `handle_message_now` only (as `examples/ping_pong.rs` does):
/// `handle_message` is the default, which drops what reaches it.
struct NowOnly {
    tx: mpsc::Sender<u64>,
}

impl Actor for NowOnly {
    fn handle_message_now(&mut self, _: &mut Context, _: Pid, msg: Message) -> Handled {
        match msg.downcast::<u64>() {
            Ok(n) => {
                let _ = self.tx.send(n);
                Handled::Done(Ok(()))
            }
            Err(msg) => Handled::Async(msg),
        }
    }
}

/// A child's `name` and `shard` only say where it runs and what it is called: the same actor
/// must behave the same. On another shard than its supervisor a named child is wrapped so that
/// it registers itself in `init`, and the wrapper forwarded `init`, `handle_message`,
/// `handle_call` and `terminate` — not `handle_message_now`: every message the actor handles
/// there went to the default `handle_message` and was dropped.
#[test]
fn a_named_child_on_another_shard_still_handles_messages_in_handle_message_now() {
    let node = node("r48-now", 2);
    let mut got = Vec::new();
    for (k, (name, shard)) in
        [(None, 0), (Some("r48-now-0"), 0), (None, 1), (Some("r48-now-1"), 1)].into_iter().enumerate()
    {
        let (tx, rx) = mpsc::channel();
        let mut spec = ChildSpec::new("now", move || NowOnly { tx: tx.clone() }).shard(ShardId(shard));
        if let Some(name) = name {
            spec = spec.name(name);
        }
        let sup = spawn_sup(&node, sup_options(Strategy::OneForOne, vec![spec]));
        let child = pids(&node, sup)[0].expect("the child runs");
        assert_eq!(child.shard(), ShardId(shard));
        if let Some(name) = name {
            assert_eq!(node.whereis(name), Some(child));
        }
        node.send(child, k as u64).expect("send");
        got.push((name, shard, rx.recv_timeout(Duration::from_secs(2)).ok()));
        node.exit(sup, ExitReason::Shutdown);
    }
    node.stop();
    assert_eq!(
        got,
        [(None, 0, Some(0)), (Some("r48-now-0"), 0, Some(1)), (None, 1, Some(2)), (Some("r48-now-1"), 1, Some(3)),],
        "every placement handles its message in handle_message_now"
    );
}

// ---- finding 2: a child supervisor of a killed supervisor skips its ordered stop -------------

/// The top supervisor is killed. Its child supervisor traps exits and gets the exit signal
/// (`Kill`, as an ordinary signal: `ExitReason::Kill`'s doc); the `Supervisor` doc says "It
/// traps exits, so that an exit signal ends it through `terminate`", i.e. it stops its own
/// children (last started first, with `Shutdown`) before it ends, as an OTP supervisor does
/// on its parent's `killed`. It returned the signal's reason `Kill` from `handle_message`
/// instead, which the process loop takes for a kill: no `terminate`, no ordered stop; its
/// children only got the tie's `Kill` and ended without `terminate`.
#[test]
fn a_child_supervisor_of_a_killed_supervisor_stops_its_children_in_order() {
    for shards in [1u16, 2] {
        let node = node(&format!("r48-kill-tree-{shards}"), shards as usize);
        let log = Log::default();
        let inner = sup_options(
            Strategy::OneForOne,
            vec![worker("a", &log), worker("b", &log).shard(ShardId(shards - 1)).name(format!("r48-b-{shards}"))],
        );
        let subtree = ChildSpec::new("s", move || Supervisor::new(inner.clone())).shard(ShardId(shards - 1));
        let top = spawn_sup(&node, sup_options(Strategy::OneForOne, vec![subtree]));
        let s = pids(&node, top)[0].expect("the subtree runs");
        let grandchildren = pids(&node, s);
        let s_down = watch(&node, s);
        node.exit(top, ExitReason::Kill);
        let s_reason = s_down.recv_timeout(CALL_TIMEOUT).expect("the child supervisor's Down");
        wait_until("the grandchildren ended", || grandchildren.iter().flatten().all(|p| !alive(&node, *p)));
        assert_eq!(node.whereis(&format!("r48-b-{shards}")), None, "the name is free");
        node.stop();
        assert_eq!(s_reason, ExitReason::Kill, "it ends with the signal's reason");
        assert_eq!(entries(&log), ["b shutdown", "a shutdown"], "{shards} shard(s): stopped in reverse start order");
    }
}

// ---- what was fine ---------------------------------------------------------------------------

/// A way to end a child, by name.
type Ending = (&'static str, Box<dyn Fn(&Node, Pid)>);

/// Restart types per exit reason (OTP: permanent always; transient unless normal or shutdown;
/// temporary never), the child on the supervisor's shard and on another.
#[test]
fn restart_types_by_reason() {
    let node = node("r48-types", 2);
    let reasons: Vec<Ending> = vec![
        ("normal", Box::new(|n, p| n.send(p, ExitReason::Normal).unwrap())),
        ("shutdown", Box::new(|n, p| n.send(p, ExitReason::Shutdown).unwrap())),
        ("custom", Box::new(|n, p| n.send(p, ExitReason::custom("broken")).unwrap())),
        ("panic", Box::new(|n, p| n.send(p, "panic").unwrap())),
        ("kill", Box::new(|n, p| n.exit(p, ExitReason::Kill))),
        ("exit-shutdown", Box::new(|n, p| n.exit(p, ExitReason::Shutdown))),
        ("exit-custom", Box::new(|n, p| n.exit(p, ExitReason::custom("x")))),
    ];
    for shard in [0u16, 1] {
        for restart in [Restart::Permanent, Restart::Transient, Restart::Temporary] {
            for (what, end) in &reasons {
                let log = Log::default();
                let spec = worker("c", &log).restart(restart).shard(ShardId(shard));
                let sup = spawn_sup(&node, sup_options(Strategy::OneForOne, vec![spec, worker("other", &log)]));
                let old = pids(&node, sup)[0].unwrap();
                end(&node, old);
                wait_until("the child ended", || !alive(&node, old));
                let normal = matches!(*what, "normal" | "shutdown" | "exit-shutdown");
                let want = match restart {
                    Restart::Permanent => true,
                    Restart::Transient => !normal,
                    Restart::Temporary => false,
                };
                if want {
                    wait_until("restarted", || pids(&node, sup)[0].is_some_and(|p| p != old));
                } else {
                    let mut now = pids(&node, sup);
                    for _ in 0..50 {
                        std::thread::sleep(Duration::from_millis(2));
                        now = pids(&node, sup);
                    }
                    let len = if restart == Restart::Temporary { 1 } else { 2 };
                    assert_eq!(now.len(), len, "{restart:?} {what}");
                    if restart == Restart::Transient {
                        assert_eq!(now[0], None, "{what}: kept, not running");
                    }
                }
                let info = Supervisor::which_children_blocking(&node, sup, CALL_TIMEOUT).unwrap();
                assert_eq!(info.restarts, u64::from(want), "{restart:?} {what} shard {shard}");
                node.exit(sup, ExitReason::Shutdown);
            }
        }
    }
    node.stop();
}

/// Intensity 0: the first failure ends the supervisor, its other children stopped first, last
/// started first. Intensity 1 within a short period: failures further apart than the period
/// are each allowed.
#[test]
fn intensity_zero_and_the_window() {
    let node = node("r48-intensity", 2);
    let log = Log::default();
    let mut opts = sup_options(
        Strategy::OneForOne,
        vec![worker("a", &log), worker("b", &log).shard(ShardId(1)), worker("c", &log)],
    );
    opts.intensity = 0;
    let sup = spawn_sup(&node, opts);
    let children = pids(&node, sup);
    let down = watch(&node, sup);
    node.send(children[1].unwrap(), "panic").unwrap();
    let reason = down.recv_timeout(CALL_TIMEOUT).expect("the supervisor's Down");
    assert!(matches!(&reason, ExitReason::Custom(t) if t.starts_with(Supervisor::INTENSITY_EXCEEDED)), "{reason:?}");
    assert_eq!(entries(&log), ["c shutdown", "a shutdown"]);
    assert!(children.iter().flatten().all(|p| !alive(&node, *p)));

    let log = Log::default();
    let mut opts = sup_options(Strategy::OneForOne, vec![worker("w", &log)]);
    opts.intensity = 1;
    opts.period = Duration::from_millis(100);
    let sup = spawn_sup(&node, opts);
    for round in 0..3 {
        let old = pids(&node, sup)[0].unwrap();
        node.send(old, "panic").unwrap();
        wait_until("restarted", || alive(&node, sup) && pids(&node, sup)[0].is_some_and(|p| p != old));
        assert_eq!(Supervisor::which_children_blocking(&node, sup, CALL_TIMEOUT).unwrap().restarts, round + 1);
        std::thread::sleep(Duration::from_millis(250));
    }
    node.stop();
}

/// Rest-for-one with a temporary child after the failed one: it is stopped and forgotten, the
/// others restarted in order (OTP: temporary children are not restarted by a sibling's failure).
#[test]
fn rest_for_one_forgets_a_later_temporary_child() {
    let node = node("r48-rest-temp", 2);
    let log = Log::default();
    let children = vec![
        worker("a", &log),
        worker("b", &log).shard(ShardId(1)),
        worker("t", &log).restart(Restart::Temporary),
        worker("d", &log).shard(ShardId(1)),
    ];
    let sup = spawn_sup(&node, sup_options(Strategy::RestForOne, children));
    let before = pids(&node, sup);
    node.send(before[1].unwrap(), "panic").unwrap();
    wait_until("restarted", || pids(&node, sup).len() == 3);
    let info = Supervisor::which_children_blocking(&node, sup, CALL_TIMEOUT).unwrap();
    let ids: Vec<&str> = info.children.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "d"]);
    assert_eq!(info.children[0].pid, before[0]);
    assert!(info.children[1..].iter().all(|c| c.pid.is_some()));
    assert_eq!(entries(&log), ["d shutdown", "t shutdown"]);
    node.stop();
}

/// A nested supervisor that gives up is restarted by its parent, whole.
#[test]
fn a_child_supervisor_that_gives_up_is_restarted_by_its_parent() {
    let node = node("r48-nested", 2);
    let log = Log::default();
    let mut inner = sup_options(Strategy::OneForOne, vec![worker("g", &log).shard(ShardId(1)).name("r48-nested-g")]);
    inner.intensity = 0;
    let subtree = ChildSpec::new("s", move || Supervisor::new(inner.clone()));
    let top = spawn_sup(&node, sup_options(Strategy::OneForOne, vec![subtree]));
    let s = pids(&node, top)[0].unwrap();
    let g = pids(&node, s)[0].unwrap();
    node.send(g, "panic").unwrap();
    wait_until("the subtree restarted", || {
        pids(&node, top)[0].is_some_and(|s2| s2 != s) && node.whereis("r48-nested-g").is_some_and(|g2| g2 != g)
    });
    assert_eq!(Supervisor::which_children_blocking(&node, top, CALL_TIMEOUT).unwrap().restarts, 1);
    node.stop();
}

/// A supervisor killed directly: its children end by the tie, with `Kill` (documented), their
/// names free.
#[test]
fn a_killed_supervisor_s_children_end_with_kill_and_free_their_names() {
    let node = node("r48-killed", 2);
    let log = Log::default();
    let children =
        vec![worker("a", &log).name("r48-killed-a"), worker("b", &log).shard(ShardId(1)).name("r48-killed-b")];
    let sup = spawn_sup(&node, sup_options(Strategy::OneForOne, children));
    let kids = pids(&node, sup);
    let downs: Vec<_> = kids.iter().map(|p| watch(&node, p.unwrap())).collect();
    node.exit(sup, ExitReason::Kill);
    for d in downs {
        assert_eq!(d.recv_timeout(CALL_TIMEOUT), Ok(ExitReason::Kill));
    }
    assert_eq!((node.whereis("r48-killed-a"), node.whereis("r48-killed-b")), (None, None));
    node.stop();
}

/// Starts dynamic children and crashes one between: every request and every crash is handled.
struct Starter {
    sup: Pid,
}

impl Actor for Starter {
    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, req: Message) -> Result<Reply, ExitReason> {
        let victim = req.downcast::<Pid>().unwrap();
        ctx.send(victim, "panic").unwrap();
        let a = Supervisor::start_child(ctx, self.sup, 10u8, CALL_TIMEOUT).await;
        ctx.send(victim, "panic").unwrap_or(());
        let b = Supervisor::start_child(ctx, self.sup, 11u8, CALL_TIMEOUT).await;
        Ok(Reply::now((a.is_ok(), b.is_ok())))
    }
}

#[test]
fn start_child_racing_a_crash() {
    let node = node("r48-simple-race", 2);
    let log = Log::default();
    let l = log.clone();
    let template = ChildSpec::template("t", move |_: u8| Worker { id: "t", log: l.clone() }).shard(ShardId(1));
    let sup = spawn_sup(&node, sup_options(Strategy::SimpleOneForOne, vec![template]));
    let first = Supervisor::start_child_blocking(&node, sup, 1u8, CALL_TIMEOUT).unwrap();
    let starter = node.spawn_on(ShardId(0), move || Starter { sup }, ProcessOptions::default()).wait().unwrap();
    let got = node.call_blocking(starter, first, CALL_TIMEOUT).unwrap().downcast::<(bool, bool)>().unwrap();
    assert_eq!(got, (true, true));
    wait_until("three children, all running, the first restarted", || {
        let now = pids(&node, sup);
        now.len() == 3 && now.iter().all(|p| p.is_some_and(|p| alive(&node, p))) && now[0] != Some(first)
    });
    node.stop();
}

// ---- the registry ----------------------------------------------------------------------------

/// Registers itself on request; reports `whereis` and monitors names.
struct Namer {
    tx: mpsc::Sender<String>,
}

impl Actor for Namer {
    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, req: Message) -> Result<Reply, ExitReason> {
        let req = req.downcast::<(&'static str, &'static str)>().unwrap();
        Ok(match req {
            ("register", name) => Reply::now(ctx.register(name)),
            ("unregister", _) => Reply::now(ctx.unregister()),
            ("whereis", name) => Reply::now(ctx.whereis(name)),
            ("monitor", name) => {
                ctx.monitor(name);
                Reply::now(())
            }
            _ => Reply::now(()),
        })
    }
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if let Ok(d) = msg.downcast::<Down>() {
            let _ = self.tx.send(format!("down {} {}", d.pid, d.reason));
        }
        Ok(())
    }
}

fn namer(node: &Node, shard: u16) -> (Pid, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let pid = node.spawn_on(ShardId(shard), move || Namer { tx }, ProcessOptions::default()).wait().unwrap();
    (pid, rx)
}

fn ask<T: 'static>(node: &Node, pid: Pid, op: &'static str, name: &'static str) -> T {
    node.call_blocking(pid, (op, name), CALL_TIMEOUT).unwrap().downcast::<T>().unwrap()
}

#[test]
fn register_taken_dead_twice_unregister_and_across_nodes() {
    let node = node("r48-names", 2);
    let other = support::node("r48-names-other", 1);
    let (a, _) = namer(&node, 0);
    let (b, _) = namer(&node, 1);
    assert_eq!(ask::<Result<(), RegisterError>>(&node, a, "register", "r48-x"), Ok(()));
    assert_eq!(
        ask::<Result<(), RegisterError>>(&node, b, "register", "r48-x"),
        Err(RegisterError::NameTaken("r48-x".into()))
    );
    assert_eq!(node.register("r48-x", b), Err(RegisterError::NameTaken("r48-x".into())));
    assert_eq!(
        ask::<Result<(), RegisterError>>(&node, a, "register", "r48-y"),
        Err(RegisterError::AlreadyNamed("r48-x".into()))
    );
    assert_eq!(node.register("r48-x", a), Err(RegisterError::AlreadyNamed("r48-x".into())));
    assert_eq!(node.whereis("r48-y"), None, "a refused second name is not taken");
    // Unregister, then register again (self and from outside).
    assert!(ask::<bool>(&node, a, "unregister", ""));
    assert!(!ask::<bool>(&node, a, "unregister", ""));
    assert_eq!(node.whereis("r48-x"), None);
    assert_eq!(node.register("r48-x", b), Ok(()));
    assert_eq!(ask::<Option<Pid>>(&node, a, "whereis", "r48-x"), Some(b));
    assert!(node.unregister("r48-x"));
    assert_eq!(ask::<Result<(), RegisterError>>(&node, a, "register", "r48-x"), Ok(()));
    // A dead pid.
    let (dead, _) = namer(&node, 1);
    node.exit(dead, ExitReason::Kill);
    wait_until("dead", || !alive(&node, dead));
    assert_eq!(node.register("r48-dead", dead), Err(RegisterError::NoSuchProcess));
    assert_eq!(node.whereis("r48-dead"), None);
    // Another node in this OS process: its own registry.
    let (c, _) = namer(&other, 0);
    assert_eq!(other.register("r48-x", c), Ok(()));
    assert_eq!((node.whereis("r48-x"), other.whereis("r48-x")), (Some(a), Some(c)));
    assert_eq!(node.register("r48-z", c), Err(RegisterError::NoSuchProcess), "another node's pid");
    // The name is freed when its process ends.
    node.exit(a, ExitReason::Kill);
    wait_until("name freed", || node.whereis("r48-x").is_none());
    assert_eq!(other.whereis("r48-x"), Some(c));
    other.stop();
    node.stop();
}

/// A monitor on a name watches the process it names then: its `Down` names that pid, with its
/// reason; it fires even after the process gave up the name.
#[test]
fn a_monitor_on_a_name() {
    let node = node("r48-monitor-name", 2);
    let (watcher, rx) = namer(&node, 0);
    let (target, _) = namer(&node, 1);
    assert_eq!(node.register("r48-target", target), Ok(()));
    ask::<()>(&node, watcher, "monitor", "r48-target");
    node.unregister("r48-target");
    node.exit(target, ExitReason::custom("gone"));
    assert_eq!(rx.recv_timeout(CALL_TIMEOUT), Ok(format!("down {target} gone")));
    node.stop();
}

/// `whereis` of a restarted named child: never the old pid once the supervisor has seen the
/// end, and the new one once restarted.
#[test]
fn whereis_during_a_restart() {
    let node = node("r48-whereis", 2);
    let log = Log::default();
    let spec = worker("n", &log).name("r48-whereis-n").shard(ShardId(1));
    let sup = spawn_sup(&node, sup_options(Strategy::OneForOne, vec![spec]));
    for _ in 0..5 {
        let old = node.whereis("r48-whereis-n").unwrap();
        node.send(old, "panic").unwrap();
        wait_until("restarted", || pids(&node, sup)[0].is_some_and(|p| p != old));
        let new = pids(&node, sup)[0];
        assert_eq!(node.whereis("r48-whereis-n"), new);
    }
    node.stop();
}

// ---- finding 3: a child in `init` when its supervisor is killed is left running -------------

/// Its `init` takes `init_for` from the second start on (a restart), so the test can kill its
/// supervisor while the restart waits for it.
struct SlowInit {
    starts: Arc<std::sync::atomic::AtomicUsize>,
    init_for: Duration,
    started: mpsc::Sender<Pid>,
}

impl Actor for SlowInit {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        if self.starts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
            let _ = self.started.send(ctx.pid());
            ctx.sleep(self.init_for).await;
        }
        Ok(())
    }
    async fn handle_message(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<(), ExitReason> {
        Err(ExitReason::custom("asked to fail"))
    }
}

/// The `Supervisor` doc: each child is tied to its supervisor "so a supervisor that is killed
/// ... takes its children with it instead of leaving them running, their names taken". The
/// tie was made only once the child's `init` had returned: a supervisor killed while it
/// (re)started a child with a slow `init` left that child running, untied, its name taken —
/// and a restarted supervisor then failed to start it again on that name. OTP's children link
/// to their supervisor before their `init` runs (`proc_lib:start_link`).
#[test]
fn a_child_still_in_init_when_its_supervisor_is_killed_ends_too() {
    for shard in [0u16, 1] {
        let node = node(&format!("r48-orphan-{shard}"), 2);
        let name = format!("r48-orphan-{shard}");
        let starts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let init_for = Duration::from_millis(300);
        let spec = ChildSpec::new("slow", move || SlowInit { starts: starts.clone(), init_for, started: tx.clone() })
            .name(name.clone())
            .shard(ShardId(shard));
        let sup = spawn_sup(&node, sup_options(Strategy::OneForOne, vec![spec]));
        let first = pids(&node, sup)[0].unwrap();
        node.send(first, ()).unwrap();
        let second = rx.recv_timeout(CALL_TIMEOUT).expect("the restart began");
        node.exit(sup, ExitReason::Kill);
        wait_until("the supervisor ended", || !alive(&node, sup));
        // Past the child's `init`: the tie's signal (or its bounce) reaches it then at the latest.
        std::thread::sleep(init_for + Duration::from_millis(300));
        let left = (alive(&node, second), node.whereis(&name));
        node.stop();
        assert_eq!(left, (false, None), "child on shard {shard}: ended, its name free");
    }
}
