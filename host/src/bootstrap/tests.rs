use super::*;

#[test]
fn only_what_may_pass_is_transient() {
    let api = |code: u16| BootstrapError::Api {
        doing: "creating the certificate signing request",
        source: kube::Error::Api(kube::core::Status::failure("busy", "").with_code(code).boxed()),
    };
    assert!(api(429).is_transient() && api(503).is_transient(), "a busy or failing API server");
    assert!(!api(403).is_transient(), "a refusal stays until someone acts");
    assert!(BootstrapError::Deleted { name: "csr".into() }.is_transient());
    assert!(BootstrapError::NotIssued(Duration::from_secs(60)).is_transient());
    assert!(!BootstrapError::Key("no randomness".into()).is_transient());
    let other = BootstrapError::OtherSigner { name: "node-csr-x".into(), signer: "example.com/x".into() };
    assert!(!other.is_transient());
    assert_eq!(
        other.to_string(),
        "certificate signing request node-csr-x exists for signer example.com/x, not kubernetes.io/kube-apiserver-client-kubelet; delete it"
    );
}

#[test]
fn the_node_kubeconfig_keeps_the_bootstrap_cluster_and_names_the_current_certificate() {
    let bootstrap = Kubeconfig::from_yaml(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://10.0.0.1:6443/\n    certificate-authority-data: Q0E=\n",
    )
    .expect("a bootstrap kubeconfig");
    let text =
        serde_yaml_ng::to_string(&node_kubeconfig("https://10.0.0.1:6443/", &bootstrap, "/var/lib/kubelet/pki/kubelet-client-current.pem")).expect("yaml");
    assert!(!text.contains("null"), "no empty fields written:\n{text}");
    let written = Kubeconfig::from_yaml(&text).expect("it reads back");
    let cluster = written.clusters[0].cluster.clone().expect("a cluster");
    assert_eq!(cluster.server.as_deref(), Some("https://10.0.0.1:6443"));
    assert_eq!(cluster.certificate_authority_data.as_deref(), Some("Q0E="));
    let user = written.auth_infos[0].auth_info.clone().expect("a user");
    assert_eq!(user.client_certificate.as_deref(), Some("/var/lib/kubelet/pki/kubelet-client-current.pem"));
    assert_eq!(user.client_key, user.client_certificate);
    assert_eq!(written.current_context.as_deref(), Some("default-context"));
}

#[test]
fn certificate_files_are_stamped_like_the_kubelet_does() {
    assert_eq!(timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "2023-11-14-22-13-20");
}

#[test]
fn the_csr_name_depends_on_key_subject_and_usages() {
    let a = csr_name(b"key", "system:node:a", &["system:nodes"], &USAGES);
    assert!(a.starts_with("node-csr-") && a.len() == "node-csr-".len() + 43, "{a}");
    assert_eq!(a, csr_name(b"key", "system:node:a", &["system:nodes"], &USAGES));
    assert_ne!(a, csr_name(b"key", "system:node:b", &["system:nodes"], &USAGES));
    assert_ne!(a, csr_name(b"other", "system:node:a", &["system:nodes"], &USAGES));
}
