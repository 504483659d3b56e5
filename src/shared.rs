//! The Snapshot: everything workers read and nobody mutates (compiled routes, upstream groups,
//! limits, forwarding rules), built whole off the workers and published behind one `ArcSwap`.
//!
//! A request loads the snapshot once (through a per-worker cache, see `core::LocalSnapshot`) and
//! keeps it to the end, so it never sees half of two configs. `reload` builds and swaps them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use ipnet::IpNet;

use crate::config::{Config, Forwarding, Limits, TargetSpec};
use crate::route::Route;
use crate::router::Router;

pub struct Target {
    pub addr: SocketAddr,
    /// `host:port` as written, sent as Host to upstreams when the client sent none.
    pub authority: Bytes,
}

pub struct UpstreamGroup {
    pub name: String,
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
    /// Every target address with its group's pool idle timeout (pooled connections to an address
    /// not here are closed).
    pub targets: crate::hash::FxHashMap<SocketAddr, Duration>,
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
                targets: u
                    .targets
                    .iter()
                    .filter_map(|t| match t {
                        TargetSpec::Addr { addr, authority } => {
                            Some(Target { addr: *addr, authority: Bytes::from(authority.clone()) })
                        }
                        TargetSpec::Demo => demo.map(|addr| Target { addr, authority: Bytes::from(addr.to_string()) }),
                    })
                    .collect(),
                max_idle_per_target: u.max_idle_per_target,
                idle_timeout: u.idle_timeout,
            })
            .collect();
        let targets = upstreams.iter().flat_map(|g| g.targets.iter().map(|t| (t.addr, g.idle_timeout))).collect();
        Snapshot {
            generation,
            limits: cfg.limits,
            forwarding: cfg.forwarding,
            upstreams,
            routes: cfg.routes,
            router: cfg.router,
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
