//! Review 41 (stop 31): `fbfc791` (unlink drops a queued linked exit; a Down without its watch
//! entry is dropped; a call to one's own name or alias is WouldBlock) and `775b7af`/`ae1a90d`
//! (Node::start waits for every shard to pin; OS thread names). Its failing tests (a call to
//! one's own deleted alias answered `WouldBlock`, not `UnknownAlias`; `wait_down` took a
//! `Down` that `demonitor` had removed) and what it checked, kept. Every wait is bounded.

mod support;

use std::sync::mpsc;
use std::time::Duration;

use pinion::{
    Actor, CallError, ChildSpec, Context, Cores, Down, ExitReason, ExitSignal, Message, Node, NodeOptions, Pid,
    ProcessOptions, Reply, ShardId, Strategy, Supervisor, SupervisorOptions,
};
use support::{CALL_TIMEOUT, node};

const QUIET: Duration = Duration::from_millis(400);

fn describe(msg: &Message) -> String {
    if let Some(d) = msg.downcast_ref::<Down>() {
        format!("down {}", d.reason)
    } else if let Some(e) = msg.downcast_ref::<ExitSignal>() {
        format!("exit {}", e.reason)
    } else {
        "other".to_owned()
    }
}

/// Ends with `Custom("boom")` on `Die`; on `ExitTo(pid)` sends `exit(pid, boom)` (not linked).
struct Victim;
struct Die;
struct ExitTo(Pid);

struct MakeAlias;

impl Actor for Victim {
    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, req: Message) -> Result<Reply, ExitReason> {
        if req.is::<MakeAlias>() {
            return Ok(Reply::now(ctx.create_alias()));
        }
        Ok(Reply::now(()))
    }
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if msg.is::<Die>() {
            return Err(ExitReason::custom("boom"));
        }
        if let Ok(ExitTo(p)) = msg.downcast::<ExitTo>() {
            ctx.exit(p, ExitReason::custom("explicit"));
        }
        Ok(())
    }
}

/// What a `Probe` does when it gets a `Pid` (a `Victim`).
#[derive(Clone, Copy)]
enum Script {
    /// Monitors it twice, makes it die.
    MonitorTwice,
    /// Monitors it (cross-shard or not), makes it die.
    MonitorOnce,
    /// Monitors it twice, makes it die, waits for one Down with `wait_down`.
    MonitorTwiceWaitOne,
    /// Links to it, has it send `exit(self, explicit)` (not linked), lets that queue, unlinks.
    LinkThenExplicitExitThenUnlink,
    /// Monitors it, makes it die, lets the Down queue, demonitors, then `wait_down`s it.
    DemonitorThenWaitDown,
    /// Links to it twice (trapping exits), makes it die.
    LinkTwiceTrap,
}

struct Probe {
    script: Script,
    tx: mpsc::Sender<String>,
    init_target: Option<Pid>,
}

impl Actor for Probe {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        if let Some(t) = self.init_target {
            ctx.monitor(t);
        }
        Ok(())
    }
    async fn handle_message(&mut self, ctx: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        let b = match msg.downcast::<Pid>() {
            Ok(b) => b,
            Err(msg) => {
                if let Some(a) = msg.downcast_ref::<pinion::Alias>() {
                    ctx.monitor(*a);
                    ctx.send(a.owner(), Die).unwrap();
                    return Ok(());
                }
                if msg.is::<&'static str>() {
                    // "name:<x>": monitor a name
                    let s = msg.downcast::<&'static str>().unwrap();
                    ctx.monitor(s);
                    return Ok(());
                }
                let _ = self.tx.send(describe(&msg));
                return Ok(());
            }
        };
        match self.script {
            Script::MonitorTwice => {
                ctx.monitor(b);
                ctx.monitor(b);
                ctx.send(b, Die).unwrap();
            }
            Script::MonitorOnce => {
                ctx.monitor(b);
                let _ = ctx.send(b, Die); // refused for another node's pid
            }
            Script::MonitorTwiceWaitOne => {
                ctx.monitor(b);
                ctx.monitor(b);
                ctx.send(b, Die).unwrap();
                let got = ctx.wait_down(b, CALL_TIMEOUT).await;
                let _ = self.tx.send(format!("waited {got:?}"));
            }
            Script::LinkThenExplicitExitThenUnlink => {
                ctx.link(b);
                ctx.send(b, ExitTo(ctx.pid())).unwrap();
                ctx.sleep(Duration::from_millis(100)).await;
                ctx.unlink(b);
                let _ = self.tx.send("unlinked".into());
            }
            Script::DemonitorThenWaitDown => {
                let r = ctx.monitor(b);
                ctx.send(b, Die).unwrap();
                ctx.sleep(Duration::from_millis(100)).await;
                ctx.demonitor(b, r);
                let got = ctx.wait_down(b, Duration::from_millis(200)).await;
                let _ = self.tx.send(format!("waited {got:?}"));
            }
            Script::LinkTwiceTrap => {
                ctx.set_trap_exit(true);
                ctx.link(b);
                ctx.link(b);
                ctx.send(b, Die).unwrap();
            }
        }
        Ok(())
    }
    async fn terminate(&mut self, _: &mut Context, reason: &ExitReason) {
        let _ = self.tx.send(format!("terminated {reason}"));
    }
}

fn probe(node: &Node, shard: usize, script: Script, init_target: Option<Pid>) -> (Pid, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let p = node
        .handle()
        .spawn_on(ShardId(shard as u16), move || Probe { script, tx, init_target }, ProcessOptions::default())
        .wait()
        .unwrap();
    (p, rx)
}

fn victim(node: &Node, shard: usize) -> Pid {
    node.handle().spawn_on(ShardId(shard as u16), || Victim, ProcessOptions::default()).wait().unwrap()
}

fn collect(rx: &mpsc::Receiver<String>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(s) = rx.recv_timeout(QUIET) {
        out.push(s);
    }
    out
}

#[test]
fn a_monitor_set_twice_on_one_pid_gives_two_downs_same_and_cross_shard() {
    let node = node("r41-twice", 2);
    for shard in [0, 1] {
        let (p, rx) = probe(&node, 0, Script::MonitorTwice, None);
        let b = victim(&node, shard);
        node.handle().send(p, b).unwrap();
        let got = collect(&rx);
        assert_eq!(got, vec!["down boom", "down boom"], "victim on shard {shard}");
    }
    node.stop();
}

#[test]
fn a_monitor_set_in_init_is_delivered() {
    let node = node("r41-init", 2);
    let b = victim(&node, 1);
    let (_p, rx) = probe(&node, 0, Script::MonitorOnce, Some(b));
    node.handle().send(b, Die).unwrap();
    assert_eq!(collect(&rx), vec!["down boom"]);
    node.stop();
}

#[test]
fn a_monitor_of_another_nodes_pid_is_delivered() {
    let node = node("r41-node1", 1);
    let other = support::node("r41-node2", 1);
    let b = victim(&other, 0);
    let (p, rx) = probe(&node, 0, Script::MonitorOnce, None);
    node.handle().send(p, b).unwrap();
    let got = collect(&rx);
    other.stop();
    node.stop();
    assert_one_down(&got);
}

#[test]
fn a_down_of_an_unknown_name_is_delivered() {
    let node = node("r41-name2", 1);
    let (p, rx) = probe(&node, 0, Script::MonitorOnce, None);
    node.handle().send(p, "r41-nobody").unwrap();
    let got = collect(&rx);
    node.stop();
    assert_one_down(&got);
}

/// What the probe reported is one `Down`, whatever its reason.
fn assert_one_down(got: &[String]) {
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].starts_with("down"), "{got:?}");
}

#[test]
fn wait_down_takes_one_down_and_the_other_monitor_is_still_delivered() {
    let node = node("r41-wait", 2);
    for shard in [0, 1] {
        let (p, rx) = probe(&node, 0, Script::MonitorTwiceWaitOne, None);
        node.handle().send(p, victim(&node, shard)).unwrap();
        let got = collect(&rx);
        assert_eq!(got, vec!["waited Some(Custom(\"boom\"))", "down boom"], "victim on shard {shard}");
    }
    node.stop();
}

/// `unlink` forgets a queued exit signal of the link, not one sent with `ctx.exit`.
#[test]
fn unlink_keeps_an_explicit_exit_signal_of_the_same_pid() {
    let node = node("r41-unlink", 1);
    let (p, rx) = probe(&node, 0, Script::LinkThenExplicitExitThenUnlink, None);
    node.handle().send(p, victim(&node, 0)).unwrap();
    let got = collect(&rx);
    node.stop();
    assert_eq!(got.first().map(String::as_str), Some("unlinked"), "{got:?}");
    assert!(got.iter().any(|s| s.contains("explicit")), "the explicit exit was dropped by unlink: {got:?}");
}

/// `demonitor`'s doc: no `Down` of it is handled after it, one already queued included.
#[test]
fn wait_down_after_demonitor_does_not_take_the_demonitored_down() {
    let node = node("r41-demon-wait", 1);
    let (p, rx) = probe(&node, 0, Script::DemonitorThenWaitDown, None);
    node.handle().send(p, victim(&node, 0)).unwrap();
    let got = collect(&rx);
    node.stop();
    assert_eq!(got, vec!["waited None"]);
}

#[test]
fn linking_twice_to_one_pid_gives_one_exit_signal() {
    let node = node("r41-link2", 2);
    for shard in [0, 1] {
        let (p, rx) = probe(&node, 0, Script::LinkTwiceTrap, None);
        node.handle().send(p, victim(&node, shard)).unwrap();
        assert_eq!(collect(&rx), vec!["exit boom"], "victim on shard {shard}");
    }
    node.stop();
}

// ---- supervisor: a trapping child gets its supervisor's exit signal; restarts ---------------

struct Child {
    tx: mpsc::Sender<String>,
}
impl Actor for Child {
    async fn init(&mut self, ctx: &mut Context) -> Result<(), ExitReason> {
        ctx.set_trap_exit(true);
        let _ = self.tx.send(format!("started {:?}", ctx.pid()));
        Ok(())
    }
    async fn handle_message(&mut self, _: &mut Context, _: Pid, msg: Message) -> Result<(), ExitReason> {
        if msg.is::<Die>() {
            return Err(ExitReason::custom("boom"));
        }
        let _ = self.tx.send(describe(&msg));
        Ok(())
    }
}

#[test]
fn a_trapping_child_gets_its_killed_supervisors_exit_signal() {
    let node = node("r41-sup-kill", 2);
    let (tx, rx) = mpsc::channel();
    let spec = ChildSpec::new("c", move || Child { tx: tx.clone() }).shard(ShardId(1));
    let sup = node
        .handle()
        .spawn_on(
            ShardId(0),
            move || {
                Supervisor::new(SupervisorOptions {
                    strategy: Strategy::OneForOne,
                    children: vec![spec],
                    ..Default::default()
                })
            },
            ProcessOptions::default(),
        )
        .wait()
        .unwrap();
    assert!(rx.recv_timeout(CALL_TIMEOUT).unwrap().starts_with("started"));
    node.handle().exit(sup, ExitReason::Kill);
    let got = rx.recv_timeout(CALL_TIMEOUT);
    node.stop();
    assert_eq!(got.as_deref(), Ok("exit kill"));
}

#[test]
fn every_strategy_restarts_a_dying_child() {
    let node = node("r41-sup-all", 2);
    for (k, strategy) in [Strategy::OneForOne, Strategy::AllForOne, Strategy::RestForOne].into_iter().enumerate() {
        let (tx, rx) = mpsc::channel();
        let (t1, t2) = (tx.clone(), tx);
        let quick = Duration::from_millis(200); // trapping children outlive a Shutdown: killed after this
        let a = ChildSpec::new("a", move || Child { tx: t1.clone() }).shard(ShardId(1)).shutdown(quick);
        let b = ChildSpec::new("b", move || Child { tx: t2.clone() }).shutdown(quick);
        let sup = node
            .handle()
            .spawn_on(
                ShardId(0),
                move || {
                    Supervisor::new(SupervisorOptions {
                        strategy,
                        children: vec![a, b],
                        period: Duration::from_secs(60),
                        intensity: 100,
                    })
                },
                ProcessOptions::default(),
            )
            .wait()
            .unwrap();
        let first: Vec<String> = (0..2).map(|_| rx.recv_timeout(CALL_TIMEOUT).unwrap()).collect();
        for round in 0..3 {
            let info = Supervisor::which_children_blocking(&node.handle(), sup, CALL_TIMEOUT).unwrap();
            let pid = info.children[0].pid.unwrap();
            node.handle().send(pid, Die).unwrap();
            let mut restarted = rx.recv_timeout(CALL_TIMEOUT);
            // A stopped sibling traps exits: its "exit shutdown" may come first.
            while restarted.as_ref().is_ok_and(|s| s.starts_with("exit")) {
                restarted = rx.recv_timeout(CALL_TIMEOUT);
            }
            assert!(
                restarted.as_ref().is_ok_and(|s| s.starts_with("started")),
                "strategy #{k} round {round}: {restarted:?} (first {first:?})"
            );
            while rx.recv_timeout(Duration::from_millis(100)).is_ok() {}
        }
        node.handle().exit(sup, ExitReason::Shutdown);
    }
    node.stop();
}

// ---- calls to oneself ---------------------------------------------------------------------

struct SelfCaller;
impl Actor for SelfCaller {
    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, req: Message) -> Result<Reply, ExitReason> {
        if req.is::<()>() {
            let alias = ctx.create_alias();
            let live = ctx.call(alias, 1u8, Duration::from_secs(2)).await.err();
            ctx.delete_alias(alias);
            let deleted = ctx.call(alias, 1u8, Duration::from_secs(2)).await.err();
            return Ok(Reply::now((live, deleted)));
        }
        Ok(Reply::now(()))
    }
}

/// A deleted alias is no longer this process's: `UnknownAlias`, as for any caller.
#[test]
fn a_call_to_ones_own_deleted_alias_is_unknown_alias() {
    let node = node("r41-alias", 1);
    let pid = node.handle().spawn(|| SelfCaller, ProcessOptions::default()).wait().unwrap();
    let got = node.handle().call_blocking(pid, (), CALL_TIMEOUT).unwrap();
    let (live, deleted) = got.downcast::<(Option<CallError>, Option<CallError>)>().unwrap();
    node.stop();
    assert_eq!(live, Some(CallError::WouldBlock));
    assert_eq!(deleted, Some(CallError::UnknownAlias));
}

// ---- Node::start ----------------------------------------------------------------------------

#[test]
fn shard_threads_keep_their_index_in_the_os_name_and_start_returns_pinned() {
    let node =
        Node::start("r41-a-long-node-name", NodeOptions { cores: Cores::Count(2), pin: true, ..Default::default() });
    let Ok(node) = node else { return }; // a machine with fewer cores: nothing to check
    // Read at once: `start` returned only after every shard pinned itself.
    let shards: Vec<(String, String)> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?.trim_end().to_owned();
            let status = std::fs::read_to_string(t.path().join("status")).ok()?;
            let cpus =
                status.lines().find(|l| l.starts_with("Cpus_allowed_list:"))?.split(':').nth(1)?.trim().to_owned();
            comm.starts_with("pinion-r41-a").then_some((comm, cpus))
        })
        .collect();
    node.stop();
    assert_eq!(shards.len(), 2, "{shards:?}");
    assert!(shards.iter().all(|(n, _)| n.len() <= 15), "{shards:?}");
    assert!(
        shards.iter().any(|(n, _)| n.ends_with("-0")) && shards.iter().any(|(n, _)| n.ends_with("-1")),
        "{shards:?}"
    );
    assert!(
        shards.iter().all(|(_, c)| !c.contains(',') && !c.contains('-')),
        "a shard not pinned after start: {shards:?}"
    );
}

/// Many starts in a row, each with more shards than cores: `start` never hangs.
#[test]
fn start_returns_for_many_unpinned_shards() {
    for i in 0..5 {
        let name = format!("r41-many-{i}");
        let node = support::within("Node::start", Duration::from_secs(20), move || {
            Node::start(&name, NodeOptions { cores: Cores::Count(8), pin: false, ..Default::default() })
        });
        node.expect("eight unpinned shards start on any machine").stop();
    }
}

#[test]
fn a_monitor_through_an_alias_is_delivered() {
    let node = node("r41-alias-mon", 2);
    for shard in [0, 1] {
        let b = victim(&node, shard);
        let alias =
            node.handle().call_blocking(b, MakeAlias, CALL_TIMEOUT).unwrap().downcast::<pinion::Alias>().unwrap();
        let (p, rx) = probe(&node, 0, Script::MonitorOnce, None);
        node.handle().send(p, alias).unwrap();
        assert_eq!(collect(&rx), vec!["down boom"], "victim on shard {shard}");
    }
    node.stop();
}
