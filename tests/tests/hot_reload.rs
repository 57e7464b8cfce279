//! Hot reload of the plugin folder: swaps under load, refusals that leave the old plugin
//! serving, unloads that fall back to the default plugin.

use labkubelet::plugin::{PluginEvent, PluginPolicy, WIT_VERSION, stock};
use labkubelet::runtime::*;
use labkubelet_tests::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn loaded(name: &'static str) -> impl Fn(&PluginEvent) -> bool {
    move |e| matches!(e, PluginEvent::Loaded { name: n, .. } | PluginEvent::Replaced { name: n, .. } if n == name)
}

fn refused(e: &PluginEvent) -> bool {
    matches!(e, PluginEvent::Refused { .. })
}

fn refusal(e: PluginEvent) -> String {
    match e {
        PluginEvent::Refused { error, .. } => error,
        other => panic!("expected a refusal, got {other}"),
    }
}

/// The containers as the kubelet would compare them across a swap.
fn snapshot(list: &[Container]) -> Vec<(String, String, ContainerState)> {
    let mut v: Vec<_> = list.iter().map(|c| (c.id.clone(), c.metadata.name.clone(), c.state)).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_under_continuous_calls_fails_no_call_and_keeps_the_containers() {
    let mut lab = PluginLab::watched(PluginPolicy::default()).await;
    lab.put("crashloop.json", r#"{"exitAfterSeconds": 86400}"#.as_bytes());
    lab.install("crashloop");
    lab.expect_event("crashloop loaded", loaded("crashloop")).await;
    let node = Arc::new(lab.node("node-1"));
    for i in 0..3 {
        start_pod(&*node, &pod(&format!("p{i}"), Some("crashloop"), &[]), "nginx").await;
    }
    let before = snapshot(&node.list_containers().await.unwrap());
    assert_eq!(before.len(), 3);

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (calls, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let caller = {
        let (node, stop, calls, failures) = (node.clone(), stop.clone(), calls.clone(), failures.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = match node.list_containers().await {
                    Ok(list) => snapshot(&list).len() == 3,
                    Err(_) => false,
                };
                calls.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let loaded_before = lab.catalog.get("crashloop").unwrap().fingerprint;
    let original = stock::component("crashloop").unwrap();
    lab.put("crashloop.wasm", &with_custom_section(original, "v2"));
    lab.expect_event("the swap", |e| matches!(e, PluginEvent::Replaced { name, .. } if name == "crashloop")).await;
    lab.expect_event("the node taking over the state", |e| matches!(e, PluginEvent::Migrated { node, name, .. } if node == "node-1" && name == "crashloop"))
        .await;
    let calls_at_swap = calls.load(Ordering::Relaxed);
    while calls.load(Ordering::Relaxed) < calls_at_swap + 50 {
        tokio::task::yield_now().await;
    }
    stop.store(true, Ordering::Relaxed);
    caller.await.unwrap();

    assert_eq!(failures.load(Ordering::Relaxed), 0, "calls failed across the swap");
    assert_eq!(snapshot(&node.list_containers().await.unwrap()), before);
    let serving = lab.catalog.get("crashloop").unwrap();
    assert_ne!(serving.fingerprint, loaded_before, "the catalog serves the new component");
    assert!(serving.origin.ends_with("crashloop.wasm"), "served from the file dropped in: {}", serving.origin);
    assert!(calls.load(Ordering::Relaxed) > 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_components_are_refused_and_the_old_plugin_keeps_serving() {
    let mut lab = PluginLab::watched(PluginPolicy::default()).await;
    // The container must outlive the test, however slow the machine.
    let good_config = "exitAfterSeconds: 86400\n";
    lab.put("crashloop.yaml", good_config.as_bytes());
    lab.install("crashloop");
    lab.expect_event("crashloop loaded", loaded("crashloop")).await;
    let node = lab.node("node-1");
    let (_, id) = start_pod(&node, &pod("p", Some("crashloop"), &[]), "nginx").await;
    let fingerprint = lab.catalog.get("crashloop").unwrap().fingerprint;
    let file = lab.path("crashloop.wasm").display().to_string();

    let still_serving = |lab: &PluginLab| {
        assert_eq!(lab.catalog.get("crashloop").unwrap().fingerprint, fingerprint, "the old plugin was replaced");
    };

    lab.put("crashloop.wasm", b"this is not wasm at all");
    assert_eq!(
        refusal(lab.expect_event("garbage refused", refused).await),
        format!(
            "{file}: not a WebAssembly file (it does not start with the \\0asm magic); build the plugin with `cargo build --release --target wasm32-wasip2`"
        )
    );
    still_serving(&lab);
    assert_eq!(node.container_status(&id).await.unwrap().state, ContainerState::Running);

    lab.put("crashloop.wasm", b"\0asm\x01\0\0\0");
    let why = refusal(lab.expect_event("core module refused", refused).await);
    assert!(why.contains("a core WebAssembly module, not a component"), "{why}");
    still_serving(&lab);

    lab.put("crashloop.wasm", &component_for_wit_version("1.0.0"));
    let why = refusal(lab.expect_event("other WIT version refused", refused).await);
    assert_eq!(
        why,
        format!(
            "{file}: built for labkubelet:runtime@1.0.0, but this labkubelet speaks labkubelet:runtime@{WIT_VERSION}; rebuild the plugin against this labkubelet's guest SDK"
        )
    );
    still_serving(&lab);

    // Written in place, not renamed: the watcher may see half a file. It is refused, and
    // the complete file is then taken.
    let v2 = with_custom_section(stock::component("crashloop").unwrap(), "v2");
    std::fs::write(lab.path("crashloop.wasm"), &v2[..v2.len() / 2]).unwrap();
    // The watcher sees the truncated file or the half one, depending on timing.
    let why = refusal(lab.expect_event("half a file refused", refused).await);
    assert!(why.contains("invalid component") || why.contains("not a WebAssembly file"), "{why}");
    still_serving(&lab);
    std::fs::write(lab.path("crashloop.wasm"), &v2).unwrap();
    lab.expect_event("the whole file", |e| matches!(e, PluginEvent::Replaced { name, .. } if name == "crashloop")).await;
    assert_eq!(node.container_status(&id).await.unwrap().state, ContainerState::Running, "the state moved to v2");
    let fingerprint = lab.catalog.get("crashloop").unwrap().fingerprint;
    let still_serving = |lab: &PluginLab| assert_eq!(lab.catalog.get("crashloop").unwrap().fingerprint, fingerprint);

    lab.put("crashloop.yaml", "exitAfterSeconds: [unclosed\n".as_bytes());
    let why = refusal(lab.expect_event("unreadable config refused", refused).await);
    let config = lab.path("crashloop.yaml").display().to_string();
    assert!(
        why.starts_with(&format!("{config}:2:1: not valid YAML: did not find expected ',' or ']'")) && why.ends_with(&format!("(the configuration of {file})")),
        "{why}"
    );
    still_serving(&lab);

    lab.put("crashloop.yaml", "exitAfterSecs: 3\n".as_bytes());
    let event = lab.expect_event("unknown config field refused", refused).await;
    assert!(event.to_string().ends_with("; crashloop keeps serving as before"), "{event}");
    let why = refusal(event);
    assert_eq!(why, format!("{config}:1:1: unknown field `exitAfterSecs`, expected `exitAfterSeconds` or `exitCode` (the configuration of {file})"));
    still_serving(&lab);
    lab.put("crashloop.yaml", good_config.as_bytes());

    let mut trapper = test_component("misbehave");
    trapper = with_custom_section(&trapper, "trap");
    lab.put("misbehave.json", r#"{"mode": "trap-in-info"}"#.as_bytes());
    lab.put("misbehave.wasm", &trapper);
    let why = refusal(
        lab.expect_event("a plugin that traps in info refused", |e| matches!(e, PluginEvent::Refused { origin, .. } if origin.ends_with("misbehave.wasm")))
            .await,
    );
    assert!(why.contains("failed when asked for its info") && why.contains("plugin misbehave.wasm failed in info"), "{why}");
    assert!(
        why.contains("panicked at tests/plugins/misbehave/src/lib.rs:") && why.ends_with(": misbehave was told to trap in info"),
        "the panic's place and message: {why}"
    );
    assert!(lab.catalog.get("misbehave").is_none());
    assert_eq!(node.container_status(&id).await.unwrap().state, ContainerState::Running);

    // Loops forever, then grows without bound, when asked who it is.
    lab.put("misbehave.json", r#"{"mode": "spin-in-info"}"#.as_bytes());
    let why = refusal(
        lab.expect_event("a plugin that loops in info refused", |e| matches!(e, PluginEvent::Refused { origin, .. } if origin.ends_with("misbehave.wasm")))
            .await,
    );
    assert!(why.ends_with("failed when asked for its info: plugin misbehave.wasm exceeded its 2s deadline in info"), "{why}");
    lab.put("misbehave.json", r#"{"mode": "grow-in-info"}"#.as_bytes());
    let why = refusal(
        lab.expect_event("a plugin that grows in info refused", |e| matches!(e, PluginEvent::Refused { origin, .. } if origin.ends_with("misbehave.wasm")))
            .await,
    );
    assert!(why.contains("failed when asked for its info: plugin misbehave.wasm failed in info: memory limit of 64 MiB reached"), "{why}");
    assert!(lab.catalog.get("misbehave").is_none());
    still_serving(&lab);
    assert_eq!(node.container_status(&id).await.unwrap().state, ContainerState::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_content_is_not_reloaded_and_config_edits_are() {
    let mut lab = PluginLab::watched(PluginPolicy::default()).await;
    lab.install("scripted");
    lab.expect_event("scripted loaded", loaded("scripted")).await;
    assert!(lab.sync().await.is_empty(), "an unchanged folder reloads nothing");
    lab.install("scripted");
    assert!(lab.sync().await.is_empty(), "the same bytes again reload nothing");

    let node = lab.node("node-1");
    let web = pod("web", Some("scripted"), &[]);
    node.pull_image("nginx", None, Some(&web)).await.unwrap();
    lab.put("scripted.yaml", "rules:\n  - match: { pod: web }\n    failPull: \"pull access denied\"\n".as_bytes());
    lab.expect_event("the edited rules", |e| matches!(e, PluginEvent::Replaced { name, .. } if name == "scripted")).await;
    assert_eq!(node.pull_image("nginx:2", None, Some(&web)).await.unwrap_err().to_string(), "pull access denied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_plugin_falls_back_to_the_default_with_its_containers() {
    let mut lab = PluginLab::watched(PluginPolicy::default()).await;
    lab.put("oomkill.json", r#"{"afterSeconds": 86400}"#.as_bytes());
    lab.install("oomkill");
    lab.expect_event("oomkill loaded", loaded("oomkill")).await;
    let node = lab.node("node-1");
    let p = pod("db", Some("oomkill"), &[]);
    let (_, id) = start_pod(&node, &p, "postgres").await;
    std::fs::remove_file(lab.path("oomkill.wasm")).unwrap();
    lab.expect_event("oomkill unloaded", |e| matches!(e, PluginEvent::Unloaded { name, .. } if name == "oomkill")).await;
    assert_eq!(lab.catalog.select(&p.labels, &p.annotations).info.name, "healthy");
    let s = node.container_status(&id).await.unwrap();
    assert_eq!(s.state, ContainerState::Running, "the default plugin took over the container");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_files_cannot_serve_the_same_plugin_name() {
    let mut lab = PluginLab::watched(PluginPolicy::default()).await;
    lab.install("crashloop");
    lab.expect_event("crashloop loaded", loaded("crashloop")).await;
    lab.put("crashloop-copy.wasm", &with_custom_section(stock::component("crashloop").unwrap(), "copy"));
    let why = refusal(lab.expect_event("the copy refused", refused).await);
    assert!(
        why.ends_with(&format!("plugin name \"crashloop\" is already served by {}; give one of them another name", lab.path("crashloop.wasm").display())),
        "{why}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_that_refuses_the_old_state_is_refused_on_the_node_and_the_old_one_serves() {
    let mut lab = PluginLab::watched(PluginPolicy::default()).await;
    lab.put("misbehave.wasm", &test_component("misbehave"));
    lab.expect_event("misbehave loaded", loaded("misbehave")).await;
    let node = lab.node("node-1");
    let (_, id) = start_pod(&node, &pod("p", Some("misbehave"), &[]), "nginx").await;

    lab.put("misbehave.json", r#"{"mode": "refuse-state"}"#.as_bytes());
    lab.expect_event("the new version", |e| matches!(e, PluginEvent::Replaced { name, .. } if name == "misbehave")).await;
    assert_eq!(node.container_status(&id).await.unwrap().state, ContainerState::Running, "the old instance serves");
    let event = lab.expect_event("the refusal on the node", |e| matches!(e, PluginEvent::MigrationRefused { .. })).await;
    assert_eq!(
        event.to_string(),
        "node node-1: misbehave refused the old runtime state: plugin misbehave failed in import-state: this version cannot take the old state; the previous instance keeps serving"
    );
    // Not retried at every call.
    node.list_containers().await.unwrap();
    assert!(matches!(lab.events.try_recv(), Err(tokio::sync::broadcast::error::TryRecvError::Empty)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_folder_does_not_make_the_watcher_read_it_again() {
    let mut lab = PluginLab::watched(PluginPolicy::default()).await;
    lab.install("scripted");
    lab.expect_event("scripted loaded", loaded("scripted")).await;
    lab.put("scripted.yaml", "rules: [\n".as_bytes());
    lab.expect_event("the bad rules refused", refused).await;
    let syncs = lab.catalog.sync_count();
    // Many debounce periods with nothing changing in the folder.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(lab.catalog.sync_count(), syncs, "the watcher re-read an unchanged folder");
    assert!(matches!(lab.events.try_recv(), Err(tokio::sync::broadcast::error::TryRecvError::Empty)), "the refusal was repeated");
}
