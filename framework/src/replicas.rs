//! Data-parallel replicas: the ranks of a data-parallel run (`mpirun -np N ssl train ...`),
//! each holding a full copy of the online and target networks and reading its shard of the
//! global batch. The framework only needs three collectives, given by the [`Replicas`] trait;
//! the `ssl` binary implements them with MPI (the `mpi` feature), [`ThreadReplicas`] with
//! threads of one process (for tests), and [`SingleProcess`] is the one-rank case.
//!
//! What the step does with them ([`crate::byol::update()`]): the loss terms are averaged over
//! the ranks (so every rank takes the same fault decision); BatchNorm's batch statistics are
//! those of the global batch when [`ReplicaGroup::sync_batch_norm`] (SyncBN, the paper's
//! cross-replica BatchNorm, through `ssl_kernels::sync_batch_norm`); the gradients are summed
//! over the ranks and divided by their number ([`all_reduce_mean`]) between backward and the
//! optimizer step. Every rank then takes the same optimizer step and EMA on the same bits: the
//! replicas stay identical by construction, which [`parameter_checksum`] checks.

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use std::fmt;
use std::sync::{Arc, Barrier, Mutex};

/// Why a collective failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReplicaError {
    /// The ranks gave buffers of different lengths (their models or batches differ).
    #[error(
        "rank {rank} of {ranks}: the ranks' {what} differ in length ({mine} values here, {other} on rank {other_rank})"
    )]
    Mismatch {
        /// This rank.
        rank: usize,
        /// Ranks in all.
        ranks: usize,
        /// What was exchanged.
        what: String,
        /// Length here.
        mine: usize,
        /// Length on `other_rank`.
        other: usize,
        /// The rank that differs.
        other_rank: usize,
    },
    /// The communication layer failed (the message names the rank and the collective).
    #[error("{0}")]
    Failed(String),
}

/// The collectives of a group of ranks. Every rank must call them in the same order with
/// buffers of the same length; implementations block until every rank has called.
pub trait Replicas: Send + Sync {
    /// This process's rank, `0..ranks()`.
    fn rank(&self) -> usize;

    /// The number of ranks.
    fn ranks(&self) -> usize;

    /// `values` replaced by their elementwise sum over the ranks, the same bits on every rank
    /// (a reduction in one fixed order, then shared).
    ///
    /// # Errors
    /// [`ReplicaError`] when the communication fails.
    fn sum_f32(&self, values: &mut [f32]) -> Result<(), ReplicaError>;

    /// Every rank's `local`, concatenated in rank order: `[ranks * local.len()]`.
    ///
    /// # Errors
    /// [`ReplicaError`] when the communication fails.
    fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<f64>, ReplicaError>;
}

/// One process, one rank: every collective returns its input.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Replicas for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn ranks(&self) -> usize {
        1
    }
    fn sum_f32(&self, _values: &mut [f32]) -> Result<(), ReplicaError> {
        Ok(())
    }
    fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<f64>, ReplicaError> {
        Ok(local.to_vec())
    }
}

/// The ranks a run trains on and how: shared by the trainer, the step and the BatchNorm
/// kernels. Cheap to clone.
#[derive(Clone)]
pub struct ReplicaGroup {
    replicas: Arc<dyn Replicas>,
    /// BatchNorm normalizes with the global batch's statistics (SyncBN) when there are several
    /// ranks (`train.sync_batch_norm`).
    pub sync_batch_norm: bool,
}

impl fmt::Debug for ReplicaGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ReplicaGroup(rank {} of {}, sync_batch_norm {})",
            self.rank(),
            self.ranks(),
            self.sync_batch_norm
        )
    }
}

impl Default for ReplicaGroup {
    fn default() -> Self {
        Self::single()
    }
}

impl ReplicaGroup {
    /// One process alone.
    pub fn single() -> Self {
        Self::new(Arc::new(SingleProcess), true)
    }

    /// The group of `replicas`, with SyncBN or not.
    pub fn new(replicas: Arc<dyn Replicas>, sync_batch_norm: bool) -> Self {
        Self {
            replicas,
            sync_batch_norm,
        }
    }

    /// The same ranks, with SyncBN `on` or off.
    pub fn with_sync_batch_norm(self, on: bool) -> Self {
        Self {
            sync_batch_norm: on,
            ..self
        }
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.replicas.rank()
    }

    /// The number of ranks.
    pub fn ranks(&self) -> usize {
        self.replicas.ranks()
    }

    /// Whether this rank writes the run's files (checkpoints, metrics, results): rank 0.
    pub fn writes(&self) -> bool {
        self.rank() == 0
    }

    /// The collectives.
    pub fn replicas(&self) -> &dyn Replicas {
        &*self.replicas
    }

    /// The mean over the ranks of each of `values` (in place), the same bits on every rank.
    ///
    /// # Errors
    /// [`ReplicaError`] when the communication fails.
    pub fn mean_f64(&self, values: &mut [f64]) -> Result<(), ReplicaError> {
        if self.ranks() == 1 {
            return Ok(());
        }
        let all = self.gather(values, "values")?;
        let (n, len) = (self.ranks() as f64, values.len());
        for (i, v) in values.iter_mut().enumerate() {
            *v = all.chunks(len).map(|p| p[i]).sum::<f64>() / n;
        }
        Ok(())
    }

    /// Whether any rank passed `true` (the same answer on every rank).
    ///
    /// # Errors
    /// [`ReplicaError`] when the communication fails.
    pub fn any(&self, flag: bool) -> Result<bool, ReplicaError> {
        if self.ranks() == 1 {
            return Ok(flag);
        }
        Ok(self
            .gather(&[if flag { 1.0 } else { 0.0 }], "flags")?
            .iter()
            .any(|&v| v != 0.0))
    }

    /// The largest of the ranks' `value`s (the same answer on every rank).
    ///
    /// # Errors
    /// [`ReplicaError`] when the communication fails.
    pub fn max_u32(&self, value: u32) -> Result<u32, ReplicaError> {
        if self.ranks() == 1 {
            return Ok(value);
        }
        Ok(self
            .gather(&[value as f64], "values")?
            .into_iter()
            .fold(0, |m, v| m.max(v as u32)))
    }

    /// The rows of every rank's `rows` `[n, d]` (detached), in rank order: `[ranks * n, d]` on
    /// `rows`' device. Every rank must pass the same shape.
    ///
    /// # Errors
    /// [`ReplicaError`] when the communication fails or the shapes differ.
    pub fn gather_rows(&self, rows: Tensor<2>) -> Result<Tensor<2>, ReplicaError> {
        if self.ranks() == 1 {
            return Ok(rows);
        }
        let [n, d] = rows.dims();
        let device = rows.device();
        let local: Vec<f64> = rows
            .detach()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| ReplicaError::Failed(format!("rows to the host: {e:?}")))?
            .into_iter()
            .map(f64::from)
            .collect();
        let all: Vec<f32> = self
            .gather(&local, "rows")?
            .into_iter()
            .map(|v| v as f32)
            .collect();
        Ok(Tensor::from_data(
            TensorData::new(all, [n * self.ranks(), d]),
            &device,
        ))
    }

    /// Every rank's `local` in rank order, checked for length (under MPI, buffers of different
    /// lengths abort the job inside the collective, with MPI's message, before this check).
    ///
    /// # Errors
    /// [`ReplicaError`] when the communication fails or the lengths differ.
    pub fn gather(&self, local: &[f64], what: &str) -> Result<Vec<f64>, ReplicaError> {
        let all = self.replicas.all_gather_f64(local)?;
        if all.len() != local.len() * self.ranks() {
            return Err(ReplicaError::Mismatch {
                rank: self.rank(),
                ranks: self.ranks(),
                what: what.to_string(),
                mine: local.len(),
                other: all.len() / self.ranks().max(1),
                other_rank: usize::from(self.rank() == 0),
            });
        }
        Ok(all)
    }

    /// Runs `f` (a forward or backward pass) with BatchNorm's statistics exchanged between the
    /// ranks when [`Self::sync_batch_norm`] and there are several ranks; `f()` as it is
    /// otherwise. A failed exchange inside a BatchNorm kernel panics with its message (a
    /// kernel cannot return an error); the MPI implementation ends the process with one line
    /// instead, so as not to leave the other ranks waiting.
    pub fn batch_norm_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        #[cfg(feature = "cpu-kernels")]
        if self.sync_batch_norm && self.ranks() > 1 {
            return ssl_kernels::sync_batch_norm::with_exchange(
                Arc::new(StatisticsOverRanks(self.replicas.clone())),
                f,
            );
        }
        f()
    }
}

/// The BatchNorm kernels' statistics exchange over a group's collectives.
#[cfg(feature = "cpu-kernels")]
struct StatisticsOverRanks(Arc<dyn Replicas>);

#[cfg(feature = "cpu-kernels")]
impl ssl_kernels::sync_batch_norm::StatisticsExchange for StatisticsOverRanks {
    fn all_gather(&self, local: &[f64]) -> Vec<f64> {
        self.0
            .all_gather_f64(local)
            .unwrap_or_else(|e| panic!("SyncBN statistics exchange: {e}"))
    }
    fn ranks(&self) -> usize {
        self.0.ranks()
    }
}

/// The gradients in `grads` of `module`'s parameters, averaged over the ranks: one flat
/// buffer of every gradient (in the module's parameter order, the same on every rank) summed
/// with [`Replicas::sum_f32`], divided by the number of ranks, and split back. The gradient of
/// the global batch's loss when each rank's loss is the mean over its equal shard.
///
/// # Errors
/// [`ReplicaError`] when the communication fails or the ranks' gradients differ in size.
pub fn all_reduce_mean<M: Module>(
    module: &M,
    grads: GradientsParams,
    group: &ReplicaGroup,
) -> Result<GradientsParams, ReplicaError> {
    if group.ranks() == 1 {
        return Ok(grads);
    }
    let mut parts = GradientParts {
        grads: &grads,
        found: Vec::new(),
    };
    module.visit(&mut parts);
    let found = parts.found;
    let flat: Vec<Tensor<1>> = found.iter().map(|g| g.flat.clone()).collect();
    let mut values = if flat.is_empty() {
        Vec::new()
    } else {
        Tensor::cat(flat, 0)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| ReplicaError::Failed(format!("gradients to the host: {e:?}")))?
    };
    // Every rank's length first: a different model must not be summed.
    let lengths = group.gather(&[values.len() as f64], "gradient sizes")?;
    if let Some((other_rank, &other)) = lengths
        .iter()
        .enumerate()
        .find(|(_, l)| **l as usize != values.len())
    {
        return Err(ReplicaError::Mismatch {
            rank: group.rank(),
            ranks: group.ranks(),
            what: "gradients".into(),
            mine: values.len(),
            other: other as usize,
            other_rank,
        });
    }
    group.replicas().sum_f32(&mut values)?;
    let scale = 1.0 / group.ranks() as f32;
    for v in &mut values {
        *v *= scale;
    }
    let mut out = GradientsParams::new();
    let mut start = 0;
    for part in found {
        let n = part.shape.iter().product::<usize>();
        let data = TensorData::new(values[start..start + n].to_vec(), part.shape.clone());
        start += n;
        (part.register)(&mut out, data, &part.device);
    }
    Ok(out)
}

/// Puts a reduced gradient back into a [`GradientsParams`] under its parameter's id.
type Register = Box<dyn FnOnce(&mut GradientsParams, TensorData, &Device)>;

/// One parameter's gradient, flattened, and how to put the reduced one back.
struct GradientPart {
    flat: Tensor<1>,
    shape: Vec<usize>,
    device: Device,
    register: Register,
}

struct GradientParts<'a> {
    grads: &'a GradientsParams,
    found: Vec<GradientPart>,
}

impl ModuleVisitor for GradientParts<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let id: ParamId = param.id;
        if let Some(g) = self.grads.get::<D>(id) {
            let shape = g.dims().to_vec();
            let device = g.device();
            let n = shape.iter().product::<usize>();
            self.found.push(GradientPart {
                flat: g.reshape([n]),
                shape,
                device,
                register: Box::new(move |out, data, device| {
                    out.register::<D>(id, Tensor::<D>::from_data(data, device));
                }),
            });
        }
    }
}

/// A 64-bit checksum (FNV-1a) of the bits of the float tensors of `module`, in the module's
/// order: replicas that are identical bit for bit have the same checksum. `trainable_only`:
/// only the tensors that require gradients (an autodiff module's parameters, not its BatchNorm
/// running statistics, which differ between ranks without SyncBN); else every float tensor.
pub fn parameter_checksum<M: Module>(module: &M, trainable_only: bool) -> u64 {
    struct Bits(u64, bool);
    impl ModuleVisitor for Bits {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            if self.1 && !value.is_require_grad() {
                return;
            }
            let data = value.into_data().convert::<f32>();
            for byte in data.as_bytes() {
                self.0 ^= u64::from(*byte);
                self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
            }
        }
    }
    let mut bits = Bits(0xCBF2_9CE4_8422_2325, trainable_only);
    module.visit(&mut bits);
    bits.0
}

/// Ranks as threads of one process ([`ThreadReplicas::group`] makes them): the collectives of
/// [`Replicas`] through shared memory and a barrier, for tests of data parallelism without MPI.
pub struct ThreadReplicas {
    rank: usize,
    shared: Arc<ThreadShared>,
}

struct ThreadShared {
    ranks: usize,
    slots: Mutex<Vec<Vec<f64>>>,
    floats: Mutex<Vec<Vec<f32>>>,
    barrier: Barrier,
}

impl ThreadReplicas {
    /// `ranks` handles, one for each thread.
    pub fn group(ranks: usize) -> Vec<ThreadReplicas> {
        let shared = Arc::new(ThreadShared {
            ranks,
            slots: Mutex::new(vec![Vec::new(); ranks]),
            floats: Mutex::new(vec![Vec::new(); ranks]),
            barrier: Barrier::new(ranks),
        });
        (0..ranks)
            .map(|rank| ThreadReplicas {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }
}

fn poisoned(what: &str) -> ReplicaError {
    ReplicaError::Failed(format!("{what}: another rank's thread panicked"))
}

impl Replicas for ThreadReplicas {
    fn rank(&self) -> usize {
        self.rank
    }
    fn ranks(&self) -> usize {
        self.shared.ranks
    }
    fn sum_f32(&self, values: &mut [f32]) -> Result<(), ReplicaError> {
        self.shared.floats.lock().map_err(|_| poisoned("sum"))?[self.rank] = values.to_vec();
        self.shared.barrier.wait();
        {
            let all = self.shared.floats.lock().map_err(|_| poisoned("sum"))?;
            if all.iter().any(|p| p.len() != values.len()) {
                return Err(ReplicaError::Failed(
                    "sum: buffers of different lengths".into(),
                ));
            }
            // Rank order on every rank: the same bits everywhere.
            for (i, v) in values.iter_mut().enumerate() {
                *v = all.iter().fold(0.0f32, |s, p| s + p[i]);
            }
        }
        self.shared.barrier.wait();
        Ok(())
    }
    fn all_gather_f64(&self, local: &[f64]) -> Result<Vec<f64>, ReplicaError> {
        self.shared.slots.lock().map_err(|_| poisoned("gather"))?[self.rank] = local.to_vec();
        self.shared.barrier.wait();
        let all = self
            .shared
            .slots
            .lock()
            .map_err(|_| poisoned("gather"))?
            .concat();
        self.shared.barrier.wait();
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_collectives_sum_and_gather_in_rank_order() {
        let groups: Vec<ReplicaGroup> = ThreadReplicas::group(3)
            .into_iter()
            .map(|r| ReplicaGroup::new(Arc::new(r), true))
            .collect();
        // Per rank: the sum, the gather, any, max and mean.
        type Answers = (Vec<f32>, Vec<f64>, bool, u32, Vec<f64>);
        let out: Vec<Answers> = std::thread::scope(|s| {
            let joins: Vec<_> = groups
                .iter()
                .map(|g| {
                    s.spawn(move || {
                        let r = g.rank();
                        let mut v = vec![r as f32, 1.0];
                        g.replicas().sum_f32(&mut v).unwrap();
                        let all = g.gather(&[r as f64 * 10.0], "x").unwrap();
                        let any = g.any(r == 2).unwrap();
                        let max = g.max_u32(r as u32 * 5).unwrap();
                        let mut mean = vec![r as f64, 3.0];
                        g.mean_f64(&mut mean).unwrap();
                        (v, all, any, max, mean)
                    })
                })
                .collect();
            joins.into_iter().map(|j| j.join().unwrap()).collect()
        });
        for (v, all, any, max, mean) in out {
            assert_eq!(v, vec![3.0, 3.0]);
            assert_eq!(all, vec![0.0, 10.0, 20.0]);
            assert!(any);
            assert_eq!(max, 10);
            assert_eq!(mean, vec![1.0, 3.0]);
        }
    }

    #[test]
    fn a_single_process_is_its_own_group() {
        let g = ReplicaGroup::single();
        assert_eq!((g.rank(), g.ranks(), g.writes()), (0, 1, true));
        let mut m = vec![2.5];
        g.mean_f64(&mut m).unwrap();
        assert_eq!(m, vec![2.5]);
        assert!(!g.any(false).unwrap());
    }
}
