//! Edge-node duties (issue 4): the PROXY protocol (HAProxy's spec, "The PROXY protocol",
//! versions 1 and 2: v1 text header §2.1, v2 binary header §2.2) on listeners with
//! `proxy_protocol = "off" | "optional" | "required"` and `proxy_protocol_from`, and health and
//! draining for the L4 balancer in front: admin `/healthz`, `/readyz`, `POST /drain`, a
//! `health = true` route, and `[shutdown] grace_period` (docs/operations.md).
//!
//! The PROXY tests connect from 127.0.0.1 and send headers that claim other addresses (from the
//! documentation ranges 192.0.2.0/24, 203.0.113.0/24 and 2001:db8::/32); the upstream's
//! X-Forwarded-For shows which address the gateway took as the client's. "Closed without an
//! answer" means the connection ends (EOF or reset) before any byte comes back, and nothing
//! reaches the upstream.
//!
//! Most tests run once under [`DRIVER`]; the `both_drivers!` list at the end holds the
//! representative ones (a v1 header, a header split across writes, a drain).

#[macro_use]
mod support;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use support::gateway::path_str;
use support::*;

/// The driver of the tests that run once (io_uring, what `driver = "auto"` picks where it can).
const DRIVER: Driver = Driver::Uring;

/// How long `ringgate check` may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);

/// A rejected header must close the connection well before the (default, 10 s) header read
/// timeout: the close is the answer to the bad header, not to silence.
const REJECT_WITHIN: Duration = Duration::from_secs(2);

/// The v2 signature (§2.2).
const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// v2 command byte (§2.2): version 2 in the high nibble, LOCAL (0) or PROXY (1) in the low one.
const V2_LOCAL: u8 = 0x20;
const V2_PROXY: u8 = 0x21;
/// v2 address family and transport byte (§2.2): TCP over IPv4, TCP over IPv6.
const V2_TCP4: u8 = 0x11;
const V2_TCP6: u8 = 0x21;

/// The admin section the drain and health tests add.
const ADMIN: &str = "[admin]\naddress = \"127.0.0.1:0\"\n\n";
/// A data-port route answering like `/readyz` (docs/operations.md).
const HEALTH_ROUTE: &str = "[[routes]]\npath = \"/health\"\nhealth = true\n\n";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A v2 header (§2.2): signature, command byte, family byte, 16-bit length, address block + TLVs.
fn v2(cmd: u8, fam: u8, block: &[u8]) -> Vec<u8> {
    let mut out = V2_SIG.to_vec();
    out.push(cmd);
    out.push(fam);
    out.extend_from_slice(&u16::try_from(block.len()).expect("a v2 block fits in 16 bits").to_be_bytes());
    out.extend_from_slice(block);
    out
}

/// The v2 IPv4 address block (§2.2, `ipv4_addr`): source, destination, source port, dest port.
fn v2_ipv4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    out.extend_from_slice(&src);
    out.extend_from_slice(&dst);
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out
}

/// The v2 IPv6 address block (§2.2, `ipv6_addr`).
fn v2_ipv6(src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(36);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(&sport.to_be_bytes());
    out.extend_from_slice(&dport.to_be_bytes());
    out
}

/// One TLV (§2.2, after the address block): type, 16-bit big-endian length, value.
fn tlv(kind: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![kind];
    out.extend_from_slice(&u16::try_from(value.len()).expect("a TLV fits in 16 bits").to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// `parts` concatenated.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The X-Forwarded-For list as the upstream saw it (all field lines joined, RFC 9110 §5.3).
fn xff(r: &Recorded) -> Vec<String> {
    support::http::header_list(&r.headers, "x-forwarded-for")
}

/// A config with one listener using PROXY protocol `mode`, `from` as the raw TOML array body of
/// `proxy_protocol_from`, and the upstream `up` on `/`.
fn pp_config(up: SocketAddr, mode: &str, from: &str) -> ConfigBuilder {
    ConfigBuilder::proxy_to(up)
        .no_listeners()
        .listener_with("127.0.0.1:0", &format!("proxy_protocol = \"{mode}\"\nproxy_protocol_from = [{from}]"))
}

/// A listener that trusts loopback (where the tests connect from) to send a header.
fn pp_gateway(up: &TestUpstream, mode: &str, driver: Driver) -> Gateway {
    pp_config(up.addr(), mode, "\"127.0.0.0/8\"").start(driver)
}

/// Sends `preamble` then `GET path`, expects a 200 from the echo upstream, and returns the
/// X-Forwarded-For list the upstream saw for that request.
fn xff_through(gw: &Gateway, up: &TestUpstream, preamble: &[u8], path: &str) -> Vec<String> {
    let mut c = gw.client();
    let resp = c.request(&cat(&[preamble, &get(path)]));
    assert_eq!(resp.status, 200, "after preamble {:?}: {}", String::from_utf8_lossy(preamble), resp.head_str());
    assert_eq!(resp.body, echo_body("GET", path, b""));
    let seen = up.requests();
    let r = seen.iter().rev().find(|r| r.target == path).unwrap_or_else(|| panic!("the upstream never got {path}"));
    xff(r)
}

/// Sends `bytes` (a header, usually followed by a request) on a new connection and asserts the
/// gateway closes it without sending anything, within [`REJECT_WITHIN`].
fn assert_rejected(gw: &Gateway, bytes: &[u8], what: &str) {
    let mut c = gw.client();
    // The gateway may close (and reset) while we write: that is the expected outcome too.
    let _ = c.try_send(bytes);
    let closed = c.read_until_close(REJECT_WITHIN);
    assert!(
        closed.data.is_empty(),
        "{what}: expected a close without an answer, got {:?}",
        String::from_utf8_lossy(&closed.data[..closed.data.len().min(512)])
    );
}

/// Runs `ringgate check` on `config`; returns (success, stderr).
fn check(config: &str) -> (bool, String) {
    let file = TempFile::new("edge-check", "toml", config);
    let out = run_cli(&["check", path_str(&file.path)], CLI_TIMEOUT);
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A config for `check` whose one listener carries `listener_extra` (and `shutdown` lines).
fn check_config(listener_extra: &str, shutdown: &[&str]) -> String {
    let mut b = ConfigBuilder::new()
        .no_listeners()
        .listener_with("127.0.0.1:0", listener_extra)
        .upstream_raw("demo", &["builtin:demo"], "")
        .route("/", "demo", "");
    for line in shutdown {
        b = b.shutdown(line);
    }
    b.render()
}

/// What a fresh connection to the data port got.
#[derive(Debug)]
enum Probe {
    /// The connect failed (refused): nothing listens.
    Refused,
    /// Accepted, then closed without a byte of answer.
    ClosedSilently,
    /// Answered (the first bytes).
    Served(String),
    /// Accepted by the kernel, but neither answered nor closed within the probe's read timeout.
    Hung,
}

/// Connects to `addr`, sends a `Connection: close` GET and reports what happened.
fn probe(addr: SocketAddr) -> Probe {
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
        Ok(s) => s,
        Err(_) => return Probe::Refused,
    };
    s.set_read_timeout(Some(Duration::from_millis(400))).expect("set probe read timeout");
    let _ = s.write_all(&req("GET", "/probe", &[("Connection", "close")], b""));
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                if data.is_empty() {
                    return Probe::Hung;
                }
                break;
            }
            Err(_) => break,
        }
    }
    if data.is_empty() {
        Probe::ClosedSilently
    } else {
        Probe::Served(String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned())
    }
}

/// Polls with fresh connections until `addr` stops taking them (refused, or closed without an
/// answer) by `deadline`, then checks that it stays so for two more connections (the first may be
/// one accepted in the race with the end of the grace period and dropped). A connection the
/// kernel accepts but nobody serves fails at once: the listening socket is still open in some
/// process, so a balancer's connections would hang instead of being refused.
fn wait_until_not_accepting(gw: &Gateway, deadline: Instant) -> Probe {
    let hung = |after: &str| -> ! {
        panic!(
            "a new connection to {} after the grace period ({after}) was accepted but neither served \
             nor closed: the listening socket is still open but nobody accepts from it; output:\n{}",
            gw.addr,
            gw.output()
        )
    };
    loop {
        match probe(gw.addr) {
            first @ (Probe::Refused | Probe::ClosedSilently) => {
                for i in 0..2 {
                    match probe(gw.addr) {
                        Probe::Refused | Probe::ClosedSilently => {}
                        Probe::Hung => hung(&format!("probe {} after a first {first:?}", i + 2)),
                        Probe::Served(head) => panic!("served again after a first {first:?}: {head:?}"),
                    }
                }
                return first;
            }
            Probe::Hung => hung("first probe"),
            Probe::Served(head) => {
                assert!(
                    Instant::now() < deadline,
                    "the gateway still served new connections on {} past the end of the grace \
                     period; last answer: {head:?}",
                    gw.addr
                );
                thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// `GET /readyz` on the admin listener, polled until it answers 200: right after the banner the
/// workers may still be registering (then it must say 503 `starting`, nothing else).
fn wait_ready(admin: SocketAddr) {
    let deadline = Instant::now() + PROMPT;
    loop {
        let (status, body) = admin_get(admin, "/readyz");
        if status == 200 {
            assert_eq!(body.trim(), "ready", "GET /readyz 200 body");
            return;
        }
        assert_eq!((status, body.trim()), (503, "starting"), "GET /readyz before the workers are up");
        assert!(Instant::now() < deadline, "GET /readyz still 503 starting after {PROMPT:?}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Polls admin `GET /readyz` until it answers 503 `draining`, at most `within`.
fn wait_draining(admin: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (status, body) = admin_get(admin, "/readyz");
        if (status, body.trim()) == (503, "draining") {
            return;
        }
        assert!(Instant::now() < deadline, "GET /readyz answered {status} {body:?} {within:?} after the drain began");
        thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol: addresses
// ---------------------------------------------------------------------------------------------

/// v1 (§2.1): `PROXY TCP4 src dst sport dport\r\n` from a trusted peer makes `src` the client
/// address: the upstream's X-Forwarded-For names it, not the balancer (127.0.0.1).
fn v1_tcp4_source_becomes_client(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = pp_gateway(&up, "required", driver);
    let seen = xff_through(&gw, &up, b"PROXY TCP4 192.0.2.10 192.0.2.20 56324 443\r\n", "/v1-tcp4");
    assert_eq!(seen, vec!["192.0.2.10"]);
}

/// v1 (§2.1): `PROXY TCP6 ...` carries an IPv6 source; it becomes the client address.
#[test]
fn v1_tcp6_source_becomes_client() {
    let up = TestUpstream::echo();
    let gw = pp_gateway(&up, "required", DRIVER);
    let seen = xff_through(&gw, &up, b"PROXY TCP6 2001:db8::1 2001:db8::2 51000 443\r\n", "/v1-tcp6");
    assert_eq!(seen, vec!["2001:db8::1"]);
}

/// v1 (§2.1): with `UNKNOWN` the receiver must ignore the rest of the line and use the real
/// connection's addresses, whether the line stops there or carries addresses.
#[test]
fn v1_unknown_keeps_real_peer() {
    let up = TestUpstream::echo();
    let gw = pp_gateway(&up, "required", DRIVER);
    assert_eq!(xff_through(&gw, &up, b"PROXY UNKNOWN\r\n", "/unknown-bare"), vec!["127.0.0.1"]);
    let spec_example = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
    assert_eq!(xff_through(&gw, &up, spec_example, "/unknown-addrs"), vec!["127.0.0.1"]);
}

/// v2 (§2.2): PROXY command over TCP/IPv4 with TLVs (ALPN, authority, NOOP, and a custom-range
/// unassigned type) after the addresses: the TLVs are skipped, the source becomes the client.
/// Also PROXY over TCP/IPv6.
#[test]
fn v2_proxy_ipv4_with_tlvs_and_ipv6() {
    let up = TestUpstream::echo();
    let gw = pp_gateway(&up, "required", DRIVER);
    let block = cat(&[
        &v2_ipv4([192, 0, 2, 77], [192, 0, 2, 1], 40000, 443),
        &tlv(0x01, b"http/1.1"),     // PP2_TYPE_ALPN
        &tlv(0x02, b"example.test"), // PP2_TYPE_AUTHORITY
        &tlv(0x04, &[0; 5]),         // PP2_TYPE_NOOP
        &tlv(0xE0, b"custom"),       // PP2_TYPE_MIN_CUSTOM
        &tlv(0x04, b""),             // an empty one at the very end
    ]);
    assert_eq!(xff_through(&gw, &up, &v2(V2_PROXY, V2_TCP4, &block), "/v2-tlvs"), vec!["192.0.2.77"]);
    let plain = v2_ipv4([203, 0, 113, 5], [192, 0, 2, 1], 1, 80);
    assert_eq!(xff_through(&gw, &up, &v2(V2_PROXY, V2_TCP4, &plain), "/v2-plain"), vec!["203.0.113.5"]);
    let six = v2_ipv6("2001:db8::77".parse().expect("v6"), "2001:db8::1".parse().expect("v6"), 40000, 443);
    assert_eq!(xff_through(&gw, &up, &v2(V2_PROXY, V2_TCP6, &six), "/v2-ipv6"), vec!["2001:db8::77"]);
}

/// v2 (§2.2): the LOCAL command (the balancer's own health check) must make the receiver use the
/// real connection endpoints and ignore any address block it carries.
#[test]
fn v2_local_keeps_real_peer() {
    let up = TestUpstream::echo();
    let gw = pp_gateway(&up, "required", DRIVER);
    let empty = v2(V2_LOCAL, 0x00, b"");
    assert_eq!(xff_through(&gw, &up, &empty, "/local-unspec"), vec!["127.0.0.1"]);
    let with_addr = v2(V2_LOCAL, V2_TCP4, &v2_ipv4([192, 0, 2, 99], [192, 0, 2, 1], 1234, 443));
    assert_eq!(xff_through(&gw, &up, &with_addr, "/local-ipv4"), vec!["127.0.0.1"]);
}

/// The header's source replaces the peer for the trusted-proxy check too (issue 4: "the client
/// address everywhere"). With `forwarding.trusted_proxies = ["127.0.0.0/8"]` (the balancer), a
/// client at 203.0.113.7 that sends its own X-Forwarded-For must not get it forwarded: it is not
/// a trusted proxy, whatever the balancer is.
#[test]
fn header_source_is_used_for_trusted_proxy_check() {
    let up = TestUpstream::echo();
    let gw = pp_config(up.addr(), "required", "\"127.0.0.0/8\"")
        .forwarding("trusted_proxies = [\"127.0.0.0/8\"]")
        .start(DRIVER);
    let mut c = gw.client();
    let forged = req("GET", "/forged", &[("X-Forwarded-For", "6.6.6.6")], b"");
    let resp = c.request(&cat(&[b"PROXY TCP4 203.0.113.7 192.0.2.1 5000 80\r\n", &forged]));
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    let r = &up.wait_requests(1, PROMPT)[0];
    assert_eq!(xff(r), vec!["203.0.113.7"], "a forged X-Forwarded-For from an untrusted client was kept");
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol: modes and trust
// ---------------------------------------------------------------------------------------------

/// `optional`: a connection that does not start with a header is plain HTTP (also a request
/// starting with `P`, which shares its first byte with `PROXY`, even when that byte arrives
/// alone); one that does is read as a header. (§2 says a receiver must not guess; `optional` is
/// the issue's explicit exception, for migrations.)
#[test]
fn optional_mode_accepts_plain_http_and_headers() {
    let up = TestUpstream::echo();
    let gw = pp_gateway(&up, "optional", DRIVER);
    assert_eq!(xff_through(&gw, &up, b"", "/plain"), vec!["127.0.0.1"]);

    let mut c = gw.client();
    let resp = c.request(&req("POST", "/post", &[], b"hello"));
    assert_eq!(resp.status, 200, "plain POST in optional mode: {}", resp.head_str());
    assert_eq!(resp.body, echo_body("POST", "/post", b"hello"));

    let mut c = gw.client();
    let put = req("PUT", "/put-split", &[], b"x");
    c.send(&put[..1]);
    thread::sleep(Duration::from_millis(50)); // let the lone "P" arrive on its own
    c.send(&put[1..]);
    let resp = c.read_response();
    assert_eq!(resp.status, 200, "a PUT whose first byte came alone: {}", resp.head_str());
    assert_eq!(resp.body, echo_body("PUT", "/put-split", b"x"));

    assert_eq!(xff_through(&gw, &up, b"PROXY TCP4 192.0.2.30 192.0.2.1 1000 80\r\n", "/v1"), vec!["192.0.2.30"]);
    let v2h = v2(V2_PROXY, V2_TCP4, &v2_ipv4([192, 0, 2, 31], [192, 0, 2, 1], 1000, 80));
    assert_eq!(xff_through(&gw, &up, &v2h, "/v2"), vec!["192.0.2.31"]);
}

/// `required`: a connection that starts with plain HTTP is closed without an answer, and the
/// request never reaches the upstream.
#[test]
fn required_mode_closes_plain_http() {
    let up = TestUpstream::echo();
    let gw = pp_gateway(&up, "required", DRIVER);
    assert_rejected(&gw, &get("/plain"), "plain HTTP on a required listener");
    assert_rejected(&gw, &req("POST", "/p", &[], b"body"), "plain POST on a required listener");
    // A sentinel with a header goes through; only it reached the upstream.
    assert_eq!(xff_through(&gw, &up, b"PROXY UNKNOWN\r\n", "/sentinel"), vec!["127.0.0.1"]);
    thread::sleep(SETTLE);
    assert_eq!(up.request_count(), 1, "requests reached the upstream: {:?}", up.requests());
}

/// A header from a peer outside `proxy_protocol_from` is refused (it would let anyone choose its
/// address): closed without an answer, in `optional` mode (where plain HTTP from that peer still
/// works, with its real address) and in `required` mode (where nothing from it is served).
#[test]
fn untrusted_peer_header_is_refused() {
    let up = TestUpstream::echo();
    let opt = pp_config(up.addr(), "optional", "\"10.0.0.0/8\"").start(DRIVER);
    assert_rejected(&opt, &cat(&[b"PROXY TCP4 192.0.2.66 192.0.2.1 1 80\r\n", &get("/v1")]), "untrusted v1");
    let v2h = v2(V2_PROXY, V2_TCP4, &v2_ipv4([192, 0, 2, 66], [192, 0, 2, 1], 1, 80));
    assert_rejected(&opt, &cat(&[&v2h, &get("/v2")]), "untrusted v2");
    assert_rejected(&opt, &cat(&[b"PROXY UNKNOWN\r\n", &get("/unknown")]), "untrusted v1 UNKNOWN");
    assert_eq!(xff_through(&opt, &up, b"", "/plain"), vec!["127.0.0.1"]);

    let required = pp_config(up.addr(), "required", "\"10.0.0.0/8\"").start(DRIVER);
    assert_rejected(&required, &cat(&[b"PROXY TCP4 192.0.2.66 192.0.2.1 1 80\r\n", &get("/r")]), "untrusted, required");
    assert_rejected(&required, &get("/plain-r"), "plain HTTP from an untrusted peer, required");
    thread::sleep(SETTLE);
    assert_eq!(up.request_count(), 1, "only the plain request may reach the upstream: {:?}", up.requests());
}

/// With `proxy_protocol = "off"` a PROXY line is not a header but a (bad) request line: it is
/// never taken as an address (the answer is a 400 or a close, and nothing is forwarded).
#[test]
fn off_mode_never_reads_a_header() {
    let up = TestUpstream::echo();
    let gw = ConfigBuilder::proxy_to(up.addr()).start(DRIVER);
    let mut c = gw.client();
    let _ = c.try_send(&cat(&[b"PROXY TCP4 192.0.2.66 192.0.2.1 1 80\r\n", &get("/off")]));
    let closed = c.read_until_close(PROMPT);
    let text = String::from_utf8_lossy(&closed.data).into_owned();
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 400"), "a PROXY line on an off listener got: {text:?}");
    assert_eq!(xff_through(&gw, &up, b"", "/sentinel"), vec!["127.0.0.1"]);
    assert_eq!(up.request_count(), 1, "the PROXY line's request was forwarded: {:?}", up.requests());
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol: bad headers
// ---------------------------------------------------------------------------------------------

/// A truncated header followed by silence (§2.1, §2.2: the receiver waits for the whole header,
/// and may abort if it does not arrive in time) is closed without an answer when
/// `limits.header_read_timeout` runs out, counted from the accept; not before.
#[test]
fn truncated_header_closed_at_header_timeout() {
    let up = TestUpstream::echo();
    let gw = pp_config(up.addr(), "required", "\"127.0.0.0/8\"").limit("header_read_timeout = \"600ms\"").start(DRIVER);
    let v2_part = v2(V2_PROXY, V2_TCP4, &v2_ipv4([192, 0, 2, 1], [192, 0, 2, 2], 1, 2));
    let cases: [(&str, &[u8]); 4] = [
        ("v1 cut mid-line", b"PROXY TCP4 192.0.2.1 192.0.2.2 10"),
        ("v1 signature only", b"PROX"),
        ("v2 cut in the preamble", &v2_part[..14]),
        ("v2 cut in the address block", &v2_part[..20]),
    ];
    // All at once, so the test waits one timeout, not four.
    let mut conns: Vec<(&str, Client, Instant)> = cases
        .iter()
        .map(|(what, bytes)| {
            let mut c = gw.client();
            let start = Instant::now();
            c.send(bytes);
            (*what, c, start)
        })
        .collect();
    for (what, c, start) in &mut conns {
        let closed = c.read_until_close(Duration::from_secs(5));
        let took = start.elapsed();
        assert!(closed.data.is_empty(), "{what}: got an answer {:?}", String::from_utf8_lossy(&closed.data));
        assert!(took >= Duration::from_millis(500), "{what}: closed after {took:?}, before the header timeout");
        assert!(took < Duration::from_secs(3), "{what}: closed only after {took:?} (header timeout 600ms)");
    }
    assert_eq!(up.request_count(), 0);
}

/// Malformed headers are refused at once (§2.1: one space between fields, TCP4/TCP6/UNKNOWN,
/// addresses of the protocol's family, ports 0..65535, CRLF; §2.2: version 2, command LOCAL or
/// PROXY, known family, an address block as long as its family needs, TLVs within the header).
#[test]
fn malformed_headers_are_refused() {
    let up = TestUpstream::echo();
    let gw = pp_gateway(&up, "required", DRIVER);
    let ipv4 = v2_ipv4([192, 0, 2, 1], [192, 0, 2, 2], 1000, 80);
    let mut bad_version = v2(V2_PROXY, V2_TCP4, &ipv4);
    bad_version[12] = 0x11;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("v1 port above 65535", b"PROXY TCP4 192.0.2.1 192.0.2.2 99999 80\r\n".to_vec()),
        ("v1 port not a number", b"PROXY TCP4 192.0.2.1 192.0.2.2 http 80\r\n".to_vec()),
        ("v1 negative port", b"PROXY TCP4 192.0.2.1 192.0.2.2 -1 80\r\n".to_vec()),
        ("v1 IPv6 address with TCP4", b"PROXY TCP4 2001:db8::1 192.0.2.2 1000 80\r\n".to_vec()),
        ("v1 IPv4 address with TCP6", b"PROXY TCP6 192.0.2.1 2001:db8::2 1000 80\r\n".to_vec()),
        ("v1 unknown protocol", b"PROXY UDP4 192.0.2.1 192.0.2.2 1000 80\r\n".to_vec()),
        ("v1 bad address", b"PROXY TCP4 192.0.2.300 192.0.2.2 1000 80\r\n".to_vec()),
        ("v1 missing field", b"PROXY TCP4 192.0.2.1 192.0.2.2 1000\r\n".to_vec()),
        ("v1 extra field", b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 80 9\r\n".to_vec()),
        ("v1 two spaces", b"PROXY TCP4 192.0.2.1  192.0.2.2 1000 80\r\n".to_vec()),
        ("v1 bare LF", b"PROXY TCP4 192.0.2.1 192.0.2.2 1000 80\n".to_vec()),
        ("v1 lower case", b"proxy TCP4 192.0.2.1 192.0.2.2 1000 80\r\n".to_vec()),
        ("v2 version 1 in the command byte", bad_version),
        ("v2 command 0xF", v2(0x2F, V2_TCP4, &ipv4)),
        ("v2 unknown family 4", v2(V2_PROXY, 0x41, &ipv4)),
        ("v2 unknown transport 3", v2(V2_PROXY, 0x13, &ipv4)),
        ("v2 IPv4 block too short", v2(V2_PROXY, V2_TCP4, &ipv4[..8])),
        ("v2 IPv6 block too short", v2(V2_PROXY, V2_TCP6, &[0; 20])),
        ("v2 TLV longer than the header", v2(V2_PROXY, V2_TCP4, &cat(&[&ipv4, &[0x04, 0, 9, 1]]))),
        ("v2 TLV header cut", v2(V2_PROXY, V2_TCP4, &cat(&[&ipv4, &[0x04, 0]]))),
    ];
    for (what, header) in &cases {
        assert_rejected(&gw, &cat(&[header, &get("/malformed")]), what);
    }
    assert_eq!(xff_through(&gw, &up, b"PROXY UNKNOWN\r\n", "/sentinel"), vec!["127.0.0.1"]);
    assert_eq!(up.request_count(), 1, "a request behind a malformed header was forwarded: {:?}", up.requests());
}

/// v1 (§2.1): a receiver reads at most 107 bytes for the line; the spec's longest line (UNKNOWN
/// with two full IPv6 addresses, 107 bytes) is accepted, one byte more is refused, and so is a
/// line with no CRLF in sight, at once (not at the header timeout). v2 (§2.2) headers longer than
/// the gateway's bound (16 + 1024 bytes) are refused without reading them.
#[test]
fn oversized_headers_are_refused() {
    let up = TestUpstream::echo();
    let gw = pp_gateway(&up, "required", DRIVER);
    let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    let longest = format!("PROXY UNKNOWN {full} {full} 65535 65535\r\n");
    assert_eq!(longest.len(), 107, "test setup: the spec's worst case is 107 bytes");
    assert_eq!(xff_through(&gw, &up, longest.as_bytes(), "/longest"), vec!["127.0.0.1"]);

    let too_long = format!("PROXY UNKNOWN {full} {full} 65535 655350\r\n");
    assert_rejected(&gw, &cat(&[too_long.as_bytes(), &get("/108")]), "a 108-byte v1 line");
    let no_crlf = format!("PROXY TCP4 {}", "1".repeat(200));
    assert_rejected(&gw, no_crlf.as_bytes(), "211 bytes of v1 without CRLF");
    let mut no_crlf_slow = gw.client();
    no_crlf_slow.send(format!("PROXY TCP4 {}", "9".repeat(96)).as_bytes()); // exactly 107, no LF
    no_crlf_slow.assert_closed(REJECT_WITHIN);

    let mut huge = V2_SIG.to_vec();
    huge.extend_from_slice(&[V2_PROXY, V2_TCP4, 0xFF, 0xFF]);
    huge.extend_from_slice(&[0; 12]);
    assert_rejected(&gw, &huge, "v2 announcing 65535 bytes");
    let big_tlv = cat(&[&v2_ipv4([192, 0, 2, 1], [192, 0, 2, 2], 1, 2), &tlv(0x04, &[0; 1100])]);
    assert_rejected(&gw, &cat(&[&v2(V2_PROXY, V2_TCP4, &big_tlv), &get("/big")]), "v2 of 1131 bytes");
    assert_eq!(up.request_count(), 1, "{:?}", up.requests());
}

// ---------------------------------------------------------------------------------------------
// PROXY protocol: framing on the connection
// ---------------------------------------------------------------------------------------------

/// §2.1, §2.2: the header may arrive in several segments; the receiver waits for all of it. Split
/// v1 and v2 headers (and a request glued to the header's last piece) are read whole.
fn header_split_across_writes(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = pp_gateway(&up, "required", driver);
    let v1h = b"PROXY TCP4 192.0.2.40 192.0.2.1 6000 80\r\n".to_vec();
    let v2h = v2(V2_PROXY, V2_TCP4, &cat(&[&v2_ipv4([192, 0, 2, 41], [192, 0, 2, 1], 6000, 80), &tlv(0x04, b"xy")]));
    let cases: [(&str, &[u8], &[usize], &str); 4] = [
        ("v1 in 4 pieces", &v1h, &[3, 9, 25], "192.0.2.40"),
        ("v1 byte by byte", &v1h, &[1, 2, 3, 4, 5, 6, 7, 8, 20, 30, 40], "192.0.2.40"),
        ("v2 in 4 pieces", &v2h, &[5, 13, 16], "192.0.2.41"),
        ("v2 split inside a TLV", &v2h, &[12, 29, 30], "192.0.2.41"),
    ];
    for (i, (what, header, cuts, want)) in cases.iter().enumerate() {
        let path = format!("/split{i}");
        let bytes = cat(&[header, &get(&path)]);
        let mut c = gw.client();
        let mut from = 0;
        for &cut in cuts.iter() {
            c.send(&bytes[from..cut]);
            from = cut;
            thread::sleep(Duration::from_millis(15)); // separate segments
        }
        c.send(&bytes[from..]);
        let resp = c.read_response();
        assert_eq!(resp.status, 200, "{what}: {}", resp.head_str());
        let seen = up.wait_requests(i + 1, PROMPT);
        let r = seen.iter().find(|r| r.target == path).unwrap_or_else(|| panic!("{what}: not forwarded"));
        assert_eq!(xff(r), vec![*want], "{what}");
    }
}

/// The header comes once, at the start of the connection (§2): every request of a keep-alive
/// connection after it, pipelined or not, is from the header's address, and a second PROXY line
/// later on is not a header.
#[test]
fn keepalive_after_header_serves_several_requests() {
    let up = TestUpstream::echo();
    let gw = pp_gateway(&up, "required", DRIVER);
    let mut c = gw.client();
    // Header and two pipelined requests in one write.
    c.send(&cat(&[b"PROXY TCP4 192.0.2.50 192.0.2.1 7000 80\r\n", &get("/ka0"), &get("/ka1")]));
    for i in 0..2 {
        let resp = c.read_response();
        assert_eq!(resp.status, 200, "request {i}: {}", resp.head_str());
        assert_eq!(resp.body, echo_body("GET", &format!("/ka{i}"), b""));
        assert!(!resp.is_close(), "request {i} closed the connection");
    }
    for i in 2..5 {
        let path = format!("/ka{i}");
        let resp = c.request(&get(&path));
        assert_eq!(resp.status, 200, "request {i}: {}", resp.head_str());
        assert_eq!(resp.body, echo_body("GET", &path, b""));
    }
    let seen = up.wait_requests(5, PROMPT);
    for r in &seen {
        assert_eq!(xff(r), vec!["192.0.2.50"], "{}", r.target);
    }
    // A PROXY line mid-connection is a bad request line, never a new address.
    let _ = c.try_send(&cat(&[b"PROXY TCP4 192.0.2.51 192.0.2.1 7000 80\r\n", &get("/late")]));
    let closed = c.read_until_close(PROMPT);
    let text = String::from_utf8_lossy(&closed.data).into_owned();
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 400"), "a second PROXY line got: {text:?}");
    thread::sleep(SETTLE);
    assert_eq!(up.request_count(), 5, "{:?}", up.requests());
}

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/// `ringgate check` refuses `proxy_protocol` on without `proxy_protocol_from` (naming that key),
/// a mode other than off/optional/required, a bad CIDR, and a bad `shutdown.grace_period`; and
/// accepts the valid combinations.
#[test]
fn check_refuses_bad_proxy_protocol_settings() {
    let cases: [(&str, &str, &[&str]); 5] = [
        ("required without from", "proxy_protocol = \"required\"", &["proxy_protocol_from"]),
        ("optional without from", "proxy_protocol = \"optional\"\nproxy_protocol_from = []", &["proxy_protocol_from"]),
        (
            "bad mode",
            "proxy_protocol = \"sometimes\"\nproxy_protocol_from = [\"10.0.0.0/8\"]",
            &["proxy_protocol", "sometimes"],
        ),
        (
            "bad CIDR",
            "proxy_protocol = \"required\"\nproxy_protocol_from = [\"10.0.0.0/33\"]",
            &["proxy_protocol_from"],
        ),
        // A type error is reported by line (the TOML layer), not by key.
        ("not a string", "proxy_protocol = true\nproxy_protocol_from = [\"10.0.0.0/8\"]", &["expected a string"]),
    ];
    for (what, extra, mentions) in cases {
        let (ok, stderr) = check(&check_config(extra, &[]));
        assert!(!ok, "{what}: accepted");
        assert!(
            stderr.lines().any(|l| mentions.iter().all(|m| l.contains(m))),
            "{what}: no error line mentioning {mentions:?} in:\n{stderr}"
        );
    }
    let (ok, stderr) = check(&check_config("", &["grace_period = \"soon\""]));
    assert!(!ok && stderr.contains("grace_period"), "a bad grace_period: ok={ok}, stderr:\n{stderr}");
    for extra in [
        "",
        "proxy_protocol = \"off\"",
        "proxy_protocol = \"optional\"\nproxy_protocol_from = [\"10.0.0.0/8\", \"192.0.2.7\"]",
        "proxy_protocol = \"required\"\nproxy_protocol_from = [\"127.0.0.1/32\", \"::1/128\"]",
    ] {
        let (ok, stderr) = check(&check_config(extra, &["grace_period = \"5s\""]));
        assert!(ok, "valid listener {extra:?} refused:\n{stderr}");
    }
}

// ---------------------------------------------------------------------------------------------
// Health and draining
// ---------------------------------------------------------------------------------------------

/// Admin `/healthz` answers 200 `alive`; `/readyz` answers 200 `ready` once the workers are up
/// (503 `starting` before); both allow HEAD, and other methods get 405.
#[test]
fn healthz_and_readyz_when_up() {
    let up = TestUpstream::echo();
    let config = format!("{}{ADMIN}", ConfigBuilder::proxy_to(up.addr()).workers(2).render());
    let gw = Gateway::start(&config, DRIVER);
    let admin = gw.admin();
    let (status, body) = admin_get(admin, "/healthz");
    assert_eq!((status, body.trim()), (200, "alive"));
    wait_ready(admin);
    let (status, _) = admin_request(admin, "HEAD", "/readyz");
    assert_eq!(status, 200, "HEAD /readyz");
    let (status, _) = admin_post(admin, "/readyz");
    assert_eq!(status, 405, "POST /readyz");
    let (status, _) = admin_get(admin, "/drain");
    assert_eq!(status, 405, "GET /drain must not start a drain");
    wait_ready(admin);
}

/// How a drain is started.
#[derive(Clone, Copy, Debug)]
enum Trigger {
    AdminDrain,
    Sigterm,
}

/// The drain sequence (issue 4, docs/operations.md), with `grace_period = "1s"`:
/// `/readyz` turns 503 at once while `/healthz` stays 200; during the grace a new connection is
/// still accepted and served, with `Connection: close`, and so is the next request of a
/// keep-alive connection; after the grace new connections are refused (or closed unanswered);
/// the request in flight (a slow upstream) completes; the process exits 0.
///
/// `extra` is appended to the config (e.g. an `[upgrade]` section).
fn drain(driver: Driver, trigger: Trigger, extra: &str) {
    let grace = Duration::from_secs(1);
    let up = TestUpstream::with_handler(|r| {
        if r.target == "/slow" {
            Action::EchoAfter(Duration::from_millis(2500))
        } else {
            Action::Echo
        }
    });
    let config = format!(
        "{}{ADMIN}{HEALTH_ROUTE}{extra}",
        ConfigBuilder::proxy_to(up.addr())
            .shutdown("grace_period = \"1s\"")
            .shutdown("drain_timeout = \"10s\"")
            .render()
    );
    let mut gw = Gateway::start(&config, driver);
    let admin = gw.admin();
    wait_ready(admin);

    // A keep-alive connection that has been served once and is idle when the drain starts.
    let mut idle = gw.client();
    let resp = idle.request(&get("/before"));
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    assert!(!resp.is_close(), "before the drain: {}", resp.head_str());
    // One that never sends anything more.
    let mut silent = gw.client();
    assert_eq!(silent.request(&get("/silent")).status, 200);
    // A request in flight.
    let mut slow = gw.client();
    slow.send(&get("/slow"));
    up.wait_requests(3, PROMPT);
    // With one worker, serving `silent` and forwarding `slow` ran `idle`'s task on to its wait for
    // the next request: it is idle when the drain starts. (A connection that only gets back to that
    // wait after the drain began is closed there, without waiting for its next request; a request
    // sent at that moment sees a close, not a `Connection: close` answer.)

    let t0 = Instant::now();
    match trigger {
        Trigger::AdminDrain => {
            let (status, body) = admin_post(admin, "/drain");
            assert_eq!(status, 202, "POST /drain: {body}");
            // At once: POST /drain has returned.
            let (status, body) = admin_get(admin, "/readyz");
            assert_eq!((status, body.trim()), (503, "draining"), "GET /readyz right after POST /drain");
            let (status, body) = admin_post(admin, "/drain");
            assert_eq!((status, body.trim()), (202, "already draining"), "a second POST /drain");
        }
        Trigger::Sigterm => {
            gw.signal("TERM");
            wait_draining(admin, Duration::from_millis(300));
        }
    }
    let (status, body) = admin_get(admin, "/healthz");
    assert_eq!((status, body.trim()), (200, "alive"), "GET /healthz while draining");

    // Within the grace period: still accepting, every answer closes its connection.
    let mut fresh = gw.client();
    let resp = fresh.request(&get("/during-grace"));
    assert_eq!(resp.status, 200, "a new connection during the grace: {}", resp.head_str());
    assert_eq!(resp.body, echo_body("GET", "/during-grace", b""));
    assert!(resp.is_close(), "no Connection: close while draining: {}", resp.head_str());
    fresh.assert_closed(PROMPT);

    let resp = idle.request(&get("/after-drain"));
    assert_eq!(resp.status, 200, "keep-alive connection's next request: {}", resp.head_str());
    assert!(resp.is_close(), "keep-alive connection's next response lacks Connection: close: {}", resp.head_str());
    idle.assert_closed(PROMPT);

    let mut h = gw.client();
    let resp = h.request(&get("/health"));
    assert_eq!((resp.status, resp.body_str().trim()), (503, "draining"), "health route: {}", resp.head_str());
    assert!(resp.is_close(), "health route while draining: {}", resp.head_str());

    let during = t0.elapsed();
    assert!(during < grace, "test setup: the grace-period checks took {during:?}, longer than the grace");

    // Late in the grace period the listener still serves new connections. (A deliberate wait:
    // the grace period is a span of time.)
    thread::sleep((t0 + grace * 7 / 10).saturating_duration_since(Instant::now()));
    match probe(gw.addr) {
        Probe::Served(head) => assert!(head.starts_with("HTTP/1.1 200"), "late in the grace: {head:?}"),
        other => panic!("{:?} after the drain began (grace {grace:?}), a new connection got {other:?}", t0.elapsed()),
    }

    // After the grace: no new connections, while the slow request is still in flight.
    let p = wait_until_not_accepting(&gw, t0 + grace + Duration::from_millis(700));
    assert!(gw.is_running(), "exited with a request in flight ({p:?})");

    let resp = slow.read_response();
    assert_eq!(resp.status, 200, "the request in flight: {}", resp.head_str());
    assert_eq!(resp.body, echo_body("GET", "/slow", b""));
    assert!(resp.is_close(), "in-flight response while draining: {}", resp.head_str());

    let status = gw.wait_exit(PROMPT).expect("the gateway exits after the drain");
    assert!(status.success(), "exit status after a drain ({trigger:?}): {status}");
    silent.assert_closed(PROMPT);
    assert!(TcpStream::connect_timeout(&gw.addr, Duration::from_secs(1)).is_err(), "still accepting after exit");
}

/// The drain started with admin `POST /drain` (202).
fn drain_via_admin(driver: Driver) {
    drain(driver, Trigger::AdminDrain, "");
}

/// The same drain started with SIGTERM.
#[test]
fn drain_via_sigterm() {
    drain(DRIVER, Trigger::Sigterm, "");
}

/// The same drain with `[upgrade] socket` configured (docs/operations.md): the duplicates of the
/// listening sockets kept for a successor must not keep them open once accepting stops, or new
/// clients would queue unanswered instead of being refused.
#[test]
fn drain_with_upgrade_socket_configured() {
    let sock = support::gateway::temp_path("upgrade", "sock");
    let extra = format!("[upgrade]\nsocket = \"{}\"\n\n", path_str(&sock));
    drain(DRIVER, Trigger::AdminDrain, &extra);
    let _ = std::fs::remove_file(&sock);
}

/// A route with `health = true` answers like `/readyz` on the data port: 200 `ready` (keeping
/// the connection) when up, 503 `draining` with `Connection: close` from the start of a drain;
/// only for its own path, other routes keep proxying.
#[test]
fn health_route_follows_readiness() {
    let up = TestUpstream::echo();
    let config = format!(
        "{}{ADMIN}{HEALTH_ROUTE}",
        ConfigBuilder::proxy_to(up.addr()).shutdown("grace_period = \"3s\"").render()
    );
    let gw = Gateway::start(&config, DRIVER);
    wait_ready(gw.admin());
    let mut c = gw.client();
    for i in 0..2 {
        let resp = c.request(&get("/health"));
        assert_eq!((resp.status, resp.body_str().trim()), (200, "ready"), "health {i}: {}", resp.head_str());
        assert!(!resp.is_close(), "health {i}: {}", resp.head_str());
    }
    let resp = c.request(&req("HEAD", "/health", &[], b""));
    assert_eq!(resp.status, 200, "HEAD /health: {}", resp.head_str());
    assert!(resp.body.is_empty());
    assert_eq!(up.request_count(), 0, "the health route reached the upstream");
    assert_eq!(c.request(&get("/other")).status, 200);
    // `c` must be idle (waiting for its next request) when the drain starts: a connection that
    // only comes back to wait after the drain began is closed instead (see `drain`). The one
    // worker serving another connection first runs `c`'s task on to that wait.
    assert_eq!(gw.client().request(&get("/health")).status, 200);

    let (status, _) = admin_post(gw.admin(), "/drain");
    assert_eq!(status, 202);
    let resp = c.request(&get("/health"));
    assert_eq!((resp.status, resp.body_str().trim()), (503, "draining"), "after the drain began: {}", resp.head_str());
    assert!(resp.is_close(), "{}", resp.head_str());
    c.assert_closed(PROMPT);
    let resp = gw.client().request(&get("/health"));
    assert_eq!((resp.status, resp.body_str().trim()), (503, "draining"), "new connection: {}", resp.head_str());
}

/// Pins the calling thread to one CPU it may run on; the processes and threads it starts next
/// inherit the pin. Returns false when the affinity cannot be read or set.
fn pin_to_one_cpu() -> bool {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: an all-zero cpu_set_t is a valid (empty) set, and both calls get its true size.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, size, &mut allowed) != 0 {
            return false;
        }
        let Some(cpu) = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &allowed)) else {
            return false;
        };
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        libc::sched_setaffinity(0, size, &one) == 0
    }
}

/// Issue 4: during a drain, "keep-alive connections get `Connection: close` on their next
/// response" — also a connection whose previous response went out just before the drain began:
/// a request it sends during the grace period gets an answer, not a bare close. Client and
/// gateway share one CPU here, so the client reads that response and starts the drain before
/// the worker's connection task is back waiting for the next request (on a busy machine this
/// happens without the pin).
#[test]
fn keepalive_served_just_before_drain_gets_close_answer() {
    assert!(pin_to_one_cpu(), "cannot pin the test thread to one CPU");
    let config = format!("{}{ADMIN}{HEALTH_ROUTE}", ConfigBuilder::new().shutdown("grace_period = \"5s\"").render());
    let mut failures = Vec::new();
    let rounds = 10;
    for round in 0..rounds {
        let gw = Gateway::start(&config, DRIVER);
        wait_ready(gw.admin());
        let mut c = gw.client();
        let resp = c.request(&get("/health"));
        assert_eq!(resp.status, 200, "round {round}: {}", resp.head_str());
        assert!(!resp.is_close(), "round {round}: {}", resp.head_str());
        let (status, body) = admin_post(gw.admin(), "/drain");
        assert_eq!(status, 202, "round {round}: POST /drain: {body}");
        let outcome = match c.try_send(&get("/health")) {
            Err(e) => format!("the send failed: {e}"),
            Ok(()) => match c.try_read_response_to("GET", None) {
                Ok(Some(r)) if r.status == 503 && r.is_close() => continue,
                Ok(Some(r)) => format!("answered {}", r.head_str()),
                Ok(None) => "closed without an answer".to_string(),
                Err(e) => format!("read error {e}"),
            },
        };
        failures.push(format!("round {round}: {outcome}"));
    }
    assert!(
        failures.is_empty(),
        "{} of {rounds} keep-alive connections served just before the drain did not get a \
         `Connection: close` answer to their next request during the grace period:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

both_drivers!(v1_tcp4_source_becomes_client, header_split_across_writes, drain_via_admin);

/// SIGTERM after `POST /drain` is the first *signal*, not a second one (Kubernetes' preStop hook
/// drains, then the kubelet sends SIGTERM): the drain goes on and the process exits 0, not 1.
#[test]
fn sigterm_after_admin_drain_still_drains() {
    let up = TestUpstream::echo();
    let config = format!("{}{ADMIN}", ConfigBuilder::proxy_to(up.addr()).shutdown("grace_period = \"300ms\"").render());
    let mut gw = Gateway::start(&config, DRIVER);
    wait_ready(gw.admin());
    let (status, _) = admin_post(gw.admin(), "/drain");
    assert_eq!(status, 202);
    gw.signal("TERM");
    let exit = gw.wait_exit(Duration::from_secs(10)).expect("exits after the drain");
    assert_eq!(exit.code(), Some(0), "a SIGTERM during a drain must not exit at once:\n{}", gw.output());
}
