//! Write labkubelet runtime plugins.
//!
//! A plugin decides what a container runtime would do for the pods it serves. Most plugins
//! need only a few policy decisions — "containers exit with code 1 after 5 s", "pulls of this
//! image fail" — so this crate ships a complete fake runtime that does the CRI bookkeeping
//! (ids, states, timestamps, attempts, images, logs, state export) and asks a [`Scenario`]
//! only for those decisions. Every hook defaults to "everything works".
//!
//! ```no_run
//! use labkubelet_guest::*;
//!
//! /// Containers of pods labelled app=db are OOMKilled 30 s after they start.
//! #[derive(Default)]
//! struct OomDb;
//!
//! impl Scenario for OomDb {
//!     fn info(&self) -> Info {
//!         Info::new("oom-db", "0.1.0").serves("app=db")
//!     }
//!     fn on_start(&mut self, _c: &ContainerCtx) -> Result<Lifetime, RuntimeError> {
//!         Ok(Lifetime::exits_after(secs(30), Exit::oom_killed()))
//!     }
//! }
//!
//! export_scenario!(OomDb);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` and drop the `.wasm` file into
//! the agent's plugin folder. The [`cookbook`] has every hook with its signature and what it
//! is for, and the common scenarios (slow pull, slow start, crash after N s, every Nth
//! start, failing probes, a hung runtime, sandbox and pull failures) in Rust and as
//! `scripted` rules. `cargo doc --open` in a crate made by `labkubelet plugin new` opens
//! these pages. For full control, implement
//! [`bindings::exports::labkubelet::runtime::runtime::Guest`] yourself and export it with
//! [`export_raw!`].
//!
//! A hook that panics ends the call: the agent shows the panic's message with its file and
//! line (`plugin flaky-db failed in start-container: panicked at src/lib.rs:42:17: index out
//! of bounds …`) in its log and in the pod's status, and starts the instance afresh.

mod config;
mod container;
pub mod cookbook;
mod guest;
pub mod host;
pub mod image;
mod node_script;
mod process;
mod registry;
mod runtime;
mod scenario;
mod server;
pub mod shell;
mod triggers;
mod volumes;

pub use config::{ConfigError, ConfigFile};
pub use container::*;
pub use node_script::{NodeScenario, NodeScript, OnSchedule};
pub use runtime::{ContainerRecord, FakeRuntime, SandboxRecord};
pub use scenario::*;

/// The generated bindings of the `labkubelet:runtime` WIT package.
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "export_raw",
        default_bindings_module: "labkubelet_guest::bindings",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

pub use bindings::export_raw;
pub use bindings::labkubelet::runtime::lab::{LogLevel, NodeAction, TriggerAction, TriggerError, TriggerTarget};
pub use bindings::labkubelet::runtime::types::{
    ContainerConfig, ContainerFile, ContainerMetadata, ContainerMount, ContainerSecurity, ContainerState, ContainerStats, ErrorCode, ExecProbe, ExecResult,
    HttpGetAction, HttpRequest, HttpResponse, KeyValue, LogLine, LogStream, PodSandboxConfig, PodSandboxMetadata, ProbeAction, ProbeKind, ProbeOutcome,
    ProbeResult, RuntimeCondition, RuntimeError,
};

/// A number of seconds as a [`std::time::Duration`], for short scenario code.
pub fn secs(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n)
}

/// Exports a [`Scenario`] as the plugin's runtime, backed by the [`FakeRuntime`].
///
/// The type must implement [`Scenario`] and [`Default`]; the instance is built once and then
/// given the plugin's configuration through [`Scenario::configure`]. Only a wasm build
/// exports it: built for the host (`cargo build --workspace`, clippy), a plugin crate links
/// as an ordinary library.
#[macro_export]
macro_rules! export_scenario {
    ($scenario:ty) => {
        #[doc(hidden)]
        pub struct __LabkubeletPlugin;

        impl $crate::ScenarioExport for __LabkubeletPlugin {
            fn build() -> ::std::boxed::Box<dyn $crate::Scenario> {
                ::std::boxed::Box::new(<$scenario as ::std::default::Default>::default())
            }
        }

        #[cfg(target_family = "wasm")]
        $crate::export_raw!(__LabkubeletPlugin with_types_in $crate::bindings);
    };
}
