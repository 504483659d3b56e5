//! What a matched route does: proxy (with a path rewrite), answer directly, or redirect; and the
//! header changes it makes each way. Built once per snapshot from the config; the request path
//! only renders into per-core buffers.

use bytes::{BufMut, Bytes, BytesMut};

use crate::config::RouteTimeouts;
use crate::router::{Params, RouteSpec};

/// One piece of a template (`/u/{id}`, `https://{$host}{$path}`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(Box<[u8]>),
    Param(usize),
    Host,
    Path,
    Query,
}

/// A string with `{param}`, `{$host}`, `{$path}` and `{$query}` holes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// What a template is rendered from.
pub struct Vars<'a> {
    /// The normalized path, which parameter ranges index.
    pub path: &'a [u8],
    pub params: &'a Params,
    /// The request host without its port.
    pub host: &'a [u8],
    /// The query without its `?` (None: the target had no `?`).
    pub query: Option<&'a [u8]>,
}

impl Template {
    /// Parse against the route's parameter names.
    pub fn parse(s: &str, names: &[String]) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').map(|c| open + c).ok_or_else(|| format!("{s:?}: '{{' without '}}'"))?;
            if open > 0 {
                parts.push(Part::Lit(rest.as_bytes()[..open].into()));
            }
            let name = &rest[open + 1..close];
            parts.push(match name {
                "$host" => Part::Host,
                "$path" => Part::Path,
                "$query" => Part::Query,
                n => match names.iter().position(|x| x == n.trim_start_matches('*')) {
                    Some(i) => Part::Param(i),
                    None => {
                        return Err(format!(
                            "{s:?}: no parameter {n:?} in the route's path (parameters: {names:?}; also $host, $path, $query)"
                        ))
                    }
                },
            });
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("{s:?}: '}}' without '{{'"));
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.as_bytes().into()));
        }
        if s.bytes().any(|b| !b.is_ascii_graphic() || b == b'#' || b == b'\\') {
            return Err(format!(
                "{s:?}: no spaces, control characters, non-ASCII bytes, '#' or '\\' (percent-encode them)"
            ));
        }
        Ok(Template { parts })
    }

    /// Some literal part holds byte `b`.
    pub fn has_literal(&self, b: u8) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Lit(l) if l.contains(&b)))
    }

    pub fn mentions_query(&self) -> bool {
        self.parts.contains(&Part::Query)
    }

    /// Render a redirect target. Unless the template itself starts with `//`, leading slashes of
    /// the result collapse to one, so `GET //evil.example` through `{$path}` or `/{rest}` never
    /// becomes a protocol-relative `Location: //evil.example` (an open redirect).
    pub fn render_location(&self, v: &Vars<'_>, out: &mut BytesMut) {
        let start = out.len();
        self.render(v, out);
        if !matches!(self.parts.first(), Some(Part::Lit(l)) if l.starts_with(b"//")) {
            let slashes = out[start..].iter().take_while(|&&b| b == b'/').count();
            if slashes > 1 {
                // Keep the last slash and what follows, in place.
                let end = out.len();
                out.copy_within(start + slashes - 1..end, start);
                out.truncate(end - (slashes - 1));
            }
        }
    }

    pub fn render(&self, v: &Vars<'_>, out: &mut BytesMut) {
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.put_slice(l),
                Part::Param(i) => {
                    if let Some(r) = v.params.get(*i) {
                        out.put_slice(&v.path[r]);
                    }
                }
                Part::Host => out.put_slice(v.host),
                Part::Path => out.put_slice(v.path),
                Part::Query => {
                    if let Some(q) = v.query {
                        out.put_u8(b'?');
                        out.put_slice(q);
                    }
                }
            }
        }
    }
}

/// How the path sent upstream is made from the normalized one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Rewrite {
    #[default]
    None,
    /// Remove these leading bytes (an empty result becomes `/`).
    StripPrefix(Box<[u8]>),
    /// Replace the route's `prefix` (its length) with these bytes.
    ReplacePrefix {
        len: usize,
        with: Box<[u8]>,
    },
    Template(Template),
}

impl Rewrite {
    /// Write the new path (query excluded) into `out`; false: no rewrite, send the path as is.
    pub fn apply(&self, v: &Vars<'_>, out: &mut BytesMut) -> bool {
        match self {
            Rewrite::None => return false,
            Rewrite::StripPrefix(p) => {
                let rest = v.path.strip_prefix(&**p).unwrap_or(v.path);
                if !rest.starts_with(b"/") {
                    out.put_u8(b'/');
                }
                out.put_slice(rest);
            }
            Rewrite::ReplacePrefix { len, with } => {
                out.put_slice(with);
                out.put_slice(v.path.get(*len..).unwrap_or(b""));
            }
            Rewrite::Template(t) => t.render(v, out),
        }
        true
    }
}

/// Header changes one way: fields removed (by name, including those `set` replaces) and the
/// lines appended (`Name: value\r\n` each, prebuilt).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderOps {
    /// Lowercase names.
    pub remove: Vec<Box<[u8]>>,
    pub lines: Bytes,
}

impl HeaderOps {
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.lines.is_empty()
    }

    pub fn removes(&self, name: &[u8]) -> bool {
        self.remove.iter().any(|r| r.eq_ignore_ascii_case(name))
    }
}

/// A direct answer: status line and fields prebuilt (without Connection and the final CRLF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respond {
    pub status: u16,
    pub head: Bytes,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    pub status: u16,
    pub location: Template,
    pub keep_query: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Proxy {
        upstream: usize,
        rewrite: Rewrite,
        max_body_bytes: u64,
        timeouts: RouteTimeouts,
    },
    Respond(Respond),
    Redirect(Redirect),
    /// The readiness answer (`/readyz`), for balancers that probe the traffic port.
    Health,
}

/// A compiled route: how it is matched (for the router) and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    /// Config line it was defined on (for messages).
    pub line: usize,
    pub spec: RouteSpec,
    pub allow_encoded_slash: bool,
    pub action: Action,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// The route's JWT policy and scopes (None = no authentication).
    pub auth: Option<crate::auth::RouteAuth>,
    /// Rate-limit policies (indexes into the snapshot's), all checked in order.
    pub rate_limits: Vec<usize>,
    /// Send `Server-Timing` (gateway and upstream time) on proxied responses.
    pub server_timing: bool,
    /// `metrics::name_key` of the name (the per-core metrics' key), computed once.
    pub metrics_key: u64,
}

/// Whether a status's response carries no body (RFC 9110 §15.3.5, §15.4.5).
pub fn bodiless(status: u16) -> bool {
    status == 204 || status == 304
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_renders_params_and_builtins() {
        let names = vec!["id".to_string(), "rest".to_string()];
        let t = Template::parse("https://{$host}/u/{id}/{*rest}{$query}", &names).expect("ok");
        let mut p = Params::default();
        let r = crate::router::Router::build(&[crate::router::RouteSpec {
            name: "t".into(),
            host: crate::router::HostPattern::Any,
            pieces: crate::router::parse_path("/a/{id}/{*rest}").expect("p").pieces,
            methods: None,
            conds: vec![],
        }])
        .expect("ok");
        assert_eq!(
            r.lookup(None, b"/a/7/x/y", &crate::router::MethodOnly(b"GET"), &mut p),
            crate::router::Lookup::Found(0)
        );
        let mut out = BytesMut::new();
        t.render(&Vars { path: b"/a/7/x/y", params: &p, host: b"h.test", query: Some(b"q=1") }, &mut out);
        assert_eq!(&out[..], b"https://h.test/u/7/x/y?q=1");
        assert!(Template::parse("/{nope}", &names).is_err());
    }

    #[test]
    fn rewrites() {
        let p = Params::default();
        let v = |path: &'static [u8]| Vars { path, params: &p, host: b"", query: None };
        let mut out = BytesMut::new();
        assert!(Rewrite::StripPrefix((*b"/api").into()).apply(&v(b"/api/x"), &mut out));
        assert_eq!(&out.split()[..], b"/x");
        assert!(Rewrite::StripPrefix((*b"/api").into()).apply(&v(b"/api"), &mut out));
        assert_eq!(&out.split()[..], b"/");
        assert!(Rewrite::ReplacePrefix { len: 5, with: (*b"/v2/").into() }.apply(&v(b"/api/x"), &mut out));
        assert_eq!(&out.split()[..], b"/v2/x");
        assert!(!Rewrite::None.apply(&v(b"/x"), &mut out));
    }
}
