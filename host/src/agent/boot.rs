//! A node's machine and boot ids: stable across agent restarts, new after each reboot a lab
//! makes, as a real machine's are.

/// The file under `<root-dir>/<node>/` that counts the node's lab reboots.
const BOOTS_FILE: &str = "boots";

/// How many times a lab rebooted the node.
fn boots(root_dir: &std::path::Path, node: &str) -> u64 {
    std::fs::read_to_string(root_dir.join(node).join(BOOTS_FILE)).ok().and_then(|b| b.trim().parse().ok()).unwrap_or(0)
}

/// A node's boot id: from the machine's, so restarting the agent is not a reboot and
/// rebooting the machine is, and from the reboots a lab made.
pub(super) fn boot_id(root_dir: &std::path::Path, node: &str) -> String {
    match boots(root_dir, node) {
        0 => machine_id(&format!("{node}/{}", host_boot_id())),
        n => machine_id(&format!("{node}/{}/{n}", host_boot_id())),
    }
}

/// Counts one more reboot of the node, so its next run has a new boot id.
pub(super) fn next_boot(root_dir: &std::path::Path, node: &str) {
    let file = root_dir.join(node).join(BOOTS_FILE);
    if let Err(e) = std::fs::write(&file, format!("{}\n", boots(root_dir, node) + 1)) {
        tracing::warn!(node, file = %file.display(), "counting the reboot (the boot id stays): {e}");
    }
}

/// The machine's boot id.
fn host_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|b| b.trim().to_string()).unwrap_or_default()
}

/// A stable 32-hex-digit id derived from a name, as /etc/machine-id looks.
pub(super) fn machine_id(seed: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(seed.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect()
}
