//! The agent against a real API server that admits two requests at a time, one of them
//! mutating, and has no API Priority and Fairness to queue the rest: twenty nodes starting
//! together in one `labkubelet run --nodes 20`, each with a pod and a static pod, meet a
//! 429 storm (`Too many requests, please try again later.`, `Retry-After: 1`) on whatever
//! path they are on: bootstrap, the CSR watch, registration, node status, the Lease, the pod
//! watch, pod status, events, mirror pods. Each throttled request is sent again, every node
//! turns Ready and runs its pods, no node starts over and the agent never exits.
//!
//! A test binary of its own: its control plane has other limits than the `e2e` suite's.

#![allow(clippy::unwrap_used)] // a test fails where it unwraps

#[allow(dead_code)]
#[path = "e2e/support.rs"]
mod support;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use labkubelet_control_plane::audit::AuditEvent;
use std::collections::BTreeMap;
use std::time::Duration;
use support::{Agent, cluster, eventually_with};

fn settings() -> labkubelet_control_plane::Settings {
    labkubelet_control_plane::Settings { max_in_flight: Some((2, 1)), ..Default::default() }
}

const NODES: usize = 20;

const STATIC: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: static\n  namespace: default\nspec:\n  containers:\n  - name: app\n    image: nginx:1.25\n";

fn running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// What a request was for, from its path: the rows of the summary the test prints.
fn path_kind(uri: &str) -> &'static str {
    let path = uri.split('?').next().unwrap_or(uri);
    match () {
        _ if path.contains("certificatesigningrequests") => "CSR (bootstrap, watch)",
        _ if path.contains("/leases") => "Lease",
        _ if path.contains("/events") => "events",
        _ if path.ends_with("/status") && path.contains("/nodes/") => "node status",
        _ if path.contains("/nodes") => "node",
        _ if path.ends_with("/status") => "pod status",
        _ if path == "/api/v1/pods" => "pod watch",
        _ if path.contains("/pods") => "pods (mirror)",
        _ => "other",
    }
}

#[tokio::test]
async fn twenty_nodes_ride_out_a_429_storm_on_every_path_and_all_turn_ready() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("thr").await;
    agent.flags = vec!["--nodes".into(), NODES.to_string()];
    std::fs::write(agent.manifests().join("static.yaml"), STATIC).expect("write the manifest");
    let names: Vec<String> = (0..NODES).map(|i| format!("thr-{i}")).collect();
    // system:masters is never throttled: the test's own requests all pass.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    for name in &names {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("web-{name}")},
            "spec": {"nodeName": name, "containers": [{"name": "web", "image": "nginx:1.25"}]}
        }))
        .expect("a pod");
        pods.create(&PostParams::default(), &pod).await.expect("create a pod");
    }
    agent.start();

    let nodes: Api<Node> = Api::all(admin.clone());
    let ready = |n: &Node| support::condition(n, "Ready").is_some_and(|c| c.status == "True");
    eventually_with(&mut agent, "every node Ready", Duration::from_secs(300), async || {
        let listed = nodes.list(&ListParams::default().labels("e2e=thr")).await.ok()?.items;
        (listed.iter().filter(|n| ready(n)).count() == NODES).then_some(())
    })
    .await;
    eventually_with(&mut agent, "every pod and every mirror pod Running", Duration::from_secs(300), async || {
        let listed = pods.list(&ListParams::default()).await.ok()?.items;
        let up = |name: String| listed.iter().any(|p| p.metadata.name.as_deref() == Some(name.as_str()) && running(p));
        names.iter().all(|n| up(format!("web-{n}")) && up(format!("static-{n}"))).then_some(())
    })
    .await;
    agent.check_running();

    // The audit log: the server throttled the nodes on every path, and each throttled
    // request was sent again until it was answered, or until the client gave up after
    // client-go's 10 retries (its caller then acts as a kubelet's does: an event is
    // dropped, a sync tries again, and the checks above saw the node Ready and its pods
    // Running). Those throttled last may still be waiting out their Retry-After: they get
    // a minute.
    let users: Vec<String> = names.iter().map(|n| format!("system:node:{n}")).chain([agent.token.user.clone()]).collect();
    let attempts = labkubelet::api_client::MAX_RETRIES as usize + 1;
    let left_waiting = |audit: &[AuditEvent]| -> (Vec<String>, usize) {
        // Per user, verb and path: the 429s since its last other answer, and the last one.
        let mut trailing: BTreeMap<(&str, &str, &str), (usize, &AuditEvent)> = BTreeMap::new();
        for e in audit {
            let path = e.request_uri.split('?').next().unwrap_or(&e.request_uri);
            let run = trailing.entry((&e.user.username, &e.verb, path)).or_insert((0, e));
            *run = (if e.code() == 429 { run.0 + 1 } else { 0 }, e);
        }
        // A request whose attempts were all 429s made `attempts` of them; fewer since the
        // last answer means one is still waiting for its Retry-After.
        let waiting = trailing.values().filter(|(run, _)| run % attempts != 0).map(|(_, e)| e.to_string()).collect();
        (waiting, trailing.values().map(|(run, _)| run / attempts).sum())
    };
    let nodes_audit = || cluster().audit().into_iter().filter(|e| users.contains(&e.user.username)).collect::<Vec<_>>();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let audit = loop {
        let audit = nodes_audit();
        let (waiting, given_up) = left_waiting(&audit);
        if waiting.is_empty() {
            println!("requests left unanswered after {attempts} 429s (the client gave up, as client-go does): {given_up}");
            break audit;
        }
        assert!(std::time::Instant::now() < deadline, "throttled requests never sent again, or never got through:\n{}", waiting.join("\n"));
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let mut throttled: BTreeMap<&str, usize> = BTreeMap::new();
    for e in audit.iter().filter(|e| e.code() == 429) {
        *throttled.entry(path_kind(&e.request_uri)).or_default() += 1;
    }
    println!("429s the server answered the nodes, by path: {throttled:?}");
    for kind in ["CSR (bootstrap, watch)", "node", "node status", "Lease", "pod status", "pods (mirror)", "events"] {
        assert!(throttled.contains_key(kind), "no request to {kind} was throttled: the limits are too high to test it ({throttled:?})");
    }
    agent.check_running();
    let log = std::fs::read_to_string(agent.log()).unwrap_or_default();
    assert!(!log.contains("starting the node again"), "a node started over:\n{}", agent.log_tail());
    cluster().assert_no_refused_requests(&users.iter().map(String::as_str).collect::<Vec<_>>());
}
