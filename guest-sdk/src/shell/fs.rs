//! A container's filesystem: files and folders in memory, with a size cap, so what a
//! container's command writes, an exec reads. Paths are absolute and normalised (`.`, `..`
//! and repeated slashes resolved); `/dev/null` swallows writes and reads as empty.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
        })
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Fs {
    nodes: BTreeMap<String, Node>,
    bytes: usize,
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

    /// Writes a file (replacing or appending), making it if its folder exists.
    pub fn write(&mut self, path: &str, bytes: &[u8], append: bool) -> Result<(), FsError> {
        if path == "/dev/null" {
            return Ok(());
        }
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
        let _ = self.mkdir(parent(path), true);
        if self.write(path, bytes, false).is_ok() {
            self.set_mode(path, mode);
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
        if parents && path != "/" {
            self.mkdir(parent(path), true)?;
        }
        self.parent_exists(path)?;
        self.nodes.insert(path.to_string(), Node::Dir);
        Ok(())
    }

    /// Removes a file, or a folder with `recursive` (or an empty one).
    pub fn remove(&mut self, path: &str, recursive: bool) -> Result<(), FsError> {
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
