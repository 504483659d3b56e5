//! Question: what does JWT verification cost per algorithm (HS256, RS256 with a 2048-bit key,
//! ES256, EdDSA), and what does a repeated token cost once it is in the worker's cache (the whole
//! per-request policy step: find the token in the parsed head, look it up, check scopes)?
//!
//! Run: `cargo bench --bench auth`. Target (issue 5): a cache hit under 200 ns.
//! Keys are generated at start (rcgen with aws-lc-rs); tokens are signed with jsonwebtoken and
//! expire an hour after the run starts.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ringgate::auth::{authorize, cache::TokenCache, unix_now, AuthPolicy};
use ringgate::http::parse::{parse_request, HeadLimits, RequestHead};

struct Family {
    alg: Algorithm,
    rcgen: Option<&'static rcgen::SignatureAlgorithm>,
}

const FAMILIES: &[Family] = &[
    Family { alg: Algorithm::HS256, rcgen: None },
    Family { alg: Algorithm::RS256, rcgen: Some(&rcgen::PKCS_RSA_SHA256) },
    Family { alg: Algorithm::ES256, rcgen: Some(&rcgen::PKCS_ECDSA_P256_SHA256) },
    Family { alg: Algorithm::EdDSA, rcgen: Some(&rcgen::PKCS_ED25519) },
];

/// Writes the keys, loads a config with one policy per algorithm, and signs one token each.
fn setup() -> (Vec<std::sync::Arc<AuthPolicy>>, Vec<String>) {
    let dir: PathBuf = std::env::temp_dir().join(format!("ringgate-bench-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut toml = String::from(
        "[[listeners]]\naddress = \"127.0.0.1:0\"\n[[upstreams]]\nname = \"u\"\ntargets = [\"127.0.0.1:9\"]\n",
    );
    let mut signing = Vec::new();
    for (i, f) in FAMILIES.iter().enumerate() {
        let (key_line, enc) = match f.rcgen {
            None => {
                let secret = b"bench-secret-0123456789abcdef0123456789";
                let path = dir.join("hs.key");
                std::fs::write(&path, secret).expect("write secret");
                (format!("secret_file = \"{}\"", path.display()), EncodingKey::from_secret(secret))
            }
            Some(a) => {
                let kp = rcgen::KeyPair::generate_for(a).expect("generate a key");
                let path = dir.join(format!("{i}.pub.pem"));
                std::fs::write(&path, kp.public_key_pem()).expect("write public key");
                let pem = kp.serialize_pem();
                let enc = match f.alg {
                    Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()),
                    Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
                    _ => EncodingKey::from_ed_pem(pem.as_bytes()),
                }
                .expect("encoding key");
                (format!("pem_file = \"{}\"", path.display()), enc)
            }
        };
        toml.push_str(&format!(
            "[[auth]]\nname = \"p{i}\"\nissuers = [\"bench\"]\nkeys = [{{ algorithm = \"{:?}\", {key_line} }}]\n",
            f.alg
        ));
        signing.push(enc);
    }
    toml.push_str("[[routes]]\nprefix = \"/\"\nupstream = \"u\"\n");
    let cfg = ringgate::config::load_str(&toml, "bench.toml").unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let claims = serde_json::json!({
        "sub": "user-1234", "iss": "bench", "exp": unix_now() + 3600,
        "scope": "orders:read orders:write", "plan": "gold"
    });
    let tokens =
        FAMILIES.iter().zip(&signing).map(|(f, k)| encode(&Header::new(f.alg), &claims, k).expect("sign")).collect();
    (cfg.auth, tokens)
}

fn bench(c: &mut Criterion) {
    let (policies, tokens) = setup();
    let now = unix_now();
    let mut g = c.benchmark_group("jwt_verify");
    for (i, f) in FAMILIES.iter().enumerate() {
        let (p, t) = (&policies[i], tokens[i].as_bytes());
        assert!(p.verify(t, now).is_ok(), "{:?} token verifies", f.alg);
        g.bench_function(format!("{:?}", f.alg), |b| b.iter(|| p.verify(black_box(t), now).is_ok()));
    }
    g.finish();

    // The whole policy step on a repeated token: head lookup + cache hit + scope check.
    let raw = format!(
        "GET /orders/7 HTTP/1.1\r\nHost: api.test\r\nUser-Agent: k6\r\nAccept: */*\r\nAuthorization: Bearer {}\r\n\r\n",
        tokens[1]
    );
    let mut req = RequestHead::default();
    assert!(parse_request(raw.as_bytes(), &HeadLimits::default(), &mut req).expect("parses"));
    let route = ringgate::auth::RouteAuth {
        policy: 1,
        scopes: vec!["orders:read".into()],
        all: true,
        scope_text: "orders:read".into(),
    };
    let mut cache = TokenCache::default();
    let p = &policies[1];
    assert!(authorize(p, &route, raw.as_bytes(), &req, now, &mut cache).is_ok());
    c.bench_function("jwt_cache_hit_RS256", |b| {
        b.iter(|| authorize(p, &route, black_box(raw.as_bytes()), &req, now, &mut cache).is_ok())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
