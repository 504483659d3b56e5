//! Proxying behaviour on the happy path: forwarding, keep-alive and the upstream pool, pipelining
//! (RFC 9112 §9.3.2), HTTP/1.0 persistence (RFC 9112 §9.3, Appendix C.2.2), bodiless responses
//! (RFC 9110 §9.3.2, §15.3.5, §15.4.5), X-Forwarded-* and X-Request-Id, hop-by-hop fields
//! (RFC 9110 §7.6.1), absolute-form targets (RFC 9112 §3.2.2), `Expect: 100-continue`
//! (RFC 9110 §10.1.1), interim responses (RFC 9110 §15.2) and routing.

#[macro_use]
mod support;

use std::time::Duration;
use support::*;

/// The X-Forwarded-For list as the upstream saw it (all field lines joined, RFC 9110 §5.3).
fn xff(r: &Recorded) -> Vec<String> {
    support::http::header_list(&r.headers, "x-forwarded-for")
}

/// A GET is forwarded with its target, version and Host; the upstream's response comes back.
fn basic_get(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let resp = c.request(&req("GET", "/hello?x=1", &[("Host", "example.test")], b""));
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    assert_eq!(resp.body, echo_body("GET", "/hello?x=1", b""));
    assert_eq!(resp.header("x-upstream"), Some("test"));
    let seen = up.wait_requests(1, PROMPT);
    let r = &seen[0];
    assert_eq!(r.method, "GET");
    assert_eq!(r.target, "/hello?x=1");
    assert_eq!(r.version, "HTTP/1.1", "the gateway speaks HTTP/1.1 upstream");
    assert_eq!(r.header_all("host"), vec!["example.test"]);
}

/// A POST body with Content-Length reaches the upstream byte for byte.
fn post_body_with_content_length(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let body = b"name=value&other=\x00\xff binary ok";
    let resp = c.request(&req("POST", "/submit", &[("Content-Type", "application/octet-stream")], body));
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    assert_eq!(resp.body, echo_body("POST", "/submit", body));
    let r = &up.wait_requests(1, PROMPT)[0];
    assert_eq!(r.body, body);
    assert!(!r.chunked);
    assert_eq!(r.header("content-length"), Some(body.len().to_string().as_str()));
}

/// One client connection carries several requests (RFC 9112 §9.3), and the gateway reuses one
/// pooled upstream connection for all of them, also for a second client connection.
fn keepalive_client_and_upstream_pool_reuse(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    for i in 0..5 {
        let path = format!("/k{i}");
        let resp = c.request(&get(&path));
        assert_eq!(resp.status, 200, "request {i}: {}", resp.head_str());
        assert_eq!(resp.body, echo_body("GET", &path, b""));
        assert!(!resp.is_close(), "request {i} answered with Connection: close");
    }
    let mut c2 = gw.client();
    let resp = c2.request(&get("/second-client"));
    assert_eq!(resp.status, 200);
    let seen = up.wait_requests(6, PROMPT);
    assert_eq!(
        up.connections(),
        1,
        "6 sequential requests should share one pooled upstream connection; conns used: {:?}",
        seen.iter().map(|r| r.conn).collect::<Vec<_>>()
    );
}

/// Pipelined requests are answered in request order (RFC 9112 §9.3.2).
fn pipelined_requests_answered_in_order(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let mut batch = get("/p1");
    batch.extend(req("POST", "/p2", &[], b"body-two"));
    batch.extend(get("/p3"));
    c.send(&batch);
    for (method, path, body) in [("GET", "/p1", &b""[..]), ("POST", "/p2", b"body-two"), ("GET", "/p3", b"")] {
        let resp = c.read_response();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body_str(), String::from_utf8_lossy(&echo_body(method, path, body)));
    }
    let targets: Vec<String> = up.wait_requests(3, PROMPT).into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/p1", "/p2", "/p3"]);
}

/// A slow first response still comes first when the second one is quick (RFC 9112 §9.3.2).
fn pipelined_slow_response_stays_first(driver: Driver) {
    let up = TestUpstream::with_handler(|r| {
        if r.target == "/slow" {
            Action::EchoAfter(Duration::from_millis(300))
        } else {
            Action::Echo
        }
    });
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let mut batch = get("/slow");
    batch.extend(get("/fast"));
    c.send(&batch);
    assert_eq!(c.read_response().body, echo_body("GET", "/slow", b""));
    assert_eq!(c.read_response().body, echo_body("GET", "/fast", b""));
}

/// HTTP/1.0 without `Connection: keep-alive` is not persistent (RFC 9112 §9.3): the gateway
/// answers and closes. It still speaks HTTP/1.1 to the upstream.
fn http10_without_keepalive_closes(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    c.send(b"GET /old HTTP/1.0\r\nHost: test.local\r\n\r\n");
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    assert_eq!(resp.body, echo_body("GET", "/old", b""));
    c.assert_closed(PROMPT);
    let r = &up.wait_requests(1, PROMPT)[0];
    assert_eq!(r.version, "HTTP/1.1");
}

/// HTTP/1.0 with `Connection: keep-alive` stays open, and the response says so
/// (RFC 9112 Appendix C.2.2); a later request without it closes the connection.
fn http10_with_keepalive_persists(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    for path in ["/a", "/b"] {
        c.send(format!("GET {path} HTTP/1.0\r\nHost: test.local\r\nConnection: keep-alive\r\n\r\n").as_bytes());
        let resp = c.read_response();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, echo_body("GET", path, b""));
        assert!(
            resp.has_token("connection", "keep-alive"),
            "a persistent response to HTTP/1.0 must carry Connection: keep-alive: {}",
            resp.head_str()
        );
        assert!(matches!(resp.framing, Framing::Length(_)), "needs Content-Length to persist");
    }
    c.send(b"GET /c HTTP/1.0\r\nHost: test.local\r\n\r\n");
    assert_eq!(c.read_response().body, echo_body("GET", "/c", b""));
    c.assert_closed(PROMPT);
}

/// An HTTP/1.0 keep-alive request that the gateway answers itself (404, no route) keeps the
/// connection and says so with `Connection: keep-alive` (RFC 9112 Appendix C.2.2): without it
/// a 1.0 client takes the answer as the connection's last. A second request on it is answered.
fn http10_keepalive_error_answer_persists(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::new().upstream("test", &[up.addr()], "").route("/api/", "test", "").start(driver);
    let mut c = gw.client();
    c.send(b"GET /nowhere HTTP/1.0\r\nHost: test.local\r\nConnection: keep-alive\r\n\r\n");
    let resp = c.read_response();
    assert_eq!(resp.status, 404, "{}", resp.head_str());
    assert!(
        resp.has_token("connection", "keep-alive"),
        "a persistent answer to HTTP/1.0 must carry Connection: keep-alive: {}",
        resp.head_str()
    );
    assert!(!resp.is_close(), "{}", resp.head_str());
    assert!(matches!(resp.framing, Framing::Length(_)), "needs Content-Length to persist: {}", resp.head_str());
    c.send(b"GET /api/x HTTP/1.0\r\nHost: test.local\r\nConnection: keep-alive\r\n\r\n");
    let second = c.read_response();
    assert_eq!(second.status, 200, "{}", second.head_str());
    assert_eq!(second.body, echo_body("GET", "/api/x", b""));
}

/// An HTTP/1.0 client never receives Transfer-Encoding (RFC 9112 §6.1); a chunked upstream
/// response is delivered decoded (close-delimited or with a Content-Length).
fn http10_client_never_gets_chunked(driver: Driver) {
    let up = TestUpstream::chunked_with_trailers();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    c.send(b"GET /chunky HTTP/1.0\r\nHost: test.local\r\n\r\n");
    let resp = c.read_response();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("transfer-encoding"), None, "{}", resp.head_str());
    assert_eq!(resp.body_str(), "hello world");
}

/// HEAD: the response has the GET's fields but no body (RFC 9110 §9.3.2); the next request on
/// the same connection proves the gateway neither sent nor waited for body bytes.
fn head_response_has_no_body(driver: Driver) {
    let up = TestUpstream::with_handler(|r| {
        if r.method == "HEAD" {
            Action::Respond(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Type: text/plain\r\n\r\n".to_vec())
        } else {
            Action::Echo
        }
    });
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let resp = c.request(&req("HEAD", "/h", &[], b""));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("11"));
    let after = c.request(&get("/after"));
    assert_eq!(after.status, 200, "{}", after.head_str());
    assert_eq!(after.body, echo_body("GET", "/after", b""));
    let seen = up.wait_requests(2, PROMPT);
    assert_eq!(seen[0].method, "HEAD");
}

/// 204 and 304 responses end at their head (RFC 9110 §15.3.5, §15.4.5); a 204 carries neither
/// Content-Length (RFC 9110 §8.6) nor Transfer-Encoding (RFC 9112 §6.1).
fn no_body_for_204_and_304(driver: Driver) {
    let up = TestUpstream::with_handler(|r| match r.target.as_str() {
        "/204" => Action::Respond(b"HTTP/1.1 204 No Content\r\nX-Kind: empty\r\n\r\n".to_vec()),
        "/304" => Action::Respond(b"HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n".to_vec()),
        _ => Action::Echo,
    });
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let r204 = c.request(&get("/204"));
    assert_eq!(r204.status, 204);
    assert_eq!(r204.header("x-kind"), Some("empty"));
    assert_eq!(r204.header("transfer-encoding"), None, "{}", r204.head_str());
    assert_eq!(r204.header("content-length"), None, "{}", r204.head_str());
    let r304 = c.request(&req("GET", "/304", &[("If-None-Match", "\"v1\"")], b""));
    assert_eq!(r304.status, 304);
    assert_eq!(r304.header("etag"), Some("\"v1\""));
    assert_eq!(r304.header("transfer-encoding"), None, "{}", r304.head_str());
    let after = c.request(&get("/after"));
    assert_eq!(after.body, echo_body("GET", "/after", b""));
}

/// A close-delimited upstream response (no length) reaches the client complete.
fn close_delimited_upstream_response(driver: Driver) {
    let up = TestUpstream::respond_then_close(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end");
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let resp = c.request(&get("/"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body_str(), "until the end");
}

/// `Connection: close` from the client ends that client connection after the response
/// (RFC 9112 §9.6) but is hop-by-hop: the upstream connection stays pooled for other clients.
fn client_connection_close_is_hop_by_hop(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut a = gw.client();
    let resp = a.request(&req("GET", "/a", &[("Connection", "close")], b""));
    assert_eq!(resp.status, 200);
    assert!(resp.is_close(), "the response should announce the close: {}", resp.head_str());
    a.assert_closed(PROMPT);
    let r = &up.wait_requests(1, PROMPT)[0];
    assert!(!r.has_token("connection", "close"), "the client's Connection: close was forwarded: {}", r.head_str());
    assert_eq!(gw.client().request(&get("/b")).status, 200);
    assert_eq!(up.connections(), 1, "the upstream connection should have been reused");
}

/// An upstream response with `Connection: close` retires that upstream connection (the upstream
/// here keeps the socket open but will not answer again), without closing the client connection.
fn upstream_connection_close_not_reused(driver: Driver) {
    let up = TestUpstream::with_handler(|_| {
        Action::RespondThenHang(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_vec())
    });
    let gw = ConfigBuilder::proxy_to(up.addr()).all_routes("response_timeout = \"3s\"").start(driver);
    let mut c = gw.client();
    for i in 0..2 {
        let resp = c.request(&get(&format!("/r{i}")));
        assert_eq!(resp.status, 200, "request {i}: {}", resp.head_str());
        assert_eq!(resp.body_str(), "ok");
    }
    assert_eq!(up.connections(), 2);
}

/// The gateway adds X-Forwarded-For (client IP), X-Forwarded-Proto (http) and
/// X-Forwarded-Host (the original Host, port included).
fn x_forwarded_headers_added(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let resp = c.request(&req("GET", "/xf", &[("Host", "shop.example:8443")], b""));
    assert_eq!(resp.status, 200);
    let r = &up.wait_requests(1, PROMPT)[0];
    assert_eq!(xff(r), vec!["127.0.0.1"], "{}", r.head_str());
    assert_eq!(r.header_all("x-forwarded-proto"), vec!["http"], "{}", r.head_str());
    assert_eq!(r.header_all("x-forwarded-host"), vec!["shop.example:8443"], "{}", r.head_str());
    assert_eq!(r.header("host"), Some("shop.example:8443"));
}

/// From a peer outside trusted_proxies (the default: none), incoming X-Forwarded-* are not
/// believed: they are replaced, not appended to.
fn x_forwarded_from_untrusted_peer_replaced(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let resp = c.request(&req(
        "GET",
        "/xf",
        &[
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-For", "198.51.100.2"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "evil.example"),
        ],
        b"",
    ));
    assert_eq!(resp.status, 200);
    let r = &up.wait_requests(1, PROMPT)[0];
    assert_eq!(xff(r), vec!["127.0.0.1"], "{}", r.head_str());
    assert_eq!(r.header_all("x-forwarded-proto"), vec!["http"], "{}", r.head_str());
    assert_eq!(r.header_all("x-forwarded-host"), vec![TEST_HOST], "{}", r.head_str());
}

/// From a trusted proxy, the client IP is appended to the incoming X-Forwarded-For list.
fn x_forwarded_for_appended_for_trusted_peer(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).forwarding("trusted_proxies = [\"127.0.0.0/8\"]").start(driver);
    let mut c = gw.client();
    let resp = c.request(&req("GET", "/xf", &[("X-Forwarded-For", "203.0.113.7, 198.51.100.2")], b""));
    assert_eq!(resp.status, 200);
    let r = &up.wait_requests(1, PROMPT)[0];
    assert_eq!(xff(r), vec!["203.0.113.7", "198.51.100.2", "127.0.0.1"], "{}", r.head_str());
}

/// Each forwarding header can be switched off.
fn forwarding_headers_can_be_disabled(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr())
        .forwarding("x_forwarded_for = false")
        .forwarding("x_forwarded_proto = false")
        .forwarding("x_forwarded_host = false")
        .forwarding("request_id = false")
        .start(driver);
    let mut c = gw.client();
    assert_eq!(c.request(&get("/plain")).status, 200);
    let r = &up.wait_requests(1, PROMPT)[0];
    for name in ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-request-id"] {
        assert!(!r.has_header(name), "{name} added although disabled: {}", r.head_str());
    }
}

/// Without an incoming X-Request-Id the gateway adds a well-formed one, different per request.
fn request_id_added_when_absent(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    assert_eq!(c.request(&get("/one")).status, 200);
    assert_eq!(c.request(&get("/two")).status, 200);
    let seen = up.wait_requests(2, PROMPT);
    let ids: Vec<&str> = seen
        .iter()
        .map(|r| {
            let all = r.header_all("x-request-id");
            assert_eq!(all.len(), 1, "exactly one X-Request-Id expected: {}", r.head_str());
            assert!(is_well_formed_request_id(all[0]), "malformed generated id {:?}", all[0]);
            all[0]
        })
        .collect();
    assert_ne!(ids[0], ids[1], "request ids must differ per request");
}

/// A well-formed incoming X-Request-Id (1..=128 of [A-Za-z0-9._-]) is kept unchanged.
fn request_id_well_formed_is_kept(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let long = "a".repeat(128);
    for id in ["abc.DEF_123-xyz", long.as_str(), "7"] {
        assert_eq!(c.request(&req("GET", "/id", &[("X-Request-Id", id)], b"")).status, 200);
    }
    let seen = up.wait_requests(3, PROMPT);
    for (r, id) in seen.iter().zip(["abc.DEF_123-xyz", long.as_str(), "7"]) {
        assert_eq!(r.header_all("x-request-id"), vec![id], "{}", r.head_str());
    }
}

/// A malformed incoming X-Request-Id is replaced by a fresh well-formed one.
fn request_id_malformed_is_replaced(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let too_long = "b".repeat(129);
    let bad = ["has space", too_long.as_str(), "semi;colon", "quote\"d"];
    for id in bad {
        assert_eq!(c.request(&req("GET", "/id", &[("X-Request-Id", id)], b"")).status, 200);
    }
    let seen = up.wait_requests(bad.len(), PROMPT);
    for (r, id) in seen.iter().zip(bad) {
        let all = r.header_all("x-request-id");
        assert_eq!(all.len(), 1, "exactly one X-Request-Id expected: {}", r.head_str());
        assert_ne!(all[0], id, "malformed id forwarded unchanged");
        assert!(is_well_formed_request_id(all[0]), "replacement {:?} is malformed", all[0]);
    }
}

/// Hop-by-hop request fields are not forwarded (RFC 9110 §7.6.1): Connection and the fields it
/// names, Keep-Alive, TE, Trailer, Upgrade (not an upgrade here), Proxy-Connection.
fn hop_by_hop_request_fields_stripped(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let resp = c.request(&req(
        "GET",
        "/hop",
        &[
            ("Connection", "keep-alive, X-Hop-A"),
            ("Connection", "X-Hop-B"),
            ("X-Hop-A", "1"),
            ("X-Hop-B", "2"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Trailer", "X-Foo"),
            ("Upgrade", "h2c"),
            ("Proxy-Connection", "keep-alive"),
            ("X-End-To-End", "kept"),
        ],
        b"",
    ));
    assert_eq!(resp.status, 200);
    let r = &up.wait_requests(1, PROMPT)[0];
    for name in ["x-hop-a", "x-hop-b", "keep-alive", "te", "trailer", "upgrade", "proxy-connection"] {
        assert!(!r.has_header(name), "hop-by-hop {name} forwarded: {}", r.head_str());
    }
    for token in ["x-hop-a", "x-hop-b"] {
        assert!(!r.has_token("connection", token), "Connection still names {token}: {}", r.head_str());
    }
    assert_eq!(r.header("x-end-to-end"), Some("kept"));
}

/// Hop-by-hop response fields from the upstream are not relayed either, and the upstream's
/// Connection options do not leak into the client connection's state.
fn hop_by_hop_response_fields_stripped(driver: Driver) {
    let up = TestUpstream::respond(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Up-Hop\r\nX-Up-Hop: secret\r\n\
          Keep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\nUpgrade: h2c\r\n\
          X-Up-E2E: kept\r\n\r\nok",
    );
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    for _ in 0..2 {
        let resp = c.request(&get("/hop"));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body_str(), "ok");
        for name in ["x-up-hop", "keep-alive", "proxy-connection", "upgrade"] {
            assert!(resp.header(name).is_none(), "hop-by-hop {name} relayed: {}", resp.head_str());
        }
        assert!(!resp.has_token("connection", "x-up-hop"), "{}", resp.head_str());
        assert_eq!(resp.header("x-up-e2e"), Some("kept"));
    }
}

/// An absolute-form target is forwarded in origin-form (RFC 9112 §3.2.2); an empty path
/// becomes "/" (RFC 9112 §3.2.1).
fn absolute_form_forwarded_as_origin_form(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let a = c.request(b"GET http://example.test/path?q=1 HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(a.status, 200, "{}", a.head_str());
    let b = c.request(b"GET http://example.test HTTP/1.1\r\nHost: example.test\r\n\r\n");
    assert_eq!(b.status, 200, "{}", b.head_str());
    let seen = up.wait_requests(2, PROMPT);
    assert_eq!(seen[0].target, "/path?q=1");
    assert_eq!(seen[0].header("host"), Some("example.test"));
    assert_eq!(seen[1].target, "/");
}

/// `Expect: 100-continue`: the gateway answers 100 before the body is sent, then forwards the
/// body without the Expect field (RFC 9110 §10.1.1).
fn expect_100_continue(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    c.send(b"POST /upload HTTP/1.1\r\nHost: test.local\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    let interim = c.read_response();
    assert_eq!(interim.status, 100, "expected 100 Continue before sending the body: {}", interim.head_str());
    c.send(b"hello");
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    assert_eq!(resp.body, echo_body("POST", "/upload", b"hello"));
    let r = &up.wait_requests(1, PROMPT)[0];
    assert!(!r.has_header("expect"), "Expect forwarded: {}", r.head_str());
    assert_eq!(r.body, b"hello");
}

/// An HTTP/1.0 client's 100-continue expectation is ignored (RFC 9110 §10.1.1): no 100.
fn expect_100_ignored_for_http10(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    c.send(b"POST /old HTTP/1.0\r\nHost: test.local\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello");
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    assert_eq!(resp.body, echo_body("POST", "/old", b"hello"));
}

/// An upstream 103 Early Hints is relayed to an HTTP/1.1 client before the final response
/// (RFC 9110 §15.2), and the connection stays usable.
fn interim_103_relayed(driver: Driver) {
    let up = TestUpstream::respond(
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    );
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    for round in 0..2 {
        c.send(&get("/hints"));
        let (interim, fin) = c.read_final_response();
        assert_eq!(interim.len(), 1, "round {round}: expected one 103, got {interim:?}");
        assert_eq!(interim[0].status, 103);
        assert_eq!(interim[0].header("link"), Some("</style.css>; rel=preload"));
        assert_eq!(fin.status, 200);
        assert_eq!(fin.body_str(), "ok");
    }
}

/// No 1xx response is sent to an HTTP/1.0 client (RFC 9110 §15.2).
fn interim_not_sent_to_http10(driver: Driver) {
    let up = TestUpstream::respond(
        b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    );
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    c.send(b"GET /hints HTTP/1.0\r\nHost: test.local\r\n\r\n");
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "first response to HTTP/1.0 must be final: {}", resp.head_str());
    assert_eq!(resp.body_str(), "ok");
}

/// A chunked request body is forwarded chunked with its trailer fields (RFC 9112 §7.1.2).
fn chunked_request_forwarded_with_trailers(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let body = chunked(&[b"hello", b" ", b"world"], &[("X-Trailer", "yes")]);
    let resp = c.request(&req("POST", "/c", &[("Transfer-Encoding", "chunked")], &body));
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    assert_eq!(resp.body, echo_body("POST", "/c", b"hello world"));
    let r = &up.wait_requests(1, PROMPT)[0];
    assert!(r.chunked, "body not forwarded chunked: {}", r.head_str());
    assert!(!r.has_header("content-length"), "{}", r.head_str());
    assert_eq!(r.body, b"hello world");
    assert_eq!(support::http::header(&r.trailers, "x-trailer"), Some("yes"), "trailers: {:?}", r.trailers);
}

/// A chunked response with trailers is relayed chunked, trailers included, and the connection
/// stays usable.
fn chunked_response_relayed_with_trailers(driver: Driver) {
    let up = TestUpstream::chunked_with_trailers();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    for _ in 0..2 {
        let resp = c.request(&req("GET", "/t", &[("TE", "trailers")], b""));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.framing, Framing::Chunked, "{}", resp.head_str());
        assert_eq!(resp.body_str(), "hello world");
        assert_eq!(support::http::header(&resp.trailers, "x-checksum"), Some("abc"), "trailers: {:?}", resp.trailers);
    }
}

/// Longest prefix wins; a route with a matching host beats routes without one; the port in
/// Host is ignored.
fn routes_by_prefix_and_host(driver: Driver) {
    let ups = ["a", "b", "c", "d"].map(TestUpstream::named_echo);
    let gw = ConfigBuilder::new()
        .upstream("a", &[ups[0].addr()], "")
        .upstream("b", &[ups[1].addr()], "")
        .upstream("c", &[ups[2].addr()], "")
        .upstream("d", &[ups[3].addr()], "")
        .route("/", "a", "")
        .route("/api", "b", "")
        .route("/api/v2", "c", "")
        .route("/", "d", "host = \"admin.example\"")
        .start(driver);
    let mut c = gw.client();
    let cases = [
        ("/index", "www.example", "a"),
        ("/api/users", "www.example", "b"),
        ("/api", "www.example", "b"),
        ("/api/v2/items", "www.example", "c"),
        ("/anything", "admin.example", "d"),
        ("/api/users", "admin.example:8080", "d"),
    ];
    for (path, host, want) in cases {
        let resp = c.request(&req("GET", path, &[("Host", host)], b""));
        assert_eq!(resp.status, 200, "{path} on {host}: {}", resp.head_str());
        assert_eq!(resp.header("x-upstream"), Some(want), "{path} on {host}");
    }
}

/// Host names are case-insensitive (RFC 9110 §4.2.3), so host routes match regardless of case.
fn route_host_match_ignores_case(driver: Driver) {
    let a = TestUpstream::named_echo("a");
    let d = TestUpstream::named_echo("d");
    let gw = ConfigBuilder::new()
        .upstream("a", &[a.addr()], "")
        .upstream("d", &[d.addr()], "")
        .route("/", "a", "")
        .route("/", "d", "host = \"admin.example\"")
        .start(driver);
    let mut c = gw.client();
    let resp = c.request(&req("GET", "/", &[("Host", "ADMIN.Example")], b""));
    assert_eq!(resp.header("x-upstream"), Some("d"));
}

/// No matching route: 404 from the gateway itself, nothing forwarded, request id in the body.
fn no_route_is_404(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::new().upstream("test", &[up.addr()], "").route("/api", "test", "").start(driver);
    let mut c = gw.client();
    let resp = c.request(&req("GET", "/other", &[("X-Request-Id", "rid-404-test")], b""));
    assert_eq!(resp.status, 404, "{}", resp.head_str());
    assert!(resp.body_str().contains("rid-404-test"), "error body lacks the request id: {:?}", resp.body_str());
    let ok = Client::connect(gw.addr).request(&get("/api/x"));
    assert_eq!(ok.status, 200);
    let seen = up.wait_requests(1, PROMPT);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/api/x");
}

both_drivers!(
    basic_get,
    post_body_with_content_length,
    keepalive_client_and_upstream_pool_reuse,
    pipelined_requests_answered_in_order,
    pipelined_slow_response_stays_first,
    http10_without_keepalive_closes,
    http10_with_keepalive_persists,
    http10_keepalive_error_answer_persists,
    http10_client_never_gets_chunked,
    head_response_has_no_body,
    no_body_for_204_and_304,
    close_delimited_upstream_response,
    client_connection_close_is_hop_by_hop,
    upstream_connection_close_not_reused,
    x_forwarded_headers_added,
    x_forwarded_from_untrusted_peer_replaced,
    x_forwarded_for_appended_for_trusted_peer,
    forwarding_headers_can_be_disabled,
    request_id_added_when_absent,
    request_id_well_formed_is_kept,
    request_id_malformed_is_replaced,
    hop_by_hop_request_fields_stripped,
    hop_by_hop_response_fields_stripped,
    absolute_form_forwarded_as_origin_form,
    expect_100_continue,
    expect_100_ignored_for_http10,
    interim_103_relayed,
    interim_not_sent_to_http10,
    chunked_request_forwarded_with_trailers,
    chunked_response_relayed_with_trailers,
    routes_by_prefix_and_host,
    route_host_match_ignores_case,
    no_route_is_404,
);
