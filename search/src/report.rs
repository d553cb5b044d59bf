//! The study report, rebuilt from the journal alone: `report.md` (settings, every trial,
//! the baselines at full fidelity, the final comparison with mean and std over seeds),
//! `search.svg` (validation score of every finished rung against study time) and `final.svg`
//! (test score per policy and seed).

use crate::SearchError;
use crate::journal::{Event, read_events};
use crate::plot::{ScorePoint, final_comparison, search_scores};
use crate::settings::SearchSettings;
use crate::stats::{mean_std, spearman};
use crate::transfer::{PolicyScores, rung_agreement, separation, validation_test_correlation};
use std::path::Path;

struct TrialView {
    name: String,
    baseline: bool,
    description: String,
    /// (rung, steps, score, at_seconds, state)
    results: Vec<(usize, usize, Option<f64>, f64, String)>,
    /// The linear probe's top-1 on the first label set of each result, when it had labels
    /// (beside a label-free objective, for the rank correlation).
    linear: Vec<Option<f64>>,
    /// Every probe of each result: ((probe, labels), trained top-1).
    probes: Vec<Vec<((String, String), f64)>>,
    /// Trained on to the full budget for the final comparison (a top-k trial that successive
    /// halving had stopped).
    top_k: bool,
}

/// Final runs per policy, in first-appearance order: (policy, [(seed, score, random-init score)]).
type Finals = Vec<(String, Vec<(u64, Option<f64>, Option<f64>)>)>;

/// Every probe of every final run: (policy, probe, labels) -> [(trained, random init)].
type FinalProbes = Vec<((String, String, String), Vec<(f64, Option<f64>)>)>;

/// How well a label-free objective ranks the trials as the linear probe does: Spearman's rho
/// over every finished result that also has a linear probe (the data had labels), or a
/// sentence saying why it cannot be told.
fn rank_correlation_note(trials: &[TrialView]) -> String {
    let (mut objective, mut linear) = (Vec::new(), Vec::new());
    for t in trials {
        for (r, l) in t.results.iter().zip(&t.linear) {
            if let (Some(o), Some(l)) = (r.2, l) {
                objective.push(o);
                linear.push(*l);
            }
        }
    }
    match spearman(&objective, &linear) {
        Some(rho) => format!(
            "\nRank correlation (Spearman) of the objective with the linear probe's top-1 (first label set) over the {} results that have both: {rho:.2}.\n",
            objective.len()
        ),
        None => format!(
            "\nRank correlation with the linear probe: not measured ({} results with a linear probe; it needs 3 and labels in the data).\n",
            objective.len()
        ),
    }
}

/// Writes `report.md`, `search.svg` and `final.svg` in `out` from `out/journal.jsonl`, for a
/// study of `modality` with `settings`; `ops` are the searchable ops and what their magnitude
/// sets (listed in the report when not empty).
///
/// # Errors
/// [`SearchError`] when the journal cannot be read or a file cannot be written.
pub fn write_report(
    out: &Path,
    modality: &str,
    settings: &SearchSettings,
    ops: &[(String, String)],
) -> Result<(), SearchError> {
    let (events, _) = read_events(&out.join("journal.jsonl"))?;
    let mut trials: Vec<TrialView> = Vec::new();
    let mut finals: Finals = Vec::new();
    let mut final_probes: FinalProbes = Vec::new();
    // (final policy, the trial whose policy it is)
    let mut trial_of: Vec<(String, String)> = Vec::new();
    let (mut validation_samples, mut test_samples) = (None, None);
    for e in &events {
        match e {
            Event::Trial {
                name,
                kind,
                description,
                ..
            } => trials.push(TrialView {
                name: name.clone(),
                baseline: kind == "baseline",
                description: description.clone(),
                results: Vec::new(),
                linear: Vec::new(),
                probes: Vec::new(),
                top_k: false,
            }),
            Event::Start {
                trial, top_k: true, ..
            } => {
                if let Some(t) = trials.get_mut(*trial) {
                    t.top_k = true;
                }
            }
            Event::Result {
                trial,
                rung,
                steps,
                score,
                at_seconds,
                state,
                detail,
                ..
            } => {
                if let Some(n) = scored_samples(detail, settings) {
                    validation_samples = Some(n);
                }
                if let Some(t) = trials.get_mut(*trial) {
                    t.results
                        .push((*rung, *steps, *score, *at_seconds, state.clone()));
                    let linear = detail["probes"]
                        .as_array()
                        .and_then(|ps| ps.iter().find(|p| p["probe"] == "linear"))
                        .and_then(|p| p["trained_top1"].as_f64());
                    t.linear.push(linear);
                    let mut probes: Vec<((String, String), f64)> = detail["probes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| {
                            Some((
                                (
                                    p["probe"].as_str()?.to_string(),
                                    p["labels"].as_str()?.to_string(),
                                ),
                                p["trained_top1"].as_f64()?,
                            ))
                        })
                        .collect();
                    // The label-free effective rank (RankMe) of the same run, as a fraction
                    // of its maximum: how it ranks the trials beside the probes.
                    let rep = &detail["representation"]["trained"];
                    if let (Some(rank), Some(max)) =
                        (rep["rank"].as_f64(), rep["max_rank"].as_f64())
                        && max > 0.0
                    {
                        probes.push((("rankme".into(), "(no labels)".into()), rank / max));
                    }
                    t.probes.push(probes);
                }
            }
            Event::Final {
                policy,
                trial,
                seed,
                score,
                probes,
                ..
            } => {
                if !trial.is_empty() && !trial_of.iter().any(|(p, _)| p == policy) {
                    trial_of.push((policy.clone(), trial.clone()));
                }
                if let Some(n) = scored_samples(probes, settings) {
                    test_samples = Some(n);
                }
                let random = probes["random_init_score"].as_f64();
                for p in probes["probes"].as_array().into_iter().flatten() {
                    let key = (
                        policy.clone(),
                        p["probe"].as_str().unwrap_or("").to_string(),
                        p["labels"].as_str().unwrap_or("").to_string(),
                    );
                    let v = (
                        p["trained_top1"].as_f64().unwrap_or(f64::NAN),
                        p["random_init_top1"].as_f64(),
                    );
                    match final_probes.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, list)) => list.push(v),
                        None => final_probes.push((key, vec![v])),
                    }
                }
                match finals.iter_mut().find(|(p, _)| p == policy) {
                    Some((_, v)) => v.push((*seed, *score, random)),
                    None => finals.push((policy.clone(), vec![(*seed, *score, random)])),
                }
            }
            _ => {}
        }
    }
    let rungs = settings.asha.rungs();
    let objective = settings.objective.describe();
    let mut md = String::new();
    md.push_str(&format!(
        "# Augmentation search `{}` ({modality})\n\n",
        settings.name
    ));
    if !settings.description.is_empty() {
        md.push_str(&format!("{}\n\n", settings.description.trim()));
    }
    md.push_str(&format!(
        "Objective: the {objective}, on a validation split held out of the training data during the search and on the test split in the final comparison. The best searched trial is the one that reached the highest rung, then the best score there (as in successive halving; ties go to the earlier trial). Sampler `{}`, {} searched trials, seed {}; successive halving over {rungs:?} optimizer steps (eta {}); baselines at the full {} steps.\n\n",
        serde_json::to_value(settings.sampler).unwrap_or_default().as_str().unwrap_or(""),
        settings.trials,
        settings.seed,
        settings.asha.eta,
        rungs.last().copied().unwrap_or(0)
    ));

    // The final comparison first: it is the answer.
    md.push_str("## Final comparison (test split)\n\n");
    let random_init: Vec<f64> = finals
        .iter()
        .flat_map(|(_, v)| v.iter().filter_map(|r| r.2))
        .collect();
    let random_init_mean = (!random_init.is_empty()).then(|| mean_std(&random_init).0);
    if finals.is_empty() {
        md.push_str("Not run yet.\n\n");
    } else {
        md.push_str(&format!(
            "Each policy re-trained on the whole training split for {} optimizer steps per seed; {} (%) on the test split, mean ± std over seeds (random-init encoder of the same architecture, same seeds: {}).\n\n",
            settings.final_steps(),
            settings.objective.measure(),
            random_init_mean.map(|r| format!("{:.2}%", r * 100.0)).unwrap_or_else(|| "not measured".into())
        ));
        md.push_str(&format!(
            "| policy | test {} (%) | seeds | per seed |\n|---|---|---|---|\n",
            settings.objective.measure()
        ));
        for (policy, runs) in &finals {
            let v: Vec<f64> = runs.iter().filter_map(|r| r.1).map(|s| s * 100.0).collect();
            let (m, sd) = mean_std(&v);
            md.push_str(&format!(
                "| {policy} | {m:.2} ± {sd:.2} | {} | {} |\n",
                v.len(),
                runs.iter()
                    .map(|r| match r.1 {
                        Some(s) => format!("{}: {:.2}", r.0, s * 100.0),
                        None => format!("{}: failed", r.0),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        md.push('\n');
        // Every probe of the final runs (the objective is one of them).
        let mut cols: Vec<(String, String)> = Vec::new();
        for ((_, probe, labels), _) in &final_probes {
            let c = (probe.clone(), labels.clone());
            if !cols.contains(&c) {
                cols.push(c);
            }
        }
        if !cols.is_empty() {
            md.push_str("All probes of the final runs, test top-1 (%), mean ± std over seeds (random-init encoder in parentheses):\n\n| policy |");
            for (p, l) in &cols {
                md.push_str(&format!(" {p} {l} |"));
            }
            md.push_str("\n|---|");
            md.push_str(&"---|".repeat(cols.len()));
            md.push('\n');
            for (policy, _) in &finals {
                md.push_str(&format!("| {policy} |"));
                for (p, l) in &cols {
                    let cell = final_probes
                        .iter()
                        .find(|((fp, pp, ll), _)| fp == policy && pp == p && ll == l)
                        .map(|(_, v)| {
                            let t: Vec<f64> = v.iter().map(|x| x.0 * 100.0).collect();
                            let r: Vec<f64> =
                                v.iter().filter_map(|x| x.1).map(|x| x * 100.0).collect();
                            let (m, sd) = mean_std(&t);
                            if r.is_empty() {
                                format!("{m:.2} ± {sd:.2}")
                            } else {
                                format!("{m:.2} ± {sd:.2} ({:.2})", mean_std(&r).0)
                            }
                        })
                        .unwrap_or_else(|| "-".into());
                    md.push_str(&format!(" {cell} |"));
                }
                md.push('\n');
            }
            md.push('\n');
        }
    }
    // As the study picks it: each trial's highest-rung result (a trial that failed there is
    // out), then the highest rung, the best score, the earliest trial.
    let best = trials
        .iter()
        .rev()
        .filter(|t| !t.baseline)
        .filter_map(|t| {
            let last = t.results.iter().max_by_key(|r| r.0)?;
            Some((t, last.0, last.2?))
        })
        .max_by(|a, b| a.1.cmp(&b.1).then(a.2.total_cmp(&b.2)));
    md.push_str(&transfer_section(
        &trials,
        &finals,
        &trial_of,
        best.map(|b| b.0.name.as_str()),
        settings,
        (validation_samples, test_samples),
    ));
    if let Some((t, r, s)) = best {
        let top = rungs.len().saturating_sub(1);
        if r < top {
            md.push_str(&format!(
                "Note: no searched trial reached the full budget ({} steps); the best is the one that went furthest (rung {} of {}), and its score is not comparable with the baselines' at the full budget.\n\n",
                rungs.get(top).copied().unwrap_or(0),
                r + 1,
                rungs.len()
            ));
        }
        md.push_str(&format!(
            "Best searched policy: **{}** ({:.2}% on the validation split at {} steps): {}. Its config: `best-policy.toml` (`ssl train --modality {modality} --config best-policy.toml`).\n\n",
            t.name,
            s * 100.0,
            rungs.get(r).copied().unwrap_or(0),
            t.description
        ));
    }

    md.push_str("## Trials (validation split)\n\n| trial | kind | reached (steps) | score (%) | state | policy |\n|---|---|---|---|---|---|\n");
    let mut order: Vec<&TrialView> = trials.iter().collect();
    let key = |t: &TrialView| {
        t.results
            .iter()
            .filter_map(|r| r.2.map(|s| (r.0, s)))
            .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)))
    };
    order.sort_by(|a, b| match (key(a), key(b)) {
        (Some(x), Some(y)) => y.0.cmp(&x.0).then(y.1.total_cmp(&x.1)),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    for t in order {
        let last = t.results.iter().max_by_key(|r| r.0);
        let scores = t
            .results
            .iter()
            .map(|r| match r.2 {
                Some(s) => format!("{:.2}", s * 100.0),
                None => "failed".into(),
            })
            .collect::<Vec<_>>()
            .join(" → ");
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            t.name,
            if t.baseline { "baseline" } else { "search" },
            last.map(|r| r.1.to_string()).unwrap_or_else(|| "-".into()),
            if scores.is_empty() {
                "-".into()
            } else {
                scores
            },
            last.map(|r| match r.4.as_str() {
                "paused" => format!("stopped at rung {}", r.0 + 1),
                "completed" if t.top_k => {
                    "completed (a top-k trial trained on to the full budget after the search)"
                        .to_string()
                }
                other => other.to_string(),
            })
            .unwrap_or_else(|| "not finished".into()),
            t.description.replace('|', "/")
        ));
    }
    md.push_str("\nScores per rung reached, left to right (a top-k trial's last score is at the full budget, whichever rung it stopped at before). Plots: `search.svg` (score per trial over study time), `final.svg` (the final comparison). Every event is in `journal.jsonl`.\n");
    md.push_str(&rung_agreement_note(&trials, &rungs));
    md.push_str(&probe_agreement_note(&trials, &rungs));
    if !settings.objective.needs_labels() {
        md.push_str(&rank_correlation_note(&trials));
    }
    if !ops.is_empty() {
        md.push_str("\n## Search space\n\nEach view: the modality's crop, then `space.min_ops` to `space.max_ops` of these ops (probability and magnitude `m` in [0, 1] searched), then its finishing ops.\n\n| op | magnitude `m` sets |\n|---|---|\n");
        for (op, m) in ops {
            md.push_str(&format!("| {op} | {m} |\n"));
        }
    }
    let path = out.join("report.md");
    ssl_framework::fsutil::write_atomic(&path, md.as_bytes()).map_err(|e| SearchError::Output {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    let points: Vec<ScorePoint> = trials
        .iter()
        .flat_map(|t| {
            t.results.iter().filter_map(move |r| {
                r.2.map(|s| ScorePoint {
                    minutes: r.3 / 60.0,
                    score: s * 100.0,
                    rung: r.0,
                    baseline: t.baseline,
                })
            })
        })
        .collect();
    search_scores(&points, &rungs, &out.join("search.svg")).map_err(plot_error)?;
    let finals: Vec<(String, Vec<(Option<f64>, Option<f64>)>)> = finals
        .into_iter()
        .map(|(policy, runs)| (policy, runs.into_iter().map(|r| (r.1, r.2)).collect()))
        .collect();
    final_comparison(
        &finals,
        settings.objective.measure(),
        &out.join("final.svg"),
    )
    .map_err(plot_error)?;
    Ok(())
}

/// The samples a run's objective was scored on: its probe's labelled held-out samples (the
/// objective's label set, else the first; recorded since `ProbeResult::samples` exists), or
/// for a label-free objective the samples of the effective rank.
fn scored_samples(detail: &serde_json::Value, settings: &SearchSettings) -> Option<u64> {
    if !settings.objective.needs_labels() {
        return detail["representation"]["samples"].as_u64();
    }
    let probes = detail["probes"].as_array()?;
    let want = &settings.objective.labels;
    probes
        .iter()
        .find(|p| want.is_empty() || want == "all" || p["labels"] == want.as_str())
        .and_then(|p| p["samples"].as_u64())
        .filter(|&n| n > 0)
}

/// The transfer section: each final policy's validation score at the full budget beside its
/// test score, the rank correlation of the two, and whether the test split tells the first
/// policy from the second at this number of seeds.
fn transfer_section(
    trials: &[TrialView],
    finals: &Finals,
    trial_of: &[(String, String)],
    best: Option<&str>,
    settings: &SearchSettings,
    (validation_samples, test_samples): (Option<u64>, Option<u64>),
) -> String {
    if finals.is_empty() {
        return String::new();
    }
    let top = settings.asha.rungs().len().saturating_sub(1);
    let full = settings.asha.rungs().last().copied().unwrap_or(0);
    let policies: Vec<(PolicyScores, String)> = finals
        .iter()
        .map(|(policy, runs)| {
            // Journals written before the trial was recorded: `best` is the best trial and a
            // baseline's trial bears its name.
            let trial = trial_of
                .iter()
                .find(|(p, _)| p == policy)
                .map(|(_, t)| t.clone())
                .or_else(|| (policy == "best").then(|| best.unwrap_or("").to_string()))
                .unwrap_or_else(|| policy.clone());
            let validation = trials
                .iter()
                .find(|t| t.name == trial)
                .and_then(|t| t.results.iter().find(|r| r.0 == top).and_then(|r| r.2));
            (
                PolicyScores {
                    policy: policy.clone(),
                    validation,
                    test: runs.iter().filter_map(|r| r.1).collect(),
                },
                trial,
            )
        })
        .collect();
    let budgets = if settings.final_steps() == full {
        String::new()
    } else {
        format!(
            " Note: the final runs trained {} steps, not the {full} of the validation scores: the two rankings compare different budgets.",
            settings.final_steps()
        )
    };
    let mut md = format!(
        "## Transfer: the validation ranking on the test split\n\nThe policies of the final comparison: their validation score at the full {full} steps (the study's seed {}) beside their test score (mean ± std over seeds).{budgets}{}\n\n| policy | trial | validation (%) | test (%) |\n|---|---|---|---|\n",
        settings.seed,
        match (validation_samples, test_samples) {
            (Some(v), Some(t)) => format!(
                " One sample is {:.2} points on the validation split ({v} samples scored) and {:.2} on the test split ({t}).",
                100.0 / v.max(1) as f64,
                100.0 / t.max(1) as f64
            ),
            _ => String::new(),
        }
    );
    for (p, trial) in &policies {
        let (m, sd) = p.test_mean_std();
        md.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            p.policy,
            trial,
            p.validation
                .map(|v| format!("{:.2}", v * 100.0))
                .unwrap_or_else(|| "-".into()),
            if p.test.is_empty() {
                "-".into()
            } else {
                format!("{:.2} ± {:.2}", m * 100.0, sd * 100.0)
            }
        ));
    }
    let scores: Vec<PolicyScores> = policies.into_iter().map(|(p, _)| p).collect();
    match validation_test_correlation(&scores) {
        (Some(rho), n) => md.push_str(&format!(
            "\nRank correlation (Spearman) of validation and test scores over these {n} policies: **{rho:.2}** (1: the search's order holds on the test split; 0: it says nothing about it).\n"
        )),
        (None, n) => md.push_str(&format!(
            "\nRank correlation of validation and test scores: not measured ({n} policies have both; it needs 3 with scores that differ).\n"
        )),
    }
    let one_seed: Vec<&str> = scores
        .iter()
        .filter(|p| p.test.len() < 2)
        .map(|p| p.policy.as_str())
        .collect();
    if !one_seed.is_empty() {
        md.push_str(&format!(
            "\nLeft out of the comparison below (fewer than 2 seeds scored, no spread): {}.\n",
            one_seed.join(", ")
        ));
    }
    match separation(&scores) {
        Some(s) if s.tells_apart() => md.push_str(&format!(
            "\nOn the test split `{}` leads `{}` by {:.2} points, more than one seed standard deviation ({:.2}): the comparison tells them apart.\n\n",
            s.first,
            s.second,
            s.gap * 100.0,
            s.seed_std * 100.0
        )),
        Some(s) => md.push_str(&format!(
            "\n**The comparison cannot tell the policies apart:** on the test split `{}` leads `{}` by {:.2} points, within one seed standard deviation ({:.2}); more seeds, a longer budget or a larger test split would be needed to order them.\n\n",
            s.first,
            s.second,
            s.gap * 100.0,
            s.seed_std * 100.0
        )),
        None => md.push_str("\nWhether the test split tells the policies apart: not measured (it needs 2 policies with 2 or more seeds each).\n\n"),
    }
    md
}

/// How each probe of the runs (and the features' effective rank) ranks the validation results
/// compared with the objective: Spearman's rho within each rung (results at one budget, baselines
/// included at the full one), so the budget itself does not make them agree. A probe or label set
/// that orders the policies differently is a reason to average the objective over them
/// (`objective.probe = "mean"`, `objective.labels = "all"`).
fn probe_agreement_note(trials: &[TrialView], rungs: &[usize]) -> String {
    let mut keys: Vec<(String, String)> = Vec::new();
    for t in trials {
        for ps in &t.probes {
            for (k, _) in ps {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
    }
    if keys.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "\nHow each probe of the trials' validation runs, and the label-free effective rank of their features (RankMe), ranks them compared with the objective: Spearman's rho within each rung (results at the same budget; n results):\n\n| probe | labels |",
    );
    for r in rungs {
        md.push_str(&format!(" {r} steps |"));
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---|".repeat(rungs.len()));
    md.push('\n');
    for (probe, labels) in &keys {
        md.push_str(&format!("| {probe} | {labels} |"));
        for rung in 0..rungs.len() {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for t in trials {
                for (r, ps) in t.results.iter().zip(&t.probes) {
                    if r.0 != rung {
                        continue;
                    }
                    if let (Some(o), Some((_, v))) = (
                        r.2,
                        ps.iter().find(|(k, _)| k.0 == *probe && k.1 == *labels),
                    ) {
                        a.push(o);
                        b.push(*v);
                    }
                }
            }
            md.push_str(&match spearman(&a, &b) {
                Some(rho) => format!(" {rho:.2} (n {}) |", a.len()),
                None if a.is_empty() => " - |".to_string(),
                None => format!(" - (n {}) |", a.len()),
            });
        }
        md.push('\n');
    }
    md
}

/// How well each short rung ranks the searched trials as the longer rungs do (Spearman's rho
/// over the trials scored at both).
fn rung_agreement_note(trials: &[TrialView], rungs: &[usize]) -> String {
    let mut scores = Vec::new();
    for (i, t) in trials.iter().enumerate() {
        if t.baseline {
            continue;
        }
        for r in &t.results {
            if let Some(s) = r.2 {
                scores.push((i, r.0, s));
            }
        }
    }
    let pairs = rung_agreement(&scores, rungs.len());
    if pairs.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "\nHow well a short rung predicts a longer one (successive halving keeps what ranks high early): Spearman's rho of the searched trials' scores at both rungs.\n\n| rungs (steps) | trials | rho |\n|---|---|---|\n",
    );
    for p in pairs {
        md.push_str(&format!(
            "| {} → {} | {} | {} |\n",
            rungs[p.lower],
            rungs[p.upper],
            p.trials,
            p.rho
                .map(|r| format!("{r:.2}"))
                .unwrap_or_else(|| "- (fewer than 3)".into())
        ));
    }
    md
}

fn plot_error(e: crate::plot::PlotError) -> SearchError {
    SearchError::Output {
        path: e.path,
        reason: e.reason,
    }
}
