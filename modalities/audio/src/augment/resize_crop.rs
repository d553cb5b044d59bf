use super::AudioAugmentation;
use crate::melspec::Spectrogram;
use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::F32;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use rand::RngExt;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};
use ssl_framework::augmentation::{
    AugmentContext, Augmentation, AugmentationError, check_interval,
};

/// BYOL-A's random resize crop on the spectrogram (Niizumi et al. 2021, Section 3.2.2): the
/// spectrogram is centred on a zero canvas `virtual_crop_scale` times its size, a crop of
/// `freq_scale` x `time_scale` of the original size is taken at a random place, and resized
/// (bicubic) back to the original size: pitch shift, time stretch and translation at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomResizeCrop {
    /// Canvas size as multiples of (frequency, time) (BYOL-A: [1.0, 1.5]).
    pub virtual_crop_scale: [f64; 2],
    /// Crop height as a fraction of the bands (BYOL-A: [0.6, 1.5]).
    pub freq_scale: [f64; 2],
    /// Crop width as a fraction of the frames (BYOL-A: [0.6, 1.5]).
    pub time_scale: [f64; 2],
}

impl Augmentation<Spectrogram> for RandomResizeCrop {
    fn name(&self) -> &'static str {
        "RandomResizeCrop"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        let op = "RandomResizeCrop";
        if !self
            .virtual_crop_scale
            .iter()
            .all(|v| v.is_finite() && (1.0..=4.0).contains(v))
        {
            return Err(AugmentationError::new(
                op,
                "virtual_crop_scale",
                self.virtual_crop_scale,
                "two numbers in [1, 4]",
            ));
        }
        check_interval(op, "freq_scale", self.freq_scale, 0.05, 4.0)?;
        check_interval(op, "time_scale", self.time_scale, 0.05, 4.0)
    }
    fn apply(&self, x: Spectrogram, ctx: &mut AugmentContext<'_, Spectrogram>) -> Spectrogram {
        let (ih, iw) = (x.n_mels, x.frames);
        let vh = ((ih as f64 * self.virtual_crop_scale[0]) as usize).max(ih);
        let vw = ((iw as f64 * self.virtual_crop_scale[1]) as usize).max(iw);
        let mut canvas = vec![0f32; vh * vw];
        let (y0, x0) = ((vh - ih) / 2, (vw - iw) / 2);
        for m in 0..ih {
            canvas[(y0 + m) * vw + x0..(y0 + m) * vw + x0 + iw]
                .copy_from_slice(&x.data[m * iw..(m + 1) * iw]);
        }
        let draw = |rng: &mut StdRng, r: [f64; 2]| {
            if r[1] > r[0] {
                rng.random_range(r[0]..=r[1])
            } else {
                r[0]
            }
        };
        let h = ((draw(ctx.rng, self.freq_scale) * ih as f64) as usize).clamp(1, vh);
        let w = ((draw(ctx.rng, self.time_scale) * iw as f64) as usize).clamp(1, vw);
        let i = if vh > h {
            ctx.rng.random_range(0..=vh - h)
        } else {
            0
        };
        let j = if vw > w {
            ctx.rng.random_range(0..=vw - w)
        } else {
            0
        };
        let src =
            TypedImageRef::<F32>::from_buffer(vw as u32, vh as u32, bytemuck::cast_slice(&canvas))
                .expect("canvas size");
        let mut out = vec![0f32; ih * iw];
        {
            let mut dst = TypedImage::<F32>::from_buffer(
                iw as u32,
                ih as u32,
                bytemuck::cast_slice_mut(&mut out),
            )
            .expect("output size");
            let opts = ResizeOptions::new()
                .resize_alg(ResizeAlg::Convolution(FilterType::CatmullRom))
                .crop(j as f64, i as f64, w as f64, h as f64);
            Resizer::new()
                .resize_typed(&src, &mut dst, &opts)
                .expect("resize of a valid crop");
        }
        Spectrogram {
            n_mels: ih,
            frames: iw,
            data: out,
        }
    }
}

#[typetag::serde(name = "RandomResizeCrop")]
impl AudioAugmentation for RandomResizeCrop {}
