//! [`TrainError`]: why a training run or an evaluation stopped; [`CheckpointError`]: a
//! checkpoint that cannot be written or read.

use crate::byol::EmaError;
use crate::config::ConfigError;
use crate::data::DataError;
use crate::data::loader::WorkerError;
use std::path::{Path, PathBuf};

/// Why a run (training, evaluation, loading a checkpoint) stopped.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Unusable data.
    #[error(transparent)]
    Data(#[from] DataError),
    /// A data worker failed.
    #[error(transparent)]
    Worker(#[from] WorkerError),
    /// A checkpoint could not be written or read.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The EMA could not match the networks.
    #[error(transparent)]
    Ema(#[from] EmaError),
    /// A collective between the data-parallel ranks failed.
    #[error(transparent)]
    Replicas(#[from] crate::replicas::ReplicaError),
    /// The data-parallel replicas no longer hold the same networks.
    #[error(
        "the data-parallel replicas diverged at optimizer step {step}: network checksums by rank {checksums}"
    )]
    Diverged {
        /// The step after which the checksums were compared.
        step: usize,
        /// The checksums, in rank order.
        checksums: String,
    },
    /// A file of the run could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A loss term or a gradient became NaN or infinite; every checkpoint is kept.
    #[error(
        "non-finite {what} at optimizer step {step} (epoch {epoch}); the last good checkpoint is kept in {checkpoints}"
    )]
    NonFinite {
        /// The step being computed (1-based).
        step: usize,
        /// Its epoch.
        epoch: usize,
        /// Which term: a loss direction with its value, or the parameter whose gradient it is.
        what: String,
        /// The checkpoint folder.
        checkpoints: PathBuf,
    },
    /// `--resume` without a checkpoint, or a new run over an existing one.
    #[error("{0}")]
    Resume(String),
    /// Another live process holds the run folder (`train::run_lock`).
    #[error("{dir} is in use by process {}: wait for it to end, or choose another output folder", .owner.map_or_else(|| "(unknown pid)".to_string(), |p| p.to_string()))]
    Busy {
        /// The run folder.
        dir: PathBuf,
        /// The owner's pid, as written in the lock file.
        owner: Option<u32>,
    },
    /// A stop was requested (`train::StopRequest`, e.g. SIGINT or SIGTERM): the
    /// optimizer step under way finished and a checkpoint of it was written.
    #[error("stopped by {} after optimizer step {step} of {total_steps}; checkpoint {checkpoint}", signal_name(*.signal))]
    Interrupted {
        /// The signal number that asked (2: SIGINT, 15: SIGTERM).
        signal: usize,
        /// Optimizer steps done.
        step: usize,
        /// Optimizer steps of the whole run.
        total_steps: usize,
        /// The checkpoint folder of that step.
        checkpoint: PathBuf,
    },
}

/// Maps an I/O error on `path` to [`TrainError::Io`].
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A checkpoint that cannot be written or read, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint {path}: {reason}")]
pub struct CheckpointError {
    /// The file or folder.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

impl CheckpointError {
    /// An error about `path`.
    pub fn new(path: &Path, reason: impl ToString) -> Self {
        Self {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

/// The conventional name of a signal number (`SIGINT`, `SIGTERM`), else `signal N`.
pub fn signal_name(signal: usize) -> String {
    match signal {
        1 => "SIGHUP".into(),
        2 => "SIGINT".into(),
        15 => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}
