//! TLS to upstreams (issue 4): an upstream group with a `tls` table is reached over TLS; its
//! certificate is verified against the group's `ca` bundle, or the system's roots when none is
//! named; the name sent as SNI and checked in the certificate is the target's host, or the
//! group's `server_name`; ALPN offers `http/1.1`. A failed verification or handshake is a 502, a
//! handshake that does not finish within the route's connect timeout a 504. Pooled TLS
//! connections are reused across requests, and one the upstream closed (close_notify) is not.
//!
//! The upstream here is a small HTTP/1.1 server over rustls (std, one thread per connection)
//! that records every handshake: the SNI and ALPN it was offered, or why it failed. Its
//! certificates come from a per-test CA (rcgen, `support::pki`).

#[macro_use]
mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use support::gateway::path_str;
use support::http::{self as h, HttpReader};
use support::pki::*;
use support::*;

/// How long `ringgate check` may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);

/// One handshake as the upstream saw it.
#[derive(Debug, Clone)]
struct Handshake {
    sni: Option<String>,
    alpn: Option<String>,
    /// Why it failed, if it did.
    error: Option<String>,
}

#[derive(Default)]
struct Seen {
    handshakes: Vec<Handshake>,
    /// Request targets, in arrival order.
    requests: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum After {
    /// Keep the connection for the next request.
    KeepAlive,
    /// Send close_notify and close after each response (an upstream's idle close).
    CloseNotify,
}

/// An HTTP/1.1 upstream over TLS that answers `200` with `sni=<name> path=<target>`.
struct TlsUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
}

impl TlsUpstream {
    fn start(leaf: &Issued, after: After) -> TlsUpstream {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .expect("the leaf certificate PEM");
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("the leaf key PEM");
        let mut cfg = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let cfg = Arc::new(cfg);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the TLS upstream");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let s = seen.clone();
        thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (cfg, s) = (cfg.clone(), s.clone());
                thread::spawn(move || serve(tcp, cfg, &s, after));
            }
        });
        TlsUpstream { addr, seen }
    }

    fn handshakes(&self) -> Vec<Handshake> {
        self.seen.lock().expect("seen").handshakes.clone()
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().expect("seen").requests.clone()
    }

    /// Waits until `n` handshakes (good or failed) were seen.
    fn wait_handshakes(&self, n: usize) -> Vec<Handshake> {
        let start = Instant::now();
        loop {
            let h = self.handshakes();
            if h.len() >= n || start.elapsed() > PROMPT {
                return h;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

fn serve(mut tcp: TcpStream, cfg: Arc<ServerConfig>, seen: &Mutex<Seen>, after: After) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut conn) = ServerConnection::new(cfg) else { return };
    let mut error = None;
    while conn.is_handshaking() {
        if let Err(e) = conn.complete_io(&mut tcp) {
            error = Some(e.to_string());
            break;
        }
    }
    let hs = Handshake {
        sni: conn.server_name().map(str::to_string),
        alpn: conn.alpn_protocol().map(|a| String::from_utf8_lossy(a).into_owned()),
        error: error.clone(),
    };
    seen.lock().expect("seen").handshakes.push(hs.clone());
    if error.is_some() {
        return;
    }
    let mut reader = HttpReader::new(StreamOwned::new(conn, tcp));
    loop {
        let Ok(Some(raw)) = reader.read_head(64 * 1024) else { return };
        let Ok(head) = h::parse_head(&raw) else { return };
        let target = head.start[1].clone();
        let len: u64 = h::header(&head.headers, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        if reader.read_exact_to(len, &mut |_| {}).is_err() {
            return;
        }
        seen.lock().expect("seen").requests.push(target.clone());
        let body = format!("sni={} path={target}", hs.sni.as_deref().unwrap_or("-"));
        let resp = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let s = reader.get_mut();
        if s.write_all(resp.as_bytes()).and_then(|_| s.flush()).is_err() {
            return;
        }
        if after == After::CloseNotify {
            s.conn.send_close_notify();
            let _ = s.flush();
            // Let the gateway see the alert before the FIN, as a lingering upstream would.
            thread::sleep(Duration::from_millis(50));
            return;
        }
    }
}

/// A listener that completes TCP handshakes (the kernel's backlog) and never says a word.
fn silent_listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    (l, addr)
}

/// The test CA's certificate written to `ca.pem` in the PKI directory.
fn ca_file(pki: &Pki) -> String {
    let path = pki.dir.join("ca.pem");
    std::fs::write(&path, pki.ca.pem()).expect("write ca.pem");
    path_str(&path).to_string()
}

/// A gateway on plain HTTP in front of one TLS upstream group; `target` as written in the config.
fn gateway(target: &str, tls: &str, driver: Driver) -> Gateway {
    ConfigBuilder::new()
        .upstream_raw("secure", &[target], &format!("tls = {{ {tls} }}"))
        .route("/", "secure", "connect_timeout = \"500ms\"")
        .start(driver)
}

fn get_path(c: &mut Client, path: &str) -> Response {
    c.request(&get(path))
}

fn proxies_over_tls_with_sni_from_the_target_name(driver: Driver) {
    let pki = Pki::new();
    let up = TlsUpstream::start(&pki.issue("upstream", &["localhost"]), After::KeepAlive);
    let gw = gateway(&format!("localhost:{}", up.addr.port()), &format!("ca = \"{}\"", ca_file(&pki)), driver);
    let resp = get_path(&mut gw.client(), "/hello");
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    assert_eq!(resp.body_str(), "sni=localhost path=/hello");
    let hs = up.wait_handshakes(1);
    assert_eq!(hs.len(), 1, "{hs:?}");
    assert_eq!(hs[0].sni.as_deref(), Some("localhost"), "SNI is the target's host");
    assert_eq!(hs[0].alpn.as_deref(), Some("http/1.1"), "ALPN offers http/1.1");
    assert!(hs[0].error.is_none(), "{hs:?}");
}

fn pooled_tls_connections_are_reused(driver: Driver) {
    let pki = Pki::new();
    // rustls sends TLS 1.3 session tickets after the handshake: they must not make a pooled
    // connection look like one that received stray bytes.
    let up = TlsUpstream::start(&pki.issue("upstream", &["localhost"]), After::KeepAlive);
    let gw = gateway(&format!("localhost:{}", up.addr.port()), &format!("ca = \"{}\"", ca_file(&pki)), driver);
    let mut c = gw.client();
    for i in 0..5 {
        let resp = get_path(&mut c, &format!("/r{i}"));
        assert_eq!(resp.status, 200, "request {i}: {}", resp.head_str());
    }
    // A second client connection on the same worker uses the same pool.
    assert_eq!(get_path(&mut gw.client(), "/other").status, 200);
    assert_eq!(up.requests().len(), 6);
    assert_eq!(up.handshakes().len(), 1, "six requests, one TLS connection: {:?}", up.handshakes());
}

fn upstream_close_notify_retires_the_pooled_connection(driver: Driver) {
    let pki = Pki::new();
    let up = TlsUpstream::start(&pki.issue("upstream", &["localhost"]), After::CloseNotify);
    let gw = gateway(&format!("localhost:{}", up.addr.port()), &format!("ca = \"{}\"", ca_file(&pki)), driver);
    let mut c = gw.client();
    for i in 0..3 {
        let resp = get_path(&mut c, &format!("/r{i}"));
        assert_eq!(resp.status, 200, "request {i}: {}", resp.head_str());
        // Give the alert time to arrive before the next request picks from the pool.
        thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(up.handshakes().len(), 3, "a closed connection is never reused");
}

fn untrusted_certificate_is_a_502(driver: Driver) {
    let pki = Pki::new();
    let other = Pki::new();
    let up = TlsUpstream::start(&other.issue("impostor", &["localhost"]), After::KeepAlive);
    let gw = gateway(&format!("localhost:{}", up.addr.port()), &format!("ca = \"{}\"", ca_file(&pki)), driver);
    let resp = get_path(&mut gw.client(), "/secret");
    assert_eq!(resp.status, 502, "{}", resp.head_str());
    let hs = up.wait_handshakes(1);
    assert!(hs[0].error.is_some(), "the upstream saw the gateway abort the handshake: {hs:?}");
    assert!(up.requests().is_empty(), "no request reaches an unverified upstream");
    assert!(gw.wait_output("TLS handshake failed", PROMPT), "the log says it was TLS:\n{}", gw.output());
    assert!(gw.wait_output("invalid peer certificate", PROMPT), "and why:\n{}", gw.output());
}

fn system_roots_do_not_trust_a_private_ca(driver: Driver) {
    // No `ca`: the system's roots. A certificate from the per-test CA is not trusted by them,
    // which shows that verification is on by default.
    let pki = Pki::new();
    let up = TlsUpstream::start(&pki.issue("upstream", &["localhost"]), After::KeepAlive);
    let gw = gateway(&format!("localhost:{}", up.addr.port()), "", driver);
    let resp = get_path(&mut gw.client(), "/secret");
    assert_eq!(resp.status, 502, "{}", resp.head_str());
    assert!(up.requests().is_empty());
    assert!(gw.wait_output("invalid peer certificate", PROMPT), "refused as untrusted:\n{}", gw.output());
}

fn name_must_match_and_server_name_overrides_it(driver: Driver) {
    let pki = Pki::new();
    let ca = ca_file(&pki);
    let up = TlsUpstream::start(&pki.issue("svc", &["svc.internal"]), After::KeepAlive);
    let by_ip = format!("127.0.0.1:{}", up.addr.port());
    // The target's host is an IP the certificate does not name: refused.
    let gw = gateway(&by_ip, &format!("ca = \"{ca}\""), driver);
    assert_eq!(get_path(&mut gw.client(), "/x").status, 502);
    assert!(gw.wait_output("not valid for name", PROMPT), "refused for its name:\n{}", gw.output());
    drop(gw);
    // With server_name, that name is sent and checked.
    let gw = gateway(&by_ip, &format!("ca = \"{ca}\", server_name = \"svc.internal\""), driver);
    let resp = get_path(&mut gw.client(), "/y");
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    assert_eq!(resp.body_str(), "sni=svc.internal path=/y");
    assert!(up.requests() == ["/y"], "{:?}", up.requests());
}

fn ip_target_is_checked_against_ip_names(driver: Driver) {
    let pki = Pki::new();
    let up = TlsUpstream::start(&pki.issue("by-ip", &["127.0.0.1"]), After::KeepAlive);
    let gw = gateway(&format!("127.0.0.1:{}", up.addr.port()), &format!("ca = \"{}\"", ca_file(&pki)), driver);
    let resp = get_path(&mut gw.client(), "/ip");
    assert_eq!(resp.status, 200, "{}", resp.head_str());
    // RFC 6066 §3: SNI carries host names only, never an IP literal.
    assert_eq!(resp.body_str(), "sni=- path=/ip");
}

fn silent_upstream_handshake_is_a_504_within_the_connect_timeout(driver: Driver) {
    let pki = Pki::new();
    let (_l, addr) = silent_listener();
    let gw = gateway(&format!("localhost:{}", addr.port()), &format!("ca = \"{}\"", ca_file(&pki)), driver);
    let start = Instant::now();
    let resp = get_path(&mut gw.client(), "/slow");
    let took = start.elapsed();
    assert_eq!(resp.status, 504, "{}", resp.head_str());
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(3), "took {took:?} (timeout 500 ms)");
}

fn check(config: &str) -> (bool, String) {
    let file = TempFile::new("uptls", "toml", config);
    let out = run_cli(&["check", path_str(&file.path)], CLI_TIMEOUT);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn check_refuses_bad_upstream_tls_settings() {
    let pki = Pki::new();
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").expect("write");
    let upstream = |target: &str, tls: &str| {
        ConfigBuilder::new()
            .upstream_raw("secure", &[target], &format!("tls = {{ {tls} }}"))
            .route("/", "secure", "")
            .render()
    };
    let cases = [
        (upstream("localhost:9", &format!("ca = \"{}\"", path_str(&garbage))), "garbage.pem"),
        (upstream("localhost:9", "ca = \"/nonexistent/ca.pem\""), "/nonexistent/ca.pem"),
        (upstream("localhost:9", "server_name = \"not a name!\""), "not a DNS name"),
        (upstream("localhost:9", "min_version = \"1.1\""), "\"1.1\""),
        (upstream("builtin:demo", ""), "demo upstream speaks plain HTTP"),
    ];
    for (config, needle) in cases {
        let (ok, text) = check(&config);
        assert!(!ok, "accepted:\n{config}");
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
        assert!(text.contains("upstreams[0]"), "the key is named:\n{text}");
        let line = config.lines().position(|l| l.starts_with("tls =")).expect("a tls line") + 1;
        assert!(text.contains(&format!(".toml:{line}: ")), "line {line} is named:\n{text}");
    }
    let (ok, text) = check(&upstream("localhost:9", &format!("ca = \"{}\"", ca_file(&pki))));
    assert!(ok, "a good bundle is accepted:\n{text}");
}

both_drivers!(
    proxies_over_tls_with_sni_from_the_target_name,
    pooled_tls_connections_are_reused,
    upstream_close_notify_retires_the_pooled_connection,
    untrusted_certificate_is_a_502,
    system_roots_do_not_trust_a_private_ca,
    name_must_match_and_server_name_overrides_it,
    ip_target_is_checked_against_ip_names,
    silent_upstream_handshake_is_a_504_within_the_connect_timeout,
);
