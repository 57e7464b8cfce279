//! The Python form of every recipe in the SDK's cookbook, pasted as a newcomer would, loads and
//! does what its recipe says, in virtual time.

use labkubelet::plugin::{PluginEvent, PluginPolicy, PluginRuntime};
use labkubelet::runtime::*;
use labkubelet_tests::*;
use std::time::Duration;

/// The cookbook's Python blocks, by the recipe's heading.
fn recipes() -> Vec<(String, String)> {
    let cookbook = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/src/cookbook.rs")).unwrap();
    let (mut recipes, mut heading, mut block) = (Vec::new(), String::new(), None::<String>);
    for line in cookbook.lines().map(|l| l.strip_prefix("//!").unwrap_or(l).strip_prefix(' ').unwrap_or("")) {
        match (&mut block, line) {
            (None, "```python") => block = Some(String::new()),
            (Some(code), "```") => {
                recipes.push((heading.clone(), std::mem::take(code)));
                block = None;
            }
            (Some(code), _) => code.push_str(&format!("{line}\n")),
            (None, _) => {
                if let Some(h) = line.strip_prefix("# ") {
                    heading = h.to_string();
                }
            }
        }
    }
    recipes
}

/// A lab with the recipe as `recipe.py`; pods pick it by annotation.
async fn lab_with(heading: &str) -> (PluginLab, PluginRuntime) {
    let (_, code) = recipes().into_iter().find(|(h, _)| h == heading).unwrap_or_else(|| panic!("no Python form of {heading:?}"));
    let lab = PluginLab::cached(PluginPolicy::default()).await;
    std::fs::write(lab.path("recipe.py"), code).unwrap();
    let events = lab.sync().await;
    assert!(matches!(&events[..], [PluginEvent::Loaded { .. }]), "{heading}: {events:?}");
    let node = lab.node("node-1");
    (lab, node)
}

fn served(name: &str, labels: &[(&str, &str)]) -> PodSandboxConfig {
    pod(name, Some("recipe"), labels)
}

/// Starts the `attempt`th container `main` of a pod's sandbox.
async fn start(node: &PluginRuntime, sandbox: &str, attempt: u32) -> String {
    let mut config = container("main", "nginx");
    config.metadata.attempt = attempt;
    let id = node.create_container(sandbox, &config).await.expect("create");
    node.start_container(&id).await.expect("start");
    id
}

async fn exit_of(node: &PluginRuntime, id: &str) -> Option<(i32, String)> {
    let s = node.container_status(id).await.unwrap();
    (s.state == ContainerState::Exited).then_some((s.exit_code, s.reason))
}

#[test]
fn every_recipe_has_its_python_form_or_says_it_has_none() {
    let cookbook = std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk/src/cookbook.rs")).unwrap();
    let headings = cookbook.lines().filter(|l| l.starts_with("//! # ")).count();
    assert_eq!(recipes().len() + cookbook.matches("//! (no Python form)").count(), headings);
}

#[tokio::test(start_paused = true)]
async fn slow_pulls_and_slow_starts_take_their_time() {
    let (_lab, node) = lab_with("Slow image pull").await;
    let started = tokio::time::Instant::now();
    node.pull_image("nginx", None, Some(&served("a", &[("app", "slow")]))).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(15));
    node.pull_image("nginx", None, Some(&served("b", &[]))).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(15), "other pods pull at once");

    let (_lab, node) = lab_with("Slow start").await;
    let p = served("a", &[("app", "slow")]);
    let sandbox = node.run_pod_sandbox(&p).await.unwrap();
    node.pull_image("nginx", None, Some(&p)).await.unwrap();
    let started = tokio::time::Instant::now();
    start(&node, &sandbox, 0).await;
    assert_eq!(started.elapsed(), Duration::from_secs(20));
}

#[tokio::test(start_paused = true)]
async fn exits_come_when_and_how_the_recipes_say() {
    for (heading, attempts, after, code, reason) in [
        ("Crash after N seconds", 0, 10, 1, "Error"),
        ("Every Nth start fails", 2, 10, 2, "Error"),
        ("Fails at once", 0, 0, 1, "Error"),
        ("A sequence of attempts", 0, 20, 137, "OOMKilled"),
        ("Settings from the configuration file", 0, 10, 1, "Error"),
    ] {
        let (_lab, node) = lab_with(heading).await;
        let p = served("a", &[("app", "x")]);
        let (sandbox, _) = start_pod(&node, &p, "nginx").await;
        let id = start(&node, &sandbox, attempts).await;
        if after > 0 {
            tokio::time::sleep(Duration::from_secs(after - 1)).await;
            assert_eq!(exit_of(&node, &id).await, None, "{heading}: still running before {after} s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(exit_of(&node, &id).await, Some((code, reason.to_string())), "{heading}");
    }
    let (_lab, node) = lab_with("Every Nth start fails").await;
    let (sandbox, _) = start_pod(&node, &served("b", &[]), "nginx").await;
    let second = start(&node, &sandbox, 1).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(exit_of(&node, &second).await, None, "the second start runs");

    let (_lab, node) = lab_with("A sequence of attempts").await;
    let (sandbox, _) = start_pod(&node, &served("c", &[]), "nginx").await;
    let second = start(&node, &sandbox, 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(exit_of(&node, &second).await, Some((1, "Error".into())));
    let logs = node.container_logs(&second, None, None).await.unwrap();
    assert!(logs.iter().any(|l| l.text == "FATAL: database files are incompatible with server"), "{logs:?}");
    let third = start(&node, &sandbox, 2).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(exit_of(&node, &third).await, None, "runs from the third start on");
}

#[tokio::test(start_paused = true)]
async fn state_counts_starts_on_the_node() {
    let (_lab, node) = lab_with("State kept across reloads").await;
    let (sandbox, _) = start_pod(&node, &served("a", &[]), "nginx").await;
    let ids = [start(&node, &sandbox, 1).await, start(&node, &sandbox, 2).await, start(&node, &sandbox, 3).await, start(&node, &sandbox, 4).await];
    tokio::time::sleep(Duration::from_secs(3)).await;
    let exits: Vec<_> = [exit_of(&node, &ids[2]).await, exit_of(&node, &ids[3]).await].into_iter().collect();
    assert_eq!(exits, [None, Some((1, "Error".to_string()))], "the fifth start on the node exits");
}

#[tokio::test(start_paused = true)]
async fn probes_fail_as_the_recipe_says() {
    let (_lab, node) = lab_with("Failing probes").await;
    let (_, id) = start_pod(&node, &served("a", &[("app", "sick")]), "nginx").await;
    // nginx listens on 80: the default answers until the recipe says otherwise.
    let tcp = ProbeAction::TcpSocket(80);
    assert_eq!(node.probe(&id, ProbeKind::Readiness, &tcp).await.unwrap().outcome, ProbeOutcome::Success, "ready at first");
    let liveness = node.probe(&id, ProbeKind::Liveness, &tcp).await.unwrap();
    assert_eq!((liveness.outcome, liveness.output.as_str()), (ProbeOutcome::Failure, "HTTP probe failed with statuscode: 500"));
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(node.probe(&id, ProbeKind::Readiness, &tcp).await.unwrap().outcome, ProbeOutcome::Failure, "not ready after 30 s");
}

#[tokio::test(start_paused = true)]
async fn a_hung_runtime_holds_the_lists_from_a_minute_on_for_four_minutes() {
    let (_lab, node) = lab_with("A hung runtime").await;
    // The node's instance of the plugin starts with the first pod it serves.
    start_pod(&node, &served("a", &[]), "nginx").await;
    tokio::time::sleep(Duration::from_secs(61)).await;
    let held = tokio::time::Instant::now();
    node.list_containers().await.unwrap();
    assert_eq!(held.elapsed().as_secs(), 239, "held until 300 s after the first call");
    let after = tokio::time::Instant::now();
    node.list_containers().await.unwrap();
    assert_eq!(after.elapsed(), Duration::ZERO);
}

#[tokio::test]
async fn sandboxes_and_pulls_fail_with_the_recipes_messages() {
    let (_lab, node) = lab_with("Sandbox failure").await;
    let err = node.run_pod_sandbox(&served("a", &[])).await.unwrap_err();
    assert!(err.to_string().ends_with("failed to setup network for sandbox: plugin type=\"bridge\" failed"), "{err}");

    let (_lab, node) = lab_with("A failing pull").await;
    let err = node.pull_image("private/db:1", None, Some(&served("a", &[]))).await.unwrap_err();
    assert!(err.is_not_found() && err.to_string().ends_with("pull access denied for private/db:1, repository does not exist"), "{err}");
    node.pull_image("nginx", None, Some(&served("a", &[]))).await.expect("public images pull");
}

#[tokio::test(start_paused = true)]
async fn usage_grows_as_the_recipes_say() {
    let (_lab, node) = lab_with("A container that leaks memory").await;
    let (_, id) = start_pod(&node, &served("a", &[]), "nginx").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let stats = node.list_container_stats().await.unwrap();
    let memory = stats.iter().find(|s| s.id == id).and_then(|s| s.memory_working_set_bytes);
    assert_eq!(memory, Some(10 * (100 << 20)), "100Mi a second");

    let (_lab, node) = lab_with("CPU that climbs").await;
    let (_, id) = start_pod(&node, &served("a", &[]), "nginx").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let stats = node.list_container_stats().await.unwrap();
    let cpu = stats.iter().find(|s| s.id == id).and_then(|s| s.cpu_usage_nano_cores);
    assert_eq!(cpu, Some(500 * 1_000_000), "50m a second");
}

#[tokio::test]
async fn a_lab_action_of_its_own_kills_the_target_with_the_reason() {
    let (_lab, node) = lab_with("A lab action of your own").await;
    let info = node.plugin_info("recipe").await.unwrap();
    assert!(info.actions.iter().any(|a| a.name == "corrupt"), "{:?}", info.actions);
    let (_, id) = start_pod(&node, &served("db-0", &[("app", "db")]), "nginx").await;
    let target = TriggerTarget { pod_namespace: None, pod_name: Some("db-0".into()), container: None };
    let reason = vec![KeyValue { key: "reason".into(), value: "torn-page".into() }];
    let done = node.trigger("recipe", "corrupt", &target, &reason).await.unwrap();
    assert_eq!(done.unwrap(), "corrupted 1 container(s)");
    let s = node.container_status(&id).await.unwrap();
    assert_eq!((s.state, s.exit_code, s.message.as_str()), (ContainerState::Exited, 2, "torn-page"));
    let again = node.trigger("recipe", "corrupt", &target, &[]).await.unwrap();
    assert!(again.is_err(), "nothing runs any more: {again:?}");
}

#[tokio::test(start_paused = true)]
async fn a_node_is_cut_off_a_minute_after_the_start_and_back_five_minutes_later() {
    use labkubelet::node::actions::NodeAction;
    let (lab, _) = lab_with("A node cut off on cue").await;
    let (asks, mut asked) = tokio::sync::mpsc::channel(16);
    let node = lab.node("node-cut").with_node_actions(asks);
    start_pod(&node, &served("cut", &[]), "nginx").await;
    let mut seen = Vec::new();
    // PLEG's relist, once a second.
    for second in 1..=400 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        node.list_containers().await.unwrap();
        while let Ok(a) = asked.try_recv() {
            seen.push((second, a.action));
        }
    }
    assert_eq!(seen, [(60, NodeAction::Partition), (360, NodeAction::Heal)]);
}
