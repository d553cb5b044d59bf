//! # ssl-audio
//!
//! The audio modality of `ssl`, following BYOL-A (Niizumi et al. 2021, arXiv 2103.06695):
//! WAV reading (`hound`), resampling (`rubato`), the log-mel front end (`realfft`),
//! normalization with training-set statistics, BYOL-A's augmentations and encoder.

pub mod augment;
pub mod dataset;
pub mod encoder;
pub mod melspec;
pub mod resample;
pub mod wav;

use augment::AudioOp;
use burn::prelude::*;
use dataset::Layout;
use encoder::{AudioEncoder, AudioInput};
use melspec::{LOG_EPS, LogMel, LogMelConfig, Spectrogram};
use serde::{Deserialize, Serialize};
use ssl_framework::config::{ConfigError, ConfigSection, check_f64, check_positive};
use ssl_framework::data::folder::FolderLabels;
use ssl_framework::data::{DataError, Datasets};
use ssl_framework::modality::Modality;
use std::path::Path;
use std::sync::RwLock;

/// The `[data]` section of an audio config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioDataConfig {
    /// Dataset name for reports.
    pub dataset: String,
    /// How labels and splits are found (`auto`, `fsdd`, `folders`).
    pub layout: Layout,
    /// Sample rate in Hz the audio is resampled to (BYOL-A: 16000).
    pub sample_rate: u32,
    /// FFT and window size in samples (1024).
    pub n_fft: usize,
    /// Hop in samples (160: 10 ms at 16 kHz).
    pub hop_length: usize,
    /// Mel bands (64).
    pub n_mels: usize,
    /// Lowest mel band edge in Hz (60).
    pub f_min: f32,
    /// Highest mel band edge in Hz (7800).
    pub f_max: f32,
    /// Clips shorter than this many frames are padded with silence at the end (BYOL-A pads the
    /// waveform to the segment length), so that crops and resizing move the clip's boundary
    /// differently in the two views instead of leaving its length as a shared cue.
    pub min_frames: usize,
    /// Use a seeded subset of this many training clips (0: all).
    pub train_subset: usize,
    /// Use a seeded subset of this many test clips (0: all).
    pub test_subset: usize,
    /// Folders of WAVs: `"folders"` (class folders label a split whose entries are only
    /// folders) or `"none"` (every clip unlabelled).
    #[serde(skip_serializing_if = "is_folder_labels")]
    pub labels: FolderLabels,
}

fn is_folder_labels(l: &FolderLabels) -> bool {
    *l == FolderLabels::Folders
}

impl Default for AudioDataConfig {
    fn default() -> Self {
        let f = LogMelConfig::default();
        Self {
            dataset: "fsdd".into(),
            layout: Layout::Auto,
            sample_rate: f.sample_rate,
            n_fft: f.n_fft,
            hop_length: f.hop_length,
            n_mels: f.n_mels,
            f_min: f.f_min,
            f_max: f.f_max,
            min_frames: 96,
            train_subset: 0,
            test_subset: 0,
            labels: FolderLabels::Folders,
        }
    }
}

impl AudioDataConfig {
    /// The front-end settings.
    pub fn logmel(&self) -> LogMelConfig {
        LogMelConfig {
            sample_rate: self.sample_rate,
            n_fft: self.n_fft,
            hop_length: self.hop_length,
            n_mels: self.n_mels,
            f_min: self.f_min,
            f_max: self.f_max,
        }
    }
}

impl ConfigSection for AudioDataConfig {
    fn validate(&self, p: &str) -> Result<(), ConfigError> {
        if !(1000..=384_000).contains(&self.sample_rate) {
            return Err(ConfigError::value(
                &format!("{p}.sample_rate"),
                self.sample_rate,
                "a rate in Hz in [1000, 384000]",
            ));
        }
        if !self.n_fft.is_power_of_two() || !(64..=16384).contains(&self.n_fft) {
            return Err(ConfigError::value(
                &format!("{p}.n_fft"),
                self.n_fft,
                "a power of two in [64, 16384]",
            ));
        }
        check_positive(&format!("{p}.hop_length"), self.hop_length)?;
        check_positive(&format!("{p}.n_mels"), self.n_mels)?;
        check_f64(
            &format!("{p}.f_min"),
            self.f_min as f64,
            0.0,
            self.sample_rate as f64 / 2.0,
        )?;
        check_f64(
            &format!("{p}.f_max"),
            self.f_max as f64,
            self.f_min as f64 + 1.0,
            self.sample_rate as f64 / 2.0,
        )
    }
}

/// The `[encoder]` section of an audio config (BYOL-A's AudioNTT2020 shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioEncoderConfig {
    /// Conv blocks (each halves frequency and time; BYOL-A: 3).
    pub blocks: usize,
    /// Channels of every conv block (BYOL-A: 64).
    pub channels: usize,
    /// Output width (BYOL-A: 2048).
    pub dim: usize,
    /// Dropout between the MLP layers (BYOL-A: 0.3).
    pub dropout: f64,
}

impl Default for AudioEncoderConfig {
    fn default() -> Self {
        Self {
            blocks: 3,
            channels: 64,
            dim: 2048,
            dropout: 0.3,
        }
    }
}

impl ConfigSection for AudioEncoderConfig {
    fn validate(&self, p: &str) -> Result<(), ConfigError> {
        if !(1..=6).contains(&self.blocks) {
            return Err(ConfigError::value(
                &format!("{p}.blocks"),
                self.blocks,
                "an integer in [1, 6]",
            ));
        }
        check_positive(&format!("{p}.channels"), self.channels)?;
        check_positive(&format!("{p}.dim"), self.dim)?;
        check_f64(&format!("{p}.dropout"), self.dropout, 0.0, 0.99)
    }
}

/// Mean and standard deviation of the training set's log-mel values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NormStats {
    /// Mean of every log-mel value of the training split.
    pub mean: f32,
    /// Their standard deviation.
    pub std: f32,
}

impl NormStats {
    /// Statistics over all values of `items`.
    pub fn of(items: &[Spectrogram]) -> Self {
        let (mut n, mut s, mut s2) = (0f64, 0f64, 0f64);
        for it in items {
            for &v in &it.data {
                n += 1.0;
                s += v as f64;
                s2 += (v as f64) * (v as f64);
            }
        }
        let mean = s / n.max(1.0);
        let std = (s2 / n.max(1.0) - mean * mean).max(1e-12).sqrt();
        Self {
            mean: mean as f32,
            std: std as f32,
        }
    }
}

/// A collated batch `[batch, 1, n_mels, frames]`, shorter clips padded with silence.
#[derive(Debug, Clone)]
pub struct AudioBatch {
    /// Values, row-major.
    pub data: Vec<f32>,
    /// `[batch, 1, n_mels, frames]`.
    pub shape: [usize; 4],
    /// Each clip's own frames (the rest of its row is batch padding).
    pub frames: Vec<usize>,
}

/// Sound: WAV folders or FSDD, log-mel front end, BYOL-A augmentations and encoder.
#[derive(Debug, Default)]
pub struct AudioModality {
    stats: RwLock<Option<NormStats>>,
    min_frames: RwLock<usize>,
    pad_frames: RwLock<usize>,
}

impl AudioModality {
    /// The normalization statistics (after `load` or `restore_state`).
    pub fn stats(&self) -> Option<NormStats> {
        *self.stats.read().expect("stats lock")
    }

    fn silence(&self) -> f32 {
        let s = self.stats().unwrap_or(NormStats {
            mean: 0.0,
            std: 1.0,
        });
        (LOG_EPS.ln() - s.mean) / s.std
    }
}

impl Modality for AudioModality {
    type Item = Spectrogram;
    type Sample = Spectrogram;
    type Op = AudioOp;
    type DataConfig = AudioDataConfig;
    type EncoderConfig = AudioEncoderConfig;
    type Encoder = AudioEncoder;
    type Batch = AudioBatch;

    fn name(&self) -> &'static str {
        "audio"
    }

    fn load(&self, cfg: &AudioDataConfig, root: &Path) -> Result<Datasets<Spectrogram>, DataError> {
        let front = LogMel::new(cfg.logmel());
        let mut d = dataset::load_with_labels(root, cfg.layout, cfg.labels, &front)?;
        if cfg.train_subset > 0 {
            d.train = d.train.subset(cfg.train_subset, 0);
        }
        if cfg.test_subset > 0 {
            d.test = d.test.subset(cfg.test_subset, 1);
        }
        d.name = cfg.dataset.clone();
        *self.stats.write().expect("stats lock") = Some(NormStats::of(&d.train.items));
        *self.pad_frames.write().expect("lock") = cfg.min_frames;
        Ok(d)
    }

    fn eval_data_config(&self, cfg: &AudioDataConfig) -> Option<AudioDataConfig> {
        // `data.labels = "none"` is for the pre-training clips; the probes need labels.
        (cfg.labels == FolderLabels::None).then(|| AudioDataConfig {
            labels: FolderLabels::Folders,
            ..cfg.clone()
        })
    }

    fn to_sample(&self, item: &Spectrogram) -> Spectrogram {
        let s = self.stats().unwrap_or(NormStats {
            mean: 0.0,
            std: 1.0,
        });
        let inv = 1.0 / s.std;
        let frames = item.frames.max(*self.pad_frames.read().expect("lock"));
        let silence = self.silence();
        let mut data = vec![silence; item.n_mels * frames];
        for m in 0..item.n_mels {
            let src = &item.data[m * item.frames..(m + 1) * item.frames];
            for (o, v) in data[m * frames..m * frames + item.frames]
                .iter_mut()
                .zip(src)
            {
                *o = (v - s.mean) * inv;
            }
        }
        Spectrogram {
            n_mels: item.n_mels,
            frames,
            data,
        }
    }

    fn collate(&self, samples: Vec<Spectrogram>) -> AudioBatch {
        let n_mels = samples.first().map(|s| s.n_mels).unwrap_or(0);
        let frames = samples
            .iter()
            .map(|s| s.frames)
            .max()
            .unwrap_or(0)
            .max(*self.min_frames.read().expect("lock"));
        let silence = self.silence();
        let mut data = vec![silence; samples.len() * n_mels * frames];
        for (i, s) in samples.iter().enumerate() {
            assert_eq!(
                s.n_mels, n_mels,
                "spectrograms with different numbers of mel bands in one batch"
            );
            for m in 0..n_mels {
                let dst = (i * n_mels + m) * frames;
                data[dst..dst + s.frames]
                    .copy_from_slice(&s.data[m * s.frames..(m + 1) * s.frames]);
            }
        }
        AudioBatch {
            data,
            shape: [samples.len(), 1, n_mels, frames],
            frames: samples.iter().map(|s| s.frames).collect(),
        }
    }

    fn to_input(&self, batch: AudioBatch, device: &Device) -> AudioInput {
        // Time steps after the encoder's pooling (by 2 per block): a step is valid when it
        // covers the clip's own frames (at least one per clip).
        let factor = (*self.min_frames.read().expect("lock")).max(1);
        let [b, _, _, frames] = batch.shape;
        let steps = frames / factor;
        let mut valid = vec![0f32; b * steps];
        for (i, &n) in batch.frames.iter().enumerate() {
            let own = (n / factor).clamp(1, steps.max(1));
            valid[i * steps..i * steps + own.min(steps)].fill(1.0);
        }
        AudioInput {
            x: Tensor::from_data(TensorData::new(batch.data, batch.shape), device),
            valid: Tensor::from_data(TensorData::new(valid, [b, steps]), device),
        }
    }

    fn state(&self) -> serde_json::Value {
        serde_json::json!({ "normalization": self.stats() })
    }

    fn restore_state(&self, state: &serde_json::Value) -> Result<(), DataError> {
        let stats: Option<NormStats> = serde_json::from_value(state["normalization"].clone())
            .map_err(|e| {
                DataError::Unusable(format!(
                    "checkpoint audio normalization statistics are malformed: {e}"
                ))
            })?;
        if stats.is_some() {
            *self.stats.write().expect("stats lock") = stats;
        }
        Ok(())
    }

    fn search_space(
        &self,
        base: &ssl_framework::config::ExperimentConfig<Self>,
    ) -> Option<ssl_framework::search_space::SearchSpace<AudioOp>> {
        Some(augment::search::search_space(&base.data))
    }

    fn init_encoder(
        &self,
        cfg: &AudioEncoderConfig,
        data: &AudioDataConfig,
        device: &Device,
    ) -> Result<AudioEncoder, ConfigError> {
        if data.n_mels % (1 << cfg.blocks) != 0 {
            return Err(ConfigError::value(
                "data.n_mels",
                data.n_mels,
                format!("a multiple of 2^encoder.blocks = {}", 1 << cfg.blocks),
            ));
        }
        *self.min_frames.write().expect("lock") = 1 << cfg.blocks;
        Ok(AudioEncoder::new(
            data.n_mels,
            cfg.blocks,
            cfg.channels,
            cfg.dim,
            cfg.dropout,
            device,
        ))
    }
}
