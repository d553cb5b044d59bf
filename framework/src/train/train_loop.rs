//! The training loop: optimizer steps ([`crate::byol::update()`]) on micro-batches from the
//! seeded two-view loader, epoch after epoch, with the fault policy, the metrics log, progress
//! and periodic checkpoints.

use super::collapse_watch::CollapseWatch;
use super::fault_policy::{FaultAction, FaultPolicy};
use super::metrics::{MetricsRecord, MetricsWriter};
use super::progress::Progress;
use super::resume::{Checkpointer, load_state};
use super::stop::StopRequest;
use crate::byol::collapse::CollapseMetrics;
use crate::byol::{ByolState, StepOutcome, StepSchedules, UpdateError, Views, update};
use crate::checkpoint;
use crate::config::ExperimentConfig;
use crate::data::DataError;
use crate::data::loader::{BatchShard, StreamSkips, two_view_epoch_shard};
use crate::error::{TrainError, io_err};
use crate::modality::Modality;
use crate::replicas::{ReplicaGroup, parameter_checksum};
use burn::prelude::*;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// What the loop reads and does not change.
pub(super) struct LoopSetup<'a, M: Modality> {
    /// The modality (collation, the data's state).
    pub modality: &'a Arc<M>,
    /// The run's config.
    pub cfg: &'a ExperimentConfig<M>,
    /// The training samples.
    pub train_items: Arc<Vec<M::Item>>,
    /// The view-1 and view-2 pipelines.
    pub views: Arc<(Vec<M::Op>, Vec<M::Op>)>,
    /// Training records that could not be read when their batch was prepared.
    pub skips: Arc<StreamSkips>,
    /// Data worker threads.
    pub workers: usize,
    /// Optimizer steps per epoch.
    pub steps_per_epoch: usize,
    /// Optimizer steps of the whole run.
    pub total_steps: usize,
    /// The learning-rate and tau schedules and the accumulation.
    pub schedules: StepSchedules,
    /// The autodiff device.
    pub device: Device,
    /// Where checkpoints go.
    pub checkpointer: &'a Checkpointer,
    /// The run's output folder (for `metrics.jsonl`).
    pub out: &'a Path,
    /// Checked after every optimizer step: when set, checkpoint and stop.
    pub stop: &'a StopRequest,
    /// The data-parallel ranks (one process: a group of one).
    pub replicas: &'a ReplicaGroup,
    /// The online probe's label of each training item (`None`: unlabelled); `None` without a
    /// probe.
    pub probe_labels: Option<Arc<Vec<Option<usize>>>>,
}

/// Where the loop left off.
pub(super) struct LoopEnd {
    /// The loss of the last optimizer step that updated (NaN before any).
    pub last_loss: f64,
    /// The last collapse metrics computed (`None` before any).
    pub last_collapse: Option<CollapseMetrics>,
    /// The collapse warnings given.
    pub watch: CollapseWatch,
    /// Under data parallelism: how many times the ranks compared their networks' checksums
    /// (`train.replica_check_every`) and found them equal, in this call.
    pub replica_checks: usize,
}

/// Runs optimizer steps from `state.step` until `stop_step`. `skipped_steps` (1-based) are
/// replayed without an update and grow with every tolerated fault; `prior_seconds` and
/// `train_start` give the training time stored in checkpoints.
///
/// # Errors
/// [`TrainError`]: a data worker's error, a fault the policy does not tolerate, a checkpoint or
/// metrics file that cannot be written or read back.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_steps<M: Modality>(
    setup: &LoopSetup<'_, M>,
    mut state: ByolState<M::Encoder>,
    stop_step: usize,
    skipped_steps: &mut Vec<usize>,
    prior_seconds: f64,
    train_start: Instant,
    progress: &mut Progress,
    metrics: &mut MetricsWriter,
) -> Result<(ByolState<M::Encoder>, LoopEnd), TrainError> {
    let LoopSetup { modality, cfg, .. } = *setup;
    let (bs, accum, spe) = (
        cfg.train.batch_size,
        setup.schedules.accumulation,
        setup.steps_per_epoch,
    );
    let ad = &setup.device;
    let mut policy = FaultPolicy::new(cfg.train.on_nan, cfg.train.max_faults);
    let mut end = LoopEnd {
        last_loss: f64::NAN,
        last_collapse: None,
        watch: CollapseWatch::new(cfg.byol.projection_dim),
        replica_checks: 0,
    };
    'epochs: while state.step < stop_step {
        let epoch = state.step / spe;
        let first_micro = (state.step % spe) * accum;
        let replicas = setup.replicas;
        let mut loader = two_view_epoch_shard(
            modality.clone(),
            setup.train_items.clone(),
            setup.views.clone(),
            (cfg.seed, epoch),
            bs,
            first_micro,
            (setup.workers, cfg.train.prefetch_batches),
            setup.skips.clone(),
            BatchShard {
                rank: replicas.rank(),
                ranks: replicas.ranks(),
            },
        )
        .take(spe * accum - first_micro);
        while state.step < stop_step && state.step / spe == epoch {
            let step = state.step;
            let mut micro = 0usize;
            // The step's micro-batches, timed; random ops on the device (dropout) draw from a
            // stream fixed by (seed, step, micro-batch), so a resumed run draws what the
            // uninterrupted one did.
            let mut batches = std::iter::from_fn(|| {
                let waited = Instant::now();
                let batch = loader.next()?;
                progress.add_batch(bs, waited.elapsed().as_secs_f64());
                micro += 1;
                ad.seed(device_seed(cfg.seed, step, micro, replicas.rank()));
                Some(batch)
            });
            let log_now = (step + 1) % cfg.train.log_every == 0 || step + 1 == setup.total_steps;
            let (lr, tau);
            if skipped_steps.contains(&(step + 1)) {
                // A step skipped before a rollback or a resume: its data is drawn, not used.
                for batch in batches.by_ref().take(accum) {
                    batch?;
                }
                (lr, tau) = (setup.schedules.lr.at(step), setup.schedules.ema.tau(step));
                drop(batches);
                state.skip_step();
            } else {
                let views = batches.map(|batch| {
                    batch.map(|b| Views {
                        view1: modality.to_input(b.view1, ad),
                        view2: modality.to_input(b.view2, ad),
                        labels: match &setup.probe_labels {
                            Some(labels) => b.rows.iter().map(|&r| labels[r]).collect(),
                            None => Vec::new(),
                        },
                    })
                });
                let (next, outcome) = update(state, views, &setup.schedules, log_now, replicas)
                    .map_err(|e| update_error(e, step))?;
                state = next;
                (lr, tau) = (outcome.lr(), outcome.tau());
                if let Some(c) = outcome.collapse() {
                    end.last_collapse = Some(c);
                }
                match outcome {
                    StepOutcome::Updated { loss, .. } => end.last_loss = loss.total,
                    // f16's loss scale backed off; the step moved on without an update.
                    StepOutcome::Overflow { loss, scale, .. } => {
                        end.last_loss = loss.total;
                        progress.say(format!(
                            "note: the f16 gradients of optimizer step {} overflowed: its update is skipped, the loss scale halved to {scale}",
                            step + 1
                        ));
                    }
                    StepOutcome::Fault { what, .. } => {
                        let rolled_back;
                        (state, rolled_back) = on_fault(
                            setup,
                            &mut policy,
                            &what,
                            state,
                            epoch,
                            skipped_steps,
                            progress,
                            metrics,
                        )?;
                        if rolled_back {
                            continue 'epochs;
                        }
                    }
                }
            }
            let step = state.step;
            progress.set_step(step);
            let check_every = cfg.train.replica_check_every;
            if replicas.ranks() > 1 && check_every > 0 && step % check_every == 0 {
                check_replicas(replicas, &state, step)?;
                end.replica_checks += 1;
            }
            if step % cfg.train.log_every == 0 || step == setup.total_steps {
                let probe = state.probe.as_mut().and_then(|p| p.take_accuracy());
                log_step(
                    setup,
                    progress,
                    metrics,
                    step,
                    epoch,
                    (lr, tau),
                    probe,
                    state.loss_scale,
                    &mut end,
                )?;
            }
            if cfg.train.checkpoint_every > 0
                && step % cfg.train.checkpoint_every == 0
                && step < setup.total_steps
            {
                setup.checkpointer.save(
                    &state,
                    prior_seconds + train_start.elapsed().as_secs_f64(),
                    skipped_steps,
                    modality.state(),
                )?;
            }
            // A stop asked of any rank stops them all after the same step.
            let requested = setup.stop.requested();
            let signal = if replicas.ranks() > 1 {
                match replicas.max_u32(requested.unwrap_or(0) as u32)? {
                    0 => None,
                    s => Some(s as usize),
                }
            } else {
                requested
            };
            if let Some(signal) = signal {
                progress.finish();
                if setup.checkpointer.newest() != Some(step) {
                    setup.checkpointer.save(
                        &state,
                        prior_seconds + train_start.elapsed().as_secs_f64(),
                        skipped_steps,
                        modality.state(),
                    )?;
                }
                return Err(TrainError::Interrupted {
                    signal,
                    step,
                    total_steps: setup.total_steps,
                    checkpoint: checkpoint::checkpoint_dir(&setup.checkpointer.root, step),
                });
            }
        }
    }
    Ok((state, end))
}

/// Applies the fault policy to the faulty step `state.step + 1`: stop (the run's error), skip
/// (the step counted, nothing updated), or roll back to the newest checkpoint (metrics log and
/// progress rewound to it). Returns the state to go on from and whether it was rolled back
/// (the caller then restarts its epoch from the checkpoint's step).
#[allow(clippy::too_many_arguments)]
fn on_fault<M: Modality>(
    setup: &LoopSetup<'_, M>,
    policy: &mut FaultPolicy,
    what: &str,
    mut state: ByolState<M::Encoder>,
    epoch: usize,
    skipped_steps: &mut Vec<usize>,
    progress: &mut Progress,
    metrics: &mut MetricsWriter,
) -> Result<(ByolState<M::Encoder>, bool), TrainError> {
    let at = state.step + 1;
    let max_faults = setup.cfg.train.max_faults;
    let replicas = setup.replicas;
    // Every rank takes the same decision: a rank whose own statistics were poisoned stops all.
    let poisoned = replicas.any(policy.poisons_statistics(&state.online))?;
    match policy.decide_given(what, poisoned) {
        FaultAction::Stop(what) => Err(TrainError::NonFinite {
            step: at,
            epoch,
            what,
            checkpoints: setup.checkpointer.root.clone(),
        }),
        FaultAction::Rollback => {
            skipped_steps.push(at);
            let root = &setup.checkpointer.root;
            // Rank 0's choice, for all (a shared filesystem may show the ranks different
            // listings for a moment).
            let mine = setup.checkpointer.newest().map_or(-1.0, |s| s as f64);
            let chosen = replicas.gather(&[mine], "rollback checkpoints")?[0];
            let newest = (chosen >= 0.0).then_some(chosen as usize).ok_or_else(|| {
                TrainError::Resume(format!(
                    "--on-nan rollback: no checkpoint left in {}",
                    root.display()
                ))
            })?;
            let state = load_state(&checkpoint::checkpoint_dir(root, newest), state, newest)?;
            progress.say(format!(
                "warning: {what} at optimizer step {at}: rolled back to the checkpoint of step {newest}; step {at} will be skipped (fault {} of at most {max_faults})",
                policy.faults
            ));
            *metrics = MetricsWriter::open_if(
                setup.replicas.writes(),
                &setup.out.join("metrics.jsonl"),
                newest,
            )
            .map_err(io_err(setup.out))?;
            progress.set_step(newest);
            Ok((state, true))
        }
        FaultAction::Skip => {
            skipped_steps.push(at);
            progress.say(format!(
                "warning: {what} at optimizer step {at}: its update is skipped (fault {} of at most {max_faults})",
                policy.faults
            ));
            state.skip_step();
            Ok((state, false))
        }
    }
}

/// Writes the metrics line of optimizer step `step` and shows it.
#[allow(clippy::too_many_arguments)]
fn log_step<M: Modality>(
    setup: &LoopSetup<'_, M>,
    progress: &mut Progress,
    metrics: &mut MetricsWriter,
    step: usize,
    epoch: usize,
    (lr, tau): (f64, f64),
    online_probe_top1: Option<f64>,
    loss_scale: Option<crate::byol::LossScale>,
    end: &mut LoopEnd,
) -> Result<(), TrainError> {
    let (images_per_sec, data_wait_fraction) = progress.take_window();
    let record = MetricsRecord {
        step,
        epoch,
        loss: end.last_loss,
        lr,
        tau,
        collapse_std: end.last_collapse.map_or(f64::NAN, |c| c.std),
        effective_rank: end.last_collapse.map_or(f64::NAN, |c| c.rank),
        images_per_sec,
        data_wait_fraction,
        collapsed: end.last_collapse.is_some_and(|c| end.watch.collapsed(&c)),
        online_probe_top1,
        loss_scale: loss_scale.map(|s| s.scale),
        overflow_steps: loss_scale.map(|s| s.overflows),
    };
    metrics.write(&record).map_err(io_err(setup.out))?;
    if let Some(c) = end.last_collapse {
        for w in end.watch.observe(step, &c) {
            progress.say(format!("warning: {w}"));
        }
    }
    progress.show(&record);
    Ok(())
}

/// A failed step as the run's error.
fn update_error(e: UpdateError<crate::data::loader::WorkerError>, step: usize) -> TrainError {
    match e {
        UpdateError::Batch(e) => e.into(),
        UpdateError::Ema(e) => e.into(),
        UpdateError::Replicas(e) => e.into(),
        UpdateError::MixedPrecision(p) => crate::config::ConfigError::value(
            "train.precision",
            p.name(),
            "the encoder computes in f32 only (it does not declare Encoder::mixed_precision)",
        )
        .into(),
        e @ UpdateError::MissingBatches { .. } => {
            DataError::Unusable(format!("optimizer step {}: {e}", step + 1)).into()
        }
    }
}

/// Draws the online network's parameters that are still undrawn (burn draws a parameter at its
/// first use: the predictor's at the first forward pass of a fresh run, from the device's
/// stream of the run's first micro-batch). Under data parallelism every rank draws them here,
/// from rank 0's stream of that micro-batch, before the ranks' streams part: the replicas start
/// identical, and from the values one process draws (the predictor's parameters in the order
/// its forward pass reads them).
pub(super) fn draw_initial_parameters<E: crate::encoder::Encoder>(
    state: &ByolState<E>,
    seed: u64,
    device: &Device,
) {
    device.seed(device_seed(seed, 0, 1, 0));
    let _ = parameter_checksum(&state.online, false);
}

/// Compares a checksum of every rank's networks after optimizer step `step`: with SyncBN the
/// online and target networks whole (parameters and BatchNorm statistics); without, the online
/// network's parameters (each rank keeps its own BatchNorm statistics then, and the target's
/// parameters follow from the online ones).
///
/// # Errors
/// [`TrainError::Diverged`] with every rank's checksum when they differ; a failed collective.
fn check_replicas<E: crate::encoder::Encoder>(
    replicas: &ReplicaGroup,
    state: &ByolState<E>,
    step: usize,
) -> Result<(), TrainError> {
    use burn::module::Module;
    let sum = if replicas.sync_batch_norm {
        // `valid()` applies BatchNorm's deferred running-statistic updates first.
        parameter_checksum(&state.online.valid(), false)
            ^ parameter_checksum(&state.target.valid(), false).rotate_left(1)
    } else {
        parameter_checksum(&state.online, true)
    };
    // Two exact halves: an f64 holds 32 bits exactly.
    let all = replicas.gather(
        &[(sum >> 32) as f64, (sum & 0xFFFF_FFFF) as f64],
        "checksums",
    )?;
    let sums: Vec<u64> = all
        .chunks(2)
        .map(|p| ((p[0] as u64) << 32) | p[1] as u64)
        .collect();
    if sums.iter().any(|s| *s != sums[0]) {
        return Err(TrainError::Diverged {
            step,
            checksums: sums
                .iter()
                .map(|s| format!("{s:016x}"))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(())
}

/// The seed of the device's random stream for micro-batch `micro` (1-based) of optimizer step
/// `step` (0-based) on data-parallel rank `rank`: a SplitMix64 mix, so neighbouring steps (and
/// ranks, whose samples differ) get unrelated streams; rank 0's is the single process's.
fn device_seed(seed: u64, step: usize, micro: usize, rank: usize) -> u64 {
    let mut z = seed
        ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (micro as u64).wrapping_mul(0xD1B5_4A32_D192_ED03)
        ^ (rank as u64).wrapping_mul(0x8CB9_2BA7_2F3D_8DD7);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
