//! Client certificate rotation, as client-go's certificate manager does it for the kubelet:
//! at a jittered 70–90 % of the certificate's lifetime, make a new key, ask for a new
//! certificate with a CSR (`generateName: csr-`) as the node itself, wait for it, and make
//! it `kubelet-client-current.pem`. Failures are retried with back-off (2 s doubling, five
//! steps, then every 32 s) while the old certificate is still valid.
//!
//! The node's API client reads the current certificate for each new TLS connection
//! ([`node_client`]), so the rotated certificate is used without rebuilding anything.

use super::{install_certificate, request_certificate, BootstrapConfig, BootstrapError, CURRENT};
use crate::clock::Clock;
use kube::client::ConfigExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// How long one renewal CSR is waited for.
const CSR_WAIT: Duration = Duration::from_secs(15 * 60);

/// The validity of the certificate in a PEM file: (notBefore, notAfter).
pub fn validity(path: &Path) -> Option<(SystemTime, SystemTime)> {
    super::certificate_validity(&std::fs::read(path).ok()?)
}

/// When to rotate: notBefore + a random 70–90 % of the lifetime.
pub fn rotation_deadline(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    not_before + lifetime.mul_f64(0.7 + 0.2 * rand::random::<f64>())
}

/// Rotates the node's client certificate until the future is dropped.
pub async fn rotate(config: BootstrapConfig, client: kube::Client, clock: Clock) {
    let current = config.cert_dir.join(CURRENT);
    loop {
        let Some((not_before, not_after)) = validity(&current) else {
            tracing::warn!(path = %current.display(), "no client certificate to rotate");
            return;
        };
        let deadline = rotation_deadline(not_before, not_after);
        let now = SystemTime::UNIX_EPOCH + clock.since_epoch();
        tracing::info!(node = %config.node_name, "client certificate rotation in {:?}", deadline.duration_since(now).unwrap_or_default());
        clock.sleep(deadline.duration_since(now).unwrap_or_default()).await;
        let mut backoff = Duration::from_secs(2);
        let mut failures = 0;
        loop {
            match renew(&config, &client).await {
                Ok(name) => {
                    tracing::info!(node = %config.node_name, csr = %name, "client certificate rotated");
                    break;
                }
                Err(e) => {
                    failures += 1;
                    let wait = if failures <= 5 { backoff } else { Duration::from_secs(32) };
                    tracing::warn!(node = %config.node_name, "rotating the client certificate failed ({e}); retrying in {wait:?}");
                    clock.sleep_jittered(wait, 0.1).await;
                    backoff *= 2;
                }
            }
        }
    }
}

/// One rotation: a new key, a CSR made as the node, the certificate installed.
async fn renew(config: &BootstrapConfig, client: &kube::Client) -> Result<String, BootstrapError> {
    let key = rcgen::KeyPair::generate().map_err(|e| BootstrapError::Api(e.to_string()))?;
    let (name, certificate) = tokio::time::timeout(CSR_WAIT, request_certificate(client, &config.node_name, &key, None, config.reminder))
        .await
        .map_err(|_| BootstrapError::Api(format!("no certificate within {CSR_WAIT:?}")))??;
    install_certificate(&config.cert_dir, &certificate, &key.serialize_pem())?;
    Ok(name)
}

/// The node's client certificate, read again whenever `kubelet-client-current.pem` points
/// at another file.
#[derive(Debug)]
struct CurrentCertificate {
    path: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    loaded: Mutex<Option<(PathBuf, Arc<CertifiedKey>)>>,
}

impl CurrentCertificate {
    fn load(&self) -> Option<Arc<CertifiedKey>> {
        let target = std::fs::canonicalize(&self.path).ok()?;
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, key)) = loaded.as_ref().filter(|(file, _)| *file == target) {
            return Some(key.clone());
        }
        let pem = std::fs::read(&target).ok()?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok).collect();
        let key = PrivateKeyDer::from_pem_slice(&pem).ok()?;
        let signing = self.provider.key_provider.load_private_key(key).ok()?;
        let certified = Arc::new(CertifiedKey::new(certs, signing));
        *loaded = Some((target, certified.clone()));
        Some(certified)
    }
}

impl ResolvesClientCert for CurrentCertificate {
    fn resolve(&self, _issuers: &[&[u8]], _schemes: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.load()
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The API client of a node whose kubeconfig names a client certificate file (as the
/// bootstrap writes it): each new connection presents the certificate the file holds then.
/// Other kubeconfigs get kube's usual client.
pub async fn node_client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    use anyhow::Context;
    let parsed = Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
    let cert_file = parsed.auth_infos.first().and_then(|a| a.auth_info.as_ref()).and_then(|a| a.client_certificate.clone());
    let config = kube::Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default()).await.with_context(|| format!("using {}", kubeconfig.display()))?;
    let Some(cert_file) = cert_file else { return Ok(kube::Client::try_from(config)?) };
    let mut tls = config.rustls_client_config()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    tls.client_auth_cert_resolver = Arc::new(CurrentCertificate { path: PathBuf::from(cert_file), provider, loaded: Mutex::new(None) });
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
    // The timeouts kube's own client has: a half-open connection must not hang a renewal.
    let mut timed = hyper_timeout::TimeoutConnector::new(https);
    timed.set_connect_timeout(config.connect_timeout);
    timed.set_read_timeout(config.read_timeout);
    timed.set_write_timeout(config.write_timeout);
    let client: hyper_util::client::legacy::Client<_, kube::client::Body> = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(timed);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(|e: hyper_util::client::legacy::Error| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        .service(client);
    Ok(kube::Client::new(service, config.default_namespace))
}
