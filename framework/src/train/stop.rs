//! A request to stop a run cleanly: the loop finishes the optimizer step it is in, writes a
//! checkpoint and returns [`TrainError::Interrupted`](crate::error::TrainError::Interrupted).
//! The `ssl` binary sets it from SIGINT and SIGTERM (a cluster's pre-emption); a library user
//! sets it from wherever it likes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A shared stop request. The value is 0 until a stop is requested, then the number of the
/// signal that asked (or any non-zero number a caller picks).
#[derive(Debug, Clone, Default)]
pub struct StopRequest(Arc<AtomicUsize>);

impl StopRequest {
    /// A request nobody has made yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cell a signal handler writes its signal number into (e.g. with
    /// `signal_hook::flag::register_usize`).
    pub fn cell(&self) -> Arc<AtomicUsize> {
        self.0.clone()
    }

    /// Asks the run to stop, giving `signal` as the reason (non-zero; 2 for SIGINT, 15 for
    /// SIGTERM).
    pub fn request(&self, signal: usize) {
        self.0.store(signal.max(1), Ordering::SeqCst);
    }

    /// The signal number of the request, or `None` when no stop was asked for.
    pub fn requested(&self) -> Option<usize> {
        match self.0.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}

pub use crate::error::signal_name;
