#![no_main]
//! The request head, differentially and coverage-guided: the input is raw bytes, read as one
//! request head (possibly followed by more bytes: a body, another request, garbage), served by
//! the codec (`serve_blocking`, default limits) and parsed by `httparse` itself. The rules are
//! those of `tests/http_differential.rs`, about the first request of the input:
//!
//! - httparse refuses the head: the server never hands it to a handler and answers 4xx/5xx
//!   (a refused version may wait for the end of its line: `HTTP/2` is a 505 but `HTTP/2x` a
//!   400, and the server reads `HTTP/1.2` … `HTTP/1.9` as HTTP/1.1, so httparse is shown that);
//! - httparse accepts it: the server either refuses it by a rule of its own (Host grammar,
//!   framing, request-target form, `#` in the target, an unknown method, its limits; answered
//!   4xx/5xx), or hands the handler exactly the method, target, minor version and fields
//!   httparse read; a head that announces a body may also wait for it (no answer yet);
//! - httparse wants more bytes: nothing is handed to a handler.
//!
//! When the handler got it and it announces no body, the head ends where httparse says: the
//! same head with a plain request right behind it gives the same first request, and the second
//! one is read as itself (or not at all, if the first closes the connection).
//!
//! And the answers do not depend on how the bytes arrive: served one byte at a time, the
//! handler sees the same requests and the same bytes are written (`Date` values and interim
//! `100 Continue`s aside).
//!
//! ```sh
//! cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O head_diff -- -dict=http.dict -max_len=4096
//! ```
use std::cell::RefCell;

use libfuzzer_sys::fuzz_target;
use pinion::http::{HttpLimits, Response, serve_blocking};
use pinion_fuzz::Wire;
use pinion_fuzz::heads::{
    Seen, announces_body, as_http11, check_pipelined, is_error_answer, line_start, seen_by_httparse, seen_by_server,
};

/// As many header slots as the server can ever be configured for (`MAX_HEADERS_LIMIT`): a
/// head with more is refused by both; one with more than `max_headers` (100 by default) but
/// fewer than this is a refusal by a limit of the server (431), which the rules allow.
const SLOTS: usize = 256;

/// The server's answer to `input` handed out in reads of `sizes` (empty: as large as asked
/// for): what the handler saw of each request, and the bytes written. The handler answers
/// `200 ok`, which no refusal is: a first answer of 200 is the handler's.
fn serve(input: &[u8], sizes: Vec<usize>) -> (Vec<Seen>, Vec<u8>) {
    let seen = RefCell::new(Vec::new());
    let mut wire = Wire::new(input, sizes);
    serve_blocking(&mut wire, &HttpLimits::default(), |req| {
        seen.borrow_mut().push(seen_by_server(req));
        Response::text("ok")
    })
    .expect("in-memory I/O does not fail");
    (seen.into_inner(), wire.out)
}

/// The request line's LF has arrived.
fn line_complete(input: &[u8]) -> bool {
    input[line_start(input)..].contains(&b'\n')
}

/// The output without a leading interim `100 Continue` (for `Expect: 100-continue`: it says
/// nothing about the head).
fn final_answers(out: &[u8]) -> &[u8] {
    out.strip_prefix(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap_or(out)
}

fn is_handler_answer(out: &[u8]) -> bool {
    out.starts_with(b"HTTP/1.1 200 ")
}

/// `out` with the value of every `Date` field blanked (it may tick between two runs) and the
/// interim `100 Continue`s left out, wherever they are (one is sent only while the body has not
/// arrived: RFC 9110 §10.1.1 lets a server that has some of it already omit it).
fn comparable(out: &[u8]) -> Vec<u8> {
    const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut r = Vec::with_capacity(out.len());
    let mut rest = out;
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix(CONTINUE) {
            rest = tail;
        } else if rest.len() >= 5 && rest[..5].eq_ignore_ascii_case(b"date:") && r.ends_with(b"\r\n") {
            let lf = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |p| p + 1);
            r.extend_from_slice(b"date: <DATE>\r\n");
            rest = &rest[lf..];
        } else {
            r.push(rest[0]);
            rest = &rest[1..];
        }
    }
    r
}

fuzz_target!(|input: &[u8]| check(input));

fn check(input: &[u8]) {
    let shown = String::from_utf8_lossy(input);
    let (server, out) = serve(input, Vec::new());
    let answers = final_answers(&out);
    // The handler got the first request of the input (and `server[0]` is it) iff the first
    // final answer is its 200; after a refusal that keeps the connection (501 for an unknown
    // method) later requests of the input may still reach it.
    let first_handled = is_handler_answer(answers);
    assert!(
        first_handled || answers.is_empty() || is_error_answer(answers),
        "an answer neither the handler's nor a refusal to {shown:?}: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert!(!first_handled || !server.is_empty(), "a 200 without the handler for {shown:?}");
    match seen_by_httparse::<SLOTS>(&as_http11(input)) {
        Err(e) => {
            assert!(!first_handled, "httparse refuses ({e}) but the server handled {shown:?}: {:?}", server[0]);
            if answers.is_empty() && e == httparse::Error::Version && !line_complete(input) {
                // httparse refuses a version at its first wrong byte; the server waits for the
                // end of the line to tell a well-formed other version (`HTTP/2`, `HTTP/2.0`:
                // 505) from garbage (400), `head::version_error`. Once the line ends, it
                // refuses, or reads `HTTP/1.2` … `HTTP/1.9` as HTTP/1.1 (see `as_http11`): the
                // rules hold for the line ended (which is not deferred again).
                check(&[input, b"\r\n"].concat());
            } else {
                assert!(
                    is_error_answer(answers),
                    "httparse refuses ({e}); the server answered {:?} to {shown:?}",
                    String::from_utf8_lossy(&out)
                );
            }
        }
        Ok(None) => {
            // All of the input is one incomplete head: nothing may come of it.
            assert!(server.is_empty(), "httparse wants more bytes but the server handled {shown:?}: {server:?}");
        }
        Ok(Some((parsed, len))) => {
            if first_handled {
                assert_eq!(server[0], parsed, "the server and httparse read {shown:?} differently");
                if !announces_body(&parsed) {
                    check_pipelined(&input[..len], &parsed, |input| serve(input, Vec::new()).0);
                }
            } else if answers.is_empty() {
                // No answer at all: only a head that announces a body may wait for it.
                assert!(announces_body(&parsed), "a head httparse accepts got no answer: {shown:?}");
            } else {
                // A refusal by a rule of the server's own (checked above to be 4xx/5xx).
                debug_assert!(is_error_answer(answers));
            }
        }
    }
    // The same bytes a byte at a time: the same requests, the same answers.
    if input.len() <= 4096 {
        let (ones, out1) = serve(input, vec![1]);
        assert_eq!(server, ones, "whole vs one byte at a time: handler saw different requests for {shown:?}");
        let (whole, ones) = (comparable(&out), comparable(&out1));
        assert!(
            whole == ones,
            "whole vs one byte at a time: different answers to {shown:?}:\n{:?}\n{:?}",
            String::from_utf8_lossy(&whole),
            String::from_utf8_lossy(&ones)
        );
    }
}
