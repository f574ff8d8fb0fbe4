//! Coverage-guided fuzzing of the HTTP/1.1 server codec (`pinion::http::serve_blocking`),
//! outside the crate's CI (libFuzzer needs nightly flags):
//!
//! ```sh
//! cargo install cargo-fuzz
//! cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O serve -- -dict=http.dict -max_len=2048
//! RUSTC_BOOTSTRAP=1 cargo fuzz run -O roundtrip -- -max_len=2048
//! RUSTC_BOOTSTRAP=1 cargo fuzz run -O head_diff -- -dict=http.dict -max_len=4096
//! ```
//!
//! `serve`: any bytes, tiny limits chosen by the input, served whole, in chosen read sizes and
//! a byte at a time; the answers must parse strictly and agree. `roundtrip`: well-formed
//! pipelined requests whose bodies must reach the handler exactly. `head_diff`: any bytes read
//! as a request head by the codec and by httparse, under the rules of
//! `tests/http_differential.rs` (`heads`, below).
//!
//! Shared harness: a Read+Write double with chosen read sizes, a recording handler, and a
//! strict HTTP/1.1 response-stream parser that checks the invariants.

/// The request head as the handler saw it and as httparse reads it (shared with
/// `tests/http_differential.rs`).
#[path = "../../tests/support/heads.rs"]
pub mod heads;

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::time::Duration;

use pinion::http::{HttpLimits, Method, Request, Response, StatusCode, Version, serve_blocking};

/// Reads hand out `input` in pieces of `sizes[i % len]` bytes (cycled); writes are collected.
pub struct Wire<'a> {
    pub input: &'a [u8],
    pub pos: usize,
    pub sizes: Vec<usize>,
    pub nread: usize,
    pub out: Vec<u8>,
    /// A write with `connection: close` has happened.
    pub closed_written: bool,
    /// Reads called after that.
    pub reads_after_close: usize,
}

impl<'a> Wire<'a> {
    pub fn new(input: &'a [u8], sizes: Vec<usize>) -> Self {
        Wire { input, pos: 0, sizes, nread: 0, out: Vec::new(), closed_written: false, reads_after_close: 0 }
    }
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.closed_written {
            self.reads_after_close += 1;
        }
        let step = if self.sizes.is_empty() { usize::MAX } else { self.sizes[self.nread % self.sizes.len()] };
        self.nread += 1;
        let n = (self.input.len() - self.pos).min(step).min(buf.len());
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.windows(19).any(|w| w == b"connection: close\r\n") {
            self.closed_written = true;
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a handler saw of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub v10: bool,
    pub headers: Vec<(String, Vec<u8>)>,
    pub trailers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Seen {
    fn of(req: &Request) -> Seen {
        Seen {
            method: req.method().to_string(),
            target: req.target().to_owned(),
            v10: req.version() == Version::Http10,
            headers: req.headers().iter().map(|(n, v)| (n.to_owned(), v.to_vec())).collect(),
            trailers: req.trailers().iter().map(|(n, v)| (n.to_owned(), v.to_vec())).collect(),
            body: req.body().to_vec(),
        }
    }

    /// Independent reading of RFC 9112 §9.3: may the connection carry another request?
    pub fn keep_alive(&self) -> bool {
        let tokens: Vec<Vec<u8>> = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(|&b| b == b',').map(|t| t.trim_ascii().to_ascii_lowercase()).collect::<Vec<_>>())
            .collect();
        if tokens.iter().any(|t| t == b"close") {
            return false;
        }
        !self.v10 || tokens.iter().any(|t| t == b"keep-alive")
    }
}

/// The handler: records the request, answers by path.
pub fn answer(seq: usize, req: &Request) -> Response {
    let seqs = seq.to_string();
    let r = match req.path() {
        "/204" => Response::text("nope").with_status(StatusCode(204)),
        "/304" => Response::text("nope").with_status(StatusCode(304)),
        "/empty" => Response::new(StatusCode::OK),
        "/close" => Response::text("c").header("connection", "close").header("content-length", "99"),
        "/split" => Response::text("s").header("x-a", "b\r\nx-injected: 1"),
        "/500" => Response::text("err").with_status(StatusCode(500)),
        _ => Response::text(format!("{} {}", seq, req.body().len())),
    };
    r.header("x-seq", seqs)
}

/// One parsed final response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resp {
    pub status: u16,
    /// Head with date values blanked.
    pub head: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub seq: Option<usize>,
    pub close: bool,
}

pub struct Outcome {
    pub seen: Vec<Seen>,
    pub out: Vec<u8>,
    pub reads_after_close: usize,
    pub consumed: usize,
}

pub fn serve(input: &[u8], sizes: Vec<usize>, limits: &HttpLimits) -> Outcome {
    let seen = RefCell::new(Vec::new());
    let mut wire = Wire::new(input, sizes);
    serve_blocking(&mut wire, limits, |req| {
        let mut s = seen.borrow_mut();
        let r = answer(s.len(), req);
        s.push(Seen::of(req));
        r
    })
    .expect("in-memory I/O does not fail");
    Outcome { seen: seen.into_inner(), reads_after_close: wire.reads_after_close, consumed: wire.pos, out: wire.out }
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

/// Parses the server's output strictly and checks it against what the handler saw.
/// Returns the final responses (interim `100 Continue` dropped).
pub fn check_output(o: &Outcome) -> Vec<Resp> {
    let out = &o.out[..];
    let mut at = 0;
    let mut resps: Vec<Resp> = Vec::new();
    let mut handler_idx = 0usize;
    let mut refusals_final = 0usize;
    while at < out.len() {
        assert!(
            resps.last().is_none_or(|r: &Resp| !r.close),
            "bytes after a response with connection: close: {:?}",
            String::from_utf8_lossy(&out[at..])
        );
        let start = at;
        let line_end = at + find_crlf(&out[at..]).expect("status line without CRLF");
        let line = &out[at..line_end];
        assert!(
            line.len() >= 13 && line.starts_with(b"HTTP/1.1 "),
            "bad status line {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(
            line[9..12].iter().all(u8::is_ascii_digit) && line[12] == b' ',
            "bad status code {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(line[13..].iter().all(|&b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b)), "bad reason");
        let status: u16 = std::str::from_utf8(&line[9..12]).unwrap().parse().unwrap();
        assert!((100..=599).contains(&status), "status {status}");
        at = line_end + 2;
        let mut headers = Vec::new();
        let mut head = line.to_vec();
        head.extend_from_slice(b"\r\n");
        loop {
            let e = at + find_crlf(&out[at..]).expect("header line without CRLF");
            let l = &out[at..e];
            at = e + 2;
            if l.is_empty() {
                break;
            }
            let colon = l.iter().position(|&b| b == b':').expect("field without colon");
            let name = &l[..colon];
            assert!(
                !name.is_empty() && name.iter().all(|&b| is_tchar(b)),
                "bad field name {:?}",
                String::from_utf8_lossy(l)
            );
            let value = l[colon + 1..].trim_ascii();
            assert!(
                value.iter().all(|&b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b) || b >= 0x80),
                "bad field value"
            );
            assert!(!name.eq_ignore_ascii_case(b"x-injected"), "response splitting through a handler field");
            if name.eq_ignore_ascii_case(b"date") {
                head.extend_from_slice(b"date: <DATE>\r\n");
            } else {
                head.extend_from_slice(l);
                head.extend_from_slice(b"\r\n");
            }
            let value = if name.eq_ignore_ascii_case(b"date") { &b"<DATE>"[..] } else { value };
            headers.push((name.to_ascii_lowercase(), value.to_vec()));
        }
        head.extend_from_slice(b"\r\n");
        let get = |n: &[u8]| headers.iter().filter(move |(k, _)| k == n).map(|(_, v)| v.clone()).collect::<Vec<_>>();
        let cls = get(b"content-length");
        let tes = get(b"transfer-encoding");
        let conns = get(b"connection");
        assert!(tes.is_empty(), "transfer-encoding in a response to a held body");
        assert!(cls.len() <= 1, "several content-length");
        assert!(conns.len() <= 1, "several connection fields");
        let close = conns.first().is_some_and(|v| v.eq_ignore_ascii_case(b"close"));
        if (100..200).contains(&status) {
            assert_eq!(status, 100, "unexpected interim status");
            assert!(cls.is_empty() && conns.is_empty(), "framing on an interim response");
            continue;
        }
        if status >= 200 && status != 204 && status < 500 {
            assert_eq!(get(b"date").len(), 1, "a Date is due");
        }
        let seq = get(b"x-seq").first().map(|v| std::str::from_utf8(v).unwrap().parse::<usize>().unwrap());
        let head_request = match seq {
            Some(s) => {
                assert_eq!(s, handler_idx, "responses out of order");
                assert!(s < o.seen.len(), "response for a request the handler never saw");
                handler_idx += 1;
                o.seen[s].method == "HEAD"
            }
            None => false,
        };
        let body = if status == 204 || status == 304 {
            assert!(status == 304 || cls.is_empty(), "content-length on 204");
            Vec::new()
        } else {
            let cl = cls.first().expect("a final response without content-length");
            assert!(!cl.is_empty() && cl.iter().all(u8::is_ascii_digit), "bad content-length");
            let n: usize = std::str::from_utf8(cl).unwrap().parse().unwrap();
            let rest = &out[at..];
            // A refusal of a line beginning `HEAD ` is answered without content.
            let bodiless =
                head_request || (seq.is_none() && n > 0 && (rest.is_empty() || rest.starts_with(b"HTTP/1.1 ")));
            if bodiless {
                Vec::new()
            } else {
                assert!(rest.len() >= n, "body shorter than content-length");
                at += n;
                rest[..n].to_vec()
            }
        };
        let _ = start;
        if seq.is_none() {
            assert!(status >= 400, "refusal with status {status}");
            let unknown_method = status == 501 && body == b"method not implemented";
            if !unknown_method {
                assert!(close, "a refusal that keeps the connection: {status} {:?}", String::from_utf8_lossy(&body));
                refusals_final += 1;
            }
        } else if let Some(s) = seq {
            let r = &o.seen[s];
            let ka = r.keep_alive();
            assert_eq!(close, !ka, "connection: close on the response vs the request's keep-alive ({:?})", r);
            if r.v10 && ka {
                assert!(
                    conns.first().is_some_and(|v| v.eq_ignore_ascii_case(b"keep-alive")),
                    "HTTP/1.0 keep-alive not confirmed"
                );
            }
        }
        resps.push(Resp { status, head, headers, body, seq, close });
    }
    assert_eq!(handler_idx, o.seen.len(), "handler saw {} requests, {} answered", o.seen.len(), handler_idx);
    assert!(refusals_final <= 1);
    // Every handler request but the last allowed another after it.
    for (i, s) in o.seen.iter().enumerate() {
        if i + 1 < o.seen.len() {
            assert!(s.keep_alive(), "a request after one that closes the connection: {:?}", s);
        }
    }
    if resps.last().is_some_and(|r| r.close) {
        assert_eq!(o.reads_after_close, 0, "read after the closing answer was written");
    }
    resps
}

/// Limits from a few bytes: tiny ones to reach 413/414/431.
pub fn limits_from(b: &[u8]) -> HttpLimits {
    let g = |i: usize| b.get(i).copied().unwrap_or(0) as usize;
    HttpLimits {
        max_head_bytes: 8 + g(0) % 200,
        max_headers: g(1) % 8,
        max_uri_bytes: 1 + g(2) % 64,
        max_body_bytes: g(3) % 80,
        max_trailer_bytes: 1 + g(4) % 64,
        header_read_timeout: Duration::from_secs(30),
        body_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(75),
        max_connections_per_shard: 16,
        max_in_flight: 1 + g(5) % 64,
        ..HttpLimits::default()
    }
}

/// Compares two runs over the same input: same requests seen, same responses (Date aside,
/// interim 100s aside).
pub fn same(a: &Outcome, ra: &[Resp], b: &Outcome, rb: &[Resp], what: &str) {
    assert_eq!(a.seen, b.seen, "handler-visible requests differ ({what})");
    assert_eq!(ra, rb, "responses differ ({what})");
}

pub fn method_is_head(m: Method) -> bool {
    m == Method::Head
}
