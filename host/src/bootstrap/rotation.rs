//! Client certificate rotation, as client-go's certificate manager does it for the kubelet:
//! at a jittered 70–90 % of the certificate's lifetime, make a new key, ask for a new
//! certificate with a CSR (`generateName: csr-`) as the node itself, wait for it, and make
//! it `kubelet-client-current.pem`. Failures are retried with back-off (2 s doubling, five
//! steps, then every 32 s) while the old certificate is still valid.
//!
//! The node's API client reads the current certificate for each new TLS connection
//! ([`node_client`]), and a rotation closes every connection opened before it (upstream's
//! `pkg/kubelet/certificate/transport.go` does the same): the API server authenticates a
//! connection once, with the certificate it was opened with, and from that certificate's
//! `notAfter` on it answers every request on it `401 Unauthorized`.

use super::{BootstrapConfig, BootstrapError, CURRENT, install_certificate, request_certificate};
use crate::clock::Clock;
use kube::client::ConfigExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::future::Future as _;
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

/// Rotates the node's client certificate until the future is dropped; each new certificate
/// closes the `connections` the old one opened.
pub async fn rotate(config: BootstrapConfig, client: kube::Client, connections: Connections, clock: Clock) {
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
                    let closed = connections.close_all();
                    tracing::info!(node = %config.node_name, csr = %name, closed, "client certificate rotated; closed the connections opened with the old one");
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

/// The connections a node's client has open, closed all at once when its certificate
/// rotates.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    current: Arc<Mutex<Generation>>,
}

#[derive(Debug, Default)]
struct Generation {
    token: tokio_util::sync::CancellationToken,
    opened: usize,
}

impl Connections {
    /// The signal a new connection closes on.
    fn track(&self) -> tokio_util::sync::CancellationToken {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        current.opened += 1;
        current.token.clone()
    }

    /// Closes every connection opened so far (in-flight requests on them fail and are
    /// retried by their loops, watches are made again); returns how many were opened.
    pub fn close_all(&self) -> usize {
        let old = std::mem::take(&mut *self.current.lock().unwrap_or_else(|p| p.into_inner()));
        old.token.cancel();
        old.opened
    }
}

/// A connector whose connections end when [`Connections::close_all`] is called.
#[derive(Clone)]
struct ClosingConnector<C> {
    inner: C,
    connections: Connections,
}

impl<C> tower::Service<http::Uri> for ClosingConnector<C>
where
    C: tower::Service<http::Uri>,
    C::Future: Send + 'static,
{
    type Response = Closable<C::Response>;
    type Error = C::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let closed = self.connections.track();
        let connecting = self.inner.call(uri);
        Box::pin(async move { Ok(Closable { io: connecting.await?, closed: Box::pin(closed.cancelled_owned()) }) })
    }
}

/// A connection that fails its next read or write once its generation is closed. An idle
/// pooled connection is polled for reading, so it is dropped at once, not at its next use.
struct Closable<T> {
    io: T,
    closed: std::pin::Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
}

impl<T> Closable<T> {
    fn check(&mut self, cx: &mut std::task::Context<'_>) -> std::io::Result<()> {
        match self.closed.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "closed: the client certificate rotated")),
            std::task::Poll::Pending => Ok(()),
        }
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for Closable<T> {
    fn poll_read(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: hyper::rt::ReadBufCursor<'_>) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        std::pin::Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for Closable<T> {
    fn poll_write(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>, buf: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        std::pin::Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<T: hyper_util::client::legacy::connect::Connection> hyper_util::client::legacy::connect::Connection for Closable<T> {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        self.io.connected()
    }
}

/// The API client of a node whose kubeconfig names a client certificate file (as the
/// bootstrap writes it): each new connection presents the certificate the file holds then,
/// and [`Connections::close_all`] ends the connections made so far. Other kubeconfigs get
/// kube's usual client (and connections that are never closed).
pub async fn node_client(kubeconfig: &Path) -> anyhow::Result<(kube::Client, Connections)> {
    use anyhow::Context;
    let parsed = Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
    let cert_file = parsed.auth_infos.first().and_then(|a| a.auth_info.as_ref()).and_then(|a| a.client_certificate.clone());
    let config =
        kube::Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default()).await.with_context(|| format!("using {}", kubeconfig.display()))?;
    let connections = Connections::default();
    let Some(cert_file) = cert_file else { return Ok((crate::api_client::from_config(config)?, connections)) };
    let mut tls = config.rustls_client_config()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    tls.client_auth_cert_resolver = Arc::new(CurrentCertificate { path: PathBuf::from(cert_file), provider, loaded: Mutex::new(None) });
    // No TLS session resumption (client-go has none either): a resumed session keeps the
    // identity of the certificate it was first made with, so after a rotation new
    // connections would still be the old, soon expired, certificate.
    tls.resumption = rustls::client::Resumption::disabled();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(http);
    // The timeouts kube's own client has: a half-open connection must not hang a renewal.
    let closing = ClosingConnector { inner: https, connections: connections.clone() };
    let mut timed = hyper_timeout::TimeoutConnector::new(closing);
    timed.set_connect_timeout(config.connect_timeout);
    timed.set_read_timeout(config.read_timeout);
    timed.set_write_timeout(config.write_timeout);
    let client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(timed);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(|e: hyper_util::client::legacy::Error| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        .service(client);
    Ok((crate::api_client::client(service, config.default_namespace), connections))
}
