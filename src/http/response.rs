//! [`Response`]: status, header fields, body. `encode.rs` turns it into bytes.

use std::borrow::Cow;
use std::fmt;

/// An HTTP status code.
///
/// Any code of 200..=599 can be sent; the constants name the common ones. A handler's answer
/// is final, so a 1xx there is not sent, nor a number outside 100..=599 (RFC 9110 §15: not
/// valid; 600..=999 are for a library's own use): the client gets 500 and the log a warning.
/// The connection sends `100 Continue` itself, to a request that asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// 100
    pub const CONTINUE: StatusCode = StatusCode(100);
    /// 101
    pub const SWITCHING_PROTOCOLS: StatusCode = StatusCode(101);
    /// 200
    pub const OK: StatusCode = StatusCode(200);
    /// 201
    pub const CREATED: StatusCode = StatusCode(201);
    /// 202
    pub const ACCEPTED: StatusCode = StatusCode(202);
    /// 204
    pub const NO_CONTENT: StatusCode = StatusCode(204);
    /// 206
    pub const PARTIAL_CONTENT: StatusCode = StatusCode(206);
    /// 301
    pub const MOVED_PERMANENTLY: StatusCode = StatusCode(301);
    /// 302
    pub const FOUND: StatusCode = StatusCode(302);
    /// 303
    pub const SEE_OTHER: StatusCode = StatusCode(303);
    /// 304
    pub const NOT_MODIFIED: StatusCode = StatusCode(304);
    /// 307
    pub const TEMPORARY_REDIRECT: StatusCode = StatusCode(307);
    /// 308
    pub const PERMANENT_REDIRECT: StatusCode = StatusCode(308);
    /// 400
    pub const BAD_REQUEST: StatusCode = StatusCode(400);
    /// 401
    pub const UNAUTHORIZED: StatusCode = StatusCode(401);
    /// 403
    pub const FORBIDDEN: StatusCode = StatusCode(403);
    /// 404
    pub const NOT_FOUND: StatusCode = StatusCode(404);
    /// 405
    pub const METHOD_NOT_ALLOWED: StatusCode = StatusCode(405);
    /// 406
    pub const NOT_ACCEPTABLE: StatusCode = StatusCode(406);
    /// 408
    pub const REQUEST_TIMEOUT: StatusCode = StatusCode(408);
    /// 409
    pub const CONFLICT: StatusCode = StatusCode(409);
    /// 410
    pub const GONE: StatusCode = StatusCode(410);
    /// 411
    pub const LENGTH_REQUIRED: StatusCode = StatusCode(411);
    /// 412
    pub const PRECONDITION_FAILED: StatusCode = StatusCode(412);
    /// 413
    pub const CONTENT_TOO_LARGE: StatusCode = StatusCode(413);
    /// 414
    pub const URI_TOO_LONG: StatusCode = StatusCode(414);
    /// 415
    pub const UNSUPPORTED_MEDIA_TYPE: StatusCode = StatusCode(415);
    /// 416
    pub const RANGE_NOT_SATISFIABLE: StatusCode = StatusCode(416);
    /// 417
    pub const EXPECTATION_FAILED: StatusCode = StatusCode(417);
    /// 421
    pub const MISDIRECTED_REQUEST: StatusCode = StatusCode(421);
    /// 422
    pub const UNPROCESSABLE_CONTENT: StatusCode = StatusCode(422);
    /// 429
    pub const TOO_MANY_REQUESTS: StatusCode = StatusCode(429);
    /// 431
    pub const REQUEST_HEADER_FIELDS_TOO_LARGE: StatusCode = StatusCode(431);
    /// 500
    pub const INTERNAL_SERVER_ERROR: StatusCode = StatusCode(500);
    /// 501
    pub const NOT_IMPLEMENTED: StatusCode = StatusCode(501);
    /// 502
    pub const BAD_GATEWAY: StatusCode = StatusCode(502);
    /// 503
    pub const SERVICE_UNAVAILABLE: StatusCode = StatusCode(503);
    /// 504
    pub const GATEWAY_TIMEOUT: StatusCode = StatusCode(504);
    /// 505
    pub const HTTP_VERSION_NOT_SUPPORTED: StatusCode = StatusCode(505);
    /// Every named code above, in order (each has its reason phrase).
    pub const NAMED: [StatusCode; 39] = [
        StatusCode::CONTINUE,
        StatusCode::SWITCHING_PROTOCOLS,
        StatusCode::OK,
        StatusCode::CREATED,
        StatusCode::ACCEPTED,
        StatusCode::NO_CONTENT,
        StatusCode::PARTIAL_CONTENT,
        StatusCode::MOVED_PERMANENTLY,
        StatusCode::FOUND,
        StatusCode::SEE_OTHER,
        StatusCode::NOT_MODIFIED,
        StatusCode::TEMPORARY_REDIRECT,
        StatusCode::PERMANENT_REDIRECT,
        StatusCode::BAD_REQUEST,
        StatusCode::UNAUTHORIZED,
        StatusCode::FORBIDDEN,
        StatusCode::NOT_FOUND,
        StatusCode::METHOD_NOT_ALLOWED,
        StatusCode::NOT_ACCEPTABLE,
        StatusCode::REQUEST_TIMEOUT,
        StatusCode::CONFLICT,
        StatusCode::GONE,
        StatusCode::LENGTH_REQUIRED,
        StatusCode::PRECONDITION_FAILED,
        StatusCode::CONTENT_TOO_LARGE,
        StatusCode::URI_TOO_LONG,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        StatusCode::RANGE_NOT_SATISFIABLE,
        StatusCode::EXPECTATION_FAILED,
        StatusCode::MISDIRECTED_REQUEST,
        StatusCode::UNPROCESSABLE_CONTENT,
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::NOT_IMPLEMENTED,
        StatusCode::BAD_GATEWAY,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::GATEWAY_TIMEOUT,
        StatusCode::HTTP_VERSION_NOT_SUPPORTED,
    ];

    /// The standard reason phrase (empty for codes without one).
    pub const fn reason(self) -> &'static str {
        match self.0 {
            100 => "Continue",
            101 => "Switching Protocols",
            200 => "OK",
            201 => "Created",
            202 => "Accepted",
            204 => "No Content",
            205 => "Reset Content",
            206 => "Partial Content",
            301 => "Moved Permanently",
            302 => "Found",
            303 => "See Other",
            304 => "Not Modified",
            307 => "Temporary Redirect",
            308 => "Permanent Redirect",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            406 => "Not Acceptable",
            408 => "Request Timeout",
            409 => "Conflict",
            410 => "Gone",
            411 => "Length Required",
            412 => "Precondition Failed",
            413 => "Content Too Large",
            414 => "URI Too Long",
            415 => "Unsupported Media Type",
            416 => "Range Not Satisfiable",
            417 => "Expectation Failed",
            421 => "Misdirected Request",
            422 => "Unprocessable Content",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            505 => "HTTP Version Not Supported",
            _ => "",
        }
    }

    /// True for statuses that never carry a body (1xx, 204, 304).
    pub const fn bodiless(self) -> bool {
        self.0 < 200 || self.0 == 204 || self.0 == 304
    }

    /// True for statuses whose response has no content: the [`bodiless`](Self::bodiless)
    /// ones, and 205 (Reset Content), which is framed (`Content-Length: 0`) but whose content
    /// a server MUST NOT generate (RFC 9110 §15.3.6): a body given with it is not sent.
    pub(crate) const fn no_content(self) -> bool {
        self.bodiless() || self.0 == 205
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.reason())
    }
}

/// A response body.
#[derive(Clone, Default)]
pub enum Body {
    /// No body (`Content-Length: 0` where a length is due; to HEAD, the response's own
    /// `Content-Length` field if it has a valid one — the length a GET would get —, else
    /// none: RFC 9110 §8.6 forbids any other length than GET's).
    #[default]
    Empty,
    /// Bytes known up front: sent with `Content-Length` (not sent to HEAD, nor with a status
    /// that has no content: 1xx, 204, 304 go without framing, 205 with `Content-Length: 0`).
    Full(Cow<'static, [u8]>),
    /// A body streamed in chunks after the head (`Transfer-Encoding: chunked`); the chunks
    /// come through `web::ResponseStream`.
    Streamed,
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Body::Empty => f.write_str("Empty"),
            Body::Full(b) => write!(f, "Full({} bytes)", b.len()),
            Body::Streamed => f.write_str("Streamed"),
        }
    }
}

/// An HTTP response: status, header fields, body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The `Content-Type` (kept apart from `headers` so the common responses allocate nothing).
    pub content_type: Option<Cow<'static, str>>,
    /// Header fields, in order. `Content-Length`, `Transfer-Encoding` and `Date` are the
    /// connection's to write and are left out if set here (but for a HEAD answer without a
    /// body: a valid `Content-Length` here, the length a GET would get, is sent; without one
    /// none is, RFC 9110 §8.6); so is `Connection`, but a
    /// `Connection: close` here closes the connection after this response (and says so), and
    /// its options other than `close` and `keep-alive` are sent in the runtime's `Connection`,
    /// with `upgrade` whenever an `Upgrade` is sent (RFC 9110 §7.8: a sender of `Upgrade` MUST
    /// send it). A
    /// `Server` here is sent in place of `server: pinion`. A `Content-Type` here is sent only
    /// while [`content_type`](Self::content_type) is `None` (that field is one value, and
    /// `content_type` holds it).
    pub headers: Vec<(Cow<'static, str>, Cow<'static, [u8]>)>,
    /// The body.
    pub body: Body,
}

/// The content type of [`Response::text`]: a Rust `str` is UTF-8, and says so.
const TEXT_PLAIN_UTF8: &str = "text/plain; charset=utf-8";

impl Response {
    /// A response with `status`, no fields, no body.
    pub fn new(status: StatusCode) -> Response {
        Response { status, content_type: None, headers: Vec::new(), body: Body::Empty }
    }

    /// 200 with a `text/plain; charset=utf-8` body. A `str` is UTF-8, and `text/plain`
    /// without a charset is US-ASCII (RFC 2046 §4.1.2, kept by RFC 6657): a browser shows
    /// `héllo` as `hÃ©llo` or in its own guess. Set [`content_type`](Self::content_type) for
    /// another label (`text/plain` alone: an answer byte for byte as a peer's).
    pub fn text(body: impl Into<Cow<'static, str>>) -> Response {
        let body = cow_bytes(body.into());
        Response {
            status: StatusCode::OK,
            content_type: Some(Cow::Borrowed(TEXT_PLAIN_UTF8)),
            headers: Vec::new(),
            body: Body::Full(body),
        }
    }

    /// 200 with an `application/json` body (already encoded).
    pub fn json(body: impl Into<Vec<u8>>) -> Response {
        Response { content_type: Some(Cow::Borrowed("application/json")), ..Response::new(StatusCode::OK) }
            .body(body.into())
    }

    /// A status with its reason phrase as a `text/plain; charset=utf-8` body (none for 1xx,
    /// 204, 205 and 304).
    pub fn status(status: StatusCode) -> Response {
        if status.no_content() {
            // (No content for 1xx, 204, 205 and 304: nor a type for it.)
            return Response::new(status);
        }
        Response::text(status.reason()).with_status(status)
    }

    /// Sets the status (builder style).
    pub fn with_status(mut self, status: StatusCode) -> Response {
        self.status = status;
        self
    }

    /// The handler asks that the connection close after this response (`Connection: close`).
    pub(crate) fn asks_close(&self) -> bool {
        self.headers.iter().any(|(n, v)| {
            n.eq_ignore_ascii_case("connection") && super::head::list(v).any(|t| t.eq_ignore_ascii_case(b"close"))
        })
    }

    /// Adds a header field (builder style). `Content-Type` sets [`content_type`](Self::content_type).
    ///
    /// A field whose name is not a token, or whose value holds CR, LF or another control
    /// byte but tab, is left out when the response is written, with a warning in the log (a
    /// value from user input could otherwise split the response); the rest of the response
    /// goes out. Check values from outside before, where the answer should say so. The fields
    /// the runtime writes itself are left out of yours: `Content-Length` (but for a HEAD answer
    /// without a body, where yours says what a GET would get), `Transfer-Encoding`,
    /// `Connection` (a `close` in yours is honoured, its other options but `keep-alive` are
    /// sent in the runtime's, and `upgrade` is added when you send `Upgrade`), `Date`, `Server`
    /// (yours is sent in place of pinion's).
    pub fn header(mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Cow<'static, str>>) -> Response {
        let name = name.into();
        if name.eq_ignore_ascii_case("content-type") {
            self.content_type = Some(value.into());
            return self;
        }
        self.headers.push((name, cow_bytes(value.into())));
        self
    }

    /// Sets the header field `name` (any case) to `value` in place, replacing every field of
    /// that name (a hook's way to set a field once: [`header`](Self::header) adds another).
    /// `Content-Type` sets [`content_type`](Self::content_type).
    pub fn set_header(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Cow<'static, str>>) {
        let name = name.into();
        if name.eq_ignore_ascii_case("content-type") {
            self.content_type = Some(value.into());
            return;
        }
        self.remove_header(&name);
        self.headers.push((name, cow_bytes(value.into())));
    }

    /// Removes every header field named `name` (any case; `Content-Type` clears
    /// [`content_type`](Self::content_type)); true if there was one.
    pub fn remove_header(&mut self, name: &str) -> bool {
        if name.eq_ignore_ascii_case("content-type") && self.content_type.take().is_some() {
            return true;
        }
        let before = self.headers.len();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.len() != before
    }

    /// Sets the body (builder style).
    pub fn body(mut self, body: impl Into<Cow<'static, [u8]>>) -> Response {
        self.body = Body::Full(body.into());
        self
    }

    /// The value of the first header field named `name` (any case).
    pub fn header_value(&self, name: &str) -> Option<&[u8]> {
        if name.eq_ignore_ascii_case("content-type")
            && let Some(t) = &self.content_type
        {
            return Some(t.as_bytes());
        }
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_ref())
    }

    /// Takes the response out, leaving an empty one (owning nothing) in its place.
    pub(crate) fn take(&mut self) -> Response {
        std::mem::replace(self, Response::new(StatusCode::OK))
    }

    /// Drops it, in a few instructions when it owns nothing (a `'static` body and content
    /// type, no fields: the common response).
    #[inline]
    pub(crate) fn discard(self) {
        let owns = self.headers.capacity() != 0
            || matches!(self.content_type, Some(Cow::Owned(_)))
            || matches!(self.body, Body::Full(Cow::Owned(_)));
        if owns {
            drop(self);
        } else {
            // Nothing to free: the fields hold no allocation.
            std::mem::forget(self);
        }
    }

    /// The response as an answer no stream follows: a `Body::Streamed` one gets an empty body
    /// (as [`WebRequest::respond`](crate::web::WebRequest::respond) sends it), not a chunked
    /// head whose body never comes.
    pub(crate) fn held(mut self) -> Response {
        if matches!(self.body, Body::Streamed) {
            self.body = Body::Empty;
        }
        self
    }

    /// The body bytes, if held (not streamed).
    pub fn body_bytes(&self) -> &[u8] {
        match &self.body {
            Body::Full(b) => b,
            _ => &[],
        }
    }
}

/// Text as bytes, borrowed or owned as it came.
pub(crate) fn cow_bytes(s: Cow<'static, str>) -> Cow<'static, [u8]> {
    match s {
        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::StatusCode;

    #[test]
    fn every_named_status_has_its_reason_and_they_are_in_order() {
        for w in StatusCode::NAMED.windows(2) {
            assert!(w[0] < w[1], "{w:?}");
        }
        for s in StatusCode::NAMED {
            assert!(!s.reason().is_empty(), "{s:?}");
        }
        assert_eq!(StatusCode::NOT_MODIFIED.reason(), "Not Modified");
        assert_eq!(StatusCode::PRECONDITION_FAILED.reason(), "Precondition Failed");
    }
}
