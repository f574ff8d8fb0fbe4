//! Request body framing: a known length, or the chunked coding (RFC 9112 §7.1) with chunk
//! extensions accepted and ignored and trailer fields kept, each bounded. Lines inside the
//! chunked coding must end in CRLF: a lenient parser here is how request smuggling starts.

use super::head::{BodyKind, parse_trailers};
use super::request::Request;
use super::{HttpError, HttpLimits};

/// Where a body decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyDecoder {
    Length {
        remaining: u64,
    },
    /// Before a chunk-size line.
    ChunkSize,
    /// Inside a chunk's data.
    ChunkData {
        remaining: u64,
    },
    /// The CRLF after a chunk's data.
    ChunkEnd,
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
            BodyKind::Chunked => BodyDecoder::ChunkSize,
        }
    }

    /// Consumes what it can of `buf`, appending body bytes to `req`'s body.
    pub(crate) fn decode(&mut self, buf: &[u8], limits: &HttpLimits, req: &mut Request) -> Result<Decoded, HttpError> {
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
                BodyDecoder::ChunkSize => {
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
                    let size = chunk_size(&rest[..=lf])?;
                    let total = req.body().len() as u64 + size;
                    if total > limits.max_body_bytes as u64 {
                        return Err(HttpError::fatal(413, "body too large"));
                    }
                    at += lf + 1;
                    *self = if size == 0 { BodyDecoder::Trailers } else { BodyDecoder::ChunkData { remaining: size } };
                }
                BodyDecoder::ChunkData { remaining } => {
                    let remaining = take_body(rest, remaining, &mut at, req);
                    if remaining > 0 {
                        *self = BodyDecoder::ChunkData { remaining };
                        return Ok(Decoded { consumed: at, done: false });
                    }
                    *self = BodyDecoder::ChunkEnd;
                }
                BodyDecoder::ChunkEnd => match rest {
                    [b'\r', b'\n', ..] => {
                        at += 2;
                        *self = BodyDecoder::ChunkSize;
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

/// `chunk-size [ BWS ; chunk-ext ] CRLF`, given the line up to and including its LF.
fn chunk_size(line: &[u8]) -> Result<u64, HttpError> {
    let Some(line) = line.strip_suffix(b"\r\n") else {
        return Err(HttpError::bad("chunk-size line not ended by CRLF"));
    };
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(HttpError::bad("invalid chunk size"));
    }
    if digits > 15 {
        return Err(HttpError::bad("chunk size overflows"));
    }
    let ext = &line[digits..];
    if !ext.is_empty() {
        // Optional whitespace, then `;` and extensions: visible ASCII, spaces and tabs only.
        let start = ext.trim_ascii_start();
        if !start.starts_with(b";") || !ext.iter().all(|&b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80) {
            return Err(HttpError::bad("invalid chunk extension"));
        }
    }
    let hex = std::str::from_utf8(&line[..digits]).map_err(|_| HttpError::bad("invalid chunk size"))?;
    u64::from_str_radix(hex, 16).map_err(|_| HttpError::bad("invalid chunk size"))
}
