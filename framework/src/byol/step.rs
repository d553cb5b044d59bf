//! One BYOL optimizer step as one function, [`update()`]: the online and target networks on both
//! views, the symmetric loss with the target's stop-gradient, backward, the optimizer step and
//! the target's EMA (paper, Section 3.1 and Algorithm 1). Training, `ssl bench`'s step
//! workloads, the augmentation search (through training) and the invariant tests all call it.

use super::collapse::CollapseMetrics;
use super::ema::{EmaError, TargetEma};
use super::finite::{non_finite_gradient, read_with_gradient_check};
use super::loss::{LossTerms, byol_loss};
use super::network::{OnlineNetwork, TargetNetwork};
use super::online_probe::OnlineProbe;
use super::precision::{LossScale, compute_copy, scale_gradients};
use crate::config::Precision;
use crate::encoder::Encoder;
use crate::layers::cast_to;
use crate::optim::LrSchedule;
use crate::replicas::{ReplicaError, ReplicaGroup, all_reduce_mean};
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::DType;

/// Everything a BYOL step changes: the online network (f, g, q), the target network (f, g),
/// the optimizer's state and the step counter.
pub struct ByolState<E: Encoder> {
    /// The online network, on an autodiff device.
    pub online: OnlineNetwork<E>,
    /// The target network: an EMA of the online f and g, never given gradients.
    pub target: TargetNetwork<E>,
    /// The optimizer (its state: momenta, Adam moments) for the online network.
    pub optimizer: ModuleOptimizer,
    /// Optimizer steps taken, skipped ones included: the position `k` in the learning-rate
    /// and tau schedules of the run.
    pub step: usize,
    /// The online linear probe, trained in each step on the labelled rows of view 1
    /// ([`Views::labels`]) when present ([`OnlineProbe`]); it never changes the networks.
    pub probe: Option<OnlineProbe>,
    /// The dynamic loss scale of an f16 run ([`Precision::F16`]); `None` until its first step,
    /// which starts it at [`LossScale::default`].
    pub loss_scale: Option<LossScale>,
}

impl<E: Encoder> ByolState<E> {
    /// The state at step 0: `online`, its target (an independent copy of f and g,
    /// [`OnlineNetwork::make_target`]) and a fresh `optimizer`.
    pub fn new(online: OnlineNetwork<E>, optimizer: ModuleOptimizer) -> Self {
        let target = online.make_target();
        Self {
            online,
            target,
            optimizer,
            step: 0,
            probe: None,
            loss_scale: None,
        }
    }

    /// Passes over optimizer step `step` without an update (a skipped faulty step): the
    /// networks and the optimizer are unchanged, the schedules move on.
    pub fn skip_step(&mut self) {
        self.step += 1;
    }
}

/// What [`update`] needs besides the state: the schedules of the run and how the step is cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSchedules {
    /// The learning rate of each optimizer step.
    pub lr: LrSchedule,
    /// tau of each optimizer step, and the EMA update.
    pub ema: TargetEma,
    /// Micro-batches whose gradients make one optimizer step (gradient accumulation; 1 for
    /// none). The loss of each is divided by this count, so the step's gradient is the mean.
    pub accumulation: usize,
    /// The type of the forward and backward passes ([`crate::byol::precision`]).
    pub precision: Precision,
}

/// The two views of one micro-batch, on the autodiff device: `[batch, ...]` each, the
/// modality's input.
pub struct Views<I> {
    /// View 1 (the paper's `v`).
    pub view1: I,
    /// View 2 (the paper's `v'`).
    pub view2: I,
    /// The label of each sample for the online probe (`None`: unlabelled); empty when there is
    /// no probe.
    pub labels: Vec<Option<usize>>,
}

/// The loss of an optimizer step, read back to the host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLoss {
    /// The BYOL loss (both directions summed, in `[0, 8]`), the mean over the micro-batches.
    pub total: f64,
    /// Online(view 1) -> target(view 2), the mean over the micro-batches.
    pub view1_to_view2: f64,
    /// Online(view 2) -> target(view 1), the mean over the micro-batches.
    pub view2_to_view1: f64,
}

/// What one call of [`update`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    /// The optimizer step and the EMA ran; `state.step` moved on by one.
    Updated {
        /// The step's loss.
        loss: StepLoss,
        /// The learning rate used.
        lr: f64,
        /// The EMA rate used.
        tau: f64,
        /// The collapse metrics of the last micro-batch's online projections of view 1
        /// ([`CollapseMetrics`]), when asked for.
        collapse: Option<CollapseMetrics>,
    },
    /// f16 only: the scaled gradients overflowed (an infinity or NaN in some gradient while the
    /// loss was finite; the step's later micro-batches are only drawn). No optimizer step and
    /// no EMA, the loss scale was halved (to `scale`) and `state.step` moved on by one, so the
    /// schedules go on (as PyTorch's `GradScaler` does). Deterministic: a resumed run
    /// overflows at the same steps.
    Overflow {
        /// The loss of the micro-batches computed (finite).
        loss: StepLoss,
        /// The learning rate the step would have used.
        lr: f64,
        /// The EMA rate the step would have used.
        tau: f64,
        /// The loss scale from now on.
        scale: f64,
        /// The collapse metrics, when asked for.
        collapse: Option<CollapseMetrics>,
    },
    /// A loss term or a gradient was NaN or infinite: no optimizer step and no EMA (the
    /// parameters and `state.step` are unchanged; BatchNorm running statistics may have seen
    /// the faulty batch). The caller decides: stop, [`ByolState::skip_step`], or roll back.
    Fault {
        /// Which term: a loss direction with its value, or the parameter whose gradient it is.
        what: String,
        /// The learning rate the step would have used.
        lr: f64,
        /// The EMA rate the step would have used.
        tau: f64,
        /// The collapse metric, when asked for and computed before the fault was seen (a
        /// non-finite loss of the last micro-batch).
        collapse: Option<CollapseMetrics>,
    },
}

impl StepOutcome {
    /// The learning rate of the step.
    pub fn lr(&self) -> f64 {
        match self {
            StepOutcome::Updated { lr, .. }
            | StepOutcome::Overflow { lr, .. }
            | StepOutcome::Fault { lr, .. } => *lr,
        }
    }

    /// The EMA rate of the step.
    pub fn tau(&self) -> f64 {
        match self {
            StepOutcome::Updated { tau, .. }
            | StepOutcome::Overflow { tau, .. }
            | StepOutcome::Fault { tau, .. } => *tau,
        }
    }

    /// The collapse metrics, when computed.
    pub fn collapse(&self) -> Option<CollapseMetrics> {
        match self {
            StepOutcome::Updated { collapse, .. }
            | StepOutcome::Overflow { collapse, .. }
            | StepOutcome::Fault { collapse, .. } => *collapse,
        }
    }
}

/// One BYOL optimizer step (paper, Algorithm 1): for each of `schedules.accumulation`
/// micro-batches drawn from `micro_batches`, the online network `q(g(f(.)))` and the target
/// network `g'(f'(.))` on both views, the symmetric loss [`byol_loss`] (target detached),
/// backward; then the optimizer step on the mean gradient with the learning rate of step
/// `state.step`, then `target <- tau * target + (1 - tau) * online` with the tau of that step
/// ([`TargetEma::update`]). The loss terms and the scan of the gradients for NaN and infinities
/// come back to the host in one read per micro-batch (after backward; on a GPU, where a read
/// waits for the queued work, one wait per micro-batch), before the optimizer runs; a fault drains the step's remaining
/// micro-batches (so the data stays aligned) and updates nothing.
///
/// With `state.probe` and labels in the views, the online probe scores and then learns each
/// micro-batch's view-1 representations, detached ([`OnlineProbe::observe`]), once the step is
/// known to update (a faulty step shows it nothing). Under data parallelism the
/// representations and labels of every rank are gathered, so each rank's probe learns the
/// global batch and the probes stay equal.
///
/// `collapse_metric`: also compute the [`CollapseMetrics`] of the last micro-batch (host reads;
/// the trainer asks at its logging interval), over every rank's rows.
///
/// `schedules.precision`: in bf16 or f16 each micro-batch's forward and backward passes run on
/// half-precision copies of the networks ([`compute_copy`]) whose gradients land, in f32, on
/// the f32 parameters; the loss terms, the collapse metric and the probe's representations are
/// f32. With f16 the loss is multiplied by `state.loss_scale` before backward and the
/// gradients divided by it; gradients that overflow give [`StepOutcome::Overflow`] (unless
/// the scale is already at [`LossScale::MIN`]: then a fault).
///
/// `replicas`: the ranks of a data-parallel run, each calling `update` with its shard of the
/// global batch ([`crate::replicas`]). With several ranks the loss terms are averaged over them
/// before the fault check (every rank decides alike), BatchNorm uses the global batch's
/// statistics when `replicas.sync_batch_norm` (forward and backward), and the step's gradient
/// is the mean over the ranks ([`all_reduce_mean`]), checked for NaN and infinities once after
/// the reduction. With one rank nothing is exchanged.
///
/// # Errors
/// The first error `micro_batches` yields (`Err(L)`), `Ok` otherwise; an iterator that ends
/// before `schedules.accumulation` micro-batches is an [`UpdateError::MissingBatches`]; an
/// [`UpdateError::Ema`] when the networks do not correspond; an [`UpdateError::Replicas`] when
/// a collective fails; an [`UpdateError::MixedPrecision`] for a half precision and an encoder
/// that does not declare [`Encoder::mixed_precision`]. On an error the state is lost: each is
/// fatal to a run.
pub fn update<E: Encoder, L>(
    state: ByolState<E>,
    micro_batches: impl Iterator<Item = Result<Views<E::Input>, L>>,
    schedules: &StepSchedules,
    collapse_metric: bool,
    replicas: &ReplicaGroup,
) -> Result<(ByolState<E>, StepOutcome), UpdateError<L>> {
    let data_parallel = replicas.ranks() > 1;
    let ByolState {
        online,
        target,
        mut optimizer,
        step,
        mut probe,
        mut loss_scale,
    } = state;
    let half = schedules.precision.half_dtype();
    if half.is_some() && !online.encoder.mixed_precision() {
        return Err(UpdateError::MixedPrecision(schedules.precision));
    }
    let scale = if schedules.precision.scales_loss() {
        loss_scale.get_or_insert_default().scale
    } else {
        1.0
    };
    // f16: non-finite gradients are an overflow of the scaled gradients (the scale backs
    // off), except at the smallest scale.
    let backs_off = schedules.precision.scales_loss() && scale > LossScale::MIN;
    // The scaled gradients of this step overflowed.
    let mut overflow = false;
    let accumulation = schedules.accumulation.max(1);
    let lr = schedules.lr.at(step);
    let tau = schedules.ema.tau(step);
    let mut accumulator = GradientsAccumulator::<OnlineNetwork<E>>::new();
    let mut loss = StepLoss {
        total: 0.0,
        view1_to_view2: 0.0,
        view2_to_view1: 0.0,
    };
    let mut collapse = None;
    // The fault of this step, if any: its later micro-batches are only drawn.
    let mut fault: Option<String> = None;
    // Each micro-batch's view-1 representations and labels for the online probe.
    let mut probe_batches: Vec<(Tensor<2>, Vec<Option<usize>>)> = Vec::new();
    let mut micro_batches = micro_batches.take(accumulation);
    for micro in 1..=accumulation {
        let mut views = micro_batches
            .next()
            .ok_or(UpdateError::MissingBatches {
                expected: accumulation,
                got: micro - 1,
            })?
            .map_err(UpdateError::Batch)?;
        if fault.is_some() || overflow {
            continue;
        }
        let labels = std::mem::take(&mut views.labels);
        let (terms, projection, representation) =
            replicas.batch_norm_scope(|| forward(&online, &target, views, half));
        if collapse_metric && micro == accumulation {
            // Over the global batch: a rank's shard alone would cap the effective rank.
            let projection = replicas
                .gather_rows(projection)
                .map_err(UpdateError::Replicas)?;
            collapse = Some(CollapseMetrics::of(projection));
        }
        // Backward before anything is read, so that the loss terms and the gradient check
        // come to the host in one transfer (on a GPU, one wait for the queued work); with
        // several ranks the gradients are checked once reduced, below.
        let both_terms = Tensor::cat(
            vec![
                terms.view1_to_view2.clone().detach(),
                terms.view2_to_view1.clone().detach(),
            ],
            0,
        );
        let total = terms.total();
        let total = if scale != 1.0 {
            // f16: the loss scale, with the accumulation's mean.
            total.mul_scalar(scale / accumulation as f64)
        } else if accumulation > 1 {
            total.div_scalar(accumulation as f64)
        } else {
            total
        };
        let grads =
            replicas.batch_norm_scope(|| GradientsParams::from_grads(total.backward(), &online));
        let (read, bad_gradient) =
            read_with_gradient_check(both_terms, (!data_parallel).then_some((&online, &grads)));
        let (mut v12, mut v21) = (read[0], read[1]);
        if data_parallel {
            // The global batch's loss: the mean of the ranks' (equal shards).
            let mut both = [v12 as f64, v21 as f64];
            replicas
                .mean_f64(&mut both)
                .map_err(UpdateError::Replicas)?;
            (v12, v21) = (both[0] as f32, both[1] as f32);
        }
        if !v12.is_finite() {
            fault = Some(format!("loss {v12} of online(view 1) -> target(view 2)"));
            continue;
        }
        if !v21.is_finite() {
            fault = Some(format!("loss {v21} of online(view 2) -> target(view 1)"));
            continue;
        }
        if let Some(param) = bad_gradient {
            if !backs_off {
                fault = Some(format!("gradient of {param}"));
                continue;
            }
            // The loss of the micro-batches computed, for the log.
            overflow = true;
            let done = micro as f64;
            loss = StepLoss {
                total: (loss.total * accumulation as f64 + (v12 + v21) as f64) / done,
                view1_to_view2: (loss.view1_to_view2 * accumulation as f64 + v12 as f64) / done,
                view2_to_view1: (loss.view2_to_view1 * accumulation as f64 + v21 as f64) / done,
            };
            continue;
        }
        if probe.is_some() && !labels.is_empty() {
            // Shown to the probe once the step is known to update (a faulty step is not).
            // Under data parallelism every rank's probe sees the global batch, so the probes
            // stay equal and the accuracy is the global batch's.
            let (rows, labels) = if data_parallel {
                let rows = replicas
                    .gather_rows(representation)
                    .map_err(UpdateError::Replicas)?;
                let codes: Vec<f64> = labels
                    .iter()
                    .map(|l| l.map_or(-1.0, |c| c as f64))
                    .collect();
                let all = replicas
                    .gather(&codes, "online probe labels")
                    .map_err(UpdateError::Replicas)?;
                let labels = all
                    .into_iter()
                    .map(|c| (c >= 0.0).then_some(c as usize))
                    .collect();
                (rows, labels)
            } else {
                (representation, labels)
            };
            probe_batches.push((rows, labels));
        }
        loss.total += (v12 + v21) as f64 / accumulation as f64;
        loss.view1_to_view2 += v12 as f64 / accumulation as f64;
        loss.view2_to_view1 += v21 as f64 / accumulation as f64;
        accumulator.accumulate(&online, grads);
    }
    let mut grads = accumulator.grads();
    if data_parallel && fault.is_none() && !overflow {
        grads = all_reduce_mean(&online, grads, replicas).map_err(UpdateError::Replicas)?;
        if let Some(param) = non_finite_gradient(&online, &grads) {
            if backs_off {
                overflow = true;
            } else {
                fault = Some(format!("gradient of {param} (the mean over the ranks)"));
            }
        }
    }
    let state = |online, target, optimizer, step, probe, loss_scale| ByolState {
        online,
        target,
        optimizer,
        step,
        probe,
        loss_scale,
    };
    if let Some(what) = fault {
        return Ok((
            state(online, target, optimizer, step, probe, loss_scale),
            StepOutcome::Fault {
                what,
                lr,
                tau,
                collapse,
            },
        ));
    }
    if overflow {
        let scaler = loss_scale.as_mut().expect("an f16 step has a loss scale");
        scaler.after_overflow();
        let scale = scaler.scale;
        return Ok((
            state(online, target, optimizer, step + 1, probe, loss_scale),
            StepOutcome::Overflow {
                loss,
                lr,
                tau,
                scale,
                collapse,
            },
        ));
    }
    if let Some(scaler) = loss_scale
        .as_mut()
        .filter(|_| schedules.precision.scales_loss())
    {
        if scale != 1.0 {
            grads = scale_gradients(&online, grads, 1.0 / scale);
        }
        scaler.after_success();
    }
    if let Some(p) = probe.as_mut() {
        for (rows, labels) in probe_batches {
            p.observe(rows, &labels);
        }
    }
    let online = optimizer.step(lr, online, grads);
    let (target, tau) = schedules
        .ema
        .update(target, &online, step)
        .map_err(UpdateError::Ema)?;
    Ok((
        state(online, target, optimizer, step + 1, probe, loss_scale),
        StepOutcome::Updated {
            loss,
            lr,
            tau,
            collapse,
        },
    ))
}

/// Why [`update`] could not finish a step.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError<L> {
    /// The micro-batch source failed (a data worker's error).
    #[error(transparent)]
    Batch(L),
    /// The micro-batch source ended inside a step.
    #[error("the data ended inside an optimizer step: {got} of {expected} micro-batches")]
    MissingBatches {
        /// Micro-batches per step.
        expected: usize,
        /// Micro-batches received.
        got: usize,
    },
    /// The target and online networks do not correspond.
    #[error(transparent)]
    Ema(EmaError),
    /// A collective between the ranks failed.
    #[error(transparent)]
    Replicas(ReplicaError),
    /// Mixed precision for an encoder that does not declare [`Encoder::mixed_precision`].
    #[error(
        "train.precision = \"{}\": the encoder computes in f32 only (it does not declare Encoder::mixed_precision)",
        .0.name()
    )]
    MixedPrecision(Precision),
}

/// The online network on both views and the target network on both views, then the loss
/// terms; also the online projection of view 1, `[batch, projection_dim]` (for the collapse
/// metric), and its representation, `[batch, encoder dim]` (for the online probe). With
/// `half`, the networks run as half-precision copies ([`compute_copy`]); the loss and both
/// outputs are f32 either way.
fn forward<E: Encoder>(
    online: &OnlineNetwork<E>,
    target: &TargetNetwork<E>,
    views: Views<E::Input>,
    half: Option<burn::tensor::FloatDType>,
) -> (LossTerms, Tensor<2>, Tensor<2>) {
    let copies;
    let (online, target) = match half {
        None => (online, target),
        Some(dtype) => {
            copies = (compute_copy(online, dtype), compute_copy(target, dtype));
            (&copies.0, &copies.1)
        }
    };
    let f32 = |x: Tensor<2>| cast_to(x, DType::F32);
    let Views { view1, view2, .. } = views;
    let o1 = online.forward(view1.clone());
    let o2 = online.forward(view2.clone());
    let z1 = target.forward(view1);
    let z2 = target.forward(view2);
    (
        byol_loss(f32(o1.prediction), f32(o2.prediction), f32(z1), f32(z2)),
        f32(o1.projection),
        f32(o1.representation),
    )
}
