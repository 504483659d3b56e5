//! Configuration: one TOML file, loaded in stages (raw serde mirror → typed and validated), with
//! every problem collected and reported as `file:line: key: what is wrong (what to do)`.
//!
//! Owns defaults and validation; resolves upstream host names (on the calling thread, never on a
//! worker). Produces a [`Config`] that `shared::Snapshot::build` turns into what workers read.

mod auth;
mod file;
mod ratelimit;
mod routes;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use file::{RawConfig, Text};
use ipnet::IpNet;
use toml::Spanned;

use crate::http::parse::{HeadLimits, MAX_HEADERS_HARD};
use crate::route::Route;
use crate::router::Router;

/// The config used when ringgate starts with no arguments.
pub const DEFAULT_CONFIG: &str = r#"# ringgate's embedded default: a proxy on 127.0.0.1:8080 in front of the built-in demo upstream.
[[listeners]]
address = "127.0.0.1:8080"

[[upstreams]]
name = "demo"
targets = ["builtin:demo"]

[[routes]]
prefix = "/"
upstream = "demo"
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverChoice {
    Auto,
    Uring,
    Epoll,
}

impl DriverChoice {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(DriverChoice::Auto),
            "uring" | "io_uring" => Some(DriverChoice::Uring),
            "epoll" | "legacy" => Some(DriverChoice::Epoll),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub workers: usize,
    pub pin_cores: Vec<usize>,
    pub driver: DriverChoice,
    pub listeners: Vec<ListenerCfg>,
    pub limits: Limits,
    pub forwarding: Forwarding,
    pub drain_timeout: Duration,
    /// How long listeners keep accepting after a drain starts (the balancer notices `/readyz`).
    pub grace_period: Duration,
    pub upstreams: Vec<UpstreamCfg>,
    pub routes: Vec<Route>,
    /// JWT policies (routes refer to them by index).
    pub auth: Vec<std::sync::Arc<crate::auth::AuthPolicy>>,
    /// Rate-limit policies (routes refer to them by index).
    pub rate_limits: Vec<std::sync::Arc<crate::ratelimit::RateLimitPolicy>>,
    /// `[access_log]` (None = off); fixed at start.
    pub access_log: Option<crate::accesslog::AccessLogCfg>,
    /// Make a W3C traceparent for requests without a valid one.
    pub trace_generate: bool,
    /// Count requests into the per-core metrics (`[metrics] enabled`, default true).
    pub metrics_enabled: bool,
    /// The routes compiled (index = position in `routes`).
    pub router: Router,
    /// Admin listener (`POST /reload`, `GET /status`); None = off.
    pub admin: Option<SocketAddr>,
    pub reload: ReloadCfg,
    /// Unix socket a successor process takes the listening sockets from (`run --takeover`).
    pub upgrade_socket: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ReloadCfg {
    /// Poll the config file and reload when it changed and then stayed unchanged for `debounce`.
    pub watch: bool,
    pub debounce: Duration,
}

#[derive(Debug, Clone)]
pub struct ListenerCfg {
    pub addr: SocketAddr,
    pub backlog: i32,
    pub reuse_port_group: bool,
    pub proxy: ProxyProtocol,
    pub tls: Option<crate::tls::TlsCfg>,
}

/// Whether a listener takes a PROXY protocol header, and from whom.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyProtocol {
    pub mode: ProxyMode,
    /// Peers allowed to send one; a header from anyone else closes the connection.
    pub from: Vec<IpNet>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProxyMode {
    #[default]
    Off,
    /// A header is used when a trusted peer sends one; plain HTTP otherwise.
    Optional,
    /// Every connection must start with a header, from a trusted peer.
    Required,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub head: HeadLimits,
    pub max_body_bytes: u64,
    pub header_read_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_requests_per_connection: u64,
    pub max_connections_per_worker: usize,
}

#[derive(Debug, Clone)]
pub struct Forwarding {
    pub trusted_proxies: Vec<IpNet>,
    pub x_forwarded_for: bool,
    pub x_forwarded_proto: bool,
    pub x_forwarded_host: bool,
    pub request_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    Addr {
        addr: SocketAddr,
        authority: String,
    },
    /// The built-in demo echo upstream, started by the binary.
    Demo,
}

#[derive(Debug, Clone)]
pub struct UpstreamCfg {
    pub name: String,
    pub targets: Vec<TargetSpec>,
    pub max_idle_per_target: usize,
    pub idle_timeout: Duration,
    /// TLS to the targets (None = plain TCP).
    pub tls: Option<crate::upstream::tls::UpstreamTlsCfg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteTimeouts {
    pub connect: Duration,
    pub response: Duration,
    pub idle: Duration,
    /// None = no limit on the whole exchange.
    pub total: Option<Duration>,
}

/// One problem found in a config file.
#[derive(Debug, Clone)]
pub struct Issue {
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
}

/// All problems found in one config file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    pub file: String,
    pub issues: Vec<Issue>,
}

impl ConfigError {
    pub fn render(&self) -> String {
        let mut s = String::new();
        for i in &self.issues {
            match i.line {
                Some(l) => s.push_str(&format!("{}:{}: {}: {}\n", self.file, l, i.key, i.message)),
                None => s.push_str(&format!("{}: {}: {}\n", self.file, i.key, i.message)),
            }
        }
        s
    }
}

struct Checker {
    /// Byte offset where each line after the first starts (a route table has many lines).
    newlines: Vec<usize>,
    issues: Vec<Issue>,
    /// Directory of the config file: relative paths in it are relative to it.
    base: Option<std::path::PathBuf>,
}

impl Checker {
    fn new(src: &str, base: Option<std::path::PathBuf>) -> Checker {
        Checker { newlines: memchr::memchr_iter(b'\n', src.as_bytes()).collect(), issues: Vec::new(), base }
    }
    fn path(&self, p: &str) -> std::path::PathBuf {
        match &self.base {
            Some(b) if std::path::Path::new(p).is_relative() => b.join(p),
            _ => std::path::PathBuf::from(p),
        }
    }
    fn line_of(&self, span: std::ops::Range<usize>) -> usize {
        self.newlines.partition_point(|&n| n < span.start) + 1
    }
    fn err(&mut self, span: Option<std::ops::Range<usize>>, key: impl Into<String>, message: impl Into<String>) {
        let line = span.map(|s| self.line_of(s));
        self.issues.push(Issue { line, key: key.into(), message: message.into() });
    }
    fn duration(&mut self, v: &Option<Text>, key: &str, default: Duration) -> Duration {
        let Some(v) = v else { return default };
        match humantime::parse_duration(v.get_ref().trim()) {
            Ok(d) => d,
            Err(e) => {
                self.err(
                    Some(v.span()),
                    key,
                    format!("invalid duration {:?}: {e} (write e.g. \"500ms\", \"10s\", \"1m\")", v.get_ref()),
                );
                default
            }
        }
    }
    fn int(&mut self, v: &Option<Spanned<i64>>, key: &str, default: i64, min: i64, max: i64) -> i64 {
        let Some(v) = v else { return default };
        let n = *v.get_ref();
        if n < min || n > max {
            self.err(Some(v.span()), key, format!("{n} is out of range (use {min}..={max})"));
            return default;
        }
        n
    }
}

/// Load and validate a config file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let file = path.display().to_string();
    let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        issues: vec![Issue { line: None, key: "(file)".into(), message: format!("cannot read: {e}") }],
    })?;
    load_str_in(&src, &file, path.parent().map(|p| p.to_path_buf()))
}

/// Parse and validate config text; `file` names it in messages; relative paths in it are
/// relative to the current directory.
pub fn load_str(src: &str, file: &str) -> Result<Config, ConfigError> {
    load_str_in(src, file, None)
}

fn load_str_in(src: &str, file: &str, base: Option<std::path::PathBuf>) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(src).map_err(|e| {
        let line = e.span().map(|s| src[..s.start.min(src.len())].matches('\n').count() + 1);
        ConfigError {
            file: file.to_string(),
            issues: vec![Issue { line, key: "(syntax)".into(), message: e.message().trim().to_string() }],
        }
    })?;
    let mut c = Checker::new(src, base);
    let cfg = validate(&raw, &mut c);
    if c.issues.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError { file: file.to_string(), issues: c.issues })
    }
}

fn available_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

fn validate(raw: &RawConfig, c: &mut Checker) -> Config {
    let workers = c.int(&raw.workers, "workers", available_cpus() as i64, 1, 1024) as usize;
    let cpus = available_cpus().max(1) as i64;
    let mut pin_cores = Vec::new();
    for (i, p) in raw.pin_cores.iter().flatten().enumerate() {
        let n = *p.get_ref();
        if !(0..4096).contains(&n) {
            c.err(
                Some(p.span()),
                format!("pin_cores[{i}]"),
                format!("CPU {n} does not exist (this machine has {cpus})"),
            );
        } else {
            pin_cores.push(n as usize);
        }
    }
    let driver = match &raw.driver {
        None => DriverChoice::Auto,
        Some(d) => DriverChoice::parse(d.get_ref()).unwrap_or_else(|| {
            c.err(
                Some(d.span()),
                "driver",
                format!("unknown driver {:?} (use \"auto\", \"uring\" or \"epoll\")", d.get_ref()),
            );
            DriverChoice::Auto
        }),
    };

    if raw.listeners.is_empty() {
        c.err(
            None,
            "listeners",
            "no listener configured (add a [[listeners]] table with address = \"127.0.0.1:8080\")",
        );
    }
    let mut listeners = Vec::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        let key = format!("listeners[{i}].address");
        match l.address.get_ref().parse::<SocketAddr>() {
            Ok(addr) => {
                if listeners.iter().any(|x: &ListenerCfg| x.addr == addr && addr.port() != 0) {
                    c.err(Some(l.address.span()), &key, format!("{addr} is listed twice (remove one)"));
                }
                let backlog = c.int(&l.backlog, &format!("listeners[{i}].backlog"), 4096, 1, 1 << 20) as i32;
                let proxy = proxy_protocol(c, l, i);
                let tls = l.tls.as_ref().and_then(|t| tls_cfg(c, t, i));
                listeners.push(ListenerCfg { addr, backlog, reuse_port_group: l.reuse_port_group, proxy, tls });
            }
            Err(_) => c.err(
                Some(l.address.span()),
                key,
                format!("{:?} is not IP:port (write \"127.0.0.1:8080\" or \"[::1]:8080\")", l.address.get_ref()),
            ),
        }
    }

    let lr = &raw.limits;
    let head = HeadLimits {
        max_request_line: c.int(&lr.max_request_line, "limits.max_request_line", 8192, 64, 1 << 20) as usize,
        max_header_bytes: c.int(&lr.max_header_bytes, "limits.max_header_bytes", 32768, 256, 1 << 22) as usize,
        max_headers: c.int(&lr.max_headers, "limits.max_headers", 100, 1, MAX_HEADERS_HARD as i64) as usize,
    };
    let default_body = c.int(&lr.max_body_bytes, "limits.max_body_bytes", 100 << 20, 0, i64::MAX) as u64;
    let limits = Limits {
        head,
        max_body_bytes: default_body,
        header_read_timeout: c.duration(&lr.header_read_timeout, "limits.header_read_timeout", Duration::from_secs(10)),
        keepalive_timeout: c.duration(&lr.keepalive_timeout, "limits.keepalive_timeout", Duration::from_secs(60)),
        max_requests_per_connection: c.int(
            &lr.max_requests_per_connection,
            "limits.max_requests_per_connection",
            10_000,
            1,
            i64::MAX,
        ) as u64,
        max_connections_per_worker: c.int(
            &lr.max_connections_per_worker,
            "limits.max_connections_per_worker",
            100_000,
            1,
            10_000_000,
        ) as usize,
    };
    if limits.header_read_timeout.is_zero() {
        c.err(None, "limits.header_read_timeout", "must be greater than 0");
    }

    let f = &raw.forwarding;
    let trusted = cidrs(c, &f.trusted_proxies, "forwarding.trusted_proxies");
    let forwarding = Forwarding {
        trusted_proxies: trusted,
        x_forwarded_for: f.x_forwarded_for,
        x_forwarded_proto: f.x_forwarded_proto,
        x_forwarded_host: f.x_forwarded_host,
        request_id: f.request_id,
    };
    let drain_timeout = c.duration(&raw.shutdown.drain_timeout, "shutdown.drain_timeout", Duration::from_secs(30));
    let grace_period = c.duration(&raw.shutdown.grace_period, "shutdown.grace_period", Duration::ZERO);

    let mut upstreams: Vec<UpstreamCfg> = Vec::new();
    for (i, u) in raw.upstreams.iter().enumerate() {
        let name = u.name.get_ref().clone();
        if name.is_empty() {
            c.err(Some(u.name.span()), format!("upstreams[{i}].name"), "empty name");
        }
        if upstreams.iter().any(|x| x.name == name) {
            c.err(
                Some(u.name.span()),
                format!("upstreams[{i}].name"),
                format!("upstream {name:?} is defined twice (rename one)"),
            );
        }
        if u.targets.is_empty() {
            c.err(
                Some(u.name.span()),
                format!("upstreams[{i}].targets"),
                "no targets (add at least one \"host:port\")",
            );
        }
        let mut targets = Vec::new();
        for (j, t) in u.targets.iter().enumerate() {
            let key = format!("upstreams[{i}].targets[{j}]");
            let s = t.get_ref().trim();
            if s == "builtin:demo" {
                targets.push(TargetSpec::Demo);
                continue;
            }
            match resolve(s) {
                Ok(addr) => targets.push(TargetSpec::Addr { addr, authority: s.to_string() }),
                Err(e) => c.err(Some(t.span()), key, e),
            }
        }
        let max_idle =
            c.int(&u.max_idle_per_target, &format!("upstreams[{i}].max_idle_per_target"), 64, 0, 1 << 20) as usize;
        let idle_timeout =
            c.duration(&u.idle_timeout, &format!("upstreams[{i}].idle_timeout"), Duration::from_secs(60));
        let tls = u.tls.as_ref().and_then(|t| upstream_tls(c, t, i, &targets));
        upstreams.push(UpstreamCfg { name, targets, max_idle_per_target: max_idle, idle_timeout, tls });
    }

    let access_log = raw.access_log.as_ref().map(|a| access_log(c, a));
    let auth = auth::validate_policies(c, &raw.auth);
    let rate_limits = ratelimit::validate_policies(c, &raw.rate_limits, workers);
    let (routes, router) = routes::validate_routes(
        c,
        &raw.routes,
        &upstreams,
        default_body,
        &auth,
        &raw.auth,
        (&rate_limits, &raw.rate_limits),
    );

    let admin = raw.admin.as_ref().and_then(|a| match &a.address {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 9901))),
        Some(t) => match t.get_ref().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                c.err(
                    Some(t.span()),
                    "admin.address",
                    format!("{:?} is not IP:port (write \"127.0.0.1:9901\")", t.get_ref()),
                );
                None
            }
        },
    });
    let upgrade_socket = raw.upgrade.as_ref().and_then(|u| {
        let text = u.socket.get_ref().trim();
        let p = c.path(text);
        // sun_path holds 107 bytes; the socket is first bound as PATH.<pid> (up to 8 more).
        if text.is_empty() || p.as_os_str().len() > 99 {
            c.err(
                Some(u.socket.span()),
                "upgrade.socket",
                format!("{} is not a Unix socket path of 1 to 99 bytes", p.display()),
            );
            None
        } else {
            Some(p)
        }
    });
    let reload = ReloadCfg {
        watch: raw.reload.watch,
        debounce: c.duration(&raw.reload.debounce, "reload.debounce", Duration::from_millis(500)),
    };
    if reload.debounce < Duration::from_millis(10) {
        c.err(None, "reload.debounce", "must be at least 10ms (a file being written needs time to settle)");
    }

    Config {
        workers,
        pin_cores,
        driver,
        listeners,
        limits,
        forwarding,
        drain_timeout,
        grace_period,
        upstreams,
        routes,
        auth,
        rate_limits,
        access_log,
        trace_generate: raw.tracing.generate,
        metrics_enabled: raw.metrics.enabled,
        router,
        admin,
        reload,
        upgrade_socket,
    }
}

fn cidrs(c: &mut Checker, list: &[Text], key: &str) -> Vec<IpNet> {
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let s = t.get_ref().trim();
        match s.parse::<IpNet>().or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from)) {
            Ok(n) => out.push(n),
            Err(_) => c.err(
                Some(t.span()),
                format!("{key}[{i}]"),
                format!("{s:?} is not a CIDR (write \"10.0.0.0/8\" or an address)"),
            ),
        }
    }
    out
}

/// A listener's `tls` table; the certificates are loaded and checked here, so `ringgate check`
/// and a reload refuse a bad or expired one with its file and the reason.
fn tls_cfg(c: &mut Checker, t: &Spanned<file::RawTls>, i: usize) -> Option<crate::tls::TlsCfg> {
    use crate::tls::{CertPaths, TlsCfg};
    let span = Some(t.span());
    let t = t.get_ref();
    let key = format!("listeners[{i}].tls");
    let min_version = min_version(c, &t.min_version, &key);
    let handshake_timeout =
        c.duration(&t.handshake_timeout, &format!("{key}.handshake_timeout"), Duration::from_secs(10));
    if t.certificates.is_empty() {
        c.err(span, format!("{key}.certificates"), "no certificate (add { cert = \"a.crt\", key = \"a.key\" })");
        return None;
    }
    let certs: Vec<CertPaths> = t
        .certificates
        .iter()
        .map(|p| CertPaths { cert: c.path(p.cert.get_ref()), key: c.path(p.key.get_ref()) })
        .collect();
    match crate::tls::load(&certs) {
        Ok(set) => Some(TlsCfg { certs, min_version, handshake_timeout, loaded: std::sync::Arc::new(set) }),
        Err(e) => {
            c.err(span, format!("{key}.certificates"), e);
            None
        }
    }
}

fn access_log(c: &mut Checker, a: &Spanned<file::RawAccessLog>) -> crate::accesslog::AccessLogCfg {
    use crate::accesslog::{AccessLogCfg, Format};
    let a = a.get_ref();
    let format = match a.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
        None | Some((_, "json")) => Format::Json,
        Some((_, "text")) => Format::Text,
        Some((f, other)) => {
            c.err(Some(f.span()), "access_log.format", format!("{other:?} is not \"json\" or \"text\""));
            Format::Json
        }
    };
    let path = match a.path.as_ref().map(|p| p.get_ref().as_str()) {
        None | Some("stdout") | Some("-") => None,
        Some(p) => Some(c.path(p)),
    };
    AccessLogCfg {
        path,
        format,
        include_query: a.include_query,
        buffer_bytes: c.int(&a.buffer_bytes, "access_log.buffer_bytes", 64 * 1024, 512, 64 << 20) as usize,
        flush_interval: c.duration(&a.flush_interval, "access_log.flush_interval", Duration::from_millis(200)),
        queue: c.int(&a.queue, "access_log.queue", 64, 1, 1 << 16) as usize,
    }
}

fn min_version(c: &mut Checker, v: &Option<Text>, key: &str) -> crate::tls::MinVersion {
    use crate::tls::MinVersion;
    match v.as_ref().map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "1.2")) => MinVersion::Tls12,
        Some((_, "1.3")) => MinVersion::Tls13,
        Some((v, other)) => {
            c.err(Some(v.span()), format!("{key}.min_version"), format!("{other:?} is not \"1.2\" or \"1.3\""));
            MinVersion::Tls12
        }
    }
}

/// An upstream group's `tls` table: the CA bundle (or system roots) is loaded and checked here,
/// and every target must have a name its certificate can be checked against.
fn upstream_tls(
    c: &mut Checker,
    t: &Spanned<file::RawUpstreamTls>,
    i: usize,
    targets: &[TargetSpec],
) -> Option<crate::upstream::tls::UpstreamTlsCfg> {
    use crate::upstream::tls;
    let span = Some(t.span());
    let t = t.get_ref();
    let key = format!("upstreams[{i}].tls");
    let min_version = min_version(c, &t.min_version, &key);
    let server_name = match &t.server_name {
        None => None,
        Some(n) => match tls::parse_name(n.get_ref()) {
            Ok(n) => Some(n),
            Err(e) => {
                c.err(Some(n.span()), format!("{key}.server_name"), e);
                return None;
            }
        },
    };
    let ca = t.ca.as_ref().map(|p| c.path(p.get_ref()));
    let cfg = match tls::client_config(ca.as_deref(), server_name, min_version) {
        Ok(cfg) => cfg,
        Err(e) => {
            c.err(t.ca.as_ref().map(|p| p.span()).or(span.clone()), format!("{key}.ca"), e);
            return None;
        }
    };
    for (j, target) in targets.iter().enumerate() {
        let problem = match target {
            TargetSpec::Demo => Err("the built-in demo upstream speaks plain HTTP (remove `tls`)".to_string()),
            TargetSpec::Addr { authority, .. } => {
                tls::name_for(&cfg, authority).map(|_| ()).map_err(|e| format!("{e} (set {key}.server_name)"))
            }
        };
        if let Err(e) = problem {
            c.err(span.clone(), format!("upstreams[{i}].targets[{j}]"), e);
        }
    }
    Some(cfg)
}

fn proxy_protocol(c: &mut Checker, l: &file::RawListener, i: usize) -> ProxyProtocol {
    let mode = match l.proxy_protocol.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "off")) => ProxyMode::Off,
        Some((_, "optional")) => ProxyMode::Optional,
        Some((_, "required")) => ProxyMode::Required,
        Some((m, other)) => {
            c.err(
                Some(m.span()),
                format!("listeners[{i}].proxy_protocol"),
                format!("{other:?} is not a mode (use \"off\", \"optional\" or \"required\")"),
            );
            ProxyMode::Off
        }
    };
    let from = cidrs(c, &l.proxy_protocol_from, &format!("listeners[{i}].proxy_protocol_from"));
    if mode != ProxyMode::Off && l.proxy_protocol_from.is_empty() {
        c.err(
            l.proxy_protocol.as_ref().map(|m| m.span()),
            format!("listeners[{i}].proxy_protocol_from"),
            "PROXY protocol is on but no peer may send it (list the balancer's addresses, e.g. [\"10.0.0.0/8\"])",
        );
    }
    ProxyProtocol { mode, from }
}

fn resolve(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if !s.contains(':') {
        return Err(format!("{s:?} has no port (write \"host:port\")"));
    }
    match s.to_socket_addrs() {
        Ok(mut it) => it.next().ok_or_else(|| format!("{s:?} resolved to no address")),
        Err(e) => Err(format!("cannot resolve {s:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        let c = load_str(DEFAULT_CONFIG, "default").expect("valid");
        assert_eq!(c.upstreams[0].targets, vec![TargetSpec::Demo]);
    }

    #[test]
    fn every_error_is_reported_with_line() {
        let src = "workers = 0\n[[listeners]]\naddress = \"nope\"\n[[routes]]\nprefix = \"x\"\nupstream = \"missing\"\nconnect_timeout = \"soon\"\n";
        let e = load_str(src, "t.toml").expect_err("invalid");
        let text = e.render();
        assert!(text.contains("t.toml:1: workers"), "{text}");
        assert!(text.contains("t.toml:3: listeners[0].address"), "{text}");
        assert!(text.contains("t.toml:5: routes[0].prefix"), "{text}");
        assert!(text.contains("t.toml:6: routes[0].upstream"), "{text}");
        assert!(text.contains("t.toml:7: routes[0].connect_timeout"), "{text}");
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e = load_str("[[listeners]]\naddress = \"127.0.0.1:1\"\nbaclog = 3\n", "t.toml").expect_err("invalid");
        assert!(e.render().contains("baclog"), "{}", e.render());
        assert!(e.render().contains("t.toml:3"), "{}", e.render());
    }
}
