//! The `labkubelet plugin` commands as a user runs them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_labkubelet");

fn labkubelet(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(args).output().expect("run labkubelet");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Reads a child's stdout lines on a thread, so a test can wait for a line with a deadline.
struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn of(stdout: std::process::ChildStdout) -> Self {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines { rx, seen: Vec::new() }
    }

    fn wait_for(&mut self, what: impl Fn(&str) -> bool, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if what(&line) => return line,
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no such line within {within:?}; saw {:#?}", self.seen),
            }
        }
    }
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn check_explains_what_a_component_serves_or_why_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("crashloop.wasm");
    std::fs::write(&good, labkubelet::plugin::stock::component("crashloop").unwrap()).unwrap();
    let (ok, out) = labkubelet(&["plugin", "check", good.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.starts_with("ok: crashloop 0.1.0 — Containers exit with an error after a few seconds: CrashLoopBackOff.\n"), "{out}");
    assert!(out.contains("\n  kill         the target containers die now"), "{out}");

    let bad = dir.path().join("module.wasm");
    std::fs::write(&bad, b"\0asm\x01\0\0\0").unwrap();
    let (ok, out) = labkubelet(&["plugin", "check", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("a core WebAssembly module, not a component; build for the wasm32-wasip2 target"), "{out}");
}

#[test]
fn list_shows_loaded_and_refused_plugins() {
    let dir = tempfile::tempdir().unwrap();
    labkubelet::plugin::stock::install("oomkill", dir.path()).unwrap();
    std::fs::write(dir.path().join("broken.wasm"), b"nope").unwrap();
    let (ok, out) = labkubelet(&["plugin", "list", "--plugin-dir", dir.path().to_str().unwrap()]);
    assert!(!ok, "a refused file makes list fail: {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{out}");
    assert!(lines.iter().any(|l| l.starts_with("oomkill ") && l.contains("loaded")), "{out}");
    assert!(lines.iter().any(|l| l.starts_with("healthy ") && l.contains("builtin:healthy")), "{out}");
    assert!(lines.iter().any(|l| l.contains("refused") && l.ends_with("broken.wasm")), "{out}");
}

#[test]
fn a_scaffolded_plugin_is_built_and_picked_up_by_a_running_labkubelet() {
    let work = tempfile::tempdir().unwrap();
    let crate_dir = work.path().join("slow-start");
    let (ok, out) = labkubelet(&["plugin", "new", "slow-start", "--path", crate_dir.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("cargo build --release --target wasm32-wasip2"), "{out}");

    // Build as the README says; the shared target folder only saves time across runs.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold-test");
    if !labkubelet::plugin::stock::HAS_WASM_TARGET {
        // A toolchain without the target (the machines CI runs on) can only show that the
        // scaffold compiles against the SDK, for the host; the README tells plugin authors
        // to add the target.
        let check = Command::new(env!("CARGO")).arg("build").current_dir(&crate_dir).env("CARGO_TARGET_DIR", &target).output().unwrap();
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
        eprintln!("no wasm32-wasip2 target in this toolchain: built the scaffold for the host only, not loaded into an agent");
        return;
    }
    let build = Command::new(env!("CARGO"))
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    assert!(build.status.success(), "{}", String::from_utf8_lossy(&build.stderr));
    let built = target.join("wasm32-wasip2/release/slow_start.wasm");

    let plugins = work.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let mut child =
        Command::new(BIN).args(["plugin", "watch", "--plugin-dir", plugins.to_str().unwrap()]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut lines = Lines::of(child.stdout.take().unwrap());
    let _guard = KillOnDrop(child);
    lines.wait_for(|l| l.starts_with("watching "), Duration::from_secs(60));

    std::fs::copy(&built, plugins.join("slow-start.wasm")).unwrap();
    let loaded = lines.wait_for(|l| l.starts_with("loaded slow-start"), Duration::from_secs(60));
    assert!(loaded.ends_with("slow-start.wasm"), "{loaded}");
    lines.wait_for(|l| l == "slow-start 0.1.0 answering", Duration::from_secs(30));

    std::fs::write(plugins.join("slow-start.wasm"), b"garbage").unwrap();
    let refused = lines.wait_for(|l| l.starts_with("refused "), Duration::from_secs(30));
    assert!(refused.ends_with("; slow-start keeps serving as before"), "{refused}");

    std::fs::remove_file(plugins.join("slow-start.wasm")).unwrap();
    lines.wait_for(|l| l.starts_with("unloaded slow-start"), Duration::from_secs(30));
}

#[test]
fn new_refuses_bad_names_and_existing_folders() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = labkubelet(&["plugin", "new", "Bad_Name", "--path", dir.path().join("x").to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("plugin name \"Bad_Name\" is not valid"), "{out}");
    let (ok, out) = labkubelet(&["plugin", "new", "fine", "--path", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(out.contains("already exists"), "{out}");
}

#[test]
fn install_writes_stock_plugins_and_names_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    let (ok, out) = labkubelet(&["plugin", "install", "--plugin-dir", plugins.to_str().unwrap(), "crashloop", "scripted"]);
    assert!(ok, "{out}");
    let mut files: Vec<String> = std::fs::read_dir(&plugins).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files, ["crashloop.wasm", "scripted.wasm"]);
    assert_eq!(std::fs::read(plugins.join("crashloop.wasm")).unwrap(), labkubelet::plugin::stock::component("crashloop").unwrap());
    let (ok, out) = labkubelet(&["plugin", "install", "--plugin-dir", plugins.to_str().unwrap(), "nope"]);
    assert!(!ok);
    assert!(
        out.contains("no stock plugin named nope; the stock plugins are: healthy, crashloop, oomkill, image-pull-fail, pleg-stall, readiness-flap, scripted"),
        "{out}"
    );
}

#[test]
fn run_explains_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let (ok, out) = labkubelet(&["run", "--root-dir", root]);
    assert!(!ok);
    assert!(out.contains("standalone mode (no --kubeconfig, no --bootstrap-kubeconfig) runs static pods only: pass --pod-manifest-path"), "{out}");
    // A port in use: the agent says which and what to do, and exits non-zero.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let (ok, out) = labkubelet(&["run", "--root-dir", root, "--pod-manifest-path", root, "--port", &port, "--healthz-port", "0"]);
    assert!(!ok);
    assert!(out.contains(&format!("cannot listen on 127.0.0.1:{port}")) && out.contains("Choose another port with --port"), "{out}");
    let boot = ["run", "--root-dir", root, "--bootstrap-kubeconfig", "/nonexistent"];
    let (ok, out) = labkubelet(&[&boot[..], &["--hostname-override", "Bad_Name"]].concat());
    assert!(!ok);
    assert!(out.contains("node name \"Bad_Name\" is not a valid DNS subdomain"), "{out}");
    let (ok, out) = labkubelet(&[&boot[..], &["--hostname-override", "n1", "--register-with-taints", "dedicated=lab:Sometimes"]].concat());
    assert!(!ok);
    assert!(out.contains("--register-with-taints \"dedicated=lab:Sometimes\": effect must be NoSchedule, PreferNoSchedule or NoExecute"), "{out}");
    let (ok, out) = labkubelet(&[&boot[..], &["--hostname-override", "n1", "--node-labels", "nolabel"]].concat());
    assert!(!ok);
    assert!(out.contains("--node-labels \"nolabel\": expected key=value"), "{out}");
    let (ok, out) = labkubelet(&[&boot[..], &["--hostname-override", "n1", "--capacity", "cpu=2,memory=lots"]].concat());
    assert!(!ok);
    assert!(out.contains("--capacity \"memory=lots\": \"lots\" is not a resource quantity"), "{out}");
    let (ok, out) = labkubelet(&[&boot[..], &["--hostname-override", "n1"]].concat());
    assert!(!ok);
    assert!(out.contains("/nonexistent"), "a missing bootstrap kubeconfig is named: {out}");
    let config = dir.path().join("kubelet-config.yaml");
    std::fs::write(&config, "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nevictionHard: {}\n").unwrap();
    let (ok, out) = labkubelet(&[&boot[..], &["--hostname-override", "n1", "--config", config.to_str().unwrap()]].concat());
    assert!(!ok);
    assert!(out.contains(&format!("{}: unknown field `evictionHard`", config.display())), "{out}");
}

/// A standalone agent on a port of its choosing, with one static pod; ends with the test.
fn standalone_agent(root: &Path) -> KillOnDrop {
    let manifests = root.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default}\nspec: {containers: [{name: app, image: nginx:1.25}]}\n";
    std::fs::write(manifests.join("web.yaml"), pod).unwrap();
    let child = Command::new(BIN)
        .args(["run", "--root-dir", root.to_str().unwrap(), "--pod-manifest-path", manifests.to_str().unwrap()])
        .args(["--hostname-override", "cli-node", "--port", "0", "--healthz-port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    KillOnDrop(child)
}

/// Polls `labkubelet trigger` until it gives an answer that `done` accepts.
fn trigger_until(args: &[&str], done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, out) = labkubelet(args);
        if done(&out) {
            return out;
        }
        assert!(Instant::now() < deadline, "labkubelet {args:?}: no answer like that within 60 s; last: {out}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn trigger_finds_the_agent_of_a_root_dir_and_says_when_the_certificate_is_anothers() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_agent_a, _agent_b) = (standalone_agent(a.path()), standalone_agent(b.path()));
    // --root-dir alone: the agent recorded where it listens.
    let root_a = a.path().to_str().unwrap();
    let out = trigger_until(&["trigger", "--root-dir", root_a, "healthy", "kill", "--pod", "web-cli-node", "code=1"], |o| o.starts_with("accepted:"));
    assert!(out.contains("killed 1 container(s) with exit code 1"), "{out}");
    // Agent B's address with agent A's certificate.
    let endpoint = b.path().join("cli-node").join("endpoint");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !endpoint.exists() {
        assert!(Instant::now() < deadline, "agent B recorded no endpoint");
        std::thread::sleep(Duration::from_millis(100));
    }
    let server_b = std::fs::read_to_string(&endpoint).unwrap().trim().to_string();
    let (ok, out) = labkubelet(&["trigger", "--root-dir", root_a, "--server", &server_b, "healthy", "kill"]);
    assert!(!ok);
    assert!(out.contains(&format!("the agent at {server_b} presents a certificate other than {root_a}/pki/kubelet.crt")), "{out}");
}
