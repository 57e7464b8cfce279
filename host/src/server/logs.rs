//! `/containerLogs/{namespace}/{pod}/{container}`: the query is a v1 PodLogOptions (follow,
//! previous, timestamps, sinceSeconds, sinceTime, tailLines, limitBytes), the container is
//! chosen from the pod's status as the kubelet's validateContainerLogStatus chooses it, and
//! the lines come from the plugin that runs the container.

use crate::clock::Clock;
use crate::runtime::ContainerRuntime;
use crate::runtime::{ContainerState, LogLine, LogStream};
use k8s_openapi::api::core::v1::Pod;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How often a followed log is read again.
const FOLLOW_PERIOD: Duration = Duration::from_secs(1);

/// How long the end of a log's body waits after its last line, so the two reach the reader
/// apart, as a Go kubelet's flushing writer sends them: the API server's WebSocket log reader
/// drops the lines of a read that also finds the body's end.
pub const END_AFTER: Duration = Duration::from_millis(100);

/// The PodLogOptions that apply to a container's log.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    /// Nanoseconds since the epoch.
    pub since_time: Option<i64>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
}

/// Why a log request is refused, with the status code the kubelet answers.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum LogError {
    /// A parameter does not parse (400).
    #[error("Unable to decode query: {0}")]
    Decode(String),
    /// The options contradict each other or are out of range (422).
    #[error("Invalid request: {0}")]
    Invalid(String),
    /// No such pod or container on this node (404).
    #[error("{0}")]
    NotFound(String),
    /// The container has no log to show yet, or the runtime failed (400, as the kubelet).
    #[error("{0}")]
    Unavailable(String),
}

impl LogError {
    pub fn status(&self) -> u16 {
        match self {
            LogError::Decode(_) | LogError::Unavailable(_) => 400,
            LogError::Invalid(_) => 422,
            LogError::NotFound(_) => 404,
        }
    }
}

/// Go's strconv.ParseBool, which the API's parameter codec uses.
fn parse_bool(name: &str, v: &str) -> Result<bool, LogError> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(LogError::Decode(format!("{name}: {v:?} is not a boolean (true or false)"))),
    }
}

fn parse_int(name: &str, v: &str) -> Result<i64, LogError> {
    v.parse().map_err(|_| LogError::Decode(format!("{name}: {v:?} is not an integer")))
}

impl LogOptions {
    /// Reads and validates the query, as the kubelet decodes and validates PodLogOptions.
    ///
    /// ```
    /// use labkubelet::server::logs::LogOptions;
    /// let q = [("tailLines", "2"), ("timestamps", "true")].map(|(k, v)| (k.to_string(), v.to_string())).into();
    /// let o = LogOptions::from_query(&q).unwrap();
    /// assert_eq!((o.tail_lines, o.timestamps), (Some(2), true));
    /// assert!(LogOptions::from_query(&[("tailLines".to_string(), "x".to_string())].into()).is_err());
    /// ```
    pub fn from_query(query: &BTreeMap<String, String>) -> Result<Self, LogError> {
        let mut o = LogOptions::default();
        for (k, v) in query {
            match k.as_str() {
                "follow" => o.follow = parse_bool(k, v)?,
                "previous" => o.previous = parse_bool(k, v)?,
                "timestamps" => o.timestamps = parse_bool(k, v)?,
                "sinceSeconds" => o.since_seconds = Some(parse_int(k, v)?),
                "tailLines" => o.tail_lines = Some(parse_int(k, v)?),
                // The old name of tailLines; "all" is no limit.
                "tail" if v == "all" => {}
                "tail" => o.tail_lines = Some(parse_int(k, v)?),
                "limitBytes" => o.limit_bytes = Some(parse_int(k, v)?),
                "sinceTime" => {
                    let t: k8s_openapi::jiff::Timestamp = v.parse().map_err(|_| LogError::Decode(format!("sinceTime: {v:?} is not an RFC 3339 time")))?;
                    o.since_time = Some(t.as_nanosecond() as i64);
                }
                _ => {}
            }
        }
        if o.since_seconds.is_some() && o.since_time.is_some() {
            return Err(LogError::Invalid("at most one of sinceTime or sinceSeconds may be specified".into()));
        }
        if o.since_seconds.is_some_and(|s| s < 1) {
            return Err(LogError::Invalid("sinceSeconds must be greater than 0".into()));
        }
        if o.tail_lines.is_some_and(|t| t < 0) {
            return Err(LogError::Invalid("tailLines must be greater than or equal to 0".into()));
        }
        if o.limit_bytes.is_some_and(|l| l < 1) {
            return Err(LogError::Invalid("limitBytes must be greater than 0".into()));
        }
        Ok(o)
    }
}

/// Which container instance's log to read, from the pod's status (the kubelet's
/// validateContainerLogStatus, with its messages).
pub fn container_id(pod: &Pod, container: &str, previous: bool) -> Result<String, LogError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let all = status.container_statuses.iter().flatten().chain(status.init_container_statuses.iter().flatten());
    let Some(c) = all.into_iter().find(|c| c.name == container) else {
        return Err(LogError::Unavailable(format!("container {container:?} in pod {name:?} is not available")));
    };
    let state = c.state.clone().unwrap_or_default();
    let last = c.last_state.clone().unwrap_or_default().terminated;
    let last_id = last.as_ref().and_then(|t| t.container_id.clone()).filter(|id| !id.is_empty());
    let terminated = |id: Option<String>| id.ok_or_else(|| LogError::Unavailable(format!("container {container:?} in pod {name:?} is terminated")));
    let id = if previous {
        last_id.ok_or_else(|| LogError::Unavailable(format!("previous terminated container {container:?} in pod {name:?} not found")))?
    } else if state.running.is_some() {
        c.container_id.clone().unwrap_or_default()
    } else if let Some(t) = state.terminated {
        terminated(t.container_id.filter(|id| !id.is_empty()).or(last_id))?
    } else if last.is_some() {
        terminated(last_id)?
    } else if let Some(w) = state.waiting {
        let why = match w.reason.as_deref().unwrap_or("") {
            "ErrImagePull" => "image can't be pulled".to_string(),
            "ImagePullBackOff" => "trying and failing to pull image".to_string(),
            other => other.to_string(),
        };
        return Err(LogError::Unavailable(format!("container {container:?} in pod {name:?} is waiting to start: {why}")));
    } else {
        return Err(LogError::Unavailable(format!("container {container:?} in pod {name:?} is waiting to start - no logs yet")));
    };
    // `<runtime>://<id>`: the runtime knows the id alone.
    Ok(id.split_once("://").map_or(id.clone(), |(_, id)| id.to_string()))
}

fn format_line(line: &LogLine, timestamps: bool) -> String {
    if !timestamps {
        return format!("{}\n", line.text);
    }
    let time = k8s_openapi::jiff::Timestamp::from_nanosecond(line.time as i128).unwrap_or_default();
    format!("{time} {}\n", line.text)
}

/// Reads a container's log once, or follows it until the container stops or the reader
/// goes away; `send` gets each chunk with the stream it came from and returns false when
/// nobody reads any more.
pub async fn stream(
    runtime: Arc<dyn ContainerRuntime>,
    clock: Clock,
    id: String,
    o: LogOptions,
    mut send: impl FnMut(String, LogStream) -> bool,
) -> Result<(), LogError> {
    let since = o.since_time.or_else(|| o.since_seconds.map(|s| clock.now_nanos() - s * 1_000_000_000));
    let tail = o.tail_lines.map(|t| u32::try_from(t).unwrap_or(u32::MAX));
    let unavailable = |e: crate::runtime::RuntimeError| LogError::Unavailable(format!("failed to get logs: {e}"));
    let mut lines = runtime.container_logs(&id, since, tail).await.map_err(unavailable)?;
    let mut budget = o.limit_bytes.map(|b| usize::try_from(b).unwrap_or(usize::MAX));
    // The newest timestamp sent and how many lines at it were sent: each later read starts
    // at that timestamp (the runtime's `since` is inclusive) and skips those lines.
    let (mut cursor, mut at_cursor) = (i64::MIN, 0usize);
    let mut last_round = !o.follow || o.previous;
    loop {
        let mut skip = at_cursor;
        for line in &lines {
            if line.time < cursor || (line.time == cursor && skip > 0) {
                skip = skip.saturating_sub(usize::from(line.time == cursor));
                continue;
            }
            let mut chunk = format_line(line, o.timestamps);
            if let Some(left) = budget.as_mut() {
                if chunk.len() >= *left {
                    chunk.truncate((0..=*left).rev().find(|i| chunk.is_char_boundary(*i)).unwrap_or(0));
                    send(chunk, line.stream);
                    return Ok(());
                }
                *left -= chunk.len();
            }
            if !send(chunk, line.stream) {
                return Ok(());
            }
            if line.time == cursor {
                at_cursor += 1;
            } else {
                (cursor, at_cursor) = (line.time, 1);
            }
        }
        if last_round {
            return Ok(());
        }
        // A container that stopped gets one more read: the lines it wrote as it stopped.
        last_round = !matches!(runtime.container_status(&id).await, Ok(s) if s.state == ContainerState::Running);
        if !last_round {
            clock.sleep(FOLLOW_PERIOD).await;
        }
        // From the last line sent, or from `since` while none was.
        let from = if cursor == i64::MIN { since } else { Some(cursor) };
        lines = runtime.container_logs(&id, from, None).await.map_err(unavailable)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "web"}, "status": status})).unwrap()
    }

    #[test]
    fn the_container_is_chosen_as_the_kubelet_chooses_it() {
        let running = pod(serde_json::json!({"containerStatuses": [{"name": "c", "image": "x", "imageID": "", "ready": true, "restartCount": 1,
            "containerID": "labkubelet://new", "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "containerID": "labkubelet://old"}}}]}));
        assert_eq!(container_id(&running, "c", false).unwrap(), "new");
        assert_eq!(container_id(&running, "c", true).unwrap(), "old");
        assert_eq!(container_id(&running, "x", false).unwrap_err().to_string(), "container \"x\" in pod \"web\" is not available");
        let pulling = pod(serde_json::json!({"containerStatuses": [{"name": "c", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff"}}}]}));
        assert_eq!(
            container_id(&pulling, "c", false).unwrap_err().to_string(),
            "container \"c\" in pod \"web\" is waiting to start: trying and failing to pull image"
        );
        assert_eq!(container_id(&pulling, "c", true).unwrap_err().to_string(), "previous terminated container \"c\" in pod \"web\" not found");
    }

    #[test]
    fn bad_options_name_the_parameter() {
        let q = |k: &str, v: &str| [(k.to_string(), v.to_string())].into();
        assert_eq!(
            LogOptions::from_query(&q("follow", "yes")).unwrap_err().to_string(),
            "Unable to decode query: follow: \"yes\" is not a boolean (true or false)"
        );
        assert_eq!(LogOptions::from_query(&q("limitBytes", "0")).unwrap_err().status(), 422);
        assert_eq!(LogOptions::from_query(&q("tail", "all")).unwrap().tail_lines, None);
    }
}
