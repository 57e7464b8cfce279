//! Recipes: the scenarios labs ask for most, each as a Rust [`Scenario`](crate::Scenario), as
//! rules for the stock `scripted` plugin (its `scripted.yaml`, no compiler needed), and as a
//! Python scenario (a `<name>.py` in the plugin folder, no compiler either).
//!
//! Which hook a recipe needs:
//!
//! | hook | signature | use it for |
//! |---|---|---|
//! | [`info`](crate::Scenario::info) | `(&self) -> Info` | the plugin's name, version, selector, extra actions |
//! | [`configure`](crate::Scenario::configure) | `(&mut self, &ConfigFile) -> Result<(), ConfigError>` | reading the file beside the plugin: [`ConfigFile::parse`](crate::ConfigFile::parse) |
//! | [`conditions`](crate::Scenario::conditions) | `(&mut self, &FakeRuntime) -> Vec<RuntimeCondition>` | RuntimeReady / NetworkReady false: the node turns NotReady |
//! | [`before_call`](crate::Scenario::before_call) | `(&mut self, &Call, &FakeRuntime) -> Reply` | slow or hung calls: slow pulls, slow starts, a deadlocked runtime |
//! | [`on_pull`](crate::Scenario::on_pull) | `(&mut self, &str, Option<&PodSandboxConfig>) -> Result<(), RuntimeError>` | pulls that fail: ErrImagePull, ImagePullBackOff |
//! | [`on_run_sandbox`](crate::Scenario::on_run_sandbox) | `(&mut self, &PodSandboxConfig) -> Result<(), RuntimeError>` | sandboxes that cannot be made: FailedCreatePodSandBox |
//! | [`on_create`](crate::Scenario::on_create) | `(&mut self, &ContainerCtx) -> Result<(), RuntimeError>` | CreateContainerError |
//! | [`on_start`](crate::Scenario::on_start) | `(&mut self, &ContainerCtx) -> Result<Lifetime, RuntimeError>` | how long a container runs and how it exits: crashes, OOM kills, every Nth start |
//! | [`start_logs`](crate::Scenario::start_logs) | `(&mut self, &ContainerCtx) -> Vec<String>` | lines `kubectl logs` shows before the command's own output |
//! | [`on_stop`](crate::Scenario::on_stop) | `(&mut self, &ContainerCtx) -> Stop` | containers that ignore SIGTERM |
//! | [`probe`](crate::Scenario::probe) | `(&mut self, &ContainerCtx, ProbeKind, &ProbeAction) -> Option<ProbeResult>` | failing or flapping liveness, readiness, startup probes (`None`: the container answers) |
//! | [`usage`](crate::Scenario::usage) | `(&mut self, &ContainerCtx) -> Usage` | what a container uses of the node's memory and disk: leaks, evictions under pressure |
//! | [`exec`](crate::Scenario::exec) | `(&mut self, &ContainerCtx, &[String]) -> Option<ExecResult>` | what `kubectl exec` answers (`None`: the container's shell runs it) |
//! | [`trigger`](crate::Scenario::trigger) | `(&mut self, &mut FakeRuntime, &str, &TriggerTarget, &[KeyValue]) -> Option<Result<String, TriggerError>>` | lab actions of your own (`labkubelet trigger`) |
//! | [`save`](crate::Scenario::save) / [`restore`](crate::Scenario::restore) | `(&self) -> serde_json::Value` / `(&mut self, Value) -> Result<(), String>` | scenario state kept across reloads |
//!
//! Every recipe's Rust builds as it is (`cargo build --release --target wasm32-wasip2`); every
//! `scripted` form is checked by `labkubelet plugin check scripted.yaml`, every Python form by
//! `labkubelet plugin check <name>.py`, and each is tested for what its recipe says.
//!
//! # Slow image pull
//!
//! Pulls for pods labelled `app=slow` take 15 s: `kubectl get pods` shows `ContainerCreating`
//! meanwhile, then the `Pulled` event says how long it took.
//!
//! ```
//! use labkubelet_guest::*;
//!
//! #[derive(Default)]
//! struct SlowPull;
//!
//! impl Scenario for SlowPull {
//!     fn info(&self) -> Info {
//!         Info::new("slow-pull", "0.1.0").serves("app=slow")
//!     }
//!     fn before_call(&mut self, call: &Call, _rt: &FakeRuntime) -> Reply {
//!         if call.method == Method::PullImage && call.pod_label("app") == Some("slow") { Reply::Delay(secs(15)) } else { Reply::Now }
//!     }
//! }
//!
//! export_scenario!(SlowPull);
//! ```
//!
//! ```yaml
//! rules:
//!   - match: { labels: { app: slow } }
//!     calls: [pull-image]
//!     delaySeconds: 15
//! ```
//!
//! ```python
//! SELECTOR = "app=slow"
//!
//!
//! def before_call(call):
//!     if call.method == "pull-image" and call.pod and call.pod.labels.get("app") == "slow":
//!         return delay(15)
//! ```
//!
//! # Slow start
//!
//! Containers of pods labelled `app=slow` take 20 s to start.
//!
//! ```
//! use labkubelet_guest::*;
//!
//! #[derive(Default)]
//! struct SlowStart;
//!
//! impl Scenario for SlowStart {
//!     fn info(&self) -> Info {
//!         Info::new("slow-start", "0.1.0").serves("app=slow")
//!     }
//!     fn before_call(&mut self, call: &Call, _rt: &FakeRuntime) -> Reply {
//!         if call.method == Method::StartContainer { Reply::Delay(secs(20)) } else { Reply::Now }
//!     }
//! }
//!
//! export_scenario!(SlowStart);
//! ```
//!
//! ```yaml
//! rules:
//!   - match: { labels: { app: slow } }
//!     calls: [start-container]
//!     delaySeconds: 20
//! ```
//!
//! ```python
//! SELECTOR = "app=slow"
//!
//!
//! def before_call(call):
//!     if call.method == "start-container":
//!         return delay(20)
//! ```
//!
//! # Crash after N seconds
//!
//! Containers exit with code 1 after 10 s: `Error`, then `CrashLoopBackOff` with the kubelet's
//! back-off (10 s, 20 s, 40 s ... 5 min).
//!
//! ```
//! use labkubelet_guest::*;
//!
//! #[derive(Default)]
//! struct Crash;
//!
//! impl Scenario for Crash {
//!     fn info(&self) -> Info {
//!         Info::new("crash", "0.1.0").serves("app=web")
//!     }
//!     fn on_start(&mut self, _c: &ContainerCtx) -> Result<Lifetime, RuntimeError> {
//!         Ok(Lifetime::exits_after(secs(10), Exit::error(1)))
//!     }
//! }
//!
//! export_scenario!(Crash);
//! ```
//!
//! ```yaml
//! rules:
//!   - match: { labels: { app: web } }
//!     exit: { afterSeconds: 10, code: 1 }
//! ```
//!
//! ```python
//! SELECTOR = "app=web"
//!
//!
//! def on_start(c):
//!     return exits(after=10, code=1)
//! ```
//!
//! # Every Nth start fails
//!
//! Every third start exits 2 after 10 s; the others run. [`ContainerCtx::attempt`](crate::ContainerCtx::attempt)
//! counts the starts before this one (the pod's `restartCount`).
//!
//! ```
//! use labkubelet_guest::*;
//!
//! #[derive(Default)]
//! struct EveryThird;
//!
//! impl Scenario for EveryThird {
//!     fn info(&self) -> Info {
//!         Info::new("every-third", "0.1.0").serves("app=flaky")
//!     }
//!     fn on_start(&mut self, c: &ContainerCtx) -> Result<Lifetime, RuntimeError> {
//!         Ok(if (c.attempt + 1) % 3 == 0 { Lifetime::exits_after(secs(10), Exit::error(2)) } else { c.default_lifetime() })
//!     }
//! }
//!
//! export_scenario!(EveryThird);
//! ```
//!
//! ```yaml
//! rules:
//!   - match: { labels: { app: flaky }, everyNthStart: 3 }
//!     exit: { afterSeconds: 10, code: 2 }
//! ```
//!
//! ```python
//! SELECTOR = "app=flaky"
//!
//!
//! def on_start(c):
//!     if (c.attempt + 1) % 3 == 0:
//!         return exits(after=10, code=2)
//! ```
//!
//! # Failing probes
//!
//! Readiness fails once a container has run 30 s (the pod leaves the Service's endpoints);
//! liveness fails from the start (the kubelet restarts the container, `Unhealthy` events).
//!
//! ```
//! use labkubelet_guest::*;
//!
//! #[derive(Default)]
//! struct SickProbes;
//!
//! impl Scenario for SickProbes {
//!     fn info(&self) -> Info {
//!         Info::new("sick-probes", "0.1.0").serves("app=sick")
//!     }
//!     fn probe(&mut self, c: &ContainerCtx, kind: ProbeKind, _action: &ProbeAction) -> Option<ProbeResult> {
//!         let ran = host::now() - c.started_at.unwrap_or(0);
//!         let failing = match kind {
//!             ProbeKind::Readiness => ran >= 30_000_000_000,
//!             ProbeKind::Liveness => true,
//!             ProbeKind::Startup => false,
//!         };
//!         // Otherwise the container answers: an exec probe runs its command.
//!         failing.then(|| ProbeResult { outcome: ProbeOutcome::Failure, output: "HTTP probe failed with statuscode: 500".into() })
//!     }
//! }
//!
//! export_scenario!(SickProbes);
//! ```
//!
//! ```yaml
//! rules:
//!   - match: { labels: { app: sick } }
//!     probes:
//!       readiness: { failAfterSeconds: 30 }
//!       liveness: { fail: true, output: "HTTP probe failed with statuscode: 500" }
//! ```
//!
//! ```python
//! SELECTOR = "app=sick"
//!
//!
//! def probe(c, kind):
//!     if kind == "liveness" or (kind == "readiness" and c.running_for >= 30):
//!         return "HTTP probe failed with statuscode: 500"
//! ```
//!
//! # A hung runtime
//!
//! A minute after the plugin loads, the calls PLEG makes every second hang for 4 minutes: PLEG
//! turns unhealthy and the node `NotReady` ("PLEG is not healthy"), then recovers. The built-in
//! `hang` and `heal` actions do it on cue instead (`labkubelet trigger <plugin> hang`).
//!
//! ```
//! use labkubelet_guest::*;
//!
//! #[derive(Default)]
//! struct Deadlock {
//!     first_call: Option<i64>,
//! }
//!
//! impl Scenario for Deadlock {
//!     fn info(&self) -> Info {
//!         Info::new("deadlock", "0.1.0")
//!     }
//!     fn before_call(&mut self, call: &Call, rt: &FakeRuntime) -> Reply {
//!         let now = rt.now();
//!         let from = *self.first_call.get_or_insert(now) + 60_000_000_000;
//!         let until = from + 240_000_000_000;
//!         if call.method.is_list() && (from..until).contains(&now) {
//!             Reply::Delay(std::time::Duration::from_nanos((until - now) as u64))
//!         } else {
//!             Reply::Now
//!         }
//!     }
//! }
//!
//! export_scenario!(Deadlock);
//! ```
//!
//! ```yaml
//! rules:
//!   - calls: [list]
//!     afterSeconds: 60
//!     forSeconds: 240
//! ```
//!
//! ```python
//! LISTS = ("list-pod-sandboxes", "list-containers", "list-images")
//!
//!
//! def before_call(call):
//!     start = state.setdefault("first_call", now()) + 60
//!     if call.method in LISTS and start <= now() < start + 240:
//!         return delay(start + 240 - now())
//! ```
//!
//! # Sandbox failure
//!
//! The pod's sandbox cannot be made: `FailedCreatePodSandBox` events, the pod stays
//! `ContainerCreating`.
//!
//! ```
//! use labkubelet_guest::*;
//!
//! #[derive(Default)]
//! struct NoNetwork;
//!
//! impl Scenario for NoNetwork {
//!     fn info(&self) -> Info {
//!         Info::new("no-network", "0.1.0").serves("app=net")
//!     }
//!     fn on_run_sandbox(&mut self, _config: &PodSandboxConfig) -> Result<(), RuntimeError> {
//!         Err(RuntimeError { code: ErrorCode::Failed, message: "failed to setup network for sandbox: plugin type=\"bridge\" failed".into() })
//!     }
//! }
//!
//! export_scenario!(NoNetwork);
//! ```
//!
//! ```yaml
//! rules:
//!   - match: { labels: { app: net } }
//!     failSandbox: "failed to setup network for sandbox: plugin type=\"bridge\" failed"
//! ```
//!
//! ```python
//! SELECTOR = "app=net"
//!
//!
//! def on_run_sandbox(pod):
//!     return fail('failed to setup network for sandbox: plugin type="bridge" failed')
//! ```
//!
//! # A failing pull
//!
//! Pulls of `private/*` images fail: `ErrImagePull`, then `ImagePullBackOff`.
//!
//! ```
//! use labkubelet_guest::*;
//!
//! #[derive(Default)]
//! struct Private;
//!
//! impl Scenario for Private {
//!     fn info(&self) -> Info {
//!         Info::new("private-images", "0.1.0").serves("lab=pulls")
//!     }
//!     fn on_pull(&mut self, image: &str, _pod: Option<&PodSandboxConfig>) -> Result<(), RuntimeError> {
//!         if image.starts_with("private/") {
//!             return Err(RuntimeError { code: ErrorCode::NotFound, message: format!("pull access denied for {image}, repository does not exist") });
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_scenario!(Private);
//! ```
//!
//! ```yaml
//! rules:
//!   - match: { image: "private/*" }
//!     failPull: "pull access denied, repository does not exist"
//! ```
//!
//! ```python
//! SELECTOR = "lab=pulls"
//!
//!
//! def on_pull(image, pod):
//!     if image.startswith("private/"):
//!         return fail(f"pull access denied for {image}, repository does not exist", code="not-found")
//! ```
//!
//! # A node cut off on cue
//!
//! A minute after a pod annotated `labkubelet.io/scenario: cut-after-a-minute` starts, its
//! node stops talking to the API server, and five minutes later it is back. An
//! [`OnSchedule`](crate::OnSchedule) scenario asks the host for each action of its
//! [`NodeScript`](crate::NodeScript) when it is due (checked at every call; PLEG relists
//! every second), and serves its pods as `healthy` does. Any action of `labkubelet node`
//! works the same: `Reboot`, `MemoryPressure`, `RuntimeDown`, ... A scenario of another
//! kind asks with [`host::node_action`](crate::host::node_action).
//!
//! ```
//! use labkubelet_guest::*;
//!
//! #[derive(Default)]
//! struct CutAfterAMinute;
//!
//! impl NodeScenario for CutAfterAMinute {
//!     fn info(&self) -> Info {
//!         Info::new("cut-after-a-minute", "0.1.0")
//!     }
//!     fn script(&self, _config: &ConfigFile) -> Result<NodeScript, ConfigError> {
//!         Ok(NodeScript::new(vec![(secs(60), NodeAction::Partition), (secs(360), NodeAction::Heal)]))
//!     }
//! }
//!
//! export_scenario!(OnSchedule<CutAfterAMinute>);
//! ```
//!
//! (no `scripted` form)
//!
//! ```python
//! def before_call(call):
//!     if call.method == "start-container":
//!         state.setdefault("started", now())
//!     for after, action in ((60, "partition"), (360, "heal")):
//!         if "started" in state and now() >= state["started"] + after and action not in state:
//!             state[action] = now()
//!             node_action(action)
//! ```
//!
//! # A container that leaks memory
//!
//! What a container uses is the host's to model unless the plugin says: here it grows by
//! 100Mi a second, until the eviction manager evicts its pod under memory pressure (the stock
//! `memory-pressure` plugin also OOM-kills it at its limit).
//!
//! ```
//! use labkubelet_guest::*;
//!
//! #[derive(Default)]
//! struct Leak;
//!
//! impl Scenario for Leak {
//!     fn info(&self) -> Info {
//!         Info::new("leak", "0.1.0")
//!     }
//!     fn usage(&mut self, c: &ContainerCtx) -> Usage {
//!         let seconds = c.started_at.map_or(0, |at| (host::now() - at) / 1_000_000_000);
//!         Usage::memory(u64::try_from(seconds).unwrap_or(0) * (100 << 20))
//!     }
//! }
//!
//! export_scenario!(Leak);
//! ```
//!
//! (no `scripted` form)
//!
//! ```python
//! def usage(c):
//!     return uses(memory_bytes=int(c.running_for) * 100 * 1024 * 1024)
//! ```
//!
//! # CPU that climbs
//!
//! What `kubectl top` and a HorizontalPodAutoscaler see is what the plugin reports: here each
//! container's CPU climbs by 50m a second from its start, to two cores. A plugin that says
//! nothing leaves CPU to the host: the pod's `labkubelet.io/cpu-usage` annotation, else a
//! tenth of the container's request.
//!
//! ```
//! use labkubelet_guest::*;
//!
//! #[derive(Default)]
//! struct CpuLoad;
//!
//! impl Scenario for CpuLoad {
//!     fn info(&self) -> Info {
//!         Info::new("cpu-load", "0.1.0")
//!     }
//!     fn usage(&mut self, c: &ContainerCtx) -> Usage {
//!         let seconds = c.started_at.map_or(0, |at| (host::now() - at) / 1_000_000_000);
//!         Usage::cpu_millicores(u64::try_from(seconds).unwrap_or(0).saturating_mul(50).min(2000))
//!     }
//! }
//!
//! export_scenario!(CpuLoad);
//! ```
//!
//! (no `scripted` form)
//!
//! ```python
//! def usage(c):
//!     return uses(cpu_millicores=min(int(c.running_for) * 50, 2000))
//! ```
//!
//! # Fails at once
//!
//! The process exits as soon as it starts, after one line on stderr: `kubectl get pods -w` shows
//! `Error`, then `CrashLoopBackOff`; `kubectl logs --previous` shows the line. (An `Err` from
//! `on_start` is another failure: the start itself fails, `StartError` with exit code 128.)
//! An exit this quick is often replaced by the back-off's `Waiting` before a poll of `/pods`
//! or the terminal view catches it: watch the events or `kubectl get pods -w`.
//!
//! ```
//! use labkubelet_guest::*;
//!
//! #[derive(Default)]
//! struct FailsAtOnce;
//!
//! impl Scenario for FailsAtOnce {
//!     fn info(&self) -> Info {
//!         Info::new("fails-at-once", "0.1.0").serves("app=broken")
//!     }
//!     fn start_logs(&mut self, _c: &ContainerCtx) -> Vec<String> {
//!         vec!["FATAL: could not connect to db:5432: connection refused".into()]
//!     }
//!     fn on_start(&mut self, _c: &ContainerCtx) -> Result<Lifetime, RuntimeError> {
//!         Ok(Lifetime::exits_after(secs(0), Exit::error(1)))
//!     }
//! }
//!
//! export_scenario!(FailsAtOnce);
//! ```
//!
//! ```yaml
//! rules:
//!   - match: { labels: { app: broken } }
//!     exit: { afterSeconds: 0, code: 1 }
//! ```
//!
//! ```python
//! SELECTOR = "app=broken"
//!
//!
//! def start_logs(c):
//!     return ["FATAL: could not connect to db:5432: connection refused"]
//!
//!
//! def on_start(c):
//!     return exits(after=0, code=1)
//! ```
//!
//! # A sequence of attempts
//!
//! A database that is OOMKilled 20 s into its first start, fails at once on the second with
//! a line in its log, and runs from the third on. [`ContainerCtx::attempt`](crate::ContainerCtx::attempt)
//! is the pod's `restartCount` for this container.
//!
//! ```
//! use labkubelet_guest::*;
//!
//! #[derive(Default)]
//! struct FlakyDb;
//!
//! impl Scenario for FlakyDb {
//!     fn info(&self) -> Info {
//!         Info::new("flaky-db", "0.1.0").serves("app=db")
//!     }
//!     fn start_logs(&mut self, c: &ContainerCtx) -> Vec<String> {
//!         if c.attempt == 1 { vec!["FATAL: database files are incompatible with server".into()] } else { Vec::new() }
//!     }
//!     fn on_start(&mut self, c: &ContainerCtx) -> Result<Lifetime, RuntimeError> {
//!         Ok(match c.attempt {
//!             0 => Lifetime::exits_after(secs(20), Exit::oom_killed()),
//!             1 => Lifetime::exits_after(secs(0), Exit::error(1)),
//!             _ => c.default_lifetime(),
//!         })
//!     }
//! }
//!
//! export_scenario!(FlakyDb);
//! ```
//!
//! (no `scripted` form: its rules match every Nth start, not the first or the second)
//!
//! ```python
//! SELECTOR = "app=db"
//!
//!
//! def start_logs(c):
//!     if c.attempt == 1:
//!         return ["FATAL: database files are incompatible with server"]
//!
//!
//! def on_start(c):
//!     if c.attempt == 0:
//!         return oom_killed(after=20)
//!     if c.attempt == 1:
//!         return exits(after=0, code=1)
//! ```
//!
//! # A lab action of your own
//!
//! `labkubelet trigger db-lab corrupt --pod db-0 reason=torn-page` kills the matching running
//! containers with exit code 2 and the reason as their message. [`FakeRuntime::matching`](crate::FakeRuntime::matching)
//! gives the containers the target names; the action is listed by `labkubelet plugin list`
//! and in the answer to an unknown action. Returning `None` leaves other actions to the
//! built-in ones (`kill`, `hang`, `fail-pulls`, `heal`).
//!
//! ```
//! use labkubelet_guest::*;
//!
//! #[derive(Default)]
//! struct DbLab;
//!
//! impl Scenario for DbLab {
//!     fn info(&self) -> Info {
//!         Info::new("db-lab", "0.1.0").serves("app=db").action("corrupt", "the database dies with exit code 2; reason= sets its message")
//!     }
//!     fn trigger(&mut self, rt: &mut FakeRuntime, action: &str, target: &TriggerTarget, args: &[KeyValue]) -> Option<Result<String, TriggerError>> {
//!         if action != "corrupt" {
//!             return None;
//!         }
//!         let reason = args.iter().find(|a| a.key == "reason").map_or("checksum mismatch", |a| a.value.as_str());
//!         let killed = rt.matching(target).iter().filter(|id| rt.kill(id, Exit::error(2).with_message(reason))).count();
//!         Some(if killed == 0 { Err(TriggerError::NoSuchTarget("no running container matches".into())) } else { Ok(format!("corrupted {killed} container(s)")) })
//!     }
//! }
//!
//! export_scenario!(DbLab);
//! ```
//!
//! (no `scripted` form)
//!
//! ```python
//! SELECTOR = "app=db"
//! ACTIONS = {"corrupt": "the database dies with exit code 2; reason= sets its message"}
//!
//!
//! def trigger(action, containers, args):
//!     if action != "corrupt":
//!         return None
//!     if not containers:
//!         return fail("no running container matches")
//!     for c in containers:
//!         kill(c, code=2, message=args.get("reason", "checksum mismatch"))
//!     return f"corrupted {len(containers)} container(s)"
//! ```
//!
//! # State kept across reloads
//!
//! Every fifth start on the node fails, counted across plugin reloads and agent restarts:
//! what [`save`](crate::Scenario::save) returns is given to the new version's
//! [`restore`](crate::Scenario::restore) (a version that cannot take it refuses it, and the old
//! version keeps serving).
//!
//! ```
//! use labkubelet_guest::*;
//!
//! #[derive(Default)]
//! struct EveryFifth {
//!     starts: u64,
//! }
//!
//! impl Scenario for EveryFifth {
//!     fn info(&self) -> Info {
//!         Info::new("every-fifth", "0.1.0").serves("app=web")
//!     }
//!     fn on_start(&mut self, c: &ContainerCtx) -> Result<Lifetime, RuntimeError> {
//!         self.starts += 1;
//!         Ok(if self.starts % 5 == 0 { Lifetime::exits_after(secs(3), Exit::error(1)) } else { c.default_lifetime() })
//!     }
//!     fn save(&self) -> serde_json::Value {
//!         serde_json::json!({ "starts": self.starts })
//!     }
//!     fn restore(&mut self, state: serde_json::Value) -> Result<(), String> {
//!         self.starts = state["starts"].as_u64().unwrap_or(0);
//!         Ok(())
//!     }
//! }
//!
//! export_scenario!(EveryFifth);
//! ```
//!
//! (no `scripted` form)
//!
//! ```python
//! SELECTOR = "app=web"
//!
//!
//! def on_start(c):
//!     state["starts"] = state.get("starts", 0) + 1
//!     if state["starts"] % 5 == 0:
//!         return exits(after=3, code=1)
//! ```
//!
//! # Settings from the configuration file
//!
//! A plugin's own keys, with defaults, read by [`ConfigFile::parse`](crate::ConfigFile::parse);
//! a typo is refused with its line and column in the file.
//!
//! ```
//! use labkubelet_guest::*;
//!
//! #[derive(serde::Deserialize)]
//! #[serde(rename_all = "camelCase", deny_unknown_fields, default)]
//! struct Settings {
//!     after_seconds: u64,
//!     exit_code: i32,
//! }
//!
//! impl Default for Settings {
//!     fn default() -> Self {
//!         Settings { after_seconds: 10, exit_code: 1 }
//!     }
//! }
//!
//! #[derive(Default)]
//! struct Configurable {
//!     settings: Option<Settings>,
//! }
//!
//! impl Scenario for Configurable {
//!     fn info(&self) -> Info {
//!         Info::new("configurable", "0.1.0")
//!     }
//!     fn configure(&mut self, file: &ConfigFile) -> Result<(), ConfigError> {
//!         self.settings = Some(file.parse()?);
//!         Ok(())
//!     }
//!     fn on_start(&mut self, _c: &ContainerCtx) -> Result<Lifetime, RuntimeError> {
//!         let s = self.settings.get_or_insert_with(Settings::default);
//!         Ok(Lifetime::exits_after(secs(s.after_seconds), Exit::error(s.exit_code)))
//!     }
//! }
//!
//! export_scenario!(Configurable);
//! ```
//!
//! ```python
//! AFTER_SECONDS = 10  # the file is its own configuration: edit and save
//! EXIT_CODE = 1
//!
//!
//! def on_start(c):
//!     return exits(after=AFTER_SECONDS, code=EXIT_CODE)
//! ```
