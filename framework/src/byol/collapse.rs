//! Collapse metrics of a batch of representations:
//! - the standard deviation over the batch of the L2-normalized vectors, averaged over
//!   dimensions: about `1/sqrt(dim)` for well-spread outputs, 0 when every input maps to the
//!   same point (complete collapse);
//! - the effective rank (RankMe, Garrido et al. 2023, "RankMe: Assessing the downstream
//!   performance of pretrained self-supervised representations by their rank", ICML, eq. 1):
//!   `exp` of the entropy of the normalized singular values. At most `min(batch, dim)`; it falls
//!   when the outputs span few directions (dimensional collapse), which the std does not see.

use super::loss::l2_normalize;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// The collapse metrics of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CollapseMetrics {
    /// [`collapse_std`] of the batch.
    pub std: f64,
    /// [`effective_rank`] of the batch.
    pub rank: f64,
    /// The largest rank the batch can have: `min(batch, dim)`.
    pub max_rank: usize,
}

impl CollapseMetrics {
    /// Both metrics of `z`, `[batch, dim]` with `batch >= 2` (two host reads).
    pub fn of(z: Tensor<2>) -> Self {
        let [n, d] = z.dims();
        Self {
            std: collapse_std(z.clone()),
            rank: effective_rank(z),
            max_rank: n.min(d),
        }
    }

    /// The effective rank as a fraction of [`max_rank`](Self::max_rank), in `(0, 1]`.
    pub fn rank_fraction(&self) -> f64 {
        self.rank / self.max_rank.max(1) as f64
    }
}

/// Mean over dimensions of the per-dimension std over the batch of `l2_normalize(z)`.
///
/// `z`: `[batch, dim]` with `batch >= 2`. Returns a host number (a sync point).
pub fn collapse_std(z: Tensor<2>) -> f64 {
    let z = l2_normalize(z.detach());
    let std = z.var(0).sqrt().mean();
    std.into_scalar::<f32>() as f64
}

/// RankMe of `z`, `[batch, dim]`: the smaller Gram matrix (`z^T z` or `z z^T`) is formed on the
/// device and read back, its eigenvalues (the squared singular values of `z`) computed on the
/// host in f64 (see [`effective_rank_of_gram`]). NaN when `z` holds a non-finite value.
pub fn effective_rank(z: Tensor<2>) -> f64 {
    let [n, d] = z.dims();
    let z = z.detach();
    let gram = if d <= n {
        z.clone().transpose().matmul(z)
    } else {
        z.clone().matmul(z.transpose())
    };
    let k = n.min(d);
    let values: Vec<f64> = gram
        .into_data()
        .convert::<f64>()
        .try_into_vec::<f64>()
        .unwrap_or_else(|_| vec![f64::NAN; k * k]);
    effective_rank_of_gram(&values, k)
}

/// RankMe from a symmetric positive semi-definite Gram matrix `gram`, `[k, k]` row-major:
/// with `sigma_i = sqrt(max(lambda_i, 0))` its eigenvalues' roots and
/// `p_i = sigma_i / sum(sigma) + 1e-7` (the paper's epsilon), `exp(-sum(p_i ln p_i))`.
/// 0 for an all-zero matrix, NaN when a value is not finite.
///
/// # Panics
/// When `gram.len() != k * k` (a bug of the caller).
pub fn effective_rank_of_gram(gram: &[f64], k: usize) -> f64 {
    assert_eq!(gram.len(), k * k, "a [k, k] Gram matrix");
    if gram.iter().any(|v| !v.is_finite()) {
        return f64::NAN;
    }
    if k == 0 {
        return 0.0;
    }
    let m = nalgebra::DMatrix::from_row_slice(k, k, gram);
    // Symmetrize against rounding before the symmetric solver.
    let m = (&m + m.transpose()) * 0.5;
    let sigma: Vec<f64> = m
        .symmetric_eigenvalues()
        .iter()
        .map(|&l| l.max(0.0).sqrt())
        .collect();
    let total: f64 = sigma.iter().sum();
    if total <= 0.0 {
        return 0.0;
    }
    let entropy: f64 = sigma
        .iter()
        .map(|s| {
            let p = s / total + 1e-7;
            -p * p.ln()
        })
        .sum();
    entropy.exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_of_known_spectra() {
        // Identity: k equal singular values, rank k.
        let k = 6;
        let mut eye = vec![0.0; k * k];
        for i in 0..k {
            eye[i * k + i] = 4.0;
        }
        assert!((effective_rank_of_gram(&eye, k) - 6.0).abs() < 1e-3);
        // One direction only: rank 1.
        let mut one = vec![0.0; k * k];
        one[0] = 9.0;
        assert!((effective_rank_of_gram(&one, k) - 1.0).abs() < 1e-3);
        // Two equal directions in a rotated basis: rank 2 whatever the basis.
        let (c, s) = (0.6f64, 0.8f64);
        // R diag(1, 1, 0) R^T for a rotation R in the (0, 2) plane.
        let g = [c * c, 0.0, c * s, 0.0, 1.0, 0.0, c * s, 0.0, s * s];
        assert!((effective_rank_of_gram(&g, 3) - 2.0).abs() < 1e-3);
        assert_eq!(effective_rank_of_gram(&[0.0; 4], 2), 0.0);
        assert!(effective_rank_of_gram(&[f64::NAN, 0.0, 0.0, 1.0], 2).is_nan());
    }
}
