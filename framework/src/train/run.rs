//! `train_and_evaluate`: BYOL pre-training of a modality's encoder, then evaluation beside a
//! random-init baseline, with checkpoints, resume, a metrics log and `results.json`. The step
//! itself is [`crate::byol::update()`]; the loop around it is `train_loop`.

use super::config_warnings::config_warnings;
use super::metrics::MetricsWriter;
use super::progress::Progress;
use super::results::{RunReport, collapse_floor, write_results};
use super::resume::{Checkpointer, finished_report, load_state, resume_identity, resume_point};
use super::run_lock::RunLock;
use super::stop::StopRequest;
use super::train_loop::{LoopSetup, draw_initial_parameters, run_steps};
use crate::byol::{ByolState, OnlineNetwork, OnlineProbe, StepSchedules, TargetEma};
use crate::checkpoint;
use crate::config::{ConfigError, ExperimentConfig, OnNan, Precision};
use crate::data::loader::{StreamSkips, resolve_workers};
use crate::data::{DataError, Datasets, EvalData, LabelSet};
use crate::encoder::Encoder;
use crate::error::{TrainError, io_err};
use crate::eval::{ProbeResult, evaluate_encoder, prepare_eval_data};
use crate::modality::Modality;
use crate::optim::{LrSchedule, build_optimizer, peak_lr};
use crate::replicas::ReplicaGroup;
use burn::module::Module;
use burn::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

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
    /// Evaluate a random-init encoder beside the trained one (docs/design.md: every reported
    /// evaluation has one; the augmentation search turns it off for its trials, whose scores
    /// are only compared with each other).
    pub random_init: bool,
    /// A stop request checked after every optimizer step (the `ssl` binary sets it on SIGINT
    /// and SIGTERM): the run then writes a checkpoint and returns
    /// [`TrainError::Interrupted`]. Default: never set.
    pub stop: StopRequest,
    /// The data-parallel ranks this process trains with (one process by default). Every rank
    /// calls [`train_and_evaluate`] with the same config and folders; rank 0 alone writes the
    /// run's files and evaluates, the others return after training with a report that holds
    /// only their rank and step. `train.sync_batch_norm` decides SyncBN.
    pub replicas: ReplicaGroup,
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
            stop: StopRequest::new(),
            replicas: ReplicaGroup::single(),
        }
    }
}

/// Checks that `ranks` data-parallel ranks can split the config's batch: evenly, at least 2
/// samples each (BatchNorm needs a batch).
///
/// # Errors
/// [`ConfigError::Value`] on `train.batch_size`.
fn check_shards<M: Modality>(cfg: &ExperimentConfig<M>, ranks: usize) -> Result<(), ConfigError> {
    let bs = cfg.train.batch_size;
    if ranks > 1 && (!bs.is_multiple_of(ranks) || bs / ranks < 2) {
        return Err(ConfigError::Value {
            key: "train.batch_size".into(),
            value: bs.to_string(),
            expected: format!(
                "a multiple of the {ranks} data-parallel ranks with at least 2 samples per rank (the global batch is split evenly)"
            ),
        });
    }
    Ok(())
}

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
    mut cfg: ExperimentConfig<M>,
    opts: &RunOptions,
) -> Result<RunReport, TrainError> {
    let wall = Instant::now();
    cfg.validate()?;
    cfg.train.precision.check_device(&opts.device)?;
    #[cfg(feature = "cpu-kernels")]
    let sync_runs_here = ssl_kernels::is_flex(&opts.device);
    #[cfg(not(feature = "cpu-kernels"))]
    let sync_runs_here = false;
    // Which vector code our CPU kernels run (ssl_kernels::cpu_path), for results.json.
    #[cfg(feature = "cpu-kernels")]
    let cpu_path = sync_runs_here.then(|| ssl_kernels::cpu_path::path().name());
    #[cfg(not(feature = "cpu-kernels"))]
    let cpu_path: Option<&str> = None;
    // SyncBN runs in the CPU kernels: elsewhere each rank normalizes alone, and says so.
    let group = opts
        .replicas
        .clone()
        .with_sync_batch_norm(cfg.train.sync_batch_norm && sync_runs_here);
    let (ranks, writes) = (group.ranks(), group.writes());
    check_shards(&cfg, ranks)?;
    let mut warnings = config_warnings(&cfg);
    if cfg.train.precision != Precision::F32 && sync_runs_here && writes {
        eprintln!(
            "note: train.precision = \"{}\" on the CPU: the step runs in burn's half-precision ops instead of our f32 kernels, several times slower than f32 (BENCHMARKS.md); mixed precision is for GPUs",
            cfg.train.precision.name()
        );
    }
    if writes {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
    }
    let config_json = cfg.to_json();
    let out = &opts.out_dir;
    // One process per run folder: locked now when it exists, else as soon as it is made.
    let lock = if out.is_dir() && writes {
        Some(RunLock::acquire(out)?)
    } else {
        None
    };
    let ckpt_root = out.join("checkpoints");
    let existing = checkpoint::list_checkpoints(&ckpt_root);
    let resume_from = resume_point(opts.resume, out, &ckpt_root, &existing)?;
    // Every rank has seen the folder as it was before rank 0 writes to it.
    group.any(false)?;
    if let Some(dir) = &resume_from
        && let Some(report) = finished_report(dir, out, &config_json, writes)?
    {
        return Ok(report);
    }

    let modality = Arc::new(modality);
    let mut datasets: Datasets<M::Item> = modality.load(&cfg.data, &opts.data_root)?;
    let (separate_eval, eval_notes) = prepare_eval_data(&*modality, &cfg, &mut datasets)?;
    if writes {
        for note in &eval_notes {
            eprintln!("note: {note}");
        }
    }
    // The output folder is made only once the data is known to be usable.
    if writes {
        std::fs::create_dir_all(out).map_err(io_err(out))?;
    }
    let _lock = match lock {
        Some(held) => Some(held),
        None if writes => Some(RunLock::acquire(out)?),
        None => None,
    };
    // A resumed run's config.toml is rewritten only once the checkpoint has accepted the
    // config and loaded (a refused or failed --resume leaves the run's own config in place).
    if writes && resume_from.is_none() {
        crate::fsutil::write_atomic(&out.join("config.toml"), cfg.to_toml().as_bytes())
            .map_err(io_err(out))?;
    }
    if datasets.skipped > 0 && writes {
        eprintln!(
            "warning: skipped {} files in {} (named above)",
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
    let schedules = StepSchedules {
        lr: LrSchedule::WarmupCosine {
            peak,
            warmup_steps: ((cfg.optim.warmup_epochs * spe as f64).round() as usize)
                .min(total_steps),
            total_steps,
        },
        ema: TargetEma::new(&cfg.byol, total_steps),
        accumulation: accum,
        precision: cfg.train.precision,
    };
    if ranks > 1 && cfg.train.sync_batch_norm && !sync_runs_here && writes {
        eprintln!(
            "warning: SyncBN runs in the CPU kernels only: on this device each rank's BatchNorm uses its own shard's statistics (train.sync_batch_norm = false says so explicitly)"
        );
    }
    if ranks > 1 && writes {
        eprintln!(
            "data parallel: {ranks} ranks, global batch {global_batch} ({ranks} x {} per forward pass{}); peak lr {peak:.4} and the tau schedule from the global batch; SyncBN {}",
            bs / ranks,
            if accum > 1 {
                format!(", {accum} accumulation steps")
            } else {
                String::new()
            },
            if group.sync_batch_norm {
                "on"
            } else {
                "off (each rank's own statistics)"
            }
        );
    }

    let base = opts.device.clone();
    let ad = base.clone().autodiff();
    base.seed(cfg.seed);
    ad.seed(cfg.seed);
    let encoder = modality.init_encoder(&cfg.encoder, &cfg.data, &ad)?;
    let precision = cfg.train.precision;
    if precision != Precision::F32 && !encoder.mixed_precision() {
        return Err(ConfigError::value(
            "train.precision",
            precision.name(),
            format!(
                "the {} encoder computes in f32 only (it does not declare Encoder::mixed_precision)",
                modality.name()
            ),
        )
        .into());
    }
    let representation_dim = encoder.dim();
    let mut state = ByolState::new(
        OnlineNetwork::new(encoder, &cfg.byol, &ad),
        build_optimizer(&cfg.optim),
    );
    // The online probe on the pre-training data's first label set, when it has one.
    let probe_labels = datasets
        .train
        .label_sets
        .first()
        .filter(|set| cfg.eval.online_probe && set.classes.len() >= 2)
        .map(|set| {
            state.probe = Some(OnlineProbe::new(
                representation_dim,
                set.classes.len(),
                cfg.eval.online_probe_lr,
                &base,
            ));
            Arc::new(
                set.labels
                    .iter()
                    .map(|&l| (l != LabelSet::UNLABELED).then_some(l))
                    .collect::<Vec<_>>(),
            )
        });
    let mut prior_seconds = 0.0;
    let mut skipped_steps: Vec<usize> = Vec::new();
    if let Some(dir) = &resume_from {
        let stored = checkpoint::read_state(dir)?;
        if resume_identity(&stored.config) != resume_identity(&config_json) {
            return Err(TrainError::Resume(format!(
                "--resume: the checkpoint {} was written with a different config; resume with the run's own {}",
                dir.display(),
                out.join("config.toml").display()
            )));
        }
        state = load_state(dir, state, stored.step)?;
        modality.restore_state(&stored.modality_state)?;
        if writes {
            crate::fsutil::write_atomic(&out.join("config.toml"), cfg.to_toml().as_bytes())
                .map_err(io_err(out))?;
        }
        prior_seconds = stored.train_seconds;
        skipped_steps = stored.skipped_steps;
        if writes {
            eprintln!(
                "resuming from {} (step {} of {total_steps})",
                dir.display(),
                state.step
            );
            if stored.ranks != ranks {
                let written = match stored.ranks {
                    1 => "one process".to_string(),
                    n => format!("{n} ranks"),
                };
                let now = match ranks {
                    1 => "one process".to_string(),
                    n => format!("{n} ranks, {} samples each per forward pass", bs / n),
                };
                eprintln!(
                    "note: the checkpoint was written by {written}, this run has {now}: the global batch stays {global_batch}"
                );
            }
        }
    }
    let start_step = state.step;
    opts.stop.require_clean_stop();
    let mut metrics = MetricsWriter::open_if(writes, &out.join("metrics.jsonl"), start_step)
        .map_err(io_err(out))?;
    let checkpointer = Checkpointer {
        root: ckpt_root,
        modality: modality.name().to_string(),
        config: config_json.clone(),
        total_steps,
        keep: cfg.train.keep_checkpoints,
        data_root: Some(
            std::path::absolute(&opts.data_root).unwrap_or_else(|_| opts.data_root.clone()),
        ),
        writes,
        ranks,
    };
    if ranks > 1 && resume_from.is_none() {
        draw_initial_parameters(&state, cfg.seed, &ad);
    }
    if cfg.train.on_nan == OnNan::Rollback && checkpointer.newest().is_none() {
        // A rollback needs a state to go back to before the first periodic checkpoint.
        checkpointer.save(&state, prior_seconds, &skipped_steps, modality.state())?;
    }

    // The pipelines move out of the config, which the loop reads for everything else.
    let views = Arc::new((
        std::mem::take(&mut cfg.augment.view1),
        std::mem::take(&mut cfg.augment.view2),
    ));
    let eval_ops = Arc::new(std::mem::take(&mut cfg.augment.eval));
    let workers = resolve_workers(cfg.train.num_workers);
    let train_items = Arc::new(datasets.train.items);
    let mut progress = if writes {
        Progress::new(opts.progress, total_steps, start_step)
    } else {
        Progress::quiet(total_steps, start_step)
    };
    // Where this call stops: the end of the run, or the pause step when it comes first.
    let stop_step = opts
        .pause_at_step
        .map_or(total_steps, |p| p.clamp(start_step.max(1), total_steps));
    let paused = stop_step < total_steps;
    let skips = Arc::new(StreamSkips::default());
    let setup = LoopSetup {
        modality: &modality,
        cfg: &cfg,
        train_items: train_items.clone(),
        views,
        skips: skips.clone(),
        workers,
        steps_per_epoch: spe,
        total_steps,
        schedules,
        device: ad.clone(),
        checkpointer: &checkpointer,
        out,
        stop: &opts.stop,
        replicas: &group,
        probe_labels,
    };
    let train_start = Instant::now();
    let (state, end) = run_steps(
        &setup,
        state,
        stop_step,
        &mut skipped_steps,
        prior_seconds,
        train_start,
        &mut progress,
        &mut metrics,
    )?;
    progress.finish();
    // Records that could not be read, over every rank's shards.
    let skipped_in_training = if ranks > 1 {
        group
            .gather(&[skips.count() as f64], "skipped records")?
            .iter()
            .sum::<f64>() as usize
    } else {
        skips.count()
    };
    if skipped_in_training > 0 && writes {
        eprintln!(
            "warning: {skipped_in_training} training samples could not be read and were replaced by the next ones (the first {} named above); counted in results.json skipped_files",
            StreamSkips::NAMED.min(skips.count())
        );
    }
    let train_seconds = train_start.elapsed().as_secs_f64();
    let step = state.step;
    let images_per_sec = ((step - start_step) * global_batch) as f64 / train_seconds.max(1e-9);
    let total_train_seconds = prior_seconds + train_seconds;
    if existing.last() != Some(&step) {
        checkpointer.save(
            &state,
            total_train_seconds,
            &skipped_steps,
            modality.state(),
        )?;
    }

    // A stop asked for during the last step: the final checkpoint is written; `--resume`
    // evaluates it.
    if let Some(signal) = opts.stop.requested() {
        return Err(TrainError::Interrupted {
            signal,
            step,
            total_steps,
            checkpoint: checkpoint::checkpoint_dir(&checkpointer.root, step),
        });
    }
    if !writes {
        // Rank 0 evaluates and writes the results; this rank's part ends with training.
        return Ok(RunReport {
            results: serde_json::json!({ "rank": group.rank(), "ranks": ranks, "steps": step }),
            probes: Vec::new(),
        });
    }
    let pretrain_samples = train_items.len();
    let eval_data = match separate_eval {
        Some(eval) => EvalData::from_datasets(eval),
        None => EvalData {
            train: train_items,
            train_labels: datasets.train.label_sets,
            test: Arc::new(datasets.test.items),
            test_labels: datasets.test.label_sets,
        },
    };
    let what = if eval_data.train_labels.is_empty() {
        "label-free metrics"
    } else {
        "kNN and linear probe"
    };
    // The final checkpoint is written: a signal from now on may end the process at once.
    opts.stop.allow_immediate_exit();
    let hint = if opts.stop.allows_immediate_exit() {
        "; Ctrl-C now quits at once, --resume evaluates again"
    } else {
        ""
    };
    if opts.random_init {
        eprintln!("evaluating ({what}, trained and random-init encoders{hint})...");
    } else {
        eprintln!("evaluating ({what}) at step {step}{hint}...");
    }
    let trained = state.online.encoder.valid();
    // Every evaluation reports a random-init encoder of the same architecture (docs/design.md).
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
    let evaluation = evaluate_encoder(
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
    let probes = evaluation.probes;

    let floor = collapse_floor(cfg.byol.projection_dim);
    warnings.extend(end.watch.warnings.iter().cloned());
    for w in below_random_init(&probes, &eval_data.test_labels) {
        eprintln!("warning: {w}");
        warnings.push(w);
    }
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
        "ranks": ranks,
        "replica_checks": if ranks > 1 { serde_json::Value::from(end.replica_checks) } else { serde_json::Value::Null },
        "sync_batch_norm": if ranks > 1 { serde_json::Value::Bool(group.sync_batch_norm) } else { serde_json::Value::Null },
        "peak_lr": peak,
        "cpu_path": cpu_path,
        "data": std::path::absolute(&opts.data_root).unwrap_or_else(|_| opts.data_root.clone()),
        "pretrain_samples": pretrain_samples,
        "eval_data": if cfg.eval.data.is_empty() { serde_json::Value::Null } else { cfg.eval.data.clone().into() },
        "train_samples": eval_data.train.len(),
        "eval_split": cfg.eval.split,
        "test_samples": eval_data.test.len(),
        "eval_notes": eval_notes,
        "representation": evaluation.representation,
        "skipped_files": datasets.skipped + skipped_in_training,
        "modality_state": modality.state(),
        "wall_seconds": wall.elapsed().as_secs_f64(),
        "train_seconds": total_train_seconds,
        "train_images_per_sec": images_per_sec,
        "data_wait_fraction": if train_seconds > 0.0 { progress.total_wait / train_seconds } else { 0.0 },
        "final_loss": end.last_loss,
        "final_collapse_std": end.last_collapse.map_or(f64::NAN, |c| c.std),
        "final_effective_rank": end.last_collapse.map_or(f64::NAN, |c| c.rank),
        "collapsed": end.last_collapse.is_some_and(|c| c.std < floor),
        "probes": probes,
        "warnings": warnings,
    });
    write_results(out, &results, paused, step)?;
    Ok(RunReport { results, probes })
}

/// One sentence for every probe on which the trained encoder scores below the random-init
/// encoder of the same architecture by more than the standard error of the difference
/// (`sqrt(p1 (1 - p1) / n + p2 (1 - p2) / n)` for `n` scored samples: a gap that one or two
/// samples of a small split make is no finding). `test_labels` gives each label set's `n`.
pub fn below_random_init(probes: &[ProbeResult], test_labels: &[LabelSet]) -> Vec<String> {
    probes
        .iter()
        .filter_map(|p| {
            let random = p.random_init_top1?;
            let n = test_labels
                .iter()
                .find(|ls| ls.name == p.labels)
                .map_or(0, |ls| ls.labelled().len())
                .max(1) as f64;
            let trained = p.trained_top1;
            let se = (trained * (1.0 - trained) / n + random * (1.0 - random) / n).sqrt();
            (random - trained > se).then(|| {
                format!(
                    "the trained encoder scores below the random-init encoder on {} `{}`: {:.2}% < {:.2}% ({} samples; more than the standard error of the difference, {:.2} points); pre-training made the representation worse (see the warnings above and README, \"When a run fails\")",
                    p.probe,
                    p.labels,
                    trained * 100.0,
                    random * 100.0,
                    n,
                    se * 100.0
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(trained: f64, random: f64) -> ProbeResult {
        ProbeResult {
            probe: "linear".into(),
            labels: "class".into(),
            classes: 10,
            trained_top1: trained,
            random_init_top1: Some(random),
            samples: 100,
        }
    }

    fn labels(n: usize) -> Vec<LabelSet> {
        vec![LabelSet {
            name: "class".into(),
            classes: (0..10).map(|c| c.to_string()).collect(),
            labels: (0..n).map(|i| i % 10).collect(),
        }]
    }

    #[test]
    fn below_random_init_needs_more_than_the_standard_error() {
        // The AdamW run: 20.6% against 30.8% on 10,000 test images.
        let w = below_random_init(&[probe(0.206, 0.308)], &labels(10_000));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("20.60% < 30.80% (10000 samples"), "{w:?}");
        // One sample of 300 is noise.
        assert!(below_random_init(&[probe(0.5867, 0.59)], &labels(300)).is_empty());
        // Above random init: nothing to say.
        assert!(below_random_init(&[probe(0.42, 0.38)], &labels(10_000)).is_empty());
    }
}
