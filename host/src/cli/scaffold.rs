//! `labkubelet plugin new`: a plugin crate a new user can build and drop in as it is, anywhere:
//! the guest SDK this binary was built with is written beside it (`sdk/`), so the crate needs
//! neither this checkout nor a registry release of the SDK. With `--python`, a scenario file
//! with every hook described, which needs nothing to build.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// The guest SDK's sources, as this binary was built with them.
const SDK_SOURCES: &[(&str, &str)] = &[
    ("src/lib.rs", include_str!("../../../guest-sdk/src/lib.rs")),
    ("src/config.rs", include_str!("../../../guest-sdk/src/config.rs")),
    ("src/container.rs", include_str!("../../../guest-sdk/src/container.rs")),
    ("src/cookbook.rs", include_str!("../../../guest-sdk/src/cookbook.rs")),
    ("src/guest.rs", include_str!("../../../guest-sdk/src/guest.rs")),
    ("src/host.rs", include_str!("../../../guest-sdk/src/host.rs")),
    ("src/image.rs", include_str!("../../../guest-sdk/src/image.rs")),
    ("src/node_script.rs", include_str!("../../../guest-sdk/src/node_script.rs")),
    ("src/process.rs", include_str!("../../../guest-sdk/src/process.rs")),
    ("src/registry.rs", include_str!("../../../guest-sdk/src/registry.rs")),
    ("src/runtime.rs", include_str!("../../../guest-sdk/src/runtime.rs")),
    ("src/scenario.rs", include_str!("../../../guest-sdk/src/scenario.rs")),
    ("src/server.rs", include_str!("../../../guest-sdk/src/server.rs")),
    ("src/triggers.rs", include_str!("../../../guest-sdk/src/triggers.rs")),
    ("src/volumes.rs", include_str!("../../../guest-sdk/src/volumes.rs")),
    ("src/shell/mod.rs", include_str!("../../../guest-sdk/src/shell/mod.rs")),
    ("src/shell/awk.rs", include_str!("../../../guest-sdk/src/shell/awk.rs")),
    ("src/shell/test_images.rs", include_str!("../../../guest-sdk/src/shell/test_images.rs")),
    ("src/shell/arith.rs", include_str!("../../../guest-sdk/src/shell/arith.rs")),
    ("src/shell/builtins.rs", include_str!("../../../guest-sdk/src/shell/builtins.rs")),
    ("src/shell/dns.rs", include_str!("../../../guest-sdk/src/shell/dns.rs")),
    ("src/shell/fs.rs", include_str!("../../../guest-sdk/src/shell/fs.rs")),
    ("src/shell/input.rs", include_str!("../../../guest-sdk/src/shell/input.rs")),
    ("src/shell/net.rs", include_str!("../../../guest-sdk/src/shell/net.rs")),
    ("src/shell/parse.rs", include_str!("../../../guest-sdk/src/shell/parse.rs")),
    ("src/shell/run.rs", include_str!("../../../guest-sdk/src/shell/run.rs")),
    ("src/shell/state.rs", include_str!("../../../guest-sdk/src/shell/state.rs")),
    ("src/shell/tar.rs", include_str!("../../../guest-sdk/src/shell/tar.rs")),
    ("src/shell/tests.rs", include_str!("../../../guest-sdk/src/shell/tests.rs")),
];
const SDK_MANIFEST: &str = include_str!("../../../guest-sdk/Cargo.toml");
const WORKSPACE_MANIFEST: &str = include_str!("../../../Cargo.toml");
/// The versions the SDK was tested with; cargo drops what the plugin does not use.
const WORKSPACE_LOCK: &str = include_str!("../../../Cargo.lock");
/// The WIT package the SDK is generated from, file by file.
const WIT_FILES: &[(&str, &str)] = &[
    ("world.wit", include_str!("../../../wit/world.wit")),
    ("runtime.wit", include_str!("../../../wit/runtime.wit")),
    ("host.wit", include_str!("../../../wit/host.wit")),
    ("lab.wit", include_str!("../../../wit/lab.wit")),
    ("types.wit", include_str!("../../../wit/types.wit")),
];

/// A Python scenario's template; `NAME` is replaced by the scenario's name.
const PYTHON_TEMPLATE: &str = include_str!("scenario_template.py");

fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
        && !name.ends_with('-');
    if !valid {
        bail!("plugin name {name:?} is not valid: use lowercase letters, digits and '-', starting with a letter");
    }
    Ok(())
}

/// Writes `NAME.py` into `dir` (default: the current folder), never over an existing file.
pub(super) fn new_python_scenario(name: &str, dir: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let file = dir.unwrap_or_else(|| PathBuf::from(".")).join(format!("{name}.py"));
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)
        .with_context(|| format!("cannot create {} (it must not exist yet; choose another --path)", file.display()))?;
    std::io::Write::write_all(&mut out, PYTHON_TEMPLATE.replace("NAME", name).as_bytes()).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(file)
}

pub(super) fn new_plugin(name: &str, path: Option<PathBuf>, sdk: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let dir = path.unwrap_or_else(|| default_dir(name));
    if dir.exists() {
        bail!("{} already exists; choose another --path or remove it", dir.display());
    }
    let sdk_dependency = match sdk {
        Some(sdk) => {
            let sdk = sdk
                .canonicalize()
                .with_context(|| format!("cannot find the labkubelet-guest SDK at {}; pass --sdk <labkubelet checkout>/guest-sdk", sdk.display()))?;
            if !sdk.join("Cargo.toml").is_file() {
                bail!("{} is not the labkubelet-guest crate; pass --sdk <labkubelet checkout>/guest-sdk", sdk.display());
            }
            sdk.display().to_string()
        }
        None => {
            write_sdk(&dir.join("sdk"))?;
            "sdk/labkubelet-guest".to_string()
        }
    };
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("cannot create {}", dir.display()))?;
    write(&dir.join("Cargo.toml"), &cargo_toml(name, &sdk_dependency))?;
    write(&dir.join("Cargo.lock"), WORKSPACE_LOCK)?;
    write(&dir.join("rust-toolchain.toml"), TOOLCHAIN)?;
    write(&dir.join("src/lib.rs"), &lib_rs(name))?;
    write(&dir.join("README.md"), &readme(name))?;
    write(&dir.join(".gitignore"), "/target\n")?;
    Ok(dir)
}

/// `./NAME`, except inside a labkubelet checkout (where the five-minute lab runs): beside it,
/// so a plugin is not left among the checkout's files.
fn default_dir(name: &str) -> PathBuf {
    let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let checkout = here.ancestors().find(|d| d.join("wit/runtime.wit").is_file() && d.join("guest-sdk/Cargo.toml").is_file());
    match checkout.and_then(Path::parent) {
        Some(beside) => beside.join(name),
        None => PathBuf::from(name),
    }
}

/// The SDK crate and the WIT package it is generated from, as `dir/labkubelet-guest` and `dir/wit`.
fn write_sdk(dir: &Path) -> anyhow::Result<()> {
    let crate_dir = dir.join("labkubelet-guest");
    std::fs::create_dir_all(crate_dir.join("src/shell")).with_context(|| format!("cannot create {}", crate_dir.display()))?;
    std::fs::create_dir_all(dir.join("wit")).with_context(|| format!("cannot create {}", dir.display()))?;
    for (path, text) in SDK_SOURCES {
        write(&crate_dir.join(path), text)?;
    }
    write(&crate_dir.join("Cargo.toml"), &sdk_manifest()?)?;
    for (file, text) in WIT_FILES {
        write(&dir.join("wit").join(file), text)?;
    }
    Ok(())
}

/// The SDK's manifest outside the workspace: what it inherits from the workspace, written out.
fn sdk_manifest() -> anyhow::Result<String> {
    let mut out = String::new();
    let mut lints = false;
    for line in SDK_MANIFEST.lines() {
        // The workspace's lints are ours; a plugin author's crate keeps its own.
        if line.starts_with('[') {
            lints = line.trim() == "[lints]";
        }
        if lints {
            continue;
        }
        let key = line.split(['=', '.']).next().unwrap_or_default().trim();
        let inherited = line.replace(' ', "").ends_with(".workspace=true") || line.replace(' ', "").ends_with("{workspace=true}");
        let resolved = if !inherited {
            line.to_string()
        } else if line.contains(".workspace") {
            let value = workspace_value("[workspace.package]", key).with_context(|| format!("the workspace sets no package.{key}"))?;
            format!("{key} = {value}")
        } else {
            let value = workspace_value("[workspace.dependencies]", key).with_context(|| format!("the workspace has no dependency {key}"))?;
            format!("{key} = {value}")
        };
        out.push_str(&resolved);
        out.push('\n');
    }
    Ok(out)
}

/// `key = value` in a section of the workspace manifest, as written there.
fn workspace_value(section: &str, key: &str) -> Option<String> {
    let mut in_section = false;
    for line in WORKSPACE_MANIFEST.lines() {
        if line.starts_with('[') {
            in_section = line.trim() == section;
        } else if in_section
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            return Some(v.trim().to_string());
        }
    }
    None
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

const TOOLCHAIN: &str = "[toolchain]\nchannel = \"1.95.0\"\ntargets = [\"wasm32-wasip2\"]\nprofile = \"minimal\"\n";

fn cargo_toml(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
labkubelet-guest = {{ path = {sdk:?} }}
# For a scenario's own settings (`ConfigFile::parse`) and its saved state (`save`/`restore`),
# as the cookbook's recipes use them.
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# A plugin is its own workspace, wherever it is created.
[workspace]

[profile.release]
opt-level = "s"
lto = true
strip = true
panic = "abort"
"#
    )
}

fn lib_rs(name: &str) -> String {
    format!(
        r#"//! The {name} scenario: what the container runtime does for the pods it serves.
//!
//! A pod asks for it with the annotation `labkubelet.io/scenario: {name}`, or the plugin
//! claims pods by label with `.serves("app=web")`. Every hook of `Scenario` defaults to a
//! healthy runtime: override the ones your scenario changes.

use labkubelet_guest::*;

#[derive(Default)]
struct Plugin;

impl Scenario for Plugin {{
    fn info(&self) -> Info {{
        Info::new("{name}", env!("CARGO_PKG_VERSION")).describe("Containers exit with code 3 after 20 s.")
    }}

    fn on_start(&mut self, _c: &ContainerCtx) -> Result<Lifetime, RuntimeError> {{
        Ok(Lifetime::exits_after(secs(20), Exit::error(3)))
    }}
}}

export_scenario!(Plugin);
"#
    )
}

fn readme(name: &str) -> String {
    format!(
        r#"# {name}

A labkubelet runtime plugin. `src/lib.rs` is the scenario; `sdk/` is the labkubelet guest SDK
it is built against (the one of the labkubelet that made this crate).

- Build: `cargo build --release --target wasm32-wasip2`. Once, in this folder (so the toolchain
  `rust-toolchain.toml` pins gets it): `rustup target add wasm32-wasip2`. On two cores the first
  build takes about 3 minutes and the first `cargo doc` about 3 more; later ones are quick.
- Use: copy `target/wasm32-wasip2/release/{file}.wasm` into the agent's plugin folder; it is
  loaded while the agent runs, and reloaded on every new build you copy.
- Check: `labkubelet plugin check target/wasm32-wasip2/release/{file}.wasm`.
- A panic in a hook ends that call: its message, file and line show in the agent's log and in
  the pod's status (`plugin {name} failed in start-container: panicked at src/lib.rs:42:17: …`),
  and the plugin starts afresh.
- The SDK's reference, every hook with what it is for, and a cookbook of the common
  scenarios: `cargo doc --open -p labkubelet-guest` (the cookbook is under `cookbook`).
"#,
        file = name.replace('-', "_")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sdk_manifest_inherits_nothing_from_the_workspace() {
        let manifest = sdk_manifest().unwrap();
        assert!(!manifest.contains("workspace = true") && !manifest.contains(".workspace"), "{manifest}");
        assert!(manifest.contains(&format!("version = \"{}\"", env!("CARGO_PKG_VERSION"))), "{manifest}");
        assert!(manifest.contains("wit-bindgen = {"), "{manifest}");
    }

    #[test]
    fn every_sdk_source_file_is_embedded() {
        fn files(dir: &Path, prefix: &str, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap().map(Result::unwrap) {
                let name = format!("{prefix}/{}", entry.file_name().to_string_lossy());
                if entry.path().is_dir() { files(&entry.path(), &name, out) } else { out.push(name) }
            }
        }
        let mut on_disk = Vec::new();
        files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/src"), "src", &mut on_disk);
        on_disk.sort();
        let mut embedded: Vec<String> = SDK_SOURCES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }
}
