//! The agent's configuration file: a KubeletConfiguration (`kubelet.config.k8s.io/v1beta1`)
//! with the fields that apply to labkubelet. Any other field is an error that names it, so
//! a setting is never silently ignored. Command-line flags override the file, as with the
//! kubelet.

use k8s_openapi::api::core::v1::Taint;
use serde::{Deserialize, Deserializer};
use std::path::Path;
use std::time::Duration;

const API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";

/// The fields of a KubeletConfiguration that labkubelet uses.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletConfiguration {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    /// How often node status is computed (Go duration, e.g. `10s`).
    #[serde(default, deserialize_with = "go_duration")]
    pub node_status_update_frequency: Option<Duration>,
    /// The longest time between two node status writes (e.g. `5m0s`).
    #[serde(default, deserialize_with = "go_duration")]
    pub node_status_report_frequency: Option<Duration>,
    pub node_lease_duration_seconds: Option<i32>,
    /// The node's API client's rate limit (default 5 a second, a burst of 10; a negative QPS
    /// is none). The Lease and node status are not limited, as the kubelet's heartbeats are not.
    #[serde(rename = "kubeAPIQPS")]
    pub kube_api_qps: Option<i32>,
    #[serde(rename = "kubeAPIBurst")]
    pub kube_api_burst: Option<i32>,
    /// The event client's rate limit (default 5 a second, a burst of 10).
    #[serde(rename = "eventRecordQPS")]
    pub event_record_qps: Option<i32>,
    pub event_burst: Option<i32>,
    pub max_pods: Option<u32>,
    pub register_with_taints: Option<Vec<Taint>>,
    /// The HTTP API port.
    pub port: Option<i32>,
    /// `authentication.x509.clientCAFile`: the CA client certificates are checked against.
    pub authentication: Option<Authentication>,
    /// A static pod manifest file or folder.
    pub static_pod_path: Option<std::path::PathBuf>,
    /// How often the static pod path is read (e.g. `20s`).
    #[serde(default, deserialize_with = "go_duration")]
    pub file_check_frequency: Option<Duration>,
    /// A URL that serves static pods (a Pod or a PodList).
    #[serde(rename = "staticPodURL")]
    pub static_pod_url: Option<String>,
    /// Headers sent with the static pod URL: a header name to its values.
    #[serde(rename = "staticPodURLHeader")]
    pub static_pod_url_header: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// How often the static pod URL is fetched (e.g. `20s`).
    #[serde(default, deserialize_with = "go_duration")]
    pub http_check_frequency: Option<Duration>,
    /// Hard eviction thresholds: a signal to what must stay available (`memory.available:
    /// 100Mi`, `nodefs.available: 10%`); replaces the defaults.
    pub eviction_hard: Option<std::collections::BTreeMap<String, String>>,
    /// How long a pressure condition stays after its threshold is no longer met (`5m0s`).
    #[serde(default, deserialize_with = "go_duration")]
    pub eviction_pressure_transition_period: Option<Duration>,
}

/// `authentication` in a KubeletConfiguration: only the client CA applies.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authentication {
    pub x509: Option<X509Authentication>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct X509Authentication {
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<std::path::PathBuf>,
}

fn go_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map(Some).map_err(|e| serde::de::Error::custom(format!("{text:?} is not a duration like 10s or 5m0s: {e}")))
}

/// A configuration file that cannot be used; the message names the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {detail}")]
pub struct ConfigError {
    pub path: String,
    pub detail: String,
}

impl KubeletConfiguration {
    /// `authentication.x509.clientCAFile`, if set.
    pub fn client_ca_file(&self) -> Option<std::path::PathBuf> {
        self.authentication.as_ref()?.x509.as_ref()?.client_ca_file.clone()
    }

    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let fail = |detail: String| ConfigError { path: path.display().to_string(), detail };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        // The path names the field for every error, custom ones included.
        let config: KubeletConfiguration = serde_path_to_error::deserialize(serde_yaml_ng::Deserializer::from_str(&text)).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            fail(if path == "." || inner.contains(&format!("`{path}`")) { inner } else { format!("{path}: {inner}") })
        })?;
        config.validate().map_err(fail)?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(v) = self.api_version.as_deref().filter(|v| *v != API_VERSION) {
            return Err(format!("apiVersion: {v:?} is not supported; use {API_VERSION}"));
        }
        if let Some(k) = self.kind.as_deref().filter(|k| *k != "KubeletConfiguration") {
            return Err(format!("kind: {k:?} is not supported; use KubeletConfiguration"));
        }
        if self.node_lease_duration_seconds.is_some_and(|s| s <= 0) {
            return Err("nodeLeaseDurationSeconds: must be greater than 0".into());
        }
        if self.max_pods == Some(0) {
            return Err("maxPods: must be greater than 0".into());
        }
        if self.port.is_some_and(|p| !(1..=65535).contains(&p)) {
            return Err("port: must be between 1 and 65535".into());
        }
        if self.http_check_frequency.is_some_and(|d| d.is_zero()) {
            return Err("httpCheckFrequency: must be greater than 0".into());
        }
        if let Some(url) = self.static_pod_url.as_deref().filter(|u| !(u.starts_with("http://") || u.starts_with("https://"))) {
            return Err(format!("staticPodURL: {url:?} is not an http:// or https:// URL"));
        }
        if self.file_check_frequency.is_some_and(|d| d.is_zero()) {
            return Err("fileCheckFrequency: must be greater than 0".into());
        }
        if self.node_status_update_frequency.is_some_and(|d| d.is_zero()) {
            return Err("nodeStatusUpdateFrequency: must be greater than 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<KubeletConfiguration, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, text).unwrap();
        KubeletConfiguration::load(&path).map_err(|e| ConfigError { path: "config.yaml".into(), detail: e.detail })
    }

    #[test]
    fn reads_the_fields_that_apply() {
        let c = load("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nnodeStatusUpdateFrequency: 10s\nnodeStatusReportFrequency: 5m0s\nnodeLeaseDurationSeconds: 40\nmaxPods: 50\nstaticPodPath: /etc/kubernetes/manifests\nfileCheckFrequency: 5s\nstaticPodURL: http://lab/pods\nstaticPodURLHeader:\n  Authorization: [\"Bearer x\"]\nhttpCheckFrequency: 30s\nregisterWithTaints:\n- key: lab\n  value: \"yes\"\n  effect: NoSchedule\n").unwrap();
        assert_eq!(c.node_status_update_frequency, Some(Duration::from_secs(10)));
        assert_eq!(c.node_status_report_frequency, Some(Duration::from_secs(300)));
        assert_eq!((c.node_lease_duration_seconds, c.max_pods), (Some(40), Some(50)));
        assert_eq!(c.register_with_taints.unwrap()[0].effect, "NoSchedule");
        assert_eq!(c.static_pod_path.as_deref(), Some(Path::new("/etc/kubernetes/manifests")));
        assert_eq!(c.file_check_frequency, Some(Duration::from_secs(5)));
        assert_eq!((c.static_pod_url.as_deref(), c.http_check_frequency), (Some("http://lab/pods"), Some(Duration::from_secs(30))));
        assert_eq!(c.static_pod_url_header.unwrap()["Authorization"], ["Bearer x"]);
        let c = load("kubeAPIQPS: 50\nkubeAPIBurst: 100\neventRecordQPS: -1\neventBurst: 20\n").unwrap();
        assert_eq!((c.kube_api_qps, c.kube_api_burst, c.event_record_qps, c.event_burst), (Some(50), Some(100), Some(-1), Some(20)));
    }

    #[test]
    fn errors_name_the_field() {
        let e = load("cgroupDriver: systemd\n").unwrap_err().to_string();
        assert!(e.starts_with("config.yaml: unknown field `cgroupDriver`"), "{e}");
        let e = load("nodeStatusUpdateFrequency: often\n").unwrap_err().to_string();
        assert!(e.contains("nodeStatusUpdateFrequency") && e.contains("\"often\" is not a duration"), "{e}");
        let e = load("nodeLeaseDurationSeconds: 0\n").unwrap_err().to_string();
        assert_eq!(e, "config.yaml: nodeLeaseDurationSeconds: must be greater than 0");
        let e = load("kind: Pod\n").unwrap_err().to_string();
        assert_eq!(e, "config.yaml: kind: \"Pod\" is not supported; use KubeletConfiguration");
        let e = load("maxPods: many\n").unwrap_err().to_string();
        assert!(e.contains("maxPods"), "{e}");
    }
}
