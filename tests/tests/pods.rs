//! The pod lifecycle against the API-server double, with the stock plugins and virtual
//! time: what `kubectl get pods -w` and `kubectl describe pod` would show as scenarios play.
//! Time is tokio's paused clock, shared by the kubelet logic and the plugins, so minutes of
//! back-off run in seconds; every wait is for a condition, with a (virtual) deadline.

use k8s_openapi::api::core::v1::Pod;
use kube::api::DeleteParams;
use labkubelet::pods::url_source::ManifestUrl;
use labkubelet_tests::eventually;
use labkubelet_tests::pod_lab::{NODE, PodLab, condition, container, phase, reasons, waiting_reason};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(start_paused = true)]
async fn a_pod_runs_with_the_kubelets_conditions_events_and_status() {
    let lab = PodLab::start(&[], &[]).await;
    let created = lab.create("web", json!({}), json!({"containers": [{"name": "web", "image": "nginx:1.25"}]})).await;
    let pod = lab
        .until("web", "is Running and Ready", Duration::from_secs(30), |p| phase(p) == "Running" && condition(p, "Ready").is_some_and(|c| c.0 == "True"))
        .await;

    let status = pod.status.clone().unwrap();
    assert_eq!(status.host_ip.as_deref(), Some("10.1.0.5"));
    assert!(status.pod_ip.as_deref().is_some_and(|ip| ip.starts_with("10.88.")), "{:?}", status.pod_ip);
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    assert!(status.start_time.is_some());
    let types: Vec<&str> = status.conditions.iter().flatten().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, ["PodScheduled", "PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady"], "the scheduler's condition is kept");
    let web = container(&pod, "web").unwrap();
    assert!(web.ready && web.started == Some(true) && web.restart_count == 0);
    assert!(web.state.as_ref().unwrap().running.as_ref().unwrap().started_at.is_some());
    assert!(web.container_id.as_deref().unwrap().starts_with("labkubelet://"));
    assert!(web.image_id.contains("@sha256:"), "{}", web.image_id);
    assert_eq!(pod.metadata.uid, created.metadata.uid);

    let events = lab.events("web").await;
    assert_eq!(reasons(&events), ["Pulling", "Pulled", "Created", "Started"]);
    let pulled = events[1].message.clone().unwrap();
    assert!(pulled.starts_with("Successfully pulled image \"nginx:1.25\" in ") && pulled.contains("Image size: "), "{pulled}");
    assert_eq!(events[2].message.as_deref(), Some("Created container: web"));
    assert_eq!(events[3].message.as_deref(), Some("Started container web"));
    for e in &events {
        assert_eq!(e.involved_object.field_path.as_deref(), Some("spec.containers{web}"));
        assert_eq!(e.source.as_ref().and_then(|s| s.component.as_deref()), Some("kubelet"));
        assert_eq!(e.involved_object.uid, created.metadata.uid);
    }

    // Steady: nothing more is written.
    let rv = pod.metadata.resource_version.clone();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(lab.pods.get("web").await.unwrap().metadata.resource_version, rv, "an unchanged status was written again");
}

#[tokio::test(start_paused = true)]
async fn crashloop_backs_off_10_20_40_80_seconds_with_restart_counts_and_last_state() {
    let lab = PodLab::start(&["crashloop"], &[]).await;
    lab.create("crash", json!({"labkubelet.io/scenario": "crashloop"}), json!({"containers": [{"name": "app", "image": "busybox:1.36"}]})).await;

    // Record each start: (restartCount, startedAt, the previous instance's finishedAt).
    let mut starts: Vec<(i32, i64, i64)> = Vec::new();
    let mut backoff_messages = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(400);
    while starts.last().is_none_or(|s| s.0 < 5) {
        assert!(tokio::time::Instant::now() < deadline, "five restarts not within 400 s: {starts:?}");
        let pod = lab.pods.get("crash").await.unwrap();
        if let Some(c) = container(&pod, "app") {
            let state = c.state.clone().unwrap_or_default();
            if let Some(running) = state.running {
                let started = running.started_at.map(|t| t.0.as_second()).unwrap_or(0);
                let finished =
                    c.last_state.as_ref().and_then(|l| l.terminated.as_ref()).and_then(|t| t.finished_at.as_ref()).map(|t| t.0.as_second()).unwrap_or(0);
                if starts.last().is_none_or(|s| s.0 != c.restart_count) {
                    starts.push((c.restart_count, started, finished));
                }
            }
            if waiting_reason(c) == Some("CrashLoopBackOff") {
                let message = c.state.as_ref().unwrap().waiting.as_ref().unwrap().message.clone().unwrap();
                if !backoff_messages.contains(&message) {
                    backoff_messages.push(message);
                }
                let last = c.last_state.as_ref().unwrap().terminated.as_ref().expect("lastState while backing off");
                assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
                assert_eq!(phase(&pod), "Running", "a container in CrashLoopBackOff under restartPolicy Always keeps the pod Running");
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let counts: Vec<i32> = starts.iter().map(|s| s.0).collect();
    assert_eq!(counts, [0, 1, 2, 3, 4, 5], "every restart seen once");
    let delays: Vec<i64> = starts[1..].iter().map(|s| s.1 - s.2).collect();
    for (delay, want) in delays.iter().zip([0, 10, 20, 40, 80]) {
        assert!((*delay - want).abs() <= 1, "restart delays {delays:?}, want 0, 10, 20, 40, 80 (±1 s)");
    }
    let uid = lab.pods.get("crash").await.unwrap().metadata.uid.unwrap();
    assert_eq!(backoff_messages[0], format!("back-off 10s restarting failed container=app pod=crash_default({uid})"));
    assert!(backoff_messages.iter().any(|m| m.starts_with("back-off 40s ")), "{backoff_messages:?}");

    let events = lab.events("crash").await;
    let backoff = events.iter().find(|e| e.reason.as_deref() == Some("BackOff")).expect("BackOff event");
    assert_eq!(backoff.type_.as_deref(), Some("Warning"));
    assert_eq!(backoff.message.clone().unwrap(), format!("Back-off restarting failed container app in pod crash_default({uid})"));
    assert!(backoff.count.unwrap_or(0) >= 2, "repeats are folded into one event: {backoff:?}");
    let started = events.iter().find(|e| e.reason.as_deref() == Some("Started")).unwrap();
    assert!(started.count.unwrap_or(0) >= 5, "each start counted on one event: {started:?}");
}

/// The e2e suite's "back-off timer reset on image update": the back-off belongs to the
/// container's definition, so a new image starts at once however long the old one waited.
#[tokio::test(start_paused = true)]
async fn a_new_image_restarts_a_crash_looping_container_without_its_back_off() {
    let lab = PodLab::start(&[], &[]).await;
    lab.create("crash", json!({}), json!({"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sh", "-c", "exit 1"]}]})).await;
    let looping = lab
        .until("crash", "a 40 s back-off", Duration::from_secs(200), |p| {
            container(p, "app").is_some_and(|c| c.state.clone().and_then(|s| s.waiting?.message).is_some_and(|m| m.starts_with("back-off 40s ")))
        })
        .await;
    let restarts = container(&looping, "app").map_or(0, |c| c.restart_count);
    let patch = kube::api::Patch::Merge(json!({"spec": {"containers": [{"name": "app", "image": "busybox:1.37"}]}}));
    lab.pods.patch("crash", &kube::api::PatchParams::default(), &patch).await.expect("update the image");
    let restarted = lab
        .until("crash", "started again with the new image, not after 40 s", Duration::from_secs(5), |p| {
            container(p, "app").is_some_and(|c| c.restart_count > restarts && c.image.contains("busybox:1.37"))
        })
        .await;
    assert_eq!(container(&restarted, "app").map(|c| c.restart_count), Some(restarts + 1));
}

#[tokio::test(start_paused = true)]
async fn restart_policies_never_and_on_failure_end_the_pod_as_the_kubelet_does() {
    let rules = "rules:\n  - match: { pod: 'ok-*' }\n    exit: { afterSeconds: 3, code: 0 }\n  - match: { pod: 'bad-*' }\n    exit: { afterSeconds: 3, code: 2, message: 'bad input' }\n";
    let lab = PodLab::start(&["scripted"], &[("scripted.yaml", rules)]).await;
    let scripted = json!({"labkubelet.io/scenario": "scripted"});
    let spec = |policy: &str| json!({"restartPolicy": policy, "containers": [{"name": "job", "image": "busybox:1.36"}]});
    lab.create("bad-never", scripted.clone(), spec("Never")).await;
    lab.create("ok-onfailure", scripted.clone(), spec("OnFailure")).await;
    lab.create("bad-onfailure", scripted.clone(), spec("OnFailure")).await;

    let failed = lab.until("bad-never", "Failed", Duration::from_secs(30), |p| phase(p) == "Failed").await;
    let job = container(&failed, "job").unwrap();
    let t = job.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref(), t.message.as_deref()), (2, Some("Error"), Some("bad input")));
    assert_eq!(job.restart_count, 0);
    assert_eq!(condition(&failed, "Ready").map(|c| c.1), Some(Some("PodFailed".into())));
    assert_eq!(condition(&failed, "PodReadyToStartContainers").map(|c| c.0), Some("False".into()), "a finished pod's sandbox is stopped");

    let done = lab.until("ok-onfailure", "Succeeded", Duration::from_secs(30), |p| phase(p) == "Succeeded").await;
    let t = container(&done, "job").unwrap().state.clone().unwrap().terminated.unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    assert_eq!(condition(&done, "Ready").map(|c| c.1), Some(Some("PodCompleted".into())));

    let retried = lab.until("bad-onfailure", "restarted", Duration::from_secs(30), |p| container(p, "job").is_some_and(|c| c.restart_count >= 1)).await;
    assert_eq!(phase(&retried), "Running", "OnFailure restarts a failed container");

    // Terminal phases stay.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(phase(&lab.pods.get("bad-never").await.unwrap()), "Failed");
    assert_eq!(phase(&lab.pods.get("ok-onfailure").await.unwrap()), "Succeeded");
}

#[tokio::test(start_paused = true)]
async fn init_containers_run_in_order_and_a_failing_one_blocks_the_pod() {
    let rules = "rules:\n  - match: { container: 'migrate' }\n    exit: { afterSeconds: 2, code: 0 }\n  - match: { container: 'seed' }\n    exit: { afterSeconds: 2, code: 0 }\n  - match: { container: 'broken' }\n    exit: { afterSeconds: 1, code: 1 }\n";
    let lab = PodLab::start(&["scripted"], &[("scripted.yaml", rules)]).await;
    let scripted = json!({"labkubelet.io/scenario": "scripted"});
    let init = |names: &[&str]| names.iter().map(|n| json!({"name": n, "image": "busybox:1.36"})).collect::<Vec<_>>();
    lab.create("ordered", scripted.clone(), json!({"initContainers": init(&["migrate", "seed"]), "containers": [{"name": "app", "image": "nginx:1.25"}]}))
        .await;
    lab.create("blocked", scripted.clone(), json!({"initContainers": init(&["broken"]), "containers": [{"name": "app", "image": "nginx:1.25"}]})).await;

    let waiting = lab.until("ordered", "is initializing", Duration::from_secs(30), |p| condition(p, "Initialized").is_some_and(|c| c.0 == "False")).await;
    assert_eq!(condition(&waiting, "Initialized").unwrap().1.as_deref(), Some("ContainersNotInitialized"));
    assert_eq!(container(&waiting, "app").and_then(waiting_reason), Some("PodInitializing"));
    let running = lab.until("ordered", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    let inits = running.status.clone().unwrap().init_container_statuses.unwrap();
    let finished = |i: usize| inits[i].state.clone().unwrap().terminated.unwrap();
    assert_eq!((finished(0).reason.as_deref(), finished(1).reason.as_deref()), (Some("Completed"), Some("Completed")));
    assert!(finished(0).finished_at <= finished(1).started_at, "seed started after migrate finished");
    // Events are written by a task of their own: app's Started may come after the status.
    let expected = ["spec.initContainers{migrate}", "spec.initContainers{seed}", "spec.containers{app}"];
    let started = async || -> Vec<String> {
        lab.events("ordered").await.into_iter().filter(|e| e.reason.as_deref() == Some("Started")).filter_map(|e| e.involved_object.field_path).collect()
    };
    eventually("a Started event for each container", Duration::from_secs(10), async || (started().await.len() >= expected.len()).then_some(())).await;
    assert_eq!(started().await, expected);

    let blocked = lab
        .until("blocked", "backs off its init container", Duration::from_secs(60), |p| {
            p.status
                .as_ref()
                .and_then(|s| s.init_container_statuses.as_ref())
                .is_some_and(|i| i[0].restart_count >= 1 && waiting_reason(&i[0]) == Some("CrashLoopBackOff"))
        })
        .await;
    assert_eq!(phase(&blocked), "Pending");
    assert_eq!(condition(&blocked, "Initialized").unwrap().2.as_deref(), Some("containers with incomplete status: [broken]"));
    assert_eq!(container(&blocked, "app").and_then(waiting_reason), Some("PodInitializing"));
}

#[tokio::test(start_paused = true)]
async fn probes_restart_on_liveness_failure_and_toggle_ready_on_readiness() {
    let rules = "rules:\n  - match: { pod: 'sick' }\n    probes: { liveness: { failAfterSeconds: 20 } }\n";
    let lab = PodLab::start(&["scripted", "readiness-flap"], &[("scripted.yaml", rules), ("readiness-flap.json", "{\"periodSeconds\": 20}")]).await;
    let probe = json!({"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5});
    lab.create("sick", json!({"labkubelet.io/scenario": "scripted"}), json!({"containers": [{"name": "app", "image": "nginx:1.25", "livenessProbe": probe}]}))
        .await;
    lab.create(
        "flappy",
        json!({"labkubelet.io/scenario": "readiness-flap"}),
        json!({"containers": [{"name": "app", "image": "nginx:1.25", "readinessProbe": probe}]}),
    )
    .await;

    let restarted =
        lab.until("sick", "restarted by its liveness probe", Duration::from_secs(120), |p| container(p, "app").is_some_and(|c| c.restart_count >= 1)).await;
    assert_eq!(phase(&restarted), "Running");
    let events = lab.events("sick").await;
    let unhealthy = events.iter().find(|e| e.reason.as_deref() == Some("Unhealthy")).expect("Unhealthy event");
    assert_eq!(unhealthy.message.as_deref(), Some("Liveness probe failed: HTTP probe failed with statuscode: 500"));
    assert!(
        events.iter().any(|e| e.reason.as_deref() == Some("Killing") && e.message.as_deref() == Some("Container app failed liveness probe, will be restarted"))
    );

    let ready = lab.until("flappy", "Ready", Duration::from_secs(60), |p| condition(p, "Ready").is_some_and(|c| c.0 == "True")).await;
    assert!(container(&ready, "app").unwrap().ready);
    let unready = lab.until("flappy", "not Ready", Duration::from_secs(60), |p| condition(p, "Ready").is_some_and(|c| c.0 == "False")).await;
    assert_eq!(condition(&unready, "Ready").unwrap().2.as_deref(), Some("containers with unready status: [app]"));
    assert_eq!(phase(&unready), "Running");
    lab.until("flappy", "Ready again", Duration::from_secs(60), |p| condition(p, "Ready").is_some_and(|c| c.0 == "True")).await;
}

#[tokio::test(start_paused = true)]
async fn a_deleted_pod_is_stopped_within_its_grace_period_and_removed() {
    let lab = PodLab::start(&[], &[]).await;
    lab.create("doomed", json!({}), json!({"terminationGracePeriodSeconds": 5, "containers": [{"name": "app", "image": "nginx:1.25"}]})).await;
    lab.until("doomed", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    lab.pods.delete("doomed", &DeleteParams::default()).await.unwrap();
    lab.gone("doomed", "the pod was not removed", Duration::from_secs(30)).await;
    let events = lab.events("doomed").await;
    assert!(events.iter().any(|e| e.reason.as_deref() == Some("Killing") && e.message.as_deref() == Some("Stopping container app")), "{:?}", reasons(&events));
}

#[tokio::test(start_paused = true)]
async fn pods_that_do_not_fit_are_rejected() {
    let lab = PodLab::start(&[], &[]).await;
    lab.create("huge", json!({}), json!({"containers": [{"name": "app", "image": "nginx:1.25", "resources": {"requests": {"cpu": "8"}}}]})).await;
    let pod = lab.until("huge", "rejected", Duration::from_secs(30), |p| phase(p) == "Failed").await;
    let status = pod.status.unwrap();
    assert_eq!(status.reason.as_deref(), Some("OutOfcpu"));
    assert_eq!(status.message.as_deref(), Some("Pod was rejected: Node didn't have enough resource: cpu, requested: 8000, used: 0, capacity: 4000"));
    let events = lab.events("huge").await;
    assert_eq!(reasons(&events), ["OutOfcpu"]);
    assert_eq!(events[0].type_.as_deref(), Some("Warning"));
}

#[tokio::test(start_paused = true)]
async fn a_second_pod_on_a_host_port_is_rejected() {
    let lab = PodLab::start(&[], &[]).await;
    let spec = json!({"containers": [{"name": "web", "image": "nginx:1.25", "ports": [{"containerPort": 80, "hostPort": 8080}]}]});
    lab.create("first", json!({}), spec.clone()).await;
    lab.until("first", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    lab.create("second", json!({}), spec).await;
    let pod = lab.until("second", "rejected", Duration::from_secs(30), |p| phase(p) == "Failed").await;
    let status = pod.status.unwrap();
    assert_eq!((status.reason.as_deref(), status.message.as_deref()), (Some("NodePorts"), Some("Pod was rejected: Predicate NodePorts failed")));
    assert_eq!(reasons(&lab.events("second").await), ["NodePorts"]);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_runtime_makes_pleg_unhealthy_and_the_node_not_ready_until_it_recovers() {
    let lab = PodLab::start(&["pleg-stall"], &[("pleg-stall.json", "{\"stallAfterSeconds\": 20, \"stallForSeconds\": 240}")]).await;
    lab.create("stuck", json!({"labkubelet.io/scenario": "pleg-stall"}), json!({"containers": [{"name": "app", "image": "nginx:1.25"}]})).await;
    lab.until("stuck", "Running", Duration::from_secs(20), |p| phase(p) == "Running").await;
    lab.ready("True", Duration::from_secs(30), |c| c.status == "True").await;

    // List calls hang from 20 s on; three minutes later PLEG is unhealthy.
    let down = lab.ready("False", Duration::from_secs(260), |c| c.status == "False").await;
    assert_eq!(down.reason.as_deref(), Some("KubeletNotReady"));
    let message = down.message.clone().unwrap_or_default();
    assert!(message.starts_with("PLEG is not healthy: pleg was last seen active 3m") && message.ends_with(" ago; threshold is 3m0s"), "{message}");

    // The stall ends at 260 s: the relist completes and the node is Ready again.
    let up = lab.ready("True again", Duration::from_secs(120), |c| c.status == "True").await;
    assert_eq!(up.message.as_deref(), Some("kubelet is posting ready status"));
    assert!(up.last_transition_time > down.last_transition_time);
}

#[tokio::test(start_paused = true)]
async fn a_static_pod_runs_from_its_manifest_with_a_mirror_pod_that_comes_back_after_delete() {
    let manifests = tempfile::tempdir().unwrap();
    labkubelet_tests::put(
        manifests.path(),
        "web.yaml",
        b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: web\n    image: nginx:1.25\n",
    );
    labkubelet_tests::put(manifests.path(), "broken.yaml", b"kind: Pod\nmetadata: {name: [\n");
    let lab = PodLab::with_manifests(&[], &[], Some(manifests.path())).await;
    let name = format!("web-{NODE}");

    let mirror = lab.until(&name, "mirrored and Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    let annotations = mirror.metadata.annotations.clone().unwrap();
    assert_eq!(annotations["kubernetes.io/config.source"], "file");
    assert_eq!(annotations["kubernetes.io/config.mirror"], annotations["kubernetes.io/config.hash"]);
    let owner = &mirror.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("Node", NODE, Some(true)));
    assert!(container(&mirror, "web").unwrap().ready);

    // kubectl delete: the kubelet puts the mirror pod back; the static pod never stopped.
    let started = container(&mirror, "web").unwrap().state.clone().unwrap().running.unwrap().started_at;
    lab.pods.delete(&name, &DeleteParams::default()).await.unwrap();
    let back = lab.until(&name, "back with a new uid", Duration::from_secs(30), |p| p.metadata.uid != mirror.metadata.uid && phase(p) == "Running").await;
    assert_eq!(container(&back, "web").unwrap().state.clone().unwrap().running.unwrap().started_at, started, "the static pod kept running");
    assert_eq!(container(&back, "web").unwrap().restart_count, 0);

    // The manifest goes: the pod stops and its mirror is deleted.
    std::fs::remove_file(manifests.path().join("web.yaml")).unwrap();
    lab.gone(&name, "the mirror pod outlived its manifest", Duration::from_secs(30)).await;
}

#[tokio::test(start_paused = true)]
async fn a_container_the_runtime_lost_is_shown_dead_and_counted_as_a_restart() {
    let mut lab = PodLab::start(&[], &[]).await;
    lab.create("web", json!({}), json!({"containers": [{"name": "app", "image": "nginx:1.25"}]})).await;
    let before = lab.until("web", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    // The agent stops and its saved runtime state is lost: the runtime starts empty, as after
    // a reboot or a plugin that refused the old state.
    lab.stop_agent().await;
    std::fs::remove_dir_all(lab.root.path().join(NODE)).expect("remove the saved runtime state");
    lab.restart_agent().await;
    let after = lab
        .until("web", "a new container with the restart counted", Duration::from_secs(60), |p| {
            container(p, "app").is_some_and(|c| c.restart_count == 1 && c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
        .await;
    let (old, new) = (container(&before, "app").unwrap(), container(&after, "app").unwrap());
    assert_ne!(old.container_id, new.container_id);
    let last = new.last_state.clone().and_then(|l| l.terminated).expect("lastState terminated");
    assert_eq!(
        (last.exit_code, last.reason.as_deref(), last.message.as_deref()),
        (137, Some("ContainerStatusUnknown"), Some("The container could not be located when the pod was deleted.  The container used to be Running"))
    );
}

#[tokio::test(start_paused = true)]
async fn an_agent_restart_keeps_containers_running_and_restart_counts() {
    let rules = "rules:\n  - match: { pod: 'once' }\n    exit: { afterSeconds: 5, code: 1 }\n";
    let mut lab = PodLab::start(&["scripted"], &[("scripted.yaml", rules)]).await;
    lab.create("once", json!({"labkubelet.io/scenario": "scripted"}), json!({"containers": [{"name": "app", "image": "busybox:1.36"}]})).await;
    lab.create("steady", json!({}), json!({"containers": [{"name": "app", "image": "nginx:1.25"}]})).await;
    let before = lab
        .until("once", "restarted twice", Duration::from_secs(60), |p| {
            container(p, "app").is_some_and(|c| c.restart_count == 2 && c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
        .await;
    let steady = lab.until("steady", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    lab.event("steady", "Started").await;
    let restarts = |p: &Pod| container(p, "app").map_or(0, |c| c.restart_count);
    let counted = restarts(&lab.pods.get("once").await.unwrap()).max(restarts(&before));

    lab.restart_agent().await;
    // The new run has synced every pod once `once` exits and it starts it again: its count
    // carries on from the old run's.
    lab.until("once", "started again by the new run", Duration::from_secs(120), |p| restarts(p) > counted).await;
    let after = lab.pods.get("steady").await.unwrap();
    let id = |p: &Pod| container(p, "app").and_then(|c| c.container_id.clone());
    assert_eq!(id(&after), id(&steady), "the container kept running through the restart");
    let started_at = |p: &Pod| container(p, "app").and_then(|c| c.state.clone()).and_then(|s| s.running).and_then(|r| r.started_at);
    assert_eq!(started_at(&after), started_at(&steady), "the container was not started again");
    assert_eq!(restarts(&after), 0);
    let started: i32 = lab.events("steady").await.iter().filter(|e| e.reason.as_deref() == Some("Started")).filter_map(|e| e.count).sum();
    assert_eq!(started, 1, "nothing was started again");
}

#[tokio::test(start_paused = true)]
async fn runtime_errors_show_as_the_kubelet_reports_them_and_are_retried() {
    let rules = "rules:\n  - match: { pod: 'no-create' }\n    failCreate: 'no space left on device'\n  - match: { pod: 'no-start' }\n    failStart: 'exec format error'\n";
    let lab = PodLab::start(&["scripted"], &[("scripted.yaml", rules)]).await;
    let scripted = json!({"labkubelet.io/scenario": "scripted"});
    let spec = json!({"containers": [{"name": "app", "image": "busybox:1.36"}]});
    lab.create("no-create", scripted.clone(), spec.clone()).await;
    lab.create("no-start", scripted.clone(), spec).await;

    for (pod, reason, message) in [("no-create", "CreateContainerError", "no space left on device"), ("no-start", "RunContainerError", "exec format error")] {
        let p = lab.until(pod, reason, Duration::from_secs(30), |p| container(p, "app").and_then(waiting_reason) == Some(reason)).await;
        let waiting = container(&p, "app").unwrap().state.clone().unwrap().waiting.unwrap();
        assert!(waiting.message.as_deref().is_some_and(|m| m.contains(message)), "{waiting:?}");
        if pod == "no-create" {
            assert_eq!(phase(&p), "Pending", "no container was ever made");
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let failed = lab.events(pod).await.into_iter().find(|e| e.reason.as_deref() == Some("Failed")).expect("Failed event");
        assert!(failed.message.as_deref().is_some_and(|m| m.starts_with("Error: ") && m.contains(message)), "{failed:?}");
        assert!(failed.count.unwrap_or(0) >= 2, "the start is retried: {failed:?}");
    }
    // A failed start is a crash to the restart logic: it backs off, and the attempt that
    // never ran is the last state, as containerd reports it.
    let p = lab.until("no-start", "backs off", Duration::from_secs(60), |p| container(p, "app").and_then(waiting_reason) == Some("CrashLoopBackOff")).await;
    let last = container(&p, "app").unwrap().last_state.clone().unwrap().terminated.unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (128, Some("StartError")));
}

#[tokio::test(start_paused = true)]
async fn pods_from_a_manifest_url_run_and_survive_a_broken_answer() {
    use axum::{Router, http::HeaderMap, routing::get};
    let answer = Arc::new(std::sync::Mutex::new(String::new()));
    let served = answer.clone();
    let app = Router::new().route(
        "/pods",
        get(move |headers: HeaderMap| {
            let served = served.clone();
            async move {
                // The configured header is sent: a lab's manifest server may require it.
                let authorized = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer lab");
                if authorized { served.lock().unwrap().clone() } else { String::from("{\"kind\": \"Status\"}") }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/pods", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    *answer.lock().unwrap() = serde_json::to_string(&json!({"apiVersion": "v1", "kind": "PodList", "items": [
        {"metadata": {"name": "cache"}, "spec": {"containers": [{"name": "redis", "image": "redis:7"}]}}
    ]}))
    .unwrap();

    let mut lab = PodLab::start(&[], &[]).await;
    lab.manifest_url = Some(ManifestUrl { url, headers: vec![("Authorization".into(), "Bearer lab".into())] });
    lab.restart_agent().await;
    let name = format!("cache-{NODE}");
    let mirror = lab.until(&name, "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    assert_eq!(mirror.metadata.annotations.as_ref().unwrap()["kubernetes.io/config.source"], "http");

    // Garbage is not an empty set: the pod keeps running.
    *answer.lock().unwrap() = "items: [unclosed".into();
    tokio::time::sleep(Duration::from_secs(45)).await;
    let still = lab.pods.get(&name).await.unwrap();
    assert_eq!((still.metadata.uid.as_deref(), phase(&still)), (mirror.metadata.uid.as_deref(), "Running"));

    // An empty answer is: the pod stops and its mirror goes.
    *answer.lock().unwrap() = String::new();
    lab.gone(&name, "the pod outlived its manifest URL entry", Duration::from_secs(60)).await;
}

#[tokio::test(start_paused = true)]
async fn an_image_change_restarts_the_container_and_readiness_is_reasserted() {
    let lab = PodLab::start(&[], &[]).await;
    lab.create("web", json!({}), json!({"containers": [{"name": "web", "image": "nginx:1.25"}]})).await;
    let before = lab.until("web", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;

    // `kubectl set image pod/web web=nginx:1.27`, as in the RX-M lab: killed and created again.
    let patch = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}});
    lab.pods.patch("web", &kube::api::PatchParams::default(), &kube::api::Patch::Strategic(patch)).await.unwrap();
    let after = lab
        .until("web", "running the new image", Duration::from_secs(30), |p| {
            container(p, "web").is_some_and(|c| c.image == "nginx:1.27" && c.state.as_ref().is_some_and(|s| s.running.is_some()))
        })
        .await;
    let web = container(&after, "web").unwrap();
    assert_eq!(web.restart_count, 1);
    assert_ne!(web.container_id, container(&before, "web").unwrap().container_id);
    let events = lab.events("web").await;
    assert!(
        events.iter().any(|e| e.reason.as_deref() == Some("Killing") && e.message.as_deref() == Some("Container web definition changed, will be restarted")),
        "{:?}",
        reasons(&events)
    );

    // The node lifecycle controller marks the pods of an unreachable node not Ready; once the
    // kubelet is back it writes the truth again.
    let unready = json!({"status": {"conditions": [{"type": "Ready", "status": "False", "reason": "NodeNotReady"}]}});
    lab.pods.patch_status("web", &kube::api::PatchParams::default(), &kube::api::Patch::Strategic(unready)).await.unwrap();
    let back = lab.until("web", "Ready again", Duration::from_secs(30), |p| condition(p, "Ready").is_some_and(|c| c.0 == "True")).await;
    assert_eq!(condition(&back, "Ready").unwrap().1, None);
}

#[tokio::test(start_paused = true)]
async fn a_sandbox_that_cannot_be_made_is_reported_and_retried_with_back_off() {
    let rules = "rules:\n  - match: { pod: 'no-net' }\n    failSandbox: 'failed to setup network for sandbox: cni plugin not initialized'\n";
    let lab = PodLab::start(&["scripted"], &[("scripted.yaml", rules)]).await;
    lab.create("no-net", json!({"labkubelet.io/scenario": "scripted"}), json!({"containers": [{"name": "app", "image": "nginx:1.25"}]})).await;
    let pod = lab.until("no-net", "reported", Duration::from_secs(30), |p| condition(p, "PodReadyToStartContainers").is_some_and(|c| c.0 == "False")).await;
    assert_eq!((phase(&pod), container(&pod, "app").and_then(waiting_reason)), ("Pending", Some("ContainerCreating")));
    tokio::time::sleep(Duration::from_secs(40)).await;
    let events = lab.events("no-net").await;
    let failed = events.iter().find(|e| e.reason.as_deref() == Some("FailedCreatePodSandBox")).expect("FailedCreatePodSandBox event");
    assert_eq!(failed.type_.as_deref(), Some("Warning"));
    assert_eq!(failed.message.as_deref(), Some("Failed to create pod sandbox: failed to setup network for sandbox: cni plugin not initialized"));
    // Retried with back-off (at once, then 10 s, 20 s): three or four tries in 40 s, not forty.
    let tries = failed.count.unwrap_or(0);
    assert!((2..=5).contains(&tries), "{tries} tries in 40 s");
}

#[tokio::test(start_paused = true)]
async fn a_pod_deleted_while_the_agent_was_down_is_cleaned_up_and_the_others_are_left_alone() {
    use labkubelet::runtime::ContainerRuntime;
    let mut lab = PodLab::start(&[], &[]).await;
    let spec = json!({"containers": [{"name": "app", "image": "nginx:1.25"}]});
    lab.create("kept", json!({}), spec.clone()).await;
    lab.create("gone", json!({}), spec).await;
    let kept = lab.until("kept", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    lab.until("gone", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;

    // The agent is down when `gone` is force-deleted: nobody stops its containers.
    lab.stop_agent().await;
    lab.pods.delete("gone", &DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() }).await.unwrap();
    assert!(lab.pods.get_opt("gone").await.unwrap().is_none());
    lab.restart_agent().await;

    let left = eventually("the orphan's sandbox removed", Duration::from_secs(30), async || {
        let names: Vec<String> = lab.runtime.list_pod_sandboxes().await.ok()?.into_iter().map(|s| s.metadata.name).collect();
        (!names.iter().any(|n| n == "gone")).then_some(names)
    })
    .await;
    assert_eq!(left, ["kept"], "the orphan's sandbox is removed, the other pod's stays");
    let containers = lab.runtime.list_containers().await.unwrap();
    assert_eq!(containers.len(), 1, "{containers:?}");
    let id = container(&kept, "app").and_then(|c| c.container_id.clone()).unwrap();
    assert_eq!(format!("labkubelet://{}", containers[0].id), id, "the kept pod's container was never touched");
}

#[tokio::test(start_paused = true)]
async fn a_pod_whose_scenario_is_not_loaded_waits_for_it_instead_of_running_on_another_plugin() {
    let lab = PodLab::start(&[], &[]).await;
    lab.create("flaky", json!({"labkubelet.io/scenario": "crashloop"}), json!({"containers": [{"name": "app", "image": "busybox:1.36"}]})).await;
    let waiting = lab
        .until("flaky", "waiting for its plugin", Duration::from_secs(30), |p| container(p, "app").and_then(waiting_reason) == Some("ContainerCreating"))
        .await;
    assert_eq!(phase(&waiting), "Pending");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let events = lab.events("flaky").await;
    let failed = events.iter().find(|e| e.reason.as_deref() == Some("FailedCreatePodSandBox")).expect("FailedCreatePodSandBox event");
    assert_eq!(
        failed.message.as_deref(),
        Some(
            "Failed to create pod sandbox: no runtime plugin \"crashloop\" is loaded (labkubelet.io/scenario names it; loaded: healthy); \"crashloop\" is a stock plugin not in the plugin folder: labkubelet plugin install --plugin-dir <dir> crashloop; the pod starts once it is"
        )
    );
    assert!(!events.iter().any(|e| e.reason.as_deref() == Some("Started")), "no other plugin ran it: {:?}", reasons(&events));

    // `plugin install` of the missing plugin: the pod starts under it, and crashes as it says.
    lab.plugins.install("crashloop");
    lab.plugins.sync().await;
    let crashed = lab.until("flaky", "crashing under crashloop", Duration::from_secs(120), |p| container(p, "app").is_some_and(|c| c.restart_count >= 1)).await;
    let last = container(&crashed, "app").and_then(|c| c.last_state.clone()).and_then(|s| s.terminated).expect("lastState");
    assert_eq!(last.exit_code, 1);

    // A misspelt name is answered with the near miss.
    lab.create("typo", json!({"labkubelet.io/scenario": "crash-loop"}), json!({"containers": [{"name": "app", "image": "busybox:1.36"}]})).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let message = loop {
        let events = lab.events("typo").await;
        if let Some(m) = events.iter().find(|e| e.reason.as_deref() == Some("FailedCreatePodSandBox")).and_then(|e| e.message.clone()) {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "no FailedCreatePodSandBox for typo: {:?}", reasons(&events));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        message
            .contains("no runtime plugin \"crash-loop\" is loaded (labkubelet.io/scenario names it; loaded: crashloop, healthy); did you mean \"crashloop\"?"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_condition_another_writer_adds_survives_the_kubelets_status_writes() {
    let lab = PodLab::start(&[], &[]).await;
    lab.create("gated", json!({}), json!({"containers": [{"name": "app", "image": "nginx:1.25"}]})).await;
    lab.until("gated", "running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    let gate = json!({"status": {"conditions": [{"type": "example.com/LabGate", "status": "True", "reason": "Opened"}]}});
    lab.pods.patch_status("gated", &kube::api::PatchParams::default(), &kube::api::Patch::Strategic(gate)).await.expect("another writer's condition");

    let target = labkubelet::runtime::TriggerTarget { pod_namespace: Some("default".into()), pod_name: Some("gated".into()), container: None };
    lab.runtime.trigger("healthy", "kill", &target, &[]).await.expect("plugin").expect("kill");
    let restarted =
        lab.until("gated", "restarted and ready", Duration::from_secs(60), |p| container(p, "app").is_some_and(|c| c.restart_count == 1 && c.ready)).await;
    assert_eq!(condition(&restarted, "example.com/LabGate"), Some(("True".into(), Some("Opened".into()), None)), "{:?}", restarted.status);
    // Ready went false through the restart and back: the patch removed the reason and message
    // it had while false.
    assert_eq!(condition(&restarted, "Ready"), Some(("True".into(), None, None)), "{:?}", restarted.status);
}

/// An older API server drops the status fields it does not know (1.20: `hostIPs`), so the
/// kubelet's status never equals the server's copy: a running pod that does not change is
/// still written once, not again at every 10-second resync.
#[tokio::test(start_paused = true)]
async fn a_status_an_older_server_keeps_in_part_is_not_written_again_at_every_resync() {
    let lab = PodLab::start(&[], &[]).await;
    lab.server().forget_field("pods", "status.hostIPs");
    lab.create("steady", json!({}), json!({"containers": [{"name": "app", "image": "nginx:1.25"}]})).await;
    let running = lab
        .until("steady", "Running and Ready", Duration::from_secs(30), |p| phase(p) == "Running" && condition(p, "Ready").is_some_and(|c| c.0 == "True"))
        .await;
    assert_eq!(running.status.and_then(|s| s.host_ips), None, "the server kept a field it does not know");
    let writes = || lab.server().requests().iter().filter(|r| r.starts_with("PATCH /api/v1/namespaces/default/pods/steady/status")).count();
    let written = writes();
    // No condition to await for something that must not happen: six resyncs.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(writes(), written, "the unchanged status was written again");
}

#[tokio::test(start_paused = true)]
async fn a_stopped_agent_probes_no_more() {
    // oomkill is this binary's only pod with it: its probe count is this test's alone.
    let mut lab = PodLab::start(&["oomkill"], &[("oomkill.json", "{\"afterSeconds\": 36000}")]).await;
    let probe = json!({"tcpSocket": {"port": 80}, "periodSeconds": 1});
    lab.create(
        "probed",
        json!({"labkubelet.io/scenario": "oomkill"}),
        json!({"containers": [{"name": "app", "image": "nginx:1.25", "readinessProbe": probe}]}),
    )
    .await;
    lab.until("probed", "Ready", Duration::from_secs(60), |p| condition(p, "Ready").is_some_and(|c| c.0 == "True")).await;
    let probes = || labkubelet::metrics::METRICS.runtime_operations_duration.with_label_values(&[NODE, "oomkill", "probe"]).get_sample_count();
    let running = probes();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(probes() > running, "the readiness probe runs every second");
    lab.stop_agent().await;
    let stopped = probes();
    // No condition to await for something that must not happen: ten probe periods.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(probes(), stopped, "a probe task outlived the agent's pod lifecycle");
}

/// The count a metric line of `kubelet_...{labels} value` gives, summed over the lines that
/// have every label asked for.
fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test(start_paused = true)]
async fn a_node_lists_its_runtime_once_a_relist_however_many_pods_sync() {
    use labkubelet::{clock::Clock, events::EventRecorder, metrics::METRICS, plugin::PluginPolicy, plugin::PluginRuntime, pods::NodePods, pods::PodLifecycle};
    // A node of its own, so its metrics are this test's alone.
    const NODE: &str = "relist-counting-node";
    const PODS: usize = 8;
    let manifests = tempfile::tempdir().unwrap();
    for i in 0..PODS {
        let manifest = format!(
            "metadata: {{name: crash-{i}, annotations: {{labkubelet.io/scenario: crashloop}}}}\nspec:\n  containers: [{{name: app, image: busybox:1.36}}]\n"
        );
        labkubelet_tests::put(manifests.path(), &format!("crash-{i}.yaml"), manifest.as_bytes());
    }
    let plugins = labkubelet_tests::PluginLab::new(PluginPolicy::default()).await;
    plugins.install("crashloop");
    plugins.sync().await;
    let clock = Clock::new();
    let runtime = Arc::new(PluginRuntime::new(NODE, plugins.catalog.clone(), clock));
    let node = NodePods { static_pod_path: Some(manifests.path().to_path_buf()), ..NodePods::new(NODE, "10.1.0.9") };
    let lifecycle = PodLifecycle::new(node, None, runtime, clock, Arc::new(EventRecorder::standalone(NODE, clock)));
    let view = lifecycle.view();
    let task = tokio::spawn(lifecycle.run());
    // Each crash, back-off and restart is several syncs of its pod.
    eventually("every pod restarted three times", Duration::from_secs(300), async || {
        let pods = view.pods();
        let restarts = |p: &Pod| p.status.as_ref()?.container_statuses.as_ref()?.first().map(|c| c.restart_count);
        (pods.len() == PODS && pods.iter().all(|p| restarts(p).is_some_and(|r| r >= 3))).then_some(())
    })
    .await;
    task.abort();

    let metrics = METRICS.render(Some(NODE));
    let node = format!("node=\"{NODE}\"");
    let relists = metric_sum(&metrics, "kubelet_pleg_relist_duration_seconds_count", &[&node]);
    let calls = |method: &str| metric_sum(&metrics, "kubelet_runtime_operations_duration_seconds_count", &[&node, &format!("operation_type=\"{method}\"")]);
    let (starts, lists) = (calls("start-container"), calls("list-containers"));
    assert!(relists >= 30.0, "PLEG relisted every second of the run: {relists}");
    assert!(starts >= 4.0 * PODS as f64, "every start is a sync of its own, and there were more in between: {starts} starts");
    // The plugin router lists too when it is asked about an id it does not know: one it
    // removed between a relist's list and its inspection, which a busy machine makes likelier.
    let bound = relists * 1.25 + 2.0;
    assert!(lists <= bound, "the runtime's containers were listed {lists} times in {relists} relists: the pod workers list it themselves");
    assert!(calls("list-pod-sandboxes") <= bound, "the sandboxes were listed {} times in {relists} relists", calls("list-pod-sandboxes"));
}

#[tokio::test(start_paused = true)]
async fn a_slow_api_server_for_events_delays_the_events_not_the_pod() {
    let lab = PodLab::start(&[], &[]).await;
    let slow = Duration::from_secs(120);
    // The node's own events come first: written before the server turns slow, or the pod's
    // would wait behind them.
    eventually("the node's events are written", Duration::from_secs(30), async || {
        reasons(&lab.events(labkubelet_tests::pod_lab::NODE).await).contains(&"NodeReady".to_string()).then_some(())
    })
    .await;
    // The node's writes are slow, not the test's looks: each look would take as long.
    lab.set_faults(labkubelet_tests::apiserver::Faults { slow: Some(("POST /api/v1/namespaces/default/events".into(), slow)), ..Default::default() });
    let created = tokio::time::Instant::now();
    lab.create("web", json!({}), json!({"containers": [{"name": "web", "image": "nginx:1.25"}]})).await;
    lab.until("web", "is Running and Ready", Duration::from_secs(30), |p| phase(p) == "Running" && condition(p, "Ready").is_some_and(|c| c.0 == "True")).await;
    assert!(created.elapsed() < slow, "the pod waited for its events to be written: {:?}", created.elapsed());
    // The events come, in the order they happened, once the server takes them.
    let events = eventually("the pod's events are written", Duration::from_secs(600), async || {
        let events = lab.events("web").await;
        (events.len() >= 4).then_some(events)
    })
    .await;
    assert_eq!(reasons(&events), ["Pulling", "Pulled", "Created", "Started"]);
}

#[tokio::test(start_paused = true)]
async fn a_slow_api_server_for_pod_status_delays_the_writes_not_the_restarts() {
    use labkubelet::runtime::ContainerRuntime;
    let lab = PodLab::start(&["crashloop"], &[]).await;
    lab.create("crash", json!({"labkubelet.io/scenario": "crashloop"}), json!({"containers": [{"name": "app", "image": "busybox:1.36"}]})).await;
    lab.until("crash", "is Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    lab.set_faults(labkubelet_tests::apiserver::Faults { slow: Some(("/pods/crash/status".into(), Duration::from_secs(300))), ..Default::default() });
    // Crash after 5 s, back-off 10 s, crash, back-off 20 s: the second restart is due 40 s in,
    // whatever the status writes wait for.
    eventually("the container is restarted twice", Duration::from_secs(90), async || {
        let containers = lab.runtime.list_containers().await.ok()?;
        containers.iter().any(|c| c.metadata.attempt >= 2).then_some(())
    })
    .await;
    lab.set_faults(labkubelet_tests::apiserver::Faults::default());
    // The newest status reaches the API once the server takes writes again.
    lab.until("crash", "shows the restarts", Duration::from_secs(600), |p| container(p, "app").is_some_and(|c| c.restart_count >= 2)).await;
}

/// A state the server never saw because the pod moved on is not written: while the writer
/// waits on another pod's slow write, a new pod's ContainerCreating and Running are one
/// write, of Running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_that_went_stale_while_it_waited_is_not_written() {
    let lab = PodLab::start(&[], &[]).await;
    let spec = json!({"containers": [{"name": "app", "image": "nginx:1.25"}]});
    let mut faults = lab.server().faults();
    faults.slow = Some(("/pods/blocker/status".into(), Duration::from_secs(5)));
    lab.server().set_faults(faults);
    lab.create("blocker", json!({}), spec.clone()).await;
    let status_writes = |pod: &str| lab.server().requests().iter().filter(|l| l.starts_with("PATCH ") && l.contains(&format!("/pods/{pod}/status"))).count();
    eventually("the blocker's first status write is in flight", Duration::from_secs(30), async || (status_writes("blocker") > 0).then_some(())).await;
    lab.create("behind", json!({}), spec).await;
    lab.until("behind", "Running in the API", Duration::from_secs(30), |p| phase(p) == "Running").await;
    assert_eq!(status_writes("behind"), 1, "ContainerCreating went stale behind the blocker: only Running is written");
}

/// The status manager keeps a static pod's status while its mirror pod does not exist (its
/// creation failed, or the watch has not brought it yet) and writes it once the mirror is
/// there, without being given it again: the pod's next sync may be ten seconds away.
#[tokio::test]
async fn a_static_pods_status_waits_for_its_mirror_and_is_written_once_it_exists() {
    use labkubelet::pods::manager::PodManager;
    use labkubelet::pods::status::StatusWriter;
    let server = labkubelet_tests::apiserver::ApiServer::start().await.expect("API double");
    let client = server.admin().await;
    let (manager, _changes) = PodManager::new();
    let writer = Arc::new(StatusWriter::new(Some(client.clone()), manager.clone(), Arc::new(labkubelet::timeline::Journal::new(NODE))));
    tokio::spawn({
        let writer = writer.clone();
        async move { writer.run().await }
    });
    let metadata = |annotation: &str| json!({"name": "web", "namespace": "default", "uid": "static-uid", "annotations": {annotation: "static-uid"}});
    let spec = json!({"nodeName": NODE, "containers": [{"name": "web", "image": "nginx:1.25"}]});
    let mut static_pod: Pod = serde_json::from_value(json!({"metadata": metadata("kubernetes.io/config.hash"), "spec": spec})).expect("a pod");
    static_pod.metadata.annotations.get_or_insert_default().insert("kubernetes.io/config.source".into(), "file".into());
    manager.replace("file", vec![static_pod.clone()]);
    let running = k8s_openapi::api::core::v1::PodStatus { phase: Some("Running".into()), ..Default::default() };
    writer.set(&Arc::new(static_pod), &running, 1, false);

    let pods: kube::Api<Pod> = kube::Api::namespaced(client, "default");
    let mut mirror: Pod = serde_json::from_value(json!({"metadata": metadata("kubernetes.io/config.mirror"), "spec": spec})).expect("a pod");
    mirror.metadata.uid = None;
    let mirror = pods.create(&kube::api::PostParams::default(), &mirror).await.expect("create the mirror");
    assert_eq!(phase(&mirror), "Pending", "the double starts a pod Pending");
    manager.observe(mirror);
    eventually("the mirror pod Running", Duration::from_secs(10), async || (phase(&pods.get("web").await.ok()?) == "Running").then_some(())).await;
}

/// A scenario that panics, or loops past the call deadline, from the third start of one
/// pod's container: the plugin's other pods keep their containers and restart counts, and
/// the failing pod crash-loops with the panic's message and place in its status.
#[tokio::test(start_paused = true)]
async fn a_plugin_that_fails_one_pods_start_leaves_its_other_pods_running() {
    let lab = PodLab::start(&[], &[]).await;
    lab.plugins.put("misbehave.wasm", &labkubelet_tests::test_component("misbehave"));
    lab.plugins.put("misbehave.yaml", b"fail-from-third-start: true\n");
    let loaded = lab.plugins.sync().await;
    assert!(matches!(&loaded[..], [labkubelet::plugin::PluginEvent::Loaded { .. }]), "{loaded:?}");
    let scenario = json!({"labkubelet.io/scenario": "misbehave"});
    let steady = json!({"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"]}]});
    let crashing = json!({"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sh", "-c", "exit 1"]}]});
    lab.create("steady", scenario.clone(), steady).await;
    let steady = lab.until("steady", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    let kept = container(&steady, "app").cloned().expect("steady's container");

    for (pod, says) in [("panic", "panicked at tests/plugins/misbehave/src/lib.rs:"), ("spin", "plugin misbehave exceeded its")] {
        lab.create(pod, scenario.clone(), crashing.clone()).await;
        let failed = lab
            .until(pod, "a failed third start", Duration::from_secs(300), |p| {
                container(p, "app").and_then(|c| c.last_state.clone()?.terminated).is_some_and(|t| t.reason.as_deref() == Some("StartError"))
            })
            .await;
        let last = container(&failed, "app").and_then(|c| c.last_state.clone()?.terminated).expect("lastState");
        assert_eq!(last.exit_code, 128);
        assert!(last.message.as_deref().is_some_and(|m| m.contains(says)), "{pod}: {last:?}");
        let looping =
            lab.until(pod, "CrashLoopBackOff", Duration::from_secs(120), |p| container(p, "app").and_then(waiting_reason) == Some("CrashLoopBackOff")).await;
        let restarts = container(&looping, "app").map_or(0, |c| c.restart_count);
        assert!(restarts >= 2, "{pod}: the failed third start is counted: {restarts}");
        let now = lab.pods.get("steady").await.expect("steady");
        let c = container(&now, "app").expect("steady's container");
        assert_eq!((&c.container_id, c.restart_count), (&kept.container_id, 0), "{pod}: the plugin's other pod kept its container");
    }
}
