//! The index of an image folder: every image's path, label and size in pixels, read from the
//! file headers (a few kilobytes each, on all cores) without decoding any pixels. The index is
//! what a streaming run holds in memory, and what decides between streaming and decoding
//! everything at load (the estimated decoded size).
//!
//! The index is cached in `<cache>/image-index/` (see [`ssl_framework::data::locate::cache_dir`]),
//! keyed by the folder's canonical path and the labelling. It is used again only while every
//! folder it was read from has the modification time it had: adding, removing or renaming a
//! file or a class folder changes a folder's time and the folder is indexed anew.

use super::image_folder::EXTENSIONS;
use serde::{Deserialize, Serialize};
use ssl_framework::data::folder::{self, FolderLabels, SplitFiles};
use ssl_framework::data::locate::cache_dir;
use ssl_framework::data::{DataError, LabelSet};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// The version of the cache files' layout; a cache file of another version is not used.
const CACHE_VERSION: u32 = 1;

/// One split of an indexed folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedSplit {
    /// The split's folder.
    pub dir: PathBuf,
    /// The images whose header could be read, sorted by path.
    pub files: Vec<PathBuf>,
    /// `(width, height)` in pixels of each file.
    pub sizes: Vec<(u32, u32)>,
    /// Class names and each file's label, when the split is labelled by class folders.
    pub labels: Option<(Vec<String>, Vec<usize>)>,
}

impl IndexedSplit {
    /// The split's label sets: one named `class` when it is labelled, none otherwise.
    pub fn label_sets(&self) -> Vec<LabelSet> {
        match &self.labels {
            Some((classes, labels)) => vec![LabelSet {
                name: "class".into(),
                classes: classes.clone(),
                labels: labels.clone(),
            }],
            None => Vec::new(),
        }
    }
}

/// An indexed image folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FolderIndex {
    /// The training split.
    pub train: IndexedSplit,
    /// The held-out split, when the folder has one.
    pub test: Option<IndexedSplit>,
    /// Files of other kinds, hidden entries and dangling links (not read).
    pub ignored: Vec<PathBuf>,
    /// Images whose header cannot be read, with the reason (skipped).
    pub unreadable: Vec<(PathBuf, String)>,
}

/// A cache file: the index and the modification time of every folder it was read from.
#[derive(Serialize, Deserialize)]
struct CachedIndex {
    version: u32,
    root: PathBuf,
    labels: FolderLabels,
    folder_times: Vec<(PathBuf, u64)>,
    index: FolderIndex,
}

/// Where the index of `root` with `labels` is cached in `cache`.
fn cache_file(cache: &Path, root: &Path, labels: FolderLabels) -> PathBuf {
    use md5::{Digest, Md5};
    let key = format!("{}\u{0}{labels:?}", root.display());
    let digest = Md5::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    cache.join(format!("{hex}.json"))
}

/// A folder's modification time in nanoseconds since 1970 (0 when it cannot be read).
fn folder_time(dir: &Path) -> u64 {
    std::fs::metadata(dir)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Every folder between `root` and the files of `index` (the folders whose times tell that
/// the index is out of date).
fn folders_of(root: &Path, index: &FolderIndex) -> BTreeSet<PathBuf> {
    let mut dirs = BTreeSet::new();
    dirs.insert(root.to_path_buf());
    let splits = std::iter::once(&index.train).chain(index.test.as_ref());
    // Class folders, even empty ones: an image added to one changes only its time.
    for split in splits.clone() {
        dirs.insert(split.dir.clone());
        if let Some((classes, _)) = &split.labels {
            dirs.extend(classes.iter().map(|c| split.dir.join(c)));
        }
    }
    let files = splits
        .flat_map(|s| s.files.iter())
        .chain(index.ignored.iter())
        .chain(index.unreadable.iter().map(|(p, _)| p));
    for file in files {
        let mut dir = file.parent();
        while let Some(d) = dir {
            if !d.starts_with(root) || !dirs.insert(d.to_path_buf()) {
                break;
            }
            dir = d.parent();
        }
    }
    dirs
}

/// The `(width, height)` of an image file from its header.
///
/// # Errors
/// The reason, in one line, when the file cannot be opened or its header is not an image's.
pub fn header_size(path: &Path) -> Result<(u32, u32), String> {
    let (w, h) = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| e.to_string())?
        .into_dimensions()
        .map_err(|e| ssl_framework::data::one_line(&e.to_string()))?;
    if w == 0 || h == 0 {
        return Err("empty image".into());
    }
    Ok((w, h))
}

fn index_split(files: &SplitFiles, unreadable: &mut Vec<(PathBuf, String)>) -> IndexedSplit {
    let sizes = ssl_framework::data::parallel_map(&files.files, |p| header_size(p));
    let mut split = IndexedSplit {
        dir: files.dir.clone(),
        files: Vec::with_capacity(files.files.len()),
        sizes: Vec::with_capacity(files.files.len()),
        labels: files.labels.as_ref().map(|(c, _)| (c.clone(), Vec::new())),
    };
    for (i, size) in sizes.into_iter().enumerate() {
        match size {
            Ok(size) => {
                split.files.push(files.files[i].clone());
                split.sizes.push(size);
                if let (Some((_, out)), Some((_, labels))) = (&mut split.labels, &files.labels) {
                    out.push(labels[i]);
                }
            }
            Err(reason) => unreadable.push((files.files[i].clone(), reason)),
        }
    }
    split
}

/// Indexes `root` (see [`folder::scan`] for the layouts), reading no pixels.
///
/// # Errors
/// [`DataError`] from the scan: the folder is missing, unreadable, or holds no image.
pub fn index_folder(root: &Path, labels: FolderLabels) -> Result<FolderIndex, DataError> {
    let scan = folder::scan(root, &EXTENSIONS, labels)?;
    let mut unreadable = Vec::new();
    let train = index_split(&scan.train, &mut unreadable);
    let test = scan.test.as_ref().map(|t| index_split(t, &mut unreadable));
    Ok(FolderIndex {
        train,
        test,
        ignored: scan.ignored,
        unreadable,
    })
}

/// The index of `root`: from the cache when no folder of it has changed since it was cached,
/// else read anew ([`index_folder`]) and cached. Returns the index and whether it came from
/// the cache. A cache that cannot be read or written is ignored (the index is then read).
///
/// # Errors
/// [`DataError`] from [`index_folder`].
pub fn index(root: &Path, labels: FolderLabels) -> Result<(FolderIndex, bool), DataError> {
    index_cached_in(root, labels, &cache_dir().join("image-index"))
}

/// As [`index`], with the cache files in `cache`.
///
/// # Errors
/// [`DataError`] from [`index_folder`].
pub fn index_cached_in(
    root: &Path,
    labels: FolderLabels,
    cache: &Path,
) -> Result<(FolderIndex, bool), DataError> {
    let canonical = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let file = cache_file(cache, &canonical, labels);
    if let Some(index) = read_cache(&file, &canonical, labels) {
        return Ok((index, true));
    }
    let index = index_folder(&canonical, labels)?;
    let folder_times = folders_of(&canonical, &index)
        .into_iter()
        .map(|d| {
            let t = folder_time(&d);
            (d, t)
        })
        .collect();
    let cached = CachedIndex {
        version: CACHE_VERSION,
        root: canonical,
        labels,
        folder_times,
        index,
    };
    if let Ok(bytes) = serde_json::to_vec(&cached) {
        let _ = file
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .and_then(|_| ssl_framework::fsutil::write_atomic(&file, &bytes));
    }
    Ok((cached.index, false))
}

fn read_cache(file: &Path, root: &Path, labels: FolderLabels) -> Option<FolderIndex> {
    let bytes = std::fs::read(file).ok()?;
    let cached: CachedIndex = serde_json::from_slice(&bytes).ok()?;
    let current = cached.version == CACHE_VERSION
        && cached.root == root
        && cached.labels == labels
        && cached
            .folder_times
            .iter()
            .all(|(dir, t)| folder_time(dir) == *t && *t != 0);
    current.then_some(cached.index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(w, h, image::Rgb([10, 20, 30]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn index_reads_sizes_and_labels_without_decoding_and_skips_bad_headers() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("train/a/1.png"), 7, 5);
        write_png(&dir.path().join("train/b/2.png"), 3, 9);
        std::fs::write(dir.path().join("train/b/3.png"), b"not a png").unwrap();
        write_png(&dir.path().join("test/a/4.png"), 4, 4);
        let idx = index_folder(dir.path(), FolderLabels::Folders).unwrap();
        assert_eq!(idx.train.sizes, vec![(7, 5), (3, 9)]);
        assert_eq!(
            idx.train.labels,
            Some((vec!["a".to_string(), "b".to_string()], vec![0, 1]))
        );
        assert_eq!(idx.test.as_ref().unwrap().sizes, vec![(4, 4)]);
        assert_eq!(idx.unreadable.len(), 1);
        assert!(idx.unreadable[0].0.ends_with("train/b/3.png"));
    }

    #[test]
    fn cached_index_is_reused_until_a_folder_changes() {
        let cache = tempfile::tempdir().unwrap();
        let index = |root: &Path, labels| index_cached_in(root, labels, cache.path());
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("train/a/1.png"), 7, 5);
        write_png(&dir.path().join("test/a/2.png"), 7, 5);
        let (first, cached) = index(dir.path(), FolderLabels::Folders).unwrap();
        assert!(!cached);
        let (again, cached) = index(dir.path(), FolderLabels::Folders).unwrap();
        assert!(cached);
        assert_eq!(first, again);
        // Another labelling is another index.
        assert!(!index(dir.path(), FolderLabels::None).unwrap().1);
        // A new file in a class folder changes that folder's time.
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_png(&dir.path().join("train/a/3.png"), 2, 2);
        let (changed, cached) = index(dir.path(), FolderLabels::Folders).unwrap();
        assert!(!cached);
        assert_eq!(changed.train.files.len(), 2);
        // A new class folder changes the split folder's time.
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_png(&dir.path().join("train/c/4.png"), 2, 2);
        let (changed, cached) = index(dir.path(), FolderLabels::Folders).unwrap();
        assert!(!cached);
        assert_eq!(changed.train.labels.unwrap().0.len(), 2);
    }
}
