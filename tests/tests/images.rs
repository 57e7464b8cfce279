//! Image pulls against the API-server double with virtual time: what `kubectl describe pod`
//! shows when a pull fails (a scenario's refusal, a registry that does not resolve, a
//! private repository) and how a pod's image pull secrets open a private one.

use base64::Engine;
use k8s_openapi::api::core::v1::{Pod, Secret};
use labkubelet_tests::pod_lab::{PodLab, condition, container, phase, waiting_reason};
use serde_json::json;
use std::time::Duration;

fn waiting_message(p: &Pod, name: &str) -> String {
    container(p, name).and_then(|c| c.state.as_ref()?.waiting.as_ref()?.message.clone()).unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn a_failing_pull_shows_err_image_pull_then_image_pull_back_off() {
    let lab = PodLab::start(&["image-pull-fail"], &[]).await;
    lab.create("pull", json!({"labkubelet.io/scenario": "image-pull-fail"}), json!({"containers": [{"name": "app", "image": "registry.example/app:1.0"}]}))
        .await;
    let first =
        lab.until("pull", "shows ErrImagePull", Duration::from_secs(30), |p| container(p, "app").and_then(waiting_reason) == Some("ErrImagePull")).await;
    assert_eq!(phase(&first), "Pending");
    let backoff = lab
        .until("pull", "shows ImagePullBackOff", Duration::from_secs(30), |p| container(p, "app").and_then(waiting_reason) == Some("ImagePullBackOff"))
        .await;
    let message = container(&backoff, "app").unwrap().state.clone().unwrap().waiting.unwrap().message;
    assert_eq!(message.as_deref(), Some("Back-off pulling image \"registry.example/app:1.0\""));
    assert_eq!(condition(&backoff, "Ready").map(|c| c.1), Some(Some("ContainersNotReady".into())));
    assert_eq!(condition(&backoff, "Ready").and_then(|c| c.2).as_deref(), Some("containers with unready status: [app]"));

    // The pull is retried after the back-off and fails again.
    tokio::time::sleep(Duration::from_secs(40)).await;
    let events = lab.events("pull").await;
    let pulling = events.iter().find(|e| e.reason.as_deref() == Some("Pulling")).unwrap();
    assert!(pulling.count.unwrap_or(0) >= 2, "pulls retried: {pulling:?}");
    let failures: Vec<&str> = events.iter().filter(|e| e.reason.as_deref() == Some("Failed")).filter_map(|e| e.message.as_deref()).collect();
    assert!(failures.iter().any(|m| m.starts_with("Failed to pull image \"registry.example/app:1.0\": ")), "{failures:?}");
    assert!(failures.contains(&"Error: ErrImagePull") && failures.contains(&"Error: ImagePullBackOff"), "{failures:?}");
    assert!(
        events.iter().any(|e| e.reason.as_deref() == Some("BackOff") && e.message.as_deref() == Some("Back-off pulling image \"registry.example/app:1.0\""))
    );
}

#[tokio::test(start_paused = true)]
async fn the_default_runtime_refuses_unresolvable_registries_and_private_repositories_without_a_pull_secret() {
    let lab = PodLab::start(&[], &[]).await;
    let private = "gcr.io/authenticated-image-pulling/alpine:3.7";
    let spec = |image: &str, secrets: &[&str]| json!({"containers": [{"name": "app", "image": image, "command": ["sleep", "3600"]}], "imagePullSecrets": secrets.iter().map(|s| json!({"name": s})).collect::<Vec<_>>()});
    lab.create("nowhere", json!({}), spec("invalid.com/invalid/alpine:3.1", &[])).await;
    lab.create("locked", json!({}), spec(private, &[])).await;
    lab.create("missing-secret", json!({}), spec(private, &["absent"])).await;
    lab.create("public", json!({}), spec("nginx:1.25", &["absent"])).await;

    let err_image_pull = |p: &Pod| container(p, "app").and_then(waiting_reason) == Some("ErrImagePull");
    let nowhere = lab.until("nowhere", "shows ErrImagePull", Duration::from_secs(30), err_image_pull).await;
    assert_eq!(
        waiting_message(&nowhere, "app"),
        "rpc error: code = Unknown desc = failed to pull and unpack image \"invalid.com/invalid/alpine:3.1\": failed to resolve reference \
         \"invalid.com/invalid/alpine:3.1\": failed to do request: Head \"https://invalid.com/v2/invalid/alpine/manifests/3.1\": dial tcp: lookup \
         invalid.com: no such host"
    );
    for name in ["locked", "missing-secret"] {
        let locked = lab.until(name, "shows ErrImagePull", Duration::from_secs(30), err_image_pull).await;
        assert!(
            waiting_message(&locked, "app").ends_with(
                "pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed"
            )
        );
        assert_eq!(phase(&locked), "Pending");
    }
    lab.until("public", "runs: a pull secret that cannot be read is passed over", Duration::from_secs(30), |p| phase(p) == "Running").await;

    // The e2e suite's pull secret: base64 `user:password` in `auth`, keyed by `https://gcr.io`.
    let config = json!({"auths": {"https://gcr.io": {"auth": "X2pzb25fa2V5Ont9", "email": "pull@example.com"}}}).to_string();
    let data = base64::engine::general_purpose::STANDARD.encode(config);
    lab.create_object::<Secret>(json!({"metadata": {"name": "gcr"}, "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": data}})).await;
    lab.create("opened", json!({}), spec(private, &["gcr"])).await;
    let opened = lab.until("opened", "runs", Duration::from_secs(30), |p| phase(p) == "Running").await;
    assert_eq!(condition(&opened, "Ready").map(|c| c.0), Some("True".into()));
    let pulled = lab.event("opened", "Pulled").await.message.unwrap_or_default();
    assert!(pulled.starts_with(&format!("Successfully pulled image \"{private}\"")), "{pulled}");
}
