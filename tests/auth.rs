//! JWT authentication (issue 5, docs/auth.md), end to end through the real binary:
//! - every algorithm family accepted with its pinned key, from the environment, a file, a PEM
//!   (SPKI or PKCS#1), a JWKS file and a JWKS URL;
//! - each refusal with its status and RFC 6750 §3 `WWW-Authenticate` challenge: no token (§3.1,
//!   no error code), malformed, too large, unknown `kid`, algorithm not allowed, bad signature,
//!   expired and not yet valid (RFC 7519 §4.1.4-5, with leeway), wrong issuer and audience
//!   (§4.1.1, §4.1.3), missing claim, and 403 `insufficient_scope` with the scopes listed;
//! - the known attacks: `alg: none` (RFC 8725 §2.1), an RSA public key used as an HMAC secret
//!   (§2.1), a tampered payload, `kid` naming unknown keys or carrying path and SQL junk, keys
//!   embedded in the token (`jwk`, `jku`, `x5u`; RFC 8725 §3.10), `crit` (RFC 7515 §4.1.11),
//!   broken base64, duplicate claim names (RFC 7519 §4), a 1 MiB token;
//! - JWKS URLs over loopback: rotation, refresh failures keeping the last good set, the bounded
//!   refresh an unknown `kid` triggers, and a first fetch that failed;
//! - what the upstream sees: claims as headers, client-sent copies removed, Authorization kept or
//!   stripped; that no token reaches the log; and what `ringgate check` refuses.
//!
//! Keys and tokens are made by the tests (support::jwt); nothing that expires is written down.
//! The core cases run under both drivers; the rest under io_uring only ([`DRIVER`]): the policy
//! sits above the I/O driver, and the suite's run time is shared.

#[macro_use]
mod support;

use std::io::Write;
use std::thread;
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm::*;
use serde_json::{json, Value};

use support::gateway::path_str;
use support::jwks::{JwksServer, Serve};
use support::jwt::{b64, claims, now, KeyDir, TestKey};
use support::*;

/// The driver of the tests that are not run under both.
const DRIVER: Driver = Driver::Uring;
const CLI_TIMEOUT: Duration = Duration::from_secs(20);
/// The HMAC secret every gateway here gets in its environment.
const SECRET_ENV: &str = "RINGGATE_TEST_AUTH_SECRET";
const SECRET: &str = "an HMAC secret of more than thirty-two bytes";
const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "orders-api";

/// RFC 6750 §3.1: a request without a token gets a challenge without an error code.
const CHALLENGE: &str = r#"Bearer realm="ringgate""#;
/// RFC 6750 §3.1: two token fields are an invalid request.
const INVALID_REQUEST: &str = r#"Bearer realm="ringgate", error="invalid_request""#;
/// Every `invalid_token` challenge starts so; the description follows.
const INVALID_TOKEN: &str = r#"Bearer realm="ringgate", error="invalid_token", error_description=""#;

fn invalid_token(description: &str) -> String {
    format!("{INVALID_TOKEN}{description}\"")
}

fn insufficient_scope(scope: &str) -> String {
    format!(
        r#"Bearer realm="ringgate", error="insufficient_scope", error_description="insufficient scope", scope="{scope}""#
    )
}

// ---- config ----

/// An `[[auth]]` table: `name`, more `key = value` lines, and `keys`, one inline table per line.
fn policy(name: &str, lines: &[&str], keys: &[String]) -> String {
    let keys: String = keys.iter().map(|k| format!("  {k},\n")).collect();
    format!("[[auth]]\nname = \"{name}\"\n{}\nkeys = [\n{keys}]\n", lines.join("\n"))
}

fn kid_part(key: &TestKey) -> String {
    key.kid.as_ref().map(|k| format!(", kid = \"{k}\"")).unwrap_or_default()
}

/// A key entry for `key`'s public key as `pem` (SPKI or PKCS#1), written to `dir`.
fn pem_key(key: &TestKey, pem: &str, dir: &KeyDir) -> String {
    format!("{{ algorithm = \"{:?}\", pem_file = \"{}\"{} }}", key.alg, dir.file("pem", pem), kid_part(key))
}

/// A key entry with the secret from the environment ([`SECRET_ENV`]).
fn env_key(key: &TestKey) -> String {
    assert_eq!(key.secret, SECRET, "the environment carries SECRET");
    format!("{{ algorithm = \"{:?}\", secret_env = \"{SECRET_ENV}\"{} }}", key.alg, kid_part(key))
}

/// A key entry with the secret in a file, with a trailing newline (which is trimmed).
fn file_key(key: &TestKey, dir: &KeyDir) -> String {
    let path = dir.file("key", &format!("{}\n", key.secret));
    format!("{{ algorithm = \"{:?}\", secret_file = \"{path}\"{} }}", key.alg, kid_part(key))
}

/// A JWKS URL entry for ES256 keys with the given intervals.
fn url_key(server: &JwksServer, refresh: &str, min_refresh: &str) -> String {
    format!(
        "{{ jwks_url = \"{}\", algorithms = [\"ES256\"], refresh_interval = \"{refresh}\", \
         min_refresh_interval = \"{min_refresh}\" }}",
        server.url()
    )
}

/// A config proxying to `up`: one route per `(prefix, extra lines)`, then `policies`.
fn config(up: &TestUpstream, routes: &[(&str, &str)], policies: &str) -> ConfigBuilder {
    let mut b = ConfigBuilder::new().upstream("test", &[up.addr()], "");
    for (prefix, extra) in routes {
        b = b.route(prefix, "test", extra);
    }
    b.raw(policies)
}

/// Starts `b` with [`SECRET`] in [`SECRET_ENV`].
fn start(b: ConfigBuilder, driver: Driver) -> Gateway {
    b.start_with_env(driver, &[(SECRET_ENV, SECRET)])
}

/// One route `/` under policy `p`, whose `[[auth]]` table is `table`.
fn one_route(up: &TestUpstream, table: &str, driver: Driver) -> Gateway {
    start(config(up, &[("/", "auth = \"p\"")], table), driver)
}

// ---- requests and assertions ----

/// `GET path` on a new connection.
fn call(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Response {
    gw.client().request(&req("GET", path, headers, b""))
}

fn bearer(gw: &Gateway, path: &str, token: &str) -> Response {
    call(gw, path, &[("Authorization", &format!("Bearer {token}"))])
}

/// Asserts the upstream answered (its echo body names the request).
fn assert_passed(resp: &Response, path: &str, what: &str) {
    assert_eq!(resp.status, 200, "{what}: {}{}", resp.head_str(), resp.body_str());
    assert_eq!(resp.body_str(), format!("GET {path}\n"), "{what}: the upstream's answer");
}

fn passes(gw: &Gateway, path: &str, token: &str, what: &str) {
    assert_passed(&bearer(gw, path, token), path, what);
}

/// Asserts `status`, exactly one `WWW-Authenticate` equal to `www`, and a short body.
fn assert_challenge(resp: &Response, status: u16, www: &str, what: &str) {
    assert_eq!(resp.status, status, "{what}: {}", resp.head_str());
    assert_eq!(resp.header_all("www-authenticate"), [www], "{what}");
    assert!(resp.body.len() < 100, "{what}: a short body, got {:?}", resp.body_str());
}

/// Asserts a 401 `invalid_token` whose description is one of `descriptions` (any when empty:
/// a case docs/auth.md names no text for), and that the body does not echo the token.
fn refused(gw: &Gateway, path: &str, token: &str, descriptions: &[&str], what: &str) -> Response {
    let resp = bearer(gw, path, token);
    assert_eq!(resp.status, 401, "{what}: {}", resp.head_str());
    let got = resp.header_all("www-authenticate");
    let ok = got.len() == 1
        && match descriptions {
            [] => got[0].starts_with(INVALID_TOKEN),
            _ => descriptions.iter().any(|d| got[0] == invalid_token(d)),
        };
    assert!(ok, "{what}: WWW-Authenticate {got:?}, expected error_description in {descriptions:?}");
    assert!(resp.body.len() < 100 && !resp.body_str().contains(token), "{what}: body {:?}", resp.body_str());
    resp
}

/// `Authorization: auth` followed by the `extra` fields.
fn with_auth<'a>(auth: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![("Authorization", auth)];
    h.extend_from_slice(extra);
    h
}

/// Polls `f` every 20 ms until it holds, for at most [`PROMPT`].
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + PROMPT;
    while !f() {
        assert!(Instant::now() < deadline, "not within {PROMPT:?}: {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// A token unlike any other (a fresh `jti`), so no verified-token cache can answer for it.
fn fresh(key: &TestKey) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    key.token(&claims(json!({ "jti": format!("t{n}") })))
}

/// `{ header }.{ payload }.{ signature }` with the payload replaced by `payload`.
fn with_payload(token: &str, payload: &Value) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], b64(payload.to_string().as_bytes()), parts[2])
}

// ---- algorithms and key sources ----

/// Each algorithm family verifies with its pinned key: HMAC secrets from the environment and
/// from files, RSA (SPKI and PKCS#1 PEM), RSA-PSS, ECDSA P-256 and P-384, Ed25519; with and
/// without `kid`.
fn accepts_each_algorithm_with_its_key(driver: Driver) {
    let dir = KeyDir::new();
    let rsa = TestKey::generate(RS256).with_kid("rs256");
    let hs256 = TestKey::hmac(HS256, SECRET);
    // RFC 7518 §3.2: a key at least as long as the hash.
    let hs384 = TestKey::hmac(HS384, &"hs384-file-secret-".repeat(3)).with_kid("hs384");
    let hs512 = TestKey::hmac(HS512, &"hs512-file-secret-".repeat(4));
    let rs384 = rsa.as_alg(RS384).with_kid("rs384-pkcs1");
    let ps256 = rsa.as_alg(PS256).with_kid("ps256");
    let es256 = TestKey::generate(ES256);
    let es384 = TestKey::generate(ES384).with_kid("es384");
    let ed = TestKey::generate(EdDSA).with_kid("ed");
    let entries = [
        env_key(&hs256),
        file_key(&hs384, &dir),
        file_key(&hs512, &dir),
        pem_key(&rsa, &rsa.public_pem, &dir),
        pem_key(&rs384, &rsa.rsa_pkcs1_pem, &dir),
        pem_key(&ps256, &ps256.public_pem, &dir),
        pem_key(&es256, &es256.public_pem, &dir),
        pem_key(&es384, &es384.public_pem, &dir),
        pem_key(&ed, &ed.public_pem, &dir),
    ];
    let up = TestUpstream::echo();
    let gw = one_route(&up, &policy("p", &[], &entries), driver);
    let keys = [&hs256, &hs384, &hs512, &rsa, &rs384, &ps256, &es256, &es384, &ed];
    for key in keys {
        passes(&gw, "/api", &key.token(&claims(json!({}))), &format!("{:?} kid {:?}", key.alg, key.kid));
    }
    assert_eq!(up.request_count(), keys.len());
}

/// A JWKS file: a key's own `alg` must be listed; a key without `alg` takes the first listed
/// algorithm that fits it; a key whose `alg` is not listed is skipped.
#[test]
fn accepts_keys_from_a_jwks_file() {
    let dir = KeyDir::new();
    let rsa = TestKey::generate(RS256).with_kid("j-rs");
    let ec = TestKey::generate(ES256).with_kid("j-es");
    let unlisted = rsa.as_alg(RS384).with_kid("j-rs384");
    let mut ec_jwk = ec.jwk();
    ec_jwk.as_object_mut().expect("a JWK object").remove("alg");
    let jwks = json!({ "keys": [rsa.jwk(), ec_jwk, unlisted.jwk()] }).to_string();
    let entry = format!("{{ jwks_file = \"{}\", algorithms = [\"RS256\", \"ES256\"] }}", dir.file("json", &jwks));
    let up = TestUpstream::echo();
    let gw = one_route(&up, &policy("p", &[], &[entry]), DRIVER);
    passes(&gw, "/a", &rsa.token(&claims(json!({}))), "RS256 key with alg");
    passes(&gw, "/b", &ec.token(&claims(json!({}))), "EC key without alg takes ES256");
    // The RS384 key is skipped: neither its own algorithm nor a listed one verifies under its kid.
    // (RS384 being configured nowhere, "algorithm not allowed" is as right as "unknown key".)
    let rs384 = unlisted.token(&claims(json!({})));
    refused(&gw, "/c", &rs384, &["unknown key", "algorithm not allowed"], "RS384 token, RS384 not listed");
    let as_rs256 = rsa.clone().with_kid("j-rs384").token(&claims(json!({})));
    refused(&gw, "/c", &as_rs256, &["unknown key"], "RS256 token under the skipped key's kid");
    assert!(gw.wait_output("j-rs384", PROMPT), "the skipped key is named in a warning:\n{}", gw.output());
}

// ---- where the token is ----

/// No token, or another scheme, gets the bare challenge; two Authorization fields are a 400;
/// the scheme is case-insensitive; routes without a policy are untouched.
fn missing_token_gets_the_bare_challenge(driver: Driver) {
    let key = TestKey::hmac(HS256, SECRET);
    let up = TestUpstream::echo();
    let routes = [("/api/", "auth = \"p\""), ("/open/", "")];
    let gw = start(config(&up, &routes, &policy("p", &[], &[env_key(&key)])), driver);
    let token = key.token(&claims(json!({})));
    assert_challenge(&call(&gw, "/api/x", &[]), 401, CHALLENGE, "no token");
    let basic = call(&gw, "/api/x", &[("Authorization", "Basic YWxpY2U6c2VjcmV0")]);
    assert_challenge(&basic, 401, CHALLENGE, "Basic scheme");
    assert_passed(&call(&gw, "/api/x", &[("Authorization", &format!("bEaReR {token}"))]), "/api/x", "bEaReR");
    refused(&gw, "/api/x", "not-a-jwt", &["malformed token"], "not a JWT");
    let auth = format!("Bearer {token}");
    let two = call(&gw, "/api/x", &[("Authorization", &auth), ("Authorization", &auth)]);
    assert_challenge(&two, 400, INVALID_REQUEST, "two Authorization fields");
    let open = call(&gw, "/open/x", &[("Authorization", "Basic YWxpY2U6c2VjcmV0")]);
    assert_passed(&open, "/open/x", "a route without a policy");
    let seen = up.wait_requests(2, PROMPT);
    assert_eq!(seen.len(), 2, "only the two accepted requests reached the upstream");
    assert_eq!(seen[1].header_all("authorization"), ["Basic YWxpY2U6c2VjcmV0"], "untouched");
}

/// `token_header` (the `Bearer ` prefix optional) and `token_cookie` instead of Authorization.
#[test]
fn token_from_a_header_or_a_cookie() {
    let key = TestKey::hmac(HS256, SECRET);
    let policies = [
        policy("hdr", &["token_header = \"X-Api-Token\""], &[env_key(&key)]),
        policy("ck", &["token_cookie = \"jwt\""], &[env_key(&key)]),
    ];
    let up = TestUpstream::echo();
    let routes = [("/hdr/", "auth = \"hdr\""), ("/ck/", "auth = \"ck\"")];
    let gw = start(config(&up, &routes, &policies.concat()), DRIVER);
    let token = key.token(&claims(json!({})));
    let bearer_token = format!("Bearer {token}");
    assert_passed(&call(&gw, "/hdr/1", &[("X-Api-Token", &token)]), "/hdr/1", "bare token in the header");
    assert_passed(&call(&gw, "/hdr/2", &[("X-Api-Token", &bearer_token)]), "/hdr/2", "with the Bearer prefix");
    assert_challenge(&bearer(&gw, "/hdr/3", &token), 401, CHALLENGE, "Authorization is not the configured place");
    let two = call(&gw, "/hdr/4", &[("X-Api-Token", &token), ("X-Api-Token", &token)]);
    assert_challenge(&two, 400, INVALID_REQUEST, "two token headers");
    let cookie = format!("theme=dark; jwt={token}; lang=en");
    assert_passed(&call(&gw, "/ck/1", &[("Cookie", &cookie)]), "/ck/1", "token in a cookie");
    assert_challenge(&call(&gw, "/ck/2", &[("Cookie", "theme=dark")]), 401, CHALLENGE, "no such cookie");
    let twice = format!("jwt={token}; jwt={token}");
    let resp = call(&gw, "/ck/3", &[("Cookie", &twice)]);
    assert_challenge(&resp, 400, INVALID_REQUEST, "two jwt cookies");
    assert_eq!(up.request_count(), 3);
}

// ---- claims ----

/// Claims the strict policy accepts (issuer and audience set), with `extra` applied.
fn strict_claims(extra: Value) -> Value {
    let mut c = json!({ "iss": ISSUER, "aud": AUDIENCE });
    for (k, v) in extra.as_object().expect("an object") {
        c[k] = v.clone();
    }
    claims(c)
}

/// RFC 7519 §4.1: exp and nbf with a 2 s leeway, issuer and audience allow-lists, required
/// claims (`exp` always), and the signature, each with its `error_description`.
#[test]
fn claim_checks_answer_per_rfc6750() {
    let dir = KeyDir::new();
    let hs = TestKey::hmac(HS256, SECRET);
    let es = TestKey::generate(ES256).with_kid("es");
    let (issuers, audiences) = (format!("issuers = [\"{ISSUER}\"]"), format!("audiences = [\"{AUDIENCE}\"]"));
    let lines = [issuers.as_str(), audiences.as_str(), "leeway = \"2s\"", "required_claims = [\"sub\"]"];
    let up = TestUpstream::echo();
    let gw = one_route(&up, &policy("p", &lines, &[env_key(&hs), pem_key(&es, &es.public_pem, &dir)]), DRIVER);
    let t = now();
    let accepted = [
        (json!({}), "valid"),
        (json!({ "aud": ["other", AUDIENCE] }), "aud as an array naming the audience"),
        (json!({ "exp": t - 1 }), "expired within the leeway"),
        (json!({ "nbf": t + 1 }), "not yet valid within the leeway"),
    ];
    for (extra, what) in &accepted {
        passes(&gw, "/ok", &hs.token(&strict_claims(extra.clone())), what);
    }
    let refusals: [(Value, &[&str], &str); 11] = [
        (json!({ "exp": t - 3 }), &["token expired"], "expired 1 s beyond the leeway"),
        (json!({ "nbf": t + 60 }), &["token not yet valid"], "nbf a minute ahead"),
        (json!({ "iss": "https://evil.test" }), &["wrong issuer"], "issuer not listed"),
        (json!({ "iss": null }), &["missing claim", "wrong issuer"], "no iss while issuers is set"),
        (json!({ "aud": "billing-api" }), &["wrong audience"], "audience not listed"),
        (json!({ "aud": ["a", "b"] }), &["wrong audience"], "no listed audience in the array"),
        (json!({ "aud": null }), &["missing claim", "wrong audience"], "no aud while audiences is set"),
        (json!({ "sub": null }), &["missing claim"], "required sub missing"),
        (json!({ "exp": null }), &["missing claim"], "exp is always required"),
        (json!({ "exp": "tomorrow" }), &["malformed token", "missing claim"], "exp not a number"),
        (json!({ "nbf": t + 60, "exp": t - 60 }), &["token expired", "token not yet valid"], "both"),
    ];
    for (extra, descriptions, what) in refusals {
        refused(&gw, "/no", &hs.token(&strict_claims(extra)), descriptions, what);
    }
    let good = strict_claims(json!({}));
    let other_secret = TestKey::hmac(HS256, "another secret of more than thirty-two bytes");
    refused(&gw, "/no", &other_secret.token(&good), &["invalid signature"], "HS256 with another secret");
    let other_ec = TestKey::generate(ES256).with_kid("es");
    refused(&gw, "/no", &other_ec.token(&good), &["invalid signature"], "ES256 by another key under kid es");
    passes(&gw, "/ok", &es.token(&good), "the real ES256 key");
    assert_eq!(up.request_count(), accepted.len() + 1, "no refused request reached the upstream");
}

/// A verified token is cached until its `exp` (plus leeway), not beyond.
#[test]
fn cached_token_expires_on_time() {
    let key = TestKey::hmac(HS256, SECRET);
    let up = TestUpstream::echo();
    let gw = one_route(&up, &policy("p", &["leeway = \"0s\""], &[env_key(&key)]), DRIVER);
    let exp = now() + 1;
    let token = key.token(&claims(json!({ "exp": exp })));
    passes(&gw, "/a", &token, "valid for a second");
    while now() <= exp + 1 {
        thread::sleep(Duration::from_millis(50));
    }
    refused(&gw, "/a", &token, &["token expired"], "the same token after its exp");
}

/// Scopes from `scope` (space-separated, RFC 8693 §4.2) or `scp` (array or string); all-of by
/// default, any-of with `scopes_match = "any"`; 403 lists the route's scopes (RFC 6750 §3).
fn scopes_all_and_any(driver: Driver) {
    let key = TestKey::hmac(HS256, SECRET);
    let both = r#"scopes = ["orders:read", "orders:write"]"#;
    let (all, any) = (format!("auth = \"p\"\n{both}"), format!("auth = \"p\"\n{both}\nscopes_match = \"any\""));
    let routes =
        [("/read/", "auth = \"p\"\nscopes = [\"orders:read\"]"), ("/all/", all.as_str()), ("/any/", any.as_str())];
    let up = TestUpstream::echo();
    let gw = start(config(&up, &routes, &policy("p", &[], &[env_key(&key)])), driver);
    let tok = |scopes: Value| key.token(&claims(scopes));
    let read = tok(json!({ "scope": "orders:read" }));
    let write_scp = tok(json!({ "scp": ["orders:write"] }));
    let none = tok(json!({}));
    let longer = tok(json!({ "scope": "orders:readwrite" }));
    let (only_read, read_write) = (insufficient_scope("orders:read"), insufficient_scope("orders:read orders:write"));
    passes(&gw, "/read/1", &read, "scope string");
    passes(&gw, "/any/1", &read, "one of any");
    passes(&gw, "/any/2", &write_scp, "scp array, one of any");
    passes(&gw, "/all/1", &tok(json!({ "scope": "orders:write orders:read" })), "all, in another order");
    passes(&gw, "/read/2", &tok(json!({ "scp": "orders:read" })), "scp as a string");
    let forbidden = [
        (&read, "/all/2", &read_write, "one of two with all"),
        (&write_scp, "/read/3", &only_read, "the other scope"),
        (&none, "/read/4", &only_read, "no scope claim"),
        (&none, "/any/3", &read_write, "no scope with any"),
        (&longer, "/read/5", &only_read, "a longer name is not the scope"),
    ];
    for (token, path, www, what) in forbidden {
        let resp = bearer(&gw, path, token);
        assert_challenge(&resp, 403, www, what);
        assert!(!resp.body_str().contains(token.as_str()), "{what}: the body echoes the token");
    }
    assert_eq!(up.request_count(), 5);
}

// ---- attacks ----

/// The attack policy: RS256 under `kid` "rs", ES256 without `kid`, HS256 under `kid` "hs".
struct Attack {
    _dir: KeyDir,
    rsa: TestKey,
    ec: TestKey,
    hs: TestKey,
    up: TestUpstream,
    gw: Gateway,
}

impl Attack {
    fn start() -> Attack {
        let dir = KeyDir::new();
        let rsa = TestKey::generate(RS256).with_kid("rs");
        let ec = TestKey::generate(ES256);
        let hs = TestKey::hmac(HS256, SECRET).with_kid("hs");
        let entries = [pem_key(&rsa, &rsa.public_pem, &dir), pem_key(&ec, &ec.public_pem, &dir), env_key(&hs)];
        let up = TestUpstream::echo();
        let gw = one_route(&up, &policy("p", &[], &entries), DRIVER);
        for key in [&rsa, &ec, &hs] {
            passes(&gw, "/ok", &key.token(&claims(json!({}))), &format!("baseline {:?}", key.alg));
        }
        Attack { _dir: dir, rsa, ec, hs, up, gw }
    }

    fn refused(&self, token: &str, descriptions: &[&str], what: &str) -> Response {
        refused(&self.gw, "/attack", token, descriptions, what)
    }
}

/// RFC 8725 §2.1: `alg: none`, and HMAC keyed with the RSA public key, are refused: the
/// algorithm is pinned per key. So is PS256 under an RS256 key's `kid`.
#[test]
fn algorithm_confusion_is_refused() {
    let a = Attack::start();
    let payload = claims(json!({})).to_string();
    for header in [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"none","kid":"hs"}"#, r#"{"alg":"None","kid":"rs"}"#] {
        let token = format!("{}.{}.", b64(header.as_bytes()), b64(payload.as_bytes()));
        a.refused(&token, &["algorithm not allowed", "malformed token"], header);
    }
    let good = claims(json!({}));
    for (pem, form) in [(&a.rsa.public_pem, "SPKI"), (&a.rsa.rsa_pkcs1_pem, "PKCS#1")] {
        let forged = TestKey::hmac(HS256, pem);
        let what = format!("HS256 keyed with the {form} RSA public key PEM");
        a.refused(&forged.clone().with_kid("rs").token(&good), &["algorithm not allowed"], &format!("{what}, kid rs"));
        let no_kid = ["algorithm not allowed", "unknown key", "invalid signature"];
        a.refused(&forged.token(&good), &no_kid, &format!("{what}, no kid"));
    }
    a.refused(&a.rsa.as_alg(PS256).token(&good), &["algorithm not allowed"], "PS256 under the RS256 kid");
    a.refused(&a.hs.as_alg(HS512).token(&good), &["algorithm not allowed"], "HS512 under the HS256 kid");
    assert_eq!(a.up.request_count(), 3, "only the baselines reached the upstream");
}

/// A tampered payload, `kid`s naming no key (unknown, path and SQL junk, a header injection),
/// and keys carried in the token itself (`jwk`, `jku`, `x5u`: never used, never fetched).
#[test]
fn forged_tokens_and_kid_junk_are_refused() {
    let a = Attack::start();
    let admin = claims(json!({ "sub": "admin", "role": "root" }));
    for key in [&a.rsa, &a.ec, &a.hs] {
        let tampered = with_payload(&key.token(&claims(json!({}))), &admin);
        a.refused(&tampered, &["invalid signature"], &format!("{:?} token with a tampered payload", key.alg));
    }
    for kid in ["nope", "../../etc/passwd", "' OR 1=1 --", "/dev/null", "hs\u{0}", "x\r\nX-Injected: yes"] {
        let token = a.hs.clone().with_kid(kid).token(&claims(json!({})));
        let resp = a.refused(&token, &["unknown key"], &format!("kid {kid:?}"));
        assert!(resp.header("x-injected").is_none(), "kid {kid:?} reflected:\n{}", resp.head_str());
    }
    // An attacker's own key, embedded as `jwk` or served at `jku`/`x5u` over loopback.
    let attacker = TestKey::generate(ES256).with_kid("attacker");
    let jku = JwksServer::with_keys(&[attacker.jwk()]);
    let mut header = attacker.header();
    header.jwk = Some(serde_json::from_value(attacker.jwk()).expect("a JWK"));
    header.kid = None;
    let embedded = attacker.token_with(&header, &claims(json!({})));
    a.refused(&embedded, &["invalid signature"], "ES256 with the signer's own jwk embedded");
    let mut header = attacker.header();
    (header.jku, header.x5u) = (Some(jku.url()), Some(jku.url()));
    a.refused(&attacker.token_with(&header, &claims(json!({}))), &["unknown key"], "jku and x5u to the signer's set");
    thread::sleep(SETTLE);
    assert_eq!(jku.fetches(), 0, "the gateway fetched a URL named by a token");
    // RFC 7515 §4.1.11: no extension is understood, so a `crit` header is refused.
    let crit = a.hs.sign_raw(r#"{"alg":"HS256","kid":"hs","crit":["exp"],"exp":1}"#, &claims(json!({})).to_string());
    a.refused(&crit, &[], "crit header");
    assert_eq!(a.up.request_count(), 3, "only the baselines reached the upstream");
}

/// Broken encodings, duplicate claim names (RFC 7519 §4: MUST reject or take the last; a
/// gateway in front of other parsers must reject), and oversized tokens.
#[test]
fn malformed_and_oversized_tokens_are_refused() {
    let a = Attack::start();
    let good = a.hs.token(&claims(json!({})));
    let parts: Vec<&str> = good.split('.').collect();
    let header = r#"{"alg":"HS256","kid":"hs"}"#;
    let malformed = [
        "!!!.@@@.###".to_string(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.extra"),
        format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
        a.hs.sign_raw(header, "[1, 2, 3]"),
        a.hs.sign_raw(header, "not json"),
    ];
    for token in &malformed {
        a.refused(token, &["malformed token"], &format!("malformed {token:?}"));
    }
    // Whether the payload is decoded before the signature is checked is the gateway's choice.
    let broken_after_header = [
        format!("{}.pay*load.{}", parts[0], parts[2]),
        format!("{}.{}.{}", parts[0], b64(b"[1, 2, 3]"), parts[2]),
        format!("{}.{}.si%gn", parts[0], parts[1]),
    ];
    for token in &broken_after_header {
        a.refused(token, &["malformed token", "invalid signature"], &format!("malformed {token:?}"));
    }
    let exp = now() + 600;
    let duplicates = [
        format!(r#"{{"sub":"alice","sub":"admin","exp":{exp}}}"#),
        format!(r#"{{"sub":"alice","exp":{},"exp":{exp}}}"#, now() - 600),
        format!(r#"{{"sub":"alice","exp":{exp},"scope":"a","scope":"orders:admin"}}"#),
    ];
    for payload in &duplicates {
        a.refused(&a.hs.sign_raw(header, payload), &["malformed token"], &format!("duplicate names in {payload}"));
    }
    let dup_alg = a.hs.sign_raw(r#"{"alg":"HS256","alg":"none","kid":"hs"}"#, &claims(json!({})).to_string());
    a.refused(&dup_alg, &["malformed token", "algorithm not allowed"], "duplicate alg in the header");
    // Default max_token_bytes is 8 KiB: a token just under passes, one just over is refused
    // before decoding; a 1 MiB one exceeds the head limit (32 KiB) and gets 431 from the parser.
    let padded = |n: usize| a.hs.token(&claims(json!({ "pad": "x".repeat(n) })));
    let (under, over) = (padded(5800), padded(6400));
    assert!(under.len() < 8192 && over.len() > 8192, "{} and {} bytes", under.len(), over.len());
    passes(&a.gw, "/under", &under, "a token just under 8 KiB");
    a.refused(&over, &["token too large"], "a token just over 8 KiB");
    let huge = padded(780 * 1024);
    assert!(huge.len() > 1 << 20);
    assert_eq!(send_huge(&a.gw, &huge), Some(431), "a 1 MiB Authorization field");
    passes(&a.gw, "/after", &a.hs.token(&claims(json!({}))), "the gateway serves on");
    assert_eq!(a.up.request_count(), 5, "the baselines and the two good tokens");
}

/// Sends a request with a `token` too big to read whole, writing on a thread while reading the
/// answer (the gateway answers and closes before the upload ends). The status, if any came.
fn send_huge(gw: &Gateway, token: &str) -> Option<u16> {
    let mut c = gw.client();
    let raw = req("GET", "/huge", &[("Authorization", &format!("Bearer {token}"))], b"");
    let mut writer = c.stream().try_clone().expect("clone the client socket");
    let upload = thread::spawn(move || {
        let _ = writer.write_all(&raw);
    });
    let resp = c.try_read_response_to("GET", None);
    let _ = upload.join();
    resp.ok().flatten().map(|r| r.status)
}

// ---- JWKS URLs ----

/// Rotation: a new key served at the URL is picked up (a token naming it triggers a refresh);
/// tokens of the old key keep working until it is removed, then fail after the next refresh,
/// cached or not.
#[test]
fn jwks_rotation_over_loopback() {
    let (k1, k2) = (TestKey::generate(ES256).with_kid("k1"), TestKey::generate(ES256).with_kid("k2"));
    let server = JwksServer::with_keys(&[k1.jwk()]);
    let up = TestUpstream::echo();
    let gw = one_route(&up, &policy("p", &[], &[url_key(&server, "500ms", "200ms")]), DRIVER);
    let (t1, t2) = (k1.token(&claims(json!({}))), k2.token(&claims(json!({}))));
    passes(&gw, "/1", &t1, "k1 from the first fetch");
    refused(&gw, "/2", &t2, &["unknown key"], "k2 before the server has it");
    server.set_keys(&[k1.jwk(), k2.jwk()]);
    eventually("k2 is picked up", || bearer(&gw, "/2", &t2).status == 200);
    passes(&gw, "/1", &t1, "k1 still works beside k2");
    server.set_keys(&[k2.jwk()]);
    eventually("k1's cached token fails once k1 is gone", || bearer(&gw, "/1", &t1).status == 401);
    refused(&gw, "/1", &t1, &["unknown key"], "k1 removed");
    passes(&gw, "/2", &t2, "k2 still works");
}

/// A failed refresh (500, a closed connection, not JSON, not a key set) keeps the last good set.
#[test]
fn jwks_refresh_failure_keeps_the_last_good_set() {
    let key = TestKey::generate(ES256).with_kid("k1");
    let server = JwksServer::with_keys(&[key.jwk()]);
    let up = TestUpstream::echo();
    let gw = one_route(&up, &policy("p", &[], &[url_key(&server, "100ms", "100ms")]), DRIVER);
    passes(&gw, "/", &fresh(&key), "the first fetch");
    let failures = [
        Serve::Status(500),
        Serve::Close,
        Serve::Document("this is not JSON".into()),
        Serve::Document(r#"{"keys": 5}"#.into()),
    ];
    for failure in failures {
        let what = format!("after refreshes answered with {failure:?}");
        server.set(failure);
        server.wait_fetches(server.fetches() + 2, PROMPT);
        passes(&gw, "/", &fresh(&key), &what);
    }
    let next = TestKey::generate(ES256).with_kid("k2");
    server.set_keys(&[next.jwk()]);
    eventually("a good refresh replaces the set", || bearer(&gw, "/", &fresh(&next)).status == 200);
    refused(&gw, "/", &fresh(&key), &["unknown key"], "k1 is gone from the new set");
}

/// Unknown `kid`s trigger refreshes at most once per `min_refresh_interval`: 50 requests in
/// about a second cause a few fetches, not 50.
#[test]
fn jwks_unknown_kid_refresh_is_bounded() {
    let key = TestKey::generate(ES256).with_kid("k1");
    let server = JwksServer::with_keys(&[key.jwk()]);
    let up = TestUpstream::echo();
    let min_refresh = Duration::from_millis(500);
    let gw = one_route(&up, &policy("p", &[], &[url_key(&server, "1h", "500ms")]), DRIVER);
    passes(&gw, "/", &key.token(&claims(json!({}))), "the first fetch");
    let before = server.fetches();
    let start = Instant::now();
    for i in 0..50 {
        let token = key.clone().with_kid(&format!("unknown-{i}")).token(&claims(json!({})));
        refused(&gw, "/", &token, &["unknown key"], &format!("unknown kid {i}"));
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(min_refresh + SETTLE);
    let window = start.elapsed();
    let fetched = server.fetches() - before;
    // One fetch may start at once (the interval counts from the load's fetch), then one per
    // interval; one more for a refresh in flight at either end.
    let bound = (window.as_millis() / min_refresh.as_millis()) as usize + 2;
    assert!(fetched >= 1, "an unknown kid triggers a refresh");
    assert!(fetched <= bound, "{fetched} fetches in {window:?} with min_refresh_interval {min_refresh:?}");
}

/// A first fetch that fails: the gateway starts, answers `no keys available`, logs the failure
/// and retries until a fetch succeeds.
#[test]
fn jwks_first_fetch_failure_answers_no_keys_available() {
    let key = TestKey::generate(ES256).with_kid("k1");
    let server = JwksServer::start(Serve::Status(503));
    let up = TestUpstream::echo();
    let gw = one_route(&up, &policy("p", &[], &[url_key(&server, "1h", "200ms")]), DRIVER);
    let token = key.token(&claims(json!({})));
    refused(&gw, "/", &token, &["no keys available"], "before any good fetch");
    assert!(gw.output().to_ascii_lowercase().contains("jwks"), "the failure is logged:\n{}", gw.output());
    server.set_keys(&[key.jwk()]);
    eventually("a retry succeeds", || bearer(&gw, "/", &token).status == 200);
}

/// A reload that keeps the JWKS URL keeps its key set (no fetch is needed, so an identity
/// provider that is down during the reload costs nothing), and the old snapshot's source is
/// shared, not refetched.
#[test]
fn reload_keeps_the_jwks_key_set() {
    let key = TestKey::generate(ES256).with_kid("k1");
    let server = JwksServer::with_keys(&[key.jwk()]);
    let up = TestUpstream::echo();
    let table = policy("p", &[], &[url_key(&server, "1h", "1h")]);
    let gw = one_route(&up, &table, DRIVER);
    passes(&gw, "/", &fresh(&key), "the first fetch");
    let fetched = server.fetches();
    server.set(Serve::Status(503));
    // Same policy, one more route: a reload that keeps the URL.
    gw.write_config(&config(&up, &[("/", "auth = \"p\""), ("/more/", "auth = \"p\"")], &table).render());
    gw.signal("HUP");
    eventually("the reload is done", || {
        gw.output().lines().any(|l| l.contains("reload ok") && l.contains("generation=2"))
    });
    passes(&gw, "/more/x", &fresh(&key), "after the reload, with the provider down");
    assert_eq!(server.fetches(), fetched, "the reload fetched nothing");
}

// ---- the upstream's view ----

/// claims_to_headers: strings as they are, numbers and booleans as text, arrays joined with
/// `,`, values with control characters not sent; client-sent copies always removed first
/// (a spoofed X-User-Id never arrives); Authorization kept, or stripped with
/// `forward_authorization = false`.
fn claims_reach_the_upstream_and_spoofed_copies_do_not(driver: Driver) {
    let key = TestKey::hmac(HS256, SECRET);
    let mapping = "claims_to_headers = { sub = \"X-User-Id\", plan = \"X-Plan\", tier = \"X-Tier\", \
                   beta = \"X-Beta\", groups = \"X-Groups\", note = \"X-Note\" }";
    let policies = [
        policy("users", &[mapping], &[env_key(&key)]),
        policy(
            "strip",
            &["forward_authorization = false", "claims_to_headers = { sub = \"X-User-Id\" }"],
            &[env_key(&key)],
        ),
    ];
    let routes = [("/users/", "auth = \"users\""), ("/strip/", "auth = \"strip\"")];
    let up = TestUpstream::echo();
    let gw = start(config(&up, &routes, &policies.concat()), driver);
    let full = claims(json!({ "plan": "pro", "tier": 3, "beta": true, "groups": ["a", "b"], "note": "x\ny" }));
    let token = key.token(&full);
    let auth = format!("Bearer {token}");
    let spoofs = [
        ("X-User-Id", "mallory"),
        ("x-user-id", "eve"),
        ("X-Plan", "enterprise"),
        ("X-Note", "spoofed"),
        ("X-USER-ID", "mallory2"),
    ];
    assert_passed(&call(&gw, "/users/1", &with_auth(&auth, &spoofs)), "/users/1", "full claims");
    let no_plan = format!("Bearer {}", key.token(&claims(json!({}))));
    assert_passed(&call(&gw, "/users/2", &with_auth(&no_plan, &spoofs)), "/users/2", "no plan claim");
    let strip = call(&gw, "/strip/3", &with_auth(&auth, &spoofs));
    assert_passed(&strip, "/strip/3", "forward_authorization = false");
    assert_eq!(call(&gw, "/users/4", &spoofs).status, 401, "spoofed headers without a token");
    let seen = up.wait_requests(3, PROMPT);
    assert_eq!(seen.len(), 3, "the unauthenticated request did not reach the upstream");
    let expect = [
        ("x-user-id", vec!["alice"]),
        ("x-plan", vec!["pro"]),
        ("x-tier", vec!["3"]),
        ("x-beta", vec!["true"]),
        ("x-groups", vec!["a,b"]),
        ("x-note", vec![]),
        ("authorization", vec![auth.as_str()]),
    ];
    for (name, values) in &expect {
        assert_eq!(&seen[0].header_all(name), values, "{name} upstream:\n{}", seen[0].head_str());
    }
    assert_eq!(seen[1].header_all("x-user-id"), ["alice"], "{}", seen[1].head_str());
    assert!(seen[1].header_all("x-plan").is_empty(), "no plan claim, no X-Plan:\n{}", seen[1].head_str());
    assert_eq!(seen[2].header_all("x-user-id"), ["alice"], "{}", seen[2].head_str());
    assert!(!seen[2].has_header("authorization"), "stripped:\n{}", seen[2].head_str());
}

// ---- policy attachment ----

/// `prefixes` attaches a policy to every route under it that sets no `auth` of its own; a
/// route with `auth = "anonymous"` is open, one naming another policy uses that one.
#[test]
fn prefixes_attach_a_policy_unless_the_route_opts_out() {
    let key = TestKey::hmac(HS256, SECRET);
    let policies = [
        policy("orders", &["prefixes = [\"/orders/\"]"], &[env_key(&key)]),
        policy("admin", &["token_header = \"X-Admin-Token\""], &[env_key(&key)]),
    ];
    let routes = [
        ("/orders/", ""),
        ("/orders/public/", "auth = \"anonymous\""),
        ("/orders/admin/", "auth = \"admin\""),
        ("/orders-old/", ""),
    ];
    let up = TestUpstream::echo();
    let gw = start(config(&up, &routes, &policies.concat()), DRIVER);
    let token = key.token(&claims(json!({})));
    assert_challenge(&call(&gw, "/orders/1", &[]), 401, CHALLENGE, "under the prefix, no token");
    passes(&gw, "/orders/1", &token, "under the prefix, a token");
    assert_passed(&call(&gw, "/orders/public/x", &[]), "/orders/public/x", "anonymous route under the prefix");
    assert_passed(&call(&gw, "/orders-old/x", &[]), "/orders-old/x", "not under /orders/");
    assert_challenge(&bearer(&gw, "/orders/admin/x", &token), 401, CHALLENGE, "admin wants X-Admin-Token");
    assert_passed(&call(&gw, "/orders/admin/x", &[("X-Admin-Token", &token)]), "/orders/admin/x", "admin policy");
}

// ---- the log ----

/// At debug level, after a run of refusals and a success, no token (nor its payload or
/// signature part) and no secret appears in the gateway's output.
#[test]
fn tokens_never_reach_the_log() {
    let key = TestKey::hmac(HS256, SECRET).with_kid("hs");
    let up = TestUpstream::echo();
    let routes = [("/", "auth = \"p\"\nscopes = [\"orders:read\"]")];
    let b = config(&up, &routes, &policy("p", &["leeway = \"0s\""], &[env_key(&key)]));
    let mut gw = b.start_with_env(DRIVER, &[(SECRET_ENV, SECRET), ("RINGGATE_LOG", "debug")]);
    let scoped = |extra: Value| {
        let mut c = claims(extra);
        c["scope"] = json!("orders:read");
        c
    };
    let good = key.token(&scoped(json!({})));
    let tokens = [
        TestKey::hmac(HS256, "a wrong secret, thirty-two bytes or more").with_kid("hs").token(&scoped(json!({}))),
        key.token(&scoped(json!({ "exp": now() - 60 }))),
        key.token(&scoped(json!({ "nbf": now() + 600 }))),
        key.clone().with_kid("who").token(&scoped(json!({}))),
        key.token(&claims(json!({ "scope": "other" }))),
        with_payload(&good, &json!({ "sub": "admin", "exp": now() + 600 })),
        format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(br#"{"sub":"nobody-secret-marker"}"#)),
        "definitely-not-a-jwt-but-a-secret-marker-0123456789".to_string(),
        key.token(&scoped(json!({ "pad": "p".repeat(9000) }))),
    ];
    for token in &tokens {
        assert!(matches!(bearer(&gw, "/", token).status, 401 | 403), "refused");
    }
    passes(&gw, "/", &good, "the good token");
    gw.signal("TERM");
    assert!(gw.wait_exit(PROMPT).is_some(), "the gateway exits on TERM");
    thread::sleep(SETTLE);
    let out = gw.output();
    assert!(out.contains("listening on"), "the output was captured:\n{out}");
    assert!(out.contains("token expired"), "the refusals were logged (at debug), so the check means something:\n{out}");
    for token in tokens.iter().chain([&good]) {
        let parts: Vec<&str> = token.split('.').skip(1).filter(|p| p.len() >= 16).collect();
        for needle in parts.iter().copied().chain([token.as_str()]) {
            assert!(!out.contains(needle), "{needle:?} of a token is in the output:\n{out}");
        }
    }
    assert!(!out.contains(SECRET), "the secret is in the output");
}

// ---- ringgate check ----

fn check(config: &str) -> (bool, String) {
    let file = TempFile::new("auth-check", "toml", config);
    let out = run_cli(&["check", path_str(&file.path)], CLI_TIMEOUT);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `ringgate check` refuses bad auth settings, naming file:line and the key.
#[test]
fn check_refuses_bad_auth_settings() {
    let dir = KeyDir::new();
    let ec = TestKey::generate(ES256);
    let ec_pem = dir.write("ec.pub.pem", &ec.public_pem);
    let garbage = dir.write("garbage.pem", "this is not a key\n");
    let secret = dir.file("key", "a secret from a file, long enough\n");
    let build = |route_auth: &str, auth_lines: &str, key: &str| {
        let table = format!("[[auth]]\nname = \"p\"\n{auth_lines}keys = [{key}]\n");
        ConfigBuilder::new()
            .upstream_raw("api", &["builtin:demo"], "")
            .route("/", "api", &format!("auth = \"{route_auth}\""))
            .raw(&table)
            .render()
    };
    let good_key = format!("{{ algorithm = \"HS256\", secret_file = \"{secret}\" }}");
    let unset = "RINGGATE_TEST_SURELY_UNSET_VARIABLE";
    // (key entry, what the message must name)
    let bad_keys = [
        (format!("{{ algorithm = \"HS256\", secret_env = \"{unset}\" }}"), unset),
        (format!("{{ algorithm = \"ES256\", pem_file = \"{garbage}\" }}"), "garbage.pem"),
        ("{ algorithm = \"ES256\", pem_file = \"/nonexistent/k.pem\" }".into(), "/nonexistent/k.pem"),
        (format!("{{ algorithm = \"HS256\", pem_file = \"{ec_pem}\" }}"), "HS256"),
        (format!("{{ algorithm = \"RS256\", pem_file = \"{ec_pem}\" }}"), "ec.pub.pem"),
        ("{ algorithm = \"HS257\", secret_file = \"/x\" }".into(), "HS257"),
    ];
    // (config, what the message names, the key, how the offending line starts)
    let mut cases: Vec<(String, &str, &str, &str)> =
        bad_keys.iter().map(|(k, needle)| (build("p", "", k), *needle, "auth[0].keys[0]", "keys =")).collect();
    cases.push((build("nope", "", &good_key), "\"nope\"", "routes[0].auth", "auth = \"nope\""));
    let both = "token_header = \"x-token\"\ntoken_cookie = \"jwt\"\n";
    cases.push((build("p", both, &good_key), "token_header", "auth[0]", "token_"));
    // A secret in the config file in clear is not a field at all.
    let clear = "{ algorithm = \"HS256\", secret = \"in-the-clear\" }";
    cases.push((build("p", "", clear), "unknown field", "`secret`", "keys ="));
    for (config, needle, key, line_start) in &cases {
        let (ok, text) = check(config);
        assert!(!ok, "accepted:\n{config}");
        assert!(text.contains(needle), "no {needle:?} in:\n{text}\nconfig:\n{config}");
        assert!(text.contains(key), "the key {key} is named:\n{text}\nconfig:\n{config}");
        assert!(!text.contains("in-the-clear"), "a secret is printed:\n{text}");
        let blamed = text.lines().any(|l| l.contains("routes[0].auth") && !config.contains("auth = \"nope\""));
        assert!(!blamed, "a policy that exists but failed is reported as missing on the route:\n{text}");
        let lines: Vec<usize> =
            config.lines().enumerate().filter(|(_, l)| l.starts_with(line_start)).map(|(i, _)| i + 1).collect();
        assert!(
            lines.iter().any(|n| text.contains(&format!(".toml:{n}: "))),
            "one of lines {lines:?} is named:\n{text}\nconfig:\n{config}"
        );
    }
    let (ok, text) = check(&build("p", "", &good_key));
    assert!(ok, "a good policy is accepted:\n{text}");
}

both_drivers!(
    accepts_each_algorithm_with_its_key,
    missing_token_gets_the_bare_challenge,
    scopes_all_and_any,
    claims_reach_the_upstream_and_spoofed_copies_do_not,
);
