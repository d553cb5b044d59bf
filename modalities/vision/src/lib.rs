//! # ssl-vision
//!
//! The vision modality of `ssl`: image readers (ImageFolder, CIFAR binary, IDX), the BYOL
//! augmentations of the paper's Table 6, and encoders (small CNN, ResNet-18/34/50).

pub mod augment;
pub mod crop_decode;
pub mod download;
pub mod encoders;
pub mod image;
pub mod locate;
pub mod readers;

use augment::VisionOp;
use burn::prelude::*;
use encoders::{ResNet, SmallCnn, Stem, VisionEncoder};
use image::{Image, ImageRecord};
use readers::Format;
use serde::{Deserialize, Serialize};
use ssl_framework::config::{ConfigError, ConfigSection, check_positive};
use ssl_framework::data::folder::FolderLabels;
use ssl_framework::data::{DataError, Datasets};
use ssl_framework::modality::Modality;
use std::path::Path;

/// The `[data]` section of a vision config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisionDataConfig {
    /// Dataset name for reports (a folder of images in no known layout is named after
    /// itself), and which dataset to download when none is found (`"cifar10"` is
    /// downloadable).
    pub dataset: String,
    /// On-disk layout (`auto`, `image-folder`, `cifar-binary`, `idx`).
    pub format: Format,
    /// Use a seeded subset of this many training images (0: all).
    pub train_subset: usize,
    /// Use a seeded subset of this many test images (0: all).
    pub test_subset: usize,
    /// Seed of the subsets (fixed, so runs with different seeds see the same data).
    pub subset_seed: u64,
    /// Side in pixels of the images the encoder sees (what the crops produce).
    pub image_size: usize,
    /// Image folders: `"folders"` (class folders label a split whose entries are only
    /// folders) or `"none"` (every image unlabelled, e.g. photos sorted into date folders).
    #[serde(skip_serializing_if = "is_folder_labels")]
    pub labels: FolderLabels,
    /// Image folders and tar shards: `"auto"` decodes everything into memory at load when the
    /// estimated decoded size (from the image headers) is at most `in_memory_limit_mb`, and
    /// streams otherwise (each image read and decoded by the loader's workers when its batch
    /// is prepared: memory bounded by the prefetch depth and batch, not the dataset); `"on"`
    /// always streams, `"off"` never does. Tar shards always stream. Both give the same
    /// batches for the same seed when every image decodes and `decode_at_crop_scale` is off (or
    /// the images are under 256 pixels a side); otherwise crops agree up to resampling.
    pub streaming: Streaming,
    /// The largest estimated decoded size, in MiB, that `streaming = "auto"` keeps in memory.
    pub in_memory_limit_mb: usize,
    /// Streaming only: a view that starts with `RandomResizedCrop` decodes a JPEG at 1/4 or 1/8
    /// of its size when its crop box is at least that many times the output size (JPEG's
    /// scaled IDCT; see [`crop_decode`]): large photos cost a fraction of a full decode. The
    /// pixels then differ slightly from a full decode's; `false` always decodes in full.
    pub decode_at_crop_scale: bool,
}

/// Whether image folders are decoded into memory at load or streamed (`data.streaming`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Streaming {
    /// Stream when the estimated decoded size exceeds `data.in_memory_limit_mb`.
    #[default]
    Auto,
    /// Always stream.
    On,
    /// Always decode into memory.
    Off,
}

fn is_folder_labels(l: &FolderLabels) -> bool {
    *l == FolderLabels::Folders
}

impl Default for VisionDataConfig {
    fn default() -> Self {
        Self {
            dataset: "cifar10".into(),
            format: Format::Auto,
            train_subset: 0,
            test_subset: 0,
            subset_seed: 0,
            image_size: 32,
            labels: FolderLabels::Folders,
            streaming: Streaming::Auto,
            in_memory_limit_mb: 2048,
            decode_at_crop_scale: true,
        }
    }
}

impl ConfigSection for VisionDataConfig {
    fn validate(&self, p: &str) -> Result<(), ConfigError> {
        check_positive(&format!("{p}.image_size"), self.image_size)
    }
}

/// Decodes the datasets' encoded records into memory, or keeps them for streaming
/// (`data.streaming`; see [`VisionDataConfig::streaming`]), and says which on stderr when
/// there was a choice. Records that do not decode are dropped and added to `d.skipped`.
///
/// # Errors
/// [`DataError::NoData`] when none of the training images decodes.
pub fn stream_or_decode(
    d: &mut Datasets<ImageRecord>,
    mode: Streaming,
    limit_mb: usize,
) -> Result<(), DataError> {
    let encoded = |s: &ssl_framework::data::Split<ImageRecord>| {
        s.items
            .iter()
            .filter_map(|r| match r {
                ImageRecord::Encoded(e) => Some(e.decoded_bytes()),
                ImageRecord::Decoded(_) => None,
            })
            .fold((0usize, 0u64), |(n, b), x| (n + 1, b + x))
    };
    let ((n1, b1), (n2, b2)) = (encoded(&d.train), encoded(&d.test));
    if n1 + n2 == 0 {
        return Ok(());
    }
    // Tar shards always stream: their epoch order reads them shard by shard.
    let shards = readers::tar_shards::all_tar_members(&d.train.items);
    let mib = (b1 + b2) as f64 / (1024.0 * 1024.0);
    let stream = shards
        || match mode {
            Streaming::On => true,
            Streaming::Off => false,
            Streaming::Auto => mib > limit_mb as f64,
        };
    if stream {
        let why = match mode {
            _ if shards => "tar shards are always streamed".to_string(),
            Streaming::On => "data.streaming = \"on\"".to_string(),
            _ => format!("decoded about {mib:.0} MiB > data.in_memory_limit_mb = {limit_mb}"),
        };
        eprintln!(
            "streaming {n1} training and {n2} held-out images from storage ({why}): each is decoded when its batch is prepared"
        );
        return Ok(());
    }
    let (train, s1) = readers::image_folder::decode_split(std::mem::replace(
        &mut d.train,
        ssl_framework::data::Split {
            items: Vec::new(),
            label_sets: Vec::new(),
        },
    ));
    let (test, s2) = readers::image_folder::decode_split(std::mem::replace(
        &mut d.test,
        ssl_framework::data::Split {
            items: Vec::new(),
            label_sets: Vec::new(),
        },
    ));
    if train.is_empty() {
        return Err(DataError::NoData {
            path: d.name.clone().into(),
            reason: format!("none of its {n1} training images decodes"),
        });
    }
    d.train = train;
    d.test = test;
    d.skipped += s1 + s2;
    Ok(())
}

/// Encoder architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// [`SmallCnn`] with `channels` and `strides`.
    SmallCnn,
    /// ResNet-18.
    Resnet18,
    /// ResNet-34.
    Resnet34,
    /// ResNet-50.
    Resnet50,
}

/// The `[encoder]` section of a vision config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VisionEncoderConfig {
    /// Architecture.
    pub arch: Arch,
    /// ResNet stem (`cifar` for 32x32 inputs, `imagenet` for 224x224).
    pub stem: Stem,
    /// ResNet base width (64 in the paper).
    pub width: usize,
    /// Small CNN: output channels of each block.
    pub channels: Vec<usize>,
    /// Small CNN: stride of each block.
    pub strides: Vec<usize>,
}

impl Default for VisionEncoderConfig {
    fn default() -> Self {
        Self {
            arch: Arch::SmallCnn,
            stem: Stem::Cifar,
            width: 64,
            channels: vec![32, 64, 128, 256],
            strides: vec![1, 2, 2, 2],
        }
    }
}

impl ConfigSection for VisionEncoderConfig {
    fn validate(&self, p: &str) -> Result<(), ConfigError> {
        check_positive(&format!("{p}.width"), self.width)?;
        if self.arch == Arch::SmallCnn {
            if self.channels.is_empty() || self.channels.contains(&0) {
                return Err(ConfigError::value(
                    &format!("{p}.channels"),
                    &self.channels,
                    "a non-empty list of positive integers",
                ));
            }
            if self.strides.len() != self.channels.len()
                || !self.strides.iter().all(|s| (1..=4).contains(s))
            {
                return Err(ConfigError::value(
                    &format!("{p}.strides"),
                    &self.strides,
                    "one stride in [1, 4] per entry of encoder.channels",
                ));
            }
        }
        Ok(())
    }
}

/// A collated batch on the host: `[batch, 3, height, width]`, row-major.
#[derive(Debug, Clone)]
pub struct VisionBatch {
    /// The values.
    pub data: Vec<f32>,
    /// `[batch, 3, height, width]`.
    pub shape: [usize; 4],
}

/// Images: ImageFolder / CIFAR / IDX data, BYOL's Table-6 augmentations, CNN encoders.
#[derive(Debug, Clone, Default)]
pub struct VisionModality;

impl Modality for VisionModality {
    type Item = ImageRecord;
    type Sample = Image;
    type Op = VisionOp;
    type DataConfig = VisionDataConfig;
    type EncoderConfig = VisionEncoderConfig;
    type Encoder = VisionEncoder;
    type Batch = VisionBatch;

    fn name(&self) -> &'static str {
        "vision"
    }

    fn load(
        &self,
        cfg: &VisionDataConfig,
        root: &Path,
    ) -> Result<Datasets<ImageRecord>, DataError> {
        let mut d = if readers::tar_shards::is_shard_spec(root) {
            let mut d = readers::tar_shards::load(root)?;
            if cfg.labels == FolderLabels::None {
                d.train.label_sets.clear();
                d.test.label_sets.clear();
            }
            d
        } else {
            readers::load(root, cfg.format, cfg.labels)?
        };
        if cfg.train_subset > 0 {
            d.train = d.train.subset(cfg.train_subset, cfg.subset_seed);
        }
        if cfg.test_subset > 0 {
            d.test = d
                .test
                .subset(cfg.test_subset, cfg.subset_seed.wrapping_add(1));
        }
        if !cfg.decode_at_crop_scale {
            for r in d.train.items.iter_mut().chain(d.test.items.iter_mut()) {
                if let ImageRecord::Encoded(e) = r {
                    e.decode_at_crop_scale = false;
                }
            }
        }
        stream_or_decode(&mut d, cfg.streaming, cfg.in_memory_limit_mb).map_err(|e| match e {
            DataError::NoData { reason, .. } => DataError::NoData {
                path: root.to_path_buf(),
                reason,
            },
            e => e,
        })?;
        // A folder in a known layout is the configured dataset; any other folder of images is
        // named after itself (the report of a run on `~/photos` says `photos`, not `cifar10`).
        if cfg.format != Format::Auto || readers::detect(root).is_ok() {
            d.name = cfg.dataset.clone();
        }
        Ok(d)
    }

    fn eval_data_config(&self, cfg: &VisionDataConfig) -> Option<VisionDataConfig> {
        // `data.labels = "none"` is for the pre-training images; the probes need labels.
        (cfg.labels == FolderLabels::None).then(|| VisionDataConfig {
            labels: FolderLabels::Folders,
            ..cfg.clone()
        })
    }

    /// # Panics
    /// When a streamed image cannot be read or decoded (naming the file); the loaders use
    /// [`try_samples`](Modality::try_samples), which returns the error instead.
    fn to_sample(&self, item: &ImageRecord) -> Image {
        match item.decode() {
            Ok(img) => Image::from_stored(&img),
            Err(e) => panic!("{e}"),
        }
    }

    fn epoch_order(&self, items: &[ImageRecord], seed: u64, epoch: usize) -> Vec<usize> {
        if readers::tar_shards::all_tar_members(items) {
            let shard_of = readers::tar_shards::shard_indices(items);
            readers::tar_shards::shard_order(
                &shard_of,
                seed,
                epoch,
                readers::tar_shards::SHUFFLE_BUFFER,
            )
        } else {
            ssl_framework::data::loader::epoch_order(items.len(), seed, epoch)
        }
    }

    fn try_views(
        &self,
        item: &ImageRecord,
        views: &[&[VisionOp]],
        rng: &mut rand::rngs::StdRng,
        source: &dyn ssl_framework::augmentation::SampleSource<Image>,
    ) -> Result<Vec<Image>, DataError> {
        match item {
            ImageRecord::Encoded(enc) => crop_decode::views(enc, views, rng, source),
            ImageRecord::Decoded(_) => {
                ssl_framework::modality::apply_views(self, item, views, rng, source)
            }
        }
    }

    fn try_samples(&self, item: &ImageRecord, copies: usize) -> Result<Vec<Image>, DataError> {
        let img = item.decode()?;
        Ok((0..copies).map(|_| Image::from_stored(&img)).collect())
    }

    fn collate(&self, samples: Vec<Image>) -> VisionBatch {
        let (w, h) = samples
            .first()
            .map(|s| (s.width, s.height))
            .unwrap_or((0, 0));
        let plane = w * h;
        let mut data = vec![0f32; samples.len() * 3 * plane];
        for (i, s) in samples.iter().enumerate() {
            assert!(
                s.width == w && s.height == h,
                "images of different sizes in one batch ({}x{} and {w}x{h}): end the pipeline with RandomResizedCrop, or Resize + CenterCrop",
                s.width,
                s.height
            );
            let out = &mut data[i * 3 * plane..(i + 1) * 3 * plane];
            for (p, px) in s.data.chunks_exact(3).enumerate() {
                out[p] = px[0];
                out[plane + p] = px[1];
                out[2 * plane + p] = px[2];
            }
        }
        VisionBatch {
            data,
            shape: [samples.len(), 3, h, w],
        }
    }

    fn to_input(&self, batch: VisionBatch, device: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(batch.data, batch.shape), device)
    }

    fn search_space(
        &self,
        base: &ssl_framework::config::ExperimentConfig<Self>,
    ) -> Option<ssl_framework::search_space::SearchSpace<VisionOp>> {
        Some(augment::search::search_space(base))
    }

    fn init_encoder(
        &self,
        cfg: &VisionEncoderConfig,
        _data: &VisionDataConfig,
        device: &Device,
    ) -> Result<VisionEncoder, ConfigError> {
        Ok(match cfg.arch {
            Arch::SmallCnn => {
                VisionEncoder::SmallCnn(SmallCnn::new(3, &cfg.channels, &cfg.strides, device))
            }
            Arch::Resnet18 => VisionEncoder::ResNet(ResNet::new(18, cfg.stem, cfg.width, device)),
            Arch::Resnet34 => VisionEncoder::ResNet(ResNet::new(34, cfg.stem, cfg.width, device)),
            Arch::Resnet50 => VisionEncoder::ResNet(ResNet::new(50, cfg.stem, cfg.width, device)),
        })
    }
}
