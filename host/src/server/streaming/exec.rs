//! `kubectl exec`: the command runs in the container's shell in its plugin, once with all
//! of stdin, line by line where stdin has no end, or as a terminal session for `-it`.

use super::remotecommand::{Options, Outcome, Streams};
use super::terminal;
use super::{NodeApi, Target, running_container, text, upgrade_streams};
use crate::runtime::{ContainerRuntime, SessionOpened};
use axum::Extension;
use axum::extract::{Path, Query, Request};
use axum::http::StatusCode;
use axum::response::Response;
use std::sync::Arc;
use std::time::Duration;

/// The most stdin an exec takes: the command gets all of it when the client closes it.
const MAX_STDIN: usize = 4 << 20;

/// `/exec/{namespace}/{pod}[/{uid}]/{container}`.
pub async fn exec(Extension(api): Extension<Arc<NodeApi>>, Path(t): Path<Target>, Query(query): Query<Vec<(String, String)>>, request: Request) -> Response {
    exec_in(api, &t.namespace, &t.pod, t.uid.as_deref(), &t.container, query, request).await
}

async fn exec_in(
    api: Arc<NodeApi>,
    namespace: &str,
    pod: &str,
    uid: Option<&str>,
    container: &str,
    query: Vec<(String, String)>,
    request: Request,
) -> Response {
    let options = match Options::from_query(&query) {
        Ok(o) => o,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let cmd: Vec<String> = query.iter().filter(|(k, _)| k == "command").map(|(_, v)| v.clone()).collect();
    let id = match running_container(&api, namespace, pod, uid, container) {
        Ok(id) => id,
        Err((code, message)) => return text(code, message),
    };
    let runtime = api.runtime.clone();
    upgrade_streams(request, options, move |streams, client| async move {
        // Where stdin cannot end, a piped shell runs each line as it arrives.
        command(runtime.as_ref(), &id, &cmd, streams, options, client.ends_stdin()).await;
        client.close().await;
    })
    .await
}

/// Runs an exec's command on its streams: a terminal session for `-it` on a shell; else,
/// where stdin has no end (`stdin_ends` false), a shell's lines run as they arrive and other
/// commands get no stdin; else the command once, with all of stdin.
async fn command(runtime: &dyn ContainerRuntime, id: &str, cmd: &[String], mut streams: Streams, options: Options, stdin_ends: bool) {
    let session = match options.stdin && (options.tty || !stdin_ends) {
        true => runtime.exec_session_open(id, cmd).await.ok(),
        false => None,
    };
    match session {
        Some(opened) if options.tty => interactive(runtime, id, cmd, streams, opened).await,
        Some(opened) => piped(runtime, id, cmd, streams, opened).await,
        None => {
            if !stdin_ends {
                streams.stdin = None;
            }
            batch(runtime, id, cmd, streams, options).await
        }
    }
}

/// A shell reading its lines from stdin without a terminal: each line runs as it arrives,
/// without echo or prompt, until `exit` or the client goes away.
async fn piped(runtime: &dyn ContainerRuntime, id: &str, cmd: &[String], mut streams: Streams, opened: SessionOpened) {
    let mut pending = Vec::new();
    let outcome = 'session: loop {
        let Some(chunk) = streams.next_stdin().await else { break Outcome::Exited(0) };
        pending.extend_from_slice(&chunk);
        for line in terminal::take_lines(&mut pending) {
            match runtime.exec_session_line(id, opened.session, &line).await {
                Ok(out) => {
                    streams.write_stdout(out.output.as_bytes()).await;
                    if let Some(code) = out.exited {
                        break 'session Outcome::Exited(code);
                    }
                }
                Err(e) => break 'session Outcome::Failed(e.to_string()),
            }
        }
        if pending.len() > MAX_STDIN {
            break Outcome::Failed(format!("a line of more than {MAX_STDIN} bytes on stdin"));
        }
    };
    runtime.exec_session_close(id, opened.session).await;
    streams.finish(b"", b"", outcome, cmd).await;
}

/// A command run once: with all of stdin when the client sends some and no terminal
/// (`kubectl exec -i … < file`), else at once.
async fn batch(runtime: &dyn ContainerRuntime, id: &str, cmd: &[String], mut streams: Streams, options: Options) {
    let stdin = if options.tty {
        Vec::new()
    } else {
        match streams.read_stdin(MAX_STDIN).await {
            Some(stdin) => stdin,
            None => return streams.finish(b"", b"", Outcome::Failed(format!("more than {MAX_STDIN} bytes on stdin")), cmd).await,
        }
    };
    match runtime.exec_sync(id, cmd, &stdin, Duration::ZERO).await {
        // A terminal has one output, with CR NL line ends.
        Ok(result) if options.tty => {
            let out = terminal::to_terminal(&result.output());
            streams.finish(&out, b"", Outcome::Exited(result.exit_code), cmd).await;
        }
        Ok(result) => streams.finish(&result.stdout, &result.stderr, Outcome::Exited(result.exit_code), cmd).await,
        Err(e) => streams.finish(b"", b"", Outcome::Failed(e.to_string()), cmd).await,
    }
}

/// A shell on a terminal (`kubectl exec -it … -- sh`): its prompt, each line run as it is
/// typed, until `exit`, Ctrl-D or the client goes away.
async fn interactive(runtime: &dyn ContainerRuntime, id: &str, cmd: &[String], mut streams: Streams, opened: SessionOpened) {
    let mut discipline = terminal::LineDiscipline::default();
    let mut prompt = opened.prompt;
    streams.write_stdout(prompt.as_bytes()).await;
    let outcome = 'session: loop {
        let Some(typed) = streams.next_stdin().await else { break Outcome::Exited(0) };
        // Key by key, so that what was typed after Enter is echoed after the line's output.
        let mut echo = Vec::new();
        for byte in typed {
            let Some(key) = discipline.feed(&[byte], &mut echo).pop() else { continue };
            streams.write_stdout(&std::mem::take(&mut echo)).await;
            match key {
                terminal::Key::Line(line) => match runtime.exec_session_line(id, opened.session, &line).await {
                    Ok(out) => {
                        streams.write_stdout(&terminal::to_terminal(&out.output)).await;
                        if let Some(code) = out.exited {
                            break 'session Outcome::Exited(code);
                        }
                        prompt = out.prompt;
                    }
                    Err(e) => break 'session Outcome::Failed(e.to_string()),
                },
                terminal::Key::Interrupt => {}
                terminal::Key::EndOfInput => break 'session Outcome::Exited(0),
            }
            streams.write_stdout(prompt.as_bytes()).await;
        }
        streams.write_stdout(&echo).await;
    };
    // Gone already when `exit` ended it; closing twice is harmless.
    runtime.exec_session_close(id, opened.session).await;
    streams.finish(b"", b"", outcome, cmd).await;
}
