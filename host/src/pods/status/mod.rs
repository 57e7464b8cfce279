//! The pod's API status: what the kubelet computes ([`generate`], with the pod's [`phase`]) and
//! the status manager that keeps and writes it ([`writer`]).

pub mod generate;
pub mod phase;
pub mod writer;

pub use generate::{StatusInputs, Waiting, api_status, rejected_status, server_container_status};
pub use phase::{PodPhase, is_terminal, phase};
pub use writer::{StatusWriter, delete_pod, with_others_conditions};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// API time at second precision, as the server keeps it; `None` for 0 (not yet).
pub fn time(nanos: i64) -> Option<Time> {
    (nanos > 0).then(|| Time(k8s_openapi::jiff::Timestamp::from_second(nanos.div_euclid(1_000_000_000)).unwrap_or_default()))
}
