//! The config file as written (serde mirror). Every table denies unknown keys; values that need
//! checking are kept as text with their span so `validate` can name the line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

pub type Text = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub workers: Option<Spanned<i64>>,
    pub pin_cores: Option<Vec<Spanned<i64>>>,
    pub driver: Option<Text>,
    #[serde(default)]
    pub listeners: Vec<RawListener>,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub forwarding: RawForwarding,
    #[serde(default)]
    pub shutdown: RawShutdown,
    #[serde(default)]
    pub upstreams: Vec<RawUpstream>,
    #[serde(default)]
    pub routes: Vec<Spanned<RawRoute>>,
    pub admin: Option<RawAdmin>,
    pub upgrade: Option<RawUpgrade>,
    #[serde(default)]
    pub reload: RawReload,
    #[serde(default)]
    pub auth: Vec<Spanned<RawAuth>>,
    #[serde(default)]
    pub rate_limits: Vec<Spanned<RawRateLimit>>,
    pub access_log: Option<Spanned<RawAccessLog>>,
    #[serde(default)]
    pub tracing: RawTracing,
    #[serde(default)]
    pub metrics: RawMetrics,
}

/// `[metrics]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics { enabled: true }
    }
}

/// `[access_log]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    pub path: Option<Text>,
    pub format: Option<Text>,
    #[serde(default)]
    pub include_query: bool,
    pub buffer_bytes: Option<Spanned<i64>>,
    pub flush_interval: Option<Text>,
    pub queue: Option<Spanned<i64>>,
}

/// `[tracing]`: W3C trace context.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTracing {
    /// Make a traceparent for requests that carry none (or a malformed one).
    #[serde(default = "yes")]
    pub generate: bool,
}

impl Default for RawTracing {
    fn default() -> Self {
        RawTracing { generate: true }
    }
}

/// `[[rate_limits]]`: a rate-limit policy (docs/ratelimit.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub name: Text,
    pub key: Option<Text>,
    pub rate: Text,
    pub burst: Option<Spanned<i64>>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub headers: bool,
    #[serde(default)]
    pub legacy_headers: bool,
    pub max_keys: Option<Spanned<i64>>,
    pub plan_from: Option<Text>,
    #[serde(default)]
    pub plan_table: BTreeMap<String, Text>,
    #[serde(default)]
    pub plans: Vec<Spanned<RawPlan>>,
}

/// One plan of a rate-limit policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlan {
    pub name: Text,
    pub rate: Option<Text>,
    pub burst: Option<Spanned<i64>>,
    #[serde(default)]
    pub unlimited: bool,
}

/// `[[auth]]`: a JWT policy (docs/auth.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub name: Text,
    pub token_header: Option<Text>,
    pub token_cookie: Option<Text>,
    #[serde(default)]
    pub issuers: Vec<Text>,
    #[serde(default)]
    pub audiences: Vec<Text>,
    pub leeway: Option<Text>,
    #[serde(default)]
    pub required_claims: Vec<Text>,
    pub max_token_bytes: Option<Spanned<i64>>,
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, Text>,
    #[serde(default = "yes")]
    pub forward_authorization: bool,
    pub plan_claim: Option<Text>,
    #[serde(default)]
    pub prefixes: Vec<Text>,
    #[serde(default)]
    pub keys: Vec<Spanned<RawKey>>,
}

/// One entry of an auth policy's `keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub kid: Option<Text>,
    pub algorithm: Option<Text>,
    #[serde(default)]
    pub algorithms: Vec<Text>,
    pub secret_env: Option<Text>,
    pub secret_file: Option<Text>,
    pub pem_file: Option<Text>,
    pub jwks_file: Option<Text>,
    pub jwks_url: Option<Text>,
    pub refresh_interval: Option<Text>,
    pub min_refresh_interval: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub address: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpgrade {
    pub socket: Text,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReload {
    #[serde(default)]
    pub watch: bool,
    pub debounce: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub address: Text,
    pub backlog: Option<Spanned<i64>>,
    #[serde(default)]
    pub reuse_port_group: bool,
    pub proxy_protocol: Option<Text>,
    #[serde(default)]
    pub proxy_protocol_from: Vec<Text>,
    pub tls: Option<Spanned<RawTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub certificates: Vec<RawCertPair>,
    pub min_version: Option<Text>,
    pub handshake_timeout: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertPair {
    pub cert: Text,
    pub key: Text,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_request_line: Option<Spanned<i64>>,
    pub max_header_bytes: Option<Spanned<i64>>,
    pub max_headers: Option<Spanned<i64>>,
    pub max_body_bytes: Option<Spanned<i64>>,
    pub header_read_timeout: Option<Text>,
    pub keepalive_timeout: Option<Text>,
    pub max_requests_per_connection: Option<Spanned<i64>>,
    pub max_connections_per_worker: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwarding {
    #[serde(default)]
    pub trusted_proxies: Vec<Text>,
    #[serde(default = "yes")]
    pub x_forwarded_for: bool,
    #[serde(default = "yes")]
    pub x_forwarded_proto: bool,
    #[serde(default = "yes")]
    pub x_forwarded_host: bool,
    #[serde(default = "yes")]
    pub request_id: bool,
}

impl Default for RawForwarding {
    fn default() -> Self {
        RawForwarding {
            trusted_proxies: Vec::new(),
            x_forwarded_for: true,
            x_forwarded_proto: true,
            x_forwarded_host: true,
            request_id: true,
        }
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    pub drain_timeout: Option<Text>,
    pub grace_period: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub name: Text,
    pub targets: Vec<Text>,
    pub max_idle_per_target: Option<Spanned<i64>>,
    pub idle_timeout: Option<Text>,
    pub tls: Option<Spanned<RawUpstreamTls>>,
}

/// `[upstreams.tls]`: TLS to the group's targets.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    /// PEM bundle of trusted CAs; absent = the system's roots.
    pub ca: Option<Text>,
    /// Name sent as SNI and checked in the certificate; absent = each target's host.
    pub server_name: Option<Text>,
    pub min_version: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: Option<Text>,
    pub host: Option<Text>,
    pub path: Option<Text>,
    pub prefix: Option<Text>,
    pub methods: Option<Vec<Text>>,
    #[serde(default)]
    pub match_headers: Vec<RawCond>,
    #[serde(default)]
    pub match_query: Vec<RawCond>,
    #[serde(default)]
    pub allow_encoded_slash: bool,
    pub upstream: Option<Text>,
    pub rewrite: Option<Spanned<RawRewrite>>,
    pub respond: Option<Spanned<RawRespond>>,
    pub redirect: Option<Spanned<RawRedirect>>,
    #[serde(default)]
    pub health: bool,
    pub request_headers: Option<Spanned<RawHeaderOps>>,
    pub response_headers: Option<Spanned<RawHeaderOps>>,
    pub max_body_bytes: Option<Spanned<i64>>,
    pub connect_timeout: Option<Text>,
    pub response_timeout: Option<Text>,
    pub idle_timeout: Option<Text>,
    pub total_timeout: Option<Text>,
    /// An `[[auth]]` policy name, or "anonymous".
    pub auth: Option<Text>,
    #[serde(default)]
    pub scopes: Vec<Text>,
    pub scopes_match: Option<Text>,
    /// `[[rate_limits]]` policy names, all checked in order.
    #[serde(default)]
    pub rate_limits: Vec<Text>,
    /// Add `Server-Timing: gw;dur=..., upstream;dur=...` to responses.
    #[serde(default)]
    pub server_timing: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCond {
    pub name: Text,
    pub value: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRewrite {
    pub strip_prefix: Option<Text>,
    pub replace_prefix: Option<Text>,
    pub template: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRespond {
    pub status: Spanned<i64>,
    #[serde(default)]
    pub body: String,
    pub content_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedirect {
    pub status: Option<Spanned<i64>>,
    pub location: Text,
    pub keep_query: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderOps {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub add: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: Vec<String>,
}
