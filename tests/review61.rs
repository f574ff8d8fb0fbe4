//! Review 61: stop 33's HEAD lengths, stats ordering, deferred unsafe requests, router tails,
//! node start.

mod review_support;
mod support;

use pinion::http::{HttpLimits, Request, Response, serve_blocking};
use review_support::{Client, serve_with, start_node};
use support::wire::Wire;

/// What the server writes for `input`, every request answered by `handler`.
fn exchange(input: &[u8], handler: impl FnMut(&Request) -> Response) -> String {
    let mut wire = Wire::new(input);
    serve_blocking(&mut wire, &HttpLimits::default(), handler).expect("in-memory I/O does not fail");
    String::from_utf8(wire.out).expect("ASCII answers")
}

/// The `content-length` values of each answer's head in `out`.
fn lengths(out: &str) -> Vec<Option<String>> {
    out.split("HTTP/1.1 ")
        .skip(1)
        .map(|a| {
            let head = &a[..a.find("\r\n\r\n").expect("end of head")];
            head.lines().find_map(|l| l.strip_prefix("content-length: ")).map(str::to_owned)
        })
        .collect()
}

/// Stop 33: a HEAD answer without a body (none, or an empty one) states no length unless the
/// handler gives one. The same answer, `Response::text("")` to HEAD, got `content-length: 0`
/// on a keep-alive HTTP/1.1 connection (the cached common head) and none when it closes the
/// connection or carries a field (the general encoder): one answer, two lengths.
#[test]
fn a_head_answer_with_an_empty_body_states_the_same_length_on_every_path() {
    let handler = |req: &Request| match req.path() {
        "/field" => Response::text("").header("x-a", "1"),
        _ => Response::text(""),
    };
    let input = concat!(
        "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
        "HEAD /field HTTP/1.1\r\nHost: a\r\n\r\n",
        "HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "HEAD / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    let out = exchange(input.as_bytes(), handler);
    let got = lengths(&out);
    assert_eq!(got.len(), 4, "{out}");
    assert!(got.iter().all(|l| *l == got[0]), "{got:?}\n{out}");
}

/// The same over a socket, where a keep-alive answer first in line takes the cached head
/// straight from its slot (`Outgoing::complete_from`): none there either, and the connection
/// goes on.
#[test]
fn a_head_answer_with_an_empty_body_states_no_length_over_a_socket() {
    let node = start_node("r61-head", 1);
    let server = serve_with(&node, HttpLimits::default(), |req: &Request| match req.path() {
        "/next" => Response::text("next"),
        _ => Response::text(""),
    });
    let mut c = Client::connect(server.local_addr());
    for _ in 0..3 {
        c.send(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = c.head();
        assert_eq!((r.status, r.header("content-length")), (200, None), "{r:?}");
    }
    c.send(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
    let r = c.response();
    assert_eq!((r.status, r.text().as_str()), (200, "next"), "{r:?}");
    drop(c);
    server.stop();
    node.stop();
}
