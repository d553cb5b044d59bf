//! `ssl bench`: throughput of one BYOL training step (small CNN, ResNet-18 CIFAR stem) and of the
//! view-1/view-2 augmentation pipeline on CIFAR images. Workload definitions follow
//! `../shared/bench/README.md`. Build with `--release`: debug timings mean nothing.

use anyhow::{Context, Result, bail};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use clap::Args;
use ssl_audio::AudioModality;
use ssl_audio::encoder::AudioInput;
use ssl_framework::byol::{
    ByolState, OnlineNetwork, StepOutcome, StepSchedules, TargetEma, Views, update,
};
use ssl_framework::config::{ByolConfig, Precision};
use ssl_framework::data::loader::{DatasetSamples, sample_seed};
use ssl_framework::modality::Modality;
use ssl_framework::optim::{LrSchedule, build_optimizer};
use ssl_framework::rand::RngExt;
use ssl_framework::rand::SeedableRng;
use ssl_framework::rand::rngs::StdRng;
use ssl_framework::train::{RunOptions, train_and_evaluate};
use ssl_framework::{Augmentation, Encoder};
use ssl_text::TextModality;
use ssl_text::encoder::TextInput;
use ssl_vision::encoders::{ResNet, SmallCnn, Stem, VisionEncoder};
use ssl_vision::{VisionDataConfig, VisionModality};
use std::path::PathBuf;
use std::time::Instant;

/// Options of `ssl bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A config-driven benchmark (`configs/bench/<name>.toml`): runs its grid of settings and
    /// seeds (resumable) and writes a table and plots, instead of the throughput workloads.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Output folder of a --config benchmark (default: `runs/bench-<name>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Device of the step workloads, of epoch-cifar10-quick and of a --config benchmark: `cpu`,
    /// or a GPU of this build (`vulkan`, `cuda:0`, ...; README, "Devices"). The other workloads
    /// (augmentations, CPU kernels) run on the CPU.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The type the step workloads compute in (the step workloads only; a --config benchmark
    /// takes `train.precision` from its config): f32, or mixed precision in bf16 or f16 (f32
    /// master weights; f16 with dynamic loss scaling). Refused where the device lacks the type.
    #[arg(long, default_value = "f32", value_name = "f32|bf16|f16", value_parser = parse_precision)]
    precision: Precision,
    /// Which workloads: step-smallcnn, step-resnet18-cifar, augment-cifar (comma-separated; default
    /// all); also step-resnet50-imagenet (ResNet-50 on 224x224 images, for GPUs), step-text and step-audio (the BYOL step of `configs/text/vader.toml` and
    /// `configs/audio/fsdd.toml`, batch 64, sentences/s and segments/s), augment-imagenet (read + JPEG decode + the ImageNet config's views on
    /// ImageNet-sized JPEGs in --data, at most 1000 of --images), augment-audio (log-mel
    /// front end and BYOL-A views on FSDD), ops-smallcnn (the small CNN's step op by op, milliseconds),
    /// gemm-conv (GFLOP/s of the convolutions' GEMMs on each set of kernels this CPU has, one
    /// thread: what the choice of CPU path rests on) and
    /// epoch-cifar10-quick (one epoch of the default vision config through the trainer: seconds,
    /// data-wait fraction, peak memory), not in the default set.
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Batch of the step workloads (default: 128 for the small CNN, 64 for the others).
    #[arg(long)]
    batch: Option<usize>,
    /// Timed steps per step workload (after 2 warm-up steps; 100 or more for the memory check),
    /// or repetitions per op of ops-smallcnn (the median is reported).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// The dataset (for --config: as `ssl train --data`). CIFAR-10 for augment-cifar and
    /// epoch-cifar10-quick: a folder (ImageFolder or binary) or a .tar.gz; default as `ssl
    /// train`. For augment-imagenet: a folder of ImageNet-sized JPEGs (required;
    /// scripts/make_imagenet_like.py writes one).
    #[arg(long)]
    data: Option<PathBuf>,
    /// FSDD for augment-audio: a folder or the `.tar.gz` (default: as `ssl train --modality
    /// audio`).
    #[arg(long)]
    audio_data: Option<PathBuf>,
    /// Images for augment-cifar (for augment-imagenet: a seeded subset of at most 1000 of the
    /// images in --data).
    #[arg(long, default_value_t = 2000)]
    images: usize,
    /// Write the table as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// `--precision`: f32, bf16 or f16.
fn parse_precision(name: &str) -> std::result::Result<Precision, String> {
    match name {
        "f32" => Ok(Precision::F32),
        "bf16" => Ok(Precision::Bf16),
        "f16" => Ok(Precision::F16),
        other => Err(format!("`{other}` is not a precision (f32, bf16 or f16)")),
    }
}

struct Row {
    workload: String,
    batch: usize,
    threads: usize,
    figure: f64,
    unit: &'static str,
    /// Step workloads: the process's peak resident memory (MiB), how much the resident memory
    /// grew from the end of the warm-up to the last step, and over the last half of the steps
    /// (MiB; about 0 when nothing leaks or accumulates across steps).
    memory: Option<(f64, f64, f64)>,
    /// Peak memory reserved on the device (MiB), where the backend reports it (GPUs).
    device_mib: Option<f64>,
}

/// The memory check of a step workload: resident memory may settle or move during the steps
/// (allocator caches; with rayon's threads allocating in glibc's per-thread arenas it sits
/// tens of MiB higher or lower from one run to the next: the small CNN's 200-step runs ended
/// +10 to +30 MiB from the warm-up, flat over 400 steps when traced every 20) but must not keep
/// growing. A leak grows in every stretch of steps, so over `steps` timed steps growth counts
/// when the whole run grew by more than [`LEAK_MIB`] or 5% of the peak, and its last half by
/// more than half that; fewer than 100 steps are too few to tell.
fn growth_verdict(peak_mib: f64, growth_mib: f64, late_growth_mib: f64, steps: usize) -> String {
    let limit = LEAK_MIB.max(0.05 * peak_mib);
    if steps < 100 {
        format!("memory check needs --steps 100 or more ({steps} run)")
    } else if growth_mib > limit && late_growth_mib > limit / 2.0 {
        format!(
            "resident memory grew {growth_mib:.1} MiB over {steps} steps ({late_growth_mib:+.1} over the last half), more than {limit:.0} MiB (the larger of {LEAK_MIB:.0} MiB and 5% of the {peak_mib:.0} MiB peak): possible leak"
        )
    } else {
        format!(
            "no growth: {growth_mib:+.1} MiB over {steps} steps ({late_growth_mib:+.1} over the last half), within {limit:.0} MiB (the larger of {LEAK_MIB:.0} MiB and 5% of the {peak_mib:.0} MiB peak)"
        )
    }
}

/// Growth below which the memory check does not call a leak, whatever the peak (MiB): the
/// allocator's run-to-run spread (see [`growth_verdict`]).
const LEAK_MIB: f64 = 64.0;

/// The process's resident and peak resident memory in MiB (`VmRSS`, `VmHWM` of
/// `/proc/self/status`); `None` where that file does not exist.
fn resident_mib() -> Option<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// What a step workload measured: samples/s (images, sentences or segments) at the median step time (the statistic of the
/// PyTorch twin, `torch_step.py`: a step slowed by another process on this shared machine moves
/// a mean, not a median), and (peak MiB, growth MiB, growth over the last half MiB) when known.
/// Images/s of the global batch, the memory check, under MPI the median milliseconds of one
/// gradient all-reduce of the online network's size (with how many floats), and the peak device
/// memory (MiB reserved by the device's allocator, sampled after each step) where the backend
/// reports it (the GPU backends; not the CPU's).
type StepFigures = (
    f64,
    Option<(f64, f64, f64)>,
    Option<(f64, usize)>,
    Option<f64>,
);

/// One BYOL step of workload `name` at global batch `batch`, `steps` times (after 2 warm-up
/// steps), on the ranks of `replicas` (each with `batch / ranks` samples; one process alone
/// with a group of one). The inputs are random and drawn once (the same two views every step),
/// as in the PyTorch twins:
/// - `step-resnet50-imagenet`: `[b, 3, 224, 224]` images, ResNet-50 with the ImageNet stem and
///   the paper's heads (4096 wide, 256 out), SGD as below: the GPU workload of
///   `scripts/gpu_check.sh`.
/// - `step-smallcnn`, `step-resnet18-cifar`: `[b, 3, 32, 32]` images, the encoder and heads of
///   `../shared/bench/README.md`, SGD as its twin `torch_step.py`.
/// - `step-text`: `configs/text/vader.toml`'s Transformer, heads and AdamW, token ids
///   `[b, 48]` (vocabulary 2,000) with 24 to 48 real tokens each and the config's embedding
///   dropout of 0.1; twin `scripts/bench_step_torch.py text`.
/// - `step-audio`: `configs/audio/fsdd.toml`'s BYOL-A encoder, heads and AdamW on
///   `[b, 1, 64, 96]` log-mel segments; twin `scripts/bench_step_torch.py audio`.
fn step_workload(
    name: &str,
    batch: usize,
    steps: usize,
    replicas: &ssl_framework::replicas::ReplicaGroup,
    device: &Device,
    precision: Precision,
) -> Result<StepFigures> {
    if steps == 0 {
        bail!("--steps must be at least 1 for {name} (its figure is the median timed step)");
    }
    if !batch.is_multiple_of(replicas.ranks()) {
        bail!(
            "--batch {batch} does not split evenly over {} ranks",
            replicas.ranks()
        );
    }
    let local = batch / replicas.ranks();
    let ad = device.clone().autodiff();
    ad.seed(0);
    // Constant learning rate and tau (0.99), no accumulation, as the twins.
    let schedules = |lr: f64| StepSchedules {
        lr: LrSchedule::Constant(lr),
        ema: TargetEma::constant(0.99),
        accumulation: 1,
        precision,
    };
    let mut rng = StdRng::seed_from_u64(0);
    match name {
        "step-smallcnn" | "step-resnet18-cifar" | "step-resnet50-imagenet" => {
            let (encoder, byol, size) = match name {
                "step-smallcnn" => (
                    VisionEncoder::SmallCnn(SmallCnn::new(
                        3,
                        &[32, 64, 128, 256],
                        &[1, 2, 2, 2],
                        &ad,
                    )),
                    vision_heads(1024, 128),
                    32,
                ),
                "step-resnet18-cifar" => (
                    VisionEncoder::ResNet(ResNet::new(18, Stem::Cifar, 64, &ad)),
                    vision_heads(4096, 256),
                    32,
                ),
                _ => (
                    VisionEncoder::ResNet(ResNet::new(50, Stem::Imagenet, 64, &ad)),
                    vision_heads(4096, 256),
                    224,
                ),
            };
            // The step of training itself (`byol::update`), configured as the PyTorch twin's
            // step (../shared/bench/README.md): SGD with momentum 0.9 and weight decay 5e-4 on
            // every parameter, a constant learning rate.
            let sgd = SgdConfig::new()
                .with_momentum(Some(
                    MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
                ))
                .with_weight_decay(Some(WeightDecayConfig::new(5e-4)))
                .build();
            let state = ByolState::new(
                OnlineNetwork::new(encoder, &byol, &ad),
                ModuleOptimizer::from(sgd),
            );
            let image = || {
                Tensor::<4>::random(
                    [local, 3, size, size],
                    burn::tensor::Distribution::Normal(0.0, 1.0),
                    &ad,
                )
            };
            let views = (image(), image());
            time_steps(
                name,
                state,
                &schedules(0.05),
                views,
                (batch, steps),
                replicas,
                &ad,
            )
        }
        "step-text" => {
            let (cfg, state) = default_step_state("text", TextModality::default(), &ad)?;
            let (len, vocab) = (cfg.data.max_len, cfg.data.vocab_size as i64);
            let mut sentences = || {
                let mut ids = vec![0i64; local * len];
                let mut padding = vec![true; local * len];
                for row in 0..local {
                    let own = rng.random_range(len / 2..=len);
                    for t in 0..own {
                        // Past the special tokens ([PAD], [UNK], [MASK]).
                        ids[row * len + t] = rng.random_range(3..vocab);
                        padding[row * len + t] = false;
                    }
                }
                TextInput {
                    ids: Tensor::from_data(TensorData::new(ids, [local, len]), &ad),
                    padding: Tensor::from_data(TensorData::new(padding, [local, len]), &ad),
                    // The config's EncoderDropout (p = 0.1) in both views.
                    dropout: Some(Tensor::full([local], 0.1, &ad)),
                }
            };
            let views = (sentences(), sentences());
            let lr = cfg.optim.base_lr;
            time_steps(
                name,
                state,
                &schedules(lr),
                views,
                (batch, steps),
                replicas,
                &ad,
            )
        }
        "step-audio" => {
            let (cfg, state) = default_step_state("audio", AudioModality::default(), &ad)?;
            let (mels, frames) = (cfg.data.n_mels, cfg.data.min_frames);
            let steps_after_pooling = frames >> cfg.encoder.blocks;
            let segment = || AudioInput {
                x: Tensor::<4>::random(
                    [local, 1, mels, frames],
                    burn::tensor::Distribution::Normal(0.0, 1.0),
                    &ad,
                ),
                valid: Tensor::ones([local, steps_after_pooling], &ad),
            };
            let views = (segment(), segment());
            let lr = cfg.optim.base_lr;
            time_steps(
                name,
                state,
                &schedules(lr),
                views,
                (batch, steps),
                replicas,
                &ad,
            )
        }
        other => bail!("unknown workload {other}"),
    }
}

/// The default config of built-in modality `name` and a fresh BYOL state from it (encoder,
/// heads, optimizer) on `device`.
fn default_step_state<M: Modality>(
    name: &str,
    modality: M,
    device: &Device,
) -> Result<(
    ssl_framework::config::ExperimentConfig<M>,
    ByolState<M::Encoder>,
)> {
    let (path, text) = crate::modalities::default_config(name);
    let cfg = ssl_framework::config::load_config::<M>(text, path, &[])?;
    let encoder = modality.init_encoder(&cfg.encoder, &cfg.data, device)?;
    let state = ByolState::new(
        OnlineNetwork::new(encoder, &cfg.byol, device),
        build_optimizer(&cfg.optim),
    );
    Ok((cfg, state))
}

/// The BYOL heads of the vision step workloads (as their twin): projector and predictor
/// `hidden` wide, projections `out` long, tau 0.99.
fn vision_heads(hidden: usize, out: usize) -> ByolConfig {
    ByolConfig {
        projector_hidden: hidden,
        projection_dim: out,
        predictor_hidden: hidden,
        predictor: true,
        tau_base: 0.99,
        tau_schedule: Default::default(),
    }
}

/// Times `steps` BYOL steps of `state` on `views` (after 2 warm-up steps; `batch` is the
/// global batch, for the figure): see [`step_workload`].
fn time_steps<E: Encoder>(
    name: &str,
    mut state: ByolState<E>,
    schedules: &StepSchedules,
    (view1, view2): (E::Input, E::Input),
    (batch, steps): (usize, usize),
    replicas: &ssl_framework::replicas::ReplicaGroup,
    ad: &Device,
) -> Result<StepFigures>
where
    E::Input: Clone,
{
    let mut step_seconds = Vec::with_capacity(steps);
    let (mut after_warmup, mut at_half) = (None, None);
    let mut device_peak: Option<u64> = None;
    // f16: steps whose scaled gradients overflowed (no update) are run again, not timed.
    let mut overflows = 0usize;
    let mut i = 0;
    while i < steps + 2 {
        let start = Instant::now();
        let (next, outcome) = update(
            state,
            std::iter::once(Ok::<_, std::convert::Infallible>(Views {
                view1: view1.clone(),
                view2: view2.clone(),
                labels: Vec::new(),
            })),
            schedules,
            false,
            replicas,
        )?;
        state = next;
        match outcome {
            StepOutcome::Fault { what, .. } => {
                bail!("{name}: non-finite {what} at step {}", i + 1)
            }
            StepOutcome::Overflow { scale, .. } => {
                overflows += 1;
                if overflows > 64 {
                    bail!(
                        "{name}: the f16 gradients overflowed {overflows} times (loss scale now {scale:e})"
                    );
                }
                continue;
            }
            StepOutcome::Updated { .. } => {}
        }
        ad.sync().ok();
        if i >= 2 {
            step_seconds.push(start.elapsed().as_secs_f64());
        }
        if let Some(usage) = ad.memory_pool_usage() {
            device_peak = Some(device_peak.unwrap_or(0).max(usage.bytes_reserved));
        }
        if i == 1 {
            after_warmup = resident_mib();
        }
        if i == 1 + steps / 2 {
            at_half = resident_mib();
        }
        i += 1;
    }
    let memory = match (after_warmup, at_half, resident_mib()) {
        (Some((warm, _)), Some((half, _)), Some((end, peak))) => {
            Some((peak, end - warm, end - half))
        }
        _ => None,
    };
    let mean = step_seconds.iter().sum::<f64>() / steps.max(1) as f64;
    let median = median_seconds(&mut step_seconds);
    // The communication a step adds under MPI: the gradient all-reduce alone, on a buffer of
    // the online network's trainable size (SyncBN's exchanges, a few floats per channel, are
    // in the step's time).
    let all_reduce = if replicas.ranks() > 1 {
        let floats = trainable_floats(&state.online);
        let mut buffer = vec![1.0f32; floats];
        let mut seconds = Vec::new();
        for _ in 0..steps.max(5) {
            let start = Instant::now();
            replicas
                .replicas()
                .sum_f32(&mut buffer)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            seconds.push(start.elapsed().as_secs_f64());
        }
        Some((median_seconds(&mut seconds) * 1e3, floats))
    } else {
        None
    };
    if overflows > 0 && replicas.writes() {
        eprintln!(
            "{name}: {overflows} f16 step(s) overflowed (loss scale backed off to {:e}); run again, not timed",
            state.loss_scale.map_or(f64::NAN, |s| s.scale)
        );
    }
    if replicas.writes() {
        eprintln!(
            "{name}: median step {:.1} ms ({:.1} samples/s), mean {:.1} ms ({:.1} samples/s){}",
            median * 1e3,
            batch as f64 / median,
            mean * 1e3,
            batch as f64 / mean,
            all_reduce.map_or(String::new(), |(ms, n)| format!(
                "; {} ranks, gradient all-reduce of {n} floats {ms:.2} ms",
                replicas.ranks()
            ))
        );
    }
    let device_mib = device_peak.map(|b| b as f64 / (1024.0 * 1024.0));
    Ok((batch as f64 / median, memory, all_reduce, device_mib))
}

/// `; CPU path avx2 (why)` where our CPU kernels are built in ([`ssl_kernels::cpu_path`]).
fn cpu_path_note() -> String {
    #[cfg(feature = "flex")]
    {
        let c = ssl_kernels::cpu_path::choice();
        format!("; CPU path {}: {}", c.path.name(), c.reason)
    }
    #[cfg(not(feature = "flex"))]
    String::new()
}

/// The number of floats in the parameters of `module` that require gradients.
fn trainable_floats<M: burn::module::Module>(module: &M) -> usize {
    struct Count(usize);
    impl burn::module::ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, p: &burn::module::Param<Tensor<D>>) {
            let v = p.val();
            if v.is_require_grad() {
                self.0 += v.shape().num_elements();
            }
        }
    }
    let mut count = Count(0);
    module.visit(&mut count);
    count.0
}

/// The median of `seconds` (the upper middle value for an even count, as the PyTorch twin's
/// `times[len // 2]`), sorting them in place; 0 for none.
fn median_seconds(seconds: &mut [f64]) -> f64 {
    seconds.sort_by(f64::total_cmp);
    seconds.get(seconds.len() / 2).copied().unwrap_or(0.0)
}

fn augment_workload(data: &std::path::Path, images: usize, threads: usize) -> Result<f64> {
    let modality = VisionModality;
    let cfg = VisionDataConfig {
        train_subset: images,
        ..Default::default()
    };
    let d = modality
        .load(&cfg, data)
        .with_context(|| format!("--data {}", data.display()))?;
    let exp = crate::common::read_config::<VisionModality>(
        None,
        crate::modalities::default_config("vision"),
        &[],
    )?;
    Ok(view_pairs_per_sec(
        &modality,
        &d.train.items,
        (&exp.augment.view1, &exp.augment.view2),
        threads,
    ))
}

/// `augment-imagenet`: images per second through what a streaming ImageNet run does per
/// image, on `threads` threads: read the JPEG file, decode it, then view 1 of
/// `configs/vision/imagenet.toml` (random resized crop 224, flip, colour jitter, grayscale,
/// blur 23x23, normalize) or, with `both_views`, views 1 and 2 (what the trainer makes of one
/// record), decoding at the crop's scale where it allows unless `decode_at_crop_scale` is off
/// (`data.decode_at_crop_scale`). The images: a seeded subset of `images` of `data` (an image
/// folder).
fn augment_imagenet_workload(
    data: &std::path::Path,
    images: usize,
    threads: usize,
    both_views: bool,
    decode_at_crop_scale: bool,
) -> Result<f64> {
    let modality = VisionModality;
    let cfg = VisionDataConfig {
        streaming: ssl_vision::Streaming::On,
        train_subset: images,
        decode_at_crop_scale,
        ..Default::default()
    };
    let d = modality
        .load(&cfg, data)
        .with_context(|| format!("--data {}", data.display()))?;
    let exp = ssl_framework::config::load_config::<VisionModality>(
        include_str!("../configs/vision/imagenet.toml"),
        "configs/vision/imagenet.toml",
        &[],
    )?;
    let items = &d.train.items;
    let (v1, v2) = (&exp.augment.view1, &exp.augment.view2);
    let copies = if both_views { 2 } else { 1 };
    let failed = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (failed, modality) = (&failed, &modality);
            s.spawn(move || {
                for (i, item) in items.iter().enumerate().skip(t).step_by(threads) {
                    let mut rng = StdRng::seed_from_u64(sample_seed(0, 0, i));
                    let pipelines: [&[_]; 2] = [v1, v2];
                    let views = modality.try_views(
                        item,
                        &pipelines[..copies],
                        &mut rng,
                        &ssl_framework::augmentation::NoSamples,
                    );
                    if views.is_err() {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    std::hint::black_box(views.ok());
                }
            });
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    let failed = failed.into_inner();
    if failed > 0 {
        eprintln!("warning: {failed} images did not decode (not counted)");
    }
    Ok((items.len() - failed) as f64 / seconds)
}

/// View-1 + view-2 pairs per second over `items` on `threads` threads, each sample seeded as in
/// training, with mixing ops drawing from the same items (as the trainer's loader does).
fn view_pairs_per_sec<M: Modality>(
    modality: &M,
    items: &[M::Item],
    (v1, v2): (&Vec<M::Op>, &Vec<M::Op>),
    threads: usize,
) -> f64 {
    let source = DatasetSamples { modality, items };
    let source = &source;
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                for (i, item) in items.iter().enumerate().skip(t).step_by(threads) {
                    let mut rng = StdRng::seed_from_u64(sample_seed(0, 0, i));
                    let a = v1.apply(
                        modality
                            .try_samples(item, 1)
                            .expect("bench data is readable")
                            .remove(0),
                        &mut ssl_framework::AugmentContext::with_source(&mut rng, source),
                    );
                    let b = v2.apply(
                        modality
                            .try_samples(item, 1)
                            .expect("bench data is readable")
                            .remove(0),
                        &mut ssl_framework::AugmentContext::with_source(&mut rng, source),
                    );
                    std::hint::black_box((a, b));
                }
            });
        }
    });
    items.len() as f64 / start.elapsed().as_secs_f64()
}

/// `augment-audio` (BYOL-A on FSDD, the default audio config): clips per second through the
/// front end (WAV decoding, resampling to 16 kHz, log-mel; all clips, once, on every core as
/// the loader does), then view-pair
/// rates of the default views (random resize crop, mixup with other clips, ...) on the log-mel
/// training clips, for each of `threads`.
fn augment_audio_workload(
    data: &std::path::Path,
    threads: &[usize],
) -> Result<(f64, Vec<(usize, f64)>)> {
    let modality = AudioModality::default();
    let exp = crate::common::read_config::<AudioModality>(
        None,
        crate::modalities::default_config("audio"),
        &[],
    )?;
    let start = Instant::now();
    let d = modality
        .load(&exp.data, data)
        .with_context(|| format!("--audio-data {}", data.display()))?;
    let clips = d.train.items.len() + d.test.items.len();
    let front_end = clips as f64 / start.elapsed().as_secs_f64();
    let rates = threads
        .iter()
        .map(|&t| {
            (
                t,
                view_pairs_per_sec(
                    &modality,
                    &d.train.items,
                    (&exp.augment.view1, &exp.augment.view2),
                    t,
                ),
            )
        })
        .collect();
    Ok((front_end, rates))
}

/// What `epoch-cifar10-quick` measured.
struct EpochFigures {
    /// Training loop seconds of the one epoch (data loading and augmentation included).
    seconds: f64,
    /// Fraction of those seconds the optimizer step waited for the next batch.
    data_wait: f64,
    /// Images per second over the epoch.
    images_per_sec: f64,
    /// Optimizer steps in the epoch.
    steps: u64,
    /// (peak resident MiB of the process, resident MiB at the end).
    memory: Option<(f64, f64)>,
    /// Memory reserved on the device at the end (MiB), where the backend reports it (GPUs).
    device_mib: Option<f64>,
}

/// One epoch of the default vision config (`configs/vision/cifar10-quick.toml`: the small CNN,
/// 10,000 CIFAR-10 training images, batch 128, LARS, worker threads making the views) through
/// the real trainer, on `data`. The evaluation afterwards is cut down (1,000 test images, one
/// probe epoch, no random-init baseline): it is not part of the figure.
fn epoch_workload(data: &std::path::Path, device: &Device) -> Result<EpochFigures> {
    let overrides = [
        "train.epochs=1",
        "optim.warmup_epochs=0",
        "data.test_subset=1000",
        "eval.probe_epochs=1",
    ]
    .map(String::from);
    let cfg = crate::common::read_config::<VisionModality>(
        None,
        crate::modalities::default_config("vision"),
        &overrides,
    )?;
    let out = tempfile::tempdir().context("a temporary folder for the epoch's run")?;
    let mut opts = RunOptions::new(out.path(), data, device.clone());
    opts.random_init = false;
    let report = train_and_evaluate(VisionModality, cfg, &opts)?;
    let r = &report.results;
    let number = |key: &str| {
        r[key]
            .as_f64()
            .with_context(|| format!("results.json has no number `{key}`"))
    };
    Ok(EpochFigures {
        seconds: number("train_seconds")?,
        data_wait: number("data_wait_fraction")?,
        images_per_sec: number("train_images_per_sec")?,
        steps: r["steps"].as_u64().unwrap_or(0),
        memory: resident_mib().map(|(now, peak)| (peak, now)),
        device_mib: device
            .memory_pool_usage()
            .map(|u| u.bytes_reserved as f64 / (1024.0 * 1024.0)),
    })
}

/// Runs the selected workloads and prints one table.
pub fn run(args: BenchArgs) -> Result<()> {
    if let Some(config) = &args.config {
        if args.json.is_some() || !args.workloads.is_empty() || args.batch.is_some() {
            bail!(
                "--config runs a benchmark file; --json, --workloads and --batch belong to the throughput benchmarks (without --config)"
            );
        }
        let device = crate::devices::parse_device(&args.device)?;
        return crate::grid::run(config, args.data.clone(), args.out.clone(), device);
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: a debug build: figures are not meaningful, use `cargo run --release -- bench`"
        );
    }
    // A `SSL_CPU_PATH` the kernels cannot take stops here, before any of them runs.
    #[cfg(feature = "flex")]
    ssl_kernels::cpu_path::requested()?;
    let all = ["step-smallcnn", "step-resnet18-cifar", "augment-cifar"];
    let selected: Vec<String> = if args.workloads.is_empty() {
        all.iter().map(|s| s.to_string()).collect()
    } else {
        args.workloads.clone()
    };
    // Under `mpirun -np N`: the step workloads on N ranks (rank 0 reports), with each rank's
    // share of the cores.
    let (replicas, finish_mpi) = crate::ranks::replica_group(crate::signals::stop_request())?;
    if replicas.ranks() > 1
        && let Some(other) = selected.iter().find(|w| !w.starts_with("step-"))
    {
        bail!(
            "under mpirun, ssl bench runs the step workloads only (step-smallcnn, step-resnet18-cifar, step-resnet50-imagenet, step-text, step-audio), not {other}"
        );
    }
    let device = crate::devices::parse_device(&args.device)?;
    if selected.iter().any(|w| w.starts_with("step-")) {
        args.precision.check_device(&device).map_err(|e| {
            anyhow::anyhow!(
                "--device {} --precision {}: {e}",
                args.device,
                args.precision.name()
            )
        })?;
    }
    let cores = rayon::current_num_threads();
    let mut rows = Vec::new();
    // (op, median milliseconds) of ops-smallcnn.
    let mut ops: Vec<(String, f64)> = Vec::new();
    let mut ops_batch = 0;
    for w in &selected {
        match w.as_str() {
            "step-smallcnn"
            | "step-resnet18-cifar"
            | "step-resnet50-imagenet"
            | "step-text"
            | "step-audio" => {
                let batch = args
                    .batch
                    .unwrap_or(if w == "step-smallcnn" { 128 } else { 64 });
                let unit = match w.as_str() {
                    "step-text" => "sentences/s",
                    "step-audio" => "segments/s",
                    _ => "images/s",
                };
                if replicas.writes() {
                    eprintln!("{w}: batch {batch}, {} steps...", args.steps);
                }
                let (figure, memory, all_reduce, device_mib) =
                    step_workload(w, batch, args.steps, &replicas, &device, args.precision)?;
                let ranks = replicas.ranks();
                let mut workload = w.clone();
                if args.precision != Precision::F32 {
                    workload = format!("{workload} ({})", args.precision.name());
                }
                if ranks > 1 {
                    workload = format!("{workload} ({ranks} MPI ranks)");
                }
                rows.push(Row {
                    workload,
                    batch,
                    threads: cores,
                    figure,
                    unit,
                    memory,
                    device_mib,
                });
                if let Some((ms, floats)) = all_reduce {
                    rows.push(Row {
                        workload: format!(
                            "{w} gradient all-reduce ({floats} floats, {ranks} ranks)"
                        ),
                        batch,
                        threads: cores,
                        figure: ms,
                        unit: "ms",
                        memory: None,
                        device_mib: None,
                    });
                }
            }
            "augment-cifar" => {
                let data = ssl_vision::locate::locate_data(args.data.clone(), "cifar10")?;
                for threads in [1, cores] {
                    eprintln!(
                        "augment-cifar: {} images, {threads} thread(s)...",
                        args.images
                    );
                    let figure = augment_workload(&data, args.images, threads)?;
                    rows.push(Row {
                        workload: w.clone(),
                        batch: 1,
                        threads,
                        figure,
                        unit: "image pairs/s",
                        memory: None,
                        device_mib: None,
                    });
                }
            }
            "augment-imagenet" => {
                let data = args.data.clone().context(
                    "augment-imagenet needs --data DIR: a folder of ImageNet-sized JPEGs (scripts/make_imagenet_like.py writes one)",
                )?;
                let images = args.images.min(1000);
                let runs = [
                    (false, true, "augment-imagenet (view)", cores),
                    (true, true, "augment-imagenet (2 views)", cores),
                    (true, false, "augment-imagenet (2v, full)", 1),
                ];
                for (both, at_crop_scale, name, most_threads) in runs {
                    let threads: std::collections::BTreeSet<usize> = [1, most_threads].into();
                    for threads in threads {
                        eprintln!("{name}: {images} images, {threads} thread(s)...");
                        let figure =
                            augment_imagenet_workload(&data, images, threads, both, at_crop_scale)?;
                        rows.push(Row {
                            workload: name.into(),
                            batch: 1,
                            threads,
                            figure,
                            unit: "images/s",
                            memory: None,
                            device_mib: None,
                        });
                    }
                }
            }
            "epoch-cifar10-quick" => {
                let data = ssl_vision::locate::locate_data(args.data.clone(), "cifar10")?;
                eprintln!("epoch-cifar10-quick: one epoch of the default vision config...");
                let e = epoch_workload(&data, &device)?;
                println!(
                    "epoch-cifar10-quick: {} steps in {:.1} s ({:.1} images/s), data wait {:.1}% of the epoch",
                    e.steps,
                    e.seconds,
                    e.images_per_sec,
                    100.0 * e.data_wait
                );
                rows.push(Row {
                    workload: "epoch-cifar10-quick (s)".into(),
                    batch: 128,
                    threads: cores,
                    figure: e.seconds,
                    unit: "seconds",
                    memory: e.memory.map(|(peak, _)| (peak, f64::NAN, f64::NAN)),
                    device_mib: e.device_mib,
                });
                rows.push(Row {
                    workload: "epoch-cifar10-quick (wait)".into(),
                    batch: 128,
                    threads: cores,
                    figure: 100.0 * e.data_wait,
                    unit: "% data wait",
                    memory: None,
                    device_mib: None,
                });
            }
            "augment-audio" => {
                let data = ssl_framework::data::locate::resolve_local(
                    args.audio_data.clone(),
                    "fsdd",
                    false,
                )?;
                eprintln!("augment-audio: FSDD from {}...", data.display());
                let (front_end, rates) = augment_audio_workload(&data, &[1, cores])?;
                rows.push(Row {
                    workload: "augment-audio (log-mel)".into(),
                    batch: 1,
                    // The loader decodes on every core.
                    threads: cores,
                    figure: front_end,
                    unit: "clips/s",
                    memory: None,
                    device_mib: None,
                });
                for (threads, rate) in rates {
                    rows.push(Row {
                        workload: "augment-audio (views)".into(),
                        batch: 1,
                        threads,
                        figure: rate,
                        unit: "clip pairs/s",
                        memory: None,
                        device_mib: None,
                    });
                }
            }
            "ops-smallcnn" => {
                let batch = args.batch.unwrap_or(128);
                eprintln!(
                    "ops-smallcnn: batch {batch}, median of {} runs per op...",
                    args.steps
                );
                #[cfg(feature = "flex")]
                {
                    ops = ssl_kernels::bench::time_ops(batch, args.steps.max(3))
                        .into_iter()
                        .map(|o| (o.op, o.median_ms))
                        .collect();
                }
                #[cfg(not(feature = "flex"))]
                bail!("ops-smallcnn times our CPU kernels: build with the `flex` feature");
                ops_batch = batch;
            }
            "gemm-conv" => {
                #[cfg(feature = "flex")]
                {
                    eprintln!(
                        "gemm-conv: the convolutions' GEMM shapes, one thread, median of {} runs...",
                        args.steps.max(3)
                    );
                    for t in ssl_kernels::bench::time_gemms(args.steps) {
                        let (m, n, k) = t.shape;
                        rows.push(Row {
                            workload: format!("gemm {m}x{n}x{k} {}", t.kernels),
                            batch: 1,
                            threads: 1,
                            figure: t.gflops,
                            unit: "GFLOP/s",
                            memory: None,
                            device_mib: None,
                        });
                    }
                }
                #[cfg(not(feature = "flex"))]
                bail!("gemm-conv times our CPU kernels: build with the `flex` feature");
            }
            other => bail!(
                "unknown workload `{other}` (expected one of {}, step-resnet50-imagenet, step-text, step-audio, augment-imagenet, augment-audio, ops-smallcnn, gemm-conv or epoch-cifar10-quick)",
                all.join(", ")
            ),
        }
    }
    let features = crate::devices::compiled_devices();
    // Every rank has finished its steps; rank 0 reports.
    finish_mpi.now();
    if !replicas.writes() {
        return Ok(());
    }
    println!(
        "ssl bench (devices {features}; --device {}; --precision {}; {} build; {cores} cores{})",
        args.device,
        args.precision.name(),
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        cpu_path_note()
    );
    let any_device_memory = rows.iter().any(|r| r.device_mib.is_some());
    println!(
        "{:<28} {:>6} {:>8} {:>12}  {:<14} {:>13} {:>16}{}",
        "workload",
        "batch",
        "threads",
        "figure",
        "unit",
        "peak RSS MiB",
        "RSS growth MiB",
        if any_device_memory {
            format!(" {:>16}", "peak device MiB")
        } else {
            String::new()
        }
    );
    for r in &rows {
        let (peak, growth) = match r.memory {
            Some((p, g, _)) if g.is_nan() => (format!("{p:.0}"), "-".into()),
            Some((p, g, _)) => (format!("{p:.0}"), format!("{g:+.1}")),
            None => ("-".into(), "-".into()),
        };
        let device_memory = match (any_device_memory, r.device_mib) {
            (false, _) => String::new(),
            (true, Some(m)) => format!(" {m:>16.0}"),
            (true, None) => format!(" {:>16}", "-"),
        };
        println!(
            "{:<28} {:>6} {:>8} {:>12.1}  {:<14} {:>13} {:>16}{device_memory}",
            r.workload, r.batch, r.threads, r.figure, r.unit, peak, growth
        );
    }
    if any_device_memory {
        println!(
            "(peak device MiB: the most the device's allocator held after any step; for epoch-cifar10-quick, what it held at the end)"
        );
    }
    if rows
        .iter()
        .any(|r| r.memory.is_some_and(|(_, growth, _)| !growth.is_nan()))
    {
        println!(
            "(RSS growth: resident memory after the last of {} timed steps minus after the 2 warm-up steps)",
            args.steps
        );
        for r in &rows {
            if let Some((peak, growth, late)) = r.memory.filter(|(_, g, _)| !g.is_nan()) {
                println!(
                    "{}: {}",
                    r.workload,
                    growth_verdict(peak, growth, late, args.steps)
                );
            }
        }
    }
    if !ops.is_empty() {
        println!("ops-smallcnn (batch {ops_batch}; median ms per op)");
        for (op, median_ms) in &ops {
            println!("{op:<34} {median_ms:>9.2}");
        }
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "ops": ops.iter().map(|(op, median_ms)| serde_json::json!({"op": op, "batch": ops_batch, "median_ms": median_ms})).collect::<Vec<_>>(),
            "features": features,
            "device": args.device,
            "precision": args.precision.name(),
            "release": !cfg!(debug_assertions),
            "cores": cores,
            "rows": rows.iter().map(|r| serde_json::json!({"workload": r.workload, "batch": r.batch, "threads": r.threads, "figure": r.figure, "unit": r.unit, "peak_rss_mib": r.memory.map(|m| m.0), "peak_device_mib": r.device_mib, "rss_growth_mib": r.memory.map(|m| m.1), "rss_growth_last_half_mib": r.memory.map(|m| m.2)})).collect::<Vec<_>>(),
        });
        ssl_framework::fsutil::write_atomic(path, serde_json::to_string_pretty(&json)?.as_bytes())
            .with_context(|| format!("--json {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{growth_verdict, median_seconds};

    #[test]
    fn median_step_is_the_twins_middle_value_and_ignores_one_slow_step() {
        // As torch_step.py: sorted, then times[len // 2].
        assert_eq!(median_seconds(&mut [0.3, 0.1, 0.2]), 0.2);
        assert_eq!(median_seconds(&mut [0.4, 0.1, 0.3, 0.2]), 0.3);
        // A step slowed tenfold by another process leaves the median where it was.
        assert_eq!(median_seconds(&mut [0.25, 0.26, 2.6, 0.24, 0.25]), 0.25);
        assert_eq!(median_seconds(&mut []), 0.0);
    }

    #[test]
    fn memory_check_flags_a_steady_climb_beyond_the_allocator_spread() {
        assert!(growth_verdict(1000.0, 28.0, 14.0, 200).starts_with("no growth"));
        assert!(growth_verdict(1000.0, -50.0, 0.0, 200).starts_with("no growth"));
        // A steady climb: both halves grow.
        assert!(growth_verdict(1000.0, 80.0, 40.0, 200).contains("possible leak"));
        assert!(growth_verdict(4000.0, 210.0, 105.0, 200).contains("possible leak"));
        assert!(growth_verdict(4000.0, 190.0, 95.0, 200).starts_with("no growth"));
        // Settling in the first half, flat after.
        assert!(growth_verdict(1000.0, 128.0, 5.0, 200).starts_with("no growth"));
        // A small process: allocator spread below 64 MiB is not a leak (the small CNN: +28.9
        // MiB of a 237 MiB peak, +22.6 over the last half, flat when traced), a climb is.
        assert!(growth_verdict(237.0, 28.9, 22.6, 200).starts_with("no growth"));
        assert!(growth_verdict(237.0, 120.0, 60.0, 200).contains("possible leak"));
        assert!(growth_verdict(1000.0, 500.0, 250.0, 10).contains("needs --steps 100"));
    }
}
