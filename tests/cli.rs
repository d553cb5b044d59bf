//! End to end: `ssl train --modality vision` on a small slice of the real CIFAR-10, resume from
//! a checkpoint, and one-line errors for bad input.

mod common;

use common::{ssl, text};
use std::path::Path;
use std::process::{Command, Output};

const QUICK: [&str; 14] = [
    "--set",
    "train.epochs=2",
    "--set",
    "train.batch_size=50",
    "--set",
    "train.checkpoint_every=4",
    "--set",
    "train.keep_checkpoints=10",
    "--set",
    "eval.probe_epochs=3",
    "--set",
    "train.log_every=2",
    "--set",
    "byol.projector_hidden=256",
];

fn train(data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--modality",
        "vision",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-progress",
    ];
    args.extend_from_slice(&QUICK);
    args.extend_from_slice(extra);
    ssl(&args)
}

#[test]
fn train_vision_on_cifar_slice_then_resume() {
    let Some(data) =
        ssl_test_support::cifar_slice("train_vision_on_cifar_slice_then_resume", 20, 10)
    else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let o = train(&data, &run, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    // 200 training images, batch 50: 4 steps per epoch, 2 epochs.
    assert_eq!(results["steps"], 8);
    assert_eq!(results["modality"], "vision");
    assert_eq!(results["train_samples"], 200);
    assert_eq!(results["test_samples"], 100);
    assert_eq!(results["config"]["train"]["batch_size"], 50);
    let probes = results["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 2);
    for p in probes {
        for key in ["trained_top1", "random_init_top1"] {
            let v = p[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
    }
    assert!(results["wall_seconds"].as_f64().unwrap() > 0.0);
    assert!(results["train_images_per_sec"].as_f64().unwrap() > 0.0);
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 4);
    // The training curves: one SVG with the four panels, each a drawn line.
    let svg = std::fs::read_to_string(run.join("training.svg")).unwrap();
    for panel in ["BYOL loss", "learning rate", "tau", "collapse metric"] {
        assert!(svg.contains(panel), "{panel} missing from training.svg");
    }
    assert!(svg.matches("<polyline").count() >= 4, "four curves");
    let ckpts = run.join("checkpoints");
    for s in [4, 8] {
        for f in ["online.bpk", "target.bpk", "optimizer.bpk", "state.json"] {
            assert!(
                ckpts.join(format!("step-{s:08}")).join(f).is_file(),
                "missing step {s} {f}"
            );
        }
    }
    let table = text(&o);
    assert!(
        table.contains("random-init") && table.contains("knn") && table.contains("linear"),
        "{table}"
    );

    // A run interrupted after step 4: its folder holds the step-4 checkpoint; --resume finishes it
    // with the same losses as the uninterrupted run.
    let resumed = out.path().join("resumed");
    std::fs::create_dir_all(resumed.join("checkpoints/step-00000004")).unwrap();
    for f in std::fs::read_dir(ckpts.join("step-00000004")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(
            f.path(),
            resumed
                .join("checkpoints/step-00000004")
                .join(f.file_name()),
        )
        .unwrap();
    }
    let first: Vec<&str> = metrics.lines().take(2).collect();
    std::fs::write(resumed.join("metrics.jsonl"), first.join("\n") + "\n").unwrap();
    let o = train(&data, &resumed, &["--resume"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("resuming from"), "{}", text(&o));
    let a: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let b: Vec<serde_json::Value> = std::fs::read_to_string(resumed.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x["step"], y["step"]);
        let (lx, ly) = (x["loss"].as_f64().unwrap(), y["loss"].as_f64().unwrap());
        assert!((lx - ly).abs() < 1e-4, "step {}: {lx} vs {ly}", x["step"]);
    }
    // --resume of a finished run shows its results and changes nothing.
    let before = std::fs::read(run.join("results.json")).unwrap();
    let o = train(&data, &run, &["--resume"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("already finished"), "{}", text(&o));
    assert_eq!(
        std::fs::read(run.join("results.json")).unwrap(),
        before,
        "results.json untouched"
    );
    // A --resume with another config is refused and leaves the run's config.toml as it was.
    let config_before = std::fs::read(run.join("config.toml")).unwrap();
    let o = train(&data, &run, &["--resume", "--set", "optim.base_lr=0.123"]);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("different config"), "{}", text(&o));
    assert_eq!(
        std::fs::read(run.join("config.toml")).unwrap(),
        config_before,
        "config.toml untouched by a refused --resume"
    );
    // Training the same folder again without --resume refuses to overwrite it.
    let o = train(&data, &run, &[]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--resume"), "{}", text(&o));
}

#[test]
fn bad_input_gives_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().to_str().unwrap();
    let out = format!("{d}/out");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["train", "--modality", "vision", "--data", "/nonexistent/x"],
            "/nonexistent/x: no such file",
        ),
        (
            vec![
                "train",
                "--modality",
                "vision",
                "--data",
                d,
                "--set",
                "train.epochs",
            ],
            "KEY=VALUE",
        ),
        (
            vec![
                "train",
                "--modality",
                "vision",
                "--data",
                d,
                "--set",
                "augment.view1=[{type=\"Blur\"}]",
            ],
            "Blur",
        ),
        (
            vec![
                "train",
                "--modality",
                "vision",
                "--data",
                d,
                "--set",
                "train.batch_size=abc",
            ],
            "train.batch_size",
        ),
        (
            vec![
                "train",
                "--modality",
                "vision",
                "--data",
                d,
                "--set",
                "train.bogus=1",
            ],
            "bogus",
        ),
        (
            vec![
                "train",
                "--modality",
                "vision",
                "--data",
                d,
                "--set",
                "optim.base_lr=-1",
            ],
            "optim.base_lr",
        ),
        (
            vec![
                "train",
                "--modality",
                "vision",
                "--data",
                d,
                "--set",
                "encoder.arch=resnet7",
            ],
            "encoder.arch",
        ),
        (
            vec![
                "train",
                "--modality",
                "vision",
                "--data",
                "/nonexistent/cifar",
            ],
            "/nonexistent/cifar",
        ),
        (
            vec![
                "train",
                "--modality",
                "vision",
                "--config",
                "/nonexistent.toml",
            ],
            "/nonexistent.toml",
        ),
        (
            vec![
                "train",
                "--modality",
                "vision",
                "--data",
                d,
                "--device",
                "tpu",
            ],
            "--device tpu",
        ),
        (
            vec!["train", "--modality", "vision", "--data", d, "--out", &out],
            "no .jpg/.jpeg/.png",
        ),
    ];
    for (args, needle) in cases {
        let o = ssl(&args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(
            err.contains(needle),
            "{args:?}: expected `{needle}` in: {err}"
        );
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(error_lines.len(), 1, "{err}");
        assert!(
            err.trim_end().lines().last().unwrap().starts_with("error:"),
            "the error is one line, and the last: {err}"
        );
    }
    assert!(
        !tmp.path().join("out").exists(),
        "no output folder is left behind when the data is unusable"
    );
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[train]\nepochs = = 2\n").unwrap();
    let o = ssl(&[
        "train",
        "--modality",
        "vision",
        "--data",
        d,
        "--config",
        bad.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(
        err.contains("bad.toml") && err.contains("invalid TOML"),
        "{err}"
    );
}

#[test]
fn train_audio_on_fsdd_reports_digit_and_speaker_probes() {
    let Some(root) = ssl_test_support::unpack_all(
        "train_audio_on_fsdd_reports_digit_and_speaker_probes",
        "fsdd-recordings.tar.gz",
    ) else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("run");
    let o = ssl(&[
        "train",
        "--modality",
        "audio",
        "--data",
        root.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--no-progress",
        "--set",
        "data.train_subset=300",
        "--set",
        "data.test_subset=60",
        "--set",
        "train.epochs=1",
        "--set",
        "train.batch_size=50",
        "--set",
        "eval.probe_epochs=3",
        "--set",
        "encoder.channels=8",
        "--set",
        "encoder.dim=64",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["modality"], "audio");
    assert_eq!(results["steps"], 6);
    let labels: Vec<&str> = results["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["labels"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["digit", "digit", "speaker", "speaker"]);
    let stats = &results["modality_state"]["normalization"];
    assert!(
        stats["std"].as_f64().unwrap() > 0.0,
        "normalization statistics are reported: {stats}"
    );
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run.join("checkpoints/step-00000006/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        &state["modality_state"]["normalization"], stats,
        "and stored with the checkpoint"
    );
}

#[test]
fn killed_run_resumes_with_bit_identical_losses() {
    let Some(data) =
        ssl_test_support::cifar_slice("killed_run_resumes_with_bit_identical_losses", 20, 10)
    else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let args = |run: &Path| -> Vec<String> {
        let mut a: Vec<String> = [
            "train",
            "--modality",
            "vision",
            "--data",
            data.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--no-progress",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for kv in [
            "train.epochs=3",
            "train.batch_size=25",
            "train.checkpoint_every=3",
            "train.keep_checkpoints=2",
            "train.log_every=1",
            "eval.probe_epochs=2",
            "byol.projector_hidden=128",
        ] {
            a.push("--set".into());
            a.push(kv.into());
        }
        a
    };
    let full = out.path().join("full");
    let o = Command::new(env!("CARGO_BIN_EXE_ssl"))
        .args(args(&full))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let metrics = |run: &Path| -> Vec<(u64, String, String, String, String)> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["step"].as_u64().unwrap(),
                    v["loss"].to_string(),
                    v["lr"].to_string(),
                    v["tau"].to_string(),
                    v["online_probe_top1"].to_string(),
                )
            })
            .collect()
    };
    let expected = metrics(&full);
    assert_eq!(expected.len(), 24);
    // The online probe's accuracy on each step's batch (25 labelled images: a multiple of 4%).
    for m in &expected {
        let a: f64 =
            m.4.parse()
                .unwrap_or_else(|_| panic!("no online probe: {m:?}"));
        assert!((0.0..=1.0).contains(&a) && ((a * 25.0).round() - a * 25.0).abs() < 1e-9);
    }
    // A step's accuracy depends on what the probe learned before it (the probe resumes
    // exactly, or the kill-and-resume comparison below fails): not every step scores alike.
    assert!(expected.iter().any(|m| m.4 != expected[0].4));
    // Kill at three points (SIGKILL, no chance to clean up), resuming after each.
    let run = out.path().join("killed");
    for kill_after in [4usize, 10, 16] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ssl"))
            .args(args(&run))
            .args(if run.join("checkpoints").exists() {
                vec!["--resume"]
            } else {
                vec![]
            })
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let steps = std::fs::read_to_string(run.join("metrics.jsonl"))
                .map(|t| t.lines().count())
                .unwrap_or(0);
            if steps >= kill_after
                || child.try_wait().unwrap().is_some()
                || std::time::Instant::now() > deadline
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let o = Command::new(env!("CARGO_BIN_EXE_ssl"))
        .args(args(&run))
        .arg("--resume")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        metrics(&run),
        expected,
        "losses, lr, tau and the online probe's accuracy after kill-and-resume are bit-identical"
    );
    let probes = |run: &Path| {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
        v["probes"].clone()
    };
    assert_eq!(probes(&run), probes(&full), "the same evaluation results");
}

fn copy_checkpoint(from_run: &Path, step: usize, to_run: &Path) -> std::path::PathBuf {
    let name = format!("step-{step:08}");
    let src = from_run.join("checkpoints").join(&name);
    let dst = to_run.join("checkpoints").join(&name);
    std::fs::create_dir_all(&dst).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dst.join(f.file_name())).unwrap();
    }
    dst
}

/// The lines of a run's `metrics.jsonl`.
fn metrics(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn audio_resume_with_dropout_is_bit_identical_and_broken_checkpoints_are_named() {
    let Some(root) = ssl_test_support::unpack_all(
        "audio_resume_with_dropout_is_bit_identical",
        "fsdd-recordings.tar.gz",
    ) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = |out: &Path, resume: bool| {
        let mut args = vec![
            "train",
            "--modality",
            "audio",
            "--data",
            root.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-progress",
        ];
        // The default audio encoder has dropout (0.3): its masks must replay exactly.
        args.extend_from_slice(&[
            "--set",
            "data.train_subset=200",
            "--set",
            "data.test_subset=60",
            "--set",
            "train.epochs=2",
            "--set",
            "train.batch_size=25",
            "--set",
            "train.checkpoint_every=4",
            "--set",
            "train.keep_checkpoints=10",
            "--set",
            "train.log_every=1",
            "--set",
            "eval.probe_epochs=2",
            "--set",
            "encoder.channels=8",
            "--set",
            "encoder.dim=64",
        ]);
        if resume {
            args.push("--resume");
        }
        ssl(&args)
    };
    let full = tmp.path().join("full");
    let o = run(&full, false);
    assert!(o.status.success(), "{}", text(&o));
    let part = tmp.path().join("part");
    copy_checkpoint(&full, 8, &part);
    let o = run(&part, true);
    assert!(o.status.success(), "{}", text(&o));
    let (f, p) = (metrics(&full), metrics(&part));
    assert_eq!(f.len(), 16);
    assert_eq!(p.len(), 8);
    for m in &p {
        let step = m["step"].as_u64().unwrap() as usize;
        assert!(step > 8);
        assert_eq!(
            m["loss"],
            f[step - 1]["loss"],
            "step {step}: the resumed loss differs"
        );
    }
    let results = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap()
    };
    assert_eq!(results(&full)["probes"], results(&part)["probes"]);

    // A checkpoint that fails to load names its file and the reason.
    for (file, needle) in [("online.bpk", "online.bpk"), ("state.json", "state.json")] {
        let broken = tmp.path().join(format!("broken-{file}"));
        let dir = copy_checkpoint(&full, 8, &broken);
        let bytes = std::fs::read(dir.join(file)).unwrap();
        std::fs::write(dir.join(file), &bytes[..bytes.len() / 2]).unwrap();
        let o = run(&broken, true);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!o.status.success(), "{err}");
        let last = err.trim_end().lines().last().unwrap();
        assert!(last.starts_with("error:") && last.contains(needle), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn train_text_on_a_vader_slice_reports_probes_and_resumes_bit_identically() {
    let Some(data) = ssl_test_support::shared_data("train_text_on_a_vader_slice") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let data = data.join("vader");
    // Dropout 0.1 everywhere in the Transformer (our masks, kernels/src/dropout.rs): a resumed
    // run must replay them exactly.
    let train = |out: &Path, resume: bool| {
        let mut args = vec![
            "train",
            "--modality",
            "text",
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-progress",
            "--set",
            "data.train_subset=600",
            "--set",
            "data.test_subset=300",
            "--set",
            "data.vocab_size=1000",
            "--set",
            "train.epochs=1",
            "--set",
            "train.batch_size=50",
            "--set",
            "train.checkpoint_every=6",
            "--set",
            "train.keep_checkpoints=10",
            "--set",
            "train.log_every=1",
            "--set",
            "eval.probe_epochs=3",
            "--set",
            "encoder.d_model=32",
            "--set",
            "encoder.d_ff=64",
        ];
        if resume {
            args.push("--resume");
        }
        ssl(&args)
    };
    let o = train(&run, false);
    assert!(o.status.success(), "{}", text(&o));
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["modality"], "text");
    assert_eq!(results["steps"], 12);
    let probes: Vec<(&str, &str, u64)> = results["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["probe"].as_str().unwrap(),
                p["labels"].as_str().unwrap(),
                p["classes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        probes,
        [
            ("knn", "sentiment", 2),
            ("linear", "sentiment", 2),
            ("knn", "source", 4),
            ("linear", "source", 4)
        ]
    );
    for p in results["probes"].as_array().unwrap() {
        let (t, r) = (
            p["trained_top1"].as_f64().unwrap(),
            p["random_init_top1"].as_f64().unwrap(),
        );
        assert!((0.2..=1.0).contains(&t) && (0.2..=1.0).contains(&r), "{p}");
    }
    // The vocabulary is stored with the checkpoint and restores the same tokenization.
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(run.join("checkpoints/step-00000012/state.json")).unwrap(),
    )
    .unwrap();
    let json = state["modality_state"]["tokenizer"].as_str().unwrap();
    assert!(ssl_text::tokenizer::Vocabulary::from_json(json).is_ok());

    // Resumed from step 6: the same losses to the last bit, and the same probes.
    let part = tmp.path().join("part");
    copy_checkpoint(&run, 6, &part);
    let o = train(&part, true);
    assert!(o.status.success(), "{}", text(&o));
    let (full, resumed) = (metrics(&run), metrics(&part));
    assert_eq!((full.len(), resumed.len()), (12, 6));
    for m in &resumed {
        let step = m["step"].as_u64().unwrap() as usize;
        assert_eq!(
            m["loss"],
            full[step - 1]["loss"],
            "step {step}: the resumed loss differs"
        );
    }
    let probes = |dir: &Path| -> serde_json::Value {
        let r: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("results.json")).unwrap()).unwrap();
        r["probes"].clone()
    };
    assert_eq!(probes(&run), probes(&part));
}
