//! The lab's endpoints beside the kubelet's: `POST /trigger/{plugin}/{action}` (a plugin's
//! lab action), `POST /node/{action}` (a fault or repair of the node), `/plugins` (who serves
//! what) and `/timeline` (`?format=json|svg|html`).

use super::{NodeApi, text};
use crate::node::actions::NodeAction;
use crate::plugin::PluginRuntime;
use crate::plugin::catalog::RefusedFile;
use crate::runtime::{KeyValue, TriggerTarget};
use axum::extract::{Path, Query};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The body of `POST /trigger/{plugin}/{action}`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct TriggerRequest {
    /// `namespace/name`, or `name` in `default`; absent means every pod the plugin serves.
    #[serde(default)]
    pub pod: Option<String>,
    #[serde(default)]
    pub container: Option<String>,
    #[serde(default)]
    pub args: BTreeMap<String, String>,
}

/// The answer to a trigger.
#[derive(Debug, Serialize, Deserialize)]
pub struct TriggerResponse {
    /// `accepted`, `unknown-action`, `no-such-target`, `invalid-argument`, `no-such-pod`,
    /// `no-such-plugin` or `runtime-error`.
    pub result: String,
    pub message: String,
    /// The plugin's actions, when the action was unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
}

pub(super) async fn trigger(Extension(api): Extension<Arc<NodeApi>>, Path((plugin, action)): Path<(String, String)>, body: axum::body::Bytes) -> Response {
    let request: TriggerRequest = if body.is_empty() {
        TriggerRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not a trigger request ({{\"pod\": \"ns/name\", \"container\": \"c\", \"args\": {{}}}}): {e}"),
                );
            }
        }
    };
    let mut target = TriggerTarget { pod_namespace: None, pod_name: None, container: request.container.clone() };
    // The plugin that serves the targeted pod, when it is not the one asked.
    let mut served_by = None;
    if let Some(pod) = &request.pod {
        let (namespace, name) = pod.split_once('/').unwrap_or(("default", pod));
        let Some(found) = api.pods.pod_by_name(namespace, name) else {
            let message = format!("no pod {namespace}/{name} on node {}", api.node);
            return answer_action(&api, &plugin, &action, None, (StatusCode::NOT_FOUND, "no-such-pod", message, Vec::new()));
        };
        target.pod_namespace = Some(namespace.to_string());
        target.pod_name = found.metadata.name.clone();
        served_by = Some(plugin_of(&api.plugins, &found)).filter(|p| *p != plugin).map(|p| (p, format!("{namespace}/{name}")));
    }
    let args: Vec<KeyValue> = request.args.iter().map(|(k, v)| KeyValue { key: k.clone(), value: v.clone() }).collect();
    let outcome = api.plugins.trigger(&plugin, &action, &target, &args).await;
    use crate::plugin::TriggerError;
    let outcome = match outcome {
        Ok(Ok(message)) => (StatusCode::OK, "accepted", message, Vec::new()),
        Ok(Err(TriggerError::UnknownAction(known))) => {
            (StatusCode::BAD_REQUEST, "unknown-action", format!("{plugin} has no action {action:?}; it has: {}", known.join(", ")), known)
        }
        Ok(Err(TriggerError::NoSuchTarget(t))) => {
            let hint =
                served_by.map_or(String::new(), |(other, pod)| format!("; pod {pod} is served by {other}: labkubelet trigger {other} {action} --pod {pod}"));
            (StatusCode::NOT_FOUND, "no-such-target", format!("{plugin} runs {t}{hint}"), Vec::new())
        }
        Ok(Err(TriggerError::InvalidArgument(m))) => (StatusCode::BAD_REQUEST, "invalid-argument", m, Vec::new()),
        Err(e) if e.is_not_found() => (StatusCode::NOT_FOUND, "no-such-plugin", e.to_string(), Vec::new()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, "runtime-error", e.to_string(), Vec::new()),
    };
    let pod = target.pod_name.as_ref().map(|n| format!("{}/{n}", target.pod_namespace.as_deref().unwrap_or("default")));
    answer_action(&api, &plugin, &action, pod.as_deref(), outcome)
}

/// What became of a lab action: the HTTP code, the result (`accepted`, `unknown-action`,
/// ...), the message, and the actions there are when the one asked for is not.
type ActionOutcome = (StatusCode, &'static str, String, Vec<String>);

/// Counts a lab action, puts it on the timeline (on its pod's lane, if it has one) and
/// answers it.
fn answer_action(api: &NodeApi, plugin: &str, action: &str, pod: Option<&str>, (code, result, message, actions): ActionOutcome) -> Response {
    api.journal.lab_action(api.clock.now_nanos(), pod, plugin, action, result, &message);
    (code, Json(TriggerResponse { result: result.into(), message, actions })).into_response()
}

/// `POST /node/{action}`: a lab action on the whole node (`labkubelet node partition`).
pub(super) async fn node_action(Extension(api): Extension<Arc<NodeApi>>, Path(action): Path<String>) -> Response {
    let outcome = match action.parse::<NodeAction>() {
        Ok(known) => (StatusCode::OK, "accepted", api.control.apply(known), Vec::new()),
        Err(e) => (StatusCode::BAD_REQUEST, "unknown-action", e.to_string(), NodeAction::ALL.map(|a| a.name().to_string()).to_vec()),
    };
    answer_action(&api, "node", &action, None, outcome)
}

/// What the node serves: `labkubelet plugin list --root-dir` prints it.
#[derive(Debug, Serialize, Deserialize)]
pub struct PluginsResponse {
    pub node: String,
    pub plugins: Vec<ServedPlugin>,
    /// Files of the plugin folder whose present content was refused.
    pub refused: Vec<RefusedFile>,
}

/// A plugin the node can serve pods with, and how many it serves now.
#[derive(Debug, Serialize, Deserialize)]
pub struct ServedPlugin {
    pub name: String,
    pub version: String,
    pub selector: String,
    /// The file it came from, or `builtin:<name>`.
    pub origin: String,
    pub pods: usize,
}

pub(super) async fn plugins(Extension(api): Extension<Arc<NodeApi>>) -> Json<PluginsResponse> {
    let catalog = api.plugins.catalog();
    let serving: Vec<String> = api.pods.pods().iter().map(|pod| plugin_of(&api.plugins, pod)).collect();
    let plugins = catalog
        .plugins()
        .iter()
        .map(|p| ServedPlugin {
            name: p.info.name.clone(),
            version: p.info.version.clone(),
            selector: p.info.selector.clone(),
            origin: p.origin.clone(),
            pods: serving.iter().filter(|s| **s == p.info.name).count(),
        })
        .collect();
    Json(PluginsResponse { node: api.node.to_string(), plugins, refused: catalog.refused() })
}

pub(super) async fn timeline(Extension(api): Extension<Arc<NodeApi>>, Query(query): Query<BTreeMap<String, String>>) -> Response {
    let timeline = api.journal.export();
    match query.get("format").map(String::as_str).unwrap_or("json") {
        "json" => Json(timeline).into_response(),
        "svg" => ([(header::CONTENT_TYPE, "image/svg+xml")], crate::timeline::render::svg(&timeline)).into_response(),
        "html" => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], crate::timeline::render::html(&timeline)).into_response(),
        other => text(StatusCode::BAD_REQUEST, format!("format: {other:?} is not one of json, svg, html")),
    }
}

/// Which plugin serves a pod: the one whose instance holds its sandbox; before it has one,
/// the one it will get (its scenario annotation, else the selectors, else `healthy`), or
/// `<name> (not loaded)` while the plugin its annotation names is not there. The pods of a
/// removed plugin keep running on the default one: `healthy (<name> removed)`.
pub fn plugin_of(plugins: &PluginRuntime, pod: &Pod) -> String {
    if let Some(serving) = pod.metadata.uid.as_deref().and_then(|uid| plugins.serving(uid)) {
        // A removed plugin's pods keep their containers, run on by the default plugin.
        if plugins.catalog().get(&serving).is_none() {
            return format!("{} ({serving} removed)", plugins.catalog().default_plugin().info.name);
        }
        return serving;
    }
    let kv =
        |m: &Option<BTreeMap<String, String>>| -> Vec<KeyValue> { m.iter().flatten().map(|(k, v)| KeyValue { key: k.clone(), value: v.clone() }).collect() };
    let annotations = kv(&pod.metadata.annotations);
    if plugins.catalog().missing_scenario(&annotations).is_some() {
        let wanted = annotations.iter().find(|a| a.key == crate::plugin::SCENARIO_ANNOTATION).map_or("", |a| a.value.as_str());
        return format!("{wanted} (not loaded)");
    }
    plugins.catalog().select(&kv(&pod.metadata.labels), &annotations).info.name.clone()
}
