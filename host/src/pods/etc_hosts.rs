//! The kubelet-managed `/etc/hosts` of a pod's containers, as upstream's `makeHostsMount`
//! (`kubelet_pods.go`) writes it: the pod's own name and IP after the usual localhost lines,
//! then `hostAliases`; a `hostNetwork` pod gets the node's hosts file under a header of its
//! own. A container that mounts a volume at `/etc/hosts` sees that volume instead, and a pod
//! without an IP gets none (the image's file stays).

use super::dns::CLUSTER_DOMAIN;
use crate::runtime::ContainerFile;
use k8s_openapi::api::core::v1::{Container, Pod};

const MANAGED_HEADER: &str = "# Kubernetes-managed hosts file.\n";
const HOST_NETWORK_HEADER: &str = "# Kubernetes-managed hosts file (host network).\n";

/// The pod's hostname (`spec.hostname`, else its name, cut to 63 characters as
/// `truncatePodHostnameIfNeeded` does) and its domain when it has a `subdomain`.
pub fn hostname_and_domain(pod: &Pod) -> (String, Option<String>) {
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut hostname = spec.and_then(|s| s.hostname.clone()).filter(|h| !h.is_empty()).unwrap_or(name);
    if hostname.len() > 63 {
        hostname.truncate(63);
        hostname = hostname.trim_end_matches(['-', '.']).to_string();
    }
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let domain = spec.and_then(|s| s.subdomain.as_deref()).filter(|d| !d.is_empty()).map(|sub| format!("{sub}.{namespace}.svc.{CLUSTER_DOMAIN}"));
    (hostname, domain)
}

/// The `/etc/hosts` the kubelet mounts into `container`, if it mounts one. `node_hosts` is
/// the node's own hosts file, which a `hostNetwork` pod sees.
pub fn hosts_file(pod: &Pod, container: &Container, pod_ip: &str, node_hosts: &str) -> Option<ContainerFile> {
    if pod_ip.is_empty() || container.volume_mounts.iter().flatten().any(|m| m.mount_path.trim_end_matches('/') == "/etc/hosts") {
        return None;
    }
    let spec = pod.spec.as_ref();
    let mut text = if spec.and_then(|s| s.host_network) == Some(true) {
        format!("{HOST_NETWORK_HEADER}{node_hosts}")
    } else {
        let (hostname, domain) = hostname_and_domain(pod);
        let own = match domain {
            Some(domain) => format!("{pod_ip}\t{hostname}.{domain}\t{hostname}\n"),
            None => format!("{pod_ip}\t{hostname}\n"),
        };
        format!(
            "{MANAGED_HEADER}127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{own}"
        )
    };
    let aliases = spec.and_then(|s| s.host_aliases.as_deref()).unwrap_or_default();
    if !aliases.is_empty() {
        text.push_str("\n# Entries added by HostAliases.\n");
        for alias in aliases {
            text.push_str(&format!("{}\t{}\n", alias.ip, alias.hostnames.as_deref().unwrap_or_default().join("\t")));
        }
    }
    Some(ContainerFile { path: "/etc/hosts".into(), data: text.into_bytes(), mode: 0o644 })
}

/// The hosts file of a simulated node: localhost and the node's own name.
pub fn node_hosts(node: &str, node_ip: &str) -> String {
    format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{node_ip}\t{node}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": spec})).expect("a pod")
    }

    fn hosts(pod: &Pod, ip: &str) -> Option<String> {
        let c = pod.spec.as_ref().and_then(|s| s.containers.first()).cloned().unwrap_or_default();
        hosts_file(pod, &c, ip, &node_hosts("node-1", "10.0.0.5")).map(|f| String::from_utf8_lossy(&f.data).into_owned())
    }

    #[test]
    fn the_managed_file_names_the_pod_then_its_host_aliases() {
        let p = pod(json!({"containers": [{"name": "c"}], "hostAliases": [{"ip": "123.45.67.89", "hostnames": ["foo", "bar"]}]}));
        assert_eq!(
            hosts(&p, "10.244.0.7").as_deref(),
            Some(concat!(
                "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
                "fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n10.244.0.7\tweb\n",
                "\n# Entries added by HostAliases.\n123.45.67.89\tfoo\tbar\n"
            ))
        );
    }

    #[test]
    fn a_subdomain_adds_the_fqdn_host_network_gets_the_nodes_file_a_mount_or_no_ip_none() {
        let p = pod(json!({"containers": [{"name": "c"}], "hostname": "db-0", "subdomain": "db"}));
        assert!(hosts(&p, "10.244.0.7").expect("managed").ends_with("10.244.0.7\tdb-0.db.shop.svc.cluster.local\tdb-0\n"));
        let p = pod(json!({"containers": [{"name": "c"}], "hostNetwork": true}));
        assert_eq!(
            hosts(&p, "10.0.0.5").as_deref(),
            Some("# Kubernetes-managed hosts file (host network).\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.0.0.5\tnode-1\n")
        );
        let p = pod(json!({"containers": [{"name": "c", "volumeMounts": [{"name": "h", "mountPath": "/etc/hosts"}]}]}));
        assert_eq!(hosts(&p, "10.244.0.7"), None);
        assert_eq!(hosts(&pod(json!({"containers": [{"name": "c"}]})), ""), None);
    }

    #[test]
    fn a_long_hostname_is_cut_to_63_without_a_trailing_dash() {
        let long = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        let p: Pod = serde_json::from_value(json!({"metadata": {"name": long}, "spec": {"containers": []}})).expect("a pod");
        assert_eq!(hostname_and_domain(&p).0, "a".repeat(62));
    }
}
