//! Mixed precision for the BYOL step (`train.precision`, [`Precision`]): the forward and
//! backward passes in bf16 or f16 over f32 master weights, and dynamic loss scaling for f16.
//!
//! How the step uses it ([`crate::byol::update()`]):
//! - For each micro-batch, [`compute_copy`] makes a copy of the online and target networks whose
//!   trainable float parameters are cast to the half type. The cast is an autodiff op, so the
//!   backward pass casts each parameter's gradient back to f32 onto the f32 master parameter:
//!   the optimizer, its state, the EMA of the target and the checkpoints only ever see f32.
//! - Normalization layers keep their f32 parameters, and their BatchNorm running statistics
//!   are the master's own (the same cells): [`crate::layers`] runs BatchNorm and LayerNorm in
//!   f32 on a half input and casts the result back, convolutions and linear layers cast their
//!   input to their weight's type, and the encoders pool and the loss is computed in f32
//!   (the split of PyTorch's autocast: matrix products in the half type, reductions in f32).
//! - With f16, whose largest value is 65504 and smallest normal 6.1e-5, small gradients
//!   flush to zero: the loss is multiplied by [`LossScale::scale`] before backward and the
//!   f32 gradients divided by it after. A step whose scaled gradients overflowed is skipped
//!   (no optimizer step, no EMA) and the scale halved; after [`LossScale::GROWTH_INTERVAL`]
//!   steps in a row without overflow it doubles (Micikevicius et al. 2018, "Mixed Precision
//!   Training", Section 3.2; the defaults of PyTorch's `GradScaler`).

use crate::config::{ConfigError, Precision};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use serde::{Deserialize, Serialize};

impl Precision {
    /// The half type the step computes in, or `None` for f32.
    pub fn half_dtype(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
            Precision::F16 => Some(FloatDType::F16),
        }
    }

    /// Whether the step scales the loss ([`LossScale`]): f16 only.
    pub fn scales_loss(self) -> bool {
        self == Precision::F16
    }

    /// Checks that `device` computes in this precision's type (storage, conversion and
    /// arithmetic: [`Device::supports_dtype`]).
    ///
    /// # Errors
    /// [`ConfigError::Value`] for `train.precision` naming the precisions the device takes,
    /// e.g. bf16 on a Vulkan device (WGSL and SPIR-V have no bf16 arithmetic).
    pub fn check_device(self, device: &Device) -> Result<(), ConfigError> {
        let Some(dtype) = self.half_dtype() else {
            return Ok(());
        };
        if device.supports_dtype(dtype) {
            return Ok(());
        }
        let takes: Vec<&str> = [Precision::F32, Precision::Bf16, Precision::F16]
            .into_iter()
            .filter(|p| p.half_dtype().is_none_or(|d| device.supports_dtype(d)))
            .map(Precision::name)
            .collect();
        Err(ConfigError::value(
            "train.precision",
            self.name(),
            format!(
                "this device has no {} arithmetic; it takes {}",
                self.name(),
                takes.join(", ")
            ),
        ))
    }
}

/// The containers whose float parameters stay f32 under mixed precision: BatchNorm and
/// LayerNorm, which [`crate::layers`] runs in f32 (their statistics need f32's mantissa; their
/// running statistics are buffers shared with the f32 network). Other normalization layers
/// (GroupNorm, RmsNorm, ...) are cast with the rest and compute in the half type.
const F32_CONTAINERS: [&str; 2] = ["Struct:BatchNorm", "Struct:LayerNorm"];

/// Casts a module's float parameters to a half type, except those of [`F32_CONTAINERS`].
struct ToHalf {
    dtype: FloatDType,
    /// The container type of each module entered (the innermost last).
    containers: Vec<String>,
}

impl ModuleMapper for ToHalf {
    fn enter_module(&mut self, _name: &str, container_type: &str) {
        self.containers.push(container_type.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.containers.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        // A field's container type is the struct that holds it: `gamma` of a BatchNorm is
        // entered as ("gamma", "Struct:BatchNorm"). Running statistics come through here too
        // (written back into their shared cells), so they are returned as they are.
        let in_norm = self
            .containers
            .last()
            .is_some_and(|c| F32_CONTAINERS.contains(&c.as_str()));
        if in_norm {
            return param;
        }
        let dtype = self.dtype;
        param.map(|t| {
            if t.dtype() == DType::from(dtype) {
                t
            } else {
                t.cast(dtype)
            }
        })
    }
}

/// A copy of `module` for the forward and backward passes in `dtype`: every float parameter
/// cast to `dtype` (a tracked op on an autodiff device, so gradients reach the original f32
/// parameters, in f32), except those of normalization layers, which stay as they are;
/// BatchNorm running statistics are shared with `module` (its forward passes update them).
/// The parameter ids are kept. `module` is unchanged.
pub fn compute_copy<M: Module>(module: &M, dtype: FloatDType) -> M {
    module.clone().map(&mut ToHalf {
        dtype,
        containers: Vec::new(),
    })
}

/// The dynamic loss scale of an f16 run (see the module docs): part of the training state,
/// stored in checkpoints so that a resumed run scales as the uninterrupted one did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    /// The factor the loss is multiplied by before backward (a power of two).
    pub scale: f64,
    /// Optimizer steps since the last overflow or growth.
    pub good_steps: usize,
    /// Steps skipped for overflowing gradients, over the whole run.
    pub overflows: usize,
}

impl Default for LossScale {
    fn default() -> Self {
        Self {
            scale: Self::INITIAL,
            good_steps: 0,
            overflows: 0,
        }
    }
}

impl LossScale {
    /// The starting scale, 2^16.
    pub const INITIAL: f64 = 65536.0;
    /// Steps without overflow after which the scale doubles.
    pub const GROWTH_INTERVAL: usize = 2000;
    /// The scale never grows past 2^24, so that a long run without overflows cannot grow it
    /// without bound (an f64 would reach infinity after 2000 x 1024 good steps).
    pub const MAX: f64 = 16_777_216.0;
    /// The scale never falls below 1 / 2^24 (a run that overflows that far has non-finite
    /// activations, not small gradients; it keeps failing and the fault policy decides).
    pub const MIN: f64 = 1.0 / 16_777_216.0;

    /// After a step whose gradients overflowed: halve the scale, count it.
    pub fn after_overflow(&mut self) {
        self.scale = (self.scale * 0.5).max(Self::MIN);
        self.good_steps = 0;
        self.overflows += 1;
    }

    /// After a step whose gradients were finite: double the scale every
    /// [`Self::GROWTH_INTERVAL`] such steps in a row.
    pub fn after_success(&mut self) {
        self.good_steps += 1;
        if self.good_steps >= Self::GROWTH_INTERVAL {
            self.scale = (self.scale * 2.0).min(Self::MAX);
            self.good_steps = 0;
        }
    }
}

/// Multiplies every gradient of `module`'s parameters in `grads` by `factor` (`1 / scale` to
/// undo a loss scale).
pub fn scale_gradients<M: Module>(
    module: &M,
    grads: GradientsParams,
    factor: f64,
) -> GradientsParams {
    struct Scale {
        grads: GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    let mut v = Scale { grads, factor };
    module.visit(&mut v);
    v.grads
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_halves_on_overflow_and_doubles_after_the_growth_interval() {
        let mut s = LossScale::default();
        s.after_overflow();
        assert_eq!((s.scale, s.good_steps, s.overflows), (32768.0, 0, 1));
        for _ in 0..LossScale::GROWTH_INTERVAL - 1 {
            s.after_success();
        }
        assert_eq!(s.scale, 32768.0);
        s.after_success();
        assert_eq!((s.scale, s.good_steps), (65536.0, 0));
        // An overflow restarts the count.
        for _ in 0..10 {
            s.after_success();
        }
        s.after_overflow();
        assert_eq!((s.scale, s.good_steps, s.overflows), (32768.0, 0, 2));
    }

    #[test]
    fn the_scale_stays_within_its_bounds() {
        let mut s = LossScale {
            scale: LossScale::MAX,
            good_steps: LossScale::GROWTH_INTERVAL - 1,
            overflows: 0,
        };
        s.after_success();
        assert_eq!(s.scale, LossScale::MAX);
        s.scale = LossScale::MIN;
        s.after_overflow();
        assert_eq!(s.scale, LossScale::MIN);
    }
}
