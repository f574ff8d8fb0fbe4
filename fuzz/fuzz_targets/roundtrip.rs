#![no_main]
//! Well-formed requests built from the input, framed by Content-Length or chunked (with
//! extensions, odd hex, trailers): the handler must see exactly the bodies and trailers the
//! reference encoder put in, under any read splitting, and nothing may be refused.
use libfuzzer_sys::fuzz_target;
use pinion::http::HttpLimits;
use pinion_fuzz::*;

struct Src<'a>(&'a [u8]);
impl Src<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, r)) => {
                self.0 = r;
                b
            }
            None => 0,
        }
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
}

struct Expected {
    method: &'static str,
    target: String,
    body: Vec<u8>,
    trailers: Vec<(String, Vec<u8>)>,
}

fuzz_target!(|input: &[u8]| {
    let mut s = Src(input);
    let nsizes = (s.byte() % 6) as usize;
    let sizes: Vec<usize> = (0..nsizes).map(|_| (s.byte() as usize % 48) + 1).collect();
    let count = 1 + (s.byte() % 4) as usize;
    let mut wire = Vec::new();
    let mut expected = Vec::new();
    for i in 0..count {
        let c = s.byte();
        let method = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "POST"][(c & 7) as usize];
        let v10 = c & 0x08 != 0;
        let framing = (c >> 4) % 3; // 0 none, 1 length, 2 chunked
        let framing = if v10 && framing == 2 { 1 } else { framing };
        let expect = c & 0x40 != 0 && !v10;
        let last = i + 1 == count;
        let close = last && c & 0x80 != 0;
        let target = format!("/r{i}?q={}", s.byte());
        let blen = (s.byte() % 100) as usize;
        let body = if framing == 0 { Vec::new() } else { s.bytes(blen) };
        let mut trailers = Vec::new();
        let mut head =
            format!("{method} {target} HTTP/1.{}\r\nHost: example.com\r\n", if v10 { 0 } else { 1 }).into_bytes();
        let f = s.byte();
        if v10 && !close && !last {
            head.extend_from_slice(b"Connection: keep-alive\r\n");
        } else if v10 && last && !close {
            head.extend_from_slice(b"Connection: Keep-Alive\r\n");
        }
        if close {
            head.extend_from_slice(if v10 { b"Connection: close\r\n" } else { b"connection: CLOSE\r\n" });
        }
        if expect {
            head.extend_from_slice(b"Expect: 100-continue\r\n");
        }
        let mut encoded = Vec::new();
        match framing {
            0 => {
                if f & 1 == 1 {
                    head.extend_from_slice(b"Content-Length: 0\r\n");
                }
            }
            1 => {
                let name: &[u8] =
                    [&b"Content-Length"[..], b"content-length", b"CONTENT-LENGTH", b"Content-length"][(f & 3) as usize];
                head.extend_from_slice(name);
                head.extend_from_slice(b":");
                if f & 4 != 0 {
                    head.extend_from_slice(b" \t");
                }
                head.extend_from_slice(body.len().to_string().as_bytes());
                if f & 8 != 0 {
                    head.extend_from_slice(b", ");
                    head.extend_from_slice(body.len().to_string().as_bytes());
                }
                if f & 16 != 0 {
                    head.extend_from_slice(b" ");
                }
                head.extend_from_slice(b"\r\n");
                encoded.extend_from_slice(&body);
            }
            _ => {
                let name: &[u8] = [&b"Transfer-Encoding"[..], b"transfer-encoding"][(f & 1) as usize];
                head.extend_from_slice(name);
                head.extend_from_slice(
                    [&b": chunked\r\n"[..], b": Chunked \r\n", b":chunked\r\n", b": identity, chunked\r\n"]
                        [((f >> 1) & 3) as usize % 3],
                );
                let mut rest = &body[..];
                while !rest.is_empty() {
                    let k = s.byte();
                    let n = ((k & 31) as usize + 1).min(rest.len());
                    let zeros = "0".repeat(((k >> 5) & 3) as usize);
                    let hex = if k & 0x80 != 0 { format!("{zeros}{n:X}") } else { format!("{zeros}{n:x}") };
                    encoded.extend_from_slice(hex.as_bytes());
                    match s.byte() % 4 {
                        1 => encoded.extend_from_slice(b";ext=val"),
                        2 => encoded.extend_from_slice(b" ; name=\"quoted ; value\""),
                        _ => {}
                    }
                    encoded.extend_from_slice(b"\r\n");
                    encoded.extend_from_slice(&rest[..n]);
                    encoded.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                }
                encoded.extend_from_slice(b"0");
                if f & 8 != 0 {
                    encoded.extend_from_slice(b";last");
                }
                encoded.extend_from_slice(b"\r\n");
                for t in 0..(f >> 4) % 3 {
                    let v = format!("v{}", s.byte());
                    encoded.extend_from_slice(format!("X-Trailer-{t}: {v}\r\n").as_bytes());
                    trailers.push((format!("x-trailer-{t}"), v.into_bytes()));
                }
                encoded.extend_from_slice(b"\r\n");
            }
        }
        head.extend_from_slice(b"\r\n");
        wire.extend_from_slice(&head);
        wire.extend_from_slice(&encoded);
        if v10 && framing == 0 && !last {
            // keep-alive was asked for: fine
        }
        expected.push(Expected { method, target, body, trailers });
        if close {
            break;
        }
    }

    let limits = HttpLimits::default();
    for sz in [Vec::new(), sizes, vec![1]] {
        let o = serve(&wire, sz, &limits);
        let resps = check_output(&o);
        assert_eq!(o.seen.len(), expected.len(), "requests lost: {:?}", String::from_utf8_lossy(&wire));
        assert_eq!(resps.len(), expected.len(), "responses: {:?}", String::from_utf8_lossy(&o.out));
        for (e, g) in expected.iter().zip(&o.seen) {
            assert_eq!(g.method, e.method);
            assert_eq!(g.target, e.target);
            assert_eq!(g.body, e.body, "body decoded differently");
            assert_eq!(g.trailers, e.trailers, "trailers");
        }
        assert_eq!(o.consumed, wire.len(), "not everything read");
    }
});
