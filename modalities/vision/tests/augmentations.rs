//! Each augmentation: shape and range, parameter validation, seeded determinism, known values.

use rand::SeedableRng;
use rand::rngs::StdRng;
use ssl_framework::{AugmentContext, Augmentation};
use ssl_vision::augment::*;
use ssl_vision::image::Image;

fn gradient_image(w: usize, h: usize) -> Image {
    let mut data = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            data.extend_from_slice(&[
                x as f32 / (w - 1) as f32,
                y as f32 / (h - 1) as f32,
                ((x + y) % 7) as f32 / 6.0,
            ]);
        }
    }
    Image {
        width: w,
        height: h,
        data,
    }
}

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn in_unit_range(img: &Image) -> bool {
    img.data.iter().all(|v| (0.0..=1.0).contains(v))
}

fn default_pipelines() -> (Vec<VisionOp>, Vec<VisionOp>) {
    #[derive(serde::Deserialize)]
    struct Aug {
        view1: Vec<VisionOp>,
        view2: Vec<VisionOp>,
    }
    #[derive(serde::Deserialize)]
    struct Cfg {
        augment: Aug,
    }
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/vision/cifar10-quick.toml"
    ))
    .unwrap();
    let table: toml::Table = text.parse().unwrap();
    let mut t = toml::Table::new();
    t.insert("augment".into(), table["augment"].clone());
    let cfg: Cfg = toml::Value::Table(t).try_into().unwrap();
    (cfg.augment.view1, cfg.augment.view2)
}

#[test]
fn random_resized_crop_shape_range_and_full_area_identity() {
    let img = gradient_image(40, 30);
    let op = RandomResizedCrop {
        size: 32,
        scale: [0.08, 1.0],
        ratio: [0.75, 4.0 / 3.0],
        interpolation: Interpolation::Bicubic,
    };
    op.validate().unwrap();
    for s in 0..20 {
        let out = op.apply(img.clone(), &mut AugmentContext::new(&mut rng(s)));
        assert_eq!(
            (out.width, out.height, out.data.len()),
            (32, 32, 32 * 32 * 3)
        );
        assert!(in_unit_range(&out));
    }
    // The whole image at its own size is the identity.
    let square = gradient_image(32, 32);
    let full = RandomResizedCrop {
        size: 32,
        scale: [1.0, 1.0],
        ratio: [1.0, 1.0],
        interpolation: Interpolation::Bicubic,
    };
    let out = full.apply(square.clone(), &mut AugmentContext::new(&mut rng(0)));
    for (a, b) in out.data.iter().zip(&square.data) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
    // Sampled boxes respect the area and ratio bounds (when the first try fits).
    let op = RandomResizedCrop {
        size: 8,
        scale: [0.25, 0.5],
        ratio: [1.0, 1.0],
        interpolation: Interpolation::Bilinear,
    };
    for s in 0..50 {
        let (l, t, w, h) = op.sample_box(100, 100, &mut rng(s));
        assert!(l + w <= 100 && t + h <= 100);
        let area = (w * h) as f64 / 10000.0;
        assert!((0.23..=0.52).contains(&area), "{area}");
        assert!((w as i64 - h as i64).abs() <= 1);
    }
}

#[test]
fn crop_validation_rejects_bad_parameters() {
    let bad = [
        RandomResizedCrop {
            size: 0,
            scale: [0.08, 1.0],
            ratio: [0.75, 1.33],
            interpolation: Interpolation::Bicubic,
        },
        RandomResizedCrop {
            size: 32,
            scale: [0.9, 0.1],
            ratio: [0.75, 1.33],
            interpolation: Interpolation::Bicubic,
        },
        RandomResizedCrop {
            size: 32,
            scale: [0.08, 1.5],
            ratio: [0.75, 1.33],
            interpolation: Interpolation::Bicubic,
        },
        RandomResizedCrop {
            size: 32,
            scale: [0.08, 1.0],
            ratio: [0.0, 1.33],
            interpolation: Interpolation::Bicubic,
        },
    ];
    for op in bad {
        assert!(op.validate().is_err(), "{op:?}");
    }
}

#[test]
fn flip_known_values_and_involution() {
    let img = gradient_image(5, 3);
    let always = HorizontalFlip { p: 1.0 };
    let out = always.apply(img.clone(), &mut AugmentContext::new(&mut rng(0)));
    assert_eq!(out.pixel(0, 1), img.pixel(4, 1));
    assert_eq!(out.pixel(2, 2), img.pixel(2, 2));
    assert_eq!(
        always.apply(out, &mut AugmentContext::new(&mut rng(0))),
        img
    );
    assert_eq!(
        HorizontalFlip { p: 0.0 }.apply(img.clone(), &mut AugmentContext::new(&mut rng(0))),
        img
    );
    assert!(HorizontalFlip { p: 1.1 }.validate().is_err());
}

#[test]
fn grayscale_and_solarize_exact_values() {
    let img = Image {
        width: 2,
        height: 1,
        data: vec![1.0, 0.0, 0.0, 0.2, 0.6, 0.9],
    };
    let g = Grayscale {}.apply(img.clone(), &mut AugmentContext::new(&mut rng(0)));
    assert_eq!(g.pixel(0, 0), [0.299, 0.299, 0.299]);
    let l = 0.299 * 0.2 + 0.587 * 0.6 + 0.114 * 0.9;
    assert!(g.pixel(1, 0).iter().all(|v| (v - l).abs() < 1e-6));
    let s = Solarize { threshold: 0.5 }.apply(img, &mut AugmentContext::new(&mut rng(0)));
    assert_eq!(s.data, vec![0.0, 0.0, 0.0, 0.2, 1.0 - 0.6, 1.0 - 0.9]);
    assert!(Solarize { threshold: -0.1 }.validate().is_err());
}

#[test]
fn color_jitter_range_identity_and_validation() {
    let img = gradient_image(16, 16);
    let none = ColorJitter {
        brightness: 0.0,
        contrast: 0.0,
        saturation: 0.0,
        hue: 0.0,
    };
    assert_eq!(
        none.apply(img.clone(), &mut AugmentContext::new(&mut rng(1))),
        img
    );
    let paper = ColorJitter {
        brightness: 0.4,
        contrast: 0.4,
        saturation: 0.2,
        hue: 0.1,
    };
    paper.validate().unwrap();
    let mut changed = 0;
    for s in 0..20 {
        let out = paper.apply(img.clone(), &mut AugmentContext::new(&mut rng(s)));
        assert!(in_unit_range(&out));
        assert_eq!(out.data.len(), img.data.len());
        if out != img {
            changed += 1;
        }
    }
    assert!(changed >= 19);
    for bad in [
        ColorJitter {
            brightness: -0.1,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.0,
        },
        ColorJitter {
            brightness: 0.0,
            contrast: 1.5,
            saturation: 0.0,
            hue: 0.0,
        },
        ColorJitter {
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.0,
            hue: 0.6,
        },
    ] {
        assert!(bad.validate().is_err());
    }
}

#[test]
fn hue_rotation_and_brightness_known_values() {
    let mut red = Image {
        width: 1,
        height: 1,
        data: vec![1.0, 0.0, 0.0],
    };
    adjust_hue_third(&mut red);
    assert!(
        (red.data[0]).abs() < 1e-5 && (red.data[1] - 1.0).abs() < 1e-5 && red.data[2].abs() < 1e-5,
        "{:?}",
        red.data
    );
    let mut img = Image {
        width: 1,
        height: 1,
        data: vec![0.2, 0.5, 0.8],
    };
    ssl_vision::augment::color::adjust_brightness(&mut img, 1.5);
    assert!(
        (img.data[0] - 0.3).abs() < 1e-6 && (img.data[1] - 0.75).abs() < 1e-6 && img.data[2] == 1.0
    );
}

fn adjust_hue_third(img: &mut Image) {
    ssl_vision::augment::color::adjust_hue(img, 1.0 / 3.0);
}

#[test]
fn blur_preserves_constants_and_smooths() {
    let flat = Image::filled(9, 9, 0.4);
    let op = GaussianBlur {
        kernel_size: 3,
        sigma: [0.1, 2.0],
    };
    op.validate().unwrap();
    let out = op.apply(flat.clone(), &mut AugmentContext::new(&mut rng(3)));
    assert!(out.data.iter().all(|v| (v - 0.4).abs() < 1e-6));
    let mut dot = Image::filled(9, 9, 0.0);
    dot.data[(4 * 9 + 4) * 3] = 1.0;
    let out = GaussianBlur {
        kernel_size: 5,
        sigma: [1.0, 1.0],
    }
    .apply(dot, &mut AugmentContext::new(&mut rng(0)));
    let center = out.data[(4 * 9 + 4) * 3];
    let side = out.data[(4 * 9 + 5) * 3];
    assert!(center < 1.0 && side > 0.0 && center > side);
    let total: f32 = out.data.iter().step_by(3).sum();
    assert!(
        (total - 1.0).abs() < 1e-5,
        "blur keeps mass away from borders: {total}"
    );
    assert!(
        GaussianBlur {
            kernel_size: 4,
            sigma: [0.1, 2.0]
        }
        .validate()
        .is_err()
    );
    assert!(
        GaussianBlur {
            kernel_size: 3,
            sigma: [2.0, 0.1]
        }
        .validate()
        .is_err()
    );
}

#[test]
fn normalize_known_values_and_validation() {
    let img = Image {
        width: 1,
        height: 1,
        data: vec![0.5, 0.5, 0.5],
    };
    let out = Normalize {
        mean: [0.5, 0.25, 0.0],
        std: [0.5, 0.25, 0.5],
    }
    .apply(img, &mut AugmentContext::new(&mut rng(0)));
    assert_eq!(out.data, vec![0.0, 1.0, 1.0]);
    assert!(
        Normalize {
            mean: [0.5; 3],
            std: [0.0, 1.0, 1.0]
        }
        .validate()
        .is_err()
    );
}

#[test]
fn resize_and_center_crop_shapes() {
    let img = gradient_image(40, 20);
    let r = Resize {
        size: 10,
        interpolation: Interpolation::Bilinear,
    }
    .apply(img.clone(), &mut AugmentContext::new(&mut rng(0)));
    assert_eq!((r.width, r.height), (20, 10));
    let c = CenterCrop { size: 16 }.apply(img.clone(), &mut AugmentContext::new(&mut rng(0)));
    assert_eq!((c.width, c.height), (16, 16));
    assert_eq!(c.pixel(0, 0), img.pixel(12, 2));
}

#[test]
fn default_pipelines_are_seeded_deterministic_and_views_differ() {
    let (v1, v2) = default_pipelines();
    v1.validate().unwrap();
    v2.validate().unwrap();
    let img = gradient_image(32, 32);
    let a = v1.apply(img.clone(), &mut AugmentContext::new(&mut rng(7)));
    let b = v1.apply(img.clone(), &mut AugmentContext::new(&mut rng(7)));
    assert_eq!(a, b, "same seed, same output");
    assert_ne!(
        a,
        v1.apply(img.clone(), &mut AugmentContext::new(&mut rng(8))),
        "another seed, another output"
    );
    assert_eq!((a.width, a.height), (32, 32));
    let c = v2.apply(img, &mut AugmentContext::new(&mut rng(7)));
    assert_ne!(a, c);
}

#[test]
fn pipelines_round_trip_through_toml_and_json() {
    let (v1, _) = default_pipelines();
    let json = serde_json::to_string(&v1).unwrap();
    let back: Vec<VisionOp> = serde_json::from_str(&json).unwrap();
    assert_eq!(serde_json::to_string(&back).unwrap(), json);
    let err = serde_json::from_str::<Vec<VisionOp>>(r#"[{"type": "Sharpen"}]"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("Sharpen"), "{err}");
    let err = serde_json::from_str::<Vec<VisionOp>>(r#"[{"type": "Solarize", "threshhold": 0.5}]"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("threshhold"), "{err}");
}

#[test]
fn combinators_nest_in_configs() {
    let json = r#"[{"type": "OneOf", "ops": [{"type": "Grayscale"}, {"type": "Compose", "ops": [{"type": "Solarize", "threshold": 0.0}, {"type": "HorizontalFlip", "p": 1.0}]}]}]"#;
    let ops: Vec<VisionOp> = serde_json::from_str(json).unwrap();
    ops.validate().unwrap();
    let img = gradient_image(4, 4);
    let outs: std::collections::HashSet<String> = (0..40)
        .map(|s| {
            format!(
                "{:?}",
                ops.apply(img.clone(), &mut AugmentContext::new(&mut rng(s)))
                    .data
            )
        })
        .collect();
    assert_eq!(outs.len(), 2, "OneOf picks one of its two branches");
    let bad: Vec<VisionOp> = serde_json::from_str(r#"[{"type": "OneOf", "ops": []}]"#).unwrap();
    assert!(bad.validate().is_err());
}
