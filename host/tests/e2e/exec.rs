//! `kubectl exec` on a lab node, through the real API server 1.20 (which passes the SPDY/3.1
//! upgrade through to the node): the command runs in the container's shell and kubectl shows
//! its output and exit code; stdin reaches it; `kill 1` ends the container as PID 1's death
//! does, and the kubelet restarts it.
//!
//! kubectl is the machine's (1.32 here, which tries WebSocket first and falls back to SPDY)
//! or, on a machine without one, the 1.20 kubectl `tests/control-plane/install.sh` builds.

use crate::support::{Agent, cluster, container_status, eventually_with, kubectl, kubectl_binary, pod_on};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, PostParams};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs kubectl on a pseudo-terminal (util-linux `script`), typing `keys` into it; the input
/// stays open until kubectl ends, as a user's terminal does. Returns (exit code, what it showed).
fn on_a_terminal(args: &[&str], keys: &str) -> (i32, String) {
    let quoted = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let command = std::iter::once(kubectl_binary().display().to_string()).chain(args.iter().map(|a| quoted(a))).collect::<Vec<_>>().join(" ");
    let mut child = Command::new("timeout")
        .args(["60", "script", "-qfec", &command, "/dev/null"])
        .env("KUBECONFIG", cluster().admin_kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(keys.as_bytes()).expect("type");
    let out = child.wait_with_output().expect("kubectl ends");
    drop(stdin);
    (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test]
async fn kubectl_exec_runs_the_command_in_the_container() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-exec").await;
    agent.start();
    agent.wait_ready(&Api::<Node>::all(admin.clone())).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let shell =
        pod_on("e2e-exec", "shell", serde_json::json!({"containers": [{"name": "app", "image": "busybox:1.36", "command": ["sh", "-c", "sleep 3600"]}]}));
    pods.create(&PostParams::default(), &shell).await.expect("create the pod");
    eventually_with(&mut agent, "shell Running", Duration::from_secs(60), async || {
        let c = container_status(&pods.get("shell").await.ok()?)?;
        c.state?.running.map(|_| ())
    })
    .await;

    let (code, out, err) = kubectl(&["exec", "shell", "--", "cat", "/etc/hostname"], "");
    assert_eq!((code, out.as_str()), (0, "shell\n"), "kubectl exec shell -- cat /etc/hostname: {err}");

    let (code, _, err) = kubectl(&["exec", "shell", "--", "sh", "-c", "echo oops >&2; exit 3"], "");
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("oops") && err.contains("command terminated with exit code 3"), "{err}");

    // State lives in the container's files: what one exec writes, the next reads.
    let (code, out, err) = kubectl(&["exec", "-i", "shell", "--", "sh"], "cd /tmp\ntouch a\nls\nexit\n");
    assert_eq!((code, out.as_str()), (0, "a\n"), "an interactive sh fed by stdin: {err}");
    let (_, out, err) = kubectl(&["exec", "shell", "--", "ls", "/tmp"], "");
    assert_eq!(out, "a\n", "{err}");

    // On a terminal (`script` gives kubectl one): a shell session with state from line to line.
    let (code, out) = on_a_terminal(&["exec", "-it", "shell", "--", "sh"], "cd /tmp\rX=5\recho \"x=$X in $PWD\"\rexit 5\r");
    assert!(out.contains("x=5 in /tmp") && out.contains("/tmp # "), "kubectl exec -it shell -- sh showed: {out:?}");
    assert_eq!(code, 5, "the session ends with exit's code: {out:?}");

    let (code, _, err) = kubectl(&["exec", "shell", "-c", "nope", "--", "true"], "");
    assert_ne!(code, 0);
    assert!(err.contains("container nope is not valid") || err.contains("container not found"), "{err}");

    // kubectl attach: what the container writes from then on.
    let ticker = pod_on(
        "e2e-exec",
        "ticker",
        serde_json::json!({"containers": [{"name": "app", "image": "busybox:1.36",
        "command": ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done"]}]}),
    );
    pods.create(&PostParams::default(), &ticker).await.expect("create the ticker");
    eventually_with(&mut agent, "the ticker's third line", Duration::from_secs(60), async || {
        pods.logs("ticker", &Default::default()).await.ok().filter(|l| l.contains("tick 2")).map(|_| ())
    })
    .await;
    let mut attach = Command::new(kubectl_binary())
        .args(["attach", "ticker"])
        .env("KUBECONFIG", cluster().admin_kubeconfig())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl attach");
    let mut shown = String::new();
    let mut reader = std::io::BufReader::new(attach.stdout.take().expect("stdout"));
    while !shown.lines().any(|l| l.starts_with("tick ")) {
        assert!(std::io::BufRead::read_line(&mut reader, &mut shown).expect("read") > 0, "kubectl attach ended: {shown}");
    }
    let _ = attach.kill();
    let _ = attach.wait();
    let first: u32 = shown.lines().find_map(|l| l.strip_prefix("tick ")).and_then(|n| n.trim().parse().ok()).expect("a tick");
    assert!(first >= 3, "attach shows what is written after it began, not the log before: {shown}");

    // kubectl run -i / -it: the container's own shell reads what is typed into the attach.
    let overrides = r#"--overrides={"spec":{"nodeSelector":{"e2e":"e2e-exec"}}}"#;
    let run = |name: &'static str, flags: &'static str| ["run", flags, "--rm", "--restart=Never", "--image=busybox:1.36", overrides, name, "--", "sh"];
    let (code, out, err) = kubectl(&run("piped", "-i"), "echo piped-$((2+3))\n");
    assert!(out.contains("piped-5"), "kubectl run -i … -- sh fed by a pipe: {out} {err}");
    assert_eq!(code, 0, "the end of stdin ends the shell (stdinOnce): {out} {err}");
    let (code, out) = on_a_terminal(&run("debug", "-it"), "echo attached-$((6*7))\rexit 4\r");
    assert!(out.contains("attached-42"), "kubectl run -it … -- sh showed: {out:?}");
    assert_eq!(code, 4, "kubectl run ends with the container's exit code: {out:?}");

    // kubectl port-forward: nginx answers on 80 (a file written by an exec included); nothing
    // listens on 81, and kubectl says the connection was refused.
    let web = pod_on("e2e-exec", "web", serde_json::json!({"containers": [{"name": "nginx", "image": "nginx:1.25"}]}));
    pods.create(&PostParams::default(), &web).await.expect("create web");
    eventually_with(&mut agent, "web Running", Duration::from_secs(60), async || {
        let c = container_status(&pods.get("web").await.ok()?)?;
        c.state?.running.map(|_| ())
    })
    .await;
    let (code, _, err) =
        kubectl(&["exec", "web", "--", "sh", "-c", "mkdir -p /usr/share/nginx/html && echo hello from web > /usr/share/nginx/html/hello.txt"], "");
    assert_eq!(code, 0, "{err}");
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port");
    let (open, closed) = (free_port(), free_port());
    let mut forward = Command::new(kubectl_binary())
        .args(["port-forward", "pod/web", &format!("{open}:80"), &format!("{closed}:81")])
        .env("KUBECONFIG", cluster().admin_kubeconfig())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let mut said = String::new();
    let mut lines = std::io::BufReader::new(forward.stdout.take().expect("stdout"));
    while said.matches("Forwarding from").count() < 2 {
        assert!(std::io::BufRead::read_line(&mut lines, &mut said).expect("read") > 0, "kubectl port-forward ended: {said}");
    }
    let get = |port: u16, path: &str| {
        use std::io::Read;
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to kubectl's port");
        tcp.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).expect("send");
        let mut answer = String::new();
        let _ = tcp.read_to_string(&mut answer);
        answer
    };
    let page = get(open, "/");
    assert!(page.starts_with("HTTP/1.1 200 OK") && page.contains("<title>Welcome to nginx!</title>"), "{page}");
    assert!(get(open, "/hello.txt").ends_with("\r\n\r\nhello from web\n"));
    assert!(get(open, "/nope").starts_with("HTTP/1.1 404 Not Found"));
    assert_eq!(get(closed, "/"), "", "nothing listens on 81");
    let _ = forward.kill();
    let out = forward.wait_with_output().expect("kubectl port-forward ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("connection refused"), "kubectl port-forward's errors: {err}");

    // kubectl cp both ways (it runs `tar` in the container): every byte value survives.
    let local = tempfile::tempdir().expect("a folder");
    let sent: Vec<u8> = (0u32..100_000).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(local.path().join("blob.bin"), &sent).expect("write the file");
    let (code, _, err) = kubectl(&["cp", &local.path().join("blob.bin").display().to_string(), "shell:/tmp/blob.bin"], "");
    assert_eq!(code, 0, "kubectl cp into the pod: {err}");
    let (_, out, err) = kubectl(&["exec", "shell", "--", "wc", "-c", "/tmp/blob.bin"], "");
    assert_eq!(out.split_whitespace().next(), Some("100000"), "{err}");
    let back = local.path().join("back.bin");
    let (code, _, err) = kubectl(&["cp", "shell:/tmp/blob.bin", &back.display().to_string()], "");
    assert_eq!(code, 0, "kubectl cp out of the pod: {err}");
    assert!(std::fs::read(&back).expect("the copy") == sent, "the copy out differs from what went in");
    // tar's complaint reaches the user (kubectl shows the container's stderr on its stdout).
    let (_, out, err) = kubectl(&["cp", "shell:/tmp/nope", &local.path().join("nope").display().to_string()], "");
    assert!(format!("{out}{err}").contains("tar: can't stat '/tmp/nope': No such file or directory"), "copying a missing file: {out}{err}");
    assert!(!local.path().join("nope").exists());

    // PID 1 killed: the container dies and the kubelet starts it again.
    let (code, _, err) = kubectl(&["exec", "shell", "--", "kill", "1"], "");
    assert!(code == 0 || err.contains("exit code"), "kubectl exec shell -- kill 1: {err}");
    let restarted = eventually_with(&mut agent, "shell restarted once and running", Duration::from_secs(60), async || {
        let c = container_status(&pods.get("shell").await.ok()?)?;
        (c.restart_count == 1 && c.state.as_ref()?.running.is_some()).then_some(c)
    })
    .await;
    assert_eq!(restarted.last_state.and_then(|s| s.terminated).map(|t| t.exit_code), Some(143), "ended by SIGTERM: 128+15");
    agent.assert_no_refused_requests();
}

/// What the Python client, client-go's WebSocket executor and Kubernetes' own e2e tests do:
/// exec, attach and port-forward over WebSocket, which the API server 1.20 passes on to the
/// node. kube-rs offers v5 then v4; the node, as a kubelet, speaks v4.
#[tokio::test]
async fn websocket_clients_exec_and_attach_through_the_api_server() {
    use kube::api::AttachParams;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-ws").await;
    agent.start();
    agent.wait_ready(&Api::<Node>::all(admin.clone())).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let spec = serde_json::json!({"containers": [{"name": "app", "image": "busybox:1.36",
        "command": ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done"]}]});
    pods.create(&PostParams::default(), &pod_on("e2e-ws", "ws", spec)).await.expect("create the pod");
    let web = serde_json::json!({"containers": [{"name": "nginx", "image": "nginx:1.25"}]});
    pods.create(&PostParams::default(), &pod_on("e2e-ws", "ws-web", web)).await.expect("create the web pod");
    for name in ["ws", "ws-web"] {
        eventually_with(&mut agent, &format!("{name} Running"), Duration::from_secs(60), async || {
            let c = container_status(&pods.get(name).await.ok()?)?;
            c.state?.running.map(|_| ())
        })
        .await;
    }
    let read_all = async |reader: Option<std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>>| {
        let mut text = String::new();
        if let Some(mut r) = reader {
            r.read_to_string(&mut text).await.expect("read");
        }
        text
    };

    // A command with its output apart and its exit code in the v4 Status.
    let mut run =
        pods.exec("ws", ["sh", "-c", "cat /etc/hostname; echo oops >&2; exit 3"], &AttachParams::default().stderr(true)).await.expect("exec over WebSocket");
    let (status, stdout, stderr) = (run.take_status().expect("status"), run.stdout().map(|r| Box::pin(r) as _), run.stderr().map(|r| Box::pin(r) as _));
    let (out, err) = tokio::join!(read_all(stdout), read_all(stderr));
    let status = status.await.expect("the error channel's Status");
    assert_eq!((out.as_str(), err.as_str()), ("ws\n", "oops\n"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"), "{status:?}");
    let code = status.details.and_then(|d| d.causes).and_then(|c| c.into_iter().find(|c| c.reason.as_deref() == Some("ExitCode"))).and_then(|c| c.message);
    assert_eq!(code.as_deref(), Some("3"));

    // A shell fed on stdin without a terminal: each line runs as it arrives, state kept.
    let mut shell = pods.exec("ws", ["sh"], &AttachParams::default().stdin(true).stderr(false)).await.expect("sh over WebSocket");
    let mut stdin = shell.stdin().expect("stdin");
    let mut stdout = shell.stdout().expect("stdout");
    stdin.write_all(b"cd /tmp\ntouch made-over-ws\nls\n").await.expect("type");
    let mut shown = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(30), stdout.read(&mut shown)).await.expect("ls answers").expect("read");
    assert_eq!(&shown[..n], b"made-over-ws\n");
    stdin.write_all(b"exit 4\n").await.expect("type exit");
    let status = shell.take_status().expect("status").await.expect("the shell's Status");
    assert_eq!(status.details.and_then(|d| d.causes).and_then(|c| c.into_iter().next()).and_then(|c| c.message).as_deref(), Some("4"));

    // Attach: the lines written from now on.
    let mut attached = pods.attach("ws", &AttachParams::default().stdin(false).stderr(false)).await.expect("attach over WebSocket");
    let mut stdout = attached.stdout().expect("stdout");
    let mut line = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(30), stdout.read(&mut line)).await.expect("a tick").expect("read");
    assert!(String::from_utf8_lossy(&line[..n]).starts_with("tick "), "{:?}", String::from_utf8_lossy(&line[..n]));
    attached.abort();

    // Port-forward: nginx's page on 80; on 81, where nothing listens, the refusal on the
    // port's error channel.
    let mut forward = pods.portforward("ws-web", &[80, 81]).await.expect("port-forward over WebSocket");
    let (mut web, mut closed) = (forward.take_stream(80).expect("port 80"), forward.take_stream(81).expect("port 81"));
    let refused = forward.take_error(81).expect("port 81's errors");
    // Each port's connection ends once it is answered, and the socket once both have.
    for port in [&mut web, &mut closed] {
        port.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.expect("send a request");
    }
    let mut page = String::new();
    tokio::time::timeout(Duration::from_secs(30), web.read_to_string(&mut page)).await.expect("nginx answers").expect("read");
    assert!(page.starts_with("HTTP/1.1 200 OK") && page.contains("<title>Welcome to nginx!</title>"), "{page}");
    let refusal = tokio::time::timeout(Duration::from_secs(30), refused).await.expect("refused in time");
    assert!(refusal.is_some_and(|e| e.contains("connection refused")), "the refusal names it");
    agent.assert_no_refused_requests();
}

/// A pod's log over WebSocket through the API server, as Kubernetes' e2e suite reads it
/// (`binary.k8s.io`): everything the node sends until it ends the stream.
async fn websocket_logs(path: &str) -> String {
    use futures_util::StreamExt;
    use kube::client::ConfigExt;
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster().admin_kubeconfig()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.unwrap();
    let mut tls = config.rustls_client_config().unwrap();
    // A WebSocket upgrade is an HTTP/1.1 request.
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let host = config.cluster_url.host().unwrap().to_string();
    let port = config.cluster_url.port_u16().unwrap_or(443);
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.unwrap();
    let server = rustls::pki_types::ServerName::try_from(host.clone()).unwrap();
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls)).connect(server, tcp).await.unwrap();
    let mut request = format!("wss://{host}:{port}{path}").into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", "binary.k8s.io".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream).await.unwrap();
    let mut text = Vec::new();
    while let Some(message) = ws.next().await {
        match message.unwrap() {
            Message::Binary(b) => text.extend_from_slice(&b),
            Message::Text(t) => text.extend_from_slice(t.as_bytes()),
            Message::Close(_) => break,
            _ => {}
        }
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// Kubernetes' conformance spec "should support retrieving logs from the container over
/// websockets": the log is read as soon as the pod runs, and holds the line its command
/// wrote first.
#[tokio::test]
async fn logs_over_websocket_hold_the_first_line_as_soon_as_the_pod_runs() {
    let admin = cluster().admin().await.expect("admin client");
    let mut agent = Agent::new("e2e-wslogs").await;
    agent.start();
    agent.wait_ready(&Api::<Node>::all(admin.clone())).await;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    for i in 0..3 {
        let name = format!("wslogs-{i}");
        let spec = serde_json::json!({"containers": [{"name": "main", "image": "busybox:1.29",
            "command": ["/bin/sh", "-c", "echo container is alive; sleep 10000"]}]});
        pods.create(&PostParams::default(), &pod_on("e2e-wslogs", &name, spec)).await.expect("create the pod");
        eventually_with(&mut agent, &format!("{name} Running"), Duration::from_secs(60), async || {
            let p = pods.get(&name).await.ok()?;
            (p.status?.phase.as_deref() == Some("Running")).then_some(())
        })
        .await;
        let logs = websocket_logs(&format!("/api/v1/namespaces/default/pods/{name}/log?container=main")).await;
        assert_eq!(logs, "container is alive\n", "{name}");
    }
    agent.assert_no_refused_requests();
}
