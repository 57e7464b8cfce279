//! The API clients of a node, made to live with a busy server: a request the server
//! throttled (429 Too Many Requests, as max-in-flight answers when many clients start at
//! once) or could not serve (502, 503, 504) is sent again, after the `Retry-After` the
//! server asked for or an exponential back-off, up to client-go's 10 retries; other answers
//! go to the caller as they are. Like a kubelet's, a node's requests also limit themselves
//! ([`Throttle`], by [`Lane`]): its API requests to `kubeAPIQPS`/`kubeAPIBurst`, its events
//! to `eventRecordQPS`/`eventBurst`; its heartbeats (Lease, node status) are not limited.
//!
//! [`connections`]: how a node's clients connect (the current client certificate, and a
//! link a lab can cut).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = kube::Config::infer().await?;
//! let client = labkubelet::api_client::from_config(config)?;
//! # let _ = client;
//! # Ok(()) }
//! ```

pub mod connections;
mod throttle;

pub use throttle::{Lane, Limits, Throttle, Throttled};

use http::{Request, Response, StatusCode};
use kube::client::Body;
use std::time::Duration;
use tower::BoxError;
use tower::buffer::BufferLayer;
use tower::retry::backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use tower::retry::{Policy, RetryLayer};
use tower::util::rng::HasherRng;

/// client-go's `maxRetries` for throttled requests: a request answered 429 this many
/// times more goes to its caller with the last answer.
pub const MAX_RETRIES: u32 = 10;
/// The longest `Retry-After` honoured; longer asks are cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Requests waiting for the client's one connection pool at once.
const QUEUE: usize = 1024;

/// When to send a request again.
#[derive(Clone)]
pub struct ApiRetry {
    /// `None` if the back-off could not be built: then nothing is retried.
    backoff: Option<ExponentialBackoff>,
    retries: u32,
}

impl Default for ApiRetry {
    fn default() -> Self {
        let backoff =
            ExponentialBackoffMaker::new(Duration::from_millis(200), Duration::from_secs(10), 2.0, HasherRng::new()).ok().map(|mut m| m.make_backoff());
        ApiRetry { backoff, retries: 0 }
    }
}

/// Whether an answer means "try again later".
fn retryable(status: StatusCode) -> bool {
    matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT)
}

/// The wait a `Retry-After: <seconds>` header asks for.
fn retry_after<B>(response: &Response<B>) -> Option<Duration> {
    let seconds: u64 = response.headers().get(http::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// The resource a request path names, with its subresource: `pods/status` for
/// `/api/v1/namespaces/default/pods/web/status`, `leases` for a Lease, `nodes` for the
/// node list; what the API server's audit log calls `objectRef.resource`.
///
/// ```
/// use labkubelet::api_client::resource_of;
/// assert_eq!(resource_of("/api/v1/namespaces/default/pods/web/status"), "pods/status");
/// assert_eq!(resource_of("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1"), "leases");
/// assert_eq!(resource_of("/api/v1/nodes"), "nodes");
/// assert_eq!(resource_of("/api/v1/namespaces/kube-system"), "namespaces");
/// assert_eq!(resource_of("/version"), "version");
/// ```
pub fn resource_of(path: &str) -> String {
    match object_of(path) {
        (resource, _, Some(sub)) => format!("{resource}/{sub}"),
        (resource, _, None) => resource.to_string(),
    }
}

/// What a request path names: the resource, the object's name (none for a list or a
/// create) and the subresource.
fn object_of(path: &str) -> (&str, Option<&str>, Option<&str>) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.first() {
        Some(&"api") => segments.get(2..),
        Some(&"apis") => segments.get(3..),
        _ => Some(&segments[..]),
    };
    let mut rest = rest.unwrap_or_default();
    if rest.len() > 2 && rest[0] == "namespaces" {
        rest = &rest[2..];
    }
    match rest {
        [resource, name, sub, ..] => (resource, Some(name), Some(sub)),
        [resource, name] => (resource, Some(name), None),
        [resource] => (resource, None, None),
        [] => ("", None, None),
    }
}

impl<B> Policy<Request<Body>, Response<B>, BoxError> for ApiRetry {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, request: &mut Request<Body>, result: &mut Result<Response<B>, BoxError>) -> Option<Self::Future> {
        let code = result.as_ref().map_or_else(|_| "error".to_string(), |r| r.status().as_u16().to_string());
        crate::metrics::METRICS.api_requests.with_label_values(&[request.method().as_str(), &resource_of(request.uri().path()), &code]).inc();
        let Ok(response) = result else { return None };
        if !retryable(response.status()) || self.retries >= MAX_RETRIES {
            return None;
        }
        let backoff = self.backoff.as_mut()?;
        self.retries += 1;
        crate::metrics::METRICS.api_retries.with_label_values(&[response.status().as_str()]).inc();
        Some(match retry_after(response) {
            Some(wait) => tokio::time::sleep(wait),
            None => backoff.next_backoff(),
        })
    }

    fn clone_request(&mut self, request: &Request<Body>) -> Option<Request<Body>> {
        let body = request.body().try_clone()?;
        let mut copy = Request::builder().method(request.method().clone()).uri(request.uri().clone()).version(request.version()).body(body).ok()?;
        *copy.headers_mut() = request.headers().clone();
        Some(copy)
    }
}

/// `client` with `limits` on its lanes, sharing its connections.
pub fn throttled(client: &kube::Client, limits: Limits) -> kube::Client {
    let sending = client.clone();
    let send = tower::service_fn(move |request: Request<Body>| {
        let sending = sending.clone();
        async move { sending.send(request).await }
    });
    kube::Client::new(Throttled::new(send, limits), client.default_namespace().to_string())
}

/// A client over `service` whose throttled requests are retried, each try waiting for a
/// token of its lane's bucket in `limits`. `service` is cloned for each retry, so it needs
/// no queue of its own: kube's client has one in front of it (a queue per client costs a
/// node 10 KiB before it sends anything, so a node has one client for its three lanes).
pub fn client<S, B>(service: S, limits: Limits, default_namespace: String) -> kube::Client
where
    S: tower::Service<Request<Body>, Response = Response<B>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let limited = Throttled::new(service, limits);
    kube::Client::new(tower::ServiceBuilder::new().layer(RetryLayer::new(ApiRetry::default())).service(limited), default_namespace)
}

/// kube's client for `config`, with throttled requests retried.
pub fn from_config(config: kube::Config) -> Result<kube::Client, kube::Error> {
    let builder = kube::client::ClientBuilder::try_from(config)?;
    Ok(builder.with_layer(&BufferLayer::new(QUEUE)).with_layer(&RetryLayer::new(ApiRetry::default())).build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, retry_after: Option<&str>) -> Result<Response<()>, BoxError> {
        let mut response = Response::builder().status(status);
        if let Some(seconds) = retry_after {
            response = response.header("retry-after", seconds);
        }
        Ok(response.body(()).unwrap_or_default())
    }

    #[tokio::test(start_paused = true)]
    async fn throttled_answers_are_retried_after_what_the_server_asks() {
        let mut policy = ApiRetry::default();
        let mut request = Request::new(Body::empty());
        assert!(policy.retry(&mut request, &mut answer(200, None)).is_none());
        assert!(policy.retry(&mut request, &mut answer(404, Some("1"))).is_none());
        assert!(policy.retry(&mut request, &mut answer(500, None)).is_none(), "a 500 is the server's answer, not a throttle");
        let started = tokio::time::Instant::now();
        policy.retry(&mut request, &mut answer(429, Some("3"))).expect("a 429 is retried").await;
        assert_eq!(started.elapsed(), Duration::from_secs(3), "after the Retry-After the server asked for");
        for _ in 1..MAX_RETRIES {
            assert!(policy.retry(&mut request, &mut answer(503, None)).is_some());
        }
        assert!(policy.retry(&mut request, &mut answer(429, Some("1"))).is_none(), "at most {MAX_RETRIES} retries");
    }
}
