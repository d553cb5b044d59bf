//! The splits an evaluation reads: the test split, or a seeded validation part of the training
//! split (`eval.split`), and the label sets the probes can use.

use super::{Datasets, LabelSet, Split};
use crate::config::{EvalConfig, EvalSplit};
use std::sync::Arc;

/// The splits an evaluation reads: shared items (for the worker threads) and label sets.
pub struct EvalData<I> {
    /// Items the probes are fitted on.
    pub train: Arc<Vec<I>>,
    /// Label sets of `train`.
    pub train_labels: Vec<LabelSet>,
    /// Held-out items the probes are scored on.
    pub test: Arc<Vec<I>>,
    /// Label sets of `test`, in the same order as `train_labels`.
    pub test_labels: Vec<LabelSet>,
}

impl<I> EvalData<I> {
    /// The training and held-out splits of `datasets` (after [`apply_eval_split`]).
    pub fn from_datasets(datasets: Datasets<I>) -> Self {
        Self {
            train: Arc::new(datasets.train.items),
            train_labels: datasets.train.label_sets,
            test: Arc::new(datasets.test.items),
            test_labels: datasets.test.label_sets,
        }
    }
}

/// With `eval.split = "validation"`, replaces the test split by a seeded part of the training
/// split (which pre-training then does not see either); the test split is never read.
pub fn apply_eval_split<I>(datasets: &mut Datasets<I>, eval: &EvalConfig, seed: u64) {
    if eval.split == EvalSplit::Validation {
        let train = std::mem::replace(
            &mut datasets.train,
            Split {
                items: Vec::new(),
                label_sets: Vec::new(),
            },
        );
        let (rest, validation) = train.hold_out(eval.validation_fraction, seed);
        datasets.train = rest;
        datasets.test = validation;
    }
}

/// Drops the label sets the probes cannot use, from both splits, and says why in one
/// sentence each: fewer than 2 classes among the labelled training samples, or no labelled
/// held-out sample. When no label set is left, the last sentence says that the probes are
/// skipped, then `remedy` (what the caller's user can do). Evaluation then reports the
/// label-free metrics only.
pub fn usable_label_sets<I>(datasets: &mut Datasets<I>, remedy: &str) -> Vec<String> {
    let had_labels = !datasets.train.label_sets.is_empty();
    let mut notes = Vec::new();
    let train_sets = std::mem::take(&mut datasets.train.label_sets);
    let mut test_sets = std::mem::take(&mut datasets.test.label_sets);
    let mut kept_train = Vec::new();
    let mut kept_test = Vec::new();
    for ls in train_sets {
        let mut present: Vec<usize> = ls
            .labels
            .iter()
            .copied()
            .filter(|&l| l != LabelSet::UNLABELED)
            .collect();
        present.sort_unstable();
        present.dedup();
        let test = test_sets
            .iter()
            .position(|t| t.name == ls.name)
            .map(|i| test_sets.remove(i));
        let test_labelled = test.as_ref().map_or(0, |t| t.labelled().len());
        if present.len() < 2 {
            let names: Vec<&str> = present
                .iter()
                .filter_map(|&c| ls.classes.get(c).map(String::as_str))
                .collect();
            notes.push(format!(
                "no probes on label set `{}`: the training split has {} class(es) ({}), the kNN and linear probes need at least 2",
                ls.name,
                present.len(),
                names.join(", ")
            ));
        } else if datasets.test.is_empty() {
            notes.push(format!(
                "no probes on label set `{}`: the data has no held-out split (test/ or val/); set eval.split = \"validation\" to hold out part of the training split",
                ls.name
            ));
        } else if test_labelled == 0 {
            notes.push(format!(
                "no probes on label set `{}`: no held-out sample has one of its classes",
                ls.name
            ));
        } else if let Some(test) = test {
            kept_train.push(ls);
            kept_test.push(test);
        }
    }
    if kept_train.is_empty() {
        notes.push(format!(
            "probes skipped: the data has {}; evaluation reports the label-free metrics (effective rank, spread) only; {remedy}",
            if had_labels { "no label set the probes can use" } else { "no labels" }
        ));
    }
    datasets.train.label_sets = kept_train;
    datasets.test.label_sets = kept_test;
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(n: usize, classes: &[&str], labels: Vec<usize>) -> Split<usize> {
        Split {
            items: (0..n).collect(),
            label_sets: vec![LabelSet {
                name: "class".into(),
                classes: classes.iter().map(|c| c.to_string()).collect(),
                labels,
            }],
        }
    }

    #[test]
    fn unusable_label_sets_are_dropped_with_a_reason() {
        let mut d = Datasets {
            name: "d".into(),
            train: split(4, &["a", "b"], vec![0, 1, 0, 1]),
            test: split(2, &["a", "b"], vec![1, 0]),
            skipped: 0,
        };
        assert!(usable_label_sets(&mut d, "give labels").is_empty());
        assert_eq!(d.train.label_sets.len(), 1);
        assert_eq!(d.test.label_sets.len(), 1);
        // One class: dropped, and the probes are skipped.
        let mut d = Datasets {
            name: "d".into(),
            train: split(3, &["cats"], vec![0, 0, 0]),
            test: split(1, &["cats"], vec![0]),
            skipped: 0,
        };
        let notes = usable_label_sets(&mut d, "give labels");
        assert!(notes[0].contains("1 class(es) (cats)"), "{notes:?}");
        assert!(notes[1].starts_with("probes skipped"), "{notes:?}");
        assert!(d.train.label_sets.is_empty() && d.test.label_sets.is_empty());
        // Labels but no held-out split.
        let mut d = Datasets {
            name: "d".into(),
            train: split(4, &["a", "b"], vec![0, 1, 0, 1]),
            test: Split {
                items: vec![],
                label_sets: vec![],
            },
            skipped: 0,
        };
        let notes = usable_label_sets(&mut d, "give labels");
        assert!(
            notes[0].contains("eval.split = \"validation\""),
            "{notes:?}"
        );
        // No labels at all.
        let mut d = Datasets {
            name: "d".into(),
            train: Split {
                items: vec![1, 2],
                label_sets: vec![],
            },
            test: Split {
                items: vec![],
                label_sets: vec![],
            },
            skipped: 0,
        };
        let notes = usable_label_sets(&mut d, "give labels");
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("has no labels"), "{notes:?}");
    }
}
