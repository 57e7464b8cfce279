//! The stock plugins, compiled to wasm32-wasip2 by the build script and embedded in the
//! binary: the standalone lab needs no files, and `healthy` is the default runtime.

use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/stock_plugins.rs"));

/// The names of the stock plugins.
pub fn names() -> impl Iterator<Item = &'static str> {
    STOCK.iter().map(|(name, _)| *name)
}

/// A stock plugin's component.
pub fn component(name: &str) -> Option<&'static [u8]> {
    STOCK.iter().find(|(n, _)| *n == name).map(|(_, bytes)| *bytes)
}

/// Writes a stock plugin into a folder as `<name>.wasm`, by a rename so a watcher never
/// sees half a file.
pub fn install(name: &str, dir: &Path) -> std::io::Result<std::path::PathBuf> {
    let bytes = component(name).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, format!("no stock plugin named {name}")))?;
    let target = dir.join(format!("{name}.wasm"));
    let partial = dir.join(format!(".{name}.wasm.partial"));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, &target)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    #[test]
    #[allow(clippy::assertions_on_constants, reason = "the build script computes it for each build")]
    fn the_prebuilt_plugins_are_built_from_these_sources() {
        assert!(
            super::PREBUILT_CURRENT,
            "plugins/prebuilt holds components of other sources than wit/, guest-sdk/, plugins/ and tests/plugins/ here: \
             run plugins/prebuilt/update.sh (it needs the wasm32-wasip2 target) and commit the result"
        );
    }
}
