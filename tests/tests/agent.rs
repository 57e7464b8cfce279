//! The agent as `labkubelet run` runs it, against the API-server double with the
//! auto-approver on: several nodes in one process bootstrap their credentials, register,
//! turn Ready and keep their Leases.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use labkubelet::agent::run;
use labkubelet::clock::Clock;
use labkubelet::plugin::{PluginCatalog, PluginEngine, PluginPolicy};
use labkubelet_tests::agent_config;
use labkubelet_tests::apiserver::{ApiServer, Faults};
use std::time::Duration;

fn ready(node: &Node) -> bool {
    node.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Runs `count` nodes in one agent until all are Ready and renew their Leases; the server
/// starts with `faults` (throttling, say), which the agent must ride out without stopping.
/// A server with the auto-approver on, and an agent configuration for `names` that joins it
/// with a bootstrap token, in a folder of its own.
async fn joining(names: Vec<String>) -> (ApiServer, tempfile::TempDir, labkubelet::agent::AgentConfig, std::sync::Arc<PluginCatalog>) {
    let server = ApiServer::start().await.unwrap();
    server.set_auto_approve(true);
    let token = server.add_bootstrap_token("abcdef", "0123456789abcdef");
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("bootstrap-kubelet.conf");
    std::fs::write(&bootstrap, server.kubeconfig_with_token(&token)).unwrap();
    let config = agent_config(dir.path(), names, bootstrap);
    let catalog = PluginCatalog::new(PluginEngine::new(PluginPolicy::default()).unwrap()).await.unwrap();
    (server, dir, config, catalog)
}

async fn run_nodes(count: usize, faults: Faults) {
    let names: Vec<String> = (0..count).map(|i| format!("lab-node-{i}")).collect();
    let (server, dir, config, catalog) = joining(names.clone()).await;
    server.set_faults(faults);
    let agent = tokio::spawn(run(config, catalog.clone(), Clock::new()));

    let c = server.admin().await;
    let nodes: Api<Node> = Api::all(c.clone());
    let leases: Api<Lease> = Api::namespaced(c, "kube-node-lease");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(!agent.is_finished(), "the agent stopped: {:?}", agent.await);
        // The test's own requests meet the server's faults too: a refused look is no answer.
        let all = nodes.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
        let leased = leases.list(&ListParams::default()).await.map(|l| l.items.len()).unwrap_or_default();
        if all.len() == count && all.iter().all(ready) && leased == count {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {count} nodes registered, {} Ready, {leased} leases",
            all.len(),
            all.iter().filter(|n| ready(n)).count()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every lease is renewed again (a 4 s lease is renewed every second).
    let renewed_at = |l: &Lease| l.spec.as_ref().and_then(|s| s.renew_time.as_ref()).map(|t| t.0.as_nanosecond()).unwrap_or(0);
    let first: std::collections::BTreeMap<String, i128> =
        leases.list(&ListParams::default()).await.unwrap().items.iter().map(|l| (l.metadata.name.clone().unwrap(), renewed_at(l))).collect();
    loop {
        let now = leases.list(&ListParams::default()).await.unwrap().items;
        if now.iter().all(|l| renewed_at(l) > first[l.metadata.name.as_ref().unwrap()]) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not every lease was renewed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each node authenticated with its own certificate: one CSR per node, all approved.
    let csrs: Api<CertificateSigningRequest> = Api::all(server.admin().await);
    assert_eq!(csrs.list(&ListParams::default()).await.unwrap().items.len(), count);
    for name in &names {
        let node_config = dir.path().join("pki").join(name).join("kubelet.conf");
        let path = if count == 1 { dir.path().join("kubelet.conf") } else { node_config };
        assert!(std::fs::read_to_string(&path).unwrap().contains("client-certificate:"), "{}", path.display());
    }
    if count == 1 {
        let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(server.admin().await, "default");
        let reasons: Vec<String> = events.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|e| e.reason).collect();
        for reason in ["Starting", "NodeHasSufficientMemory", "NodeHasNoDiskPressure", "NodeHasSufficientPID", "NodeReady"] {
            assert!(reasons.iter().any(|r| r == reason), "no {reason} event in {reasons:?}");
        }
        // A refused plugin is a Warning on the node.
        let plugins = tempfile::tempdir().unwrap();
        std::fs::write(plugins.path().join("broken.wasm"), b"not wasm").unwrap();
        catalog.sync_dir(plugins.path()).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let list = events.list(&ListParams::default()).await.unwrap().items;
            if let Some(w) = list.iter().find(|e| e.reason.as_deref() == Some("PluginRefused")) {
                assert_eq!(w.type_.as_deref(), Some("Warning"));
                assert!(w.message.as_deref().unwrap().contains("broken.wasm: not a WebAssembly file"), "{:?}", w.message);
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "no PluginRefused event");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    agent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_bootstraps_registers_and_turns_ready() {
    run_nodes(1, Faults::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_nodes_in_one_process_register_and_renew() {
    run_nodes(100, Faults::default()).await;
}

/// A server that answers the first 400 requests with 429 Too Many Requests (Retry-After: 1),
/// as max-in-flight does when many clients start at once: every node retries its way
/// through bootstrap and registration, and the agent never stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_nodes_start_through_a_throttling_server() {
    let retried = labkubelet::metrics::METRICS.api_retries.with_label_values(&["429"]).get();
    run_nodes(100, Faults { fail_next: Some((400, 429)), ..Faults::default() }).await;
    // Some of the 429s went to the test's own looks; the agent's were sent again.
    assert!(labkubelet::metrics::METRICS.api_retries.with_label_values(&["429"]).get() > retried, "the throttled requests were sent again");
}

/// A server that does not answer at all when the node starts: after a minute of waiting for
/// it (as the kubelet's bootstrap waits) the node's start fails, the node starts again on
/// its own (saying so), and once the server is back it joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_starts_again_after_the_server_was_unreachable() {
    let (server, _dir, config, catalog) = joining(vec!["unreachable-0".to_string()]).await;
    let restarts = || labkubelet::metrics::METRICS.node_restarts.with_label_values(&["unreachable-0"]).get();
    server.set_faults(Faults { offline: true, ..Faults::default() });
    let agent = tokio::spawn(run(config, catalog, Clock::new()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
    while restarts() == 0 {
        assert!(!agent.is_finished(), "the agent stopped: {:?}", agent.await);
        assert!(tokio::time::Instant::now() < deadline, "the node was not started again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.set_faults(Faults::default());
    let nodes: Api<Node> = Api::all(server.admin().await);
    loop {
        assert!(!agent.is_finished(), "the agent stopped: {:?}", agent.await);
        if nodes.get_opt("unreachable-0").await.ok().flatten().is_some_and(|n| ready(&n)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the node did not join once the server was back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    agent.abort();
}

/// Certificates that live 20 s are rotated at 14–18 s by a CSR the node makes itself
/// (auto-approved as selfnodeclient); once the first has expired, new connections present
/// the rotated one and the Lease is still renewed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_certificate_is_rotated_before_it_expires() {
    let server = ApiServer::start().await.unwrap();
    server.set_auto_approve(true);
    server.set_signing_duration(Duration::from_secs(20));
    let token = server.add_bootstrap_token("abcdef", "0123456789abcdef");
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("bootstrap-kubelet.conf");
    std::fs::write(&bootstrap, server.kubeconfig_with_token(&token)).unwrap();
    let catalog = PluginCatalog::new(PluginEngine::new(PluginPolicy::default()).unwrap()).await.unwrap();
    let started = tokio::time::Instant::now();
    let agent = tokio::spawn(run(agent_config(dir.path(), vec!["lab-node-0".into()], bootstrap), catalog, Clock::new()));

    let c = server.admin().await;
    let csrs: Api<CertificateSigningRequest> = Api::all(c.clone());
    let current = dir.path().join("pki").join("kubelet-client-current.pem");
    let rotated = labkubelet_tests::eventually("a rotation CSR made by the node", Duration::from_secs(40), async || {
        let list = csrs.list(&ListParams::default()).await.ok()?.items;
        list.into_iter().find(|c| c.metadata.name.as_deref().is_some_and(|n| n.starts_with("csr-")))
    })
    .await;
    assert_eq!(rotated.spec.username.as_deref(), Some("system:node:lab-node-0"), "the node renews as itself");
    assert!(started.elapsed() >= Duration::from_secs(13), "rotated too early: {:?}", started.elapsed());
    let first = std::fs::read_link(&current).unwrap();
    labkubelet_tests::eventually("the rotated certificate installed", Duration::from_secs(20), async || {
        (std::fs::read_link(&current).ok()? != first).then_some(())
    })
    .await;

    // Past the first certificate's end: drop every connection, so the next ones must
    // present a certificate the server still accepts.
    tokio::time::sleep((started + Duration::from_secs(22)).saturating_duration_since(tokio::time::Instant::now())).await;
    server.set_faults(Faults { offline: true, ..Faults::default() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.set_faults(Faults::default());
    let leases: Api<Lease> = Api::namespaced(c, "kube-node-lease");
    let renewed = |l: &Lease| l.spec.as_ref().and_then(|s| s.renew_time.as_ref()).map(|t| t.0.as_nanosecond()).unwrap_or(0);
    let before = renewed(&leases.get("lab-node-0").await.unwrap());
    labkubelet_tests::eventually("a renewal with the rotated certificate", Duration::from_secs(20), async || {
        (renewed(&leases.get("lab-node-0").await.ok()?) > before).then_some(())
    })
    .await;
    assert!(!agent.is_finished(), "the agent stopped: {:?}", agent.await);
    agent.abort();
}

/// A container runtime outlives its kubelet: what changed in the runtime just before the
/// agent was stopped (Ctrl-C) is there when it starts again, not only what the periodic save
/// had caught.
#[tokio::test]
async fn a_stopped_agent_saves_the_runtime_state_it_has_at_that_moment() {
    use labkubelet::plugin::PluginRuntime;
    use labkubelet::runtime::state::RuntimeStateDir;
    use labkubelet::runtime::{ContainerRuntime, ContainerState};
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir(&manifests).unwrap();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default}\nspec:\n  containers: [{name: web, image: nginx:1.25}]\n";
    std::fs::write(manifests.join("web.yaml"), pod).unwrap();
    let (started, mut announced) = tokio::sync::mpsc::unbounded_channel();
    let config = labkubelet::agent::AgentConfig {
        standalone: true,
        static_pod_path: Some(manifests),
        started: Some(started),
        ..agent_config(dir.path(), vec!["vm".into()], dir.path().join("unused"))
    };
    let stop = config.stop.clone();
    let catalog = PluginCatalog::new(PluginEngine::new(PluginPolicy::default()).unwrap()).await.unwrap();
    let agent = tokio::spawn(run(config, catalog.clone(), Clock::new()));
    let runtime = announced.recv().await.expect("the node started").api.plugins.clone();
    let running = labkubelet_tests::eventually("the static pod's container running", Duration::from_secs(30), async || {
        runtime.list_containers().await.ok()?.into_iter().find(|c| c.state == ContainerState::Running)
    })
    .await;

    runtime.stop_container(&running.id, Duration::ZERO).await.unwrap();
    stop.cancel();
    agent.await.unwrap().unwrap();

    let restarted = PluginRuntime::new("vm", catalog, Clock::new());
    RuntimeStateDir::new(dir.path(), "vm").restore(&restarted).await;
    let status = restarted.container_status(&running.id).await.expect("the container is in the saved state");
    assert_eq!(status.state, ContainerState::Exited, "the stop made just before Ctrl-C was saved");
}

/// kubeAPIQPS 5 and kubeAPIBurst 10: ten requests go at once, the next five take a second.
#[tokio::test]
async fn a_nodes_api_client_keeps_to_kube_api_qps_and_burst() {
    let server = ApiServer::start().await.unwrap();
    let client = labkubelet::api_client::throttled(&server.admin().await, Some(labkubelet::api_client::Throttle::KUBELET));
    let nodes: Api<Node> = Api::all(client);
    let started = std::time::Instant::now();
    for _ in 0..15 {
        nodes.list(&ListParams::default()).await.unwrap();
    }
    assert!(started.elapsed() >= Duration::from_millis(950), "15 requests in {:?}: the bucket of 10 refills at 5 a second", started.elapsed());
    let lists = server.requests().iter().filter(|r| r.starts_with("GET /api/v1/nodes")).count();
    assert_eq!(lists, 15, "every request is sent, none dropped");
}
