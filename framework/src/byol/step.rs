//! The forward half of one BYOL step, shared by the trainer and the benchmarks.

use super::loss::regression_loss;
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
    let t = forward_loss_terms(online, target, x1, x2);
    (t.view1_to_view2 + t.view2_to_view1, t.projection)
}

/// The two directions of the symmetric BYOL loss of one step, kept apart so that a fault can be
/// traced to one of them; their sum is the loss (paper, Equation 4).
pub struct LossTerms {
    /// Online prediction of view 1 against the (detached) target projection of view 2, `[1]`.
    pub view1_to_view2: Tensor<1>,
    /// Online prediction of view 2 against the (detached) target projection of view 1, `[1]`.
    pub view2_to_view1: Tensor<1>,
    /// Online projection of view 1, `[batch, projection_dim]` (for the collapse metric).
    pub projection: Tensor<2>,
}

/// Like [`forward_loss`], with the two loss directions separate.
pub fn forward_loss_terms<E: Encoder>(
    online: &OnlineNetwork<E>,
    target: &TargetNetwork<E>,
    x1: E::Input,
    x2: E::Input,
) -> LossTerms {
    let o1 = online.forward(x1.clone());
    let o2 = online.forward(x2.clone());
    let z1 = target.forward(x1);
    let z2 = target.forward(x2);
    LossTerms {
        view1_to_view2: regression_loss(o1.prediction, z2.detach()),
        view2_to_view1: regression_loss(o2.prediction, z1.detach()),
        projection: o1.projection,
    }
}
