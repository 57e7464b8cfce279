//! What labkubelet's integration tests share: the API-server double ([`apiserver`]), a plugin
//! lab (a plugin folder, a catalog and its events), pod and container builders, and
//! components made to be refused.

use labkubelet::clock::Clock;
use labkubelet::plugin::{PluginCatalog, PluginEngine, PluginEvent, PluginPolicy, PluginRuntime, PluginWatcher, SCENARIO_ANNOTATION, stock, watch_dir};
use labkubelet::runtime::{
    ContainerConfig, ContainerKind, ContainerMetadata, ContainerRuntime, ContainerSecurity, KeyValue, PodSandboxConfig, PodSandboxMetadata, RestartPolicy,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

pub mod apiserver;
pub mod pod_lab;

/// A plugin folder with a catalog over it, optionally watched.
pub struct PluginLab {
    pub dir: tempfile::TempDir,
    pub catalog: Arc<PluginCatalog>,
    pub events: broadcast::Receiver<PluginEvent>,
    watcher: Option<PluginWatcher>,
}

impl PluginLab {
    /// A lab whose folder is read only when [`PluginLab::sync`] is called.
    pub async fn new(policy: PluginPolicy) -> Self {
        PluginLab::with_engine(PluginEngine::new(policy).expect("plugin engine")).await
    }

    /// As [`PluginLab::new`], with the test binary's compiled components kept on disk between
    /// its labs, as an agent keeps them between runs: a test that makes many labs with the
    /// same plugin compiles it once.
    pub async fn cached(policy: PluginPolicy) -> Self {
        static COMPILED: std::sync::LazyLock<tempfile::TempDir> = std::sync::LazyLock::new(|| tempfile::tempdir().expect("temp dir"));
        PluginLab::with_engine(PluginEngine::with_compiled_cache(policy, COMPILED.path()).expect("plugin engine")).await
    }

    async fn with_engine(engine: Arc<PluginEngine>) -> Self {
        let catalog = PluginCatalog::new(engine).await.expect("catalog with the built-in default");
        let events = catalog.subscribe();
        PluginLab { dir: tempfile::tempdir().expect("temp dir"), catalog, events, watcher: None }
    }

    /// A lab whose folder is watched, as `labkubelet run` watches its plugin folder.
    pub async fn watched(policy: PluginPolicy) -> Self {
        let mut lab = PluginLab::new(policy).await;
        lab.watcher = Some(watch_dir(lab.catalog.clone(), lab.dir.path()).await.expect("watch the plugin folder"));
        lab
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Puts a stock plugin into the folder (by rename, as a careful user copies).
    pub fn install(&self, name: &str) -> PathBuf {
        stock::install(name, self.dir.path()).expect("install a stock plugin")
    }

    /// Puts bytes into the folder as `file`, by rename.
    pub fn put(&self, file: &str, bytes: &[u8]) {
        put(self.dir.path(), file, bytes)
    }

    pub async fn sync(&self) -> Vec<PluginEvent> {
        self.catalog.sync_dir(self.dir.path()).await
    }

    pub fn node(&self, name: &str) -> PluginRuntime {
        PluginRuntime::new(name, self.catalog.clone(), Clock::new())
    }

    /// Waits (real time) for the first event that `pred` accepts; earlier events are skipped.
    pub async fn expect_event(&mut self, what: &str, pred: impl Fn(&PluginEvent) -> bool) -> PluginEvent {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Ok(e)) if pred(&e) => return e,
                Ok(Ok(e)) => seen.push(e.to_string()),
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(e)) => panic!("event stream ended while waiting for {what}: {e}"),
                Err(_) => panic!("no {what} within 60 s; saw: {seen:#?}"),
            }
        }
    }
}

/// Polls `check` until it gives a value, for at most `within`; panics naming `what`.
pub async fn eventually<T>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A node as the tests register it: address 10.1.0.5, room for 110 pods.
pub fn node_identity(name: &str) -> labkubelet::node::register::NodeIdentity {
    labkubelet::node::register::NodeIdentity {
        name: name.into(),
        hostname: name.into(),
        node_ip: "10.1.0.5".into(),
        labels: Default::default(),
        taints: vec![],
        register_schedulable: true,
        capacity: [("pods".to_string(), "110".to_string())].into(),
        container_runtime_version: "labkubelet://0.1.0".into(),
        kubelet_version: "v1.33.0-labkubelet".into(),
        port: 10250,
        machine_id: "m".into(),
        boot_id: "b".into(),
    }
}

/// Writes a file by rename, so a watcher sees it whole.
pub fn put(dir: &Path, file: &str, bytes: &[u8]) {
    let partial = dir.join(format!(".{file}.partial"));
    std::fs::write(&partial, bytes).expect("write");
    std::fs::rename(&partial, dir.join(file)).expect("rename into place");
}

/// A component built by this workspace only for tests (`misbehave`).
pub fn test_component(name: &str) -> Vec<u8> {
    let path = Path::new(stock::BUILD_DIR).join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The same component with a custom section appended: it behaves the same, but its hash is
/// new, so the catalog sees a new version of the file.
pub fn with_custom_section(component: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"labkubelet-test";
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = component.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// A valid component of the labkubelet:runtime world at another WIT version.
pub fn component_for_wit_version(version: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit")).expect("read wit/") {
        let path = entry.expect("a wit/ entry").path();
        let wit = std::fs::read_to_string(&path).expect("read a wit file");
        let wit = wit.replace(&format!("labkubelet:runtime@{}", labkubelet::plugin::WIT_VERSION), &format!("labkubelet:runtime@{version}"));
        std::fs::write(dir.path().join(path.file_name().expect("a file name")), wit).expect("write a wit file");
    }
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(dir.path()).expect("parse wit");
    let world = resolve.select_world(&[package], Some("plugin")).expect("world");
    let mut module = wit_component::dummy_module(&resolve, world, wit_parser::ManglingAndAbi::Standard32);
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8).expect("embed");
    wit_component::ComponentEncoder::default().module(&module).expect("module").validate(true).encode().expect("encode")
}

fn pairs(kv: &[(&str, &str)]) -> Vec<KeyValue> {
    kv.iter().map(|(k, v)| KeyValue { key: k.to_string(), value: v.to_string() }).collect()
}

/// A pod sandbox config; `scenario` sets the `labkubelet.io/scenario` annotation.
pub fn pod(name: &str, scenario: Option<&str>, labels: &[(&str, &str)]) -> PodSandboxConfig {
    let annotations = scenario.map(|s| vec![(SCENARIO_ANNOTATION, s)]).unwrap_or_default();
    PodSandboxConfig {
        metadata: PodSandboxMetadata { name: name.into(), namespace: "default".into(), uid: format!("uid-{name}"), attempt: 0 },
        hostname: name.into(),
        labels: pairs(labels),
        annotations: pairs(&annotations),
        pod_ip: None,
    }
}

pub fn container(name: &str, image: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata { name: name.into(), attempt: 0 },
        kind: ContainerKind::Regular,
        restart_policy: RestartPolicy::Always,
        memory_limit_bytes: None,
        image: image.into(),
        command: vec![],
        args: vec![],
        env: vec![],
        labels: vec![],
        annotations: vec![],
        files: vec![],
        mounts: vec![],
        security: ContainerSecurity { run_as_user: None, run_as_group: None, read_only_root_filesystem: false, privileged: false, no_new_privileges: false },
        stdin: false,
        stdin_once: false,
        tty: false,
    }
}

/// Runs a pod with one container the way the kubelet does: sandbox, pull, create, start.
pub async fn start_pod(rt: &dyn ContainerRuntime, pod: &PodSandboxConfig, image: &str) -> (String, String) {
    let sandbox = rt.run_pod_sandbox(pod).await.expect("run sandbox");
    rt.pull_image(image, None, Some(pod)).await.expect("pull");
    let id = rt.create_container(&sandbox, &container("main", image)).await.expect("create");
    rt.start_container(&id).await.expect("start");
    (sandbox, id)
}

/// The agent's configuration for these nodes, everything under `dir`.
pub fn agent_config(dir: &std::path::Path, nodes: Vec<String>, bootstrap: std::path::PathBuf) -> labkubelet::agent::AgentConfig {
    labkubelet::agent::AgentConfig {
        nodes,
        kubeconfig: dir.join("kubelet.conf"),
        bootstrap_kubeconfig: Some(bootstrap),
        cert_dir: dir.join("pki"),
        root_dir: dir.to_path_buf(),
        node_ip: "10.1.0.5".into(),
        node_labels: Default::default(),
        taints: vec![],
        capacity: [("cpu", "100"), ("memory", "32Gi"), ("pods", "110"), ("ephemeral-storage", "100Gi")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        lease_duration_seconds: 4,
        api_throttle: Some(labkubelet::api_client::Throttle::KUBELET),
        event_throttle: Some(labkubelet::api_client::Throttle::KUBELET),
        status: labkubelet::node::status::StatusTimings { update: std::time::Duration::from_millis(500), ..labkubelet::node::status::StatusTimings::default() },
        standalone: false,
        address: std::net::Ipv4Addr::LOCALHOST.into(),
        port: 0,
        client_ca_file: None,
        started: None,
        static_pod_path: None,
        file_check_frequency: std::time::Duration::from_secs(20),
        manifest_url: None,
        http_check_frequency: std::time::Duration::from_secs(20),
        eviction: Default::default(),
        stop: Default::default(),
    }
}
