//! The parallel data path: worker threads run a job per batch index (decode, two augmented
//! views, collation) and the trainer receives the batches in order, a bounded number ahead.
//!
//! Determinism: each sample's random stream is seeded from `(seed, epoch, position)` alone
//! ([`sample_seed`]), so the output does not depend on the number of workers or their timing,
//! and a run resumed at batch `b` of an epoch sees exactly the batches it would have seen.

use crate::augmentation::{AugmentContext, Augmentation, SampleSource};
use crate::data::DataError;
use crate::modality::Modality;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// SplitMix64 finalizer: a well-mixed 64-bit hash of `x`.
pub fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The seed of the random stream of the sample at `position` in `epoch`'s order.
pub fn sample_seed(seed: u64, epoch: usize, position: usize) -> u64 {
    mix64(mix64(mix64(seed) ^ epoch as u64) ^ position as u64)
}

/// The seeded order of `n` samples in `epoch` (a permutation of `0..n`).
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(
        mix64(seed ^ 0x5EED_0F0D_E000) ^ epoch as u64,
    ));
    order
}

/// A worker thread died (a bug in an op or reader); the message says which batch.
#[derive(Debug, Clone, thiserror::Error)]
#[error("data worker failed while preparing batch {batch}: {message}")]
pub struct WorkerError {
    /// The batch index being prepared.
    pub batch: usize,
    /// The panic message.
    pub message: String,
}

struct Gate {
    consumed: Mutex<usize>,
    cond: Condvar,
    stop: AtomicBool,
}

/// Runs `job(i)` for every `i` in a range on worker threads and yields the results in order,
/// at most `ahead` results ahead of the consumer.
pub struct OrderedParallel<T> {
    rx: Receiver<(usize, Result<T, String>)>,
    pending: BTreeMap<usize, Result<T, String>>,
    next: usize,
    end: usize,
    gate: Arc<Gate>,
    handles: Vec<JoinHandle<()>>,
}

impl<T: Send + 'static> OrderedParallel<T> {
    /// Starts `workers` threads (at least 1) over `range`.
    pub fn new(
        range: Range<usize>,
        workers: usize,
        ahead: usize,
        job: impl Fn(usize) -> T + Send + Sync + 'static,
    ) -> Self {
        Self::new_fallible(range, workers, ahead, move |i| Ok(job(i)))
    }

    /// As [`new`](Self::new), for a job that can fail: its error, like a panic, ends the
    /// iteration with a [`WorkerError`] for that index.
    pub fn new_fallible(
        range: Range<usize>,
        workers: usize,
        ahead: usize,
        job: impl Fn(usize) -> Result<T, String> + Send + Sync + 'static,
    ) -> Self {
        let workers = workers.max(1);
        let ahead = ahead.max(1);
        let (tx, rx) = sync_channel(ahead + workers);
        let gate = Arc::new(Gate {
            consumed: Mutex::new(range.start),
            cond: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let counter = Arc::new(AtomicUsize::new(range.start));
        let job = Arc::new(job);
        let end = range.end;
        let handles = (0..workers)
            .map(|w| {
                let (tx, gate, counter, job) =
                    (tx.clone(), gate.clone(), counter.clone(), job.clone());
                std::thread::Builder::new()
                    .name(format!("ssl-data-{w}"))
                    .spawn(move || {
                        loop {
                            let i = counter.fetch_add(1, Ordering::SeqCst);
                            if i >= end {
                                return;
                            }
                            {
                                let mut consumed = gate.consumed.lock().expect("gate lock");
                                while i >= *consumed + ahead && !gate.stop.load(Ordering::SeqCst) {
                                    consumed = gate.cond.wait(consumed).expect("gate wait");
                                }
                            }
                            if gate.stop.load(Ordering::SeqCst) {
                                return;
                            }
                            let out =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(i)))
                                    .map_err(|e| {
                                        e.downcast_ref::<String>()
                                            .cloned()
                                            .or_else(|| {
                                                e.downcast_ref::<&str>().map(|s| s.to_string())
                                            })
                                            .unwrap_or_else(|| "panic".into())
                                    })
                                    .and_then(|result| result);
                            let failed = out.is_err();
                            if tx.send((i, out)).is_err() || failed {
                                return;
                            }
                        }
                    })
                    .expect("spawn data worker")
            })
            .collect();
        Self {
            rx,
            pending: BTreeMap::new(),
            next: range.start,
            end,
            gate,
            handles,
        }
    }
}

impl<T> Iterator for OrderedParallel<T> {
    type Item = Result<T, WorkerError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        loop {
            if let Some(out) = self.pending.remove(&self.next) {
                let i = self.next;
                self.next += 1;
                *self.gate.consumed.lock().expect("gate lock") = self.next;
                self.gate.cond.notify_all();
                return Some(out.map_err(|message| WorkerError { batch: i, message }));
            }
            match self.rx.recv() {
                Ok((i, out)) => {
                    self.pending.insert(i, out);
                }
                Err(_) => {
                    let batch = self.next;
                    self.next = self.end;
                    return Some(Err(WorkerError {
                        batch,
                        message: "workers stopped early".into(),
                    }));
                }
            }
        }
    }
}

impl<T> Drop for OrderedParallel<T> {
    fn drop(&mut self) {
        {
            // Set the flag under the lock a waiting worker holds between its check and its wait,
            // so the wake-up cannot be lost.
            let _guard = self.gate.consumed.lock().expect("gate lock");
            self.gate.stop.store(true, Ordering::SeqCst);
        }
        self.gate.cond.notify_all();
        // Workers blocked on a full channel need room; each sends at most one more result
        // before it sees the flag, and the channel holds `ahead + workers`.
        while self.rx.try_recv().is_ok() {}
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// Two augmented views of the same samples, collated.
pub struct TwoViews<B> {
    /// View 1 of each sample.
    pub view1: B,
    /// View 2 of each sample (same samples, same order).
    pub view2: B,
    /// The index in the training items of each sample (after any substitution of an unreadable
    /// record), for its labels.
    pub rows: Vec<usize>,
}

/// The number of worker threads for `requested` (0: as many as the compute threads of rayon's
/// global pool: the machine's cores, or this rank's share of them under data parallelism).
pub fn resolve_workers(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        rayon::current_num_threads().max(1)
    }
}

/// Records that could not be read while streaming (a truncated or corrupt file met in a worker),
/// shared by the workers of a run: each distinct record is counted once, however often it is
/// met, and the first ten are named in a warning.
#[derive(Debug, Default)]
pub struct StreamSkips {
    records: Mutex<std::collections::HashSet<usize>>,
}

impl StreamSkips {
    /// How many warnings name their file; later skips are only counted.
    pub const NAMED: usize = 10;

    /// Counts the unreadable record `index` (of the split) and warns about it the first time
    /// (the first [`Self::NAMED`] records).
    pub fn record(&self, index: usize, error: &DataError) {
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        if !records.insert(index) {
            return;
        }
        let n = records.len();
        if n <= Self::NAMED {
            eprintln!("warning: skipping unreadable sample: {error}");
        } else if n == Self::NAMED + 1 {
            eprintln!("warning: more unreadable samples are skipped; only their count is reported");
        }
    }

    /// The records skipped so far (indices into the split), sorted.
    pub fn indices(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }

    /// The number of distinct records skipped so far.
    pub fn count(&self) -> usize {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// The most consecutive unreadable records a worker passes over before it stops the run.
pub const MAX_CONSECUTIVE_UNREADABLE: usize = 64;

/// `read(record)` of the record `items[order[pos]]`, with the index of the record read; when it
/// cannot be read, counts it in
/// `skips` and reads the record at the next position of `order` instead (wrapping), so a
/// corrupt file costs one substitution, never a stall. The substitute is a pure function of
/// the data and `pos`, so the batches stay deterministic (`read` must draw any randomness
/// afresh on each call).
///
/// # Errors
/// When [`MAX_CONSECUTIVE_UNREADABLE`] records in a row (or all of `order`) cannot be read:
/// a message naming the last file, which stops the run ([`WorkerError`]).
pub fn read_or_substitute<I, T>(
    items: &[I],
    order: &[usize],
    pos: usize,
    skips: &StreamSkips,
    mut read: impl FnMut(&I) -> Result<T, DataError>,
) -> Result<(T, usize), String> {
    let n = order.len();
    let tries = n.min(MAX_CONSECUTIVE_UNREADABLE);
    let mut last = None;
    for k in 0..tries {
        let index = order[(pos + k) % n];
        match read(&items[index]) {
            Ok(value) => return Ok((value, index)),
            Err(e) => {
                skips.record(index, &e);
                last = Some(e);
            }
        }
    }
    Err(format!(
        "{tries} records in a row could not be read; the last: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// One working sample of the record `order[pos]` (see [`read_or_substitute`]).
///
/// # Errors
/// As [`read_or_substitute`].
pub fn sample_or_substitute<M: Modality>(
    modality: &M,
    items: &[M::Item],
    order: &[usize],
    pos: usize,
    skips: &StreamSkips,
) -> Result<M::Sample, String> {
    let (mut samples, _) = read_or_substitute(items, order, pos, skips, |item| {
        modality.try_samples(item, 1)
    })?;
    samples.pop().ok_or_else(|| "no sample".to_string())
}

/// Random training samples for mixing ops, drawn from the dataset with the caller's rng.
pub struct DatasetSamples<'a, M: Modality> {
    /// The modality (for `to_sample`).
    pub modality: &'a M,
    /// The training items.
    pub items: &'a [M::Item],
}

impl<M: Modality> SampleSource<M::Sample> for DatasetSamples<'_, M> {
    fn random_sample(&self, rng: &mut StdRng) -> Option<M::Sample> {
        use rand::RngExt;
        if self.items.is_empty() {
            return None;
        }
        self.modality
            .try_samples(&self.items[rng.random_range(0..self.items.len())], 1)
            .ok()?
            .pop()
    }
}

/// The batches of one pre-training epoch from batch `start` on: the seeded order, full batches
/// only (the last incomplete one is dropped), each sample through view-1 and view-2 pipelines.
/// A record that cannot be read is counted in `skips` and replaced ([`read_or_substitute`]).
#[allow(clippy::too_many_arguments)]
pub fn two_view_epoch<M: Modality>(
    modality: Arc<M>,
    items: Arc<Vec<M::Item>>,
    views: Arc<(Vec<M::Op>, Vec<M::Op>)>,
    seed: u64,
    epoch: usize,
    batch_size: usize,
    start: usize,
    workers: usize,
    ahead: usize,
    skips: Arc<StreamSkips>,
) -> OrderedParallel<TwoViews<M::Batch>> {
    two_view_epoch_shard(
        modality,
        items,
        views,
        (seed, epoch),
        batch_size,
        start,
        (workers, ahead),
        skips,
        BatchShard::WHOLE,
    )
}

/// Which part of every batch a data-parallel rank prepares: rank `rank` of `ranks` takes the
/// `batch_size / ranks` positions from `rank * batch_size / ranks` on. A sample's views depend
/// only on the seed, the epoch and its position in the epoch, so the ranks' parts together are
/// exactly the batch one process would prepare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchShard {
    /// This rank.
    pub rank: usize,
    /// Ranks in all (`batch_size` must be a multiple of it).
    pub ranks: usize,
}

impl BatchShard {
    /// The whole batch (one process).
    pub const WHOLE: BatchShard = BatchShard { rank: 0, ranks: 1 };

    /// The positions within the epoch of this shard of batch `b` of `batch_size` (the global
    /// batch).
    pub fn positions(&self, b: usize, batch_size: usize) -> std::ops::Range<usize> {
        let per_rank = batch_size / self.ranks.max(1);
        let start = b * batch_size + self.rank * per_rank;
        start..start + per_rank
    }
}

/// [`two_view_epoch`] for one rank of a data-parallel run: batches of `batch_size` (the global
/// batch) of which this process prepares its `shard` (`batch_size / shard.ranks` samples).
#[allow(clippy::too_many_arguments)]
pub fn two_view_epoch_shard<M: Modality>(
    modality: Arc<M>,
    items: Arc<Vec<M::Item>>,
    views: Arc<(Vec<M::Op>, Vec<M::Op>)>,
    (seed, epoch): (u64, usize),
    batch_size: usize,
    start: usize,
    (workers, ahead): (usize, usize),
    skips: Arc<StreamSkips>,
    shard: BatchShard,
) -> OrderedParallel<TwoViews<M::Batch>> {
    let order = Arc::new(modality.epoch_order(&items, seed, epoch));
    let batches = items.len() / batch_size;
    OrderedParallel::new_fallible(start.min(batches)..batches, workers, ahead, move |b| {
        let positions = shard.positions(b, batch_size);
        let mut v1 = Vec::with_capacity(positions.len());
        let mut v2 = Vec::with_capacity(positions.len());
        let mut rows = Vec::with_capacity(positions.len());
        let source = DatasetSamples {
            modality: &*modality,
            items: &items[..],
        };
        let pipelines: [&[M::Op]; 2] = [&views.0, &views.1];
        for pos in positions {
            let (mut pair, row) = read_or_substitute(&items, &order, pos, &skips, |item| {
                // A substitute draws from the position's stream afresh.
                let mut rng = StdRng::seed_from_u64(sample_seed(seed, epoch, pos));
                modality.try_views(item, &pipelines, &mut rng, &source)
            })?;
            let (view2, view1) = (pair.pop(), pair.pop());
            v1.push(view1.ok_or("a modality returned no views")?);
            v2.push(view2.ok_or("a modality returned one view")?);
            rows.push(row);
        }
        Ok(TwoViews {
            view1: modality.collate(v1),
            view2: modality.collate(v2),
            rows,
        })
    })
}

/// The batches of a whole split in its stored order through the deterministic `ops` (for
/// feature extraction); the last batch may be smaller.
pub fn eval_batches<M: Modality>(
    modality: Arc<M>,
    items: Arc<Vec<M::Item>>,
    ops: Arc<Vec<M::Op>>,
    batch_size: usize,
    workers: usize,
) -> OrderedParallel<M::Batch> {
    let rows = Arc::new((0..items.len()).collect());
    let skips = Arc::new(StreamSkips::default());
    eval_batches_of_rows(modality, items, rows, ops, batch_size, workers, skips)
}

/// As [`eval_batches`], over the items `rows` (indices into `items`, in that order). A record
/// that cannot be read is recorded in `skips` and replaced by the next readable row
/// ([`read_or_substitute`]): the caller leaves its row out.
pub fn eval_batches_of_rows<M: Modality>(
    modality: Arc<M>,
    items: Arc<Vec<M::Item>>,
    rows: Arc<Vec<usize>>,
    ops: Arc<Vec<M::Op>>,
    batch_size: usize,
    workers: usize,
    skips: Arc<StreamSkips>,
) -> OrderedParallel<M::Batch> {
    let n = rows.len();
    let batches = n.div_ceil(batch_size);
    OrderedParallel::new_fallible(0..batches, workers, 4, move |b| {
        let mut rng = StdRng::seed_from_u64(0);
        let samples = (b * batch_size..((b + 1) * batch_size).min(n))
            .map(|pos| {
                let sample = sample_or_substitute(&*modality, &items, &rows, pos, &skips)?;
                Ok(ops.apply(sample, &mut AugmentContext::new(&mut rng)))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(modality.collate(samples))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_output_regardless_of_workers_and_timing() {
        for workers in [1, 2, 5] {
            let out: Vec<usize> = OrderedParallel::new(3..40, workers, 2, |i| {
                std::thread::sleep(std::time::Duration::from_micros(
                    ((i * 7919) % 13) as u64 * 100,
                ));
                i * i
            })
            .map(|r| r.unwrap())
            .collect();
            assert_eq!(out, (3..40).map(|i| i * i).collect::<Vec<_>>());
        }
    }

    #[test]
    fn early_drop_does_not_hang_and_panics_are_reported() {
        let mut it = OrderedParallel::new(0..1000, 3, 2, |i| i);
        assert_eq!(it.next().unwrap().unwrap(), 0);
        drop(it);
        let results: Vec<_> = OrderedParallel::new(0..10, 2, 2, |i| {
            if i == 4 {
                panic!("bad sample");
            }
            i
        })
        .collect();
        let err = results
            .iter()
            .find_map(|r| r.as_ref().err())
            .expect("an error");
        assert_eq!(err.batch, 4);
        assert!(err.message.contains("bad sample"));
    }

    #[test]
    fn unreadable_records_are_replaced_within_the_order_and_counted_once() {
        let items: Vec<usize> = (0..10).collect();
        let read = |&i: &usize| {
            if i == 9 || i == 4 {
                Err(DataError::Unusable(format!("record {i}")))
            } else {
                Ok(i * 10)
            }
        };
        let skips = StreamSkips::default();
        // The order is a subset of the records (evaluation rows, one batch): the substitute
        // wraps within it, never past its end.
        let order = [7, 8, 9];
        assert_eq!(
            read_or_substitute(&items, &order, 2, &skips, read),
            Ok((70, 7))
        );
        assert_eq!(
            read_or_substitute(&items, &order, 2, &skips, read),
            Ok((70, 7))
        );
        assert_eq!(
            read_or_substitute(&items, &[4, 9, 3], 0, &skips, read),
            Ok((30, 3))
        );
        // Records 9 and 4, each counted once however often met.
        assert_eq!(skips.count(), 2);
        assert_eq!(skips.indices(), vec![4, 9]);
        let message =
            read_or_substitute(&items, &[4, 9], 0, &StreamSkips::default(), read).unwrap_err();
        assert!(
            message.contains("2 records in a row") && message.contains("record 9"),
            "{message}"
        );
    }

    #[test]
    fn orders_and_seeds_are_deterministic_and_distinct() {
        assert_eq!(epoch_order(100, 1, 0), epoch_order(100, 1, 0));
        assert_ne!(epoch_order(100, 1, 0), epoch_order(100, 1, 1));
        assert_ne!(epoch_order(100, 1, 0), epoch_order(100, 2, 0));
        let mut sorted = epoch_order(100, 1, 3);
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_ne!(sample_seed(0, 0, 1), sample_seed(0, 1, 0));
    }
}
