//! A container's environment, as upstream's `makeEnvironmentVariables` makes it at container
//! creation: `envFrom` first (ConfigMaps and Secrets, with a prefix, `optional` honoured),
//! then `env` in order (a value with `$(VAR)` references expanded against what is defined so
//! far, or `valueFrom` a ConfigMap or Secret key, a pod field or a container resource), then
//! the service link variables (`KUBERNETES_SERVICE_HOST`… always, the namespace's Services
//! while `enableServiceLinks`). A missing reference is the error the pod shows as
//! `CreateContainerConfigError`, in the kubelet's words. [`expand`] is upstream's
//! `third_party/forked/golang/expansion`, for `env` values and for command and args.

use super::api_objects::{ApiObjects, ObjectError};
use super::downward::{Addresses, field_value, resource_value};
use k8s_openapi::api::core::v1::{Container, EnvVarSource, Pod, Service};
use std::collections::{BTreeMap, HashMap};

/// A container's environment, in the order it is given to the runtime.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Environment {
    pub vars: Vec<(String, String)>,
    /// Warnings for the pod's events (`InvalidEnvironmentVariableNames`).
    pub warnings: Vec<String>,
}

/// What a container's environment is made from besides the pod and the API's objects.
#[derive(Debug, Clone, Copy)]
pub struct EnvInputs<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub addresses: Addresses<'a>,
    pub allocatable: &'a BTreeMap<String, String>,
}

/// Makes the container's environment, or says why it cannot be made (the message of
/// `CreateContainerConfigError`).
pub async fn make_environment(objects: &ApiObjects, inputs: EnvInputs<'_>) -> Result<Environment, String> {
    let EnvInputs { pod, container, .. } = inputs;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
    let links = pod.spec.as_ref().and_then(|s| s.enable_service_links).unwrap_or(true);
    let mut service_env = service_variables(&objects.services().await.map_err(|e| e.to_string())?, namespace, links);
    let mut env = Environment::default();
    let mut defined: HashMap<String, String> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut define = |defined: &mut HashMap<String, String>, name: String, value: String| {
        if defined.insert(name.clone(), value).is_none() {
            order.push(name);
        }
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.as_deref().unwrap_or("");
        let (source, data): (String, Vec<(String, String)>) = if let Some(r) = &from.config_map_ref {
            match skip_optional(objects.config_map(namespace, &r.name).await, r.optional)? {
                None => continue,
                Some(cm) => (format!("configMap {namespace}/{}", r.name), cm.data.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect()),
            }
        } else if let Some(r) = &from.secret_ref {
            match skip_optional(objects.secret(namespace, &r.name).await, r.optional)? {
                None => continue,
                Some(s) => {
                    let data = s.data.iter().flatten().map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned())).collect();
                    (format!("secret {namespace}/{}", r.name), data)
                }
            }
        } else {
            continue;
        };
        let mut invalid = Vec::new();
        for (key, value) in data {
            let name = format!("{prefix}{key}");
            if is_env_var_name(&name) {
                define(&mut defined, name, value);
            } else {
                invalid.push(name);
            }
        }
        if !invalid.is_empty() {
            invalid.sort();
            env.warnings.push(format!(
                "Keys [{}] from the EnvFrom {source} were skipped since they are considered invalid environment variable names.",
                invalid.join(", ")
            ));
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (var.value.as_deref().filter(|v| !v.is_empty()), &var.value_from) {
            (Some(v), _) => expand(v, |name| defined.get(name).or_else(|| service_env.get(name)).map(String::as_str)),
            (None, Some(from)) => match value_from(objects, &inputs, namespace, from).await? {
                Some(v) => v,
                None => continue,
            },
            (None, None) => String::new(),
        };
        service_env.remove(&var.name);
        define(&mut defined, var.name.clone(), value);
    }
    env.vars = order.into_iter().filter_map(|name| defined.remove(&name).map(|v| (name, v))).collect();
    env.vars.extend(service_env);
    Ok(env)
}

/// A variable's `valueFrom`: a field, a resource, a ConfigMap or Secret key (`None`: an
/// optional one that is missing, so the variable is not set), or why it cannot be had.
async fn value_from(objects: &ApiObjects, inputs: &EnvInputs<'_>, namespace: &str, from: &EnvVarSource) -> Result<Option<String>, String> {
    let (pod, container) = (inputs.pod, inputs.container);
    if let Some(r) = &from.field_ref {
        field_value(pod, r, inputs.addresses).map(Some)
    } else if let Some(r) = &from.resource_field_ref {
        resource_value(pod, container, r, inputs.allocatable).map(Some)
    } else if let Some(r) = &from.config_map_key_ref {
        let Some(cm) = skip_optional(objects.config_map(namespace, &r.name).await, r.optional)? else { return Ok(None) };
        match cm.data.as_ref().and_then(|d| d.get(&r.key)) {
            Some(v) => Ok(Some(v.clone())),
            None if r.optional == Some(true) => Ok(None),
            None => Err(format!("couldn't find key {} in ConfigMap {namespace}/{}", r.key, r.name)),
        }
    } else if let Some(r) = &from.secret_key_ref {
        let Some(s) = skip_optional(objects.secret(namespace, &r.name).await, r.optional)? else { return Ok(None) };
        match s.data.as_ref().and_then(|d| d.get(&r.key)) {
            Some(v) => Ok(Some(String::from_utf8_lossy(&v.0).into_owned())),
            None if r.optional == Some(true) => Ok(None),
            None => Err(format!("couldn't find key {} in Secret {namespace}/{}", r.key, r.name)),
        }
    } else {
        Ok(Some(String::new()))
    }
}

/// An object, `None` when it is missing and the reference is optional, or the error.
fn skip_optional<T>(got: Result<T, ObjectError>, optional: Option<bool>) -> Result<Option<T>, String> {
    match got {
        Ok(object) => Ok(Some(object)),
        Err(e) if e.is_not_found() && optional == Some(true) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Upstream's `IsEnvVarName`: `[-._a-zA-Z][-._a-zA-Z0-9]*`.
fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || "-._".contains(c)) && chars.all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
}

/// The service link variables a pod in `namespace` gets, as upstream's `getServiceEnvVarMap`
/// and `envvars.FromServices` make them: the `kubernetes` Service of `default` always, the
/// namespace's own Services while `links`; only Services with a cluster IP.
fn service_variables(services: &[Service], namespace: &str, links: bool) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for service in services {
        let (name, ns) = (service.metadata.name.as_deref().unwrap_or(""), service.metadata.namespace.as_deref().unwrap_or(""));
        let master = ns == "default" && name == "kubernetes";
        if !(master || links && ns == namespace) {
            continue;
        }
        let Some(spec) = &service.spec else { continue };
        let ip = spec.cluster_ip.as_deref().unwrap_or("");
        let ports = spec.ports.as_deref().unwrap_or_default();
        if ip.is_empty() || ip == "None" || ports.is_empty() {
            continue;
        }
        let prefix = name.replace('-', "_").to_uppercase();
        vars.insert(format!("{prefix}_SERVICE_HOST"), ip.to_string());
        vars.insert(format!("{prefix}_SERVICE_PORT"), ports[0].port.to_string());
        let host = |port: i32| if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
        for (i, p) in ports.iter().enumerate() {
            if let Some(port_name) = p.name.as_deref().filter(|n| !n.is_empty()) {
                vars.insert(format!("{prefix}_SERVICE_PORT_{}", port_name.replace('-', "_").to_uppercase()), p.port.to_string());
            }
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            let url = format!("{}://{}", proto.to_lowercase(), host(p.port));
            if i == 0 {
                vars.insert(format!("{prefix}_PORT"), url.clone());
            }
            let base = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            vars.insert(format!("{base}_PROTO"), proto.to_lowercase());
            vars.insert(format!("{base}_PORT"), p.port.to_string());
            vars.insert(format!("{base}_ADDR"), ip.to_string());
            vars.insert(base, url);
        }
    }
    vars
}

/// Expands `$(VAR)` references as upstream's `expansion.Expand`: a defined variable is
/// replaced, an undefined one is left as written, `$$` is a literal `$`, and a `$` that
/// begins no reference is kept.
pub fn expand<'v>(input: &str, lookup: impl Fn(&str) -> Option<&'v str>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let (mut checkpoint, mut cursor) = (0, 0);
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.extend_from_slice(&bytes[checkpoint..cursor]);
            let rest = &bytes[cursor + 1..];
            let advance = match rest[0] {
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match rest.iter().position(|&b| b == b')') {
                    Some(close) => {
                        let name = &input[cursor + 2..cursor + 1 + close];
                        match lookup(name) {
                            Some(value) => out.extend_from_slice(value.as_bytes()),
                            None => out.extend_from_slice(format!("$({name})").as_bytes()),
                        }
                        close + 1
                    }
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                other => {
                    out.extend_from_slice(&[b'$', other]);
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    out.extend_from_slice(&bytes[checkpoint.min(bytes.len())..]);
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// A container's command or args with `$(VAR)` references to its environment expanded, as
/// upstream's `ExpandContainerCommandAndArgs`.
pub fn expand_all(words: &[String], env: &[(String, String)]) -> Vec<String> {
    let vars: HashMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    words.iter().map(|w| expand(w, |name| vars.get(name).copied())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Upstream's `TestExpand` cases (third_party/forked/golang/expansion/expand_test.go).
    #[test]
    fn expansion_follows_upstreams_table() {
        let vars: HashMap<&str, &str> = [("VAR_A", "A"), ("VAR_B", "B"), ("VAR_C", "C"), ("VAR_REF", "$(VAR_A)"), ("VAR_EMPTY", "")].into();
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("foo\\$(VAR_C)bar", "foo\\Cbar"),
            ("foo\\\\$(VAR_C)bar", "foo\\\\Cbar"),
            ("$(VAR_A)$(VAR_B)$(VAR_C)", "ABC"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$$$(VAR_A)", "$$$(VAR_A)"),
            ("$$$$$$$(VAR_A)", "$$$A"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$(VAR_DNE)", "$(VAR_DNE)"),
            ("$(VAR_A", "$(VAR_A"),
            ("$VAR_A", "$VAR_A"),
            ("$", "$"),
            ("$$", "$"),
            ("$1", "$1"),
            ("$()", "$()"),
            ("foo$", "foo$"),
            ("vær$(VAR_A)ø$", "værAø$"),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, |n| vars.get(n).copied()), want, "{input}");
        }
    }

    #[test]
    fn service_links_name_every_port_and_skip_headless_services() {
        let services: Vec<Service> = serde_json::from_value(json!([
            {"metadata": {"name": "kubernetes", "namespace": "default"}, "spec": {"clusterIP": "10.0.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}},
            {"metadata": {"name": "my-db", "namespace": "shop"}, "spec": {"clusterIP": "10.0.0.9", "ports": [{"port": 5432}, {"name": "metrics", "port": 9187, "protocol": "TCP"}]}},
            {"metadata": {"name": "headless", "namespace": "shop"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}},
            {"metadata": {"name": "elsewhere", "namespace": "other"}, "spec": {"clusterIP": "10.0.0.3", "ports": [{"port": 80}]}},
        ]))
        .expect("services");
        let vars = service_variables(&services, "shop", true);
        assert_eq!(vars["KUBERNETES_SERVICE_HOST"], "10.0.0.1");
        assert_eq!(vars["KUBERNETES_SERVICE_PORT_HTTPS"], "443");
        assert_eq!(vars["KUBERNETES_PORT"], "tcp://10.0.0.1:443");
        assert_eq!(vars["MY_DB_SERVICE_PORT"], "5432");
        assert_eq!(vars["MY_DB_SERVICE_PORT_METRICS"], "9187");
        assert_eq!(vars["MY_DB_PORT_9187_TCP"], "tcp://10.0.0.9:9187");
        assert_eq!(vars["MY_DB_PORT_5432_TCP_ADDR"], "10.0.0.9");
        assert!(!vars.keys().any(|k| k.starts_with("HEADLESS") || k.starts_with("ELSEWHERE")), "{vars:?}");
        let without_links = service_variables(&services, "shop", false);
        assert!(without_links.contains_key("KUBERNETES_SERVICE_HOST") && !without_links.contains_key("MY_DB_SERVICE_HOST"));
    }

    #[test]
    fn env_var_names_are_checked_as_upstream_does() {
        for ok in ["A", "a_b", "-x", ".y", "A1.b-c"] {
            assert!(is_env_var_name(ok), "{ok}");
        }
        for bad in ["", "1A", "a b", "a=b", "ä"] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
    }

    /// A standalone node (no API server) resolves what needs no object and refuses, in the
    /// kubelet's words, what does.
    #[tokio::test]
    async fn values_fields_and_references_resolve_in_declaration_order() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "env": [
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "GREETING", "value": "hello $(POD) from $(APP) $(LATER)"},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "LATER", "value": "x"},
            ]}]},
        }))
        .expect("a pod");
        let objects = ApiObjects::new(None, crate::clock::Clock::new(), crate::pods::dns::ClusterDns::default());
        let container = &pod.spec.as_ref().unwrap().containers[0];
        let allocatable = BTreeMap::new();
        let inputs = EnvInputs { pod: &pod, container, addresses: Addresses { pod_ip: "10.88.0.2", host_ip: "10.1.0.5" }, allocatable: &allocatable };
        let made = make_environment(&objects, inputs).await;
        let env = made.expect("no object needed");
        let got: Vec<(&str, &str)> = env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, [("POD", "web"), ("GREETING", "hello web from $(APP) $(LATER)"), ("APP", "web"), ("LATER", "x")]);
        assert_eq!(expand_all(&["echo $(GREETING)".to_string()], &env.vars), ["echo hello web from $(APP) $(LATER)"]);

        // As upstream: without an API server even an optional reference cannot be resolved.
        let mut referring = pod.clone();
        let optional = serde_json::from_value(json!({"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k", "optional": true}}}));
        referring.spec.as_mut().unwrap().containers[0].env.as_mut().unwrap().push(optional.expect("an env var"));
        let container = &referring.spec.as_ref().unwrap().containers[0];
        let refused = make_environment(&objects, EnvInputs { pod: &referring, container, ..inputs }).await;
        assert_eq!(refused, Err("couldn't get configmap shop/cfg, no kubeClient defined".into()));
    }
}
