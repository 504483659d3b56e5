//! Per-core state, owned by one worker thread and never shared: the upstream pool, counters,
//! the round-robin cursor, request-id sequence, and the cached view of the shared Snapshot.
//!
//! Nothing here is locked or atomic on the hot path; process-wide counters that are touched
//! only on rare events (a panic) live in `STATS`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use std::ops::Range;
use std::pin::Pin;

use monoio::time::Sleep;

use arc_swap::{ArcSwap, Cache};
use bytes::BytesMut;

use crate::http::parse::RequestHead;
use crate::http::response::ResponseHead;
use crate::net::iov::IoSlices;

use crate::shared::Snapshot;
use crate::upstream::pool::Pool;

/// Set when accepting stops (a drain's grace period is over); workers finish what is in flight.
pub static SHUTDOWN: AtomicBool = AtomicBool::new(false);
/// Set when a drain starts (SIGTERM, `POST /drain`): `/readyz` answers 503 and every response
/// closes its connection, while listeners still accept for the grace period.
pub static DRAINING: AtomicBool = AtomicBool::new(false);
/// Workers started and accepting, against the number configured: `/readyz` is 503 until equal.
pub static READY_WORKERS: AtomicUsize = AtomicUsize::new(0);
pub static EXPECTED_WORKERS: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The grace period of a drain, in milliseconds (fixed at start).
static DRAIN_GRACE_MS: AtomicU64 = AtomicU64::new(0);

pub fn set_drain_grace(d: std::time::Duration) {
    DRAIN_GRACE_MS.store(d.as_millis().min(u64::MAX as u128) as u64, Ordering::Relaxed);
}

/// True from the start of a drain: answers close their connections.
pub fn draining() -> bool {
    DRAINING.load(Ordering::Relaxed) || SHUTDOWN.load(Ordering::Relaxed)
}

/// Every configured worker has started and accepts.
pub fn workers_up() -> bool {
    READY_WORKERS.load(Ordering::Relaxed) >= EXPECTED_WORKERS.load(Ordering::Relaxed)
}

/// Whether the process should get traffic: all workers up and no drain started.
pub fn ready() -> bool {
    !draining() && workers_up()
}

/// `/readyz`: 200 while serving, 503 while starting or draining.
pub fn readiness() -> (u16, &'static str) {
    if draining() {
        (503, "draining\n")
    } else if !ready() {
        (503, "starting\n")
    } else {
        (200, "ready\n")
    }
}

/// Start a drain: not ready at once, stop accepting after the grace period. False when a drain
/// had already started.
pub fn start_drain() -> bool {
    if DRAINING.swap(true, Ordering::SeqCst) {
        return false;
    }
    // A process that handed its sockets to a successor is no longer the service: say nothing.
    if !crate::upgrade::HANDED_OVER.load(Ordering::SeqCst) {
        crate::upgrade::sd_notify("STOPPING=1");
    }
    let grace = std::time::Duration::from_millis(DRAIN_GRACE_MS.load(Ordering::Relaxed));
    tracing::info!(
        grace_ms = grace.as_millis() as u64,
        "draining: /readyz is 503, connections close after their next response; accepting stops after the grace period"
    );
    if grace.is_zero() {
        SHUTDOWN.store(true, Ordering::SeqCst);
    } else {
        let spawned = std::thread::Builder::new().name("ringgate-drain".into()).spawn(move || {
            std::thread::sleep(grace);
            SHUTDOWN.store(true, Ordering::SeqCst);
        });
        if spawned.is_err() {
            SHUTDOWN.store(true, Ordering::SeqCst);
        }
    }
    true
}

/// Rare-event counters, process-wide.
pub struct Stats {
    pub panics: AtomicU64,
    pub accept_errors: AtomicU64,
    pub tls_handshakes: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    /// Connections cut off for not finishing a TLS handshake in time.
    pub tls_handshake_timeouts: AtomicU64,
    /// Requests a dry-run rate limit would have refused.
    pub ratelimit_dry_run: AtomicU64,
}

pub static STATS: Stats = Stats {
    panics: AtomicU64::new(0),
    accept_errors: AtomicU64::new(0),
    tls_handshakes: AtomicU64::new(0),
    tls_handshake_failures: AtomicU64::new(0),
    tls_handshake_timeouts: AtomicU64::new(0),
    ratelimit_dry_run: AtomicU64::new(0),
};

pub fn shutting_down() -> bool {
    SHUTDOWN.load(Ordering::Relaxed)
}

/// The worker's view of the published snapshot: checks the publication generation (a shared
/// read, no write) and hands out an `Rc`, so requests on this core never touch a shared refcount.
pub struct LocalSnapshot {
    cache: RefCell<Cache<Arc<ArcSwap<Snapshot>>, Arc<Snapshot>>>,
    // An Rc around the Arc on purpose: cloning it per request touches no shared cache line.
    #[allow(clippy::redundant_allocation)]
    local: RefCell<Rc<Arc<Snapshot>>>,
}

impl LocalSnapshot {
    pub fn new(shared: Arc<ArcSwap<Snapshot>>) -> Self {
        let mut cache = Cache::new(shared);
        let first = cache.load().clone();
        LocalSnapshot { cache: RefCell::new(cache), local: RefCell::new(Rc::new(first)) }
    }

    /// Whether `key` is a target of the newest snapshot; `snap` is the one a request used (in
    /// the common case it is the newest and nothing is looked up).
    pub fn still_a_target(&self, snap: &Snapshot, key: crate::upstream::pool::PoolKey) -> bool {
        let mut cache = self.cache.borrow_mut();
        let newest = cache.load();
        std::ptr::eq(&**newest, snap) || newest.targets.contains_key(&key)
    }

    pub fn get(&self) -> Rc<Arc<Snapshot>> {
        let mut cache = self.cache.borrow_mut();
        let current = cache.load();
        if !Arc::ptr_eq(current, &self.local.borrow()) {
            *self.local.borrow_mut() = Rc::new(current.clone());
        }
        self.local.borrow().clone()
    }
}

/// Per-request working state, lent from a per-core free list while a request is in flight, so
/// idle keep-alive connections hold none of it and requests allocate none of it.
#[derive(Default)]
pub struct Scratch {
    pub req: RequestHead,
    pub resp: ResponseHead,
    pub extra: BytesMut,
    pub iov: IoSlices,
    pub ranges: Vec<Range<usize>>,
    /// The normalized path, when normalization changed it.
    pub norm: Vec<u8>,
    /// Route parameters (byte ranges of the normalized path).
    pub params: crate::router::Params,
    /// The request's timer, re-armed for each wait (see `net::io`); made on first use.
    pub timer: Option<Pin<Box<Sleep>>>,
    /// What the request did, for metrics and the access log.
    pub obs: crate::metrics::Obs,
}

impl Scratch {
    /// The request's timer, for `net::io`'s `*_on` calls.
    pub fn timer(&mut self) -> Pin<&mut Sleep> {
        self.timer.get_or_insert_with(crate::net::io::idle_timer).as_mut()
    }
}

/// Scratches kept per core beyond those in use.
const SCRATCH_POOL_MAX: usize = 4096;

pub struct Worker {
    pub id: usize,
    // Boxed on purpose: a connection holds a scratch across awaits, and a pointer keeps every
    // idle connection's future 400 bytes smaller than holding it by value.
    #[allow(clippy::vec_box)]
    scratch: RefCell<Vec<Box<Scratch>>>,
    pub snapshot: LocalSnapshot,
    pub pool: Pool,
    /// Verified JWTs (this core's; see `auth::cache`).
    pub tokens: RefCell<crate::auth::cache::TokenCache>,
    /// Rate-limit tokens leased from the shared tables (this core's; see `ratelimit::lease`).
    pub leases: RefCell<crate::ratelimit::lease::Leases>,
    /// This core's counters and histograms (copied out on a scrape through `slot`).
    pub metrics: RefCell<crate::metrics::WorkerMetrics>,
    pub slot: Arc<crate::metrics::Slot>,
    /// This core's access-log buffer.
    pub log: RefCell<crate::accesslog::LocalLog>,
    rng: Cell<u64>,
    rr: Cell<usize>,
    pub connections: Cell<usize>,
    pub in_flight: Cell<usize>,
    /// Connections whose first request has not been answered yet (a drain waits for them).
    pub fresh: Cell<usize>,
    seq: Cell<u64>,
    seed: u64,
    /// When the last upstream-error line was logged, and how many were skipped since.
    error_log: Cell<(Option<std::time::Instant>, u64)>,
}

impl Worker {
    pub fn new(id: usize, shared: Arc<ArcSwap<Snapshot>>) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(id);
        h.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
        );
        Worker {
            id,
            scratch: RefCell::new(Vec::new()),
            snapshot: LocalSnapshot::new(shared),
            pool: Pool::default(),
            tokens: RefCell::new(crate::auth::cache::TokenCache::default()),
            leases: RefCell::new(crate::ratelimit::lease::Leases::default()),
            metrics: RefCell::new(crate::metrics::WorkerMetrics { worker: id, ..Default::default() }),
            slot: crate::metrics::Slot::register(id),
            log: RefCell::new(crate::accesslog::LocalLog::default()),
            rng: Cell::new(h.finish() ^ 0x9E37_79B9_7F4A_7C15),
            rr: Cell::new(id),
            connections: Cell::new(0),
            in_flight: Cell::new(0),
            fresh: Cell::new(0),
            seq: Cell::new(0),
            seed: h.finish(),
            error_log: Cell::new((None, 0)),
        }
    }

    /// 64 random bits (wyrand; this core's generator, seeded per process and worker). For trace
    /// ids, not for anything secret.
    pub fn rand(&self) -> u64 {
        let s = self.rng.get().wrapping_add(0xa076_1d64_78bd_642f);
        self.rng.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        (t as u64) ^ ((t >> 64) as u64)
    }

    pub fn take_scratch(&self) -> Box<Scratch> {
        self.scratch.borrow_mut().pop().unwrap_or_default()
    }

    pub fn recycle_scratch(&self, mut s: Box<Scratch>) {
        s.iov.clear();
        // Not the request's head: it would keep the connection's buffer alive.
        s.obs.head = None;
        let mut pool = self.scratch.borrow_mut();
        if pool.len() < SCRATCH_POOL_MAX {
            pool.push(s);
        }
    }

    /// Whether an error line may be logged now (one per second); `Some(n)`: n were skipped since.
    pub fn error_log_gate(&self) -> Option<u64> {
        let now = std::time::Instant::now();
        match self.error_log.get() {
            (Some(last), skipped) if now.duration_since(last) < std::time::Duration::from_secs(1) => {
                self.error_log.set((Some(last), skipped + 1));
                None
            }
            (_, skipped) => {
                self.error_log.set((Some(now), 0));
                Some(skipped)
            }
        }
    }

    /// Round-robin index in `0..n` (n > 0).
    pub fn next_target(&self, n: usize) -> usize {
        let i = self.rr.get();
        self.rr.set(i.wrapping_add(1));
        i % n
    }

    /// Write a fresh request id (20 hex digits: worker, then a sequence mixed with a random seed).
    pub fn next_request_id(&self, out: &mut Vec<u8>) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let s = self.seq.get().wrapping_add(1);
        self.seq.set(s);
        let v = self.seed ^ s.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        out.clear();
        let w = self.id as u16;
        for shift in (0..4).rev() {
            out.push(HEX[((w >> (shift * 4)) & 0xf) as usize]);
        }
        for shift in (0..16).rev() {
            out.push(HEX[((v >> (shift * 4)) & 0xf) as usize]);
        }
    }
}

/// Counts a value up for as long as it lives (also when a task unwinds).
pub struct CountGuard<'a>(&'a Cell<usize>);

impl<'a> CountGuard<'a> {
    pub fn new(c: &'a Cell<usize>) -> Self {
        c.set(c.get() + 1);
        CountGuard(c)
    }
}

impl Drop for CountGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}
