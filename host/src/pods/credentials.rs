//! The credentials a pull uses, as upstream's `pkg/credentialprovider` finds them: a pod's
//! image pull secrets (`kubernetes.io/dockerconfigjson`, `kubernetes.io/dockercfg`) read
//! into a keyring of registry locations, and the image's repository looked up in it. The
//! image manager tries each match, most specific location first; with none it pulls
//! without credentials.

use crate::runtime::AuthConfig;
use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// The registry Docker Hub's images come from, as a keyring names it.
const DEFAULT_REGISTRY: &str = "index.docker.io";

/// Registry locations and their credentials.
#[derive(Debug, Default)]
pub struct Keyring {
    /// Reverse-sorted, so `quay.io/coreos` is tried before `quay.io`.
    index: Vec<String>,
    creds: HashMap<String, Vec<AuthConfig>>,
}

/// One location's entry in a Docker config: `auth` (base64 of `user:password`) wins over
/// `username` and `password`, as the Docker client reads it.
#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
}

#[derive(Deserialize)]
struct DockerConfigJson {
    #[serde(default)]
    auths: BTreeMap<String, Entry>,
}

impl Keyring {
    /// The keyring of a pod's pull secrets. A secret of another type, or without its key,
    /// adds nothing; one that is not a Docker config fails the pull, as upstream's does.
    pub fn of(secrets: &[Secret]) -> Result<Keyring, String> {
        let mut ring = Keyring::default();
        for s in secrets {
            let data = |key: &str| s.data.as_ref().and_then(|d| d.get(key)).map(|b| b.0.as_slice()).filter(|b| !b.is_empty());
            let entries = match (s.type_.as_deref(), data(".dockerconfigjson"), data(".dockercfg")) {
                (Some("kubernetes.io/dockerconfigjson"), Some(json), _) => serde_json::from_slice::<DockerConfigJson>(json).map_err(|e| e.to_string())?.auths,
                (Some("kubernetes.io/dockercfg"), _, Some(json)) => serde_json::from_slice::<BTreeMap<String, Entry>>(json).map_err(|e| e.to_string())?,
                _ => continue,
            };
            for (location, entry) in entries {
                ring.add(&location, entry)?;
            }
        }
        ring.index.sort_unstable_by(|a, b| b.cmp(a));
        ring.index.dedup();
        Ok(ring)
    }

    fn add(&mut self, location: &str, entry: Entry) -> Result<(), String> {
        let (username, password) = if entry.auth.is_empty() { (entry.username, entry.password) } else { decode_auth(&entry.auth)? };
        let without_scheme = location.strip_prefix("https://").or_else(|| location.strip_prefix("http://")).unwrap_or(location);
        let (host, path) = without_scheme.split_once('/').map_or((without_scheme, ""), |(h, p)| (h, p));
        // `/v1/` and `/v2/` name the registry itself, as the Docker client takes them.
        let path = path.strip_prefix("v1/").or_else(|| path.strip_prefix("v2/")).unwrap_or(path).trim_end_matches('/');
        let key = if path.is_empty() { host.to_string() } else { format!("{host}/{path}") };
        self.creds.entry(key.clone()).or_default().push(AuthConfig { username, password, server_address: location.to_string() });
        self.index.push(key);
        Ok(())
    }

    /// The credentials for `image`, most specific location first; none when no location
    /// matches its repository.
    pub fn lookup(&self, image: &str) -> Vec<AuthConfig> {
        let repo = repository(image);
        let found: Vec<AuthConfig> = self.index.iter().filter(|k| location_matches(k, &repo)).flat_map(|k| self.creds[k].iter().cloned()).collect();
        if !found.is_empty() || !repo.starts_with("docker.io/") {
            return found;
        }
        self.creds.get(DEFAULT_REGISTRY).cloned().unwrap_or_default()
    }
}

fn decode_auth(auth: &str) -> Result<(String, String), String> {
    let bad = || "unable to parse auth field, must be formatted as base64(username:password)".to_string();
    let decoded = base64::engine::general_purpose::STANDARD.decode(auth).map_err(|e| e.to_string())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (user, password) = text.split_once(':').ok_or_else(bad)?;
    Ok((user.to_string(), password.trim_matches('\0').to_string()))
}

/// An image's repository as the Docker reference parser normalizes it: `nginx:1.25` is
/// `docker.io/library/nginx`, `gcr.io/p/app@sha256:…` is `gcr.io/p/app`.
pub fn repository(image: &str) -> String {
    let name = image.split('@').next().unwrap_or(image);
    let name = match name.rfind(':') {
        Some(colon) if !name[colon..].contains('/') => &name[..colon],
        _ => name,
    };
    match name.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => name.to_string(),
        Some(_) => format!("docker.io/{name}"),
        None => format!("docker.io/library/{name}"),
    }
}

/// Whether a keyring location (`host[:port][/path]`, labels may be globs such as
/// `*.gcr.io`) matches a repository: same port, same number of host labels each matching,
/// the location's path a prefix of the repository's.
fn location_matches(location: &str, repo: &str) -> bool {
    let split = |s: &str| -> (String, String) {
        let (host, path) = s.split_once('/').map_or((s, ""), |(h, p)| (h, p));
        (host.to_string(), path.to_string())
    };
    let ((glob_host, glob_path), (host, path)) = (split(location), split(repo));
    let port = |h: &str| h.split_once(':').map(|(_, p)| p.to_string());
    let labels = |h: &str| h.split(':').next().unwrap_or(h).split('.').map(str::to_string).collect::<Vec<_>>();
    let (glob_labels, target_labels) = (labels(&glob_host), labels(&host));
    port(&glob_host) == port(&host)
        && glob_labels.len() == target_labels.len()
        && path.starts_with(&glob_path)
        && glob_labels.iter().zip(&target_labels).all(|(g, t)| glob(g.as_bytes(), t.as_bytes()))
}

/// `*` and `?` in one host label, as Go's `filepath.Match` reads them there.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t, mut star, mut mark) = (0, 0, None, 0);
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            (p, t) = (p + 1, t + 1);
        } else if p < pattern.len() && pattern[p] == b'*' {
            (star, mark, p) = (Some(p), t, p + 1);
        } else if let Some(s) = star {
            (p, mark) = (s + 1, mark + 1);
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(type_: &str, key: &str, json: &str) -> Secret {
        Secret { type_: Some(type_.into()), data: Some([(key.to_string(), ByteString(json.as_bytes().to_vec()))].into()), ..Default::default() }
    }

    fn users(ring: &Keyring, image: &str) -> Vec<String> {
        ring.lookup(image).into_iter().map(|a| format!("{}:{}", a.username, a.password)).collect()
    }

    #[test]
    fn repositories_are_normalized_as_docker_references_are() {
        assert_eq!(repository("nginx"), "docker.io/library/nginx");
        assert_eq!(repository("nginx:1.25"), "docker.io/library/nginx");
        assert_eq!(repository("bitnami/redis:7"), "docker.io/bitnami/redis");
        assert_eq!(repository("localhost:5000/app:v1"), "localhost:5000/app");
        assert_eq!(repository("gcr.io/authenticated-image-pulling/alpine:3.7"), "gcr.io/authenticated-image-pulling/alpine");
        assert_eq!(repository("quay.io/coreos/etcd@sha256:abc"), "quay.io/coreos/etcd");
    }

    #[test]
    fn a_dockerconfigjson_secret_gives_the_credentials_of_the_images_registry() {
        // The e2e suite's private-registry secret: an `auth` field, keyed by `https://gcr.io`.
        let auth = base64::engine::general_purpose::STANDARD.encode("_json_key:{}");
        let json = format!(r#"{{"auths": {{"https://gcr.io": {{"auth": "{auth}", "email": "x@y"}}}}}}"#);
        let ring = Keyring::of(&[secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", &json)]).unwrap();
        assert_eq!(users(&ring, "gcr.io/authenticated-image-pulling/alpine:3.7"), ["_json_key:{}"]);
        assert_eq!(ring.lookup("gcr.io/x/y")[0].server_address, "https://gcr.io");
        assert!(ring.lookup("quay.io/x/y").is_empty(), "another registry");
        assert!(ring.lookup("eu.gcr.io/x/y").is_empty(), "a host with more labels is another host");
    }

    #[test]
    fn the_most_specific_location_comes_first_and_globs_match_one_label() {
        let json = r#"{"quay.io": {"username": "all", "password": "a"}, "quay.io/coreos": {"username": "coreos", "password": "c"},
                       "*.gcr.io": {"username": "glob", "password": "g"}, "registry:5000": {"username": "port", "password": "p"}}"#;
        let ring = Keyring::of(&[secret("kubernetes.io/dockercfg", ".dockercfg", json)]).unwrap();
        assert_eq!(users(&ring, "quay.io/coreos/etcd:3"), ["coreos:c", "all:a"]);
        assert_eq!(users(&ring, "quay.io/other/x"), ["all:a"]);
        assert_eq!(users(&ring, "eu.gcr.io/p/app"), ["glob:g"]);
        assert_eq!(users(&ring, "registry:5000/app"), ["port:p"]);
        assert!(ring.lookup("registry:5001/app").is_empty(), "the port must match");
    }

    #[test]
    fn docker_hub_images_use_the_index_credentials() {
        let json = r#"{"auths": {"https://index.docker.io/v1/": {"username": "hub", "password": "h"}}}"#;
        let ring = Keyring::of(&[secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", json)]).unwrap();
        assert_eq!(users(&ring, "nginx:1.25"), ["hub:h"]);
        assert_eq!(users(&ring, "me/app"), ["hub:h"]);
        assert!(ring.lookup("gcr.io/me/app").is_empty());
    }

    #[test]
    fn secrets_of_other_types_add_nothing_and_a_broken_config_is_an_error() {
        let opaque = secret("Opaque", ".dockerconfigjson", r#"{"auths": {"gcr.io": {"username": "u"}}}"#);
        assert!(Keyring::of(&[opaque]).unwrap().lookup("gcr.io/x").is_empty());
        assert!(Keyring::of(&[secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", "{not json")]).is_err());
        let bad_auth = r#"{"auths": {"gcr.io": {"auth": "bm9jb2xvbg=="}}}"#;
        assert_eq!(
            Keyring::of(&[secret("kubernetes.io/dockerconfigjson", ".dockerconfigjson", bad_auth)]).unwrap_err(),
            "unable to parse auth field, must be formatted as base64(username:password)"
        );
    }

    #[test]
    fn globs_match_as_go_filepath_match_does_within_a_label() {
        assert!(glob(b"*", b"eu"));
        assert!(glob(b"e?", b"eu"));
        assert!(glob(b"*-docker", b"europe-docker"));
        assert!(!glob(b"*-docker", b"europe-dock"));
        assert!(glob(b"a*b*c", b"axxbyyc"));
        assert!(!glob(b"", b"x"));
    }
}
