//! Streaming input on generated images: a streamed folder gives the same batches as the same
//! folder decoded into memory, tar shards hold the folder's samples and labels, and an image
//! that cannot be decoded mid-stream is skipped and counted, never a stall.

use ssl_framework::data::loader::{StreamSkips, two_view_epoch};
use ssl_framework::data::{Datasets, Split};
use ssl_framework::modality::Modality;
use ssl_vision::image::ImageRecord;
use ssl_vision::readers::tar_shards;
use ssl_vision::{Streaming, VisionDataConfig, VisionModality};
use std::path::Path;
use std::sync::Arc;

/// Writes `per_class` JPEGs of `w x h` for each of two classes under `root/{train,test}/`:
/// smooth gradients with seeded noise, so no two images are alike.
fn write_folder(root: &Path, per_class: usize, w: u32, h: u32) {
    let mut seed = 1u64;
    for split in ["train", "test"] {
        for class in ["a", "b"] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..per_class {
                let img = image::RgbImage::from_fn(w, h, |x, y| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let noise = (seed >> 59) as u8;
                    let base = if class == "a" {
                        x * 255 / w
                    } else {
                        y * 255 / h
                    } as u8;
                    image::Rgb([
                        base.wrapping_add(noise),
                        (i * 20) as u8,
                        noise.wrapping_mul(7),
                    ])
                });
                img.save(dir.join(format!("{i:03}.jpg"))).unwrap();
            }
        }
    }
}

fn load(root: &Path, streaming: Streaming) -> Datasets<ImageRecord> {
    let cfg = VisionDataConfig {
        streaming,
        ..Default::default()
    };
    VisionModality.load(&cfg, root).unwrap()
}

fn views() -> Arc<(
    Vec<ssl_vision::augment::VisionOp>,
    Vec<ssl_vision::augment::VisionOp>,
)> {
    let cfg: ssl_framework::config::ExperimentConfig<VisionModality> =
        ssl_framework::config::load_config(
            &std::fs::read_to_string(
                ssl_test_support::workspace_root().join("configs/vision/cifar10-quick.toml"),
            )
            .unwrap(),
            "cifar10-quick.toml",
            &[],
        )
        .unwrap();
    Arc::new((cfg.augment.view1, cfg.augment.view2))
}

/// Every batch of `epoch` (batch 8, 2 workers) as raw values, and the skips counted.
fn epoch_batches(items: Vec<ImageRecord>, epoch: usize) -> (Vec<Vec<f32>>, usize) {
    let skips = Arc::new(StreamSkips::default());
    let batches = two_view_epoch(
        Arc::new(VisionModality),
        Arc::new(items),
        views(),
        7,
        epoch,
        8,
        0,
        2,
        2,
        skips.clone(),
    )
    .map(|b| {
        let b = b.unwrap();
        [b.view1.data, b.view2.data].concat()
    })
    .collect();
    (batches, skips.count())
}

#[test]
fn streamed_folder_gives_the_batches_of_the_folder_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), 12, 64, 48);
    let memory = load(dir.path(), Streaming::Off);
    let stream = load(dir.path(), Streaming::On);
    assert!(
        memory
            .train
            .items
            .iter()
            .all(|r| matches!(r, ImageRecord::Decoded(_)))
    );
    assert!(
        stream
            .train
            .items
            .iter()
            .all(|r| matches!(r, ImageRecord::Encoded(_)))
    );
    // The auto choice keeps a small folder in memory, and streams past the limit.
    assert!(matches!(
        load(dir.path(), Streaming::Auto).train.items[0],
        ImageRecord::Decoded(_)
    ));
    let cfg = VisionDataConfig {
        in_memory_limit_mb: 0,
        ..Default::default()
    };
    assert!(matches!(
        VisionModality.load(&cfg, dir.path()).unwrap().train.items[0],
        ImageRecord::Encoded(_)
    ));
    assert_eq!(memory.train.label_sets, stream.train.label_sets);
    assert_eq!(memory.test.label_sets, stream.test.label_sets);
    for epoch in [0, 1] {
        let (a, skips_a) = epoch_batches(memory.train.items.clone(), epoch);
        let (b, skips_b) = epoch_batches(stream.train.items.clone(), epoch);
        assert_eq!(a.len(), 3);
        assert_eq!(a, b, "epoch {epoch}: the same values, bit for bit");
        assert_eq!((skips_a, skips_b), (0, 0));
    }
}

/// The decoded pixels of each record, with its label, sorted (a multiset to compare).
fn contents(split: &Split<ImageRecord>) -> Vec<(Vec<u8>, usize)> {
    let mut v: Vec<(Vec<u8>, usize)> = split
        .items
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                r.decode().unwrap().pixels.clone(),
                split.label_sets[0].labels[i],
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn shards_hold_the_folders_samples_and_labels_and_read_in_shard_runs() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), 10, 40, 30);
    let shards = tempfile::tempdir().unwrap();
    let written = tar_shards::write_shards(
        dir.path(),
        ssl_framework::data::folder::FolderLabels::Folders,
        shards.path(),
        6,
        0,
    )
    .unwrap();
    // 20 training samples in shards of 6: 4 shards; 20 held-out samples: 4 shards.
    assert_eq!(written.train, (4, 20));
    assert_eq!(written.test, (4, 20));
    assert!(written.train_pattern.ends_with("train-{0000..0003}.tar"));
    // Writing into a folder that holds shards already is refused (they would mix).
    let e = tar_shards::write_shards(
        dir.path(),
        ssl_framework::data::folder::FolderLabels::Folders,
        shards.path(),
        6,
        0,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("holds .tar files already"), "{e}");
    let folder = load(dir.path(), Streaming::Off);
    let sharded = load(&written.train_pattern, Streaming::Auto);
    // Shards stream by default; the class names come from classes.txt.
    assert!(matches!(sharded.train.items[0], ImageRecord::Encoded(_)));
    assert_eq!(sharded.train.label_sets[0].classes, ["a", "b"]);
    assert_eq!(contents(&folder.train), contents(&sharded.train));
    assert_eq!(contents(&folder.test), contents(&sharded.test));
    // The epoch's order reads one shard at a time (a buffer larger than the data mixes all).
    let order = VisionModality.epoch_order(&sharded.train.items, 3, 0);
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..20).collect::<Vec<_>>());
    assert_eq!(
        order,
        VisionModality.epoch_order(&sharded.train.items, 3, 0)
    );
    assert_ne!(
        order,
        VisionModality.epoch_order(&sharded.train.items, 3, 1)
    );
    // Shards always stream (their order is the shards'), whatever `data.streaming` says.
    let off = load(&written.train_pattern, Streaming::Off);
    assert!(matches!(off.train.items[0], ImageRecord::Encoded(_)));
    let (batches, skips) = epoch_batches(sharded.train.items, 0);
    assert_eq!((batches.len(), skips), (2, 0));
    // A missing shard is named.
    let e = VisionModality
        .load(
            &VisionDataConfig::default(),
            &shards.path().join("train-{0000..0009}.tar"),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("train-0004.tar") && e.contains("no such shard"),
        "{e}"
    );
    // A member whose header claims more bytes than the shard holds is named, not read.
    let mut cut = std::fs::read(shards.path().join("train-0000.tar")).unwrap();
    cut.truncate(cut.len() / 2);
    std::fs::write(shards.path().join("cut.tar"), cut).unwrap();
    let e = VisionModality
        .load(&VisionDataConfig::default(), &shards.path().join("cut.tar"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cut.tar"), "{e}");
    // A file that is not a tar file is named.
    std::fs::write(shards.path().join("junk.tar"), vec![7u8; 2000]).unwrap();
    let e = VisionModality
        .load(
            &VisionDataConfig::default(),
            &shards.path().join("junk.tar"),
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("junk.tar"), "{e}");
}

/// A PNG whose header reads (the index accepts it) but whose pixel data is corrupt.
fn write_corrupt_png(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, ssl_test_support::png_corrupt_after_header(40, 30)).unwrap();
}

#[test]
fn an_image_that_fails_to_decode_mid_stream_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), 8, 40, 30);
    write_corrupt_png(&dir.path().join("train/a/zz-corrupt.png"));
    assert!(
        ssl_vision::readers::image_index::header_size(&dir.path().join("train/a/zz-corrupt.png"))
            .is_ok()
    );
    let stream = load(dir.path(), Streaming::On);
    assert_eq!(
        stream.train.len(),
        17,
        "the index keeps it: its header reads"
    );
    // 17 records, batch 8: two full batches per epoch; over two epochs the corrupt image is in
    // the used part of at least one, and is counted each time it is met.
    let mut met = 0;
    for epoch in 0..4 {
        let order = VisionModality.epoch_order(&stream.train.items, 7, epoch);
        let corrupt_used = order[..16].iter().any(|&i| {
            matches!(&stream.train.items[i], ImageRecord::Encoded(e)
                if e.source.path().ends_with("zz-corrupt.png"))
        });
        let (batches, skips) = epoch_batches(stream.train.items.clone(), epoch);
        assert_eq!(batches.len(), 2, "no batch lost");
        assert_eq!(skips, usize::from(corrupt_used), "epoch {epoch}");
        met += skips;
    }
    assert!(met > 0, "the corrupt image was met in some epoch");
    // Decoded into memory instead, it is dropped at load and counted.
    let memory = load(dir.path(), Streaming::Off);
    assert_eq!(memory.train.len(), 16);
    assert_eq!(memory.skipped, 1);
}

#[test]
fn a_split_of_images_that_all_fail_to_decode_stops_the_run_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3 {
        write_corrupt_png(&dir.path().join(format!("train/a/{i}.png")));
        write_corrupt_png(&dir.path().join(format!("train/b/{i}.png")));
    }
    let stream = load(dir.path(), Streaming::On);
    let skips = Arc::new(StreamSkips::default());
    let result: Vec<_> = two_view_epoch(
        Arc::new(VisionModality),
        Arc::new(stream.train.items),
        views(),
        0,
        0,
        2,
        0,
        2,
        2,
        skips,
    )
    .collect();
    let err = result
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("an error, not a hang");
    assert!(
        err.message.contains("could not be read") && err.message.contains(".png"),
        "{}",
        err.message
    );
}

/// The views of one record with `decode_at_crop_scale` on and off, from the same seed.
fn crop_views(path: &Path, pipeline: &str, at_crop_scale: bool) -> Vec<ssl_vision::image::Image> {
    let ops: Vec<ssl_vision::augment::VisionOp> =
        toml::from_str::<std::collections::BTreeMap<String, Vec<_>>>(pipeline)
            .unwrap()
            .remove("view")
            .unwrap();
    let (w, h) = ssl_vision::readers::image_index::header_size(path).unwrap();
    let record = ImageRecord::Encoded(ssl_vision::image::EncodedImage {
        source: ssl_vision::image::ImageSource::File(path.to_path_buf()),
        width: w,
        height: h,
        decode_at_crop_scale: at_crop_scale,
    });
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
    VisionModality
        .try_views(
            &record,
            &[&ops, &ops],
            &mut rng,
            &ssl_framework::augmentation::NoSamples,
        )
        .unwrap()
}

#[test]
fn large_jpegs_decode_at_the_scale_their_crop_needs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("photo.jpg");
    let mut seed = 9u64;
    image::RgbImage::from_fn(1600, 1200, |x, y| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let n = (seed >> 60) as u32;
        image::Rgb([
            (x * 255 / 1600) as u8,
            (y * 255 / 1200) as u8,
            (((x / 40 + y / 40) % 2) * 160 + n) as u8,
        ])
    })
    .save(&path)
    .unwrap();
    let stats = |a: &[ssl_vision::image::Image], b: &[ssl_vision::image::Image]| {
        let d: Vec<f32> = a
            .iter()
            .zip(b)
            .flat_map(|(x, y)| x.data.iter().zip(&y.data).map(|(p, q)| (p - q).abs()))
            .collect();
        (
            d.iter().sum::<f32>() / d.len() as f32,
            d.iter().cloned().fold(0.0, f32::max),
        )
    };
    // Crops of at least 1200 * sqrt(0.5) = 848 pixels to 64: decoded at 1/8 (1/4 at least).
    let small = r#"view = [{ type = "RandomResizedCrop", size = 64, scale = [0.5, 1.0] }]"#;
    let (reduced, full) = (
        crop_views(&path, small, true),
        crop_views(&path, small, false),
    );
    assert!(reduced.iter().all(|v| (v.width, v.height) == (64, 64)));
    let (mean, _) = stats(&reduced, &full);
    assert!(mean > 0.0, "the reduced decode was taken");
    assert!(
        mean < 0.02,
        "the same crop, up to resampling: mean difference {mean}"
    );
    // Crops to 400 pixels leave no reduction: a full decode, of which only the crop's region
    // becomes floats; the same values as converting the whole image.
    let large = r#"view = [{ type = "RandomResizedCrop", size = 400, scale = [0.5, 1.0] }]"#;
    let (region, whole) = (
        crop_views(&path, large, true),
        crop_views(&path, large, false),
    );
    let (_, max) = stats(&region, &whole);
    assert!(max < 1e-5, "largest difference {max}");
}
