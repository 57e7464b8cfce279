//! What the cluster's DNS would answer a pod's container, from the Services this node watches
//! for the service link variables ([`super::api_objects`]). Answering names is not the
//! kubelet's job but the cluster DNS's (CoreDNS's `kubernetes` plugin); a lab node has none
//! to reach, so its containers ask this instead, through the plugin's `resolve-name` import
//! (`nslookup myservice` in kubernetes.io's init container example waits until the Service
//! exists).
//!
//! It answers A records as CoreDNS does for fully qualified names (the container's resolver
//! applies `/etc/resolv.conf`'s search domains): `SERVICE.NAMESPACE.svc.cluster.local`, a
//! Service's cluster IPs; `A-B-C-D.NAMESPACE.pod.cluster.local`, that address (CoreDNS's
//! `pods insecure`). A headless or `ExternalName` Service has no address here: its answers
//! come from Endpoints and CNAMEs, which a lab node does not read.

use k8s_openapi::api::core::v1::Service;
use kube::runtime::reflector::{ObjectRef, Store};
use std::sync::{Arc, OnceLock};

/// The cluster's domain, as the kubelet's `clusterDomain` is on every kind and kubeadm cluster.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// One node's view of the cluster DNS: empty until the node watches Services (on a
/// standalone node, for ever), then what the watch holds. Clones share the view.
#[derive(Clone, Default)]
pub struct ClusterDns {
    services: Arc<OnceLock<Store<Service>>>,
}

impl ClusterDns {
    /// Answers from `services` from now on: the node's Service watch, once it began.
    pub fn answer_from(&self, services: Store<Service>) {
        // One watch per node: a second is the same Services, and the first keeps answering.
        if self.services.set(services).is_err() {
            tracing::debug!("the cluster DNS already answers from a Service watch");
        }
    }

    /// The addresses of fully qualified `name`, none when the cluster does not know it.
    pub fn resolve(&self, name: &str) -> Vec<String> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let Some(labels) = name.strip_suffix(CLUSTER_DOMAIN).and_then(|n| n.strip_suffix('.')) else { return Vec::new() };
        match labels.split('.').collect::<Vec<_>>()[..] {
            [service, namespace, "svc"] => {
                let found = self.services.get().and_then(|store| store.get(&ObjectRef::new(service).within(namespace)));
                found.map_or_else(Vec::new, |s| cluster_ips(&s))
            }
            [address, _namespace, "pod"] => {
                let dotted = address.replace('-', ".");
                dotted.parse::<std::net::Ipv4Addr>().map_or_else(|_| Vec::new(), |ip| vec![ip.to_string()])
            }
            _ => Vec::new(),
        }
    }
}

impl std::fmt::Debug for ClusterDns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterDns").field("watching", &self.services.get().is_some()).finish()
    }
}

/// A Service's cluster IPs; none for a headless one (`None`) or an `ExternalName`.
fn cluster_ips(service: &Service) -> Vec<String> {
    let Some(spec) = &service.spec else { return Vec::new() };
    let ips = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.clone(),
        _ => spec.cluster_ip.iter().cloned().collect(),
    };
    ips.into_iter().filter(|ip| ip.parse::<std::net::IpAddr>().is_ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ServiceSpec;
    use kube::api::ObjectMeta;
    use kube::runtime::watcher::Event;

    fn service(namespace: &str, name: &str, cluster_ip: &str) -> Service {
        Service {
            metadata: ObjectMeta { namespace: Some(namespace.into()), name: Some(name.into()), ..Default::default() },
            spec: Some(ServiceSpec { cluster_ip: Some(cluster_ip.into()), ..Default::default() }),
            ..Default::default()
        }
    }

    fn watching(services: Vec<Service>) -> ClusterDns {
        let (store, mut writer) = kube::runtime::reflector::store();
        writer.apply_watcher_event(&Event::Init);
        for s in services {
            writer.apply_watcher_event(&Event::InitApply(s));
        }
        writer.apply_watcher_event(&Event::InitDone);
        let dns = ClusterDns::default();
        dns.answer_from(store);
        dns
    }

    #[test]
    fn a_service_name_in_its_namespace_gives_its_cluster_ip() {
        let dns = watching(vec![service("shop", "db", "10.96.4.7"), service("default", "kubernetes", "10.96.0.1"), service("shop", "peers", "None")]);
        assert_eq!(dns.resolve("db.shop.svc.cluster.local"), ["10.96.4.7"]);
        assert_eq!(dns.resolve("DB.Shop.svc.cluster.local."), ["10.96.4.7"], "names are case-blind, a root dot is allowed");
        assert_eq!(dns.resolve("kubernetes.default.svc.cluster.local"), ["10.96.0.1"]);
        assert!(dns.resolve("db.default.svc.cluster.local").is_empty(), "another namespace's Service");
        assert!(dns.resolve("peers.shop.svc.cluster.local").is_empty(), "a headless Service's answers are its endpoints'");
        assert!(dns.resolve("db.shop.svc").is_empty(), "not fully qualified: the resolver's search domains do that");
        assert!(dns.resolve("example.com").is_empty());
    }

    #[test]
    fn a_pod_name_is_its_dashed_address_and_nothing_answers_before_the_watch() {
        let dns = ClusterDns::default();
        assert!(dns.resolve("db.shop.svc.cluster.local").is_empty());
        assert_eq!(dns.resolve("10-244-1-7.shop.pod.cluster.local"), ["10.244.1.7"]);
        assert!(dns.resolve("10-244-1.shop.pod.cluster.local").is_empty());
    }
}
