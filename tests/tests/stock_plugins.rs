//! Each stock plugin driven through the CRI lifecycle, with the scenario timing checked in
//! virtual time.

use labkubelet::plugin::{PluginPolicy, PluginRuntime, TriggerError};
use labkubelet::runtime::*;
use labkubelet_tests::*;
use std::time::Duration;

const NS: i64 = 1_000_000_000;

async fn lab_with(plugins: &[&str]) -> PluginLab {
    let lab = PluginLab::new(PluginPolicy::default()).await;
    for p in plugins {
        lab.install(p);
    }
    let events = lab.sync().await;
    assert_eq!(events.len(), plugins.len(), "{events:?}");
    lab
}

// Paused time: crashloop and oomkill containers must not exit on their own in between.
#[tokio::test(start_paused = true)]
async fn every_stock_plugin_runs_the_cri_lifecycle() {
    let names = ["healthy", "crashloop", "oomkill", "pleg-stall", "readiness-flap", "scripted", "node-partition", "node-reboot", "memory-pressure", "python"];
    let lab = lab_with(&names).await;
    let node = lab.node("node-1");
    for name in names {
        let pod = pod(&format!("pod-{name}"), Some(name), &[]);
        let (sandbox, id) = start_pod(&node, &pod, "nginx:1.25").await;
        let status = node.container_status(&id).await.unwrap();
        assert_eq!(status.state, ContainerState::Running, "{name}");
        assert_eq!(status.pod_sandbox_id, sandbox);
        assert!(status.image_ref.starts_with("docker.io/library/nginx@sha256:"), "{}", status.image_ref);
        assert!(node.list_containers().await.unwrap().iter().any(|c| c.id == id));
        assert_eq!(node.pod_sandbox_status(&sandbox).await.unwrap().state, PodSandboxState::Ready);
        node.stop_container(&id, Duration::from_secs(30)).await.unwrap();
        let stopped = node.container_status(&id).await.unwrap();
        assert_eq!((stopped.state, stopped.exit_code, stopped.reason.as_str()), (ContainerState::Exited, 0, "Completed"), "{name}");
        node.remove_container(&id).await.unwrap();
        node.stop_pod_sandbox(&sandbox).await.unwrap();
        node.remove_pod_sandbox(&sandbox).await.unwrap();
        assert!(node.container_status(&id).await.unwrap_err().is_not_found());
    }
    assert!(node.list_pod_sandboxes().await.unwrap().is_empty());
    let version = node.version().await.unwrap();
    assert_eq!((version.runtime_name.as_str(), version.runtime_version.as_str()), ("labkubelet", "0.1.0"));
}

#[tokio::test]
async fn image_pull_fail_fails_pulls_like_a_registry() {
    let lab = lab_with(&["image-pull-fail"]).await;
    let node = lab.node("node-1");
    let failing = pod("web", Some("image-pull-fail"), &[]);
    let err = node.pull_image("nginx:doesnotexist", None, Some(&failing)).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "rpc error: code = NotFound desc = failed to pull and unpack image \"nginx:doesnotexist\": failed to resolve reference \"nginx:doesnotexist\": nginx:doesnotexist: not found"
    );
    // Pods the plugin does not serve pull as usual.
    node.pull_image("nginx:1.25", None, Some(&pod("other", None, &[]))).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn crashloop_exits_with_its_configured_code_and_delay() {
    let lab = PluginLab::new(PluginPolicy::default()).await;
    lab.install("crashloop");
    std::fs::write(lab.path("crashloop.json"), r#"{"exitAfterSeconds": 7, "exitCode": 2}"#).unwrap();
    lab.sync().await;
    let node = lab.node("node-1");
    let (_, id) = start_pod(&node, &pod("flaky", Some("crashloop"), &[]), "busybox").await;
    tokio::time::sleep(Duration::from_millis(6_900)).await;
    assert_eq!(node.container_status(&id).await.unwrap().state, ContainerState::Running);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = node.container_status(&id).await.unwrap();
    assert_eq!((s.state, s.exit_code, s.reason.as_str()), (ContainerState::Exited, 2, "Error"));
    assert_eq!(s.finished_at - s.started_at, 7 * NS);
    let logs = node.container_logs(&id, None, None).await.unwrap();
    assert_eq!(logs.last().unwrap().text, "main exited with code 2 (Error)");
}

#[tokio::test(start_paused = true)]
async fn oomkill_kills_with_137_oomkilled_after_30s() {
    let lab = lab_with(&["oomkill"]).await;
    let node = lab.node("node-1");
    let (_, id) = start_pod(&node, &pod("db", Some("oomkill"), &[]), "postgres:16").await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let s = node.container_status(&id).await.unwrap();
    assert_eq!((s.state, s.exit_code, s.reason.as_str()), (ContainerState::Exited, 137, "OOMKilled"));
}

/// `kubectl logs`: what the image's program writes when it starts (the runtime's line, the
/// scenario's), then how it ended.
#[tokio::test(start_paused = true)]
async fn oomkill_logs_the_start_its_scenario_and_the_kill_in_order() {
    let lab = lab_with(&["oomkill"]).await;
    let node = lab.node("node-1");
    let (_, id) = start_pod(&node, &pod("cache", Some("oomkill"), &[]), "redis:7").await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let logs: Vec<String> = node.container_logs(&id, None, None).await.unwrap().into_iter().map(|l| l.text).collect();
    assert_eq!(logs, ["main started from image redis:7", "allocating memory without bound...", "main exited with code 137 (OOMKilled)"]);
}

/// The node actions a node's plugins ask for, as they arrive.
fn asked_actions(lab: &PluginLab) -> (PluginRuntime, tokio::sync::mpsc::Receiver<labkubelet::plugin::AskedAction>) {
    let (asks, asked) = tokio::sync::mpsc::channel(16);
    (lab.node("node-1").with_node_actions(asks), asked)
}

#[tokio::test(start_paused = true)]
async fn node_partition_asks_for_a_partition_then_heal_on_its_schedule() {
    use labkubelet::node::actions::NodeAction;
    let lab = PluginLab::new(PluginPolicy::default()).await;
    lab.install("node-partition");
    std::fs::write(lab.path("node-partition.json"), r#"{"afterSeconds": 5, "forSeconds": 10}"#).unwrap();
    lab.sync().await;
    let (node, mut asked) = asked_actions(&lab);
    start_pod(&node, &pod("cut", Some("node-partition"), &[]), "nginx").await;
    // PLEG's relist, once a second.
    let mut seen = Vec::new();
    for second in 1..=20 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        node.list_containers().await.unwrap();
        while let Ok(a) = asked.try_recv() {
            assert_eq!(&*a.plugin, "node-partition");
            seen.push((second, a.action));
        }
    }
    assert_eq!(seen, [(5, NodeAction::Partition), (15, NodeAction::Heal)]);
}

#[tokio::test(start_paused = true)]
async fn node_reboot_asks_for_one_reboot_and_a_kubelet_restart_keeps_its_schedule() {
    use labkubelet::node::actions::NodeAction;
    let lab = PluginLab::new(PluginPolicy::default()).await;
    lab.install("node-reboot");
    std::fs::write(
        lab.path("node-reboot.yaml"),
        "afterSeconds: 4
",
    )
    .unwrap();
    lab.sync().await;
    let (node, mut asked) = asked_actions(&lab);
    start_pod(&node, &pod("boots", Some("node-reboot"), &[]), "nginx").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    node.list_containers().await.unwrap();
    // A kubelet restart: the next run's runtime takes over the state, and the schedule.
    let saved = node.export_states().await;
    let (restarted, mut asked_again) = asked_actions(&lab);
    assert!(restarted.import_states(saved).await.is_empty());
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        restarted.list_containers().await.unwrap();
    }
    assert!(asked.try_recv().is_err(), "nothing is due before 4 s");
    assert_eq!(asked_again.try_recv().map(|a| a.action), Ok(NodeAction::Reboot));
    assert!(asked_again.try_recv().is_err(), "one reboot");

    // The reboot: the container exits as containerd shows it after a boot, the sandbox is not
    // ready, and the schedule, done, asks for no other reboot.
    restarted.reboot().await;
    let after = restarted.export_states().await;
    let (booted, mut asked_after) = asked_actions(&lab);
    assert!(booted.import_states(after).await.is_empty());
    let container = booted.list_containers().await.unwrap().pop().expect("the container's record");
    let status = booted.container_status(&container.id).await.unwrap();
    assert_eq!((status.state, status.exit_code, status.reason.as_str()), (ContainerState::Exited, 255, "Unknown"));
    assert_eq!(booted.list_pod_sandboxes().await.unwrap().pop().map(|s| s.state), Some(PodSandboxState::NotReady));
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        booted.list_containers().await.unwrap();
    }
    assert!(asked_after.try_recv().is_err(), "no second reboot");
}

#[tokio::test(start_paused = true)]
async fn memory_pressure_containers_grow_and_are_oom_killed_at_their_limit() {
    let lab = lab_with(&["memory-pressure"]).await;
    let node = lab.node("node-1");
    let (_, unlimited) = start_pod(&node, &pod("leak", Some("memory-pressure"), &[]), "leaky").await;
    let working_set = async |id: &str| node.list_container_stats().await.unwrap().into_iter().find(|s| s.id == id).and_then(|s| s.memory_working_set_bytes);
    assert_eq!(working_set(&unlimited).await, Some(16 << 20));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(working_set(&unlimited).await, Some((16 + 2560) << 20), "16Mi and 256Mi a second");

    // With a 1040Mi limit (the annotation the host sets from the pod's limits), the cgroup
    // kills it 4 s in.
    let pod = pod("limited", Some("memory-pressure"), &[]);
    let sandbox = node.run_pod_sandbox(&pod).await.unwrap();
    let mut config = container("main", "leaky");
    config.memory_limit_bytes = Some(1040 << 20);
    let limited = node.create_container(&sandbox, &config).await.unwrap();
    node.start_container(&limited).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3_900)).await;
    assert_eq!(node.container_status(&limited).await.unwrap().state, ContainerState::Running);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let s = node.container_status(&limited).await.unwrap();
    assert_eq!((s.state, s.exit_code, s.reason.as_str()), (ContainerState::Exited, 137, "OOMKilled"));
    assert_eq!(working_set(&limited).await, None, "a container that exited uses nothing");
}

#[tokio::test(start_paused = true)]
async fn readiness_flap_alternates_readiness_and_keeps_liveness() {
    let lab = lab_with(&["readiness-flap"]).await;
    let node = lab.node("node-1");
    let (_, id) = start_pod(&node, &pod("web", Some("readiness-flap"), &[]), "nginx").await;
    let action = ProbeAction::TcpSocket(80);
    let mut seen = Vec::new();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let readiness = node.probe(&id, ProbeKind::Readiness, &action).await.unwrap();
        let liveness = node.probe(&id, ProbeKind::Liveness, &action).await.unwrap();
        assert_eq!(liveness.outcome, ProbeOutcome::Success);
        seen.push(readiness.outcome);
    }
    // At 10 s, 20 s, 30 s, 40 s with a 20 s period: up, down, down, up.
    assert_eq!(seen, [ProbeOutcome::Success, ProbeOutcome::Failure, ProbeOutcome::Failure, ProbeOutcome::Success]);
}

#[tokio::test(start_paused = true)]
async fn pleg_stall_holds_list_calls_but_not_other_calls_until_it_ends() {
    let lab = PluginLab::new(PluginPolicy::default()).await;
    lab.install("pleg-stall");
    std::fs::write(lab.path("pleg-stall.yaml"), "stallAfterSeconds: 10\nstallForSeconds: 240\n").unwrap();
    lab.sync().await;
    let node = std::sync::Arc::new(lab.node("node-1"));
    let (_, id) = start_pod(&*node, &pod("p", Some("pleg-stall"), &[]), "nginx").await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    let started = tokio::time::Instant::now();
    let lister = node.clone();
    let relist = tokio::spawn(async move { lister.list_containers().await.map(|l| l.len()) });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!relist.is_finished(), "the list call answers at once during the stall");
    // Other calls are not blocked by the held list reply.
    assert_eq!(node.container_status(&id).await.unwrap().state, ContainerState::Running);
    assert_eq!(relist.await.unwrap().unwrap(), 1);
    assert_eq!(started.elapsed().as_secs(), 239, "the reply is held until the stall ends (t=250 s)");
}

#[tokio::test(start_paused = true)]
async fn hang_and_heal_triggers_hold_and_release_every_call() {
    let lab = lab_with(&["crashloop"]).await;
    let node = std::sync::Arc::new(lab.node("node-1"));
    start_pod(&*node, &pod("p", Some("crashloop"), &[]), "nginx").await;
    let target = TriggerTarget { pod_namespace: None, pod_name: None, container: None };
    let said = node.trigger("crashloop", "hang", &target, &[]).await.unwrap().unwrap();
    assert_eq!(said, "runtime calls now hang until heal");
    let hung = node.clone();
    let status = tokio::spawn(async move { hung.status().await });
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(!status.is_finished(), "status answered while the runtime hangs");
    node.trigger("crashloop", "heal", &target, &[]).await.unwrap().unwrap();
    let conditions = tokio::time::timeout(Duration::from_secs(1), status).await.expect("heal releases the call").unwrap().unwrap();
    assert!(conditions.iter().any(|c| c.condition_type == "RuntimeReady" && c.status));
}

#[tokio::test]
async fn kill_trigger_ends_containers_and_reports_unknown_actions_and_targets() {
    let lab = lab_with(&["crashloop"]).await;
    std::fs::write(lab.path("crashloop.json"), r#"{"exitAfterSeconds": 3600}"#).unwrap();
    lab.sync().await;
    let node = lab.node("node-1");
    let (_, id) = start_pod(&node, &pod("victim", Some("crashloop"), &[]), "nginx").await;
    let target = TriggerTarget { pod_namespace: Some("default".into()), pod_name: Some("victim".into()), container: Some("main".into()) };
    let args = [KeyValue { key: "code".into(), value: "143".into() }];
    let said = node.trigger("crashloop", "kill", &target, &args).await.unwrap().unwrap();
    assert_eq!(said, "killed 1 container(s) with exit code 143");
    let s = node.container_status(&id).await.unwrap();
    assert_eq!((s.state, s.exit_code, s.reason.as_str()), (ContainerState::Exited, 143, "Error"));

    match node.trigger("crashloop", "explode", &target, &[]).await.unwrap() {
        Err(TriggerError::UnknownAction(known)) => assert_eq!(known, ["kill", "hang", "fail-pulls", "heal"]),
        other => panic!("expected an unknown action, got {other:?}"),
    }
    let nobody = TriggerTarget { pod_name: Some("nobody".into()), ..target.clone() };
    match node.trigger("crashloop", "kill", &nobody, &[]).await.unwrap() {
        Err(TriggerError::NoSuchTarget(why)) => assert_eq!(why, "no running container main in pod default/nobody"),
        other => panic!("expected no such target, got {other:?}"),
    }
    let err = node.trigger("nonesuch", "kill", &target, &[]).await.unwrap_err();
    assert_eq!(err.to_string(), "no plugin named nonesuch; loaded: crashloop, healthy");
}

#[tokio::test(start_paused = true)]
async fn scripted_rules_come_from_its_yaml_file() {
    let lab = PluginLab::new(PluginPolicy::default()).await;
    lab.install("scripted");
    std::fs::write(
        lab.path("scripted.yaml"),
        r#"
selector: "lab=scripted"
rules:
  - match: { labels: { app: db } }
    exit: { afterSeconds: 30, code: 137, reason: OOMKilled }
  - match: { pod: "web-*" }
    failPull: "manifest unknown"
  - match: { pod: "slow-*" }
    failCreate: "no space left on device"
  - match: { labels: { app: api } }
    probes: { readiness: { fail: true, output: "HTTP probe failed with statuscode: 503" } }
  - calls: [list-containers]
    afterSeconds: 100
"#,
    )
    .unwrap();
    let events = lab.sync().await;
    assert!(matches!(&events[..], [labkubelet::plugin::PluginEvent::Loaded { name, .. }] if name == "scripted"), "{events:?}");
    let node = std::sync::Arc::new(lab.node("node-1"));

    let (_, db) = start_pod(&*node, &pod("db-0", None, &[("lab", "scripted"), ("app", "db")]), "postgres").await;
    let web = pod("web-1", None, &[("lab", "scripted")]);
    assert_eq!(node.pull_image("nginx", None, Some(&web)).await.unwrap_err().to_string(), "manifest unknown");
    let slow = pod("slow-1", None, &[("lab", "scripted")]);
    let sandbox = node.run_pod_sandbox(&slow).await.unwrap();
    node.pull_image("nginx", None, Some(&slow)).await.unwrap();
    let err = node.create_container(&sandbox, &container("main", "nginx")).await.unwrap_err();
    assert_eq!(err.to_string(), "no space left on device");
    let (_, api) = start_pod(&*node, &pod("api-0", None, &[("lab", "scripted"), ("app", "api")]), "api").await;
    let probe = node.probe(&api, ProbeKind::Readiness, &ProbeAction::TcpSocket(8080)).await.unwrap();
    assert_eq!((probe.outcome, probe.output.as_str()), (ProbeOutcome::Failure, "HTTP probe failed with statuscode: 503"));

    tokio::time::sleep(Duration::from_secs(30)).await;
    let s = node.container_status(&db).await.unwrap();
    assert_eq!((s.exit_code, s.reason.as_str()), (137, "OOMKilled"));

    tokio::time::sleep(Duration::from_secs(70)).await;
    let lister = node.clone();
    let hung = tokio::spawn(async move { lister.list_containers().await });
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(!hung.is_finished(), "list-containers hangs after 100 s");
    let all = TriggerTarget { pod_namespace: None, pod_name: None, container: None };
    node.trigger("scripted", "heal", &all, &[]).await.unwrap().unwrap();
    assert_eq!(hung.await.unwrap().unwrap().len(), 2);
}

/// The issue's lab: "pods labelled app=slow pull for 15 s; every third start exits 2 after 10 s".
#[tokio::test(start_paused = true)]
async fn scripted_call_rules_match_the_pod_and_start_rules_count_attempts() {
    let lab = PluginLab::new(PluginPolicy::default()).await;
    lab.install("scripted");
    let rules = "selector: lab=slow\nrules:\n  - match: { labels: { app: slow } }\n    calls: [pull-image]\n    delaySeconds: 15\n  - match: { labels: { app: slow }, everyNthStart: 3 }\n    exit: { afterSeconds: 10, code: 2 }\n";
    std::fs::write(lab.path("scripted.yaml"), rules).unwrap();
    lab.sync().await;
    let node = lab.node("node-1");
    let slow = pod("slow-0", None, &[("lab", "slow"), ("app", "slow")]);
    let other = pod("other-0", None, &[("lab", "slow"), ("app", "fast")]);

    let started = tokio::time::Instant::now();
    node.pull_image("busybox", None, Some(&other)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::ZERO, "a pull for another pod is not held");
    node.pull_image("busybox", None, Some(&slow)).await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(15), "the pull for app=slow is held 15 s");
    let listed = tokio::time::Instant::now();
    node.list_containers().await.unwrap();
    assert_eq!(listed.elapsed(), Duration::ZERO, "runtime-wide calls concern no pod: the rule does not hold them");

    let sandbox = node.run_pod_sandbox(&slow).await.unwrap();
    let mut exits = Vec::new();
    for attempt in 0..6 {
        let mut config = container("main", "busybox");
        config.metadata.attempt = attempt;
        config.command = vec!["sleep".into(), "3600".into()];
        let id = node.create_container(&sandbox, &config).await.unwrap();
        node.start_container(&id).await.unwrap();
        tokio::time::sleep(Duration::from_secs(11)).await;
        let s = node.container_status(&id).await.unwrap();
        exits.push((s.state, s.exit_code));
        node.remove_container(&id).await.unwrap();
    }
    let runs = (ContainerState::Running, 0);
    let fails = (ContainerState::Exited, 2);
    assert_eq!(exits, [runs, runs, fails, runs, runs, fails], "the 3rd and 6th starts exit 2 after 10 s");
}

#[tokio::test]
async fn pods_are_served_by_annotation_then_selector_then_default() {
    let lab = PluginLab::new(PluginPolicy::default()).await;
    lab.install("crashloop");
    lab.install("oomkill");
    std::fs::write(lab.path("crashloop.yaml"), "selector: app in (flaky, broken)\n").unwrap();
    lab.sync().await;
    let serving = |p: &PodSandboxConfig| lab.catalog.select(&p.labels, &p.annotations).info.name.clone();
    assert_eq!(serving(&pod("a", Some("oomkill"), &[("app", "flaky")])), "oomkill");
    assert_eq!(serving(&pod("b", None, &[("app", "broken")])), "crashloop");
    assert_eq!(serving(&pod("c", None, &[("app", "web")])), "healthy");
    assert_eq!(serving(&pod("d", Some("not-loaded"), &[])), "healthy");
}
