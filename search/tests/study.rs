//! The study loop with a stand-in runner (no training): successive halving, baselines, the
//! final comparison, the journal, and resuming after a crash at any point.

use ssl_search::SearchError;
use ssl_search::journal::{Event, read_events};
use ssl_search::params::{Dim, ParamSpace, Params};
use ssl_search::settings::SearchSettings;
use ssl_search::study::{FinalJob, Outcome, Plan, RunFailure, Runner, TrialJob, run_study};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

fn settings(trials: usize) -> SearchSettings {
    SearchSettings::parse(
        &format!(
            r#"
            name = "toy"
            modality = "toy"
            trials = {trials}
            seed = 3
            [asha]
            min_steps = 4
            max_steps = 36
            eta = 3
            [tpe]
            startup_trials = 4
            [final]
            seeds = [0, 1, 2]
            "#
        ),
        "toy.toml",
    )
    .unwrap()
}

fn space() -> ParamSpace {
    let mut s = ParamSpace::default();
    s.push("x", Dim::Float { lo: 0.0, hi: 1.0 });
    s.push("k", Dim::Categorical { n: 3 });
    s
}

/// Score: best at x = 0.7, k = 1, growing with the steps trained; baselines fixed.
fn score(policy: &serde_json::Value, steps: usize) -> f64 {
    match policy["baseline"].as_str() {
        Some("default") => 0.6,
        Some("crop-only") => 0.4,
        Some(_) => 0.5,
        None => {
            let x = policy["x"].as_f64().unwrap();
            let k = policy["k"].as_f64().unwrap();
            (0.8 - (x - 0.7).abs() - if k == 1.0 { 0.0 } else { 0.1 })
                * (steps as f64 / 36.0).sqrt()
        }
    }
}

/// Runs jobs with the stand-in score; crashes (a fatal error, after the job's start is in
/// the journal) when the job counter reaches `crash_at`.
struct Toy {
    jobs: AtomicUsize,
    crash_at: usize,
    log: Mutex<Vec<(String, usize)>>,
    workers: usize,
    busy: AtomicUsize,
    most_busy: AtomicUsize,
}

impl Toy {
    fn new(crash_at: usize) -> Self {
        Self {
            jobs: AtomicUsize::new(0),
            crash_at,
            log: Mutex::new(Vec::new()),
            workers: 1,
            busy: AtomicUsize::new(0),
            most_busy: AtomicUsize::new(0),
        }
    }
}

impl Runner for Toy {
    fn workers(&self) -> usize {
        self.workers
    }
    fn trial(&self, job: &TrialJob, _: usize) -> Result<Outcome, RunFailure> {
        if self.jobs.fetch_add(1, Ordering::SeqCst) + 1 == self.crash_at {
            return Err(RunFailure::Fatal(SearchError::Settings(
                "simulated crash".into(),
            )));
        }
        self.log.lock().unwrap().push((job.name.clone(), job.steps));
        if self.workers > 1 {
            // Hold the device a moment so that the other workers' jobs overlap with this one.
            let now = self.busy.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_busy.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(30));
            self.busy.fetch_sub(1, Ordering::SeqCst);
        }
        if job.policy["x"].as_f64() == Some(-1.0) {
            return Err(RunFailure::Policy("non-finite loss".into()));
        }
        Ok(Outcome {
            score: score(&job.policy, job.steps),
            detail: serde_json::json!({ "random_init_score": 0.3 }),
        })
    }
    fn final_run(&self, job: &FinalJob, _: usize) -> Result<Outcome, RunFailure> {
        if self.jobs.fetch_add(1, Ordering::SeqCst) + 1 == self.crash_at {
            return Err(RunFailure::Fatal(SearchError::Settings(
                "simulated crash".into(),
            )));
        }
        self.log
            .lock()
            .unwrap()
            .push((format!("final-{}-{}", job.policy_name, job.seed), job.steps));
        Ok(Outcome {
            score: score(&job.policy, job.steps) + job.seed as f64 * 0.01,
            detail: serde_json::json!({ "random_init_score": 0.3 }),
        })
    }
}

fn decode(p: &Params) -> Result<(serde_json::Value, String), SearchError> {
    Ok((
        serde_json::json!({ "x": p["x"], "k": p["k"] }),
        format!("x {:.2} k {}", p["x"], p["k"]),
    ))
}

fn plan(trials: usize) -> Plan<'static> {
    Plan {
        modality: "toy".into(),
        settings: settings(trials),
        space: space(),
        baselines: ["default", "crop-only", "random"]
            .iter()
            .map(|b| {
                (
                    b.to_string(),
                    serde_json::json!({ "baseline": b }),
                    b.to_string(),
                )
            })
            .collect(),
        decode: &decode,
        ops: vec![("x".into(), "the toy's x".into())],
        base: serde_json::json!({ "lr": 0.1 }),
        normalize_base: None,
    }
}

fn write_policy(policy: &serde_json::Value, path: &Path) -> Result<(), SearchError> {
    std::fs::write(path, policy.to_string()).unwrap();
    Ok(())
}

/// (trial, rung, score) of every result event, and the final scores, from a journal.
fn results(
    out: &Path,
) -> (
    Vec<(usize, usize, Option<f64>)>,
    BTreeMap<(String, u64), f64>,
) {
    let (events, _) = read_events(&out.join("journal.jsonl")).unwrap();
    let mut r = Vec::new();
    let mut f = BTreeMap::new();
    for e in events {
        match e {
            Event::Result {
                trial, rung, score, ..
            } => r.push((trial, rung, score)),
            Event::Final {
                policy,
                seed,
                score,
                ..
            } => {
                f.insert((policy, seed), score.expect("a final score"));
            }
            _ => {}
        }
    }
    (r, f)
}

#[test]
fn a_study_runs_baselines_halves_trials_and_compares_finals() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(9);
    let toy = Toy::new(usize::MAX);
    let summary = run_study(&plan, &toy, dir.path(), false, &write_policy).unwrap();
    let (results, finals) = results(dir.path());
    // Baselines (trials 0-2) once each at the full 36 steps.
    for t in 0..3 {
        let r: Vec<_> = results.iter().filter(|r| r.0 == t).collect();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].1, 2);
    }
    // Rungs 4, 12, 36: 9 trials at rung 0; asynchronous halving promotes whoever is in the
    // top third of a rung at the time, so at least floor(9 / 3) = 3 reach rung 1 (more when
    // the ranking changes as results arrive) and at least one reaches rung 2.
    let per_rung = |k: usize| results.iter().filter(|r| r.0 >= 3 && r.1 == k).count();
    assert_eq!(per_rung(0), 9);
    assert!(per_rung(1) >= 3 && per_rung(1) < 9, "{}", per_rung(1));
    assert!(
        per_rung(2) >= 1 && per_rung(2) <= per_rung(1) / 2 + 1,
        "{}",
        per_rung(2)
    );
    // Every promotion, when it started, was in the top floor(n / eta) of its rung's results.
    let (events, _) = read_events(&dir.path().join("journal.jsonl")).unwrap();
    let mut finished: Vec<Vec<(usize, f64)>> = vec![Vec::new(); 3];
    for e in &events {
        match e {
            Event::Result {
                trial,
                rung,
                score: Some(s),
                ..
            } if *trial >= 3 => finished[*rung].push((*trial, *s)),
            Event::Start {
                trial,
                rung,
                top_k: false,
                ..
            } if *trial >= 3 && *rung > 0 => {
                let mut below = finished[rung - 1].clone();
                below.sort_by(|a, b| b.1.total_cmp(&a.1));
                let quota = below.len() / 3;
                assert!(
                    below[..quota].iter().any(|(t, _)| t == trial),
                    "trial {trial} promoted to rung {rung} outside the top {quota} of {below:?}"
                );
            }
            _ => {}
        }
    }
    // No (trial, rung) twice.
    let mut keys: Vec<(usize, usize)> = results.iter().map(|r| (r.0, r.1)).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), results.len());
    // Finals: the top 3 searched policies (`best` and two by their trial's name) and the 3
    // baselines, 3 seeds each.
    assert_eq!(finals.len(), 18);
    let (best_name, best_policy, _) = summary.best.unwrap();
    assert!(best_name.starts_with('t'));
    // Each of the top 3 has a validation score at the full budget (those that successive
    // halving stopped early were trained on to it), and the best is the best there.
    let mut top: Vec<(String, usize)> = Vec::new();
    for e in &events {
        if let Event::Final { policy, trial, .. } = e
            && !["default", "crop-only", "random"].contains(&policy.as_str())
            && !top.iter().any(|(p, _)| p == policy)
        {
            let t: usize = trial[1..].parse::<usize>().unwrap() + 3;
            top.push((policy.clone(), t));
        }
    }
    assert_eq!(top.len(), 3, "{top:?}");
    assert_eq!(top[0].0, "best");
    assert_eq!(format!("t{:03}", top[0].1 - 3), best_name);
    let full = |t: usize| {
        results
            .iter()
            .find(|r| r.0 == t && r.1 == 2)
            .and_then(|r| r.2)
            .unwrap_or_else(|| panic!("trial {t} has no full-budget score"))
    };
    for (_, t) in &top[1..] {
        assert!(full(top[0].1) >= full(*t));
    }
    // Every other searched trial that reached the full budget ranks below them.
    for r in results.iter().filter(|r| r.0 >= 3 && r.1 == 2) {
        if !top.iter().any(|(_, t)| *t == r.0) {
            assert!(r.2.unwrap() <= full(top[2].1));
        }
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("best-policy.toml")).unwrap(),
        best_policy.to_string()
    );
    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(report.contains("| best |"), "{report}");
    // The toy's scores rank the same on both splits.
    assert!(
        report.contains("Rank correlation (Spearman) of validation and test scores over these 6 policies: **1.00**"),
        "{report}"
    );
    assert!(report.contains("Spearman's rho of the searched trials' scores at both rungs"));
    assert!(
        report.contains("| crop-only | 41.00 ± 1.00 | 3 |"),
        "{report}"
    );
    for f in ["search.svg", "final.svg"] {
        assert!(
            std::fs::read_to_string(dir.path().join(f))
                .unwrap()
                .contains("<svg")
        );
    }
    // A journal written before `final.top_k` existed (its settings lack the key) resumes: the
    // key takes its default.
    let journal = dir.path().join("journal.jsonl");
    let text = std::fs::read_to_string(&journal).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    let mut study: serde_json::Value = serde_json::from_str(first).unwrap();
    study["settings"]["final"]
        .as_object_mut()
        .unwrap()
        .remove("top_k")
        .unwrap();
    std::fs::write(&journal, format!("{study}\n{rest}")).unwrap();
    // A finished study re-run with --resume does nothing new.
    let again = Toy::new(usize::MAX);
    run_study(&plan, &again, dir.path(), true, &write_policy).unwrap();
    assert!(again.log.lock().unwrap().is_empty());
    assert_eq!(self::results(dir.path()).0.len(), results.len());
}

#[test]
fn a_crashed_study_resumes_without_losing_or_repeating_a_finished_trial() {
    let reference_dir = tempfile::tempdir().unwrap();
    let plan = plan(9);
    let reference = Toy::new(usize::MAX);
    run_study(
        &plan,
        &reference,
        reference_dir.path(),
        false,
        &write_policy,
    )
    .unwrap();
    let (ref_results, ref_finals) = results(reference_dir.path());
    let ref_log = reference.log.lock().unwrap().clone();

    // Crash at several points: during a baseline, a rung-0 trial, a promotion, a top-k trial
    // trained on to the full budget, a final run.
    // The last trial job at the full 36 steps is a top-k trial trained on to it (the journal
    // marks those starts).
    let (ref_events, _) = read_events(&reference_dir.path().join("journal.jsonl")).unwrap();
    assert!(
        ref_events
            .iter()
            .any(|e| matches!(e, Event::Start { top_k: true, .. }))
    );
    let completion = ref_log
        .iter()
        .rposition(|j| j.0.starts_with('t') && j.1 == 36)
        .unwrap()
        + 1;
    for crash_at in [2, 6, 12, completion, 19, 30] {
        let dir = tempfile::tempdir().unwrap();
        let first = Toy::new(crash_at);
        let err = run_study(&plan, &first, dir.path(), false, &write_policy).unwrap_err();
        assert!(err.to_string().contains("simulated crash"));
        let before = results(dir.path()).0;
        // Resuming without --resume is refused; with it the study completes.
        assert!(
            run_study(
                &plan,
                &Toy::new(usize::MAX),
                dir.path(),
                false,
                &write_policy
            )
            .is_err()
        );
        let second = Toy::new(usize::MAX);
        run_study(&plan, &second, dir.path(), true, &write_policy).unwrap();
        let (after, finals) = results(dir.path());
        // Nothing finished before the crash ran again ...
        let first_log = first.log.lock().unwrap().clone();
        for job in second.log.lock().unwrap().iter() {
            assert!(
                !first_log.contains(job),
                "crash at {crash_at}: {job:?} ran twice"
            );
        }
        // ... nothing was lost, and the study is the uninterrupted one.
        assert_eq!(&after[..before.len()], &before[..]);
        assert_eq!(after, ref_results, "crash at {crash_at}");
        assert_eq!(finals, ref_finals);
        let mut all = first_log;
        all.extend(second.log.lock().unwrap().iter().cloned());
        assert_eq!(
            all, ref_log,
            "crash at {crash_at}: the same jobs in the same order"
        );
    }
}

#[test]
fn a_kill_during_a_journal_write_loses_only_that_line() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(5);
    let first = Toy::new(5);
    run_study(&plan, &first, dir.path(), false, &write_policy).unwrap_err();
    // Cut the journal in the middle of its last line.
    let path = dir.path().join("journal.jsonl");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    run_study(
        &plan,
        &Toy::new(usize::MAX),
        dir.path(),
        true,
        &write_policy,
    )
    .unwrap();
    let (results, finals) = results(dir.path());
    let mut keys: Vec<(usize, usize)> = results.iter().map(|r| (r.0, r.1)).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n);
    // The top 3 searched policies and 3 baselines, 3 seeds each.
    assert_eq!(finals.len(), 18);
}

#[test]
fn resume_refuses_other_settings_and_a_failed_trial_does_not_stop_the_study() {
    let dir = tempfile::tempdir().unwrap();
    run_study(&plan(3), &Toy::new(3), dir.path(), false, &write_policy).unwrap_err();
    let err = run_study(
        &plan(4),
        &Toy::new(usize::MAX),
        dir.path(),
        true,
        &write_policy,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("other settings"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = run_study(
        &plan(3),
        &Toy::new(usize::MAX),
        empty.path(),
        true,
        &write_policy,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no study"), "{err}");

    // Every searched policy fails: the study still finishes, with the baselines compared.
    fn failing(_: &Params) -> Result<(serde_json::Value, String), SearchError> {
        Ok((serde_json::json!({ "x": -1.0, "k": 0.0 }), "bad".into()))
    }
    let mut p = plan(3);
    p.decode = &failing;
    let dir = tempfile::tempdir().unwrap();
    let summary = run_study(&p, &Toy::new(usize::MAX), dir.path(), false, &write_policy).unwrap();
    assert!(summary.best.is_none());
    assert_eq!(summary.finals.len(), 3);
    let (results, _) = results(dir.path());
    assert_eq!(results.iter().filter(|r| r.2.is_none()).count(), 3);
}

#[test]
fn trials_run_on_several_devices_at_once_without_running_anything_twice() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(12);
    let mut toy = Toy::new(usize::MAX);
    toy.workers = 3;
    let summary = run_study(&plan, &toy, dir.path(), false, &write_policy).unwrap();
    assert!(toy.most_busy.load(Ordering::SeqCst) >= 2, "jobs overlapped");
    let (results, finals) = results(dir.path());
    let mut keys: Vec<(usize, usize)> = results.iter().map(|r| (r.0, r.1)).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "no (trial, rung) twice");
    assert_eq!(results.iter().filter(|r| r.0 >= 3 && r.1 == 0).count(), 12);
    assert!(
        results.iter().any(|r| r.1 == 2 && r.0 >= 3),
        "a trial reached the top rung"
    );
    assert_eq!(finals.len(), 18);
    assert!(summary.best.is_some());
}

#[test]
fn a_kill_between_a_trials_creation_and_its_first_run_loses_nothing() {
    let reference_dir = tempfile::tempdir().unwrap();
    let plan = plan(9);
    run_study(
        &plan,
        &Toy::new(usize::MAX),
        reference_dir.path(),
        false,
        &write_policy,
    )
    .unwrap();
    let (ref_results, ref_finals) = results(reference_dir.path());
    let text = std::fs::read_to_string(reference_dir.path().join("journal.jsonl")).unwrap();
    // Keep the journal up to (and with) the creation of trial 6, as a kill right after that
    // line would leave it.
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines
        .iter()
        .position(|l| l.contains("\"event\":\"trial\"") && l.contains("\"trial\":6,"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("journal.jsonl"),
        lines[..=cut].join("\n") + "\n",
    )
    .unwrap();
    run_study(
        &plan,
        &Toy::new(usize::MAX),
        dir.path(),
        true,
        &write_policy,
    )
    .unwrap();
    let (after, finals) = results(dir.path());
    assert_eq!(after, ref_results);
    assert_eq!(finals, ref_finals);
}

#[test]
fn resume_names_the_settings_that_differ() {
    let dir = tempfile::tempdir().unwrap();
    run_study(&plan(3), &Toy::new(3), dir.path(), false, &write_policy).unwrap_err();
    let mut other = plan(3);
    other.settings.asha.eta = 2;
    other.base = serde_json::json!({ "lr": 0.2 });
    let err = run_study(
        &other,
        &Toy::new(usize::MAX),
        dir.path(),
        true,
        &write_policy,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("asha.eta: 3 -> 2"), "{err}");
    assert!(err.contains("base config: lr: 0.1 -> 0.2"), "{err}");
    // --resume where there is no study leaves nothing behind.
    let empty = tempfile::tempdir().unwrap();
    let missing = empty.path().join("none");
    let err = run_study(
        &plan(3),
        &Toy::new(usize::MAX),
        &missing,
        true,
        &write_policy,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no study"), "{err}");
    assert!(!missing.join("journal.jsonl").exists());
}

#[test]
fn a_failed_final_run_is_recorded_and_the_study_finishes() {
    struct FailsFinalSeed1(Toy);
    impl Runner for FailsFinalSeed1 {
        fn workers(&self) -> usize {
            1
        }
        fn trial(&self, job: &TrialJob, w: usize) -> Result<Outcome, RunFailure> {
            self.0.trial(job, w)
        }
        fn final_run(&self, job: &FinalJob, w: usize) -> Result<Outcome, RunFailure> {
            if job.seed == 1 && job.policy_name == "random" {
                return Err(RunFailure::Policy("non-finite loss".into()));
            }
            self.0.final_run(job, w)
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let summary = run_study(
        &plan(3),
        &FailsFinalSeed1(Toy::new(usize::MAX)),
        dir.path(),
        false,
        &write_policy,
    )
    .unwrap();
    // 3 searched trials: all three are the top 3, beside the 3 baselines.
    assert_eq!(summary.finals.len(), 6);
    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(report.contains("1: failed"), "{report}");
    assert!(report.contains("| random | 51.00 ± 1.41 | 2 |"), "{report}");
}
