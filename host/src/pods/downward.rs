//! What the downward API tells a container about itself, as upstream's `pkg/fieldpath` and
//! `pkg/api/v1/resource` compute it for `fieldRef` and `resourceFieldRef`, in environment
//! variables and in `downwardAPI` volume files alike.

use super::resources::Quantity;
use k8s_openapi::api::core::v1::{Container, ObjectFieldSelector, Pod, ResourceFieldSelector};
use std::collections::BTreeMap;

/// What the pod's field paths read that its spec does not hold.
#[derive(Debug, Clone, Copy)]
pub struct Addresses<'a> {
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
}

/// The value of a `fieldRef`, as upstream's `podFieldSelectorRuntimeValue` and
/// `ExtractFieldPathAsString` give it; a whole label or annotation map (volumes only) is
/// `key="value"` lines in key order.
pub fn field_value(pod: &Pod, selector: &ObjectFieldSelector, at: Addresses) -> Result<String, String> {
    let path = selector.field_path.as_str();
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let subscript = |prefix: &str| path.strip_prefix(prefix).and_then(|rest| rest.strip_prefix("['")).and_then(|rest| rest.strip_suffix("']"));
    if let Some(key) = subscript("metadata.labels") {
        return Ok(meta.labels.as_ref().and_then(|l| l.get(key)).cloned().unwrap_or_default());
    }
    if let Some(key) = subscript("metadata.annotations") {
        return Ok(meta.annotations.as_ref().and_then(|a| a.get(key)).cloned().unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_else(|| "default".into()),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.hostIP" => at.host_ip.to_string(),
        "status.podIP" | "status.podIPs" => at.pod_ip.to_string(),
        other => return Err(format!("unsupported fieldPath: {other}")),
    })
}

/// `key="value"` lines in key order, as upstream's `FormatMap` writes a map to a file.
fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter().flatten().map(|(k, v)| format!("{k}={}", go_quote(v))).collect::<Vec<_>>().join("\n")
}

/// A string quoted as Go's `%q` quotes one.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value of a `resourceFieldRef`, as upstream's `ExtractContainerResourceValue` gives it:
/// rounded up to whole divisors (default 1); a limit the container does not set is the
/// node's allocatable, as `defaultPodLimitsForDownwardAPI` fills it in. `container` is the
/// one asking; the selector may name another of the pod.
pub fn resource_value(pod: &Pod, container: &Container, selector: &ResourceFieldSelector, allocatable: &BTreeMap<String, String>) -> Result<String, String> {
    let named = selector.container_name.as_deref().filter(|n| !n.is_empty());
    let target = match named {
        None => container,
        Some(name) => pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().chain(s.init_containers.iter().flatten()).find(|c| c.name == name))
            .ok_or_else(|| format!("container {name} not found"))?,
    };
    let (kind, resource) = selector.resource.split_once('.').ok_or_else(|| format!("unsupported container resource : {}", selector.resource))?;
    if !matches!(resource, "cpu" | "memory" | "ephemeral-storage") || !matches!(kind, "limits" | "requests") {
        return Err(format!("unsupported container resource : {}", selector.resource));
    }
    let parse = |text: &str| Quantity::parse(text).map_err(|e| e.to_string());
    let set = target.resources.as_ref().and_then(|r| if kind == "limits" { r.limits.as_ref() } else { r.requests.as_ref() }).and_then(|m| m.get(resource));
    let value = match (set, kind) {
        (Some(q), _) => parse(&q.0)?,
        (None, "limits") => allocatable.get(resource).map(|a| parse(a)).transpose()?.unwrap_or_default(),
        (None, _) => Quantity::default(),
    };
    let divisor = match selector.divisor.as_ref().map(|d| parse(&d.0)).transpose()? {
        Some(d) if !d.is_zero() => d,
        _ => parse("1")?,
    };
    let (amount, per) = if resource == "cpu" { (value.milli_value(), divisor.milli_value()) } else { (value.value(), divisor.value()) };
    if per <= 0 {
        return Err(format!("invalid divisor for {}", selector.resource));
    }
    Ok(amount.div_euclid(per).saturating_add(i64::from(amount.rem_euclid(per) != 0)).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity as Q;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "labels": {"b": "2", "a": "x\"y"}, "annotations": {"note": "hi"}},
            "spec": {"nodeName": "n1", "serviceAccountName": "default", "containers": [
                {"name": "app", "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "250m"}}},
                {"name": "side"},
            ]},
        }))
        .expect("a pod")
    }

    fn field(path: &str) -> Result<String, String> {
        let at = Addresses { pod_ip: "10.88.0.7", host_ip: "10.1.0.5" };
        field_value(&pod(), &ObjectFieldSelector { field_path: path.into(), api_version: None }, at)
    }

    #[test]
    fn field_paths_read_the_pod_and_its_addresses() {
        assert_eq!(field("metadata.name").as_deref(), Ok("web"));
        assert_eq!(field("metadata.namespace").as_deref(), Ok("shop"));
        assert_eq!(field("metadata.labels['b']").as_deref(), Ok("2"));
        assert_eq!(field("metadata.labels['none']").as_deref(), Ok(""));
        assert_eq!(field("metadata.labels").as_deref(), Ok("a=\"x\\\"y\"\nb=\"2\""), "sorted, Go-quoted");
        assert_eq!(field("spec.nodeName").as_deref(), Ok("n1"));
        assert_eq!(field("status.podIP").as_deref(), Ok("10.88.0.7"));
        assert_eq!(field("status.hostIP").as_deref(), Ok("10.1.0.5"));
        assert_eq!(field("spec.dnsPolicy"), Err("unsupported fieldPath: spec.dnsPolicy".into()));
    }

    #[test]
    fn resource_values_round_up_to_the_divisor_and_default_limits_to_allocatable() {
        let p = pod();
        let app = &p.spec.as_ref().unwrap().containers[0];
        let allocatable: BTreeMap<String, String> = [("cpu".to_string(), "4".to_string()), ("memory".to_string(), "8Gi".to_string())].into();
        let value = |resource: &str, divisor: Option<&str>, container: Option<&str>| {
            let s = ResourceFieldSelector { resource: resource.into(), divisor: divisor.map(|d| Q(d.into())), container_name: container.map(str::to_string) };
            resource_value(&p, app, &s, &allocatable)
        };
        assert_eq!(value("requests.cpu", None, None).as_deref(), Ok("1"), "250m rounds up to one core");
        assert_eq!(value("requests.cpu", Some("1m"), None).as_deref(), Ok("250"));
        assert_eq!(value("limits.memory", Some("1Mi"), None).as_deref(), Ok("64"));
        assert_eq!(value("limits.memory", None, None).as_deref(), Ok("67108864"));
        assert_eq!(value("limits.cpu", None, None).as_deref(), Ok("4"), "no limit: the node's allocatable");
        assert_eq!(value("requests.memory", None, Some("side")).as_deref(), Ok("0"));
        assert!(value("limits.gpu", None, None).is_err());
        assert!(value("limits.cpu", None, Some("ghost")).is_err());
    }
}
