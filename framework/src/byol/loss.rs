//! The BYOL loss (paper, Equations 2 and 4).

use burn::prelude::*;

/// L2-normalizes the rows of `[batch, dim]` (norms clamped at 1e-12).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// `mean over the batch of 2 - 2 cos(p, z)` (paper, Equation 2), `[1]`.
///
/// `p`, `z`: `[batch, dim]`. The caller detaches `z` (the target's side).
pub fn regression_loss(p: Tensor<2>, z: Tensor<2>) -> Tensor<1> {
    let cos = (l2_normalize(p) * l2_normalize(z)).sum_dim(1);
    (cos.mul_scalar(-2.0).add_scalar(2.0)).mean()
}

/// The symmetric BYOL loss: online view 1 predicts target view 2 and online view 2 predicts
/// target view 1; the two directions are summed, not averaged (paper, Equation 4).
///
/// `p1`, `p2`: online predictions of views 1 and 2; `z1`, `z2`: target projections of views 1
/// and 2; all `[batch, dim]`. The targets are detached here, whatever the caller passed.
/// Returns `[1]`, in `[0, 8]`.
pub fn byol_loss(p1: Tensor<2>, p2: Tensor<2>, z1: Tensor<2>, z2: Tensor<2>) -> Tensor<1> {
    regression_loss(p1, z2.detach()) + regression_loss(p2, z1.detach())
}
