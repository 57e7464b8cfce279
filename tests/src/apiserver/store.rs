//! The double's storage: objects as JSON, one resourceVersion counter for everything (as
//! etcd's revision is), and a bounded history of changes that watches resume from.

use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::broadcast;

/// How many changes a watch can resume from; older resourceVersions get 410 Gone.
pub const HISTORY: usize = 1000;

/// Where an object lives: its resource (plural), namespace ("" when cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub resource: &'static str,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "ADDED",
            Change::Modified => "MODIFIED",
            Change::Deleted => "DELETED",
        }
    }
}

/// One change, as a watch delivers it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub key: Key,
    pub change: Change,
    pub object: Value,
}

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    history: VecDeque<Event>,
}

impl Inner {
    fn matching(&self, resource: &str, namespace: Option<&str>) -> Vec<Value> {
        self.objects.iter().filter(|(k, _)| k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns)).map(|(_, v)| v.clone()).collect()
    }
}

/// The objects of the double.
pub struct Store {
    inner: Mutex<Inner>,
    events: broadcast::Sender<Event>,
}

impl Default for Store {
    fn default() -> Self {
        Store { inner: Mutex::new(Inner::default()), events: broadcast::channel(4096).0 }
    }
}

/// What a watch starts from.
pub enum Start {
    /// Every matching object as ADDED, then changes.
    Now(Vec<Value>, u64),
    /// Changes after the given resourceVersion.
    After(Vec<Event>),
    /// The resourceVersion is older than the history: 410 Gone.
    Expired { oldest: u64 },
}

impl Store {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &Key) -> Option<Value> {
        self.lock().objects.get(key).cloned()
    }

    /// The current resourceVersion of the whole store.
    pub fn revision(&self) -> u64 {
        self.lock().rv
    }

    /// Objects of a resource (in a namespace, or all).
    pub fn list(&self, resource: &str, namespace: Option<&str>) -> (Vec<Value>, u64) {
        let inner = self.lock();
        (inner.matching(resource, namespace), inner.rv)
    }

    /// Applies a change made by `f` to the current object (None when absent) atomically:
    /// `f` returns the new object (None deletes) or an error, and the store stamps the new
    /// resourceVersion on it.
    pub fn change<E>(&self, key: &Key, f: impl FnOnce(Option<&Value>, u64) -> Result<Option<Value>, E>) -> Result<Option<Value>, E> {
        let mut inner = self.lock();
        let current = inner.objects.get(key);
        let existed = current.is_some();
        let next_rv = inner.rv + 1;
        let Some(mut object) = f(current, next_rv)? else {
            if let Some(mut gone) = inner.objects.remove(key) {
                inner.rv = next_rv;
                gone["metadata"]["resourceVersion"] = Value::String(next_rv.to_string());
                self.record(&mut inner, Event { rv: next_rv, key: key.clone(), change: Change::Deleted, object: gone.clone() });
                return Ok(Some(gone));
            }
            return Ok(None);
        };
        if current_equals(inner.objects.get(key), &object) {
            // A write that changes nothing does not bump the resourceVersion.
            return Ok(Some(object));
        }
        inner.rv = next_rv;
        object["metadata"]["resourceVersion"] = Value::String(next_rv.to_string());
        inner.objects.insert(key.clone(), object.clone());
        let change = if existed { Change::Modified } else { Change::Added };
        self.record(&mut inner, Event { rv: next_rv, key: key.clone(), change, object: object.clone() });
        Ok(Some(object))
    }

    fn record(&self, inner: &mut Inner, event: Event) {
        inner.history.push_back(event.clone());
        while inner.history.len() > HISTORY {
            inner.history.pop_front();
        }
        let _ = self.events.send(event);
    }

    /// Starts a watch: the backlog to send first, and the live changes after it.
    pub fn watch(&self, resource: &str, namespace: Option<&str>, from: Option<u64>) -> (Start, broadcast::Receiver<Event>) {
        let inner = self.lock();
        let live = self.events.subscribe();
        let start = match from {
            None | Some(0) => Start::Now(inner.matching(resource, namespace), inner.rv),
            Some(rv) => {
                let oldest = inner.history.front().map_or(inner.rv + 1, |e| e.rv);
                if rv + 1 < oldest && rv < inner.rv {
                    Start::Expired { oldest }
                } else {
                    Start::After(inner.history.iter().filter(|e| e.rv > rv).cloned().collect())
                }
            }
        };
        (start, live)
    }
}

/// Equal apart from the resourceVersion the store stamps.
fn current_equals(current: Option<&Value>, next: &Value) -> bool {
    let Some(current) = current else { return false };
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
        }
        v
    };
    strip(current) == strip(next)
}
