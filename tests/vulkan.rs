//! The GPU path on a Vulkan device (`cargo test --features wgpu --test vulkan`; CI runs it on
//! Mesa's software Vulkan driver, lavapipe, with WGSL shaders): burn's CubeCL ops where the CPU
//! build runs our kernels, from the same initial weights and the same batches.
//!
//! - the BYOL step ([`update`]) on `vulkan` and on `cpu`, 5 steps, small CNN (SGD) and ResNet-18
//!   (LARS): losses agree within [`LOSS_TOL`], parameters (BatchNorm statistics included)
//!   within each test's stated tolerance;
//! - the audio and text encoders, forward and backward, on both devices;
//! - `ssl train --device vulkan` end to end on a CIFAR-10 slice, and a checkpoint written on one
//!   device resumed on the other.
//! - mixed precision: a type the device has (f16 on lavapipe) gives the CPU's step in that type;
//!   one it lacks (bf16) is refused in one line;
//! - `ssl bench --device vulkan` with the device's peak memory.
//!
//! Without a Vulkan driver the tests say SKIPPED and pass, unless `SSL_REQUIRE_VULKAN=1` (set
//! by `.ci/run`), where they fail.

#![cfg(any(feature = "wgpu", feature = "vulkan"))]

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::DeviceKind;
use burn::tensor::wgpu::WgpuBackend;
use common::networks::{
    Named, compare_updates, drawn, first_update, float_tensors, largest_difference, sgd, values_of,
};
use common::text;
use ssl_audio::AudioModality;
use ssl_audio::encoder::AudioInput;
use ssl_framework::byol::{
    ByolState, OnlineNetwork, StepOutcome, StepSchedules, TargetEma, Views, update,
};
use ssl_framework::config::{ByolConfig, Precision, load_config};
use ssl_framework::optim::{LrSchedule, build_optimizer};
use ssl_framework::replicas::ReplicaGroup;
use ssl_framework::{Encoder, Modality};
use ssl_text::TextModality;
use ssl_text::encoder::TextInput;
use ssl_vision::encoders::{ResNet, SmallCnn, Stem, VisionEncoder};
use std::convert::Infallible;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// Largest relative difference of a step's loss between the devices, `|a - b| / max(|b|, 1)`,
/// in the step tests and between a run and its resumption on the other device (measured on
/// lavapipe: 4.2e-7 small CNN, 3.5e-6 ResNet-18, 5e-7 resumed runs).
const LOSS_TOL: f64 = 1e-4;
/// Largest relative difference of an encoder's outputs and gradients between the devices (see
/// [`largest_difference`]; measured: audio 9.8e-7 and 5.8e-4 (a bias before BatchNorm whose
/// gradient is zero but for rounding), text 2.2e-7 and 3.5e-4, `ssl embed` 1.8e-7).
const ENCODER_TOL: f32 = 1e-3;

const STEPS: usize = 5;

/// The Vulkan device, opened once per test process; `None` (after saying SKIPPED) where the
/// machine has no Vulkan driver and `SSL_REQUIRE_VULKAN` is not `1`.
fn vulkan(test: &str) -> Option<Device> {
    static DEVICE: OnlineCell = OnceLock::new();
    let opened = DEVICE.get_or_init(|| {
        Device::wgpu_options()
            .device_kind(DeviceKind::DefaultDevice)
            .graphics_api(WgpuBackend::Vulkan)
            .init()
            .map_err(|e| e.to_string())
    });
    match opened {
        Ok(d) => Some(d.clone()),
        Err(e) if std::env::var("SSL_REQUIRE_VULKAN").as_deref() == Ok("1") => {
            panic!("{test}: SSL_REQUIRE_VULKAN=1 and no Vulkan device opens: {e}")
        }
        Err(e) => {
            eprintln!(
                "SKIPPED {test}: no Vulkan device ({e}); install a Vulkan driver (Mesa's: mesa-vulkan-drivers, libvulkan1)"
            );
            None
        }
    }
}

type OnlineCell = OnceLock<Result<Device, String>>;

/// `STEPS` BYOL steps of `state` on `device` (autodiff): the loss of each step and the online
/// and target networks' float tensors after the last.
fn train_steps(
    mut state: ByolState<VisionEncoder>,
    schedules: &StepSchedules,
    image: [usize; 4],
    device: &Device,
) -> (Vec<f64>, Vec<Named>) {
    let mut losses = Vec::new();
    for step in 0..STEPS {
        let views = Views {
            view1: Tensor::<4>::from_data(values_of(&image, step, 0), device),
            view2: Tensor::<4>::from_data(values_of(&image, step, 1), device),
            labels: Vec::new(),
        };
        let (next, outcome) = update(
            state,
            std::iter::once(Ok::<_, Infallible>(views)),
            schedules,
            false,
            &ReplicaGroup::single(),
        )
        .expect("a step");
        state = next;
        let StepOutcome::Updated { loss, .. } = outcome else {
            panic!("step {step}: {outcome:?}")
        };
        losses.push(loss.total);
    }
    let mut tensors = float_tensors(&state.online.valid(), None);
    for (name, t) in float_tensors(&state.target.valid(), None) {
        tensors.push((format!("target.{name}"), t));
    }
    (losses, tensors)
}

/// The step on both devices from the same initial network (drawn on the CPU, then forked to
/// the GPU): losses and parameters agree.
fn step_agrees(
    test: &str,
    encoder: impl Fn(&Device) -> VisionEncoder,
    byol: ByolConfig,
    optimizer: impl Fn() -> ModuleOptimizer,
    (image, lr): ([usize; 4], f64),
    param_tol: f32,
) {
    let Some(gpu) = vulkan(test) else { return };
    let cpu = Device::flex().autodiff();
    let gpu = gpu.autodiff();
    let network = |d: &Device| OnlineNetwork::new(encoder(d), &byol, d);
    let online = drawn(5, network);
    let on_gpu = drawn(5, network).fork(&gpu);
    assert_eq!(
        float_tensors(&on_gpu.valid(), None),
        float_tensors(&online.valid(), None),
        "the same initial weights on both devices"
    );
    let schedules = StepSchedules {
        lr: LrSchedule::Constant(lr),
        ema: TargetEma::constant(0.9),
        accumulation: 1,
        precision: Precision::F32,
    };
    let started = std::time::Instant::now();
    let (cpu_losses, cpu_params) =
        train_steps(ByolState::new(online, optimizer()), &schedules, image, &cpu);
    let cpu_seconds = started.elapsed().as_secs_f64();
    let started = std::time::Instant::now();
    let (gpu_losses, gpu_params) =
        train_steps(ByolState::new(on_gpu, optimizer()), &schedules, image, &gpu);
    let gpu_seconds = started.elapsed().as_secs_f64();
    let loss_diff = cpu_losses
        .iter()
        .zip(&gpu_losses)
        .map(|(c, g)| (c - g).abs() / c.abs().max(1.0))
        .fold(0.0f64, f64::max);
    let (param_diff, at) = largest_difference(&gpu_params, &cpu_params);
    eprintln!(
        "{test}: {STEPS} steps; losses cpu {cpu_losses:?}, vulkan {gpu_losses:?}; largest loss difference {loss_diff:.2e} (tolerance {LOSS_TOL:e}); largest parameter difference {param_diff:.2e}: {at} (tolerance {param_tol:e}); cpu {cpu_seconds:.1} s, vulkan {gpu_seconds:.1} s"
    );
    assert!(
        loss_diff <= LOSS_TOL,
        "{test}: losses differ by {loss_diff:e}: cpu {cpu_losses:?}, vulkan {gpu_losses:?}"
    );
    assert!(
        param_diff <= param_tol,
        "{test}: parameters differ by {param_diff:e}: {at}"
    );
    // The comparison is of training, not of constants.
    assert!(cpu_losses[0] != cpu_losses[STEPS - 1]);
}

fn heads(hidden: usize, out: usize) -> ByolConfig {
    ByolConfig {
        projector_hidden: hidden,
        projection_dim: out,
        predictor_hidden: hidden,
        predictor: true,
        tau_base: 0.9,
        tau_schedule: Default::default(),
    }
}

#[test]
fn byol_step_small_cnn_agrees_on_vulkan_and_cpu() {
    step_agrees(
        "byol_step_small_cnn_agrees_on_vulkan_and_cpu",
        |d| VisionEncoder::SmallCnn(SmallCnn::new(3, &[8, 16, 32], &[1, 2, 2], d)),
        heads(64, 32),
        sgd,
        ([16, 3, 16, 16], 0.05),
        // Measured 3.4e-6.
        1e-4,
    );
}

/// ResNet-18 on 8 images of 16x16 amplifies rounding differences step by step (its CPU path
/// also sums in other orders: Winograd convolutions): at lr 0.05, with SGD or LARS, the losses
/// of the devices part by 2e-3 by the fourth step, though the first agree to 1.3e-6. At lr 0.002
/// the steps stay within rounding: losses 3.5e-6, parameters 9.3e-4 of their tensor's scale
/// (BatchNorm shifts, a hundredth of the weights').
#[test]
fn byol_step_resnet18_with_lars_agrees_on_vulkan_and_cpu() {
    // configs/vision/cifar10.toml's optimizer (LARS, trust ratio on the device).
    let cfg = load_config::<ssl_vision::VisionModality>(
        include_str!("../configs/vision/cifar10.toml"),
        "configs/vision/cifar10.toml",
        &[],
    )
    .unwrap();
    step_agrees(
        "byol_step_resnet18_with_lars_agrees_on_vulkan_and_cpu",
        |d| VisionEncoder::ResNet(ResNet::new(18, Stem::Cifar, 16, d)),
        heads(128, 64),
        || build_optimizer(&cfg.optim),
        ([8, 3, 16, 16], 0.002),
        5e-3,
    );
}

/// `encoder` forward and backward (of the sum of its outputs) on both devices from the same
/// weights and inputs: outputs and gradients agree.
fn encoder_agrees<E: Encoder>(
    test: &str,
    encoder: impl Fn(&Device) -> E,
    input: impl Fn(&Device) -> E::Input,
) {
    let Some(gpu) = vulkan(test) else { return };
    let cpu = Device::flex().autodiff();
    let gpu = gpu.autodiff();
    let on_cpu = drawn(7, &encoder);
    let on_gpu = drawn(7, &encoder).fork(&gpu);
    let run = |e: &E, device: &Device| {
        let out = e.forward(input(device));
        let values = out
            .clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        // Backward of a fixed random projection of the outputs (their plain sum would give
        // gradients of zero through the normalization layers, leaving rounding noise to compare).
        let projection = Tensor::<2>::from_data(values_of(&out.dims(), 3, 0), device);
        let grads = GradientsParams::from_grads((out * projection).sum().backward(), e);
        (values, float_tensors(e, Some(&grads)))
    };
    let (cpu_out, cpu_grads) = run(&on_cpu, &cpu);
    let (gpu_out, gpu_grads) = run(&on_gpu, &gpu);
    assert!(!cpu_grads.is_empty(), "{test}: no gradients");
    let (out_diff, out_at) = largest_difference(
        &[("output".to_string(), gpu_out)],
        &[("output".to_string(), cpu_out)],
    );
    let (grad_diff, at) = largest_difference(&gpu_grads, &cpu_grads);
    eprintln!(
        "{test}: largest output difference {out_diff:.2e} ({out_at}), gradient difference {grad_diff:.2e} ({at}; {} gradients; tolerance {ENCODER_TOL:e})",
        cpu_grads.len()
    );
    assert!(
        out_diff <= ENCODER_TOL,
        "{test}: outputs differ by {out_diff:e}"
    );
    assert!(
        grad_diff <= ENCODER_TOL,
        "{test}: gradients differ by {grad_diff:e}: {at}"
    );
}

#[test]
fn audio_encoder_forward_and_backward_agree_on_vulkan_and_cpu() {
    // Dropout off: its masks are drawn on each device's own random stream.
    let cfg = load_config::<AudioModality>(
        include_str!("../configs/audio/fsdd.toml"),
        "configs/audio/fsdd.toml",
        &["encoder.dropout=0.0".to_string()],
    )
    .unwrap();
    let (mels, frames) = (cfg.data.n_mels, cfg.data.min_frames);
    let steps = frames >> cfg.encoder.blocks;
    encoder_agrees(
        "audio_encoder_forward_and_backward_agree_on_vulkan_and_cpu",
        |d| {
            AudioModality::default()
                .init_encoder(&cfg.encoder, &cfg.data, d)
                .unwrap()
        },
        |d| AudioInput {
            x: Tensor::from_data(values_of(&[4, 1, mels, frames], 0, 0), d),
            // The last sample's second half is batch padding.
            valid: Tensor::from_data(
                TensorData::new(
                    (0..4 * steps)
                        .map(|i| if i >= 3 * steps + steps / 2 { 0.0 } else { 1.0 })
                        .collect::<Vec<f32>>(),
                    [4, steps],
                ),
                d,
            ),
        },
    );
}

#[test]
fn text_encoder_forward_and_backward_agree_on_vulkan_and_cpu() {
    // Dropout off: its masks are drawn on each device's own random stream.
    let cfg = load_config::<TextModality>(
        include_str!("../configs/text/vader.toml"),
        "configs/text/vader.toml",
        &["encoder.dropout=0.0".to_string()],
    )
    .unwrap();
    let (len, vocab) = (cfg.data.max_len, cfg.data.vocab_size as i64);
    let (batch, own) = (4usize, [len, len / 2, 3 * len / 4, 5]);
    let ids: Vec<i64> = (0..batch * len)
        .map(|i| {
            if i % len < own[i / len] {
                3 + (i as i64 * 7919) % (vocab - 3)
            } else {
                0
            }
        })
        .collect();
    let padding: Vec<bool> = (0..batch * len).map(|i| i % len >= own[i / len]).collect();
    encoder_agrees(
        "text_encoder_forward_and_backward_agree_on_vulkan_and_cpu",
        |d| {
            TextModality::default()
                .init_encoder(&cfg.encoder, &cfg.data, d)
                .unwrap()
        },
        |d| TextInput {
            ids: Tensor::from_data(TensorData::new(ids.clone(), [batch, len]), d),
            padding: Tensor::from_data(TensorData::new(padding.clone(), [batch, len]), d),
            dropout: None,
        },
    );
}

/// `ssl train --modality vision` on the slice with checkpoints every 4 steps, on `device`.
fn train(data: &Path, out: &Path, device: &str, extra: &[&str]) -> std::process::Output {
    common::train_small_cifar(data, out, device, extra)
}

/// The losses of a run's `metrics.jsonl`, by step.
fn losses(run: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap())
        })
        .collect()
}

/// A run folder holding only `from`'s step-4 checkpoint and its first 4 metrics lines: a run
/// interrupted there.
fn interrupted_copy(from: &Path, to: &Path) {
    let name = "step-00000004";
    let dst = to.join("checkpoints").join(name);
    std::fs::create_dir_all(&dst).unwrap();
    for f in std::fs::read_dir(from.join("checkpoints").join(name)).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dst.join(f.file_name())).unwrap();
    }
    let metrics = std::fs::read_to_string(from.join("metrics.jsonl")).unwrap();
    let first: Vec<&str> = metrics.lines().take(4).collect();
    std::fs::write(to.join("metrics.jsonl"), first.join("\n") + "\n").unwrap();
}

/// The two runs' losses agree step by step, within [`LOSS_TOL`] (a run resumed on the other
/// device computes its later steps there, from the same checkpoint).
fn assert_losses_agree(what: &str, a: &[(u64, f64)], b: &[(u64, f64)]) {
    assert_eq!(a.len(), b.len(), "{what}: {a:?} against {b:?}");
    for ((sa, la), (sb, lb)) in a.iter().zip(b) {
        assert_eq!(sa, sb);
        let d = (la - lb).abs() / lb.abs().max(1.0);
        assert!(d <= LOSS_TOL, "{what}: step {sa}: {la} against {lb}");
    }
}

#[test]
fn train_on_vulkan_then_resume_across_devices() {
    let test = "train_on_vulkan_then_resume_across_devices";
    if vulkan(test).is_none() {
        return;
    }
    let Some(data) = ssl_test_support::cifar_slice(test, 20, 10) else {
        return;
    };
    let out = tempfile::tempdir().unwrap();
    // The whole run on each device. They start from different weights (each device draws its
    // own from the seed), so their losses are not compared with each other.
    let (gpu_run, cpu_run) = (out.path().join("vulkan"), out.path().join("cpu"));
    let started = std::time::Instant::now();
    let o = train(&data, &gpu_run, "vulkan", &[]);
    assert!(o.status.success(), "{}", text(&o));
    let gpu_seconds = started.elapsed().as_secs_f64();
    let table = text(&o);
    assert!(table.contains("knn") && table.contains("linear"), "{table}");
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gpu_run.join("results.json")).unwrap()).unwrap();
    assert_eq!(results["steps"], 8);
    for p in results["probes"].as_array().unwrap() {
        for key in ["trained_top1", "random_init_top1"] {
            let v = p[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
    }
    let gpu_losses = losses(&gpu_run);
    eprintln!("{test}: vulkan run {gpu_seconds:.0} s; losses {gpu_losses:?}");
    assert_eq!(gpu_losses.len(), 8);
    assert!(gpu_losses.iter().all(|(_, l)| l.is_finite()));
    assert!(gpu_losses[0].1 != gpu_losses[7].1, "the loss moved");
    let o = train(&data, &cpu_run, "cpu", &[]);
    assert!(o.status.success(), "{}", text(&o));

    // ssl embed of the vulkan run's encoder on each device: the same features.
    let embed = |device: &str| -> Vec<f32> {
        let file = out.path().join(format!("embeddings-{device}.safetensors"));
        let o = Command::new(env!("CARGO_BIN_EXE_ssl"))
            .args(["embed", "--checkpoint", gpu_run.to_str().unwrap(), "--data"])
            .arg(&data)
            .args(["--device", device, "--out", file.to_str().unwrap()])
            .env_remove("SSL_DATA_DIR")
            .output()
            .expect("run ssl");
        assert!(o.status.success(), "{}", text(&o));
        let bytes = std::fs::read(&file).unwrap();
        let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        tensors
            .tensor("test_embeddings")
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    };
    let (on_gpu, on_cpu) = (embed("vulkan"), embed("cpu"));
    assert_eq!(on_gpu.len(), 100 * 64, "100 test images, 64 features");
    let (diff, at) = largest_difference(
        &[("test_embeddings".to_string(), on_gpu)],
        &[("test_embeddings".to_string(), on_cpu)],
    );
    eprintln!("{test}: ssl embed, largest difference between the devices {diff:.2e}: {at}");
    assert!(diff <= ENCODER_TOL, "embeddings differ by {diff:e}: {at}");

    // A checkpoint written on vulkan, resumed on cpu; and one written on cpu, resumed on vulkan.
    for (from, to, device) in [
        (&gpu_run, out.path().join("vulkan-then-cpu"), "cpu"),
        (&cpu_run, out.path().join("cpu-then-vulkan"), "vulkan"),
    ] {
        interrupted_copy(from, &to);
        let o = train(&data, &to, device, &["--resume"]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(text(&o).contains("resuming from"), "{}", text(&o));
        let resumed = losses(&to);
        eprintln!("{test}: resumed on {device}: {resumed:?}");
        assert_losses_agree(&format!("resumed on {device}"), &resumed, &losses(from));
        assert!(to.join("results.json").is_file());
    }
}

/// The first update of the small CNN in `precision` on `device` ([`first_update`]): the loss,
/// the update, and whether every float tensor of the networks is still f32.
fn half_step(precision: Precision, device: &Device) -> (f64, Vec<f32>, bool) {
    let network = |d: &Device| {
        OnlineNetwork::new(
            VisionEncoder::SmallCnn(SmallCnn::new(3, &[8, 16, 32], &[1, 2, 2], d)),
            &heads(64, 32),
            d,
        )
    };
    let (loss, update, state) = first_update(network, device, precision, [16, 3, 16, 16], 1);
    struct AllF32(bool);
    impl ModuleVisitor for AllF32 {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            self.0 &= p.val().dtype() == burn::tensor::DType::F32;
        }
    }
    let mut f32s = AllF32(true);
    state.online.visit(&mut f32s);
    state.target.visit(&mut f32s);
    (loss, update, f32s.0)
}

/// Mixed precision on the Vulkan device: a precision the device computes in gives the CPU's
/// step in that precision (f32 master weights, the same loss and update within the type's
/// rounding); one it lacks is refused by `ssl train` in one line naming `train.precision`.
#[test]
fn mixed_precision_on_vulkan_runs_where_the_device_has_the_type_and_is_refused_where_not() {
    let test =
        "mixed_precision_on_vulkan_runs_where_the_device_has_the_type_and_is_refused_where_not";
    let Some(gpu) = vulkan(test) else { return };
    let mut ran = Vec::new();
    for precision in [Precision::Bf16, Precision::F16] {
        let dtype = precision.half_dtype().unwrap();
        let name = precision.name();
        if gpu.supports_dtype(dtype) {
            let (cpu_loss, cpu_update, _) = half_step(precision, &Device::flex().autodiff());
            let (gpu_loss, gpu_update, all_f32) = half_step(precision, &gpu.clone().autodiff());
            assert!(all_f32, "{name}: the networks stay f32 on the device");
            let loss_diff = (gpu_loss - cpu_loss).abs() / cpu_loss;
            let (cosine, ratio) = compare_updates(&gpu_update, &cpu_update);
            eprintln!(
                "{test}: {name} on the device: loss {gpu_loss} against the CPU's {cpu_loss} ({loss_diff:.2e}), update cosine {cosine:.6}, length ratio {ratio:.5}"
            );
            assert!(loss_diff <= 1e-2, "{name}: loss {loss_diff:e}");
            assert!(cosine >= 0.98, "{name}: update cosine {cosine}");
            assert!((ratio - 1.0).abs() <= 0.05, "{name}: update length {ratio}");
            ran.push(name);
        } else {
            let e = precision.check_device(&gpu).unwrap_err().to_string();
            eprintln!("{test}: {name} refused: {e}");
            assert!(
                e.contains("train.precision") && e.contains(&format!("no {name} arithmetic")),
                "{e}"
            );
            let Some(data) = ssl_test_support::cifar_slice(test, 20, 10) else {
                continue;
            };
            let out = tempfile::tempdir().unwrap();
            let o = train(
                &data,
                &out.path().join(name),
                "vulkan",
                &["--set", &format!("train.precision=\"{name}\"")],
            );
            common::assert_one_line_error(
                &o,
                &["--device vulkan", "train.precision", name, "arithmetic"],
            );
        }
    }
    // CI's device (lavapipe) computes in f16: a run there must have used it.
    if std::env::var("SSL_REQUIRE_VULKAN").as_deref() == Ok("1") {
        assert!(
            !ran.is_empty(),
            "{test}: no half precision ran on the device"
        );
    }
}

/// `ssl bench --device vulkan` times a step workload on the device and reports the memory its
/// allocator holds.
#[test]
fn bench_times_a_step_on_vulkan_with_its_device_memory() {
    let test = "bench_times_a_step_on_vulkan_with_its_device_memory";
    if vulkan(test).is_none() {
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("bench.json");
    let o = Command::new(env!("CARGO_BIN_EXE_ssl"))
        .args([
            "bench",
            "--device",
            "vulkan",
            "--workloads",
            "step-smallcnn",
        ])
        .args(["--batch", "4", "--steps", "1", "--json"])
        .arg(&json)
        .output()
        .expect("run ssl");
    assert!(o.status.success(), "{}", text(&o));
    eprintln!("{test}: {}", text(&o));
    assert!(text(&o).contains("peak device MiB"), "{}", text(&o));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["device"], "vulkan");
    let row = &report["rows"][0];
    assert_eq!(row["workload"], "step-smallcnn");
    assert!(row["figure"].as_f64().unwrap() > 0.0, "{row}");
    let mib = row["peak_device_mib"]
        .as_f64()
        .expect("lavapipe reports its memory");
    assert!(mib > 0.0, "{row}");
}
