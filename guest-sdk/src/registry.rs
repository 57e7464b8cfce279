//! The image registries a simulated pull reaches. Every image exists, except where a lab
//! needs a pull to fail as a real one does, with containerd's messages:
//! - a registry host that does not resolve: a reserved name (`*.invalid`, `*.test`,
//!   `*.example`, `*.localhost` other than `localhost` itself, RFC 2606 and 6761) or a
//!   host whose first label is `invalid` (`invalid.com`, Kubernetes' own "invalid
//!   registry" image): `dial tcp: lookup invalid.com: no such host`;
//! - a private repository pulled without credentials: one with a path segment named
//!   `private` (`ghcr.io/acme/private/api`) or under `gcr.io/authenticated-image-pulling/`
//!   (Kubernetes' own private image): `pull access denied`. Any credentials the kubelet
//!   found for the registry in the pod's image pull secrets open it.
//!
//! A scenario's [`on_pull`](crate::Scenario::on_pull) is asked first and may fail any pull.

use crate::bindings::labkubelet::runtime::types::{AuthConfig, ErrorCode, RuntimeError};
use crate::runtime::{normalize_image, repo_of};

/// Why the registry refuses `image`, as containerd reports it; `None` when the pull works.
pub(crate) fn refusal(image: &str, auth: Option<&AuthConfig>) -> Option<RuntimeError> {
    let reference = normalize_image(image);
    let repository = repo_of(&reference);
    let (host, path) = repository.split_once('/')?;
    let failed = |why: String| RuntimeError {
        code: ErrorCode::Failed,
        message: format!(
            "rpc error: code = Unknown desc = failed to pull and unpack image \"{reference}\": failed to resolve reference \"{reference}\": {why}"
        ),
    };
    if !resolves(host) {
        // The manifest asked for: the digest, else the tag (a normalized reference has one).
        let manifest = match reference.split_once('@') {
            Some((_, digest)) => digest,
            None => reference.rsplit_once(':').map_or("latest", |(_, tag)| tag),
        };
        let bare = host.split(':').next().unwrap_or(host);
        return Some(failed(format!("failed to do request: Head \"https://{host}/v2/{path}/manifests/{manifest}\": dial tcp: lookup {bare}: no such host")));
    }
    let signed_in = auth.is_some_and(|a| !a.username.is_empty() || !a.password.is_empty());
    (is_private(repository) && !signed_in).then(|| {
        failed("pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed".into())
    })
}

/// Whether a registry host has an address: reserved names and `invalid.*` do not.
fn resolves(host: &str) -> bool {
    let name = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let tld = name.rsplit('.').next().unwrap_or(&name);
    let first = name.split('.').next().unwrap_or(&name);
    let reserved = name.contains('.') && matches!(tld, "invalid" | "test" | "example" | "localhost");
    !reserved && first != "invalid"
}

/// Whether a repository (`registry/path/name`, no tag) is private: a folder of its path is
/// named `private` (its last segment names the image, not a folder), or it is Kubernetes' own.
fn is_private(repository: &str) -> bool {
    let path = repository.split_once('/').map_or("", |(_, p)| p);
    let folders = path.rsplit_once('/').map_or("", |(f, _)| f);
    repository.starts_with("gcr.io/authenticated-image-pulling/") || folders.split('/').any(|s| s == "private")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(user: &str) -> AuthConfig {
        AuthConfig { username: user.into(), password: "secret".into(), server_address: "https://gcr.io".into() }
    }

    #[test]
    fn an_unresolvable_registry_refuses_with_containerds_message() {
        let e = refusal("invalid.com/invalid/alpine:3.1", None).unwrap();
        assert_eq!(
            e.message,
            "rpc error: code = Unknown desc = failed to pull and unpack image \"invalid.com/invalid/alpine:3.1\": failed to resolve reference \
             \"invalid.com/invalid/alpine:3.1\": failed to do request: Head \"https://invalid.com/v2/invalid/alpine/manifests/3.1\": dial tcp: lookup \
             invalid.com: no such host"
        );
        assert!(
            refusal("registry.invalid/app", Some(&auth("me"))).unwrap().message.contains("manifests/latest\": dial tcp: lookup registry.invalid: no such host")
        );
        assert!(refusal("my.registry.test:5000/app:v1", None).unwrap().message.contains("Head \"https://my.registry.test:5000/v2/app/manifests/v1\""));
        assert!(refusal("localhost:5000/app", None).is_none(), "a local registry resolves");
        assert!(refusal("invalidator.io/app", None).is_none());
    }

    #[test]
    fn private_repositories_need_credentials() {
        let private = "gcr.io/authenticated-image-pulling/alpine:3.7";
        assert!(refusal(private, None).unwrap().message.ends_with(
            "failed to resolve reference \"gcr.io/authenticated-image-pulling/alpine:3.7\": pull access denied, repository does not exist or may \
             require authorization: server message: insufficient_scope: authorization failed"
        ));
        assert!(refusal(private, Some(&auth("_json_key"))).is_none());
        assert!(refusal("ghcr.io/acme/private/api:1", None).is_some());
        assert!(refusal("private/api", None).is_some(), "docker.io/private/api");
        assert!(refusal("ghcr.io/acme/private:1", None).is_none(), "an image named private is public");
        assert!(refusal("nginx:1.25", None).is_none());
        assert!(refusal("registry.k8s.io/e2e-test-images/agnhost:2.21", None).is_none());
    }

    #[test]
    fn any_reference_is_answered_without_a_panic() {
        for image in ["", ":", "@", "/", "a/", "/b", "invalid", "invalid.com", "invalid.com/", "x@sha256:", "::/::@::", "\u{e9}.invalid/\u{e9}"] {
            let _ = refusal(image, None);
        }
    }
}
