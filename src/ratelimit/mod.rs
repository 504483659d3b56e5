//! Rate limits: named policies (a rate and burst per plan, and what a bucket is counted by),
//! attached to routes. Per core, yet globally exact: each worker spends tokens it leased in
//! batches from one shared bucket per key (`lease`, `table`, `gcra`; the mechanism and its error
//! bound are in `lease`'s header and docs/ratelimit.md).
//!
//! Owns the rate-limit phase of a request: compute the key (client address, a header, a JWT
//! claim, or the route), pick the plan, check, and produce either the admitted response's
//! `RateLimit` fields or a `Limited` answer (429, `Retry-After`, draft-ietf-httpapi-
//! ratelimit-headers-11 fields), which `error.rs` maps. Time comes in as an argument.

pub mod gcra;
pub mod lease;
pub mod table;

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::{BufMut, BytesMut};

use crate::auth::Principal;
use crate::hash::FxHashMap;
use crate::http::parse::RequestHead;
use gcra::Rate;
use lease::{Leases, Verdict};
use table::Table;

/// What a bucket is counted by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// The client address (after PROXY protocol / trusted X-Forwarded-For).
    ClientIp,
    /// A request header's value (lowercase name); requests without it share one bucket.
    Header(Box<str>),
    /// The verified JWT's subject; requests without one share one bucket.
    JwtSubject,
    /// The verified JWT's client (`client_id`, else `azp`).
    JwtClient,
    /// The route as a whole.
    Route,
}

/// Where a key's plan comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanFrom {
    /// Everyone gets the default plan.
    Default,
    /// The verified JWT's plan claim.
    Jwt,
    /// A header's value looked up in a table (value → plan index).
    Header { name: Box<str>, table: FxHashMap<String, usize> },
}

pub struct Plan {
    pub name: String,
    /// None = unlimited.
    pub table: Option<Arc<Table>>,
    /// As configured: `count` per `window_s` seconds (for the RateLimit-Policy field).
    pub count: u64,
    pub window_s: u64,
    /// Tokens leased per trip to the shared table.
    pub batch: u64,
}

pub struct RateLimitPolicy {
    pub name: String,
    /// `metrics::name_key("ratelimit", name)`, computed once.
    pub metrics_key: u64,
    pub key: KeyKind,
    /// Index 0 is the default plan.
    pub plans: Vec<Plan>,
    pub plan_from: PlanFrom,
    pub dry_run: bool,
    /// RateLimit-Policy and RateLimit on admitted responses.
    pub headers: bool,
    /// X-RateLimit-Limit/-Remaining/-Reset alongside.
    pub legacy_headers: bool,
}

impl std::fmt::Debug for RateLimitPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitPolicy").field("name", &self.name).field("key", &self.key).finish_non_exhaustive()
    }
}

/// A refusal: the 429's extra header lines (Retry-After and the rate-limit fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    pub policy: String,
    pub lines: String,
}

/// What the key is computed from.
pub struct KeyInput<'a> {
    pub head: &'a [u8],
    pub req: &'a RequestHead,
    pub client_ip: &'a [u8],
    /// The route's name (unique): the key of `key = "route"`.
    pub route: &'a [u8],
    pub principal: Option<&'a Principal>,
}

/// Process-wide seed: workers must agree on a key's hash (it finds the shared bucket), and
/// clients must not be able to predict it (they choose header values).
fn seed() -> &'static foldhash::fast::RandomState {
    static SEED: OnceLock<foldhash::fast::RandomState> = OnceLock::new();
    SEED.get_or_init(foldhash::fast::RandomState::default)
}

fn header<'a>(input: &KeyInput<'a>, name: &str) -> Option<&'a [u8]> {
    input
        .req
        .headers
        .iter()
        .find(|h| input.head[h.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| &input.head[h.value.clone()])
}

impl RateLimitPolicy {
    fn key_bytes<'a>(&self, input: &KeyInput<'a>) -> &'a [u8] {
        match &self.key {
            KeyKind::ClientIp => input.client_ip,
            KeyKind::Header(n) => header(input, n).unwrap_or(b""),
            KeyKind::JwtSubject => input.principal.and_then(|p| p.subject.as_deref()).unwrap_or("").as_bytes(),
            KeyKind::JwtClient => input.principal.and_then(|p| p.client.as_deref()).unwrap_or("").as_bytes(),
            KeyKind::Route => input.route,
        }
    }

    fn plan(&self, input: &KeyInput<'_>) -> &Plan {
        let i = match &self.plan_from {
            PlanFrom::Default => 0,
            PlanFrom::Jwt => input
                .principal
                .and_then(|p| p.plan.as_deref())
                .and_then(|name| self.plans.iter().position(|pl| pl.name == name))
                .unwrap_or(0),
            PlanFrom::Header { name, table } => header(input, name)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| table.get(v.trim()).copied())
                .unwrap_or(0),
        };
        &self.plans[i]
    }
}

/// Check every policy of a route, in order; all must admit. Admitted: the policies that asked
/// for it append their `RateLimit` lines to `lines`. `now` is ns of a monotonic clock.
pub fn check(
    policies: &[Arc<RateLimitPolicy>],
    route_limits: &[usize],
    input: &KeyInput<'_>,
    leases: &mut Leases,
    now: u64,
    lines: &mut BytesMut,
    decided: &mut dyn FnMut(&RateLimitPolicy, &'static str),
) -> Result<(), Limited> {
    for &i in route_limits {
        let p = &policies[i];
        let plan = p.plan(input);
        let Some(table) = &plan.table else {
            decided(p, "unlimited");
            continue;
        };
        let mut h = seed().build_hasher();
        h.write_u64(table.id);
        h.write(p.key_bytes(input));
        match leases.check(table, h.finish(), now, plan.batch) {
            Verdict::Admit { remaining, reset_ns } => {
                decided(p, "admitted");
                if p.headers {
                    fields(lines, p, plan, remaining, secs(reset_ns));
                }
            }
            Verdict::Refuse { .. } if p.dry_run => {
                decided(p, "dry_run_limited");
                dry_run_refusal(&p.name)
            }
            Verdict::Refuse { retry_ns } => {
                decided(p, "limited");
                let retry = secs(retry_ns).max(1);
                let mut b = BytesMut::new();
                b.put_slice(format!("Retry-After: {retry}\r\n").as_bytes());
                fields(&mut b, p, plan, 0, retry);
                return Err(Limited { policy: p.name.clone(), lines: String::from_utf8_lossy(&b).into_owned() });
            }
        }
    }
    Ok(())
}

/// Whole seconds, rounded up (a client told "0" would retry at once).
fn secs(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000)
}

/// draft-ietf-httpapi-ratelimit-headers-11 §3 and §4: `RateLimit-Policy: "name";q=N;w=W` and
/// `RateLimit: "name";r=R;t=T`; optionally the legacy `X-RateLimit-*` trio.
fn fields(out: &mut BytesMut, p: &RateLimitPolicy, plan: &Plan, remaining: u64, t: u64) {
    let name = &p.name;
    let (q, w) = (plan.count, plan.window_s);
    // Written straight into the response's line buffer (no String per request).
    use std::fmt::Write;
    let _ = write!(out, "RateLimit-Policy: \"{name}\";q={q};w={w}\r\nRateLimit: \"{name}\";r={remaining};t={t}\r\n");
    if p.legacy_headers {
        let _ =
            write!(out, "X-RateLimit-Limit: {q}\r\nX-RateLimit-Remaining: {remaining}\r\nX-RateLimit-Reset: {t}\r\n");
    }
}

/// Dry run: count and log (at most once a second per process) what would have been refused.
fn dry_run_refusal(policy: &str) {
    use std::sync::atomic::Ordering;
    crate::core::STATS.ratelimit_dry_run.fetch_add(1, Ordering::Relaxed);
    static LAST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = crate::auth::unix_now();
    if LAST.load(Ordering::Relaxed) != now && LAST.swap(now, Ordering::Relaxed) != now {
        tracing::info!(policy, "rate limit (dry run): a request would have been refused");
    }
}

/// The client address a trusted proxy forwarded: the rightmost X-Forwarded-For entry that is not
/// itself a trusted proxy (entries to its left could be written by anyone).
pub fn forwarded_client<'a>(head: &'a [u8], req: &RequestHead, snap: &crate::shared::Snapshot) -> Option<&'a [u8]> {
    use crate::http::parse::HeaderKind;
    let lines = req.headers.iter().rev().filter(|h| h.kind == HeaderKind::XForwardedFor);
    for h in lines {
        for entry in head[h.value.clone()].rsplit(|b| *b == b',') {
            let e = entry.trim_ascii();
            let ip = std::str::from_utf8(e).ok()?.parse::<std::net::IpAddr>().ok()?;
            if !snap.is_trusted(ip) {
                return Some(e);
            }
        }
    }
    None
}

/// Nanoseconds of the process's monotonic clock.
pub fn now_ns() -> u64 {
    static BASE: OnceLock<std::time::Instant> = OnceLock::new();
    let base = *BASE.get_or_init(std::time::Instant::now);
    // Offset so that "0" is never a real time.
    base.elapsed().as_nanos() as u64 + 1_000_000_000
}

/// Shared tables by what defines them, so a reload that keeps a policy keeps its buckets.
pub fn shared_table(signature: &str, rate: Rate, max_keys: usize) -> Arc<Table> {
    static REGISTRY: Mutex<Vec<(String, Weak<Table>)>> = Mutex::new(Vec::new());
    let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    reg.retain(|(_, w)| w.strong_count() > 0);
    if let Some(t) = reg.iter().find(|(s, _)| s == signature).and_then(|(_, w)| w.upgrade()) {
        return t;
    }
    let t = Arc::new(Table::new(rate, max_keys));
    reg.push((signature.to_string(), Arc::downgrade(&t)));
    t
}
