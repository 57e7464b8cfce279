//! Registration of the Node object, as the kubelet does it. Upstream:
//! pkg/kubelet/kubelet_node_status.go (registerWithAPIServer, initialNode, reconcile).

use super::conditions::node_conditions;
use crate::clock::Clock;
use k8s_openapi::api::core::v1::{DaemonEndpoint, Node, NodeAddress, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::BTreeMap;
use std::time::Duration;

/// The attach/detach annotation the kubelet sets on its Node.
pub const ATTACH_DETACH_ANNOTATION: &str = "volumes.kubernetes.io/controller-managed-attach-detach";
const REGISTER_BACKOFF: Duration = Duration::from_millis(100);
const REGISTER_MAX_BACKOFF: Duration = Duration::from_secs(7);

/// What a node says about itself when it registers.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub name: String,
    pub hostname: String,
    pub node_ip: String,
    /// `--node-labels`, merged over the default labels.
    pub labels: BTreeMap<String, String>,
    /// `--register-with-taints`.
    pub taints: Vec<Taint>,
    pub register_schedulable: bool,
    /// cpu, memory, pods, ephemeral-storage.
    pub capacity: BTreeMap<String, String>,
    /// `<runtime>://<version>`, from the runtime.
    pub container_runtime_version: String,
    pub kubelet_version: String,
    pub port: i32,
    pub machine_id: String,
    pub boot_id: String,
}

impl NodeIdentity {
    /// The labels every kubelet sets: hostname, os, arch and their beta forms.
    pub fn default_labels(&self) -> BTreeMap<String, String> {
        [
            ("kubernetes.io/hostname", self.hostname.as_str()),
            ("kubernetes.io/os", "linux"),
            ("kubernetes.io/arch", go_arch()),
            ("beta.kubernetes.io/os", "linux"),
            ("beta.kubernetes.io/arch", go_arch()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

/// The architecture as Go (and so Kubernetes) names it.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The Node as the kubelet first POSTs it, with a full status.
pub fn initial_node(id: &NodeIdentity, now: Time, runtime_errors: &[String]) -> Node {
    let mut labels = id.default_labels();
    labels.extend(id.labels.clone());
    let capacity: BTreeMap<String, Quantity> = id.capacity.iter().map(|(k, v)| (k.clone(), Quantity(v.clone()))).collect();
    Node {
        metadata: ObjectMeta {
            name: Some(id.name.clone()),
            labels: Some(labels),
            annotations: Some([(ATTACH_DETACH_ANNOTATION.to_string(), "true".to_string())].into()),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            unschedulable: (!id.register_schedulable).then_some(true),
            taints: (!id.taints.is_empty()).then(|| id.taints.clone()),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress { type_: "InternalIP".into(), address: id.node_ip.clone() },
                NodeAddress { type_: "Hostname".into(), address: id.hostname.clone() },
            ]),
            allocatable: Some(capacity.clone()),
            capacity: Some(capacity),
            conditions: Some(node_conditions(now, runtime_errors, &super::pressure::Conditions::default(), &[])),
            daemon_endpoints: Some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: id.port }) }),
            node_info: Some(NodeSystemInfo {
                machine_id: id.machine_id.clone(),
                system_uuid: id.machine_id.clone(),
                boot_id: id.boot_id.clone(),
                kernel_version: "labkubelet".into(),
                os_image: "labkubelet (simulated node)".into(),
                container_runtime_version: id.container_runtime_version.clone(),
                kubelet_version: id.kubelet_version.clone(),
                kube_proxy_version: String::new(),
                operating_system: "linux".into(),
                architecture: go_arch().into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// Brings an existing Node's nodeInfo (boot id, versions) up to date, as the kubelet's
/// status setters do. Returns the previous boot id when it changed: the node rebooted.
pub async fn reconcile_node_info(nodes: &Api<Node>, id: &NodeIdentity, existing: &Node) -> Result<Option<String>, kube::Error> {
    let info = existing.status.as_ref().and_then(|s| s.node_info.clone()).unwrap_or_default();
    // The API server reaches the node at daemonEndpoints: a restart on another port
    // (`--port 0`) must say so, as the kubelet's status setters do on every update.
    let port = existing.status.as_ref().and_then(|s| s.daemon_endpoints.as_ref()).and_then(|d| d.kubelet_endpoint.as_ref()).map(|e| e.port);
    let stale = info.boot_id != id.boot_id
        || info.container_runtime_version != id.container_runtime_version
        || info.kubelet_version != id.kubelet_version
        || port != Some(id.port);
    if !stale {
        return Ok(None);
    }
    let patch = serde_json::json!({"status": {
        "nodeInfo": {
            "bootID": id.boot_id,
            "containerRuntimeVersion": id.container_runtime_version,
            "kubeletVersion": id.kubelet_version,
        },
        "daemonEndpoints": {"kubeletEndpoint": {"Port": id.port}},
    }});
    nodes.patch_status(&id.name, &PatchParams::default(), &Patch::Strategic(patch)).await?;
    Ok((!info.boot_id.is_empty() && info.boot_id != id.boot_id).then_some(info.boot_id))
}

/// Registers the node, retrying forever with a back-off from 100 ms doubling to 7 s. An
/// existing Node is reconciled: the default labels and the attach/detach annotation are put
/// back if missing or changed; everything else is left as it is.
pub async fn register(nodes: &Api<Node>, id: &NodeIdentity, clock: &Clock, runtime_errors: &[String]) -> Node {
    let mut backoff = REGISTER_BACKOFF;
    loop {
        match try_register(nodes, id, clock, runtime_errors).await {
            Ok(node) => return node,
            Err(e) => {
                tracing::warn!(node = %id.name, "unable to register the node: {e}; retrying in {backoff:?}");
                clock.sleep(backoff).await;
                backoff = (backoff * 2).min(REGISTER_MAX_BACKOFF);
            }
        }
    }
}

async fn try_register(nodes: &Api<Node>, id: &NodeIdentity, clock: &Clock, runtime_errors: &[String]) -> Result<Node, kube::Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(clock.now_nanos())).unwrap_or_default());
    let node = initial_node(id, now, runtime_errors);
    match nodes.create(&PostParams::default(), &node).await {
        Ok(created) => {
            tracing::info!(node = %id.name, "node registered");
            Ok(created)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = nodes.get(&id.name).await?;
            let labels = existing.metadata.labels.clone().unwrap_or_default();
            let annotations = existing.metadata.annotations.clone().unwrap_or_default();
            let missing_labels: BTreeMap<String, String> = id.default_labels().into_iter().filter(|(k, v)| labels.get(k) != Some(v)).collect();
            let annotation_ok = annotations.get(ATTACH_DETACH_ANNOTATION).map(String::as_str) == Some("true");
            if missing_labels.is_empty() && annotation_ok {
                tracing::info!(node = %id.name, "node was already registered");
                return Ok(existing);
            }
            let patch = serde_json::json!({"metadata": {"labels": missing_labels, "annotations": {ATTACH_DETACH_ANNOTATION: "true"}}});
            let reconciled = nodes.patch(&id.name, &PatchParams::default(), &Patch::Strategic(patch)).await?;
            tracing::info!(node = %id.name, "node was already registered; its default labels and annotations were reconciled");
            Ok(reconciled)
        }
        Err(e) => Err(e),
    }
}
