//! Question: what does a rate-limit check cost on the hot path: one hot key, and keys drawn from
//! a table of 100,000, beside a naive `HashMap<key, Instant>` limiter (the usual first attempt:
//! std's SipHash map of last-seen times, one clock read per check)?
//!
//! Run: `cargo bench --bench ratelimit`. Target (issue 6): under 50 ns median on a hot key.
//! The checks are `ringgate::ratelimit::lease::Leases::check` with time passed in (as the
//! gateway does), so the figure is the limiter, not the clock.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use ringgate::ratelimit::gcra::Rate;
use ringgate::ratelimit::lease::{batch_for, Leases, Verdict};
use ringgate::ratelimit::table::Table;

const KEYS: u64 = 100_000;

/// The naive limiter: at most one request per `interval` per key, by last-seen time.
struct Naive {
    last: HashMap<Vec<u8>, Instant>,
    interval: Duration,
}

impl Naive {
    fn check(&mut self, key: &[u8]) -> bool {
        let now = Instant::now();
        match self.last.get_mut(key) {
            Some(t) if now.duration_since(*t) < self.interval => false,
            Some(t) => {
                *t = now;
                true
            }
            None => {
                self.last.insert(key.to_vec(), now);
                true
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    // A limit far above what the bench offers per key, so every check admits (the common case).
    let table = Arc::new(Table::new(Rate::new(1_000_000_000, 1_000_000_000, 1_000_000_000), 200_000));
    let batch = batch_for(&table, 2);
    let seed = foldhash::fast::RandomState::default();
    let key_of = |k: &[u8]| {
        let mut h = seed.build_hasher();
        h.write_u64(table.id);
        h.write(k);
        h.finish()
    };
    let mut leases = Leases::default();
    let mut now = 1_000_000_000u64;

    let hot = b"203.0.113.7";
    c.bench_function("ratelimit_hot_key", |b| {
        b.iter(|| {
            now += 10;
            matches!(leases.check(&table, key_of(black_box(hot)), now, batch), Verdict::Admit { .. })
        })
    });

    let names: Vec<Vec<u8>> =
        (0..KEYS).map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255).into_bytes()).collect();
    for n in &names {
        leases.check(&table, key_of(n), now, batch);
    }
    let mut i = 0usize;
    c.bench_function("ratelimit_100k_keys", |b| {
        b.iter(|| {
            i = (i + 7919) % names.len();
            now += 10;
            matches!(leases.check(&table, key_of(black_box(&names[i])), now, batch), Verdict::Admit { .. })
        })
    });

    let mut naive = Naive { last: HashMap::new(), interval: Duration::from_nanos(1) };
    c.bench_function("naive_hashmap_hot_key", |b| b.iter(|| naive.check(black_box(hot))));
    for n in &names {
        naive.check(n);
    }
    let mut j = 0usize;
    c.bench_function("naive_hashmap_100k_keys", |b| {
        b.iter(|| {
            j = (j + 7919) % names.len();
            naive.check(black_box(&names[j]))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
