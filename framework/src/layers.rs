//! The layers whose CPU speed decides the BYOL step: convolution, BatchNorm, the two fused (a
//! convolution gathering its BatchNorm's statistics; a ReLU inside BatchNorm's passes), 2x2
//! max pooling, and dropout (its mask). With the `cpu-kernels` feature (the `ssl` binary's CPU build) they are our kernels
//! of crate `ssl-kernels`, which run on `flex` float32 tensors and take burn's ops on every
//! other device; without it, burn's ops everywhere. Both give the same values up to float
//! rounding (the kernels' tests hold them together). Encoders and heads call these instead of
//! `Conv2d::forward`/`BatchNorm::forward`/`MaxPool2d::forward`.
//!
//! Under mixed precision (`train.precision`, [`crate::byol::precision`]) the weights of
//! convolutions and linear layers are in the half type and those of normalization layers in
//! f32: convolutions and [`linear`] cast their input to their weight's type, and BatchNorm and
//! [`layer_norm`] run in f32 and return their input's type. In f32 nothing is cast.
//!
//! Shapes: convolutions map `[batch, c_in, height, width]` to `[batch, c_out, h_out, w_out]`;
//! BatchNorm takes `[batch, channels, ...]` and keeps the shape.

#[cfg(feature = "cpu-kernels")]
use ssl_kernels as ops;

#[cfg(not(feature = "cpu-kernels"))]
use burn_ops as ops;

pub use ops::{dropout, max_pool2d};

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, LayerNorm, Linear};
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};

/// `x` as `dtype` (no op when it already is).
pub fn cast_to<const D: usize>(x: Tensor<D>, dtype: DType) -> Tensor<D> {
    if x.dtype() == dtype {
        x
    } else {
        x.cast(FloatDType::from(dtype))
    }
}

/// `f(x)` computed in f32 and returned in `x`'s type: normalizations and reductions of a
/// half-precision tensor (no casts for an f32 `x`).
pub fn in_f32<const D: usize, const E: usize>(
    x: Tensor<D>,
    f: impl FnOnce(Tensor<D>) -> Tensor<E>,
) -> Tensor<E> {
    let dtype = x.dtype();
    cast_to(f(cast_to(x, DType::F32)), dtype)
}

/// The convolution `conv` of `input` (cast to the weight's type first).
pub fn conv2d(conv: &Conv2d, input: Tensor<4>) -> Tensor<4> {
    ops::conv2d(conv, cast_to(input, conv.weight.val().dtype()))
}

/// BatchNorm: batch statistics in training mode (running statistics updated), running
/// statistics otherwise; computed in f32, returned in `input`'s type.
pub fn batch_norm<const D: usize>(bn: &BatchNorm, input: Tensor<D>) -> Tensor<D> {
    in_f32(input, |x| ops::batch_norm(bn, x))
}

/// `relu(batch_norm(bn, input))`, computed in f32, returned in `input`'s type.
pub fn batch_norm_relu<const D: usize>(bn: &BatchNorm, input: Tensor<D>) -> Tensor<D> {
    in_f32(input, |x| ops::batch_norm_relu(bn, x))
}

/// `batch_norm(bn, conv2d(conv, input))`: fused on the CPU in f32; under mixed precision the
/// convolution in the half type and BatchNorm in f32, the result in the half type.
pub fn conv_batch_norm(conv: &Conv2d, bn: &BatchNorm, input: Tensor<4>) -> Tensor<4> {
    let weight = conv.weight.val().dtype();
    if weight == DType::F32 {
        ops::conv_batch_norm(conv, bn, cast_to(input, weight))
    } else {
        batch_norm(bn, conv2d(conv, input))
    }
}

/// `relu(batch_norm(bn, conv2d(conv, input)))`, as [`conv_batch_norm`].
pub fn conv_batch_norm_relu(conv: &Conv2d, bn: &BatchNorm, input: Tensor<4>) -> Tensor<4> {
    let weight = conv.weight.val().dtype();
    if weight == DType::F32 {
        ops::conv_batch_norm_relu(conv, bn, cast_to(input, weight))
    } else {
        batch_norm_relu(bn, conv2d(conv, input))
    }
}

/// `linear.forward(input)` with `input` cast to the weight's type: `[..., d_input]` to
/// `[..., d_output]`.
pub fn linear<const D: usize>(linear: &Linear, input: Tensor<D>) -> Tensor<D> {
    linear.forward(cast_to(input, linear.weight.val().dtype()))
}

/// `norm.forward(input)` computed in f32, returned in `input`'s type: `[..., d_model]`.
pub fn layer_norm<const D: usize>(norm: &LayerNorm, input: Tensor<D>) -> Tensor<D> {
    in_f32(input, |x| norm.forward(x))
}

/// burn's own ops, for builds without our CPU kernels (GPU-only builds).
#[cfg(not(feature = "cpu-kernels"))]
mod burn_ops {
    use burn::nn::conv::Conv2d;
    use burn::nn::pool::MaxPool2d;
    use burn::nn::{BatchNorm, Dropout};
    use burn::prelude::*;
    use burn::tensor::activation::relu;

    /// `conv.forward(input)`.
    pub fn conv2d(conv: &Conv2d, input: Tensor<4>) -> Tensor<4> {
        conv.forward(input)
    }

    /// `bn.forward(input)`: batch statistics in training mode, running statistics otherwise.
    pub fn batch_norm<const D: usize>(bn: &BatchNorm, input: Tensor<D>) -> Tensor<D> {
        bn.forward(input)
    }

    /// `relu(bn.forward(input))`.
    pub fn batch_norm_relu<const D: usize>(bn: &BatchNorm, input: Tensor<D>) -> Tensor<D> {
        relu(bn.forward(input))
    }

    /// `bn.forward(conv.forward(input))`.
    pub fn conv_batch_norm(conv: &Conv2d, bn: &BatchNorm, input: Tensor<4>) -> Tensor<4> {
        bn.forward(conv.forward(input))
    }

    /// `module.forward(input)`.
    pub fn dropout<const D: usize>(module: &Dropout, input: Tensor<D>) -> Tensor<D> {
        module.forward(input)
    }

    /// `pool.forward(input)`.
    pub fn max_pool2d(pool: &MaxPool2d, input: Tensor<4>) -> Tensor<4> {
        pool.forward(input)
    }

    /// `relu(bn.forward(conv.forward(input)))`.
    pub fn conv_batch_norm_relu(conv: &Conv2d, bn: &BatchNorm, input: Tensor<4>) -> Tensor<4> {
        relu(bn.forward(conv.forward(input)))
    }
}
