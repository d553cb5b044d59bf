//! A fourth modality written against `ssl`'s public plugin API alone: multivariate time series
//! read from CSV files, with their own augmentations (jitter, scaling, time warp, window crop),
//! registered through typetag and used from a TOML config exactly like the built-in ones, and a
//! 1-D CNN encoder. BYOL pre-training and the kNN / linear-probe evaluation come from
//! `ssl-framework` unchanged.
//!
//! Data layout: `DATA/{train,test}/<class>/*.csv`, each file one series: one row per time step,
//! one column per channel (an optional header line is skipped), every series the same length.
//!
//! ```sh
//! cargo run --release --example custom_modality -- DATA OUT [--set key=value]...
//! cargo run --release --example custom_modality -- --synthetic DATA   # writes a demo dataset
//! ```

use anyhow::{Context, Result, bail};
use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig1d, Relu};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use ssl_framework::augmentation::{AugmentContext, Augmentation, AugmentationError, check_range};
use ssl_framework::config::{ConfigError, ConfigSection, check_positive, load_config};
use ssl_framework::data::{ClassFolders, DataError, Datasets, LabelSet, Split};
use ssl_framework::train::{RunOptions, RunReport, train_and_evaluate};
use ssl_framework::{Encoder, Modality};
use std::path::{Path, PathBuf};

/// One multivariate series, `[channels, length]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Number of channels.
    pub channels: usize,
    /// Values, channel after channel.
    pub values: Vec<f32>,
}

impl Series {
    /// Time steps.
    pub fn len(&self) -> usize {
        self.values.len() / self.channels.max(1)
    }
    /// Whether the series has no time steps.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
    fn at(&self, c: usize, t: usize) -> f32 {
        self.values[c * self.len() + t]
    }
    /// Linear interpolation of channel `c` at fractional time `t` (clamped to the ends).
    fn sample(&self, c: usize, t: f32) -> f32 {
        let n = self.len();
        let t = t.clamp(0.0, (n - 1) as f32);
        let (i, f) = (t.floor() as usize, t - t.floor());
        let j = (i + 1).min(n - 1);
        self.at(c, i) * (1.0 - f) + self.at(c, j) * f
    }
    /// The series resampled at the times `times` (same for every channel).
    fn resampled(&self, times: &[f32]) -> Series {
        let mut values = Vec::with_capacity(self.channels * times.len());
        for c in 0..self.channels {
            values.extend(times.iter().map(|&t| self.sample(c, t)));
        }
        Series {
            channels: self.channels,
            values,
        }
    }
}

// ---- Augmentations: a typetag trait of our own, registered with the framework's combinators.

/// Every op usable in this modality's configs.
#[typetag::serde(tag = "type")]
pub trait SeriesAugmentation: Augmentation<Series> {}
ssl_framework::register_combinators!(SeriesAugmentation);

/// Adds Gaussian noise of standard deviation `sigma` to every value (Um et al. 2017).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Jitter {
    /// Noise standard deviation, in `[0, 10]` (in units of the series).
    pub sigma: f64,
}

impl Augmentation<Series> for Jitter {
    fn name(&self) -> &'static str {
        "Jitter"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_range("Jitter", "sigma", self.sigma, 0.0, 10.0)
    }
    fn apply(&self, mut x: Series, ctx: &mut AugmentContext<'_, Series>) -> Series {
        let noise = Normal::new(0.0, self.sigma as f32).expect("validated sigma");
        x.values
            .iter_mut()
            .for_each(|v| *v += noise.sample(ctx.rng));
        x
    }
}
#[typetag::serde(name = "Jitter")]
impl SeriesAugmentation for Jitter {}

/// Multiplies each channel by a factor drawn from `N(1, sigma)`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scaling {
    /// Standard deviation of the factor, in `[0, 2]`.
    pub sigma: f64,
}

impl Augmentation<Series> for Scaling {
    fn name(&self) -> &'static str {
        "Scaling"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_range("Scaling", "sigma", self.sigma, 0.0, 2.0)
    }
    fn apply(&self, mut x: Series, ctx: &mut AugmentContext<'_, Series>) -> Series {
        let factor = Normal::new(1.0, self.sigma as f32).expect("validated sigma");
        let n = x.len();
        for c in 0..x.channels {
            let f = factor.sample(ctx.rng);
            x.values[c * n..(c + 1) * n]
                .iter_mut()
                .for_each(|v| *v *= f);
        }
        x
    }
}
#[typetag::serde(name = "Scaling")]
impl SeriesAugmentation for Scaling {}

/// Smoothly speeds up and slows down time: the time axis is remapped through a piecewise-linear
/// curve with `knots` random slopes in `[1 - max_warp, 1 + max_warp]`, normalized to span the
/// whole series.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeWarp {
    /// Largest relative change of speed, in `[0, 0.9]`.
    pub max_warp: f64,
    /// Pieces of the warping curve, in `[1, 64]`.
    pub knots: usize,
}

impl Augmentation<Series> for TimeWarp {
    fn name(&self) -> &'static str {
        "TimeWarp"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_range("TimeWarp", "max_warp", self.max_warp, 0.0, 0.9)?;
        check_range("TimeWarp", "knots", self.knots as f64, 1.0, 64.0)
    }
    fn apply(&self, x: Series, ctx: &mut AugmentContext<'_, Series>) -> Series {
        let n = x.len();
        if n < 2 {
            return x;
        }
        let w = self.max_warp as f32;
        let speeds: Vec<f32> = (0..self.knots)
            .map(|_| ctx.rng.random_range(1.0 - w..=1.0 + w))
            .collect();
        // Cumulative time at each output step, then scaled to end at n - 1.
        let mut times = Vec::with_capacity(n);
        let mut t = 0f32;
        for i in 0..n {
            times.push(t);
            t += speeds[i * self.knots / n];
        }
        let end = *times.last().expect("n >= 2");
        let scale = (n - 1) as f32 / end.max(1e-6);
        times.iter_mut().for_each(|v| *v *= scale);
        x.resampled(&times)
    }
}
#[typetag::serde(name = "TimeWarp")]
impl SeriesAugmentation for TimeWarp {}

/// Crops a random window of a uniform fraction in `fraction` of the series and stretches it
/// back to the full length (window slicing, Le Guennec et al. 2016).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowCrop {
    /// `[min, max]` fraction of the series kept, within `[0.05, 1]`.
    pub fraction: [f64; 2],
}

impl Augmentation<Series> for WindowCrop {
    fn name(&self) -> &'static str {
        "WindowCrop"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        ssl_framework::augmentation::check_interval(
            "WindowCrop",
            "fraction",
            self.fraction,
            0.05,
            1.0,
        )
    }
    fn apply(&self, x: Series, ctx: &mut AugmentContext<'_, Series>) -> Series {
        let n = x.len();
        if n < 2 {
            return x;
        }
        let f = ctx.rng.random_range(self.fraction[0]..=self.fraction[1]) as f32;
        let span = (n - 1) as f32 * f;
        let start = ctx.rng.random_range(0.0..=((n - 1) as f32 - span).max(0.0));
        let times: Vec<f32> = (0..n)
            .map(|i| start + span * i as f32 / (n - 1) as f32)
            .collect();
        x.resampled(&times)
    }
}
#[typetag::serde(name = "WindowCrop")]
impl SeriesAugmentation for WindowCrop {}

// ---- Config sections.

/// `[data]`: nothing to choose but a name; the layout is fixed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeriesData {
    /// Dataset name for reports.
    pub dataset: String,
}

impl Default for SeriesData {
    fn default() -> Self {
        Self {
            dataset: "series".into(),
        }
    }
}

impl ConfigSection for SeriesData {
    fn validate(&self, _: &str) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// `[encoder]`: the 1-D CNN's widths.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeriesEncoderConfig {
    /// Channels of the input (the CSV columns).
    pub input_channels: usize,
    /// Channels of the two conv blocks; the output width is the second.
    pub width: [usize; 2],
}

impl Default for SeriesEncoderConfig {
    fn default() -> Self {
        Self {
            input_channels: 2,
            width: [32, 64],
        }
    }
}

impl ConfigSection for SeriesEncoderConfig {
    fn validate(&self, p: &str) -> Result<(), ConfigError> {
        check_positive(&format!("{p}.input_channels"), self.input_channels)?;
        check_positive(&format!("{p}.width"), self.width[0].min(self.width[1]))
    }
}

// ---- Encoder: conv1d(k5)-BN-ReLU, conv1d(k5, stride 2)-BN-ReLU, mean over time.

/// `[batch, channels, length]` -> `[batch, width[1]]`.
#[derive(Module, Debug)]
pub struct SeriesEncoder {
    conv1: Conv1d,
    bn1: BatchNorm,
    conv2: Conv1d,
    bn2: BatchNorm,
    relu: Relu,
    out: usize,
}

impl Encoder for SeriesEncoder {
    type Input = Tensor<3>;
    fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let x = self.relu.forward(self.bn1.forward(self.conv1.forward(x)));
        let x = self.relu.forward(self.bn2.forward(self.conv2.forward(x)));
        let [b, c, _] = x.dims();
        x.mean_dim(2).reshape([b, c])
    }
    fn dim(&self) -> usize {
        self.out
    }
}

// ---- The modality.

/// Multivariate time series from CSV files.
#[derive(Debug, Default)]
pub struct SeriesModality;

/// Reads one series: rows are time steps, columns channels; a non-numeric first line is a header.
fn read_series(path: &Path) -> Result<Series, DataError> {
    let corrupt = |reason: String| DataError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .map_err(|e| corrupt(e.to_string()))?;
    let mut rows: Vec<Vec<f32>> = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| corrupt(e.to_string()))?;
        let parsed: Result<Vec<f32>, _> = record.iter().map(|f| f.trim().parse::<f32>()).collect();
        match parsed {
            Ok(row) if row.iter().all(|v| v.is_finite()) => rows.push(row),
            _ if i == 0 => continue, // header
            _ => return Err(corrupt(format!("line {}: not finite numbers", i + 1))),
        }
    }
    let channels = rows.first().map(|r| r.len()).unwrap_or(0);
    if rows.len() < 2 || channels == 0 || rows.iter().any(|r| r.len() != channels) {
        return Err(corrupt(
            "needs at least 2 rows of the same number of numeric columns".into(),
        ));
    }
    let values = (0..channels)
        .flat_map(|c| rows.iter().map(move |r| r[c]))
        .collect();
    Ok(Series { channels, values })
}

fn read_split(
    dir: &Path,
    classes: &[String],
    skipped: &mut usize,
) -> Result<Split<Series>, DataError> {
    let mut items = Vec::new();
    let mut labels = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(class))
            .map_err(|source| DataError::Io {
                path: dir.join(class),
                source,
            })?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "csv"))
            .collect();
        files.sort();
        for f in files {
            match read_series(&f) {
                Ok(s) => {
                    items.push(s);
                    labels.push(label);
                }
                Err(e) => {
                    eprintln!("warning: skipping {e}");
                    *skipped += 1;
                }
            }
        }
    }
    Ok(Split {
        items,
        label_sets: vec![LabelSet {
            name: "class".into(),
            classes: classes.to_vec(),
            labels,
        }],
    })
}

/// `[batch, channels, length]` values and shape.
pub type SeriesBatch = (Vec<f32>, [usize; 3]);

impl Modality for SeriesModality {
    type Item = Series;
    type Sample = Series;
    type Op = Box<dyn SeriesAugmentation>;
    type DataConfig = SeriesData;
    type EncoderConfig = SeriesEncoderConfig;
    type Encoder = SeriesEncoder;
    type Batch = SeriesBatch;

    fn name(&self) -> &'static str {
        "series"
    }

    fn load(&self, cfg: &SeriesData, root: &Path) -> Result<Datasets<Series>, DataError> {
        let folders = ClassFolders::find(root, "CSV series")?;
        let mut skipped = 0;
        let train = read_split(&folders.train, &folders.classes, &mut skipped)?;
        let test = read_split(&folders.test, &folders.classes, &mut skipped)?;
        let lengths: std::collections::BTreeSet<(usize, usize)> = train
            .items
            .iter()
            .chain(&test.items)
            .map(|s| (s.channels, s.len()))
            .collect();
        if lengths.len() != 1 {
            return Err(DataError::Unusable(format!(
                "{}: every series must have the same channels and length, found {lengths:?}",
                root.display()
            )));
        }
        Ok(Datasets {
            name: cfg.dataset.clone(),
            train,
            test,
            skipped,
        })
    }

    fn to_sample(&self, item: &Series) -> Series {
        item.clone()
    }

    fn collate(&self, samples: Vec<Series>) -> SeriesBatch {
        let (c, n) = samples
            .first()
            .map(|s| (s.channels, s.len()))
            .unwrap_or((0, 0));
        let shape = [samples.len(), c, n];
        (samples.into_iter().flat_map(|s| s.values).collect(), shape)
    }

    fn to_input(&self, batch: SeriesBatch, device: &Device) -> Tensor<3> {
        Tensor::from_data(TensorData::new(batch.0, batch.1), device)
    }

    fn init_encoder(
        &self,
        cfg: &SeriesEncoderConfig,
        _: &SeriesData,
        device: &Device,
    ) -> Result<SeriesEncoder, ConfigError> {
        let [w1, w2] = cfg.width;
        Ok(SeriesEncoder {
            conv1: Conv1dConfig::new(cfg.input_channels, w1, 5)
                .with_padding(PaddingConfig1d::Explicit(2, 2))
                .init(device),
            bn1: BatchNormConfig::new(w1).init(device),
            conv2: Conv1dConfig::new(w1, w2, 5)
                .with_stride(2)
                .with_padding(PaddingConfig1d::Explicit(2, 2))
                .init(device),
            bn2: BatchNormConfig::new(w2).init(device),
            relu: Relu::new(),
            out: w2,
        })
    }
}

/// The experiment: BYOL with the paper's loss and EMA, views made of this file's own ops.
pub const CONFIG: &str = r#"
seed = 0

[data]
dataset = "series"

[encoder]
input_channels = 2
width = [32, 64]

[byol]
projector_hidden = 256
projection_dim = 64
predictor_hidden = 256
tau_base = 0.99

[optim]
optimizer = "adamw"
base_lr = 2e-3
scale_lr_by_batch = false
weight_decay = 1e-4
warmup_epochs = 1.0

[train]
epochs = 15
batch_size = 32
checkpoint_every = 0
keep_checkpoints = 1
log_every = 10

[eval]
knn_k = 10
probe_epochs = 200
probe_lr = 3e-3
probe_batch_size = 32
batch_size = 64

[[augment.view1]]
type = "WindowCrop"
fraction = [0.85, 1.0]

[[augment.view1]]
type = "TimeWarp"
max_warp = 0.1
knots = 4

[[augment.view1]]
type = "Jitter"
sigma = 0.1

[[augment.view2]]
type = "WindowCrop"
fraction = [0.85, 1.0]

[[augment.view2]]
type = "RandomApply"
p = 0.8
ops = [{ type = "Scaling", sigma = 0.2 }]

[[augment.view2]]
type = "Jitter"
sigma = 0.1
"#;

/// Writes a demo dataset: 3 classes of 2-channel series (sine and cosine at 2, 3 or 4 cycles
/// per window, random phase and amplitude, Gaussian noise of std 0.8), `per_class` training and `per_class / 3`
/// test series of `length` steps each.
pub fn write_synthetic(root: &Path, per_class: usize, length: usize, seed: u64) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let noise = Normal::new(0.0f32, 0.8).expect("sigma");
    for (split, n) in [("train", per_class), ("test", per_class.div_ceil(3))] {
        for (class, cycles) in [("slow", 2.0f32), ("medium", 3.0), ("fast", 4.0)] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
            for i in 0..n {
                let phase = rng.random_range(0.0..std::f32::consts::TAU);
                let amp = rng.random_range(0.5f32..2.0);
                let mut text = String::from("x,y\n");
                for t in 0..length {
                    let a = std::f32::consts::TAU * cycles * t as f32 / length as f32 + phase;
                    text.push_str(&format!(
                        "{:.4},{:.4}\n",
                        amp * a.sin() + noise.sample(&mut rng),
                        amp * a.cos() + noise.sample(&mut rng)
                    ));
                }
                let path = dir.join(format!("{i:04}.csv"));
                std::fs::write(&path, text).with_context(|| path.display().to_string())?;
            }
        }
    }
    Ok(())
}

/// Pre-trains and evaluates on `data` into `out`, with `--set`-style `overrides` of [`CONFIG`].
///
/// # Errors
/// A bad override, unusable data, or a failed run, with the key or file named.
pub fn run(data: &Path, out: &Path, overrides: &[String]) -> Result<RunReport> {
    let cfg = load_config::<SeriesModality>(CONFIG, "custom_modality.rs CONFIG", overrides)?;
    let opts = RunOptions::new(out, data, Device::flex());
    Ok(train_and_evaluate(SeriesModality, cfg, &opts)?)
}

#[allow(dead_code)]
fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--synthetic") {
        let Some(dir) = args.get(1) else {
            bail!("usage: custom_modality --synthetic DATA");
        };
        write_synthetic(Path::new(dir), 60, 64, 0)?;
        println!("wrote a demo dataset to {dir}");
        return Ok(());
    }
    let (Some(data), Some(out)) = (args.first(), args.get(1)) else {
        bail!("usage: custom_modality DATA OUT [--set key=value]...  (or --synthetic DATA)");
    };
    let overrides: Vec<String> = args[2..]
        .chunks(2)
        .filter(|c| c[0] == "--set" && c.len() == 2)
        .map(|c| c[1].clone())
        .collect();
    let report = run(Path::new(data), Path::new(out), &overrides)?;
    for p in &report.probes {
        println!(
            "{:<7} {:<6} trained {:.2}%  random-init {:.2}%",
            p.probe,
            p.labels,
            p.trained_top1 * 100.0,
            p.random_init_top1.unwrap_or(f64::NAN) * 100.0
        );
    }
    Ok(())
}
