//! The node's HTTP API as the API server and a lab use it: the agent runs against the
//! double (TokenReview and SubjectAccessReview answered from its grants), and requests are
//! made over TLS with a client certificate, a bearer token, or nothing.

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use labkubelet::agent::{Started, run};
use labkubelet::clock::Clock;
use labkubelet::plugin::{PluginCatalog, PluginEngine, PluginPolicy};
use labkubelet::timeline::{Timeline, What};
use labkubelet_tests::apiserver::ApiServer;
use labkubelet_tests::eventually;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use std::time::Duration;

const NODE: &str = "api-node";

/// How a request proves who it is.
enum Auth {
    Nobody,
    Token(&'static str),
    Certificate(String, String),
}

struct Lab {
    server: ApiServer,
    started: Started,
    serving_cert: Vec<u8>,
    pods: Api<Pod>,
    _dir: tempfile::TempDir,
    _agent: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Lab {
    async fn start() -> Lab {
        let server = ApiServer::start().await.expect("double");
        server.set_auto_approve(true);
        let token = server.add_bootstrap_token("abcdef", "0123456789abcdef");
        let dir = tempfile::tempdir().expect("tempdir");
        let bootstrap = dir.path().join("bootstrap-kubelet.conf");
        std::fs::write(&bootstrap, server.kubeconfig_with_token(&token)).expect("bootstrap kubeconfig");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut config = labkubelet_tests::agent_config(dir.path(), vec![NODE.into()], bootstrap);
        config.started = Some(tx);
        let catalog = PluginCatalog::new(PluginEngine::new(PluginPolicy::default()).expect("engine")).await.expect("catalog");
        let plugins = dir.path().join("plugins");
        std::fs::create_dir_all(&plugins).expect("plugin dir");
        labkubelet::plugin::stock::install("image-pull-fail", &plugins).expect("stock plugin");
        catalog.sync_dir(&plugins).await;
        let agent = tokio::spawn(run(config, catalog, Clock::new()));
        let started = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await.expect("the node's API starts").expect("started");
        let serving_cert = std::fs::read(dir.path().join("pki/kubelet.crt")).expect("the serving certificate is written");
        server.add_token("alice-token", "alice", &["developers"]);
        server.add_token("bob-token", "bob", &["lab-instructors"]);
        server.grant("lab-instructors", "nodes/proxy");
        let pods = Api::namespaced(server.admin().await, "default");
        Lab { server, started, serving_cert, pods, _dir: dir, _agent: agent }
    }

    /// TLS to the node's API, trusting its serving certificate, with `auth`'s certificate.
    fn tls(&self, auth: &Auth) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&self.serving_cert[..]) {
            roots.add(cert.expect("pem")).expect("root");
        }
        let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("tls versions")
            .with_root_certificates(roots);
        match auth {
            Auth::Certificate(cert, key) => {
                let certs = CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>().expect("cert");
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("a key");
                builder.with_client_auth_cert(certs, key).expect("client auth")
            }
            _ => builder.with_no_client_auth(),
        }
    }

    async fn request(&self, method: http::Method, path: &str, auth: &Auth, body: Option<serde_json::Value>) -> (u16, String) {
        let tls = self.tls(auth);
        let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        let mut request = http::Request::builder().method(method).uri(format!("https://127.0.0.1:{}{path}", self.started.address.port()));
        if let Auth::Token(t) = auth {
            request = request.header("authorization", format!("Bearer {t}"));
        }
        let body = body.map(|b| serde_json::to_vec(&b).expect("json")).unwrap_or_default();
        let response = client.request(request.body(http_body_util::Full::new(bytes::Bytes::from(body))).expect("request")).await.expect("the API answers");
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(&self, path: &str) -> (u16, String) {
        self.request(http::Method::GET, path, &Auth::Token("bob-token"), None).await
    }

    /// Creates a pod and binds it to the node, as the scheduler does.
    async fn create(&self, name: &str, annotations: serde_json::Value) {
        let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name, "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "nginx:1.25"}]}}))
        .expect("pod");
        self.pods.create(&PostParams::default(), &pod).await.expect("create");
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name}, "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}});
        let request = http::Request::post(format!("/api/v1/namespaces/default/pods/{name}/binding"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&binding).expect("binding"))
            .expect("binding request");
        self.server.admin().await.request_text(request).await.expect("bind");
    }

    async fn until(&self, name: &str, what: &str, pred: impl Fn(&Pod) -> bool) -> Pod {
        eventually(what, Duration::from_secs(60), async || self.pods.get(name).await.ok().filter(|p| pred(p))).await
    }

    async fn trigger(&self, plugin: &str, action: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let (status, text) = self.request(http::Method::POST, &format!("/trigger/{plugin}/{action}"), &Auth::Token("bob-token"), Some(body)).await;
        (status, serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text})))
    }

    /// `kubectl exec` as the API server passes it to the node: an upgrade to SPDY/3.1, then
    /// the v4 streams the query asks for (error, stdin, stdout, stderr) with `stdin` written and
    /// closed. Returns
    /// what came on stdout, stderr and the error stream.
    async fn exec(&self, path: &str, stdin: &[u8]) -> (String, String, serde_json::Value) {
        use futures_util::{SinkExt, StreamExt};
        use labkubelet::server::streaming::spdy::frame::{Codec, FLAG_FIN, Frame};
        let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(self.tls(&Auth::Nobody)).https_only().enable_http1().build();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        let request = http::Request::post(format!("https://127.0.0.1:{}{path}", self.started.address.port()))
            .header("authorization", "Bearer bob-token")
            .header("connection", "Upgrade")
            .header("upgrade", "SPDY/3.1")
            .header("x-stream-protocol-version", "v4.channel.k8s.io")
            .header("x-stream-protocol-version", "channel.k8s.io")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        let response = client.request(request).await.expect("the API answers");
        assert_eq!(response.status(), 101, "switching protocols");
        assert_eq!(response.headers()["x-stream-protocol-version"], "v4.channel.k8s.io");
        let upgraded = hyper::upgrade::on(response).await.expect("upgraded");
        let mut conn = tokio_util::codec::Framed::new(hyper_util::rt::TokioIo::new(upgraded), Codec::default());
        // The streams the query asks for, as kubectl opens them.
        let asked = [(1, "error", ""), (3, "stdin", "input=1"), (5, "stdout", "output=1"), (7, "stderr", "error=1"), (9, "resize", "tty=1")];
        for (id, kind, _) in asked.into_iter().filter(|(_, _, param)| path.contains(param)) {
            let headers = vec![("streamtype".to_string(), kind.to_string())];
            conn.send(Frame::SynStream { stream_id: id, associated_to: 0, priority: 0, flags: 0, headers }).await.expect("open a stream");
        }
        if path.contains("input=1") {
            conn.send(Frame::Data { stream_id: 3, flags: FLAG_FIN, data: bytes::Bytes::copy_from_slice(stdin) }).await.expect("stdin");
        }
        let mut got: std::collections::BTreeMap<u32, Vec<u8>> = Default::default();
        while let Some(frame) = tokio::time::timeout(Duration::from_secs(30), conn.next()).await.expect("the exec ends") {
            match frame.expect("valid frames") {
                Frame::Data { stream_id, data, .. } => got.entry(stream_id).or_default().extend_from_slice(&data),
                Frame::GoAway { .. } => break,
                _ => {}
            }
        }
        let text = |id| String::from_utf8_lossy(got.get(&id).map_or(&[][..], Vec::as_slice)).into_owned();
        (text(5), text(7), serde_json::from_str(&text(1)).unwrap_or(json!(null)))
    }
}

fn restarts(p: &Pod) -> i32 {
    p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first()).map_or(0, |c| c.restart_count)
}

fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first()).and_then(|c| c.state.as_ref()).is_some_and(|s| s.running.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_authenticated_and_authorized_as_the_kubelet_does() {
    let lab = Lab::start().await;
    let node: Node = Api::all(lab.server.admin().await).get(NODE).await.expect("node");
    let port = node.status.and_then(|s| s.daemon_endpoints).and_then(|d| d.kubelet_endpoint).map(|e| e.port);
    assert_eq!(port, Some(i32::from(lab.started.address.port())), "the Node tells the API server where the API listens");

    assert_eq!(lab.request(http::Method::GET, "/pods", &Auth::Nobody, None).await, (401, "Unauthorized".into()));
    assert_eq!(lab.request(http::Method::GET, "/pods", &Auth::Token("forged"), None).await, (401, "Unauthorized".into()));
    assert_eq!(
        lab.request(http::Method::GET, "/pods", &Auth::Token("alice-token"), None).await,
        (403, "Forbidden (user=alice, verb=get, resource=nodes, subresource=proxy)\n".into())
    );
    let (status, body) = lab.get("/pods").await;
    assert_eq!(status, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!((list["kind"].as_str(), list["apiVersion"].as_str()), (Some("PodList"), Some("v1")));
    assert_eq!(lab.get("/healthz").await, (200, "ok".into()));
    // bob may proxy, not read metrics: /metrics is its own subresource.
    assert_eq!(lab.get("/metrics").await, (403, "Forbidden (user=bob, verb=get, resource=nodes, subresource=metrics)\n".into()));

    // The API server's kubelet client certificate (kubeadm puts it in system:masters' place).
    let (cert, key) = lab.server.client_certificate("kube-apiserver-kubelet-client", &["system:masters"]).expect("cert");
    let (status, metrics) = lab.request(http::Method::GET, "/metrics", &Auth::Certificate(cert.clone(), key.clone()), None).await;
    assert_eq!(status, 200);
    let parsed = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text");
    let names: std::collections::BTreeSet<&str> = parsed.samples.iter().map(|s| s.metric.as_str()).collect();
    for expected in [
        "labkubelet_node_lease_renew_duration_seconds_count",
        "kubelet_pleg_relist_duration_seconds_count",
        "kubelet_runtime_operations_duration_seconds_count",
        "labkubelet_node_status_writes_total",
        "labkubelet_pleg_healthy",
    ] {
        assert!(names.contains(expected), "{expected} missing from {names:?}");
    }
    assert!(parsed.samples.iter().all(|s| s.labels.get("node").is_none_or(|n| n == NODE)), "only this node's series");

    // A certificate from another CA is refused at the TLS handshake.
    let foreign_ca = ApiServer::start().await.expect("another double");
    let (cert, key) = foreign_ca.client_certificate("mallory", &["system:masters"]).expect("cert");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::pem_slice_iter(&lab.serving_cert[..]).next().expect("a cert").expect("pem")).expect("root");
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(
            CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>().expect("cert"),
            PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
        )
        .expect("client auth");
    let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let refused = client.get(format!("https://127.0.0.1:{}/pods", lab.started.address.port()).parse().expect("uri")).await;
    assert!(refused.is_err(), "a certificate the cluster CA did not sign is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_logs_honour_the_pod_log_options() {
    let lab = Lab::start().await;
    lab.create("web", json!({})).await;
    lab.until("web", "web runs", running).await;
    let base = "/containerLogs/default/web/app";

    let (status, log) = lab.get(base).await;
    assert_eq!((status, log.as_str()), (200, "app started from image nginx:1.25\n"));
    let (_, stamped) = lab.get(&format!("{base}?timestamps=true")).await;
    let (stamp, text) = stamped.trim_end().split_once(' ').expect("a timestamp, a space, the line");
    assert!(stamp.parse::<k8s_openapi::jiff::Timestamp>().is_ok() && text == "app started from image nginx:1.25", "{stamped}");
    assert_eq!(lab.get(&format!("{base}?limitBytes=3")).await, (200, "app".into()));
    assert_eq!(lab.get(&format!("{base}?tailLines=0")).await, (200, String::new()));
    assert_eq!(lab.get(&format!("{base}?sinceSeconds=3600")).await.1, log);

    // Previous: none yet; after a kill, the dead instance's log, and the new one's without it.
    assert_eq!(lab.get(&format!("{base}?previous=true")).await, (400, "previous terminated container \"app\" in pod \"web\" not found".into()));
    let (status, answer) = lab.trigger("healthy", "kill", json!({"pod": "default/web", "args": {"code": "1"}})).await;
    assert_eq!((status, answer["result"].as_str()), (200, Some("accepted")), "{answer}");
    lab.until("web", "web restarted", |p| restarts(p) == 1 && running(p)).await;
    let (status, previous) = lab.get(&format!("{base}?previous=true")).await;
    assert_eq!(status, 200);
    assert!(previous.ends_with("app exited with code 1 (Error)\n"), "{previous}");
    assert!(!lab.get(base).await.1.contains("exited"), "the current instance's log is its own");

    // Follow: the stream stays open while the container runs and ends with its last line.
    let follow_path = format!("{base}?follow=true");
    let follow = lab.get(&follow_path);
    let kill = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        lab.trigger("healthy", "kill", json!({"pod": "web", "args": {"code": "2"}})).await
    };
    let ((status, followed), _) = tokio::join!(follow, kill);
    assert_eq!(status, 200);
    assert!(followed.starts_with("app started") && followed.ends_with("app exited with code 2 (Error)\n"), "{followed}");

    // Bad input, with the kubelet's codes and messages.
    assert_eq!(lab.get("/containerLogs/default/nope/app").await, (404, "pod \"nope\" does not exist".into()));
    assert_eq!(lab.get("/containerLogs/default/web/nope").await, (404, "container \"nope\" not found in pod \"web\"".into()));
    assert_eq!(lab.get(&format!("{base}?tailLines=many")).await, (400, "Unable to decode query: tailLines: \"many\" is not an integer".into()));
    assert_eq!(lab.get(&format!("{base}?sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z")).await.0, 422);
    lab.create("typo", json!({"labkubelet.io/scenario": "image-pull-fail"})).await;
    lab.until("typo", "the pull fails", |p| format!("{:?}", p.status).contains("ImagePullBackOff")).await;
    let (status, message) = lab.get("/containerLogs/default/typo/app").await;
    assert_eq!(status, 400);
    assert!(message.starts_with("container \"app\" in pod \"typo\" is waiting to start"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_runs_the_command_in_the_container_over_spdy() {
    let lab = Lab::start().await;
    lab.create("web", json!({})).await;
    let web = lab.until("web", "web runs", running).await;
    let query = |cmd: &[&str]| {
        cmd.iter()
            .map(|c| format!("command={}", c.replace(' ', "%20").replace(';', "%3B").replace('>', "%3E").replace('&', "%26")))
            .collect::<Vec<_>>()
            .join("&")
    };

    let path = format!("/exec/default/web/app?{}&input=1&output=1&error=1", query(&["sh", "-c", "cat /etc/hostname; echo oops >&2; exit 3"]));
    let (out, err, status) = lab.exec(&path, b"").await;
    assert_eq!((out.as_str(), err.as_str()), ("web\n", "oops\n"));
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0], json!({"reason": "ExitCode", "message": "3"}));

    // stdin feeds the command; files written by one exec are there for the next.
    let (out, _, status) = lab.exec(&format!("/exec/default/web/app?{}&input=1&output=1&error=1", query(&["sh"])), b"cd /tmp\ntouch a\nls\n").await;
    assert_eq!((out.as_str(), status["status"].as_str()), ("a\n", Some("Success")));
    let (out, _, _) = lab.exec(&format!("/exec/default/web/app?{}&output=1", query(&["ls", "/tmp"])), b"").await;
    assert_eq!(out, "a\n");

    // A terminal (`kubectl exec -it web -- sh`): a prompt, keys echoed, each line run as typed
    // with the folder and variables kept, `exit` ending the session with its code.
    let (out, _, status) = lab.exec(&format!("/exec/default/web/app?{}&input=1&output=1&tty=1", query(&["sh"])), b"cd /tmp\rX=5\recho $X $PWD\rexit 7\r").await;
    assert_eq!(out, "/ # cd /tmp\r\n/tmp # X=5\r\n/tmp # echo $X $PWD\r\n5 /tmp\r\n/tmp # exit 7\r\n");
    assert_eq!(status["details"]["causes"][0]["message"], "7");

    // The kubelet's legacy run: the output as the body, a failure as a 500.
    let run = |path: &'static str| lab.request(http::Method::POST, path, &Auth::Token("bob-token"), None);
    assert_eq!(run("/run/default/web/app?cmd=cat%20/etc/hostname").await, (200, "web\n".into()));
    assert_eq!(
        run("/run/default/web/app?cmd=cat%20/nope").await,
        (500, "command 'cat /nope' exited with 1: cat: can't open '/nope': No such file or directory\n".into())
    );
    // The same with the pod's uid in the path, as the API server may name it; another uid is
    // another pod, whose container is not there.
    let uid = web.metadata.uid.clone().expect("a uid");
    let with_uid = format!("/run/default/web/{uid}/app?cmd=cat%20/etc/hostname");
    assert_eq!(lab.request(http::Method::POST, &with_uid, &Auth::Token("bob-token"), None).await, (200, "web\n".into()));
    let other = lab.request(http::Method::POST, "/run/default/web/not-its-uid/app?cmd=ls", &Auth::Token("bob-token"), None).await;
    assert_eq!(other, (500, "container not found (\"app\")".into()));

    // What the kubelet answers before any upgrade.
    let plain = |path: &'static str| lab.request(http::Method::POST, path, &Auth::Token("bob-token"), None);
    assert_eq!(plain("/exec/default/nope/app?command=ls&output=1").await, (404, "pod does not exist".into()));
    assert_eq!(plain("/exec/default/web/nope?command=ls&output=1").await, (500, "container not found (\"nope\")".into()));
    assert_eq!(plain("/exec/default/web/app?command=ls").await, (400, "you must specify at least 1 of stdin, stdout, stderr".into()));
    assert_eq!(plain("/exec/default/web/app?command=ls&output=1").await, (400, "unable to upgrade: X-Stream-Protocol-Version is required".into()));
    assert_eq!(plain("/attach/default/web/nope?output=1").await, (500, "container nope not found in pod web_default".into()));
    assert_eq!(
        lab.request(http::Method::POST, "/exec/default/web/app?command=ls&output=1", &Auth::Token("alice-token"), None).await,
        (403, "Forbidden (user=alice, verb=create, resource=nodes, subresource=proxy)\n".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_api_and_resource_metrics_report_what_the_containers_use() {
    let lab = Lab::start().await;
    lab.server.add_token("metrics-token", "metrics-server", &["metrics-readers"]);
    lab.server.grant("metrics-readers", "nodes/stats");
    lab.server.grant("metrics-readers", "nodes/metrics");
    let read = |path: &'static str| lab.request(http::Method::GET, path, &Auth::Token("metrics-token"), None);
    lab.create("busy", json!({"labkubelet.io/cpu-usage": "250m", "labkubelet.io/memory-usage": "100Mi"})).await;
    lab.create("idle", json!({})).await;
    lab.until("busy", "busy runs", running).await;
    lab.until("idle", "idle runs", running).await;

    let summary = |body: String| -> serde_json::Value { serde_json::from_str(&body).expect("the Summary is JSON") };
    let container = |s: &serde_json::Value, pod: &str| -> serde_json::Value {
        let pods = s["pods"].as_array().expect("pods");
        let found = pods.iter().find(|p| p["podRef"]["name"] == pod).unwrap_or_else(|| panic!("{pod} in {s}"));
        assert_eq!(found["podRef"]["namespace"], "default");
        assert!(found["podRef"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
        found["containers"][0].clone()
    };
    let (status, body) = read("/stats/summary").await;
    assert_eq!(status, 200, "{body}");
    let first = summary(body);
    assert_eq!(first["node"]["nodeName"], NODE);
    let busy = container(&first, "busy");
    assert_eq!(busy["name"], "app");
    assert_eq!(busy["cpu"]["usageNanoCores"], 250_000_000, "the annotation's 250m");
    assert_eq!(busy["memory"]["workingSetBytes"], 100 << 20);
    assert_eq!(container(&first, "idle")["cpu"]["usageNanoCores"], 1_000_000, "1m for a container that requests nothing");
    let memory: u64 = first["pods"].as_array().expect("pods").iter().map(|p| p["memory"]["workingSetBytes"].as_u64().expect("pod memory")).sum();
    assert_eq!(first["node"]["memory"]["workingSetBytes"].as_u64(), Some(memory), "the node's memory is its pods'");
    assert!(first["node"]["fs"]["capacityBytes"].as_u64().is_some(), "{}", first["node"]);

    // CPU time grows at the rate; a changed annotation changes the rate.
    let used = |s: &serde_json::Value| container(s, "busy")["cpu"]["usageCoreNanoSeconds"].as_u64().expect("cumulative CPU");
    let before = used(&first);
    eventually("busy's CPU time grows", Duration::from_secs(30), async || {
        let (_, body) = read("/stats/summary").await;
        Some(()).filter(|_| used(&summary(body)) > before)
    })
    .await;
    let patch = json!({"metadata": {"annotations": {"labkubelet.io/cpu-usage": "1500m"}}});
    lab.pods.patch("busy", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.expect("patch");
    eventually("busy's CPU follows its annotation", Duration::from_secs(30), async || {
        let (_, body) = read("/stats/summary?only_cpu_and_memory=true").await;
        let s = summary(body);
        Some(s).filter(|s| container(s, "busy")["cpu"]["usageNanoCores"] == 1_500_000_000 && s["node"]["fs"].is_null())
    })
    .await;

    // Read as metrics-server reads the Summary: with the types of the stats API
    // (`k8s.io/kubelet/pkg/apis/stats/v1alpha1`), nothing else accepted; the CPU it reads
    // follows the pod's.
    for path in ["/stats/summary", "/stats/summary?only_cpu_and_memory=true"] {
        let (_, body) = read(path).await;
        let typed: stats_v1alpha1::Summary = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path} as the stats API's types: {e}: {body}"));
        assert_eq!(typed.node.node_name, NODE);
        let pod = typed.pods.into_iter().find(|p| p.pod_ref.name == "busy").expect("busy");
        assert_eq!(pod.containers[0].cpu.as_ref().and_then(|c| c.usage_nano_cores), Some(1_500_000_000), "{path}");
    }

    let (status, text) = read("/metrics/resource").await;
    assert_eq!(status, 200, "{text}");
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text");
    let sample = |name: &str, pod: Option<&str>| {
        parsed
            .samples
            .iter()
            .find(|s| s.metric == name && pod.is_none_or(|p| s.labels.get("pod") == Some(p)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                _ => panic!("{name} is neither a counter nor a gauge"),
            })
            .unwrap_or_else(|| panic!("{name} for {pod:?} in {text}"))
    };
    assert_eq!(sample("container_memory_working_set_bytes", Some("busy")), f64::from(100 << 20));
    assert!(sample("container_cpu_usage_seconds_total", Some("busy")) > 0.0);
    assert!(sample("pod_cpu_usage_seconds_total", Some("busy")) >= sample("container_cpu_usage_seconds_total", Some("busy")));
    assert!(sample("node_cpu_usage_seconds_total", None) > 0.0);
    assert!(sample("node_memory_working_set_bytes", None) >= f64::from(100 << 20));
    assert_eq!(sample("scrape_error", None), 0.0);

    // As the kubelet authorizes them: stats and metrics are subresources of their own.
    assert_eq!(lab.get("/stats/summary").await, (403, "Forbidden (user=bob, verb=get, resource=nodes, subresource=stats)\n".into()));
    assert_eq!(lab.get("/metrics/resource").await, (403, "Forbidden (user=bob, verb=get, resource=nodes, subresource=metrics)\n".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_reach_the_plugin_and_the_timeline_shows_the_crashloop() {
    let lab = Lab::start().await;
    lab.create("flaky", json!({"labkubelet.io/scenario": "healthy"})).await;
    lab.until("flaky", "flaky runs", running).await;

    let (status, answer) = lab.trigger("healthy", "explode", json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(answer["result"], "unknown-action");
    assert!(answer["actions"].as_array().expect("actions").iter().any(|a| a == "kill"), "{answer}");
    assert_eq!(lab.trigger("healthy", "kill", json!({"pod": "default/ghost"})).await.1["result"], "no-such-pod");
    assert_eq!(lab.trigger("nosuch", "kill", json!({})).await.1["result"], "no-such-plugin");
    assert_eq!(lab.trigger("healthy", "kill", json!({"pod": "flaky", "args": {"code": "x"}})).await.1["result"], "invalid-argument");
    // A trigger sent to a plugin that does not serve the pod says which one does.
    lab.create("pulls", json!({"labkubelet.io/scenario": "image-pull-fail"})).await;
    lab.until("pulls", "the pull fails", |p| format!("{:?}", p.status).contains("ErrImagePull")).await;
    let (status, answer) = lab.trigger("healthy", "kill", json!({"pod": "pulls"})).await;
    assert_eq!((status, answer["result"].as_str()), (404, Some("no-such-target")));
    assert_eq!(
        answer["message"],
        "healthy runs no running container in pod default/pulls; pod default/pulls is served by image-pull-fail: \
         labkubelet trigger image-pull-fail kill --pod default/pulls"
    );
    let (_, listed) = lab.get("/pods").await;
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("a pod list");
    let served: Vec<(&str, &str)> = listed["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| (p["metadata"]["name"].as_str().unwrap_or(""), p["metadata"]["annotations"]["labkubelet.io/served-by"].as_str().unwrap_or("")))
        .collect();
    assert!(served.contains(&("pulls", "image-pull-fail")) && served.contains(&("flaky", "healthy")), "/pods: {served:?}");

    // Two kills: the first restart is immediate, the second waits out a 10 s back-off.
    lab.trigger("healthy", "kill", json!({"pod": "flaky", "args": {"code": "1"}})).await;
    lab.until("flaky", "the first restart", |p| restarts(p) == 1 && running(p)).await;
    lab.trigger("healthy", "kill", json!({"pod": "flaky", "args": {"code": "1"}})).await;
    lab.until("flaky", "CrashLoopBackOff", |p| format!("{:?}", p.status).contains("CrashLoopBackOff")).await;

    let (status, body) = lab.get("/timeline").await;
    assert_eq!(status, 200);
    let timeline: Timeline = serde_json::from_str(&body).expect("timeline json");
    let states: Vec<String> = timeline
        .entries
        .iter()
        .filter(|e| e.pod.as_deref() == Some("default/flaky"))
        .filter_map(|e| match &e.what {
            What::Container { state, reason, restart_count, .. } => Some(format!("{state}:{reason}:{restart_count}")),
            _ => None,
        })
        .collect();
    let position = |s: &str| states.iter().position(|x| x == s).unwrap_or_else(|| panic!("{s} not in {states:?}"));
    // restartCount counts restarts made: the back-off after the second death still shows 1.
    assert!(position("Running::0") < position("Running::1"), "{states:?}");
    assert!(position("Running::1") < position("Waiting:CrashLoopBackOff:1"), "{states:?}");
    let triggers = timeline.entries.iter().filter(|e| matches!(&e.what, What::Trigger { action, .. } if action == "kill")).count();
    assert!(triggers >= 2, "the kills are on the timeline");
    assert!(timeline.entries.iter().any(|e| matches!(&e.what, What::Event { reason, .. } if reason == "BackOff")), "events are on the timeline");
    let refused: std::collections::BTreeSet<&str> = timeline
        .entries
        .iter()
        .filter_map(|e| match &e.what {
            What::Trigger { result, accepted: false, .. } => result.split(':').next(),
            _ => None,
        })
        .collect();
    assert_eq!(
        refused,
        ["invalid-argument", "no-such-plugin", "no-such-pod", "no-such-target", "unknown-action"].into(),
        "every refused trigger is on the timeline"
    );
    let (status, svg) = lab.get("/timeline?format=svg").await;
    assert!(status == 200 && svg.starts_with("<svg") && svg.contains("default/flaky"), "{svg}");
    assert!(svg.contains(">✕ explode: unknown-action<") && svg.contains(">⚡ kill<"), "refused and accepted triggers are marked apart: {svg}");
    assert!(svg.contains(">exit 1 Error<") || svg.contains("<path class=\"exit\""), "the kills' exits are marked: {svg}");
    assert_eq!(lab.get("/timeline?format=png").await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_node_serves_its_static_pods_on_localhost_to_anyone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).expect("manifests");
    std::fs::write(manifests.join("web.yaml"), "metadata: {name: web}\nspec:\n  containers: [{name: nginx, image: nginx}]\n").expect("manifest");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut config = labkubelet_tests::agent_config(dir.path(), vec!["solo".into()], dir.path().join("no-bootstrap"));
    (config.standalone, config.bootstrap_kubeconfig, config.started, config.static_pod_path) = (true, None, Some(tx), Some(manifests));
    let catalog = PluginCatalog::new(PluginEngine::new(PluginPolicy::default()).expect("engine")).await.expect("catalog");
    let _agent = tokio::spawn(run(config, catalog, Clock::new()));
    let started = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("started").expect("started");
    assert!(started.address.ip().is_loopback());
    let lab_cert = std::fs::read(dir.path().join("pki/kubelet.crt")).expect("serving cert");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::pem_slice_iter(&lab_cert[..]).next().expect("cert").expect("pem")).expect("root");
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_only().enable_http1().build();
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let uri: http::Uri = format!("https://127.0.0.1:{}/pods", started.address.port()).parse().expect("uri");
    let list = eventually("the static pod runs", Duration::from_secs(30), async || {
        let response = client.get(uri.clone()).await.ok()?;
        let body = response.into_body().collect().await.ok()?.to_bytes();
        let list: serde_json::Value = serde_json::from_slice(&body).ok()?;
        (list["items"][0]["status"]["phase"] == "Running").then_some(list)
    })
    .await;
    assert_eq!(list["items"][0]["metadata"]["name"], "web-solo");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));

    // Its start time is the kubelet's from the first sync on, through every later one: a
    // standalone pod has no API copy to keep it, the status manager keeps it.
    let started_at = list["items"][0]["status"]["startTime"].clone();
    assert!(started_at.is_string(), "{list}");
    let kill: http::Uri = format!("https://127.0.0.1:{}/trigger/healthy/kill", started.address.port()).parse().expect("uri");
    let answer = client.request(http::Request::post(kill).body(http_body_util::Empty::new()).expect("request")).await.expect("trigger");
    assert_eq!(answer.status(), 200);
    let list = eventually("the killed container restarts", Duration::from_secs(30), async || {
        let body = client.get(uri.clone()).await.ok()?.into_body().collect().await.ok()?.to_bytes();
        let list: serde_json::Value = serde_json::from_slice(&body).ok()?;
        (list["items"][0]["status"]["containerStatuses"][0]["restartCount"] == 1 && list["items"][0]["status"]["phase"] == "Running").then_some(list)
    })
    .await;
    assert_eq!(list["items"][0]["status"]["startTime"], started_at, "the start time moved: {list}");
}

/// The stats API's types as `k8s.io/kubelet/pkg/apis/stats/v1alpha1` (1.20) declares them,
/// transcribed for decoding: what the node sends must be these fields and nothing else.
#[allow(dead_code, reason = "every field is decoded to hold the node to the schema; the test reads a few")]
mod stats_v1alpha1 {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Summary {
        pub node: NodeStats,
        pub pods: Vec<PodStats>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct NodeStats {
        pub node_name: String,
        #[serde(default)]
        pub system_containers: Vec<ContainerStats>,
        pub start_time: Time,
        pub cpu: Option<CpuStats>,
        pub memory: Option<MemoryStats>,
        pub fs: Option<FsStats>,
        pub runtime: Option<RuntimeStats>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct RuntimeStats {
        pub image_fs: Option<FsStats>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct PodStats {
        pub pod_ref: PodReference,
        pub start_time: Time,
        pub containers: Vec<ContainerStats>,
        pub cpu: Option<CpuStats>,
        pub memory: Option<MemoryStats>,
        #[serde(rename = "ephemeral-storage")]
        pub ephemeral_storage: Option<FsStats>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct ContainerStats {
        pub name: String,
        pub start_time: Time,
        pub cpu: Option<CpuStats>,
        pub memory: Option<MemoryStats>,
        pub rootfs: Option<FsStats>,
        pub logs: Option<FsStats>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct PodReference {
        pub name: String,
        pub namespace: String,
        pub uid: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct CpuStats {
        pub time: Time,
        pub usage_nano_cores: Option<u64>,
        pub usage_core_nano_seconds: Option<u64>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct MemoryStats {
        pub time: Time,
        pub available_bytes: Option<u64>,
        pub usage_bytes: Option<u64>,
        pub working_set_bytes: Option<u64>,
        pub rss_bytes: Option<u64>,
        pub page_faults: Option<u64>,
        pub major_page_faults: Option<u64>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "camelCase")]
    pub struct FsStats {
        pub time: Time,
        pub available_bytes: Option<u64>,
        pub capacity_bytes: Option<u64>,
        pub used_bytes: Option<u64>,
        pub inodes_free: Option<u64>,
        pub inodes: Option<u64>,
        pub inodes_used: Option<u64>,
    }
}
