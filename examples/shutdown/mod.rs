//! The web examples' stop on SIGTERM (a container stop) or SIGINT (ctrl-C): the first signal
//! drains the server ([`WebServer::drain`]) — it stops listening, every connection answers the
//! requests it has read (the one it is reading too), the last with `Connection: close`, and
//! closes — and once no connection is left (or after 10 s) the node stops and the program exits
//! with status 0. A second signal stops the node at once.

use std::time::Duration;

use pinion::web::WebServer;
use pinion::{Context, Node, Pid};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Sent to the process that owns the server on the first signal: it calls [`drain_then_stop`].
pub(crate) struct Drain;

/// Drains `server`, waits (at most 10 s) until its connections are gone, and stops the node.
pub(crate) async fn drain_then_stop(ctx: &Context, server: Option<&WebServer>) {
    if let Some(server) = server {
        server.drain();
        // Bounded: a client that never sends the rest of its request is cut by the stop.
        for _ in 0..200 {
            if server.stats().connections == 0 {
                break;
            }
            ctx.sleep(Duration::from_millis(50)).await;
        }
    }
    ctx.handle().stop();
}

/// SIGTERM and SIGINT, taken before the node starts: one that comes while it or the service
/// starts does not kill the program (it drains once the service is up).
pub(crate) fn take_signals() -> Signals {
    Signals::new([SIGINT, SIGTERM]).expect("signal handlers")
}

/// On the first signal, asks `service` to drain ([`Drain`]); on the next, or if it cannot be
/// asked, stops the node at once. `program` names the program in what it says on stderr.
pub(crate) fn stop_on_signals(program: &'static str, mut signals: Signals, node: &Node, service: Pid) {
    let handle = node.handle();
    std::thread::spawn(move || {
        let mut signals = signals.forever();
        if let Some(signal) = signals.next() {
            eprintln!("{program}: signal {signal}: draining");
            if handle.send(service, Drain).is_err() {
                handle.stop();
            }
        }
        if let Some(signal) = signals.next() {
            eprintln!("{program}: signal {signal}: stopping now");
            handle.stop();
        }
    });
}
