//! Why the agent has no client credentials, and whether trying again may help.

use super::SIGNER;
use std::time::Duration;

/// Why the agent has no client credentials. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{path}: {detail}")]
    Kubeconfig { path: String, detail: String },
    #[error("{kubeconfig} has no valid client certificate and no --bootstrap-kubeconfig was given to request one")]
    NoCredentials { kubeconfig: String },
    #[error("cannot write to the certificate folder {path}: {detail}; pass a writable --cert-dir")]
    CertDir { path: String, detail: String },
    #[error(
        "the API server rejected the bootstrap token (401 Unauthorized): it may be expired or deleted; create a new one (kubeadm token create) and update {bootstrap_kubeconfig}"
    )]
    Unauthorized { bootstrap_kubeconfig: String },
    #[error("the certificate signing request {name} was {verdict}: {reason}: {message}")]
    NotApproved { name: String, verdict: &'static str, reason: String, message: String },
    #[error("{doing}: {source}")]
    Api {
        doing: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("making the node's key or certificate request: {0}")]
    Key(String),
    #[error("certificate signing request {name} exists for signer {signer}, not {SIGNER}; delete it")]
    OtherSigner { name: String, signer: String },
    #[error("certificate signing request {name} was deleted while waiting for approval; it is requested again")]
    Deleted { name: String },
    #[error("no certificate within {0:?}")]
    NotIssued(Duration),
}

impl BootstrapError {
    /// Whether trying again later may succeed: the API server was busy, failing or out of
    /// reach, or the request went away or took too long. A refusal, a bad kubeconfig or
    /// certificate folder, or a CSR of another signer stays until someone acts.
    pub fn is_transient(&self) -> bool {
        match self {
            BootstrapError::Api { source, .. } => match source {
                kube::Error::Api(status) => status.code == 429 || status.code >= 500,
                kube::Error::HyperError(_) | kube::Error::Service(_) => true,
                _ => false,
            },
            BootstrapError::Deleted { .. } | BootstrapError::NotIssued(_) => true,
            _ => false,
        }
    }
}

pub(super) fn api(doing: &'static str) -> impl FnOnce(kube::Error) -> BootstrapError {
    move |source| BootstrapError::Api { doing, source }
}
