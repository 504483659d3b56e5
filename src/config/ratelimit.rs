//! Validation of `[[rate_limits]]` policies and each route's `rate_limits` list. Shared tables
//! are taken from the registry by what defines them, so a reload that leaves a policy (and plan)
//! unchanged keeps its buckets, and a changed one starts fresh. See docs/ratelimit.md.

use std::sync::Arc;

use toml::Spanned;

use super::file::{RawRateLimit, RawRoute};
use super::Checker;
use crate::hash::FxHashMap;
use crate::ratelimit::gcra::Rate;
use crate::ratelimit::lease::batch_for;
use crate::ratelimit::{shared_table, KeyKind, Plan, PlanFrom, RateLimitPolicy};
use crate::route::Route;

/// `N/s`, `N/m` or `N/h` → (count, window in seconds).
fn parse_rate(s: &str) -> Result<(u64, u64), String> {
    let err = || format!("{s:?} is not a rate (write e.g. \"100/s\", \"600/m\", \"10000/h\")");
    let (n, unit) = s.trim().split_once('/').ok_or_else(err)?;
    let n: u64 = n.trim().replace('_', "").parse().map_err(|_| err())?;
    let window = match unit.trim() {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        _ => return Err(err()),
    };
    if n == 0 || n > 1_000_000_000 {
        return Err(format!("{s:?}: the count must be 1..=1000000000"));
    }
    Ok((n, window))
}

pub(super) fn validate_policies(
    c: &mut Checker,
    raw: &[Spanned<RawRateLimit>],
    workers: usize,
) -> Vec<Arc<RateLimitPolicy>> {
    let mut out: Vec<Arc<RateLimitPolicy>> = Vec::new();
    for (i, sp) in raw.iter().enumerate() {
        let key = format!("rate_limits[{i}]");
        let p = sp.get_ref();
        let name = p.name.get_ref().clone();
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
            c.err(
                Some(p.name.span()),
                format!("{key}.name"),
                "a name of letters, digits, '-', '_' or '.' (it is sent in RateLimit fields)",
            );
        }
        if raw[..i].iter().any(|o| o.get_ref().name.get_ref() == &name) {
            c.err(Some(p.name.span()), format!("{key}.name"), format!("policy {name:?} is defined twice"));
        }
        let kind = match p.key.as_ref().map(|k| (k, k.get_ref().as_str())) {
            None | Some((_, "client_ip")) => KeyKind::ClientIp,
            Some((_, "route")) => KeyKind::Route,
            Some((_, "jwt_subject")) => KeyKind::JwtSubject,
            Some((_, "jwt_client")) => KeyKind::JwtClient,
            Some((k, other)) => match other.strip_prefix("header:") {
                Some(h) if !h.is_empty() && h.bytes().all(crate::http::parse::is_tchar) => {
                    KeyKind::Header(h.to_ascii_lowercase().into())
                }
                _ => {
                    c.err(
                        Some(k.span()),
                        format!("{key}.key"),
                        format!("{other:?} is not a key (client_ip, route, header:NAME, jwt_subject, jwt_client)"),
                    );
                    KeyKind::ClientIp
                }
            },
        };
        let max_keys = c.int(&p.max_keys, &format!("{key}.max_keys"), 100_000, 64, 100_000_000) as usize;
        let kind_text = format!("{kind:?}");
        let plan = |c: &mut Checker,
                    pname: &str,
                    rate: Option<&Spanned<String>>,
                    burst: &Option<Spanned<i64>>,
                    unlimited: bool,
                    k: &str| {
            if unlimited {
                return Some(Plan { name: pname.to_string(), table: None, count: 0, window_s: 0, batch: 0 });
            }
            let rate = rate?;
            match parse_rate(rate.get_ref()) {
                Ok((count, window_s)) => {
                    let b = c.int(burst, &format!("{k}.burst"), count as i64, 1, 1_000_000_000) as u64;
                    let r = Rate::new(count, window_s * 1_000_000_000, b);
                    let sig = format!("{name}|{pname}|{kind_text}|{}|{}|{max_keys}", r.interval, r.burst);
                    let table = shared_table(&sig, r, max_keys);
                    let batch = batch_for(&table, workers);
                    Some(Plan { name: pname.to_string(), table: Some(table), count, window_s, batch })
                }
                Err(e) => {
                    c.err(Some(rate.span()), format!("{k}.rate"), e);
                    None
                }
            }
        };
        let mut plans: Vec<Plan> = Vec::new();
        if let Some(d) = plan(c, "default", Some(&p.rate), &p.burst, false, &key) {
            plans.push(d);
        }
        for (j, rp) in p.plans.iter().enumerate() {
            let k = format!("{key}.plans[{j}]");
            let r = rp.get_ref();
            let pname = r.name.get_ref();
            if plans.iter().any(|x| &x.name == pname) {
                c.err(
                    Some(r.name.span()),
                    format!("{k}.name"),
                    format!("plan {pname:?} is defined twice (\"default\" is the policy's own rate)"),
                );
                continue;
            }
            if r.unlimited == r.rate.is_some() {
                c.err(Some(rp.span()), k.clone(), "give a rate or unlimited = true (one of them, not both)");
                continue;
            }
            if let Some(pl) = plan(c, pname, r.rate.as_ref(), &r.burst, r.unlimited, &k) {
                plans.push(pl);
            }
        }
        let plan_from = match p.plan_from.as_ref().map(|v| (v, v.get_ref().as_str())) {
            None => PlanFrom::Default,
            Some((_, "jwt")) => PlanFrom::Jwt,
            Some((v, other)) => match other.strip_prefix("header:") {
                Some(h) if !h.is_empty() && h.bytes().all(crate::http::parse::is_tchar) => {
                    let mut table = FxHashMap::default();
                    for (value, plan_name) in &p.plan_table {
                        match plans.iter().position(|x| &x.name == plan_name.get_ref()) {
                            Some(x) => {
                                table.insert(value.clone(), x);
                            }
                            None => c.err(
                                Some(plan_name.span()),
                                format!("{key}.plan_table"),
                                format!("no plan named {:?}", plan_name.get_ref()),
                            ),
                        }
                    }
                    PlanFrom::Header { name: h.to_ascii_lowercase().into(), table }
                }
                _ => {
                    c.err(
                        Some(v.span()),
                        format!("{key}.plan_from"),
                        format!("{other:?} is not \"jwt\" or \"header:NAME\""),
                    );
                    PlanFrom::Default
                }
            },
        };
        if !p.plan_table.is_empty() && !matches!(plan_from, PlanFrom::Header { .. }) {
            c.err(Some(sp.span()), format!("{key}.plan_table"), "plan_table needs plan_from = \"header:NAME\"");
        }
        if plans.is_empty() {
            continue;
        }
        out.push(Arc::new(RateLimitPolicy {
            metrics_key: crate::metrics::name_key("ratelimit", &name),
            name,
            key: kind,
            plans,
            plan_from,
            dry_run: p.dry_run,
            headers: p.headers,
            legacy_headers: p.legacy_headers,
        }));
    }
    out
}

/// A route's `rate_limits`: policy names → indexes.
pub(super) fn route_limits(
    c: &mut Checker,
    i: usize,
    sr: &Spanned<RawRoute>,
    policies: &[Arc<RateLimitPolicy>],
    defined: &[Spanned<RawRateLimit>],
    route: &mut Route,
) {
    for n in &sr.get_ref().rate_limits {
        match policies.iter().position(|p| &p.name == n.get_ref()) {
            Some(x) if route.rate_limits.contains(&x) => {
                c.err(Some(n.span()), format!("routes[{i}].rate_limits"), format!("{:?} is listed twice", n.get_ref()))
            }
            Some(x) => route.rate_limits.push(x),
            // Defined but refused: its own errors say why.
            None if defined.iter().any(|d| d.get_ref().name.get_ref() == n.get_ref()) => {}
            None => {
                let known: Vec<&str> = policies.iter().map(|p| p.name.as_str()).collect();
                c.err(
                    Some(n.span()),
                    format!("routes[{i}].rate_limits"),
                    format!("no rate limit named {:?} (defined: {known:?})", n.get_ref()),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100/s"), Ok((100, 1)));
        assert_eq!(parse_rate(" 1_000 / m "), Ok((1000, 60)));
        assert_eq!(parse_rate("5/h"), Ok((5, 3600)));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("10").is_err());
        assert!(parse_rate("10/d").is_err());
    }
}
