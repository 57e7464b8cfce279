//! `labkubelet plugin …`: list, check, scaffold and watch runtime plugins.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use labkubelet::clock::Clock;
use labkubelet::plugin::{
    ConfigFile, DEFAULT_PLUGIN, Grants, LoadedPlugin, PluginCatalog, PluginEngine, PluginEvent, PluginPolicy, PluginRuntime, stock, watch_dir,
};
use labkubelet::server::PluginsResponse;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Subcommand)]
pub(super) enum PluginCommand {
    /// Lists the plugins a running agent serves (name, version, selector, pods, source) and
    /// the files it refused; with --plugin-dir, the plugins that folder would serve.
    List {
        /// Loads this folder here instead of asking the agent.
        #[arg(long, value_name = "DIR")]
        plugin_dir: Option<PathBuf>,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        agent: super::lab::AgentArgs,
    },
    /// Loads and validates a component, or a configuration file against the component
    /// beside it (or the stock plugin of its name); prints what it serves, or why it is refused.
    Check {
        /// A `.wasm` component, or a `.yaml`/`.yml`/`.json` configuration file.
        file: PathBuf,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Scaffolds a plugin crate that builds with `cargo build --release --target wasm32-wasip2`.
    New {
        /// The plugin's name: lowercase letters, digits and '-'.
        name: String,
        /// Where to create the crate (default: ./NAME; beside the checkout when run inside a
        /// labkubelet checkout).
        #[arg(long)]
        path: Option<PathBuf>,
        /// A labkubelet-guest SDK crate to build against (default: the SDK built into this
        /// labkubelet, written into the crate's `sdk/` folder).
        #[arg(long, value_name = "DIR", conflicts_with = "python")]
        sdk: Option<PathBuf>,
        /// Writes a Python scenario, NAME.py (into --path, default the current folder), in
        /// place of a Rust crate: it needs no toolchain, and the agent reloads it on every save.
        #[arg(long)]
        python: bool,
    },
    /// Serves a plugin folder and prints every load, swap, refusal and unload as it happens.
    Watch {
        #[arg(long, value_name = "DIR")]
        plugin_dir: PathBuf,
        /// Writes the stock plugins into the folder first (existing files are kept).
        #[arg(long)]
        stock: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Writes stock plugins (embedded in this binary) into a folder: all, or those named.
    Install {
        #[arg(long, value_name = "DIR")]
        plugin_dir: PathBuf,
        names: Vec<String>,
    },
}

/// Limits and grants for plugins, as `labkubelet run` takes them.
#[derive(Args, Clone)]
pub(super) struct LimitArgs {
    /// How long one plugin call may run (held replies do not count).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    plugin_call_timeout: Duration,
    /// The most memory one plugin instance may use, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 64)]
    plugin_memory_limit_mib: usize,
    /// Lets a plugin read a host folder: PLUGIN=HOST_DIR:GUEST_DIR. Repeatable.
    #[arg(long, value_name = "PLUGIN=HOST:GUEST")]
    plugin_allow_dir: Vec<String>,
    /// Gives a plugin an environment variable: PLUGIN=KEY=VALUE. Repeatable.
    #[arg(long, value_name = "PLUGIN=KEY=VALUE")]
    plugin_allow_env: Vec<String>,
}

impl LimitArgs {
    pub(super) fn policy(&self) -> anyhow::Result<PluginPolicy> {
        let mut grants: std::collections::BTreeMap<String, Grants> = Default::default();
        for spec in &self.plugin_allow_dir {
            let (plugin, dirs) = spec.split_once('=').with_context(|| format!("--plugin-allow-dir {spec:?}: expected PLUGIN=HOST_DIR:GUEST_DIR"))?;
            let (host, guest) = dirs.split_once(':').with_context(|| format!("--plugin-allow-dir {spec:?}: expected PLUGIN=HOST_DIR:GUEST_DIR"))?;
            if !std::path::Path::new(host).is_dir() {
                bail!("--plugin-allow-dir {spec:?}: {host} is not a folder");
            }
            grants.entry(plugin.into()).or_default().dirs.push((host.into(), guest.into()));
        }
        for spec in &self.plugin_allow_env {
            let (plugin, kv) = spec.split_once('=').with_context(|| format!("--plugin-allow-env {spec:?}: expected PLUGIN=KEY=VALUE"))?;
            let (key, value) = kv.split_once('=').with_context(|| format!("--plugin-allow-env {spec:?}: expected PLUGIN=KEY=VALUE"))?;
            grants.entry(plugin.into()).or_default().env.push((key.into(), value.into()));
        }
        if self.plugin_memory_limit_mib == 0 {
            bail!("--plugin-memory-limit-mib must be at least 1");
        }
        Ok(PluginPolicy { call_deadline: self.plugin_call_timeout, memory_limit: self.plugin_memory_limit_mib << 20, grants, ..PluginPolicy::default() })
    }
}

pub(super) async fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::List { plugin_dir: Some(dir), limits, .. } => list(dir, limits).await,
        PluginCommand::List { plugin_dir: None, agent, .. } => list_served(agent).await,
        PluginCommand::Check { file, limits } => check(file, limits).await,
        PluginCommand::New { name, path, python: true, .. } => {
            let file = super::scaffold::new_python_scenario(&name, path)?;
            println!("created Python scenario {}", file.display());
            println!("check it:   labkubelet plugin check {}", file.display());
            println!("use it:     cp {} <plugin-dir>/   (every save reloads it)", file.display());
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::New { name, path, sdk, .. } => {
            let dir = super::scaffold::new_plugin(&name, path, sdk)?;
            println!("created plugin crate {} in {}", name, dir.display());
            println!("build it:   cd {} && cargo build --release --target wasm32-wasip2", dir.display());
            println!("use it:     cp target/wasm32-wasip2/release/{}.wasm <plugin-dir>/", name.replace('-', "_"));
            println!("read:       cargo doc --open -p labkubelet-guest   (every hook, and a cookbook of scenarios)");
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Watch { plugin_dir, stock, limits } => {
            if stock {
                install(&plugin_dir, &[], false)?;
            }
            watch(plugin_dir, limits).await
        }
        PluginCommand::Install { plugin_dir, names } => {
            for path in install(&plugin_dir, &names, true)? {
                println!("installed {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes stock plugins into a folder, creating it; `overwrite` false keeps existing files.
pub(super) fn install(dir: &std::path::Path, names: &[String], overwrite: bool) -> anyhow::Result<Vec<PathBuf>> {
    let known: Vec<&str> = stock::names().collect();
    if let Some(unknown) = names.iter().find(|n| !known.contains(&n.as_str())) {
        bail!("no stock plugin named {unknown}; the stock plugins are: {}", known.join(", "));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let wanted: Vec<&str> = if names.is_empty() { known } else { names.iter().map(String::as_str).collect() };
    let mut written = Vec::new();
    for name in wanted {
        if !overwrite && dir.join(format!("{name}.wasm")).exists() {
            continue;
        }
        written.push(stock::install(name, dir).with_context(|| format!("cannot write {name}.wasm into {}", dir.display()))?);
    }
    Ok(written)
}

async fn catalog(limits: &LimitArgs) -> anyhow::Result<Arc<PluginCatalog>> {
    let engine = PluginEngine::new(limits.policy()?)?;
    Ok(PluginCatalog::new(engine).await?)
}

/// A plugin's selector as the listings show it.
fn shown_selector<'a>(name: &str, selector: &'a str) -> &'a str {
    match selector {
        _ if name == DEFAULT_PLUGIN => "(every other pod)",
        "" => "(annotation only)",
        s => s,
    }
}

fn row(p: &LoadedPlugin) -> String {
    format!("{:<18} {:<9} {:<26} {:<8} {}", p.info.name, p.info.version, shown_selector(&p.info.name, &p.info.selector), "loaded", p.origin)
}

async fn list(dir: PathBuf, limits: LimitArgs) -> anyhow::Result<ExitCode> {
    if !dir.is_dir() {
        bail!("{} is not a folder; pass the folder your plugins are in", dir.display());
    }
    let catalog = catalog(&limits).await?;
    let events = catalog.sync_dir(&dir).await;
    println!("{:<18} {:<9} {:<26} {:<8} SOURCE", "NAME", "VERSION", "SELECTOR", "STATE");
    for p in catalog.plugins() {
        println!("{}", row(&p));
    }
    let mut refused = false;
    for event in events {
        if let PluginEvent::Refused { origin, error, .. } = event {
            refused = true;
            println!("{:<18} {:<9} {:<26} {:<8} {origin}\n    {error}", "-", "-", "-", "refused");
        }
    }
    Ok(if refused { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// What the running agent serves, as it answers `/plugins`.
async fn list_served(agent: super::lab::AgentArgs) -> anyhow::Result<ExitCode> {
    let (status, body) = agent.request(http::Method::GET, "/plugins", Vec::new()).await?;
    let served: PluginsResponse = match serde_json::from_slice(&body) {
        Ok(served) if status.is_success() => served,
        _ => bail!("the agent answered {status}: {}", String::from_utf8_lossy(&body).trim()),
    };
    println!("node {}", served.node);
    println!("{:<18} {:<9} {:<26} {:<5} {:<8} SOURCE", "NAME", "VERSION", "SELECTOR", "PODS", "STATE");
    for p in &served.plugins {
        println!("{:<18} {:<9} {:<26} {:<5} {:<8} {}", p.name, p.version, shown_selector(&p.name, &p.selector), p.pods, "serving", p.origin);
    }
    for r in &served.refused {
        let name = r.still_serving.as_deref().map_or("-".to_string(), |n| format!("({n})"));
        println!("{name:<18} {:<9} {:<26} {:<5} {:<8} {}\n    {}", "-", "-", "-", "refused", r.file, r.error);
    }
    Ok(if served.refused.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn check(file: PathBuf, limits: LimitArgs) -> anyhow::Result<ExitCode> {
    let engine = PluginEngine::new(limits.policy()?)?;
    let (bytes, config, origin) = match component_and_config(&file) {
        Ok(read) => read,
        Err(e) => {
            println!("refused: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    match engine.load(bytes, config.clone(), origin).await {
        Ok(p) => {
            match p.info.description.as_str() {
                "" => println!("ok: {} {}", p.info.name, p.info.version),
                description => println!("ok: {} {} — {description}", p.info.name, p.info.version),
            }
            if let Some(path) = &config.path {
                println!("configuration: {} (accepted)", path.display());
            }
            let serves = if p.info.selector.is_empty() { "none by label".to_string() } else { p.info.selector.clone() };
            println!("serves: pods annotated labkubelet.io/scenario: {}; by label: {serves}", p.info.name);
            println!("actions:");
            for a in &p.info.actions {
                println!("  {:<12} {}", a.name, a.description);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("refused: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What `plugin check FILE` loads: a component with the configuration beside it, or a
/// configuration file with the component beside it (else the stock plugin of its name).
fn component_and_config(file: &std::path::Path) -> Result<(Vec<u8>, ConfigFile, String), String> {
    if !ConfigFile::is_config_path(file) {
        let (bytes, config) = labkubelet::plugin::folder::read_plugin(file).map_err(|e| e.to_string())?;
        return Ok((bytes, config, file.display().to_string()));
    }
    let config = ConfigFile::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let component = file.with_extension("wasm");
    if component.is_file() {
        let bytes = std::fs::read(&component).map_err(|e| format!("cannot read {}: {e}", component.display()))?;
        return Ok((bytes, config, component.display().to_string()));
    }
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    match stock::component(&stem) {
        Some(bytes) => Ok((bytes.to_vec(), config, format!("builtin:{stem}"))),
        None => Err(format!(
            "{}: no {} beside it and no stock plugin named {stem:?}; a configuration file is named after its plugin ({})",
            file.display(),
            component.display(),
            stock::names().collect::<Vec<_>>().join(", ")
        )),
    }
}

async fn watch(dir: PathBuf, limits: LimitArgs) -> anyhow::Result<ExitCode> {
    let catalog = catalog(&limits).await?;
    let mut events = catalog.subscribe();
    let node = PluginRuntime::new("watch", catalog.clone(), Clock::new());
    let _watcher = watch_dir(catalog.clone(), &dir).await?;
    println!("watching {} (built-in default: {}); Ctrl-C to stop", dir.display(), catalog.default_plugin().info.name);
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            event = events.recv() => {
                let event = match event {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => { println!("({n} events missed)"); continue }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(ExitCode::SUCCESS),
                };
                println!("{event}");
                if let PluginEvent::Loaded { name, .. } | PluginEvent::Replaced { name, .. } = &event {
                    // Proves the new plugin answers, not only that it loaded.
                    match node.plugin_info(name).await {
                        Ok(info) => println!("{} {} answering", info.name, info.version),
                        Err(e) => println!("{name} does not answer: {e}"),
                    }
                }
            }
        }
    }
}
