//! Middleware: handlers that wrap handlers ([`Layer`]). Each runs on the connection's shard
//! before the inner handler and may answer at once (401, 429, a CORS preflight) or hook the
//! response on its way out ([`ResponseHook`]).

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use super::handler::Handler;
use super::request::{RequestSummary, ResponseHook, WebRequest};
use crate::http::{Method, Request, Response, StatusCode, cow_bytes};

/// Wraps a handler in another.
pub trait Layer: Send + Sync + 'static {
    /// The wrapped handler.
    fn wrap(&self, inner: Arc<dyn Handler>) -> Arc<dyn Handler>;
}

// ---------------------------------------------------------------------------------------------

/// Answers 401 unless `check` accepts the request, with `WWW-Authenticate: Bearer
/// realm="<realm>"` (the realm a quoted-string: a `"` or `\` in it escaped, a control byte
/// other than tab left out); a check of another scheme sets its own with [`Auth::challenge`].
///
/// A CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) the check
/// refuses gets the answer a [`Cors`] layer within gives its head alone
/// ([`Handler::check_head`]): a browser sends a preflight without credentials (the Fetch
/// standard), so a 401 to it refused every cross-origin call to an `auth` placed outside its
/// `Cors`. Only a preflight answer passes (204 with `Access-Control-Allow-Origin` and
/// `Access-Control-Allow-Methods`, without `Allow`): no handler runs for it, and the router's
/// own 204 with `Allow` (which tells what a path takes) or a fallback's page stays behind the
/// 401, whatever fields a response hook within sets on them.
pub fn auth<F>(realm: &str, check: F) -> Auth
where
    F: Fn(&Request) -> bool + Send + Sync + 'static,
{
    Auth { check: Arc::new(check), challenge: format!("Bearer realm=\"{}\"", quoted(realm)).into() }
}

/// `text` as the inside of a quoted-string (RFC 9110 §5.6.4): `"` and `\` escaped, control
/// bytes but tab (which no field value may hold: the field would be left out) dropped.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().filter(|&c| c == '\t' || !c.is_ascii_control()) {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Accepts requests that carry `Authorization: Bearer <token>` (the scheme in any case, as
/// RFC 9110 §11.1 has it, then one or more spaces; the token compared in constant time for
/// tokens of its length).
pub fn bearer(realm: &str, token: &str) -> Auth {
    let expected = token.as_bytes().to_vec();
    auth(realm, move |r| r.header("authorization").and_then(bearer_token).is_some_and(|t| same_secret(t, &expected)))
}

/// The token of `Bearer <token>` credentials.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first() != Some(&b' ') {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// `a == b` in a time that depends on their lengths only (no early exit at the first byte
/// that differs, which would let a client find a secret a byte at a time).
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    diff == 0
}

/// The [`auth`] layer.
#[derive(Clone)]
pub struct Auth {
    check: Arc<dyn Fn(&Request) -> bool + Send + Sync>,
    challenge: Arc<str>,
}

impl Auth {
    /// The `WWW-Authenticate` value of the 401 (default `Bearer realm="<realm>"`), e.g.
    /// `Basic realm="admin", charset="UTF-8"` for a check of Basic credentials.
    pub fn challenge(mut self, value: &str) -> Auth {
        self.challenge = value.into();
        self
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth").field("challenge", &self.challenge).finish()
    }
}

struct Authed {
    auth: Auth,
    inner: Arc<dyn Handler>,
}

impl Layer for Auth {
    fn wrap(&self, inner: Arc<dyn Handler>) -> Arc<dyn Handler> {
        Arc::new(Authed { auth: self.clone(), inner })
    }
}

impl Authed {
    /// The answer to a request the check refused: the 401, or to a CORS preflight the
    /// success a `Cors` layer within answers its head with (see [`auth`]).
    fn refusal(&self, req: &Request) -> Response {
        let preflight = req.method() == Method::Options
            && req.header("origin").is_some()
            && req.header("access-control-request-method").is_some();
        // A preflight answer as a `Cors` layer gives it: 204 (no body) with both allow fields,
        // and no `Allow`. A 2xx with `Access-Control-Allow-Origin` alone is not one: a hook
        // that sets that field on every answer put it on the router's 204 with `Allow` (a
        // path's methods, and that it exists) and on a `not_found` page (review 75).
        let has = |r: &Response, name: &str| r.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        let allowed = |r: &Response| {
            r.status == StatusCode::NO_CONTENT
                && has(r, "access-control-allow-origin")
                && has(r, "access-control-allow-methods")
                && !has(r, "allow")
        };
        if preflight && let Some(resp) = self.inner.check_head(req).filter(allowed) {
            return resp;
        }
        Response::status(StatusCode::UNAUTHORIZED).header("www-authenticate", self.auth.challenge.to_string())
    }
}

impl Handler for Authed {
    fn handle(&self, req: WebRequest) {
        if (self.auth.check)(req.request()) {
            return self.inner.handle(req);
        }
        let resp = self.refusal(req.request());
        req.respond(resp);
    }
    fn check_head(&self, req: &Request) -> Option<Response> {
        if (self.auth.check)(req) { self.inner.check_head(req) } else { Some(self.refusal(req)) }
    }
    fn body_limit(&self, req: &Request) -> Option<usize> {
        self.inner.body_limit(req)
    }
}

// ---------------------------------------------------------------------------------------------

/// CORS: answers preflights (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
/// with 204 and adds
/// `Access-Control-Allow-Origin` to the responses of requests that carry an allowed `Origin`
/// (with `Access-Control-Allow-Credentials` and `Access-Control-Expose-Headers` when set),
/// and `Vary: origin` to every answer that depends on `Origin` — with a list of origins, all;
/// with any origin (`*`), those to requests without one (Fetch §3.2.6: else a shared cache
/// could serve such an answer to a CORS request). A preflight from an origin not allowed
/// gets 403, without CORS fields: the browser refuses the request either way, the status
/// says why to whoever reads the network log.
///
/// The allow fields are set, not added: a `Cors` around another (an app's around a nested
/// API router's) or a handler's own leaves one `Access-Control-Allow-Origin` (the outermost
/// layer's: it answers the preflights; none for an origin it does not allow), and `Vary`
/// names `Origin` once.
///
/// The fields go on every answer of a request that reached the handlers (the runtime's
/// 500/503/504 too), not on the connection's refusals of requests it could not take (see
/// [`ResponseHook`]).
#[derive(Debug, Clone)]
pub struct Cors {
    /// Allowed origins; empty: any (`*`).
    pub origins: Vec<String>,
    /// Methods a preflight allows. `Method::Extension` allows every extension method: a
    /// preflight asking for one (`Access-Control-Request-Method: PROPFIND`) is answered with its
    /// token after these (a browser compares the tokens byte for byte).
    pub methods: Vec<Method>,
    /// Request header fields a preflight allows.
    pub headers: Vec<String>,
    /// How long a browser may cache a preflight answer (seconds).
    pub max_age: u32,
    /// Allow credentials (cookies, `Authorization`) for the listed
    /// [`origins`](Self::origins): `Access-Control-Allow-Credentials: true` on preflights and
    /// responses to them. Only with a list: reflecting any origin with credentials would let
    /// every site read what your users' cookies unlock (browsers refuse `*` with them), so
    /// without a list no credentials are allowed (`*` is sent, and a warning logged).
    pub credentials: bool,
    /// Response header fields a page's script may read beyond the safelisted ones
    /// (`Access-Control-Expose-Headers`).
    pub expose_headers: Vec<String>,
}

impl Default for Cors {
    fn default() -> Self {
        Cors {
            origins: Vec::new(),
            methods: vec![Method::Get, Method::Head, Method::Post, Method::Put, Method::Patch, Method::Delete],
            headers: vec!["content-type".into(), "authorization".into()],
            max_age: 600,
            credentials: false,
            expose_headers: Vec::new(),
        }
    }
}

struct CorsHandler {
    cors: Arc<CorsState>,
    inner: Arc<dyn Handler>,
}

struct CorsState {
    cors: Cors,
    methods: String,
    /// `methods` holds `Method::Extension`.
    extension: bool,
    headers: String,
    expose: Option<Cow<'static, [u8]>>,
}

impl CorsState {
    /// The `Access-Control-Allow-Origin` value for `origin`, if allowed.
    fn allow(&self, origin: &[u8]) -> Option<Cow<'static, str>> {
        if self.cors.origins.is_empty() {
            return Some(Cow::Borrowed("*"));
        }
        let origin = std::str::from_utf8(origin).ok()?;
        self.cors.origins.iter().any(|o| o == origin).then(|| Cow::Owned(origin.to_owned()))
    }

    /// Credentials go with the listed origins only (see [`Cors::credentials`]).
    fn credentials(&self) -> bool {
        self.cors.credentials && !self.cors.origins.is_empty()
    }

    /// The answer depends on `Origin`'s value (a list of origins): a cache must know (`*`
    /// varies only with whether `Origin` came: see `on_response`).
    fn varies(&self) -> bool {
        !self.cors.origins.is_empty()
    }
}

impl Layer for Cors {
    fn wrap(&self, inner: Arc<dyn Handler>) -> Arc<dyn Handler> {
        let methods =
            self.methods.iter().filter(|&&m| m != Method::Extension).map(|m| m.as_str()).collect::<Vec<_>>().join(", ");
        let headers = self.headers.join(", ");
        let expose = (!self.expose_headers.is_empty()).then(|| Cow::Owned(self.expose_headers.join(", ").into_bytes()));
        if self.credentials && self.origins.is_empty() {
            log::warn!(
                target: "pinion::web",
                "Cors: credentials need a list of origins; with none, no credentials are allowed (`*` is sent)"
            );
        }
        let extension = self.methods.contains(&Method::Extension);
        let cors = CorsState { cors: self.clone(), methods, extension, headers, expose };
        Arc::new(CorsHandler { cors: Arc::new(cors), inner })
    }
}

impl ResponseHook for CorsState {
    fn on_response(&self, req: &RequestSummary<'_>, resp: &mut Response) {
        let origin = req.request.header("origin");
        if origin.is_some() {
            // Set, not added: under another `Cors` (a router's around a nested router's) two
            // `Access-Control-Allow-Origin` fields went out, which a browser refuses ("multiple
            // values"; review 64). The outermost layer's fields stand, as its preflight answer:
            // none for an origin it refuses (review 67: the inner layer's `*` stayed, and an
            // origin refused its preflights read every simple request's answer).
            for name in
                ["access-control-allow-origin", "access-control-allow-credentials", "access-control-expose-headers"]
            {
                resp.remove_header(name);
            }
        }
        if let Some(allow) = origin.and_then(|o| self.allow(o)) {
            resp.headers.push((Cow::Borrowed("access-control-allow-origin"), cow_bytes(allow)));
            if self.credentials() {
                resp.headers.push((Cow::Borrowed("access-control-allow-credentials"), Cow::Borrowed(b"true")));
            }
            if let Some(expose) = &self.expose {
                resp.headers.push((Cow::Borrowed("access-control-expose-headers"), expose.clone()));
            }
        }
        // Whether `Origin` came, was allowed or not; with `*`, an answer without it differs
        // from one with it (Fetch §3.2.6: cached, it would be served to a CORS request). Once.
        if (self.varies() || origin.is_none()) && !varies_by_origin(resp) {
            resp.headers.push((Cow::Borrowed("vary"), Cow::Borrowed(b"origin")));
        }
    }
}

/// `resp` has a `Vary` field that names `Origin` (or `*`).
fn varies_by_origin(resp: &Response) -> bool {
    resp.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("vary")).any(|(_, v)| {
        v.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"origin") || t.trim_ascii() == b"*")
    })
}

impl CorsHandler {
    /// The answer to a preflight (204 with the allow fields, or 403 for an origin not
    /// allowed); `None` for any other request.
    fn preflight(&self, r: &Request) -> Option<Response> {
        let origin = r.header("origin")?;
        if r.method() != Method::Options {
            return None;
        }
        let asked = r.header("access-control-request-method")?.trim_ascii();
        let Some(allow) = self.cors.allow(origin) else { return Some(Response::status(StatusCode::FORBIDDEN)) };
        let mut methods = self.cors.methods.clone();
        // An extension method asked for, when every one is allowed (review 74: none could be).
        if self.cors.extension && Method::of_token(asked) == Some(Method::Extension) {
            if !methods.is_empty() {
                methods.push_str(", ");
            }
            methods.push_str(std::str::from_utf8(asked).unwrap_or_default());
        }
        let mut resp = Response::new(StatusCode::NO_CONTENT)
            .header("access-control-allow-origin", allow)
            .header("access-control-allow-methods", methods)
            .header("access-control-allow-headers", self.cors.headers.clone())
            .header("access-control-max-age", self.cors.cors.max_age.to_string())
            .header("vary", "origin");
        if self.cors.credentials() {
            resp = resp.header("access-control-allow-credentials", "true");
        }
        Some(resp)
    }
}

impl Handler for CorsHandler {
    fn handle(&self, mut req: WebRequest) {
        if let Some(resp) = self.preflight(req.request()) {
            return req.respond(resp);
        }
        // Every answer: the allow fields, or `Vary: origin`, go on each.
        req.on_response(self.cors.clone());
        self.inner.handle(req);
    }
    fn check_head(&self, req: &Request) -> Option<Response> {
        if let Some(resp) = self.preflight(req) {
            return Some(resp);
        }
        check_head_hooked(&*self.inner, req, &*self.cors)
    }
    fn body_limit(&self, req: &Request) -> Option<usize> {
        self.inner.body_limit(req)
    }
}

// ---------------------------------------------------------------------------------------------

/// Logs one line per request that reaches it (target `pinion::web::access`, level info): the
/// client's address ([`Request::peer_addr`]), method, target (as it came back with the
/// answer: a layer inside that rewrites it shows, but not in the runtime's 504, which sees it
/// as this layer did), status, microseconds from read to
/// response (for a streamed response: to its head, as the line is written when the head goes
/// out). A request whose connection closed before its answer reached the connection (the
/// client reset it, was cut as too slow, the server stopped) is logged with status 499, as
/// nginx does, when the connection lets it go; an answer given after is not logged, and one
/// that reached it is logged with its status, written or not (the client may leave while it
/// is written). The connection's own refusals of requests it could not take (400, 408, 413,
/// 414, 417, 421, 431, 501, 505, and 503 for a body past the shard's bound: see
/// [`ResponseHook`]) reach no handler and are not logged
/// here; they are counted in [`WebServer::stats`](super::WebServer::stats).
pub fn request_log() -> RequestLog {
    RequestLog
}

/// The [`request_log`] layer.
#[derive(Debug, Clone, Copy)]
pub struct RequestLog;

struct Logged {
    inner: Arc<dyn Handler>,
}

/// Logs the answer to the head alone (run at once: nothing can be lost).
struct LogHook;

/// Logs a request's answer, or, dropped unrun (its connection let the request go without an
/// answer: review 64 found such requests left no line), the request with [`GONE`]. What
/// that line needs is kept from the request as it reached the layer.
struct LogLine {
    peer: Option<std::net::SocketAddr>,
    /// The method's token (an extension method's own: no allocation for the others).
    method: Cow<'static, str>,
    target: Box<str>,
    received: Instant,
    logged: std::sync::atomic::AtomicBool,
}

/// The status logged for a request no answer went out for (nginx's "client closed request").
const GONE: u16 = 499;

/// A request's client in a log line (`-` for none).
struct Client(Option<std::net::SocketAddr>);

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => a.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// The access line of one request.
fn log_access(peer: Option<std::net::SocketAddr>, method: &str, target: &str, status: u16, since: Instant) {
    let us = since.elapsed().as_micros();
    log::info!(target: "pinion::web::access", "{} {method} {target} {status} {us}us", Client(peer));
}

impl ResponseHook for LogHook {
    fn on_response(&self, req: &RequestSummary<'_>, resp: &mut Response) {
        let r = req.request;
        log_access(r.peer_addr(), r.method_token(), r.target(), resp.status.0, req.received);
    }
}

impl ResponseHook for LogLine {
    fn on_response(&self, req: &RequestSummary<'_>, resp: &mut Response) {
        self.logged.store(true, Ordering::Relaxed);
        LogHook.on_response(req, resp);
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !*self.logged.get_mut() {
            log_access(self.peer, &self.method, &self.target, GONE, self.received);
        }
    }
}

impl Layer for RequestLog {
    fn wrap(&self, inner: Arc<dyn Handler>) -> Arc<dyn Handler> {
        Arc::new(Logged { inner })
    }
}

impl Handler for Logged {
    fn handle(&self, mut req: WebRequest) {
        if log::log_enabled!(target: "pinion::web::access", log::Level::Info) {
            let r = req.request();
            let line = LogLine {
                peer: r.peer_addr(),
                method: match r.method() {
                    Method::Extension => Cow::Owned(r.method_token().to_owned()),
                    m => Cow::Borrowed(m.as_str()),
                },
                target: r.target().into(),
                received: req.received(),
                logged: std::sync::atomic::AtomicBool::new(false),
            };
            req.on_response(Arc::new(line));
        }
        self.inner.handle(req);
    }
    fn check_head(&self, req: &Request) -> Option<Response> {
        check_head_hooked(&*self.inner, req, &LogHook)
    }
    fn body_limit(&self, req: &Request) -> Option<usize> {
        self.inner.body_limit(req)
    }
}

// ---------------------------------------------------------------------------------------------

/// `inner`'s answer to the head alone, if it gives one, with `hook` run on it as on any answer
/// (the layers that hook answers: a hook added in `handle` does not see this one). A panic in
/// the hook, or in `inner` (a guard, an auth check, a route's own `check_head`), costs a 500
/// that this hook and the hooks outside still run on, as on the 500 of a handler that panics
/// (a review found a hook's panic escaping, and review 64 an inner check's: the connection's
/// own 500 went out without CORS fields, request id or log line).
fn check_head_hooked(inner: &dyn Handler, req: &Request, hook: &dyn ResponseHook) -> Option<Response> {
    let asked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.check_head(req)));
    let mut resp = match asked {
        Ok(answer) => answer?,
        Err(payload) => {
            let text = crate::shard::executor::panic_text(&*payload);
            crate::log_limit::log_limited!(Error, target: "pinion", "a panic while checking a request head was contained: {text}");
            Response::status(StatusCode::INTERNAL_SERVER_ERROR)
        }
    };
    let summary = RequestSummary { request: req, received: Instant::now() };
    super::request::run_hooks(std::iter::once(hook), &summary, &mut resp);
    Some(resp)
}

/// Runs `hook` on every answer to the requests it wraps: the handlers', the runtime's (500,
/// 503, 504), and an answer to the head alone ([`Handler::check_head`]: a 401 or 404 a client
/// waiting for `100 Continue` gets before it uploads). The common middleware of your own (a
/// request id, timing, security headers) without a [`Handler`] of your own; it forwards
/// `check_head` and `body_limit`, as every wrapper must.
///
/// ```
/// use pinion::http::{Request, Response};
/// use pinion::web::{RequestSummary, Router, answer_at_once, hook};
///
/// let router = Router::new()
///     .get("/", |_: &Request| Response::text("hi"))
///     .layer(hook(|_: &RequestSummary<'_>, resp: &mut Response| resp.set_header("x-frame-options", "DENY")));
/// let answer = answer_at_once(&router, Request::new(pinion::http::Method::Get, "/")).expect("answered");
/// assert_eq!(answer.header_value("x-frame-options"), Some(&b"DENY"[..]));
/// ```
pub fn hook(hook: impl ResponseHook) -> Hook {
    Hook { hook: Arc::new(hook) }
}

/// The [`hook`] layer.
#[derive(Clone)]
pub struct Hook {
    hook: Arc<dyn ResponseHook>,
}

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hook").finish_non_exhaustive()
    }
}

struct Hooking {
    hook: Arc<dyn ResponseHook>,
    inner: Arc<dyn Handler>,
}

impl Layer for Hook {
    fn wrap(&self, inner: Arc<dyn Handler>) -> Arc<dyn Handler> {
        Arc::new(Hooking { hook: self.hook.clone(), inner })
    }
}

impl Handler for Hooking {
    fn handle(&self, mut req: WebRequest) {
        req.on_response(self.hook.clone());
        self.inner.handle(req);
    }
    fn check_head(&self, req: &Request) -> Option<Response> {
        check_head_hooked(&*self.inner, req, &*self.hook)
    }
    fn body_limit(&self, req: &Request) -> Option<usize> {
        self.inner.body_limit(req)
    }
}

/// Answers a request itself when `check` gives a response for it (maintenance, a missing API
/// key, a blocked client), else hands it on. Asked with the head alone for a client that
/// waits for `100 Continue` too, so such a client is answered before it uploads; forwards
/// `check_head` and `body_limit` otherwise, as every wrapper must. `check` runs on the
/// connection's shard, for every request: keep it quick. Outside a [`Cors`] layer it sees the
/// browsers' preflights (`OPTIONS` without credentials) first: let them through, or put it
/// inside (the same holds for [`auth`]).
///
/// ```
/// use pinion::http::{Method, Request, Response, StatusCode};
/// use pinion::web::{Router, answer_at_once, guard};
///
/// let router = Router::new().post("/upload", |_: &Request| Response::text("stored")).layer(guard(|r: &Request| {
///     (r.header("x-api-key") != Some(b"k1")).then(|| Response::status(StatusCode::FORBIDDEN))
/// }));
/// let upload = Request::new(Method::Post, "/upload").with_header("content-length", "5000000");
/// let refused = answer_at_once(&router, upload.with_header("expect", "100-continue"));
/// assert_eq!(refused.map(|r| r.status.0), Some(403));
/// ```
pub fn guard<F>(check: F) -> Guard
where
    F: Fn(&Request) -> Option<Response> + Send + Sync + 'static,
{
    Guard { check: Arc::new(check) }
}

/// What a [`guard`] asks of each request.
type GuardCheck = dyn Fn(&Request) -> Option<Response> + Send + Sync;

/// The [`guard`] layer.
#[derive(Clone)]
pub struct Guard {
    check: Arc<GuardCheck>,
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard").finish_non_exhaustive()
    }
}

struct Guarded {
    check: Arc<GuardCheck>,
    inner: Arc<dyn Handler>,
}

impl Layer for Guard {
    fn wrap(&self, inner: Arc<dyn Handler>) -> Arc<dyn Handler> {
        Arc::new(Guarded { check: self.check.clone(), inner })
    }
}

impl Handler for Guarded {
    fn handle(&self, req: WebRequest) {
        match (self.check)(req.request()) {
            Some(resp) => req.respond(resp),
            None => self.inner.handle(req),
        }
    }
    fn check_head(&self, req: &Request) -> Option<Response> {
        (self.check)(req).or_else(|| self.inner.check_head(req))
    }
    fn body_limit(&self, req: &Request) -> Option<usize> {
        self.inner.body_limit(req)
    }
}

// ---------------------------------------------------------------------------------------------

/// At most `per_second` requests per second on average, bursts of up to `burst`, across the
/// whole server (every shard); above: 429 with `Retry-After: 1`. Per client instead:
/// [`RateLimit::per_client`], [`RateLimit::keyed_by`]. The rate is counted in whole requests
/// a second and a 0 for either is taken as 1 (a trial: `rate_limit(0, 0)` let one a second
/// through); to refuse requests outright, use [`guard`].
pub fn rate_limit(per_second: u32, burst: u32) -> RateLimit {
    let per_second = per_second.max(1);
    let burst = burst.max(1);
    RateLimit { bucket: Arc::new(Bucket::new(per_second, burst)), keyed: None }
}

/// The [`rate_limit`] layer.
#[derive(Clone)]
pub struct RateLimit {
    /// The one bucket, or (keyed) the one of requests without a key and of clients the table
    /// has no room for.
    bucket: Arc<Bucket>,
    keyed: Option<Arc<Keyed>>,
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit").field("bucket", &self.bucket).field("keyed", &self.keyed.is_some()).finish()
    }
}

impl RateLimit {
    /// A bucket per client, each with the rate and burst given: the client is the IP address
    /// of the request's peer ([`Request::peer_addr`]; an IPv6 one by its /64, as one host
    /// usually holds a whole /64). Behind a proxy every request has the proxy's address: key by
    /// the field the proxy sets instead ([`keyed_by`](Self::keyed_by)).
    pub fn per_client(self) -> RateLimit {
        self.keyed_by(|r: &Request| {
            // An IPv4 client of a dual-stack listener is `::ffff:a.b.c.d`: keyed by its IPv4
            // address, not by the /64 every IPv4 client shares.
            let ip = r.peer_addr()?.ip().to_canonical();
            Some(match ip {
                std::net::IpAddr::V4(v4) => Cow::Owned(v4.octets().to_vec()),
                std::net::IpAddr::V6(v6) => Cow::Owned(v6.octets()[..8].to_vec()),
            })
        })
    }

    /// A bucket per key `key` gives a request (say, a header's value, an API token), each with
    /// the rate and burst given; requests it gives none share one. At most
    /// [`MAX_RATE_KEYS`] keys are tracked: a key seen while the table is full of keys still
    /// within their rate shares the bucket of keyless requests (forgotten keys are those whose
    /// bucket is full again: nothing is lost by forgetting them).
    pub fn keyed_by<F>(self, key: F) -> RateLimit
    where
        F: for<'a> Fn(&'a Request) -> Option<Cow<'a, [u8]>> + Send + Sync + 'static,
    {
        let keyed = Keyed {
            key: Box::new(key),
            hasher: std::hash::RandomState::new(),
            tables: std::array::from_fn(|_| Mutex::new(KeyTable::default())),
        };
        RateLimit { keyed: Some(Arc::new(keyed)), ..self }
    }

    /// Whether `req` is admitted now, taking a token if `take` (else only asking).
    fn admit(&self, req: &Request, take: bool) -> bool {
        match self.keyed.as_ref().and_then(|k| k.admit(req, &self.bucket, take)) {
            Some(admitted) => admitted,
            None if take => self.bucket.admit(),
            None => self.bucket.would_admit(),
        }
    }
}

/// Most keys a keyed [`rate_limit`] tracks at once.
pub const MAX_RATE_KEYS: usize = 1 << 16;

/// Tables of keyed buckets (their TATs, see [`Bucket`]), by a hash of the key; sharded so
/// that shards do not wait on one lock.
struct Keyed {
    #[allow(clippy::type_complexity, reason = "the one place this closure's type is spelled")]
    key: Box<dyn for<'a> Fn(&'a Request) -> Option<Cow<'a, [u8]>> + Send + Sync>,
    hasher: std::hash::RandomState,
    tables: [Mutex<KeyTable>; KEY_TABLES],
}

const KEY_TABLES: usize = 16;

/// A full table is swept at most this often (a sweep reads every key; under a flood of new
/// keys, each would sweep).
const SWEEP_EVERY_NS: u64 = 100_000_000;

#[derive(Default)]
struct KeyTable {
    /// TAT by hash of key.
    tats: std::collections::HashMap<u64, u64>,
    /// When it was last swept (nanoseconds, see [`Bucket::now`]).
    swept: Option<u64>,
}

impl Keyed {
    /// Whether the request's key admits it (taking a token if `take`); `None`: it has no key,
    /// or no room: the shared bucket decides.
    fn admit(&self, req: &Request, shared: &Bucket, take: bool) -> Option<bool> {
        use std::hash::BuildHasher;
        let key = (self.key)(req)?;
        let hash = self.hasher.hash_one(&*key);
        let mut guard = self.tables[hash as usize % KEY_TABLES].lock().unwrap_or_else(PoisonError::into_inner);
        let table = &mut *guard;
        let now = shared.now();
        if !table.tats.contains_key(&hash) && table.tats.len() >= MAX_RATE_KEYS / KEY_TABLES {
            // Full: forget the keys whose bucket is full again (as good as new), then look.
            if table.swept.is_none_or(|at| now >= at + SWEEP_EVERY_NS) {
                table.tats.retain(|_, tat| *tat > now);
                table.swept = Some(now);
            }
            if table.tats.len() >= MAX_RATE_KEYS / KEY_TABLES {
                return None;
            }
        }
        if !take {
            let tat = table.tats.get(&hash).copied().unwrap_or(0);
            return Some(shared.next_tat(tat, now).is_some());
        }
        let tat = table.tats.entry(hash).or_insert(0);
        Some(match shared.next_tat(*tat, now) {
            Some(next) => {
                *tat = next;
                true
            }
            None => false,
        })
    }
}

/// A token bucket in one atomic word: the "theoretical arrival time" of GCRA, in nanoseconds
/// since `origin`. A request is admitted if the TAT is no further ahead than `burst`
/// intervals; each admission pushes the TAT one interval on.
#[derive(Debug)]
struct Bucket {
    origin: Instant,
    tat: AtomicU64,
    interval_ns: u64,
    tolerance_ns: u64,
}

impl Bucket {
    fn new(per_second: u32, burst: u32) -> Bucket {
        let interval_ns = 1_000_000_000 / u64::from(per_second);
        Bucket {
            origin: Instant::now(),
            tat: AtomicU64::new(0),
            interval_ns,
            tolerance_ns: interval_ns * u64::from(burst),
        }
    }

    /// Nanoseconds since `origin`.
    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// The TAT after admitting a request at `now` to a bucket at `tat`, if it is admitted.
    fn next_tat(&self, tat: u64, now: u64) -> Option<u64> {
        let next = tat.max(now) + self.interval_ns;
        (next <= now + self.tolerance_ns).then_some(next)
    }

    fn would_admit(&self) -> bool {
        self.next_tat(self.tat.load(Ordering::Relaxed), self.now()).is_some()
    }

    fn admit(&self) -> bool {
        let now = self.now();
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let Some(next) = self.next_tat(tat, now) else { return false };
            match self.tat.compare_exchange_weak(tat, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(t) => tat = t,
            }
        }
    }
}

/// The answer over the rate.
fn too_many() -> Response {
    Response::status(StatusCode::TOO_MANY_REQUESTS).header("retry-after", "1")
}

struct Limited {
    limit: RateLimit,
    inner: Arc<dyn Handler>,
}

impl Layer for RateLimit {
    fn wrap(&self, inner: Arc<dyn Handler>) -> Arc<dyn Handler> {
        Arc::new(Limited { limit: self.clone(), inner })
    }
}

impl Handler for Limited {
    fn handle(&self, req: WebRequest) {
        if self.limit.admit(req.request(), true) {
            self.inner.handle(req);
        } else {
            req.respond(too_many());
        }
    }
    /// 429 if the request would be refused now, else the inner handler's answer; no token is
    /// taken (the request may still come). So a client over its rate is refused before it
    /// uploads (an API trial: 10 MiB uploaded, then 429).
    fn check_head(&self, req: &Request) -> Option<Response> {
        if !self.limit.admit(req, false) {
            return Some(too_many());
        }
        self.inner.check_head(req)
    }
    fn body_limit(&self, req: &Request) -> Option<usize> {
        self.inner.body_limit(req)
    }
}

// ---------------------------------------------------------------------------------------------

/// Holds the requests it sees to at most `max_bytes` of body (413 beyond, see
/// [`Handler::body_limit`]) — higher or lower than the server's `max_body_bytes` — unless the
/// handler it wraps sets its own bound. On a [`Router`](super::Router) with
/// [`layer`](super::Router::layer) it bounds every route; wrapping one route's handler
/// ([`Layer::wrap`]) bounds that route, so an upload route can take more than the rest:
///
/// ```
/// use std::sync::Arc;
/// use pinion::http::{Request, Response};
/// use pinion::web::{Layer, Router, body_limit};
///
/// fn save(r: &Request) -> Response { Response::text(format!("{} bytes", r.body().len())) }
/// fn note(_: &Request) -> Response { Response::text("noted") }
///
/// let router = Router::new()
///     .post("/notes", note)
///     .post("/uploads", body_limit(256 << 20).wrap(Arc::new(save)))
///     .layer(body_limit(16 << 10));
/// ```
///
/// The body is still read whole before the handler runs: a bound of hundreds of megabytes
/// means as much memory per request being uploaded.
pub fn body_limit(max_bytes: usize) -> BodyLimit {
    BodyLimit { max_bytes }
}

/// The [`body_limit`] layer.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit {
    max_bytes: usize,
}

struct BodyLimited {
    max_bytes: usize,
    inner: Arc<dyn Handler>,
}

impl Layer for BodyLimit {
    fn wrap(&self, inner: Arc<dyn Handler>) -> Arc<dyn Handler> {
        Arc::new(BodyLimited { max_bytes: self.max_bytes, inner })
    }
}

impl Handler for BodyLimited {
    fn handle(&self, req: WebRequest) {
        self.inner.handle(req);
    }
    fn check_head(&self, req: &Request) -> Option<Response> {
        self.inner.check_head(req)
    }
    fn body_limit(&self, req: &Request) -> Option<usize> {
        Some(self.inner.body_limit(req).unwrap_or(self.max_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_key_table_forgets_keys_whose_bucket_is_full_again_else_shares_the_keyless_bucket() {
        // A key per request: every key gets its own burst of 2 until the tables are full.
        let limit = rate_limit(1, 2).keyed_by(|r: &Request| Some(Cow::Borrowed(r.path().as_bytes())));
        let request = |i: usize| Request::new(Method::Get, &format!("/{i}"));
        let keys = MAX_RATE_KEYS / KEY_TABLES * KEY_TABLES;
        // (A table fills at its share; keys hash unevenly, so some tables fill before others:
        // count what is admitted rather than assume which.)
        let first: usize = (0..keys).filter(|&i| limit.admit(&request(i), true)).count();
        let keyed = limit.keyed.as_ref().expect("keyed");
        let tracked: usize = keyed.tables.iter().map(|t| t.lock().unwrap().tats.len()).sum();
        assert!(tracked <= MAX_RATE_KEYS, "{tracked} keys tracked");
        // Keys without room went to the shared bucket: its burst of 2, then refused.
        assert_eq!(first, tracked + (keys - tracked).min(2), "admitted of {keys} keys, {tracked} tracked");
        // A tracked key still has its own bucket (one more of its burst).
        let some_tracked = (0..keys).find(|&i| {
            let hash = std::hash::BuildHasher::hash_one(&keyed.hasher, format!("/{i}").as_bytes());
            keyed.tables[hash as usize % KEY_TABLES].lock().unwrap().tats.contains_key(&hash)
        });
        assert!(limit.admit(&request(some_tracked.expect("a tracked key")), true));
    }

    #[test]
    fn bucket_admits_a_burst_then_refuses() {
        let b = Bucket::new(1, 3);
        let admitted = (0..10).filter(|_| b.admit()).count();
        assert_eq!(admitted, 3);
    }
}
