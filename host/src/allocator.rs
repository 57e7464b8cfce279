//! The memory allocator of a process that runs nodes: jemalloc, set to give freed memory
//! back to the system within a second.
//!
//! A thousand nodes starting at once allocate and free a great deal (TLS handshakes, CSRs,
//! first lists); glibc's malloc keeps that memory resident long after, spread over an arena
//! per thread. Measured with the scale bench, 200 idle nodes: 409 KiB of RSS per node with
//! glibc, 327 KiB with jemalloc as set here.

#[doc(hidden)]
pub use tikv_jemallocator::Jemalloc;

/// Makes jemalloc, as this module sets it, the global allocator of the binary that calls it
/// (once, at the crate root of a binary).
///
/// ```ignore
/// labkubelet::process_allocator!();
/// ```
#[macro_export]
macro_rules! process_allocator {
    () => {
        #[global_allocator]
        static ALLOCATOR: $crate::allocator::Jemalloc = $crate::allocator::Jemalloc;

        /// jemalloc's options, read when it starts: one arena (nodes are many small tasks on
        /// few threads), freed pages returned after a second, by a background thread.
        #[unsafe(export_name = "_rjem_malloc_conf")]
        static MALLOC_CONF: &[u8; 70] = b"narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0,background_thread:true\0";
    };
}
