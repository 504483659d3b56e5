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
    /// Each TLS listener's certificates (by position in the config's listener list, which is
    /// fixed at start), reloaded with the config and when their files change.
    certs: Mutex<Vec<(usize, crate::tls::CertStore)>>,
    /// The certificate and key files loaded last, with their state when read, for the file watch.
    cert_paths: Mutex<(Vec<PathBuf>, Vec<Option<Stamp>>)>,
    /// The running config's TLS settings per listener position (what the watch reloads).
    tls: Mutex<Vec<Option<crate::tls::TlsCfg>>>,
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
            certs: Mutex::new(Vec::new()),
            cert_paths: Mutex::new(stamped(tls_files(started))),
            tls: Mutex::new(started.listeners.iter().map(|l| l.tls.clone()).collect()),
        })
    }

    /// Register listener `index`'s certificate store (its position in the config's listeners).
    pub fn add_cert_store(&self, index: usize, store: crate::tls::CertStore) {
        self.certs.lock().unwrap_or_else(|e| e.into_inner()).push((index, store));
    }

    /// The TLS settings per listener position in `cfg`, for listeners still at the address they
    /// started on (listeners are fixed at start: a moved one keeps its running certificates).
    fn tls_of(&self, cfg: &Config) -> Vec<Option<crate::tls::TlsCfg>> {
        self.fixed
            .listeners
            .iter()
            .enumerate()
            .map(|(i, addr)| cfg.listeners.get(i).filter(|l| l.addr == *addr).and_then(|l| l.tls.clone()))
            .collect()
    }

    /// Load the certificates `tls` names per listener position; all or none are swapped in. New
    /// handshakes get the new certificates; established connections keep theirs.
    fn reload_certs(&self, tls: &[Option<crate::tls::TlsCfg>]) -> Result<usize, ConfigError> {
        let stores = self.certs.lock().unwrap_or_else(|e| e.into_inner());
        // Stamped before reading: a change during the load is seen by the watch afterwards.
        let files = stamped(
            tls.iter().flatten().flat_map(|t| t.certs.iter().flat_map(|p| [p.cert.clone(), p.key.clone()])).collect(),
        );
        let mut fresh = Vec::new();
        for (index, store) in stores.iter() {
            let Some(t) = tls.get(*index).and_then(|t| t.as_ref()) else {
                tracing::warn!(
                    "listener {index} changed address or lost its tls table: its certificates stay as they are"
                );
                continue;
            };
            match crate::tls::load(t) {
                Ok(set) => fresh.push((store, set)),
                Err(e) => {
                    // Seen as loaded: the watch retries when the files change again, not in a loop.
                    *self.cert_paths.lock().unwrap_or_else(|e| e.into_inner()) = files;
                    return Err(ConfigError {
                        file: self.source_name(),
                        issues: vec![Issue { line: None, key: format!("listeners[{index}].tls"), message: e }],
                    });
                }
            }
        }
        let n = fresh.len();
        for (store, set) in fresh {
            tracing::info!(certificates = %set.summary.join("; "), "TLS certificates loaded");
            store.store(Arc::new(set));
        }
        *self.cert_paths.lock().unwrap_or_else(|e| e.into_inner()) = files;
        *self.tls.lock().unwrap_or_else(|e| e.into_inner()) = tls.to_vec();
        Ok(n)
    }

    /// Reload only the certificates of the running config (their files changed).
    pub fn reload_certs_now(&self, trigger: &str) {
        let _one_at_a_time = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let running = self.tls.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match self.reload_certs(&running) {
            Ok(n) => tracing::info!(trigger, listeners = n, "TLS certificates reloaded"),
            Err(e) => {
                tracing::error!(trigger, "TLS certificate reload failed, the old ones stay:\n{}", e.render().trim_end())
            }
        }
    }

    /// The certificate and key files of the last load, and their state then.
    pub fn cert_files(&self) -> (Vec<PathBuf>, Vec<Option<Stamp>>) {
        self.cert_paths.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Free retired snapshots nobody else holds any more (call periodically, off the workers).
    pub fn reap(&self) {
        let mut retired = self.retired.lock().unwrap_or_else(|e| e.into_inner());
        retired.retain(|s| Arc::strong_count(s) > 1);
    }

    /// Start the thread that reaps retired snapshots every 200 ms.
    pub fn start_reaper(self: &Arc<Self>) -> std::io::Result<()> {
        let r = Arc::clone(self);
        std::thread::Builder::new().name("ringgate-reaper".into()).spawn(move || loop {
            std::thread::sleep(Duration::from_millis(200));
            r.reap();
        })?;
        Ok(())
    }

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
                    return Err(err);
                }
            }
        }
        self.warn_fixed(&cfg);
        if let Err(e) = self.reload_certs(&self.tls_of(&cfg)) {
            tracing::error!(trigger, "reload failed, the running config stays:\n{}", e.render().trim_end());
            return Err(e);
        }
        let old = self.shared.load_full();
        let generation = old.generation + 1;
        let new = Snapshot::build(cfg, *demo, generation);
        let changes = diff(&old, &new);
        self.shared.store(Arc::new(new));
        self.retired.lock().unwrap_or_else(|e| e.into_inner()).push(old);
        let took = started.elapsed();
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
    let ups = |s: &Snapshot| -> BTreeMap<String, (Vec<SocketAddr>, usize, Duration)> {
        s.upstreams
            .iter()
            .map(|u| {
                (u.name.clone(), (u.targets.iter().map(|t| t.addr).collect(), u.max_idle_per_target, u.idle_timeout))
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

/// Every certificate and key file of a config's TLS listeners.
fn tls_files(cfg: &Config) -> Vec<PathBuf> {
    cfg.listeners
        .iter()
        .filter_map(|l| l.tls.as_ref())
        .flat_map(|t| t.certs.iter().flat_map(|p| [p.cert.clone(), p.key.clone()]))
        .collect()
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

/// Poll the config file; reload once a change has stayed unchanged for `debounce`, so a file
/// being written is not read mid-write (writing a temp file and renaming it is safest).
pub fn watch(r: Arc<Reloader>, debounce: Duration) -> std::io::Result<()> {
    let Source::File(path) = r.source().clone() else { return Ok(()) };
    let poll = (debounce / 4).clamp(Duration::from_millis(20), Duration::from_millis(500));
    std::thread::Builder::new().name("ringgate-watch".into()).spawn(move || {
        let mut loaded = stamp(&path);
        let mut pending: Option<((SystemTime, u64, u64), Instant)> = None;
        loop {
            std::thread::sleep(poll);
            if crate::core::shutting_down() {
                return;
            }
            let now = stamp(&path);
            if now == loaded {
                pending = None;
                continue;
            }
            let Some(cur) = now else { continue }; // missing (mid-rename): wait
            match pending {
                Some((p, since)) if p == cur => {
                    if since.elapsed() >= debounce {
                        let _ = r.reload("watch");
                        loaded = Some(cur);
                        pending = None;
                    }
                }
                _ => pending = Some((cur, Instant::now())),
            }
        }
    })?;
    Ok(())
}

/// Poll the TLS certificate and key files every second; when one changed and then stood still for
/// a second, reload the certificates (not the rest of the config).
pub fn watch_certs(r: Arc<Reloader>) -> std::io::Result<()> {
    if r.certs.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
        return Ok(());
    }
    std::thread::Builder::new().name("ringgate-certwatch".into()).spawn(move || {
        let mut pending: Option<(Vec<Option<Stamp>>, Instant)> = None;
        loop {
            std::thread::sleep(Duration::from_millis(250));
            if crate::core::shutting_down() {
                return;
            }
            // The files of the last load and their state then (a config reload may name others).
            let (files, loaded) = r.cert_files();
            let now: Vec<Option<Stamp>> = files.iter().map(|f| stamp(f)).collect();
            if now == loaded {
                pending = None;
                continue;
            }
            match &pending {
                Some((p, since)) if *p == now => {
                    if since.elapsed() >= Duration::from_secs(1) {
                        r.reload_certs_now("certificate files changed");
                        pending = None;
                    }
                }
                _ => pending = Some((now, Instant::now())),
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
