//! Review 59: core layout and pinning — what a node reports when pinning fails, and start
//! options that must be refused, not panic.

mod review_support;

use pinion::{Cores, Node, NodeOptions, StartError};
#[cfg(target_os = "linux")]
use review_support::forbid_pinning_on_this_thread;

/// A shard whose pinning failed runs wherever its thread may: `ShardInfo::core` must not name
/// a core it is not pinned to (it did: the core of the layout, pinned or not).
#[cfg(target_os = "linux")]
#[test]
fn a_shard_whose_pinning_failed_reports_no_core() {
    let available: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    let shards = available.len().min(2);
    let (infos, masks) = std::thread::spawn(move || {
        forbid_pinning_on_this_thread();
        let node = Node::start("r59pin", NodeOptions { cores: Cores::Count(shards), pin: true, ..Default::default() })
            .expect("a failed pin does not fail the start");
        let infos: Vec<Option<usize>> = node.inspect().expect("inspect").iter().map(|s| s.core).collect();
        // What each shard thread may really run on.
        let masks: Vec<Vec<usize>> = node_thread_masks("pinion-r59pin-", shards);
        node.stop();
        (infos, masks)
    })
    .join()
    // The thread's own panic, message and all (`expect` showed only `Any { .. }`).
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    for (i, mask) in masks.iter().enumerate() {
        assert_eq!(mask, &available, "shard {i} kept the mask it was started with (not pinned)");
    }
    assert_eq!(infos, vec![None; shards], "no shard is pinned, so none reports a core");
}

/// With `require_pin`, a shard that cannot be pinned fails the start (`PinFailed`, the first
/// such shard and its core) instead of running unpinned; the node is stopped, its name free
/// for the next start.
#[cfg(target_os = "linux")]
#[test]
fn a_required_pin_that_fails_fails_the_start() {
    let available: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    let shards = available.len().min(2);
    let (failed, then) = std::thread::spawn(move || {
        forbid_pinning_on_this_thread();
        let required = NodeOptions { cores: Cores::Count(shards), pin: true, require_pin: true, ..Default::default() };
        let failed = Node::start("r59require", required).map(drop);
        let then =
            Node::start("r59require", NodeOptions { cores: Cores::Count(shards), pin: true, ..Default::default() })
                .map(|node| node.stop());
        (failed, then)
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    match failed {
        Err(e @ StartError::PinFailed { shard: 0, core }) => {
            assert_eq!(core, available[0], "the first shard's core");
            let text = e.to_string();
            assert!(text.contains("shard 0 could not be pinned") && text.contains("PINION_PIN=require"), "{text}");
        }
        other => panic!("expected PinFailed for shard 0, got {other:?}"),
    }
    assert!(then.is_ok(), "the name is free again and an unrequired pin starts: {then:?}");
}

/// The affinity masks of this process's threads named `{prefix}{i}`, in shard order.
#[cfg(target_os = "linux")]
fn node_thread_masks(prefix: &str, shards: usize) -> Vec<Vec<usize>> {
    let mut masks = vec![None; shards];
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task").flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let Some(i) = comm.trim().strip_prefix(prefix).and_then(|i| i.parse::<usize>().ok()) else { continue };
        let status = std::fs::read_to_string(task.path().join("status")).expect("status");
        let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).expect("Cpus_allowed_list");
        masks[i] = Some(parse_cpu_list(list.trim()));
    }
    masks.into_iter().enumerate().map(|(i, m)| m.unwrap_or_else(|| panic!("no thread {prefix}{i}"))).collect()
}

fn parse_cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for item in list.split(',') {
        match item.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => cpus.push(item.parse().unwrap()),
        }
    }
    cpus
}

/// A node name the OS cannot take as a thread name (an interior NUL) is refused with a
/// `StartError`: it panicked in `std::thread::Builder::spawn`.
#[test]
fn a_node_name_with_a_nul_byte_is_refused_not_a_panic() {
    let started =
        std::panic::catch_unwind(|| Node::start("r59\0nul", NodeOptions { pin: false, ..NodeOptions::shards(1) }));
    match started {
        Ok(Err(StartError::InvalidOptions(m))) => assert!(m.contains("NUL") || m.contains("nul"), "{m}"),
        Ok(other) => panic!("expected InvalidOptions, got {other:?}"),
        Err(_) => panic!("Node::start panicked on a name with a NUL byte"),
    }
    // The name is free: a node of a clean name starts.
    Node::start("r59_after_nul", NodeOptions { pin: false, ..NodeOptions::shards(1) }).expect("start").stop();
}

/// `PINION_CORES` or `PINION_PIN` that is not UTF-8 is refused (`InvalidEnv`): it was taken
/// for unset, and the node started on the code's layout. Each case runs in a child process of
/// this test binary (the environment is process-global; other tests here start nodes).
#[cfg(unix)]
#[test]
fn a_pinion_variable_that_is_not_utf8_is_refused_not_ignored() {
    use std::os::unix::ffi::OsStrExt;
    if let Some(var) = std::env::var_os("PINION_R59_CHILD") {
        let var = var.to_string_lossy();
        match Node::start("r59_env_child", NodeOptions { pin: false, ..NodeOptions::shards(1) }) {
            Err(StartError::InvalidEnv { var: got, .. }) if got == var => println!("r59: refused {got}"),
            Err(e) => println!("r59: unexpected error {e}"),
            Ok(node) => {
                println!("r59: started with {:?}", node.inspect().map(|i| i.len()));
                node.stop();
            }
        }
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    for var in ["PINION_CORES", "PINION_PIN"] {
        let out = std::process::Command::new(&exe)
            .args(["a_pinion_variable_that_is_not_utf8_is_refused_not_ignored", "--exact", "--nocapture"])
            .args(["--test-threads", "1"])
            .env_remove("PINION_CORES")
            .env_remove("PINION_PIN")
            .env(var, std::ffi::OsStr::from_bytes(b"\xff1"))
            .env("PINION_R59_CHILD", var)
            .output()
            .expect("the test binary again");
        let text = String::from_utf8_lossy(&out.stdout);
        let said = text.lines().find_map(|l| l.find("r59: ").map(|i| &l[i..]));
        let said = said.unwrap_or_else(|| panic!("the child said nothing: {text}"));
        assert_eq!(said, format!("r59: refused {var}"), "{var}=\\xff1");
    }
}
