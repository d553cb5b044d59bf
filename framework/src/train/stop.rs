//! A request to stop a run cleanly: the loop finishes the optimizer step it is in, writes a
//! checkpoint and returns [`TrainError::Interrupted`](crate::error::TrainError::Interrupted).
//! The `ssl` binary sets it from SIGINT and SIGTERM (a cluster's pre-emption); a library user
//! sets it from wherever it likes. Once training is over and its final checkpoint written, the
//! run marks the request "immediate": a signal handler that honours it (the binary's does) then
//! ends the process at once, since nothing is lost (`--resume` evaluates again).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A shared stop request. Its signal cell is 0 until a stop is requested, then the number of
/// the signal that asked (or any non-zero number a caller picks).
#[derive(Debug, Clone, Default)]
pub struct StopRequest {
    signal: Arc<AtomicUsize>,
    immediate: Arc<AtomicBool>,
    handled: Arc<AtomicBool>,
    /// Other runs share the process (several trials at once): no run may allow an immediate
    /// exit, which would cut the others short without their checkpoints.
    shared: bool,
}

impl StopRequest {
    /// A request nobody has made yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cell a signal handler writes its signal number into (e.g. with
    /// `signal_hook::flag::register_usize`).
    pub fn cell(&self) -> Arc<AtomicUsize> {
        self.signal.clone()
    }

    /// The cell that says a signal should end the process at once: set by the run once nothing
    /// can be lost any more (and by a handler on the first signal, so that a second one ends
    /// the process); for `signal_hook::flag::register_conditional_shutdown`.
    pub fn immediate_cell(&self) -> Arc<AtomicBool> {
        self.immediate.clone()
    }

    /// Says that signal handlers honour this request (the run then tells its user what a
    /// signal does in each phase).
    pub fn mark_handled(&self) {
        self.handled.store(true, Ordering::SeqCst);
    }

    /// Whether signal handlers honour this request.
    pub fn is_handled(&self) -> bool {
        self.handled.load(Ordering::SeqCst)
    }

    /// The same request for runs that share the process with others at the same time (the
    /// search's trials on several devices): [`allow_immediate_exit`](Self::allow_immediate_exit)
    /// does nothing, so every run stops at a step boundary with its checkpoint.
    pub fn shared_by_concurrent_runs(&self) -> Self {
        Self {
            shared: true,
            ..self.clone()
        }
    }

    /// Whether a signal now ends the process at once, not at a step boundary.
    pub fn allows_immediate_exit(&self) -> bool {
        !self.shared && self.is_handled()
    }

    /// From now on a signal may end the process at once (unless the request is shared by
    /// concurrent runs).
    pub fn allow_immediate_exit(&self) {
        if !self.shared {
            self.immediate.store(true, Ordering::SeqCst);
        }
    }

    /// Training (again): a first signal stops at the next step boundary, unless a stop was
    /// already asked for (a process running several runs, as the search does, calls this at
    /// each run's start).
    pub fn require_clean_stop(&self) {
        if self.requested().is_none() {
            self.immediate.store(false, Ordering::SeqCst);
        }
    }

    /// Asks the run to stop, giving `signal` as the reason (non-zero; 2 for SIGINT, 15 for
    /// SIGTERM).
    pub fn request(&self, signal: usize) {
        self.signal.store(signal.max(1), Ordering::SeqCst);
    }

    /// The signal number of the request, or `None` when no stop was asked for.
    pub fn requested(&self) -> Option<usize> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            s => Some(s),
        }
    }
}

pub use crate::error::signal_name;
