//! Allocator settings for training.
//!
//! A BYOL step allocates and frees the same large tensor buffers (up to tens of MiB) every
//! step. glibc's malloc serves blocks above its mmap threshold with fresh `mmap`s and returns
//! them with `munmap` on free, so every step faults in and zeroes new pages (about 15% of the
//! small CNN's step in `perf`: `clear_page_erms`, page faults, `memset`). Raising the mmap
//! threshold to its maximum and the trim threshold keeps freed buffers in the heap for the next
//! step; measured side by side in BENCHMARKS.md (the `step-smallcnn` workload, about 1.1x).
//! The small CNN step's peak resident memory measured the same with and without it (about
//! 280 MiB); the price is that up to 1 GiB freed after a peak stays with the process.

/// Keeps freed large buffers in the process heap (glibc on Linux; elsewhere a no-op). Call once,
/// first thing in `main`, before other threads start.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any other thread exists.
    unsafe {
        // 32 MiB: glibc's largest accepted mmap threshold on 64-bit (blocks above it are still
        // mapped, which is right for huge one-off buffers).
        // (A refused setting returns 0 and leaves glibc's default: slower, not wrong.)
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024 * 1024);
        // Return heap memory to the OS only when 1 GiB at its top is free.
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
    }
}
