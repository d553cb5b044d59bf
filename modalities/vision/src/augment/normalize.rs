use super::VisionAugmentation;
use crate::image::Image;
use serde::{Deserialize, Serialize};
use ssl_framework::augmentation::{AugmentContext, Augmentation, AugmentationError};

/// Per-channel `(x - mean) / std`, the last op of every pipeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// Channel means (R, G, B), in `[0, 1]`.
    pub mean: [f32; 3],
    /// Channel standard deviations (R, G, B), `> 0`.
    pub std: [f32; 3],
}

impl Augmentation<Image> for Normalize {
    fn name(&self) -> &'static str {
        "Normalize"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        if !self
            .mean
            .iter()
            .all(|m| m.is_finite() && (0.0..=1.0).contains(m))
        {
            return Err(AugmentationError::new(
                "Normalize",
                "mean",
                self.mean,
                "three numbers in [0, 1]",
            ));
        }
        if !self.std.iter().all(|s| s.is_finite() && *s > 0.0) {
            return Err(AugmentationError::new(
                "Normalize",
                "std",
                self.std,
                "three numbers > 0",
            ));
        }
        Ok(())
    }
    fn apply(&self, mut img: Image, _: &mut AugmentContext<'_, Image>) -> Image {
        let inv = [1.0 / self.std[0], 1.0 / self.std[1], 1.0 / self.std[2]];
        for px in img.data.chunks_exact_mut(3) {
            for c in 0..3 {
                px[c] = (px[c] - self.mean[c]) * inv[c];
            }
        }
        img
    }
}

#[typetag::serde(name = "Normalize")]
impl VisionAugmentation for Normalize {}
