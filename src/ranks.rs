//! The data-parallel ranks of this process: under `mpirun -np N ssl ...` (Open MPI, MPICH)
//! with the `mpi` feature, one MPI rank each (the `mpi_ranks` module); otherwise one process alone.
//! Also this rank's share of the machine's cores: ranks on one machine split them.

use anyhow::Result;
use ssl_framework::replicas::ReplicaGroup;
#[cfg(feature = "mpi")]
use ssl_framework::replicas::Replicas;
#[cfg(feature = "mpi")]
use std::sync::Arc;

/// The size of the MPI job this process was started in, from the launcher's environment
/// (`mpirun` of Open MPI sets `OMPI_COMM_WORLD_SIZE`; MPICH's Hydra and PMIx launchers
/// `PMI_SIZE`), or `None` outside one.
pub fn launched_ranks() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// Started by an MPI launcher with several ranks, but built without the `mpi` feature (every
/// rank meets it alike: rank 0 alone reports it).
#[derive(Debug)]
pub struct BuiltWithoutMpi {
    /// The job's ranks.
    pub ranks: usize,
}

impl std::fmt::Display for BuiltWithoutMpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "started by an MPI launcher with {} ranks, but this ssl was built without MPI: build it with `cargo build --release --features mpi` (needs Open MPI or MPICH, and libclang)",
            self.ranks
        )
    }
}

impl std::error::Error for BuiltWithoutMpi {}

/// This process's rank in the job (`OMPI_COMM_WORLD_RANK`, `PMI_RANK`, `PMIX_RANK`), 0
/// outside one.
pub fn world_rank() -> usize {
    ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(0)
}

/// Ranks of the job on this machine (`OMPI_COMM_WORLD_LOCAL_SIZE`, `MPI_LOCALNRANKS`), 1
/// outside a job.
fn local_ranks() -> usize {
    ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// This process's rank among the job's ranks on this machine (`OMPI_COMM_WORLD_LOCAL_RANK`,
/// `MPI_LOCALRANKID`), 0 outside a job: the GPU of `--device cuda:local` (or `vulkan:local`, ...).
pub fn local_rank() -> usize {
    ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
        .unwrap_or(0)
}

/// Under a job with several ranks on this machine, and unless `RAYON_NUM_THREADS` says
/// otherwise: the compute threads (and with them the default data workers) of this rank are
/// its share of the cores, so that the ranks do not oversubscribe the machine: the cores it may
/// run on (Open MPI binds each of 2 ranks to one core by default, and to a socket above 2),
/// but at most the machine's cores divided by the local ranks (`--bind-to none`: an even
/// share). Call before any parallel work.
pub fn share_cores() {
    let local = local_ranks();
    if local <= 1 || std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    let allowed = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = allowed
        .min(online_cores().unwrap_or(allowed) / local)
        .max(1);
    // An error means a pool already exists: nothing to change then.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
}

/// The machine's online cores (`/sys/devices/system/cpu/online`, as `0-3,8-11`), whatever this
/// process's affinity; `None` where that file is missing.
fn online_cores() -> Option<usize> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    let mut count = 0;
    for range in text.trim().split(',') {
        count += match range.split_once('-') {
            Some((a, b)) => b.parse::<usize>().ok()? - a.parse::<usize>().ok()? + 1,
            None => {
                range.parse::<usize>().ok()?;
                1
            }
        };
    }
    Some(count)
}

/// The ranks this process trains with: MPI's when started by a launcher with several ranks
/// (needs the `mpi` feature), else one process alone. `sync_batch_norm` is set later from the
/// config. The second value ends MPI cleanly at the end of the command.
///
/// # Errors
/// A launcher with several ranks and a binary built without `mpi`; MPI failing to start.
pub fn replica_group(stop: ssl_framework::train::StopRequest) -> Result<(ReplicaGroup, Finish)> {
    match launched_ranks() {
        Some(n) if n > 1 => {
            #[cfg(feature = "mpi")]
            {
                let ranks = Arc::new(mpi_ranks::MpiRanks::start(stop)?);
                let group = ReplicaGroup::new(ranks.clone() as Arc<dyn Replicas>, true);
                Ok((group, Finish { ranks: Some(ranks) }))
            }
            #[cfg(not(feature = "mpi"))]
            {
                let _ = stop;
                Err(BuiltWithoutMpi { ranks: n }.into())
            }
        }
        _ => Ok((ReplicaGroup::single(), Finish::default())),
    }
}

/// The ranks a search runs on under an MPI launcher with several ranks (rank 0 runs the study,
/// the others its runs; needs the `mpi` feature), else `None`. The second value ends MPI
/// cleanly at the end of the command.
///
/// # Errors
/// A launcher with several ranks and a binary built without `mpi`; MPI failing to start.
pub fn study_ranks(
    stop: ssl_framework::train::StopRequest,
) -> Result<(Option<ssl_search::remote::StudyRanks>, Finish)> {
    match launched_ranks() {
        Some(n) if n > 1 => {
            #[cfg(feature = "mpi")]
            {
                let ranks = Arc::new(mpi_ranks::MpiRanks::start(stop)?);
                let study = ssl_search::remote::StudyRanks(
                    ranks.clone() as Arc<dyn ssl_search::remote::Messenger>
                );
                Ok((Some(study), Finish { ranks: Some(ranks) }))
            }
            #[cfg(not(feature = "mpi"))]
            {
                let _ = stop;
                Err(BuiltWithoutMpi { ranks: n }.into())
            }
        }
        _ => Ok((None, Finish::default())),
    }
}

/// Ends MPI (when it was started) once every rank is done, by [`Finish::now`]. Dropped without
/// it (a rank that fails), MPI is left as it is: the process then exits with an error, and the
/// launcher ends the other ranks (a final barrier would wait for them forever).
#[derive(Default)]
pub struct Finish {
    #[cfg(feature = "mpi")]
    ranks: Option<Arc<mpi_ranks::MpiRanks>>,
}

impl Finish {
    /// Waits for the other ranks, then ends MPI.
    pub fn now(self) {
        #[cfg(feature = "mpi")]
        if let Some(ranks) = self.ranks {
            ranks.finish();
        }
    }
}

/// MPI through the `mpi` crate (rsmpi): one thread per process owns MPI and runs the
/// collectives that the trainer and the BatchNorm kernels ask for, so that the trainer can
/// keep an eye on the clock and on SIGTERM while it waits.
#[cfg(feature = "mpi")]
pub mod mpi_ranks {
    use anyhow::{Context, Result, anyhow};
    use mpi::collective::SystemOperation;
    use mpi::traits::*;
    use ssl_framework::replicas::{ReplicaError, Replicas};
    use ssl_framework::train::StopRequest;
    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;
    use std::sync::mpsc::{Receiver, Sender, SyncSender, sync_channel};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    /// What the MPI thread is asked to do.
    enum Request {
        /// Sum over the ranks: a reduction onto rank 0, then a broadcast (the same bits
        /// everywhere).
        Sum(Vec<f32>, SyncSender<Vec<f32>>),
        /// Every rank's values in rank order.
        Gather(Vec<f64>, SyncSender<Vec<f64>>),
        /// A message to one rank.
        Send(usize, Vec<u8>, SyncSender<()>),
        /// The next message from one rank.
        Receive(usize, SyncSender<Vec<u8>>),
        /// Wait for every rank, then end MPI.
        Finish(SyncSender<()>),
    }

    /// This process's MPI rank.
    pub struct MpiRanks {
        rank: usize,
        ranks: usize,
        requests: Mutex<Sender<Request>>,
        thread: Mutex<Option<JoinHandle<()>>>,
        stop: StopRequest,
        /// How long a collective may wait for the other ranks (`SSL_MPI_TIMEOUT_S`).
        timeout: Duration,
        /// How long after a stop signal ([`signal_grace`]).
        grace: Duration,
    }

    /// After SIGTERM or SIGINT, how long a collective may still wait before this rank
    /// concludes that another rank is gone (`SSL_MPI_SIGNAL_GRACE_S`, default 0.5 s). When a
    /// rank dies, Open MPI's mpirun sends the others SIGTERM about 1 s later and SIGKILL 1 s
    /// after that (measured with Open MPI 4.1.4), so a longer wait would never be reported;
    /// under a scheduler that signals every rank itself and waits longer (SLURM's KillWait),
    /// a longer grace lets the ranks agree on a clean stop with a checkpoint.
    fn signal_grace() -> Duration {
        std::env::var("SSL_MPI_SIGNAL_GRACE_S")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map_or(Duration::from_millis(500), Duration::from_secs_f64)
    }

    impl MpiRanks {
        /// Starts MPI on its own thread.
        ///
        /// # Errors
        /// MPI failing to start, or `SSL_MPI_TIMEOUT_S` not a number.
        pub fn start(stop: StopRequest) -> Result<Self> {
            let timeout = match std::env::var("SSL_MPI_TIMEOUT_S") {
                Ok(v) => Duration::from_secs_f64(
                    v.parse::<f64>()
                        .with_context(|| format!("SSL_MPI_TIMEOUT_S={v}: expected seconds"))?,
                ),
                Err(_) => Duration::from_secs(1800),
            };
            let (tx, rx) = std::sync::mpsc::channel::<Request>();
            let (ready_tx, ready_rx) = sync_channel::<Result<(usize, usize), String>>(1);
            let thread = std::thread::Builder::new()
                .name("mpi".into())
                .spawn(move || serve(rx, ready_tx))
                .context("starting the MPI thread")?;
            let (rank, ranks) = ready_rx
                .recv()
                .map_err(|_| anyhow!("MPI did not start"))?
                .map_err(|e| anyhow!(e))?;
            Ok(Self {
                rank,
                ranks,
                requests: Mutex::new(tx),
                thread: Mutex::new(Some(thread)),
                stop,
                timeout,
                grace: signal_grace(),
            })
        }

        /// Waits for every rank, then ends MPI (`MPI_Finalize`). Later collectives fail.
        pub fn finish(&self) {
            let (tx, rx) = sync_channel(1);
            if self.send(Request::Finish(tx)).is_ok() {
                let _ = rx.recv();
            }
            if let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) {
                let _ = thread.join();
            }
        }

        fn send(&self, request: Request) -> Result<(), ReplicaError> {
            self.requests
                .lock()
                .map_err(|_| ReplicaError::Failed("the MPI request queue is poisoned".into()))?
                .send(request)
                .map_err(|_| ReplicaError::Failed(format!("rank {}: MPI has ended", self.rank)))
        }

        /// Runs one collective and waits for it. A wait longer than the timeout, or longer
        /// than the signal's grace once a stop signal came, means another rank is gone: this rank
        /// says so in one line and ends (exit status 1), which lets mpirun end the job; the
        /// checkpoints, written by rename, stay whole.
        fn call<T>(
            &self,
            what: &str,
            make: impl FnOnce(SyncSender<T>) -> Request,
        ) -> Result<T, ReplicaError> {
            self.call_within(what, make, Some(self.timeout))
        }

        /// [`MpiRanks::call`] with another limit (`None`: no limit but the signal's).
        fn call_within<T>(
            &self,
            what: &str,
            make: impl FnOnce(SyncSender<T>) -> Request,
            timeout: Option<Duration>,
        ) -> Result<T, ReplicaError> {
            let (tx, rx) = sync_channel(1);
            self.send(make(tx))?;
            let start = Instant::now();
            let mut signalled: Option<Instant> = None;
            loop {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(v) => return Ok(v),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                        return Err(ReplicaError::Failed(format!(
                            "rank {} of {}: MPI failed during the {what}",
                            self.rank, self.ranks
                        )));
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                }
                if signalled.is_none() && self.stop.requested().is_some() {
                    signalled = Some(Instant::now());
                }
                let gone = match signalled {
                    Some(at) => at.elapsed() > self.grace,
                    None => timeout.is_some_and(|t| start.elapsed() > t),
                };
                if gone {
                    let why = if signalled.is_some() {
                        "stopped by a signal while the other ranks did not answer (when a rank dies, mpirun stops the others)"
                    } else {
                        "the other ranks did not answer within SSL_MPI_TIMEOUT_S"
                    };
                    // One write: another rank's output cannot land inside the line.
                    use std::io::Write;
                    let _ = std::io::stderr().write_all(format!(
                        "error: rank {} of {}: {why}, in the {what} after {:.1} s; the newest checkpoint is intact: rerun the same command with --resume (under any number of ranks that divides the global batch)\n",
                        self.rank,
                        self.ranks,
                        start.elapsed().as_secs_f64()
                    ).as_bytes());
                    std::process::exit(1);
                }
            }
        }
    }

    impl Replicas for MpiRanks {
        fn rank(&self) -> usize {
            self.rank
        }
        fn ranks(&self) -> usize {
            self.ranks
        }
        fn sum_f32(&self, values: &mut [f32]) -> Result<(), ReplicaError> {
            let sum = self.call("gradient all-reduce", |tx| {
                Request::Sum(values.to_vec(), tx)
            })?;
            values.copy_from_slice(&sum);
            Ok(())
        }
        fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<f64>, ReplicaError> {
            self.call("all-gather (losses, flags or SyncBN statistics)", |tx| {
                Request::Gather(local.to_vec(), tx)
            })
        }
    }

    impl ssl_search::remote::Messenger for MpiRanks {
        fn rank(&self) -> usize {
            self.rank
        }
        fn ranks(&self) -> usize {
            self.ranks
        }
        fn send(&self, to: usize, message: Vec<u8>) -> Result<(), String> {
            self.call(&format!("message to rank {to}"), |tx| {
                Request::Send(to, message, tx)
            })
            .map_err(|e| e.to_string())
        }
        fn receive(&self, from: usize) -> Result<Vec<u8>, String> {
            // A run takes as long as it takes: no limit but a signal's.
            self.call_within(
                &format!("wait for rank {from}"),
                |tx| Request::Receive(from, tx),
                None,
            )
            .map_err(|e| e.to_string())
        }
    }

    /// The tag of the study's messages.
    const STUDY_TAG: mpi::Tag = 7;
    /// The tag of rank 0's message that the job is done.
    const FINISH_TAG: mpi::Tag = 8;

    /// The MPI thread: initializes MPI, reports the rank, then serves requests until
    /// [`Request::Finish`] (or until every sender is gone), and ends MPI.
    fn serve(requests: Receiver<Request>, ready: SyncSender<Result<(usize, usize), String>>) {
        let Some((universe, _threading)) = mpi::initialize_with_threading(mpi::Threading::Funneled)
        else {
            let _ = ready.send(Err("MPI was already initialized".into()));
            return;
        };
        let world = universe.world();
        let (rank, ranks) = (world.rank() as usize, world.size() as usize);
        if ready.send(Ok((rank, ranks))).is_err() {
            return;
        }
        let root = world.process_at_rank(0);
        // Point-to-point: who waits for a message from which rank, and messages that came
        // before anyone asked.
        let mut waiting: HashMap<usize, SyncSender<Vec<u8>>> = HashMap::new();
        let mut arrived: HashMap<usize, VecDeque<Vec<u8>>> = HashMap::new();
        loop {
            // While someone waits for a message, poll for it between requests.
            let request = if waiting.is_empty() {
                match requests.recv() {
                    Ok(r) => Some(r),
                    Err(_) => break,
                }
            } else {
                match requests.recv_timeout(Duration::from_millis(1)) {
                    Ok(r) => Some(r),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
            };
            while !waiting.is_empty() {
                let Some(status) = world.any_process().immediate_probe_with_tag(STUDY_TAG) else {
                    break;
                };
                let from = status.source_rank();
                let (message, _) = world
                    .process_at_rank(from)
                    .receive_vec_with_tag::<u8>(STUDY_TAG);
                let from = from as usize;
                match waiting.remove(&from) {
                    Some(reply) => {
                        let _ = reply.send(message);
                    }
                    None => arrived.entry(from).or_default().push_back(message),
                }
            }
            let Some(request) = request else {
                continue;
            };
            match request {
                Request::Send(to, message, reply) => {
                    world
                        .process_at_rank(to as i32)
                        .send_with_tag(&message[..], STUDY_TAG);
                    let _ = reply.send(());
                }
                Request::Receive(from, reply) => {
                    match arrived.get_mut(&from).and_then(VecDeque::pop_front) {
                        Some(message) => {
                            let _ = reply.send(message);
                        }
                        None => {
                            waiting.insert(from, reply);
                        }
                    }
                }
                Request::Sum(values, reply) => {
                    let mut sum = vec![0.0f32; values.len()];
                    if rank == 0 {
                        root.reduce_into_root(&values[..], &mut sum[..], SystemOperation::sum());
                    } else {
                        root.reduce_into(&values[..], SystemOperation::sum());
                    }
                    root.broadcast_into(&mut sum[..]);
                    let _ = reply.send(sum);
                }
                Request::Gather(local, reply) => {
                    let mut all = vec![0.0f64; local.len() * ranks];
                    world.all_gather_into(&local[..], &mut all[..]);
                    let _ = reply.send(all);
                }
                Request::Finish(reply) => {
                    // Rank 0 (which evaluates while the others are done) tells each rank when it
                    // is done too; the others wait for that asleep, not in a barrier, whose
                    // busy polling would take a core from rank 0's evaluation.
                    if rank == 0 {
                        for to in 1..ranks {
                            world
                                .process_at_rank(to as i32)
                                .send_with_tag(&[1u8][..], FINISH_TAG);
                        }
                    } else {
                        while root.immediate_probe_with_tag(FINISH_TAG).is_none() {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        let _ = root.receive_vec_with_tag::<u8>(FINISH_TAG);
                    }
                    world.barrier();
                    let _ = reply.send(());
                    break;
                }
            }
        }
        drop(universe);
    }
}
