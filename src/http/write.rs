//! Building the heads ringgate sends (sans-io): the request head forwarded upstream, the response
//! head returned to the client, and canned responses for errors.
//!
//! Forwarded heads are a list of `Bytes`: runs of the original head (slices of the frozen read
//! buffer, no copy) with the lines the gateway drops cut out, plus one small buffer holding the
//! lines it adds. Nothing here allocates per header.

use bytes::{BufMut, Bytes, BytesMut};

use super::parse::{HeaderKind, RequestHead};
use super::response::ResponseHead;
use crate::route::HeaderOps;

/// Per-request facts the request head builder needs besides the head itself.
pub struct ForwardCtx<'a> {
    /// Client address as text (for X-Forwarded-For).
    pub client_ip: &'a [u8],
    /// The direct peer is a trusted proxy: keep its X-Forwarded-* values.
    pub trusted_peer: bool,
    pub x_forwarded_for: bool,
    pub x_forwarded_proto: bool,
    pub x_forwarded_host: bool,
    /// Request id to add, when the request carried no well-formed one.
    pub generated_request_id: Option<&'a [u8]>,
    /// `forwarding.request_id`: ringgate owns X-Request-Id (drops malformed ones, adds its own).
    pub manage_request_id: bool,
    /// Host to send when the client sent none (HTTP/1.0): the upstream target's authority.
    pub upstream_authority: &'a [u8],
    /// "http" or "https".
    pub proto: &'static [u8],
    /// Path and query to send instead of the client's (normalized or rewritten by the route).
    pub target: Option<&'a Bytes>,
    /// The route's request header changes.
    pub headers: &'a HeaderOps,
    /// Header lines from the verified token's claims (`Name: value\r\n`...), or empty.
    pub claim_lines: &'a [u8],
    /// The trace context to send (replacing the client's traceparent), if any.
    pub trace: Option<&'a crate::trace::Decision>,
}

static HTTP11_CRLF: &[u8] = b" HTTP/1.1\r\n";

/// Push runs of `head` kept by `keep` into `out`, merging adjacent kept lines into one slice.
/// `open` is a run already kept (e.g. an unchanged start line) that the first kept line may extend.
fn push_kept_lines<F>(
    head: &Bytes,
    lines: impl Iterator<Item = (std::ops::Range<usize>, bool)>,
    open: std::ops::Range<usize>,
    out: &mut Vec<Bytes>,
    mut keep: F,
) where
    F: FnMut(bool) -> bool,
{
    let mut run_start = open.start;
    let mut run_end = open.end;
    for (line, k) in lines {
        if keep(k) {
            if line.start != run_end {
                if run_end > run_start {
                    out.push(head.slice(run_start..run_end));
                }
                run_start = line.start;
            }
            run_end = line.end;
        } else {
            if run_end > run_start {
                out.push(head.slice(run_start..run_end));
            }
            run_start = line.end;
            run_end = line.end;
        }
    }
    if run_end > run_start {
        out.push(head.slice(run_start..run_end));
    }
}

/// Build the head sent upstream. `extra` is a per-connection scratch buffer; the added lines are
/// split off it, so its allocation is reused once the returned slices are dropped.
pub fn forward_request_head(
    head: &Bytes,
    req: &RequestHead,
    ctx: &ForwardCtx<'_>,
    extra: &mut BytesMut,
    out: &mut Vec<Bytes>,
) {
    // Request line: unchanged when it is already origin-form HTTP/1.1.
    // The request line starts at the method: empty lines before it (RFC 9112 §2.2) are dropped.
    let open = if req.minor == 1 && req.path == req.target && ctx.target.is_none() {
        req.method.start..req.request_line_end
    } else if let Some(t) = ctx.target {
        out.push(head.slice(req.method.start..req.method.end + 1));
        out.push(t.clone());
        out.push(Bytes::from_static(HTTP11_CRLF));
        req.request_line_end..req.request_line_end
    } else {
        out.push(head.slice(req.method.start..req.method.end + 1));
        // RFC 9112 §3.2.1: an absolute-form target with an empty path is sent as "/".
        if head.get(req.path.start) != Some(&b'/') && head.get(req.path.start) != Some(&b'*') {
            out.push(Bytes::from_static(b"/"));
        }
        out.push(head.slice(req.path.clone()));
        out.push(Bytes::from_static(HTTP11_CRLF));
        req.request_line_end..req.request_line_end
    };
    let buf: &[u8] = head;
    let trusted = ctx.trusted_peer;
    let mut have_proto = false;
    let mut have_fwd_host = false;
    let ops = ctx.headers;
    let lines = req.headers.iter().map(|h| {
        if ops.removes(&buf[h.name.clone()]) && h.kind != HeaderKind::HopByHop {
            return (h.line.clone(), false);
        }
        if let (Some(t), HeaderKind::Other) = (ctx.trace, h.kind) {
            let name = &buf[h.name.clone()];
            if name.eq_ignore_ascii_case(b"traceparent") || (t.drop_state && name.eq_ignore_ascii_case(b"tracestate")) {
                return (h.line.clone(), false);
            }
        }
        let keep = match h.kind {
            HeaderKind::Other | HeaderKind::Host | HeaderKind::ContentLength | HeaderKind::TransferEncoding => {
                !req.named_by_connection(buf, &h.name)
            }
            HeaderKind::HopByHop => false,
            HeaderKind::Upgrade => req.upgrade,
            HeaderKind::XForwardedFor => trusted || !ctx.x_forwarded_for,
            HeaderKind::XForwardedProto => {
                let k = trusted || !ctx.x_forwarded_proto;
                have_proto |= k;
                k
            }
            HeaderKind::XForwardedHost => {
                let k = trusted || !ctx.x_forwarded_host;
                have_fwd_host |= k;
                k
            }
            // Managed ids: keep only the well-formed one chosen by the parser; else pass through.
            HeaderKind::XRequestId => !ctx.manage_request_id || req.request_id.as_ref() == Some(&h.value),
        };
        (h.line.clone(), keep)
    });
    push_kept_lines(head, lines, open, out, |k| k);

    extra.reserve(256);
    if req.upgrade {
        extra.put_slice(b"Connection: upgrade\r\n");
    }
    if req.host.is_none() && !ops.removes(b"host") {
        extra.put_slice(b"Host: ");
        match &req.target_authority {
            Some(a) => extra.put_slice(&buf[a.clone()]),
            None => extra.put_slice(ctx.upstream_authority),
        }
        extra.put_slice(b"\r\n");
    }
    // A route's `set` of one of these fields replaces what the gateway would add.
    if ctx.x_forwarded_for && !ops.removes(b"x-forwarded-for") {
        // Separate field lines are one list (RFC 9110 §5.3): appending a line appends to the list.
        extra.put_slice(b"X-Forwarded-For: ");
        extra.put_slice(ctx.client_ip);
        extra.put_slice(b"\r\n");
    }
    if ctx.x_forwarded_proto && !have_proto && !ops.removes(b"x-forwarded-proto") {
        extra.put_slice(b"X-Forwarded-Proto: ");
        extra.put_slice(ctx.proto);
        extra.put_slice(b"\r\n");
    }
    if ctx.x_forwarded_host && !have_fwd_host && !ops.removes(b"x-forwarded-host") {
        if let Some(h) = req.host_range() {
            extra.put_slice(b"X-Forwarded-Host: ");
            extra.put_slice(&buf[h.clone()]);
            extra.put_slice(b"\r\n");
        }
    }
    if let Some(id) = ctx.generated_request_id.filter(|_| !ops.removes(b"x-request-id")) {
        extra.put_slice(b"X-Request-Id: ");
        extra.put_slice(id);
        extra.put_slice(b"\r\n");
    }
    extra.put_slice(&ops.lines);
    extra.put_slice(ctx.claim_lines);
    if let Some(t) = ctx.trace {
        crate::trace::put(t, extra);
    }
    extra.put_slice(b"\r\n");
    out.push(extra.split().freeze());
}

/// How the response head should end the exchange for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientConn {
    KeepAlive,
    Close,
    Upgrade,
}

/// How a response head is turned for the client.
pub struct ResponseCtx<'a> {
    /// The client's HTTP/1.x minor version.
    pub client_minor: u8,
    pub conn: ClientConn,
    /// The body is being decoded for an HTTP/1.0 client, so Transfer-Encoding is dropped.
    pub dechunk: bool,
    /// The route's response header changes (none for interim and 101 responses).
    pub headers: &'a HeaderOps,
    /// Lines added for this response only (the rate-limit fields), or empty.
    pub extra_lines: &'a [u8],
}

static NO_HEADER_OPS: HeaderOps = HeaderOps { remove: Vec::new(), lines: Bytes::new() };

impl ResponseCtx<'static> {
    /// An interim (1xx) or 101 response: relayed without the route's header changes.
    pub fn plain(conn: ClientConn) -> Self {
        ResponseCtx { client_minor: 1, conn, dechunk: false, headers: &NO_HEADER_OPS, extra_lines: b"" }
    }
}

/// Build the response head sent to the client.
pub fn forward_response_head(
    head: &Bytes,
    resp: &ResponseHead,
    ctx: &ResponseCtx<'_>,
    extra: &mut BytesMut,
    out: &mut Vec<Bytes>,
) {
    let (client_minor, conn, dechunk, ops) = (ctx.client_minor, ctx.conn, ctx.dechunk, ctx.headers);
    let open = if resp.minor == 1 {
        resp.status_start..resp.status_line_end
    } else {
        out.push(Bytes::from_static(b"HTTP/1.1 "));
        out.push(head.slice(resp.status_rest.clone()));
        resp.status_line_end..resp.status_line_end
    };
    let buf: &[u8] = head;
    let lines = resp.headers.iter().map(|h| {
        let keep = match h.kind {
            HeaderKind::HopByHop => false,
            HeaderKind::Other if ops.removes(&buf[h.name.clone()]) => false,
            HeaderKind::Upgrade => conn == ClientConn::Upgrade,
            // Framing fields stay even if Connection names them: the body is framed by them.
            HeaderKind::TransferEncoding => !dechunk,
            HeaderKind::ContentLength => true,
            _ => !resp.named_by_connection(buf, &h.name),
        };
        (h.line.clone(), keep)
    });
    push_kept_lines(head, lines, open, out, |k| k);
    extra.reserve(64);
    match conn {
        ClientConn::Upgrade => extra.put_slice(b"Connection: upgrade\r\n"),
        ClientConn::Close => extra.put_slice(b"Connection: close\r\n"),
        ClientConn::KeepAlive if client_minor == 0 => extra.put_slice(b"Connection: keep-alive\r\n"),
        ClientConn::KeepAlive => {}
    }
    extra.put_slice(&ops.lines);
    extra.put_slice(ctx.extra_lines);
    extra.put_slice(b"\r\n");
    out.push(extra.split().freeze());
}

/// A response ringgate answers itself: short text body naming the request id.
/// `head_only`: the request was HEAD, so the body is announced (Content-Length) but not sent.
pub fn canned(
    status: u16,
    reason: &str,
    request_id: &[u8],
    close: bool,
    head_only: bool,
    extra_headers: &str,
) -> Bytes {
    let id = String::from_utf8_lossy(request_id);
    let body = format!("{status} {reason} (request id {id})\n");
    let conn = if close { "Connection: close\r\n" } else { "" };
    let mut s = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nX-Request-Id: {id}\r\n{extra_headers}{conn}\r\n",
        body.len()
    );
    if !head_only {
        s.push_str(&body);
    }
    Bytes::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse::{parse_request, HeadLimits};

    fn concat(parts: &[Bytes]) -> String {
        parts.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect()
    }

    #[test]
    fn hop_by_hop_dropped_and_forwarded_added() {
        let raw = Bytes::from_static(
            b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: 5\r\nAccept: a\r\nTE: trailers\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n",
        );
        let mut req = RequestHead::default();
        assert!(parse_request(&raw, &HeadLimits::default(), &mut req).expect("valid"));
        let ctx = ForwardCtx {
            client_ip: b"10.0.0.1",
            trusted_peer: false,
            x_forwarded_for: true,
            x_forwarded_proto: true,
            x_forwarded_host: true,
            generated_request_id: Some(b"abc"),
            manage_request_id: true,
            upstream_authority: b"up:80",
            proto: b"http",
            target: None,
            headers: &HeaderOps::default(),
            claim_lines: b"",
            trace: None,
        };
        let mut extra = BytesMut::new();
        let mut out = Vec::new();
        forward_request_head(&raw, &req, &ctx, &mut extra, &mut out);
        let s = concat(&out);
        assert_eq!(
            s,
            "GET /x HTTP/1.1\r\nHost: h\r\nAccept: a\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Request-Id: abc\r\n\r\n"
        );
        // Host and Accept are not adjacent in the source, so: request line+Host, Accept, added.
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn http10_absolute_form_rewritten() {
        let raw = Bytes::from_static(b"GET http://h/p?q HTTP/1.1\r\nHost: h\r\n\r\n");
        let mut req = RequestHead::default();
        assert!(parse_request(&raw, &HeadLimits::default(), &mut req).expect("valid"));
        let ctx = ForwardCtx {
            client_ip: b"1.2.3.4",
            trusted_peer: true,
            x_forwarded_for: false,
            x_forwarded_proto: false,
            x_forwarded_host: false,
            generated_request_id: None,
            manage_request_id: true,
            upstream_authority: b"up:80",
            proto: b"http",
            target: None,
            headers: &HeaderOps::default(),
            claim_lines: b"",
            trace: None,
        };
        let mut extra = BytesMut::new();
        let mut out = Vec::new();
        forward_request_head(&raw, &req, &ctx, &mut extra, &mut out);
        assert_eq!(concat(&out), "GET /p?q HTTP/1.1\r\nHost: h\r\n\r\n");
    }
}
