//! What the end-to-end tests share: the control plane they run against, the agent as a user
//! runs it (the `labkubelet` binary), and waits with deadlines.

use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod};
use kube::api::{Api, ListParams};
use labkubelet_control_plane::process::Process;
use labkubelet_control_plane::{BootstrapToken, ControlPlane};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_labkubelet");

/// The suite's control plane, set up as the test binary's `settings()` says.
pub(crate) fn cluster() -> &'static ControlPlane {
    ControlPlane::shared_with(crate::settings())
}

/// One `labkubelet run` node, joined with a bootstrap token, stopped and started like a
/// user does (Ctrl-C, then the same command).
pub(crate) struct Agent {
    pub node: String,
    pub root: tempfile::TempDir,
    pub token: BootstrapToken,
    /// More `labkubelet run` flags.
    pub flags: Vec<String>,
    process: Option<Process>,
    runs: usize,
    /// When the current run started: a Ready condition older than that is the last run's.
    started: k8s_openapi::jiff::Timestamp,
}

impl Agent {
    /// A node named `node`, labelled `e2e=<node>`, with an empty plugin folder and static pod
    /// folder under its root dir. Not started.
    pub(crate) async fn new(node: &str) -> Agent {
        let token = cluster().bootstrap_token().await.expect("a bootstrap token");
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(root.path().join("plugins")).expect("plugin folder");
        std::fs::create_dir_all(root.path().join("manifests")).expect("manifest folder");
        Agent { node: node.to_string(), root, token, flags: Vec::new(), process: None, runs: 0, started: k8s_openapi::jiff::Timestamp::now() }
    }

    /// Runs the agent with an `evictionPressureTransitionPeriod` of 15 s (the kubelet's is
    /// 5 min), so a test sees a pressure condition end.
    pub(crate) fn short_pressure_transition(&mut self) {
        let config = self.root.path().join("kubelet.yaml");
        std::fs::write(&config, "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nevictionPressureTransitionPeriod: 15s\n")
            .expect("write the config");
        self.flags = vec!["--config".into(), config.display().to_string()];
    }

    pub(crate) fn plugins(&self) -> PathBuf {
        self.root.path().join("plugins")
    }

    pub(crate) fn manifests(&self) -> PathBuf {
        self.root.path().join("manifests")
    }

    /// The user the node's requests are made as.
    pub(crate) fn user(&self) -> String {
        format!("system:node:{}", self.node)
    }

    /// Runs docs/lab.md's command for joining a cluster.
    pub(crate) fn start(&mut self) {
        assert!(self.process.is_none(), "{} is running already", self.node);
        self.runs += 1;
        self.started = k8s_openapi::jiff::Timestamp::now();
        let mut run = Command::new(BIN);
        run.arg("run")
            .arg("--bootstrap-kubeconfig")
            .arg(&self.token.kubeconfig)
            .arg("--root-dir")
            .arg(self.root.path())
            .args(["--hostname-override", &self.node, "--node-ip", "127.0.0.1", "--node-labels", &format!("e2e={}", self.node)])
            .arg("--plugin-dir")
            .arg(self.plugins())
            .arg("--pod-manifest-path")
            .arg(self.manifests())
            .args(["--port", "0", "--healthz-port", "0"])
            .args(&self.flags)
            .env("RUST_LOG", "info,kube=warn,hyper=warn")
            .env("NO_COLOR", "1")
            .env_remove("KUBECONFIG");
        let log = self.log();
        self.process = Some(Process::spawn(&self.node, run, &log).expect("start labkubelet run"));
    }

    /// Ctrl-C.
    pub(crate) fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.interrupt(Duration::from_secs(10));
        }
    }

    /// The current run's log: in the control plane's folder, so it outlives a failed test.
    pub(crate) fn log(&self) -> PathBuf {
        cluster().dir.join(format!("agent-{}-{}.log", self.node, self.runs))
    }

    /// The end of the current run's log, for failure messages.
    pub(crate) fn log_tail(&self) -> String {
        labkubelet_control_plane::process::log_tail(&self.log(), 40)
    }

    /// Fails the test with the agent's log when the agent has exited.
    pub(crate) fn check_running(&mut self) {
        if let Some(p) = self.process.as_mut()
            && let Some(status) = p.exited()
        {
            panic!("labkubelet run for {} exited ({status}):\n{}", self.node, self.log_tail());
        }
    }

    /// Waits for the node's Ready condition to be True, as reported by the current run: after
    /// a restart the Node still shows the last run's Ready for 40 s, while the new run loads
    /// its plugins and registers.
    pub(crate) async fn wait_ready(&mut self, nodes: &Api<Node>) -> Node {
        let name = self.node.clone();
        // Heartbeats are kept at second precision.
        let since = self.started.as_second();
        eventually_with(self, &format!("node {name} Ready"), Duration::from_secs(90), async || {
            let node = nodes.get_opt(&name).await.ok().flatten()?;
            let ready = condition(&node, "Ready")?;
            let heartbeat = ready.last_heartbeat_time.as_ref()?.0.as_second();
            (ready.status == "True" && heartbeat >= since).then_some(node)
        })
        .await
    }

    /// Fails the test if the API server refused any request of this node or its token.
    pub(crate) fn assert_no_refused_requests(&self) {
        cluster().assert_no_refused_requests(&[&self.user(), &self.token.user]);
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The first container's status of a pod.
pub(crate) fn container_status(pod: &Pod) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status.as_ref()?.container_statuses.as_ref()?.first().cloned()
}

/// A condition of a Node.
pub(crate) fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status.as_ref()?.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Polls `check` until it gives a value, for at most `within`; panics naming `what`.
pub(crate) async fn eventually<T>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Like [`eventually`], failing at once with the agent's log when the agent exits, and
/// showing the log when the deadline passes.
pub(crate) async fn eventually_with<T>(agent: &mut Agent, what: &str, within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        agent.check_running();
        if let Some(found) = check().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {within:?}; the agent's log ends:\n{}", agent.log_tail());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Runs a `labkubelet` command as a user does, with `KUBECONFIG` set; returns (success, output).
pub(crate) fn labkubelet(args: &[&str], kubeconfig: &Path) -> (bool, String) {
    let out = Command::new(BIN).args(args).env("KUBECONFIG", kubeconfig).output().expect("run labkubelet");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A pod from JSON, for the tests' specs.
pub(crate) fn pod(spec: serde_json::Value) -> Pod {
    serde_json::from_value(spec).expect("a valid pod")
}

/// A pod in `default` with this spec, kept to the agent's node by its `e2e` label.
pub(crate) fn pod_on(node: &str, name: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["nodeSelector"] = serde_json::json!({"e2e": node});
    pod(serde_json::json!({"metadata": {"name": name}, "spec": spec}))
}

/// The reasons of the events about an object, oldest first.
pub(crate) async fn event_reasons(client: &kube::Client, namespace: &str, uid: &str) -> Vec<(String, String)> {
    events(client, namespace, uid).await.into_iter().map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default())).collect()
}

/// The events about one object, oldest first, as `kubectl describe` lists them.
pub(crate) async fn events(client: &kube::Client, namespace: &str, uid: &str) -> Vec<k8s_openapi::api::core::v1::Event> {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), namespace);
    let mut list = events.list(&ListParams::default().fields(&format!("involvedObject.uid={uid}"))).await.map(|l| l.items).unwrap_or_default();
    list.sort_by_key(|e| e.first_timestamp.clone().map(|t| t.0).or(e.event_time.clone().map(|t| t.0)));
    list
}

/// The node's boot id, as `kubectl get node -o yaml` shows it.
pub(crate) fn boot_id(node: &Node) -> String {
    node.status.as_ref().and_then(|s| s.node_info.as_ref()).map(|i| i.boot_id.clone()).unwrap_or_default()
}

/// Waits for the agent's node to come back from a reboot: a boot id other than `before`, and
/// the kubelet's `Rebooted` event naming it. Returns the node.
pub(crate) async fn rebooted(agent: &mut Agent, client: &kube::Client, before: &str) -> Node {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = agent.node.clone();
    let node = eventually_with(agent, "a new boot id", Duration::from_secs(60), async || {
        let node = nodes.get(&name).await.ok()?;
        (boot_id(&node) != before).then_some(node)
    })
    .await;
    let message = format!("Node {name} has been rebooted, boot id: {}", boot_id(&node));
    eventually_with(agent, "the Rebooted event", Duration::from_secs(30), async || {
        event_reasons(client, "default", &name).await.into_iter().any(|(r, m)| r == "Rebooted" && m == message).then_some(())
    })
    .await;
    node
}

/// The machine's kubectl, or the 1.20 one `tests/control-plane/install.sh` builds.
pub(crate) fn kubectl_binary() -> PathBuf {
    let on_path =
        std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).map(|d| d.join("kubectl")).find(|p| p.is_file());
    on_path.unwrap_or_else(|| labkubelet_control_plane::assets::Assets::locate().expect("the control plane's binaries").binary("kubectl"))
}

/// Runs kubectl as the cluster's admin with `stdin`; returns (exit code, stdout, stderr).
pub(crate) fn kubectl(args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = Command::new(kubectl_binary())
        .args(args)
        .env("KUBECONFIG", cluster().admin_kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let out = child.wait_with_output().expect("kubectl ends");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}
