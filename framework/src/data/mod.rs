//! Datasets, splits, and the parallel two-view loader.

pub mod eval_split;
pub mod folder;
pub mod loader;
pub mod locate;

pub use eval_split::{EvalData, apply_eval_split, usable_label_sets};

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
    /// A file whose content is not what its format requires. Displayed on one line, whatever
    /// line breaks a decoding library put in its message.
    #[error("{path}: {}", one_line(.reason))]
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

/// `f` applied to every element of `items` on all cores (at most 16 threads, each a contiguous
/// chunk), the results in the order of `items`: the parallel part of reading a dataset
/// (decoding files, reading headers, indexing shards).
///
/// # Panics
/// When `f` panics (the panic is passed on).
pub fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(16);
    let chunk = items.len().div_ceil(threads).max(1);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// `text` on one line: every run of whitespace (line breaks included) becomes one space, and
/// the ends are trimmed. Library error messages are passed through this before a user sees them.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
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
    /// The label of each sample of the split, `< classes.len()`, or [`LabelSet::UNLABELED`]
    /// for a sample this labelling does not cover (the probes of this label set leave it out).
    pub labels: Vec<usize>,
}

impl LabelSet {
    /// The label of a sample outside this labelling (e.g. a neutral sentence for a sentiment
    /// sign label set).
    pub const UNLABELED: usize = usize::MAX;

    /// Indices of the labelled samples.
    pub fn labelled(&self) -> Vec<usize> {
        (0..self.labels.len())
            .filter(|&i| self.labels[i] != Self::UNLABELED)
            .collect()
    }
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
    /// A split without samples that has the label sets (names and classes) of `other`: the
    /// held-out split of data that has none.
    pub fn empty_like<J>(other: &Split<J>) -> Self {
        Split {
            items: Vec::new(),
            label_sets: other
                .label_sets
                .iter()
                .map(|ls| LabelSet {
                    labels: Vec::new(),
                    ..ls.clone()
                })
                .collect(),
        }
    }

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

impl<I> Split<I> {
    /// Splits off a seeded `fraction` of the samples (at least one, and at least one left):
    /// returns `(rest, held_out)`, both in their original order, label sets aligned. The same
    /// seed and length give the same partition.
    pub fn hold_out(self, fraction: f64, seed: u64) -> (Self, Self) {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let n = self.items.len();
        let held = ((n as f64 * fraction).round() as usize).clamp(1.min(n), n.saturating_sub(1));
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
        let mut is_held = vec![false; n];
        for &i in &order[..held] {
            is_held[i] = true;
        }
        let pick = |want: bool| -> Vec<usize> { (0..n).filter(|&i| is_held[i] == want).collect() };
        let (rest_idx, held_idx) = (pick(false), pick(true));
        let labels = |idx: &[usize]| -> Vec<LabelSet> {
            self.label_sets
                .iter()
                .map(|ls| LabelSet {
                    labels: idx.iter().map(|&i| ls.labels[i]).collect(),
                    ..ls.clone()
                })
                .collect()
        };
        let (rest_labels, held_labels) = (labels(&rest_idx), labels(&held_idx));
        let mut rest = Vec::with_capacity(rest_idx.len());
        let mut held_items = Vec::with_capacity(held_idx.len());
        for (i, item) in self.items.into_iter().enumerate() {
            if is_held[i] {
                held_items.push(item);
            } else {
                rest.push(item);
            }
        }
        (
            Split {
                items: rest,
                label_sets: rest_labels,
            },
            Split {
                items: held_items,
                label_sets: held_labels,
            },
        )
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

    #[test]
    fn hold_out_is_a_seeded_partition_with_aligned_labels() {
        let split = Split {
            items: (0..50).collect::<Vec<usize>>(),
            label_sets: vec![LabelSet {
                name: "id".into(),
                classes: (0..50).map(|i| i.to_string()).collect(),
                labels: (0..50).collect(),
            }],
        };
        let (rest, held) = split.clone().hold_out(0.2, 7);
        assert_eq!((rest.len(), held.len()), (40, 10));
        assert_eq!(rest.items, rest.label_sets[0].labels);
        assert_eq!(held.items, held.label_sets[0].labels);
        let mut all: Vec<usize> = rest.items.iter().chain(&held.items).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..50).collect::<Vec<_>>());
        assert_eq!(split.clone().hold_out(0.2, 7).1.items, held.items);
        assert_ne!(split.clone().hold_out(0.2, 8).1.items, held.items);
        // Never empties either side.
        let (r, h) = split.clone().hold_out(1e-6, 0);
        assert_eq!((r.len(), h.len()), (49, 1));
    }
}
