//! `/metrics/resource` (pkg/kubelet/metrics/collectors/resource_metrics.go): the Summary's
//! CPU and memory as the Prometheus series metrics-server 0.4+ reads, each stamped with the
//! time its figure was taken.

use super::summary::{CpuStats, MemoryStats, Summary};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};

/// The families of `summary`, in the kubelet's order, labels sorted as Go's client sorts them.
/// `scrape_error` is always 0: what the runtime does not report is modelled, never missing.
pub fn families(summary: &Summary) -> Vec<MetricFamily> {
    let mut node_cpu = family("node_cpu_usage_seconds_total", "Cumulative cpu time consumed by the node in core-seconds", MetricType::COUNTER);
    let mut node_memory = family("node_memory_working_set_bytes", "Current working set of the node in bytes", MetricType::GAUGE);
    let mut container_cpu = family("container_cpu_usage_seconds_total", "Cumulative cpu time consumed by the container in core-seconds", MetricType::COUNTER);
    let mut container_memory = family("container_memory_working_set_bytes", "Current working set of the container in bytes", MetricType::GAUGE);
    let mut pod_cpu = family("pod_cpu_usage_seconds_total", "Cumulative cpu time consumed by the pod in core-seconds", MetricType::COUNTER);
    let mut pod_memory = family("pod_memory_working_set_bytes", "Current working set of the pod in bytes", MetricType::GAUGE);
    let mut scrape_error = family("scrape_error", "1 if there was an error while getting container metrics, 0 otherwise", MetricType::GAUGE);
    push_cpu(&mut node_cpu, summary.node.cpu.as_ref(), &[]);
    push_memory(&mut node_memory, summary.node.memory.as_ref(), &[]);
    for pod in &summary.pods {
        let (name, namespace) = (pod.pod_ref.name.as_str(), pod.pod_ref.namespace.as_str());
        for c in &pod.containers {
            let labels = [("container", c.name.as_str()), ("namespace", namespace), ("pod", name)];
            push_cpu(&mut container_cpu, c.cpu.as_ref(), &labels);
            push_memory(&mut container_memory, c.memory.as_ref(), &labels);
        }
        push_cpu(&mut pod_cpu, pod.cpu.as_ref(), &[("namespace", namespace), ("pod", name)]);
        push_memory(&mut pod_memory, pod.memory.as_ref(), &[("namespace", namespace), ("pod", name)]);
    }
    let mut gauge = Gauge::default();
    gauge.set_value(0.0);
    let mut zero = Metric::default();
    zero.set_gauge(gauge);
    scrape_error.mut_metric().push(zero);
    let all = [node_cpu, node_memory, container_cpu, container_memory, pod_cpu, pod_memory, scrape_error];
    all.into_iter().filter(|f| !f.get_metric().is_empty()).collect()
}

/// The text the endpoint serves.
pub fn render(summary: &Summary) -> String {
    let mut out = String::new();
    match prometheus::TextEncoder::new().encode_utf8(&families(summary), &mut out) {
        Ok(()) => out,
        Err(e) => format!("# error encoding metrics: {e}\n"),
    }
}

fn family(name: &str, help: &str, kind: MetricType) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(format!("[ALPHA] {help}"));
    f.set_field_type(kind);
    f
}

fn metric(labels: &[(&str, &str)], at: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Metric {
    let mut m = Metric::default();
    m.set_label(
        labels
            .iter()
            .map(|(k, v)| {
                let mut pair = LabelPair::default();
                pair.set_name(k.to_string());
                pair.set_value(v.to_string());
                pair
            })
            .collect(),
    );
    m.set_timestamp_ms(at.0.as_millisecond());
    m
}

fn push_cpu(f: &mut MetricFamily, cpu: Option<&CpuStats>, labels: &[(&str, &str)]) {
    let Some((cpu, used)) = cpu.and_then(|c| Some((c, c.usage_core_nano_seconds?))) else { return };
    let mut counter = Counter::default();
    counter.set_value(used as f64 / 1e9);
    let mut m = metric(labels, &cpu.time);
    m.set_counter(counter);
    f.mut_metric().push(m);
}

fn push_memory(f: &mut MetricFamily, memory: Option<&MemoryStats>, labels: &[(&str, &str)]) {
    let Some((memory, bytes)) = memory.and_then(|m| Some((m, m.working_set_bytes?))) else { return };
    let mut gauge = Gauge::default();
    gauge.set_value(bytes as f64);
    let mut m = metric(labels, &memory.time);
    m.set_gauge(gauge);
    f.mut_metric().push(m);
}
