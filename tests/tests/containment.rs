//! What a plugin cannot do: run past its deadline, grow past its memory cap, stall other
//! nodes, or reach host files and environment it was not granted; and what a trap costs.

use labkubelet::plugin::{Grants, PluginPolicy, TriggerError};
use labkubelet::runtime::{ContainerRuntime, ContainerState, KeyValue, RuntimeError, TriggerTarget};
use labkubelet_tests::*;
use std::time::{Duration, Instant};

fn everything() -> TriggerTarget {
    TriggerTarget { pod_namespace: None, pod_name: None, container: None }
}

fn arg(key: &str, value: &str) -> Vec<KeyValue> {
    vec![KeyValue { key: key.into(), value: value.into() }]
}

async fn misbehaving_lab(policy: PluginPolicy) -> PluginLab {
    let lab = PluginLab::new(policy).await;
    lab.put("misbehave.wasm", &test_component("misbehave"));
    let events = lab.sync().await;
    assert_eq!(events.len(), 1, "{events:?}");
    lab
}

// One thread: if a spinning plugin held it, nothing else could run.
#[tokio::test(flavor = "current_thread")]
async fn an_endless_loop_is_stopped_at_the_deadline_without_stalling_other_nodes() {
    let policy = PluginPolicy { call_deadline: Duration::from_millis(500), ..PluginPolicy::default() };
    let lab = misbehaving_lab(policy).await;
    let (spinner, bystander) = (lab.node("node-a"), lab.node("node-b"));
    bystander.plugin_info("misbehave").await.unwrap();
    let started = Instant::now();
    let target = everything();
    let spin = spinner.trigger("misbehave", "spin", &target, &[]);
    let other = async {
        let answered = bystander.plugin_info("misbehave").await.map(|i| i.name);
        (answered, started.elapsed())
    };
    let (spun, (answered, answered_after)) = tokio::join!(spin, other);
    let spun_for = started.elapsed();
    match spun {
        Err(RuntimeError::Deadline { plugin, method, deadline }) => {
            assert_eq!((plugin.as_str(), method, deadline), ("misbehave", "trigger", Duration::from_millis(500)))
        }
        other => panic!("expected a deadline error, got {other:?}"),
    }
    assert!(spun_for < Duration::from_secs(2), "the loop ran {spun_for:?}");
    assert_eq!(answered.unwrap(), "misbehave");
    assert!(answered_after < Duration::from_millis(400), "another node waited {answered_after:?} for the spinning one");
    // The spinning instance is replaced: the plugin answers again.
    assert_eq!(spinner.plugin_info("misbehave").await.unwrap().name, "misbehave");
}

#[tokio::test]
async fn a_memory_bomb_hits_the_cap_and_the_plugin_recovers() {
    let policy = PluginPolicy { memory_limit: 16 << 20, ..PluginPolicy::default() };
    let lab = misbehaving_lab(policy).await;
    let node = lab.node("node-1");
    match node.trigger("misbehave", "grow", &everything(), &[]).await {
        Err(RuntimeError::Trap { plugin, method, detail }) => {
            assert_eq!((plugin.as_str(), method), ("misbehave", "trigger"));
            assert!(detail.starts_with("memory limit of 16 MiB reached"), "{detail}");
        }
        other => panic!("expected a trap at the memory cap, got {other:?}"),
    }
    assert_eq!(node.plugin_info("misbehave").await.unwrap().name, "misbehave");
    assert!(node.list_containers().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_panic_reports_its_message_file_and_line_and_the_plugin_recovers() {
    let lab = misbehaving_lab(PluginPolicy::default()).await;
    let node = lab.node("node-1");
    match node.trigger("misbehave", "panic", &everything(), &[]).await {
        Err(RuntimeError::Trap { plugin, method, detail }) => {
            assert_eq!((plugin.as_str(), method), ("misbehave", "trigger"));
            // The file as the compiler saw it: `src/lib.rs` in a scaffolded crate, workspace-relative here.
            let place = detail.strip_prefix("panicked at ").and_then(|d| d.split_once("misbehave/src/lib.rs:"));
            let (place, message) = place.and_then(|(_, d)| d.split_once(": ")).unwrap_or_else(|| panic!("{detail}"));
            assert!(place.split(':').all(|n| n.parse::<u32>().is_ok()), "line and column: {detail}");
            assert_eq!(message, "index out of bounds: the len is 0 but the index is 3");
        }
        other => panic!("expected a trap with the panic's message, got {other:?}"),
    }
    assert_eq!(node.plugin_info("misbehave").await.unwrap().name, "misbehave");
}

#[tokio::test]
async fn a_trapped_instance_comes_back_with_the_containers_it_saved() {
    let lab = misbehaving_lab(PluginPolicy::default()).await;
    let node = lab.node("node-1");
    let (_, kept) = start_pod(&node, &pod("kept", Some("misbehave"), &[]), "nginx:1.25").await;
    // What the agent does every 2 s.
    assert_eq!(node.export_states().await.len(), 1);
    let (_, late) = start_pod(&node, &pod("late", Some("misbehave"), &[]), "nginx:1.25").await;
    assert!(matches!(node.trigger("misbehave", "panic", &everything(), &[]).await, Err(RuntimeError::Trap { .. })));
    assert_eq!(node.container_status(&kept).await.unwrap().state, ContainerState::Running, "the container saved before the trap lives on");
    // The state is also saved as each container is created: a trap loses its start since.
    assert_eq!(node.container_status(&late).await.unwrap().state, ContainerState::Created);
    assert_eq!(node.list_containers().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_plugin_cannot_read_host_files_or_environment_unless_granted() {
    let secret_dir = tempfile::tempdir().unwrap();
    std::fs::write(secret_dir.path().join("token"), "s3cret").unwrap();
    let host_file = secret_dir.path().join("token").display().to_string();

    let lab = misbehaving_lab(PluginPolicy::default()).await;
    let node = lab.node("node-1");
    for path in [host_file.as_str(), "/etc/passwd", "/granted/token"] {
        match node.trigger("misbehave", "read-file", &everything(), &arg("path", path)).await.unwrap() {
            Err(TriggerError::InvalidArgument(why)) => assert!(why.starts_with("cannot read"), "{why}"),
            other => panic!("the plugin read {path}: {other:?}"),
        }
    }
    // The test process has PATH; the plugin must not see it.
    assert!(std::env::var("PATH").is_ok());
    assert!(matches!(node.trigger("misbehave", "env", &everything(), &arg("name", "PATH")).await.unwrap(), Err(TriggerError::InvalidArgument(_))));

    // The same plugin, granted a folder and a variable, reads exactly those.
    let grants = Grants { dirs: vec![(secret_dir.path().to_path_buf(), "/granted".into())], env: vec![("LAB".into(), "one".into())] };
    let policy = PluginPolicy { grants: [("misbehave".to_string(), grants)].into(), ..PluginPolicy::default() };
    let lab = misbehaving_lab(policy).await;
    let node = lab.node("node-1");
    let read = node.trigger("misbehave", "read-file", &everything(), &arg("path", "/granted/token")).await.unwrap();
    assert_eq!(read.unwrap(), "read 6 bytes");
    assert_eq!(node.trigger("misbehave", "env", &everything(), &arg("name", "LAB")).await.unwrap().unwrap(), "value one");
    assert!(node.trigger("misbehave", "read-file", &everything(), &arg("path", "/etc/passwd")).await.unwrap().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_plugin_that_traps_again_and_again_is_called_after_a_growing_back_off() {
    let lab = misbehaving_lab(PluginPolicy::default()).await;
    let node = lab.node("node-1");
    for _ in 0..3 {
        assert!(matches!(node.trigger("misbehave", "panic", &everything(), &[]).await, Err(RuntimeError::Trap { .. })));
    }
    // The third trap in a row: calls are refused without running for a second.
    match node.plugin_info("misbehave").await {
        Err(RuntimeError::Trap { method, detail, .. }) => {
            assert_eq!(method, "info");
            assert!(
                detail.starts_with("not called: the plugin failed 3 times in a row, last with \"plugin misbehave failed in trigger: panicked at "),
                "{detail}"
            );
            assert!(detail.ends_with("it is tried again in 1s"), "{detail}");
        }
        other => panic!("expected the back-off's refusal, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(node.plugin_info("misbehave").await.unwrap().name, "misbehave", "called again after the back-off");
    // An answer ends the run: the next trap restarts the instance at once.
    assert!(matches!(node.trigger("misbehave", "panic", &everything(), &[]).await, Err(RuntimeError::Trap { .. })));
    assert_eq!(node.plugin_info("misbehave").await.unwrap().name, "misbehave");
}
