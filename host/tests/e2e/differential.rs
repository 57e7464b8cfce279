//! The same pods on a kubemark hollow node (the real kubelet of the control plane's release,
//! with a fake runtime) and on a lab node of the same size, against the same API server: the
//! Node objects and the pod statuses, compared field by field, for running pods, a pod whose
//! init container runs, each QoS class, host networking, a pod that does not fit, and the last
//! status of a pod deleted gracefully and of one force-deleted. Every difference is printed;
//! the test fails on any the allow-list does not explain.
//!
//! Events are not compared: a 1.20 hollow node sends none (kubemark gives its kubelet no
//! event client). The kubelet's event reasons and messages are asserted in `pods`.

use crate::diff::{Allowed, Difference, diff, explain, normalise};
use crate::support::{Agent, cluster, condition, eventually, eventually_with, labkubelet};
use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use serde_json::{Value, json};
use std::time::Duration;

const HOLLOW: &str = "e2e-hollow";
const LAB: &str = "e2e-lab";

/// Differences that are intended, each with its reason. labkubelet follows the current
/// kubelet (it reports its API server's version); where that differs from 1.20, the entry
/// says since when.
const ALLOWED: &[Allowed] = &[
    Allowed { case: Some("node"), path: "status.nodeInfo.kubeProxyVersion", why: "1.20 reports its version; the field is deprecated and empty since 1.31" },
    Allowed {
        case: Some("node"),
        path: "status.nodeInfo.containerRuntimeVersion",
        why: "the runtime is a fake on one side and WebAssembly plugins on the other",
    },
    Allowed { case: Some("node"), path: "status.nodeInfo.kernelVersion", why: "kubemark's fake cAdvisor makes up a kernel; a lab node says it has none" },
    Allowed { case: Some("node"), path: "status.nodeInfo.osImage", why: "kubemark's fake cAdvisor makes up an OS; a lab node says what it is" },
    Allowed { case: Some("node"), path: "status.capacity.ephemeral-storage", why: "kubemark's fake cAdvisor reports no filesystem" },
    Allowed { case: Some("node"), path: "status.allocatable.ephemeral-storage", why: "kubemark's fake cAdvisor reports no filesystem" },
    Allowed {
        case: Some("node"),
        path: "metadata.annotations.volumes.kubernetes.io/controller-managed-attach-detach",
        why: "kubemark turns enableControllerAttachDetach off; a kubelet's default (kubeadm's, kind's) sets it",
    },
    Allowed {
        case: None,
        path: "status.conditions[PodReadyToStartContainers]",
        why: "added in 1.25 and on by default since 1.29 (PodReadyToStartContainersCondition); 1.20 has no such condition",
    },
    Allowed {
        case: Some("pod init"),
        path: "status.initContainerStatuses[*].started",
        why: "set on init containers since 1.28 (sidecar containers: the prober manager's UpdatePodStatus); 1.20 leaves it out",
    },
    Allowed {
        case: Some("pod too-big"),
        path: "status.message",
        why: "current kubelets write 'Pod was rejected: <why>' (kubelet.go rejectPod); 1.20 wrote 'Pod <why>'",
    },
    Allowed {
        case: Some("pod too-big"),
        path: "status.qosClass",
        why: "a rejected pod keeps its QoS class in current kubelets (rejectPod sets it); 1.20 dropped it",
    },
    Allowed {
        case: Some(GRACEFUL),
        path: "status.phase",
        why: "since 1.27 a pod deleted gracefully ends in a terminal phase (Succeeded or Failed, from its containers' exit codes) before the kubelet deletes it; 1.20 left it Running",
    },
    Allowed {
        case: Some(GRACEFUL),
        path: "status.conditions[*].reason",
        why: "follows the terminal phase: PodCompleted (GeneratePodReadyCondition and friends)",
    },
    Allowed { case: Some(GRACEFUL), path: "status.conditions[*].message", why: "follows the terminal phase: a completed pod's conditions carry no message" },
    Allowed {
        case: Some(GRACEFUL),
        path: "status.containerStatuses[*].state.terminated.reason",
        why: "the reason comes from the runtime: containerd says Completed for exit 0; kubemark's fake runtime says nothing",
    },
];

const GRACEFUL: &str = "pod one-container deleted gracefully";
const FORCED: &str = "pod several deleted with grace 0";

/// What a pod of the corpus settles in before it is compared.
#[derive(Clone, Copy, Debug)]
enum Settles {
    Ready,
    InitRunning,
    Failed,
}

fn corpus() -> Vec<(&'static str, Settles, Value)> {
    let app = |name: &str, image: &str| json!({"name": name, "image": image});
    // kubemark's runtime runs no command: a container that sleeps is what both show alike.
    let sleeps = |name: &str| json!({"name": name, "image": "busybox:1.36", "command": ["sleep", "3600"]});
    vec![
        ("one-container", Settles::Ready, json!({"containers": [app("app", "nginx:1.25")]})),
        ("several", Settles::Ready, json!({"containers": [app("web", "nginx:1.25"), sleeps("sidecar")]})),
        ("init", Settles::InitRunning, json!({"initContainers": [sleeps("setup")], "containers": [app("app", "nginx:1.25")]})),
        (
            "guaranteed",
            Settles::Ready,
            json!({"containers": [{"name": "app", "image": "nginx:1.25", "resources": {
                "requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}}]}),
        ),
        ("burstable", Settles::Ready, json!({"containers": [{"name": "app", "image": "nginx:1.25", "resources": {"requests": {"cpu": "50m"}}}]})),
        ("host-network", Settles::Ready, json!({"hostNetwork": true, "containers": [app("app", "nginx:1.25")]})),
        ("too-big", Settles::Failed, json!({"containers": [{"name": "app", "image": "nginx:1.25", "resources": {"requests": {"cpu": "1000"}}}]})),
    ]
}

fn settled(pod: &Pod, settles: Settles) -> bool {
    let Some(status) = pod.status.as_ref() else { return false };
    match settles {
        Settles::Ready => status.phase.as_deref() == Some("Running") && status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True"),
        Settles::InitRunning => status.init_container_statuses.iter().flatten().any(|c| c.state.as_ref().is_some_and(|s| s.running.is_some())),
        Settles::Failed => status.phase.as_deref() == Some("Failed"),
    }
}

/// The object as JSON with the node's and namespace's names replaced, then masked.
fn comparable<T: serde::Serialize>(object: &T, node: &str, namespace: &str) -> Value {
    let text = serde_json::to_string(object).unwrap_or_default().replace(node, "<node>").replace(namespace, "<namespace>");
    normalise(&serde_json::from_str(&text).unwrap_or_default())
}

/// The last status a pod had: the object of the watch's DELETED event after `delete`.
async fn status_when_deleted(pods: &Api<Pod>, name: &str, delete: &DeleteParams) -> Option<Value> {
    let mut events = pods.watch(&WatchParams::default().fields(&format!("metadata.name={name}")), "0").await.ok()?.boxed();
    pods.delete(name, delete).await.ok()?;
    let deleted = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(event) = events.next().await {
            if let Ok(WatchEvent::Deleted(pod)) = event {
                return Some(pod);
            }
        }
        None
    });
    deleted.await.ok().flatten().map(|pod| serde_json::to_value(pod.status).unwrap_or_default())
}

struct Report {
    lines: Vec<String>,
    unexplained: Vec<String>,
}

impl Report {
    fn add(&mut self, what: &str, differences: Vec<Difference>) {
        let (explained, unexplained) = explain(what, differences, ALLOWED);
        for (d, why) in explained {
            self.lines.push(format!("  {what} {d}    (allowed: {why})"));
        }
        for d in unexplained {
            self.lines.push(format!("  {what} {d}    <- NOT ALLOWED"));
            self.unexplained.push(format!("{what} {}", d.path));
        }
    }
}

#[tokio::test]
async fn pods_and_nodes_look_as_the_real_kubelet_shows_them() {
    let admin = cluster().admin().await.expect("admin client");
    // Pods cannot be created before their namespace's service account (and, in 1.20, its token).
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    for namespace in ["diff-kubelet", "diff-lab"] {
        let object: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}})).expect("a namespace");
        namespaces.create(&PostParams::default(), &object).await.expect("create namespace");
        let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
        eventually(&format!("the default service account of {namespace}"), Duration::from_secs(60), async || {
            let account = accounts.get_opt("default").await.ok().flatten()?;
            (!cluster().version.makes_token_secrets() || account.secrets.is_some_and(|s| !s.is_empty())).then_some(())
        })
        .await;
    }
    let mut hollow = cluster().hollow_node(HOLLOW).expect("start a kubemark hollow node");
    let mut agent = Agent::new(LAB).await;
    // kubemark's fake machine: 1 core, 3840 MiB.
    agent.flags = vec!["--capacity".into(), "cpu=1,memory=3840Mi".into()];
    // The init container runs long enough to be seen running, as kubemark's runs on: with the
    // kubelet's client-side limit (5 writes a second) a one-second run may never reach the API.
    let (ok, out) = labkubelet(&["plugin", "install", "healthy", "--plugin-dir", &agent.plugins().display().to_string()], &cluster().admin_kubeconfig());
    assert!(ok, "plugin install: {out}");
    std::fs::write(agent.plugins().join("healthy.yaml"), "initContainerSeconds: 120\n").expect("healthy's configuration");
    agent.start();
    let nodes: Api<Node> = Api::all(admin.clone());
    let lab_node = agent.wait_ready(&nodes).await;
    let hollow_node = eventually("the hollow node Ready", Duration::from_secs(90), async || {
        assert!(hollow.exited().is_none(), "kubemark exited:\n{}", hollow.log_tail(30));
        let node = nodes.get_opt(HOLLOW).await.ok().flatten()?;
        (condition(&node, "Ready")?.status == "True").then_some(node)
    })
    .await;

    let sides = [(HOLLOW, "diff-kubelet"), (LAB, "diff-lab")];
    for (name, _, spec) in corpus() {
        for (node, namespace) in sides {
            let mut spec = spec.clone();
            spec["nodeName"] = json!(node);
            let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("a pod");
            Api::<Pod>::namespaced(admin.clone(), namespace).create(&PostParams::default(), &pod).await.expect("create pod");
        }
    }

    let mut report = Report { lines: Vec::new(), unexplained: Vec::new() };
    let node_view = |n: &Node, name: &str| {
        let mut v = comparable(n, name, "\u{0}");
        v.as_object_mut().map(|o| o.remove("spec"));
        v
    };
    report.add("node", diff(&node_view(&hollow_node, HOLLOW), &node_view(&lab_node, LAB)));
    assert!(
        report.lines.iter().any(|l| l.contains("containerRuntimeVersion")),
        "the comparison sees the nodes' fields (the runtimes always differ): {:?}",
        report.lines
    );
    for (name, settles, _) in corpus() {
        let mut views = Vec::new();
        for (node, namespace) in sides {
            let pods: Api<Pod> = Api::namespaced(admin.clone(), namespace);
            let what = format!("{namespace}/{name} {settles:?}");
            let pod = eventually_with(&mut agent, &what, Duration::from_secs(60), async || pods.get(name).await.ok().filter(|p| settled(p, settles))).await;
            views.push(comparable(&json!({"status": pod.status}), node, namespace));
        }
        report.add(&format!("pod {name}"), diff(&views[0], &views[1]));
    }

    // kubectl delete pod: gracefully, and with --force --grace-period=0.
    for (case, name, grace) in [(GRACEFUL, "one-container", None), (FORCED, "several", Some(0))] {
        let mut views = Vec::new();
        for (node, namespace) in sides {
            let pods: Api<Pod> = Api::namespaced(admin.clone(), namespace);
            let status = status_when_deleted(&pods, name, &DeleteParams { grace_period_seconds: grace, ..DeleteParams::default() }).await;
            let status = status.unwrap_or_else(|| panic!("{namespace}/{name} not deleted within 60 s (grace {grace:?})"));
            views.push(comparable(&json!({"status": status}), node, namespace));
        }
        report.add(case, diff(&views[0], &views[1]));
    }

    println!("differences between the real kubelet ({HOLLOW}) and labkubelet ({LAB}):\n{}", report.lines.join("\n"));
    assert!(
        report.unexplained.is_empty(),
        "differences the allow-list does not explain:\n{}\n\nall:\n{}",
        report.unexplained.join("\n"),
        report.lines.join("\n")
    );
    agent.assert_no_refused_requests();
}
