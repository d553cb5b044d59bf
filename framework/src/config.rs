//! Experiment configs: TOML files, dotted-key overrides (`--set train.batch_size=128`) and
//! validation with errors that name the offending key.
//!
//! A config file has one section per concern: `[data]` and `[encoder]` belong to the modality,
//! `[augment]` holds the view pipelines, and `[byol]`, `[optim]`, `[train]`, `[eval]` are the
//! framework's. Unknown keys are errors, not silently ignored.

use crate::augmentation::Augmentation;
use crate::modality::Modality;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::path::Path;

/// A config that cannot be used, with the key (dotted path) it concerns.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The TOML text does not parse.
    #[error("{origin}: invalid TOML: {message}")]
    Syntax {
        /// The file (or `--set`) the text came from.
        origin: String,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key that is unknown or has a value of the wrong type.
    #[error("{origin}: key `{key}`: {message}")]
    Key {
        /// Where the value came from (file name, or `--set`).
        origin: String,
        /// The dotted key.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A value of the right type outside its valid range.
    #[error("invalid value for `{key}`: {value}: {expected}")]
    Value {
        /// The dotted key.
        key: String,
        /// The value, formatted.
        value: String,
        /// What a valid value looks like.
        expected: String,
    },
}

impl ConfigError {
    /// A value error for `key`.
    pub fn value(key: &str, value: impl Debug, expected: impl Into<String>) -> Self {
        ConfigError::Value {
            key: key.into(),
            value: format!("{value:?}"),
            expected: expected.into(),
        }
    }
}

/// A section of a config that can check its own values.
pub trait ConfigSection:
    Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static
{
    /// Checks every value; `prefix` is the section's dotted key (e.g. `"data"`).
    ///
    /// # Errors
    /// [`ConfigError::Value`] naming the first invalid key.
    fn validate(&self, prefix: &str) -> Result<(), ConfigError>;
}

/// Checks `lo <= value <= hi` (finite), naming `key`.
pub fn check_f64(key: &str, value: f64, lo: f64, hi: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(())
    } else {
        Err(ConfigError::value(
            key,
            value,
            format!("a number in [{lo}, {hi}]"),
        ))
    }
}

/// Checks `value >= 1`, naming `key`.
pub fn check_positive(key: &str, value: usize) -> Result<(), ConfigError> {
    if value >= 1 {
        Ok(())
    } else {
        Err(ConfigError::value(key, value, "an integer >= 1"))
    }
}

/// The BYOL heads and target update (docs/design.md, the paper's Section 3 and Appendix J).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ByolConfig {
    /// Hidden width of the projector g (paper: 4096).
    pub projector_hidden: usize,
    /// Output width of the projector and predictor (paper: 256).
    pub projection_dim: usize,
    /// Hidden width of the predictor q (paper: 4096).
    pub predictor_hidden: usize,
    /// Whether the online network has a predictor (the paper's ablation: without it, collapse).
    pub predictor: bool,
    /// Base EMA rate tau_base; tau goes from it to 1 by a cosine over the run (paper: 0.996).
    pub tau_base: f64,
    /// `"cosine"` (the paper's schedule, the default) or `"constant"` (tau = tau_base for the
    /// whole run: the paper's ablation of the target's decay rate, Table 5a).
    #[serde(skip_serializing_if = "TauSchedule::is_cosine")]
    pub tau_schedule: TauSchedule,
}

/// How tau moves over a run (see [`ByolConfig::tau_schedule`]; computed by
/// [`TargetEma`](crate::byol::TargetEma)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TauSchedule {
    /// From `tau_base` to 1 by a cosine over the optimizer steps (Section 3.2).
    #[default]
    Cosine,
    /// `tau_base` throughout.
    Constant,
}

impl TauSchedule {
    /// Whether this is the default (configs and checkpoints omit it, so runs made before the
    /// key existed keep their identity).
    pub fn is_cosine(&self) -> bool {
        *self == TauSchedule::Cosine
    }
}

impl Default for ByolConfig {
    fn default() -> Self {
        Self {
            projector_hidden: 4096,
            projection_dim: 256,
            predictor_hidden: 4096,
            predictor: true,
            tau_base: 0.996,
            tau_schedule: TauSchedule::Cosine,
        }
    }
}

impl ConfigSection for ByolConfig {
    fn validate(&self, p: &str) -> Result<(), ConfigError> {
        check_positive(&format!("{p}.projector_hidden"), self.projector_hidden)?;
        check_positive(&format!("{p}.projection_dim"), self.projection_dim)?;
        check_positive(&format!("{p}.predictor_hidden"), self.predictor_hidden)?;
        check_f64(&format!("{p}.tau_base"), self.tau_base, 0.0, 1.0)
    }
}

/// The optimizer family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// LARS (You et al. 2017) as in BYOL: trust ratio and weight decay skip biases and norms.
    Lars,
    /// SGD with momentum (weight decay skips biases and norms).
    Sgd,
    /// AdamW (Loshchilov and Hutter 2019; decoupled weight decay skips biases and norms).
    Adamw,
}

/// Optimizer and learning-rate schedule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Which optimizer.
    pub optimizer: OptimizerKind,
    /// Base learning rate; the peak lr is `base_lr * batch / 256` when `scale_lr_by_batch`.
    pub base_lr: f64,
    /// Scale the lr linearly with the global batch (paper: lr = 0.2 x batch/256).
    pub scale_lr_by_batch: bool,
    /// Weight decay (paper: 1.5e-6); never applied to biases and norm parameters.
    pub weight_decay: f64,
    /// Momentum (LARS, SGD) or beta1 (AdamW).
    pub momentum: f64,
    /// LARS trust coefficient eta (paper: 1e-3).
    pub eta: f64,
    /// Linear warmup length in epochs (paper: 10), then cosine decay to 0.
    pub warmup_epochs: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            optimizer: OptimizerKind::Lars,
            base_lr: 0.2,
            scale_lr_by_batch: true,
            weight_decay: 1.5e-6,
            momentum: 0.9,
            eta: 1e-3,
            warmup_epochs: 10.0,
        }
    }
}

impl ConfigSection for OptimConfig {
    fn validate(&self, p: &str) -> Result<(), ConfigError> {
        check_f64(&format!("{p}.base_lr"), self.base_lr, 1e-12, 1e3)?;
        check_f64(&format!("{p}.weight_decay"), self.weight_decay, 0.0, 1.0)?;
        check_f64(&format!("{p}.momentum"), self.momentum, 0.0, 0.999_999)?;
        check_f64(&format!("{p}.eta"), self.eta, 1e-9, 1.0)?;
        check_f64(&format!("{p}.warmup_epochs"), self.warmup_epochs, 0.0, 1e6)
    }
}

/// The training run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Passes over the pre-training split.
    pub epochs: usize,
    /// Samples per forward pass (the global batch is `batch_size * accumulation_steps`). Under
    /// data parallelism (`mpirun -np N`) this is the batch of all ranks together, split evenly:
    /// `batch_size / N` per rank.
    pub batch_size: usize,
    /// Forward/backward passes per optimizer step (gradient accumulation).
    pub accumulation_steps: usize,
    /// Stop after this many optimizer steps (0: no cap); schedules still span the cap.
    pub max_steps: usize,
    /// Data worker threads (0: one per core).
    pub num_workers: usize,
    /// Batches prepared ahead of the model.
    pub prefetch_batches: usize,
    /// Write a checkpoint every this many optimizer steps (0: only at the end).
    pub checkpoint_every: usize,
    /// How many checkpoints to keep (the newest).
    pub keep_checkpoints: usize,
    /// Write a metrics line every this many optimizer steps.
    pub log_every: usize,
    /// What a non-finite loss or gradient does: `"stop"` the run (the default), `"skip"` the
    /// optimizer step, or `"rollback"` to the newest checkpoint and replay without that step.
    /// May differ between a run and its `--resume`.
    pub on_nan: OnNan,
    /// With `on_nan = "skip"` or `"rollback"`: the run stops at the fault after this many.
    pub max_faults: usize,
    /// Under data parallelism: BatchNorm normalizes with the statistics of the global batch,
    /// exchanged between the ranks forward and backward (SyncBN; the paper's cross-replica
    /// BatchNorm, Section 3.3). Off: each rank's own shard's statistics. No effect on one rank.
    pub sync_batch_norm: bool,
    /// Under data parallelism: compare a checksum of every rank's networks every this many
    /// optimizer steps, and stop with an error naming the step when they differ (0: never).
    pub replica_check_every: usize,
    /// The float type of the forward and backward passes ([`Precision`]): `"f32"` (the
    /// default), or mixed precision in `"bf16"` or `"f16"` (f32 master weights, optimizer state,
    /// EMA target and BatchNorm statistics; f16 with dynamic loss scaling). Refused when the
    /// run starts if the device lacks the type or the encoder does not declare
    /// [`crate::Encoder::mixed_precision`].
    pub precision: Precision,
}

/// The float type the BYOL step computes in (see [`TrainConfig::precision`] and
/// [`crate::byol::precision`]). The parameters, their gradients as the optimizer sees them,
/// the optimizer's state, the target network and BatchNorm's statistics stay f32 whichever
/// is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Mixed precision in bfloat16 (f32's 8-bit exponent, so no loss scaling; 8-bit
    /// mantissa).
    Bf16,
    /// Mixed precision in IEEE half (5-bit exponent, largest value 65504; 11-bit mantissa),
    /// with dynamic loss scaling of the gradients.
    F16,
}

impl Precision {
    /// The name used in configs: `f32`, `bf16` or `f16`.
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        }
    }
}

/// The response to a non-finite loss or gradient (see [`TrainConfig::on_nan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnNan {
    /// Stop with an error naming the step and the faulty term; every checkpoint stays.
    #[default]
    Stop,
    /// Skip the step's update (parameters, optimizer state and target unchanged; the step's
    /// data is consumed). Stops instead when the faulty forward pass has already poisoned the
    /// online network's BatchNorm statistics, which only a rollback undoes.
    Skip,
    /// Reload the newest checkpoint (a step-0 one is written at the start) and replay from it,
    /// skipping the faulty step's update; the skipped steps are stored in the checkpoints.
    Rollback,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch_size: 256,
            accumulation_steps: 1,
            max_steps: 0,
            num_workers: 0,
            prefetch_batches: 4,
            checkpoint_every: 500,
            keep_checkpoints: 3,
            log_every: 10,
            on_nan: OnNan::Stop,
            max_faults: 10,
            sync_batch_norm: true,
            replica_check_every: 100,
            precision: Precision::F32,
        }
    }
}

impl ConfigSection for TrainConfig {
    fn validate(&self, p: &str) -> Result<(), ConfigError> {
        check_positive(&format!("{p}.epochs"), self.epochs)?;
        check_positive(&format!("{p}.batch_size"), self.batch_size)?;
        if self.batch_size < 2 {
            return Err(ConfigError::value(
                &format!("{p}.batch_size"),
                self.batch_size,
                "at least 2 (BatchNorm needs a batch)",
            ));
        }
        check_positive(&format!("{p}.accumulation_steps"), self.accumulation_steps)?;
        check_positive(&format!("{p}.prefetch_batches"), self.prefetch_batches)?;
        check_positive(&format!("{p}.keep_checkpoints"), self.keep_checkpoints)?;
        check_positive(&format!("{p}.max_faults"), self.max_faults)?;
        check_positive(&format!("{p}.log_every"), self.log_every)
    }
}

/// Evaluation after training: kNN monitor and linear probe, each beside a random-init encoder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Neighbours of the weighted kNN (Wu et al. 2018, InstDisc; lightly: 200).
    pub knn_k: usize,
    /// Temperature of the kNN weights `exp(cos / T)` (0.1).
    pub knn_temperature: f64,
    /// Epochs of the linear probe (softmax regression on frozen features, centred and scaled by one factor).
    pub probe_epochs: usize,
    /// Learning rate of the probe (Adam).
    pub probe_lr: f64,
    /// L2 penalty of the probe's weights.
    pub probe_weight_decay: f64,
    /// Mini-batch of the probe.
    pub probe_batch_size: usize,
    /// Batch for feature extraction.
    pub batch_size: usize,
    /// The split the probes are scored on: `"test"` (the dataset's held-out split) or
    /// `"validation"` (a seeded `validation_fraction` of the training split, held out of
    /// pre-training and of the probes' fitting; the test split is then never read). Tune on
    /// `"validation"`, report on `"test"`.
    pub split: EvalSplit,
    /// Fraction of the training split held out when `split = "validation"`, in (0, 0.9].
    pub validation_fraction: f64,
    /// Fine-tuning (`ssl eval`): passes over the labelled subset.
    pub finetune_epochs: usize,
    /// Fine-tuning: at least this many optimizer steps (more passes over small subsets).
    pub finetune_min_steps: usize,
    /// Fine-tuning: peak learning rate (AdamW, cosine decay to 0).
    pub finetune_lr: f64,
    /// Fine-tuning: decoupled weight decay.
    pub finetune_weight_decay: f64,
    /// Fine-tuning: mini-batch size.
    pub finetune_batch_size: usize,
    /// Fine-tuning: the fractions of the labelled training samples to fine-tune on, each a
    /// class-balanced seeded subset, in (0, 1] (the paper's Table 2: 1% and 10%; 1.0 is full
    /// fine-tuning).
    pub finetune_fractions: Vec<f64>,
    /// Fine-tuning: the label sets to fine-tune on (empty: every label set).
    pub finetune_labels: Vec<String>,
    /// A separate labelled dataset (a folder read with the run's `[data]` section) to probe on,
    /// instead of the pre-training data: the standard protocol of pre-training on unlabelled
    /// data and probing on a labelled set. Empty: the pre-training data's own splits.
    /// `ssl train --eval-data DIR` sets it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub data: String,
    /// At most this many samples for the label-free metrics of the features (effective rank
    /// and spread; see `eval::representation`).
    #[serde(skip_serializing_if = "is_default_rank_samples")]
    pub rank_samples: usize,
    /// Train the online linear probe during pre-training when the pre-training data has labels
    /// (its first label set that the probes can use: one with labels on both splits, without
    /// `eval.data`): a linear classifier on the online encoder's representation of
    /// view 1, gradient stopped, scored on each batch before it learns from it; its accuracy is
    /// `online_probe_top1` in `metrics.jsonl` and a panel of `training.svg`
    /// (`byol::online_probe`). It never changes the encoder.
    pub online_probe: bool,
    /// The online probe's Adam learning rate.
    pub online_probe_lr: f64,
}

/// The default of [`EvalConfig::rank_samples`].
pub const DEFAULT_RANK_SAMPLES: usize = 4096;

fn is_default_rank_samples(n: &usize) -> bool {
    *n == DEFAULT_RANK_SAMPLES
}

/// Which split evaluation scores on (see [`EvalConfig::split`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvalSplit {
    /// The dataset's own held-out split.
    #[default]
    Test,
    /// A seeded part of the training split.
    Validation,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            knn_k: 200,
            knn_temperature: 0.1,
            probe_epochs: 30,
            probe_lr: 1e-3,
            probe_weight_decay: 1e-5,
            probe_batch_size: 256,
            batch_size: 256,
            split: EvalSplit::Test,
            validation_fraction: 0.1,
            finetune_epochs: 10,
            finetune_min_steps: 100,
            finetune_lr: 1e-3,
            finetune_weight_decay: 1e-4,
            finetune_batch_size: 64,
            finetune_fractions: vec![1.0, 0.1, 0.01],
            finetune_labels: Vec::new(),
            data: String::new(),
            rank_samples: DEFAULT_RANK_SAMPLES,
            online_probe: true,
            online_probe_lr: 1e-3,
        }
    }
}

impl ConfigSection for EvalConfig {
    fn validate(&self, p: &str) -> Result<(), ConfigError> {
        check_positive(&format!("{p}.knn_k"), self.knn_k)?;
        check_f64(
            &format!("{p}.knn_temperature"),
            self.knn_temperature,
            1e-6,
            1e6,
        )?;
        check_positive(&format!("{p}.probe_epochs"), self.probe_epochs)?;
        check_f64(
            &format!("{p}.online_probe_lr"),
            self.online_probe_lr,
            1e-9,
            10.0,
        )?;
        check_f64(&format!("{p}.probe_lr"), self.probe_lr, 1e-9, 10.0)?;
        check_f64(
            &format!("{p}.probe_weight_decay"),
            self.probe_weight_decay,
            0.0,
            10.0,
        )?;
        check_positive(&format!("{p}.probe_batch_size"), self.probe_batch_size)?;
        check_f64(
            &format!("{p}.validation_fraction"),
            self.validation_fraction,
            1e-6,
            0.9,
        )?;
        check_positive(&format!("{p}.finetune_epochs"), self.finetune_epochs)?;
        check_f64(&format!("{p}.finetune_lr"), self.finetune_lr, 1e-9, 10.0)?;
        check_f64(
            &format!("{p}.finetune_weight_decay"),
            self.finetune_weight_decay,
            0.0,
            10.0,
        )?;
        check_positive(
            &format!("{p}.finetune_batch_size"),
            self.finetune_batch_size,
        )?;
        for (i, f) in self.finetune_fractions.iter().enumerate() {
            check_f64(&format!("{p}.finetune_fractions[{i}]"), *f, 1e-6, 1.0)?;
        }
        check_positive(&format!("{p}.rank_samples"), self.rank_samples)?;
        check_positive(&format!("{p}.batch_size"), self.batch_size)
    }
}

/// The view pipelines (the paper's views are asymmetric) and the deterministic evaluation
/// transform.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
pub struct AugmentConfig<M: Modality> {
    /// Ops of view 1, applied in order.
    pub view1: Vec<M::Op>,
    /// Ops of view 2, applied in order.
    pub view2: Vec<M::Op>,
    /// Deterministic ops applied to every sample before feature extraction at evaluation.
    #[serde(default)]
    pub eval: Vec<M::Op>,
    /// Random ops applied to the labelled training samples when fine-tuning (`ssl eval`; the
    /// paper fine-tunes with random crops and flips); empty: the `eval` ops.
    #[serde(default)]
    pub finetune: Vec<M::Op>,
}

/// A whole experiment: one TOML file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound = "")]
pub struct ExperimentConfig<M: Modality> {
    /// Seed of everything random: initialization, data order, augmentations, probes.
    #[serde(default)]
    pub seed: u64,
    /// The modality's data section.
    #[serde(default)]
    pub data: M::DataConfig,
    /// The modality's encoder section.
    #[serde(default)]
    pub encoder: M::EncoderConfig,
    /// View pipelines.
    pub augment: AugmentConfig<M>,
    /// BYOL heads and EMA.
    #[serde(default)]
    pub byol: ByolConfig,
    /// Optimizer and lr schedule.
    #[serde(default)]
    pub optim: OptimConfig,
    /// The training run.
    #[serde(default)]
    pub train: TrainConfig,
    /// Evaluation.
    #[serde(default)]
    pub eval: EvalConfig,
}

impl<M: Modality> ExperimentConfig<M> {
    /// Checks every section and augmentation op.
    ///
    /// # Errors
    /// [`ConfigError::Value`] naming the first invalid key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.data.validate("data")?;
        self.encoder.validate("encoder")?;
        self.byol.validate("byol")?;
        self.optim.validate("optim")?;
        self.train.validate("train")?;
        self.eval.validate("eval")?;
        for (name, ops) in [
            ("augment.view1", &self.augment.view1),
            ("augment.view2", &self.augment.view2),
            ("augment.eval", &self.augment.eval),
            ("augment.finetune", &self.augment.finetune),
        ] {
            for (i, op) in ops.iter().enumerate() {
                op.validate().map_err(|e| {
                    ConfigError::value(
                        &format!("{name}[{i}].{}", e.param),
                        e.value.clone(),
                        format!("{}: {}", e.op, e.expected),
                    )
                })?;
            }
        }
        Ok(())
    }

    /// The config as a JSON value (for `results.json` and checkpoints).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("configs always serialize")
    }

    /// The config as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("configs always serialize to TOML")
    }
}

/// Parses TOML text into a table. `origin` names the source in errors.
///
/// # Errors
/// [`ConfigError::Syntax`] with the parser's line and column.
pub fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            origin: origin.into(),
            message: e.to_string().trim().replace('\n', " "),
        })
}

/// Applies one `key.path=value` override to `table`. The value is read as a TOML value
/// (`0.5`, `true`, `"s"`, `[1, 2]`, `{ a = 1 }`); anything that does not parse as one is taken
/// as a string.
///
/// # Errors
/// [`ConfigError::Key`] when the override has no `=`, an empty key, or walks through a
/// non-table value.
pub fn apply_override(table: &mut toml::Table, assignment: &str) -> Result<(), ConfigError> {
    let origin = format!("--set {assignment}");
    let (key, raw) = assignment.split_once('=').ok_or_else(|| {
        ConfigError::value("--set", assignment, "KEY=VALUE, e.g. --set train.epochs=20")
    })?;
    let key = key.trim();
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::Key {
            origin,
            key: key.into(),
            message: "empty key segment".into(),
        });
    }
    let value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").expect("just parsed"),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let mut cur = table;
    for (i, part) in parts[..parts.len() - 1].iter().enumerate() {
        let entry = cur
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            _ => {
                return Err(ConfigError::Key {
                    origin,
                    key: parts[..=i].join("."),
                    message: "is not a table, cannot set a key inside it".into(),
                });
            }
        };
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// The first paragraph of a deserializer's message on one line (toml appends an `in path`
/// line that repeats the key less precisely than the path we report).
fn one_line_message(message: &str) -> String {
    let first = message.trim().split("\nin `").next().unwrap_or("");
    first.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Deserializes a table into a config, naming the dotted key of any error.
///
/// # Errors
/// [`ConfigError::Key`] for unknown keys and wrong types.
pub fn from_table<T: DeserializeOwned>(table: toml::Table, origin: &str) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(table).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Key {
            origin: origin.into(),
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            message: one_line_message(&e.into_inner().to_string()),
        }
    })
}

/// Loads a config: the TOML text, then the `--set` overrides in order, then validation.
///
/// # Errors
/// [`ConfigError`] naming the file or override and the key.
pub fn load_config<M: Modality>(
    text: &str,
    origin: &str,
    overrides: &[String],
) -> Result<ExperimentConfig<M>, ConfigError> {
    let mut table = parse_table(text, origin)?;
    for o in overrides {
        apply_override(&mut table, o)?;
    }
    let origin = if overrides.is_empty() {
        origin.to_string()
    } else {
        format!("{origin} with --set overrides")
    };
    let cfg: ExperimentConfig<M> = from_table(table, &origin)?;
    cfg.validate()?;
    Ok(cfg)
}

/// Reads a config file from disk and loads it (see [`load_config`]).
///
/// # Errors
/// [`ConfigError::Syntax`] naming the file when it cannot be read, else as [`load_config`].
pub fn load_config_file<M: Modality>(
    path: &Path,
    overrides: &[String],
) -> Result<ExperimentConfig<M>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Syntax {
        origin: path.display().to_string(),
        message: format!("cannot read: {e}"),
    })?;
    load_config(&text, &path.display().to_string(), overrides)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_sets_nested_keys_and_parses_types() {
        let mut t = parse_table("[train]\nepochs = 3\n", "x.toml").unwrap();
        apply_override(&mut t, "train.epochs=7").unwrap();
        apply_override(&mut t, "optim.base_lr=0.5").unwrap();
        apply_override(&mut t, "data.root=some/dir").unwrap();
        apply_override(&mut t, "byol.predictor=false").unwrap();
        assert_eq!(t["train"]["epochs"].as_integer(), Some(7));
        assert_eq!(t["optim"]["base_lr"].as_float(), Some(0.5));
        assert_eq!(t["data"]["root"].as_str(), Some("some/dir"));
        assert_eq!(t["byol"]["predictor"].as_bool(), Some(false));
        assert!(apply_override(&mut t, "noequals").is_err());
        assert!(apply_override(&mut t, "train..x=1").is_err());
        assert!(apply_override(&mut t, "train.epochs.x=1").is_err());
    }

    #[test]
    fn typed_errors_name_the_key() {
        let t = parse_table("epochs = \"many\"\n", "x.toml").unwrap();
        let e = from_table::<TrainConfig>(t, "x.toml").unwrap_err();
        assert!(e.to_string().contains("`epochs`"), "{e}");
        let t = parse_table("epoch = 3\n", "x.toml").unwrap();
        let e = from_table::<TrainConfig>(t, "x.toml").unwrap_err();
        assert!(e.to_string().contains("unknown field `epoch`"), "{e}");
        let e = parse_table("epochs = = 3", "bad.toml").unwrap_err();
        assert!(e.to_string().starts_with("bad.toml: invalid TOML"), "{e}");
    }

    #[test]
    fn validation_names_the_key() {
        let mut t = TrainConfig::default();
        t.batch_size = 1;
        assert!(
            t.validate("train")
                .unwrap_err()
                .to_string()
                .contains("train.batch_size")
        );
        let mut b = ByolConfig::default();
        b.tau_base = 1.5;
        assert!(
            b.validate("byol")
                .unwrap_err()
                .to_string()
                .contains("byol.tau_base")
        );
        let mut o = OptimConfig::default();
        o.base_lr = f64::NAN;
        assert!(o.validate("optim").is_err());
    }
}
