//! The admin listener: a small blocking HTTP/1.1 server on its own thread (never on a worker),
//! one request per connection. `POST /reload` reloads (200 with JSON, or 422 with every config
//! error); `GET /status` reports the generation; `/healthz` (alive), `/readyz` (200 serving, 503
//! starting or draining) and `POST /drain` are for the L4 balancer in front. Off unless `[admin]` is configured; meant for
//! loopback. One connection at a time, each read bounded by a 5 s timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::net::listener::wait_acceptable;
use crate::reload::Reloader;

/// Largest admin request head read.
const MAX_HEAD: usize = 8192;

/// Serve on a listening socket (bound here, or taken over from a previous process) until this
/// process hands its sockets over to a successor.
pub fn start_on(l: TcpListener, r: Arc<Reloader>) -> std::io::Result<SocketAddr> {
    let bound = l.local_addr()?;
    // A bounded accept: when a successor shares this socket and wins the race for a connection
    // both were woken for, this thread comes back to check whether it handed over.
    socket2::SockRef::from(&l).set_read_timeout(Some(Duration::from_millis(200)))?;
    std::thread::Builder::new().name("ringgate-admin".into()).spawn(move || {
        while !crate::upgrade::HANDED_OVER.load(std::sync::atomic::Ordering::Relaxed) {
            if !wait_acceptable(&l, 100) {
                continue;
            }
            match l.accept().map(|(s, _)| s) {
                Ok(s) => {
                    if let Err(e) = serve(s, &r) {
                        tracing::debug!("admin connection: {e}");
                    }
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => {
                    tracing::warn!("admin accept: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    })?;
    Ok(bound)
}

/// The whole request must arrive within this (one thread serves the admin listener).
const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// Read into `chunk` before `deadline`; 0 at EOF. A trickling client cannot hold the admin
/// thread past the deadline.
fn read_by(s: &mut TcpStream, chunk: &mut [u8], deadline: std::time::Instant) -> std::io::Result<usize> {
    let left = deadline.saturating_duration_since(std::time::Instant::now());
    if left.is_zero() {
        return Err(std::io::ErrorKind::TimedOut.into());
    }
    s.set_read_timeout(Some(left))?;
    s.read(chunk)
}

fn serve(mut s: TcpStream, r: &Reloader) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + REQUEST_DEADLINE;
    s.set_write_timeout(Some(REQUEST_DEADLINE))?;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(p) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEAD {
            return respond(&mut s, 431, "text/plain", "request head too large\n");
        }
        let n = read_by(&mut s, &mut chunk, deadline)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    // Read (and ignore) a body, so that closing the connection after the answer does not reset it.
    let length = buf[..head_end]
        .split(|&b| b == b'\n')
        .filter_map(|l| {
            let l = std::str::from_utf8(l).ok()?;
            let (name, value) = l.split_once(':')?;
            name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
        })
        .next()
        .unwrap_or(0);
    if length > MAX_HEAD {
        return respond(&mut s, 413, "text/plain", "no body expected\n");
    }
    let mut have = buf.len() - (head_end + 4);
    while have < length {
        let n = read_by(&mut s, &mut chunk, deadline)?;
        if n == 0 {
            return Ok(());
        }
        have += n;
    }
    let line = buf[..head_end].split(|&b| b == b'\n').next().unwrap_or(b"");
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next().unwrap_or(b"");
    let path = parts.next().unwrap_or(b"");
    let path = path.split(|&b| b == b'?').next().unwrap_or(b"");
    match (method, path) {
        (b"POST", b"/reload") => match r.reload("admin") {
            Ok(ok) => {
                let body = serde_json::json!({
                    "generation": ok.generation,
                    "took_ms": ok.took.as_secs_f64() * 1e3,
                    "changes": ok.changes,
                });
                respond(&mut s, 200, "application/json", &format!("{body}\n"))
            }
            Err(e) => respond(
                &mut s,
                422,
                "text/plain; charset=utf-8",
                &format!("reload refused, the running config stays:\n{}", e.render()),
            ),
        },
        (b"GET", b"/status") => {
            let snap = r.current();
            let source = match r.source() {
                crate::reload::Source::File(p) => p.display().to_string(),
                crate::reload::Source::Embedded => "(embedded default)".into(),
            };
            let st = &crate::core::STATS;
            let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
            // Process-wide rare-event counters (the metrics issue exports them for Prometheus).
            let body = serde_json::json!({
                "generation": snap.generation,
                "config": source,
                "routes": snap.routes.len(),
                "upstreams": snap.upstreams.len(),
                "version": env!("CARGO_PKG_VERSION"),
                "counters": {
                    "panics": n(&st.panics),
                    "accept_errors": n(&st.accept_errors),
                    "tls_handshakes": n(&st.tls_handshakes),
                    "tls_handshake_failures": n(&st.tls_handshake_failures),
                    "tls_handshake_timeouts": n(&st.tls_handshake_timeouts),
                    "ratelimit_dry_run_refusals": n(&st.ratelimit_dry_run),
                },
            });
            respond(&mut s, 200, "application/json", &format!("{body}\n"))
        }
        (b"GET", b"/metrics") => {
            let generation = r.current().generation;
            let (total, each) = crate::metrics::collect(SCRAPE_WAIT);
            let body = crate::metrics::render::prometheus(&total, &each, generation, crate::accesslog::dropped());
            respond(&mut s, 200, "text/plain; version=0.0.4; charset=utf-8", &body)
        }
        (b"GET", b"/metrics/latency") => {
            let (total, _) = crate::metrics::collect(SCRAPE_WAIT);
            let body = crate::metrics::render::latency_json(&total);
            respond(&mut s, 200, "application/json", &format!("{body}\n"))
        }
        (b"GET" | b"HEAD", b"/healthz") => respond(&mut s, 200, "text/plain", "alive\n"),
        (b"GET" | b"HEAD", b"/readyz") => {
            let (status, body) = crate::core::readiness();
            respond(&mut s, status, "text/plain", body)
        }
        (b"POST", b"/drain") => {
            let started = crate::core::start_drain();
            respond(&mut s, 202, "text/plain", if started { "draining\n" } else { "already draining\n" })
        }
        (_, b"/reload" | b"/status" | b"/healthz" | b"/readyz" | b"/drain" | b"/metrics" | b"/metrics/latency") => {
            respond(&mut s, 405, "text/plain", "method not allowed\n")
        }
        _ => respond(
            &mut s,
            404,
            "text/plain",
            "not found (POST /reload, GET /status, GET /metrics, GET /metrics/latency, GET /healthz, GET /readyz, POST /drain)\n",
        ),
    }
}

/// How long a scrape waits for the workers' copies (they answer within their 50 ms tick).
const SCRAPE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

fn respond(s: &mut TcpStream, status: u16, ctype: &str, body: &str) -> std::io::Result<()> {
    let reason = crate::http::reason(status);
    let allow = if status == 405 { "Allow: GET, HEAD, POST\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    s.flush()
}
