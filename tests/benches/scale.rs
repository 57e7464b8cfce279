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
//!     cargo bench -p labkubelet-tests --bench scale -- 1000 --idle=600  # Lease ages over 10 idle minutes
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
use labkubelet_control_plane::{ControlPlane, Settings};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

// The allocator the labkubelet binary runs nodes with: its memory is what is measured.
labkubelet::process_allocator!();

/// The resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

/// Where the allocator's memory is, in KiB: (bytes the program holds, pages the allocator
/// keeps resident for them). The difference is fragmentation and pages not yet returned.
fn heap_kib() -> (u64, u64) {
    use tikv_jemalloc_ctl::{epoch, stats};
    if epoch::advance().is_err() {
        return (0, 0);
    }
    let kib = |bytes: Result<usize, _>| bytes.map_or(0, |b| b as u64 / 1024);
    (kib(stats::allocated::read()), kib(stats::resident::read()))
}

/// This process's memory at one moment, in KiB: its RSS, its PSS, and the allocator's
/// (held, resident).
#[derive(Clone, Copy)]
struct Mark {
    rss: u64,
    pss: u64,
    heap: (u64, u64),
}

impl Mark {
    fn now() -> Mark {
        Mark { rss: rss_kib(), pss: pss_kib(), heap: heap_kib() }
    }
}

/// The proportional set size of this process, in KiB: RSS with each page counted once
/// however many times the process maps it. Every node's plugin instance maps the plugin's
/// memory image (a memfd) of its own, so RSS counts a page of it once a node.
fn pss_kib() -> u64 {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    rollup.lines().find_map(|l| l.strip_prefix("Pss:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// The memory lines of a report: RSS and PSS grown since `before`, per unit, and the heap in it.
fn print_memory(title: &str, before: Mark, units: usize) {
    let now = Mark::now();
    let (rss, pss) = (now.rss.saturating_sub(before.rss), now.pss.saturating_sub(before.pss));
    let (held, resident) = (now.heap.0.saturating_sub(before.heap.0), now.heap.1.saturating_sub(before.heap.1));
    let units = units.max(1) as u64;
    println!("{title:<27}{} MiB, {} KiB per node", rss / 1024, rss / units);
    println!("  the same as PSS          {} MiB, {} KiB per node (shared pages counted once)", pss / 1024, pss / units);
    println!("  of which: heap           {} MiB resident, {} KiB per node ({} KiB per node held)", resident / 1024, resident / units, held / units);
}

/// CPU time a process has used (user + system); `pid` "self" is this one.
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0) + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100).max(1);
    Duration::from_millis(ticks * 1000 / per_second)
}

/// CPU time used so far by this process (the agent, and the bench's own few requests) and by
/// each process of the control plane: on two cores they share, what limits is what is busy.
fn cpu_use(cluster: &ControlPlane) -> Vec<(String, Duration)> {
    let mut used = vec![("labkubelet".to_string(), cpu_time("self"))];
    used.extend(cluster.process_ids().into_iter().map(|(name, pid)| (name.to_string(), cpu_time(&pid.to_string()))));
    used
}

/// The cores each process used between two [`cpu_use`] samples `elapsed` apart.
fn cores(before: &[(String, Duration)], after: &[(String, Duration)], elapsed: Duration) -> Vec<(String, f64)> {
    before.iter().zip(after).map(|((name, b), (_, a))| (name.clone(), a.saturating_sub(*b).as_secs_f64() / elapsed.as_secs_f64())).collect()
}

fn print_cores(title: &str, cores: &[(String, f64)]) {
    let each: Vec<String> = cores.iter().map(|(name, c)| format!("{name} {c:.3}")).collect();
    println!("{title:<27}{} (cores)", each.join(", "));
}

/// The API requests the agent has had answered, by method and resource: (all, throttled).
fn requests() -> BTreeMap<(String, String), (u64, u64)> {
    let text = METRICS.render(None);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).map(|s| s.samples).unwrap_or_default();
    let mut counted = BTreeMap::new();
    for sample in scrape.iter().filter(|s| s.metric == "labkubelet_api_requests_total") {
        let prometheus_parse::Value::Counter(n) = sample.value else { continue };
        let label = |name: &str| sample.labels.get(name).unwrap_or_default().to_string();
        let entry: &mut (u64, u64) = counted.entry((label("method"), label("resource"))).or_default();
        entry.0 += n as u64;
        if label("code") == "429" {
            entry.1 += n as u64;
        }
    }
    counted
}

/// The requests sent between two [`requests`] samples, per `unit` (a node, a pod).
fn print_requests(title: &str, before: &BTreeMap<(String, String), (u64, u64)>, after: &BTreeMap<(String, String), (u64, u64)>, units: usize) {
    println!("{title}");
    for ((method, resource), (all, throttled)) in after {
        let (was, was_throttled) = before.get(&(method.clone(), resource.clone())).copied().unwrap_or_default();
        let (n, t) = (all - was, throttled - was_throttled);
        if n > 0 {
            println!("    {method:<7}{resource:<26}{n:>9} ({:.2} each), {t} answered 429", n as f64 / units.max(1) as f64);
        }
    }
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

/// The bench's command line: what to start, and how long to idle.
#[derive(clap::Parser)]
struct Args {
    /// Nodes in the one process.
    #[arg(default_value_t = 1000)]
    nodes: usize,
    /// Pods per node created after the idle window (none: only the idle figures).
    #[arg(default_value_t = 0)]
    pods_per_node: usize,
    /// Pods created a second.
    #[arg(default_value_t = 50)]
    pods_per_second: usize,
    /// The idle window in whole seconds.
    #[arg(long, default_value_t = 60)]
    idle: u64,
    /// Passed by `cargo bench` to every bench binary.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    let idle = Duration::from_secs(args.idle);
    let count = args.nodes;
    let pods_per_node = args.pods_per_node;
    let pods_per_second = args.pods_per_second.max(1);
    // kubeadm's API server: no audit log, which would cost it a write per request.
    let cluster = ControlPlane::shared_with(Settings { audit: false, ..Settings::default() });
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
        let (before, started) = (Mark::now(), Instant::now());
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

        // The idle window (a minute unless `--idle=<seconds>`): the nodes only renew Leases and post status.
        let started_requests = requests();
        let (cpu_before, idle_started, idle_requests) = (cpu_use(cluster), Instant::now(), requests());
        let mut idle_ages = Vec::new();
        while idle_started.elapsed() < idle {
            idle_ages.extend(lease_ages(&leases).await);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        idle_ages.sort();
        let idle_cores = cores(&cpu_before, &cpu_use(cluster), idle_started.elapsed());
        let idle_cpu = idle_cores.first().map_or(0.0, |(_, c)| *c);
        let idle_ended_requests = requests();
        let retried: u64 = ["429", "502", "503", "504"].iter().map(|s| METRICS.api_retries.with_label_values(&[s]).get()).sum();
        let restarts: u64 = (0..count).map(|i| METRICS.node_restarts.with_label_values(&[&format!("scale-{i}")]).get()).sum();
        println!("nodes                      {count}");
        println!("all Ready after            {:.1} s", all_ready.as_secs_f64());
        print_memory("memory (RSS growth)", before, count);
        println!("idle CPU                   {:.3} cores, {:.2} millicores per node", idle_cpu, idle_cpu * 1000.0 / count as f64);
        print_cores("idle CPU by process", &idle_cores);
        let (worst, p99) = (quantile(&idle_ages, 1.0), quantile(&idle_ages, 0.99));
        println!("{:<27}worst {:.1} s, p99 {:.1} s", format!("Lease age ({} s idle)", idle.as_secs()), worst.as_secs_f64(), p99.as_secs_f64());
        println!("requests retried           {retried} (429, 502, 503, 504)");
        println!("nodes started again        {restarts}");
        print_requests("requests to start, per node", &BTreeMap::new(), &started_requests, count);
        print_requests(&format!("requests in the {} s idle, per node", idle.as_secs()), &idle_requests, &idle_ended_requests, count);
        if pods_per_node > 0 {
            run_pods(cluster, &admin, &leases, count, pods_per_node, pods_per_second, before).await?;
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
async fn run_pods(
    cluster: &ControlPlane,
    admin: &kube::Client,
    leases: &Api<Lease>,
    nodes: usize,
    per_node: usize,
    per_second: usize,
    before: Mark,
) -> anyhow::Result<()> {
    let total = nodes * per_node;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let running: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let scheduled: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let watch = tokio::spawn({
        let (pods, running, scheduled) = (pods.clone(), running.clone(), scheduled.clone());
        async move {
            let config = watcher::Config::default().labels("bench=scale");
            let mut events = std::pin::pin!(watcher(pods, config));
            while let Some(event) = events.next().await {
                let pod = match event {
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
                    _ => continue,
                };
                if pod.spec.as_ref().is_some_and(|s| s.node_name.is_some())
                    && let Some(name) = pod.metadata.name.clone()
                {
                    scheduled.lock().unwrap_or_else(|p| p.into_inner()).entry(name).or_insert_with(Instant::now);
                }
                if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    && let Some(name) = pod.metadata.name
                {
                    running.lock().unwrap_or_else(|p| p.into_inner()).entry(name).or_insert_with(Instant::now);
                }
            }
        }
    });
    let (cpu_before, started, requests_before) = (cpu_use(cluster), Instant::now(), requests());
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
    let busy_cores = cores(&cpu_before, &cpu_use(cluster), started.elapsed());
    let requests_after = requests();
    watch.abort();
    let (created, running) = (created.lock().unwrap_or_else(|p| p.into_inner()).clone(), running.lock().unwrap_or_else(|p| p.into_inner()).clone());
    let scheduled = scheduled.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let between = |from: &HashMap<String, Instant>, to: &HashMap<String, Instant>| {
        let mut took: Vec<Duration> = to.iter().filter_map(|(name, at)| Some(at.saturating_duration_since(*from.get(name)?))).collect();
        took.sort();
        took
    };
    let startup = between(&created, &running);
    let (to_schedule, to_run) = (between(&created, &scheduled), between(&scheduled, &running));
    ages.sort();
    println!("pods                       {total} at {per_second}/s (created in {:.1} s)", created_after.as_secs_f64());
    println!("all Running after          {:.1} s ({} of {total})", all_running.as_secs_f64(), running.len());
    println!(
        "pod startup                p50 {:.2} s, p99 {:.2} s, worst {:.2} s",
        quantile(&startup, 0.5).as_secs_f64(),
        quantile(&startup, 0.99).as_secs_f64(),
        quantile(&startup, 1.0).as_secs_f64()
    );
    let p = |d: &[Duration]| format!("p50 {:.2} s, p99 {:.2} s", quantile(d, 0.5).as_secs_f64(), quantile(d, 0.99).as_secs_f64());
    println!("  of which: scheduling     {} (creation to bound, the scheduler's part)", p(&to_schedule));
    println!("  of which: the node       {} (bound to Running, the kubelet's part)", p(&to_run));
    print_cores("busy CPU by process", &busy_cores);
    print_requests("requests for the pods, per pod", &requests_before, &requests_after, total);
    print_memory("memory with pods (RSS)", before, nodes);
    println!("Lease age meanwhile        worst {:.1} s, p99 {:.1} s", quantile(&ages, 1.0).as_secs_f64(), quantile(&ages, 0.99).as_secs_f64());
    Ok(())
}
