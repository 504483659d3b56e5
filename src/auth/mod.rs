//! JWT authentication: named policies (how the token is found, which keys verify it, which
//! claims it must carry), attached to routes with the scopes each route needs.
//!
//! Owns the policy phase of a request: find the token, take its principal from the worker's cache
//! (`cache`) or verify it (`jsonwebtoken`, one key pinned per algorithm, `keys`/`jwks`), check the
//! route's scopes. The outcome is a `Principal` (what later phases and the upstream see) or an
//! `AuthError`, which `error.rs` maps to 400/401/403 with `WWW-Authenticate` (RFC 6750 §3).
//! The token itself never reaches a log line or an answer.

pub mod cache;
pub mod jwks;
pub mod keys;
pub mod token;

use std::rc::Rc;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use crate::http::parse::RequestHead;
use jwks::JwksSource;
use keys::{Key, KeySet, MAX_TRIES};
use token::{Found, TokenSource};

/// A token without `exp` cannot be cached longer than this (seconds); `exp` is required unless a
/// later option relaxes it, so this only bounds the unexpected.
const MAX_CACHE_SECS: u64 = 300;

/// A policy, as validated.
pub struct AuthPolicy {
    /// Unique per built policy (process-wide): cache entries of an older config never match.
    pub id: u64,
    pub name: String,
    /// `metrics::name_key("auth", name)`, computed once.
    pub metrics_key: u64,
    pub source: TokenSource,
    pub max_token_bytes: usize,
    /// Keys from secrets, PEM files and JWKS files.
    pub fixed: Arc<KeySet>,
    /// JWKS URLs.
    pub jwks: Vec<Arc<JwksSource>>,
    /// One validation per algorithm the policy's keys may use.
    pub validations: Vec<(Algorithm, Validation)>,
    pub leeway: u64,
    /// Required claims beyond the registered ones jsonwebtoken checks itself.
    pub required: Vec<String>,
    pub plan_claim: String,
    /// (claim, header name) pairs copied to the upstream.
    pub claims_to_headers: Vec<(String, String)>,
    pub forward_authorization: bool,
    /// Routes under these path prefixes use this policy unless they name one.
    pub prefixes: Vec<String>,
}

impl std::fmt::Debug for AuthPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys (HMAC secrets).
        f.debug_struct("AuthPolicy").field("name", &self.name).field("id", &self.id).finish_non_exhaustive()
    }
}

/// What a route requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAuth {
    /// Index into the snapshot's policies.
    pub policy: usize,
    pub scopes: Vec<Box<str>>,
    /// All of `scopes` (else any one).
    pub all: bool,
    /// The scopes as one space-separated string, for the 403's `scope` parameter.
    pub scope_text: Box<str>,
}

/// Who a verified token speaks for.
#[derive(Debug, Default)]
pub struct Principal {
    pub subject: Option<Box<str>>,
    pub plan: Option<Box<str>>,
    /// The client the token was issued to (`client_id`, else `azp`).
    pub client: Option<Box<str>>,
    pub scopes: Vec<Box<str>>,
    /// `Name: value\r\n` lines for the upstream (the policy's `claims_to_headers`).
    pub header_lines: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("the token field appears twice")]
    Ambiguous,
    #[error("invalid token: {0}")]
    Invalid(&'static str),
    #[error("insufficient scope")]
    Scope(Box<str>),
}

impl AuthError {
    /// A small fixed label for metrics and the access log (never the token).
    pub fn outcome(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Ambiguous => "invalid_request",
            AuthError::Invalid(_) => "invalid_token",
            AuthError::Scope(_) => "insufficient_scope",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            AuthError::Ambiguous => 400,
            AuthError::Missing | AuthError::Invalid(_) => 401,
            AuthError::Scope(_) => 403,
        }
    }

    /// The `WWW-Authenticate` value (RFC 6750 §3).
    pub fn challenge(&self) -> String {
        match self {
            // §3.1: a request without credentials gets no error code.
            AuthError::Missing => "Bearer realm=\"ringgate\"".into(),
            AuthError::Ambiguous => "Bearer realm=\"ringgate\", error=\"invalid_request\"".into(),
            AuthError::Invalid(d) => format!("Bearer realm=\"ringgate\", error=\"invalid_token\", error_description=\"{d}\""),
            AuthError::Scope(s) => format!(
                "Bearer realm=\"ringgate\", error=\"insufficient_scope\", error_description=\"insufficient scope\", scope=\"{s}\""
            ),
        }
    }
}

impl AuthPolicy {
    /// Changes whenever any of the policy's key sets does.
    pub fn key_version(&self) -> u64 {
        self.jwks.iter().fold(self.fixed.version, |v, s| v.wrapping_mul(31).wrapping_add(s.keys().version))
    }

    fn validation(&self, alg: Algorithm) -> Option<&Validation> {
        self.validations.iter().find(|(a, _)| *a == alg).map(|(_, v)| v)
    }

    /// Verify `token` at `now` (unix seconds): the principal and until when it holds.
    pub fn verify(&self, token: &[u8], now: u64) -> Result<(Principal, u64), AuthError> {
        if token.len() > self.max_token_bytes {
            return Err(AuthError::Invalid("token too large"));
        }
        let (header, payload) = token::split(token).ok_or(AuthError::Invalid("malformed token"))?;
        if !token::unique_names(&header) || !token::unique_names(&payload) {
            return Err(AuthError::Invalid("malformed token"));
        }
        let head: Map<String, Value> =
            serde_json::from_slice(&header).map_err(|_| AuthError::Invalid("malformed token"))?;
        // RFC 7515 §4.1.11: no extension is understood, so a critical one is a refusal.
        if head.contains_key("crit") {
            return Err(AuthError::Invalid("malformed token"));
        }
        let alg = match head.get("alg").and_then(Value::as_str).map(str::parse::<Algorithm>) {
            Some(Ok(a)) => a,
            // `none`, or anything jsonwebtoken does not verify.
            _ => return Err(AuthError::Invalid("algorithm not allowed")),
        };
        let validation = self.validation(alg).ok_or(AuthError::Invalid("algorithm not allowed"))?;
        let kid = match head.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.as_str()),
            Some(_) => return Err(AuthError::Invalid("malformed token")),
        };
        let claims = self.check_signature(token, alg, kid, validation)?;
        self.principal(claims, now)
    }

    /// Try the key named by `kid`, or up to `MAX_TRIES` keys without one for `alg`.
    fn check_signature(
        &self,
        token: &[u8],
        alg: Algorithm,
        kid: Option<&str>,
        validation: &Validation,
    ) -> Result<Map<String, Value>, AuthError> {
        let sets: Vec<_> = self.jwks.iter().map(|s| s.keys()).collect();
        let all = || std::iter::once(&*self.fixed).chain(sets.iter().map(|g| &***g));
        let candidates: Vec<&Key> = match kid {
            Some(k) => match all().find_map(|s| s.by_kid(k)) {
                Some(key) if key.alg == alg => vec![key],
                Some(_) => return Err(AuthError::Invalid("algorithm not allowed")),
                None => {
                    self.jwks.iter().for_each(|s| s.want_refresh());
                    if all().all(|s| s.keys.is_empty()) {
                        return Err(AuthError::Invalid("no keys available"));
                    }
                    return Err(AuthError::Invalid("unknown key"));
                }
            },
            None => all().flat_map(|s| s.anonymous(alg)).take(MAX_TRIES).collect(),
        };
        if candidates.is_empty() {
            if all().all(|s| s.keys.is_empty()) {
                return Err(AuthError::Invalid("no keys available"));
            }
            return Err(if all().any(|s| s.has_alg(alg)) {
                AuthError::Invalid("unknown key")
            } else {
                AuthError::Invalid("algorithm not allowed")
            });
        }
        let mut last = AuthError::Invalid("invalid signature");
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = AuthError::Invalid(describe(e.kind())),
            }
        }
        Err(last)
    }

    fn principal(&self, claims: Map<String, Value>, now: u64) -> Result<(Principal, u64), AuthError> {
        if self.required.iter().any(|c| claims.get(c).is_none_or(Value::is_null)) {
            return Err(AuthError::Invalid("missing claim"));
        }
        let valid_until = match claims.get("exp").and_then(Value::as_f64) {
            Some(exp) if exp >= 0.0 => (exp as u64).saturating_add(self.leeway),
            _ => now.saturating_add(MAX_CACHE_SECS),
        };
        let text = |c: &str| claims.get(c).and_then(Value::as_str).map(Box::<str>::from);
        let mut scopes: Vec<Box<str>> = Vec::new();
        if let Some(s) = claims.get("scope").and_then(Value::as_str) {
            scopes.extend(s.split(' ').filter(|x| !x.is_empty()).map(Into::into));
        }
        match claims.get("scp") {
            Some(Value::String(s)) => scopes.extend(s.split(' ').filter(|x| !x.is_empty()).map(Into::into)),
            Some(Value::Array(a)) => scopes.extend(a.iter().filter_map(Value::as_str).map(Into::into)),
            _ => {}
        }
        let mut lines = BytesMut::new();
        for (claim, header) in &self.claims_to_headers {
            if let Some(v) = claims.get(claim).and_then(header_value) {
                lines.put_slice(header.as_bytes());
                lines.put_slice(b": ");
                lines.put_slice(v.as_bytes());
                lines.put_slice(b"\r\n");
            }
        }
        let p = Principal {
            subject: text("sub"),
            plan: text(&self.plan_claim),
            client: text("client_id").or_else(|| text("azp")),
            scopes,
            header_lines: lines.freeze(),
        };
        Ok((p, valid_until))
    }
}

/// A claim as a header value: strings as they are, numbers and booleans as text, arrays of
/// strings joined with `,`. None when it is anything else or would not be a valid field value
/// (RFC 9110 §5.5: no control characters, so no header can be injected).
fn header_value(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(a) => {
            let parts: Option<Vec<&str>> = a.iter().map(Value::as_str).collect();
            parts?.join(",")
        }
        _ => return None,
    };
    let ok = s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    (ok && !s.is_empty()).then_some(s)
}

fn describe(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "invalid signature",
        ErrorKind::ExpiredSignature => "token expired",
        ErrorKind::ImmatureSignature => "token not yet valid",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::MissingRequiredClaim(_) => "missing claim",
        ErrorKind::InvalidAlgorithm => "algorithm not allowed",
        _ => "malformed token",
    }
}

/// The route's policy check for one request: the principal, or the answer to give. `now` is
/// unix seconds; `cache` is the worker's.
pub fn authorize(
    policy: &AuthPolicy,
    route: &RouteAuth,
    head: &[u8],
    req: &RequestHead,
    now: u64,
    cache: &mut cache::TokenCache,
) -> Result<Rc<Principal>, AuthError> {
    let t = match token::find(&policy.source, head, req) {
        Found::Token(t) => t,
        Found::Missing => return Err(AuthError::Missing),
        Found::Ambiguous => return Err(AuthError::Ambiguous),
    };
    let version = policy.key_version();
    let principal = match cache.get(policy.id, t, now, version) {
        Some(p) => p,
        None => {
            let (p, until) = policy.verify(t, now)?;
            let p = Rc::new(p);
            cache.put(policy.id, t, until, version, p.clone());
            p
        }
    };
    if !route.scopes.is_empty() {
        let has = |s: &str| principal.scopes.iter().any(|x| &**x == s);
        let ok = if route.all { route.scopes.iter().all(|s| has(s)) } else { route.scopes.iter().any(|s| has(s)) };
        if !ok {
            return Err(AuthError::Scope(route.scope_text.clone()));
        }
    }
    Ok(principal)
}

/// Current unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
