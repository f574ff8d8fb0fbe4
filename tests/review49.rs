//! Review 49 (stop 32): the `interop` conversions, as a user porting an axum/hyper service
//! relies on them (its finding in the axum example is checked in `tests/examples.rs`).
//!
//! `cargo test --features interop --test review49`
#![cfg(feature = "interop")]

mod review_support;
mod support;

use pinion::http::{HttpLimits, InteropError, Method, Request, Response, StatusCode, serve_blocking};
use support::wire::Wire;

fn serve(input: &str, handler: impl FnMut(&Request) -> Response) -> String {
    let mut wire = Wire::new(input.as_bytes());
    serve_blocking(&mut wire, &HttpLimits::default(), handler).expect("in-memory I/O");
    String::from_utf8(wire.out).expect("ASCII answers")
}

/// What an axum `Router` answers to HEAD, as a tower service (axum 0.8 `routing/route.rs`,
/// `RouteFuture::poll`): GET's fields with `Content-Length` set from the body's size "before
/// removing the body", then the body emptied. A bridge converts it with `Response::from`.
fn axum_style_answer(req: &Request) -> http::Response<Vec<u8>> {
    let body = b"Hello, World!".to_vec();
    let len = body.len().to_string();
    let body = if req.method() == Method::Head { Vec::new() } else { body };
    http::Response::builder()
        .status(200)
        .header("content-type", "text/plain; charset=utf-8")
        .header("content-length", len)
        .body(body)
        .expect("valid response")
}

/// Finding 1. A bridged HEAD answer must not say `Content-Length: 0` when GET's answer has 13
/// bytes (RFC 9110 §8.6: a server MUST NOT send a Content-Length in a HEAD answer other than
/// GET's length). `From<http::Response>` keeps the tower service's `Content-Length: 13`, and
/// the connection replaced it by `content-length: 0` (the length of the empty body it holds).
#[test]
fn bridged_head_answer_keeps_gets_content_length() {
    let bridge = |req: &Request| {
        let h = http::Request::<Vec<u8>>::try_from(req).expect("converts");
        assert_eq!(h.method(), http::Method::HEAD);
        Response::from(axum_style_answer(req))
    };
    let out = serve("HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", bridge);
    let head = out.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{out}");
    assert!(!head.contains("content-length: 0\r\n"), "HEAD answered with a length GET does not have:\n{out}");
    assert!(head.contains("content-length: 13\r\n"), "{out}");
    assert!(head.ends_with("\r\n\r\n"), "no content after a HEAD answer: {out:?}");

    // GET through the same bridge: its own length, and the body.
    let bridge = |req: &Request| Response::from(axum_style_answer(req));
    let out = serve("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", bridge);
    assert!(out.contains("content-length: 13\r\n") && out.ends_with("\r\n\r\nHello, World!"), "{out}");

    // A HEAD answer whose `Content-Length` is not one decimal number, or a field the handler
    // gives twice (differing), is not trusted: no length is sent (stop 33: it was 0, which
    // §8.6 forbids unless GET's is 0).
    for bad in [&["x"][..], &["5", "6"], &["-1"], &[""]] {
        let out = serve("HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", |_| {
            let mut r = Response::new(StatusCode::OK);
            for v in bad {
                r = r.header("content-length", *v);
            }
            r
        });
        assert!(!out.contains("content-length"), "{bad:?}: {out}");
        assert!(out.ends_with("\r\n\r\n"), "{bad:?}: {out}");
    }
}

/// Finding 3. `http::HeaderMap` holds at most 24 576 distinct names (`MAX_SIZE`, 2^15 slots
/// at a load of 3/4); `HeaderMap::append` panics past it. The conversions are `TryFrom` and
/// document their refusals as `InteropError`, but a response (or request) built with more
/// distinct field names panicked inside `try_from`.
#[test]
fn too_many_fields_are_an_error_not_a_panic() {
    let mut resp = Response::new(StatusCode::OK);
    for i in 0..30_000 {
        resp = resp.header(format!("x-f{i}"), "v");
    }
    let got = std::panic::catch_unwind(move || http::Response::<Vec<u8>>::try_from(resp).map(|h| h.headers().len()));
    assert_eq!(got.ok(), Some(Err(InteropError::TooManyFields)), "a panic, or a silent cut");

    let mut req = Request::new(Method::Get, "/");
    for i in 0..30_000 {
        req = req.with_header(&format!("x-f{i}"), "v");
    }
    let got = std::panic::catch_unwind(move || http::Request::<Vec<u8>>::try_from(&req).map(|h| h.headers().len()));
    let err = got.ok().and_then(Result::err);
    assert_eq!(err, Some(InteropError::TooManyFields));
    assert!(!err.map(|e| e.to_string()).unwrap_or_default().is_empty());

    // Many values of one name are fine (they share one entry).
    let mut req = Request::new(Method::Get, "/");
    for i in 0..30_000 {
        req = req.with_header("x-many", i.to_string());
    }
    let h = http::Request::<Vec<u8>>::try_from(&req).expect("one name, many values");
    assert_eq!(h.headers().get_all("x-many").iter().count(), 30_000);
}

/// Stop 33 (stop 32's left-alone item): the client's address travels through a conversion as
/// `HttpPeerAddr`, so a service behind a bridge can log or limit by it.
#[test]
fn the_client_address_reaches_a_bridged_service() {
    let node = review_support::start_node("r49-peer", 1);
    let server = review_support::serve_with(&node, HttpLimits::default(), |req: &Request| {
        let h = http::Request::<Vec<u8>>::try_from(req).expect("converts");
        let peer = h.extensions().get::<pinion::http::HttpPeerAddr>().map(|p| p.0.to_string());
        Response::text(peer.unwrap_or_default())
    });
    let mut c = review_support::Client::connect(server.local_addr());
    c.send(&review_support::get("/"));
    let me = c.s.local_addr().expect("address").to_string();
    assert_eq!(c.response().text(), me);
    server.stop();
    node.stop();
}
