//! `train_and_evaluate`: BYOL pre-training of a modality's encoder, then evaluation beside a
//! random-init baseline, with checkpoints, resume, a metrics log and `results.json`.

use super::checkpoint::{self, CheckpointError, CheckpointState};
use super::faults::{non_finite_gradient, non_finite_parameter};
use super::metrics::{MetricsRecord, MetricsWriter};
use crate::byol::{EmaError, OnlineNetwork, TargetNetwork, ema_update, forward_loss_terms};
use crate::config::{ConfigError, EvalSplit, ExperimentConfig, OnNan};
use crate::data::loader::{WorkerError, resolve_workers, two_view_epoch};
use crate::data::{DataError, Datasets, Split};
use crate::eval::{
    ProbeConfig, ProbeResult, collapse_std, extract_features, knn_top1, linear_probe_top1,
};
use crate::modality::Modality;
use crate::optim::{build_optimizer, peak_lr, warmup_cosine_lr};
use burn::module::Module;
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Unusable data.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A data worker failed.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The EMA could not match the networks.
    #[error(transparent)]
    Ema(#[from] EmaError),
    /// A file of the run could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A loss term or a gradient became NaN or infinite; every checkpoint is kept.
    #[error(
        "non-finite {what} at optimizer step {step} (epoch {epoch}); the last good checkpoint is kept in {checkpoints}"
    )]
    NonFinite {
        /// The step being computed (1-based).
        step: usize,
        /// Its epoch.
        epoch: usize,
        /// Which term: a loss direction with its value, or the parameter whose gradient it is.
        what: String,
        /// The checkpoint folder.
        checkpoints: PathBuf,
    },
    /// `--resume` without a checkpoint, or a new run over an existing one.
    #[error("{0}")]
    Resume(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where and how to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Output folder: `config.toml`, `metrics.jsonl`, `checkpoints/`, `results.json`.
    pub out_dir: PathBuf,
    /// Dataset folder given to [`Modality::load`].
    pub data_root: PathBuf,
    /// A plain (non-autodiff) device; training runs on its autodiff twin.
    pub device: Device,
    /// Continue from the newest checkpoint in `out_dir`.
    pub resume: bool,
    /// Show a progress bar (else a line per log step on stderr).
    pub progress: bool,
    /// Stop at this optimizer step (when it is below the run's total), checkpoint, evaluate
    /// and return, leaving the run resumable with `resume`: the learning-rate and tau schedules
    /// stay those of the whole run. The evaluation goes to `results-step-<N>.json`, not
    /// `results.json`. Used by the augmentation search's successive halving. `None`: run to
    /// the end.
    pub pause_at_step: Option<usize>,
    /// Evaluate a random-init encoder beside the trained one (DESIGN.md: every reported
    /// evaluation has one; the augmentation search turns it off for its trials, whose scores
    /// are only compared with each other).
    pub random_init: bool,
}

impl RunOptions {
    /// Options for a whole run into `out_dir` from `data_root` on `device`: no resume, no
    /// progress bar, no pause, random-init baseline on.
    pub fn new(out_dir: impl Into<PathBuf>, data_root: impl Into<PathBuf>, device: Device) -> Self {
        Self {
            out_dir: out_dir.into(),
            data_root: data_root.into(),
            device,
            resume: false,
            progress: false,
            pause_at_step: None,
            random_init: true,
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The content of `results.json`.
    pub results: serde_json::Value,
    /// The probe results (also inside `results`).
    pub probes: Vec<ProbeResult>,
}

/// A run counts as collapsed when the collapse metric falls below this many times
/// `1 / sqrt(projection_dim)` (the value of outputs spread evenly over the sphere).
pub const COLLAPSE_THRESHOLD: f64 = 0.1;

/// Optimizer steps per epoch: full micro-batches per epoch divided by the accumulation.
pub fn steps_per_epoch(train_len: usize, batch_size: usize, accumulation: usize) -> usize {
    (train_len / batch_size) / accumulation
}

/// Pre-trains with BYOL, then evaluates (kNN and linear probe, trained and random-init
/// encoders, every label set of the test split) and writes `results.json`.
///
/// # Errors
/// [`TrainError`]: bad config or data, an I/O failure naming the file, a non-finite loss, a
/// failed checkpoint, or a resume that does not match.
pub fn train_and_evaluate<M: Modality>(
    modality: M,
    cfg: ExperimentConfig<M>,
    opts: &RunOptions,
) -> Result<RunReport, TrainError> {
    let wall = Instant::now();
    cfg.validate()?;
    let config_json = cfg.to_json();
    let out = &opts.out_dir;
    let ckpt_root = out.join("checkpoints");
    let existing = checkpoint::list_checkpoints(&ckpt_root);
    let resume_from = match (opts.resume, existing.last()) {
        (true, Some(step)) => Some(checkpoint::checkpoint_dir(&ckpt_root, *step)),
        (true, None) => {
            return Err(TrainError::Resume(format!(
                "--resume: no checkpoint in {}",
                ckpt_root.display()
            )));
        }
        (false, Some(_)) => {
            return Err(TrainError::Resume(format!(
                "{} already holds a run's checkpoints: pass --resume to continue it, or choose another --out",
                out.display()
            )));
        }
        (false, None) => None,
    };
    if let Some(dir) = &resume_from
        && let Some(report) = finished_report(dir, out, &config_json)?
    {
        return Ok(report);
    }

    let modality = Arc::new(modality);
    let mut datasets: Datasets<M::Item> = modality.load(&cfg.data, &opts.data_root)?;
    apply_eval_split(&mut datasets, &cfg.eval, cfg.seed);
    check_probe_labels(&datasets)?;
    // The output folder is made only once the data is known to be usable.
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    crate::fsutil::write_atomic(&out.join("config.toml"), cfg.to_toml().as_bytes())
        .map_err(io_err(out))?;
    if datasets.skipped > 0 {
        eprintln!(
            "warning: skipped {} unreadable files in {}",
            datasets.skipped,
            opts.data_root.display()
        );
    }
    let (bs, accum) = (cfg.train.batch_size, cfg.train.accumulation_steps);
    let spe = steps_per_epoch(datasets.train.len(), bs, accum);
    if spe == 0 {
        return Err(DataError::Unusable(format!(
            "the training split has {} samples, fewer than one optimizer step needs (train.batch_size {bs} x train.accumulation_steps {accum})",
            datasets.train.len()
        ))
        .into());
    }
    let mut total_steps = spe * cfg.train.epochs;
    if cfg.train.max_steps > 0 {
        total_steps = total_steps.min(cfg.train.max_steps);
    }
    let global_batch = bs * accum;
    let peak = peak_lr(cfg.optim.base_lr, global_batch, cfg.optim.scale_lr_by_batch);
    let warmup = ((cfg.optim.warmup_epochs * spe as f64).round() as usize).min(total_steps);

    let base = opts.device.clone();
    let ad = base.clone().autodiff();
    base.seed(cfg.seed);
    ad.seed(cfg.seed);
    let encoder = modality.init_encoder(&cfg.encoder, &cfg.data, &ad)?;
    let mut online = OnlineNetwork::new(encoder, &cfg.byol, &ad);
    let mut target = online.make_target();
    let mut optim: ModuleOptimizer = build_optimizer(&cfg.optim);
    let mut step = 0usize;
    let mut prior_seconds = 0.0;
    let mut skipped_steps: Vec<usize> = Vec::new();
    if let Some(dir) = &resume_from {
        let state = checkpoint::read_state(dir)?;
        if resume_identity(&state.config) != resume_identity(&config_json) {
            return Err(TrainError::Resume(format!(
                "--resume: the checkpoint {} was written with a different config; resume with the run's own {}",
                dir.display(),
                out.join("config.toml").display()
            )));
        }
        (online, target, optim) = load_networks(dir, online, target, optim)?;
        modality.restore_state(&state.modality_state)?;
        step = state.step;
        prior_seconds = state.train_seconds;
        skipped_steps = state.skipped_steps;
        eprintln!(
            "resuming from {} (step {step} of {total_steps})",
            dir.display()
        );
    }
    let mut metrics = MetricsWriter::open(&out.join("metrics.jsonl"), step).map_err(io_err(out))?;

    let views = Arc::new((cfg.augment.view1, cfg.augment.view2));
    let eval_ops = Arc::new(cfg.augment.eval);
    let workers = resolve_workers(cfg.train.num_workers);
    let train_items = Arc::new(datasets.train.items);
    let bar = progress_bar(opts.progress, total_steps, step);
    let say = |msg: String| {
        if bar.is_hidden() {
            eprintln!("{msg}")
        } else {
            bar.println(msg)
        }
    };
    let save = |online: &OnlineNetwork<M::Encoder>,
                target: &TargetNetwork<M::Encoder>,
                optim: &ModuleOptimizer,
                step: usize,
                secs: f64,
                skipped_steps: &[usize]| {
        let state = CheckpointState {
            modality: modality.name().to_string(),
            step,
            total_steps,
            train_seconds: secs,
            config: config_json.clone(),
            modality_state: modality.state(),
            skipped_steps: skipped_steps.to_vec(),
        };
        // burn defers BatchNorm running-statistic updates; `valid()` applies them, so the
        // checkpoint holds the current statistics.
        let _ = (online.valid(), target.valid());
        checkpoint::save_checkpoint(&ckpt_root, &state, cfg.train.keep_checkpoints, |dir| {
            online
                .clone()
                .save_file(dir.join("online.bpk"))
                .map_err(|e| format!("online.bpk: {e}"))?;
            target
                .clone()
                .save_file(dir.join("target.bpk"))
                .map_err(|e| format!("target.bpk: {e}"))?;
            optim
                .save(dir.join("optimizer.bpk"))
                .map_err(|e| format!("optimizer.bpk: {e}"))
        })
    };
    if cfg.train.on_nan == OnNan::Rollback && checkpoint::list_checkpoints(&ckpt_root).is_empty() {
        // A rollback needs a state to go back to before the first periodic checkpoint.
        save(
            &online,
            &target,
            &optim,
            step,
            prior_seconds,
            &skipped_steps,
        )?;
    }

    let train_start = Instant::now();
    let mut window = (Instant::now(), 0usize, 0f64); // (start, samples, data wait seconds)
    let mut total_wait = 0f64;
    let mut last_loss = f64::NAN;
    let mut step_loss = 0f64;
    let mut last_collapse = f64::NAN;
    let mut collapse_warned = false;
    let mut faults = 0usize;
    let collapse_floor = COLLAPSE_THRESHOLD / (cfg.byol.projection_dim as f64).sqrt();
    let start_step = step;
    // Where this call stops: the end of the run, or the pause step when it comes first.
    let stop_step = opts
        .pause_at_step
        .map_or(total_steps, |p| p.clamp(step.max(1), total_steps));
    let paused = stop_step < total_steps;
    'steps: while step < stop_step {
        let epoch = step / spe;
        let first_micro = (step % spe) * accum;
        let loader = two_view_epoch(
            modality.clone(),
            train_items.clone(),
            views.clone(),
            cfg.seed,
            epoch,
            bs,
            first_micro,
            workers,
            cfg.train.prefetch_batches,
        );
        let mut accumulator = GradientsAccumulator::<OnlineNetwork<M::Encoder>>::new();
        let mut micro = 0usize;
        // The fault of the step being computed, if any: its later micro-batches are only read.
        let mut fault: Option<String> = None;
        let mut loader = loader.take(spe * accum - first_micro);
        loop {
            let waited = Instant::now();
            let Some(batch) = loader.next() else { break };
            let batch = batch?;
            let wait = waited.elapsed().as_secs_f64();
            window.2 += wait;
            total_wait += wait;
            micro += 1;
            window.1 += bs;
            // Random ops on the device (dropout) draw from a stream fixed by (seed, step,
            // micro-batch), so a resumed run draws what the uninterrupted one did.
            ad.seed(device_seed(cfg.seed, step, micro));
            let replay_skip = skipped_steps.contains(&(step + 1));
            if fault.is_none() && !replay_skip {
                let x1 = modality.to_input(batch.view1, &ad);
                let x2 = modality.to_input(batch.view2, &ad);
                let terms = forward_loss_terms(&online, &target, x1, x2);
                let log_now = (step + 1) % cfg.train.log_every == 0 || step + 1 == total_steps;
                if log_now && micro == accum {
                    last_collapse = collapse_std(terms.projection);
                }
                let values = Tensor::cat(
                    vec![
                        terms.view1_to_view2.clone().detach(),
                        terms.view2_to_view1.clone().detach(),
                    ],
                    0,
                )
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap_or_else(|_| vec![f32::NAN; 2]);
                let (v12, v21) = (values[0], values[1]);
                if !v12.is_finite() {
                    fault = Some(format!("loss {v12} of online(view 1) -> target(view 2)"));
                } else if !v21.is_finite() {
                    fault = Some(format!("loss {v21} of online(view 2) -> target(view 1)"));
                } else {
                    step_loss += (v12 + v21) as f64 / accum as f64;
                    let loss = terms.view1_to_view2 + terms.view2_to_view1;
                    let loss = if accum > 1 {
                        loss.div_scalar(accum as f64)
                    } else {
                        loss
                    };
                    let grads = GradientsParams::from_grads(loss.backward(), &online);
                    if let Some(param) = non_finite_gradient(&online, &grads) {
                        fault = Some(format!("gradient of {param}"));
                    } else {
                        accumulator.accumulate(&online, grads);
                    }
                }
            }
            if micro < accum {
                continue;
            }
            micro = 0;
            let grads = accumulator.grads();
            let lr = warmup_cosine_lr(peak, step, warmup, total_steps);
            let tau = cfg.byol.tau(step, total_steps);
            if let Some(what) = fault.take() {
                let at = step + 1;
                step_loss = 0.0;
                let give_up = cfg.train.on_nan == OnNan::Stop || faults >= cfg.train.max_faults;
                let poisoned = cfg.train.on_nan == OnNan::Skip
                    && non_finite_parameter(&online.valid()).is_some();
                if give_up || poisoned {
                    let why = if poisoned {
                        "; the faulty batch also made the online network's BatchNorm statistics non-finite, which only --on-nan rollback undoes".to_string()
                    } else if cfg.train.on_nan != OnNan::Stop {
                        format!(" after {faults} earlier faults (train.max_faults)")
                    } else {
                        String::new()
                    };
                    return Err(TrainError::NonFinite {
                        step: at,
                        epoch,
                        what: format!("{what}{why}"),
                        checkpoints: ckpt_root.clone(),
                    });
                }
                faults += 1;
                skipped_steps.push(at);
                if cfg.train.on_nan == OnNan::Rollback {
                    let newest =
                        *checkpoint::list_checkpoints(&ckpt_root)
                            .last()
                            .ok_or_else(|| {
                                TrainError::Resume(format!(
                                    "--on-nan rollback: no checkpoint left in {}",
                                    ckpt_root.display()
                                ))
                            })?;
                    let dir = checkpoint::checkpoint_dir(&ckpt_root, newest);
                    (online, target, optim) = load_networks(&dir, online, target, optim)?;
                    say(format!(
                        "warning: {what} at optimizer step {at}: rolled back to the checkpoint of step {newest}; step {at} will be skipped (fault {faults} of at most {})",
                        cfg.train.max_faults
                    ));
                    step = newest;
                    metrics = MetricsWriter::open(&out.join("metrics.jsonl"), step)
                        .map_err(io_err(out))?;
                    bar.set_position(step as u64);
                    continue 'steps;
                }
                say(format!(
                    "warning: {what} at optimizer step {at}: its update is skipped (fault {faults} of at most {})",
                    cfg.train.max_faults
                ));
            } else if !skipped_steps.contains(&(step + 1)) {
                last_loss = std::mem::take(&mut step_loss);
                online = optim.step(lr, online, grads);
                target = ema_update(target, &online, tau)?;
            }
            step += 1;
            bar.set_position(step as u64);
            let log_now = step % cfg.train.log_every == 0 || step == total_steps;
            if log_now {
                let secs = window.0.elapsed().as_secs_f64().max(1e-9);
                let record = MetricsRecord {
                    step,
                    epoch,
                    loss: last_loss,
                    lr,
                    tau,
                    collapse_std: last_collapse,
                    images_per_sec: window.1 as f64 / secs,
                    data_wait_fraction: (window.2 / secs).min(1.0),
                    collapsed: last_collapse < collapse_floor,
                };
                if record.collapsed && !collapse_warned {
                    collapse_warned = true;
                    say(format!(
                        "warning: representation collapse at step {step}: std of the normalized projections {:.5} < {:.5} ({COLLAPSE_THRESHOLD} / sqrt(projection_dim)); the outputs no longer depend on the input",
                        record.collapse_std, collapse_floor
                    ));
                }
                metrics.write(&record).map_err(io_err(out))?;
                let line = format!(
                    "loss {:.4} | lr {:.4} | tau {:.5} | collapse {:.4} | {:.0} img/s",
                    record.loss, record.lr, record.tau, record.collapse_std, record.images_per_sec
                );
                if bar.is_hidden() {
                    eprintln!("step {step}/{total_steps} epoch {epoch} | {line}");
                } else {
                    bar.set_message(line);
                }
                window = (Instant::now(), 0, 0.0);
            }
            if cfg.train.checkpoint_every > 0
                && step % cfg.train.checkpoint_every == 0
                && step < total_steps
            {
                save(
                    &online,
                    &target,
                    &optim,
                    step,
                    prior_seconds + train_start.elapsed().as_secs_f64(),
                    &skipped_steps,
                )?;
            }
            if step >= stop_step {
                break;
            }
        }
    }
    bar.finish_and_clear();
    let train_seconds = train_start.elapsed().as_secs_f64();
    let steps_run = step - start_step;
    let images_per_sec = (steps_run * global_batch) as f64 / train_seconds.max(1e-9);
    let total_train_seconds = prior_seconds + train_seconds;
    if existing.last() != Some(&step) {
        save(
            &online,
            &target,
            &optim,
            step,
            total_train_seconds,
            &skipped_steps,
        )?;
    }

    if opts.random_init {
        eprintln!("evaluating (kNN and linear probe, trained and random-init encoders)...");
    } else {
        eprintln!("evaluating (kNN and linear probe) at step {step}...");
    }
    let eval_data = EvalData {
        train: train_items,
        train_labels: datasets.train.label_sets,
        test: Arc::new(datasets.test.items),
        test_labels: datasets.test.label_sets,
    };
    let trained = online.encoder.valid();
    // Every evaluation reports a random-init encoder of the same architecture (DESIGN.md).
    base.seed(cfg.seed.wrapping_add(0x9E37_79B9));
    // `valid()` right away: burn initializes parameters lazily, at their first use, so without it
    // the draws would follow the forward pass's order of parameters instead of the module's.
    let random_init = if opts.random_init {
        Some(
            modality
                .init_encoder(&cfg.encoder, &cfg.data, &base)?
                .valid(),
        )
    } else {
        None
    };
    let probes = evaluate_encoder(
        &modality,
        &cfg.eval,
        cfg.seed,
        &trained,
        random_init.as_ref(),
        &eval_data,
        &eval_ops,
        workers,
        &base,
    )?;

    let results = serde_json::json!({
        "modality": modality.name(),
        "dataset": datasets.name,
        "seed": cfg.seed,
        "config": config_json,
        "steps": step,
        "total_steps": total_steps,
        "paused": paused,
        "epochs": (step as f64) / (spe as f64),
        "global_batch": global_batch,
        "peak_lr": peak,
        "train_samples": eval_data.train.len(),
        "eval_split": cfg.eval.split,
        "test_samples": eval_data.test.len(),
        "skipped_files": datasets.skipped,
        "modality_state": modality.state(),
        "wall_seconds": wall.elapsed().as_secs_f64(),
        "train_seconds": total_train_seconds,
        "train_images_per_sec": images_per_sec,
        "data_wait_fraction": if train_seconds > 0.0 { total_wait / train_seconds } else { 0.0 },
        "final_loss": last_loss,
        "final_collapse_std": last_collapse,
        "collapsed": last_collapse < collapse_floor,
        "probes": probes,
    });
    let text = serde_json::to_string_pretty(&results).expect("results serialize");
    let file = if paused {
        format!("results-step-{step}.json")
    } else {
        "results.json".to_string()
    };
    crate::fsutil::write_atomic(&out.join(file), text.as_bytes()).map_err(io_err(out))?;
    Ok(RunReport { results, probes })
}

/// With `eval.split = "validation"`, replaces the test split by a seeded part of the training
/// split (which pre-training then does not see either); the test split is never read.
pub(crate) fn apply_eval_split<I>(
    datasets: &mut Datasets<I>,
    eval: &crate::config::EvalConfig,
    seed: u64,
) {
    if eval.split == EvalSplit::Validation {
        let train = std::mem::replace(
            &mut datasets.train,
            Split {
                items: Vec::new(),
                label_sets: Vec::new(),
            },
        );
        let (rest, validation) = train.hold_out(eval.validation_fraction, seed);
        datasets.train = rest;
        datasets.test = validation;
    }
}

/// Every label set must have at least two classes among the training samples and some test
/// samples, or the probes have nothing to tell apart.
///
/// # Errors
/// [`DataError::Unusable`] naming the dataset, the label set and its classes.
pub(crate) fn check_probe_labels<I>(datasets: &Datasets<I>) -> Result<(), DataError> {
    if datasets.test.is_empty() {
        return Err(DataError::Unusable(format!(
            "{}: the evaluation split has no samples",
            datasets.name
        )));
    }
    for ls in &datasets.train.label_sets {
        let mut present: Vec<usize> = ls
            .labels
            .iter()
            .copied()
            .filter(|&l| l != crate::data::LabelSet::UNLABELED)
            .collect();
        present.sort_unstable();
        present.dedup();
        if present.len() < 2 {
            let names: Vec<&str> = present
                .iter()
                .filter_map(|&c| ls.classes.get(c).map(String::as_str))
                .collect();
            return Err(DataError::Unusable(format!(
                "{}: the training split has {} class(es) of label set `{}` ({}); the linear probe and kNN need at least 2",
                datasets.name,
                present.len(),
                ls.name,
                names.join(", ")
            )));
        }
    }
    Ok(())
}

/// The part of a resolved config that a resumed run must share with its checkpoint: all of it
/// but the keys that only say how to react to faults (`train.on_nan`, `train.max_faults`) and
/// how to evaluate the encoder afterwards (every `eval` key but `split` and
/// `validation_fraction`, which decide what pre-training sees), and the fine-tuning ops.
fn resume_identity(config: &serde_json::Value) -> serde_json::Value {
    let mut c = config.clone();
    if let Some(train) = c.get_mut("train").and_then(|t| t.as_object_mut()) {
        train.remove("on_nan");
        train.remove("max_faults");
    }
    if let Some(eval) = c.get_mut("eval").and_then(|t| t.as_object_mut()) {
        eval.retain(|k, _| k == "split" || k == "validation_fraction");
    }
    if let Some(augment) = c.get_mut("augment").and_then(|t| t.as_object_mut()) {
        augment.remove("finetune");
    }
    c
}

/// The seed of the device's random stream for micro-batch `micro` (1-based) of optimizer step
/// `step` (0-based): a SplitMix64 mix, so neighbouring steps get unrelated streams.
fn device_seed(seed: u64, step: usize, micro: usize) -> u64 {
    let mut z = seed
        ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ (micro as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Loads the online and target networks and the optimizer state of the checkpoint in `dir`.
///
/// # Errors
/// [`CheckpointError`] naming the file that fails to load and why.
fn load_networks<E: crate::Encoder>(
    dir: &Path,
    online: OnlineNetwork<E>,
    target: TargetNetwork<E>,
    optim: ModuleOptimizer,
) -> Result<(OnlineNetwork<E>, TargetNetwork<E>, ModuleOptimizer), TrainError> {
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

/// The stored report of a run whose newest checkpoint is its last step, when `results.json`
/// exists: `--resume` of a finished run shows its results instead of evaluating again and
/// overwriting them.
fn finished_report(
    dir: &Path,
    out: &Path,
    config: &serde_json::Value,
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
    eprintln!(
        "the run in {} is already finished (step {} of {}); its results:",
        out.display(),
        state.step,
        state.total_steps
    );
    Ok(Some(RunReport { results, probes }))
}

fn progress_bar(enabled: bool, total: usize, at: usize) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} steps | {msg} | ETA {eta}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_position(at as u64);
    bar
}

/// The splits an evaluation reads: shared items (for the worker threads) and label sets.
pub struct EvalData<I> {
    /// Items the probes are fitted on.
    pub train: Arc<Vec<I>>,
    /// Label sets of `train`.
    pub train_labels: Vec<crate::data::LabelSet>,
    /// Held-out items the probes are scored on.
    pub test: Arc<Vec<I>>,
    /// Label sets of `test`, in the same order as `train_labels`.
    pub test_labels: Vec<crate::data::LabelSet>,
}

/// Evaluates `trained` (and `random_init`, when given) with kNN and a linear probe for every
/// label set of the test split. Both encoders must be validation copies on the plain `device`;
/// nothing here changes them.
///
/// # Errors
/// [`TrainError::Worker`] when feature extraction fails.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_encoder<M: Modality>(
    modality: &Arc<M>,
    eval: &crate::config::EvalConfig,
    seed: u64,
    trained: &M::Encoder,
    random_init: Option<&M::Encoder>,
    data: &EvalData<M::Item>,
    eval_ops: &Arc<Vec<M::Op>>,
    workers: usize,
    device: &Device,
) -> Result<Vec<ProbeResult>, TrainError> {
    let features = |enc: &M::Encoder| -> Result<_, TrainError> {
        let tr = extract_features(
            modality,
            enc,
            data.train.clone(),
            eval_ops.clone(),
            eval.batch_size,
            workers,
            device,
        )?;
        let te = extract_features(
            modality,
            enc,
            data.test.clone(),
            eval_ops.clone(),
            eval.batch_size,
            workers,
            device,
        )?;
        Ok((tr, te))
    };
    let trained_f = features(trained)?;
    let random_f = random_init.map(features).transpose()?;
    let probe_cfg = ProbeConfig {
        epochs: eval.probe_epochs,
        lr: eval.probe_lr,
        weight_decay: eval.probe_weight_decay,
        batch_size: eval.probe_batch_size,
        seed,
    };
    let mut out = Vec::new();
    for (train_ls, test_ls) in data.train_labels.iter().zip(&data.test_labels) {
        let classes = train_ls.classes.len().max(test_ls.classes.len());
        // Samples outside this labelling (`LabelSet::UNLABELED`) are left out of its probes.
        let (train_rows, test_rows) = (train_ls.labelled(), test_ls.labelled());
        let pick = |labels: &[usize], rows: &[usize]| -> Vec<usize> {
            rows.iter().map(|&i| labels[i]).collect()
        };
        let (train_labels, test_labels) = (
            pick(&train_ls.labels, &train_rows),
            pick(&test_ls.labels, &test_rows),
        );
        let select = |(tr, te): &(crate::eval::Features, crate::eval::Features)| {
            (tr.select(&train_rows), te.select(&test_rows))
        };
        let knn = |f: &(crate::eval::Features, crate::eval::Features)| {
            let (tr, te) = select(f);
            knn_top1(
                &tr,
                &train_labels,
                &te,
                &test_labels,
                classes,
                eval.knn_k,
                eval.knn_temperature,
                device,
            )
        };
        let linear = |f: &(crate::eval::Features, crate::eval::Features)| {
            let (tr, te) = select(f);
            linear_probe_top1(
                &tr,
                &train_labels,
                &te,
                &test_labels,
                classes,
                &probe_cfg,
                device,
            )
        };
        out.push(ProbeResult {
            probe: "knn".into(),
            labels: train_ls.name.clone(),
            classes,
            trained_top1: knn(&trained_f),
            random_init_top1: random_f.as_ref().map(knn),
        });
        out.push(ProbeResult {
            probe: "linear".into(),
            labels: train_ls.name.clone(),
            classes,
            trained_top1: linear(&trained_f),
            random_init_top1: random_f.as_ref().map(linear),
        });
    }
    Ok(out)
}
