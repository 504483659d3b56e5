//! TLS termination: certificates from PEM files, chosen by SNI (exact name, then `*.` wildcard,
//! then the listener's first certificate), swapped whole on reload while established connections
//! keep theirs; rustls with the ring provider, TLS 1.2 and 1.3, ALPN `http/1.1`, stateless session
//! tickets plus a session cache for resumption.
//!
//! Owns loading and checking certificates (a bad or expired one is refused with the file and the
//! reason, and the old set keeps serving) and the `ServerConfig` each TLS listener hands to its
//! workers. The handshake itself runs in `http::conn`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// One certificate chain and its key, as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

/// A listener's TLS settings (fixed at start, except the certificate files' contents).
#[derive(Debug, Clone)]
pub struct TlsCfg {
    /// The first is the default, for clients without SNI or with an unknown name.
    pub certs: Vec<CertPaths>,
    pub min_version: MinVersion,
    pub handshake_timeout: Duration,
    /// The certificates as loaded and checked when the config was validated: what is installed,
    /// so what goes live is exactly what was checked (and keys are parsed once).
    pub loaded: Arc<CertSet>,
}

/// The certificates of one listener, by name.
#[derive(Debug)]
pub struct CertSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// Keyed by the suffix after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
    /// Names and expiry, for logs.
    pub summary: Vec<String>,
}

impl CertSet {
    fn pick(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        if let Some(name) = sni {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(c) = self.exact.get(&name) {
                return c.clone();
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(c) = self.wildcard.get(parent) {
                    return c.clone();
                }
            }
        }
        self.default.clone()
    }
}

fn err(path: &Path, what: impl std::fmt::Display) -> String {
    format!("{}: {what}", path.display())
}

/// Load one chain and key, checking that they match and that the certificate is valid now.
/// Returns the key and the certificate's DNS names.
fn load_pair(p: &CertPaths, now: SystemTime) -> Result<(Arc<CertifiedKey>, Vec<String>, String), String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&p.cert)
        .map_err(|e| err(&p.cert, format!("cannot read certificates: {e}")))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(&p.cert, format!("not a PEM certificate: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(err(&p.cert, "no certificate in the file"));
    };
    let key = PrivateKeyDer::from_pem_file(&p.key).map_err(|e| err(&p.key, format!("no usable private key: {e}")))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| err(&p.key, format!("unsupported private key: {e}")))?;
    let ck = CertifiedKey::new(chain.clone(), signer);
    ck.keys_match().map_err(|e| err(&p.key, format!("does not match the certificate {}: {e}", p.cert.display())))?;
    let (_, x509) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| err(&p.cert, format!("cannot parse the certificate: {e}")))?;
    let validity = x509.validity();
    let now_ts = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    if validity.not_after.timestamp() < now_ts {
        return Err(err(&p.cert, format!("the certificate expired on {}", validity.not_after)));
    }
    if validity.not_before.timestamp() > now_ts {
        return Err(err(&p.cert, format!("the certificate is not valid before {}", validity.not_before)));
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    Ok((Arc::new(ck), names, validity.not_after.to_string()))
}

/// Load every certificate of a listener; the first error refuses the whole set.
pub fn load(certs: &[CertPaths]) -> Result<CertSet, String> {
    let now = SystemTime::now();
    let mut exact = HashMap::new();
    let mut wildcard = HashMap::new();
    let mut default = None;
    let mut summary = Vec::new();
    for p in certs {
        let (ck, names, expiry) = load_pair(p, now)?;
        summary.push(format!("{} ({}; expires {expiry})", p.cert.display(), names.join(", ")));
        for n in names {
            match n.strip_prefix("*.") {
                Some(suffix) => wildcard.entry(suffix.to_string()).or_insert_with(|| ck.clone()),
                None => exact.entry(n).or_insert_with(|| ck.clone()),
            };
        }
        default.get_or_insert(ck);
    }
    let default = default.ok_or("no certificate configured")?;
    Ok(CertSet { exact, wildcard, default, summary })
}

/// The certificates a TLS listener serves, swapped whole on reload.
pub type CertStore = Arc<ArcSwap<CertSet>>;

#[derive(Debug)]
struct Resolver(CertStore);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load().pick(hello.server_name()))
    }
}

/// Sessions remembered per listener for TLS 1.2 session-id resumption.
const SESSION_CACHE: usize = 20_000;

/// The rustls configuration of a TLS listener; certificates come from `store` at each handshake.
pub fn server_config(cfg: &TlsCfg, store: CertStore) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut sc = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver(store)));
    // Never advertise what is not served: HTTP/1.1 only.
    sc.alpn_protocols = vec![b"http/1.1".to_vec()];
    sc.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| format!("TLS session tickets: {e}"))?;
    sc.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
    Ok(Arc::new(sc))
}

/// The TLS version a handshake will settle on, read from the raw ClientHello at the start of
/// `buf` (what the connection's first read held): "1.3" when the client lists TLS 1.3 in its
/// supported_versions extension (RFC 8446 §4.2.1) and the listener allows it (rustls then always
/// picks 1.3), else "1.2". None when the bytes are not one whole ClientHello record. For the
/// access log: monoio-rustls does not lend out the session to ask it afterwards.
pub fn hello_version(buf: &[u8], allow13: bool) -> Option<&'static str> {
    let rec = buf.get(5..5 + usize::from(u16::from_be_bytes([*buf.get(3)?, *buf.get(4)?])))?;
    if buf[0] != 0x16 || *rec.first()? != 1 {
        return None;
    }
    // handshake header (4), legacy_version (2), random (32)
    let mut p = rec.get(38..)?;
    let skip = |p: &mut &[u8], len_bytes: usize| -> Option<()> {
        let n = match len_bytes {
            1 => usize::from(*p.first()?),
            _ => usize::from(u16::from_be_bytes([*p.first()?, *p.get(1)?])),
        };
        *p = p.get(len_bytes + n..)?;
        Some(())
    };
    skip(&mut p, 1)?; // session id
    skip(&mut p, 2)?; // cipher suites
    skip(&mut p, 1)?; // compression methods
    let ext_len = usize::from(u16::from_be_bytes([*p.first()?, *p.get(1)?]));
    let mut ext = p.get(2..2 + ext_len)?;
    while ext.len() >= 4 {
        let (kind, len) = (u16::from_be_bytes([ext[0], ext[1]]), usize::from(u16::from_be_bytes([ext[2], ext[3]])));
        let body = ext.get(4..4 + len)?;
        if kind == 0x002b {
            let list = body.get(1..1 + usize::from(*body.first()?))?;
            let has13 = list.chunks_exact(2).any(|v| v == [0x03, 0x04]);
            return Some(if has13 && allow13 { "1.3" } else { "1.2" });
        }
        ext = &ext[4 + len..];
    }
    Some("1.2")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str, sans: &[&str], not_after_days: i64) -> CertPaths {
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("params");
        let now = rcgen::date_time_ymd(2026, 1, 1);
        params.not_before = now;
        params.not_after =
            if not_after_days < 0 { rcgen::date_time_ymd(2026, 1, 2) } else { rcgen::date_time_ymd(2099, 1, 1) };
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        let p = CertPaths { cert: dir.join(format!("{name}.crt")), key: dir.join(format!("{name}.key")) };
        std::fs::write(&p.cert, cert.pem()).expect("write");
        std::fs::write(&p.key, key.serialize_pem()).expect("write");
        p
    }

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("ringgate-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("dir");
        d
    }

    #[test]
    fn hello_version_reads_supported_versions() {
        // A minimal ClientHello: no session id, one suite, null compression, one extension.
        fn hello(ext: &[u8]) -> Vec<u8> {
            let mut body = vec![3, 3];
            body.extend([7u8; 32]);
            body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
            body.extend((ext.len() as u16).to_be_bytes());
            body.extend(ext);
            let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
            hs.extend(body);
            let mut rec = vec![0x16, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
            rec.extend(hs);
            rec
        }
        let v13 = hello(&[0x00, 0x2b, 0, 5, 4, 0x03, 0x04, 0x03, 0x03]);
        assert_eq!(hello_version(&v13, true), Some("1.3"));
        assert_eq!(hello_version(&v13, false), Some("1.2"));
        let v12 = hello(&[0x00, 0x2b, 0, 3, 2, 0x03, 0x03]);
        assert_eq!(hello_version(&v12, true), Some("1.2"));
        assert_eq!(hello_version(&hello(&[]), true), Some("1.2"), "no extension: TLS 1.2 or older");
        assert_eq!(hello_version(&v13[..20], true), None, "cut short");
        assert_eq!(hello_version(b"GET / HTTP/1.1", true), None);
    }

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let d = dir();
        let a = write_pair(&d, "a", &["a.test"], 1);
        let w = write_pair(&d, "w", &["*.w.test", "w.test"], 1);
        let set = load(&[a, w]).expect("valid");
        assert!(Arc::ptr_eq(&set.pick(Some("a.test")), &set.default));
        let wild = set.pick(Some("x.w.test"));
        assert!(!Arc::ptr_eq(&wild, &set.default));
        assert!(Arc::ptr_eq(&set.pick(Some("W.TEST")), &wild));
        assert!(Arc::ptr_eq(&set.pick(Some("y.x.w.test")), &set.default), "a wildcard covers one label");
        assert!(Arc::ptr_eq(&set.pick(None), &set.default));
        let set = Arc::new(set);
        let cfg = TlsCfg {
            certs: vec![],
            min_version: MinVersion::Tls12,
            handshake_timeout: Duration::from_secs(1),
            loaded: set.clone(),
        };
        assert!(server_config(&cfg, Arc::new(ArcSwap::new(set))).is_ok());
    }

    #[test]
    fn bad_certificates_are_refused_with_the_file() {
        let d = dir();
        let expired = write_pair(&d, "old", &["old.test"], -1);
        let e = load(std::slice::from_ref(&expired)).expect_err("expired");
        assert!(e.contains("old.crt") && e.contains("expired"), "{e}");
        let other = write_pair(&d, "other", &["o.test"], 1);
        let mismatched = CertPaths { cert: other.cert.clone(), key: expired.key.clone() };
        let e = load(&[mismatched]).expect_err("mismatch");
        assert!(e.contains("does not match"), "{e}");
        std::fs::write(d.join("junk.crt"), "not pem").expect("write");
        let junk = CertPaths { cert: d.join("junk.crt"), key: other.key };
        assert!(load(&[junk]).is_err());
    }
}
