//! Which pod the kubelet evicts first, and what it tells the pod. Upstream:
//! pkg/kubelet/eviction/helpers.go (`rankMemoryPressure`, `rankDiskPressureFunc`,
//! `rankPIDPressure`, `evictionMessage`).

use super::thresholds::Signal;

/// What one container of a pod uses of the resource under pressure, and requests of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerUsage {
    pub name: String,
    pub usage: i64,
    pub request: i64,
}

/// A pod that may be evicted, with what its running containers use.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub uid: String,
    /// `namespace/name`.
    pub name: String,
    pub priority: i32,
    pub containers: Vec<ContainerUsage>,
}

impl Candidate {
    fn usage(&self) -> i64 {
        self.containers.iter().map(|c| c.usage).sum()
    }

    fn request(&self) -> i64 {
        self.containers.iter().map(|c| c.request).sum()
    }
}

/// Sorts the candidates, the first to evict first. For memory and disk: pods using more
/// than they request, then lower priority, then more usage above the request; for PIDs:
/// lower priority, then more processes.
///
/// ```
/// use labkubelet::eviction::rank::{Candidate, ContainerUsage, rank};
/// use labkubelet::eviction::thresholds::Signal;
/// let pod = |name: &str, usage, request| Candidate {
///     uid: name.into(), name: name.into(), priority: 0,
///     containers: vec![ContainerUsage { name: "app".into(), usage, request }],
/// };
/// let mut pods = vec![pod("guaranteed", 256, 256), pod("best-effort", 64, 0)];
/// rank(Signal::MemoryAvailable, &mut pods);
/// assert_eq!(pods[0].name, "best-effort");
/// ```
pub fn rank(signal: Signal, candidates: &mut [Candidate]) {
    if signal == Signal::PidAvailable {
        candidates.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.usage().cmp(&a.usage())));
        return;
    }
    candidates.sort_by(|a, b| {
        let exceeds = |c: &Candidate| c.usage() > c.request();
        exceeds(b).cmp(&exceeds(a)).then(a.priority.cmp(&b.priority)).then((b.usage() - b.request()).cmp(&(a.usage() - a.request())))
    });
}

/// The evicted pod's status message, as the kubelet words it: the resource, and each
/// container using more than it requests.
///
/// ```
/// use labkubelet::eviction::rank::{Candidate, ContainerUsage, message};
/// use labkubelet::eviction::thresholds::Signal;
/// let pod = Candidate {
///     uid: "u".into(), name: "default/hog".into(), priority: 0,
///     containers: vec![ContainerUsage { name: "app".into(), usage: 64 << 20, request: 0 }],
/// };
/// assert_eq!(
///     message(Signal::MemoryAvailable, &pod),
///     "The node was low on resource: memory. Container app was using 64Mi, which exceeds its request of 0. "
/// );
/// ```
pub fn message(signal: Signal, candidate: &Candidate) -> String {
    let mut message = format!("The node was low on resource: {}. ", signal.resource());
    // Upstream names the containers only for memory and ephemeral storage.
    if matches!(signal, Signal::MemoryAvailable | Signal::NodeFsAvailable | Signal::ImageFsAvailable) {
        for c in candidate.containers.iter().filter(|c| c.usage > c.request) {
            message.push_str(&format!("Container {} was using {}, which exceeds its request of {}. ", c.name, binary_si(c.usage), binary_si(c.request)));
        }
    }
    message
}

/// A byte count as apimachinery prints a BinarySI quantity: the largest suffix that divides
/// it exactly (`64Mi`, `1536Mi`, `1000`).
pub fn binary_si(bytes: i64) -> String {
    const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let (mut value, mut suffix) = (bytes, "");
    for s in SUFFIXES {
        if value == 0 || value % 1024 != 0 {
            break;
        }
        value /= 1024;
        suffix = s;
    }
    format!("{value}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, priority: i32, usage: i64, request: i64) -> Candidate {
        Candidate { uid: name.into(), name: name.into(), priority, containers: vec![ContainerUsage { name: "c".into(), usage, request }] }
    }

    #[test]
    fn over_request_then_priority_then_usage_above_request() {
        let mut pods = vec![pod("within", 0, 100, 100), pod("important-over", 1000, 50, 0), pod("over-a-little", 0, 20, 10), pod("over-a-lot", 0, 300, 10)];
        rank(Signal::MemoryAvailable, &mut pods);
        let order: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(order, ["over-a-lot", "over-a-little", "important-over", "within"]);
        rank(Signal::PidAvailable, &mut pods);
        let order: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(order, ["over-a-lot", "within", "over-a-little", "important-over"], "PIDs: priority first, then the most processes");
    }

    #[test]
    fn quantities_print_as_apimachinery_prints_them() {
        assert_eq!(binary_si(0), "0");
        assert_eq!(binary_si(1000), "1000");
        assert_eq!(binary_si(1536 << 20), "1536Mi");
        assert_eq!(binary_si(2 << 30), "2Gi");
    }

    #[test]
    fn the_message_names_only_containers_over_their_request() {
        let mut hog = pod("hog", 0, 300 << 20, 100 << 20);
        hog.containers.push(ContainerUsage { name: "sidecar".into(), usage: 10 << 20, request: 10 << 20 });
        assert_eq!(
            message(Signal::MemoryAvailable, &hog),
            "The node was low on resource: memory. Container c was using 300Mi, which exceeds its request of 100Mi. "
        );
        assert_eq!(message(Signal::PidAvailable, &hog), "The node was low on resource: pids. ");
    }
}
