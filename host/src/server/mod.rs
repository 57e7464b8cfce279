//! A node's HTTP API: the kubelet's (port 10250, TLS) and the lab's, one listener per node
//! (the API server reaches each node at its address and `daemonEndpoints` port, so nodes
//! sharing an address get ports of their own), plus the plain `/healthz` the kubelet
//! serves on 127.0.0.1:10248.
//!
//! - [`tls`]: serving certificate and accepted client certificates.
//! - [`auth`]: authentication and authorization, as the kubelet does them.
//! - [`logs`]: `/containerLogs` and its PodLogOptions.
//! - [`lab`]: the lab's endpoints: triggers, node actions, plugins, the timeline.
//! - [`streaming`]: `/exec`, `/attach`, `/portForward` and `/run`, as the kubelet's streaming
//!   server.
//!
//! Endpoints: `/healthz`, `/pods`, `/runningpods/`, `/containerLogs/{ns}/{pod}/{container}`,
//! `/metrics`, `/metrics/resource`, `/stats/summary`, `/spec/`, `/exec`, `/attach` and `/run`
//! (`/{ns}/{pod}[/{uid}]/{container}`), `/portForward/{ns}/{pod}[/{uid}]`, and for labs
//! `POST /trigger/{plugin}/{action}`,
//! `POST /node/{action}`, `/plugins` and `/timeline` (`?format=json|svg|html`).

pub mod auth;
pub mod lab;
pub mod logs;
pub mod streaming;
pub mod tls;

pub use lab::{PluginsResponse, ServedPlugin, TriggerRequest, TriggerResponse, plugin_of};

use crate::clock::Clock;
use crate::node::actions::NodeControl;
use crate::plugin::PluginRuntime;
use crate::pods::view::PodView;
use crate::runtime::ContainerRuntime;
use crate::runtime::pleg::PlegHealth;
use crate::timeline::Journal;
use auth::{Access, Refusal, User};
use axum::body::Body;
use axum::extract::{Path, Query, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// What one node's API serves.
pub struct NodeApi {
    pub node: String,
    /// The pods as `/pods` shows them.
    pub pods: PodView,
    /// The runtime they run on.
    pub runtime: Arc<dyn ContainerRuntime>,
    pub clock: Clock,
    pub plugins: Arc<PluginRuntime>,
    pub journal: Arc<Journal>,
    pub pleg: Arc<PlegHealth>,
    /// `/spec/`: the machine as cAdvisor's MachineInfo describes it.
    pub spec: serde_json::Value,
    pub access: Access,
    /// The lab's actions on the whole node.
    pub control: Arc<NodeControl>,
    /// `/stats/summary` and `/metrics/resource`.
    pub stats: crate::stats::StatsProvider,
}

impl NodeApi {
    /// The Summary API's answer now, for `/stats/summary` and `/metrics/resource`.
    async fn summary(&self) -> crate::stats::summary::Summary {
        self.stats.summary(self.runtime.as_ref(), self.pods.pods(), self.clock.now_nanos()).await
    }
}

/// The verified client certificate's user on a connection, if it showed one.
#[derive(Clone)]
struct Peer(Option<User>);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}; is another kubelet (or labkubelet) running? Choose another port with --port")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Binds a node's API port; a port in use is an error that says so.
pub async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr).await.map_err(|source| ServeError::Bind { addr, source })
}

fn text(code: StatusCode, message: impl Into<String>) -> Response {
    (code, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message.into()).into_response()
}

/// The node API's routes, the same for every node, so made once for the process (a router
/// of its own took a node 20 KiB); a request finds its node's [`NodeApi`] and its caller in
/// its extensions, which [`serve`] adds for each connection.
static ROUTES: std::sync::LazyLock<Router> = std::sync::LazyLock::new(|| {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/pods", get(pods))
        .route("/pods/", get(pods))
        .route("/runningpods/", get(running_pods))
        .route("/containerLogs/{namespace}/{pod}/{container}", get(container_logs))
        .route("/metrics", get(metrics))
        .route("/metrics/resource", get(resource_metrics))
        .route("/stats/summary", get(stats_summary).post(stats_summary))
        .route("/spec/", get(spec))
        .route("/spec", get(spec))
        .route("/trigger/{plugin}/{action}", post(lab::trigger))
        .route("/node/{action}", post(lab::node_action))
        .route("/timeline", get(lab::timeline))
        .route("/plugins", get(lab::plugins))
        .route("/exec/{namespace}/{pod}/{container}", get(streaming::exec).post(streaming::exec))
        .route("/exec/{namespace}/{pod}/{uid}/{container}", get(streaming::exec).post(streaming::exec))
        .route("/attach/{namespace}/{pod}/{container}", get(streaming::attach).post(streaming::attach))
        .route("/attach/{namespace}/{pod}/{uid}/{container}", get(streaming::attach).post(streaming::attach))
        .route("/portForward/{namespace}/{pod}", get(streaming::port_forward).post(streaming::port_forward))
        .route("/portForward/{namespace}/{pod}/{uid}", get(streaming::port_forward).post(streaming::port_forward))
        .route("/run/{namespace}/{pod}/{container}", post(streaming::run))
        .route("/run/{namespace}/{pod}/{uid}/{container}", post(streaming::run))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "404 page not found") })
        .layer(axum::middleware::from_fn(authorize))
});

/// Serves a node's API on `listener` over TLS until the future is dropped.
pub async fn serve(listener: &tokio::net::TcpListener, api: Arc<NodeApi>, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(node = %api.node, "accepting a connection: {e}");
                continue;
            }
        };
        let (acceptor, api, node) = (acceptor.clone(), api.clone(), api.node.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => return tracing::debug!(node, "TLS handshake failed: {e}"),
            };
            let peer = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| User::from_certificate(c.as_ref()));
            let routes = tower::ServiceBuilder::new().layer(Extension(api)).layer(Extension(Peer(peer))).service(ROUTES.clone());
            let service = hyper_util::service::TowerToHyperService::new(routes);
            let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service).await {
                tracing::debug!(node, "connection ended: {e}");
            }
        });
    }
}

/// Serves the kubelet's plain `/healthz` (127.0.0.1:10248) until the future is dropped.
pub async fn serve_healthz(listener: tokio::net::TcpListener) {
    let router = Router::new().route("/healthz", get(|| async { "ok" }));
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!("the healthz server stopped: {e}");
    }
}

async fn authorize(Extension(api): Extension<Arc<NodeApi>>, Extension(peer): Extension<Peer>, request: Request, next: Next) -> Response {
    let bearer = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    let attrs = auth::attributes(request.method(), request.uri().path());
    let allowed = match api.access.authenticate(peer.0, bearer).await {
        Ok(user) => api.access.authorize(&user, &api.node, &attrs).await,
        Err(refusal) => Err(refusal),
    };
    match allowed {
        Ok(()) => next.run(request).await,
        Err(refusal @ Refusal::Unauthenticated) => text(StatusCode::UNAUTHORIZED, refusal.to_string()),
        Err(refusal @ Refusal::Forbidden { .. }) => text(StatusCode::FORBIDDEN, format!("{refusal}\n")),
        Err(refusal @ Refusal::Error { .. }) => text(StatusCode::INTERNAL_SERVER_ERROR, refusal.to_string()),
    }
}

fn pod_list(items: Vec<Pod>) -> Response {
    Json(serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})).into_response()
}

/// The node's pods as the kubelet has them, each annotated with the plugin that serves it
/// ([`SERVED_BY_ANNOTATION`]).
async fn pods(Extension(api): Extension<Arc<NodeApi>>) -> Response {
    let mut pods = api.pods.pods();
    for pod in &mut pods {
        let plugin = plugin_of(&api.plugins, pod);
        pod.metadata.annotations.get_or_insert_default().insert(SERVED_BY_ANNOTATION.into(), plugin);
    }
    pod_list(pods)
}

/// The annotation `/pods` adds to each pod: the plugin that serves it, as the terminal view's
/// PLUGIN column shows it.
pub const SERVED_BY_ANNOTATION: &str = "labkubelet.io/served-by";

/// The pods the runtime has, as the kubelet's `/runningpods/` shows them: names, uids and
/// containers, nothing of the spec beyond.
async fn running_pods(Extension(api): Extension<Arc<NodeApi>>) -> Response {
    let runtime = &api.runtime;
    let (sandboxes, containers) = match (runtime.list_pod_sandboxes().await, runtime.list_containers().await) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(e), _) | (_, Err(e)) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let items = sandboxes
        .iter()
        .filter(|s| s.state == crate::runtime::PodSandboxState::Ready)
        .map(|s| Pod {
            metadata: ObjectMeta {
                name: Some(s.metadata.name.clone()),
                namespace: Some(s.metadata.namespace.clone()),
                uid: Some(s.metadata.uid.clone()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: containers
                    .iter()
                    .filter(|c| c.pod_sandbox_id == s.id && c.state == crate::runtime::ContainerState::Running)
                    .map(|c| Container { name: c.metadata.name.clone(), image: Some(c.image.clone()), ..Default::default() })
                    .collect(),
                ..Default::default()
            }),
            status: None,
        })
        .collect();
    pod_list(items)
}

async fn container_logs(
    Extension(api): Extension<Arc<NodeApi>>,
    Path((namespace, name, container)): Path<(String, String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    let refuse = |e: logs::LogError| text(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST), e.to_string());
    let options = match logs::LogOptions::from_query(&query) {
        Ok(o) => o,
        Err(e) => return refuse(e),
    };
    let Some(pod) = api.pods.pod_by_name(&namespace, &name) else {
        return refuse(logs::LogError::NotFound(format!("pod {name:?} does not exist")));
    };
    let spec = pod.spec.clone().unwrap_or_default();
    if !spec.containers.iter().chain(spec.init_containers.iter().flatten()).any(|c| c.name == container) {
        return refuse(logs::LogError::NotFound(format!("container {container:?} not found in pod {name:?}")));
    }
    let id = match logs::container_id(&pod, &container, options.previous) {
        Ok(id) => id,
        Err(e) => return refuse(e),
    };
    // Unbounded: a bounded channel would drop the lines of a long read; each read is held
    // in memory once anyway.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (runtime, clock) = (api.runtime.clone(), api.clock);
    // The first chunk decides between an error status and a 200 that streams.
    let (first_tx, first_rx) = tokio::sync::oneshot::channel::<Result<(), logs::LogError>>();
    tokio::spawn(async move {
        let mut first_tx = Some(first_tx);
        let result = logs::stream(runtime, clock, id, options, |chunk, _| {
            if let Some(f) = first_tx.take() {
                let _ = f.send(Ok(()));
            }
            tx.send(chunk).is_ok()
        })
        .await;
        if let Some(f) = first_tx.take() {
            let _ = f.send(result);
        }
    });
    match first_rx.await {
        Ok(Err(e)) => refuse(e),
        _ => {
            let body = futures_util::stream::unfold(Some(rx), |open| async move {
                let mut rx = open?;
                match rx.recv().await {
                    Some(chunk) => Some((Ok::<_, std::convert::Infallible>(chunk), Some(rx))),
                    None => {
                        tokio::time::sleep(logs::END_AFTER).await;
                        None
                    }
                }
            });
            ([(header::CONTENT_TYPE, "text/plain")], Body::from_stream(body)).into_response()
        }
    }
}

async fn metrics(Extension(api): Extension<Arc<NodeApi>>) -> Response {
    let m = &crate::metrics::METRICS;
    m.pleg_healthy.with_label_values(&[&api.node]).set(i64::from(api.pleg.check().is_ok()));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.render(Some(&api.node))).into_response()
}

/// The Summary API; `only_cpu_and_memory=true` (what metrics-server asks) leaves out the
/// filesystems.
async fn stats_summary(Extension(api): Extension<Arc<NodeApi>>, Query(q): Query<BTreeMap<String, String>>) -> Response {
    let mut summary = api.summary().await;
    if q.get("only_cpu_and_memory").is_some_and(|v| v == "true") {
        summary.node.fs = None;
        summary.pods.iter_mut().flat_map(|p| &mut p.containers).for_each(|c| c.rootfs = None);
    }
    Json(summary).into_response()
}

async fn resource_metrics(Extension(api): Extension<Arc<NodeApi>>) -> Response {
    let summary = api.summary().await;
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::stats::resource_metrics::render(&summary)).into_response()
}

async fn spec(Extension(api): Extension<Arc<NodeApi>>) -> Response {
    Json(api.spec.clone()).into_response()
}
