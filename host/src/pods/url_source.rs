//! The manifest URL source (upstream pkg/kubelet/config/http.go): `--manifest-url` is
//! fetched every httpCheckFrequency (20 s), with the `--manifest-url-header` headers; the
//! answer is a Pod or a PodList in YAML or JSON, and an empty answer means no pods. A fetch
//! that fails or returns something else keeps the last good set: a registry outage does
//! not stop the pods.

use super::manager::PodManager;
use super::static_pods::{FirstSeen, ManifestSource, parse_pods, static_pod};
use crate::clock::Clock;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use std::sync::Arc;
use std::time::Duration;

/// httpCheckFrequency's default.
pub const HTTP_CHECK_FREQUENCY: Duration = Duration::from_secs(20);
/// The most a manifest answer may be; more is refused rather than read.
const MAX_BODY: usize = 10 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A manifest URL and the headers to send with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestUrl {
    pub url: String,
    /// `(name, value)`; a name may repeat.
    pub headers: Vec<(String, String)>,
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Empty<bytes::Bytes>>;

/// The URL source of one node.
pub struct UrlSource {
    url: String,
    headers: Vec<(String, String)>,
    node: String,
    clock: Clock,
    client: HttpsClient,
    seen: FirstSeen,
}

impl UrlSource {
    /// A source for `url`; fails when the system's root certificates cannot be loaded.
    pub fn new(manifest: ManifestUrl, node: &str, clock: Clock) -> std::io::Result<Self> {
        let ManifestUrl { url, headers } = manifest;
        let https = hyper_rustls::HttpsConnectorBuilder::new().with_native_roots()?.https_or_http().enable_http1().build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        Ok(UrlSource { url, headers, node: node.into(), clock, client, seen: FirstSeen::new(clock) })
    }

    /// Fetches and defaults the pods the URL describes now.
    pub async fn fetch(&mut self) -> Result<Vec<Pod>, String> {
        let mut request = http::Request::get(&self.url);
        for (k, v) in &self.headers {
            request = request.header(k, v);
        }
        let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(FETCH_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the server answered {status}"));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_BODY).collect().await.map_err(|e| e.to_string())?.to_bytes();
        let text = std::str::from_utf8(&body).map_err(|e| format!("the answer is not text: {e}"))?;
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        let mut pods: Vec<Pod> = parse_pods(text)?.into_iter().map(|m| static_pod(m, &self.node, ManifestSource::Url(&self.url))).collect();
        self.seen.stamp(&mut pods);
        Ok(pods)
    }

    /// Feeds the manager every period until dropped.
    pub async fn run(mut self, manager: Arc<PodManager>, period: Duration) {
        let mut failing = false;
        loop {
            // On the heap while it runs: between fetches the task keeps only its sleep.
            match Box::pin(self.fetch()).await {
                Ok(pods) => {
                    failing = false;
                    manager.replace("http", pods);
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(node = %self.node, url = %self.url, "manifest URL not loaded ({e}); keeping the pods it last gave");
                }
                Err(_) => {}
            }
            self.clock.sleep(period).await;
        }
    }
}
