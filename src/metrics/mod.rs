//! Metrics, per core: each worker counts into its own `WorkerMetrics` (plain integers and
//! hdrhistograms behind a `RefCell`, no atomics shared with other cores). A scrape asks every
//! worker for a copy (`Slot`: the worker's 50 ms periodic task answers), merges the copies on
//! the admin thread, and renders them (`render`: Prometheus text, and JSON quantiles).
//!
//! Label values come from the config (route, upstream and policy names) or from small fixed
//! sets (method class, status class, listener index): never from raw paths or client values.

pub mod render;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::hash::FxHashMap;

/// Method classes (label `method`).
pub const METHODS: [&str; 8] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"];

pub fn method_class(m: &[u8]) -> usize {
    match m {
        b"GET" => 0,
        b"HEAD" => 1,
        b"POST" => 2,
        b"PUT" => 3,
        b"PATCH" => 4,
        b"DELETE" => 5,
        b"OPTIONS" => 6,
        _ => 7,
    }
}

/// Status classes 1xx..5xx (label `status`).
pub const STATUS: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn status_class(status: u16) -> usize {
    ((status / 100) as usize).clamp(1, 5) - 1
}

/// Latency histograms in microseconds, 1 µs to 60 s, two significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 2)
        .unwrap_or_else(|_| Histogram::new(2).unwrap_or_else(|_| unreachable!()))
}

#[derive(Clone)]
pub struct RouteStats {
    pub name: Box<str>,
    /// Requests by method class and status class.
    pub requests: [[u64; 5]; 8],
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Whole request (head parsed → response written), µs.
    pub total: Histogram<u64>,
    /// Request head written upstream → response head read, µs (proxied requests).
    pub upstream: Histogram<u64>,
    /// Total minus the waits on the upstream and on the client, µs.
    pub gateway: Histogram<u64>,
}

impl RouteStats {
    fn new(name: &str) -> RouteStats {
        RouteStats {
            name: name.into(),
            requests: [[0; 5]; 8],
            bytes_in: 0,
            bytes_out: 0,
            total: histogram(),
            upstream: histogram(),
            gateway: histogram(),
        }
    }

    fn merge(&mut self, o: &RouteStats) {
        for (a, b) in self.requests.iter_mut().zip(&o.requests) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        let _ = self.total.add(&o.total);
        let _ = self.upstream.add(&o.upstream);
        let _ = self.gateway.add(&o.gateway);
    }
}

#[derive(Clone, Default)]
pub struct UpstreamStats {
    pub name: Box<str>,
    pub connect_attempts: u64,
    pub connect_failures: u64,
    pub pool_hits: u64,
    pub pool_misses: u64,
    /// Idle pooled connections (a gauge, filled when a copy is made).
    pub idle: u64,
}

impl UpstreamStats {
    fn merge(&mut self, o: &UpstreamStats) {
        self.connect_attempts += o.connect_attempts;
        self.connect_failures += o.connect_failures;
        self.pool_hits += o.pool_hits;
        self.pool_misses += o.pool_misses;
        self.idle += o.idle;
    }
}

/// Decisions of one policy (auth or rate limit) by outcome label.
#[derive(Clone, Default)]
pub struct PolicyStats {
    pub kind: &'static str,
    pub name: Box<str>,
    pub outcomes: FxHashMap<&'static str, u64>,
}

/// One request, as the metrics and the access log see it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// Head parsed → response written.
    pub total: Duration,
    /// Waiting for the upstream's response head (None: not proxied).
    pub upstream: Option<Duration>,
    /// Time spent waiting on the client or streaming bodies (excluded from gateway time).
    pub waits: Duration,
}

impl Timing {
    pub fn gateway(&self) -> Duration {
        self.total.saturating_sub(self.upstream.unwrap_or_default()).saturating_sub(self.waits)
    }
}

fn us(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, 60_000_000)
}

/// A worker's counters.
#[derive(Clone, Default)]
pub struct WorkerMetrics {
    /// `[metrics] enabled` of the request's snapshot: when false nothing is recorded.
    pub off: bool,
    pub worker: usize,
    pub driver: &'static str,
    /// Keyed by a hash of the route name (names are unique in a config and survive reloads).
    pub routes: FxHashMap<u64, RouteStats>,
    pub upstreams: FxHashMap<u64, UpstreamStats>,
    pub policies: FxHashMap<u64, PolicyStats>,
    /// By listener index: (active, total) connections.
    pub connections: Vec<(u64, u64)>,
}

/// A hash of a config name, for the per-worker maps.
pub fn name_key(kind: &str, name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = crate::hash::FxHasher::default();
    kind.hash(&mut h);
    name.hash(&mut h);
    h.finish()
}

impl WorkerMetrics {
    /// One finished request on route `key` (named `name`).
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &mut self,
        key: u64,
        name: &str,
        method: usize,
        status: u16,
        bytes_in: u64,
        bytes_out: u64,
        t: &Timing,
    ) {
        if self.off {
            return;
        }
        let r = self.routes.entry(key).or_insert_with(|| RouteStats::new(name));
        r.requests[method.min(7)][status_class(status)] += 1;
        r.bytes_in += bytes_in;
        r.bytes_out += bytes_out;
        let _ = r.total.record(us(t.total));
        if let Some(u) = t.upstream {
            let _ = r.upstream.record(us(u));
        }
        let _ = r.gateway.record(us(t.gateway()));
    }

    /// Count something for upstream `name` (nothing when metrics are off).
    pub fn count_upstream(&mut self, key: u64, name: &str, f: impl FnOnce(&mut UpstreamStats)) {
        if !self.off {
            f(self.upstream(key, name));
        }
    }

    pub fn upstream(&mut self, key: u64, name: &str) -> &mut UpstreamStats {
        self.upstreams.entry(key).or_insert_with(|| UpstreamStats { name: name.into(), ..Default::default() })
    }

    /// One decision of policy `name` (`key` = `name_key(kind, name)`, precomputed by the policy).
    pub fn policy(&mut self, key: u64, kind: &'static str, name: &str, outcome: &'static str) {
        if self.off {
            return;
        }
        let p = self.policies.entry(key).or_insert_with(|| PolicyStats {
            kind,
            name: name.into(),
            outcomes: FxHashMap::default(),
        });
        *p.outcomes.entry(outcome).or_default() += 1;
    }

    pub fn connection_opened(&mut self, listener: usize) {
        if self.connections.len() <= listener {
            self.connections.resize(listener + 1, (0, 0));
        }
        self.connections[listener].0 += 1;
        self.connections[listener].1 += 1;
    }

    pub fn connection_closed(&mut self, listener: usize) {
        if let Some(c) = self.connections.get_mut(listener) {
            c.0 = c.0.saturating_sub(1);
        }
    }

    /// Add another worker's copy (on the admin thread).
    pub fn merge(&mut self, o: &WorkerMetrics) {
        for (k, r) in &o.routes {
            match self.routes.get_mut(k) {
                Some(m) => m.merge(r),
                None => {
                    self.routes.insert(*k, r.clone());
                }
            }
        }
        for (k, u) in &o.upstreams {
            self.upstreams
                .entry(*k)
                .or_insert_with(|| UpstreamStats { name: u.name.clone(), ..Default::default() })
                .merge(u);
        }
        for (k, p) in &o.policies {
            let m = self.policies.entry(*k).or_insert_with(|| PolicyStats {
                kind: p.kind,
                name: p.name.clone(),
                outcomes: FxHashMap::default(),
            });
            for (o, n) in &p.outcomes {
                *m.outcomes.entry(o).or_default() += n;
            }
        }
        if self.connections.len() < o.connections.len() {
            self.connections.resize(o.connections.len(), (0, 0));
        }
        for (a, b) in self.connections.iter_mut().zip(&o.connections) {
            a.0 += b.0;
            a.1 += b.1;
        }
    }
}

/// Where a worker hands a copy of its metrics to a scrape.
#[derive(Default)]
pub struct Slot {
    pub worker: usize,
    wanted: AtomicBool,
    copy: Mutex<Option<Box<WorkerMetrics>>>,
}

static SLOTS: Mutex<Vec<Arc<Slot>>> = Mutex::new(Vec::new());

/// Reloads, by outcome (written by the control thread).
pub static RELOADS_OK: AtomicU64 = AtomicU64::new(0);
pub static RELOADS_FAILED: AtomicU64 = AtomicU64::new(0);

impl Slot {
    /// A worker's slot, registered for scrapes.
    pub fn register(worker: usize) -> Arc<Slot> {
        let s = Arc::new(Slot { worker, ..Default::default() });
        SLOTS.lock().unwrap_or_else(|e| e.into_inner()).push(s.clone());
        s
    }

    /// Whether a scrape is waiting for this worker (one relaxed load).
    pub fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    /// The worker's answer.
    pub fn fill(&self, m: WorkerMetrics) {
        *self.copy.lock().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(m));
        self.wanted.store(false, Ordering::Release);
    }
}

/// Ask every worker for a copy and merge what arrives within `wait` (a worker busy with a long
/// task answers late and is left out; the count of workers merged is returned).
pub fn collect(wait: Duration) -> (WorkerMetrics, Vec<WorkerMetrics>) {
    let slots: Vec<Arc<Slot>> = SLOTS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for s in &slots {
        *s.copy.lock().unwrap_or_else(|e| e.into_inner()) = None;
        s.wanted.store(true, Ordering::Release);
    }
    let deadline = std::time::Instant::now() + wait;
    while slots.iter().any(|s| s.wanted.load(Ordering::Acquire)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut total = WorkerMetrics::default();
    let mut each = Vec::new();
    for s in &slots {
        if let Some(m) = s.copy.lock().unwrap_or_else(|e| e.into_inner()).take() {
            total.merge(&m);
            each.push(*m);
        }
    }
    (total, each)
}

/// What one request did, filled along the request path and read once it is answered (metrics,
/// access log). Lives in the per-core `Scratch`; reset per request.
#[derive(Debug, Clone, Default)]
pub struct Obs {
    /// When the head was parsed.
    pub start: Option<std::time::Instant>,
    /// The request head's bytes (a shared slice of the read buffer, for the access log).
    pub head: Option<bytes::Bytes>,
    /// Index of the route in the request's snapshot.
    pub route: Option<usize>,
    /// Index of the upstream group, and the target address.
    pub upstream: Option<(usize, std::net::SocketAddr)>,
    /// Request head written upstream (the last attempt) and the response head read.
    pub sent_upstream: Option<std::time::Instant>,
    pub upstream_head: Option<std::time::Instant>,
    /// Time streaming bodies beyond the first buffer (waits on the client or upstream).
    pub waits: Duration,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Policy outcomes for the access log ("" when none applied).
    pub auth: &'static str,
    pub ratelimit: &'static str,
    /// W3C trace id (32 lowercase hex) when one was kept or made.
    pub trace_id: Option<[u8; 32]>,
}

impl Obs {
    pub fn reset(&mut self) {
        *self = Obs::default();
    }

    /// Timing of a finished request.
    pub fn timing(&self, end: std::time::Instant) -> Timing {
        let total = self.start.map(|s| end.saturating_duration_since(s)).unwrap_or_default();
        let upstream = match (self.sent_upstream, self.upstream_head) {
            (Some(a), Some(b)) => Some(b.saturating_duration_since(a)),
            _ => None,
        };
        Timing { total, upstream, waits: self.waits }
    }
}
