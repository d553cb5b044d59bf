use super::VisionAugmentation;
use crate::image::Image;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use ssl_framework::augmentation::{
    AugmentContext, Augmentation, AugmentationError, check_interval,
};

/// Gaussian blur with a random sigma (paper, Table 6: kernel 23x23 at 224 pixels, i.e. about 10%
/// of the side; sigma uniform in [0.1, 2.0]; probability 1.0 for view 1 and 0.1 for view 2 via
/// `RandomApply`). Separable, reflect padding (as torchvision).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussianBlur {
    /// Kernel side in pixels: odd, `>= 1`.
    pub kernel_size: usize,
    /// Range `[min, max]` of the standard deviation in pixels, `0 < min <= max <= 100`.
    pub sigma: [f64; 2],
}

/// The normalized 1-D Gaussian kernel of `size` taps.
pub fn gaussian_kernel(size: usize, sigma: f64) -> Vec<f32> {
    let half = (size / 2) as f64;
    let mut k: Vec<f64> = (0..size)
        .map(|i| (-((i as f64 - half).powi(2)) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    k.into_iter().map(|v| v as f32).collect()
}

/// Reflect index `i` into `[0, n)` (`... 2 1 | 0 1 2 ... n-1 | n-2 ...`).
#[inline]
fn reflect(i: isize, n: usize) -> usize {
    let n = n as isize;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let mut m = i.rem_euclid(period);
    if m >= n {
        m = period - m;
    }
    m as usize
}

/// Blurs `img` with the separable kernel `k` (odd length).
pub fn blur_separable(img: &Image, k: &[f32]) -> Image {
    let (w, h) = (img.width, img.height);
    let r = (k.len() / 2) as isize;
    let mut tmp = vec![0f32; img.data.len()];
    for y in 0..h {
        let row = &img.data[y * w * 3..(y + 1) * w * 3];
        let out = &mut tmp[y * w * 3..(y + 1) * w * 3];
        for x in 0..w {
            let mut acc = [0f32; 3];
            for (t, kv) in k.iter().enumerate() {
                let sx = reflect(x as isize + t as isize - r, w) * 3;
                acc[0] += kv * row[sx];
                acc[1] += kv * row[sx + 1];
                acc[2] += kv * row[sx + 2];
            }
            out[x * 3..x * 3 + 3].copy_from_slice(&acc);
        }
    }
    let mut data = vec![0f32; img.data.len()];
    for y in 0..h {
        let out = &mut data[y * w * 3..(y + 1) * w * 3];
        for (t, kv) in k.iter().enumerate() {
            let sy = reflect(y as isize + t as isize - r, h);
            let src = &tmp[sy * w * 3..(sy + 1) * w * 3];
            for (o, s) in out.iter_mut().zip(src) {
                *o += kv * s;
            }
        }
    }
    Image {
        width: w,
        height: h,
        data,
    }
}

impl Augmentation<Image> for GaussianBlur {
    fn name(&self) -> &'static str {
        "GaussianBlur"
    }
    fn validate(&self) -> Result<(), AugmentationError> {
        if self.kernel_size == 0 || self.kernel_size % 2 == 0 || self.kernel_size > 255 {
            return Err(AugmentationError::new(
                "GaussianBlur",
                "kernel_size",
                self.kernel_size,
                "an odd integer in [1, 255]",
            ));
        }
        check_interval("GaussianBlur", "sigma", self.sigma, 1e-3, 100.0)
    }
    fn apply(&self, img: Image, ctx: &mut AugmentContext<'_, Image>) -> Image {
        let sigma = if self.sigma[1] > self.sigma[0] {
            ctx.rng.random_range(self.sigma[0]..=self.sigma[1])
        } else {
            self.sigma[0]
        };
        if self.kernel_size == 1 {
            return img;
        }
        blur_separable(&img, &gaussian_kernel(self.kernel_size, sigma))
    }
}

#[typetag::serde(name = "GaussianBlur")]
impl VisionAugmentation for GaussianBlur {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_indices() {
        let got: Vec<usize> = (-3..8).map(|i| reflect(i, 5)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
    }

    #[test]
    fn kernel_is_normalized_and_symmetric() {
        let k = gaussian_kernel(5, 1.0);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!((k[0] - k[4]).abs() < 1e-7 && k[2] > k[1]);
    }
}
