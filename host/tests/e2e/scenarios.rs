//! The stock node scenarios (plugins that script what `labkubelet node <action>` does)
//! against the real control plane: a pod annotated with the scenario starts it on its node.

use crate::support::{Agent, boot_id, cluster, condition, container_status, event_reasons, eventually_with, labkubelet, pod, rebooted};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use std::time::Duration;

/// Installs a stock plugin into the agent's folder with this configuration.
fn install(agent: &Agent, plugin: &str, config: &str) {
    let (ok, out) = labkubelet(&["plugin", "install", plugin, "--plugin-dir", &agent.plugins().display().to_string()], &cluster().admin_kubeconfig());
    assert!(ok, "plugin install {plugin}: {out}");
    std::fs::write(agent.plugins().join(format!("{plugin}.json")), config).expect("the plugin's configuration");
}

/// A pod on `node` served by `scenario` (none: the default plugin), with these resources.
fn scenario_pod(name: &str, node: &str, scenario: Option<&str>, resources: serde_json::Value) -> Pod {
    let annotations = scenario.map_or(serde_json::json!({}), |s| serde_json::json!({"labkubelet.io/scenario": s}));
    pod(serde_json::json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"nodeSelector": {"e2e": node}, "containers": [{"name": "app", "image": "nginx:1.25", "resources": resources}]},
    }))
}

#[tokio::test]
async fn memory_pressure_leaks_until_the_kubelet_evicts_the_pod_or_its_limit_kills_it() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-leak").await;
    // 2Gi a second fills the default 32Gi in 16 s.
    install(&agent, "memory-pressure", r#"{"leakMiBPerSecond": 2048}"#);
    agent.short_pressure_transition();
    agent.start();
    let nodes: Api<Node> = Api::all(admin.clone());
    agent.wait_ready(&nodes).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let guaranteed = serde_json::json!({"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"cpu": "100m", "memory": "1Gi"}});
    for p in [
        scenario_pod("leaky", "e2e-leak", Some("memory-pressure"), serde_json::json!({})),
        scenario_pod("limited", "e2e-leak", Some("memory-pressure"), guaranteed.clone()),
        scenario_pod("steady", "e2e-leak", None, guaranteed),
    ] {
        pods.create(&PostParams::default(), &p).await.expect("create a pod");
    }

    // The leak with a limit: its cgroup kills it, as the oomkill scenario shows.
    let killed = eventually_with(&mut agent, "limited OOMKilled at its limit", Duration::from_secs(60), async || {
        let c = container_status(&pods.get("limited").await.ok()?)?;
        let terminated = c.last_state.and_then(|s| s.terminated).or(c.state.and_then(|s| s.terminated))?;
        (terminated.reason.as_deref() == Some("OOMKilled")).then_some(terminated)
    })
    .await;
    assert_eq!(killed.exit_code, 137, "{killed:?}");

    // The leak without one: the node runs short, and the kubelet evicts the pod that uses
    // the most above its request.
    let node = eventually_with(&mut agent, "MemoryPressure True", Duration::from_secs(90), async || {
        let node = nodes.get("e2e-leak").await.ok()?;
        (condition(&node, "MemoryPressure")?.status == "True").then_some(node)
    })
    .await;
    assert_eq!(condition(&node, "MemoryPressure").and_then(|c| c.reason.as_deref()), Some("KubeletHasInsufficientMemory"));
    let evicted = eventually_with(&mut agent, "leaky Evicted", Duration::from_secs(60), async || {
        let p = pods.get("leaky").await.ok()?;
        (p.status.as_ref()?.reason.as_deref() == Some("Evicted")).then_some(p)
    })
    .await;
    let status = evicted.status.clone().unwrap_or_default();
    let message = status.message.clone().unwrap_or_default();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    // What the plugin said the container used, as the kubelet prints a quantity (`33554432Ki`).
    let used = message
        .strip_prefix("The node was low on resource: memory. Container app was using ")
        .and_then(|m| m.strip_suffix(", which exceeds its request of 0. "))
        .unwrap_or_else(|| panic!("the kubelet's eviction message: {message:?}"));
    let split = used.find(|c: char| !c.is_ascii_digit()).unwrap_or(used.len());
    let unit: u64 = match &used[split..] {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        other => panic!("a quantity's suffix: {other:?} in {used:?}"),
    };
    let bytes = used[..split].parse::<u64>().unwrap_or_else(|e| panic!("{used:?}: {e}")) * unit;
    assert!(bytes > 16 << 30, "the leak, not the 64Mi a container is modelled with: {used}");
    let uid = evicted.metadata.uid.clone().unwrap_or_default();
    assert!(event_reasons(&admin, "default", &uid).await.contains(&("Evicted".to_string(), message.clone())));
    let steady = pods.get("steady").await.expect("steady");
    assert_eq!(steady.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Running"), "the pod within its request is not evicted");

    // The leak is gone with the pod: the pressure ends after the transition period.
    eventually_with(&mut agent, "MemoryPressure False", Duration::from_secs(90), async || {
        (condition(&nodes.get("e2e-leak").await.ok()?, "MemoryPressure")?.status == "False").then_some(())
    })
    .await;
    agent.assert_no_refused_requests();
}

#[tokio::test]
async fn node_reboot_reboots_the_node_of_its_pod_and_the_kubelet_starts_its_pods_again() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-reboots").await;
    install(&agent, "node-reboot", r#"{"afterSeconds": 5}"#);
    agent.start();
    let nodes: Api<Node> = Api::all(admin.clone());
    let first_boot = boot_id(&agent.wait_ready(&nodes).await);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    pods.create(&PostParams::default(), &scenario_pod("rebooter", "e2e-reboots", Some("node-reboot"), serde_json::json!({}))).await.expect("create");

    rebooted(&mut agent, &admin, &first_boot).await;
    // Its pod starts again after the boot, one restart up, the old container as containerd
    // shows it after a boot.
    let restarted = eventually_with(&mut agent, "rebooter Running again with restartCount 1", Duration::from_secs(60), async || {
        let c = container_status(&pods.get("rebooter").await.ok()?)?;
        (c.restart_count == 1 && c.state.as_ref()?.running.is_some()).then_some(c)
    })
    .await;
    let last = restarted.last_state.and_then(|s| s.terminated).expect("lastState terminated");
    assert_eq!((last.exit_code, last.reason.as_deref()), (255, Some("Unknown")), "{last:?}");
    agent.wait_ready(&nodes).await;
    agent.assert_no_refused_requests();
}
