//! A burst of pods on one node, beside a kubemark hollow node (the real kubelet 1.20 with a
//! fake runtime) on the same control plane at the same client limits (QPS 10, burst 20, as
//! kubemark's hollow kubelet runs): N pods bound at once to each node (`spec.nodeName`), then
//! for each node the pods' startup (creation to Running seen on a watch) p50 / p99 / max, and
//! the status writes it made per pod (the API server's audit log). Then the lab node, its
//! pods running, is stopped (Ctrl-C) and started with the same command, and timed to Ready.
//! A measurement: it prints numbers and asserts nothing.
//!
//!     cargo bench -p labkubelet --bench burst --profile dev -- [--pods 100]
//!
//! It needs the control plane and kubemark (`tests/control-plane/install.sh`).

#![allow(clippy::unwrap_used)] // a measurement fails where it unwraps

#[allow(dead_code)]
#[path = "../tests/e2e/support.rs"]
mod support;

use clap::Parser;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::{Agent, cluster, eventually};

#[derive(Parser)]
struct Args {
    /// Pods bound to each node at once.
    #[arg(long, default_value_t = 100)]
    pods: usize,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The audit log counts the status writes.
fn settings() -> labkubelet_control_plane::Settings {
    labkubelet_control_plane::Settings::default()
}

/// What one node made of the burst.
struct Burst {
    startup: Vec<Duration>,
    status_writes: usize,
}

fn running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// Binds `count` pods to `node` at once and waits for each to run: their startup latencies,
/// and the node's status writes for them.
async fn burst(pods: &Api<Pod>, node: &str, count: usize) -> Burst {
    let label = format!("burst={node}");
    let mut seen = watcher(pods.clone(), watcher::Config::default().labels(&label)).applied_objects().boxed();
    let mut created: HashMap<String, Instant> = HashMap::new();
    for i in 0..count {
        let name = format!("{node}-{i}");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"burst": node}},
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "nginx:1.25"}]},
        }))
        .unwrap();
        created.insert(name, Instant::now());
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let mut startup = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    while startup.len() < count && Instant::now() < deadline {
        let Ok(Some(Ok(pod))) = tokio::time::timeout(Duration::from_secs(10), seen.next()).await else { continue };
        let name = pod.metadata.name.clone().unwrap_or_default();
        if running(&pod)
            && let Some(at) = created.get(&name)
        {
            startup.entry(name).or_insert_with(|| at.elapsed());
        }
    }
    let writer = format!("system:node:{node}");
    let status_writes = cluster()
        .audit()
        .iter()
        .filter(|e| e.user.username == writer && matches!(e.verb.as_str(), "patch" | "update"))
        .filter(|e| e.request_uri.split('?').next().is_some_and(|p| p.ends_with("/status") && p.contains(&format!("/pods/{node}-"))))
        .count();
    let mut startup: Vec<Duration> = startup.into_values().collect();
    startup.sort();
    Burst { startup, status_writes }
}

fn report(label: &str, b: &Burst, count: usize) {
    let at = |q: f64| b.startup.get(((b.startup.len().max(1) - 1) as f64 * q).round() as usize).map_or(f64::NAN, Duration::as_secs_f64);
    println!(
        "{label}: {} of {count} Running; startup p50 {:.2} s, p99 {:.2} s, max {:.2} s; {} status writes, {:.2} a pod",
        b.startup.len(),
        at(0.5),
        at(0.99),
        at(1.0),
        b.status_writes,
        b.status_writes as f64 / count as f64
    );
}

async fn ready(nodes: &Api<Node>, name: &str) {
    eventually(&format!("{name} Ready"), Duration::from_secs(180), async || {
        let node = nodes.get_opt(name).await.ok().flatten()?;
        (support::condition(&node, "Ready")?.status == "True").then_some(())
    })
    .await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let admin = cluster().admin().await?;
    let nodes: Api<Node> = Api::all(admin.clone());
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");

    let mut agent = Agent::new("burst-lab").await;
    let config = agent.root.path().join("kubelet.yaml");
    std::fs::write(&config, "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nkubeAPIQPS: 10\nkubeAPIBurst: 20\n")?;
    agent.flags = vec!["--config".into(), config.display().to_string()];
    agent.start();
    agent.wait_ready(&nodes).await;
    let hollow = cluster().hollow_node("burst-hollow")?;
    ready(&nodes, "burst-hollow").await;

    let lab = burst(&pods, &agent.node, args.pods).await;
    let kubemark = burst(&pods, "burst-hollow", args.pods).await;
    report("labkubelet", &lab, args.pods);
    report("kubemark  ", &kubemark, args.pods);
    let p99 = |b: &Burst| b.startup.get(((b.startup.len().max(1) - 1) as f64 * 0.99).round() as usize).map_or(f64::NAN, Duration::as_secs_f64);
    println!("labkubelet's p99 is {:.2}x kubemark's", p99(&lab) / p99(&kubemark));

    // A restart: Ctrl-C, then the same command, timed to the new run's Ready.
    agent.stop();
    let started = Instant::now();
    agent.start();
    agent.wait_ready(&nodes).await;
    println!("labkubelet restarted with {} pods running: Ready {:.2} s after the start", args.pods, started.elapsed().as_secs_f64());
    agent.stop();
    drop(hollow);
    for node in [agent.node.as_str(), "burst-hollow"] {
        pods.delete_collection(&DeleteParams::default().grace_period(0), &ListParams::default().labels(&format!("burst={node}"))).await?;
        nodes.delete(node, &DeleteParams::default()).await?;
    }
    Ok(())
}
