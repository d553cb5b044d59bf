//! The official CIFAR binary format (Krizhevsky 2009): records of label byte(s) then 3072 bytes
//! (1024 red, 1024 green, 1024 blue, row-major 32x32). CIFAR-10: 1 label byte,
//! `data_batch_{1..5}.bin` and `test_batch.bin`; CIFAR-100: 2 label bytes (coarse, fine),
//! `train.bin` and `test.bin` (the fine label is used).

use crate::image::StoredImage;
use ssl_framework::data::{DataError, Datasets, LabelSet, Split};
use std::path::{Path, PathBuf};

/// CIFAR-10 class names in label order.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// The files of a CIFAR folder: `(train files, test files, label bytes)`.
pub fn files(dir: &Path) -> Option<(Vec<PathBuf>, Vec<PathBuf>, usize)> {
    let c10: Vec<PathBuf> = (1..=5)
        .map(|i| dir.join(format!("data_batch_{i}.bin")))
        .collect();
    if c10.iter().any(|p| p.is_file()) && dir.join("test_batch.bin").is_file() {
        return Some((
            c10.into_iter().filter(|p| p.is_file()).collect(),
            vec![dir.join("test_batch.bin")],
            1,
        ));
    }
    if dir.join("train.bin").is_file() && dir.join("test.bin").is_file() {
        return Some((vec![dir.join("train.bin")], vec![dir.join("test.bin")], 2));
    }
    None
}

/// Parses the records of one file.
///
/// # Errors
/// [`DataError::Corrupt`] naming the file when its size is not a whole number of records or a
/// label is out of range.
pub fn parse(
    path: &Path,
    bytes: &[u8],
    label_bytes: usize,
    classes: usize,
) -> Result<(Vec<StoredImage>, Vec<usize>), DataError> {
    let record = label_bytes + 3072;
    if bytes.is_empty() || bytes.len() % record != 0 {
        return Err(DataError::Corrupt {
            path: path.to_path_buf(),
            reason: format!(
                "{} bytes is not a whole number of {record}-byte CIFAR records",
                bytes.len()
            ),
        });
    }
    let mut items = Vec::with_capacity(bytes.len() / record);
    let mut labels = Vec::with_capacity(bytes.len() / record);
    for (i, rec) in bytes.chunks_exact(record).enumerate() {
        let label = rec[label_bytes - 1] as usize;
        if label >= classes {
            return Err(DataError::Corrupt {
                path: path.to_path_buf(),
                reason: format!("record {i}: label {label} >= {classes} classes"),
            });
        }
        let planes = &rec[label_bytes..];
        let mut pixels = vec![0u8; 3072];
        for p in 0..1024 {
            pixels[p * 3] = planes[p];
            pixels[p * 3 + 1] = planes[1024 + p];
            pixels[p * 3 + 2] = planes[2048 + p];
        }
        items.push(StoredImage {
            width: 32,
            height: 32,
            pixels,
        });
        labels.push(label);
    }
    Ok((items, labels))
}

fn read_split(
    paths: &[PathBuf],
    label_bytes: usize,
    classes: &[String],
) -> Result<Split<StoredImage>, DataError> {
    let mut items = Vec::new();
    let mut labels = Vec::new();
    for p in paths {
        let bytes = std::fs::read(p).map_err(|source| DataError::Io {
            path: p.clone(),
            source,
        })?;
        let (i, l) = parse(p, &bytes, label_bytes, classes.len())?;
        items.extend(i);
        labels.extend(l);
    }
    Ok(Split {
        items,
        label_sets: vec![LabelSet {
            name: "class".into(),
            classes: classes.to_vec(),
            labels,
        }],
    })
}

/// Reads a CIFAR-10 or CIFAR-100 binary folder.
///
/// # Errors
/// [`DataError`] naming the folder or the malformed file.
pub fn load(dir: &Path) -> Result<Datasets<StoredImage>, DataError> {
    let (train, test, label_bytes) = files(dir).ok_or_else(|| DataError::NoData {
        path: dir.to_path_buf(),
        reason:
            "no CIFAR binary batches (data_batch_N.bin + test_batch.bin, or train.bin + test.bin)"
                .into(),
    })?;
    let (classes, name): (Vec<String>, &str) = if label_bytes == 1 {
        (
            CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
            "cifar10",
        )
    } else {
        (
            (0..100).map(|i| format!("class{i:02}")).collect(),
            "cifar100",
        )
    };
    Ok(Datasets {
        name: name.into(),
        train: read_split(&train, label_bytes, &classes)?,
        test: read_split(&test, label_bytes, &classes)?,
        skipped: 0,
    })
}
