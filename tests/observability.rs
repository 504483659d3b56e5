//! Observability (issue 7, docs/observability.md) end to end through the real binary:
//! - `GET /metrics` parsed by a real Prometheus parser (the Python `prometheus_client` package,
//!   installed by .ci/run): counters equal the requests sent (by route, method and status class,
//!   unmatched ones under `(unmatched)`), bytes, connections, upstream connects and pool hits on
//!   keep-alive, histogram counts and cumulative buckets, one `ringgate_worker_info` per worker,
//!   reloads and the config generation, rate-limit and auth decisions per policy;
//! - `GET /metrics/latency`: ordered quantiles, and gateway-added time excluding a slow upstream;
//! - `Server-Timing` on the routes that ask for it, and only there;
//! - the access log: JSON lines with the documented fields and the request's values, the query
//!   only when included, the text format, no token text under auth, SIGUSR1 reopening the file,
//!   and a blocked writer (a FIFO nobody reads) dropping and counting lines while the worker keeps
//!   serving;
//! - W3C trace context: a valid `traceparent` kept with a new parent id, one made when absent,
//!   a malformed one replaced (its `tracestate` dropped), and `[tracing] generate = false`.
//!
//! The metrics and access-log basics run under both drivers; the rest under io_uring
//! ([`DRIVER`]): recording sits above the I/O driver.

#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm::HS256;
use serde_json::{json, Value};

use support::gateway::{path_str, temp_path};
use support::jwt::{claims, TestKey};
use support::*;

const DRIVER: Driver = Driver::Uring;
const ADMIN: &str = "[admin]\naddress = \"127.0.0.1:0\"\n";
const SECRET_ENV: &str = "RINGGATE_TEST_OBS_SECRET";
const SECRET: &str = "an HMAC secret of more than thirty-two bytes";
/// The documented histogram buckets, seconds (docs/observability.md), then `+Inf`.
const BUCKETS: &str = "0.00005 0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 10 +Inf";
const HISTOGRAMS: [&str; 3] =
    ["ringgate_request_duration_seconds", "ringgate_upstream_duration_seconds", "ringgate_gateway_added_seconds"];
/// The fields of a JSON access-log line (docs/observability.md), `query` aside.
const FIELDS: &str = "time client method path status bytes_in bytes_out total_ms upstream_ms gateway_ms route \
                      upstream request_id tls auth ratelimit trace_id";
/// The W3C Trace Context spec's example.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const STATE: &str = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7";

// ---- the Prometheus parser ----

/// Reads exposition text on stdin, prints `[{family, type, name, labels, value}]` as JSON.
const PARSER: &str = r#"
import json, sys
try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:
    sys.stderr.write("IMPORT: %s\n" % e)
    sys.exit(3)
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"family": fam.name, "type": fam.type, "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;

struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One parsed scrape of `GET /metrics`.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
    /// Family name (without `_total` for counters, as the parser names them) → type.
    types: BTreeMap<String, String>,
}

/// Parses exposition text with `prometheus_client`; fails (never skips) when it is missing.
fn parse_exposition(text: &str) -> Scrape {
    let mut child = Command::new("python3")
        .args(["-c", PARSER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run python3 (needed to parse /metrics with prometheus_client): {e}"));
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = text.to_string();
    let feeder = thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("python3 runs");
    feeder.join().expect("feeder thread").expect("write the scrape to python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(3) && stderr.contains("IMPORT") {
        panic!(
            "the Python package prometheus_client is missing: `python3 -m pip install prometheus_client` ({stderr})"
        );
    }
    assert!(out.status.success(), "prometheus_client refused the exposition: {stderr}\n---\n{text}");
    let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).expect("the parser prints JSON");
    let mut scrape = Scrape { text: text.to_string(), samples: Vec::new(), types: BTreeMap::new() };
    for s in parsed {
        let labels = s["labels"].as_object().expect("labels").iter();
        let labels = labels.map(|(k, v)| (k.clone(), v.as_str().expect("label value").to_string())).collect();
        let (family, kind) = (s["family"].as_str().expect("family"), s["type"].as_str().expect("type"));
        scrape.types.insert(family.to_string(), kind.to_string());
        let value = s["value"].as_f64().expect("a finite value");
        scrape.samples.push(Sample { name: s["name"].as_str().expect("name").to_string(), labels, value });
    }
    scrape
}

impl Scrape {
    /// Samples named `name` whose labels include `labels`.
    fn matching<'a>(&'a self, name: &'a str, labels: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v))
        })
    }

    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// The value of the one sample `name{labels...}`.
    fn one(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = self.matching(name, labels).map(|s| s.value).collect();
        match found[..] {
            [v] => v,
            _ => panic!("{} samples {name}{labels:?} (want 1) in:\n{}", found.len(), self.text),
        }
    }

    fn assert_type(&self, family: &str, kind: &str) {
        assert_eq!(self.types.get(family).map(String::as_str), Some(kind), "TYPE of {family}:\n{}", self.text);
    }

    /// A histogram's `_count` for `route`, after checking its shape: the documented buckets,
    /// cumulative, `+Inf` equal to `_count`, `_sum` not negative.
    fn histogram(&self, name: &str, route: &str) -> f64 {
        let bucket = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = self
            .matching(&bucket, &[("route", route)])
            .map(|s| (s.labels["le"].parse::<f64>().expect("le is a number"), s.value))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let les: Vec<f64> = buckets.iter().map(|b| b.0).collect();
        let want: Vec<f64> = BUCKETS.split(' ').map(|b| b.parse().expect("a bound")).collect();
        assert_eq!(les, want, "{name}{{route={route:?}}} buckets");
        assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{name}{{route={route:?}}} not cumulative: {buckets:?}");
        let count = self.one(&format!("{name}_count"), &[("route", route)]);
        assert_eq!(buckets[buckets.len() - 1].1, count, "{name}{{route={route:?}}}: +Inf bucket vs _count");
        assert!(self.one(&format!("{name}_sum"), &[("route", route)]) >= 0.0, "{name}_sum");
        count
    }
}

/// `GET /metrics`, checked for the 0.0.4 content type and parsed.
fn scrape(gw: &Gateway) -> Scrape {
    let resp = Client::connect(gw.admin()).request(&req("GET", "/metrics", &[("Connection", "close")], b""));
    assert_eq!(resp.status, 200, "GET /metrics: {}", resp.body_str());
    let ctype = resp.header("content-type").unwrap_or("");
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "GET /metrics Content-Type {ctype:?}");
    parse_exposition(&resp.body_str())
}

/// Scrapes until `ready` holds (a request is counted just after its answer is written).
fn scrape_until(gw: &Gateway, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + PROMPT;
    loop {
        let s = scrape(gw);
        if ready(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "/metrics never showed {what}:\n{}", s.text);
        thread::sleep(Duration::from_millis(20));
    }
}

// ---- config and traffic ----

/// Proxying to `up` through `routes` (prefix, extra lines), each named by its prefix's first
/// segment (`/a/` → `a`), plus `raw` tables.
fn config(up: &TestUpstream, routes: &[(&str, &str)], raw: &str) -> ConfigBuilder {
    let mut b = ConfigBuilder::new().upstream("test", &[up.addr()], "");
    for (prefix, extra) in routes {
        let name = prefix.trim_matches('/').split('/').next().unwrap_or("root");
        b = b.route(prefix, "test", &format!("name = \"{name}\"\n{extra}"));
    }
    b.raw(raw)
}

/// An `[access_log]` table writing to `path`, flushed every 10 ms, with more `lines`.
fn access_log(path: &Path, lines: &[&str]) -> String {
    format!("[access_log]\npath = \"{}\"\nflush_interval = \"10ms\"\n{}\n", path_str(path), lines.join("\n"))
}

/// A temp file for an access log; the gateway appends to it.
fn log_file() -> TempFile {
    TempFile::new("access", "log", "")
}

/// Sends `requests` on one new keep-alive connection and asserts each is answered `want`;
/// returns the answers and the bytes sent.
fn send_all(gw: &Gateway, requests: &[Vec<u8>], want: u16) -> (Vec<Response>, usize) {
    let mut c = gw.client();
    let answers: Vec<Response> = requests.iter().map(|r| c.request(r)).collect();
    for (r, a) in requests.iter().zip(&answers) {
        assert_eq!(a.status, want, "{}: {}", String::from_utf8_lossy(r).lines().next().unwrap_or(""), a.head_str());
    }
    (answers, requests.iter().map(Vec::len).sum())
}

/// The lines of `path` once one contains each of `needles` (polled: the log is flushed every 10 ms).
fn wait_lines(path: &Path, needles: &[&str]) -> Vec<String> {
    let deadline = Instant::now() + PROMPT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if needles.iter().all(|n| text.lines().any(|l| l.contains(n))) {
            return text.lines().map(str::to_string).collect();
        }
        assert!(Instant::now() < deadline, "{} never had lines with {needles:?}:\n{text}", path.display());
        thread::sleep(Duration::from_millis(10));
    }
}

/// The JSON line whose `path` is `path`, after checking every line parses with exactly the
/// documented fields (`query` only when `with_query`).
fn json_line(lines: &[String], path: &str, with_query: bool) -> Value {
    let mut found = None;
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        let mut keys: Vec<&str> = v.as_object().expect("a JSON object").keys().map(String::as_str).collect();
        let mut want: Vec<&str> = FIELDS.split_whitespace().collect();
        if with_query && v.get("query").is_some() {
            want.push("query");
        }
        want.sort_unstable();
        keys.sort_unstable();
        assert_eq!(keys, want, "fields of {l}");
        if v["path"] == path {
            found = Some(v);
        }
    }
    found.unwrap_or_else(|| panic!("no line for {path} in {lines:#?}"))
}

/// The one value of `name` the upstream received with request `path`.
fn upstream_header(up: &TestUpstream, path: &str, name: &str) -> Option<String> {
    let recorded = up.requests().into_iter().find(|r| r.target == path);
    let r = recorded.unwrap_or_else(|| panic!("the upstream got no {path}"));
    let all = r.header_all(name);
    assert!(all.len() <= 1, "{path}: {} {name} fields upstream: {}", all.len(), r.head_str());
    all.first().map(|v| v.to_string())
}

/// Parses `00-TRACE-PARENT-FLAGS` (lowercase hex, non-zero ids); panics otherwise.
fn traceparent(v: &str) -> (String, String, String) {
    let parts: Vec<&str> = v.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    assert!(
        parts.len() == 4 && parts[0] == "00" && hex(parts[1], 32) && hex(parts[2], 16) && hex(parts[3], 2),
        "not a version-00 traceparent: {v:?}"
    );
    assert!(parts[1].bytes().any(|c| c != b'0') && parts[2].bytes().any(|c| c != b'0'), "all-zero id in {v:?}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

// ---- 1. /metrics ----

/// Two workers; 7 GETs and 3 POSTs to route `a` on one keep-alive connection, 2 requests matching
/// no route on two more connections: every counter and histogram says so.
fn metrics_match_the_traffic(driver: Driver) {
    let up = TestUpstream::echo();
    let gw = config(&up, &[("/a/", "")], ADMIN).workers(2).start(driver);
    let mut requests: Vec<Vec<u8>> = (0..7).map(|i| get(&format!("/a/{i}"))).collect();
    requests.extend((0..3).map(|i| req("POST", "/a/post", &[], format!("body {i}").as_bytes())));
    let (answers, sent) = send_all(&gw, &requests, 200);
    let received: usize = answers.iter().map(|a| a.raw_head.len() + a.body.len()).sum();
    for _ in 0..2 {
        send_all(&gw, &[get("/zzz-no-route")], 404);
    }
    let s = scrape_until(&gw, "12 requests and no open connection", |s| {
        s.sum("ringgate_requests_total", &[]) >= 12.0 && s.sum("ringgate_connections_active", &[]) == 0.0
    });
    let a = [("route", "a")];
    assert_eq!(s.one("ringgate_requests_total", &[("route", "a"), ("method", "GET"), ("status", "2xx")]), 7.0);
    assert_eq!(s.one("ringgate_requests_total", &[("route", "a"), ("method", "POST"), ("status", "2xx")]), 3.0);
    let unmatched = [("route", "(unmatched)"), ("method", "GET"), ("status", "4xx")];
    assert_eq!(s.one("ringgate_requests_total", &unmatched), 2.0);
    assert_eq!(s.sum("ringgate_requests_total", &[]), 12.0, "nothing else counted");
    assert_eq!(s.one("ringgate_request_bytes_total", &a), sent as f64, "request bytes, heads and bodies");
    assert_eq!(s.one("ringgate_response_bytes_total", &a), received as f64, "response bytes, heads and bodies");
    assert!(s.samples.iter().all(|x| x.labels.values().all(|v| !v.contains("zzz"))), "a raw path as a label value");
    for name in HISTOGRAMS {
        assert_eq!(s.histogram(name, "a"), 10.0, "{name}{{route=\"a\"}}_count: every proxied request");
        s.assert_type(name, "histogram");
    }
    assert_eq!(s.histogram(HISTOGRAMS[0], "(unmatched)"), 2.0);
    assert_eq!(s.histogram(HISTOGRAMS[1], "(unmatched)"), 0.0, "no upstream wait without an upstream");
    assert_eq!(s.one("ringgate_connections_total", &[("listener", "0")]), 3.0, "three client connections");
    // One keep-alive client connection is served by one worker, which reuses one upstream connection.
    let t = [("upstream", "test")];
    assert_eq!(up.connections(), 1, "upstream connections");
    assert_eq!(s.one("ringgate_upstream_connect_attempts_total", &t), 1.0);
    assert_eq!(s.one("ringgate_upstream_connect_failures_total", &t), 0.0);
    assert_eq!(s.one("ringgate_upstream_pool_misses_total", &t), 1.0);
    assert_eq!(s.one("ringgate_upstream_pool_hits_total", &t), 9.0);
    assert_eq!(s.one("ringgate_upstream_pool_idle", &t), 1.0);
    let label = if driver == Driver::Uring { "io_uring" } else { "epoll" };
    let workers: Vec<(&str, &str)> = s
        .matching("ringgate_worker_info", &[])
        .map(|x| (x.labels["worker"].as_str(), x.labels["driver"].as_str()))
        .collect();
    assert_eq!(workers.len(), 2, "one ringgate_worker_info per worker: {workers:?}");
    assert!(workers.iter().all(|w| w.1 == label), "driver labels {workers:?}, want {label}");
    for (family, kind) in [
        ("ringgate_requests", "counter"),
        ("ringgate_connections_active", "gauge"),
        ("ringgate_connections", "counter"),
        ("ringgate_upstream_pool_idle", "gauge"),
        ("ringgate_config_generation", "gauge"),
        ("ringgate_worker_info", "gauge"),
        ("ringgate_access_log_dropped", "counter"),
        ("ringgate_panics", "counter"),
    ] {
        s.assert_type(family, kind);
    }
    assert_latency(&gw, "a", 10);
}

both_drivers!(metrics_match_the_traffic);

/// `/metrics/latency` for `route`: each histogram counts `n`, quantiles ordered, gateway-added
/// p50 at most the total's. Returns the route's object.
fn assert_latency(gw: &Gateway, route: &str, n: u64) -> Value {
    let (status, body) = admin_get(gw.admin(), "/metrics/latency");
    assert_eq!(status, 200, "GET /metrics/latency: {body}");
    let json: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("/metrics/latency: {e}: {body}"));
    let r = json["routes"][route].clone();
    for part in ["total", "upstream", "gateway_added"] {
        let q = |k: &str| r[part][k].as_f64().unwrap_or_else(|| panic!("{route}.{part}.{k} in {body}"));
        assert_eq!(r[part]["count"], n, "{route}.{part}.count: {body}");
        let qs = [q("p50_ms"), q("p90_ms"), q("p99_ms"), q("p999_ms"), q("max_ms")];
        assert!(qs[0] >= 0.0 && qs.windows(2).all(|w| w[0] <= w[1]), "{route}.{part} p50 ≤ … ≤ max: {qs:?}");
    }
    let p50 = |part: &str| r[part]["p50_ms"].as_f64().expect("p50_ms");
    assert!(p50("gateway_added") <= p50("total"), "{route}: gateway-added p50 above the total's: {body}");
    r
}

#[test]
fn reloads_and_the_generation_are_counted() {
    let up = TestUpstream::echo();
    let gw = config(&up, &[("/a/", "")], ADMIN).start(DRIVER);
    send_all(&gw, &[get("/a/before")], 200);
    let before = scrape_until(&gw, "the first request", |s| s.sum("ringgate_requests_total", &[]) >= 1.0);
    let generation = before.one("ringgate_config_generation", &[]);
    assert_eq!(before.one("ringgate_reloads_total", &[("result", "ok")]), 0.0);
    let (status, body) = admin_post(gw.admin(), "/reload");
    assert_eq!(status, 200, "POST /reload: {body}");
    let after = scrape(&gw);
    assert_eq!(after.one("ringgate_reloads_total", &[("result", "ok")]), 1.0);
    assert_eq!(after.one("ringgate_config_generation", &[]), generation + 1.0);
    gw.write_config("this is not toml [");
    assert_eq!(admin_post(gw.admin(), "/reload").0, 422, "a broken config is refused");
    let refused = scrape(&gw);
    assert_eq!(refused.one("ringgate_reloads_total", &[("result", "failed")]), 1.0);
    assert_eq!(refused.one("ringgate_config_generation", &[]), generation + 1.0, "the refused one is not served");
    assert_eq!(refused.sum("ringgate_requests_total", &[("route", "a")]), 1.0, "counters survive a reload");
}

/// A 3-per-minute limit on route `rl`: five requests, three admitted, two limited.
#[test]
fn rate_limit_decisions_by_policy() {
    let up = TestUpstream::echo();
    let table = "[[rate_limits]]\nname = \"per-client\"\nkey = \"header:x-client\"\nrate = \"3/m\"\n";
    let gw = config(&up, &[("/rl/", "rate_limits = [\"per-client\"]")], &format!("{table}\n{ADMIN}")).start(DRIVER);
    let one = req("GET", "/rl/x", &[("x-client", "c1")], b"");
    let statuses: Vec<u16> =
        send_all(&gw, &[one.clone(), one.clone(), one.clone()], 200).0.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200; 3]);
    send_all(&gw, &[one.clone(), one], 429);
    let s = scrape_until(&gw, "5 requests", |s| s.sum("ringgate_requests_total", &[]) >= 5.0);
    let decision = |outcome: &str| {
        s.one(
            "ringgate_policy_decisions_total",
            &[("kind", "ratelimit"), ("policy", "per-client"), ("outcome", outcome)],
        )
    };
    assert_eq!((decision("admitted"), decision("limited")), (3.0, 2.0), "admitted, limited");
    assert_eq!(s.sum("ringgate_requests_total", &[("route", "rl"), ("status", "4xx")]), 2.0);
    assert_eq!(s.histogram(HISTOGRAMS[1], "rl"), 3.0, "only admitted requests wait on the upstream");
}

/// Route names are free text: quotes, backslashes and a newline survive the exposition's
/// escaping, and an unnamed route is labelled with its default name.
#[test]
fn route_names_are_escaped_in_labels() {
    let up = TestUpstream::echo();
    // TOML basic-string escapes for: say "hi" \ C:\dir (newline) next
    let toml_name = r#"say \"hi\" \\ C:\\dir\nnext"#;
    let gw = ConfigBuilder::new()
        .upstream("test", &[up.addr()], "")
        .route("/w/", "test", &format!("name = \"{toml_name}\""))
        .route("/plain/", "test", "methods = [\"GET\"]")
        .raw(ADMIN)
        .start(DRIVER);
    send_all(&gw, &[get("/w/1"), get("/plain/1")], 200);
    let s = scrape_until(&gw, "2 requests", |s| s.sum("ringgate_requests_total", &[]) >= 2.0);
    let mut routes: Vec<&str> =
        s.matching("ringgate_requests_total", &[]).map(|x| x.labels["route"].as_str()).collect();
    routes.sort_unstable();
    assert_eq!(routes, ["/plain/* [GET]", "say \"hi\" \\ C:\\dir\nnext"], "route labels as configured");
    assert_eq!(s.histogram(HISTOGRAMS[0], routes[1]), 1.0);
}

// ---- 2. latency split and Server-Timing ----

/// A 20 ms upstream: its wait shows in the upstream time and `Server-Timing: upstream`, not in
/// the gateway-added time; a route without `server_timing` sends no such field.
#[test]
fn latency_split_and_server_timing() {
    const DELAY: Duration = Duration::from_millis(20);
    let up = TestUpstream::with_handler(|_| Action::EchoAfter(DELAY));
    let gw = config(&up, &[("/slow/", "server_timing = true"), ("/plain/", "")], ADMIN).start(DRIVER);
    let (timed, _) = send_all(&gw, &[get("/slow/1"), get("/slow/2"), get("/slow/3")], 200);
    let (plain, _) = send_all(&gw, &[get("/plain/1")], 200);
    assert!(
        plain[0].header("server-timing").is_none(),
        "no Server-Timing without server_timing: {}",
        plain[0].head_str()
    );
    let floor = DELAY.as_secs_f64() * 1e3;
    for r in &timed {
        let field = r.header("server-timing").unwrap_or_else(|| panic!("no Server-Timing: {}", r.head_str()));
        let metrics: Vec<(&str, f64)> = field
            .split(", ")
            .map(|m| {
                let (name, dur) = m.split_once(";dur=").unwrap_or_else(|| panic!("Server-Timing {field:?}"));
                (name, dur.parse().unwrap_or_else(|e| panic!("Server-Timing {field:?}: {e}")))
            })
            .collect();
        assert_eq!(metrics.iter().map(|m| m.0).collect::<Vec<_>>(), ["gw", "upstream"], "{field:?}");
        let (gw_ms, up_ms) = (metrics[0].1, metrics[1].1);
        assert!(gw_ms >= 0.0 && up_ms >= floor, "{field:?}: upstream waited {DELAY:?}");
        assert!(gw_ms < up_ms, "{field:?}: the upstream wait is not gateway time");
    }
    let slow = assert_latency(&gw, "slow", 3);
    let p50 = |part: &str| slow[part]["p50_ms"].as_f64().expect("p50_ms");
    assert!(p50("upstream") >= floor * 0.99 && p50("total") >= p50("upstream"), "{slow}");
    assert!(p50("gateway_added") < floor / 2.0, "gateway-added time holds the upstream's wait: {slow}");
    assert_latency(&gw, "plain", 1);
}

// ---- 3. the access log ----

/// JSON lines: the documented fields, each with the request's value; no query by default.
fn access_log_json_lines(driver: Driver) {
    let up = TestUpstream::echo();
    let log = log_file();
    let gw = config(&up, &[("/a/", "")], &access_log(&log.path, &[])).start(driver);
    let post = req("POST", "/a/post", &[("traceparent", PARENT)], b"hello");
    let own_id = "client-chosen-id-0001";
    let requests = [get("/a/x?secret=s3cr3t"), post.clone(), req("GET", "/a/id", &[("X-Request-Id", own_id)], b"")];
    let (answers, _) = send_all(&gw, &requests, 200);
    let (missing, _) = send_all(&gw, &[get("/zzz")], 404);
    let lines = wait_lines(&log.path, &["/a/x", "/a/post", "/a/id", "/zzz"]);
    assert_eq!(lines.len(), 4, "one line per request: {lines:#?}");
    assert!(lines.iter().all(|l| !l.contains("s3cr3t")), "the query is logged without include_query");

    let x = json_line(&lines, "/a/x", false);
    assert_eq!((x["method"].as_str(), x["status"].as_u64(), x["route"].as_str()), (Some("GET"), Some(200), Some("a")));
    assert_eq!(x["client"], "127.0.0.1");
    assert_eq!(x["upstream"], up.addr().to_string());
    assert_eq!(x["tls"], serde_json::Value::Null, "plain HTTP: no TLS version");
    assert_eq!((x["auth"].as_str(), x["ratelimit"].as_str()), (Some(""), Some("")), "no policy applied");
    assert_eq!(x["bytes_in"], requests[0].len(), "request bytes");
    assert_eq!(x["bytes_out"], answers[0].raw_head.len() + answers[0].body.len(), "response bytes");
    let ms = |k: &str| x[k].as_f64().unwrap_or_else(|| panic!("{k} is a number: {x}"));
    assert!(ms("upstream_ms") >= 0.0 && ms("gateway_ms") >= 0.0 && ms("total_ms") >= ms("upstream_ms"), "{x}");
    let time = x["time"].as_str().expect("time");
    assert!(time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T', "RFC 3339 UTC with ms: {time}");
    let sent_id = upstream_header(&up, "/a/x?secret=s3cr3t", "x-request-id").expect("an X-Request-Id upstream");
    assert_eq!(x["request_id"], sent_id, "the id the upstream got");
    // A proxied response carries no X-Request-Id (only ringgate's own answers do, as the 404
    // below); should it ever carry one, it must be the logged one.
    if let Some(id) = answers[0].header("x-request-id") {
        assert_eq!(x["request_id"], id, "the id the client got");
    }
    let made = upstream_header(&up, "/a/x?secret=s3cr3t", "traceparent").expect("a traceparent made");
    assert_eq!(x["trace_id"], traceparent(&made).0, "the trace id sent upstream");

    let p = json_line(&lines, "/a/post", false);
    assert_eq!((p["method"].as_str(), p["bytes_in"].as_u64()), (Some("POST"), Some(post.len() as u64)));
    assert_eq!(p["trace_id"], TRACE_ID, "the client's trace id");
    assert_eq!(json_line(&lines, "/a/id", false)["request_id"], own_id, "a well-formed incoming id is kept");
    let z = json_line(&lines, "/zzz", false);
    assert_eq!((z["status"].as_u64(), z["route"].as_str()), (Some(404), Some("(unmatched)")));
    assert_eq!(z["upstream"], Value::Null);
    assert_eq!(Some(z["request_id"].as_str().expect("request_id")), missing[0].header("x-request-id"), "the 404's id");
}

both_drivers!(access_log_json_lines);

/// `format = "text"` with `include_query = true`: one line of space-separated fields.
#[test]
fn access_log_text_format_with_query() {
    let up = TestUpstream::echo();
    let log = log_file();
    let gw = config(&up, &[("/a/", "")], &access_log(&log.path, &["format = \"text\"", "include_query = true"]))
        .start(DRIVER);
    let request = req("GET", "/a/x?k=v", &[("traceparent", PARENT)], b"");
    let (answers, _) = send_all(&gw, std::slice::from_ref(&request), 200);
    let lines = wait_lines(&log.path, &["/a/x"]);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    // TIME CLIENT "METHOD PATH?QUERY" STATUS IN OUT TOTAL UP GW ROUTE UPSTREAM ID tls= auth= ratelimit= trace=
    let f: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(f.len(), 17, "fields of {:?}", lines[0]);
    assert!(f[0].ends_with('Z') && f[0].len() == 24, "time {:?}", f[0]);
    assert_eq!(&f[1..6], ["127.0.0.1", "\"GET", "/a/x?k=v\"", "200", &request.len().to_string()]);
    assert_eq!(f[6], (answers[0].raw_head.len() + answers[0].body.len()).to_string(), "bytes out");
    assert!(f[7..10].iter().all(|v| v.parse::<f64>().is_ok_and(|v| v >= 0.0)), "durations {:?}", &f[7..10]);
    assert_eq!(f[10..12], ["a", &up.addr().to_string()]);
    assert_eq!(Some(f[12].to_string()), upstream_header(&up, "/a/x?k=v", "x-request-id"), "request id");
    assert_eq!(f[13..], ["tls=-", "auth=-", "ratelimit=-", &format!("trace={TRACE_ID}")]);
}

/// Under an auth policy: no line holds a token, a part of one, or "Bearer"; the outcome is
/// logged and counted.
#[test]
fn access_log_never_holds_tokens() {
    let up = TestUpstream::echo();
    let log = log_file();
    let key = TestKey::hmac(HS256, SECRET);
    let policy =
        format!("[[auth]]\nname = \"p\"\nkeys = [{{ algorithm = \"HS256\", secret_env = \"{SECRET_ENV}\" }}]\n");
    let raw = format!("{policy}\n{ADMIN}\n{}", access_log(&log.path, &["include_query = true"]));
    let gw = config(&up, &[("/a/", "auth = \"p\"")], &raw).start_with_env(DRIVER, &[(SECRET_ENV, SECRET)]);
    let good = key.token(&claims(json!({})));
    let forged = TestKey::hmac(HS256, "another secret of thirty-two bytes or more").token(&claims(json!({})));
    let bearer = |path: &str, t: &str| req("GET", path, &[("Authorization", &format!("Bearer {t}"))], b"");
    send_all(&gw, &[bearer("/a/good", &good)], 200);
    send_all(&gw, &[bearer("/a/forged", &forged)], 401);
    send_all(&gw, &[get("/a/none")], 401);
    let lines = wait_lines(&log.path, &["/a/good", "/a/forged", "/a/none"]);
    for token in [&good, &forged] {
        let parts = token.split('.').filter(|p| p.len() >= 16);
        for needle in parts.chain([token.as_str(), "Bearer", "bearer"]) {
            assert!(lines.iter().all(|l| !l.contains(needle)), "{needle:?} in the access log:\n{lines:#?}");
        }
    }
    let outcomes: Vec<Value> =
        ["/a/good", "/a/forged", "/a/none"].iter().map(|p| json_line(&lines, p, true)["auth"].clone()).collect();
    assert_eq!(outcomes, ["allowed", "invalid_token", "missing"]);
    let s = scrape_until(&gw, "3 requests", |s| s.sum("ringgate_requests_total", &[]) >= 3.0);
    for outcome in ["allowed", "invalid_token", "missing"] {
        let labels = [("kind", "auth"), ("policy", "p"), ("outcome", outcome)];
        assert_eq!(s.one("ringgate_policy_decisions_total", &labels), 1.0, "auth {outcome}");
    }
}

/// The log is a FIFO nobody reads: the writer blocks opening it. With one buffer in flight,
/// 300 requests are all answered promptly and the dropped lines are counted; once a reader
/// opens the FIFO, new lines flow and the gateway still serves.
#[test]
fn blocked_writer_drops_lines_and_the_worker_keeps_serving() {
    let up = TestUpstream::echo();
    let fifo = TempFile { path: temp_path("access", "fifo") };
    let made = Command::new("mkfifo").arg(&fifo.path).status().expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", fifo.path.display());
    let lines = ["queue = 1", "buffer_bytes = 512"];
    let gw = config(&up, &[("/a/", "")], &format!("{ADMIN}\n{}", access_log(&fifo.path, &lines))).start(DRIVER);
    let mut c = gw.client();
    let mut slowest = Duration::ZERO;
    for i in 0..300 {
        let started = Instant::now();
        let r = c.request(&get(&format!("/a/{i}")));
        slowest = slowest.max(started.elapsed());
        assert_eq!(r.status, 200, "request {i} while the log is blocked: {}", r.head_str());
    }
    assert!(slowest < Duration::from_secs(1), "a request took {slowest:?} while the log writer was blocked");
    let dropped = |s: &Scrape| s.one("ringgate_access_log_dropped_total", &[]);
    // All but the few lines of the one buffer in flight (at most buffer_bytes and a line).
    let s = scrape_until(&gw, "290 or more dropped access-log lines", |s| dropped(s) >= 290.0);
    assert!(dropped(&s) <= 300.0, "more lines dropped than requests: {}", dropped(&s));

    // Unblock: open the FIFO for reading and drain it on a thread.
    let (tx, rx) = mpsc::channel::<String>();
    let path = fifo.path.clone();
    thread::spawn(move || {
        let reader = BufReader::new(std::fs::File::open(path).expect("open the FIFO for reading"));
        for line in reader.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + PROMPT;
    let mut i = 0;
    'flowing: loop {
        assert!(Instant::now() < deadline, "no line for the requests after the FIFO was opened");
        send_all(&gw, &[get(&format!("/a/after-{i}"))], 200);
        i += 1;
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(50)) {
            serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if line.contains("/a/after-") {
                break 'flowing;
            }
        }
    }
    send_all(&gw, &[get("/a/still")], 200);
    assert!(scrape(&gw).sum("ringgate_requests_total", &[("route", "a")]) >= 301.0);
}

/// logrotate: rename the file away, SIGUSR1, and the next lines go to a new file at the path.
#[test]
fn sigusr1_reopens_the_access_log() {
    let up = TestUpstream::echo();
    let log = log_file();
    let rotated = TempFile::new("access-rotated", "log", "");
    let gw =
        config(&up, &[("/a/", "")], &access_log(&log.path, &[])).start_with_env(DRIVER, &[("RINGGATE_LOG", "info")]);
    send_all(&gw, &[get("/a/before")], 200);
    wait_lines(&log.path, &["/a/before"]);
    std::fs::rename(&log.path, &rotated.path).expect("rename the log away");
    send_all(&gw, &[get("/a/between")], 200);
    wait_lines(&rotated.path, &["/a/between"]);
    gw.signal("USR1");
    assert!(gw.wait_output("SIGUSR1", PROMPT), "SIGUSR1 was not acknowledged:\n{}", gw.output());
    send_all(&gw, &[get("/a/after")], 200);
    let fresh = wait_lines(&log.path, &["/a/after"]);
    assert_eq!(fresh.len(), 1, "the new file has only the new line: {fresh:#?}");
    let old = std::fs::read_to_string(&rotated.path).expect("the rotated file");
    assert_eq!(old.lines().count(), 2, "the rotated file keeps its lines and gets no new one:\n{old}");
}

/// A graceful exit (SIGTERM) writes every line. Small buffers keep the writer busy, pausing
/// between drains, while requests are served; the flush interval is far too long to hand the
/// last, partly filled buffer over, so its lines reach the writer only through the workers' final
/// flush at drain, and the process must wait for the writer (`accesslog::close`) before exiting.
/// (Without that wait this still passed here: the exit took longer than the writer's pause.)
#[test]
fn graceful_exit_writes_the_last_lines() {
    let up = TestUpstream::echo();
    let log = log_file();
    let section = format!(
        "[access_log]\npath = \"{}\"\nflush_interval = \"60s\"\nbuffer_bytes = 512\nqueue = 4096\n",
        path_str(&log.path)
    );
    let mut gw = config(&up, &[("/a/", "")], &section).start(DRIVER);
    let requests: Vec<Vec<u8>> = (0..300).map(|i| get(&format!("/a/last-{i}"))).collect();
    send_all(&gw, &requests, 200);
    gw.signal("TERM");
    assert!(gw.wait_exit(Duration::from_secs(20)).is_some(), "no exit after SIGTERM:\n{}", gw.output());
    let text = std::fs::read_to_string(&log.path).expect("the log");
    let missing: Vec<usize> = (0..300).filter(|i| !text.contains(&format!("\"/a/last-{i}\""))).collect();
    assert!(missing.is_empty(), "lines lost at exit: {missing:?} ({} lines written)", text.lines().count());
}

// ---- 4. trace context ----

/// Sends `headers` to `path` and returns the upstream's (traceparent, tracestate).
fn traced(gw: &Gateway, up: &TestUpstream, path: &str, headers: &[(&str, &str)]) -> (Option<String>, Option<String>) {
    send_all(gw, &[req("GET", path, headers, b"")], 200);
    (upstream_header(up, path, "traceparent"), upstream_header(up, path, "tracestate"))
}

#[test]
fn trace_context_kept_made_and_replaced() {
    let up = TestUpstream::echo();
    let log = log_file();
    let gw = config(&up, &[("/t/", "")], &access_log(&log.path, &[])).start(DRIVER);
    let with_state = |parent: &'static str| [("traceparent", parent), ("tracestate", STATE)];

    let (kept, state) = traced(&gw, &up, "/t/kept", &with_state(PARENT));
    let (trace, parent, flags) = traceparent(&kept.expect("a traceparent upstream"));
    assert_eq!((trace.as_str(), flags.as_str()), (TRACE_ID, "01"), "trace id and flags kept");
    assert_ne!(parent, "00f067aa0ba902b7", "ringgate's own span id becomes the parent");
    assert_eq!(state.as_deref(), Some(STATE), "tracestate passes through");

    let (made, _) = traced(&gw, &up, "/t/absent", &[]);
    let (made_id, _, made_flags) = traceparent(&made.expect("a traceparent made"));
    assert_eq!(made_flags, "00", "not sampled: ringgate records no spans");
    let (again, state) = traced(&gw, &up, "/t/absent-again", &[("tracestate", STATE)]);
    assert_ne!(traceparent(&again.expect("made")).0, made_id, "a new trace per request");
    assert_eq!(state, None, "a tracestate without a traceparent belongs to no trace we send");

    let mut replaced_ids = Vec::new();
    for (i, bad) in [
        "00-XYZ",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ]
    .into_iter()
    .enumerate()
    {
        let (tp, state) = traced(&gw, &up, &format!("/t/bad-{i}"), &[("traceparent", bad), ("tracestate", STATE)]);
        let (id, _, flags) = traceparent(&tp.unwrap_or_else(|| panic!("{bad:?} replaced")));
        assert_eq!((flags.as_str(), state), ("00", None), "{bad:?}: a new trace, its tracestate dropped");
        assert_ne!(id, TRACE_ID.to_string(), "{bad:?}");
        replaced_ids.push(id);
    }
    let lines = wait_lines(&log.path, &["/t/kept", "/t/absent", "/t/bad-2"]);
    assert_eq!(json_line(&lines, "/t/kept", false)["trace_id"], TRACE_ID);
    assert_eq!(json_line(&lines, "/t/absent", false)["trace_id"], made_id);
    assert_eq!(json_line(&lines, "/t/bad-0", false)["trace_id"], replaced_ids[0]);
}

#[test]
fn trace_context_not_generated() {
    let up = TestUpstream::echo();
    let gw = config(&up, &[("/t/", "")], "[tracing]\ngenerate = false\n").start(DRIVER);
    assert_eq!(traced(&gw, &up, "/t/absent", &[]), (None, None), "absent stays absent");
    let bad = "00-XYZ";
    let forwarded = traced(&gw, &up, "/t/bad", &[("traceparent", bad), ("tracestate", STATE)]);
    assert_eq!(forwarded, (Some(bad.to_string()), Some(STATE.to_string())), "a malformed one passes unchanged");
    let (kept, state) = traced(&gw, &up, "/t/kept", &[("traceparent", PARENT), ("tracestate", STATE)]);
    let (trace, parent, flags) = traceparent(&kept.expect("a valid one is still propagated"));
    assert_eq!((trace.as_str(), flags.as_str(), state.as_deref()), (TRACE_ID, "01", Some(STATE)));
    assert_ne!(parent, "00f067aa0ba902b7", "ringgate's own span id becomes the parent");
}
