//! Client certificate rotation, as client-go's certificate manager does it for the kubelet:
//! at a jittered 70–90 % of the certificate's lifetime, make a new key, ask for a new
//! certificate with a CSR (`generateName: csr-`) as the node itself, wait for it, and make
//! it `kubelet-client-current.pem`. Failures are retried with back-off (2 s doubling, five
//! steps, then every 32 s) while the old certificate is still valid.
//!
//! The node's API client reads the current certificate for each new TLS connection
//! ([`crate::api_client::connections::node_client`]), and a rotation closes every
//! connection opened before it (upstream's `pkg/kubelet/certificate/transport.go` does the
//! same): the API server authenticates a connection once, with the certificate it was
//! opened with, and from that certificate's `notAfter` on it answers every request on it
//! `401 Unauthorized`.

use super::{BootstrapConfig, BootstrapError, CURRENT, install_certificate, request_certificate};
use crate::api_client::connections::Connections;
use crate::clock::Clock;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// How long one renewal CSR is waited for.
const CSR_WAIT: Duration = Duration::from_secs(15 * 60);

/// The validity of the certificate in a PEM file: (notBefore, notAfter).
pub fn validity(path: &Path) -> Option<(SystemTime, SystemTime)> {
    super::certificate_validity(&std::fs::read(path).ok()?)
}

/// When to rotate: notBefore + a random 70–90 % of the lifetime.
pub fn rotation_deadline(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    not_before + lifetime.mul_f64(0.7 + 0.2 * rand::random::<f64>())
}

/// Rotates the node's client certificate until the future is dropped; each new certificate
/// closes the `connections` the old one opened (of every client that presents it).
pub async fn rotate(config: BootstrapConfig, client: kube::Client, connections: Vec<Connections>, clock: Clock) {
    let current = config.cert_dir.join(CURRENT);
    loop {
        let Some((not_before, not_after)) = validity(&current) else {
            tracing::warn!(path = %current.display(), "no client certificate to rotate");
            return;
        };
        let deadline = rotation_deadline(not_before, not_after);
        let now = SystemTime::UNIX_EPOCH + clock.since_epoch();
        tracing::info!(node = %config.node_name, "client certificate rotation in {:?}", deadline.duration_since(now).unwrap_or_default());
        clock.sleep(deadline.duration_since(now).unwrap_or_default()).await;
        let mut backoff = Duration::from_secs(2);
        let mut failures = 0;
        loop {
            // On the heap while it runs: the months between rotations cost only the sleep.
            match Box::pin(renew(&config, &client)).await {
                Ok(name) => {
                    let closed: usize = connections.iter().map(Connections::close_all).sum();
                    tracing::info!(node = %config.node_name, csr = %name, closed, "client certificate rotated; closed the connections opened with the old one");
                    break;
                }
                Err(e) => {
                    failures += 1;
                    let wait = if failures <= 5 { backoff } else { Duration::from_secs(32) };
                    tracing::warn!(node = %config.node_name, "rotating the client certificate failed ({e}); retrying in {wait:?}");
                    clock.sleep_jittered(wait, 0.1).await;
                    backoff *= 2;
                }
            }
        }
    }
}

/// One rotation: a new key, a CSR made as the node, the certificate installed.
async fn renew(config: &BootstrapConfig, client: &kube::Client) -> Result<String, BootstrapError> {
    let key = rcgen::KeyPair::generate().map_err(|e| BootstrapError::Key(e.to_string()))?;
    let (name, certificate) = tokio::time::timeout(CSR_WAIT, request_certificate(client, &config.node_name, &key, None, config.reminder))
        .await
        .map_err(|_| BootstrapError::NotIssued(CSR_WAIT))??;
    install_certificate(&config.cert_dir, &certificate, &key.serialize_pem())?;
    Ok(name)
}
