//! The forward half of one BYOL step, shared by the trainer and the benchmarks.

use super::loss::byol_loss;
use super::network::{OnlineNetwork, TargetNetwork};
use crate::encoder::Encoder;
use burn::prelude::*;

/// Online and target networks on both views, then the symmetric loss (paper, Equation 4):
/// online view 1 predicts target view 2 and vice versa. Returns the loss `[1]` (with its
/// autodiff graph) and the online projection of view 1 `[batch, projection_dim]` (for the
/// collapse metric).
pub fn forward_loss<E: Encoder>(
    online: &OnlineNetwork<E>,
    target: &TargetNetwork<E>,
    x1: E::Input,
    x2: E::Input,
) -> (Tensor<1>, Tensor<2>) {
    let o1 = online.forward(x1.clone());
    let o2 = online.forward(x2.clone());
    let z1 = target.forward(x1);
    let z2 = target.forward(x2);
    (
        byol_loss(o1.prediction, o2.prediction, z1, z2),
        o1.projection,
    )
}
