//! The collapse metric: the standard deviation over the batch of the L2-normalized
//! projections, averaged over dimensions. About `1/sqrt(dim)` for well-spread outputs, 0 when
//! every input maps to the same point (collapse).

use super::loss::l2_normalize;
use burn::prelude::*;

/// Mean over dimensions of the per-dimension std over the batch of `l2_normalize(z)`.
///
/// `z`: `[batch, dim]` with `batch >= 2`. Returns a host number (a sync point).
pub fn collapse_std(z: Tensor<2>) -> f64 {
    let z = l2_normalize(z.detach());
    let std = z.var(0).sqrt().mean();
    std.into_scalar::<f32>() as f64
}
