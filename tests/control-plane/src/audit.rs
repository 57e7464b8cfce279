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

    /// A 403 on reading one Secret or ConfigMap: what the node authorizer answers until its
    /// graph has the pod that names the object.
    pub fn is_graph_race_candidate(&self) -> bool {
        let kind = self.request_uri.split('?').next().unwrap_or_default().rsplit('/').nth(1).unwrap_or_default();
        self.code() == 403 && self.verb == "get" && matches!(kind, "secrets" | "configmaps")
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

/// The requests of these users that were refused (403 or 422), less the node authorizer's
/// race: a node may read a new pod's Secret or ConfigMap before the authorizer's graph links
/// the pod to the node ("no relationship found", which a real kubelet sees too). Such a 403
/// is not counted when a later read of the same object by the same user was let through.
pub fn refused(events: &[AuditEvent], users: &[&str]) -> Vec<AuditEvent> {
    let mine: Vec<&AuditEvent> = events.iter().filter(|e| users.contains(&e.user.username.as_str())).collect();
    let healed = |i: usize, e: &AuditEvent| {
        e.is_graph_race_candidate()
            && mine[i + 1..].iter().any(|later| later.user.username == e.user.username && later.request_uri == e.request_uri && later.code() != 403)
    };
    mine.iter().enumerate().filter(|(i, e)| e.refused() && !healed(*i, e)).map(|(_, e)| (*e).clone()).collect()
}

/// Every completed request in the log at `path`.
pub fn read(path: &Path) -> Vec<AuditEvent> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|line| serde_json::from_str::<AuditEvent>(line).ok()).filter(|e| e.stage == "ResponseComplete" || e.stage == "Panic").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(user: &str, verb: &str, uri: &str, code: u16) -> AuditEvent {
        AuditEvent {
            verb: verb.into(),
            request_uri: uri.into(),
            user: User { username: user.into() },
            response_status: Some(Status { code, message: None, reason: None }),
            stage: "ResponseComplete".into(),
        }
    }

    const SECRET: &str = "/api/v1/namespaces/default/secrets/db";

    #[test]
    fn a_secret_read_refused_then_let_through_is_the_graph_race() {
        let events = [event("system:node:a", "get", SECRET, 403), event("system:node:a", "get", SECRET, 200)];
        assert!(refused(&events, &["system:node:a"]).is_empty());
        let not_found_later = [event("system:node:a", "get", SECRET, 403), event("system:node:a", "get", SECRET, 404)];
        assert!(refused(&not_found_later, &["system:node:a"]).is_empty());
    }

    #[test]
    fn a_refusal_never_let_through_or_of_another_kind_counts() {
        let never = [event("system:node:a", "get", SECRET, 403), event("system:node:a", "get", SECRET, 403)];
        assert_eq!(refused(&never, &["system:node:a"]).len(), 2);
        let other_user = [event("system:node:a", "get", SECRET, 403), event("system:node:b", "get", SECRET, 200)];
        assert_eq!(refused(&other_user, &["system:node:a", "system:node:b"]).len(), 1);
        let before = [event("system:node:a", "get", SECRET, 200), event("system:node:a", "get", SECRET, 403)];
        assert_eq!(refused(&before, &["system:node:a"]).len(), 1);
        let node = "/api/v1/nodes/a";
        let patch = [event("system:node:a", "patch", node, 403), event("system:node:a", "patch", node, 200)];
        assert_eq!(refused(&patch, &["system:node:a"]).len(), 1);
        let invalid = [event("system:node:a", "get", SECRET, 422), event("system:node:a", "get", SECRET, 200)];
        assert_eq!(refused(&invalid, &["system:node:a"]).len(), 1);
    }
}
