//! `labkubelet exec POD -- CMD...`: `kubectl exec` for a lab without a cluster. It finds the
//! pod in the agent's `/pods`, then runs the command through the node's exec endpoint over
//! WebSocket (`v4.channel.k8s.io`, as kube's client speaks it), writing the container's
//! stdout and stderr as they come and exiting with the command's code. With `-i` a shell
//! reads its lines from our stdin as they come; v4 has no message that ends stdin, so its
//! end is the shell's `exit`, as the end of a script is.

use super::lab::AgentArgs;
use anyhow::{Context, bail};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use std::io::Write;
use std::process::ExitCode;
use tokio_tungstenite::tungstenite::Message;

#[derive(Args)]
pub(super) struct ExecArgs {
    /// The pod: namespace/name, or name in default (a static pod's name ends with its node's).
    pod: String,
    /// The container. Default: the pod's first.
    #[arg(long, short)]
    container: Option<String>,
    /// Passes stdin to the command, which must be a shell (`sh`, `bash`): it runs each line
    /// as it comes, as `printf 'cd /tmp\nls\n' | kubectl exec -i POD -- sh` does.
    #[arg(long, short = 'i')]
    stdin: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
    #[command(flatten)]
    agent: AgentArgs,
}

pub(super) async fn exec(args: ExecArgs) -> anyhow::Result<ExitCode> {
    if args.stdin && !is_shell(&args.command) {
        bail!(
            "-i passes stdin to a shell only (sh, bash without -c): the node's exec over WebSocket cannot tell {:?} where stdin ends; run `-i POD -- sh` and type the command",
            args.command.join(" ")
        );
    }
    let (namespace, name) = args.pod.split_once('/').unwrap_or(("default", args.pod.as_str()));
    let (status, body) = args.agent.request(http::Method::GET, "/pods", Vec::new()).await?;
    if !status.is_success() {
        bail!("the agent answered {status} to /pods: {}", String::from_utf8_lossy(&body).trim());
    }
    let pods: k8s_openapi::List<Pod> = serde_json::from_slice(&body).context("reading the agent's /pods")?;
    let found = pods.items.iter().find(|p| p.metadata.namespace.as_deref() == Some(namespace) && p.metadata.name.as_deref() == Some(name));
    let Some(pod) = found else {
        let names: Vec<String> =
            pods.items.iter().map(|p| format!("{}/{}", p.metadata.namespace.as_deref().unwrap_or(""), p.metadata.name.as_deref().unwrap_or(""))).collect();
        bail!("no pod {namespace}/{name} on the agent's node; its pods: {}", names.join(", "));
    };
    let first = pod.spec.as_ref().and_then(|s| s.containers.first()).map(|c| c.name.clone());
    let Some(container) = args.container.clone().or(first) else { bail!("pod {namespace}/{name} has no container") };

    let mut query = form_urlencoded::Serializer::new(String::new());
    for word in &args.command {
        query.append_pair("command", word);
    }
    if args.stdin {
        query.append_pair("input", "1");
    }
    query.append_pair("output", "1").append_pair("error", "1");
    let path = format!("/exec/{namespace}/{name}/{container}?{}", query.finish());
    let agent = args.agent.client().await?;
    let request = http::Request::builder().uri(&path).body(Vec::new())?;
    let connection = match agent.client.connect(request).await {
        Ok(c) => c,
        Err(kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::ProtocolSwitch(http::StatusCode::UNAUTHORIZED))) => {
            return Err(agent.unauthorized(&path));
        }
        Err(kube::Error::UpgradeConnection(kube::client::UpgradeConnectionError::ProtocolSwitch(code))) => {
            bail!("the agent refused to run the command in {namespace}/{name}/{container}: {code} (is the container running?)")
        }
        Err(e) => return Err(agent.unreachable(anyhow::Error::new(e), &path)),
    };
    let (sink, mut stream) = connection.into_stream().split();
    if args.stdin {
        tokio::spawn(send_stdin(sink));
    }
    let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
    let mut code = 0u8;
    while let Some(message) = stream.next().await {
        let data = match message.context("reading the command's output")? {
            Message::Binary(data) => data,
            Message::Close(_) => break,
            _ => continue,
        };
        match data.split_first() {
            Some((1, out)) => {
                stdout.write_all(out)?;
                stdout.flush()?;
            }
            Some((2, err)) => stderr.write_all(err)?,
            Some((3, status)) if !status.is_empty() => code = outcome(status)?,
            _ => {}
        }
    }
    Ok(ExitCode::from(code))
}

/// Whether `argv` is a shell that reads its commands from stdin.
fn is_shell(argv: &[String]) -> bool {
    let program = argv.first().map_or("", |p| p.rsplit('/').next().unwrap_or(p));
    matches!(program, "sh" | "bash" | "ash" | "dash") && !argv.iter().any(|a| a == "-c")
}

/// Sends our stdin on channel 0 as it comes, then `exit`: what a shell does at the end of
/// its input.
async fn send_stdin(mut sink: impl futures_util::Sink<Message> + Unpin) {
    use tokio::io::AsyncReadExt;
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 16 * 1024];
    let mut last = b'\n';
    loop {
        let read = match stdin.read(&mut buf[1..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf[0] = 0;
        last = buf[read];
        if sink.send(Message::Binary(buf[..=read].to_vec().into())).await.is_err() {
            return;
        }
    }
    let end: &[u8] = if last == b'\n' { b"\0exit\n" } else { b"\0\nexit\n" };
    // The command may have ended already; then nobody listens.
    let _ = sink.send(Message::Binary(end.to_vec().into())).await;
}

/// The exit code in the v4 Status the node writes on the error channel; a failure to run the
/// command at all is an error.
fn outcome(status: &[u8]) -> anyhow::Result<u8> {
    let status: k8s_openapi::apimachinery::pkg::apis::meta::v1::Status = serde_json::from_slice(status).context("reading the command's status")?;
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    let causes = status.details.and_then(|d| d.causes).unwrap_or_default();
    match causes.iter().find(|c| c.reason.as_deref() == Some("ExitCode")).and_then(|c| c.message.as_deref()?.parse::<i32>().ok()) {
        Some(code) => Ok(u8::try_from(code).unwrap_or(1)),
        None => bail!("{}", status.message.unwrap_or_default()),
    }
}
