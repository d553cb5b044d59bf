//! The training driver around the BYOL step ([`crate::byol::update()`]): the loop
//! (`train_loop`), checkpoints and resume ([`resume`]), the fault policy
//! ([`fault_policy`]), progress and the metrics log ([`progress`], [`metrics`]), and the run's
//! results ([`results`]); [`run::train_and_evaluate`] ties them together with the evaluation.

pub mod fault_policy;
pub mod metrics;
pub mod progress;
pub mod results;
pub mod resume;
pub mod run;
mod train_loop;

pub use crate::error::TrainError;
pub use fault_policy::{FaultAction, FaultPolicy};
pub use metrics::MetricsRecord;
pub use results::{COLLAPSE_THRESHOLD, RunReport};
pub use run::{RunOptions, steps_per_epoch, train_and_evaluate};
