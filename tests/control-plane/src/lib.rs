//! A real Kubernetes control plane for end-to-end tests: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler on free loopback ports, started with the flags
//! kubeadm (and so kind) gives them where they matter to a node — `Node,RBAC`
//! authorization, the `NodeRestriction` admission plugin, bootstrap tokens with kubeadm's
//! RBAC bindings, the CSR signer and approver, the node lifecycle controller — and an audit
//! log of every request.
//!
//! One control plane serves a whole test binary ([`ControlPlane::shared`]): it starts on
//! first use and its processes end with the binary. The binaries come from a folder
//! ([`assets`]); `tests/control-plane/install.sh` builds them offline.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use labkubelet_control_plane::ControlPlane;
//! let cluster = ControlPlane::shared();
//! let token = cluster.bootstrap_token().await?; // a kubeconfig a node can join with
//! let admin = cluster.admin().await?;            // a kube::Client as system:masters
//! # let _ = (token, admin);
//! cluster.assert_no_refused_requests(&["system:node:lab-1"]);
//! # Ok(()) }
//! ```

pub mod assets;
pub mod audit;
pub mod conformance;
pub mod pki;
pub mod process;

use anyhow::Context as _;
use assets::{Assets, Version};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, PostParams};
use pki::Pki;
use process::{Process, free_port};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How the control plane is set up; the defaults are kubeadm's except where a test needs
/// to see something happen sooner.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--cluster-signing-duration` of the controller manager. 1.20 back-dates `notBefore`
    /// by 5 minutes and counts the duration from there, so 10 minutes leave 5 of validity.
    pub signing_duration: Duration,
    /// `--node-monitor-grace-period` (kubeadm: 40 s).
    pub node_monitor_grace_period: Duration,
    /// `--max-requests-inflight` and `--max-mutating-requests-inflight` (kubeadm: the
    /// defaults, 400 and 200). Set, the server also runs without API Priority and Fairness
    /// (`--enable-priority-and-fairness=false`, as before 1.20), so a request over a limit is
    /// answered 429 with `Retry-After: 1` at once instead of waiting in a queue first.
    pub max_in_flight: Option<(u32, u32)>,
    /// Whether every request goes to the audit log (`audit.log`, at level Metadata), as the
    /// suite's checks read it; kubeadm logs none, and a benchmark should not pay for it.
    pub audit: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            signing_duration: Duration::from_secs(365 * 24 * 3600),
            node_monitor_grace_period: Duration::from_secs(40),
            max_in_flight: None,
            audit: true,
        }
    }
}

/// A running control plane.
pub struct ControlPlane {
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    pub version: Version,
    pub settings: Settings,
    /// Kubeconfigs, certificates, logs and the audit log.
    pub dir: PathBuf,
    pki: Pki,
    /// Kept so the processes live as long as the control plane.
    processes: Vec<Process>,
}

/// A bootstrap token, as `kubeadm token create` makes one, and a kubeconfig that uses it.
#[derive(Debug, Clone)]
pub struct BootstrapToken {
    pub id: String,
    /// `system:bootstrap:<id>`, the user the API server sees.
    pub user: String,
    pub kubeconfig: PathBuf,
}

static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();

impl ControlPlane {
    /// The test binary's control plane with [`Settings::default`], started on first use.
    /// Panics with what is missing and how to install it when the binaries are not there.
    pub fn shared() -> &'static ControlPlane {
        Self::shared_with(Settings::default())
    }

    /// Like [`ControlPlane::shared`]; the first call's settings win.
    pub fn shared_with(settings: Settings) -> &'static ControlPlane {
        let started = SHARED.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            // The processes are children of this thread (PR_SET_PDEATHSIG): it lives as long
            // as the test binary, and they die with it.
            let spawned = std::thread::Builder::new().name("control-plane".into()).spawn(move || {
                let _ = tx.send(start(settings).map_err(|e| format!("{e:#}")));
                loop {
                    std::thread::park();
                }
            });
            match spawned {
                Ok(_) => rx.recv().unwrap_or_else(|_| Err("the control-plane thread ended before it started".into())),
                Err(e) => Err(format!("cannot start the control-plane thread: {e}")),
            }
        });
        match started {
            Ok(cp) => cp,
            Err(e) => panic!("{e}"),
        }
    }

    /// Each process of the control plane (etcd, kube-apiserver, kube-controller-manager,
    /// kube-scheduler) by name, with its pid: what a benchmark reads their CPU time by.
    pub fn process_ids(&self) -> Vec<(&str, u32)> {
        self.processes.iter().map(|p| (p.name.as_str(), p.id())).collect()
    }

    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// A client as `kubernetes-admin` (system:masters), on the caller's runtime.
    pub async fn admin(&self) -> anyhow::Result<kube::Client> {
        client_for(&self.admin_kubeconfig()).await
    }

    /// A new bootstrap token in `system:bootstrappers:kubeadm:default-node-token`, whose
    /// node client CSRs the controller manager approves (kubeadm's bindings).
    pub async fn bootstrap_token(&self) -> anyhow::Result<BootstrapToken> {
        let id = random_string(6);
        let secret = random_string(16);
        let secrets: Api<Secret> = Api::namespaced(self.admin().await?, "kube-system");
        let object: Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
            "type": "bootstrap.kubernetes.io/token",
            "stringData": {
                "token-id": id, "token-secret": secret,
                "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
                "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
            },
        }))?;
        secrets.create(&PostParams::default(), &object).await.context("creating a bootstrap token")?;
        let kubeconfig = self.dir.join(format!("bootstrap-{id}.kubeconfig"));
        self.pki.token_kubeconfig(&kubeconfig, &self.server, &format!("{id}.{secret}"))?;
        Ok(BootstrapToken { user: format!("system:bootstrap:{id}"), id, kubeconfig })
    }

    /// A kubemark hollow node: the real kubelet of this release with a fake runtime, as a
    /// reference to diff a lab node against. It joins as `system:node:<name>` with a
    /// certificate from the cluster CA (kubemark does no TLS bootstrap), labelled
    /// `e2e=<name>`; it ends with the calling thread.
    pub fn hollow_node(&self, name: &str) -> anyhow::Result<Process> {
        let kubemark = Assets::locate().map_err(anyhow::Error::msg)?.binary("kubemark");
        anyhow::ensure!(
            kubemark.is_file(),
            "no kubemark in {}: run tests/control-plane/install.sh, which builds it with the control plane",
            kubemark.display()
        );
        let kubeconfig = self.dir.join(format!("hollow-{name}.kubeconfig"));
        self.pki.client_kubeconfig(&kubeconfig, &self.server, &format!("system:node:{name}"), &["system:nodes"])?;
        let mut command = Command::new(kubemark);
        command.args([
            "--morph=kubelet".to_string(),
            format!("--name={name}"),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--kubelet-port={}", free_port()?),
            "--kubelet-read-only-port=0".to_string(),
            format!("--node-labels=e2e={name}"),
            "--kube-api-content-type=application/json".to_string(),
        ]);
        Process::spawn(&format!("hollow node {name}"), command, &self.dir.join(format!("hollow-{name}.log")))
    }

    /// Every completed request so far.
    pub fn audit(&self) -> Vec<audit::AuditEvent> {
        audit::read(&self.dir.join("audit.log"))
    }

    /// The requests of these users that were refused, less the node authorizer's race
    /// (see [`audit::refused`]).
    pub fn refused_requests(&self, users: &[&str]) -> Vec<audit::AuditEvent> {
        audit::refused(&self.audit(), users)
    }

    /// Panics listing every refused request of these users.
    pub fn assert_no_refused_requests(&self, users: &[&str]) {
        let refused = self.refused_requests(users);
        let shown: Vec<String> = refused.iter().map(ToString::to_string).collect();
        assert!(refused.is_empty(), "the API server refused {} request(s) of {users:?}:\n{}", refused.len(), shown.join("\n"));
    }
}

/// A kube client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let parsed = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

fn random_string(len: usize) -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|i| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            ALPHABET[(h.finish() % ALPHABET.len() as u64) as usize] as char
        })
        .collect()
}

/// The data folder of this process; folders of earlier, ended runs are removed.
fn data_dir() -> anyhow::Result<PathBuf> {
    let tmp = std::env::temp_dir();
    for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(pid) = name.strip_prefix("labkubelet-e2e-")
            && !Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = tmp.join(format!("labkubelet-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn start(settings: Settings) -> anyhow::Result<ControlPlane> {
    let assets = Assets::locate().map_err(anyhow::Error::msg)?;
    let dir = data_dir()?;
    let pki = Pki::create(&dir.join("pki"))?;
    pki.serving("apiserver", "kube-apiserver", &["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "127.0.0.1", "10.0.0.1"])?;
    pki.client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", &["system:masters"])?;
    std::fs::write(dir.join("audit-policy.yaml"), audit::POLICY)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut last = None;
    // A port taken between choosing it and binding it: try again with others.
    for _ in 0..3 {
        match start_processes(&assets, &settings, &dir, &pki, &runtime) {
            Ok((server, processes)) => {
                return Ok(ControlPlane { server, version: assets.version, settings, dir, pki, processes });
            }
            Err(e) if format!("{e:#}").contains("address already in use") => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("the control plane did not start")))
}

fn start_processes(assets: &Assets, settings: &Settings, dir: &Path, pki: &Pki, runtime: &tokio::runtime::Runtime) -> anyhow::Result<(String, Vec<Process>)> {
    let (etcd_port, peer_port, api_port, kcm_port, scheduler_port) = (free_port()?, free_port()?, free_port()?, free_port()?, free_port()?);
    let server = format!("https://127.0.0.1:{api_port}");
    let p = |file: &str| pki.path(file).display().to_string();
    let mut processes = Vec::new();

    let etcd_dir = dir.join("etcd");
    let _ = std::fs::remove_dir_all(&etcd_dir);
    let mut etcd = Command::new(assets.binary("etcd"));
    let (client_url, peer_url) = (format!("http://127.0.0.1:{etcd_port}"), format!("http://127.0.0.1:{peer_port}"));
    etcd.arg("--data-dir").arg(&etcd_dir).args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url]);
    etcd.args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url, "--initial-cluster", &format!("default={peer_url}")]);
    processes.push(Process::spawn("etcd", etcd, &dir.join("etcd.log"))?);

    let mut apiserver = Command::new(assets.binary("kube-apiserver"));
    apiserver.args([
        format!("--etcd-servers={client_url}"),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={api_port}"),
        format!("--tls-cert-file={}", p("apiserver.crt")),
        format!("--tls-private-key-file={}", p("apiserver.key")),
        format!("--client-ca-file={}", p("ca.crt")),
        format!("--service-account-key-file={}", p("sa.pub")),
        format!("--service-account-signing-key-file={}", p("sa.key")),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        "--service-cluster-ip-range=10.0.0.0/24".into(),
        "--authorization-mode=Node,RBAC".into(),
        "--enable-admission-plugins=NodeRestriction".into(),
        "--enable-bootstrap-token-auth=true".into(),
        format!("--kubelet-client-certificate={}", p("apiserver-kubelet-client.crt")),
        format!("--kubelet-client-key={}", p("apiserver-kubelet-client.key")),
        "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname".into(),
        "--allow-privileged=true".into(),
    ]);
    if settings.audit {
        apiserver.args([
            format!("--audit-policy-file={}", dir.join("audit-policy.yaml").display()),
            format!("--audit-log-path={}", dir.join("audit.log").display()),
        ]);
    }
    if assets.version.has_insecure_ports() {
        apiserver.arg("--insecure-port=0");
    }
    if let Some((all, mutating)) = settings.max_in_flight {
        apiserver.args([
            format!("--max-requests-inflight={all}"),
            format!("--max-mutating-requests-inflight={mutating}"),
            "--enable-priority-and-fairness=false".into(),
        ]);
    }
    processes.push(Process::spawn("kube-apiserver", apiserver, &dir.join("kube-apiserver.log"))?);

    let admin = dir.join("admin.kubeconfig");
    pki.client_kubeconfig(&admin, &server, "kubernetes-admin", &["system:masters"])?;
    runtime.block_on(wait_ready(&admin, &mut processes))?;

    // Both run as their own user, on a secure port of their own, as kubeadm starts them.
    let component = |binary: &str, user: &str, port: u16| -> anyhow::Result<Command> {
        let kubeconfig = dir.join(format!("{binary}.kubeconfig"));
        pki.client_kubeconfig(&kubeconfig, &server, user, &[])?;
        let file = kubeconfig.display().to_string();
        let mut command = Command::new(assets.binary(binary));
        command.args([
            format!("--kubeconfig={file}"),
            format!("--authentication-kubeconfig={file}"),
            format!("--authorization-kubeconfig={file}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            "--leader-elect=false".into(),
        ]);
        if assets.version.has_insecure_ports() {
            command.arg("--port=0");
        }
        Ok(command)
    };
    let mut kcm = component("kube-controller-manager", "system:kube-controller-manager", kcm_port)?;
    kcm.args([
        format!("--cluster-signing-cert-file={}", p("ca.crt")),
        format!("--cluster-signing-key-file={}", p("ca.key")),
        format!("--cluster-signing-duration={}s", settings.signing_duration.as_secs()),
        format!("--root-ca-file={}", p("ca.crt")),
        format!("--service-account-private-key-file={}", p("sa.key")),
        "--use-service-account-credentials=true".into(),
        "--controllers=*,bootstrapsigner,tokencleaner".into(),
        format!("--node-monitor-grace-period={}s", settings.node_monitor_grace_period.as_secs()),
    ]);
    let scheduler = component("kube-scheduler", "system:kube-scheduler", scheduler_port)?;
    processes.push(Process::spawn("kube-controller-manager", kcm, &dir.join("kube-controller-manager.log"))?);
    processes.push(Process::spawn("kube-scheduler", scheduler, &dir.join("kube-scheduler.log"))?);
    runtime.block_on(bind_bootstrap_rbac(&admin))?;
    runtime.block_on(wait_for_default_service_account(&admin, assets.version, &mut processes))?;
    Ok((server, processes))
}

/// Fails at once, with its log, when a process has ended.
fn check_alive(processes: &mut [Process]) -> anyhow::Result<()> {
    for p in processes.iter_mut() {
        if let Some(status) = p.exited() {
            anyhow::bail!("{} exited ({status}); the end of {}:\n{}", p.name, p.log.display(), p.log_tail(30));
        }
    }
    Ok(())
}

async fn wait_ready(admin: &Path, processes: &mut [Process]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        check_alive(processes)?;
        if let Ok(client) = client_for(admin).await
            && let Ok(text) = client.request_text(http::Request::get("/readyz").body(Vec::new())?).await
            && text.trim() == "ok"
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            let tail = processes.iter().find(|p| p.name == "kube-apiserver").map(|p| p.log_tail(30)).unwrap_or_default();
            anyhow::bail!("kube-apiserver was not ready within 120 s; the end of its log:\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// kubeadm's bootstrap RBAC: bootstrap tokens may create CSRs, and their node client CSRs
/// (first and rotated) are approved by the controller manager.
async fn bind_bootstrap_rbac(admin: &Path) -> anyhow::Result<()> {
    let bindings: Api<ClusterRoleBinding> = Api::all(client_for(admin).await?);
    let group = |name: &str| serde_json::json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name}]);
    for (name, role, subjects) in [
        ("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", group("system:bootstrappers:kubeadm:default-node-token")),
        (
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            group("system:bootstrappers:kubeadm:default-node-token"),
        ),
        ("kubeadm:node-autoapprove-certificate-rotation", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient", group("system:nodes")),
    ] {
        let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": subjects,
        }))?;
        bindings.create(&PostParams::default(), &binding).await.with_context(|| format!("binding {name}"))?;
    }
    Ok(())
}

/// Pods cannot be created in `default` before its service account exists (and, before
/// 1.24, its token secret): the controller manager makes both soon after it starts.
async fn wait_for_default_service_account(admin: &Path, version: Version, processes: &mut [Process]) -> anyhow::Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client_for(admin).await?, "default");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        check_alive(processes)?;
        if let Ok(Some(sa)) = accounts.get_opt("default").await
            && (!version.makes_token_secrets() || sa.secrets.is_some_and(|s| !s.is_empty()))
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            let tail = processes.iter().find(|p| p.name == "kube-controller-manager").map(|p| p.log_tail(30)).unwrap_or_default();
            anyhow::bail!("no default service account within 120 s; the end of the controller manager's log:\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
