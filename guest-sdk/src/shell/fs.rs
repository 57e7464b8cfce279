//! A container's filesystem: files and folders in memory, with a size cap, so what a
//! container's command writes, an exec reads. Paths are absolute and normalised (`.`, `..`
//! and repeated slashes resolved); `/dev/null` swallows writes and reads as empty. Volume
//! folders are mount points with their own mode, read-only or tmpfs; with a read-only root
//! only the writable volumes and `/dev` take writes. The volumes a command changed are
//! remembered, so the runtime can hand what it wrote to the other containers that mount them.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The most a container's files may hold, in bytes: past it a write fails as on a full disk.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Node {
    File { data: Vec<u8>, mode: u32 },
    Dir,
}

/// Why a file operation failed, as busybox words it after the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsError {
    NotFound,
    IsDir,
    NotDir,
    Exists,
    NotEmpty,
    NoSpace,
    ReadOnly,
}

impl std::fmt::Display for FsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FsError::NotFound => "No such file or directory",
            FsError::IsDir => "Is a directory",
            FsError::NotDir => "Not a directory",
            FsError::Exists => "File exists",
            FsError::NotEmpty => "Directory not empty",
            FsError::NoSpace => "No space left on device",
            FsError::ReadOnly => "Read-only file system",
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fs {
    nodes: BTreeMap<String, Node>,
    bytes: usize,
    /// Volume folders by path.
    #[serde(default)]
    mounts: BTreeMap<String, MountPoint>,
    /// `readOnlyRootFilesystem`.
    #[serde(default)]
    read_only_root: bool,
    /// The volume folders written to since [`Fs::take_changed_mounts`] last asked.
    #[serde(skip)]
    changed_mounts: BTreeSet<String>,
}

/// A volume's folder in the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    /// The folder's permission bits.
    pub mode: u32,
    pub read_only: bool,
    pub tmpfs: bool,
}

impl Fs {
    /// An empty filesystem with the folders every image has.
    pub fn new() -> Fs {
        let mut fs = Fs::default();
        for dir in ["/", "/bin", "/dev", "/etc", "/home", "/proc", "/root", "/tmp", "/usr", "/usr/bin", "/var", "/var/log", "/run"] {
            fs.nodes.insert(dir.to_string(), Node::Dir);
        }
        fs
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub fn is_dir(&self, path: &str) -> bool {
        matches!(self.nodes.get(path), Some(Node::Dir))
    }

    pub fn read(&self, path: &str) -> Result<&[u8], FsError> {
        if path == "/dev/null" {
            return Ok(&[]);
        }
        match self.nodes.get(path) {
            Some(Node::File { data, .. }) => Ok(data),
            Some(Node::Dir) => Err(FsError::IsDir),
            None => Err(FsError::NotFound),
        }
    }

    /// Makes `path` a volume's folder (and the folders above it).
    pub fn mount(&mut self, path: &str, point: MountPoint) {
        self.make_dirs(path);
        self.mounts.insert(path.to_string(), point);
    }

    /// Makes the root read-only (`readOnlyRootFilesystem`).
    pub fn set_read_only_root(&mut self, read_only: bool) {
        self.read_only_root = read_only;
    }

    /// The volume `path` is in, if any: the deepest mount point at or above it.
    pub fn mount_of(&self, path: &str) -> Option<&MountPoint> {
        self.mount_path_of(path).and_then(|at| self.mounts.get(at))
    }

    /// The folder of the volume `path` is in, if any.
    fn mount_path_of<'a>(&self, path: &'a str) -> Option<&'a str> {
        let mut at = path;
        loop {
            if self.mounts.contains_key(at) {
                return Some(at);
            }
            if at == "/" {
                return None;
            }
            at = parent(at);
        }
    }

    /// Remembers that a command changed `path`, if it is in a volume.
    fn changed(&mut self, path: &str) {
        if let Some(at) = self.mount_path_of(path) {
            self.changed_mounts.insert(at.to_string());
        }
    }

    /// The volume folders commands wrote to since the last time this was asked.
    pub fn take_changed_mounts(&mut self) -> BTreeSet<String> {
        std::mem::take(&mut self.changed_mounts)
    }

    /// What a volume folder holds: its files and folders at any depth, by their path
    /// relative to it, without those of a volume mounted inside it.
    pub fn volume_contents(&self, folder: &str) -> BTreeMap<String, Node> {
        let prefix = if folder == "/" { "/".to_string() } else { format!("{folder}/") };
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| self.mount_path_of(k) == Some(folder))
            .map(|(k, n)| (k[prefix.len()..].to_string(), n.clone()))
            .collect()
    }

    /// Makes a volume folder hold `contents` (as [`Fs::volume_contents`] gives them), in
    /// place of what it held; what does not fit in the container's space is left out.
    pub fn set_volume_contents(&mut self, folder: &str, contents: &BTreeMap<String, Node>) {
        for (rel, _) in self.volume_contents(folder).into_iter().rev() {
            let path = join(folder, &rel);
            if let Some(Node::File { data, .. }) = self.nodes.remove(&path) {
                self.bytes -= data.len();
            }
        }
        self.make_dirs(folder);
        for (rel, node) in contents {
            let path = join(folder, rel);
            match node {
                Node::Dir => self.make_dirs(&path),
                Node::File { data, mode } => self.put(&path, data, *mode),
            }
        }
    }

    /// A folder's permission bits: a volume's own, `/tmp`'s 01777, else 0755.
    pub fn dir_mode(&self, path: &str) -> u32 {
        self.mounts.get(path).map_or(if path == "/tmp" { 0o1777 } else { 0o755 }, |m| m.mode)
    }

    /// Whether a command may change `path`.
    fn writable(&self, path: &str) -> Result<(), FsError> {
        let read_only = match self.mount_of(path) {
            Some(point) => point.read_only,
            None => self.read_only_root && path != "/dev" && !path.starts_with("/dev/"),
        };
        if read_only { Err(FsError::ReadOnly) } else { Ok(()) }
    }

    /// Writes a file (replacing or appending), making it if its folder exists.
    pub fn write(&mut self, path: &str, bytes: &[u8], append: bool) -> Result<(), FsError> {
        if path == "/dev/null" {
            return Ok(());
        }
        self.writable(path)?;
        self.write_unchecked(path, bytes, append)?;
        self.changed(path);
        Ok(())
    }

    /// [`Fs::write`] as the runtime lays out a volume's files, read-only or not.
    fn write_unchecked(&mut self, path: &str, bytes: &[u8], append: bool) -> Result<(), FsError> {
        self.parent_exists(path)?;
        let old = match self.nodes.get(path) {
            Some(Node::Dir) => return Err(FsError::IsDir),
            Some(Node::File { data, .. }) => data.len(),
            None => 0,
        };
        let new_len = if append { old + bytes.len() } else { bytes.len() };
        if self.bytes - old + new_len > MAX_BYTES {
            return Err(FsError::NoSpace);
        }
        self.bytes = self.bytes - old + new_len;
        match self.nodes.get_mut(path) {
            Some(Node::File { data, .. }) if append => data.extend_from_slice(bytes),
            Some(Node::File { data, .. }) => *data = bytes.to_vec(),
            _ => {
                self.nodes.insert(path.to_string(), Node::File { data: bytes.to_vec(), mode: 0o644 });
            }
        }
        Ok(())
    }

    /// Puts a file, making its folders: how the runtime lays out an image and a volume.
    pub fn put(&mut self, path: &str, bytes: &[u8], mode: u32) {
        self.make_dirs(parent(path));
        if self.write_unchecked(path, bytes, false).is_ok() {
            self.set_mode(path, mode);
        }
    }

    /// Makes a folder and those above it, as the runtime does for a mount, read-only or not.
    fn make_dirs(&mut self, path: &str) {
        if path != "/" {
            self.make_dirs(parent(path));
        }
        if !self.nodes.contains_key(path) {
            self.nodes.insert(path.to_string(), Node::Dir);
        }
    }

    /// Sets a file's permission bits; folders keep theirs.
    pub fn set_mode(&mut self, path: &str, mode: u32) {
        if let Some(Node::File { mode: m, .. }) = self.nodes.get_mut(path) {
            *m = mode;
        }
    }

    pub fn mkdir(&mut self, path: &str, parents: bool) -> Result<(), FsError> {
        match self.nodes.get(path) {
            Some(Node::Dir) if parents => return Ok(()),
            Some(_) => return Err(FsError::Exists),
            None => {}
        }
        self.writable(path)?;
        if parents && path != "/" {
            self.mkdir(parent(path), true)?;
        }
        self.parent_exists(path)?;
        self.nodes.insert(path.to_string(), Node::Dir);
        self.changed(path);
        Ok(())
    }

    /// Removes a file, or a folder with `recursive` (or an empty one).
    pub fn remove(&mut self, path: &str, recursive: bool) -> Result<(), FsError> {
        if self.nodes.contains_key(path) {
            self.writable(path)?;
            self.changed(path);
        }
        match self.nodes.get(path) {
            None => Err(FsError::NotFound),
            Some(Node::File { data, .. }) => {
                self.bytes -= data.len();
                self.nodes.remove(path);
                Ok(())
            }
            Some(Node::Dir) => {
                let inside: Vec<String> = self.children_of(path).collect();
                if !inside.is_empty() && !recursive {
                    return Err(FsError::NotEmpty);
                }
                let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
                let gone: Vec<String> = self.nodes.range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).map(|(k, _)| k.clone()).collect();
                for key in gone {
                    if let Some(Node::File { data, .. }) = self.nodes.remove(&key) {
                        self.bytes -= data.len();
                    }
                }
                if path != "/" {
                    self.nodes.remove(path);
                }
                Ok(())
            }
        }
    }

    /// The names in a folder, sorted.
    pub fn list(&self, path: &str) -> Result<Vec<String>, FsError> {
        match self.nodes.get(path) {
            Some(Node::Dir) => Ok(self.children_of(path).map(|p| p.rsplit('/').next().unwrap_or_default().to_string()).collect()),
            Some(Node::File { .. }) => Err(FsError::NotDir),
            None => Err(FsError::NotFound),
        }
    }

    /// The files (not folders) at any depth under a folder.
    pub fn files_under(&self, path: &str) -> Vec<String> {
        let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
        self.nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, n)| matches!(n, Node::File { .. }))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Removes a file as the runtime does, read-only volume or not.
    pub fn remove_file(&mut self, path: &str) {
        if let Some(Node::File { data, .. }) = self.nodes.get(path) {
            self.bytes -= data.len();
            self.nodes.remove(path);
        }
    }

    fn children_of(&self, path: &str) -> impl Iterator<Item = String> {
        let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
        let children: Vec<String> = self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| k.len() > prefix.len() && !k[prefix.len()..].contains('/'))
            .map(|(k, _)| k.clone())
            .collect();
        children.into_iter()
    }

    fn parent_exists(&self, path: &str) -> Result<(), FsError> {
        match self.nodes.get(parent(path)) {
            Some(Node::Dir) => Ok(()),
            Some(_) => Err(FsError::NotDir),
            None => Err(FsError::NotFound),
        }
    }
}

/// The folder a path is in (`/` for `/` itself).
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// `rel` (relative, normalised; "" for the folder itself) inside absolute `folder`.
pub fn join(folder: &str, rel: &str) -> String {
    match (folder, rel) {
        (_, "") => folder.to_string(),
        ("/", _) => format!("/{rel}"),
        _ => format!("{folder}/{rel}"),
    }
}

/// `path` made absolute against `cwd` and normalised.
pub fn resolve(cwd: &str, path: &str) -> String {
    let joined = if path.starts_with('/') { path.to_string() } else { format!("{cwd}/{path}") };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_folders_behave_as_on_a_disk() {
        let mut fs = Fs::new();
        assert_eq!(fs.write("/tmp/a", b"x", false), Ok(()));
        assert_eq!(fs.write("/tmp/a", b"y", true), Ok(()));
        assert_eq!(fs.read("/tmp/a"), Ok(&b"xy"[..]));
        assert_eq!(fs.write("/nope/a", b"x", false), Err(FsError::NotFound));
        assert_eq!(fs.mkdir("/a/b/c", false), Err(FsError::NotFound));
        assert_eq!(fs.mkdir("/a/b/c", true), Ok(()));
        fs.put("/etc/config/key", b"v", 0o644);
        assert_eq!(fs.list("/etc/config"), Ok(vec!["key".to_string()]));
        assert_eq!(fs.remove("/a", false), Err(FsError::NotEmpty));
        assert_eq!(fs.remove("/a", true), Ok(()));
        assert!(fs.get("/a/b").is_none());
        assert_eq!(fs.read("/tmp"), Err(FsError::IsDir));
        assert_eq!(fs.read("/dev/null"), Ok(&b""[..]));
        assert_eq!(resolve("/tmp", "../etc/./hosts"), "/etc/hosts");
        assert_eq!(resolve("/", "a//b/"), "/a/b");
    }

    #[test]
    fn read_only_volumes_and_root_refuse_writes_but_take_the_runtimes_files() {
        let mut fs = Fs::new();
        fs.mount("/etc/config", MountPoint { mode: 0o777, read_only: true, tmpfs: false });
        fs.mount("/cache", MountPoint { mode: 0o777, read_only: false, tmpfs: true });
        fs.put("/etc/config/key", b"v", 0o644);
        assert_eq!(fs.read("/etc/config/key"), Ok(&b"v"[..]));
        assert_eq!(fs.write("/etc/config/key", b"x", false), Err(FsError::ReadOnly));
        assert_eq!(fs.remove("/etc/config/key", false), Err(FsError::ReadOnly));
        assert_eq!(fs.write("/tmp/a", b"x", false), Ok(()), "the root is writable");
        fs.set_read_only_root(true);
        assert_eq!(fs.write("/file", b"x", false), Err(FsError::ReadOnly));
        assert_eq!(fs.mkdir("/tmp/d", false), Err(FsError::ReadOnly));
        assert_eq!(fs.write("/cache/a", b"x", false), Ok(()), "a writable volume");
        assert_eq!(fs.write("/dev/termination-log", b"x", false), Ok(()), "/dev is a tmpfs of its own");
        assert_eq!((fs.dir_mode("/cache"), fs.dir_mode("/tmp"), fs.dir_mode("/etc")), (0o777, 0o1777, 0o755));
        assert_eq!(fs.mount_of("/cache/a/b").map(|m| m.tmpfs), Some(true));
    }

    #[test]
    fn the_disk_fills_up() {
        let mut fs = Fs::new();
        let big = vec![0u8; MAX_BYTES / 2];
        assert_eq!(fs.write("/tmp/a", &big, false), Ok(()));
        assert_eq!(fs.write("/tmp/b", &big, false), Ok(()));
        assert_eq!(fs.write("/tmp/c", b"x", false), Err(FsError::NoSpace));
        assert_eq!(fs.remove("/tmp/a", false), Ok(()));
        assert_eq!(fs.write("/tmp/c", b"x", false), Ok(()));
    }
}
