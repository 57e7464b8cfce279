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
use labkubelet_tests::apiserver::{ApiServer, Failures, Faults};
use std::time::Duration;

/// When a Lease was last renewed, in nanoseconds (0: never).
fn renewed_at(lease: &Lease) -> i128 {
    lease.spec.as_ref().and_then(|s| s.renew_time.as_ref()).map(|t| t.0.as_nanosecond()).unwrap_or(0)
}

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
    // The nodes speak HTTP/2, as a kubelet does to an API server that offers it: the Lease
    // renewals, the pod watch and the rest share a connection.
    let node_requests: Vec<(String, http::Version)> =
        server.requests_with_versions().into_iter().filter(|(line, _)| line.contains("/leases/") || line.contains("fieldSelector=spec.nodeName")).collect();
    assert!(!node_requests.is_empty());
    assert!(node_requests.iter().all(|(_, v)| *v == http::Version::HTTP_2), "requests over HTTP/1: {node_requests:?}");
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
    run_nodes(100, Faults { failing: vec![Failures::next(400, 429)], ..Faults::default() }).await;
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
    let before = renewed_at(&leases.get("lab-node-0").await.unwrap());
    labkubelet_tests::eventually("a renewal with the rotated certificate", Duration::from_secs(20), async || {
        (renewed_at(&leases.get("lab-node-0").await.ok()?) > before).then_some(())
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
    let limits = labkubelet::api_client::Limits { api: Some(labkubelet::api_client::Throttle::KUBELET), events: None };
    let client = labkubelet::api_client::throttled(&server.admin().await, limits);
    let nodes: Api<Node> = Api::all(client);
    let started = std::time::Instant::now();
    for _ in 0..15 {
        nodes.list(&ListParams::default()).await.unwrap();
    }
    assert!(started.elapsed() >= Duration::from_millis(950), "15 requests in {:?}: the bucket of 10 refills at 5 a second", started.elapsed());
    let lists = server.requests().iter().filter(|r| r.starts_with("GET /api/v1/nodes")).count();
    assert_eq!(lists, 15, "every request is sent, none dropped");
}

/// One client, three lanes: once a node's API requests have used up the kubeAPIQPS bucket,
/// its Lease (the heartbeat lane, unlimited) and its events (their own bucket) still go,
/// as the kubelet's heartbeat and event clients do.
#[tokio::test]
async fn a_nodes_heartbeats_and_events_do_not_wait_for_its_api_requests_tokens() {
    use k8s_openapi::api::core::v1::Event;
    let server = ApiServer::start().await.unwrap();
    // Ten tokens, then one every 1,000 s: a request that waits for the API bucket waits
    // past the test's deadline.
    let slow = labkubelet::api_client::Throttle { qps: 0.001, burst: 10 };
    let limits = labkubelet::api_client::Limits { api: Some(slow), events: Some(slow) };
    let client = labkubelet::api_client::throttled(&server.admin().await, limits);
    let nodes: Api<Node> = Api::all(client.clone());
    let every_node = ListParams::default();
    for _ in 0..10 {
        nodes.list(&every_node).await.unwrap();
    }
    let eleventh = tokio::spawn(async move { nodes.list(&ListParams::default()).await });

    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let events: Api<Event> = Api::namespaced(client, "default");
    let heartbeats_and_events = async {
        for _ in 0..5 {
            leases.get_opt("n1").await.unwrap();
        }
        events.list(&ListParams::default()).await.unwrap();
    };
    tokio::time::timeout(Duration::from_secs(30), heartbeats_and_events).await.expect("the Lease reads and the event list did not wait for API tokens");
    let lists = server.requests().iter().filter(|r| r.starts_with("GET /api/v1/nodes")).count();
    assert_eq!(lists, 10, "the eleventh list waits for a token of the API bucket");
    assert!(!eleventh.is_finished());
    eleventh.abort();
}

/// The paths a node uses, as the double's request lines show them, each with what uses it.
/// The test's own looks are made so that none matches (lists across namespaces, pods by
/// name).
const START_PATHS: [(&str, &str); 3] = [
    ("the bootstrap's CSR and its watch", "/certificatesigningrequests"),
    ("registration", "POST /api/v1/nodes"),
    ("the pod watch", "fieldSelector=spec.nodeName"),
];
const RUNNING_PATHS: [(&str, &str); 5] = [
    ("the node and its status", "/api/v1/nodes/burst-0"),
    ("the Lease", "/namespaces/kube-node-lease/leases"),
    ("the pod's status", "/namespaces/default/pods/web/status"),
    ("events", "/namespaces/default/events"),
    ("the mirror pod's creation", "POST /api/v1/namespaces/kube-system/pods"),
];

/// A burst of `count` failures on each path.
fn bursts(paths: &[(&str, &str)], count: u32, code: u16) -> Faults {
    Faults { failing: paths.iter().map(|(_, matching)| Failures::on(matching, count, code)).collect(), ..Faults::default() }
}

/// Waits until every burst has been spent (on the node's requests: none of the test's
/// matches), failing with the ones left.
async fn spent(server: &ApiServer, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left: Vec<(String, u32)> = server.faults().failing.into_iter().filter(|f| f.count > 0).map(|f| (f.matching, f.count)).collect();
        if left.is_empty() {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "bursts not spent within {within:?} (request, failures left): {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A 429 storm (`Retry-After: 1`, as max-in-flight answers) and then a 503 burst on every
/// path a node uses to the API server — bootstrap, the CSR watch, registration, node status,
/// the Lease, the pod watch, pod status, events, mirror pods — first while the node starts,
/// then while it runs a pod and a static pod: each is retried, the node turns and stays
/// Ready, the pods run and go as asked, and neither the node nor the agent starts over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_and_a_5xx_burst_on_every_path_end_with_the_node_ready() {
    use k8s_openapi::api::core::v1::{Event, Pod};
    use kube::api::{DeleteParams, PostParams};
    for code in [429, 503] {
        let (server, dir, mut config, catalog) = joining(vec!["burst-0".to_string()]).await;
        let manifests = dir.path().join("manifests");
        std::fs::create_dir(&manifests).unwrap();
        let manifest = "apiVersion: v1\nkind: Pod\nmetadata: {name: static, namespace: kube-system}\nspec:\n  containers: [{name: app, image: nginx:1.25}]\n";
        std::fs::write(manifests.join("static.yaml"), manifest).unwrap();
        config.static_pod_path = Some(manifests);
        let c = server.admin().await;
        let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
        let web: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"nodeName": "burst-0", "containers": [{"name": "web", "image": "nginx:1.25"}], "terminationGracePeriodSeconds": 1}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &web).await.unwrap();
        // Within client-go's 10 retries of one request: ridden out by retrying, no loop fails.
        let count = if code == 429 { 8 } else { 4 };
        let restarts = || labkubelet::metrics::METRICS.node_restarts.with_label_values(&["burst-0"]).get();
        let restarts_before = restarts();
        let every_path = [START_PATHS.as_slice(), RUNNING_PATHS.as_slice()].concat();
        server.set_faults(bursts(&every_path, count, code));
        let agent = tokio::spawn(run(config, catalog, Clock::new()));

        let nodes: Api<Node> = Api::all(c.clone());
        let all_pods: Api<Pod> = Api::all(c.clone());
        let events: Api<Event> = Api::all(c.clone());
        let leases: Api<Lease> = Api::all(c.clone());
        let running = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let mirror = async || {
            let listed = all_pods.list(&ListParams::default()).await.ok()?.items;
            listed.into_iter().find(|p| p.metadata.name.as_deref() == Some("static-burst-0") && running(p))
        };
        let within = Duration::from_secs(120);
        labkubelet_tests::eventually(&format!("{code}s: the node Ready"), within, async || {
            nodes.list(&ListParams::default()).await.ok()?.items.iter().any(|n| n.metadata.name.as_deref() == Some("burst-0") && ready(n)).then_some(())
        })
        .await;
        labkubelet_tests::eventually(&format!("{code}s: the pod Running"), within, async || pods.get("web").await.ok().filter(running)).await;
        let first_mirror = labkubelet_tests::eventually(&format!("{code}s: the mirror pod Running"), within, mirror).await;
        labkubelet_tests::eventually(&format!("{code}s: the pod's Started event"), within, async || {
            let listed = events.list(&ListParams::default()).await.ok()?.items;
            listed.into_iter().find(|e| e.reason.as_deref() == Some("Started") && e.involved_object.name.as_deref() == Some("web"))
        })
        .await;
        spent(&server, within).await;

        // While it runs: the Lease, the node status, the pod's last status and the mirror
        // pod made again all meet a burst.
        server.set_faults(bursts(&RUNNING_PATHS, count, code));
        pods.delete("web", &DeleteParams::default()).await.unwrap();
        let mirrors: Api<Pod> = Api::namespaced(c.clone(), "kube-system");
        mirrors.delete("static-burst-0", &DeleteParams::default()).await.unwrap();
        spent(&server, within).await;
        let after_bursts = leases.list(&ListParams::default()).await.unwrap().items.iter().map(renewed_at).max().unwrap_or(0);
        labkubelet_tests::eventually(&format!("{code}s: the Lease renewed after the burst"), within, async || {
            (leases.list(&ListParams::default()).await.ok()?.items.iter().map(renewed_at).max()? > after_bursts).then_some(())
        })
        .await;
        labkubelet_tests::eventually(&format!("{code}s: the pod deleted by its node"), within, async || {
            pods.get_opt("web").await.ok()?.is_none().then_some(())
        })
        .await;
        let again = labkubelet_tests::eventually(&format!("{code}s: the mirror pod made again"), within, async || {
            mirror().await.filter(|p| p.metadata.uid != first_mirror.metadata.uid)
        })
        .await;
        assert!(again.metadata.uid.is_some());
        let node = nodes.list(&ListParams::default()).await.unwrap().items.into_iter().find(|n| n.metadata.name.as_deref() == Some("burst-0")).unwrap();
        assert!(ready(&node), "{code}s: the node stays Ready");
        assert_eq!(restarts(), restarts_before, "{code}s: the node never started over");
        assert!(!agent.is_finished(), "{code}s: the agent stopped: {:?}", agent.await);
        agent.abort();
    }
}
