//! The common request head, read without httparse: a request line `token SP target SP
//! HTTP/1.x CRLF` whose target is visible ASCII, then `token ":" OWS value OWS CRLF` fields,
//! then CRLF. It accepts a strict subset of what httparse accepts and finds the same method,
//! target, version, fields and length; anything else (a bare LF, leading empty lines, obs-text
//! in the target, an incomplete head, more fields than allowed, any byte httparse might refuse)
//! is left to httparse, which then decides — so every refusal, and every answer to an unusual
//! head, stays httparse's.
//!
//! It copies the head into the request in one piece (the fields and the target become ranges of
//! that copy) instead of field by field.
#![allow(
    unsafe_code,
    reason = "a target whose bytes the scanner just checked to be visible ASCII becomes a str without a second UTF-8 pass"
)]

use super::request::{Method, Request};

/// The request line of a head the scanner read; the fields and the target are in the request
/// already.
pub(crate) struct Scanned<'a> {
    /// Bytes the head took.
    pub(crate) len: usize,
    /// The method, if one pinion knows (`GET ` first: its bytes are not looked at twice).
    pub(crate) known: Option<Method>,
    pub(crate) target: &'a str,
    /// The `x` of `HTTP/1.x` (0 or 1).
    pub(crate) minor: u8,
}

/// `tchar` (RFC 9110 §5.6.2): httparse's method and field-name bytes.
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    let extra = b"!#$%&'*+-.^_`|~";
    let mut j = 0;
    while j < extra.len() {
        t[extra[j] as usize] = true;
        j += 1;
    }
    t
};

/// Reads the head at the start of `buf` into `req` (cleared first), with at most
/// `max_headers` fields. `None`: not a head this scanner reads (or not complete): ask httparse.
pub(crate) fn scan<'a>(buf: &'a [u8], max_headers: usize, req: &mut Request) -> Option<Scanned<'a>> {
    let (m, known) = if buf.starts_with(b"GET ") {
        (3, Some(Method::Get))
    } else {
        let m = buf.iter().position(|&b| !TOKEN[b as usize])?;
        (m, Method::from_bytes(&buf[..m]))
    };
    if m == 0 || buf[m] != b' ' {
        return None;
    }
    let t0 = m + 1;
    let (visible, question) = visible_len(&buf[t0..]);
    let t1 = t0 + visible?;
    let version = buf.get(t1..t1 + 11)?;
    if t1 == t0 || version[..8] != *b" HTTP/1." || !matches!(version[8], b'0' | b'1') || version[9..] != *b"\r\n" {
        return None;
    }
    let minor = version[8] - b'0';
    req.clear();
    let mut at = t1 + 11;
    let mut fields = 0;
    loop {
        let rest = &buf[at..];
        match rest {
            [b'\r', b'\n', ..] => break,
            [] | [b'\r'] => return None,
            _ => {}
        }
        let n = name_len(rest)?;
        if n == 0 || rest[n] != b':' || fields == max_headers {
            return None;
        }
        let mut v0 = n + 1;
        while matches!(rest.get(v0), Some(b' ' | b'\t')) {
            v0 += 1;
        }
        let v1 = v0 + value_len(rest.get(v0..)?)?;
        if rest.get(v1..v1 + 2)? != b"\r\n" {
            return None;
        }
        let value = rest[v0..v1].trim_ascii_end();
        req.push_header_at(at..at + n, at + v0..at + v0 + value.len());
        fields += 1;
        at += v1 + 2;
    }
    let len = at + 2;
    let target = &buf[t0..t1];
    debug_assert!(target.iter().all(|b| (b'!'..=b'~').contains(b)));
    // SAFETY: `visible_len` found every byte of `target` visible ASCII, which is UTF-8 (this
    // saves `from_utf8` going over the bytes again).
    let target = unsafe { std::str::from_utf8_unchecked(target) };
    let question = question.filter(|&q| q < target.len());
    req.set_head(&buf[..len], target, question);
    Some(Scanned { len, known, target, minor })
}

// Eight bytes at a time (SWAR): each test sets the top bit of every byte it flags; a flag
// can be wrong only above a right one (a borrow or carry moves upwards), so the lowest flag
// is exact.
const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Bytes below `n` (`n` ≤ 0x80).
const fn below(x: u64, n: u8) -> u64 {
    x.wrapping_sub(ONES * n as u64) & !x & HIGH
}

fn word(s: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(s);
    u64::from_le_bytes(w)
}

/// The first flagged byte of `flags`.
fn first(flags: u64) -> usize {
    (flags.trailing_zeros() / 8) as usize
}

/// How many bytes at the start of `s` are `tchar`s (`None` if all are): letters, digits and
/// `-` (most names) eight at a time, the table from the first other byte.
fn name_len(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(w) = s.get(i..i + 8) {
        let x = word(w);
        // Bytes at or above `n`: exact for bytes below 0x80 (no sum carries out of them);
        // bytes from 0x80 are not plain (`& !x`), and a carry out of one only reaches bytes
        // further on.
        let at_least = |v: u64, n: u8| v.wrapping_add(ONES * u64::from(0x80 - n)) & HIGH;
        let lower = x | (ONES * 0x20);
        let letter = at_least(lower, b'a') & !at_least(lower, b'z' + 1);
        let digit = at_least(x, b'0') & !at_least(x, b'9' + 1);
        let dash = at_least(x, b'-') & !at_least(x, b'-' + 1);
        let other = (!(letter | digit | dash) | x) & HIGH;
        if other != 0 {
            i += first(other);
            if s[i] == b':' {
                return Some(i); // the common end of a name: no table
            }
            break;
        }
        i += 8;
    }
    s[i..].iter().position(|&b| !TOKEN[b as usize]).map(|p| i + p)
}

/// How many bytes at the start of `s` are visible ASCII (`!`..=`~`) (`None` if all are), and
/// where the first `?` is (it may be past those bytes; `None`: none in the bytes looked at).
fn visible_len(s: &[u8]) -> (Option<usize>, Option<usize>) {
    let mut question = None;
    // Flags a `?` until the first is found.
    let mut look_for_question = HIGH;
    let mut i = 0;
    while let Some(w) = s.get(i..i + 8) {
        let x = word(w);
        // Below `!`, or `DEL` and above (adding one carries into the top bit).
        let bad = below(x, b'!') | ((x.wrapping_add(ONES) | x) & HIGH);
        let stop = bad | (below(x ^ (ONES * u64::from(b'?')), 1) & look_for_question);
        if stop == 0 {
            i += 8;
            continue;
        }
        let at = i + first(stop);
        if s[at] != b'?' {
            return (Some(at), question);
        }
        question = Some(at);
        look_for_question = 0;
        i = at + 1;
    }
    let rest = &s[i..];
    let question = question.or_else(|| rest.iter().position(|&b| b == b'?').map(|p| i + p));
    (rest.iter().position(|&b| !(b'!'..=b'~').contains(&b)).map(|p| i + p), question)
}

/// Lower-cases the ASCII letters of `bytes[range]` (ASCII bytes), eight at a time where
/// `bytes` has eight from there (those past `range` are read, not changed).
pub(crate) fn lowercase(bytes: &mut [u8], range: std::ops::Range<usize>) {
    let mut i = range.start;
    while i < range.end {
        let Some(w) = bytes.get_mut(i..i + 8) else {
            return lowercase_tail(&mut bytes[i..range.end]);
        };
        let x = word(w);
        let left = range.end - i;
        let keep = if left >= 8 { HIGH } else { HIGH & ((1 << (8 * left)) - 1) };
        // `A` and above, not `[` and above: the top bit of each (exact for the ASCII bytes
        // kept; a carry from a byte past them only reaches bytes further on).
        let upper = x.wrapping_add(ONES * 0x3f) & !x.wrapping_add(ONES * 0x25) & keep;
        w.copy_from_slice(&(x | (upper >> 2)).to_le_bytes());
        i += 8;
    }
}

/// The last few bytes of a name at the very end of the head (rare: not inlined).
#[cold]
#[inline(never)]
fn lowercase_tail(bytes: &mut [u8]) {
    bytes.make_ascii_lowercase();
}

/// How many bytes at the start of `s` are field-value bytes httparse takes (HTAB, SP,
/// visible ASCII, obs-text); `None` if all are.
fn value_len(s: &[u8]) -> Option<usize> {
    let valid = |b: u8| b == b'\t' || (b >= b' ' && b != 0x7f);
    let mut i = 0;
    while let Some(w) = s.get(i..i + 8) {
        let x = word(w);
        // Controls (HTAB among them: looked at one by one) and DEL.
        let stop = below(x, b' ') | below(x ^ (ONES * 0x7f), 1);
        if stop == 0 {
            i += 8;
            continue;
        }
        let at = i + first(stop);
        if !valid(s[at]) {
            return Some(at);
        }
        i = at + 1;
    }
    s[i..].iter().position(|&b| !valid(b)).map(|p| i + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (length, method, target, minor version, fields).
    type View = (usize, String, String, u8, Vec<(Vec<u8>, Vec<u8>)>);

    /// What httparse makes of `buf`, when it makes a complete head of it.
    fn httparse_view(buf: &[u8], max: usize) -> Option<View> {
        let mut headers = vec![httparse::EMPTY_HEADER; max];
        let mut r = httparse::Request::new(&mut headers);
        match r.parse(buf) {
            Ok(httparse::Status::Complete(len)) => Some((
                len,
                r.method?.to_owned(),
                r.path?.to_owned(),
                r.version?,
                r.headers.iter().map(|h| (h.name.to_ascii_lowercase().into_bytes(), h.value.to_vec())).collect(),
            )),
            _ => None,
        }
    }

    fn scan_view(buf: &[u8], max: usize) -> Option<View> {
        let mut req = Request::default();
        let s = scan(buf, max, &mut req)?;
        // The target the request keeps (a range of its copy of the head) and its parts.
        let by_hand = Request::new(Method::Get, s.target);
        let parts = |r: &Request| (r.target().to_owned(), r.path().to_owned(), r.query().map(str::to_owned));
        assert_eq!(parts(&req), parts(&by_hand));
        let method = &buf[..buf.iter().position(|&b| b == b' ').unwrap()];
        assert_eq!(s.known, Method::from_bytes(method));
        let fields = req.fields().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        Some((s.len, text(method), s.target.to_owned(), s.minor, fields))
    }

    /// Whatever the scanner reads, httparse reads the same way.
    fn agrees(buf: &[u8], max: usize) {
        if let Some(mine) = scan_view(buf, max) {
            assert_eq!(Some(&mine), httparse_view(buf, max).as_ref(), "{:?}", String::from_utf8_lossy(buf));
        }
    }

    const HEADS: &[&[u8]] = &[
        b"GET /plaintext HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
        b"POST /a/b?x=1&y=%20 HTTP/1.0\r\nContent-Length: 5\r\nX-A:\t v a l \t\r\nX-B:\r\n\r\nhello",
        b"OPTIONS * HTTP/1.1\r\nhost: h\r\nx-obs: caf\xc3\xa9 \xff\r\nAccept: */*\r\n\r\nGET / HTTP/1.1\r\n",
        b"M-SEARCH http://a.example/very/long/path/over/eight/bytes?q=1 HTTP/1.1\r\nHost: a.example\r\n\r\n",
    ];

    #[test]
    fn reads_what_httparse_reads_the_same_way() {
        let bytes = [0u8, b'\t', b'\n', b'\r', b' ', b'!', b':', b'/', b'a', b'A', b'~', 0x7f, 0x80, 0xff];
        for head in HEADS {
            assert!(scan_view(head, 100).is_some(), "{:?}", String::from_utf8_lossy(head));
            for max in [0, 1, 2, 100] {
                agrees(head, max);
            }
            for cut in 0..head.len() {
                agrees(&head[..cut], 100);
            }
            for at in 0..head.len() {
                for &b in &bytes {
                    let mut h = head.to_vec();
                    h[at] = b;
                    agrees(&h, 100);
                    h.insert(at, b);
                    agrees(&h, 100);
                }
            }
        }
    }

    #[test]
    fn name_len_is_the_token_length() {
        for len in 0..24 {
            for at in 0..len {
                for b in 0..=255u8 {
                    for fill in [b'a', b'Z', b'7', b'-', b'_'] {
                        let mut s = vec![fill; len];
                        s[at] = b;
                        let token = s.iter().position(|&b| !TOKEN[b as usize]);
                        assert_eq!(name_len(&s), token, "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn visible_len_finds_the_first_question_mark() {
        for s in [&b"/a?b?c d"[..], b"????????? x", b"/abcdefg?hijklmn?op q", b"/abcdefgh ?", b"/?", b"?a"] {
            let end = s.iter().position(|&b| b == b' ');
            let (found, question) = visible_len(s);
            assert_eq!(found, end, "{s:?}");
            let first = s.iter().position(|&b| b == b'?');
            assert_eq!(question.filter(|&q| q < end.unwrap_or(s.len())), first.filter(|&q| q < end.unwrap_or(s.len())));
        }
    }

    #[test]
    fn lowercase_changes_letters_in_the_range_only() {
        let all: Vec<u8> = (0..=255u8).collect();
        for start in 0..20 {
            for end in start..40 {
                let mut bytes: Vec<u8> = all.iter().cycle().skip(0x3a).take(40).copied().collect();
                bytes[start..end].iter_mut().for_each(|b| *b &= 0x7f);
                let mut expected = bytes.clone();
                expected[start..end].make_ascii_lowercase();
                lowercase(&mut bytes, start..end);
                assert_eq!(bytes, expected, "{start}..{end}");
            }
        }
    }

    #[test]
    fn eight_at_a_time_finds_the_first_byte() {
        for len in 0..40 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    let visible = s.iter().position(|&b| !(b'!'..=b'~').contains(&b));
                    let (found, question) = visible_len(&s);
                    assert_eq!(found, visible, "{s:?}");
                    let end = visible.unwrap_or(len);
                    let q = s[..end].iter().position(|&b| b == b'?');
                    assert_eq!(question.filter(|&p| p < end), q, "{s:?}");
                    let value = s.iter().position(|&b| !(b == b'\t' || (b >= b' ' && b != 0x7f)));
                    assert_eq!(value_len(&s), value, "{s:?}");
                    s.push(0x7f);
                    s.push(0);
                    assert!(visible_len(&s).0.is_some_and(|p| p <= at || p == len));
                }
            }
        }
    }
}
