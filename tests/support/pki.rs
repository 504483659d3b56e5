//! A test PKI: a CA generated per test (rcgen) that issues leaf certificates into a temp
//! directory, and rustls client configs trusting it. Used by the TLS termination tests and the
//! TLS-to-upstream tests.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SerialNumber};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme, SupportedProtocolVersion,
};

use super::gateway::{path_str, temp_path};

pub const TLS_ANY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// A test CA and the directory its certificates are written to (removed on drop).
pub struct Pki {
    pub dir: PathBuf,
    pub ca: rcgen::Certificate,
    pub ca_key: KeyPair,
    pub serial: Cell<u64>,
}

/// A leaf certificate as issued: PEM texts and the DER the client will see.
pub struct Issued {
    /// The subject's common name, used to name the certificate in failures.
    pub cn: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

/// A certificate file and its key file, as configured.
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = temp_path("tls", "d");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "ringgate test CA");
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let ca = params.self_signed(&ca_key).expect("self-sign the CA");
        Pki { dir, ca, ca_key, serial: Cell::new(1) }
    }

    /// A leaf valid from 1975 to 4096 (rcgen's defaults) for `names`, with a fresh key and serial.
    pub fn issue(&self, cn: &str, names: &[&str]) -> Issued {
        self.issue_with(cn, names, |_| {})
    }

    /// Like [`Pki::issue`], with `tweak` applied to the parameters (e.g. validity dates).
    pub fn issue_with(&self, cn: &str, names: &[&str], tweak: impl FnOnce(&mut CertificateParams)) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let serial = self.serial.get() + 1;
        self.serial.set(serial);
        params.serial_number = Some(SerialNumber::from(serial));
        tweak(&mut params);
        let key = KeyPair::generate().expect("generate a leaf key");
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).expect("sign a leaf");
        Issued { cn: cn.to_string(), cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().to_vec() }
    }

    /// Writes `issued` to `STEM.pem` and `STEM.key` in the directory.
    pub fn write(&self, stem: &str, issued: &Issued) -> Pair {
        let pair = Pair { cert: self.dir.join(format!("{stem}.pem")), key: self.dir.join(format!("{stem}.key")) };
        pair.install(issued);
        pair
    }

    /// Issues a leaf and writes it to `STEM.pem` / `STEM.key`.
    pub fn leaf(&self, stem: &str, names: &[&str]) -> (Issued, Pair) {
        let issued = self.issue(stem, names);
        let pair = self.write(stem, &issued);
        (issued, pair)
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).expect("add the test CA to the root store");
        roots
    }

    /// A client trusting this CA, offering `versions` and ALPN `http/1.1`, with SNI, without
    /// session resumption: a resumed session carries the certificate of the session it resumes,
    /// and the tests of what a new handshake gets must see full handshakes.
    pub fn client(&self, versions: &[&'static SupportedProtocolVersion]) -> ClientConfig {
        let mut cfg = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .expect("the ring provider supports these versions")
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        cfg.resumption = Resumption::disabled();
        cfg
    }

    /// Like [`Pki::client`] (any version), but the chain is checked and the name is not, so that a
    /// test can see which certificate the gateway sends for a name none of them covers.
    pub fn client_any_name(&self) -> ClientConfig {
        let mut cfg = self.client(TLS_ANY);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(self.roots()), provider)
            .build()
            .expect("a verifier for the test CA");
        cfg.dangerous().set_certificate_verifier(Arc::new(AnyName(inner)));
        cfg
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Pair {
    /// Replaces both files the way a deployment tool should: write a temp file, rename it over.
    pub fn install(&self, issued: &Issued) {
        replace(&self.key, issued.key_pem.as_bytes());
        replace(&self.cert, issued.cert_pem.as_bytes());
    }

    /// `{ cert = "...", key = "..." }`
    pub fn toml(&self) -> String {
        format!("{{ cert = \"{}\", key = \"{}\" }}", path_str(&self.cert), path_str(&self.key))
    }
}

pub fn replace(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename {} to {}: {e}", tmp.display(), path.display()));
}

/// Verifies the chain against the roots but accepts any name.
#[derive(Debug)]
pub struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The common name of the certificate among `known` whose DER is `der`, for readable failures.
pub fn cn_of(der: &[u8], known: &[&Issued]) -> String {
    known
        .iter()
        .find(|i| i.der == der)
        .map(|i| i.cn.clone())
        .unwrap_or_else(|| format!("an unknown certificate ({} bytes)", der.len()))
}
