//! Question: what does recording one finished request cost the worker (counters by route, method
//! and status class, three hdrhistogram records), and a line into the access-log buffer?
//!
//! Run: `cargo bench --bench metrics`. The budget (issue 7): metrics and access logging together
//! under 3% of the proxy's CPU per request (~0.5 µs of ~17 µs).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringgate::metrics::{method_class, name_key, Timing, WorkerMetrics};

fn bench(c: &mut Criterion) {
    let mut m = WorkerMetrics::default();
    let names: Vec<String> = (0..100).map(|i| format!("route-{i}")).collect();
    let t = Timing {
        total: Duration::from_micros(230),
        upstream: Some(Duration::from_micros(150)),
        waits: Duration::from_micros(5),
    };
    for n in &names {
        m.request(name_key("route", n), n, 0, 200, 100, 400, &t);
    }
    let mut i = 0usize;
    c.bench_function("metrics_record_request", |b| {
        b.iter(|| {
            i = (i + 1) % names.len();
            let n = &names[i];
            m.request(name_key("route", n), n, method_class(black_box(b"GET")), 200, 120, 480, black_box(&t));
        })
    });
    c.bench_function("metrics_copy_100_routes", |b| b.iter(|| black_box(m.clone())));
}

criterion_group!(benches, bench);
criterion_main!(benches);
