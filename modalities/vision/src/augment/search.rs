//! The image augmentation search space of `ssl search-augment`: every op's magnitude mapping.

use super::{
    ColorJitter, GaussianBlur, Grayscale, HorizontalFlip, Interpolation, RandomResizedCrop,
    Solarize, VisionOp,
};
use crate::VisionModality;
use ssl_framework::Augmentation;
use ssl_framework::config::ExperimentConfig;
use ssl_framework::search_space::{SearchOp, SearchSpace, clone_ops};

/// The space: every view starts with the paper's `RandomResizedCrop` to `data.image_size`
/// pixels (scale `[0.08, 1]`, ratio `[3/4, 4/3]`, bicubic) and ends with the base config's
/// `Normalize` ops (taken from `augment.eval`); in between, a policy chooses among the paper's
/// ops (Table 6), magnitude `m` in `[0, 1]`:
///
/// | op | magnitude `m` sets |
/// |---|---|
/// | `HorizontalFlip` | none (`p = 1` inside; the policy's probability decides) |
/// | `ColorJitter` | `brightness = 0.8 m`, `contrast = 0.8 m`, `saturation = 0.4 m`, `hue = 0.2 m` (the paper's 0.4/0.4/0.2/0.1 at `m = 0.5`) |
/// | `Grayscale` | none |
/// | `GaussianBlur` | `sigma = [0.1, 0.1 + 1.9 m]` pixels, kernel about a tenth of the image (odd, at least 3) (the paper's `[0.1, 2]` at `m = 1`) |
/// | `Solarize` | `threshold = 1 - 0.5 m` (pixels in `[0, 1]` above it are inverted; the paper's 0.5 at `m = 1`) |
pub fn search_space(base: &ExperimentConfig<VisionModality>) -> SearchSpace<VisionOp> {
    fn boxed<T: super::VisionAugmentation + 'static>(op: T) -> VisionOp {
        Box::new(op)
    }
    let size = base.data.image_size;
    let finish = clone_ops(&base.augment.eval)
        .into_iter()
        .filter(|op| op.name() == "Normalize")
        .collect();
    SearchSpace {
        crop: vec![boxed(RandomResizedCrop {
            size,
            scale: [0.08, 1.0],
            ratio: [0.75, 4.0 / 3.0],
            interpolation: Interpolation::Bicubic,
        })],
        finish,
        ops: vec![
            SearchOp {
                name: "HorizontalFlip",
                magnitude: "none (p = 1 inside; the policy's probability decides)",
                build: Box::new(move |_| boxed(HorizontalFlip { p: 1.0 })),
            },
            SearchOp {
                name: "ColorJitter",
                magnitude: "brightness = 0.8 m, contrast = 0.8 m, saturation = 0.4 m, hue = 0.2 m",
                build: Box::new(move |m| {
                    boxed(ColorJitter {
                        brightness: 0.8 * m,
                        contrast: 0.8 * m,
                        saturation: 0.4 * m,
                        hue: 0.2 * m,
                    })
                }),
            },
            SearchOp {
                name: "Grayscale",
                magnitude: "none",
                build: Box::new(move |_| boxed(Grayscale {})),
            },
            SearchOp {
                name: "GaussianBlur",
                magnitude: "sigma = [0.1, 0.1 + 1.9 m] pixels; kernel: the odd size nearest a tenth of the image, at least 3",
                build: Box::new(move |m| {
                    boxed(GaussianBlur {
                        kernel_size: blur_kernel(size),
                        sigma: [0.1, 0.1 + 1.9 * m],
                    })
                }),
            },
            SearchOp {
                name: "Solarize",
                magnitude: "threshold = 1 - 0.5 m",
                build: Box::new(move |m| {
                    boxed(Solarize {
                        threshold: 1.0 - 0.5 * m,
                    })
                }),
            },
        ],
    }
}

/// The paper's blur kernel: about a tenth of the image side, odd, at least 3 (3 for 32
/// pixels, 23 for 224).
fn blur_kernel(size: usize) -> usize {
    let k = (size as f64 / 10.0).round() as usize;
    (if k % 2 == 0 { k + 1 } else { k }).max(3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Image;

    #[test]
    fn every_op_is_valid_at_every_magnitude() {
        let cfg = ssl_framework::config::load_config::<VisionModality>(
            include_str!("../../../../configs/vision/cifar10-quick.toml"),
            "cifar10-quick.toml",
            &[],
        )
        .unwrap();
        let space = search_space(&cfg);
        ssl_framework::search_space::check_space::<Image, _>(&space).unwrap();
        assert_eq!(
            space.finish.len(),
            1,
            "the config's Normalize ends every view"
        );
        assert_eq!(
            (blur_kernel(32), blur_kernel(96), blur_kernel(224)),
            (3, 11, 23)
        );
        let blur = serde_json::to_value((space.op("GaussianBlur").unwrap().build)(1.0)).unwrap();
        assert_eq!(blur["kernel_size"], 3);
        let json = serde_json::to_value((space.op("ColorJitter").unwrap().build)(0.5)).unwrap();
        assert_eq!(json["brightness"], 0.4);
        assert_eq!(json["hue"], 0.1);
    }
}
