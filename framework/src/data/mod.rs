//! Datasets, splits, and the parallel two-view loader.

pub mod loader;

use std::path::PathBuf;

/// Errors reading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// An I/O failure on a named path.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file whose content is not what its format requires.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A folder without any usable data.
    #[error("{path}: {reason}")]
    NoData {
        /// The folder searched.
        path: PathBuf,
        /// What was looked for.
        reason: String,
    },
    /// A dataset that cannot be trained or evaluated on as configured.
    #[error("{0}")]
    Unusable(String),
}

/// The class-folder layout shared by modalities: `root/train/<class>/...` and `root/test/<class>/`
/// (or `root/val/<class>/`), classes being the sorted folder names of the training split.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassFolders {
    /// The training split's folder.
    pub train: PathBuf,
    /// The held-out split's folder (`test/`, else `val/`).
    pub test: PathBuf,
    /// Sorted class names.
    pub classes: Vec<String>,
}

impl ClassFolders {
    /// Finds the layout under `root`; `expected` describes the files, for the error message.
    ///
    /// # Errors
    /// [`DataError::NoData`] naming `root` when a split folder or the class folders are missing.
    pub fn find(root: &std::path::Path, expected: &str) -> Result<Self, DataError> {
        let train = root.join("train");
        let test = if root.join("test").is_dir() {
            root.join("test")
        } else {
            root.join("val")
        };
        if !train.is_dir() || !test.is_dir() {
            return Err(DataError::NoData {
                path: root.to_path_buf(),
                reason: format!("expected train/ and test/ (or val/) class folders of {expected}"),
            });
        }
        let rd = std::fs::read_dir(&train).map_err(|source| DataError::Io {
            path: train.clone(),
            source,
        })?;
        let mut classes: Vec<String> = rd
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        classes.sort();
        if classes.is_empty() {
            return Err(DataError::NoData {
                path: train,
                reason: "no class folders".into(),
            });
        }
        Ok(Self {
            train,
            test,
            classes,
        })
    }
}

/// One way of labelling the samples of a split (e.g. digit, or speaker).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelSet {
    /// Name of the labelling, used in reports (e.g. `"class"`, `"digit"`, `"speaker"`).
    pub name: String,
    /// Class names; `labels[i]` indexes into this.
    pub classes: Vec<String>,
    /// The label of each sample of the split, `< classes.len()`.
    pub labels: Vec<usize>,
}

/// The samples of one split with zero or more label sets (for evaluation).
#[derive(Debug, Clone)]
pub struct Split<I> {
    /// The records.
    pub items: Vec<I>,
    /// Label sets aligned with `items`.
    pub label_sets: Vec<LabelSet>,
}

impl<I> Split<I> {
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// Whether the split has no samples.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// Keeps the first `n` samples of a seeded, class-stratification-free shuffle (the same
    /// subset for the same seed), or everything when `n >= len`.
    pub fn subset(self, n: usize, seed: u64) -> Self {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        if n >= self.items.len() {
            return self;
        }
        let mut order: Vec<usize> = (0..self.items.len()).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        order.truncate(n);
        order.sort_unstable();
        let keep: std::collections::HashSet<usize> = order.iter().copied().collect();
        let label_sets = self
            .label_sets
            .into_iter()
            .map(|ls| LabelSet {
                labels: order.iter().map(|&i| ls.labels[i]).collect(),
                ..ls
            })
            .collect();
        let items = self
            .items
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, x)| x)
            .collect();
        Split { items, label_sets }
    }
}

/// A dataset's training and held-out splits.
#[derive(Debug, Clone)]
pub struct Datasets<I> {
    /// Dataset name for reports (e.g. `"cifar10"`).
    pub name: String,
    /// Pre-training data (labels used only by the probes' training side).
    pub train: Split<I>,
    /// Held-out evaluation data.
    pub test: Split<I>,
    /// Files skipped because they were unreadable (each warned about once).
    pub skipped: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_is_seeded_and_keeps_labels_aligned() {
        let split = Split {
            items: (0..100).collect::<Vec<usize>>(),
            label_sets: vec![LabelSet {
                name: "id".into(),
                classes: (0..100).map(|i| i.to_string()).collect(),
                labels: (0..100).collect(),
            }],
        };
        let a = split.clone().subset(10, 3);
        let b = split.clone().subset(10, 3);
        assert_eq!(a.items, b.items);
        assert_eq!(a.items.len(), 10);
        assert_eq!(a.items, a.label_sets[0].labels);
        assert_ne!(a.items, split.clone().subset(10, 4).items);
        assert_eq!(split.clone().subset(1000, 0).len(), 100);
    }
}
