//! JWT material for the auth tests, all made at test time: keys ([`TestKey`]: HMAC secrets,
//! RSA, ECDSA P-256/P-384, Ed25519), their public halves as PEM or JWK, tokens signed with them
//! (through `jsonwebtoken`, or from hand-written header and payload JSON for the attack cases),
//! and a directory for key files ([`KeyDir`], removed on drop).
//!
//! RSA keys come from rcgen on its aws-lc-rs backend (the dev-dependency's `aws_lc_rs`
//! feature; ring cannot generate RSA keys). One RSA key is made per test process and shared.

use std::cell::Cell;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm};
use serde_json::{json, Value};

use super::gateway::{path_str, temp_path};

/// Seconds since the Unix epoch, as JWT `exp`, `nbf` and `iat` count them.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs() as i64
}

/// base64url without padding (RFC 7515 §2).
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Claims for subject `alice` valid for ten minutes, with `extra` merged in; a `null` in `extra`
/// removes the claim.
pub fn claims(extra: Value) -> Value {
    let mut c = json!({ "sub": "alice", "exp": now() + 600, "iat": now() });
    let map = c.as_object_mut().expect("an object");
    for (k, v) in extra.as_object().expect("extra claims are an object") {
        if v.is_null() {
            map.remove(k);
        } else {
            map.insert(k.clone(), v.clone());
        }
    }
    c
}

/// PEM armour around DER (RFC 7468), 64 columns.
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> =
        body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("base64 is ASCII")).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

/// A key the tests sign with.
#[derive(Clone)]
pub struct TestKey {
    pub alg: Algorithm,
    pub kid: Option<String>,
    encoding: EncodingKey,
    /// The public key as SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`); empty for HMAC.
    pub public_pem: String,
    /// For RSA, the PKCS#1 form of the public key (`BEGIN RSA PUBLIC KEY`); else empty.
    pub rsa_pkcs1_pem: String,
    /// For HMAC, the secret.
    pub secret: String,
}

impl TestKey {
    pub fn hmac(alg: Algorithm, secret: &str) -> TestKey {
        TestKey {
            alg,
            kid: None,
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            public_pem: String::new(),
            rsa_pkcs1_pem: String::new(),
            secret: secret.to_string(),
        }
    }

    /// A fresh asymmetric key for `alg` (RSA and PSS share the process's one RSA key).
    pub fn generate(alg: Algorithm) -> TestKey {
        let (pair, encoding) = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => {
                let private = rsa_private_pem();
                let pair = KeyPair::from_pem_and_sign_algo(private, &rcgen::PKCS_RSA_SHA256).expect("read the RSA key");
                (pair, EncodingKey::from_rsa_pem(private.as_bytes()).expect("RSA encoding key"))
            }
            Algorithm::ES256 => generated(&rcgen::PKCS_ECDSA_P256_SHA256, EncodingKey::from_ec_pem),
            Algorithm::ES384 => generated(&rcgen::PKCS_ECDSA_P384_SHA384, EncodingKey::from_ec_pem),
            Algorithm::EdDSA => generated(&rcgen::PKCS_ED25519, EncodingKey::from_ed_pem),
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => panic!("use TestKey::hmac for {alg:?}"),
        };
        let is_rsa = matches!(encoding.family(), jsonwebtoken::AlgorithmFamily::Rsa);
        TestKey {
            alg,
            kid: None,
            encoding,
            public_pem: pair.public_key_pem(),
            rsa_pkcs1_pem: if is_rsa { pem("RSA PUBLIC KEY", pair.der_bytes()) } else { String::new() },
            secret: String::new(),
        }
    }

    /// The same key under `alg` (e.g. an RSA key used for PS256 instead of RS256).
    pub fn as_alg(&self, alg: Algorithm) -> TestKey {
        TestKey { alg, ..self.clone() }
    }

    pub fn with_kid(mut self, kid: &str) -> TestKey {
        self.kid = Some(kid.to_string());
        self
    }

    /// The header this key signs with: its algorithm and `kid`.
    pub fn header(&self) -> Header {
        let mut h = Header::new(self.alg);
        h.kid = self.kid.clone();
        h
    }

    pub fn token(&self, claims: &Value) -> String {
        self.token_with(&self.header(), claims)
    }

    pub fn token_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.encoding).expect("sign a token")
    }

    /// A token from header and payload JSON exactly as written (duplicate names, odd `alg`...),
    /// signed with this key's algorithm.
    pub fn sign_raw(&self, header_json: &str, payload_json: &str) -> String {
        let message = format!("{}.{}", b64(header_json.as_bytes()), b64(payload_json.as_bytes()));
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, self.alg).expect("sign raw");
        format!("{message}.{sig}")
    }

    /// The public key as a JWK (RFC 7517) with `alg` and `kid`; RSA and EC keys only.
    pub fn jwk(&self) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.encoding, self.alg).expect("JWK from the key");
        jwk.common.key_id = self.kid.clone();
        serde_json::to_value(jwk).expect("JWK as JSON")
    }
}

fn generated(
    alg: &'static SignatureAlgorithm,
    encoding: fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>,
) -> (KeyPair, EncodingKey) {
    let pair = KeyPair::generate_for(alg).expect("generate a key");
    let enc = encoding(pair.serialize_pem().as_bytes()).expect("encoding key from PKCS#8");
    (pair, enc)
}

/// The process's RSA private key (2048 bits), PKCS#8 PEM, made once.
fn rsa_private_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| {
        KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).expect("rcgen (aws-lc-rs) makes RSA keys").serialize_pem()
    })
}

/// A temp directory for key files, removed on drop.
pub struct KeyDir {
    pub dir: PathBuf,
    files: Cell<usize>,
}

impl KeyDir {
    pub fn new() -> KeyDir {
        let dir = temp_path("auth", "d");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        KeyDir { dir, files: Cell::new(0) }
    }

    /// Writes `contents` to a new file (`key-N.EXT`); returns the absolute path.
    pub fn file(&self, ext: &str, contents: &str) -> String {
        let n = self.files.get() + 1;
        self.files.set(n);
        self.write(&format!("key-{n}.{ext}"), contents)
    }

    /// Writes `contents` to `name` in the directory; returns the absolute path.
    pub fn write(&self, name: &str, contents: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path_str(&path).to_string()
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
