//! Pod startup latency: 100 pods bound to one node at once, with the healthy plugin,
//! against the API-server double; latency is from the binding to the first status write
//! that says Running, seen on a watch. Prints p50, p99 and the worst.
//!
//! Run with `cargo bench -p labkubelet-tests --bench pod_startup` (a release build).

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use labkubelet::clock::Clock;
use labkubelet::events::EventRecorder;
use labkubelet::plugin::{PluginPolicy, PluginRuntime};
use labkubelet::pods::{NodePods, PodLifecycle};
use labkubelet_tests::PluginLab;
use labkubelet_tests::apiserver::ApiServer;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PODS: usize = 100;
const NODE: &str = "bench-node";

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() {
    let server = ApiServer::start().await.expect("API double");
    let client = server.admin().await;
    let lab = PluginLab::new(PluginPolicy::default()).await;
    let clock = Clock::new();
    let runtime = Arc::new(PluginRuntime::new(NODE, lab.catalog.clone(), clock));
    let events = Arc::new(EventRecorder::new(client.clone(), NODE, clock));
    let mut node = NodePods::new(NODE, "10.1.0.5");
    node.allocatable = [("cpu", "100"), ("memory", "32Gi"), ("pods", "110")].into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    let agent = tokio::spawn(PodLifecycle::new(node, Some(client.clone()), runtime, clock, events).run());

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for i in 0..PODS {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": format!("p{i}")}, "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}}))
            .expect("pod");
        pods.create(&PostParams::default(), &pod).await.expect("create");
    }
    // Watched from before the first binding, in its own task: each pod's first Running
    // status is timed as it arrives.
    let (running_tx, mut running_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let mut watch = watcher(pods.clone(), watcher::Config::default()).applied_objects().boxed();
    let watching = tokio::spawn(async move {
        while let Some(event) = watch.next().await {
            let Ok(pod) = event else { continue };
            if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                let _ = running_tx.send((pod.metadata.name.unwrap_or_default(), Instant::now()));
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut bound: HashMap<String, Instant> = HashMap::new();
    for i in 0..PODS {
        let name = format!("p{i}");
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"kind": "Node", "name": NODE}});
        let request = http::Request::post(format!("/api/v1/namespaces/default/pods/{name}/binding"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&binding).expect("json"))
            .expect("request");
        bound.insert(name, Instant::now());
        client.request_text(request).await.expect("bind");
    }
    let mut latencies = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while latencies.len() < PODS {
        let Ok(Some((name, seen))) = tokio::time::timeout_at(deadline, running_rx.recv()).await else { break };
        if let Some(at) = bound.remove(&name) {
            latencies.push(seen.duration_since(at));
        }
    }
    watching.abort();
    agent.abort();
    assert_eq!(latencies.len(), PODS, "not every pod reached Running within 120 s");
    latencies.sort();
    println!(
        "pod startup, {PODS} pods bound at once (bound -> Running written): p50 {:.0?}  p99 {:.0?}  max {:.0?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[PODS - 1]
    );
}
