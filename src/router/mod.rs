//! The router: which route a request takes, by host, normalized path, method and conditions.
//!
//! Owns the compiled form of the route table (one radix trie per virtual host, see `trie`), the
//! precedence rules (docs/routing.md) and the load-time tie check. Knows nothing of actions: a
//! lookup answers a route index and the parameters' byte ranges, and allocates nothing.

pub mod normalize;
pub mod trie;

use trie::Trie;
pub use trie::{Params, Piece, MAX_PARAMS};

/// Longest host name looked up (RFC 1035 §2.3.4: 253 characters, plus a trailing dot).
const MAX_HOST: usize = 255;

/// Which hosts a route serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Any,
    /// Lowercase, no port, no trailing dot.
    Exact(String),
    /// The suffix after `*`, lowercase, starting with `.` (`*.example.com` → `.example.com`).
    Wildcard(String),
}

impl HostPattern {
    /// Parse a configured host: `example.com`, `*.example.com`, or `*` (any).
    pub fn parse(s: &str) -> Result<HostPattern, String> {
        let lower = s.trim().to_ascii_lowercase();
        if lower == "*" {
            return Ok(HostPattern::Any);
        }
        // One trailing dot (a fully qualified name) is ignored; `*.` is no host.
        let s = lower.strip_suffix('.').unwrap_or(&lower);
        let (wild, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let ok = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if !ok {
            return Err(format!(
                "{s:?} is not a host name (write \"api.example.com\" or \"*.example.com\"; no port, no scheme)"
            ));
        }
        Ok(if wild { HostPattern::Wildcard(format!(".{name}")) } else { HostPattern::Exact(name.to_string()) })
    }
}

/// Methods known by name; any other token is compared as bytes.
const KNOWN_METHODS: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"];

fn method_bit(m: &[u8]) -> u16 {
    KNOWN_METHODS.iter().position(|k| k.as_bytes() == m).map_or(0, |i| 1 << i)
}

const GET: u16 = 1;
const HEAD: u16 = 2;

/// A route's methods (case-sensitive, RFC 9110 §9.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MethodSet {
    mask: u16,
    other: Vec<Box<[u8]>>,
}

impl MethodSet {
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<MethodSet, String> {
        let mut set = MethodSet::default();
        for n in names {
            let valid = !n.is_empty() && n.bytes().all(crate::http::parse::is_tchar);
            if !valid {
                return Err(format!("{n:?} is not a method token"));
            }
            match method_bit(n.as_bytes()) {
                0 => set.other.push(n.as_bytes().into()),
                b => set.mask |= b,
            }
        }
        Ok(set)
    }

    fn overlaps(&self, o: &MethodSet) -> bool {
        self.mask & o.mask != 0 || self.other.iter().any(|m| o.other.contains(m))
    }

    fn contains(&self, bit: u16, m: &[u8]) -> bool {
        if bit != 0 {
            self.mask & bit != 0
        } else {
            self.other.iter().any(|o| &**o == m)
        }
    }

    fn names(&self, out: &mut Vec<String>) {
        for (i, k) in KNOWN_METHODS.iter().enumerate() {
            if self.mask & (1 << i) != 0 || (i == 1 && self.mask & GET != 0) {
                out.push(k.to_string());
            }
        }
        out.extend(self.other.iter().map(|o| String::from_utf8_lossy(o).into_owned()));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CondKind {
    Header,
    Query,
}

/// A condition on a request header (name case-insensitive) or query parameter (raw bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub kind: CondKind,
    /// Header names are stored lowercase.
    pub name: Box<[u8]>,
    /// None: present with any value.
    pub value: Option<Box<[u8]>>,
}

/// What the router asks of a request beyond host and path.
pub trait Facts {
    fn method(&self) -> &[u8];
    /// Some field `name` (lowercase) has exactly `value` (or exists, when None).
    fn header(&self, name: &[u8], value: Option<&[u8]>) -> bool;
    /// Some query parameter `name` has exactly `value` (or exists, when None).
    fn query(&self, name: &[u8], value: Option<&[u8]>) -> bool;
}

/// A request that has a method and nothing else (no headers, no query): for benches and tests.
pub struct MethodOnly(pub &'static [u8]);

impl Facts for MethodOnly {
    fn method(&self) -> &[u8] {
        self.0
    }
    fn header(&self, _: &[u8], _: Option<&[u8]>) -> bool {
        false
    }
    fn query(&self, _: &[u8], _: Option<&[u8]>) -> bool {
        false
    }
}

/// One route as the router sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    pub name: String,
    pub host: HostPattern,
    pub pieces: Vec<Piece>,
    /// None: any method.
    pub methods: Option<MethodSet>,
    pub conds: Vec<Cond>,
}

#[derive(Debug, Clone)]
struct Matcher {
    methods: Option<MethodSet>,
    conds: Vec<Cond>,
}

enum MethodFit {
    Yes,
    /// HEAD on a GET route: taken when no route of the same leaf names HEAD.
    HeadViaGet,
    No,
}

impl Matcher {
    fn conds_hold<F: Facts>(&self, f: &F) -> bool {
        self.conds.iter().all(|c| match c.kind {
            CondKind::Header => f.header(&c.name, c.value.as_deref()),
            CondKind::Query => f.query(&c.name, c.value.as_deref()),
        })
    }

    fn method_fit(&self, bit: u16, m: &[u8]) -> MethodFit {
        match &self.methods {
            None => MethodFit::Yes,
            Some(set) if set.contains(bit, m) => MethodFit::Yes,
            Some(set) if bit == HEAD && set.mask & GET != 0 => MethodFit::HeadViaGet,
            Some(_) => MethodFit::No,
        }
    }

    /// Whether one request could satisfy both routes' conditions.
    fn conds_exclusive(&self, o: &Matcher) -> bool {
        self.conds.iter().any(|a| {
            o.conds.iter().any(|b| {
                a.kind == b.kind && a.name == b.name && matches!((&a.value, &b.value), (Some(x), Some(y)) if x != y)
            })
        })
    }
}

#[derive(Debug, Clone, Default)]
struct VHost {
    /// Fully static exact paths → their leaf. Such a pattern, when it matches, is the most
    /// specific there is (static beats parameter and tail at every byte), so it is tried first
    /// with one hash lookup; the trie walk follows only if its routes refuse the request.
    statics: FxMap<u32>,
    trie: Trie,
    /// Route indices per trie leaf, more conditions first.
    leaves: Vec<Vec<u32>>,
}

type FxMap<V> = crate::hash::FxHashMap<Box<[u8]>, V>;

/// Two routes one request could both take: refused at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tie {
    /// Index of the later route, then of the earlier one it ties with.
    pub route: usize,
    pub other: usize,
}

/// The result of a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Found(u32),
    /// A route's path (and conditions) matched but not its methods: 405.
    MethodNotAllowed,
    NotFound,
}

/// A set of lengths 0..=255: which key lengths a host table holds, so a lookup hashes only
/// candidates that could be there.
#[derive(Clone, Copy, Default)]
struct Lengths([u64; 4]);

impl Lengths {
    fn insert(&mut self, n: usize) {
        if n <= MAX_HOST {
            self.0[n / 64] |= 1 << (n % 64);
        }
    }
    fn has(&self, n: usize) -> bool {
        n <= MAX_HOST && self.0[n / 64] & (1 << (n % 64)) != 0
    }
}

/// The compiled route table.
#[derive(Clone, Default)]
pub struct Router {
    exact: FxMap<VHost>,
    exact_lens: Lengths,
    wildcard: FxMap<VHost>,
    wildcard_lens: Lengths,
    any: Option<VHost>,
    matchers: Vec<Matcher>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Router({} routes, {} exact hosts, {} wildcard hosts)",
            self.matchers.len(),
            self.exact.len(),
            self.wildcard.len()
        )
    }
}

impl Router {
    /// Compile routes; every tie is reported.
    pub fn build<'a>(specs: impl IntoIterator<Item = &'a RouteSpec>) -> Result<Router, Vec<Tie>> {
        let mut r = Router::default();
        let mut ties = Vec::new();
        for (i, spec) in specs.into_iter().enumerate() {
            r.matchers.push(Matcher { methods: spec.methods.clone(), conds: spec.conds.clone() });
            let vh = match &spec.host {
                HostPattern::Any => r.any.get_or_insert_with(VHost::default),
                HostPattern::Exact(h) => {
                    r.exact_lens.insert(h.len());
                    r.exact.entry(h.as_bytes().into()).or_default()
                }
                HostPattern::Wildcard(s) => {
                    r.wildcard_lens.insert(s.len());
                    r.wildcard.entry(s.as_bytes().into()).or_default()
                }
            };
            let leaf = vh.trie.leaf_for(&spec.pieces) as usize;
            if let [Piece::Static(p)] = spec.pieces.as_slice() {
                vh.statics.insert(p.as_slice().into(), leaf as u32);
            }
            if vh.leaves.len() <= leaf {
                vh.leaves.resize_with(leaf + 1, Vec::new);
            }
            let me = &r.matchers[i];
            for &o in &vh.leaves[leaf] {
                let other = &r.matchers[o as usize];
                let methods_overlap = match (&me.methods, &other.methods) {
                    (Some(a), Some(b)) => a.overlaps(b),
                    _ => true,
                };
                if methods_overlap && me.conds.len() == other.conds.len() && !me.conds_exclusive(other) {
                    ties.push(Tie { route: i, other: o as usize });
                }
            }
            let list = &mut vh.leaves[leaf];
            let at =
                list.iter().position(|&o| r.matchers[o as usize].conds.len() < me.conds.len()).unwrap_or(list.len());
            list.insert(at, i as u32);
        }
        if ties.is_empty() {
            Ok(r)
        } else {
            Err(ties)
        }
    }

    pub fn len(&self) -> usize {
        self.matchers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.matchers.is_empty()
    }

    /// The virtual host for a request host (Host field value: port, case, trailing dot ignored).
    fn vhost(&self, host: Option<&[u8]>) -> Option<&VHost> {
        if let Some(h) = host {
            let h = strip_port(h);
            let h = h.strip_suffix(b".").unwrap_or(h);
            if !h.is_empty() && h.len() <= MAX_HOST && (!self.exact.is_empty() || !self.wildcard.is_empty()) {
                let mut buf: [u8; MAX_HOST];
                let lower: &[u8] = if h.iter().any(u8::is_ascii_uppercase) {
                    buf = [0u8; MAX_HOST];
                    let b = &mut buf[..h.len()];
                    b.copy_from_slice(h);
                    b.make_ascii_lowercase();
                    b
                } else {
                    h
                };
                if self.exact_lens.has(lower.len()) {
                    if let Some(v) = self.exact.get(lower) {
                        return Some(v);
                    }
                }
                if !self.wildcard.is_empty() {
                    // Longest suffix first; at least one byte must stand before it.
                    for i in (1..lower.len()).filter(|&i| lower[i] == b'.') {
                        if self.wildcard_lens.has(lower.len() - i) {
                            if let Some(v) = self.wildcard.get(&lower[i..]) {
                                return Some(v);
                            }
                        }
                    }
                }
            }
        }
        self.any.as_ref()
    }

    /// The route for a request: `path` is the normalized path (no query).
    pub fn lookup<F: Facts>(&self, host: Option<&[u8]>, path: &[u8], facts: &F, params: &mut Params) -> Lookup {
        let Some(vh) = self.vhost(host) else { return Lookup::NotFound };
        let m = facts.method();
        let bit = method_bit(m);
        let mut found = None;
        let mut method_miss = false;
        let mut visit = |leaf: u32, _: &Params| {
            let mut via_get = None;
            for &r in &vh.leaves[leaf as usize] {
                let matcher = &self.matchers[r as usize];
                if !matcher.conds_hold(facts) {
                    continue;
                }
                match matcher.method_fit(bit, m) {
                    MethodFit::Yes => {
                        found = Some(r);
                        return true;
                    }
                    MethodFit::HeadViaGet => {
                        via_get.get_or_insert(r);
                    }
                    MethodFit::No => method_miss = true,
                }
            }
            found = via_get;
            found.is_some()
        };
        let hit = !vh.statics.is_empty()
            && vh.statics.get(path).is_some_and(|&leaf| {
                params.clear();
                visit(leaf, params)
            });
        if !hit {
            vh.trie.find(path, params, &mut visit);
        }
        match found {
            Some(r) => Lookup::Found(r),
            None if method_miss => Lookup::MethodNotAllowed,
            None => Lookup::NotFound,
        }
    }

    /// For a 405: the methods of every route whose path and conditions match (off the hot path).
    pub fn allowed<F: Facts>(&self, host: Option<&[u8]>, path: &[u8], facts: &F) -> Vec<String> {
        let mut names = Vec::new();
        if let Some(vh) = self.vhost(host) {
            let mut params = Params::default();
            vh.trie.find(path, &mut params, &mut |leaf, _| {
                for &r in &vh.leaves[leaf as usize] {
                    let matcher = &self.matchers[r as usize];
                    if let (true, Some(set)) = (matcher.conds_hold(facts), &matcher.methods) {
                        set.names(&mut names);
                    }
                }
                false
            });
        }
        let mut out: Vec<String> = Vec::new();
        for n in KNOWN_METHODS.iter().map(|s| s.to_string()).chain(names.iter().cloned()) {
            if names.contains(&n) && !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }
}

/// A Host value without its port (`[v6]:port` keeps the brackets).
pub fn strip_port(h: &[u8]) -> &[u8] {
    if h.first() == Some(&b'[') {
        return match memchr::memchr(b']', h) {
            Some(e) => &h[..=e],
            None => h,
        };
    }
    // A plain scan: host values are short.
    match h.iter().rposition(|&b| b == b':') {
        Some(p) => &h[..p],
        None => h,
    }
}

/// A path pattern parsed: its pieces and its parameter names in order (a tail's name too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub pieces: Vec<Piece>,
    pub names: Vec<String>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parse `path = "..."`: static text, `{name}` as a whole segment, a final `{*name}`.
/// A path pattern's or prefix's text: starts with `/`, visible ASCII only, no query or fragment.
pub fn path_text(p: &str) -> Result<(), String> {
    if !p.starts_with('/') {
        return Err(format!("{p:?} must start with '/'"));
    }
    if p.bytes().any(|b| !b.is_ascii_graphic() || matches!(b, b'?' | b'#' | b'\\')) {
        return Err(format!(
            "{p:?} holds a space, control or non-ASCII byte, '?', '#' or '\\': it could never match (percent-encode, or use match_query for the query)"
        ));
    }
    Ok(())
}

/// Whether `p` is in the normal form requests are matched in (see `normalize`).
fn is_normal(p: &[u8]) -> bool {
    let mut out = Vec::new();
    matches!(normalize::normalize(p, &mut out), Ok(n) if !n.rewritten || out == p)
}

pub fn parse_path(p: &str) -> Result<Pattern, String> {
    path_text(p)?;
    let mut pieces = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut lit = Vec::new();
    let mut rest = p;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map(|c| open + c).ok_or_else(|| format!("{p:?}: '{{' without '}}'"))?;
        lit.extend_from_slice(&rest.as_bytes()[..open]);
        let inner = &rest[open + 1..close];
        let after = &rest[close + 1..];
        if lit.last() != Some(&b'/') {
            return Err(format!("{p:?}: a parameter must be a whole segment (put it right after '/')"));
        }
        let (tail, name) = match inner.strip_prefix('*') {
            Some(n) => (true, n),
            None => (false, inner),
        };
        if !valid_name(name) {
            return Err(format!("{p:?}: {inner:?} is not a parameter name (letters, digits, '_')"));
        }
        if names.iter().any(|n| n == name) {
            return Err(format!("{p:?}: parameter {name:?} appears twice"));
        }
        if tail && !after.is_empty() {
            return Err(format!("{p:?}: a catch-all {{*{name}}} must end the path"));
        }
        if !(tail || after.is_empty() || after.starts_with('/')) {
            return Err(format!("{p:?}: a parameter must be a whole segment (follow it with '/' or end the path)"));
        }
        pieces.push(Piece::Static(std::mem::take(&mut lit)));
        pieces.push(if tail { Piece::Tail } else { Piece::Param });
        names.push(name.to_string());
        rest = after;
    }
    if rest.contains('}') {
        return Err(format!("{p:?}: '}}' without '{{'"));
    }
    lit.extend_from_slice(rest.as_bytes());
    if !lit.is_empty() {
        pieces.push(Piece::Static(lit));
    }
    if names.len() > MAX_PARAMS {
        return Err(format!("{p:?}: more than {MAX_PARAMS} parameters"));
    }
    // Requests are matched after normalization: a pattern that is not normal could never match.
    let probe: String =
        p.split('/').map(|seg| if seg.starts_with('{') { "x" } else { seg }).collect::<Vec<_>>().join("/");
    if !is_normal(probe.as_bytes()) {
        return Err(format!(
            "{p:?} is not in normal form (no '.' or '..' segments, unreserved characters unescaped, well-formed escapes): it would never match"
        ));
    }
    Ok(Pattern { pieces, names })
}

/// Parse `prefix = "..."`: literal bytes, then anything.
pub fn parse_prefix(p: &str) -> Result<Pattern, String> {
    path_text(p)?;
    let b = p.as_bytes();
    // Whole segments must be normal; the last may be a partial one (`/.` is a fine prefix for
    // dotfiles), so it is checked as the start of a longer segment.
    let cut = b.iter().rposition(|&c| c == b'/').unwrap_or(0) + 1;
    let partial = [b"/", &b[cut..], b"x"].concat();
    if !is_normal(&b[..cut]) || !is_normal(&partial) {
        return Err(format!(
            "{p:?} is not in normal form (no '.' or '..' segments, unreserved characters unescaped, well-formed escapes): it would never match"
        ));
    }
    Ok(Pattern { pieces: vec![Piece::Static(b.to_vec()), Piece::Tail], names: Vec::new() })
}

#[cfg(test)]
mod tests;
