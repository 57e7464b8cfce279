//! Pod workers: one task per pod, so a slow or hung pod never holds up another pod or
//! another node. An update while a sync runs is not lost and not queued twice: the worker
//! syncs once more with the latest copy of the pod when the current sync ends.

use super::PodContext;
use super::sync::{Next, PodSync};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

struct Worker {
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

/// The workers of one node's pods.
pub struct PodWorkers {
    ctx: Arc<PodContext>,
    workers: Mutex<HashMap<String, Worker>>,
}

impl PodWorkers {
    pub fn new(ctx: Arc<PodContext>) -> Self {
        PodWorkers { ctx, workers: Mutex::new(HashMap::new()) }
    }

    /// Something about the pod changed: its worker syncs it (a new worker if it has none).
    pub fn update(&self, uid: &str) {
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = workers.get(uid).filter(|w| !w.task.is_finished()) {
            w.wake.notify_one();
            return;
        }
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(work(self.ctx.clone(), uid.to_string(), wake.clone()));
        workers.insert(uid.to_string(), Worker { wake, task });
    }

    /// Forgets the workers whose pod is gone.
    pub fn collect(&self) {
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, w| !w.task.is_finished());
    }

    /// How many workers are alive.
    pub fn count(&self) -> usize {
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).values().filter(|w| !w.task.is_finished()).count()
    }

    pub fn has(&self, uid: &str) -> bool {
        self.workers.lock().unwrap_or_else(|p| p.into_inner()).get(uid).is_some_and(|w| !w.task.is_finished())
    }
}

impl Drop for PodWorkers {
    fn drop(&mut self) {
        for w in self.workers.lock().unwrap_or_else(|p| p.into_inner()).values() {
            w.task.abort();
        }
    }
}

async fn work(ctx: Arc<PodContext>, uid: String, wake: Arc<Notify>) {
    let mut sync = PodSync::new(ctx.clone(), &uid);
    loop {
        // On the heap while it runs: inline, a sync's awaits would size the worker, which
        // waits between syncs for as long as the pod lives.
        match Box::pin(sync.sync()).await {
            Next::Done => return,
            Next::At(at) => {
                let wait = std::time::Duration::from_nanos(u64::try_from(at - ctx.clock.now_nanos()).unwrap_or(0));
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = ctx.clock.sleep(wait) => {}
                }
            }
        }
    }
}
