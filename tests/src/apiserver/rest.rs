//! The REST semantics of kube-apiserver for the resources a kubelet uses: what each verb
//! does to the store, status subresources, preconditions, graceful pod deletion, and the
//! errors as `Status` objects with the real reasons and codes.

use super::patch::{json_patch, merge_patch, strategic_merge_patch};
use super::store::{Key, Store};
use serde_json::{Value, json};

/// A resource the double serves.
#[derive(Debug)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    /// Has a status subresource: the main resource ignores status, `/status` takes only status.
    pub status: bool,
    /// Status set on create is kept (nodes), or reset (pods, CSRs).
    pub status_on_create: bool,
}

pub const RESOURCES: &[Resource] = &[
    Resource { group: "", version: "v1", plural: "nodes", kind: "Node", namespaced: false, status: true, status_on_create: true },
    Resource { group: "", version: "v1", plural: "pods", kind: "Pod", namespaced: true, status: true, status_on_create: false },
    Resource { group: "", version: "v1", plural: "events", kind: "Event", namespaced: true, status: false, status_on_create: true },
    Resource { group: "", version: "v1", plural: "namespaces", kind: "Namespace", namespaced: false, status: true, status_on_create: false },
    Resource { group: "", version: "v1", plural: "configmaps", kind: "ConfigMap", namespaced: true, status: false, status_on_create: true },
    Resource { group: "", version: "v1", plural: "secrets", kind: "Secret", namespaced: true, status: false, status_on_create: true },
    Resource { group: "", version: "v1", plural: "services", kind: "Service", namespaced: true, status: true, status_on_create: true },
    Resource { group: "coordination.k8s.io", version: "v1", plural: "leases", kind: "Lease", namespaced: true, status: false, status_on_create: true },
    Resource {
        group: "certificates.k8s.io",
        version: "v1",
        plural: "certificatesigningrequests",
        kind: "CertificateSigningRequest",
        namespaced: false,
        status: true,
        status_on_create: false,
    },
];

impl Resource {
    pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.to_string() } else { format!("{}/{}", self.group, self.version) }
    }

    pub fn group_resource(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }
}

/// An API error: an HTTP code and the `Status` object the real server sends.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: Value::Null }
    }

    pub fn not_found(r: &Resource, name: &str) -> Self {
        ApiError { details: json!({"name": name, "kind": r.plural}), ..ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", r.group_resource())) }
    }

    fn already_exists(r: &Resource, name: &str) -> Self {
        ApiError {
            details: json!({"name": name, "kind": r.plural}),
            ..ApiError::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", r.group_resource()))
        }
    }

    fn conflict(r: &Resource, name: &str, why: &str) -> Self {
        ApiError {
            details: json!({"name": name, "kind": r.plural}),
            ..ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on {} \"{name}\": {why}", r.group_resource()))
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if !self.details.is_null() {
            status["details"] = self.details.clone();
        }
        status
    }
}

/// How an object is addressed in a request.
pub struct Target<'a> {
    pub resource: &'static Resource,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl Target<'_> {
    fn key(&self) -> Key {
        Key { resource: self.resource.plural, namespace: self.namespace.to_string(), name: self.name.to_string() }
    }
}

pub fn now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
    rfc3339(secs)
}

/// Seconds since the epoch as the API's second-precision RFC 3339 time.
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let (h, m, s) = ((secs % 86_400) / 3600, (secs % 3600) / 60, secs % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

fn uid() -> String {
    let n: u128 = rand_u128();
    let h = format!("{n:032x}");
    format!("{}-{}-4{}-a{}-{}", &h[0..8], &h[8..12], &h[13..16], &h[17..20], &h[20..32])
}

fn rand_u128() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let mut out = 0u128;
    for _ in 0..2 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(out);
        out = (out << 64) | u128::from(h.finish());
    }
    out
}

fn rv_of(object: &Value) -> Option<&str> {
    object["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty())
}

/// POST: creates an object; the name may come from `generateName`.
/// Admission control for one write: the stored object (none on create) and what it becomes
/// (none on delete); an error refuses the write.
pub type Admission<'a> = &'a dyn Fn(Option<&Value>, Option<&Value>) -> Result<(), ApiError>;

/// Admits every write.
pub fn admit_all(_: Option<&Value>, _: Option<&Value>) -> Result<(), ApiError> {
    Ok(())
}

pub fn create(store: &Store, resource: &'static Resource, namespace: &str, mut body: Value, admission: Admission) -> Result<Value, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the body of the request was not a JSON object"));
    }
    let meta = body["metadata"].as_object().cloned().unwrap_or_default();
    if let Some(ns) = meta.get("namespace").and_then(Value::as_str)
        && resource.namespaced
        && ns != namespace
    {
        return Err(ApiError::bad_request("the namespace of the provided object does not match the namespace sent on the request"));
    }
    let name = match (meta.get("name").and_then(Value::as_str), meta.get("generateName").and_then(Value::as_str)) {
        (Some(n), _) if !n.is_empty() => n.to_string(),
        (_, Some(prefix)) => format!("{prefix}{}", &format!("{:x}", rand_u128())[..5]),
        _ => {
            return Err(ApiError::new(
                422,
                "Invalid",
                format!("{} \"\" is invalid: metadata.name: Required value: name or generateName is required", resource.kind),
            ));
        }
    };
    body["apiVersion"] = json!(resource.api_version());
    body["kind"] = json!(resource.kind);
    body["metadata"]["name"] = json!(name);
    if resource.namespaced {
        body["metadata"]["namespace"] = json!(namespace);
    }
    body["metadata"]["uid"] = json!(uid());
    body["metadata"]["creationTimestamp"] = json!(now());
    if resource.status && !resource.status_on_create {
        body["status"] = if resource.plural == "pods" { json!({"phase": "Pending"}) } else { json!({}) };
    }
    let target = Target { resource, namespace, name: &name };
    store
        .change(&target.key(), |current, _| match current {
            Some(_) => Err(ApiError::already_exists(resource, &name)),
            None => {
                admission(None, Some(&body))?;
                Ok(Some(body))
            }
        })
        .map(|o| o.unwrap_or_default())
}

/// PUT on the object or its `/status` (or a CSR's `/approval`).
pub fn update(store: &Store, t: &Target, subresource: Option<&str>, body: Value, admission: Admission) -> Result<Value, ApiError> {
    let wanted_rv = rv_of(&body).map(str::to_string);
    store
        .change(&t.key(), |current, _| {
            let current = current.ok_or_else(|| ApiError::not_found(t.resource, t.name))?;
            if let Some(rv) = &wanted_rv
                && Some(rv.as_str()) != rv_of(current)
            {
                return Err(ApiError::conflict(
                    t.resource,
                    t.name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            if body["metadata"]["uid"].as_str().is_some_and(|u| Some(u) != current["metadata"]["uid"].as_str()) {
                return Err(ApiError::conflict(t.resource, t.name, "Precondition failed: UID in precondition does not match the UID in the object"));
            }
            let next = admit(t.resource, subresource, current, body);
            admission(Some(current), Some(&next))?;
            Ok(Some(next))
        })
        .map(|o| o.unwrap_or_default())
}

/// PATCH with the content type's semantics, then the same field rules as an update.
pub fn patch(store: &Store, t: &Target, subresource: Option<&str>, content_type: &str, patch: Value, admission: Admission) -> Result<Value, ApiError> {
    store
        .change(&t.key(), |current, _| {
            let current = current.ok_or_else(|| ApiError::not_found(t.resource, t.name))?;
            let mut next = current.clone();
            match content_type {
                "application/merge-patch+json" => merge_patch(&mut next, &patch),
                "application/strategic-merge-patch+json" => {
                    strategic_merge_patch(&mut next, &patch).map_err(|e| ApiError::bad_request(e.0))?
                }
                "application/json-patch+json" => json_patch(&mut next, &patch).map_err(|e| ApiError::new(422, "Invalid", e.0))?,
                other => return Err(ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json; got {other}"))),
            }
            // A patch that names a resourceVersion or uid makes it a precondition.
            if let Some(rv) = patch["metadata"]["resourceVersion"].as_str()
                && Some(rv) != rv_of(current) {
                    return Err(ApiError::conflict(t.resource, t.name, "the object has been modified; please apply your changes to the latest version and try again"));
                }
            if let Some(uid) = patch["metadata"]["uid"].as_str()
                && Some(uid) != current["metadata"]["uid"].as_str() {
                    let has = current["metadata"]["uid"].as_str().unwrap_or_default();
                    return Err(ApiError::conflict(t.resource, t.name, &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {has}")));
                }
            let next = admit(t.resource, subresource, current, next);
            admission(Some(current), Some(&next))?;
            Ok(Some(next))
        })
        .map(|o| o.unwrap_or_default())
}

/// POST `pods/<name>/binding`, as the scheduler binds a pod: sets spec.nodeName (once) and
/// the PodScheduled condition, as the API server's binding storage does.
pub fn bind(store: &Store, t: &Target, binding: &Value) -> Result<(), ApiError> {
    let node = binding["target"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::new(422, "Invalid", "Binding.target.name: Required value"))?
        .to_string();
    store.change(&t.key(), |current, _| {
        let current = current.ok_or_else(|| ApiError::not_found(t.resource, t.name))?;
        if let Some(has) = current["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            return Err(ApiError::conflict(t.resource, t.name, &format!("pod {} is already assigned to node \"{has}\"", t.name)));
        }
        let mut next = current.clone();
        next["spec"]["nodeName"] = json!(node);
        let mut conditions: Vec<Value> = next["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conditions.retain(|c| c["type"] != "PodScheduled");
        conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()}));
        next["status"]["conditions"] = json!(conditions);
        Ok(Some(next))
    })?;
    Ok(())
}

/// What a write may change: the main resource keeps the stored status, `/status` keeps
/// everything but status, `/approval` only the conditions. Identity fields never change.
fn admit(r: &Resource, subresource: Option<&str>, current: &Value, mut next: Value) -> Value {
    match subresource {
        Some("status") => {
            let status = next["status"].take();
            next = current.clone();
            next["status"] = status;
        }
        Some("approval") => {
            let conditions = next["status"]["conditions"].take();
            next = current.clone();
            next["status"]["conditions"] = conditions;
        }
        _ if r.status => next["status"] = current["status"].clone(),
        _ => {}
    }
    for field in ["uid", "name", "namespace", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"] {
        match current["metadata"].get(field) {
            Some(v) => next["metadata"][field] = v.clone(),
            None => {
                if let Some(meta) = next["metadata"].as_object_mut() {
                    meta.remove(field);
                }
            }
        }
    }
    next["apiVersion"] = json!(r.api_version());
    next["kind"] = json!(r.kind);
    next
}

/// DELETE with DeleteOptions: preconditions, and the graceful deletion of pods bound to a
/// node (deletionTimestamp set, the kubelet finishes the job with grace 0). Finalizers keep
/// an object until they are removed.
pub fn delete(store: &Store, t: &Target, options: &Value, admission: Admission) -> Result<(Value, bool), ApiError> {
    let mut gone = false;
    let result = store.change(&t.key(), |current, _| {
        let current = current.ok_or_else(|| ApiError::not_found(t.resource, t.name))?;
        admission(Some(current), None)?;
        let pre = &options["preconditions"];
        if let Some(uid) = pre["uid"].as_str() {
            let has = current["metadata"]["uid"].as_str().unwrap_or_default();
            if uid != has {
                return Err(ApiError::conflict(t.resource, t.name, &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {has}")));
            }
        }
        if let Some(rv) = pre["resourceVersion"].as_str() {
            let has = rv_of(current).unwrap_or_default();
            if rv != has {
                return Err(ApiError::conflict(
                    t.resource,
                    t.name,
                    &format!("Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {has}"),
                ));
            }
        }
        let grace = options["gracePeriodSeconds"].as_i64().or_else(|| current["spec"]["terminationGracePeriodSeconds"].as_i64()).unwrap_or(30);
        let bound = current["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
        let terminal = matches!(current["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        let graceful = t.resource.plural == "pods" && bound && !terminal && grace > 0;
        let finalizers = current["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if graceful || finalizers {
            let mut next = current.clone();
            if next["metadata"]["deletionTimestamp"].is_null() {
                let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
                let at = if graceful { secs + grace.unsigned_abs() } else { secs };
                next["metadata"]["deletionTimestamp"] = json!(rfc3339(at));
                next["metadata"]["deletionGracePeriodSeconds"] = json!(if graceful { grace } else { 0 });
            }
            return Ok(Some(next));
        }
        gone = true;
        Ok(None)
    })?;
    Ok((result.unwrap_or_default(), gone))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_at_second_precision() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
