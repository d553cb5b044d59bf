//! A saved checkpoint as a pre-trained encoder (`ssl eval`, `ssl embed`, `ssl export`): finds
//! the checkpoint, rebuilds its config, restores the modality's data-derived state (audio
//! normalization statistics, the text vocabulary) and loads the online encoder f; then
//! evaluates it with kNN, a linear probe and fine-tuning (all labels, and class-balanced 1% and
//! 10% subsets: the paper's Section 4.2), each beside a random-init encoder.

use super::checkpoint::{self, CheckpointError, CheckpointState};
use super::run::{EvalData, TrainError, apply_eval_split, check_probe_labels, evaluate_encoder};
use crate::byol::OnlineNetwork;
use crate::config::{ExperimentConfig, load_config};
use crate::data::loader::resolve_workers;
use crate::eval::{FinetuneConfig, ProbeResult, balanced_fraction, finetune_top1};
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
    let mut datasets = modality.load(&config.data, data_root)?;
    apply_eval_split(&mut datasets, &config.eval, config.seed);
    check_probe_labels(&datasets)?;
    // After `load`, which derives the state from this data: evaluation uses the run's own.
    let (config, state, encoder) = load_encoder(&modality, dir, overrides, device)?;
    Ok(Pretrained {
        modality: Arc::new(modality),
        config,
        state,
        dir: dir.to_path_buf(),
        encoder,
        data: EvalData {
            train: Arc::new(datasets.train.items),
            train_labels: datasets.train.label_sets,
            test: Arc::new(datasets.test.items),
            test_labels: datasets.test.label_sets,
        },
        dataset: datasets.name,
        skipped: datasets.skipped,
        device: device.clone(),
    })
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

/// What [`evaluate_pretrained`] runs besides kNN and the linear probe.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Fine-tune on `eval.finetune_fractions` of the labels (each beside random init).
    pub finetune: bool,
    /// Print a line per finished evaluation on stderr.
    pub verbose: bool,
}

/// kNN and linear probe on frozen features, then fine-tuning on every fraction of
/// `eval.finetune_fractions` for the label sets of `eval.finetune_labels`, each for the trained
/// and a random-init encoder. Fine-tuning results are named `finetune-<percent>%`.
///
/// # Errors
/// [`TrainError`]: a failed data worker, or an unknown label set in `eval.finetune_labels`.
pub fn evaluate_pretrained<M: Modality>(
    p: &Pretrained<M>,
    opts: EvalOptions,
) -> Result<Vec<ProbeResult>, TrainError> {
    let cfg = &p.config;
    let workers = resolve_workers(cfg.train.num_workers);
    let data = &p.data;
    let (train, test) = (&data.train, &data.test);
    // Checked before any work: a typo here should not cost the probes' time first.
    let wanted = &cfg.eval.finetune_labels;
    for name in wanted.iter().filter(|_| opts.finetune) {
        if !data.train_labels.iter().any(|ls| &ls.name == name) {
            return Err(crate::config::ConfigError::Value {
                key: "eval.finetune_labels".into(),
                value: format!("{name:?}"),
                expected: format!(
                    "a label set of this dataset ({})",
                    data.train_labels
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
            .into());
        }
    }
    let eval_ops = Arc::new(clone_ops::<M>(&cfg.augment.eval));
    let random = random_init_encoder(p)?;
    let mut results = evaluate_encoder(
        &p.modality,
        &cfg.eval,
        cfg.seed,
        &p.encoder.valid(),
        Some(&random.valid()),
        data,
        &eval_ops,
        workers,
        &p.device,
    )?;
    if opts.verbose {
        for r in &results {
            eprintln!("{}", describe(r));
        }
    }
    if !opts.finetune {
        return Ok(results);
    }
    let ft_ops = Arc::new(if cfg.augment.finetune.is_empty() {
        clone_ops::<M>(&cfg.augment.eval)
    } else {
        clone_ops::<M>(&cfg.augment.finetune)
    });
    let ft_cfg = FinetuneConfig {
        epochs: cfg.eval.finetune_epochs,
        min_steps: cfg.eval.finetune_min_steps,
        lr: cfg.eval.finetune_lr,
        weight_decay: cfg.eval.finetune_weight_decay,
        batch_size: cfg.eval.finetune_batch_size,
        seed: cfg.seed,
        workers,
    };
    for (train_ls, test_ls) in data.train_labels.iter().zip(&data.test_labels) {
        if !wanted.is_empty() && !wanted.contains(&train_ls.name) {
            continue;
        }
        let classes = train_ls.classes.len().max(test_ls.classes.len());
        let labelled = train_ls.labelled();
        let test_rows = test_ls.labelled();
        for &fraction in &cfg.eval.finetune_fractions {
            let rows = balanced_fraction(&train_ls.labels, &labelled, fraction, cfg.seed);
            let run = |encoder: M::Encoder| {
                finetune_top1(
                    &p.modality,
                    encoder,
                    classes,
                    train,
                    &train_ls.labels,
                    &rows,
                    &ft_ops,
                    test,
                    &test_ls.labels,
                    &test_rows,
                    &eval_ops,
                    &ft_cfg,
                    &p.device,
                )
            };
            // `valid().train()`: an independent trainable copy (its own BatchNorm statistics).
            let trained_top1 = run(p.encoder.valid().train())?;
            let random_top1 = run(random.valid().train())?;
            let r = ProbeResult {
                probe: format!("finetune-{}%", percent(fraction)),
                labels: train_ls.name.clone(),
                classes,
                trained_top1,
                random_init_top1: Some(random_top1),
            };
            if opts.verbose {
                eprintln!("{} ({} labelled samples)", describe(&r), rows.len());
            }
            results.push(r);
        }
    }
    Ok(results)
}

/// `0.1` -> `"10"`, `0.01` -> `"1"`, `0.005` -> `"0.5"`.
fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}", p.round() as i64)
    } else {
        format!("{p}")
    }
}

fn describe(r: &ProbeResult) -> String {
    format!(
        "{} {}: trained {:.2}%, random init {}",
        r.probe,
        r.labels,
        r.trained_top1 * 100.0,
        r.random_init_top1
            .map(|v| format!("{:.2}%", v * 100.0))
            .unwrap_or_else(|| "-".into())
    )
}

/// A copy of a list of a modality's ops (they are serde types, typetag for trait objects: a
/// JSON round trip copies any of them).
pub fn clone_ops<M: Modality>(ops: &[M::Op]) -> Vec<M::Op> {
    serde_json::from_value(serde_json::to_value(ops).expect("ops serialize"))
        .expect("ops deserialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_names() {
        assert_eq!(percent(1.0), "100");
        assert_eq!(percent(0.1), "10");
        assert_eq!(percent(0.01), "1");
        assert_eq!(percent(0.005), "0.5");
    }

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
