//! A flat parameter space (floats, integers, categories) and points in it.

use rand::RngExt;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One dimension of a [`ParamSpace`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Dim {
    /// A real number in `[lo, hi]`.
    Float {
        /// Lower bound (inclusive).
        lo: f64,
        /// Upper bound (inclusive).
        hi: f64,
    },
    /// An integer in `[lo, hi]`.
    Int {
        /// Lower bound (inclusive).
        lo: i64,
        /// Upper bound (inclusive).
        hi: i64,
    },
    /// One of `n` unordered choices, stored as the index `0..n`.
    Categorical {
        /// Number of choices, `>= 1`.
        n: usize,
    },
}

impl Dim {
    /// A uniform draw (integers and categories uniform over their values).
    pub fn sample_uniform(&self, rng: &mut StdRng) -> f64 {
        match *self {
            Dim::Float { lo, hi } => {
                if hi > lo {
                    rng.random_range(lo..=hi)
                } else {
                    lo
                }
            }
            Dim::Int { lo, hi } => rng.random_range(lo..=hi.max(lo)) as f64,
            Dim::Categorical { n } => rng.random_range(0..n.max(1)) as f64,
        }
    }

    /// Whether `v` is a value of this dimension.
    pub fn contains(&self, v: f64) -> bool {
        match *self {
            Dim::Float { lo, hi } => v.is_finite() && v >= lo && v <= hi,
            Dim::Int { lo, hi } => v.fract() == 0.0 && v >= lo as f64 && v <= hi as f64,
            Dim::Categorical { n } => v.fract() == 0.0 && v >= 0.0 && (v as usize) < n,
        }
    }
}

/// Named dimensions, in a fixed order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParamSpace {
    /// `(name, dimension)` pairs; names are unique.
    pub dims: Vec<(String, Dim)>,
}

/// A point of a [`ParamSpace`]: every dimension's value by name (categories as their index).
pub type Params = BTreeMap<String, f64>;

impl ParamSpace {
    /// Adds a dimension.
    pub fn push(&mut self, name: impl Into<String>, dim: Dim) {
        self.dims.push((name.into(), dim));
    }

    /// A uniform random point.
    pub fn sample_uniform(&self, rng: &mut StdRng) -> Params {
        self.dims
            .iter()
            .map(|(name, d)| (name.clone(), d.sample_uniform(rng)))
            .collect()
    }

    /// Whether `p` has exactly this space's dimensions, each in range.
    pub fn contains(&self, p: &Params) -> bool {
        p.len() == self.dims.len()
            && self
                .dims
                .iter()
                .all(|(name, d)| p.get(name).is_some_and(|v| d.contains(*v)))
    }
}

/// A finished evaluation the sampler learns from: a trial's parameters and how far and how
/// well it got. Observations are ranked by the highest fidelity reached, then by score (a
/// trial stopped early by successive halving ranks below every trial that went further, as
/// in Optuna's TPE with pruning).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The trial's parameters.
    pub params: Params,
    /// Index of the highest rung the trial finished (0 = the lowest fidelity).
    pub rung: usize,
    /// Its score at that rung (higher is better); `None` when the trial failed there.
    pub score: Option<f64>,
}

impl Observation {
    /// Sort key, best first: scored before failed (a failure ranks last whatever its rung),
    /// then higher rung, then higher score.
    pub fn better_than(&self, other: &Observation) -> std::cmp::Ordering {
        let key = |o: &Observation| (o.score.is_some(), o.rung);
        key(other).cmp(&key(self)).then(
            other
                .score
                .unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&self.score.unwrap_or(f64::NEG_INFINITY)),
        )
    }
}
