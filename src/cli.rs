//! Command-line interface: `ssl train`, `eval`, `embed`, `export`, `shard`, `bench`,
//! `search-augment`.

use crate::checkpoint_cmds::{CheckpointArgs, CheckpointCommand};
use crate::common::{one_line, read_config};
use crate::devices::parse_device;
use crate::modalities::{self, BuiltIn, Visitor};
use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use clap::{Parser, Subcommand};
use ssl_framework::modality::Modality;
use ssl_framework::train::{RunOptions, train_and_evaluate};
use std::path::{Path, PathBuf};

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

#[derive(Subcommand)]
enum Command {
    /// BYOL pre-training, then evaluation (kNN and linear probe beside a random-init encoder).
    Train {
        /// The kind of data.
        #[arg(long, value_parser = modalities::parser())]
        modality: &'static BuiltIn,
        /// Config file (TOML); default: the modality's CPU-scale config.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Dataset folder or .tar.gz archive (unpacked once into the cache), or vision tar shards
        /// (quoted: 'shards/train-{0000..0127}.tar', see `ssl shard`); default: $SSL_DATA_DIR,
        /// then the cache folder (downloading CIFAR-10 there when needed).
        #[arg(long)]
        data: Option<PathBuf>,
        /// A separate labelled dataset (folder or .tar.gz) for the kNN and linear probes, read
        /// with the run's `[data]` section: pre-train on --data (labels or not), probe on this
        /// (same as --set eval.data=DIR).
        #[arg(long, value_name = "DIR")]
        eval_data: Option<PathBuf>,
        /// Override a config key, e.g. `--set train.epochs=20` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Device: `cpu`; `vulkan`, `vulkan:N`, `vulkan:cpu`, `wgpu`, `metal`, `cuda:N`, `rocm:N` in a build with that feature (README, "Devices").
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
        /// The type of the forward and backward passes: `f32` (default), or mixed precision in
        /// `bf16` or `f16` (f32 master weights; f16 with dynamic loss scaling); refused where
        /// the device lacks the type (same as --set train.precision=...).
        #[arg(long, value_name = "f32|bf16|f16", value_parser = ["f32", "bf16", "f16"])]
        precision: Option<String>,
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
        #[arg(long, value_parser = modalities::parser())]
        modality: Option<&'static BuiltIn>,
        /// Output FILE.safetensors.
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes an image folder as WebDataset-style tar shards (`train-0000.tar`, ...,
    /// `test-0000.tar`, ...: each image's file unchanged as `<key>.<ext>`, its class index as
    /// `<key>.cls`, `classes.txt` beside them), shuffled so every shard mixes the classes; then
    /// `ssl train --modality vision --data 'OUT/train-{0000..NNNN}.tar'` streams them.
    Shard {
        /// The image folder (`train/` and `test/` or `val/` class folders, or unlabelled).
        #[arg(long)]
        data: PathBuf,
        /// The folder the shards are written into.
        #[arg(long)]
        out: PathBuf,
        /// Samples per shard.
        #[arg(long, default_value_t = 1000)]
        per_shard: usize,
        /// Seed of the shuffle.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// `folders` (class folders are labels, written as `.cls`) or `none`.
        #[arg(long, default_value = "folders", value_parser = ["folders", "none"])]
        labels: String,
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
    /// Dataset folder, .tar.gz archive or vision tar shards; default: the data the run
    /// recorded (for `ssl eval`, its eval.data when it had one), else as `ssl train` finds the
    /// run's dataset.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The checkpoint's modality (default: the one it records).
    #[arg(long, value_parser = modalities::parser())]
    modality: Option<&'static BuiltIn>,
    /// Override a key of the run's config, e.g. `--set eval.finetune_epochs=5` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Device: `cpu`; `vulkan`, `vulkan:N`, `vulkan:cpu`, `wgpu`, `metal`, `cuda:N`, `rocm:N` in a build with that feature (README, "Devices").
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// The checkpoint folder and modality named on the command line.
fn open_checkpoint(
    checkpoint: &Path,
    modality: Option<&'static BuiltIn>,
) -> Result<(PathBuf, &'static BuiltIn, serde_json::Value)> {
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
    let modality = match (modality, modalities::find(name)) {
        (Some(m), Some(r)) if m.name != r.name => bail!(
            "--checkpoint {}: a {name} checkpoint, not {}",
            dir.display(),
            m.name
        ),
        (Some(m), _) | (None, Some(m)) => m,
        (None, None) => bail!(
            "--checkpoint {}: the checkpoint does not record its modality: pass --modality {}",
            dir.display(),
            modalities::names("|")
        ),
    };
    Ok((dir, modality, state.config))
}

/// `source.data`, else for `ssl eval` the run's `eval.data`, else the data folder the
/// checkpoint records (when it still exists), else the run's dataset found as `ssl train` does.
fn checkpoint_args(
    source: CheckpointSource,
    probing: bool,
) -> Result<(&'static BuiltIn, CheckpointArgs)> {
    // A device this binary lacks is refused before anything is read.
    let device = parse_device(&source.device)?;
    let (dir, modality, config) = open_checkpoint(&source.checkpoint, source.modality)?;
    let dataset = config["data"]["dataset"].as_str().unwrap_or_default();
    let eval_data = config["eval"]["data"]
        .as_str()
        .filter(|d| probing && !d.is_empty())
        .map(PathBuf::from);
    let recorded = ssl_framework::checkpoint::read_state(&dir)?.data_root;
    let data = match (source.data, eval_data, recorded) {
        (Some(d), _, _) => (modality.locate_data)(Some(d), dataset)?,
        (None, Some(d), _) => {
            eprintln!("data: the run's eval.data, {}", d.display());
            (modality.locate_data)(Some(d), dataset).context("the run's eval.data")?
        }
        (None, None, Some(d)) if ssl_framework::data::locate::data_present(&d) => {
            eprintln!("data: the run's own, {}", d.display());
            d
        }
        (None, None, Some(d)) => bail!(
            "the run's data folder {} is gone (moved or deleted): pass --data DIR",
            d.display()
        ),
        // Checkpoints written before the data folder was recorded.
        (None, None, None) => (modality.locate_data)(None, dataset)?,
    };
    Ok((
        modality,
        CheckpointArgs {
            dir,
            data,
            overrides: source.overrides,
            device,
        },
    ))
}

fn default_out(modality: &str, dataset: &str) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    PathBuf::from("runs").join(format!("{modality}-{dataset}-{secs}"))
}

fn print_table(report: &ssl_framework::train::RunReport) {
    let split = report.results["eval_split"].as_str().unwrap_or("test");
    let samples = report.results["test_samples"].as_u64().unwrap_or(0) as usize;
    crate::checkpoint_cmds::print_probes(split, samples, &report.probes);
    let r = &report.results;
    if let Ok(rep) = serde_json::from_value::<ssl_framework::eval::RepresentationReport>(
        r["representation"].clone(),
    ) {
        println!("{}", rep.describe());
    }
    println!(
        "steps {} | train {:.0} s | {:.0} images/s | wall {:.0} s | final loss {:.4} | collapse std {:.4} rank {:.1}",
        r["steps"],
        r["train_seconds"].as_f64().unwrap_or(0.0),
        r["train_images_per_sec"].as_f64().unwrap_or(0.0),
        r["wall_seconds"].as_f64().unwrap_or(0.0),
        r["final_loss"].as_f64().unwrap_or(f64::NAN),
        r["final_collapse_std"].as_f64().unwrap_or(f64::NAN),
        r["final_effective_rank"].as_f64().unwrap_or(f64::NAN),
    );
    let warnings = r["warnings"].as_array().map_or(0, Vec::len);
    if warnings > 0 {
        println!(
            "{warnings} warning(s) about this run (above, and in results.json \"warnings\"): its figures may not mean what they seem"
        );
    }
}

/// What every modality's `train` takes from the command line.
struct Common {
    config: Option<PathBuf>,
    data: Option<PathBuf>,
    eval_data: Option<PathBuf>,
    overrides: Vec<String>,
    device: Device,
    /// `--device` as given.
    device_name: String,
    out: Option<PathBuf>,
    resume: bool,
    progress: bool,
}

/// `ssl train` of one modality.
struct Train(Common);

impl Visitor for Train {
    type Out = Result<()>;
    fn visit<M: Modality>(self, entry: &'static BuiltIn, new: fn() -> M) -> Result<()> {
        let mut c = self.0;
        let name = entry.name;
        if let Some(d) = c.eval_data.take() {
            if !ssl_framework::data::locate::data_present(&d) {
                bail!("--eval-data {}: no such file or folder", d.display());
            }
            let dir = (entry.locate_data)(Some(d), "").context("--eval-data")?;
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            let value = toml::Value::String(dir.display().to_string());
            c.overrides.push(format!("eval.data={value}"));
        }
        let cfg = read_config::<M>(c.config.as_deref(), entry.default_config, &c.overrides)?;
        // A precision the device lacks is refused before any data is read.
        cfg.train
            .precision
            .check_device(&c.device)
            .map_err(|e| anyhow::anyhow!("--device {}: {e}", c.device_name))?;
        let dataset = modalities::dataset(&cfg);
        let (replicas, finish_mpi) = crate::ranks::replica_group(crate::signals::stop_request())?;
        // Under MPI rank 0 finds (downloads, unpacks) the data first; the others then find it
        // in the cache instead of writing the same files at once.
        if !replicas.writes() {
            replicas.any(false).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let data_root = (entry.locate_data)(c.data, &dataset)?;
        if replicas.ranks() > 1 && replicas.writes() {
            replicas.any(false).map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let out_dir = c.out.unwrap_or_else(|| default_out(name, &dataset));
        if replicas.writes() {
            eprintln!(
                "ssl train: {name}, data {}, output {}",
                data_root.display(),
                out_dir.display()
            );
        }
        let opts = RunOptions {
            out_dir: out_dir.clone(),
            data_root,
            device: c.device,
            resume: c.resume,
            progress: c.progress,
            pause_at_step: None,
            random_init: true,
            stop: crate::signals::stop_request(),
            replicas: replicas.clone(),
        };
        crate::signals::install().context("installing the SIGINT/SIGTERM handlers")?;
        let report =
            train_and_evaluate(new(), cfg, &opts).with_context(|| rank_context(&replicas))?;
        // Every rank waits for the others (rank 0 evaluates) before MPI ends.
        finish_mpi.now();
        if !replicas.writes() {
            // Rank 0 reports the run.
            return Ok(());
        }
        print_table(&report);
        let plot = out_dir.join("training.svg");
        match ssl_search::plot::training_curves(&out_dir.join("metrics.jsonl"), &plot) {
            Ok(true) => println!("training curves: {}", plot.display()),
            Ok(false) => {}
            // The results are written; a plot that fails is reported, not fatal.
            Err(e) => eprintln!("warning: no training plot: {}", one_line(&e.into())),
        }
        println!("results: {}", out_dir.join("results.json").display());
        Ok(())
    }
}

/// The context of a data-parallel rank's error: which rank it is (empty for one process).
fn rank_context(replicas: &ssl_framework::replicas::ReplicaGroup) -> String {
    if replicas.ranks() > 1 {
        format!("rank {} of {}", replicas.rank(), replicas.ranks())
    } else {
        String::new()
    }
}

/// Runs the CLI.
pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Train {
            modality,
            config,
            data,
            eval_data,
            mut overrides,
            device,
            out,
            resume,
            seed,
            no_progress,
            on_nan,
            precision,
        } => {
            if let Some(s) = seed {
                overrides.push(format!("seed={s}"));
            }
            if let Some(mode) = on_nan {
                overrides.push(format!("train.on_nan=\"{mode}\""));
            }
            if let Some(p) = precision {
                overrides.push(format!("train.precision=\"{p}\""));
            }
            let device_name = device.clone();
            let device = parse_device(&device)?;
            let common = Common {
                config,
                data,
                eval_data,
                overrides,
                device,
                device_name,
                out,
                resume,
                progress: !no_progress,
            };
            modality.visit(Train(common))
        }
        Command::Eval {
            source,
            no_finetune,
            out,
        } => {
            let (modality, args) = checkpoint_args(source, true)?;
            modality.visit(CheckpointCommand::Eval {
                args,
                finetune: !no_finetune,
                out,
            })
        }
        Command::Embed { source, out, split } => {
            let (modality, args) = checkpoint_args(source, false)?;
            modality.visit(CheckpointCommand::Embed { args, split, out })
        }
        Command::Export {
            checkpoint,
            modality,
            out,
        } => {
            let (dir, modality, _) = open_checkpoint(&checkpoint, modality)?;
            modality.visit(CheckpointCommand::Export { dir, out })
        }
        Command::Shard {
            data,
            out,
            per_shard,
            seed,
            labels,
        } => {
            use ssl_framework::data::folder::FolderLabels;
            if per_shard == 0 {
                bail!("--per-shard 0: expected at least one sample per shard");
            }
            let labels = if labels == "none" {
                FolderLabels::None
            } else {
                FolderLabels::Folders
            };
            let written =
                ssl_vision::readers::tar_shards::write_shards(&data, labels, &out, per_shard, seed)
                    .with_context(|| format!("ssl shard --data {}", data.display()))?;
            let shards = |n: usize| {
                if n == 1 {
                    "1 shard".to_string()
                } else {
                    format!("{n} shards")
                }
            };
            println!(
                "wrote {} training samples in {}{} to {}",
                written.train.1,
                shards(written.train.0),
                if written.test.0 > 0 {
                    format!(
                        ", {} held-out samples in {}",
                        written.test.1,
                        shards(written.test.0)
                    )
                } else {
                    String::new()
                },
                out.display()
            );
            println!(
                "train on them: ssl train --modality vision --data '{}'",
                written.train_pattern.display()
            );
            Ok(())
        }
        Command::Bench(args) => crate::bench::run(args),
        Command::SearchAugment(args) => crate::search_cmd::run(args),
    }
}
