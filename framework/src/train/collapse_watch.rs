//! Watching the collapse metrics while training ([`CollapseMetrics`], logged every
//! `train.log_every` steps) and warning, once per kind, when the representation is collapsing:
//! - **complete collapse**: the std of the normalized projections below
//!   [`COLLAPSE_THRESHOLD`] / sqrt(projection_dim) (the run is then flagged `collapsed`);
//! - **shrinking spread**: that std below [`LOW_STD_FRACTION`] / sqrt(projection_dim) for
//!   [`STREAK`] logged steps in a row (the no-predictor ablation, Table 5b of the paper);
//! - **dimensional collapse**: the effective rank (RankMe) below [`LOW_RANK_FRACTION`] of
//!   `min(batch, projection_dim)` for [`STREAK`] logged steps (e.g. AdamW at a LARS-sized rate).
//!
//! The thresholds come from measured runs of the default vision config on CIFAR-10 (small CNN,
//! projection 128, batch 128; README, "When a run fails"): healthy, std 0.072-0.078 (0.81-0.88
//! of 1/sqrt(128)) and rank 36-65 (0.28-0.51); no predictor, std 0.0264 at step 40 and 0.0145
//! at step 90 (0.30 and 0.16); AdamW at lr 0.2, rank 3.5-7.3 (0.03-0.06) from step 10 on.

use super::results::{COLLAPSE_THRESHOLD, collapse_floor};
use crate::byol::CollapseMetrics;

/// A spread below this many times `1 / sqrt(projection_dim)` is warned about.
pub const LOW_STD_FRACTION: f64 = 0.3;

/// An effective rank below this fraction of its maximum is warned about.
pub const LOW_RANK_FRACTION: f64 = 0.1;

/// Logged steps in a row a partial-collapse sign must last before it is warned about.
pub const STREAK: usize = 2;

/// The state of the watch over one run.
#[derive(Debug, Clone)]
pub struct CollapseWatch {
    projection_dim: usize,
    low_std: usize,
    low_rank: usize,
    warned_collapsed: bool,
    warned_std: bool,
    warned_rank: bool,
    /// Every warning given so far, in order.
    pub warnings: Vec<String>,
}

impl CollapseWatch {
    /// A watch for projections of `projection_dim` values.
    pub fn new(projection_dim: usize) -> Self {
        Self {
            projection_dim,
            low_std: 0,
            low_rank: 0,
            warned_collapsed: false,
            warned_std: false,
            warned_rank: false,
            warnings: Vec::new(),
        }
    }

    /// Whether `m` counts as complete collapse.
    pub fn collapsed(&self, m: &CollapseMetrics) -> bool {
        m.std < collapse_floor(self.projection_dim)
    }

    /// Takes the metrics logged after optimizer step `step`; returns the warnings they raise
    /// (each kind at most once per run), also kept in [`warnings`](Self::warnings).
    pub fn observe(&mut self, step: usize, m: &CollapseMetrics) -> Vec<String> {
        let unit = 1.0 / (self.projection_dim as f64).sqrt();
        let mut out = Vec::new();
        if self.collapsed(m) && !self.warned_collapsed {
            self.warned_collapsed = true;
            out.push(format!(
                "representation collapse at step {step}: std of the normalized projections {:.5} < {:.5} ({COLLAPSE_THRESHOLD} / sqrt(projection_dim)); the outputs no longer depend on the input",
                m.std,
                collapse_floor(self.projection_dim)
            ));
        }
        self.low_std = if m.std < LOW_STD_FRACTION * unit {
            self.low_std + 1
        } else {
            0
        };
        if self.low_std >= STREAK && !self.warned_std && !self.warned_collapsed {
            self.warned_std = true;
            out.push(format!(
                "the representation is collapsing at step {step}: std of the normalized projections {:.4} < {:.4} ({LOW_STD_FRACTION} / sqrt(projection_dim); about {unit:.4} when spread) for {STREAK} logged steps; check byol.predictor, byol.tau_base and the learning rate",
                m.std,
                LOW_STD_FRACTION * unit
            ));
        }
        self.low_rank = if m.rank_fraction() < LOW_RANK_FRACTION {
            self.low_rank + 1
        } else {
            0
        };
        if self.low_rank >= STREAK && !self.warned_rank {
            self.warned_rank = true;
            out.push(format!(
                "dimensional collapse at step {step}: the projections' effective rank (RankMe) is {:.1} of at most {} ({:.0}%, below {:.0}%) for {STREAK} logged steps: the outputs span few directions; check the optimizer and learning rate (AdamW wants about 1e-3), byol.predictor and byol.tau_base",
                m.rank,
                m.max_rank,
                m.rank_fraction() * 100.0,
                LOW_RANK_FRACTION * 100.0
            ));
        }
        self.warnings.extend(out.iter().cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(std: f64, rank: f64) -> CollapseMetrics {
        CollapseMetrics {
            std,
            rank,
            max_rank: 128,
        }
    }

    /// The measured runs of the module's documentation, logged every 10 steps.
    #[test]
    fn thresholds_separate_the_measured_runs() {
        let healthy = [
            (0.0718, 65.3),
            (0.0721, 61.2),
            (0.0751, 46.5),
            (0.0779, 35.7),
            (0.0763, 39.4),
        ];
        let mut w = CollapseWatch::new(128);
        for (i, (s, r)) in healthy.iter().enumerate() {
            assert!(w.observe(10 * (i + 1), &m(*s, *r)).is_empty());
        }
        let adamw = [(0.0488, 6.6), (0.0441, 4.2), (0.0418, 3.5)];
        let mut w = CollapseWatch::new(128);
        let said: Vec<Vec<String>> = adamw
            .iter()
            .enumerate()
            .map(|(i, (s, r))| w.observe(10 * (i + 1), &m(*s, *r)))
            .collect();
        assert!(said[0].is_empty());
        assert_eq!(said[1].len(), 1);
        assert!(
            said[1][0].contains("dimensional collapse at step 20"),
            "{said:?}"
        );
        assert!(said[2].is_empty(), "warned once");
        let no_predictor = [
            (0.0659, 63.9),
            (0.0444, 53.2),
            (0.0314, 41.9),
            (0.0264, 31.1),
            (0.0219, 24.4),
        ];
        let mut w = CollapseWatch::new(128);
        let mut first = None;
        for (i, (s, r)) in no_predictor.iter().enumerate() {
            if !w.observe(10 * (i + 1), &m(*s, *r)).is_empty() && first.is_none() {
                first = Some(10 * (i + 1));
            }
        }
        assert_eq!(first, Some(50));
        assert!(w.warnings[0].contains("collapsing"), "{:?}", w.warnings);
        // Complete collapse is said at once, and not doubled by the spread warning.
        let mut w = CollapseWatch::new(128);
        assert_eq!(w.observe(10, &m(1e-4, 1.0)).len(), 1);
        assert!(w.collapsed(&m(1e-4, 1.0)));
        let later = w.observe(20, &m(1e-4, 1.0));
        assert_eq!(later.len(), 1);
        assert!(later[0].contains("dimensional"), "{later:?}");
    }
}
