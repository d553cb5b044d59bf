//! The tree-structured Parzen estimator (TPE; Bergstra, Bardenet, Bengio & Kégl, "Algorithms
//! for Hyper-Parameter Optimization", NeurIPS 2011, Section 4) with independent
//! per-dimension densities, as hyperopt and Optuna's default sampler use it.
//!
//! Definition. Rank the finished observations best first and split them at the `gamma`
//! quantile of the paper (`y*` such that `p(y < y*) = gamma`): the best `ceil(gamma n)` form
//! the "good" set, the rest the "bad" set (Eq. 2: `p(x | y) = l(x)` if `y < y*`, else `g(x)`;
//! hyperopt uses `ceil(gamma sqrt(n))` instead, and weights old points less, which we do not).
//! Fit a Parzen density to each set, per dimension: for a real dimension a mixture of
//! Gaussians truncated to `[lo, hi]`, one at every observed value plus a prior component at the
//! middle with standard deviation `hi - lo`, each point's bandwidth being the larger distance
//! to its sorted neighbours, the bounds counting as neighbours at the ends (as Optuna), clipped
//! to `[(hi - lo) / min(100, n + 1), hi - lo]` (the adaptive Parzen estimator); an
//! integer dimension is the same density over `[lo - 0.5, hi + 0.5]` integrated over each
//! integer's unit interval; a categorical dimension has probabilities
//! `(count_j + w / k) / (n + w)` for prior weight `w` and `k` choices. Then draw `candidates`
//! points from `l` and return the one with the largest `l(x) / g(x)`, which maximizes the
//! expected improvement (Eq. 3-4). The first `startup_trials` proposals are uniform.
//!
//! Dimensions are treated independently (`l(x) = prod_d l_d(x_d)`), as hyperopt and Optuna's
//! default do; a policy's inactive slots (ops beyond its op count) are still sampled and fitted,
//! which costs the estimator some efficiency but keeps it well defined.

use crate::params::Observation;
use crate::params::{Dim, ParamSpace, Params};
use rand::RngExt;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

/// TPE settings (`[tpe]` of a search file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TpeConfig {
    /// Proposals drawn uniformly before TPE takes over (at least 2).
    pub startup_trials: usize,
    /// Fraction of observations in the "good" set, in (0, 1).
    pub gamma: f64,
    /// Candidates drawn from `l` per proposal.
    pub candidates: usize,
    /// Weight of the prior component of every density.
    pub prior_weight: f64,
}

impl Default for TpeConfig {
    fn default() -> Self {
        Self {
            startup_trials: 8,
            gamma: 0.25,
            candidates: 24,
            prior_weight: 1.0,
        }
    }
}

/// The sampler.
#[derive(Debug, Clone)]
pub struct Tpe {
    cfg: TpeConfig,
}

/// The good and bad sets: `ceil(gamma n)` best observations (at least 1, and at most `n - 1`
/// when `n >= 2`), and the rest.
pub fn split(history: &[Observation], gamma: f64) -> (Vec<&Observation>, Vec<&Observation>) {
    let mut sorted: Vec<&Observation> = history.iter().collect();
    sorted.sort_by(|a, b| a.better_than(b));
    let n = sorted.len();
    let mut n_good = ((gamma * n as f64).ceil() as usize).max(1);
    if n >= 2 {
        n_good = n_good.min(n - 1);
    }
    let n_good = n_good.min(n);
    let bad = sorted.split_off(n_good);
    (sorted, bad)
}

fn normal_cdf(z: f64) -> f64 {
    0.5 * (1.0 + libm::erf(z / std::f64::consts::SQRT_2))
}

/// A one-dimensional Parzen density (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub enum Estimator {
    /// Truncated Gaussian mixture over `[lo, hi]`; `integer` integrates it over unit bins.
    Parzen {
        /// Component means.
        mus: Vec<f64>,
        /// Component standard deviations.
        sigmas: Vec<f64>,
        /// Component weights (sum 1).
        weights: Vec<f64>,
        /// Lower bound of the support.
        lo: f64,
        /// Upper bound of the support.
        hi: f64,
        /// Integer dimension: support `[lo, hi]` is `[int lo - 0.5, int hi + 0.5]`.
        integer: bool,
    },
    /// Probabilities of the choices.
    Categorical(Vec<f64>),
}

impl Estimator {
    /// Fits the density of `dim` to `values`.
    pub fn fit(dim: &Dim, values: &[f64], prior_weight: f64) -> Self {
        match *dim {
            Dim::Categorical { n } => {
                let mut p = vec![prior_weight / n as f64; n];
                for &v in values {
                    if let Some(slot) = p.get_mut(v as usize) {
                        *slot += 1.0;
                    }
                }
                let total: f64 = p.iter().sum();
                Estimator::Categorical(p.into_iter().map(|c| c / total).collect())
            }
            Dim::Float { lo, hi } => Self::parzen(values, lo, hi, prior_weight, false),
            Dim::Int { lo, hi } => {
                Self::parzen(values, lo as f64 - 0.5, hi as f64 + 0.5, prior_weight, true)
            }
        }
    }

    fn parzen(values: &[f64], lo: f64, hi: f64, prior_weight: f64, integer: bool) -> Self {
        let width = (hi - lo).max(1e-12);
        let prior_mu = 0.5 * (lo + hi);
        // Observations and the prior, sorted, remembering which one is the prior.
        let mut pts: Vec<(f64, bool)> = values.iter().map(|&v| (v, false)).collect();
        pts.push((prior_mu, true));
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let n = values.len();
        let min_sigma = width / (100.0f64).min(n as f64 + 1.0);
        let (mut mus, mut sigmas, mut weights) = (Vec::new(), Vec::new(), Vec::new());
        for (i, &(mu, is_prior)) in pts.iter().enumerate() {
            let left = if i == 0 { lo } else { pts[i - 1].0 };
            let right = if i + 1 == pts.len() { hi } else { pts[i + 1].0 };
            let sigma = if is_prior {
                width
            } else {
                (mu - left).max(right - mu).clamp(min_sigma, width)
            };
            mus.push(mu);
            sigmas.push(sigma);
            weights.push(if is_prior { prior_weight } else { 1.0 });
        }
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        Estimator::Parzen {
            mus,
            sigmas,
            weights,
            lo,
            hi,
            integer,
        }
    }

    /// Density (real dimensions) or probability (integers, categories) of `x`.
    pub fn density(&self, x: f64) -> f64 {
        match self {
            Estimator::Categorical(p) => p.get(x as usize).copied().unwrap_or(0.0),
            Estimator::Parzen {
                mus,
                sigmas,
                weights,
                lo,
                hi,
                integer,
            } => {
                let mut d = 0.0;
                for ((&mu, &s), &w) in mus.iter().zip(sigmas).zip(weights) {
                    let z = normal_cdf((hi - mu) / s) - normal_cdf((lo - mu) / s);
                    let z = z.max(1e-300);
                    let mass = if *integer {
                        let (a, b) = ((x - 0.5).max(*lo), (x + 0.5).min(*hi));
                        normal_cdf((b - mu) / s) - normal_cdf((a - mu) / s)
                    } else {
                        let u = (x - mu) / s;
                        (-0.5 * u * u).exp() / (s * (2.0 * std::f64::consts::PI).sqrt())
                    };
                    d += w * mass / z;
                }
                d
            }
        }
    }

    /// A draw from the density.
    pub fn sample(&self, rng: &mut StdRng) -> f64 {
        match self {
            Estimator::Categorical(p) => pick(p, rng) as f64,
            Estimator::Parzen {
                mus,
                sigmas,
                weights,
                lo,
                hi,
                integer,
            } => {
                let i = pick(weights, rng);
                let normal = Normal::new(mus[i], sigmas[i]).expect("positive sigma");
                let mut x = normal.sample(rng);
                for _ in 0..64 {
                    if x >= *lo && x <= *hi {
                        break;
                    }
                    x = normal.sample(rng);
                }
                let x = x.clamp(*lo, *hi);
                if *integer {
                    x.round().clamp((lo + 0.5).round(), (hi - 0.5).round())
                } else {
                    x
                }
            }
        }
    }
}

/// An index drawn with probabilities proportional to `weights`.
fn pick(weights: &[f64], rng: &mut StdRng) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.random_range(0.0..total.max(1e-300));
    for (i, &w) in weights.iter().enumerate() {
        if u < w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

impl Tpe {
    /// A TPE sampler with these settings.
    pub fn new(cfg: TpeConfig) -> Self {
        Self { cfg }
    }

    /// The next point: uniform during the startup trials, else the candidate drawn from the
    /// good density with the largest `l(x) / g(x)`.
    pub fn propose(&self, space: &ParamSpace, history: &[Observation], rng: &mut StdRng) -> Params {
        let history: Vec<Observation> = history
            .iter()
            .filter(|o| space.contains(&o.params))
            .cloned()
            .collect();
        if history.len() < self.cfg.startup_trials.max(2) {
            return space.sample_uniform(rng);
        }
        let (good, bad) = split(&history, self.cfg.gamma);
        let fits: Vec<(Estimator, Estimator)> = space
            .dims
            .iter()
            .map(|(name, dim)| {
                let values = |set: &[&Observation]| -> Vec<f64> {
                    set.iter().map(|o| o.params[name]).collect()
                };
                (
                    Estimator::fit(dim, &values(&good), self.cfg.prior_weight),
                    Estimator::fit(dim, &values(&bad), self.cfg.prior_weight),
                )
            })
            .collect();
        let mut best: Option<(f64, Params)> = None;
        for _ in 0..self.cfg.candidates.max(1) {
            let mut p = Params::new();
            let mut score = 0.0;
            for ((name, _), (l, g)) in space.dims.iter().zip(&fits) {
                let x = l.sample(rng);
                score += l.density(x).max(1e-300).ln() - g.density(x).max(1e-300).ln();
                p.insert(name.clone(), x);
            }
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, p));
            }
        }
        best.expect("at least one candidate").1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn obs(x: f64, score: f64) -> Observation {
        Observation {
            params: [("x".to_string(), x)].into_iter().collect(),
            rung: 0,
            score: Some(score),
        }
    }

    #[test]
    fn real_density_integrates_to_one_over_its_bounds() {
        let e = Estimator::fit(
            &Dim::Float { lo: -1.0, hi: 3.0 },
            &[0.1, 2.9, 2.95, -0.8],
            1.0,
        );
        let n = 40_000;
        let h = 4.0 / n as f64;
        let integral: f64 = (0..n)
            .map(|i| e.density(-1.0 + (i as f64 + 0.5) * h) * h)
            .sum();
        assert!((integral - 1.0).abs() < 1e-3, "integral {integral}");
    }

    #[test]
    fn integer_and_categorical_probabilities_sum_to_one() {
        let e = Estimator::fit(&Dim::Int { lo: 1, hi: 4 }, &[1.0, 1.0, 3.0], 1.0);
        let total: f64 = (1..=4).map(|k| e.density(k as f64)).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        let c = Estimator::fit(&Dim::Categorical { n: 3 }, &[2.0, 2.0, 0.0], 1.0);
        let Estimator::Categorical(p) = &c else {
            panic!()
        };
        // (count + w / k) / (n + w) with w = 1, k = 3, n = 3.
        let expect = [
            (1.0 + 1.0 / 3.0) / 4.0,
            (1.0 / 3.0) / 4.0,
            (2.0 + 1.0 / 3.0) / 4.0,
        ];
        for (a, b) in p.iter().zip(expect) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn bandwidth_is_the_larger_neighbour_distance_clipped() {
        // 200 observations: min sigma = width / 100.
        let values: Vec<f64> = (0..200).map(|i| i as f64 / 400.0).collect(); // 0 .. 0.4975
        let Estimator::Parzen { mus, sigmas, .. } =
            Estimator::fit(&Dim::Float { lo: 0.0, hi: 1.0 }, &values, 1.0)
        else {
            panic!()
        };
        // Neighbours 0.0025 apart, below the clip 0.01.
        let i = mus.iter().position(|&m| m == 0.25).unwrap();
        assert_eq!(sigmas[i], 0.01);
        // The last observation's right neighbour is the prior at 0.5: distance 0.0025 left,
        // 0.0025 right -> clipped; the prior keeps sigma = width.
        let p = mus.iter().position(|&m| m == 0.5).unwrap();
        assert_eq!(sigmas[p], 1.0);
        // A lone far point: its bandwidth is its distance to the bound or neighbour.
        let Estimator::Parzen { mus, sigmas, .. } =
            Estimator::fit(&Dim::Float { lo: 0.0, hi: 1.0 }, &[0.9, 0.1], 1.0)
        else {
            panic!()
        };
        let i = mus.iter().position(|&m| m == 0.9).unwrap();
        assert!((sigmas[i] - 0.4).abs() < 1e-12); // max(0.9 - 0.5, 1.0 - 0.9)
    }

    #[test]
    fn split_takes_the_best_gamma_fraction_and_ranks_higher_rungs_first() {
        let mut h: Vec<Observation> = (0..8).map(|i| obs(i as f64, i as f64)).collect();
        h[0].rung = 1; // worst score, but it reached a higher fidelity
        let (good, bad) = split(&h, 0.25);
        assert_eq!(good.len(), 2);
        assert_eq!(bad.len(), 6);
        assert_eq!(good[0].params["x"], 0.0);
        assert_eq!(good[1].params["x"], 7.0);
        let failed = Observation {
            score: None,
            ..obs(9.0, 0.0)
        };
        h.push(failed);
        let (_, bad) = split(&h, 0.25);
        assert_eq!(bad.last().unwrap().params["x"], 9.0, "failures rank last");
    }

    #[test]
    fn proposals_concentrate_where_good_observations_are() {
        // Good observations near 0.8, bad ones spread: TPE's proposals lie near 0.8.
        let mut h: Vec<Observation> = (0..30)
            .map(|i| {
                let x = i as f64 / 29.0;
                obs(x, -(x - 0.8).abs())
            })
            .collect();
        h.push(obs(0.79, 0.0));
        let space = ParamSpace {
            dims: vec![("x".into(), Dim::Float { lo: 0.0, hi: 1.0 })],
        };
        let tpe = Tpe::new(TpeConfig::default());
        let mut rng = StdRng::seed_from_u64(1);
        let xs: Vec<f64> = (0..50)
            .map(|_| tpe.propose(&space, &h, &mut rng)["x"])
            .collect();
        let near = xs.iter().filter(|x| (*x - 0.8).abs() < 0.15).count();
        assert!(
            near >= 40,
            "{near} of 50 proposals near the optimum: {xs:?}"
        );
    }
}
