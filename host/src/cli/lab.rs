//! `labkubelet trigger` and `labkubelet timeline`: clients of a running agent's HTTP API.
//! They trust the agent's serving certificate (read from its certificate folder) and
//! authenticate with the user's kubeconfig (client certificate or token); a standalone agent
//! asks for nothing.

use anyhow::{bail, Context};
use clap::Args;
use http_body_util::BodyExt;
use labkubelet::server::{TriggerRequest, TriggerResponse};
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the agent is and how to reach it.
#[derive(Args)]
pub struct AgentArgs {
    /// The agent's HTTP API.
    #[arg(long, default_value = "https://127.0.0.1:10250")]
    server: String,
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
pub struct TriggerArgs {
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
pub struct TimelineArgs {
    /// json, svg or html.
    #[arg(long, default_value = "json")]
    format: String,
    /// Write to this file instead of the standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    agent: AgentArgs,
}

struct Credentials {
    identity: Option<(String, String)>,
    token: Option<String>,
}

fn credentials(kubeconfig: Option<PathBuf>) -> anyhow::Result<Credentials> {
    let path = kubeconfig
        .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config")).filter(|p| p.exists()));
    let Some(path) = path else { return Ok(Credentials { identity: None, token: None }) };
    let config = kube::config::Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
    let context = config.current_context.clone().unwrap_or_default();
    let user_name = config.contexts.iter().find(|c| c.name == context).and_then(|c| c.context.as_ref()).and_then(|c| c.user.clone());
    let user = config.auth_infos.iter().find(|a| Some(&a.name) == user_name.as_ref()).and_then(|a| a.auth_info.clone()).unwrap_or_default();
    use base64::Engine as _;
    use secrecy::ExposeSecret as _;
    let decode = |data: &str| base64::engine::general_purpose::STANDARD.decode(data.trim()).ok().and_then(|b| String::from_utf8(b).ok());
    let cert = user.client_certificate_data.as_deref().and_then(decode).or_else(|| user.client_certificate.as_ref().and_then(|f| std::fs::read_to_string(f).ok()));
    let key = user.client_key_data.as_ref().and_then(|k| decode(k.expose_secret())).or_else(|| user.client_key.as_ref().and_then(|f| std::fs::read_to_string(f).ok()));
    let token = user.token.as_ref().map(|t| t.expose_secret().to_string());
    Ok(Credentials { identity: cert.zip(key), token })
}

impl AgentArgs {
    fn trusted(&self) -> anyhow::Result<PathBuf> {
        if let Some(file) = &self.certificate_authority {
            return Ok(file.clone());
        }
        let root = self.root_dir.clone().unwrap_or_else(super::run::default_root_dir);
        let file = match &self.node {
            Some(node) => root.join("pki").join(node).join("kubelet.crt"),
            None => root.join("pki").join("kubelet.crt"),
        };
        if !file.exists() {
            bail!("no serving certificate at {}: pass the agent's --root-dir (and --node when it runs several), or --certificate-authority", file.display());
        }
        Ok(file)
    }

    /// Sends one request to the agent and returns the status and body.
    async fn request(&self, method: http::Method, path: &str, body: Vec<u8>) -> anyhow::Result<(http::StatusCode, bytes::Bytes)> {
        let trusted = self.trusted()?;
        let pem = std::fs::read(&trusted).with_context(|| format!("reading {}", trusted.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in labkubelet::server::tls::ca_file_certs(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", trusted.display()))? {
            roots.add(cert).with_context(|| format!("{} is not a usable certificate", trusted.display()))?;
        }
        let creds = credentials(self.kubeconfig.clone())?;
        let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let tls = match &creds.identity {
            Some((cert, key)) => {
                let certs = rustls_pemfile::certs(&mut cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
                let key = rustls_pemfile::private_key(&mut key.as_bytes())?.context("the kubeconfig's client key holds no key")?;
                builder.with_client_auth_cert(certs, key)?
            }
            None => builder.with_no_client_auth(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        let url = format!("{}{path}", self.server.trim_end_matches('/'));
        let mut request = http::Request::builder().method(method).uri(&url).header("content-type", "application/json");
        if let (Some(token), None) = (&creds.token, &creds.identity) {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
        let response = client.request(request).await.with_context(|| format!("cannot reach the agent at {url}; is `labkubelet run` running?"))?;
        let status = response.status();
        let body = response.into_body().collect().await.context("reading the agent's answer")?.to_bytes();
        Ok((status, body))
    }
}

pub async fn trigger(args: TriggerArgs) -> anyhow::Result<ExitCode> {
    let mut request = TriggerRequest { pod: args.pod.clone(), container: args.container.clone(), ..Default::default() };
    for arg in &args.args {
        let (k, v) = arg.split_once('=').with_context(|| format!("argument {arg:?}: expected key=value, like code=137"))?;
        request.args.insert(k.to_string(), v.to_string());
    }
    let path = format!("/trigger/{}/{}", args.plugin, args.action);
    let (status, body) = args.agent.request(http::Method::POST, &path, serde_json::to_vec(&request)?).await?;
    match serde_json::from_slice::<TriggerResponse>(&body) {
        Ok(answer) => {
            println!("{}: {}", answer.result, answer.message);
            Ok(if status.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Err(_) => bail!("the agent answered {status}: {}", String::from_utf8_lossy(&body).trim()),
    }
}

pub async fn timeline(args: TimelineArgs) -> anyhow::Result<ExitCode> {
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
