//! Review 74: extension methods (RFC 9110 §16.1, commit 522afb8). The router's model
//! (`router_model60`) found disagreements with the docs; the rest was read and probed here:
//! long tokens, a request's buffers reused on a connection (the token is a range of its arena),
//! pipelining, layers, CORS, interop, a pool full or a worker panicking.

mod review_support;

use pinion::http::{Method, Request, Response, StatusCode};
use pinion::web::{Router, answer_at_once};

fn text(s: &'static str) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
    move |_: &Request| Response::text(s)
}

fn ask(router: &Router, token: &str, target: &str) -> Response {
    answer_at_once(router, Request::new(Method::Get, target).with_method_token(token)).expect("answered")
}

fn allow(resp: &Response) -> Option<String> {
    resp.header_value("allow").map(|a| String::from_utf8_lossy(a).into_owned())
}

/// `OPTIONS *` lists "every method its routes take when each route names its method"
/// (`Router`): an `on(token, ..)` route names its token, so it is listed; a route for every
/// extension method names none, so there is no `Allow`, as with a route for any method. (The
/// model found `OPTIONS *` leaving the tokens out: a client asking what the server takes was
/// told it takes no PROPFIND.)
#[test]
fn options_star_lists_the_tokens_of_extension_routes() {
    let router = Router::new().get("/a", text("a")).on("PROPFIND", "/dav", text("p")).on("MKCOL", "/dav", text("m"));
    let resp = ask(&router, "OPTIONS", "*");
    assert_eq!(
        (resp.status, allow(&resp).as_deref()),
        (StatusCode::NO_CONTENT, Some("GET, HEAD, OPTIONS, PROPFIND, MKCOL"))
    );
    let every = router.method(Method::Extension, "/any", text("any"));
    let resp = ask(&every, "OPTIONS", "*");
    assert_eq!(
        (resp.status, allow(&resp)),
        (StatusCode::NO_CONTENT, None),
        "a route for every extension method names none"
    );
}
