//! Compiled plugins kept on disk, so an agent restarted with the same plugin folder loads
//! its plugins without compiling them again (Cranelift is most of a cold start: seconds
//! for the stock plugins on two cores, against milliseconds to map machine code back in).
//!
//! A file is named by the component's hash and the engine's compatibility hash (wasmtime's
//! version and every setting that changes the code), so another build or configuration of
//! the agent never picks up a file it cannot run; wasmtime checks the header again when it
//! loads one. The folder is the agent's own (0700, files 0600): loading a file runs its
//! machine code, so nothing else may write there.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The most files kept: each version of a plugin leaves one, and the oldest go first.
const MAX_FILES: usize = 64;

/// A folder of compiled components for one engine configuration.
pub struct CompiledCache {
    dir: PathBuf,
    engine_hash: String,
}

/// `std::hash::Hash` into SHA-256: a stable name for the engine's compatibility hash
/// (`DefaultHasher` may change between Rust releases).
struct Sha(Sha256);

impl Hasher for Sha {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl CompiledCache {
    /// The cache in `dir`, made (0700) if missing.
    pub fn open(dir: &Path, engine: &Engine) -> std::io::Result<CompiledCache> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
        let mut sha = Sha(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut sha);
        Ok(CompiledCache { dir: dir.to_path_buf(), engine_hash: hex(&sha.0.finalize()[..8]) })
    }

    fn path(&self, code_hash: &[u8; 32]) -> PathBuf {
        self.dir.join(format!("{}-{}.cwasm", hex(code_hash), self.engine_hash))
    }

    /// The component compiled from the bytes with `code_hash`, if a run before kept it. A file
    /// wasmtime refuses is removed.
    pub fn get(&self, engine: &Engine, code_hash: &[u8; 32]) -> Option<Component> {
        let path = self.path(code_hash);
        if !path.is_file() {
            return None;
        }
        // SAFETY: the file was written by `put` of an agent with this engine configuration
        // (the name says so, and wasmtime checks its header), in a folder only the agent may
        // write to.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), "dropping a compiled plugin that does not load: {e:#}");
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), "cannot remove it: {e}");
                }
                None
            }
        }
    }

    /// Keeps `component` for the next run. Written whole or not at all (a temporary file
    /// renamed), so a crash mid-write leaves nothing half-written under the real name.
    pub fn put(&self, code_hash: &[u8; 32], component: &Component) -> anyhow::Result<()> {
        let bytes = component.serialize().map_err(|e| anyhow::anyhow!("{e:#}"))?;
        let path = self.path(code_hash);
        let partial = path.with_extension(format!("{}.partial", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&partial).and_then(|mut f| std::io::Write::write_all(&mut f, &bytes)).and_then(|()| std::fs::rename(&partial, &path));
        if let Err(e) = written {
            // Best effort: the partial file may not exist.
            let _ = std::fs::remove_file(&partial);
            return Err(e.into());
        }
        self.prune();
        Ok(())
    }

    /// Removes the oldest files past [`MAX_FILES`].
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if files.len() <= MAX_FILES {
            return;
        }
        files.sort();
        for (_, path) in &files[..files.len() - MAX_FILES] {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), "cannot prune a compiled plugin: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        Engine::new(&config).expect("engine")
    }

    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn a_kept_component_loads_and_a_damaged_one_is_dropped() {
        let dir = tempfile::tempdir().expect("dir");
        let engine = engine();
        let cache = CompiledCache::open(&dir.path().join("compiled"), &engine).expect("open");
        let hash = [7u8; 32];
        assert!(cache.get(&engine, &hash).is_none());
        let component = Component::new(&engine, EMPTY_COMPONENT).expect("compile");
        cache.put(&hash, &component).expect("put");
        assert!(cache.get(&engine, &hash).is_some(), "kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode(&dir.path().join("compiled")), 0o700);
            assert_eq!(mode(&cache.path(&hash)), 0o600);
        }
        std::fs::write(cache.path(&hash), b"not machine code").expect("damage");
        assert!(cache.get(&engine, &hash).is_none());
        assert!(!cache.path(&hash).exists(), "a file that does not load is removed");
    }

    #[test]
    fn another_engine_configuration_uses_other_files() {
        let dir = tempfile::tempdir().expect("dir");
        let plain = engine();
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true).epoch_interruption(true);
        let other = Engine::new(&config).expect("engine");
        let a = CompiledCache::open(dir.path(), &plain).expect("open");
        let b = CompiledCache::open(dir.path(), &other).expect("open");
        a.put(&[1; 32], &Component::new(&plain, EMPTY_COMPONENT).expect("compile")).expect("put");
        assert!(b.get(&other, &[1; 32]).is_none());
        assert!(a.get(&plain, &[1; 32]).is_some());
    }

    #[test]
    fn old_files_are_pruned() {
        let dir = tempfile::tempdir().expect("dir");
        let engine = engine();
        let cache = CompiledCache::open(dir.path(), &engine).expect("open");
        let component = Component::new(&engine, EMPTY_COMPONENT).expect("compile");
        for i in 0..(MAX_FILES + 3) {
            cache.put(&[i as u8; 32], &component).expect("put");
        }
        let kept = std::fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(kept, MAX_FILES);
    }
}
