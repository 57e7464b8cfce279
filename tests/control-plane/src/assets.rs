//! Where the control plane's binaries are, and which Kubernetes version they are.
//!
//! envtest's convention: one folder holds the binaries under their upstream names, and an
//! environment variable names it. Here that is `LABKUBELET_E2E_ASSETS`; without it, the
//! folder `tests/control-plane/install.sh` fills (`$XDG_CACHE_HOME/kube-e2e/bin`, by default
//! `~/.cache/kube-e2e/bin`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The environment variable naming the folder of binaries.
pub const ASSETS_VAR: &str = "LABKUBELET_E2E_ASSETS";
/// The binaries a control plane needs, by their upstream names.
pub const REQUIRED: [&str; 4] = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"];
/// The oldest Kubernetes the suite runs against.
pub const OLDEST: Version = Version { major: 1, minor: 20, patch: 0 };

/// A Kubernetes version, as `kube-apiserver --version` prints it (`Kubernetes v1.20.2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    /// Reads `v1.20.2` (a suffix such as `-rc.0` or `+k3s1` is ignored).
    pub fn parse(text: &str) -> Option<Version> {
        let text = text.trim().strip_prefix('v').unwrap_or(text.trim());
        let core = text.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        Some(Version { major: parts.next()??, minor: parts.next()??, patch: parts.next().flatten().unwrap_or(0) })
    }

    /// True for servers that still have the insecure ports (`--insecure-port`, `--port`),
    /// removed in 1.24; they must be turned off for several control planes to run at once.
    pub fn has_insecure_ports(&self) -> bool {
        (self.major, self.minor) < (1, 24)
    }

    /// True for servers whose controller manager makes a token Secret for every service
    /// account (before 1.24); their pods cannot be admitted before it exists.
    pub fn makes_token_secrets(&self) -> bool {
        (self.major, self.minor) < (1, 24)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The binaries of one control plane.
#[derive(Debug, Clone)]
pub struct Assets {
    pub dir: PathBuf,
    pub version: Version,
}

impl Assets {
    /// Finds the binaries and checks that they run and agree on a version of at least
    /// [`OLDEST`]. The error says what is missing or wrong and how to install them.
    pub fn locate() -> Result<Assets, String> {
        let (dir, how) = match std::env::var_os(ASSETS_VAR) {
            Some(dir) => (PathBuf::from(dir), format!("{ASSETS_VAR} names it")),
            None => (default_dir(), format!("the default; {ASSETS_VAR} is not set")),
        };
        let install = format!(
            "install them with `tests/control-plane/install.sh` (builds Kubernetes {OLDEST} offline from Debian's source package, 10-15 min once), \
             or point {ASSETS_VAR} at a folder with envtest's or a release's binaries plus kube-controller-manager and kube-scheduler"
        );
        let missing: Vec<&str> = REQUIRED.iter().copied().filter(|b| !is_executable(&dir.join(b))).collect();
        if !missing.is_empty() {
            return Err(format!("the end-to-end tests need a real control plane: {} missing in {} ({how}); {install}", missing.join(", "), dir.display()));
        }
        let mut versions = Vec::new();
        for binary in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
            let path = dir.join(binary);
            let output = Command::new(&path).arg("--version").output().map_err(|e| format!("cannot run {}: {e}; {install}", path.display()))?;
            let text = String::from_utf8_lossy(&output.stdout).to_string();
            let version = text
                .split_whitespace()
                .find_map(Version::parse)
                .ok_or_else(|| format!("{} --version printed {text:?}, not a Kubernetes version; {install}", path.display()))?;
            versions.push((binary, version));
        }
        let version = versions[0].1;
        if let Some((binary, other)) = versions.iter().find(|(_, v)| (v.major, v.minor) != (version.major, version.minor)) {
            return Err(format!("{binary} is {other} but kube-apiserver is {version} in {}: use binaries of one release; {install}", dir.display()));
        }
        if version < OLDEST {
            return Err(format!("kube-apiserver in {} is {version}; the suite needs {OLDEST} or newer; {install}", dir.display()));
        }
        Ok(Assets { dir, version })
    }

    pub fn binary(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// `$XDG_CACHE_HOME/kube-e2e/bin`, else `~/.cache/kube-e2e/bin`.
pub fn default_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("kube-e2e").join("bin")
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_read_as_the_binaries_print_them() {
        assert_eq!(Version::parse("v1.20.2"), Some(Version { major: 1, minor: 20, patch: 2 }));
        assert_eq!(Version::parse("v1.31.0-rc.1"), Some(Version { major: 1, minor: 31, patch: 0 }));
        assert_eq!(Version::parse("v1.28.3+k3s1"), Some(Version { major: 1, minor: 28, patch: 3 }));
        assert_eq!(Version::parse("Kubernetes"), None);
        assert!(Version::parse("v1.20.2").is_some_and(|v| v.has_insecure_ports() && v >= OLDEST));
        assert!(Version::parse("v1.30.0").is_some_and(|v| !v.has_insecure_ports()));
    }

    #[test]
    fn a_folder_without_the_binaries_is_named_with_the_install_command() {
        let empty = tempfile::tempdir().expect("temp dir");
        // SAFETY: this test binary sets the variable in this one test only, before reading it.
        unsafe { std::env::set_var(ASSETS_VAR, empty.path()) };
        let err = Assets::locate().expect_err("an empty folder has no control plane");
        assert!(err.contains("etcd, kube-apiserver, kube-controller-manager, kube-scheduler missing in"), "{err}");
        assert!(err.contains("tests/control-plane/install.sh"), "{err}");
    }
}
