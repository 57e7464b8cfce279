//! The terminal view of `labkubelet run`: the nodes' pods as `kubectl get pods -w` shows
//! them (name, ready, status, restarts, age), the plugin serving each, and the plugins
//! loaded, swapped and refused. On a terminal the table is redrawn every second, under it the
//! latest plugin changes; otherwise each change is printed as a line.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use labkubelet::agent::Started;
use labkubelet::plugin::PluginEvent;
use labkubelet::server::plugin_of;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::sync::mpsc::UnboundedReceiver;

/// How many plugin changes the terminal view keeps under the table.
const PLUGIN_CHANGES_SHOWN: usize = 5;

/// `READY` as kubectl prints it.
fn ready(pod: &Pod) -> String {
    let total = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let statuses = pod.status.as_ref().and_then(|s| s.container_statuses.as_ref());
    let ready = statuses.into_iter().flatten().filter(|c| c.ready).count();
    format!("{ready}/{total}")
}

fn container_reason(c: &ContainerStatus) -> Option<String> {
    let state = c.state.as_ref()?;
    if let Some(w) = &state.waiting {
        return w.reason.clone().filter(|r| !r.is_empty());
    }
    let t = state.terminated.as_ref()?;
    Some(t.reason.clone().filter(|r| !r.is_empty()).unwrap_or_else(|| format!("ExitCode:{}", t.exit_code)))
}

/// `STATUS` as kubectl's printer derives it (printPod), for the cases a lab shows.
pub(super) fn status(pod: &Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    if pod.metadata.deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    let init_total = pod.spec.as_ref().and_then(|s| s.init_containers.as_ref()).map_or(0, Vec::len);
    for (i, c) in status.init_container_statuses.iter().flatten().enumerate() {
        let done = c.state.as_ref().and_then(|s| s.terminated.as_ref()).is_some_and(|t| t.exit_code == 0);
        if done {
            continue;
        }
        return match container_reason(c) {
            Some(r) if r != "PodInitializing" => format!("Init:{r}"),
            _ => format!("Init:{i}/{init_total}"),
        };
    }
    let mut reason = status.reason.clone().or(status.phase.clone()).unwrap_or_else(|| "Pending".into());
    for c in status.container_statuses.iter().flatten().rev() {
        if let Some(r) = container_reason(c) {
            reason = r;
        }
    }
    let running = status.container_statuses.iter().flatten().any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()));
    if reason == "Completed" && running {
        reason = "Running".into();
    }
    reason
}

fn restarts(pod: &Pod) -> i32 {
    pod.status.as_ref().and_then(|s| s.container_statuses.as_ref()).into_iter().flatten().map(|c| c.restart_count).sum()
}

fn age(pod: &Pod, now: i64) -> String {
    let Some(start) = pod.status.as_ref().and_then(|s| s.start_time.as_ref()).or(pod.metadata.creation_timestamp.as_ref()) else { return "<unknown>".into() };
    let secs = (now - start.0.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// Shows the pods of the nodes as they start, until the future is dropped.
pub(super) async fn show(mut started: UnboundedReceiver<Started>, standalone: bool) {
    let mut nodes: Vec<Started> = Vec::new();
    let terminal = std::io::stdout().is_terminal();
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    // The nodes of a process share one plugin catalog: its changes are watched once.
    let mut plugin_events: Option<broadcast::Receiver<PluginEvent>> = None;
    let mut plugin_changes: Vec<String> = Vec::new();
    // Where each node listens: on a terminal, redrawn above the table, which clears the screen.
    let mut banners: BTreeMap<String, String> = BTreeMap::new();
    loop {
        while let Ok(node) = started.try_recv() {
            let access =
                if standalone { "standalone: no authentication, anyone on this machine may use it" } else { "authenticated and authorized by the cluster" };
            let banner = format!("node {}: kubelet API on https://{} ({access})", node.api.node, node.address);
            println!("{banner}");
            banners.insert(node.api.node.clone(), banner);
            plugin_events.get_or_insert_with(|| node.api.plugins.catalog().subscribe());
            // A kubelet restart or a reboot starts a node again: its new run replaces the old one,
            // whose pods would otherwise show on beside the new.
            match nodes.iter_mut().find(|n| n.api.node == node.api.node) {
                Some(old) => *old = node,
                None => nodes.push(node),
            }
        }
        for change in plugin_events.as_mut().map(drain).unwrap_or_default() {
            let line = format!("{} plugin {change}", k8s_openapi::jiff::Zoned::now().strftime("%H:%M:%S"));
            if terminal {
                plugin_changes.push(line);
                let excess = plugin_changes.len().saturating_sub(PLUGIN_CHANGES_SHOWN);
                plugin_changes.drain(..excess);
            } else {
                println!("{line}");
            }
        }
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        let mut rows = Vec::new();
        for node in &nodes {
            for pod in node.api.pods.pods() {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let key = format!("{}/{}", node.api.node, labkubelet::pods::manager::full_name(&pod));
                let row = (name, ready(&pod), status(&pod), restarts(&pod), age(&pod, now), plugin_of(&node.api.plugins, &pod), node.api.node.clone());
                rows.push((key, row));
            }
        }
        if terminal && !nodes.is_empty() {
            let mut screen = String::from("\x1b[H\x1b[2J");
            // A thousand nodes would fill the screen: their addresses are in the log above.
            if banners.len() <= 4 {
                for banner in banners.values() {
                    screen.push_str(&format!("{banner}\n"));
                }
                screen.push('\n');
            }
            screen.push_str(&format!("{:<40} {:<6} {:<26} {:<9} {:<8} {:<16} {}\n", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "PLUGIN", "NODE"));
            for (_, (name, ready, status, restarts, age, plugin, node)) in &rows {
                screen.push_str(&format!("{name:<40} {ready:<6} {status:<26} {restarts:<9} {age:<8} {plugin:<16} {node}\n"));
            }
            if !plugin_changes.is_empty() {
                screen.push('\n');
                for change in &plugin_changes {
                    screen.push_str(&format!("{change}\n"));
                }
            }
            screen.push_str("\nCtrl-C stops the agent. In another terminal: labkubelet trigger <plugin> kill --pod <name>; labkubelet timeline --format html > timeline.html\n");
            print!("{screen}");
        } else {
            // Not a terminal: a line per change, as `kubectl get pods -w` prints.
            for (key, (name, ready, status, restarts, _, plugin, node)) in &rows {
                let line = format!("{name:<40} {ready:<6} {status:<26} {restarts:<9} {plugin:<16} {node}");
                if last.get(key) != Some(&line) {
                    println!("{line}");
                    last.insert(key.clone(), line);
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The plugin changes since the last look, in words; a lag is said, not hidden.
fn drain(events: &mut broadcast::Receiver<PluginEvent>) -> Vec<String> {
    let mut changes = Vec::new();
    loop {
        match events.try_recv() {
            Ok(event) => changes.push(event.to_string()),
            Err(broadcast::error::TryRecvError::Lagged(n)) => changes.push(format!("changes missed: {n}")),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed) => return changes,
        }
    }
}
