//! The response encoder: status line, `Date` (formatted once per second per thread), the
//! caller's fields, then the framing pinion decides: `Content-Length` for a body it holds,
//! `Transfer-Encoding: chunked` for a streamed one, nothing for statuses without a body. The
//! common response head is cached per thread and copied in one piece.
#![allow(
    unsafe_code,
    reason = "the cached response head reached through a pointer out of its thread-local; head and body copied into reserved room"
)]

use std::borrow::Cow;
use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::request::{Method, Version};
use super::response::{Body, Response, StatusCode};

/// What the encoder needs to know about the request a response answers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answering {
    pub(crate) method: Method,
    pub(crate) version: Version,
    /// The connection may stay open after this response.
    pub(crate) keep_alive: bool,
}

/// Encodes `resp`'s head (and its body, unless streamed or answering HEAD) into `out`.
/// Returns whether the connection may stay open after it.
/// (Inlined: the common response is a few compares and two copies; the rest is out of line.)
#[inline(always)]
pub(crate) fn encode(resp: &Response, to: Answering, date: &Date, out: &mut Vec<u8>) -> bool {
    if let (true, Body::Full(body)) = (common(resp, to), &resp.body)
        && encode_common(resp, body, to.method, date, out)
    {
        return true;
    }
    encode_general(resp, to, date, out)
}

/// Any response, field by field.
#[inline(never)]
fn encode_general(resp: &Response, to: Answering, date: &Date, out: &mut Vec<u8>) -> bool {
    // The handler may end the connection (`Connection: close`), not keep one the request ends.
    let mut keep_alive = to.keep_alive && !resp.asks_close();
    let streamed = matches!(resp.body, Body::Streamed);
    // An HTTP/1.0 client cannot read chunked: the body ends when the connection does.
    if streamed && to.version == Version::Http10 && to.method != Method::Head && !resp.status.no_content() {
        keep_alive = false;
    }
    // A status outside 100..=599 is not valid (RFC 9110 §15): it is sent as 500.
    let status = if (100..=599).contains(&resp.status.0) { resp.status } else { StatusCode::INTERNAL_SERVER_ERROR };
    let c = status.0;
    // One growth check for the whole head and body.
    let fields: usize = resp.headers.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    out.reserve(160 + fields + resp.body_bytes().len());
    out.extend_from_slice(&[
        b'H',
        b'T',
        b'T',
        b'P',
        b'/',
        b'1',
        b'.',
        b'1',
        b' ',
        b'0' + (c / 100) as u8,
        b'0' + (c / 10 % 10) as u8,
        b'0' + (c % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(status.reason().as_bytes());
    // The handler's own `Server`, if it gave a valid one.
    let server = resp.headers.iter().find(|(n, v)| n.eq_ignore_ascii_case("server") && valid_value(v) && !v.is_empty());
    out.extend_from_slice(b"\r\nserver: ");
    out.extend_from_slice(server.map_or(&b"pinion"[..], |(_, v)| v));
    out.extend_from_slice(b"\r\ndate: ");
    out.extend_from_slice(&date.text);
    out.extend_from_slice(b"\r\n");
    if let Some(t) = resp.content_type.as_ref().filter(|t| valid_value(t.as_bytes())) {
        out.extend_from_slice(b"content-type: ");
        out.extend_from_slice(t.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // An `Upgrade` sent: its sender MUST also send the `upgrade` connection option (RFC 9110
    // §7.8), in the `Connection` field written below.
    // The handler's own `Connection` options (other than `close`) go into that field too.
    let (mut upgrade, mut options) = (false, false);
    for (name, value) in &resp.headers {
        if is_framing(name) {
            options |= name.eq_ignore_ascii_case("connection");
            continue;
        }
        if resp.content_type.is_some() && name.eq_ignore_ascii_case("content-type") {
            continue;
        }
        if !valid_name(name.as_bytes()) || !valid_value(value) {
            // CR/LF in a field would let a value (user input, say) split the response.
            log::warn!(target: "pinion::web", "dropped an invalid response field {:?}", String::from_utf8_lossy(name.as_bytes()));
            continue;
        }
        upgrade |= name.eq_ignore_ascii_case("upgrade");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    // A 2xx answer to CONNECT has no framing fields (RFC 9110 §9.3.6: MUST NOT) and no
    // content: a client reads what follows its head as the tunnel's.
    let tunnel = opens_tunnel(to.method, resp.status);
    if !resp.status.bodiless() && !tunnel {
        match &resp.body {
            // 205: framed, but no content whatever the handler gave (RFC 9110 §15.3.6).
            _ if resp.status.0 == 205 => out.extend_from_slice(b"content-length: 0\r\n"),
            Body::Streamed if to.version == Version::Http11 => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            Body::Streamed => {}
            Body::Full(b) if !(b.is_empty() && to.method == Method::Head) => {
                out.extend_from_slice(b"content-length: ");
                push_u64(out, b.len() as u64);
                out.extend_from_slice(b"\r\n");
            }
            // A HEAD answer without the body a GET would get (none, or an empty one: a
            // review found `.body(Vec::new())` sent 0): the length the handler gives for it,
            // else none (RFC 9110 §8.6: a server MUST NOT send another length than the GET's,
            // which is not known here; a HEAD answer has no content either way).
            Body::Empty | Body::Full(_) if to.method == Method::Head => {
                if let Some(len) = head_length(resp) {
                    out.extend_from_slice(b"content-length: ");
                    out.extend_from_slice(len);
                    out.extend_from_slice(b"\r\n");
                }
            }
            Body::Empty | Body::Full(_) => out.extend_from_slice(b"content-length: 0\r\n"),
        }
    }
    if !keep_alive {
        out.extend_from_slice(b"connection: close");
    } else if to.version == Version::Http10 {
        out.extend_from_slice(b"connection: keep-alive");
    }
    let mut line = !keep_alive || to.version == Version::Http10;
    if upgrade || options {
        connection_options(resp, upgrade, &mut line, out);
    }
    if line {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if let Body::Full(b) = &resp.body
        && to.method != Method::Head
        && !resp.status.no_content()
        && !tunnel
    {
        out.extend_from_slice(b);
    }
    keep_alive
}

/// The connection options of the handler's `Connection` fields but `close` and `keep-alive`
/// (the runtime decides those), and `upgrade` if an `Upgrade` field went out, appended to the
/// `Connection` line being written (started when `line`, else started here).
#[cold]
fn connection_options(resp: &Response, upgrade: bool, line: &mut bool, out: &mut Vec<u8>) {
    let mut push = |option: &[u8], out: &mut Vec<u8>| {
        out.extend_from_slice(if *line { b", " } else { b"connection: " });
        out.extend_from_slice(option);
        *line = true;
    };
    let mut listed = false;
    let given = resp.headers.iter().filter(|(n, v)| n.eq_ignore_ascii_case("connection") && valid_value(v));
    for option in given.flat_map(|(_, v)| super::head::list(v)) {
        let runtime = option.eq_ignore_ascii_case(b"close") || option.eq_ignore_ascii_case(b"keep-alive");
        if !runtime && valid_name(option) {
            listed |= option.eq_ignore_ascii_case(b"upgrade");
            push(option, out);
        }
    }
    if upgrade && !listed {
        push(b"upgrade", out);
    }
}

/// A 2xx answer to CONNECT: the connection becomes a tunnel after its head (RFC 9112 §6.3).
pub(crate) fn opens_tunnel(method: Method, status: StatusCode) -> bool {
    method == Method::Connect && (200..300).contains(&status.0)
}

/// The shape most responses have: a keep-alive HTTP/1.1 answer with a held body, a content
/// type and no other fields. Its whole head is the same from one response to the next with the
/// same status, content type and body length within a second, so it is kept per thread and
/// copied in one piece.
fn common(resp: &Response, to: Answering) -> bool {
    to.keep_alive
        && to.version == Version::Http11
        && resp.headers.is_empty()
        && (200..=599).contains(&resp.status.0)
        && !resp.status.no_content()
        && resp.content_type.is_some()
}

/// The longest head kept in [`HeadCache`] (a longer one, from a long content type, is encoded
/// each time).
const HEAD_MAX: usize = 224;

/// The cached head of the last common response (see [`common`]). Plain bytes, no `Vec`: a
/// thread-local without a destructor is reached without a lazy-registration check.
#[derive(Clone, Copy)]
struct HeadCache {
    status: u16,
    /// The address of a `'static` content type (the same address is the same text), else 0.
    ctype_static: usize,
    /// Where the content type sits in `bytes`, and its length.
    ctype_at: usize,
    ctype_len: usize,
    secs: u64,
    body_len: usize,
    /// `HTTP/1.1 …\r\nserver: …\r\ndate: …\r\ncontent-type: …\r\ncontent-length: …\r\n\r\n`
    len: usize,
    bytes: [u8; HEAD_MAX],
}

thread_local! {
    /// Only `head_cache` reaches it.
    static HEAD: std::cell::UnsafeCell<HeadCache> = const {
        std::cell::UnsafeCell::new(HeadCache {
            status: 0,
            ctype_static: 0,
            ctype_at: 0,
            ctype_len: 0,
            secs: u64::MAX,
            body_len: 0,
            len: 0,
            bytes: [0; HEAD_MAX],
        })
    }
}

/// This thread's cached head (a `RefCell` would cost a borrow flag at each response).
///
/// # Safety
/// No other reference to the cache may exist while the one returned is used, and it must not
/// outlive the caller's call (its one caller, `append_cached`, keeps it
/// within its call and calls nothing that reaches the cache again).
#[inline(always)]
unsafe fn head_cache<'a>() -> &'a mut HeadCache {
    // (A pointer out of `with`: with the work inside its closure, `with` is not inlined and
    // the thread-local is reached through a function pointer.)
    let h = HEAD.with(std::cell::UnsafeCell::get);
    // SAFETY: `HEAD` has no destructor, so its storage lives as long as this thread (the
    // caller's call ends first); no other reference exists meanwhile (the caller's promise)
    // and no other thread reaches a thread-local.
    unsafe { &mut *h }
}

impl HeadCache {
    /// True if the cached head is `resp`'s (with a body of `body_len` bytes, at `date`).
    #[inline(always)]
    fn holds(&self, resp: &Response, ctype: &[u8], body_len: usize, date: &Date) -> bool {
        self.status == resp.status.0
            && self.body_len == body_len
            && self.secs == date.secs
            && self.ctype_len == ctype.len()
            && match &resp.content_type {
                // A `'static` text at the same address is the same text (no comparison).
                Some(Cow::Borrowed(t)) if self.ctype_static == t.as_ptr() as usize => true,
                _ => self.bytes.get(self.ctype_at..self.ctype_at + self.ctype_len) == Some(ctype),
            }
    }

    /// The cached head.
    #[inline(always)]
    fn head(&self) -> &[u8] {
        &self.bytes[..self.len.min(HEAD_MAX)]
    }

    /// Writes `resp`'s head in place (no allocation); false (the cache left empty) if it does
    /// not fit.
    #[cold]
    #[inline(never)]
    fn fill(&mut self, resp: &Response, ctype: &[u8], body_len: usize, date: &Date) -> bool {
        use std::io::Write;
        let c = resp.status.0;
        let code = [b'0' + (c / 100) as u8, b'0' + (c / 10 % 10) as u8, b'0' + (c % 10) as u8, b' '];
        let mut digits = [0u8; 20];
        // Nothing matches an empty cache (not even a status 0 answered in the same second).
        (self.status, self.secs) = (0, u64::MAX);
        let mut rest = &mut self.bytes[..];
        let head = [
            b"HTTP/1.1 ".as_slice(),
            &code,
            resp.status.reason().as_bytes(),
            b"\r\nserver: pinion\r\ndate: ",
            &date.text,
            b"\r\ncontent-type: ",
        ];
        let fits = head.iter().all(|part| rest.write_all(part).is_ok());
        let ctype_at = HEAD_MAX - rest.len();
        let tail = [ctype, b"\r\ncontent-length: ", u64_text(body_len as u64, &mut digits), b"\r\n\r\n"];
        if !(fits && tail.iter().all(|part| rest.write_all(part).is_ok())) {
            return false;
        }
        self.len = HEAD_MAX - rest.len();
        self.status = c;
        self.secs = date.secs;
        self.body_len = body_len;
        self.ctype_at = ctype_at;
        self.ctype_len = ctype.len();
        self.ctype_static = match &resp.content_type {
            Some(Cow::Borrowed(t)) => t.as_ptr() as usize,
            _ => 0,
        };
        true
    }
}

/// False (nothing written) if the content type is not a valid field value or the head is too
/// long to cache (the general encoder writes it).
#[inline(always)]
fn encode_common(resp: &Response, body: &[u8], method: Method, date: &Date, out: &mut Vec<u8>) -> bool {
    let ctype = resp.content_type.as_deref().unwrap_or("").as_bytes();
    append_cached(resp, ctype, body, method, date, out, true)
}

/// Encodes `resp` if it is a common response (see [`common`]) to a keep-alive HTTP/1.1
/// request and its head is the one cached; false (nothing written) otherwise.
#[inline(always)]
pub(crate) fn encode_cached(resp: &Response, method: Method, date: &Date, out: &mut Vec<u8>) -> bool {
    let (Body::Full(body), Some(ctype)) = (&resp.body, &resp.content_type) else { return false };
    if !resp.headers.is_empty() {
        return false;
    }
    // (A cached head is that of a valid status with a body: `holds` compares the status.)
    append_cached(resp, ctype.as_bytes(), body, method, date, out, false)
}

/// The cached head (made now when `fill` and it is not the one held) and `body` (none for
/// `HEAD`) at the end of `out`; false (nothing written) when the head is not cached.
#[inline(always)]
fn append_cached(
    resp: &Response,
    ctype: &[u8],
    body: &[u8],
    method: Method,
    date: &Date,
    out: &mut Vec<u8>,
    fill: bool,
) -> bool {
    // A HEAD answer with an empty body states no length (see `encode_general`): not the
    // cached `content-length: 0`.
    if body.is_empty() && method == Method::Head {
        return false;
    }
    // SAFETY: the only reference to the cache, used within this call (`fill` and `holds`
    // do not reach the cache but through it).
    let h = unsafe { head_cache() };
    let cached =
        h.holds(resp, ctype, body.len(), date) || fill && valid_value(ctype) && h.fill(resp, ctype, body.len(), date);
    if !cached {
        return false;
    }
    append(out, h.head(), if method == Method::Head { &[] } else { body });
    true
}

/// `head` then `body` at the end of `out`, with one growth check and one length update.
#[inline(always)]
fn append(out: &mut Vec<u8>, head: &[u8], body: &[u8]) {
    let len = out.len();
    out.reserve(head.len() + body.len());
    let spare = out.spare_capacity_mut();
    // SAFETY: `reserve` made room for both after `len` (`spare` is at least that long); the
    // sources are outside `out` (the cache, a response body), `u8` needs no drop and any
    // bytes are valid ones, and `set_len` covers exactly the bytes written.
    unsafe {
        let at = spare.as_mut_ptr().cast::<u8>();
        std::ptr::copy_nonoverlapping(head.as_ptr(), at, head.len());
        std::ptr::copy_nonoverlapping(body.as_ptr(), at.add(head.len()), body.len());
        out.set_len(len + head.len() + body.len());
    }
}

/// One chunk of a streamed body (nothing for an empty chunk: that would end the body).
pub(crate) fn encode_chunk(data: &[u8], chunked: bool, out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    if chunked {
        push_hex(out, data.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

/// The end of a streamed body.
pub(crate) fn encode_last_chunk(chunked: bool, out: &mut Vec<u8>) {
    if chunked {
        out.extend_from_slice(b"0\r\n\r\n");
    }
}

/// The `Content-Length` the handler gave (for a HEAD answer without its body): one decimal
/// length, the same in every such field; `None` if there is none, or another value.
fn head_length(resp: &Response) -> Option<&[u8]> {
    let mut lengths = resp.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-length")).map(|(_, v)| &**v);
    let first = lengths.next()?;
    let valid = !first.is_empty() && first.len() <= 19 && first.iter().all(u8::is_ascii_digit);
    (valid && lengths.all(|v| v == first)).then_some(first)
}

/// A field name: a token (RFC 9110 §5.1).
fn valid_name(n: &[u8]) -> bool {
    !n.is_empty() && n.iter().all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A field value: visible bytes, spaces and tabs; never CR, LF or NUL.
fn valid_value(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || b >= b' ' && b != 0x7f)
}

fn is_framing(name: &str) -> bool {
    ["content-length", "transfer-encoding", "connection", "date", "server"].iter().any(|f| name.eq_ignore_ascii_case(f))
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(u64_text(n, &mut [0u8; 20]));
}

/// `n` in decimal, written at the end of `buf`.
fn u64_text(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

fn push_hex(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b"0123456789abcdef"[(n & 15) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// The `Date` of the responses encoded now: a second of Unix time and its IMF-fixdate.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Date {
    pub(crate) secs: u64,
    pub(crate) text: [u8; 29],
}

thread_local! {
    /// The date of this second and until when it stands, by the clock of [`date_at`]'s callers.
    static DATE: Cell<(Option<Instant>, Date)> = const { Cell::new((None, Date { secs: u64::MAX, text: [0; 29] })) };
}

/// The `Date` of a response encoded at `now` (the caller's reading of the monotonic clock: a
/// shard reads it once per turn), as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), and
/// until when it stands: the rest of its second by the caller's clock, so a wall clock set back
/// or forward shows within that second. The wall clock is read and the date formatted once
/// per second per thread; a caller keeps the date until then (`Outgoing` does).
pub(crate) fn date_at(now: Instant) -> (Option<Instant>, Date) {
    match DATE.get() {
        (Some(until), date) if now < until => (Some(until), date),
        _ => next_date(now),
    }
}

#[cold]
#[inline(never)]
fn next_date(now: Instant) -> (Option<Instant>, Date) {
    let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = wall.as_secs();
    let (_, mut date) = DATE.get();
    if date.secs != secs {
        date = Date { secs, text: imf_fixdate(secs) };
    }
    // The rest of this second, from `now`. (`now` may be a little older than the wall clock's
    // reading: the date is then renewed that much early by the caller's clock, never late.)
    let rest = Duration::from_nanos(u64::from(1_000_000_000 - wall.subsec_nanos()));
    let cached = (now.checked_add(rest), date);
    DATE.set(cached);
    cached
}

fn imf_fixdate(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] =
        [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    let mut out = [0u8; 29];
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    out[3..5].copy_from_slice(b", ");
    two(&mut out[5..7], d);
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(m - 1) as usize]);
    out[11] = b' ';
    two(&mut out[12..14], (y / 100) as u32);
    two(&mut out[14..16], (y % 100) as u32);
    out[16] = b' ';
    two(&mut out[17..19], (rem / 3600) as u32);
    out[19] = b':';
    two(&mut out[20..22], (rem % 3600 / 60) as u32);
    out[22] = b':';
    two(&mut out[23..25], (rem % 60) as u32);
    out[25..29].copy_from_slice(b" GMT");
    out
}

fn two(out: &mut [u8], n: u32) {
    out[0] = b'0' + (n / 10 % 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic Gregorian (H. Hinnant).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date() -> Date {
        date_at(Instant::now()).1
    }

    #[test]
    fn imf_fixdate_matches_known_dates() {
        assert_eq!(&imf_fixdate(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&imf_fixdate(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(&imf_fixdate(1_795_046_399), b"Wed, 18 Nov 2026 23:59:59 GMT");
    }

    #[test]
    fn the_cached_date_is_the_clock_s_second() {
        let secs = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        for _ in 0..3 {
            let (before, (until, date), after) = (secs(), date_at(Instant::now()), secs());
            assert!(before <= date.secs && date.secs <= after, "{before} {} {after}", date.secs);
            assert_eq!(date.text, imf_fixdate(date.secs));
            // It stands for the rest of its second at most.
            assert!(until.is_some_and(|u| u <= Instant::now() + Duration::from_secs(1)));
            std::thread::sleep(Duration::from_millis(600));
        }
        // A second that is not the clock's (as after the clock was set back) is served until
        // the end of the second it was taken in, not after.
        let now = Instant::now();
        let wrong = secs() + 3600;
        DATE.set((Some(now + Duration::from_millis(500)), Date { secs: wrong, text: imf_fixdate(wrong) }));
        assert_eq!(date_at(now).1.secs, wrong);
        let (before, (_, date)) = (secs(), date_at(now + Duration::from_millis(500)));
        assert!(date.secs >= before && date.secs <= secs(), "a date from the wrong second: {}", date.secs);
    }

    #[test]
    fn head_response_has_length_but_no_body() {
        let mut out = Vec::new();
        let to = Answering { method: Method::Head, version: Version::Http11, keep_alive: true };
        assert!(encode(&Response::text("Hello"), to, &date(), &mut out));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("content-length: 5\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }

    #[test]
    fn fields_that_would_split_the_response_are_dropped() {
        let to = Answering { method: Method::Get, version: Version::Http11, keep_alive: true };
        let mut resp = Response::text("ok").header("x-a", "1\r\nx-injected: 1");
        resp.content_type = Some("text/plain\r\nx-injected: 2".into());
        let mut out = Vec::new();
        encode(&resp, to, &date(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("x-injected"), "{text}");
        assert!(text.ends_with("\r\n\r\nok"), "{text}");
        // The cached common head and the general encoder write the same bytes.
        let plain = Response::text("Hello");
        let (mut fast, mut slow) = (Vec::new(), Vec::new());
        encode(&plain, to, &date(), &mut fast);
        encode(&plain, Answering { keep_alive: true, ..to }, &date(), &mut slow);
        assert_eq!(fast, slow);
        let mut general = plain.clone();
        general.headers.push(("x-b".into(), b"2".as_slice().into()));
        let mut g = Vec::new();
        encode(&general, to, &date(), &mut g);
        let g = String::from_utf8(g).unwrap().replace("x-b: 2\r\n", "");
        assert_eq!(g.as_bytes(), &fast[..]);
    }

    #[test]
    fn the_cached_head_follows_length_status_and_content_type() {
        let to = Answering { method: Method::Get, version: Version::Http11, keep_alive: true };
        let date = date();
        let text = |resp: &Response| {
            let mut out = Vec::new();
            encode(resp, to, &date, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert!(text(&Response::text("abc")).ends_with("content-length: 3\r\n\r\nabc"));
        assert!(text(&Response::text("abcd")).ends_with("content-length: 4\r\n\r\nabcd"));
        assert!(text(&Response::text("abcd").with_status(StatusCode::CREATED)).starts_with("HTTP/1.1 201 Created\r\n"));
        let owned = |t: &str| Response::text("x").header("content-type", t.to_owned());
        assert!(text(&owned("text/a")).contains("content-type: text/a\r\n"));
        assert!(text(&owned("text/b")).contains("content-type: text/b\r\n"));
        assert!(text(&Response::text("x")).contains("content-type: text/plain; charset=utf-8\r\n"));
        // Too long to cache: written by the general encoder, the same bytes.
        let long = format!("text/{}", "x".repeat(HEAD_MAX));
        let t = text(&owned(&long));
        assert!(t.contains(&format!("\r\ncontent-type: {long}\r\ncontent-length: 1\r\n\r\nx")), "{t}");
        assert!(t.starts_with("HTTP/1.1 200 OK\r\nserver: pinion\r\ndate: "), "{t}");
        assert!(text(&owned("text/a")).contains("content-type: text/a\r\n"));
    }

    #[test]
    fn framing_fields_set_by_the_caller_are_left_out() {
        let mut out = Vec::new();
        let to = Answering { method: Method::Get, version: Version::Http11, keep_alive: true };
        let resp = Response::text("ab").header("Content-Length", "99").header("x-a", "1");
        encode(&resp, to, &date(), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("99"), "{text}");
        assert!(text.contains("x-a: 1\r\n"), "{text}");
    }
}
