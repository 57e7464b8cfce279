//! What well-known images do when a container gives no command: the `CMD` and `ENTRYPOINT`
//! their Dockerfiles set, as far as a lab shows it. Distribution images run a shell, which
//! with no script and no terminal ends at once (exit 0: the classic CrashLoopBackOff of a
//! `busybox` pod without a command); `postgres` and `mysql` refuse to start without a
//! password, with their real messages; every other image runs its program until stopped.

use crate::KeyValue;

/// What an image runs when the container names no command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageDefault {
    /// A shell (`sh`, `bash`): the container's args, if any, are its command.
    Shell,
    /// The image's own program (`ENTRYPOINT`) and its default arguments (`CMD`), which the
    /// container's args replace. A program the shell does not know runs until stopped.
    Program { entrypoint: Vec<String>, cmd: Vec<String> },
    /// The program exits at once with this status, writing these lines to stderr.
    Exits { code: i32, stderr: Vec<String> },
}

/// The image's repository name without registry, path and tag: `docker.io/library/nginx:1.25`
/// is `nginx`.
pub fn short_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// What `image` runs by default, given the container's environment.
pub fn default_process(image: &str, env: &[KeyValue]) -> ImageDefault {
    let set = |key: &str| env.iter().any(|kv| kv.key == key && !kv.value.is_empty());
    match short_name(image) {
        "busybox" | "alpine" | "ubuntu" | "debian" | "centos" | "fedora" | "rockylinux" | "almalinux" | "amazonlinux" | "bash" | "archlinux" => {
            ImageDefault::Shell
        }
        "postgres" if !set("POSTGRES_PASSWORD") && !env.iter().any(|kv| kv.key == "POSTGRES_HOST_AUTH_METHOD" && kv.value == "trust") => ImageDefault::Exits {
            code: 1,
            stderr: [
                "Error: Database is uninitialized and superuser password is not specified.",
                "       You must specify POSTGRES_PASSWORD to a non-empty value for the",
                "       superuser. For example, \"-e POSTGRES_PASSWORD=password\" on \"docker run\".",
                "",
                "       You may also use \"POSTGRES_HOST_AUTH_METHOD=trust\" to allow all",
                "       connections without a password. This is *not* recommended.",
                "",
                "       See PostgreSQL documentation about \"trust\":",
                "       https://www.postgresql.org/docs/current/auth-trust.html",
            ]
            .map(String::from)
            .to_vec(),
        },
        "mysql" | "mariadb"
            if !["MYSQL_ROOT_PASSWORD", "MYSQL_ALLOW_EMPTY_PASSWORD", "MYSQL_RANDOM_ROOT_PASSWORD", "MARIADB_ROOT_PASSWORD"].iter().any(|k| set(k)) =>
        {
            ImageDefault::Exits {
                code: 1,
                stderr: [
                    "[ERROR] [Entrypoint]: Database is uninitialized and password option is not specified",
                    "    You need to specify one of the following as an environment variable:",
                    "    - MYSQL_ROOT_PASSWORD",
                    "    - MYSQL_ALLOW_EMPTY_PASSWORD",
                    "    - MYSQL_RANDOM_ROOT_PASSWORD",
                ]
                .map(String::from)
                .to_vec(),
            }
        }
        // Kubernetes' e2e test image: `ENTRYPOINT ["/agnhost"]`, `CMD ["pause"]`.
        "agnhost" => ImageDefault::Program { entrypoint: vec!["/agnhost".into()], cmd: vec!["pause".into()] },
        // `CMD ["nnp"]`, a setuid program that prints the uid it runs as.
        "nonewprivs" => ImageDefault::Program { entrypoint: Vec::new(), cmd: vec!["nnp".into()] },
        name => ImageDefault::Program { entrypoint: vec![name.to_string()], cmd: Vec::new() },
    }
}

/// The command line a container runs: its command and args, or its image's default.
pub fn container_argv(image: &str, command: &[String], args: &[String], env: &[KeyValue]) -> Result<Vec<String>, ImageDefault> {
    if !command.is_empty() {
        return Ok(command.iter().chain(args).cloned().collect());
    }
    match default_process(image, env) {
        ImageDefault::Shell if args.is_empty() => Ok(vec!["sh".into()]),
        ImageDefault::Shell => Ok(args.to_vec()),
        ImageDefault::Program { entrypoint, cmd } => Ok(entrypoint.into_iter().chain(if args.is_empty() { cmd } else { args.to_vec() }).collect()),
        exits => Err(exits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue { key: k.into(), value: v.into() }
    }

    #[test]
    fn images_run_their_defaults() {
        assert_eq!(short_name("docker.io/library/busybox:1.36"), "busybox");
        assert_eq!(short_name("registry.k8s.io/e2e-test-images/agnhost:2.21@sha256:ab"), "agnhost");
        assert_eq!(container_argv("busybox:1.36", &[], &[], &[]), Ok(vec!["sh".to_string()]));
        assert_eq!(container_argv("busybox", &[], &["sleep".into(), "5".into()], &[]), Ok(vec!["sleep".to_string(), "5".to_string()]));
        assert_eq!(container_argv("nginx:1.25", &[], &[], &[]), Ok(vec!["nginx".to_string()]));
        assert_eq!(container_argv("nginx", &["sh".into()], &["-c".into(), "x".into()], &[]), Ok(vec!["sh".into(), "-c".into(), "x".into()]));
        assert_eq!(container_argv("registry.k8s.io/e2e-test-images/agnhost:2.21", &[], &[], &[]), Ok(vec!["/agnhost".to_string(), "pause".to_string()]));
        assert_eq!(
            container_argv("registry.k8s.io/e2e-test-images/agnhost:2.21", &[], &["entrypoint-tester".into()], &[]),
            Ok(vec!["/agnhost".to_string(), "entrypoint-tester".to_string()])
        );
        assert!(matches!(container_argv("postgres:16", &[], &[], &[]), Err(ImageDefault::Exits { code: 1, .. })));
        assert!(container_argv("postgres:16", &[], &[], &[kv("POSTGRES_PASSWORD", "pw")]).is_ok());
        assert!(container_argv("mysql:8", &[], &[], &[kv("MYSQL_ROOT_PASSWORD", "pw")]).is_ok());
    }
}
