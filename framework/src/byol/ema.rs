//! The target update `target <- tau * target + (1 - tau) * online` (paper, Equation 1).

use super::network::{OnlineNetwork, TargetNetwork};
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
