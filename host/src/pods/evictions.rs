//! The pods the eviction manager evicted, by uid, with the message their status shows. The
//! eviction manager records an eviction here and wakes the pod's worker, which stops the pod
//! and writes phase `Failed`, reason `Evicted`.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;

pub struct Evictions {
    evicted: Mutex<HashMap<String, String>>,
    /// Wakes a pod's worker.
    wake: mpsc::UnboundedSender<String>,
}

impl Evictions {
    pub(super) fn new(wake: mpsc::UnboundedSender<String>) -> Self {
        Evictions { evicted: Mutex::default(), wake }
    }

    /// Evicts a pod: its worker stops it and writes phase `Failed`, reason `Evicted` and
    /// `message`.
    pub fn evict(&self, uid: &str, message: String) {
        self.evicted.lock().unwrap_or_else(|p| p.into_inner()).insert(uid.to_string(), message);
        // The worker is gone with its node's run: nothing is left to stop.
        let _ = self.wake.send(uid.to_string());
    }

    pub fn is_evicted(&self, uid: &str) -> bool {
        self.eviction_of(uid).is_some()
    }

    /// The message of the pod's eviction, if it was evicted.
    pub fn eviction_of(&self, uid: &str) -> Option<String> {
        self.evicted.lock().unwrap_or_else(|p| p.into_inner()).get(uid).cloned()
    }

    /// Forgets the eviction of a pod that is gone.
    pub(crate) fn forget(&self, uid: &str) {
        self.evicted.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }
}
