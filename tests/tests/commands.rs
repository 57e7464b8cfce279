//! Containers that do what their commands say, on the default runtime against the API-server
//! double with virtual time: output as log lines at their times, exit codes as the kubelet
//! shows them, exec probes and execs run in the container's shell over its files.

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, PostParams};
use labkubelet::runtime::ContainerRuntime;
use labkubelet_tests::eventually;
use labkubelet_tests::pod_lab::{PodLab, container, phase, waiting_reason};
use serde_json::json;
use std::time::Duration;

/// `kubectl logs`: the lines of the pod's container as the runtime has them.
async fn logs(lab: &PodLab, pod: &Pod, name: &str) -> Vec<String> {
    let id = container(pod, name).and_then(|c| c.container_id.clone()).unwrap_or_default();
    let id = id.trim_start_matches("labkubelet://");
    lab.runtime.container_logs(id, None, None).await.unwrap_or_default().into_iter().map(|l| l.text).collect()
}

#[tokio::test(start_paused = true)]
async fn a_jobs_command_prints_and_fails_with_its_exit_code() {
    let lab = PodLab::start(&[], &[]).await;
    let spec = json!({"restartPolicy": "Never", "containers": [{"name": "work", "image": "busybox:1.36", "command": ["sh", "-c", "echo hello; exit 3"]}]});
    lab.create("job", json!({}), spec).await;
    let failed = lab.until("job", "Failed", Duration::from_secs(30), |p| phase(p) == "Failed").await;
    let t = container(&failed, "work").and_then(|c| c.state.clone()?.terminated).expect("terminated");
    assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    assert_eq!(logs(&lab, &failed, "work").await, ["hello"]);
}

#[tokio::test(start_paused = true)]
async fn busybox_without_a_command_exits_at_once_and_crash_loops() {
    let lab = PodLab::start(&[], &[]).await;
    lab.create("bare", json!({}), json!({"containers": [{"name": "app", "image": "busybox:1.36"}]})).await;
    let looping =
        lab.until("bare", "CrashLoopBackOff", Duration::from_secs(60), |p| container(p, "app").and_then(waiting_reason) == Some("CrashLoopBackOff")).await;
    let last = container(&looping, "app").and_then(|c| c.last_state.clone()?.terminated).expect("lastState");
    assert_eq!((last.exit_code, last.reason.as_deref()), (0, Some("Completed")));
}

#[tokio::test(start_paused = true)]
async fn the_liveness_example_is_restarted_by_its_exec_probe() {
    let lab = PodLab::start(&[], &[]).await;
    let spec = json!({"containers": [{
        "name": "liveness", "image": "busybox:1.36",
        "args": ["/bin/sh", "-c", "touch /tmp/healthy; sleep 30; rm -f /tmp/healthy; sleep 600"],
        "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}, "initialDelaySeconds": 5, "periodSeconds": 5},
    }]});
    lab.create("liveness-exec", json!({}), spec).await;
    let ready = lab.until("liveness-exec", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    let started = container(&ready, "liveness").and_then(|c| c.state.clone()?.running?.started_at).expect("started").0;
    let restarted = lab
        .until("liveness-exec", "restarted by its probe", Duration::from_secs(120), |p| container(p, "liveness").is_some_and(|c| c.restart_count >= 1))
        .await;
    let last = container(&restarted, "liveness").and_then(|c| c.last_state.clone()?.terminated).expect("lastState");
    assert_eq!(last.exit_code, 137, "sh as PID 1 ignores SIGTERM: killed after the grace period");
    let ran = last.finished_at.expect("finished").0.as_second() - started.as_second();
    assert!((60..=80).contains(&ran), "unhealthy from 30 s, three failures 5 s apart, 30 s of grace: ran {ran} s");
    let events = lab.events("liveness-exec").await;
    let unhealthy = events.iter().find(|e| e.reason.as_deref() == Some("Unhealthy")).and_then(|e| e.message.clone()).expect("Unhealthy");
    assert_eq!(unhealthy, "Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory\n");
}

/// An exec probe waits as long as its `timeoutSeconds` says, and a `scripted` probe rule
/// answers an exec probe as it answers an HTTP one, whatever the command would say.
#[tokio::test(start_paused = true)]
async fn exec_probes_keep_their_timeout_and_scripted_probe_rules_answer_them() {
    let rules = "rules:\n  - match: { pod: 'db' }\n    probes: { readiness: { failAfterSeconds: 20, output: 'pg_isready: no response' } }\n";
    let lab = PodLab::start(&["scripted"], &[("scripted.yaml", rules)]).await;
    let probe = |timeout: i32| json!({"exec": {"command": ["sh", "-c", "sleep 2"]}, "periodSeconds": 5, "timeoutSeconds": timeout});
    let slow = json!({"containers": [
        {"name": "patient", "image": "busybox:1.36", "command": ["sleep", "600"], "readinessProbe": probe(3)},
        {"name": "hasty", "image": "busybox:1.36", "command": ["sleep", "600"], "readinessProbe": probe(1)},
    ]});
    lab.create("slow", json!({}), slow).await;
    let ready = lab.until("slow", "patient ready", Duration::from_secs(60), |p| container(p, "patient").is_some_and(|c| c.ready)).await;
    assert!(!container(&ready, "hasty").is_some_and(|c| c.ready), "a 2 s command with the default 1 s timeout fails");
    let events = lab.events("slow").await;
    let unhealthy = events.iter().find(|e| e.reason.as_deref() == Some("Unhealthy")).and_then(|e| e.message.clone()).expect("Unhealthy");
    assert_eq!(unhealthy, "Readiness probe failed: command \"sh -c sleep 2\" timed out");

    let db = json!({"containers": [{"name": "postgres", "image": "busybox:1.36", "command": ["sleep", "600"],
        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 5}}]});
    lab.create("db", json!({"labkubelet.io/scenario": "scripted"}), db).await;
    lab.until("db", "Ready", Duration::from_secs(60), |p| container(p, "postgres").is_some_and(|c| c.ready)).await;
    lab.until("db", "not Ready from 20 s", Duration::from_secs(60), |p| container(p, "postgres").is_some_and(|c| !c.ready)).await;
    let events = lab.events("db").await;
    let unhealthy = events.iter().find(|e| e.reason.as_deref() == Some("Unhealthy")).and_then(|e| e.message.clone()).expect("Unhealthy");
    assert_eq!(unhealthy, "Readiness probe failed: pg_isready: no response", "the rule's answer, not the command's");
}

#[tokio::test(start_paused = true)]
async fn the_environment_reaches_the_command_and_exec_runs_beside_it() {
    let lab = PodLab::start(&[], &[]).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(lab.client.clone(), "default");
    let settings = serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"greeting": "hello"}})).expect("a configmap");
    config_maps.create(&PostParams::default(), &settings).await.expect("create the configmap");
    let spec = json!({"containers": [{
        "name": "app", "image": "busybox:1.36",
        "command": ["sh", "-c", "i=0; while true; do echo \"$i $GREETING from $(POD)\"; i=$((i+1)); sleep 10; done"],
        "env": [
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "greeting"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
    }]});
    lab.create("counter", json!({}), spec).await;
    let running = lab.until("counter", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    tokio::time::sleep(Duration::from_secs(25)).await;
    assert_eq!(logs(&lab, &running, "app").await, ["0 hello from counter", "1 hello from counter", "2 hello from counter"], "a line every 10 s");

    // kubectl exec counter -- kill 1: PID 1 dies, the kubelet starts the container again.
    let id = container(&running, "app").and_then(|c| c.container_id.clone()).unwrap_or_default();
    let exec = lab.runtime.exec_sync(id.trim_start_matches("labkubelet://"), &["kill".into(), "1".into()], &[], Duration::from_secs(5)).await.expect("exec");
    assert_eq!(exec.exit_code, 0);
    let again = eventually("the container restarted", Duration::from_secs(60), async || {
        let p = lab.pods.get("counter").await.ok()?;
        container(&p, "app").is_some_and(|c| c.restart_count == 1 && c.ready).then_some(p)
    })
    .await;
    let last = container(&again, "app").and_then(|c| c.last_state.clone()?.terminated).expect("lastState");
    assert_eq!((last.exit_code, last.reason.as_deref()), (143, Some("Error")));
}

#[tokio::test(start_paused = true)]
async fn a_pod_past_its_active_deadline_is_failed_with_deadline_exceeded() {
    let lab = PodLab::start(&[], &[]).await;
    let spec = json!({"activeDeadlineSeconds": 20, "terminationGracePeriodSeconds": 5,
        "containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"]}]});
    lab.create("bounded", json!({}), spec).await;
    let running = lab.until("bounded", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    let started = running.status.as_ref().and_then(|s| s.start_time.clone()).expect("startTime").0;
    let failed = lab.until("bounded", "Failed", Duration::from_secs(60), |p| phase(p) == "Failed").await;
    let status = failed.status.clone().unwrap_or_default();
    assert_eq!(
        (status.reason.as_deref(), status.message.as_deref()),
        (Some("DeadlineExceeded"), Some("Pod was active on the node longer than the specified deadline"))
    );
    let t = container(&failed, "app").and_then(|c| c.state.clone()?.terminated).expect("terminated");
    let ran = t.finished_at.expect("finished").0.as_second() - started.as_second();
    assert!((20..=27).contains(&ran), "the deadline (20 s) and a grace of 5 s: {ran} s");
    let events = lab.events("bounded").await;
    let deadline = events.iter().find(|e| e.reason.as_deref() == Some("DeadlineExceeded")).expect("the event");
    assert_eq!(deadline.type_.as_deref(), Some("Normal"));
    assert!(events.iter().any(|e| e.reason.as_deref() == Some("Killing")), "its container is stopped as at a deletion");
}

#[tokio::test(start_paused = true)]
async fn lifecycle_hooks_run_in_the_container() {
    let lab = PodLab::start(&[], &[]).await;
    // A failed postStart kills the container within the grace period; `sh` as PID 1 ignores
    // SIGTERM, so it takes all of it.
    let spec = json!({"terminationGracePeriodSeconds": 5, "containers": [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"],
        "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo no >&2; exit 1"]}}}}]});
    let created = lab.create("hooked", json!({}), spec).await;
    let failing = lab
        .until("hooked", "PostStartHookError", Duration::from_secs(30), |p| container(p, "app").and_then(waiting_reason) == Some("PostStartHookError"))
        .await;
    let uid = created.metadata.uid.unwrap_or_default();
    let expected = format!(
        "Exec lifecycle hook ([sh -c echo no >&2; exit 1]) for Container \"app\" in Pod \"hooked_default({uid})\" failed - error: command 'sh -c echo no >&2; exit 1' exited with 1: no\n, message: \"no\\n\""
    );
    let waiting = container(&failing, "app").and_then(|c| c.state.clone()?.waiting).expect("waiting");
    assert_eq!(waiting.message.as_deref(), Some(expected.as_str()));
    let events = lab.events("hooked").await;
    assert!(events.iter().any(|e| e.reason.as_deref() == Some("FailedPostStartHook") && e.message.as_deref() == Some(expected.as_str())), "{events:?}");

    // preStop: `sleep 10` holds the stop; nginx then exits at once on SIGTERM.
    let spec = json!({"containers": [{"name": "web", "image": "nginx:1.25",
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", "10"]}}}}]});
    lab.create("draining", json!({}), spec).await;
    lab.until("draining", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    let deleted = tokio::time::Instant::now();
    lab.pods.delete("draining", &Default::default()).await.expect("delete");
    lab.gone("draining", "deleted after its preStop hook", Duration::from_secs(60)).await;
    let took = deleted.elapsed().as_secs();
    assert!((10..=14).contains(&took), "the hook's 10 s, then the stop: {took} s");
}

#[tokio::test(start_paused = true)]
async fn lifecycle_hooks_reach_another_pods_server_by_its_ip() {
    let lab = PodLab::start(&[], &[]).await;
    let agnhost = "k8s.gcr.io/e2e-test-images/agnhost:2.21";
    let server = json!({"containers": [{"name": "server", "image": agnhost, "args": ["netexec", "--http-port=8080"], "ports": [{"containerPort": 8080}]}]});
    lab.create("server", json!({}), server).await;
    let server = lab.until("server", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    let ip = server.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("a pod IP");

    // As the e2e suite's hook tests: `curl` in an exec hook, an `httpGet` hook with a host.
    let curl = format!("curl http://{ip}:8080/echo?msg=poststart");
    let exec_hook =
        json!({"containers": [{"name": "app", "image": agnhost, "args": ["pause"], "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", curl]}}}}]});
    let http_hook = json!({"containers": [{"name": "app", "image": "k8s.gcr.io/pause:3.2",
        "lifecycle": {"preStop": {"httpGet": {"host": ip, "port": 8080, "path": "/echo?msg=prestop"}}}}]});
    let refused = json!({"containers": [{"name": "app", "image": "k8s.gcr.io/pause:3.2",
        "lifecycle": {"postStart": {"httpGet": {"host": ip, "port": 9999, "path": "/"}}}}]});
    lab.create("exec-hook", json!({}), exec_hook).await;
    lab.create("http-hook", json!({}), http_hook).await;
    lab.create("refused", json!({}), refused).await;
    lab.until("exec-hook", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    lab.until("http-hook", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    lab.pods.delete("http-hook", &Default::default()).await.expect("delete");
    lab.gone("http-hook", "deleted after its preStop hook", Duration::from_secs(60)).await;
    let seen = logs(&lab, &lab.pods.get("server").await.expect("the server"), "server").await;
    for msg in ["poststart", "prestop"] {
        assert!(seen.iter().any(|l| l.ends_with(&format!(" GET /echo?msg={msg}&code="))), "netexec logs each request: {seen:?}");
    }

    // Nothing listens on 9999: the hook fails and the container waits PostStartHookError.
    lab.until("refused", "PostStartHookError", Duration::from_secs(30), |p| container(p, "app").and_then(waiting_reason) == Some("PostStartHookError")).await;
    lab.event("refused", "FailedPostStartHook").await;
}

#[tokio::test(start_paused = true)]
async fn the_termination_message_comes_from_its_file_or_with_fallback_from_the_log() {
    let lab = PodLab::start(&[], &[]).await;
    let cases = [
        (
            "custom-path",
            "/bin/echo -n DONE > /dev/termination-custom-log",
            json!({"terminationMessagePath": "/dev/termination-custom-log"}),
            "Succeeded",
            Some("DONE"),
        ),
        ("fallback", "/bin/echo -n DONE; /bin/false", json!({"terminationMessagePolicy": "FallbackToLogsOnError"}), "Failed", Some("DONE")),
        ("succeeded", "/bin/echo -n DONE; /bin/true", json!({"terminationMessagePolicy": "FallbackToLogsOnError"}), "Succeeded", None),
        (
            "file-first",
            "/bin/echo -n OK > /dev/termination-log; /bin/echo DONE; /bin/false",
            json!({"terminationMessagePolicy": "FallbackToLogsOnError"}),
            "Failed",
            Some("OK"),
        ),
    ];
    for (name, script, extra, _, _) in &cases {
        let mut c = json!({"name": "term", "image": "busybox:1.36", "command": ["/bin/sh", "-c"], "args": [script]});
        c.as_object_mut().expect("an object").extend(extra.as_object().expect("an object").clone());
        lab.create(name, json!({}), json!({"restartPolicy": "Never", "containers": [c]})).await;
    }
    for (name, _, _, want_phase, message) in cases {
        let done = lab.until(name, want_phase, Duration::from_secs(30), |p| phase(p) == want_phase).await;
        let t = container(&done, "term").and_then(|c| c.state.clone()?.terminated).expect("terminated");
        assert_eq!(t.message.as_deref(), message, "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn etc_hosts_is_the_kubelets_with_the_pods_ip_and_its_host_aliases() {
    let lab = PodLab::start(&[], &[]).await;
    let spec = json!({
        "restartPolicy": "Never",
        "hostAliases": [{"ip": "123.45.67.89", "hostnames": ["foo", "bar"]}],
        "containers": [{"name": "c", "image": "busybox:1.36", "command": ["cat", "/etc/hosts"]}],
    });
    lab.create("aliases", json!({}), spec).await;
    let done = lab.until("aliases", "Succeeded", Duration::from_secs(30), |p| phase(p) == "Succeeded").await;
    let ip = done.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("a pod IP");
    let lines = logs(&lab, &done, "c").await;
    assert_eq!(lines.first().map(String::as_str), Some("# Kubernetes-managed hosts file."), "{lines:?}");
    assert!(lines.contains(&format!("{ip}\taliases")), "{lines:?}");
    assert_eq!(lines[lines.len() - 2..], ["# Entries added by HostAliases.", "123.45.67.89\tfoo\tbar"]);
}

#[tokio::test(start_paused = true)]
async fn the_security_context_and_volume_mounts_are_what_the_container_sees() {
    let lab = PodLab::start(&[], &[]).await;
    let agnhost = "registry.k8s.io/e2e-test-images/agnhost:2.21";
    let spec = json!({
        "restartPolicy": "Never",
        "securityContext": {"runAsUser": 65534},
        "volumes": [{"name": "cache", "emptyDir": {"medium": "Memory"}}, {"name": "scratch", "emptyDir": {}}],
        "containers": [
            {"name": "id", "image": "busybox:1.36", "command": ["id", "-u"]},
            {"name": "readonly", "image": "busybox:1.36", "command": ["/bin/sh", "-c", "echo test > /file; echo test > /cache/file && cat /cache/file"],
             "securityContext": {"readOnlyRootFilesystem": true}, "volumeMounts": [{"name": "cache", "mountPath": "/cache"}]},
            {"name": "mounttest", "image": agnhost, "args": ["mounttest", "--fs_type=/test-volume", "--new_file_0644=/test-volume/test-file", "--file_perm=/test-volume", "--file_mode=/test-volume/test-file"],
             "volumeMounts": [{"name": "cache", "mountPath": "/test-volume"}]},
            {"name": "default-medium", "image": agnhost, "args": ["mounttest", "--fs_type=/test-volume"], "volumeMounts": [{"name": "scratch", "mountPath": "/test-volume", "readOnly": true}]},
            {"name": "nnp", "image": "gcr.io/kubernetes-e2e-test-images/nonewprivs:1.0", "securityContext": {"allowPrivilegeEscalation": false, "runAsUser": 1000}},
            {"name": "unprivileged", "image": "busybox:1.36", "command": ["sh", "-c", "ip link add dummy0 type dummy || true"]},
        ],
    });
    lab.create("secure", json!({}), spec).await;
    let done = lab.until("secure", "Succeeded", Duration::from_secs(30), |p| phase(p) == "Succeeded").await;
    assert_eq!(logs(&lab, &done, "id").await, ["65534"]);
    assert_eq!(logs(&lab, &done, "readonly").await, ["/bin/sh: can't create /file: Read-only file system", "test"]);
    assert_eq!(
        logs(&lab, &done, "mounttest").await,
        [
            "mount type of \"/test-volume\": tmpfs",
            "content of file \"/test-volume/test-file\": mount-tester new file",
            "",
            "mode of file \"/test-volume/test-file\": -rw-r--r--",
            "perms of file \"/test-volume\": -rwxrwxrwx"
        ]
    );
    assert_eq!(logs(&lab, &done, "default-medium").await, ["mount type of \"/test-volume\": 61267"]);
    assert_eq!(logs(&lab, &done, "nnp").await, ["Effective uid: 1000"]);
    assert_eq!(logs(&lab, &done, "unprivileged").await, ["ip: RTNETLINK answers: Operation not permitted"]);
}

#[tokio::test(start_paused = true)]
async fn http_probes_reach_what_the_container_serves() {
    let lab = PodLab::start(&[], &[]).await;
    let agnhost = "registry.k8s.io/e2e-test-images/agnhost:2.21";
    let liveness = json!({"httpGet": {"path": "/healthz", "port": 8080}, "initialDelaySeconds": 15, "failureThreshold": 1});
    lab.create("liveness", json!({}), json!({"containers": [{"name": "agnhost", "image": agnhost, "args": ["liveness"], "livenessProbe": liveness}]})).await;
    let wrong_port = json!({"httpGet": {"path": "/", "port": 81}, "periodSeconds": 5});
    let right_port = json!({"tcpSocket": {"port": 80}, "periodSeconds": 5});
    let spec = json!({"containers": [
        {"name": "web", "image": agnhost, "args": ["test-webserver"], "readinessProbe": wrong_port},
        {"name": "nginx", "image": "nginx:1.25", "readinessProbe": {"httpGet": {"path": "/", "port": 80}}, "livenessProbe": right_port},
    ]});
    lab.create("webserver", json!({}), spec).await;

    // agnhost's liveness server answers 500 from 10 s after it started.
    let restarted =
        lab.until("liveness", "restarted by its HTTP probe", Duration::from_secs(120), |p| container(p, "agnhost").is_some_and(|c| c.restart_count >= 1)).await;
    assert!(container(&restarted, "agnhost").and_then(|c| c.last_state.clone()?.terminated).is_some());
    let unhealthy = lab.events("liveness").await.into_iter().find(|e| e.reason.as_deref() == Some("Unhealthy")).and_then(|e| e.message).expect("Unhealthy");
    assert_eq!(unhealthy, "Liveness probe failed: HTTP probe failed with statuscode: 500");

    // A readiness probe on a port nothing listens on: never ready, never restarted.
    let web = lab.until("webserver", "nginx ready", Duration::from_secs(60), |p| container(p, "nginx").is_some_and(|c| c.ready)).await;
    let ip = web.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("a pod IP");
    let web_status = container(&web, "web").expect("web's status");
    assert!(!web_status.ready && web_status.restart_count == 0, "{web_status:?}");
    let refused = lab.events("webserver").await.into_iter().find(|e| e.reason.as_deref() == Some("Unhealthy")).and_then(|e| e.message).expect("Unhealthy");
    assert_eq!(refused, format!("Readiness probe failed: Get \"http://{ip}:81/\": dial tcp {ip}:81: connect: connection refused"));
}

/// kubernetes.io's init container example: each init container waits in `until nslookup` for
/// its Service, which the node's containers resolve from the Services it watches.
#[tokio::test(start_paused = true)]
async fn init_containers_wait_until_nslookup_finds_their_services() {
    let lab = PodLab::start(&[], &[]).await;
    let wait_for = |service: &str| format!("until nslookup {service}; do echo waiting for {service}; sleep 2; done");
    let spec = json!({
        "initContainers": [
            {"name": "init-myservice", "image": "busybox:1.28", "command": ["sh", "-c", wait_for("myservice")]},
            {"name": "init-mydb", "image": "busybox:1.28", "command": ["sh", "-c", wait_for("mydb.default.svc.cluster.local")]},
        ],
        "containers": [{"name": "myapp-container", "image": "busybox:1.28", "command": ["sh", "-c", "echo The app is running! && sleep 3600"]}],
    });
    lab.create("myapp-pod", json!({}), spec).await;
    let waiting = lab
        .until("myapp-pod", "the first init container running", Duration::from_secs(30), |p| {
            p.status.as_ref().and_then(|s| s.init_container_statuses.as_ref()?.first()?.state.as_ref()?.running.as_ref()).is_some()
        })
        .await;
    let id = |pod: &Pod, name: &str| {
        let statuses = pod.status.as_ref().and_then(|s| s.init_container_statuses.clone()).unwrap_or_default();
        statuses.into_iter().find(|c| c.name == name).and_then(|c| c.container_id).unwrap_or_default().trim_start_matches("labkubelet://").to_string()
    };
    let init = id(&waiting, "init-myservice");
    eventually("init-myservice waits for its Service", Duration::from_secs(30), async || {
        let lines = lab.runtime.container_logs(&init, None, None).await.ok()?;
        lines.iter().any(|l| l.text == "nslookup: can't resolve 'myservice'").then_some(())
    })
    .await;
    assert_eq!(phase(&lab.pods.get("myapp-pod").await.expect("the pod")), "Pending");

    let service = |name: &str, ip: &str| json!({"metadata": {"name": name}, "spec": {"clusterIP": ip, "ports": [{"port": 80, "targetPort": 9376}]}});
    lab.create_object::<k8s_openapi::api::core::v1::Service>(service("myservice", "10.96.1.20")).await;
    let second = lab
        .until("myapp-pod", "the second init container running", Duration::from_secs(30), |p| {
            let statuses = p.status.as_ref().and_then(|s| s.init_container_statuses.clone()).unwrap_or_default();
            statuses.get(1).and_then(|c| c.state.as_ref()?.running.as_ref()).is_some()
        })
        .await;
    let found: Vec<String> = lab.runtime.container_logs(&init, None, None).await.expect("logs").into_iter().map(|l| l.text).collect();
    assert!(found.ends_with(&["Name:      myservice".to_string(), "Address 1: 10.96.1.20 myservice.default.svc.cluster.local".to_string()]), "{found:?}");
    assert_eq!(phase(&second), "Pending");

    lab.create_object::<k8s_openapi::api::core::v1::Service>(service("mydb", "10.96.1.21")).await;
    let running = lab.until("myapp-pod", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
    assert_eq!(logs(&lab, &running, "myapp-container").await, ["The app is running!"]);
}
