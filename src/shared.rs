//! The Snapshot: everything workers read and nobody mutates (routes, upstream groups, limits,
//! forwarding rules), built whole off the workers and published behind one `ArcSwap`.
//!
//! A request loads the snapshot once (through a per-worker cache, see `core::LocalSnapshot`) and
//! keeps it to the end, so it never sees half of two configs. The router issue replaces the
//! linear prefix matching here with a compiled trie.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use ipnet::IpNet;

use crate::config::{Config, Forwarding, Limits, RouteTimeouts, TargetSpec};

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

pub struct Route {
    pub prefix: Vec<u8>,
    pub host: Option<Vec<u8>>,
    pub upstream: usize,
    pub max_body_bytes: u64,
    pub timeouts: RouteTimeouts,
}

pub struct Snapshot {
    pub limits: Limits,
    pub forwarding: Forwarding,
    pub upstreams: Vec<UpstreamGroup>,
    /// Sorted so the first match is the answer: host routes first, then longer prefixes.
    pub routes: Vec<Route>,
}

impl Snapshot {
    /// Build from a validated config; `demo` is the built-in demo upstream's address if started.
    pub fn build(cfg: &Config, demo: Option<SocketAddr>) -> Snapshot {
        let upstreams = cfg
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
        let mut routes: Vec<Route> = cfg
            .routes
            .iter()
            .map(|r| Route {
                prefix: r.prefix.as_bytes().to_vec(),
                host: r.host.as_ref().map(|h| h.as_bytes().to_vec()),
                upstream: r.upstream,
                max_body_bytes: r.max_body_bytes,
                timeouts: r.timeouts,
            })
            .collect();
        routes.sort_by(|a, b| b.host.is_some().cmp(&a.host.is_some()).then(b.prefix.len().cmp(&a.prefix.len())));
        Snapshot { limits: cfg.limits.clone(), forwarding: cfg.forwarding.clone(), upstreams, routes }
    }

    /// The route for a host (port and case ignored) and path.
    pub fn route(&self, host: Option<&[u8]>, path: &[u8]) -> Option<&Route> {
        let host = host.map(strip_port);
        self.routes.iter().find(|r| {
            let host_ok = match (&r.host, host) {
                (None, _) => true,
                (Some(h), Some(req)) => h.eq_ignore_ascii_case(req),
                (Some(_), None) => false,
            };
            host_ok && path.starts_with(&r.prefix)
        })
    }

    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.forwarding.trusted_proxies.iter().any(|n: &IpNet| n.contains(&ip))
    }
}

fn strip_port(h: &[u8]) -> &[u8] {
    if h.first() == Some(&b'[') {
        return match h.iter().position(|&b| b == b']') {
            Some(e) => &h[..=e],
            None => h,
        };
    }
    match h.iter().rposition(|&b| b == b':') {
        Some(p) => &h[..p],
        None => h,
    }
}

/// The process-wide published snapshot.
pub type SharedSnapshot = Arc<ArcSwap<Snapshot>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    #[test]
    fn longest_prefix_and_host_first() {
        let src = r#"
[[listeners]]
address = "127.0.0.1:0"
[[upstreams]]
name = "a"
targets = ["127.0.0.1:1"]
[[upstreams]]
name = "b"
targets = ["127.0.0.1:2"]
[[routes]]
prefix = "/"
upstream = "a"
[[routes]]
prefix = "/api/"
upstream = "b"
[[routes]]
prefix = "/"
host = "x.example"
upstream = "b"
"#;
        let cfg = load_str(src, "t").expect("valid");
        let s = Snapshot::build(&cfg, None);
        assert_eq!(s.route(Some(b"y"), b"/api/v1").map(|r| r.upstream), Some(1));
        assert_eq!(s.route(Some(b"y"), b"/other").map(|r| r.upstream), Some(0));
        assert_eq!(s.route(Some(b"X.example:8080"), b"/other").map(|r| r.upstream), Some(1));
    }
}
