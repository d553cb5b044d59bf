use super::AudioAugmentation;
use crate::melspec::Spectrogram;
use rand::RngExt;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use ssl_framework::augmentation::{AugmentContext, Augmentation, AugmentationError, check_range};

/// Crops a random window of `frames` frames in time (training segments: 96 frames = 0.96 s at
/// a 10 ms hop). Shorter clips are kept whole; collation pads them with silence.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomCrop {
    /// Window length in frames, `>= 8`.
    pub frames: usize,
}

/// The frames `[start, start + len)` of `x`.
pub fn crop_time(x: &Spectrogram, start: usize, len: usize) -> Spectrogram {
    let mut data = Vec::with_capacity(x.n_mels * len);
    for m in 0..x.n_mels {
        data.extend_from_slice(&x.data[m * x.frames + start..m * x.frames + start + len]);
    }
    Spectrogram {
        n_mels: x.n_mels,
        frames: len,
        data,
    }
}

impl Augmentation<Spectrogram> for RandomCrop {
    fn name(&self) -> &'static str {
        "RandomCrop"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        if !(8..=100_000).contains(&self.frames) {
            return Err(AugmentationError::new(
                "RandomCrop",
                "frames",
                self.frames,
                "an integer in [8, 100000]",
            ));
        }
        Ok(())
    }
    fn apply(&self, x: Spectrogram, ctx: &mut AugmentContext<'_, Spectrogram>) -> Spectrogram {
        if x.frames <= self.frames {
            return x;
        }
        let start = ctx.rng.random_range(0..=x.frames - self.frames);
        crop_time(&x, start, self.frames)
    }
}

#[typetag::serde(name = "RandomCrop")]
impl AudioAugmentation for RandomCrop {}

/// BYOL-A's Mixup: `log((1 - l) exp(x) + l exp(z))` with `l ~ U(0, ratio)` and `z` another
/// training clip (a random window of it), i.e. mixing in the linear power domain (Niizumi et al.
/// 2021, Section 3.2.1; the paper draws `z` from a memory of past inputs, here from the training
/// set through the loader, which keeps runs reproducible). Without a sample source (a context
/// made with [`AugmentContext::new`]) it does nothing and draws nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mixup {
    /// Upper bound of the mixing ratio, in `[0, 1]` (BYOL-A: 0.4).
    pub ratio: f64,
}

/// Mixes `z` into `x` in the power domain with weight `lambda` over their common frames.
pub fn log_mixup_exp(mut x: Spectrogram, z: &Spectrogram, lambda: f32) -> Spectrogram {
    let frames = x.frames.min(z.frames);
    for m in 0..x.n_mels.min(z.n_mels) {
        for t in 0..frames {
            let a = &mut x.data[m * x.frames + t];
            let b = z.data[m * z.frames + t];
            // log((1-l) e^a + l e^b), computed stably around the larger term.
            let hi = a.max(b);
            *a = hi + ((1.0 - lambda) * (*a - hi).exp() + lambda * (b - hi).exp()).ln();
        }
    }
    x
}

impl Augmentation<Spectrogram> for Mixup {
    fn name(&self) -> &'static str {
        "Mixup"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_range("Mixup", "ratio", self.ratio, 0.0, 1.0)
    }
    fn apply(&self, x: Spectrogram, ctx: &mut AugmentContext<'_, Spectrogram>) -> Spectrogram {
        if !ctx.source.has_samples() {
            // No source (evaluation, fine-tuning): nothing to mix in, and no random draw.
            return x;
        }
        let lambda = (ctx.rng.random::<f64>() * self.ratio) as f32;
        let Some(z) = ctx.sample() else {
            return x;
        };
        let z = if z.frames > x.frames {
            crop_time(&z, ctx.rng.random_range(0..=z.frames - x.frames), x.frames)
        } else {
            z
        };
        log_mixup_exp(x, &z, lambda)
    }
}

#[typetag::serde(name = "Mixup")]
impl AudioAugmentation for Mixup {}

/// BYOL-A v2's random linear fader: adds a linear ramp from `head` to `tail` (each uniform in
/// `[-gain, gain]`) over time to the log-mel, i.e. a fade in or out.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomLinearFader {
    /// Largest gain change at either end, in log-mel units, `[0, 10]` (BYOL-A: 1.0).
    pub gain: f64,
}

impl Augmentation<Spectrogram> for RandomLinearFader {
    fn name(&self) -> &'static str {
        "RandomLinearFader"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_range("RandomLinearFader", "gain", self.gain, 0.0, 10.0)
    }
    fn apply(&self, mut x: Spectrogram, ctx: &mut AugmentContext<'_, Spectrogram>) -> Spectrogram {
        let head = (self.gain * (2.0 * ctx.rng.random::<f64>() - 1.0)) as f32;
        let tail = (self.gain * (2.0 * ctx.rng.random::<f64>() - 1.0)) as f32;
        let denom = (x.frames.max(2) - 1) as f32;
        for m in 0..x.n_mels {
            for t in 0..x.frames {
                x.data[m * x.frames + t] += head + (tail - head) * t as f32 / denom;
            }
        }
        x
    }
}

#[typetag::serde(name = "RandomLinearFader")]
impl AudioAugmentation for RandomLinearFader {}

/// SpecAugment time masking (Park et al. 2019): `count` masks of width uniform in
/// `[0, max_width]` frames, set to 0 (the mean after normalization).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeMask {
    /// Widest mask in frames.
    pub max_width: usize,
    /// Number of masks, `[1, 10]`.
    #[serde(default = "one")]
    pub count: usize,
}

/// SpecAugment frequency masking: `count` masks of width uniform in `[0, max_width]` bands.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreqMask {
    /// Widest mask in mel bands.
    pub max_width: usize,
    /// Number of masks, `[1, 10]`.
    #[serde(default = "one")]
    pub count: usize,
}

fn one() -> usize {
    1
}

fn check_mask(op: &str, max_width: usize, count: usize) -> Result<(), AugmentationError> {
    if max_width > 10_000 {
        return Err(AugmentationError::new(
            op,
            "max_width",
            max_width,
            "an integer in [0, 10000]",
        ));
    }
    if !(1..=10).contains(&count) {
        return Err(AugmentationError::new(
            op,
            "count",
            count,
            "an integer in [1, 10]",
        ));
    }
    Ok(())
}

impl Augmentation<Spectrogram> for TimeMask {
    fn name(&self) -> &'static str {
        "TimeMask"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_mask("TimeMask", self.max_width, self.count)
    }
    fn apply(&self, mut x: Spectrogram, ctx: &mut AugmentContext<'_, Spectrogram>) -> Spectrogram {
        for _ in 0..self.count {
            let w = ctx.rng.random_range(0..=self.max_width.min(x.frames));
            let start = ctx.rng.random_range(0..=x.frames - w);
            for m in 0..x.n_mels {
                x.data[m * x.frames + start..m * x.frames + start + w].fill(0.0);
            }
        }
        x
    }
}

#[typetag::serde(name = "TimeMask")]
impl AudioAugmentation for TimeMask {}

impl Augmentation<Spectrogram> for FreqMask {
    fn name(&self) -> &'static str {
        "FreqMask"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_mask("FreqMask", self.max_width, self.count)
    }
    fn apply(&self, mut x: Spectrogram, ctx: &mut AugmentContext<'_, Spectrogram>) -> Spectrogram {
        for _ in 0..self.count {
            let w = ctx.rng.random_range(0..=self.max_width.min(x.n_mels));
            let start = ctx.rng.random_range(0..=x.n_mels - w);
            x.data[start * x.frames..(start + w) * x.frames].fill(0.0);
        }
        x
    }
}

#[typetag::serde(name = "FreqMask")]
impl AudioAugmentation for FreqMask {}

/// A random gain of `U(-max_db, max_db)` decibels, added to the log-mel power (natural log):
/// `x + g * ln(10) / 10` (in normalized units the shift is the same up to the std).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gain {
    /// Largest gain in dB, `[0, 60]`.
    pub max_db: f64,
}

impl Augmentation<Spectrogram> for Gain {
    fn name(&self) -> &'static str {
        "Gain"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_range("Gain", "max_db", self.max_db, 0.0, 60.0)
    }
    fn apply(&self, mut x: Spectrogram, ctx: &mut AugmentContext<'_, Spectrogram>) -> Spectrogram {
        let db = self.max_db * (2.0 * ctx.rng.random::<f64>() - 1.0);
        let shift = (db * std::f64::consts::LN_10 / 10.0) as f32;
        x.data.iter_mut().for_each(|v| *v += shift);
        x
    }
}

#[typetag::serde(name = "Gain")]
impl AudioAugmentation for Gain {}

/// Rolls the spectrogram in time by `U{-max_frames..=max_frames}` frames (circular).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeShift {
    /// Largest shift in frames.
    pub max_frames: usize,
}

impl Augmentation<Spectrogram> for TimeShift {
    fn name(&self) -> &'static str {
        "TimeShift"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        if self.max_frames > 100_000 {
            return Err(AugmentationError::new(
                "TimeShift",
                "max_frames",
                self.max_frames,
                "an integer in [0, 100000]",
            ));
        }
        Ok(())
    }
    fn apply(&self, mut x: Spectrogram, ctx: &mut AugmentContext<'_, Spectrogram>) -> Spectrogram {
        let m = self.max_frames as i64;
        let shift = ctx
            .rng
            .random_range(-m..=m)
            .rem_euclid(x.frames.max(1) as i64) as usize;
        if shift != 0 {
            for row in x.data.chunks_mut(x.frames) {
                row.rotate_right(shift);
            }
        }
        x
    }
}

#[typetag::serde(name = "TimeShift")]
impl AudioAugmentation for TimeShift {}

/// Adds Gaussian noise of standard deviation `std` (normalized log-mel units).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianNoise {
    /// Noise standard deviation, `[0, 10]`.
    pub std: f64,
}

impl Augmentation<Spectrogram> for GaussianNoise {
    fn name(&self) -> &'static str {
        "GaussianNoise"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        check_range("GaussianNoise", "std", self.std, 0.0, 10.0)
    }
    fn apply(&self, mut x: Spectrogram, ctx: &mut AugmentContext<'_, Spectrogram>) -> Spectrogram {
        if self.std > 0.0 {
            let normal = Normal::new(0.0f32, self.std as f32).expect("validated std");
            x.data.iter_mut().for_each(|v| *v += normal.sample(ctx.rng));
        }
        x
    }
}

#[typetag::serde(name = "GaussianNoise")]
impl AudioAugmentation for GaussianNoise {}
