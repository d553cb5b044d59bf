//! # ssl-framework
//!
//! The modality-agnostic core of `ssl`: BYOL (Bootstrap Your Own Latent, Grill et al. 2020,
//! arXiv 2006.07733) on burn. It knows nothing about images, sound or text: everything that
//! depends on the kind of data comes in through the plugin traits [`Modality`],
//! [`Augmentation`] and [`Encoder`].
//!
//! Modules mirror `docs/design.md`:
//! - [`augmentation`], [`encoder`], [`modality`]: the plugin traits (the extension points);
//! - [`byol`]: the BYOL step [`byol::update()`] (loss, stop-gradient, optimizer step, tau and the
//!   EMA) and what it is made of: online/target networks, MLP heads, the loss, the EMA;
//! - [`optim`]: LARS, SGD and AdamW with biases and norm parameters excluded, warmup-cosine lr;
//! - [`train`]: the driver around the step: loop, resume, fault policy, progress, results;
//! - [`checkpoint`]: checkpoint files and loading a trained encoder back;
//! - [`eval`]: kNN monitor, linear probe, fine-tuning, and the protocol (trained beside
//!   random-init);
//! - [`data`]: datasets, splits (the evaluation split), the parallel two-view loader, and where
//!   a dataset's files are ([`data::locate`]);
//! - [`export`]: embeddings (safetensors, `.npz`) and encoder weights (safetensors) writers;
//! - [`error`]: the error of a run;
//! - [`config`]: serde configs, dotted-key overrides, validation with clear errors;
//! - [`layers`]: convolution and BatchNorm, our CPU kernels (crate ssl-kernels) or burn's ops;
//! - [`search_space`]: what a modality lets `ssl search-augment` choose (ops and magnitudes).

#![forbid(unsafe_code)]

pub mod augmentation;
pub mod byol;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod encoder;
pub mod error;
pub mod eval;
pub mod export;
pub mod fsutil;
pub mod layers;
pub mod modality;
pub mod optim;
pub mod replicas;
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
