//! `labkubelet trigger`, `labkubelet node` and `labkubelet timeline`: clients of a running
//! agent's HTTP API.
//! They trust the agent's serving certificate (read from its certificate folder) and
//! authenticate with the user's kubeconfig (client certificate, token or exec plugin); a
//! standalone agent asks for nothing.

use anyhow::{Context, bail};
use clap::Args;
use http_body_util::BodyExt;
use labkubelet::server::{TriggerRequest, TriggerResponse};
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the agent is and how to reach it.
#[derive(Args)]
pub(super) struct AgentArgs {
    /// The agent's HTTP API. Default: where the agent in --root-dir says it listens
    /// (<root-dir>/<node>/endpoint), else https://127.0.0.1:10250.
    #[arg(long)]
    server: Option<String>,
    /// The agent's root folder, where its serving certificate is (<root-dir>/pki/kubelet.crt).
    #[arg(long, env = "LABKUBELET_ROOT_DIR")]
    root_dir: Option<PathBuf>,
    /// With several nodes in one agent: the node whose certificate to trust (<root-dir>/pki/<node>/kubelet.crt).
    #[arg(long)]
    node: Option<String>,
    /// The certificate (or CA) to trust for --server instead of the one in --root-dir.
    #[arg(long, value_name = "FILE")]
    certificate_authority: Option<PathBuf>,
    /// Credentials for an agent in a cluster (a client certificate or a token). Default:
    /// $KUBECONFIG, else ~/.kube/config when it exists; none for a standalone agent.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

#[derive(Args)]
pub(super) struct TriggerArgs {
    /// The plugin (scenario) to send the action to.
    plugin: String,
    /// The action: kill, hang, fail-pulls, heal, or one the plugin adds.
    action: String,
    /// The pod: namespace/name, or name in default. Default: every pod the plugin serves.
    #[arg(long)]
    pod: Option<String>,
    #[arg(long)]
    container: Option<String>,
    /// Arguments of the action: key=value (kill takes code=137 reason=OOMKilled).
    #[arg(value_name = "KEY=VALUE")]
    args: Vec<String>,
    #[command(flatten)]
    agent: AgentArgs,
}

#[derive(Args)]
pub(super) struct NodeArgs {
    /// partition (cut the node off the API server), heal (end every fault), kubelet-restart,
    /// reboot, runtime-down, network-down, memory-pressure, disk-pressure, pid-pressure.
    action: labkubelet::node::actions::NodeAction,
    #[command(flatten)]
    agent: AgentArgs,
}

#[derive(Args)]
pub(super) struct TimelineArgs {
    /// json, svg or html.
    #[arg(long, default_value = "json")]
    format: String,
    /// Serves a page for the projector that redraws the timeline every 2 s, on this address
    /// (default 127.0.0.1:8088), until Ctrl-C.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8088", conflicts_with_all = ["format", "output"])]
    serve: Option<std::net::SocketAddr>,
    /// Write to this file instead of the standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    agent: AgentArgs,
}

impl AgentArgs {
    fn root(&self) -> PathBuf {
        self.root_dir.clone().unwrap_or_else(default_root_dir)
    }

    /// --server, else the endpoint the agent recorded for --node (or for its one node).
    fn server(&self) -> anyhow::Result<String> {
        if let Some(server) = &self.server {
            return Ok(server.clone());
        }
        let root = self.root();
        let recorded: Vec<(String, PathBuf)> = match &self.node {
            Some(node) => vec![(node.clone(), root.join(node).join(labkubelet::agent::ENDPOINT_FILE))],
            None => std::fs::read_dir(&root)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| (e.file_name().to_string_lossy().to_string(), e.path().join(labkubelet::agent::ENDPOINT_FILE)))
                .filter(|(_, file)| file.is_file())
                .collect(),
        };
        match recorded.as_slice() {
            [(_, file)] => Ok(std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?.trim().to_string()),
            [] => Ok("https://127.0.0.1:10250".to_string()),
            several => {
                let names: Vec<&str> = several.iter().map(|(n, _)| n.as_str()).collect();
                bail!("{} holds several nodes ({}): pass --node, or --server", root.display(), names.join(", "))
            }
        }
    }

    fn trusted(&self) -> anyhow::Result<PathBuf> {
        if let Some(file) = &self.certificate_authority {
            return Ok(file.clone());
        }
        let root = self.root();
        let file = match &self.node {
            Some(node) => root.join("pki").join(node).join("kubelet.crt"),
            None => root.join("pki").join("kubelet.crt"),
        };
        if !file.exists() {
            bail!("no serving certificate at {}: pass the agent's --root-dir (and --node when it runs several), or --certificate-authority", file.display());
        }
        Ok(file)
    }

    /// A client of the agent: the kubeconfig's user (certificate, token, exec plugin) with the
    /// agent as the server and its serving certificate as the only root; with the agent's
    /// address, the trusted file and the credentials in words, for errors.
    pub(super) async fn client(&self) -> anyhow::Result<Agent> {
        let trusted = self.trusted()?;
        let pem = std::fs::read(&trusted).with_context(|| format!("reading {}", trusted.display()))?;
        let roots = labkubelet::server::tls::ca_file_certs(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", trusted.display()))?;
        let kubeconfig = match &self.kubeconfig {
            Some(path) => Some(kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?),
            // $KUBECONFIG, else ~/.kube/config; none at all is fine for a standalone agent.
            None => kube::config::Kubeconfig::read().ok(),
        };
        let sent = credentials(self.kubeconfig.as_deref(), kubeconfig.as_ref());
        let shown = self.server()?;
        let server: http::Uri = shown.parse().with_context(|| format!("--server {shown:?} is not a URL"))?;
        let mut config = match kubeconfig {
            Some(k) => kube::Config::from_custom_kubeconfig(k, &Default::default()).await.context("using the kubeconfig's credentials")?,
            None => kube::Config::new(server.clone()),
        };
        config.cluster_url = server;
        config.root_cert = Some(roots.into_iter().map(|c| c.to_vec()).collect());
        (config.accept_invalid_certs, config.tls_server_name) = (false, None);
        let client = kube::Client::try_from(config).context("building the client")?;
        Ok(Agent { client, shown, trusted, sent })
    }

    /// Sends one request to the agent and returns the status and body.
    pub(super) async fn request(&self, method: http::Method, path: &str, body: Vec<u8>) -> anyhow::Result<(http::StatusCode, bytes::Bytes)> {
        let agent = self.client().await?;
        let request = http::Request::builder().method(method).uri(path).header("content-type", "application/json").body(kube::client::Body::from(body))?;
        let response = agent.client.send(request).await.map_err(|e| agent.unreachable(anyhow::Error::new(e), path))?;
        let status = response.status();
        if status == http::StatusCode::UNAUTHORIZED {
            return Err(agent.unauthorized(path));
        }
        let body = response.into_body().collect().await.context("reading the agent's answer")?.to_bytes();
        Ok((status, body))
    }
}

/// A client of one agent, and what to say when it fails.
pub(super) struct Agent {
    pub(super) client: kube::Client,
    shown: String,
    trusted: PathBuf,
    sent: String,
}

impl Agent {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.shown.trim_end_matches('/'))
    }

    /// Why the agent could not be reached: another agent (another root dir) on that port, a
    /// certificate made since, or nothing listening.
    pub(super) fn unreachable(&self, e: anyhow::Error, path: &str) -> anyhow::Error {
        if format!("{e:#}").contains("invalid peer certificate") {
            return anyhow::anyhow!(
                "the agent at {} presents a certificate other than {}: it is not the agent of this --root-dir (or --node); pass the right --root-dir, or --server",
                self.shown,
                self.trusted.display()
            );
        }
        e.context(format!("cannot reach the agent at {}; is `labkubelet run` running?", self.url(path)))
    }

    pub(super) fn unauthorized(&self, path: &str) -> anyhow::Error {
        anyhow::anyhow!(
            "the agent at {} answered 401 Unauthorized: it authenticates clients as a kubelet does, and this command sent {}; pass --kubeconfig with a user of the cluster (an admin's, or one granted nodes/proxy). A standalone agent needs none",
            self.url(path),
            self.sent
        )
    }
}

/// Which credentials a request carries, in words for an error: the kubeconfig's user and
/// where the kubeconfig came from, or why there is none.
fn credentials(flag: Option<&std::path::Path>, kubeconfig: Option<&kube::config::Kubeconfig>) -> String {
    let from = match (flag, std::env::var("KUBECONFIG")) {
        (Some(path), _) => format!("--kubeconfig {}", path.display()),
        (None, Ok(env)) => format!("$KUBECONFIG ({env})"),
        (None, Err(_)) => "~/.kube/config".to_string(),
    };
    let Some(k) = kubeconfig else {
        return format!("no credentials (no --kubeconfig, and {from} could not be read)");
    };
    let user = k.current_context.as_ref().and_then(|current| k.contexts.iter().find(|c| &c.name == current)).and_then(|c| c.context.as_ref()?.user.clone());
    match user {
        Some(user) => format!("the credentials of user {user:?} from {from}"),
        None => format!("no credentials ({from} has no current context with a user)"),
    }
}

pub(super) async fn trigger(args: TriggerArgs) -> anyhow::Result<ExitCode> {
    let mut request = TriggerRequest { pod: args.pod.clone(), container: args.container.clone(), ..Default::default() };
    for arg in &args.args {
        let (k, v) = arg.split_once('=').with_context(|| format!("argument {arg:?}: expected key=value, like code=137"))?;
        request.args.insert(k.to_string(), v.to_string());
    }
    let path = format!("/trigger/{}/{}", args.plugin, args.action);
    let (status, body) = args.agent.request(http::Method::POST, &path, serde_json::to_vec(&request)?).await?;
    print_answer(status, &body)
}

pub(super) async fn node_action(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/node/{}", args.action.name());
    let (status, body) = args.agent.request(http::Method::POST, &path, Vec::new()).await?;
    print_answer(status, &body)
}

/// Prints what the agent answered to an action; fails unless it was accepted.
fn print_answer(status: http::StatusCode, body: &[u8]) -> anyhow::Result<ExitCode> {
    match serde_json::from_slice::<TriggerResponse>(body) {
        Ok(answer) => {
            println!("{}: {}", answer.result, answer.message);
            Ok(if status.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Err(_) => bail!("the agent answered {status}: {}", String::from_utf8_lossy(body).trim()),
    }
}

pub(super) async fn timeline(args: TimelineArgs) -> anyhow::Result<ExitCode> {
    if let Some(address) = args.serve {
        return serve_timeline(args.agent, address).await;
    }
    if !matches!(args.format.as_str(), "json" | "svg" | "html") {
        bail!("--format {:?}: use json, svg or html", args.format);
    }
    let (status, body) = args.agent.request(http::Method::GET, &format!("/timeline?format={}", args.format), Vec::new()).await?;
    if !status.is_success() {
        bail!("the agent answered {status}: {}", String::from_utf8_lossy(&body).trim());
    }
    match &args.output {
        Some(file) => {
            std::fs::write(file, &body).with_context(|| format!("writing {}", file.display()))?;
            eprintln!("wrote {}", file.display());
        }
        None => {
            use std::io::Write;
            std::io::stdout().write_all(&body)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The live page and the picture it fetches, the picture asked of the agent at each fetch
/// with the user's credentials (a browser has neither the agent's certificate nor them).
async fn serve_timeline(agent: AgentArgs, address: std::net::SocketAddr) -> anyhow::Result<ExitCode> {
    use axum::response::IntoResponse;
    let server = agent.server()?;
    let agent = std::sync::Arc::new(agent);
    let picture = move || {
        let agent = agent.clone();
        async move {
            match agent.request(http::Method::GET, "/timeline?format=svg", Vec::new()).await {
                Ok((status, body)) if status.is_success() => ([(http::header::CONTENT_TYPE, "image/svg+xml")], body).into_response(),
                Ok((status, body)) => {
                    (http::StatusCode::BAD_GATEWAY, format!("the agent answered {status}: {}", String::from_utf8_lossy(&body).trim())).into_response()
                }
                Err(e) => (http::StatusCode::BAD_GATEWAY, format!("{e:#}")).into_response(),
            }
        }
    };
    let page = labkubelet::timeline::render::live_html(&server, "/timeline.svg");
    let router = axum::Router::new()
        .route("/", axum::routing::get(move || async move { axum::response::Html(page) }))
        .route("/timeline.svg", axum::routing::get(picture));
    let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address}; choose another with --serve ADDR"))?;
    println!("the live timeline of {server} is on http://{}/ (Ctrl-C stops)", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap_or_default() })
        .await
        .context("serving the live timeline")?;
    Ok(ExitCode::SUCCESS)
}

/// The root folder when none is given: the kubelet's place when it is writable, else the
/// user's state folder (labs run as a normal user).
pub(super) fn default_root_dir() -> PathBuf {
    let system = PathBuf::from("/var/lib/labkubelet");
    let writable = |p: &std::path::Path| {
        let probe = p.join(".writable");
        let ok = std::fs::create_dir_all(p).is_ok() && std::fs::write(&probe, b"").is_ok();
        let _ = std::fs::remove_file(&probe);
        ok
    };
    if writable(&system) {
        return system;
    }
    let state = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")));
    state.unwrap_or_else(std::env::temp_dir).join("labkubelet")
}
