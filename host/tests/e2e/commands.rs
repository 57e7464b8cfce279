//! A container does what its command says, with kubectl's eyes on the real control plane:
//! a Job's `echo hello; exit 3` fails the Job (`BackoffLimitExceeded`) with exit code 3 and
//! the log line `hello`; kubernetes.io's liveness example is restarted by its exec probe
//! with the kubelet's message; a `busybox` pod without a command crash-loops, as a real one
//! does; a container's environment from a ConfigMap reaches its output; and kubernetes.io's
//! init container example waits in `nslookup` until its Services exist.

use crate::support::{Agent, cluster, container_status, event_reasons, eventually_with, pod_on};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use kube::api::{Api, ListParams, LogParams, PostParams};
use std::time::Duration;

#[tokio::test]
async fn containers_run_their_commands_and_exec_probes_run_in_them() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-commands").await;
    agent.start();
    agent.wait_ready(&Api::<Node>::all(admin.clone())).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let on_node = |name: &str, spec: serde_json::Value| pod_on("e2e-commands", name, spec);
    let config_maps: Api<ConfigMap> = Api::namespaced(admin.clone(), "default");
    let settings = serde_json::json!({"metadata": {"name": "e2e-greeting"}, "data": {"greeting": "hello from a configmap"}});
    config_maps.create(&PostParams::default(), &serde_json::from_value(settings).expect("a configmap")).await.expect("create the configmap");

    // kubernetes.io's "Define a liveness command" example.
    let liveness = on_node(
        "liveness-exec",
        serde_json::json!({"containers": [{
            "name": "liveness", "image": "busybox:1.36",
            "args": ["/bin/sh", "-c", "touch /tmp/healthy; sleep 30; rm -f /tmp/healthy; sleep 600"],
            "livenessProbe": {"exec": {"command": ["cat", "/tmp/healthy"]}, "initialDelaySeconds": 5, "periodSeconds": 5},
        }]}),
    );
    let no_command = on_node("bare-busybox", serde_json::json!({"containers": [{"name": "app", "image": "busybox:1.36"}]}));
    let greeter = on_node(
        "greeter",
        serde_json::json!({"containers": [{
            "name": "app", "image": "busybox:1.36",
            "command": ["sh", "-c", "echo \"greeting=$GREETING\"; echo \"node=$(NODE)\"; sleep 3600"],
            "env": [
                {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "e2e-greeting", "key": "greeting"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            ],
        }]}),
    );
    // kubernetes.io's init container example, as written there: each init container waits
    // for its Service in the pod's namespace (read from the service account's files).
    let wait_for = |service: &str| {
        format!(
            "until nslookup {service}.$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace).svc.cluster.local; do echo waiting for {service}; sleep 2; done"
        )
    };
    let myapp = on_node(
        "myapp-pod",
        serde_json::json!({
            "initContainers": [
                {"name": "init-myservice", "image": "busybox:1.28", "command": ["sh", "-c", wait_for("myservice")]},
                {"name": "init-mydb", "image": "busybox:1.28", "command": ["sh", "-c", wait_for("mydb")]},
            ],
            "containers": [{"name": "myapp-container", "image": "busybox:1.28", "command": ["sh", "-c", "echo The app is running! && sleep 3600"]}],
        }),
    );
    for p in [&liveness, &no_command, &greeter, &myapp] {
        pods.create(&PostParams::default(), p).await.expect("create a pod");
    }
    let jobs: Api<Job> = Api::namespaced(admin.clone(), "default");
    let job: Job = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "fails"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "nodeSelector": {"e2e": "e2e-commands"},
            "restartPolicy": "Never",
            "containers": [{"name": "work", "image": "busybox:1.36", "command": ["sh", "-c", "echo hello; exit 3"]}],
        }}},
    }))
    .expect("a job");
    jobs.create(&PostParams::default(), &job).await.expect("create the job");

    // The Job: its pod fails with the command's exit code, `kubectl logs` shows its output,
    // and the Job controller gives up.
    let failed = eventually_with(&mut agent, "the Job Failed with BackoffLimitExceeded", Duration::from_secs(120), async || {
        let status = jobs.get("fails").await.ok()?.status?;
        status.conditions.into_iter().flatten().find(|c| c.type_ == "Failed" && c.status == "True")
    })
    .await;
    assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
    let job_pod = pods.list(&ListParams::default().labels("job-name=fails")).await.expect("the Job's pod").items.into_iter().next().expect("one pod");
    let name = job_pod.metadata.name.clone().unwrap_or_default();
    let terminated = container_status(&job_pod).and_then(|c| c.state?.terminated).expect("terminated");
    assert_eq!((terminated.exit_code, terminated.reason.as_deref()), (3, Some("Error")));
    assert_eq!(pods.logs(&name, &LogParams::default()).await.expect("kubectl logs"), "hello\n");

    // The environment reaches the command: from the ConfigMap, and $(VAR) from the downward API.
    let logs = eventually_with(&mut agent, "greeter's output", Duration::from_secs(60), async || {
        pods.logs("greeter", &LogParams::default()).await.ok().filter(|l| l.contains("node="))
    })
    .await;
    assert_eq!(logs, "greeting=hello from a configmap\nnode=e2e-commands\n");

    // The init containers wait (`kubectl logs myapp-pod -c init-myservice`) until the Services exist.
    let init_logs = LogParams { container: Some("init-myservice".into()), ..LogParams::default() };
    let waiting = eventually_with(&mut agent, "init-myservice waiting for myservice", Duration::from_secs(60), async || {
        pods.logs("myapp-pod", &init_logs).await.ok().filter(|l| l.contains("waiting for myservice"))
    })
    .await;
    assert!(waiting.contains("nslookup: can't resolve 'myservice.default.svc.cluster.local'"), "{waiting}");
    assert_eq!(pods.get("myapp-pod").await.expect("myapp-pod").status.and_then(|s| s.phase).as_deref(), Some("Pending"));
    let services: Api<Service> = Api::namespaced(admin.clone(), "default");
    for name in ["myservice", "mydb"] {
        let service = serde_json::json!({"metadata": {"name": name}, "spec": {"ports": [{"protocol": "TCP", "port": 80, "targetPort": 9376}]}});
        services.create(&PostParams::default(), &serde_json::from_value(service).expect("a service")).await.expect("create the service");
    }
    eventually_with(&mut agent, "myapp-pod Running once its Services exist", Duration::from_secs(60), async || {
        pods.get("myapp-pod").await.ok()?.status?.phase.filter(|p| p == "Running")
    })
    .await;
    let ip = services.get("myservice").await.expect("myservice").spec.and_then(|s| s.cluster_ip).expect("a cluster IP");
    let found = pods.logs("myapp-pod", &init_logs).await.expect("kubectl logs -c init-myservice");
    assert!(found.ends_with(&format!("Name:      myservice.default.svc.cluster.local\nAddress 1: {ip} myservice.default.svc.cluster.local\n")), "{found}");
    let app_logs = LogParams { container: Some("myapp-container".into()), ..LogParams::default() };
    let app = eventually_with(&mut agent, "myapp-container's output", Duration::from_secs(30), async || {
        pods.logs("myapp-pod", &app_logs).await.ok().filter(|l| !l.is_empty())
    })
    .await;
    assert_eq!(app, "The app is running!\n");

    // busybox without a command: its shell ends at once, and the kubelet restarts it.
    let looping = eventually_with(&mut agent, "bare-busybox in CrashLoopBackOff", Duration::from_secs(90), async || {
        let c = container_status(&pods.get("bare-busybox").await.ok()?)?;
        (c.state.as_ref()?.waiting.as_ref()?.reason.as_deref() == Some("CrashLoopBackOff")).then_some(c)
    })
    .await;
    let last = looping.last_state.and_then(|s| s.terminated).expect("lastState");
    assert_eq!((last.exit_code, last.reason.as_deref()), (0, Some("Completed")));

    // The liveness example: healthy for 30 s, then its probe fails and the kubelet restarts it.
    let uid = pods.get("liveness-exec").await.expect("liveness-exec").metadata.uid.unwrap_or_default();
    let restarted = eventually_with(&mut agent, "liveness-exec restarted by its probe", Duration::from_secs(150), async || {
        let c = container_status(&pods.get("liveness-exec").await.ok()?)?;
        (c.restart_count >= 1).then_some(c)
    })
    .await;
    assert_eq!(restarted.last_state.and_then(|s| s.terminated).map(|t| t.exit_code), Some(137), "killed for failing its probe");
    let events = event_reasons(&admin, "default", &uid).await;
    assert!(
        events.iter().any(|(r, m)| r == "Unhealthy" && m.starts_with("Liveness probe failed: cat: can't open '/tmp/healthy': No such file or directory")),
        "kubectl describe pod liveness-exec: {events:?}"
    );
    assert!(events.iter().any(|(r, m)| r == "Killing" && m == "Container liveness failed liveness probe, will be restarted"), "{events:?}");
    agent.assert_no_refused_requests();
}
