//! End to end, on slices of the real datasets: pre-training on data without labels (a flat or
//! nested image folder, a single-class folder, a folder of WAVs, a text file), evaluation with
//! the label-free metrics only, probes on a separate labelled set with `--eval-data`, a folder
//! of mixed sizes and formats with the default config, and `ssl eval`/`ssl embed` finding the
//! run's own data.

mod common;

use common::{ssl, text};
use std::path::{Path, PathBuf};

/// A small-CNN run of the default vision config, shrunk for a test.
const VISION_QUICK: [&str; 10] = [
    "--set",
    "train.epochs=1",
    "--set",
    "train.batch_size=50",
    "--set",
    "eval.probe_epochs=3",
    "--set",
    "eval.knn_k=20",
    "--set",
    "byol.projector_hidden=256",
];

fn results(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("results.json")).expect("results.json"))
        .expect("results.json parses")
}

/// The label-free report of a run: it has no probes, says why in one note, and reports the
/// effective rank and spread of the trained and the random-init encoders' features.
fn assert_label_free(r: &serde_json::Value, samples: u64) {
    assert_eq!(r["probes"].as_array().unwrap().len(), 0, "{r}");
    let notes: Vec<&str> = r["eval_notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(
        notes.last().unwrap().starts_with("probes skipped"),
        "{notes:?}"
    );
    let rep = &r["representation"];
    assert_eq!(rep["samples"], samples, "{rep}");
    for who in ["trained", "random_init"] {
        let rank = rep[who]["rank"].as_f64().unwrap();
        let max = rep[who]["max_rank"].as_f64().unwrap();
        assert!(rank >= 1.0 && rank <= max + 1e-6, "{who}: {rep}");
        assert!(rep[who]["std"].as_f64().unwrap() > 0.0, "{who}: {rep}");
    }
}

/// Copies the training images of a CIFAR slice into `dest` without their class folders:
/// `flat` puts them all at the top, otherwise each class's images go two folders down under
/// a name that is no class (`2023/<n>/`), as photos sorted by date.
fn unlabelled_copy(slice: &Path, dest: &Path, flat: bool) -> usize {
    let mut n = 0;
    let mut classes: Vec<PathBuf> = std::fs::read_dir(slice.join("train"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    classes.sort();
    for (k, class) in classes.iter().enumerate() {
        let dir = if flat {
            dest.to_path_buf()
        } else {
            dest.join(format!("2023/{k:02}"))
        };
        std::fs::create_dir_all(&dir).unwrap();
        let mut files: Vec<PathBuf> = std::fs::read_dir(class)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files {
            std::fs::copy(&f, dir.join(format!("img{n:05}.jpg"))).unwrap();
            n += 1;
        }
    }
    n
}

fn train_vision(data: &Path, run: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "--modality",
        "vision",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--no-progress",
    ];
    args.extend_from_slice(&VISION_QUICK);
    args.extend_from_slice(extra);
    ssl(&args)
}

#[test]
fn unlabelled_and_single_class_image_folders_pretrain_and_report_label_free_metrics() {
    let Some(slice) = ssl_test_support::cifar_slice("unlabelled_image_folders", 20, 10) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for flat in [true, false] {
        let data = tmp.path().join(if flat { "flat" } else { "nested" });
        let n = unlabelled_copy(&slice, &data, flat);
        assert_eq!(n, 200);
        let run = tmp.path().join(format!("run-{flat}"));
        let o = train_vision(&data, &run, &[]);
        assert!(o.status.success(), "{}", text(&o));
        let out = text(&o);
        // Flat: no labels at all; nested: one folder (`2023/`), one class, nothing to probe.
        assert!(out.contains("probes skipped: the data has no"), "{out}");
        assert!(out.contains("effective rank (RankMe)"), "{out}");
        let r = results(&run);
        assert_eq!(r["steps"], 4, "200 images, batch 50");
        // Named after the folder, not after the config's default dataset.
        assert_eq!(r["dataset"], if flat { "flat" } else { "nested" });
        assert_eq!(r["pretrain_samples"], 200);
        // No held-out split: the metrics are computed on the training images.
        assert_label_free(&r, 200);
        assert_eq!(r["representation"]["split"], "train");
        // The nested folder with data.labels = "none" reads the same way.
        if !flat {
            let run = tmp.path().join("run-none");
            let o = train_vision(&data, &run, &["--set", "data.labels=\"none\""]);
            assert!(o.status.success(), "{}", text(&o));
            assert_label_free(&results(&run), 200);
        }
    }
    // One class folder (`cats/`): pre-trains; the probes are skipped with the reason.
    let one = tmp.path().join("one-class");
    let cats = one.join("cats");
    std::fs::create_dir_all(&cats).unwrap();
    for e in std::fs::read_dir(slice.join("train/cat")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, cats.join(p.file_name().unwrap())).unwrap();
    }
    let run = tmp.path().join("run-one-class");
    let o = train_vision(&one, &run, &["--set", "train.batch_size=10"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = results(&run);
    let notes = r["eval_notes"].to_string();
    assert!(notes.contains("1 class(es) (cats)"), "{notes}");
    assert_label_free(&r, 20);
}

#[test]
fn eval_data_probes_on_a_separate_labelled_set_and_eval_finds_the_runs_data() {
    let Some(slice) = ssl_test_support::cifar_slice("eval_data_probes", 20, 10) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let unlabelled = tmp.path().join("photos");
    unlabelled_copy(&slice, &unlabelled, true);
    let run = tmp.path().join("run");
    let o = train_vision(&unlabelled, &run, &["--eval-data", slice.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let r = results(&run);
    assert_eq!(r["pretrain_samples"], 200);
    // Probes fit on the labelled set's 200 training images, scored on its 100 test images.
    assert_eq!(r["train_samples"], 200);
    assert_eq!(r["test_samples"], 100);
    let probes: Vec<&str> = r["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["probe"].as_str().unwrap())
        .collect();
    assert_eq!(probes, ["knn", "linear"]);
    assert_eq!(r["representation"]["split"], "held-out");
    assert_eq!(r["representation"]["samples"], 100);
    assert!(
        r["eval_data"]
            .as_str()
            .unwrap()
            .ends_with(slice.file_name().unwrap().to_str().unwrap())
    );

    // `ssl eval` without --data probes on the run's eval.data, as training did.
    let o = ssl(&[
        "eval",
        "--checkpoint",
        run.to_str().unwrap(),
        "--no-finetune",
        "--set",
        "eval.probe_epochs=3",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("the run's eval.data"), "{}", text(&o));
    let e: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("eval.json")).unwrap()).unwrap();
    assert_eq!(e["test_samples"], 100);
    assert_eq!(e["probes"].as_array().unwrap().len(), 2);

    // `ssl embed` without --data embeds the run's own (unlabelled) data, not CIFAR-10.
    let emb = tmp.path().join("emb.npz");
    let o = ssl(&[
        "embed",
        "--checkpoint",
        run.to_str().unwrap(),
        "--split",
        "train",
        "--out",
        emb.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("the run's own"), "{}", text(&o));
    assert!(emb.is_file());

    // A labelled train split without test/ probes on a validation part of it.
    let train_only = tmp.path().join("train-only");
    std::fs::create_dir_all(&train_only).unwrap();
    copy_tree(&slice.join("train"), &train_only.join("train"));
    let run = tmp.path().join("run-validation");
    let o = train_vision(
        &train_only,
        &run,
        &[
            "--set",
            "eval.split=\"validation\"",
            "--set",
            "eval.validation_fraction=0.25",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let r = results(&run);
    assert_eq!(
        (r["train_samples"].as_u64(), r["test_samples"].as_u64()),
        (Some(150), Some(50))
    );
    assert_eq!(r["probes"].as_array().unwrap().len(), 2);
    // A held-out split of one image: probed, and the label-free metrics read the training
    // split (a rank needs 2 samples).
    let one_test = tmp.path().join("one-test");
    copy_tree(&train_only, &one_test);
    let cat = std::fs::read_dir(slice.join("test/cat"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::create_dir_all(one_test.join("test/cat")).unwrap();
    std::fs::copy(&cat, one_test.join("test/cat/only.jpg")).unwrap();
    let run = tmp.path().join("run-one-test");
    let o = train_vision(&one_test, &run, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let r = results(&run);
    assert_eq!(r["test_samples"], 1);
    assert_eq!(r["representation"]["split"], "train");
    assert_eq!(r["representation"]["samples"], 200);
    // Without eval.split = "validation" it trains too, and says how to probe.
    let run = tmp.path().join("run-no-test");
    let o = train_vision(&train_only, &run, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("eval.split = \"validation\""),
        "{}",
        text(&o)
    );
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// Writes `img` to `path` in the format its extension names.
fn save(img: image::DynamicImage, path: &Path) {
    img.save(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

#[test]
fn mixed_sizes_and_formats_train_and_evaluate_with_the_default_config() {
    let Some(slice) = ssl_test_support::cifar_slice("mixed_sizes_and_formats", 20, 10) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("mixed");
    copy_tree(&slice, &data);
    let cat = data.join("train/cat");
    let gradient = |w: u32, h: u32| {
        image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 255 / w) as u8, (y * 255 / h) as u8, 128])
        })
    };
    // A 1x1 PNG, a 4000x3000 JPEG, grey and grey+alpha PNGs, 16-bit PNG, WebP, BMP, TIFF, GIF,
    // a CMYK JPEG; in the training and the test split.
    for split in ["train", "test"] {
        let dir = data.join(split).join("cat");
        save(gradient(1, 1).into(), &dir.join("tiny.png"));
        save(
            image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(
                50,
                20,
                image::Luma([90]),
            )),
            &dir.join("grey.png"),
        );
        save(
            image::DynamicImage::ImageLumaA8(image::GrayAlphaImage::from_pixel(
                31,
                64,
                image::LumaA([200, 100]),
            )),
            &dir.join("grey-alpha.png"),
        );
        save(
            image::DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
                40,
                33,
                image::Rgb([1000u16, 40000, 65535]),
            )),
            &dir.join("deep.png"),
        );
        save(gradient(33, 47).into(), &dir.join("photo.webp"));
        save(gradient(47, 33).into(), &dir.join("scan.bmp"));
        save(gradient(64, 48).into(), &dir.join("scan.tiff"));
        save(gradient(30, 30).into(), &dir.join("anim.gif"));
        std::fs::copy(
            ssl_test_support::workspace_root().join("tests/fixtures/cmyk.jpg"),
            dir.join("cmyk.jpg"),
        )
        .unwrap();
    }
    save(gradient(4000, 3000).into(), &cat.join("large.jpg"));
    // Not images: counted and named, not silently ignored.
    std::fs::write(cat.join("notes.txt"), "not an image").unwrap();
    std::fs::write(cat.join("broken.jpg"), b"\xff\xd8 truncated").unwrap();

    let run = tmp.path().join("run");
    // The default config's pipelines (eval: Resize + CenterCrop), shortened.
    let o = ssl(&[
        "train",
        "--modality",
        "vision",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--no-progress",
        "--set",
        "train.epochs=1",
        "--set",
        "train.batch_size=30",
        "--set",
        "eval.probe_epochs=2",
    ]);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("notes.txt"),
        "the skipped file is named: {out}"
    );
    assert!(
        out.contains("broken.jpg"),
        "the undecodable file is named: {out}"
    );
    let r = results(&run);
    // 200 CIFAR + 10 generated + 1 large decode in the training split; 100 + 9 in the test split.
    assert_eq!(r["train_samples"], 210, "{r}");
    assert_eq!(r["test_samples"], 109, "{r}");
    assert_eq!(r["skipped_files"], 2, "{r}");
    assert_eq!(r["probes"].as_array().unwrap().len(), 2);
}

/// The default audio config on `data`, shrunk for a test: one epoch, batch 25, a small encoder.
fn train_audio(data: &Path, run: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "--modality",
        "audio",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--no-progress",
        "--set",
        "train.epochs=1",
        "--set",
        "train.batch_size=25",
        "--set",
        "encoder.channels=8",
        "--set",
        "encoder.dim=64",
    ];
    args.extend_from_slice(extra);
    ssl(&args)
}

#[test]
fn unlabelled_wavs_pretrain_and_report_label_free_metrics() {
    let Some(fsdd) = ssl_test_support::unpack_all("unlabelled_wavs", "fsdd-recordings.tar.gz")
    else {
        return;
    };
    let src = fsdd.join("recordings");
    let src = if src.is_dir() { src } else { fsdd.clone() };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("clips");
    std::fs::create_dir_all(&data).unwrap();
    // Names without the FSDD pattern: nothing to label them by.
    for (i, f) in files.iter().step_by(25).take(100).enumerate() {
        std::fs::copy(f, data.join(format!("clip-{i:03}.wav"))).unwrap();
    }
    let run = tmp.path().join("run");
    let o = train_audio(&data, &run, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let r = results(&run);
    assert_eq!(r["steps"], 4);
    assert_label_free(&r, 100);

    // Clips sorted into folders that are no classes (`data.labels = "none"`): unlabelled too.
    let sorted = tmp.path().join("sorted");
    for (i, f) in files.iter().step_by(25).take(100).enumerate() {
        let dir = sorted.join(format!("session-{}", i % 2));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(f, dir.join(format!("clip-{i:03}.wav"))).unwrap();
    }
    let run = tmp.path().join("run-sorted");
    let o = train_audio(&sorted, &run, &["--set", "data.labels=\"none\""]);
    assert!(o.status.success(), "{}", text(&o));
    let r = results(&run);
    assert_label_free(&r, 100);
    assert_eq!(
        r["eval_notes"].as_array().unwrap().len(),
        1,
        "no labels at all, not a 2-class label set dropped: {r}"
    );
}

#[test]
fn unlabelled_text_pretrains_and_reports_label_free_metrics() {
    let Some(data) = ssl_test_support::shared_data("unlabelled_text") else {
        return;
    };
    // The sentences of one VADER corpus, one per line, without ids or ratings.
    let tsv = std::fs::read_to_string(data.join("vader/tweets_GroundTruth.txt")).unwrap();
    let lines: Vec<&str> = tsv
        .lines()
        .filter_map(|l| l.splitn(3, '\t').nth(2))
        .take(500)
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("sentences.txt");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let run = tmp.path().join("run");
    let o = ssl(&[
        "train",
        "--modality",
        "text",
        "--data",
        file.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--no-progress",
        "--set",
        "data.vocab_size=500",
        "--set",
        "train.epochs=1",
        "--set",
        "train.batch_size=50",
        "--set",
        "encoder.d_model=32",
        "--set",
        "encoder.d_ff=64",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let r = results(&run);
    // A fixed 80/20 split of the 500 texts: 400 pre-train (8 steps), 100 held out.
    assert_eq!(r["steps"], 8);
    assert_label_free(&r, 100);
    assert_eq!(r["representation"]["split"], "held-out");
}
