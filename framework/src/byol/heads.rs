//! The projector g and predictor q: Linear - BatchNorm - ReLU - Linear (paper, Section 3.3:
//! Linear(4096) - BN - ReLU - Linear(256)).

use crate::layers::{batch_norm_relu, linear};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, Relu};
use burn::prelude::*;

/// Sizes of an MLP head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlpConfig {
    /// Input width.
    pub input: usize,
    /// Hidden width (paper: 4096).
    pub hidden: usize,
    /// Output width (paper: 256).
    pub output: usize,
}

impl MlpConfig {
    /// Builds the head on `device` (weights from the device's seeded RNG).
    pub fn init(&self, device: &Device) -> Mlp {
        Mlp {
            fc1: LinearConfig::new(self.input, self.hidden).init(device),
            bn: BatchNormConfig::new(self.hidden).init(device),
            relu: Relu::new(),
            fc2: LinearConfig::new(self.hidden, self.output).init(device),
        }
    }
}

/// Linear - BatchNorm - ReLU - Linear, mapping `[batch, input]` to `[batch, output]`.
#[derive(Module, Debug)]
pub struct Mlp {
    fc1: Linear,
    bn: BatchNorm,
    /// The ReLU after `bn`: it runs fused into the BatchNorm kernel (`batch_norm_relu`);
    /// the field keeps the module's layout (and checkpoints) as they were.
    relu: Relu,
    fc2: Linear,
}

impl Mlp {
    /// `[batch, input]` -> `[batch, output]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let x = linear(&self.fc1, x);
        linear(&self.fc2, batch_norm_relu(&self.bn, x))
    }
}
