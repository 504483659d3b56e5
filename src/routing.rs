//! From a parsed request head to its route (sans-io): normalize the path, look it up in the
//! snapshot's router, and work out what goes upstream (the target, rewritten) or what is answered
//! directly (`respond`, `redirect`). The pipeline calls `route` once per request.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ProxyError;
use crate::http::parse::RequestHead;
use crate::http::reason;
use crate::route::{Action, Route, Vars};
use crate::router::normalize::normalize;
use crate::router::{strip_port, Facts, Lookup, Params};
use crate::shared::Snapshot;

/// The request as the router's conditions see it.
struct ReqFacts<'a> {
    head: &'a [u8],
    req: &'a RequestHead,
    query: Option<&'a [u8]>,
}

impl Facts for ReqFacts<'_> {
    fn method(&self) -> &[u8] {
        &self.head[self.req.method.clone()]
    }

    /// The first field line of that name decides (so `x: 1` and `x: 2` conditions exclude each other
    /// even when a request repeats the field).
    fn header(&self, name: &[u8], value: Option<&[u8]>) -> bool {
        let first = self.req.headers.iter().find(|h| self.head[h.name.clone()].eq_ignore_ascii_case(name));
        first.is_some_and(|h| value.is_none_or(|v| v == &self.head[h.value.clone()]))
    }

    /// The first parameter of that name decides, as for headers.
    fn query(&self, name: &[u8], value: Option<&[u8]>) -> bool {
        let Some(q) = self.query else { return false };
        let first = q.split(|&b| b == b'&').find_map(|pair| {
            let (n, v) = match memchr::memchr(b'=', pair) {
                Some(e) => (&pair[..e], &pair[e + 1..]),
                None => (pair, &b""[..]),
            };
            (n == name).then_some(v)
        });
        first.is_some_and(|v| value.is_none_or(|x| x == v))
    }
}

/// A routed request.
pub struct Routed<'s> {
    pub route: &'s Route,
    /// Its index in the snapshot's routes.
    pub index: usize,
    /// Path and query to send upstream when they differ from the client's.
    pub target: Option<Bytes>,
    /// A complete direct answer (head, without the final CRLF) and its body.
    pub direct: Option<(Bytes, Bytes)>,
}

/// Route the request whose head is `head` (parsed in `req`). `norm` is a per-core buffer for the
/// normalized path, `extra` the per-request buffer the built bytes are split off.
pub fn route<'s>(
    snap: &'s Snapshot,
    head: &[u8],
    req: &RequestHead,
    norm: &mut Vec<u8>,
    params: &mut Params,
    extra: &mut BytesMut,
) -> Result<Routed<'s>, ProxyError> {
    extra.clear();
    let target = &head[req.path.clone()];
    // RFC 9112 §3.2 / RFC 3986 §3.5: a request-target has no fragment, and `\` is no URI character;
    // upstreams that drop a `#...` or read `\` as `/` would see another path than the one routed.
    if memchr::memchr2(b'#', b'\\', target).is_some() {
        return Err(ProxyError::BadPath);
    }
    let (raw_path, query) = match memchr::memchr(b'?', target) {
        Some(q) => (&target[..q], Some(&target[q + 1..])),
        None => (target, None),
    };
    // `*` (OPTIONS) and an empty absolute-form path are routed as `/` and sent as they came.
    let origin = raw_path.first() == Some(&b'/');
    let raw_path: &[u8] = if origin { raw_path } else { b"/" };
    let n = normalize(raw_path, norm).map_err(|_| ProxyError::BadPath)?;
    let path: &[u8] = if n.rewritten { norm } else { raw_path };
    let host = req.host_range().map(|r| &head[r.clone()]);
    let facts = ReqFacts { head, req, query };
    let index = match snap.router.lookup(host, path, &facts, params) {
        Lookup::Found(i) => i as usize,
        Lookup::NotFound => return Err(ProxyError::NoRoute),
        Lookup::MethodNotAllowed => {
            return Err(ProxyError::MethodNotAllowed(snap.router.allowed(host, path, &facts).join(", ")))
        }
    };
    let route = &snap.routes[index];
    if n.encoded_slash && !route.allow_encoded_slash {
        return Err(ProxyError::BadPath);
    }
    let vars = Vars { path, params, host: host.map(strip_port).unwrap_or(b""), query };
    let mut routed = Routed { route, index, target: None, direct: None };
    match &route.action {
        Action::Proxy { rewrite, .. } => {
            // `*` and an empty absolute-form path are sent as they came: no rewrite applies.
            if origin && (rewrite.apply(&vars, extra) || n.rewritten) {
                if extra.is_empty() {
                    extra.put_slice(path);
                }
                if let Some(q) = query {
                    extra.put_u8(b'?');
                    extra.put_slice(q);
                }
                routed.target = Some(extra.split().freeze());
            }
        }
        Action::Respond(r) => routed.direct = Some((r.head.clone(), r.body.clone())),
        Action::Health => {
            let (status, body) = crate::core::readiness();
            extra.put_slice(if status == 200 {
                b"HTTP/1.1 200 OK\r\n"
            } else {
                b"HTTP/1.1 503 Service Unavailable\r\n"
            });
            extra.put_slice(b"Content-Type: text/plain\r\nCache-Control: no-store\r\nContent-Length: ");
            put_decimal(extra, body.len());
            extra.put_slice(b"\r\n");
            extra.put_slice(&route.response_headers.lines);
            routed.direct = Some((extra.split().freeze(), Bytes::from_static(body.as_bytes())));
        }
        Action::Redirect(r) => {
            extra.put_slice(b"HTTP/1.1 ");
            put_decimal(extra, usize::from(r.status));
            extra.put_u8(b' ');
            extra.put_slice(reason(r.status).as_bytes());
            extra.put_slice(b"\r\n");
            // response_headers may remove or set (replace) Location.
            if !route.response_headers.removes(b"location") {
                extra.put_slice(b"Location: ");
                r.location.render_location(&vars, extra);
                if r.keep_query && !r.location.mentions_query() {
                    if let Some(q) = query {
                        extra.put_u8(if r.location.has_literal(b'?') { b'&' } else { b'?' });
                        extra.put_slice(q);
                    }
                }
                extra.put_slice(b"\r\n");
            }
            extra.put_slice(b"Content-Length: 0\r\n");
            extra.put_slice(&route.response_headers.lines);
            routed.direct = Some((extra.split().freeze(), Bytes::new()));
        }
    }
    Ok(routed)
}

/// Write `n` in decimal (no allocation on the request path).
fn put_decimal(out: &mut BytesMut, n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}
