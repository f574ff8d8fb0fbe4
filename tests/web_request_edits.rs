//! A layer edits the request for the handlers within it (`Request::append_header`,
//! `set_header`, `remove_header`, `set_body`): a request id added, the credentials it checked
//! taken out, a body decoded. The edits travel with the request to a pool's worker, and bear
//! on nothing the connection does with it (framing, keep-alive, the answers' order).

mod review_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pinion::http::{HttpLimits, Request, Response, StatusCode};
use pinion::web::{Handler, Layer, Router, WebHandler, WebRequest, WebWorker};
use pinion::{Context, Pool, PoolOptions, ProcessOptions};
use review_support::*;

/// Checks the bearer token, takes it out, adds a request id and upper-cases the body.
struct Stamp {
    next: Arc<AtomicU64>,
}

struct Stamped {
    inner: Arc<dyn Handler>,
    next: Arc<AtomicU64>,
}

impl Layer for Stamp {
    fn wrap(&self, inner: Arc<dyn Handler>) -> Arc<dyn Handler> {
        Arc::new(Stamped { inner, next: self.next.clone() })
    }
}

impl Handler for Stamped {
    fn handle(&self, mut req: WebRequest) {
        let request = req.request_mut();
        if request.header("authorization") != Some(&b"Bearer s3cret"[..]) {
            return req.respond(Response::text("no").with_status(StatusCode::UNAUTHORIZED));
        }
        request.remove_header("authorization");
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        request.set_header("x-request-id", id.to_string());
        let body = request.body().to_ascii_uppercase();
        request.set_body(body);
        self.inner.handle(req)
    }

    fn check_head(&self, req: &Request) -> Option<Response> {
        self.inner.check_head(req)
    }

    fn body_limit(&self, req: &Request) -> Option<usize> {
        self.inner.body_limit(req)
    }
}

/// Answers with what it sees: the request id, whether credentials reached it, the body.
struct Echo;

impl WebWorker for Echo {
    async fn handle_post(&mut self, _: &mut Context, req: &Request) -> Response {
        let id = String::from_utf8_lossy(req.header("x-request-id").unwrap_or(b"none")).into_owned();
        let auth = req.header("authorization").is_some();
        Response::text(format!("{id} {auth} {}", String::from_utf8_lossy(req.body())))
    }
}

#[test]
fn a_layer_edits_the_request_its_pools_worker_reads() {
    let node = start_node("request-edits", 2);
    let pool =
        node.spawn(|| Pool::new(PoolOptions::new(2, 8, || Echo)), ProcessOptions::default()).wait().expect("pool");
    let router = Router::new().post("/echo", WebHandler::to(pool)).layer(Stamp { next: Arc::new(AtomicU64::new(1)) });
    let server = serve_with(&node, HttpLimits::default(), router);
    let mut c = Client::connect(server.local_addr());
    let post = |body: &str, extra: &str| {
        format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    // Three pipelined (one declaring a request id of its own, which the layer replaces), then
    // one refused by the layer, then one more on the same connection.
    c.send(format!("{}{}{}", post("abc", ""), post("de", "X-Request-Id: forged\r\n"), post("f", "")).as_bytes());
    let got: Vec<String> = (0..3).map(|_| c.response().text()).collect();
    assert_eq!(got, ["1 false ABC", "2 false DE", "3 false F"]);
    c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nno");
    let refused = c.response();
    assert_eq!((refused.status, refused.text()), (401, "no".to_owned()));
    c.send(post("g", "").as_bytes());
    assert_eq!(c.response().text(), "4 false G");
    node.stop();
}
