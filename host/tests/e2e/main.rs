//! End-to-end tests: the `labkubelet` binary against a real control plane (etcd,
//! kube-apiserver, kube-controller-manager and kube-scheduler with kubeadm's flags), each
//! step of the book's cluster walk-through (docs/lab.md) asserted as `kubectl` would show it. Every test
//! ends by checking the API server's audit log: no request of its node, or of its bootstrap
//! token, was refused.
//!
//! The binaries come from `tests/control-plane/install.sh` (or `LABKUBELET_E2E_ASSETS`);
//! without them every test fails, saying how to install them.

#![allow(clippy::unwrap_used)] // a test fails where it unwraps

mod commands;
mod diff;
mod differential;
mod exec;
mod node;
mod node_actions;
mod pods;
mod python;
mod rotation;
mod scenarios;
mod static_pods;
mod support;
mod volumes;
mod workloads;

/// Client certificates live 10 minutes (5 after the 1.20 signer's back-dating), so every
/// node rotates its certificate during the suite, as a long-running kubelet does.
fn settings() -> labkubelet_control_plane::Settings {
    labkubelet_control_plane::Settings { signing_duration: std::time::Duration::from_secs(600), ..Default::default() }
}
