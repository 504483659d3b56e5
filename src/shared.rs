//! The Snapshot: everything workers read and nobody mutates (compiled routes, upstream groups,
//! limits, forwarding rules), built whole off the workers and published behind one `ArcSwap`.
//!
//! A request loads the snapshot once (through a per-worker cache, see `core::LocalSnapshot`) and
//! keeps it to the end, so it never sees half of two configs. `reload` builds and swaps them.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use ipnet::IpNet;
use rustls_pki_types::ServerName;

use crate::config::{Config, Forwarding, Limits, TargetSpec};
use crate::route::Route;
use crate::router::Router;
use crate::upstream::pool::PoolKey;
use crate::upstream::tls::UpstreamTlsCfg;

pub struct Target {
    pub addr: SocketAddr,
    /// `host:port` as written, sent as Host to upstreams when the client sent none.
    pub authority: Bytes,
    /// Which pooled connections may serve this target: same address, same TLS identity.
    pub key: PoolKey,
    pub tls: Option<TargetTls>,
}

/// How to start TLS to a target.
pub struct TargetTls {
    pub connector: monoio_rustls::TlsConnector,
    /// Sent as SNI and checked in the certificate.
    pub name: ServerName<'static>,
}

impl Target {
    fn new(addr: SocketAddr, authority: &str, tls: Option<&UpstreamTlsCfg>) -> Option<Target> {
        let (key, tls) = match tls {
            None => (PoolKey { addr, tls: 0 }, None),
            Some(cfg) => {
                // Checked when the config was validated: a target without a usable name is refused there.
                let name = crate::upstream::tls::name_for(cfg, authority).ok()?;
                let mut h = crate::hash::FxHasher::default();
                (cfg.id, name.to_str()).hash(&mut h);
                let key = PoolKey { addr, tls: h.finish() | 1 };
                (key, Some(TargetTls { connector: cfg.client.clone().into(), name }))
            }
        };
        Some(Target { addr, authority: Bytes::from(authority.to_string()), key, tls })
    }
}

pub struct UpstreamGroup {
    pub name: String,
    /// `metrics::name_key` of the name, computed once (not per request).
    pub metrics_key: u64,
    pub targets: Vec<Target>,
    pub max_idle_per_target: usize,
    pub idle_timeout: Duration,
}

pub struct Snapshot {
    /// 1 for the config the process started with, +1 per successful reload.
    pub generation: u64,
    pub limits: Limits,
    pub forwarding: Forwarding,
    pub upstreams: Vec<UpstreamGroup>,
    pub routes: Vec<Route>,
    pub router: Router,
    /// JWT policies; `Route::auth` indexes this.
    pub auth: Vec<Arc<crate::auth::AuthPolicy>>,
    /// Make a W3C traceparent for requests without a valid one (`[tracing] generate`).
    pub trace_generate: bool,
    /// `[metrics] enabled`.
    pub metrics_enabled: bool,
    /// Rate-limit policies; `Route::rate_limits` indexes this.
    pub rate_limits: Vec<Arc<crate::ratelimit::RateLimitPolicy>>,
    /// Every target's pool key with its group's pool idle timeout (pooled connections under a
    /// key not here are closed).
    pub targets: crate::hash::FxHashMap<PoolKey, Duration>,
}

impl Snapshot {
    /// Build from a validated config; `demo` is the built-in demo upstream's address if started.
    /// Consumes the config: a 10,000-route table is moved, not copied.
    pub fn build(cfg: Config, demo: Option<SocketAddr>, generation: u64) -> Snapshot {
        let upstreams: Vec<UpstreamGroup> = cfg
            .upstreams
            .iter()
            .map(|u| UpstreamGroup {
                name: u.name.clone(),
                metrics_key: crate::metrics::name_key("upstream", &u.name),
                targets: u
                    .targets
                    .iter()
                    .filter_map(|t| match t {
                        TargetSpec::Addr { addr, authority } => Target::new(*addr, authority, u.tls.as_ref()),
                        TargetSpec::Demo => demo.and_then(|addr| Target::new(addr, &addr.to_string(), None)),
                    })
                    .collect(),
                max_idle_per_target: u.max_idle_per_target,
                idle_timeout: u.idle_timeout,
            })
            .collect();
        let targets = upstreams.iter().flat_map(|g| g.targets.iter().map(|t| (t.key, g.idle_timeout))).collect();
        Snapshot {
            generation,
            limits: cfg.limits,
            forwarding: cfg.forwarding,
            upstreams,
            routes: cfg.routes,
            router: cfg.router,
            auth: cfg.auth,
            rate_limits: cfg.rate_limits,
            trace_generate: cfg.trace_generate,
            metrics_enabled: cfg.metrics_enabled,
            targets,
        }
    }

    /// Whether `ip` (IPv4-mapped addresses already unmapped, see `http::conn`) is a trusted proxy.
    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        self.forwarding.trusted_proxies.iter().any(|n: &IpNet| n.contains(&ip))
    }
}

/// The process-wide published snapshot.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;
