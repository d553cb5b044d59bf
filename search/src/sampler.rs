//! Samplers: where the next trial's parameters come from. Random search and TPE, both seeded
//! by `(study seed, trial number)` so a study (and a resumed one) proposes the same points.

pub use crate::params::Observation;
use crate::params::{ParamSpace, Params};
use crate::tpe::{Tpe, TpeConfig};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::Dim;

    /// A mixed objective: two reals, an integer, a category; maximum 0 at (0.3, 0.7, 2, c=3).
    fn objective(p: &Params) -> f64 {
        -(p["a"] - 0.3).powi(2)
            - (p["b"] - 0.7).powi(2)
            - 0.05 * (p["k"] - 2.0).abs()
            - if p["c"] == 3.0 { 0.0 } else { 0.1 }
    }

    fn best_after(kind: SamplerKind, seed: u64, trials: usize) -> f64 {
        let mut space = ParamSpace::default();
        space.push("a", Dim::Float { lo: 0.0, hi: 1.0 });
        space.push("b", Dim::Float { lo: 0.0, hi: 1.0 });
        space.push("k", Dim::Int { lo: 0, hi: 6 });
        space.push("c", Dim::Categorical { n: 5 });
        let mut history = Vec::new();
        for t in 0..trials {
            let p = propose(kind, &TpeConfig::default(), &space, &history, seed, t);
            assert!(space.contains(&p), "{p:?}");
            let score = objective(&p);
            history.push(Observation {
                params: p,
                rung: 0,
                score: Some(score),
            });
        }
        history
            .iter()
            .map(|o| o.score.unwrap())
            .fold(f64::NEG_INFINITY, f64::max)
    }

    #[test]
    fn tpe_beats_random_search_on_a_mixed_objective() {
        let seeds = 0..12u64;
        let mut wins = 0;
        let (mut tpe_sum, mut random_sum) = (0.0, 0.0);
        for s in seeds.clone() {
            let (t, r) = (
                best_after(SamplerKind::Tpe, s, 40),
                best_after(SamplerKind::Random, s, 40),
            );
            tpe_sum += t;
            random_sum += r;
            wins += usize::from(t > r);
        }
        assert!(
            wins >= 9 && tpe_sum > random_sum,
            "TPE won {wins} of 12; mean best {} vs {}",
            tpe_sum / 12.0,
            random_sum / 12.0
        );
    }

    #[test]
    fn same_seed_and_history_give_the_same_proposal() {
        let space = ParamSpace {
            dims: vec![
                ("x".into(), Dim::Float { lo: 0.0, hi: 1.0 }),
                ("c".into(), Dim::Categorical { n: 4 }),
            ],
        };
        let h: Vec<Observation> = (0..12)
            .map(|i| Observation {
                params: [
                    ("x".to_string(), i as f64 / 12.0),
                    ("c".to_string(), (i % 4) as f64),
                ]
                .into_iter()
                .collect(),
                rung: 0,
                score: Some(i as f64),
            })
            .collect();
        let a = propose(SamplerKind::Tpe, &TpeConfig::default(), &space, &h, 7, 12);
        let b = propose(SamplerKind::Tpe, &TpeConfig::default(), &space, &h, 7, 12);
        let c = propose(SamplerKind::Tpe, &TpeConfig::default(), &space, &h, 7, 13);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
