//! Asynchronous successive halving (ASHA; Li, Jamieson, Rostamizadeh, Gonina, Ben-tzur, Hardt,
//! Recht & Talwalkar, "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020,
//! Algorithm 2) over the pre-training budget in optimizer steps.
//!
//! Rungs: `K = floor(log_eta(max_steps / min_steps))`, rung `k` (0..=K) trains to
//! `round(max_steps / eta^(K - k))` steps, so the top rung is the full budget. Whenever a
//! device is free, the scheduler looks from the top rung down for a trial that is in the best
//! `floor(n_k / eta)` of the `n_k` trials finished at rung `k` and not yet promoted, and
//! promotes it to rung `k + 1`; if there is none, a new trial starts at rung 0. Promotion
//! never waits for a rung to fill, so no device idles (the "asynchronous" part). A promoted
//! trial continues from its checkpoint: the learning-rate and tau schedules are those of the
//! full budget throughout, so a trial stopped at rung `k` is exactly the first steps of the
//! full run.

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// ASHA settings (`[asha]` of a search file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AshaConfig {
    /// Smallest budget: rung 0 trains about this many optimizer steps (the rungs are
    /// `max_steps / eta^k` rounded, so rung 0 is the largest such budget not above
    /// `min_steps`, rounded: `(10, 100, eta 3)` gives rungs 11, 33, 100).
    pub min_steps: usize,
    /// Full budget: optimizer steps of the top rung (also the baselines' budget).
    pub max_steps: usize,
    /// Reduction factor: one in `eta` trials of a rung goes on to the next.
    pub eta: usize,
}

impl Default for AshaConfig {
    fn default() -> Self {
        Self {
            min_steps: 20,
            max_steps: 180,
            eta: 3,
        }
    }
}

impl AshaConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// A message naming the key when `min_steps` is 0, `max_steps < min_steps` or `eta < 2`.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_steps == 0 {
            return Err(format!("asha.min_steps = 0: expected at least 1"));
        }
        if self.max_steps < self.min_steps {
            return Err(format!(
                "asha.max_steps = {}: expected at least asha.min_steps = {}",
                self.max_steps, self.min_steps
            ));
        }
        if self.eta < 2 {
            return Err(format!("asha.eta = {}: expected at least 2", self.eta));
        }
        Ok(())
    }

    /// The rungs' budgets in optimizer steps, lowest first; the last is `max_steps`.
    pub fn rungs(&self) -> Vec<usize> {
        let ratio = self.max_steps as f64 / self.min_steps.max(1) as f64;
        let eta = self.eta.max(2) as f64;
        // floor(log_eta(ratio)), robust to rounding (e.g. 108 / 12 = 9 = 3^2 exactly).
        let mut top = 0usize;
        while eta.powi(top as i32 + 1) <= ratio * (1.0 + 1e-9) {
            top += 1;
        }
        let mut out: Vec<usize> = (0..=top)
            .map(|k| {
                let r = self.max_steps as f64 / eta.powi((top - k) as i32);
                (r.round() as usize).max(1)
            })
            .collect();
        out.dedup();
        out
    }
}

/// What the scheduler knows: per rung, the trials finished there with their scores (`None`
/// for a failure), and the trials already promoted out of it (running or finished above).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RungState {
    /// `(trial, score)` of the trials finished at this rung, in finishing order.
    pub finished: Vec<(usize, Option<f64>)>,
    /// Trials promoted from this rung to the next.
    pub promoted: BTreeSet<usize>,
}

/// The next promotion `(trial, to_rung)`, from the top rung down, best trial first; `None`
/// when no trial qualifies (the caller then starts a new trial at rung 0).
///
/// A trial qualifies at rung `k < top` when it is among the best `floor(n_k / eta)` finished
/// there (failures never qualify; ties go to the trial that finished first) and has not been
/// promoted yet.
pub fn next_promotion(rungs: &[RungState], eta: usize) -> Option<(usize, usize)> {
    let top = rungs.len().checked_sub(1)?;
    for k in (0..top).rev() {
        let rung = &rungs[k];
        let mut ranked: Vec<(usize, usize, f64)> = rung
            .finished
            .iter()
            .enumerate()
            .filter_map(|(order, &(t, s))| s.map(|s| (order, t, s)))
            .collect();
        ranked.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
        let quota = rung.finished.len() / eta.max(2);
        if let Some(&(_, trial, _)) = ranked
            .iter()
            .take(quota)
            .find(|(_, t, _)| !rung.promoted.contains(t))
        {
            return Some((trial, k + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(min: usize, max: usize, eta: usize) -> AshaConfig {
        AshaConfig {
            min_steps: min,
            max_steps: max,
            eta,
        }
    }

    #[test]
    fn rung_budgets_grow_by_eta_up_to_the_full_budget() {
        assert_eq!(cfg(12, 108, 3).rungs(), vec![12, 36, 108]);
        assert_eq!(cfg(10, 100, 3).rungs(), vec![11, 33, 100]);
        assert_eq!(cfg(1, 81, 3).rungs(), vec![1, 3, 9, 27, 81]);
        assert_eq!(cfg(50, 60, 2).rungs(), vec![60]);
        assert_eq!(cfg(5, 40, 2).rungs(), vec![5, 10, 20, 40]);
        assert!(cfg(0, 10, 3).validate().is_err());
        assert!(cfg(10, 5, 3).validate().is_err());
        assert!(cfg(1, 5, 1).validate().is_err());
    }

    fn rung(scores: &[(usize, f64)]) -> RungState {
        RungState {
            finished: scores.iter().map(|&(t, s)| (t, Some(s))).collect(),
            promoted: BTreeSet::new(),
        }
    }

    #[test]
    fn promotes_only_the_top_one_in_eta() {
        // Two finished at rung 0 with eta 3: floor(2 / 3) = 0, nobody goes up yet.
        let mut rungs = vec![rung(&[(0, 0.5), (1, 0.9)]), RungState::default()];
        assert_eq!(next_promotion(&rungs, 3), None);
        // The third arrives: the best of the three (trial 1) is promoted.
        rungs[0].finished.push((2, Some(0.7)));
        assert_eq!(next_promotion(&rungs, 3), Some((1, 1)));
        rungs[0].promoted.insert(1);
        assert_eq!(next_promotion(&rungs, 3), None, "one in three already went");
        // Six finished: the best two qualify; trial 4 is the second best.
        for (t, s) in [(3, 0.1), (4, 0.8), (5, 0.2)] {
            rungs[0].finished.push((t, Some(s)));
        }
        assert_eq!(next_promotion(&rungs, 3), Some((4, 1)));
    }

    #[test]
    fn higher_rungs_are_served_first_and_failures_never_promote() {
        let mut rungs = vec![
            rung(&[(0, 0.1), (1, 0.2), (2, 0.3), (3, 0.4), (4, 0.5), (5, 0.6)]),
            rung(&[(5, 0.7), (4, 0.6), (9, 0.9)]),
            RungState::default(),
        ];
        rungs[0].promoted.extend([4, 5, 9]);
        rungs[1].finished[2].1 = None; // trial 9 failed at rung 1
        // Rung 1 has 3 finished: its best (trial 5) goes to rung 2 before anything else.
        assert_eq!(next_promotion(&rungs, 3), Some((5, 2)));
        rungs[1].promoted.insert(5);
        assert_eq!(next_promotion(&rungs, 3), None);
        let failed_only = vec![
            RungState {
                finished: vec![(0, None), (1, None), (2, None)],
                promoted: BTreeSet::new(),
            },
            RungState::default(),
        ];
        assert_eq!(next_promotion(&failed_only, 3), None);
    }

    #[test]
    fn ties_go_to_the_earlier_trial_and_the_rule_is_deterministic() {
        let rungs = vec![rung(&[(7, 0.5), (3, 0.5), (8, 0.5)]), RungState::default()];
        assert_eq!(next_promotion(&rungs, 3), Some((7, 1)));
        assert_eq!(next_promotion(&rungs, 3), next_promotion(&rungs.clone(), 3));
        // A single rung (no promotion possible).
        assert_eq!(next_promotion(&rungs[..1], 3), None);
    }
}
