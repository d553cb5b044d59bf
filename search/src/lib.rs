//! # ssl-search
//!
//! Automatic search of augmentation policies for BYOL, for any modality (the paper's
//! conclusion: "automating the search for these augmentations"). It names no modality: a
//! modality declares its ops and what their magnitudes mean through
//! [`Modality::search_space`](ssl_framework::Modality::search_space), and the search builds
//! policies in the config format `ssl train` reads.
//!
//! - [`params`], [`policy`]: the parameter space and its decoding into the two views' ops;
//! - [`sampler`], [`tpe`]: random search and the tree-structured Parzen estimator;
//! - [`asha`]: asynchronous successive halving over pre-training steps;
//! - [`journal`]: the append-only, crash-safe study store;
//! - [`study`]: the study loop (trials, baselines, promotions, resume, final re-training);
//! - [`modality_study`]: a study of a [`Modality`](ssl_framework::Modality) with `ssl train`'s trainer;
//! - [`remote`]: a study spread over MPI ranks (rank 0 runs the study, the others its runs);
//! - [`report`]: the Markdown report of a study;
//! - [`plot`]: every plot of `ssl` (a run's training curves, a benchmark's, a study's);
//! - [`stats`]: mean and standard deviation over seeds;
//! - [`settings`]: the search file (`configs/search/<modality>.toml`).

pub mod asha;
pub mod journal;
pub mod modality_study;
pub mod params;
pub mod plot;
pub mod policy;
pub mod remote;
pub mod report;
pub mod sampler;
pub mod settings;
pub mod stats;
pub mod study;
pub mod tpe;
pub mod transfer;

/// Why a study stopped.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// An invalid search file or command-line value (the message names the key).
    #[error("{0}")]
    Settings(String),
    /// The journal cannot be read or written, or does not match the study.
    #[error(transparent)]
    JournalIo(#[from] journal::JournalError),
    /// The journal's content does not fit this study.
    #[error("{0}")]
    Journal(String),
    /// A run failed for a reason that is not the policy's (data, config, disk).
    #[error("{context}: {source}")]
    Run {
        /// Which run.
        context: String,
        /// The trainer's error.
        source: ssl_framework::train::TrainError,
    },
    /// A run handed to another rank failed there for a reason other than its policy, or the
    /// ranks could not exchange messages (the message names the rank).
    #[error("{0}")]
    Worker(String),
    /// A report file could not be written.
    #[error("{path}: {reason}")]
    Output {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}
