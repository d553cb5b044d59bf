//! The layers whose CPU speed decides the BYOL step: convolution, BatchNorm, the two fused (a
//! convolution gathering its BatchNorm's statistics; a ReLU inside BatchNorm's passes), 2x2
//! max pooling, and dropout (its mask). With the `cpu-kernels` feature (the `ssl` binary's CPU build) they are our kernels
//! of crate `ssl-kernels`, which run on `flex` float32 tensors and take burn's ops on every
//! other device; without it, burn's ops everywhere. Both give the same values up to float
//! rounding (the kernels' tests hold them together). Encoders and heads call these instead of
//! `Conv2d::forward`/`BatchNorm::forward`/`MaxPool2d::forward`.
//!
//! Shapes: convolutions map `[batch, c_in, height, width]` to `[batch, c_out, h_out, w_out]`;
//! BatchNorm takes `[batch, channels, ...]` and keeps the shape.

#[cfg(feature = "cpu-kernels")]
pub use ssl_kernels::{
    batch_norm, batch_norm_relu, conv_batch_norm, conv_batch_norm_relu, conv2d, dropout, max_pool2d,
};

#[cfg(not(feature = "cpu-kernels"))]
pub use burn_ops::{
    batch_norm, batch_norm_relu, conv_batch_norm, conv_batch_norm_relu, conv2d, dropout, max_pool2d,
};

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
