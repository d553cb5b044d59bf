//! Mutation fuzzing of every vision reader (JPEG, PNG, IDX images and labels, CIFAR-10/100
//! binary) and of the vision config: no input makes them panic, and every error is one line
//! naming the file. Seeds are valid files made here, so this runs without the shared data.

use ssl_test_support::fuzz::{fuzz, iterations};
use ssl_vision::readers::{cifar_binary, idx, image_folder};
use std::path::Path;

fn test_image() -> image::RgbImage {
    image::RgbImage::from_fn(24, 16, |x, y| {
        image::Rgb([(x * 10) as u8, (y * 15) as u8, 128])
    })
}

fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    test_image().write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

#[test]
fn fuzz_jpeg_and_png_decoding() {
    let path = Path::new("fuzz.jpg");
    let seeds = vec![
        encoded(image::ImageFormat::Jpeg),
        encoded(image::ImageFormat::Png),
    ];
    fuzz("image", "fuzz.jpg", &seeds, iterations(3000), |b| {
        image_folder::decode_bytes(path, b)
    });
}

fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for v in [n, rows, cols] {
        b.extend(v.to_be_bytes());
    }
    b.extend((0..n * rows * cols).map(|i| i as u8));
    b
}

fn idx_labels(n: u32) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend(n.to_be_bytes());
    b.extend((0..n).map(|i| (i % 10) as u8));
    b
}

#[test]
fn fuzz_idx_images_and_labels() {
    let p = Path::new("fuzz-idx3-ubyte");
    fuzz(
        "idx-images",
        "fuzz-idx3-ubyte",
        &[idx_images(3, 4, 5), idx_images(1, 28, 28)],
        iterations(5000),
        |b| idx::parse_images(p, b),
    );
    let p = Path::new("fuzz-idx1-ubyte");
    fuzz(
        "idx-labels",
        "fuzz-idx1-ubyte",
        &[idx_labels(7)],
        iterations(5000),
        |b| idx::parse_labels(p, b),
    );
}

#[test]
fn fuzz_cifar_binary_records() {
    let record = |label: &[u8]| -> Vec<u8> {
        let mut r = label.to_vec();
        r.extend((0..3072).map(|i| i as u8));
        r
    };
    let p = Path::new("fuzz_batch.bin");
    let ten: Vec<u8> = [record(&[3]), record(&[9])].concat();
    fuzz("cifar10", "fuzz_batch.bin", &[ten], iterations(2000), |b| {
        cifar_binary::parse(p, b, 1, 10)
    });
    let hundred: Vec<u8> = [record(&[1, 42]), record(&[19, 99])].concat();
    fuzz(
        "cifar100",
        "fuzz_batch.bin",
        &[hundred],
        iterations(2000),
        |b| cifar_binary::parse(p, b, 2, 100),
    );
}

#[test]
fn fuzz_vision_configs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/vision");
    let seeds: Vec<Vec<u8>> = ["cifar10-quick.toml", "cifar10.toml", "imagenet.toml"]
        .iter()
        .map(|f| std::fs::read(root.join(f)).unwrap())
        .collect();
    fuzz("vision-config", "", &seeds, iterations(3000), |b| {
        let text = std::str::from_utf8(b).map_err(|e| format!("fuzz.toml: not UTF-8: {e}"))?;
        ssl_framework::config::load_config::<ssl_vision::VisionModality>(text, "fuzz.toml", &[])
            .map_err(|e| e.to_string())
    });
}
