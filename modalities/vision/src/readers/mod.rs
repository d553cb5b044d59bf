//! Image dataset readers: image folders (`root/{train,test|val}/<class>/...`, or unlabelled), the
//! official CIFAR-10/100 binary format, and IDX (MNIST, Fashion-MNIST; gzipped or not).
//! Unreadable image files are skipped and counted (a warning names each of the first few);
//! a malformed binary file fails with its path.

pub mod cifar_binary;
pub mod idx;
pub mod image_folder;
pub mod image_index;
pub mod tar_shards;

use crate::image::{ImageRecord, StoredImage};
use serde::{Deserialize, Serialize};
use ssl_framework::data::folder::FolderLabels;
use ssl_framework::data::{DataError, Datasets};
use std::path::Path;

/// The on-disk layout of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Detect from the folder's content.
    #[default]
    Auto,
    /// `root/{train,test|val}/<class>/...` or a folder of unlabelled images (JPEG, PNG, WebP,
    /// BMP, TIFF, GIF).
    ImageFolder,
    /// CIFAR-10 `data_batch_{1..5}.bin` + `test_batch.bin`, or CIFAR-100 `train.bin` + `test.bin`.
    CifarBinary,
    /// `{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`.
    Idx,
}

/// Detects the layout of `root` (also looking one folder down, e.g. `cifar-10-batches-bin/`).
///
/// # Errors
/// [`DataError::NoData`] naming the folder when no known layout is found.
pub fn detect(root: &Path) -> Result<(Format, std::path::PathBuf), DataError> {
    let mut candidates = vec![root.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(root) {
        let mut subs: Vec<_> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        subs.sort();
        candidates.extend(subs);
    } else {
        return Err(DataError::NoData {
            path: root.to_path_buf(),
            reason: "folder does not exist or cannot be read".into(),
        });
    }
    for dir in &candidates {
        if dir.join("train").is_dir() && (dir.join("test").is_dir() || dir.join("val").is_dir()) {
            return Ok((Format::ImageFolder, dir.clone()));
        }
        if cifar_binary::files(dir).is_some() {
            return Ok((Format::CifarBinary, dir.clone()));
        }
        if idx::find(dir, "train", "images-idx3").is_some() {
            return Ok((Format::Idx, dir.clone()));
        }
    }
    Err(DataError::NoData {
        path: root.to_path_buf(),
        reason: "no image dataset found: expected train/ and test/ (or val/) class folders, CIFAR binary batches, or IDX files".into(),
    })
}

/// Reads the train and test splits of `root` in `format`. With `Format::Auto`, a folder in
/// none of the known layouts ([`detect`]) is read as an image folder (labelled by its class
/// folders, or unlabelled). Image folders come back indexed, not decoded
/// ([`ImageRecord::Encoded`]); the binary formats come back decoded.
///
/// # Errors
/// [`DataError`] naming the folder or file.
pub fn load(
    root: &Path,
    format: Format,
    labels: FolderLabels,
) -> Result<Datasets<ImageRecord>, DataError> {
    let (format, dir) = match format {
        Format::Auto => match detect(root) {
            Ok(found) => found,
            Err(_) if root.is_dir() => (Format::ImageFolder, root.to_path_buf()),
            Err(e) => return Err(e),
        },
        f => (f, root.to_path_buf()),
    };
    match format {
        Format::ImageFolder => image_folder::load(&dir, labels),
        Format::CifarBinary => cifar_binary::load(&dir).map(decoded),
        Format::Idx => idx::load(&dir).map(decoded),
        Format::Auto => unreachable!("resolved above"),
    }
}

/// Decoded images as records.
fn decoded(d: Datasets<StoredImage>) -> Datasets<ImageRecord> {
    let wrap = |s: ssl_framework::data::Split<StoredImage>| ssl_framework::data::Split {
        items: s.items.into_iter().map(ImageRecord::Decoded).collect(),
        label_sets: s.label_sets,
    };
    Datasets {
        name: d.name,
        train: wrap(d.train),
        test: wrap(d.test),
        skipped: d.skipped,
    }
}
