//! # ssl-kernels
//!
//! Our own CPU kernels for the ops where burn's `flex` backend is far behind PyTorch on the BYOL
//! step (measured op by op with `ssl bench --workloads ops-smallcnn`, [`mod@bench`]). Each is a burn
//! backend extension with its own backward pass, used only on `flex` float32 tensors; every
//! other device takes burn's op, and a test holds the two to the same values.
//! [`conv_batch_norm()`] composes two of them (a convolution that gathers the statistics of the
//! BatchNorm after it). This is the only crate of `ssl` with `unsafe` code; the framework uses
//! it through `ssl_framework::layers` when built with its `cpu-kernels` feature.

/// Whether the kernels run their AVX2 + FMA code: the CPU has it and the process's path
/// ([`cpu_path`]) is not forced down to the scalar one.
pub(crate) fn has_avx2() -> bool {
    cpu_path::path() >= cpu_path::CpuPath::Avx2
}

/// Whether this CPU has AVX2 and FMA (checked once).
pub(crate) fn cpu_has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVX2.get_or_init(|| {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU has AVX-512F (checked once).
pub(crate) fn cpu_has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX512: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVX512.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Runs `$body` (an expression over the named values, of type `$ret`, `()` when not given)
/// compiled for AVX2 when the CPU has it, for the baseline target otherwise: the same arithmetic (no fused multiply-adds), so the same
/// results either way.
macro_rules! with_avx2 {
    ($name:ident, ($($arg:ident : $ty:ty),*), $body:expr) => {
        with_avx2!($name, ($($arg: $ty),*) -> (), $body)
    };
    ($name:ident, ($($arg:ident : $ty:ty),*) -> $ret:ty, $body:expr) => {{
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn $name($($arg: $ty),*) -> $ret {
            $body
        }
        #[cfg(target_arch = "x86_64")]
        if $crate::has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time).
            unsafe { $name($($arg),*) }
        } else {
            $body
        }
        #[cfg(not(target_arch = "x86_64"))]
        $body
    }};
}

pub mod batch_norm;
pub mod bench;
pub mod conv2d;
pub mod conv_batch_norm;
mod conv_shared;
pub mod cpu_path;
pub mod dropout;
pub mod max_pool;
mod packed_gemm;
mod short_gemm;
pub mod sync_batch_norm;
pub mod winograd;

pub use batch_norm::{batch_norm, batch_norm_relu, batch_norm_train};
pub use conv_batch_norm::{conv_batch_norm, conv_batch_norm_relu};
pub use conv2d::conv2d;
pub use dropout::dropout;
pub use max_pool::max_pool2d;

use burn::backend::DispatchDevice;
use burn::backend::flex::FlexTensor;
use burn::prelude::Device;
use std::mem::MaybeUninit;

/// Whether `device` (autodiff or not) runs on the `flex` CPU backend, where these kernels (and
/// SyncBN, [`sync_batch_norm`]) run.
pub fn is_flex(device: &Device) -> bool {
    matches!(
        device.as_dispatch().clone().inner(),
        DispatchDevice::Flex(_)
    )
}

/// `t` with a contiguous layout starting at its storage's offset (copied only when it is not).
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() && t.layout().contiguous_offsets().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The float32 values of a contiguous tensor (see [`contiguous`]).
fn slice(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("a contiguous float32 tensor (the kernels check the dtype first)")
}

/// A kernel's output of `len` floats that `fill` writes in full (every element, through
/// [`std::mem::MaybeUninit::write`]) before anything reads it: no zeroing pass first (with
/// freed memory kept by the allocator, `vec![0.0; len]` is a `memset` of the whole output,
/// 3% of the small CNN's step). Kernels whose loops might skip an element use `vec!` instead.
fn written_output(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut values: Vec<MaybeUninit<f32>> = Vec::with_capacity(len);
    values.resize_with(len, MaybeUninit::uninit);
    fill(&mut values);
    let mut values = std::mem::ManuallyDrop::new(values);
    let (ptr, len, capacity) = (values.as_mut_ptr(), values.len(), values.capacity());
    // SAFETY: `fill` initialized every element (its contract, held by each caller); a
    // `MaybeUninit<f32>` has the size and alignment of an `f32`, and the allocation is handed
    // over whole (pointer, length and capacity of the same `Vec`).
    unsafe { Vec::from_raw_parts(ptr.cast::<f32>(), len, capacity) }
}

/// `values` as plain floats.
///
/// # Safety
/// Every element of `values` has been written.
unsafe fn assume_written(values: &[MaybeUninit<f32>]) -> &[f32] {
    // SAFETY: initialized (the caller's contract); `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &*(values as *const [MaybeUninit<f32>] as *const [f32]) }
}

/// Writes zeros over `values` and returns them as plain floats.
fn zeroed(values: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    for v in values.iter_mut() {
        v.write(0.0);
    }
    // SAFETY: every element was just written; `MaybeUninit<f32>` has `f32`'s layout.
    unsafe { &mut *(values as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

thread_local! {
    /// Each thread's working buffers for [`with_thread_buffers`].
    static THREAD_BUFFERS: std::cell::RefCell<[Vec<f32>; 2]> = const {
        std::cell::RefCell::new([Vec::new(), Vec::new()])
    };
}

/// Runs `f` with two float32 buffers of `lens` values, this thread's own, kept from one call
/// to the next (unspecified contents: `f` writes what it reads). A kernel's per-block buffers
/// (im2col columns, a block's output) were `vec![0.0; len]` per rayon job: a `memset` of
/// hundreds of KiB each time, and cold memory. The buffers keep the largest size their thread
/// has needed (the im2col columns of one block: under 1 MiB on CIFAR-sized layers, about 7 MiB
/// for a 224-pixel ResNet stem). A nested call (not made by our kernels) gets fresh buffers.
fn with_thread_buffers<R>(lens: [usize; 2], f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    let mut f = Some(f);
    let reused = THREAD_BUFFERS.with(|buffers| {
        let mut buffers = buffers.try_borrow_mut().ok()?;
        let [a, b] = &mut *buffers;
        for (buffer, &len) in [&mut *a, &mut *b].into_iter().zip(&lens) {
            if buffer.len() < len {
                // Grown without copying the old contents (unspecified anyway).
                buffer.clear();
                buffer.resize(len, 0.0);
            }
            if cfg!(test) {
                // Stale values would read as NaN in the kernels' tests.
                buffer.fill(f32::NAN);
            }
        }
        let f = f.take().expect("called once");
        Some(f(&mut a[..lens[0]], &mut b[..lens[1]]))
    });
    match reused {
        Some(result) => result,
        None => {
            let f = f.take().expect("not called yet");
            f(&mut vec![0.0; lens[0]], &mut vec![0.0; lens[1]])
        }
    }
}

/// A float32 buffer from a small process-wide pool, returned to it when dropped. The Winograd
/// kernels' transforms are tens of MiB per call, above glibc's largest mmap threshold (32 MiB),
/// so fresh `Vec`s would be mapped, page-faulted and zeroed by the kernel on every call (a third
/// of the time in `perf`); pooled buffers are not. Its contents are whatever the last user left:
/// callers overwrite every element they read.
pub(crate) struct Scratch(Vec<f32>);

/// Most buffers the pool keeps (the largest): the Winograd backward pass holds four at once
/// (transformed weight and its gradient, output-gradient and input transforms).
const POOL_BUFFERS: usize = 4;

static POOL: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());

impl Scratch {
    /// A buffer of `len` values (unspecified contents).
    pub(crate) fn take(len: usize) -> Self {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        // The smallest pooled buffer that holds `len` values, else the largest (grown).
        let best = pool
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= len)
            .min_by_key(|(_, b)| b.capacity())
            .or_else(|| pool.iter().enumerate().max_by_key(|(_, b)| b.capacity()))
            .map(|(i, _)| i);
        let mut buffer = best.map(|i| pool.swap_remove(i)).unwrap_or_default();
        drop(pool);
        if buffer.len() >= len {
            buffer.truncate(len);
        } else {
            buffer.resize(len, 0.0);
        }
        Self(buffer)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.0);
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        pool.push(buffer);
        if pool.len() > POOL_BUFFERS {
            let smallest = (0..pool.len())
                .min_by_key(|&i| pool[i].capacity())
                .expect("the pool is not empty");
            pool.swap_remove(smallest);
        }
    }
}

impl std::ops::Deref for Scratch {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Scratch {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_buffers_are_reused_sized_and_fresh_when_nested() {
        let first = with_thread_buffers([100, 7], |a, b| {
            assert_eq!((a.len(), b.len()), (100, 7));
            a.as_ptr()
        });
        // The same thread gets the same memory back (no allocation, no zeroing), at the length
        // asked for.
        let again = with_thread_buffers([50, 0], |a, b| {
            assert_eq!((a.len(), b.len()), (50, 0));
            a.as_ptr()
        });
        assert_eq!(first, again);
        // A nested call cannot borrow them again: it gets fresh buffers of its own.
        with_thread_buffers([10, 10], |outer, _| {
            let outer = outer.as_ptr();
            with_thread_buffers([10, 3], |inner, b| {
                assert_eq!((inner.len(), b.len()), (10, 3));
                assert_ne!(inner.as_ptr(), outer);
            });
        });
    }

    #[test]
    fn zeroed_writes_every_value() {
        let mut values = vec![MaybeUninit::new(f32::NAN); 37];
        assert!(zeroed(&mut values).iter().all(|&v| v == 0.0));
    }
}
