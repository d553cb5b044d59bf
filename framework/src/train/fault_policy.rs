//! What a run does when a step's loss or gradient is NaN or infinite (`train.on_nan`): stop,
//! skip the step, or roll back to the newest checkpoint, at most `train.max_faults` times.

use crate::byol::non_finite_parameter;
use crate::config::OnNan;
use burn::module::Module;

/// The answer of [`FaultPolicy::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// End the run with this reason (the fault's description plus why it is not tolerated).
    Stop(String),
    /// Skip the step's update and go on.
    Skip,
    /// Reload the newest checkpoint and replay from it without the faulty step.
    Rollback,
}

/// Counts faults and answers each one as `train.on_nan` and `train.max_faults` say.
#[derive(Debug, Clone)]
pub struct FaultPolicy {
    /// The configured reaction.
    pub mode: OnNan,
    /// Faults tolerated before the run stops anyway.
    pub max_faults: usize,
    /// Faults tolerated so far.
    pub faults: usize,
}

impl FaultPolicy {
    /// A policy with no fault seen yet.
    pub fn new(mode: OnNan, max_faults: usize) -> Self {
        Self {
            mode,
            max_faults,
            faults: 0,
        }
    }

    /// The reaction to a fault described by `what`. `online` is the online network after the
    /// faulty step (its parameters unchanged): under `skip`, a faulty batch that already made
    /// its BatchNorm statistics non-finite stops the run, since only a rollback undoes that. A
    /// tolerated fault is counted.
    pub fn decide<M: Module>(&mut self, what: &str, online: &M) -> FaultAction {
        let poisoned = self.poisons_statistics(online);
        self.decide_given(what, poisoned)
    }

    /// Whether, under `skip`, the faulty step made `online`'s BatchNorm statistics (or another
    /// float tensor) non-finite.
    pub fn poisons_statistics<M: Module>(&self, online: &M) -> bool {
        self.mode == OnNan::Skip && non_finite_parameter(&online.valid()).is_some()
    }

    /// [`FaultPolicy::decide`] with the statistics check already made (under data parallelism,
    /// agreed between the ranks: each keeps its own statistics without SyncBN).
    pub fn decide_given(&mut self, what: &str, poisoned: bool) -> FaultAction {
        let give_up = self.mode == OnNan::Stop || self.faults >= self.max_faults;
        if give_up || poisoned {
            let why = if poisoned {
                "; the faulty batch also made the online network's BatchNorm statistics non-finite, which only --on-nan rollback undoes".to_string()
            } else if self.mode != OnNan::Stop {
                format!(" after {} earlier faults (train.max_faults)", self.faults)
            } else {
                String::new()
            };
            return FaultAction::Stop(format!("{what}{why}"));
        }
        self.faults += 1;
        match self.mode {
            OnNan::Rollback => FaultAction::Rollback,
            _ => FaultAction::Skip,
        }
    }
}
