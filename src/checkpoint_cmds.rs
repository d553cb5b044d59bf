//! Commands on a finished checkpoint: `ssl eval` (kNN, linear probe, fine-tuning on all labels
//! and on 1% / 10% of them, each beside random init), `ssl embed` (embeddings and labels as
//! safetensors or `.npz`) and `ssl export` (the encoder's weights as safetensors, under
//! torchvision's names for ResNets).

use crate::modalities::{BuiltIn, Visitor};
use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::Device;
use ssl_framework::Encoder;
use ssl_framework::checkpoint::{Pretrained, load_encoder, load_pretrained};
use ssl_framework::data::loader::resolve_workers;
use ssl_framework::eval::{
    EvalOptions, ProbeResult, evaluate_pretrained, extract_readable_features,
};
use ssl_framework::export::{
    EmbeddingFormat, ExportError, SplitEmbeddings, export_encoder, write_embeddings,
};
use ssl_framework::modality::Modality;
use ssl_framework::search_space::clone_ops;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a checkpoint command reads from.
pub struct CheckpointArgs {
    /// The checkpoint folder (already resolved by `find_checkpoint`).
    pub dir: PathBuf,
    /// The dataset folder.
    pub data: PathBuf,
    /// `--set` overrides of the run's config.
    pub overrides: Vec<String>,
    /// The plain device.
    pub device: Device,
}

/// The run folder of a checkpoint `run/checkpoints/step-N` (else the checkpoint itself).
pub fn run_folder(checkpoint: &Path) -> PathBuf {
    match checkpoint.parent() {
        Some(p) if p.file_name().is_some_and(|n| n == "checkpoints") => {
            p.parent().map(Path::to_path_buf).unwrap_or_default()
        }
        _ => checkpoint.to_path_buf(),
    }
}

/// An export error, the output file named as the command line names it (`--out FILE: ...`).
fn out_flag(e: ExportError) -> anyhow::Error {
    match e {
        ExportError::Out { .. } => anyhow::anyhow!("--out {e}"),
        other => other.into(),
    }
}

/// A command on a checkpoint, run with the checkpoint's modality type.
pub enum CheckpointCommand {
    /// `ssl eval`: with fine-tuning or not; the results file (default: in the run folder).
    Eval {
        /// The checkpoint and data.
        args: CheckpointArgs,
        /// Fine-tune too.
        finetune: bool,
        /// The results file.
        out: Option<PathBuf>,
    },
    /// `ssl embed` of `split` (`train`, `test` or `both`) into `out`.
    Embed {
        /// The checkpoint and data.
        args: CheckpointArgs,
        /// Which split.
        split: String,
        /// The embeddings file.
        out: PathBuf,
    },
    /// `ssl export` of the checkpoint `dir` into `out`.
    Export {
        /// The checkpoint folder.
        dir: PathBuf,
        /// The safetensors file.
        out: PathBuf,
    },
}

impl Visitor for CheckpointCommand {
    type Out = Result<()>;
    fn visit<M: Modality>(self, _: &'static BuiltIn, new: fn() -> M) -> Result<()> {
        match self {
            Self::Eval {
                args,
                finetune,
                out,
            } => eval(new(), &args, finetune, out),
            Self::Embed { args, split, out } => embed(new(), &args, &split, &out),
            Self::Export { dir, out } => export(new(), &dir, &out),
        }
    }
}

fn load<M: Modality>(modality: M, a: &CheckpointArgs) -> Result<Pretrained<M>> {
    eprintln!(
        "loading {} (step {}) and the data in {}",
        a.dir.display(),
        ssl_framework::checkpoint::read_state(&a.dir)
            .map(|s| s.step.to_string())
            .unwrap_or_else(|_| "?".into()),
        a.data.display()
    );
    let p = load_pretrained(modality, &a.dir, &a.overrides, &a.data, &a.device)?;
    if p.skipped > 0 {
        eprintln!(
            "warning: skipped {} files in {} (named above)",
            p.skipped,
            a.data.display()
        );
    }
    Ok(p)
}

/// `ssl eval`: evaluates the checkpoint and writes `out` (JSON) atomically.
pub fn eval<M: Modality>(
    modality: M,
    a: &CheckpointArgs,
    finetune: bool,
    out: Option<PathBuf>,
) -> Result<()> {
    let started = std::time::Instant::now();
    if let Some(o) = &out {
        ssl_framework::export::check_out_folder(o).map_err(out_flag)?;
    }
    let p = load(modality, a)?;
    let split = if p.config.eval.split == ssl_framework::config::EvalSplit::Validation {
        "validation"
    } else {
        "test"
    };
    if p.data.train_labels.is_empty() {
        eprintln!(
            "evaluating the label-free metrics ({} held-out and {} training samples; no labels to probe or fine-tune on)",
            p.data.test.len(),
            p.data.train.len()
        );
    } else {
        eprintln!(
            "evaluating on the {split} split ({} samples; probes fit on {}){}",
            p.data.test.len(),
            p.data.train.len(),
            if finetune {
                format!(
                    ", fine-tuning {} epochs on {:?} of the labels",
                    p.config.eval.finetune_epochs, p.config.eval.finetune_fractions
                )
            } else {
                String::new()
            }
        );
    }
    for note in &p.notes {
        eprintln!("note: {note}");
    }
    let evaluation = evaluate_pretrained(
        &p,
        EvalOptions {
            finetune,
            verbose: true,
        },
    )?;
    let out = out.unwrap_or_else(|| run_folder(&a.dir).join("eval.json"));
    let report = serde_json::json!({
        "modality": p.modality.name(),
        "dataset": p.dataset,
        "checkpoint": a.dir,
        "step": p.state.step,
        "data": a.data,
        "eval_split": split,
        "train_samples": p.data.train.len(),
        "test_samples": p.data.test.len(),
        "eval": p.config.eval,
        "wall_seconds": started.elapsed().as_secs_f64(),
        "eval_notes": p.notes,
        "probes": evaluation.probes,
        "representation": evaluation.representation,
    });
    let text = serde_json::to_string_pretty(&report).expect("report serializes");
    ssl_framework::fsutil::write_atomic(&out, text.as_bytes())
        .with_context(|| format!("--out {}", out.display()))?;
    print_probes(split, p.data.test.len(), &evaluation.probes);
    if let Some(r) = &evaluation.representation {
        println!("{}", r.describe());
    }
    println!("results: {}", out.display());
    Ok(())
}

/// Prints probe results as a table.
pub fn print_probes(split: &str, samples: usize, probes: &[ProbeResult]) {
    if probes.is_empty() {
        println!("no probes (the evaluation data has no usable labels)");
        return;
    }
    println!("top-1 accuracy on the {split} split ({samples} samples)");
    let w = probes
        .iter()
        .map(|p| p.probe.len() + 1)
        .max()
        .unwrap_or(0)
        .max(8);
    println!(
        "{:<w$} {:<10} {:>7} {:>10} {:>12}",
        "probe", "labels", "classes", "trained", "random-init"
    );
    for p in probes {
        let random = p
            .random_init_top1
            .map(|v| format!("{:.2}%", v * 100.0))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<w$} {:<10} {:>7} {:>9.2}% {:>12}",
            p.probe,
            p.labels,
            p.classes,
            p.trained_top1 * 100.0,
            random
        );
    }
}

/// `ssl embed`: the trained encoder's features `[n, dim]` of the train and/or test split with
/// every label set (`-1` where a sample has no label), as safetensors or `.npz`.
pub fn embed<M: Modality>(modality: M, a: &CheckpointArgs, split: &str, out: &Path) -> Result<()> {
    let format = EmbeddingFormat::of(out).map_err(out_flag)?;
    ssl_framework::export::check_out_folder(out).map_err(out_flag)?;
    let p = load(modality, a)?;
    let workers = resolve_workers(p.config.train.num_workers);
    let encoder = p.encoder.valid();
    let ops = Arc::new(clone_ops(&p.config.augment.eval));
    let mut splits = Vec::new();
    // With `eval.split = "validation"` the held-out part is a validation split: named so.
    let held_out = if p.config.eval.split == ssl_framework::config::EvalSplit::Validation {
        "validation"
    } else {
        "test"
    };
    for (name, items, labels) in [
        ("train", &p.data.train, &p.data.train_labels),
        (held_out, &p.data.test, &p.data.test_labels),
    ] {
        let wanted = if name == "train" { "train" } else { "test" };
        if split != "both" && split != wanted {
            continue;
        }
        eprintln!("embedding the {name} split ({} samples)", items.len());
        let (features, unreadable) = extract_readable_features(
            &p.modality,
            &encoder,
            items.clone(),
            Arc::new((0..items.len()).collect()),
            ops.clone(),
            p.config.eval.batch_size,
            workers,
            &p.device,
        )?;
        if !unreadable.is_empty() {
            bail!(
                "{} samples of the {name} split could not be read (named above; rows {:?}...): an embeddings file needs every row; remove or replace those files",
                unreadable.len(),
                &unreadable[..unreadable.len().min(5)]
            );
        }
        splits.push(SplitEmbeddings {
            name,
            features,
            labels: labels.clone(),
        });
    }
    let meta = serde_json::json!({
        "modality": p.modality.name(),
        "dataset": p.dataset,
        "checkpoint": a.dir,
        "step": p.state.step,
        "dim": encoder.dim(),
        "eval_split": p.config.eval.split,
        "classes": splits.first().map(|s| s.labels.iter().map(|l| (l.name.clone(), l.classes.clone())).collect::<std::collections::BTreeMap<_, _>>()),
    });
    write_embeddings(out, format, &splits, &meta).map_err(out_flag)?;
    for s in &splits {
        println!(
            "{}: {} x {} embeddings, labels: {}",
            s.name,
            s.features.len(),
            s.features.dim,
            if s.labels.is_empty() {
                "none".to_string()
            } else {
                s.labels
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
    println!("embeddings: {}", out.display());
    Ok(())
}

/// `ssl export`: the trained encoder's parameters and BatchNorm statistics as safetensors, in
/// PyTorch's layout, named as the encoder says (torchvision's names for a ResNet).
fn export<M: Modality>(modality: M, dir: &Path, out: &Path) -> Result<()> {
    let device = crate::devices::parse_device("cpu")?;
    let (_, _, encoder) = load_encoder(&modality, dir, &[], &device)?;
    let naming = encoder.export_naming();
    let source = ("source", dir.display().to_string());
    let tensors = export_encoder(&encoder, out, &naming, &[source]).map_err(out_flag)?;
    println!(
        "exported {tensors} tensors of {} ({}) to {}",
        dir.display(),
        naming.description,
        out.display()
    );
    Ok(())
}
