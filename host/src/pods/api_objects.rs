//! The API objects a node's pods refer to, as upstream's configmap and secret managers
//! (`pkg/kubelet/configmap`, `pkg/kubelet/secret`) and its service lister give them to the
//! volume manager and the environment: ConfigMaps and Secrets read when a pod needs them and
//! kept for [`TTL`], so a pod's resync sees an update within that time; Services watched
//! from the first pod that needs the service link variables, as the kubelet's informer does,
//! so a Service created just before a pod is in its environment. An object that does not exist is
//! never kept: the next retry asks again, so a ConfigMap created while a pod waits for it
//! is seen at that pod's next retry.
//!
//! The same Services answer the cluster DNS its containers ask ([`super::dns`]).
//!
//! A node may read only the ConfigMaps and Secrets its pods refer to (the Node authorizer
//! refuses the rest), and reads nothing until a pod asks.

use crate::clock::Clock;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a read object is used before it is read again (upstream's cache-based manager's
/// default TTL).
pub const TTL: Duration = Duration::from_secs(60);

/// Why an object could not be had. `NotFound`'s text is the kubelet's own
/// (`configmap "app-config" not found`, singular as its managers name the resource), which
/// `FailedMount` and `CreateContainerConfigError` messages carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error("{kind} \"{name}\" not found")]
    NotFound { kind: Kind, name: String },
    /// A standalone node has no API server to read from.
    #[error("couldn't get {kind} {namespace}/{name}, no kubeClient defined")]
    NoClient { kind: Kind, namespace: String, name: String },
    /// The API server refused or did not answer.
    #[error("{0}")]
    Api(String),
}

impl ObjectError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, ObjectError::NotFound { .. })
    }
}

/// The kinds a pod refers to by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ConfigMap,
    Secret,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::ConfigMap => "configmap",
            Kind::Secret => "secret",
        })
    }
}

/// What was read of one kind, and when, by namespace and name.
type Kept<K> = Mutex<HashMap<(String, String), (i64, Arc<K>)>>;

/// One node's reads of ConfigMaps, Secrets and Services, shared by its pod workers.
pub struct ApiObjects {
    client: Option<kube::Client>,
    clock: Clock,
    config_maps: Kept<ConfigMap>,
    secrets: Kept<Secret>,
    services: tokio::sync::OnceCell<WatchedServices>,
    /// The cluster DNS its containers ask, which answers from the same watch.
    dns: super::dns::ClusterDns,
}

/// The Services of the cluster as a watch keeps them, and the task that keeps them.
struct WatchedServices {
    store: reflector::Store<Service>,
    task: tokio::task::AbortHandle,
}

impl Drop for ApiObjects {
    fn drop(&mut self) {
        if let Some(watched) = self.services.get() {
            watched.task.abort();
        }
    }
}

/// How long the first pod that needs the Services waits for their list.
const SERVICES_LISTED_WITHIN: Duration = Duration::from_secs(10);

impl ApiObjects {
    /// `None`: a standalone node, which can read nothing. The Services it watches answer `dns`.
    pub fn new(client: Option<kube::Client>, clock: Clock, dns: super::dns::ClusterDns) -> ApiObjects {
        ApiObjects { client, clock, config_maps: Mutex::default(), secrets: Mutex::default(), services: tokio::sync::OnceCell::new(), dns }
    }

    pub async fn config_map(&self, namespace: &str, name: &str) -> Result<Arc<ConfigMap>, ObjectError> {
        self.get(Kind::ConfigMap, &self.config_maps, namespace, name).await
    }

    pub async fn secret(&self, namespace: &str, name: &str) -> Result<Arc<Secret>, ObjectError> {
        self.get(Kind::Secret, &self.secrets, namespace, name).await
    }

    /// Every Service of the cluster, for the service link variables; an empty list on a
    /// standalone node (upstream's kubelet without a master sets none).
    pub async fn services(&self) -> Result<Arc<Vec<Service>>, ObjectError> {
        let Some(client) = &self.client else { return Ok(Arc::default()) };
        let watched = self
            .services
            .get_or_init(|| async {
                let (store, writer) = reflector::store();
                let stream = reflector(writer, watcher(Api::<Service>::all(client.clone()), watcher::Config::default()).default_backoff());
                let task = tokio::spawn(stream.for_each(|_| std::future::ready(()))).abort_handle();
                self.dns.answer_from(store.clone());
                WatchedServices { store, task }
            })
            .await;
        if tokio::time::timeout(SERVICES_LISTED_WITHIN, watched.store.wait_until_ready()).await.is_err() {
            return Err(ObjectError::Api("failed to list services when setting up env vars".into()));
        }
        Ok(Arc::new(watched.store.state().iter().map(|s| Service::clone(s)).collect()))
    }

    /// An object of `kind`, as kept in `kept` while it is fresh, else read from the API server.
    async fn get<K>(&self, kind: Kind, kept: &Kept<K>, namespace: &str, name: &str) -> Result<Arc<K>, ObjectError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
    {
        let Some(client) = &self.client else {
            return Err(ObjectError::NoClient { kind, namespace: namespace.into(), name: name.into() });
        };
        let key = (namespace.to_string(), name.to_string());
        let now = self.clock.now_nanos();
        if let Some((at, object)) = kept.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && now - at < ttl()
        {
            return Ok(object.clone());
        }
        let found = Api::<K>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| ObjectError::Api(format!("failed to get {kind} {namespace}/{name}: {e}")))?;
        let object = Arc::new(found.ok_or_else(|| ObjectError::NotFound { kind, name: name.to_string() })?);
        let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
        // What no pod read for a while goes, so the map holds what the pods now use.
        kept.retain(|_, (at, _)| now - *at < 2 * ttl());
        kept.insert(key, (now, object.clone()));
        Ok(object)
    }
}

fn ttl() -> i64 {
    i64::try_from(TTL.as_nanos()).unwrap_or(i64::MAX)
}
