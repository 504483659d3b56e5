//! Rendering merged metrics: the Prometheus text exposition format (version 0.0.4) for
//! `GET /metrics`, and exact quantiles from the hdrhistograms as JSON for `GET /metrics/latency`.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use hdrhistogram::Histogram;

use super::{WorkerMetrics, METHODS, RELOADS_FAILED, RELOADS_OK, STATUS};

/// Histogram bucket bounds, seconds.
const BUCKETS: [f64; 17] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A label value escaped as the format requires (backslash, double quote, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Cumulative bucket counts: a recorded slot counts under a bound only when its whole range of
/// equivalent values lies at or below it (so a 1.003 ms request is never counted as ≤ 1 ms).
fn buckets(h: &Histogram<u64>) -> ([u64; BUCKETS.len()], f64) {
    let mut per = [0u64; BUCKETS.len()];
    let mut sum = 0.0;
    for v in h.iter_recorded() {
        let (value, n) = (v.value_iterated_to(), v.count_at_value());
        sum += h.median_equivalent(value) as f64 * n as f64 / 1e6;
        let top = h.highest_equivalent(value);
        if let Some(i) = BUCKETS.iter().position(|b| top <= (b * 1e6) as u64) {
            per[i] += n;
        }
    }
    for i in 1..per.len() {
        per[i] += per[i - 1];
    }
    (per, sum)
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &Histogram<u64>) {
    let (cumulative, sum) = buckets(h);
    for (b, n) in BUCKETS.iter().zip(cumulative) {
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.len());
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.len());
}

/// Everything, in the Prometheus text format. `each` holds the workers' own copies (for the
/// per-worker driver gauge); `generation` is the live snapshot's.
pub fn prometheus(m: &WorkerMetrics, each: &[WorkerMetrics], generation: u64, dropped_log_lines: u64) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let mut routes: Vec<_> = m.routes.values().collect();
    routes.sort_by(|a, b| a.name.cmp(&b.name));

    head(&mut out, "ringgate_requests_total", "counter", "Requests answered, by route, method class and status class.");
    for r in &routes {
        let route = esc(&r.name);
        for (mi, row) in r.requests.iter().enumerate() {
            for (si, n) in row.iter().enumerate().filter(|(_, n)| **n > 0) {
                let _ = writeln!(
                    out,
                    "ringgate_requests_total{{route=\"{route}\",method=\"{}\",status=\"{}\"}} {n}",
                    METHODS[mi], STATUS[si]
                );
            }
        }
    }
    head(&mut out, "ringgate_request_bytes_total", "counter", "Request bytes received (head and body), by route.");
    for r in &routes {
        let _ = writeln!(out, "ringgate_request_bytes_total{{route=\"{}\"}} {}", esc(&r.name), r.bytes_in);
    }
    head(&mut out, "ringgate_response_bytes_total", "counter", "Response bytes sent (head and body), by route.");
    for r in &routes {
        let _ = writeln!(out, "ringgate_response_bytes_total{{route=\"{}\"}} {}", esc(&r.name), r.bytes_out);
    }
    for (name, help, pick) in [
        ("ringgate_request_duration_seconds", "Whole request: head parsed to response written.", 0),
        ("ringgate_upstream_duration_seconds", "Request head written upstream to response head read.", 1),
        ("ringgate_gateway_added_seconds", "Total minus the waits on the upstream and on the client.", 2),
    ] {
        head(&mut out, name, "histogram", help);
        for r in &routes {
            let h = [&r.total, &r.upstream, &r.gateway][pick];
            histogram(&mut out, name, &format!("route=\"{}\"", esc(&r.name)), h);
        }
    }

    head(&mut out, "ringgate_connections_active", "gauge", "Open client connections, by listener.");
    for (i, c) in m.connections.iter().enumerate() {
        let _ = writeln!(out, "ringgate_connections_active{{listener=\"{i}\"}} {}", c.0);
    }
    head(&mut out, "ringgate_connections_total", "counter", "Client connections accepted, by listener.");
    for (i, c) in m.connections.iter().enumerate() {
        let _ = writeln!(out, "ringgate_connections_total{{listener=\"{i}\"}} {}", c.1);
    }

    let mut ups: Vec<_> = m.upstreams.values().collect();
    ups.sort_by(|a, b| a.name.cmp(&b.name));
    for (name, kind, help, get) in [
        ("ringgate_upstream_connect_attempts_total", "counter", "New upstream connections tried.", 0),
        ("ringgate_upstream_connect_failures_total", "counter", "Upstream connects that failed or timed out.", 1),
        ("ringgate_upstream_pool_hits_total", "counter", "Requests that reused a pooled connection.", 2),
        ("ringgate_upstream_pool_misses_total", "counter", "Requests that found no pooled connection.", 3),
        ("ringgate_upstream_pool_idle", "gauge", "Idle pooled connections.", 4),
    ] {
        head(&mut out, name, kind, help);
        for u in &ups {
            let v = [u.connect_attempts, u.connect_failures, u.pool_hits, u.pool_misses, u.idle][get];
            let _ = writeln!(out, "{name}{{upstream=\"{}\"}} {v}", esc(&u.name));
        }
    }

    head(
        &mut out,
        "ringgate_policy_decisions_total",
        "counter",
        "Auth and rate-limit decisions, by policy and outcome.",
    );
    let mut pols: Vec<_> = m.policies.values().collect();
    pols.sort_by(|a, b| (a.kind, &a.name).cmp(&(b.kind, &b.name)));
    for p in pols {
        let mut outcomes: Vec<_> = p.outcomes.iter().collect();
        outcomes.sort();
        for (o, n) in outcomes {
            let _ = writeln!(
                out,
                "ringgate_policy_decisions_total{{kind=\"{}\",policy=\"{}\",outcome=\"{o}\"}} {n}",
                p.kind,
                esc(&p.name)
            );
        }
    }

    let st = &crate::core::STATS;
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    head(&mut out, "ringgate_reloads_total", "counter", "Config reloads, by result.");
    let _ = writeln!(out, "ringgate_reloads_total{{result=\"ok\"}} {}", n(&RELOADS_OK));
    let _ = writeln!(out, "ringgate_reloads_total{{result=\"failed\"}} {}", n(&RELOADS_FAILED));
    head(&mut out, "ringgate_config_generation", "gauge", "Generation of the config being served.");
    let _ = writeln!(out, "ringgate_config_generation {generation}");
    for (name, help, v) in [
        ("ringgate_tls_handshakes_total", "TLS handshakes completed.", n(&st.tls_handshakes)),
        ("ringgate_tls_handshake_failures_total", "TLS handshakes that failed.", n(&st.tls_handshake_failures)),
        (
            "ringgate_tls_handshake_timeouts_total",
            "TLS handshakes cut off at the deadline.",
            n(&st.tls_handshake_timeouts),
        ),
        ("ringgate_panics_total", "Panics caught in a connection.", n(&st.panics)),
        ("ringgate_accept_errors_total", "Errors from accept.", n(&st.accept_errors)),
        (
            "ringgate_access_log_dropped_total",
            "Access log lines dropped because the writer fell behind.",
            dropped_log_lines,
        ),
    ] {
        head(&mut out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    }
    head(&mut out, "ringgate_worker_info", "gauge", "One per worker, with its I/O driver.");
    for w in each {
        let _ = writeln!(out, "ringgate_worker_info{{worker=\"{}\",driver=\"{}\"}} 1", w.worker, w.driver);
    }
    out
}

fn quantiles(h: &Histogram<u64>) -> serde_json::Value {
    let q = |p: f64| if h.is_empty() { 0.0 } else { h.value_at_quantile(p) as f64 / 1000.0 };
    serde_json::json!({
        "count": h.len(),
        "p50_ms": q(0.5), "p90_ms": q(0.9), "p99_ms": q(0.99), "p999_ms": q(0.999),
        "max_ms": if h.is_empty() { 0.0 } else { h.max() as f64 / 1000.0 },
    })
}

/// Exact quantiles per route (total, upstream, gateway-added), as JSON.
pub fn latency_json(m: &WorkerMetrics) -> serde_json::Value {
    let mut routes = serde_json::Map::new();
    for r in m.routes.values() {
        routes.insert(
            r.name.to_string(),
            serde_json::json!({
                "total": quantiles(&r.total),
                "upstream": quantiles(&r.upstream),
                "gateway_added": quantiles(&r.gateway),
            }),
        );
    }
    serde_json::json!({ "routes": routes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_just_above_a_bound_is_not_counted_under_it() {
        let mut h = crate::metrics::histogram();
        h.record(1_003).expect("1.003 ms");
        h.record(999).expect("0.999 ms");
        h.record(10_050_000).expect("10.05 s");
        let (b, sum) = buckets(&h);
        let at = |s: f64| b[BUCKETS.iter().position(|x| *x == s).expect("a bound")];
        assert_eq!(at(0.001), 1, "only 0.999 ms is <= 1 ms");
        assert_eq!(at(0.0025), 2);
        assert_eq!(at(10.0), 2, "10.05 s is not <= 10 s");
        assert!((sum - 10.052).abs() < 0.06, "{sum}");
    }
}
