//! Pods on a lab node, as the book's walk-through (docs/lab.md) runs them: scheduled by the real
//! scheduler, a scenario plugin installed while the agent runs, `kubectl logs` through the
//! API server, a trigger, an agent restart that keeps every container, graceful deletion,
//! and a pod force-deleted while the agent was down.

use crate::support::{Agent, cluster, container_status, event_reasons, events, eventually_with, labkubelet, pod};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use std::time::Duration;

fn on_node(name: &str, node: &str, annotations: serde_json::Value) -> Pod {
    pod(serde_json::json!({
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "nodeSelector": {"e2e": node},
            "containers": [{"name": "app", "image": "nginx:1.25"}],
        },
    }))
}

/// The agent's own pod list, through the API server's node proxy.
async fn node_proxy(client: &kube::Client, node: &str, path: &str) -> Option<serde_json::Value> {
    let request = http::Request::get(format!("/api/v1/nodes/{node}/proxy/{path}")).body(Vec::new()).ok()?;
    let text = client.request_text(request).await.ok()?;
    serde_json::from_str(&text).ok()
}

#[tokio::test]
async fn pods_are_scheduled_run_crash_log_and_survive_an_agent_restart() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-pods").await;
    agent.start();
    let nodes: Api<Node> = Api::all(admin.clone());
    agent.wait_ready(&nodes).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");

    // kubectl run nginx: Pending -> ContainerCreating -> Running on the lab node.
    pods.create(&PostParams::default(), &on_node("nginx", "e2e-pods", serde_json::json!({}))).await.expect("create nginx");
    let nginx = eventually_with(&mut agent, "nginx Running and Ready", Duration::from_secs(60), async || {
        let p = pods.get("nginx").await.ok()?;
        let ready = p.status.as_ref()?.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        (p.status.as_ref()?.phase.as_deref() == Some("Running") && ready).then_some(p)
    })
    .await;
    assert_eq!(nginx.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some("e2e-pods"), "bound by the scheduler");
    let uid = nginx.metadata.uid.clone().unwrap_or_default();
    let events = eventually_with(&mut agent, "nginx's events", Duration::from_secs(30), async || {
        let events = events(&admin, "default", &uid).await;
        events.iter().any(|e| e.reason.as_deref() == Some("Started")).then_some(events)
    })
    .await;
    // The scheduler's events have microsecond eventTimes, the kubelet's second-precision
    // timestamps, and the scheduler may first report FailedScheduling while the node lifecycle
    // controller still holds the not-ready taint: compare the kubelet's own order, and that the
    // scheduler's Scheduled is there.
    let (kubelet, others): (Vec<_>, Vec<_>) = events.into_iter().partition(|e| e.source.as_ref().and_then(|s| s.component.as_deref()) == Some("kubelet"));
    let reason = |e: &k8s_openapi::api::core::v1::Event| e.reason.clone().unwrap_or_default();
    assert!(others.iter().any(|e| reason(e) == "Scheduled"), "kubectl describe pod nginx: the scheduler's event");
    let reasons: Vec<String> = kubelet.iter().map(reason).collect();
    assert_eq!(reasons, ["Pulling", "Pulled", "Created", "Started"], "kubectl describe pod nginx");

    // A scenario plugin dropped into the running agent's folder, then a pod that asks for it.
    let (ok, out) = labkubelet(&["plugin", "install", "--plugin-dir", &agent.plugins().display().to_string()], &cluster().admin_kubeconfig());
    assert!(ok, "plugin install: {out}");
    let flaky = on_node("flaky", "e2e-pods", serde_json::json!({"labkubelet.io/scenario": "crashloop"}));
    pods.create(&PostParams::default(), &flaky).await.expect("create flaky");
    let crashing = eventually_with(&mut agent, "flaky in CrashLoopBackOff after two restarts", Duration::from_secs(120), async || {
        let c = container_status(&pods.get("flaky").await.ok()?)?;
        let waiting = c.state.as_ref()?.waiting.as_ref()?.reason.clone()?;
        (waiting == "CrashLoopBackOff" && c.restart_count >= 2).then_some(c)
    })
    .await;
    let last = crashing.last_state.and_then(|s| s.terminated).expect("lastState terminated");
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    // The node's /pods says which plugin serves each pod, as the terminal view does.
    let listed = node_proxy(&admin, "e2e-pods", "pods").await.expect("the node's /pods");
    let served: Vec<(String, String)> = listed["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap_or("").to_string(),
                p["metadata"]["annotations"]["labkubelet.io/served-by"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(served.contains(&("flaky".into(), "crashloop".into())) && served.contains(&("nginx".into(), "healthy".into())), "{served:?}");

    // kubectl logs, through the API server to the node's port with its kubelet client certificate.
    let logs = pods.logs("nginx", &LogParams::default()).await.expect("kubectl logs nginx");
    assert!(logs.contains("app started from image nginx:1.25"), "{logs}");
    let previous = pods.logs("flaky", &LogParams { previous: true, ..LogParams::default() }).await.expect("kubectl logs flaky --previous");
    assert!(previous.contains("app exited with code 1 (Error)"), "{previous}");

    // labkubelet trigger, authenticated by the admin's kubeconfig: nginx's container dies with
    // 137. The agent listens on a port of its choosing; --root-dir alone finds it.
    let root = agent.root.path().display().to_string();
    let (ok, out) = labkubelet(&["trigger", "--root-dir", &root, "healthy", "kill", "--pod", "nginx", "code=137"], &cluster().admin_kubeconfig());
    assert!(ok && out.contains("accepted"), "trigger: {out}");
    // Without credentials the node answers 401, and the command says what it sent and what to pass.
    let (ok, out) = labkubelet(&["trigger", "--root-dir", &root, "healthy", "kill", "--pod", "nginx"], std::path::Path::new("/nonexistent/kubeconfig"));
    assert!(!ok);
    assert!(
        out.contains("answered 401 Unauthorized")
            && out.contains("sent no credentials (no --kubeconfig, and $KUBECONFIG (/nonexistent/kubeconfig) could not be read); pass --kubeconfig"),
        "trigger without credentials: {out}"
    );
    let restarted = eventually_with(&mut agent, "nginx restarted after the kill", Duration::from_secs(30), async || {
        let c = container_status(&pods.get("nginx").await.ok()?)?;
        (c.restart_count == 1 && c.ready).then_some(c)
    })
    .await;
    assert_eq!(restarted.last_state.and_then(|s| s.terminated).map(|t| t.exit_code), Some(137));

    // Ctrl-C and the same command again: the containers kept running, nothing restarted.
    let before = container_status(&pods.get("nginx").await.expect("nginx")).expect("nginx's container");
    let flaky_before = container_status(&pods.get("flaky").await.expect("flaky")).expect("flaky's container").restart_count;
    agent.stop();
    agent.start();
    agent.wait_ready(&nodes).await;
    eventually_with(&mut agent, "the restarted agent runs nginx", Duration::from_secs(30), async || {
        let list = node_proxy(&admin, "e2e-pods", "pods").await?;
        let running =
            list["items"].as_array()?.iter().any(|p| p["metadata"]["name"] == "nginx" && p["status"]["containerStatuses"][0]["state"]["running"].is_object());
        running.then_some(())
    })
    .await;
    let after = container_status(&pods.get("nginx").await.expect("nginx")).expect("nginx's container");
    assert_eq!((after.restart_count, &after.container_id), (before.restart_count, &before.container_id), "an agent restart is not a container restart");
    let flaky_after = container_status(&pods.get("flaky").await.expect("flaky")).expect("flaky's container").restart_count;
    assert!(flaky_after >= flaky_before, "restart counts never go back: {flaky_before} then {flaky_after}");

    // kubectl delete pod nginx: Killing, then gone once the agent deleted it with grace 0.
    pods.delete("nginx", &DeleteParams::default()).await.expect("delete nginx");
    eventually_with(&mut agent, "nginx gone", Duration::from_secs(60), async || pods.get_opt("nginx").await.ok()?.is_none().then_some(())).await;
    let killing = event_reasons(&admin, "default", &uid).await;
    assert!(killing.iter().any(|(r, m)| r == "Killing" && m == "Stopping container app"), "{killing:?}");

    // A pod force-deleted while the agent is down: its containers are stopped at the next start.
    let flaky_uid = pods.get("flaky").await.expect("flaky").metadata.uid.unwrap_or_default();
    agent.stop();
    pods.delete("flaky", &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }).await.expect("force-delete flaky");
    agent.start();
    agent.wait_ready(&nodes).await;
    eventually_with(&mut agent, "the orphaned pod's containers removed", Duration::from_secs(60), async || {
        let running = node_proxy(&admin, "e2e-pods", "runningpods/").await?;
        let items = running["items"].as_array()?.clone();
        (!items.iter().any(|p| p["metadata"]["uid"] == flaky_uid.as_str())).then_some(())
    })
    .await;
    agent.assert_no_refused_requests();
}

/// A pull that takes 15 s (the scripted plugin holds the reply): all the while the pod shows
/// as a kubelet shows it, `Pending` with its container waiting `ContainerCreating`.
#[tokio::test]
async fn a_slow_pull_shows_container_creating_while_it_takes() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-slow").await;
    let (ok, out) = labkubelet(&["plugin", "install", "scripted", "--plugin-dir", &agent.plugins().display().to_string()], &cluster().admin_kubeconfig());
    assert!(ok, "plugin install: {out}");
    std::fs::write(agent.plugins().join("scripted.yaml"), "rules:\n  - calls: [pull-image]\n    delaySeconds: 15\n").expect("the rules file");
    agent.start();
    agent.wait_ready(&Api::<Node>::all(admin.clone())).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    pods.create(&PostParams::default(), &on_node("slow", "e2e-slow", serde_json::json!({"labkubelet.io/scenario": "scripted"}))).await.expect("create");
    let creating = eventually_with(&mut agent, "slow Pending with its container ContainerCreating", Duration::from_secs(30), async || {
        let p = pods.get("slow").await.ok()?;
        let waiting = container_status(&p)?.state?.waiting?.reason?;
        (p.status.as_ref()?.phase.as_deref() == Some("Pending") && waiting == "ContainerCreating").then_some(p)
    })
    .await;
    assert!(creating.status.and_then(|s| s.start_time).is_some(), "the start time is set before the pull");
    let started = eventually_with(&mut agent, "slow Running once the pull is done", Duration::from_secs(60), async || {
        let p = pods.get("slow").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Running")).then_some(p)
    })
    .await;
    let uid = started.metadata.uid.unwrap_or_default();
    let reasons: Vec<String> = event_reasons(&admin, "default", &uid).await.into_iter().map(|(r, _)| r).collect();
    assert!(reasons.contains(&"Pulled".to_string()), "{reasons:?}");
    agent.assert_no_refused_requests();
}

/// An agent running one node `node`, Ready, and the pod `name` on it, Running and Ready.
async fn one_running_pod(node: &str, name: &str) -> (Agent, Api<Pod>) {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new(node).await;
    agent.start();
    agent.wait_ready(&Api::<Node>::all(admin.clone())).await;
    let pods: Api<Pod> = Api::namespaced(admin, "default");
    pods.create(&PostParams::default(), &on_node(name, node, serde_json::json!({}))).await.expect("create");
    eventually_with(&mut agent, &format!("{name} Running and Ready"), Duration::from_secs(60), async || {
        let p = pods.get(name).await.ok()?;
        let ready = p.status.as_ref()?.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        (p.status.as_ref()?.phase.as_deref() == Some("Running") && ready).then_some(())
    })
    .await;
    (agent, pods)
}

/// A condition another writer adds to a pod (a controller's readiness gate, the taint manager's
/// `DisruptionTarget`) is not the kubelet's to drop: its status writes leave it alone, as the
/// kubelet's strategic merge patch does.
#[tokio::test]
async fn a_condition_another_writer_adds_survives_the_kubelets_status_writes() {
    let (mut agent, pods) = one_running_pod("e2e-conditions", "gated").await;

    // A controller sets its own condition, as kubectl patch --subresource=status would.
    let condition = serde_json::json!({"status": {"conditions": [{"type": "example.com/LabGate", "status": "True", "reason": "Opened"}]}});
    pods.patch_status("gated", &kube::api::PatchParams::default(), &kube::api::Patch::Strategic(condition)).await.expect("add a condition");
    // The kubelet writes the pod's status again: its container is killed and restarted.
    let root = agent.root.path().display().to_string();
    let (ok, out) = labkubelet(&["trigger", "--root-dir", &root, "healthy", "kill", "--pod", "gated", "code=137"], &cluster().admin_kubeconfig());
    assert!(ok && out.contains("accepted"), "trigger: {out}");
    let restarted = eventually_with(&mut agent, "gated restarted and Ready again", Duration::from_secs(60), async || {
        let p = pods.get("gated").await.ok()?;
        let ready = p.status.as_ref()?.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
        (container_status(&p)?.restart_count == 1 && ready).then_some(p)
    })
    .await;
    let types: Vec<String> = restarted.status.and_then(|s| s.conditions).into_iter().flatten().map(|c| c.type_).collect();
    assert!(types.contains(&"example.com/LabGate".to_string()), "the other writer's condition was dropped: {types:?}");
    agent.assert_no_refused_requests();
}

/// A running pod whose state does not change is not written again at every sync: the
/// status the kubelet generates carries fields a 1.20 API server does not know (`hostIPs`),
/// so the server's copy never equals it, and comparing with that copy alone made every
/// 10-second resync a write — 0.2 writes a second per pod, the load that starved the Leases
/// of a thousand nodes with ten pods each.
#[tokio::test]
async fn a_running_pods_status_is_written_when_it_changes_not_at_every_resync() {
    let (mut agent, _pods) = one_running_pod("e2e-quiet", "quiet").await;
    let user = agent.user();
    let by_node =
        |verb: &str, uri: &str| cluster().audit().iter().filter(|e| e.user.username == user && e.verb == verb && e.request_uri.starts_with(uri)).count();
    let writes = || by_node("patch", "/api/v1/namespaces/default/pods/quiet/status");
    let renewals = || by_node("update", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/e2e-quiet");
    let (written, renewed) = (writes(), renewals());
    // Three Lease renewals (one each 10 s) span at least two of the pod's resyncs.
    eventually_with(&mut agent, "three Lease renewals", Duration::from_secs(60), async || (renewals() >= renewed + 3).then_some(())).await;
    assert_eq!(writes(), written, "the status of a pod that did not change was written again");
    agent.assert_no_refused_requests();
}
