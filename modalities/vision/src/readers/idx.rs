//! IDX files (LeCun et al., MNIST; Fashion-MNIST): big-endian magic `0x00000803` (images,
//! `[n, rows, cols]` u8) or `0x00000801` (labels, `[n]` u8), optionally gzipped. Grey images are
//! stored as RGB with equal channels.

use crate::image::StoredImage;
use flate2::read::GzDecoder;
use ssl_framework::data::{DataError, Datasets, LabelSet, Split};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Finds `{prefix}-{kind}-ubyte` or its `.gz` in `dir`.
pub fn find(dir: &Path, prefix: &str, kind: &str) -> Option<PathBuf> {
    [
        format!("{prefix}-{kind}-ubyte"),
        format!("{prefix}-{kind}-ubyte.gz"),
        format!("{prefix}-{}-ubyte", kind.replace('-', ".")),
    ]
    .iter()
    .map(|n| dir.join(n))
    .find(|p| p.is_file())
}

fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("bad gzip data: {e}"),
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Parses an IDX image file's bytes.
///
/// # Errors
/// [`DataError::Corrupt`] naming `path` for a wrong magic number or a size mismatch.
pub fn parse_images(path: &Path, b: &[u8]) -> Result<Vec<StoredImage>, DataError> {
    let corrupt = |reason: String| DataError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if b.len() < 16 || be_u32(b, 0) != 0x0803 {
        return Err(corrupt(
            "not an IDX image file (magic 0x00000803 expected)".into(),
        ));
    }
    let (n, rows, cols) = (
        be_u32(b, 4) as usize,
        be_u32(b, 8) as usize,
        be_u32(b, 12) as usize,
    );
    let size = rows
        .checked_mul(cols)
        .filter(|s| *s > 0 && *s <= 1 << 24)
        .ok_or_else(|| corrupt(format!("invalid image size {rows}x{cols}")))?;
    if n.checked_mul(size).map(|t| t + 16) != Some(b.len()) {
        return Err(corrupt(format!(
            "header says {n} images of {rows}x{cols}, file has {} bytes",
            b.len()
        )));
    }
    Ok(b[16..]
        .chunks_exact(size)
        .map(|g| StoredImage {
            width: cols as u32,
            height: rows as u32,
            pixels: g.iter().flat_map(|&v| [v, v, v]).collect(),
        })
        .collect())
}

/// Parses an IDX label file's bytes.
///
/// # Errors
/// [`DataError::Corrupt`] naming `path` for a wrong magic number or a size mismatch.
pub fn parse_labels(path: &Path, b: &[u8]) -> Result<Vec<usize>, DataError> {
    let corrupt = |reason: String| DataError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    if b.len() < 8 || be_u32(b, 0) != 0x0801 {
        return Err(corrupt(
            "not an IDX label file (magic 0x00000801 expected)".into(),
        ));
    }
    let n = be_u32(b, 4) as usize;
    if b.len() != 8 + n {
        return Err(corrupt(format!(
            "header says {n} labels, file has {} bytes",
            b.len()
        )));
    }
    Ok(b[8..].iter().map(|&v| v as usize).collect())
}

fn split(dir: &Path, prefix: &str) -> Result<Split<StoredImage>, DataError> {
    let missing = |kind: &str| DataError::NoData {
        path: dir.to_path_buf(),
        reason: format!("missing {prefix}-{kind}-ubyte[.gz]"),
    };
    let ip = find(dir, prefix, "images-idx3").ok_or_else(|| missing("images-idx3"))?;
    let lp = find(dir, prefix, "labels-idx1").ok_or_else(|| missing("labels-idx1"))?;
    let items = parse_images(&ip, &read_maybe_gz(&ip)?)?;
    let labels = parse_labels(&lp, &read_maybe_gz(&lp)?)?;
    if items.len() != labels.len() {
        return Err(DataError::Corrupt {
            path: lp,
            reason: format!("{} labels for {} images", labels.len(), items.len()),
        });
    }
    let classes = labels.iter().max().map(|m| m + 1).unwrap_or(0).max(10);
    Ok(Split {
        items,
        label_sets: vec![LabelSet {
            name: "class".into(),
            classes: (0..classes).map(|c| c.to_string()).collect(),
            labels,
        }],
    })
}

/// Reads `train-*` and `t10k-*` IDX files.
///
/// # Errors
/// [`DataError`] naming the missing or malformed file.
pub fn load(dir: &Path) -> Result<Datasets<StoredImage>, DataError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "idx".into());
    Ok(Datasets {
        name,
        train: split(dir, "train")?,
        test: split(dir, "t10k")?,
        skipped: 0,
    })
}
