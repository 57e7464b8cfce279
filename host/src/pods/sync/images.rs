//! The image step of a container start, as upstream's image manager does it: the pull
//! policy (defaulted as the API server does), `Pulling`/`Pulled` events, `ErrImagePull`,
//! `ImagePullBackOff` with its back-off, `ErrImageNeverPull`.

use super::{AFTER_ERROR, PodSync, nanos};
use crate::clock::go_duration;
use crate::events::EventType;
use crate::pods::backoff::BackoffKey;
use crate::pods::credentials::Keyring;
use crate::pods::status::Waiting;
use crate::runtime::PodSandboxConfig;
use k8s_openapi::api::core::v1::{Container, Pod};
use std::time::Duration;

impl PodSync {
    /// The image step of a container start, by pull policy and image pull back-off.
    pub(super) async fn pull(&mut self, pod: &Pod, c: &Container, init: bool, image: &str, sandbox: &PodSandboxConfig) -> Result<(), Waiting> {
        let on = Some((c, init));
        let runtime = self.ctx.runtime.clone();
        let present = match runtime.image_status(image, Some(sandbox)).await {
            Ok(found) => found.is_some(),
            Err(e) => {
                self.event(pod, on, EventType::Warning, "Failed", &format!("Error: {e}"));
                return Err(Waiting { reason: "ErrImagePull".into(), message: e.to_string() });
            }
        };
        let policy = PullPolicy::of(c);
        if present && policy != PullPolicy::Always {
            self.event(pod, on, EventType::Normal, "Pulled", &format!("Container image \"{image}\" already present on machine"));
            return Ok(());
        }
        if policy == PullPolicy::Never {
            let message = format!("Container image \"{image}\" is not present with pull policy of Never");
            self.event(pod, on, EventType::Warning, "ErrImageNeverPull", &message);
            return Err(Waiting { reason: "ErrImageNeverPull".into(), message });
        }
        let key = BackoffKey::Pull { image: image.to_string() };
        if let Some(end) = self.backoff.expiry_since_update(&key) {
            // A sync right after the failure (a PLEG event, say) still shows ErrImagePull,
            // so it is seen before ImagePullBackOff follows.
            if let Some((at, message)) = self.pull_errors.get(image).filter(|(at, _)| self.now() < at + nanos(AFTER_ERROR)) {
                let (retry, message) = (at + nanos(AFTER_ERROR), message.clone());
                self.wake_at(retry);
                return Err(Waiting { reason: "ErrImagePull".into(), message });
            }
            let message = format!("Back-off pulling image \"{image}\"");
            self.event(pod, on, EventType::Normal, "BackOff", &message);
            self.event(pod, on, EventType::Warning, "Failed", "Error: ImagePullBackOff");
            self.wake_at(end);
            return Err(Waiting { reason: "ImagePullBackOff".into(), message });
        }
        self.event(pod, on, EventType::Normal, "Pulling", &format!("Pulling image \"{image}\""));
        let started = self.now();
        match self.pull_with_credentials(pod, image, sandbox).await {
            Ok(_) => {
                let took = go_duration(Duration::from_nanos(u64::try_from(self.now() - started).unwrap_or(0)));
                let size = runtime.image_status(image, Some(sandbox)).await.ok().flatten().map_or(0, |i| i.size);
                let message = format!("Successfully pulled image \"{image}\" in {took} ({took} including waiting). Image size: {size} bytes.");
                self.event(pod, on, EventType::Normal, "Pulled", &message);
                Ok(())
            }
            Err(e) => {
                self.backoff.next(&key, self.now());
                self.pull_errors.insert(image.to_string(), (self.now(), e.clone()));
                self.event(pod, on, EventType::Warning, "Failed", &format!("Failed to pull image \"{image}\": {e}"));
                self.event(pod, on, EventType::Warning, "Failed", "Error: ErrImagePull");
                let retry = self.after(AFTER_ERROR);
                self.wake_at(retry);
                Err(Waiting { reason: "ErrImagePull".into(), message: e.to_string() })
            }
        }
    }
}

impl PodSync {
    /// The pull itself, as upstream's runtime manager does it: without credentials when the
    /// pod's pull secrets have none for the image's registry, else with each until one works.
    /// A pull secret that cannot be read is passed over (the pull may still work).
    async fn pull_with_credentials(&self, pod: &Pod, image: &str, sandbox: &PodSandboxConfig) -> Result<String, String> {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let mut secrets = Vec::new();
        for name in pod.spec.iter().flat_map(|s| s.image_pull_secrets.iter().flatten()).map(|r| r.name.as_str()).filter(|n| !n.is_empty()) {
            match self.ctx.objects.secret(namespace, name).await {
                Ok(secret) => secrets.push((*secret).clone()),
                Err(e) => {
                    tracing::warn!(pod = %crate::pods::manager::full_name(pod), secret = name, error = %e, "Unable to retrieve pull secret; the image pull may not succeed")
                }
            }
        }
        let credentials = Keyring::of(&secrets)?.lookup(image);
        let runtime = self.ctx.runtime.clone();
        if credentials.is_empty() {
            return runtime.pull_image(image, None, Some(sandbox)).await.map_err(|e| e.to_string());
        }
        let mut errors = Vec::new();
        for auth in &credentials {
            match runtime.pull_image(image, Some(auth), Some(sandbox)).await {
                Ok(id) => return Ok(id),
                Err(e) => errors.push(e.to_string()),
            }
        }
        // Upstream's aggregate error: one message alone, several in brackets.
        Err(if errors.len() == 1 { errors.remove(0) } else { format!("[{}]", errors.join(", ")) })
    }
}

/// A container's `imagePullPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The container's policy, defaulted as the API server does: `Always` for `:latest` or
    /// no tag, else `IfNotPresent`. An unknown value is taken as `IfNotPresent`, which the
    /// API server's validation never lets through.
    pub(super) fn of(c: &Container) -> Self {
        match c.image_pull_policy.as_deref() {
            Some("Always") => return PullPolicy::Always,
            Some("Never") => return PullPolicy::Never,
            Some(_) => return PullPolicy::IfNotPresent,
            None => {}
        }
        let image = c.image.as_deref().unwrap_or("");
        let last = image.rsplit('/').next().unwrap_or(image);
        match last.split_once(':') {
            _ if image.contains('@') => PullPolicy::IfNotPresent,
            Some((_, "latest")) | None => PullPolicy::Always,
            Some(_) => PullPolicy::IfNotPresent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(image: &str, given: Option<&str>) -> PullPolicy {
        PullPolicy::of(&Container { image: Some(image.into()), image_pull_policy: given.map(Into::into), ..Default::default() })
    }

    #[test]
    fn the_pull_policy_defaults_as_the_api_server_does() {
        assert_eq!(policy("nginx", None), PullPolicy::Always);
        assert_eq!(policy("nginx:latest", None), PullPolicy::Always);
        assert_eq!(policy("registry:5000/nginx", None), PullPolicy::Always, "a registry's port is not a tag");
        assert_eq!(policy("nginx:1.25", None), PullPolicy::IfNotPresent);
        assert_eq!(policy("nginx@sha256:abc", None), PullPolicy::IfNotPresent);
        assert_eq!(policy("nginx:latest", Some("Never")), PullPolicy::Never);
        assert_eq!(policy("nginx:1.25", Some("Always")), PullPolicy::Always);
    }
}
