use super::global_avg_pool;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d, Relu};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use ssl_framework::layers::{conv_batch_norm, conv_batch_norm_relu};

/// The first layers of a ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stem {
    /// conv 3x3 stride 1, no max-pool: for 32x32 inputs (CIFAR).
    #[default]
    Cifar,
    /// conv 7x7 stride 2 + max-pool 3x3 stride 2: for 224x224 inputs (ImageNet).
    Imagenet,
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, device: &Device) -> Conv2d {
    let p = k / 2;
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(p, p, p, p))
        .with_bias(false)
        .init(device)
}

/// A 1x1 strided conv + BN on the shortcut, where the shape changes.
#[derive(Module, Debug)]
pub struct Downsample {
    conv: Conv2d,
    bn: BatchNorm,
}

/// The two-conv residual block of ResNet-18/34.
#[derive(Module, Debug)]
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    downsample: Option<Downsample>,
    relu: Relu,
}

/// The 1x1-3x3-1x1 bottleneck block of ResNet-50 (stride on the 3x3, as torchvision).
#[derive(Module, Debug)]
pub struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Conv2d,
    bn3: BatchNorm,
    downsample: Option<Downsample>,
    relu: Relu,
}

/// A residual block.
#[derive(Module, Debug)]
pub enum Block {
    /// ResNet-18/34 block.
    Basic(BasicBlock),
    /// ResNet-50 block.
    Bottleneck(Bottleneck),
}

fn shortcut(ds: &Option<Downsample>, x: Tensor<4>) -> Tensor<4> {
    match ds {
        Some(d) => conv_batch_norm(&d.conv, &d.bn, x),
        None => x,
    }
}

impl Block {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        match self {
            Block::Basic(b) => {
                let identity = shortcut(&b.downsample, x.clone());
                let y = conv_batch_norm_relu(&b.conv1, &b.bn1, x);
                let y = conv_batch_norm(&b.conv2, &b.bn2, y);
                b.relu.forward(y + identity)
            }
            Block::Bottleneck(b) => {
                let identity = shortcut(&b.downsample, x.clone());
                let y = conv_batch_norm_relu(&b.conv1, &b.bn1, x);
                let y = conv_batch_norm_relu(&b.conv2, &b.bn2, y);
                let y = conv_batch_norm(&b.conv3, &b.bn3, y);
                b.relu.forward(y + identity)
            }
        }
    }
}

/// ResNet-18/34/50 without the classifier: `[batch, 3, h, w]` -> `[batch, 512]` (18/34) or
/// `[batch, 2048]` (50) after global average pooling.
#[derive(Module, Debug)]
pub struct ResNet {
    stem_conv: Conv2d,
    stem_bn: BatchNorm,
    max_pool: Option<MaxPool2d>,
    blocks: Vec<Block>,
    relu: Relu,
    out_dim: usize,
}

impl ResNet {
    /// Builds ResNet-`depth` (18, 34 or 50) with base width `width` (64 in the paper).
    ///
    /// Panics on another depth (the config validates it first).
    pub fn new(depth: usize, stem: Stem, width: usize, device: &Device) -> Self {
        let (layers, bottleneck): ([usize; 4], bool) = match depth {
            18 => ([2, 2, 2, 2], false),
            34 => ([3, 4, 6, 3], false),
            50 => ([3, 4, 6, 3], true),
            d => panic!("unsupported ResNet depth {d}"),
        };
        let expansion = if bottleneck { 4 } else { 1 };
        let (stem_conv, max_pool) = match stem {
            Stem::Cifar => (conv(3, width, 3, 1, device), None),
            Stem::Imagenet => (
                conv(3, width, 7, 2, device),
                Some(
                    MaxPool2dConfig::new([3, 3])
                        .with_strides([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(),
                ),
            ),
        };
        let mut blocks = Vec::new();
        let mut cin = width;
        for (stage, &n) in layers.iter().enumerate() {
            let planes = width << stage;
            for i in 0..n {
                let stride = if i == 0 && stage > 0 { 2 } else { 1 };
                let cout = planes * expansion;
                let downsample = (stride != 1 || cin != cout).then(|| Downsample {
                    conv: conv(cin, cout, 1, stride, device),
                    bn: BatchNormConfig::new(cout).init(device),
                });
                let block = if bottleneck {
                    Block::Bottleneck(Bottleneck {
                        conv1: conv(cin, planes, 1, 1, device),
                        bn1: BatchNormConfig::new(planes).init(device),
                        conv2: conv(planes, planes, 3, stride, device),
                        bn2: BatchNormConfig::new(planes).init(device),
                        conv3: conv(planes, cout, 1, 1, device),
                        bn3: BatchNormConfig::new(cout).init(device),
                        downsample,
                        relu: Relu::new(),
                    })
                } else {
                    Block::Basic(BasicBlock {
                        conv1: conv(cin, planes, 3, stride, device),
                        bn1: BatchNormConfig::new(planes).init(device),
                        conv2: conv(planes, planes, 3, 1, device),
                        bn2: BatchNormConfig::new(planes).init(device),
                        downsample,
                        relu: Relu::new(),
                    })
                };
                blocks.push(block);
                cin = cout;
            }
        }
        Self {
            stem_conv,
            stem_bn: BatchNormConfig::new(width).init(device),
            max_pool,
            blocks,
            relu: Relu::new(),
            out_dim: cin,
        }
    }

    /// `[batch, 3, h, w]` -> `[batch, dim]`.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        let mut x = conv_batch_norm_relu(&self.stem_conv, &self.stem_bn, x);
        if let Some(p) = &self.max_pool {
            x = p.forward(x);
        }
        global_avg_pool(self.blocks.iter().fold(x, |x, b| b.forward(x)))
    }

    /// Output width (512 for ResNet-18/34, 2048 for ResNet-50 at width 64).
    pub fn dim(&self) -> usize {
        self.out_dim
    }

    /// The stem this network was built with.
    pub fn stem(&self) -> Stem {
        if self.max_pool.is_some() {
            Stem::Imagenet
        } else {
            Stem::Cifar
        }
    }

    /// The torchvision depth (18, 34 or 50) of this network.
    pub fn depth(&self) -> usize {
        match (self.blocks.len(), &self.blocks.first()) {
            (8, _) => 18,
            (_, Some(Block::Bottleneck(_))) => 50,
            _ => 34,
        }
    }

    /// Renames from this module's tensor paths (enum variants skipped, norm parameters already
    /// named `weight`/`bias` as in PyTorch) to torchvision's `ResNet` state-dict keys, as
    /// `(regex, replacement)` pairs applied in order: `stem_conv` -> `conv1`, `stem_bn` ->
    /// `bn1`, `blocks.K` -> `layerS.J`, `downsample.conv`/`.bn` -> `downsample.0`/`.1`.
    pub fn torchvision_renames(&self) -> Vec<(String, String)> {
        let layers: [usize; 4] = match self.depth() {
            18 => [2, 2, 2, 2],
            _ => [3, 4, 6, 3],
        };
        let mut renames = vec![
            (r"^stem_conv\.".to_string(), "conv1.".to_string()),
            (r"^stem_bn\.".to_string(), "bn1.".to_string()),
            (
                r"\.downsample\.conv\.".to_string(),
                ".downsample.0.".to_string(),
            ),
            (
                r"\.downsample\.bn\.".to_string(),
                ".downsample.1.".to_string(),
            ),
        ];
        let mut k = 0;
        for (stage, &n) in layers.iter().enumerate() {
            for j in 0..n {
                renames.push((
                    format!(r"^blocks\.{k}\."),
                    format!("layer{}.{j}.", stage + 1),
                ));
                k += 1;
            }
        }
        renames
    }
}
