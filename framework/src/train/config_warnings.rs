//! Settings that are valid but known mistakes: printed when a run starts and recorded in
//! `results.json` (`"warnings"`), so that a run that was going to learn nothing says so before
//! it spends the time.

use crate::config::{ByolConfig, ExperimentConfig, OptimConfig, OptimizerKind, TrainConfig};
use crate::modality::Modality;
use crate::optim::peak_lr;

/// Below this `byol.tau_base` the value is taken for the `1 - tau` convention.
pub const TAU_BASE_LIMIT: f64 = 0.5;

/// Above this peak learning rate AdamW is warned about.
pub const ADAM_LR_LIMIT: f64 = 1e-2;

/// One sentence per known mistake in `cfg`, each naming the key:
/// - `byol.tau_base` below [`TAU_BASE_LIMIT`]: tau is the EMA's keep rate (paper: 0.996,
///   Section 3.2); some papers and configs write `1 - tau`, so 0.01 probably meant 0.99;
/// - AdamW at a peak learning rate above [`ADAM_LR_LIMIT`]: a LARS- or SGD-sized rate (the
///   paper's 0.2 x batch / 256 is for LARS); measured here, AdamW at 0.2 drove BYOL to a
///   representation worse than the random-init encoder's (README, "When a run fails").
pub fn config_warnings<M: Modality>(cfg: &ExperimentConfig<M>) -> Vec<String> {
    warnings_of(&cfg.byol, &cfg.optim, &cfg.train)
}

/// [`config_warnings`] of the sections it reads.
fn warnings_of(byol: &ByolConfig, optim: &OptimConfig, train: &TrainConfig) -> Vec<String> {
    let mut out = Vec::new();
    let tau = byol.tau_base;
    if tau < TAU_BASE_LIMIT {
        out.push(format!(
            "byol.tau_base = {tau} makes the target network follow the online network almost at once; tau_base is the EMA's keep rate (paper: 0.996): written as 1 - tau, {tau} would mean {}",
            1.0 - tau
        ));
    }
    let global_batch = train.batch_size * train.accumulation_steps;
    let peak = peak_lr(optim.base_lr, global_batch, optim.scale_lr_by_batch);
    if optim.optimizer == OptimizerKind::Adamw && peak > ADAM_LR_LIMIT {
        out.push(format!(
            "optim.base_lr = {} gives AdamW a peak learning rate of {peak:.3} (global batch {global_batch}), above {ADAM_LR_LIMIT}: a LARS/SGD-sized rate; AdamW usually wants 1e-4 to 3e-3",
            optim.base_lr
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TauSchedule;

    fn warns(tau: f64, optimizer: OptimizerKind, base_lr: f64, scale: bool) -> Vec<String> {
        // The checks read only [byol], [optim] and [train]: a shape of them is enough.
        let byol = ByolConfig {
            tau_base: tau,
            tau_schedule: TauSchedule::Cosine,
            ..Default::default()
        };
        let optim = OptimConfig {
            optimizer,
            base_lr,
            scale_lr_by_batch: scale,
            ..Default::default()
        };
        let train = TrainConfig {
            batch_size: 128,
            ..Default::default()
        };
        warnings_of(&byol, &optim, &train)
    }

    #[test]
    fn known_mistakes_and_only_them() {
        assert!(warns(0.99, OptimizerKind::Lars, 1.0, true).is_empty());
        assert!(warns(0.996, OptimizerKind::Adamw, 2e-3, false).is_empty());
        assert!(warns(0.5, OptimizerKind::Sgd, 0.5, false).is_empty());
        let w = warns(0.01, OptimizerKind::Lars, 1.0, true);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].starts_with("byol.tau_base = 0.01") && w[0].contains("mean 0.99"),
            "{w:?}"
        );
        // AdamW at 0.2 scaled by batch 128 / 256: a peak of 0.1.
        let w = warns(0.99, OptimizerKind::Adamw, 0.2, true);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("peak learning rate of 0.100"), "{w:?}");
        // The peak counts, not the base: 0.015 scaled by 128 / 256 is 0.0075.
        assert!(warns(0.99, OptimizerKind::Adamw, 0.015, true).is_empty());
        assert_eq!(warns(0.01, OptimizerKind::Adamw, 0.2, false).len(), 2);
    }
}
