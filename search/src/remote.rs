//! A study spread over processes: under `mpirun -np N ssl search-augment ...`, rank 0 runs the
//! study (journal, sampler, successive halving, report) and hands each trial and final run to
//! one of ranks 1 to N-1, which trains it (into the study's folder: a shared filesystem across
//! machines) and sends back its score. The journal on rank 0 stays the one record of the
//! study, so `--resume` works as with one process: a run that was under way when a rank died
//! runs again from its newest checkpoint, and no finished run runs twice.
//!
//! The messages go through a [`Messenger`] (MPI's point-to-point messages in the `ssl`
//! binary), as JSON.

use crate::SearchError;
use crate::study::{FinalJob, Outcome, RunFailure, Runner, TrialJob};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Messages between the ranks of one job.
pub trait Messenger: Send + Sync {
    /// This process's rank.
    fn rank(&self) -> usize;
    /// The number of ranks.
    fn ranks(&self) -> usize;
    /// Sends `message` to rank `to`.
    ///
    /// # Errors
    /// The communication layer's failure, as a sentence.
    fn send(&self, to: usize, message: Vec<u8>) -> Result<(), String>;
    /// The next message from rank `from` (waits for it).
    ///
    /// # Errors
    /// The communication layer's failure, as a sentence.
    fn receive(&self, from: usize) -> Result<Vec<u8>, String>;
}

/// The ranks a study runs on (rank 0 runs the study, the others its runs).
#[derive(Clone)]
pub struct StudyRanks(pub Arc<dyn Messenger>);

impl fmt::Debug for StudyRanks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "StudyRanks(rank {} of {})",
            self.0.rank(),
            self.0.ranks()
        )
    }
}

/// What rank 0 asks of a worker rank.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    Trial(TrialJob),
    Final(FinalJob),
    /// The study is over: the worker returns.
    Done,
}

/// A worker rank's answer.
#[derive(Debug, Serialize, Deserialize)]
enum Reply {
    Scored(Outcome),
    /// The policy made training fail ([`RunFailure::Policy`]).
    PolicyFailed(String),
    /// Anything else ([`RunFailure::Fatal`]), as its message.
    Fatal(String),
}

/// Rank 0's runner: each of its workers is a rank (worker `w` is rank `w + 1`).
pub(crate) struct RemoteRunner<'a> {
    pub messenger: &'a dyn Messenger,
    /// Rank 0's own runner, for what happens in the study's folder after the search.
    pub local: &'a dyn Runner,
}

impl RemoteRunner<'_> {
    fn ask(&self, worker: usize, request: &Request, what: &str) -> Result<Outcome, RunFailure> {
        let rank = worker + 1;
        let failed = |e: String| {
            RunFailure::Fatal(SearchError::Worker(format!("{what} on rank {rank}: {e}")))
        };
        let bytes = serde_json::to_vec(request).map_err(|e| failed(e.to_string()))?;
        self.messenger.send(rank, bytes).map_err(failed)?;
        let answer = self.messenger.receive(rank).map_err(failed)?;
        match serde_json::from_slice::<Reply>(&answer).map_err(|e| failed(e.to_string()))? {
            Reply::Scored(outcome) => Ok(outcome),
            Reply::PolicyFailed(why) => Err(RunFailure::Policy(why)),
            Reply::Fatal(why) => Err(failed(why)),
        }
    }

    /// Tells every worker rank that the study is over.
    pub fn release(&self) {
        let done = serde_json::to_vec(&Request::Done).expect("a unit variant serializes");
        for rank in 1..self.messenger.ranks() {
            if let Err(e) = self.messenger.send(rank, done.clone()) {
                eprintln!("warning: rank {rank} could not be told that the study is over: {e}");
            }
        }
    }
}

impl Runner for RemoteRunner<'_> {
    fn workers(&self) -> usize {
        self.messenger.ranks() - 1
    }

    fn trial(&self, job: &TrialJob, worker: usize) -> Result<Outcome, RunFailure> {
        self.ask(
            worker,
            &Request::Trial(job.clone()),
            &format!("trial {}", job.name),
        )
    }

    fn final_run(&self, job: &FinalJob, worker: usize) -> Result<Outcome, RunFailure> {
        self.ask(
            worker,
            &Request::Final(job.clone()),
            &format!("final {} seed {}", job.policy_name, job.seed),
        )
    }

    fn search_finished(&self) {
        self.local.search_finished();
    }
}

/// A worker rank's loop: runs what rank 0 asks with `local` (on its device 0) and answers, until
/// the study is over.
///
/// # Errors
/// [`SearchError::Worker`] when a message cannot be received, read or sent.
pub(crate) fn serve(messenger: &dyn Messenger, local: &dyn Runner) -> Result<(), SearchError> {
    let rank = messenger.rank();
    let worker_error = |e: String| SearchError::Worker(format!("rank {rank}: {e}"));
    loop {
        let bytes = messenger.receive(0).map_err(worker_error)?;
        let request: Request =
            serde_json::from_slice(&bytes).map_err(|e| worker_error(e.to_string()))?;
        let result = match &request {
            Request::Trial(job) => local.trial(job, 0),
            Request::Final(job) => local.final_run(job, 0),
            Request::Done => return Ok(()),
        };
        let reply = match result {
            Ok(outcome) => Reply::Scored(outcome),
            Err(RunFailure::Policy(why)) => Reply::PolicyFailed(why),
            Err(RunFailure::Fatal(e)) => Reply::Fatal(e.to_string()),
        };
        let bytes = serde_json::to_vec(&reply).map_err(|e| worker_error(e.to_string()))?;
        messenger.send(0, bytes).map_err(worker_error)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::{Condvar, Mutex};

    /// Ranks as threads: one mailbox per (from, to) pair.
    struct Mailboxes {
        boxes: Mutex<Vec<VecDeque<Vec<u8>>>>,
        ready: Condvar,
        ranks: usize,
    }

    struct Thread {
        rank: usize,
        shared: Arc<Mailboxes>,
    }

    impl Messenger for Thread {
        fn rank(&self) -> usize {
            self.rank
        }
        fn ranks(&self) -> usize {
            self.shared.ranks
        }
        fn send(&self, to: usize, message: Vec<u8>) -> Result<(), String> {
            let mut boxes = self.shared.boxes.lock().unwrap();
            boxes[self.rank * self.shared.ranks + to].push_back(message);
            self.shared.ready.notify_all();
            Ok(())
        }
        fn receive(&self, from: usize) -> Result<Vec<u8>, String> {
            let mut boxes = self.shared.boxes.lock().unwrap();
            loop {
                if let Some(m) = boxes[from * self.shared.ranks + self.rank].pop_front() {
                    return Ok(m);
                }
                boxes = self.shared.ready.wait(boxes).unwrap();
            }
        }
    }

    /// Scores a trial by its number; trial 2's policy fails.
    struct Fake;
    impl Runner for Fake {
        fn workers(&self) -> usize {
            1
        }
        fn trial(&self, job: &TrialJob, _worker: usize) -> Result<Outcome, RunFailure> {
            if job.trial == 2 {
                return Err(RunFailure::Policy("non-finite loss".into()));
            }
            Ok(Outcome {
                score: job.trial as f64 / 10.0,
                detail: serde_json::json!({ "steps": job.steps }),
            })
        }
        fn final_run(&self, _job: &FinalJob, _worker: usize) -> Result<Outcome, RunFailure> {
            Err(RunFailure::Fatal(SearchError::Settings("disk full".into())))
        }
    }

    #[test]
    fn rank_zero_gets_each_workers_answers() {
        let shared = Arc::new(Mailboxes {
            boxes: Mutex::new(vec![VecDeque::new(); 9]),
            ready: Condvar::new(),
            ranks: 3,
        });
        let rank = |r: usize| Thread {
            rank: r,
            shared: shared.clone(),
        };
        std::thread::scope(|s| {
            for r in 1..3 {
                let me = rank(r);
                s.spawn(move || serve(&me, &Fake).unwrap());
            }
            let zero = rank(0);
            let remote = RemoteRunner {
                messenger: &zero,
                local: &Fake,
            };
            assert_eq!(remote.workers(), 2);
            let job = |trial: usize| TrialJob {
                trial,
                name: format!("t{trial:03}"),
                policy: serde_json::json!({}),
                rung: 0,
                steps: 4,
                full_steps: 8,
            };
            let a = remote.trial(&job(1), 0).unwrap();
            assert_eq!((a.score, a.detail["steps"].as_u64()), (0.1, Some(4)));
            let b = remote.trial(&job(3), 1).unwrap();
            assert_eq!(b.score, 0.3);
            assert!(matches!(
                remote.trial(&job(2), 1),
                Err(RunFailure::Policy(why)) if why == "non-finite loss"
            ));
            let final_job = FinalJob {
                policy_name: "best".into(),
                trial: "t000".into(),
                policy: serde_json::json!({}),
                seed: 0,
                steps: 8,
                random_init: false,
            };
            match remote.final_run(&final_job, 0) {
                Err(RunFailure::Fatal(e)) => {
                    assert_eq!(e.to_string(), "final best seed 0 on rank 1: disk full")
                }
                other => panic!("{other:?}"),
            }
            remote.release();
        });
    }
}
