//! One wasmtime engine per process: how plugins are compiled, checked against the WIT
//! version, validated, and what limits every plugin call runs under.

use super::bindings::{HostState, NodeLinks, PluginPre, WIT_VERSION, exports::labkubelet::runtime::runtime::PluginInfo};
use super::config_file::ConfigFile;
use super::instance::PluginInstance;
use super::policy::PluginPolicy;
use super::selector::{SelectorError, parse_selector};
use crate::clock::Clock;
use crate::runtime::RuntimeError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine};

/// How often the engine's epoch advances: the granularity of call deadlines, and how
/// often a busy plugin yields to other tasks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Why a component was refused. The message says what was wrong and what to do.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    #[error("{origin}: cannot read: {detail}")]
    Unreadable { origin: String, detail: String },
    #[error("{origin}: not a WebAssembly file (it does not start with the \\0asm magic); build the plugin with `cargo build --release --target wasm32-wasip2`")]
    NotWasm { origin: String },
    #[error("{origin}: a core WebAssembly module, not a component; build for the wasm32-wasip2 target (or wrap it with `wasm-tools component new`)")]
    CoreModule { origin: String },
    #[error("{origin}: invalid component: {detail}")]
    Invalid { origin: String, detail: String },
    #[error("{origin}: does not export labkubelet:runtime/runtime; write it with the labkubelet-guest SDK or against the WIT package in wit/")]
    NotAPlugin { origin: String },
    #[error(
        "{origin}: built for labkubelet:runtime@{found}, but this labkubelet speaks labkubelet:runtime@{expected}; rebuild the plugin against this labkubelet's guest SDK"
    )]
    VersionMismatch { origin: String, found: String, expected: &'static str },
    #[error("{origin}: imports what the host does not provide: {detail}")]
    Imports { origin: String, detail: String },
    #[error("{origin}: failed when asked for its info: {detail}")]
    InfoFailed { origin: String, detail: String },
    /// The configuration file is not valid, or the plugin refused it; `place` is
    /// `<file>:<line>:<column>: <message>`.
    #[error("{place} (the configuration of {origin})")]
    Config { origin: String, place: String },
    /// A Python scenario the `python` plugin refused: `<file>:<line>:<column>: <message>`.
    #[error("{place}")]
    Scenario { origin: String, place: String },
    #[error("{origin}: plugin name {name:?} is not valid: {why}")]
    BadName { origin: String, name: String, why: String },
    #[error("{origin}: {source}")]
    BadSelector { origin: String, source: SelectorError },
    #[error("{origin}: plugin name {name:?} is already served by {other}; give one of them another name")]
    NameTaken { origin: String, name: String, other: String },
}

/// A compiled, validated plugin: what a node needs to make instances of it.
pub struct LoadedPlugin {
    pub info: PluginInfo,
    /// Where it came from: a file path, or `builtin:<name>`.
    pub origin: String,
    /// sha256 of the component and its configuration.
    pub fingerprint: [u8; 32],
    pub(crate) selector: kube_core::Selector,
    pub(crate) pre: PluginPre<HostState>,
    pub(crate) config: ConfigFile,
}

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        &self.info.name
    }
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin").field("name", &self.info.name).field("version", &self.info.version).field("origin", &self.origin).finish()
    }
}

/// Cranelift's per-function compilation results, kept across components: a rebuilt plugin
/// shares most of its functions (std, serde, the SDK) with the version it replaces, so a
/// swap compiles only what changed.
#[derive(Debug, Default)]
struct FunctionCache {
    entries: Mutex<CachedFunctions>,
}

/// Compiled functions by key, and their total size.
type CachedFunctions = (HashMap<Vec<u8>, Vec<u8>>, usize);

impl FunctionCache {
    /// Enough for every stock plugin several times over; past it, nothing more is kept.
    const MAX_BYTES: usize = 256 << 20;
}

impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
        let entries = self.entries.lock().ok()?;
        entries.0.get(key).map(|v| std::borrow::Cow::Owned(v.clone()))
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let Ok(mut entries) = self.entries.lock() else { return false };
        let size = key.len() + value.len();
        if entries.1 + size > Self::MAX_BYTES {
            return false;
        }
        entries.1 += size;
        entries.0.insert(key.to_vec(), value);
        true
    }
}

/// The most recently compiled components by content hash, so the same bytes loaded again
/// (a file removed and put back) are not compiled again. Bounded: every new version of a
/// plugin would otherwise keep its machine code for the life of the process.
#[derive(Default)]
struct ComponentCache {
    recent: std::collections::VecDeque<([u8; 32], Component)>,
}

impl ComponentCache {
    const ENTRIES: usize = 16;

    fn get(&self, hash: &[u8; 32]) -> Option<Component> {
        self.recent.iter().find(|(h, _)| h == hash).map(|(_, c)| c.clone())
    }

    fn insert(&mut self, hash: [u8; 32], component: Component) {
        self.recent.retain(|(h, _)| *h != hash);
        self.recent.push_back((hash, component));
        if self.recent.len() > Self::ENTRIES {
            self.recent.pop_front();
        }
    }
}

/// Advances the engine's epoch until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The process-wide plugin engine.
pub struct PluginEngine {
    pub(crate) engine: Engine,
    linker: Linker<HostState>,
    pub(crate) policy: PluginPolicy,
    compiled: Mutex<ComponentCache>,
    on_disk: Option<super::compiled::CompiledCache>,
    _ticker: EpochTicker,
}

impl PluginEngine {
    /// Makes the engine and starts its epoch ticker.
    pub fn new(policy: PluginPolicy) -> anyhow::Result<Arc<Self>> {
        Self::build(policy, None)
    }

    /// As [`PluginEngine::new`], keeping compiled plugins in folder `dir` for the next run.
    pub fn with_compiled_cache(policy: PluginPolicy, dir: &std::path::Path) -> anyhow::Result<Arc<Self>> {
        Self::build(policy, Some(dir))
    }

    fn build(policy: PluginPolicy, cache_dir: Option<&std::path::Path>) -> anyhow::Result<Arc<Self>> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        config.wasm_component_model(true);
        // Concurrent component-model execution is not used, and its bookkeeping triples
        // the cost of a call.
        config.concurrency_support(false);
        // Plugins are small bookkeeping code whose calls cost is in the host's lifting of
        // values; what matters is how fast a swapped-in plugin compiles.
        config.cranelift_opt_level(wasmtime::OptLevel::None);
        config.enable_incremental_compilation(Arc::new(FunctionCache::default())).map_err(|e| anyhow::anyhow!("cannot enable the compilation cache: {e}"))?;
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot configure wasmtime: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| anyhow::anyhow!("cannot link WASI: {e}"))?;
        super::bindings::Plugin::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("cannot link host imports: {e}"))?;
        let on_disk = match cache_dir {
            Some(dir) => Some(
                super::compiled::CompiledCache::open(dir, &engine).map_err(|e| anyhow::anyhow!("cannot use {} for compiled plugins: {e}", dir.display()))?,
            ),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let ticking = engine.clone();
        let stopped = stop.clone();
        std::thread::Builder::new().name("plugin-epoch".into()).spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                ticking.increment_epoch();
            }
        })?;
        Ok(Arc::new(PluginEngine { engine, linker, policy, compiled: Mutex::new(ComponentCache::default()), on_disk, _ticker: EpochTicker { stop } }))
    }

    pub fn policy(&self) -> &PluginPolicy {
        &self.policy
    }

    /// Compiles (or takes from the cache), checks and validates a component: it must be a
    /// component of a compatible WIT version, link against the host, and answer `info`
    /// within its deadline with a valid name and selector.
    ///
    /// `config` is the plugin's configuration file, given to the plugin first; its refusal
    /// refuses the plugin, placed in the file.
    pub async fn load(&self, bytes: Vec<u8>, config: ConfigFile, origin: String) -> Result<Arc<LoadedPlugin>, LoadError> {
        let mut hasher = Sha256::new();
        hasher.update(&bytes);
        let code_hash: [u8; 32] = hasher.finalize().into();
        let fingerprint: [u8; 32] = Sha256::new().chain_update(code_hash).chain_update(config.text.as_bytes()).finalize().into();
        config.check_syntax().map_err(|place| LoadError::Config { origin: origin.clone(), place })?;

        let cached = self.compiled.lock().ok().and_then(|c| c.get(&code_hash));
        let component = match cached {
            Some(c) => c,
            None => {
                check_header(&bytes, &origin)?;
                let compiled = self.compile(bytes, code_hash, &origin).await?;
                if let Ok(mut cache) = self.compiled.lock() {
                    cache.insert(code_hash, compiled.clone());
                }
                compiled
            }
        };
        self.check_version(&component, &origin)?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| LoadError::Imports { origin: origin.clone(), detail: format!("{e:#}") })?;
        let pre = PluginPre::new(instance_pre).map_err(|e| LoadError::Invalid { origin: origin.clone(), detail: format!("{e:#}") })?;

        let (release, _) = watch::channel(0);
        // Until it says its name, a plugin is known by its file.
        let probe_name: Arc<str> = std::path::Path::new(&origin).file_name().map_or(origin.as_str().into(), |f| f.to_string_lossy().into());
        let failed = |e: RuntimeError| LoadError::InfoFailed { origin: origin.clone(), detail: e.to_string() };
        let mut instance =
            PluginInstance::start(&self.policy, &pre, probe_name, "validation", Clock::new(), Arc::new(release), NodeLinks::default()).await.map_err(failed)?;
        instance.configure(&config).await.map_err(failed)?.map_err(|e| {
            let place = config.describe(&e);
            if config.is_python() { LoadError::Scenario { origin: origin.clone(), place } } else { LoadError::Config { origin: origin.clone(), place } }
        })?;
        let info = instance.info().await.map_err(failed)?;
        validate_name(&info.name).map_err(|why| LoadError::BadName { origin: origin.clone(), name: info.name.clone(), why })?;
        let selector = parse_selector(&info.selector).map_err(|source| LoadError::BadSelector { origin: origin.clone(), source })?;
        Ok(Arc::new(LoadedPlugin { info, origin, fingerprint, selector, pre, config }))
    }

    /// The component from the disk cache, or compiled (and kept there).
    async fn compile(&self, bytes: Vec<u8>, code_hash: [u8; 32], origin: &str) -> Result<Component, LoadError> {
        let engine = self.engine.clone();
        let started = std::time::Instant::now();
        if let Some(kept) = self.on_disk.as_ref().and_then(|disk| disk.get(&engine, &code_hash)) {
            tracing::debug!(origin, elapsed = ?started.elapsed(), "loaded compiled");
            return Ok(kept);
        }
        let compiled = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes))
            .await
            .map_err(|e| LoadError::Invalid { origin: origin.to_string(), detail: e.to_string() })?
            .map_err(|e| LoadError::Invalid { origin: origin.to_string(), detail: format!("{e:#}") })?;
        tracing::debug!(origin, elapsed = ?started.elapsed(), "compiled");
        if let Some(disk) = &self.on_disk
            && let Err(e) = disk.put(&code_hash, &compiled)
        {
            tracing::warn!(origin, "cannot keep the compiled plugin for the next run: {e:#}");
        }
        Ok(compiled)
    }

    fn check_version(&self, component: &Component, origin: &str) -> Result<(), LoadError> {
        const PREFIX: &str = "labkubelet:runtime/runtime@";
        let ty = component.component_type();
        let found = ty
            .exports(&self.engine)
            .find_map(|(name, _)| name.strip_prefix(PREFIX).map(str::to_string))
            .ok_or_else(|| LoadError::NotAPlugin { origin: origin.to_string() })?;
        if compatible(&found, WIT_VERSION) { Ok(()) } else { Err(LoadError::VersionMismatch { origin: origin.to_string(), found, expected: WIT_VERSION }) }
    }
}

/// Semver compatibility: the same major version, or for 0.x the same minor.
fn compatible(found: &str, expected: &str) -> bool {
    let parts = |v: &str| -> Vec<u64> { v.split(['.', '-', '+']).take(3).map(|p| p.parse().unwrap_or(u64::MAX)).collect() };
    let (f, e) = (parts(found), parts(expected));
    match (f.first(), e.first()) {
        (Some(0), Some(0)) => f.get(1) == e.get(1),
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn check_header(bytes: &[u8], origin: &str) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm { origin: origin.to_string() });
    }
    // A core module has version 1 in the header; a component has layer 1.
    if bytes[4..8] == [1, 0, 0, 0] {
        return Err(LoadError::CoreModule { origin: origin.to_string() });
    }
    Ok(())
}

/// Plugin names appear in annotations and file names: a DNS label keeps them simple.
fn validate_name(name: &str) -> Result<(), String> {
    let ok_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if name.is_empty() || name.len() > 63 {
        return Err("it must be 1 to 63 characters".into());
    }
    if !ok_chars || name.starts_with('-') || name.ends_with('-') {
        return Err("use lowercase letters, digits and '-', starting and ending with a letter or digit".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_compatible_like_semver() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.3", "0.1.0"));
        assert!(!compatible("0.2.0", "0.1.0"));
        assert!(!compatible("1.0.0", "0.1.0"));
        assert!(compatible("1.4.0", "1.0.0"));
    }

    #[test]
    fn headers_tell_modules_from_components() {
        assert!(matches!(check_header(b"hello world", "f"), Err(LoadError::NotWasm { .. })));
        assert!(matches!(check_header(b"\0asm\x01\0\0\0", "f"), Err(LoadError::CoreModule { .. })));
        assert!(check_header(b"\0asm\x0d\0\x01\0", "f").is_ok());
    }

    #[test]
    fn plugin_names_are_dns_labels() {
        assert!(validate_name("pleg-stall").is_ok());
        assert!(validate_name("Bad_Name").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_name("-x").is_err());
    }
}
