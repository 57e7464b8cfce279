//! The node's Lease in `kube-node-lease`: the heartbeat the node lifecycle controller
//! watches. Upstream: component-helpers/apimachinery/lease/controller.go.
//!
//! Every 0.25 × leaseDurationSeconds (jitter 0.04) the lease is renewed by an optimistic
//! update from the last lease the server returned, without a GET. Up to 5 tries; a 409
//! Conflict re-reads the lease first. Without a cached lease it is read, or created when
//! missing, retrying with a back-off from 200 ms doubling to 7 s. Its owner is the Node,
//! once the Node exists. A failed renewal is logged, never fatal.

use crate::clock::Clock;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, PostParams};
use std::time::Duration;

/// The namespace of node leases.
pub const NAMESPACE: &str = "kube-node-lease";
const MAX_UPDATE_RETRIES: usize = 5;
const JITTER: f64 = 0.04;
const ENSURE_BACKOFF: Duration = Duration::from_millis(200);
const ENSURE_MAX_BACKOFF: Duration = Duration::from_secs(7);
/// The kubelet's heartbeat client gives each request the smaller of
/// nodeStatusUpdateFrequency (10 s) and the lease duration: a request the network lost
/// must not hold the next renewal back.
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a renewal failed; the controller retries at the next interval.
#[derive(Debug, thiserror::Error)]
#[error("renewing the lease of node {node}: {detail}")]
pub struct LeaseError {
    pub node: String,
    pub detail: String,
}

/// Why one lease request failed.
#[derive(Debug)]
enum Failure {
    /// 409: someone else wrote the lease since it was read.
    Conflict(String),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Conflict(m) | Failure::Other(m) => f.write_str(m),
        }
    }
}

/// Keeps one node's Lease renewed.
pub struct NodeLease {
    leases: Api<Lease>,
    nodes: Api<Node>,
    node: String,
    duration_seconds: i32,
    clock: Clock,
    latest: Option<Lease>,
}

impl NodeLease {
    /// A controller for `node`'s lease with `duration_seconds` (the kubelet's
    /// nodeLeaseDurationSeconds, 40 by default).
    pub fn new(client: kube::Client, node: &str, duration_seconds: i32, clock: Clock) -> Self {
        NodeLease { leases: Api::namespaced(client.clone(), NAMESPACE), nodes: Api::all(client), node: node.to_string(), duration_seconds, clock, latest: None }
    }

    /// How often the lease is renewed: a quarter of its duration.
    pub fn renew_interval(&self) -> Duration {
        Duration::from_secs_f64(f64::from(self.duration_seconds) * 0.25)
    }

    /// How long one lease request may take.
    pub fn request_timeout(&self) -> Duration {
        HEARTBEAT_TIMEOUT.min(Duration::from_secs(u64::try_from(self.duration_seconds).unwrap_or(1).max(1)))
    }

    /// A request under the heartbeat timeout; running out of time is a failure like any other.
    async fn timed<T>(&self, request: impl std::future::Future<Output = Result<T, kube::Error>>) -> Result<T, Failure> {
        match tokio::time::timeout(self.request_timeout(), request).await {
            Ok(answer) => answer.map_err(|e| match e {
                kube::Error::Api(s) if s.code == 409 => Failure::Conflict(s.message),
                e => Failure::Other(e.to_string()),
            }),
            Err(_) => Err(Failure::Other(format!("no answer within {:?}", self.request_timeout()))),
        }
    }

    fn error(&self, detail: impl std::fmt::Display) -> LeaseError {
        LeaseError { node: self.node.clone(), detail: detail.to_string() }
    }

    /// Renews until the task is dropped.
    pub async fn run(mut self) {
        loop {
            let started = std::time::Instant::now();
            // On the heap while it runs: between renewals the task keeps only its sleep.
            let renewed = Box::pin(self.renew()).await;
            let result = if renewed.is_ok() { "success" } else { "error" };
            crate::metrics::METRICS.lease_renew_duration.with_label_values(&[&self.node, result]).observe(started.elapsed().as_secs_f64());
            if let Err(e) = renewed {
                tracing::warn!("{e}; retrying at the next interval");
            }
            self.clock.sleep_jittered(self.renew_interval(), JITTER).await;
        }
    }

    /// One renewal, as the upstream controller's sync does.
    pub async fn renew(&mut self) -> Result<Lease, LeaseError> {
        if let Some(latest) = self.latest.clone() {
            match self.update_with_retries(latest).await {
                Ok(lease) => return Ok(lease),
                Err(e) => tracing::debug!("{e}; reading the lease again"),
            }
        }
        let (lease, created) = self.ensure_with_backoff().await;
        if created {
            self.latest = Some(without_managed_fields(lease.clone()));
            return Ok(lease);
        }
        self.update_with_retries(lease).await
    }

    async fn update_with_retries(&mut self, mut base: Lease) -> Result<Lease, LeaseError> {
        let mut last = String::new();
        for _ in 0..MAX_UPDATE_RETRIES {
            let next = self.renewed(base.clone()).await;
            match self.timed(self.leases.replace(&self.node, &PostParams::default(), &next)).await {
                Ok(lease) => {
                    self.latest = Some(without_managed_fields(lease.clone()));
                    return Ok(lease);
                }
                Err(Failure::Conflict(message)) => {
                    last = message;
                    base = self.ensure_with_backoff().await.0;
                }
                Err(Failure::Other(message)) => last = message,
            }
        }
        self.latest = None;
        Err(self.error(format!("failed {MAX_UPDATE_RETRIES} attempts to update the lease: {last}")))
    }

    /// The lease as it should be now: held by this node, renewed now, owned by the Node.
    async fn renewed(&self, mut lease: Lease) -> Lease {
        let spec = lease.spec.get_or_insert_default();
        spec.holder_identity = Some(self.node.clone());
        spec.lease_duration_seconds = Some(self.duration_seconds);
        spec.renew_time = Some(self.now());
        if lease.metadata.owner_references.as_ref().is_none_or(|o| o.is_empty()) {
            // Until the Node exists, the lease has no owner; it is set at a later renewal.
            if let Ok(node) = self.timed(self.nodes.get(&self.node)).await
                && let Some(uid) = node.metadata.uid
            {
                lease.metadata.owner_references =
                    Some(vec![OwnerReference { api_version: "v1".into(), kind: "Node".into(), name: self.node.clone(), uid, ..Default::default() }]);
            }
        }
        lease
    }

    fn now(&self) -> MicroTime {
        let nanos = i128::from(self.clock.now_nanos());
        MicroTime(k8s_openapi::jiff::Timestamp::from_nanosecond(nanos).unwrap_or_default())
    }

    /// Reads the lease, creating it when missing; retries with back-off until it succeeds.
    async fn ensure_with_backoff(&mut self) -> (Lease, bool) {
        let mut backoff = ENSURE_BACKOFF;
        loop {
            match self.ensure().await {
                Ok(found) => return found,
                Err(e) => {
                    tracing::warn!("{e}; retrying in {backoff:?}");
                    self.clock.sleep(backoff).await;
                    backoff = (backoff * 2).min(ENSURE_MAX_BACKOFF);
                }
            }
        }
    }

    async fn ensure(&mut self) -> Result<(Lease, bool), LeaseError> {
        match self.timed(self.leases.get_opt(&self.node)).await {
            Ok(Some(lease)) => Ok((lease, false)),
            Ok(None) => {
                let fresh =
                    Lease { metadata: ObjectMeta { name: Some(self.node.clone()), namespace: Some(NAMESPACE.into()), ..Default::default() }, spec: None };
                let lease = self.renewed(fresh).await;
                let created = self.timed(self.leases.create(&PostParams::default(), &lease)).await.map_err(|e| self.error(e))?;
                Ok((created, true))
            }
            Err(e) => Err(self.error(e)),
        }
    }
}

/// The lease kept between renewals, without its managed fields: an update that sends none
/// keeps the server's, and they are most of the lease's size.
fn without_managed_fields(mut lease: Lease) -> Lease {
    lease.metadata.managed_fields = None;
    lease
}
