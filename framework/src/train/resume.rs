//! Checkpoints of a training run and resuming from them: where a run starts (fresh, or the
//! newest checkpoint of `--out` with the same config), writing a checkpoint of the BYOL state,
//! and loading one back (resume, rollback).

use super::results::RunReport;
use crate::byol::{ByolState, LossScale, OnlineNetwork, OnlineProbeRecord, TargetNetwork};
use crate::checkpoint::{self, CheckpointError, CheckpointState};
use crate::encoder::Encoder;
use crate::error::{TrainError, io_err};
use crate::eval::ProbeResult;
use burn::module::Module;
use burn::optim::ModuleOptimizer;
use std::path::{Path, PathBuf};

/// The checkpoint a run resumes from: `None` for a new run.
///
/// # Errors
/// [`TrainError::Resume`]: `--resume` without a checkpoint in `ckpt_root`, or a new run into
/// a folder that already holds one.
pub fn resume_point(
    resume: bool,
    out: &Path,
    ckpt_root: &Path,
    existing: &[usize],
) -> Result<Option<PathBuf>, TrainError> {
    match (resume, existing.last()) {
        (true, Some(step)) => Ok(Some(checkpoint::checkpoint_dir(ckpt_root, *step))),
        (true, None) => Err(TrainError::Resume(format!(
            "--resume: no checkpoint in {}",
            ckpt_root.display()
        ))),
        (false, Some(_)) => Err(TrainError::Resume(format!(
            "{} already holds a run's checkpoints: pass --resume to continue it, or choose another --out",
            out.display()
        ))),
        (false, None) => Ok(None),
    }
}

/// The part of a resolved config that a resumed run must share with its checkpoint: all of it
/// (a missing `train.precision` counting as `"f32"`, its default) but the keys that only say
/// how to react to faults (`train.on_nan`, `train.max_faults`) and
/// how to evaluate the encoder afterwards (every `eval` key but `split` and
/// `validation_fraction`, which decide what pre-training sees), and the fine-tuning ops.
pub fn resume_identity(config: &serde_json::Value) -> serde_json::Value {
    let mut c = config.clone();
    if let Some(train) = c.get_mut("train").and_then(|t| t.as_object_mut()) {
        train.remove("on_nan");
        train.remove("max_faults");
        train.remove("replica_check_every");
        // Configs written before `train.precision` existed ran in f32.
        if train.get("precision").and_then(|p| p.as_str()) == Some("f32") {
            train.remove("precision");
        }
    }
    if let Some(eval) = c.get_mut("eval").and_then(|t| t.as_object_mut()) {
        eval.retain(|k, _| k == "split" || k == "validation_fraction");
    }
    if let Some(augment) = c.get_mut("augment").and_then(|t| t.as_object_mut()) {
        augment.remove("finetune");
    }
    c
}

/// The stored report of a run whose newest checkpoint is its last step, when `results.json`
/// exists: `--resume` of a finished run shows its results instead of evaluating again and
/// overwriting them. `say`: print that the run is finished (rank 0 of a data-parallel run).
///
/// # Errors
/// [`TrainError`] when the checkpoint's `state.json` or `results.json` cannot be read.
pub fn finished_report(
    dir: &Path,
    out: &Path,
    config: &serde_json::Value,
    say: bool,
) -> Result<Option<RunReport>, TrainError> {
    let state = checkpoint::read_state(dir)?;
    let results_path = out.join("results.json");
    if state.step < state.total_steps
        || resume_identity(&state.config) != resume_identity(config)
        || !results_path.is_file()
    {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&results_path).map_err(io_err(&results_path))?;
    let Ok(results) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Ok(None);
    };
    let Ok(probes) = serde_json::from_value::<Vec<ProbeResult>>(results["probes"].clone()) else {
        return Ok(None);
    };
    if say {
        eprintln!(
            "the run in {} is already finished (step {} of {}); its results:",
            out.display(),
            state.step,
            state.total_steps
        );
    }
    Ok(Some(RunReport { results, probes }))
}

/// Writes the checkpoints of one run (`<out>/checkpoints/step-N/`, the newest
/// `train.keep_checkpoints` kept) with what `state.json` records besides the networks.
pub struct Checkpointer {
    /// `<out>/checkpoints`.
    pub root: PathBuf,
    /// The modality's name.
    pub modality: String,
    /// The resolved config, as JSON.
    pub config: serde_json::Value,
    /// Total optimizer steps of the run.
    pub total_steps: usize,
    /// Checkpoints kept.
    pub keep: usize,
    /// The run's data folder, recorded in every checkpoint.
    pub data_root: Option<PathBuf>,
    /// Whether this process writes checkpoints (rank 0 of a data-parallel run; the other ranks
    /// hold the same state and write nothing).
    pub writes: bool,
    /// The number of data-parallel ranks, recorded in every checkpoint.
    pub ranks: usize,
}

impl Checkpointer {
    /// Writes the checkpoint of `state` (at `state.step`) atomically: `online.bpk`,
    /// `target.bpk`, `optimizer.bpk`, and `state.json` with `train_seconds`, `skipped_steps`
    /// and the modality's data-derived `modality_state`; the online probe's state and f16's
    /// loss scale ([`LOSS_SCALE_FILE`]) when the run has them.
    ///
    /// # Errors
    /// [`CheckpointError`] naming the file that could not be written.
    pub fn save<E: Encoder>(
        &self,
        state: &ByolState<E>,
        train_seconds: f64,
        skipped_steps: &[usize],
        modality_state: serde_json::Value,
    ) -> Result<(), CheckpointError> {
        if !self.writes {
            return Ok(());
        }
        let record = CheckpointState {
            ranks: self.ranks,
            modality: self.modality.clone(),
            step: state.step,
            total_steps: self.total_steps,
            train_seconds,
            config: self.config.clone(),
            modality_state,
            skipped_steps: skipped_steps.to_vec(),
            data_root: self.data_root.clone(),
        };
        // burn defers BatchNorm running-statistic updates; `valid()` applies them, so the
        // checkpoint holds the current statistics.
        let _ = (state.online.valid(), state.target.valid());
        checkpoint::save_checkpoint(&self.root, &record, self.keep, |dir| {
            state
                .online
                .clone()
                .save_file(dir.join("online.bpk"))
                .map_err(|e| format!("online.bpk: {e}"))?;
            state
                .target
                .clone()
                .save_file(dir.join("target.bpk"))
                .map_err(|e| format!("target.bpk: {e}"))?;
            state
                .optimizer
                .save(dir.join("optimizer.bpk"))
                .map_err(|e| format!("optimizer.bpk: {e}"))?;
            if let Some(probe) = &state.probe {
                let json = serde_json::to_vec(&probe.record()).expect("probe record serializes");
                std::fs::write(dir.join(ONLINE_PROBE_FILE), json)
                    .map_err(|e| format!("{ONLINE_PROBE_FILE}: {e}"))?;
            }
            if let Some(scale) = &state.loss_scale {
                let json = serde_json::to_vec(scale).expect("loss scale serializes");
                std::fs::write(dir.join(LOSS_SCALE_FILE), json)
                    .map_err(|e| format!("{LOSS_SCALE_FILE}: {e}"))?;
            }
            Ok(())
        })
        .map(|_| ())
    }

    /// The step of the newest complete checkpoint.
    pub fn newest(&self) -> Option<usize> {
        checkpoint::list_checkpoints(&self.root).last().copied()
    }
}

/// Loads the online and target networks, the optimizer state, the online probe and the loss
/// scale of the checkpoint in `dir` into `state` (its step set to `step`).
///
/// # Errors
/// [`CheckpointError`] naming the file that fails to load and why.
pub fn load_state<E: Encoder>(
    dir: &Path,
    state: ByolState<E>,
    step: usize,
) -> Result<ByolState<E>, CheckpointError> {
    let (online, target, optimizer) =
        load_networks(dir, state.online, state.target, state.optimizer)?;
    let mut probe = state.probe;
    if let Some(p) = probe.as_mut() {
        let path = dir.join(ONLINE_PROBE_FILE);
        if path.is_file() {
            let bytes = std::fs::read(&path).map_err(|e| CheckpointError::new(&path, e))?;
            let record: OnlineProbeRecord = serde_json::from_slice(&bytes)
                .map_err(|e| CheckpointError::new(&path, format!("malformed: {e}")))?;
            p.load(&record)
                .map_err(|e| CheckpointError::new(&path, e))?;
        } else {
            // A checkpoint written without the probe (an older build, or `eval.online_probe`
            // off then): the probe starts afresh, also on a rollback to it.
            *p = p.fresh();
        }
    }
    // f16's loss scale; a checkpoint without one (of an f32 or bf16 run, or of step 0) starts
    // the scale afresh at the first f16 step.
    let path = dir.join(LOSS_SCALE_FILE);
    let loss_scale = if path.is_file() {
        let bytes = std::fs::read(&path).map_err(|e| CheckpointError::new(&path, e))?;
        Some(
            serde_json::from_slice::<LossScale>(&bytes)
                .map_err(|e| CheckpointError::new(&path, format!("malformed: {e}")))?,
        )
    } else {
        None
    };
    Ok(ByolState {
        online,
        target,
        optimizer,
        step,
        probe,
        loss_scale,
    })
}

/// The loss scale's file in a checkpoint folder (f16 runs: [`LossScale`]).
pub const LOSS_SCALE_FILE: &str = "loss_scale.json";

/// The online probe's file in a checkpoint folder.
pub const ONLINE_PROBE_FILE: &str = "online_probe.json";

fn load_networks<E: Encoder>(
    dir: &Path,
    online: OnlineNetwork<E>,
    target: TargetNetwork<E>,
    optim: ModuleOptimizer,
) -> Result<(OnlineNetwork<E>, TargetNetwork<E>, ModuleOptimizer), CheckpointError> {
    let file = |name: &str| dir.join(name);
    let online = online
        .try_load_file(file("online.bpk"))
        .map_err(|e| CheckpointError::new(&file("online.bpk"), e.to_string()))?;
    let target = target
        .try_load_file(file("target.bpk"))
        .map_err(|e| CheckpointError::new(&file("target.bpk"), e.to_string()))?;
    let optim = optim
        .load(file("optimizer.bpk"))
        .map_err(|e| CheckpointError::new(&file("optimizer.bpk"), e.to_string()))?;
    Ok((online, target, optim))
}

#[cfg(test)]
mod tests {
    use super::resume_identity;
    use serde_json::json;

    #[test]
    fn a_config_without_precision_resumes_as_f32_and_only_as_f32() {
        let old = json!({"train": {"epochs": 4, "on_nan": "stop"}});
        let f32_now = json!({"train": {"epochs": 4, "on_nan": "skip", "precision": "f32"}});
        let bf16_now = json!({"train": {"epochs": 4, "on_nan": "stop", "precision": "bf16"}});
        assert_eq!(resume_identity(&old), resume_identity(&f32_now));
        assert_ne!(resume_identity(&old), resume_identity(&bf16_now));
        assert_ne!(resume_identity(&f32_now), resume_identity(&bf16_now));
    }
}
