//! The `Modality` plugin trait: everything that depends on the kind of data.

use crate::augmentation::{AugmentContext, Augmentation, SampleSource};
use crate::config::{ConfigError, ConfigSection, ExperimentConfig};
use crate::data::{DataError, Datasets};
use crate::encoder::Encoder;
use crate::search_space::SearchSpace;
use burn::tensor::Device;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::Path;

/// Ties together a kind of data: its records, datasets, augmentation ops, collation into
/// tensors and default encoder. `vision`, `audio` and `text` implement it; a user's own modality
/// is written against this trait alone (see `examples/`).
///
/// The data path of one training step (docs/design.md): dataset [`Item`](Modality::Item) ->
/// [`to_sample`](Modality::to_sample) -> view-1 and view-2 pipelines of
/// [`Op`](Modality::Op)s (worker threads, seeded) -> [`collate`](Modality::collate) (worker
/// threads) -> [`to_input`](Modality::to_input) (trainer thread) -> the encoder.
///
/// # Example
/// A modality of 2-d points in two clusters, with its own augmentation op usable from TOML,
/// pre-trained with BYOL and evaluated (kNN and linear probe beside random init) by the
/// framework unchanged. `examples/custom_modality.rs` is a complete one (CSV time series).
/// ```
/// use serde::{Deserialize, Serialize};
/// use ssl_framework::augmentation::{AugmentContext, Augmentation, AugmentationError, check_range};
/// use ssl_framework::burn::nn::{Linear, LinearConfig};
/// use ssl_framework::burn::prelude::*;
/// use ssl_framework::config::{ConfigError, ConfigSection, load_config};
/// use ssl_framework::data::{DataError, Datasets, LabelSet, Split};
/// use ssl_framework::rand::{RngExt, SeedableRng, rngs::StdRng};
/// use ssl_framework::train::{RunOptions, train_and_evaluate};
/// use ssl_framework::{Encoder, Modality};
///
/// /// Every op of this modality's configs (typetag: `{ type = "Jitter", ... }`).
/// #[ssl_framework::typetag::serde(tag = "type")]
/// pub trait PointOp: Augmentation<Vec<f32>> {}
/// ssl_framework::register_combinators!(PointOp); // RandomApply, OneOf, Compose
///
/// /// Adds uniform noise in `[-amplitude, amplitude]`.
/// #[derive(Debug, Serialize, Deserialize)]
/// struct Jitter { amplitude: f64 }
/// impl Augmentation<Vec<f32>> for Jitter {
///     fn name(&self) -> &'static str { "Jitter" }
///     fn validate(&self) -> Result<(), AugmentationError> {
///         check_range("Jitter", "amplitude", self.amplitude, 0.0, 10.0)
///     }
///     fn apply(&self, mut x: Vec<f32>, ctx: &mut AugmentContext<'_, Vec<f32>>) -> Vec<f32> {
///         let a = self.amplitude as f32;
///         x.iter_mut().for_each(|v| *v += ctx.rng.random_range(-a..=a));
///         x
///     }
/// }
/// #[ssl_framework::typetag::serde]
/// impl PointOp for Jitter {}
///
/// /// `[data]`: how many points per split.
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// #[serde(default)]
/// struct PointData { points: usize }
/// impl Default for PointData { fn default() -> Self { Self { points: 64 } } }
/// impl ConfigSection for PointData {
///     fn validate(&self, p: &str) -> Result<(), ConfigError> {
///         ssl_framework::config::check_positive(&format!("{p}.points"), self.points)
///     }
/// }
/// /// `[encoder]`: the representation size.
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// #[serde(default)]
/// struct PointEncoderConfig { dim: usize }
/// impl Default for PointEncoderConfig { fn default() -> Self { Self { dim: 8 } } }
/// impl ConfigSection for PointEncoderConfig {
///     fn validate(&self, p: &str) -> Result<(), ConfigError> {
///         ssl_framework::config::check_positive(&format!("{p}.dim"), self.dim)
///     }
/// }
/// /// `[batch, 2]` -> `[batch, dim]`.
/// #[derive(Module, Debug)]
/// struct PointEncoder { layer: Linear }
/// impl Encoder for PointEncoder {
///     type Input = Tensor<2>;
///     fn forward(&self, x: Tensor<2>) -> Tensor<2> { self.layer.forward(x) }
///     fn dim(&self) -> usize { self.layer.weight.dims()[1] }
/// }
///
/// struct Points;
/// fn clusters(n: usize, seed: u64) -> Split<Vec<f32>> {
///     let mut rng = StdRng::seed_from_u64(seed);
///     let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
///     let items = labels.iter()
///         .map(|&c| { let m = if c == 0 { -1.0 } else { 1.0 };
///                     vec![m + rng.random_range(-0.3..0.3), rng.random_range(-1.0..1.0)] })
///         .collect();
///     Split { items, label_sets: vec![LabelSet {
///         name: "side".into(), classes: vec!["left".into(), "right".into()], labels }] }
/// }
/// impl Modality for Points {
///     type Item = Vec<f32>;
///     type Sample = Vec<f32>;
///     type Op = Box<dyn PointOp>;
///     type DataConfig = PointData;
///     type EncoderConfig = PointEncoderConfig;
///     type Encoder = PointEncoder;
///     type Batch = Vec<f32>;
///     fn name(&self) -> &'static str { "points" }
///     fn load(&self, cfg: &PointData, _root: &std::path::Path)
///         -> Result<Datasets<Vec<f32>>, DataError> {
///         Ok(Datasets { name: "clusters".into(), train: clusters(cfg.points, 1),
///                       test: clusters(cfg.points, 2), skipped: 0 })
///     }
///     fn to_sample(&self, item: &Vec<f32>) -> Vec<f32> { item.clone() }
///     fn collate(&self, samples: Vec<Vec<f32>>) -> Vec<f32> { samples.concat() }
///     fn to_input(&self, batch: Vec<f32>, device: &Device) -> Tensor<2> {
///         let n = batch.len() / 2;
///         Tensor::from_data(TensorData::new(batch, [n, 2]), device)
///     }
///     fn init_encoder(&self, cfg: &PointEncoderConfig, _: &PointData, device: &Device)
///         -> Result<PointEncoder, ConfigError> {
///         Ok(PointEncoder { layer: LinearConfig::new(2, cfg.dim).init(device) })
///     }
/// }
///
/// let cfg = load_config::<Points>(r#"
///     [byol]
///     projector_hidden = 16
///     projection_dim = 4
///     predictor_hidden = 16
///     [train]
///     epochs = 2
///     batch_size = 16
///     [eval]
///     knn_k = 5
///     probe_epochs = 5
///     [[augment.view1]]
///     type = "Jitter"
///     amplitude = 0.2
///     [[augment.view2]]
///     type = "RandomApply"
///     p = 0.5
///     ops = [{ type = "Jitter", amplitude = 0.4 }]
/// "#, "points.toml", &[]).unwrap();
/// let out = tempfile::tempdir().unwrap();
/// let opts = RunOptions::new(out.path(), out.path(), Device::flex());
/// let report = train_and_evaluate(Points, cfg, &opts).unwrap();
/// assert_eq!(report.probes.len(), 2); // kNN and linear probe on `side`
/// assert!(out.path().join("results.json").is_file());
/// ```
pub trait Modality: Send + Sync + Sized + 'static {
    /// A record as a dataset keeps it in memory (e.g. a decoded 8-bit image).
    type Item: Send + Sync + 'static;
    /// The working representation augmentations transform (e.g. a float image).
    type Sample: Send + 'static;
    /// The modality's serializable augmentation op: a `Box<dyn Trait>` of a typetag trait with
    /// [`Augmentation<Self::Sample>`] as a supertrait.
    type Op: Augmentation<Self::Sample> + Serialize + DeserializeOwned + 'static;
    /// The `[data]` section of a config: where and what to read.
    type DataConfig: ConfigSection + Default;
    /// The `[encoder]` section of a config: which network f.
    type EncoderConfig: ConfigSection + Default;
    /// The encoder network f.
    type Encoder: Encoder;
    /// A batch collated on the host by a worker thread.
    type Batch: Send + 'static;

    /// The modality's name as given to `--modality`.
    fn name(&self) -> &'static str;

    /// Reads the train and test splits.
    ///
    /// # Errors
    /// [`DataError`] when the folder has no usable data (naming it), when a file that must be
    /// read fails (naming the file), or when the splits are unusable.
    fn load(&self, cfg: &Self::DataConfig, root: &Path) -> Result<Datasets<Self::Item>, DataError>;

    /// Converts a stored record into the working representation, before augmentation.
    fn to_sample(&self, item: &Self::Item) -> Self::Sample;

    /// Reads a stored record into `copies` working samples (one per view), reading and
    /// decoding it once. The loaders call this, not [`to_sample`](Modality::to_sample).
    /// Default: `to_sample` `copies` times, never failing. A modality whose records are read
    /// when used (vision's streaming image folders and tar shards) overrides it.
    ///
    /// # Errors
    /// [`DataError`] naming the file when the record cannot be read or decoded; the loaders
    /// then skip the record, count it, and use another.
    fn try_samples(
        &self,
        item: &Self::Item,
        copies: usize,
    ) -> Result<Vec<Self::Sample>, DataError> {
        Ok((0..copies).map(|_| self.to_sample(item)).collect())
    }

    /// The views of one record for pre-training: reads it once and applies each pipeline of
    /// `views` to its own copy, in order, every op drawing from `rng` (view 1's ops first) with
    /// other training samples from `source`. Default: [`apply_views`]. Vision overrides it to
    /// decode a large JPEG at the reduced scale its random crop needs.
    ///
    /// # Errors
    /// [`DataError`] naming the file when the record cannot be read or decoded.
    fn try_views(
        &self,
        item: &Self::Item,
        views: &[&[Self::Op]],
        rng: &mut rand::rngs::StdRng,
        source: &dyn SampleSource<Self::Sample>,
    ) -> Result<Vec<Self::Sample>, DataError> {
        apply_views(self, item, views, rng, source)
    }

    /// The order in which pre-training reads the training records in `epoch`: a permutation of
    /// `0..items.len()` that depends only on the records, `seed` and `epoch` (so a resumed run
    /// reads what an uninterrupted one did). Default: a seeded uniform shuffle
    /// ([`epoch_order`](crate::data::loader::epoch_order)); vision reads tar shards
    /// sequentially through a shuffle buffer instead.
    fn epoch_order(&self, items: &[Self::Item], seed: u64, epoch: usize) -> Vec<usize> {
        crate::data::loader::epoch_order(items.len(), seed, epoch)
    }

    /// Collates augmented samples into one host-side batch (runs on worker threads).
    fn collate(&self, samples: Vec<Self::Sample>) -> Self::Batch;

    /// Moves a collated batch onto `device` as the encoder's input.
    fn to_input(&self, batch: Self::Batch, device: &Device) -> <Self::Encoder as Encoder>::Input;

    /// State the modality derived from the training data in [`load`](Modality::load) (e.g.
    /// normalization statistics), stored in checkpoints and `results.json`. Default: none.
    fn state(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Restores [`state`](Modality::state) from a checkpoint, after `load`.
    ///
    /// # Errors
    /// [`DataError::Unusable`] when the stored state is malformed.
    fn restore_state(&self, state: &serde_json::Value) -> Result<(), DataError> {
        let _ = state;
        Ok(())
    }

    /// The `[data]` section that reads a separate labelled evaluation dataset (`eval.data`,
    /// `ssl train --eval-data`), given the run's: `None` (the default) reads it with the run's
    /// own section. A modality whose section can switch labels off for pre-training (vision's
    /// `data.labels = "none"`) returns a copy with them on.
    fn eval_data_config(&self, cfg: &Self::DataConfig) -> Option<Self::DataConfig> {
        let _ = cfg;
        None
    }

    /// Builds a freshly initialized encoder (weights drawn from the device's seeded RNG).
    ///
    /// # Errors
    /// [`ConfigError`] when the encoder config does not fit the data config.
    fn init_encoder(
        &self,
        cfg: &Self::EncoderConfig,
        data: &Self::DataConfig,
        device: &Device,
    ) -> Result<Self::Encoder, ConfigError>;

    /// The augmentation search space `ssl search-augment` explores for this modality, given
    /// the experiment the policies go into (its data section sets e.g. the crop size): the
    /// crop every view starts with, the ops a policy may add with the meaning of each op's
    /// magnitude, and the deterministic ops every view ends with. Default: `None` (the
    /// modality cannot be searched).
    fn search_space(&self, base: &ExperimentConfig<Self>) -> Option<SearchSpace<Self::Op>> {
        let _ = base;
        None
    }
}

/// The default of [`Modality::try_views`]: [`Modality::try_samples`] once with one copy per
/// view, then each view's ops in order on its copy, drawing from `rng`.
///
/// # Errors
/// The error of `try_samples`.
pub fn apply_views<M: Modality>(
    modality: &M,
    item: &M::Item,
    views: &[&[M::Op]],
    rng: &mut rand::rngs::StdRng,
    source: &dyn SampleSource<M::Sample>,
) -> Result<Vec<M::Sample>, DataError> {
    let samples = modality.try_samples(item, views.len())?;
    Ok(samples
        .into_iter()
        .zip(views)
        .map(|(sample, ops)| {
            let mut ctx = AugmentContext::with_source(rng, source);
            ops.iter().fold(sample, |x, op| op.apply(x, &mut ctx))
        })
        .collect())
}
