//! A toy modality for framework tests: 8-d vectors from a few Gaussian clusters, noise
//! augmentation, a Linear-BN-ReLU encoder. Written against the public traits only.
#![allow(dead_code)]

use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, Relu};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use ssl_framework::augmentation::{AugmentContext, Augmentation, AugmentationError, check_range};
use ssl_framework::config::{ConfigError, ConfigSection};
use ssl_framework::data::{DataError, Datasets, LabelSet, Split};
use ssl_framework::{Encoder, Modality};
use std::path::Path;

pub const DIM: usize = 8;

#[typetag::serde(tag = "type")]
pub trait ToyAugmentation: Augmentation<Vec<f32>> {}
ssl_framework::register_combinators!(ToyAugmentation);

/// Adds uniform noise in `[-amplitude, amplitude]`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Noise {
    pub amplitude: f64,
}

impl Augmentation<Vec<f32>> for Noise {
    fn name(&self) -> &'static str {
        "Noise"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_range("Noise", "amplitude", self.amplitude, 0.0, 10.0)
    }
    fn apply(&self, mut x: Vec<f32>, ctx: &mut AugmentContext<'_, Vec<f32>>) -> Vec<f32> {
        let a = self.amplitude as f32;
        x.iter_mut()
            .for_each(|v| *v += ctx.rng.random_range(-a..=a));
        x
    }
}

#[typetag::serde(name = "Noise")]
impl ToyAugmentation for Noise {}

/// Turns the sample into NaNs: bad input that makes the loss non-finite.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Poison {}

impl Augmentation<Vec<f32>> for Poison {
    fn name(&self) -> &'static str {
        "Poison"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        Ok(())
    }
    fn apply(&self, mut x: Vec<f32>, _: &mut AugmentContext<'_, Vec<f32>>) -> Vec<f32> {
        x.iter_mut().for_each(|v| *v = f32::NAN);
        x
    }
}

#[typetag::serde(name = "Poison")]
impl ToyAugmentation for Poison {}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToyData {
    pub train: usize,
    pub test: usize,
}

impl Default for ToyData {
    fn default() -> Self {
        Self {
            train: 96,
            test: 48,
        }
    }
}

impl ConfigSection for ToyData {
    fn validate(&self, p: &str) -> Result<(), ConfigError> {
        ssl_framework::config::check_positive(&format!("{p}.train"), self.train)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ToyEncoderConfig {
    pub hidden: usize,
    /// Output zeros whatever the input: a collapsed encoder, for the collapse detector's test.
    pub constant: bool,
}

impl Default for ToyEncoderConfig {
    fn default() -> Self {
        Self {
            hidden: 16,
            constant: false,
        }
    }
}

impl ConfigSection for ToyEncoderConfig {
    fn validate(&self, _: &str) -> Result<(), ConfigError> {
        Ok(())
    }
}

#[derive(Module, Debug)]
pub struct ToyEncoder {
    pub fc: Linear,
    pub bn: BatchNorm,
    pub relu: Relu,
    pub hidden: usize,
    pub constant: bool,
}

impl Encoder for ToyEncoder {
    type Input = Tensor<2>;
    fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let y = self.relu.forward(self.bn.forward(self.fc.forward(x)));
        if self.constant { y.mul_scalar(0.0) } else { y }
    }
    fn dim(&self) -> usize {
        self.hidden
    }
}

pub fn toy_encoder(hidden: usize, device: &Device) -> ToyEncoder {
    ToyEncoder {
        fc: LinearConfig::new(DIM, hidden).init(device),
        bn: BatchNormConfig::new(hidden).init(device),
        relu: Relu::new(),
        hidden,
        constant: false,
    }
}

#[derive(Debug)]
pub struct Toy;

fn split(n: usize, seed: u64) -> Split<Vec<f32>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut items = Vec::new();
    let mut labels = Vec::new();
    for i in 0..n {
        let c = i % 3;
        items.push(
            (0..DIM)
                .map(|j| if j == c { 2.0 } else { 0.0 } + rng.random_range(-0.5f32..0.5))
                .collect(),
        );
        labels.push(c);
    }
    Split {
        items,
        label_sets: vec![LabelSet {
            name: "cluster".into(),
            classes: vec!["a".into(), "b".into(), "c".into()],
            labels,
        }],
    }
}

impl Modality for Toy {
    type Item = Vec<f32>;
    type Sample = Vec<f32>;
    type Op = Box<dyn ToyAugmentation>;
    type DataConfig = ToyData;
    type EncoderConfig = ToyEncoderConfig;
    type Encoder = ToyEncoder;
    type Batch = (Vec<f32>, usize);

    fn name(&self) -> &'static str {
        "toy"
    }
    fn load(&self, cfg: &ToyData, _root: &Path) -> Result<Datasets<Vec<f32>>, DataError> {
        Ok(Datasets {
            name: "toy".into(),
            train: split(cfg.train, 1),
            test: split(cfg.test, 2),
            skipped: 0,
        })
    }
    fn to_sample(&self, item: &Vec<f32>) -> Vec<f32> {
        item.clone()
    }
    fn collate(&self, samples: Vec<Vec<f32>>) -> (Vec<f32>, usize) {
        let n = samples.len();
        (samples.into_iter().flatten().collect(), n)
    }
    fn to_input(&self, batch: (Vec<f32>, usize), device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(batch.0, [batch.1, DIM]), device)
    }
    fn init_encoder(
        &self,
        cfg: &ToyEncoderConfig,
        _: &ToyData,
        device: &Device,
    ) -> Result<ToyEncoder, ConfigError> {
        Ok(ToyEncoder {
            constant: cfg.constant,
            ..toy_encoder(cfg.hidden, device)
        })
    }
}

pub const CONFIG: &str = r#"
seed = 3
[data]
train = 96
test = 48
[encoder]
hidden = 16
[byol]
projector_hidden = 32
projection_dim = 12
predictor_hidden = 32
tau_base = 0.9
[optim]
optimizer = "sgd"
base_lr = 0.5
warmup_epochs = 0.5
[train]
epochs = 4
batch_size = 16
num_workers = 2
checkpoint_every = 0
log_every = 1
[eval]
knn_k = 10
probe_epochs = 5
batch_size = 32
[[augment.view1]]
type = "Noise"
amplitude = 0.3
[[augment.view2]]
type = "RandomApply"
p = 0.5
ops = [{ type = "Noise", amplitude = 0.6 }]
"#;

pub fn config(overrides: &[&str]) -> ssl_framework::config::ExperimentConfig<Toy> {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    ssl_framework::config::load_config::<Toy>(CONFIG, "toy.toml", &o).expect("toy config")
}
