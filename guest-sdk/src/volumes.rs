//! Volumes that containers write to (an emptyDir, a hostPath, a claim): what one container
//! writes there, the others that mount the volume see, as on a node where they are one
//! folder. Each volume's files live here, in the runtime; a running container's filesystem
//! holds a copy under each of its mounts, refreshed before a call when the volume changed,
//! and handed back after the call when the container's commands wrote to it.
//!
//! An emptyDir goes with the last container that mounts it; a hostPath or a claim keeps its
//! files for the pods that mount it later, the last [`MAX_KEPT`] of them.

use crate::ContainerMount;
use crate::shell::fs::{Fs, Node};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The most volumes kept that no container mounts (hostPaths, claims); the least recently
/// used go first.
pub(crate) const MAX_KEPT: usize = 16;

/// A container as its shared volumes see it.
pub(crate) struct Side<'a> {
    pub(crate) running: bool,
    pub(crate) mounts: &'a [ContainerMount],
    pub(crate) fs: &'a mut Fs,
    /// Which change of each volume its files show, by mount path.
    pub(crate) seen: &'a mut BTreeMap<String, u64>,
}

/// The runtime's shared volumes, by the name the host gives them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Volumes {
    by_name: BTreeMap<String, Volume>,
    /// Counts changes, so a container knows whether its copy is the latest.
    generation: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Volume {
    /// Files and folders by their path in the volume ("a/b"), not the volume's own folder.
    contents: BTreeMap<String, Node>,
    /// The change that made `contents`.
    generation: u64,
    outlives_pod: bool,
    /// The last change or use, in [`Volumes::generation`]s: the least recently used go first.
    used: u64,
}

impl Volumes {
    /// Before a call: each running container's volume folders show the volumes' latest files.
    pub(crate) fn share_in<'a>(&mut self, containers: impl Iterator<Item = Side<'a>>) {
        for c in containers.filter(|c| c.running) {
            for m in shared_mounts(c.mounts) {
                let Some(shared) = &m.shared else { continue };
                let volume = self.by_name.entry(shared.name.clone()).or_insert_with(|| Volume { outlives_pod: shared.outlives_pod, ..Volume::default() });
                if c.seen.get(&m.path) == Some(&volume.generation) {
                    continue;
                }
                // A subPath that is not there yet is made, as the kubelet makes it.
                let sub = shared.sub_path.as_str();
                if !sub.is_empty() && !volume.contents.contains_key(sub) {
                    let mut at = String::new();
                    for part in sub.split('/') {
                        at = if at.is_empty() { part.to_string() } else { format!("{at}/{part}") };
                        volume.contents.entry(at.clone()).or_insert(Node::Dir);
                    }
                }
                c.fs.set_volume_contents(&m.path, &under(&volume.contents, sub));
                c.seen.insert(m.path.clone(), volume.generation);
            }
        }
    }

    /// After a call: what containers wrote to their volume folders goes to the volumes, and
    /// an ended container's files go. Volumes no container mounts any more go as the module
    /// says.
    pub(crate) fn share_out<'a>(&mut self, containers: impl Iterator<Item = Side<'a>>) {
        let mut mounted = BTreeSet::new();
        for c in containers {
            let changed = c.fs.take_changed_mounts();
            for m in shared_mounts(c.mounts) {
                let Some(shared) = &m.shared else { continue };
                mounted.insert(shared.name.clone());
                if !changed.contains(&m.path) || m.read_only {
                    continue;
                }
                self.generation += 1;
                let volume = self.by_name.entry(shared.name.clone()).or_insert_with(|| Volume { outlives_pod: shared.outlives_pod, ..Volume::default() });
                let sub = shared.sub_path.as_str();
                let prefix = format!("{sub}/");
                volume.contents.retain(|k, _| !(sub.is_empty() || k.starts_with(&prefix)));
                for (rel, node) in c.fs.volume_contents(&m.path) {
                    let key = match (sub, rel.as_str()) {
                        (_, "") => continue,
                        ("", _) => rel,
                        _ => format!("{sub}/{rel}"),
                    };
                    volume.contents.insert(key, node);
                }
                volume.generation = self.generation;
                c.seen.insert(m.path.clone(), self.generation);
            }
            if !c.running {
                *c.fs = Fs::default();
                c.seen.clear();
            }
        }
        let generation = self.generation;
        for (name, volume) in &mut self.by_name {
            if mounted.contains(name) {
                volume.used = generation;
            }
        }
        self.by_name.retain(|name, v| mounted.contains(name) || v.outlives_pod);
        let mut unmounted: Vec<(u64, String)> =
            self.by_name.iter().filter(|(name, _)| !mounted.contains(*name)).map(|(name, v)| (v.used, name.clone())).collect();
        unmounted.sort();
        for (_, name) in unmounted.iter().take(unmounted.len().saturating_sub(MAX_KEPT)) {
            self.by_name.remove(name);
        }
    }
}

/// The mounts of volumes that containers write to.
fn shared_mounts(mounts: &[ContainerMount]) -> impl Iterator<Item = &ContainerMount> {
    mounts.iter().filter(|m| m.shared.is_some())
}

/// What a mount of folder `sub` of a volume shows, by paths relative to the mount.
fn under(contents: &BTreeMap<String, Node>, sub: &str) -> BTreeMap<String, Node> {
    if sub.is_empty() {
        return contents.clone();
    }
    let prefix = format!("{sub}/");
    contents.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).map(|(k, n)| (k[prefix.len()..].to_string(), n.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::labkubelet::runtime::types::SharedVolume;
    use crate::shell::fs::{FsError, MountPoint};

    fn mount(path: &str, volume: &str, sub_path: &str, read_only: bool) -> ContainerMount {
        let shared = SharedVolume { name: volume.into(), sub_path: sub_path.into(), outlives_pod: volume.starts_with("hostpath:") };
        ContainerMount { path: path.into(), mode: 0o777, read_only, tmpfs: false, shared: Some(shared) }
    }

    /// A container's side of its volumes: its mounts, its files and what it saw.
    struct Container {
        running: bool,
        mounts: Vec<ContainerMount>,
        fs: Fs,
        seen: BTreeMap<String, u64>,
    }

    /// A running container with `mounts`, its folders made as the runtime makes them.
    fn running(mounts: Vec<ContainerMount>) -> Container {
        let mut fs = Fs::new();
        for m in &mounts {
            fs.mount(&m.path, MountPoint { mode: m.mode, read_only: m.read_only, tmpfs: m.tmpfs });
        }
        Container { running: true, mounts, fs, seen: BTreeMap::new() }
    }

    fn sides(containers: &mut [Container]) -> impl Iterator<Item = Side<'_>> {
        containers.iter_mut().map(|c| Side { running: c.running, mounts: &c.mounts, fs: &mut c.fs, seen: &mut c.seen })
    }

    /// One call of the runtime: volumes shown before, handed back after.
    fn call(volumes: &mut Volumes, containers: &mut [Container], f: impl FnOnce(&mut [Container])) {
        volumes.share_in(sides(containers));
        f(containers);
        volumes.share_out(sides(containers));
    }

    fn read(c: &Container, path: &str) -> Result<String, FsError> {
        c.fs.read(path).map(|b| String::from_utf8_lossy(b).into_owned())
    }

    #[test]
    fn what_one_container_writes_the_others_see_at_their_own_mount_paths() {
        let mut volumes = Volumes::default();
        let mut pod = [running(vec![mount("/data", "pod:u1/shared", "", false)]), running(vec![mount("/pod-data", "pod:u1/shared", "", true)])];
        call(&mut volumes, &mut pod, |c| {
            c[0].fs.mkdir("/data/html", false).expect("mkdir");
            c[0].fs.write("/data/html/index.html", b"hello", false).expect("write");
        });
        call(&mut volumes, &mut pod, |c| {
            assert_eq!(read(&c[1], "/pod-data/html/index.html").as_deref(), Ok("hello"));
            assert_eq!(c[1].fs.write("/pod-data/x", b"", false), Err(FsError::ReadOnly), "its own mount is read-only");
            c[0].fs.remove("/data/html", true).expect("rm -r");
        });
        call(&mut volumes, &mut pod, |c| assert_eq!(c[1].fs.list("/pod-data"), Ok(vec![]), "a removal is seen too"));
    }

    #[test]
    fn a_sub_path_mount_writes_into_that_folder_of_the_volume() {
        let mut volumes = Volumes::default();
        let mut pod =
            [running(vec![mount("/test-volume", "hostpath:/tmp", "sub-path", false)]), running(vec![mount("/test-volume", "hostpath:/tmp", "", false)])];
        call(&mut volumes, &mut pod, |c| {
            assert_eq!(c[1].fs.list("/test-volume"), Ok(vec!["sub-path".to_string()]), "the kubelet makes the subPath");
            c[0].fs.write("/test-volume/test-file", b"mount-tester new file\n", false).expect("write");
        });
        call(&mut volumes, &mut pod, |c| {
            assert_eq!(read(&c[1], "/test-volume/sub-path/test-file").as_deref(), Ok("mount-tester new file\n"));
            c[1].fs.write("/test-volume/other", b"x", false).expect("write beside the subPath");
        });
        call(&mut volumes, &mut pod, |c| {
            assert_eq!(read(&c[0], "/test-volume/test-file").as_deref(), Ok("mount-tester new file\n"), "the writer's file stays");
            assert_eq!(c[0].fs.list("/test-volume"), Ok(vec!["test-file".to_string()]), "outside its subPath is not its to see");
        });
    }

    #[test]
    fn an_empty_dir_goes_with_its_last_container_and_a_host_path_stays_for_the_next_pod() {
        let mut volumes = Volumes::default();
        let mut first = [running(vec![mount("/cache", "pod:u1/cache", "", false), mount("/host", "hostpath:/var/log", "", false)])];
        call(&mut volumes, &mut first, |c| {
            c[0].fs.write("/cache/f", b"1", false).expect("write");
            c[0].fs.write("/host/f", b"2", false).expect("write");
            c[0].running = false;
        });
        assert!(first[0].fs.get("/cache/f").is_none(), "an ended container's files go");
        let [exited] = first;
        let mut restarted = [exited, running(vec![mount("/cache", "pod:u1/cache", "", false)])];
        call(&mut volumes, &mut restarted, |c| assert_eq!(read(&c[1], "/cache/f").as_deref(), Ok("1"), "an emptyDir outlives a container's restart"));
        call(&mut volumes, &mut [], |_| {});
        let mut next_pod = [running(vec![mount("/cache", "pod:u1/cache", "", false), mount("/logs", "hostpath:/var/log", "", false)])];
        call(&mut volumes, &mut next_pod, |c| {
            assert_eq!(c[0].fs.list("/cache"), Ok(vec![]), "the emptyDir went with the pod");
            assert_eq!(read(&c[0], "/logs/f").as_deref(), Ok("2"), "the node's folder keeps its files");
        });
    }

    #[test]
    fn at_most_max_kept_volumes_outlive_their_pods() {
        let mut volumes = Volumes::default();
        for n in 0..MAX_KEPT + 4 {
            let mut pod = [running(vec![mount("/h", &format!("hostpath:/h{n}"), "", false)])];
            call(&mut volumes, &mut pod, |c| c[0].fs.write("/h/f", b"x", false).expect("write"));
        }
        call(&mut volumes, &mut [], |_| {});
        assert_eq!(volumes.by_name.len(), MAX_KEPT);
        assert!(!volumes.by_name.contains_key("hostpath:/h0"), "the least recently used went");
        assert!(volumes.by_name.contains_key(&format!("hostpath:/h{}", MAX_KEPT + 3)));
    }
}
