//! Field-by-field comparison of two API objects as a user sees them: what varies from run to
//! run (ids, times, addresses, names) is masked, lists of named things are matched by name,
//! and every difference is checked against an allow-list that says why it is intended.

use serde_json::{Map, Value};
use std::fmt;

/// Fields whose values differ between any two nodes or runs. Their presence still counts:
/// a `startedAt` one side has and the other lacks is a difference.
const MASKED: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "startTime",
    "startedAt",
    "finishedAt",
    "lastTransitionTime",
    "lastProbeTime",
    "lastHeartbeatTime",
    "containerID",
    "imageID",
    "podIP",
    "podIPs",
    "hostIP",
    "hostIPs",
    "nodeName",
    "namespace",
    "bootID",
    "machineID",
    "systemUUID",
    "address",
    "Port",
];

/// The object with masked fields replaced by `"<masked>"`.
pub(crate) fn normalise(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let masked = map.iter().map(|(k, v)| (k.clone(), if MASKED.contains(&k.as_str()) { Value::from("<masked>") } else { normalise(v) }));
            Value::Object(masked.collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect()),
        other => other.clone(),
    }
}

/// One field that differs: its path (`status.conditions[Ready].reason`) and both values.
#[derive(Debug, Clone)]
pub(crate) struct Difference {
    pub path: String,
    pub reference: Option<Value>,
    pub lab: Option<Value>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| v.as_ref().map_or("(absent)".to_string(), Value::to_string);
        write!(f, "{}: kubelet {} | labkubelet {}", self.path, show(&self.reference), show(&self.lab))
    }
}

/// The differences between the real kubelet's object and the lab node's.
pub(crate) fn diff(reference: &Value, lab: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    walk("", Some(reference), Some(lab), &mut out);
    out
}

/// A list element's name, when the list is one of named things (containers, conditions).
fn key_of(item: &Value) -> Option<String> {
    ["name", "type"].iter().find_map(|k| item.get(k)?.as_str().map(str::to_string))
}

fn walk(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<Difference>) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                walk(&child, x.get(k), y.get(k), out);
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.iter().chain(y).all(|i| key_of(i).is_some()) => {
            let order = |list: &[Value]| list.iter().filter_map(key_of).collect::<Vec<_>>();
            let (ox, oy) = (order(x), order(y));
            let mut keys = ox.clone();
            keys.extend(oy.iter().filter(|k| !ox.contains(k)).cloned());
            for k in &keys {
                let find = |list: &[Value]| list.iter().find(|i| key_of(i).as_deref() == Some(k)).cloned();
                walk(&format!("{path}[{k}]"), find(x).as_ref(), find(y).as_ref(), out);
            }
            let common = |o: &[String], other: &[String]| o.iter().filter(|k| other.contains(k)).cloned().collect::<Vec<_>>();
            if common(&ox, &oy) != common(&oy, &ox) {
                out.push(Difference { path: format!("{path}(order)"), reference: Some(Value::from(ox)), lab: Some(Value::from(oy)) });
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                walk(&format!("{path}[{i}]"), Some(p), Some(q), out);
            }
        }
        (x, y) if x == y => {}
        (x, y) => out.push(Difference { path: path.to_string(), reference: x.cloned(), lab: y.cloned() }),
    }
}

/// A difference that is intended, and why.
pub(crate) struct Allowed {
    /// The comparison it applies to (`pod too-big`); `None` for every one.
    pub case: Option<&'static str>,
    /// A path as [`Difference::path`] spells it; `*` matches any one segment or list key.
    pub path: &'static str,
    pub why: &'static str,
}

impl Allowed {
    pub(crate) fn matches(&self, case: &str, path: &str) -> bool {
        self.case.is_none_or(|c| c == case) && self.matches_path(path)
    }

    fn matches_path(&self, path: &str) -> bool {
        let split = |p: &str| p.replace('[', ".[").split('.').map(str::to_string).collect::<Vec<_>>();
        let (pattern, actual) = (split(self.path), split(path));
        pattern.len() == actual.len() && pattern.iter().zip(&actual).all(|(p, a)| p == a || p == "*" || p == "[*]" && a.starts_with('['))
    }
}

/// Splits differences into those the allow-list explains (with the reason) and the rest.
pub(crate) fn explain<'a>(case: &str, differences: Vec<Difference>, allowed: &'a [Allowed]) -> (Vec<(Difference, &'a str)>, Vec<Difference>) {
    let mut explained = Vec::new();
    let mut unexplained = Vec::new();
    for d in differences {
        match allowed.iter().find(|a| a.matches(case, &d.path)) {
            Some(a) => explained.push((d, a.why)),
            None => unexplained.push(d),
        }
    }
    (explained, unexplained)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn named_lists_are_matched_by_name_and_masked_fields_by_presence() {
        let kubelet = json!({"status": {"podIP": "10.0.0.1", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "t1"},
            {"type": "PodScheduled", "status": "True"},
        ]}});
        let lab = json!({"status": {"podIP": "10.88.0.2", "conditions": [
            {"type": "Ready", "status": "False"},
        ]}});
        let found: Vec<String> = diff(&normalise(&kubelet), &normalise(&lab)).iter().map(|d| d.path.clone()).collect();
        assert_eq!(found, ["status.conditions[Ready].lastTransitionTime", "status.conditions[Ready].status", "status.conditions[PodScheduled]"]);
    }

    #[test]
    fn the_allow_list_matches_whole_segments() {
        let allowed = Allowed { case: None, path: "status.containerStatuses[*].image", why: "" };
        assert!(allowed.matches("pod a", "status.containerStatuses[app].image"));
        assert!(!allowed.matches("pod a", "status.containerStatuses[app].imageID"));
        assert!(!allowed.matches("pod a", "status.initContainerStatuses[app].image"));
        let only = Allowed { case: Some("pod a"), ..allowed };
        assert!(only.matches("pod a", "status.containerStatuses[app].image"));
        assert!(!only.matches("pod b", "status.containerStatuses[app].image"));
    }
}
