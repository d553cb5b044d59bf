//! What a finished run reports: `results.json` (or `results-step-N.json` for a paused run) and
//! the [`RunReport`] returned to the caller.

use crate::error::{TrainError, io_err};
use crate::eval::ProbeResult;
use std::path::Path;

/// A run counts as collapsed when the collapse metric falls below this many times
/// `1 / sqrt(projection_dim)` (the value of outputs spread evenly over the sphere).
pub const COLLAPSE_THRESHOLD: f64 = 0.1;

/// The collapse floor of a projection width: [`COLLAPSE_THRESHOLD`] / sqrt(`projection_dim`).
pub fn collapse_floor(projection_dim: usize) -> f64 {
    COLLAPSE_THRESHOLD / (projection_dim as f64).sqrt()
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The content of `results.json`.
    pub results: serde_json::Value,
    /// The probe results (also inside `results`).
    pub probes: Vec<ProbeResult>,
}

/// Writes `results` into `out` atomically: `results.json`, or `results-step-<step>.json` when
/// the run `paused` before its end.
///
/// # Errors
/// [`TrainError::Io`] naming the folder.
pub fn write_results(
    out: &Path,
    results: &serde_json::Value,
    paused: bool,
    step: usize,
) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(results).expect("results serialize");
    let file = if paused {
        format!("results-step-{step}.json")
    } else {
        "results.json".to_string()
    };
    crate::fsutil::write_atomic(&out.join(file), text.as_bytes()).map_err(io_err(out))
}
