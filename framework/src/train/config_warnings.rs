//! Settings that are valid but known mistakes: printed when a run starts and recorded in
//! `results.json` (`"warnings"`), so that a run that was going to learn nothing says so before
//! it spends the time.

use crate::config::{ExperimentConfig, OptimizerKind};
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
    let mut out = Vec::new();
    let tau = cfg.byol.tau_base;
    if tau < TAU_BASE_LIMIT {
        out.push(format!(
            "byol.tau_base = {tau} makes the target network follow the online network almost at once; tau_base is the EMA's keep rate (paper: 0.996): written as 1 - tau, {tau} would mean {}",
            1.0 - tau
        ));
    }
    let global_batch = cfg.train.batch_size * cfg.train.accumulation_steps;
    let peak = peak_lr(cfg.optim.base_lr, global_batch, cfg.optim.scale_lr_by_batch);
    if cfg.optim.optimizer == OptimizerKind::Adamw && peak > ADAM_LR_LIMIT {
        out.push(format!(
            "optim.base_lr = {} gives AdamW a peak learning rate of {peak:.3} (global batch {global_batch}), above {ADAM_LR_LIMIT}: a LARS/SGD-sized rate; AdamW usually wants 1e-4 to 3e-3",
            cfg.optim.base_lr
        ));
    }
    out
}
