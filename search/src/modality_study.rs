//! A study of a [`Modality`] with `ssl train`'s trainer: every trial is a BYOL pre-training
//! run of the base config with the policy's views (`trials/<name>/`, resumable, paused at each
//! rung and continued when promoted), scored by the objective probe on a validation split
//! carved from the training data (`eval.split = "validation"`: the test split is never read
//! during the search); the final runs (`final/<policy>/seed-<s>/`) train on the whole
//! training split and score on the test split, beside a random-init encoder.
//!
//! Once the search phase is over, the trials' checkpoints are removed (their scores are in the
//! journal, their configs, metrics and results in their folders); the final runs keep theirs.
//!
//! Budgets are in optimizer steps: a trial's config gets `train.max_steps` = the full budget
//! (so its learning-rate and tau schedules span the full budget at every rung) and
//! `train.epochs` = the same number as an upper bound (an epoch has at least one step).

use crate::SearchError;
use crate::params::Params;
use crate::policy::{
    Policy, allowed_ops, build, choices, crop_only, describe, param_space, trivial_augment,
};
use crate::settings::SearchSettings;
use crate::study::{
    FinalJob, Outcome, Plan, RunFailure, Runner, StudySummary, TrialJob, run_study,
};
use ssl_framework::Modality;
use ssl_framework::burn::tensor::Device;
use ssl_framework::checkpoint;
use ssl_framework::config::{ExperimentConfig, load_config};
use ssl_framework::eval::RepresentationReport;
use ssl_framework::search_space::clone_ops;
use ssl_framework::train::{RunOptions, RunReport, TrainError, train_and_evaluate};
use std::path::{Path, PathBuf};

/// Where and how a study runs.
#[derive(Debug, Clone)]
pub struct StudyOptions {
    /// Output folder: `journal.jsonl`, `report.md`, plots, `best-policy.toml`, `trials/`,
    /// `final/`.
    pub out: PathBuf,
    /// Dataset folder given to [`Modality::load`].
    pub data_root: PathBuf,
    /// Devices; trials run on all of them at once (one trial per device).
    pub devices: Vec<Device>,
    /// Continue the study in `out`.
    pub resume: bool,
    /// Show each run's progress bar (one device only).
    pub progress: bool,
    /// Stops every trial under way at its next optimizer step, with a checkpoint (the study
    /// then ends with the trial's [`TrainError::Interrupted`]; `resume` goes on from there).
    pub stop: ssl_framework::train::StopRequest,
    /// Under MPI (`mpirun -np N ssl search-augment`): the job's ranks. Rank 0 runs the study
    /// with [`search`] and hands every run to ranks 1 to N-1, which run [`serve_trials`] on
    /// their first device; `None`: this process alone.
    pub ranks: Option<crate::remote::StudyRanks>,
}

struct ModalityRunner<'a, M: Modality, F: Fn() -> M + Sync> {
    make: &'a F,
    base_text: &'a str,
    base_origin: &'a str,
    settings: &'a SearchSettings,
    opts: &'a StudyOptions,
}

impl<M: Modality, F: Fn() -> M + Sync> ModalityRunner<'_, M, F> {
    fn config(
        &self,
        policy: &serde_json::Value,
        extra: &[String],
    ) -> Result<ExperimentConfig<M>, RunFailure> {
        let mut overrides = self.settings.set.clone();
        overrides.extend(extra.iter().cloned());
        let mut cfg = load_config::<M>(self.base_text, self.base_origin, &overrides)
            .map_err(|e| RunFailure::Fatal(SearchError::Settings(e.to_string())))?;
        let policy = Policy::<M::Op>::from_json(policy).map_err(RunFailure::Fatal)?;
        cfg.augment.view1 = policy.view1;
        cfg.augment.view2 = policy.view2;
        Ok(cfg)
    }

    fn run(
        &self,
        cfg: ExperimentConfig<M>,
        dir: &Path,
        worker: usize,
        pause_at_step: Option<usize>,
        random_init: bool,
        context: String,
    ) -> Result<Outcome, RunFailure> {
        let resume = !checkpoint::list_checkpoints(&dir.join("checkpoints")).is_empty();
        let opts = RunOptions {
            out_dir: dir.to_path_buf(),
            data_root: self.opts.data_root.clone(),
            device: self.opts.devices[worker % self.opts.devices.len()].clone(),
            resume,
            progress: self.opts.progress && self.opts.devices.len() == 1,
            pause_at_step,
            random_init,
            // Trials on several devices run at once: each stops at a step boundary.
            stop: if self.opts.devices.len() > 1 {
                self.opts.stop.shared_by_concurrent_runs()
            } else {
                self.opts.stop.clone()
            },
            replicas: Default::default(),
        };
        match train_and_evaluate((self.make)(), cfg, &opts) {
            Ok(report) => {
                let (score, random, labels) =
                    objective(&report, self.settings).map_err(RunFailure::Fatal)?;
                Ok(Outcome {
                    score,
                    detail: serde_json::json!({
                        "objective_labels": labels,
                        "random_init_score": random,
                        "probes": report.probes,
                        "representation": report.results["representation"],
                        "steps": report.results["steps"],
                        "train_seconds": report.results["train_seconds"],
                        "final_loss": report.results["final_loss"],
                        "collapsed": report.results["collapsed"],
                        "run": dir,
                    }),
                })
            }
            Err(e @ TrainError::NonFinite { .. }) => Err(RunFailure::Policy(e.to_string())),
            Err(source) => Err(RunFailure::Fatal(SearchError::Run { context, source })),
        }
    }
}

/// The objective's score (and the random-init encoder's, when evaluated) and label set (empty
/// for `"rankme"`, which reads the run's label-free `representation` report).
fn objective(
    report: &RunReport,
    settings: &SearchSettings,
) -> Result<(f64, Option<f64>, String), SearchError> {
    let want = &settings.objective;
    if !want.needs_labels() {
        let rep: RepresentationReport =
            serde_json::from_value(report.results["representation"].clone()).map_err(|_| {
                SearchError::Settings(
                    "objective.probe = \"rankme\": the run reported no effective rank (fewer than 2 evaluation samples)".into(),
                )
            })?;
        return Ok((
            rep.trained.rank_fraction(),
            rep.random_init.map(|m| m.rank_fraction()),
            String::new(),
        ));
    }
    let probes = &report.probes;
    let mut sets: Vec<&str> = probes.iter().map(|p| p.labels.as_str()).collect();
    sets.dedup();
    let labels: Vec<&str> = match want.labels.as_str() {
        "" => sets.first().copied().into_iter().collect(),
        "all" => sets.clone(),
        l => vec![l],
    };
    let kinds: Vec<&str> = if want.probe == "mean" {
        vec!["knn", "linear"]
    } else {
        vec![want.probe.as_str()]
    };
    // The mean over the label sets and probe kinds asked for (the random-init encoder's too,
    // when every one of them has it).
    let (mut trained, mut random, mut n) = (0.0, Some(0.0), 0usize);
    for l in &labels {
        for k in &kinds {
            let p = probes
                .iter()
                .find(|p| p.probe == *k && p.labels == *l)
                .ok_or_else(|| {
                    SearchError::Settings(format!(
                        "objective.labels = {:?}: the dataset's label sets are {}",
                        want.labels,
                        sets.join(", ")
                    ))
                })?;
            trained += p.trained_top1;
            random = random.zip(p.random_init_top1).map(|(a, b)| a + b);
            n += 1;
        }
    }
    if n == 0 {
        return Err(SearchError::Settings(
            "the run reported no probe (the dataset has no labels)".into(),
        ));
    }
    Ok((
        trained / n as f64,
        random.map(|r| r / n as f64),
        if want.labels == "all" {
            "all".into()
        } else {
            labels.join(",")
        },
    ))
}

impl<M: Modality, F: Fn() -> M + Sync> Runner for ModalityRunner<'_, M, F> {
    fn workers(&self) -> usize {
        self.opts.devices.len()
    }

    fn trial(&self, job: &TrialJob, worker: usize) -> Result<Outcome, RunFailure> {
        let cfg = self.config(
            &job.policy,
            &[
                format!("seed={}", self.settings.seed),
                format!("train.epochs={}", job.full_steps),
                format!("train.max_steps={}", job.full_steps),
                "eval.split=validation".into(),
            ],
        )?;
        let dir = self.opts.out.join("trials").join(&job.name);
        self.run(
            cfg,
            &dir,
            worker,
            Some(job.steps),
            false,
            format!("trial {}", job.name),
        )
    }

    /// The trials' checkpoints are no longer needed (their results are in the journal and
    /// their folders): removed to free the disk (tens of MB a trial). The final runs keep theirs.
    fn search_finished(&self) {
        let trials = self.opts.out.join("trials");
        for entry in std::fs::read_dir(&trials).into_iter().flatten().flatten() {
            let ckpt = entry.path().join("checkpoints");
            if ckpt.is_dir()
                && let Err(e) = std::fs::remove_dir_all(&ckpt)
            {
                eprintln!("warning: could not remove {}: {e}", ckpt.display());
            }
        }
    }

    fn final_run(&self, job: &FinalJob, worker: usize) -> Result<Outcome, RunFailure> {
        let cfg = self.config(
            &job.policy,
            &[
                format!("seed={}", job.seed),
                format!("train.epochs={}", job.steps),
                format!("train.max_steps={}", job.steps),
                "eval.split=test".into(),
            ],
        )?;
        let dir = self
            .opts
            .out
            .join("final")
            .join(&job.policy_name)
            .join(format!("seed-{}", job.seed));
        self.run(
            cfg,
            &dir,
            worker,
            None,
            job.random_init,
            format!("final {} seed {}", job.policy_name, job.seed),
        )
    }
}

/// Checks what can be checked before the data is found: the base config with the study's
/// overrides, the modality's search space and the `[space]` settings against it.
///
/// # Errors
/// [`SearchError::Settings`] naming the key.
pub fn check<M: Modality>(
    modality: &M,
    base_text: &str,
    base_origin: &str,
    settings: &SearchSettings,
) -> Result<(), SearchError> {
    let base = load_config::<M>(base_text, base_origin, &settings.set)
        .map_err(|e| SearchError::Settings(e.to_string()))?;
    let space = modality.search_space(&base).ok_or_else(|| {
        SearchError::Settings(format!(
            "the {} modality declares no augmentation search space (Modality::search_space)",
            modality.name()
        ))
    })?;
    allowed_ops(&space, &settings.space).map(|_| ())
}

/// Runs (or resumes) the augmentation search of modality `make()` on the base config
/// `base_text` (read from `base_origin`, for messages), as `settings` says.
///
/// # Errors
/// [`SearchError`]: an invalid base config or search file (naming the key), a modality
/// without a search space, a journal that does not match, or a run that fails for a reason
/// other than its policy.
pub fn search<M: Modality, F: Fn() -> M + Sync>(
    make: F,
    base_text: &str,
    base_origin: &str,
    settings: &SearchSettings,
    opts: &StudyOptions,
) -> Result<StudySummary, SearchError> {
    if opts.devices.is_empty() {
        return Err(SearchError::Settings("no device given".into()));
    }
    let base = load_config::<M>(base_text, base_origin, &settings.set)
        .map_err(|e| SearchError::Settings(e.to_string()))?;
    let modality = make();
    let space = modality.search_space(&base).ok_or_else(|| {
        SearchError::Settings(format!(
            "the {} modality declares no augmentation search space (Modality::search_space)",
            modality.name()
        ))
    })?;
    let allowed = allowed_ops(&space, &settings.space)?;
    let params = param_space(allowed.len(), &settings.space);
    // The data and the objective's label set, before any training (a typo in
    // `objective.labels` should not surface after the first full-budget run).
    let data = modality
        .load(&base.data, &opts.data_root)
        .map_err(|e| SearchError::Run {
            context: format!("data {}", opts.data_root.display()),
            source: e.into(),
        })?;
    let sets: Vec<&str> = data
        .train
        .label_sets
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    let needs_labels = settings.objective.needs_labels();
    if sets.is_empty() && needs_labels {
        return Err(SearchError::Settings(format!(
            "{}: the dataset has no labels; the objective (a probe) needs a label set, or set objective.probe = \"rankme\" (the effective rank of the features, no labels)",
            opts.data_root.display()
        )));
    }
    if needs_labels
        && !settings.objective.labels.is_empty()
        && settings.objective.labels != "all"
        && !sets.contains(&settings.objective.labels.as_str())
    {
        return Err(SearchError::Settings(format!(
            "objective.labels = {:?}: expected one of the dataset's label sets: {}",
            settings.objective.labels,
            sets.join(", ")
        )));
    }
    drop(data);
    let default = Policy::<M::Op> {
        view1: clone_ops(&base.augment.view1),
        view2: clone_ops(&base.augment.view2),
    };
    let random = trivial_augment::<M>(&space, &allowed, settings.space.random_levels)?;
    let names = |idx: &[usize]| {
        idx.iter()
            .map(|&i| space.ops[i].name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let baselines = vec![
        (
            "default".to_string(),
            default.to_json(),
            format!("the base config's own views ({base_origin})"),
        ),
        (
            "crop-only".to_string(),
            crop_only(&space).to_json(),
            "the modality's crop only (and its finishing ops)".to_string(),
        ),
        (
            "random".to_string(),
            random.to_json(),
            format!(
                "TrivialAugment-style: per sample one op of {} at one of {} magnitudes, uniformly",
                names(&allowed),
                settings.space.random_levels
            ),
        ),
    ];
    let normalize_base = |stored: &serde_json::Value| -> serde_json::Value {
        serde_json::from_value::<ExperimentConfig<M>>(stored.clone())
            .map(|c| c.to_json())
            .unwrap_or_else(|_| stored.clone())
    };
    let decode = |p: &Params| -> Result<(serde_json::Value, String), SearchError> {
        let c = choices(&space, &allowed, &settings.space, p);
        let policy = build::<M>(&space, &c)?;
        Ok((policy.to_json(), describe(&c)))
    };
    let plan = Plan {
        modality: modality.name().to_string(),
        settings: settings.clone(),
        space: params,
        baselines,
        decode: &decode,
        ops: allowed
            .iter()
            .map(|&i| {
                (
                    space.ops[i].name.to_string(),
                    space.ops[i].magnitude.to_string(),
                )
            })
            .collect(),
        base: base.to_json(),
        normalize_base: Some(&normalize_base),
    };
    let runner = ModalityRunner {
        make: &make,
        base_text,
        base_origin,
        settings,
        opts,
    };
    // The base config as the user wrote it (without the study's overrides, which tune short
    // runs) with the searched views.
    let write_policy = |policy: &serde_json::Value, path: &Path| -> Result<(), SearchError> {
        let mut cfg = load_config::<M>(base_text, base_origin, &[])
            .map_err(|e| SearchError::Settings(e.to_string()))?;
        let p = Policy::<M::Op>::from_json(policy)?;
        cfg.augment.view1 = p.view1;
        cfg.augment.view2 = p.view2;
        let set = if settings.set.is_empty() {
            String::new()
        } else {
            format!(
                "# The study ran its trials with these overrides, not applied here: {}\n",
                settings.set.join(" ")
            )
        };
        let text = format!(
            "# The best policy of the augmentation search `{}` ({}): {} with the searched views.\n{set}# Train with: ssl train --modality {} --config {}\n{}",
            settings.name,
            modality.name(),
            base_origin,
            modality.name(),
            path.display(),
            cfg.to_toml()
        );
        ssl_framework::fsutil::write_atomic(path, text.as_bytes()).map_err(|e| {
            SearchError::Output {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        })
    };
    match &opts.ranks {
        Some(ranks) if ranks.0.ranks() > 1 => {
            let remote = crate::remote::RemoteRunner {
                messenger: &*ranks.0,
                local: &runner,
            };
            let result = run_study(&plan, &remote, &opts.out, opts.resume, &write_policy);
            remote.release();
            result
        }
        _ => run_study(&plan, &runner, &opts.out, opts.resume, &write_policy),
    }
}

/// A worker rank of a study spread over MPI ranks ([`StudyOptions::ranks`]): runs the trials and
/// final runs that rank 0 hands it, with the same base config, search file and options as rank
/// 0's [`search`], on its first device, until the study is over.
///
/// # Errors
/// [`SearchError::Settings`] without ranks; [`SearchError::Worker`] when the messages fail.
pub fn serve_trials<M: Modality, F: Fn() -> M + Sync>(
    make: F,
    base_text: &str,
    base_origin: &str,
    settings: &SearchSettings,
    opts: &StudyOptions,
) -> Result<(), SearchError> {
    let Some(ranks) = &opts.ranks else {
        return Err(SearchError::Settings(
            "serve_trials: this process is not one of several ranks".into(),
        ));
    };
    if opts.devices.is_empty() {
        return Err(SearchError::Settings("no device given".into()));
    }
    let runner = ModalityRunner {
        make: &make,
        base_text,
        base_origin,
        settings,
        opts,
    };
    crate::remote::serve(&*ranks.0, &runner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ssl_framework::eval::ProbeResult;

    fn report() -> RunReport {
        let probe = |probe: &str, labels: &str, trained: f64, random: f64| ProbeResult {
            probe: probe.into(),
            labels: labels.into(),
            classes: 2,
            trained_top1: trained,
            random_init_top1: Some(random),
            samples: 100,
        };
        RunReport {
            results: serde_json::json!({}),
            probes: vec![
                probe("knn", "sentiment", 0.50, 0.40),
                probe("linear", "sentiment", 0.60, 0.50),
                probe("knn", "source", 0.70, 0.60),
                probe("linear", "source", 0.80, 0.70),
            ],
        }
    }

    fn settings(probe: &str, labels: &str) -> SearchSettings {
        SearchSettings::parse(
            &format!(
                "name = \"t\"\nmodality = \"text\"\n[objective]\nprobe = \"{probe}\"\nlabels = \"{labels}\"\n"
            ),
            "t.toml",
        )
        .unwrap()
    }

    #[test]
    fn the_objective_averages_probes_and_label_sets_when_asked() {
        let r = report();
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let (s, rnd, l) = objective(&r, &settings("linear", "")).unwrap();
        assert!(close(s, 0.60) && close(rnd.unwrap(), 0.50) && l == "sentiment");
        let (s, _, l) = objective(&r, &settings("knn", "source")).unwrap();
        assert!(close(s, 0.70) && l == "source");
        let (s, rnd, _) = objective(&r, &settings("mean", "sentiment")).unwrap();
        assert!(close(s, 0.55) && close(rnd.unwrap(), 0.45));
        let (s, _, l) = objective(&r, &settings("linear", "all")).unwrap();
        assert!(close(s, 0.70) && l == "all");
        let (s, _, _) = objective(&r, &settings("mean", "all")).unwrap();
        assert!(close(s, 0.65));
        let e = objective(&r, &settings("linear", "speaker")).unwrap_err();
        assert!(e.to_string().contains("sentiment, source"), "{e}");
        assert!(
            SearchSettings::parse(
                "name = \"t\"\nmodality = \"text\"\n[objective]\nprobe = \"median\"\n",
                "t.toml"
            )
            .unwrap_err()
            .to_string()
            .contains("\"mean\"")
        );
    }
}
