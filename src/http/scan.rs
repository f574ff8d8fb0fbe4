//! The common request head, read without httparse: a request line `token SP target SP
//! HTTP/1.x CRLF` whose target is visible ASCII but `#`, then `token ":" OWS value OWS CRLF`
//! fields, then CRLF. It accepts a strict subset of what httparse accepts and finds the same
//! method, target, version, fields and length; anything else (a bare LF, leading empty lines,
//! obs-text or `#` in the target, an incomplete head, more fields than allowed, any byte
//! httparse might refuse) is left to httparse, which then decides — so every refusal of the
//! syntax, and every answer to an unusual head, stays httparse's (`head.rs` adds the rules
//! httparse does not apply after it, as no `#` in a target).
//!
//! It copies the head into the request in one piece (the fields and the target become ranges of
//! that copy) instead of field by field, lower-cases the field names in the read buffer as it
//! finds them (so the copy needs no second pass), and notes the `Host` fields and whether any
//! other field bears on the framing (so `parse` need not walk the fields again).
//!
//! The byte searches take sixteen bytes at a time with SSE2 on x86_64 (part of its baseline),
//! eight at a time (SWAR) elsewhere and near the end of the bytes read.
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
    /// The method, if one pinion knows by name (`GET ` first: its bytes are not looked at
    /// twice); else an extension method, whose token is the head's first `method_len` bytes.
    pub(crate) known: Option<Method>,
    pub(crate) method_len: usize,
    pub(crate) target: &'a str,
    /// The `x` of `HTTP/1.x` (0 or 1).
    pub(crate) minor: u8,
    /// How many `Host` fields the head has and whether each holds a valid host, unless a field
    /// that bears on the framing (`Content-Length`, `Transfer-Encoding`, `Connection`,
    /// `Expect`) is there too: `None` then, and the caller reads the fields.
    pub(crate) hosts: Option<(usize, bool)>,
}

/// `tchar` (RFC 9110 §5.6.2): httparse's method and field-name bytes.
pub(crate) const TOKEN: [bool; 256] = alphanumeric_and(b"!#$%&'*+-.^_`|~");

/// The bytes of a reg-name but `%` (RFC 3986 §3.2.2: unreserved and sub-delims).
const REG_NAME: [bool; 256] = alphanumeric_and(b"-._~!$&'()*+,;=");

/// A table of the ASCII letters and digits and the bytes of `extra`.
const fn alphanumeric_and(extra: &[u8]) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = (i as u8).is_ascii_alphanumeric();
        i += 1;
    }
    let mut j = 0;
    while j < extra.len() {
        t[extra[j] as usize] = true;
        j += 1;
    }
    t
}

/// The request fields the reading of a head turns on: `Host` (its rules), and the fields
/// that bear on the framing and the connection. The one list of them: the scanner leaves a
/// head with any of the latter to `head::read_fields`, which reads their values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Special {
    Host,
    Expect,
    Connection,
    ContentLength,
    TransferEncoding,
}

/// Which [`Special`] field a lower-case `name` is, if any; told apart by length first, as
/// most fields are none of them.
#[inline(always)]
pub(crate) fn special(name: &[u8]) -> Option<Special> {
    match name.len() {
        4 if name == b"host" => Some(Special::Host),
        6 if name == b"expect" => Some(Special::Expect),
        10 if name == b"connection" => Some(Special::Connection),
        14 if name == b"content-length" => Some(Special::ContentLength),
        17 if name == b"transfer-encoding" => Some(Special::TransferEncoding),
        _ => None,
    }
}

/// Reads the head at the start of `buf` into `req` (cleared first), with at most
/// `max_headers` fields. `None`: not a head this scanner reads (or not complete): ask httparse.
#[inline(always)]
pub(crate) fn scan<'a>(buf: &'a mut [u8], max_headers: usize, req: &mut Request) -> Option<Scanned<'a>> {
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
    let (mut hosts, mut hosts_valid, mut framing) = (0, true, false);
    loop {
        let rest = &mut buf[at..];
        match rest {
            [b'\r', b'\n', ..] => break,
            [] | [b'\r'] => return None,
            _ => {}
        }
        let n = name_len(rest)?;
        if n == 0 || rest[n] != b':' || fields == max_headers {
            return None;
        }
        let (v0, v1) = value_span(rest, n + 1)?;
        if rest.get(v1..v1 + 2)? != b"\r\n" {
            return None;
        }
        let value = at + v0..at + v0 + rest[v0..v1].trim_ascii_end().len();
        // The name is lower-case by now.
        match special(&rest[..n]) {
            Some(Special::Host) => {
                hosts += 1;
                hosts_valid &= valid_host_at(buf, value.clone());
            }
            Some(_) => framing = true,
            None => {}
        }
        req.push_header_at(at..at + n, value);
        fields += 1;
        at += v1 + 2;
    }
    let len = at + 2;
    let buf: &'a [u8] = buf;
    let target = &buf[t0..t1];
    debug_assert!(target.iter().all(|&b| target_byte(b)));
    // SAFETY: `visible_len` found every byte of `target` visible ASCII, which is UTF-8 (this
    // saves `from_utf8` going over the bytes again).
    let target = unsafe { std::str::from_utf8_unchecked(target) };
    let question = question.filter(|&q| q < target.len());
    req.set_head(&buf[..len], target, question);
    Some(Scanned { len, known, method_len: m, target, minor, hosts: (!framing).then_some((hosts, hosts_valid)) })
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
/// `-` (most names) sixteen or eight at a time, the table from the first other byte. The
/// letters of those bytes are lower-cased on the way (the request keeps names lower-case;
/// a name httparse reads after all reads the same in any case).
#[inline(always)]
fn name_len(s: &mut [u8]) -> Option<usize> {
    // Inlined: a name of up to 15 bytes and its colon (most); the rest out of line.
    #[cfg(target_arch = "x86_64")]
    if let Some(chunk) = s.first_chunk_mut() {
        let other = sse2::name_stops_lowercased(chunk);
        if other != 0 && chunk[first16(other)] == b':' {
            return Some(first16(other));
        }
    }
    name_len_long(s)
}

/// [`name_len`] of any name (lower-casing twice changes nothing).
#[inline(never)]
fn name_len_long(s: &mut [u8]) -> Option<usize> {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = s.get_mut(i..).and_then(<[u8]>::first_chunk_mut) {
        let other = sse2::name_stops_lowercased(chunk);
        if other != 0 {
            let at = i + first16(other);
            if s[at] == b':' {
                return Some(at); // the common end of a name: no table
            }
            i = at;
            break;
        }
        i += 16;
    }
    let n = name_len_swar(s, i)?;
    s[i..n].make_ascii_lowercase();
    Some(n)
}

/// [`name_len`] from `i` (the bytes before are `tchar`s), eight at a time, without the
/// lower-casing.
fn name_len_swar(s: &[u8], mut i: usize) -> Option<usize> {
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

/// A byte the scanner takes in a request-target: visible ASCII but `#` (a fragment is no part
/// of a request-target: a head with one is left to httparse, and refused after it).
fn target_byte(b: u8) -> bool {
    b != b'#' && (b'!'..=b'~').contains(&b)
}

/// How many bytes at the start of `s` are [`target_byte`]s (`None` if all are), and
/// where the first `?` is (it may be past those bytes; `None`: none in the bytes looked at).
#[inline(always)]
fn visible_len(s: &[u8]) -> (Option<usize>, Option<usize>) {
    // Inlined: a target of up to 15 bytes (most); the rest out of line.
    #[cfg(target_arch = "x86_64")]
    if let Some(chunk) = s.first_chunk() {
        let (bad, question) = sse2::target_stops(chunk);
        if bad != 0 {
            return (Some(first16(bad)), (question != 0).then(|| first16(question)));
        }
    }
    visible_len_long(s)
}

/// [`visible_len`] of any target.
#[inline(never)]
fn visible_len_long(s: &[u8]) -> (Option<usize>, Option<usize>) {
    #[cfg(target_arch = "x86_64")]
    {
        let mut question = None;
        let mut i = 0;
        while let Some(chunk) = s.get(i..).and_then(<[u8]>::first_chunk) {
            let (bad, q) = sse2::target_stops(chunk);
            if question.is_none() && q != 0 {
                question = Some(i + first16(q));
            }
            if bad != 0 {
                return (Some(i + first16(bad)), question);
            }
            i += 16;
        }
        visible_len_swar(s, i, question)
    }
    #[cfg(not(target_arch = "x86_64"))]
    visible_len_swar(s, 0, None)
}

/// [`visible_len`] from `i` (the bytes before are target bytes, with the first `?` at `question`),
/// eight at a time.
fn visible_len_swar(s: &[u8], mut i: usize, mut question: Option<usize>) -> (Option<usize>, Option<usize>) {
    // Flags a `?` until the first is found.
    let mut look_for_question = if question.is_none() { HIGH } else { 0 };
    while let Some(w) = s.get(i..i + 8) {
        let x = word(w);
        // Below `!`, or `DEL` and above (adding one carries into the top bit), or `#`.
        let bad = below(x, b'!') | ((x.wrapping_add(ONES) | x) & HIGH) | below(x ^ (ONES * u64::from(b'#')), 1);
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
    (rest.iter().position(|&b| !target_byte(b)).map(|p| i + p), question)
}

/// Where the value of a field whose name and colon end at `from` starts (after SP and HTAB)
/// and ends (at its first byte that is not a field-value byte, see [`value_len_swar`]); `None` if
/// `s` ends first.
#[inline(always)]
fn value_span(s: &[u8], from: usize) -> Option<(usize, usize)> {
    // Inlined: a value of up to 15 bytes after one SP or none (most); the rest out of line.
    #[cfg(target_arch = "x86_64")]
    {
        let v0 = from + usize::from(s.get(from) == Some(&b' '));
        if let Some(chunk) = s.get(v0..).and_then(<[u8]>::first_chunk) {
            let (stop, blank) = sse2::value_stops(chunk);
            if stop != 0 && blank & 1 == 0 {
                return Some((v0, v0 + first16(stop)));
            }
        }
    }
    value_span_long(s, from)
}

/// [`value_span`] of any value.
#[inline(never)]
fn value_span_long(s: &[u8], from: usize) -> Option<(usize, usize)> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut start = None;
        let mut i = from;
        while let Some(chunk) = s.get(i..).and_then(<[u8]>::first_chunk) {
            let (stop, blank) = sse2::value_stops(chunk);
            let v0 = match start {
                Some(v0) => v0,
                None if blank == 0xffff => {
                    i += 16;
                    continue;
                }
                // A byte that ends the value is no blank: none is before the value's start.
                None => *start.insert(i + first16(!blank)),
            };
            if stop != 0 {
                return Some((v0, i + first16(stop)));
            }
            i += 16;
        }
        match start {
            Some(v0) => Some((v0, value_len_swar(s, i)?)),
            None => value_span_portable(s, i),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    value_span_portable(s, from)
}

/// [`value_span`] a byte at a time for the blanks.
fn value_span_portable(s: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut v0 = from;
    while matches!(s.get(v0), Some(b' ' | b'\t')) {
        v0 += 1;
    }
    Some((v0, value_len_swar(s, v0)?))
}

/// Where the first byte from `i` on that is not a field-value byte httparse takes (HTAB, SP,
/// visible ASCII, obs-text) is; `None` if there is none. Eight at a time.
fn value_len_swar(s: &[u8], mut i: usize) -> Option<usize> {
    let valid = |b: u8| b == b'\t' || (b >= b' ' && b != 0x7f);
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

/// `uri-host [":" port]` (RFC 9110 §7.2 with RFC 3986 §3.2.2): an IP literal in brackets
/// (IPv6 or IPvFuture) or a reg-name (an IPv4 address is one) of unreserved bytes, sub-delims
/// and `%` escapes; the port all digits. An empty value is valid (the request's target has no
/// authority), an empty host before a port is not (an "http" URI's host is never empty, RFC
/// 9110 §4.2.1).
#[inline(never)]
pub(crate) fn valid_host(v: &[u8]) -> bool {
    let (host, port) = match v.strip_prefix(b"[") {
        Some(rest) => match rest.iter().position(|&b| b == b']') {
            Some(end) => (ip_literal(&rest[..end]), &rest[end + 1..]),
            None => return false,
        },
        None => {
            let end = v.iter().position(|&b| b == b':').unwrap_or(v.len());
            (reg_name(&v[..end]) && (end > 0 || v.is_empty()), &v[end..])
        }
    };
    host && match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    }
}

/// `*( unreserved / pct-encoded / sub-delims )`.
fn reg_name(s: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        i += match b {
            b'%' if s.get(i + 1..i + 3).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => 3,
            _ if REG_NAME[b as usize] => 1,
            _ => return false,
        };
    }
    true
}

/// What an IP literal holds between its brackets: `IPv6address` or `IPvFuture` (`v` 1*HEXDIG
/// `.` 1*( unreserved / sub-delims / `:` )).
fn ip_literal(s: &[u8]) -> bool {
    match s {
        [b'v' | b'V', rest @ ..] => {
            let hex = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
            matches!(&rest[hex..], [b'.', tail @ ..] if hex > 0
                && !tail.is_empty()
                && tail.iter().all(|&b| b == b':' || REG_NAME[b as usize]))
        }
        _ => std::str::from_utf8(s).is_ok_and(|t| t.parse::<std::net::Ipv6Addr>().is_ok()),
    }
}

/// [`valid_host`] of `buf[value]`, a field value after the request line (so at least 16
/// bytes into `buf`): a name or address of letters, digits, `-` and `.` with a port or none
/// (most hosts) sixteen at a time; anything else by [`valid_host`].
#[inline(always)]
fn valid_host_at(buf: &[u8], value: std::ops::Range<usize>) -> bool {
    // Inlined: a host of up to 16 bytes (most); the rest out of line.
    #[cfg(target_arch = "x86_64")]
    if value.len() <= 16 && host_common_before(buf, value.end, value.len(), true) {
        return true;
    }
    valid_host_at_long(buf, value)
}

/// [`valid_host_at`] of any value.
#[inline(never)]
fn valid_host_at_long(buf: &[u8], value: std::ops::Range<usize>) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let mut i = value.start;
        while value.end - i > 16 {
            // Whole chunks before the last: letters, digits, `-` and `.` only (a colon there
            // would need the port's check across chunks: left to `valid_host`).
            match buf.get(i..).and_then(<[u8]>::first_chunk) {
                Some(chunk) if matches!(sse2::host_parts(chunk), (0xffff, 0, _)) => i += 16,
                _ => return valid_host(&buf[value]),
            }
        }
        if host_common_before(buf, value.end, value.end - i, i == value.start) {
            return true;
        }
    }
    valid_host(&buf[value])
}

/// The `n` (at most 16) bytes of `buf` before `end` are letters, digits, `-`, `.` and `:`,
/// digits only after the first `:` (a port: so no second one), which is not the first byte if
/// `first` (they start the value: no empty host). Looked at as the end of the 16 bytes
/// before `end`. False may still be a valid host (the caller asks [`valid_host`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn host_common_before(buf: &[u8], end: usize, n: usize, first: bool) -> bool {
    let want: u32 = (0xffff << (16 - n)) & 0xffff;
    let Some(chunk) = end.checked_sub(16).and_then(|s| buf.get(s..)).and_then(<[u8]>::first_chunk) else {
        return false;
    };
    let (common, colon, digit) = sse2::host_parts(chunk);
    // The first colon (0 if none) and the bytes after it (none if there is no colon).
    let colon = colon & want & (colon & want).wrapping_neg();
    let port = want & !(colon | colon.wrapping_sub(1));
    let start = if first { want & want.wrapping_neg() } else { 0 };
    common & want == want && digit & port == port && colon & start == 0
}

/// The first flagged byte of a 16-byte mask.
#[cfg(target_arch = "x86_64")]
fn first16(flags: u32) -> usize {
    flags.trailing_zeros() as usize
}

#[cfg(target_arch = "x86_64")]
mod sse2;

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
        let mut copy = buf.to_vec();
        let s = scan(&mut copy, max, &mut req)?;
        let (len, known, target, minor, hosts) = (s.len, s.known, s.target.to_owned(), s.minor, s.hosts);
        // Only letters of field names may have changed in the buffer (not the request line).
        let line = buf.iter().position(|&b| b == b'\n').unwrap();
        assert_eq!((copy.to_ascii_lowercase(), &copy[..line]), (buf.to_ascii_lowercase(), &buf[..line]));
        // The target the request keeps (a range of its copy of the head) and its parts.
        let by_hand = Request::new(Method::Get, &target);
        let parts = |r: &Request| (r.target().to_owned(), r.path().to_owned(), r.query().map(str::to_owned));
        assert_eq!(parts(&req), parts(&by_hand));
        let method = &buf[..buf.iter().position(|&b| b == b' ').unwrap()];
        assert_eq!(known, Method::from_bytes(method));
        let fields: Vec<(Vec<u8>, Vec<u8>)> = req.fields().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        // What the fields that bear on the framing say, read by hand.
        let framing = [&b"content-length"[..], b"transfer-encoding", b"connection", b"expect"];
        let host_fields = fields.iter().filter(|(n, _)| n == b"host");
        let expected = (!fields.iter().any(|(n, _)| framing.contains(&&n[..])))
            .then(|| (host_fields.clone().count(), host_fields.clone().all(|(_, v)| valid_host(v))));
        assert_eq!(hosts, expected);
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        Some((len, text(method), target, minor, fields))
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
        for len in 0..40 {
            for at in 0..len {
                for b in 0..=255u8 {
                    for fill in [b'a', b'Z', b'7', b'-', b'_'] {
                        let mut s = vec![fill; len];
                        s[at] = b;
                        let token = s.iter().position(|&b| !TOKEN[b as usize]);
                        assert_eq!(name_len_swar(&s, 0), token, "{s:?}");
                        let mut lowered = s.clone();
                        assert_eq!(name_len_long(&mut lowered.clone()), token, "{s:?}");
                        assert_eq!(name_len(&mut lowered), token, "{s:?}");
                        // The letters of the name are lower-cased, nothing else changes.
                        if let Some(n) = token {
                            s[..n].make_ascii_lowercase();
                            assert_eq!(lowered, s);
                        }
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

    /// `uri-host [":" port]` as RFC 3986 writes it, spelled out another way than `valid_host`
    /// (the port split off at the last colon outside brackets).
    fn host_by_grammar(v: &[u8]) -> bool {
        let unreserved_or_sub = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b);
        let close = v.iter().rposition(|&b| b == b']');
        let colon = v.iter().rposition(|&b| b == b':').filter(|&c| close.is_none_or(|e| c > e));
        let (host, port) = match colon {
            Some(c) => (&v[..c], &v[c + 1..]),
            None => (v, &[][..]),
        };
        if !port.iter().all(u8::is_ascii_digit) || (host.is_empty() && colon.is_some()) {
            return false;
        }
        if let [b'[', inner @ .., b']'] = host {
            let text = String::from_utf8_lossy(inner);
            return text.parse::<std::net::Ipv6Addr>().is_ok()
                || text.strip_prefix(['v', 'V']).and_then(|t| t.split_once('.')).is_some_and(|(hex, rest)| {
                    !hex.is_empty()
                        && hex.bytes().all(|b| b.is_ascii_hexdigit())
                        && !rest.is_empty()
                        && rest.bytes().all(|b| b == b':' || unreserved_or_sub(b))
                });
        }
        let mut i = 0;
        while i < host.len() {
            if host[i] == b'%' {
                if !(i + 2 < host.len() && host[i + 1].is_ascii_hexdigit() && host[i + 2].is_ascii_hexdigit()) {
                    return false;
                }
                i += 3;
            } else if unreserved_or_sub(host[i]) {
                i += 1;
            } else {
                return false;
            }
        }
        true
    }

    #[test]
    fn host_values_follow_the_grammar() {
        let valid: [&[u8]; 14] = [
            b"",
            b"example.com",
            b"EXAMPLE.com:8080",
            b"127.0.0.1:18290",
            b"x:",
            b"[::1]",
            b"[::1]:80",
            b"[2001:db8::ff00:42:8329]:443",
            b"[::ffff:192.0.2.1]",
            b"[v1.fe:x]",
            b"a%20b",
            b"sub.domain-with-dash.example.org:65535",
            b"a!$&'()*+,;=b",
            b"x_y~z",
        ];
        let invalid: [&[u8]; 16] = [
            b"x:abc",
            b"x:80:90",
            b"[::1",
            b"x]",
            b"::",
            b"%zz",
            b":80",
            b"%2",
            b"a b",
            b"user@host",
            b"[::1]x",
            b"[::1]:8a",
            b"[vz.x]",
            b"[v1.]",
            b"[1.2.3.4]",
            b"host/path",
        ];
        for v in valid {
            assert!(valid_host(v) && host_by_grammar(v), "{:?}", String::from_utf8_lossy(v));
        }
        for v in invalid {
            assert!(!valid_host(v) && !host_by_grammar(v), "{:?}", String::from_utf8_lossy(v));
        }
        // In place, short and long, with and without a port: the same answers.
        for v in valid.iter().chain(&invalid) {
            for pad in [0, 5, 16, 20] {
                let long: Vec<u8> = if v.is_empty() || v[0] == b'[' || v[0] == b':' {
                    v.to_vec()
                } else {
                    [&vec![b'a'; pad][..], v].concat()
                };
                let mut buf = vec![b'/'; 16];
                buf.extend_from_slice(&long);
                let range = 16..buf.len();
                let want = valid_host(&long);
                assert_eq!(want, host_by_grammar(&long), "{:?}", String::from_utf8_lossy(&long));
                assert_eq!(valid_host_at(&buf, range.clone()), want, "{:?}", String::from_utf8_lossy(&long));
                assert_eq!(valid_host_at_long(&buf, range), want, "{:?}", String::from_utf8_lossy(&long));
            }
        }
    }

    /// Every search (the inlined first sixteen bytes, sixteen at a time where there is SSE2,
    /// eight at a time, one by one) finds
    /// the byte the plain definition finds: every byte value at every place of up to 40 bytes.
    #[test]
    fn every_way_finds_the_first_byte() {
        for len in 0..=40 {
            for at in 0..len {
                for b in 0..=255u8 {
                    for fill in [b'a', b' ', b'Z', b'?', b'7', b'#', b':'] {
                        let mut s = vec![fill; len];
                        s[at] = b;
                        let visible = s.iter().position(|&b| !target_byte(b));
                        let end = visible.unwrap_or(len);
                        let q = s[..end].iter().position(|&b| b == b'?');
                        for (found, question) in [visible_len(&s), visible_len_long(&s), visible_len_swar(&s, 0, None)]
                        {
                            assert_eq!((found, question.filter(|&p| p < end)), (visible, q), "{s:?}");
                        }
                        let value = s.iter().position(|&b| !(b == b'\t' || (b >= b' ' && b != 0x7f)));
                        assert_eq!(value_len_swar(&s, 0), value, "{s:?}");
                        let start = s.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(len);
                        let span = value.filter(|&v| v >= start).map(|v| (start, v));
                        let spans = [value_span(&s, 0), value_span_long(&s, 0), value_span_portable(&s, 0)];
                        assert_eq!(spans, [span; 3], "{s:?}");
                        // A host is checked in place: 16 bytes of something else before it.
                        let mut buf = vec![b'/'; 16];
                        buf.extend_from_slice(&s);
                        let host = host_by_grammar(&s);
                        let hosts =
                            [valid_host_at(&buf, 16..16 + len), valid_host_at_long(&buf, 16..16 + len), valid_host(&s)];
                        assert_eq!(hosts, [host; 3], "{s:?}");
                        s.push(0x7f);
                        s.push(0);
                        assert_eq!(visible_len(&s).0, Some(end), "{s:?}");
                    }
                }
            }
        }
    }
}
