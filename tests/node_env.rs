//! The environment overrides of the core layout: `PINION_CORES` (`0,2` or `all`) and
//! `PINION_PIN` (`0`/`1` and the like). Environment variables are process-global and `Node::start` reads
//! them, so this binary holds exactly one test, which sets, checks and restores them in turn.

mod support;

use std::ffi::OsString;

use pinion::{Cores, Node, NodeOptions, ProcessOptions, ShardId, StartError};
use support::{Counter, Query, query};

const VARS: [&str; 2] = ["PINION_CORES", "PINION_PIN"];

/// Restores the variables as they were, even if an assertion fails.
struct EnvGuard(Vec<(&'static str, Option<OsString>)>);

impl EnvGuard {
    fn save() -> EnvGuard {
        EnvGuard(VARS.iter().map(|v| (*v, std::env::var_os(v))).collect())
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for (var, value) in &self.0 {
            match value {
                Some(value) => set(var, value),
                None => unset(var),
            }
        }
    }
}

fn set(var: &str, value: impl AsRef<std::ffi::OsStr>) {
    // SAFETY: this binary runs a single test on a single thread of its own while it changes
    // the environment (no node is running, so no shard thread reads it either): nothing reads
    // or writes the environment concurrently.
    unsafe { std::env::set_var(var, value) }
}

fn unset(var: &str) {
    // SAFETY: as in `set`: the only test of this binary, with no other thread running.
    unsafe { std::env::remove_var(var) }
}

fn only(cores: Option<&str>, pin: Option<&str>) {
    match cores {
        Some(v) => set("PINION_CORES", v),
        None => unset("PINION_CORES"),
    }
    match pin {
        Some(v) => set("PINION_PIN", v),
        None => unset("PINION_PIN"),
    }
}

/// The shards' cores of a node started with `options` under the current environment; also
/// proves each shard runs a process.
fn cores_of(name: &str, options: NodeOptions) -> Vec<Option<usize>> {
    let node = Node::start(name, options).unwrap_or_else(|e| panic!("{name}: {e}"));
    let cores: Vec<_> = node.inspect().expect("inspect").iter().map(|s| s.core).collect();
    for shard in 0..node.shards() as u16 {
        let pid = node.spawn_on(ShardId(shard), Counter::default, ProcessOptions::default()).wait().expect("spawn");
        node.send(pid, 1u64).expect("send");
        assert_eq!(query::<u64>(&node, pid, Query::Sum), 1);
    }
    node.stop();
    cores
}

fn unpinned(n: usize) -> NodeOptions {
    NodeOptions { cores: Cores::Count(n), pin: false, ..Default::default() }
}

fn pinned(n: usize) -> NodeOptions {
    NodeOptions { cores: Cores::Count(n), pin: true, ..Default::default() }
}

#[test]
fn pinion_cores_and_pinion_pin_override_the_options_or_fail_clearly() {
    let _restore = EnvGuard::save();
    let available: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    assert!(!available.is_empty());
    // `PINION_CORES=0` on a usual machine; the first core this process may use in general.
    let first = available[0].to_string();

    // No override: the options rule.
    only(None, None);
    assert_eq!(cores_of("env_none", unpinned(2)), vec![None, None]);

    // One listed core: one shard, whatever the options asked for (even invalid options).
    only(Some(&first), None);
    assert_eq!(cores_of("env_cores_one", unpinned(2)), vec![None], "PINION_CORES={first}, unpinned");
    assert_eq!(cores_of("env_cores_one_pinned", pinned(1)), vec![Some(available[0])]);
    assert_eq!(cores_of("env_cores_over_count_0", unpinned(0)), vec![None], "the environment overrides Count(0)");

    // A list, in its order, and `all`.
    if available.len() >= 2 {
        let list = format!("{}, {}", available[1], available[0]);
        only(Some(&list), Some("1"));
        assert_eq!(cores_of("env_cores_list", unpinned(1)), vec![Some(available[1]), Some(available[0])]);
    }
    only(Some("all"), Some("0"));
    assert_eq!(cores_of("env_cores_all", unpinned(1)), vec![None; available.len()]);

    // A core the machine does not have.
    let missing = if available.contains(&999) { 100_000 } else { 999 };
    // (A list, as `PINION_CORES=0,7` set on a 2-core box.)
    let listed_missing = format!("{first},{missing}");
    only(Some(&listed_missing), None);
    match Node::start("env_cores_missing", unpinned(1)) {
        Err(StartError::NoSuchCore { core, available: listed, env }) => {
            assert_eq!((core, &listed), (missing, &available));
            // The variable and its value are named (review 66: an operator who set
            // `PINION_CORES=0,7` on a 2-core box was not told the variable was the cause).
            assert_eq!(env.as_deref(), Some(listed_missing.as_str()), "the value of PINION_CORES");
            let text = StartError::NoSuchCore { core, available: listed, env }.to_string();
            assert!(text.contains(&format!("core {missing} is not")), "{text}");
            assert!(text.contains(&format!("PINION_CORES={listed_missing:?}")), "names the variable: {text}");
        }
        other => panic!("PINION_CORES={listed_missing}: expected NoSuchCore, got {other:?}"),
    }

    // A list the layout refuses names the variable (a trial could not tell whether the code
    // or the environment was wrong).
    only(Some(&format!("{0},{0}", available[0])), None);
    match Node::start("env_cores_twice", unpinned(1)) {
        Err(StartError::InvalidOptions(m)) => assert!(m.contains("listed twice") && m.contains("PINION_CORES"), "{m}"),
        other => panic!("a core listed twice: expected InvalidOptions, got {other:?}"),
    }

    // Values that do not parse.
    // A CPU list as taskset and cgroups write it: ranges, alone or among single cores.
    only(Some(&format!("{0}-{0}", available[0])), None);
    assert_eq!(cores_of("env_cores_range", unpinned(2)), vec![None], "PINION_CORES={0}-{0}", available[0]);
    if available.len() >= 2 && available[1] == available[0] + 1 {
        only(Some(&format!("{}-{}", available[0], available[1])), Some("1"));
        assert_eq!(cores_of("env_cores_range2", unpinned(1)), vec![Some(available[0]), Some(available[1])]);
    }

    for bad in ["abc", "", "0,,1", "-1", "1.5", "1-", "2-1", "0-99999", "+1", "0-3:2"] {
        only(Some(bad), None);
        match Node::start("env_cores_garbage", unpinned(1)) {
            Err(StartError::InvalidEnv { var, value }) => {
                assert_eq!((var, value.as_str()), ("PINION_CORES", bad));
                let text = StartError::InvalidEnv { var, value }.to_string();
                assert!(text.contains("PINION_CORES") && text.contains(&format!("{bad:?}")), "{text}");
                assert!(text.contains("a CPU list such as"), "says what it takes: {text}");
            }
            other => panic!("PINION_CORES={bad:?}: expected InvalidEnv, got {other:?}"),
        }
    }

    // PINION_PIN turns pinning off or on, whatever the options say.
    only(None, Some("0"));
    assert_eq!(cores_of("env_pin_off", pinned(1)), vec![None], "PINION_PIN=0: no shard is pinned");
    only(None, Some("1"));
    assert_eq!(cores_of("env_pin_on", unpinned(1)), vec![Some(available[0])], "PINION_PIN=1 pins");
    // In any case, as `PINION_CORES=ALL` is taken (review 59: `TRUE` was refused).
    only(None, Some("TRUE"));
    assert_eq!(cores_of("env_pin_upper", unpinned(1)), vec![Some(available[0])], "PINION_PIN=TRUE pins");
    only(None, Some("Off"));
    assert_eq!(cores_of("env_pin_off_mixed", pinned(1)), vec![None], "PINION_PIN=Off: no shard is pinned");
    // `require` pins (a pin that fails then fails the start: tests/review59.rs); `0` clears a
    // requirement the options make.
    only(None, Some("Require"));
    assert_eq!(cores_of("env_pin_require", unpinned(1)), vec![Some(available[0])], "PINION_PIN=require pins");
    only(None, Some("0"));
    let required = NodeOptions { require_pin: true, ..pinned(1) };
    assert_eq!(cores_of("env_pin_not_required", required), vec![None], "PINION_PIN=0 over require_pin");
    for bad in ["maybe", "2", ""] {
        only(None, Some(bad));
        match Node::start("env_pin_garbage", unpinned(1)) {
            Err(StartError::InvalidEnv { var, value }) => {
                assert_eq!((var, value.as_str()), ("PINION_PIN", bad));
                let text = StartError::InvalidEnv { var, value }.to_string();
                assert!(text.contains("PINION_PIN") && text.contains("expected 1, true"), "says what it takes: {text}");
            }
            other => panic!("PINION_PIN={bad:?}: expected InvalidEnv, got {other:?}"),
        }
    }

    // Both cleared: the options rule again.
    only(None, None);
    assert_eq!(cores_of("env_cleared", unpinned(1)), vec![None]);
}
