//! Review findings: each test below fails on the current code and demonstrates a bug (the doc
//! comment says what goes wrong, where, and why it matters). Tests that pin down a risky
//! behaviour that currently works are marked `PIN (passes today)`.

#[macro_use]
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use support::*;

/// A request hidden in a body.
const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: test.local\r\n\r\n";

/// Reads one raw response head off `c` (whatever arrives within `period`) and returns it as text.
fn raw_available(c: &mut Client, period: Duration) -> String {
    String::from_utf8_lossy(&c.read_available(period)).into_owned()
}

/// The gateway either refused `raw` (a 400) or forwarded it with its framing intact; in no case
/// may the body reach the upstream as a second request.
fn assert_body_not_smuggled(driver: Driver, raw: &[u8], expect_chunked: bool) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let _ = c.try_send(raw);
    let resp = c.read_response();
    // No sentinel request here: after a desync the pooled upstream connection is poisoned (the
    // test upstream stops answering on it), so a sentinel would only time out.
    std::thread::sleep(SETTLE);
    let seen = up.requests();
    let targets: Vec<&str> = seen.iter().map(|r| r.target.as_str()).collect();
    assert!(
        !targets.contains(&"/smuggled"),
        "a request hidden in the body reached the upstream as its own request; upstream saw {targets:?}; \
         first request head as forwarded: {:?}",
        seen.first().map(|r| r.head_str())
    );
    assert!(up.errors().is_empty(), "upstream saw a desynchronised stream: {:?}", up.errors());
    if resp.status == 200 {
        let post = seen.iter().find(|r| r.method == "POST").expect("the POST was forwarded");
        assert_eq!(post.chunked, expect_chunked, "{}", post.head_str());
        assert!(post.body_len > 0, "the POST reached the upstream without its body: {}", post.head_str());
    } else {
        assert_eq!(resp.status, 400, "{}", resp.head_str());
    }
}

/// BUG (request smuggling). src/http/parse.rs:269 records any Connection token, and
/// src/http/write.rs:96-97 drops *every* field named by Connection, Content-Length included,
/// while src/pipeline.rs:145-208 still forwards the body by the Content-Length it parsed. The
/// upstream gets a POST without Content-Length (so no body) followed by the body bytes, which it
/// parses as a second request (`GET /smuggled`) that the gateway never saw or routed. Its response
/// stays on the pooled upstream connection and can be served to another client.
fn connection_naming_content_length_smuggles_body(driver: Driver) {
    let raw = format!(
        "POST / HTTP/1.1\r\nHost: test.local\r\nConnection: content-length\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    assert_body_not_smuggled(driver, raw.as_bytes(), false);
}

/// BUG (consequence of the above: a response served to the wrong client). The upstream answers
/// the hidden `/smuggled` request too; that response arrives on the pooled upstream connection
/// after the gateway judged the exchange clean (pipeline.rs:307), and the next request from
/// *another client* reused within PEEK_AFTER (pool.rs:65) receives it. (The upstream delays its
/// second answer by 100 ms only to make the ordering deterministic.)
fn smuggled_response_served_to_other_client(driver: Driver) {
    let up = TestUpstream::with_handler(|r| {
        if r.target == "/smuggled" {
            Action::EchoAfter(Duration::from_millis(100))
        } else {
            Action::Echo
        }
    });
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let raw = format!(
        "POST / HTTP/1.1\r\nHost: test.local\r\nConnection: content-length\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
        SMUGGLED.len()
    );
    let mut attacker = gw.client();
    attacker.send(raw.as_bytes());
    let _ = attacker.read_response();
    let victim = Client::connect(gw.addr).request(&get("/victim"));
    assert_eq!(
        victim.body_str(),
        String::from_utf8_lossy(&echo_body("GET", "/victim", b"")),
        "another client's request got the smuggled request's response"
    );
}

/// BUG (desync). Same cause as above with `Connection: transfer-encoding`: the chunked framing
/// bytes are forwarded but the Transfer-Encoding field is not, so the upstream reads the chunk
/// size line as the next request line.
fn connection_naming_transfer_encoding_desyncs_upstream(driver: Driver) {
    let body = format!("{:x}\r\n{SMUGGLED}\r\n0\r\n\r\n", SMUGGLED.len());
    let raw = format!(
        "POST / HTTP/1.1\r\nHost: test.local\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
    );
    assert_body_not_smuggled(driver, raw.as_bytes(), true);
}

/// BUG (RFC 9112 §3.2). `Connection: host` makes src/http/write.rs:96-97 drop the Host line of
/// an HTTP/1.1 request; write.rs:122 only adds one when the client sent none, so the upstream
/// gets an HTTP/1.1 request without Host (which it must answer with 400), or routes it by its
/// default virtual host.
fn connection_naming_host_drops_host(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let resp = c.request(&req("GET", "/h", &[("Connection", "host")], b""));
    if resp.status == 400 {
        return; // refusing is a fine fix
    }
    let r = &up.wait_requests(1, PROMPT)[0];
    assert_eq!(r.header_all("host"), vec![TEST_HOST], "forwarded head: {}", r.head_str());
}

/// BUG (response desync). An upstream response with `Connection: content-length` loses its
/// Content-Length in src/http/write.rs:186 while pipeline.rs:262-275 still frames the body by it
/// and keeps the client connection alive. The client gets a body with neither Content-Length,
/// Transfer-Encoding nor `Connection: close`: it must read until close (RFC 9112 §6.3 rule 8),
/// so it hangs, and the next response on the connection becomes part of this body.
fn upstream_connection_naming_content_length_unframed_response(driver: Driver) {
    let up = TestUpstream::respond(b"HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello");
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    c.send(&get("/"));
    let got = raw_available(&mut c, Duration::from_millis(500));
    let head = got.split("\r\n\r\n").next().unwrap_or("").to_ascii_lowercase();
    assert!(
        head.contains("content-length: 5") || head.contains("transfer-encoding") || head.contains("connection: close"),
        "response body relayed without any framing on a kept-alive connection: {got:?}"
    );
}

/// BUG (RFC 9110 §9.3.2, keep-alive desync). Errors the gateway answers itself (src/error.rs,
/// src/http/conn.rs:154, write.rs:203 `canned`) always carry a body, also for HEAD. A 404 or 502
/// keeps the connection open (close = false), so the client, which correctly reads no body after
/// a HEAD response, takes the error text as the start of the next response.
fn head_error_response_has_no_body(driver: Driver) {
    let gw = ConfigBuilder::new()
        .upstream("dead", &[closed_port()], "")
        .route("/api", "dead", "connect_timeout = \"2s\"")
        .start(driver);
    for path in ["/other", "/api/x"] {
        let mut c = gw.client();
        let resp = c.request(&req("HEAD", path, &[], b""));
        assert!(resp.status == 404 || resp.status == 502, "{}", resp.head_str());
        let extra = raw_available(&mut c, Duration::from_millis(300));
        assert!(
            extra.is_empty() || resp.is_close(),
            "HEAD {path}: {} sent a body after a HEAD response on a kept-alive connection: {extra:?}",
            resp.status
        );
    }
}

/// BUG (broken response). httparse skips empty lines before a status line (as it does before a
/// request line), but src/http/response.rs:113-115 take the status line to end at the first LF of
/// the buffer and to start at byte 9. With a leading CRLF the forwarded head
/// (write.rs:173-174, `0..status_line_end`) is just "\r\n": the status line is lost and the client
/// receives `\r\nContent-Length: 2\r\n\r\nok`.
fn upstream_leading_crlf_loses_status_line(driver: Driver) {
    let up = TestUpstream::respond(b"\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    c.send(&get("/"));
    let got = raw_available(&mut c, Duration::from_millis(500));
    let trimmed = got.trim_start_matches("\r\n");
    assert!(trimmed.starts_with("HTTP/1.1 200 ") || trimmed.starts_with("HTTP/1.1 502 "), "not a response: {got:?}");
}

/// BUG (panic from upstream bytes). As above with an HTTP/1.0 upstream: status_rest is 9..2 and
/// src/http/write.rs:177 `head.slice(resp.status_rest.clone())` panics (start > end). The panic
/// is caught per connection, so the client just loses its connection with no answer.
fn upstream_http10_leading_crlf_panics(driver: Driver) {
    let up = TestUpstream::respond(b"\r\nHTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok");
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    c.send(&get("/"));
    match c.try_read_response_to("GET", None) {
        Ok(Some(resp)) => assert!(resp.status == 200 || resp.status == 502, "{}", resp.head_str()),
        other => panic!("no response (gateway output: {}): {other:?}", gw.output()),
    }
}

/// BUG (limit counts framing). src/pipeline.rs:174-176 and 201-204 compare the *wire* bytes of a
/// chunked body (sizes, CRLFs, trailers) with max_body_bytes. A chunked body of exactly the
/// limit is refused with 413 although the same body with Content-Length passes
/// (tests/limits.rs body_too_large_413_per_route); small chunks inflate the count further.
fn chunked_body_at_limit_accepted(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).limit("max_body_bytes = 10").start(driver);
    let mut c = gw.client();
    let body = chunked(&[b"01234", b"56789"], &[]);
    let resp = c.request(&req("POST", "/", &[("Transfer-Encoding", "chunked")], &body));
    assert_eq!(resp.status, 200, "10 payload bytes at a 10-byte limit: {}", resp.head_str());
    assert_eq!(resp.body, echo_body("POST", "/", b"0123456789"));
}

/// BUG (HTTP/1.0, RFC 9112 §3.2.2). An HTTP/1.0 request in absolute-form without Host (what
/// 1.0 clients send to a proxy) is refused with 400 by src/http/parse.rs:325-328: the authority
/// "does not match" a Host that is absent. With absolute-form the target's authority *is* the
/// host; there is nothing to disagree with.
fn http10_absolute_form_without_host(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let resp = c.request(b"GET http://test.local/abs HTTP/1.0\r\n\r\n");
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    let r = &up.wait_requests(1, PROMPT)[0];
    assert_eq!(r.target, "/abs");
}

/// A one-connection raw upstream: answers the first request, then `late` bytes after `delay`
/// (unsolicited), then answers every later request with `second`.
fn late_bytes_upstream(late: &'static [u8], delay: Duration, second: &'static [u8]) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let read_head = |s: &mut TcpStream| -> bool {
            let mut got = Vec::new();
            let mut b = [0u8; 1];
            while !got.ends_with(b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(1) => got.push(b[0]),
                    _ => return false,
                }
            }
            true
        };
        if !read_head(&mut s) {
            return;
        }
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst");
        thread::sleep(delay);
        let _ = s.write_all(late);
        while read_head(&mut s) {
            let _ = s.write_all(second);
        }
    });
    addr
}

/// BUG / risk (response to the wrong client). src/upstream/pool.rs:65 only peeks at a pooled
/// connection idle for 200 ms or more (PEEK_AFTER), although the module doc promises a check
/// for "stray bytes from the upstream before it is handed out". Bytes that arrive after the
/// exchange was judged clean (a late body for HEAD/204, a duplicate response, or the second
/// response produced by the smuggling above) are read as the *next* request's response: here
/// another client's GET receives the stale response. A non-blocking MSG_PEEK on every reuse
/// costs one syscall and closes most of this window.
fn pooled_connection_with_late_bytes_not_reused(driver: Driver) {
    let addr = late_bytes_upstream(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale",
        Duration::from_millis(20),
        b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond",
    );
    let gw = ConfigBuilder::proxy_to(addr).start(driver);
    let first = Client::connect(gw.addr).request(&get("/first"));
    assert_eq!(first.body_str(), "first");
    thread::sleep(Duration::from_millis(80));
    // Another client, well within PEEK_AFTER of the first exchange.
    let mut other = Client::connect(gw.addr);
    let resp = other.request(&get("/second"));
    assert_ne!(resp.body_str(), "stale", "a stale upstream response was served to another client's request");
}

/// PIN (passes today): pipelined requests with bodies, where the body of the first arrives in
/// the same segment as the head of the second: each body goes with its own request and the
/// responses come back in order.
fn pipelined_bodies_stay_separate(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let mut raw = req("POST", "/a", &[], b"AAAA");
    raw.extend(req("POST", "/b", &[("Transfer-Encoding", "chunked")], &chunked(&[b"BB"], &[("X-T", "1")])));
    raw.extend(get("/c"));
    c.send(&raw);
    assert_eq!(c.read_response().body, echo_body("POST", "/a", b"AAAA"));
    assert_eq!(c.read_response().body, echo_body("POST", "/b", b"BB"));
    assert_eq!(c.read_response().body, echo_body("GET", "/c", b""));
    assert!(up.errors().is_empty(), "{:?}", up.errors());
}

/// PIN (passes today): a response to HEAD whose upstream wrongly appends a body in the same
/// write must not return that connection to the pool (pipeline.rs:307 checks `up.buf`), so the
/// next request is answered by a fresh, clean exchange.
fn head_with_stray_body_not_pooled(driver: Driver) {
    let up = TestUpstream::with_handler(|r| {
        if r.method == "HEAD" {
            Action::Respond(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec())
        } else {
            Action::Echo
        }
    });
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let head = c.request(&req("HEAD", "/h", &[], b""));
    assert_eq!(head.status, 200);
    thread::sleep(Duration::from_millis(50));
    let after = c.request(&get("/after"));
    assert_eq!(after.status, 200, "{}", after.head_str());
    assert_eq!(after.body, echo_body("GET", "/after", b""));
}

both_drivers!(
    connection_naming_content_length_smuggles_body,
    smuggled_response_served_to_other_client,
    connection_naming_transfer_encoding_desyncs_upstream,
    connection_naming_host_drops_host,
    upstream_connection_naming_content_length_unframed_response,
    head_error_response_has_no_body,
    upstream_leading_crlf_loses_status_line,
    upstream_http10_leading_crlf_panics,
    chunked_body_at_limit_accepted,
    http10_absolute_form_without_host,
    pooled_connection_with_late_bytes_not_reused,
    pipelined_bodies_stay_separate,
    head_with_stray_body_not_pooled,
);
