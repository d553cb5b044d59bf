//! Data parallelism over MPI end to end: `mpirun -np 2 ssl train` on a real CIFAR-10 slice
//! against one process with the same global batch, and a rank killed mid-run, then resumed
//! under 2 ranks and under 1. Needs the binary built with `--features mpi` and Open MPI's
//! `mpirun` (`.ci/run` installs both and runs `cargo test --workspace --features ssl/mpi --test
//! mpi`); without them the tests say so loudly and pass, unless `SSL_REQUIRE_MPI=1`.

mod common;

use common::{TINY_SEARCH as SEARCH, events, of_kind};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Whether the MPI tests can run here; panics when they cannot and `SSL_REQUIRE_MPI=1`.
fn mpi_available(test: &str) -> bool {
    let why = if !cfg!(feature = "mpi") {
        Some("this test binary was built without `--features mpi`".to_string())
    } else if Command::new("mpirun")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        Some("no `mpirun` on the PATH (Debian: openmpi-bin)".to_string())
    } else {
        None
    };
    match why {
        None => true,
        Some(why) => {
            if std::env::var("SSL_REQUIRE_MPI").as_deref() == Ok("1") {
                panic!("{test}: {why}, and SSL_REQUIRE_MPI=1");
            }
            eprintln!("\n!!!!!! SKIPPED {test}: {why} !!!!!!\n");
            false
        }
    }
}

/// `mpirun -np ranks ssl <args>` on this machine (as root where CI runs as root), not waited
/// for.
fn mpirun(ranks: usize, args: &[&str]) -> Command {
    let mut cmd = Command::new("mpirun");
    cmd.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "-np",
        &ranks.to_string(),
    ])
    .arg(env!("CARGO_BIN_EXE_ssl"))
    .args(args)
    .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
    .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    // Open MPI's shared-memory transport, no network probing.
    .env("OMPI_MCA_btl", "self,vader")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    cmd
}

/// A short run's arguments on `data` into `out`, with `extra` `--set`s.
fn train_args<'a>(data: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--modality",
        "vision",
        "--data",
        data,
        "--out",
        out,
        "--no-progress",
    ];
    for kv in [
        "train.batch_size=32",
        "train.log_every=1",
        "train.replica_check_every=1",
        "eval.probe_epochs=2",
        "eval.knn_k=10",
        "byol.projector_hidden=128",
        "byol.predictor_hidden=128",
    ] {
        args.extend(["--set", kv]);
    }
    for kv in extra {
        args.extend(["--set", kv]);
    }
    args
}

/// One number of every line of a run's `metrics.jsonl`.
fn metric(run: &Path, key: &str) -> Vec<f64> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()[key]
                .as_f64()
                .unwrap_or_else(|| panic!("no {key} in {l}"))
        })
        .collect()
}

fn losses(run: &Path) -> Vec<f64> {
    metric(run, "loss")
}

fn results(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap()
}

fn output_of(cmd: &mut Command) -> Output {
    cmd.output().expect("mpirun starts")
}

#[test]
fn two_ranks_train_as_one_process_with_the_global_batch() {
    let test = "two_ranks_train_as_one_process_with_the_global_batch";
    if !mpi_available(test) {
        return;
    }
    let Some(data) = ssl_test_support::cifar_slice("mpi", 64, 20) else {
        return;
    };
    let data = data.to_str().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    let (one_s, two_s) = (one.to_str().unwrap(), two.to_str().unwrap());
    let steps = ["train.max_steps=10"];
    let o = common::ssl(&train_args(&data, one_s, &steps));
    assert!(o.status.success(), "{}", common::text(&o));
    let o = output_of(&mut mpirun(2, &train_args(&data, two_s, &steps)));
    let err = common::text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("data parallel: 2 ranks, global batch 32 (2 x 16 per forward pass)"),
        "{err}"
    );
    // Rank 0 alone writes: one metrics line per step, one table.
    let (a, b) = (losses(&one), losses(&two));
    assert_eq!(b.len(), 10, "{b:?}");
    assert_eq!(err.matches("top-1 accuracy").count(), 1, "{err}");
    // `train.replica_check_every=1`: the ranks compared their networks' checksums after every
    // step (a difference would have stopped the run). The losses are the one process's, up to
    // the order of float sums (measured: equal at step 1, within 3e-5 relative at step 10).
    for (step, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= 1e-3 * x.abs(),
            "step {}: loss {y} on 2 ranks, {x} in one process",
            step + 1
        );
    }
    assert_eq!(
        a[0], b[0],
        "the first step's loss is the same to the last bit"
    );
    // The online probe learns the global batch on every rank (the representations and labels
    // are gathered): its accuracy is the one process's, the same at the first step (all-zero
    // weights: the share of class 0 in the global batch) and within two of the 32 samples
    // after it (the features differ by the order of float sums).
    let (pa, pb) = (
        metric(&one, "online_probe_top1"),
        metric(&two, "online_probe_top1"),
    );
    assert_eq!(pa[0], pb[0], "{pa:?} {pb:?}");
    for (x, y) in pa.iter().zip(&pb) {
        assert!((x - y).abs() <= 2.0 / 32.0 + 1e-9, "{pa:?} {pb:?}");
    }
    let r = results(&two);
    assert_eq!(
        (r["ranks"].as_u64(), r["sync_batch_norm"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(r["global_batch"].as_u64(), Some(32));
    // One checksum comparison after each of the 10 steps, all equal.
    assert_eq!(r["replica_checks"].as_u64(), Some(10));
}

/// Waits for `path` up to `limit`.
fn wait_for(path: &Path, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if path.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// The process ids of the ranks of the run writing into `out`, by rank (Linux: `/proc`).
fn rank_pids(out: &Path) -> Vec<(usize, u32)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let ours = args.first().is_some_and(|a| a.ends_with(b"ssl"))
            && args.iter().any(|a| *a == out.to_str().unwrap().as_bytes());
        if !ours {
            continue;
        }
        let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
        for var in environ.split(|b| *b == 0) {
            if let Some(rank) = var.strip_prefix(b"OMPI_COMM_WORLD_RANK=") {
                found.push((String::from_utf8_lossy(rank).parse().unwrap(), pid));
            }
        }
    }
    found.sort();
    found
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_killed_rank_stops_the_run_which_resumes_under_two_ranks_or_one() {
    let test = "a_killed_rank_stops_the_run_which_resumes_under_two_ranks_or_one";
    if !mpi_available(test) {
        return;
    }
    let Some(data) = ssl_test_support::cifar_slice("mpi", 64, 20) else {
        return;
    };
    let data = data.to_str().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let run_s = run.to_str().unwrap();
    // 6 epochs of 20 steps: the kill comes right after step 10.
    let settings = [
        "train.epochs=6",
        "train.checkpoint_every=5",
        "train.keep_checkpoints=10",
    ];
    let args = train_args(&data, run_s, &settings);
    let child = mpirun(2, &args).spawn().expect("mpirun starts");
    assert!(
        wait_for(
            &run.join("checkpoints/step-00000010"),
            Duration::from_secs(120)
        ),
        "no checkpoint of step 10"
    );
    let pids = rank_pids(&run);
    let rank1 = pids
        .iter()
        .find(|(rank, _)| *rank == 1)
        .unwrap_or_else(|| panic!("rank 1 not found among {pids:?}"))
        .1;
    let killed = Instant::now();
    Command::new("kill")
        .args(["-9", &rank1.to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let waited = killed.elapsed();
    let err = common::text(&o);
    assert!(!o.status.success(), "{err}");
    assert!(
        waited < Duration::from_secs(30),
        "the job took {waited:?} to end"
    );
    // The surviving rank says what happened in one line (mpirun adds its own report).
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("error: rank 0 of 2"))
        .collect();
    assert_eq!(ours.len(), 1, "{err}");
    assert!(ours[0].contains("--resume"), "{}", ours[0]);
    // The checkpoints written are whole: resume under 2 ranks, and a copy under 1.
    let copy = tmp.path().join("copy");
    copy_dir(&run, &copy);
    let mut resumed = args.clone();
    resumed.push("--resume");
    let o = output_of(&mut mpirun(2, &resumed));
    assert!(o.status.success(), "{}", common::text(&o));
    assert_eq!(results(&run)["steps"].as_u64(), Some(120));
    let copy_s = copy.to_str().unwrap();
    let mut alone = train_args(&data, copy_s, &settings);
    alone.push("--resume");
    let o = common::ssl(&alone);
    let err = common::text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(
            "the checkpoint was written by 2 ranks, this run has one process: the global batch stays 32"
        ),
        "{err}"
    );
    assert_eq!(results(&copy)["steps"].as_u64(), Some(120));
}

/// `search-augment` of the study `text` (written into `dir`) on `data` into `study`.
fn tiny_study_args(dir: &Path, data: &Path, study: &Path, text: &str, resume: bool) -> Vec<String> {
    let file = dir.join("tiny.toml");
    std::fs::write(&file, text).unwrap();
    let mut a: Vec<String> = [
        "search-augment",
        "--modality",
        "vision",
        "--config",
        file.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        study.to_str().unwrap(),
        "--no-progress",
    ]
    .map(String::from)
    .to_vec();
    if resume {
        a.push("--resume".into());
    }
    a
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn a_study_over_three_ranks_runs_every_trial_once_also_after_a_worker_is_killed() {
    let test = "a_study_over_three_ranks_runs_every_trial_once_also_after_a_worker_is_killed";
    if !mpi_available(test) {
        return;
    }
    let Some(data) = ssl_test_support::cifar_slice("mpi", 5, 2) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("study");
    let args = |resume: bool| tiny_study_args(tmp.path(), &data, &study, SEARCH, resume);
    // Kill worker rank 2 once a few results are in and a run is under way.
    let child = mpirun(3, &strs(&args(false)))
        .spawn()
        .expect("mpirun starts");
    let started = Instant::now();
    let pids = loop {
        let e = events(&study);
        let (starts, results) = (of_kind(&e, "start").len(), of_kind(&e, "result").len());
        let pids = rank_pids(&study);
        if results >= 2 && starts > results && pids.len() == 3 {
            break pids;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "no progress");
        std::thread::sleep(Duration::from_millis(10));
    };
    Command::new("kill")
        .args(["-9", &pids[2].1.to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(!o.status.success(), "{}", common::text(&o));
    let before = events(&study);
    // --resume under 3 ranks completes the study.
    let o = output_of(&mut mpirun(3, &strs(&args(true))));
    let err = common::text(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("ranks 1 to 2 run its trials"), "{err}");
    let after = events(&study);
    // Nothing finished before the kill was lost or run again.
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a, b);
    }
    let results = of_kind(&after, "result");
    let mut seen = std::collections::BTreeSet::new();
    for r in &results {
        let key = (r["trial"].as_u64().unwrap(), r["rung"].as_u64().unwrap());
        assert!(seen.insert(key), "{key:?} twice in the journal");
    }
    assert_eq!(
        of_kind(&after, "trial").len(),
        8,
        "3 baselines and 5 searched trials"
    );
    assert_eq!(
        results.iter().filter(|r| r["rung"] == 0).count(),
        5,
        "every searched trial ran rung 0 exactly once"
    );
    assert_eq!(of_kind(&after, "final").len(), 10, "5 policies x 2 seeds");
    assert!(study.join("report.md").is_file());
}

#[test]
fn replicas_start_equal_with_the_rollback_policy() {
    // `train.on_nan = "rollback"` writes a checkpoint before the first step: every rank must
    // hold the same networks by then (the predictor is drawn lazily).
    let test = "replicas_start_equal_with_the_rollback_policy";
    if !mpi_available(test) {
        return;
    }
    let Some(data) = ssl_test_support::cifar_slice("mpi", 64, 20) else {
        return;
    };
    let data = data.to_str().unwrap().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let settings = ["train.max_steps=3", "train.on_nan=\"rollback\""];
    let o = output_of(&mut mpirun(
        2,
        &train_args(&data, run.to_str().unwrap(), &settings),
    ));
    assert!(o.status.success(), "{}", common::text(&o));
    assert_eq!(results(&run)["steps"].as_u64(), Some(3));
}

#[test]
fn a_study_that_cannot_start_ends_every_rank() {
    // A study refused on rank 0 (a label set the data lacks) must not leave the workers
    // waiting for trials.
    let test = "a_study_that_cannot_start_ends_every_rank";
    if !mpi_available(test) {
        return;
    }
    let Some(data) = ssl_test_support::cifar_slice("mpi", 5, 2) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let bad = SEARCH.replace("labels = \"class\"", "labels = \"nope\"");
    let args = tiny_study_args(tmp.path(), &data, &tmp.path().join("study"), &bad, false);
    let start = Instant::now();
    let o = output_of(&mut mpirun(3, &strs(&args)));
    let err = common::text(&o);
    assert!(!o.status.success(), "{err}");
    assert!(start.elapsed() < Duration::from_secs(60), "{err}");
    assert!(err.contains("objective.labels = \"nope\""), "{err}");
}
