//! A saved checkpoint as a pre-trained encoder: `load_pretrained` rebuilds exactly the encoder
//! that training evaluated, and fine-tuning learns without touching it.

mod toy;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use ssl_framework::checkpoint::{find_checkpoint, load_pretrained};
use ssl_framework::eval::{EvalOptions, evaluate_pretrained};
use ssl_framework::train::{RunOptions, train_and_evaluate};
use std::collections::BTreeMap;
use toy::Toy;

#[derive(Default)]
struct Values(BTreeMap<String, Vec<f32>>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let v = param
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap();
        self.0.insert(format!("{}", param.id), v);
    }
}

fn values<M: Module>(m: &M) -> BTreeMap<String, Vec<f32>> {
    let mut v = Values::default();
    m.valid().visit(&mut v);
    v.0
}

#[test]
fn eval_of_a_checkpoint_reproduces_the_training_probes_and_fine_tunes_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let opts = RunOptions::new(dir.path(), dir.path(), Device::flex());
    let report = train_and_evaluate(Toy, toy::config(&[]), &opts).unwrap();

    let ckpt = find_checkpoint(dir.path()).unwrap();
    let overrides: Vec<String> = [
        "eval.finetune_epochs=30",
        "eval.finetune_lr=0.01",
        "eval.finetune_batch_size=16",
        "eval.finetune_fractions=[1.0, 0.1]",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let p = load_pretrained(Toy, &ckpt, &overrides, dir.path(), &Device::flex()).unwrap();
    assert_eq!(p.state.modality, "toy");
    assert_eq!(p.state.step, p.state.total_steps);
    let before = values(&p.encoder);
    let results = evaluate_pretrained(
        &p,
        EvalOptions {
            finetune: true,
            verbose: false,
        },
    )
    .unwrap();
    // The label-free metrics too: the same features as at the end of training.
    assert_eq!(
        serde_json::to_value(&results.representation).unwrap(),
        report.results["representation"]
    );
    let results = results.probes;

    // The loaded encoder is the one training evaluated: same seeds, same probe results, bit for
    // bit.
    assert_eq!(&results[..report.probes.len()], &report.probes[..]);
    // Fine-tuning worked on copies.
    assert_eq!(
        values(&p.encoder),
        before,
        "fine-tuning changed the loaded encoder"
    );
    let names: Vec<&str> = results.iter().map(|r| r.probe.as_str()).collect();
    assert_eq!(names, ["knn", "linear", "finetune-100%", "finetune-10%"]);
    let full = &results[2];
    // Three well-separated clusters: fine-tuning on all 96 labels gets nearly all 48 right,
    // from the trained and from the random-init encoder.
    assert!(full.trained_top1 > 0.9, "{full:?}");
    assert!(full.random_init_top1.unwrap() > 0.9, "{full:?}");
    for r in &results {
        assert!((0.0..=1.0).contains(&r.trained_top1), "{r:?}");
    }

    // An unknown label set is named.
    let bad = load_pretrained(
        Toy,
        &ckpt,
        &["eval.finetune_labels=[\"colour\"]".to_string()],
        dir.path(),
        &Device::flex(),
    )
    .unwrap();
    let err = evaluate_pretrained(
        &bad,
        EvalOptions {
            finetune: true,
            verbose: false,
        },
    )
    .err()
    .expect("unknown label set");
    assert!(err.to_string().contains("colour"), "{err}");
    assert!(err.to_string().contains("cluster"), "{err}");
}

#[test]
fn fine_tuning_on_shuffled_labels_does_not_generalize() {
    // The fine-tuning score is measured on the held-out split: labels permuted at random on the
    // training side leave nothing to learn.
    use ssl_framework::eval::{FinetuneConfig, finetune_top1};
    use ssl_framework::modality::Modality;
    use std::sync::Arc;
    let m = Arc::new(Toy);
    let cfg = toy::config(&[]);
    let data = m.load(&cfg.data, std::path::Path::new(".")).unwrap();
    let ad = Device::flex().autodiff();
    let encoder = m.init_encoder(&cfg.encoder, &cfg.data, &ad).unwrap();
    let train = Arc::new(data.train.items);
    let test = Arc::new(data.test.items);
    let labels = &data.train.label_sets[0].labels;
    let test_labels = &data.test.label_sets[0].labels;
    let rows: Vec<usize> = (0..train.len()).collect();
    let test_rows: Vec<usize> = (0..test.len()).collect();
    let ft = FinetuneConfig {
        epochs: 30,
        min_steps: 0,
        lr: 0.01,
        weight_decay: 0.0,
        batch_size: 16,
        seed: 1,
        workers: 2,
    };
    let ops = Arc::new(Vec::new());
    let run = |labels: &[usize]| {
        finetune_top1(
            &m,
            encoder.valid().train(),
            3,
            &train,
            labels,
            &rows,
            &ops,
            &test,
            test_labels,
            &test_rows,
            &ops,
            &ft,
            &Device::flex(),
        )
        .unwrap()
    };
    let real = run(labels);
    // Item i is in cluster i % 3; this labelling depends on (i / 3) % 3 instead.
    let shuffled: Vec<usize> = (0..labels.len()).map(|i| (i / 3) % 3).collect();
    let fake = run(&shuffled);
    assert!(real > 0.9, "{real}");
    assert!(fake < 0.6, "{fake}");
}
