//! Readers on real files (slices of the shared CIFAR-10 and Fashion-MNIST) and on corrupt ones;
//! the CIFAR-10 download path against a local HTTP server.

use ssl_framework::data::folder::FolderLabels;
use ssl_vision::readers::{self, Format, cifar_binary, idx};
use std::io::{Read, Write};
use std::path::Path;

#[test]
fn image_folder_reads_real_cifar_jpegs() {
    let Some(dir) = ssl_test_support::cifar_slice("image_folder_reads_real_cifar_jpegs", 20, 5)
    else {
        return;
    };
    let d = load_decoded(&dir, Format::Auto);
    assert_eq!(d.train.len(), 200);
    assert_eq!(d.test.len(), 50);
    assert_eq!(d.skipped, 0);
    let ls = &d.train.label_sets[0];
    assert_eq!(ls.classes.len(), 10);
    assert_eq!(ls.classes[0], "airplane");
    assert!((0..10).all(|c| ls.labels.iter().filter(|&&l| l == c).count() == 20));
    assert!(
        d.train
            .items
            .iter()
            .map(|r| r.decode().unwrap())
            .all(|i| i.width == 32 && i.height == 32 && i.pixels.len() == 3072)
    );
}

#[test]
fn image_folder_skips_and_counts_corrupt_files() {
    let Some(src) =
        ssl_test_support::cifar_slice("image_folder_skips_and_counts_corrupt_files", 20, 5)
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    for split in ["train", "test"] {
        for class in std::fs::read_dir(src.join(split)).unwrap() {
            let class = class.unwrap();
            let dst = tmp.path().join(split).join(class.file_name());
            std::fs::create_dir_all(&dst).unwrap();
            for f in std::fs::read_dir(class.path()).unwrap().take(3) {
                let f = f.unwrap();
                std::fs::copy(f.path(), dst.join(f.file_name())).unwrap();
            }
        }
    }
    let cat = tmp.path().join("train/cat");
    let good = std::fs::read(
        std::fs::read_dir(&cat)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    )
    .unwrap();
    std::fs::write(cat.join("truncated.jpg"), &good[..good.len() / 3]).unwrap();
    std::fs::write(cat.join("garbage.jpg"), b"this is not a JPEG at all").unwrap();
    std::fs::write(cat.join("empty.png"), b"").unwrap();
    std::fs::write(cat.join("notes.txt"), b"not an image extension: counted").unwrap();
    let d = readers::load(tmp.path(), Format::ImageFolder, FolderLabels::Folders).unwrap();
    // The index already skips these: their headers do not read (a JPEG cut inside its header).
    assert_eq!(d.skipped, 4);
    assert_eq!(d.train.len(), 30);
    let d = load_decoded(tmp.path(), Format::ImageFolder);
    // Three undecodable images and the text file, each counted.
    assert_eq!(d.skipped, 4);
    assert_eq!(d.train.len(), 30);
    // A folder with no usable images is a clear error naming it.
    let empty = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(empty.path().join("train/a")).unwrap();
    std::fs::create_dir_all(empty.path().join("test/a")).unwrap();
    std::fs::write(empty.path().join("train/a/x.jpg"), b"junk").unwrap();
    let e = readers::load(empty.path(), Format::ImageFolder, FolderLabels::Folders)
        .unwrap_err()
        .to_string();
    assert!(e.contains("none of its 1 images can be read"), "{e}");
    let e = readers::load(
        &tmp.path().join("nope"),
        Format::Auto,
        FolderLabels::Folders,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("nope"), "{e}");
}

/// Reads `dir` and decodes every image into memory, as `data.streaming = "off"` does.
fn load_decoded(
    dir: &Path,
    format: Format,
) -> ssl_framework::data::Datasets<ssl_vision::image::ImageRecord> {
    let mut d = readers::load(dir, format, FolderLabels::Folders).unwrap();
    ssl_vision::stream_or_decode(&mut d, ssl_vision::Streaming::Off, 0).unwrap();
    d
}

fn cifar_record(label: u8, fill: u8) -> Vec<u8> {
    let mut r = vec![label];
    r.extend((0..3072).map(|i| fill.wrapping_add((i / 1024) as u8)));
    r
}

fn write_cifar10(dir: &Path, per_file: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for name in ["data_batch_1.bin", "data_batch_2.bin", "test_batch.bin"] {
        let bytes: Vec<u8> = (0..per_file)
            .flat_map(|i| cifar_record((i % 10) as u8, i as u8))
            .collect();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn cifar_binary_reads_planes_and_rejects_partial_records() {
    let tmp = tempfile::tempdir().unwrap();
    write_cifar10(tmp.path(), 4);
    let d = readers::load(tmp.path(), Format::Auto, FolderLabels::Folders).unwrap();
    assert_eq!((d.train.len(), d.test.len()), (8, 4));
    assert_eq!(d.name, "cifar10");
    let img = d.train.items[1].decode().unwrap();
    assert_eq!(&img.pixels[..3], &[1, 2, 3], "R, G, B planes interleaved");
    assert_eq!(d.train.label_sets[0].labels[..4], [0, 1, 2, 3]);
    let mut bytes = std::fs::read(tmp.path().join("test_batch.bin")).unwrap();
    bytes.truncate(bytes.len() - 100);
    std::fs::write(tmp.path().join("test_batch.bin"), bytes).unwrap();
    let e = readers::load(tmp.path(), Format::CifarBinary, FolderLabels::Folders)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("test_batch.bin") && e.contains("whole number"),
        "{e}"
    );
    let bad_label = cifar_record(12, 0);
    let e = cifar_binary::parse(Path::new("x.bin"), &bad_label, 1, 10)
        .unwrap_err()
        .to_string();
    assert!(e.contains("label 12"), "{e}");
}

#[test]
fn idx_reads_real_fashion_mnist_and_rejects_bad_headers() {
    let Some(data) =
        ssl_test_support::shared_data("idx_reads_real_fashion_mnist_and_rejects_bad_headers")
    else {
        return;
    };
    let d = readers::load(
        &data.join("fashion-mnist"),
        Format::Auto,
        FolderLabels::Folders,
    )
    .unwrap();
    assert_eq!((d.train.len(), d.test.len()), (60000, 10000));
    let first = d.train.items[0].decode().unwrap();
    assert_eq!((first.width, first.height), (28, 28));
    assert_eq!(d.train.label_sets[0].classes.len(), 10);
    let mut header = vec![0, 0, 8, 1, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28];
    assert!(
        idx::parse_images(Path::new("x"), &header)
            .unwrap_err()
            .to_string()
            .contains("magic")
    );
    header[3] = 3;
    let e = idx::parse_images(Path::new("imgs"), &header)
        .unwrap_err()
        .to_string();
    assert!(e.contains("imgs") && e.contains("2 images"), "{e}");
    assert!(
        idx::parse_labels(Path::new("l"), &[0, 0, 8, 1, 0, 0, 0, 5, 1])
            .unwrap_err()
            .to_string()
            .contains("5 labels")
    );
    assert!(idx::parse_images(Path::new("x"), &[]).is_err());
}

/// Serves `body` to each of `n` requests on 127.0.0.1; returns the URL.
fn serve(body: Vec<u8>, n: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 4096];
            let mut req = Vec::new();
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let k = s.read(&mut buf).unwrap();
                if k == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..k]);
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(&body).unwrap();
        }
    });
    format!("http://{addr}/cifar-10-binary.tar.gz")
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::{Digest, Md5};
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn download_checks_md5_and_unpacks_from_a_local_server() {
    let src = tempfile::tempdir().unwrap();
    write_cifar10(&src.path().join("cifar-10-batches-bin"), 3);
    let mut archive = Vec::new();
    {
        let gz = flate2::write::GzEncoder::new(&mut archive, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        tar.append_dir_all(
            "cifar-10-batches-bin",
            src.path().join("cifar-10-batches-bin"),
        )
        .unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }
    let md5 = md5_hex(&archive);
    let url = serve(archive, 2);
    let dest = tempfile::tempdir().unwrap();
    let out =
        ssl_vision::download::download_and_extract(&url, &md5, &dest.path().join("cifar10"), false)
            .unwrap();
    let d = readers::load(&out, Format::Auto, FolderLabels::Folders).unwrap();
    assert_eq!((d.train.len(), d.test.len()), (6, 3));
    // A checksum mismatch deletes the file and says so.
    let other = dest.path().join("bad");
    let e = ssl_vision::download::download_and_extract(
        &url,
        "00000000000000000000000000000000",
        &other,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("MD5"), "{e}");
    assert_eq!(
        std::fs::read_dir(&other).unwrap().count(),
        0,
        "nothing left behind"
    );
    // No server: an error that says what to do offline.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = ssl_vision::download::download_and_extract(
        &format!("http://{closed}/x.tar.gz"),
        &md5,
        &dest.path().join("off"),
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--data"), "{e}");
}

#[test]
fn decoder_errors_are_one_line() {
    // Found by fuzzing: the JPEG decoder's messages end with a line break, which split the
    // skip warning over two lines.
    let img = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 16, y as u8 * 16, 7]));
    let mut jpeg = std::io::Cursor::new(Vec::new());
    img.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    let jpeg = jpeg.into_inner();
    let mut errors = 0;
    for cut in 0..jpeg.len() {
        if let Err(e) = readers::image_folder::decode_bytes(Path::new("cut.jpg"), &jpeg[..cut]) {
            let e = e.to_string();
            assert!(e.starts_with("cut.jpg: ") && !e.contains('\n'), "{e:?}");
            errors += 1;
        }
    }
    assert!(errors > 10, "truncated JPEGs are rejected: {errors}");
}
