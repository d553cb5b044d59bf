//! The splits an evaluation reads: the test split, or a seeded validation part of the training
//! split (`eval.split`), and the check that the probes have labels to tell apart.

use super::{DataError, Datasets, LabelSet, Split};
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

/// Every label set must have at least two classes among the training samples and some test
/// samples, or the probes have nothing to tell apart.
///
/// # Errors
/// [`DataError::Unusable`] naming the dataset, the label set and its classes.
pub fn check_probe_labels<I>(datasets: &Datasets<I>) -> Result<(), DataError> {
    if datasets.test.is_empty() {
        return Err(DataError::Unusable(format!(
            "{}: the evaluation split has no samples",
            datasets.name
        )));
    }
    for ls in &datasets.train.label_sets {
        let mut present: Vec<usize> = ls
            .labels
            .iter()
            .copied()
            .filter(|&l| l != LabelSet::UNLABELED)
            .collect();
        present.sort_unstable();
        present.dedup();
        if present.len() < 2 {
            let names: Vec<&str> = present
                .iter()
                .filter_map(|&c| ls.classes.get(c).map(String::as_str))
                .collect();
            return Err(DataError::Unusable(format!(
                "{}: the training split has {} class(es) of label set `{}` ({}); the linear probe and kNN need at least 2",
                datasets.name,
                present.len(),
                ls.name,
                names.join(", ")
            )));
        }
    }
    Ok(())
}
