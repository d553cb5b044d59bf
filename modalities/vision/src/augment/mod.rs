//! The BYOL image augmentations (paper, Appendix B, Table 6) as serializable ops.
//!
//! Each op is written in config files as `{ type = "Name", ... }`; probabilities other than the
//! flip's are expressed with `RandomApply` (`{ type = "RandomApply", p = 0.8, ops = [...] }`).
//! A user's own op implements [`Augmentation<Image>`] and [`VisionAugmentation`] (with
//! `#[typetag::serde]`) and can then be used in a config with no change to ssl.

mod blur;
pub mod color;
mod crop;
mod flip;
mod normalize;
pub mod search;

pub use blur::GaussianBlur;
pub use color::{ColorJitter, Grayscale, Solarize};
pub use crop::{CenterCrop, Interpolation, RandomResizedCrop, Resize, crop_resize};
pub use flip::HorizontalFlip;
pub use normalize::Normalize;

use crate::image::Image;
use ssl_framework::Augmentation;

/// The typetag-serializable image augmentation trait: every op usable in a vision config.
#[typetag::serde(tag = "type")]
pub trait VisionAugmentation: Augmentation<Image> {}

ssl_framework::register_combinators!(VisionAugmentation);

/// A boxed op, as it appears in [`ssl_framework::config::AugmentConfig`].
pub type VisionOp = Box<dyn VisionAugmentation>;

/// The ImageNet channel means and standard deviations (torchvision's), for `Normalize`.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// See [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// CIFAR-10 channel means (of the training set).
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
/// CIFAR-10 channel standard deviations.
pub const CIFAR10_STD: [f32; 3] = [0.2470, 0.2435, 0.2616];

/// ITU-R 601-2 luma of an RGB pixel (torchvision's `rgb_to_grayscale`).
#[inline]
pub(crate) fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}
