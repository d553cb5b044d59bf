//! End to end: `ssl search-augment` on a real CIFAR-10 slice, killed with SIGKILL in the
//! middle of the study and resumed with `--resume`; the best policy then trains with
//! `ssl train --config best-policy.toml`.

mod common;

use common::{TINY_SEARCH as SEARCH, assert_one_line_error, events, of_kind, ssl, text};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_search_killed_mid_study_resumes_and_its_best_policy_trains() {
    let Some(data) = ssl_test_support::cifar_slice("search_augment", 5, 2) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("tiny.toml");
    std::fs::write(&file, SEARCH).unwrap();
    let out = tmp.path().join("study");
    let args = |resume: bool| {
        let mut a = vec![
            "search-augment".to_string(),
            "--modality".into(),
            "vision".into(),
            "--config".into(),
            file.display().to_string(),
            "--data".into(),
            data.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        if resume {
            a.push("--resume".into());
        }
        a
    };

    // Start the study and SIGKILL it once a few results are in the journal, preferably while
    // a run is going (more starts than results).
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssl"))
        .args(args(false))
        .env_remove("SSL_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let e = events(&out);
        let (starts, results) = (of_kind(&e, "start").len(), of_kind(&e, "result").len());
        if results >= 4 && starts > results {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the study ended before it could be killed: {status}");
        }
        assert!(started.elapsed() < Duration::from_secs(600), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // A journal started by a build before the online probe existed (its base config lacks
    // those keys) resumes: they take their defaults.
    let journal = out.join("journal.jsonl");
    let lines = std::fs::read_to_string(&journal).unwrap();
    let (first, rest) = lines.split_once('\n').unwrap();
    let mut study: serde_json::Value = serde_json::from_str(first).unwrap();
    for key in ["online_probe", "online_probe_lr"] {
        study["base"]["eval"]
            .as_object_mut()
            .unwrap()
            .remove(key)
            .unwrap();
    }
    std::fs::write(&journal, format!("{study}\n{rest}")).unwrap();
    let before = events(&out);
    let before_results: Vec<&serde_json::Value> = of_kind(&before, "result");
    assert!(before_results.len() >= 4);

    // A new study over it is refused; --resume completes it.
    let o = ssl(&args(false).iter().map(String::as_str).collect::<Vec<_>>());
    assert_one_line_error(&o, &["already holds a study", "--resume"]);
    let o = ssl(&args(true).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("interrupted"), "{}", text(&o));

    let after = events(&out);
    // No finished result lost: the journal before the kill is a prefix of the one after
    // (the line the kill may have cut is dropped).
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a, b);
    }
    // No trial rung ran to a result twice.
    let results = of_kind(&after, "result");
    let mut seen = BTreeMap::new();
    for r in &results {
        let key = (r["trial"].as_u64().unwrap(), r["rung"].as_u64().unwrap());
        assert!(
            seen.insert(key, r["score"].clone()).is_none(),
            "{key:?} twice"
        );
    }
    // 3 baselines + 5 searched trials; rungs [2, 6]: 5 at rung 0 plus promotions.
    let trials = of_kind(&after, "trial");
    assert_eq!(trials.len(), 8);
    assert_eq!(
        results.iter().filter(|r| r["rung"] == 0).count(),
        5,
        "every searched trial ran rung 0 once"
    );
    for r in &results {
        let score = r["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score));
        assert_eq!(r["seed"], 1);
    }
    // Trials were scored on the validation split (never the test split) with the
    // policy's own views; the final runs on the test split.
    let trial_cfg = std::fs::read_to_string(out.join("trials/t000/config.toml")).unwrap();
    assert!(trial_cfg.contains("split = \"validation\""), "{trial_cfg}");
    let res: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("trials/default/results.json")).unwrap())
            .unwrap();
    assert_eq!(res["eval_split"], "validation");
    assert_eq!(res["steps"], 6);
    // Finals: the top 2 searched policies and 3 baselines x 2 seeds; both searched ones have
    // a validation score at the full 6 steps.
    let finals = of_kind(&after, "final");
    assert_eq!(finals.len(), 10);
    let mut top: Vec<&str> = finals
        .iter()
        .filter(|f| f["trial"].as_str().unwrap().starts_with('t'))
        .map(|f| f["trial"].as_str().unwrap())
        .collect();
    top.dedup();
    assert_eq!(top.len(), 2, "{top:?}");
    for t in &top {
        let n: u64 = t[1..].parse::<u64>().unwrap() + 3;
        assert!(
            results.iter().any(|r| r["trial"] == n && r["steps"] == 6),
            "{t} has no full-budget validation score"
        );
    }
    let res: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("final/crop-only/seed-1/results.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(res["eval_split"], "test");
    // Every probe says how many held-out samples it scored.
    for p in res["probes"].as_array().unwrap() {
        assert!(p["samples"].as_u64().unwrap() > 0, "{p}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for row in [
        "| best |",
        "| default |",
        "| crop-only |",
        "| random |",
        " ± ",
        "## Transfer: the validation ranking on the test split",
        "of validation and test scores",
        "How well a short rung predicts a longer one",
        "samples scored) and",
        "| linear | class |",
        "| rankme | (no labels) |",
    ] {
        assert!(report.contains(row), "{report}");
    }
    for plot in ["search.svg", "final.svg"] {
        assert!(
            std::fs::read_to_string(out.join(plot))
                .unwrap()
                .contains("<svg")
        );
    }

    // The best policy is a config `ssl train` takes as is, and trains with its views.
    let best = out.join("best-policy.toml");
    let best_text = std::fs::read_to_string(&best).unwrap();
    assert!(
        best_text.contains("overrides, not applied here: train.batch_size=10"),
        "the study's overrides are named, not applied: {best_text}"
    );
    let run = tmp.path().join("train-best");
    let mut train = vec![
        "train".to_string(),
        "--modality".into(),
        "vision".into(),
        "--config".into(),
        best.display().to_string(),
        "--data".into(),
        data.display().to_string(),
        "--out".into(),
        run.display().to_string(),
        "--no-progress".into(),
        "--set".into(),
        "train.epochs=1".into(),
    ];
    // This tiny test trains with the study's overrides (small network, small batch).
    let settings: toml::Table = SEARCH.parse().unwrap();
    for s in settings["set"].as_array().unwrap() {
        train.push("--set".into());
        train.push(s.as_str().unwrap().to_string());
    }
    let o = ssl(&train.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}\n{best_text}", text(&o));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();
    let best_trial = trials
        .iter()
        .find(|t| {
            let name = t["name"].as_str().unwrap();
            report.contains(&format!("Best searched policy: **{name}**"))
        })
        .expect("the report names the best trial");
    assert_eq!(
        r["config"]["augment"]["view1"],
        best_trial["policy"]["view1"]
    );
    assert_eq!(
        r["config"]["augment"]["view2"],
        best_trial["policy"]["view2"]
    );

    // Resuming a finished study changes nothing.
    let o = ssl(&args(true).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(events(&out).len(), after.len());
}

#[test]
fn bad_search_arguments_are_one_line_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("bad.toml");
    std::fs::write(&file, SEARCH.replace("eta = 3", "eta = 1")).unwrap();
    let f = file.to_str().unwrap();
    let o = ssl(&["search-augment", "--modality", "vision", "--config", f]);
    assert_one_line_error(&o, &["asha.eta = 1"]);
    std::fs::write(
        &file,
        SEARCH.replace("max_ops = 2", "max_ops = 2\nops = [\"Rotate\"]"),
    )
    .unwrap();
    let o = ssl(&[
        "search-augment",
        "--modality",
        "vision",
        "--config",
        f,
        "--data",
        "/nonexistent",
    ]);
    assert!(!o.status.success());
    let o = ssl(&["search-augment", "--modality", "audio", "--config", f]);
    assert_one_line_error(&o, &["modality = \"vision\"", "--modality audio"]);
    let o = ssl(&[
        "search-augment",
        "--modality",
        "vision",
        "--devices",
        "cpu,cpu",
    ]);
    assert_one_line_error(&o, &["--devices cpu,cpu", "twice"]);
    let o = ssl(&["search-augment", "--modality", "vision", "--budget", "20x"]);
    assert_one_line_error(&o, &["--budget 20x"]);
    std::fs::write(&file, SEARCH.replace("trials = 5", "trials = 5\ntypo = 1")).unwrap();
    let o = ssl(&["search-augment", "--modality", "vision", "--config", f]);
    assert_one_line_error(&o, &["typo"]);
}

#[test]
fn a_label_free_search_runs_without_labels_and_reports_its_rank_correlation() {
    let Some(data) = ssl_test_support::cifar_slice("search_augment_rankme", 5, 2) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("rankme.toml");
    let search = SEARCH
        .replace(
            "probe = \"linear\"\nlabels = \"class\"",
            "probe = \"rankme\"",
        )
        .replace("trials = 5", "trials = 3")
        .replace("startup_trials = 3", "startup_trials = 2")
        .replace("seeds = [0, 1]", "seeds = [0]");
    std::fs::write(&file, &search).unwrap();
    // Unlabelled: the training images without their class folders.
    let unlabelled = tmp.path().join("unlabelled");
    std::fs::create_dir_all(&unlabelled).unwrap();
    for class in std::fs::read_dir(data.join("train")).unwrap() {
        for f in std::fs::read_dir(class.unwrap().path()).unwrap() {
            let f = f.unwrap().path();
            let name = format!(
                "{}-{}",
                f.parent().unwrap().file_name().unwrap().to_string_lossy(),
                f.file_name().unwrap().to_string_lossy()
            );
            std::fs::copy(&f, unlabelled.join(name)).unwrap();
        }
    }
    for (data, labelled) in [(&unlabelled, false), (&data, true)] {
        let out = tmp.path().join(format!("study-{labelled}"));
        let o = ssl(&[
            "search-augment",
            "--modality",
            "vision",
            "--config",
            file.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--no-progress",
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let report = std::fs::read_to_string(out.join("report.md")).unwrap();
        assert!(
            report.contains("Objective: the effective rank (RankMe)"),
            "{report}"
        );
        assert!(
            report.contains("test effective rank, % of its maximum (%)"),
            "{report}"
        );
        let all = events(&out);
        let results = of_kind(&all, "result");
        assert!(!results.is_empty());
        for r in &results {
            let s = r["score"].as_f64().unwrap();
            assert!(s > 0.0 && s <= 1.0, "a fraction of the maximum rank: {r}");
        }
        if labelled {
            assert!(
                report
                    .contains("Rank correlation (Spearman) of the objective with the linear probe"),
                "{report}"
            );
        } else {
            assert!(
                report.contains("Rank correlation with the linear probe: not measured (0 results"),
                "{report}"
            );
        }
    }
}
