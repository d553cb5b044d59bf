//! # ssl-framework
//!
//! The modality-agnostic core of `ssl`: BYOL (Bootstrap Your Own Latent, Grill et al. 2020,
//! arXiv 2006.07733) on burn. It knows nothing about images, sound or text: everything that
//! depends on the kind of data comes in through the plugin traits [`Modality`],
//! [`Augmentation`] and [`Encoder`].
//!
//! Modules mirror `DESIGN.md`:
//! - [`augmentation`], [`encoder`], [`modality`]: the plugin traits (the extension points);
//! - [`byol`]: online/target networks, MLP heads, the loss, EMA and the tau schedule;
//! - [`optim`]: LARS, SGD and AdamW with biases and norm parameters excluded, warmup-cosine lr;
//! - [`train`]: the training loop, checkpoints and resume, the metrics log and progress;
//! - [`eval`]: kNN monitor, linear probe, collapse metric, random-init baselines;
//! - [`data`]: datasets, splits and the parallel two-view loader;
//! - [`config`]: serde configs, dotted-key overrides, validation with clear errors;
//! - [`search_space`]: what a modality lets `ssl search-augment` choose (ops and magnitudes).

pub mod augmentation;
pub mod byol;
pub mod config;
pub mod data;
pub mod encoder;
pub mod eval;
pub mod fsutil;
pub mod kernels;
pub mod modality;
pub mod optim;
pub mod search_space;
pub mod train;

pub use augmentation::{
    AugmentContext, Augmentation, AugmentationError, Compose, OneOf, RandomApply,
};
pub use encoder::Encoder;
pub use modality::Modality;

/// Re-exported so that plugins name the same versions as the framework.
pub use burn;
pub use rand;
pub use typetag;
