//! Liveness, readiness and startup probes (upstream pkg/kubelet/prober): one task per
//! running container and probe, on the probe's period, with the upstream defaults
//! (timeout 1 s, period 10 s, success threshold 1, failure threshold 3). A result flips
//! only after its threshold of consecutive outcomes; initial results are readiness
//! failure, liveness success, startup unknown; liveness and readiness wait for startup.
//! The runtime (the plugin) answers every probe, exec probes included: a scenario may
//! answer one itself, or run its command in the container. A failure is a Warning
//! `Unhealthy` event.

use crate::clock::Clock;
use crate::events::EventRecorder;
use crate::events::EventType;
use crate::runtime::{ContainerRuntime, ExecProbe, HttpGetAction, KeyValue, ProbeAction, ProbeKind, ProbeOutcome};
use k8s_openapi::api::core::v1::{Container, ObjectReference, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A probe worker's key: pod uid, container id, probe kind.
type Key = (String, String, Kind);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    fn wit(self) -> ProbeKind {
        match self {
            Kind::Liveness => ProbeKind::Liveness,
            Kind::Readiness => ProbeKind::Readiness,
            Kind::Startup => ProbeKind::Startup,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }

    fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            Kind::Liveness => c.liveness_probe.as_ref(),
            Kind::Readiness => c.readiness_probe.as_ref(),
            Kind::Startup => c.startup_probe.as_ref(),
        }
    }
}

/// Probe results of one node, and the tasks that produce them.
pub struct ProbeManager {
    runtime: Arc<dyn ContainerRuntime>,
    clock: Clock,
    events: Arc<EventRecorder>,
    /// Pod uids whose worker should sync because a result flipped.
    wake: mpsc::UnboundedSender<String>,
    results: Arc<Mutex<HashMap<(String, Kind), bool>>>,
    workers: Mutex<HashMap<Key, JoinHandle<()>>>,
}

/// What a probe worker needs to know about its pod.
pub struct ProbeTarget {
    pub uid: String,
    pub container: Container,
    pub container_id: String,
    /// The pod reference for events, with the container's fieldPath.
    pub object: ObjectReference,
}

impl ProbeManager {
    pub fn new(runtime: Arc<dyn ContainerRuntime>, clock: Clock, events: Arc<EventRecorder>, wake: mpsc::UnboundedSender<String>) -> Self {
        ProbeManager { runtime, clock, events, wake, results: Default::default(), workers: Default::default() }
    }

    fn result(&self, id: &str, kind: Kind) -> Option<bool> {
        self.results.lock().unwrap_or_else(|p| p.into_inner()).get(&(id.to_string(), kind)).copied()
    }

    /// Readiness of a running container: true without a readiness probe.
    pub fn ready(&self, c: &Container, id: &str) -> bool {
        c.readiness_probe.is_none() || self.result(id, Kind::Readiness) == Some(true)
    }

    /// Whether a running container has started: true without a startup probe.
    pub fn started(&self, c: &Container, id: &str) -> bool {
        c.startup_probe.is_none() || self.result(id, Kind::Startup) == Some(true)
    }

    /// The probe that says the container must be restarted, if one does.
    pub fn failed(&self, id: &str) -> Option<&'static str> {
        [Kind::Startup, Kind::Liveness].into_iter().find(|k| self.result(id, *k) == Some(false)).map(|k| match k {
            Kind::Startup => "startup",
            _ => "liveness",
        })
    }

    /// Makes sure every probe of these running containers has its task, and stops the tasks
    /// of this pod's containers that are not among them.
    pub fn sync(&self, uid: &str, running: Vec<ProbeTarget>) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let keep: Vec<(String, Kind)> = running
            .iter()
            .flat_map(|t| {
                [Kind::Liveness, Kind::Readiness, Kind::Startup].into_iter().filter(|k| k.of(&t.container).is_some()).map(|k| (t.container_id.clone(), k))
            })
            .collect();
        workers.retain(|(pod, id, kind), task| {
            let stays = pod != uid || keep.contains(&(id.clone(), *kind));
            if !stays {
                task.abort();
                self.results.lock().unwrap_or_else(|p| p.into_inner()).remove(&(id.clone(), *kind));
            }
            stays
        });
        for target in running {
            let target = Arc::new(target);
            for kind in [Kind::Liveness, Kind::Readiness, Kind::Startup] {
                let Some(probe) = kind.of(&target.container).cloned() else { continue };
                let key = (uid.to_string(), target.container_id.clone(), kind);
                if workers.contains_key(&key) {
                    continue;
                }
                let worker = Worker {
                    runtime: self.runtime.clone(),
                    clock: self.clock,
                    events: self.events.clone(),
                    wake: self.wake.clone(),
                    results: self.results.clone(),
                    target: target.clone(),
                    kind,
                    probe,
                };
                workers.insert(key, tokio::spawn(worker.run()));
            }
        }
    }

    /// Stops every probe of a pod: it is terminating or gone.
    pub fn stop(&self, uid: &str) {
        self.sync(uid, Vec::new());
    }

    /// Stops every probe task: the node's pod lifecycle ended.
    pub fn stop_all(&self) {
        for task in self.workers.lock().unwrap_or_else(|p| p.into_inner()).drain().map(|(_, task)| task) {
            task.abort();
        }
        self.results.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

struct Worker {
    runtime: Arc<dyn ContainerRuntime>,
    clock: Clock,
    events: Arc<EventRecorder>,
    wake: mpsc::UnboundedSender<String>,
    results: Arc<Mutex<HashMap<(String, Kind), bool>>>,
    target: Arc<ProbeTarget>,
    kind: Kind,
    probe: Probe,
}

/// A handler's port: a number, or the name of one of the container's ports (0 when it has
/// no port of that name, which nothing listens on).
pub(crate) fn container_port(port: &IntOrString, c: &Container) -> u16 {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).unwrap_or(0),
        IntOrString::String(name) => {
            c.ports.iter().flatten().find(|p| p.name.as_deref() == Some(name)).and_then(|p| u16::try_from(p.container_port).ok()).unwrap_or(0)
        }
    }
}

/// What the probe asks for, in the runtime's terms; `None` for a probe with no handler.
fn action(probe: &Probe, c: &Container) -> Option<ProbeAction> {
    if let Some(e) = &probe.exec {
        let timeout_seconds = i64::from(probe.timeout_seconds.unwrap_or(1).max(1));
        return Some(ProbeAction::Exec(ExecProbe { command: e.command.clone().unwrap_or_default(), timeout_seconds }));
    }
    if let Some(h) = &probe.http_get {
        return Some(ProbeAction::HttpGet(HttpGetAction {
            path: h.path.clone().unwrap_or_else(|| "/".into()),
            port: container_port(&h.port, c),
            host: h.host.clone().unwrap_or_default(),
            scheme: h.scheme.clone().unwrap_or_else(|| "HTTP".into()),
            headers: h.http_headers.iter().flatten().map(|h| KeyValue { key: h.name.clone(), value: h.value.clone() }).collect(),
        }));
    }
    if let Some(t) = &probe.tcp_socket {
        return Some(ProbeAction::TcpSocket(container_port(&t.port, c)));
    }
    probe.grpc.as_ref().map(|g| ProbeAction::Grpc(u16::try_from(g.port).unwrap_or(0)))
}

fn seconds(value: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(value.unwrap_or(default).max(1)).unwrap_or(1))
}

impl Worker {
    fn result(&self, kind: Kind) -> Option<bool> {
        self.results.lock().unwrap_or_else(|p| p.into_inner()).get(&(self.target.container_id.clone(), kind)).copied()
    }

    fn set(&self, ok: bool) {
        self.results.lock().unwrap_or_else(|p| p.into_inner()).insert((self.target.container_id.clone(), self.kind), ok);
        let _ = self.wake.send(self.target.uid.clone());
    }

    /// One probe: success, or failure with what to show in the event.
    async fn probe_once(&self, action: &ProbeAction, timeout: Duration) -> Result<(), String> {
        let id = &self.target.container_id;
        let answer = tokio::time::timeout(timeout, self.runtime.probe(id, self.kind.wit(), action))
            .await
            .map(|r| r.map(|p| if p.outcome == ProbeOutcome::Success { Ok(()) } else { Err(p.output) }));
        match answer {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("probe timed out after {}", crate::clock::go_duration(timeout))),
        }
    }

    async fn run(self) {
        let Some(action) = action(&self.probe, &self.target.container) else { return };
        let period = seconds(self.probe.period_seconds, 10);
        let timeout = seconds(self.probe.timeout_seconds, 1);
        let success_threshold = self.probe.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = self.probe.failure_threshold.unwrap_or(3).max(1);
        let initial = match self.kind {
            Kind::Readiness => Some(false),
            Kind::Liveness => Some(true),
            Kind::Startup => None,
        };
        if let Some(ok) = initial {
            self.results.lock().unwrap_or_else(|p| p.into_inner()).insert((self.target.container_id.clone(), self.kind), ok);
        }
        let delay = u64::try_from(self.probe.initial_delay_seconds.unwrap_or(0)).unwrap_or(0);
        self.clock.sleep(Duration::from_secs(delay)).await;
        let (mut last, mut streak) = (None, 0);
        loop {
            let waits_for_startup = self.kind != Kind::Startup && self.target.container.startup_probe.is_some() && self.result(Kind::Startup) != Some(true);
            if !waits_for_startup {
                let outcome = self.probe_once(&action, timeout).await;
                let ok = outcome.is_ok();
                if let Err(output) = outcome {
                    let message = format!("{} probe failed: {output}", self.kind.title());
                    self.events.record(&self.target.object, EventType::Warning, "Unhealthy", &message);
                }
                streak = if last == Some(ok) { streak + 1 } else { 1 };
                last = Some(ok);
                let threshold = if ok { success_threshold } else { failure_threshold };
                if streak >= threshold && self.result(self.kind) != Some(ok) {
                    self.set(ok);
                }
                // A started container is not probed for startup again; a failed liveness
                // probe waits for the restart, which brings a new container and a new task.
                let done = match self.kind {
                    Kind::Startup => self.result(Kind::Startup) == Some(true),
                    Kind::Liveness => self.result(Kind::Liveness) == Some(false),
                    Kind::Readiness => false,
                };
                if done {
                    return;
                }
            }
            self.clock.sleep(period).await;
        }
    }
}
