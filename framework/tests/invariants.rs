//! Every invariant of docs/design.md, on a toy modality written against the public traits.

mod toy;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use ssl_framework::byol::{
    ByolState, OnlineNetwork, StepOutcome, StepSchedules, TargetEma, TargetNetwork, Views,
    byol_loss, ema_update, regression_loss, tau_at, update,
};
use ssl_framework::config::Precision;
use ssl_framework::eval::collapse_std;
use ssl_framework::optim::{Lars, LrSchedule};
use ssl_framework::replicas::ReplicaGroup;
use ssl_framework::train::metrics::read_metrics;
use ssl_framework::train::{RunOptions, train_and_evaluate};
use std::collections::BTreeMap;
use toy::{DIM, Toy, toy_encoder};

/// Every float tensor of a module (parameters and BatchNorm statistics), by id.
#[derive(Default)]
struct Snapshot(BTreeMap<String, Vec<f32>>);

impl ModuleVisitor for Snapshot {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let v = param
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        self.0.insert(format!("{}", param.id), v);
    }
}

/// Ids of the parameters that require gradients (not BatchNorm statistics).
#[derive(Default)]
struct Trainable(std::collections::BTreeSet<String>);

impl ModuleVisitor for Trainable {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if param.val().is_require_grad() {
            self.0.insert(format!("{}", param.id));
        }
    }
}

fn snapshot<M: Module>(m: &M) -> BTreeMap<String, Vec<f32>> {
    // `valid()` applies pending BatchNorm running-statistic updates to `m` (burn defers them).
    let _ = m.valid();
    let mut s = Snapshot::default();
    m.visit(&mut s);
    s.0
}

fn device() -> Device {
    Device::flex()
}

fn t2(rows: Vec<Vec<f32>>, device: &Device) -> Tensor<2> {
    let (r, c) = (rows.len(), rows[0].len());
    Tensor::from_data(
        TensorData::new(rows.into_iter().flatten().collect::<Vec<_>>(), [r, c]),
        device,
    )
}

fn scalar(t: Tensor<1>) -> f32 {
    t.into_scalar::<f32>()
}

#[test]
fn loss_pairs_view_i_with_target_view_j_and_sums_directions() {
    let d = device();
    let p1 = t2(vec![vec![1.0, 0.0], vec![0.0, 1.0]], &d);
    let p2 = t2(vec![vec![0.0, 1.0], vec![1.0, 1.0]], &d);
    let z1 = t2(vec![vec![1.0, 0.0], vec![0.0, 1.0]], &d);
    let z2 = t2(vec![vec![0.0, 2.0], vec![1.0, 1.0]], &d);
    let total = scalar(byol_loss(p1.clone(), p2.clone(), z1.clone(), z2.clone()).total());
    let cross = scalar(regression_loss(p1.clone(), z2.clone()))
        + scalar(regression_loss(p2.clone(), z1.clone()));
    let same = scalar(regression_loss(p1.clone(), z1.clone()))
        + scalar(regression_loss(p2.clone(), z2.clone()));
    assert!((total - cross).abs() < 1e-6, "{total} vs {cross}");
    assert!(
        (total - same).abs() > 0.1,
        "the loss must not pair a view with itself"
    );
    // Summed, not averaged: identical directions give twice one direction.
    let one = scalar(regression_loss(p1.clone(), z1.clone()));
    let twice = scalar(byol_loss(p1.clone(), p1.clone(), z1.clone(), z1.clone()).total());
    assert!((twice - 2.0 * one).abs() < 1e-6);
    // Range: 0 for aligned, 8 for opposite vectors (4 per direction).
    let neg = t2(vec![vec![-1.0, 0.0], vec![0.0, -1.0]], &d);
    assert!(scalar(byol_loss(z1.clone(), z1.clone(), z1.clone(), z1.clone()).total()).abs() < 1e-6);
    assert!((scalar(byol_loss(neg.clone(), neg, z1.clone(), z1).total()) - 8.0).abs() < 1e-5);
}

/// The BYOL loss of one micro-batch, as [`update`] computes it: online and target networks on
/// both views, the terms summed.
fn step_loss(
    online: &OnlineNetwork<toy::ToyEncoder>,
    target: &TargetNetwork<toy::ToyEncoder>,
    x1: Tensor<2>,
    x2: Tensor<2>,
) -> Tensor<1> {
    let (o1, o2) = (online.forward(x1.clone()), online.forward(x2.clone()));
    byol_loss(
        o1.prediction,
        o2.prediction,
        target.forward(x1),
        target.forward(x2),
    )
    .total()
}

/// A fresh online network and its target on the autodiff device, and two random view batches.
fn networks_and_views(
    seed: u64,
) -> (
    Device,
    OnlineNetwork<toy::ToyEncoder>,
    TargetNetwork<toy::ToyEncoder>,
    Tensor<2>,
    Tensor<2>,
) {
    let ad = device().autodiff();
    ad.seed(seed);
    let cfg = toy::config(&[]);
    let online = OnlineNetwork::new(toy_encoder(16, &ad), &cfg.byol, &ad);
    let target = online.make_target();
    let x1 = Tensor::<2>::random([8, DIM], burn::tensor::Distribution::Normal(0.0, 1.0), &ad);
    let x2 = Tensor::<2>::random([8, DIM], burn::tensor::Distribution::Normal(0.0, 1.0), &ad);
    (ad, online, target, x1, x2)
}

#[test]
fn no_gradient_reaches_the_target_and_target_changes_only_by_ema() {
    let cfg = toy::config(&[]);
    let (_, online, target, x1, x2) = networks_and_views(0);
    let loss = step_loss(&online, &target, x1, x2);
    let mut grads = loss.backward();
    let target_grads = GradientsParams::from_module(&mut grads, &target);
    let online_grads = GradientsParams::from_module(&mut grads, &online);
    assert_eq!(target_grads.len(), 0, "a gradient reached the target");
    assert!(online_grads.len() > 0);
    // tau = 1: the EMA leaves the target's parameters exactly as they were.
    let before = snapshot(&target);
    let mut optim = ssl_framework::optim::build_optimizer(&cfg.optim);
    let online = optim.step(0.5, online, online_grads);
    let target = ema_update(target, &online, 1.0).unwrap();
    assert_eq!(before, snapshot(&target));
}

#[test]
fn ema_blends_every_parameter_and_keeps_target_bn_statistics() {
    let cfg = toy::config(&[]);
    let (ad, online, target, x1, x2) = networks_and_views(1);
    // Move the online weights away from the target's.
    let loss = step_loss(&online, &target, x1, x2);
    let grads = GradientsParams::from_grads(loss.backward(), &online);
    let mut optim = ssl_framework::optim::build_optimizer(&cfg.optim);
    let online = optim.step(1.0, online, grads);
    // Another online forward: the online BatchNorm statistics now differ from the target's.
    let _ = online.forward(Tensor::<2>::random(
        [8, DIM],
        burn::tensor::Distribution::Normal(2.0, 1.0),
        &ad,
    ));
    let t_before = snapshot(&target);
    let o = snapshot(&online);
    let tau = 0.75f32;
    let target = ema_update(target, &online, tau as f64).unwrap();
    let t_after = snapshot(&target);
    let mut trainable = Trainable::default();
    online.visit(&mut trainable);
    let mut blended = 0;
    for (id, after) in &t_after {
        let before = &t_before[id];
        if !trainable.0.contains(id) {
            assert_eq!(after, before, "EMA must not touch BatchNorm statistics");
            continue;
        }
        let on = &o[id];
        for ((a, b), c) in after.iter().zip(before).zip(on) {
            assert!(
                (a - (tau * b + (1.0 - tau) * c)).abs() < 1e-5,
                "{id}: {a} != {tau}*{b} + (1-{tau})*{c}"
            );
        }
        blended += 1;
    }
    // fc weight + bias, bn gamma + beta, two head Linears (weight + bias) and a head BN (gamma + beta).
    assert_eq!(
        blended, 10,
        "every trainable parameter of f and g is blended"
    );
    // The online network's BatchNorm statistics moved during its forward; the target keeps its own.
    let online_mean = online
        .encoder
        .bn
        .running_mean
        .value_sync()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    let target_mean = target
        .encoder
        .bn
        .running_mean
        .value_sync()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_ne!(
        online_mean, target_mean,
        "target BatchNorm statistics were overwritten by the online ones"
    );
}

#[test]
fn target_batchnorm_statistics_are_independent_of_the_online_network() {
    let ad = device().autodiff();
    ad.seed(2);
    let cfg = toy::config(&[]);
    let online = OnlineNetwork::new(toy_encoder(16, &ad), &cfg.byol, &ad);
    let target = online.make_target();
    let stats = |m: &ssl_framework::byol::TargetNetwork<toy::ToyEncoder>| {
        m.encoder
            .bn
            .running_mean
            .value_sync()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let before = stats(&target);
    let x = Tensor::<2>::random([16, DIM], burn::tensor::Distribution::Normal(3.0, 1.0), &ad);
    let _ = online.forward(x.clone());
    let online_stats = online
        .encoder
        .bn
        .running_mean
        .value_sync()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_ne!(
        online_stats, before,
        "online BatchNorm in training mode updates its statistics"
    );
    assert_eq!(
        stats(&target),
        before,
        "the target's statistics changed when the online network ran"
    );
    // The target runs BatchNorm in training mode (batch statistics) with its own running stats.
    let _ = target.forward(x);
    assert_ne!(stats(&target), before);
}

#[test]
fn lars_excludes_rank_one_parameters_and_scales_weights_by_trust_ratio() {
    let d = device();
    let lars = Lars::new(0.9, 0.1, 1e-3);
    // Rank 1: plain momentum SGD, no weight decay, no trust ratio.
    let w = Tensor::<1>::from_floats([1.0, 2.0], &d);
    let g = Tensor::<1>::from_floats([0.5, -0.5], &d);
    let (out, _) = lars.step(0.1, w, g, None);
    let out = out.into_data().try_to_vec::<f32>().unwrap();
    assert!(
        (out[0] - 0.95).abs() < 1e-6 && (out[1] - 2.05).abs() < 1e-6,
        "{out:?}"
    );
    // Rank 2: u = g + wd w; u *= eta ||w|| / ||u||; w -= lr u.
    let w = Tensor::<2>::from_floats([[3.0, 4.0]], &d);
    let g = Tensor::<2>::from_floats([[0.7, 0.6]], &d);
    let (out, state) = lars.step(0.1, w, g, None);
    let out = out.into_data().try_to_vec::<f32>().unwrap();
    let u = [0.7 + 0.3, 0.6 + 0.4];
    let un = (u[0] * u[0] + u[1] * u[1] as f64).sqrt();
    let ratio = 1e-3 * 5.0 / un;
    let expect = [3.0 - 0.1 * u[0] * ratio, 4.0 - 0.1 * u[1] * ratio];
    assert!(
        (out[0] as f64 - expect[0]).abs() < 1e-6 && (out[1] as f64 - expect[1]).abs() < 1e-6,
        "{out:?} vs {expect:?}"
    );
    assert!(state.is_some());
    // Zero weights: trust ratio 1, no NaN.
    let (out, _) = lars.step(
        0.1,
        Tensor::<2>::zeros([1, 2], &d),
        Tensor::<2>::from_floats([[1.0, 1.0]], &d),
        None,
    );
    assert!(
        out.into_data()
            .try_to_vec::<f32>()
            .unwrap()
            .iter()
            .all(|v| (v + 0.1).abs() < 1e-6)
    );
}

#[test]
fn collapse_metric_is_zero_for_constant_outputs() {
    let d = device();
    let same = Tensor::<2>::ones([32, 16], &d);
    assert!(collapse_std(same) < 1e-6);
    let spread = Tensor::<2>::random([512, 16], burn::tensor::Distribution::Normal(0.0, 1.0), &d);
    let s = collapse_std(spread);
    assert!((s - 0.25).abs() < 0.05, "{s}");
}

fn run_toy(
    out: &std::path::Path,
    overrides: &[&str],
    resume: bool,
) -> ssl_framework::train::RunReport {
    let opts = RunOptions {
        out_dir: out.to_path_buf(),
        data_root: out.to_path_buf(),
        device: device(),
        resume,
        progress: false,
        pause_at_step: None,
        random_init: true,
        stop: Default::default(),
        replicas: Default::default(),
    };
    train_and_evaluate(Toy, toy::config(overrides), &opts).unwrap()
}

#[test]
fn tau_follows_the_cosine_once_per_optimizer_step_with_accumulation() {
    let dir = tempfile::tempdir().unwrap();
    // 96 samples, batch 16: 6 micro-batches per epoch, 3 optimizer steps with accumulation 2.
    let report = run_toy(
        dir.path(),
        &["train.accumulation_steps=2", "train.epochs=3"],
        false,
    );
    let metrics = read_metrics(&dir.path().join("metrics.jsonl")).unwrap();
    assert_eq!(report.results["total_steps"], 9);
    assert_eq!(metrics.len(), 9, "one line per optimizer step");
    for (k, m) in metrics.iter().enumerate() {
        assert_eq!(m.step, k + 1);
        assert!(
            (m.tau - tau_at(0.9, k, 9)).abs() < 1e-12,
            "step {k}: tau {}",
            m.tau
        );
        assert_eq!(m.epoch, k / 3);
    }
    assert!(metrics.last().unwrap().tau > 0.99);
}

#[test]
fn a_constant_tau_schedule_keeps_tau_base_throughout() {
    let dir = tempfile::tempdir().unwrap();
    let report = run_toy(
        dir.path(),
        &["byol.tau_schedule=\"constant\"", "byol.tau_base=0.0"],
        false,
    );
    let metrics = read_metrics(&dir.path().join("metrics.jsonl")).unwrap();
    assert!(!metrics.is_empty());
    assert!(
        metrics.iter().all(|m| m.tau == 0.0),
        "tau stays at tau_base"
    );
    assert_eq!(
        report.results["config"]["byol"]["tau_schedule"], "constant",
        "a non-default schedule is recorded"
    );
    // The default schedule is left out of configs and checkpoints (older runs keep resuming).
    let dir = tempfile::tempdir().unwrap();
    let report = run_toy(dir.path(), &[], false);
    assert!(
        report.results["config"]["byol"]
            .get("tau_schedule")
            .is_none()
    );
}

#[test]
fn evaluation_reads_the_online_encoder_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let report = run_toy(dir.path(), &[], false);
    assert!(report.results["probes"].as_array().unwrap().len() == 2);
    for p in &report.probes {
        assert!(
            p.random_init_top1.is_some(),
            "every probe reports the random-init baseline"
        );
    }
    // Reload the final online encoder; evaluating it again gives the trainer's numbers, and
    // leaves its parameters and BatchNorm statistics untouched.
    let ckpt = dir.path().join("checkpoints").join(format!(
        "step-{:08}",
        report.results["steps"].as_u64().unwrap()
    ));
    let ad = device().autodiff();
    let cfg = toy::config(&[]);
    let online =
        OnlineNetwork::new(toy_encoder(16, &ad), &cfg.byol, &ad).load_file(ckpt.join("online.bpk"));
    let before = snapshot(&online);
    let modality = std::sync::Arc::new(Toy);
    let data = ssl_framework::Modality::load(&Toy, &cfg.data, dir.path()).unwrap();
    let eval_data = ssl_framework::data::EvalData {
        train: std::sync::Arc::new(data.train.items),
        train_labels: data.train.label_sets,
        test: std::sync::Arc::new(data.test.items),
        test_labels: data.test.label_sets,
    };
    let trained = online.encoder.valid();
    let probes = ssl_framework::eval::evaluate_encoder(
        &modality,
        &cfg.eval,
        cfg.seed,
        &trained,
        None,
        &eval_data,
        &std::sync::Arc::new(vec![]),
        2,
        &device(),
    )
    .unwrap()
    .probes;
    assert_eq!(
        probes[0].trained_top1, report.probes[0].trained_top1,
        "the trainer's kNN read the online encoder f"
    );
    assert_eq!(
        before,
        snapshot(&online),
        "evaluation changed the online network"
    );
    // The target's encoder gives different features than the online one after training.
    let target_enc = online.make_target().encoder.valid();
    let probes_t = ssl_framework::eval::evaluate_encoder(
        &modality,
        &cfg.eval,
        cfg.seed,
        &target_enc,
        None,
        &eval_data,
        &std::sync::Arc::new(vec![]),
        2,
        &device(),
    )
    .unwrap()
    .probes;
    assert_eq!(
        probes_t[0].trained_top1, probes[0].trained_top1,
        "a target made now is a copy: same features"
    );
}

#[test]
fn resume_continues_with_the_same_losses() {
    let full = tempfile::tempdir().unwrap();
    run_toy(
        full.path(),
        &["train.checkpoint_every=6", "train.keep_checkpoints=5"],
        false,
    );
    let part = tempfile::tempdir().unwrap();
    let ck =
        |root: &std::path::Path, s: usize| root.join("checkpoints").join(format!("step-{s:08}"));
    std::fs::create_dir_all(part.path().join("checkpoints")).unwrap();
    let src = ck(full.path(), 12);
    let dst = ck(part.path(), 12);
    std::fs::create_dir_all(&dst).unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dst.join(f.file_name())).unwrap();
    }
    let a = run_toy(
        part.path(),
        &["train.checkpoint_every=6", "train.keep_checkpoints=5"],
        true,
    );
    let full_m = read_metrics(&full.path().join("metrics.jsonl")).unwrap();
    let part_m = read_metrics(&part.path().join("metrics.jsonl")).unwrap();
    assert_eq!(part_m.first().unwrap().step, 13);
    for m in &part_m {
        let f = &full_m[m.step - 1];
        assert_eq!(f.step, m.step);
        assert!(
            (f.loss - m.loss).abs() < 1e-5,
            "step {}: {} vs {}",
            m.step,
            f.loss,
            m.loss
        );
        assert_eq!(f.tau, m.tau);
        assert_eq!(f.lr, m.lr);
    }
    assert_eq!(a.results["steps"], 24);
    // Without --resume, an existing run is not overwritten; with --resume and nothing, a clear error.
    let opts = RunOptions {
        out_dir: part.path().to_path_buf(),
        data_root: part.path().to_path_buf(),
        device: device(),
        resume: false,
        progress: false,
        pause_at_step: None,
        random_init: true,
        stop: Default::default(),
        replicas: Default::default(),
    };
    let e = train_and_evaluate(Toy, toy::config(&[]), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--resume"), "{e}");
    let empty = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        out_dir: empty.path().to_path_buf(),
        data_root: empty.path().to_path_buf(),
        device: device(),
        resume: true,
        progress: false,
        pause_at_step: None,
        random_init: true,
        stop: Default::default(),
        replicas: Default::default(),
    };
    assert!(
        train_and_evaluate(Toy, toy::config(&[]), &opts)
            .unwrap_err()
            .to_string()
            .contains("no checkpoint")
    );
}

#[test]
fn batch_larger_than_the_dataset_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions {
        out_dir: dir.path().to_path_buf(),
        data_root: dir.path().to_path_buf(),
        device: device(),
        resume: false,
        progress: false,
        pause_at_step: None,
        random_init: true,
        stop: Default::default(),
        replicas: Default::default(),
    };
    let e = train_and_evaluate(Toy, toy::config(&["train.batch_size=500"]), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("train.batch_size"), "{e}");
}

#[test]
fn config_errors_name_the_key() {
    let o = |s: &str| vec![s.to_string()];
    let e = ssl_framework::config::load_config::<Toy>(
        toy::CONFIG,
        "toy.toml",
        &o("train.batch_size=abc"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("train.batch_size"), "{e}");
    let e = ssl_framework::config::load_config::<Toy>(toy::CONFIG, "toy.toml", &o("train.bogus=1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("bogus"), "{e}");
    let e =
        ssl_framework::config::load_config::<Toy>(toy::CONFIG, "toy.toml", &o("byol.tau_base=2"))
            .unwrap_err()
            .to_string();
    assert!(e.contains("byol.tau_base"), "{e}");
    let e = ssl_framework::config::load_config::<Toy>(
        toy::CONFIG,
        "toy.toml",
        &o("augment.view1=[{type=\"Noise\", amplitude=-1}]"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("augment.view1[0].amplitude"), "{e}");
    // The fine-tuning pipeline is checked like the views, on one line naming its key.
    let e = ssl_framework::config::load_config::<Toy>(
        toy::CONFIG,
        "toy.toml",
        &o("augment.finetune=[{type=\"Noise\", amplitude=0.1}, {type=\"Noise\", amplitude=-1}]"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("augment.finetune[1].amplitude"), "{e}");
    assert!(e.contains("-1"), "{e}");
    assert!(!e.trim_end().contains('\n'), "one line: {e}");
    let e = ssl_framework::config::load_config::<Toy>(
        toy::CONFIG,
        "toy.toml",
        &o("augment.view1=[{type=\"Nope\"}]"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("Nope"), "{e}");
}

#[test]
fn collapse_is_detected_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let report = run_toy(
        dir.path(),
        &["encoder.constant=true", "train.epochs=1"],
        false,
    );
    assert_eq!(report.results["collapsed"], true);
    let metrics = read_metrics(&dir.path().join("metrics.jsonl")).unwrap();
    assert!(
        metrics.iter().all(|m| m.collapsed && m.collapse_std < 1e-3),
        "{metrics:?}"
    );
    let healthy = tempfile::tempdir().unwrap();
    let report = run_toy(healthy.path(), &["train.epochs=1"], false);
    assert_eq!(report.results["collapsed"], false);
}

/// View 1 turns into NaNs in about one sample of a hundred: at some step the loss is NaN.
const POISON_VIEW1: &str =
    "augment.view1=[{ type = \"RandomApply\", p = 0.01, ops = [{ type = \"Poison\" }] }]";

fn toy_options(dir: &std::path::Path) -> RunOptions {
    RunOptions {
        out_dir: dir.to_path_buf(),
        data_root: dir.to_path_buf(),
        device: device(),
        resume: false,
        progress: false,
        pause_at_step: None,
        random_init: true,
        stop: Default::default(),
        replicas: Default::default(),
    }
}

#[test]
fn a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = toy::config(&[
        "train.checkpoint_every=1",
        "train.keep_checkpoints=100",
        POISON_VIEW1,
    ]);
    let e = train_and_evaluate(Toy, cfg, &toy_options(dir.path())).unwrap_err();
    let msg = e.to_string();
    let ssl_framework::train::TrainError::NonFinite { step, .. } = e else {
        panic!("expected a non-finite loss error, got: {msg}")
    };
    assert!(msg.contains(&format!("optimizer step {step}")), "{msg}");
    assert!(
        msg.contains("loss NaN of online(view 1) -> target(view 2)"),
        "the message names the faulty term: {msg}"
    );
    let steps = ssl_framework::checkpoint::list_checkpoints(&dir.path().join("checkpoints"));
    assert_eq!(
        steps.last().copied().unwrap_or(0),
        step - 1,
        "every good step before the fault is checkpointed"
    );
    for s in steps {
        let d = ssl_framework::checkpoint::checkpoint_dir(&dir.path().join("checkpoints"), s);
        let state = ssl_framework::checkpoint::read_state(&d).unwrap();
        assert_eq!(state.step, s);
        assert!(d.join("online.bpk").is_file());
    }
    assert!(!dir.path().join("results.json").exists());
}

#[test]
fn on_nan_rollback_replays_from_the_checkpoint_and_skips_the_faulty_step() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = toy::config(&[
        "train.checkpoint_every=4",
        "train.keep_checkpoints=100",
        "train.on_nan=\"rollback\"",
        "train.max_faults=20",
        POISON_VIEW1,
    ]);
    let report = train_and_evaluate(Toy, cfg, &toy_options(dir.path())).unwrap();
    let total = report.results["total_steps"].as_u64().unwrap() as usize;
    assert_eq!(report.results["steps"].as_u64().unwrap() as usize, total);
    let root = dir.path().join("checkpoints");
    let last = ssl_framework::checkpoint::list_checkpoints(&root);
    let state = ssl_framework::checkpoint::read_state(&ssl_framework::checkpoint::checkpoint_dir(
        &root,
        *last.last().unwrap(),
    ))
    .unwrap();
    assert!(
        !state.skipped_steps.is_empty(),
        "the poisoned batches were met and skipped"
    );
    assert_eq!(
        last.first(),
        Some(&0),
        "a step-0 checkpoint to roll back to"
    );
    // The log has each step once, in order, and only finite losses.
    let m = read_metrics(&dir.path().join("metrics.jsonl")).unwrap();
    assert!(m.windows(2).all(|w| w[0].step < w[1].step), "{m:?}");
    assert!(m.iter().all(|r| r.loss.is_finite()), "{m:?}");
    for p in &report.probes {
        assert!(p.trained_top1.is_finite());
    }
}

#[test]
fn on_nan_skip_refuses_to_go_on_with_poisoned_batchnorm_statistics() {
    // A NaN input also poisons the running statistics of the online BatchNorm layers during its
    // forward pass: skipping the update cannot undo that, so the run stops and says so.
    let dir = tempfile::tempdir().unwrap();
    let cfg = toy::config(&["train.on_nan=\"skip\"", POISON_VIEW1]);
    let msg = train_and_evaluate(Toy, cfg, &toy_options(dir.path()))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("--on-nan rollback"), "{msg}");
}

#[test]
fn non_finite_gradients_and_parameters_are_found_by_name() {
    use ssl_framework::byol::{non_finite_gradient, non_finite_parameter};
    let (_, online, target, x1, x2) = networks_and_views(3);
    let loss = step_loss(&online, &target, x1, x2);
    let mut grads = GradientsParams::from_grads(loss.backward(), &online);
    assert_eq!(non_finite_gradient(&online, &grads), None);
    assert_eq!(non_finite_parameter(&online), None);
    // Replace the gradient of the predictor's last weight by one holding an infinity.
    struct Last(Option<(burn::module::ParamId, Vec<usize>)>);
    impl ModuleVisitor for Last {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if param.val().is_require_grad() {
                self.0 = Some((param.id, param.val().dims().to_vec()));
            }
        }
    }
    let mut last = Last(None);
    online.visit(&mut last);
    let (id, dims) = last.0.unwrap();
    assert_eq!(dims.len(), 1, "the last parameter is a bias");
    let mut values = vec![0f32; dims[0]];
    values[0] = f32::INFINITY;
    let bad = Tensor::<1>::from_data(TensorData::new(values, [dims[0]]), &device().autodiff());
    grads.register::<1>(id, bad);
    let name = non_finite_gradient(&online, &grads).expect("the infinity is found");
    assert!(
        name.contains("predictor") && name.ends_with("bias"),
        "{name}"
    );
}

/// The step function itself: one call moves the online network by the optimizer and the target
/// by exactly `tau * target + (1 - tau) * online` of the *updated* online network, with the lr
/// and tau of `state.step`, and counts one step; a non-finite view changes no parameter and
/// counts nothing.
#[test]
fn update_steps_the_optimizer_then_the_ema_and_a_fault_changes_nothing() {
    let cfg = toy::config(&[]);
    let (_, online, _, x1, x2) = networks_and_views(4);
    let state = ByolState::new(online, ssl_framework::optim::build_optimizer(&cfg.optim));
    let schedules = StepSchedules {
        lr: LrSchedule::Constant(0.5),
        ema: TargetEma::constant(0.75),
        accumulation: 1,
        precision: Precision::F32,
    };
    let (target_before, online_before) = (snapshot(&state.target), snapshot(&state.online));
    let views = |a: Tensor<2>, b: Tensor<2>| {
        std::iter::once(Ok::<_, std::convert::Infallible>(Views {
            view1: a,
            view2: b,
            labels: Vec::new(),
        }))
    };
    // A NaN input: the loss is not finite, nothing moves.
    let nan = x1.clone().mul_scalar(f32::NAN);
    let (state, outcome) = update(
        state,
        views(nan, x2.clone()),
        &schedules,
        false,
        &ReplicaGroup::single(),
    )
    .unwrap();
    assert!(matches!(outcome, StepOutcome::Fault { .. }), "{outcome:?}");
    assert_eq!(state.step, 0);
    let trainable = |m: &OnlineNetwork<toy::ToyEncoder>| {
        let mut t = Trainable::default();
        m.visit(&mut t);
        t.0
    };
    let ids = trainable(&state.online);
    let now = snapshot(&state.online);
    for id in &ids {
        assert_eq!(now[id], online_before[id], "a faulty step moved {id}");
    }
    // A finite step: optimizer, then EMA with the updated online weights.
    let (state, outcome) = update(
        state,
        views(x1, x2),
        &schedules,
        true,
        &ReplicaGroup::single(),
    )
    .unwrap();
    let StepOutcome::Updated {
        loss,
        lr,
        tau,
        collapse,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!((lr, tau, state.step), (0.5, 0.75, 1));
    let collapse = collapse.expect("asked for");
    assert!(collapse.std > 0.0 && collapse.rank >= 1.0, "{collapse:?}");
    assert!(
        collapse.rank <= collapse.max_rank as f64 + 1e-6,
        "{collapse:?}"
    );
    assert!(
        (loss.total - (loss.view1_to_view2 + loss.view2_to_view1)).abs() < 1e-6,
        "{loss:?}"
    );
    let (online_after, target_after) = (snapshot(&state.online), snapshot(&state.target));
    let (mut blended, mut optimized) = (0, 0);
    for (id, after) in &target_after {
        if !ids.contains(id) {
            continue;
        }
        // (A bias before a BatchNorm has a zero gradient: not every tensor moves.)
        optimized += usize::from(online_after[id] != online_before[id]);
        for ((t, b), o) in after.iter().zip(&target_before[id]).zip(&online_after[id]) {
            assert!(
                (t - (0.75 * b + 0.25 * o)).abs() < 1e-5,
                "{id}: {t} {b} {o}"
            );
        }
        blended += 1;
    }
    assert_eq!(blended, 10);
    assert!(
        optimized >= 6,
        "only {optimized} of f and g's tensors moved"
    );
}
