//! Pulls of matching images fail as a registry would fail them, so the kubelet shows
//! ErrImagePull and then ImagePullBackOff.
//!
//! Configuration: `{"images": ["*"], "message": "..."}`. `images` are glob patterns over
//! the image name as written in the pod; `message` defaults to containerd's "not found"
//! text for the image.

use glob::Pattern;
use labkubelet_guest::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct Config {
    images: Vec<String>,
    message: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config { images: vec!["*".into()], message: None }
    }
}

#[derive(Default)]
struct ImagePullFail {
    patterns: Vec<Pattern>,
    message: Option<String>,
}

impl Scenario for ImagePullFail {
    fn info(&self) -> Info {
        Info::new("image-pull-fail", env!("CARGO_PKG_VERSION")).describe("Pulls of matching images fail: ErrImagePull, then ImagePullBackOff.")
    }

    fn configure(&mut self, file: &ConfigFile) -> Result<(), ConfigError> {
        let config: Config = file.parse()?;
        self.patterns =
            config.images.iter().map(|p| Pattern::new(p).map_err(|e| format!("images: {p:?} is not a glob pattern: {e}"))).collect::<Result<_, _>>()?;
        self.message = config.message;
        Ok(())
    }

    fn on_pull(&mut self, image: &str, _pod: Option<&PodSandboxConfig>) -> Result<(), RuntimeError> {
        if !self.patterns.iter().any(|p| p.matches(image)) {
            return Ok(());
        }
        let message = self.message.clone().unwrap_or_else(|| {
            format!(
                "rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": \
                 failed to resolve reference \"{image}\": {image}: not found"
            )
        });
        Err(RuntimeError { code: ErrorCode::NotFound, message })
    }
}

export_scenario!(ImagePullFail);
