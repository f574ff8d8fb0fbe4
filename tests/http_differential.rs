//! The request head, differentially: thousands of request heads (valid ones, and the same with
//! a few bytes inserted, deleted or replaced by the bytes that matter to HTTP syntax) go
//! through the server's codec (`serve_blocking`, on byte slices) and through `httparse` itself.
//!
//! - httparse refuses the head: the server never hands it to a handler and answers 4xx/5xx;
//! - httparse accepts it: the server either refuses it by a rule of its own (Host, framing,
//!   request-target form; answered 4xx/5xx), or hands the handler exactly the method (an
//!   extension method's token too), target, version and fields httparse read;
//! - httparse wants more bytes: the server hands nothing to a handler.
//!
//! Whatever shortcut the codec takes for common heads, it must never accept what httparse
//! refuses nor read a head differently (that is how request smuggling starts).

use std::cell::RefCell;

use pinion::http::{HttpLimits, Response, serve_blocking};

mod support;

use support::heads::{
    Seen, announces_body, as_http11, check_pipelined, is_error_answer, seen_by_httparse, seen_by_server,
};
use support::wire::Wire;

/// The server's answer to `input`: what the handler saw of each request, and the bytes written.
fn serve(input: &[u8]) -> (Vec<Seen>, Vec<u8>) {
    let seen = RefCell::new(Vec::new());
    let mut wire = Wire::new(input);
    serve_blocking(&mut wire, &HttpLimits::default(), |req| {
        seen.borrow_mut().push(seen_by_server(req));
        Response::text("ok")
    })
    .expect("in-memory I/O does not fail");
    (seen.into_inner(), wire.out)
}

/// Heads the mutations start from: common ones and the odd corners of the grammar.
const SEEDS: &[&[u8]] = &[
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"GET /plaintext HTTP/1.1\r\nHost: localhost:8080\r\nAccept: text/plain,text/html;q=0.9\r\nConnection: keep-alive\r\n\r\n",
    b"GET /users/42?x=1&y=%20 HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
    b"POST /orders HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n",
    b"HEAD /x HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"DELETE /a/b/c HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Tabs:\t v \t\r\n\r\n",
    b"GET http://example.com/abs HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"PATCH /p HTTP/1.1\r\nhost: h\r\nx-a: 1\r\nx-a: 2\r\nX-Weird_Name!#$%&'*+-.^`|~: v\r\n\r\n",
    b"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n",
];

/// The bytes that matter to the grammar, plus a few ordinary ones.
const ALPHABET: &[u8] = b"\r\n \t:/?#%\"(),;=\\@[]{}*!~|^`'+-._0189aAzZHTP\x00\x01\x08\x0b\x0c\x1f\x7f\x80\xa9\xc3\xff";

/// xorshift64*: a deterministic, dependency-free generator (the run is repeatable).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// 1 to 3 edits: insert, delete or replace one byte (from the alphabet, or copied from
/// elsewhere in the head).
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut head = seed.to_vec();
    for _ in 0..=rng.below(3) {
        let at = rng.below(head.len() + 1);
        let byte = if rng.below(4) == 0 && !head.is_empty() {
            head[rng.below(head.len())]
        } else {
            ALPHABET[rng.below(ALPHABET.len())]
        };
        match rng.below(3) {
            0 => head.insert(at, byte),
            1 if at < head.len() => {
                head.remove(at);
            }
            _ if at < head.len() => head[at] = byte,
            _ => head.push(byte),
        }
    }
    head
}

/// Checks one head; returns which case it was (0 both accept, 1 server refuses by its own
/// rule, 2 httparse refuses, 3 partial or waiting for a body).
fn check(head: &[u8]) -> usize {
    let shown = String::from_utf8_lossy(head);
    let (server, mut out) = serve(head);
    assert!(server.len() <= 1, "two requests handled from one head {shown:?}: {server:?}");
    let server = server.into_iter().next();
    // An interim `100 Continue` (for `Expect: 100-continue`) says nothing about the head.
    if let Some(rest) = out.strip_prefix(b"HTTP/1.1 100 Continue\r\n\r\n") {
        out = rest.to_vec();
    }
    match seen_by_httparse::<128>(&as_http11(head)) {
        Err(e) => {
            assert!(server.is_none(), "httparse refuses ({e}) but the server handled {shown:?}: {server:?}");
            assert!(is_error_answer(&out), "httparse refuses ({e}); the server answered {out:?} to {shown:?}");
            2
        }
        Ok(None) => {
            assert!(server.is_none(), "httparse wants more bytes but the server handled {shown:?}: {server:?}");
            3
        }
        Ok(Some((parsed, len))) => match server {
            Some(server) => {
                assert_eq!(server, parsed, "the server and httparse read {shown:?} differently");
                if len == head.len() && !announces_body(&parsed) {
                    check_pipelined(head, &parsed, |input| serve(input).0);
                }
                0
            }
            // A head that announces a body waits for it (the input ends first): no answer.
            None if out.is_empty() && announces_body(&parsed) => 3,
            None => {
                assert!(is_error_answer(&out), "a head httparse accepts got {out:?} without a handler: {shown:?}");
                1
            }
        },
    }
}

#[test]
fn seed_heads_are_read_as_httparse_reads_them() {
    for seed in SEEDS {
        check(seed);
    }
    // The plain ones reach the handler (the odd ones may be refused by a rule of the server).
    assert_eq!(check(SEEDS[0]), 0);
    assert_eq!(check(SEEDS[1]), 0);
}

/// `name` from the environment as a number, else `default` (a soak: more cases, other seeds).
fn env_or(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// 20 000 mutated heads from a fixed seed; `PINION_DIFF_CASES` and `PINION_DIFF_SEED` soak it
/// (e.g. 500 000 cases a seed, ~1.2 s each in a release build).
#[test]
fn mutated_heads_are_never_read_differently_from_httparse() {
    let seed = env_or("PINION_DIFF_SEED", 0x9e37_79b9_7f4a_7c15);
    assert_ne!(seed, 0, "PINION_DIFF_SEED=0 would leave the xorshift generator at 0 forever");
    let mut rng = Rng(seed);
    let mut cases = [0usize; 4];
    for i in 0..env_or("PINION_DIFF_CASES", 20_000) as usize {
        let head = mutate(&mut rng, SEEDS[i % SEEDS.len()]);
        cases[check(&head)] += 1;
    }
    // Every kind of outcome was reached, so the comparison was not vacuous.
    eprintln!("seed {seed}: outcomes (both accept, server refuses, httparse refuses, partial): {cases:?}");
    let [both, ours, theirs, partial] = cases;
    assert!(both > 2_000 && ours > 100 && theirs > 2_000 && partial > 100, "outcomes: {cases:?}");
}
