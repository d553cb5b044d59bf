//! Our own CPU kernels for the ops where burn's `flex` backend is far behind PyTorch on the BYOL
//! step (measured op by op with `ssl bench --workloads ops-smallcnn`). Each is a burn backend
//! extension with its own backward pass, used only on `flex` float32 tensors; every other
//! device takes burn's op, and a test holds the two to the same values.

pub mod batch_norm;
pub mod conv2d;
pub mod winograd;

pub use batch_norm::{batch_norm, batch_norm_train};
pub use conv2d::conv2d;

use burn::backend::DispatchDevice;
use burn::backend::flex::FlexTensor;
use burn::prelude::Device;

/// Whether `device` (autodiff or not) runs on the `flex` CPU backend.
fn is_flex(device: &Device) -> bool {
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
