//! TLS bootstrap, as the kubelet does it: with a bootstrap token, ask the cluster for a
//! client certificate through a CertificateSigningRequest, wait for its approval, store
//! the certificate and key, and write the kubeconfig the agent then uses.
//!
//! Upstream: pkg/kubelet/certificate/bootstrap/bootstrap.go and client-go's
//! util/certificate. The CSR name is derived from the key, subject and usages, so a
//! restarted agent with the same key finds its own request instead of making another.
//! [`rotation`] renews the certificate before it expires.

mod error;
pub mod rotation;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use futures_util::TryStreamExt;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use rcgen::PublicKeyData;
use sha2::{Digest, Sha512_256};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use error::BootstrapError;
use error::api;

/// The signer of kubelet client certificates.
pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The usages of a kubelet client CSR. Older servers (1.20's signer and csrapproving
/// controller among them) accept exactly these three and fail any other set with
/// `SignerValidationFailure: usages did not match`; newer ones also accept an ECDSA key's
/// CSR without "key encipherment", which upstream's kubelet now sends. These three work on
/// both.
pub const USAGES: [&str; 3] = ["digital signature", "key encipherment", "client auth"];
const KEY_TMP: &str = "kubelet-client.key.tmp";
pub(crate) const CURRENT: &str = "kubelet-client-current.pem";

/// Where the credentials live, and whom they are for.
#[derive(Debug, Clone)]
pub struct BootstrapConfig {
    pub node_name: String,
    /// The kubeconfig the agent uses; written by the bootstrap.
    pub kubeconfig: PathBuf,
    /// The kubeconfig with the bootstrap token.
    pub bootstrap_kubeconfig: Option<PathBuf>,
    pub cert_dir: PathBuf,
    /// How often to remind the operator of the approve command while waiting.
    pub reminder: Duration,
}

/// The CSR name the kubelet gives a key, subject and usages.
pub fn csr_name(public_key_spki_der: &[u8], common_name: &str, organizations: &[&str], usages: &[&str]) -> String {
    let mut hash = Sha512_256::new();
    let mut write = |data: &[u8]| {
        hash.update(URL_SAFE_NO_PAD.encode(data).as_bytes());
        hash.update(b"|");
    };
    write(public_key_spki_der);
    write(common_name.as_bytes());
    for o in organizations {
        write(o.as_bytes());
    }
    for u in usages {
        write(u.as_bytes());
    }
    format!("node-csr-{}", URL_SAFE_NO_PAD.encode(hash.finalize()))
}

/// Makes sure `config.kubeconfig` holds a valid client certificate: keeps it when it does,
/// else bootstraps one. Returns the CSR name when a bootstrap happened.
pub async fn ensure_client_credentials(config: &BootstrapConfig) -> Result<Option<String>, BootstrapError> {
    if valid_credentials(&config.kubeconfig)? {
        tracing::info!(kubeconfig = %config.kubeconfig.display(), "client certificate is valid; skipping bootstrap");
        return Ok(None);
    }
    let bootstrap =
        config.bootstrap_kubeconfig.as_ref().ok_or_else(|| BootstrapError::NoCredentials { kubeconfig: config.kubeconfig.display().to_string() })?;
    let shown = bootstrap.display().to_string();
    let bad = |detail: String| BootstrapError::Kubeconfig { path: shown.clone(), detail };
    let kubeconfig = Kubeconfig::read_from(bootstrap).map_err(|e| bad(e.to_string()))?;
    let client_config = kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &KubeConfigOptions::default()).await.map_err(|e| bad(e.to_string()))?;
    let server = client_config.cluster_url.to_string();
    let client = crate::api_client::from_config(client_config).map_err(|e| bad(e.to_string()))?;

    std::fs::create_dir_all(&config.cert_dir).map_err(|e| cert_dir_error(&config.cert_dir, e))?;
    let key = load_or_create_key(&config.cert_dir)?;
    let (name, certificate) = request_certificate(&client, &config.node_name, &key, Some(bootstrap), config.reminder).await?;
    store_credentials(config, &server, &kubeconfig, &certificate, &key.serialize_pem())?;
    Ok(Some(name))
}

/// Asks for a kubelet client certificate for `key` and waits for it. With a bootstrap
/// kubeconfig the CSR name is derived from the key (a restart finds its own request);
/// a rotation, made as the node, lets the server name it (`csr-...`).
pub(crate) async fn request_certificate(
    client: &kube::Client,
    node: &str,
    key: &rcgen::KeyPair,
    bootstrap: Option<&Path>,
    reminder: Duration,
) -> Result<(String, Vec<u8>), BootstrapError> {
    let common_name = format!("system:node:{node}");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| BootstrapError::Key(e.to_string()))?;
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "system:nodes");
    params.distinguished_name.push(rcgen::DnType::CommonName, common_name.clone());
    let request = params.serialize_request(key).and_then(|r| r.pem()).map_err(|e| BootstrapError::Key(e.to_string()))?;
    let metadata = match bootstrap {
        Some(_) => serde_json::json!({"name": csr_name(&key.subject_public_key_info(), &common_name, &["system:nodes"], &USAGES)}),
        None => serde_json::json!({"generateName": "csr-"}),
    };
    let csrs: Api<CertificateSigningRequest> = Api::all(client.clone());
    let csr: CertificateSigningRequest = serde_json::from_value(serde_json::json!({
        "metadata": metadata,
        "spec": {"request": STANDARD.encode(&request), "signerName": SIGNER, "usages": USAGES},
    }))
    .map_err(|e| BootstrapError::Key(e.to_string()))?;
    let created = create_csr(&csrs, &csr, bootstrap).await?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let certificate = wait_for_certificate(&csrs, &name, created, reminder).await?;
    Ok((name, certificate))
}

fn cert_dir_error(path: &Path, e: std::io::Error) -> BootstrapError {
    BootstrapError::CertDir { path: path.display().to_string(), detail: e.to_string() }
}

/// True when the kubeconfig exists and its client certificate is valid now.
fn valid_credentials(path: &Path) -> Result<bool, BootstrapError> {
    if !path.exists() {
        return Ok(false);
    }
    let shown = path.display().to_string();
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| BootstrapError::Kubeconfig { path: shown.clone(), detail: e.to_string() })?;
    let Some(auth) = kubeconfig.auth_infos.first().and_then(|a| a.auth_info.as_ref()) else { return Ok(false) };
    let pem = match (&auth.client_certificate, &auth.client_certificate_data) {
        (Some(file), _) => std::fs::read(file).ok(),
        (None, Some(data)) => STANDARD.decode(data).ok(),
        _ => None,
    };
    let Some((not_before, not_after)) = pem.and_then(|pem| certificate_validity(&pem)) else { return Ok(false) };
    let now = SystemTime::now();
    Ok(not_before <= now && now <= not_after)
}

/// The validity of the first certificate in a PEM text: (notBefore, notAfter).
pub(crate) fn certificate_validity(pem: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    let cert = parsed.parse_x509().ok()?;
    let at = |t: x509_parser::time::ASN1Time| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0));
    Some((at(cert.validity().not_before), at(cert.validity().not_after)))
}

/// The key waiting for its certificate, kept across restarts so the same CSR is found again.
fn load_or_create_key(cert_dir: &Path) -> Result<rcgen::KeyPair, BootstrapError> {
    let path = cert_dir.join(KEY_TMP);
    if let Ok(pem) = std::fs::read_to_string(&path)
        && let Ok(key) = rcgen::KeyPair::from_pem(&pem)
    {
        return Ok(key);
    }
    let key = rcgen::KeyPair::generate().map_err(|e| BootstrapError::Key(e.to_string()))?;
    write_private(&path, key.serialize_pem().as_bytes()).map_err(|e| cert_dir_error(cert_dir, e))?;
    Ok(key)
}

/// Writes a file only its owner can read (0600), replacing it atomically.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("partial");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Creates the CSR, or finds the one an earlier run made. Waits (every 2 s, up to a minute,
/// as the kubelet polls /healthz) for an API server that does not answer yet.
async fn create_csr(
    csrs: &Api<CertificateSigningRequest>,
    csr: &CertificateSigningRequest,
    bootstrap: Option<&Path>,
) -> Result<CertificateSigningRequest, BootstrapError> {
    let name = csr.metadata.name.clone().unwrap_or_default();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match csrs.create(&PostParams::default(), csr).await {
            Ok(created) => {
                tracing::info!(csr = %name, "certificate signing request created");
                return Ok(created);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = csrs.get(&name).await.map_err(api("reading the certificate signing request"))?;
                let signer = existing.spec.signer_name.as_str();
                if signer != SIGNER {
                    return Err(BootstrapError::OtherSigner { name, signer: signer.to_string() });
                }
                tracing::info!(csr = %name, "found the certificate signing request of an earlier run");
                return Ok(existing);
            }
            Err(kube::Error::Api(s)) if s.code == 401 => {
                let shown = bootstrap.map_or_else(|| "the node's kubeconfig".to_string(), |b| b.display().to_string());
                return Err(BootstrapError::Unauthorized { bootstrap_kubeconfig: shown });
            }
            Err(e) if tokio::time::Instant::now() < give_up => {
                tracing::warn!("the API server does not answer yet ({e}); retrying in 2s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(api("creating the certificate signing request")(e)),
        }
    }
}

/// The certificate, once the CSR is approved and signed; an error once it is denied or
/// failed. Reminds the operator how to approve it while waiting.
async fn wait_for_certificate(
    csrs: &Api<CertificateSigningRequest>,
    name: &str,
    mut current: CertificateSigningRequest,
    reminder: Duration,
) -> Result<Vec<u8>, BootstrapError> {
    let remind = || {
        let line = format!("waiting for approval of certificate signing request {name}: kubectl certificate approve {name}");
        tracing::info!("{line}");
        println!("{line}");
    };
    remind();
    let mut next_reminder = tokio::time::Instant::now() + reminder;
    loop {
        if let Some(done) = verdict(name, &current)? {
            return Ok(done);
        }
        let from = current.metadata.resource_version.clone().unwrap_or_default();
        let params = WatchParams::default().fields(&format!("metadata.name={name}")).timeout(60);
        let mut events = match csrs.watch(&params, &from).await {
            Ok(stream) => Box::pin(stream),
            Err(e) => return Err(api("watching the certificate signing request")(e)),
        };
        loop {
            let next = tokio::time::timeout_at(next_reminder, events.try_next()).await;
            match next {
                Err(_) => {
                    remind();
                    next_reminder = tokio::time::Instant::now() + reminder;
                }
                Ok(Ok(Some(WatchEvent::Added(csr) | WatchEvent::Modified(csr)))) => {
                    current = csr;
                    if let Some(done) = verdict(name, &current)? {
                        return Ok(done);
                    }
                }
                Ok(Ok(Some(WatchEvent::Deleted(_)))) => {
                    return Err(BootstrapError::Deleted { name: name.to_string() });
                }
                // The watch ended or its version expired: read the CSR again and re-watch.
                Ok(Ok(Some(WatchEvent::Error(_)) | None)) | Ok(Ok(Some(WatchEvent::Bookmark(_)))) | Ok(Err(_)) => {
                    current = csrs.get(name).await.map_err(api("reading the certificate signing request"))?;
                    break;
                }
            }
        }
    }
}

fn verdict(name: &str, csr: &CertificateSigningRequest) -> Result<Option<Vec<u8>>, BootstrapError> {
    let Some(status) = &csr.status else { return Ok(None) };
    for c in status.conditions.iter().flatten() {
        let verdict = match c.type_.as_str() {
            "Denied" => "denied",
            "Failed" => "failed",
            _ => continue,
        };
        return Err(BootstrapError::NotApproved {
            name: name.to_string(),
            verdict,
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        });
    }
    let approved = status.conditions.iter().flatten().any(|c| c.type_ == "Approved");
    Ok(match &status.certificate {
        Some(cert) if approved && !cert.0.is_empty() => Some(cert.0.clone()),
        _ => None,
    })
}

/// Stores the certificate and key as `kubelet-client-<time>.pem` (0600), points
/// `kubelet-client-current.pem` at it atomically, and writes the kubeconfig.
fn store_credentials(config: &BootstrapConfig, server: &str, bootstrap: &Kubeconfig, certificate: &[u8], key_pem: &str) -> Result<(), BootstrapError> {
    let dir = &config.cert_dir;
    let fail = |e: std::io::Error| cert_dir_error(dir, e);
    install_certificate(dir, certificate, key_pem)?;
    let _ = std::fs::remove_file(dir.join(KEY_TMP));

    let current = std::fs::canonicalize(dir).map_err(fail)?.join(CURRENT).display().to_string();
    let text = serde_yaml_ng::to_string(&node_kubeconfig(server, bootstrap, &current))
        .map_err(|e| BootstrapError::Kubeconfig { path: config.kubeconfig.display().to_string(), detail: e.to_string() })?;
    if let Some(parent) = config.kubeconfig.parent() {
        std::fs::create_dir_all(parent).map_err(fail)?;
    }
    write_private(&config.kubeconfig, text.as_bytes()).map_err(fail)
}

/// The node's kubeconfig, as the kubelet writes it after a bootstrap: the bootstrap
/// kubeconfig's cluster and CA, and the current client certificate (`credentials`, which
/// holds the key too) as the user.
fn node_kubeconfig(server: &str, bootstrap: &Kubeconfig, credentials: &str) -> Kubeconfig {
    use kube::config::{AuthInfo, Cluster, Context, NamedAuthInfo, NamedCluster, NamedContext};
    let cluster = bootstrap.clusters.first().and_then(|c| c.cluster.as_ref());
    let ca_data = cluster.and_then(|c| c.certificate_authority_data.clone());
    Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster {
            name: "default-cluster".into(),
            cluster: Some(Cluster {
                server: Some(server.trim_end_matches('/').into()),
                certificate_authority: cluster.and_then(|c| c.certificate_authority.clone()).filter(|_| ca_data.is_none()),
                certificate_authority_data: ca_data,
                ..Default::default()
            }),
        }],
        contexts: vec![NamedContext {
            name: "default-context".into(),
            context: Some(Context {
                cluster: "default-cluster".into(),
                user: Some("default-auth".into()),
                namespace: Some("default".into()),
                ..Default::default()
            }),
        }],
        current_context: Some("default-context".into()),
        auth_infos: vec![NamedAuthInfo {
            name: "default-auth".into(),
            auth_info: Some(AuthInfo { client_certificate: Some(credentials.into()), client_key: Some(credentials.into()), ..Default::default() }),
        }],
        ..Default::default()
    }
}

/// Writes the certificate chain and key as `kubelet-client-<time>.pem` (0600) and points
/// `kubelet-client-current.pem` at it atomically (temporary link, then rename).
pub(crate) fn install_certificate(dir: &Path, certificate: &[u8], key_pem: &str) -> Result<(), BootstrapError> {
    let fail = |e: std::io::Error| cert_dir_error(dir, e);
    let stamp = timestamp(SystemTime::now());
    let mut file = dir.join(format!("kubelet-client-{stamp}.pem"));
    // Two certificates in one second (a short-lived test certificate) get distinct files.
    let mut n = 1;
    while file.exists() {
        file = dir.join(format!("kubelet-client-{stamp}.{n}.pem"));
        n += 1;
    }
    let mut pem = certificate.to_vec();
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem.extend_from_slice(key_pem.as_bytes());
    write_private(&file, &pem).map_err(fail)?;
    let link = dir.join(CURRENT);
    let tmp_link = dir.join(format!("{CURRENT}.tmp"));
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&file, &tmp_link).map_err(fail)?;
    std::fs::rename(&tmp_link, &link).map_err(fail)
}

/// `2006-01-02-15-04-05`, the kubelet's certificate file stamp, in UTC.
fn timestamp(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    k8s_openapi::jiff::Timestamp::from_second(i64::try_from(secs).unwrap_or(0)).map(|t| t.strftime("%Y-%m-%d-%H-%M-%S").to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
