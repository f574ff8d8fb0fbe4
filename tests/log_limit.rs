//! Log lines a client can cause by the thousand are limited per call site and thread (a soak
//! trial: one client made 10 000 panics a second, each logged twice): a handler's panic, a
//! pool worker's panic — at most ten a second each, then a line that says how many were left
//! out. (A worker's replacement after a panic is logged at debug level only, since stop 31.)

mod review_support;

use std::sync::Mutex;
use std::time::Instant;

use pinion::http::{HttpLimits, Request, Response};
use pinion::web::{Router, WebHandler, WebWorker};
use pinion::{Context, Pool, PoolOptions, ProcessOptions};
use review_support::*;

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == "pinion" && metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            lock(&LINES).push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn lines_with(part: &str) -> usize {
    lock(&LINES).iter().filter(|l| l.contains(part)).count()
}

/// Panics on every GET.
struct Panicky;

impl WebWorker for Panicky {
    async fn handle_get(&mut self, _: &mut Context, _: &Request) -> Response {
        panic!("a worker bug");
    }
}

/// Sends `n` pipelined GETs to `path` in one write and reads their `n` answers (500 each).
fn burst(c: &mut Client, path: &str, n: usize) {
    c.send(get(path).repeat(n).as_slice());
    for i in 0..n {
        assert_eq!(c.response().status, 500, "answer {i}");
    }
}

#[test]
fn panics_by_the_hundred_log_ten_a_second_then_how_many_were_left_out() {
    log::set_logger(&Capture).expect("the one logger of this binary");
    log::set_max_level(log::LevelFilter::Warn);
    let node = start_node("log-limit", 1);
    let options = PoolOptions::new(1, 512, || Panicky);
    let pool = node.spawn(move || Pool::new(options), ProcessOptions::default()).wait().expect("pool");
    let router = Router::new()
        .get("/fn", |_: &Request| -> Response { panic!("a handler bug") })
        .route("/worker", WebHandler::to(pool));
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    let start = Instant::now();
    burst(&mut c, "/fn", 300);
    burst(&mut c, "/worker", 100);
    // Ten a second per site, in as many windows as the bursts took.
    let most = 10 * (start.elapsed().as_secs() as usize + 1);
    // (A worker's replacement after a panic is not a line of its own: the panic's is enough.)
    for site in ["web handler was contained", "process panicked"] {
        let n = lines_with(site);
        assert!((1..=most).contains(&n), "{n} lines of {site:?} (at most {most})");
    }
    // The next of each, a window later, says how many were left out.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    burst(&mut c, "/fn", 1);
    burst(&mut c, "/worker", 1);
    assert!(lines_with("lines like the next were left out") >= 2, "{:?}", lock(&LINES));
    assert_eq!(lines_with("pool worker ended"), 0, "{:?}", lock(&LINES));
    node.stop();
}
