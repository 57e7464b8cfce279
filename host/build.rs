//! Provides the stock plugins (and the test-only ones) as wasm32-wasip2 components, embedded
//! in the binary, so `cargo build` and `cargo test` of the host need no extra command.
//!
//! Where the toolchain has the wasm32-wasip2 target they are built from source with a nested
//! cargo, the way wasmtime builds its test programs. Where it has not (rustup does not add a
//! target to a toolchain that is already installed, and machines without internet cannot
//! fetch one), the components committed in `plugins/prebuilt/` are used; they carry the hash
//! of the sources they were built from, and a build whose sources differ says so (a test
//! fails on it too: `plugins/prebuilt/update.sh` refreshes them).
//! `LABKUBELET_PLUGINS=source|prebuilt` chooses explicitly; `LABKUBELET_UPDATE_PREBUILT=1`
//! with a build from source copies the new components into `plugins/prebuilt/`.

use sha2::{Digest, Sha256};
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Stock plugins, by crate name.
const STOCK: &[&str] = &[
    "healthy",
    "crashloop",
    "oomkill",
    "image-pull-fail",
    "pleg-stall",
    "readiness-flap",
    "scripted",
    "node-partition",
    "node-reboot",
    "memory-pressure",
    "python",
];
/// Plugins only the tests use.
const TEST_ONLY: &[&str] = &["misbehave"];
/// What the plugins are built from; `plugins/prebuilt` itself is left out.
const SOURCES: &[&str] = &["wit", "guest-sdk", "plugins", "tests/plugins", "rust-toolchain.toml"];
const PREBUILT: &str = "plugins/prebuilt";

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ is inside the workspace").to_path_buf();
    for watched in SOURCES.iter().chain(&["Cargo.toml", "Cargo.lock"]) {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=LABKUBELET_PLUGINS");
    println!("cargo:rerun-if-env-changed=LABKUBELET_UPDATE_PREBUILT");

    let sources_hash = hash_sources(&root);
    let prebuilt_dir = root.join(PREBUILT);
    let mut prebuilt_hash = std::fs::read_to_string(prebuilt_dir.join("SOURCES.sha256")).unwrap_or_default().trim().to_string();
    let wasm_target = has_wasm_target();
    let from_source = match env::var("LABKUBELET_PLUGINS").as_deref() {
        Ok("source") => true,
        Ok("prebuilt") => false,
        Ok(other) => panic!("LABKUBELET_PLUGINS={other:?}: use `source` or `prebuilt`"),
        Err(_) => wasm_target,
    };
    let out_dir = if from_source {
        let target_dir = env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target")).join("plugins");
        build_plugins(&root, &target_dir);
        let built = target_dir.join("wasm32-wasip2").join("plugin");
        if env::var_os("LABKUBELET_UPDATE_PREBUILT").is_some() {
            for name in STOCK.iter().chain(TEST_ONLY) {
                std::fs::copy(component_path(&built, name), component_path(&prebuilt_dir, name)).expect("copy a component into plugins/prebuilt");
            }
            std::fs::write(prebuilt_dir.join("SOURCES.sha256"), format!("{sources_hash}\n")).expect("write plugins/prebuilt/SOURCES.sha256");
            prebuilt_hash = sources_hash.clone();
        }
        built
    } else {
        if prebuilt_hash != sources_hash {
            println!(
                "cargo:warning=the prebuilt plugins in {PREBUILT} were built from other sources than these; install the wasm32-wasip2 target (rustup target add wasm32-wasip2) to build them, and run {PREBUILT}/update.sh"
            );
        }
        prebuilt_dir.clone()
    };

    let mut generated = String::from("/// The stock plugins' components, by plugin name.\npub(crate) const STOCK: &[(&str, &[u8])] = &[\n");
    for name in STOCK {
        let path = component_path(&out_dir, name);
        if !path.exists() {
            panic!("no plugin component at {}: install the wasm32-wasip2 target (rustup target add wasm32-wasip2) or restore {PREBUILT}", path.display());
        }
        generated.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", path.display().to_string()));
    }
    generated.push_str("];\n\n/// Where this build's plugin components are, test-only ones included.\npub const BUILD_DIR: &str = ");
    generated.push_str(&format!("{:?};\n", out_dir.display().to_string()));
    generated.push_str("\n/// Whether the components in plugins/prebuilt were built from the sources of this build.\n");
    generated.push_str(&format!("pub const PREBUILT_CURRENT: bool = {};\n", prebuilt_hash == sources_hash));
    generated.push_str("\n/// Whether the toolchain that built this has the wasm32-wasip2 target (plugins can be built).\n");
    generated.push_str(&format!("pub const HAS_WASM_TARGET: bool = {wasm_target};\n"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("stock_plugins.rs");
    std::fs::write(&out, generated).expect("write stock_plugins.rs");
}

fn component_path(out_dir: &Path, name: &str) -> PathBuf {
    out_dir.join(format!("{}.wasm", name.replace('-', "_")))
}

/// Whether the toolchain building this has the standard library for wasm32-wasip2.
fn has_wasm_target() -> bool {
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "sysroot"]).output() else { return false };
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    sysroot.join("lib/rustlib/wasm32-wasip2/lib").is_dir()
}

/// A SHA-256 over the path and content of every source file the plugins are built from.
fn hash_sources(root: &Path) -> String {
    let mut files = Vec::new();
    for source in SOURCES {
        collect(&root.join(source), &mut files);
    }
    files.retain(|f| !f.starts_with(root.join(PREBUILT)) && !f.components().any(|c| c.as_os_str() == "target"));
    files.sort();
    let mut hash = Sha256::new();
    for file in files {
        let relative = file.strip_prefix(root).unwrap_or(&file);
        hash.update(relative.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(std::fs::read(&file).unwrap_or_default());
        hash.update([0]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn collect(path: &Path, files: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
            collect(&entry.path(), files);
        }
    } else if path.is_file() {
        files.push(path.to_path_buf());
    }
}

fn build_plugins(root: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root).args(["build", "--target", "wasm32-wasip2", "--profile", "plugin", "--target-dir"]).arg(target_dir);
    for name in STOCK.iter().chain(TEST_ONLY) {
        cmd.args(["--package", name]);
    }
    if env::var_os("CARGO_NET_OFFLINE").is_some() {
        cmd.arg("--offline");
    }
    // The outer build's flags are for the host, not for wasm.
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "RUSTC_WORKSPACE_WRAPPER", "CARGO_BUILD_RUSTFLAGS"] {
        cmd.env_remove(var);
    }
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run cargo to build the plugins: {e}"));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        panic!("building the plugins for wasm32-wasip2 failed (LABKUBELET_PLUGINS=prebuilt uses the components in {PREBUILT} instead):\n{stderr}");
    }
}
