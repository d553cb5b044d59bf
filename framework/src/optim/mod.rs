//! Optimizers (LARS, SGD with momentum, AdamW), all excluding biases and normalization
//! parameters from weight decay (and LARS's trust ratio), and the warmup-cosine lr schedule.

pub mod lars;
pub mod schedule;

pub use lars::Lars;
pub use schedule::{LrSchedule, peak_lr, warmup_cosine_lr};

use crate::config::{OptimConfig, OptimizerKind};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, ModuleOptimizer, Optimizer, SgdConfig};
use burn::prelude::*;

/// Routes rank-1 parameters (biases, norm scales and shifts) to an optimizer without weight
/// decay and everything else to one with it. `Optimizer::step` sees one tensor at a time with
/// no name, so rank is the criterion (BURN.md).
#[derive(Clone)]
pub struct ExcludeRankOne<O> {
    /// Applied to weights (rank >= 2).
    pub decayed: O,
    /// Applied to rank-1 parameters.
    pub plain: O,
}

impl<O: Optimizer> Optimizer for ExcludeRankOne<O> {
    type State<const D: usize> = O::State<D>;

    fn step<const D: usize>(
        &self,
        lr: burn::optim::LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        if D <= 1 {
            self.plain.step(lr, tensor, grad, state)
        } else {
            self.decayed.step(lr, tensor, grad, state)
        }
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        O::to_device(state, device)
    }
}

/// Builds the configured optimizer for a whole module.
pub fn build_optimizer(cfg: &OptimConfig) -> ModuleOptimizer {
    match cfg.optimizer {
        OptimizerKind::Lars => {
            ModuleOptimizer::from(Lars::new(cfg.momentum, cfg.weight_decay, cfg.eta))
        }
        OptimizerKind::Sgd => {
            let momentum = Some(
                MomentumConfig::new()
                    .with_momentum(cfg.momentum)
                    .with_dampening(0.0),
            );
            let decayed = SgdConfig::new()
                .with_momentum(momentum.clone())
                .with_weight_decay(
                    (cfg.weight_decay > 0.0)
                        .then(|| WeightDecayConfig::new(cfg.weight_decay as f32)),
                )
                .build();
            let plain = SgdConfig::new().with_momentum(momentum).build();
            ModuleOptimizer::from(ExcludeRankOne { decayed, plain })
        }
        OptimizerKind::Adamw => {
            let base = AdamWConfig::new().with_beta_1(cfg.momentum as f32);
            let decayed = base
                .clone()
                .with_weight_decay(cfg.weight_decay as f32)
                .build();
            let plain = base.with_weight_decay(0.0).build();
            ModuleOptimizer::from(ExcludeRankOne { decayed, plain })
        }
    }
}
