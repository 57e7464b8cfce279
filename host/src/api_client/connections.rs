//! How a node's API clients connect: each new TLS connection presents the client
//! certificate `kubelet-client-current.pem` points at then, so a rotated certificate needs
//! no restart, only the connections made with the old one closed ([`Connections`]); and the
//! node's link to the API server can be cut and restored ([`Link`]), as a lab's
//! `labkubelet node partition` and `heal` do. Connections speak HTTP/2 where the server
//! offers it, as client-go's do.

use super::Limits;
use kube::client::ConfigExt;
use kube::config::{KubeConfigOptions, Kubeconfig};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::future::Future as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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

/// A node's link to the API server. While it is cut, every connection the node's clients
/// had is closed and new ones are refused, as a network partition does it to a kubelet:
/// requests fail, watches end, and each loop retries as it would.
#[derive(Debug, Clone, Default)]
pub struct Link {
    cut: Arc<AtomicBool>,
    connections: Connections,
}

/// What a connection over a cut link fails with.
const PARTITIONED: &str = "the node is partitioned from the API server (labkubelet node heal reconnects it)";

impl Link {
    /// Cuts the link; false if it was cut already.
    pub fn cut(&self) -> bool {
        let was_up = !self.cut.swap(true, Ordering::SeqCst);
        self.connections.close_all();
        was_up
    }

    /// Restores the link; false if it was up.
    pub fn restore(&self) -> bool {
        self.cut.swap(false, Ordering::SeqCst)
    }

    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

/// A connector whose connections end when [`Connections::close_all`] is called, and that
/// connects nowhere while its link is cut.
#[derive(Clone)]
struct ClosingConnector<C> {
    inner: C,
    connections: Connections,
    link: Option<Link>,
}

impl<C> tower::Service<http::Uri> for ClosingConnector<C>
where
    C: tower::Service<http::Uri>,
    C::Future: Send + 'static,
    C::Error: From<std::io::Error> + 'static,
{
    type Response = Closable<C::Response>;
    type Error = C::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        if self.link.as_ref().is_some_and(Link::is_cut) {
            return Box::pin(async { Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, PARTITIONED).into()) });
        }
        let closed = self.connections.track();
        let connecting = self.inner.call(uri);
        let link = self.link.clone();
        Box::pin(async move {
            let io = connecting.await?;
            // A cut while this connection was being made closed the connections tracked before
            // it: this one is refused here instead.
            if link.as_ref().is_some_and(Link::is_cut) {
                return Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, PARTITIONED).into());
            }
            Ok(Closable { io, closed: Box::pin(closed.cancelled_owned()) })
        })
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
            std::task::Poll::Ready(()) => {
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "closed by the node: its client certificate rotated, or it was partitioned"))
            }
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

/// client-go's `ReadIdleTimeout` and `PingTimeout` of its HTTP/2 transport.
const HTTP2_PING_AFTER: std::time::Duration = std::time::Duration::from_secs(30);
const HTTP2_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The API client of a node over `link` (none: a link never cut), its requests limited by
/// lane to `limits`. When the kubeconfig names a client certificate file (as the bootstrap
/// writes it), each new connection presents the certificate the file holds then;
/// [`Connections::close_all`] ends the connections made so far.
pub async fn node_client(kubeconfig: &Path, link: Option<&Link>, limits: Limits) -> anyhow::Result<(kube::Client, Connections)> {
    let connections = link.map_or_else(Connections::default, |l| l.connections.clone());
    Ok((connect(kubeconfig, link, connections.clone(), limits).await?, connections))
}

/// A node's client over no link (never cut), made at its first use: the node's HTTP API
/// asks the API server who may use it only when someone calls with a token or a
/// certificate, and most nodes of a thousand are never called.
#[derive(Clone)]
pub struct OnDemandClient {
    kubeconfig: PathBuf,
    connections: Connections,
    client: Arc<tokio::sync::OnceCell<kube::Client>>,
}

impl OnDemandClient {
    /// The client `kubeconfig` will make; nothing is read or connected yet.
    pub fn new(kubeconfig: &Path) -> OnDemandClient {
        OnDemandClient { kubeconfig: kubeconfig.to_path_buf(), connections: Connections::default(), client: Arc::default() }
    }

    /// The connections the client opens, closed when the certificate rotates.
    pub fn connections(&self) -> Connections {
        self.connections.clone()
    }

    /// The client, made now if it was not yet; a failure is tried again at the next use.
    pub async fn get(&self) -> anyhow::Result<kube::Client> {
        let made = self.client.get_or_try_init(|| connect(&self.kubeconfig, None, self.connections.clone(), Limits::default())).await?;
        Ok(made.clone())
    }
}

async fn connect(kubeconfig: &Path, link: Option<&Link>, connections: Connections, limits: Limits) -> anyhow::Result<kube::Client> {
    use anyhow::Context;
    let parsed = Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
    let cert_file = parsed.auth_infos.first().and_then(|a| a.auth_info.as_ref()).and_then(|a| a.client_certificate.clone());
    let config =
        kube::Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default()).await.with_context(|| format!("using {}", kubeconfig.display()))?;
    let mut tls = config.rustls_client_config()?;
    if let Some(cert_file) = cert_file {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        tls.client_auth_cert_resolver = Arc::new(CurrentCertificate { path: PathBuf::from(cert_file), provider, loaded: Mutex::new(None) });
    }
    // No TLS session resumption (client-go has none either): a resumed session keeps the
    // identity of the certificate it was first made with, so after a rotation new
    // connections would still be the old, soon expired, certificate.
    tls.resumption = rustls::client::Resumption::disabled();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    // HTTP/2 when the server offers it, as client-go: a node's watch, Lease, status and
    // events share one connection instead of one each.
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_all_versions().wrap_connector(http);
    // The timeouts kube's own client has: a half-open connection must not hang a renewal.
    let closing = ClosingConnector { inner: https, connections, link: link.cloned() };
    let mut timed = hyper_timeout::TimeoutConnector::new(closing);
    timed.set_connect_timeout(config.connect_timeout);
    timed.set_read_timeout(config.read_timeout);
    timed.set_write_timeout(config.write_timeout);
    // client-go's HTTP/2 health check: a connection silent for 30 s is pinged, and closed
    // when no answer comes within 15 s, so one dead connection does not hang every request
    // of the node.
    let client: hyper_util::client::legacy::Client<_, kube::client::Body> = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .timer(hyper_util::rt::TokioTimer::new())
        // The pool's idle clock too: by default it reads std's, which a paused tokio clock
        // (the pod lab's virtual time) leaves behind, and idle HTTP/2 connections stall.
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .http2_keep_alive_interval(HTTP2_PING_AFTER)
        .http2_keep_alive_timeout(HTTP2_PING_TIMEOUT)
        .http2_keep_alive_while_idle(true)
        .build(timed);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(|e: hyper_util::client::legacy::Error| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })
        .service(client);
    Ok(super::client(service, limits, config.default_namespace))
}
