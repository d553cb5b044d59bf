//! Our own CPU kernels for the ops where burn's `flex` backend is far behind PyTorch on the BYOL
//! step (measured op by op with `ssl bench --workloads ops-smallcnn`). Each is a burn backend
//! extension with its own backward pass, used only on `flex` float32 tensors; every other
//! device takes burn's op, and a test holds the two to the same values.

pub mod batch_norm;
pub mod conv2d;

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
