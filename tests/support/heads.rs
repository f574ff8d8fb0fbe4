//! A request head as the server's handler saw it and as httparse reads it, and the rules that
//! tie the two: shared by the differential test (`tests/http_differential.rs`, random
//! mutations) and the `head_diff` fuzz target (`fuzz/`, coverage-guided), which includes this
//! file by path.
#![allow(dead_code, reason = "each includer uses a subset")]
#![allow(unreachable_pub, reason = "a test helper module: `pub` is for the files that include it")]

use pinion::http::{Request, Version};

/// What a handler saw of a request: method, target, minor version, fields (names lowercased).
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub minor: u8,
    pub fields: Vec<(String, Vec<u8>)>,
}

pub fn seen_by_server(req: &Request) -> Seen {
    Seen {
        method: req.method_token().to_owned(),
        target: req.target().to_owned(),
        minor: if req.version() == Version::Http10 { 0 } else { 1 },
        fields: req.headers().iter().map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec())).collect(),
    }
}

/// httparse's reading of `head` (its default configuration, as the server's) with `SLOTS`
/// field slots: `Ok(Some((seen, length)))` complete, `Ok(None)` partial, `Err` refused.
pub fn seen_by_httparse<const SLOTS: usize>(head: &[u8]) -> Result<Option<(Seen, usize)>, httparse::Error> {
    let mut storage = [httparse::EMPTY_HEADER; SLOTS];
    let mut req = httparse::Request::new(&mut storage);
    match req.parse(head)? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(len) => Ok(Some((
            Seen {
                method: req.method.unwrap_or_default().to_owned(),
                target: req.path.unwrap_or_default().to_owned(),
                minor: req.version.unwrap_or(1),
                fields: req.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect(),
            },
            len,
        ))),
    }
}

/// `head` with a later minor version of HTTP/1 (`HTTP/1.2` … `HTTP/1.9`) in its complete
/// request line made `HTTP/1.1`: the server reads such a head as HTTP/1.1 (RFC 9110 §2.5),
/// which httparse refuses, so httparse is shown the head the server reads. The request line is
/// found as the server finds it: empty lines (CRLF or a bare LF) before it skipped, the rest of
/// the line after its second space is the version.
pub fn as_http11(head: &[u8]) -> Vec<u8> {
    let mut head = head.to_vec();
    let start = line_start(&head);
    let Some(lf) = head[start..].iter().position(|&b| b == b'\n').map(|p| start + p) else { return head };
    let end = if lf > start && head[lf - 1] == b'\r' { lf - 1 } else { lf };
    let later = head[start..end]
        .splitn(3, |&b| b == b' ')
        .nth(2)
        .is_some_and(|v| v.len() == 8 && v.starts_with(b"HTTP/1.") && (b'2'..=b'9').contains(&v[7]));
    if later {
        head[end - 1] = b'1';
    }
    head
}

/// Where the request line starts: after the empty lines (CRLF or a bare LF, as httparse skips
/// them; a lone CR is no empty line) before it.
pub fn line_start(input: &[u8]) -> usize {
    let mut start = 0;
    loop {
        match input[start..] {
            [b'\r', b'\n', ..] => start += 2,
            [b'\n', ..] => start += 1,
            _ => return start,
        }
    }
}

pub fn announces_body(seen: &Seen) -> bool {
    seen.fields.iter().any(|(n, _)| n == "content-length" || n == "transfer-encoding")
}

pub fn is_error_answer(out: &[u8]) -> bool {
    out.starts_with(b"HTTP/1.1 4") || out.starts_with(b"HTTP/1.1 5")
}

/// A plain request sent right behind a head the handler got (pipelined).
pub const SECOND: &[u8] = b"GET /second HTTP/1.1\r\nHost: h\r\n\r\n";

/// The head ends where httparse says it ends: a request right behind it is read as itself
/// (or not at all, when the first one closes the connection), never as part of the first.
/// `serve` gives what the handler saw of each request of its input.
pub fn check_pipelined(head: &[u8], first: &Seen, serve: impl Fn(&[u8]) -> Vec<Seen>) {
    let input = [head, SECOND].concat();
    let seen = serve(&input);
    let shown = String::from_utf8_lossy(&input);
    assert_eq!(seen.first(), Some(first), "pipelined: the first request changed in {shown:?}");
    assert!(seen.len() <= 2, "pipelined: {} requests read from {shown:?}", seen.len());
    if let Some(second) = seen.get(1) {
        assert_eq!(second.target, "/second", "pipelined: the second request misread in {shown:?}");
    }
}
