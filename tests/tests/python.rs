//! Python scenarios: a `.py` file dropped into the plugin folder serves pods through the stock
//! `python` plugin, an edit reloads it, and its mistakes are refused or contained with the
//! file and line named.

use labkubelet::plugin::{PluginEvent, PluginPolicy};
use labkubelet::runtime::*;
use labkubelet_tests::*;
use std::time::Duration;

/// The example scenario (examples/plugins/flaky.py): every second start of an app=flaky container exits 2; pulls of
/// `:canary` images fail.
const FLAKY: &str = include_str!("../../examples/plugins/flaky.py");

async fn python_lab(file: &str, source: &str) -> PluginLab {
    let lab = PluginLab::cached(PluginPolicy::default()).await;
    std::fs::write(lab.path(file), source).unwrap();
    let events = lab.sync().await;
    assert!(matches!(&events[..], [PluginEvent::Loaded { .. }]), "{events:?}");
    lab
}

/// Creates and starts the `attempt`th container `main` of a pod, as the kubelet restarts it.
async fn start(node: &dyn ContainerRuntime, sandbox: &str, image: &str, attempt: u32) -> String {
    let mut config = container("main", image);
    config.metadata.attempt = attempt;
    let id = node.create_container(sandbox, &config).await.expect("create");
    node.start_container(&id).await.expect("start");
    id
}

#[tokio::test(start_paused = true)]
async fn a_python_file_serves_its_pods_and_an_edit_changes_the_next_start() {
    let lab = python_lab("flaky.py", FLAKY).await;
    let node = lab.node("node-1");
    let info = node.plugin_info("flaky").await.unwrap();
    assert_eq!((info.name.as_str(), info.selector.as_str()), ("flaky", "app=flaky"));

    let flaky = pod("web-0", None, &[("app", "flaky")]);
    let err = node.pull_image("registry.lab/web:canary", None, Some(&flaky)).await.unwrap_err();
    assert_eq!((err.is_not_found(), err.to_string().ends_with("manifest unknown")), (true, true), "{err}");
    let other = pod("db-0", None, &[("app", "db")]);
    node.pull_image("registry.lab/web:canary", None, Some(&other)).await.expect("other pods pull");

    let sandbox = node.run_pod_sandbox(&flaky).await.unwrap();
    node.pull_image("nginx", None, Some(&flaky)).await.unwrap();
    let first = start(&node, &sandbox, "nginx", 0).await;
    let second = start(&node, &sandbox, "nginx", 1).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (first, second) = (node.container_status(&first).await.unwrap(), node.container_status(&second).await.unwrap());
    assert_eq!(first.state, ContainerState::Running, "the first start runs");
    assert_eq!((second.state, second.exit_code, second.reason.as_str()), (ContainerState::Exited, 2, "Error"), "the second exits 2");

    std::fs::write(lab.path("flaky.py"), FLAKY.replace("CODE = 2", "CODE = 3")).unwrap();
    let events = lab.sync().await;
    assert!(matches!(&events[..], [PluginEvent::Replaced { name, .. }] if name == "flaky"), "{events:?}");
    let fourth = start(&node, &sandbox, "nginx", 3).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let fourth = node.container_status(&fourth).await.unwrap();
    assert_eq!((fourth.state, fourth.exit_code), (ContainerState::Exited, 3), "the edit changed the next start");
}

/// An exec probe is a command run in the container: a scenario's `on_exec` answers it as it
/// answers `kubectl exec`, and a command it leaves alone runs in the container's shell.
#[tokio::test(start_paused = true)]
async fn on_exec_answers_exec_probes_as_it_answers_kubectl_exec() {
    let source = "SELECTOR = \"app=db\"\n\ndef on_exec(c, cmd):\n    if cmd[0] == \"pg_isready\":\n        return exec_result(2, \"\", \"no response\\n\")\n";
    let lab = python_lab("db.py", source).await;
    let node = lab.node("node-1");
    let (_, id) = start_pod(&node, &pod("db-0", None, &[("app", "db")]), "nginx").await;
    let exec = |command: &[&str]| ProbeAction::Exec(ExecProbe { command: command.iter().map(|c| c.to_string()).collect(), timeout_seconds: 1 });
    let probed = node.probe(&id, ProbeKind::Readiness, &exec(&["pg_isready"])).await.unwrap();
    assert_eq!((probed.outcome, probed.output.as_str()), (ProbeOutcome::Failure, "no response\n"));
    let ran = node.exec_sync(&id, &["pg_isready".to_string()], &[], Duration::ZERO).await.unwrap();
    assert_eq!(ran.exit_code, 2, "kubectl exec gets the same answer");
    let shell = node.probe(&id, ProbeKind::Readiness, &exec(&["sh", "-c", "test -d /"])).await.unwrap();
    assert_eq!(shell.outcome, ProbeOutcome::Success, "{}", shell.output);
}

#[tokio::test]
async fn a_broken_edit_is_refused_with_the_file_and_line_and_the_old_scenario_serves() {
    let lab = python_lab("flaky.py", FLAKY).await;
    std::fs::write(lab.path("flaky.py"), FLAKY.replace("CODE = 2", "CODE = = 2")).unwrap();
    let events = lab.sync().await;
    match &events[..] {
        [PluginEvent::Refused { error, still_serving, .. }] => {
            assert!(error.contains("flaky.py:3:") && error.contains("SyntaxError") && !error.contains("configuration of"), "{error}");
            assert_eq!(still_serving.as_deref(), Some("flaky"));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    std::fs::write(lab.path("flaky.py"), FLAKY.replace("CODE = 2", "CODE = 2\nLIMIT = CODE / 0")).unwrap();
    let events = lab.sync().await;
    match &events[..] {
        [PluginEvent::Refused { error, .. }] => assert!(error.contains("flaky.py:4:") && error.ends_with("ZeroDivisionError: division by zero"), "{error}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    let node = lab.node("node-1");
    let flaky = pod("web-0", None, &[("app", "flaky")]);
    assert!(node.pull_image("web:canary", None, Some(&flaky)).await.is_err(), "the old scenario serves");
}

#[tokio::test]
async fn a_hook_that_raises_loops_or_answers_wrongly_gets_the_default_and_the_plugin_serves_on() {
    let source = "SELECTOR = 'app=bad'\n\ndef on_pull(image, pod):\n    return {}['missing']\n\ndef on_create(c):\n    while True:\n        pass\n\ndef on_start(c):\n    return 42\n";
    let lab = python_lab("Bad_Hooks.py", source).await;
    let node = lab.node("node-1");
    let bad = pod("bad-0", None, &[("app", "bad")]);
    let (_, id) = start_pod(&node, &bad, "nginx").await;
    assert_eq!(node.container_status(&id).await.unwrap().state, ContainerState::Running);
    assert_eq!(node.plugin_info("bad-hooks").await.unwrap().name, "bad-hooks", "without NAME, the file's name as a plugin name");
}

#[tokio::test]
async fn state_is_kept_between_calls_and_across_a_reload() {
    let source = "SELECTOR = 'app=count'\nMOD = 3\n\ndef on_start(c):\n    state['starts'] = state.get('starts', 0) + 1\n    if state['starts'] % MOD == 0:\n        return exits(code=7)\n";
    let lab = python_lab("count.py", source).await;
    let node = lab.node("node-1");
    let counted = pod("count-0", None, &[("app", "count")]);
    let sandbox = node.run_pod_sandbox(&counted).await.unwrap();
    node.pull_image("nginx", None, Some(&counted)).await.unwrap();
    start(&node, &sandbox, "nginx", 0).await;
    start(&node, &sandbox, "nginx", 1).await;
    std::fs::write(lab.path("count.py"), source.replace("MOD = 3", "MOD = 3  # edited")).unwrap();
    assert!(matches!(&lab.sync().await[..], [PluginEvent::Replaced { .. }]));
    let third = start(&node, &sandbox, "nginx", 2).await;
    let exited = eventually("the third start to exit 7", Duration::from_secs(10), async || {
        let s = node.container_status(&third).await.ok()?;
        (s.state == ContainerState::Exited).then_some(s.exit_code)
    })
    .await;
    assert_eq!(exited, 7, "the count went on across the reload");
}

#[tokio::test]
async fn memory_without_bound_hits_the_cap_like_a_rust_plugin_and_the_scenario_recovers() {
    let lab = PluginLab::cached(PluginPolicy { memory_limit: 16 << 20, ..PluginPolicy::default() }).await;
    let source = "SELECTOR = 'app=hog'\n\ndef on_create(c):\n    hog = []\n    while True:\n        hog.append('x' * 1000000)\n";
    std::fs::write(lab.path("hog.py"), source).unwrap();
    assert!(matches!(&lab.sync().await[..], [PluginEvent::Loaded { .. }]));
    let node = lab.node("node-1");
    let hog = pod("hog-0", None, &[("app", "hog")]);
    let sandbox = node.run_pod_sandbox(&hog).await.unwrap();
    node.pull_image("nginx", None, Some(&hog)).await.unwrap();
    match node.create_container(&sandbox, &container("main", "nginx")).await {
        Err(RuntimeError::Trap { plugin, detail, .. }) => {
            assert_eq!(plugin, "hog");
            assert!(detail.starts_with("memory limit of 16 MiB reached"), "{detail}");
        }
        other => panic!("expected a trap at the memory cap, got {other:?}"),
    }
    assert_eq!(node.plugin_info("hog").await.unwrap().name, "hog", "the instance is replaced and answers");
}
