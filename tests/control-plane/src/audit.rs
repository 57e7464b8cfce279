//! The API server's audit log: every request, who made it and how it was answered. The
//! suite reads it to prove that no request of a node, or of its bootstrap token, was
//! refused (403 Forbidden by an authorizer, 422 by admission or validation).

use serde::Deserialize;
use std::path::Path;

/// The audit policy: every request at the Metadata level, once answered.
pub const POLICY: &str = "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [\"RequestReceived\"]\nrules:\n- level: Metadata\n";

/// One audit event, the fields the suite reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub verb: String,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub user: User,
    #[serde(default)]
    pub response_status: Option<Status>,
    #[serde(default)]
    pub stage: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    #[serde(default)]
    pub username: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
}

impl AuditEvent {
    pub fn code(&self) -> u16 {
        self.response_status.as_ref().map_or(0, |s| s.code)
    }

    /// A request the server refused: 403 or 422.
    pub fn refused(&self) -> bool {
        matches!(self.code(), 403 | 422)
    }
}

impl std::fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let message = self.response_status.as_ref().and_then(|s| s.message.clone().or(s.reason.clone())).unwrap_or_default();
        write!(f, "{} {} {} -> {} {message}", self.user.username, self.verb, self.request_uri, self.code())
    }
}

/// Every completed request in the log at `path`.
pub fn read(path: &Path) -> Vec<AuditEvent> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|line| serde_json::from_str::<AuditEvent>(line).ok()).filter(|e| e.stage == "ResponseComplete" || e.stage == "Panic").collect()
}
