//! `labkubelet plugin new`: a plugin crate a new user can build and drop in as it is.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// Where the SDK was when this binary was built.
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk");

pub fn new_plugin(name: &str, path: Option<PathBuf>, sdk: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with(['-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'])
        && !name.ends_with('-');
    if !valid {
        bail!("plugin name {name:?} is not valid: use lowercase letters, digits and '-', starting with a letter");
    }
    let dir = path.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        bail!("{} already exists; choose another --path or remove it", dir.display());
    }
    let sdk = sdk.unwrap_or_else(|| PathBuf::from(BUILT_SDK));
    let sdk =
        sdk.canonicalize().with_context(|| format!("cannot find the labkubelet-guest SDK at {}; pass --sdk <labkubelet checkout>/guest-sdk", sdk.display()))?;
    if !sdk.join("Cargo.toml").is_file() {
        bail!("{} is not the labkubelet-guest crate; pass --sdk <labkubelet checkout>/guest-sdk", sdk.display());
    }
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("cannot create {}", dir.display()))?;
    write(&dir.join("Cargo.toml"), &cargo_toml(name, &sdk))?;
    write(&dir.join("rust-toolchain.toml"), TOOLCHAIN)?;
    write(&dir.join("src/lib.rs"), &lib_rs(name))?;
    write(&dir.join(".gitignore"), "/target\n")?;
    Ok(dir)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

const TOOLCHAIN: &str = "[toolchain]\nchannel = \"1.95.0\"\ntargets = [\"wasm32-wasip2\"]\nprofile = \"minimal\"\n";

fn cargo_toml(name: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
labkubelet-guest = {{ path = {sdk:?} }}

# A plugin is its own workspace, wherever it is created.
[workspace]

[profile.release]
opt-level = "s"
lto = true
strip = true
panic = "abort"
"#,
        sdk = sdk.display().to_string()
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
