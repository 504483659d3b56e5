//! A synthetic route table shared by benches/router.rs and tests/router_alloc.rs: static paths,
//! parameterized paths, prefixes on exact hosts and wildcard hosts, mixed, plus a catch-all.

#![allow(dead_code)]

use ringgate::router::{parse_path, parse_prefix, HostPattern, RouteSpec};

/// Route `i` of a table, as config TOML fields (host, path or prefix).
pub fn route_fields(i: usize) -> (Option<String>, &'static str, String) {
    match i % 4 {
        0 => (None, "path", format!("/api/v{}/static{i}/list", i % 3)),
        1 => (None, "path", format!("/svc{i}/users/{{id}}/orders/{{order}}")),
        2 => (Some(format!("h{i}.example.com")), "prefix", format!("/assets{i}/")),
        _ => (Some(format!("*.t{i}.example.com")), "path", "/x/{id}".to_string()),
    }
}

/// `n` routes (the last one a catch-all `/` prefix on any host).
pub fn specs(n: usize) -> Vec<RouteSpec> {
    (0..n)
        .map(|i| {
            let (host, kind, path) = if i + 1 == n { (None, "prefix", "/".to_string()) } else { route_fields(i) };
            let pattern = if kind == "path" { parse_path(&path) } else { parse_prefix(&path) };
            RouteSpec {
                name: format!("r{i}"),
                host: host.map_or(HostPattern::Any, |h| HostPattern::parse(&h).expect("host")),
                pieces: pattern.expect("pattern").pieces,
                methods: None,
                conds: Vec::new(),
            }
        })
        .collect()
}

/// The same table as a config file (one upstream).
pub fn toml(n: usize) -> String {
    let mut s = String::from(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"u\"\ntargets = [\"127.0.0.1:9\"]\n",
    );
    for i in 0..n {
        let (host, kind, path) = if i + 1 == n { (None, "prefix", "/".to_string()) } else { route_fields(i) };
        s.push_str("[[routes]]\n");
        if let Some(h) = host {
            s.push_str(&format!("host = \"{h}\"\n"));
        }
        s.push_str(&format!("{kind} = \"{path}\"\nupstream = \"u\"\n"));
    }
    s
}

/// Typical requests against a table of `n` routes: (name, host, path).
pub fn probes(n: usize) -> Vec<(&'static str, String, String)> {
    let k = |r: usize| (n / 2) / 4 * 4 + r; // a route index of kind r near the middle
    vec![
        ("static", "api.example.com".into(), format!("/api/v{}/static{}/list", k(0) % 3, k(0))),
        ("param", "api.example.com".into(), format!("/svc{}/users/12345/orders/987", k(1))),
        ("exact_host_prefix", format!("h{}.example.com", k(2)), format!("/assets{}/img/logo.png", k(2))),
        ("wildcard_host", format!("a.t{}.example.com", k(3)), "/x/7".into()),
        ("fallback", "api.example.com".into(), "/nothing/here".into()),
        ("static_mixed_case_host", "API.Example.COM:8080".into(), format!("/api/v{}/static{}/list", k(0) % 3, k(0))),
    ]
}
