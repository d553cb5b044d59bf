//! Commands on a finished checkpoint: `ssl eval` (kNN, linear probe, fine-tuning on all labels
//! and on 1% / 10% of them, each beside random init), `ssl embed` (embeddings and labels as
//! safetensors or `.npz`) and `ssl export` (the encoder's weights as safetensors, under
//! torchvision's names for ResNets).

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use burn::tensor::Device;
use ssl_framework::Encoder;
use ssl_framework::checkpoint::{Pretrained, load_pretrained};
use ssl_framework::data::LabelSet;
use ssl_framework::data::loader::resolve_workers;
use ssl_framework::eval::{EvalOptions, evaluate_pretrained};
use ssl_framework::eval::{Features, ProbeResult, extract_features};
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

/// Fails early (before any work) when `out`'s folder does not exist.
pub fn check_out_folder(out: &Path) -> Result<()> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = parent
        && !p.is_dir()
    {
        bail!(
            "--out {}: the folder {} does not exist",
            out.display(),
            p.display()
        );
    }
    Ok(())
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
            "warning: skipped {} unreadable files in {}",
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
        check_out_folder(o)?;
    }
    let p = load(modality, a)?;
    let split = if p.config.eval.split == ssl_framework::config::EvalSplit::Validation {
        "validation"
    } else {
        "test"
    };
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
    let probes = evaluate_pretrained(
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
        "probes": probes,
    });
    let text = serde_json::to_string_pretty(&report).expect("report serializes");
    ssl_framework::fsutil::write_atomic(&out, text.as_bytes())
        .with_context(|| format!("--out {}", out.display()))?;
    print_probes(split, p.data.test.len(), &probes);
    println!("results: {}", out.display());
    Ok(())
}

/// Prints probe results as a table.
pub fn print_probes(split: &str, samples: usize, probes: &[ProbeResult]) {
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

/// One split's embeddings and labels.
struct SplitEmbeddings {
    /// `train`, `test`, or `validation` (the held-out part of the training split).
    name: &'static str,
    features: Features,
    labels: Vec<LabelSet>,
}

/// `ssl embed`: the trained encoder's features `[n, dim]` of the train and/or test split with
/// every label set (`-1` where a sample has no label), as safetensors or `.npz`.
pub fn embed<M: Modality>(modality: M, a: &CheckpointArgs, split: &str, out: &Path) -> Result<()> {
    let format = EmbeddingFormat::of(out)?;
    check_out_folder(out)?;
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
        let features = extract_features(
            &p.modality,
            &encoder,
            items.clone(),
            ops.clone(),
            p.config.eval.batch_size,
            workers,
            &p.device,
        )?;
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
    write_embeddings(out, format, &splits, &meta)?;
    for s in &splits {
        println!(
            "{}: {} x {} embeddings, labels {}",
            s.name,
            s.features.len(),
            s.features.dim,
            s.labels
                .iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("embeddings: {}", out.display());
    Ok(())
}

#[derive(Clone, Copy)]
enum EmbeddingFormat {
    Safetensors,
    Npz,
}

impl EmbeddingFormat {
    fn of(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("safetensors") => Ok(Self::Safetensors),
            Some("npz") => Ok(Self::Npz),
            _ => bail!(
                "--out {}: expected a .safetensors or .npz file (an .npz holds one .npy array per name: numpy.load(file)[\"train_embeddings\"])",
                path.display()
            ),
        }
    }
}

/// The arrays of an embeddings file: `<split>_embeddings` `[n, dim]` f32 and
/// `<split>_labels_<label set>` `[n]` i64 (-1: unlabelled).
fn arrays(splits: &[SplitEmbeddings]) -> Vec<(String, Vec<usize>, Array)> {
    let mut out = Vec::new();
    for s in splits {
        out.push((
            format!("{}_embeddings", s.name),
            vec![s.features.len(), s.features.dim],
            Array::F32(s.features.data.clone()),
        ));
        for ls in &s.labels {
            let labels: Vec<i64> = ls
                .labels
                .iter()
                .map(|&l| {
                    if l == LabelSet::UNLABELED {
                        -1
                    } else {
                        l as i64
                    }
                })
                .collect();
            out.push((
                format!("{}_labels_{}", s.name, ls.name),
                vec![labels.len()],
                Array::I64(labels),
            ));
        }
    }
    out
}

enum Array {
    F32(Vec<f32>),
    I64(Vec<i64>),
}

fn write_embeddings(
    out: &Path,
    format: EmbeddingFormat,
    splits: &[SplitEmbeddings],
    meta: &serde_json::Value,
) -> Result<()> {
    let arrays = arrays(splits);
    let bytes = match format {
        EmbeddingFormat::Safetensors => {
            use safetensors::tensor::{Dtype, TensorView};
            let raw: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = arrays
                .into_iter()
                .map(|(name, shape, a)| match a {
                    Array::F32(v) => (
                        name,
                        shape,
                        Dtype::F32,
                        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    ),
                    Array::I64(v) => (
                        name,
                        shape,
                        Dtype::I64,
                        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    ),
                })
                .collect();
            let views = raw
                .iter()
                .map(|(name, shape, dtype, bytes)| {
                    TensorView::new(*dtype, shape.clone(), bytes).map(|v| (name.clone(), v))
                })
                .collect::<Result<Vec<_>, _>>()
                .context("embeddings: inconsistent tensor shapes")?;
            let metadata = std::collections::HashMap::from([(
                "ssl".to_string(),
                serde_json::to_string(meta).expect("metadata serializes"),
            )]);
            safetensors::serialize(views, Some(metadata))
                .with_context(|| format!("--out {}", out.display()))?
        }
        EmbeddingFormat::Npz => {
            use npyz::WriterBuilder;
            let mut cursor = std::io::Cursor::new(Vec::new());
            {
                let mut npz = npyz::npz::NpzWriter::new(&mut cursor);
                for (name, shape, a) in arrays {
                    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
                    match a {
                        Array::F32(v) => {
                            let mut w = npz
                                .array::<f32>(&name, Default::default())?
                                .default_dtype()
                                .shape(&shape)
                                .begin_nd()?;
                            w.extend(v)?;
                            w.finish()?;
                        }
                        Array::I64(v) => {
                            let mut w = npz
                                .array::<i64>(&name, Default::default())?
                                .default_dtype()
                                .shape(&shape)
                                .begin_nd()?;
                            w.extend(v)?;
                            w.finish()?;
                        }
                    }
                }
                npz.zip_writer()
                    .finish()
                    .with_context(|| format!("--out {}", out.display()))?;
            }
            cursor.into_inner()
        }
    };
    ssl_framework::fsutil::write_atomic(out, &bytes)
        .with_context(|| format!("--out {}", out.display()))?;
    // The class names (and where the embeddings come from) beside the arrays: FILE.json.
    let mut side = out.as_os_str().to_owned();
    side.push(".json");
    let side = PathBuf::from(side);
    ssl_framework::fsutil::write_atomic(
        &side,
        serde_json::to_string_pretty(meta)
            .expect("metadata serializes")
            .as_bytes(),
    )
    .with_context(|| format!("{}", side.display()))?;
    Ok(())
}

/// `ssl export`: the trained encoder's parameters and BatchNorm statistics as safetensors, in
/// PyTorch's layout (Linear weights `[out, in]`, norm scale/shift named `weight`/`bias`), with
/// `renames` (regex, replacement) applied to the names. Returns the number of tensors.
pub fn export<E: Encoder>(
    encoder: &E,
    out: &Path,
    renames: &[(String, String)],
    metadata: &[(&str, String)],
) -> Result<usize> {
    if !out
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
    {
        bail!("--out {}: expected a .safetensors file", out.display());
    }
    check_out_folder(out)?;
    let encoder = encoder.valid();
    let mut store = SafetensorsStore::from_file(out)
        .with_to_adapter(BurnToPyTorchAdapter)
        .skip_enum_variants(true)
        .overwrite(true);
    for (from, to) in renames {
        store = store.with_key_remapping(from, to.clone());
    }
    for (k, v) in metadata {
        store = store.metadata(*k, v.clone());
    }
    encoder
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("--out {}: {e}", out.display()))?;
    let tensors = encoder.collect(None, None, true).len();
    Ok(tensors)
}
