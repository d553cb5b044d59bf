use super::global_avg_pool;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d, Relu};
use burn::prelude::*;
use ssl_framework::layers::conv_batch_norm_relu;

/// One conv3x3 (no bias) - BatchNorm - ReLU block.
#[derive(Module, Debug)]
pub struct ConvBnRelu {
    conv: Conv2d,
    bn: BatchNorm,
    /// The ReLU after `bn`: it runs fused into the BatchNorm kernel (`conv_batch_norm_relu`);
    /// the field keeps the module's layout (and checkpoints) as they were.
    relu: Relu,
}

impl ConvBnRelu {
    fn new(cin: usize, cout: usize, stride: usize, device: &Device) -> Self {
        let conv = Conv2dConfig::new([cin, cout], [3, 3])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .with_bias(false)
            .init(device);
        Self {
            conv,
            bn: BatchNormConfig::new(cout).init(device),
            relu: Relu::new(),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        conv_batch_norm_relu(&self.conv, &self.bn, x)
    }
}

/// The small CNN of `configs/vision/cifar10-quick.toml` and the `step-smallcnn` benchmark:
/// `len(channels)` blocks of conv3x3 (no bias) - BN - ReLU with the given strides, then global
/// average pooling. `[batch, 3, h, w]` -> `[batch, channels.last()]`.
#[derive(Module, Debug)]
pub struct SmallCnn {
    blocks: Vec<ConvBnRelu>,
    out_dim: usize,
}

impl SmallCnn {
    /// Builds the network; `channels` and `strides` have the same length (>= 1).
    pub fn new(in_channels: usize, channels: &[usize], strides: &[usize], device: &Device) -> Self {
        let mut cin = in_channels;
        let blocks = channels
            .iter()
            .zip(strides)
            .map(|(&c, &s)| {
                let b = ConvBnRelu::new(cin, c, s, device);
                cin = c;
                b
            })
            .collect();
        Self {
            blocks,
            out_dim: cin,
        }
    }

    /// `[batch, 3, h, w]` -> `[batch, dim]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        global_avg_pool(self.blocks.iter().fold(x, |x, b| b.forward(x)))
    }

    /// Output width.
    pub fn dim(&self) -> usize {
        self.out_dim
    }
}
