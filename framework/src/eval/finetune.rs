//! Fine-tuning evaluation: the encoder and a linear head trained end to end on labels, on all
//! of them or on a class-balanced fraction (the paper's semi-supervised protocol, Section 4.2
//! and Table 2: 1% and 10% of the labels), then scored on the held-out split. Run beside a
//! random-init encoder of the same architecture, that is, supervised training from scratch on
//! the same labels.

use crate::augmentation::{AugmentContext, Augmentation};
use crate::data::loader::{
    OrderedParallel, StreamSkips, WorkerError, eval_batches, mix64, read_or_substitute, sample_seed,
};
use crate::encoder::Encoder;
use crate::modality::Modality;
use crate::optim::warmup_cosine_lr;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use std::sync::Arc;

/// An encoder with a linear classification head: `input -> [batch, classes]` logits.
#[derive(Module, Debug)]
pub struct Classifier<E: Encoder> {
    /// The encoder f (`[batch, dim]` features).
    pub encoder: E,
    /// `[dim] -> [classes]`.
    pub head: Linear,
}

impl<E: Encoder> Classifier<E> {
    /// A zero-initialized head on `encoder` (on the encoder's device): the first logits are all
    /// equal, so the head starts from the uniform prediction whatever the feature scale.
    pub fn new(encoder: E, classes: usize, device: &Device) -> Self {
        let head = LinearConfig::new(encoder.dim(), classes)
            .with_initializer(burn::nn::Initializer::Zeros)
            .init(device);
        Self { encoder, head }
    }

    /// Logits `[batch, classes]`.
    pub fn forward(&self, input: E::Input) -> Tensor<2> {
        self.head.forward(self.encoder.forward(input))
    }
}

/// Training settings of a fine-tuning run.
#[derive(Debug, Clone, Copy)]
pub struct FinetuneConfig {
    /// Passes over the labelled subset.
    pub epochs: usize,
    /// At least this many optimizer steps: small subsets (1% of the labels) get more passes.
    pub min_steps: usize,
    /// Peak learning rate (AdamW, cosine decay to 0, no warmup).
    pub lr: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Mini-batch size (capped at the subset's size).
    pub batch_size: usize,
    /// Seed of the head, the batch order and the augmentations.
    pub seed: u64,
    /// Data worker threads.
    pub workers: usize,
}

/// A class-balanced, seeded subset of `rows` (indices into `labels`): `fraction` of every
/// class's rows, rounded, at least one per class present. `fraction >= 1` keeps every row.
/// The result is sorted.
pub fn balanced_fraction(labels: &[usize], rows: &[usize], fraction: f64, seed: u64) -> Vec<usize> {
    if fraction >= 1.0 {
        return rows.to_vec();
    }
    let mut by_class: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for &r in rows {
        by_class.entry(labels[r]).or_default().push(r);
    }
    let mut out = Vec::new();
    for (class, mut members) in by_class {
        let keep = ((members.len() as f64 * fraction).round() as usize).clamp(1, members.len());
        let mut rng = StdRng::seed_from_u64(mix64(seed ^ mix64(class as u64 + 1)));
        members.shuffle(&mut rng);
        out.extend_from_slice(&members[..keep]);
    }
    out.sort_unstable();
    out
}

/// Fine-tunes `encoder` (trainable, on the autodiff twin of `device`) with a new linear head
/// on the training items `rows` (their labels in `labels`, indexed like `train`), each sample
/// through the seeded `ops`, and returns the top-1 accuracy in `[0, 1]` on the labelled test
/// items `test_rows` (through the deterministic `eval_ops`).
///
/// # Errors
/// [`WorkerError`] when a data worker fails.
#[allow(clippy::too_many_arguments)]
pub fn finetune_top1<M: Modality>(
    modality: &Arc<M>,
    encoder: M::Encoder,
    classes: usize,
    train: &Arc<Vec<M::Item>>,
    labels: &[usize],
    rows: &[usize],
    ops: &Arc<Vec<M::Op>>,
    test: &Arc<Vec<M::Item>>,
    test_labels: &[usize],
    test_rows: &[usize],
    eval_ops: &Arc<Vec<M::Op>>,
    cfg: &FinetuneConfig,
    device: &Device,
) -> Result<f64, WorkerError> {
    if rows.is_empty() || test_rows.is_empty() || classes < 2 {
        return Ok(0.0);
    }
    let ad = device.clone().autodiff();
    ad.seed(cfg.seed);
    let mut model = Classifier::new(encoder, classes, &ad);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay as f32)
        .init();
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    // BatchNorm needs two samples per batch: a last batch of one joins the one before.
    let batch = cfg.batch_size.clamp(2, rows.len().max(2));
    let batches_per_epoch = (rows.len() / batch).max(1);
    let epochs = passes(cfg.epochs, cfg.min_steps, batches_per_epoch);
    let total = epochs * batches_per_epoch;
    let mut step = 0usize;
    for epoch in 0..epochs {
        let batches = Arc::new(epoch_batches(
            rows,
            cfg.seed,
            epoch,
            batch,
            batches_per_epoch,
        ));
        let (m, items, ops2, seed) = (modality.clone(), train.clone(), ops.clone(), cfg.seed);
        let shared = batches.clone();
        let skips = Arc::new(StreamSkips::default());
        let loader =
            OrderedParallel::new_fallible(0..batches_per_epoch, cfg.workers, 4, move |b| {
                let ids = &shared[b];
                // The rows actually read: an unreadable row is replaced by the next readable
                // one of the batch, and that row's label goes with its image.
                let mut used = Vec::with_capacity(ids.len());
                let mut samples = Vec::with_capacity(ids.len());
                for i in 0..ids.len() {
                    let mut rng = StdRng::seed_from_u64(sample_seed(seed, epoch, b * batch + i));
                    let (mut sample, row) =
                        read_or_substitute(&items, ids, i, &skips, |item| m.try_samples(item, 1))?;
                    let sample = sample.pop().ok_or("no sample")?;
                    samples.push(ops2.apply(sample, &mut AugmentContext::new(&mut rng)));
                    used.push(row);
                }
                Ok((m.collate(samples), used))
            });
        for loaded in loader {
            let (collated, ids) = loaded?;
            let ids = &ids;
            let y = Tensor::<1, Int>::from_data(
                TensorData::new(
                    ids.iter().map(|&r| labels[r] as i64).collect::<Vec<_>>(),
                    [ids.len()],
                ),
                &ad,
            );
            let logits = model.forward(modality.to_input(collated, &ad));
            let loss = loss_fn.forward(logits, y);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            let lr = warmup_cosine_lr(cfg.lr, step, 0, total);
            model = optim.step(lr, model, grads);
            step += 1;
        }
    }
    let model = model.valid();
    let mut predictions = Vec::with_capacity(test.len());
    for b in eval_batches(
        modality.clone(),
        test.clone(),
        eval_ops.clone(),
        100,
        cfg.workers,
    ) {
        let logits = model.forward(modality.to_input(b?, device));
        let pred = logits
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("i64 predictions");
        predictions.extend(pred);
    }
    let correct = test_rows
        .iter()
        .filter(|&&r| predictions[r] as usize == test_labels[r])
        .count();
    Ok(correct as f64 / test_rows.len() as f64)
}

/// Passes over a subset of `batches` batches: `epochs`, or more to reach `min_steps` steps.
fn passes(epochs: usize, min_steps: usize, batches: usize) -> usize {
    epochs.max(min_steps.div_ceil(batches.max(1)))
}

/// The rows of each of the `batches` batches of one epoch: a seeded shuffle of `rows` cut into
/// batches of `batch`, the last one taking the remainder.
fn epoch_batches(
    rows: &[usize],
    seed: u64,
    epoch: usize,
    batch: usize,
    batches: usize,
) -> Vec<Vec<usize>> {
    let mut order = rows.to_vec();
    order.shuffle(&mut StdRng::seed_from_u64(sample_seed(
        seed,
        epoch,
        usize::MAX,
    )));
    (0..batches)
        .map(|b| {
            let end = if b + 1 == batches {
                order.len()
            } else {
                (b + 1) * batch
            };
            order[b * batch..end].to_vec()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_fraction_keeps_every_class_and_the_share() {
        // 3 classes: 100, 50 and 3 rows.
        let labels: Vec<usize> = (0..153)
            .map(|i| {
                if i < 100 {
                    0
                } else if i < 150 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let rows: Vec<usize> = (0..153).collect();
        let sub = balanced_fraction(&labels, &rows, 0.1, 7);
        let count = |c: usize| sub.iter().filter(|&&r| labels[r] == c).count();
        assert_eq!((count(0), count(1), count(2)), (10, 5, 1));
        assert!(sub.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        assert_eq!(sub, balanced_fraction(&labels, &rows, 0.1, 7), "seeded");
        assert_ne!(
            sub,
            balanced_fraction(&labels, &rows, 0.1, 8),
            "seed matters"
        );
        assert_eq!(balanced_fraction(&labels, &rows, 1.0, 7), rows);
        // Only the given rows are drawn from.
        let odd: Vec<usize> = rows.iter().copied().filter(|r| r % 2 == 1).collect();
        assert!(
            balanced_fraction(&labels, &odd, 0.5, 1)
                .iter()
                .all(|r| r % 2 == 1)
        );
    }

    #[test]
    fn small_subsets_get_enough_steps() {
        assert_eq!(passes(10, 100, 42), 10, "420 steps already");
        assert_eq!(passes(10, 100, 4), 25, "100 steps");
        assert_eq!(passes(10, 100, 1), 100);
        assert_eq!(passes(3, 0, 5), 3);
    }

    #[test]
    fn batches_cover_the_rows_once_per_epoch() {
        let rows: Vec<usize> = (10..47).collect();
        let b = epoch_batches(&rows, 3, 2, 8, 37 / 8);
        assert_eq!(b.len(), 4);
        assert_eq!(b[3].len(), 37 - 24, "the last batch takes the remainder");
        let mut all: Vec<usize> = b.concat();
        all.sort_unstable();
        assert_eq!(all, rows);
        assert_ne!(b, epoch_batches(&rows, 3, 3, 8, 4), "reshuffled per epoch");
    }
}
