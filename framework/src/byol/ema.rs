//! The target network's exponential moving average: tau's schedule over the run and the update
//! `target <- tau * target + (1 - tau) * online` (paper, Section 3.1, Equation 1 and Section
//! 3.2), in one type, [`TargetEma`].

use super::network::{OnlineNetwork, TargetNetwork};
use crate::config::{ByolConfig, TauSchedule};
use crate::encoder::Encoder;
use burn::module::{ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use std::collections::{HashMap, HashSet};

/// The target and online networks do not correspond parameter for parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "EMA: {updated} target parameters matched the online network's {expected}, {unmatched} target parameters have no online twin"
)]
pub struct EmaError {
    /// Parameters updated.
    pub updated: usize,
    /// Trainable online parameters in f and g.
    pub expected: usize,
    /// Target parameters that match nothing.
    pub unmatched: usize,
}

/// Collects the online network's trainable tensors (flattened) and the ids of its buffers
/// (BatchNorm running statistics).
#[derive(Default)]
struct Collect {
    trainable: HashMap<ParamId, Tensor<1>>,
    buffers: HashSet<ParamId>,
}

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if value.is_require_grad() {
            self.trainable
                .insert(param.id, value.detach().flatten::<1>(0, D - 1));
        } else {
            self.buffers.insert(param.id);
        }
    }
}

struct Blend<'a> {
    online: &'a HashMap<ParamId, Tensor<1>>,
    buffers: &'a HashSet<ParamId>,
    tau: f64,
    updated: usize,
    unmatched: usize,
}

impl ModuleMapper for Blend<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if let Some(online) = self.online.get(&param.id) {
            self.updated += 1;
            let online = online.clone();
            let tau = self.tau;
            param.map(|t| {
                let shape = t.shape();
                (t.mul_scalar(tau) + online.reshape(shape).mul_scalar(1.0 - tau)).detach()
            })
        } else {
            // The target keeps its own BatchNorm running statistics (the paper's target runs
            // BatchNorm in training mode on its own batches).
            if !self.buffers.contains(&param.id) {
                self.unmatched += 1;
            }
            param
        }
    }
}

/// Moves every parameter of the target's f and g towards its online twin:
/// `target <- tau * target + (1 - tau) * online` (call once per optimizer step). BatchNorm
/// running statistics are not parameters and are left as the target's own. Twins are matched
/// by `ParamId`, which [`OnlineNetwork::make_target`] preserves.
///
/// # Errors
/// [`EmaError`] when the two networks do not correspond (a target not made by `make_target`).
pub fn ema_update<E: Encoder>(
    target: TargetNetwork<E>,
    online: &OnlineNetwork<E>,
    tau: f64,
) -> Result<TargetNetwork<E>, EmaError> {
    let mut collect = Collect::default();
    online.encoder.visit(&mut collect);
    online.projector.visit(&mut collect);
    let expected = collect.trainable.len();
    let mut blend = Blend {
        online: &collect.trainable,
        buffers: &collect.buffers,
        tau,
        updated: 0,
        unmatched: 0,
    };
    let target = target.map(&mut blend);
    if blend.updated != expected || blend.unmatched != 0 {
        return Err(EmaError {
            updated: blend.updated,
            expected,
            unmatched: blend.unmatched,
        });
    }
    Ok(target)
}

/// `tau(k) = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2` for optimizer step `k` of `K` in the
/// whole run (not per epoch; paper, Section 3.2). `tau(0) = tau_base`, `tau(K) = 1`; `k > K`
/// is clamped; `K = 0` gives 1.
pub fn tau_at(tau_base: f64, step: usize, total_steps: usize) -> f64 {
    if total_steps == 0 {
        return 1.0;
    }
    let progress = (step.min(total_steps) as f64) / (total_steps as f64);
    1.0 - (1.0 - tau_base) * ((std::f64::consts::PI * progress).cos() + 1.0) / 2.0
}

/// The target network's EMA over one run: which tau each optimizer step uses, and the update
/// that applies it. Called once per optimizer step (gradient accumulation counts as one step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetEma {
    /// The base rate tau_base (paper: 0.996).
    pub tau_base: f64,
    /// Cosine from `tau_base` to 1 over the run (the paper), or constant `tau_base`.
    pub schedule: TauSchedule,
    /// Optimizer steps in the whole run (`K`).
    pub total_steps: usize,
}

impl TargetEma {
    /// The EMA configured by `cfg` (`byol.tau_base`, `byol.tau_schedule`) over a run of
    /// `total_steps` optimizer steps.
    pub fn new(cfg: &ByolConfig, total_steps: usize) -> Self {
        Self {
            tau_base: cfg.tau_base,
            schedule: cfg.tau_schedule,
            total_steps,
        }
    }

    /// A constant rate `tau` (the paper's Table 5a ablation; the benchmark workloads).
    pub fn constant(tau: f64) -> Self {
        Self {
            tau_base: tau,
            schedule: TauSchedule::Constant,
            total_steps: 0,
        }
    }

    /// tau at optimizer step `step` (0-based): [`tau_at`] for the cosine schedule, `tau_base`
    /// for the constant one.
    pub fn tau(&self, step: usize) -> f64 {
        match self.schedule {
            TauSchedule::Cosine => tau_at(self.tau_base, step, self.total_steps),
            TauSchedule::Constant => self.tau_base,
        }
    }

    /// Moves the target towards the online network with the tau of optimizer step `step`
    /// ([`ema_update`]); returns the new target and the tau used.
    ///
    /// # Errors
    /// [`EmaError`] when the two networks do not correspond.
    pub fn update<E: Encoder>(
        &self,
        target: TargetNetwork<E>,
        online: &OnlineNetwork<E>,
        step: usize,
    ) -> Result<(TargetNetwork<E>, f64), EmaError> {
        let tau = self.tau(step);
        Ok((ema_update(target, online, tau)?, tau))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_points_and_monotone() {
        assert!((tau_at(0.996, 0, 1000) - 0.996).abs() < 1e-12);
        assert!((tau_at(0.996, 1000, 1000) - 1.0).abs() < 1e-12);
        assert!((tau_at(0.996, 500, 1000) - 0.998).abs() < 1e-12);
        assert!((tau_at(0.996, 5000, 1000) - 1.0).abs() < 1e-12);
        let mut prev = 0.0;
        for k in 0..=100 {
            let t = tau_at(0.9, k, 100);
            assert!(t >= prev);
            prev = t;
        }
    }

    #[test]
    fn schedules() {
        let cosine = TargetEma {
            tau_base: 0.99,
            schedule: TauSchedule::Cosine,
            total_steps: 10,
        };
        assert_eq!(cosine.tau(0), 0.99);
        assert_eq!(cosine.tau(10), 1.0);
        assert_eq!(cosine.tau(3), tau_at(0.99, 3, 10));
        let constant = TargetEma::constant(0.9);
        assert_eq!(constant.tau(0), 0.9);
        assert_eq!(constant.tau(1_000_000), 0.9);
    }
}
