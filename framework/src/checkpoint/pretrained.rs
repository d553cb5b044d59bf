//! A saved checkpoint as a pre-trained encoder (`ssl eval`, `ssl embed`, `ssl export`): finds
//! the checkpoint, rebuilds its config, restores the modality's data-derived state (audio
//! normalization statistics, the text vocabulary) and loads the online encoder f.
//! [`crate::eval::evaluate_pretrained`] then evaluates it.

use super::{self as checkpoint, CheckpointError, CheckpointState};
use crate::byol::OnlineNetwork;
use crate::config::{ExperimentConfig, load_config};
use crate::data::{EvalData, apply_eval_split, usable_label_sets};
use crate::error::TrainError;
use crate::modality::Modality;
use burn::module::Module;
use burn::tensor::Device;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The checkpoint folder that `path` names: a checkpoint itself (it holds `state.json`), or a
/// run folder (its newest checkpoint under `checkpoints/`), or a `checkpoints/` folder.
///
/// # Errors
/// [`CheckpointError`] naming `path` when it holds no checkpoint.
pub fn find_checkpoint(path: &Path) -> Result<PathBuf, CheckpointError> {
    if path.join("state.json").is_file() {
        return Ok(path.to_path_buf());
    }
    for root in [path.join("checkpoints"), path.to_path_buf()] {
        if let Some(step) = checkpoint::list_checkpoints(&root).last() {
            return Ok(checkpoint::checkpoint_dir(&root, *step));
        }
    }
    Err(CheckpointError::new(
        path,
        if path.exists() {
            "no checkpoint here (expected a run folder, its checkpoints/ folder, or a checkpoints/step-N folder)"
        } else {
            "no such folder"
        },
    ))
}

/// The modality a checkpoint was trained on (empty for checkpoints that predate the field:
/// the caller must then be told).
///
/// # Errors
/// [`CheckpointError`] when `state.json` cannot be read.
pub fn checkpoint_modality(dir: &Path) -> Result<String, CheckpointError> {
    Ok(checkpoint::read_state(dir)?.modality)
}

/// A checkpoint's trained encoder with everything needed to run it on data.
pub struct Pretrained<M: Modality> {
    /// The modality, its data-derived state restored from the checkpoint.
    pub modality: Arc<M>,
    /// The run's config (with the caller's overrides).
    pub config: ExperimentConfig<M>,
    /// The checkpoint's `state.json`.
    pub state: CheckpointState,
    /// The checkpoint folder.
    pub dir: PathBuf,
    /// The trained online encoder f, trainable, on the autodiff twin of the device.
    pub encoder: M::Encoder,
    /// The dataset read with the run's data config (and `eval.split`): the items the probes
    /// fit on and the held-out items they are scored on, with their label sets.
    pub data: EvalData<M::Item>,
    /// The dataset's name.
    pub dataset: String,
    /// Files skipped as unreadable while loading the dataset.
    pub skipped: usize,
    /// Why label sets of the data were left out of the probes (see
    /// [`usable_label_sets`]); empty when every label set is probed.
    pub notes: Vec<String>,
    /// The plain device.
    pub device: Device,
}

/// Loads the checkpoint `dir` (see [`find_checkpoint`]) and the dataset in `data_root`.
/// `overrides` (`key=value`, as `ssl train --set`) change the run's config, e.g. `eval.*` or
/// `data.test_subset`; a change to the encoder's shape makes the load fail.
///
/// # Errors
/// [`TrainError`]: an unreadable or mismatched checkpoint (naming the file), a bad override,
/// unusable data, or a modality state the checkpoint lacks.
pub fn load_pretrained<M: Modality>(
    modality: M,
    dir: &Path,
    overrides: &[String],
    data_root: &Path,
    device: &Device,
) -> Result<Pretrained<M>, TrainError> {
    let (config, _) = checkpoint_config::<M>(dir, overrides)?;
    // As in training: `eval.split` carves the evaluation data, which is the pre-training data
    // unless the run had a separate `eval.data` (then the pre-training data stays whole), and
    // the separate evaluation data is read with its labels on.
    let separate_eval = !config.eval.data.is_empty();
    let is_eval_data = separate_eval && same_folder(data_root, Path::new(&config.eval.data));
    let eval_cfg = is_eval_data
        .then(|| modality.eval_data_config(&config.data))
        .flatten();
    let mut datasets = modality.load(eval_cfg.as_ref().unwrap_or(&config.data), data_root)?;
    if !separate_eval || is_eval_data {
        apply_eval_split(&mut datasets, &config.eval, config.seed);
    }
    let notes = usable_label_sets(
        &mut datasets,
        "to probe, pass --data DIR with a labelled dataset",
    );
    // After `load`, which derives the state from this data: evaluation uses the run's own.
    let (config, state, encoder) = load_encoder(&modality, dir, overrides, device)?;
    Ok(Pretrained {
        modality: Arc::new(modality),
        config,
        state,
        dir: dir.to_path_buf(),
        encoder,
        dataset: datasets.name.clone(),
        skipped: datasets.skipped,
        data: EvalData::from_datasets(datasets),
        notes,
        device: device.clone(),
    })
}

/// Whether `a` and `b` name the same folder (compared after resolving links when both exist).
fn same_folder(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The run's config stored in the checkpoint `dir`, with `overrides` applied and validated.
///
/// # Errors
/// [`TrainError`]: an unreadable `state.json`, or an invalid override.
pub fn checkpoint_config<M: Modality>(
    dir: &Path,
    overrides: &[String],
) -> Result<(ExperimentConfig<M>, CheckpointState), TrainError> {
    // The networks' shapes are the checkpoint's: their keys cannot change here.
    if let Some(o) = overrides.iter().find(|o| {
        let key = o.split('=').next().unwrap_or("").trim();
        key.starts_with("encoder.") || key.starts_with("byol.") || key == "encoder" || key == "byol"
    }) {
        return Err(crate::config::ConfigError::value(
            "--set",
            o,
            "a key outside [encoder] and [byol]: a checkpoint's networks keep their shapes",
        )
        .into());
    }
    let state = checkpoint::read_state(dir)?;
    let state_file = dir.join("state.json");
    let stored: ExperimentConfig<M> = serde_json::from_value(state.config.clone())
        .map_err(|e| CheckpointError::new(&state_file, format!("config: {e}")))?;
    let config = load_config::<M>(
        &stored.to_toml(),
        &state_file.display().to_string(),
        overrides,
    )?;
    config.validate()?;
    Ok((config, state))
}

/// The trained online encoder f of the checkpoint `dir` (trainable, on the autodiff twin of
/// `device`), with the modality's stored state restored into `modality`; no data is read.
///
/// # Errors
/// [`TrainError`]: an unreadable or mismatched checkpoint (naming the file), an invalid
/// override, or a modality state the checkpoint lacks.
pub fn load_encoder<M: Modality>(
    modality: &M,
    dir: &Path,
    overrides: &[String],
    device: &Device,
) -> Result<(ExperimentConfig<M>, CheckpointState, M::Encoder), TrainError> {
    let (config, state) = checkpoint_config::<M>(dir, overrides)?;
    modality.restore_state(&state.modality_state)?;
    let ad = device.clone().autodiff();
    ad.seed(config.seed);
    let encoder = modality.init_encoder(&config.encoder, &config.data, &ad)?;
    let online = OnlineNetwork::new(encoder, &config.byol, &ad);
    let file = dir.join("online.bpk");
    let online = online
        .try_load_file(&file)
        .map_err(|e| CheckpointError::new(&file, e.to_string()))?;
    Ok((config, state, online.encoder))
}

/// A random-init encoder of the checkpoint's architecture on the plain device, seeded exactly
/// as the random-init baseline of `ssl train` (so `ssl eval` reproduces its numbers);
/// `.valid().train()` gives a trainable copy.
///
/// # Errors
/// [`TrainError::Config`] when the encoder config is invalid.
pub fn random_init_encoder<M: Modality>(p: &Pretrained<M>) -> Result<M::Encoder, TrainError> {
    p.device.seed(p.config.seed.wrapping_add(0x9E37_79B9));
    // Materialized in the module's order, as in `train_and_evaluate` (burn initializes lazily).
    Ok(p.modality
        .init_encoder(&p.config.encoder, &p.config.data, &p.device)?
        .valid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_checkpoint_accepts_a_run_a_checkpoints_folder_or_a_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path();
        assert!(find_checkpoint(run).is_err());
        for step in [5, 12] {
            let d = checkpoint::checkpoint_dir(&run.join("checkpoints"), step);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("state.json"), "{}").unwrap();
        }
        let newest = checkpoint::checkpoint_dir(&run.join("checkpoints"), 12);
        assert_eq!(find_checkpoint(run).unwrap(), newest);
        assert_eq!(find_checkpoint(&run.join("checkpoints")).unwrap(), newest);
        let older = checkpoint::checkpoint_dir(&run.join("checkpoints"), 5);
        assert_eq!(find_checkpoint(&older).unwrap(), older);
        let err = find_checkpoint(&run.join("nothing")).unwrap_err();
        assert!(err.to_string().contains("no such folder"), "{err}");
    }
}
