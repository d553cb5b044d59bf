//! The plugin API end to end: `examples/custom_modality.rs` (multivariate time series from CSV,
//! its own augmentations in a TOML config, a 1-D CNN) trains with BYOL and evaluates, using only
//! `ssl-framework`'s public API.

#[path = "../examples/custom_modality.rs"]
#[allow(dead_code)]
mod example;

#[test]
fn custom_time_series_modality_trains_and_evaluates() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    example::write_synthetic(&data, 30, 48, 1).unwrap();
    let report = example::run(
        &data,
        &tmp.path().join("run"),
        &["train.epochs=6".to_string()],
    )
    .unwrap();
    assert_eq!(report.results["modality"], "series");
    assert_eq!(report.results["collapsed"], false);
    assert_eq!(report.probes.len(), 2);
    for p in &report.probes {
        assert_eq!(p.classes, 3);
        assert!(p.random_init_top1.is_some());
        assert!(
            p.trained_top1 > 0.5,
            "{} {}: {} (3 classes)",
            p.probe,
            p.labels,
            p.trained_top1
        );
    }
    // The example's own ops validate their parameters like the built-in ones.
    let e = example::run(
        &data,
        &tmp.path().join("bad"),
        &["augment.view1=[{ type = \"TimeWarp\", max_warp = 2.0, knots = 4 }]".to_string()],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("augment.view1[0].max_warp"), "{e}");
}

#[test]
fn mixed_precision_is_refused_for_an_encoder_that_does_not_declare_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    example::write_synthetic(&data, 30, 48, 1).unwrap();
    // The example's encoder calls burn's Conv1d and BatchNorm directly (no casts), so it keeps
    // `Encoder::mixed_precision`'s default, false.
    for precision in ["bf16", "f16"] {
        let e = example::run(
            &data,
            &tmp.path().join(precision),
            &[format!("train.precision=\"{precision}\"")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("train.precision") && e.contains(precision) && e.contains("f32 only"),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
    }
}
