//! End to end on a real CIFAR-10 slice: `ssl eval`, `ssl embed` and `ssl export` on the
//! checkpoint of a short ResNet-18 run.

mod common;

use common::{assert_one_line_error, ssl, text};
use std::collections::BTreeMap;
use std::path::Path;

/// A short BYOL run of a narrow ResNet-18 (base width 4) on `data`.
fn train_resnet(data: &Path, run: &Path) {
    let o = ssl(&[
        "train",
        "--modality",
        "vision",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--no-progress",
        "--set",
        "encoder.arch=\"resnet18\"",
        "--set",
        "encoder.width=4",
        "--set",
        "train.epochs=1",
        "--set",
        "train.batch_size=50",
        "--set",
        "byol.projector_hidden=64",
        "--set",
        "byol.predictor_hidden=64",
        "--set",
        "eval.probe_epochs=3",
    ]);
    assert!(o.status.success(), "{}", text(&o));
}

/// torchvision's `resnet18()` state-dict keys without `fc.*` and `num_batches_tracked`, with
/// shapes for base width `w` and a CIFAR stem (3x3 conv1).
fn torchvision_resnet18(w: usize) -> BTreeMap<String, Vec<usize>> {
    let mut keys = BTreeMap::new();
    let bn = |keys: &mut BTreeMap<String, Vec<usize>>, name: &str, c: usize| {
        for p in ["weight", "bias", "running_mean", "running_var"] {
            keys.insert(format!("{name}.{p}"), vec![c]);
        }
    };
    keys.insert("conv1.weight".into(), vec![w, 3, 3, 3]);
    bn(&mut keys, "bn1", w);
    let mut cin = w;
    for stage in 0..4 {
        let c = w << stage;
        for block in 0..2 {
            let p = format!("layer{}.{block}", stage + 1);
            let first_in = if block == 0 { cin } else { c };
            keys.insert(format!("{p}.conv1.weight"), vec![c, first_in, 3, 3]);
            bn(&mut keys, &format!("{p}.bn1"), c);
            keys.insert(format!("{p}.conv2.weight"), vec![c, c, 3, 3]);
            bn(&mut keys, &format!("{p}.bn2"), c);
            if block == 0 && stage > 0 {
                keys.insert(format!("{p}.downsample.0.weight"), vec![c, cin, 1, 1]);
                bn(&mut keys, &format!("{p}.downsample.1"), c);
            }
        }
        cin = c;
    }
    keys
}

fn read_safetensors(path: &Path) -> (Vec<u8>, BTreeMap<String, Vec<usize>>) {
    let bytes = std::fs::read(path).unwrap();
    let shapes = {
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        st.tensors()
            .into_iter()
            .map(|(name, view)| (name, view.shape().to_vec()))
            .collect()
    };
    (bytes, shapes)
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn eval_embed_and_export_a_resnet_checkpoint() {
    let Some(data) = ssl_test_support::cifar_slice("eval_embed_and_export", 20, 10) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    train_resnet(&data, &run);
    let d = data.to_str().unwrap();
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("results.json")).unwrap()).unwrap();

    // ssl eval: the training probes again (same checkpoint, same seeds), then fine-tuning on
    // 100% and 10% of the labels, each beside random init.
    let eval_out = tmp.path().join("eval.json");
    let o = ssl(&[
        "eval",
        "--checkpoint",
        run.to_str().unwrap(),
        "--data",
        d,
        "--out",
        eval_out.to_str().unwrap(),
        "--set",
        "eval.finetune_epochs=1",
        "--set",
        "eval.finetune_fractions=[1.0, 0.1]",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let eval: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&eval_out).unwrap()).unwrap();
    let probes = eval["probes"].as_array().unwrap();
    let names: Vec<&str> = probes
        .iter()
        .map(|p| p["probe"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["knn", "linear", "finetune-100%", "finetune-10%"]);
    assert_eq!(probes[..2], results["probes"].as_array().unwrap()[..2]);
    for p in probes {
        let (t, r) = (
            p["trained_top1"].as_f64().unwrap(),
            p["random_init_top1"].as_f64().unwrap(),
        );
        assert!((0.0..=1.0).contains(&t) && (0.0..=1.0).contains(&r), "{p}");
    }
    assert_eq!(eval["test_samples"], 100);
    assert!(text(&o).contains("finetune-10%"), "{}", text(&o));

    // ssl embed: safetensors and npz hold the same arrays; labels are the dataset's classes.
    let st = tmp.path().join("emb.safetensors");
    let npz = tmp.path().join("emb.npz");
    for out in [&st, &npz] {
        let o = ssl(&[
            "embed",
            "--checkpoint",
            run.to_str().unwrap(),
            "--data",
            d,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }
    let (bytes, shapes) = read_safetensors(&st);
    // ResNet-18 of base width 4: 32 features.
    assert_eq!(shapes["train_embeddings"], [200, 32]);
    assert_eq!(shapes["test_embeddings"], [100, 32]);
    assert_eq!(shapes["test_labels_class"], [100]);
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let st_test = f32s(tensors.tensor("test_embeddings").unwrap().data());
    assert!(st_test.iter().all(|v| v.is_finite()));
    assert!(st_test.iter().any(|v| *v != 0.0));
    let labels: Vec<i64> = tensors
        .tensor("test_labels_class")
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    for c in 0..10 {
        assert_eq!(labels.iter().filter(|&&l| l == c).count(), 10);
    }
    let mut archive = npyz::npz::NpzArchive::open(&npz).unwrap();
    let arr = archive.by_name("test_embeddings").unwrap().unwrap();
    assert_eq!(arr.shape(), &[100, 32]);
    let npz_test: Vec<f32> = arr.into_vec().unwrap();
    assert_eq!(
        npz_test, st_test,
        "the two formats hold the same embeddings"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("emb.safetensors.json")).unwrap())
            .unwrap();
    assert_eq!(meta["classes"]["class"].as_array().unwrap().len(), 10);

    // ssl export: torchvision's resnet18 keys and shapes (CIFAR stem), BatchNorm statistics
    // included, in the PyTorch layout.
    let model = tmp.path().join("encoder.safetensors");
    let o = ssl(&[
        "export",
        "--checkpoint",
        run.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let (bytes, shapes) = read_safetensors(&model);
    assert_eq!(shapes, torchvision_resnet18(4));
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["architecture"], "resnet18");
    assert_eq!(meta["stem"], "cifar");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let var = f32s(tensors.tensor("layer4.1.bn2.running_var").unwrap().data());
    assert!(
        var.iter().all(|v| *v > 0.0),
        "running variances are positive"
    );
    assert!(
        var.iter().any(|v| (*v - 1.0).abs() > 1e-4),
        "running statistics were trained, not initial"
    );

    // Errors name what is wrong, on one line.
    let o = ssl(&[
        "eval",
        "--checkpoint",
        tmp.path().join("nothing").to_str().unwrap(),
    ]);
    let line = assert_one_line_error(&o, &["--checkpoint", "nothing", "no such folder"]);
    assert_eq!(
        line.matches("nothing").count(),
        1,
        "the path is said once: {line}"
    );
    let on_run = |cmd: &str, extra: &[&str]| {
        let mut args = vec![cmd, "--checkpoint", run.to_str().unwrap(), "--data", d];
        args.extend_from_slice(extra);
        ssl(&args)
    };
    let o = on_run("eval", &["--modality", "audio"]);
    assert_one_line_error(&o, &["a vision checkpoint, not audio"]);
    let o = on_run("eval", &["--set", "encoder.width=8"]);
    assert_one_line_error(&o, &["encoder.width=8", "keep their shapes"]);
    let missing = tmp.path().join("no/such/dir/e.npz");
    let o = on_run("embed", &["--out", missing.to_str().unwrap()]);
    assert_one_line_error(&o, &["does not exist"]);
    assert!(
        !text(&o).contains("embedding the"),
        "failed before any work"
    );
    let npy = tmp.path().join("e.npy");
    let o = on_run("embed", &["--out", npy.to_str().unwrap()]);
    assert_one_line_error(&o, &["e.npy", ".npz"]);
    let o = on_run("eval", &["--set", "eval.finetune_fractions=[0.0]"]);
    assert_one_line_error(&o, &["eval.finetune_fractions[0]"]);
}
