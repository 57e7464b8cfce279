//! The remote command stream protocols (`channel.k8s.io` to `v4.channel.k8s.io`), the
//! server's side, as the kubelet's streaming server speaks them
//! (pkg/kubelet/cri/streaming/remotecommand): over SPDY the client opens one stream per
//! channel (`streamtype` error, stdin, stdout, stderr, resize); over WebSocket
//! ([`super::websocket`]) the channels are numbered in each message. The server ends with the
//! command's outcome on the error channel.

use super::channel::Channel;
use super::spdy::{Connection, StreamWriter, frame};
use bytes::Bytes;
use std::time::Duration;
use tokio::sync::mpsc;

/// The protocols we accept, the newest first; the client's order decides.
pub const PROTOCOLS: [&str; 4] = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];

/// How long the client has to open its streams (the kubelet's `streamCreationTimeout`).
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Which channels a request asked for (`input`, `output`, `error`, `tty` = `1`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Options {
    /// Reads the query as the kubelet does: with a TTY there is no separate stderr.
    pub fn from_query(query: &[(String, String)]) -> Result<Options, String> {
        let on = |name: &str| query.iter().any(|(k, v)| k == name && v == "1");
        let tty = on("tty");
        let options = Options { stdin: on("input"), stdout: on("output"), stderr: on("error") && !tty, tty };
        if !options.stdin && !options.stdout && !options.stderr {
            return Err("you must specify at least 1 of stdin, stdout, stderr".into());
        }
        Ok(options)
    }
}

/// The protocol to speak, the first of the client's `X-Stream-Protocol-Version` headers the
/// server speaks.
pub fn negotiate<'a>(client: impl Iterator<Item = &'a str>, server: &[&'static str]) -> Result<&'static str, NegotiationError> {
    let offered: Vec<&str> = client.flat_map(|h| h.split(',')).map(str::trim).filter(|p| !p.is_empty()).collect();
    if offered.is_empty() {
        return Err(NegotiationError::Missing);
    }
    offered
        .iter()
        .find_map(|p| server.iter().find(|s| *s == p).copied())
        .ok_or_else(|| NegotiationError::NoMatch(offered.iter().map(|s| s.to_string()).collect(), server.to_vec()))
}

/// Why no protocol was agreed, in the kubelet's words.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NegotiationError {
    #[error("unable to upgrade: X-Stream-Protocol-Version is required")]
    Missing,
    #[error("unable to upgrade: unable to negotiate protocol: client supports {0:?}, server accepts {1:?}")]
    NoMatch(Vec<String>, Vec<&'static str>),
}

/// Where one output channel goes: a SPDY stream, or a numbered WebSocket channel.
pub enum Output {
    Spdy(StreamWriter),
    WebSocket(Channel),
}

impl Output {
    pub(super) async fn write(&self, data: &[u8]) {
        // A client gone mid-write is seen by the caller's next read; nothing to do here.
        let _ = match self {
            Output::Spdy(w) => w.write(data).await.is_ok(),
            Output::WebSocket(c) => c.write(data).await,
        };
    }

    /// Ends the channel: a SPDY stream's FIN. A WebSocket channel ends with its connection.
    pub(super) async fn finish(&self) {
        if let Output::Spdy(w) = self {
            w.finish().await;
        }
    }
}

/// The streams of one command.
pub struct Streams {
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub stdout: Option<Output>,
    pub stderr: Option<Output>,
    pub error: Option<Output>,
    /// v4 reports the outcome as a JSON Status; older versions as the error's text.
    pub v4: bool,
}

/// Waits for the streams `options` asked for; `None` when the client did not open them in
/// time or went away.
pub async fn accept_streams(conn: &mut Connection, protocol: &str, options: Options) -> Option<Streams> {
    let v4 = protocol == PROTOCOLS[0];
    let resizes = options.tty && (v4 || protocol == PROTOCOLS[1]);
    let expected = 1 + usize::from(options.stdin) + usize::from(options.stdout) + usize::from(options.stderr) + usize::from(resizes);
    let mut streams = Streams { stdin: None, stdout: None, stderr: None, error: None, v4 };
    let deadline = tokio::time::Instant::now() + STREAM_CREATION_TIMEOUT;
    let mut received = 0;
    while received < expected {
        let stream = tokio::time::timeout_at(deadline, conn.streams.recv()).await.ok()??;
        received += 1;
        match frame::header(&stream.headers, "streamtype") {
            Some("error") => streams.error = Some(Output::Spdy(stream.writer)),
            Some("stdin") => streams.stdin = Some(stream.incoming),
            Some("stdout") => streams.stdout = Some(Output::Spdy(stream.writer)),
            Some("stderr") => streams.stderr = Some(Output::Spdy(stream.writer)),
            // Terminal sizes: the simulated terminal has none to change.
            Some("resize") => {}
            other => {
                tracing::debug!("unexpected stream type {other:?}");
                received -= 1;
            }
        }
    }
    Some(streams)
}

/// How a command ended.
pub enum Outcome {
    Exited(i32),
    /// The command could not be run.
    Failed(String),
}

impl Streams {
    /// All the client wrote on stdin, up to `limit` bytes (`None` when it sent more).
    pub async fn read_stdin(&mut self, limit: usize) -> Option<Vec<u8>> {
        let mut all = Vec::new();
        if let Some(stdin) = self.stdin.as_mut() {
            while let Some(chunk) = stdin.recv().await {
                if all.len() + chunk.len() > limit {
                    return None;
                }
                all.extend_from_slice(&chunk);
            }
        }
        Some(all)
    }

    /// What the client typed next; `None` once stdin ended (or was never asked for).
    pub async fn next_stdin(&mut self) -> Option<Bytes> {
        self.stdin.as_mut()?.recv().await
    }

    /// Writes to stdout as the command runs.
    pub async fn write_stdout(&self, data: &[u8]) {
        if let Some(w) = &self.stdout {
            w.write(data).await;
        }
    }

    /// Writes to stderr as the command runs.
    pub async fn write_stderr(&self, data: &[u8]) {
        if let Some(w) = &self.stderr {
            w.write(data).await;
        }
    }

    /// Writes the command's output, ends the output streams and reports `outcome` on the
    /// error stream, as the kubelet's ServeExec does.
    pub async fn finish(self, stdout: &[u8], stderr: &[u8], outcome: Outcome, cmd: &[String]) {
        for (writer, data) in [(&self.stdout, stdout), (&self.stderr, stderr)] {
            if let Some(w) = writer {
                w.write(data).await;
                w.finish().await;
            }
        }
        let Some(error) = &self.error else { return };
        let status = status(&outcome, cmd);
        let body = if self.v4 {
            Bytes::from(serde_json::to_vec(&status).unwrap_or_default())
        } else {
            // v1-v3: the error's text, nothing on success.
            Bytes::from(status.get("message").and_then(|m| m.as_str()).unwrap_or_default().to_string())
        };
        // Empty would still be a message on a WebSocket.
        if !body.is_empty() {
            error.write(&body).await;
        }
        error.finish().await;
    }
}

/// The Status the kubelet writes on the error stream: success, the exit code as the client
/// reads it (`command terminated with exit code 3`), or an internal error.
fn status(outcome: &Outcome, cmd: &[String]) -> serde_json::Value {
    match outcome {
        Outcome::Exited(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Outcome::Exited(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            // containerd's streaming exec error, which the kubelet wraps.
            "message": format!("command terminated with non-zero exit code: error executing command [{}], exit code {code}", cmd.join(" ")),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Outcome::Failed(why) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("Internal error occurred: error executing command in container: {why}"),
            "reason": "InternalError",
            "details": {"causes": [{"message": format!("error executing command in container: {why}")}]},
            "code": 500,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn options_are_read_as_the_kubelet_reads_them() {
        let o = Options::from_query(&query(&[("command", "ls"), ("output", "1"), ("error", "1")])).expect("valid");
        assert_eq!(o, Options { stdin: false, stdout: true, stderr: true, tty: false });
        let tty = Options::from_query(&query(&[("input", "1"), ("output", "1"), ("error", "1"), ("tty", "1")])).expect("valid");
        assert!(!tty.stderr, "a TTY has no separate stderr");
        assert_eq!(Options::from_query(&query(&[("command", "ls")])).unwrap_err(), "you must specify at least 1 of stdin, stdout, stderr");
    }

    #[test]
    fn the_clients_first_known_protocol_wins() {
        assert_eq!(negotiate(["v4.channel.k8s.io,v3.channel.k8s.io", "v2.channel.k8s.io"].into_iter(), &PROTOCOLS), Ok("v4.channel.k8s.io"));
        assert_eq!(negotiate(["v9.channel.k8s.io, channel.k8s.io"].into_iter(), &PROTOCOLS), Ok("channel.k8s.io"));
        assert_eq!(negotiate(std::iter::empty(), &PROTOCOLS), Err(NegotiationError::Missing));
        assert!(matches!(negotiate(["v5.channel.k8s.io"].into_iter(), &PROTOCOLS), Err(NegotiationError::NoMatch(..))));
    }

    #[test]
    fn the_exit_code_is_a_cause_the_client_reads() {
        let s = status(&Outcome::Exited(3), &["sh".into(), "-c".into(), "exit 3".into()]);
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
        assert_eq!(status(&Outcome::Exited(0), &[])["status"], "Success");
    }
}
