//! Command-line interface: `ssl train`, `eval`, `embed`, `export`, `bench`, `search-augment`.

#[cfg(feature = "cuda")]
use anyhow::anyhow;
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Parser, Subcommand, ValueEnum};
use ssl_audio::AudioModality;
use ssl_framework::config::{ExperimentConfig, load_config};
use ssl_framework::modality::Modality;
use ssl_framework::train::{RunOptions, train_and_evaluate};
use ssl_text::TextModality;
use ssl_vision::VisionModality;
use std::path::{Path, PathBuf};

/// The default config of each modality, compiled in so the binary works from any folder.
pub const VISION_DEFAULT: (&str, &str) = (
    "configs/vision/cifar10-quick.toml",
    include_str!("../configs/vision/cifar10-quick.toml"),
);
/// See [`VISION_DEFAULT`].
pub const AUDIO_DEFAULT: (&str, &str) = (
    "configs/audio/fsdd.toml",
    include_str!("../configs/audio/fsdd.toml"),
);
/// See [`VISION_DEFAULT`].
pub const TEXT_DEFAULT: (&str, &str) = (
    "configs/text/vader.toml",
    include_str!("../configs/text/vader.toml"),
);

#[derive(Parser)]
#[command(
    name = "ssl",
    version,
    about = "BYOL self-supervised pre-training for any modality, on burn"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModalityName {
    Vision,
    Audio,
    Text,
}

#[derive(Subcommand)]
enum Command {
    /// BYOL pre-training, then evaluation (kNN and linear probe beside a random-init encoder).
    Train {
        /// The kind of data.
        #[arg(long, value_enum)]
        modality: ModalityName,
        /// Config file (TOML); default: the modality's CPU-scale config.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Dataset folder or .tar.gz archive (unpacked once into the cache); default:
        /// $SSL_DATA_DIR, then the cache folder (downloading CIFAR-10 there when needed).
        #[arg(long)]
        data: Option<PathBuf>,
        /// Override a config key, e.g. `--set train.epochs=20` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Device: `cpu`, or `cuda:N` (build with `--features cuda`).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Output folder (config, metrics log, checkpoints, results.json).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in --out from its newest checkpoint.
        #[arg(long)]
        resume: bool,
        /// Seed (same as --set seed=N).
        #[arg(long)]
        seed: Option<u64>,
        /// No progress bar (a log line per log step instead).
        #[arg(long)]
        no_progress: bool,
        /// On a non-finite loss or gradient: `stop` (default), `skip` the step's update, or
        /// `rollback` to the newest checkpoint and replay without that step (same as
        /// --set train.on_nan=...; may change on --resume).
        #[arg(long, value_name = "stop|skip|rollback", value_parser = ["stop", "skip", "rollback"])]
        on_nan: Option<String>,
    },
    /// Evaluates a checkpoint: kNN, linear probe, and fine-tuning on all labels and on 10% and
    /// 1% of them (the paper's Table 2 protocol), each beside a random-init encoder.
    Eval {
        #[command(flatten)]
        source: CheckpointSource,
        /// Skip fine-tuning (kNN and linear probe only).
        #[arg(long)]
        no_finetune: bool,
        /// Results file (JSON); default: eval.json in the run folder.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Writes a checkpoint's embeddings `[n, dim]` and labels of the train and test splits.
    Embed {
        #[command(flatten)]
        source: CheckpointSource,
        /// Output: FILE.safetensors or FILE.npz (numpy); class names go to FILE.safetensors.json or FILE.npz.json beside it.
        #[arg(long)]
        out: PathBuf,
        /// Which split to embed.
        #[arg(long, default_value = "both", value_parser = ["train", "test", "both"])]
        split: String,
    },
    /// Exports a checkpoint's encoder as safetensors in PyTorch's layout (torchvision's names
    /// for ResNets: see scripts/load_torchvision.py).
    Export {
        /// A run folder, or one of its checkpoints/step-N folders (default: the newest).
        #[arg(long)]
        checkpoint: PathBuf,
        /// The checkpoint's modality (default: the one it records).
        #[arg(long, value_enum)]
        modality: Option<ModalityName>,
        /// Output FILE.safetensors.
        #[arg(long)]
        out: PathBuf,
    },
    /// Benchmarks: a config-driven grid of runs (`--config configs/bench/<name>.toml`: table and
    /// plots), or throughput (build with --release): BYOL steps and the augmentation pipeline.
    Bench(crate::bench::BenchArgs),
    /// Automatic search of augmentation policies scored by downstream probe accuracy (TPE or
    /// random sampling, successive halving over pre-training steps, crash-safe journal); the
    /// best policy comes out as a config `ssl train` takes, with a report comparing it to the
    /// default, crop-only and random policies over several seeds.
    SearchAugment(crate::search_cmd::SearchArgs),
}

/// Where `ssl eval` and `ssl embed` read from.
#[derive(clap::Args)]
struct CheckpointSource {
    /// A run folder, or one of its checkpoints/step-N folders (default: the newest).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Dataset folder or .tar.gz archive; default: as `ssl train` finds the run's dataset.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The checkpoint's modality (default: the one it records).
    #[arg(long, value_enum)]
    modality: Option<ModalityName>,
    /// Override a key of the run's config, e.g. `--set eval.finetune_epochs=5` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Device: `cpu`, or `cuda:N` (build with `--features cuda`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// The checkpoint folder and modality named on the command line.
fn open_checkpoint(
    checkpoint: &Path,
    modality: Option<ModalityName>,
) -> Result<(PathBuf, ModalityName, serde_json::Value)> {
    let dir = ssl_framework::checkpoint::find_checkpoint(checkpoint)
        .map_err(|e| anyhow::anyhow!("--checkpoint: {e}"))?;
    let state = ssl_framework::checkpoint::read_state(&dir)?;
    // Checkpoints written before the modality was recorded: the run's results.json says it.
    let results = crate::checkpoint_cmds::run_folder(&dir).join("results.json");
    let from_results = std::fs::read_to_string(&results)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["modality"].as_str().map(String::from))
        .unwrap_or_default();
    let name = if state.modality.is_empty() {
        from_results.as_str()
    } else {
        state.modality.as_str()
    };
    let recorded = match name {
        "vision" => Some(ModalityName::Vision),
        "audio" => Some(ModalityName::Audio),
        "text" => Some(ModalityName::Text),
        _ => None,
    };
    let modality = match (modality, recorded) {
        (Some(m), Some(r)) if m != r => bail!(
            "--checkpoint {}: a {name} checkpoint, not {}",
            dir.display(),
            format!("{m:?}").to_lowercase()
        ),
        (Some(m), _) | (None, Some(m)) => m,
        (None, None) => bail!(
            "--checkpoint {}: the checkpoint does not record its modality: pass --modality vision|audio|text",
            dir.display()
        ),
    };
    Ok((dir, modality, state.config))
}

fn checkpoint_args(
    source: CheckpointSource,
) -> Result<(ModalityName, crate::checkpoint_cmds::CheckpointArgs)> {
    let (dir, modality, config) = open_checkpoint(&source.checkpoint, source.modality)?;
    let dataset = config["data"]["dataset"].as_str().unwrap_or_default();
    let data = match modality {
        ModalityName::Vision => resolve_vision_data(source.data, dataset)?,
        ModalityName::Audio => resolve_local_data(source.data, dataset, false)?,
        ModalityName::Text => resolve_local_data(source.data, dataset, true)?,
    };
    Ok((
        modality,
        crate::checkpoint_cmds::CheckpointArgs {
            dir,
            data,
            overrides: source.overrides,
            device: parse_device(&source.device)?,
        },
    ))
}

/// Formats an error chain on one line.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // A cause that its context already quotes (`path: error` over `error`) is said once.
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    ssl_framework::data::one_line(&parts.join(": "))
}

/// Parses `cpu` or `cuda:N` into a device.
pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" | "flex" => cpu_device(),
        s if s.starts_with("cuda") => cuda_device(s),
        other => bail!("--device {other}: expected `cpu` or `cuda:N`"),
    }
}

#[cfg(feature = "flex")]
fn cpu_device() -> Result<Device> {
    Ok(Device::flex())
}

#[cfg(not(feature = "flex"))]
fn cpu_device() -> Result<Device> {
    bail!("--device cpu: this binary was built without the `flex` feature")
}

#[cfg(feature = "cuda")]
fn cuda_device(s: &str) -> Result<Device> {
    let index = s.strip_prefix("cuda:").unwrap_or("0");
    let index: usize = index
        .parse()
        .map_err(|_| anyhow!("--device {s}: expected cuda:N with N a GPU index"))?;
    Ok(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(s: &str) -> Result<Device> {
    bail!(
        "--device {s}: this binary was built without the `cuda` feature (cargo build --release --features cuda)"
    )
}

/// The cache folder of downloaded datasets: `$XDG_CACHE_HOME/ssl` or `~/.cache/ssl`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("ssl")
}

/// Finds the data folder of a dataset that cannot be downloaded: `--data` (a folder or a
/// `.tar.gz`), then `$SSL_DATA_DIR/<dataset>` or `$SSL_DATA_DIR`, then the cache.
pub fn resolve_local_data(
    explicit: Option<PathBuf>,
    dataset: &str,
    allow_file: bool,
) -> Result<PathBuf> {
    if let Some(d) = explicit {
        if allow_file && d.is_file() && !is_archive(&d) {
            return Ok(d);
        }
        return explicit_data(d);
    }
    let mut tried = Vec::new();
    if let Some(env) = std::env::var_os("SSL_DATA_DIR").map(PathBuf::from) {
        tried.extend([env.join(dataset), env]);
    }
    tried.push(cache_dir().join(dataset));
    tried.iter().find(|p| p.is_dir()).cloned().ok_or_else(|| {
        anyhow::anyhow!(
            "no data for dataset `{dataset}` (looked in {}): pass --data DIR or ARCHIVE",
            tried
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Finds the data folder of a vision dataset: `--data`, then `$SSL_DATA_DIR/<dataset>` or
/// `$SSL_DATA_DIR`, then the cache; downloads CIFAR-10 into the cache when nothing is found.
pub fn resolve_vision_data(explicit: Option<PathBuf>, dataset: &str) -> Result<PathBuf> {
    if let Some(d) = explicit {
        return explicit_data(d);
    }
    if let Some(env) = std::env::var_os("SSL_DATA_DIR").map(PathBuf::from) {
        for cand in [env.join(dataset), env.clone()] {
            if ssl_vision::readers::detect(&cand).is_ok() {
                return Ok(cand);
            }
        }
    }
    let cached = cache_dir().join(dataset);
    if ssl_vision::readers::detect(&cached).is_ok() {
        return Ok(cached);
    }
    if dataset != "cifar10" {
        bail!("no data for dataset `{dataset}`: pass --data DIR (or set SSL_DATA_DIR)");
    }
    let url = std::env::var("SSL_CIFAR10_URL")
        .unwrap_or_else(|_| ssl_vision::download::CIFAR10_URL.to_string());
    eprintln!(
        "CIFAR-10 not found (no --data, SSL_DATA_DIR, or {}); downloading it there",
        cached.display()
    );
    ssl_vision::download::download_and_extract(
        &url,
        ssl_vision::download::CIFAR10_MD5,
        &cached,
        true,
    )?;
    Ok(cached)
}

/// A `--data` given on the command line: a folder, or an archive unpacked into the cache.
fn explicit_data(d: PathBuf) -> Result<PathBuf> {
    if is_archive(&d) {
        return unpack_archive(&d);
    }
    if !d.exists() {
        bail!("--data {}: no such file or folder", d.display());
    }
    if !d.is_dir() {
        bail!(
            "--data {}: not a folder (or a .tar.gz archive)",
            d.display()
        );
    }
    Ok(d)
}

fn is_archive(p: &Path) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    p.is_file() && (name.ends_with(".tar.gz") || name.ends_with(".tgz"))
}

/// Unpacks a dataset archive into the cache once (keyed by its name and size) and returns the
/// folder.
fn unpack_archive(archive: &Path) -> Result<PathBuf> {
    let name = archive
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = name.trim_end_matches(".tar.gz").trim_end_matches(".tgz");
    let size = std::fs::metadata(archive)
        .with_context(|| format!("--data {}", archive.display()))?
        .len();
    let dest = cache_dir().join("unpacked").join(format!("{stem}-{size}"));
    if dest.is_dir() {
        return Ok(dest);
    }
    eprintln!(
        "unpacking {} into {} (once)",
        archive.display(),
        dest.display()
    );
    let parent = dest.parent().expect("cache path has a parent");
    std::fs::create_dir_all(parent).with_context(|| format!("{}", parent.display()))?;
    // Unpack into a temporary folder beside the destination, then rename: an interrupted
    // unpack never leaves a half-filled dataset behind.
    let staging = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(parent)
        .with_context(|| format!("{}", parent.display()))?;
    let file =
        std::fs::File::open(archive).with_context(|| format!("--data {}", archive.display()))?;
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(staging.path())
        .with_context(|| format!("--data {}: cannot unpack", archive.display()))?;
    std::fs::rename(staging.keep(), &dest).with_context(|| format!("{}", dest.display()))?;
    Ok(dest)
}

fn default_out(modality: &str, dataset: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{modality}-{dataset}-{secs}"))
}

/// Reads the config: `--config FILE` or the modality's built-in default, then overrides.
pub fn read_config<M: Modality>(
    config: Option<&Path>,
    default: (&str, &str),
    overrides: &[String],
) -> Result<ExperimentConfig<M>> {
    let (text, origin) = match config {
        Some(p) => (
            std::fs::read_to_string(p).with_context(|| format!("--config {}", p.display()))?,
            p.display().to_string(),
        ),
        None => (
            default.1.to_string(),
            format!("{} (built-in default)", default.0),
        ),
    };
    Ok(load_config::<M>(&text, &origin, overrides)?)
}

fn print_table(report: &ssl_framework::train::RunReport) {
    let split = report.results["eval_split"].as_str().unwrap_or("test");
    let samples = report.results["test_samples"].as_u64().unwrap_or(0) as usize;
    crate::checkpoint_cmds::print_probes(split, samples, &report.probes);
    let r = &report.results;
    println!(
        "steps {} | train {:.0} s | {:.0} images/s | wall {:.0} s | final loss {:.4} | collapse std {:.4}",
        r["steps"],
        r["train_seconds"].as_f64().unwrap_or(0.0),
        r["train_images_per_sec"].as_f64().unwrap_or(0.0),
        r["wall_seconds"].as_f64().unwrap_or(0.0),
        r["final_loss"].as_f64().unwrap_or(f64::NAN),
        r["final_collapse_std"].as_f64().unwrap_or(f64::NAN),
    );
}

/// What every modality's `train` takes from the command line.
struct Common {
    config: Option<PathBuf>,
    data: Option<PathBuf>,
    overrides: Vec<String>,
    device: Device,
    out: Option<PathBuf>,
    resume: bool,
    progress: bool,
}

fn run_train<M: Modality>(
    modality: M,
    default: (&str, &str),
    c: Common,
    resolve: impl FnOnce(Option<PathBuf>, &ExperimentConfig<M>) -> Result<PathBuf>,
    dataset: impl Fn(&ExperimentConfig<M>) -> String,
) -> Result<()> {
    let name = modality.name();
    let cfg = read_config::<M>(c.config.as_deref(), default, &c.overrides)?;
    let data_root = resolve(c.data, &cfg)?;
    let out_dir = c.out.unwrap_or_else(|| default_out(name, &dataset(&cfg)));
    eprintln!(
        "ssl train: {name}, data {}, output {}",
        data_root.display(),
        out_dir.display()
    );
    let opts = RunOptions {
        out_dir: out_dir.clone(),
        data_root,
        device: c.device,
        resume: c.resume,
        progress: c.progress,
        pause_at_step: None,
        random_init: true,
    };
    let report = train_and_evaluate(modality, cfg, &opts)?;
    print_table(&report);
    let plot = out_dir.join("training.svg");
    match crate::plot::write_training_plot(&out_dir.join("metrics.jsonl"), &plot) {
        Ok(true) => println!("training curves: {}", plot.display()),
        Ok(false) => {}
        // The results are written; a plot that fails is reported, not fatal.
        Err(e) => eprintln!("warning: no training plot: {}", one_line(&e)),
    }
    println!("results: {}", out_dir.join("results.json").display());
    Ok(())
}

/// Runs the CLI.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Train {
            modality,
            config,
            data,
            mut overrides,
            device,
            out,
            resume,
            seed,
            no_progress,
            on_nan,
        } => {
            if let Some(s) = seed {
                overrides.push(format!("seed={s}"));
            }
            if let Some(mode) = on_nan {
                overrides.push(format!("train.on_nan=\"{mode}\""));
            }
            let device = parse_device(&device)?;
            let common = Common {
                config,
                data,
                overrides,
                device,
                out,
                resume,
                progress: !no_progress,
            };
            match modality {
                ModalityName::Vision => run_train(
                    VisionModality,
                    VISION_DEFAULT,
                    common,
                    |d, cfg| resolve_vision_data(d, &cfg.data.dataset),
                    |c| c.data.dataset.clone(),
                ),
                ModalityName::Audio => run_train(
                    AudioModality::default(),
                    AUDIO_DEFAULT,
                    common,
                    |d, cfg| resolve_local_data(d, &cfg.data.dataset, false),
                    |c| c.data.dataset.clone(),
                ),
                ModalityName::Text => run_train(
                    TextModality::default(),
                    TEXT_DEFAULT,
                    common,
                    |d, cfg| resolve_local_data(d, &cfg.data.dataset, true),
                    |c| c.data.dataset.clone(),
                ),
            }
        }
        Command::Eval {
            source,
            no_finetune,
            out,
        } => {
            use crate::checkpoint_cmds::eval;
            let (modality, a) = checkpoint_args(source)?;
            match modality {
                ModalityName::Vision => eval(VisionModality, &a, !no_finetune, out),
                ModalityName::Audio => eval(AudioModality::default(), &a, !no_finetune, out),
                ModalityName::Text => eval(TextModality::default(), &a, !no_finetune, out),
            }
        }
        Command::Embed { source, out, split } => {
            use crate::checkpoint_cmds::embed;
            let (modality, a) = checkpoint_args(source)?;
            match modality {
                ModalityName::Vision => embed(VisionModality, &a, &split, &out),
                ModalityName::Audio => embed(AudioModality::default(), &a, &split, &out),
                ModalityName::Text => embed(TextModality::default(), &a, &split, &out),
            }
        }
        Command::Export {
            checkpoint,
            modality,
            out,
        } => run_export(&checkpoint, modality, &out),
        Command::Bench(args) => crate::bench::run(args),
        Command::SearchAugment(args) => crate::search_cmd::run(args),
    }
}

/// `ssl export`: torchvision names for a ResNet, the module's own names otherwise.
fn run_export(checkpoint: &Path, modality: Option<ModalityName>, out: &Path) -> Result<()> {
    use crate::checkpoint_cmds::export;
    use ssl_framework::checkpoint::load_encoder;
    let (dir, modality, _) = open_checkpoint(checkpoint, modality)?;
    let device = cpu_device()?;
    let source = ("source", dir.display().to_string());
    let (tensors, naming) = match modality {
        ModalityName::Vision => {
            let (_, _, encoder) = load_encoder(&VisionModality, &dir, &[], &device)?;
            match &encoder {
                ssl_vision::encoders::VisionEncoder::ResNet(r) => {
                    let stem = format!("{:?}", r.stem()).to_lowercase();
                    let n = export(
                        &encoder,
                        out,
                        &r.torchvision_renames(),
                        &[
                            source,
                            ("architecture", format!("resnet{}", r.depth())),
                            ("stem", stem),
                            ("naming", "torchvision".into()),
                        ],
                    )?;
                    (n, format!("torchvision resnet{} names", r.depth()))
                }
                _ => (
                    export(&encoder, out, &[], &[source, ("naming", "ssl".into())])?,
                    "the module's own names (not a ResNet)".into(),
                ),
            }
        }
        ModalityName::Audio => {
            let m = AudioModality::default();
            let (_, _, encoder) = load_encoder(&m, &dir, &[], &device)?;
            (
                export(&encoder, out, &[], &[source, ("naming", "ssl".into())])?,
                "the module's own names".into(),
            )
        }
        ModalityName::Text => {
            let m = TextModality::default();
            let (_, _, encoder) = load_encoder(&m, &dir, &[], &device)?;
            (
                export(&encoder, out, &[], &[source, ("naming", "ssl".into())])?,
                "the module's own names".into(),
            )
        }
    };
    println!(
        "exported {tensors} tensors of {} ({naming}) to {}",
        dir.display(),
        out.display()
    );
    Ok(())
}
