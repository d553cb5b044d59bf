//! Image folders: `root/{train,test|val}/<class>/...`, classes being the sorted folder names of
//! the training split, or folders of unlabelled images at any depth (see
//! [`ssl_framework::data::folder`]). JPEG, PNG, WebP, BMP, TIFF and GIF (first frame), in any
//! colour type the `image` crate decodes (grey, CMYK JPEG, 16-bit, alpha), become 8-bit RGB.
//! Reading indexes the folder without decoding; decoding into memory runs on all cores, and a
//! streaming run decodes in the loader's workers instead.

use super::image_index::{self, IndexedSplit};
use crate::image::{EncodedImage, ImageRecord, ImageSource, StoredImage};
use ssl_framework::data::folder::{self, FolderLabels};
use ssl_framework::data::{DataError, Datasets, LabelSet, Split};
use std::path::Path;

/// The file extensions read as images (any case).
pub const EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"];

/// Decodes one image file into 8-bit RGB.
///
/// # Errors
/// [`DataError::Io`] or [`DataError::Corrupt`] naming the file.
pub fn decode_file(path: &Path) -> Result<StoredImage, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_bytes(path, &bytes)
}

pub use crate::image::decode_bytes;

/// Decodes the encoded records of `items` on all cores, in order; decoded ones pass through.
fn decode_all(items: Vec<ImageRecord>) -> Vec<Result<ImageRecord, DataError>> {
    ssl_framework::data::parallel_map(&items, |r| match r {
        ImageRecord::Encoded(enc) => enc.decode().map(ImageRecord::Decoded),
        decoded => Ok(decoded.clone()),
    })
}

/// Decodes every record of `split` into memory, on all cores; returns the split (label sets
/// kept aligned) and the number of records dropped because they do not decode, the first ten
/// named in a warning.
pub fn decode_split(split: Split<ImageRecord>) -> (Split<ImageRecord>, usize) {
    let decoded = decode_all(split.items);
    let mut keep = Vec::with_capacity(decoded.len());
    let mut items = Vec::with_capacity(decoded.len());
    let mut skipped = 0;
    for result in decoded {
        match result {
            Ok(img) => {
                keep.push(true);
                items.push(img);
            }
            Err(e) => {
                keep.push(false);
                if skipped < 10 {
                    eprintln!("warning: skipping unreadable image: {e}");
                }
                skipped += 1;
            }
        }
    }
    let label_sets = split
        .label_sets
        .into_iter()
        .map(|ls| LabelSet {
            labels: ls
                .labels
                .iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(l, _)| *l)
                .collect(),
            ..ls
        })
        .collect();
    (Split { items, label_sets }, skipped)
}

/// The split of an index: one [`ImageRecord::Encoded`] per file, with its size.
fn encoded_split(split: &IndexedSplit) -> Split<ImageRecord> {
    Split {
        items: split
            .files
            .iter()
            .zip(&split.sizes)
            .map(|(path, &(width, height))| {
                ImageRecord::Encoded(EncodedImage {
                    source: ImageSource::File(path.clone()),
                    width,
                    height,
                    decode_at_crop_scale: true,
                })
            })
            .collect(),
        label_sets: split.label_sets(),
    }
}

/// Reads an image folder (see [`ssl_framework::data::folder`]): `root/train/` with
/// `root/test/` (or `root/val/`) when present, else `root` alone; class folders label a split
/// whose entries are only folders (unless `labels` is `None`), otherwise its images, at any
/// depth, are unlabelled. Files of other kinds are counted as skipped and named in a warning.
///
/// The records are [`ImageRecord::Encoded`]: the folder is indexed (paths, labels, sizes
/// from the headers; [`image_index`]) and no pixel is decoded. [`decode_split`] decodes a
/// split into memory. Images whose header cannot be read are skipped, counted and named.
///
/// # Errors
/// [`DataError::NoData`] when the folder holds no image, or no training image has a readable
/// header.
pub fn load(root: &Path, labels: FolderLabels) -> Result<Datasets<ImageRecord>, DataError> {
    let (index, _cached) = image_index::index(root, labels)?;
    if !index.ignored.is_empty() {
        eprintln!(
            "warning: skipping {} in {}",
            folder::ignored_summary(&index.ignored),
            root.display()
        );
    }
    for (path, reason) in index.unreadable.iter().take(10) {
        eprintln!(
            "warning: skipping unreadable image: {}: {reason}",
            path.display()
        );
    }
    let train = encoded_split(&index.train);
    let test = match &index.test {
        Some(t) => encoded_split(t),
        None => Split::empty_like(&train),
    };
    if train.is_empty() {
        return Err(DataError::NoData {
            path: index.train.dir.clone(),
            reason: format!(
                "none of its {} images can be read",
                index
                    .unreadable
                    .iter()
                    .filter(|(p, _)| p.starts_with(&index.train.dir))
                    .count()
            ),
        });
    }
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "image-folder".into());
    Ok(Datasets {
        name,
        train,
        test,
        skipped: index.ignored.len() + index.unreadable.len(),
    })
}
