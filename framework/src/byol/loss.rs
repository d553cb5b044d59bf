//! The BYOL loss (paper, Equations 2 and 4): the one place it is computed.

use burn::prelude::*;

/// L2-normalizes the rows of `[batch, dim]` (norms clamped at 1e-12).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powi_scalar(2).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// `mean over the batch of 2 - 2 cos(p, z)` (paper, Equation 2), `[1]`, in `[0, 4]`.
///
/// `p`, `z`: `[batch, dim]`. The caller detaches `z` (the target's side).
pub fn regression_loss(p: Tensor<2>, z: Tensor<2>) -> Tensor<1> {
    let cos = (l2_normalize(p) * l2_normalize(z)).sum_dim(1);
    (cos.mul_scalar(-2.0).add_scalar(2.0)).mean()
}

/// The two directions of the symmetric BYOL loss, kept apart so that a fault can be traced to
/// one of them; their sum ([`LossTerms::total`]) is the loss (paper, Equation 4).
pub struct LossTerms {
    /// Online prediction of view 1 against the (detached) target projection of view 2, `[1]`.
    pub view1_to_view2: Tensor<1>,
    /// Online prediction of view 2 against the (detached) target projection of view 1, `[1]`.
    pub view2_to_view1: Tensor<1>,
}

impl LossTerms {
    /// The BYOL loss: the two directions summed, not averaged (paper, Equation 4), `[1]`, in
    /// `[0, 8]`.
    pub fn total(self) -> Tensor<1> {
        self.view1_to_view2 + self.view2_to_view1
    }
}

/// The symmetric BYOL loss: online view 1 predicts target view 2 and online view 2 predicts
/// target view 1 (paper, Equation 4; never a view against itself).
///
/// `p1`, `p2`: online predictions `q(g(f(x)))` of views 1 and 2; `z1`, `z2`: target
/// projections `g'(f'(x))` of views 1 and 2; all `[batch, dim]`. The targets are detached here
/// (the stop-gradient), whatever the caller passed.
pub fn byol_loss(p1: Tensor<2>, p2: Tensor<2>, z1: Tensor<2>, z2: Tensor<2>) -> LossTerms {
    LossTerms {
        view1_to_view2: regression_loss(p1, z2.detach()),
        view2_to_view1: regression_loss(p2, z1.detach()),
    }
}
