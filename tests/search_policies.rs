//! Every modality's search space through `ssl-search`'s policy decoding: sampled policies,
//! the crop-only and TrivialAugment-style baselines build valid ops, survive the round trip
//! through a config file `ssl train` reads, and transform real samples.

use rand::SeedableRng;
use rand::rngs::StdRng;
use ssl_audio::AudioModality;
use ssl_framework::Modality;
use ssl_framework::augmentation::{AugmentContext, Augmentation};
use ssl_framework::config::{ExperimentConfig, load_config};
use ssl_search::params::Params;
use ssl_search::policy::{
    Policy, SpaceConfig, ViewSharing, allowed_ops, build, choices, crop_only, describe,
    param_space, trivial_augment,
};
use ssl_text::TextModality;
use ssl_vision::VisionModality;

/// Samples policies from the space of `base`, builds them, writes each into the config and
/// reads it back; returns the number of distinct op names seen.
fn round_trips<M: Modality>(m: &M, base_text: &str) -> usize {
    let base: ExperimentConfig<M> = load_config(base_text, "base.toml", &[]).unwrap();
    let space = m
        .search_space(&base)
        .expect("every built-in modality is searchable");
    let cfg = SpaceConfig::default();
    let allowed = allowed_ops(&space, &cfg).unwrap();
    let params = param_space(allowed.len(), &cfg);
    let mut rng = StdRng::seed_from_u64(0);
    let mut seen = std::collections::BTreeSet::new();
    let mut policies: Vec<Policy<M::Op>> = vec![
        crop_only(&space),
        trivial_augment::<M>(&space, &allowed, cfg.random_levels).unwrap(),
    ];
    for _ in 0..30 {
        let p: Params = params.sample_uniform(&mut rng);
        let c = choices(&space, &allowed, &cfg, &p);
        assert!(!describe(&c).is_empty());
        for op in c.iter().flatten() {
            seen.insert(op.op.clone());
            assert!((0.0..=1.0).contains(&op.m) && (0.2..=1.0).contains(&op.p));
        }
        let n1 = p["view1.n_ops"] as usize;
        assert_eq!(c[0].len(), n1);
        if p["shared"] >= 0.5 {
            assert_eq!(c[0], c[1]);
        }
        policies.push(build::<M>(&space, &c).unwrap());
    }
    for policy in policies {
        for op in policy.view1.iter().chain(&policy.view2) {
            op.validate().unwrap();
        }
        // Into a config file and back: what `best-policy.toml` is.
        let mut cfg: ExperimentConfig<M> = load_config(base_text, "base.toml", &[]).unwrap();
        let json = policy.to_json();
        cfg.augment.view1 = policy.view1;
        cfg.augment.view2 = policy.view2;
        let text = cfg.to_toml();
        let back: ExperimentConfig<M> = load_config(&text, "policy.toml", &[]).unwrap();
        assert_eq!(back.to_json()["augment"]["view1"], json["view1"]);
        assert_eq!(back.to_json()["augment"]["view2"], json["view2"]);
        // And from the journal's JSON form.
        let again = Policy::<M::Op>::from_json(&json).unwrap();
        assert_eq!(again.to_json(), json);
    }
    seen.len()
}

#[test]
fn vision_policies_round_trip() {
    let n = round_trips(
        &VisionModality,
        include_str!("../configs/vision/cifar10-quick.toml"),
    );
    assert!(n >= 4, "only {n} ops sampled");
}

#[test]
fn audio_policies_round_trip() {
    let n = round_trips(
        &AudioModality::default(),
        include_str!("../configs/audio/fsdd.toml"),
    );
    assert!(n >= 6, "only {n} ops sampled");
}

#[test]
fn text_policies_round_trip() {
    let n = round_trips(
        &TextModality::default(),
        include_str!("../configs/text/vader.toml"),
    );
    assert_eq!(n, 4);
}

#[test]
fn policies_transform_real_spectrograms() {
    // A policy of every audio op at full magnitude on a real-sized log-mel: the shape is the
    // crop's and the values stay finite.
    let m = AudioModality::default();
    let base: ExperimentConfig<AudioModality> =
        load_config(include_str!("../configs/audio/fsdd.toml"), "fsdd.toml", &[]).unwrap();
    let space = m.search_space(&base).unwrap();
    let cfg = SpaceConfig {
        views: ViewSharing::Shared,
        ..SpaceConfig::default()
    };
    let allowed = allowed_ops(&space, &cfg).unwrap();
    let policy = trivial_augment::<AudioModality>(&space, &allowed, 3).unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..50 {
        let x = ssl_audio::melspec::Spectrogram {
            n_mels: 64,
            frames: 120,
            data: (0..64 * 120)
                .map(|i| ((i % 17) as f32 - 8.0) / 4.0)
                .collect(),
        };
        let y = policy
            .view1
            .iter()
            .fold(x, |s, op| op.apply(s, &mut AugmentContext::new(&mut rng)));
        assert_eq!((y.n_mels, y.frames), (64, 96));
        assert!(y.data.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn unknown_ops_and_bad_ranges_are_named() {
    let base: ExperimentConfig<TextModality> = load_config(
        include_str!("../configs/text/vader.toml"),
        "vader.toml",
        &[],
    )
    .unwrap();
    let space = TextModality::default().search_space(&base).unwrap();
    let bad = SpaceConfig {
        ops: vec!["Rotate".into()],
        ..SpaceConfig::default()
    };
    let err = allowed_ops(&space, &bad).unwrap_err().to_string();
    assert!(
        err.contains("\"Rotate\"") && err.contains("TokenMask"),
        "{err}"
    );
    let bad = SpaceConfig {
        probability: [0.5, 1.5],
        ..SpaceConfig::default()
    };
    assert!(
        allowed_ops(&space, &bad)
            .unwrap_err()
            .to_string()
            .contains("space.probability")
    );
    let bad = SpaceConfig {
        min_ops: 3,
        max_ops: 2,
        ..SpaceConfig::default()
    };
    assert!(
        allowed_ops(&space, &bad)
            .unwrap_err()
            .to_string()
            .contains("space.max_ops")
    );
    let subset = SpaceConfig {
        ops: vec!["RandomSwap".into(), "TokenMask".into()],
        ..SpaceConfig::default()
    };
    assert_eq!(allowed_ops(&space, &subset).unwrap(), vec![2, 0]);
}
