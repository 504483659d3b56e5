//! Graceful shutdown: on SIGTERM the gateway stops accepting, finishes in-flight requests (up to
//! shutdown.drain_timeout) and exits 0; a second signal makes it exit at once.

#[macro_use]
mod support;

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::*;

/// Polls until connecting to `addr` is refused (the listener is closed), at most `within`.
fn wait_until_refused(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return,
            Ok(_) | Err(_) if Instant::now() >= deadline => {
                panic!("the gateway still accepted connections on {addr} {within:?} after SIGTERM")
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// SIGTERM with a request in flight: the listener closes, the client still gets its full
/// response, and the process exits 0.
fn sigterm_finishes_in_flight_request(driver: Driver) {
    let up = TestUpstream::with_handler(|_| Action::EchoAfter(Duration::from_secs(2)));
    let mut gw = ConfigBuilder::proxy_to(up.addr()).shutdown("drain_timeout = \"10s\"").start(driver);
    let addr = gw.addr;
    let mut c = gw.client();
    c.send(&req("POST", "/in-flight", &[], b"payload"));
    up.wait_requests(1, PROMPT);
    gw.signal("TERM");
    wait_until_refused(addr, Duration::from_millis(1500));
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    assert_eq!(resp.body, echo_body("POST", "/in-flight", b"payload"));
    let status = gw.wait_exit(PROMPT).expect("the gateway exits after draining");
    assert!(status.success(), "exit status after a graceful drain: {status}");
    assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(), "still accepting after exit");
}

/// An idle keep-alive connection does not hold up shutdown until drain_timeout.
fn sigterm_with_idle_keepalive_exits_promptly(driver: Driver) {
    let up = TestUpstream::echo();
    let mut gw = ConfigBuilder::proxy_to(up.addr()).shutdown("drain_timeout = \"30s\"").start(driver);
    let mut c = gw.client();
    assert_eq!(c.request(&get("/")).status, 200);
    let start = Instant::now();
    gw.signal("TERM");
    let status = gw.wait_exit(PROMPT).expect("exit with only idle connections open");
    assert!(status.success(), "exit status: {status}");
    assert!(start.elapsed() < PROMPT);
    c.assert_closed(PROMPT);
}

/// drain_timeout bounds the wait for a request that never finishes.
fn drain_timeout_bounds_shutdown(driver: Driver) {
    let up = TestUpstream::hang();
    let mut gw = ConfigBuilder::proxy_to(up.addr())
        .shutdown("drain_timeout = \"500ms\"")
        .all_routes("response_timeout = \"60s\"")
        .start(driver);
    let mut c = gw.client();
    c.send(&get("/stuck"));
    up.wait_heads(1, PROMPT);
    let start = Instant::now();
    gw.signal("TERM");
    let status = gw.wait_exit(PROMPT).expect("exit once drain_timeout has passed");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(400), "exited after {took:?}, before drain_timeout");
    assert!(status.success(), "exit status: {status}");
}

/// A second signal during the drain exits at once.
fn second_signal_exits_at_once(driver: Driver) {
    let up = TestUpstream::hang();
    let mut gw = ConfigBuilder::proxy_to(up.addr())
        .shutdown("drain_timeout = \"60s\"")
        .all_routes("response_timeout = \"60s\"")
        .start(driver);
    let addr = gw.addr;
    let mut c = gw.client();
    c.send(&get("/stuck"));
    up.wait_heads(1, PROMPT);
    gw.signal("TERM");
    wait_until_refused(addr, Duration::from_secs(2));
    assert!(gw.is_running(), "the first signal should start a drain, not exit");
    let start = Instant::now();
    gw.signal("TERM");
    gw.wait_exit(Duration::from_secs(3)).expect("a second signal exits at once");
    assert!(start.elapsed() < Duration::from_secs(3));
}

both_drivers!(
    sigterm_finishes_in_flight_request,
    sigterm_with_idle_keepalive_exits_promptly,
    drain_timeout_bounds_shutdown,
    second_signal_exits_at_once,
);
