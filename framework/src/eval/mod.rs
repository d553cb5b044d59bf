//! Evaluation of a pre-trained encoder: kNN monitor and linear probe on frozen features of the
//! online encoder f, each beside a random-init encoder of the same architecture, and the collapse
//! metric. Evaluation works on a validation copy (`Module::valid`), so it never changes the
//! encoder's parameters or BatchNorm statistics.

pub mod eval_data;
pub mod features;
pub mod finetune;
pub mod knn;
pub mod linear_probe;
pub mod protocol;
pub mod representation;

pub use crate::byol::collapse::collapse_std;
pub use eval_data::prepare_eval_data;
pub use features::{
    Features, extract_features, extract_features_of_rows, extract_readable_features,
};
pub use finetune::{Classifier, FinetuneConfig, balanced_fraction, finetune_top1};
pub use knn::knn_top1;
pub use linear_probe::{ProbeConfig, linear_probe_top1};
pub use protocol::{EvalOptions, Evaluation, evaluate_encoder, evaluate_pretrained};
pub use representation::RepresentationReport;

use serde::{Deserialize, Serialize};

/// Top-1 accuracy (in `[0, 1]`) of one probe on one label set, for the trained and the
/// random-init encoder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeResult {
    /// `"knn"` or `"linear"`.
    pub probe: String,
    /// The label set (e.g. `"class"`, `"digit"`).
    pub labels: String,
    /// Number of classes.
    pub classes: usize,
    /// Top-1 of the trained (online) encoder.
    pub trained_top1: f64,
    /// Top-1 of a random-init encoder of the same architecture (`None` when disabled).
    pub random_init_top1: Option<f64>,
    /// Held-out samples scored (those with a label in this set): one of them is
    /// `100 / samples` points of top-1. 0 in results written before it was recorded.
    #[serde(default)]
    pub samples: usize,
}
