//! Test helpers: find the real datasets (one variable, `SSL_TEST_DATA`, default
//! `../shared/data` beside the workspace) and unpack small slices of them into a cache folder.
//!
//! When the data is absent, tests that need it print a loud `SKIPPED` message and pass, unless
//! `SSL_REQUIRE_DATA=1` (set by `.ci/run`), which turns the absence into a failure.
//!
//! [`fuzz`] is a seeded mutation fuzzer for the readers.

pub mod fuzz;

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The shared data folder, or `None` (after a loud message) when it is absent and not required.
///
/// Panics when `SSL_REQUIRE_DATA=1` and the folder is absent.
pub fn shared_data(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("SSL_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared/data"));
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("SSL_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!(
            "{test}: the test data folder {} is missing and SSL_REQUIRE_DATA=1",
            dir.display()
        );
    }
    eprintln!(
        "\n!!!!!! SKIPPED {test}: no test data at {} (set SSL_TEST_DATA to the shared data folder) !!!!!!\n",
        dir.display()
    );
    None
}

/// A cache folder for unpacked test data (`SSL_TEST_CACHE`, default `<tmp>/ssl-test-data`).
pub fn cache_root() -> PathBuf {
    std::env::var_os("SSL_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ssl-test-data"))
}

/// A fresh staging folder in the cache, unique to this process and thread.
fn new_staging() -> PathBuf {
    let staging = cache_root().join(format!(
        ".staging-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).expect("create staging folder");
    staging
}

/// Unpacks the first `train_per_class` and `test_per_class` images of each class from
/// `cifar10-jpeg.tar.gz` into an ImageFolder (`train/<class>/`, `test/<class>/`) and returns
/// its path. Done once per size; concurrent tests share it (staged, then renamed).
pub fn cifar_slice(test: &str, train_per_class: usize, test_per_class: usize) -> Option<PathBuf> {
    let data = shared_data(test)?;
    let dest = cache_root().join(format!("cifar10-slice-{train_per_class}-{test_per_class}"));
    if dest.join("train").is_dir() && dest.join("test").is_dir() {
        return Some(dest);
    }
    let staging = new_staging();
    let file = fs::File::open(data.join("cifar10-jpeg.tar.gz")).expect("open cifar10-jpeg.tar.gz");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut counts: HashMap<(String, String), usize> = HashMap::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let path = entry.path().expect("entry path").to_path_buf();
        let parts: Vec<String> = path
            .components()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .collect();
        let parts: Vec<&String> = parts.iter().filter(|p| *p != ".").collect();
        if parts.len() != 3 || !entry.header().entry_type().is_file() {
            continue;
        }
        let (split, class) = (parts[0].clone(), parts[1].clone());
        let limit = if split == "train" {
            train_per_class
        } else if split == "test" {
            test_per_class
        } else {
            continue;
        };
        let n = counts.entry((split.clone(), class.clone())).or_default();
        if *n >= limit {
            continue;
        }
        *n += 1;
        let out = staging.join(&split).join(&class);
        fs::create_dir_all(&out).expect("create class folder");
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).expect("read entry");
        fs::write(out.join(parts[2]), bytes).expect("write image");
    }
    fs::create_dir_all(cache_root()).expect("cache root");
    if fs::rename(&staging, &dest).is_err() {
        // Another test won the race: use its copy.
        let _ = fs::remove_dir_all(&staging);
    }
    Some(dest)
}

/// Unpacks the whole of a shared `.tar.gz` into the cache (once) and returns the folder.
pub fn unpack_all(test: &str, archive_name: &str) -> Option<PathBuf> {
    let data = shared_data(test)?;
    let dest = cache_root().join(archive_name.trim_end_matches(".tar.gz"));
    if dest.is_dir() {
        return Some(dest);
    }
    let staging = new_staging();
    let file = fs::File::open(data.join(archive_name)).expect("open archive");
    tar::Archive::new(flate2::read::GzDecoder::new(file))
        .unpack(&staging)
        .expect("unpack");
    if fs::rename(&staging, &dest).is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    Some(dest)
}

/// A `width x height` PNG whose header reads (an index that reads headers keeps it) and whose
/// pixel data is corrupt (decoding it fails): a file that breaks mid-stream.
pub fn png_corrupt_after_header(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(width, height, image::Rgb([200, 10, 10]))
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .expect("encode a PNG");
    let idat = bytes
        .windows(4)
        .position(|w| w == b"IDAT")
        .expect("an IDAT chunk");
    for b in &mut bytes[idat + 8..idat + 30] {
        *b ^= 0x5A;
    }
    bytes
}
