//! A search file (`configs/search/<modality>.toml`): what `ssl search-augment` runs.

use crate::SearchError;
use crate::asha::AshaConfig;
use crate::policy::SpaceConfig;
use crate::sampler::SamplerKind;
use crate::tpe::TpeConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The objective: a probe's top-1 accuracy on the validation split, or, with no labels at
/// all, the effective rank of the features (`"rankme"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Objective {
    /// `"linear"` (the linear probe, as the issue and the paper's protocol), `"knn"`,
    /// `"mean"` (the mean of the two: two estimates of the same quality, less noisy together),
    /// or `"rankme"`: the effective rank of the encoder's features (RankMe, Garrido et al.
    /// 2023) as a fraction of its maximum, which needs no labels (a modality without any can
    /// be searched; the paper reports it tracking linear-probe accuracy across
    /// hyperparameters).
    pub probe: String,
    /// The label set scored (e.g. `"digit"`); empty: the dataset's first; `"all"`: the mean
    /// over every label set the run's probes scored. Not read by `"rankme"`.
    pub labels: String,
}

impl Objective {
    /// Whether the objective needs labels (a probe) or not (`"rankme"`).
    pub fn needs_labels(&self) -> bool {
        self.probe != "rankme"
    }

    /// What the score measures, for reports: `"top-1"` or `"effective rank, % of its
    /// maximum"`.
    pub fn measure(&self) -> &'static str {
        if self.needs_labels() {
            "top-1"
        } else {
            "effective rank, % of its maximum"
        }
    }

    /// What the objective scores, for reports: e.g. `linear probe on \`digit\``.
    pub fn describe(&self) -> String {
        if !self.needs_labels() {
            "effective rank (RankMe) of the encoder's features as a percentage of its maximum (no labels used)".into()
        } else if self.probe == "mean" || self.labels == "all" {
            format!(
                "top-1 accuracy of {} on {}",
                if self.probe == "mean" {
                    "the kNN and linear probes (their mean)".to_string()
                } else {
                    format!("the {} probe", self.probe)
                },
                match self.labels.as_str() {
                    "" => "the first label set".to_string(),
                    "all" => "every label set (their mean)".to_string(),
                    l => format!("`{l}`"),
                }
            )
        } else if self.labels.is_empty() {
            format!(
                "top-1 accuracy of the {} probe (first label set)",
                self.probe
            )
        } else {
            format!(
                "top-1 accuracy of the {} probe on `{}`",
                self.probe, self.labels
            )
        }
    }
}

impl Default for Objective {
    fn default() -> Self {
        Self {
            probe: "linear".into(),
            labels: String::new(),
        }
    }
}

/// The final comparison: the `top_k` best searched policies and the baselines re-trained on
/// the whole training split and scored on the test split; the report gives the rank
/// correlation of their validation and test scores (how well the search's ranking transfers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FinalConfig {
    /// Seeds of every policy's re-training (at least 3 for a mean and a spread).
    pub seeds: Vec<u64>,
    /// Optimizer steps of each re-training; 0: `asha.max_steps` (the search's full budget).
    pub steps: usize,
    /// How many of the best searched trials are re-trained (at least 1). Those that successive
    /// halving stopped below the full budget are first trained on to it on the validation
    /// split, so that every policy of the comparison has a validation score at the same budget.
    pub top_k: usize,
}

impl Default for FinalConfig {
    fn default() -> Self {
        Self {
            seeds: vec![0, 1, 2],
            steps: 0,
            top_k: 3,
        }
    }
}

/// The whole search file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSettings {
    /// Study name (default output folder `runs/search-<name>`).
    pub name: String,
    /// What the study is for.
    #[serde(default)]
    pub description: String,
    /// `vision`, `audio` or `text` (must match `--modality`).
    pub modality: String,
    /// The experiment config the policies go into, relative to the search file; default: the
    /// modality's default config.
    #[serde(default)]
    pub base: Option<PathBuf>,
    /// `key=value` overrides of the base config for every run of the study (trials and final).
    #[serde(default)]
    pub set: Vec<String>,
    /// Seed of the sampler and of every trial's training (trials share it, so policies are
    /// compared on the same initialization and data order).
    #[serde(default)]
    pub seed: u64,
    /// Searched policies to try (the baselines come on top).
    #[serde(default = "default_trials")]
    pub trials: usize,
    /// Budget of the search phase in minutes of study time (0: no limit): no trial or
    /// promotion starts after it, and the study goes on to train the top-k trials on to the
    /// full budget and to the final re-training, which it does not limit. Study time is the time runs took, summed over resumed sessions (the
    /// part of a run lost to a kill is not counted).
    #[serde(default)]
    pub budget_minutes: f64,
    /// `"tpe"` or `"random"`.
    #[serde(default = "default_sampler")]
    pub sampler: SamplerKind,
    /// What a trial is scored by.
    #[serde(default)]
    pub objective: Objective,
    /// The policy space.
    #[serde(default)]
    pub space: SpaceConfig,
    /// Successive halving over the pre-training steps.
    #[serde(default)]
    pub asha: AshaConfig,
    /// TPE settings.
    #[serde(default)]
    pub tpe: TpeConfig,
    /// The final comparison.
    #[serde(default, rename = "final")]
    pub final_runs: FinalConfig,
}

fn default_trials() -> usize {
    16
}

fn default_sampler() -> SamplerKind {
    SamplerKind::Tpe
}

impl SearchSettings {
    /// Parses a search file.
    ///
    /// # Errors
    /// [`SearchError::Settings`] with the TOML error (naming the key) or an invalid value.
    pub fn parse(text: &str, origin: &str) -> Result<Self, SearchError> {
        let s: SearchSettings = toml::from_str(text).map_err(|e| {
            SearchError::Settings(format!(
                "{origin}: {}",
                e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            ))
        })?;
        s.validate()
            .map_err(|e| SearchError::Settings(format!("{origin}: {e}")))?;
        Ok(s)
    }

    /// Checks every value.
    ///
    /// # Errors
    /// A message naming the key and the expected values.
    pub fn validate(&self) -> Result<(), String> {
        self.asha.validate()?;
        if self.trials == 0 {
            return Err("trials = 0: expected at least 1".into());
        }
        if !(self.budget_minutes.is_finite() && self.budget_minutes >= 0.0) {
            return Err(format!(
                "budget_minutes = {}: expected a number of minutes >= 0",
                self.budget_minutes
            ));
        }
        if !["linear", "knn", "mean", "rankme"].contains(&self.objective.probe.as_str()) {
            return Err(format!(
                "objective.probe = {:?}: expected \"linear\", \"knn\", \"mean\" or \"rankme\"",
                self.objective.probe
            ));
        }
        if !(self.tpe.gamma > 0.0 && self.tpe.gamma < 1.0) {
            return Err(format!(
                "tpe.gamma = {}: expected a number in (0, 1)",
                self.tpe.gamma
            ));
        }
        if self.tpe.candidates == 0 {
            return Err("tpe.candidates = 0: expected at least 1".into());
        }
        if !(self.tpe.prior_weight.is_finite() && self.tpe.prior_weight > 0.0) {
            return Err(format!(
                "tpe.prior_weight = {}: expected a positive number",
                self.tpe.prior_weight
            ));
        }
        if self.final_runs.top_k == 0 {
            return Err("final.top_k = 0: expected at least 1 (the best searched policy)".into());
        }
        if self.final_runs.seeds.is_empty() {
            return Err("final.seeds is empty: expected at least one seed (3 for a spread)".into());
        }
        let mut seeds = self.final_runs.seeds.clone();
        seeds.sort();
        seeds.dedup();
        if seeds.len() != self.final_runs.seeds.len() {
            return Err(format!(
                "final.seeds = {:?}: a seed is repeated",
                self.final_runs.seeds
            ));
        }
        Ok(())
    }

    /// Optimizer steps of a final re-training.
    pub fn final_steps(&self) -> usize {
        if self.final_runs.steps == 0 {
            self.asha.max_steps
        } else {
            self.final_runs.steps
        }
    }
}
