//! The lab's node actions against the real control plane: what the node lifecycle
//! controller, the taint manager and `kubectl` show when a node is cut off, healed,
//! rebooted, or has its kubelet restarted.

use crate::support::{Agent, boot_id, cluster, condition, container_status, event_reasons, eventually_with, labkubelet, pod, rebooted};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use std::time::Duration;

/// A pod the scheduler puts on `node`, gone 5 s after its node is unreachable (instead of
/// the 300 s the DefaultTolerationSeconds admission plugin would give it).
fn evicted_soon(name: &str, node: &str) -> Pod {
    pod(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": {"e2e": node},
            "terminationGracePeriodSeconds": 5,
            "tolerations": [
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5},
            ],
            "containers": [{"name": "app", "image": "nginx:1.25"}],
        },
    }))
}

fn running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && container_status(pod).and_then(|c| c.state).is_some_and(|s| s.running.is_some())
}

fn taints(node: &Node) -> Vec<(String, String)> {
    node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default().into_iter().map(|t| (t.key, t.effect)).collect()
}

/// `labkubelet node <action>` as the instructor runs it, with the admin's kubeconfig.
fn node_action(agent: &Agent, action: &str) -> String {
    let root = agent.root.path().display().to_string();
    let (ok, out) = labkubelet(&["node", action, "--root-dir", &root], &cluster().admin_kubeconfig());
    assert!(ok, "labkubelet node {action}: {out}");
    out
}

/// The sandbox ids the node's runtime holds, through the API server's node proxy.
async fn running_pods(client: &kube::Client, node: &str) -> Option<Vec<String>> {
    let request = http::Request::get(format!("/api/v1/nodes/{node}/proxy/runningpods/")).body(Vec::new()).ok()?;
    let list: serde_json::Value = serde_json::from_str(&client.request_text(request).await.ok()?).ok()?;
    Some(list["items"].as_array()?.iter().filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string)).collect())
}

#[tokio::test]
async fn a_partitioned_node_turns_unknown_is_tainted_and_its_pods_are_evicted_then_heal_cleans_up() {
    let admin = cluster().admin().await.expect("admin client");
    // The node lifecycle controller taints a lost node at the pace of its zone's state: in a
    // small zone that is partly down (other tests' stopped nodes) it taints nothing, and when
    // every zone is down it assumes its own network failed and taints nothing at all. So
    // the node has a zone of its own, and a witness keeps another zone up.
    let mut witness = Agent::new("e2e-partition-witness").await;
    witness.start();
    let mut agent = Agent::new("e2e-partition").await;
    agent.flags = vec!["--node-labels".into(), "topology.kubernetes.io/zone=e2e-partition".into()];
    agent.start();
    let nodes: Api<Node> = Api::all(admin.clone());
    witness.wait_ready(&nodes).await;
    agent.wait_ready(&nodes).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    pods.create(&PostParams::default(), &evicted_soon("cut-off", "e2e-partition")).await.expect("create cut-off");
    eventually_with(&mut agent, "cut-off Running", Duration::from_secs(60), async || running(&pods.get("cut-off").await.ok()?).then_some(())).await;

    let out = node_action(&agent, "partition");
    assert!(out.contains("accepted: the node is cut off from the API server"), "{out}");

    // kubectl get nodes: NotReady (Unknown) once the grace period passes without a Lease renewal.
    let grace = cluster().settings.node_monitor_grace_period;
    let node = eventually_with(&mut agent, "Ready Unknown and the unreachable taint", grace + Duration::from_secs(40), async || {
        let node = nodes.get("e2e-partition").await.ok()?;
        let tainted = taints(&node).contains(&("node.kubernetes.io/unreachable".to_string(), "NoExecute".to_string()));
        (condition(&node, "Ready")?.status == "Unknown" && tainted).then_some(node)
    })
    .await;
    let ready = condition(&node, "Ready").cloned().unwrap_or_default();
    assert_eq!((ready.reason.as_deref(), ready.message.as_deref()), (Some("NodeStatusUnknown"), Some("Kubelet stopped posting node status.")));

    // The taint manager deletes the pod after its toleration; it stays Terminating, as its
    // node cannot confirm, and its container keeps running on the node.
    eventually_with(&mut agent, "cut-off marked for deletion", Duration::from_secs(60), async || {
        pods.get("cut-off").await.ok()?.metadata.deletion_timestamp.map(|_| ())
    })
    .await;
    let held = running_pods(&admin, "e2e-partition").await.expect("the node's /runningpods/");
    assert_eq!(held, ["cut-off"], "the partitioned node still runs the pod");

    // heal: Ready again, the taint gone, the pod's containers stopped and the pod deleted.
    let out = node_action(&agent, "heal");
    assert!(out.contains("accepted: healed: the node is connected to the API server again"), "{out}");
    eventually_with(&mut agent, "Ready again without the unreachable taint", Duration::from_secs(60), async || {
        let node = nodes.get("e2e-partition").await.ok()?;
        let ready = condition(&node, "Ready")?.status == "True";
        (ready && !taints(&node).iter().any(|(k, _)| k == "node.kubernetes.io/unreachable")).then_some(())
    })
    .await;
    eventually_with(&mut agent, "cut-off deleted by the node", Duration::from_secs(60), async || pods.get_opt("cut-off").await.ok()?.is_none().then_some(()))
        .await;
    eventually_with(&mut agent, "cut-off's sandbox gone from the node", Duration::from_secs(30), async || {
        running_pods(&admin, "e2e-partition").await?.is_empty().then_some(())
    })
    .await;
    agent.assert_no_refused_requests();
}

#[tokio::test]
async fn a_reboot_shows_a_new_boot_id_and_restarts_every_pod_a_kubelet_restart_none() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-reboot").await;
    agent.start();
    let nodes: Api<Node> = Api::all(admin.clone());
    let first_boot = boot_id(&agent.wait_ready(&nodes).await);
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    pods.create(&PostParams::default(), &evicted_soon("rebooted", "e2e-reboot")).await.expect("create rebooted");
    eventually_with(&mut agent, "rebooted Running", Duration::from_secs(60), async || running(&pods.get("rebooted").await.ok()?).then_some(())).await;

    // kubelet-restart: the container keeps running, no restart counted, the same boot.
    let started = container_status(&pods.get("rebooted").await.expect("the pod")).and_then(|c| c.state?.running?.started_at);
    node_action(&agent, "kubelet-restart");
    eventually_with(&mut agent, "Starting kubelet. twice", Duration::from_secs(60), async || {
        let starts = event_reasons(&admin, "default", "e2e-reboot").await.into_iter().filter(|(r, _)| r == "Starting").count();
        (starts >= 2).then_some(())
    })
    .await;
    let node = agent.wait_ready(&nodes).await;
    assert_eq!(boot_id(&node), first_boot, "a kubelet restart is no reboot");
    let after = container_status(&pods.get("rebooted").await.expect("the pod")).expect("a container status");
    assert_eq!(after.restart_count, 0, "{after:?}");
    assert_eq!(after.state.and_then(|s| s.running).and_then(|r| r.started_at), started, "the same container runs on");

    // reboot: a new boot id, the kubelet's Rebooted event, the container started again.
    node_action(&agent, "reboot");
    rebooted(&mut agent, &admin, &first_boot).await;
    let restarted = eventually_with(&mut agent, "rebooted Running again with restartCount 1", Duration::from_secs(60), async || {
        let pod = pods.get("rebooted").await.ok()?;
        (running(&pod) && container_status(&pod)?.restart_count == 1).then_some(pod)
    })
    .await;
    assert_eq!(restarted.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Running"));
    // containerd after a boot: the old container exited 255, Unknown; the sandbox changed.
    let last = container_status(&restarted).and_then(|c| c.last_state?.terminated).expect("lastState terminated");
    assert_eq!((last.exit_code, last.reason.as_deref()), (255, Some("Unknown")), "{last:?}");
    let uid = restarted.metadata.uid.clone().unwrap_or_default();
    let changed = ("SandboxChanged".to_string(), "Pod sandbox changed, it will be killed and re-created.".to_string());
    // Events are written by a task of their own: the status may be there first.
    eventually_with(&mut agent, "SandboxChanged in kubectl describe pod rebooted", Duration::from_secs(30), async || {
        event_reasons(&admin, "default", &uid).await.contains(&changed).then_some(())
    })
    .await;
    agent.assert_no_refused_requests();
}

#[tokio::test]
async fn memory_pressure_sets_the_condition_taints_the_node_refuses_best_effort_pods_and_evicts_them_first() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-memory").await;
    agent.short_pressure_transition();
    agent.start();
    let nodes: Api<Node> = Api::all(admin.clone());
    agent.wait_ready(&nodes).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");

    // Under pressure with nothing to evict, the node refuses a new BestEffort pod (one bound
    // to it by name: the scheduler keeps pods off the tainted node).
    node_action(&agent, "memory-pressure");
    eventually_with(&mut agent, "MemoryPressure True on an empty node", Duration::from_secs(60), async || {
        (condition(&nodes.get("e2e-memory").await.ok()?, "MemoryPressure")?.status == "True").then_some(())
    })
    .await;
    let late = pod(serde_json::json!({
        "metadata": {"name": "late"},
        "spec": {"nodeName": "e2e-memory", "containers": [{"name": "app", "image": "nginx:1.25"}]},
    }));
    pods.create(&PostParams::default(), &late).await.expect("create late");
    let rejected = eventually_with(&mut agent, "late rejected", Duration::from_secs(30), async || {
        let p = pods.get("late").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Failed")).then_some(p)
    })
    .await;
    let status = rejected.status.clone().unwrap_or_default();
    let refusal = "The node had condition: [MemoryPressure]. ";
    assert_eq!((status.reason.as_deref(), status.message.clone()), (Some("Evicted"), Some(format!("Pod was rejected: {refusal}"))));
    let uid = rejected.metadata.uid.clone().unwrap_or_default();
    assert!(event_reasons(&admin, "default", &uid).await.contains(&("Evicted".to_string(), refusal.to_string())));
    node_action(&agent, "heal");
    eventually_with(&mut agent, "MemoryPressure False after heal", Duration::from_secs(60), async || {
        let node = nodes.get("e2e-memory").await.ok()?;
        let tainted = taints(&node).iter().any(|(k, _)| k == "node.kubernetes.io/memory-pressure");
        (condition(&node, "MemoryPressure")?.status == "False" && !tainted).then_some(())
    })
    .await;

    let resources = serde_json::json!({"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "100m", "memory": "128Mi"}});
    let guaranteed = pod(serde_json::json!({
        "metadata": {"name": "guaranteed"},
        "spec": {"nodeSelector": {"e2e": "e2e-memory"}, "containers": [{"name": "app", "image": "nginx:1.25", "resources": resources}]},
    }));
    let best_effort = pod(serde_json::json!({
        "metadata": {"name": "best-effort"},
        "spec": {"nodeSelector": {"e2e": "e2e-memory"}, "containers": [{"name": "app", "image": "nginx:1.25"}]},
    }));
    for p in [&guaranteed, &best_effort] {
        pods.create(&PostParams::default(), p).await.expect("create a pod");
    }
    for name in ["guaranteed", "best-effort"] {
        eventually_with(&mut agent, &format!("{name} Running"), Duration::from_secs(60), async || running(&pods.get(name).await.ok()?).then_some(())).await;
    }

    let out = node_action(&agent, "memory-pressure");
    assert!(out.contains("accepted: the node runs short of memory"), "{out}");
    // kubectl describe node: MemoryPressure True, and the controller manager's taint.
    let node = eventually_with(&mut agent, "MemoryPressure True and the memory-pressure taint", Duration::from_secs(60), async || {
        let node = nodes.get("e2e-memory").await.ok()?;
        let tainted = taints(&node).contains(&("node.kubernetes.io/memory-pressure".to_string(), "NoSchedule".to_string()));
        (condition(&node, "MemoryPressure")?.status == "True" && tainted).then_some(node)
    })
    .await;
    let memory = condition(&node, "MemoryPressure").cloned().unwrap_or_default();
    assert_eq!(
        (memory.reason.as_deref(), memory.message.as_deref()),
        (Some("KubeletHasInsufficientMemory"), Some("kubelet has insufficient memory available"))
    );

    // kubectl get pods: best-effort Evicted, guaranteed Running.
    let message = "The node was low on resource: memory. Container app was using 64Mi, which exceeds its request of 0. ";
    let evicted = eventually_with(&mut agent, "best-effort Evicted", Duration::from_secs(60), async || {
        let p = pods.get("best-effort").await.ok()?;
        (p.status.as_ref()?.reason.as_deref() == Some("Evicted")).then_some(p)
    })
    .await;
    let status = evicted.status.clone().unwrap_or_default();
    assert_eq!((status.phase.as_deref(), status.message.as_deref()), (Some("Failed"), Some(message)));
    assert!(running(&pods.get("guaranteed").await.expect("guaranteed")), "the Guaranteed pod runs on");
    let uid = evicted.metadata.uid.clone().unwrap_or_default();
    let events = event_reasons(&admin, "default", &uid).await;
    assert!(events.contains(&("Evicted".to_string(), message.to_string())), "kubectl describe pod best-effort: {events:?}");
    let node_events = event_reasons(&admin, "default", "e2e-memory").await;
    assert!(node_events.contains(&("EvictionThresholdMet".to_string(), "Attempting to reclaim memory".to_string())), "{node_events:?}");

    // The eviction freed enough: the pressure ends after the transition period, the taint goes.
    eventually_with(&mut agent, "MemoryPressure False and no taint", Duration::from_secs(90), async || {
        let node = nodes.get("e2e-memory").await.ok()?;
        let tainted = taints(&node).iter().any(|(k, _)| k == "node.kubernetes.io/memory-pressure");
        (condition(&node, "MemoryPressure")?.status == "False" && !tainted).then_some(())
    })
    .await;
    assert!(running(&pods.get("guaranteed").await.expect("guaranteed")), "the Guaranteed pod was never evicted");
    let out = node_action(&agent, "heal");
    assert!(out.contains("memory is free again"), "{out}");
    agent.assert_no_refused_requests();
}

#[tokio::test]
async fn a_lost_network_or_runtime_turns_the_node_not_ready_with_the_kubelets_message_until_healed() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-outage").await;
    agent.start();
    let nodes: Api<Node> = Api::all(admin.clone());
    agent.wait_ready(&nodes).await;
    for (action, message) in [
        (
            "network-down",
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
        ),
        ("runtime-down", "container runtime is down"),
    ] {
        node_action(&agent, action);
        let ready = eventually_with(&mut agent, &format!("NotReady after {action}"), Duration::from_secs(60), async || {
            let ready = condition(&nodes.get("e2e-outage").await.ok()?, "Ready")?.clone();
            (ready.status == "False").then_some(ready)
        })
        .await;
        assert_eq!((ready.reason.as_deref(), ready.message.as_deref()), (Some("KubeletNotReady"), Some(message)), "after {action}");
        node_action(&agent, "heal");
        agent.wait_ready(&nodes).await;
    }
    agent.assert_no_refused_requests();
}
