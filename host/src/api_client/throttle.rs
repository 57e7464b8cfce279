//! A kubelet's client-side rate limits: a token bucket per lane of requests
//! (`kubeAPIQPS`/`kubeAPIBurst` for its API requests, `eventRecordQPS`/`eventBurst` for its
//! events, none for its heartbeats), refilled on the agent's clock.

use super::object_of;
use http::Request;
use kube::client::Body;
use std::time::Duration;

/// client-go's client-side rate limit: a token bucket of `burst` requests, refilled at `qps`
/// a second. A request waits for a token before it is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    pub qps: f64,
    pub burst: u32,
}

impl Throttle {
    /// The kubelet's defaults, for its API client (kubeAPIQPS 5, kubeAPIBurst 10) and its
    /// event client (eventRecordQPS 5, eventBurst 10).
    pub const KUBELET: Throttle = Throttle { qps: 5.0, burst: 10 };

    /// A KubeletConfiguration's QPS and burst as the kubelet reads them: unset or 0 are the
    /// defaults, a negative QPS is no limit.
    ///
    /// ```
    /// use labkubelet::api_client::Throttle;
    /// assert_eq!(Throttle::from_config(None, None), Some(Throttle::KUBELET));
    /// assert_eq!(Throttle::from_config(Some(50), Some(100)), Some(Throttle { qps: 50.0, burst: 100 }));
    /// assert_eq!(Throttle::from_config(Some(-1), None), None);
    /// ```
    pub fn from_config(qps: Option<i32>, burst: Option<i32>) -> Option<Throttle> {
        let qps = match qps.unwrap_or(0) {
            0 => Throttle::KUBELET.qps,
            q if q < 0 => return None,
            q => f64::from(q),
        };
        let burst = burst.and_then(|b| u32::try_from(b).ok()).filter(|b| *b > 0).unwrap_or(Throttle::KUBELET.burst);
        Some(Throttle { qps, burst })
    }

    fn quota(self) -> Option<governor::Quota> {
        let period = Duration::from_secs_f64(1.0 / self.qps.max(f64::MIN_POSITIVE));
        Some(governor::Quota::with_period(period)?.allow_burst(std::num::NonZeroU32::new(self.burst.max(1))?))
    }
}

/// Which of a kubelet's API clients a request belongs to, and so which limit it waits for.
/// The kubelet has three clients: the heartbeat client (its Lease, and its node's status:
/// the node read and its status patch), unlimited; the event client, at `eventRecordQPS`;
/// and the API client, at `kubeAPIQPS`, for the rest. A node here sends all three over one
/// client, and each request takes its lane by what it asks for.
///
/// ```
/// use http::Method;
/// use labkubelet::api_client::Lane;
/// let lease = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1";
/// assert_eq!(Lane::of(&Method::PUT, lease), Lane::Heartbeat);
/// assert_eq!(Lane::of(&Method::PATCH, "/api/v1/nodes/n1/status"), Lane::Heartbeat);
/// assert_eq!(Lane::of(&Method::GET, "/api/v1/nodes/n1"), Lane::Heartbeat);
/// assert_eq!(Lane::of(&Method::POST, "/api/v1/nodes"), Lane::Api);
/// assert_eq!(Lane::of(&Method::POST, "/api/v1/namespaces/default/events"), Lane::Events);
/// assert_eq!(Lane::of(&Method::PATCH, "/api/v1/namespaces/default/pods/web/status"), Lane::Api);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Heartbeat,
    Events,
    Api,
}

impl Lane {
    pub fn of(method: &http::Method, path: &str) -> Lane {
        match object_of(path) {
            ("leases", _, _) | ("nodes", Some(_), Some("status")) => Lane::Heartbeat,
            // The node read of a status update (and of a registration that found its node,
            // once a start: the kubelet's API client sends that one); a list is the API client's.
            ("nodes", Some(_), None) if *method == http::Method::GET => Lane::Heartbeat,
            ("events", _, _) => Lane::Events,
            _ => Lane::Api,
        }
    }
}

/// A node's client-side limits by lane: `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// `kubeAPIQPS` / `kubeAPIBurst`.
    pub api: Option<Throttle>,
    /// `eventRecordQPS` / `eventBurst`.
    pub events: Option<Throttle>,
}

/// The agent's clock as the token buckets read it: tokio's, so a bucket refills in the
/// same time as everything else the node does waits, paused tokio time included.
#[derive(Debug, Clone, Copy)]
struct TokioClock {
    start: tokio::time::Instant,
}

impl governor::clock::Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.start.elapsed()
    }
}

type Bucket = governor::RateLimiter<governor::state::NotKeyed, governor::state::InMemoryState, TokioClock, governor::middleware::NoOpMiddleware<Duration>>;

/// Waits until `bucket` has a token, and takes it.
async fn take(bucket: &Bucket) {
    use governor::clock::Clock;
    while let Err(not_until) = bucket.check() {
        tokio::time::sleep(not_until.wait_time_from(bucket.clock().now())).await;
    }
}

/// One token bucket per limited lane.
struct Buckets {
    api: Option<Bucket>,
    events: Option<Bucket>,
}

impl Buckets {
    fn new(limits: Limits) -> Buckets {
        let clock = TokioClock { start: tokio::time::Instant::now() };
        let bucket = |t: Option<Throttle>| t.and_then(Throttle::quota).map(|q| governor::RateLimiter::direct_with_clock(q, clock));
        Buckets { api: bucket(limits.api), events: bucket(limits.events) }
    }

    /// Waits for a token of `lane`'s bucket, if it has one.
    async fn wait(&self, lane: Lane) {
        let bucket = match lane {
            Lane::Heartbeat => None,
            Lane::Events => self.events.as_ref(),
            Lane::Api => self.api.as_ref(),
        };
        if let Some(bucket) = bucket {
            take(bucket).await;
        }
    }
}

/// Sends each request once its lane's bucket has a token for it; every try of a retried
/// request waits again, as client-go's do.
#[derive(Clone)]
pub struct Throttled<S> {
    inner: S,
    buckets: std::sync::Arc<Buckets>,
}

impl<S> Throttled<S> {
    pub fn new(inner: S, limits: Limits) -> Throttled<S> {
        Throttled { inner, buckets: std::sync::Arc::new(Buckets::new(limits)) }
    }
}

impl<S> tower::Service<Request<Body>> for Throttled<S>
where
    S: tower::Service<Request<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures_util::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone is the one made ready below, after the wait: a service readied now could
        // go stale while the request waits for its token.
        let mut inner = self.inner.clone();
        let buckets = self.buckets.clone();
        let lane = Lane::of(request.method(), request.uri().path());
        Box::pin(async move {
            buckets.wait(lane).await;
            tower::ServiceExt::ready(&mut inner).await?.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_bucket_holds_burst_requests_and_refills_at_qps_on_tokio_time() {
        let buckets = Buckets::new(Limits { api: Some(Throttle::KUBELET), events: None });
        let started = tokio::time::Instant::now();
        for _ in 0..10 {
            buckets.wait(Lane::Api).await;
        }
        assert_eq!(started.elapsed(), Duration::ZERO, "a burst of 10 waits for nothing");
        buckets.wait(Lane::Api).await;
        assert_eq!(started.elapsed(), Duration::from_millis(200), "5 a second: the 11th waits 200 ms");
        for _ in 0..5 {
            buckets.wait(Lane::Api).await;
        }
        assert_eq!(started.elapsed(), Duration::from_millis(1200));
        for _ in 0..100 {
            buckets.wait(Lane::Events).await;
            buckets.wait(Lane::Heartbeat).await;
        }
        assert_eq!(started.elapsed(), Duration::from_millis(1200), "unlimited lanes never wait");
    }
}
