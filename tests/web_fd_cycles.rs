//! From a review of stop 29's commits: start/stop/drop cycles of a web server leak no file
//! descriptor (its listeners, and the duplicates `stop` shuts down). Alone in its binary: the
//! count is the process's, which other tests running at once would change.

use std::time::{Duration, Instant};

use pinion::http::{Request, Response};
use pinion::web::{Handler, WebServer, WebServerOptions};
use pinion::{Cores, Node, NodeOptions};

const WAIT: Duration = Duration::from_secs(10);

fn start_node(name: &str, shards: usize) -> Node {
    let options = NodeOptions { cores: Cores::Count(shards), pin: false, ..Default::default() };
    Node::start(name, options).unwrap_or_else(|e| panic!("node {name}: {e}"))
}

fn serve(node: &Node, handler: impl Handler) -> WebServer {
    WebServer::start(node, WebServerOptions::new("127.0.0.1", 0, handler)).expect("web server starts")
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

#[test]
fn start_stop_cycles_leak_no_descriptor() {
    let node = start_node("r30-fds", 2);
    // Warm up (the node's own descriptors, lazily made ones).
    for _ in 0..3 {
        let s = serve(&node, |_: &Request| Response::text("hi"));
        s.stop();
    }
    std::thread::sleep(Duration::from_millis(100));
    let before = open_fds();
    for i in 0..50 {
        let s = serve(&node, |_: &Request| Response::text("hi"));
        if i % 3 == 0 {
            drop(s);
        } else {
            s.stop();
            s.stop();
        }
    }
    // (Each shard closes its listener after `stop` returns: waited for, boundedly.)
    let deadline = Instant::now() + WAIT;
    let mut after = open_fds();
    while after > before + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        after = open_fds();
    }
    node.stop();
    assert!(after <= before + 2, "descriptors before {before}, after 50 start/stop cycles {after}");
}
