//! [`Router`]: path patterns, method routing, a fallback (what a user reads is on the type).

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

use super::handler::Handler;
use super::middleware::Layer;
use super::request::WebRequest;
use crate::http::{Method, Request, Response, StatusCode};

#[derive(Clone)]
enum Segment {
    Literal(String),
    Param(String),
    /// `{*name}`: the rest of the path (may be empty).
    Rest(String),
}

#[derive(Clone)]
struct Route {
    /// The whole pattern when it has no parameters: matched with one comparison.
    literal: Option<String>,
    segments: Vec<Segment>,
    /// `None`: any method.
    method: Option<Method>,
    /// The token of the extension method it takes (`method` is `Some(Extension)`); `None`
    /// there: every extension method.
    token: Option<Box<str>>,
    handler: Arc<dyn Handler>,
}

impl Route {
    /// Whether the route takes `method` (named `token`, if an extension method).
    #[inline(always)]
    fn takes(&self, method: Method, token: &str) -> bool {
        self.method.is_none_or(|m| m == method) && self.token.as_deref().is_none_or(|t| t == token)
    }
}

/// Routes requests by method and path.
///
/// Path patterns with parameters (`/users/{id}`, a trailing `{*rest}`), method routing, a
/// fallback. A route's handler is any [`Handler`]: a plain function run on the shard, or a
/// [`WebHandler`](super::WebHandler) to an actor. A path that matches with the wrong method
/// gets 405 with `Allow` (`OPTIONS` there gets 204 with it, unless a route takes OPTIONS; a
/// CORS preflight there, the answer to its head of the route that takes the method it asks
/// about, if it gives one: a [`Cors`](super::Cors) layer on that route alone); no
/// match, the fallback (404 by default). `OPTIONS *` (a question about the server, not a
/// resource: RFC 9110 §9.3.7; also `OPTIONS http://host` without a path:
/// [`Request::is_server_wide`]) matches no route; without a fallback the router answers it
/// 204, with an `Allow` of every method its routes take when each route names its method
/// (an [`on`](Self::on) route its token; a route for any method, or for every extension
/// method, names none).
///
/// A path that several patterns match goes to the most specific: segment by segment, a
/// literal before a parameter before a `{*rest}`, whatever the order the routes were added
/// in (as axum's router); among patterns alike, the first added. A route that takes the
/// request's method answers; if none of the matching ones does, 405. A GET route takes HEAD
/// too, unless a HEAD route of a pattern alike is there (whichever was added first); a route
/// for any method added after the GET route does not take its HEAD (HEAD goes where GET goes).
///
/// Patterns are matched against the path as the client sent it, percent-encoding and all
/// (`%2F` is no `/`, `%41` no `A`; [`Request::param_decoded`] decodes a parameter): a literal
/// is written as it comes on the wire, so one with a byte no path holds (a space, a control,
/// `?`, `#`) is refused, as is a parameter name used twice in one pattern. A literal in UTF-8
/// (`/café`) matches a client that sends it raw; browsers and most clients percent-encode it
/// (`/caf%C3%A9`).
///
/// Extension methods (`PROPFIND`, `PURGE`: [`Method::Extension`]) go to the routes that name
/// their token ([`on`](Self::on)), to those for every extension method
/// ([`method`](Self::method) with `Method::Extension`) and to those for any method. One no
/// route names is answered 501 (RFC 9110 §15.6.2: the server does not recognize it) where a
/// known method would get 405 or the router's 404 (a [`fallback`](Self::fallback) or a
/// [`not_found`](Self::not_found) answers it as it answers any method; a route for every
/// extension method names each, a route for any method none); a path whose routes take other
/// methods answers one a route names elsewhere 405, with `Allow` listing the tokens of that
/// path's extension routes.
#[derive(Default)]
pub struct Router {
    core: Arc<Core>,
    layers: Vec<Arc<dyn Layer>>,
    /// The core wrapped in the layers, built at the first request.
    built: OnceLock<Arc<dyn Handler>>,
}

/// The routes themselves.
#[derive(Default, Clone)]
struct Core {
    routes: Vec<Route>,
    fallback: Option<Arc<dyn Handler>>,
    /// The fallback is a `not_found`: it replaces the router's 404, not its `OPTIONS *`.
    not_found: bool,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router").field("routes", &self.core.routes.len()).field("layers", &self.layers.len()).finish()
    }
}

/// Most parameters one pattern may have.
const MAX_PARAMS: usize = 8;

impl Router {
    /// An empty router (everything gets 404).
    pub fn new() -> Router {
        Router::default()
    }

    /// `handler` answers every method on `pattern`.
    ///
    /// # Panics
    /// If the pattern is malformed (not starting with `/`, an unclosed `{`, a parameter or
    /// `{*rest}` without a name or with a brace in it, a name used twice, a `{*rest}` that is
    /// not last, more than eight parameters, a literal byte no path holds: see [`Router`]).
    pub fn route(self, pattern: &str, handler: impl Handler) -> Router {
        self.add(None, None, pattern, Arc::new(handler))
    }

    /// `handler` answers `method` on `pattern`.
    ///
    /// # Panics
    /// If the pattern is malformed, as [`route`](Self::route) (and so [`get`](Self::get),
    /// [`post`](Self::post) and the others).
    /// `Method::Extension` takes every extension method (the token is
    /// [`Request::method_token`]); one of them alone is [`on`](Self::on).
    pub fn method(self, method: Method, pattern: &str, handler: impl Handler) -> Router {
        self.add(Some(method), None, pattern, Arc::new(handler))
    }

    /// `handler` answers the method named `token` on `pattern`: an extension method
    /// (`PROPFIND`), or one [`Method`] names (then as [`method`](Self::method)). Methods are
    /// case-sensitive.
    ///
    /// # Panics
    /// If `token` is not a method token (RFC 9110 §9.1: one or more `tchar`s), or the pattern
    /// is malformed, as [`route`](Self::route).
    pub fn on(self, token: &str, pattern: &str, handler: impl Handler) -> Router {
        match Method::of_token(token.as_bytes()) {
            None => panic!("a method is a token (RFC 9110 §9.1): {token:?} is not"),
            Some(Method::Extension) => {
                self.add(Some(Method::Extension), Some(token.into()), pattern, Arc::new(handler))
            }
            Some(m) => self.add(Some(m), None, pattern, Arc::new(handler)),
        }
    }

    /// GET on `pattern`, and HEAD there unless a route as specific takes HEAD itself: a
    /// [`method`](Self::method) route for HEAD, or a [`route`](Self::route) for any method
    /// added before this one (which takes GET too).
    pub fn get(self, pattern: &str, handler: impl Handler) -> Router {
        self.method(Method::Get, pattern, handler)
    }

    /// POST on `pattern`.
    pub fn post(self, pattern: &str, handler: impl Handler) -> Router {
        self.method(Method::Post, pattern, handler)
    }

    /// PUT on `pattern`.
    pub fn put(self, pattern: &str, handler: impl Handler) -> Router {
        self.method(Method::Put, pattern, handler)
    }

    /// PATCH on `pattern`.
    pub fn patch(self, pattern: &str, handler: impl Handler) -> Router {
        self.method(Method::Patch, pattern, handler)
    }

    /// DELETE on `pattern`.
    pub fn delete(self, pattern: &str, handler: impl Handler) -> Router {
        self.method(Method::Delete, pattern, handler)
    }

    /// What answers when no route matches (default: 404). The fallback is a handler like any
    /// route's: for a client waiting for `100 Continue`, it is asked with the head alone
    /// ([`Handler::check_head`]), which a plain function answers with `None` — so the client
    /// uploads first. A 404 of your own (a JSON body) that should be given before the upload
    /// is [`not_found`](Self::not_found).
    pub fn fallback(mut self, handler: impl Handler) -> Router {
        let core = Arc::make_mut(&mut self.core);
        core.fallback = Some(Arc::new(handler));
        core.not_found = false;
        self.rebuild()
    }

    /// `answer` gives the answer to a request no route matches, from its head alone (a
    /// client waiting for `100 Continue` gets it before it uploads, as the router's own 404):
    /// a body of your own for the router's 404, a JSON one for an API. `OPTIONS *` keeps the
    /// router's 204, and a path some route matches with another method still gets the
    /// router's 405 with `Allow`: reshape that with a [`hook`](super::hook) layer, which sees
    /// the router's own answers.
    ///
    /// ```
    /// use pinion::http::{Request, Response, StatusCode};
    /// use pinion::web::{Router, answer_at_once};
    ///
    /// let router = Router::new()
    ///     .get("/items", |_: &Request| Response::text("[]"))
    ///     .not_found(|_: &Request| Response::json(r#"{"error":"not found"}"#).with_status(StatusCode::NOT_FOUND));
    /// let answer = answer_at_once(&router, Request::new(pinion::http::Method::Get, "/nowhere")).expect("answered");
    /// assert_eq!(answer.status, StatusCode::NOT_FOUND);
    /// ```
    pub fn not_found<F>(self, answer: F) -> Router
    where
        F: Fn(&Request) -> Response + Send + Sync + 'static,
    {
        let mut router = self.fallback(NotFound(answer));
        Arc::make_mut(&mut router.core).not_found = true;
        router
    }

    /// Wraps the whole router in `layer`: every route (added before or after), the fallback,
    /// and the router's own 404 and 405 answers — so auth, CORS preflights, logging and rate
    /// limits see every request. Layers added later run first. Path parameters are recorded
    /// after the layers ran, when the route is chosen.
    ///
    /// A layer for some routes only wraps their handler instead ([`Layer::wrap`]), or every
    /// route added so far ([`route_layer`](Self::route_layer)):
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pinion::http::{Request, Response};
    /// use pinion::web::{Layer, Router, bearer};
    ///
    /// fn open(_: &Request) -> Response { Response::text("anyone") }
    /// fn admin(_: &Request) -> Response { Response::text("admins only") }
    ///
    /// let router = Router::new()
    ///     .get("/status", open)
    ///     .get("/admin", bearer("admin", "s3cret").wrap(Arc::new(admin)));
    /// ```
    pub fn layer(mut self, layer: impl Layer) -> Router {
        self.layers.push(Arc::new(layer));
        self.rebuild()
    }

    /// Wraps the handler of every route added so far in `layer` — not the routes added after,
    /// not the fallback, not the router's own 404/405 answers (as axum's `route_layer`): auth
    /// for an API's routes, added before the public ones.
    ///
    /// ```
    /// use pinion::http::{Request, Response};
    /// use pinion::web::{Router, bearer};
    ///
    /// let router = Router::new()
    ///     .get("/admin", |_: &Request| Response::text("admins only"))
    ///     .post("/admin/users", |_: &Request| Response::text("created"))
    ///     .route_layer(bearer("admin", "s3cret"))
    ///     .get("/status", |_: &Request| Response::text("anyone"));
    /// ```
    pub fn route_layer(mut self, layer: impl Layer) -> Router {
        let core = Arc::make_mut(&mut self.core);
        for route in &mut core.routes {
            route.handler = layer.wrap(route.handler.clone());
        }
        self.rebuild()
    }

    /// Forgets the layered handler built at a first request: a router that answered one (a
    /// test's `answer_at_once`) and then got another route or layer went on serving the old
    /// routes through it (found writing a test: a route added after that answered 404).
    fn rebuild(mut self) -> Router {
        self.built = OnceLock::new();
        self
    }

    fn add(
        mut self,
        method: Option<Method>,
        token: Option<Box<str>>,
        pattern: &str,
        handler: Arc<dyn Handler>,
    ) -> Router {
        let segments = parse(pattern).unwrap_or_else(|e| panic!("route pattern {pattern:?}: {e}"));
        let literal = segments.iter().all(|s| matches!(s, Segment::Literal(_))).then(|| pattern.to_owned());
        let routes = &mut Arc::make_mut(&mut self.core).routes;
        // After every route as specific or more (see `specificity`), before the less specific:
        // a route added later with a literal where an earlier one has a parameter answers its
        // own paths (it was shadowed, silently: found porting an axum service).
        let rank = specificity(&segments);
        let at = routes.iter().position(|r| specificity(&r.segments) > rank).unwrap_or(routes.len());
        routes.insert(at, Route { literal, segments, method, token, handler });
        self.rebuild()
    }
}

/// How specific a pattern is, to order routes by: segment by segment, a literal (0) before a
/// parameter (1) before a `{*rest}` (2), a pattern ending first before one going on. So of
/// the patterns that match a path, the first in this order is the one with literals where
/// the others have parameters, as in axum's router (matchit). All-literal patterns come
/// before any other.
fn specificity(segments: &[Segment]) -> Vec<u8> {
    segments
        .iter()
        .map(|s| match s {
            Segment::Literal(_) => 0,
            Segment::Param(_) => 1,
            Segment::Rest(_) => 2,
        })
        .collect()
}

fn parse(pattern: &str) -> Result<Vec<Segment>, &'static str> {
    let Some(rest) = pattern.strip_prefix('/') else { return Err("must start with /") };
    let mut out = Vec::new();
    let parts: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('/').collect() };
    let mut params = 0;
    for (i, p) in parts.iter().enumerate() {
        let seg = match p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            // A rest's name is held to a parameter's rules (`{*}` and `{*a{b}` were taken: the
            // rest recorded under `""` and `a{b`).
            Some(name) if name.starts_with('*') && well_named(&name[1..]) => {
                if i + 1 != parts.len() {
                    return Err("{*rest} must be the last segment");
                }
                Segment::Rest(name[1..].to_owned())
            }
            Some(name) if !name.starts_with('*') && well_named(name) => Segment::Param(name.to_owned()),
            Some(_) => return Err("empty or nested parameter"),
            None if p.contains(['{', '}']) => return Err("unbalanced braces"),
            // What a request's path may hold (visible ASCII but `?` and `#`, and UTF-8: the
            // server takes a target a client sends raw): a literal with anything else could
            // match no request, silently.
            None if !p.bytes().all(|b| (b.is_ascii_graphic() && b != b'?' && b != b'#') || !b.is_ascii()) => {
                return Err("a literal holds a byte no path holds (percent-encode it)");
            }
            None => Segment::Literal((*p).to_owned()),
        };
        if let Segment::Param(name) | Segment::Rest(name) = &seg {
            // One name, one value: `param` would give the first of two.
            if out.iter().any(|s| matches!(s, Segment::Param(n) | Segment::Rest(n) if n == name)) {
                return Err("a parameter name used twice");
            }
            params += 1;
        }
        out.push(seg);
    }
    if params > MAX_PARAMS {
        return Err("more than eight parameters");
    }
    Ok(out)
}

/// A parameter's name (`{name}`, `{*name}`): not empty, no braces in it.
fn well_named(name: &str) -> bool {
    !name.is_empty() && !name.contains(['{', '}'])
}

/// A fallback that answers from the head alone ([`Router::not_found`]).
struct NotFound<F>(F);

impl<F> Handler for NotFound<F>
where
    F: Fn(&Request) -> Response + Send + Sync + 'static,
{
    fn handle(&self, req: WebRequest) {
        let resp = (self.0)(req.request());
        req.respond(resp);
    }

    fn check_head(&self, req: &Request) -> Option<Response> {
        Some((self.0)(req))
    }
}

/// Where a pattern's parameters are in a path: (segment index, range of the path).
type Found = [(usize, Range<usize>); MAX_PARAMS];

/// Matches `path` against `segments`; fills `found` with (segment index, range of the path).
fn matches(segments: &[Segment], path: &str, found: &mut Found) -> Option<usize> {
    let mut n = 0;
    let mut at = 1; // after the leading '/'
    if !path.starts_with('/') {
        return None;
    }
    for (i, seg) in segments.iter().enumerate() {
        if let Segment::Rest(_) = seg {
            found[n] = (i, at.min(path.len())..path.len());
            return Some(n + 1);
        }
        if at > path.len() {
            return None;
        }
        let end = path[at..].find('/').map_or(path.len(), |j| at + j);
        let part = &path[at..end];
        match seg {
            Segment::Literal(l) if l == part => {}
            Segment::Param(_) if !part.is_empty() => {
                found[n] = (i, at..end);
                n += 1;
            }
            _ => return None,
        }
        at = end + 1;
    }
    // Every segment matched: the path must be used up ("/a" matches "/a", not "/a/b").
    if at > path.len() || (segments.is_empty() && path == "/") { Some(n) } else { None }
}

/// Records on `req` the `n` parameters of `route` that `found` located in its path.
fn record_params(route: &Route, found: &Option<Found>, n: usize, req: &mut Request) {
    for (i, range) in found.iter().flatten().take(n).cloned() {
        if let Segment::Param(name) | Segment::Rest(name) = &route.segments[i] {
            req.set_param_from_path(name, range);
        }
    }
}

/// `a == b`, compared a word at a time in line: a route's literal is short, and the slice
/// comparison calls `memcmp` for any length (a call that cost more than the comparison).
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let word = |s: &[u8], i: usize| u64::from_ne_bytes(s[i..i + 8].try_into().unwrap_or_default());
    let mut i = 0;
    while i + 8 < n {
        if word(a, i) != word(b, i) {
            return false;
        }
        i += 8;
    }
    // The last word, overlapping the one before when `n` is not a multiple of 8.
    word(a, n - 8) == word(b, n - 8)
}

impl Handler for Router {
    fn handle(&self, req: WebRequest) {
        // Without layers the routes answer directly (no `OnceLock`, no call through a `dyn`).
        // (An early return, not a `match` on `layered`: that one moved the request once more,
        // 10 instructions a request, callgrind `MODE=pipe`.)
        if self.layers.is_empty() {
            return self.core.handle(req);
        }
        self.layered().expect("layers").handle(req);
    }

    fn check_head(&self, req: &Request) -> Option<Response> {
        match self.layered() {
            None => self.core.check_head(req),
            Some(handler) => handler.check_head(req),
        }
    }

    fn body_limit(&self, req: &Request) -> Option<usize> {
        match self.layered() {
            None => self.core.body_limit(req),
            Some(handler) => handler.body_limit(req),
        }
    }
}

impl Router {
    /// The core wrapped in the layers (built the first time), or `None` without layers.
    #[inline(always)]
    fn layered(&self) -> Option<&Arc<dyn Handler>> {
        if self.layers.is_empty() {
            return None;
        }
        Some(self.built.get_or_init(|| {
            let core: Arc<dyn Handler> = self.core.clone();
            self.layers.iter().fold(core, |inner, layer| layer.wrap(inner))
        }))
    }
}

impl Handler for Core {
    /// What `handle` would do with the head alone: the route's own answer, or the router's.
    fn check_head(&self, req: &Request) -> Option<Response> {
        match self.head_route(req, true) {
            Ok((handler, req)) => handler.check_head(&req),
            Err(resp) => Some(resp),
        }
    }

    /// The bound of the route's handler, or of the fallback; asked without the path parameters
    /// (asked of every request with a body: a copy to record them on would cost each one).
    fn body_limit(&self, req: &Request) -> Option<usize> {
        self.head_route(req, false).ok().and_then(|(handler, req)| handler.body_limit(&req))
    }

    fn handle(&self, req: WebRequest) {
        // The leading literal routes are tried here, in a small function: a path that one of
        // them answers with the request's method is handed over at once. Anything else (a
        // pattern, a method to refuse, no match) goes the general way from that route on —
        // the routes skipped so far matched nothing, so the outcome is the same.
        let request = req.request();
        let (method, path) = (request.method(), request.path());
        if matches!(method, Method::Options | Method::Extension) {
            // It may ask about the server, not the path (`find_for`); the routes compare an
            // extension method's token (`find`).
            return self.route_from(0, req);
        }
        for (i, route) in self.routes.iter().enumerate() {
            let Some(l) = &route.literal else { return self.route_from(i, req) };
            if !same_bytes(l.as_bytes(), path.as_bytes()) {
                continue;
            }
            // A route for the method itself, or for any, answers here; anything else (a HEAD
            // that a GET route takes unless a HEAD route as specific is there) the general way.
            if route.method.is_some_and(|m| m != method) {
                return self.route_from(i, req);
            }
            return route.handler.handle(req);
        }
        self.unrouted(req, 0)
    }
}

/// Whether two patterns are alike: literals, parameters and a rest in the same places. A path
/// that matches both has its parameters at the same ranges in each.
fn alike(a: &[Segment], b: &[Segment]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|pair| {
            matches!(
                pair,
                (Segment::Literal(_), Segment::Literal(_))
                    | (Segment::Param(_), Segment::Param(_))
                    | (Segment::Rest(_), Segment::Rest(_))
            )
        })
}

impl Core {
    /// Who would answer `req`, judged by its head: a route's or the fallback's handler, with
    /// the request to ask it with (with the path parameters recorded if `params`); or the
    /// router's own answer (404, 405).
    fn head_route<'r>(
        &'r self,
        req: &'r Request,
        params: bool,
    ) -> Result<(&'r Arc<dyn Handler>, Cow<'r, Request>), Response> {
        let mut found = None;
        let allowed = match self.find_for(0, req, &mut found) {
            Ok((route, n)) if n == 0 || !params => return Ok((&route.handler, Cow::Borrowed(req))),
            Ok((route, n)) => {
                // The route's handler sees the path parameters, as `handle` records them (on a
                // copy: rare, only for a client waiting for `100 Continue`).
                let mut with_params = req.clone();
                record_params(route, &found, n, &mut with_params);
                return Ok((&route.handler, Cow::Owned(with_params)));
            }
            Err(allowed) => allowed,
        };
        match self.unrouted_answer(req, allowed) {
            Ok(resp) => Err(resp),
            Err(fallback) => Ok((fallback, Cow::Borrowed(req))),
        }
    }

    /// Routes `req` by the routes from index `from` on: the first that matches path and method
    /// answers; else 405 with the methods of the routes whose path matched, else the fallback.
    #[inline(never)]
    fn route_from(&self, from: usize, mut req: WebRequest) {
        // Filled only by a pattern with parameters (a literal route needs none of it).
        let mut found = None;
        match self.find_for(from, req.request(), &mut found) {
            Ok((route, n)) => {
                record_params(route, &found, n, req.request_mut());
                route.handler.handle(req)
            }
            Err(allowed) => self.unrouted(req, allowed),
        }
    }

    /// [`find`](Self::find) for `req`, but that a request about the server as a whole
    /// ([`Request::is_server_wide`]) matches no route: not the path `/` an absolute-form
    /// target without one has.
    #[inline(always)]
    fn find_for(&self, from: usize, req: &Request, found: &mut Option<Found>) -> Result<(&Route, usize), u16> {
        let method = req.method();
        if method == Method::Options && req.is_server_wide() {
            return Err(0);
        }
        self.find(from, method, req.method_token(), req.path(), found)
    }

    /// The first route from index `from` on that takes `method` on `path`, and how many
    /// parameters it found (their ranges in `found`, filled only by a pattern with
    /// parameters); else the methods of the routes whose path matched.
    ///
    /// A HEAD request goes to a GET route only if no HEAD route of a pattern as specific
    /// (literals, parameters and a rest in the same places) matches too: a HEAD route added
    /// after the GET one was never reached (found reviewing the router). A route for any
    /// method after the GET route does not take it (review 67: HEAD went to the other methods'
    /// handler while GET went to the GET route).
    #[inline(always)]
    fn find(
        &self,
        from: usize,
        method: Method,
        token: &str,
        path: &str,
        found: &mut Option<Found>,
    ) -> Result<(&Route, usize), u16> {
        let mut allowed = 0u16;
        // A GET route that takes this HEAD request, while HEAD routes alike after it may take
        // it themselves. (Routes alike are next to each other: `add` orders them by specificity.
        // A path splits the same way for each, so `found` stays right for the GET route.)
        let mut by_get: Option<(&Route, usize)> = None;
        for route in &self.routes[from..] {
            if let Some((get, n)) = by_get
                && !alike(&get.segments, &route.segments)
            {
                return Ok((get, n));
            }
            let n = match &route.literal {
                Some(l) if !same_bytes(l.as_bytes(), path.as_bytes()) => continue,
                Some(_) => 0,
                None => match matches(&route.segments, path, found.get_or_insert_with(Default::default)) {
                    Some(n) => n,
                    None => continue,
                },
            };
            if route.takes(method, token) {
                if route.method.is_none() && by_get.is_some() {
                    // HEAD goes where GET goes: to the GET route before this one.
                    continue;
                }
                return Ok((route, n));
            }
            if method == Method::Head && route.method == Some(Method::Get) {
                by_get = by_get.or(Some((route, n)));
                continue;
            }
            if let Some(m) = route.method {
                allowed |= m.allowed_bits();
            }
        }
        by_get.ok_or(allowed)
    }

    /// No route answers `req`: if some route's path matched (`allowed`: their methods), 405
    /// with `Allow`, or 204 with it to `OPTIONS` (the router answers OPTIONS for the paths its
    /// routes name, so `Allow` lists it too); else the fallback (404 by default; `OPTIONS *`
    /// 204, see [`Router`]).
    #[cold]
    #[inline(never)]
    fn unrouted(&self, req: WebRequest, allowed: u16) {
        match self.unrouted_answer(req.request(), allowed) {
            Ok(resp) => req.respond(resp),
            Err(fallback) => fallback.handle(req),
        }
    }

    /// The router's own answer to a request no route takes, or the fallback that answers it.
    fn unrouted_answer(&self, req: &Request, allowed: u16) -> Result<Response, &Arc<dyn Handler>> {
        let unknown = req.method() == Method::Extension && !self.names(req.method_token());
        if allowed != 0 {
            if let Some(resp) = self.route_preflight(req) {
                return Ok(resp);
            }
            if unknown {
                return Ok(Response::status(StatusCode::NOT_IMPLEMENTED));
            }
            let status =
                if req.method() == Method::Options { StatusCode::NO_CONTENT } else { StatusCode::METHOD_NOT_ALLOWED };
            return Ok(Response::status(status).header("allow", self.allow(req.path(), allowed)));
        }
        let star = req.is_server_wide();
        match &self.fallback {
            Some(_) if star && self.not_found => Ok(self.server_options()),
            Some(f) => Err(f),
            None if star => Ok(self.server_options()),
            None if unknown => Ok(Response::status(StatusCode::NOT_IMPLEMENTED)),
            None => Ok(Response::status(StatusCode::NOT_FOUND)),
        }
    }

    /// Whether a route names the extension method `token`, or takes every extension method.
    fn names(&self, token: &str) -> bool {
        self.routes.iter().any(|r| r.method == Some(Method::Extension) && r.token.as_deref().is_none_or(|t| t == token))
    }

    /// The `Allow` of `path`, whose routes take the methods of `allowed` (and OPTIONS, which
    /// the router answers there): the known methods, then the tokens of the path's extension
    /// routes (a route for every extension method has none to list).
    fn allow(&self, path: &str, allowed: u16) -> String {
        let mut allow = Method::allow_list(allowed | Method::Options.bit());
        if allowed & Method::Extension.bit() != 0 {
            let mut found = Found::default();
            let tokens = self.routes.iter().filter_map(|r| {
                r.token.as_deref().filter(|_| {
                    r.literal.as_deref().map_or_else(|| matches(&r.segments, path, &mut found).is_some(), |l| l == path)
                })
            });
            for token in tokens {
                if !allow.split(", ").any(|t| t == token) {
                    allow.push_str(", ");
                    allow.push_str(token);
                }
            }
        }
        allow
    }

    /// A CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) to a path
    /// no route takes OPTIONS on is a question about the route that takes the method it names:
    /// that route's answer from the head alone ([`Handler::check_head`]), if it gives one — a
    /// [`Cors`](super::Cors) layer wrapping just that route answers its preflights (review 64:
    /// they got the router's bare 204, which a browser refuses).
    fn route_preflight(&self, req: &Request) -> Option<Response> {
        if req.method() != Method::Options || req.header("origin").is_none() {
            return None;
        }
        let asked_token = std::str::from_utf8(req.header("access-control-request-method")?.trim_ascii()).ok()?;
        let asked = Method::of_token(asked_token.as_bytes())?;
        let mut found = None;
        let (route, n) = self.find(0, asked, asked_token, req.path(), &mut found).ok()?;
        if n == 0 {
            return route.handler.check_head(req);
        }
        // Asked with the path parameters recorded, as `check_head` asks a route's handler.
        let mut with_params = req.clone();
        record_params(route, &found, n, &mut with_params);
        route.handler.check_head(&with_params)
    }

    /// The answer to `OPTIONS *`: 204, with `Allow` the methods of the routes (and OPTIONS,
    /// then the tokens of the extension routes) when every route names its method; without
    /// `Allow` when one takes any method, or every extension method (its handler decides, and
    /// the router cannot tell which it implements). (The tokens were left out: review 74.)
    fn server_options(&self) -> Response {
        let mut allowed = Method::Options.bit();
        let mut tokens: Vec<&str> = Vec::new();
        for route in &self.routes {
            match (route.method, route.token.as_deref()) {
                (None, _) | (Some(Method::Extension), None) => return Response::new(StatusCode::NO_CONTENT),
                (Some(_), Some(token)) if !tokens.contains(&token) => tokens.push(token),
                (Some(m), _) => allowed |= m.allowed_bits(),
            }
        }
        let mut allow = Method::allow_list(allowed);
        for token in tokens {
            allow.push_str(", ");
            allow.push_str(token);
        }
        Response::new(StatusCode::NO_CONTENT).header("allow", allow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> Option<Vec<String>> {
        let segs = parse(pattern).unwrap();
        let mut found: [(usize, Range<usize>); MAX_PARAMS] = Default::default();
        matches(&segs, path, &mut found).map(|n| found[..n].iter().map(|(_, r)| path[r.clone()].to_owned()).collect())
    }

    #[test]
    fn patterns_match_literals_params_and_rest() {
        assert_eq!(m("/", "/"), Some(vec![]));
        assert_eq!(m("/", "/a"), None);
        assert_eq!(m("/users/{id}", "/users/42"), Some(vec!["42".into()]));
        assert_eq!(m("/users/{id}", "/users/"), None);
        assert_eq!(m("/users/{id}", "/users/42/x"), None);
        assert_eq!(m("/a/{x}/b/{y}", "/a/1/b/2"), Some(vec!["1".into(), "2".into()]));
        assert_eq!(m("/files/{*rest}", "/files/a/b/c"), Some(vec!["a/b/c".into()]));
        assert_eq!(m("/files/{*rest}", "/files"), Some(vec!["".into()]));
        assert_eq!(m("/orders", "/orders"), Some(vec![]));
        assert_eq!(m("/orders", "/orders/"), None);
    }

    #[test]
    fn literals_compare_as_bytes_at_every_length() {
        let long = "/abcdefghijklmnopqrstuvwxyz0123456789";
        for n in 0..long.len() {
            let a = &long.as_bytes()[..n];
            assert!(same_bytes(a, a));
            for i in 0..n {
                let mut b = a.to_vec();
                b[i] ^= 1;
                assert!(!same_bytes(a, &b), "length {n}, byte {i}");
            }
            assert!(!same_bytes(a, &long.as_bytes()[..n + 1]));
        }
    }

    #[test]
    fn malformed_patterns_are_refused() {
        assert!(parse("users").is_err());
        assert!(parse("/{a").is_err());
        assert!(parse("/{*r}/x").is_err());
        assert!(parse("/{}").is_err());
        assert!(parse("/{*}").is_err());
        assert!(parse("/a/{*r{}").is_err());
        assert!(parse("/{a}/{a}").is_err());
        assert!(parse("/{a}/x/{*a}").is_err());
        assert!(parse("/caf\u{e9}").is_ok(), "a path sent raw holds UTF-8");
        assert!(parse("/a b").is_err());
        assert!(parse("/a\tb").is_err());
        assert!(parse("/a\u{7f}").is_err());
        assert!(parse("/a?b").is_err());
        assert!(parse("/a#b").is_err());
        assert!(parse("/caf%C3%A9/{a}/{b}").is_ok());
        assert!(parse("/:@!$&'()*+,;=-._~").is_ok());
    }

    /// `route_layer` wraps the routes added before it, and nothing else.
    #[test]
    fn a_route_layer_wraps_the_routes_added_before_it() {
        use crate::web::guard;
        let deny = || guard(|_: &Request| Some(Response::status(StatusCode::FORBIDDEN)));
        let router = Router::new()
            .get("/a", |_: &Request| Response::text("a"))
            .route("/b/{x}", |_: &Request| Response::text("b"))
            .route_layer(deny())
            .get("/c", |_: &Request| Response::text("c"))
            .fallback(|_: &Request| Response::text("fallback"));
        let status = |method, target| {
            crate::web::answer_at_once(&router, Request::new(method, target)).expect("answered").status
        };
        assert_eq!(status(Method::Get, "/a"), StatusCode::FORBIDDEN);
        assert_eq!(status(Method::Post, "/b/1"), StatusCode::FORBIDDEN);
        assert_eq!(answer(&router, Method::Get, "/c"), "c");
        assert_eq!(answer(&router, Method::Get, "/nowhere"), "fallback");
        assert_eq!(status(Method::Post, "/a"), StatusCode::METHOD_NOT_ALLOWED, "the router's own answer");
    }

    /// `OPTIONS http://host` (no path, no query) asks about the server as `OPTIONS *` does,
    /// not about `/` (RFC 9112 §3.2.4): before, a route on `/` (or `{*rest}`) answered it.
    #[test]
    fn options_for_an_absolute_form_without_a_path_asks_about_the_server() {
        let router = Router::new()
            .route("/", |_: &Request| Response::text("root"))
            .post("/items", |_: &Request| Response::text("posted"));
        for target in ["*", "http://example.com", "http://example.com:8001"] {
            let resp = crate::web::answer_at_once(&router, Request::new(Method::Options, target)).expect("answered");
            assert_eq!((resp.status, resp.body_bytes()), (StatusCode::NO_CONTENT, &b""[..]), "{target}");
            assert_eq!(resp.header_value("allow"), None, "{target}: a route takes any method");
        }
        for target in ["/", "http://example.com/", "http://example.com?", "http://example.com?a"] {
            assert_eq!(answer(&router, Method::Options, target), "root", "{target}");
        }
        assert_eq!(answer(&router, Method::Get, "http://example.com"), "root");
        let rest = Router::new().route("/{*rest}", |_: &Request| Response::text("rest"));
        let resp = crate::web::answer_at_once(&rest, Request::new(Method::Options, "http://h")).expect("answered");
        assert_eq!(resp.status, StatusCode::NO_CONTENT);
        let named = Router::new().get("/", |_: &Request| Response::text("root"));
        let resp = crate::web::answer_at_once(&named, Request::new(Method::Options, "http://h")).expect("answered");
        assert_eq!(resp.header_value("allow"), Some(&b"GET, HEAD, OPTIONS"[..]));
    }

    fn answer(router: &Router, method: Method, target: &str) -> String {
        let resp = crate::web::answer_at_once(router, Request::new(method, target)).expect("answered");
        String::from_utf8_lossy(resp.body_bytes()).into_owned()
    }

    /// A HEAD route beside a GET route of a pattern alike answers HEAD, whichever was added
    /// first; a GET route still answers HEAD where no such route is (mutation: the GET route
    /// added first took every HEAD).
    #[test]
    fn head_goes_to_a_route_that_takes_head_itself() {
        let text = |s: &'static str| move |_: &Request| Response::text(s);
        for get_first in [true, false] {
            let mut r = Router::new();
            if get_first {
                r = r.get("/a", text("get a")).get("/p/{x}", text("get p"));
            }
            r = r.method(Method::Head, "/a", text("head a")).method(Method::Head, "/p/{y}", text("head p"));
            r = r.route("/any/{x}", text("any")).get("/any/{x}", text("get any"));
            r = r.get("/q/{x}", text("get q")).get("/r/{x}", text("get r")).method(
                Method::Head,
                "/q/{x}",
                text("head q"),
            );
            if !get_first {
                r = r.get("/a", text("get a")).get("/p/{x}", text("get p"));
            }
            assert_eq!(answer(&r, Method::Head, "/a"), "head a", "get first: {get_first}");
            assert_eq!(answer(&r, Method::Get, "/a"), "get a");
            assert_eq!(answer(&r, Method::Head, "/p/1"), "head p");
            assert_eq!(answer(&r, Method::Get, "/p/1"), "get p");
            assert_eq!(answer(&r, Method::Head, "/any/1"), "any");
            assert_eq!(answer(&r, Method::Head, "/q/1"), "head q");
            assert_eq!(answer(&r, Method::Head, "/r/1"), "get r");
        }
    }
}
