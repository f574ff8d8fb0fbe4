//! Nodes on real shard threads: layouts (1 and 2 shards, pinned, oversubscribed), introspection,
//! start and spawn errors, names, calls from plain threads and from tokio, blocking calls
//! refused on shard threads, and graceful stop (also with 100,000 live processes).
//!
//! The `PINION_*` environment overrides are tested in `tests/node_env.rs`: environment
//! variables are process-global and every test here reads them when it starts a node.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use pinion::{
    Actor, CallError, Context, Cores, ExitReason, Message, Node, NodeHandle, NodeOptions, Pid, Priority, ProcessId,
    ProcessOptions, ProcessState, RegisterError, Reply, SendError, ShardId, SpawnError, StartError,
};
use support::{
    CALL_TIMEOUT, Counter, Echo, Ends, Event, Gate, Latch, Probe, Query, node, options, pid_parts, query, wait_until,
    within,
};

/// The cores this thread may run on, as the node sees them.
fn available_cores() -> Vec<usize> {
    let ids: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    assert!(!ids.is_empty(), "core_affinity found no cores");
    ids
}

fn spawn_counter(node: &NodeHandle, shard: u16) -> Pid {
    node.spawn_on(ShardId(shard), Counter::default, ProcessOptions::default()).wait().expect("spawn counter")
}

#[test]
fn node_with_one_or_two_shards_runs_processes_and_inspect_matches() {
    for shards in [1u16, 2] {
        let name = format!("node_inspect_{shards}_shards");
        let node = node(&name, shards.into());
        assert_eq!(node.shards(), usize::from(shards));
        assert_eq!(node.name(), name);
        let mut pids = Vec::new();
        for shard in 0..shards {
            for _ in 0..3 {
                let pid = spawn_counter(&node, shard);
                assert_eq!(pid.shard(), ShardId(shard));
                pids.push(pid);
            }
        }
        for pid in &pids {
            for i in 1..=5u64 {
                node.send(*pid, i).expect("send");
            }
        }
        for pid in &pids {
            assert_eq!(query::<u64>(&node, *pid, Query::Sum), 15, "every message handled");
            let thread: String = query(&node, *pid, Query::Thread);
            assert_eq!(thread, format!("pinion-{name}-{}", pid.shard().0), "a process runs on its shard's thread");
        }

        let info = node.inspect().expect("inspect");
        assert_eq!(info.len(), usize::from(shards), "one ShardInfo per shard");
        for (i, shard) in info.iter().enumerate() {
            assert_eq!(shard.shard, ShardId(i as u16));
            assert_eq!(shard.core, None, "unpinned");
            assert_eq!(shard.processes, 3);
            // Per process: 5 messages + 2 calls (calls are user messages too).
            assert_eq!(shard.messages_processed, 3 * 7, "shard {i}");
            assert_eq!(shard.messages_queued, 0);
            assert_eq!(shard.run_queue, 0);
            assert_eq!((shard.dead_letters, shard.late_replies), (0, 0));
        }
        node.stop();
    }
}

#[test]
fn process_info_reports_lanes_reserved_processed_and_mailbox() {
    let node = node("node_process_info", 1);
    let (latch, probe) = (Latch::new(), Probe::new());
    let gate = Gate::new(&latch, &probe);
    let options = ProcessOptions { mailbox: 8, trap_exit: true };
    let pid = node.spawn_register("info-gate", move || gate, options).wait().expect("spawn");
    let (watch_latch, watch_probe) = (Latch::new(), Probe::new());
    let watcher = Gate::new(&watch_latch, &watch_probe).monitoring(pid).linking(pid);
    node.spawn(move || watcher, ProcessOptions::default()).wait().expect("spawn watcher");

    wait_until("the watcher's link and monitor are set", || {
        let info = node.process_info(pid).expect("info");
        info.links == 1 && info.monitors == 1
    });
    let info = node.process_info(pid).expect("info");
    assert_eq!(info.pid, pid);
    assert_eq!(info.name.as_deref(), Some("info-gate"));
    assert_eq!(info.state, ProcessState::Idle);
    assert_eq!((info.system_queue, info.urgent_queue, info.main_queue), (0, 0, 0));
    assert_eq!((info.reserved, info.mailbox, info.processed), (0, 8, 0));
    assert!(info.trap_exit);

    node.send(pid, 1u64).expect("send 1");
    wait_until("the gate is in its handler", || probe.started() == 1);
    node.send(pid, 2u64).expect("send 2");
    node.send(pid, 3u64).expect("send 3");
    node.send_priority(pid, 4u64, Priority::Urgent).expect("send urgent 4");
    node.exit(pid, ExitReason::custom("trapped")); // trapped: queued in the system lane
    wait_until("the exit signal is queued", || node.process_info(pid).expect("info").system_queue == 1);
    let info = node.process_info(pid).expect("info");
    assert_eq!(info.state, ProcessState::Waiting, "parked inside a handler");
    assert_eq!((info.system_queue, info.urgent_queue, info.main_queue), (1, 1, 2));
    assert_eq!(info.reserved, 4, "3 queued + 1 in progress; the system lane is outside the bound");
    assert_eq!((info.mailbox, info.processed), (8, 0));

    latch.open();
    wait_until("everything handled", || {
        let info = node.process_info(pid).expect("info");
        info.processed == 4 && info.state == ProcessState::Idle
    });
    let info = node.process_info(pid).expect("info");
    assert_eq!((info.system_queue, info.urgent_queue, info.main_queue, info.reserved), (0, 0, 0, 0));
    let events = probe.events();
    assert_eq!(events.len(), 5, "{events:?}");
    assert_eq!(events[0], Event::Msg(1));
    match &events[1] {
        Event::Exit(signal) => {
            assert_eq!(signal.from, node.external_pid());
            assert_eq!(signal.reason, ExitReason::custom("trapped"));
        }
        other => panic!("system lane first: expected the trapped exit, got {other:?}"),
    }
    assert_eq!(&events[2..], &[Event::Msg(4), Event::Msg(2), Event::Msg(3)], "then urgent, then main");
    assert!(matches!(node.process_info(node.external_pid()), Err(CallError::NoSuchProcess)));
    node.stop();
}

/// Answers a call with the cores its thread may run on.
struct Affinity;

impl Actor for Affinity {
    async fn handle_call(&mut self, _: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        let cores: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
        Ok(Reply::now(cores))
    }
}

#[test]
fn pinned_single_shard_node_runs_its_shard_on_one_core() {
    let available = available_cores();
    let options = NodeOptions { cores: Cores::Count(1), pin: true, ..Default::default() };
    let node = Node::start("node_pinned_count_1", options).expect("start pinned");
    let info = node.inspect().expect("inspect");
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].core, Some(available[0]), "Count(1) takes the first available core");
    let pid = node.spawn(|| Affinity, ProcessOptions::default()).wait().expect("spawn");
    let reply = node.call_blocking(pid, (), CALL_TIMEOUT).expect("call");
    assert_eq!(reply.downcast::<Vec<usize>>().expect("cores"), vec![available[0]], "the shard thread is pinned");
    node.stop();
}

#[test]
fn node_start_with_bad_cores_or_name_returns_typed_errors() {
    let available = available_cores();
    let start = |cores: Cores, pin: bool| {
        Node::start("node_bad_options", NodeOptions { cores, pin, ..Default::default() }).expect_err("must fail")
    };

    let missing = 100_000;
    match start(Cores::List(vec![available[0], missing]), false) {
        StartError::NoSuchCore { core, available: listed, env } => {
            assert_eq!(core, missing);
            assert_eq!(listed, available);
            assert_eq!(env, None, "the list came from the options, not PINION_CORES");
            let text = StartError::NoSuchCore { core, available: listed, env }.to_string();
            assert!(!text.contains("PINION_CORES"), "{text}");
            assert!(text.contains("core 100000 is not"), "{text}");
            assert!(text.contains(&format!("{available:?}")), "names the available cores: {text}");
        }
        other => panic!("expected NoSuchCore, got {other:?}"),
    }
    let invalid = |e: StartError, needle: &str| match e {
        StartError::InvalidOptions(m) => {
            let text = StartError::InvalidOptions(m).to_string();
            assert!(text.starts_with("node start failed: "), "{text}");
            assert!(text.contains(needle), "{text:?} should mention {needle:?}");
        }
        other => panic!("expected InvalidOptions({needle}), got {other:?}"),
    };
    invalid(start(Cores::Count(0), false), "Count(0)");
    invalid(start(Cores::Count(0), true), "Count(0)");
    invalid(start(Cores::List(vec![available[0], available[0]]), true), "twice");
    invalid(start(Cores::List(vec![]), false), "empty");
    let only = match available.len() {
        1 => "only 1 core is available".to_owned(),
        n => format!("only {n} cores are available"),
    };
    invalid(start(Cores::Count(available.len() + 1), true), &only);
    invalid(start(Cores::Count(pinion::MAX_SHARDS + 1), false), "at most");
    invalid(Node::start("", options(1)).expect_err("empty node name"), "name");
}

#[test]
fn unpinned_node_may_run_more_shards_than_cores() {
    let shards = available_cores().len() + 1;
    let node = node("node_oversubscribed", shards);
    let info = node.inspect().expect("inspect");
    assert_eq!(info.len(), shards);
    for shard in 0..shards as u16 {
        let pid = spawn_counter(&node, shard);
        node.send(pid, 2u64).expect("send");
        assert_eq!(query::<u64>(&node, pid, Query::Sum), 2);
    }
    node.stop();
}

#[test]
fn node_name_is_taken_while_live_and_reusable_after_stop() {
    let name = "node_name_taken";
    let first = node(name, 1);
    match Node::start(name, options(1)) {
        Err(StartError::NameTaken(n)) => {
            assert_eq!(n, name);
            let text = StartError::NameTaken(n).to_string();
            assert!(text.contains(name) && text.contains("already"), "{text}");
        }
        other => panic!("expected NameTaken, got {other:?}"),
    }
    let pid = spawn_counter(&first, 0);
    assert_eq!(query::<u64>(&first, pid, Query::Count), 0, "the live node is unharmed");
    first.stop();

    let second = node(name, 2);
    let pid = spawn_counter(&second, 1);
    second.send(pid, 3u64).expect("send");
    assert_eq!(query::<u64>(&second, pid, Query::Sum), 3);
    second.stop();
}

#[test]
fn pid_of_a_stopped_node_never_reaches_a_process_of_its_successor() {
    let name = "node_restart_stale_pid";
    let first = node(name, 1);
    let old = spawn_counter(&first, 0);
    let handle = first.handle();
    first.stop();

    let second = node(name, 1);
    let new = spawn_counter(&second, 0);
    assert_eq!(pid_parts(old).2, pid_parts(new).2, "same slot");
    let sent = second.send(old, 1u64);
    // The stopped node is another incarnation (another NodeId): its pids are refused as NodeDown.
    assert!(matches!(sent, Err(SendError::NodeDown(1))), "a pid of the stopped node: {sent:?}");
    assert_eq!(query::<u64>(&second, new, Query::Count), 0, "the new process got nothing meant for the old one");
    drop(handle);
    second.stop();
}

#[test]
fn spawn_with_bad_shard_or_name_returns_typed_errors() {
    let node = node("node_spawn_errors", 2);
    match node.spawn_on(ShardId(99), Counter::default, ProcessOptions::default()).wait() {
        Err(e @ SpawnError::NoSuchShard { .. }) => {
            assert_eq!(e, SpawnError::NoSuchShard { shard: ShardId(99), shards: 2 });
            let text = e.to_string();
            assert!(text.contains("shard 99") && text.contains("2 shards"), "{text}");
        }
        other => panic!("expected NoSuchShard, got {other:?}"),
    }

    let svc = node.spawn_register("svc", Counter::default, ProcessOptions::default()).wait().expect("register");
    match node.spawn_register("svc", Counter::default, ProcessOptions::default()).wait() {
        Err(e @ SpawnError::NameTaken(_)) => {
            assert_eq!(e, SpawnError::NameTaken("svc".into()));
            assert!(e.to_string().contains("\"svc\" is taken"), "{e}");
        }
        other => panic!("expected NameTaken, got {other:?}"),
    }
    assert_eq!(node.whereis("svc"), Some(svc), "the name still names the first process");

    let too_long = "n".repeat(pinion::MAX_NAME_BYTES + 1);
    for bad in ["", too_long.as_str()] {
        match node.spawn_register(bad, Counter::default, ProcessOptions::default()).wait() {
            Err(e @ SpawnError::InvalidName(_)) => {
                assert_eq!(e, SpawnError::InvalidName(bad.to_owned()));
                assert!(e.to_string().contains("invalid name"), "{e}");
            }
            other => panic!("name of {} bytes: expected InvalidName, got {other:?}", bad.len()),
        }
    }
    let longest = "n".repeat(pinion::MAX_NAME_BYTES);
    node.spawn_register(&longest, Counter::default, ProcessOptions::default()).wait().expect("255 bytes is fine");

    let other = spawn_counter(&node, 1);
    assert_eq!(node.register("svc", other), Err(RegisterError::NameTaken("svc".into())));
    assert_eq!(node.register("", other), Err(RegisterError::InvalidName(String::new())));
    let processes: usize = node.inspect().expect("inspect").iter().map(|s| s.processes).sum();
    assert_eq!(processes, 3, "failed spawns leave no process behind");
    node.stop();
}

#[test]
fn registered_name_routes_messages_and_is_freed_when_its_process_ends() {
    let node = node("node_names", 2);
    let pid = node.spawn_register("kv", Counter::default, ProcessOptions::default()).wait().expect("spawn");
    assert_eq!(node.whereis("kv"), Some(pid));
    node.send("kv", 2u64).expect("by name");
    node.send(&ProcessId::new("kv", node.name()), 3u64).expect("by ProcessId on this node");
    assert!(matches!(node.send(&ProcessId::new("kv", "elsewhere"), 4u64), Err(SendError::NodeDown(4))));
    let sum = node.call_blocking("kv", Query::Sum, CALL_TIMEOUT).expect("call by name");
    assert_eq!(sum.downcast::<u64>().expect("u64"), 5);

    let other = spawn_counter(&node, 0);
    node.register("kv-other", other).expect("register");
    assert_eq!(node.whereis("kv-other"), Some(other));
    assert!(node.unregister("kv-other"));
    assert_eq!(node.whereis("kv-other"), None);
    assert!(!node.unregister("kv-other"), "already gone");

    assert!(query::<bool>(&node, pid, Query::Stop));
    wait_until("the name is freed", || node.whereis("kv").is_none());
    assert!(matches!(node.send("kv", 5u64), Err(SendError::UnknownName(5))));
    assert_eq!(node.call_blocking("kv", Query::Sum, CALL_TIMEOUT).err(), Some(CallError::UnknownName));
    let again = node.spawn_register("kv", Counter::default, ProcessOptions::default()).wait().expect("reuse name");
    assert_ne!(again, pid);
    node.stop();
}

fn exploding_factory() -> Counter {
    panic!("factory exploded")
}

enum InitOutcome {
    Fail,
    Panic,
}

struct Init(InitOutcome);

impl Actor for Init {
    async fn init(&mut self, _: &mut Context) -> Result<(), ExitReason> {
        match self.0 {
            InitOutcome::Fail => Err(ExitReason::custom("no config")),
            InitOutcome::Panic => panic!("init exploded"),
        }
    }
}

#[test]
fn spawn_with_panicking_factory_or_failing_init_reports_it_and_the_shard_keeps_working() {
    let node = node("node_spawn_failures", 1);
    let survivor = spawn_counter(&node, 0);
    node.send(survivor, 1u64).expect("send");

    match node.spawn_register("phoenix", exploding_factory, ProcessOptions::default()).wait() {
        Err(e @ SpawnError::FactoryPanicked(_)) => {
            assert!(matches!(&e, SpawnError::FactoryPanicked(m) if m.contains("factory exploded")), "{e:?}");
            assert!(e.to_string().contains("factory exploded"), "{e}");
        }
        other => panic!("expected FactoryPanicked, got {other:?}"),
    }
    match node.spawn_register("phoenix", || Init(InitOutcome::Fail), ProcessOptions::default()).wait() {
        Err(e @ SpawnError::InitFailed(_)) => {
            assert_eq!(e, SpawnError::InitFailed(ExitReason::custom("no config")));
            assert!(e.to_string().contains("no config"), "{e}");
        }
        other => panic!("expected InitFailed, got {other:?}"),
    }
    match node.spawn_register("phoenix", || Init(InitOutcome::Panic), ProcessOptions::default()).wait() {
        Err(SpawnError::InitFailed(ExitReason::Panic(text))) => assert!(text.contains("init exploded"), "{text}"),
        other => panic!("expected InitFailed(Panic), got {other:?}"),
    }

    // The shard is unharmed: old and new processes answer, and the failed spawns' name is free.
    assert_eq!(node.inspect().expect("inspect")[0].processes, 1, "failed spawns left nothing behind");
    let echo = node.spawn_register("phoenix", || Echo, ProcessOptions::default()).wait().expect("spawn after");
    let reply = node.call_blocking("phoenix", String::from("still here"), CALL_TIMEOUT).expect("call");
    assert_eq!(reply.downcast::<String>().expect("String"), "still here");
    assert_eq!(node.whereis("phoenix"), Some(echo));
    assert_eq!(query::<u64>(&node, survivor, Query::Sum), 1);
    node.stop();
}

/// Tries every blocking operation of a `NodeHandle` from inside its handler.
struct Impatient {
    other: Pid,
}

type Refusals = (Option<CallError>, Option<CallError>, Option<SpawnError>, Option<CallError>, Option<CallError>);

impl Actor for Impatient {
    async fn handle_call(&mut self, ctx: &mut Context, _: Pid, _: Message) -> Result<Reply, ExitReason> {
        let handle = ctx.handle();
        let refusals: Refusals = (
            handle.call_blocking(self.other, Query::Count, CALL_TIMEOUT).err(),
            handle.call(self.other, Query::Count, CALL_TIMEOUT).wait().err(),
            handle.spawn(Counter::default, ProcessOptions::default()).wait().err(),
            handle.inspect().err(),
            handle.process_info(self.other).err(),
        );
        Ok(Reply::now(refusals))
    }
}

#[test]
fn blocking_calls_from_inside_a_process_answer_would_block() {
    let node = node("node_would_block", 2);
    for (shard, other_shard) in [(0, 0), (0, 1)] {
        let other = spawn_counter(&node, other_shard);
        let impatient = Impatient { other };
        let pid = node.spawn_on(ShardId(shard), move || impatient, ProcessOptions::default()).wait().expect("spawn");
        let reply = node.call_blocking(pid, (), CALL_TIMEOUT).expect("the process answers instead of hanging");
        let (call_blocking, call_wait, spawn_wait, inspect, process_info) =
            reply.downcast::<Refusals>().expect("refusals");
        assert_eq!(call_blocking, Some(CallError::WouldBlock), "call_blocking");
        assert_eq!(call_wait, Some(CallError::WouldBlock), "call().wait()");
        assert_eq!(spawn_wait, Some(SpawnError::WouldBlock), "spawn().wait()");
        assert_eq!(inspect, Some(CallError::WouldBlock), "inspect");
        assert_eq!(process_info, Some(CallError::WouldBlock), "process_info");
        assert!(CallError::WouldBlock.to_string().contains("deadlock"));
        assert!(SpawnError::WouldBlock.to_string().contains("deadlock"));
        // The shard was never blocked: the other process still answers.
        assert_eq!(query::<u64>(&node, other, Query::Sum), 0);
    }
    node.stop();
}

fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
fn assert_copy_send_sync<T: Copy + Send + Sync + 'static>() {}
fn assert_send_sync<T: Send + Sync + 'static>() {}
fn assert_error<T: std::error::Error + Send + Sync + 'static>() {}

#[test]
fn node_handle_and_pid_are_thread_safe_values() {
    assert_send_sync_clone::<NodeHandle>();
    assert_copy_send_sync::<Pid>();
    assert_copy_send_sync::<ShardId>();
    assert_copy_send_sync::<pinion::Alias>();
    assert_send_sync::<Node>();
    assert_error::<SendError<u64>>();
    assert_error::<CallError>();
    assert_error::<SpawnError>();
    assert_error::<StartError>();
    assert_error::<RegisterError>();

    // And they work as such: clones of one handle, used from several threads at once.
    let node = node("node_handle_threads", 2);
    let echo = node.spawn(|| Echo, ProcessOptions::default()).wait().expect("spawn");
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let handle = node.handle();
            std::thread::spawn(move || {
                let mine = handle.spawn(Counter::default, ProcessOptions::default()).wait().expect("spawn");
                for i in 0..100u64 {
                    let reply = handle.call_blocking(echo, t * 1000 + i, CALL_TIMEOUT).expect("call");
                    assert_eq!(reply.downcast::<u64>().expect("u64"), t * 1000 + i);
                    handle.send(mine, i).expect("send");
                }
                query::<u64>(&handle, mine, Query::Sum)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("thread"), (0..100).sum::<u64>());
    }
    node.stop();
}

/// Awaits `f`, failing the test instead of hanging.
async fn limit<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(CALL_TIMEOUT * 2, f).await.expect("the future did not resolve")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_handle_call_and_spawn_futures_resolve_under_tokio() {
    let node = node("node_under_tokio", 2);
    let handle = node.handle();

    let echo = limit(handle.spawn(|| Echo, ProcessOptions::default())).await.expect("spawn");
    let reply = limit(handle.call(echo, 41u64, CALL_TIMEOUT)).await.expect("call");
    assert_eq!(reply.downcast::<u64>().expect("u64"), 41);

    let tasks: Vec<_> = (0..32u64)
        .map(|i| {
            let handle = handle.clone();
            tokio::spawn(async move {
                let shard = ShardId((i % 2) as u16);
                let pid =
                    handle.spawn_on(shard, || Echo, ProcessOptions::default()).await.map_err(|e| e.to_string())?;
                let reply = handle.call(pid, i, CALL_TIMEOUT).await.map_err(|e| e.to_string())?;
                Ok::<u64, String>(reply.downcast::<u64>().expect("u64"))
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(limit(task).await.expect("task"), Ok(i as u64));
    }
    let refused = handle.spawn_on(ShardId(7), || Echo, ProcessOptions::default()).await;
    assert_eq!(refused.err(), Some(SpawnError::NoSuchShard { shard: ShardId(7), shards: 2 }));

    // A call that times out under tokio; its late reply is dropped and counted, never handed
    // to the next call.
    let (latch, probe) = (Latch::new(), Probe::new());
    let gate = Gate::new(&latch, &probe);
    let gate = limit(handle.spawn(move || gate, ProcessOptions::default())).await.expect("spawn gate");
    handle.send(gate, 1u64).expect("block the gate");
    let late = limit(handle.call(gate, Query::Count, Duration::from_millis(50))).await;
    assert_eq!(late.err(), Some(CallError::Timeout));
    latch.open();
    let next = limit(handle.call(gate, Query::Count, CALL_TIMEOUT)).await.expect("call");
    assert_eq!(next.downcast::<Vec<u64>>().expect("a Vec"), vec![1]);
    assert_eq!(handle.late_replies(), 1, "the reply to the timed-out call was counted as late");

    tokio::task::spawn_blocking(move || node.stop()).await.expect("stop");
}

#[test]
fn call_with_zero_timeout_is_refused_and_a_huge_timeout_works() {
    let node = node("node_call_timeouts", 1);
    let pid = spawn_counter(&node, 0);
    let zero = node.call(pid, Query::Count, Duration::ZERO).wait();
    assert_eq!(zero.as_ref().err(), Some(&CallError::InvalidTimeout(Duration::ZERO)));
    assert!(zero.unwrap_err().to_string().contains("timeout"));
    let huge = node.call_blocking(pid, Query::Count, Duration::MAX).expect("a huge timeout is fine");
    assert_eq!(huge.downcast::<u64>().expect("u64"), 0);
    assert_eq!(node.process_info(pid).expect("info").processed, 1, "only the valid call reached the process");
    node.stop();
}

#[test]
fn answered_external_calls_leave_no_timer_armed() {
    let node = node("node_call_timer_leak", 1);
    let pid = spawn_counter(&node, 0);
    for _ in 0..100 {
        node.call_blocking(pid, Query::Count, Duration::from_secs(3600)).expect("call");
    }
    assert_eq!(node.inspect().expect("inspect")[0].timers, 0, "answered calls must not keep timers");
    node.stop();
}

#[test]
fn stop_with_100k_live_processes_runs_every_terminate() {
    const PROCESSES: usize = 100_000;
    // The deadline is generous: the test is about every terminate running, not about speed.
    let options = NodeOptions { shutdown_timeout: Duration::from_secs(300), ..options(2) };
    let node = Node::start("node_stop_100k", options).expect("start");
    let ends = Ends::new();
    let spawns: Vec<_> = (0..PROCESSES)
        .map(|_| {
            let ends = ends.clone();
            node.spawn(move || Counter::recording(&ends), ProcessOptions::default())
        })
        .collect();
    for spawn in spawns {
        spawn.wait().expect("spawn");
    }
    let info = node.inspect().expect("inspect");
    assert_eq!(info.iter().map(|s| s.processes).collect::<Vec<_>>(), vec![PROCESSES / 2; 2], "round robin");

    within("node.stop() with 100k processes", Duration::from_secs(300), move || node.stop());
    assert_eq!(ends.count(), PROCESSES, "every process ran terminate");
    let reasons = ends.reasons();
    assert!(reasons.iter().all(|(_, r)| *r == ExitReason::Shutdown), "every terminate saw Shutdown");
    assert_eq!(reasons.iter().map(|(p, _)| *p).collect::<HashSet<_>>().len(), PROCESSES, "once each");
}

#[test]
fn stop_runs_terminate_with_shutdown_and_answers_queued_calls() {
    let node = node("node_stop_graceful", 2);
    let ends = Ends::new();
    let mut pids = HashSet::new();
    for shard in 0..2u16 {
        for _ in 0..10 {
            let ends = ends.clone();
            let pid = node.spawn_on(ShardId(shard), move || Counter::recording(&ends), ProcessOptions::default());
            let pid = pid.wait().expect("spawn");
            node.send(pid, 1u64).expect("send");
            pids.insert(pid);
        }
    }
    // A process busy in a handler, with a call queued behind it.
    let (latch, probe) = (Latch::new(), Probe::new());
    let gate = Gate::new(&latch, &probe);
    let gate = node.spawn_on(ShardId(1), move || gate, ProcessOptions::default()).wait().expect("spawn gate");
    node.send(gate, 1u64).expect("send");
    wait_until("the gate is busy", || probe.started() == 1);
    let queued_call = node.call(gate, Query::Count, CALL_TIMEOUT);

    node.handle().stop();
    latch.release(1);
    within("node.stop()", Duration::from_secs(60), move || node.stop());
    let reasons = ends.reasons();
    assert_eq!(reasons.iter().map(|(p, _)| *p).collect::<HashSet<_>>(), pids, "every process ran terminate");
    assert!(reasons.iter().all(|(_, r)| *r == ExitReason::Shutdown), "{reasons:?}");
    assert_eq!(probe.events(), vec![Event::Msg(1), Event::Terminate(ExitReason::Shutdown)]);
    assert_eq!(queued_call.wait().err(), Some(CallError::NoSuchProcess), "a call still queued is answered");
}

#[test]
fn stop_kills_a_process_stuck_in_a_handler_after_the_shutdown_timeout() {
    let options = NodeOptions { shutdown_timeout: Duration::from_millis(100), ..options(2) };
    let node = Node::start("node_stop_stuck", options).expect("start");
    let ends = Ends::new();
    let ends2 = ends.clone();
    let counter = node.spawn_on(ShardId(0), move || Counter::recording(&ends2), ProcessOptions::default());
    let counter = counter.wait().expect("spawn");
    let (latch, probe) = (Latch::new(), Probe::new());
    let gate = Gate::new(&latch, &probe);
    let gate = node.spawn_on(ShardId(1), move || gate, ProcessOptions::default()).wait().expect("spawn gate");
    node.send(gate, 1u64).expect("send");
    wait_until("the gate is stuck", || probe.started() == 1);

    within("node.stop() with a stuck process", Duration::from_secs(60), move || node.stop());
    assert_eq!(ends.reasons(), vec![(counter, ExitReason::Shutdown)]);
    assert!(probe.events().is_empty(), "the stuck process was killed: no terminate");
    drop(latch);
}

#[test]
fn dropping_a_node_stops_it_gracefully() {
    let ends = Ends::new();
    {
        let node = node("node_dropped", 2);
        for shard in 0..2u16 {
            let ends = ends.clone();
            node.spawn_on(ShardId(shard), move || Counter::recording(&ends), ProcessOptions::default())
                .wait()
                .expect("spawn");
        }
    }
    assert_eq!(ends.count(), 2);
    assert!(ends.reasons().iter().all(|(_, r)| *r == ExitReason::Shutdown));
    // The name is free again once the drop returned.
    node("node_dropped", 1).stop();
}

#[test]
fn handle_of_a_stopped_node_answers_stopped() {
    let node = node("node_handle_after_stop", 2);
    let handle = node.handle();
    let pid = spawn_counter(&handle, 1);
    assert!(!handle.is_stopping());
    node.stop();
    assert!(handle.is_stopping());
    match handle.send(pid, 1u64) {
        Err(e @ SendError::Stopped(_)) => {
            assert!(e.to_string().contains("stopping"), "{e}");
            assert_eq!(e.into_inner(), 1);
        }
        other => panic!("expected Stopped, got {other:?}"),
    }
    assert_eq!(handle.call_blocking(pid, Query::Count, CALL_TIMEOUT).err(), Some(CallError::Stopped));
    assert_eq!(handle.spawn(Counter::default, ProcessOptions::default()).wait().err(), Some(SpawnError::Stopped));
}

#[test]
fn spawns_racing_node_stop_always_resolve() {
    for round in 0..500u64 {
        let node = node(&format!("node_spawn_vs_stop_{round}"), 2);
        let spawners: Vec<_> = (0..3)
            .map(|_| {
                let handle = node.handle();
                std::thread::spawn(move || {
                    loop {
                        match handle.spawn(Counter::default, ProcessOptions::default()).wait() {
                            Ok(_) => {}
                            Err(SpawnError::Stopped) => return,
                            Err(e) => panic!("unexpected spawn error: {e}"),
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros(200 + (round % 7) * 100));
        within("node.stop()", Duration::from_secs(30), move || node.stop());
        for spawner in spawners {
            within("a spawn racing the stop", Duration::from_secs(10), move || spawner.join().expect("spawner"));
        }
    }
}
