//! One client connection: read a request head (with the keep-alive and header deadlines), hand
//! it to the pipeline, answer errors, loop for keep-alive and pipelining, and tunnel upgrades.
//!
//! The read buffer starts small (idle keep-alive connections must not park a big buffer) and
//! grows only when a head or body needs it. Requests are served one after another, so pipelined
//! responses leave in order.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncWriteRent, CancelableAsyncReadRent, Canceller, Splitable};
use monoio::net::TcpStream;

use crate::config::{ProxyMode, ProxyProtocol};
use crate::core::STATS;
use crate::core::{draining, shutting_down, CountGuard, Scratch, Worker};
use crate::error::ProxyError;
use crate::http::parse::parse_request;
use crate::http::write::canned;
use crate::net::io::{read_into, write_all, write_all_on, ReadOutcome};
use crate::net::listener::ListenerOpts;
use crate::net::proxy_protocol::{self, HeaderError};
use crate::net::stream::{ClientStream, Prefixed, TlsConn};
use crate::pipeline::{handle, Next};
use crate::shared::Snapshot;
use crate::upstream::pool::UpstreamConn;
use std::sync::atomic::Ordering;

/// First read buffer of a connection; grows as a head or body needs. Small, because an idle
/// keep-alive connection keeps it parked in its pending read.
const INITIAL_BUF: usize = 512;

pub struct ClientConn {
    pub stream: ClientStream,
    pub client_ip: Vec<u8>,
    pub peer_ip: IpAddr,
    /// (snapshot generation, whether the peer is a trusted proxy in it); None until first needed
    /// and after the peer address changes (a reload may change the answer too).
    pub trusted: Option<(u64, bool)>,
    pub rbuf: BytesMut,
    pub rid: Vec<u8>,
    pub requests: u64,
    /// The current request's body has not been read to its end.
    pub body_pending: bool,
    /// The current request asked to keep the connection open.
    pub keep_alive: bool,
    /// The current request is HEAD: answers carry no body.
    pub is_head: bool,
    /// The current request is HTTP/1.0 (a kept-open answer then says `Connection: keep-alive`).
    pub http10: bool,
    /// "1.3" or "1.2" on a TLS connection (from its ClientHello), for the access log.
    pub tls_version: Option<&'static str>,
}

impl ClientConn {
    /// Whether the peer is in `forwarding.trusted_proxies` of this snapshot.
    pub fn trusted_peer(&mut self, snap: &Snapshot) -> bool {
        match self.trusted {
            Some((generation, t)) if generation == snap.generation => t,
            _ => {
                let t = snap.is_trusted(self.peer_ip);
                self.trusted = Some((snap.generation, t));
                t
            }
        }
    }
}

/// The answer to plain HTTP sent to a TLS port (as nginx gives one).
const PLAIN_HTTP_TO_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 54\r\nConnection: close\r\n\r\n400 Bad Request: plain HTTP was sent to an HTTPS port\n";

/// Serve a connection until it closes. Panics are caught by the caller (runtime.rs).
pub async fn serve(stream: TcpStream, peer: SocketAddr, opts: &ListenerOpts, w: Rc<Worker>) {
    let proxy = &opts.proxy;
    let _ = stream.set_nodelay(true);
    let mut fresh = Some(CountGuard::new(&w.fresh));
    let snap = w.snapshot.get();
    let ip = unmapped(peer.ip());
    let mut c = ClientConn {
        stream: ClientStream::Plain(stream),
        client_ip: ip.to_string().into_bytes(),
        peer_ip: ip,
        trusted: None,
        rbuf: BytesMut::with_capacity(INITIAL_BUF),
        rid: Vec::new(),
        requests: 0,
        body_pending: false,
        keep_alive: false,
        is_head: false,
        http10: false,
        tls_version: None,
    };
    // The first head must arrive within header_read_timeout of the accept, not of the first byte.
    let mut head_started = Some(Instant::now());
    if proxy.mode != ProxyMode::Off {
        let deadline = Instant::now() + snap.limits.header_read_timeout;
        if !take_proxy_header(&mut c, proxy, deadline).await {
            return;
        }
    }
    if let Some(tls) = &opts.tls {
        let deadline = Instant::now() + tls.handshake_timeout;
        // The first byte tells a TLS record (0x16) from plain HTTP sent to the TLS port, which
        // gets a plain-text 400 (as nginx answers) instead of a TLS alert.
        if c.rbuf.is_empty() {
            match read_into(&mut c.stream, &mut c.rbuf, 512, tls.handshake_timeout).await {
                ReadOutcome::Data(_) => {}
                ReadOutcome::TimedOut => {
                    STATS.tls_handshake_timeouts.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                // Closed before a byte (a balancer's TCP check): no handshake was tried.
                ReadOutcome::Eof | ReadOutcome::Err(_) => return,
            }
        }
        if c.rbuf.first().is_some_and(|b| b.is_ascii_uppercase()) {
            STATS.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
            let _ = write_all(&mut c.stream, Bytes::from_static(PLAIN_HTTP_TO_TLS), Duration::from_secs(1)).await;
            return;
        }
        let ClientStream::Plain(tcp) = c.stream else { return };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
        // Bytes already read (after a PROXY header, or the first read above) start the ClientHello.
        let pre = std::mem::take(&mut c.rbuf);
        c.tls_version = crate::tls::hello_version(&pre, true);
        let io = Prefixed { inner: tcp, pre };
        let left = deadline.saturating_duration_since(Instant::now());
        // Boxed: the handshake state is large and must not sit in every connection's future.
        match monoio::time::timeout(left, Box::pin(tls.acceptor.accept(io))).await {
            Ok(Ok(s)) => {
                STATS.tls_handshakes.fetch_add(1, Ordering::Relaxed);
                c.stream = ClientStream::Tls(Box::new(TlsConn::new(s, fd)));
            }
            Ok(Err(e)) => {
                STATS.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %c.peer_ip, "TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                STATS.tls_handshake_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(peer = %c.peer_ip, "TLS handshake not done within {:?}: closed", tls.handshake_timeout);
                return;
            }
        }
    }
    drop(snap);
    loop {
        c.rid.clear();
        c.body_pending = false;
        c.is_head = false;
        c.http10 = false;
        // Idle wait: nothing of a request is held yet, not even the snapshot (an idle
        // connection must neither keep an old config alive nor use it for its next request).
        if c.rbuf.is_empty() {
            let wait = {
                let snap = w.snapshot.get();
                let l = &snap.limits;
                if c.requests == 0 {
                    l.header_read_timeout
                } else {
                    l.keepalive_timeout
                }
            };
            if !wait_for_bytes(&mut c, wait).await {
                return;
            }
        }
        // One snapshot per request, loaded when its first bytes are here: a keep-alive
        // connection sees a reload at its next request.
        let snap = w.snapshot.get();
        let mut s = w.take_scratch();
        match read_head(&mut c, &mut s, &snap, head_started.take()).await {
            Ok(()) => {}
            Err(e) => {
                Box::pin(answer(&mut c, &w, &e, true)).await;
                return;
            }
        }
        c.keep_alive = s.req.keep_alive;
        c.is_head = s.req.is_head;
        c.http10 = s.req.minor == 0;
        s.obs.reset();
        s.obs.start = Some(Instant::now());
        w.metrics.borrow_mut().off = !snap.metrics_enabled;
        let guard = CountGuard::new(&w.in_flight);
        // Boxed: the request path's state (several KiB) lives on the heap only while a request is
        // in flight, so an idle keep-alive connection costs its small read buffer and this loop.
        let res = Box::pin(handle(&mut c, &mut s, &w, &snap)).await;
        drop(guard);
        drop(fresh.take());
        let go_on = match &res {
            Ok(_) => true,
            Err(e) => {
                let at_cap = c.requests >= snap.limits.max_requests_per_connection;
                s.obs.status = e.answer().map_or(0, |a| a.status);
                Box::pin(answer(&mut c, &w, e, at_cap)).await
            }
        };
        crate::observe::finish(&w, &snap, &c, &s);
        w.recycle_scratch(s);
        match res {
            Ok(Next::KeepAlive) => {}
            Ok(Next::Close) => return,
            Ok(Next::Upgrade(up, idle)) => {
                // A tunnel may live for hours: it must not keep this config alive.
                drop(snap);
                let _guard = CountGuard::new(&w.in_flight);
                Box::pin(tunnel(c, up, idle)).await;
                return;
            }
            Err(_) if !go_on => return,
            Err(_) => {}
        }
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Read the PROXY protocol header a listener expects and make its source address the client's
/// (for X-Forwarded-For, trusted-proxy checks, logs and limits). False: close the connection
/// (a header from an untrusted peer, a missing one where required, a malformed, truncated or
/// oversized one, or none within the header read timeout).
async fn take_proxy_header(c: &mut ClientConn, proxy: &ProxyProtocol, deadline: Instant) -> bool {
    let peer = c.peer_ip;
    let trusted = proxy.from.iter().any(|n| n.contains(&peer));
    if proxy.mode == ProxyMode::Required && !trusted {
        tracing::debug!(%peer, "PROXY protocol required but the peer is not in proxy_protocol_from: closed");
        return false;
    }
    loop {
        if !c.rbuf.is_empty() {
            match proxy_protocol::parse(&c.rbuf) {
                Ok(Some(h)) => {
                    if !trusted {
                        tracing::debug!(%peer, "PROXY protocol header from a peer not in proxy_protocol_from: closed");
                        return false;
                    }
                    let _ = c.rbuf.split_to(h.len);
                    if let Some(src) = h.source {
                        let ip = unmapped(src.ip());
                        c.peer_ip = ip;
                        c.client_ip = ip.to_string().into_bytes();
                        c.trusted = None; // evaluated for the new address
                    }
                    return true;
                }
                Ok(None) => {}
                Err(HeaderError::Absent) if proxy.mode == ProxyMode::Optional => return true,
                Err(e) => {
                    tracing::debug!(%peer, "{e}: closed");
                    return false;
                }
            }
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() || !matches!(read_into(&mut c.stream, &mut c.rbuf, 512, wait).await, ReadOutcome::Data(_)) {
            return false;
        }
    }
}

/// Wait for the first bytes of the next request. False: the client closed, or stayed silent
/// past `wait` (the keep-alive timeout, or the header timeout on a new connection).
async fn wait_for_bytes(c: &mut ClientConn, wait: Duration) -> bool {
    // During a drain's grace period an idle keep-alive connection still gets its next request
    // answered (with `Connection: close`); once accepting stopped, idle ones are closed.
    if shutting_down() && c.requests > 0 {
        return false;
    }
    matches!(read_into(&mut c.stream, &mut c.rbuf, 512, wait).await, ReadOutcome::Data(_))
}

/// Read until `c.rbuf` (already holding some bytes) starts with a whole request head, parsed
/// into `s.req`, within the header read timeout.
/// `started`: when the head's clock started (the accept, for a connection's first request);
/// otherwise it starts now, computed only if the first read did not bring the whole head.
async fn read_head(
    c: &mut ClientConn,
    s: &mut Scratch,
    snap: &Snapshot,
    started: Option<Instant>,
) -> Result<(), ProxyError> {
    let limits = &snap.limits;
    let mut deadline: Option<Instant> = started.map(|t| t + limits.header_read_timeout);
    loop {
        if parse_request(&c.rbuf, &limits.head, &mut s.req)? {
            return Ok(());
        }
        let d = *deadline.get_or_insert_with(|| Instant::now() + limits.header_read_timeout);
        let wait = d.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Err(ProxyError::HeadTimeout);
        }
        match read_into(&mut c.stream, &mut c.rbuf, 1024, wait).await {
            ReadOutcome::Data(_) => {}
            ReadOutcome::Eof => return Err(ProxyError::ClientIo(std::io::ErrorKind::UnexpectedEof.into())),
            ReadOutcome::TimedOut => return Err(ProxyError::HeadTimeout),
            ReadOutcome::Err(e) => return Err(ProxyError::ClientIo(e)),
        }
    }
}

/// Send the answer for `e`. Returns true when the connection may go on; `force_close` closes it
/// anyway (head never parsed, or the connection's request cap reached).
async fn answer(c: &mut ClientConn, w: &Worker, e: &ProxyError, force_close: bool) -> bool {
    let Some(a) = e.answer() else {
        tracing::debug!(error = %e, "connection closed without answer");
        return false;
    };
    if a.status >= 500 {
        // At most one line per second per worker: an upstream outage must not turn every request
        // into a blocking write to stderr.
        if let Some(suppressed) = w.error_log_gate() {
            tracing::warn!(status = a.status, error = %e, request_id = %String::from_utf8_lossy(&c.rid), suppressed, "upstream error");
        }
    } else {
        tracing::debug!(status = a.status, error = %e, "client error");
    }
    if c.rid.is_empty() {
        w.next_request_id(&mut c.rid);
    }
    let close = force_close || a.close || c.body_pending || !c.keep_alive || draining();
    let mut extra = String::new();
    if !close && c.http10 {
        extra.push_str("Connection: keep-alive\r\n");
    }
    if let ProxyError::MethodNotAllowed(allow) = e {
        // RFC 9110 §15.5.6: a 405 carries Allow.
        extra.push_str(&format!("Allow: {allow}\r\n"));
    }
    if let ProxyError::RateLimited(l) = e {
        // RFC 6585 §4 with Retry-After; draft-ietf-httpapi-ratelimit-headers-11 fields.
        extra.push_str(&l.lines);
    }
    if let ProxyError::Auth(a) = e {
        // RFC 6750 §3 (RFC 9110 §11.6.1: a 401 carries a challenge).
        extra.push_str(&format!("WWW-Authenticate: {}\r\n", a.challenge()));
    }
    let body = canned(a.status, a.reason, &c.rid, close, c.is_head, &extra);
    let ok = write_all(&mut c.stream, body, Duration::from_secs(5)).await.is_ok();
    ok && !close
}

/// Relay bytes both ways after a 101, until both sides finish or nothing moves for `idle`.
async fn tunnel(c: ClientConn, up: UpstreamConn, idle: Duration) {
    let ClientConn { stream, mut rbuf, .. } = c;
    let UpstreamConn { stream: ustream, .. } = up;
    let (mut cr, mut cw) = stream.into_split();
    let (mut ur, mut uw) = ustream.into_split();
    let last = Rc::new(std::cell::Cell::new(Instant::now()));
    if !rbuf.is_empty() && write_all(&mut uw, rbuf.split().freeze(), idle).await.is_err() {
        return;
    }
    let a = pump(&mut cr, &mut uw, idle, last.clone());
    let b = pump(&mut ur, &mut cw, idle, last);
    monoio::join!(a, b);
}

async fn pump<R: CancelableAsyncReadRent, W: AsyncWriteRent>(
    r: &mut R,
    wr: &mut W,
    idle: Duration,
    last: Rc<std::cell::Cell<Instant>>,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    // One canceller and one timer for the tunnel's life (re-armed per wait), not one per message.
    let mut canceller = Canceller::new();
    let mut timer = std::pin::pin!(monoio::time::sleep(idle));
    loop {
        if buf.capacity() - buf.len() < 8 * 1024 {
            buf.reserve(8 * 1024);
        }
        let owned = std::mem::take(&mut buf);
        let (len, cap) = (owned.len(), owned.capacity());
        let mut read = std::pin::pin!(r.cancelable_read(owned.slice_mut(len..cap), canceller.handle()));
        // Wake every `idle` to check whether either direction moved; only when neither did is the
        // read cancelled, and then awaited to completion so no received byte is ever dropped.
        let (res, slice) = loop {
            timer.as_mut().reset(monoio::time::Instant::now() + idle);
            let done = monoio::select! {
                out = &mut read => Some(out),
                _ = timer.as_mut() => None,
            };
            match done {
                Some(out) => break out,
                None if last.get().elapsed() >= idle => {
                    canceller = canceller.cancel();
                    // A plain read ends at once when cancelled; a TLS one cannot be: drop it.
                    match monoio::time::timeout(Duration::from_millis(100), &mut read).await {
                        Ok(out) => break out,
                        // No shutdown after an abandoned operation: monoio-rustls would find
                        // its buffer missing (and panic); dropping the halves closes the socket.
                        Err(_) => return,
                    }
                }
                None => {}
            }
        };
        buf = slice.into_inner();
        match res {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                last.set(Instant::now());
                let chunk: Bytes = buf.split().freeze();
                if write_all_on(wr, chunk, timer.as_mut(), idle).await.is_err() {
                    // Timed out or failed mid-write: the write side may hold an abandoned
                    // operation, so no orderly shutdown on it (see above).
                    return;
                }
            }
        }
    }
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod size_probe {
    /// What an idle connection costs, kept in bounds.
    #[test]
    fn future_sizes() {
        fn size<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build().expect("rt");
        rt.block_on(async {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = l.local_addr().expect("addr");
            let s = monoio::net::TcpStream::connect_addr(addr).await.expect("connect");
            let shared = std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(crate::shared::Snapshot::build(
                crate::config::load_str(crate::config::DEFAULT_CONFIG, "d").expect("cfg"),
                None,
                1,
            )));
            let w = std::rc::Rc::new(crate::core::Worker::new(0, shared));
            let sl = monoio::time::sleep(std::time::Duration::from_secs(1));
            eprintln!("sleep: {} bytes", size(&sl));
            eprintln!("ClientConn: {} bytes", std::mem::size_of::<super::ClientConn>());
            eprintln!("Scratch: {} bytes", std::mem::size_of::<crate::core::Scratch>());
            let opts = crate::net::listener::ListenerOpts {
                proxy: crate::config::ProxyProtocol::default(),
                tls: None,
                index: 0,
            };
            let f = super::serve(s, addr, &opts, w);
            eprintln!("serve future: {} bytes", size(&f));
            // An idle keep-alive connection parks this future: 10,000 of them must fit the RSS
            // budget (README), so large states (a request, a TLS handshake) are boxed.
            assert!(size(&f) <= 2048, "serve future grew to {} bytes", size(&f));
            assert!(std::mem::size_of::<super::ClientConn>() <= 256);
        });
    }
}
