//! End to end on a slice of the real CIFAR-10, upscaled to photo-like JPEGs by the test:
//! `ssl train` streaming an image folder matches the same run decoding it into memory; `ssl
//! shard` writes tar shards that `ssl train` streams, probes (on the held-out shards) and
//! resumes mid-epoch bit for bit; an image that fails to decode mid-stream is skipped and
//! counted in `results.json`.

mod common;

use common::{ssl, text};
use std::path::Path;

/// Copies the CIFAR slice into `dest` as 64x48 JPEGs (quality 90), keeping the layout.
fn upscaled_copy(slice: &Path, dest: &Path) {
    for split in ["train", "test"] {
        for class in std::fs::read_dir(slice.join(split)).unwrap() {
            let class = class.unwrap();
            let out = dest.join(split).join(class.file_name());
            std::fs::create_dir_all(&out).unwrap();
            for f in std::fs::read_dir(class.path()).unwrap() {
                let f = f.unwrap();
                let img = image::open(f.path()).unwrap().resize_exact(
                    64,
                    48,
                    image::imageops::FilterType::Triangle,
                );
                let mut bytes = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
                    .encode_image(&img.to_rgb8())
                    .unwrap();
                std::fs::write(out.join(f.file_name()), bytes).unwrap();
            }
        }
    }
}

/// `ssl train` of the default vision config, small, with `extra` arguments.
fn train(data: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "--modality",
        "vision",
        "--data",
        data,
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ];
    for kv in [
        "train.epochs=1",
        "train.batch_size=50",
        "train.log_every=1",
        "train.checkpoint_every=3",
        "train.keep_checkpoints=5",
        "eval.probe_epochs=2",
        "eval.knn_k=10",
        "byol.projector_hidden=128",
    ] {
        args.extend(["--set", kv]);
    }
    args.extend_from_slice(extra);
    ssl(&args)
}

fn metrics(run: &Path) -> Vec<String> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("{} {} {} {}", v["step"], v["loss"], v["lr"], v["tau"])
        })
        .collect()
}

fn results(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap()
}

#[test]
fn streamed_folder_and_tar_shards_train_like_memory_and_resume_mid_epoch() {
    let Some(slice) = ssl_test_support::cifar_slice(
        "streamed_folder_and_tar_shards_train_like_memory_and_resume_mid_epoch",
        20,
        10,
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    upscaled_copy(&slice, &photos);
    let photos_arg = photos.to_str().unwrap();

    // The same folder decoded into memory and streamed: the same run.
    let memory = tmp.path().join("memory");
    let o = train(photos_arg, &memory, &["--set", "data.streaming=\"off\""]);
    assert!(o.status.success(), "{}", text(&o));
    let stream = tmp.path().join("stream");
    let o = train(photos_arg, &stream, &["--set", "data.streaming=\"on\""]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("streaming 200 training and 100 held-out images from storage"),
        "{}",
        text(&o)
    );
    assert_eq!(metrics(&memory), metrics(&stream));
    assert_eq!(metrics(&stream).len(), 4);
    assert_eq!(results(&memory)["probes"], results(&stream)["probes"]);

    // Tar shards written from the folder: trained on, probed on the held-out shards.
    let shards = tmp.path().join("shards");
    let o = ssl(&[
        "shard",
        "--data",
        photos_arg,
        "--out",
        shards.to_str().unwrap(),
        "--per-shard",
        "64",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o)
            .contains("wrote 200 training samples in 4 shards, 100 held-out samples in 2 shards"),
        "{}",
        text(&o)
    );
    let pattern = shards.join("train-{0000..0003}.tar");
    let pattern = pattern.to_str().unwrap();
    let full = tmp.path().join("full");
    let o = train(pattern, &full, &["--set", "train.epochs=2"]);
    assert!(o.status.success(), "{}", text(&o));
    let r = results(&full);
    assert_eq!(r["train_samples"], 200);
    assert_eq!(r["test_samples"], 100);
    assert_eq!(r["probes"].as_array().unwrap().len(), 2, "{r}");
    let expected = metrics(&full);
    assert_eq!(expected.len(), 8);
    // `ssl embed` finds the run's shards by itself.
    let embeddings = tmp.path().join("embeddings.safetensors");
    let o = ssl(&[
        "embed",
        "--checkpoint",
        full.to_str().unwrap(),
        "--out",
        embeddings.to_str().unwrap(),
        "--split",
        "test",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("data: the run's own"), "{}", text(&o));
    assert!(embeddings.is_file());

    // Interrupted after step 3, in the middle of the first epoch: --resume continues with the
    // very losses of the uninterrupted run.
    let resumed = tmp.path().join("resumed");
    let step3 = "checkpoints/step-00000003";
    std::fs::create_dir_all(resumed.join(step3)).unwrap();
    for f in std::fs::read_dir(full.join(step3)).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), resumed.join(step3).join(f.file_name())).unwrap();
    }
    let first: Vec<String> = std::fs::read_to_string(full.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .take(3)
        .map(str::to_string)
        .collect();
    std::fs::write(resumed.join("metrics.jsonl"), first.join("\n") + "\n").unwrap();
    let o = train(pattern, &resumed, &["--set", "train.epochs=2", "--resume"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("resuming from"), "{}", text(&o));
    assert_eq!(
        metrics(&resumed),
        expected,
        "bit-identical after a mid-epoch resume"
    );
}

#[test]
fn an_image_that_fails_to_decode_mid_stream_is_counted_in_the_results() {
    let Some(slice) = ssl_test_support::cifar_slice(
        "an_image_that_fails_to_decode_mid_stream_is_counted_in_the_results",
        20,
        10,
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let photos = tmp.path().join("photos");
    upscaled_copy(&slice, &photos);
    // A PNG whose header reads (the index keeps it) and whose pixel data is corrupt.
    let bytes = ssl_test_support::png_corrupt_after_header(64, 48);
    std::fs::write(photos.join("train/cat/corrupt.png"), bytes).unwrap();
    // 201 training records in batches of 67: every record is read once in the epoch.
    let run = tmp.path().join("run");
    let o = train(
        photos.to_str().unwrap(),
        &run,
        &[
            "--set",
            "data.streaming=\"on\"",
            "--set",
            "train.batch_size=67",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(
        out.contains("warning: skipping unreadable sample") && out.contains("corrupt.png"),
        "{out}"
    );
    // Evaluation meets it again: its row is left out of the probes, not given another image.
    assert!(
        out.contains("1 training and 0 held-out samples could not be read (named above): left out of the probes"),
        "{out}"
    );
    let r = results(&run);
    assert_eq!(r["train_samples"], 201);
    assert_eq!(r["skipped_files"], 1, "counted once: {r}");
    assert_eq!(metrics(&run).len(), 3, "no step lost");
    // An embeddings file needs every row: `ssl embed` names the problem instead.
    let o = ssl(&[
        "embed",
        "--checkpoint",
        run.to_str().unwrap(),
        "--out",
        tmp.path().join("e.npz").to_str().unwrap(),
        "--split",
        "train",
    ]);
    common::assert_one_line_error(&o, &["1 samples of the train split could not be read"]);
}
