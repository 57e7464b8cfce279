//! N lab nodes in one process against a real control plane at its default limits (the e2e
//! harness's kube-apiserver: 400 requests in flight, 200 mutating): how long until every
//! node is Ready, what the nodes cost idle, how many requests the server throttled and the
//! agent sent again, and whether any node had to start over. Then, if asked, M pods per
//! node created at a set rate through the scheduler: how long each took from its creation
//! to Running seen on a watch (the pod-startup SLI), and what the nodes cost meanwhile. A
//! measurement, not a test: it prints numbers and asserts nothing but that the agent kept
//! running.
//!
//!     cargo bench -p labkubelet-tests --bench scale                 # 1,000 nodes
//!     cargo bench -p labkubelet-tests --bench scale -- 100          # 100 nodes
//!     cargo bench -p labkubelet-tests --bench scale -- 100 10 50    # then 10 pods a node, 50 a second
//!
//! It needs the control plane's binaries (`tests/control-plane/install.sh`).

use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use labkubelet::agent::run;
use labkubelet::clock::Clock;
use labkubelet::metrics::METRICS;
use labkubelet::node::status::StatusTimings;
use labkubelet::plugin::{PluginCatalog, PluginEngine, PluginPolicy};
use labkubelet_control_plane::ControlPlane;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// CPU time this process has used (user + system).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0) + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
    Duration::from_millis(ticks * 1000 / per_second)
}

fn ready(node: &Node) -> bool {
    node.status.as_ref().and_then(|s| s.conditions.as_ref()).into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// The value below which `q` of the sorted samples lie.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The age of every lab node's Lease now.
async fn lease_ages(leases: &Api<Lease>) -> Vec<Duration> {
    let now = k8s_openapi::jiff::Timestamp::now();
    let listed = leases.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default();
    listed
        .into_iter()
        .filter(|l| l.metadata.name.as_deref().is_some_and(|n| n.starts_with("scale-")))
        .filter_map(|l| l.spec?.renew_time.map(|t| now.duration_since(t.0).unsigned_abs()))
        .collect()
}

fn main() -> anyhow::Result<()> {
    let numbers: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let count = numbers.first().copied().unwrap_or(1000);
    let pods_per_node = numbers.get(1).copied().unwrap_or(0);
    let pods_per_second = numbers.get(2).copied().unwrap_or(50).max(1);
    let cluster = ControlPlane::shared();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let token = cluster.bootstrap_token().await?;
        let dir = tempfile::tempdir()?;
        let names: Vec<String> = (0..count).map(|i| format!("scale-{i}")).collect();
        let mut config = labkubelet_tests::agent_config(dir.path(), names, token.kubeconfig.clone());
        config.node_ip = "127.0.0.1".into();
        config.lease_duration_seconds = 40;
        config.status = StatusTimings::default();
        let catalog = PluginCatalog::new(PluginEngine::new(PluginPolicy::default())?).await?;
        let (rss_before, started) = (rss_kib(), Instant::now());
        let agent = tokio::spawn(run(config, catalog, Clock::new()));

        let admin = cluster.admin().await?;
        let nodes: Api<Node> = Api::all(admin.clone());
        let leases: Api<Lease> = Api::namespaced(admin.clone(), "kube-node-lease");
        let all_ready = loop {
            if agent.is_finished() {
                anyhow::bail!("the agent stopped after {:?}: {:?}", started.elapsed(), agent.await);
            }
            let listed = nodes.list(&ListParams::default().labels("kubernetes.io/os=linux")).await.map(|l| l.items).unwrap_or_default();
            let up = listed.iter().filter(|n| n.metadata.name.as_deref().is_some_and(|n| n.starts_with("scale-")) && ready(n)).count();
            if up == count {
                break started.elapsed();
            }
            if started.elapsed() > Duration::from_secs(1800) {
                anyhow::bail!("{up} of {count} nodes Ready after 30 minutes");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };

        // An idle minute: the nodes only renew Leases and post status.
        let (cpu_before, idle_started) = (cpu_time(), Instant::now());
        let mut idle_ages = Vec::new();
        while idle_started.elapsed() < Duration::from_secs(60) {
            idle_ages.extend(lease_ages(&leases).await);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        idle_ages.sort();
        let idle_cpu = cpu_time().saturating_sub(cpu_before).as_secs_f64() / idle_started.elapsed().as_secs_f64();
        let rss = rss_kib().saturating_sub(rss_before);
        let retried: u64 = ["429", "502", "503", "504"].iter().map(|s| METRICS.api_retries.with_label_values(&[s]).get()).sum();
        let restarts: u64 = (0..count).map(|i| METRICS.node_restarts.with_label_values(&[&format!("scale-{i}")]).get()).sum();
        println!("nodes                      {count}");
        println!("all Ready after            {:.1} s", all_ready.as_secs_f64());
        println!("memory (RSS growth)        {} MiB, {} KiB per node", rss / 1024, rss / count as u64);
        println!("idle CPU                   {:.3} cores, {:.2} millicores per node", idle_cpu, idle_cpu * 1000.0 / count as f64);
        let (worst, p99) = (quantile(&idle_ages, 1.0), quantile(&idle_ages, 0.99));
        println!("Lease age (60 s idle)      worst {:.1} s, p99 {:.1} s", worst.as_secs_f64(), p99.as_secs_f64());
        println!("requests retried           {retried} (429, 502, 503, 504)");
        println!("nodes started again        {restarts}");
        if pods_per_node > 0 {
            run_pods(&admin, &leases, count * pods_per_node, pods_per_second, rss_before).await?;
            let retried: u64 = ["429", "502", "503", "504"].iter().map(|s| METRICS.api_retries.with_label_values(&[s]).get()).sum();
            let restarts: u64 = (0..count).map(|i| METRICS.node_restarts.with_label_values(&[&format!("scale-{i}")]).get()).sum();
            println!("requests retried (total)   {retried}");
            println!("nodes started again        {restarts}");
        }
        println!("agent stopped              {}", agent.is_finished());
        agent.abort();
        Ok(())
    })
}

/// Creates `total` pods at `per_second` through the scheduler and waits until each is
/// Running, printing startup latency (creation to Running seen on a watch), busy CPU, RSS and
/// Lease ages meanwhile.
async fn run_pods(admin: &kube::Client, leases: &Api<Lease>, total: usize, per_second: usize, rss_before: u64) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let running: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = tokio::spawn({
        let (pods, running) = (pods.clone(), running.clone());
        async move {
            let config = watcher::Config::default().labels("bench=scale");
            let mut events = std::pin::pin!(watcher(pods, config));
            while let Some(event) = events.next().await {
                let pod = match event {
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
                    _ => continue,
                };
                if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    && let Some(name) = pod.metadata.name
                {
                    running.lock().unwrap_or_else(|p| p.into_inner()).entry(name).or_insert_with(Instant::now);
                }
            }
        }
    });
    let (cpu_before, started) = (cpu_time(), Instant::now());
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second as f64));
    let mut ages = Vec::new();
    let mut last_sample = Instant::now();
    for i in 0..total {
        ticker.tick().await;
        let name = format!("bench-{i}");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"bench": "scale"}},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.2"}], "terminationGracePeriodSeconds": 0}
        }))?;
        created.lock().unwrap_or_else(|p| p.into_inner()).insert(name, Instant::now());
        let pods = pods.clone();
        tokio::spawn(async move {
            if let Err(e) = pods.create(&PostParams::default(), &pod).await {
                eprintln!("creating a pod: {e}");
            }
        });
        if last_sample.elapsed() > Duration::from_secs(5) {
            ages.extend(lease_ages(leases).await);
            last_sample = Instant::now();
        }
    }
    let created_after = started.elapsed();
    let all_running = loop {
        let up = running.lock().unwrap_or_else(|p| p.into_inner()).len();
        if up >= total {
            break started.elapsed();
        }
        if started.elapsed() > created_after + Duration::from_secs(600) {
            eprintln!("{up} of {total} pods Running 10 minutes after the last was created");
            break started.elapsed();
        }
        ages.extend(lease_ages(leases).await);
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let busy_cpu = cpu_time().saturating_sub(cpu_before).as_secs_f64() / started.elapsed().as_secs_f64();
    watch.abort();
    let (created, running) = (created.lock().unwrap_or_else(|p| p.into_inner()).clone(), running.lock().unwrap_or_else(|p| p.into_inner()).clone());
    let mut startup: Vec<Duration> = running.iter().filter_map(|(name, at)| Some(at.saturating_duration_since(*created.get(name)?))).collect();
    startup.sort();
    ages.sort();
    let rss = rss_kib().saturating_sub(rss_before);
    println!("pods                       {total} at {per_second}/s (created in {:.1} s)", created_after.as_secs_f64());
    println!("all Running after          {:.1} s ({} of {total})", all_running.as_secs_f64(), running.len());
    println!(
        "pod startup                p50 {:.2} s, p99 {:.2} s, worst {:.2} s",
        quantile(&startup, 0.5).as_secs_f64(),
        quantile(&startup, 0.99).as_secs_f64(),
        quantile(&startup, 1.0).as_secs_f64()
    );
    println!("busy CPU                   {busy_cpu:.3} cores");
    println!("memory with pods (RSS)     {} MiB", rss / 1024);
    println!("Lease age meanwhile        worst {:.1} s, p99 {:.1} s", quantile(&ages, 1.0).as_secs_f64(), quantile(&ages, 0.99).as_secs_f64());
    Ok(())
}
