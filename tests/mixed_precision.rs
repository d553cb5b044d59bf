//! Mixed precision on the CPU (`train.precision`, `ssl_framework::byol::precision`): the half
//! copies of the networks, the f32 master weights and what the optimizer, the EMA and the
//! checkpoints see, the step in bf16 and f16 beside the f32 step from the same weights and
//! batches, f16's loss scaling (overflow, back-off, checkpointed for an exact resume), and the
//! refusals. burn's `flex` CPU backend computes in bf16 and f16, so all of it runs here; the
//! GPU path is tested in tests/vulkan.rs.

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::DType;
use common::networks::{
    Named, compare_updates, drawn, first_update, float_tensors, largest_difference, sgd, trainable,
    values_of,
};
use common::{assert_one_line_error, text};
use ssl_framework::byol::{
    ByolState, LossScale, OnlineNetwork, StepOutcome, StepSchedules, TargetEma, Views,
    compute_copy, update,
};
use ssl_framework::config::{ByolConfig, Precision};
use ssl_framework::optim::LrSchedule;
use ssl_framework::replicas::ReplicaGroup;
use ssl_framework::{Encoder, Modality};
use ssl_text::TextModality;
use ssl_vision::encoders::{ResNet, SmallCnn, Stem, VisionEncoder};
use std::convert::Infallible;
use std::path::Path;

const STEPS: usize = 5;
const IMAGE: [usize; 4] = [16, 3, 16, 16];

fn heads() -> ByolConfig {
    ByolConfig {
        projector_hidden: 64,
        projection_dim: 32,
        predictor_hidden: 64,
        predictor: true,
        tau_base: 0.9,
        tau_schedule: Default::default(),
    }
}

fn small_cnn(d: &Device) -> OnlineNetwork<VisionEncoder> {
    OnlineNetwork::new(
        VisionEncoder::SmallCnn(SmallCnn::new(3, &[8, 16, 32], &[1, 2, 2], d)),
        &heads(),
        d,
    )
}

fn schedules(precision: Precision) -> StepSchedules {
    StepSchedules {
        lr: LrSchedule::Constant(0.05),
        ema: TargetEma::constant(0.9),
        accumulation: 1,
        precision,
    }
}

/// The views of step `step`: the same values whatever the precision.
fn views(step: usize, device: &Device) -> Views<Tensor<4>> {
    Views {
        view1: Tensor::<4>::from_data(values_of(&IMAGE, step, 0), device),
        view2: Tensor::<4>::from_data(values_of(&IMAGE, step, 1), device),
        labels: Vec::new(),
    }
}

fn step(
    state: ByolState<VisionEncoder>,
    precision: Precision,
    at: usize,
) -> (ByolState<VisionEncoder>, StepOutcome) {
    let device = Device::flex().autodiff();
    update(
        state,
        std::iter::once(Ok::<_, Infallible>(views(at, &device))),
        &schedules(precision),
        false,
        &ReplicaGroup::single(),
    )
    .expect("a step")
}

/// `(path, dtype, is a normalization layer's)` of every float tensor of `module`.
fn dtypes<M: Module>(module: &M) -> Vec<(String, DType, bool)> {
    struct Collect(Vec<(String, String)>, Vec<(String, DType, bool)>);
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, container: &str) {
            self.0.push((name.to_string(), container.to_string()));
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let path: Vec<&str> = self.0.iter().map(|(n, _)| n.as_str()).collect();
            let norm = self
                .0
                .last()
                .is_some_and(|(_, c)| c == "Struct:BatchNorm" || c == "Struct:LayerNorm");
            self.1.push((path.join("."), p.val().dtype(), norm));
        }
    }
    let mut c = Collect(Vec::new(), Vec::new());
    module.visit(&mut c);
    c.1
}

/// Every float tensor of a module is f32.
fn assert_all_f32<M: Module>(what: &str, module: &M) {
    for (path, dtype, _) in dtypes(module) {
        assert_eq!(dtype, DType::F32, "{what}: {path}");
    }
}

#[test]
fn a_compute_copy_is_half_but_for_normalization_layers_and_shares_their_statistics() {
    let device = Device::flex().autodiff();
    for dtype in [DType::BF16, DType::F16] {
        let online = drawn(1, small_cnn);
        let copy = compute_copy(&online, dtype.into());
        let (master_types, copy_types) = (dtypes(&online), dtypes(&copy));
        assert_eq!(master_types.len(), copy_types.len());
        let mut halves = 0;
        for ((path, master, norm), (_, copied, _)) in master_types.iter().zip(&copy_types) {
            assert_eq!(*master, DType::F32, "{path}");
            let expected = if *norm { DType::F32 } else { dtype };
            assert_eq!(*copied, expected, "{path} in the {dtype:?} copy");
            halves += usize::from(!*norm);
        }
        assert!(
            halves >= 8,
            "convolutions and linear layers are half: {halves}"
        );
        assert!(
            master_types
                .iter()
                .any(|(p, _, norm)| *norm && p.ends_with("running_var")),
            "BatchNorm's statistics are among the f32 tensors"
        );

        // A forward pass of the copy in training mode moves the master's running statistics.
        let running = |m: &OnlineNetwork<VisionEncoder>| -> Vec<Named> {
            float_tensors(&m.valid(), None)
                .into_iter()
                .filter(|(p, _)| p.contains("running_"))
                .collect()
        };
        let before = running(&online);
        let out = copy.forward(views(0, &device).view1);
        assert_eq!(
            out.prediction.dtype(),
            dtype,
            "the heads compute in the half type"
        );
        assert_eq!(
            out.representation.dtype(),
            DType::F32,
            "representations are pooled in f32"
        );
        let after = running(&online);
        assert_eq!(before.len(), after.len());
        assert!(
            before.iter().zip(&after).any(|(a, b)| a.1 != b.1),
            "the copy's BatchNorm updated the master's running statistics"
        );

        // Backward through the copy gives every master parameter an f32 gradient.
        let loss = out.prediction.cast(DType::F32).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &online);
        let trainable = master_types
            .iter()
            .filter(|(p, _, _)| !p.contains("running_"))
            .count();
        let got = float_tensors(&online, Some(&grads));
        assert_eq!(got.len(), trainable, "a gradient for every parameter");
        struct GradTypes<'a>(&'a GradientsParams, Vec<DType>);
        impl ModuleVisitor for GradTypes<'_> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                if let Some(g) = self.0.get::<D>(p.id) {
                    self.1.push(g.dtype());
                }
            }
        }
        let mut types = GradTypes(&grads, Vec::new());
        online.visit(&mut types);
        assert!(types.1.iter().all(|t| *t == DType::F32), "{:?}", types.1);
        assert!(
            got.iter().all(|(_, g)| g.iter().all(|v| v.is_finite())),
            "finite gradients"
        );
    }
}

/// `encoder`'s forward pass on half-precision copies against its f32 pass on `input`: the
/// parameters of BatchNorm and LayerNorm stay f32 in the copies, the others are half; the
/// representation is f32 and within `tols` (bf16, f16) of the f32 one, relative to its largest
/// value, and f16 is the closer.
fn follows_f32<E: Encoder>(name: &str, encoder: &E, input: E::Input, tols: (f32, f32)) {
    assert!(encoder.mixed_precision());
    let full = vec![(
        "representation".to_string(),
        read(encoder.forward(input.clone())),
    )];
    let mut diffs = Vec::new();
    for (dtype, tol) in [(DType::BF16, tols.0), (DType::F16, tols.1)] {
        let copy = compute_copy(encoder, dtype.into());
        let types = dtypes(&copy);
        assert!(types.iter().any(|(_, _, norm)| *norm), "{name} has norms");
        for (path, t, norm) in &types {
            let expected = if *norm { DType::F32 } else { dtype };
            assert_eq!(*t, expected, "{name}: {path}");
        }
        let half = copy.forward(input.clone());
        assert_eq!(
            half.dtype(),
            DType::F32,
            "{name}: the representation is pooled in f32"
        );
        let half = vec![("representation".to_string(), read(half))];
        let (diff, at) = largest_difference(&half, &full);
        eprintln!("{name}, {dtype:?} against f32: largest difference {diff:.2e} ({at})");
        assert!(
            diff > 0.0 && diff <= tol,
            "{name} {dtype:?}: {diff:e}: {at}"
        );
        diffs.push(diff);
    }
    assert!(
        diffs[1] < diffs[0],
        "{name}: f16 is closer to f32 than bf16: {diffs:?}"
    );
}

#[test]
fn the_text_encoder_keeps_layer_norm_in_f32_and_runs_in_half_types() {
    let device = Device::flex().autodiff();
    let cfg = ssl_framework::config::load_config::<TextModality>(
        include_str!("../configs/text/vader.toml"),
        "configs/text/vader.toml",
        // Without dropout, so that forward passes compare.
        &["encoder.dropout=0.0".to_string()],
    )
    .unwrap();
    let encoder = drawn(2, |d| {
        TextModality::default()
            .init_encoder(&cfg.encoder, &cfg.data, d)
            .unwrap()
    });
    let [batch, len] = [4, 12];
    let ids = Tensor::<2, Int>::from_data(
        TensorData::new(
            (0..batch * len).map(|i| (i % 97) as i64).collect(),
            [batch, len],
        ),
        &device,
    );
    let padding = Tensor::<2, Int>::from_data(
        TensorData::new(
            (0..batch * len)
                .map(|i| i64::from(i % len >= 6 + i / len))
                .collect(),
            [batch, len],
        ),
        &device,
    )
    .equal_elem(1);
    let input = ssl_text::encoder::TextInput {
        ids,
        padding,
        dropout: None,
    };
    // Measured: bf16 6.1e-3 of the largest value, f16 9.0e-4 (8 and 11 bits of mantissa).
    follows_f32("text encoder", &encoder, input.clone(), (3e-2, 5e-3));
    // The views' per-sequence embedding dropout (an f32 mask on half activations) in f16.
    let rates = Tensor::<1>::from_data(TensorData::new(vec![0.1f32, 0.0, 0.2, 0.1], [4]), &device);
    let dropped = compute_copy(&encoder, DType::F16.into()).forward(ssl_text::encoder::TextInput {
        dropout: Some(rates),
        ..input
    });
    assert!(read(dropped).iter().all(|v| v.is_finite()));
}

#[test]
fn the_audio_encoder_runs_in_half_types() {
    let cfg = ssl_framework::config::load_config::<ssl_audio::AudioModality>(
        include_str!("../configs/audio/fsdd.toml"),
        "configs/audio/fsdd.toml",
        &["encoder.dropout=0.0".to_string()],
    )
    .unwrap();
    let encoder = drawn(3, |d| {
        ssl_audio::AudioModality::default()
            .init_encoder(&cfg.encoder, &cfg.data, d)
            .unwrap()
    });
    let device = Device::flex().autodiff();
    let (mels, frames) = (cfg.data.n_mels, cfg.data.min_frames);
    let steps = frames >> cfg.encoder.blocks;
    let input = ssl_audio::encoder::AudioInput {
        x: Tensor::from_data(values_of(&[4, 1, mels, frames], 0, 0), &device),
        // The last clip's second half is batch padding (an f32 mask).
        valid: Tensor::from_data(
            TensorData::new(
                (0..4 * steps)
                    .map(|i| if i >= 3 * steps + steps / 2 { 0.0 } else { 1.0 })
                    .collect::<Vec<f32>>(),
                [4, steps],
            ),
            &device,
        ),
    };
    // Measured: bf16 9.3e-3 of the largest value, f16 1.5e-3.
    follows_f32("audio encoder", &encoder, input, (3e-2, 5e-3));
}

fn read<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap()
}

/// `STEPS` steps in `precision` from the small CNN drawn with seed 5: each step's loss, the
/// final state.
fn run(precision: Precision) -> (Vec<f64>, ByolState<VisionEncoder>) {
    let mut state = ByolState::new(drawn(5, small_cnn), sgd());
    let mut losses = Vec::new();
    for at in 0..STEPS {
        let loss;
        (state, loss) = updated(state, precision, at);
        losses.push(loss);
    }
    (losses, state)
}

/// A step on batch `at` that updates: f16 retries the batch after an overflow (which updated
/// no parameter: it halved the scale, moved the step count and BatchNorm's running statistics
/// on), as many times as it takes.
fn updated(
    mut state: ByolState<VisionEncoder>,
    precision: Precision,
    at: usize,
) -> (ByolState<VisionEncoder>, f64) {
    loop {
        let (next, outcome) = step(state, precision, at);
        state = next;
        match outcome {
            StepOutcome::Updated { loss, .. } => return (state, loss.total),
            StepOutcome::Overflow { .. } if precision == Precision::F16 => {}
            other => panic!("{precision:?} batch {at}: {other:?}"),
        }
    }
}

#[test]
fn a_mixed_precision_step_keeps_f32_master_weights_and_follows_the_f32_step() {
    let start = trainable(&ByolState::new(drawn(5, small_cnn), sgd()));
    let update_of = |state: &ByolState<VisionEncoder>| -> Vec<f32> {
        trainable(state)
            .iter()
            .zip(&start)
            .map(|(a, b)| a - b)
            .collect()
    };
    let (f32_losses, _) = run(Precision::F32);
    // The first step from the same weights and batch: the loss, and the update of every
    // parameter (online, and the target's EMA of it) as one vector.
    let first = |precision| {
        let (state, loss) = updated(ByolState::new(drawn(5, small_cnn), sgd()), precision, 0);
        (loss, update_of(&state))
    };
    let (f32_loss, f32_update) = first(Precision::F32);
    // Measured on flex (AMD EPYC, Zen 4): bf16 loss 1.4e-3 apart, update cosine 0.9935,
    // length ratio 0.980; f16 (after one overflow at 2^16) 3.8e-5, 0.9992, 1.0013: bf16's
    // 8-bit mantissa against f16's 11 bits.
    let mut cosines = Vec::new();
    for (precision, loss_tol, cosine_min, ratio_tol) in [
        (Precision::Bf16, 1e-2, 0.98, 0.05),
        (Precision::F16, 1e-3, 0.998, 0.005),
    ] {
        let (loss, update) = first(precision);
        let loss_diff = (loss - f32_loss).abs() / f32_loss;
        let (cosine, ratio) = compare_updates(&update, &f32_update);
        eprintln!(
            "{precision:?} against f32, first step: loss {loss} against {f32_loss} ({loss_diff:.2e}), update cosine {cosine:.6}, length ratio {ratio:.5}"
        );
        // The half path ran (its results are not f32's) and stayed close to it.
        assert!(loss_diff > 0.0, "{precision:?} computed exactly as f32");
        assert!(loss_diff <= loss_tol, "{precision:?} loss: {loss_diff:e}");
        assert!(
            cosine >= cosine_min,
            "{precision:?} update: cosine {cosine}"
        );
        assert!(
            (ratio - 1.0).abs() <= ratio_tol,
            "{precision:?} update: {ratio}"
        );
        cosines.push(cosine);

        // Five steps: f32 master weights throughout, and the loss falls as f32's does (rounding
        // differences grow step by step at this rate: the trajectories part by a few percent).
        let (losses, state) = run(precision);
        assert_all_f32("online network", &state.online);
        assert_all_f32("target network", &state.target);
        eprintln!("{precision:?} losses {losses:?}; f32 {f32_losses:?}");
        let last = STEPS - 1;
        assert!(losses[last] < 0.5 * losses[0], "{losses:?}");
        assert!(
            (losses[last] - f32_losses[last]).abs() <= 0.1 * f32_losses[last],
            "{losses:?} against {f32_losses:?}"
        );
        match precision {
            Precision::F16 => {
                // Backed off from 2^16 by one halving per overflow, then 5 good steps.
                let scale = state.loss_scale.expect("an f16 run has a loss scale");
                eprintln!("f16 loss scale after {STEPS} updates: {scale:?}");
                assert_eq!(scale.good_steps, STEPS);
                assert_eq!(
                    scale.scale,
                    LossScale::INITIAL / 2f64.powi(scale.overflows as i32)
                );
            }
            _ => assert_eq!(state.loss_scale, None, "only f16 scales the loss"),
        }
    }
    assert!(
        cosines[1] > cosines[0],
        "f16 is closer to f32 than bf16: {cosines:?}"
    );
    assert!(
        f32_losses[STEPS - 1] < 0.5 * f32_losses[0],
        "{f32_losses:?}"
    );
}

/// ResNet-18 (downsampling shortcuts, residual sums) and a step of two accumulated
/// micro-batches (f16's scale with the accumulation's mean): the first update in bf16 and f16
/// against f32's.
#[test]
fn a_resnet_and_accumulated_micro_batches_follow_the_f32_step() {
    let resnet = |d: &Device| {
        OnlineNetwork::new(
            VisionEncoder::ResNet(ResNet::new(18, Stem::Cifar, 16, d)),
            &ByolConfig {
                projector_hidden: 128,
                projection_dim: 64,
                predictor_hidden: 128,
                ..heads()
            },
            d,
        )
    };
    // Measured on flex (AMD EPYC, Zen 4), the update's cosine to f32's: ResNet-18 0.872 in
    // bf16, 0.976 in f16; the small CNN over 2 micro-batches 0.976 and 0.9992. A deep
    // network's backward pass through BatchNorm subtracts large, nearly equal terms (at
    // initialization the loss's gradient is a small residual of them), so the rounding of
    // half-precision gradients (bf16 keeps 8 bits, f16 11) shows more than in the small CNN;
    // the same ResNet step on two devices in f32 agrees to 1e-6 (tests/vulkan.rs).
    for (what, network, accumulation, bf16_min, f16_min) in [
        (
            "ResNet-18",
            &resnet as &dyn Fn(&Device) -> OnlineNetwork<VisionEncoder>,
            1,
            0.8,
            0.95,
        ),
        ("small CNN, 2 micro-batches", &small_cnn, 2, 0.95, 0.995),
    ] {
        let image = [8, 3, 16, 16];
        let cpu = Device::flex().autodiff();
        let (f32_loss, f32_update, _) =
            first_update(network, &cpu, Precision::F32, image, accumulation);
        for (precision, cosine_min) in [(Precision::Bf16, bf16_min), (Precision::F16, f16_min)] {
            let (loss, update, _) = first_update(network, &cpu, precision, image, accumulation);
            let (cosine, ratio) = compare_updates(&update, &f32_update);
            let loss_diff = (loss - f32_loss).abs() / f32_loss;
            eprintln!(
                "{what}, {precision:?} against f32: loss {loss_diff:.2e}, update cosine {cosine:.6}, length ratio {ratio:.5}"
            );
            assert!(
                loss_diff <= 1e-2,
                "{what} {precision:?}: loss {loss_diff:e}"
            );
            assert!(
                cosine >= cosine_min,
                "{what} {precision:?}: cosine {cosine}"
            );
            assert!(
                (ratio - 1.0).abs() <= 0.05,
                "{what} {precision:?}: length {ratio}"
            );
        }
    }
}

#[test]
fn f16_gradients_that_overflow_skip_the_update_and_halve_the_scale() {
    let mut state = ByolState::new(drawn(5, small_cnn), sgd());
    // So large that the scaled gradients overflow f16 (largest value 65504) at once.
    state.loss_scale = Some(LossScale {
        scale: 1e30,
        good_steps: 7,
        overflows: 0,
    });
    let before = trainable(&state);
    let (state, outcome) = step(state, Precision::F16, 0);
    let StepOutcome::Overflow { scale, lr, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!((scale, lr), (5e29, 0.05));
    assert_eq!(
        state.loss_scale,
        Some(LossScale {
            scale: 5e29,
            good_steps: 0,
            overflows: 1
        })
    );
    assert_eq!(state.step, 1, "the schedules move on");
    assert_eq!(trainable(&state), before, "no update, no EMA");

    // A non-finite loss (NaN inputs) is a fault for the fault policy whatever the scale: only
    // the gradients of a finite loss overflow.
    let device = Device::flex().autodiff();
    let nan = Views {
        view1: Tensor::<4>::full(IMAGE, f32::NAN, &device),
        view2: Tensor::<4>::full(IMAGE, f32::NAN, &device),
        labels: Vec::new(),
    };
    let (_, outcome) = update(
        state,
        std::iter::once(Ok::<_, Infallible>(nan)),
        &schedules(Precision::F16),
        false,
        &ReplicaGroup::single(),
    )
    .unwrap();
    let StepOutcome::Fault { what, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert!(what.contains("loss"), "{what}");
}

#[test]
fn every_precision_is_accepted_on_the_cpu() {
    for p in [Precision::F32, Precision::Bf16, Precision::F16] {
        p.check_device(&Device::flex())
            .expect("flex computes in f32, bf16 and f16");
    }
}

/// `ssl train` on a CIFAR-10 slice on the CPU, 8 steps (2 epochs of 4), a checkpoint every 4.
fn train(data: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    common::train_small_cifar(data, out, "cpu", extra)
}

/// `(step, loss, loss_scale)` of each line of a run's `metrics.jsonl`.
fn metrics(run: &Path) -> Vec<(u64, f64, Option<f64>)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["step"].as_u64().unwrap(),
                v["loss"].as_f64().unwrap(),
                v["loss_scale"].as_f64(),
            )
        })
        .collect()
}

#[test]
fn train_in_f16_checkpoints_the_loss_scale_and_resumes_exactly() {
    let test = "train_in_f16_checkpoints_the_loss_scale_and_resumes_exactly";
    let Some(data) = ssl_test_support::cifar_slice(test, 20, 10) else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    let run = out.path().join("f16");
    let f16 = ["--precision", "f16"];
    let o = train(&data, &run, &f16);
    assert!(o.status.success(), "{}", text(&o));
    let table = text(&o);
    assert!(table.contains("knn") && table.contains("linear"), "{table}");
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("precision = \"f16\""), "{config}");
    let lines = metrics(&run);
    eprintln!("{test}: {lines:?}");
    assert_eq!(lines.len(), 8);
    assert!(lines.iter().all(|(_, l, s)| l.is_finite() && s.is_some()));
    let stored: LossScale = serde_json::from_slice(
        &std::fs::read(run.join("checkpoints/step-00000004/loss_scale.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        Some(stored.scale),
        lines[3].2,
        "the checkpoint holds step 4's scale"
    );

    // Interrupted after step 4 and resumed: the same steps 5 to 8, bit for bit.
    let resumed = out.path().join("resumed");
    let name = "step-00000004";
    let dst = resumed.join("checkpoints").join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for f in std::fs::read_dir(run.join("checkpoints").join(name)).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dst.join(f.file_name())).unwrap();
    }
    let kept: Vec<String> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .take(4)
        .map(str::to_string)
        .collect();
    std::fs::write(resumed.join("metrics.jsonl"), kept.join("\n") + "\n").unwrap();
    let o = train(&data, &resumed, &[&f16[..], &["--resume"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("resuming from"), "{}", text(&o));
    assert_eq!(
        metrics(&resumed),
        lines,
        "the resumed run is the uninterrupted one"
    );
    let probes = |r: &Path| -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(r.join("results.json")).unwrap())
            .unwrap()["probes"]
            .clone()
    };
    assert_eq!(probes(&resumed), probes(&run), "the same final encoder");

    // The scale comes from the checkpoint: one seeded 1 step short of its growth doubles at
    // step 5, and the run's overflows go on from the stored count.
    let seeded = out.path().join("seeded");
    let dst = seeded.join("checkpoints").join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for f in std::fs::read_dir(run.join("checkpoints").join(name)).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dst.join(f.file_name())).unwrap();
    }
    let stored = LossScale {
        scale: 1024.0,
        good_steps: LossScale::GROWTH_INTERVAL - 1,
        overflows: 3,
    };
    std::fs::write(
        dst.join("loss_scale.json"),
        serde_json::to_vec(&stored).unwrap(),
    )
    .unwrap();
    let o = train(&data, &seeded, &[&f16[..], &["--resume"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let step5: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(seeded.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(step5["step"], 5);
    assert_eq!(step5["loss_scale"], 2048.0, "{step5}");
    assert_eq!(step5["overflow_steps"], 3, "{step5}");

    // A resume in another precision is refused: the checkpoint's config differs.
    let o = train(
        &data,
        &resumed,
        &["--set", "train.precision=\"bf16\"", "--resume"],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("different config"), "{}", text(&o));
}

#[test]
fn a_precision_that_is_not_one_is_a_one_line_error_naming_the_key() {
    let out = tempfile::tempdir().unwrap();
    let o = common::ssl(&[
        "train",
        "--modality",
        "vision",
        "--data",
        out.path().to_str().unwrap(),
        "--out",
        out.path().join("run").to_str().unwrap(),
        "--set",
        "train.precision=\"fp8\"",
    ]);
    assert_one_line_error(&o, &["train.precision", "fp8"]);
}

#[test]
fn bench_times_the_step_in_a_half_type() {
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("bench.json");
    let o = common::ssl(&[
        "bench",
        "--workloads",
        "step-smallcnn",
        "--batch",
        "8",
        "--steps",
        "2",
        "--precision",
        "f16",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("--precision f16"), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["precision"], "f16");
    assert_eq!(report["rows"][0]["workload"], "step-smallcnn (f16)");
    assert!(report["rows"][0]["figure"].as_f64().unwrap() > 0.0);
    let o = common::ssl(&[
        "bench",
        "--workloads",
        "step-smallcnn",
        "--precision",
        "fp8",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("`fp8` is not a precision (f32, bf16 or f16)"),
        "{}",
        text(&o)
    );
}
