//! Does the search's ranking hold on the test split? The numbers behind the report's transfer
//! section: the rank correlation (Spearman) of the final policies' validation and test scores,
//! whether the final comparison can tell its best policy from the next one at its number of
//! seeds, and how well each short rung's ranking predicts the longer rungs' (successive
//! halving keeps what ranks high early, so a rung that ranks differently from the full budget
//! throws good policies away).

use crate::stats::{mean_std, spearman};

/// One policy of the final comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyScores {
    /// The policy's name in the final comparison (`best`, a trial's name, a baseline's).
    pub policy: String,
    /// Its validation score at the full budget (the study's seed), in `[0, 1]`; `None` when it
    /// has none (a journal written before top-k re-evaluation, or a failed run).
    pub validation: Option<f64>,
    /// Its test scores, one per seed that finished, in `[0, 1]`.
    pub test: Vec<f64>,
}

impl PolicyScores {
    /// Mean and sample standard deviation of the test scores ([`mean_std`]).
    pub fn test_mean_std(&self) -> (f64, f64) {
        mean_std(&self.test)
    }
}

/// Spearman's rho of validation against mean test score over the policies that have both,
/// with that count; `None` for rho with fewer than 3 such policies or constant scores.
pub fn validation_test_correlation(policies: &[PolicyScores]) -> (Option<f64>, usize) {
    let (mut v, mut t) = (Vec::new(), Vec::new());
    for p in policies {
        if let (Some(val), false) = (p.validation, p.test.is_empty()) {
            v.push(val);
            t.push(p.test_mean_std().0);
        }
    }
    (spearman(&v, &t), v.len())
}

/// The best policy on the test split against the runner-up.
#[derive(Debug, Clone, PartialEq)]
pub struct Separation {
    /// The policy with the highest mean test score.
    pub first: String,
    /// The one with the next highest.
    pub second: String,
    /// Mean test score of `first` minus that of `second`, in `[0, 1]` units.
    pub gap: f64,
    /// The larger of the two policies' seed standard deviations, in `[0, 1]` units.
    pub seed_std: f64,
}

impl Separation {
    /// Whether the gap is larger than one seed standard deviation: below that, the order of
    /// the two is within what a change of seed does.
    pub fn tells_apart(&self) -> bool {
        self.gap > self.seed_std
    }
}

/// The first and second policies by mean test score, over those with at least 2 test seeds
/// (a spread needs 2); `None` with fewer than 2 such policies.
pub fn separation(policies: &[PolicyScores]) -> Option<Separation> {
    let mut ranked: Vec<(&str, f64, f64)> = policies
        .iter()
        .filter(|p| p.test.len() >= 2)
        .map(|p| {
            let (m, sd) = p.test_mean_std();
            (p.policy.as_str(), m, sd)
        })
        .collect();
    if ranked.len() < 2 {
        return None;
    }
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    Some(Separation {
        first: ranked[0].0.to_string(),
        second: ranked[1].0.to_string(),
        gap: ranked[0].1 - ranked[1].1,
        seed_std: ranked[0].2.max(ranked[1].2),
    })
}

/// How a shorter rung ranks the trials compared with a longer one.
#[derive(Debug, Clone, PartialEq)]
pub struct RungAgreement {
    /// The shorter rung (index).
    pub lower: usize,
    /// The longer rung (index).
    pub upper: usize,
    /// Trials with a score at both.
    pub trials: usize,
    /// Spearman's rho of their scores at the two rungs (`None`: fewer than 3 trials or
    /// constant scores).
    pub rho: Option<f64>,
}

/// For every pair of rungs `lower < upper`, Spearman's rho of the scores of the searched
/// trials that have a score at both. `scores`: `(trial, rung, score)` of every finished
/// result (a failed one left out).
pub fn rung_agreement(scores: &[(usize, usize, f64)], rungs: usize) -> Vec<RungAgreement> {
    let mut out = Vec::new();
    for lower in 0..rungs {
        for upper in lower + 1..rungs {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for &(t, r, s) in scores {
                if r != lower {
                    continue;
                }
                if let Some(&(_, _, u)) = scores.iter().find(|x| x.0 == t && x.1 == upper) {
                    a.push(s);
                    b.push(u);
                }
            }
            if a.is_empty() {
                continue;
            }
            out.push(RungAgreement {
                lower,
                upper,
                trials: a.len(),
                rho: spearman(&a, &b),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, val: Option<f64>, test: &[f64]) -> PolicyScores {
        PolicyScores {
            policy: name.into(),
            validation: val,
            test: test.to_vec(),
        }
    }

    #[test]
    fn the_correlation_uses_policies_with_both_scores() {
        let ps = [
            p("a", Some(0.9), &[0.80, 0.82]),
            p("b", Some(0.8), &[0.70, 0.72]),
            p("c", Some(0.7), &[0.60, 0.62]),
            p("d", None, &[0.99, 0.99]),
            p("e", Some(0.95), &[]),
        ];
        assert_eq!(validation_test_correlation(&ps), (Some(1.0), 3));
        let reversed = [
            p("a", Some(0.9), &[0.6]),
            p("b", Some(0.8), &[0.7]),
            p("c", Some(0.7), &[0.8]),
        ];
        assert_eq!(validation_test_correlation(&reversed), (Some(-1.0), 3));
        assert_eq!(validation_test_correlation(&ps[..2]).0, None);
    }

    #[test]
    fn a_gap_within_one_seed_std_does_not_tell_policies_apart() {
        // a: mean 0.81, std 0.01414; b: mean 0.80, std 0.01414; gap 0.01 < std.
        let close = [p("a", None, &[0.80, 0.82]), p("b", None, &[0.79, 0.81])];
        let s = separation(&close).unwrap();
        assert_eq!((s.first.as_str(), s.second.as_str()), ("a", "b"));
        assert!((s.gap - 0.01).abs() < 1e-12);
        assert!(!s.tells_apart());
        let far = [p("a", None, &[0.70, 0.72]), p("b", None, &[0.80, 0.82])];
        let s = separation(&far).unwrap();
        assert_eq!(s.first, "b");
        assert!(s.tells_apart());
        // One seed has no spread: not compared.
        assert_eq!(
            separation(&[p("a", None, &[0.8]), p("b", None, &[0.7])]),
            None
        );
    }

    #[test]
    fn rung_agreement_pairs_each_trials_scores() {
        // Trials 0-3 at rung 0; 0, 1, 2 at rung 1 in the same order; 0 and 1 at rung 2.
        let scores = [
            (0, 0, 0.5),
            (1, 0, 0.4),
            (2, 0, 0.3),
            (3, 0, 0.2),
            (0, 1, 0.9),
            (1, 1, 0.8),
            (2, 1, 0.7),
            (0, 2, 0.6),
            (1, 2, 0.7),
        ];
        let a = rung_agreement(&scores, 3);
        assert_eq!(a.len(), 3);
        assert_eq!((a[0].lower, a[0].upper, a[0].trials), (0, 1, 3));
        assert_eq!(a[0].rho, Some(1.0));
        assert_eq!(
            (a[1].lower, a[1].upper, a[1].trials, a[1].rho),
            (0, 2, 2, None)
        );
        assert_eq!((a[2].lower, a[2].upper, a[2].trials), (1, 2, 2));
    }
}
