//! Audio augmentations: shapes, parameter validation, seeded determinism, Mixup's use of other
//! clips, known values.

use rand::RngExt;
use rand::SeedableRng;
use rand::rngs::StdRng;
use ssl_audio::augment::*;
use ssl_audio::melspec::Spectrogram;
use ssl_framework::augmentation::{AugmentContext, Augmentation, NoSamples, SampleSource};
use ssl_framework::search_space::{one_of, random_apply};

fn ramp(n_mels: usize, frames: usize) -> Spectrogram {
    Spectrogram {
        n_mels,
        frames,
        data: (0..n_mels * frames)
            .map(|i| ((i % 17) as f32 - 8.0) / 4.0)
            .collect(),
    }
}

fn rng(s: u64) -> StdRng {
    StdRng::seed_from_u64(s)
}

struct Fixed(Spectrogram);
impl SampleSource<Spectrogram> for Fixed {
    fn random_sample(&self, _: &mut StdRng) -> Option<Spectrogram> {
        Some(self.0.clone())
    }
}

#[test]
fn random_crop_shapes() {
    let x = ramp(64, 150);
    let op = RandomCrop { frames: 96 };
    op.validate().unwrap();
    let y = op.apply(x.clone(), &mut AugmentContext::new(&mut rng(0)));
    assert_eq!((y.n_mels, y.frames), (64, 96));
    // The crop is a contiguous window of the input.
    let start = (0..=54)
        .find(|s| (0..96).all(|t| y.at(3, t) == x.at(3, s + t)))
        .expect("a window");
    assert!((0..64).all(|m| (0..96).all(|t| y.at(m, t) == x.at(m, start + t))));
    let short = ramp(64, 40);
    assert_eq!(
        op.apply(short.clone(), &mut AugmentContext::new(&mut rng(0))),
        short,
        "short clips are kept whole"
    );
    assert!(RandomCrop { frames: 4 }.validate().is_err());
}

#[test]
fn mixup_mixes_in_the_power_domain_and_needs_a_source() {
    let x = Spectrogram::filled(4, 10, 0.0);
    let z = Spectrogram::filled(4, 10, 2.0);
    let op = Mixup { ratio: 0.4 };
    op.validate().unwrap();
    assert_eq!(
        op.apply(x.clone(), &mut AugmentContext::new(&mut rng(1))),
        x,
        "no source: unchanged"
    );
    let y = op.apply(
        x.clone(),
        &mut AugmentContext::with_source(&mut rng(1), &Fixed(z.clone())),
    );
    let v = y.data[0];
    // log((1 - l) e^0 + l e^2) for some l in [0, 0.4].
    let l = ((v.exp() - 1.0) / (2f32.exp() - 1.0)) as f64;
    assert!((0.0..=0.4).contains(&l) && l > 0.0, "lambda {l}");
    assert!(y.data.iter().all(|w| (w - v).abs() < 1e-6));
    assert_eq!(
        y,
        op.apply(
            x.clone(),
            &mut AugmentContext::with_source(&mut rng(1), &Fixed(z))
        ),
        "seeded"
    );
    // The exact formula.
    let m = ssl_audio::augment::log_mixup_exp(
        Spectrogram::filled(1, 1, 1.0),
        &Spectrogram::filled(1, 1, -1.0),
        0.25,
    );
    let expect = (0.75 * 1f32.exp() + 0.25 * (-1f32).exp()).ln();
    assert!((m.data[0] - expect).abs() < 1e-6);
    assert!(Mixup { ratio: 1.5 }.validate().is_err());
}

/// Mixup wrapped in combinators, as configs and the augmentation search write it (the search
/// wraps every op with p < 1 in `RandomApply`): the sample source reaches it, and it mixes
/// exactly as bare Mixup does on the random stream left after the combinator's own draw. Before
/// the one `apply(x, ctx)`, `RandomApply` dropped the source and Mixup inside it did nothing.
#[test]
fn mixup_inside_combinators_mixes_like_bare_mixup() {
    let x = ramp(8, 20);
    let src = Fixed(Spectrogram::filled(8, 30, 2.0));
    let mixup = || -> AudioOp { Box::new(Mixup { ratio: 0.4 }) };
    let ra = |ops: Vec<AudioOp>| -> AudioOp { random_apply(1.0, ops).unwrap() };
    let of = |ops: Vec<AudioOp>| -> AudioOp { one_of(ops).unwrap() };
    // Bare Mixup on `r` after `skip` has drawn what the combinators draw before it.
    let bare = |skip: &dyn Fn(&mut StdRng), seed: u64| {
        let mut r = rng(seed);
        skip(&mut r);
        Mixup { ratio: 0.4 }.apply(x.clone(), &mut AugmentContext::with_source(&mut r, &src))
    };
    let coin = |r: &mut StdRng| {
        let _: f64 = r.random();
    };
    let pick2 = |r: &mut StdRng| {
        let _ = r.random_range(0..2usize);
    };
    let cases: Vec<(&str, AudioOp, Box<dyn Fn(&mut StdRng)>)> = vec![
        ("RandomApply[Mixup]", ra(vec![mixup()]), Box::new(coin)),
        (
            "OneOf[Mixup, Mixup]",
            of(vec![mixup(), mixup()]),
            Box::new(pick2),
        ),
        (
            "RandomApply[OneOf[Mixup, Mixup]]",
            ra(vec![of(vec![mixup(), mixup()])]),
            Box::new(move |r: &mut StdRng| {
                coin(r);
                pick2(r);
            }),
        ),
        (
            "OneOf[RandomApply[Mixup], RandomApply[Mixup]]",
            of(vec![ra(vec![mixup()]), ra(vec![mixup()])]),
            Box::new(move |r: &mut StdRng| {
                pick2(r);
                coin(r);
            }),
        ),
    ];
    for (name, op, skip) in &cases {
        op.validate().unwrap();
        for seed in 0..4 {
            let y = op.apply(
                x.clone(),
                &mut AugmentContext::with_source(&mut rng(seed), &src),
            );
            assert_ne!(y, x, "{name}: Mixup must mix (seed {seed})");
            assert_eq!(
                y,
                bare(&**skip, seed),
                "{name}: as bare Mixup (seed {seed})"
            );
        }
        // Without a source the wrapped Mixup leaves the clip unchanged.
        assert_eq!(
            op.apply(x.clone(), &mut AugmentContext::new(&mut rng(0))),
            x,
            "{name}"
        );
        assert_eq!(
            op.apply(
                x.clone(),
                &mut AugmentContext::with_source(&mut rng(0), &NoSamples)
            ),
            x,
            "{name}"
        );
    }
    // As a view pipeline (a list of ops), too.
    let view: Vec<AudioOp> = vec![ra(vec![mixup()])];
    let y = view.apply(
        x.clone(),
        &mut AugmentContext::with_source(&mut rng(5), &src),
    );
    assert_eq!(y, bare(&coin, 5));
}

#[test]
fn random_resize_crop_keeps_shape_and_varies() {
    let x = ramp(64, 96);
    let op = RandomResizeCrop {
        virtual_crop_scale: [1.0, 1.5],
        freq_scale: [0.6, 1.5],
        time_scale: [0.6, 1.5],
    };
    op.validate().unwrap();
    let a = op.apply(x.clone(), &mut AugmentContext::new(&mut rng(3)));
    assert_eq!((a.n_mels, a.frames), (64, 96));
    assert_eq!(
        a,
        op.apply(x.clone(), &mut AugmentContext::new(&mut rng(3)))
    );
    assert_ne!(
        a,
        op.apply(x.clone(), &mut AugmentContext::new(&mut rng(4)))
    );
    assert!(a.data.iter().all(|v| v.is_finite()));
    // Scale 1 everywhere and no canvas: the identity.
    let id = RandomResizeCrop {
        virtual_crop_scale: [1.0, 1.0],
        freq_scale: [1.0, 1.0],
        time_scale: [1.0, 1.0],
    };
    let y = id.apply(x.clone(), &mut AugmentContext::new(&mut rng(0)));
    assert!(
        y.data
            .iter()
            .zip(&x.data)
            .all(|(a, b)| (a - b).abs() < 1e-4)
    );
    assert!(
        RandomResizeCrop {
            virtual_crop_scale: [0.5, 1.0],
            freq_scale: [0.6, 1.5],
            time_scale: [0.6, 1.5]
        }
        .validate()
        .is_err()
    );
    assert!(
        RandomResizeCrop {
            virtual_crop_scale: [1.0, 1.5],
            freq_scale: [1.5, 0.6],
            time_scale: [0.6, 1.5]
        }
        .validate()
        .is_err()
    );
}

#[test]
fn fader_is_a_linear_ramp_over_time() {
    let x = Spectrogram::filled(2, 11, 0.0);
    let y = RandomLinearFader { gain: 1.0 }.apply(x, &mut AugmentContext::new(&mut rng(5)));
    let (head, tail) = (y.at(0, 0), y.at(0, 10));
    assert!(head.abs() <= 1.0 && tail.abs() <= 1.0);
    for t in 0..11 {
        let expect = head + (tail - head) * t as f32 / 10.0;
        assert!((y.at(0, t) - expect).abs() < 1e-6 && (y.at(1, t) - expect).abs() < 1e-6);
    }
    assert!(RandomLinearFader { gain: -1.0 }.validate().is_err());
}

#[test]
fn masks_shift_gain_noise() {
    let x = Spectrogram::filled(8, 20, 1.0);
    let t = TimeMask {
        max_width: 5,
        count: 2,
    }
    .apply(x.clone(), &mut AugmentContext::new(&mut rng(0)));
    let masked_frames = (0..20).filter(|&f| t.at(0, f) == 0.0).count();
    assert!(masked_frames <= 10);
    assert!(
        (0..20).all(|f| (0..8).all(|m| t.at(m, f) == t.at(0, f))),
        "time masks span all bands"
    );
    let f = FreqMask {
        max_width: 3,
        count: 1,
    }
    .apply(x.clone(), &mut AugmentContext::new(&mut rng(0)));
    assert!((0..8).filter(|&m| f.at(m, 0) == 0.0).count() <= 3);
    assert!(
        TimeMask {
            max_width: 5,
            count: 0
        }
        .validate()
        .is_err()
    );
    let r = ramp(2, 10);
    let s = TimeShift { max_frames: 3 }.apply(r.clone(), &mut AugmentContext::new(&mut rng(2)));
    let mut sorted_a: Vec<i32> = r.data.iter().map(|v| (v * 4.0) as i32).collect();
    let mut sorted_b: Vec<i32> = s.data.iter().map(|v| (v * 4.0) as i32).collect();
    sorted_a.sort();
    sorted_b.sort();
    assert_eq!(sorted_a, sorted_b, "a shift only moves values");
    let g = Gain { max_db: 10.0 }.apply(x.clone(), &mut AugmentContext::new(&mut rng(3)));
    let shift = g.data[0] - 1.0;
    assert!(shift.abs() <= (10.0 * std::f32::consts::LN_10 / 10.0) + 1e-6);
    assert!(g.data.iter().all(|v| (v - 1.0 - shift).abs() < 1e-6));
    let n = GaussianNoise { std: 0.5 }.apply(
        Spectrogram::filled(64, 100, 0.0),
        &mut AugmentContext::new(&mut rng(4)),
    );
    let var = n.data.iter().map(|v| v * v).sum::<f32>() / n.data.len() as f32;
    assert!((var.sqrt() - 0.5).abs() < 0.03, "{}", var.sqrt());
}

#[test]
fn fsdd_config_pipelines_parse_and_are_deterministic() {
    #[derive(serde::Deserialize)]
    struct Aug {
        view1: Vec<AudioOp>,
    }
    #[derive(serde::Deserialize)]
    struct Cfg {
        augment: Aug,
    }
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../configs/audio/fsdd.toml"
    ))
    .unwrap();
    let table: toml::Table = text.parse().unwrap();
    let mut t = toml::Table::new();
    t.insert("augment".into(), table["augment"].clone());
    let cfg: Cfg = toml::Value::Table(t).try_into().unwrap();
    cfg.augment.view1.validate().unwrap();
    let x = ramp(64, 150);
    let src = Fixed(ramp(64, 120));
    let a = cfg.augment.view1.apply(
        x.clone(),
        &mut AugmentContext::with_source(&mut rng(9), &src),
    );
    assert_eq!((a.n_mels, a.frames), (64, 96));
    assert_eq!(
        a,
        cfg.augment
            .view1
            .apply(x, &mut AugmentContext::with_source(&mut rng(9), &src))
    );
}
