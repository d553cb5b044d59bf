//! Command-line interface: `ssl train`, `ssl bench`.

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

#[derive(Clone, Copy, Debug, ValueEnum)]
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
    /// Throughput benchmarks (build with --release): BYOL steps and the augmentation pipeline.
    Bench(crate::bench::BenchArgs),
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
fn resolve_local_data(
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
    println!(
        "top-1 accuracy on the {split} split ({} samples)",
        report.results["test_samples"]
    );
    println!(
        "{:<8} {:<10} {:>7} {:>10} {:>12}",
        "probe", "labels", "classes", "trained", "random-init"
    );
    for p in &report.probes {
        let random = p
            .random_init_top1
            .map(|v| format!("{:.2}%", v * 100.0))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<8} {:<10} {:>7} {:>9.2}% {:>12}",
            p.probe,
            p.labels,
            p.classes,
            p.trained_top1 * 100.0,
            random
        );
    }
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
        Command::Bench(args) => crate::bench::run(args),
    }
}
