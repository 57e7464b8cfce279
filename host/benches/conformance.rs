//! Kubernetes' own node conformance tests as a benchmark of what a lab node does: the
//! `[NodeConformance]` specs of Kubernetes 1.20.2's e2e suite against the real control plane,
//! first with one labkubelet node as the only worker, then with one kubemark hollow node (the
//! real kubelet with a fake runtime) in its place. Prints every spec's result side by side with
//! each failure's first line, then passed / failed / skipped for each node.
//!
//! ```text
//! tests/control-plane/install.sh && tests/control-plane/install-e2e-suite.sh
//! cargo bench -p labkubelet --bench conformance --profile dev -- [--parallel 8] [--only lab|kubemark] [--focus TEXT]
//! ```
//!
//! A spec that waits for a pod that never gets there fails after the suite's 5 minutes, so a
//! run takes tens of minutes on two cores; `--focus` narrows it to the specs whose name holds
//! a text. ginkgo's output and JUnit reports stay in the printed folder.

#![allow(clippy::unwrap_used)] // a test fails where it unwraps

#[allow(dead_code)]
#[path = "../tests/e2e/support.rs"]
mod support;

use clap::Parser;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams};
use labkubelet_control_plane::conformance::{self, Options, Outcome, Report};
use std::time::Duration;
use support::{Agent, cluster, eventually};

#[derive(Parser)]
struct Args {
    /// ginkgo's parallel test processes.
    #[arg(long, default_value_t = 8)]
    parallel: u32,
    /// Runs one node only.
    #[arg(long, value_parser = ["lab", "kubemark"])]
    only: Option<String>,
    /// Runs only the specs whose name holds this text.
    #[arg(long)]
    focus: Option<String>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The suite's own audit is not needed here.
fn settings() -> labkubelet_control_plane::Settings {
    labkubelet_control_plane::Settings { audit: false, ..Default::default() }
}

fn cell(outcome: Option<&Outcome>) -> &'static str {
    match outcome {
        Some(Outcome::Passed) => "pass",
        Some(Outcome::Failed(_)) => "FAIL",
        Some(Outcome::Skipped) => "skip",
        None => "-",
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = Options { parallel: args.parallel, focus: args.focus.clone() };
    let nodes: Api<Node> = Api::all(cluster().admin().await?);
    let mut runs: Vec<(&str, Report)> = Vec::new();

    if args.only.as_deref() != Some("kubemark") {
        let mut agent = Agent::new("conformance-lab").await;
        agent.start();
        agent.wait_ready(&nodes).await;
        eprintln!("labkubelet: running the suite; the agent's log is {}", agent.log().display());
        runs.push(("labkubelet", tokio::task::block_in_place(|| conformance::run(cluster(), "labkubelet", &options))?));
        agent.stop();
        // The only worker each time: the suite waits for every node to be Ready.
        nodes.delete(&agent.node, &DeleteParams::default()).await?;
    }
    if args.only.as_deref() != Some("lab") {
        let hollow = cluster().hollow_node("conformance-hollow")?;
        eventually("the hollow node Ready", Duration::from_secs(120), async || {
            let node = nodes.get_opt("conformance-hollow").await.ok().flatten()?;
            (support::condition(&node, "Ready")?.status == "True").then_some(())
        })
        .await;
        eprintln!("kubemark: running the suite");
        runs.push(("kubemark", tokio::task::block_in_place(|| conformance::run(cluster(), "kubemark", &options))?));
        drop(hollow);
    }

    let names: std::collections::BTreeSet<&String> = runs.iter().flat_map(|(_, r)| r.results.keys()).collect();
    println!("{} spec", runs.iter().map(|(label, _)| format!("{label:<10}")).collect::<Vec<_>>().join(" "));
    for name in &names {
        println!("{} {name}", runs.iter().map(|(_, r)| format!("{:<10}", cell(r.results.get(*name)))).collect::<Vec<_>>().join(" "));
        for (label, report) in &runs {
            if let Some(Outcome::Failed(why)) = report.results.get(*name) {
                println!("    {label}: {why}");
            }
        }
    }
    println!();
    for (label, report) in &runs {
        let (passed, failed, skipped) = report.summary();
        println!(
            "{label}: {passed} passed, {failed} failed, {skipped} skipped of {} specs in {:.0?}; reports in {}",
            report.results.len(),
            report.took,
            report.dir.display()
        );
    }
    Ok(())
}
