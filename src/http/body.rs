//! Request body framing: a known length, or the chunked coding (RFC 9112 §7.1) with chunk
//! extensions checked against their grammar and ignored, and trailer fields kept, each bounded
//! (the extensions of a body together too, as RFC 9112 §7.1.1 asks: else a small body could
//! carry gigabytes of them). Lines inside the
//! chunked coding must end in CRLF: a lenient parser here is how request smuggling starts.

use super::head::{BodyKind, parse_trailers};
use super::request::Request;
use super::scan::TOKEN;
use super::{HttpError, HttpLimits};

/// Where a body decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyDecoder {
    Length {
        remaining: u64,
    },
    /// Before a chunk-size line; `ext`: bytes of chunk extensions read so far in this body.
    ChunkSize {
        ext: usize,
    },
    /// Inside a chunk's data.
    ChunkData {
        remaining: u64,
        ext: usize,
    },
    /// The CRLF after a chunk's data.
    ChunkEnd {
        ext: usize,
    },
    /// After the last chunk: trailer fields up to an empty line.
    Trailers,
    Done,
}

/// Progress of one `decode` call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// Bytes of the input consumed.
    pub(crate) consumed: usize,
    /// The body is complete.
    pub(crate) done: bool,
}

impl BodyDecoder {
    pub(crate) fn new(kind: BodyKind) -> BodyDecoder {
        match kind {
            BodyKind::None => BodyDecoder::Done,
            BodyKind::Length(n) => BodyDecoder::Length { remaining: n },
            BodyKind::Chunked => BodyDecoder::ChunkSize { ext: 0 },
        }
    }

    /// Consumes what it can of `buf`, appending body bytes to `req`'s body, at most
    /// `max_body` of them (the request's bound: a declared length was checked against it).
    pub(crate) fn decode(
        &mut self,
        buf: &[u8],
        limits: &HttpLimits,
        max_body: u64,
        req: &mut Request,
    ) -> Result<Decoded, HttpError> {
        let mut at = 0;
        loop {
            let rest = &buf[at..];
            match *self {
                BodyDecoder::Done => return Ok(Decoded { consumed: at, done: true }),
                BodyDecoder::Length { remaining } => {
                    let remaining = take_body(rest, remaining, &mut at, req);
                    if remaining > 0 {
                        *self = BodyDecoder::Length { remaining };
                        return Ok(Decoded { consumed: at, done: false });
                    }
                    *self = BodyDecoder::Done;
                }
                BodyDecoder::ChunkSize { ext } => {
                    // The line (extensions included) is bounded like a trailer section, with
                    // the answer `HttpLimits` documents for both: 431.
                    let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
                        if rest.len() > limits.max_trailer_bytes {
                            return Err(HttpError::fatal(431, "chunk-size line too long"));
                        }
                        return Ok(Decoded { consumed: at, done: false });
                    };
                    if lf > limits.max_trailer_bytes {
                        return Err(HttpError::fatal(431, "chunk-size line too long"));
                    }
                    let (size, line_ext) = chunk_size(&rest[..=lf])?;
                    let ext = ext + line_ext;
                    if ext > limits.max_trailer_bytes {
                        return Err(HttpError::fatal(431, "chunk extensions too long"));
                    }
                    let total = req.body().len() as u64 + size;
                    if total > max_body {
                        return Err(HttpError::fatal(413, "body too large"));
                    }
                    at += lf + 1;
                    *self =
                        if size == 0 { BodyDecoder::Trailers } else { BodyDecoder::ChunkData { remaining: size, ext } };
                }
                BodyDecoder::ChunkData { remaining, ext } => {
                    let remaining = take_body(rest, remaining, &mut at, req);
                    if remaining > 0 {
                        *self = BodyDecoder::ChunkData { remaining, ext };
                        return Ok(Decoded { consumed: at, done: false });
                    }
                    *self = BodyDecoder::ChunkEnd { ext };
                }
                BodyDecoder::ChunkEnd { ext } => match rest {
                    [b'\r', b'\n', ..] => {
                        at += 2;
                        *self = BodyDecoder::ChunkSize { ext };
                    }
                    [] | [b'\r'] => return Ok(Decoded { consumed: at, done: false }),
                    _ => return Err(HttpError::bad("chunk data not followed by CRLF")),
                },
                BodyDecoder::Trailers => match parse_trailers(rest, limits, req)? {
                    Some(len) => {
                        at += len;
                        *self = BodyDecoder::Done;
                    }
                    None => return Ok(Decoded { consumed: at, done: false }),
                },
            }
        }
    }
}

/// Moves up to `remaining` body bytes from `rest` into the request; returns what is left.
fn take_body(rest: &[u8], remaining: u64, at: &mut usize, req: &mut Request) -> u64 {
    let take = remaining.min(rest.len() as u64) as usize;
    req.body_mut().extend_from_slice(&rest[..take]);
    *at += take;
    remaining - take as u64
}

/// `chunk-size [ chunk-ext ] CRLF`, given the line up to and including its LF: the size, and
/// how many bytes the extensions took. Leading zeros do not count toward the 15 significant
/// digits allowed (RFC 9112 §7.1 bounds none; 15 keep every size far from overflowing).
fn chunk_size(line: &[u8]) -> Result<(u64, usize), HttpError> {
    let Some(line) = line.strip_suffix(b"\r\n") else {
        return Err(HttpError::bad("chunk-size line not ended by CRLF"));
    };
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(HttpError::bad("invalid chunk size"));
    }
    let zeros = line[..digits].iter().take_while(|&&b| b == b'0').count();
    if digits - zeros > 15 {
        return Err(HttpError::bad("chunk size overflows"));
    }
    let ext = &line[digits..];
    if !chunk_ext(ext) {
        return Err(HttpError::bad("invalid chunk extension"));
    }
    let size = line[zeros..digits].iter().fold(0u64, |n, &d| n << 4 | u64::from(hex(d)));
    Ok((size, ext.len()))
}

/// The value of a hex digit.
fn hex(d: u8) -> u8 {
    match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        _ => d - b'A' + 10,
    }
}

/// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`, a name a
/// token, a value a token or a quoted-string (RFC 9112 §7.1.1). Read strictly: a lenient
/// reading (an unclosed quote, an empty name) is where front ends and back ends part ways.
fn chunk_ext(mut s: &[u8]) -> bool {
    fn bws(s: &[u8]) -> &[u8] {
        let n = s.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
        &s[n..]
    }
    fn token(s: &[u8]) -> Option<&[u8]> {
        let n = s.iter().take_while(|&&b| TOKEN[usize::from(b)]).count();
        (n > 0).then(|| &s[n..])
    }
    fn quoted(s: &[u8]) -> Option<&[u8]> {
        let mut i = 1;
        loop {
            match *s.get(i)? {
                b'"' => return Some(&s[i + 1..]),
                b'\\' => {
                    let &next = s.get(i + 1)?;
                    if !(next == b'\t' || next >= b' ') || next == 0x7f {
                        return None;
                    }
                    i += 2;
                }
                b if b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80 => i += 1,
                _ => return None,
            }
        }
    }
    // (Whitespace only before `;` or `=`: none may end the line.)
    while !s.is_empty() {
        let Some(rest) = bws(s).strip_prefix(b";") else { return false };
        let Some(rest) = token(bws(rest)) else { return false };
        s = rest;
        if let Some(value) = bws(s).strip_prefix(b"=") {
            let value = bws(value);
            let rest = if value.first() == Some(&b'"') { quoted(value) } else { token(value) };
            let Some(rest) = rest else { return false };
            s = rest;
        }
    }
    true
}
