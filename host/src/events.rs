//! Events as the kubelet's recorder writes them: source `kubelet` on this host, and repeats
//! of the same event folded into one with a growing count and a new lastTimestamp, as
//! client-go's event correlator does, rather than a new Event each time. Every event also
//! goes to the node's [`Journal`] (the timeline); a standalone node has only that. As
//! client-go's broadcaster, recording queues the event for a writer task and returns.

use crate::timeline::{Journal, What};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What makes two events the same: namespace, involved object, type, reason, message.
type EventKey = (String, String, String, String, String);

/// How many events wait for the writer before new ones are dropped, as client-go's
/// broadcaster (`maxQueuedEvents`) drops them rather than block the kubelet.
const QUEUED_EVENTS: usize = 1000;

/// One event on its way to the API server.
struct Queued {
    object: ObjectReference,
    type_: String,
    reason: String,
    message: String,
    /// When it was recorded, in nanoseconds since the Unix epoch.
    at: i64,
}

/// Records events for one node's kubelet. Recording never waits for the API server: the
/// event goes to the journal at once and to a queue that a writer task of its own drains,
/// so a slow API server delays events, never the pod workers that record them.
pub struct EventRecorder {
    /// The writer's queue; None for a standalone node: there is no API server to write to.
    /// Boxed: the queue allocates room for its events 32 at a time.
    queue: Option<mpsc::Sender<Box<Queued>>>,
    journal: Arc<Journal>,
    host: String,
    clock: crate::clock::Clock,
}

impl EventRecorder {
    /// A recorder whose events the API server gets from a task this starts (inside a tokio
    /// runtime); the task ends once the recorder is dropped and the queue is written.
    pub fn new(client: kube::Client, host: &str, clock: crate::clock::Clock) -> Self {
        let (queue, queued) = mpsc::channel(QUEUED_EVENTS);
        let writer = EventWriter { client, host: host.to_string(), seen: Seen::default(), last_name_nanos: 0 };
        tokio::spawn(writer.run(queued));
        EventRecorder { queue: Some(queue), ..Self::standalone(host, clock) }
    }

    /// A recorder with no API server: events go to the journal and the log only.
    pub fn standalone(host: &str, clock: crate::clock::Clock) -> Self {
        EventRecorder { queue: None, journal: Arc::new(Journal::new(host)), host: host.to_string(), clock }
    }

    /// The recorder, adding its events to `journal` (a node's timeline outlives a restart
    /// of its kubelet logic).
    pub fn with_journal(mut self, journal: Arc<Journal>) -> Self {
        self.journal = journal;
        self
    }

    /// The node's timeline, which every recorded event is added to.
    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// The reference the kubelet uses for its Node: uid is the node name.
    pub fn node_ref(node: &str) -> ObjectReference {
        ObjectReference { kind: Some("Node".into()), name: Some(node.into()), uid: Some(node.into()), ..Default::default() }
    }

    /// Records an event: on the timeline now, in the API server when the writer gets to it.
    /// Events are best effort: a failed write is logged, and a full queue drops the event.
    pub fn record(&self, object: &ObjectReference, type_: EventType, reason: &str, message: &str) {
        let type_ = type_.as_str();
        let at = self.clock.now_nanos();
        let pod = (object.kind.as_deref() == Some("Pod"))
            .then(|| format!("{}/{}", object.namespace.as_deref().unwrap_or("default"), object.name.as_deref().unwrap_or("")));
        // `spec.containers{app}`, `spec.initContainers{migrate}`: the container the event is about.
        let container = object.field_path.as_deref().and_then(|f| f.split_once('{')).and_then(|(_, rest)| rest.strip_suffix('}')).map(str::to_string);
        let what = What::Event { type_: type_.into(), reason: reason.into(), message: message.into(), container };
        self.journal.record(at, pod.as_deref(), what);
        let Some(queue) = &self.queue else {
            tracing::info!(node = %self.host, object = ?object.name, type_, reason, "{message}");
            return;
        };
        let queued = Box::new(Queued { object: object.clone(), type_: type_.into(), reason: reason.into(), message: message.into(), at });
        if queue.try_send(queued).is_err() {
            tracing::warn!(node = %self.host, reason, "the event queue is full: an event is dropped");
        }
    }
}

/// An event's type, as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// How many events a node remembers to fold repeats into: client-go's `maxLruCacheEntries`.
/// The cache grows to it as events come: one made with this capacity would reserve its table
/// at once, 136 KiB on every idle node.
const SEEN_EVENTS: usize = 4096;

/// The events a node wrote last, by what makes a repeat, with their names and counts; the
/// least recently seen is forgotten past [`SEEN_EVENTS`].
struct Seen(lru::LruCache<EventKey, (String, i32)>);

impl Default for Seen {
    fn default() -> Self {
        Seen(lru::LruCache::unbounded())
    }
}

impl Seen {
    fn get_mut(&mut self, key: &EventKey) -> Option<&mut (String, i32)> {
        self.0.get_mut(key)
    }

    /// A new event, written as `name` with count 1.
    fn remember(&mut self, key: EventKey, name: String) {
        self.0.put(key, (name, 1));
        if self.0.len() > SEEN_EVENTS {
            self.0.pop_lru();
        }
    }
}

/// Writes one node's events in the order they were recorded, folding repeats into one.
struct EventWriter {
    client: kube::Client,
    host: String,
    /// The events written last: their names and counts. A repeat of one forgotten is
    /// written as a new event, as client-go's correlator does past its cache.
    seen: Seen,
    /// The time part of the last event name: names stay unique when two events are
    /// recorded in the same nanosecond, which a paused test clock makes common.
    last_name_nanos: i64,
}

impl EventWriter {
    async fn run(mut self, mut queued: mpsc::Receiver<Box<Queued>>) {
        while let Some(event) = queued.recv().await {
            if let Err(e) = self.write(&event).await {
                tracing::warn!(node = %self.host, reason = event.reason, "could not record an event: {e}");
            }
        }
    }

    async fn write(&mut self, e: &Queued) -> Result<(), kube::Error> {
        let object = &e.object;
        let namespace = object.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        // As client-go's aggregation key: the object without its resourceVersion, which
        // changes with every write to the pod.
        let o = object;
        let involved = format!("{:?}/{:?}/{:?}/{:?}/{:?}", o.kind, o.name, o.uid, o.api_version, o.field_path);
        let key: EventKey = (namespace, involved, e.type_.clone(), e.reason.clone(), e.message.clone());
        let now = Time(k8s_openapi::jiff::Timestamp::from_second(e.at.div_euclid(1_000_000_000)).unwrap_or_default());
        if let Some((name, count)) = self.seen.get_mut(&key) {
            let patch = serde_json::json!({"count": *count + 1, "lastTimestamp": now, "message": e.message});
            match events.patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await {
                Ok(_) => {
                    *count += 1;
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        self.last_name_nanos = e.at.max(self.last_name_nanos + 1);
        let name = format!("{}.{:x}", object.name.clone().unwrap_or_default(), self.last_name_nanos);
        let event = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(key.0.clone()), ..Default::default() },
            involved_object: object.clone(),
            type_: Some(e.type_.clone()),
            reason: Some(e.reason.clone()),
            message: Some(e.message.clone()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource { component: Some("kubelet".into()), host: Some(self.host.clone()) }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.host.clone()),
            ..Default::default()
        };
        events.create(&PostParams::default(), &event).await?;
        self.seen.remember(key, name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> EventKey {
        ("default".into(), format!("pod-{n}"), "Normal".into(), "Pulled".into(), String::new())
    }

    #[test]
    fn the_events_seen_are_bounded_and_the_least_recent_goes_first() {
        let mut seen = Seen::default();
        for n in 0..SEEN_EVENTS {
            seen.remember(key(n), format!("e{n}"));
        }
        // A repeat of the first keeps it; the second, not seen since, is the one forgotten.
        assert!(seen.get_mut(&key(0)).is_some());
        seen.remember(key(SEEN_EVENTS), "last".into());
        assert_eq!(seen.0.len(), SEEN_EVENTS);
        assert!(seen.get_mut(&key(1)).is_none() && seen.get_mut(&key(0)).is_some());
    }
}
