//! Question: what does ringgate pay per request to parse a typical 600-byte request head and to
//! build the head it forwards upstream, and how does that compare with the naive way (a String
//! per header, a rebuilt head)?
//!
//! Run: `cargo bench --bench http_head`

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use ringgate::http::parse::{parse_request, HeadLimits, RequestHead};
use ringgate::http::write::{forward_request_head, ForwardCtx};
use ringgate::route::HeaderOps;

/// A browser-like API request head, ~600 bytes.
fn typical_head() -> Bytes {
    let h = "GET /api/v1/orders/12345?include=items&sort=-created HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36\r\n\
Accept: application/json, text/plain, */*\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NSJ9.abcdefghijklmnop\r\n\
Referer: https://app.example.com/orders\r\n\
Cookie: session=4f8a1c2b9e7d6a5f; theme=dark; lang=en\r\n\
Connection: keep-alive\r\n\
X-Request-Id: 7f3a9c2e-1b4d-4e8f-9a6b-5c3d2e1f0a9b\r\n\
Cache-Control: no-cache\r\n\r\n";
    Bytes::from(h)
}

static NO_OPS: HeaderOps = HeaderOps { remove: Vec::new(), lines: Bytes::new() };

fn ctx() -> ForwardCtx<'static> {
    ForwardCtx {
        client_ip: b"203.0.113.7",
        trusted_peer: false,
        x_forwarded_for: true,
        x_forwarded_proto: true,
        x_forwarded_host: true,
        generated_request_id: None,
        manage_request_id: true,
        upstream_authority: b"10.0.0.5:8080",
        proto: b"http",
        target: None,
        headers: &NO_OPS,
        claim_lines: b"",
        trace: None,
    }
}

/// The naive baseline: parse, copy every header into owned Strings, rebuild the head as a String.
fn naive_forward(raw: &[u8]) -> Vec<u8> {
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut storage);
    let _ = req.parse(raw);
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
        .filter(|(n, _)| !n.eq_ignore_ascii_case("connection"))
        .collect();
    let mut out = format!("{} {} HTTP/1.1\r\n", req.method.unwrap_or("GET"), req.path.unwrap_or("/"));
    for (n, v) in &headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str("X-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: http\r\n\r\n");
    out.into_bytes()
}

fn bench(c: &mut Criterion) {
    let raw = typical_head();
    assert!((550..700).contains(&raw.len()), "fixture is {} bytes", raw.len());
    let limits = HeadLimits::default();
    let mut g = c.benchmark_group("request_head");
    g.throughput(Throughput::Bytes(raw.len() as u64));

    let mut head = RequestHead::default();
    g.bench_function("parse (ringgate: httparse + framing rules)", |b| {
        b.iter(|| parse_request(black_box(&raw), &limits, &mut head).expect("valid"))
    });
    g.bench_function("parse (httparse alone)", |b| {
        b.iter(|| {
            let mut storage = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut storage);
            req.parse(black_box(&raw)).expect("valid").is_complete()
        })
    });

    assert!(parse_request(&raw, &limits, &mut head).expect("valid"));
    let ctx = ctx();
    let mut extra = BytesMut::with_capacity(512);
    let mut out: Vec<Bytes> = Vec::with_capacity(16);
    g.bench_function("forward head (ringgate: slices + added lines)", |b| {
        b.iter(|| {
            out.clear();
            forward_request_head(black_box(&raw), &head, &ctx, &mut extra, &mut out);
            out.len()
        })
    });
    g.bench_function("parse + forward head (ringgate)", |b| {
        b.iter(|| {
            out.clear();
            parse_request(black_box(&raw), &limits, &mut head).expect("valid");
            forward_request_head(&raw, &head, &ctx, &mut extra, &mut out);
            out.len()
        })
    });
    g.bench_function("parse + forward head (naive: String per header)", |b| {
        b.iter(|| naive_forward(black_box(&raw)).len())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
