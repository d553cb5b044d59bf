//! The bad-input corpus, end to end through `ssl train`: broken files of every reader, configs
//! with wrong types and unknown keys, unusable datasets, and an output folder that is read-only
//! or full. Unreadable images and audio files are skipped and counted (the documented
//! behaviour, each named in a warning); everything else stops the run with one error line
//! naming the file, line or key. Nothing panics.
//!
//! The readers' mutation fuzzing is in `modalities/*/tests/fuzz.rs`; inputs it found are kept
//! here as explicit cases.

mod common;

use common::{assert_one_line_error, ssl, text};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Tiny, fast settings for runs that must get through training.
const TINY: [&str; 12] = [
    "--set",
    "train.epochs=1",
    "--set",
    "train.batch_size=16",
    "--set",
    "eval.probe_epochs=2",
    "--set",
    "byol.projector_hidden=64",
    "--set",
    "byol.predictor_hidden=64",
    "--set",
    "train.log_every=1",
];

fn train_args<'a>(modality: &'a str, data: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "train",
        "--modality",
        modality,
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ]
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn png_bytes() -> Vec<u8> {
    let img = image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8 * 8, y as u8 * 8, 0]));
    let mut c = std::io::Cursor::new(Vec::new());
    img.write_to(&mut c, image::ImageFormat::Png).unwrap();
    c.into_inner()
}

/// Bad image files, by name: truncated and garbage JPEG, truncated and zero-length PNG, text
/// with an image extension, and a PNG whose header claims a 2^31-pixel-wide image.
fn bad_images(real_jpeg: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let png = png_bytes();
    let mut huge = png.clone();
    // IHDR width (bytes 16..20), big-endian.
    huge[16..20].copy_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
    vec![
        ("truncated.jpg", real_jpeg[..real_jpeg.len() / 3].to_vec()),
        (
            "garbage.jpg",
            (0..2000u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
        ("truncated.png", png[..png.len() / 2].to_vec()),
        ("empty.png", Vec::new()),
        ("notes.jpeg", b"this is not an image\n".to_vec()),
        ("huge-header.png", huge),
    ]
}

#[test]
fn broken_images_are_skipped_counted_and_named() {
    let Some(slice) = ssl_test_support::cifar_slice("broken_images_are_skipped", 5, 2) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    copy_dir(&slice, &data);
    let class_dir = data.join("train/airplane");
    let jpeg = std::fs::read_dir(&class_dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .next()
        .unwrap();
    let bad = bad_images(&jpeg);
    for (name, bytes) in &bad {
        std::fs::write(class_dir.join(name), bytes).unwrap();
    }
    let out = tmp.path().join("run");
    let mut args = train_args("vision", &data, &out);
    args.extend_from_slice(&TINY);
    let o = ssl(&args);
    let all = text(&o);
    assert!(o.status.success(), "{all}");
    assert!(!all.contains("panicked"), "{all}");
    for (name, _) in &bad {
        let line = all
            .lines()
            .find(|l| l.starts_with("warning: skipping unreadable image") && l.contains(name))
            .unwrap_or_else(|| panic!("no warning names {name}: {all}"));
        assert!(line.contains(&class_dir.display().to_string()), "{line}");
    }
    assert!(
        all.contains(&format!("skipped {} files in", bad.len())),
        "{all}"
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["skipped_files"], bad.len());
    assert_eq!(results["train_samples"], 50);
}

#[test]
fn unusable_image_datasets_are_one_line_errors() {
    let Some(slice) = ssl_test_support::cifar_slice("unusable_image_datasets", 5, 2) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let jpeg = std::fs::read(
        std::fs::read_dir(slice.join("train/cat"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();

    // Every file unreadable: nothing to train on.
    let broken = tmp.path().join("broken");
    for split in ["train", "test"] {
        for class in ["a", "b"] {
            let d = broken.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for (name, bytes) in bad_images(&jpeg) {
                std::fs::write(d.join(name), bytes).unwrap();
            }
        }
    }
    let out = tmp.path().join("out-broken");
    let o = ssl(&train_args("vision", &broken, &out));
    assert_one_line_error(&o, &[broken.to_str().unwrap()]);
    assert!(!out.exists(), "no output folder for unusable data");

    // One class: pre-training works; the probes, which cannot tell anything apart, are
    // skipped with the reason (tests/unlabelled_data.rs checks the label-free report).
    let one = tmp.path().join("one-class");
    copy_dir(&slice.join("train/cat"), &one.join("train/cat"));
    copy_dir(&slice.join("test/cat"), &one.join("test/cat"));
    let out_one = tmp.path().join("out-one");
    let mut args = train_args("vision", &one, &out_one);
    args.extend_from_slice(&["--set", "train.batch_size=2", "--set", "train.epochs=1"]);
    let o = ssl(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 class(es) (cat)"), "{}", text(&o));

    // A batch larger than the dataset.
    let out_batch = tmp.path().join("out-batch");
    let mut args = train_args("vision", &slice, &out_batch);
    args.extend_from_slice(&["--set", "train.batch_size=500"]);
    assert_one_line_error(&ssl(&args), &["train.batch_size 500", "50 samples"]);

    // An empty folder.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = ssl(&train_args("vision", &empty, &tmp.path().join("out-empty")));
    assert_one_line_error(&o, &[empty.to_str().unwrap()]);
}

fn cifar_record(label: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend((0..3072u32).map(|i| i as u8));
    r
}

#[test]
fn broken_cifar_and_idx_files_are_one_line_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let write_cifar = |dir: &Path, test_batch: Vec<u8>| {
        std::fs::create_dir_all(dir).unwrap();
        let good: Vec<u8> = (0..20).flat_map(|i| cifar_record(i % 10)).collect();
        std::fs::write(dir.join("data_batch_1.bin"), &good).unwrap();
        std::fs::write(dir.join("test_batch.bin"), test_batch).unwrap();
    };
    let good: Vec<u8> = (0..20).flat_map(|i| cifar_record(i % 10)).collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "partial-record",
            good[..good.len() - 1000].to_vec(),
            "whole number",
        ),
        ("bad-label", cifar_record(200), "label 200"),
        ("zero-length", Vec::new(), "whole number"),
    ];
    for (name, bytes, needle) in cases {
        let dir = tmp.path().join(name);
        write_cifar(&dir, bytes);
        let o = ssl(&train_args("vision", &dir, &tmp.path().join("out")));
        assert_one_line_error(&o, &["test_batch.bin", needle]);
    }

    let idx_images = |n: u32, rows: u32, cols: u32, magic: u8| -> Vec<u8> {
        let mut b = vec![0, 0, 8, magic];
        for v in [n, rows, cols] {
            b.extend(v.to_be_bytes());
        }
        b.extend((0..n * rows * cols).map(|i| i as u8));
        b
    };
    let idx_labels = |n: u32| -> Vec<u8> {
        let mut b = vec![0, 0, 8, 1];
        b.extend(n.to_be_bytes());
        b.extend((0..n).map(|i| (i % 10) as u8));
        b
    };
    let cases: Vec<(&str, Vec<u8>, Vec<u8>, &str, &str)> = vec![
        (
            "wrong-magic",
            idx_images(20, 28, 28, 1),
            idx_labels(20),
            "t10k-images-idx3-ubyte",
            "magic",
        ),
        (
            "size-mismatch",
            idx_images(20, 28, 28, 3)[..1000].to_vec(),
            idx_labels(20),
            "t10k-images-idx3-ubyte",
            "header says 20 images",
        ),
        (
            "label-count",
            idx_images(20, 28, 28, 3),
            idx_labels(19),
            "t10k-labels-idx1-ubyte",
            "19 labels for 20 images",
        ),
        (
            "zero-length",
            Vec::new(),
            idx_labels(20),
            "t10k-images-idx3-ubyte",
            "magic",
        ),
    ];
    for (name, test_images, test_labels, file, needle) in cases {
        let dir = tmp.path().join(format!("idx-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("train-images-idx3-ubyte"),
            idx_images(40, 28, 28, 3),
        )
        .unwrap();
        std::fs::write(dir.join("train-labels-idx1-ubyte"), idx_labels(40)).unwrap();
        std::fs::write(dir.join("t10k-images-idx3-ubyte"), test_images).unwrap();
        std::fs::write(dir.join("t10k-labels-idx1-ubyte"), test_labels).unwrap();
        let o = ssl(&train_args("vision", &dir, &tmp.path().join("out")));
        assert_one_line_error(&o, &[file, needle]);
    }
}

fn wav_bytes(samples: &[f32], rate: u32, float: bool) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: if float { 32 } else { 16 },
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    };
    let mut c = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut c, spec).unwrap();
    for &v in samples {
        if float {
            w.write_sample(v).unwrap();
        } else {
            w.write_sample((v * 32767.0) as i16).unwrap();
        }
    }
    w.finalize().unwrap();
    c.into_inner()
}

#[test]
fn broken_wav_files_are_skipped_counted_and_named() {
    let Some(fsdd) = ssl_test_support::unpack_all("broken_wav_files", "fsdd-recordings.tar.gz")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("recordings");
    std::fs::create_dir_all(&data).unwrap();
    // Digits 0-3 of every speaker, indices 0-9 (0-4 test, 5-9 train).
    let src = fsdd.join("recordings");
    let src = if src.is_dir() { src } else { fsdd.clone() };
    let mut real = None;
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let parts: Vec<&str> = name.trim_end_matches(".wav").split('_').collect();
        if parts.len() == 3
            && parts[0].parse::<u32>().is_ok_and(|d| d < 4)
            && parts[2].parse::<u32>().is_ok_and(|i| i < 10)
        {
            std::fs::copy(&p, data.join(&name)).unwrap();
            real = Some(std::fs::read(&p).unwrap());
        }
    }
    let real = real.expect("FSDD recordings");
    let tone: Vec<f32> = (0..4000).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    let mut wrong_format = real.clone();
    wrong_format[8..12].copy_from_slice(b"WAVX");
    let mut zero_rate = wav_bytes(&tone, 8000, false);
    zero_rate[24..28].copy_from_slice(&0u32.to_le_bytes());
    let mut nan = tone.clone();
    nan[100] = f32::NAN;
    let mut overflow = tone.clone();
    // Found by fuzzing: a float sample of 3.3e38 made the resampler's FFT panic.
    overflow[7] = 3.3e38;
    let bad: Vec<(&str, Vec<u8>)> = vec![
        ("1_george_40.wav", Vec::new()),
        ("1_george_41.wav", b"RIFF\x00\x00\x00\x00garbage".to_vec()),
        ("1_george_42.wav", wrong_format),
        ("1_george_43.wav", real[..30].to_vec()),
        ("1_george_44.wav", zero_rate),
        ("1_george_45.wav", wav_bytes(&nan, 8000, true)),
        ("1_george_46.wav", wav_bytes(&overflow, 8000, true)),
    ];
    for (name, bytes) in &bad {
        std::fs::write(data.join(name), bytes).unwrap();
    }
    let out = tmp.path().join("run");
    let mut args = train_args("audio", tmp.path(), &out);
    args.extend_from_slice(&TINY);
    args.extend_from_slice(&["--set", "encoder.channels=4", "--set", "encoder.dim=32"]);
    let o = ssl(&args);
    let all = text(&o);
    assert!(o.status.success(), "{all}");
    assert!(!all.contains("panicked"), "{all}");
    for (name, _) in &bad {
        assert!(
            all.lines()
                .any(|l| l.starts_with("warning: skipping unreadable audio file")
                    && l.contains(name)),
            "no warning names {name}: {all}"
        );
    }
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["skipped_files"], bad.len());
}

#[test]
fn config_files_with_wrong_types_unknown_keys_or_bad_bytes_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let cases: Vec<(&str, &[u8], Vec<&str>)> = vec![
        (
            "wrong-type.toml",
            b"[train]\nepochs = \"ten\"\n",
            vec!["wrong-type.toml", "train.epochs"],
        ),
        (
            "unknown-key.toml",
            b"[train]\nepochs = 2\nlearning_rate = 0.1\n",
            vec!["unknown-key.toml", "learning_rate"],
        ),
        (
            "unknown-section.toml",
            b"[trian]\nepochs = 2\n",
            vec!["unknown-section.toml", "trian"],
        ),
        (
            "not-utf8.toml",
            b"[train]\nepochs = \xff\xfe\n",
            vec!["not-utf8.toml"],
        ),
        (
            "syntax.toml",
            b"[train\nepochs = 2\n",
            vec!["syntax.toml", "invalid TOML"],
        ),
    ];
    // Whole configs with one bad value, made from the default.
    let default = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/vision/cifar10-quick.toml"),
    )
    .unwrap();
    let out_of_range = default.replace("tau_base = 0.99", "tau_base = 1.5");
    let bad_op = default.replace("scale = [0.08, 1.0]", "scale = [0.9, 0.1]");
    assert!(out_of_range != default && bad_op != default);
    let mut cases = cases;
    cases.push((
        "out-of-range.toml",
        out_of_range.as_bytes(),
        vec!["byol.tau_base", "1.5"],
    ));
    cases.push((
        "bad-op.toml",
        bad_op.as_bytes(),
        vec!["augment.view1[0]", "scale"],
    ));
    for (name, bytes, needles) in cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let o = ssl(&[
            "train",
            "--modality",
            "vision",
            "--data",
            d,
            "--config",
            path.to_str().unwrap(),
        ]);
        assert_one_line_error(&o, &needles);
    }
    for (set, needle) in [
        ("train.epochs=-3", "train.epochs"),
        ("train.on_nan=\"sometimes\"", "train.on_nan"),
        ("eval.split=\"dev\"", "eval.split"),
        ("eval.validation_fraction=1.5", "eval.validation_fraction"),
        (
            "augment.finetune=[{type=\"Gain\", max_db=-1}]",
            "augment.finetune[0].max_db",
        ),
    ] {
        let o = ssl(&["train", "--modality", "audio", "--data", d, "--set", set]);
        assert_one_line_error(&o, &[needle]);
    }
}

/// Unmounts a folder when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn sh(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", cmd])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes `dir` read-only: by permissions, or, for root (who ignores them), by a read-only bind
/// mount. `None` when neither works here.
fn read_only(dir: &Path) -> Option<Option<Mount>> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(dir.join("probe"), b"x").is_err() {
        return Some(None);
    }
    let _ = std::fs::remove_file(dir.join("probe"));
    let d = dir.display();
    if sh(&format!(
        "mount --bind '{d}' '{d}' && mount -o remount,ro,bind '{d}' '{d}'"
    )) {
        return Some(Some(Mount(dir.to_path_buf())));
    }
    None
}

#[test]
fn a_read_only_or_full_output_folder_is_a_one_line_error() {
    let Some(slice) = ssl_test_support::cifar_slice("read_only_or_full_output", 5, 2) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();

    let ro = tmp.path().join("read-only");
    std::fs::create_dir_all(&ro).unwrap();
    match read_only(&ro) {
        Some(_mount) => {
            let o = ssl(&train_args("vision", &slice, &ro.join("run")));
            assert_one_line_error(&o, &[ro.to_str().unwrap()]);
        }
        None => eprintln!(
            "\n!!!!!! SKIPPED read-only output folder: cannot make a read-only folder here (root without mount) !!!!!!\n"
        ),
    }

    // A full disk: a 256 KiB tmpfs when mounting is allowed, else a 256 KiB file-size limit
    // (`ulimit -f`, SIGXFSZ ignored), which fails writes the same way.
    let full = tmp.path().join("full");
    std::fs::create_dir_all(&full).unwrap();
    let d = full.display();
    let _mount =
        sh(&format!("mount -t tmpfs -o size=256k tmpfs '{d}'")).then(|| Mount(full.clone()));
    let limit = if _mount.is_some() { "unlimited" } else { "256" };
    let out = full.join("run");
    let mut args = train_args("vision", &slice, &out);
    args.extend_from_slice(&TINY);
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let o = Command::new("bash")
        .args([
            "-c",
            &format!(
                "trap '' XFSZ; ulimit -f {limit}; exec '{}' {}",
                env!("CARGO_BIN_EXE_ssl"),
                quoted.join(" ")
            ),
        ])
        .env_remove("SSL_DATA_DIR")
        .output()
        .unwrap();
    let line = assert_one_line_error(&o, &[out.to_str().unwrap()]);
    assert!(
        line.contains("No space left") || line.contains("too large"),
        "{line}"
    );
    let ckpts = out.join("checkpoints");
    if ckpts.is_dir() {
        for e in std::fs::read_dir(&ckpts).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().to_string();
            assert!(
                !name.starts_with("step-"),
                "a checkpoint that failed to write is not left as one: {name}"
            );
        }
    }
}

#[test]
fn broken_text_lines_are_skipped_counted_and_named_by_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("corpus.tsv");
    let mut body = b"text\tlabel\n".to_vec();
    for i in 0..200 {
        body.extend(
            format!(
                "sentence number {i} is {}\t{}\n",
                ["good", "bad"][i % 2],
                i % 2
            )
            .as_bytes(),
        );
    }
    // Line 202: ragged; 203: invalid UTF-8; 204: empty text.
    body.extend(b"only one field\n");
    body.extend(b"bad \xff\xfe bytes\t1\n");
    body.extend(b"\t0\n");
    std::fs::write(&data, &body).unwrap();
    let out = tmp.path().join("run");
    let mut args = train_args("text", &data, &out);
    args.extend_from_slice(&TINY);
    args.extend_from_slice(&[
        "--set",
        "data.label_columns=[\"label\"]",
        "--set",
        "data.vocab_size=400",
        "--set",
        "encoder.d_model=16",
        "--set",
        "encoder.d_ff=32",
    ]);
    let o = ssl(&args);
    let all = text(&o);
    assert!(o.status.success(), "{all}");
    for line in [202, 203, 204] {
        assert!(
            all.contains(&format!(
                "warning: skipping line {line} of {}",
                data.display()
            )),
            "line {line}: {all}"
        );
    }
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["skipped_files"], 3);

    // A named column that is not there: one line naming the file and the column.
    let run2 = tmp.path().join("run2");
    let mut args = train_args("text", &data, &run2);
    args.extend_from_slice(&["--set", "data.text_column=\"body\""]);
    assert_one_line_error(&ssl(&args), &["corpus.tsv", "body"]);
}

#[test]
fn a_device_not_built_in_or_unknown_is_one_line_naming_it_for_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    // Failed before any data is read: the data folder need not exist.
    let data = tmp.path().join("no-data");
    let o = ssl(&[
        "train",
        "--modality",
        "vision",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        "tpu:0",
    ]);
    assert_one_line_error(
        &o,
        &["--device tpu:0: unknown device", "this binary has: cpu"],
    );
    let o = ssl(&[
        "bench",
        "--device",
        "cuda:x",
        "--workloads",
        "step-smallcnn",
    ]);
    assert_one_line_error(&o, &["--device cuda:x", "`x` is not a GPU index"]);
    // Backends left out of this build name the feature that adds them.
    let wgpu = cfg!(any(feature = "wgpu", feature = "vulkan", feature = "metal"));
    let no_wgpu = "without wgpu: cargo build --release --features wgpu";
    for (device, needle, built) in [
        (
            "cuda:0",
            "without the `cuda` feature",
            cfg!(feature = "cuda"),
        ),
        (
            "rocm:1",
            "without the `rocm` feature",
            cfg!(feature = "rocm"),
        ),
        ("metal", no_wgpu, wgpu),
        ("vulkan:0", no_wgpu, wgpu),
    ] {
        if built {
            continue;
        }
        let o = ssl(&[
            "train",
            "--modality",
            "audio",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--device",
            device,
        ]);
        assert_one_line_error(&o, &[&format!("--device {device}"), needle]);
        let o = ssl(&["bench", "--device", device, "--workloads", "step-smallcnn"]);
        assert_one_line_error(&o, &[&format!("--device {device}"), needle]);
        let o = ssl(&[
            "search-augment",
            "--modality",
            "vision",
            "--data",
            data.to_str().unwrap(),
            "--devices",
            &format!("cpu,{device}"),
        ]);
        assert_one_line_error(&o, &[&format!("--devices {device}:"), needle]);
        // Refused before the checkpoint is looked at.
        let emb = tmp.path().join("e.npz");
        for cmd in ["eval", "embed"] {
            let (checkpoint, emb) = (tmp.path().to_str().unwrap(), emb.to_str().unwrap());
            let mut args = vec![cmd, "--checkpoint", checkpoint, "--device", device];
            if cmd == "embed" {
                args.extend(["--out", emb]);
            }
            let o = ssl(&args);
            assert_one_line_error(&o, &[&format!("--device {device}:"), needle]);
        }
    }
    assert!(!out.exists(), "nothing written");
}
