//! The control plane's certificates, as kubeadm issues them: one CA; X.509 v3 serving and
//! client certificates with key usages (rustls refuses v1 client certificates); the
//! service-account signing key; and kubeconfigs that embed them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};

/// The cluster CA, which signs every certificate here and (as the controller manager's
/// signing CA) the nodes' client certificates.
pub struct Pki {
    dir: PathBuf,
    ca: Issuer<'static, KeyPair>,
    ca_pem: String,
}

impl Pki {
    /// Writes `ca.crt`, `ca.key` and the service-account key pair `sa.key|pub` into `dir`.
    pub fn create(dir: &Path) -> anyhow::Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, "kubernetes");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key)?;
        let ca_pem = cert.pem();
        write_private(&dir.join("ca.crt"), ca_pem.as_bytes())?;
        write_private(&dir.join("ca.key"), key.serialize_pem().as_bytes())?;
        let service_accounts = KeyPair::generate()?;
        write_private(&dir.join("sa.key"), service_accounts.serialize_pem().as_bytes())?;
        write_private(&dir.join("sa.pub"), service_accounts.public_key_pem().as_bytes())?;
        Ok(Pki { dir: dir.to_path_buf(), ca: Issuer::new(params, key), ca_pem })
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A serving certificate for `names` (DNS names or IP addresses): `<name>.crt|key`.
    pub fn serving(&self, name: &str, common_name: &str, names: &[&str]) -> anyhow::Result<()> {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(name, params)
    }

    /// A client certificate for `user` in `groups`: `<name>.crt|key`.
    pub fn client(&self, name: &str, user: &str, groups: &[&str]) -> anyhow::Result<()> {
        let (cert, key) = self.client_pem(user, groups)?;
        write_private(&self.path(&format!("{name}.crt")), cert.as_bytes())?;
        write_private(&self.path(&format!("{name}.key")), key.as_bytes())
    }

    /// A client certificate and key (PEM) for `user` in `groups`.
    pub fn client_pem(&self, user: &str, groups: &[&str]) -> anyhow::Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        for group in groups {
            params.distinguished_name.push(DnType::OrganizationName, *group);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let cert = params.signed_by(&key, &self.ca)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    fn issue(&self, name: &str, mut params: CertificateParams) -> anyhow::Result<()> {
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        write_private(&self.path(&format!("{name}.crt")), cert.pem().as_bytes())?;
        write_private(&self.path(&format!("{name}.key")), key.serialize_pem().as_bytes())
    }

    /// A kubeconfig for `server` whose user authenticates with a client certificate.
    pub fn client_kubeconfig(&self, file: &Path, server: &str, user: &str, groups: &[&str]) -> anyhow::Result<()> {
        let (cert, key) = self.client_pem(user, groups)?;
        let auth = format!("client-certificate-data: {}\n    client-key-data: {}", STANDARD.encode(cert), STANDARD.encode(key));
        self.write_kubeconfig(file, server, &auth)
    }

    /// A kubeconfig for `server` whose user authenticates with a bearer token.
    pub fn token_kubeconfig(&self, file: &Path, server: &str, token: &str) -> anyhow::Result<()> {
        self.write_kubeconfig(file, server, &format!("token: {token}"))
    }

    fn write_kubeconfig(&self, file: &Path, server: &str, auth: &str) -> anyhow::Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\n\
             users:\n- name: e2e\n  user:\n    {auth}\ncontexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: e2e\ncurrent-context: e2e\n",
            STANDARD.encode(&self.ca_pem)
        );
        write_private(file, text.as_bytes())
    }
}

/// Writes a file only its owner may read: these are keys and credentials.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    Ok(file.write_all(bytes)?)
}
