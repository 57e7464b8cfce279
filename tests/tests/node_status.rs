//! The node status loop against the API-server double, with a plugin runtime: Ready
//! follows the runtime's health with the kubelet's messages, and unchanged status is not
//! rewritten.

use k8s_openapi::api::core::v1::{Node, NodeCondition};
use kube::api::Api;
use labkubelet::clock::Clock;
use labkubelet::events::EventRecorder;
use labkubelet::node::register::register;
use labkubelet::node::status::{NodeStatusLoop, StatusTimings};
use labkubelet::plugin::PluginPolicy;
use labkubelet::runtime::TriggerTarget;
use labkubelet_tests::apiserver::ApiServer;
use labkubelet_tests::{PluginLab, eventually, node_identity};
use std::sync::Arc;
use std::time::Duration;

/// The Ready condition, once it satisfies `pred`.
async fn ready(nodes: &Api<Node>, what: &str, pred: impl Fn(&NodeCondition) -> bool) -> NodeCondition {
    eventually(&format!("Ready {what}"), Duration::from_secs(20), async || {
        let node = nodes.get("lab-node-1").await.ok()?;
        node.status?.conditions?.into_iter().find(|c| c.type_ == "Ready" && pred(c))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_runtime_through_a_hang_and_a_heal() {
    let server = ApiServer::start().await.unwrap();
    let nodes: Api<Node> = Api::all(server.admin().await);
    let id = node_identity("lab-node-1");
    register(&nodes, &id, &Clock::new(), &["container runtime status check may not have completed yet".into()]).await;

    let lab = PluginLab::new(PluginPolicy::default()).await;
    let runtime = Arc::new(lab.node("lab-node-1"));
    let timings = StatusTimings {
        update: Duration::from_millis(100),
        report: Duration::from_secs(60),
        runtime_check: Duration::from_millis(50),
        runtime_down_after: Duration::from_millis(600),
    };
    let recorder = Arc::new(EventRecorder::new(server.admin().await, "lab-node-1", Clock::new()));
    let status = NodeStatusLoop::new(nodes.clone(), "lab-node-1", runtime.clone(), Clock::new(), timings, recorder);
    let task = tokio::spawn(status.run());

    let up = ready(&nodes, "turned True", |c| c.status == "True").await;
    assert_eq!((up.reason.as_deref(), up.message.as_deref()), (Some("KubeletReady"), Some("kubelet is posting ready status")));

    // A steady status is not rewritten: no PATCH in ten update periods.
    let patches = || server.requests().iter().filter(|r| r.starts_with("PATCH /api/v1/nodes/lab-node-1/status")).count();
    let before = patches();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(patches(), before, "an unchanged status was written again");

    let everything = TriggerTarget { pod_namespace: None, pod_name: None, container: None };
    runtime.trigger("healthy", "hang", &everything, &[]).await.unwrap().unwrap();
    let down = ready(&nodes, "turned False", |c| c.status == "False").await;
    assert_eq!((down.reason.as_deref(), down.message.as_deref()), (Some("KubeletNotReady"), Some("container runtime is down")));
    assert_ne!(down.last_transition_time, up.last_transition_time);

    runtime.trigger("healthy", "heal", &everything, &[]).await.unwrap().unwrap();
    let back = ready(&nodes, "turned True again", |c| c.status == "True").await;
    assert_eq!(back.reason.as_deref(), Some("KubeletReady"));

    // The transitions were recorded as the kubelet records them: NodeReady twice, one Event
    // with count 2; NodeNotReady once.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(server.admin().await, "default");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let found = loop {
        let list = events.list(&Default::default()).await.unwrap().items;
        let count = |reason: &str| list.iter().filter(|e| e.reason.as_deref() == Some(reason)).map(|e| e.count.unwrap_or(0)).sum::<i32>();
        if count("NodeReady") == 2 && count("NodeNotReady") == 1 {
            break list;
        }
        assert!(tokio::time::Instant::now() < deadline, "events: {:?}", list.iter().map(|e| (e.reason.clone(), e.count)).collect::<Vec<_>>());
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let ready_events: Vec<_> = found.iter().filter(|e| e.reason.as_deref() == Some("NodeReady")).collect();
    assert_eq!(ready_events.len(), 1, "repeats are folded into one Event");
    let e = ready_events[0];
    assert_eq!(e.message.as_deref(), Some("Node lab-node-1 status is now: NodeReady"));
    assert_eq!((e.type_.as_deref(), e.involved_object.kind.as_deref(), e.involved_object.uid.as_deref()), (Some("Normal"), Some("Node"), Some("lab-node-1")));
    let source = e.source.clone().unwrap();
    assert_eq!((source.component.as_deref(), source.host.as_deref()), (Some("kubelet"), Some("lab-node-1")));
    task.abort();
}
