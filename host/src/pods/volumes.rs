//! The kubelet's volume manager for one pod (upstream's `pkg/kubelet/volumemanager` with the
//! `pkg/volume/{configmap,secret,downwardapi,projected,emptydir}` plugins): before the pod's
//! sandbox starts, each volume its containers mount is set up from the API's objects, and
//! the sync waits until every one is.
//!
//! As upstream shows it: a volume that fails to set up is retried with the operation
//! executor's back-off (500 ms doubling to 2 min 2 s), each failure a Warning `FailedMount`
//! event `MountVolume.SetUp failed for volume "config" : configmap "app-config" not found`;
//! after 2 min 3 s of waiting a `FailedMount` event `Unable to attach or mount volumes:
//! unmounted volumes=[…], unattached volumes=[…]: timed out waiting for the condition`, and
//! the wait begins again. A sync never blocks on it: it comes back at the next retry.
//! `optional` ConfigMaps and Secrets that do not exist are empty volumes.
//!
//! What is simulated: `emptyDir`, `hostPath`, PVC-backed and other volumes are empty folders
//! that set up at once (a hostPath of a file: the simulated node's file); a projected service
//! account token is a placeholder.

use super::api_objects::ApiObjects;
use super::downward::{Addresses, field_value, resource_value};
use crate::runtime::{ContainerFile, ContainerMount};
use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Pod, Secret, Volume};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use writable::{is_node_file, node_file, shared_volume};

/// The first retry of a failed set-up, doubling to [`RETRY_MAX`].
const RETRY: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(122);
/// How long a sync waits for the pod's volumes before saying so (`podAttachAndMountTimeout`).
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(123);
/// The mode of a projected file when the volume says none (the API's default, 0644).
const DEFAULT_MODE: i32 = 0o644;

/// One file of a volume, at its path inside the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub data: Vec<u8>,
    pub mode: i32,
}

/// What the volume manager needs besides the pod: the API's objects and what the downward
/// API reads.
#[derive(Clone, Copy)]
pub struct MountInputs<'a> {
    pub objects: &'a ApiObjects,
    /// The node's name, for the node's own files a hostPath may show.
    pub node: &'a str,
    pub addresses: Addresses<'a>,
    pub allocatable: &'a BTreeMap<String, String>,
}

/// One pod's volumes between syncs: which are set up (with their files as last set up), and
/// when each failed one is tried again.
#[derive(Debug, Default)]
pub struct Mounts {
    mounted: HashMap<String, Vec<File>>,
    /// A failed volume's next try (host-clock nanoseconds) and the delay after that.
    retry: HashMap<String, (i64, Duration)>,
    /// When the current wait began.
    waiting_since: Option<i64>,
}

/// Why a pod's volumes are not all set up: the Warning events to record, and when to look again.
#[derive(Debug, Default, PartialEq)]
pub struct NotMounted {
    pub events: Vec<String>,
    pub retry_at: i64,
}

impl Mounts {
    /// Sets up what is due and says whether every volume the pod's containers mount is set
    /// up, as `WaitForAttachAndMount` does. A volume already set up stays so when a later
    /// set-up fails (its files keep their last contents, as the kubelet's atomic writer
    /// keeps them).
    pub async fn wait_for_attach_and_mount(&mut self, pod: &Pod, inputs: MountInputs<'_>, now: i64) -> Result<(), NotMounted> {
        let Some(spec) = &pod.spec else { return Ok(()) };
        let expected = expected_volumes(pod);
        let mut not = NotMounted::default();
        for volume in spec.volumes.iter().flatten() {
            if self.retry.get(&volume.name).is_some_and(|(at, _)| now < *at) {
                continue;
            }
            match set_up(pod, volume, inputs).await {
                Ok(files) => {
                    self.mounted.insert(volume.name.clone(), files);
                    self.retry.remove(&volume.name);
                }
                Err(e) => {
                    not.events.push(format!("MountVolume.SetUp failed for volume \"{}\" : {e}", volume.name));
                    let delay = self.retry.get(&volume.name).map_or(RETRY, |(_, d)| *d);
                    self.retry.insert(volume.name.clone(), (now.saturating_add(nanos(delay)), (delay * 2).min(RETRY_MAX)));
                }
            }
        }
        let unmounted: Vec<&str> = expected.iter().copied().filter(|v| !self.mounted.contains_key(*v)).collect();
        if unmounted.is_empty() {
            self.waiting_since = None;
            return Ok(());
        }
        let since = *self.waiting_since.get_or_insert(now);
        let mut timeout = since.saturating_add(nanos(MOUNT_TIMEOUT));
        if now >= timeout {
            // Upstream's unattached list compares names of two kinds, so it names every volume.
            not.events.push(format!(
                "Unable to attach or mount volumes: unmounted volumes=[{}], unattached volumes=[{}]: timed out waiting for the condition",
                unmounted.join(" "),
                expected.join(" ")
            ));
            self.waiting_since = Some(now);
            timeout = now.saturating_add(nanos(MOUNT_TIMEOUT));
        }
        let next_retry = unmounted.iter().filter_map(|v| self.retry.get(*v)).map(|(at, _)| *at).min();
        not.retry_at = next_retry.map_or(timeout, |at| at.min(timeout));
        Err(not)
    }
}

impl Mounts {
    /// The files a container sees of its volumes, at their paths in the container. A `subPath`
    /// mount shows that file (or folder) of the volume at the mount path.
    pub fn container_files(&self, c: &Container) -> Vec<ContainerFile> {
        self.files(c, true)
    }

    /// The files a running container's volumes update: not those mounted through `subPath`,
    /// which the kubelet never updates.
    pub fn updatable_files(&self, c: &Container) -> Vec<ContainerFile> {
        self.files(c, false)
    }

    fn files(&self, c: &Container, with_sub_paths: bool) -> Vec<ContainerFile> {
        let mut out = Vec::new();
        for mount in c.volume_mounts.iter().flatten() {
            let Some(files) = self.mounted.get(&mount.name) else { continue };
            let sub = mount.sub_path.as_deref().filter(|p| !p.is_empty()).map(|p| p.trim_matches('/'));
            let by_expression = mount.sub_path_expr.as_deref().is_some_and(|e| !e.is_empty());
            if (sub.is_some() || by_expression) && !with_sub_paths {
                continue;
            }
            for f in files {
                let inside = match sub {
                    None => Some(f.path.as_str()),
                    Some(sub) if f.path == sub => Some(""),
                    Some(sub) => f.path.strip_prefix(sub).and_then(|rest| rest.strip_prefix('/')),
                };
                if let Some(inside) = inside {
                    let path = normalise(&format!("{}/{inside}", mount.mount_path));
                    out.push(ContainerFile { path, data: f.data.clone(), mode: u32::try_from(f.mode).unwrap_or(0o644) });
                }
            }
        }
        out
    }
}

/// The container's volume mounts as it sees the folders (`makeMounts`): ConfigMap, Secret,
/// downward API and projected volumes are read-only whatever the mount says, as their volume
/// plugins make them; an emptyDir's folder is 0777, a hostPath of the node's `/tmp` 01777.
/// `c` has its `subPathExpr`s expanded ([`with_sub_paths`]).
pub fn container_mounts(pod: &Pod, c: &Container) -> Vec<ContainerMount> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_deref()).unwrap_or_default();
    c.volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let v = volumes.iter().find(|v| v.name == m.name)?;
            if v.host_path.as_ref().is_some_and(is_node_file) {
                return None;
            }
            let api_files = v.config_map.is_some() || v.secret.is_some() || v.downward_api.is_some() || v.projected.is_some();
            let mode = match &v.host_path {
                Some(h) if normalise(&h.path) == "/tmp" => 0o1777,
                Some(_) => 0o755,
                None => 0o777,
            };
            let memory = v.empty_dir.as_ref().and_then(|e| e.medium.as_deref()) == Some("Memory") || v.secret.is_some();
            let sub_path = m.sub_path.as_deref().unwrap_or_default().trim_matches('/');
            let shared = (!api_files).then(|| shared_volume(pod, v, sub_path));
            Some(ContainerMount { path: normalise(&m.mount_path), mode, read_only: m.read_only == Some(true) || api_files, tmpfs: memory, shared })
        })
        .collect()
}

/// The container with each mount's `subPathExpr` expanded into its `subPath`, or why its
/// mounts cannot be made, in upstream's `makeMounts` words (`CreateContainerConfigError`):
/// an absolute path, a `..`, or a variable with no value.
pub fn with_sub_paths(c: &Container, env: &[(String, String)]) -> Result<Container, String> {
    let mut c = c.clone();
    for mount in c.volume_mounts.iter_mut().flatten() {
        if let Some(expr) = mount.sub_path_expr.take().filter(|e| !e.is_empty()) {
            let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
            let value = |name: &str| env.iter().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.as_str());
            let expanded = super::env::expand(&expr, |name| {
                let found = value(name);
                if found.is_none() {
                    missing.borrow_mut().insert(name.to_string());
                }
                Some(found.unwrap_or(""))
            });
            let missing = missing.into_inner();
            if !missing.is_empty() {
                return Err(format!("missing value for {}", missing.into_iter().collect::<Vec<_>>().join(", ")));
            }
            mount.sub_path = Some(expanded);
        }
        if let Some(sub) = mount.sub_path.as_deref().filter(|p| !p.is_empty()) {
            if sub.starts_with('/') {
                return Err(format!("error SubPath `{sub}` must not be an absolute path"));
            }
            if sub.split('/').any(|part| part == "..") {
                return Err(format!("unable to provision SubPath `{sub}`: must not contain '..'"));
            }
        }
    }
    Ok(c)
}

/// A path with `.`, `..` and repeated or trailing slashes resolved.
fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The volumes the pod's containers mount, in the order the pod declares them
/// (`GetPodVolumeNames`).
fn expected_volumes(pod: &Pod) -> Vec<&str> {
    let Some(spec) = &pod.spec else { return Vec::new() };
    let used: HashSet<&str> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| {
            let mounts = c.volume_mounts.iter().flatten().map(|m| m.name.as_str());
            mounts.chain(c.volume_devices.iter().flatten().map(|d| d.name.as_str()))
        })
        .collect();
    spec.volumes.iter().flatten().map(|v| v.name.as_str()).filter(|v| used.contains(v)).collect()
}

/// A volume's files, or why it cannot be set up, in the kubelet's words.
pub async fn set_up(pod: &Pod, volume: &Volume, inputs: MountInputs<'_>) -> Result<Vec<File>, String> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    if let Some(source) = &volume.config_map {
        let optional = source.optional == Some(true);
        return match inputs.objects.config_map(namespace, &source.name).await {
            Ok(cm) => config_map_payload(source.items.as_deref(), &cm, source.default_mode.unwrap_or(DEFAULT_MODE), optional),
            Err(e) if e.is_not_found() && optional => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        };
    }
    if let Some(source) = &volume.secret {
        let optional = source.optional == Some(true);
        let name = source.secret_name.as_deref().unwrap_or("");
        return match inputs.objects.secret(namespace, name).await {
            Ok(secret) => secret_payload(source.items.as_deref(), &secret, source.default_mode.unwrap_or(DEFAULT_MODE), optional),
            Err(e) if e.is_not_found() && optional => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        };
    }
    if let Some(source) = &volume.downward_api {
        return downward_payload(pod, source.items.as_deref().unwrap_or_default(), source.default_mode.unwrap_or(DEFAULT_MODE), inputs);
    }
    if let Some(source) = &volume.projected {
        return projected_payload(pod, source, inputs).await;
    }
    if let Some(data) = volume.host_path.as_ref().and_then(|h| node_file(h, inputs.node, inputs.addresses.host_ip)) {
        return Ok(vec![File { path: String::new(), data, mode: DEFAULT_MODE }]);
    }
    Ok(Vec::new())
}

/// Upstream's `configmap.MakePayload`: every key, or the `items` asked for.
fn config_map_payload(items: Option<&[KeyToPath]>, cm: &ConfigMap, mode: i32, optional: bool) -> Result<Vec<File>, String> {
    let text = cm.data.iter().flatten().map(|(k, v)| (k.as_str(), v.as_bytes()));
    let binary = cm.binary_data.iter().flatten().map(|(k, v)| (k.as_str(), v.0.as_slice()));
    let all: BTreeMap<&str, &[u8]> = text.chain(binary).collect();
    payload(items, &all, mode, optional, |key| format!("configmap references non-existent config key: {key}"))
}

/// Upstream's `secret.MakePayload`.
fn secret_payload(items: Option<&[KeyToPath]>, secret: &Secret, mode: i32, optional: bool) -> Result<Vec<File>, String> {
    let all: BTreeMap<&str, &[u8]> = secret.data.iter().flatten().map(|(k, v)| (k.as_str(), v.0.as_slice())).collect();
    payload(items, &all, mode, optional, |key| format!("references non-existent secret key: {key}"))
}

fn payload(items: Option<&[KeyToPath]>, all: &BTreeMap<&str, &[u8]>, mode: i32, optional: bool, missing: impl Fn(&str) -> String) -> Result<Vec<File>, String> {
    let Some(items) = items.filter(|i| !i.is_empty()) else {
        return Ok(all.iter().map(|(k, v)| File { path: (*k).to_string(), data: v.to_vec(), mode }).collect());
    };
    let mut files = Vec::new();
    for item in items {
        match all.get(item.key.as_str()) {
            Some(data) => files.push(File { path: item.path.clone(), data: data.to_vec(), mode: item.mode.unwrap_or(mode) }),
            None if optional => continue,
            None => return Err(missing(&item.key)),
        }
    }
    Ok(files)
}

/// Upstream's `downwardapi.CollectData`: each item's field or resource value.
fn downward_payload(pod: &Pod, items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile], mode: i32, inputs: MountInputs) -> Result<Vec<File>, String> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for item in items {
        let value = if let Some(field) = &item.field_ref {
            field_value(pod, field, inputs.addresses)
        } else if let Some(resource) = &item.resource_field_ref {
            let asking = pod.spec.as_ref().and_then(|s| s.containers.first()).cloned().unwrap_or_default();
            resource_value(pod, &asking, resource, inputs.allocatable)
        } else {
            continue;
        };
        match value {
            Ok(v) => files.push(File { path: item.path.clone(), data: v.into_bytes(), mode: item.mode.unwrap_or(mode) }),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(files) } else { Err(aggregate(&errors)) }
}

/// Upstream's `projected` volume: its sources' files together; their errors aggregated.
async fn projected_payload(pod: &Pod, source: &k8s_openapi::api::core::v1::ProjectedVolumeSource, inputs: MountInputs<'_>) -> Result<Vec<File>, String> {
    let mode = source.default_mode.unwrap_or(DEFAULT_MODE);
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let (mut files, mut errors) = (Vec::new(), Vec::new());
    for projection in source.sources.iter().flatten() {
        let got = if let Some(cm) = &projection.config_map {
            let optional = cm.optional == Some(true);
            match inputs.objects.config_map(namespace, &cm.name).await {
                Ok(found) => config_map_payload(cm.items.as_deref(), &found, mode, optional),
                Err(e) if e.is_not_found() && optional => Ok(Vec::new()),
                Err(e) => Err(e.to_string()),
            }
        } else if let Some(s) = &projection.secret {
            let optional = s.optional == Some(true);
            match inputs.objects.secret(namespace, &s.name).await {
                Ok(found) => secret_payload(s.items.as_deref(), &found, mode, optional),
                Err(e) if e.is_not_found() && optional => Ok(Vec::new()),
                Err(e) => Err(e.to_string()),
            }
        } else if let Some(d) = &projection.downward_api {
            downward_payload(pod, d.items.as_deref().unwrap_or_default(), mode, inputs)
        } else if let Some(token) = &projection.service_account_token {
            Ok(vec![File { path: token.path.clone(), data: b"labkubelet-simulated-service-account-token".to_vec(), mode }])
        } else {
            Ok(Vec::new())
        };
        match got {
            Ok(more) => files.extend(more),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(files) } else { Err(aggregate(&errors)) }
}

/// Errors as apimachinery's `NewAggregate` prints them: one alone, several as `[a, b]`.
fn aggregate(errors: &[String]) -> String {
    match errors {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

mod writable;

#[cfg(test)]
mod tests;
