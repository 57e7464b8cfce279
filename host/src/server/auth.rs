//! Who may use a node's API, decided as the kubelet decides it (pkg/kubelet/server/auth.go):
//! authentication by a client certificate the cluster CA signed (CN user, O groups) or a
//! bearer token the API server vouches for (TokenReview); authorization by asking the API
//! server (SubjectAccessReview) about verb + `nodes/<subresource>` of this node. A standalone
//! node has no API server: it serves localhost only and lets anyone in.

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use kube::api::{Api, PostParams};

/// An authenticated user.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn anonymous() -> Self {
        User { name: "system:anonymous".into(), groups: vec!["system:unauthenticated".into()] }
    }

    /// The identity a client certificate proves: CN is the user, each O a group.
    pub fn from_certificate(der: &[u8]) -> Option<User> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
        let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
        Some(User { name, groups })
    }
}

/// What a request asks for, in the API server's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct Attributes {
    pub verb: &'static str,
    pub subresource: &'static str,
}

fn is_subpath(path: &str, root: &str) -> bool {
    let root = root.trim_end_matches('/');
    path == root || path.strip_prefix(root).is_some_and(|rest| rest.starts_with('/'))
}

/// The kubelet's mapping: `/stats/*` → stats, `/metrics/*` → metrics, `/logs/*` → log, the
/// rest (`/pods`, `/containerLogs`, `/healthz`, the lab's endpoints) → proxy.
pub fn attributes(method: &http::Method, path: &str) -> Attributes {
    let verb = match *method {
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "get",
    };
    let subresource = if is_subpath(path, "/stats/") {
        "stats"
    } else if is_subpath(path, "/metrics") {
        "metrics"
    } else if is_subpath(path, "/logs/") {
        "log"
    } else {
        "proxy"
    };
    Attributes { verb, subresource }
}

/// Why a request is refused.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// No credentials, or credentials nobody vouches for.
    #[error("Unauthorized")]
    Unauthenticated,
    /// The API server says no, in the kubelet's words.
    #[error("Forbidden (user={user}, verb={verb}, resource=nodes, subresource={subresource})")]
    Forbidden { user: String, verb: &'static str, subresource: &'static str },
    /// The API server could not be asked.
    #[error("Authorization error (user={user}, verb={verb}, resource=nodes, subresource={subresource})")]
    Error { user: String, verb: &'static str, subresource: &'static str },
}

/// How a node's API lets requests in.
#[derive(Clone)]
pub enum Access {
    /// The cluster decides: TokenReview and SubjectAccessReview through the node's client.
    Cluster { client: crate::api_client::connections::OnDemandClient },
    /// Standalone: localhost only, anyone allowed.
    Anonymous,
}

impl Access {
    /// Authenticates a request from its verified client certificate's user or its bearer
    /// token.
    pub async fn authenticate(&self, certificate_user: Option<User>, bearer: Option<&str>) -> Result<User, Refusal> {
        let client = match self {
            Access::Anonymous => return Ok(certificate_user.unwrap_or_else(User::anonymous)),
            Access::Cluster { client } => client,
        };
        if let Some(user) = certificate_user {
            return Ok(user);
        }
        let Some(token) = bearer else { return Err(Refusal::Unauthenticated) };
        let client = client.get().await.map_err(|e| {
            tracing::warn!("no client to ask the API server who calls: {e:#}");
            Refusal::Unauthenticated
        })?;
        let review = TokenReview { spec: TokenReviewSpec { token: Some(token.to_string()), ..Default::default() }, ..Default::default() };
        let reviewed = Api::<TokenReview>::all(client).create(&PostParams::default(), &review).await.map_err(|e| {
            tracing::warn!("TokenReview failed: {e}");
            Refusal::Unauthenticated
        })?;
        let status = reviewed.status.unwrap_or_default();
        match (status.authenticated, status.user) {
            (Some(true), Some(u)) => Ok(User { name: u.username.unwrap_or_default(), groups: u.groups.unwrap_or_default() }),
            _ => Err(Refusal::Unauthenticated),
        }
    }

    /// Asks whether `user` may do what the request asks on this node.
    pub async fn authorize(&self, user: &User, node: &str, attrs: &Attributes) -> Result<(), Refusal> {
        let Access::Cluster { client } = self else { return Ok(()) };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.name.clone()),
                groups: Some(user.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(attrs.verb.into()),
                    resource: Some("nodes".into()),
                    subresource: Some(attrs.subresource.into()),
                    name: Some(node.into()),
                    version: Some("v1".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let (verb, subresource) = (attrs.verb, attrs.subresource);
        let client = client.get().await.map_err(|e| {
            tracing::warn!("no client to ask the API server who may: {e:#}");
            Refusal::Error { user: user.name.clone(), verb, subresource }
        })?;
        match Api::<SubjectAccessReview>::all(client).create(&PostParams::default(), &review).await {
            Ok(r) if r.status.as_ref().is_some_and(|s| s.allowed) => Ok(()),
            Ok(_) => Err(Refusal::Forbidden { user: user.name.clone(), verb, subresource }),
            Err(e) => {
                tracing::warn!("SubjectAccessReview failed: {e}");
                Err(Refusal::Error { user: user.name.clone(), verb, subresource })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_the_kubelets_subresources() {
        let get = http::Method::GET;
        assert_eq!(attributes(&get, "/stats/summary").subresource, "stats");
        assert_eq!(attributes(&get, "/metrics").subresource, "metrics");
        assert_eq!(attributes(&get, "/metrics/cadvisor").subresource, "metrics");
        assert_eq!(attributes(&get, "/metricsx").subresource, "proxy");
        assert_eq!(attributes(&get, "/logs/syslog").subresource, "log");
        assert_eq!(attributes(&get, "/containerLogs/default/web/c").subresource, "proxy");
        assert_eq!(attributes(&http::Method::POST, "/trigger/crashloop/kill").verb, "create");
    }
}
