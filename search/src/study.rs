//! The study loop: baselines, sampled trials, successive-halving promotions, then the final
//! re-training of the best policy and the baselines over several seeds. Everything that
//! happens is appended to the journal first, so a study killed at any moment resumes with
//! `--resume`: finished trials are read back, a trial that was running continues from its
//! newest checkpoint, and no finished trial runs twice.
//!
//! Trials run on `workers` devices at once (one thread each); with one device they run one
//! after another, and the study is then deterministic: a resumed study proposes, runs and
//! scores exactly what an uninterrupted one would.

use crate::SearchError;
use crate::asha::{RungState, next_promotion};
use crate::journal::{Event, Journal};
use crate::params::{ParamSpace, Params};
use crate::sampler::{Observation, propose};
use crate::settings::SearchSettings;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Training one trial to one rung.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrialJob {
    /// Trial number.
    pub trial: usize,
    /// Trial name (its folder under `trials/`).
    pub name: String,
    /// The policy (`{ "view1": [...], "view2": [...] }`).
    pub policy: serde_json::Value,
    /// Rung index.
    pub rung: usize,
    /// Train to this many optimizer steps (the rung's budget).
    pub steps: usize,
    /// The full budget (the schedules' length).
    pub full_steps: usize,
}

/// One final re-training.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FinalJob {
    /// Policy name (`best`, a searched trial's name for the other top-k policies, `default`,
    /// `crop-only`, `random`; its folder under `final/`).
    pub policy_name: String,
    /// The trial whose policy it is.
    #[serde(default)]
    pub trial: String,
    /// The policy.
    pub policy: serde_json::Value,
    /// Seed.
    pub seed: u64,
    /// Optimizer steps.
    pub steps: usize,
    /// Also evaluate a random-init encoder (it depends on the seed, not on the policy, so
    /// the study measures it once per seed, with the first baseline).
    pub random_init: bool,
}

/// A run's evaluation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    /// The objective in `[0, 1]`.
    pub score: f64,
    /// Every probe's result and run facts (JSON, kept in the journal).
    pub detail: serde_json::Value,
}

/// A run that did not produce a score.
#[derive(Debug)]
pub enum RunFailure {
    /// The policy made training fail (e.g. a non-finite loss): the trial is recorded as failed
    /// and the study goes on.
    Policy(String),
    /// Anything else (data, config, disk): the study stops with this error.
    Fatal(SearchError),
}

/// What runs trials: `ssl train`'s trainer for a modality
/// ([`modality_study`](crate::modality_study)), or a stand-in in tests.
pub trait Runner: Sync {
    /// Devices available (trials run on this many threads at once).
    fn workers(&self) -> usize;
    /// Trains `job.trial` to `job.steps` (continuing from its checkpoint when it has one) on
    /// device `worker` and scores it on the validation split.
    ///
    /// # Errors
    /// [`RunFailure`].
    fn trial(&self, job: &TrialJob, worker: usize) -> Result<Outcome, RunFailure>;
    /// Re-trains a policy on the whole training split and scores it on the test split.
    ///
    /// # Errors
    /// [`RunFailure`].
    fn final_run(&self, job: &FinalJob, worker: usize) -> Result<Outcome, RunFailure>;
    /// Called once the search phase is over (no trial will run again): e.g. frees the
    /// trials' checkpoints. Default: nothing.
    fn search_finished(&self) {}
}

/// Decodes sampler parameters into a policy (JSON) and its one-line description.
pub type Decoder<'a> =
    dyn Fn(&Params) -> Result<(serde_json::Value, String), SearchError> + Sync + 'a;

/// What a study searches.
pub struct Plan<'a> {
    /// The modality's name (checked on resume).
    pub modality: String,
    /// The search file after command-line overrides.
    pub settings: SearchSettings,
    /// The sampler's parameter space.
    pub space: ParamSpace,
    /// Baselines `(name, policy, description)`, evaluated at full fidelity first.
    pub baselines: Vec<(String, serde_json::Value, String)>,
    /// Parameters to policy.
    pub decode: &'a Decoder<'a>,
    /// The searchable ops and what their magnitude sets (for the report).
    pub ops: Vec<(String, String)>,
    /// The base experiment config after the study's overrides (checked on resume).
    pub base: serde_json::Value,
    /// Reads a base config stored in a journal as this build would write it (keys added since
    /// with their defaults), so that a study started by an earlier build resumes; `None`:
    /// compared as stored.
    pub normalize_base: Option<&'a BaseNormalizer<'a>>,
}

/// See [`Plan::normalize_base`].
pub type BaseNormalizer<'a> = dyn Fn(&serde_json::Value) -> serde_json::Value + Sync + 'a;

/// The rungs' budgets of `settings`.
fn rungs_of(settings: &SearchSettings) -> Vec<usize> {
    settings.asha.rungs()
}

#[derive(Debug, Clone)]
struct TrialRec {
    name: String,
    baseline: bool,
    params: Option<Params>,
    policy: serde_json::Value,
}

/// The study's state, rebuilt from the journal and kept in step with it.
struct State<'a> {
    plan: &'a Plan<'a>,
    journal: Journal,
    rungs: Vec<usize>,
    trials: Vec<TrialRec>,
    /// Per rung, the search trials finished there and those promoted out of it.
    rung_states: Vec<RungState>,
    /// Best (highest rung, then score) result per trial: (rung, score).
    best_of: BTreeMap<usize, (usize, Option<f64>)>,
    /// Steps each trial has trained (for the ETA).
    trained_steps: BTreeMap<usize, usize>,
    /// Jobs started in an earlier session and never finished: rerun first.
    interrupted: VecDeque<(usize, usize)>,
    /// Top-k trials trained on to the full budget before the final comparison.
    top_k_runs: std::collections::BTreeSet<usize>,
    running: Vec<(usize, usize)>,
    finals: BTreeMap<(String, u64), Option<f64>>,
    seconds_before: f64,
    session: Instant,
    session_steps: usize,
    fatal: Option<SearchError>,
}

impl<'a> State<'a> {
    fn now(&self) -> f64 {
        self.seconds_before + self.session.elapsed().as_secs_f64()
    }

    fn append(&mut self, e: Event) -> Result<(), SearchError> {
        self.journal.append(&e)?;
        Ok(())
    }

    fn search_trials(&self) -> usize {
        self.trials.iter().filter(|t| !t.baseline).count()
    }

    fn observations(&self) -> Vec<Observation> {
        self.best_of
            .iter()
            .filter_map(|(&t, &(rung, score))| {
                let rec = &self.trials[t];
                rec.params.as_ref().map(|p| Observation {
                    params: p.clone(),
                    rung,
                    score,
                })
            })
            .collect()
    }

    fn budget_spent(&self) -> bool {
        let b = self.plan.settings.budget_minutes;
        b > 0.0 && self.now() >= b * 60.0
    }

    /// Starts the next job: an interrupted one, a baseline, a promotion, or a new trial.
    fn next_job(&mut self) -> Result<Option<TrialJob>, SearchError> {
        let top = self.rungs.len() - 1;
        let full = self.rungs[top];
        let pick = if let Some((t, r)) = self.interrupted.pop_front() {
            Some((t, r))
        } else if let Some(t) = (0..self.trials.len()).find(|&t| {
            self.trials[t].baseline
                && !self.best_of.contains_key(&t)
                && !self.running.iter().any(|&(rt, _)| rt == t)
        }) {
            Some((t, top))
        } else if self.budget_spent() {
            None
        } else if let Some((t, r)) = next_promotion(&self.rung_states, self.plan.settings.asha.eta)
        {
            self.rung_states[r - 1].promoted.insert(t);
            Some((t, r))
        } else if self.search_trials() < self.plan.settings.trials {
            let t = self.trials.len();
            let number = self.search_trials();
            let params = propose(
                self.plan.settings.sampler,
                &self.plan.settings.tpe,
                &self.plan.space,
                &self.observations(),
                self.plan.settings.seed,
                number,
            );
            let (policy, description) = (self.plan.decode)(&params)?;
            let name = format!("t{number:03}");
            self.append(Event::Trial {
                trial: t,
                name: name.clone(),
                kind: "search".into(),
                params: Some(serde_json::to_value(&params).expect("params serialize")),
                policy: policy.clone(),
                description,
            })?;
            self.trials.push(TrialRec {
                name,
                baseline: false,
                params: Some(params),
                policy,
            });
            Some((t, 0))
        } else {
            None
        };
        let Some((trial, rung)) = pick else {
            return Ok(None);
        };
        let at = self.now();
        self.append(Event::Start {
            trial,
            rung,
            steps: self.rungs[rung],
            at_seconds: at,
            top_k: rung == top && self.top_k_runs.contains(&trial),
        })?;
        self.running.push((trial, rung));
        Ok(Some(TrialJob {
            trial,
            name: self.trials[trial].name.clone(),
            policy: self.trials[trial].policy.clone(),
            rung,
            steps: self.rungs[rung],
            full_steps: full,
        }))
    }

    /// Records a finished (or failed) job.
    fn finish(
        &mut self,
        job: &TrialJob,
        outcome: Result<Outcome, String>,
        wall: f64,
    ) -> Result<(), SearchError> {
        self.running.retain(|&j| j != (job.trial, job.rung));
        let top = self.rungs.len() - 1;
        let (score, detail, state) = match outcome {
            Ok(o) => (
                Some(o.score),
                o.detail,
                if job.rung == top {
                    "completed"
                } else {
                    "paused"
                },
            ),
            Err(e) => (None, serde_json::json!({ "error": e }), "failed"),
        };
        let at = self.now();
        self.append(Event::Result {
            trial: job.trial,
            rung: job.rung,
            steps: job.steps,
            score,
            detail,
            seed: self.plan.settings.seed,
            wall_seconds: wall,
            at_seconds: at,
            state: state.into(),
        })?;
        let before = self.trained_steps.get(&job.trial).copied().unwrap_or(0);
        self.session_steps += job.steps.saturating_sub(before);
        self.record(job.trial, job.rung, job.steps, score);
        Ok(())
    }

    fn record(&mut self, trial: usize, rung: usize, steps: usize, score: Option<f64>) {
        if !self.trials[trial].baseline {
            self.rung_states[rung].finished.push((trial, score));
        }
        let e = self.best_of.entry(trial).or_insert((rung, score));
        if rung >= e.0 {
            *e = (rung, score);
        }
        let s = self.trained_steps.entry(trial).or_insert(0);
        *s = (*s).max(steps);
    }

    /// The best search trial: highest rung, then best score.
    fn best_trial(&self) -> Option<usize> {
        self.ranked_trials().first().copied()
    }

    /// The searched trials with a score, best first: highest rung, then best score there, then
    /// the earlier trial.
    fn ranked_trials(&self) -> Vec<usize> {
        let mut ranked: Vec<(usize, usize, f64)> = self
            .best_of
            .iter()
            .filter(|(t, (_, s))| !self.trials[**t].baseline && s.is_some())
            .map(|(&t, &(rung, s))| (t, rung, s.unwrap_or(f64::NEG_INFINITY)))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.total_cmp(&a.2)).then(a.0.cmp(&b.0)));
        ranked.into_iter().map(|(t, _, _)| t).collect()
    }

    /// The `k` best searched trials that stopped below the full budget: each must be trained
    /// on to it (on the validation split) before the final comparison.
    fn top_trials_to_complete(&self, k: usize) -> Vec<usize> {
        let top = self.rungs.len() - 1;
        self.ranked_trials()
            .into_iter()
            .take(k)
            .filter(|t| self.best_of[t].0 < top)
            .collect()
    }

    /// Estimated optimizer steps of the whole study still to train (search and final).
    fn remaining_steps(&self) -> usize {
        let s = &self.plan.settings;
        let eta = s.asha.eta.max(2);
        let mut expected = self.plan.baselines.len() * self.rungs[self.rungs.len() - 1];
        expected += s.trials * self.rungs[0];
        for k in 1..self.rungs.len() {
            expected += (s.trials / eta.pow(k as u32)) * (self.rungs[k] - self.rungs[k - 1]);
        }
        // The top-k trials that successive halving stops below the full budget, trained on
        // to it (counted from the rung below the top).
        let top = self.rungs.len() - 1;
        if top > 0 {
            let reaching = s.trials / eta.pow(top as u32);
            expected += s.final_runs.top_k.saturating_sub(reaching)
                * (self.rungs[top] - self.rungs[top - 1]);
        }
        let done: usize = self.trained_steps.values().sum();
        let final_total = (self.plan.baselines.len() + s.final_runs.top_k)
            * s.final_runs.seeds.len()
            * s.final_steps();
        let final_done = self.finals.len() * s.final_steps();
        expected.saturating_sub(done) + final_total.saturating_sub(final_done)
    }

    fn progress_line(&self, what: &str) -> String {
        let best = self.best_trial().map(|t| {
            let (r, s) = self.best_of[&t];
            format!(
                "best {:.2}% ({} at {} steps)",
                s.unwrap_or(0.0) * 100.0,
                self.trials[t].name,
                self.rungs[r]
            )
        });
        let elapsed = self.session.elapsed().as_secs_f64();
        let eta = if self.session_steps > 0 {
            let per_step = elapsed / self.session_steps as f64;
            format!(
                "ETA ~{:.0} min",
                per_step * self.remaining_steps() as f64 / 60.0
            )
        } else {
            "ETA after the first run".into()
        };
        let evaluated = self
            .best_of
            .keys()
            .filter(|t| !self.trials[**t].baseline)
            .count();
        format!(
            "[{evaluated} of {} trials evaluated | {}] {what} | {:.1} min | {eta}",
            self.plan.settings.trials,
            best.unwrap_or_else(|| "no score yet".into()),
            self.now() / 60.0,
        )
    }
}

/// What a finished study found.
#[derive(Debug, Clone)]
pub struct StudySummary {
    /// The best searched trial's name, policy and validation score, if any trial scored.
    pub best: Option<(String, serde_json::Value, f64)>,
    /// Mean test score per final policy, in report order.
    pub finals: Vec<(String, f64)>,
    /// The journal.
    pub journal: PathBuf,
}

/// Writes a policy (JSON) as a config file `ssl train` reads.
pub type PolicyWriter<'a> =
    dyn Fn(&serde_json::Value, &Path) -> Result<(), SearchError> + Sync + 'a;

/// Runs (or, with `resume`, continues) the study of `plan` in `out` with `runner`; writes
/// `journal.jsonl`, `best-policy.toml` (through `write_policy`), `report.md`, `search.svg` and
/// `final.svg`.
///
/// # Errors
/// [`SearchError`]: a journal that does not match the plan, a new study over an existing one
/// without `resume`, a fatal run error, or an output file that cannot be written.
pub fn run_study(
    plan: &Plan<'_>,
    runner: &dyn Runner,
    out: &Path,
    resume: bool,
    write_policy: &PolicyWriter<'_>,
) -> Result<StudySummary, SearchError> {
    std::fs::create_dir_all(out).map_err(|e| SearchError::Output {
        path: out.to_path_buf(),
        reason: e.to_string(),
    })?;
    let path = out.join("journal.jsonl");
    if resume && !path.is_file() {
        return Err(SearchError::Settings(format!(
            "--resume: no study in {} (no journal.jsonl)",
            out.display()
        )));
    }
    let (journal, events) = Journal::open(&path)?;
    let settings_json = serde_json::to_value(&plan.settings).expect("settings serialize");
    match (events.first(), resume) {
        (None, true) => {
            return Err(SearchError::Settings(format!(
                "--resume: no study in {} (journal.jsonl is empty)",
                out.display()
            )));
        }
        (Some(_), false) => {
            return Err(SearchError::Settings(format!(
                "{} already holds a study: pass --resume to continue it, or choose another --out",
                out.display()
            )));
        }
        (
            Some(Event::Study {
                modality,
                settings,
                base,
            }),
            true,
        ) => {
            let mut differ = Vec::new();
            if *modality != plan.modality {
                differ.push(format!("modality ({modality} -> {})", plan.modality));
            }
            // Both as this build writes them: a key added since (e.g. `final.top_k`) takes
            // its default in a journal written before it.
            let stored: serde_json::Value =
                serde_json::from_value::<SearchSettings>(settings.clone())
                    .ok()
                    .and_then(|s| serde_json::to_value(s).ok())
                    .unwrap_or_else(|| settings.clone());
            differ.extend(json_diff("", &stored, &settings_json));
            if !base.is_null() {
                let stored = plan
                    .normalize_base
                    .map_or_else(|| base.clone(), |f| f(base));
                differ.extend(json_diff("base config: ", &stored, &plan.base));
            }
            if !differ.is_empty() {
                return Err(SearchError::Journal(format!(
                    "--resume: the study in {} was started with other settings ({}); resume with the same search file, options and base config, or choose another --out",
                    out.display(),
                    differ.join(", ")
                )));
            }
        }
        (Some(_), true) => {
            return Err(SearchError::Journal(format!(
                "{}: the first event is not the study's settings",
                path.display()
            )));
        }
        (None, false) => {}
    }
    let rungs = rungs_of(&plan.settings);
    let mut st = State {
        plan,
        journal,
        rung_states: vec![RungState::default(); rungs.len()],
        rungs,
        trials: Vec::new(),
        best_of: BTreeMap::new(),
        trained_steps: BTreeMap::new(),
        interrupted: VecDeque::new(),
        top_k_runs: Default::default(),
        running: Vec::new(),
        finals: BTreeMap::new(),
        seconds_before: 0.0,
        session: Instant::now(),
        session_steps: 0,
        fatal: None,
    };
    if events.is_empty() {
        st.append(Event::Study {
            modality: plan.modality.clone(),
            settings: settings_json,
            base: plan.base.clone(),
        })?;
    }
    replay(&mut st, &events)?;
    // Baselines are trials too (created once, first).
    for (name, policy, description) in &plan.baselines {
        if !st.trials.iter().any(|t| t.baseline && t.name == *name) {
            let t = st.trials.len();
            st.append(Event::Trial {
                trial: t,
                name: name.clone(),
                kind: "baseline".into(),
                params: None,
                policy: policy.clone(),
                description: description.clone(),
            })?;
            st.trials.push(TrialRec {
                name: name.clone(),
                baseline: true,
                params: None,
                policy: policy.clone(),
            });
        }
    }
    if !st.interrupted.is_empty() {
        eprintln!(
            "resuming the study in {}: {} run(s) were interrupted; they run again, from their newest checkpoint when they have one",
            out.display(),
            st.interrupted.len()
        );
    }

    // The search phase, then the top-k trials that successive halving stopped early trained
    // on to the full budget (from their checkpoints, on the validation split), so that every
    // policy of the final comparison has a validation score at the budget it is tested at.
    // Trials that fail there drop out and the next ones come in.
    let top_k = plan.settings.final_runs.top_k;
    let mut st = st;
    loop {
        let state = Mutex::new(st);
        std::thread::scope(|scope| {
            for worker in 0..runner.workers().max(1) {
                let state = &state;
                scope.spawn(move || search_worker(state, runner, worker));
            }
        });
        st = state.into_inner().expect("state lock");
        if let Some(e) = st.fatal.take() {
            return Err(e);
        }
        let pending = st.top_trials_to_complete(top_k);
        if pending.is_empty() {
            break;
        }
        eprintln!(
            "training the top {top_k} searched trials to the full budget: {} of them stopped early ({})",
            pending.len(),
            pending
                .iter()
                .map(|&t| st.trials[t].name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let top = st.rungs.len() - 1;
        st.top_k_runs.extend(pending.iter().copied());
        st.interrupted.extend(pending.into_iter().map(|t| (t, top)));
    }
    crate::report::write_report(out, &plan.modality, &plan.settings, &plan.ops)?;
    runner.search_finished();

    // The final comparison: the top-k searched policies (the first is `best`) and the baselines.
    let ranked = st.ranked_trials();
    let best = ranked.first().copied();
    // (policy name, trial name, policy)
    let mut finals: Vec<(String, String, serde_json::Value)> = Vec::new();
    for (i, &t) in ranked.iter().take(top_k).enumerate() {
        let policy = st.trials[t].policy.clone();
        let name = st.trials[t].name.clone();
        if i == 0 {
            write_policy(&policy, &out.join("best-policy.toml"))?;
            finals.push(("best".into(), name, policy));
        } else {
            finals.push((name.clone(), name, policy));
        }
    }
    if best.is_none() {
        eprintln!(
            "warning: no searched trial finished with a score; the final comparison has the baselines only"
        );
    }
    for (name, policy, _) in &plan.baselines {
        finals.push((name.clone(), name.clone(), policy.clone()));
    }
    let mut queue: VecDeque<FinalJob> = VecDeque::new();
    for (name, trial, policy) in &finals {
        for &seed in &plan.settings.final_runs.seeds {
            if !st.finals.contains_key(&(name.clone(), seed)) {
                queue.push_back(FinalJob {
                    policy_name: name.clone(),
                    trial: trial.clone(),
                    policy: policy.clone(),
                    seed,
                    steps: plan.settings.final_steps(),
                    random_init: plan.baselines.first().is_some_and(|b| b.0 == *name),
                });
            }
        }
    }
    if !queue.is_empty() {
        eprintln!(
            "final comparison: {} policies x {} seeds, {} steps each, on the test split ({} to run)",
            finals.len(),
            plan.settings.final_runs.seeds.len(),
            plan.settings.final_steps(),
            queue.len()
        );
    }
    let shared = Mutex::new((st, queue));
    std::thread::scope(|scope| {
        for worker in 0..runner.workers().max(1) {
            let shared = &shared;
            scope.spawn(move || final_worker(shared, runner, worker, out));
        }
    });
    let (mut st, _) = shared.into_inner().expect("final lock");
    if let Some(e) = st.fatal.take() {
        return Err(e);
    }
    crate::report::write_report(out, &plan.modality, &plan.settings, &plan.ops)?;
    let mut means = Vec::new();
    for (name, _, _) in &finals {
        let v: Vec<f64> = st
            .finals
            .iter()
            .filter(|((n, _), _)| n == name)
            .filter_map(|(_, s)| *s)
            .collect();
        if !v.is_empty() {
            means.push((name.clone(), v.iter().sum::<f64>() / v.len() as f64));
        }
    }
    Ok(StudySummary {
        best: best.map(|b| {
            (
                st.trials[b].name.clone(),
                st.trials[b].policy.clone(),
                st.best_of[&b].1.unwrap_or(f64::NAN),
            )
        }),
        finals: means,
        journal: path,
    })
}

/// Rebuilds the state from the journal's events.
fn replay(st: &mut State<'_>, events: &[Event]) -> Result<(), SearchError> {
    let mut open: Vec<(usize, usize)> = Vec::new();
    for e in events {
        match e {
            Event::Study { .. } => {}
            Event::Trial {
                trial,
                name,
                kind,
                params,
                policy,
                ..
            } => {
                if *trial != st.trials.len() {
                    return Err(SearchError::Journal(format!(
                        "journal: trial {trial} appears out of order"
                    )));
                }
                let params: Option<Params> = match params {
                    Some(p) => Some(serde_json::from_value(p.clone()).map_err(|e| {
                        SearchError::Journal(format!("journal: trial {trial}'s params: {e}"))
                    })?),
                    None => None,
                };
                st.trials.push(TrialRec {
                    name: name.clone(),
                    baseline: kind == "baseline",
                    params,
                    policy: policy.clone(),
                });
            }
            Event::Start {
                trial,
                rung,
                at_seconds,
                top_k,
                ..
            } => {
                check_trial(st, *trial, *rung)?;
                if *top_k {
                    // Trained on to the full budget after the search: not a promotion.
                    st.top_k_runs.insert(*trial);
                } else if *rung > 0 && !st.trials[*trial].baseline {
                    st.rung_states[rung - 1].promoted.insert(*trial);
                }
                open.retain(|&j| j != (*trial, *rung));
                open.push((*trial, *rung));
                st.seconds_before = st.seconds_before.max(*at_seconds);
            }
            Event::Result {
                trial,
                rung,
                steps,
                score,
                at_seconds,
                ..
            } => {
                check_trial(st, *trial, *rung)?;
                open.retain(|&j| j != (*trial, *rung));
                st.record(*trial, *rung, *steps, *score);
                st.seconds_before = st.seconds_before.max(*at_seconds);
            }
            Event::Final {
                policy,
                seed,
                score,
                ..
            } => {
                st.finals.insert((policy.clone(), *seed), *score);
            }
        }
    }
    // A searched trial whose creation is in the journal but whose first run never started
    // (a kill between the two lines) runs now, as it would have.
    let mut started: Vec<bool> = vec![false; st.trials.len()];
    for e in events {
        if let Event::Start { trial, .. } = e {
            started[*trial] = true;
        }
    }
    for (t, rec) in st.trials.iter().enumerate() {
        if !rec.baseline && !started[t] {
            open.push((t, 0));
        }
    }
    st.interrupted = open.into_iter().collect();
    Ok(())
}

/// The keys whose values differ between two JSON objects (`prefix` + dotted path).
fn json_diff(prefix: &str, a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    fn walk(path: String, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        match (a, b) {
            (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    let null = serde_json::Value::Null;
                    walk(p, x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null), out);
                }
            }
            _ if a != b => out.push(format!("{path}: {a} -> {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(String::new(), a, b, &mut out);
    out.into_iter().map(|d| format!("{prefix}{d}")).collect()
}

fn check_trial(st: &State<'_>, trial: usize, rung: usize) -> Result<(), SearchError> {
    if trial >= st.trials.len() || rung >= st.rungs.len() {
        return Err(SearchError::Journal(format!(
            "journal: an event names trial {trial} at rung {rung}, which the study does not have (were the asha settings changed?)"
        )));
    }
    Ok(())
}

fn search_worker(state: &Mutex<State<'_>>, runner: &dyn Runner, worker: usize) {
    loop {
        let job = {
            let mut st = state.lock().expect("state lock");
            if st.fatal.is_some() {
                return;
            }
            match st.next_job() {
                Ok(Some(job)) => job,
                Ok(None) if st.running.is_empty() => return,
                Ok(None) => {
                    // Other devices are busy; their results may allow a promotion.
                    drop(st);
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                Err(e) => {
                    st.fatal = Some(e);
                    return;
                }
            }
        };
        eprintln!(
            "{} {} (rung {} of {}: {} of {} steps)...",
            if state.lock().expect("lock").trials[job.trial].baseline {
                "baseline"
            } else {
                "trial"
            },
            job.name,
            job.rung + 1,
            state.lock().expect("lock").rungs.len(),
            job.steps,
            job.full_steps
        );
        let started = Instant::now();
        let result = runner.trial(&job, worker);
        let wall = started.elapsed().as_secs_f64();
        let mut st = state.lock().expect("state lock");
        let outcome = match result {
            Ok(o) => Ok(o),
            Err(RunFailure::Policy(msg)) => Err(msg),
            Err(RunFailure::Fatal(e)) => {
                st.fatal = Some(e);
                return;
            }
        };
        let what = match &outcome {
            Ok(o) => format!(
                "{} at {} steps: {:.2}%",
                job.name,
                job.steps,
                o.score * 100.0
            ),
            Err(msg) => format!("{} failed at {} steps: {msg}", job.name, job.steps),
        };
        if let Err(e) = st.finish(&job, outcome, wall) {
            st.fatal = Some(e);
            return;
        }
        eprintln!("{}", st.progress_line(&what));
    }
}

fn final_worker(
    shared: &Mutex<(State<'_>, VecDeque<FinalJob>)>,
    runner: &dyn Runner,
    worker: usize,
    out: &Path,
) {
    loop {
        let job = {
            let mut g = shared.lock().expect("final lock");
            if g.0.fatal.is_some() {
                return;
            }
            match g.1.pop_front() {
                Some(j) => j,
                None => return,
            }
        };
        eprintln!(
            "final: {} policy, seed {} ({} steps, test split)...",
            job.policy_name, job.seed, job.steps
        );
        let started = Instant::now();
        let result = runner.final_run(&job, worker);
        let wall = started.elapsed().as_secs_f64();
        let mut g = shared.lock().expect("final lock");
        let st = &mut g.0;
        let (score, probes, what) = match result {
            Ok(o) => (
                Some(o.score),
                o.detail,
                format!(
                    "final {} seed {}: test {:.2}%",
                    job.policy_name,
                    job.seed,
                    o.score * 100.0
                ),
            ),
            Err(RunFailure::Policy(msg)) => (
                None,
                serde_json::json!({ "error": msg }),
                format!("final {} seed {} failed: {msg}", job.policy_name, job.seed),
            ),
            Err(RunFailure::Fatal(e)) => {
                st.fatal = Some(e);
                return;
            }
        };
        let e = Event::Final {
            policy: job.policy_name.clone(),
            trial: job.trial.clone(),
            seed: job.seed,
            score,
            probes,
            wall_seconds: wall,
        };
        if let Err(e) = st.append(e) {
            st.fatal = Some(e);
            return;
        }
        st.finals.insert((job.policy_name.clone(), job.seed), score);
        st.session_steps += job.steps;
        eprintln!("{}", st.progress_line(&what));
        if let Err(e) =
            crate::report::write_report(out, &st.plan.modality, &st.plan.settings, &st.plan.ops)
        {
            st.fatal = Some(e);
            return;
        }
    }
}
