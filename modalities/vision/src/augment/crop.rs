use super::VisionAugmentation;
use crate::image::Image;
use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::F32x3;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use rand::RngExt;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use ssl_framework::augmentation::{
    AugmentContext, Augmentation, AugmentationError, check_interval,
};
use std::cell::RefCell;

/// Resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Catmull-Rom bicubic (PIL's bicubic, the paper's choice).
    #[default]
    Bicubic,
    /// Bilinear.
    Bilinear,
}

thread_local! {
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

/// Resamples the box `(left, top, width, height)` (pixels, fractional allowed) of `img` to
/// `out_w x out_h` with antialiasing (fast_image_resize, SIMD).
pub fn crop_resize(
    img: &Image,
    left: f64,
    top: f64,
    width: f64,
    height: f64,
    out_w: usize,
    out_h: usize,
    filter: Interpolation,
) -> Image {
    let src = TypedImageRef::<F32x3>::from_buffer(
        img.width as u32,
        img.height as u32,
        bytemuck::cast_slice(&img.data),
    )
    .expect("image buffer matches its size");
    let mut out = vec![0f32; out_w * out_h * 3];
    {
        let mut dst = TypedImage::<F32x3>::from_buffer(
            out_w as u32,
            out_h as u32,
            bytemuck::cast_slice_mut(&mut out),
        )
        .expect("output buffer matches its size");
        let filter = match filter {
            Interpolation::Bicubic => FilterType::CatmullRom,
            Interpolation::Bilinear => FilterType::Bilinear,
        };
        let opts = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(filter))
            .crop(left, top, width, height);
        RESIZER
            .with(|r| r.borrow_mut().resize_typed(&src, &mut dst, &opts))
            .expect("resize of a valid crop");
    }
    // Bicubic overshoots at edges; keep values in range.
    out.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    Image {
        width: out_w,
        height: out_h,
        data: out,
    }
}

/// Crops a random area and aspect ratio, then resizes to `size x size` (paper, Table 6;
/// torchvision's `RandomResizedCrop` sampling: up to 10 tries of area fraction in `scale` and
/// log-uniform ratio in `ratio`, else a central crop of the clamped ratio).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomResizedCrop {
    /// Output side in pixels.
    pub size: usize,
    /// Range of the crop's area as a fraction of the image (paper: [0.08, 1]).
    #[serde(default = "default_scale")]
    pub scale: [f64; 2],
    /// Range of the crop's width/height ratio (paper: [3/4, 4/3]).
    #[serde(default = "default_ratio")]
    pub ratio: [f64; 2],
    /// Resampling filter (paper: bicubic).
    #[serde(default)]
    pub interpolation: Interpolation,
}

fn default_scale() -> [f64; 2] {
    [0.08, 1.0]
}
fn default_ratio() -> [f64; 2] {
    [3.0 / 4.0, 4.0 / 3.0]
}

impl RandomResizedCrop {
    /// Samples the crop box `(left, top, width, height)` in whole pixels for a `w x h` image.
    pub fn sample_box(&self, w: usize, h: usize, rng: &mut StdRng) -> (usize, usize, usize, usize) {
        let area = (w * h) as f64;
        let (lr0, lr1) = (self.ratio[0].ln(), self.ratio[1].ln());
        for _ in 0..10 {
            let target = area * rng.random_range(self.scale[0]..=self.scale[1]);
            let ratio = if lr1 > lr0 {
                rng.random_range(lr0..=lr1).exp()
            } else {
                self.ratio[0]
            };
            let cw = (target * ratio).sqrt().round() as usize;
            let ch = (target / ratio).sqrt().round() as usize;
            if cw > 0 && ch > 0 && cw <= w && ch <= h {
                let left = rng.random_range(0..=w - cw);
                let top = rng.random_range(0..=h - ch);
                return (left, top, cw, ch);
            }
        }
        let in_ratio = w as f64 / h as f64;
        let (cw, ch) = if in_ratio < self.ratio[0] {
            (w, ((w as f64 / self.ratio[0]).round() as usize).clamp(1, h))
        } else if in_ratio > self.ratio[1] {
            (((h as f64 * self.ratio[1]).round() as usize).clamp(1, w), h)
        } else {
            (w, h)
        };
        ((w - cw) / 2, (h - ch) / 2, cw, ch)
    }
}

impl Augmentation<Image> for RandomResizedCrop {
    fn name(&self) -> &'static str {
        "RandomResizedCrop"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        if self.size == 0 || self.size > 4096 {
            return Err(AugmentationError::new(
                "RandomResizedCrop",
                "size",
                self.size,
                "an integer in [1, 4096]",
            ));
        }
        check_interval("RandomResizedCrop", "scale", self.scale, 1e-4, 1.0)?;
        check_interval("RandomResizedCrop", "ratio", self.ratio, 1e-2, 1e2)
    }
    fn apply(&self, img: Image, ctx: &mut AugmentContext<'_, Image>) -> Image {
        let (l, t, cw, ch) = self.sample_box(img.width, img.height, ctx.rng);
        crop_resize(
            &img,
            l as f64,
            t as f64,
            cw as f64,
            ch as f64,
            self.size,
            self.size,
            self.interpolation,
        )
    }
}

#[typetag::serde(name = "RandomResizedCrop")]
impl VisionAugmentation for RandomResizedCrop {}

/// Resizes so that the shorter side is `size` pixels, keeping the aspect ratio (evaluation).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resize {
    /// Shorter side in pixels.
    pub size: usize,
    /// Resampling filter.
    #[serde(default)]
    pub interpolation: Interpolation,
}

impl Augmentation<Image> for Resize {
    fn name(&self) -> &'static str {
        "Resize"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        if self.size == 0 || self.size > 8192 {
            return Err(AugmentationError::new(
                "Resize",
                "size",
                self.size,
                "an integer in [1, 8192]",
            ));
        }
        Ok(())
    }
    fn apply(&self, img: Image, _: &mut AugmentContext<'_, Image>) -> Image {
        let (w, h) = (img.width, img.height);
        let (ow, oh) = if w <= h {
            (
                self.size,
                ((h as f64 * self.size as f64 / w as f64).round() as usize).max(1),
            )
        } else {
            (
                ((w as f64 * self.size as f64 / h as f64).round() as usize).max(1),
                self.size,
            )
        };
        if (ow, oh) == (w, h) {
            return img;
        }
        crop_resize(
            &img,
            0.0,
            0.0,
            w as f64,
            h as f64,
            ow,
            oh,
            self.interpolation,
        )
    }
}

#[typetag::serde(name = "Resize")]
impl VisionAugmentation for Resize {}

/// Crops the central `size x size` pixels (images smaller than that are first resized up).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CenterCrop {
    /// Output side in pixels.
    pub size: usize,
}

impl Augmentation<Image> for CenterCrop {
    fn name(&self) -> &'static str {
        "CenterCrop"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        if self.size == 0 || self.size > 8192 {
            return Err(AugmentationError::new(
                "CenterCrop",
                "size",
                self.size,
                "an integer in [1, 8192]",
            ));
        }
        Ok(())
    }
    fn apply(&self, img: Image, ctx: &mut AugmentContext<'_, Image>) -> Image {
        let s = self.size;
        let img = if img.width < s || img.height < s {
            Resize {
                size: s,
                interpolation: Interpolation::Bicubic,
            }
            .apply(img, ctx)
        } else {
            img
        };
        let (l, t) = ((img.width - s) / 2, (img.height - s) / 2);
        let mut data = Vec::with_capacity(s * s * 3);
        for y in t..t + s {
            let start = (y * img.width + l) * 3;
            data.extend_from_slice(&img.data[start..start + s * 3]);
        }
        Image {
            width: s,
            height: s,
            data,
        }
    }
}

#[typetag::serde(name = "CenterCrop")]
impl VisionAugmentation for CenterCrop {}
