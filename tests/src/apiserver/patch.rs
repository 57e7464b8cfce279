//! The patch types a kubelet sends, with the API server's rules: JSON merge patch
//! (RFC 7386) and JSON patch (RFC 6902) from the json-patch crate, and strategic merge
//! patch with the merge keys of the fields a kubelet patches.
//!
//! Strategic merge patch is Kubernetes' own format, driven by `patchStrategy` and
//! `patchMergeKey` tags in the Go types; no Rust crate implements it. This covers the
//! directives the kubelet and kubectl emit: lists merged by key, `$patch: delete`,
//! `$setElementOrder/<field>`, `$deleteFromPrimitiveList/<field>`, `null` to remove.

use serde_json::{Map, Value};

/// How a list field merges under strategic merge patch.
enum ListMerge {
    /// Items are matched by this key.
    ByKey(&'static str),
    /// A list of primitives merged as a set.
    Set,
}

/// The `patchStrategy:"merge"` list fields of the types the double serves, by field name.
fn list_merge(field: &str) -> Option<ListMerge> {
    Some(match field {
        "conditions" | "addresses" => ListMerge::ByKey("type"),
        "ownerReferences" => ListMerge::ByKey("uid"),
        "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "env" | "volumesAttached" => ListMerge::ByKey("name"),
        "ports" => ListMerge::ByKey("containerPort"),
        "podIPs" | "hostIPs" => ListMerge::ByKey("ip"),
        "finalizers" => ListMerge::Set,
        _ => return None,
    })
}

/// Why a patch could not be applied (400 Bad Request, or 422 for JSON patch tests).
#[derive(Debug)]
pub struct PatchError(pub String);

pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| PatchError(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &ops).map_err(|e| PatchError(e.to_string()))
}

pub fn strategic_merge_patch(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => merge_object(t, p),
        (t, p) => {
            *t = p.clone();
            Ok(())
        }
    }
}

fn merge_object(target: &mut Map<String, Value>, patch: &Map<String, Value>) -> Result<(), PatchError> {
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = patch.clone();
        target.remove("$patch");
        return Ok(());
    }
    for (key, value) in patch {
        if key == "$patch" || key.starts_with("$setElementOrder/") || key.starts_with("$retainKeys") {
            continue;
        }
        if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (target.get_mut(field), value.as_array()) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        if value.is_null() {
            target.remove(key);
            continue;
        }
        match (target.get_mut(key), value) {
            (Some(Value::Object(t)), Value::Object(p)) => merge_object(t, p)?,
            (Some(Value::Array(t)), Value::Array(p)) => merge_list(key, t, p)?,
            // An absent merge list is merged into an empty one: its items are checked too.
            (None, Value::Array(p)) if list_merge(key).is_some() => {
                let mut merged = Vec::new();
                merge_list(key, &mut merged, p)?;
                target.insert(key.clone(), Value::Array(merged));
            }
            _ => {
                let mut fresh = value.clone();
                strip_directives(&mut fresh);
                target.insert(key.clone(), fresh);
            }
        }
    }
    for (key, order) in patch.iter().filter_map(|(k, v)| k.strip_prefix("$setElementOrder/").map(|f| (f, v))) {
        if let (Some(Value::Array(list)), Some(order), Some(ListMerge::ByKey(merge_key))) = (target.get_mut(key), order.as_array(), list_merge(key)) {
            let position = |item: &Value| order.iter().position(|o| o.get(merge_key) == item.get(merge_key)).unwrap_or(usize::MAX);
            list.sort_by_key(position);
        }
    }
    Ok(())
}

fn merge_list(field: &str, target: &mut Vec<Value>, patch: &[Value]) -> Result<(), PatchError> {
    match list_merge(field) {
        None => {
            *target = patch.to_vec();
            target.iter_mut().for_each(strip_directives);
        }
        Some(ListMerge::Set) => {
            for item in patch {
                if !target.contains(item) {
                    target.push(item.clone());
                }
            }
        }
        Some(ListMerge::ByKey(merge_key)) => {
            for item in patch {
                let id = item.get(merge_key).ok_or_else(|| PatchError(format!("map: {item} does not contain declared merge key: {merge_key}")))?;
                let found = target.iter().position(|t| t.get(merge_key) == Some(id));
                if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                    if let Some(i) = found {
                        target.remove(i);
                    }
                    continue;
                }
                match (found, item) {
                    (Some(i), Value::Object(p)) => {
                        if let Value::Object(t) = &mut target[i] {
                            merge_object(t, p)?;
                        }
                    }
                    _ => {
                        let mut fresh = item.clone();
                        strip_directives(&mut fresh);
                        target.push(fresh);
                    }
                }
            }
        }
    }
    Ok(())
}

/// New content carries no directives.
fn strip_directives(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|k, _| !k.starts_with('$'));
            map.values_mut().for_each(strip_directives);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_status_conditions_merge_by_type_as_the_kubelet_patches_them() {
        let mut node = json!({"status": {"conditions": [
            {"type": "MemoryPressure", "status": "False"},
            {"type": "Ready", "status": "False", "reason": "KubeletNotReady"}
        ], "images": [{"names": ["a"]}]}});
        let patch = json!({"status": {
            "$setElementOrder/conditions": [{"type": "Ready"}, {"type": "MemoryPressure"}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "images": [{"names": ["b"]}]
        }});
        strategic_merge_patch(&mut node, &patch).unwrap();
        assert_eq!(
            node,
            json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady"},
            {"type": "MemoryPressure", "status": "False"}
        ], "images": [{"names": ["b"]}]}})
        );
    }

    #[test]
    fn directives_delete_items_and_keys() {
        let mut obj = json!({"metadata": {"labels": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "1"}, {"type": "Hostname", "address": "h"}]}});
        let patch = json!({"metadata": {"labels": {"a": null, "c": "3"}, "$deleteFromPrimitiveList/finalizers": ["x"]},
            "status": {"addresses": [{"type": "Hostname", "$patch": "delete"}]}});
        strategic_merge_patch(&mut obj, &patch).unwrap();
        assert_eq!(
            obj,
            json!({"metadata": {"labels": {"b": "2", "c": "3"}, "finalizers": ["y"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "1"}]}})
        );
        let err = strategic_merge_patch(&mut obj, &json!({"status": {"conditions": [{"status": "True"}]}})).unwrap_err();
        assert!(err.0.contains("does not contain declared merge key: type"), "{}", err.0);
    }
}
