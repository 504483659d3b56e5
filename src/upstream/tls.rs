//! TLS to upstreams: one rustls `ClientConfig` per upstream group that asks for it, built when the
//! config is validated (never on a worker). Certificates are verified against the group's CA
//! bundle, or the system's roots when it names none; the name sent as SNI and checked in the
//! certificate is the target's host (or the group's `server_name`); an IP target is checked
//! against the certificate's IP addresses and sends no SNI. ALPN offers `http/1.1` only. Sessions
//! resume from rustls' in-memory client cache (one short lock per handshake, none per request).
//!
//! There is no switch to skip verification: a target with a private CA names its bundle.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

use crate::tls::MinVersion;

/// A group's TLS settings, as validated.
#[derive(Debug, Clone)]
pub struct UpstreamTlsCfg {
    /// None = the system's roots.
    pub ca: Option<PathBuf>,
    pub server_name: Option<ServerName<'static>>,
    pub min_version: MinVersion,
    pub client: Arc<ClientConfig>,
    /// Identity of the trust settings: what was trusted and which name was asked for. Pooled
    /// connections are shared only between targets with equal identity (see `pool::PoolKey`).
    pub id: u64,
}

/// The name a target is checked against: `server_name` if set, else the host part of `host:port`.
pub fn name_for(cfg: &UpstreamTlsCfg, authority: &str) -> Result<ServerName<'static>, String> {
    if let Some(n) = &cfg.server_name {
        return Ok(n.clone());
    }
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    ServerName::try_from(host.to_string()).map_err(|_| format!("{host:?} is not a DNS name or IP address for TLS"))
}

/// Parse a `server_name` setting.
pub fn parse_name(s: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(s.to_string()).map_err(|_| format!("{s:?} is not a DNS name or IP address"))
}

/// Build a group's client config. Errors name the file and the reason.
pub fn client_config(
    ca: Option<&Path>,
    server_name: Option<ServerName<'static>>,
    min_version: MinVersion,
) -> Result<UpstreamTlsCfg, String> {
    let mut roots = RootCertStore::empty();
    let mut id = crate::hash::FxHasher::default();
    match ca {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("{}: not a PEM certificate bundle ({e})", path.display()))?;
            if certs.is_empty() {
                return Err(format!("{}: no certificate in the file", path.display()));
            }
            for c in certs {
                roots.add(c).map_err(|e| format!("{}: unusable CA certificate ({e})", path.display()))?;
            }
            pem.hash(&mut id);
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let why = found.errors.first().map(|e| format!(" ({e})")).unwrap_or_default();
                return Err(format!("no system root certificates found{why}: install the CA certificates or set `ca`"));
            }
            "system".hash(&mut id);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match min_version {
        MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        MinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut cc = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cc.alpn_protocols = vec![b"http/1.1".to_vec()];
    format!("{server_name:?}{min_version:?}").hash(&mut id);
    Ok(UpstreamTlsCfg {
        ca: ca.map(Path::to_path_buf),
        server_name,
        min_version,
        client: Arc::new(cc),
        id: id.finish() | 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(server_name: Option<&str>) -> UpstreamTlsCfg {
        UpstreamTlsCfg {
            ca: None,
            server_name: server_name.map(|n| parse_name(n).expect("name")),
            min_version: MinVersion::Tls12,
            client: Arc::new(
                ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("versions")
                    .with_root_certificates(RootCertStore::empty())
                    .with_no_client_auth(),
            ),
            id: 1,
        }
    }

    #[test]
    fn name_comes_from_the_target_host_unless_set() {
        let c = cfg(None);
        assert_eq!(name_for(&c, "api.internal:443").expect("dns").to_str(), "api.internal");
        assert_eq!(name_for(&c, "10.0.0.1:8443").expect("ip").to_str(), "10.0.0.1");
        assert_eq!(name_for(&c, "[::1]:8443").expect("ip6").to_str(), "::1");
        assert!(name_for(&c, "bad name!:443").is_err());
        let c = cfg(Some("svc.example"));
        assert_eq!(name_for(&c, "10.0.0.1:8443").expect("set").to_str(), "svc.example");
    }

    #[test]
    fn bad_bundles_are_refused_with_the_file() {
        let dir = std::env::temp_dir().join(format!("ringgate-uptls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").expect("write");
        let e = client_config(Some(&empty), None, MinVersion::Tls12).expect_err("empty");
        assert!(e.contains("empty.pem") && e.contains("no certificate"), "{e}");
        let missing = dir.join("missing.pem");
        let e = client_config(Some(&missing), None, MinVersion::Tls12).expect_err("missing");
        assert!(e.contains("missing.pem"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
