//! `labkubelet run`: the node agent, with the kubelet's flag names.

use super::plugin::LimitArgs;
use anyhow::{Context, bail};
use clap::Args;
use k8s_openapi::api::core::v1::Taint;
use labkubelet::agent::AgentConfig;
use labkubelet::clock::Clock;
use labkubelet::config::KubeletConfiguration;
use labkubelet::node::status::StatusTimings;
use labkubelet::plugin::{PluginCatalog, PluginEngine, watch_dir};
use labkubelet::pods::url_source::ManifestUrl;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub(super) struct RunArgs {
    /// The kubeconfig the node uses (written by the TLS bootstrap). Default: <root-dir>/kubelet.conf.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// A kubeconfig with a bootstrap token, to request a client certificate when there is none.
    #[arg(long)]
    bootstrap_kubeconfig: Option<PathBuf>,
    /// Where client certificates and keys are kept. Default: <root-dir>/pki.
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// Where the node keeps its state. Default: /var/lib/labkubelet when writable (as root),
    /// else ~/.local/state/labkubelet.
    #[arg(long, env = "LABKUBELET_ROOT_DIR")]
    root_dir: Option<PathBuf>,
    /// The node's name instead of the host name.
    #[arg(long)]
    hostname_override: Option<String>,
    /// The node's InternalIP address.
    #[arg(long, default_value = "127.0.0.1")]
    node_ip: String,
    /// Labels to add when registering: key=value,key2=value2.
    #[arg(long, value_delimiter = ',')]
    node_labels: Vec<String>,
    /// Taints to register with: key=value:Effect,key:Effect.
    #[arg(long, value_delimiter = ',')]
    register_with_taints: Vec<String>,
    /// Default: 110, or maxPods from --config.
    #[arg(long)]
    max_pods: Option<u32>,
    /// The node's size, what `kubectl describe node` shows as Capacity and Allocatable and
    /// what pods are admitted against, e.g. cpu=2,memory=4Gi. Each resource given replaces
    /// its default: cpu=100, memory=32Gi, ephemeral-storage=100Gi.
    #[arg(long, value_delimiter = ',', value_name = "RESOURCE=QUANTITY,...")]
    capacity: Vec<String>,
    /// A KubeletConfiguration file (kubelet.config.k8s.io/v1beta1); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How many nodes this process runs, named <node-name-prefix>-<n>.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Default: the node name.
    #[arg(long)]
    node_name_prefix: Option<String>,
    /// A static pod manifest file or folder (staticPodPath in --config).
    #[arg(long, value_name = "PATH")]
    pod_manifest_path: Option<PathBuf>,
    /// A URL that serves static pods (staticPodURL in --config).
    #[arg(long, value_name = "URL")]
    manifest_url: Option<String>,
    /// Headers for --manifest-url: 'a:hello,b:again'; repeat the flag to add more.
    #[arg(long, value_name = "KEY:VALUE,...")]
    manifest_url_header: Vec<String>,
    /// A folder of plugins, watched and hot-reloaded.
    #[arg(long)]
    plugin_dir: Option<PathBuf>,
    /// Writes the stock plugins into --plugin-dir first (existing files are kept).
    #[arg(long, requires = "plugin_dir")]
    stock: bool,
    /// The address the HTTP API listens on. Default: 0.0.0.0; 127.0.0.1 in standalone mode.
    #[arg(long)]
    address: Option<std::net::IpAddr>,
    /// The HTTP API port (node i of --nodes listens on port + i). Default: 10250, or port from --config.
    #[arg(long)]
    port: Option<u16>,
    /// The CA bundle client certificates are checked against. Default: the cluster CA of the kubeconfig.
    #[arg(long, value_name = "FILE")]
    client_ca_file: Option<PathBuf>,
    /// The plain-HTTP /healthz port on --healthz-bind-address; 0 turns it off.
    #[arg(long, default_value_t = 10248)]
    healthz_port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    healthz_bind_address: std::net::IpAddr,
    #[command(flatten)]
    limits: LimitArgs,
}

/// A valid node name: an RFC 1123 DNS subdomain.
fn check_node_name(name: &str) -> anyhow::Result<()> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() > 253 || !name.split('.').all(label_ok) {
        bail!("node name {name:?} is not a valid DNS subdomain (lowercase letters, digits, '-' and '.'); pass --hostname-override");
    }
    Ok(())
}

fn parse_labels(specs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    specs
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (k, v) = s.split_once('=').with_context(|| format!("--node-labels {s:?}: expected key=value"))?;
            labkubelet::plugin::parse_selector(&format!("{k}={v}")).with_context(|| format!("--node-labels {s:?}"))?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// `evictionHard` and `evictionPressureTransitionPeriod` from --config, else the kubelet's defaults.
fn eviction_config(file: &labkubelet::config::KubeletConfiguration) -> anyhow::Result<labkubelet::eviction::EvictionConfig> {
    let defaults = labkubelet::eviction::EvictionConfig::default();
    let hard = match &file.eviction_hard {
        Some(hard) => labkubelet::eviction::thresholds::parse(hard).context("--config")?,
        None => defaults.hard,
    };
    Ok(labkubelet::eviction::EvictionConfig {
        hard,
        pressure_transition_period: file.eviction_pressure_transition_period.unwrap_or(defaults.pressure_transition_period),
    })
}

fn parse_capacity(specs: &[String], max_pods: u32) -> anyhow::Result<BTreeMap<String, String>> {
    let mut capacity: BTreeMap<String, String> =
        [("cpu", "100"), ("memory", "32Gi"), ("ephemeral-storage", "100Gi")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    capacity.insert("pods".to_string(), max_pods.to_string());
    for s in specs.iter().filter(|s| !s.is_empty()) {
        let (resource, quantity) = s.split_once('=').with_context(|| format!("--capacity {s:?}: expected resource=quantity, e.g. cpu=2"))?;
        labkubelet::pods::resources::Quantity::parse(quantity).with_context(|| format!("--capacity {s:?}"))?;
        if resource == "pods" {
            bail!("--capacity {s:?}: the number of pods is set with --max-pods (or maxPods in --config)");
        }
        capacity.insert(resource.to_string(), quantity.to_string());
    }
    Ok(capacity)
}

fn parse_taints(specs: &[String]) -> anyhow::Result<Vec<Taint>> {
    specs
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (kv, effect) = s.rsplit_once(':').with_context(|| format!("--register-with-taints {s:?}: expected key=value:Effect"))?;
            if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
                bail!("--register-with-taints {s:?}: effect must be NoSchedule, PreferNoSchedule or NoExecute");
            }
            let (key, value) = match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (kv.to_string(), None),
            };
            Ok(Taint { key, value, effect: effect.into(), time_added: None })
        })
        .collect()
}

/// `--manifest-url-header` values: `a:hello,b:again`, as the kubelet reads them.
fn parse_headers(specs: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    specs
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (k, v) = s.split_once(':').with_context(|| format!("--manifest-url-header {s:?}: expected key:value"))?;
            Ok((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_lowercase()).unwrap_or_else(|_| "localhost".into())
}

/// The manifest URL and its headers: the flags', else the configuration file's.
fn manifest_url(args: &RunArgs, file: &KubeletConfiguration) -> anyhow::Result<Option<ManifestUrl>> {
    let Some(url) = args.manifest_url.clone().or(file.static_pod_url.clone()) else { return Ok(None) };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--manifest-url {url:?} is not an http:// or https:// URL");
    }
    let mut headers: Vec<(String, String)> =
        file.static_pod_url_header.iter().flatten().flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone()))).collect();
    headers.extend(parse_headers(&args.manifest_url_header)?);
    Ok(Some(ManifestUrl { url, headers }))
}

/// The agent's configuration from the flags and the `--config` file (flags win), checked.
fn agent_config(args: &RunArgs, started: tokio::sync::mpsc::UnboundedSender<labkubelet::agent::Started>) -> anyhow::Result<AgentConfig> {
    // As the kubelet: with no kubeconfig of either kind there is no cluster.
    let standalone = args.kubeconfig.is_none() && args.bootstrap_kubeconfig.is_none();
    let root_dir = args.root_dir.clone().unwrap_or_else(super::lab::default_root_dir);
    let base = args.hostname_override.clone().unwrap_or_else(host_name);
    let nodes: Vec<String> = match args.nodes {
        0 => bail!("--nodes must be at least 1"),
        1 => vec![base.clone()],
        n => {
            let prefix = args.node_name_prefix.clone().unwrap_or(base);
            (0..n).map(|i| format!("{prefix}-{i}")).collect()
        }
    };
    for name in &nodes {
        check_node_name(name)?;
    }
    let file = match &args.config {
        Some(path) => KubeletConfiguration::load(path)?,
        None => KubeletConfiguration::default(),
    };
    let defaults = StatusTimings::default();
    let status = StatusTimings {
        update: file.node_status_update_frequency.unwrap_or(defaults.update),
        report: file.node_status_report_frequency.unwrap_or(defaults.report),
        ..defaults
    };
    let max_pods = args.max_pods.or(file.max_pods).unwrap_or(110);
    let mut taints = file.register_with_taints.clone().unwrap_or_default();
    taints.extend(parse_taints(&args.register_with_taints)?);
    let config = AgentConfig {
        nodes,
        kubeconfig: args.kubeconfig.clone().unwrap_or_else(|| root_dir.join("kubelet.conf")),
        bootstrap_kubeconfig: args.bootstrap_kubeconfig.clone(),
        cert_dir: args.cert_dir.clone().unwrap_or_else(|| root_dir.join("pki")),
        root_dir: root_dir.clone(),
        node_ip: args.node_ip.clone(),
        node_labels: parse_labels(&args.node_labels)?,
        taints,
        capacity: parse_capacity(&args.capacity, max_pods)?,
        lease_duration_seconds: file.node_lease_duration_seconds.unwrap_or(40),
        api_throttle: labkubelet::api_client::Throttle::from_config(file.kube_api_qps, file.kube_api_burst),
        event_throttle: labkubelet::api_client::Throttle::from_config(file.event_record_qps, file.event_burst),
        status,
        standalone,
        address: args.address.unwrap_or(if standalone { std::net::Ipv4Addr::LOCALHOST.into() } else { std::net::Ipv4Addr::UNSPECIFIED.into() }),
        port: args.port.or(file.port.and_then(|p| u16::try_from(p).ok())).unwrap_or(10250),
        client_ca_file: args.client_ca_file.clone().or(file.client_ca_file()),
        started: Some(started),
        static_pod_path: args.pod_manifest_path.clone().or(file.static_pod_path.clone()),
        file_check_frequency: file.file_check_frequency.unwrap_or(labkubelet::pods::static_pods::FILE_CHECK_FREQUENCY),
        manifest_url: manifest_url(args, &file)?,
        http_check_frequency: file.http_check_frequency.unwrap_or(labkubelet::pods::url_source::HTTP_CHECK_FREQUENCY),
        eviction: eviction_config(&file)?,
        stop: tokio_util::sync::CancellationToken::new(),
    };
    // Checked once flags and file are merged: a --config without staticPodPath has no pods either.
    if standalone && config.static_pod_path.is_none() && config.manifest_url.is_none() {
        bail!(
            "standalone mode (no --kubeconfig, no --bootstrap-kubeconfig) runs static pods only: pass --pod-manifest-path (try examples/manifests) or --manifest-url"
        );
    }
    Ok(config)
}

pub(super) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (started_tx, started) = tokio::sync::mpsc::unbounded_channel();
    let config = agent_config(&args, started_tx)?;
    let standalone = config.standalone;
    let healthz = if args.healthz_port == 0 {
        None
    } else {
        let addr = std::net::SocketAddr::new(args.healthz_bind_address, args.healthz_port);
        // As the kubelet: a healthz port in use is logged, not fatal.
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => Some(tokio::spawn(labkubelet::server::serve_healthz(listener))),
            Err(e) => {
                tracing::error!("cannot serve /healthz on {addr}: {e}");
                None
            }
        }
    };
    if let (true, Some(dir)) = (args.stock, &args.plugin_dir) {
        super::plugin::install(dir, &[], false)?;
    }
    let engine = PluginEngine::with_compiled_cache(args.limits.policy()?, &config.root_dir.join("compiled-plugins"))?;
    let catalog = PluginCatalog::new(engine).await?;
    let _watcher = match &args.plugin_dir {
        Some(dir) => Some(watch_dir(catalog.clone(), dir).await?),
        None => None,
    };
    let view = super::view::show(started, standalone);
    // Ctrl-C stops the nodes, which save their runtime state before the agent returns; a
    // node still bootstrapping has nothing to save, so the agent gets a few seconds at most.
    let stop = config.stop.clone();
    let stopped = async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    };
    let result = tokio::select! {
        result = labkubelet::agent::run(config, catalog, Clock::new()) => result.map(|()| ExitCode::SUCCESS),
        _ = view => Ok(ExitCode::SUCCESS),
        () = stopped => Ok(ExitCode::SUCCESS),
    };
    if let Some(h) = healthz {
        h.abort();
    }
    result
}
