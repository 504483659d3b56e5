//! The end of a request: what it did goes into the worker's metrics and, when configured, the
//! access log. Called once per answered request by `http::conn`, after the answer is written.

use std::time::Instant;

use crate::core::{Scratch, Worker};
use crate::http::conn::ClientConn;
use crate::metrics::{method_class, name_key};
use crate::shared::Snapshot;

/// The label of requests that matched no route (404, 400 on a bad path, 405...).
const UNMATCHED: &str = "(unmatched)";

pub fn finish(w: &Worker, snap: &Snapshot, c: &ClientConn, s: &Scratch) {
    let o = &s.obs;
    if o.start.is_none() || o.status == 0 {
        return;
    }
    let end = Instant::now();
    let t = o.timing(end);
    let route = o.route.and_then(|i| snap.routes.get(i));
    let name = route.map_or(UNMATCHED, |r| r.name.as_str());
    let key = route.map_or_else(|| name_key("route", UNMATCHED), |r| r.metrics_key);
    let head = o.head.as_deref().unwrap_or(b"");
    let method = head.get(s.req.method.clone()).unwrap_or(b"");
    w.metrics.borrow_mut().request(key, name, method_class(method), o.status, o.bytes_in, o.bytes_out, &t);
    if !crate::accesslog::enabled() {
        return;
    }
    let target = head.get(s.req.path.clone()).unwrap_or(b"");
    let (path, query) = match target.iter().position(|b| *b == b'?') {
        Some(q) => (&target[..q], Some(&target[q + 1..])),
        None => (target, None),
    };
    let entry = crate::accesslog::Entry {
        client: &c.client_ip,
        method,
        path,
        query,
        status: o.status,
        bytes_in: o.bytes_in,
        bytes_out: o.bytes_out,
        timing: t,
        route: name,
        upstream: o.upstream.map(|(_, a)| a),
        request_id: &c.rid,
        tls: c.tls_version.or(if c.stream.is_tls() { Some("?") } else { None }),
        auth: o.auth,
        ratelimit: o.ratelimit,
        trace_id: o.trace_id.as_ref().map(|t| &t[..]),
        end,
    };
    w.log.borrow_mut().push(&entry);
}
