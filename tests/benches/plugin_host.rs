//! Measures the plugin host and prints the numbers docs/performance.md reports:
//! reload latency per stock plugin (file renamed into the folder -> new plugin answering),
//! the cost of a start-container call and of a list-containers call over 100 containers,
//! resident memory per idle instance at 1,000 instances, and for a Python scenario: an edit
//! saved -> the new scenario answering, its hook against the same hook in Rust, and memory per
//! node serving it.
//!
//! Run with `cargo bench -p labkubelet-tests --bench plugin_host` (a release build); add
//! `-- load`, `-- reload`, `-- calls`, `-- memory`, `-- starts` or `-- python` to run one section.

use labkubelet::plugin::{ConfigFile, PluginEvent, PluginPolicy, PluginRuntime, stock};
use labkubelet::runtime::ContainerRuntime;
use labkubelet_tests::*;
use std::time::{Duration, Instant};

const RELOADS: usize = 7;
/// Edits of a Python scenario timed: enough for a 99th percentile.
const PY_EDITS: usize = 200;
/// Call costs are the median of this many batches: this machine's timing is noisy.
const BATCHES: usize = 15;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

// The allocator the labkubelet binary runs nodes with: its memory is what is measured.
labkubelet::process_allocator!();

/// The bytes the allocator keeps resident (jemalloc's `stats.resident`).
fn heap_resident_bytes() -> u64 {
    use tikv_jemalloc_ctl::{epoch, stats};
    if epoch::advance().is_err() {
        return 0;
    }
    stats::resident::read().map_or(0, |b| b as u64)
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Proportional set size: resident pages, each shared page counted as its share (the
/// component's data pages every instance maps count once, not once per instance as in RSS).
fn pss_bytes() -> u64 {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    let kib = rollup.lines().find_map(|l| l.strip_prefix("Pss:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    kib.unwrap_or(0) * 1024
}

async fn reload_latency(name: &str) -> (Duration, Duration) {
    let mut lab = PluginLab::watched(PluginPolicy::default()).await;
    let node = lab.node("bench");
    let original = stock::component(name).expect("stock plugin");
    let mut samples = Vec::new();
    for round in 0..=RELOADS {
        let bytes = with_custom_section(original, &format!("round-{round}"));
        let started = Instant::now();
        lab.put(&format!("{name}.wasm"), &bytes);
        lab.expect_event("the new version", |e| matches!(e, PluginEvent::Loaded { .. } | PluginEvent::Replaced { .. })).await;
        node.plugin_info(name).await.expect("the new plugin answers");
        if round > 0 {
            samples.push(started.elapsed());
        }
    }
    let worst = *samples.iter().max().expect("samples");
    (median(samples), worst)
}

/// A Python scenario that answers every start as `crashloop` does (exit after a while);
/// `version` tells edits apart.
fn python_scenario(version: usize) -> String {
    format!("VERSION = \"{version}\"\n\ndef on_start(c):\n    return exits(after=3600, code=1)\n")
}

/// An edit of a `.py` file saved (renamed into the watched folder) -> the new version answers.
async fn python_reloads() -> Vec<Duration> {
    let mut lab = PluginLab::watched(PluginPolicy::default()).await;
    let node = lab.node("bench");
    let mut samples = Vec::new();
    for round in 0..=PY_EDITS {
        let started = Instant::now();
        lab.put("bench.py", python_scenario(round).as_bytes());
        lab.expect_event("the edit", |e| matches!(e, PluginEvent::Loaded { .. } | PluginEvent::Replaced { .. })).await;
        let info = node.plugin_info("bench").await.expect("the new scenario answers");
        assert_eq!(info.version, round.to_string());
        if round > 0 {
            samples.push(started.elapsed());
        }
    }
    samples.sort();
    samples
}

/// An agent's start with a plugin folder filled by `fill`, as `labkubelet run` makes its engine
/// (compiled components kept on disk): from the engine's making to every plugin of the folder
/// answering on a node, the first start (nothing compiled yet) and the next (from the disk).
async fn folder_starts(fill: impl Fn(&std::path::Path)) -> (Duration, Duration) {
    let (cache, folder) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    fill(folder.path());
    let mut starts = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        let engine = labkubelet::plugin::PluginEngine::with_compiled_cache(PluginPolicy::default(), cache.path()).unwrap();
        let catalog = labkubelet::plugin::PluginCatalog::new(engine).await.unwrap();
        let loaded: Vec<String> = catalog
            .sync_dir(folder.path())
            .await
            .into_iter()
            .filter_map(|e| if let PluginEvent::Loaded { name, .. } = e { Some(name) } else { None })
            .collect();
        let node = PluginRuntime::new("bench", catalog, labkubelet::clock::Clock::new());
        for name in &loaded {
            node.plugin_info(name).await.expect("the plugin answers");
        }
        starts.push(started.elapsed());
    }
    (starts[0], starts[1])
}

/// Resident memory per node whose pod a Python scenario serves, at `nodes` nodes: RSS and PSS.
async fn python_memory(lab: &PluginLab, nodes: usize) -> (u64, u64) {
    let (rss, pss) = (rss_bytes(), pss_bytes());
    let mut kept = Vec::with_capacity(nodes);
    for i in 0..nodes {
        let node = lab.node(&format!("py-{nodes}-{i}"));
        start_pod(&node, &pod(&format!("p{i}"), Some("bench"), &[]), "nginx").await;
        kept.push(node);
    }
    let per = |after: u64, before: u64| after.saturating_sub(before) / nodes as u64;
    (per(rss_bytes(), rss), per(pss_bytes(), pss))
}

async fn start_cost(node: &PluginRuntime, scenario: Option<&str>) -> Duration {
    const STARTS: usize = 100;
    let mut batches = Vec::new();
    for batch in 0..BATCHES {
        let p = pod(&format!("calls-{batch}"), scenario, &[]);
        let sandbox = node.run_pod_sandbox(&p).await.unwrap();
        node.pull_image("nginx", None, Some(&p)).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..STARTS {
            ids.push(node.create_container(&sandbox, &container(&format!("c{i}"), "nginx")).await.unwrap());
        }
        let started = Instant::now();
        for id in &ids {
            node.start_container(id).await.unwrap();
        }
        batches.push(started.elapsed() / STARTS as u32);
        for id in &ids {
            node.remove_container(id).await.unwrap();
        }
    }
    median(batches)
}

async fn list_cost(lab: &PluginLab) -> Duration {
    const LISTS: usize = 2_000;
    let node = lab.node("list-100");
    for i in 0..100 {
        start_pod(&node, &pod(&format!("p{i}"), None, &[]), "nginx").await;
    }
    assert_eq!(node.list_containers().await.unwrap().len(), 100);
    let mut batches = Vec::new();
    for _ in 0..BATCHES {
        let started = Instant::now();
        for _ in 0..LISTS {
            std::hint::black_box(node.list_containers().await.unwrap());
        }
        batches.push(started.elapsed() / LISTS as u32);
    }
    median(batches)
}

/// Resident memory per idle instance at 1,000 instances: once started, and after the calls an
/// idle node makes in a minute (PLEG's relist every second, the status loop's every 10 s).
async fn memory_per_instance(lab: &PluginLab) -> Memory {
    use labkubelet::runtime::ContainerRuntime;
    const NODES: usize = 1_000;
    // One instance first, so the compiled code and the engine are not counted.
    let warm = lab.node("warm");
    warm.status().await.unwrap();
    let (before, heap_before, pss_before) = (rss_bytes(), heap_resident_bytes(), pss_bytes());
    let mut nodes = Vec::with_capacity(NODES);
    for i in 0..NODES {
        let node = lab.node(&format!("node-{i}"));
        node.status().await.unwrap();
        nodes.push(node);
    }
    let started = rss_bytes();
    for second in 0..60 {
        for node in &nodes {
            node.list_pod_sandboxes().await.unwrap();
            node.list_containers().await.unwrap();
            if second % 10 == 0 {
                node.status().await.unwrap();
            }
        }
    }
    let (idled, heap, pss) = (rss_bytes(), heap_resident_bytes(), pss_bytes());
    let per = |at: u64, from: u64| at.saturating_sub(from) / NODES as u64 / 1024;
    Memory { started: per(started, before), idled: per(idled, before), heap: per(heap, heap_before), pss: per(pss, pss_before), total_mib: idled / (1 << 20) }
}

/// Resident memory per idle instance, in KiB, and the process's in MiB.
struct Memory {
    started: u64,
    idled: u64,
    /// Of `idled`, what the allocator holds (the rest is mostly the instances' linear memory).
    heap: u64,
    /// `idled` with the pages instances share counted once: a page of a plugin's memory image
    /// that 1,000 instances map counts 1,000 times in RSS.
    pss: u64,
    total_mib: u64,
}

fn main() {
    let only: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let run = |section: &str| only.is_empty() || only.iter().any(|o| o == section);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio");
    rt.block_on(async {
        if run("load") {
            println!("load: compile and validate a component (median of 5)");
            println!("  {:<16} {:>10} {:>14} {:>12}", "plugin", "cold", "after another", "same code");
            for name in stock::names() {
                let (mut cold, mut other, mut same) = (Vec::new(), Vec::new(), Vec::new());
                for round in 0..5 {
                    let timed = |engine: &std::sync::Arc<labkubelet::plugin::PluginEngine>, tag: String| {
                        let engine = engine.clone();
                        async move {
                            let bytes = with_custom_section(stock::component(name).unwrap(), &tag);
                            let started = Instant::now();
                            engine.load(bytes, ConfigFile::none(), name.into()).await.unwrap();
                            started.elapsed()
                        }
                    };
                    // Cold: a new engine has compiled nothing yet.
                    let engine = labkubelet::plugin::PluginEngine::new(PluginPolicy::default()).unwrap();
                    cold.push(timed(&engine, format!("cold-{round}")).await);
                    // Same code in new bytes: a rebuilt, unchanged plugin.
                    same.push(timed(&engine, format!("same-{round}")).await);
                    // After another plugin: shares std, serde and the SDK, not the scenario, as
                    // a modified plugin does.
                    let engine = labkubelet::plugin::PluginEngine::new(PluginPolicy::default()).unwrap();
                    let another = if name == "healthy" { "crashloop" } else { "healthy" };
                    engine.load(stock::component(another).unwrap().to_vec(), ConfigFile::none(), another.into()).await.unwrap();
                    other.push(timed(&engine, format!("other-{round}")).await);
                }
                let ms = |v: Vec<Duration>| median(v).as_secs_f64() * 1e3;
                println!("  {:<16} {:>8.1}ms {:>12.1}ms {:>10.1}ms", name, ms(cold), ms(other), ms(same));
            }
        }
        if run("reload") {
            println!("reload latency: file renamed into a watched folder -> the new plugin answers ({RELOADS} reloads each,");
            println!("the same code in new bytes, the first load excluded)");
            println!("  {:<16} {:>10} {:>10}", "plugin", "median", "max");
            for name in stock::names() {
                let (med, max) = reload_latency(name).await;
                println!("  {:<16} {:>8.1}ms {:>8.1}ms", name, med.as_secs_f64() * 1e3, max.as_secs_f64() * 1e3);
            }
        }

        let lab = PluginLab::new(PluginPolicy::default()).await;
        if run("calls") {
            let node = lab.node("calls");
            let trivial = {
                node.version().await.unwrap();
                let mut batches = Vec::new();
                for _ in 0..BATCHES {
                    let started = Instant::now();
                    for _ in 0..5_000 {
                        std::hint::black_box(node.version().await.unwrap());
                    }
                    batches.push(started.elapsed() / 5_000);
                }
                median(batches)
            };
            println!("call costs, median of {BATCHES} batches, through PluginRuntime:");
            println!("  version (a trivial call: the fixed cost of any call): {:.2} µs", trivial.as_secs_f64() * 1e6);
            let start = start_cost(&node, None).await;
            println!("  start-container (healthy plugin): {:.2} µs", start.as_secs_f64() * 1e6);
            let list = list_cost(&lab).await;
            println!("  list-containers over 100 containers: {:.2} µs", list.as_secs_f64() * 1e6);
        }
        if run("starts") {
            let (first, next) = folder_starts(|folder| {
                for name in stock::names() {
                    stock::install(name, folder).unwrap();
                }
            })
            .await;
            println!(
                "starts: an agent's start with the {} stock plugins (engine made -> every one answering): first {:.0} ms, next (compiled code from disk) {:.0} ms",
                stock::names().count(),
                first.as_secs_f64() * 1e3,
                next.as_secs_f64() * 1e3
            );
        }
        if run("python") {
            let reloads = python_reloads().await;
            let at = |q: f64| reloads[((reloads.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
            println!("python: a .py edit saved -> the new scenario answering ({PY_EDITS} edits)");
            println!("  p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms", at(0.5), at(0.99), at(1.0));
            let (first, next) = folder_starts(|folder| put(folder, "bench.py", python_scenario(0).as_bytes())).await;
            println!(
                "  an agent's start with one .py (engine made -> scenario answering): first {:.0} ms, next (compiled code from disk) {:.0} ms",
                first.as_secs_f64() * 1e3,
                next.as_secs_f64() * 1e3
            );
            let lab = PluginLab::new(PluginPolicy::default()).await;
            lab.install("crashloop");
            lab.put("bench.py", python_scenario(0).as_bytes());
            lab.sync().await;
            let node = lab.node("hooks");
            let rust = start_cost(&node, Some("crashloop")).await;
            let python = start_cost(&node, Some("bench")).await;
            println!(
                "  start-container whose on_start answers exits-after: Rust (crashloop) {:.1} µs, Python {:.1} µs",
                rust.as_secs_f64() * 1e6,
                python.as_secs_f64() * 1e6
            );
            for nodes in [1, 100] {
                let (rss, pss) = python_memory(&lab, nodes).await;
                println!("  memory per node with a Python scenario serving a pod, at {nodes} nodes: RSS {} KiB, PSS {} KiB", rss / 1024, pss / 1024);
            }
        }
        if run("memory") {
            let m = memory_per_instance(&lab).await;
            println!(
                "resident memory per idle instance at 1,000 instances: {} KiB started, {} KiB after an idle minute's calls, of which {} KiB heap; PSS {} KiB (process RSS {} MiB)",
                m.started, m.idled, m.heap, m.pss, m.total_mib
            );
        }
    });
}
