//! labkubelet: a Kubernetes node agent for labs and failure-scenario teaching.
//!
//! It runs the kubelet's control logic and asks WebAssembly plugins what a container
//! runtime would do. This crate is the embeddable library behind the `labkubelet` binary.
//!
//! - [`agent`]: N nodes in one process: credentials, registration, Lease, status, pods.
//! - [`api_client`]: the API clients, which retry what a busy server throttled.
//! - [`bootstrap`]: TLS bootstrap of the node's client certificate through a CSR, and its rotation.
//! - [`config`]: the KubeletConfiguration file, for the fields that apply.
//! - [`events`]: events as the kubelet's recorder writes them, repeats folded.
//! - [`eviction`]: the eviction manager: hard thresholds, pressure conditions, evictions.
//! - [`clock`]: the one clock the kubelet logic and the plugins share (virtual in tests).
//! - [`node`]: the Node: registration, conditions, status loop, Lease.
//! - [`pods`]: the pod lifecycle: sources, pod workers, syncPod, status manager, probes.
//! - [`runtime`]: the CRI-shaped [`runtime::ContainerRuntime`] trait the kubelet logic calls,
//!   PLEG, and the runtime state kept across agent restarts.
//! - [`server`]: the kubelet's HTTP API (`/pods`, `/containerLogs`, `/metrics`, ...) and
//!   the lab's (`/trigger`, `/timeline`), with the kubelet's authentication and authorization.
//! - [`metrics`]: the Prometheus metrics `/metrics` serves.
//! - [`stats`]: what the containers use of the node (reported or modelled): the Summary API
//!   and `/metrics/resource`, and the eviction manager's figures.
//! - [`timeline`]: what happened to each pod, exported as JSON, SVG or HTML.
//! - [`plugin`]: the wasmtime host: loading, validation, limits, hot reload, and the router
//!   that implements the runtime trait over plugins.

pub mod agent;
pub mod allocator;
pub mod api_client;
pub mod bootstrap;
pub mod clock;
pub mod config;
pub mod events;
pub mod eviction;
pub mod metrics;
pub mod node;
pub mod plugin;
pub mod pods;
pub mod runtime;
pub mod server;
pub mod stats;
pub mod timeline;
