//! The node Lease against the API-server double: creation, ownership, renewal cadence,
//! conflicts and outages. A short lease (4 s, renewed every second) keeps the test quick;
//! every wait is for a condition, with a deadline.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use labkubelet::clock::Clock;
use labkubelet::node::lease::NodeLease;
use labkubelet_tests::apiserver::{ApiServer, Faults};
use labkubelet_tests::eventually;
use serde_json::json;
use std::time::Duration;

fn renew_time(l: &Lease) -> i128 {
    l.spec.as_ref().and_then(|s| s.renew_time.as_ref()).map(|t| t.0.as_nanosecond()).unwrap_or(0)
}

/// The lease, once it satisfies `pred`.
async fn until(leases: &Api<Lease>, what: &str, pred: impl Fn(&Lease) -> bool) -> Lease {
    eventually(&format!("a lease that {what}"), Duration::from_secs(20), async || leases.get_opt("lab-node-1").await.ok().flatten().filter(|l| pred(l))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_created_owned_and_renewed_through_conflicts_and_outages() {
    let server = ApiServer::start().await.unwrap();
    let c = server.admin().await;
    let leases: Api<Lease> = Api::namespaced(c.clone(), "kube-node-lease");
    let controller = NodeLease::new(c.clone(), "lab-node-1", 4, Clock::new());
    assert_eq!(controller.renew_interval(), Duration::from_secs(1));
    let task = tokio::spawn(controller.run());

    let first = until(&leases, "exists", |_| true).await;
    let spec = first.spec.clone().unwrap();
    assert_eq!((spec.holder_identity.as_deref(), spec.lease_duration_seconds), (Some("lab-node-1"), Some(4)));
    assert!(first.metadata.owner_references.is_none(), "no owner before the Node exists");

    let node: Node = serde_json::from_value(json!({"metadata": {"name": "lab-node-1"}})).unwrap();
    let uid = Api::<Node>::all(c.clone()).create(&PostParams::default(), &node).await.unwrap().metadata.uid.unwrap();
    let owned = until(&leases, "is owned by the Node", |l| l.metadata.owner_references.is_some()).await;
    let owner = &owned.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()), ("Node", "lab-node-1", uid.as_str()));

    // Renewals advance renewTime about every second.
    let t0 = renew_time(&owned);
    let later = until(&leases, "was renewed twice more", |l| renew_time(l) >= t0 + 1_900_000_000).await;
    assert!(renew_time(&later) < t0 + 4_000_000_000, "renewals are too slow");

    // Someone else writes the lease: the cached copy is stale, the update gets 409, the
    // controller reads the lease again and keeps the other writer's change.
    let labelled = json!({"metadata": {"labels": {"written-by": "someone-else"}}});
    leases.patch("lab-node-1", &PatchParams::default(), &Patch::Merge(labelled)).await.unwrap();
    let after_conflict = until(&leases, "was renewed after the conflict", |l| renew_time(l) > renew_time(&later) + 1_000_000_000).await;
    assert_eq!(after_conflict.metadata.labels.as_ref().unwrap()["written-by"], "someone-else");
    let conflicts = server.requests().iter().filter(|r| r.starts_with("GET /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/lab-node-1")).count();
    assert!(conflicts >= 2, "the controller did not read the lease again after the conflict");

    // An outage: renewals fail, the controller keeps trying, and renews once it is back.
    let before_outage = renew_time(&leases.get("lab-node-1").await.unwrap());
    server.set_faults(Faults { offline: true, ..Faults::default() });
    tokio::time::sleep(Duration::from_secs(3)).await;
    server.set_faults(Faults::default());
    until(&leases, "was renewed after the outage", |l| renew_time(l) > before_outage + 2_000_000_000).await;
    assert!(!task.is_finished(), "a failed renewal ended the controller");
    task.abort();
}

/// A request the network lost (here: the server holds it for an hour) gives up after the
/// heartbeat timeout, so renewals resume as soon as the server answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_renewal_times_out_and_renewals_resume() {
    let server = ApiServer::start().await.unwrap();
    let c = server.admin().await;
    let leases: Api<Lease> = Api::namespaced(c.clone(), "kube-node-lease");
    let controller = NodeLease::new(c, "lab-node-1", 4, Clock::new());
    assert_eq!(controller.request_timeout(), Duration::from_secs(4), "min(10 s, the lease duration)");
    let task = tokio::spawn(controller.run());
    let first = until(&leases, "exists", |_| true).await;

    server.set_faults(Faults { latency: Duration::from_secs(3600), ..Faults::default() });
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.set_faults(Faults::default());
    let after = until(&leases, "was renewed after the hang", |l| renew_time(l) > renew_time(&first) + 2_000_000_000).await;
    assert!(renew_time(&after) > renew_time(&first));
    task.abort();
}
