//! Upstream failures: refused (502), no answer (504), garbage (502), truncated bodies (the client
//! must never see a complete-looking response), stale pooled connections, and the request id in
//! every gateway-generated error body.

#[macro_use]
mod support;

use std::io::{Cursor, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::http::HttpReader;
use support::*;

/// Reads everything until the gateway closes and checks that what arrived is either a complete
/// 502 or a response whose body is visibly incomplete (declared length not reached, or chunked
/// without its last chunk). A truncated body must never look complete to the client.
fn assert_truncation_visible(c: &mut Client, expected_len: Option<u64>) {
    let closed = c.read_until_close(PROMPT);
    let mut r = HttpReader::new(Cursor::new(closed.data.clone()));
    let head = match r.read_head(64 * 1024) {
        Ok(Some(h)) => h,
        // Closing without any response is also a visible failure.
        _ => return,
    };
    let head = support::http::parse_head(&head).expect("response head from the gateway");
    let status = &head.start[1];
    if status == "502" {
        return;
    }
    assert_eq!(status, "200", "unexpected status line {:?}", head.start);
    let te = support::http::header_list(&head.headers, "transfer-encoding");
    if te.last().is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let decoded = r.read_chunked_to(&mut |_| {});
        assert!(decoded.is_err(), "the gateway completed a chunked body the upstream never finished");
        return;
    }
    let cl = support::http::header(&head.headers, "content-length");
    let declared: u64 = cl
        .unwrap_or_else(|| {
            panic!("a truncated body was relayed close-delimited, which looks complete: {:?}", head.headers)
        })
        .parse()
        .expect("numeric Content-Length");
    if let Some(expected) = expected_len {
        assert_eq!(declared, expected, "Content-Length changed in transit");
    }
    let got = r.buffered().len() as u64;
    assert!(got < declared, "the client received the whole declared body ({got} bytes)");
}

/// Connection refused by the only target: 502 with the request id in the body.
fn refused_is_502(driver: Driver) {
    let gw = ConfigBuilder::new()
        .upstream("dead", &[closed_port()], "")
        .route("/", "dead", "connect_timeout = \"2s\"")
        .start(driver);
    let mut c = gw.client();
    let start = Instant::now();
    let resp = c.request(&req("GET", "/", &[("X-Request-Id", "rid-refused-1")], b""));
    assert_eq!(resp.status, 502, "{}", resp.head_str());
    assert!(start.elapsed() < Duration::from_secs(2), "a refused connect should fail fast");
    assert!(resp.body_str().contains("rid-refused-1"), "error body lacks the request id: {:?}", resp.body_str());
}

/// No response head within response_timeout: 504 with the request id in the body.
fn hang_is_504(driver: Driver) {
    let up = TestUpstream::hang();
    let gw = ConfigBuilder::proxy_to(up.addr()).all_routes("response_timeout = \"300ms\"").start(driver);
    let mut c = gw.client();
    let start = Instant::now();
    let resp = c.request(&req("GET", "/", &[("X-Request-Id", "rid-hang-1")], b""));
    let took = start.elapsed();
    assert_eq!(resp.status, 504, "{}", resp.head_str());
    assert!(took >= Duration::from_millis(250), "504 after only {took:?}");
    assert!(took < PROMPT, "504 only after {took:?}");
    assert!(resp.body_str().contains("rid-hang-1"), "error body lacks the request id: {:?}", resp.body_str());
    assert_eq!(up.heads_received(), 1);
}

/// The id the gateway generates is the one it forwards and the one in its error body.
fn generated_request_id_in_504_body_matches_upstream(driver: Driver) {
    let up = TestUpstream::hang();
    let gw = ConfigBuilder::proxy_to(up.addr()).all_routes("response_timeout = \"300ms\"").start(driver);
    let resp = gw.client().request(&get("/"));
    assert_eq!(resp.status, 504, "{}", resp.head_str());
    let seen = up.wait_requests(1, PROMPT);
    let id = seen[0].header("x-request-id").expect("the gateway adds X-Request-Id").to_string();
    assert!(resp.body_str().contains(&id), "504 body {:?} lacks the forwarded id {id:?}", resp.body_str());
}

/// total_timeout bounds the whole exchange even when response_timeout is longer.
fn total_timeout_is_504(driver: Driver) {
    let up = TestUpstream::with_handler(|_| Action::EchoAfter(Duration::from_secs(3)));
    let gw = ConfigBuilder::proxy_to(up.addr())
        .all_routes("response_timeout = \"10s\"\ntotal_timeout = \"300ms\"")
        .start(driver);
    let start = Instant::now();
    let resp = gw.client().request(&get("/"));
    assert_eq!(resp.status, 504, "{}", resp.head_str());
    assert!(start.elapsed() < Duration::from_secs(2), "504 only after {:?}", start.elapsed());
}

/// A status line that is not HTTP: 502 with the request id.
fn garbage_status_line_is_502(driver: Driver) {
    let up = TestUpstream::garbage();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let resp = gw.client().request(&req("GET", "/", &[("X-Request-Id", "rid-garbage-1")], b""));
    assert_eq!(resp.status, 502, "{}", resp.head_str());
    assert!(resp.body_str().contains("rid-garbage-1"), "error body lacks the request id: {:?}", resp.body_str());
}

/// A malformed field line in the upstream's head: 502.
fn malformed_response_field_is_502(driver: Driver) {
    let up = TestUpstream::respond_then_close(b"HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 2\r\n\r\nok");
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let resp = gw.client().request(&get("/"));
    assert_eq!(resp.status, 502, "{}", resp.head_str());
}

/// An upstream response with both Content-Length and chunked: Transfer-Encoding wins and the
/// Content-Length must not be relayed (RFC 9112 §6.3 rule 3); a 502 is also acceptable.
fn response_with_cl_and_te_rfc9112_6_3(driver: Driver) {
    let up = TestUpstream::respond_then_close(
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let resp = gw.client().request(&get("/"));
    if resp.status != 502 {
        assert_eq!(resp.status, 200, "{}", resp.head_str());
        assert_eq!(resp.header("content-length"), None, "{}", resp.head_str());
        assert_eq!(resp.body_str(), "hello");
    }
}

/// Upstream closes after 10 of 1000 body bytes: the client's connection is closed before a
/// complete body, so the truncation is visible.
fn close_mid_body_is_visible_to_client(driver: Driver) {
    let up = TestUpstream::close_mid_body();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    c.send(&get("/"));
    assert_truncation_visible(&mut c, Some(1000));
}

/// Upstream closes inside a chunked body: the gateway must not send the last chunk.
fn close_mid_chunked_body_is_visible_to_client(driver: Driver) {
    let up = TestUpstream::respond_then_close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    c.send(&get("/"));
    assert_truncation_visible(&mut c, None);
}

/// Upstream stalls mid-body: the route idle_timeout ends the exchange and the client's
/// connection is closed without a complete body.
fn stall_mid_body_hits_idle_timeout(driver: Driver) {
    let up = TestUpstream::with_handler(|_| {
        Action::RespondThenHang(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789".to_vec())
    });
    let gw = ConfigBuilder::proxy_to(up.addr()).all_routes("idle_timeout = \"300ms\"").start(driver);
    let mut c = gw.client();
    c.send(&get("/"));
    assert_truncation_visible(&mut c, Some(1000));
}

/// The upstream closes a pooled connection after answering (without saying so); the next
/// request must still succeed, on a fresh upstream connection.
fn pooled_connection_closed_by_upstream_is_replaced(driver: Driver) {
    let up = TestUpstream::respond_then_close(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    for i in 0..3 {
        let resp = c.request(&get(&format!("/r{i}")));
        assert_eq!(resp.status, 200, "request {i}: {}", resp.head_str());
        assert_eq!(resp.body_str(), "ok");
        // The upstream has closed its end; the gateway's pooled socket is now stale.
        up.wait_closed(i + 1, PROMPT);
    }
    assert_eq!(up.request_count(), 3);
    assert_eq!(up.connections(), 3);
}

/// Pooled connections idle longer than the upstream idle_timeout are closed by the gateway.
fn pool_idle_timeout_closes_upstream_connection(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::new()
        .upstream("test", &[up.addr()], "idle_timeout = \"300ms\"")
        .route("/", "test", "")
        .start(driver);
    let mut c = gw.client();
    assert_eq!(c.request(&get("/")).status, 200);
    let start = Instant::now();
    up.wait_closed(1, PROMPT);
    assert!(start.elapsed() >= Duration::from_millis(200), "pooled connection closed after {:?}", start.elapsed());
}

/// Bytes the upstream sends beyond its declared response must not be served as the answer to
/// the next request on that pooled connection (response desync).
fn upstream_extra_bytes_not_served_to_next_request(driver: Driver) {
    let up = TestUpstream::with_handler(|r| {
        if r.target == "/first" {
            Action::Respond(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\
                  HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
                    .to_vec(),
            )
        } else {
            Action::Echo
        }
    });
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    let first = c.request(&get("/first"));
    assert_eq!(first.body_str(), "ok");
    let second = c.request(&get("/second"));
    assert_ne!(second.body_str(), "smuggled", "a leftover upstream response was served to the next request");
    assert_eq!(second.status, 200, "{}", second.head_str());
    assert_eq!(second.body, echo_body("GET", "/second", b""));
}

/// A raw upstream for timing tests. On each connection it reads one request head, then writes
/// the pieces of `script` one by one with `gap` after each (the pacing is the stimulus), then
/// keeps the connection open without sending more until the gateway closes it. It stops writing
/// as soon as a write fails (the gateway gave up and closed).
struct ScriptedUpstream {
    addr: SocketAddr,
    heads: Arc<AtomicUsize>,
}

impl ScriptedUpstream {
    fn start(script: Vec<Vec<u8>>, gap: Duration) -> ScriptedUpstream {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind scripted upstream");
        let addr = l.local_addr().expect("scripted upstream addr");
        let heads = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&heads);
        // The accept thread ends with the test process.
        thread::spawn(move || {
            for stream in l.incoming() {
                let Ok(mut s) = stream else { continue };
                let script = script.clone();
                let counter = Arc::clone(&counter);
                thread::spawn(move || {
                    let _ = s.set_nodelay(true);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut got = Vec::new();
                    let mut b = [0u8; 1];
                    while !got.ends_with(b"\r\n\r\n") {
                        match s.read(&mut b) {
                            Ok(1) => got.push(b[0]),
                            _ => return,
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    for piece in &script {
                        if s.write_all(piece).is_err() {
                            return;
                        }
                        thread::sleep(gap);
                    }
                    let mut sink = [0u8; 4096];
                    while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
                });
            }
        });
        ScriptedUpstream { addr, heads }
    }

    fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }
}

const PROCESSING: &[u8] = b"HTTP/1.1 102 Processing\r\n\r\n";

/// An upstream that sends `102 Processing` every 50 ms and never a final response: the route's
/// response_timeout bounds the whole response head, interim responses included, so the client
/// gets a 504 (or 502) within about the timeout, not an endless trickle of 1xx that keeps the
/// exchange (and a pooled connection) alive. At most 16 interim responses are relayed.
fn endless_interim_responses_bounded_by_response_timeout(driver: Driver) {
    // 100 × 50 ms = 5 s of 102s, far past the 500 ms timeout.
    let up = ScriptedUpstream::start(vec![PROCESSING.to_vec(); 100], Duration::from_millis(50));
    let gw = ConfigBuilder::proxy_to(up.addr).all_routes("response_timeout = \"500ms\"").start(driver);
    let mut c = gw.client();
    let start = Instant::now();
    c.send(&req("GET", "/", &[("X-Request-Id", "rid-interim-1")], b""));
    let (interim, fin) = c.read_final_response();
    let took = start.elapsed();
    assert!(fin.status == 504 || fin.status == 502, "expected 504 or 502, got {}", fin.head_str());
    assert!(took < Duration::from_secs(2), "final answer only after {took:?} and {} interim responses", interim.len());
    assert!(interim.len() <= 16, "{} interim responses relayed (at most 16)", interim.len());
    assert!(interim.iter().all(|r| r.status == 102), "{:?}", interim.iter().map(|r| r.status).collect::<Vec<_>>());
    assert!(fin.body_str().contains("rid-interim-1"), "error body lacks the request id: {:?}", fin.body_str());
    assert_eq!(up.heads(), 1);
}

/// 40 interim responses in one burst, then silence, with a long response_timeout: the gateway
/// stops after 16 relayed 1xx with a 502 instead of relaying them all and waiting for the timeout.
fn interim_response_burst_capped_at_16(driver: Driver) {
    let up = ScriptedUpstream::start(vec![PROCESSING.repeat(40)], Duration::ZERO);
    let gw = ConfigBuilder::proxy_to(up.addr).all_routes("response_timeout = \"5s\"").start(driver);
    let mut c = gw.client();
    let start = Instant::now();
    c.send(&get("/"));
    let (interim, fin) = c.read_final_response();
    let took = start.elapsed();
    assert_eq!(fin.status, 502, "{}", fin.head_str());
    assert!(interim.len() <= 16, "{} interim responses relayed (at most 16)", interim.len());
    assert!(took < Duration::from_secs(2), "502 only after {took:?}: the cap did not end the exchange");
}

/// An upstream that drips its response head one byte every 100 ms: each byte must not restart
/// response_timeout (one deadline for the whole head), so the client gets a 504 after about
/// 500 ms, not the 200 after the ~4 s the drip takes.
fn dripping_response_head_is_504(driver: Driver) {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let up = ScriptedUpstream::start(head.iter().map(|&b| vec![b]).collect(), Duration::from_millis(100));
    let gw = ConfigBuilder::proxy_to(up.addr).all_routes("response_timeout = \"500ms\"").start(driver);
    let mut c = gw.client();
    let start = Instant::now();
    let resp = c.request(&req("GET", "/", &[("X-Request-Id", "rid-drip-1")], b""));
    let took = start.elapsed();
    assert_eq!(resp.status, 504, "after {took:?}: {}", resp.head_str());
    assert!(took >= Duration::from_millis(400), "504 after only {took:?}");
    assert!(took < Duration::from_secs(2), "504 only after {took:?}");
    assert!(resp.body_str().contains("rid-drip-1"), "error body lacks the request id: {:?}", resp.body_str());
    assert_eq!(up.heads(), 1);
}

both_drivers!(
    refused_is_502,
    hang_is_504,
    generated_request_id_in_504_body_matches_upstream,
    total_timeout_is_504,
    garbage_status_line_is_502,
    malformed_response_field_is_502,
    response_with_cl_and_te_rfc9112_6_3,
    close_mid_body_is_visible_to_client,
    close_mid_chunked_body_is_visible_to_client,
    stall_mid_body_hits_idle_timeout,
    pooled_connection_closed_by_upstream_is_replaced,
    pool_idle_timeout_closes_upstream_connection,
    upstream_extra_bytes_not_served_to_next_request,
    endless_interim_responses_bounded_by_response_timeout,
    interim_response_burst_capped_at_16,
    dripping_response_head_is_504,
);
