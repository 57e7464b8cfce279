//! N lab nodes in one process against a real control plane at its default limits (the e2e
//! harness's kube-apiserver: 400 requests in flight, 200 mutating): how long until every
//! node is Ready, what the nodes cost, how many requests the server throttled and the agent
//! sent again, and whether any node had to start over. A measurement, not a test: it prints
//! numbers and asserts nothing but that the agent kept running.
//!
//!     cargo bench -p labkubelet-tests --bench scale            # 1,000 nodes
//!     cargo bench -p labkubelet-tests --bench scale -- 100     # 100 nodes
//!
//! It needs the control plane's binaries (`tests/control-plane/install.sh`).

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use labkubelet::agent::run;
use labkubelet::clock::Clock;
use labkubelet::metrics::METRICS;
use labkubelet::node::status::StatusTimings;
use labkubelet::plugin::{PluginCatalog, PluginEngine, PluginPolicy};
use labkubelet_control_plane::ControlPlane;
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

fn main() -> anyhow::Result<()> {
    let count: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1000);
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
        let leases: Api<Lease> = Api::namespaced(admin, "kube-node-lease");
        let mut worst_lease_age = Duration::ZERO;
        while idle_started.elapsed() < Duration::from_secs(60) {
            let now = k8s_openapi::jiff::Timestamp::now();
            for lease in leases.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default() {
                if !lease.metadata.name.as_deref().is_some_and(|n| n.starts_with("scale-")) {
                    continue;
                }
                let renewed = lease.spec.and_then(|s| s.renew_time).map(|t| t.0);
                if let Some(age) = renewed.map(|r| now.duration_since(r).unsigned_abs()) {
                    worst_lease_age = worst_lease_age.max(age);
                }
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let idle_cpu = cpu_time().saturating_sub(cpu_before).as_secs_f64() / idle_started.elapsed().as_secs_f64();
        let rss = rss_kib().saturating_sub(rss_before);
        let retried: u64 = ["429", "502", "503", "504"].iter().map(|s| METRICS.api_retries.with_label_values(&[s]).get()).sum();
        let restarts: u64 = (0..count).map(|i| METRICS.node_restarts.with_label_values(&[&format!("scale-{i}")]).get()).sum();
        println!("nodes                      {count}");
        println!("all Ready after            {:.1} s", all_ready.as_secs_f64());
        println!("memory (RSS growth)        {} MiB, {} KiB per node", rss / 1024, rss / count as u64);
        println!("idle CPU                   {:.3} cores, {:.2} millicores per node", idle_cpu, idle_cpu * 1000.0 / count as f64);
        println!("worst Lease age (60 s)     {:.1} s", worst_lease_age.as_secs_f64());
        println!("requests retried           {retried} (429, 502, 503, 504)");
        println!("nodes started again        {restarts}");
        println!("agent stopped              {}", agent.is_finished());
        agent.abort();
        Ok(())
    })
}
