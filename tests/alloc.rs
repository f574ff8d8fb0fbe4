//! The plain function-handler path allocates nothing per request once warm: a counting global
//! allocator watches a keep-alive connection serve pipelined requests through a router to a
//! plain function. (One test in its own binary: nothing else runs in the process meanwhile.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use pinion::http::{Request, Response};
use pinion::web::{Router, WebServer, WebServerOptions};
use pinion::{Cores, Node, NodeOptions};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn hello(_req: &Request) -> Response {
    Response::text("Hello, World!")
}

const REQUEST: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: alloc-test\r\n\r\n";
const BATCH: usize = 16;

/// Sends `BATCH` pipelined requests and reads until all `BATCH` responses are in.
fn round(stream: &mut TcpStream, batch: &[u8], buf: &mut [u8]) {
    stream.write_all(batch).expect("write");
    let mut seen = 0;
    let mut tail = 0usize; // bytes of a partial "Hello, World!" match carried over
    while seen < BATCH {
        let n = stream.read(buf).expect("read");
        assert!(n > 0, "server closed the connection");
        // Count complete bodies; responses are identical, so count the body text.
        let needle = b"Hello, World!";
        let mut i = 0;
        while i < n {
            if buf[i] == needle[tail] {
                tail += 1;
                if tail == needle.len() {
                    seen += 1;
                    tail = 0;
                }
            } else {
                tail = usize::from(buf[i] == needle[0]);
            }
            i += 1;
        }
    }
}

#[test]
fn plain_handler_path_allocates_nothing_per_request_once_warm() {
    let node = Node::start("alloc", NodeOptions { cores: Cores::Count(1), pin: false, ..Default::default() })
        .expect("start a node");
    let router = Router::new().get("/plaintext", hello).get("/", hello);
    let server = WebServer::start(&node.handle(), WebServerOptions::new("127.0.0.1", 0, router)).expect("start");
    let mut stream = TcpStream::connect(server.local_addr()).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let batch: Vec<u8> = REQUEST.iter().copied().cycle().take(REQUEST.len() * BATCH).collect();
    let mut buf = vec![0u8; 64 * 1024];
    // Warm up: buffers, pools and the timer wheel reach their working size.
    for _ in 0..200 {
        round(&mut stream, &batch, &mut buf);
    }
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    const ROUNDS: usize = 500;
    for _ in 0..ROUNDS {
        round(&mut stream, &batch, &mut buf);
    }
    let allocated = ALLOCATIONS.load(Ordering::SeqCst) - before;
    let requests = ROUNDS * BATCH;
    drop(stream);
    server.stop();
    node.stop();
    assert_eq!(allocated, 0, "{allocated} allocations over {requests} requests on the plain-function path");
}
