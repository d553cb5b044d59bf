//! Audio augmentations on normalized log-mel spectrograms: BYOL-A's Mixup (with other
//! training clips), random resize crop and random linear fader (Niizumi et al. 2021, 2022), the
//! time crop of training segments, and the usual ops a search wants (SpecAugment time and
//! frequency masks, gain, time shift, Gaussian noise). Written in configs as
//! `{ type = "Name", ... }`; `RandomApply` and `OneOf` combine them.

mod ops;
mod resize_crop;
pub mod search;

pub use ops::{
    FreqMask, Gain, GaussianNoise, Mixup, RandomCrop, RandomLinearFader, TimeMask, TimeShift,
    crop_time, log_mixup_exp,
};
pub use resize_crop::RandomResizeCrop;

use crate::melspec::Spectrogram;
use ssl_framework::Augmentation;

/// The typetag-serializable audio augmentation trait: every op usable in an audio config.
#[typetag::serde(tag = "type")]
pub trait AudioAugmentation: Augmentation<Spectrogram> {}

ssl_framework::register_combinators!(AudioAugmentation);

/// A boxed op, as in [`ssl_framework::config::AugmentConfig`].
pub type AudioOp = Box<dyn AudioAugmentation>;
