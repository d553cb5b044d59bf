//! Writers of what a trained encoder gives: embeddings with their labels (safetensors or numpy
//! `.npz`, with the class names in a JSON file beside them), and the encoder's weights
//! (safetensors in PyTorch's layout, named as the encoder's [`Encoder::export_naming`] says).

use crate::Encoder;
use crate::data::LabelSet;
pub use crate::encoder::ExportNaming;
use crate::eval::Features;
use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use std::path::{Path, PathBuf};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The output file cannot be used or written (a command line names it with its flag,
    /// e.g. `--out FILE: ...`).
    #[error("{}: {reason}", path.display())]
    Out {
        /// The output file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Another file (e.g. the JSON beside the embeddings) cannot be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The arrays do not fit together (a bug, not an input error).
    #[error("{0}")]
    Inconsistent(String),
}

fn out_err(path: &Path) -> impl Fn(String) -> ExportError + '_ {
    move |reason| ExportError::Out {
        path: path.to_path_buf(),
        reason,
    }
}

/// Fails early (before any work) when the folder of the output file `out` does not exist.
///
/// # Errors
/// [`ExportError::Out`] naming the missing folder.
pub fn check_out_folder(out: &Path) -> Result<(), ExportError> {
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = parent
        && !p.is_dir()
    {
        return Err(out_err(out)(format!(
            "the folder {} does not exist",
            p.display()
        )));
    }
    Ok(())
}

/// The file format of an embeddings file, from its extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbeddingFormat {
    /// `.safetensors` (the JSON metadata also under the header's `ssl` key).
    Safetensors,
    /// numpy's `.npz`: one `.npy` array per name.
    Npz,
}

impl EmbeddingFormat {
    /// The format `path`'s extension names.
    ///
    /// # Errors
    /// [`ExportError::Out`] when the extension is neither `.safetensors` nor `.npz`.
    pub fn of(path: &Path) -> Result<Self, ExportError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("safetensors") => Ok(Self::Safetensors),
            Some("npz") => Ok(Self::Npz),
            _ => Err(out_err(path)(
                "expected a .safetensors or .npz file (an .npz holds one .npy array per name: numpy.load(file)[\"train_embeddings\"])".into(),
            )),
        }
    }
}

/// One split's embeddings and labels.
pub struct SplitEmbeddings {
    /// `train`, `test`, or `validation` (the held-out part of the training split): the
    /// prefix of the split's array names.
    pub name: &'static str,
    /// The embeddings `[n, dim]`.
    pub features: Features,
    /// Every label set of the split, aligned with the rows of `features`.
    pub labels: Vec<LabelSet>,
}

enum Array {
    F32(Vec<f32>),
    I64(Vec<i64>),
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

/// Writes `splits` to `out` (atomically) in `format`: per split `<split>_embeddings` `[n, dim]`
/// f32 and `<split>_labels_<label set>` `[n]` i64 (-1 where a sample has no label); and `meta`
/// (e.g. the class names) as pretty JSON to `out` + `.json`.
///
/// # Errors
/// [`ExportError::Out`] when `out` cannot be encoded or written, [`ExportError::Io`] when the
/// JSON file cannot be written.
pub fn write_embeddings(
    out: &Path,
    format: EmbeddingFormat,
    splits: &[SplitEmbeddings],
    meta: &serde_json::Value,
) -> Result<(), ExportError> {
    let arrays = arrays(splits);
    let err = out_err(out);
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
                .map_err(|e| {
                    ExportError::Inconsistent(format!(
                        "embeddings: inconsistent tensor shapes: {e}"
                    ))
                })?;
            let metadata = std::collections::HashMap::from([(
                "ssl".to_string(),
                serde_json::to_string(meta).expect("metadata serializes"),
            )]);
            safetensors::serialize(views, Some(metadata)).map_err(|e| err(e.to_string()))?
        }
        EmbeddingFormat::Npz => {
            use npyz::WriterBuilder;
            let io = |e: std::io::Error| err(e.to_string());
            let mut cursor = std::io::Cursor::new(Vec::new());
            {
                let mut npz = npyz::npz::NpzWriter::new(&mut cursor);
                for (name, shape, a) in arrays {
                    let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
                    match a {
                        Array::F32(v) => {
                            let mut w = npz
                                .array::<f32>(&name, Default::default())
                                .map_err(io)?
                                .default_dtype()
                                .shape(&shape)
                                .begin_nd()
                                .map_err(io)?;
                            w.extend(v).map_err(io)?;
                            w.finish().map_err(io)?;
                        }
                        Array::I64(v) => {
                            let mut w = npz
                                .array::<i64>(&name, Default::default())
                                .map_err(io)?
                                .default_dtype()
                                .shape(&shape)
                                .begin_nd()
                                .map_err(io)?;
                            w.extend(v).map_err(io)?;
                            w.finish().map_err(io)?;
                        }
                    }
                }
                npz.zip_writer().finish().map_err(|e| err(e.to_string()))?;
            }
            cursor.into_inner()
        }
    };
    crate::fsutil::write_atomic(out, &bytes).map_err(|e| err(e.to_string()))?;
    // The class names (and where the embeddings come from) beside the arrays: FILE.json.
    let mut side = out.as_os_str().to_owned();
    side.push(".json");
    let side = PathBuf::from(side);
    crate::fsutil::write_atomic(
        &side,
        serde_json::to_string_pretty(meta)
            .expect("metadata serializes")
            .as_bytes(),
    )
    .map_err(|source| ExportError::Io { path: side, source })?;
    Ok(())
}

/// Writes the encoder's parameters and BatchNorm statistics to the safetensors file `out`, in
/// PyTorch's layout (Linear weights `[out, in]`, norm scale/shift named `weight`/`bias`), named
/// as `naming` says, with `naming.metadata` and `metadata` in the header. Returns the number of
/// tensors.
///
/// # Errors
/// [`ExportError::Out`] when `out` is not a `.safetensors` file, its folder does not exist, or
/// it cannot be written.
pub fn export_encoder<E: Encoder>(
    encoder: &E,
    out: &Path,
    naming: &ExportNaming,
    metadata: &[(&str, String)],
) -> Result<usize, ExportError> {
    if !out
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
    {
        return Err(out_err(out)("expected a .safetensors file".into()));
    }
    check_out_folder(out)?;
    let encoder = encoder.valid();
    let mut store = SafetensorsStore::from_file(out)
        .with_to_adapter(BurnToPyTorchAdapter)
        .skip_enum_variants(true)
        .overwrite(true);
    for (from, to) in &naming.renames {
        store = store.with_key_remapping(from, to.clone());
    }
    for (k, v) in metadata {
        store = store.metadata(*k, v.clone());
    }
    for (k, v) in &naming.metadata {
        store = store.metadata(k, v.clone());
    }
    encoder
        .save_into(&mut store)
        .map_err(|e| out_err(out)(e.to_string()))?;
    Ok(encoder.collect(None, None, true).len())
}
