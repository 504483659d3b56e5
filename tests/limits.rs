//! Limits and timeouts on the client side: 414 request line (RFC 9112 §3), 431 header block and
//! field count (RFC 6585 §5), 413 body size per route (RFC 9110 §15.5.14), 408 header read timeout
//! (RFC 9110 §15.5.9), keep-alive idle timeout and request cap (RFC 9112 §9.6), and the connection
//! cap per worker.

#[macro_use]
mod support;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// Asserts the upstream got nothing (checked after a sentinel request on a fresh connection).
fn assert_nothing_forwarded(gw: &Gateway, up: &TestUpstream) {
    let sentinel = Client::connect(gw.addr).request(&get("/sentinel"));
    assert_eq!(sentinel.status, 200, "sentinel: {}", sentinel.head_str());
    up.wait_requests(1, PROMPT);
    std::thread::sleep(SETTLE);
    let targets: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/sentinel"], "requests that reached the upstream");
}

/// A request line longer than max_request_line gets 414; a shorter one passes.
fn request_line_too_long_414(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).limit("max_request_line = 1024").start(driver);
    let ok_path = format!("/{}", "a".repeat(900));
    let ok = gw.client().request(&get(&ok_path));
    assert_eq!(ok.status, 200, "a 900-byte target is within the limit: {}", ok.head_str());
    let mut c = gw.client();
    let resp = c.request(&get(&format!("/{}", "b".repeat(2000))));
    assert_eq!(resp.status, 414, "{}", resp.head_str());
    std::thread::sleep(SETTLE);
    assert_eq!(up.request_count(), 1, "the long request must not be forwarded");
}

/// A head larger than max_header_bytes gets 431, whether one huge field or many small ones.
fn header_block_too_big_431(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).limit("max_header_bytes = 4096").start(driver);
    let big = "x".repeat(5000);
    let resp = gw.client().request(&req("GET", "/big", &[("X-Big", &big)], b""));
    assert_eq!(resp.status, 431, "one 5000-byte field: {}", resp.head_str());
    let value = "y".repeat(70);
    let names: Vec<String> = (0..60).map(|i| format!("X-Field-{i:02}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), value.as_str())).collect();
    let resp = gw.client().request(&req("GET", "/many", &many, b""));
    assert_eq!(resp.status, 431, "60 fields of ~80 bytes: {}", resp.head_str());
    let few: Vec<(&str, &str)> = many[..30].to_vec();
    let resp = gw.client().request(&req("GET", "/few", &few, b""));
    assert_eq!(resp.status, 200, "30 fields of ~80 bytes fit in 4096: {}", resp.head_str());
    let targets: Vec<String> = up.wait_requests(1, PROMPT).into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/few"]);
}

/// More than max_headers fields gets 431; fewer pass.
fn too_many_headers_431(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).limit("max_headers = 10").start(driver);
    let names: Vec<String> = (0..20).map(|i| format!("X-F{i}")).collect();
    let fields: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let resp = gw.client().request(&req("GET", "/many", &fields, b""));
    assert_eq!(resp.status, 431, "21 fields with max_headers = 10: {}", resp.head_str());
    let resp = gw.client().request(&req("GET", "/few", &fields[..5], b""));
    assert_eq!(resp.status, 200, "6 fields with max_headers = 10: {}", resp.head_str());
    let targets: Vec<String> = up.wait_requests(1, PROMPT).into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/few"]);
}

/// max_body_bytes applies per route (override) and globally (default); at the limit passes,
/// one byte over gets 413 without reaching the upstream.
fn body_too_large_413_per_route(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::new()
        .limit("max_body_bytes = 1000")
        .upstream("test", &[up.addr()], "")
        .route("/", "test", "")
        .route("/small", "test", "max_body_bytes = 10")
        .start(driver);
    let cases: [(&str, usize, u16); 4] =
        [("/small", 10, 200), ("/small", 11, 413), ("/big", 1000, 200), ("/big", 1001, 413)];
    for (path, len, want) in cases {
        let mut c = gw.client();
        let body = vec![b'z'; len];
        let resp = c.request(&req("POST", path, &[("X-Request-Id", "rid-413-test")], &body));
        assert_eq!(resp.status, want, "{len} bytes to {path}: {}", resp.head_str());
        if want == 413 {
            assert!(resp.body_str().contains("rid-413-test"), "error body lacks the request id: {:?}", resp.body_str());
        }
    }
    std::thread::sleep(SETTLE);
    let got: Vec<(String, u64)> = up.requests().into_iter().map(|r| (r.target, r.body_len)).collect();
    assert_eq!(got, [("/small".to_string(), 10), ("/big".to_string(), 1000)]);
}

/// A chunked body that grows past the limit gets 413 and never reaches the upstream complete.
fn chunked_body_too_large_413(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).limit("max_body_bytes = 10").start(driver);
    let mut c = gw.client();
    let body = chunked(&[b"0123456789", b"abcdefghij"], &[]);
    let _ = c.try_send(&req("POST", "/", &[("Transfer-Encoding", "chunked")], &body));
    let resp = c.read_response();
    assert_eq!(resp.status, 413, "{}", resp.head_str());
    assert_nothing_forwarded(&gw, &up);
}

/// With `Expect: 100-continue` and a declared body over the limit, the final 413 comes instead
/// of 100 Continue (RFC 9110 §10.1.1), before the client sends the body.
fn expect_continue_with_too_large_body_gets_413(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).limit("max_body_bytes = 10").start(driver);
    let mut c = gw.client();
    c.send(b"POST / HTTP/1.1\r\nHost: test.local\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n");
    let resp = c.read_response();
    assert_eq!(resp.status, 413, "{}", resp.head_str());
    assert_nothing_forwarded(&gw, &up);
}

/// A head that does not complete within header_read_timeout gets 408 and the connection closes.
fn slow_header_408(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).limit("header_read_timeout = \"500ms\"").start(driver);
    let mut c = gw.client();
    let start = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: test.local\r\n");
    let resp = c.read_response();
    let took = start.elapsed();
    assert_eq!(resp.status, 408, "{}", resp.head_str());
    assert!(took >= Duration::from_millis(400), "408 after only {took:?}");
    assert!(took < PROMPT, "408 only after {took:?}");
    c.assert_closed(PROMPT);
    assert_eq!(up.heads_received(), 0);
}

/// The header timeout covers the whole head: trickling one byte at a time does not reset it.
fn slowloris_trickle_still_408(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).limit("header_read_timeout = \"500ms\"").start(driver);
    let mut c = gw.client();
    let start = Instant::now();
    let head = b"GET / HTTP/1.1\r\nHost: test.local\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for byte in head.iter() {
        // Trickling is the stimulus here, not synchronisation.
        if c.try_send(std::slice::from_ref(byte)).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if start.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let closed = c.read_until_close(PROMPT);
    let text = String::from_utf8_lossy(&closed.data);
    assert!(text.starts_with("HTTP/1.1 408"), "expected a 408 then close, got {text:?}");
    assert!(start.elapsed() < Duration::from_secs(3), "the trickle was served for {:?}", start.elapsed());
}

/// A connection's first head is timed from the accept, not from its first byte: a client that
/// stays silent for 400 ms and then trickles its head (one byte every 50 ms, ~2 s for the whole
/// 40-byte head) gets its 408 at header_read_timeout (600 ms) after connecting. Timed from the
/// first byte it would come at ~1.0 s, and a client could hold the slot for timeout + silence.
fn first_head_timed_from_accept(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).limit("header_read_timeout = \"600ms\"").start(driver);
    let mut c = gw.client();
    let connected = Instant::now();
    let mut writer = c.stream().try_clone().expect("clone the client socket");
    let stop = Arc::new(AtomicBool::new(false));
    let stop_writer = Arc::clone(&stop);
    // Silence, then trickling, are the stimulus here (on a thread, so the 408 is timed as it comes).
    let trickle = thread::spawn(move || {
        thread::sleep(Duration::from_millis(400));
        for byte in b"GET /slow HTTP/1.1\r\nHost: test.local\r\n\r\n" {
            if stop_writer.load(Ordering::SeqCst) || writer.write_all(std::slice::from_ref(byte)).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
    });
    let resp = c.read_response();
    let took = connected.elapsed();
    stop.store(true, Ordering::SeqCst);
    assert_eq!(resp.status, 408, "after {took:?}: {}", resp.head_str());
    assert!(took >= Duration::from_millis(500), "408 after only {took:?}");
    assert!(
        took < Duration::from_millis(900),
        "408 {took:?} after connecting: the header clock started at the first byte (400 ms), not at the accept"
    );
    assert!(resp.is_close(), "{}", resp.head_str());
    c.assert_closed(PROMPT);
    trickle.join().expect("trickle thread");
    assert_eq!(up.heads_received(), 0);
}

/// An idle keep-alive connection is closed after keepalive_timeout, quietly (no unsolicited
/// response that a client could mistake for the answer to its next request).
fn keepalive_idle_timeout_closes(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).limit("keepalive_timeout = \"500ms\"").start(driver);
    let mut c = gw.client();
    assert_eq!(c.request(&get("/")).status, 200);
    let idle_since = Instant::now();
    c.assert_closed(PROMPT);
    let idle = idle_since.elapsed();
    assert!(idle >= Duration::from_millis(400), "closed after only {idle:?} idle");
}

/// Activity resets the keep-alive idle timer: requests spaced below the timeout keep going.
fn keepalive_timer_resets_on_activity(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).limit("keepalive_timeout = \"600ms\"").start(driver);
    let mut c = gw.client();
    for i in 0..5 {
        let resp = c.request(&get(&format!("/r{i}")));
        assert_eq!(resp.status, 200, "request {i}");
        // Spacing requests is the stimulus here.
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// After max_requests_per_connection responses the gateway says `Connection: close` on the
/// last one and closes (RFC 9112 §9.6).
fn max_requests_per_connection_closes(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).limit("max_requests_per_connection = 3").start(driver);
    let mut c = gw.client();
    for i in 1..=3 {
        let resp = c.request(&get(&format!("/r{i}")));
        assert_eq!(resp.status, 200);
        assert_eq!(resp.is_close(), i == 3, "request {i}: {}", resp.head_str());
    }
    c.assert_closed(PROMPT);
}

/// The request cap counts answers the gateway makes itself: when the last allowed request is a
/// 404 (no route), that 404 says `Connection: close` and the connection closes (RFC 9112 §9.6).
fn max_requests_per_connection_counts_error_answers(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::new()
        .limit("max_requests_per_connection = 2")
        .upstream("test", &[up.addr()], "")
        .route("/api/", "test", "")
        .start(driver);
    let mut c = gw.client();
    for i in 1..=2 {
        let resp = c.request(&get(&format!("/nowhere{i}")));
        assert_eq!(resp.status, 404, "request {i}: {}", resp.head_str());
        assert_eq!(resp.is_close(), i == 2, "request {i}: {}", resp.head_str());
    }
    c.assert_closed(PROMPT);
    assert_eq!(up.heads_received(), 0);
}

/// With pipelining, requests beyond the cap are neither answered nor forwarded.
fn max_requests_per_connection_pipelined(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).limit("max_requests_per_connection = 3").start(driver);
    let mut c = gw.client();
    let batch: Vec<u8> = (1..=5).flat_map(|i| get(&format!("/r{i}"))).collect();
    c.send(&batch);
    for i in 1..=3 {
        assert_eq!(c.read_response().body, echo_body("GET", &format!("/r{i}"), b""));
    }
    c.assert_closed(PROMPT);
    let sentinel = gw.client().request(&get("/sentinel"));
    assert_eq!(sentinel.status, 200);
    up.wait_requests(4, PROMPT);
    std::thread::sleep(SETTLE);
    let targets: Vec<String> = up.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, ["/r1", "/r2", "/r3", "/sentinel"]);
}

/// With one worker capped at one connection, a second connection waits (accept pauses) and is
/// served once the first closes.
fn max_connections_per_worker_queues_second(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).workers(1).limit("max_connections_per_worker = 1").start(driver);
    let mut a = gw.client();
    assert_eq!(a.request(&get("/a")).status, 200);
    let mut b = gw.client();
    b.send(&get("/b"));
    b.assert_silent_for(Duration::from_millis(400));
    assert_eq!(up.request_count(), 1, "the second connection was served while at the cap");
    drop(a);
    let resp = b.read_response();
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    assert_eq!(resp.body, echo_body("GET", "/b", b""));
}

both_drivers!(
    request_line_too_long_414,
    header_block_too_big_431,
    too_many_headers_431,
    body_too_large_413_per_route,
    chunked_body_too_large_413,
    expect_continue_with_too_large_body_gets_413,
    slow_header_408,
    slowloris_trickle_still_408,
    first_head_timed_from_accept,
    keepalive_idle_timeout_closes,
    keepalive_timer_resets_on_activity,
    max_requests_per_connection_closes,
    max_requests_per_connection_counts_error_answers,
    max_requests_per_connection_pipelined,
    max_connections_per_worker_queues_second,
);
