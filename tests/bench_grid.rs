//! End to end: `ssl bench --config` runs a grid of settings and seeds on a real CIFAR-10 slice,
//! writes the table and plots, and a second invocation reuses the finished runs.

mod common;

use common::{assert_one_line_error, ssl, text};

#[test]
fn a_bench_grid_runs_every_setting_and_seed_and_resumes() {
    let Some(data) = ssl_test_support::cifar_slice("bench_grid", 5, 2) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let bench = tmp.path().join("tiny.toml");
    std::fs::write(
        &bench,
        r#"
name = "tiny"
modality = "vision"
seeds = [0, 1]
set = ["train.epochs=1", "train.batch_size=10", "eval.probe_epochs=2", "byol.projector_hidden=64", "byol.predictor_hidden=64", "encoder.channels=[8, 16]", "encoder.strides=[1, 2]", "eval.knn_k=5"]
[[setting]]
name = "default"
[grid]
"byol.tau_base" = [0.0, 1.0]
"#,
    )
    .unwrap();
    let out = tmp.path().join("out");
    let args = [
        "bench",
        "--config",
        bench.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    let o = ssl(&args);
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::read_to_string(out.join("table.md")).unwrap();
    for row in [
        "| default |",
        "| byol.tau_base=0.0 |",
        "| byol.tau_base=1.0 |",
    ] {
        assert!(md.contains(row), "{md}");
    }
    assert!(
        md.contains("knn class") && md.contains("linear class"),
        "{md}"
    );
    // Two seeds: mean ± std.
    assert!(md.contains(" ± "), "{md}");
    let mut csv = csv::Reader::from_path(out.join("table.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 6, "3 settings x 2 seeds");
    // The tau = 0 runs really ran with tau 0.
    let run = out.join("runs/byol.tau_base_0.0/seed-1/results.json");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&run).unwrap()).unwrap();
    assert_eq!(r["config"]["byol"]["tau_base"], 0.0);
    assert_eq!(r["seed"], 1);
    for plot in ["accuracy.svg", "curves.svg"] {
        let svg = std::fs::read_to_string(out.join(plot)).unwrap();
        assert!(svg.contains("<svg") && svg.contains("default"), "{plot}");
    }

    // Again: every run is read back, nothing is trained, the table is the same.
    let o = ssl(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        text(&o).matches("finished earlier").count(),
        6,
        "{}",
        text(&o)
    );
    assert_eq!(std::fs::read_to_string(out.join("table.md")).unwrap(), md);

    // A bad setting names itself.
    std::fs::write(
        &bench,
        "name = \"bad\"\nmodality = \"vision\"\n[[setting]]\nname = \"oops\"\nset = [\"byol.tau_base=7\"]\n",
    )
    .unwrap();
    let o = ssl(&args);
    assert_one_line_error(&o, &["oops", "tau_base"]);
    // ... before any run, even when it is not the first setting.
    std::fs::write(
        &bench,
        "name = \"bad\"\nmodality = \"vision\"\nset = [\"train.epochs=1\"]\n[[setting]]\nname = \"fine\"\n[[setting]]\nname = \"typo\"\nset = [\"byol.predictr=false\"]\n",
    )
    .unwrap();
    let o = ssl(&args);
    assert_one_line_error(&o, &["typo", "predictr"]);
    assert!(!text(&o).contains("training"), "{}", text(&o));
}
