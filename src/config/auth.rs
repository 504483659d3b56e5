//! Validation of `[[auth]]` policies (keys loaded and checked here, so `ringgate check` and a
//! reload refuse a bad one with its file and the reason) and of each route's `auth`, `scopes`
//! and `scopes_match`. See docs/auth.md.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use toml::Spanned;

use super::file::{RawAuth, RawKey, RawRoute};
use super::Checker;
use crate::auth::keys::{self, Key, KeySet};
use crate::auth::token::TokenSource;
use crate::auth::{jwks, AuthPolicy, RouteAuth};
use crate::route::Route;

static POLICY_IDS: AtomicU64 = AtomicU64::new(1);
/// Largest clock-skew allowance.
const MAX_LEEWAY_SECS: u64 = 86_400;
/// Shortest JWKS refresh intervals (the refresher ticks every 50 ms).
const MIN_REFRESH: Duration = Duration::from_millis(100);

/// Every policy; a policy with errors is left out (and the config refused, with its errors).
pub(super) fn validate_policies(c: &mut Checker, raw: &[Spanned<RawAuth>]) -> Vec<Arc<AuthPolicy>> {
    let mut out: Vec<Arc<AuthPolicy>> = Vec::new();
    for (i, p) in raw.iter().enumerate() {
        let key = format!("auth[{i}]");
        let name = p.get_ref().name.get_ref();
        if name.is_empty() || name == "anonymous" {
            c.err(
                Some(p.get_ref().name.span()),
                format!("{key}.name"),
                "a policy needs a name other than \"anonymous\"",
            );
        }
        if out.iter().any(|x| &x.name == name) {
            c.err(Some(p.get_ref().name.span()), format!("{key}.name"), format!("policy {name:?} is defined twice"));
        }
        let before = c.issues.len();
        let policy = policy(c, p, &key);
        if c.issues.len() == before {
            out.push(Arc::new(policy));
        }
    }
    out
}

fn policy(c: &mut Checker, sp: &Spanned<RawAuth>, key: &str) -> AuthPolicy {
    let span = Some(sp.span());
    let p = sp.get_ref();
    let source = match (&p.token_header, &p.token_cookie) {
        (None, None) => TokenSource::Bearer,
        (Some(h), None) => TokenSource::Header(h.get_ref().to_ascii_lowercase().into()),
        (None, Some(k)) => TokenSource::Cookie(k.get_ref().as_str().into()),
        (Some(h), Some(_)) => {
            c.err(Some(h.span()), format!("{key}.token_header"), "give token_header or token_cookie, not both");
            TokenSource::Bearer
        }
    };
    let leeway = c.duration(&p.leeway, &format!("{key}.leeway"), Duration::from_secs(30)).as_secs();
    if leeway > MAX_LEEWAY_SECS {
        // jsonwebtoken subtracts the leeway from the current time: bounded well below that.
        c.err(p.leeway.as_ref().map(|l| l.span()), format!("{key}.leeway"), "at most 1 day");
    }
    let max_token_bytes = c.int(&p.max_token_bytes, &format!("{key}.max_token_bytes"), 8192, 64, 1 << 20) as usize;

    let mut fixed: Vec<Key> = Vec::new();
    let mut sources = Vec::new();
    let mut algs: Vec<Algorithm> = Vec::new();
    if p.keys.is_empty() {
        c.err(
            span.clone(),
            format!("{key}.keys"),
            "no keys (add keys = [{ algorithm = \"RS256\", pem_file = \"...\" }])",
        );
    }
    for (j, k) in p.keys.iter().enumerate() {
        let kkey = format!("{key}.keys[{j}]");
        match one_key(c, k, &kkey) {
            Loaded::Fixed(list, a) => {
                fixed.extend(list);
                algs.extend(a);
            }
            Loaded::Url(s) => {
                algs.extend(s.algorithms.iter().copied());
                sources.push(s);
            }
            Loaded::Failed => {}
        }
    }
    algs.sort_by_key(|a| format!("{a:?}"));
    algs.dedup();

    let strings = |v: &[Spanned<String>]| -> Vec<String> { v.iter().map(|s| s.get_ref().clone()).collect() };
    let (issuers, audiences) = (strings(&p.issuers), strings(&p.audiences));
    let mut registered = vec!["exp".to_string()];
    let mut required = Vec::new();
    for r in strings(&p.required_claims) {
        match r.as_str() {
            "exp" | "nbf" | "iss" | "aud" | "sub" => registered.push(r),
            _ => required.push(r),
        }
    }
    if !issuers.is_empty() {
        registered.push("iss".into());
    }
    if !audiences.is_empty() {
        registered.push("aud".into());
    }
    let validations = algs
        .iter()
        .map(|a| {
            let mut v = Validation::new(*a);
            v.leeway = leeway;
            v.validate_exp = true;
            v.validate_nbf = true;
            v.set_required_spec_claims(&registered);
            if issuers.is_empty() {
                v.iss = None;
            } else {
                v.set_issuer(&issuers);
            }
            if audiences.is_empty() {
                v.validate_aud = false;
            } else {
                v.set_audience(&audiences);
            }
            (*a, v)
        })
        .collect();

    let mut claims_to_headers = Vec::new();
    for (claim, header) in &p.claims_to_headers {
        let h = header.get_ref();
        let kind = crate::http::parse::classify(h.as_bytes());
        if h.is_empty() || !h.bytes().all(crate::http::parse::is_tchar) {
            c.err(
                Some(header.span()),
                format!("{key}.claims_to_headers.{claim}"),
                format!("{h:?} is not a header name"),
            );
        } else if kind != crate::http::parse::HeaderKind::Other || h.eq_ignore_ascii_case("authorization") {
            c.err(
                Some(header.span()),
                format!("{key}.claims_to_headers.{claim}"),
                format!("{h:?} is managed by ringgate and cannot carry a claim"),
            );
        } else {
            claims_to_headers.push((claim.clone(), h.clone()));
        }
    }
    let mut prefixes = Vec::new();
    for pre in &p.prefixes {
        if !pre.get_ref().starts_with('/') {
            c.err(Some(pre.span()), format!("{key}.prefixes"), format!("{:?} does not start with /", pre.get_ref()));
        }
        prefixes.push(pre.get_ref().clone());
    }
    AuthPolicy {
        id: POLICY_IDS.fetch_add(1, Ordering::Relaxed),
        name: p.name.get_ref().clone(),
        metrics_key: crate::metrics::name_key("auth", p.name.get_ref()),
        source,
        max_token_bytes,
        fixed: Arc::new(KeySet::new(fixed)),
        jwks: sources,
        validations,
        leeway,
        required,
        plan_claim: p.plan_claim.as_ref().map_or_else(|| "plan".to_string(), |s| s.get_ref().clone()),
        claims_to_headers,
        forward_authorization: p.forward_authorization,
        prefixes,
    }
}

enum Loaded {
    Fixed(Vec<Key>, Vec<Algorithm>),
    Url(Arc<jwks::JwksSource>),
    Failed,
}

fn one_key(c: &mut Checker, sk: &Spanned<RawKey>, key: &str) -> Loaded {
    let span = Some(sk.span());
    let k = sk.get_ref();
    let sources = [
        ("secret_env", &k.secret_env),
        ("secret_file", &k.secret_file),
        ("pem_file", &k.pem_file),
        ("jwks_file", &k.jwks_file),
        ("jwks_url", &k.jwks_url),
    ];
    let given: Vec<(&str, &Spanned<String>)> =
        sources.iter().filter_map(|(n, v)| v.as_ref().map(|v| (*n, v))).collect();
    let [(what, value)] = given[..] else {
        c.err(span, key, "give exactly one of secret_env, secret_file, pem_file, jwks_file, jwks_url");
        return Loaded::Failed;
    };
    let vspan = Some(value.span());
    let is_set = matches!(what, "jwks_file" | "jwks_url");
    let parse = |c: &mut Checker, s: &Spanned<String>| match keys::parse_alg(s.get_ref()) {
        Ok(a) => Some(a),
        Err(e) => {
            c.err(Some(s.span()), format!("{key}.algorithm"), e);
            None
        }
    };
    if is_set {
        if k.algorithm.is_some() || k.kid.is_some() {
            c.err(span.clone(), key, "a JWKS entry takes `algorithms = [...]` (kids come from the document)");
        }
        let algs: Vec<Algorithm> = k.algorithms.iter().filter_map(|a| parse(c, a)).collect();
        if k.algorithms.is_empty() {
            c.err(span, format!("{key}.algorithms"), "list the algorithms this JWKS may use, e.g. [\"RS256\"]");
            return Loaded::Failed;
        }
        if what == "jwks_url" {
            let every = c.duration(&k.refresh_interval, &format!("{key}.refresh_interval"), Duration::from_secs(300));
            let min =
                c.duration(&k.min_refresh_interval, &format!("{key}.min_refresh_interval"), Duration::from_secs(10));
            let url = value.get_ref();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                c.err(vspan, format!("{key}.jwks_url"), format!("{url:?} is not an http:// or https:// URL"));
                return Loaded::Failed;
            }
            let (s, warning) = jwks::source(url, &algs, every.max(MIN_REFRESH), min.max(MIN_REFRESH));
            if let Some(w) = warning {
                tracing::warn!("{key}: {w}");
            }
            return Loaded::Url(s);
        }
        let path = c.path(value.get_ref());
        let loaded = std::fs::read(&path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|doc| keys::jwks(&doc, &algs).map_err(|e| format!("{}: {e}", path.display())));
        return match loaded {
            Ok((list, warnings)) => {
                for w in warnings {
                    tracing::warn!("{key}: {}: {w}", path.display());
                }
                if list.is_empty() {
                    c.err(vspan, format!("{key}.jwks_file"), format!("{}: no usable key", path.display()));
                    return Loaded::Failed;
                }
                Loaded::Fixed(list, algs)
            }
            Err(e) => {
                c.err(vspan, format!("{key}.jwks_file"), e);
                Loaded::Failed
            }
        };
    }
    if !k.algorithms.is_empty() || k.refresh_interval.is_some() || k.min_refresh_interval.is_some() {
        c.err(span.clone(), key, "algorithms, refresh_interval and min_refresh_interval belong to JWKS entries");
    }
    let Some(alg) = k.algorithm.as_ref().and_then(|a| parse(c, a)) else {
        if k.algorithm.is_none() {
            c.err(span, format!("{key}.algorithm"), "pin the key's algorithm, e.g. algorithm = \"RS256\"");
        }
        return Loaded::Failed;
    };
    let kid = k.kid.as_ref().map(|s| s.get_ref().as_str());
    let material: Result<Vec<u8>, String> = match what {
        // The secret itself is never put into a message.
        "secret_env" => std::env::var_os(value.get_ref())
            .map(|v| v.into_encoded_bytes())
            .ok_or_else(|| format!("environment variable {} is not set", value.get_ref())),
        _ => {
            let path = c.path(value.get_ref());
            std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display())).map(|mut b| {
                if what == "secret_file" {
                    while b.last().is_some_and(|x| *x == b'\n' || *x == b'\r') {
                        b.pop();
                    }
                }
                b
            })
        }
    };
    let made = material.and_then(|m| match what {
        "pem_file" => keys::pem(alg, kid, &m).map_err(|e| format!("{}: {e}", value.get_ref())),
        _ => keys::secret(alg, kid, &m),
    });
    match made {
        Ok(key) => Loaded::Fixed(vec![key], vec![alg]),
        Err(e) => {
            c.err(vspan, format!("{key}.{what}"), e);
            Loaded::Failed
        }
    }
}

/// A route's `auth`, `scopes` and `scopes_match`: its policy (named, or by the policies'
/// `prefixes`), and the header removals that make the policy's claim headers unspoofable.
/// `defined` is every `[[auth]]` table, valid or not.
pub(super) fn route_auth(
    c: &mut Checker,
    i: usize,
    sr: &Spanned<RawRoute>,
    policies: &[Arc<AuthPolicy>],
    defined: &[Spanned<RawAuth>],
    route: &mut Route,
) {
    let r = sr.get_ref();
    let k = |f: &str| format!("routes[{i}].{f}");
    let pattern = r.path.as_ref().or(r.prefix.as_ref()).map(|p| p.get_ref().as_str()).unwrap_or("");
    let policy = match &r.auth {
        Some(a) if a.get_ref() == "anonymous" => None,
        Some(a) => match policies.iter().position(|p| &p.name == a.get_ref()) {
            Some(x) => Some(x),
            // Defined but refused: its own errors say why.
            None if defined.iter().any(|d| d.get_ref().name.get_ref() == a.get_ref()) => return,
            None => {
                let known: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
                c.err(
                    Some(a.span()),
                    k("auth"),
                    format!("no auth policy named {:?} (defined: {known:?})", a.get_ref()),
                );
                return;
            }
        },
        // The longest matching prefix among the policies decides.
        None => policies
            .iter()
            .enumerate()
            .flat_map(|(x, p)| p.prefixes.iter().map(move |pre| (x, pre)))
            .filter(|(_, pre)| pattern.starts_with(pre.as_str()))
            .max_by_key(|(_, pre)| pre.len())
            .map(|(x, _)| x),
    };
    let all = match r.scopes_match.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "all")) => true,
        Some((_, "any")) => false,
        Some((m, other)) => {
            c.err(Some(m.span()), k("scopes_match"), format!("{other:?} is not \"all\" or \"any\""));
            true
        }
    };
    let Some(x) = policy else {
        if !r.scopes.is_empty() || r.scopes_match.is_some() {
            c.err(Some(sr.span()), k("scopes"), "scopes need an auth policy on the route");
        }
        return;
    };
    let p = &policies[x];
    let scopes: Vec<Box<str>> = r.scopes.iter().map(|s| Box::from(s.get_ref().as_str())).collect();
    for s in &r.scopes {
        if s.get_ref().is_empty() || s.get_ref().bytes().any(|b| b == b' ' || b == b'"' || b == b'\\' || b < 0x21) {
            c.err(Some(s.span()), k("scopes"), format!("{:?} is not a scope (RFC 6749 §3.3)", s.get_ref()));
        }
    }
    let scope_text = scopes.join(" ").into();
    for (_, h) in &p.claims_to_headers {
        route.request_headers.remove.push(h.to_ascii_lowercase().into_bytes().into());
    }
    if !p.forward_authorization {
        route.request_headers.remove.push((*b"authorization").into());
    }
    route.auth = Some(RouteAuth { policy: x, scopes, all, scope_text });
}
