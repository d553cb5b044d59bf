//! Helpers shared by the end-to-end tests: run the `ssl` binary and read what it printed.
#![allow(dead_code)]

use std::process::{Command, Output};

/// Runs the `ssl` binary with `args` (no `SSL_DATA_DIR` from the environment).
pub fn ssl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssl"))
        .args(args)
        .env_remove("SSL_DATA_DIR")
        .output()
        .expect("run ssl")
}

/// Standard output and standard error together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts that the run failed with exactly one `error:` line, the last one printed, containing
/// every one of `needles`, and without a panic; returns that line.
pub fn assert_one_line_error(o: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success(), "expected a failure: {}", text(o));
    assert!(!err.contains("panicked"), "panicked: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line expected: {err}");
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error:"),
        "the error is the last line: {err}"
    );
    for n in needles {
        assert!(last.contains(n), "expected `{n}` in: {last}");
    }
    last.to_string()
}

/// A tiny study (tests/search_augment.rs, tests/mpi.rs): 3 baselines and 5 searched trials on
/// rungs of 2 and 6 steps, the top 2 trained on to 6 steps, then 5 policies x 2 seeds of final
/// runs, on a small CNN.
pub const TINY_SEARCH: &str = r#"
name = "tiny"
modality = "vision"
seed = 1
trials = 5
sampler = "tpe"
set = ["train.batch_size=10", "eval.probe_epochs=2", "byol.projector_hidden=64", "byol.predictor_hidden=64", "encoder.channels=[8, 16]", "encoder.strides=[1, 2]", "eval.knn_k=5", "eval.validation_fraction=0.2", "train.log_every=1"]
[objective]
probe = "linear"
labels = "class"
[space]
max_ops = 2
[asha]
min_steps = 2
max_steps = 6
eta = 3
[tpe]
startup_trials = 3
[final]
seeds = [0, 1]
top_k = 2
"#;

/// The journal's events of the study in `out`, as JSON values.
pub fn events(out: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The events of one kind.
pub fn of_kind<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// `ssl train --modality vision` on a CIFAR-10 slice `data` (ImageFolder, e.g.
/// `ssl_test_support::cifar_slice(test, 20, 10)`: 200 training images) on `device`, small: the
/// small CNN with 16-32-64 channels, batch 50 for 2 epochs (8 steps), a checkpoint every 4
/// steps (all kept), a metrics line every step, 2 probe epochs; then `extra` arguments.
pub fn train_small_cifar(
    data: &std::path::Path,
    out: &std::path::Path,
    device: &str,
    extra: &[&str],
) -> Output {
    let mut args = vec![
        "train",
        "--modality",
        "vision",
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        device,
        "--no-progress",
    ];
    for kv in [
        "train.epochs=2",
        "train.batch_size=50",
        "train.checkpoint_every=4",
        "train.keep_checkpoints=10",
        "train.log_every=1",
        "eval.probe_epochs=2",
        "byol.projector_hidden=256",
        "encoder.channels=[16, 32, 64]",
        "encoder.strides=[1, 2, 2]",
    ] {
        args.push("--set");
        args.push(kv);
    }
    args.extend_from_slice(extra);
    ssl(&args)
}

pub mod networks;
