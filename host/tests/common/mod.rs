//! What the CLI's test binaries share.

/// A child process that is killed (and reaped) when the test ends, passing or failing.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
