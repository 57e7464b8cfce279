//! Events as the kubelet's recorder writes them: source `kubelet` on this host, and repeats
//! of the same event folded into one with a growing count and a new lastTimestamp, as
//! client-go's event correlator does, rather than a new Event each time. Every event also
//! goes to the node's [`Journal`] (the timeline); a standalone node has only that.

use crate::timeline::{Journal, What};
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// What makes two events the same: namespace, involved object, type, reason, message.
type EventKey = (String, String, String, String, String);

/// Writes events for one node's kubelet.
pub struct EventRecorder {
    /// None for a standalone node: there is no API server to write to.
    client: Option<kube::Client>,
    journal: Arc<Journal>,
    host: String,
    clock: crate::clock::Clock,
    /// The events written so far: their names and counts.
    seen: Mutex<HashMap<EventKey, (String, i32)>>,
    /// The time part of the last event name: names stay unique when two events are
    /// recorded in the same nanosecond, which a paused test clock makes common.
    last_name_nanos: Mutex<i64>,
}

impl EventRecorder {
    pub fn new(client: kube::Client, host: &str, clock: crate::clock::Clock) -> Self {
        Self::with_client(Some(client), host, clock)
    }

    /// A recorder with no API server: events go to the journal and the log only.
    pub fn standalone(host: &str, clock: crate::clock::Clock) -> Self {
        Self::with_client(None, host, clock)
    }

    fn with_client(client: Option<kube::Client>, host: &str, clock: crate::clock::Clock) -> Self {
        EventRecorder {
            client,
            journal: Arc::new(Journal::new(host)),
            host: host.to_string(),
            clock,
            seen: Mutex::new(HashMap::new()),
            last_name_nanos: Mutex::new(0),
        }
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

    fn now(&self) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(self.clock.now_nanos().div_euclid(1_000_000_000)).unwrap_or_default())
    }

    /// Records an event; failures are logged, never returned: events are best effort.
    pub async fn record(&self, object: &ObjectReference, type_: &str, reason: &str, message: &str) {
        let pod = (object.kind.as_deref() == Some("Pod"))
            .then(|| format!("{}/{}", object.namespace.as_deref().unwrap_or("default"), object.name.as_deref().unwrap_or("")));
        // `spec.containers{app}`, `spec.initContainers{migrate}`: the container the event is about.
        let container = object.field_path.as_deref().and_then(|f| f.split_once('{')).and_then(|(_, rest)| rest.strip_suffix('}')).map(str::to_string);
        let what = What::Event { type_: type_.into(), reason: reason.into(), message: message.into(), container };
        self.journal.record(self.clock.now_nanos(), pod.as_deref(), what);
        let Some(client) = &self.client else {
            tracing::info!(node = %self.host, object = ?object.name, type_, reason, "{message}");
            return;
        };
        if let Err(e) = self.try_record(client, object, type_, reason, message).await {
            tracing::warn!(reason, "could not record an event: {e}");
        }
    }

    async fn try_record(&self, client: &kube::Client, object: &ObjectReference, type_: &str, reason: &str, message: &str) -> Result<(), kube::Error> {
        let namespace = object.namespace.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "default".into());
        let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
        // As client-go's aggregation key: the object without its resourceVersion, which
        // changes with every write to the pod.
        let o = object;
        let involved = format!("{:?}/{:?}/{:?}/{:?}/{:?}", o.kind, o.name, o.uid, o.api_version, o.field_path);
        let key: EventKey = (namespace, involved, type_.to_string(), reason.to_string(), message.to_string());
        let mut seen = self.seen.lock().await;
        let now = self.now();
        if let Some((name, count)) = seen.get_mut(&key) {
            let patch = serde_json::json!({"count": *count + 1, "lastTimestamp": now, "message": message});
            match events.patch(name, &PatchParams::default(), &Patch::Strategic(patch)).await {
                Ok(_) => {
                    *count += 1;
                    return Ok(());
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let nanos = {
            let mut last = self.last_name_nanos.lock().await;
            *last = self.clock.now_nanos().max(*last + 1);
            *last
        };
        let name = format!("{}.{nanos:x}", object.name.clone().unwrap_or_default());
        let event = Event {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: Some(key.0.clone()), ..Default::default() },
            involved_object: object.clone(),
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            message: Some(message.into()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource { component: Some("kubelet".into()), host: Some(self.host.clone()) }),
            reporting_component: Some("kubelet".into()),
            reporting_instance: Some(self.host.clone()),
            ..Default::default()
        };
        events.create(&PostParams::default(), &event).await?;
        seen.insert(key, (name, 1));
        Ok(())
    }
}
