//! BYOL-A's audio encoder (AudioNTT2020, Niizumi et al. 2021, Section 3.3): conv3x3-BN-ReLU-
//! maxpool2x2 blocks over the log-mel, a two-layer MLP applied to every time step, then the sum
//! of max and mean pooling over time.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d, Relu,
};
use burn::prelude::*;
use burn::tensor::DType;
use ssl_framework::Encoder;
use ssl_framework::layers::{cast_to, conv_batch_norm_relu, linear, max_pool2d};

/// One conv3x3 - BatchNorm - ReLU - maxpool2x2 block.
#[derive(Module, Debug)]
pub struct ConvBlock {
    conv: Conv2d,
    bn: BatchNorm,
    /// The ReLU after `bn`: it runs fused into the BatchNorm kernel (`conv_batch_norm_relu`);
    /// the field keeps the module's layout (and checkpoints) as they were.
    relu: Relu,
    pool: MaxPool2d,
}

/// The encoder: [`AudioInput`] `[batch, 1, n_mels, frames]` -> `[batch, dim]`. Needs
/// `frames >= 2^blocks`.
#[derive(Module, Debug)]
pub struct AudioEncoder {
    blocks: Vec<ConvBlock>,
    fc1: Linear,
    fc2: Linear,
    dropout: Dropout,
    relu: Relu,
    out_dim: usize,
}

impl AudioEncoder {
    /// `blocks` conv blocks of `channels` channels over `n_mels` bands (divisible by
    /// `2^blocks`), an MLP to `dim`, dropout `dropout` between its layers (BYOL-A: 3 blocks,
    /// 64 channels, 2048-d, dropout 0.3).
    pub fn new(
        n_mels: usize,
        blocks: usize,
        channels: usize,
        dim: usize,
        dropout: f64,
        device: &Device,
    ) -> Self {
        let mut cin = 1;
        let blocks_v = (0..blocks)
            .map(|_| {
                let b = ConvBlock {
                    conv: Conv2dConfig::new([cin, channels], [3, 3])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(device),
                    bn: BatchNormConfig::new(channels).init(device),
                    relu: Relu::new(),
                    pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
                };
                cin = channels;
                b
            })
            .collect();
        let flat = channels * (n_mels >> blocks);
        Self {
            blocks: blocks_v,
            fc1: LinearConfig::new(flat, dim).init(device),
            fc2: LinearConfig::new(dim, dim).init(device),
            dropout: DropoutConfig::new(dropout).init(),
            relu: Relu::new(),
            out_dim: dim,
        }
    }
}

/// A batch of normalized log-mel spectrograms and which of their frames are real.
#[derive(Debug, Clone)]
pub struct AudioInput {
    /// `[batch, 1, n_mels, frames]`, shorter clips padded at the end.
    pub x: Tensor<4>,
    /// `[batch, frames >> blocks]`: 1 for a time step (after the conv blocks' pooling) that
    /// covers a clip's own frames, 0 for batch padding, which pooling leaves out.
    pub valid: Tensor<2>,
}

impl Encoder for AudioEncoder {
    type Input = AudioInput;

    fn forward(&self, input: AudioInput) -> Tensor<2> {
        let AudioInput { x, valid } = input;
        let x = self.blocks.iter().fold(x, |x, b| {
            max_pool2d(&b.pool, conv_batch_norm_relu(&b.conv, &b.bn, x))
        });
        let [batch, channels, freq, time] = x.dims();
        // (batch, time, freq, channels) flattened per time step, as BYOL-A.
        let x = x
            .permute([0, 3, 2, 1])
            .reshape([batch, time, freq * channels]);
        let x = self.relu.forward(linear(&self.fc1, x));
        let x = self
            .relu
            .forward(linear(&self.fc2, self.dropout.forward(x)));
        // Pooled in f32 under mixed precision (the representation is f32).
        let x = cast_to(x, DType::F32);
        // Mean and max over the clip's own time steps only, so that a clip's representation
        // does not depend on how long the other clips of its batch are. `x >= 0` after the
        // ReLU, so zeroing the padding leaves the max of the real steps.
        let valid = valid.slice([0..batch, 0..time]).reshape([batch, time, 1]);
        let x = x * valid.clone();
        let count = valid.sum_dim(1).reshape([batch, 1]).clamp_min(1.0);
        let max = x.clone().max_dim(1).reshape([batch, self.out_dim]);
        let mean = x.sum_dim(1).reshape([batch, self.out_dim]) / count;
        max + mean
    }

    fn mixed_precision(&self) -> bool {
        true
    }

    fn dim(&self) -> usize {
        self.out_dim
    }
}
