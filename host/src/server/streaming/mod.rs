//! The kubelet's streaming server (pkg/kubelet/server `getExec`, `getAttach`, `getRun` with
//! pkg/kubelet/cri/streaming): `kubectl exec` reaches the node as an upgrade to SPDY/3.1 the
//! API server passes through, and the command runs in the container's shell in its plugin.
//!
//! - `exec`: `/exec`, the command run in the container's shell.
//! - `attach`: `/attach`, the container's output from then on, and its stdin.
//! - [`spdy`]: SPDY/3.1 framing and connections.
//! - [`remotecommand`]: the `channel.k8s.io` stream protocols over them.
//! - [`websocket`]: the channel protocols over WebSocket, for exec, attach and port-forward.
//! - [`terminal`]: the line discipline of `kubectl exec -it`.
//! - [`portforward`]: `kubectl port-forward` to what the pod's images serve.

mod attach;
mod channel;
mod exec;
pub mod portforward;
pub mod remotecommand;
pub mod spdy;
pub mod terminal;
pub mod websocket;

pub use attach::attach;
pub use exec::exec;

use super::{NodeApi, logs, text};
use axum::Extension;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use remotecommand::{NegotiationError, Options, Streams};
use std::sync::Arc;
use std::time::Duration;

/// What a streaming request names in its path, whichever of its routes matched (with the
/// pod's uid or without; port-forward names no container).
#[derive(serde::Deserialize)]
pub struct Target {
    namespace: String,
    pod: String,
    uid: Option<String>,
    #[serde(default)]
    container: String,
}

/// `/portForward/{namespace}/{pod}[/{uid}]`.
pub async fn port_forward(
    Extension(api): Extension<Arc<NodeApi>>,
    Path(t): Path<Target>,
    Query(query): Query<Vec<(String, String)>>,
    request: Request,
) -> Response {
    port_forward_to(api, &t.namespace, &t.pod, t.uid.as_deref(), &query, request).await
}

async fn port_forward_to(api: Arc<NodeApi>, namespace: &str, pod: &str, uid: Option<&str>, query: &[(String, String)], request: Request) -> Response {
    // Over WebSocket the ports are the query's, read before anything else (upstream's NewV4Options).
    let websocket_ports = if is_websocket(&request) {
        match portforward::ports(query) {
            Ok(ports) => Some(ports),
            Err(e) => return text(StatusCode::BAD_REQUEST, e),
        }
    } else {
        None
    };
    let Some(found) = api.pods.pod_by_name(namespace, pod) else {
        return text(StatusCode::NOT_FOUND, "pod does not exist");
    };
    let pod_uid = found.metadata.uid.clone().unwrap_or_default();
    if uid.is_some_and(|uid| uid != pod_uid) {
        return text(StatusCode::NOT_FOUND, "pod not found");
    }
    let sandboxes = api.runtime.list_pod_sandboxes().await.unwrap_or_default();
    let Some(sandbox) = sandboxes.into_iter().find(|s| s.metadata.uid == pod_uid && s.state == crate::runtime::PodSandboxState::Ready) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, format!("pod {pod} does not have a running sandbox"));
    };
    let runtime = api.runtime.clone();
    if let Some(ports) = websocket_ports {
        return upgrade_channels(request, &portforward::WEBSOCKET_PROTOCOLS, move |socket, protocol| {
            portforward::serve_websocket(socket, protocol, runtime, sandbox.id, ports)
        })
        .await;
    }
    upgrade(request, &[portforward::PROTOCOL], move |conn, _| portforward::serve(conn, runtime, sandbox.id))
}

/// `POST /run/{namespace}/{pod}[/{uid}]/{container}?cmd=…`: a command run once, its output as the
/// body (the kubelet's legacy run: the command split at spaces).
pub async fn run(Extension(api): Extension<Arc<NodeApi>>, Path(t): Path<Target>, Query(query): Query<Vec<(String, String)>>) -> Response {
    run_in(api, &t.namespace, &t.pod, t.uid.as_deref(), &t.container, query).await
}

async fn run_in(api: Arc<NodeApi>, namespace: &str, pod: &str, uid: Option<&str>, container: &str, query: Vec<(String, String)>) -> Response {
    let cmd: Vec<String> = query.iter().find(|(k, _)| k == "cmd").map_or("", |(_, v)| v.as_str()).split(' ').map(str::to_string).collect();
    let id = match running_container(&api, namespace, pod, uid, container) {
        Ok(id) => id,
        Err((code, message)) => return text(code, message),
    };
    match api.runtime.exec_sync(&id, &cmd, &[], Duration::ZERO).await {
        Ok(r) if r.exit_code == 0 => ([(header::CONTENT_TYPE, "application/json")], [r.stdout, r.stderr].concat()).into_response(),
        // CRI ExecSync's error for a command that failed, which the kubelet answers with 500.
        Ok(r) => {
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("command '{}' exited with {}: {}", cmd.join(" "), r.exit_code, String::from_utf8_lossy(&r.stderr)))
        }
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The runtime's id of a running container, or the kubelet's answer when there is none.
fn running_container(api: &NodeApi, namespace: &str, pod: &str, uid: Option<&str>, container: &str) -> Result<String, (StatusCode, String)> {
    let Some(found) = api.pods.pod_by_name(namespace, pod) else {
        return Err((StatusCode::NOT_FOUND, "pod does not exist".into()));
    };
    let not_found = || (StatusCode::INTERNAL_SERVER_ERROR, format!("container not found ({container:?})"));
    if uid.is_some_and(|uid| found.metadata.uid.as_deref() != Some(uid)) {
        return Err(not_found());
    }
    let status = found.status.unwrap_or_default();
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find(|c| c.name == container && c.state.as_ref().is_some_and(|s| s.running.is_some()))
        .and_then(|c| c.container_id.clone())
        .map(|id| id.split_once("://").map_or(id.clone(), |(_, id)| id.to_string()))
        .ok_or_else(not_found)
}

fn is_websocket(request: &Request) -> bool {
    let has = |name, token: &str| {
        request.headers().get_all(name).iter().filter_map(|v| v.to_str().ok()).any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, "websocket")
}

/// The client of an exec's or an attach's streams, over the protocol it upgraded to.
enum Client {
    WebSocket(websocket::Session),
    Spdy(spdy::Connection),
}

impl Client {
    /// Resolves when the client has gone.
    async fn gone(&mut self) {
        match self {
            Client::WebSocket(session) => session.gone().await,
            Client::Spdy(conn) => conn.gone().await,
        }
    }

    /// Ends the connection once what was written has gone out.
    async fn close(self) {
        match self {
            Client::WebSocket(session) => session.close().await,
            Client::Spdy(conn) => conn.close().await,
        }
    }

    /// Whether the client can end stdin: SPDY closes its stdin stream; the WebSocket channel
    /// protocols up to v4 have no message for it.
    fn ends_stdin(&self) -> bool {
        matches!(self, Client::Spdy(_))
    }
}

/// Answers an exec's or an attach's upgrade, to WebSocket or else SPDY/3.1, with the kubelet's
/// channel protocols, opens the command's streams and serves them with `serve`, which closes
/// the client when it is done.
async fn upgrade_streams<F, Fut>(request: Request, options: Options, serve: F) -> Response
where
    F: FnOnce(Streams, Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if is_websocket(&request) {
        return upgrade_channels(request, &websocket::PROTOCOLS, move |socket, protocol| async move {
            let (streams, session) = websocket::open(socket, protocol, options);
            serve(streams, Client::WebSocket(session)).await;
        })
        .await;
    }
    upgrade(request, &remotecommand::PROTOCOLS, move |mut conn, protocol| async move {
        match remotecommand::accept_streams(&mut conn, protocol, options).await {
            Some(streams) => serve(streams, Client::Spdy(conn)).await,
            None => {
                tracing::debug!("the client did not open its streams");
                conn.close().await;
            }
        }
    })
}

/// Answers a WebSocket upgrade with the first of the `supported` channel protocols the client
/// offers, then serves the socket with `serve`. A client offering only others is refused with
/// 403, as the kubelet's handshake refuses it; kubectl then falls back to SPDY.
async fn upgrade_channels<F, Fut>(request: Request, supported: &'static [&'static str], serve: F) -> Response
where
    F: FnOnce(WebSocket, &'static str) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let offered = request.headers().get_all(header::SEC_WEBSOCKET_PROTOCOL).iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect::<Vec<_>>();
    let Some(protocol) = websocket::negotiate(offered.iter().map(String::as_str), supported) else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let (mut parts, _) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    let upgrade = if protocol.is_empty() { upgrade } else { upgrade.protocols([protocol]) };
    upgrade.on_upgrade(move |socket| serve(socket, protocol))
}

/// Answers an upgrade to SPDY/3.1 with 101 and the agreed stream protocol, then serves the
/// connection with `serve`; a request that is no such upgrade gets the kubelet's refusal.
fn upgrade<F, Fut>(mut request: Request, protocols: &'static [&'static str], serve: F) -> Response
where
    F: FnOnce(spdy::Connection, &'static str) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let headers = request.headers();
    let protocol = remotecommand::negotiate(headers.get_all("x-stream-protocol-version").iter().filter_map(|v| v.to_str().ok()), protocols);
    let protocol = match protocol {
        Ok(p) => p,
        Err(e @ NegotiationError::Missing) => return text(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ NegotiationError::NoMatch(..)) => {
            let mut response = text(StatusCode::FORBIDDEN, e.to_string());
            for p in protocols {
                response.headers_mut().append("x-accepted-stream-protocol-versions", HeaderValue::from_static(p));
            }
            return response;
        }
    };
    let asks_upgrade = headers.get(header::CONNECTION).and_then(|v| v.to_str().ok()).is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"));
    let spdy = headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.to_ascii_lowercase().contains("spdy/3.1"));
    if !asks_upgrade || !spdy {
        return text(StatusCode::BAD_REQUEST, "unable to upgrade: missing upgrade headers in request");
    }
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => serve(spdy::Connection::serve(hyper_util::rt::TokioIo::new(upgraded)), protocol).await,
            Err(e) => tracing::debug!("the upgrade to SPDY failed: {e}"),
        }
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [(header::CONNECTION, "Upgrade"), (header::UPGRADE, "SPDY/3.1"), (header::HeaderName::from_static("x-stream-protocol-version"), protocol)],
    )
        .into_response()
}
