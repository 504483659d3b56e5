//! Verification keys: each pinned to one algorithm, loaded when the config is validated (HMAC
//! secrets from the environment or a file, PEM public keys, JWKS documents) and held in immutable
//! `KeySet`s. A key is only ever used with its own algorithm, so an RSA public key can never be
//! taken as an HMAC secret.

use std::sync::atomic::{AtomicU64, Ordering};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

/// At most this many keys are tried for a token without `kid`: the work per request is bounded.
pub const MAX_TRIES: usize = 4;

pub struct Key {
    pub kid: Option<Box<str>>,
    pub alg: Algorithm,
    pub decoding: DecodingKey,
}

/// An immutable set of keys. `version` is unique per set (process-wide), so a cache entry made
/// under one set is not taken for valid under another.
pub struct KeySet {
    pub version: u64,
    pub keys: Vec<Key>,
}

static VERSIONS: AtomicU64 = AtomicU64::new(1);

impl KeySet {
    pub fn new(keys: Vec<Key>) -> KeySet {
        KeySet { version: VERSIONS.fetch_add(1, Ordering::Relaxed), keys }
    }

    pub fn by_kid(&self, kid: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.kid.as_deref() == Some(kid))
    }

    /// Keys without `kid` pinned to `alg`.
    pub fn anonymous(&self, alg: Algorithm) -> impl Iterator<Item = &Key> {
        self.keys.iter().filter(move |k| k.kid.is_none() && k.alg == alg)
    }

    pub fn has_alg(&self, alg: Algorithm) -> bool {
        self.keys.iter().any(|k| k.alg == alg)
    }
}

pub fn parse_alg(s: &str) -> Result<Algorithm, String> {
    s.parse::<Algorithm>().map_err(|_| {
        format!("{s:?} is not an algorithm (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)")
    })
}

/// An HMAC key; `alg` must be HS*.
pub fn secret(alg: Algorithm, kid: Option<&str>, bytes: &[u8]) -> Result<Key, String> {
    if alg.family() != jsonwebtoken::AlgorithmFamily::Hmac {
        return Err(format!("{alg:?} needs a public key (pem_file or JWKS), not a secret"));
    }
    if bytes.is_empty() {
        return Err("the secret is empty".into());
    }
    Ok(Key { kid: kid.map(Into::into), alg, decoding: DecodingKey::from_secret(bytes) })
}

/// A PEM public key for `alg` (RSA, EC or Ed25519).
pub fn pem(alg: Algorithm, kid: Option<&str>, pem: &[u8]) -> Result<Key, String> {
    use jsonwebtoken::AlgorithmFamily as F;
    let decoding = match alg.family() {
        F::Hmac => return Err(format!("{alg:?} is an HMAC algorithm: use secret_env or secret_file")),
        F::Rsa => DecodingKey::from_rsa_pem(pem),
        F::Ec => DecodingKey::from_ec_pem(pem),
        F::Ed => DecodingKey::from_ed_pem(pem),
    }
    .map_err(|e| {
        let kind = match alg.family() {
            F::Rsa => "an RSA",
            F::Ec => "an EC",
            _ => "an Ed25519",
        };
        format!("not {kind} public key in PEM ({e})")
    })?;
    Ok(Key { kid: kid.map(Into::into), alg, decoding })
}

/// The keys of a JWKS document usable with `algs`; problems with single keys come back as
/// warnings (the key is skipped), a document that is not a JWKS is an error.
pub fn jwks(doc: &[u8], algs: &[Algorithm]) -> Result<(Vec<Key>, Vec<String>), String> {
    let set: JwkSet = serde_json::from_slice(doc).map_err(|e| format!("not a JWKS document ({e})"))?;
    let mut keys = Vec::new();
    let mut warnings = Vec::new();
    for (i, jwk) in set.keys.iter().enumerate() {
        let name = jwk.common.key_id.clone().unwrap_or_else(|| format!("#{i}"));
        let fits = |a: &Algorithm| fits(&jwk.algorithm, *a);
        let alg = match jwk.common.key_algorithm.and_then(key_alg) {
            Some(a) if algs.contains(&a) && fits(&a) => a,
            Some(a) => {
                warnings.push(format!("JWKS key {name}: algorithm {a:?} is not allowed here or does not fit the key"));
                continue;
            }
            None if jwk.common.key_algorithm.is_some() => {
                warnings.push(format!("JWKS key {name}: not a signing algorithm"));
                continue;
            }
            None => match algs.iter().find(|a| fits(a)) {
                Some(a) => *a,
                None => {
                    warnings.push(format!("JWKS key {name}: none of the allowed algorithms fits its key type"));
                    continue;
                }
            },
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(decoding) => keys.push(Key { kid: jwk.common.key_id.as_deref().map(Into::into), alg, decoding }),
            Err(e) => warnings.push(format!("JWKS key {name}: unusable ({e})")),
        }
    }
    Ok((keys, warnings))
}

fn key_alg(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Whether a JWK's key type can verify `alg` (curve included for EC keys).
fn fits(params: &AlgorithmParameters, alg: Algorithm) -> bool {
    match (params, alg) {
        (AlgorithmParameters::RSA(_), a) => a.family() == jsonwebtoken::AlgorithmFamily::Rsa,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => p.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => p.curve == EllipticCurve::Ed25519,
        (AlgorithmParameters::OctetKey(_), a) => a.family() == jsonwebtoken::AlgorithmFamily::Hmac,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_pinned_to_a_family() {
        assert!(secret(Algorithm::RS256, None, b"x").is_err());
        assert!(secret(Algorithm::HS256, None, b"").is_err());
        assert!(pem(Algorithm::HS256, None, b"-----BEGIN PUBLIC KEY-----").is_err());
        assert!(pem(Algorithm::RS256, None, b"garbage").is_err());
        assert!(parse_alg("none").is_err());
        assert_eq!(parse_alg("EdDSA").ok(), Some(Algorithm::EdDSA));
    }

    #[test]
    fn jwks_keys_take_a_fitting_allowed_algorithm() {
        let doc = br#"{"keys":[
            {"kty":"EC","crv":"P-256","kid":"ec","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"EC","crv":"P-256","kid":"ec-rs","alg":"RS256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty":"oct","kid":"h","k":"c2VjcmV0"}
        ]}"#;
        let (keys, warnings) = jwks(doc, &[Algorithm::RS256, Algorithm::ES256]).expect("a JWKS");
        assert_eq!(keys.len(), 1, "{warnings:?}");
        assert_eq!((keys[0].kid.as_deref(), keys[0].alg), (Some("ec"), Algorithm::ES256));
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(jwks(b"{}", &[Algorithm::RS256]).is_err());
    }
}
