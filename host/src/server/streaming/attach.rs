//! `kubectl attach` (pkg/kubelet/server `getAttach`): the container's output from the moment
//! of attaching, and, for a container that keeps its stdin open (`stdin: true`, as
//! `kubectl run -it … -- sh` makes it), what the client types: each line goes to the
//! container's own process, whose output comes back with the rest of its log. On a
//! terminal the typing is echoed and edited as a terminal's line discipline does it.

use super::remotecommand::{Options, Outcome, Streams};
use super::{NodeApi, Target, logs, running_container, terminal, text, upgrade_streams};
use crate::runtime::{ContainerRuntime, LogStream};
use axum::Extension;
use axum::extract::{Path, Query, Request};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;

/// The longest line typed without its end; the rest of it is dropped.
const MAX_LINE: usize = 64 * 1024;

/// `/attach/{namespace}/{pod}[/{uid}]/{container}`.
pub async fn attach(Extension(api): Extension<Arc<NodeApi>>, Path(t): Path<Target>, Query(query): Query<Vec<(String, String)>>, request: Request) -> Response {
    let options = match Options::from_query(&query) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let (namespace, pod, container) = (&t.namespace, &t.pod, &t.container);
    let id = match running_container(&api, namespace, pod, t.uid.as_deref(), container) {
        Ok(id) => id,
        Err((StatusCode::INTERNAL_SERVER_ERROR, _)) => {
            return text(StatusCode::INTERNAL_SERVER_ERROR, format!("container {container} not found in pod {pod}_{namespace}"));
        }
        Err((code, message)) => return text(code, message),
    };
    upgrade_streams(request, options, move |streams, mut client| async move {
        follow(api, id, options, streams, client.gone()).await;
        client.close().await;
    })
    .await
}

/// Writes what container `id` writes from now on, and passes what is typed to its process,
/// until it stops or `gone` resolves.
async fn follow(api: Arc<NodeApi>, id: String, options: Options, mut streams: Streams, gone: impl std::future::Future<Output = ()>) {
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let from_now = logs::LogOptions { follow: true, since_time: Some(api.clock.now_nanos()), ..Default::default() };
    let (runtime, clock, followed) = (api.runtime.clone(), api.clock, id.clone());
    tokio::spawn(async move { logs::stream(runtime, clock, followed, from_now, |chunk, stream| tx.send((chunk, stream)).is_ok()).await });
    let runtime = api.runtime.clone();
    // A container that does not read its stdin gets nothing of what is typed, as a real one.
    let mut stdin = match options.stdin {
        true => runtime.exec_session_open(&id, &[]).await.ok().map(|opened| Stdin {
            session: opened.session,
            typed: Vec::new(),
            tty: options.tty.then(terminal::LineDiscipline::default),
        }),
        false => None,
    };
    tokio::pin!(gone);
    loop {
        tokio::select! {
            line = lines.recv() => match line {
                Some((chunk, _)) if options.tty => streams.write_stdout(&terminal::to_terminal(&chunk)).await,
                Some((chunk, LogStream::Stderr)) => streams.write_stderr(chunk.as_bytes()).await,
                Some((chunk, LogStream::Stdout)) => streams.write_stdout(chunk.as_bytes()).await,
                // The container stopped.
                None => break,
            },
            typed = streams.next_stdin(), if stdin.is_some() => {
                let open = match (typed, stdin.as_mut()) {
                    (Some(bytes), Some(input)) => input.typed(runtime.as_ref(), &id, &bytes, &streams).await,
                    _ => false,
                };
                // The end of stdin: the container's input ends with it when it has stdinOnce.
                if !open && let Some(input) = stdin.take() {
                    runtime.exec_session_close(&id, input.session).await;
                }
            },
            () = &mut gone => break,
        }
    }
    if let Some(input) = stdin {
        runtime.exec_session_close(&id, input.session).await;
    }
    streams.finish(b"", b"", Outcome::Exited(0), &[]).await;
}

/// What is typed into an attach: the lines go to the container's process.
struct Stdin {
    session: u64,
    /// An unfinished line, without a terminal.
    typed: Vec<u8>,
    /// On a terminal, its line discipline.
    tty: Option<terminal::LineDiscipline>,
}

impl Stdin {
    /// Passes typed `bytes` on; `false` once the input has ended (Ctrl-D on a terminal, or
    /// the process no longer reads it).
    async fn typed(&mut self, runtime: &dyn ContainerRuntime, id: &str, bytes: &[u8], streams: &Streams) -> bool {
        let lines = match self.tty.as_mut() {
            Some(discipline) => {
                let mut echo = Vec::new();
                let keys = discipline.feed(bytes, &mut echo);
                streams.write_stdout(&echo).await;
                let mut lines = Vec::new();
                for key in keys {
                    match key {
                        terminal::Key::Line(line) => lines.push(line),
                        terminal::Key::Interrupt => {}
                        terminal::Key::EndOfInput => {
                            self.send(runtime, id, lines).await;
                            return false;
                        }
                    }
                }
                lines
            }
            None => {
                self.typed.extend_from_slice(bytes);
                let lines = terminal::take_lines(&mut self.typed);
                self.typed.truncate(MAX_LINE);
                lines
            }
        };
        self.send(runtime, id, lines).await
    }

    /// Sends `lines` to the process; `false` when it is gone.
    async fn send(&self, runtime: &dyn ContainerRuntime, id: &str, lines: Vec<String>) -> bool {
        for line in lines {
            match runtime.exec_session_line(id, self.session, &line).await {
                Ok(out) if out.exited.is_none() => {}
                _ => return false,
            }
        }
        true
    }
}
