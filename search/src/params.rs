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
