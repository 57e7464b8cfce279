//! Builds the stock plugins (and the test-only ones) for wasm32-wasip2 with a nested cargo,
//! the way wasmtime builds its test programs, so `cargo build` and `cargo test` of the host
//! need no extra command. The stock components are embedded in the binary.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Stock plugins: (plugin name, crate name).
const STOCK: &[&str] = &["healthy", "crashloop", "oomkill", "image-pull-fail", "pleg-stall", "readiness-flap", "scripted"];
/// Plugins only the tests use.
const TEST_ONLY: &[&str] = &["misbehave"];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ is inside the workspace").to_path_buf();
    for watched in ["wit", "guest-sdk", "plugins", "tests/plugins", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target")).join("plugins");
    build_plugins(&root, &target_dir);

    let out_dir = target_dir.join("wasm32-wasip2").join("plugin");
    let mut generated = String::from("/// The stock plugins' components, by plugin name.\npub(crate) const STOCK: &[(&str, &[u8])] = &[\n");
    for name in STOCK {
        let path = component_path(&out_dir, name);
        generated.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", path.display().to_string()));
    }
    generated.push_str("];\n\n/// Where this build put the compiled plugin components, test-only ones included.\npub const BUILD_DIR: &str = ");
    generated.push_str(&format!("{:?};\n", out_dir.display().to_string()));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("stock_plugins.rs");
    std::fs::write(&out, generated).expect("write stock_plugins.rs");
}

fn component_path(out_dir: &Path, name: &str) -> PathBuf {
    out_dir.join(format!("{}.wasm", name.replace('-', "_")))
}

fn build_plugins(root: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--target", "wasm32-wasip2", "--profile", "plugin", "--target-dir"])
        .arg(target_dir);
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
        let hint = if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
            "\nThe wasm32-wasip2 target is missing: rust-toolchain.toml lists it, so a rustup-managed cargo installs it; otherwise run `rustup target add wasm32-wasip2`."
        } else {
            ""
        };
        panic!("building the plugins for wasm32-wasip2 failed:\n{stderr}{hint}");
    }
}
