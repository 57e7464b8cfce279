//! The volumes containers write to (an emptyDir, a hostPath, a claim): which volume a mount
//! shows, so the runtime lets the containers that mount it share what they write, and a
//! hostPath that is one of the node's files.

use super::normalise;
use crate::runtime::SharedVolume;
use k8s_openapi::api::core::v1::{HostPathVolumeSource, Pod, Volume};

/// Which volume a writable mount shows: a hostPath is the node's folder and a claim its
/// volume, whatever pod mounts them; anything else (an emptyDir) is the pod's own.
pub(super) fn shared_volume(pod: &Pod, v: &Volume, sub_path: &str) -> SharedVolume {
    let (name, outlives_pod) = match (&v.host_path, &v.persistent_volume_claim) {
        (Some(h), _) => (format!("hostpath:{}", normalise(&h.path)), true),
        (None, Some(claim)) => (format!("pvc:{}/{}", pod.metadata.namespace.as_deref().unwrap_or("default"), claim.claim_name), true),
        (None, None) => (format!("pod:{}/{}", pod.metadata.uid.as_deref().unwrap_or_default(), v.name), false),
    };
    SharedVolume { name, sub_path: sub_path.to_string(), outlives_pod }
}

/// Whether a hostPath is one of the node's files (type `File` or `FileOrCreate`, or the
/// node's `/etc/hosts` and `/etc/hostname`): a container sees it as a file at its mount
/// path, never a folder.
pub(super) fn is_node_file(source: &HostPathVolumeSource) -> bool {
    matches!(source.type_.as_deref(), Some("File" | "FileOrCreate")) || matches!(normalise(&source.path).as_str(), "/etc/hosts" | "/etc/hostname")
}

/// What a hostPath that [`is_node_file`] holds: the simulated node's hosts file and name;
/// any other file is empty, as `FileOrCreate` makes it.
pub(super) fn node_file(source: &HostPathVolumeSource, node: &str, node_ip: &str) -> Option<Vec<u8>> {
    if !is_node_file(source) {
        return None;
    }
    Some(match normalise(&source.path).as_str() {
        "/etc/hosts" => crate::pods::etc_hosts::node_hosts(node, node_ip).into_bytes(),
        "/etc/hostname" => format!("{node}\n").into_bytes(),
        _ => Vec::new(),
    })
}
