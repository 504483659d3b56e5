//! Protocol upgrade through the gateway (RFC 9110 §7.8, §15.2.2): a websocket-like exchange where
//! the upstream answers 101 and bytes then flow both ways unchanged.

#[macro_use]
mod support;

use std::io::Write;
use std::thread;
use std::time::Duration;
use support::*;

const UPGRADE_REQUEST: &[u8] = b"GET /ws HTTP/1.1\r\nHost: test.local\r\nConnection: Upgrade\r\n\
    Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Sends the upgrade request and checks the 101 that comes back.
fn upgrade(c: &mut Client) {
    c.send(UPGRADE_REQUEST);
    let resp = c.read_response();
    assert_eq!(resp.status, 101, "{}", resp.head_str());
    assert!(resp.has_token("connection", "upgrade"), "{}", resp.head_str());
    assert_eq!(resp.header("upgrade"), Some("websocket"));
}

/// 101 from the upstream, then an echo in both directions, small and 1 MiB, then a clean close.
fn websocket_like_upgrade_echo(driver: Driver) {
    let up = TestUpstream::upgrade_echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    upgrade(&mut c);
    let r = &up.wait_requests(1, PROMPT)[0];
    assert_eq!(r.header("upgrade"), Some("websocket"), "Upgrade must be forwarded when upgrading: {}", r.head_str());
    assert!(r.has_token("connection", "upgrade"), "{}", r.head_str());
    assert_eq!(r.header("sec-websocket-key"), Some("dGhlIHNhbXBsZSBub25jZQ=="));

    c.send(b"ping-1");
    assert_eq!(c.read_raw_exact(6), b"ping-1");

    let len = 1usize << 20;
    let mut w = c.stream().try_clone().expect("clone client socket");
    let writer = thread::spawn(move || {
        let mut data = vec![0u8; len];
        fill_pattern(0, &mut data);
        w.write_all(&data)
    });
    let echoed = c.read_raw_exact(len);
    writer.join().expect("writer thread").expect("write 1 MiB into the tunnel");
    let mut want = vec![0u8; len];
    fill_pattern(0, &mut want);
    assert!(echoed == want, "tunnelled bytes came back altered");

    c.shutdown_write();
    c.assert_closed(PROMPT);
}

/// Bytes the upstream sends right behind its 101 head (server speaks first) reach the client.
fn bytes_right_after_101_are_relayed(driver: Driver) {
    let up = TestUpstream::with_handler(|_| {
        Action::RespondThenHang(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nserver-hello"
                .to_vec(),
        )
    });
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    upgrade(&mut c);
    assert_eq!(c.read_raw_exact(12), b"server-hello");
}

/// If the upstream declines (plain 200), the connection stays HTTP and keeps working.
fn declined_upgrade_stays_http(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(driver);
    let mut c = gw.client();
    c.send(UPGRADE_REQUEST);
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    assert_eq!(resp.body, echo_body("GET", "/ws", b""));
    let next = c.request(&get("/next"));
    assert_eq!(next.status, 200);
    assert_eq!(next.body, echo_body("GET", "/next", b""));
}

/// An idle upgraded tunnel is closed after the route idle_timeout.
fn idle_tunnel_is_closed(driver: Driver) {
    let up = TestUpstream::upgrade_echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).all_routes("idle_timeout = \"500ms\"").start(driver);
    let mut c = gw.client();
    upgrade(&mut c);
    c.send(b"hi");
    assert_eq!(c.read_raw_exact(2), b"hi");
    let start = std::time::Instant::now();
    c.assert_closed(PROMPT);
    assert!(start.elapsed() >= Duration::from_millis(400), "closed after only {:?}", start.elapsed());
    up.wait_closed(1, PROMPT);
}

both_drivers!(
    websocket_like_upgrade_echo,
    bytes_right_after_101_are_relayed,
    declined_upgrade_stays_http,
    idle_tunnel_is_closed,
);
