//! The request path, top to bottom: route (`routing`; direct answers end here) → limits → upstream connection → forward the head and
//! stream the body → read the response head (relaying 1xx) → stream the response back → pool.
//!
//! Every exit is either a `Next` (what the connection does next) or a `ProxyError`, which
//! `error.rs` turns into the one answer the client gets. Each wait on a peer has a deadline: the
//! route's connect, response and idle timeouts, capped by its total timeout.

use std::ops::Range;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use crate::core::Scratch;
use crate::core::{draining, Worker};
use crate::error::ProxyError;
use crate::http::body::{BodyError, BodyReader};
use crate::http::conn::ClientConn;
use crate::http::parse::BodyFraming;
use crate::http::response::{parse_response, ResponseError, ResponseFraming};
use crate::http::write::{
    forward_request_head, forward_response_head, ClientConn as ConnMode, ForwardCtx, ResponseCtx,
};
use crate::net::io::{read_into_on, write_all_on, write_iov_on, ReadOutcome, WriteError};
use crate::net::iov::IoSlices;
use crate::route::Action;
use crate::routing;
use crate::shared::{Snapshot, Target, UpstreamGroup};
use crate::upstream::pool::{connect, UpstreamConn};

/// Largest response head accepted from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most interim (1xx) responses relayed before the final one.
const MAX_INTERIM: usize = 16;
/// Room made in a read buffer before each body read.
const BODY_READ: usize = 16 * 1024;

/// What the client connection does after a request.
pub enum Next {
    KeepAlive,
    Close,
    /// The upstream switched protocols: tunnel bytes both ways with this idle timeout.
    Upgrade(UpstreamConn, Duration),
}

/// Time left before the route's total deadline, capping one wait.
struct Clock {
    deadline: Option<Instant>,
}

impl Clock {
    fn cap(&self, d: Duration) -> Result<Duration, ProxyError> {
        match self.deadline {
            None => Ok(d),
            Some(dl) => {
                let rem = dl.saturating_duration_since(Instant::now());
                if rem.is_zero() {
                    Err(ProxyError::UpstreamTimeout)
                } else {
                    Ok(d.min(rem))
                }
            }
        }
    }
}

fn upstream_write(e: WriteError) -> ProxyError {
    match e {
        WriteError::TimedOut => ProxyError::UpstreamTimeout,
        WriteError::Io(e) => ProxyError::UpstreamIo(e),
    }
}

fn client_write(e: WriteError) -> ProxyError {
    ProxyError::ClientIo(e.into())
}

fn test_panic_hook(path: &[u8]) {
    static HOOK: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
    let hook = HOOK.get_or_init(|| std::env::var("RINGGATE_TEST_PANIC_PATH").ok().map(String::into_bytes));
    if let Some(p) = hook {
        if p.as_slice() == path {
            panic!("test panic hook: request for {}", String::from_utf8_lossy(path));
        }
    }
}

fn idempotent(method: &[u8]) -> bool {
    matches!(method, b"GET" | b"HEAD" | b"OPTIONS" | b"PUT" | b"DELETE" | b"TRACE")
}

async fn fresh(
    w: &Worker,
    group: &UpstreamGroup,
    target: &Target,
    clock: &Clock,
    connect_timeout: Duration,
) -> Result<UpstreamConn, ProxyError> {
    let key = group.metrics_key;
    w.metrics.borrow_mut().count_upstream(key, &group.name, |u| u.connect_attempts += 1);
    let res = connect(target, clock.cap(connect_timeout)?).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::TimedOut => ProxyError::UpstreamTimeout,
        _ => ProxyError::UpstreamConnect(e),
    });
    if res.is_err() {
        w.metrics.borrow_mut().count_upstream(key, &group.name, |u| u.connect_failures += 1);
    }
    res
}

/// Serve one request whose head is parsed in `s.req` (its bytes are at the front of `c.rbuf`).
/// `s` is the per-core scratch lent to this request (parsed heads, write lists).
pub async fn handle(c: &mut ClientConn, s: &mut Scratch, w: &Worker, snap: &Snapshot) -> Result<Next, ProxyError> {
    let head = c.rbuf.split_to(s.req.len).freeze();
    s.obs.bytes_in = head.len() as u64;
    s.obs.head = Some(head.clone());
    c.requests += 1;
    let framing = s.req.framing();
    c.body_pending = framing != BodyFraming::None;
    // With request ids off, none is made here (an error answer makes one if it needs it).
    let generated_id = match &s.req.request_id {
        _ if !snap.forwarding.request_id => false,
        Some(r) => {
            c.rid.clear();
            c.rid.extend_from_slice(&head[r.clone()]);
            false
        }
        None => {
            w.next_request_id(&mut c.rid);
            true
        }
    };
    test_panic_hook(&head[s.req.path.clone()]);

    // Route.
    let routed = routing::route(snap, &head, &s.req, &mut s.norm, &mut s.params, &mut s.extra)?;
    let route = routed.route;
    s.obs.route = Some(routed.index);
    // Authentication: before any answer, direct or proxied.
    let principal = match &route.auth {
        None => None,
        Some(ra) => {
            let policy = &snap.auth[ra.policy];
            let mut cache = w.tokens.borrow_mut();
            let res = crate::auth::authorize(policy, ra, &head, &s.req, crate::auth::unix_now(), &mut cache);
            let outcome = res.as_ref().map_or_else(crate::auth::AuthError::outcome, |_| "allowed");
            s.obs.auth = outcome;
            w.metrics.borrow_mut().policy(policy.metrics_key, "auth", &policy.name, outcome);
            Some(res?)
        }
    };
    // Rate limits: after authentication (they may key on the principal), before any answer.
    let mut limit_lines = BytesMut::new();
    if !route.rate_limits.is_empty() {
        let client_ip = if c.trusted_peer(snap) {
            crate::ratelimit::forwarded_client(&head, &s.req, snap).unwrap_or(&c.client_ip)
        } else {
            &c.client_ip
        };
        let input = crate::ratelimit::KeyInput {
            head: &head,
            req: &s.req,
            client_ip,
            route: route.name.as_bytes(),
            principal: principal.as_deref(),
        };
        let mut leases = w.leases.borrow_mut();
        let now = crate::ratelimit::now_ns();
        let mut metrics = w.metrics.borrow_mut();
        let mut outcome = "admitted";
        let mut decided = |p: &crate::ratelimit::RateLimitPolicy, o: &'static str| {
            metrics.policy(p.metrics_key, "ratelimit", &p.name, o);
            if o != "admitted" && o != "unlimited" {
                outcome = o;
            }
        };
        let res = crate::ratelimit::check(
            &snap.rate_limits,
            &route.rate_limits,
            &input,
            &mut leases,
            now,
            &mut limit_lines,
            &mut decided,
        );
        s.obs.ratelimit = outcome;
        res.map_err(|l| ProxyError::RateLimited(Box::new(l)))?;
    }
    let (upstream, max_body, t) = match &route.action {
        Action::Proxy { upstream, max_body_bytes, timeouts, .. } => (*upstream, *max_body_bytes, *timeouts),
        _ => {
            let (rhead, rbody) = routed.direct.unwrap_or_default();
            return answer_direct(c, s, snap, rhead, rbody).await;
        }
    };
    let target_override = routed.target;
    if let BodyFraming::Length(n) = framing {
        if max_body > 0 && n > max_body {
            return Err(ProxyError::BodyTooLarge);
        }
    }
    let group: &UpstreamGroup = &snap.upstreams[upstream];
    if group.targets.is_empty() {
        return Err(ProxyError::NoTarget);
    }
    let target = &group.targets[w.next_target(group.targets.len())];
    let clock = Clock { deadline: t.total.map(|d| Instant::now() + d) };

    // Upstream connection: pooled, or new.
    s.obs.upstream = Some((upstream, target.addr));
    let trace = crate::trace::decide(&head, &s.req, snap.trace_generate, || w.rand());
    s.obs.trace_id = trace.as_ref().map(|d| d.trace_id);
    let pooled = w.pool.take(target.key, group.idle_timeout, Instant::now());
    {
        let hit = pooled.is_some();
        w.metrics.borrow_mut().count_upstream(group.metrics_key, &group.name, |u| {
            if hit {
                u.pool_hits += 1;
            } else {
                u.pool_misses += 1;
            }
        });
    }
    let mut up = match pooled {
        Some(u) => u,
        None => fresh(w, group, target, &clock, t.connect).await?,
    };

    // RFC 9110 §10.1.1: answer 100-continue ourselves once the request is accepted.
    let mut sent_continue = false;
    if s.req.expect_continue && c.body_pending && c.rbuf.is_empty() {
        write_all_on(
            &mut c.stream,
            Bytes::from_static(b"HTTP/1.1 100 Continue\r\n\r\n"),
            s.timer(),
            clock.cap(t.idle)?,
        )
        .await
        .map_err(client_write)?;
        sent_continue = true;
    }

    let mut body = match framing {
        BodyFraming::None => None,
        BodyFraming::Length(n) => Some(BodyReader::Length(n)),
        BodyFraming::Chunked => Some(BodyReader::chunked()),
    };
    let retryable = framing == BodyFraming::None;
    let mut body_seen: u64 = 0;
    let mut attempt = 0;
    let mut head_deadline;
    let head_len = loop {
        attempt += 1;
        // Head, plus whatever body bytes are already buffered, in one vectored write.
        let mut iov = std::mem::take(&mut s.iov);
        iov.clear();
        {
            let trusted_peer = c.trusted_peer(snap);
            let ctx = ForwardCtx {
                client_ip: &c.client_ip,
                trusted_peer,
                x_forwarded_for: snap.forwarding.x_forwarded_for,
                x_forwarded_proto: snap.forwarding.x_forwarded_proto,
                x_forwarded_host: snap.forwarding.x_forwarded_host,
                generated_request_id: if generated_id && snap.forwarding.request_id { Some(&c.rid) } else { None },
                manage_request_id: snap.forwarding.request_id,
                upstream_authority: &target.authority,
                proto: if c.stream.is_tls() { b"https" } else { b"http" },
                target: target_override.as_ref(),
                headers: &route.request_headers,
                claim_lines: principal.as_ref().map_or(&[][..], |p| &p.header_lines[..]),
                trace: trace.as_ref(),
            };
            forward_request_head(&head, &s.req, &ctx, &mut s.extra, iov.bufs_mut());
        }
        if let Some(b) = body.as_mut() {
            if !c.rbuf.is_empty() {
                let consumed = take_request_body(b, &c.rbuf, &mut body_seen, max_body)?;
                iov.bufs_mut().push(c.rbuf.split_to(consumed).freeze());
            }
        }
        iov.seal();
        if let Err(e) = send(&mut up.stream, s, iov, clock.cap(t.idle)?).await {
            if up.reused && attempt == 1 && retryable {
                up = fresh(w, group, target, &clock, t.connect).await?;
                continue;
            }
            return Err(upstream_write(e));
        }

        // The rest of the body, streamed through the bounded read buffer (time spent waiting on
        // the client: not the gateway's).
        let streaming = if body.as_ref().is_some_and(|b| !b.is_done()) { Some(Instant::now()) } else { None };
        while let Some(b) = body.as_mut().filter(|b| !b.is_done()) {
            match read_into_on(&mut c.stream, &mut c.rbuf, BODY_READ, s.timer(), clock.cap(t.idle)?).await {
                ReadOutcome::Data(_) => {}
                ReadOutcome::Eof => return Err(ProxyError::ClientIo(std::io::ErrorKind::UnexpectedEof.into())),
                ReadOutcome::TimedOut => return Err(ProxyError::ClientBodyTimeout),
                ReadOutcome::Err(e) => return Err(ProxyError::ClientIo(e)),
            }
            let consumed = take_request_body(b, &c.rbuf, &mut body_seen, max_body)?;
            let chunk = c.rbuf.split_to(consumed).freeze();
            write_all_on(&mut up.stream, chunk, s.timer(), clock.cap(t.idle)?).await.map_err(upstream_write)?;
        }
        c.body_pending = false;
        s.obs.bytes_in = head.len() as u64 + body_seen;
        // One clock read: the request is written (the upstream wait starts) and the response
        // head's deadline is set from it.
        let sent = Instant::now();
        if let Some(t0) = streaming {
            s.obs.waits += sent.saturating_duration_since(t0);
        }
        s.obs.sent_upstream = Some(sent);

        // One deadline for the whole response head, interim 1xx responses included: an upstream
        // dripping bytes or sending endless 1xx cannot keep the exchange alive past it.
        head_deadline = sent + t.response;
        match read_response_head(&mut up, s, &clock, head_deadline).await {
            Ok(n) => break n,
            Err(ProxyError::UpstreamClosed | ProxyError::UpstreamIo(_))
                if up.reused
                    && up.buf.is_empty()
                    && attempt == 1
                    && retryable
                    && idempotent(&head[s.req.method.clone()]) =>
            {
                up = fresh(w, group, target, &clock, t.connect).await?;
            }
            Err(e) => return Err(e),
        }
    };
    let mut n = head_len;

    // 1xx interim responses: relay to HTTP/1.1 clients, then read the final head.
    let mut interim_count = 0;
    while (100..200).contains(&s.resp.status) && s.resp.status != 101 {
        interim_count += 1;
        if interim_count > MAX_INTERIM {
            return Err(ProxyError::UpstreamResponse(ResponseError::Malformed("too many 1xx responses")));
        }
        let interim = up.buf.split_to(n).freeze();
        if s.req.minor == 1 && !(s.resp.status == 100 && sent_continue) {
            let mut out = std::mem::take(&mut s.iov);
            let ctx = ResponseCtx::plain(ConnMode::KeepAlive);
            forward_response_head(&interim, &s.resp, &ctx, &mut s.extra, out.bufs_mut());
            out.seal();
            send_client(&mut c.stream, s, out, clock.cap(t.idle)?).await.map_err(client_write)?;
        }
        n = read_response_head(&mut up, s, &clock, head_deadline).await?;
    }

    s.obs.upstream_head = Some(Instant::now());
    s.obs.status = s.resp.status;

    if s.resp.status == 101 {
        if !s.req.upgrade {
            return Err(ProxyError::UpstreamResponse(ResponseError::Malformed(
                "101 to a request that did not ask to upgrade",
            )));
        }
        let resp_head = up.buf.split_to(n).freeze();
        let mut out = std::mem::take(&mut s.iov);
        let ctx = ResponseCtx::plain(ConnMode::Upgrade);
        forward_response_head(&resp_head, &s.resp, &ctx, &mut s.extra, out.bufs_mut());
        if !up.buf.is_empty() {
            out.bufs_mut().push(up.buf.split().freeze());
        }
        out.seal();
        send_client(&mut c.stream, s, out, clock.cap(t.idle)?).await.map_err(client_write)?;
        return Ok(Next::Upgrade(up, t.idle));
    }

    // Final response.
    let resp_head = up.buf.split_to(n).freeze();
    let rframing = s.resp.framing;
    let dechunk = rframing == ResponseFraming::Chunked && s.req.minor == 0;
    let keep = s.req.keep_alive
        && rframing != ResponseFraming::UntilClose
        && !dechunk
        && !draining()
        && c.requests < snap.limits.max_requests_per_connection;
    let mode = if keep { ConnMode::KeepAlive } else { ConnMode::Close };
    let mut rbody = match rframing {
        ResponseFraming::None => None,
        ResponseFraming::Length(len) => Some(BodyReader::Length(len)),
        ResponseFraming::Chunked => Some(BodyReader::chunked()),
        ResponseFraming::UntilClose => Some(BodyReader::UntilClose),
    };
    let mut out = std::mem::take(&mut s.iov);
    if route.server_timing {
        // W3C Server Timing: milliseconds so far (the response is about to be written).
        let t = s.obs.timing(Instant::now());
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        use std::fmt::Write;
        let _ = write!(
            limit_lines,
            "Server-Timing: gw;dur={:.3}, upstream;dur={:.3}\r\n",
            ms(t.gateway()),
            ms(t.upstream.unwrap_or_default())
        );
    }
    let ctx = ResponseCtx {
        client_minor: s.req.minor,
        conn: mode,
        dechunk,
        headers: &route.response_headers,
        extra_lines: &limit_lines,
    };
    forward_response_head(&resp_head, &s.resp, &ctx, &mut s.extra, out.bufs_mut());
    drop(resp_head);
    if let Some(b) = rbody.as_mut() {
        take_body(b, &mut up.buf, dechunk, &mut s.ranges, out.bufs_mut()).map_err(ProxyError::UpstreamBody)?;
    }
    out.seal();
    send_client(&mut c.stream, s, out, clock.cap(t.idle)?).await.map_err(client_write)?;

    let started = |e: ProxyError| ProxyError::AfterResponseStarted(Box::new(e));
    let streaming = if rbody.as_ref().is_some_and(|b| !b.is_done()) { Some(Instant::now()) } else { None };
    while let Some(b) = rbody.as_mut().filter(|b| !b.is_done()) {
        let wait = clock.cap(t.idle).map_err(started)?;
        match read_into_on(&mut up.stream, &mut up.buf, BODY_READ, s.timer(), wait).await {
            ReadOutcome::Data(_) => {}
            ReadOutcome::Eof if matches!(b, BodyReader::UntilClose) => break,
            ReadOutcome::Eof => return Err(started(ProxyError::UpstreamClosed)),
            ReadOutcome::TimedOut => return Err(started(ProxyError::UpstreamTimeout)),
            ReadOutcome::Err(e) => return Err(started(ProxyError::UpstreamIo(e))),
        }
        let mut out = std::mem::take(&mut s.iov);
        take_body(b, &mut up.buf, dechunk, &mut s.ranges, out.bufs_mut())
            .map_err(|e| started(ProxyError::UpstreamBody(e)))?;
        out.seal();
        send_client(&mut c.stream, s, out, clock.cap(t.idle).map_err(started)?).await.map_err(client_write)?;
    }

    if let Some(t0) = streaming {
        s.obs.waits += t0.elapsed();
    }

    // Back to the pool only after an exact, complete exchange, and only while the target is
    // still configured (a reload may have removed it while this request ran).
    let clean = s.resp.keep_alive && up.buf.is_empty() && rbody.as_ref().is_none_or(BodyReader::is_done);
    if clean && w.snapshot.still_a_target(snap, up.key) {
        w.pool.put(up, group.max_idle_per_target, Instant::now());
    }
    if c.rbuf.capacity() > 64 * 1024 && c.rbuf.is_empty() {
        // A large body grew the buffer: do not park it on an idle connection.
        c.rbuf = BytesMut::new();
    }
    Ok(if keep { Next::KeepAlive } else { Next::Close })
}

/// Answer a `respond` or `redirect` route: the prebuilt head, the connection's fields, the body.
/// A request body is not read: the connection closes after the answer.
async fn answer_direct(
    c: &mut ClientConn,
    s: &mut Scratch,
    snap: &Snapshot,
    head: Bytes,
    body: Bytes,
) -> Result<Next, ProxyError> {
    let keep =
        s.req.keep_alive && !c.body_pending && !draining() && c.requests < snap.limits.max_requests_per_connection;
    s.obs.status = head.get(9..12).and_then(|d| std::str::from_utf8(d).ok()?.parse().ok()).unwrap_or(200);
    let mut out = std::mem::take(&mut s.iov);
    out.bufs_mut().push(head);
    let extra = &mut s.extra;
    if snap.forwarding.request_id {
        extra.put_slice(b"X-Request-Id: ");
        extra.put_slice(&c.rid);
        extra.put_slice(b"\r\n");
    }
    if !keep {
        extra.put_slice(b"Connection: close\r\n");
    } else if s.req.minor == 0 {
        extra.put_slice(b"Connection: keep-alive\r\n");
    }
    extra.put_slice(b"\r\n");
    out.bufs_mut().push(extra.split().freeze());
    if !s.req.is_head && !body.is_empty() {
        out.bufs_mut().push(body);
    }
    out.seal();
    send_client(&mut c.stream, s, out, snap.limits.keepalive_timeout).await.map_err(client_write)?;
    Ok(if keep { Next::KeepAlive } else { Next::Close })
}

/// `send` to the client, counting the bytes for metrics and the access log.
async fn send_client<S: monoio::io::AsyncWriteRent>(
    stream: &mut S,
    s: &mut Scratch,
    out: IoSlices,
    wait: Duration,
) -> Result<(), WriteError> {
    s.obs.bytes_out += out.remaining() as u64;
    send(stream, s, out, wait).await
}

/// Write a sealed slice list, then hand the (cleared) list back to the scratch for reuse.
async fn send<S: monoio::io::AsyncWriteRent>(
    stream: &mut S,
    s: &mut Scratch,
    out: IoSlices,
    wait: Duration,
) -> Result<(), WriteError> {
    let (res, back) = write_iov_on(stream, out, s.timer(), wait).await;
    s.iov = back.unwrap_or_default();
    s.iov.clear();
    res
}

/// Feed the request body bytes at the front of `buf` to `b`: how many belong to the body. The
/// route's limit counts payload bytes (chunk framing excluded) across calls in `seen`.
fn take_request_body(b: &mut BodyReader, buf: &[u8], seen: &mut u64, max_body: u64) -> Result<usize, ProxyError> {
    let mut data = 0usize;
    let p = b.feed_with(buf, |r| data += r.len())?;
    *seen += data as u64;
    if max_body > 0 && *seen > max_body {
        return Err(ProxyError::BodyTooLarge);
    }
    Ok(p.consumed)
}

/// Move the body bytes at the front of `buf` into `out` (as slices of it).
fn take_body(
    b: &mut BodyReader,
    buf: &mut BytesMut,
    dechunk: bool,
    ranges: &mut Vec<Range<usize>>,
    out: &mut Vec<Bytes>,
) -> Result<(), BodyError> {
    if buf.is_empty() {
        return Ok(());
    }
    ranges.clear();
    let p = if dechunk { b.feed_with(buf, |r| ranges.push(r))? } else { b.feed(buf)? };
    let chunk = buf.split_to(p.consumed).freeze();
    if dechunk {
        out.extend(ranges.drain(..).map(|r| chunk.slice(r)));
    } else if !chunk.is_empty() {
        out.push(chunk);
    }
    Ok(())
}

/// Read until a full response head is buffered in `up.buf`; returns its length (parsed in `s.resp`).
async fn read_response_head(
    up: &mut UpstreamConn,
    s: &mut Scratch,
    clock: &Clock,
    deadline: Instant,
) -> Result<usize, ProxyError> {
    loop {
        if !up.buf.is_empty() && parse_response(&up.buf, MAX_RESPONSE_HEAD, s.req.is_head, &mut s.resp)? {
            return Ok(s.resp.len);
        }
        let wait = deadline.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return Err(ProxyError::UpstreamTimeout);
        }
        match read_into_on(&mut up.stream, &mut up.buf, 4096, s.timer(), clock.cap(wait)?).await {
            ReadOutcome::Data(_) => {}
            ReadOutcome::Eof => return Err(ProxyError::UpstreamClosed),
            ReadOutcome::TimedOut => return Err(ProxyError::UpstreamTimeout),
            ReadOutcome::Err(e) => return Err(ProxyError::UpstreamIo(e)),
        }
    }
}
