//! A model-based randomized trial of the router (`src/web/router.rs`): seeded route tables and
//! request targets, each answer checked against a small reference model written from the
//! documented rules.
//!
//! The rules the model holds the router to, and where they are written:
//! - A pattern is `/`-separated segments: a literal, `{name}` (one non-empty segment), or a
//!   last `{*name}` (the rest of the path, may be empty: `/files/{*rest}` takes `/files` and
//!   `/files/` with `""`) — `Router` and `Segment::Rest`'s docs, the module's unit tests.
//! - Patterns are matched against the raw path ([`Request::path`]: "raw, not percent-decoded";
//!   the query and an absolute-form target's scheme and authority are no part of it), so a
//!   `%2F` is never a separator and `%61` is not `a`. Parameters are the raw text
//!   ([`Request::param`]), [`Request::param_decoded`] its `%XX` decoding (a `%` without two hex
//!   digits kept; not UTF-8: `Err`).
//! - Precedence (`Router`'s docs): of the patterns that match, the most specific, segment by
//!   segment a literal before a parameter before a `{*rest}` (a pattern that ended before one
//!   that goes on: `specificity`), whatever the order they were added in; among alike, the
//!   first added. The first of those that takes the method answers (a GET route takes HEAD:
//!   `Router::get`, unless a HEAD route alike is there; a route for any method after the GET
//!   route does not take its HEAD); if none does, 405 with `Allow` = the matching routes' methods, HEAD with GET,
//!   and OPTIONS — or, to OPTIONS, 204 with that `Allow`.
//! - No pattern matches: the fallback (`Router::fallback`), or `not_found`'s answer, or 404.
//!   `OPTIONS *` (and `OPTIONS http://h`, no path or query) matches no route: with a `fallback`, the fallback; else 204 with an `Allow`
//!   of every route's method (with OPTIONS) when every route names one, no `Allow` otherwise
//!   (`Router`, `Router::not_found`, `Core::server_options`).
//! - Extension methods (`Router`'s last paragraph, `Router::on`, `Router::method`): a request's
//!   method is a token, case-sensitive (`propfind` is no `PROPFIND`, `get` no GET); one pinion
//!   has no name for is `Method::Extension`. An `on(token, ..)` route takes that token (`on`
//!   with a known method's token is `method(..)`: `on("GET", ..)` takes HEAD too), a
//!   `method(Method::Extension, ..)` route every extension method, a route for any method all
//!   of them. One that no route names (no `on` route with its token, no route for every
//!   extension method) is answered 501 where a known method would get the router's 405 or 404
//!   (not where the fallback or `not_found` answers); one named elsewhere gets the 405, whose
//!   `Allow` lists the path's extension tokens after its known methods (each once; their order
//!   is left open), as the 204 to `OPTIONS` there does. `OPTIONS *`'s `Allow` lists them too;
//!   a route for every extension method names no method, so none is given then.
//! - A layer on the router (`Router::layer`) sees every request and answer, the router's own
//!   404/405/204 too, and no path parameters (recorded after the layers ran); its hook sees
//!   the request that came back with the answer, with them (`RequestSummary::request`). A
//!   layer on one route's handler sees the parameters, when handling and when asked with the
//!   head alone (`Handler::check_head`).
//!
//! Requests use known methods and extension ones (routed tokens, `BREW` that none routes, case
//! variants); each answer's `Allow` is checked against the methods and tokens it lists.
//!
//! Each case is answered three ways: `answer_at_once` on a built request, the same with a body
//! and `Expect: 100-continue` (the head asked first), and the request's bytes through
//! `serve_blocking` (the target as the parser reads it). A few cases go over a real socket.
//!
//! Replay a seed: `ROUTER_MODEL_SEED=<seed> cargo test --test router_model60 -- --nocapture`;
//! more seeds: `ROUTER_MODEL_SEEDS=<n>` (from `ROUTER_MODEL_FROM`).

mod review_support;
mod support;

use std::sync::Arc;
use std::time::Instant;

use pinion::http::{HttpLimits, Method, Request, Response, StatusCode, serve_blocking};
use pinion::web::{Layer, RequestSummary, Router, answer_at_once, guard, hook};
use support::wire::Wire;

// ---------------------------------------------------------------------------------------------
// A small seeded generator.

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True `percent` times in 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

// ---------------------------------------------------------------------------------------------
// Route tables.

#[derive(Clone, Debug, PartialEq)]
enum Seg {
    Lit(String),
    Param(String),
    Rest(String),
}

#[derive(Clone, Debug)]
struct RouteSpec {
    id: usize,
    segs: Vec<Seg>,
    /// `None`: `Router::route` (any method). `Some(Method::Extension)` with no `token`:
    /// `Router::method(Method::Extension, ..)` (every extension method).
    method: Option<Method>,
    /// `Router::on(token, ..)`: an extension method's token (`method` is
    /// `Some(Method::Extension)`), or a known method's (`on("GET", ..)`: `method` is that one,
    /// and the route must act as `method(..)` does).
    token: Option<String>,
    /// Wrapped in a route-level guard and hook.
    layered: bool,
}

impl RouteSpec {
    fn pattern(&self) -> String {
        if self.segs.is_empty() {
            return "/".into();
        }
        self.segs
            .iter()
            .map(|s| match s {
                Seg::Lit(l) => format!("/{l}"),
                Seg::Param(n) => format!("/{{{n}}}"),
                Seg::Rest(n) => format!("/{{*{n}}}"),
            })
            .collect()
    }
    fn param_names(&self) -> Vec<&str> {
        self.segs
            .iter()
            .filter_map(|s| match s {
                Seg::Param(n) | Seg::Rest(n) => Some(n.as_str()),
                Seg::Lit(_) => None,
            })
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Unmatched {
    Default,
    NotFound,
    Fallback,
}

#[derive(Clone, Debug)]
struct Table {
    /// In the order added.
    routes: Vec<RouteSpec>,
    unmatched: Unmatched,
    /// A guard and a hook on the whole router.
    outer: bool,
}

/// Every parameter name a pattern may use (a segment's index names it; the rest is `rest`).
const NAMES: [&str; 10] = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "rest"];

const LITERALS: &[&str] =
    &["a", "a", "b", "b", "users", "files", "x.y", "A", "a%2Fb", "caf%C3%A9", "..", ".", "-", "~u", "", "%61"];

const METHODS: [Method; 7] =
    [Method::Get, Method::Head, Method::Post, Method::Put, Method::Patch, Method::Delete, Method::Options];

/// Extension methods routes name (`Router::on`).
const ROUTED_TOKENS: [&str; 2] = ["PROPFIND", "MKCOL"];

/// Extension methods requests use: the routed ones, one no route names, case variants (other
/// tokens: methods are case-sensitive, `get` is no GET) and one-byte and odd-`tchar` ones.
const REQUEST_TOKENS: [&str; 9] =
    ["PROPFIND", "MKCOL", "PROPFIND", "BREW", "propfind", "get", "head", "X", "M-SEARCH!~"];

fn gen_segs(rng: &mut Rng) -> Vec<Seg> {
    // Now and then a long pattern: up to eight parameters (`MAX_PARAMS`) and a rest.
    let n = if rng.chance(3) { &9 } else { rng.pick(&[0, 1, 1, 2, 2, 2, 3, 3, 4]) };
    let mut segs = Vec::new();
    for (i, name) in NAMES.iter().enumerate().take(*n) {
        let r = rng.below(100);
        let params = segs.iter().filter(|s| !matches!(s, Seg::Lit(_))).count();
        let seg = if params == 8 {
            Seg::Lit((*rng.pick(LITERALS)).into())
        } else if i + 1 == *n && r < 15 {
            Seg::Rest("rest".into())
        } else if r < if *n > 4 { 80 } else { 40 } {
            Seg::Param((*name).into())
        } else {
            Seg::Lit((*rng.pick(LITERALS)).into())
        };
        segs.push(seg);
    }
    // An empty literal only between others or last (`/a//b`, `/a/`): `//x` and `/` alone
    // are other patterns, kept rarer.
    if segs.first() == Some(&Seg::Lit(String::new())) && !rng.chance(20) {
        segs[0] = Seg::Lit("a".into());
    }
    segs
}

fn gen_table(rng: &mut Rng) -> Table {
    let n = rng.pick(&[0, 1, 2, 3, 4, 6, 8, 10, 14]);
    let mut routes: Vec<RouteSpec> = Vec::new();
    for id in 0..*n {
        // Often a pattern close to one before: the same with another method, or one segment
        // changed (overlaps such as `/a/{x}` and `/a/b`).
        let segs = if !routes.is_empty() && rng.chance(45) {
            let mut segs = rng.pick(&routes).segs.clone();
            if !segs.is_empty() && rng.chance(60) {
                let i = rng.below(segs.len());
                segs[i] = match rng.below(3) {
                    0 => Seg::Lit((*rng.pick(LITERALS)).into()),
                    1 => Seg::Param(NAMES[i].into()),
                    _ if i + 1 == segs.len() => Seg::Rest("rest".into()),
                    _ => Seg::Param(NAMES[i].into()),
                };
                if i + 1 < segs.len() && matches!(segs[i], Seg::Rest(_)) {
                    segs[i] = Seg::Param(NAMES[i].into());
                }
            } else if rng.chance(30) && segs.len() < 4 && !matches!(segs.last(), Some(Seg::Rest(_))) {
                segs.push(if rng.chance(50) { Seg::Rest("rest".into()) } else { Seg::Param(NAMES[segs.len()].into()) });
            }
            segs
        } else {
            gen_segs(rng)
        };
        // At most eight parameters (more is refused: a deterministic test below).
        let segs = if segs.iter().filter(|s| !matches!(s, Seg::Lit(_))).count() > 8 { gen_segs(rng) } else { segs };
        // `/` followed by an empty literal is the pattern `/` (no segments).
        let segs = if segs == [Seg::Lit(String::new())] { Vec::new() } else { segs };
        let (method, token) = if rng.chance(20) {
            (None, None)
        } else if rng.chance(5) {
            (Some(Method::Trace), None)
        } else if rng.chance(15) {
            // `on` with an extension method's token.
            (Some(Method::Extension), Some((*rng.pick(&ROUTED_TOKENS)).to_owned()))
        } else if rng.chance(5) {
            // Every extension method.
            (Some(Method::Extension), None)
        } else if rng.chance(5) {
            // `on` with a known method's token: as `method` (a GET route takes HEAD too).
            let m = *rng.pick(&[Method::Get, Method::Get, Method::Head, Method::Post, Method::Options]);
            (Some(m), Some(m.as_str().to_owned()))
        } else {
            (Some(*rng.pick(&METHODS)), None)
        };
        routes.push(RouteSpec { id, segs, method, token, layered: false });
    }
    if !routes.is_empty() && rng.chance(50) {
        let i = rng.below(routes.len());
        routes[i].layered = true;
    }
    let unmatched = *rng.pick(&[Unmatched::Default, Unmatched::Default, Unmatched::NotFound, Unmatched::Fallback]);
    Table { routes, unmatched, outer: rng.chance(40) }
}

/// The parameters a request carries, as `name=raw` joined by `;` (names in `NAMES` order).
fn params_seen(r: &Request) -> String {
    NAMES.iter().filter_map(|n| r.param(n).map(|v| format!("{n}={v}"))).collect::<Vec<_>>().join(";")
}

/// A route's handler: `x-route: <id>`; the body lists each parameter present, raw and decoded.
fn route_handler(id: usize) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
    move |r: &Request| {
        let mut body = format!("route {id}\n");
        for n in NAMES {
            if let Some(raw) = r.param(n) {
                let dec = match r.param_decoded(n) {
                    Some(Ok(d)) => d.into_owned(),
                    Some(Err(_)) => "<not utf-8>".into(),
                    None => "<none>".into(),
                };
                body.push_str(&format!("{n}={raw}\t{dec}\n"));
            }
        }
        Response::text(body).header("x-route", id.to_string())
    }
}

fn build(table: &Table) -> Router {
    let mut router = Router::new();
    for r in &table.routes {
        let pattern = r.pattern();
        let handler = route_handler(r.id);
        let handler: Arc<dyn pinion::web::Handler> = if r.layered {
            let names: Vec<String> = r.param_names().into_iter().map(str::to_owned).collect();
            let id = r.id;
            let inner = guard(move |q: &Request| {
                if q.header("x-deny").is_some() {
                    return Some(Response::status(StatusCode::FORBIDDEN).header("x-denied-by", id.to_string()));
                }
                let missing = names.iter().any(|n| q.param(n).is_none());
                missing.then(|| Response::text("route layer saw no parameters").with_status(StatusCode(599)))
            })
            .wrap(Arc::new(handler));
            hook(|s: &RequestSummary<'_>, resp: &mut Response| resp.set_header("x-inner", params_seen(s.request)))
                .wrap(inner)
        } else {
            Arc::new(handler)
        };
        router = match (&r.token, r.method) {
            (Some(token), _) => router.on(token, &pattern, handler),
            (None, None) => router.route(&pattern, handler),
            (None, Some(m)) => router.method(m, &pattern, handler),
        };
    }
    router = match table.unmatched {
        Unmatched::Default => router,
        Unmatched::NotFound => router.not_found(|r: &Request| {
            Response::text(format!("nf {}", params_seen(r))).with_status(StatusCode::NOT_FOUND).header("x-nf", "1")
        }),
        Unmatched::Fallback => {
            router.fallback(|r: &Request| Response::text(format!("fb {}", params_seen(r))).header("x-fb", "1"))
        }
    };
    if table.outer {
        router = router
            .layer(guard(|r: &Request| {
                if r.header("x-stop").is_some() {
                    return Some(Response::status(StatusCode::UNAUTHORIZED).header("x-stopped", "1"));
                }
                let seen = params_seen(r);
                (!seen.is_empty())
                    .then(|| Response::text(format!("outer layer saw {seen}")).with_status(StatusCode(598)))
            }))
            .layer(hook(|s: &RequestSummary<'_>, resp: &mut Response| {
                resp.set_header("x-outer", format!("[{}]", params_seen(s.request)))
            }));
    }
    router
}

// ---------------------------------------------------------------------------------------------
// Requests.

#[derive(Clone, Debug)]
struct Case {
    /// `Method::from_token(token)`, or `Method::Extension`.
    method: Method,
    /// The method's token as sent.
    token: String,
    target: String,
    deny: bool,
    stop: bool,
}

impl Case {
    /// The same request with the method named `token`.
    fn with_token(&self, token: &str) -> Case {
        let method = Method::from_token(token).unwrap_or(Method::Extension);
        Case { method, token: token.to_owned(), ..self.clone() }
    }
}

const VALUES: &[&str] = &[
    "1",
    "42",
    "x",
    "a",
    "b",
    "users",
    "files",
    "A",
    "%2F",
    "a%2Fb",
    "%2f",
    "%00",
    "%zz",
    "%",
    "%4",
    "caf%C3%A9",
    "%FF",
    "%C3",
    "..",
    ".",
    "~",
    "a.b",
    "%61",
    "-_",
    "@:!$&'()*+,;=",
    "%20",
    "%E2%82%AC",
    "x.y",
    "%2E%2E",
];

/// A path built on one route's pattern (so it often matches), then perhaps bent into a near miss.
fn path_for(rng: &mut Rng, table: &Table) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !table.routes.is_empty() && rng.chance(80) {
        let route = rng.pick(&table.routes);
        for s in &route.segs {
            match s {
                Seg::Lit(l) => parts.push(l.clone()),
                Seg::Param(_) => parts.push((*rng.pick(VALUES)).into()),
                Seg::Rest(_) => {
                    for _ in 0..rng.below(4) {
                        parts.push((*rng.pick(VALUES)).into());
                    }
                    if rng.chance(15) {
                        parts.push(String::new());
                    }
                }
            }
        }
    } else {
        for _ in 0..rng.below(4) {
            parts.push(if rng.chance(50) { (*rng.pick(LITERALS)).into() } else { (*rng.pick(VALUES)).into() });
        }
    }
    let mut path = if parts.is_empty() { "/".to_owned() } else { parts.iter().map(|p| format!("/{p}")).collect() };
    // Near misses.
    if rng.chance(40) {
        match rng.below(9) {
            0 => path.push('/'),
            1 if path.len() > 1 && path.ends_with('/') => {
                path.pop();
            }
            2 => {
                // An empty segment somewhere.
                let slashes: Vec<usize> = path.match_indices('/').map(|(i, _)| i).collect();
                let at = *rng.pick(&slashes);
                path.insert(at, '/');
            }
            3 => {
                // One '/' (not the first) sent as %2F.
                let slashes: Vec<usize> = path.match_indices('/').map(|(i, _)| i).skip(1).collect();
                if !slashes.is_empty() {
                    let at = *rng.pick(&slashes);
                    path.replace_range(at..at + 1, if rng.chance(50) { "%2F" } else { "%2f" });
                }
            }
            4 => {
                // A letter sent percent-encoded.
                if let Some(at) = path.find(|c: char| c.is_ascii_lowercase()) {
                    let c = path.as_bytes()[at];
                    path.replace_range(at..at + 1, &format!("%{c:02X}"));
                }
            }
            5 => path.push_str(if rng.chance(50) { "/.." } else { "/." }),
            6 => path.insert_str(0, if rng.chance(50) { "/a/.." } else { "/." }),
            7 => path = path.to_ascii_uppercase(),
            _ => {
                // A very long segment.
                let n = *rng.pick(&[300, 2000, 7000, 9000]);
                path.push('/');
                path.extend(std::iter::repeat_n('z', n));
            }
        }
    }
    path
}

const QUERIES: &[&str] = &["", "x=1", "a/b", "%2F/..", "q=caf%C3%A9&r", "?/x"];
const AUTHORITIES: &[&str] = &["h", "h:80", "example.com"];

fn gen_case(rng: &mut Rng, table: &Table) -> Case {
    let routed: Vec<&str> = table
        .routes
        .iter()
        .filter(|r| r.method == Some(Method::Extension))
        .filter_map(|r| r.token.as_deref())
        .collect();
    let token = if rng.chance(3) {
        "TRACE"
    } else if rng.chance(18) {
        // Often a token the table routes.
        if !routed.is_empty() && rng.chance(40) { rng.pick(&routed) } else { rng.pick(&REQUEST_TOKENS) }
    } else {
        rng.pick(&METHODS).as_str()
    };
    let method = Method::from_token(token).unwrap_or(Method::Extension);
    let mut target = if method == Method::Options && rng.chance(15) { "*".to_owned() } else { path_for(rng, table) };
    if target != "*" && rng.chance(20) {
        target.push('?');
        let query = rng.pick(QUERIES);
        target.push_str(query);
    }
    if target != "*" && rng.chance(10) {
        let authority = rng.pick(AUTHORITIES);
        target = if target.starts_with("/?") && rng.chance(50) {
            format!("http://{authority}{}", &target[1..])
        } else if target == "/" && rng.chance(50) {
            format!("http://{authority}")
        } else {
            format!("http://{authority}{target}")
        };
    }
    Case { method, token: token.to_owned(), target, deny: rng.chance(10), stop: rng.chance(5) }
}

// ---------------------------------------------------------------------------------------------
// The model.

/// What the router should answer.
#[derive(Debug, PartialEq)]
struct Expected {
    status: u16,
    /// `x-route`: the route whose handler answered.
    route: Option<usize>,
    /// Its parameters: (name, raw, decoded).
    params: Vec<(String, String, String)>,
    allow: Option<String>,
    not_found: bool,
    fallback: bool,
    /// `x-inner` (a route-level hook ran): the parameters it saw.
    inner: Option<String>,
    /// `x-outer` (the router-level hook): the parameters it saw.
    outer: Option<String>,
}

/// The path of a target, from RFC 9112 §3.2: origin-form up to `?`; absolute-form after the
/// authority (`/` if none); `*` itself.
fn model_path(target: &str) -> &str {
    if target.starts_with('/') || target == "*" {
        return target.split('?').next().unwrap_or("");
    }
    let after = target.find("://").map_or(0, |i| i + 3);
    let rest = &target[after..];
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let path = rest[auth_end..].split('?').next().unwrap_or("");
    if path.is_empty() { "/" } else { path }
}

/// Whether `OPTIONS` with `target` asks about the server: `*`, or an absolute-form target
/// with neither a path nor a query (`Request::is_server_wide`).
fn model_server_wide(target: &str) -> bool {
    target == "*" || target.find("://").is_some_and(|i| !target[i + 3..].contains(['/', '?']))
}

/// `%XX` decoded, other `%` kept; `None` if not UTF-8.
fn model_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: Option<&u8>| c.and_then(|&c| (c as char).to_digit(16));
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (hex(b.get(i + 1)), hex(b.get(i + 2)))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The parameters if `segs` matches `path` (split at every `/`, nothing decoded).
fn model_match(segs: &[Seg], path: &str) -> Option<Vec<(String, String)>> {
    let rest = path.strip_prefix('/')?;
    if segs.is_empty() {
        return rest.is_empty().then(Vec::new);
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let mut params = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        match seg {
            Seg::Rest(n) => {
                let value = if i < parts.len() { parts[i..].join("/") } else { String::new() };
                params.push((n.clone(), value));
                return Some(params);
            }
            Seg::Lit(l) => {
                if parts.get(i) != Some(&l.as_str()) {
                    return None;
                }
            }
            Seg::Param(n) => match parts.get(i) {
                Some(p) if !p.is_empty() => params.push((n.clone(), (*p).to_owned())),
                _ => return None,
            },
        }
    }
    (parts.len() == segs.len()).then_some(params)
}

/// Segment by segment: ended 0, literal 1, parameter 2, rest 3 (the smaller the more specific).
fn model_rank(segs: &[Seg]) -> Vec<u8> {
    segs.iter()
        .map(|s| match s {
            Seg::Lit(_) => 1,
            Seg::Param(_) => 2,
            Seg::Rest(_) => 3,
        })
        .collect()
}

/// Whether `route` takes the request's method: a route for any method every one, a GET route
/// HEAD too, an `on(token, ..)` route that token (case-sensitive), a route for every extension
/// method each of those (`Router`, `Router::method`, `Router::on`).
fn takes(route: &RouteSpec, case: &Case) -> bool {
    match (route.method, &route.token) {
        (None, _) => true,
        (Some(Method::Extension), Some(token)) => case.method == Method::Extension && *token == case.token,
        (Some(Method::Extension), None) => case.method == Method::Extension,
        (Some(r), _) => r == case.method || (r == Method::Get && case.method == Method::Head),
    }
}

/// Whether the table names the extension method `token`: an `on(token, ..)` route, or a route
/// for every extension method, anywhere (`Router`: "one no route names is answered 501").
fn named(table: &Table, token: &str) -> bool {
    table.routes.iter().any(|r| r.method == Some(Method::Extension) && r.token.as_deref().is_none_or(|t| t == token))
}

/// An `Allow` value of `routes`: their known methods (HEAD with GET, and OPTIONS), in the order
/// of `Method::ALL`, then the tokens of their extension routes, each once (in the form of
/// [`normal_allow`]).
fn allow_of<'a>(routes: impl IntoIterator<Item = &'a RouteSpec>) -> String {
    let mut set: Vec<Method> = vec![Method::Options];
    let mut tokens: Vec<&str> = Vec::new();
    for r in routes {
        match (r.method, &r.token) {
            (Some(Method::Extension), Some(t)) => tokens.push(t),
            (Some(Method::Extension), None) | (None, _) => {}
            (Some(m), _) => {
                set.push(m);
                if m == Method::Get {
                    set.push(Method::Head);
                }
            }
        }
    }
    tokens.sort_unstable();
    tokens.dedup();
    let known = Method::ALL.iter().filter(|m| set.contains(m)).map(|m| m.as_str());
    known.chain(tokens).collect::<Vec<_>>().join(", ")
}

/// An `Allow` value with its extension tokens (after the known methods, in an order the docs
/// leave open) sorted; the known methods and any repeated token are kept as they came.
fn normal_allow(allow: &str) -> String {
    let (known, mut tokens): (Vec<&str>, Vec<&str>) = allow.split(", ").partition(|t| Method::from_token(t).is_some());
    tokens.sort_unstable();
    known.into_iter().chain(tokens).collect::<Vec<_>>().join(", ")
}

fn fmt_params(params: &[(String, String)]) -> String {
    NAMES
        .iter()
        .filter_map(|n| params.iter().find(|(p, _)| p == n).map(|(p, v)| format!("{p}={v}")))
        .collect::<Vec<_>>()
        .join(";")
}

/// The model's answer. `head_first`: the request announced a body with `Expect:
/// 100-continue`, so the router was asked with the head alone first.
fn model(table: &Table, case: &Case, head_first: bool) -> Expected {
    let mut e = Expected {
        status: 0,
        route: None,
        params: Vec::new(),
        allow: None,
        not_found: false,
        fallback: false,
        inner: None,
        outer: None,
    };
    if table.outer && case.stop {
        e.status = 401;
        e.outer = Some("[]".into());
        return e;
    }
    let path = model_path(&case.target);
    let server_wide = case.method == Method::Options && model_server_wide(&case.target);
    let unnamed = case.method == Method::Extension && !named(table, &case.token);
    let mut matching: Vec<(&RouteSpec, Vec<(String, String)>)> = if server_wide {
        Vec::new()
    } else {
        table.routes.iter().filter_map(|r| model_match(&r.segs, path).map(|p| (r, p))).collect()
    };
    matching.sort_by(|a, b| model_rank(&a.0.segs).cmp(&model_rank(&b.0.segs)).then(a.0.id.cmp(&b.0.id)));
    // Whether the answer came from the router asked with the head alone: an outer hook then
    // sees that head (no parameters).
    let mut from_head = true;
    let mut seen = String::new();
    let mut chosen = matching.iter().find(|(r, _)| takes(r, case));
    if let Some((get, _)) = chosen
        && case.method == Method::Head
        && get.method == Some(Method::Get)
    {
        // A HEAD route of a pattern alike goes before the GET route (a route for any method
        // before it was chosen already; one after it does not take HEAD from it).
        let rank = model_rank(&get.segs);
        if let Some(own) = matching.iter().find(|(r, _)| model_rank(&r.segs) == rank && r.method == Some(Method::Head))
        {
            chosen = Some(own);
        }
    }
    if let Some((route, params)) = chosen {
        seen = fmt_params(params);
        if route.layered && case.deny {
            e.status = 403;
        } else {
            from_head = false;
            e.status = 200;
            e.route = Some(route.id);
            e.params = params
                .iter()
                .map(|(n, v)| (n.clone(), v.clone(), model_decode(v).unwrap_or_else(|| "<not utf-8>".into())))
                .collect();
            e.params.sort_by_key(|(n, _, _)| NAMES.iter().position(|x| x == n));
        }
        if route.layered {
            e.inner = Some(seen.clone());
        }
    } else if !matching.is_empty() && unnamed {
        // RFC 9110 §15.6.2: a method the server does not recognize (no route names it).
        e.status = 501;
    } else if !matching.is_empty() {
        e.status = if case.method == Method::Options { 204 } else { 405 };
        e.allow = Some(allow_of(matching.iter().map(|(r, _)| *r)));
    } else if server_wide && table.unmatched != Unmatched::Fallback {
        e.status = 204;
        // Every route names its method: a route for any method, or for every extension
        // method, does not.
        if table.routes.iter().all(|r| r.method.is_some() && (r.method != Some(Method::Extension) || r.token.is_some()))
        {
            e.allow = Some(allow_of(&table.routes));
        }
    } else {
        match table.unmatched {
            Unmatched::Default if unnamed => e.status = 501,
            Unmatched::Default => e.status = 404,
            Unmatched::NotFound => {
                e.status = 404;
                e.not_found = true;
            }
            Unmatched::Fallback => {
                from_head = false;
                e.status = 200;
                e.fallback = true;
            }
        }
    }
    if table.outer {
        let hook_saw = if head_first && from_head { String::new() } else { seen };
        e.outer = Some(format!("[{hook_saw}]"));
    }
    e
}

// ---------------------------------------------------------------------------------------------
// Checking.

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.header_value(name).map(|v| String::from_utf8_lossy(v).into_owned())
}

fn observed(resp: &Response) -> Expected {
    let body = String::from_utf8_lossy(resp.body_bytes()).into_owned();
    let route = header(resp, "x-route").map(|r| r.parse().expect("x-route"));
    let params = if route.is_some() {
        body.lines()
            .skip(1)
            .map(|l| {
                let (n, rest) = l.split_once('=').expect("name=");
                let (raw, dec) = rest.split_once('\t').expect("raw\\tdecoded");
                (n.to_owned(), raw.to_owned(), dec.to_owned())
            })
            .collect()
    } else {
        Vec::new()
    };
    Expected {
        status: resp.status.0,
        route,
        params,
        allow: header(resp, "allow").map(|a| normal_allow(&a)),
        not_found: header(resp, "x-nf").is_some(),
        fallback: header(resp, "x-fb").is_some(),
        inner: header(resp, "x-inner"),
        outer: header(resp, "x-outer"),
    }
}

fn request_of(case: &Case) -> Request {
    let mut req = Request::new(Method::Get, &case.target).with_method_token(&case.token).with_header("host", "h");
    if case.deny {
        req = req.with_header("x-deny", "1");
    }
    if case.stop {
        req = req.with_header("x-stop", "1");
    }
    req
}

fn describe(table: &Table, case: &Case) -> String {
    let mut s = String::from("routes (in the order added):\n");
    for r in &table.routes {
        let m = match (&r.token, r.method) {
            (Some(t), _) => format!("on({t})"),
            (None, None) => "any".into(),
            (None, Some(Method::Extension)) => "every extension method".into(),
            (None, Some(m)) => m.as_str().into(),
        };
        let layered = if r.layered { " (route layer)" } else { "" };
        s.push_str(&format!("  #{} {m} {}{layered}\n", r.id, r.pattern()));
    }
    s.push_str(&format!("  unmatched: {:?}, router layers: {}\n", table.unmatched, table.outer));
    let target = if case.target.len() > 200 {
        format!("{}…({} bytes)", &case.target[..200], case.target.len())
    } else {
        case.target.clone()
    };
    s.push_str(&format!("request: {} {target} deny={} stop={}", case.token, case.deny, case.stop));
    s
}

/// How many cases reached each outcome (so a generator gone blind fails the default run).
#[derive(Default, Debug)]
struct Coverage {
    routed: usize,
    with_params: usize,
    many_params: usize,
    encoded_slash_in_param: usize,
    rest_with_slash: usize,
    head_by_get: usize,
    not_allowed: usize,
    options_auto: usize,
    options_star: usize,
    not_found: usize,
    fallback: usize,
    route_layer: usize,
    denied: usize,
    stopped: usize,
    absolute: usize,
    refused_by_parser: usize,
    ext_routed: usize,
    ext_by_every: usize,
    ext_not_implemented: usize,
    ext_not_allowed: usize,
    allow_with_tokens: usize,
    on_known: usize,
}

impl Coverage {
    fn count(&mut self, table: &Table, case: &Case, want: &Expected) {
        let c = |b: bool| usize::from(b);
        self.routed += c(want.route.is_some());
        self.with_params += c(!want.params.is_empty());
        self.many_params += c(want.params.len() >= 5);
        self.encoded_slash_in_param +=
            c(want.params.iter().any(|(_, raw, _)| raw.to_ascii_uppercase().contains("%2F")));
        self.rest_with_slash += c(want.params.iter().any(|(n, raw, _)| n == "rest" && raw.contains('/')));
        self.head_by_get +=
            c(case.method == Method::Head && want.route.is_some_and(|id| table.routes[id].method == Some(Method::Get)));
        self.not_allowed += c(want.status == 405);
        let server_wide = case.method == Method::Options && model_server_wide(&case.target);
        self.options_auto += c(want.status == 204 && !server_wide);
        self.options_star += c(server_wide);
        self.not_found += c(want.status == 404);
        self.fallback += c(want.fallback);
        self.route_layer += c(want.inner.is_some());
        self.denied += c(want.status == 403);
        self.stopped += c(want.status == 401);
        self.absolute += c(case.target.starts_with("http://"));
        self.refused_by_parser += c(case.target.len() > HttpLimits::default().max_uri_bytes);
        let ext = case.method == Method::Extension;
        let by = |id: usize| &table.routes[id];
        self.ext_routed += c(ext && want.route.is_some_and(|id| by(id).token.is_some()));
        self.ext_by_every +=
            c(ext && want.route.is_some_and(|id| by(id).method == Some(Method::Extension) && by(id).token.is_none()));
        self.ext_not_implemented += c(ext && want.status == 501);
        self.ext_not_allowed += c(ext && want.status == 405);
        self.allow_with_tokens +=
            c(want.allow.as_deref().is_some_and(|a| a.ends_with("MKCOL") || a.ends_with("PROPFIND")));
        self.on_known +=
            c(want.route.is_some_and(|id| by(id).token.is_some() && by(id).method != Some(Method::Extension)));
    }
}

fn check_case(table: &Table, router: &Router, case: &Case) -> Result<(), String> {
    let limits = HttpLimits::default();
    // 1. A built request.
    let want = model(table, case, false);
    let got = observed(&answer_at_once(router, request_of(case)).ok_or("no answer at once")?);
    if got != want {
        return Err(format!("answer_at_once:\n  want {want:?}\n  got  {got:?}"));
    }
    // RFC 9110 §15.5.6: a 405's `Allow` lists the methods the target supports — each of them
    // is answered (OPTIONS by the router), each other method gets the 405 again.
    // An extension method listed is answered too (neither 405 nor 501); one not listed may be
    // taken by a route for every extension method, which has no token to list.
    if let (Some(allow), false) = (&got.allow, case.method == Method::Options && model_server_wide(&case.target)) {
        for m in METHODS.iter().chain(&[Method::Trace]) {
            let other = case.with_token(m.as_str());
            let status = answer_at_once(router, request_of(&other)).ok_or("no answer at once")?.status.0;
            let listed = allow.split(", ").any(|a| a == m.as_str());
            if listed == (status == 405) {
                return Err(format!("Allow: {allow}, and {m} is answered {status}"));
            }
        }
        for token in REQUEST_TOKENS {
            let other = case.with_token(token);
            let status = answer_at_once(router, request_of(&other)).ok_or("no answer at once")?.status.0;
            let listed = allow.split(", ").any(|a| a == token);
            if listed && matches!(status, 405 | 501) {
                return Err(format!("Allow: {allow}, and {token} is answered {status}"));
            }
        }
    }
    // 2. With a body and `Expect: 100-continue`: the router is asked with the head first.
    let req =
        request_of(case).with_header("content-length", "5").with_header("expect", "100-continue").with_body("hello");
    let want = model(table, case, true);
    let got = observed(&answer_at_once(router, req).ok_or("no answer at once")?);
    if got != want {
        return Err(format!("head first (Expect: 100-continue):\n  want {want:?}\n  got  {got:?}"));
    }
    // 3. The bytes through the connection's parser.
    let mut extra = String::new();
    if case.deny {
        extra.push_str("x-deny: 1\r\n");
    }
    if case.stop {
        extra.push_str("x-stop: 1\r\n");
    }
    let bytes = format!("{} {} HTTP/1.1\r\nHost: h\r\n{extra}Connection: close\r\n\r\n", case.token, case.target);
    let mut wire = Wire::new(bytes.as_bytes());
    let mut seen: Option<(String, Expected)> = None;
    let mut read_method = None;
    serve_blocking(&mut wire, &limits, |r: &Request| {
        read_method = Some((r.method(), r.method_token().to_owned()));
        let resp = answer_at_once(router, r.clone()).unwrap_or_else(|| Response::status(StatusCode(597)));
        seen = Some((r.target().to_owned(), observed(&resp)));
        resp
    })
    .expect("in-memory I/O");
    let out = String::from_utf8_lossy(&wire.out).into_owned();
    let refused = (case.target == "*" && case.method != Method::Options) || case.target.len() > limits.max_uri_bytes;
    match seen {
        None if refused => {
            let status: u16 = out.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let want = if case.target.len() > limits.max_uri_bytes { 414 } else { 400 };
            if status != want {
                return Err(format!("the parser refused with {status}, not {want}: {out:?}"));
            }
        }
        None => return Err(format!("the parser refused a valid request: {out:?}")),
        Some(_) if refused => return Err(format!("the parser took a request it should refuse: {out:?}")),
        Some((target, got)) => {
            if target != case.target {
                return Err(format!("the parser read the target {target:?}"));
            }
            if read_method != Some((case.method, case.token.clone())) {
                return Err(format!("the parser read the method {read_method:?}"));
            }
            let want = model(table, case, false);
            if got != want {
                return Err(format!("over the wire:\n  want {want:?}\n  got  {got:?}"));
            }
            let status_line = format!("HTTP/1.1 {} ", want.status);
            if !out.starts_with(&status_line) {
                return Err(format!("the wire's status line is not {status_line:?}: {out:?}"));
            }
            if case.method == Method::Head && !out.ends_with("\r\n\r\n") {
                return Err(format!("a HEAD answer with content: {out:?}"));
            }
            // Only HEAD's answer goes without its content (not `head`, nor any other token).
            if let (false, Some(id)) = (case.method == Method::Head, want.route)
                && !out.contains(&format!("\r\n\r\nroute {id}\n"))
            {
                return Err(format!("an answer without its content: {out:?}"));
            }
        }
    }
    Ok(())
}

fn run(seed: u64, cases: usize, coverage: &mut Coverage) -> Result<(), String> {
    let mut rng = Rng(seed ^ 0x6060_6060);
    let table = gen_table(&mut rng);
    let router = build(&table);
    for i in 0..cases {
        let case = gen_case(&mut rng, &table);
        coverage.count(&table, &case, &model(&table, &case, false));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check_case(&table, &router, &case)))
            .unwrap_or_else(|p| {
                let msg =
                    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()));
                Err(format!("panic: {}", msg.unwrap_or_default()))
            });
        if let Err(e) = outcome {
            return Err(format!("seed {seed}, case {i}: {e}\n{}", describe(&table, &case)));
        }
    }
    Ok(())
}

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Seeds 0..2000 by default, 60 cases each (about 10 s in debug).
#[test]
fn the_router_agrees_with_its_model() {
    const CASES: usize = 60;
    let mut coverage = Coverage::default();
    if let Some(seed) = env("ROUTER_MODEL_SEED") {
        if let Err(e) = run(seed, CASES, &mut coverage) {
            panic!("{e}\nreplay: ROUTER_MODEL_SEED={seed} cargo test --test router_model60");
        }
        return;
    }
    let from = env("ROUTER_MODEL_FROM").unwrap_or(0);
    let n = env("ROUTER_MODEL_SEEDS").unwrap_or(2000);
    let begun = Instant::now();
    for seed in from..from + n {
        if let Err(e) = run(seed, CASES, &mut coverage) {
            panic!("{e}\nreplay: ROUTER_MODEL_SEED={seed} cargo test --test router_model60");
        }
    }
    eprintln!("{n} seeds × {CASES} cases in {:?}\n{coverage:#?}", begun.elapsed());
    // Every outcome the model tells apart was reached (at least 0.2% of the cases each).
    let floor = (n as usize * CASES) / 500;
    let Coverage {
        routed,
        with_params,
        many_params,
        encoded_slash_in_param,
        rest_with_slash,
        head_by_get,
        not_allowed,
        options_auto,
        options_star,
        not_found,
        fallback,
        route_layer,
        denied,
        stopped,
        absolute,
        refused_by_parser,
        ext_routed,
        ext_by_every,
        ext_not_implemented,
        ext_not_allowed,
        allow_with_tokens,
        on_known,
    } = coverage;
    let all = [
        routed,
        with_params,
        many_params,
        encoded_slash_in_param,
        rest_with_slash,
        head_by_get,
        not_allowed,
        options_auto,
        options_star,
        not_found,
        fallback,
        route_layer,
        denied,
        stopped,
        absolute,
        refused_by_parser,
        ext_routed,
        ext_by_every,
        ext_not_implemented,
        ext_not_allowed,
        allow_with_tokens,
        on_known,
    ];
    assert!(all.iter().all(|&k| k >= floor), "an outcome the generator rarely reaches: {all:?} (floor {floor})");
}

/// A handful of the model's rules over a real socket (one keep-alive connection), the
/// connection's own work included: a HEAD answer without content, `Allow` on the wire, the
/// router's 404 given before the upload to a client waiting for `100 Continue`.
#[test]
fn the_model_holds_over_a_socket() {
    use review_support::{Client, serve_with, start_node};
    let table = Table {
        routes: vec![
            RouteSpec {
                id: 0,
                segs: vec![Seg::Lit("users".into()), Seg::Param("p1".into())],
                method: Some(Method::Get),
                token: None,
                layered: false,
            },
            RouteSpec {
                id: 1,
                segs: vec![Seg::Lit("users".into()), Seg::Lit("me".into())],
                method: Some(Method::Get),
                token: None,
                layered: true,
            },
            RouteSpec {
                id: 2,
                segs: vec![Seg::Lit("users".into()), Seg::Param("p1".into())],
                method: Some(Method::Delete),
                token: None,
                layered: false,
            },
            RouteSpec {
                id: 3,
                segs: vec![Seg::Lit("files".into()), Seg::Rest("rest".into())],
                method: None,
                token: None,
                layered: false,
            },
            RouteSpec {
                id: 4,
                segs: vec![Seg::Lit("users".into()), Seg::Param("p1".into())],
                method: Some(Method::Extension),
                token: Some("PROPFIND".into()),
                layered: false,
            },
        ],
        unmatched: Unmatched::NotFound,
        outer: true,
    };
    let node = start_node("router-model60", 1);
    let server = serve_with(&node, HttpLimits::default(), build(&table));
    let mut c = Client::connect(server.local_addr());
    let cases = [
        ("GET", "/users/42"),
        ("HEAD", "/users/42"),
        ("POST", "/users/42"),
        ("OPTIONS", "/users/42"),
        ("GET", "/users/me"),
        ("DELETE", "/users/me"),
        ("OPTIONS", "*"),
        ("GET", "/files/a%2Fb/c%00/%zz/caf%C3%A9"),
        ("PATCH", "/files"),
        ("GET", "/users/a%2F..%2Fadmin?x=/y"),
        ("GET", "http://h/users/7"),
        ("GET", "/users/42/"),
        ("GET", "/users//"),
        ("HEAD", "/nowhere"),
        ("PROPFIND", "/users/42"),
        ("PROPFIND", "/users/me"),
        ("propfind", "/users/42"),
        ("BREW", "/users/42"),
        ("BREW", "/files/x"),
        ("head", "/users/42"),
        ("PROPFIND", "/nowhere"),
        ("GET", "/users/42"),
    ];
    for (token, target) in cases {
        let case = Case { method: Method::Get, token: String::new(), target: target.into(), deny: false, stop: false }
            .with_token(token);
        let method = case.method;
        let mut want = model(&table, &case, false);
        if method == Method::Head {
            want.params.clear(); // in the body a HEAD answer leaves out
        }
        c.send(format!("{token} {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        let mut resp = c.head();
        if method != Method::Head {
            c.body_of(&mut resp);
        }
        let mut got = Response::new(StatusCode(resp.status)).body(resp.body.clone());
        for (n, v) in &resp.headers {
            got.headers.push((n.to_ascii_lowercase().into(), v.clone().into_bytes().into()));
        }
        assert_eq!(observed(&got), want, "{token} {target}\n{}", describe(&table, &case));
    }
    // A client waiting for `100 Continue` to upload to a path no route takes gets the 404
    // (not_found's, with the router's hook) at once, and the connection closes.
    c.send(b"PUT /nowhere HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let resp = c.response();
    assert_eq!((resp.status, resp.header("x-nf"), resp.header("x-outer")), (404, Some("1"), Some("[]")), "{resp:?}");
    c.assert_closed();
    // And an extension method no route names, the router's 501 from the head.
    let mut c = Client::connect(server.local_addr());
    c.send(b"BREW /users/42 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let resp = c.response();
    assert_eq!((resp.status, resp.header("x-outer")), (501, Some("[]")), "{resp:?}");
    c.assert_closed();
    node.stop();
}

/// `Router::route`: a malformed pattern panics. `{}` (no name) and `{a}b}` (a brace in the
/// name) were refused, but their `{*rest}` twins were taken: `/files/{*}` recorded the rest
/// under the name `""`, `/files/{*a{b}` under `a{b` (found generating patterns).
#[test]
fn a_rest_with_an_empty_or_braced_name_is_refused_as_a_parameter_is() {
    for pattern in ["/{}", "/{a}b}", "/files/{*}", "/files/{*a{b}", "/files/{*a}b}", "/{*}"] {
        let taken = std::panic::catch_unwind(|| Router::new().get(pattern, |_: &Request| Response::text("x")));
        assert!(taken.is_err(), "the pattern {pattern:?} was taken");
    }
    // Well-formed ones still are.
    let router =
        Router::new().get("/files/{*path}", |r: &Request| Response::text(r.param("path").unwrap_or("?").to_owned()));
    let answer = answer_at_once(&router, Request::new(Method::Get, "/files/a/b")).expect("answered");
    assert_eq!(answer.body_bytes(), b"a/b");
}
