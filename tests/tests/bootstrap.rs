//! TLS bootstrap against the API-server double: the CSR the agent makes, approval,
//! denial, restarts, rejected tokens, and the credentials it leaves behind.

use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use labkubelet::bootstrap::{BootstrapConfig, BootstrapError, SIGNER, ensure_client_credentials};
use labkubelet_tests::apiserver::ApiServer;
use labkubelet_tests::eventually;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

struct Setup {
    server: ApiServer,
    dir: tempfile::TempDir,
    config: BootstrapConfig,
}

async fn setup(token_ok: bool) -> Setup {
    let server = ApiServer::start().await.unwrap();
    let token = server.add_bootstrap_token("abcdef", "0123456789abcdef");
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("bootstrap-kubelet.conf");
    let used = if token_ok { token } else { "abcdef.wrongwrongwrong0".to_string() };
    std::fs::write(&bootstrap, server.kubeconfig_with_token(&used)).unwrap();
    let config = BootstrapConfig {
        node_name: "lab-node-1".into(),
        kubeconfig: dir.path().join("kubelet.conf"),
        bootstrap_kubeconfig: Some(bootstrap),
        cert_dir: dir.path().join("pki"),
        reminder: Duration::from_secs(60),
    };
    Setup { server, dir, config }
}

async fn client(kubeconfig: &str) -> kube::Client {
    ApiServer::client(kubeconfig).await.unwrap()
}

async fn admin(server: &ApiServer) -> Api<CertificateSigningRequest> {
    Api::all(server.admin().await)
}

/// The agent's CSR, once it appears.
async fn the_csr(csrs: &Api<CertificateSigningRequest>) -> CertificateSigningRequest {
    eventually("the agent's CSR", Duration::from_secs(30), async || csrs.list(&ListParams::default()).await.unwrap().items.into_iter().next()).await
}

async fn decide(csrs: &Api<CertificateSigningRequest>, name: &str, condition: &str) {
    let body = json!({"status": {"conditions": [{"type": condition, "status": "True", "reason": "ByTheTest", "message": "decided by the test"}]}});
    csrs.patch_approval(name, &PatchParams::default(), &Patch::Merge(body)).await.unwrap();
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn a_csr_approved_after_a_while_yields_working_credentials() {
    let s = setup(true).await;
    let csrs = admin(&s.server).await;
    let config = s.config.clone();
    let agent = tokio::spawn(async move { ensure_client_credentials(&config).await });

    let csr = the_csr(&csrs).await;
    let name = csr.metadata.name.clone().unwrap();
    assert!(name.starts_with("node-csr-"), "{name}");
    assert_eq!(csr.spec.signer_name, SIGNER);
    assert_eq!(csr.spec.usages.clone().unwrap(), ["digital signature", "key encipherment", "client auth"]);
    assert_eq!(csr.spec.username.as_deref(), Some("system:bootstrap:abcdef"));
    assert!(csr.spec.groups.clone().unwrap().contains(&"system:bootstrappers".to_string()));
    assert!(!agent.is_finished(), "the agent must wait for approval");
    decide(&csrs, &name, "Approved").await;
    assert_eq!(agent.await.unwrap().unwrap(), Some(name));

    let pki = s.config.cert_dir.clone();
    let current = pki.join("kubelet-client-current.pem");
    let target = std::fs::read_link(&current).unwrap();
    assert!(target.file_name().unwrap().to_str().unwrap().starts_with("kubelet-client-2"), "{target:?}");
    assert_eq!(mode(&target), 0o600);
    assert_eq!(mode(&s.config.kubeconfig), 0o600);
    assert!(!pki.join("kubelet-client.key.tmp").exists());
    let text = std::fs::read_to_string(&s.config.kubeconfig).unwrap();
    assert!(text.contains("name: default-cluster") && text.contains("name: default-auth") && text.contains("current-context: default-context"), "{text}");
    assert!(text.contains(&format!("client-certificate: {}", std::fs::canonicalize(&pki).unwrap().join("kubelet-client-current.pem").display())), "{text}");

    // The kubeconfig authenticates with the issued certificate.
    Api::<Node>::all(client(&text).await).list(&ListParams::default()).await.unwrap();

    // Valid credentials are kept: no second request.
    let posts_before = s.server.requests().iter().filter(|r| r.starts_with("POST")).count();
    assert_eq!(ensure_client_credentials(&s.config).await.unwrap(), None);
    assert_eq!(s.server.requests().iter().filter(|r| r.starts_with("POST")).count(), posts_before);
    drop(s.dir);
}

#[tokio::test]
async fn a_denied_csr_ends_the_bootstrap_with_the_reason() {
    let s = setup(true).await;
    let csrs = admin(&s.server).await;
    let config = s.config.clone();
    let agent = tokio::spawn(async move { ensure_client_credentials(&config).await });
    let name = the_csr(&csrs).await.metadata.name.unwrap();
    decide(&csrs, &name, "Denied").await;
    let err = agent.await.unwrap().unwrap_err();
    assert_eq!(err.to_string(), format!("the certificate signing request {name} was denied: ByTheTest: decided by the test"));
    assert!(!s.config.kubeconfig.exists());
}

#[tokio::test]
async fn a_restarted_agent_finds_its_own_csr_again() {
    let s = setup(true).await;
    let csrs = admin(&s.server).await;
    let config = s.config.clone();
    let first = tokio::spawn(async move { ensure_client_credentials(&config).await });
    let name = the_csr(&csrs).await.metadata.name.unwrap();
    first.abort();
    let _ = first.await;

    let config = s.config.clone();
    let second = tokio::spawn(async move { ensure_client_credentials(&config).await });
    // The same key gives the same name: the second run waits on the first run's CSR.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while s.server.requests().iter().filter(|r| r.starts_with("POST /apis/certificates.k8s.io")).count() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the restarted agent made no request");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    decide(&csrs, &name, "Approved").await;
    assert_eq!(second.await.unwrap().unwrap(), Some(name));
    assert_eq!(csrs.list(&ListParams::default()).await.unwrap().items.len(), 1);
}

#[tokio::test]
async fn a_rejected_token_and_an_unwritable_cert_dir_are_explained() {
    let s = setup(false).await;
    let err = ensure_client_credentials(&s.config).await.unwrap_err();
    assert!(matches!(err, BootstrapError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().starts_with("the API server rejected the bootstrap token (401 Unauthorized)"), "{err}");

    let s = setup(true).await;
    let blocker = s.dir.path().join("not-a-folder");
    std::fs::write(&blocker, "").unwrap();
    let config = BootstrapConfig { cert_dir: blocker.join("pki"), ..s.config.clone() };
    let err = ensure_client_credentials(&config).await.unwrap_err();
    assert!(err.to_string().starts_with(&format!("cannot write to the certificate folder {}", blocker.join("pki").display())), "{err}");

    let none = BootstrapConfig { bootstrap_kubeconfig: None, ..s.config.clone() };
    let err = ensure_client_credentials(&none).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{} has no valid client certificate and no --bootstrap-kubeconfig was given to request one", s.config.kubeconfig.display())
    );
}
