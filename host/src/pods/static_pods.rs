//! Static pods: the file source (upstream pkg/kubelet/config/file.go and common.go) and
//! the mirror pods that show them in the API (pkg/kubelet/pod/mirror_client.go).
//!
//! The source reads a manifest file, or every manifest in a folder (YAML or JSON, one Pod
//! each; dotfiles ignored; no recursion), every fileCheckFrequency (20 s) and when the
//! folder changes. A manifest that cannot be read is reported with its file and line; the
//! other manifests still load, and the pod it last described keeps running rather than
//! being killed by a half-saved edit.

use super::manager::{CONFIG_MIRROR_ANNOTATION, CONFIG_SOURCE_ANNOTATION, PodManager};
use crate::clock::Clock;
use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, PostParams};
use notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The annotation that holds a static pod's uid, the hash of its manifest.
pub const CONFIG_HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
pub const CONFIG_SEEN_ANNOTATION: &str = "kubernetes.io/config.seen";
/// fileCheckFrequency's default.
pub const FILE_CHECK_FREQUENCY: Duration = Duration::from_secs(20);

/// A manifest that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {detail}")]
pub struct ManifestError {
    pub file: String,
    pub detail: String,
}

/// Where a static pod's manifest comes from.
#[derive(Debug, Clone, Copy)]
pub enum ManifestSource<'a> {
    File(&'a Path),
    Url(&'a str),
}

/// A static pod as the kubelet defaults it: named `<name>-<node>`, namespace `default` when
/// empty, bound to the node, uid from a hash of the manifest and its source, with the
/// config annotations; a file's pods also tolerate every NoExecute taint.
pub fn static_pod(mut pod: Pod, node: &str, source: ManifestSource) -> Pod {
    use sha2::{Digest, Sha256};
    let manifest = serde_json::to_string(&pod).unwrap_or_default();
    let (origin, kind) = match source {
        ManifestSource::File(file) => (format!("host:{node}file:{}", file.display()), "file"),
        ManifestSource::Url(url) => (format!("url:{url}"), "http"),
    };
    let digest = Sha256::digest(format!("{manifest}{origin}").as_bytes());
    let uid: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    let name = pod.metadata.name.clone().unwrap_or_default();
    pod.metadata.name = Some(format!("{name}-{}", node.to_lowercase()));
    if pod.metadata.namespace.as_deref().is_none_or(str::is_empty) {
        pod.metadata.namespace = Some("default".into());
    }
    pod.metadata.uid = Some(uid.clone());
    let annotations = pod.metadata.annotations.get_or_insert_with(Default::default);
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), uid);
    annotations.insert(CONFIG_SOURCE_ANNOTATION.into(), kind.into());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.into());
    if kind != "file" {
        return pod;
    }
    let tolerate = Toleration { operator: Some("Exists".into()), effect: Some("NoExecute".into()), ..Default::default() };
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    if !tolerations.contains(&tolerate) {
        tolerations.push(tolerate);
    }
    pod
}

/// When each static pod was first seen, for its `kubernetes.io/config.seen` annotation: a
/// source reads its manifests again and again, and the time must not move with each read.
pub struct FirstSeen {
    clock: Clock,
    /// By uid; only the pods of the last read.
    at: HashMap<String, String>,
}

impl FirstSeen {
    pub fn new(clock: Clock) -> Self {
        FirstSeen { clock, at: HashMap::new() }
    }

    /// Stamps each pod of a read with the time its uid was first seen.
    pub fn stamp(&mut self, pods: &mut [Pod]) {
        let now = crate::pods::status::time(self.clock.now_nanos()).map(|t| t.0.to_string()).unwrap_or_default();
        let mut at = HashMap::with_capacity(pods.len());
        for pod in pods {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let seen = self.at.remove(&uid).unwrap_or_else(|| now.clone());
            pod.metadata.annotations.get_or_insert_with(Default::default).insert(CONFIG_SEEN_ANNOTATION.into(), seen.clone());
            at.insert(uid, seen);
        }
        self.at = at;
    }
}

/// The manifest files under `path`: the file itself, or the folder's files that are not
/// dotfiles, in name order.
fn manifest_files(path: &Path) -> Result<Vec<PathBuf>, ManifestError> {
    let fail = |e: std::io::Error| ManifestError { file: path.display().to_string(), detail: e.to_string() };
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(fail)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect();
    files.sort();
    Ok(files)
}

/// The pods of a manifest text: one Pod, or a PodList / List of Pods (YAML or JSON).
/// Unknown fields are ignored, as the kubelet ignores fields newer than itself.
pub fn parse_pods(text: &str) -> Result<Vec<Pod>, String> {
    let value: serde_json::Value = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
    let items = match value.get("kind").and_then(|k| k.as_str()) {
        Some("PodList" | "List") => value.get("items").and_then(|i| i.as_array()).cloned().unwrap_or_default(),
        None | Some("Pod") => vec![value],
        Some(other) => return Err(format!("kind {other} is not a Pod or a PodList")),
    };
    let mut pods = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let pod: Pod = serde_json::from_value(item).map_err(|e| format!("pod {i}: {e}"))?;
        if pod.metadata.name.as_deref().is_none_or(str::is_empty) {
            return Err(format!("pod {i}: metadata.name is required"));
        }
        if pod.spec.as_ref().is_none_or(|s| s.containers.is_empty()) {
            return Err(format!("pod {i}: spec.containers must list at least one container"));
        }
        pods.push(pod);
    }
    Ok(pods)
}

/// Reads one manifest: a Pod in YAML or JSON. Unknown fields are ignored, as the kubelet
/// ignores fields newer than itself.
pub fn read_manifest(file: &Path) -> Result<Pod, ManifestError> {
    let fail = |detail: String| ManifestError { file: file.display().to_string(), detail };
    let text = std::fs::read_to_string(file).map_err(|e| fail(e.to_string()))?;
    let value: serde_json::Value = serde_yaml_ng::from_str(&text).map_err(|e| fail(e.to_string()))?;
    if value.get("kind").and_then(|k| k.as_str()).is_some_and(|k| k != "Pod") {
        return Err(fail(format!("kind {} is not a Pod: a static pod manifest holds one Pod", value["kind"])));
    }
    let pod: Pod = serde_json::from_value(value).map_err(|e| fail(e.to_string()))?;
    if pod.metadata.name.as_deref().is_none_or(str::is_empty) {
        return Err(fail("metadata.name is required".into()));
    }
    if pod.spec.as_ref().is_none_or(|s| s.containers.is_empty()) {
        return Err(fail("spec.containers must list at least one container".into()));
    }
    Ok(pod)
}

/// The file source of one node.
pub struct FileSource {
    path: PathBuf,
    node: String,
    clock: Clock,
    /// The last good pod of each file, kept while the file cannot be read.
    last_good: HashMap<PathBuf, Pod>,
    seen: FirstSeen,
    /// The errors already reported, so a broken file is reported once, not every 20 s.
    reported: HashMap<PathBuf, String>,
}

impl FileSource {
    pub fn new(path: &Path, node: &str, clock: Clock) -> Self {
        FileSource { path: path.to_path_buf(), node: node.into(), clock, last_good: HashMap::new(), seen: FirstSeen::new(clock), reported: HashMap::new() }
    }

    /// Reads every manifest; returns the static pods and the errors met on the way.
    pub fn read(&mut self) -> (Vec<Pod>, Vec<ManifestError>) {
        let mut errors = Vec::new();
        let files = match manifest_files(&self.path) {
            Ok(files) => files,
            Err(e) => return (Vec::new(), vec![e]),
        };
        self.last_good.retain(|f, _| files.contains(f));
        let mut pods = Vec::new();
        for file in files {
            let manifest = match read_manifest(&file) {
                Ok(pod) => {
                    self.reported.remove(&file);
                    self.last_good.insert(file.clone(), pod.clone());
                    pod
                }
                Err(e) => {
                    errors.push(e);
                    match self.last_good.get(&file) {
                        Some(pod) => pod.clone(),
                        None => continue,
                    }
                }
            };
            pods.push(static_pod(manifest, &self.node, ManifestSource::File(&file)));
        }
        self.seen.stamp(&mut pods);
        (pods, errors)
    }

    /// Feeds the manager until the future is dropped: at start, every period, and soon
    /// after the folder changes.
    pub async fn run(mut self, manager: Arc<PodManager>, period: Duration) {
        let (tx, mut changed) = tokio::sync::mpsc::unbounded_channel::<()>();
        let watched = if self.path.is_dir() { self.path.clone() } else { self.path.parent().map(Path::to_path_buf).unwrap_or_default() };
        let debouncer = new_debouncer(Duration::from_millis(100), None, move |result: DebounceEventResult| {
            if let Ok(events) = result
                && events.iter().any(|e| !matches!(e.kind, EventKind::Access(_)))
            {
                let _ = tx.send(());
            }
        });
        // Without a watch, the periodic read still finds every change.
        let _debouncer = match debouncer {
            Ok(mut d) => match d.watch(&watched, RecursiveMode::NonRecursive) {
                Ok(()) => Some(d),
                Err(e) => {
                    tracing::warn!(path = %watched.display(), "cannot watch the static pod path ({e}); reading it every {period:?}");
                    None
                }
            },
            Err(e) => {
                tracing::warn!("cannot watch the static pod path ({e}); reading it every {period:?}");
                None
            }
        };
        loop {
            let (pods, errors) = self.read();
            for e in errors {
                if self.reported.get(Path::new(&e.file)) != Some(&e.detail) {
                    tracing::error!(node = %self.node, "static pod manifest not loaded: {e}");
                    self.reported.insert(PathBuf::from(&e.file), e.detail.clone());
                }
            }
            manager.replace("file", pods);
            tokio::select! {
                _ = changed.recv() => while changed.try_recv().is_ok() {},
                _ = self.clock.sleep(period) => {}
            }
        }
    }
}

/// A static pod's mirror in the API: a copy with the mirror annotation, owned by the Node.
pub async fn create_mirror(client: &kube::Client, node: &str, pod: &Pod) -> Result<(), kube::Error> {
    let node_uid = Api::<Node>::all(client.clone()).get(node).await?.metadata.uid.unwrap_or_default();
    let mut mirror = pod.clone();
    let hash = pod.metadata.uid.clone().unwrap_or_default();
    mirror.metadata.uid = None;
    mirror.metadata.resource_version = None;
    mirror.status = None;
    mirror.metadata.annotations.get_or_insert_with(Default::default).insert(CONFIG_MIRROR_ANNOTATION.into(), hash);
    mirror.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.into(),
        uid: node_uid,
        controller: Some(true),
        ..Default::default()
    }]);
    let pods: Api<Pod> = Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
    match pods.create(&PostParams::default(), &mirror).await {
        Ok(_) => Ok(()),
        // Another copy is there; the next sync sees whether it mirrors this manifest.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_pods_are_defaulted_as_the_kubelet_does() {
        let pod: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}})).unwrap();
        let a = static_pod(pod.clone(), "Node-1", ManifestSource::File(Path::new("/etc/manifests/web.yaml")));
        assert_eq!(a.metadata.name.as_deref(), Some("web-node-1"));
        assert_eq!(a.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(a.spec.as_ref().unwrap().node_name.as_deref(), Some("Node-1"));
        let annotations = a.metadata.annotations.clone().unwrap();
        assert_eq!(annotations[CONFIG_SOURCE_ANNOTATION], "file");
        assert_eq!(Some(&annotations[CONFIG_HASH_ANNOTATION]), a.metadata.uid.as_ref());
        let toleration = &a.spec.as_ref().unwrap().tolerations.as_ref().unwrap()[0];
        assert_eq!((toleration.operator.as_deref(), toleration.effect.as_deref()), (Some("Exists"), Some("NoExecute")));
        let b = static_pod(pod.clone(), "Node-1", ManifestSource::File(Path::new("/etc/manifests/other.yaml")));
        assert_ne!(a.metadata.uid, b.metadata.uid, "the file is part of the hash");
        assert_eq!(
            a.metadata.uid,
            static_pod(pod.clone(), "Node-1", ManifestSource::File(Path::new("/etc/manifests/web.yaml"))).metadata.uid,
            "the hash is stable"
        );
        let url = static_pod(pod, "Node-1", ManifestSource::Url("http://lab/pods"));
        assert_eq!(url.metadata.annotations.unwrap()[CONFIG_SOURCE_ANNOTATION], "http");
        assert!(url.spec.unwrap().tolerations.is_none(), "only a file's pods get the NoExecute toleration");
    }

    #[test]
    fn a_broken_manifest_names_its_file_and_line_and_keeps_its_last_good_pod() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("web.yaml"), "metadata: {name: web}\nspec:\n  containers: [{name: c, image: nginx}]\n").unwrap();
        std::fs::write(
            dir.path().join("db.json"),
            "{\"metadata\": {\"name\": \"db\"}, \"spec\": {\"containers\": [{\"name\": \"c\", \"image\": \"postgres\", \"newerField\": 1}]}}",
        )
        .unwrap();
        std::fs::write(dir.path().join(".swap"), "not a pod").unwrap();
        let mut source = FileSource::new(dir.path(), "n", Clock::new());
        let (pods, errors) = source.read();
        assert!(errors.is_empty(), "{errors:?}");
        let mut names: Vec<_> = pods.iter().filter_map(|p| p.metadata.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["db-n", "web-n"]);

        std::fs::write(dir.path().join("web.yaml"), "metadata: {name: web}\nspec:\n  containers: [{name: c, image: nginx}\n").unwrap();
        std::fs::write(dir.path().join("bad.yaml"), "kind: Service\nmetadata: {name: x}\n").unwrap();
        let (pods, errors) = source.read();
        assert_eq!(pods.len(), 2, "the broken file's last good pod stays");
        let web = errors.iter().find(|e| e.file.ends_with("web.yaml")).unwrap();
        assert!(web.detail.contains("line"), "{web}");
        let bad = errors.iter().find(|e| e.file.ends_with("bad.yaml")).unwrap();
        assert!(bad.detail.contains("is not a Pod"), "{bad}");
    }
}
