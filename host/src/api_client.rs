//! The API clients of a node, made to live with a busy server: a request the server
//! throttled (429 Too Many Requests, as max-in-flight answers when many clients start at
//! once) or could not serve (502, 503, 504) is sent again, after the `Retry-After` the
//! server asked for or an exponential back-off, up to client-go's 10 retries; other answers
//! go to the caller as they are.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = kube::Config::infer().await?;
//! let client = labkubelet::api_client::from_config(config)?;
//! # let _ = client;
//! # Ok(()) }
//! ```

use http::{Request, Response, StatusCode};
use kube::client::Body;
use std::time::Duration;
use tower::BoxError;
use tower::buffer::BufferLayer;
use tower::retry::backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use tower::retry::{Policy, RetryLayer};
use tower::util::rng::HasherRng;

/// client-go's `maxRetries` for throttled requests.
const MAX_RETRIES: u32 = 10;
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

impl<B> Policy<Request<Body>, Response<B>, BoxError> for ApiRetry {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, _request: &mut Request<Body>, result: &mut Result<Response<B>, BoxError>) -> Option<Self::Future> {
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

/// A client over `service` whose throttled requests are retried.
pub fn client<S, B>(service: S, default_namespace: String) -> kube::Client
where
    S: tower::Service<Request<Body>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send + Sync,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let service = tower::ServiceBuilder::new().layer(RetryLayer::new(ApiRetry::default())).layer(BufferLayer::new(QUEUE)).service(service);
    kube::Client::new(service, default_namespace)
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
