//! Pod addresses of one node, handed out as CNI's host-local IPAM plugin does: from the
//! node's pod CIDR (`spec.podCIDR` once the controller manager assigns one, else
//! containerd's default bridge network 10.88.0.0/16), in order, skipping the network's
//! first address (the gateway's) and every address a sandbox holds. The runtime plugin is
//! told the address in the sandbox config's `pod-ip`; the host refuses a sandbox whose
//! plugin reports an address another sandbox holds.
//!
//! ```
//! use labkubelet::runtime::ipam::PodAddresses;
//! let addresses = PodAddresses::default();
//! let a = addresses.allocate("sandbox-a").unwrap();
//! let b = addresses.allocate("sandbox-b").unwrap();
//! assert_eq!((a.to_string(), b.to_string()), ("10.88.0.2".to_string(), "10.88.0.3".to_string()));
//! addresses.release("sandbox-a");
//! ```

use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

/// containerd's default CNI bridge network, used until the node has a pod CIDR.
pub const DEFAULT_POD_CIDR: &str = "10.88.0.0/16";

struct Pool {
    range: Ipv4Net,
    /// Sandbox id → address.
    held: HashMap<String, Ipv4Addr>,
    /// Where the next search starts (host-local hands addresses out round-robin).
    next: u32,
}

/// The addresses of one node's pod sandboxes.
pub struct PodAddresses {
    pool: Mutex<Pool>,
}

impl Default for PodAddresses {
    fn default() -> Self {
        let range = DEFAULT_POD_CIDR.parse().unwrap_or_else(|_| Ipv4Net::new(Ipv4Addr::new(10, 88, 0, 0), 16).unwrap_or_default());
        PodAddresses { pool: Mutex::new(Pool { range, held: HashMap::new(), next: 0 }) }
    }
}

/// An address another sandbox holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pod IP {ip} is already held by pod sandbox {holder}")]
pub struct AddressTaken {
    pub ip: Ipv4Addr,
    pub holder: String,
}

impl PodAddresses {
    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Allocates from this range from now on (a node's `spec.podCIDR`, e.g. `10.244.1.0/24`).
    /// Addresses already held stay. False when the text is not an IPv4 CIDR.
    pub fn set_range(&self, cidr: &str) -> bool {
        let Ok(range) = cidr.parse::<Ipv4Net>() else { return false };
        let mut pool = self.pool();
        if pool.range != range {
            pool.range = range;
            pool.next = 0;
        }
        true
    }

    /// The next free address for a sandbox; `None` when the range is full.
    pub fn allocate(&self, sandbox: &str) -> Option<Ipv4Addr> {
        let mut pool = self.pool();
        if let Some(ip) = pool.held.get(sandbox) {
            return Some(*ip);
        }
        // Usable hosts: the network address and the gateway (.1) excluded, and the
        // broadcast address of ranges that have one.
        let first = u32::from(pool.range.network()).saturating_add(2);
        let last = u32::from(pool.range.broadcast()).saturating_sub(u32::from(pool.range.prefix_len() < 31));
        let size = last.checked_sub(first)?.saturating_add(1);
        for step in 0..size {
            let candidate = Ipv4Addr::from(first + (pool.next.wrapping_add(step)) % size);
            if !pool.held.values().any(|held| *held == candidate) {
                pool.next = (pool.next.wrapping_add(step) + 1) % size;
                pool.held.insert(sandbox.to_string(), candidate);
                return Some(candidate);
            }
        }
        None
    }

    /// Records the address a sandbox has (one the plugin chose, or one found after a
    /// restart); refused when another sandbox holds it.
    pub fn record(&self, sandbox: &str, ip: Ipv4Addr) -> Result<(), AddressTaken> {
        let mut pool = self.pool();
        if let Some((holder, _)) = pool.held.iter().find(|(id, held)| **held == ip && id.as_str() != sandbox) {
            return Err(AddressTaken { ip, holder: holder.clone() });
        }
        pool.held.insert(sandbox.to_string(), ip);
        Ok(())
    }

    /// Moves the address held under one key to another (a sandbox's provisional key to its
    /// id, once the runtime named it), with no moment in which it is free.
    pub fn transfer(&self, from: &str, to: &str) {
        let mut pool = self.pool();
        if let Some(ip) = pool.held.remove(from) {
            pool.held.insert(to.to_string(), ip);
        }
    }

    /// The sandbox's network is torn down: its address is free again.
    pub fn release(&self, sandbox: &str) {
        self.pool().held.remove(sandbox);
    }

    /// The address a sandbox holds.
    pub fn of(&self, sandbox: &str) -> Option<Ipv4Addr> {
        self.pool().held.get(sandbox).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_handed_out_in_order_and_never_twice() {
        let a = PodAddresses::default();
        assert!(a.set_range("10.244.1.0/29"));
        // .0 network, .1 gateway, .7 broadcast: .2 to .6.
        let got: Vec<String> = (0..5).map(|i| a.allocate(&format!("s{i}")).map(|ip| ip.to_string()).unwrap_or_default()).collect();
        assert_eq!(got, ["10.244.1.2", "10.244.1.3", "10.244.1.4", "10.244.1.5", "10.244.1.6"]);
        assert_eq!(a.allocate("s5"), None, "the range is full");
        a.release("s1");
        assert_eq!(a.allocate("s5").map(|ip| ip.to_string()).as_deref(), Some("10.244.1.3"));
        assert_eq!(a.allocate("s5"), a.of("s5"), "a sandbox keeps its address");
        let taken = a.record("other", Ipv4Addr::new(10, 244, 1, 2)).unwrap_err();
        assert_eq!(taken.to_string(), "pod IP 10.244.1.2 is already held by pod sandbox s0");
        a.transfer("s5", "sandbox-5");
        assert_eq!((a.of("s5"), a.of("sandbox-5").map(|ip| ip.to_string())), (None, Some("10.244.1.3".to_string())));
        assert!(!a.set_range("not a cidr"));
    }
}
