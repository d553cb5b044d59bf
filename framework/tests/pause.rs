//! Pausing a run (what the augmentation search's successive halving does) and continuing it
//! later gives exactly the uninterrupted run. A test binary of its own: burn-flex has one
//! process-wide random stream, so no other test may draw from it while these runs do.

mod toy;

use ssl_framework::burn::tensor::Device;
use ssl_framework::train::metrics::read_metrics;
use ssl_framework::train::{RunOptions, train_and_evaluate};
use toy::Toy;

fn run(
    dir: &std::path::Path,
    pause: Option<usize>,
    random_init: bool,
    resume: bool,
) -> ssl_framework::train::RunReport {
    let mut opts = RunOptions::new(dir, dir, Device::flex());
    opts.pause_at_step = pause;
    opts.random_init = random_init;
    opts.resume = resume;
    train_and_evaluate(Toy, toy::config(&["train.epochs=4"]), &opts).unwrap()
}

#[test]
fn a_paused_run_continues_exactly_as_an_uninterrupted_one() {
    // What the augmentation search's successive halving does: stop at a rung, evaluate,
    // continue later. The schedules span the whole run, so pausing changes nothing.
    let full = tempfile::tempdir().unwrap();
    let whole = run(full.path(), None, true, false);
    let part = tempfile::tempdir().unwrap();
    let paused = run(part.path(), Some(7), false, false);
    assert_eq!(paused.results["steps"], 7);
    assert_eq!(paused.results["paused"], true);
    assert!(paused.probes.iter().all(|p| p.random_init_top1.is_none()));
    assert!(part.path().join("results-step-7.json").is_file());
    assert!(
        !part.path().join("results.json").exists(),
        "a paused run is not finished"
    );
    // Continue to the end.
    let done = run(part.path(), None, true, true);
    assert_eq!(done.results["paused"], false);
    assert_eq!(done.results["steps"], whole.results["steps"]);
    let (a, b) = (
        read_metrics(&full.path().join("metrics.jsonl")).unwrap(),
        read_metrics(&part.path().join("metrics.jsonl")).unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((x.step, x.lr, x.tau), (y.step, y.lr, y.tau));
        assert!(
            (x.loss - y.loss).abs() < 1e-5,
            "step {}: {} vs {}",
            x.step,
            x.loss,
            y.loss
        );
    }
    for (p, q) in whole.probes.iter().zip(&done.probes) {
        assert_eq!(p.trained_top1, q.trained_top1);
        assert_eq!(p.random_init_top1, q.random_init_top1);
    }
}
