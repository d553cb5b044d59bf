//! The training loop, checkpoints and resume, the metrics log, progress, and the run report.

pub mod checkpoint;
pub mod faults;
pub mod metrics;
pub mod pretrained;
pub mod run;

pub use checkpoint::{CheckpointError, CheckpointState};
pub use metrics::MetricsRecord;
pub use pretrained::{
    EvalOptions, Pretrained, checkpoint_config, clone_ops, evaluate_pretrained, find_checkpoint,
    load_encoder, load_pretrained, random_init_encoder,
};
pub use run::{EvalData, RunOptions, RunReport, TrainError, evaluate_encoder, train_and_evaluate};
