//! LARS (You, Gitman and Ginsburg 2017, arXiv 1708.03888) as used by BYOL (paper, Appendix
//! C.1): momentum 0.9, trust coefficient eta 1e-3, weight decay; biases and normalization
//! parameters are excluded from both the weight decay and the trust-ratio adaptation.

use burn::optim::LearningRate;
use burn::optim::Optimizer;
use burn::optim::SgdState;
use burn::optim::momentum::{Momentum, MomentumConfig};
use burn::prelude::*;

/// The LARS update for a parameter `w` with gradient `g`:
///
/// ```text
/// u = g + wd * w                      (rank >= 2 only)
/// u = u * eta * ||w|| / ||u||         (rank >= 2 only; ratio 1 when a norm is 0)
/// v = momentum * v + u
/// w = w - lr * v
/// ```
///
/// The trust ratio stays on the device (no host sync).
#[derive(Clone)]
pub struct Lars {
    momentum: Momentum,
    weight_decay: f64,
    eta: f64,
}

impl Lars {
    /// LARS with the given momentum, weight decay and trust coefficient eta.
    pub fn new(momentum: f64, weight_decay: f64, eta: f64) -> Self {
        Self {
            momentum: Momentum::new(
                &MomentumConfig::new()
                    .with_momentum(momentum)
                    .with_dampening(0.0),
            ),
            weight_decay,
            eta,
        }
    }
}

impl Optimizer for Lars {
    type State<const D: usize> = SgdState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let mut update = grad;
        if D > 1 {
            if self.weight_decay > 0.0 {
                update = update + tensor.clone().mul_scalar(self.weight_decay);
            }
            let w_norm = tensor.clone().powi_scalar(2).sum().sqrt();
            let u_norm = update.clone().powi_scalar(2).sum().sqrt();
            let usable = w_norm
                .clone()
                .greater_elem(0.0)
                .bool_and(u_norm.clone().greater_elem(0.0));
            let ratio = (w_norm / u_norm)
                .mul_scalar(self.eta)
                .mask_fill(usable.bool_not(), 1.0);
            update = update * ratio.reshape([1; D]);
        }
        let (velocity, momentum_state) = self
            .momentum
            .transform(update, state.and_then(|s| s.momentum));
        (
            tensor - velocity.mul_scalar(lr),
            Some(SgdState::new(Some(momentum_state))),
        )
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.momentum = state.momentum.map(|m| m.to_device(device));
        state
    }
}
