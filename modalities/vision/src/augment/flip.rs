use super::VisionAugmentation;
use crate::image::Image;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use ssl_framework::augmentation::{AugmentContext, Augmentation, AugmentationError, check_range};

/// Mirrors the image left-right with probability `p` (paper, Table 6: 0.5).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HorizontalFlip {
    /// Probability of flipping, in `[0, 1]`.
    #[serde(default = "half")]
    pub p: f64,
}

fn half() -> f64 {
    0.5
}

/// Mirrors `img` left-right in place.
pub fn flip_horizontal(img: &mut Image) {
    let w = img.width;
    for row in img.data.chunks_mut(w * 3) {
        for x in 0..w / 2 {
            let (a, b) = (x * 3, (w - 1 - x) * 3);
            for c in 0..3 {
                row.swap(a + c, b + c);
            }
        }
    }
}

impl Augmentation<Image> for HorizontalFlip {
    fn name(&self) -> &'static str {
        "HorizontalFlip"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_range("HorizontalFlip", "p", self.p, 0.0, 1.0)
    }
    fn apply(&self, mut img: Image, ctx: &mut AugmentContext<'_, Image>) -> Image {
        let u: f64 = ctx.rng.random();
        if u < self.p {
            flip_horizontal(&mut img);
        }
        img
    }
}

#[typetag::serde(name = "HorizontalFlip")]
impl VisionAugmentation for HorizontalFlip {}
