//! Pod sources. The API source watches the pods bound to this node
//! (`fieldSelector=spec.nodeName=<node>`) with kube's watcher, which resumes from the last
//! resourceVersion and relists when the server answers 410 Gone.

use super::manager::PodManager;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::sync::Arc;

/// Feeds the pods bound to `node` into the manager until the future is dropped.
pub async fn watch_api(client: kube::Client, node: &str, manager: Arc<PodManager>) {
    let pods: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher::watcher(pods, config).default_backoff().boxed();
    let mut listed = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Apply(pod)) => manager.apply(pod),
            Ok(Event::Delete(pod)) => manager.delete(&pod),
            Ok(Event::Init) => listed.clear(),
            Ok(Event::InitApply(pod)) => listed.push(pod),
            Ok(Event::InitDone) => manager.replace("api", std::mem::take(&mut listed)),
            Err(e) => tracing::warn!(node, "watching pods: {e}; retrying with back-off"),
        }
    }
}
