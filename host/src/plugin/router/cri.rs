//! The CRI of a node over its plugins: each call goes to the plugin that serves the pod,
//! or that holds the id.

use super::{PluginRuntime, runtime_error};
use crate::runtime::*;
use async_trait::async_trait;
use std::collections::HashMap;
use std::time::Duration;

#[async_trait]
impl ContainerRuntime for PluginRuntime {
    async fn version(&self) -> Result<VersionInfo, RuntimeError> {
        let name = self.catalog.default_plugin().info.name.clone();
        self.call(&name, "version", |g, s| Box::pin(g.call_version(s))).await
    }

    /// Merged over the active plugins: a condition is true only where every plugin says so.
    async fn status(&self) -> Result<Vec<RuntimeCondition>, RuntimeError> {
        let mut plugins = self.active();
        if plugins.is_empty() {
            plugins.push(self.catalog.default_plugin().info.name.clone());
        }
        let mut merged: Vec<RuntimeCondition> = Vec::new();
        for plugin in plugins {
            for c in self.call(&plugin, "status", |g, s| Box::pin(g.call_status(s))).await? {
                match merged.iter_mut().find(|m| m.condition_type == c.condition_type) {
                    Some(m) if m.status && !c.status => *m = c,
                    Some(_) => {}
                    None => merged.push(c),
                }
            }
        }
        Ok(merged)
    }

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError> {
        if let Some(message) = self.catalog.missing_scenario(&config.annotations) {
            return Err(RuntimeError::Runtime { code: ErrorCode::Unavailable, message });
        }
        let plugin = self.select(config);
        self.know_addresses().await;
        let config_uid = config.metadata.uid.clone();
        let pending = format!("new:{config_uid}:{}", config.metadata.attempt);
        let offered = self.addresses.allocate(&pending);
        let mut config = config.clone();
        config.pod_ip = offered.map(|ip| ip.to_string());
        let created = self.call(&plugin, "run-pod-sandbox", move |g, s| Box::pin(async move { g.call_run_pod_sandbox(s, &config).await })).await;
        let id = match created.and_then(|c| c.map_err(runtime_error)) {
            Ok(id) => id,
            Err(e) => {
                self.addresses.release(&pending);
                return Err(e);
            }
        };
        self.addresses.transfer(&pending, &id);
        self.claim(&id, &plugin, "pod sandbox")?;
        self.serving.lock().unwrap_or_else(|p| p.into_inner()).insert(config_uid, plugin.clone());
        // The plugin may have chosen another address: it must be one no other sandbox holds.
        let reported: Option<std::net::Ipv4Addr> = self.pod_sandbox_status(&id).await.ok().and_then(|s| s.ip.parse().ok());
        if let Some(ip) = reported.filter(|ip| Some(*ip) != offered)
            && let Err(taken) = self.addresses.record(&id, ip)
        {
            let _ = self.stop_pod_sandbox(&id).await;
            let _ = self.remove_pod_sandbox(&id).await;
            return Err(RuntimeError::Runtime {
                code: ErrorCode::Failed,
                message: format!("plugin {plugin} gave the new pod sandbox an address in use: {taken}"),
            });
        }
        Ok(id)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let plugin = self.owner(id).await?;
        let owned = id.to_string();
        self.call(&plugin, "stop-pod-sandbox", move |g, s| Box::pin(async move { g.call_stop_pod_sandbox(s, &owned).await })).await?.map_err(runtime_error)?;
        // Stopping a sandbox tears its network down (CNI DEL): the address is free.
        self.addresses.release(id);
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let Ok(plugin) = self.owner(id).await else { return Ok(()) };
        let owned = id.to_string();
        self.call(&plugin, "remove-pod-sandbox", move |g, s| Box::pin(async move { g.call_remove_pod_sandbox(s, &owned).await }))
            .await?
            .map_err(runtime_error)?;
        self.disown(id);
        self.addresses.release(id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &str) -> Result<PodSandboxStatus, RuntimeError> {
        let plugin = self.owner(id).await?;
        let id = id.to_string();
        self.call(&plugin, "inspect-pod-sandbox", move |g, s| Box::pin(async move { g.call_inspect_pod_sandbox(s, &id).await })).await?.map_err(runtime_error)
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandbox>, RuntimeError> {
        let listed = self.list_everywhere("list-pod-sandboxes", |s: &PodSandbox| &s.id, || |g, s| Box::pin(g.call_list_pod_sandboxes(s))).await?;
        // The newest sandbox of a pod says who serves it. Every relist runs this: entries are
        // changed only where they differ.
        let owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        let mut newest: HashMap<&str, (i64, Option<&String>)> = HashMap::new();
        for sandbox in &listed {
            let uid = sandbox.metadata.uid.as_str();
            if newest.get(uid).is_none_or(|(at, _)| *at <= sandbox.created_at) {
                newest.insert(uid, (sandbox.created_at, owners.get(&sandbox.id)));
            }
        }
        let mut serving = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        serving.retain(|uid, _| newest.get(uid.as_str()).is_some_and(|(_, plugin)| plugin.is_some()));
        for (uid, (_, plugin)) in newest {
            if let Some(plugin) = plugin
                && serving.get(uid) != Some(plugin)
            {
                serving.insert(uid.to_string(), plugin.clone());
            }
        }
        drop((owners, serving));
        Ok(listed)
    }

    async fn create_container(&self, sandbox_id: &str, config: &ContainerConfig) -> Result<String, RuntimeError> {
        let plugin = self.owner(sandbox_id).await?;
        let sandbox_id = sandbox_id.to_string();
        let config = config.clone();
        let id = self
            .call(&plugin, "create-container", move |g, s| Box::pin(async move { g.call_create_container(s, &sandbox_id, &config).await }))
            .await?
            .map_err(runtime_error)?;
        self.claim(&id, &plugin, "container")?;
        // A start that traps comes back to the state saved now, where the container exists.
        self.save_state(&plugin).await;
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let plugin = self.owner(id).await?;
        let owned = id.to_string();
        match self.call(&plugin, "start-container", move |g, s| Box::pin(async move { g.call_start_container(s, &owned).await })).await {
            Ok(answer) => answer.map_err(runtime_error),
            Err(e) => {
                if matches!(e, RuntimeError::Trap { .. } | RuntimeError::Deadline { .. }) {
                    self.failed_starts.record(id, e.to_string(), self.clock.now_nanos());
                }
                Err(e)
            }
        }
    }

    async fn update_container_files(&self, id: &str, files: &[ContainerFile]) -> Result<(), RuntimeError> {
        let plugin = self.owner(id).await?;
        let (id, files) = (id.to_string(), files.to_vec());
        self.call(&plugin, "update-container-files", move |g, s| Box::pin(async move { g.call_update_container_files(s, &id, &files).await }))
            .await?
            .map_err(runtime_error)
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        let plugin = self.owner(id).await?;
        let seconds = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
        let id = id.to_string();
        self.call(&plugin, "stop-container", move |g, s| Box::pin(async move { g.call_stop_container(s, &id, seconds).await })).await?.map_err(runtime_error)
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let Ok(plugin) = self.owner(id).await else { return Ok(()) };
        let owned = id.to_string();
        self.call(&plugin, "remove-container", move |g, s| Box::pin(async move { g.call_remove_container(s, &owned).await })).await?.map_err(runtime_error)?;
        self.disown(id);
        self.failed_starts.forget(id);
        Ok(())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        let plugin = self.owner(id).await?;
        let id = id.to_string();
        let status = self
            .call(&plugin, "inspect-container", move |g, s| Box::pin(async move { g.call_inspect_container(s, &id).await }))
            .await?
            .map_err(runtime_error)?;
        Ok(self.failed_starts.status(status))
    }

    async fn list_containers(&self) -> Result<Vec<Container>, RuntimeError> {
        Ok(self.failed_starts.listed(self.list_everywhere("list-containers", |c: &Container| &c.id, || |g, s| Box::pin(g.call_list_containers(s))).await?))
    }

    /// Each plugin speaks for its own containers only.
    async fn list_container_stats(&self) -> Result<Vec<ContainerStats>, RuntimeError> {
        let mut all = Vec::new();
        for plugin in self.active() {
            let listed = self.call(&plugin, "list-container-stats", |g, s| Box::pin(g.call_list_container_stats(s))).await?.map_err(runtime_error)?;
            let owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
            all.extend(listed.into_iter().filter(|s| owners.get(&s.id) == Some(&plugin)));
        }
        Ok(all)
    }

    async fn pull_image(&self, image: &str, auth: Option<&AuthConfig>, pod: Option<&PodSandboxConfig>) -> Result<String, RuntimeError> {
        let plugin = self.image_plugin(pod);
        let image = image.to_string();
        let (auth, pod) = (auth.cloned(), pod.cloned());
        self.call(&plugin, "pull-image", move |g, s| Box::pin(async move { g.call_pull_image(s, &image, auth.as_ref(), pod.as_ref()).await }))
            .await?
            .map_err(runtime_error)
    }

    async fn image_status(&self, image: &str, pod: Option<&PodSandboxConfig>) -> Result<Option<Image>, RuntimeError> {
        let plugin = self.image_plugin(pod);
        let image = image.to_string();
        self.call(&plugin, "inspect-image", move |g, s| Box::pin(async move { g.call_inspect_image(s, &image).await })).await?.map_err(runtime_error)
    }

    async fn list_images(&self) -> Result<Vec<Image>, RuntimeError> {
        let mut all: Vec<Image> = Vec::new();
        for plugin in self.active() {
            let listed = self.call(&plugin, "list-images", |g, s| Box::pin(g.call_list_images(s))).await?.map_err(runtime_error)?;
            all.extend(listed.into_iter().filter(|i| !all.iter().any(|a| a.id == i.id)).collect::<Vec<_>>());
        }
        Ok(all)
    }

    async fn remove_image(&self, image: &str, pod: Option<&PodSandboxConfig>) -> Result<(), RuntimeError> {
        let plugin = self.image_plugin(pod);
        let image = image.to_string();
        self.call(&plugin, "remove-image", move |g, s| Box::pin(async move { g.call_remove_image(s, &image).await })).await?.map_err(runtime_error)
    }

    async fn container_logs(&self, id: &str, since: Option<i64>, tail: Option<u32>) -> Result<Vec<LogLine>, RuntimeError> {
        let plugin = self.owner(id).await?;
        let id = id.to_string();
        self.call(&plugin, "container-logs", move |g, s| Box::pin(async move { g.call_container_logs(s, &id, since, tail).await }))
            .await?
            .map_err(runtime_error)
    }

    async fn exec_sync(&self, id: &str, cmd: &[String], stdin: &[u8], timeout: Duration) -> Result<ExecResult, RuntimeError> {
        let plugin = self.owner(id).await?;
        let seconds = i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX);
        let (id, cmd, stdin) = (id.to_string(), cmd.to_vec(), stdin.to_vec());
        self.call(&plugin, "exec-sync", move |g, s| Box::pin(async move { g.call_exec_sync(s, &id, &cmd, &stdin, seconds).await }))
            .await?
            .map_err(runtime_error)
    }

    async fn exec_session_open(&self, id: &str, cmd: &[String]) -> Result<SessionOpened, RuntimeError> {
        let plugin = self.owner(id).await?;
        let (id, cmd) = (id.to_string(), cmd.to_vec());
        self.call(&plugin, "exec-session-open", move |g, s| Box::pin(async move { g.call_exec_session_open(s, &id, &cmd).await })).await?.map_err(runtime_error)
    }

    async fn exec_session_line(&self, id: &str, session: u64, line: &str) -> Result<SessionOutput, RuntimeError> {
        let plugin = self.owner(id).await?;
        let (id, line) = (id.to_string(), line.to_string());
        self.call(&plugin, "exec-session-line", move |g, s| Box::pin(async move { g.call_exec_session_line(s, &id, session, &line).await }))
            .await?
            .map_err(runtime_error)
    }

    async fn exec_session_close(&self, id: &str, session: u64) {
        let Ok(plugin) = self.owner(id).await else { return };
        let id = id.to_string();
        // A session whose plugin went away is gone with it.
        let _ = self.call(&plugin, "exec-session-close", move |g, s| Box::pin(async move { g.call_exec_session_close(s, &id, session).await })).await;
    }

    async fn serve_http(&self, pod_sandbox_id: &str, port: u16, request: &HttpRequest) -> Result<HttpResponse, RuntimeError> {
        let plugin = self.owner(pod_sandbox_id).await?;
        let (id, request) = (pod_sandbox_id.to_string(), request.clone());
        self.call(&plugin, "serve-http", move |g, s| Box::pin(async move { g.call_serve_http(s, &id, port, &request).await })).await?.map_err(runtime_error)
    }

    async fn probe(&self, id: &str, kind: ProbeKind, action: &ProbeAction) -> Result<ProbeResult, RuntimeError> {
        let plugin = self.owner(id).await?;
        let id = id.to_string();
        let action = action.clone();
        self.call(&plugin, "probe", move |g, s| Box::pin(async move { g.call_probe(s, &id, kind, &action).await })).await?.map_err(runtime_error)
    }
}
