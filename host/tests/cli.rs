//! The `labkubelet plugin` commands as a user runs them.

#![allow(clippy::unwrap_used)] // a test fails where it unwraps

mod common;

use common::KillOnDrop;
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

/// Runs labkubelet with its output read line by line; it ends with the test.
fn spawn_lines(args: &[&str]) -> (Lines, KillOnDrop) {
    let mut child = Command::new(BIN).args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let lines = Lines::of(child.stdout.take().unwrap());
    (lines, KillOnDrop(child))
}

/// Waits for the agent of `root` to record where its node listens; returns the address.
fn endpoint_of(root: &Path) -> String {
    let endpoint = root.join("cli-node").join("endpoint");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !endpoint.exists() {
        assert!(Instant::now() < deadline, "the agent of {} recorded no endpoint", root.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::read_to_string(&endpoint).unwrap().trim().to_string()
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
fn check_places_a_typo_in_a_rules_file_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("scripted.yaml");
    let text = "# every third start of app=slow exits 2\nrules:\n  - match: { labels: { app: slow } }\n    calls: [pull-image]\n    delaySeconds: 15\n  - match: { labels: { app: slow }, everyNthStart: 3 }\n    exitt: { afterSeconds: 10, code: 2 }\n";
    std::fs::write(&rules, text).unwrap();
    // No component beside it: the stock plugin of its name checks it.
    let (ok, out) = labkubelet(&["plugin", "check", rules.to_str().unwrap()]);
    assert!(!ok, "{out}");
    let expected = format!(
        "refused: {}:7:5: rules[1]: unknown field `exitt`, expected one of `match`, `failPull`, `failSandbox`, `failCreate`, `failStart`, `exit`, `ignoreSigterm`, `probes`, `calls`, `delaySeconds`, `afterSeconds`, `forSeconds` (the configuration of builtin:scripted)\n",
        rules.display()
    );
    assert_eq!(out, expected);

    std::fs::write(&rules, text.replace("exitt:", "exit:")).unwrap();
    let (ok, out) = labkubelet(&["plugin", "check", rules.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("\nconfiguration: {} (accepted)\n", rules.display())), "{out}");

    // Beside its component, the component checks it, and a run refuses it in the same words.
    labkubelet::plugin::stock::install("scripted", dir.path()).unwrap();
    std::fs::write(&rules, text).unwrap();
    let (_, out) = labkubelet(&["plugin", "check", rules.to_str().unwrap()]);
    assert!(out.ends_with(&format!("(the configuration of {})\n", dir.path().join("scripted.wasm").display())), "{out}");
    let (ok, list) = labkubelet(&["plugin", "list", "--plugin-dir", dir.path().to_str().unwrap()]);
    assert!(!ok);
    assert!(list.contains(&format!("    {}:7:5: rules[1]: unknown field `exitt`", rules.display())), "{list}");
    assert!(!list.contains("wasm backtrace") && !list.contains("unreachable"), "{list}");

    let (ok, out) = labkubelet(&["plugin", "check", dir.path().join("nothing.yaml").to_str().unwrap()]);
    assert!(!ok && out.contains("cannot read"), "{out}");
    std::fs::write(dir.path().join("mine.json"), "{}").unwrap();
    let (ok, out) = labkubelet(&["plugin", "check", dir.path().join("mine.json").to_str().unwrap()]);
    assert!(!ok && out.contains("no stock plugin named \"mine\""), "{out}");
}

/// The `scripted` form of every recipe in the SDK's cookbook, as a newcomer would paste it, and
/// the example rules file.
#[test]
fn every_scripted_recipe_in_the_cookbook_is_accepted() {
    let cookbook = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/src/cookbook.rs")).unwrap();
    let mut recipes: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in cookbook.lines().map(|l| l.strip_prefix("//!").unwrap_or(l).strip_prefix(' ').unwrap_or("")) {
        match (&mut current, line) {
            (None, "```yaml") => current = Some(String::new()),
            (Some(_), "```") => recipes.extend(current.take()),
            (Some(text), line) => text.push_str(&format!("{line}\n")),
            (None, _) => {}
        }
    }
    assert!(recipes.len() >= 8, "found {} scripted recipes", recipes.len());
    // And the rules file the standalone lab starts with.
    recipes.push(std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/plugins/scripted.yaml")).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scripted.yaml");
    for recipe in recipes {
        std::fs::write(&file, &recipe).unwrap();
        let (ok, out) = labkubelet(&["plugin", "check", file.to_str().unwrap()]);
        assert!(ok, "{recipe}\n{out}");
    }
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
    // It builds anywhere: the SDK is written beside it, nothing points into this checkout.
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    assert!(manifest.contains(r#"labkubelet-guest = { path = "sdk/labkubelet-guest" }"#), "{manifest}");
    let checkout = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().canonicalize().unwrap();
    for file in ["Cargo.toml", "sdk/labkubelet-guest/Cargo.toml"] {
        let text = std::fs::read_to_string(crate_dir.join(file)).unwrap();
        assert!(!text.contains(checkout.to_str().unwrap()) && !text.contains("workspace = true"), "{file}: {text}");
    }

    // Build as the README says; the shared target folder only saves time across runs.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold-test");
    every_cookbook_recipe_builds_in(&crate_dir, &target);
    if !labkubelet::plugin::stock::HAS_WASM_TARGET {
        // A toolchain without the target (the machines CI runs on) can only show that the
        // scaffold compiles against the SDK, for the host; the README tells plugin authors
        // to add the target.
        let check = Command::new(env!("CARGO")).arg("build").current_dir(&crate_dir).env("CARGO_TARGET_DIR", &target).output().unwrap();
        assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
        scaffold_docs_have_the_cookbook(&crate_dir, &target);
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
    scaffold_docs_have_the_cookbook(&crate_dir, &target);
    let built = target.join("wasm32-wasip2/release/slow_start.wasm");

    let plugins = work.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let (mut lines, _guard) = spawn_lines(&["plugin", "watch", "--plugin-dir", plugins.to_str().unwrap()]);
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

/// The cookbook promises that every recipe's Rust builds as it is in a scaffolded crate:
/// each is checked as the crate's `src/lib.rs`, then the scaffold's own is put back.
fn every_cookbook_recipe_builds_in(crate_dir: &Path, target: &Path) {
    let cookbook = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/src/cookbook.rs")).unwrap();
    let (mut recipes, mut open): (Vec<String>, Option<(bool, String)>) = (Vec::new(), None);
    for line in cookbook.lines().filter_map(|l| l.strip_prefix("//!")).map(|l| l.strip_prefix(' ').unwrap_or(l)) {
        match (&mut open, line) {
            (None, fence) if fence.starts_with("```") => open = Some((fence == "```", String::new())),
            (Some(_), "```") => {
                if let Some((true, code)) = open.take() {
                    recipes.push(code);
                }
            }
            (Some((_, code)), text) => code.push_str(&format!("{text}\n")),
            (None, _) => {}
        }
    }
    assert!(recipes.len() >= 10, "the cookbook's Rust recipes: found {}", recipes.len());
    let lib = crate_dir.join("src/lib.rs");
    let scaffold = std::fs::read_to_string(&lib).unwrap();
    for recipe in &recipes {
        std::fs::write(&lib, recipe).unwrap();
        let check = Command::new(env!("CARGO")).args(["check", "--quiet"]).current_dir(crate_dir).env("CARGO_TARGET_DIR", target).output().unwrap();
        assert!(check.status.success(), "a cookbook recipe does not build in a scaffold:\n{recipe}\n{}", String::from_utf8_lossy(&check.stderr));
    }
    std::fs::write(&lib, scaffold).unwrap();
}

/// The reference the scaffold's README points at: `cargo doc -p labkubelet-guest` in the crate.
fn scaffold_docs_have_the_cookbook(crate_dir: &Path, target: &Path) {
    let doc = Command::new(env!("CARGO"))
        .args(["doc", "--no-deps", "-p", "labkubelet-guest"])
        .current_dir(crate_dir)
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap();
    assert!(doc.status.success(), "{}", String::from_utf8_lossy(&doc.stderr));
    let cookbook = std::fs::read_to_string(target.join("doc/labkubelet_guest/cookbook/index.html")).unwrap();
    assert!(cookbook.contains("Every Nth start fails") && cookbook.contains("before_call"), "the cookbook page lacks its recipes");
}

/// `plugin new --python` writes a scenario `plugin check` accepts as it is, and a run serves
/// by its name and selector; `check` places a mistake at its line.
#[test]
fn a_python_scenario_is_scaffolded_checked_and_its_mistakes_placed() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = labkubelet(&["plugin", "new", "flaky", "--python", "--path", dir.path().to_str().unwrap()]);
    assert!(ok, "{out}");
    let file = dir.path().join("flaky.py");
    let (ok, out) = labkubelet(&["plugin", "check", file.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("serves: pods annotated labkubelet.io/scenario: flaky; by label: app=flaky"), "{out}");
    let (ok, again) = labkubelet(&["plugin", "new", "flaky", "--python", "--path", dir.path().to_str().unwrap()]);
    assert!(!ok && again.contains("must not exist yet"), "{again}");

    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("    if c.attempt % 2 == 1:", "    if c.attempt % 2 == 1\n")).unwrap();
    let line = text.lines().position(|l| l == "    if c.attempt % 2 == 1:").unwrap() + 1;
    let (ok, out) = labkubelet(&["plugin", "check", file.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(out.starts_with(&format!("refused: {}:{line}:", file.display())) && out.contains("SyntaxError"), "{out}");
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
    std::fs::write(&config, "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n").unwrap();
    let (ok, out) = labkubelet(&[&boot[..], &["--hostname-override", "n1", "--config", config.to_str().unwrap()]].concat());
    assert!(!ok);
    assert!(out.contains(&format!("{}: unknown field `cgroupDriver`", config.display())), "{out}");
    std::fs::write(&config, "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nevictionHard: {memory.free: 1Gi}\n").unwrap();
    let (ok, out) = labkubelet(&[&boot[..], &["--hostname-override", "n1", "--config", config.to_str().unwrap()]].concat());
    assert!(!ok);
    assert!(out.contains("evictionHard: unknown signal \"memory.free\"; the signals are memory.available"), "{out}");
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
    let server_b = endpoint_of(b.path());
    let (ok, out) = labkubelet(&["trigger", "--root-dir", root_a, "--server", &server_b, "healthy", "kill"]);
    assert!(!ok);
    assert!(out.contains(&format!("the agent at {server_b} presents a certificate other than {root_a}/pki/kubelet.crt")), "{out}");
}

#[test]
fn exec_runs_a_command_in_a_standalone_agents_container() {
    let dir = tempfile::tempdir().unwrap();
    let _agent = standalone_agent(dir.path());
    let root = dir.path().to_str().unwrap();
    // Once the pod runs: its hostname, as `kubectl exec web -- cat /etc/hostname` shows it.
    let out = trigger_until(&["exec", "--root-dir", root, "web-cli-node", "--", "cat", "/etc/hostname"], |o| o == "web-cli-node\n");
    assert_eq!(out, "web-cli-node\n");
    let run = |args: &[&str]| Command::new(BIN).args(["exec", "--root-dir", root]).args(args).output().expect("run labkubelet exec");
    let failed = run(&["web-cli-node", "--", "sh", "-c", "echo out; echo oops >&2; exit 3"]);
    assert_eq!(failed.status.code(), Some(3), "the command's exit code");
    assert_eq!((String::from_utf8_lossy(&failed.stdout).as_ref(), String::from_utf8_lossy(&failed.stderr).as_ref()), ("out\n", "oops\n"));
    let (ok, out) = labkubelet(&["exec", "--root-dir", root, "nope", "--", "true"]);
    assert!(!ok);
    assert!(out.contains("no pod default/nope on the agent's node; its pods: default/web-cli-node"), "{out}");
    let (ok, out) = labkubelet(&["exec", "--root-dir", root, "-c", "nope", "web-cli-node", "--", "true"]);
    assert!(!ok && out.contains("the agent refused to run the command in default/web-cli-node/nope"), "{out}");

    // `-i`: a shell reads its lines from stdin, with state from line to line; its exit status
    // is the last command's, as at the end of a script.
    let mut shell = Command::new(BIN)
        .args(["exec", "--root-dir", root, "-i", "web-cli-node", "--", "sh"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run labkubelet exec -i");
    std::io::Write::write_all(&mut shell.stdin.take().expect("stdin"), b"cd /tmp\ntouch a\nls\nfalse").expect("write the script");
    let done = shell.wait_with_output().expect("labkubelet exec -i ends");
    assert_eq!((done.status.code(), String::from_utf8_lossy(&done.stdout).as_ref()), (Some(1), "a\n"), "{}", String::from_utf8_lossy(&done.stderr));
    let (ok, out) = labkubelet(&["exec", "--root-dir", root, "-i", "web-cli-node", "--", "cat"]);
    assert!(!ok && out.contains("-i passes stdin to a shell only"), "{out}");
}

#[test]
fn run_prints_plugin_changes_and_plugin_list_asks_the_running_agent() {
    let root = tempfile::tempdir().unwrap();
    let (manifests, plugins) = (root.path().join("manifests"), root.path().join("plugins"));
    std::fs::create_dir_all(&manifests).unwrap();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default, annotations: {labkubelet.io/scenario: scripted}}\nspec: {containers: [{name: app, image: nginx:1.25}]}\n";
    std::fs::write(manifests.join("web.yaml"), pod).unwrap();
    std::fs::create_dir_all(&plugins).unwrap();
    labkubelet::plugin::stock::install("scripted", &plugins).unwrap();
    let (root_dir, manifests_dir, plugin_dir) = (root.path().to_str().unwrap(), manifests.to_str().unwrap(), plugins.to_str().unwrap());
    let (mut lines, _agent) = spawn_lines(&[
        "run",
        "--root-dir",
        root_dir,
        "--pod-manifest-path",
        manifests_dir,
        "--plugin-dir",
        plugin_dir,
        "--hostname-override",
        "cli-node",
        "--port",
        "0",
        "--healthz-port",
        "0",
    ]);
    lines.wait_for(|l| l.starts_with("node cli-node: kubelet API on https://"), Duration::from_secs(60));

    let listed = trigger_until(&["plugin", "list", "--root-dir", root_dir], |o| o.lines().any(|l| l.starts_with("scripted ") && l.contains(" 1     serving")));
    assert!(listed.starts_with("node cli-node\nNAME"), "{listed}");
    assert!(listed.lines().any(|l| l.starts_with("healthy ") && l.contains("(every other pod)") && l.ends_with("builtin:healthy")), "{listed}");
    // What was compiled is kept for the next run (built-in healthy and scripted), the agent's alone.
    let kept: Vec<std::path::PathBuf> = std::fs::read_dir(root.path().join("compiled-plugins"))
        .expect("the compiled plugins' folder")
        .filter_map(|e| Some(e.ok()?.path()).filter(|p| p.extension().is_some_and(|x| x == "cwasm")))
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    for file in &kept {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600, "{}", file.display());
    }

    let rules = plugins.join("scripted.yaml");
    std::fs::write(&rules, "rules:\n  - exitt: { afterSeconds: 1 }\n").unwrap();
    let refused = lines.wait_for(|l| l.contains(" plugin refused "), Duration::from_secs(60));
    let why = format!("{}:2:5: rules[0]: unknown field `exitt`", rules.display());
    assert!(refused.contains(&why) && refused.ends_with("; scripted keeps serving as before"), "{refused}");
    let (ok, listed) = labkubelet(&["plugin", "list", "--root-dir", root_dir]);
    assert!(!ok, "a refused file makes list fail: {listed}");
    let at = listed
        .lines()
        .position(|l| l.starts_with("(scripted)") && l.contains(" refused ") && l.ends_with(&plugins.join("scripted.wasm").display().to_string()));
    let error = at.and_then(|i| listed.lines().nth(i + 1)).unwrap_or_default();
    assert!(error.starts_with(&format!("    {why}")), "the refused file and, under it, why: {listed}");

    std::fs::write(&rules, "rules: []\n").unwrap();
    let swapped = lines.wait_for(|l| l.contains(" plugin swapped scripted "), Duration::from_secs(60));
    assert!(swapped.ends_with(&format!("from {}", plugins.join("scripted.wasm").display())), "{swapped}");
}

/// One HTTP/1.1 GET on a plain connection: the status line and the body.
fn http_get(address: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (head.lines().next().unwrap_or_default().to_string(), body.to_string())
}

#[test]
fn timeline_serve_gives_the_projector_a_page_that_redraws_itself() {
    let root = tempfile::tempdir().unwrap();
    let _agent = standalone_agent(root.path());
    endpoint_of(root.path());
    let (mut lines, _serving) = spawn_lines(&["timeline", "--root-dir", root.path().to_str().unwrap(), "--serve", "127.0.0.1:0"]);
    let line = lines.wait_for(|l| l.starts_with("the live timeline of "), Duration::from_secs(30));
    let address = line.split("http://").nth(1).and_then(|rest| rest.split('/').next()).unwrap().to_string();

    let (status, page) = http_get(&address, "/");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(page.contains(r#"fetch("/timeline.svg""#) && page.contains("setInterval(refresh, 2000)"), "{page}");
    let (status, picture) = http_get(&address, "/timeline.svg");
    assert_eq!(status, "HTTP/1.1 200 OK", "{picture}");
    assert!(picture.starts_with("<svg") && picture.contains("labkubelet timeline: node cli-node"), "{picture}");
}

#[test]
fn new_inside_a_checkout_scaffolds_beside_it() {
    let work = tempfile::tempdir().unwrap();
    let checkout = work.path().join("labkubelet");
    std::fs::create_dir_all(checkout.join("wit")).unwrap();
    std::fs::create_dir_all(checkout.join("guest-sdk")).unwrap();
    std::fs::create_dir_all(checkout.join("examples/plugins")).unwrap();
    std::fs::write(checkout.join("wit/runtime.wit"), "").unwrap();
    std::fs::write(checkout.join("guest-sdk/Cargo.toml"), "").unwrap();
    let out = Command::new(BIN).args(["plugin", "new", "beside"]).current_dir(checkout.join("examples/plugins")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(work.path().join("beside/Cargo.toml").is_file(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!checkout.join("examples/plugins/beside").exists());
    // Anywhere else: in the current folder.
    let out = Command::new(BIN).args(["plugin", "new", "here"]).current_dir(work.path()).output().unwrap();
    assert!(out.status.success() && work.path().join("here/src/lib.rs").is_file(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The view after a reboot shows the node's pods of the new boot only (it showed the old run's
/// beside them, a line each second in turn).
#[test]
fn the_view_after_a_reboot_shows_the_pods_of_the_new_boot_only() {
    let root = tempfile::tempdir().unwrap();
    let manifests = root.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("web.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default}\nspec: {containers: [{name: app, image: nginx:1.25}]}\n",
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--root-dir", root.path().to_str().unwrap(), "--pod-manifest-path", manifests.to_str().unwrap()])
        .args(["--hostname-override", "view-node", "--port", "0", "--healthz-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _agent = KillOnDrop(child);
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // The view's line for the pod: name, ready, status, restarts, plugin, node.
    let restarts = |line: &str| -> Option<String> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.first() == Some(&"web-view-node")).then(|| fields.get(3).map(|s| s.to_string()).unwrap_or_default())
    };
    let next_web = || loop {
        let line = seen.recv_timeout(Duration::from_secs(60)).expect("a line of the view within 60 s");
        if let Some(count) = restarts(&line) {
            return (line, count);
        }
    };
    while next_web().0.split_whitespace().nth(2) != Some("Running") {}
    let dir = root.path().to_str().unwrap();
    trigger_until(&["node", "--root-dir", dir, "reboot"], |o| o.starts_with("accepted:"));
    while next_web().1 != "1" {}
    // A change after the reboot, to see what the view printed meanwhile: until it shows, no line
    // of the old boot's pod.
    trigger_until(&["trigger", "--root-dir", dir, "healthy", "kill", "--pod", "web-view-node"], |o| o.starts_with("accepted:"));
    loop {
        let (line, count) = next_web();
        assert_ne!(count, "0", "the old boot's pod, shown after the reboot: {line}");
        if count == "2" {
            break;
        }
    }
}

#[test]
fn node_actions_are_sent_to_the_agent_and_journaled_and_a_wrong_one_lists_them() {
    let root = tempfile::tempdir().unwrap();
    let _agent = standalone_agent(root.path());
    let dir = root.path().to_str().unwrap();
    let out = trigger_until(&["node", "--root-dir", dir, "network-down"], |o| o.starts_with("accepted:"));
    assert_eq!(out.trim(), "accepted: the pod network is down");
    let (ok, out) = labkubelet(&["node", "--root-dir", dir, "network-down"]);
    assert!(ok && out.contains("the pod network is down already"), "{out}");
    let (ok, out) = labkubelet(&["node", "--root-dir", dir, "unplug"]);
    assert!(!ok);
    assert!(out.contains("no node action \"unplug\"; the actions are: partition, heal, kubelet-restart, reboot"), "{out}");
    let (ok, out) = labkubelet(&["node", "--root-dir", dir, "heal"]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "accepted: healed: the pod network is back");
    let (ok, timeline) = labkubelet(&["timeline", "--root-dir", dir]);
    assert!(ok, "{timeline}");
    assert!(timeline.contains(r#""plugin":"node","action":"network-down","result":"accepted: the pod network is down""#), "{timeline}");
}

/// On a terminal (`script` gives the agent one) the view clears the screen at every redraw:
/// the node's address stays above the table.
#[test]
fn the_terminal_view_keeps_the_nodes_address_above_the_table() {
    use std::io::Read;
    let root = tempfile::tempdir().unwrap();
    let manifests = root.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("web.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default}\nspec: {containers: [{name: app, image: nginx:1.25}]}\n",
    )
    .unwrap();
    let command = format!(
        "{BIN} run --root-dir {} --pod-manifest-path {} --hostname-override view-node --port 0 --healthz-port 0",
        root.path().join("state").display(),
        manifests.display()
    );
    // Killing `script` closes the terminal: the agent gets its hangup and ends.
    let mut child =
        Command::new("script").args(["-qfec", &command, "/dev/null"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let _agent = KillOnDrop(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut chunk) {
            if n == 0 || tx.send(chunk[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let (deadline, mut shown) = (Instant::now() + Duration::from_secs(60), Vec::new());
    loop {
        let text = String::from_utf8_lossy(&shown).into_owned();
        // The last screen drawn in full: between the last two clears.
        let screens: Vec<&str> = text.split("\x1b[H\x1b[2J").collect();
        if let [.., full, _] = screens.as_slice()
            && full.contains("web-view-node")
        {
            let banner = full.lines().next().unwrap_or_default();
            assert!(banner.starts_with("node view-node: kubelet API on https://127.0.0.1:"), "{full}");
            break;
        }
        assert!(Instant::now() < deadline, "no screen with the pod: {text}");
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(bytes) => shown.extend_from_slice(&bytes),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the agent ended: {text}"),
        }
    }
}
