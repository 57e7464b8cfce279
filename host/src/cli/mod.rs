//! Command-line parsing and the binary's entry points. Errors are reported here, at the
//! edge, with what was wrong and what to do.

mod exec;
mod lab;
mod plugin;
mod run;
mod scaffold;
mod view;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// A Kubernetes node agent for labs: the kubelet's control logic, with a container runtime
/// made of WebAssembly plugins that fail on cue.
#[derive(Parser)]
#[command(name = "labkubelet", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the node agent: in a cluster (TLS bootstrap, Node, Lease, pods, HTTP API), or
    /// standalone with static pods when no kubeconfig is given.
    Run(Box<run::RunArgs>),
    /// Sends a lab action (kill, hang, fail-pulls, heal, ...) to a plugin of a running agent.
    Trigger(Box<lab::TriggerArgs>),
    /// Does something to a whole node of a running agent: partition, heal, kubelet-restart,
    /// reboot, runtime-down, network-down, memory-pressure, disk-pressure, pid-pressure.
    Node(Box<lab::NodeArgs>),
    /// Exports what happened to each pod of a running agent: JSON, SVG or HTML.
    Timeline(Box<lab::TimelineArgs>),
    /// Runs a command in a container of a running agent, as `kubectl exec` does, without a
    /// cluster: labkubelet exec POD -- CMD...
    Exec(Box<exec::ExecArgs>),
    /// Inspect, validate, scaffold and watch runtime plugins.
    #[command(subcommand)]
    Plugin(Box<plugin::PluginCommand>),
}

pub(crate) fn main() -> ExitCode {
    // Warnings, and what happens to the plugin set (loads, swaps, refusals), but not kube's
    // own report of a failed request, which the command reports itself; colours only on a
    // terminal, and never with NO_COLOR set.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,labkubelet::plugin::catalog=info,kube_client::client::builder=off")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Plugin(command) => plugin::run(*command).await,
            Command::Run(args) => run::run(*args).await,
            Command::Trigger(args) => lab::trigger(*args).await,
            Command::Node(args) => lab::node_action(*args).await,
            Command::Timeline(args) => lab::timeline(*args).await,
            Command::Exec(args) => exec::exec(*args).await,
        }
    });
    // A read of our stdin may be waiting in a blocking thread (`exec -i` on a terminal
    // whose command ended): the process ends without it.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
