//! The request head: `httparse` reads the syntax, then the server-side rules of RFC 9112/9110
//! decide the framing (`Content-Length`, `Transfer-Encoding`), the `Host` rules, keep-alive and
//! `Expect`. httparse appears in this file only; `scan.rs` reads the common head without
//! it.

use std::mem::MaybeUninit;

use super::request::{Method, Request, Version};
use super::scan::{self, Special, TOKEN, valid_host};
use super::{HttpError, HttpLimits, MAX_HEADERS_LIMIT};

/// How the body of a request is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    None,
    Length(u64),
    Chunked,
}

/// What the head says, beyond what it stored in the [`Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// Bytes the head took in the buffer.
    pub(crate) len: usize,
    pub(crate) body: BodyKind,
    /// The connection may carry another request after this one.
    pub(crate) keep_alive: bool,
    /// The client waits for `100 Continue` before sending the body.
    pub(crate) expect_continue: bool,
    /// The method and version, as in the request: kept here too, so the connection's
    /// [`RequestMeta`](super::conn::RequestMeta) is built from the values the parse has at hand
    /// rather than read back from the request just written.
    pub(crate) method: Method,
    pub(crate) version: Version,
}

/// Parses the head at the start of `buf` into `req`. `Ok(None)`: incomplete, read more. The
/// letters of field names in `buf` may be lower-cased (the request keeps them so).
///
/// A refusal is decided by the first byte that shows it, so the answer is the same however the
/// bytes arrive: httparse sees at most `max_head_bytes`, and no further than the first byte of
/// the request-target over `max_uri_bytes`.
pub(crate) fn parse(buf: &mut [u8], limits: &HttpLimits, req: &mut Request) -> Result<Option<Head>, HttpError> {
    let over_head = buf.len() > limits.max_head_bytes;
    let capped = buf.len().min(limits.max_head_bytes);
    let uri_over = target_overflow(&buf[..capped], limits.max_uri_bytes);
    let input = &mut buf[..uri_over.unwrap_or(capped)];
    let max_headers = limits.max_headers.min(MAX_HEADERS_LIMIT);
    // The common head without httparse (same findings; anything unusual is left to it).
    let (len, known, version, hosts) = match scan::scan(input, max_headers, req) {
        // The scanner stored the target with the head.
        Some(s) => {
            if s.known.is_none() {
                req.set_extension_from_head(s.method_len);
            }
            (s.len, s.known, set_line(req, s.known, s.target, s.minor)?, s.hosts)
        }
        None => match parse_line_any_minor(over_head, input, uri_over, limits, max_headers, req)? {
            Some((len, known, version)) => (len, known, version, None),
            None => return Ok(None),
        },
    };
    let Fields { hosts, length, codings, close, keep_alive_token, expect_continue } = match hosts {
        // No field but `Host` bears on the framing: the scanner saw all there is to see.
        Some((_, false)) => return Err(HttpError::bad("invalid Host")),
        Some((hosts, true)) => Fields { hosts, ..Fields::default() },
        None => read_fields(req, version)?,
    };
    if version == Version::Http11 && hosts == 0 {
        return Err(HttpError::bad("missing Host"));
    }
    if hosts > 1 {
        return Err(HttpError::bad("more than one Host"));
    }
    let body = if codings.seen {
        if version == Version::Http10 {
            return Err(HttpError::bad("Transfer-Encoding in an HTTP/1.0 request"));
        }
        if length.is_some() {
            return Err(HttpError::bad("both Content-Length and Transfer-Encoding"));
        }
        codings.framing()?
    } else {
        // (Its bound is the codec's to check: a handler may set it per request.)
        match length {
            Some(0) | None => BodyKind::None,
            Some(n) => BodyKind::Length(n),
        }
    };
    let method = known.unwrap_or(Method::Extension);
    // A 2xx answer to CONNECT makes the connection a tunnel (RFC 9112 §6.3, RFC 9110 §9.3.6):
    // a proxy in front passes the bytes after it through unread, so none of them may be read
    // as a request. Whether the answer is 2xx is not known while pipelined requests are
    // parsed: nothing is read after a CONNECT, and its answer closes the connection.
    let keep_alive = !close && (version == Version::Http11 || keep_alive_token) && method != Method::Connect;
    let expect_continue = expect_continue && body != BodyKind::None;
    Ok(Some(Head { len, body, keep_alive, expect_continue, method, version }))
}

/// What the fields that bear on the framing say.
#[derive(Default)]
struct Fields {
    hosts: usize,
    length: Option<u64>,
    codings: Codings,
    close: bool,
    keep_alive_token: bool,
    expect_continue: bool,
}

/// Reads the fields that bear on the framing, in order (the first wrong one is the answer).
fn read_fields(req: &Request, version: Version) -> Result<Fields, HttpError> {
    let mut f = Fields::default();
    for (name, value) in req.fields() {
        // The request keeps names lower-case.
        debug_assert!(!name.iter().any(u8::is_ascii_uppercase));
        match scan::special(name) {
            Some(Special::Host) => {
                f.hosts += 1;
                if !valid_host(value) {
                    return Err(HttpError::bad("invalid Host"));
                }
            }
            Some(Special::ContentLength) => {
                // `1*DIGIT`, or a list of identical values (RFC 9110 §8.6); an empty value or
                // member is invalid, not skipped: "5," or a second, empty field is refused.
                for item in value.split(|&b| b == b',') {
                    let n = parse_length(item.trim_ascii())?;
                    if f.length.is_some_and(|l| l != n) {
                        return Err(HttpError::bad("conflicting Content-Length"));
                    }
                    f.length = Some(n);
                }
            }
            Some(Special::TransferEncoding) => {
                f.codings.seen = true;
                for coding in list(value) {
                    f.codings.push(coding)?;
                }
            }
            Some(Special::Connection) => {
                for token in list(value) {
                    f.close |= token.eq_ignore_ascii_case(b"close");
                    f.keep_alive_token |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            Some(Special::Expect) => {
                // A list (RFC 9110 §10.1.1): empty members are ignored (§5.6.1.2), as is a
                // field with none.
                for expectation in list(value) {
                    if !expectation.eq_ignore_ascii_case(b"100-continue") {
                        return Err(HttpError::fatal(417, "unsupported expectation"));
                    }
                    f.expect_continue = version == Version::Http11;
                }
            }
            None => {}
        }
    }

    Ok(f)
}

/// The request line and fields through httparse, into `req`: (head length, method, version),
/// or `None` while incomplete (`over_head`: the bytes read pass the head limit). Not inlined:
/// its 8 KiB of header slots would make every parse probe the stack, the scanner's heads too.
#[inline(never)]
fn parse_line(
    over_head: bool,
    input: &[u8],
    uri_over: Option<usize>,
    limits: &HttpLimits,
    max_headers: usize,
    req: &mut Request,
) -> Result<Option<(usize, Option<Method>, Version)>, HttpError> {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_LIMIT];
    let mut parsed = httparse::Request::new(&mut []);
    let status = parsed.parse_with_uninit_headers(input, &mut storage[..max_headers]);
    let incomplete = || {
        if uri_over.is_some() {
            Err(HttpError::fatal(414, "request-target too long"))
        } else if over_head {
            Err(HttpError::fatal(431, "request head too large"))
        } else {
            Ok(None)
        }
    };
    let len = match status {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return incomplete(),
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::fatal(431, "too many header fields")),
        Err(httparse::Error::Version) => return version_error(input).map_or_else(incomplete, Err),
        // httparse says `Token` of a bad byte in the method or in the target.
        Err(httparse::Error::Token) if method_then_space(input) => {
            return Err(HttpError::bad("invalid request-target"));
        }
        Err(httparse::Error::Token) => return Err(HttpError::bad("invalid method")),
        Err(httparse::Error::HeaderName) if obs_fold(input) => {
            return Err(HttpError::bad("obs-fold (a field line continued on the next) is not accepted"));
        }
        Err(httparse::Error::HeaderName) => return Err(HttpError::bad("invalid header field name")),
        Err(httparse::Error::HeaderValue) => return Err(HttpError::bad("invalid header field value")),
        Err(httparse::Error::NewLine) => return Err(HttpError::bad("invalid line ending")),
        Err(_) => return Err(HttpError::bad("malformed request line")),
    };
    let (Some(method), Some(target), Some(minor)) = (parsed.method, parsed.path, parsed.version) else {
        return Err(HttpError::bad("malformed request line"));
    };
    debug_assert!(len <= limits.max_head_bytes && target.len() <= limits.max_uri_bytes);
    // A fragment is no part of a request-target (RFC 9112 §3.2: an invalid request line is
    // answered 400); httparse takes `#`, the scanner leaves such a head to it.
    if target.contains('#') {
        return Err(HttpError::bad("invalid request-target"));
    }
    let known = Method::from_token(method);
    req.clear();
    let version = set_line(req, known, target, minor)?;
    if known.is_none() {
        req.set_extension(method.as_bytes());
    }
    req.set_target(target);
    for h in parsed.headers.iter() {
        req.push_header(h.name.as_bytes(), h.value);
    }
    Ok(Some((len, known, version)))
}

/// Whether `input` starts with a method token and a space (then a `Token` error of httparse's
/// is the target's).
fn method_then_space(input: &[u8]) -> bool {
    // (httparse passes over empty lines before the request line.)
    let input = &input[input.iter().take_while(|&&b| b == b'\r' || b == b'\n').count()..];
    let n = input.iter().take_while(|&&b| TOKEN[usize::from(b)]).count();
    n > 0 && input.get(n) == Some(&b' ')
}

/// [`parse_line`], with a later minor version of HTTP/1 (`HTTP/1.2` … `HTTP/1.9`) read as
/// HTTP/1.1: RFC 9110 §2.5 (a recipient SHOULD process a message of a higher minor version as
/// of the highest it implements). httparse knows only 1.0 and 1.1, so the digit is rewritten
/// in the read buffer once the line is complete, and the head parsed again.
#[inline(never)]
fn parse_line_any_minor(
    over_head: bool,
    input: &mut [u8],
    uri_over: Option<usize>,
    limits: &HttpLimits,
    max_headers: usize,
    req: &mut Request,
) -> Result<Option<(usize, Option<Method>, Version)>, HttpError> {
    match parse_line(over_head, input, uri_over, limits, max_headers, req) {
        Err(e) if e.status.0 == VERSION_NOT_SUPPORTED => match later_minor(input) {
            Some(at) => {
                input[at] = b'1';
                parse_line(over_head, input, uri_over, limits, max_headers, req)
            }
            None => Err(e),
        },
        other => other,
    }
}

const VERSION_NOT_SUPPORTED: u16 = 505;

/// Where the minor digit of a complete request line's `HTTP/1.x` is, if `x` is 2 to 9.
fn later_minor(input: &[u8]) -> Option<usize> {
    let (start, line, done) = request_line(input);
    let version = version_field(line);
    let later = version.len() == 8 && version.starts_with(b"HTTP/1.") && (b'2'..=b'9').contains(&version[7]);
    (done && later).then(|| start + line.len() - 1)
}

/// The request line at the start of `input` as httparse reads it, empty lines before it
/// skipped (CRLF or a bare LF, as httparse skips them; a lone CR is no empty line): (where it
/// starts, the line without its line ending, whether its LF has arrived).
pub(crate) fn request_line(input: &[u8]) -> (usize, &[u8], bool) {
    let mut start = 0;
    loop {
        match input[start..] {
            [b'\r', b'\n', ..] => start += 2,
            [b'\n', ..] => start += 1,
            _ => break,
        }
    }
    let rest = &input[start..];
    let (line, done) = match rest.iter().position(|&b| b == b'\n') {
        Some(lf) => (&rest[..lf], true),
        None => (rest, false),
    };
    (start, line.strip_suffix(b"\r").unwrap_or(line), done)
}

/// The HTTP-version of a request line (`method SP request-target SP HTTP-version`): the rest
/// of the line after its second space.
fn version_field(line: &[u8]) -> &[u8] {
    line.splitn(3, |&b| b == b' ').nth(2).unwrap_or(b"")
}

/// Records the method (`None`: an extension method, whose token the caller records) and
/// version of the request line (whichever parser read it) once its target passed the form
/// checks.
#[inline(always)]
fn set_line(req: &mut Request, known: Option<Method>, target: &str, minor: u8) -> Result<Version, HttpError> {
    let version = if minor == 0 { Version::Http10 } else { Version::Http11 };
    req.set_line(known.unwrap_or(Method::Extension), version);
    // Origin-form for a method other than CONNECT (most requests) without the call.
    if !(target.starts_with('/') && known != Some(Method::Connect)) {
        check_target(known, target.as_bytes())?;
    }
    Ok(version)
}

/// Where the request-target in `buf` passes `max_uri` bytes: the index of its first byte over
/// the limit, if `buf` reaches it before the target ends. Request-line syntax is httparse's
/// business: it sees the bytes before this index and its errors there come first.
fn target_overflow(buf: &[u8], max_uri: usize) -> Option<usize> {
    if buf.len() <= max_uri {
        return None; // too short to hold a target over the limit
    }
    let line = buf.iter().position(|&b| b != b'\r' && b != b'\n')?;
    let start = line + buf[line..].iter().position(|&b| b == b' ')? + 1;
    let over = start.checked_add(max_uri)?;
    let target = buf.get(start..=over)?;
    (!target.iter().any(|&b| matches!(b, b' ' | b'\r' | b'\n'))).then_some(over)
}

/// httparse refuses any version but 1.0 and 1.1 at its first unexpected byte. A well-formed
/// other version (`HTTP/2.0`, `HTTP/2`) is a 505, anything else a 400; `None` while the line
/// is too short to tell (`HTTP/2` may go on as `HTTP/2.0` or as `HTTP/2x`).
fn version_error(input: &[u8]) -> Option<HttpError> {
    let (_, line, done) = request_line(input);
    let version = version_field(line);
    let prefix = version.len() <= 8
        && version.iter().zip(b"HTTP/0.0").all(|(&b, &p)| if p == b'0' { b.is_ascii_digit() } else { b == p });
    match (done, prefix) {
        (false, true) => None,
        (true, true) if version.len() == 8 || version.len() == 6 => {
            Some(HttpError::fatal(VERSION_NOT_SUPPORTED, "HTTP version not supported"))
        }
        _ => Some(HttpError::bad("malformed request line")),
    }
}

/// RFC 9112 §3.2: origin-form for most methods, absolute-form for any, authority-form only
/// for CONNECT, asterisk-form only for OPTIONS.
#[cold]
#[inline(never)]
fn check_target(method: Option<Method>, target: &[u8]) -> Result<(), HttpError> {
    let ok = match target.first() {
        Some(b'/') => method != Some(Method::Connect),
        Some(b'*') => target.len() == 1 && method == Some(Method::Options),
        // An empty host (`http:///`, `http://:80/`) is invalid and MUST be refused (RFC 9110
        // §4.2.1); userinfo is treated as an error (§4.2.4): `@` is no host byte.
        _ if starts_with_ignore_case(target, b"http://") || starts_with_ignore_case(target, b"https://") => {
            let authority = super::request::authority(target).unwrap_or_default();
            let host = !matches!(authority.first(), None | Some(b':'));
            method != Some(Method::Connect) && host && valid_host(authority)
        }
        // `uri-host ":" port`: a colon after the host (after the brackets of an IP literal),
        // and a port after it: a CONNECT names the port it wants (RFC 9110 §9.3.6: the client
        // MUST send it), so an empty one is refused too (`valid_host` checks it is digits).
        Some(_) => {
            let colon = target.iter().rposition(|&b| b == b':');
            method == Some(Method::Connect)
                && valid_host(target)
                && colon > target.iter().rposition(|&b| b == b']')
                && colon.is_some_and(|c| c + 1 < target.len())
        }
        None => false,
    };
    if !ok {
        return Err(HttpError::bad("invalid request-target"));
    }
    // RFC 9110 §7.4: a request for an `https` resource MUST be refused unless it came over a
    // secured connection (pinion's never are) or from a trusted gateway (which sends
    // origin-form). 421: the client may retry over another connection, so this one closes.
    if starts_with_ignore_case(target, b"https://") {
        return Err(HttpError::fatal(421, "https request over an unsecured connection"));
    }
    Ok(())
}

/// The field line httparse refused for its name starts with a space or a tab: obs-fold (RFC
/// 9112 §5.2). (The reason only: refused either way.) That line is the first after the
/// request line without a `token ":"` start: the lines before it were read; a line after it
/// may not even have arrived, so it must not decide (the answer is the same however the bytes
/// arrive: found by the `serve` fuzz target).
#[cold]
fn obs_fold(head: &[u8]) -> bool {
    let mut lines = head.split(|&b| b == b'\n').skip_while(|l| l.is_empty() || *l == b"\r");
    lines.next(); // the request line
    for line in lines {
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return true;
        }
        let name = line.iter().take_while(|&&b| TOKEN[usize::from(b)]).count();
        if name == 0 || line.get(name) != Some(&b':') {
            return false;
        }
    }
    false
}

fn starts_with_ignore_case(s: &[u8], prefix: &[u8]) -> bool {
    s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `1*DIGIT`; leading zeros do not count toward the 19 significant digits a `u64` holds.
fn parse_length(item: &[u8]) -> Result<u64, HttpError> {
    let zeros = item.iter().take_while(|&&d| d == b'0').count();
    if item.is_empty() || item.len() - zeros > 19 || !item.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::bad("invalid Content-Length"));
    }
    Ok(item[zeros..].iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// Comma-separated list members, trimmed, empty members skipped (RFC 9110 §5.6.1).
pub(super) fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(|s| s.trim_ascii()).filter(|s| !s.is_empty())
}

/// The transfer codings of a request, in order.
#[derive(Default)]
struct Codings {
    seen: bool,
    chunked_last: bool,
    chunked_count: usize,
    other: bool,
}

impl Codings {
    fn push(&mut self, coding: &[u8]) -> Result<(), HttpError> {
        // A coding may carry parameters ("gzip;q=1" is not valid here, but be exact).
        let name = coding.split(|&b| b == b';').next().unwrap_or(coding).trim_ascii();
        if name.eq_ignore_ascii_case(b"chunked") {
            // "The chunked coding does not define any parameters. Their presence SHOULD be
            // treated as an error" (RFC 9112 §7.1): an intermediary that reads `chunked;x=1`
            // as some other coding would frame the body differently.
            if name.len() != coding.len() {
                return Err(HttpError::bad("chunked with parameters"));
            }
            self.chunked_count += 1;
            self.chunked_last = true;
        } else {
            self.other = true;
            self.chunked_last = false;
        }
        Ok(())
    }

    fn framing(&self) -> Result<BodyKind, HttpError> {
        if !self.chunked_last {
            // RFC 9112 §6.3: the length cannot be determined: 400 and close.
            return Err(HttpError::bad("Transfer-Encoding does not end in chunked"));
        }
        if self.chunked_count > 1 {
            return Err(HttpError::bad("chunked applied more than once"));
        }
        if self.other {
            return Err(HttpError::fatal(501, "transfer coding not implemented"));
        }
        Ok(BodyKind::Chunked)
    }
}

/// Parses a trailer section (header fields up to an empty line) at the start of `buf` into
/// `req`'s trailers. `Ok(None)`: incomplete. As for the head, httparse sees no more than the
/// limit, so the answer does not depend on how the bytes arrive.
pub(crate) fn parse_trailers(buf: &[u8], limits: &HttpLimits, req: &mut Request) -> Result<Option<usize>, HttpError> {
    let input = &buf[..buf.len().min(limits.max_trailer_bytes)];
    let mut storage = [httparse::EMPTY_HEADER; 32];
    match httparse::parse_headers(input, &mut storage) {
        Ok(httparse::Status::Complete((len, fields))) => {
            // Still inside the chunked coding: every line ends in CRLF (httparse takes a bare
            // LF, and `0\r\n\n` read as the end of a body is a smuggling vector).
            let section = &input[..len];
            if section.first() == Some(&b'\n') || section.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r') {
                return Err(HttpError::bad("trailer line not ended by CRLF"));
            }
            for f in fields {
                req.push_trailer(f.name.as_bytes(), f.value);
            }
            Ok(Some(len))
        }
        Ok(httparse::Status::Partial) if buf.len() > limits.max_trailer_bytes => {
            Err(HttpError::fatal(431, "trailer section too large"))
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(HttpError::fatal(431, "too many trailer fields")),
        Err(_) => Err(HttpError::bad("malformed trailer section")),
    }
}
