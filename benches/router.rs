//! Question: what does a route lookup cost with 10, 1,000 and 10,000 routes (static,
//! parameterized, exact and wildcard hosts mixed), against a naive linear scan over the same
//! routes; and how long does building a 10,000-route snapshot take (router alone, and the whole
//! config text → validated config → snapshot)?
//!
//! Run: `cargo bench --bench router`. Targets (issue 3): lookup < 100 ns median at 10,000 routes;
//! 10,000-route snapshot built in < 50 ms.

mod route_table;

// The allocator the binary uses: building a table is allocation-heavy.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use ringgate::router::{strip_port, HostPattern, MethodOnly, Params, Piece, RouteSpec, Router};

/// The naive way: try every route in turn (most specific host first, as ringgate used to).
fn linear<'a>(specs: &'a [RouteSpec], host: &[u8], path: &[u8]) -> Option<&'a RouteSpec> {
    let host = strip_port(host);
    let host_ok = |h: &HostPattern| match h {
        HostPattern::Any => true,
        HostPattern::Exact(e) => e.as_bytes().eq_ignore_ascii_case(host),
        HostPattern::Wildcard(s) => {
            host.len() > s.len() && host[host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
        }
    };
    let path_ok = |pieces: &[Piece]| {
        let mut pos = 0;
        for p in pieces {
            match p {
                Piece::Static(s) => {
                    if !path[pos..].starts_with(s) {
                        return false;
                    }
                    pos += s.len();
                }
                Piece::Param => {
                    let end = path[pos..].iter().position(|&b| b == b'/').map_or(path.len(), |e| pos + e);
                    if end == pos {
                        return false;
                    }
                    pos = end;
                }
                Piece::Tail => return true,
            }
        }
        pos == path.len()
    };
    specs.iter().find(|s| host_ok(&s.host) && path_ok(&s.pieces))
}

fn lookups(c: &mut Criterion) {
    for n in [10usize, 1_000, 10_000] {
        let specs = route_table::specs(n);
        let router = Router::build(&specs).expect("no ties");
        let mut g = c.benchmark_group(format!("lookup/{n}_routes"));
        for (name, host, path) in route_table::probes(n) {
            let mut params = Params::default();
            g.bench_with_input(BenchmarkId::new("trie", name), &(host.clone(), path.clone()), |b, (h, p)| {
                b.iter(|| {
                    router.lookup(
                        Some(black_box(h.as_bytes())),
                        black_box(p.as_bytes()),
                        &MethodOnly(b"GET"),
                        &mut params,
                    )
                })
            });
            g.bench_with_input(BenchmarkId::new("linear", name), &(host, path), |b, (h, p)| {
                b.iter(|| linear(&specs, black_box(h.as_bytes()), black_box(p.as_bytes())).map(|s| s.name.len()))
            });
        }
        g.finish();
    }
}

fn build(c: &mut Criterion) {
    let mut g = c.benchmark_group("build/10000_routes");
    g.sample_size(10);
    let specs = route_table::specs(10_000);
    g.bench_function("router", |b| b.iter(|| Router::build(black_box(&specs)).map(|r| r.len())));
    let text = route_table::toml(10_000);
    g.bench_function("config_text_to_snapshot", |b| {
        b.iter(|| {
            let cfg = ringgate::config::load_str(black_box(&text), "bench").expect("valid");
            ringgate::shared::Snapshot::build(cfg, None, 2).routes.len()
        })
    });
    g.finish();
}

criterion_group!(benches, lookups, build);
criterion_main!(benches);
