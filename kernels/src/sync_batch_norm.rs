//! Cross-replica BatchNorm (SyncBN): under data parallelism the fused BatchNorm kernels of
//! [`mod@crate::batch_norm`] normalize with the statistics of the global batch, not of the
//! rank's shard, as the BYOL paper's cross-replica BatchNorm (Section 3.3, "batch statistics
//! ... synchronized across devices"; deepmind's `cross_replica_axis`).
//!
//! Forward, each rank's per-channel moments (count, mean, sum of squared deviations) are
//! exchanged and merged in rank order, so every rank holds the same global mean and variance
//! bit for bit. Backward, the two per-channel sums that the input gradient needs, `sum(dy)`
//! and `sum(dy x̂)`, are summed over the ranks the same way, with the global count: each rank's
//! input gradient is then that of the global-batch BatchNorm (times the number of ranks, which
//! the mean of the parameter gradients over the ranks divides out). The gradients of gamma and
//! beta stay the rank's own sums; the gradient all-reduce averages them.
//!
//! The exchange is switched on for the current thread only, by [`with_exchange`], around the
//! BYOL step's forward and backward passes: BatchNorm elsewhere (the kNN monitor, evaluation,
//! another thread) keeps its local statistics. burn's autodiff runs the backward pass on the
//! thread that calls `backward()`, so the scope covers it.

use std::cell::RefCell;
use std::sync::Arc;

/// How the ranks exchange BatchNorm statistics: an all-gather of a few `f64` per channel.
pub trait StatisticsExchange: Send + Sync {
    /// Every rank's `local` (the same length on every rank), concatenated in rank order:
    /// `[ranks * local.len()]`. Every rank must call it, in the same order of BatchNorm layers.
    ///
    /// # Panics
    /// Implementations panic (or abort the process) when the exchange fails: a kernel cannot
    /// return an error, and a rank that went on alone would hang the others.
    fn all_gather(&self, local: &[f64]) -> Vec<f64>;

    /// The number of ranks taking part.
    fn ranks(&self) -> usize;
}

thread_local! {
    static EXCHANGE: RefCell<Option<Arc<dyn StatisticsExchange>>> = const { RefCell::new(None) };
}

/// Runs `f` with BatchNorm's training-mode statistics exchanged through `exchange` on this
/// thread (SyncBN); the previous setting is restored afterwards, also when `f` panics.
pub fn with_exchange<R>(exchange: Arc<dyn StatisticsExchange>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<dyn StatisticsExchange>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            EXCHANGE.with(|e| *e.borrow_mut() = previous);
        }
    }
    let previous = EXCHANGE.with(|e| e.borrow_mut().replace(exchange));
    let _restore = Restore(previous);
    f()
}

/// The exchange in force on this thread, if any.
pub(crate) fn active() -> Option<Arc<dyn StatisticsExchange>> {
    EXCHANGE.with(|e| e.borrow().clone())
}

/// The global batch's per-channel mean and biased variance from this rank's (`count` values per
/// channel, `mean` and biased `variance` `[channels]`): each rank's moments merged in rank
/// order (Chan et al.'s parallel update, in f64), so every rank gets the same values.
pub(crate) fn global_moments(
    exchange: &dyn StatisticsExchange,
    count: usize,
    mean: &[f32],
    variance: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let c = mean.len();
    let mut local = Vec::with_capacity(1 + 2 * c);
    local.push(count as f64);
    for ch in 0..c {
        local.push(mean[ch] as f64);
        local.push(variance[ch] as f64 * count as f64);
    }
    let all = exchange.all_gather(&local);
    assert_eq!(
        all.len(),
        exchange.ranks() * local.len(),
        "SyncBN: the ranks disagree on the number of channels ({c} here)"
    );
    let mut merged: Vec<(f64, f64, f64)> = vec![(0.0, 0.0, 0.0); c];
    for part in all.chunks(local.len()) {
        let n_b = part[0];
        for (ch, m) in merged.iter_mut().enumerate() {
            let (n_a, mean_a, m2_a) = *m;
            let (mean_b, m2_b) = (part[1 + 2 * ch], part[2 + 2 * ch]);
            let n = n_a + n_b;
            if n == 0.0 {
                continue;
            }
            let delta = mean_b - mean_a;
            *m = (
                n,
                mean_a + delta * n_b / n,
                m2_a + m2_b + delta * delta * n_a * n_b / n,
            );
        }
    }
    merged
        .into_iter()
        .map(|(n, mean, m2)| (mean as f32, if n > 0.0 { (m2 / n) as f32 } else { 0.0 }))
        .unzip()
}

/// The per-channel gradient sums `[sum(dy), sum(dy x̂)]` of the global batch and its value
/// count, from this rank's (`count` values per channel): summed over the ranks in rank order.
pub(crate) fn global_gradient_sums(
    exchange: &dyn StatisticsExchange,
    count: usize,
    sums: &[[f64; 2]],
) -> (Vec<[f64; 2]>, f64) {
    let mut local = Vec::with_capacity(1 + 2 * sums.len());
    local.push(count as f64);
    local.extend(sums.iter().flatten());
    let all = exchange.all_gather(&local);
    assert_eq!(
        all.len(),
        exchange.ranks() * local.len(),
        "SyncBN backward: the ranks disagree on the number of channels ({} here)",
        sums.len()
    );
    let mut total = vec![[0.0f64; 2]; sums.len()];
    let mut m = 0.0;
    for part in all.chunks(local.len()) {
        m += part[0];
        for (ch, t) in total.iter_mut().enumerate() {
            t[0] += part[1 + 2 * ch];
            t[1] += part[2 + 2 * ch];
        }
    }
    (total, m)
}

/// An in-process exchange between threads, each thread one "rank": for tests of SyncBN and
/// of data parallelism without MPI.
pub mod local {
    use super::StatisticsExchange;
    use std::sync::{Arc, Barrier, Mutex};

    /// The shared part: one slot per rank and a barrier.
    struct Shared {
        slots: Mutex<Vec<Vec<f64>>>,
        barrier: Barrier,
        ranks: usize,
    }

    /// One rank's handle of an in-process exchange ([`ranks`] makes them).
    pub struct ThreadExchange {
        rank: usize,
        shared: Arc<Shared>,
    }

    /// `n` handles, one per rank, to be moved into `n` threads.
    pub fn ranks(n: usize) -> Vec<ThreadExchange> {
        let shared = Arc::new(Shared {
            slots: Mutex::new(vec![Vec::new(); n]),
            barrier: Barrier::new(n),
            ranks: n,
        });
        (0..n)
            .map(|rank| ThreadExchange {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    impl ThreadExchange {
        /// This handle's rank.
        pub fn rank(&self) -> usize {
            self.rank
        }
    }

    impl StatisticsExchange for ThreadExchange {
        fn all_gather(&self, local: &[f64]) -> Vec<f64> {
            self.shared.slots.lock().expect("exchange slots")[self.rank] = local.to_vec();
            self.shared.barrier.wait();
            let all = self.shared.slots.lock().expect("exchange slots").concat();
            // Nobody writes the next round before everyone has read this one.
            self.shared.barrier.wait();
            all
        }

        fn ranks(&self) -> usize {
            self.shared.ranks
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-rank exchange that returns its input: the global statistics are the local ones.
    struct Alone;
    impl StatisticsExchange for Alone {
        fn all_gather(&self, local: &[f64]) -> Vec<f64> {
            local.to_vec()
        }
        fn ranks(&self) -> usize {
            1
        }
    }

    #[test]
    fn merged_moments_are_those_of_the_whole() {
        // Two shards of a channel, exchanged between two threads, against the whole's moments.
        let values: Vec<f32> = (0..40)
            .map(|i| ((i * 37) % 11) as f32 * 0.7 + 3.0)
            .collect();
        let whole = |v: &[f32]| {
            let m = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|&x| (x as f64 - m).powi(2)).sum::<f64>() / v.len() as f64;
            (m as f32, var as f32)
        };
        let (mean, var) = whole(&values);
        let handles = local::ranks(2);
        let results: Vec<(Vec<f32>, Vec<f32>)> = std::thread::scope(|s| {
            let joins: Vec<_> = handles
                .iter()
                .map(|h| {
                    let shard = &values[h.rank() * 16..if h.rank() == 0 { 16 } else { 40 }];
                    let (m, v) = whole(shard);
                    s.spawn(move || global_moments(h, shard.len(), &[m], &[v]))
                })
                .collect();
            joins.into_iter().map(|j| j.join().unwrap()).collect()
        });
        for (m, v) in &results {
            assert!((m[0] - mean).abs() < 1e-5, "{} vs {mean}", m[0]);
            assert!((v[0] - var).abs() < 1e-4, "{} vs {var}", v[0]);
        }
        // The same bits on both ranks.
        assert_eq!(results[0], results[1]);
    }

    #[test]
    fn gradient_sums_add_over_ranks_with_the_global_count() {
        let handles = local::ranks(3);
        let results: Vec<(Vec<[f64; 2]>, f64)> = std::thread::scope(|s| {
            let joins: Vec<_> = handles
                .iter()
                .map(|h| {
                    let r = h.rank() as f64;
                    s.spawn(move || global_gradient_sums(h, 10, &[[r, 2.0 * r], [1.0, -r]]))
                })
                .collect();
            joins.into_iter().map(|j| j.join().unwrap()).collect()
        });
        for (sums, m) in &results {
            assert_eq!(*m, 30.0);
            assert_eq!(sums, &vec![[3.0, 6.0], [3.0, -3.0]]);
        }
    }

    #[test]
    fn the_exchange_is_scoped_to_the_thread_and_restored() {
        assert!(active().is_none());
        with_exchange(Arc::new(Alone), || {
            assert!(active().is_some());
            std::thread::spawn(|| assert!(active().is_none()))
                .join()
                .unwrap();
        });
        assert!(active().is_none());
        let one = global_moments(&Alone, 4, &[2.0], &[0.5]);
        assert_eq!(one, (vec![2.0], vec![0.5]));
    }
}
