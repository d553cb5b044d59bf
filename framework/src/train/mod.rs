//! The training driver around the BYOL step ([`crate::byol::update()`]): the loop
//! (`train_loop`), checkpoints and resume ([`resume`]), the fault policy
//! ([`fault_policy`]), progress and the metrics log ([`progress`], [`metrics`]), and the run's
//! results ([`results`]); [`run::train_and_evaluate`] ties them together with the evaluation.

pub mod collapse_watch;
pub mod config_warnings;
pub mod fault_policy;
pub mod metrics;
pub mod progress;
pub mod results;
pub mod resume;
pub mod run;
pub mod run_lock;
pub mod stop;
mod train_loop;

pub use crate::error::TrainError;
pub use config_warnings::config_warnings;
pub use fault_policy::{FaultAction, FaultPolicy};
pub use metrics::MetricsRecord;
pub use results::{COLLAPSE_THRESHOLD, RunReport};
pub use run::{RunOptions, steps_per_epoch, train_and_evaluate};
pub use run_lock::RunLock;
pub use stop::StopRequest;
