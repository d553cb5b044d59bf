//! End to end: the throughput workloads that run only when named (`ops-smallcnn`,
//! `epoch-cifar10-quick`, `augment-audio`) on real data, tiny sizes: each writes its figures
//! to the JSON table, and an unknown workload or `SSL_CONV` value is a one-line error naming it. (Timings here come
//! from a test build on a busy machine: only their presence and sanity are checked.)

mod common;

use common::{assert_one_line_error, ssl, text};

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn ops_epoch_and_audio_workloads_report_their_figures() {
    let Some(cifar) = ssl_test_support::cifar_slice("bench_throughput", 20, 5) else {
        return;
    };
    let Some(fsdd) = ssl_test_support::unpack_all("bench_throughput", "fsdd-recordings.tar.gz")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();

    // Op by op at batch 2: the matmul, then per convolution burn's and ours (forward, forward +
    // backward) and per BatchNorm burn's and ours; then ResNet-18's body convolutions at batch
    // 1, forward + backward, burn's and our Winograd kernel.
    let ops = tmp.path().join("ops.json");
    let o = ssl(&[
        "bench",
        "--workloads",
        "ops-smallcnn",
        "--batch",
        "2",
        "--steps",
        "3",
        "--json",
        ops.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let ops = json(&ops)["ops"].as_array().unwrap().clone();
    assert_eq!(ops.len(), 1 + 4 * 6 + 4 * 2, "{ops:?}");
    for op in &ops {
        let ms = op["median_ms"].as_f64().unwrap();
        assert!(ms.is_finite() && ms > 0.0, "{op}");
    }
    for name in [
        "conv fwd+bwd 32->64 32px s2 (ssl im2col)",
        "bn fwd+bwd c256 4px (ssl fused)",
        "conv fwd+bwd 512->512 4px s1 b1 (ssl winograd)",
    ] {
        assert!(
            ops.iter().any(|o| o["op"] == name),
            "{name} missing: {ops:?}"
        );
    }

    // One epoch of the default vision config on 200 images (one step of 128) through the
    // trainer, and the audio front end and views on the whole FSDD.
    let table = tmp.path().join("table.json");
    let o = ssl(&[
        "bench",
        "--workloads",
        "epoch-cifar10-quick,augment-audio",
        "--data",
        cifar.to_str().unwrap(),
        "--audio-data",
        fsdd.to_str().unwrap(),
        "--json",
        table.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 steps in"), "{}", text(&o));
    let rows = json(&table)["rows"].as_array().unwrap().clone();
    let figure = |workload: &str| -> Vec<f64> {
        rows.iter()
            .filter(|r| r["workload"] == workload)
            .map(|r| r["figure"].as_f64().unwrap())
            .collect()
    };
    let seconds = figure("epoch-cifar10-quick (s)");
    assert!(seconds.len() == 1 && seconds[0] > 0.0, "{rows:?}");
    let wait = figure("epoch-cifar10-quick (wait)");
    assert!(
        wait.len() == 1 && (0.0..=100.0).contains(&wait[0]),
        "{rows:?}"
    );
    let epoch_row = rows
        .iter()
        .find(|r| r["workload"] == "epoch-cifar10-quick (s)")
        .unwrap();
    assert!(
        epoch_row["peak_rss_mib"].as_f64().unwrap() > 10.0,
        "{epoch_row}"
    );
    let front_end = figure("augment-audio (log-mel)");
    assert!(front_end.len() == 1 && front_end[0] > 0.0, "{rows:?}");
    let views = figure("augment-audio (views)");
    assert!(
        !views.is_empty() && views.iter().all(|v| *v > 0.0),
        "{rows:?}"
    );

    let o = ssl(&["bench", "--workloads", "ops-small"]);
    assert_one_line_error(&o, &["unknown workload", "ops-small"]);
}

/// `SSL_CONV` picks the convolution kernel; a value that is neither `winograd` nor `im2col` is a
/// one-line error naming it, before any work, and `im2col` is taken (the op table names it).
#[test]
fn ssl_conv_is_checked_and_chooses_the_kernel() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ssl"))
        .args([
            "bench",
            "--workloads",
            "ops-smallcnn",
            "--batch",
            "2",
            "--steps",
            "1",
        ])
        .env("SSL_CONV", "winogard")
        .output()
        .unwrap();
    assert_one_line_error(&o, &["SSL_CONV", "winogard", "im2col"]);

    let tmp = tempfile::tempdir().unwrap();
    let ops = tmp.path().join("ops.json");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ssl"))
        .args([
            "bench",
            "--workloads",
            "ops-smallcnn",
            "--batch",
            "2",
            "--steps",
            "1",
        ])
        .args(["--json", ops.to_str().unwrap()])
        .env("SSL_CONV", "im2col")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let ops = json(&ops)["ops"].as_array().unwrap().clone();
    assert!(
        ops.iter()
            .any(|o| o["op"] == "conv fwd+bwd 512->512 4px s1 b1 (ssl im2col)"),
        "{ops:?}"
    );
    assert!(
        !ops.iter()
            .any(|o| o["op"].as_str().unwrap().contains("winograd"))
    );
}
