//! Image folders: `root/{train,test|val}/<class>/...`, classes being the sorted folder names of
//! the training split, or folders of unlabelled images at any depth (see
//! [`ssl_framework::data::folder`]). JPEG, PNG, WebP, BMP, TIFF and GIF (first frame), in any
//! colour type the `image` crate decodes (grey, CMYK JPEG, 16-bit, alpha), become 8-bit RGB.
//! Decoding runs on all cores.

use crate::image::StoredImage;
use ssl_framework::data::folder::{self, FolderLabels, SplitFiles};
use ssl_framework::data::{DataError, Datasets, LabelSet, Split};
use std::path::{Path, PathBuf};

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

/// Decodes the bytes of an image file (any format of [`EXTENSIONS`]) into 8-bit RGB (`path` only names it in errors).
/// The `image` crate's default limits apply (at most 512 MiB decoded).
///
/// # Errors
/// [`DataError::Corrupt`] naming `path` when the bytes are not a decodable image.
pub fn decode_bytes(path: &Path, bytes: &[u8]) -> Result<StoredImage, DataError> {
    let img = image::load_from_memory(bytes).map_err(|e| DataError::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let rgb = img.to_rgb8();
    if rgb.width() == 0 || rgb.height() == 0 {
        return Err(DataError::Corrupt {
            path: path.to_path_buf(),
            reason: "empty image".into(),
        });
    }
    Ok(StoredImage {
        width: rgb.width(),
        height: rgb.height(),
        pixels: rgb.into_raw(),
    })
}

/// Decodes `files` on all cores (at most 16 threads), in order.
fn decode_all(files: &[PathBuf]) -> Vec<Result<StoredImage, DataError>> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(16);
    let chunk = files.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|p| decode_file(p)).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("decoder thread"))
            .collect()
    })
}

/// Decodes the files of one split; returns the split (one label set `class` when the split
/// is labelled, none otherwise) and the number of skipped (undecodable) files, the first ten
/// named in a warning.
pub fn load_split(files: &SplitFiles) -> (Split<StoredImage>, usize) {
    let decoded = decode_all(&files.files);
    let mut items = Vec::with_capacity(decoded.len());
    let mut labels = Vec::with_capacity(decoded.len());
    let mut skipped = 0;
    for (i, result) in decoded.into_iter().enumerate() {
        match result {
            Ok(img) => {
                items.push(img);
                if let Some((_, l)) = &files.labels {
                    labels.push(l[i]);
                }
            }
            Err(e) => {
                if skipped < 10 {
                    eprintln!("warning: skipping unreadable image: {e}");
                }
                skipped += 1;
            }
        }
    }
    let label_sets = match &files.labels {
        Some((classes, _)) => vec![LabelSet {
            name: "class".into(),
            classes: classes.clone(),
            labels,
        }],
        None => Vec::new(),
    };
    (Split { items, label_sets }, skipped)
}

/// Reads an image folder (see [`ssl_framework::data::folder`]): `root/train/` with
/// `root/test/` (or `root/val/`) when present, else `root` alone; class folders label a split
/// whose entries are only folders (unless `labels` is `None`), otherwise its images, at any
/// depth, are unlabelled. Files of other kinds are counted as skipped and named in a warning.
///
/// # Errors
/// [`DataError::NoData`] when the folder holds no image, or none of the training images decodes.
pub fn load(root: &Path, labels: FolderLabels) -> Result<Datasets<StoredImage>, DataError> {
    let scan = folder::scan(root, &EXTENSIONS, labels)?;
    if !scan.ignored.is_empty() {
        eprintln!(
            "warning: skipping {} in {}",
            folder::ignored_summary(&scan.ignored),
            root.display()
        );
    }
    let (train, s1) = load_split(&scan.train);
    let (test, s2) = match &scan.test {
        Some(files) => load_split(files),
        None => (Split::empty_like(&train), 0),
    };
    if train.is_empty() {
        return Err(DataError::NoData {
            path: scan.train.dir.clone(),
            reason: format!("none of its {} images decodes", scan.train.files.len()),
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
        skipped: s1 + s2 + scan.ignored.len(),
    })
}
