//! Image encoders: a small CNN for CPU-scale runs and ResNet-18/34/50 (He et al. 2016) with an
//! ImageNet stem (7x7/2 conv + 3x3/2 max-pool) or a CIFAR stem (3x3/1 conv, no pool).

mod resnet;
mod small_cnn;

pub use resnet::{ResNet, Stem};
pub use small_cnn::SmallCnn;

use burn::prelude::*;
use burn::tensor::DType;
use ssl_framework::Encoder;
use ssl_framework::export::ExportNaming;
use ssl_framework::layers::cast_to;

/// `[batch, channels, height, width]` -> `[batch, channels]` by averaging over space.
pub(crate) fn global_avg_pool(x: Tensor<4>) -> Tensor<2> {
    let [b, c, h, w] = x.dims();
    // One reduction over each map's `h * w` contiguous values (two over 4-value rows cost
    // twice as much on `flex`).
    // In f32 under mixed precision (the representation is f32).
    cast_to(x, DType::F32)
        .reshape([b, c, h * w])
        .mean_dim(2)
        .reshape([b, c])
}

/// The vision encoder f: one of the supported architectures.
#[derive(Module, Debug)]
pub enum VisionEncoder {
    /// The small CNN.
    SmallCnn(SmallCnn),
    /// A ResNet.
    ResNet(ResNet),
}

impl Encoder for VisionEncoder {
    /// `[batch, 3, height, width]`, normalized.
    type Input = Tensor<4>;

    fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        match self {
            VisionEncoder::SmallCnn(m) => m.forward(x),
            VisionEncoder::ResNet(m) => m.forward(x),
        }
    }

    fn mixed_precision(&self) -> bool {
        true
    }

    fn dim(&self) -> usize {
        match self {
            VisionEncoder::SmallCnn(m) => m.dim(),
            VisionEncoder::ResNet(m) => m.dim(),
        }
    }

    /// torchvision's names for a ResNet (`scripts/load_torchvision.py` loads them), the
    /// module's own names otherwise.
    fn export_naming(&self) -> ExportNaming {
        match self {
            VisionEncoder::ResNet(r) => ExportNaming {
                renames: r.torchvision_renames(),
                metadata: vec![
                    ("architecture".into(), format!("resnet{}", r.depth())),
                    ("stem".into(), format!("{:?}", r.stem()).to_lowercase()),
                    ("naming".into(), "torchvision".into()),
                ],
                description: format!("torchvision resnet{} names", r.depth()),
            },
            VisionEncoder::SmallCnn(_) => ExportNaming {
                description: "the module's own names (not a ResNet)".into(),
                ..ExportNaming::default()
            },
        }
    }
}
