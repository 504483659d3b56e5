//! Hot reload: read and validate the config, resolve names, compile the router and build a new
//! snapshot on the calling (control) thread, then publish it whole with one `ArcSwap::store`, or
//! discard it and keep the old one. Triggers: SIGHUP (main.rs), `POST /reload` (admin.rs), and
//! the optional file watch here. One reload runs at a time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::config::{self, Config, ConfigError, DriverChoice, Issue, TargetSpec};
use crate::shared::{SharedSnapshot, Snapshot};

/// Where the config comes from.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    /// The embedded default (a reload re-reads it: nothing changes but the generation).
    Embedded,
}

/// What a successful reload did.
#[derive(Debug, Clone)]
pub struct Reloaded {
    pub generation: u64,
    pub took: Duration,
    /// e.g. "routes +1 -0 ~2 (added: a; changed: b, c), upstreams +0 -0 ~0"
    pub changes: String,
}

/// Settings fixed at start (a reload that changes them says so and leaves them).
struct Fixed {
    workers: usize,
    pin_cores: Vec<usize>,
    driver: DriverChoice,
    listeners: Vec<SocketAddr>,
    max_connections_per_worker: usize,
    drain_timeout: Duration,
    admin: Option<SocketAddr>,
    watch: (bool, Duration),
    /// Per listener: TLS minimum version and handshake timeout (certificates do reload).
    tls: Vec<Option<(crate::tls::MinVersion, Duration)>>,
}

pub struct Reloader {
    shared: SharedSnapshot,
    source: Source,
    fixed: Fixed,
    /// The built-in demo upstream's address, started on first need; the lock also serializes reloads.
    state: Mutex<Option<SocketAddr>>,
    /// Replaced snapshots, kept until no worker holds them so that they are freed here, on a
    /// control thread: freeing a 10,000-route table takes milliseconds a worker must not spend.
    retired: Mutex<Vec<Arc<Snapshot>>>,
    /// The TLS listeners' certificates, installed with each config and when their files change.
    certs: Mutex<Certs>,
}

/// TLS certificate state, under one lock.
struct Certs {
    /// Each TLS listener's store, by position in the config's listener list (fixed at start).
    stores: Vec<(usize, crate::tls::CertStore)>,
    /// The running config's TLS settings per listener position (what the file watch reloads).
    running: Vec<Option<crate::tls::TlsCfg>>,
    /// The running certificate and key files, with their state when last read: the watch acts
    /// when they differ (and a failed reload counts as read, so it is not retried in a loop).
    seen: (Vec<PathBuf>, Vec<Option<Stamp>>),
}

impl Reloader {
    pub fn new(shared: SharedSnapshot, source: Source, started: &Config, demo: Option<SocketAddr>) -> Arc<Reloader> {
        Arc::new(Reloader {
            shared,
            source,
            fixed: Fixed {
                workers: started.workers,
                pin_cores: started.pin_cores.clone(),
                driver: started.driver,
                listeners: started.listeners.iter().map(|l| l.addr).collect(),
                max_connections_per_worker: started.limits.max_connections_per_worker,
                drain_timeout: started.drain_timeout,
                admin: started.admin,
                watch: (started.reload.watch, started.reload.debounce),
                tls: tls_settings(started),
            },
            state: Mutex::new(demo),
            retired: Mutex::new(Vec::new()),
            certs: Mutex::new(Certs {
                stores: Vec::new(),
                running: started.listeners.iter().map(|l| l.tls.clone()).collect(),
                seen: stamped(tls_files(started.listeners.iter().map(|l| l.tls.as_ref()))),
            }),
        })
    }

    /// Register listener `index`'s certificate store (its position in the config's listeners).
    pub fn add_cert_store(&self, index: usize, store: crate::tls::CertStore) {
        self.certs.lock().unwrap_or_else(|e| e.into_inner()).stores.push((index, store));
    }

    /// Install the certificates a validated config loaded, for listeners still at the address
    /// they started on (listeners are fixed at start: a moved one keeps its running certificates).
    /// New handshakes get them; established connections keep theirs.
    fn install_certs(&self, cfg: &Config) {
        let running: Vec<Option<crate::tls::TlsCfg>> = self
            .fixed
            .listeners
            .iter()
            .enumerate()
            .map(|(i, addr)| cfg.listeners.get(i).filter(|l| l.addr == *addr).and_then(|l| l.tls.clone()))
            .collect();
        let mut certs = self.certs.lock().unwrap_or_else(|e| e.into_inner());
        for (index, store) in &certs.stores {
            match running.get(*index).and_then(|t| t.as_ref()) {
                Some(t) => store.store(t.loaded.clone()),
                None => tracing::warn!(
                    "listener {index} changed address or lost its tls table: its certificates stay as they are"
                ),
            }
        }
        certs.seen = stamped(tls_files(running.iter().map(Option::as_ref)));
        certs.running = running;
    }

    /// Reload the running config's certificates from their files (they changed); all or none
    /// are swapped in, and a failure keeps the old ones.
    pub fn reload_certs_now(&self, trigger: &str) {
        let _one_at_a_time = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut certs = self.certs.lock().unwrap_or_else(|e| e.into_inner());
        // Stamped before reading: a change during the load is seen by the watch afterwards.
        certs.seen = stamped(tls_files(certs.running.iter().map(Option::as_ref)));
        let mut fresh = Vec::new();
        for (index, _) in &certs.stores {
            let Some(t) = certs.running.get(*index).and_then(|t| t.as_ref()) else { continue };
            match crate::tls::load(&t.certs) {
                Ok(set) => fresh.push((*index, Arc::new(set))),
                Err(e) => {
                    tracing::error!(
                        trigger,
                        "TLS certificate reload failed, the old ones stay: listeners[{index}].tls: {e}"
                    );
                    return;
                }
            }
        }
        let Certs { stores, running, .. } = &mut *certs;
        for (index, set) in fresh {
            tracing::info!(certificates = %set.summary.join("; "), "TLS certificates loaded");
            if let Some((_, store)) = stores.iter().find(|(i, _)| *i == index) {
                store.store(set.clone());
            }
            if let Some(Some(t)) = running.get_mut(index) {
                t.loaded = set;
            }
        }
        tracing::info!(trigger, "TLS certificates reloaded");
    }

    /// The running certificate and key files, and their state when last read.
    pub fn cert_files(&self) -> (Vec<PathBuf>, Vec<Option<Stamp>>) {
        self.certs.lock().unwrap_or_else(|e| e.into_inner()).seen.clone()
    }

    /// Free retired snapshots nobody else holds any more (call periodically, off the workers).
    pub fn reap(&self) {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.retain(|s| Arc::strong_count(s) > 1);
    }

    /// Start the thread that reaps retired snapshots every 200 ms.
    pub fn source(&self) -> &Source {
        &self.source
    }

    pub fn current(&self) -> Arc<Snapshot> {
        self.shared.load_full()
    }

    fn load(&self) -> Result<Config, ConfigError> {
        match &self.source {
            Source::File(p) => config::load_file(p),
            Source::Embedded => config::load_str(config::DEFAULT_CONFIG, "(embedded default)"),
        }
    }

    /// Reload now. `trigger` names the cause in the log line.
    pub fn reload(&self, trigger: &str) -> Result<Reloaded, ConfigError> {
        let mut demo = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let cfg = match self.load() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(trigger, "reload failed, the running config stays:\n{}", e.render().trim_end());
                crate::metrics::RELOADS_FAILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(e);
            }
        };
        if demo.is_none() && cfg.upstreams.iter().any(|u| u.targets.contains(&TargetSpec::Demo)) {
            match crate::demo::start() {
                Ok(a) => *demo = Some(a),
                Err(e) => {
                    let err = ConfigError {
                        file: self.source_name(),
                        issues: vec![Issue {
                            line: None,
                            key: "upstreams".into(),
                            message: format!("cannot start the built-in demo upstream: {e}"),
                        }],
                    };
                    tracing::error!(trigger, "reload failed: {}", err.render().trim_end());
                    crate::metrics::RELOADS_FAILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    return Err(err);
                }
            }
        }
        self.warn_fixed(&cfg);
        self.install_certs(&cfg);
        let old = self.shared.load_full();
        let generation = old.generation + 1;
        let new = Snapshot::build(cfg, *demo, generation);
        let changes = diff(&old, &new);
        self.shared.store(Arc::new(new));
        self.retired.lock().unwrap_or_else(|e| e.into_inner()).push(old);
        let took = started.elapsed();
        crate::metrics::RELOADS_OK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            trigger,
            generation,
            took_ms = took.as_secs_f64() * 1e3,
            "reload ok generation={generation}: {changes}"
        );
        Ok(Reloaded { generation, took, changes })
    }

    fn source_name(&self) -> String {
        match &self.source {
            Source::File(p) => p.display().to_string(),
            Source::Embedded => "(embedded default)".into(),
        }
    }

    fn warn_fixed(&self, cfg: &Config) {
        let f = &self.fixed;
        let listeners: Vec<SocketAddr> = cfg.listeners.iter().map(|l| l.addr).collect();
        let mut fixed = Vec::new();
        if cfg.workers != f.workers {
            fixed.push("workers");
        }
        if cfg.pin_cores != f.pin_cores {
            fixed.push("pin_cores");
        }
        if cfg.driver != f.driver {
            fixed.push("driver");
        }
        if listeners != f.listeners {
            fixed.push("listeners");
        }
        if cfg.limits.max_connections_per_worker != f.max_connections_per_worker {
            fixed.push("limits.max_connections_per_worker");
        }
        if cfg.drain_timeout != f.drain_timeout {
            fixed.push("shutdown.drain_timeout");
        }
        if cfg.admin != f.admin {
            fixed.push("admin");
        }
        if (cfg.reload.watch, cfg.reload.debounce) != f.watch {
            fixed.push("reload");
        }
        if tls_settings(cfg) != f.tls {
            fixed.push("listeners' tls min_version / handshake_timeout (or which listeners have TLS)");
        }
        if !fixed.is_empty() {
            tracing::warn!(
                "reload: {} changed but are fixed at start (restart to apply them); the rest applies",
                fixed.join(", ")
            );
        }
    }
}

/// Added, removed and changed routes (by name) and upstreams (by name), for the log line.
fn diff(old: &Snapshot, new: &Snapshot) -> String {
    use std::collections::BTreeMap;
    fn part<T: PartialEq>(what: &str, old: &BTreeMap<&str, T>, new: &BTreeMap<&str, T>) -> String {
        let added: Vec<&str> = new.keys().filter(|k| !old.contains_key(*k)).copied().collect();
        let removed: Vec<&str> = old.keys().filter(|k| !new.contains_key(*k)).copied().collect();
        let changed: Vec<&str> =
            new.iter().filter(|(k, v)| old.get(*k).is_some_and(|o| o != *v)).map(|(k, _)| *k).collect();
        let mut s = format!("{what} +{} -{} ~{}", added.len(), removed.len(), changed.len());
        let mut detail = Vec::new();
        for (label, list) in [("added", &added), ("removed", &removed), ("changed", &changed)] {
            if !list.is_empty() {
                let more = if list.len() > 10 { format!(" and {} more", list.len() - 10) } else { String::new() };
                detail.push(format!("{label}: {}{more}", list[..list.len().min(10)].join(", ")));
            }
        }
        if !detail.is_empty() {
            s.push_str(&format!(" ({})", detail.join("; ")));
        }
        s
    }
    // A route is also changed when its upstream group's name is.
    fn routes(s: &Snapshot) -> BTreeMap<String, (&crate::route::Route, Option<&str>)> {
        s.routes.iter().map(|r| (r.name.clone(), (r, upstream_name(s, r)))).collect()
    }
    // Targets by pool key: a change of TLS trust or name is a change of the upstream.
    let ups = |s: &Snapshot| -> BTreeMap<String, (Vec<crate::upstream::pool::PoolKey>, usize, Duration)> {
        s.upstreams
            .iter()
            .map(|u| {
                (u.name.clone(), (u.targets.iter().map(|t| t.key).collect(), u.max_idle_per_target, u.idle_timeout))
            })
            .collect()
    };
    let (ro, rn, uo, un) = (routes(old), routes(new), ups(old), ups(new));
    fn by_ref<T>(m: &BTreeMap<String, T>) -> BTreeMap<&str, &T> {
        m.iter().map(|(k, v)| (k.as_str(), v)).collect()
    }
    format!("{}, {}", part("routes", &by_ref(&ro), &by_ref(&rn)), part("upstreams", &by_ref(&uo), &by_ref(&un)))
}

fn tls_settings(cfg: &Config) -> Vec<Option<(crate::tls::MinVersion, Duration)>> {
    cfg.listeners.iter().map(|l| l.tls.as_ref().map(|t| (t.min_version, t.handshake_timeout))).collect()
}

fn stamped(files: Vec<PathBuf>) -> (Vec<PathBuf>, Vec<Option<Stamp>>) {
    let stamps = files.iter().map(|f| stamp(f)).collect();
    (files, stamps)
}

/// Every certificate and key file of some TLS listeners.
fn tls_files<'a>(tls: impl Iterator<Item = Option<&'a crate::tls::TlsCfg>>) -> Vec<PathBuf> {
    tls.flatten().flat_map(|t| t.certs.iter().flat_map(|p| [p.cert.clone(), p.key.clone()])).collect()
}

fn upstream_name<'a>(s: &'a Snapshot, r: &crate::route::Route) -> Option<&'a str> {
    match r.action {
        crate::route::Action::Proxy { upstream, .. } => s.upstreams.get(upstream).map(|u| u.name.as_str()),
        _ => None,
    }
}

/// Identity of a file's version: modification time, length, inode.
type Stamp = (SystemTime, u64, u64);

/// Identity of the file's current version: modification time, length, inode.
fn stamp(p: &std::path::Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// A change acts once it has stood still: `ready` is true when the same new state has been seen
/// for `settle` (a file caught mid-write keeps changing and is not acted on).
struct Settle<T> {
    pending: Option<(T, Instant)>,
}

impl<T: PartialEq> Settle<T> {
    fn new() -> Self {
        Settle { pending: None }
    }

    fn ready(&mut self, now: T, settle: Duration) -> bool {
        match &self.pending {
            Some((p, since)) if *p == now => {
                let ok = since.elapsed() >= settle;
                if ok {
                    self.pending = None;
                }
                ok
            }
            _ => {
                self.pending = Some((now, Instant::now()));
                false
            }
        }
    }
}

/// How often the control thread looks at files and retired snapshots.
const CONTROL_TICK: Duration = Duration::from_millis(100);

/// One control thread, off the workers: frees retired snapshots, and polls the config file (when
/// `watch_config` gives its debounce) and the TLS certificate files, reloading what changed and
/// then stood still (the config for its debounce, certificates for a second). Writing a temporary
/// file and renaming it is the safe way to change either.
pub fn start_control(r: Arc<Reloader>, watch_config: Option<Duration>) -> std::io::Result<()> {
    let config_path = match (r.source(), watch_config) {
        (Source::File(p), Some(_)) => Some(p.clone()),
        _ => None,
    };
    std::thread::Builder::new().name("ringgate-control".into()).spawn(move || {
        let mut config_seen = config_path.as_deref().and_then(stamp);
        let mut config_settle = Settle::new();
        let mut certs_settle = Settle::new();
        loop {
            std::thread::sleep(CONTROL_TICK);
            r.reap();
            if crate::core::shutting_down() {
                continue;
            }
            if let (Some(path), Some(debounce)) = (&config_path, watch_config) {
                // Missing (mid-rename): wait for it.
                if let Some(now) = stamp(path).filter(|now| Some(*now) != config_seen) {
                    if config_settle.ready(now, debounce) {
                        let _ = r.reload("watch");
                        config_seen = Some(now);
                    }
                }
            }
            // The running certificate files and their state when last read (a reload may name others).
            let (files, seen) = r.cert_files();
            let now: Vec<Option<Stamp>> = files.iter().map(|f| stamp(f)).collect();
            if now != seen && certs_settle.ready(now, Duration::from_secs(1)) {
                r.reload_certs_now("certificate files changed");
            }
        }
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "[[listeners]]\naddress = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"u\"\ntargets = [\"127.0.0.1:9\"]\n[[routes]]\nprefix = \"/\"\nupstream = \"u\"\n";

    /// A replaced snapshot is freed by `reap` (the control thread), once no worker holds it.
    #[test]
    fn retired_snapshots_are_freed_off_the_workers() {
        let path = std::env::temp_dir().join(format!("ringgate-reload-unit-{}.toml", std::process::id()));
        std::fs::write(&path, CFG).expect("write");
        let cfg = config::load_file(&path).expect("valid");
        let shared: SharedSnapshot = Arc::new(arc_swap::ArcSwap::from_pointee(Snapshot::build(cfg.clone(), None, 1)));
        let r = Reloader::new(shared.clone(), Source::File(path.clone()), &cfg, None);
        let held_by_worker = shared.load_full();
        let first = Arc::downgrade(&held_by_worker);
        let ok = r.reload("test").expect("reload");
        assert_eq!(ok.generation, 2);
        r.reap();
        assert!(first.upgrade().is_some(), "still held by a worker: kept");
        drop(held_by_worker);
        assert!(first.upgrade().is_some(), "the worker's drop does not free it: the reaper holds the last reference");
        r.reap();
        assert!(first.upgrade().is_none(), "freed by reap");
        std::fs::write(&path, "not toml [").expect("write");
        assert!(r.reload("test").is_err());
        assert_eq!(r.current().generation, 2, "a refused reload keeps the running snapshot");
        let _ = std::fs::remove_file(&path);
    }
}
