//! ImageFolder: `root/<split>/<class>/*.{jpg,jpeg,png}`; classes are the sorted folder names of
//! the training split. Decoding (the `image` crate) runs on all cores.

use crate::image::StoredImage;
use ssl_framework::data::{ClassFolders, DataError, Datasets, LabelSet, Split};
use std::path::{Path, PathBuf};

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

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

/// Decodes the bytes of a JPEG or PNG file into 8-bit RGB (`path` only names it in errors).
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

fn list_files(class_dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(class_dir).map_err(|source| DataError::Io {
        path: class_dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads one split folder with the given class names; returns the split and the number of
/// skipped (undecodable) files.
///
/// # Errors
/// [`DataError`] when the folder cannot be listed.
pub fn load_split(
    dir: &Path,
    classes: &[String],
) -> Result<(Split<StoredImage>, usize), DataError> {
    let mut jobs: Vec<(PathBuf, usize)> = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let class_dir = dir.join(class);
        if class_dir.is_dir() {
            jobs.extend(list_files(&class_dir)?.into_iter().map(|p| (p, label)));
        }
    }
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(16);
    let chunk = jobs.len().div_ceil(threads).max(1);
    let decoded: Vec<Vec<(Result<StoredImage, DataError>, usize)>> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(p, l)| (decode_file(p), *l))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("decoder thread"))
            .collect()
    });
    let mut items = Vec::with_capacity(jobs.len());
    let mut labels = Vec::with_capacity(jobs.len());
    let mut skipped = 0;
    for (result, label) in decoded.into_iter().flatten() {
        match result {
            Ok(img) => {
                items.push(img);
                labels.push(label);
            }
            Err(e) => {
                if skipped < 10 {
                    eprintln!("warning: skipping unreadable image: {e}");
                }
                skipped += 1;
            }
        }
    }
    Ok((
        Split {
            items,
            label_sets: vec![LabelSet {
                name: "class".into(),
                classes: classes.to_vec(),
                labels,
            }],
        },
        skipped,
    ))
}

/// Reads `root/train` and `root/test` (or `root/val`).
///
/// # Errors
/// [`DataError::NoData`] when a split folder or class folders are missing, or no image decodes.
pub fn load(root: &Path) -> Result<Datasets<StoredImage>, DataError> {
    let ClassFolders {
        train: train_dir,
        test: test_dir,
        classes,
    } = ClassFolders::find(root, ".jpg/.jpeg/.png images")?;
    let (train, s1) = load_split(&train_dir, &classes)?;
    let (test, s2) = load_split(&test_dir, &classes)?;
    for (split, dir) in [(&train, &train_dir), (&test, &test_dir)] {
        if split.is_empty() {
            return Err(DataError::NoData {
                path: dir.clone(),
                reason: "no readable .jpg/.jpeg/.png images".into(),
            });
        }
    }
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "image-folder".into());
    Ok(Datasets {
        name,
        train,
        test,
        skipped: s1 + s2,
    })
}
