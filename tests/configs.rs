//! Every shipped config parses and validates, and the compiled-in default is the file on disk.

use ssl_framework::config::load_config_file;
use ssl_framework::train::config_warnings;
use ssl_vision::VisionModality;

#[test]
fn every_vision_config_loads_and_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/vision");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let cfg = load_config_file::<VisionModality>(&path, &[])
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // No shipped config is a known mistake.
            assert_eq!(
                config_warnings(&cfg),
                Vec::<String>::new(),
                "{}",
                path.display()
            );
            assert!(
                !cfg.augment.view1.is_empty() && !cfg.augment.view2.is_empty(),
                "{}",
                path.display()
            );
            n += 1;
        }
    }
    assert!(
        n >= 4,
        "expected the quick, cifar10, imagenet and imagenet-300ep configs"
    );
    let imagenet = load_config_file::<VisionModality>(&dir.join("imagenet.toml"), &[]).unwrap();
    assert_eq!(
        imagenet.train.batch_size * imagenet.train.accumulation_steps,
        4096
    );
    assert_eq!(imagenet.byol.tau_base, 0.996);
    assert_eq!(imagenet.optim.base_lr, 0.2);
    assert_eq!(imagenet.optim.weight_decay, 1.5e-6);
    assert_eq!(imagenet.train.epochs, 1000);
}

#[test]
fn every_audio_config_loads_and_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/audio");
    for name in ["fsdd.toml", "byol-a.toml"] {
        let cfg = load_config_file::<ssl_audio::AudioModality>(&dir.join(name), &[])
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(config_warnings(&cfg), Vec::<String>::new(), "{name}");
        assert_eq!(cfg.data.n_mels, 64);
    }
    let byol_a =
        load_config_file::<ssl_audio::AudioModality>(&dir.join("byol-a.toml"), &[]).unwrap();
    assert_eq!(
        (
            byol_a.train.batch_size,
            byol_a.encoder.dim,
            byol_a.train.epochs
        ),
        (256, 2048, 100)
    );
    assert_eq!((byol_a.optim.base_lr, byol_a.byol.tau_base), (3e-4, 0.99));
}

#[test]
fn every_text_config_loads_and_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/text");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let cfg = load_config_file::<ssl_text::TextModality>(&path, &[])
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!cfg.augment.view1.is_empty() && !cfg.augment.view2.is_empty());
        assert_eq!(
            config_warnings(&cfg),
            Vec::<String>::new(),
            "{}",
            path.display()
        );
        n += 1;
    }
    assert!(n >= 1);
    let vader = load_config_file::<ssl_text::TextModality>(&dir.join("vader.toml"), &[]).unwrap();
    assert_eq!((vader.data.test_fraction, vader.data.split_seed), (0.2, 0));
}
