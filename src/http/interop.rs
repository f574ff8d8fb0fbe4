//! Conversions between pinion's [`Request`]/[`Response`] and the `http` crate's
//! `http::Request<Vec<u8>>`/`http::Response<Vec<u8>>` (feature `interop`), for handing a
//! request to code written against `http` (a tower service, a library's handler) and taking
//! its answer back. The types are re-exported from [`crate::http`].
//!
//! | from | to | |
//! |---|---|---|
//! | `http::Request<Vec<u8>>` | [`Request`] | `TryFrom`: fails on a version other than HTTP/1.0 and 1.1 (an extension method becomes [`Method::Extension`] with its token) |
//! | [`Request`], `&Request` | `http::Request<Vec<u8>>` | `TryFrom`: fails on a target, field name or field value `http` refuses, or more distinct field names than a `HeaderMap` holds |
//! | `http::Response<Vec<u8>>` | [`Response`] | `From`: always (a 1xx is then answered 500 on the wire: see Statuses) |
//! | [`Response`] | `http::Response<Vec<u8>>` | `TryFrom`: fails on a streamed body, a status outside 100..=999, a field `http` refuses, too many distinct field names |
//!
//! What is kept, and how:
//!
//! - **Fields** are copied as they are, framing fields (`Content-Length`,
//!   `Transfer-Encoding`) included: a pinion request keeps the fields it was sent with, even
//!   though its body is already de-chunked, as hyper's requests do. A field that appears
//!   several times keeps all its values in order. `http::HeaderMap` groups a field's values
//!   together, so fields with *different* names may come back in another order (only the
//!   order of one name's values means anything, RFC 9110 §5.3).
//! - **Trailer fields** of a chunked request travel in the `http` request's extensions as
//!   [`HttpTrailers`], and come back from there.
//! - **The request-target** keeps its form: origin (`/a?b`), absolute (`http://host/a`),
//!   authority (`host:443`, CONNECT) or asterisk (`*`, OPTIONS), as `http::Uri` writes it
//!   back: an absolute-form target with an empty path gains its `/`, the scheme is
//!   lower-cased, a fragment is dropped (a server never receives one: pinion answers it 400).
//!   So `OPTIONS http://host`, a question about the server
//!   ([`Request::is_server_wide`]), comes back as one about `/`: a bridge answers it before
//!   converting, or converts `OPTIONS *` in its place.
//! - **Targets `http::Uri` refuses.** pinion's connection accepts any visible ASCII in a
//!   target, as httparse does; `http::Uri` refuses some of it (`"`, `<`, `>` among others),
//!   so converting a request that arrived with one fails with
//!   [`InteropError::InvalidTarget`]. A bridge should answer that 400, as hyper would have
//!   answered the request.
//! - **`Content-Type`** is one value (RFC 9110 §8.3), kept apart in
//!   [`Response::content_type`]: of several in an `http::Response`, the last is kept. Every
//!   other field keeps all its values.
//! - **Statuses** convert as numbers (`http` takes 100..=999); what the connection then
//!   sends is its own rule: a 1xx as a final response, or a status outside 100..=599 (not
//!   valid on the wire, RFC 9110 §15), is not sent and the client gets 500, with a warning in
//!   the log. Informational responses
//!   (`100 Continue`) are the connection's to send.
//! - **The client's address** ([`Request::peer_addr`]) travels in the extensions as
//!   [`HttpPeerAddr`], and comes back from there. (axum's `ConnectInfo` is its own type: a
//!   bridge to axum inserts it from the pinion request, or reads `HttpPeerAddr`.)
//! - **Path parameters** recorded by the router are not carried (they are derived from the
//!   path), nor are other `http` extensions, nor a response's version.

use std::borrow::Cow;
use std::fmt;
use std::net::SocketAddr;

use super::request::{Method, Request, Version};
use super::response::{Body, Response, StatusCode};

/// Why a value could not be converted between pinion's HTTP types and the `http` crate's
/// (feature `interop`).
///
/// The conversions: `Request::try_from(http::Request<Vec<u8>>)` (a version other than
/// HTTP/1.0 and 1.1 fails; an extension method is kept as [`Method::Extension`] and its
/// token); `http::Request::<Vec<u8>>::try_from(Request)`
/// or `(&Request)` (a target, field name or field value `http` refuses fails; trailer fields
/// go in the extensions as [`HttpTrailers`], the client's address as [`HttpPeerAddr`]);
/// `Response::from(http::Response<Vec<u8>>)`;
/// `http::Response::<Vec<u8>>::try_from(Response)` (a streamed body, a status outside
/// 100..=999 or a field `http` refuses fails). Fields keep every value of a repeated name, in
/// order; path parameters and other extensions are not carried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InteropError {
    /// A method a bare method conversion cannot carry: an `http` extension method (`PROPFIND`)
    /// to a [`Method`], or [`Method::Extension`] (`"extension method"`) to an `http::Method`:
    /// the token is the request's ([`Request::method_token`]), so whole requests convert.
    UnsupportedMethod(String),
    /// A protocol version pinion's requests cannot carry (HTTP/0.9, HTTP/2, HTTP/3).
    UnsupportedVersion(http::Version),
    /// A streamed response body: its chunks go to the connection through a
    /// `web::ResponseStream`, there are no bytes to put in a `Vec<u8>`.
    StreamedBody,
    /// A request-target the `http` crate's `Uri` refuses. pinion's connection accepts any
    /// visible ASCII in a target (as httparse does), `Uri` not all of it (`"`, `<`, `>`):
    /// a request that arrived with such a target fails here; answer it 400.
    InvalidTarget(String),
    /// A field name the `http` crate refuses (not a token).
    InvalidHeaderName(String),
    /// A field value the `http` crate refuses (a control character); holds the field's name.
    InvalidHeaderValue(String),
    /// A status code outside 100..=999.
    InvalidStatus(u16),
    /// More distinct field names than an `http::HeaderMap` holds (24 576: its `MAX_SIZE` of
    /// 2^15 slots, filled to 3/4). A server's requests never get there (`max_headers` is at
    /// most 256); a request or response built by hand may.
    TooManyFields,
}

impl fmt::Display for InteropError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InteropError::UnsupportedMethod(m) => {
                write!(f, "method {m:?} has no token of its own on one side (convert the whole request)")
            }
            InteropError::UnsupportedVersion(v) => write!(f, "{v:?} is not HTTP/1.0 or HTTP/1.1"),
            InteropError::StreamedBody => f.write_str("a streamed body cannot be held in a Vec<u8>"),
            InteropError::InvalidTarget(t) => write!(f, "request-target {t:?} is not a valid URI"),
            InteropError::InvalidHeaderName(n) => write!(f, "invalid field name {n:?}"),
            InteropError::InvalidHeaderValue(n) => write!(f, "invalid value of field {n:?}"),
            InteropError::InvalidStatus(s) => write!(f, "status {s} is outside 100..=999"),
            InteropError::TooManyFields => f.write_str("more distinct field names than an http::HeaderMap holds"),
        }
    }
}

impl std::error::Error for InteropError {}

/// The trailer fields of a chunked request, in the extensions of an `http::Request` converted
/// from a pinion [`Request`] (absent when there were none). Put there, they become the
/// trailers of a pinion request converted back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HttpTrailers(pub http::HeaderMap);

/// The client's address ([`Request::peer_addr`]), in the extensions of an `http::Request`
/// converted from a pinion [`Request`] that has one (a request read by a server always has).
/// Put there, it becomes the peer address of a pinion request converted back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpPeerAddr(pub SocketAddr);

impl TryFrom<Method> for http::Method {
    type Error = InteropError;
    /// A method pinion knows by name; [`Method::Extension`] names no token (a request's is
    /// [`Request::method_token`]: a whole request converts).
    fn try_from(m: Method) -> Result<Self, InteropError> {
        Ok(match m {
            Method::Get => http::Method::GET,
            Method::Head => http::Method::HEAD,
            Method::Post => http::Method::POST,
            Method::Put => http::Method::PUT,
            Method::Patch => http::Method::PATCH,
            Method::Delete => http::Method::DELETE,
            Method::Options => http::Method::OPTIONS,
            Method::Trace => http::Method::TRACE,
            Method::Connect => http::Method::CONNECT,
            Method::Extension => return Err(InteropError::UnsupportedMethod(m.to_string())),
        })
    }
}

impl TryFrom<&http::Method> for Method {
    type Error = InteropError;
    /// A method pinion knows by name; an extension method fails (a whole request converts,
    /// keeping its token).
    fn try_from(m: &http::Method) -> Result<Self, InteropError> {
        Method::from_token(m.as_str()).ok_or_else(|| InteropError::UnsupportedMethod(m.as_str().to_owned()))
    }
}

impl TryFrom<http::Method> for Method {
    type Error = InteropError;
    fn try_from(m: http::Method) -> Result<Self, InteropError> {
        Method::try_from(&m)
    }
}

impl From<Version> for http::Version {
    fn from(v: Version) -> Self {
        match v {
            Version::Http10 => http::Version::HTTP_10,
            Version::Http11 => http::Version::HTTP_11,
        }
    }
}

impl TryFrom<http::Version> for Version {
    type Error = InteropError;
    fn try_from(v: http::Version) -> Result<Self, InteropError> {
        match v {
            http::Version::HTTP_10 => Ok(Version::Http10),
            http::Version::HTTP_11 => Ok(Version::Http11),
            other => Err(InteropError::UnsupportedVersion(other)),
        }
    }
}

impl TryFrom<StatusCode> for http::StatusCode {
    type Error = InteropError;
    fn try_from(s: StatusCode) -> Result<Self, InteropError> {
        http::StatusCode::from_u16(s.0).map_err(|_| InteropError::InvalidStatus(s.0))
    }
}

impl From<http::StatusCode> for StatusCode {
    fn from(s: http::StatusCode) -> Self {
        StatusCode(s.as_u16())
    }
}

fn header_map<'a>(fields: impl Iterator<Item = (&'a str, &'a [u8])>) -> Result<http::HeaderMap, InteropError> {
    let mut map = http::HeaderMap::new();
    for (name, value) in fields {
        let n = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| InteropError::InvalidHeaderName(name.to_owned()))?;
        let v = http::HeaderValue::from_bytes(value).map_err(|_| InteropError::InvalidHeaderValue(name.to_owned()))?;
        // `append` panics past the map's size limit; a conversion refuses instead.
        map.try_append(n, v).map_err(|_| InteropError::TooManyFields)?;
    }
    Ok(map)
}

/// The head of `req` with `body`.
fn to_http(req: &Request, body: Vec<u8>) -> Result<http::Request<Vec<u8>>, InteropError> {
    let uri = http::Uri::try_from(req.target()).map_err(|_| InteropError::InvalidTarget(req.target().to_owned()))?;
    let mut out = http::Request::new(body);
    let token = req.method_token();
    *out.method_mut() =
        http::Method::from_bytes(token.as_bytes()).map_err(|_| InteropError::UnsupportedMethod(token.to_owned()))?;
    *out.uri_mut() = uri;
    *out.version_mut() = req.version().into();
    *out.headers_mut() = header_map(req.headers().iter())?;
    if !req.trailers().is_empty() {
        out.extensions_mut().insert(HttpTrailers(header_map(req.trailers().iter())?));
    }
    if let Some(peer) = req.peer_addr() {
        out.extensions_mut().insert(HttpPeerAddr(peer));
    }
    Ok(out)
}

impl TryFrom<&Request> for http::Request<Vec<u8>> {
    type Error = InteropError;
    /// Copies the request (body included).
    fn try_from(req: &Request) -> Result<Self, InteropError> {
        to_http(req, req.body().to_vec())
    }
}

impl TryFrom<Request> for http::Request<Vec<u8>> {
    type Error = InteropError;
    /// Moves the body; copies the rest.
    fn try_from(mut req: Request) -> Result<Self, InteropError> {
        let body = req.take_body();
        to_http(&req, body)
    }
}

impl TryFrom<http::Request<Vec<u8>>> for Request {
    type Error = InteropError;
    fn try_from(req: http::Request<Vec<u8>>) -> Result<Self, InteropError> {
        let (parts, body) = req.into_parts();
        let version = Version::try_from(parts.version)?;
        let token = parts.method.as_str();
        if Method::of_token(token.as_bytes()).is_none() {
            return Err(InteropError::UnsupportedMethod(token.to_owned()));
        }
        // `Uri`'s Display gives back the form it was parsed from (origin, absolute,
        // authority or `*`).
        let mut out = Request::new(Method::Get, &parts.uri.to_string()).with_body(body).with_method_token(token);
        out.set_line(out.method(), version);
        for (name, value) in &parts.headers {
            out.push_header(name.as_str().as_bytes(), value.as_bytes());
        }
        if let Some(HttpTrailers(trailers)) = parts.extensions.get::<HttpTrailers>() {
            for (name, value) in trailers {
                out.push_trailer(name.as_str().as_bytes(), value.as_bytes());
            }
        }
        if let Some(HttpPeerAddr(peer)) = parts.extensions.get::<HttpPeerAddr>() {
            out = out.with_peer_addr(*peer);
        }
        Ok(out)
    }
}

impl From<http::Response<Vec<u8>>> for Response {
    fn from(resp: http::Response<Vec<u8>>) -> Self {
        let (parts, body) = resp.into_parts();
        let mut out = Response::new(parts.status.into());
        for (name, value) in &parts.headers {
            // Through `header` where the value is text, so `Content-Type` lands where
            // `Response` keeps it.
            match value.to_str() {
                Ok(text) => out = out.header(name.as_str().to_owned(), text.to_owned()),
                Err(_) => {
                    out.headers.push((Cow::Owned(name.as_str().to_owned()), Cow::Owned(value.as_bytes().to_vec())))
                }
            }
        }
        out.body = if body.is_empty() { Body::Empty } else { Body::Full(Cow::Owned(body)) };
        out
    }
}

impl TryFrom<Response> for http::Response<Vec<u8>> {
    type Error = InteropError;
    fn try_from(mut resp: Response) -> Result<Self, InteropError> {
        let body = match std::mem::take(&mut resp.body) {
            Body::Empty => Vec::new(),
            Body::Full(b) => b.into_owned(),
            Body::Streamed => return Err(InteropError::StreamedBody),
        };
        let status = http::StatusCode::try_from(resp.status)?;
        // `Content-Type` first, as `header_value` finds it (wherever `Response` keeps it), then
        // every other field.
        let content_type = resp.header_value("content-type").map(|v| ("content-type", v));
        let others = resp.headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("content-type"));
        let headers = header_map(content_type.into_iter().chain(others.map(|(n, v)| (n.as_ref(), v.as_ref()))))?;
        let mut out = http::Response::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<'a>(req: &'a Request, name: &'a str) -> Vec<&'a [u8]> {
        req.headers().get_all(name).collect()
    }

    #[test]
    fn request_round_trips_through_http() {
        let req = Request::new(Method::Post, "/orders/7?dry_run=1&x=%20")
            .with_header("Host", "example.com")
            .with_header("Accept", "application/json")
            .with_header("X-Tag", "a")
            .with_header("Content-Type", "application/json")
            .with_header("x-tag", "b")
            .with_header("X-Tag", "c")
            .with_body(&b"{\"item\":\"book\"}"[..]);

        let h = http::Request::<Vec<u8>>::try_from(&req).unwrap();
        assert_eq!(h.method(), http::Method::POST);
        assert_eq!(h.uri().path(), "/orders/7");
        assert_eq!(h.uri().query(), Some("dry_run=1&x=%20"));
        assert_eq!(h.version(), http::Version::HTTP_11);
        assert_eq!(h.headers()["host"], "example.com");
        let tags: Vec<_> = h.headers().get_all("x-tag").iter().map(|v| v.as_bytes()).collect();
        assert_eq!(tags, [&b"a"[..], b"b", b"c"]);
        assert_eq!(h.body(), req.body());
        assert!(h.extensions().get::<HttpTrailers>().is_none());

        let back = Request::try_from(h).unwrap();
        assert_eq!(back.method(), Method::Post);
        assert_eq!(back.target(), req.target());
        assert_eq!(back.path(), "/orders/7");
        assert_eq!(back.query(), Some("dry_run=1&x=%20"));
        assert_eq!(back.version(), Version::Http11);
        assert_eq!(back.body(), req.body());
        assert_eq!(back.headers().len(), req.headers().len());
        for name in ["host", "accept", "x-tag", "content-type"] {
            assert_eq!(values(&back, name), values(&req, name), "{name}");
        }
        assert_eq!(values(&back, "X-TAG"), [&b"a"[..], b"b", b"c"]);
    }

    #[test]
    fn every_method_converts_both_ways() {
        for m in Method::ALL {
            let h = http::Method::try_from(m).unwrap();
            assert_eq!(h.as_str(), m.as_str());
            assert_eq!(Method::try_from(&h), Ok(m));
            let target = match m {
                Method::Connect => "example.com:443",
                Method::Options => "*",
                _ => "/",
            };
            let req = Request::new(m, target).with_header("host", "example.com");
            let back = Request::try_from(http::Request::<Vec<u8>>::try_from(req).unwrap()).unwrap();
            assert_eq!(back.method(), m);
            assert_eq!(back.target(), target, "{m}");
        }
    }

    #[test]
    fn extension_methods_convert_with_their_requests_token() {
        let h = http::Request::builder().method("PROPFIND").uri("/dav").body(b"<x/>".to_vec()).unwrap();
        let req = Request::try_from(h).unwrap();
        assert_eq!(
            (req.method(), req.method_token(), req.path(), req.body()),
            (Method::Extension, "PROPFIND", "/dav", &b"<x/>"[..])
        );
        let back = http::Request::<Vec<u8>>::try_from(&req).unwrap();
        assert_eq!(back.method().as_str(), "PROPFIND");
        // A bare method has no token to carry.
        let err = Method::try_from(back.method()).unwrap_err();
        assert_eq!(err, InteropError::UnsupportedMethod("PROPFIND".into()));
        assert!(err.to_string().contains("PROPFIND"), "{err}");
        assert!(http::Method::try_from(Method::Extension).is_err());
    }

    #[test]
    fn versions_other_than_1_0_and_1_1_are_refused() {
        for (v, ok) in [
            (http::Version::HTTP_09, None),
            (http::Version::HTTP_10, Some(Version::Http10)),
            (http::Version::HTTP_11, Some(Version::Http11)),
            (http::Version::HTTP_2, None),
            (http::Version::HTTP_3, None),
        ] {
            let h = http::Request::builder().version(v).uri("/").body(Vec::new()).unwrap();
            match (Request::try_from(h), ok) {
                (Ok(r), Some(want)) => {
                    assert_eq!(r.version(), want);
                    assert_eq!(http::Version::from(want), v);
                    let again = http::Request::<Vec<u8>>::try_from(&r).unwrap();
                    assert_eq!(again.version(), v);
                }
                (Err(e), None) => assert_eq!(e, InteropError::UnsupportedVersion(v)),
                (got, want) => panic!("{v:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn absolute_form_targets_keep_their_form() {
        let req = Request::new(Method::Get, "http://example.com:8080/a/b?c=d").with_header("host", "example.com:8080");
        let h = http::Request::<Vec<u8>>::try_from(&req).unwrap();
        assert_eq!(h.uri().scheme_str(), Some("http"));
        assert_eq!(h.uri().authority().map(|a| a.as_str()), Some("example.com:8080"));
        let back = Request::try_from(h).unwrap();
        assert_eq!(back.target(), "http://example.com:8080/a/b?c=d");
        assert_eq!(back.path(), "/a/b");
        assert_eq!(back.query(), Some("c=d"));
    }

    #[test]
    fn requests_http_refuses_are_errors() {
        let bad_target = Request::new(Method::Get, "/a b");
        assert_eq!(
            http::Request::<Vec<u8>>::try_from(&bad_target).unwrap_err(),
            InteropError::InvalidTarget("/a b".into())
        );
        let bad_name = Request::new(Method::Get, "/").with_header("bad name", "x");
        assert_eq!(
            http::Request::<Vec<u8>>::try_from(bad_name).unwrap_err(),
            InteropError::InvalidHeaderName("bad name".into())
        );
        let bad_value = Request::new(Method::Get, "/").with_header("x-a", b"line\nbreak");
        assert_eq!(
            http::Request::<Vec<u8>>::try_from(bad_value).unwrap_err(),
            InteropError::InvalidHeaderValue("x-a".into())
        );
    }

    #[test]
    fn obs_text_field_values_survive() {
        let req = Request::new(Method::Get, "/").with_header("x-latin1", b"caf\xe9");
        let back = Request::try_from(http::Request::<Vec<u8>>::try_from(&req).unwrap()).unwrap();
        assert_eq!(back.header("x-latin1"), Some(&b"caf\xe9"[..]));
    }

    #[test]
    fn trailers_travel_in_the_extensions() {
        let mut req = Request::new(Method::Post, "/upload").with_header("transfer-encoding", "chunked");
        req.push_trailer(b"X-Checksum", b"abc");
        req.push_trailer(b"x-checksum", b"def");
        let h = http::Request::<Vec<u8>>::try_from(&req).unwrap();
        let HttpTrailers(t) = h.extensions().get::<HttpTrailers>().expect("trailers");
        let sums: Vec<_> = t.get_all("x-checksum").iter().map(|v| v.as_bytes()).collect();
        assert_eq!(sums, [&b"abc"[..], b"def"]);
        let back = Request::try_from(h).unwrap();
        let sums: Vec<_> = back.trailers().get_all("x-checksum").collect();
        assert_eq!(sums, [&b"abc"[..], b"def"]);
        assert_eq!(back.header("transfer-encoding"), Some(&b"chunked"[..]));
    }

    #[test]
    fn the_peer_address_travels_in_the_extensions() {
        let peer: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        let h = http::Request::<Vec<u8>>::try_from(Request::new(Method::Get, "/").with_peer_addr(peer)).unwrap();
        assert_eq!(h.extensions().get::<HttpPeerAddr>(), Some(&HttpPeerAddr(peer)));
        assert_eq!(Request::try_from(h).unwrap().peer_addr(), Some(peer));
        let none = http::Request::<Vec<u8>>::try_from(Request::new(Method::Get, "/")).unwrap();
        assert!(none.extensions().get::<HttpPeerAddr>().is_none());
        assert_eq!(Request::try_from(none).unwrap().peer_addr(), None);
    }

    #[test]
    fn response_round_trips_through_http() {
        let resp = Response::json(&b"{\"id\":1}"[..])
            .with_status(StatusCode::CREATED)
            .header("location", "/orders/1")
            .header("Set-Cookie", "a=1")
            .header("set-cookie", "b=2");
        let h = http::Response::<Vec<u8>>::try_from(resp.clone()).unwrap();
        assert_eq!(h.status(), http::StatusCode::CREATED);
        assert_eq!(h.headers()["content-type"], "application/json");
        assert_eq!(h.headers()["location"], "/orders/1");
        let cookies: Vec<_> = h.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(h.body(), b"{\"id\":1}");

        let back = Response::from(h);
        assert_eq!(back.status, StatusCode::CREATED);
        assert_eq!(back.header_value("content-type"), Some(&b"application/json"[..]));
        assert_eq!(back.body_bytes(), resp.body_bytes());
        assert_eq!(back.header_value("location"), Some(&b"/orders/1"[..]));
        let cookies: Vec<_> =
            back.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie")).map(|(_, v)| &v[..]).collect();
        assert_eq!(cookies, [&b"a=1"[..], b"b=2"]);
        assert_eq!(back.headers.len(), resp.headers.len());
    }

    #[test]
    fn response_content_type_and_obs_text_survive() {
        let h = http::Response::builder()
            .status(404)
            .header("content-type", "text/html; charset=utf-8")
            .header("x-latin1", &b"caf\xe9"[..])
            .body(b"<p>gone</p>".to_vec())
            .unwrap();
        let resp = Response::from(h);
        assert_eq!(resp.status, StatusCode::NOT_FOUND);
        assert_eq!(resp.header_value("content-type"), Some(&b"text/html; charset=utf-8"[..]));
        assert_eq!(resp.header_value("x-latin1"), Some(&b"caf\xe9"[..]));
        let again = http::Response::<Vec<u8>>::try_from(resp).unwrap();
        assert_eq!(again.headers().get_all("content-type").iter().count(), 1);
        assert_eq!(again.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(again.headers()["x-latin1"].as_bytes(), b"caf\xe9");
        assert_eq!(again.body(), b"<p>gone</p>");
    }

    #[test]
    fn of_several_content_types_the_last_is_kept() {
        let h = http::Response::builder()
            .header("content-type", "text/plain")
            .header("content-type", "application/json")
            .body(Vec::new())
            .unwrap();
        let resp = Response::from(h);
        assert_eq!(resp.content_type.as_deref(), Some("application/json"));
        assert!(resp.headers.is_empty(), "{:?}", resp.headers);
    }

    #[test]
    fn targets_come_back_as_uri_writes_them_and_uri_refusals_are_invalid_target() {
        for (target, back) in [("http://example.com", "http://example.com/"), ("/a?b=%22", "/a?b=%22"), ("*", "*")] {
            let req = Request::new(Method::Options, target).with_header("host", "example.com");
            let h = http::Request::<Vec<u8>>::try_from(req).unwrap();
            assert_eq!(Request::try_from(h).unwrap().target(), back);
        }
        for target in ["/a?r=\"x\"", "/a?r=<x>"] {
            let req = Request::new(Method::Get, target).with_header("host", "example.com");
            let err = http::Request::<Vec<u8>>::try_from(req).unwrap_err();
            assert_eq!(err, InteropError::InvalidTarget(target.to_owned()));
        }
    }

    #[test]
    fn every_status_in_range_converts() {
        for code in [100u16, 200, 204, 404, 418, 503, 599, 999] {
            let h = http::Response::<Vec<u8>>::try_from(Response::new(StatusCode(code))).unwrap();
            assert_eq!(h.status().as_u16(), code);
            assert_eq!(Response::from(h).status, StatusCode(code));
        }
        for code in [0u16, 99, 1000] {
            let err = http::Response::<Vec<u8>>::try_from(Response::new(StatusCode(code))).unwrap_err();
            assert_eq!(err, InteropError::InvalidStatus(code));
        }
    }

    #[test]
    fn bodies_convert_and_streamed_ones_are_refused() {
        let empty = http::Response::<Vec<u8>>::try_from(Response::new(StatusCode::NO_CONTENT)).unwrap();
        assert!(empty.body().is_empty());
        assert!(matches!(Response::from(empty).body, Body::Empty));

        let full = http::Response::builder().status(200).body(b"hello".to_vec()).unwrap();
        let back = Response::from(full);
        assert!(matches!(&back.body, Body::Full(b) if &b[..] == b"hello"));

        let mut streamed = Response::new(StatusCode::OK);
        streamed.body = Body::Streamed;
        let err = http::Response::<Vec<u8>>::try_from(streamed).unwrap_err();
        assert_eq!(err, InteropError::StreamedBody);
        assert!(!err.to_string().is_empty());
    }

    #[test]
    fn response_fields_http_refuses_are_errors() {
        let resp = Response::text("x").header("x-bad", "a\rb");
        assert_eq!(
            http::Response::<Vec<u8>>::try_from(resp).unwrap_err(),
            InteropError::InvalidHeaderValue("x-bad".into())
        );
        let resp = Response::text("x").header("bad:name", "v");
        assert_eq!(
            http::Response::<Vec<u8>>::try_from(resp).unwrap_err(),
            InteropError::InvalidHeaderName("bad:name".into())
        );
    }
}
