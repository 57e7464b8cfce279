//! The server's TLS: the serving certificate (self-signed, kept as `kubelet.crt` /
//! `kubelet.key` in the node's certificate folder, as the kubelet does when no serving
//! certificate is given) and which client certificates are accepted (those the cluster CA
//! signed; none in standalone mode).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// Why the server's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read or write the serving certificate in {dir}: {detail}")]
    Files { dir: String, detail: String },
    #[error("the client CA ({origin}) is not usable: {detail}")]
    ClientCa { origin: String, detail: String },
    #[error("TLS set-up failed: {0}")]
    Rustls(String),
}

/// The serving certificate and key, PEM.
pub struct ServingCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ServingCertificate {
    /// The certificate in `dir` (`kubelet.crt`, `kubelet.key`), made and saved (key 0600)
    /// when there is none: self-signed for the node name, its IP and localhost.
    pub fn load_or_create(dir: &Path, node: &str, node_ip: &str) -> Result<Self, TlsError> {
        let (crt, key) = (dir.join("kubelet.crt"), dir.join("kubelet.key"));
        let files = |e: &dyn std::fmt::Display| TlsError::Files { dir: dir.display().to_string(), detail: e.to_string() };
        if let (Ok(cert_pem), Ok(key_pem)) = (std::fs::read_to_string(&crt), std::fs::read_to_string(&key)) {
            let parsed = Self { cert_pem, key_pem };
            if parsed.certs().is_ok() && parsed.key().is_ok() {
                return Ok(parsed);
            }
            tracing::warn!(dir = %dir.display(), "the saved serving certificate does not parse; making a new one");
        }
        let mut names = vec![node.to_string(), "localhost".to_string(), "127.0.0.1".to_string()];
        if !node_ip.is_empty() && !names.iter().any(|n| n == node_ip) {
            names.push(node_ip.to_string());
        }
        let key_pair = rcgen::KeyPair::generate().map_err(|e| TlsError::Rustls(e.to_string()))?;
        let mut params = rcgen::CertificateParams::new(names).map_err(|e| TlsError::Rustls(e.to_string()))?;
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("{node}@labkubelet"));
        let cert = params.self_signed(&key_pair).map_err(|e| TlsError::Rustls(e.to_string()))?;
        std::fs::create_dir_all(dir).map_err(|e| files(&e))?;
        std::fs::write(&crt, cert.pem()).map_err(|e| files(&e))?;
        crate::bootstrap::write_private(&key, key_pair.serialize_pem().as_bytes()).map_err(|e| files(&e))?;
        Ok(Self { cert_pem: cert.pem(), key_pem: key_pair.serialize_pem() })
    }

    fn certs(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        ca_file_certs(self.cert_pem.as_bytes()).map_err(|e| TlsError::Rustls(format!("the serving certificate: {e}")))
    }

    fn key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).map_err(|e| TlsError::Rustls(format!("the serving key file: {e}")))
    }
}

/// The CA certificates of a kubeconfig's current cluster, as kube reads them
/// (certificate-authority-data or -file): the cluster CA, which signs the API server's
/// kubelet client certificate and users' certificates.
pub async fn cluster_ca(kubeconfig: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |detail: String| TlsError::ClientCa { origin: kubeconfig.display().to_string(), detail };
    let parsed = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| bad(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(parsed, &Default::default()).await.map_err(|e| bad(e.to_string()))?;
    match config.root_cert {
        Some(certs) if !certs.is_empty() => Ok(certs.into_iter().map(CertificateDer::from).collect()),
        _ => Err(bad("its cluster has no certificate-authority(-data)".into())),
    }
}

/// The certificates of a PEM bundle (`--client-ca-file`).
pub fn ca_file_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    Ok(certs)
}

/// The TLS sessions a node's API keeps for clients to resume.
const SESSIONS: usize = 8;

/// The server's TLS configuration: client certificates are optional (a bearer token, or
/// nothing, may stand in) but must chain to `client_ca` when given.
pub fn server_config(cert: &ServingCertificate, client_ca: &[CertificateDer<'static>]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions().map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = if client_ca.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for ca in client_ca {
            roots.add(ca.clone()).map_err(|e| TlsError::ClientCa { origin: "client CA".into(), detail: e.to_string() })?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_single_cert(cert.certs()?, cert.key()?).map_err(|e| TlsError::Rustls(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // rustls's default cache of 256 sessions is allocated up front, 6 KiB for each of a
    // process's thousand nodes; few clients ever talk to a node, and fewer resume.
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSIONS);
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_ca_file_gives_its_certificates_or_says_what_is_wrong() {
        let key = rcgen::KeyPair::generate().expect("a key");
        let ca = rcgen::CertificateParams::new(vec!["ca".into()]).expect("params").self_signed(&key).expect("a certificate");
        let bundle = format!("{}{}", ca.pem(), ca.pem());
        assert_eq!(ca_file_certs(bundle.as_bytes()).expect("two certificates").len(), 2);
        assert_eq!(ca_file_certs(b"not a certificate").unwrap_err(), "no PEM certificate in it");
        let broken = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(ca_file_certs(broken.as_bytes()).is_err(), "a PEM block that is not base64 is refused");
    }
}
