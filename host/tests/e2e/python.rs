//! A Python scenario against the real control plane: the file in the agent's plugin folder
//! decides what the pods it selects do, as kubectl shows, and an edit saved while the agent
//! runs decides the next start, with the restart count kept.

use crate::support::{Agent, cluster, container_status, event_reasons, eventually_with, kubectl, pod_on};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use std::time::Duration;

/// The example scenario (examples/plugins/flaky.py): every second start of an app=flaky container exits 2 (the others run
/// their command, which exits 1); pulls of `:canary` images fail.
const FLAKY: &str = include_str!("../../../examples/plugins/flaky.py");

/// Whether the pod's container has exited with `code` (its present or its last state), and
/// its restart count.
async fn exited_with(pods: &Api<Pod>, name: &str, code: i32) -> Option<i32> {
    let c = container_status(&pods.get(name).await.ok()?)?;
    let terminated = [c.state.as_ref(), c.last_state.as_ref()].into_iter().flatten().filter_map(|s| s.terminated.as_ref());
    terminated.into_iter().any(|t| t.exit_code == code).then_some(c.restart_count)
}

#[tokio::test]
async fn a_python_scenario_dropped_into_the_folder_decides_and_an_edit_decides_the_next_start() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-python").await;
    std::fs::write(agent.plugins().join("flaky.py"), FLAKY).expect("write the scenario");
    agent.start();
    let nodes: Api<Node> = Api::all(admin.clone());
    agent.wait_ready(&nodes).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let flaky = |name: &str, image: &str| {
        let mut p = pod_on("e2e-python", name, serde_json::json!({"containers": [{"name": "app", "image": image, "command": ["sh", "-c", "exit 1"]}]}));
        p.metadata.labels = Some([("app".to_string(), "flaky".to_string())].into());
        p
    };
    pods.create(&PostParams::default(), &flaky("py-flaky", "busybox:1.36")).await.expect("create py-flaky");
    pods.create(&PostParams::default(), &flaky("py-canary", "registry.lab/web:canary")).await.expect("create py-canary");

    // The first start runs the command (exit 1); the second is the scenario's (exit 2).
    eventually_with(&mut agent, "flaky's second start to exit 2", Duration::from_secs(60), async || exited_with(&pods, "py-flaky", 2).await).await;
    let canary = pods.get("py-canary").await.expect("canary").metadata.uid.unwrap_or_default();
    let failed = eventually_with(&mut agent, "canary's pull to fail", Duration::from_secs(30), async || {
        event_reasons(&admin, "default", &canary).await.into_iter().find(|(reason, _)| reason == "Failed")
    })
    .await;
    assert!(failed.1.starts_with("Failed to pull image \"registry.lab/web:canary\"") && failed.1.ends_with("manifest unknown"), "{failed:?}");
    let (_, shown, _) = kubectl(&["get", "pod", "py-canary", "--no-headers"], "");
    assert!(shown.contains("ErrImagePull") || shown.contains("ImagePullBackOff"), "kubectl shows the failed pull: {shown}");

    // An edit while the agent runs: every later start is the scenario's, with the new code
    // (neither the command nor the old file exits 3), and the restart count goes on.
    let edited = FLAKY.replace("CODE = 2", "CODE = 3").replace("c.attempt % 2 == 1", "c.attempt >= 2");
    std::fs::write(agent.plugins().join("flaky.py"), edited).expect("edit the scenario");
    let restarts =
        eventually_with(&mut agent, "a start after the edit to exit 3", Duration::from_secs(120), async || exited_with(&pods, "py-flaky", 3).await).await;
    assert!(restarts >= 2, "the restart count is kept: {restarts}");
    let (_, shown, _) = kubectl(&["get", "pod", "py-flaky", "--no-headers"], "");
    assert!(shown.split_whitespace().nth(3).and_then(|r| r.parse::<i32>().ok()).is_some_and(|r| r >= 2), "kubectl shows the restarts: {shown}");
    agent.assert_no_refused_requests();
}
