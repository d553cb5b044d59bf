//! Samplers: where the next trial's parameters come from. Random search and TPE, both seeded
//! by `(study seed, trial number)` so a study (and a resumed one) proposes the same points.

use crate::params::{ParamSpace, Params};
use crate::tpe::{Tpe, TpeConfig};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

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

/// Which sampler a study uses (`sampler = "random" | "tpe"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    /// Independent uniform draws (Bergstra & Bengio 2012).
    Random,
    /// Tree-structured Parzen estimator (Bergstra et al. 2011).
    Tpe,
}

impl std::str::FromStr for SamplerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(Self::Random),
            "tpe" => Ok(Self::Tpe),
            other => Err(format!("{other:?}: expected random or tpe")),
        }
    }
}

/// The seed of trial `trial`'s proposal in a study seeded `seed` (SplitMix64 of both).
pub fn proposal_seed(seed: u64, trial: usize) -> u64 {
    let mut z = seed ^ (trial as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Proposes trial `trial`'s parameters given the finished `history`.
pub fn propose(
    kind: SamplerKind,
    tpe: &TpeConfig,
    space: &ParamSpace,
    history: &[Observation],
    seed: u64,
    trial: usize,
) -> Params {
    let mut rng = StdRng::seed_from_u64(proposal_seed(seed, trial));
    match kind {
        SamplerKind::Random => space.sample_uniform(&mut rng),
        SamplerKind::Tpe => Tpe::new(tpe.clone()).propose(space, history, &mut rng),
    }
}
