//! End to end, on slices of the real CIFAR-10: runs that fail say so (collapse warnings from the
//! effective rank and the spread, known mistakes in the config, a trained encoder below its
//! random-init twin), one process per run folder, and SIGTERM leaves a checkpoint from which
//! `--resume` gives exactly the uninterrupted run.

mod common;

use common::{assert_one_line_error, ssl, text};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn results(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("results.json")).expect("results.json"))
        .expect("results.json parses")
}

fn warnings(run: &Path) -> Vec<String> {
    results(run)["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

/// The default vision config (small CNN, batch 128, projection 128) on `data`, shortened.
fn train(data: &Path, run: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "train",
        "--modality",
        "vision",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--no-progress",
        "--set",
        "eval.probe_epochs=3",
        "--set",
        "eval.knn_k=20",
    ];
    args.extend_from_slice(extra);
    ssl(&args)
}

#[test]
fn failed_runs_warn_and_a_healthy_run_does_not() {
    let Some(data) = ssl_test_support::cifar_slice("failed_runs_warn", 100, 10) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // 1,000 images, batch 128: 7 steps an epoch.
    let short = ["--set", "train.epochs=3", "--set", "train.log_every=5"];

    // AdamW at a LARS-sized rate (byol-pytorch #44): a config warning at once, then
    // dimensional collapse while training.
    let run = tmp.path().join("adamw");
    let mut args = short.to_vec();
    args.extend([
        "--set",
        "optim.optimizer=\"adamw\"",
        "--set",
        "optim.base_lr=0.2",
    ]);
    let o = train(&data, &run, &args);
    assert!(o.status.success(), "{}", text(&o));
    let w = warnings(&run);
    assert!(
        w[0].contains("gives AdamW a peak learning rate of 0.100"),
        "{w:?}"
    );
    assert!(
        w.iter().any(|w| w.starts_with("dimensional collapse")),
        "{w:?}"
    );
    assert!(
        text(&o).contains("warning(s) about this run"),
        "{}",
        text(&o)
    );

    // The no-predictor ablation (the paper's Table 5b): the spread of the projections shrinks.
    let run = tmp.path().join("no-predictor");
    let o = train(
        &data,
        &run,
        &[
            "--set",
            "byol.predictor=false",
            "--set",
            "train.epochs=6",
            "--set",
            "train.log_every=5",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let w = warnings(&run);
    assert!(
        w.iter()
            .any(|w| w.starts_with("the representation is collapsing")
                || w.starts_with("dimensional collapse")),
        "{w:?}"
    );

    // The default config over the same steps: no collapse warning, no config warning.
    let run = tmp.path().join("healthy");
    let o = train(&data, &run, &short);
    assert!(o.status.success(), "{}", text(&o));
    let w = warnings(&run);
    assert!(
        w.iter()
            .all(|w| w.starts_with("the trained encoder scores below")),
        "{w:?}"
    );
    let m = results(&run);
    assert!(m["final_effective_rank"].as_f64().unwrap() > 12.8, "{m}");

    // tau_base in the `1 - tau` convention is said at once.
    let run = tmp.path().join("tau");
    let o = train(
        &data,
        &run,
        &["--set", "byol.tau_base=0.01", "--set", "train.max_steps=1"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("warning: byol.tau_base = 0.01") && text(&o).contains("would mean 0.99"),
        "{}",
        text(&o)
    );
    assert!(warnings(&run)[0].starts_with("byol.tau_base = 0.01"));
}

/// `ssl train` of `run` on `data`: 64 steps (long enough that the run is still going while the
/// test starts a second process and signals), a metrics line per step, no periodic checkpoint.
fn run_args(data: &Path, run: &Path) -> Vec<String> {
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
        "train.epochs=8",
        "train.batch_size=25",
        "train.checkpoint_every=0",
        "train.log_every=1",
        "eval.probe_epochs=2",
        "byol.projector_hidden=128",
    ] {
        a.push("--set".into());
        a.push(kv.into());
    }
    a
}

fn metric_lines(run: &Path) -> usize {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Waits until `run` has logged `steps` steps (or the child ended, or a minute passed).
fn wait_for_steps(child: &mut std::process::Child, run: &Path, steps: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric_lines(run) < steps
        && child.try_wait().unwrap().is_none()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn(args: &[String], resume: bool) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_ssl"))
        .args(args)
        .args(if resume { vec!["--resume"] } else { vec![] })
        .env_remove("SSL_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends `signal` (libc's number) to `child`, without needing a `kill` program on the machine.
fn signal(child: &std::process::Child, signal: i32) {
    let pid = i32::try_from(child.id()).expect("pid fits");
    // SAFETY: kill(2) with a pid this test spawned and a valid signal number.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(rc, 0, "kill({pid}, {signal})");
}

#[test]
fn a_run_folder_has_one_owner_and_sigterm_checkpoints_for_an_exact_resume() {
    let Some(data) = ssl_test_support::cifar_slice("sigterm_and_lock", 20, 10) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let metrics = |run: &Path| -> Vec<String> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!("{} {} {} {}", v["step"], v["loss"], v["lr"], v["tau"])
            })
            .collect()
    };
    let full = tmp.path().join("full");
    let o = Command::new(env!("CARGO_BIN_EXE_ssl"))
        .args(run_args(&data, &full))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(metrics(&full).len(), 64);

    let run = tmp.path().join("interrupted");
    let args = run_args(&data, &run);
    let mut child = spawn(&args, false);
    wait_for_steps(&mut child, &run, 5);
    // A second process on the same folder is refused, naming the owner.
    let o = Command::new(env!("CARGO_BIN_EXE_ssl"))
        .args(&args)
        .arg("--resume")
        .output()
        .unwrap();
    assert_one_line_error(&o, &["is in use by process", &child.id().to_string()]);
    signal(&child, libc::SIGTERM);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(143), "{err}");
    assert!(
        err.contains("stopped by SIGTERM after optimizer step"),
        "{err}"
    );
    assert!(
        err.contains("resume with: ") && err.contains("--resume"),
        "{err}"
    );
    // The checkpoint is the last logged step, though no periodic checkpoint was due.
    let logged = metric_lines(&run);
    assert!((5..62).contains(&logged), "stopped mid-run: {logged}");
    let ckpts: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(ckpts, [format!("step-{logged:08}")], "{err}");
    assert!(!run.join("results.json").exists());

    // Killed outright (SIGKILL: no clean-up), the lock it leaves is taken over on resume.
    let mut child = spawn(&args, true);
    wait_for_steps(&mut child, &run, logged + 2);
    signal(&child, libc::SIGKILL);
    let _ = child.wait();
    let o = Command::new(env!("CARGO_BIN_EXE_ssl"))
        .args(&args)
        .arg("--resume")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("which is gone; taking it over"),
        "{}",
        text(&o)
    );
    assert_eq!(
        metrics(&run),
        metrics(&full),
        "bit-identical after SIGTERM, SIGKILL and resume"
    );
    assert_eq!(results(&run)["probes"], results(&full)["probes"]);
}
