//! # ssl-text
//!
//! The text modality of `ssl`: readers for TSV, CSV, JSON Lines and plain-text corpora (and the
//! VADER sentence corpora), a WordPiece vocabulary trained on the pre-training texts (Hugging
//! Face `tokenizers`) and stored with every checkpoint, token-level augmentations (masking,
//! deletion, swap, span cropping, SimCSE-style encoder dropout) and a small Transformer encoder
//! with learned positions and masked mean pooling.

pub mod augment;
pub mod dataset;
pub mod encoder;
pub mod reader;
pub mod tokenizer;

use augment::{TextOp, TokenSequence};
use burn::prelude::*;
use dataset::{DataFormat, Layout, Source, TextItem};
use encoder::{TextEncoder, TextInput};
use reader::Columns;
use serde::{Deserialize, Serialize};
use ssl_framework::config::{ConfigError, ConfigSection, check_f64, check_positive};
use ssl_framework::data::{DataError, Datasets};
use ssl_framework::modality::Modality;
use std::path::Path;
use std::sync::{Arc, RwLock};
use tokenizer::{PAD_ID, SPECIAL_TOKENS, Vocabulary};

/// The `[data]` section of a text config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextDataConfig {
    /// Dataset name for reports (the folder's name when empty).
    pub dataset: String,
    /// `auto`, `vader` or `files`.
    pub layout: Layout,
    /// File format of the `files` layout: `auto` (by extension), `tsv`, `csv`, `jsonl`, `lines`.
    pub format: DataFormat,
    /// The text column (`files` layout): a header name or JSON key, or a 0-based index.
    pub text_column: String,
    /// Label columns (`files` layout), each a label set for the probes.
    pub label_columns: Vec<String>,
    /// Whether TSV/CSV files start with a header line.
    pub header: bool,
    /// Fraction of the records in the test split when the files do not split them (VADER: 0.2).
    pub test_fraction: f64,
    /// Seed of that split, fixed apart from the experiment's seed so the split never changes.
    pub split_seed: u64,
    /// A saved vocabulary to use instead of training one: a `tokenizer.json` file, e.g. the
    /// `modality_state.tokenizer` string of an earlier run's `results.json` or checkpoint
    /// `state.json`, written to a file. Empty: train one on the pre-training texts.
    pub tokenizer: String,
    /// Largest vocabulary (special tokens included); also the embedding table's size.
    pub vocab_size: usize,
    /// A subword enters the vocabulary when seen at least this often.
    pub min_frequency: u64,
    /// Lowercase (and strip accents) before tokenizing.
    pub lowercase: bool,
    /// Sequences are cut to this many tokens.
    pub max_len: usize,
    /// Use a seeded subset of this many training texts (0: all).
    pub train_subset: usize,
    /// Use a seeded subset of this many test texts (0: all).
    pub test_subset: usize,
}

impl Default for TextDataConfig {
    fn default() -> Self {
        Self {
            dataset: String::new(),
            layout: Layout::Auto,
            format: DataFormat::Auto,
            text_column: "text".into(),
            label_columns: Vec::new(),
            header: true,
            test_fraction: 0.2,
            split_seed: 0,
            tokenizer: String::new(),
            vocab_size: 8000,
            min_frequency: 2,
            lowercase: true,
            max_len: 64,
            train_subset: 0,
            test_subset: 0,
        }
    }
}

impl ConfigSection for TextDataConfig {
    fn validate(&self, p: &str) -> Result<(), ConfigError> {
        check_f64(&format!("{p}.test_fraction"), self.test_fraction, 1e-6, 0.9)?;
        if !(SPECIAL_TOKENS.len() + 1..=1_000_000).contains(&self.vocab_size) {
            return Err(ConfigError::value(
                &format!("{p}.vocab_size"),
                self.vocab_size,
                "an integer in [4, 1000000]",
            ));
        }
        check_positive(&format!("{p}.min_frequency"), self.min_frequency as usize)?;
        if !(1..=4096).contains(&self.max_len) {
            return Err(ConfigError::value(
                &format!("{p}.max_len"),
                self.max_len,
                "an integer in [1, 4096]",
            ));
        }
        if self.text_column.is_empty() {
            return Err(ConfigError::value(
                &format!("{p}.text_column"),
                &self.text_column,
                "a column name or index",
            ));
        }
        Ok(())
    }
}

/// The `[encoder]` section of a text config: a pre-norm Transformer encoder.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextEncoderConfig {
    /// Width of token states and of the output.
    pub d_model: usize,
    /// Attention heads (divide `d_model`).
    pub heads: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Feed-forward width.
    pub d_ff: usize,
    /// Dropout inside the layers (attention, feed-forward, residuals).
    pub dropout: f64,
}

impl Default for TextEncoderConfig {
    fn default() -> Self {
        Self {
            d_model: 128,
            heads: 4,
            layers: 2,
            d_ff: 256,
            dropout: 0.1,
        }
    }
}

impl ConfigSection for TextEncoderConfig {
    fn validate(&self, p: &str) -> Result<(), ConfigError> {
        check_positive(&format!("{p}.d_model"), self.d_model)?;
        check_positive(&format!("{p}.heads"), self.heads)?;
        if self.d_model % self.heads != 0 {
            return Err(ConfigError::value(
                &format!("{p}.heads"),
                self.heads,
                format!("a divisor of encoder.d_model = {}", self.d_model),
            ));
        }
        check_positive(&format!("{p}.layers"), self.layers)?;
        check_positive(&format!("{p}.d_ff"), self.d_ff)?;
        check_f64(&format!("{p}.dropout"), self.dropout, 0.0, 0.9)
    }
}

/// A collated batch: ids `[batch, length]` padded with `[PAD]`, the padding mask, and the
/// per-sequence embedding dropout rates.
#[derive(Debug, Clone)]
pub struct TextBatch {
    /// Ids, row-major `[batch, length]`.
    pub ids: Vec<i64>,
    /// `true` at padding, row-major `[batch, length]`.
    pub padding: Vec<bool>,
    /// Dropout rate per sequence.
    pub dropout: Vec<f32>,
    /// `[batch, length]`.
    pub shape: [usize; 2],
}

/// Text: TSV/CSV/JSONL/line corpora or VADER, a trained WordPiece vocabulary, token
/// augmentations and a Transformer encoder.
#[derive(Debug, Default)]
pub struct TextModality {
    vocabulary: RwLock<Option<Arc<Vocabulary>>>,
    max_len: RwLock<usize>,
}

impl TextModality {
    /// The vocabulary (after `load` or `restore_state`).
    pub fn vocabulary(&self) -> Option<Arc<Vocabulary>> {
        self.vocabulary.read().expect("vocabulary lock").clone()
    }
}

impl Modality for TextModality {
    type Item = TextItem;
    type Sample = TokenSequence;
    type Op = TextOp;
    type DataConfig = TextDataConfig;
    type EncoderConfig = TextEncoderConfig;
    type Encoder = TextEncoder;
    type Batch = TextBatch;

    fn name(&self) -> &'static str {
        "text"
    }

    fn load(&self, cfg: &TextDataConfig, root: &Path) -> Result<Datasets<TextItem>, DataError> {
        let columns = Columns {
            text: cfg.text_column.clone(),
            labels: cfg.label_columns.clone(),
            header: cfg.header,
        };
        let src = Source {
            layout: cfg.layout,
            format: cfg.format,
            columns: &columns,
            test_fraction: cfg.test_fraction,
            split_seed: cfg.split_seed,
        };
        let mut d = dataset::load(root, &src)?;
        if cfg.train_subset > 0 {
            d.train = d.train.subset(cfg.train_subset, 0);
        }
        if cfg.test_subset > 0 {
            d.test = d.test.subset(cfg.test_subset, 1);
        }
        if !cfg.dataset.is_empty() {
            d.name = cfg.dataset.clone();
        }
        let vocab = if cfg.tokenizer.is_empty() {
            // The vocabulary comes from the pre-training texts only.
            let texts: Vec<String> = d.train.items.iter().map(|t| t.text.clone()).collect();
            Vocabulary::train(&texts, cfg.vocab_size, cfg.min_frequency, cfg.lowercase)
                .map_err(|e| DataError::Unusable(format!("{}: {e}", root.display())))?
        } else {
            let path = Path::new(&cfg.tokenizer);
            let json = std::fs::read_to_string(path).map_err(|source| DataError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let vocab = Vocabulary::from_json(&json).map_err(|e| DataError::Corrupt {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            if vocab.len() > cfg.vocab_size {
                return Err(DataError::Unusable(format!(
                    "{}: {} tokens, more than data.vocab_size = {} (the embedding table's size)",
                    path.display(),
                    vocab.len(),
                    cfg.vocab_size
                )));
            }
            vocab
        };
        *self.vocabulary.write().expect("vocabulary lock") = Some(Arc::new(vocab));
        *self.max_len.write().expect("max_len lock") = cfg.max_len;
        Ok(d)
    }

    fn to_sample(&self, item: &TextItem) -> TokenSequence {
        let vocab = self
            .vocabulary()
            .expect("the vocabulary is trained in load() or restored before samples are made");
        TokenSequence {
            ids: vocab.encode(&item.text, *self.max_len.read().expect("max_len lock")),
            dropout: 0.0,
        }
    }

    fn collate(&self, samples: Vec<TokenSequence>) -> TextBatch {
        let len = samples
            .iter()
            .map(|s| s.ids.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut ids = vec![PAD_ID as i64; samples.len() * len];
        let mut padding = vec![true; samples.len() * len];
        for (i, s) in samples.iter().enumerate() {
            for (j, &id) in s.ids.iter().enumerate() {
                ids[i * len + j] = id as i64;
                padding[i * len + j] = false;
            }
        }
        TextBatch {
            ids,
            padding,
            dropout: samples.iter().map(|s| s.dropout).collect(),
            shape: [samples.len(), len],
        }
    }

    fn to_input(&self, batch: TextBatch, device: &Device) -> TextInput {
        let dropout = batch.dropout.iter().any(|&p| p > 0.0).then(|| {
            Tensor::from_data(
                TensorData::new(batch.dropout.clone(), [batch.shape[0]]),
                device,
            )
        });
        TextInput {
            ids: Tensor::from_data(TensorData::new(batch.ids, batch.shape), device),
            padding: Tensor::from_data(TensorData::new(batch.padding, batch.shape), device),
            dropout,
        }
    }

    fn state(&self) -> serde_json::Value {
        match self.vocabulary() {
            Some(v) => serde_json::json!({ "vocabulary_size": v.len(), "tokenizer": v.to_json() }),
            None => serde_json::Value::Null,
        }
    }

    fn restore_state(&self, state: &serde_json::Value) -> Result<(), DataError> {
        let Some(json) = state.get("tokenizer").and_then(|t| t.as_str()) else {
            return Err(DataError::Unusable(
                "the checkpoint holds no text vocabulary (modality_state.tokenizer)".into(),
            ));
        };
        let vocab = Vocabulary::from_json(json)
            .map_err(|e| DataError::Unusable(format!("the checkpoint's text vocabulary: {e}")))?;
        *self.vocabulary.write().expect("vocabulary lock") = Some(Arc::new(vocab));
        Ok(())
    }

    fn search_space(
        &self,
        _base: &ssl_framework::config::ExperimentConfig<Self>,
    ) -> Option<ssl_framework::search_space::SearchSpace<TextOp>> {
        Some(augment::search::search_space())
    }

    fn init_encoder(
        &self,
        cfg: &TextEncoderConfig,
        data: &TextDataConfig,
        device: &Device,
    ) -> Result<TextEncoder, ConfigError> {
        Ok(TextEncoder::new(
            data.vocab_size,
            data.max_len,
            cfg.d_model,
            cfg.heads,
            cfg.layers,
            cfg.d_ff,
            cfg.dropout,
            device,
        ))
    }
}
