//! JWKS URLs: each source holds its last good key set behind an `ArcSwap` that workers read,
//! and one background thread refreshes them (every `refresh_interval`, and soon after a worker
//! saw a token with an unknown `kid`, at most once per `min_refresh_interval`). Fetching never
//! happens on a worker. A failed fetch keeps the last good set.
//!
//! Sources are shared by URL and settings across reloads (a registry of weak references): a
//! reload that keeps the URL keeps the keys, and a source no config uses any more is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;

use super::keys::{self, KeySet};

/// Time allowed for one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest JWKS document read.
const MAX_DOCUMENT: u64 = 1 << 20;
/// How often the refresher looks at its sources.
const TICK: Duration = Duration::from_millis(50);

pub struct JwksSource {
    pub url: String,
    pub algorithms: Vec<Algorithm>,
    pub refresh_interval: Duration,
    pub min_refresh_interval: Duration,
    keys: ArcSwap<KeySet>,
    /// Set by a worker that met an unknown `kid` (a plain store; the refresher clears it).
    wanted: AtomicBool,
    /// When the last fetch was tried, and whether any fetch ever succeeded (refresher only).
    state: Mutex<FetchState>,
}

struct FetchState {
    last_try: Instant,
    ever_ok: bool,
}

impl JwksSource {
    /// The current key set.
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    /// Ask for a refresh soon (a token named a key the set lacks).
    pub fn want_refresh(&self) {
        if !self.wanted.load(Ordering::Relaxed) {
            self.wanted.store(true, Ordering::Relaxed);
        }
    }

    fn same_settings(&self, url: &str, algs: &[Algorithm], every: Duration, min: Duration) -> bool {
        self.url == url && self.algorithms == algs && self.refresh_interval == every && self.min_refresh_interval == min
    }

    /// Fetch now; on success publish the new set. Returns what to log.
    fn refresh(&self) -> Result<usize, String> {
        let result = fetch(&self.url).and_then(|doc| keys::jwks(&doc, &self.algorithms));
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.last_try = Instant::now();
        let (found, warnings) = result?;
        for w in warnings {
            tracing::warn!(url = %self.url, "{w}");
        }
        let n = found.len();
        st.ever_ok = true;
        self.keys.store(Arc::new(KeySet::new(found)));
        Ok(n)
    }

    /// Whether the refresher should fetch now.
    fn due(&self, now: Instant) -> bool {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let since = now.duration_since(st.last_try);
        since >= self.refresh_interval
            || (since >= self.min_refresh_interval && (!st.ever_ok || self.wanted.load(Ordering::Relaxed)))
    }
}

static REGISTRY: Mutex<Vec<Weak<JwksSource>>> = Mutex::new(Vec::new());
static REFRESHER: std::sync::Once = std::sync::Once::new();

/// The source for `url` with these settings: the live one if a config already uses it, else a
/// new one fetched now (on the calling thread: config loading, never a worker). A failed first
/// fetch is returned as a warning; the source then answers with no keys until a fetch succeeds.
pub fn source(
    url: &str,
    algorithms: &[Algorithm],
    refresh_interval: Duration,
    min_refresh_interval: Duration,
) -> (Arc<JwksSource>, Option<String>) {
    {
        let mut reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        reg.retain(|w| w.strong_count() > 0);
        let same = |s: &Arc<JwksSource>| s.same_settings(url, algorithms, refresh_interval, min_refresh_interval);
        if let Some(s) = reg.iter().filter_map(Weak::upgrade).find(same) {
            return (s, None);
        }
    }
    // The first fetch (up to FETCH_TIMEOUT) runs without the registry lock, so the refresher
    // and other config loads are not held up by a slow identity provider.
    let s = Arc::new(JwksSource {
        url: url.to_string(),
        algorithms: algorithms.to_vec(),
        refresh_interval,
        min_refresh_interval,
        keys: ArcSwap::from_pointee(KeySet::new(Vec::new())),
        wanted: AtomicBool::new(false),
        state: Mutex::new(FetchState { last_try: Instant::now(), ever_ok: false }),
    });
    let warning = match s.refresh() {
        Ok(n) => {
            tracing::info!(url, keys = n, "JWKS fetched");
            None
        }
        Err(e) => {
            Some(format!("JWKS {url}: {e} (retrying every {min_refresh_interval:?}; tokens are refused until then)"))
        }
    };
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::downgrade(&s));
    REFRESHER.call_once(|| {
        let spawned = std::thread::Builder::new().name("jwks".into()).spawn(refresher);
        if let Err(e) = spawned {
            tracing::error!("cannot start the JWKS refresher: {e}");
        }
    });
    (s, warning)
}

fn refresher() {
    loop {
        std::thread::sleep(TICK);
        let live: Vec<Arc<JwksSource>> = {
            let reg = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
            reg.iter().filter_map(Weak::upgrade).collect()
        };
        let now = Instant::now();
        for s in live.iter().filter(|s| s.due(now)) {
            s.wanted.store(false, Ordering::Relaxed);
            match s.refresh() {
                Ok(n) => tracing::debug!(url = %s.url, keys = n, "JWKS refreshed"),
                Err(e) => tracing::warn!(url = %s.url, "JWKS refresh failed, keeping the last good keys: {e}"),
            }
        }
    }
}

fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(FETCH_TIMEOUT)).build().into();
    let mut resp = agent.get(url).call().map_err(|e| format!("fetch failed: {e}"))?;
    resp.body_mut().with_config().limit(MAX_DOCUMENT).read_to_vec().map_err(|e| format!("fetch failed: {e}"))
}
