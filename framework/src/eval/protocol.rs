//! The evaluation protocol: an encoder's frozen features scored by the kNN monitor and the
//! linear probe on every label set, each beside a random-init encoder of the same architecture
//! (docs/design.md), and, for a checkpoint, fine-tuning on fractions of the labels (the paper's
//! semi-supervised protocol, Table 2). Nothing here changes the encoders it is given.

use super::representation::{RepresentationReport, feature_metrics, sample_rows};
use super::{
    FinetuneConfig, ProbeConfig, ProbeResult, balanced_fraction, extract_features_of_rows,
    extract_readable_features, finetune_top1, knn_top1, linear_probe_top1,
};
use crate::checkpoint::{Pretrained, random_init_encoder};
use crate::data::EvalData;
use crate::data::loader::resolve_workers;
use crate::error::TrainError;
use crate::modality::Modality;
use crate::search_space::clone_ops;
use burn::module::Module;
use burn::tensor::Device;
use std::sync::Arc;

/// What [`evaluate_encoder`] found.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// kNN and linear probe for every label set of the data (empty when it has none).
    pub probes: Vec<ProbeResult>,
    /// The label-free metrics of the features, when the data has at least 2 samples.
    pub representation: Option<RepresentationReport>,
}

/// Evaluates `trained` (and `random_init`, when given): kNN and a linear probe for every label
/// set of `data` (fitted on its training split, scored on its held-out split), and the
/// label-free metrics of the features ([`RepresentationReport`]) on up to `eval.rank_samples`
/// held-out samples (training samples when there is no held-out split). Both encoders must be
/// validation copies on the plain `device`; nothing here changes them.
///
/// # Errors
/// [`TrainError::Worker`] when feature extraction fails.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_encoder<M: Modality>(
    modality: &Arc<M>,
    eval: &crate::config::EvalConfig,
    seed: u64,
    trained: &M::Encoder,
    random_init: Option<&M::Encoder>,
    data: &EvalData<M::Item>,
    eval_ops: &Arc<Vec<M::Op>>,
    workers: usize,
    device: &Device,
) -> Result<Evaluation, TrainError> {
    let probing = !data.train_labels.is_empty() && !data.test.is_empty();
    let (rank_items, split) = if data.test.len() >= 2 {
        (&data.test, "held-out")
    } else {
        (&data.train, "train")
    };
    let rank_rows = sample_rows(rank_items.len(), eval.rank_samples, seed);
    let representation =
        |f: &crate::eval::Features| (f.len() >= 2).then(|| feature_metrics(f, device));
    if !probing {
        let rows = Arc::new(rank_rows);
        let metrics = |enc: &M::Encoder| -> Result<_, TrainError> {
            let f = extract_features_of_rows(
                modality,
                enc,
                rank_items.clone(),
                rows.clone(),
                eval_ops.clone(),
                eval.batch_size,
                workers,
                device,
            )?;
            Ok(representation(&f))
        };
        let trained_m = metrics(trained)?;
        let random_m = random_init.map(metrics).transpose()?.flatten();
        return Ok(Evaluation {
            probes: Vec::new(),
            representation: trained_m.map(|t| RepresentationReport {
                split: split.into(),
                samples: rows.len(),
                trained: t,
                random_init: random_m,
            }),
        });
    }
    // Records that broke after they were indexed: their rows are left out of the probes.
    let unreadable = std::cell::RefCell::new((Vec::new(), Vec::new()));
    let features = |enc: &M::Encoder| -> Result<_, TrainError> {
        let of = |items: &Arc<Vec<M::Item>>| {
            extract_readable_features(
                modality,
                enc,
                items.clone(),
                Arc::new((0..items.len()).collect()),
                eval_ops.clone(),
                eval.batch_size,
                workers,
                device,
            )
        };
        let (tr, tr_bad) = of(&data.train)?;
        let (te, te_bad) = of(&data.test)?;
        *unreadable.borrow_mut() = (tr_bad, te_bad);
        Ok((tr, te))
    };
    let trained_f = features(trained)?;
    let random_f = random_init.map(features).transpose()?;
    let (train_bad, test_bad) = unreadable.into_inner();
    if !train_bad.is_empty() || !test_bad.is_empty() {
        eprintln!(
            "warning: {} training and {} held-out samples could not be read (named above): left out of the probes",
            train_bad.len(),
            test_bad.len()
        );
    }
    let probe_cfg = ProbeConfig {
        epochs: eval.probe_epochs,
        lr: eval.probe_lr,
        weight_decay: eval.probe_weight_decay,
        batch_size: eval.probe_batch_size,
        seed,
    };
    let mut out = Vec::new();
    for (train_ls, test_ls) in data.train_labels.iter().zip(&data.test_labels) {
        let classes = train_ls.classes.len().max(test_ls.classes.len());
        // Samples outside this labelling (`LabelSet::UNLABELED`) are left out of its probes.
        let readable = |rows: Vec<usize>, bad: &[usize]| -> Vec<usize> {
            rows.into_iter()
                .filter(|r| bad.binary_search(r).is_err())
                .collect()
        };
        let (train_rows, test_rows) = (
            readable(train_ls.labelled(), &train_bad),
            readable(test_ls.labelled(), &test_bad),
        );
        let pick = |labels: &[usize], rows: &[usize]| -> Vec<usize> {
            rows.iter().map(|&i| labels[i]).collect()
        };
        let (train_labels, test_labels) = (
            pick(&train_ls.labels, &train_rows),
            pick(&test_ls.labels, &test_rows),
        );
        let select = |(tr, te): &(crate::eval::Features, crate::eval::Features)| {
            (tr.select(&train_rows), te.select(&test_rows))
        };
        let knn = |f: &(crate::eval::Features, crate::eval::Features)| {
            let (tr, te) = select(f);
            knn_top1(
                &tr,
                &train_labels,
                &te,
                &test_labels,
                classes,
                eval.knn_k,
                eval.knn_temperature,
                device,
            )
        };
        let linear = |f: &(crate::eval::Features, crate::eval::Features)| {
            let (tr, te) = select(f);
            linear_probe_top1(
                &tr,
                &train_labels,
                &te,
                &test_labels,
                classes,
                &probe_cfg,
                device,
            )
        };
        out.push(ProbeResult {
            probe: "knn".into(),
            labels: train_ls.name.clone(),
            classes,
            trained_top1: knn(&trained_f),
            random_init_top1: random_f.as_ref().map(knn),
            samples: test_rows.len(),
        });
        out.push(ProbeResult {
            probe: "linear".into(),
            labels: train_ls.name.clone(),
            classes,
            trained_top1: linear(&trained_f),
            random_init_top1: random_f.as_ref().map(linear),
            samples: test_rows.len(),
        });
    }
    // The rows index the split they were drawn from: the held-out one, else the training one.
    let rank_of = |(tr, te): &(crate::eval::Features, crate::eval::Features)| {
        let drawn_from = if split == "held-out" { te } else { tr };
        representation(&drawn_from.select(&rank_rows))
    };
    let report = rank_of(&trained_f).map(|t| RepresentationReport {
        split: split.into(),
        samples: rank_rows.len(),
        trained: t,
        random_init: random_f.as_ref().and_then(rank_of),
    });
    Ok(Evaluation {
        probes: out,
        representation: report,
    })
}

/// What [`evaluate_pretrained`] runs besides kNN and the linear probe.
#[derive(Debug, Clone, Copy)]
pub struct EvalOptions {
    /// Fine-tune on `eval.finetune_fractions` of the labels (each beside random init).
    pub finetune: bool,
    /// Print a line per finished evaluation on stderr.
    pub verbose: bool,
}

/// kNN and linear probe on frozen features, then fine-tuning on every fraction of
/// `eval.finetune_fractions` for the label sets of `eval.finetune_labels`, each for the trained
/// and a random-init encoder. Fine-tuning results are named `finetune-<percent>%`.
///
/// # Errors
/// [`TrainError`]: a failed data worker, or an unknown label set in `eval.finetune_labels`.
pub fn evaluate_pretrained<M: Modality>(
    p: &Pretrained<M>,
    opts: EvalOptions,
) -> Result<Evaluation, TrainError> {
    let cfg = &p.config;
    let workers = resolve_workers(cfg.train.num_workers);
    let data = &p.data;
    let (train, test) = (&data.train, &data.test);
    // Checked before any work: a typo here should not cost the probes' time first.
    let wanted = &cfg.eval.finetune_labels;
    for name in wanted.iter().filter(|_| opts.finetune) {
        if !data.train_labels.iter().any(|ls| &ls.name == name) {
            return Err(crate::config::ConfigError::Value {
                key: "eval.finetune_labels".into(),
                value: format!("{name:?}"),
                expected: format!(
                    "a label set of this dataset ({})",
                    data.train_labels
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
            .into());
        }
    }
    let eval_ops = Arc::new(clone_ops(&cfg.augment.eval));
    let random = random_init_encoder(p)?;
    let evaluation = evaluate_encoder(
        &p.modality,
        &cfg.eval,
        cfg.seed,
        &p.encoder.valid(),
        Some(&random.valid()),
        data,
        &eval_ops,
        workers,
        &p.device,
    )?;
    let representation = evaluation.representation;
    let mut results = evaluation.probes;
    if opts.verbose {
        for r in &results {
            eprintln!("{}", describe(r));
        }
    }
    let done = |probes| Evaluation {
        probes,
        representation: representation.clone(),
    };
    if !opts.finetune {
        return Ok(done(results));
    }
    let ft_ops = Arc::new(if cfg.augment.finetune.is_empty() {
        clone_ops(&cfg.augment.eval)
    } else {
        clone_ops(&cfg.augment.finetune)
    });
    let ft_cfg = FinetuneConfig {
        epochs: cfg.eval.finetune_epochs,
        min_steps: cfg.eval.finetune_min_steps,
        lr: cfg.eval.finetune_lr,
        weight_decay: cfg.eval.finetune_weight_decay,
        batch_size: cfg.eval.finetune_batch_size,
        seed: cfg.seed,
        workers,
    };
    for (train_ls, test_ls) in data.train_labels.iter().zip(&data.test_labels) {
        if !wanted.is_empty() && !wanted.contains(&train_ls.name) {
            continue;
        }
        let classes = train_ls.classes.len().max(test_ls.classes.len());
        let labelled = train_ls.labelled();
        let test_rows = test_ls.labelled();
        for &fraction in &cfg.eval.finetune_fractions {
            let rows = balanced_fraction(&train_ls.labels, &labelled, fraction, cfg.seed);
            let run = |encoder: M::Encoder| {
                finetune_top1(
                    &p.modality,
                    encoder,
                    classes,
                    train,
                    &train_ls.labels,
                    &rows,
                    &ft_ops,
                    test,
                    &test_ls.labels,
                    &test_rows,
                    &eval_ops,
                    &ft_cfg,
                    &p.device,
                )
            };
            // `valid().train()`: an independent trainable copy (its own BatchNorm statistics).
            let trained_top1 = run(p.encoder.valid().train())?;
            let random_top1 = run(random.valid().train())?;
            let r = ProbeResult {
                probe: format!("finetune-{}%", percent(fraction)),
                labels: train_ls.name.clone(),
                classes,
                trained_top1,
                random_init_top1: Some(random_top1),
                samples: test_rows.len(),
            };
            if opts.verbose {
                eprintln!("{} ({} labelled samples)", describe(&r), rows.len());
            }
            results.push(r);
        }
    }
    Ok(done(results))
}

/// `0.1` -> `"10"`, `0.01` -> `"1"`, `0.005` -> `"0.5"`.
fn percent(fraction: f64) -> String {
    let p = fraction * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{}", p.round() as i64)
    } else {
        format!("{p}")
    }
}

fn describe(r: &ProbeResult) -> String {
    format!(
        "{} {}: trained {:.2}%, random init {}",
        r.probe,
        r.labels,
        r.trained_top1 * 100.0,
        r.random_init_top1
            .map(|v| format!("{:.2}%", v * 100.0))
            .unwrap_or_else(|| "-".into())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_names() {
        assert_eq!(percent(1.0), "100");
        assert_eq!(percent(0.1), "10");
        assert_eq!(percent(0.01), "1");
        assert_eq!(percent(0.005), "0.5");
    }
}
