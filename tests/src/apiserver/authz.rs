//! Who may do what, as kube-apiserver with `--authorization-mode=Node,RBAC` and the
//! `NodeRestriction` admission plugin decides it for the requests a kubelet makes.
//!
//! - A node (`system:node:<name>` in `system:nodes`): the Node authorizer's rules
//!   (upstream `plugin/pkg/auth/authorizer/node` and the node rules of RBAC's bootstrap
//!   policy) — its own Lease only; nodes get/list/watch/create/update/patch but only
//!   update/patch on `nodes/status`; pods read, create and delete, `pods/status`
//!   update/patch; events create/update/patch; CSRs create/get/list/watch; services
//!   get/list/watch; a ConfigMap or Secret only when a pod bound to it refers to it — then
//!   NodeRestriction (`plugin/pkg/admission/noderestriction`): only its own Node and no
//!   taint changes or restricted labels on it, only mirror pods bound to itself and owned by
//!   its Node, only status of and deletion of pods bound to it.
//! - A bootstrap token (`system:bootstrap:<id>`): RBAC's `system:node-bootstrapper`, CSRs only.
//! - Anyone else is allowed: the tests' own users act as cluster admins.
//!
//! Refusals are 403 Forbidden with the real server's message.

use super::Identity;
use super::rest::{ApiError, Resource};
use serde_json::Value;

/// What a request does, as the authorizer sees it.
#[derive(Debug, Clone, Copy)]
pub struct Attributes<'a> {
    /// get, list, watch, create, update, patch, delete, deletecollection.
    pub verb: &'a str,
    pub resource: &'static Resource,
    pub subresource: Option<&'a str>,
    pub namespace: &'a str,
    pub name: Option<&'a str>,
}

impl Attributes<'_> {
    fn resource_name(&self) -> String {
        match self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource.plural),
            None => self.resource.plural.to_string(),
        }
    }

    /// `pods "x" is forbidden: …`, the prefix of the server's Forbidden messages.
    fn forbidden(&self, name: Option<&str>, why: String) -> ApiError {
        let name = name.or(self.name).unwrap_or_default();
        ApiError::new(403, "Forbidden", format!("{} \"{name}\" is forbidden: {why}", self.resource.group_resource()))
    }
}

/// The node a user is, by the Node authorizer's rule: `system:node:<name>` in `system:nodes`.
pub fn node_of(identity: &Identity) -> Option<&str> {
    identity.user.strip_prefix("system:node:").filter(|_| identity.groups.iter().any(|g| g == "system:nodes"))
}

fn is_bootstrap(identity: &Identity) -> bool {
    identity.user.starts_with("system:bootstrap:")
}

/// 403 unless the Node authorizer (for nodes) or RBAC (for bootstrap tokens) allows it.
/// `pods` lists the stored pods, for the Node authorizer's graph of what a node's pods use.
pub fn authorize(identity: &Identity, a: &Attributes, pods: impl FnOnce() -> Vec<Value>) -> Result<(), ApiError> {
    let decision = if let Some(node) = node_of(identity) {
        match (a.resource.plural, a.subresource, a.name) {
            ("configmaps" | "secrets", None, Some(name)) if a.verb == "get" => {
                if pods().iter().any(|p| p["spec"]["nodeName"].as_str() == Some(node) && refers_to(p, a.resource.plural, a.namespace, name)) {
                    Ok(())
                } else {
                    Err(Some(format!("no relationship found between node '{node}' and this object")))
                }
            }
            _ => node_authorizer(node, a).map_err(|reason| reason.map(String::from)),
        }
    } else if is_bootstrap(identity) {
        if a.resource.plural == "certificatesigningrequests" && a.subresource.is_none() && matches!(a.verb, "create" | "get" | "list" | "watch") {
            Ok(())
        } else {
            Err(None)
        }
    } else {
        Ok(())
    };
    decision.map_err(|reason| {
        let scope =
            if a.resource.namespaced && !a.namespace.is_empty() { format!("in the namespace \"{}\"", a.namespace) } else { "at the cluster scope".to_string() };
        let mut why = format!("User \"{}\" cannot {} resource \"{}\" in API group \"{}\" {scope}", identity.user, a.verb, a.resource_name(), a.resource.group);
        if let Some(reason) = reason {
            why = format!("{why}: {reason}");
        }
        a.forbidden(None, why)
    })
}

/// Allowed, or denied with the Node authorizer's reason (if it gave one).
fn node_authorizer(node: &str, a: &Attributes) -> Result<(), Option<&'static str>> {
    if a.resource.plural == "leases" {
        if !matches!(a.verb, "get" | "create" | "update" | "patch" | "delete") {
            return Err(Some("can only get, create, update, patch, or delete a node lease"));
        }
        if a.namespace != "kube-node-lease" {
            return Err(Some("can only access leases in the \"kube-node-lease\" system namespace"));
        }
        if a.verb != "create" && a.name != Some(node) {
            return Err(Some("can only access node lease with the same name as the requesting node"));
        }
        return Ok(());
    }
    let verbs: &[&str] = match (a.resource.plural, a.subresource) {
        ("nodes", None) => &["create", "get", "list", "watch", "update", "patch"],
        ("nodes", Some("status")) => &["update", "patch"],
        ("pods", None) => &["get", "list", "watch", "create", "delete"],
        ("pods", Some("status")) => &["update", "patch"],
        ("pods", Some("eviction")) => &["create"],
        ("events", None) => &["create", "update", "patch"],
        ("certificatesigningrequests", None) => &["create", "get", "list", "watch"],
        ("services", None) => &["get", "list", "watch"],
        _ => &[],
    };
    if verbs.contains(&a.verb) { Ok(()) } else { Err(None) }
}

/// Whether a pod refers to the ConfigMap or Secret in its volumes (projected too), `env`,
/// `envFrom` or (a Secret) `imagePullSecrets`, as the Node authorizer's graph records it
/// (`VisitPodSecretNames`, `VisitPodConfigmapNames`).
fn refers_to(pod: &Value, plural: &str, namespace: &str, name: &str) -> bool {
    if pod["metadata"]["namespace"].as_str().unwrap_or("default") != namespace {
        return false;
    }
    let spec = &pod["spec"];
    let each = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let named = |v: &Value, field: &str| v[field].as_str() == Some(name);
    let (volume_key, volume_field, ref_key, key_ref) =
        if plural == "configmaps" { ("configMap", "name", "configMapRef", "configMapKeyRef") } else { ("secret", "secretName", "secretRef", "secretKeyRef") };
    let in_volumes = each(&spec["volumes"])
        .iter()
        .any(|v| named(&v[volume_key], volume_field) || each(&v["projected"]["sources"]).iter().any(|s| named(&s[volume_key], "name")));
    let pulls = plural == "secrets" && each(&spec["imagePullSecrets"]).iter().any(|s| named(s, "name"));
    let containers = [each(&spec["containers"]), each(&spec["initContainers"]), each(&spec["ephemeralContainers"])].concat();
    let in_env = containers
        .iter()
        .any(|c| each(&c["envFrom"]).iter().any(|e| named(&e[ref_key], "name")) || each(&c["env"]).iter().any(|e| named(&e["valueFrom"][key_ref], "name")));
    in_volumes || in_env || pulls
}

/// Labels a node may set on itself (NodeRestriction's `getForbiddenLabels`): anything outside
/// the `kubernetes.io` and `k8s.io` namespaces, the kubelet's well-known labels, and the
/// `kubelet.kubernetes.io` and `node.kubernetes.io` prefixes; never `node-restriction.kubernetes.io`.
fn label_allowed(key: &str) -> bool {
    const KUBELET_LABELS: &[&str] = &[
        "kubernetes.io/hostname",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
    ];
    let Some((domain, _)) = key.split_once('/') else { return true };
    let restricted = |d: &str| d == "kubernetes.io" || d.ends_with(".kubernetes.io") || d == "k8s.io" || d.ends_with(".k8s.io");
    if domain == "node-restriction.kubernetes.io" || domain.ends_with(".node-restriction.kubernetes.io") {
        return false;
    }
    !restricted(domain)
        || KUBELET_LABELS.contains(&key)
        || ["kubelet.kubernetes.io", "node.kubernetes.io"].iter().any(|p| domain == *p || domain.ends_with(&format!(".{p}")))
}

/// NodeRestriction for one request: `old` is the stored object (none on create), `new` what
/// it becomes (none on delete). `node_uid` is the requesting node's Node uid, if it exists.
pub fn admit(identity: &Identity, a: &Attributes, node_uid: Option<&str>, old: Option<&Value>, new: Option<&Value>) -> Result<(), ApiError> {
    let Some(node) = node_of(identity) else { return Ok(()) };
    let object_name = |v: Option<&Value>| v.and_then(|v| v["metadata"]["name"].as_str()).map(str::to_string);
    let name = object_name(new).or_else(|| object_name(old));
    let deny = |why: String| Err(a.forbidden(name.as_deref(), why));
    match (a.resource.plural, a.subresource) {
        ("pods", None) => match a.verb {
            "create" => {
                let pod = new.cloned().unwrap_or_default();
                if pod["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_null() {
                    return deny(format!("pod does not have \"kubernetes.io/config.mirror\" annotation, node \"{node}\" can only create mirror pods"));
                }
                if pod["spec"]["nodeName"].as_str() != Some(node) {
                    return deny(format!("node \"{node}\" can only create pods with spec.nodeName set to itself"));
                }
                if let Some(owners) = pod["metadata"]["ownerReferences"].as_array() {
                    if owners.len() != 1 {
                        return deny(format!("node \"{node}\" can only create pods with a single owner reference set to itself"));
                    }
                    let owner = &owners[0];
                    if owner["apiVersion"] != "v1" || owner["kind"] != "Node" || owner["name"].as_str() != Some(node) {
                        return deny(format!("node \"{node}\" can only create pods with an owner reference set to itself"));
                    }
                    if owner["controller"] != true {
                        return deny(format!("node \"{node}\" can only create pods with a controller owner reference set to itself"));
                    }
                    if owner["blockOwnerDeletion"] == true {
                        return deny(format!("node \"{node}\" must not set blockOwnerDeletion on an owner reference"));
                    }
                    if owner["uid"].as_str() != node_uid {
                        return deny(format!(
                            "node {node} UID mismatch: expected {} got {}",
                            owner["uid"].as_str().unwrap_or_default(),
                            node_uid.unwrap_or_default()
                        ));
                    }
                }
                if pod["spec"]["serviceAccountName"].as_str().is_some_and(|s| !s.is_empty()) {
                    return deny(format!("node \"{node}\" can not create pods that reference a service account"));
                }
                Ok(())
            }
            "delete" if old.and_then(|p| p["spec"]["nodeName"].as_str()) != Some(node) => {
                deny(format!("node \"{node}\" can only delete pods with spec.nodeName set to itself"))
            }
            // Updates and patches of pods were refused by the authorizer already.
            _ => Ok(()),
        },
        ("pods", Some("status")) => {
            if old.and_then(|p| p["spec"]["nodeName"].as_str()) != Some(node) {
                return deny(format!("node \"{node}\" can only update pod status for pods with spec.nodeName set to itself"));
            }
            if old.map(|p| &p["metadata"]["labels"]) != new.map(|p| &p["metadata"]["labels"]) {
                return deny(format!("node \"{node}\" cannot update labels through pod status"));
            }
            Ok(())
        }
        ("nodes", _) => {
            if name.as_deref() != Some(node) {
                return deny(format!("node \"{node}\" is not allowed to modify node \"{}\"", name.clone().unwrap_or_default()));
            }
            let labels = |v: Option<&Value>| v.and_then(|v| v["metadata"]["labels"].as_object().cloned()).unwrap_or_default();
            let (before, after) = (labels(old), labels(new));
            let mut forbidden: Vec<&String> = after
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(*v))
                .map(|(k, _)| k)
                .chain(before.keys().filter(|k| !after.contains_key(*k)))
                .filter(|k| !label_allowed(k))
                .collect();
            forbidden.sort();
            if !forbidden.is_empty() {
                let list: Vec<&str> = forbidden.iter().map(|k| k.as_str()).collect();
                return match old {
                    None => deny(format!("node \"{node}\" is not allowed to set the following labels: {}", list.join(", "))),
                    Some(_) => deny(format!("is not allowed to modify labels: {}", list.join(", "))),
                };
            }
            if old.is_some() && new.is_some() && old.map(|n| &n["spec"]["taints"]) != new.map(|n| &n["spec"]["taints"]) {
                return deny(format!("node \"{node}\" is not allowed to modify taints"));
            }
            Ok(())
        }
        ("leases", _) if a.verb == "create" && (name.as_deref() != Some(node) || a.namespace != "kube-node-lease") => {
            deny(format!("can only access node lease with the same name as the requesting node \"{node}\""))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_may_set_only_the_kubelets_labels_in_the_kubernetes_namespaces() {
        for ok in ["kubernetes.io/hostname", "node.kubernetes.io/instance-type", "kubelet.kubernetes.io/x", "lab", "labkubelet.io/simulated", "example.com/a"] {
            assert!(label_allowed(ok), "{ok}");
        }
        for refused in ["node-role.kubernetes.io/master", "node-restriction.kubernetes.io/x", "kubernetes.io/role", "k8s.io/x", "foo.k8s.io/x"] {
            assert!(!label_allowed(refused), "{refused}");
        }
    }
}
