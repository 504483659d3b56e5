//! Validation of `[[routes]]`: patterns, hosts, methods, conditions, the one action and its
//! header changes, then the compiled router (whose tie check names both routes).

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use toml::Spanned;

use super::file::{RawCond, RawHeaderOps, RawRoute};
use super::{Checker, RouteTimeouts, UpstreamCfg};
use crate::http::parse::HeaderKind;
use crate::http::reason;
use crate::route::{Action, HeaderOps, Redirect, Respond, Rewrite, Route, Template};
use crate::router::{self, Cond, CondKind, HostPattern, MethodSet, Pattern, RouteSpec, Router};

/// Largest `respond` body.
const MAX_RESPOND_BODY: usize = 64 * 1024;

/// Fields no header rule may touch: framing and hop-by-hop (RFC 9110 §7.6.1, RFC 9112 §6), as
/// the parser classifies them.
fn managed(name: &str) -> bool {
    matches!(
        crate::http::parse::classify(name.as_bytes()),
        HeaderKind::HopByHop | HeaderKind::Upgrade | HeaderKind::ContentLength | HeaderKind::TransferEncoding
    )
}

fn token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(crate::http::parse::is_tchar)
}

fn header_ops(c: &mut Checker, raw: &Option<Spanned<RawHeaderOps>>, key: &str, request: bool) -> HeaderOps {
    let Some(raw) = raw else { return HeaderOps::default() };
    let span = Some(raw.span());
    let raw = raw.get_ref();
    let mut ops = HeaderOps::default();
    let mut lines = BytesMut::new();
    let check_name = |c: &mut Checker, n: &str| -> bool {
        let lower = n.to_ascii_lowercase();
        if !token(n) {
            c.err(span.clone(), key, format!("{n:?} is not a header name"));
            false
        } else if managed(n) || (!request && lower == "date") {
            c.err(
                span.clone(),
                key,
                format!("{n:?} is managed by ringgate (framing or hop-by-hop) and cannot be changed"),
            );
            false
        } else {
            true
        }
    };
    let line = |c: &mut Checker, n: &str, v: &str, lines: &mut BytesMut| {
        if v.bytes().any(|b| (b.is_ascii_control() && b != b'\t') || b == 0x7f) {
            c.err(span.clone(), key, format!("value of {n:?} holds control characters"));
            return;
        }
        lines.put_slice(n.as_bytes());
        lines.put_slice(b": ");
        lines.put_slice(v.trim().as_bytes());
        lines.put_slice(b"\r\n");
    };
    for n in &raw.remove {
        if request && n.eq_ignore_ascii_case("host") {
            c.err(span.clone(), key, "Host cannot be removed (HTTP/1.1 requires it; set it instead)");
            continue;
        }
        if check_name(c, n) {
            ops.remove.push(n.to_ascii_lowercase().into_bytes().into());
        }
    }
    for (n, v) in &raw.set {
        if check_name(c, n) {
            ops.remove.push(n.to_ascii_lowercase().into_bytes().into());
            line(c, n, v, &mut lines);
        }
    }
    for (n, v) in &raw.add {
        if check_name(c, n) {
            line(c, n, v, &mut lines);
        }
    }
    ops.lines = lines.freeze();
    ops
}

fn conds(c: &mut Checker, raw: &[RawCond], kind: CondKind, key: &str, out: &mut Vec<Cond>) {
    for (j, rc) in raw.iter().enumerate() {
        let n = rc.name.get_ref();
        let ok = match kind {
            CondKind::Header => token(n),
            CondKind::Query => !n.is_empty() && !n.contains(['&', '=', '#', ' ']),
        };
        if !ok {
            c.err(Some(rc.name.span()), format!("{key}[{j}].name"), format!("{n:?} is not a valid name"));
            continue;
        }
        let name = if kind == CondKind::Header { n.to_ascii_lowercase() } else { n.clone() };
        out.push(Cond {
            kind,
            name: name.into_bytes().into(),
            value: rc.value.as_ref().map(|v| v.get_ref().as_bytes().into()),
        });
    }
}

struct Checked {
    route: Route,
    explicit_name: bool,
}

fn one_route(
    c: &mut Checker,
    i: usize,
    sr: &Spanned<RawRoute>,
    upstreams: &[UpstreamCfg],
    default_body: u64,
) -> Option<Checked> {
    let r = sr.get_ref();
    let line = c.line_of(sr.span());
    let here = Some(sr.span());
    let k = |f: &str| format!("routes[{i}].{f}");
    let before = c.issues.len();

    // Pattern.
    let (pattern, pattern_text): (Option<Pattern>, String) = match (&r.path, &r.prefix) {
        (Some(p), None) => {
            (router::parse_path(p.get_ref()).map_err(|e| c.err(Some(p.span()), k("path"), e)).ok(), p.get_ref().clone())
        }
        (None, Some(p)) => (
            router::parse_prefix(p.get_ref()).map_err(|e| c.err(Some(p.span()), k("prefix"), e)).ok(),
            format!("{}*", p.get_ref()),
        ),
        (Some(_), Some(_)) => {
            c.err(here.clone(), format!("routes[{i}]"), "has both path and prefix (keep one)");
            (None, String::new())
        }
        (None, None) => {
            c.err(here.clone(), format!("routes[{i}]"), "has neither path nor prefix (add path = \"/...\")");
            (None, String::new())
        }
    };
    let host = match &r.host {
        None => HostPattern::Any,
        Some(h) => HostPattern::parse(h.get_ref()).unwrap_or_else(|e| {
            c.err(Some(h.span()), k("host"), e);
            HostPattern::Any
        }),
    };
    let methods = r.methods.as_ref().and_then(|ms| {
        if ms.is_empty() {
            c.err(here.clone(), k("methods"), "empty list (remove the key to allow any method)");
            return None;
        }
        MethodSet::parse(ms.iter().map(|m| m.get_ref().as_str()))
            .map_err(|e| c.err(Some(ms[0].span()), k("methods"), e))
            .ok()
    });
    let mut cs = Vec::new();
    // Keys are formatted only when there is something to check (10,000 routes load in one reload).
    if !r.match_headers.is_empty() {
        conds(c, &r.match_headers, CondKind::Header, &k("match_headers"), &mut cs);
    }
    if !r.match_query.is_empty() {
        conds(c, &r.match_query, CondKind::Query, &k("match_query"), &mut cs);
    }

    let names = pattern.as_ref().map(|p| p.names.clone()).unwrap_or_default();
    let template = |c: &mut Checker, t: &Spanned<String>, key: String| {
        Template::parse(t.get_ref(), &names).map_err(|e| c.err(Some(t.span()), key, e)).ok()
    };

    // The one action.
    let actions =
        [r.upstream.is_some(), r.respond.is_some(), r.redirect.is_some(), r.health].iter().filter(|x| **x).count();
    if actions != 1 {
        c.err(
            here.clone(),
            format!("routes[{i}]"),
            if actions == 0 {
                "no action (add upstream = NAME, respond = {...}, redirect = {...} or health = true)"
            } else {
                "more than one action (keep one of upstream, respond, redirect, health)"
            },
        );
    }
    if r.upstream.is_none() {
        let proxy_only = [
            ("rewrite", r.rewrite.is_some()),
            ("max_body_bytes", r.max_body_bytes.is_some()),
            ("connect_timeout", r.connect_timeout.is_some()),
            ("response_timeout", r.response_timeout.is_some()),
            ("idle_timeout", r.idle_timeout.is_some()),
            ("total_timeout", r.total_timeout.is_some()),
        ];
        for (key, set) in proxy_only {
            if set {
                c.err(here.clone(), k(key), "only applies to a route with an upstream (remove it)");
            }
        }
    }
    let response_headers = match r.response_headers {
        Some(_) => header_ops(c, &r.response_headers, &k("response_headers"), false),
        None => HeaderOps::default(),
    };
    let request_headers = match r.request_headers {
        Some(_) => header_ops(c, &r.request_headers, &k("request_headers"), true),
        None => HeaderOps::default(),
    };
    let dur = |c: &mut Checker, v: &Option<Spanned<String>>, f: &str, d: Duration| match v {
        Some(_) => c.duration(v, &k(f), d),
        None => d,
    };
    let action = if let Some(u) = &r.upstream {
        let upstream = match upstreams.iter().position(|x| &x.name == u.get_ref()) {
            Some(x) => x,
            None => {
                let known: Vec<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
                c.err(
                    Some(u.span()),
                    k("upstream"),
                    format!("no upstream named {:?} (defined: {known:?})", u.get_ref()),
                );
                0
            }
        };
        let rewrite = match &r.rewrite {
            None => Rewrite::None,
            Some(rw) => {
                let span = Some(rw.span());
                let rw = rw.get_ref();
                let set = [&rw.strip_prefix, &rw.replace_prefix, &rw.template].iter().filter(|x| x.is_some()).count();
                if set != 1 {
                    c.err(span, k("rewrite"), "give exactly one of strip_prefix, replace_prefix, template");
                    Rewrite::None
                } else if let Some(bad) = [&rw.strip_prefix, &rw.replace_prefix]
                    .into_iter()
                    .flatten()
                    .find(|p| router::path_text(p.get_ref()).is_err())
                {
                    c.err(
                        Some(bad.span()),
                        k("rewrite"),
                        format!(
                            "{:?} must start with '/' and hold only visible ASCII, no '?', '#' or '\\'",
                            bad.get_ref()
                        ),
                    );
                    Rewrite::None
                } else if let Some(p) = &rw.strip_prefix {
                    let literal = pattern.as_ref().and_then(|p| match p.pieces.first() {
                        Some(router::Piece::Static(s)) => Some(s.clone()),
                        _ => None,
                    });
                    if !p.get_ref().starts_with('/') || !literal.is_some_and(|l| l.starts_with(p.get_ref().as_bytes()))
                    {
                        c.err(
                            Some(p.span()),
                            k("rewrite.strip_prefix"),
                            format!("{:?} must start the route's path or prefix", p.get_ref()),
                        );
                    }
                    Rewrite::StripPrefix(p.get_ref().as_bytes().into())
                } else if let Some(p) = &rw.replace_prefix {
                    match &r.prefix {
                        Some(pre) => {
                            Rewrite::ReplacePrefix { len: pre.get_ref().len(), with: p.get_ref().as_bytes().into() }
                        }
                        None => {
                            c.err(
                                Some(p.span()),
                                k("rewrite.replace_prefix"),
                                "only for prefix routes (use template with path)",
                            );
                            Rewrite::None
                        }
                    }
                } else if let Some(t) = &rw.template {
                    if !t.get_ref().starts_with('/') && !t.get_ref().starts_with("{$path}") {
                        c.err(Some(t.span()), k("rewrite.template"), "must start with '/'");
                    }
                    if t.get_ref().contains('?') || t.get_ref().contains("{$query}") {
                        c.err(
                            Some(t.span()),
                            k("rewrite.template"),
                            "builds the path only: the request's query is always sent after it as it came",
                        );
                    }
                    template(c, t, k("rewrite.template")).map(Rewrite::Template).unwrap_or_default()
                } else {
                    Rewrite::None
                }
            }
        };
        let total = dur(c, &r.total_timeout, "total_timeout", Duration::ZERO);
        let timeouts = RouteTimeouts {
            connect: dur(c, &r.connect_timeout, "connect_timeout", Duration::from_secs(2)),
            response: dur(c, &r.response_timeout, "response_timeout", Duration::from_secs(30)),
            idle: dur(c, &r.idle_timeout, "idle_timeout", Duration::from_secs(60)),
            total: (!total.is_zero()).then_some(total),
        };
        let max_body_bytes = match r.max_body_bytes {
            Some(_) => c.int(&r.max_body_bytes, &k("max_body_bytes"), default_body as i64, 0, i64::MAX) as u64,
            None => default_body,
        };
        Action::Proxy { upstream, rewrite, max_body_bytes, timeouts }
    } else if let Some(rs) = &r.respond {
        let span = rs.span();
        let rs = rs.get_ref();
        let status = *rs.status.get_ref();
        if !(200..=599).contains(&status) {
            c.err(Some(rs.status.span()), k("respond.status"), format!("{status} is not a final status (200..=599)"));
        }
        if rs.body.len() > MAX_RESPOND_BODY {
            c.err(Some(span.clone()), k("respond.body"), format!("longer than {MAX_RESPOND_BODY} bytes"));
        }
        let status = status.clamp(200, 599) as u16;
        let ct = rs.content_type.as_deref().unwrap_or("text/plain; charset=utf-8");
        if ct.bytes().any(|b| b.is_ascii_control()) {
            c.err(Some(span), k("respond.content_type"), "holds control characters");
        }
        let body = if crate::route::bodiless(status) { String::new() } else { rs.body.clone() };
        let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        if !crate::route::bodiless(status) {
            // response_headers may remove or set (replace) the content type.
            if !response_headers.removes(b"content-type") {
                head.push_str(&format!("Content-Type: {ct}\r\n"));
            }
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        let mut head = head.into_bytes();
        head.extend_from_slice(&response_headers.lines);
        Action::Respond(Respond { status, head: head.into(), body: body.into_bytes().into() })
    } else if let Some(rd) = &r.redirect {
        let rd = rd.get_ref();
        let status = rd.status.as_ref().map_or(302, |s| *s.get_ref());
        if ![301, 302, 303, 307, 308].contains(&status) {
            let span = rd.status.as_ref().map(|s| s.span());
            c.err(span, k("redirect.status"), format!("{status} is not a redirect status (301, 302, 303, 307, 308)"));
        }
        let location = template(c, &rd.location, k("redirect.location")).unwrap_or_default();
        Action::Redirect(Redirect { status: status as u16, location, keep_query: rd.keep_query.unwrap_or(true) })
    } else if r.health {
        Action::Health
    } else {
        return None;
    };

    if c.issues.len() > before {
        return None;
    }
    let pattern = pattern?;
    let explicit_name = r.name.is_some();
    let name = match &r.name {
        Some(n) if n.get_ref().trim().is_empty() => {
            c.err(Some(n.span()), k("name"), "empty name");
            return None;
        }
        Some(n) => n.get_ref().clone(),
        None => {
            let h = match &host {
                HostPattern::Any => String::new(),
                HostPattern::Exact(h) => h.clone(),
                HostPattern::Wildcard(s) => format!("*{s}"),
            };
            let mut n = format!("{h}{pattern_text}");
            if let Some(ms) = &r.methods {
                let list: Vec<&str> = ms.iter().map(|m| m.get_ref().as_str()).collect();
                n.push_str(&format!(" [{}]", list.join(",")));
            }
            n
        }
    };
    Some(Checked {
        route: Route {
            name: name.clone(),
            line,
            spec: RouteSpec { name, host, pieces: pattern.pieces, methods, conds: cs },
            allow_encoded_slash: r.allow_encoded_slash,
            action,
            request_headers,
            response_headers,
            auth: None,
            rate_limits: Vec::new(),
            server_timing: r.server_timing,
            metrics_key: 0,
        },
        explicit_name,
    })
}

/// Validate every route and compile the router; on errors the router is empty.
pub(super) fn validate_routes(
    c: &mut Checker,
    raw: &[Spanned<RawRoute>],
    upstreams: &[UpstreamCfg],
    default_body: u64,
    policies: &[std::sync::Arc<crate::auth::AuthPolicy>],
    defined: &[Spanned<super::file::RawAuth>],
    limits: (&[std::sync::Arc<crate::ratelimit::RateLimitPolicy>], &[Spanned<super::file::RawRateLimit>]),
) -> (Vec<Route>, Router) {
    if raw.is_empty() {
        c.err(None, "routes", "no route configured (add a [[routes]] table with prefix = \"/\" and upstream = NAME)");
    }
    let mut routes: Vec<Route> = Vec::new();
    let mut spans: Vec<Range<usize>> = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (i, sr) in raw.iter().enumerate() {
        let Some(mut ch) = one_route(c, i, sr, upstreams, default_body) else { continue };
        super::auth::route_auth(c, i, sr, policies, defined, &mut ch.route);
        super::ratelimit::route_limits(c, i, sr, limits.0, limits.1, &mut ch.route);
        if let Some(&prev) = seen.get(&ch.route.name) {
            if ch.explicit_name {
                c.err(
                    Some(sr.span()),
                    format!("routes[{i}].name"),
                    format!(
                        "name {:?} is already used by the route on line {} (names are unique)",
                        ch.route.name, routes[prev].line
                    ),
                );
                continue;
            }
            let mut n = 2;
            while seen.contains_key(&format!("{} #{n}", ch.route.name)) {
                n += 1;
            }
            ch.route.name = format!("{} #{n}", ch.route.name);
            ch.route.spec.name = ch.route.name.clone();
        }
        ch.route.metrics_key = crate::metrics::name_key("route", &ch.route.name);
        seen.insert(ch.route.name.clone(), routes.len());
        spans.push(sr.span());
        routes.push(ch.route);
    }
    if !c.issues.is_empty() {
        return (routes, Router::default());
    }
    match Router::build(routes.iter().map(|r| &r.spec)) {
        Ok(router) => (routes, router),
        Err(ties) => {
            for t in ties {
                let (a, b) = (&routes[t.route], &routes[t.other]);
                c.err(
                    Some(spans[t.route].clone()),
                    "routes",
                    format!(
                        "route {:?} ties with route {:?} (line {}): same host and path pattern, overlapping methods and as many conditions, so file order would decide (add a condition or method to one, or remove one)",
                        a.name, b.name, b.line
                    ),
                );
            }
            (routes, Router::default())
        }
    }
}
