//! An in-process stand-in for kube-apiserver, for the agent's integration tests.
//!
//! It serves over HTTPS what a kubelet uses — nodes (+status), pods (+status), events,
//! leases, namespaces, certificatesigningrequests (+approval, +status) — with the real
//! API server's semantics where the agent depends on them: one resourceVersion counter,
//! 409 Conflict on stale updates and failed preconditions, status subresources, the three
//! patch types, graceful pod deletion, list and watch with field and label selectors,
//! watches resumed from a resourceVersion and 410 Gone when it is too old, bearer-token
//! (including bootstrap tokens) and client-certificate authentication, and a CSR signer
//! that issues certificates for approved requests. Tests can inject faults: latency, bursts
//! of failures (429, 5xx) on the requests that match, and going offline.
//!
//! The product is judged against a real API server, never against this double: where
//! they differ, the double is wrong.

mod authz;
mod patch;
mod rest;
mod store;

pub use rest::{ApiError, RESOURCES, Resource};
pub use store::Store;

/// How many changes a watch can resume from before it gets 410 Gone.
pub fn store_history() -> usize {
    store::HISTORY
}

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Query, Request};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use kube_core::SelectorExt;
use rest::Target;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use store::{Event, Start};

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// A burst of failed requests: the next `count` requests whose "METHOD path?query" contains
/// `matching` fail with `code`. A 429 carries `Retry-After: 1`, as max-in-flight's does.
#[derive(Debug, Clone)]
pub struct Failures {
    pub matching: String,
    pub count: u32,
    pub code: u16,
}

impl Failures {
    /// The next `count` requests, whatever they ask.
    pub fn next(count: u32, code: u16) -> Failures {
        Failures { matching: String::new(), count, code }
    }

    /// The next `count` requests that contain `matching` ("POST /api/v1/nodes", "watch=true").
    pub fn on(matching: &str, count: u32, code: u16) -> Failures {
        Failures { matching: matching.to_string(), count, code }
    }
}

/// Faults the double injects into the requests it serves.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    pub latency: Duration,
    /// Requests whose "METHOD path?query" line contains the text wait this long more (a
    /// slow resource).
    pub slow: Option<(String, Duration)>,
    /// Requests that fail, each burst counted down on its own (the first that matches a
    /// request takes it).
    pub failing: Vec<Failures>,
    /// Every connection is dropped, as if the server were down.
    pub offline: bool,
}

struct Shared {
    store: Store,
    tokens: Mutex<HashMap<String, Identity>>,
    faults: Mutex<Faults>,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    ca_pem: String,
    /// Each request line, with the HTTP version it came over.
    requests: Mutex<Vec<(String, http::Version)>>,
    /// Tells open connections the server went offline.
    offline: tokio::sync::watch::Sender<bool>,
    /// The csrapproving controller with the nodeclient roles bound to bootstrap tokens.
    auto_approve: std::sync::atomic::AtomicBool,
    /// kube-controller-manager's --cluster-signing-duration.
    signing_duration: Mutex<Duration>,
    /// RBAC in short: (user or group, `resource/subresource`) pairs SubjectAccessReviews
    /// allow; `system:masters` may do anything.
    grants: Mutex<Vec<(String, String)>>,
    /// Fields this server does not know, by resource: dropped from what it is sent.
    unknown_fields: Mutex<Vec<(String, Vec<String>)>>,
}

/// A running API-server double. Dropping it stops it.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ApiServer {
    /// Starts a double on a free port of 127.0.0.1, with its own CA.
    pub async fn start() -> anyhow::Result<Self> {
        ApiServer::serving(true).await
    }

    /// A double that speaks HTTP/1.1 only, for clients on tokio's paused clock: there,
    /// hyper's HTTP/2 client stalls (a request on a shared connection gets no answer, and
    /// virtual time runs on to its timeout), while HTTP/1.1 works.
    pub async fn http1_only() -> anyhow::Result<Self> {
        ApiServer::serving(false).await
    }

    async fn serving(http2: bool) -> anyhow::Result<Self> {
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "labkubelet-test-ca");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature, rcgen::KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca_pem = ca_cert.pem();
        let ca = rcgen::Issuer::new(ca_params, ca_key);

        let server_key = rcgen::KeyPair::generate()?;
        let mut server_params = rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        server_params.distinguished_name.push(rcgen::DnType::CommonName, "kube-apiserver");
        let server_cert = server_params.signed_by(&server_key, &ca)?;

        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca_cert.der().clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone()).allow_unauthenticated().build()?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![server_cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()))?;
        // As kube-apiserver: HTTP/2 to a client that offers it, HTTP/1.1 to one that does not.
        tls.alpn_protocols = if http2 { vec![b"h2".to_vec(), b"http/1.1".to_vec()] } else { vec![b"http/1.1".to_vec()] };
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));

        let shared = Arc::new(Shared {
            store: Store::default(),
            tokens: Mutex::new(HashMap::new()),
            faults: Mutex::new(Faults::default()),
            ca,
            ca_pem,
            requests: Mutex::new(Vec::new()),
            offline: tokio::sync::watch::channel(false).0,
            auto_approve: std::sync::atomic::AtomicBool::new(false),
            signing_duration: Mutex::new(Duration::from_secs(365 * 86_400)),
            grants: Mutex::new(Vec::new()),
            unknown_fields: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let router = Router::new().fallback(handle).layer(Extension(shared.clone()));
        let serving = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                if serving.faults.lock().map(|f| f.offline).unwrap_or(false) {
                    drop(tcp);
                    continue;
                }
                let (acceptor, router) = (acceptor.clone(), router.clone());
                let mut offline = serving.offline.subscribe();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let peer = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| identity_of(c.as_ref()));
                    let service = hyper_util::service::TowerToHyperService::new(router.layer(Extension(Peer(peer))));
                    let builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                    let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(tls), service);
                    // Going offline drops open connections too, as a server that goes down does.
                    tokio::select! {
                        _ = connection => {}
                        _ = offline.wait_for(|down| *down) => {}
                    }
                });
            }
        });
        Ok(ApiServer { shared, addr, task })
    }

    /// `https://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The CA that signed the server's certificate and signs approved CSRs, as PEM.
    pub fn ca_pem(&self) -> &str {
        &self.shared.ca_pem
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// A client for this server from a kubeconfig, as the agent makes its clients.
    pub async fn client(kubeconfig: &str) -> anyhow::Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// A client with full rights, for a test to set the stage and look at the result.
    pub async fn admin(&self) -> kube::Client {
        self.add_token("admin-token", "admin", &["system:masters"]);
        ApiServer::client(&self.kubeconfig_with_token("admin-token")).await.expect("an admin client for the double")
    }

    /// A kubeconfig for this server that authenticates with a bearer token.
    pub fn kubeconfig_with_token(&self, token: &str) -> String {
        self.kubeconfig(&format!("    token: {token}\n"))
    }

    /// A kubeconfig for this server that authenticates with a client certificate (PEM).
    pub fn kubeconfig_with_certificate(&self, cert_pem: &str, key_pem: &str) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        self.kubeconfig(&format!("    client-certificate-data: {}\n    client-key-data: {}\n", b64(cert_pem), b64(key_pem)))
    }

    fn kubeconfig(&self, user: &str) -> String {
        let ca = base64::engine::general_purpose::STANDARD.encode(&self.shared.ca_pem);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: double\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\n\
             users:\n- name: user\n  user:\n{user}contexts:\n- name: double\n  context:\n    cluster: double\n    user: user\n\
             current-context: double\n",
            self.url()
        )
    }

    /// Accepts `token` as `user` in `groups`.
    pub fn add_token(&self, token: &str, user: &str, groups: &[&str]) {
        let identity = Identity { user: user.into(), groups: groups.iter().map(|g| g.to_string()).collect() };
        self.shared.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(token.into(), identity);
    }

    /// Accepts a bootstrap token `<id>.<secret>` as kubeadm's `kubeadm token create` does.
    pub fn add_bootstrap_token(&self, id: &str, secret: &str) -> String {
        let token = format!("{id}.{secret}");
        self.add_token(&token, &format!("system:bootstrap:{id}"), &["system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token"]);
        token
    }

    /// Issues a client certificate and key (PEM) for `user` in `groups`, signed by the CA.
    pub fn client_certificate(&self, user: &str, groups: &[&str]) -> anyhow::Result<(String, String)> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, user);
        for group in groups {
            params.distinguished_name.push(rcgen::DnType::OrganizationName, *group);
        }
        let cert = params.signed_by(&key, &self.shared.ca)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Approves kubelet client CSRs on creation, as kube-controller-manager's csrapproving
    /// controller does once bootstrap tokens are bound to the nodeclient role (kubeadm
    /// binds it).
    /// How long the certificates the CSR signer issues are valid (the controller manager's
    /// --cluster-signing-duration, a year by default); a CSR's expirationSeconds may ask
    /// for less.
    /// Lets a user or group do anything on `resource` (`nodes/proxy`, `nodes/metrics`, ...),
    /// as a ClusterRoleBinding would; SubjectAccessReviews answer from these.
    pub fn grant(&self, subject: &str, resource: &str) {
        self.shared.grants.lock().unwrap_or_else(|p| p.into_inner()).push((subject.to_string(), resource.to_string()));
    }

    pub fn set_signing_duration(&self, d: Duration) {
        *self.shared.signing_duration.lock().unwrap_or_else(|p| p.into_inner()) = d;
    }

    /// Makes the server one that does not know `field` (dotted, `status.hostIPs`) of
    /// `resource` (its plural), as an older API server: it drops the field from every
    /// object it is sent, and never has it.
    pub fn forget_field(&self, resource: &str, field: &str) {
        let path = field.split('.').map(str::to_string).collect();
        self.shared.unknown_fields.lock().unwrap_or_else(|p| p.into_inner()).push((resource.to_string(), path));
    }

    pub fn set_auto_approve(&self, on: bool) {
        self.shared.auto_approve.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.offline.send_replace(faults.offline);
        *self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    /// The faults as they are now: what is left of each burst.
    pub fn faults(&self) -> Faults {
        self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every request served so far, as "METHOD path?query".
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(line, _)| line.clone()).collect()
    }

    /// Every request served so far, with the HTTP version it came over.
    pub fn requests_with_versions(&self) -> Vec<(String, http::Version)> {
        self.shared.requests.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The identity a client certificate proves: CN is the user, each O a group.
fn identity_of(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some(Identity { user, groups })
}

#[derive(Clone)]
struct Peer(Option<Identity>);

fn error(e: ApiError) -> Response {
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (code, axum::Json(e.status())).into_response();
    if e.code == 429 {
        response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
    }
    response
}

fn json_response(code: StatusCode, value: Value) -> Response {
    (code, axum::Json(value)).into_response()
}

/// A parsed request path.
struct Path {
    resource: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(path: &str) -> Option<Path> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some(name.to_string()), None),
        [plural, name, sub] => (*plural, Some(name.to_string()), Some(sub.to_string())),
        _ => return None,
    };
    let resource = Resource::find(group, version, plural)?;
    Some(Path { resource, namespace, name, subresource })
}

async fn handle(
    Extension(shared): Extension<Arc<Shared>>,
    Extension(peer): Extension<Peer>,
    Query(query): Query<BTreeMap<String, String>>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    // An HTTP/2 request's URI has the scheme and authority too: the line shows the path.
    let line = format!("{} {}", parts.method, parts.uri.path_and_query().map_or(path.as_str(), |p| p.as_str()));
    shared.requests.lock().unwrap_or_else(|p| p.into_inner()).push((line.clone(), parts.version));
    let (latency, slow) = {
        let faults = shared.faults.lock().unwrap_or_else(|p| p.into_inner());
        (faults.latency, faults.slow.as_ref().filter(|(part, _)| line.contains(part.as_str())).map(|(_, wait)| *wait))
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(wait) = slow {
        tokio::time::sleep(wait).await;
    }
    if let Some(code) = take_failure(&shared, &line) {
        return injected_failure(code);
    }
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") {
        return "ok".into_response();
    }
    if path == "/version" {
        return json_response(StatusCode::OK, json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-labkubelet-double", "platform": "linux/amd64"}));
    }
    let Some(identity) = authenticate(&shared, &parts.headers, peer.0) else {
        return error(ApiError::new(401, "Unauthorized", "Unauthorized"));
    };
    if parts.method == Method::POST && (path == "/apis/authentication.k8s.io/v1/tokenreviews" || path == "/apis/authorization.k8s.io/v1/subjectaccessreviews") {
        let review: Value = match axum::body::to_bytes(body, 1 << 20).await.map(|b| serde_json::from_slice(&b)) {
            Ok(Ok(v)) => v,
            _ => return error(ApiError::bad_request("the body of the request could not be decoded")),
        };
        return json_response(StatusCode::CREATED, review_answer(&shared, &path, review));
    }
    let Some(target) = parse_path(&path) else {
        return error(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    };
    let body = match axum::body::to_bytes(body, 16 << 20).await {
        Ok(b) => b,
        Err(e) => return error(ApiError::bad_request(e.to_string())),
    };
    let result = serve(&shared, &identity, &parts.method, &parts.headers, &query, &target, body).await;
    result.unwrap_or_else(error)
}

/// The status code of the burst that takes this request, if one does.
fn take_failure(shared: &Shared, line: &str) -> Option<u16> {
    let mut faults = shared.faults.lock().unwrap_or_else(|p| p.into_inner());
    let burst = faults.failing.iter_mut().find(|f| f.count > 0 && line.contains(f.matching.as_str()))?;
    burst.count -= 1;
    Some(burst.code)
}

/// What the API server answers when it throttles (429, with `Retry-After`, as max-in-flight
/// does) or cannot serve a request.
fn injected_failure(code: u16) -> Response {
    let (reason, message) = match code {
        429 => ("TooManyRequests", "Too many requests, please try again later."),
        503 => ("ServiceUnavailable", "the server is currently unable to handle the request"),
        _ => ("InternalError", "injected by the test double"),
    };
    error(ApiError::new(code, reason, message))
}

/// A TokenReview or SubjectAccessReview with its status filled in, as the API server answers
/// the kubelet's webhook authentication and authorization.
fn review_answer(shared: &Shared, path: &str, mut review: Value) -> Value {
    if path.contains("tokenreviews") {
        let token = review["spec"]["token"].as_str().unwrap_or_default().to_string();
        let known = shared.tokens.lock().unwrap_or_else(|p| p.into_inner()).get(&token).cloned();
        review["status"] = match known {
            Some(id) => {
                let mut groups = id.groups.clone();
                groups.push("system:authenticated".into());
                json!({"authenticated": true, "user": {"username": id.user, "groups": groups}})
            }
            None => json!({"authenticated": false, "error": "invalid bearer token"}),
        };
        return review;
    }
    let spec = &review["spec"];
    let user = spec["user"].as_str().unwrap_or_default();
    let groups: Vec<&str> = spec["groups"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let attrs = &spec["resourceAttributes"];
    let resource = match attrs["subresource"].as_str().filter(|s| !s.is_empty()) {
        Some(sub) => format!("{}/{sub}", attrs["resource"].as_str().unwrap_or_default()),
        None => attrs["resource"].as_str().unwrap_or_default().to_string(),
    };
    let grants = shared.grants.lock().unwrap_or_else(|p| p.into_inner());
    let allowed = groups.contains(&"system:masters") || grants.iter().any(|(who, what)| (who == user || groups.contains(&who.as_str())) && *what == resource);
    review["status"] = if allowed { json!({"allowed": true, "reason": "granted by the test double"}) } else { json!({"allowed": false}) };
    review
}

fn authenticate(shared: &Shared, headers: &HeaderMap, peer: Option<Identity>) -> Option<Identity> {
    if let Some(token) = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) {
        return shared.tokens.lock().unwrap_or_else(|p| p.into_inner()).get(token.trim()).cloned();
    }
    peer
}

async fn serve(
    shared: &Arc<Shared>,
    identity: &Identity,
    method: &Method,
    headers: &HeaderMap,
    query: &BTreeMap<String, String>,
    p: &Path,
    body: Bytes,
) -> Result<Response, ApiError> {
    let r = p.resource;
    let namespace = p.namespace.clone().unwrap_or_default();
    if r.namespaced && p.namespace.is_none() && p.name.is_some() {
        return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
    }
    let parse = |body: &Bytes| -> Result<Value, ApiError> {
        if body.is_empty() {
            return Ok(Value::Null);
        }
        let mut value: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body of the request could not be decoded: {e}")))?;
        for (_, path) in shared.unknown_fields.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|(resource, _)| resource == r.plural) {
            if let Some((last, parents)) = path.split_last()
                && let Some(object) = parents.iter().try_fold(&mut value, |v, key| v.get_mut(key.as_str())).and_then(Value::as_object_mut)
            {
                object.remove(last);
            }
        }
        Ok(value)
    };
    let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (method, p.name.is_some()) {
        (&Method::GET, false) if watching => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "",
    };
    let attrs = authz::Attributes { verb, resource: r, subresource: p.subresource.as_deref(), namespace: &namespace, name: p.name.as_deref() };
    authz::authorize(identity, &attrs, || shared.store.list("pods", None).0)?;
    // NodeRestriction checks a mirror pod's owner reference against the requesting node's uid.
    let node_uid = authz::node_of(identity)
        .filter(|_| r.plural == "pods" && verb == "create")
        .and_then(|node| shared.store.get(&store::Key { resource: "nodes", namespace: String::new(), name: node.to_string() }))
        .and_then(|n| n["metadata"]["uid"].as_str().map(str::to_string));
    let admission = |old: Option<&Value>, new: Option<&Value>| authz::admit(identity, &attrs, node_uid.as_deref(), old, new);
    let Some(name) = p.name.as_deref() else {
        return match *method {
            Method::GET if watching => watch(shared, r, p.namespace.as_deref(), query),
            Method::GET => list(shared, r, p.namespace.as_deref(), query),
            Method::POST => {
                let mut object = parse(&body)?;
                if r.plural == "certificatesigningrequests" && object.is_object() {
                    // The API server records who asked: the auto-approver decides on it.
                    let mut groups = identity.groups.clone();
                    groups.push("system:authenticated".into());
                    object["spec"]["username"] = json!(identity.user);
                    object["spec"]["groups"] = json!(groups);
                }
                let created = rest::create(&shared.store, r, &namespace, object, &admission)?;
                if r.plural == "certificatesigningrequests" && shared.auto_approve.load(std::sync::atomic::Ordering::Relaxed) && is_node_client_csr(&created) {
                    let name = created["metadata"]["name"].as_str().unwrap_or_default().to_string();
                    let t = Target { resource: r, namespace: "", name: &name };
                    let approval = json!({"status": {"conditions": [{"type": "Approved", "status": "True", "reason": "AutoApproved",
                        "message": "Auto approving kubelet client certificate after SubjectAccessReview.", "lastUpdateTime": rest::now()}]}});
                    let approved = rest::patch(&shared.store, &t, Some("approval"), "application/merge-patch+json", approval, &rest::admit_all)?;
                    return Ok(json_response(StatusCode::CREATED, sign_if_approved(shared, &t, approved)?));
                }
                Ok(json_response(StatusCode::CREATED, created))
            }
            _ => Err(ApiError::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource".to_string())),
        };
    };
    let t = Target { resource: r, namespace: &namespace, name };
    let sub = p.subresource.as_deref();
    if let Some(s) = sub {
        let allowed = (s == "status" && r.status) || (s == "approval" && r.plural == "certificatesigningrequests") || (s == "binding" && r.plural == "pods");
        if !allowed {
            return Err(ApiError::new(404, "NotFound", "the server could not find the requested resource"));
        }
    }
    if sub == Some("binding") {
        if *method != Method::POST {
            return Err(ApiError::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource"));
        }
        rest::bind(&shared.store, &t, &parse(&body)?)?;
        return Ok(json_response(StatusCode::CREATED, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})));
    }
    let stored = match *method {
        Method::GET => shared
            .store
            .get(&store::Key { resource: r.plural, namespace: namespace.clone(), name: name.to_string() })
            .ok_or_else(|| ApiError::not_found(r, name))?,
        Method::PUT => rest::update(&shared.store, &t, sub, parse(&body)?, &admission)?,
        Method::PATCH => {
            let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
            rest::patch(&shared.store, &t, sub, &content_type, parse(&body)?, &admission)?
        }
        Method::DELETE => {
            let options = parse(&body)?;
            let mut options = if options.is_null() { json!({}) } else { options };
            if let Some(g) = query.get("gracePeriodSeconds").and_then(|g| g.parse::<i64>().ok()) {
                options["gracePeriodSeconds"] = json!(g);
            }
            let (object, gone) = rest::delete(&shared.store, &t, &options, &admission)?;
            if gone && r.plural != "pods" {
                return Ok(json_response(
                    StatusCode::OK,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": {"name": name, "kind": r.plural, "uid": object["metadata"]["uid"]}}),
                ));
            }
            object
        }
        _ => return Err(ApiError::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")),
    };
    if sub == Some("approval") {
        return Ok(json_response(StatusCode::OK, sign_if_approved(shared, &t, stored)?));
    }
    Ok(json_response(StatusCode::OK, stored))
}

/// What csrapproving's nodeclient recognizer accepts: the kubelet client signer, the usages
/// of a client certificate, O=system:nodes and CN=system:node:<name>, from a bootstrap
/// token (nodeclient) or from that node itself (selfnodeclient).
/// The usages 1.20's signer and approver want in a kubelet client CSR (sorted): exactly these.
const KUBELET_CLIENT_USAGES: [&str; 3] = ["client auth", "digital signature", "key encipherment"];

fn has_kubelet_client_usages(csr: &Value) -> bool {
    let mut usages: Vec<&str> = csr["spec"]["usages"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    usages.sort_unstable();
    usages == KUBELET_CLIENT_USAGES
}

fn is_node_client_csr(csr: &Value) -> bool {
    let spec = &csr["spec"];
    if spec["signerName"] != "kubernetes.io/kube-apiserver-client-kubelet" {
        return false;
    }
    if !has_kubelet_client_usages(csr) {
        return false;
    }
    let Some(pem) = spec["request"].as_str().and_then(|r| base64::engine::general_purpose::STANDARD.decode(r).ok()) else {
        return false;
    };
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(&pem) else { return false };
    let Ok((_, request)) = <x509_parser::certification_request::X509CertificationRequest as x509_parser::prelude::FromDer<_>>::from_der(&pem.contents) else {
        return false;
    };
    let subject = &request.certification_request_info.subject;
    let cn: Vec<&str> = subject.iter_common_name().filter_map(|a| a.as_str().ok()).collect();
    let org: Vec<&str> = subject.iter_organization().filter_map(|a| a.as_str().ok()).collect();
    let (cn, org) = match (cn.as_slice(), org.as_slice()) {
        ([cn], [org]) => (*cn, *org),
        _ => return false,
    };
    let groups: Vec<&str> = spec["groups"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let requester = spec["username"].as_str().unwrap_or_default();
    cn.starts_with("system:node:") && org == "system:nodes" && (groups.contains(&"system:bootstrappers") || requester == cn)
}

/// The CSR signing controller: an approved request for a kubelet client certificate gets
/// a certificate from the CA, valid for the signing duration or the CSR's shorter
/// expirationSeconds.
fn sign_if_approved(shared: &Shared, t: &Target, csr: Value) -> Result<Value, ApiError> {
    let conditions = csr["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let approved = conditions.iter().any(|c| c["type"] == "Approved" && c["status"] == "True");
    let denied = conditions.iter().any(|c| c["type"] == "Denied" || c["type"] == "Failed");
    if !approved || denied || csr["status"]["certificate"].is_string() {
        return Ok(csr);
    }
    if csr["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet" && !has_kubelet_client_usages(&csr) {
        // 1.20's signer: the CSR ends Approved,Failed.
        let mut conditions = conditions;
        conditions.push(json!({"type": "Failed", "status": "True", "reason": "SignerValidationFailure",
            "message": format!("usages did not match [{}]", KUBELET_CLIENT_USAGES.join(" ")), "lastUpdateTime": rest::now()}));
        return rest::patch(&shared.store, t, Some("status"), "application/merge-patch+json", json!({"status": {"conditions": conditions}}), &rest::admit_all);
    }
    let request = csr["spec"]["request"].as_str().unwrap_or_default();
    let pem = base64::engine::general_purpose::STANDARD.decode(request).map_err(|e| ApiError::new(422, "Invalid", format!("spec.request: {e}")))?;
    let pem = String::from_utf8(pem).map_err(|e| ApiError::new(422, "Invalid", format!("spec.request: {e}")))?;
    let mut params = rcgen::CertificateSigningRequestParams::from_pem(&pem).map_err(|e| ApiError::new(422, "Invalid", format!("spec.request: {e}")))?;
    let most = shared.signing_duration.lock().unwrap_or_else(|p| p.into_inner()).as_secs();
    let lifetime = csr["spec"]["expirationSeconds"].as_u64().map_or(most, |asked| asked.min(most));
    let now = std::time::SystemTime::now();
    params.params.not_before = now.into();
    params.params.not_after = (now + Duration::from_secs(lifetime)).into();
    let cert = params.signed_by(&shared.ca).map_err(|e| ApiError::new(500, "InternalError", e.to_string()))?;
    let chain = format!("{}{}", cert.pem(), shared.ca_pem);
    let encoded = base64::engine::general_purpose::STANDARD.encode(chain);
    rest::patch(&shared.store, t, Some("status"), "application/merge-patch+json", json!({"status": {"certificate": encoded}}), &rest::admit_all)
}

fn selectors_match(object: &Value, query: &BTreeMap<String, String>) -> Result<bool, ApiError> {
    if let Some(fields) = query.get("fieldSelector").filter(|f| !f.is_empty()) {
        for requirement in fields.split(',') {
            let (path, want, equal) = if let Some((k, v)) = requirement.split_once("!=") {
                (k, v, false)
            } else if let Some((k, v)) = requirement.split_once("==").or_else(|| requirement.split_once('=')) {
                (k, v, true)
            } else {
                return Err(ApiError::bad_request(format!("invalid field selector: {requirement}")));
            };
            let mut value = object;
            for part in path.trim().split('.') {
                value = &value[part];
            }
            let have = value.as_str().map(str::to_string).unwrap_or_else(|| if value.is_null() { String::new() } else { value.to_string() });
            if (have == want.trim()) != equal {
                return Ok(false);
            }
        }
    }
    if let Some(labels) = query.get("labelSelector").filter(|l| !l.is_empty()) {
        let selector = labkubelet::plugin::parse_selector(labels).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let have: BTreeMap<String, String> = object["metadata"]["labels"]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
            .unwrap_or_default();
        if !selector.matches(&have) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn list(shared: &Shared, r: &Resource, namespace: Option<&str>, query: &BTreeMap<String, String>) -> Result<Response, ApiError> {
    let (items, rv) = shared.store.list(r.plural, namespace);
    let mut kept = Vec::new();
    for item in items {
        if selectors_match(&item, query)? {
            kept.push(item);
        }
    }
    Ok(json_response(
        StatusCode::OK,
        json!({"kind": format!("{}List", r.kind), "apiVersion": r.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": kept}),
    ))
}

fn watch(shared: &Arc<Shared>, r: &'static Resource, namespace: Option<&str>, query: &BTreeMap<String, String>) -> Result<Response, ApiError> {
    let from = match query.get("resourceVersion").filter(|v| !v.is_empty()) {
        Some(v) => Some(v.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?),
        None => None,
    };
    selectors_match(&json!({}), query)?;
    let timeout = query.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).map(Duration::from_secs).unwrap_or(Duration::from_secs(1800));
    let (start, mut live) = shared.store.watch(r.plural, namespace, from);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::convert::Infallible>>(256);
    let namespace = namespace.map(str::to_string);
    let query = query.clone();
    tokio::spawn(async move {
        let line = |kind: &str, object: &Value| Ok(Bytes::from(format!("{}\n", json!({"type": kind, "object": object}))));
        let wanted = |e: &Event| {
            e.key.resource == r.plural && namespace.as_ref().is_none_or(|ns| &e.key.namespace == ns) && selectors_match(&e.object, &query).unwrap_or(false)
        };
        let mut last = match start {
            Start::Expired { oldest } => {
                let status = ApiError::new(410, "Expired", format!("too old resource version: {} ({})", from.unwrap_or_default(), oldest - 1)).status();
                let _ = tx.send(line("ERROR", &status)).await;
                return;
            }
            Start::Now(items, rv) => {
                for item in items.iter().filter(|i| selectors_match(i, &query).unwrap_or(false)) {
                    if tx.send(line("ADDED", item)).await.is_err() {
                        return;
                    }
                }
                rv
            }
            Start::After(events) => {
                let mut last = from.unwrap_or_default();
                for e in events {
                    last = e.rv;
                    if wanted(&e) && tx.send(line(e.change.as_str(), &e.object)).await.is_err() {
                        return;
                    }
                }
                last
            }
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                event = live.recv() => match event {
                    Ok(e) if e.rv > last => {
                        last = e.rv;
                        if wanted(&e) && tx.send(line(e.change.as_str(), &e.object)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // A watcher that cannot keep up is closed; the client relists.
                    Err(_) => return,
                },
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}
