use super::{VisionAugmentation, luma};
use crate::image::Image;
use rand::RngExt;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use ssl_framework::augmentation::{AugmentContext, Augmentation, AugmentationError, check_range};

/// Random brightness, contrast, saturation and hue changes, applied in a random order (paper,
/// Table 6: 0.4, 0.4, 0.2, 0.1 with probability 0.8 through `RandomApply`). Factors follow
/// torchvision: brightness, contrast and saturation factors are uniform in
/// `[max(0, 1 - s), 1 + s]`, the hue shift is uniform in `[-h, h]` turns.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColorJitter {
    /// Brightness strength, in `[0, 1]`: multiply by the factor.
    pub brightness: f64,
    /// Contrast strength, in `[0, 1]`: blend with the mean grey level.
    pub contrast: f64,
    /// Saturation strength, in `[0, 1]`: blend with the pixel's grey level.
    pub saturation: f64,
    /// Hue shift bound in turns, in `[0, 0.5]`.
    pub hue: f64,
}

/// Multiplies every value by `f`, clamped to `[0, 1]`.
pub fn adjust_brightness(img: &mut Image, f: f32) {
    img.data
        .iter_mut()
        .for_each(|v| *v = (*v * f).clamp(0.0, 1.0));
}

/// Blends with the image's mean luma: `f * x + (1 - f) * mean`, clamped.
pub fn adjust_contrast(img: &mut Image, f: f32) {
    let n = (img.width * img.height).max(1) as f32;
    let mean = img
        .data
        .chunks_exact(3)
        .map(|p| luma(p[0], p[1], p[2]))
        .sum::<f32>()
        / n;
    let offset = (1.0 - f) * mean;
    img.data
        .iter_mut()
        .for_each(|v| *v = (f * *v + offset).clamp(0.0, 1.0));
}

/// Blends each pixel with its luma: `f * x + (1 - f) * luma(x)`, clamped.
pub fn adjust_saturation(img: &mut Image, f: f32) {
    for p in img.data.chunks_exact_mut(3) {
        let g = (1.0 - f) * luma(p[0], p[1], p[2]);
        for v in p.iter_mut() {
            *v = (f * *v + g).clamp(0.0, 1.0);
        }
    }
}

/// Rotates hue by `shift` turns (through HSV, as torchvision's `adjust_hue`).
pub fn adjust_hue(img: &mut Image, shift: f32) {
    for p in img.data.chunks_exact_mut(3) {
        let (r, g, b) = (p[0], p[1], p[2]);
        let max = r.max(g).max(b);
        let min = r.min(g).min(b);
        let delta = max - min;
        if delta <= 0.0 {
            continue; // grey: hue undefined, unchanged
        }
        let v = max;
        let s = delta / max;
        let mut h = if max == r {
            ((g - b) / delta).rem_euclid(6.0)
        } else if max == g {
            (b - r) / delta + 2.0
        } else {
            (r - g) / delta + 4.0
        } / 6.0;
        h = (h + shift).rem_euclid(1.0);
        let h6 = h * 6.0;
        let i = h6.floor();
        let f = h6 - i;
        let (pp, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
        let (nr, ng, nb) = match (i as i32).rem_euclid(6) {
            0 => (v, t, pp),
            1 => (q, v, pp),
            2 => (pp, v, t),
            3 => (pp, q, v),
            4 => (t, pp, v),
            _ => (v, pp, q),
        };
        p[0] = nr;
        p[1] = ng;
        p[2] = nb;
    }
}

impl Augmentation<Image> for ColorJitter {
    fn name(&self) -> &'static str {
        "ColorJitter"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_range("ColorJitter", "brightness", self.brightness, 0.0, 1.0)?;
        check_range("ColorJitter", "contrast", self.contrast, 0.0, 1.0)?;
        check_range("ColorJitter", "saturation", self.saturation, 0.0, 1.0)?;
        check_range("ColorJitter", "hue", self.hue, 0.0, 0.5)
    }
    fn apply(&self, mut img: Image, ctx: &mut AugmentContext<'_, Image>) -> Image {
        let factor = |rng: &mut StdRng, s: f64| -> f32 {
            let u: f64 = rng.random();
            ((1.0 - s).max(0.0) + u * ((1.0 + s) - (1.0 - s).max(0.0))) as f32
        };
        let b = factor(ctx.rng, self.brightness);
        let c = factor(ctx.rng, self.contrast);
        let s = factor(ctx.rng, self.saturation);
        let u: f64 = ctx.rng.random();
        let h = ((2.0 * u - 1.0) * self.hue) as f32;
        let mut order = [0u8, 1, 2, 3];
        order.shuffle(ctx.rng);
        for op in order {
            match op {
                0 if self.brightness > 0.0 => adjust_brightness(&mut img, b),
                1 if self.contrast > 0.0 => adjust_contrast(&mut img, c),
                2 if self.saturation > 0.0 => adjust_saturation(&mut img, s),
                3 if self.hue > 0.0 => adjust_hue(&mut img, h),
                _ => {}
            }
        }
        img
    }
}

#[typetag::serde(name = "ColorJitter")]
impl VisionAugmentation for ColorJitter {}

/// Replaces every pixel by its luma on all three channels (paper, Table 6: "color dropping",
/// probability 0.2 through `RandomApply`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grayscale {}

impl Augmentation<Image> for Grayscale {
    fn name(&self) -> &'static str {
        "Grayscale"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        Ok(())
    }
    fn apply(&self, mut img: Image, _: &mut AugmentContext<'_, Image>) -> Image {
        for p in img.data.chunks_exact_mut(3) {
            let g = luma(p[0], p[1], p[2]);
            p.fill(g);
        }
        img
    }
}

#[typetag::serde(name = "Grayscale")]
impl VisionAugmentation for Grayscale {}

/// Inverts every value at or above `threshold`: `x >= t ? 1 - x : x` (paper, Table 6:
/// probability 0.0 for view 1 and 0.2 for view 2 through `RandomApply`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Solarize {
    /// Threshold in `[0, 1]` (paper: 0.5).
    #[serde(default = "half")]
    pub threshold: f64,
}

fn half() -> f64 {
    0.5
}

impl Augmentation<Image> for Solarize {
    fn name(&self) -> &'static str {
        "Solarize"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_range("Solarize", "threshold", self.threshold, 0.0, 1.0)
    }
    fn apply(&self, mut img: Image, _: &mut AugmentContext<'_, Image>) -> Image {
        let t = self.threshold as f32;
        img.data.iter_mut().for_each(|v| {
            if *v >= t {
                *v = 1.0 - *v
            }
        });
        img
    }
}

#[typetag::serde(name = "Solarize")]
impl VisionAugmentation for Solarize {}
