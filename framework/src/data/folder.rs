//! Folders of sample files, labelled or not, shared by the modalities that read one file per
//! sample (images, WAVs):
//! - `root/train/` (with `root/test/` or `root/val/` when there is one), else `root` itself as
//!   the only split;
//! - a split folder whose entries are only sub-folders is labelled by them (class folders,
//!   files found at any depth below each); a split with files at its top level, or any split
//!   when `labels = FolderLabels::None`, is unlabelled, its files found at any depth.
//!
//! Files of other kinds are never silently ignored: they are listed in
//! [`FolderScan::ignored`], with hidden files and folders (names starting with `.`, e.g.
//! `.thumbnails/`), which are not read, and links that lead nowhere. Symbolic links to files
//! and folders are followed; a link back to a folder above it is not entered.

use super::DataError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the labels of a folder's files come from (`data.labels` of a config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FolderLabels {
    /// The class folders of a split whose entries are only folders; none otherwise.
    #[default]
    Folders,
    /// No labels: every file at any depth is an unlabelled sample.
    None,
}

/// The files of one split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitFiles {
    /// The folder.
    pub dir: PathBuf,
    /// The sample files, sorted by path.
    pub files: Vec<PathBuf>,
    /// Class names (sorted folder names) and each file's index into them; `None` when the
    /// split is unlabelled. A test file in a folder the training split has no class for is
    /// labelled [`LabelSet::UNLABELED`](super::LabelSet::UNLABELED).
    pub labels: Option<(Vec<String>, Vec<usize>)>,
}

/// A dataset folder's splits.
#[derive(Debug, Clone, PartialEq)]
pub struct FolderScan {
    /// The training split (`root/train`, or `root`).
    pub train: SplitFiles,
    /// The held-out split (`root/test`, else `root/val`), when there is one.
    pub test: Option<SplitFiles>,
    /// Files that are not samples (another extension), in both splits.
    pub ignored: Vec<PathBuf>,
}

/// Scans `root` for files whose extension (any case) is one of `extensions`.
///
/// # Errors
/// [`DataError::NoData`] naming `root` when it is not a readable folder or holds no sample
/// file; [`DataError::Io`] naming a folder that cannot be listed.
pub fn scan(
    root: &Path,
    extensions: &[&str],
    labels: FolderLabels,
) -> Result<FolderScan, DataError> {
    if !root.is_dir() {
        return Err(DataError::NoData {
            path: root.to_path_buf(),
            reason: "folder does not exist or cannot be read".into(),
        });
    }
    let (train_dir, test_dir) = if root.join("train").is_dir() {
        let test = ["test", "val"]
            .iter()
            .map(|s| root.join(s))
            .find(|d| d.is_dir());
        (root.join("train"), test)
    } else {
        (root.to_path_buf(), None)
    };
    let mut ignored = Vec::new();
    let train = scan_split(&train_dir, extensions, labels, None, &mut ignored)?;
    let test = match test_dir {
        Some(dir) => {
            let classes = train.labels.as_ref().map(|(c, _)| c.as_slice());
            Some(scan_split(&dir, extensions, labels, classes, &mut ignored)?)
        }
        None => None,
    };
    if train.files.is_empty() {
        return Err(DataError::NoData {
            path: train_dir,
            reason: format!(
                "no {} files{}",
                describe(extensions),
                if ignored.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", ignored_summary(&ignored))
                }
            ),
        });
    }
    Ok(FolderScan {
        train,
        test,
        ignored,
    })
}

/// `.jpg/.png` for `["jpg", "png"]`.
pub fn describe(extensions: &[&str]) -> String {
    extensions
        .iter()
        .map(|e| format!(".{e}"))
        .collect::<Vec<_>>()
        .join("/")
}

/// One line about files that were not read: how many, by extension, and the first few by
/// name, e.g. `3 files of other kinds (2 .txt, 1 .heic): a.txt, b.txt, c.heic`.
pub fn ignored_summary(ignored: &[PathBuf]) -> String {
    let mut by_ext = std::collections::BTreeMap::<String, usize>::new();
    for p in ignored {
        let ext = p
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy().to_ascii_lowercase()))
            .unwrap_or_else(|| "no extension".into());
        *by_ext.entry(ext).or_default() += 1;
    }
    let kinds: Vec<String> = by_ext.iter().map(|(e, n)| format!("{n} {e}")).collect();
    let names: Vec<String> = ignored
        .iter()
        .take(5)
        .map(|p| p.display().to_string())
        .collect();
    format!(
        "{} file(s) of other kinds ({}): {}{}",
        ignored.len(),
        kinds.join(", "),
        names.join(", "),
        if ignored.len() > 5 { ", ..." } else { "" }
    )
}

fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Whether a file or folder name is hidden (starts with `.`).
fn hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Every file below `dir` down to `max_depth`, sorted; `(samples, others)`. Symbolic links are
/// followed (a link to an image is an image; a loop of folder links is reported and not
/// entered); hidden files and folders, dangling links and entries that cannot be read go to
/// `others`, each named in a warning when it is a folder or cannot be read.
fn walk_depth(dir: &Path, extensions: &[&str], max_depth: usize) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut samples = Vec::new();
    let mut others = Vec::new();
    let mut walker = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .max_depth(max_depth)
        .sort_by_file_name()
        .into_iter();
    while let Some(entry) = walker.next() {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e.path().unwrap_or(dir).to_path_buf();
                if e.loop_ancestor().is_some() {
                    eprintln!(
                        "warning: not entering {}: a link back to a folder above it",
                        path.display()
                    );
                } else {
                    // A dangling link or an unreadable entry: counted with the skipped files.
                    others.push(path);
                }
                continue;
            }
        };
        let path = entry.path();
        if entry.depth() > 0 && hidden(path) {
            if entry.file_type().is_dir() {
                walker.skip_current_dir();
            }
            others.push(path.to_path_buf());
            continue;
        }
        if !entry.file_type().is_file() {
            continue;
        }
        if has_extension(path, extensions) {
            samples.push(path.to_path_buf());
        } else {
            others.push(path.to_path_buf());
        }
    }
    (samples, others)
}

/// Every file below `dir` at any depth: `(samples, others)` (see [`walk_depth`]).
fn walk(dir: &Path, extensions: &[&str]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    walk_depth(dir, extensions, usize::MAX)
}

fn scan_split(
    dir: &Path,
    extensions: &[&str],
    labels: FolderLabels,
    train_classes: Option<&[String]>,
    ignored: &mut Vec<PathBuf>,
) -> Result<SplitFiles, DataError> {
    let entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| DataError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .collect();
    // Hidden entries are neither samples nor classes (they are counted by the walks below).
    let top_files = entries
        .iter()
        .any(|p| p.is_file() && !hidden(p) && has_extension(p, extensions));
    let mut sub_dirs: Vec<PathBuf> = entries
        .into_iter()
        .filter(|p| p.is_dir() && !hidden(p))
        .collect();
    sub_dirs.sort();
    let class_folders = labels == FolderLabels::Folders && !top_files && !sub_dirs.is_empty();
    if !class_folders {
        let (files, others) = walk(dir, extensions);
        ignored.extend(others);
        return Ok(SplitFiles {
            dir: dir.to_path_buf(),
            files,
            labels: None,
        });
    }
    let name = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    };
    let classes: Vec<String> = match train_classes {
        Some(c) => c.to_vec(),
        None => sub_dirs.iter().map(|d| name(d)).collect(),
    };
    let mut files = Vec::new();
    let mut label = Vec::new();
    // Files directly in the split folder that are not samples are reported too.
    let (_, top_others) = walk_depth(dir, extensions, 1);
    ignored.extend(top_others);
    // The class folders are walked in parallel (ImageNet has 1,000 of them), in order.
    let walks = super::parallel_map(&sub_dirs, |sub| walk(sub, extensions));
    for (sub, (samples, others)) in sub_dirs.iter().zip(walks) {
        ignored.extend(others);
        let class = classes
            .iter()
            .position(|c| *c == name(sub))
            .unwrap_or(super::LabelSet::UNLABELED);
        label.extend(std::iter::repeat_n(class, samples.len()));
        files.extend(samples);
    }
    Ok(SplitFiles {
        dir: dir.to_path_buf(),
        files,
        labels: Some((classes, label)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b"x").unwrap();
    }

    #[test]
    fn layouts_and_labels() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        // Class folders with train/ and test/.
        for f in [
            "train/cat/a.jpg",
            "train/dog/b.PNG",
            "train/dog/deep/c.jpg",
            "test/cat/d.jpg",
            "test/bird/e.jpg",
            "train/notes.txt",
        ] {
            touch(r, f);
        }
        let s = scan(r, &["jpg", "png"], FolderLabels::Folders).unwrap();
        let (classes, labels) = s.train.labels.clone().unwrap();
        assert_eq!(classes, ["cat", "dog"]);
        assert_eq!(labels, [0, 1, 1]);
        assert_eq!(s.train.files.len(), 3);
        let test = s.test.unwrap();
        // `bird` is no training class: its file is kept, unlabelled.
        assert_eq!(
            test.labels.unwrap().1,
            [super::super::LabelSet::UNLABELED, 0]
        );
        assert_eq!(s.ignored, [r.join("train/notes.txt")]);
        assert!(ignored_summary(&s.ignored).starts_with("1 file(s) of other kinds (1 .txt)"));
        // The same tree without labels: every file, no classes.
        let s = scan(r, &["jpg", "png"], FolderLabels::None).unwrap();
        assert!(s.train.labels.is_none());
        assert_eq!(s.train.files.len(), 3);
        // A flat folder (no train/): unlabelled, nested files found, no test split.
        let d = tempfile::tempdir().unwrap();
        for f in ["x.jpg", "2023/y.webp", "2023/z.heic"] {
            touch(d.path(), f);
        }
        let s = scan(d.path(), &["jpg", "webp"], FolderLabels::Folders).unwrap();
        assert!(s.train.labels.is_none() && s.test.is_none());
        assert_eq!(s.train.files.len(), 2);
        assert_eq!(s.ignored.len(), 1);
        // Links to files are read, hidden entries and dangling links are counted, not read.
        #[cfg(unix)]
        {
            let d = tempfile::tempdir().unwrap();
            let real = tempfile::tempdir().unwrap();
            touch(real.path(), "a.jpg");
            touch(d.path(), "b.jpg");
            touch(d.path(), ".hidden.jpg");
            touch(d.path(), ".thumbs/c.jpg");
            std::os::unix::fs::symlink(real.path().join("a.jpg"), d.path().join("link.jpg"))
                .unwrap();
            std::os::unix::fs::symlink(d.path().join("gone.jpg"), d.path().join("dangling.jpg"))
                .unwrap();
            std::os::unix::fs::symlink(d.path(), d.path().join("loop")).unwrap();
            let s = scan(d.path(), &["jpg"], FolderLabels::Folders).unwrap();
            let names: Vec<String> = s
                .train
                .files
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
                .collect();
            assert_eq!(names, ["b.jpg", "link.jpg"]);
            let mut ignored: Vec<String> = s
                .ignored
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
                .collect();
            ignored.sort();
            assert_eq!(ignored, [".hidden.jpg", ".thumbs", "dangling.jpg"]);
        }
        // A hidden folder beside class folders is no class (`.ipynb_checkpoints/`).
        let d = tempfile::tempdir().unwrap();
        for f in ["a/1.jpg", "b/2.jpg", ".ipynb_checkpoints/3.jpg", ".x.jpg"] {
            touch(d.path(), f);
        }
        let s = scan(d.path(), &["jpg"], FolderLabels::Folders).unwrap();
        assert_eq!(s.train.labels.unwrap().0, ["a", "b"]);
        assert_eq!(s.train.files.len(), 2);
        assert_eq!(s.ignored.len(), 2);
        // Nothing usable: an error naming the folder and what it holds.
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "a.txt");
        let e = scan(d.path(), &["jpg"], FolderLabels::Folders).unwrap_err();
        assert!(
            e.to_string()
                .contains("no .jpg files (1 file(s) of other kinds"),
            "{e}"
        );
    }
}
