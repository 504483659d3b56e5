//! A route lookup allocates nothing (issue 3), proven with a counting global allocator: the
//! router alone over a 10,000-route table, and the whole routing step of a request (path
//! normalization, lookup, building the rewritten target) once its per-core buffers are warm.

#[path = "../benches/route_table.rs"]
mod route_table;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::BytesMut;
use ringgate::http::parse::{parse_request, HeadLimits, RequestHead};
use ringgate::router::{Lookup, MethodOnly, Params, Router};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocs_during(f: impl FnOnce()) -> usize {
    let before = ALLOCS.with(Cell::get);
    f();
    ALLOCS.with(Cell::get) - before
}

#[test]
fn router_lookup_allocates_nothing() {
    let router = Router::build(&route_table::specs(10_000)).expect("no ties");
    let probes = route_table::probes(10_000);
    let mut params = Params::default();
    let mut found = 0;
    let n = allocs_during(|| {
        for _ in 0..1000 {
            for (_, host, path) in &probes {
                if let Lookup::Found(_) =
                    router.lookup(Some(host.as_bytes()), path.as_bytes(), &MethodOnly(b"GET"), &mut params)
                {
                    found += 1;
                }
            }
        }
    });
    assert_eq!(found, 1000 * probes.len(), "every probe finds a route (the table ends with a catch-all)");
    assert_eq!(n, 0, "{n} allocations in {} lookups", 1000 * probes.len());
    // The counter does count: a Vec allocates.
    assert!(allocs_during(|| drop(std::hint::black_box(vec![1u8; 64]))) > 0);
}

#[test]
fn routing_a_request_allocates_nothing_once_warm() {
    let mut text = route_table::toml(10_000);
    // A rewriting route, so the target is rebuilt for each request.
    text.push_str(
        "[[routes]]\npath = \"/v1/{*rest}\"\nupstream = \"u\"\nrewrite = { template = \"/internal/{rest}\" }\n",
    );
    let cfg = ringgate::config::load_str(&text, "t").expect("valid");
    let snap = ringgate::shared::Snapshot::build(cfg, None, 1);
    let heads: Vec<bytes::Bytes> = [
        "GET /svc4997/users/12345/orders/987 HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
        "GET /v1/a/./b/../c?q=%2e HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
        "GET /x/7 HTTP/1.1\r\nHost: a.t5003.example.com\r\n\r\n",
    ]
    .iter()
    .map(|s| bytes::Bytes::from_static(s.as_bytes()))
    .collect();
    let mut reqs = Vec::new();
    for h in &heads {
        let mut r = RequestHead::default();
        assert!(parse_request(h, &HeadLimits::default(), &mut r).expect("valid"));
        reqs.push(r);
    }
    let (mut norm, mut params, mut extra) = (Vec::new(), Params::default(), BytesMut::new());
    let mut run = |times: usize| {
        let mut targets = 0;
        for _ in 0..times {
            for (h, r) in heads.iter().zip(&reqs) {
                let routed = ringgate::routing::route(&snap, h, r, &mut norm, &mut params, &mut extra).expect("routed");
                targets += usize::from(routed.target.is_some());
            }
        }
        targets
    };
    assert_eq!(run(10), 10, "the rewriting route rebuilds its target");
    let n = allocs_during(|| {
        run(1000);
    });
    assert_eq!(n, 0, "{n} allocations in 3000 routed requests");
}
